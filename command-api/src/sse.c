/* The event server of GET /api/events; see sse.h for the contract and sse_event.h for the
 * frames, the replay ring and the request.
 *
 * Threads and locks:
 *   - the bus's threads call on_product / on_order with the bus's lock held: they format
 *     the event, push it into the ring under ring_lock and wake the hub (eventfd) if a
 *     stream is attached (with none, the hub catches up when one attaches);
 *   - the hub thread owns every connection, the subscription index and the counters; it
 *     reads the ring under ring_lock (lock order: the bus's lock, then ring_lock);
 *   - workers take connections whose login token needs its session checked from `todo`
 *     and put them on `done` (both under q_lock), waking the hub.
 * A connection is always owned by exactly one of: the hub, the worker queue, a worker. */
#include "sse.h"
#include "accounts.h"
#include "http.h"
#include "metrics.h"
#include "sse_event.h"

#include "fs/id.h"
#include "fs/jwt.h"
#include "fs/log.h"
#include "fs/map.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEADER_TIMEOUT_MS 5000
#define RETRY_MS 2000
#define MAX_WORKERS 16

typedef enum { C_HEADER, C_WORKER, C_STREAM, C_CLOSING } conn_state;

typedef struct conn {
    int fd;
    conn_state state;
    int64_t deadline;  /* monotonic ms: the header by then (C_HEADER), the error written (C_CLOSING) */
    char *in;          /* the header block while reading it */
    size_t inlen;
    char client[FS_ADDR_STR_MAX];
    bool addr_counted, member_counted, streaming_counted;
    sse_request *req;  /* from the parsed header until attached */
    fs_principal who;
    bool authed;
    sse_problem refused; /* a worker's verdict */
    char *out;         /* unsent output: out[outoff..outlen) */
    size_t outlen, outoff, outcap;
    bool want_out;     /* EPOLLOUT registered */
    bool dirty;        /* on the hub's dirty list */
    bool drop;         /* its buffer overflowed during a fan-out: closed after it */
    int nkeys;         /* subscriptions: products then the member */
    char (*keys)[INV_ID_MAX];
    bool member_key;   /* the last key is the member's */
    struct conn *prev, *next, *qnext;
} conn;

typedef struct {
    conn **v;
    size_t n, cap;
} conn_list;

struct api_sse {
    api_ctx *a;
    const fs_addr_list *trusted;
    long heartbeat_s, max_streams, per_member, per_addr, buffer_bytes, replay, nworkers;
    int lfd, efd, epfd;
    atomic_int woken; /* efd written and not yet read by the hub: later wakes need not write */
    char listen[96];
    pthread_t hub;
    pthread_t workers[MAX_WORKERS];
    atomic_int stop, stop_workers;

    pthread_mutex_t ring_lock;
    sse_ring *ring;
    uint64_t fanned; /* the hub: events up to this seq are fanned out (hub thread only) */
    bool fan_due;    /* the hub: a stream attached since the last fan-out (hub thread only) */

    pthread_mutex_t q_lock;
    pthread_cond_t q_cond;
    conn *todo_head, *todo_tail, *done;
    long todo_n;

    /* hub thread only */
    conn *all;
    long nconns;
    fs_map *by_product, *by_member; /* key -> conn_list* */
    sse_counts *per_addr_n, *per_member_n;
    conn_list dirty;
    int64_t next_hb;

    /* metrics (any thread reads) */
    atomic_long g_streams, g_member_streams, g_pending;
    atomic_ulong c_opened, c_events, c_dropped_slow, c_refused_member, c_refused_addr,
        c_refused_full, c_resumed, c_resume_state, c_bad;
};

static api_sse *route_sse; /* for the civetweb route; set once at start */

/* ---- feed: the bus's listener (bus threads, the bus's lock held) ------------------------ */

/* Wakes the hub (a write to its eventfd), unless a wake is already pending: the hub clears
 * `woken` before it looks at what it was woken for, so what was handed over before a skipped
 * write is seen by that look. (One write per order event cost the reply thread a system
 * call under the bus lock.) */
static void wake(api_sse *s)
{
    if (atomic_exchange(&s->woken, 1))
        return;
    uint64_t one = 1;
    ssize_t r = write(s->efd, &one, sizeof one);
    (void)r; /* a full counter still wakes the hub */
}

static void push(api_sse *s, sse_kind kind, const char *key, char *data)
{
    if (!data)
        return;
    pthread_mutex_lock(&s->ring_lock);
    sse_ring_push(s->ring, kind, key, data);
    pthread_mutex_unlock(&s->ring_lock);
    free(data);
    /* With no stream attached the hub has no one to fan out to, and this thread (the order
     * front's, for a decision) does not wake it: that was a system call and a wake-up of
     * the hub for nearly every order event. The ring keeps the event for a resume; the hub catches up
     * when a stream attaches (catch_up), and fans out what came after (fan_due). An event
     * pushed while a first stream attaches is either before that catch-up or after the
     * stream was counted (seen here, so the hub is woken) or it is fanned out by fan_due. */
    if (atomic_load(&s->g_streams) > 0)
        wake(s);
}

static void on_product(void *ctx, const inv_product_view *v, int64_t at)
{
    api_sse *s = ctx;
    push(s, SSE_KIND_STOCK, v->id, sse_stock_data(v, fs_now_ms(), at));
}

static void on_order(void *ctx, const api_order *o, const char *reason, int64_t at)
{
    api_sse *s = ctx;
    push(s, SSE_KIND_ORDER, o->member_id,
         sse_order_data(o->order_id, api_order_current_status(o), reason, o->version, at));
}

/* ---- connections (hub thread) ----------------------------------------------------------- */

static bool out_append(api_sse *s, conn *c, const char *data, size_t len)
{
    if (c->state == C_CLOSING && c->outlen)
        return false; /* an error answer is all it gets */
    if (c->outoff && c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
    if (c->outlen - c->outoff + len > (size_t)s->buffer_bytes && c->state == C_STREAM)
        return false;
    if (c->outlen + len > c->outcap) {
        if (c->outoff) { /* compact first */
            memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
            c->outlen -= c->outoff;
            c->outoff = 0;
        }
        size_t cap = c->outcap ? c->outcap : 4096;
        while (c->outlen + len > cap)
            cap *= 2;
        if (cap != c->outcap) {
            char *n = realloc(c->out, cap);
            if (!n)
                return false;
            c->out = n;
            c->outcap = cap;
        }
    }
    memcpy(c->out + c->outlen, data, len);
    c->outlen += len;
    if (!c->dirty) {
        if (s->dirty.n == s->dirty.cap) {
            size_t cap = s->dirty.cap ? s->dirty.cap * 2 : 256;
            conn **v = realloc(s->dirty.v, cap * sizeof *v);
            if (!v)
                return true; /* flushed on its next event or heartbeat */
            s->dirty.v = v;
            s->dirty.cap = cap;
        }
        s->dirty.v[s->dirty.n++] = c;
        c->dirty = true;
    }
    return true;
}

static void list_remove(fs_map *m, const char *key, conn *c)
{
    conn_list *l = fs_map_get(m, key);
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == c) {
            l->v[i] = l->v[--l->n];
            break;
        }
    if (l->n == 0) {
        fs_map_del(m, key);
        free(l->v);
        free(l);
    }
}

static bool list_add(fs_map *m, const char *key, conn *c)
{
    conn_list *l = fs_map_get(m, key);
    if (!l) {
        l = calloc(1, sizeof *l);
        if (!l || fs_map_put(m, key, l) == (void *)-1) {
            free(l);
            return false;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        conn **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = c;
    return true;
}

static void conn_close(api_sse *s, conn *c)
{
    for (int i = 0; i < c->nkeys; i++)
        list_remove(c->member_key && i == c->nkeys - 1 ? s->by_member : s->by_product, c->keys[i], c);
    if (c->addr_counted)
        sse_counts_put(s->per_addr_n, c->client);
    if (c->member_counted)
        sse_counts_put(s->per_member_n, c->who.sub);
    if (c->streaming_counted) {
        atomic_fetch_sub(&s->g_streams, 1);
        if (c->member_key)
            atomic_fetch_sub(&s->g_member_streams, 1);
    } else
        atomic_fetch_sub(&s->g_pending, 1);
    for (size_t i = 0; c->dirty && i < s->dirty.n; i++)
        if (s->dirty.v[i] == c)
            s->dirty.v[i] = NULL;
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c->in);
    free(c->req);
    free(c->out);
    free(c->keys);
    free(c);
}

/* Writes what it can; false when the connection is finished (closed here). */
static bool conn_flush(api_sse *s, conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (n > 0) {
            c->outoff += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
                epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
                c->want_out = true;
            }
            return true;
        }
        if (n < 0 && errno == EINTR)
            continue;
        conn_close(s, c);
        return false;
    }
    c->outoff = c->outlen = 0;
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = false;
    }
    if (c->state == C_CLOSING) {
        shutdown(c->fd, SHUT_WR);
        conn_close(s, c);
        return false;
    }
    return true;
}

static void flush_dirty(api_sse *s)
{
    for (size_t i = 0; i < s->dirty.n; i++) {
        conn *c = s->dirty.v[i];
        if (!c)
            continue;
        c->dirty = false;
        s->dirty.v[i] = NULL;
        conn_flush(s, c);
    }
    s->dirty.n = 0;
}

/* Answers an error and closes once it is written (or after 5 s). */
static void conn_refuse(api_sse *s, conn *c, int status, const char *code, const char *message,
                        const char *extra)
{
    char rid[FS_UUID_STR_LEN + 1];
    const char *request_id = c->req && c->req->request_id[0] ? c->req->request_id : NULL;
    if (!request_id) {
        fs_uuid7_str(rid);
        request_id = rid;
    }
    size_t len = 0;
    char *resp = sse_error_response(status, code, message, request_id, extra, &len);
    c->state = C_CLOSING;
    c->deadline = fs_mono_ms() + HEADER_TIMEOUT_MS;
    if (!resp || !out_append(s, c, resp, len)) {
        free(resp);
        conn_close(s, c);
        return;
    }
    free(resp);
}

static void drop_slow(api_sse *s, conn *c)
{
    atomic_fetch_add(&s->c_dropped_slow, 1);
    fs_log_info("event stream dropped: the client reads too slowly",
                json_pack("{s:s,s:I}", "client", c->client, "unsent", (json_int_t)(c->outlen - c->outoff)));
    conn_close(s, c);
}

/* ---- attaching a stream (hub thread) ---------------------------------------------------- */

typedef struct {
    api_sse *s;
    conn *c;
    sse_problem p;
    bool resumed;
} attach_ctx;

static void attach_order(void *ctx, const api_order *o)
{
    attach_ctx *x = ctx;
    int st = ord_status_parse(api_order_current_status(o));
    if (st >= 0 && ord_status_is_terminal((ord_status)st))
        return;
    const char *reason = o->saga_status[0] ? o->saga_reason
                         : o->status == API_ORDER_REJECTED ? inv_reason_name(o->reason)
                                                           : "";
    char *data = sse_order_data(o->order_id, api_order_current_status(o), reason, o->version,
                                o->nhistory ? o->history[o->nhistory - 1].at : fs_now_ms());
    char id[SSE_ID_MAX];
    sse_id_format(sse_ring_epoch(x->s->ring), x->s->fanned, id);
    size_t len = 0;
    char *f = data ? sse_frame(id, SSE_KIND_ORDER, data, &len) : NULL;
    if (f)
        out_append(x->s, x->c, f, len);
    free(f);
    free(data);
}

/* Under the bus's lock: checks the products, then writes the stream's start (a replay from
 * the ring, or the current state) as of event `fanned`, so that fan-out goes on from there. */
static void attach_locked(void *arg)
{
    attach_ctx *x = arg;
    api_sse *s = x->s;
    conn *c = x->c;
    const sse_request *r = c->req;
    inv_product_view views[SSE_MAX_PRODUCTS];
    for (int i = 0; i < r->nproducts; i++)
        if (!api_bus_product_locked(s->a->bus, r->products[i], &views[i])) {
            x->p = (sse_problem){400, "INVALID_FIELD", "product: no such product"};
            return;
        }
    uint64_t seq = 0;
    pthread_mutex_lock(&s->ring_lock);
    bool resume = r->last_event_id[0] && sse_id_parse(r->last_event_id, sse_ring_epoch(s->ring), &seq) &&
                  seq <= s->fanned && sse_ring_holds_after(s->ring, seq);
    if (resume) {
        for (uint64_t q = seq + 1; q <= s->fanned; q++) {
            const sse_entry *e = sse_ring_get(s->ring, q);
            if (!e)
                continue;
            bool mine = false;
            if (e->kind == SSE_KIND_STOCK)
                for (int i = 0; i < r->nproducts && !mine; i++)
                    mine = !strcmp(r->products[i], e->key);
            else
                mine = c->authed && !strcmp(c->who.sub, e->key);
            if (mine)
                out_append(s, c, e->frame, e->len);
        }
        x->resumed = true;
    }
    pthread_mutex_unlock(&s->ring_lock);
    if (resume)
        return;
    /* the current state, numbered as of `fanned`: later events follow from the fan-out */
    char id[SSE_ID_MAX];
    sse_id_format(sse_ring_epoch(s->ring), s->fanned, id);
    int64_t now = fs_now_ms();
    for (int i = 0; i < r->nproducts; i++) {
        char *data = sse_stock_data(&views[i], now, now);
        size_t len = 0;
        char *f = data ? sse_frame(id, SSE_KIND_STOCK, data, &len) : NULL;
        if (f)
            out_append(s, c, f, len);
        free(f);
        free(data);
    }
    if (r->last_event_id[0] && c->authed) /* a resume we cannot replay: the open orders too */
        api_bus_member_orders_locked(s->a->bus, c->who.sub, attach_order, x);
}

/* With no stream attached, marks every event in the ring as fanned out (to no one): the
 * hub is not woken for them (push). True when it did. Hub thread. */
static bool catch_up(api_sse *s)
{
    if (atomic_load(&s->g_streams) > 0)
        return false;
    pthread_mutex_lock(&s->ring_lock);
    s->fanned = sse_ring_head(s->ring);
    pthread_mutex_unlock(&s->ring_lock);
    return true;
}

static void attach(api_sse *s, conn *c)
{
    if (c->refused.status) {
        const char *extra = c->refused.status == 401 ? "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n"
                            : c->refused.status == 503 ? "Retry-After: 1\r\n"
                                                       : NULL;
        conn_refuse(s, c, c->refused.status, c->refused.code, c->refused.message, extra);
        return;
    }
    if (!api_bus_caught_up(s->a->bus)) {
        conn_refuse(s, c, 503, "UNAVAILABLE", "the decision stream is catching up; retry shortly",
                    "Retry-After: 1\r\n");
        return;
    }
    if (c->authed && !sse_counts_take(s->per_member_n, c->who.sub, s->per_member)) {
        atomic_fetch_add(&s->c_refused_member, 1);
        conn_refuse(s, c, 429, "TOO_MANY_STREAMS", "too many open event streams for this member",
                    "Retry-After: 5\r\n");
        return;
    }
    c->member_counted = c->authed;
    if (!c->req->request_id[0])
        fs_uuid7_str(c->req->request_id);
    size_t hlen = 0;
    char *head = sse_stream_head(c->req->request_id, RETRY_MS, &hlen);
    if (!head || !out_append(s, c, head, hlen)) {
        free(head);
        conn_refuse(s, c, 503, "UNAVAILABLE", "out of memory", "Retry-After: 1\r\n");
        return;
    }
    free(head);
    catch_up(s); /* the first stream: from the ring's head, not from where the hub stopped */
    attach_ctx x = {.s = s, .c = c};
    api_bus_locked(s->a->bus, attach_locked, &x);
    if (x.p.status) {
        c->outlen = c->outoff = 0; /* the stream's head is not sent */
        conn_refuse(s, c, x.p.status, x.p.code, x.p.message, NULL);
        return;
    }
    const sse_request *r = c->req;
    c->keys = calloc((size_t)r->nproducts + 1, sizeof *c->keys);
    if (!c->keys) {
        conn_close(s, c);
        return;
    }
    for (int i = 0; i < r->nproducts; i++) {
        snprintf(c->keys[c->nkeys], INV_ID_MAX, "%s", r->products[i]);
        if (list_add(s->by_product, r->products[i], c))
            c->nkeys++;
    }
    if (c->authed) {
        snprintf(c->keys[c->nkeys], INV_ID_MAX, "%s", c->who.sub);
        if (list_add(s->by_member, c->who.sub, c)) {
            c->nkeys++;
            c->member_key = true;
        }
    }
    if (r->last_event_id[0])
        atomic_fetch_add(x.resumed ? &s->c_resumed : &s->c_resume_state, 1);
    free(c->req);
    c->req = NULL;
    c->state = C_STREAM;
    c->streaming_counted = true;
    atomic_fetch_sub(&s->g_pending, 1);
    atomic_fetch_add(&s->g_streams, 1);
    if (c->member_key)
        atomic_fetch_add(&s->g_member_streams, 1);
    atomic_fetch_add(&s->c_opened, 1);
    s->fan_due = true; /* what was pushed, unwoken, since catch_up */
}

/* ---- the header (hub thread) ------------------------------------------------------------ */

static void header_done(api_sse *s, conn *c, size_t len)
{
    char peer[FS_ADDR_STR_MAX] = "";
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, peer, sizeof peer);
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, peer, sizeof peer);
    }
    c->req = malloc(sizeof *c->req);
    if (!c->req) {
        conn_close(s, c);
        return;
    }
    sse_problem p = sse_request_parse(c->in, len, c->req);
    free(c->in);
    c->in = NULL;
    fs_client_addr(s->trusted, peer, c->req->forwarded_for[0] ? c->req->forwarded_for : NULL, c->client,
                   sizeof c->client);
    if (p.status) {
        atomic_fetch_add(&s->c_bad, 1);
        conn_refuse(s, c, p.status, p.code, p.message, p.status == 405 ? "Allow: GET\r\n" : NULL);
        return;
    }
    if (!sse_counts_take(s->per_addr_n, c->client, s->per_addr)) {
        atomic_fetch_add(&s->c_refused_addr, 1);
        conn_refuse(s, c, 429, "TOO_MANY_STREAMS", "too many open event streams from this address",
                    "Retry-After: 5\r\n");
        return;
    }
    c->addr_counted = true;
    if (c->req->authorization[0]) {
        switch (fs_jwt_verify(s->a->jwt_secret, c->req->authorization, (int64_t)time(NULL), &c->who)) {
        case FS_JWT_OK:
            c->authed = true;
            break;
        case FS_JWT_EXPIRED:
            atomic_fetch_add(&s->c_bad, 1);
            conn_refuse(s, c, 401, "TOKEN_EXPIRED", "the access token has expired",
                        "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
            return;
        default:
            atomic_fetch_add(&s->c_bad, 1);
            conn_refuse(s, c, 401, "INVALID_TOKEN", "the access token is not valid",
                        "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
            return;
        }
    }
    if (c->authed && c->who.gen >= 0) { /* a login token: its session, at a worker */
        pthread_mutex_lock(&s->q_lock);
        bool full = s->todo_n >= 1024;
        if (!full) {
            c->state = C_WORKER;
            c->qnext = NULL;
            if (s->todo_tail)
                s->todo_tail->qnext = c;
            else
                s->todo_head = c;
            s->todo_tail = c;
            s->todo_n++;
            pthread_cond_signal(&s->q_cond);
        }
        pthread_mutex_unlock(&s->q_lock);
        if (full)
            conn_refuse(s, c, 503, "UNAVAILABLE", "too many streams starting at once; retry shortly",
                        "Retry-After: 1\r\n");
        else
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL); /* the worker's until it is back */
        return;
    }
    attach(s, c);
}

static void on_readable(api_sse *s, conn *c)
{
    if (c->state != C_HEADER) { /* a stream's client says nothing more: read and forget */
        char junk[512];
        for (;;) {
            ssize_t n = recv(c->fd, junk, sizeof junk, 0);
            if (n > 0)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            if (n < 0 && errno == EINTR)
                continue;
            conn_close(s, c); /* EOF or error: the client went away */
            return;
        }
    }
    for (;;) {
        if (c->inlen >= SSE_HEADER_MAX) {
            conn_refuse(s, c, 431, "HEADERS_TOO_LARGE", "the request line or headers are too large", NULL);
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->inlen, SSE_HEADER_MAX - c->inlen, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            conn_close(s, c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* wait for more */
        }
        size_t from = c->inlen > 3 ? c->inlen - 3 : 0;
        c->inlen += (size_t)n;
        for (size_t i = from; i < c->inlen; i++) {
            size_t end = 0;
            if (i + 3 < c->inlen && !memcmp(c->in + i, "\r\n\r\n", 4))
                end = i + 4;
            else if (i + 1 < c->inlen && !memcmp(c->in + i, "\n\n", 2))
                end = i + 2;
            if (end) {
                header_done(s, c, end);
                return;
            }
        }
    }
}

static void on_accept(api_sse *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or out of descriptors: the backlog waits */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        char *in = c ? malloc(SSE_HEADER_MAX) : NULL;
        if (!c || !in) {
            free(c);
            free(in);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->in = in;
        c->state = C_HEADER;
        c->deadline = fs_mono_ms() + HEADER_TIMEOUT_MS;
        c->next = s->all;
        if (s->all)
            s->all->prev = c;
        s->all = c;
        s->nconns++;
        atomic_fetch_add(&s->g_pending, 1);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev)) {
            conn_close(s, c);
            continue;
        }
        if (s->nconns > s->max_streams) {
            atomic_fetch_add(&s->c_refused_full, 1);
            conn_refuse(s, c, 503, "UNAVAILABLE", "this server holds as many event streams as it may",
                        "Retry-After: 5\r\n");
        }
    }
}

/* ---- fan-out and heartbeats (hub thread) ------------------------------------------------ */

static void fan_out(api_sse *s)
{
    if (catch_up(s))
        return;
    pthread_mutex_lock(&s->ring_lock);
    uint64_t head = sse_ring_head(s->ring);
    bool lost = false;
    size_t dropped = 0;
    for (uint64_t q = s->fanned + 1; q <= head; q++) {
        const sse_entry *e = sse_ring_get(s->ring, q);
        if (!e) { /* overwritten before the hub got to it: every stream has a gap */
            lost = true;
            continue;
        }
        conn_list *l = fs_map_get(e->kind == SSE_KIND_STOCK ? s->by_product : s->by_member, e->key);
        for (size_t i = 0; l && i < l->n; i++) {
            conn *c = l->v[i];
            if (out_append(s, c, e->frame, e->len))
                atomic_fetch_add(&s->c_events, 1);
            else if (!c->drop) { /* closed after the loop: closing edits this list */
                c->drop = true;
                dropped++;
            }
        }
    }
    s->fanned = head;
    pthread_mutex_unlock(&s->ring_lock);
    if (lost)
        fs_log_warn("event streams closed: the ring overran before fan-out (resumed from the state)", NULL);
    for (conn *c = s->all, *n; c && (lost || dropped); c = n) {
        n = c->next;
        if (c->drop)
            drop_slow(s, c);
        else if (lost && c->state == C_STREAM)
            conn_close(s, c);
    }
}

static void heartbeat(api_sse *s)
{
    char hb[40];
    size_t n = sse_heartbeat(fs_now_ms(), hb);
    for (conn *c = s->all, *next; c; c = next) {
        next = c->next;
        if (c->state == C_STREAM && !out_append(s, c, hb, n))
            drop_slow(s, c);
    }
}

static void expire(api_sse *s, int64_t now)
{
    for (conn *c = s->all, *next; c; c = next) {
        next = c->next;
        if ((c->state == C_HEADER || c->state == C_CLOSING) && now >= c->deadline)
            conn_close(s, c);
    }
}

static void take_done(api_sse *s)
{
    pthread_mutex_lock(&s->q_lock);
    conn *d = s->done;
    s->done = NULL;
    pthread_mutex_unlock(&s->q_lock);
    while (d) {
        conn *c = d;
        d = d->qnext;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        c->want_out = false;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, c->fd, &ev)) {
            conn_close(s, c);
            continue;
        }
        attach(s, c);
    }
}

static char listen_tag, event_tag;

static void *hub_main(void *arg)
{
    pthread_setname_np(pthread_self(), "api-sse-hub"); /* for per-thread CPU (perf/profile) */
    api_sse *s = arg;
    fs_log_set_cid("event-streams");
    struct epoll_event evs[256];
    s->next_hb = fs_mono_ms() + s->heartbeat_s * 1000;
    int64_t last_expire = 0;
    while (!atomic_load(&s->stop)) {
        int n = epoll_wait(s->epfd, evs, 256, 200);
        bool woken = false;
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &listen_tag)
                on_accept(s);
            else if (p == &event_tag) {
                uint64_t v;
                ssize_t r = read(s->efd, &v, sizeof v);
                (void)r;
                atomic_store(&s->woken, 0); /* before looking: a later hand-over writes again */
                woken = true;
            } else {
                conn *c = p;
                if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                    conn_close(s, c);
                    continue;
                }
                if (evs[i].events & EPOLLOUT) {
                    if (!conn_flush(s, c))
                        continue;
                }
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
                    on_readable(s, c);
            }
        }
        /* After the batch: a fan-out closes streams whose buffer overflowed, and a later
         * entry of the batch may name one of them. */
        if (woken)
            take_done(s);
        if (woken || s->fan_due) {
            s->fan_due = false;
            fan_out(s);
        }
        int64_t now = fs_mono_ms();
        if (now >= s->next_hb) {
            heartbeat(s);
            s->next_hb = now + s->heartbeat_s * 1000;
        }
        if (now - last_expire >= 200) {
            expire(s, now);
            last_expire = now;
        }
        flush_dirty(s);
    }
    while (s->all)
        conn_close(s, s->all);
    return NULL;
}

/* ---- workers: the session of a login token ---------------------------------------------- */

static sse_problem session_check(api_ctx *a, const fs_principal *who)
{
    int64_t gen;
    member_status st;
    fs_err err = {0};
    if (api_member_state(a, who->sub, &gen, &st, &err))
        return (sse_problem){503, "UNAVAILABLE", "the members store is unavailable"};
    int revoked = st == MEMBER_NONE || st == MEMBER_DELETED || gen != who->gen ? 1
                  : who->sid[0] ? api_session_revoked(a, who->sid, &err) : 0;
    api_pg_release();
    if (revoked < 0)
        return (sse_problem){503, "UNAVAILABLE", "the session store is unavailable"};
    if (revoked)
        return (sse_problem){401, "SESSION_ENDED", "this session has ended: log in again"};
    return (sse_problem){0, NULL, NULL};
}

static void *worker_main(void *arg)
{
    pthread_setname_np(pthread_self(), "api-sse"); /* for per-thread CPU (perf/profile) */
    api_sse *s = arg;
    fs_log_set_cid("event-streams");
    for (;;) {
        pthread_mutex_lock(&s->q_lock);
        while (!s->todo_head && !atomic_load(&s->stop_workers))
            pthread_cond_wait(&s->q_cond, &s->q_lock);
        conn *c = s->todo_head;
        if (!c) {
            pthread_mutex_unlock(&s->q_lock);
            return NULL;
        }
        s->todo_head = c->qnext;
        if (!s->todo_head)
            s->todo_tail = NULL;
        s->todo_n--;
        pthread_mutex_unlock(&s->q_lock);
        c->refused = session_check(s->a, &c->who);
        pthread_mutex_lock(&s->q_lock);
        c->qnext = s->done;
        s->done = c;
        pthread_mutex_unlock(&s->q_lock);
        wake(s);
    }
}

/* ---- start and stop --------------------------------------------------------------------- */

api_sse *api_sse_start(api_ctx *a, const char *default_addr, const fs_addr_list *trusted, fs_err *err)
{
    long port;
    const char *addr;
    if (fs_env_int("FLASHSALE_SSE_PORT", 0, 0, 65535, &port, err) ||
        fs_env_str("FLASHSALE_SSE_ADDR", default_addr, false, &addr, err))
        return NULL;
    if (port == 0)
        return NULL;
    api_sse *s = calloc(1, sizeof *s);
    if (!s) {
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        return NULL;
    }
    s->a = a;
    s->trusted = trusted;
    s->lfd = s->efd = s->epfd = -1;
    if (fs_env_int("FLASHSALE_SSE_HEARTBEAT_S", 15, 1, 3600, &s->heartbeat_s, err) ||
        fs_env_int("FLASHSALE_SSE_MAX_STREAMS", 10000, 1, 1000000, &s->max_streams, err) ||
        fs_env_int("FLASHSALE_SSE_PER_MEMBER", 4, 1, 10000, &s->per_member, err) ||
        fs_env_int("FLASHSALE_SSE_PER_ADDR", 16, 1, 1000000, &s->per_addr, err) ||
        fs_env_int("FLASHSALE_SSE_BUFFER_BYTES", 262144, 4096, 64L << 20, &s->buffer_bytes, err) ||
        fs_env_int("FLASHSALE_SSE_REPLAY_EVENTS", 65536, 16, 10000000, &s->replay, err) ||
        fs_env_int("FLASHSALE_SSE_WORKERS", 2, 1, MAX_WORKERS, &s->nworkers, err)) {
        free(s);
        return NULL;
    }
    /* every stream is a descriptor: raise the soft limit to the hard one, and hold fewer
     * streams than it allows (civetweb, Kafka and the pools need some too) */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)s->max_streams + 2048 > rl.rlim_cur) {
            long fit = rl.rlim_cur > 4096 ? (long)rl.rlim_cur - 2048 : (long)rl.rlim_cur / 2;
            fs_log_warn("FLASHSALE_SSE_MAX_STREAMS lowered to what the descriptor limit allows",
                        json_pack("{s:I,s:I}", "asked", (json_int_t)s->max_streams, "held", (json_int_t)fit));
            s->max_streams = fit;
        }
    }
    pthread_mutex_init(&s->ring_lock, NULL);
    pthread_mutex_init(&s->q_lock, NULL);
    pthread_cond_init(&s->q_cond, NULL);
    s->ring = sse_ring_new((size_t)s->replay, (uint64_t)fs_now_ms());
    s->by_product = fs_map_new(1024);
    s->by_member = fs_map_new(1024);
    s->per_addr_n = sse_counts_new();
    s->per_member_n = sse_counts_new();
    if (!s->ring || !s->by_product || !s->by_member || !s->per_addr_n || !s->per_member_n) {
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        goto fail;
    }
    if ((s->lfd = api_listen_tcp(addr, port, "event streams", err)) < 0)
        goto fail;
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = &listen_tag};
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &event_tag};
    if (s->efd < 0 || s->epfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &le) ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->efd, &ee)) {
        fs_err_set(err, FS_ERR_FATAL, errno, "event streams: epoll: %s", strerror(errno));
        goto fail;
    }
    snprintf(s->listen, sizeof s->listen, "%s:%ld", addr, port);
    if (pthread_create(&s->hub, NULL, hub_main, s)) {
        fs_err_set(err, FS_ERR_FATAL, 0, "event streams: no thread");
        goto fail;
    }
    long started = 0;
    for (; started < s->nworkers; started++)
        if (pthread_create(&s->workers[started], NULL, worker_main, s))
            break;
    s->nworkers = started;
    api_bus_listen(a->bus, &(api_bus_listener){.product_changed = on_product, .order_changed = on_order, .ctx = s});
    fs_log_info("event streams", json_pack("{s:s,s:I,s:I,s:I,s:I}", "listen", s->listen, "heartbeat_s",
                                           (json_int_t)s->heartbeat_s, "max_streams", (json_int_t)s->max_streams,
                                           "per_member", (json_int_t)s->per_member, "per_addr",
                                           (json_int_t)s->per_addr));
    return s;
fail:
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->efd >= 0)
        close(s->efd);
    if (s->epfd >= 0)
        close(s->epfd);
    sse_ring_destroy(s->ring);
    fs_map_destroy(s->by_product);
    fs_map_destroy(s->by_member);
    sse_counts_destroy(s->per_addr_n);
    sse_counts_destroy(s->per_member_n);
    pthread_mutex_destroy(&s->ring_lock);
    pthread_mutex_destroy(&s->q_lock);
    pthread_cond_destroy(&s->q_cond);
    free(s);
    return NULL;
}

void api_sse_stop(api_sse *s)
{
    if (!s)
        return;
    api_bus_listen(s->a->bus, &(api_bus_listener){0});
    /* the workers first (they finish what is queued), then the hub, which closes every
     * connection: each is on its list of all connections wherever it is */
    atomic_store(&s->stop_workers, 1);
    pthread_mutex_lock(&s->q_lock);
    pthread_cond_broadcast(&s->q_cond);
    pthread_mutex_unlock(&s->q_lock);
    for (long i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    atomic_store(&s->stop, 1);
    wake(s);
    pthread_join(s->hub, NULL);
    close(s->lfd);
    close(s->efd);
    close(s->epfd);
    sse_ring_destroy(s->ring);
    fs_map_destroy(s->by_product); /* empty: every connection closed */
    fs_map_destroy(s->by_member);
    sse_counts_destroy(s->per_addr_n);
    sse_counts_destroy(s->per_member_n);
    free(s->dirty.v);
    pthread_mutex_destroy(&s->ring_lock);
    pthread_mutex_destroy(&s->q_lock);
    pthread_cond_destroy(&s->q_cond);
    free(s);
}

void api_sse_metrics(api_sse *s, FILE *f)
{
    fprintf(f,
            "# HELP flashsale_sse_streams Open event streams (GET /api/events), by kind.\n"
            "# TYPE flashsale_sse_streams gauge\n"
            "flashsale_sse_streams{kind=\"all\"} %ld\n"
            "flashsale_sse_streams{kind=\"member\"} %ld\n"
            "flashsale_sse_streams{kind=\"starting\"} %ld\n",
            s ? atomic_load(&s->g_streams) : 0L, s ? atomic_load(&s->g_member_streams) : 0L,
            s ? atomic_load(&s->g_pending) : 0L);
    if (!s)
        return;
    fprintf(f,
            "# HELP flashsale_sse_streams_total Event streams by outcome: opened, refused per member, per address, server full; bad requests; dropped as too slow; resumed from the ring or from the current state.\n"
            "# TYPE flashsale_sse_streams_total counter\n"
            "flashsale_sse_streams_total{outcome=\"opened\"} %lu\n"
            "flashsale_sse_streams_total{outcome=\"refused_member\"} %lu\n"
            "flashsale_sse_streams_total{outcome=\"refused_address\"} %lu\n"
            "flashsale_sse_streams_total{outcome=\"refused_full\"} %lu\n"
            "flashsale_sse_streams_total{outcome=\"bad_request\"} %lu\n"
            "flashsale_sse_streams_total{outcome=\"dropped_slow\"} %lu\n"
            "flashsale_sse_streams_total{outcome=\"resumed\"} %lu\n"
            "flashsale_sse_streams_total{outcome=\"resumed_from_state\"} %lu\n"
            "# HELP flashsale_sse_events_total Events written to streams' buffers.\n"
            "# TYPE flashsale_sse_events_total counter\nflashsale_sse_events_total %lu\n",
            atomic_load(&s->c_opened), atomic_load(&s->c_refused_member), atomic_load(&s->c_refused_addr),
            atomic_load(&s->c_refused_full), atomic_load(&s->c_bad), atomic_load(&s->c_dropped_slow),
            atomic_load(&s->c_resumed), atomic_load(&s->c_resume_state), atomic_load(&s->c_events));
}

/* ---- the API's own port ----------------------------------------------------------------- */

void api_sse_route_set(api_sse *s)
{
    route_sse = s;
}

int api_sse_route(struct mg_connection *mc, void *cb)
{
    (void)cb;
    fs_http_req req;
    fs_http_req_init(&req, mc, FS_ROUTE_OTHER);
    if (strcmp(req.ri->request_method, "GET"))
        return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "use GET", "Allow: GET\r\n");
    if (!route_sse)
        return fs_http_error(&req, 503, "UNAVAILABLE", "this instance serves no event streams",
                             "Retry-After: 60\r\n");
    /* the streams have a listener of their own (sse.h): send the client there, on the host
     * it asked for; the edge proxies /api/events there itself */
    const char *host = mg_get_header(mc, "Host");
    char h[256] = "127.0.0.1";
    if (host && *host && strlen(host) < sizeof h) {
        snprintf(h, sizeof h, "%s", host);
        char *colon = h[0] == '[' ? strstr(h, "]:") : strrchr(h, ':');
        if (colon)
            colon[h[0] == '[' ? 1 : 0] = '\0';
        for (char *p = h; *p; p++)
            if (*p == '\r' || *p == '\n' || *p == ' ')
                *p = '\0';
    }
    const char *port = strrchr(route_sse->listen, ':');
    const char *q = req.ri->query_string;
    char extra[1024];
    int n = snprintf(extra, sizeof extra, "Location: http://%s%s/api/events%s%s\r\n", h, port ? port : "",
                     q && *q ? "?" : "", q && *q ? q : "");
    if (n < 0 || (size_t)n >= sizeof extra || strpbrk(q ? q : "", "\r\n"))
        return fs_http_error(&req, 414, "URI_TOO_LONG", "the query is too long", NULL);
    return fs_http_error(&req, 307, "USE_EVENT_LISTENER", "event streams are served on the event listener",
                         extra);
}
