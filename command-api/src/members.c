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
 * Request parsing, validation, rate limits and status codes; no SQL: the rows, their
 * transactions and the outbox rows that go with them are member_store.h's, store failures
 * become responses through fs_http_fail (http.h). Passwords: argon2id; name and phone sealed
 * (accounts.h); codes and refresh tokens stored as keyed hashes only. */
#include "accounts.h"
#include "member_store.h"
#include "metrics.h"

#include "fs/id.h"
#include "fs/log.h"
#include "fs/timefmt.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STORE_DOWN "the members store is unavailable"

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

/* A failure of the members store (member_store.h), as its class says. */
static int store_failed(fs_http_req *req, const fs_err *err)
{
    return fs_http_fail(req, err, STORE_DOWN, NULL);
}

/* The account's password-failure budget (shared by login, password change and deletion,
 * keyed by the e-mail address), charged before a password is judged; the caller refunds it
 * when the password was right. Returns 0, or -1 with 429 sent. */
static int password_budget(fs_http_req *req, api_ctx *a, const char *email, const char *what, char *rk,
                           size_t rklen)
{
    int retry;
    snprintf(rk, rklen, "login-fail|%s", email);
    if (api_rate_take(a, rk, a->rate_login_account / 60.0, (double)a->rate_login_account, false, &retry))
        return 0;
    api_rate_limited(req, retry, what);
    return -1;
}

/* A per-address bucket of the login (or sign-up) kind: 0, or the 429 sent. */
static int address_gate(fs_http_req *req, api_ctx *a, const char *kind, long per_min, const char *what)
{
    int retry;
    char rk[96];
    snprintf(rk, sizeof rk, "%s|%s", kind, api_client_ip(req));
    if (!api_rate_take(a, rk, per_min / 60.0, (double)per_min, false, &retry))
        return api_rate_limited(req, retry, what);
    return 0;
}

/* After the commit: every API instance refuses the ended sessions' access tokens at once
 * (accounts.h, api_sessions_revoke). false when Redis could not be told. */
static bool revoke_everywhere(api_ctx *a, const member_ended_sessions *e)
{
    const char *ids[MEMBER_ENDED_NAMED];
    for (int i = 0; i < e->n; i++)
        ids[i] = e->sid[i];
    return api_sessions_revoke(a, ids, e->n) == 0;
}

/* ---- handlers: members ------------------------------------------------------------------- */

static int signup(fs_http_req *req, api_ctx *a)
{
    int gated = address_gate(req, a, "signup", a->rate_signup_ip, "sign-ups from this address");
    if (gated)
        return gated;
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
    if (api_password_hash(a, password, hash)) {
        json_decref(body);
        return fs_http_unavailable(req, "cannot hash the password now", NULL);
    }
    unsigned char *sname = NULL, *sphone = NULL;
    size_t lname = 0, lphone = 0;
    api_seal(a, id, "name", name, &sname, &lname);
    if (phone)
        api_seal(a, id, "phone", phone, &sphone, &lphone);
    json_decref(body);
    member_new m = {id, email, hash, sname, sphone, lname, lphone};
    fs_err err = {0};
    int rc = member_store_signup(a, &m, &err);
    free(sname), free(sphone);
    sodium_memzero(hash, sizeof hash);
    if (rc)
        return fs_http_fail(req, &err, STORE_DOWN,
                            &(fs_http_problem){409, "EMAIL_TAKEN", "an account with this e-mail address exists"});
    fs_log_info("member signed up", json_pack("{s:s}", "member_id", id));
    return fs_http_json(req, 201, json_pack("{s:s,s:s,s:s}", "member_id", id, "email", email, "status", "UNVERIFIED"),
                        NULL);
}

/* The answer to a judged (or refused) verification code. */
static int verify_answer(fs_http_req *req, api_ctx *a, const member_verify *v)
{
    static const char *const locked = "too many wrong codes: request a new one";
    char msg[96];
    switch (v->outcome) {
    case VERIFY_DONE:
        api_member_forget(a, v->member_id);
        return fs_http_json(req, 200, json_pack("{s:s,s:s}", "member_id", v->member_id, "status", "ACTIVE"), NULL);
    case VERIFY_UNKNOWN:
        return fs_http_error(req, 400, "INVALID_CODE", "wrong e-mail address or code", NULL);
    case VERIFY_ALREADY:
        return fs_http_error(req, 409, "ALREADY_VERIFIED", "this address is already verified", NULL);
    case VERIFY_NO_CODE:
        return fs_http_error(req, 400, "INVALID_CODE", "no code is pending: request a new one", NULL);
    case VERIFY_LOCKED:
        return fs_http_error(req, 403, "CODE_LOCKED", locked, NULL);
    case VERIFY_EXPIRED:
        return fs_http_error(req, 410, "CODE_EXPIRED", "the code has expired: request a new one", NULL);
    case VERIFY_WRONG:
        break;
    }
    if (v->attempts_left <= 0)
        return fs_http_error(req, 403, "CODE_LOCKED", locked, NULL);
    snprintf(msg, sizeof msg, "wrong e-mail address or code (%ld attempt%s left)", v->attempts_left,
             v->attempts_left == 1 ? "" : "s");
    return fs_http_error(req, 400, "INVALID_CODE", msg, NULL);
}

static int verify(fs_http_req *req, api_ctx *a)
{
    int gated = address_gate(req, a, "verify", a->rate_login_ip, "verification attempts from this address");
    if (gated)
        return gated;
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
    member_verify v;
    fs_err err = {0};
    int rc = member_store_verify(a, email, given, &v, &err);
    sodium_memzero(given, sizeof given);
    return rc ? store_failed(req, &err) : verify_answer(req, a, &v);
}

static int resend(fs_http_req *req, api_ctx *a)
{
    int retry;
    char rk[300];
    int gated = address_gate(req, a, "signup", a->rate_signup_ip, "requests from this address");
    if (gated)
        return gated;
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
    if (!api_rate_take(a, rk, 1.0 / 30, 3, false, &retry)) {
        json_decref(ok);
        return api_rate_limited(req, retry, "codes for this address");
    }
    fs_err err = {0};
    if (member_store_resend_code(a, email, &err) < 0) {
        json_decref(ok);
        return store_failed(req, &err);
    }
    return fs_http_json(req, 202, ok, NULL);
}

/* The caller's member row into *p (member_profile_clear after), or the error sent (operator
 * tokens have none). Returns 0 or the status sent. */
static int me_row(fs_http_req *req, api_ctx *a, const fs_principal *who, member_profile *p)
{
    fs_err err = {0};
    int found = member_store_profile(a, who->sub, p, &err);
    if (found < 0)
        return store_failed(req, &err);
    if (!found)
        return fs_http_error(req, 404, "MEMBER_NOT_FOUND", "this token's subject has no member account", NULL);
    return 0;
}

static char *open_field(api_ctx *a, const char *member_id, const char *field, const unsigned char *sealed,
                        size_t len)
{
    return sealed ? api_open(a, member_id, field, sealed, len) : NULL;
}

static json_t *me_json(api_ctx *a, const member_profile *p, const char *id)
{
    char *name = open_field(a, id, "name", p->name_sealed, p->name_len);
    char *phone = open_field(a, id, "phone", p->phone_sealed, p->phone_len);
    char created[FS_TIME_STR_LEN], verified[FS_TIME_STR_LEN];
    fs_time_format(p->created_at, created);
    json_t *o = json_pack("{s:s,s:s,s:s?,s:s?,s:s,s:s,s:s}", "member_id", id, "email", p->email, "name", name,
                          "phone", phone, "role", p->role, "status", p->status, "created_at", created);
    if (p->verified) {
        fs_time_format(p->verified_at, verified);
        json_object_set_new(o, "verified_at", json_string(verified));
    }
    free(name);
    free(phone);
    return o;
}

static int me_get(fs_http_req *req, api_ctx *a, const fs_principal *who)
{
    member_profile p;
    int st = me_row(req, a, who, &p);
    if (st)
        return st;
    json_t *out = me_json(a, &p, who->sub);
    member_profile_clear(&p);
    return fs_http_json(req, 200, out, NULL);
}

/* Judges the caller's password (the account's failure budget charged first). Returns 0 when
 * it was right (*email set), else the status sent. */
static int check_password(fs_http_req *req, api_ctx *a, const fs_principal *who, const char *pw,
                          const char *wrong, char email[256])
{
    member_profile p;
    int st = me_row(req, a, who, &p);
    if (st)
        return st;
    snprintf(email, 256, "%s", p.email);
    api_pg_release(); /* not held through argon2 */
    char rk[300];
    if (password_budget(req, a, email, "failed password checks for this account", rk, sizeof rk)) {
        member_profile_clear(&p);
        return 429;
    }
    bool good = api_password_verify(a, p.password_hash, pw);
    member_profile_clear(&p);
    if (!good)
        return fs_http_error(req, 401, "WRONG_PASSWORD", wrong, NULL);
    api_rate_refund(a, rk);
    return 0;
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
    char email[256], hash[128];
    int st = check_password(req, a, who, old_pw, "the old password is wrong", email);
    const char *why = st ? NULL : password_problem(new_pw, email);
    if (st || why) {
        json_decref(body);
        return st ? st : weak(req, "new_password", why);
    }
    int hrc = api_password_hash(a, new_pw, hash);
    json_decref(body);
    if (hrc)
        return fs_http_unavailable(req, "cannot hash the password now", NULL);
    fs_err err = {0};
    member_ended_sessions ended = {0};
    int rc = member_store_set_password(a, who->sub, email, hash, &ended, &err);
    sodium_memzero(hash, sizeof hash);
    if (rc)
        return store_failed(req, &err);
    api_member_forget(a, who->sub);
    revoke_everywhere(a, &ended); /* (if Redis is away, the generation bump still ends them) */
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
    member_update u = {.set_name = has_name, .set_phone = has_phone || clear_phone};
    unsigned char *sname = NULL, *sphone = NULL;
    if (has_name)
        api_seal(a, who->sub, "name", name, &sname, &u.name_len);
    if (has_phone)
        api_seal(a, who->sub, "phone", phone, &sphone, &u.phone_len);
    u.name_sealed = sname;
    u.phone_sealed = sphone;
    json_decref(body);
    member_profile p;
    int st = me_row(req, a, who, &p);
    fs_err err = {0};
    if (!st) {
        member_profile_clear(&p);
        if (member_store_update_profile(a, who->sub, &u, &err))
            st = store_failed(req, &err);
    }
    free(sname), free(sphone);
    return st ? st : me_get(req, a, who);
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
    char email[256];
    int st = check_password(req, a, who, pw, "the password is wrong", email);
    json_decref(body);
    if (st)
        return st;
    fs_err err = {0};
    member_ended_sessions ended = {0};
    if (member_store_delete(a, who->sub, &ended, &err))
        return store_failed(req, &err);
    api_member_forget(a, who->sub);
    revoke_everywhere(a, &ended);
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
    return me_get(&req, a, &who);
}

/* ---- handlers: sessions ------------------------------------------------------------------ */

static int tokens_json(fs_http_req *req, api_ctx *a, const char *member, const char *role, const char *sid,
                       int64_t gen, const char *refresh, const char *status)
{
    char *access = NULL;
    fs_err err = {0};
    if (fs_jwt_issue_session(a->jwt_secret, member, role, a->access_ttl_s, sid, gen, &access, &err))
        return fs_http_fail(req, &err, "cannot issue a token", NULL);
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "access_token", access, "refresh_token", refresh,
                          "token_type", "Bearer", "expires_in", (json_int_t)a->access_ttl_s, "member_id",
                          member, "role", role, "status", status);
    free(access);
    return fs_http_json(req, 200, o, "Cache-Control: no-store\r\n");
}

/* A new refresh token and the keyed hash that is stored. */
static void new_refresh(api_ctx *a, char token[48], char hash[65])
{
    api_random_token(token);
    api_secret_hash(a, token, hash);
}

static int login(fs_http_req *req, api_ctx *a)
{
    char rk_acct[300];
    int gated = address_gate(req, a, "login", a->rate_login_ip, "login attempts from this address");
    if (gated)
        return gated;
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
    member_login m;
    fs_err err = {0};
    int found = member_store_login_lookup(a, email, &m, &err);
    if (found < 0) { /* not judged: the attempt does not count */
        json_decref(body);
        api_rate_refund(a, rk_acct);
        return store_failed(req, &err);
    }
    api_pg_release(); /* not held through argon2: the pool serves others meanwhile */
    bool good = api_password_verify(a, found ? m.password_hash : api_password_dummy(a), pw) && found;
    sodium_memzero(m.password_hash, sizeof m.password_hash);
    json_decref(body);
    if (!good)
        return fs_http_error(req, 401, "INVALID_CREDENTIALS", "wrong e-mail address or password", NULL);
    api_rate_refund(a, rk_acct);
    char sid[FS_UUID_STR_LEN + 1], refresh[48], refresh_hash[65];
    fs_uuid7_str(sid);
    new_refresh(a, refresh, refresh_hash);
    if (member_store_session_open(a, sid, m.member_id, device, refresh_hash, &err))
        return store_failed(req, &err);
    fs_log_info("login", json_pack("{s:s,s:s}", "member_id", m.member_id, "session_id", sid));
    return tokens_json(req, a, m.member_id, m.role, sid, m.gen, refresh, m.status);
}

static int refresh(fs_http_req *req, api_ctx *a)
{
    int gated = address_gate(req, a, "login", a->rate_login_ip, "token requests from this address");
    if (gated)
        return gated;
    json_t *body = api_read_json(req, a);
    if (!body)
        return 400;
    const char *token;
    if (!api_field_string(req, body, "refresh_token", true, 128, &token, NULL)) {
        json_decref(body);
        return 400;
    }
    char h[65], fresh[48], fresh_hash[65];
    api_secret_hash(a, token, h);
    json_decref(body);
    new_refresh(a, fresh, fresh_hash);
    member_refresh r;
    fs_err err = {0};
    if (member_store_refresh(a, h, fresh_hash, &r, &err))
        return store_failed(req, &err);
    switch (r.outcome) {
    case REFRESH_UNKNOWN:
        return fs_http_error(req, 401, "INVALID_REFRESH_TOKEN", "the refresh token is not valid", NULL);
    case REFRESH_REUSED:
        /* the thief's current access token stops too, on every instance */
        snprintf(r.ended.sid[0], sizeof r.ended.sid[0], "%s", r.sid);
        r.ended.n = 1;
        if (!revoke_everywhere(a, &r.ended))
            return fs_http_unavailable(req, STORE_DOWN, "refresh reuse: revocation not published");
        fs_log_warn("refresh token reused: session revoked", json_pack("{s:s,s:s}", "member_id", r.member_id,
                                                                        "session_id", r.sid));
        return fs_http_error(req, 401, "REFRESH_TOKEN_REUSED",
                             "this refresh token was already used: the session is ended, log in again", NULL);
    case REFRESH_ENDED:
        return fs_http_error(req, 401, "SESSION_ENDED", "the session has ended: log in again", NULL);
    case REFRESH_ROTATED:
        break;
    }
    return tokens_json(req, a, r.member_id, r.role, r.sid, r.gen, fresh, r.status);
}

/* POST /api/auth/logout|logout-all (no write budget: ending sessions must always be
 * possible, also while someone with a stolen token spends the budget). */
static int logout(fs_http_req *req, api_ctx *a, const fs_principal *who, bool all)
{
    fs_err err = {0};
    member_ended_sessions ended = {0};
    if (member_store_end_sessions(a, who->sub, all ? NULL : who->sid, all ? "logout-all" : "logout", &ended, &err))
        return store_failed(req, &err);
    if (all)
        api_member_forget(a, who->sub);
    /* this token's session always, even when an earlier attempt already ended it in
     * PostgreSQL but could not tell Redis: a retried logout completes the revocation */
    bool named = false;
    for (int i = 0; i < ended.n; i++)
        named |= !strcmp(ended.sid[i], who->sid);
    if (!named && ended.n < MEMBER_ENDED_NAMED)
        snprintf(ended.sid[ended.n++], sizeof ended.sid[0], "%s", who->sid);
    if (!revoke_everywhere(a, &ended))
        return fs_http_unavailable(req, "the session is ended here but not yet on every server: send the logout again",
                                   NULL);
    return fs_http_json(req, 200, json_pack("{s:s,s:I}", "status", "logged_out", "sessions_ended",
                                            (json_int_t)ended.ended), NULL);
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
    return logout(&req, a, &who, !strcmp(path, "logout-all"));
}
