/* Members and sessions over HTTP (design's API table):
 *   POST /api/members                    anyone   sign up {email, password, name, phone?}
 *   POST /api/members/verify             anyone   {email, code}
 *   POST /api/members/verify/resend      anyone   {email}: a new code (202 whatever the address)
 *   GET|PATCH|DELETE /api/members/me     member   profile; DELETE needs {password}
 *   PUT  /api/members/me/password        member   {old_password, new_password}; ends every session
 *   POST /api/auth/login                 anyone   {email, password, device?}
 *   POST /api/auth/refresh               anyone   {refresh_token}: rotates it; a reused one
 *                                                 revokes its whole family (theft)
 *   POST /api/auth/logout|logout-all     member   this session / every session
 * Passwords: argon2id; name and phone sealed (accounts.h); codes and refresh tokens stored as
 * keyed hashes only. Member events and e-mails go through the outbox in the same
 * transaction as the change. */
#include "accounts.h"
#include "metrics.h"

#include "fs/id.h"
#include "fs/log.h"
#include "fs/timefmt.h"

#include <ctype.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- validation -------------------------------------------------------------------------- */

/* Lower-cases and trims; false if it is not a plausible address. */
static bool normalise_email(const char *in, char *out, size_t n)
{
    while (*in == ' ' || *in == '\t')
        in++;
    size_t len = strlen(in);
    while (len && (in[len - 1] == ' ' || in[len - 1] == '\t'))
        len--;
    if (len < 3 || len > 254 || len >= n)
        return false;
    int at = -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch <= ' ' || ch == 0x7f || ch == '"' || ch == '<' || ch == '>' || ch == ',' || ch == ';')
            return false;
        if (ch == '@') {
            if (at >= 0)
                return false;
            at = (int)i;
        }
        out[i] = (char)tolower(ch);
    }
    out[len] = '\0';
    return at > 0 && (size_t)at < len - 1 && strchr(out + at + 1, '.') && out[len - 1] != '.';
}

/* NULL if acceptable, else why not. */
static const char *password_problem(const char *pw, const char *email)
{
    size_t n = strlen(pw);
    if (n < 10)
        return "must be at least 10 characters";
    if (n > 128)
        return "must be at most 128 characters";
    bool letter = false, other = false;
    for (const char *p = pw; *p; p++) {
        if (isalpha((unsigned char)*p))
            letter = true;
        else
            other = true;
    }
    if (!letter || !other)
        return "must mix letters with digits or symbols";
    char local[128] = "";
    const char *at = email ? strchr(email, '@') : NULL;
    if (at && at - email >= 4 && (size_t)(at - email) < sizeof local) {
        memcpy(local, email, (size_t)(at - email));
        local[at - email] = '\0';
        if (strcasestr(pw, local))
            return "must not contain the e-mail address";
    }
    return NULL;
}

static bool phone_ok(const char *p)
{
    size_t digits = 0, n = strlen(p);
    if (n < 6 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (isdigit((unsigned char)p[i]))
            digits++;
        else if (!(p[i] == '+' && i == 0) && p[i] != '-' && p[i] != ' ')
            return false;
    }
    return digits >= 6;
}

static int weak(fs_http_req *req, const char *field, const char *why)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s", field, why);
    return fs_http_error(req, 422, "WEAK_PASSWORD", msg, NULL);
}

static int unavailable(fs_http_req *req, PGconn *c, const char *what)
{
    fs_log_warn("members store unavailable", json_pack("{s:s,s:s}", "what", what, "error",
                                                       c ? PQerrorMessage(c) : "no connection"));
    if (c)
        PQclear(PQexec(c, "ROLLBACK"));
    return fs_http_error(req, 503, "UNAVAILABLE", "the members store is unavailable", "Retry-After: 1\r\n");
}

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *v)
{
    return PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
}

static bool ok_res(PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* Opens a transaction on c; false if PostgreSQL refused. */
static bool begin(PGconn *c)
{
    PGresult *r = PQexec(c, "BEGIN");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

/* Commits c's transaction; false if PostgreSQL refused (nothing was stored). */
static bool commit(PGconn *c)
{
    PGresult *r = PQexec(c, "COMMIT");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

/* ---- verification codes -------------------------------------------------------------------- */

static void code_hash(const char *member_id, const char *code, char out[65])
{
    char what[128];
    snprintf(what, sizeof what, "code|%s|%s", member_id, code);
    api_secret_hash(what, out);
}

/* A new code for the member, stored hashed, and its e-mail into the outbox (in c's txn). */
static int new_code(api_ctx *a, PGconn *c, const char *member_id, const char *email, fs_err *err)
{
    char code[8], h[65], ttl[24], mins[24];
    snprintf(code, sizeof code, "%06u", (unsigned)randombytes_uniform(1000000));
    code_hash(member_id, code, h);
    snprintf(ttl, sizeof ttl, "%ld", a->code_ttl_s);
    snprintf(mins, sizeof mins, "%ld", (a->code_ttl_s + 59) / 60);
    PGresult *r = q(c,
                    "INSERT INTO verification_codes (member_id, code_hash, expires_at, attempts)"
                    " VALUES ($1, $2, now() + make_interval(secs => $3::bigint), 0)"
                    " ON CONFLICT (member_id) DO UPDATE SET code_hash = EXCLUDED.code_hash,"
                    " expires_at = EXCLUDED.expires_at, attempts = 0",
                    3, (const char *[]){member_id, h, ttl});
    int rc = ok_res(r) ? 0 : fs_err_from_pg(err, c, r, "code");
    PQclear(r);
    sodium_memzero(h, sizeof h);
    if (rc == 0)
        rc = api_outbox_notify(a, c, member_id, email, "VERIFY_EMAIL",
                               (const char *const[]){"code", code, "expires_in_minutes", mins, NULL}, err);
    sodium_memzero(code, sizeof code);
    return rc;
}

/* ---- handlers: members ------------------------------------------------------------------- */

static int signup(fs_http_req *req, api_ctx *a)
{
    int retry;
    char rk[96];
    snprintf(rk, sizeof rk, "signup|%s", api_client_ip(req));
    if (!api_rate_take(rk, a->rate_signup_ip / 60.0, (double)a->rate_signup_ip, false, &retry))
        return api_rate_limited(req, retry, "sign-ups from this address");
    json_t *body = api_read_json(req, a);
    if (!body)
        return 400;
    const char *email_in, *password, *name, *phone = NULL;
    char email[256];
    int st = 0;
    if (!api_field_string(req, body, "email", true, 254, &email_in, NULL) ||
        !api_field_string(req, body, "password", true, 1024, &password, NULL) ||
        !api_field_text(req, body, "name", true, 100, false, &name, NULL) ||
        !api_field_text(req, body, "phone", false, 20, false, &phone, NULL))
        st = 400;
    else if (!normalise_email(email_in, email, sizeof email))
        st = fs_http_error(req, 400, "INVALID_FIELD", "email: not a valid e-mail address", NULL);
    else if (!*name)
        st = fs_http_error(req, 400, "INVALID_FIELD", "name: must not be empty", NULL);
    else if (phone && !phone_ok(phone))
        st = fs_http_error(req, 400, "INVALID_FIELD", "phone: 6 to 20 digits, spaces, dashes, a leading +", NULL);
    else if (password_problem(password, email))
        st = weak(req, "password", password_problem(password, email));
    if (st) {
        json_decref(body);
        return st;
    }
    char hash[128], id[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(id);
    if (api_password_hash(password, hash)) {
        json_decref(body);
        return fs_http_error(req, 503, "UNAVAILABLE", "cannot hash the password now", "Retry-After: 1\r\n");
    }
    unsigned char *sname = NULL, *sphone = NULL;
    size_t lname = 0, lphone = 0;
    api_seal(id, "name", name, &sname, &lname);
    if (phone)
        api_seal(id, "phone", phone, &sphone, &lphone);
    json_decref(body);
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    if (!c) {
        free(sname), free(sphone);
        return unavailable(req, NULL, "signup");
    }
    if (!begin(c)) {
        free(sname), free(sphone);
        return unavailable(req, c, "signup");
    }
    const char *v[] = {id, email, hash, (const char *)sname, (const char *)sphone};
    int lens[] = {0, 0, 0, (int)lname, (int)lphone};
    int fmts[] = {0, 0, 0, 1, 1};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO members (member_id, email, password_hash, name_sealed, phone_sealed)"
                               " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING RETURNING member_id",
                               5, NULL, v, lens, fmts, 0);
    free(sname), free(sphone);
    sodium_memzero(hash, sizeof hash);
    if (!ok_res(r)) {
        PQclear(r);
        return unavailable(req, c, "signup");
    }
    bool created = PQntuples(r) == 1;
    PQclear(r);
    if (!created) {
        PQclear(PQexec(c, "ROLLBACK"));
        return fs_http_error(req, 409, "EMAIL_TAKEN", "an account with this e-mail address exists", NULL);
    }
    if (api_outbox_member_event(a, c, "MemberRegistered", id, "member", NULL, &err) ||
        new_code(a, c, id, email, &err)) {
        fs_log_error("signup failed", json_pack("{s:s}", "error", err.msg));
        return unavailable(req, c, "signup");
    }
    if (!commit(c))
        return unavailable(req, c, "signup commit");
    api_outbox_kick();
    fs_log_info("member signed up", json_pack("{s:s}", "member_id", id));
    return fs_http_json(req, 201, json_pack("{s:s,s:s,s:s}", "member_id", id, "email", email, "status", "UNVERIFIED"),
                        NULL);
}

static int verify(fs_http_req *req, api_ctx *a)
{
    int retry;
    char rk[96];
    snprintf(rk, sizeof rk, "verify|%s", api_client_ip(req));
    if (!api_rate_take(rk, a->rate_login_ip / 60.0, (double)a->rate_login_ip, false, &retry))
        return api_rate_limited(req, retry, "verification attempts from this address");
    json_t *body = api_read_json(req, a);
    if (!body)
        return 400;
    const char *email_in, *code;
    char email[256];
    if (!api_field_string(req, body, "email", true, 254, &email_in, NULL) ||
        !api_field_string(req, body, "code", true, 16, &code, NULL)) {
        json_decref(body);
        return 400;
    }
    if (!normalise_email(email_in, email, sizeof email)) {
        json_decref(body);
        return fs_http_error(req, 400, "INVALID_CODE", "wrong e-mail address or code", NULL);
    }
    char given[17];
    snprintf(given, sizeof given, "%s", code);
    json_decref(body);
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    if (!c)
        return unavailable(req, NULL, "verify");
    if (!begin(c))
        return unavailable(req, c, "verify");
    /* The attempt is counted before it is judged, in the same statement that reads the code
     * (UPDATE ... RETURNING on the code's row): parallel attempts queue on that row and each
     * sees the count the one before it left, so at most code_max_attempts are ever judged. */
    char maxs[24];
    snprintf(maxs, sizeof maxs, "%ld", a->code_max_attempts);
    PGresult *r = q(c,
                    "WITH m AS (SELECT member_id, status FROM members WHERE email = $1 FOR UPDATE),"
                    " v AS (UPDATE verification_codes SET attempts = attempts + 1"
                    "       WHERE member_id = (SELECT member_id FROM m) AND attempts < $2::int"
                    "         AND (SELECT status FROM m) = 'UNVERIFIED'"
                    "       RETURNING member_id, code_hash, expires_at < now() AS expired, attempts),"
                    " locked AS (SELECT count(*) > 0 AS has_code FROM verification_codes"
                    "       WHERE member_id = (SELECT member_id FROM m))"
                    " SELECT m.member_id, m.status, v.code_hash, v.expired, v.attempts - 1, (SELECT has_code FROM locked)"
                    " FROM m LEFT JOIN v USING (member_id)",
                    2, (const char *[]){email, maxs});
    if (!ok_res(r)) {
        PQclear(r);
        return unavailable(req, c, "verify");
    }
    if (PQntuples(r) == 0 || !strcmp(PQgetvalue(r, 0, 1), "DELETED")) {
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        return fs_http_error(req, 400, "INVALID_CODE", "wrong e-mail address or code", NULL);
    }
    char id[64];
    snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    if (!strcmp(PQgetvalue(r, 0, 1), "ACTIVE")) {
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        return fs_http_error(req, 409, "ALREADY_VERIFIED", "this address is already verified", NULL);
    }
    if (PQgetisnull(r, 0, 2)) { /* no code, or every attempt of it already used */
        bool has_code = !strcmp(PQgetvalue(r, 0, 5), "t");
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        if (has_code)
            return fs_http_error(req, 403, "CODE_LOCKED", "too many wrong codes: request a new one", NULL);
        return fs_http_error(req, 400, "INVALID_CODE", "no code is pending: request a new one", NULL);
    }
    bool expired = !strcmp(PQgetvalue(r, 0, 3), "t");
    long attempts = atol(PQgetvalue(r, 0, 4));
    char want[65], got[65];
    snprintf(want, sizeof want, "%s", PQgetvalue(r, 0, 2));
    PQclear(r);
    if (expired) {
        PQclear(PQexec(c, "ROLLBACK"));
        return fs_http_error(req, 410, "CODE_EXPIRED", "the code has expired: request a new one", NULL);
    }
    if (attempts >= a->code_max_attempts) {
        PQclear(PQexec(c, "ROLLBACK"));
        return fs_http_error(req, 403, "CODE_LOCKED", "too many wrong codes: request a new one", NULL);
    }
    code_hash(id, given, got);
    if (sodium_memcmp(want, got, 64) != 0) {
        if (!commit(c)) /* the count stands; an attempt that cannot be counted is not judged */
            return unavailable(req, c, "verify attempt");
        long left = a->code_max_attempts - attempts - 1;
        if (left <= 0)
            return fs_http_error(req, 403, "CODE_LOCKED", "too many wrong codes: request a new one", NULL);
        char msg[96];
        snprintf(msg, sizeof msg, "wrong e-mail address or code (%ld attempt%s left)", left, left == 1 ? "" : "s");
        return fs_http_error(req, 400, "INVALID_CODE", msg, NULL);
    }
    r = q(c,
          "UPDATE members SET status = 'ACTIVE', verified_at = now(), updated_at = now() WHERE member_id = $1",
          1, (const char *[]){id});
    PGresult *d = q(c, "DELETE FROM verification_codes WHERE member_id = $1", 1, (const char *[]){id});
    bool good = ok_res(r) && ok_res(d);
    PQclear(r);
    PQclear(d);
    if (!good || api_outbox_member_event(a, c, "MemberVerified", id, NULL, NULL, &err))
        return unavailable(req, c, "verify");
    if (!commit(c))
        return unavailable(req, c, "verify commit");
    api_member_forget(id);
    api_outbox_kick();
    return fs_http_json(req, 200, json_pack("{s:s,s:s}", "member_id", id, "status", "ACTIVE"), NULL);
}

static int resend(fs_http_req *req, api_ctx *a)
{
    int retry;
    char rk[300];
    snprintf(rk, sizeof rk, "signup|%s", api_client_ip(req));
    if (!api_rate_take(rk, a->rate_signup_ip / 60.0, (double)a->rate_signup_ip, false, &retry))
        return api_rate_limited(req, retry, "requests from this address");
    json_t *body = api_read_json(req, a);
    if (!body)
        return 400;
    const char *email_in;
    char email[256];
    if (!api_field_string(req, body, "email", true, 254, &email_in, NULL)) {
        json_decref(body);
        return 400;
    }
    bool valid = normalise_email(email_in, email, sizeof email);
    json_decref(body);
    json_t *ok = json_pack("{s:s}", "status", "if the address has an unverified account, a new code was sent");
    if (!valid)
        return fs_http_json(req, 202, ok, NULL);
    snprintf(rk, sizeof rk, "resend|%s", email); /* one code per 30 s per address, 3 at once */
    if (!api_rate_take(rk, 1.0 / 30, 3, false, &retry)) {
        json_decref(ok);
        return api_rate_limited(req, retry, "codes for this address");
    }
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    if (!c) {
        json_decref(ok);
        return unavailable(req, NULL, "resend");
    }
    if (!begin(c)) {
        json_decref(ok);
        return unavailable(req, c, "resend");
    }
    PGresult *r = q(c, "SELECT member_id FROM members WHERE email = $1 AND status = 'UNVERIFIED' FOR UPDATE", 1,
                    (const char *[]){email});
    if (!ok_res(r)) {
        PQclear(r);
        json_decref(ok);
        return unavailable(req, c, "resend");
    }
    if (PQntuples(r) == 1) {
        char id[64];
        snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
        if (new_code(a, c, id, email, &err)) {
            PQclear(r);
            json_decref(ok);
            return unavailable(req, c, "resend");
        }
    }
    PQclear(r);
    if (!commit(c)) {
        json_decref(ok);
        return unavailable(req, c, "resend commit");
    }
    api_outbox_kick();
    return fs_http_json(req, 202, ok, NULL);
}

/* The caller's member row, or a sent error (operator tokens have none). */
static PGresult *me_row(fs_http_req *req, api_ctx *a, const fs_principal *who, PGconn **cp, int *st)
{
    fs_err err = {0};
    PGconn *c = *cp = api_pg(a, &err);
    if (!c) {
        *st = unavailable(req, NULL, "me");
        return NULL;
    }
    PGresult *r = q(c,
                    "SELECT email, name_sealed, phone_sealed, role, status,"
                    " (extract(epoch FROM created_at) * 1000)::bigint,"
                    " (extract(epoch FROM verified_at) * 1000)::bigint, password_hash"
                    " FROM members WHERE member_id = $1 AND status <> 'DELETED'",
                    1, (const char *[]){who->sub});
    if (!ok_res(r)) {
        PQclear(r);
        *st = unavailable(req, c, "me");
        return NULL;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        *st = fs_http_error(req, 404, "MEMBER_NOT_FOUND", "this token's subject has no member account", NULL);
        return NULL;
    }
    return r;
}

static char *open_col(PGresult *r, int col, const char *member_id, const char *field)
{
    if (PQgetisnull(r, 0, col))
        return NULL;
    size_t n = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, col), &n);
    char *out = raw ? api_open(member_id, field, raw, n) : NULL;
    PQfreemem(raw);
    return out;
}

static json_t *me_json(PGresult *r, const char *id)
{
    char *name = open_col(r, 1, id, "name"), *phone = open_col(r, 2, id, "phone");
    char created[FS_TIME_STR_LEN], verified[FS_TIME_STR_LEN];
    fs_time_format(atoll(PQgetvalue(r, 0, 5)), created);
    json_t *o = json_pack("{s:s,s:s,s:s?,s:s?,s:s,s:s,s:s}", "member_id", id, "email", PQgetvalue(r, 0, 0),
                          "name", name, "phone", phone, "role", PQgetvalue(r, 0, 3), "status",
                          PQgetvalue(r, 0, 4), "created_at", created);
    if (!PQgetisnull(r, 0, 6)) {
        fs_time_format(atoll(PQgetvalue(r, 0, 6)), verified);
        json_object_set_new(o, "verified_at", json_string(verified));
    }
    free(name);
    free(phone);
    return o;
}

/* The account's password-failure budget (shared by login, password change and deletion,
 * keyed by the e-mail address), charged before a password is judged; the caller refunds it
 * when the password was right. Returns 0, or -1 with 429 sent. */
static int password_budget(fs_http_req *req, api_ctx *a, const char *email, const char *what, char *rk,
                           size_t rklen)
{
    int retry;
    snprintf(rk, rklen, "login-fail|%s", email);
    if (api_rate_take(rk, a->rate_login_account / 60.0, (double)a->rate_login_account, false, &retry))
        return 0;
    api_rate_limited(req, retry, what);
    return -1;
}

/* Sessions ended by one request: their ids, told to every API instance after the commit. */
typedef struct {
    char sid[64][64]; /* session ids (UUIDv7 text; room for any stored id) */
    int n;
    long ended; /* may exceed n: only the first 64 are named; the generation bump covers all */
} ended_sessions;

/* Ends sessions (all of the member's, or one) and, for all, bumps the generation so that
 * access tokens already issued stop working. The ended ids land in *out. */
static bool end_sessions(PGconn *c, const char *member_id, const char *sid, const char *why,
                         ended_sessions *out)
{
    PGresult *r = sid ? q(c,
                          "UPDATE sessions SET revoked_at = now(), revoked_why = $3 WHERE member_id = $1"
                          " AND session_id = $2 AND revoked_at IS NULL RETURNING session_id",
                          3, (const char *[]){member_id, sid, why})
                      : q(c,
                          "UPDATE sessions SET revoked_at = now(), revoked_why = $2 WHERE member_id = $1"
                          " AND revoked_at IS NULL RETURNING session_id",
                          2, (const char *[]){member_id, why});
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    out->n = 0;
    out->ended = ok ? PQntuples(r) : 0;
    for (int i = 0; ok && i < PQntuples(r) && out->n < 64; i++)
        snprintf(out->sid[out->n++], sizeof out->sid[0], "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    if (ok && !sid) {
        r = q(c, "UPDATE members SET session_gen = session_gen + 1, updated_at = now() WHERE member_id = $1", 1,
              (const char *[]){member_id});
        ok = ok_res(r);
        PQclear(r);
    }
    return ok;
}

/* After the commit: every API instance refuses the ended sessions' access tokens at once
 * (accounts.h, api_sessions_revoke). false when Redis could not be told. */
static bool revoke_everywhere(api_ctx *a, const ended_sessions *e)
{
    const char *ids[64];
    for (int i = 0; i < e->n; i++)
        ids[i] = e->sid[i];
    return api_sessions_revoke(a, ids, e->n) == 0;
}

static int password_change(fs_http_req *req, api_ctx *a, const fs_principal *who)
{
    json_t *body = api_read_json(req, a);
    if (!body)
        return 400;
    const char *old_pw, *new_pw;
    if (!api_field_string(req, body, "old_password", true, 1024, &old_pw, NULL) ||
        !api_field_string(req, body, "new_password", true, 1024, &new_pw, NULL)) {
        json_decref(body);
        return 400;
    }
    PGconn *c;
    int st = 0;
    PGresult *r = me_row(req, a, who, &c, &st);
    if (!r) {
        json_decref(body);
        return st;
    }
    char email[256], hash[128], rk[300];
    snprintf(email, sizeof email, "%s", PQgetvalue(r, 0, 0));
    api_pg_release(); /* not held through argon2 */
    if (password_budget(req, a, email, "failed password checks for this account", rk, sizeof rk)) {
        PQclear(r);
        json_decref(body);
        return 429;
    }
    bool good = api_password_verify(PQgetvalue(r, 0, 7), old_pw);
    PQclear(r);
    if (!good) {
        json_decref(body);
        return fs_http_error(req, 401, "WRONG_PASSWORD", "the old password is wrong", NULL);
    }
    api_rate_refund(rk);
    const char *why = password_problem(new_pw, email);
    if (why) {
        json_decref(body);
        return weak(req, "new_password", why);
    }
    int hrc = api_password_hash(new_pw, hash);
    json_decref(body);
    if (hrc)
        return fs_http_error(req, 503, "UNAVAILABLE", "cannot hash the password now", "Retry-After: 1\r\n");
    fs_err err = {0};
    ended_sessions ended = {0};
    if (!(c = api_pg(a, &err)) || !begin(c)) {
        sodium_memzero(hash, sizeof hash);
        return unavailable(req, c, "password");
    }
    r = q(c, "UPDATE members SET password_hash = $2, updated_at = now() WHERE member_id = $1", 2,
          (const char *[]){who->sub, hash});
    good = ok_res(r);
    PQclear(r);
    sodium_memzero(hash, sizeof hash);
    if (!good || !end_sessions(c, who->sub, NULL, "password changed", &ended) ||
        api_outbox_notify(a, c, who->sub, email, "PASSWORD_CHANGED", NULL, &err))
        return unavailable(req, c, "password");
    if (!commit(c))
        return unavailable(req, c, "password commit");
    api_member_forget(who->sub);
    revoke_everywhere(a, &ended); /* (if Redis is away, the generation bump still ends them) */
    api_outbox_kick();
    return fs_http_json(req, 200, json_pack("{s:s,s:I}", "status", "changed", "sessions_ended",
                                            (json_int_t)ended.ended), NULL);
}

static int me_patch(fs_http_req *req, api_ctx *a, const fs_principal *who)
{
    json_t *body = api_read_json(req, a);
    if (!body)
        return 400;
    const char *name = NULL, *phone = NULL;
    bool has_name = false, has_phone = false;
    const char *key;
    json_t *val;
    json_object_foreach(body, key, val)
    {
        if (strcmp(key, "name") && strcmp(key, "phone")) {
            char msg[160];
            snprintf(msg, sizeof msg, "%.60s: cannot be changed here (name and phone can)", key);
            json_decref(body);
            return fs_http_error(req, 400, "FIELD_NOT_ALLOWED", msg, NULL);
        }
    }
    if (!api_field_text(req, body, "name", false, 100, false, &name, &has_name) ||
        !api_field_text(req, body, "phone", false, 20, false, &phone, &has_phone)) {
        json_decref(body);
        return 400;
    }
    bool clear_phone = json_is_null(json_object_get(body, "phone"));
    if ((has_name && !*name) || (has_phone && !phone_ok(phone))) {
        json_decref(body);
        return fs_http_error(req, 400, "INVALID_FIELD", has_name && !*name ? "name: must not be empty"
                                                         : "phone: 6 to 20 digits, spaces, dashes, a leading +",
                             NULL);
    }
    unsigned char *sname = NULL, *sphone = NULL;
    size_t lname = 0, lphone = 0;
    if (has_name)
        api_seal(who->sub, "name", name, &sname, &lname);
    if (has_phone)
        api_seal(who->sub, "phone", phone, &sphone, &lphone);
    json_decref(body);
    PGconn *c;
    int st = 0;
    PGresult *r = me_row(req, a, who, &c, &st);
    if (!r) {
        free(sname), free(sphone);
        return st;
    }
    PQclear(r);
    fs_err err = {0};
    const char *fields[3] = {NULL, NULL, NULL};
    int nf = 0;
    if (has_name)
        fields[nf++] = "name";
    if (has_phone || clear_phone)
        fields[nf++] = "phone";
    if (!begin(c)) {
        free(sname), free(sphone);
        return unavailable(req, c, "patch");
    }
    const char *v[] = {who->sub, has_name ? "t" : "f", (const char *)sname, has_phone || clear_phone ? "t" : "f",
                       (const char *)sphone};
    int lens[] = {0, 0, (int)lname, 0, (int)lphone};
    int fmts[] = {0, 0, 1, 0, 1};
    r = PQexecParams(c,
                     "UPDATE members SET name_sealed = CASE WHEN $2 THEN $3 ELSE name_sealed END,"
                     " phone_sealed = CASE WHEN $4 THEN $5 ELSE phone_sealed END, updated_at = now()"
                     " WHERE member_id = $1",
                     5, NULL, v, lens, fmts, 0);
    free(sname), free(sphone);
    bool good = ok_res(r);
    PQclear(r);
    if (!good || (nf && api_outbox_member_event(a, c, "MemberUpdated", who->sub, NULL, fields, &err)))
        return unavailable(req, c, "patch");
    if (!commit(c))
        return unavailable(req, c, "patch commit");
    api_outbox_kick();
    r = me_row(req, a, who, &c, &st);
    if (!r)
        return st;
    json_t *out = me_json(r, who->sub);
    PQclear(r);
    return fs_http_json(req, 200, out, NULL);
}

static int me_delete(fs_http_req *req, api_ctx *a, const fs_principal *who)
{
    json_t *body = api_read_json(req, a);
    if (!body)
        return 400;
    const char *pw;
    if (!api_field_string(req, body, "password", true, 1024, &pw, NULL)) {
        json_decref(body);
        return 400;
    }
    PGconn *c;
    int st = 0;
    PGresult *r = me_row(req, a, who, &c, &st);
    if (!r) {
        json_decref(body);
        return st;
    }
    api_pg_release(); /* not held through argon2 */
    char rk[300];
    if (password_budget(req, a, PQgetvalue(r, 0, 0), "failed password checks for this account", rk, sizeof rk)) {
        PQclear(r);
        json_decref(body);
        return 429;
    }
    bool good = api_password_verify(PQgetvalue(r, 0, 7), pw);
    PQclear(r);
    json_decref(body);
    if (!good)
        return fs_http_error(req, 401, "WRONG_PASSWORD", "the password is wrong", NULL);
    api_rate_refund(rk);
    fs_err err = {0};
    if (!(c = api_pg(a, &err)) || !begin(c))
        return unavailable(req, c, "delete");
    /* personal data goes; the id stays (orders in the log refer to it) */
    r = q(c,
          "UPDATE members SET status = 'DELETED', email = 'deleted:' || member_id, password_hash = '!',"
          " name_sealed = NULL, phone_sealed = NULL, deleted_at = now(), updated_at = now() WHERE member_id = $1",
          1, (const char *[]){who->sub});
    PGresult *w = q(c, "DELETE FROM wishlist WHERE member_id = $1", 1, (const char *[]){who->sub});
    PGresult *vc = q(c, "DELETE FROM verification_codes WHERE member_id = $1", 1, (const char *[]){who->sub});
    /* the member's messages not yet relayed (codes, addresses, profile changes) go with the
     * data; only the deletion itself (added below) is still to be told. The relay may hold
     * these rows for up to its 10 s flush during a broker outage: wait for it rather than
     * fail on the 5 s statement timeout. */
    PQclear(PQexec(c, "SET LOCAL statement_timeout = '20s'"));
    PGresult *ob = q(c, "DELETE FROM outbox WHERE key = $1", 1, (const char *[]){who->sub});
    good = ok_res(r) && ok_res(w) && ok_res(vc) && ok_res(ob);
    PQclear(r);
    PQclear(w);
    PQclear(vc);
    PQclear(ob);
    ended_sessions ended = {0};
    if (!good || !end_sessions(c, who->sub, NULL, "account deleted", &ended) ||
        api_outbox_member_event(a, c, "MemberDeleted", who->sub, NULL, NULL, &err))
        return unavailable(req, c, "delete");
    if (!commit(c))
        return unavailable(req, c, "delete commit");
    api_member_forget(who->sub);
    revoke_everywhere(a, &ended);
    api_outbox_kick();
    fs_log_info("member deleted", json_pack("{s:s}", "member_id", who->sub));
    return fs_http_json(req, 200, json_pack("{s:s}", "status", "deleted"), NULL);
}

int api_members_route(struct mg_connection *conn, void *cb)
{
    api_ctx *a = cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_MEMBERS);
    const char *path = req.ri->local_uri, *m = req.ri->request_method;
    if (!strcmp(path, "/api/members")) {
        if (strcmp(m, "POST"))
            return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "use POST", "Allow: POST\r\n");
        return signup(&req, a);
    }
    if (!strcmp(path, "/api/members/verify") || !strcmp(path, "/api/members/verify/resend")) {
        if (strcmp(m, "POST"))
            return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "use POST", "Allow: POST\r\n");
        return strstr(path, "resend") ? resend(&req, a) : verify(&req, a);
    }
    bool me = !strcmp(path, "/api/members/me"), pw = !strcmp(path, "/api/members/me/password");
    if (!me && !pw)
        return fs_http_error(&req, 404, "NOT_FOUND", "no such resource", NULL);
    if (pw && strcmp(m, "PUT"))
        return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "use PUT", "Allow: PUT\r\n");
    if (me && strcmp(m, "GET") && strcmp(m, "PATCH") && strcmp(m, "DELETE"))
        return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "use GET, PATCH or DELETE",
                             "Allow: GET, PATCH, DELETE\r\n");
    fs_principal who;
    if (!api_auth(&req, a, NULL, &who))
        return 401;
    /* profile changes draw on the write budget; a password change and a deletion are bounded
     * by the password-failure budget instead, so that a stolen token spending the write
     * budget can never stop the owner from changing the password */
    int gated = !strcmp(m, "PATCH") ? api_write_gate(&req, a, &who) : 0;
    if (gated)
        return gated;
    if (pw)
        return password_change(&req, a, &who);
    if (!strcmp(m, "PATCH"))
        return me_patch(&req, a, &who);
    if (!strcmp(m, "DELETE"))
        return me_delete(&req, a, &who);
    PGconn *c;
    int st = 0;
    PGresult *r = me_row(&req, a, &who, &c, &st);
    if (!r)
        return st;
    json_t *out = me_json(r, who.sub);
    PQclear(r);
    return fs_http_json(&req, 200, out, NULL);
}

/* ---- handlers: sessions ------------------------------------------------------------------ */

/* A new refresh token of session sid, stored hashed (in c's transaction). */
static bool add_refresh(PGconn *c, const char *sid, char token[48])
{
    char h[65];
    api_random_token(token);
    api_secret_hash(token, h);
    PGresult *r = q(c, "INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)", 2,
                    (const char *[]){h, sid});
    bool ok = ok_res(r);
    PQclear(r);
    return ok;
}

static int tokens_json(fs_http_req *req, api_ctx *a, const char *member, const char *role, const char *sid,
                       int64_t gen, const char *refresh, const char *status)
{
    char *access = NULL;
    fs_err err = {0};
    if (fs_jwt_issue_session(a->jwt_secret, member, role, a->access_ttl_s, sid, gen, &access, &err))
        return fs_http_error(req, 500, "INTERNAL", "cannot issue a token", NULL);
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "access_token", access, "refresh_token", refresh,
                          "token_type", "Bearer", "expires_in", (json_int_t)a->access_ttl_s, "member_id",
                          member, "role", role, "status", status);
    free(access);
    return fs_http_json(req, 200, o, "Cache-Control: no-store\r\n");
}

/* For equal timing when the address is unknown: a hash made once. */
static char dummy[128];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static void dummy_init(void)
{
    if (api_password_hash("not anybody's password 0", dummy))
        snprintf(dummy, sizeof dummy, "!");
}
static const char *dummy_hash(void)
{
    pthread_once(&dummy_once, dummy_init);
    return dummy;
}

static int login(fs_http_req *req, api_ctx *a)
{
    int retry;
    char rk_ip[96], rk_acct[300];
    snprintf(rk_ip, sizeof rk_ip, "login|%s", api_client_ip(req));
    if (!api_rate_take(rk_ip, a->rate_login_ip / 60.0, (double)a->rate_login_ip, false, &retry))
        return api_rate_limited(req, retry, "login attempts from this address");
    json_t *body = api_read_json(req, a);
    if (!body)
        return 400;
    const char *email_in, *pw, *device = "";
    char email[256];
    if (!api_field_string(req, body, "email", true, 254, &email_in, NULL) ||
        !api_field_string(req, body, "password", true, 1024, &pw, NULL) ||
        !api_field_string(req, body, "device", false, 100, &device, NULL)) {
        json_decref(body);
        return 400;
    }
    char dev[101];
    snprintf(dev, sizeof dev, "%s", device ? device : "");
    device = dev; /* the body is released before the session is stored */
    if (!normalise_email(email_in, email, sizeof email))
        snprintf(email, sizeof email, "%.200s", email_in);
    /* The failure budget is charged BEFORE the password is judged and given back when it was
     * right: parallel wrong attempts cannot all pass a check made before any was counted. */
    if (password_budget(req, a, email, "failed logins for this account", rk_acct, sizeof rk_acct)) {
        json_decref(body);
        return 429;
    }
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    if (!c) { /* not judged: the attempt does not count */
        json_decref(body);
        api_rate_refund(rk_acct);
        return unavailable(req, NULL, "login");
    }
    PGresult *r = q(c,
                    "SELECT member_id, password_hash, role, status, session_gen FROM members"
                    " WHERE email = $1 AND status <> 'DELETED'",
                    1, (const char *[]){email});
    if (!ok_res(r)) {
        PQclear(r);
        json_decref(body);
        api_rate_refund(rk_acct);
        return unavailable(req, c, "login");
    }
    bool found = PQntuples(r) == 1;
    api_pg_release(); /* not held through argon2: the pool serves others meanwhile */
    bool good = api_password_verify(found ? PQgetvalue(r, 0, 1) : dummy_hash(), pw) && found;
    json_decref(body);
    if (!good) {
        PQclear(r);
        return fs_http_error(req, 401, "INVALID_CREDENTIALS", "wrong e-mail address or password", NULL);
    }
    api_rate_refund(rk_acct);
    char member[64], role[16], status[16], sid[FS_UUID_STR_LEN + 1], refresh[48], ttl[24];
    snprintf(member, sizeof member, "%s", PQgetvalue(r, 0, 0));
    snprintf(role, sizeof role, "%s", PQgetvalue(r, 0, 2));
    snprintf(status, sizeof status, "%s", PQgetvalue(r, 0, 3));
    int64_t gen = atoll(PQgetvalue(r, 0, 4));
    PQclear(r);
    fs_uuid7_str(sid);
    snprintf(ttl, sizeof ttl, "%ld", a->refresh_ttl_s);
    if (!(c = api_pg(a, &err)))
        return unavailable(req, NULL, "login");
    if (!begin(c))
        return unavailable(req, c, "login");
    r = q(c,
          "INSERT INTO sessions (session_id, member_id, device, expires_at)"
          " VALUES ($1, $2, $3, now() + make_interval(secs => $4::bigint))",
          4, (const char *[]){sid, member, device, ttl});
    good = ok_res(r);
    PQclear(r);
    if (!good || !add_refresh(c, sid, refresh))
        return unavailable(req, c, "login");
    if (!commit(c))
        return unavailable(req, c, "login commit");
    fs_log_info("login", json_pack("{s:s,s:s}", "member_id", member, "session_id", sid));
    return tokens_json(req, a, member, role, sid, gen, refresh, status);
}

static int refresh(fs_http_req *req, api_ctx *a)
{
    int retry;
    char rk_ip[96];
    snprintf(rk_ip, sizeof rk_ip, "login|%s", api_client_ip(req));
    if (!api_rate_take(rk_ip, a->rate_login_ip / 60.0, (double)a->rate_login_ip, false, &retry))
        return api_rate_limited(req, retry, "token requests from this address");
    json_t *body = api_read_json(req, a);
    if (!body)
        return 400;
    const char *token;
    if (!api_field_string(req, body, "refresh_token", true, 128, &token, NULL)) {
        json_decref(body);
        return 400;
    }
    char h[65];
    api_secret_hash(token, h);
    json_decref(body);
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    if (!c)
        return unavailable(req, NULL, "refresh");
    if (!begin(c))
        return unavailable(req, c, "refresh");
    PGresult *r = q(c,
                    "SELECT t.used_at IS NOT NULL, s.session_id, s.member_id,"
                    " s.revoked_at IS NOT NULL OR s.expires_at < now(), m.role, m.session_gen, m.status"
                    " FROM refresh_tokens t JOIN sessions s USING (session_id) JOIN members m USING (member_id)"
                    " WHERE t.token_hash = $1 FOR UPDATE OF t, s",
                    1, (const char *[]){h});
    if (!ok_res(r)) {
        PQclear(r);
        return unavailable(req, c, "refresh");
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        return fs_http_error(req, 401, "INVALID_REFRESH_TOKEN", "the refresh token is not valid", NULL);
    }
    char sid[64], member[64], role[16], status[16], fresh[48];
    snprintf(sid, sizeof sid, "%s", PQgetvalue(r, 0, 1));
    snprintf(member, sizeof member, "%s", PQgetvalue(r, 0, 2));
    snprintf(role, sizeof role, "%s", PQgetvalue(r, 0, 4));
    snprintf(status, sizeof status, "%s", PQgetvalue(r, 0, 6));
    bool reused = !strcmp(PQgetvalue(r, 0, 0), "t"), ended = !strcmp(PQgetvalue(r, 0, 3), "t");
    int64_t gen = atoll(PQgetvalue(r, 0, 5));
    PQclear(r);
    if (reused) { /* a stolen copy or the real owner: either way the family is compromised */
        ended_sessions gone = {0};
        if (!end_sessions(c, member, sid, "refresh token reused", &gone) || !commit(c))
            return unavailable(req, c, "refresh reuse");
        /* the thief's current access token stops too, on every instance */
        snprintf(gone.sid[0], sizeof gone.sid[0], "%s", sid);
        gone.n = 1;
        if (!revoke_everywhere(a, &gone))
            return unavailable(req, NULL, "refresh reuse: revocation not published");
        fs_log_warn("refresh token reused: session revoked", json_pack("{s:s,s:s}", "member_id", member,
                                                                        "session_id", sid));
        return fs_http_error(req, 401, "REFRESH_TOKEN_REUSED",
                             "this refresh token was already used: the session is ended, log in again", NULL);
    }
    if (ended || !strcmp(status, "DELETED")) {
        PQclear(PQexec(c, "ROLLBACK"));
        return fs_http_error(req, 401, "SESSION_ENDED", "the session has ended: log in again", NULL);
    }
    r = q(c, "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", 1, (const char *[]){h});
    PGresult *u = q(c, "UPDATE sessions SET last_used_at = now() WHERE session_id = $1", 1, (const char *[]){sid});
    bool good = ok_res(r) && ok_res(u);
    PQclear(r);
    PQclear(u);
    if (!good || !add_refresh(c, sid, fresh))
        return unavailable(req, c, "refresh");
    if (!commit(c))
        return unavailable(req, c, "refresh commit");
    return tokens_json(req, a, member, role, sid, gen, fresh, status);
}

int api_auth_route(struct mg_connection *conn, void *cb)
{
    api_ctx *a = cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_AUTH);
    const char *path = req.ri->local_uri + strlen("/api/auth/");
    if (strcmp(path, "login") && strcmp(path, "refresh") && strcmp(path, "logout") && strcmp(path, "logout-all"))
        return fs_http_error(&req, 404, "NOT_FOUND", "no such resource", NULL);
    if (strcmp(req.ri->request_method, "POST"))
        return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "use POST", "Allow: POST\r\n");
    if (!strcmp(path, "login"))
        return login(&req, a);
    if (!strcmp(path, "refresh"))
        return refresh(&req, a);
    fs_principal who;
    if (!api_auth(&req, a, NULL, &who))
        return 401;
    if (!who.sid[0])
        return fs_http_error(&req, 400, "NOT_A_SESSION", "this token does not belong to a login session", NULL);
    /* (no write budget: ending sessions must always be possible, also while someone with a
     * stolen token spends the budget) */
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    if (!c)
        return unavailable(&req, NULL, "logout");
    bool all = !strcmp(path, "logout-all");
    ended_sessions ended = {0};
    if (!begin(c))
        return unavailable(&req, c, "logout");
    if (!end_sessions(c, who.sub, all ? NULL : who.sid, all ? "logout-all" : "logout", &ended) || !commit(c))
        return unavailable(&req, c, "logout");
    if (all)
        api_member_forget(who.sub);
    /* this token's session always, even when an earlier attempt already ended it in
     * PostgreSQL but could not tell Redis: a retried logout completes the revocation */
    bool named = false;
    for (int i = 0; i < ended.n; i++)
        named |= !strcmp(ended.sid[i], who.sid);
    if (!named && ended.n < 64)
        snprintf(ended.sid[ended.n++], sizeof ended.sid[0], "%s", who.sid);
    if (!revoke_everywhere(a, &ended))
        return fs_http_error(&req, 503, "UNAVAILABLE",
                             "the session is ended here but not yet on every server: send the logout again",
                             "Retry-After: 1\r\n");
    return fs_http_json(&req, 200, json_pack("{s:s,s:I}", "status", "logged_out", "sessions_ended",
                                             (json_int_t)ended.ended), NULL);
}

int api_write_gate(fs_http_req *req, api_ctx *a, const fs_principal *who)
{
    int retry;
    char rk[128];
    if (a->rate_write_member <= 0)
        return 0;
    snprintf(rk, sizeof rk, "write-m|%s", who->sub);
    if (!api_rate_take(rk, (double)a->rate_write_member, (double)a->rate_write_member_burst, false, &retry))
        return api_rate_limited(req, retry, "changes from this member");
    return 0;
}

int api_order_gate(fs_http_req *req, api_ctx *a, const fs_principal *who)
{
    int retry;
    char rk[128];
    snprintf(rk, sizeof rk, "order-m|%s", who->sub);
    if (!api_rate_take(rk, (double)a->rate_order_member, (double)a->rate_order_member_burst, false, &retry))
        return api_rate_limited(req, retry, "orders from this member");
    snprintf(rk, sizeof rk, "order-ip|%s", api_client_ip(req));
    if (!api_rate_take(rk, (double)a->rate_order_ip, (double)a->rate_order_ip_burst, false, &retry))
        return api_rate_limited(req, retry, "orders from this address");
    if (who->gen < 0)
        return 0; /* an operator token: no account behind it */
    int64_t gen;
    member_status st;
    if (api_member_state(a, who->sub, &gen, &st))
        return fs_http_error(req, 503, "UNAVAILABLE", "the members store is unavailable", "Retry-After: 1\r\n");
    if (st == MEMBER_UNVERIFIED)
        return fs_http_error(req, 403, "EMAIL_NOT_VERIFIED", "verify your e-mail address before ordering", NULL);
    return 0;
}
