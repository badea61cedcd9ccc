/* The pure parts of GET /api/events; see sse_event.h. */
#include "sse_event.h"

#include "fs/map.h"
#include "fs/timefmt.h"

#include <jansson.h>

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *sse_kind_name(sse_kind k)
{
    return k == SSE_KIND_ORDER ? "order" : "stock";
}

/* ---- frames ----------------------------------------------------------------------------- */

static void base36(uint64_t v, char *out)
{
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
        v /= 36;
    } while (v && n < (int)sizeof tmp);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

void sse_id_format(uint64_t epoch, uint64_t seq, char *out)
{
    char e[16];
    base36(epoch, e);
    snprintf(out, SSE_ID_MAX, "%s-%" PRIu64, e, seq);
}

bool sse_id_parse(const char *id, uint64_t epoch, uint64_t *seq)
{
    if (!id)
        return false;
    char e[16];
    base36(epoch, e);
    size_t el = strlen(e);
    if (strncmp(id, e, el) || id[el] != '-')
        return false;
    const char *p = id + el + 1;
    if (!*p || strlen(p) > 20)
        return false;
    uint64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *seq = v;
    return true;
}

char *sse_frame(const char *id, sse_kind kind, const char *data, size_t *len)
{
    size_t cap = strlen(id) + strlen(data) + 40;
    char *f = malloc(cap);
    if (!f)
        return NULL;
    int n = snprintf(f, cap, "id: %s\nevent: %s\ndata: %s\n\n", id, sse_kind_name(kind), data);
    if (n < 0 || (size_t)n >= cap) {
        free(f);
        return NULL;
    }
    *len = (size_t)n;
    return f;
}

static char *dump(json_t *o)
{
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

char *sse_stock_data(const inv_product_view *v, int64_t now, int64_t at)
{
    char ts[FS_TIME_STR_LEN];
    fs_time_format(at, ts);
    return dump(json_pack("{s:s,s:i,s:i,s:i,s:i,s:s,s:s}", "product_id", v->id, "available",
                          v->available, "reserved", v->reserved, "sold", v->sold, "stock", v->stock,
                          "sale_status", inv_sale_status_name(inv_sale_status_at(v, now)), "at", ts));
}

char *sse_order_data(const char *order_id, const char *status, const char *reason, int version,
                     int64_t at)
{
    char ts[FS_TIME_STR_LEN];
    fs_time_format(at, ts);
    json_t *o = json_pack("{s:s,s:s,s:i,s:s}", "order_id", order_id, "status", status, "version",
                          version, "at", ts);
    if (o && reason && *reason)
        json_object_set_new(o, "reason", json_string(reason));
    return dump(o);
}

size_t sse_heartbeat(int64_t now_ms, char *out)
{
    int n = snprintf(out, 40, ": hb %" PRId64 "\n\n", now_ms);
    return n > 0 ? (size_t)n : 0;
}

/* ---- the replay ring -------------------------------------------------------------------- */

struct sse_ring {
    sse_entry *e; /* e[seq % cap] */
    size_t cap;
    uint64_t head; /* last seq pushed */
    uint64_t epoch;
};

sse_ring *sse_ring_new(size_t cap, uint64_t epoch)
{
    if (cap < 1)
        return NULL;
    sse_ring *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->e = calloc(cap, sizeof *r->e);
    if (!r->e) {
        free(r);
        return NULL;
    }
    r->cap = cap;
    r->epoch = epoch;
    return r;
}

void sse_ring_destroy(sse_ring *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->cap; i++)
        free(r->e[i].frame);
    free(r->e);
    free(r);
}

uint64_t sse_ring_push(sse_ring *r, sse_kind kind, const char *key, const char *data)
{
    uint64_t seq = r->head + 1;
    char id[SSE_ID_MAX];
    sse_id_format(r->epoch, seq, id);
    size_t len = 0;
    char *frame = sse_frame(id, kind, data, &len);
    if (!frame)
        return 0;
    sse_entry *e = &r->e[seq % r->cap];
    free(e->frame);
    e->seq = seq;
    e->kind = kind;
    snprintf(e->key, sizeof e->key, "%s", key);
    e->frame = frame;
    e->len = len;
    r->head = seq;
    return seq;
}

uint64_t sse_ring_head(const sse_ring *r)
{
    return r->head;
}

uint64_t sse_ring_epoch(const sse_ring *r)
{
    return r->epoch;
}

bool sse_ring_holds_after(const sse_ring *r, uint64_t seq)
{
    if (seq > r->head)
        return false; /* not one of ours yet: forged, or from a ring since replaced */
    if (seq == r->head)
        return true; /* nothing missed */
    /* the oldest held is head - cap + 1 (or 1) */
    uint64_t oldest = r->head >= r->cap ? r->head - r->cap + 1 : 1;
    return seq + 1 >= oldest;
}

const sse_entry *sse_ring_get(const sse_ring *r, uint64_t seq)
{
    if (seq == 0 || seq > r->head)
        return NULL;
    const sse_entry *e = &r->e[seq % r->cap];
    return e->seq == seq ? e : NULL;
}

/* ---- counters per key ------------------------------------------------------------------- */

struct sse_counts {
    fs_map *m; /* key -> (void *)(intptr_t)count */
};

sse_counts *sse_counts_new(void)
{
    sse_counts *c = calloc(1, sizeof *c);
    if (c && !(c->m = fs_map_new(256))) {
        free(c);
        return NULL;
    }
    return c;
}

void sse_counts_destroy(sse_counts *c)
{
    if (!c)
        return;
    fs_map_destroy(c->m);
    free(c);
}

long sse_counts_get(const sse_counts *c, const char *key)
{
    return (long)(intptr_t)fs_map_get(c->m, key);
}

bool sse_counts_take(sse_counts *c, const char *key, long limit)
{
    long n = sse_counts_get(c, key);
    if (limit > 0 && n >= limit)
        return false;
    return fs_map_put(c->m, key, (void *)(intptr_t)(n + 1)) != (void *)-1;
}

void sse_counts_put(sse_counts *c, const char *key)
{
    long n = sse_counts_get(c, key);
    if (n <= 1)
        fs_map_del(c->m, key);
    else
        fs_map_put(c->m, key, (void *)(intptr_t)(n - 1));
}

size_t sse_counts_keys(const sse_counts *c)
{
    return fs_map_size(c->m);
}

/* ---- the request ------------------------------------------------------------------------ */

static sse_problem problem(int status, const char *code, const char *message)
{
    return (sse_problem){status, code, message};
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                               : -1;
}

/* Percent-decodes [s, s+n) into out (outlen bytes); false when malformed or too long. */
static bool url_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return false;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+')
            c = ' ';
        if (o + 1 >= outlen || c == '\0')
            return false;
        out[o++] = c;
    }
    out[o] = '\0';
    return true;
}

static bool id_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return false;
    return true;
}

static bool sane_request_id(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

static sse_problem parse_query(const char *q, size_t n, sse_request *out)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && q[j] != '&')
            j++;
        const char *eq = memchr(q + i, '=', j - i);
        size_t klen = eq ? (size_t)(eq - (q + i)) : j - i;
        const char *val = eq ? eq + 1 : q + j;
        size_t vlen = (size_t)(q + j - val);
        if (klen == 7 && !memcmp(q + i, "product", 7)) {
            char id[INV_ID_MAX];
            if (!url_decode(val, vlen, id, sizeof id) || !id_ok(id))
                return problem(400, "INVALID_FIELD", "product: not a product id");
            bool dup = false;
            for (int k = 0; k < out->nproducts; k++)
                dup = dup || !strcmp(out->products[k], id);
            if (!dup) {
                if (out->nproducts >= SSE_MAX_PRODUCTS)
                    return problem(400, "INVALID_FIELD", "product: at most 50 products per stream");
                snprintf(out->products[out->nproducts++], INV_ID_MAX, "%s", id);
            }
        } else if (klen == 13 && !memcmp(q + i, "last_event_id", 13) && !out->last_event_id[0]) {
            if (!url_decode(val, vlen, out->last_event_id, sizeof out->last_event_id))
                out->last_event_id[0] = '\0'; /* junk: no resume, the current state */
        }
        i = j + 1;
    }
    return problem(0, NULL, NULL);
}

/* Copies a header value (trimmed) into out; false when it does not fit. */
static bool header_copy(const char *v, size_t n, char *out, size_t outlen)
{
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
        n--;
    if (n >= outlen)
        return false;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

sse_problem sse_request_parse(const char *buf, size_t len, sse_request *out)
{
    memset(out, 0, sizeof *out);
    const char *end = buf + len;
    const char *eol = memchr(buf, '\n', len);
    if (!eol)
        return problem(400, "BAD_REQUEST", "no request line");
    /* request line: METHOD SP TARGET SP VERSION */
    const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7))
        return problem(400, "BAD_REQUEST", "malformed request line");
    const char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - target);
    const char *qm = memchr(target, '?', tlen);
    size_t plen = qm ? (size_t)(qm - target) : tlen;
    if (plen != 11 || memcmp(target, "/api/events", 11))
        return problem(404, "NOT_FOUND", "no such resource");
    if ((size_t)(sp1 - buf) != 3 || memcmp(buf, "GET", 3))
        return problem(405, "METHOD_NOT_ALLOWED", "use GET");
    /* headers */
    char lei[sizeof out->last_event_id] = "";
    for (const char *line = eol + 1; line < end;) {
        const char *le = memchr(line, '\n', (size_t)(end - line));
        if (!le)
            le = end;
        size_t ll = (size_t)(le - line);
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            break;
        const char *colon = memchr(line, ':', ll);
        if (colon) {
            size_t nl = (size_t)(colon - line);
            const char *v = colon + 1;
            size_t vl = ll - nl - 1;
            bool fits = true;
            if (nl == 13 && !strncasecmp(line, "Authorization", 13))
                fits = header_copy(v, vl, out->authorization, sizeof out->authorization);
            else if (nl == 13 && !strncasecmp(line, "Last-Event-ID", 13)) {
                if (!header_copy(v, vl, lei, sizeof lei))
                    lei[0] = '\0'; /* junk: no resume */
            } else if (nl == 15 && !strncasecmp(line, "X-Forwarded-For", 15))
                fits = header_copy(v, vl, out->forwarded_for, sizeof out->forwarded_for);
            else if (nl == 12 && !strncasecmp(line, "X-Request-Id", 12)) {
                char rid[sizeof out->request_id];
                if (header_copy(v, vl, rid, sizeof rid) && sane_request_id(rid, strlen(rid)))
                    snprintf(out->request_id, sizeof out->request_id, "%s", rid);
            }
            if (!fits)
                return problem(431, "HEADERS_TOO_LARGE", "a request header is too large");
        }
        line = le + 1;
    }
    sse_problem p = parse_query(qm ? qm + 1 : target + tlen, qm ? (size_t)(sp2 - qm - 1) : 0, out);
    if (p.status)
        return p;
    if (lei[0]) /* the header wins over the query */
        snprintf(out->last_event_id, sizeof out->last_event_id, "%s", lei);
    return p;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return status < 500 ? "Client Error" : "Server Error";
    }
}

char *sse_error_response(int status, const char *code, const char *message, const char *request_id,
                         const char *extra_headers, size_t *len)
{
    char *body = dump(json_pack("{s:{s:s,s:s,s:s}}", "error", "code", code, "message", message,
                                "request_id", request_id));
    if (!body)
        return NULL;
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f) {
        free(body);
        return NULL;
    }
    fprintf(f,
            "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
            "X-Request-Id: %s\r\nCache-Control: no-store\r\nConnection: close\r\n%s\r\n%s",
            status, reason_phrase(status), strlen(body), request_id,
            extra_headers ? extra_headers : "", body);
    free(body);
    if (fclose(f)) {
        free(out);
        return NULL;
    }
    *len = n;
    return out;
}

char *sse_stream_head(const char *request_id, long retry_ms, size_t *len)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f)
        return NULL;
    fprintf(f,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            "X-Accel-Buffering: no\r\nX-Request-Id: %s\r\nConnection: close\r\n\r\n"
            "retry: %ld\n\n",
            request_id, retry_ms);
    if (fclose(f)) {
        free(out);
        return NULL;
    }
    *len = n;
    return out;
}
