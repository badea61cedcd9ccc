/* Access-token verification: valid, expired, forged, alg "none", tampered, bad role. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/jwt.h"

#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *SECRET = "0123456789abcdef0123456789abcdef-test";

static char *bearer(const char *tok)
{
    char *h = NULL;
    assert_true(asprintf(&h, "Bearer %s", tok) > 0);
    return h;
}

static void test_valid_and_expired(void **state)
{
    (void)state;
    char *tok;
    fs_err err = {0};
    assert_int_equal(fs_jwt_issue(SECRET, "member-7", "member", 60, &tok, &err), 0);
    char *h = bearer(tok);
    fs_principal p;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(fs_jwt_verify(SECRET, h, now, &p), FS_JWT_OK);
    assert_string_equal(p.sub, "member-7");
    assert_string_equal(p.role, "member");
    assert_int_equal(fs_jwt_verify(SECRET, h, now + 61, &p), FS_JWT_EXPIRED);
    assert_int_equal(fs_jwt_verify("another-secret-another-secret-xx", h, now, &p), FS_JWT_INVALID);
    /* tamper with the payload: flip a character */
    size_t at = (size_t)(strchr(tok, '.') - tok) + 7 + 3; /* inside the payload */
    h[at] = h[at] == 'a' ? 'b' : 'a';
    assert_int_equal(fs_jwt_verify(SECRET, h, now, &p), FS_JWT_INVALID);
    free(h);
    free(tok);
}

/* Verified tokens are remembered: a repeat gives the same claims, expiry still holds, and
 * neither another secret nor a changed signature finds the remembered verdict. */
static void test_remembered(void **state)
{
    (void)state;
    char *tok;
    fs_err err = {0};
    assert_int_equal(fs_jwt_issue_session(SECRET, "member-9", "admin", 30, "sess-9", 3, &tok, &err), 0);
    char *h = bearer(tok);
    fs_principal p;
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fs_jwt_verify(SECRET, h, now, &p), FS_JWT_OK);
        assert_string_equal(p.sub, "member-9");
        assert_string_equal(p.role, "admin");
        assert_string_equal(p.sid, "sess-9");
        assert_int_equal(p.gen, 3);
    }
    assert_int_equal(fs_jwt_verify(SECRET, h, now + 31, &p), FS_JWT_EXPIRED);
    assert_string_equal(p.sub, "");
    assert_int_equal(fs_jwt_verify("another-secret-another-secret-xx", h, now, &p), FS_JWT_INVALID);
    h[strlen(h) - 2] = h[strlen(h) - 2] == 'A' ? 'B' : 'A'; /* the signature */
    assert_int_equal(fs_jwt_verify(SECRET, h, now, &p), FS_JWT_INVALID);
    free(h);
    free(tok);
}

/* A token is remembered when it is issued (a buyer's first request after the login is not
 * decoded again), with the claims a verification gives, and only when a verification would
 * accept it: a subject too long for the principal stays invalid. */
static void test_remembered_at_issue(void **state)
{
    (void)state;
    char *tok, *op, *longsub;
    fs_err err = {0};
    int64_t before = (int64_t)time(NULL);
    assert_int_equal(fs_jwt_issue_session(SECRET, "m-r", "member", 60, "sess-r", 4, &tok, &err), 0);
    int64_t after = (int64_t)time(NULL);
    char *h = bearer(tok);
    fs_principal p;
    unsigned long decodes = fs_jwt_decodes();
    assert_int_equal(fs_jwt_verify(SECRET, h, after, &p), FS_JWT_OK);
    assert_int_equal(fs_jwt_decodes(), decodes); /* answered by the cache: not decoded */
    assert_string_equal(p.sub, "m-r");
    assert_string_equal(p.role, "member");
    assert_string_equal(p.sid, "sess-r");
    assert_int_equal(p.gen, 4);
    assert_true(p.exp >= before + 60 && p.exp <= after + 60);
    assert_int_equal(fs_jwt_verify(SECRET, h, p.exp, &p), FS_JWT_EXPIRED);
    assert_int_equal(fs_jwt_issue(SECRET, "op-r", "admin", 60, &op, &err), 0);
    char *ho = bearer(op);
    assert_int_equal(fs_jwt_verify(SECRET, ho, after, &p), FS_JWT_OK);
    assert_string_equal(p.sub, "op-r");
    assert_string_equal(p.role, "admin");
    assert_string_equal(p.sid, "");
    assert_int_equal(p.gen, -1);
    char sub[80];
    memset(sub, 'x', sizeof sub - 1);
    sub[sizeof sub - 1] = '\0';
    assert_int_equal(fs_jwt_issue(SECRET, sub, "member", 60, &longsub, &err), 0);
    char *hl = bearer(longsub);
    decodes = fs_jwt_decodes();
    assert_int_equal(fs_jwt_verify(SECRET, hl, after, &p), FS_JWT_INVALID);
    assert_int_equal(fs_jwt_decodes(), decodes + 1); /* not remembered: decoded, and refused */
    free(hl);
    free(longsub);
    free(h);
    free(ho);
    free(tok);
    free(op);
}

/* Login tokens carry the session and the generation; operator tokens say gen -1. */
static void test_session_claims(void **state)
{
    (void)state;
    char *tok, *op;
    fs_err err = {0};
    assert_int_equal(fs_jwt_issue_session(SECRET, "m-1", "member", 60, "sess-1", 7, &tok, &err), 0);
    assert_int_equal(fs_jwt_issue(SECRET, "m-1", "member", 60, &op, &err), 0);
    assert_int_not_equal(fs_jwt_issue_session(SECRET, "m-1", "member", 60, "", 7, &op, &err), 0);
    char *h = bearer(tok), *ho = bearer(op);
    fs_principal p;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(fs_jwt_verify(SECRET, h, now, &p), FS_JWT_OK);
    assert_string_equal(p.sid, "sess-1");
    assert_int_equal(p.gen, 7);
    assert_int_equal(fs_jwt_verify(SECRET, ho, now, &p), FS_JWT_OK);
    assert_string_equal(p.sid, "");
    assert_int_equal(p.gen, -1);
    free(h);
    free(ho);
    free(tok);
    free(op);
}

static void test_malformed(void **state)
{
    (void)state;
    fs_principal p;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(fs_jwt_verify(SECRET, NULL, now, &p), FS_JWT_MISSING);
    assert_int_equal(fs_jwt_verify(SECRET, "", now, &p), FS_JWT_MISSING);
    assert_int_equal(fs_jwt_verify(SECRET, "Basic dXNlcjpwYXNz", now, &p), FS_JWT_INVALID);
    assert_int_equal(fs_jwt_verify(SECRET, "Bearer ", now, &p), FS_JWT_INVALID);
    assert_int_equal(fs_jwt_verify(SECRET, "Bearer a.b.c", now, &p), FS_JWT_INVALID);
    /* {"alg":"none","typ":"JWT"}.{"sub":"x","role":"admin","exp":9999999999}. */
    const char *none = "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
                       "eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
    assert_int_equal(fs_jwt_verify(SECRET, none, now, &p), FS_JWT_INVALID);
}

/* A token signed with the secret whose claims are unsound is invalid at any time, also after
 * its exp (found by tests/fuzz/fuzz_jwt.c: a login token without gen read as EXPIRED once
 * its exp had passed). */
static void test_unsound_claims_at_any_time(void **state)
{
    (void)state;
    static const char *const claims[] = {
        "{\"sub\":\"m-1\",\"role\":\"member\",\"exp\":2000000000,\"sid\":\"s-1\"}",
        "{\"sub\":\"m-1\",\"role\":\"member\",\"exp\":2000000000,\"sid\":\"s-1\",\"gen\":-1}",
        "{\"sub\":\"m-1\",\"role\":\"member\",\"exp\":2000000000,\"sid\":\"\",\"gen\":1}",
        "{\"sub\":\"m-1\",\"role\":\"root\",\"exp\":2000000000}",
    };
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        jwt_t *jwt = NULL;
        assert_int_equal(jwt_new(&jwt), 0);
        assert_int_equal(jwt_add_grants_json(jwt, claims[i]), 0);
        assert_int_equal(jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)SECRET,
                                     (int)strlen(SECRET)), 0);
        char *tok = jwt_encode_str(jwt), *h = bearer(tok);
        fs_principal p;
        assert_int_equal(fs_jwt_verify(SECRET, h, 1900000000, &p), FS_JWT_INVALID);
        assert_int_equal(fs_jwt_verify(SECRET, h, 2100000000, &p), FS_JWT_INVALID);
        free(h);
        free(tok);
        jwt_free(jwt);
    }
}

static void test_roles(void **state)
{
    (void)state;
    char *tok;
    fs_err err = {0};
    assert_int_equal(fs_jwt_issue(SECRET, "boss", "admin", 60, &tok, &err), 0);
    char *h = bearer(tok);
    fs_principal p;
    assert_int_equal(fs_jwt_verify(SECRET, h, (int64_t)time(NULL), &p), FS_JWT_OK);
    assert_string_equal(p.role, "admin");
    free(h);
    free(tok);
    assert_int_equal(fs_jwt_issue(SECRET, "x", "root", 60, &tok, &err), -1);
    assert_int_equal(fs_jwt_issue("tiny-s3cret", "x", "member", 60, &tok, &err), -1);
    assert_null(strstr(err.msg, "tiny-s3cret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_and_expired),
        cmocka_unit_test(test_session_claims),
        cmocka_unit_test(test_remembered),
        cmocka_unit_test(test_remembered_at_issue),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_unsound_claims_at_any_time),
    };
    return cmocka_run_group_tests_name("jwt", tests, NULL, NULL);
}
