/* Request helpers: authentication, JSON bodies, per-thread Redis; see api.h. */
#include "api.h"
#include "accounts.h"

#include "fs/db.h"
#include "fs/id.h"
#include "fs/log.h"
#include "fs/timefmt.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

bool api_auth(fs_http_req *req, api_ctx *a, const char *role, fs_principal *who)
{
    switch (fs_jwt_verify(a->jwt_secret, fs_http_header(req, "Authorization"),
                          (int64_t)time(NULL), who)) {
    case FS_JWT_OK:
        break;
    case FS_JWT_MISSING:
        fs_http_error(req, 401, "UNAUTHENTICATED", "an Authorization: Bearer token is required",
                      "WWW-Authenticate: Bearer\r\n");
        return false;
    case FS_JWT_EXPIRED:
        fs_http_error(req, 401, "TOKEN_EXPIRED", "the access token has expired",
                      "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
        return false;
    default:
        fs_http_error(req, 401, "INVALID_TOKEN", "the access token is not valid",
                      "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
        return false;
    }
    if (who->gen >= 0) { /* a login token: its session generation must still be current */
        int64_t gen;
        member_status st;
        fs_err err = {0};
        if (api_member_state(a, who->sub, &gen, &st, &err)) {
            fs_http_fail(req, &err, "the members store is unavailable", NULL);
            return false;
        }
        int revoked = st == MEMBER_NONE || st == MEMBER_DELETED || gen != who->gen ? 1
                      : who->sid[0] ? api_session_revoked(a, who->sid, &err) : 0;
        if (revoked < 0) {
            fs_http_fail(req, &err, "the session store is unavailable", NULL);
            return false;
        }
        if (revoked) {
            fs_http_error(req, 401, "SESSION_ENDED", "this session has ended: log in again",
                          "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
            return false;
        }
    }
    if (role && strcmp(who->role, role)) {
        fs_http_error(req, 403, "FORBIDDEN", "this operation needs the admin role", NULL);
        return false;
    }
    return true;
}

json_t *api_read_json(fs_http_req *req, api_ctx *a)
{
    const char *ct = fs_http_header(req, "Content-Type");
    if (!ct || strncasecmp(ct, "application/json", 16) || (ct[16] && ct[16] != ';' && ct[16] != ' ')) {
        fs_http_error(req, 415, "UNSUPPORTED_MEDIA_TYPE", "the body must be application/json", NULL);
        return NULL;
    }
    long long declared = req->ri->content_length;
    if (declared > a->max_body) {
        fs_http_error(req, 413, "BODY_TOO_LARGE", "the request body is too large", NULL);
        return NULL;
    }
    /* A declared body that fits is read on the stack (an order's is ~60 bytes) instead of
     * into a heap buffer of the most a body may take (16 KB) on every request; one byte more
     * than allowed tells a body that is too large. (No CPU saving was measurable: perf/ab,
     * 2026-12-08, perf/RESULTS.md.) */
    char small[2048];
    size_t cap = declared >= 0 && declared < (long long)sizeof small ? sizeof small : (size_t)a->max_body + 1;
    size_t n = 0;
    char *buf = cap == sizeof small ? small : malloc(cap);
    if (!buf) {
        fs_http_unavailable(req, "out of memory", NULL);
        return NULL;
    }
    int r;
    while (n < cap && (r = fs_http_read(req, buf + n, cap - n)) > 0)
        n += (size_t)r;
    if (n > (size_t)a->max_body) {
        if (buf != small)
            free(buf);
        fs_http_error(req, 413, "BODY_TOO_LARGE", "the request body is too large", NULL);
        return NULL;
    }
    json_error_t jerr;
    json_t *body = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
    if (buf != small)
        free(buf);
    if (!body) {
        /* jansson's text quotes the bytes near the error, cut at a fixed length: they need
         * not be UTF-8, and a JSON error body could not carry them (the client got 500 "{}";
         * found by the http fuzz harness). Only printable ASCII is quoted back. */
        char msg[200];
        int len = snprintf(msg, sizeof msg, "malformed JSON: %s", jerr.text);
        for (int i = 0; i < len && i < (int)sizeof msg - 1; i++)
            if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] > 0x7e)
                msg[i] = '?';
        fs_http_error(req, 400, "BAD_JSON", msg, NULL);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        fs_http_error(req, 400, "BAD_JSON", "the body must be a JSON object", NULL);
        return NULL;
    }
    return body;
}

static bool field_error(fs_http_req *req, const char *code, const char *name, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s", name, what);
    fs_http_error(req, 400, code, msg, NULL);
    return false;
}

/* The field, or NULL when absent or null (then *ok says whether that is allowed, and the
 * 400 MISSING_FIELD has been sent if not). */
static json_t *field_get(fs_http_req *req, json_t *body, const char *name, bool required,
                         bool *present, bool *ok)
{
    json_t *v = json_object_get(body, name);
    if (present)
        *present = v != NULL && !json_is_null(v);
    *ok = true;
    if (v && !json_is_null(v))
        return v;
    if (required)
        *ok = field_error(req, "MISSING_FIELD", name, "is required");
    return NULL;
}

bool api_field_string(fs_http_req *req, json_t *body, const char *name, bool required,
                      size_t max_len, const char **out, bool *present)
{
    bool ok;
    json_t *v = field_get(req, body, name, required, present, &ok);
    if (!v) {
        *out = NULL;
        return ok;
    }
    if (!json_is_string(v))
        return field_error(req, "INVALID_FIELD", name, "must be a string");
    if (json_string_length(v) > max_len || strlen(json_string_value(v)) != json_string_length(v))
        return field_error(req, "INVALID_FIELD", name, "is too long or contains NUL");
    *out = json_string_value(v);
    return true;
}

bool api_field_text(fs_http_req *req, json_t *body, const char *name, bool required, size_t max_len,
                    bool multi_line, const char **out, bool *present)
{
    if (!api_field_string(req, body, name, required, max_len, out, present))
        return false;
    for (const unsigned char *c = (const unsigned char *)(*out ? *out : ""); *c; c++)
        if ((*c < 0x20 || *c == 0x7f) && !(multi_line && (*c == '\n' || *c == '\t')))
            return field_error(req, "INVALID_FIELD", name, multi_line
                                   ? "must not contain control characters other than newline and tab"
                                   : "must not contain control characters (such as CR or LF)");
    return true;
}

bool api_field_int(fs_http_req *req, json_t *body, const char *name, bool required, long long min,
                   long long max, long long *out, bool *present)
{
    bool ok;
    json_t *v = field_get(req, body, name, required, present, &ok);
    if (!v)
        return ok;
    if (!json_is_integer(v))
        return field_error(req, "INVALID_FIELD", name, "must be an integer");
    long long x = json_integer_value(v);
    if (x < min || x > max) {
        char what[96];
        snprintf(what, sizeof what, "must be from %lld to %lld", min, max);
        return field_error(req, "INVALID_FIELD", name, what);
    }
    *out = x;
    return true;
}

bool api_field_time(fs_http_req *req, json_t *body, const char *name, bool required, int64_t *out,
                    bool *present)
{
    bool ok;
    json_t *v = field_get(req, body, name, required, present, &ok);
    if (!v)
        return ok;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_string(v) && fs_time_parse(json_string_value(v), out) == 0)
        return true;
    return field_error(req, "INVALID_FIELD", name,
                       "must be an RFC 3339 time (2026-11-21T08:00:00Z) or epoch milliseconds");
}

static pthread_key_t redis_key;
static pthread_once_t redis_once = PTHREAD_ONCE_INIT;
static void redis_free(void *c)
{
    redisFree(c);
}
static void redis_key_init(void)
{
    pthread_key_create(&redis_key, redis_free);
}

redisContext *api_redis(api_ctx *a, fs_err *err)
{
    pthread_once(&redis_once, redis_key_init);
    redisContext *c = pthread_getspecific(redis_key);
    if (c && !c->err)
        return c;
    if (c) {
        redisFree(c);
        pthread_setspecific(redis_key, NULL);
    }
    c = fs_redis_connect(&a->cfg, 1000, err);
    if (c) /* a hung Redis costs at most this per command (then the breaker opens) */
        redisSetTimeout(c, (struct timeval){.tv_sec = 1});
    pthread_setspecific(redis_key, c);
    return c;
}

void api_redis_drop(void)
{
    pthread_once(&redis_once, redis_key_init);
    redisContext *c = pthread_getspecific(redis_key);
    if (c) {
        redisFree(c);
        pthread_setspecific(redis_key, NULL);
    }
}

/* The pool (main.c sets it up) and the connection this thread holds for its current
 * request: taken on the first api_pg of a request, handed back by api_pg_release (at the end
 * of every request, and before a handler waits for something else, such as argon2). */
static fs_pg_pool *pg_pool;
static long pg_wait_ms;
static __thread PGconn *tl_pg;

void api_pg_pool_set(fs_pg_pool *pool, long wait_ms)
{
    pg_pool = pool;
    pg_wait_ms = wait_ms;
}

PGconn *api_pg(api_ctx *a, fs_err *err)
{
    (void)a;
    if (tl_pg && PQstatus(tl_pg) == CONNECTION_OK)
        return tl_pg;
    api_pg_release();
    tl_pg = fs_pg_pool_get(pg_pool, pg_wait_ms, err);
    if (!tl_pg)
        fs_log_warn("no postgres connection for the request", json_pack("{s:s}", "error", err->msg));
    return tl_pg;
}

void api_pg_release(void)
{
    if (tl_pg) {
        fs_pg_pool_put(pg_pool, tl_pg);
        tl_pg = NULL;
    }
}

static bool state_in(const char *st, const char *const *prefixes)
{
    for (; *prefixes; prefixes++)
        if (!strncmp(st, *prefixes, strlen(*prefixes)))
            return true;
    return false;
}

int api_pg_error(fs_err *err, const PGconn *c, const PGresult *r, const char *what)
{
    static const char *const retriable[] = {"53", "55", "57", "58", "25006", "42P01", "42703", NULL};
    fs_err_from_pg(err, c, r, what);
    if (!err || err->cls == FS_ERR_RETRIABLE)
        return -1;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!st || !*st || state_in(st, retriable))
        err->cls = FS_ERR_RETRIABLE;
    else if (!strncmp(st, "42", 2))
        err->cls = FS_ERR_FATAL;
    return -1;
}

bool api_paging(fs_http_req *req, int *limit, char *cursor, size_t cursor_len)
{
    const char *q = req->ri->query_string;
    char buf[16];
    *limit = 20;
    cursor[0] = '\0';
    if (!q)
        return true;
    if (mg_get_var(q, strlen(q), "limit", buf, sizeof buf) > 0) {
        char *end;
        long l = strtol(buf, &end, 10);
        if (*end || l < 1 || l > 100) {
            fs_http_error(req, 400, "INVALID_PARAMETER", "limit: from 1 to 100", NULL);
            return false;
        }
        *limit = (int)l;
    }
    int n = mg_get_var(q, strlen(q), "cursor", cursor, cursor_len);
    fs_uuid id;
    if (n == -2 || (n > 0 && fs_uuid_parse(cursor, &id))) {
        fs_http_error(req, 400, "INVALID_PARAMETER", "cursor: not a cursor this API gave", NULL);
        return false;
    }
    if (n < 0)
        cursor[0] = '\0';
    return true;
}
