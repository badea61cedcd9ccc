/* Fuzz harness: access-token verification (fs_jwt_verify) on any Authorization header.
 *
 * The input is the header's value. It is verified under FZ_JWT_SECRET at two times, before
 * and after every expiry the seeds carry, and again (a hit of the verified-token cache),
 * and under another secret. Checks:
 * - a token is accepted only if it is signed with the secret: HMAC-SHA256 of its first two
 *   parts under the secret (libsodium, not libjwt) is its third part, libjwt's own decode
 *   with the secret takes it as HS256, and the claims it reports are the token's;
 * - what is accepted is a sane principal (subject, role member/admin, exp in the future,
 *   a login token's session and generation) and is never accepted under another secret;
 * - the verdict depends on the time only through exp: an accepted token is expired later,
 *   an expired one stays expired, an invalid one stays invalid; the cache answers as
 *   libjwt did. */
#include "fuzz.h"

#include "fs/jwt.h"

#include <jwt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EARLY 1700000000LL    /* 2023: before the expiry of every seed token */
#define LATE 4000000000000LL  /* far after it */
#define MAX_HEADER 8192
#define OTHER_SECRET "another-secret-0123456789abcdefghijklmnopqrstuvwxyz"

static char header[MAX_HEADER + 1];

/* The token of a header fs_jwt_verify accepted: after "Bearer " and spaces. */
static const char *token_of(const char *h)
{
    FZ_CHECK(!strncasecmp(h, "Bearer ", 7));
    h += 7;
    while (*h == ' ')
        h++;
    return h;
}

/* The signature part of token is the HMAC-SHA256 of the rest under the secret. */
static void check_signature(const char *token)
{
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    FZ_CHECK(dot2 && !strchr(dot2 + 1, '.'));
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)FZ_JWT_SECRET, strlen(FZ_JWT_SECRET));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)token, (size_t)(dot2 - token));
    crypto_auth_hmacsha256_final(&st, mac);
    char b64[sodium_base64_ENCODED_LEN(sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64(b64, sizeof b64, mac, sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    FZ_SAME_STR("signature", dot2 + 1, b64);
}

/* libjwt itself, with the secret: HS256 and the same claims. */
static void check_with_libjwt(const char *token, const fs_principal *p)
{
    jwt_t *jwt = NULL;
    FZ_CHECK(jwt_decode(&jwt, token, (const unsigned char *)FZ_JWT_SECRET,
                        (int)strlen(FZ_JWT_SECRET)) == 0 && jwt);
    FZ_CHECK(jwt_get_alg(jwt) == JWT_ALG_HS256);
    FZ_SAME_STR("sub", jwt_get_grant(jwt, "sub"), p->sub);
    FZ_SAME_STR("role", jwt_get_grant(jwt, "role"), p->role);
    FZ_SAME_INT("exp", jwt_get_grant_int(jwt, "exp"), p->exp);
    const char *sid = jwt_get_grant(jwt, "sid");
    FZ_SAME_STR("sid", sid ? sid : "", p->sid);
    jwt_free(jwt);
}

static void check_principal(const fs_principal *p, int64_t now)
{
    FZ_CHECK(p->sub[0] && memchr(p->sub, 0, sizeof p->sub));
    FZ_CHECK(!strcmp(p->role, "member") || !strcmp(p->role, "admin"));
    FZ_CHECK(p->exp > now);
    FZ_CHECK(memchr(p->sid, 0, sizeof p->sid));
    FZ_CHECK(p->sid[0] ? p->gen >= 0 : p->gen == -1);
}

static void same_principal(const fs_principal *a, const fs_principal *b)
{
    FZ_SAME_STR("sub", a->sub, b->sub);
    FZ_SAME_STR("role", a->role, b->role);
    FZ_SAME_INT("exp", a->exp, b->exp);
    FZ_SAME_STR("sid", a->sid, b->sid);
    FZ_SAME_INT("gen", a->gen, b->gen);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        fz_fail(__FILE__, __LINE__, "sodium_init");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_input in = fz_input_of(data, size);
    fz_text(&in, header, MAX_HEADER);
    fs_principal p, again, late, other;
    fs_jwt_status st = fs_jwt_verify(FZ_JWT_SECRET, header, EARLY, &p);
    FZ_CHECK(st >= FS_JWT_OK && st <= FS_JWT_EXPIRED);
    if (st == FS_JWT_OK) {
        const char *token = token_of(header);
        check_signature(token);
        check_with_libjwt(token, &p);
        check_principal(&p, EARLY);
        FZ_CHECK(fs_jwt_verify(OTHER_SECRET, header, EARLY, &other) == FS_JWT_INVALID);
    }
    /* the cache (a valid token was remembered just now) answers as libjwt did */
    FZ_SAME_INT("verdict, again", fs_jwt_verify(FZ_JWT_SECRET, header, EARLY, &again), st);
    if (st == FS_JWT_OK)
        same_principal(&p, &again);
    /* later: only exp decides */
    fs_jwt_status ls = fs_jwt_verify(FZ_JWT_SECRET, header, LATE, &late);
    if (st == FS_JWT_OK && ls == FS_JWT_OK) {
        FZ_CHECK(p.exp > LATE);
        same_principal(&p, &late);
    } else if (st == FS_JWT_OK || st == FS_JWT_EXPIRED) {
        FZ_SAME_INT("verdict, later", ls, FS_JWT_EXPIRED);
    } else {
        FZ_SAME_INT("verdict, later", ls, st);
    }
    return 0;
}
