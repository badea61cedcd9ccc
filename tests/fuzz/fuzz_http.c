/* Fuzz harness: the API's request reading and field validation, command-api/src/request.c
 * (api_read_json, api_field_string/text/int/time, api_paging) and its error responses
 * (http.c), compiled unchanged against a stand-in for civetweb's connection.
 *
 * Input: a route, the Content-Type, the declared length, the size of each read, an
 * X-Request-Id, then the body (or, for paging, the query string). The route names the
 * fields its handler reads, in the handler's order, with the handler's bounds (the tables
 * below mirror products.c, orders.c, members.c and wishlist.c, whose handlers are static and
 * need Kafka and PostgreSQL). Checks:
 * - api_read_json takes exactly the bodies that are a JSON object of at most max_body bytes
 *   sent as application/json, and answers every other with one 400, 413 or 415;
 * - each field reader's verdict is the one its contract gives (required, type, length, no
 *   NUL, no control characters in text, integer bounds, times), what it returns is the
 *   body's value, and a refusal is one 400 MISSING_FIELD or INVALID_FIELD;
 * - a time read back formats and parses to itself and names the calendar date it was
 *   given; paging gives a limit of 1 to 100 and an empty or well-formed cursor;
 * - every error response is well formed: a status line, Content-Length equal to the body,
 *   a sane X-Request-Id, and the JSON error body {"error": {code, message, request_id}}. */
#include "fuzz.h"

#include "api.h"
#include "accounts.h"
#include "metrics.h"

#include "fs/id.h"
#include "fs/timefmt.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_BODY 2048
#define OUT_MAX 16384

/* ---- a connection that is not one ------------------------------------------------------- */

typedef struct {
    struct mg_request_info ri;
    const char *content_type; /* NULL: no header */
    char request_id[80];      /* "" : no header */
    const uint8_t *body;
    size_t len, at, chunk;
    char out[OUT_MAX];
    size_t out_len;
    int writes, last_status;
} fake_conn;

static fake_conn conn;

const struct mg_request_info *mg_get_request_info(const struct mg_connection *c)
{
    return &((const fake_conn *)(const void *)c)->ri;
}

const char *mg_get_header(const struct mg_connection *c, const char *name)
{
    const fake_conn *f = (const fake_conn *)(const void *)c;
    if (!strcasecmp(name, "Content-Type"))
        return f->content_type;
    if (!strcasecmp(name, "X-Request-Id") && f->request_id[0])
        return f->request_id;
    return NULL;
}

int mg_read(struct mg_connection *c, void *buf, size_t len)
{
    fake_conn *f = (fake_conn *)(void *)c;
    size_t n = f->len - f->at;
    if (n > len)
        n = len;
    if (n > f->chunk)
        n = f->chunk;
    memcpy(buf, f->body + f->at, n);
    f->at += n;
    return (int)n;
}

int mg_write(struct mg_connection *c, const void *buf, size_t len)
{
    fake_conn *f = (fake_conn *)(void *)c;
    FZ_CHECK(f->out_len + len < OUT_MAX);
    memcpy(f->out + f->out_len, buf, len);
    f->out_len += len;
    f->out[f->out_len] = '\0';
    f->writes++;
    return (int)len;
}

int mg_printf(struct mg_connection *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    FZ_CHECK(n >= 0 && (size_t)n < sizeof buf);
    return mg_write(c, buf, (size_t)n);
}

/* What request.c and http.c need of the rest of the API. */
void fs_metrics_request(int route, int status)
{
    (void)route;
    conn.last_status = status;
}

int api_member_state(api_ctx *a, const char *member_id, int64_t *gen, member_status *st, fs_err *err)
{
    (void)a;
    (void)member_id;
    (void)err;
    *gen = 0;
    *st = MEMBER_NONE;
    return 0;
}

int api_session_revoked(api_ctx *a, const char *sid, fs_err *err)
{
    (void)a;
    (void)sid;
    (void)err;
    return 0;
}

/* ---- the responses ---------------------------------------------------------------------- */

static bool sane_request_id(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("-_.", s[i]))
            return false;
    return n > 0 && n <= FS_HTTP_REQUEST_ID_MAX;
}

/* The one response written since the last call is an error with this status and one of
 * the codes ("A|B|C"). */
static void check_error(const fs_http_req *req, int status, const char *codes)
{
    FZ_SAME_INT("responses", conn.writes, 1);
    FZ_SAME_INT("status", conn.last_status, status);
    int st = 0, hl = 0;
    FZ_CHECK(sscanf(conn.out, "HTTP/1.1 %d %*[^\r]\r\n%n", &st, &hl) == 1 && hl > 0);
    FZ_SAME_INT("status line", st, status);
    const char *end = strstr(conn.out, "\r\n\r\n");
    const char *cl = strstr(conn.out, "\r\nContent-Length: ");
    const char *rid = strstr(conn.out, "\r\nX-Request-Id: ");
    FZ_CHECK(end && cl && cl < end && rid && rid < end);
    size_t body_len = conn.out_len - (size_t)(end + 4 - conn.out);
    FZ_SAME_INT("Content-Length", strtoull(cl + 18, NULL, 10), body_len);
    FZ_CHECK(!strncmp(rid + 16, req->request_id, strlen(req->request_id)) &&
             rid[16 + strlen(req->request_id)] == '\r');
    FZ_CHECK(sane_request_id(req->request_id));
    json_error_t jerr;
    json_t *b = json_loadb(end + 4, body_len, 0, &jerr);
    if (!b)
        fz_fail(__FILE__, __LINE__, "error body is not JSON (%s): %s", jerr.text, end + 4);
    const char *code = NULL, *msg = NULL, *id = NULL;
    FZ_CHECK(!json_unpack(b, "{s:{s:s,s:s,s:s}}", "error", "code", &code, "message", &msg,
                          "request_id", &id));
    FZ_SAME_STR("request_id", id, req->request_id);
    size_t n = strlen(code);
    const char *p = strstr(codes, code);
    if (!p || (p != codes && p[-1] != '|') || (p[n] && p[n] != '|'))
        fz_fail(__FILE__, __LINE__, "error code %s, expected %s", code, codes);
    json_decref(b);
    conn.writes = 0;
    conn.out_len = 0;
}

static void check_silent(void)
{
    FZ_SAME_INT("responses", conn.writes, 0);
}

/* ---- the handlers' fields --------------------------------------------------------------- */

typedef enum { F_STRING, F_TEXT, F_MULTILINE, F_INT, F_TIME } field_kind;

typedef struct {
    const char *name;
    field_kind kind;
    bool required;
    long long min, max; /* F_INT: bounds; strings: max is the length */
} field_spec;

typedef struct {
    const char *handler;
    field_spec fields[9];
    bool checkout; /* orders.c: "items" given -> a checkout's lines */
    bool paging;   /* api_paging on the query string */
} route_spec;

#define ID_MAX (INV_ID_MAX - 1)
static const route_spec routes[] = {
    {"products.c create",
     {{"name", F_TEXT, true, 0, INV_NAME_MAX - 1},
      {"description", F_MULTILINE, false, 0, INV_DESC_MAX - 1},
      {"currency", F_STRING, false, 0, 3},
      {"price", F_INT, true, 0, 1000000000000LL},
      {"sale_starts_at", F_TIME, true, 0, 0},
      {"sale_ends_at", F_TIME, false, 0, 0},
      {"per_user_limit", F_INT, false, 0, 1000000},
      {"stock", F_INT, true, 0, 1000000000}},
     false, false},
    {"products.c update",
     {{"name", F_TEXT, false, 0, INV_NAME_MAX - 1},
      {"description", F_MULTILINE, false, 0, INV_DESC_MAX - 1},
      {"currency", F_STRING, false, 0, 3},
      {"price", F_INT, false, 0, 1000000000000LL},
      {"sale_starts_at", F_TIME, false, 0, 0},
      {"sale_ends_at", F_TIME, false, 0, 0},
      {"per_user_limit", F_INT, false, 0, 1000000}},
     false, false},
    {"products.c restock", {{"quantity", F_INT, true, 1, 1000000000}}, false, false},
    {"orders.c create",
     {{"product_id", F_STRING, true, 0, ID_MAX}, {"quantity", F_INT, true, -1000000000, 1000000000}},
     true, false},
    {"orders.c action", {{"method", F_STRING, false, 0, 31}}, false, false},
    {"members.c signup",
     {{"email", F_STRING, true, 0, 254},
      {"password", F_STRING, true, 0, 1024},
      {"name", F_TEXT, true, 0, 100},
      {"phone", F_TEXT, false, 0, 20}},
     false, false},
    {"members.c verify", {{"email", F_STRING, true, 0, 254}, {"code", F_STRING, true, 0, 16}}, false, false},
    {"members.c resend", {{"email", F_STRING, true, 0, 254}}, false, false},
    {"members.c password_change",
     {{"old_password", F_STRING, true, 0, 1024}, {"new_password", F_STRING, true, 0, 1024}},
     false, false},
    {"members.c me_patch", {{"name", F_TEXT, false, 0, 100}, {"phone", F_TEXT, false, 0, 20}}, false, false},
    {"members.c me_delete", {{"password", F_STRING, true, 0, 1024}}, false, false},
    {"members.c login",
     {{"email", F_STRING, true, 0, 254},
      {"password", F_STRING, true, 0, 1024},
      {"device", F_STRING, false, 0, 100}},
     false, false},
    {"members.c refresh", {{"refresh_token", F_STRING, true, 0, 128}}, false, false},
    {"wishlist.c add", {{"product_id", F_STRING, true, 0, ID_MAX}}, false, false},
    {"lists.c / wishlist.c paging", {{0}}, false, true},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static const field_spec checkout_line[] = {{"product_id", F_STRING, true, 0, ID_MAX},
                                           {"quantity", F_INT, true, 1, 1000000000}};

/* ---- the field readers against their contract ------------------------------------------- */

static bool plain_text(const char *s, bool multi_line)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if ((*c < 0x20 || *c == 0x7f) && !(multi_line && (*c == '\n' || *c == '\t')))
            return false;
    return true;
}

/* A time given as text names the date and time it reads as (when given in UTC). */
static void check_time(const char *text, int64_t t)
{
    char f[FS_TIME_STR_LEN];
    int64_t back;
    fs_time_format(t, f);
    FZ_CHECK(fs_time_parse(f, &back) == 0);
    FZ_SAME_INT("time formatted and parsed", back, t);
    size_t n = strlen(text);
    if (toupper((unsigned char)text[n - 1]) == 'Z' && strncmp(text + 17, "60", 2)) {
        char given[20];
        snprintf(given, sizeof given, "%.19s", text);
        given[10] = 'T';
        f[19] = '\0';
        FZ_SAME_STR("calendar time", f, given);
    }
}

/* The verdict the contract gives for value v (NULL: absent). */
static bool expected(const field_spec *f, json_t *v)
{
    int64_t t;
    if (!v || json_is_null(v))
        return !f->required;
    switch (f->kind) {
    case F_STRING:
    case F_TEXT:
    case F_MULTILINE: {
        if (!json_is_string(v))
            return false;
        size_t n = json_string_length(v);
        const char *s = json_string_value(v);
        return n <= (size_t)f->max && strlen(s) == n &&
               (f->kind == F_STRING || plain_text(s, f->kind == F_MULTILINE));
    }
    case F_INT:
        return json_is_integer(v) && json_integer_value(v) >= f->min &&
               json_integer_value(v) <= f->max;
    case F_TIME:
        return (json_is_integer(v) && json_integer_value(v) >= 0) ||
               (json_is_string(v) && fs_time_parse(json_string_value(v), &t) == 0);
    }
    return false;
}

/* Reads one field as the handler does; returns its verdict after checking it. */
static bool read_field(fs_http_req *req, json_t *obj, const field_spec *f)
{
    const char *s = NULL;
    long long i = LLONG_MIN;
    int64_t t = INT64_MIN;
    bool present = false, ok = false;
    switch (f->kind) {
    case F_STRING: ok = api_field_string(req, obj, f->name, f->required, (size_t)f->max, &s, &present); break;
    case F_TEXT:
    case F_MULTILINE:
        ok = api_field_text(req, obj, f->name, f->required, (size_t)f->max, f->kind == F_MULTILINE, &s,
                            &present);
        break;
    case F_INT: ok = api_field_int(req, obj, f->name, f->required, f->min, f->max, &i, &present); break;
    case F_TIME: ok = api_field_time(req, obj, f->name, f->required, &t, &present); break;
    }
    json_t *v = json_object_get(obj, f->name);
    bool given = v && !json_is_null(v);
    FZ_SAME_INT(f->name, ok, expected(f, v));
    if (!ok) {
        check_error(req, 400, given ? "INVALID_FIELD" : "MISSING_FIELD");
        return false;
    }
    check_silent();
    FZ_SAME_INT("present", present, given);
    if (!given) {
        FZ_CHECK(s == NULL);
        return true;
    }
    if (f->kind == F_INT)
        FZ_SAME_INT(f->name, i, json_integer_value(v));
    else if (f->kind == F_TIME && json_is_integer(v))
        FZ_SAME_INT(f->name, t, json_integer_value(v));
    else if (f->kind == F_TIME)
        check_time(json_string_value(v), t);
    else
        FZ_CHECK(s == json_string_value(v));
    return true;
}

static void read_fields(fs_http_req *req, json_t *obj, const field_spec *fields, size_t n)
{
    for (size_t k = 0; k < n && fields[k].name; k++)
        if (!read_field(req, obj, &fields[k]))
            return;
}

/* orders.c: a checkout's lines, each an object with product_id and quantity. */
static void read_checkout(fs_http_req *req, json_t *items)
{
    size_t i;
    json_t *it;
    if (!json_is_array(items) || json_array_size(items) < 1 || json_array_size(items) > 16)
        return; /* (the handler answers that itself) */
    json_array_foreach(items, i, it)
    {
        if (!json_is_object(it))
            return;
        for (size_t k = 0; k < 2; k++)
            if (!read_field(req, it, &checkout_line[k]))
                return;
    }
}

/* ---- the request ------------------------------------------------------------------------ */

/* What api_read_json answers this body: 0 (takes it) or the status of its refusal, in the
 * order it looks: the media type, the declared length, the length read, the JSON. */
static int verdict_on_body(long long declared)
{
    const char *ct = conn.content_type;
    if (!ct || strncasecmp(ct, "application/json", 16) || (ct[16] && ct[16] != ';' && ct[16] != ' '))
        return 415;
    if (declared > MAX_BODY || conn.len > MAX_BODY)
        return 413;
    json_t *j = json_loadb((const char *)conn.body, conn.len, JSON_REJECT_DUPLICATES, NULL);
    bool ok = json_is_object(j);
    json_decref(j);
    return ok ? 0 : 400;
}

static void body_request(fs_http_req *req, const route_spec *r)
{
    api_ctx a;
    memset(&a, 0, sizeof a);
    a.max_body = MAX_BODY;
    int verdict = verdict_on_body(conn.ri.content_length);
    json_t *body = api_read_json(req, &a);
    FZ_SAME_INT("body taken", body != NULL, verdict == 0);
    if (!body) {
        check_error(req, verdict, verdict == 415   ? "UNSUPPORTED_MEDIA_TYPE"
                                  : verdict == 413 ? "BODY_TOO_LARGE"
                                                   : "BAD_JSON");
        return;
    }
    check_silent();
    json_t *items = r->checkout ? json_object_get(body, "items") : NULL;
    if (items)
        read_checkout(req, items);
    else
        read_fields(req, body, r->fields, sizeof r->fields / sizeof r->fields[0]);
    json_decref(body);
}

static void paging_request(fs_http_req *req)
{
    char query[MAX_BODY + 1], cursor[FS_UUID_STR_LEN + 2];
    size_t n = conn.len < MAX_BODY ? conn.len : MAX_BODY;
    memcpy(query, conn.body, n);
    query[n] = '\0';
    conn.ri.query_string = query;
    int limit = 0;
    if (!api_paging(req, &limit, cursor, sizeof cursor)) {
        check_error(req, 400, "INVALID_PARAMETER");
        return;
    }
    check_silent();
    fs_uuid id;
    FZ_CHECK(limit >= 1 && limit <= 100);
    FZ_CHECK(!cursor[0] || fs_uuid_parse(cursor, &id) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {"application/json", "application/json; charset=utf-8",
                                        "Application/JSON", NULL, "text/plain", "application/jsonx"};
    fz_input in = fz_input_of(data, size);
    const route_spec *r = &routes[fz_pick(&in, NROUTES)];
    memset(&conn, 0, sizeof conn);
    conn.content_type = types[fz_pick(&in, 6)];
    int declared = (int)fz_pick(&in, 4);
    conn.chunk = 1 + fz_pick(&in, 4) * 700;
    fz_text(&in, conn.request_id, fz_pick(&in, 4) ? 0 : sizeof conn.request_id - 1);
    conn.body = in.p + in.at;
    conn.len = in.n - in.at;
    conn.ri.request_method = "POST";
    conn.ri.local_uri = "/api/fuzz";
    conn.ri.content_length = declared == 0   ? (long long)conn.len
                             : declared == 1 ? -1 /* no Content-Length: read to the end */
                             : declared == 2 ? MAX_BODY + 1
                                             : (long long)conn.len / 2;
    if (conn.ri.content_length >= 0 && (size_t)conn.ri.content_length < conn.len)
        conn.len = (size_t)conn.ri.content_length; /* civetweb reads no further */
    fs_http_req req;
    fs_http_req_init(&req, (struct mg_connection *)(void *)&conn, FS_ROUTE_OTHER);
    if (r->paging)
        paging_request(&req);
    else
        body_request(&req, r);
    return 0;
}
