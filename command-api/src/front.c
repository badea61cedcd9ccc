/* The order front; see front.h.
 *
 * Threads and ownership:
 *   - the loop owns every connection: it reads, parses, runs api_order_begin and
 *     api_order_end, and writes;
 *   - the bus's threads only queue a waiting connection on `ready` (notify, under the bus's
 *     lock, then under q_lock) and wake the loop, once until it has looked (`woken`);
 *   - workers take checkouts from `todo`, run them (writing the answer into the
 *     connection's output, which nobody else touches meanwhile) and queue the connection on
 *     `ready` with `worker_done` set.
 * A connection on `ready` is never freed by the loop while it is queued: a closing one is
 * marked `dead` and freed when taken off the queue.
 *
 * Stopping (api_front_drain, then api_front_stop): the loop closes the listener, refuses the
 * checkouts still on `todo` and every request read from then on (503), answers what was
 * begun, and sets `drain_done` when nothing begun is left (or at the drain's deadline). It
 * goes on serving the bus's replies and delivery reports (civetweb's requests, finished by
 * mg_stop meanwhile, need them) until api_front_stop sets `stop`; then the workers are
 * joined, every wait let go, and the connections closed. */
#include "front.h"
#include "metrics.h"

#include "fs/log.h"
#include "fs/id.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEADER_MAX 16384
#define IN_START 4096
#define MAX_WORKERS 32
#define EXPIRE_EVERY_MS 200
#define STOPPING_MESSAGE "this server is stopping; nothing was placed: send the order again"

typedef enum {
    F_IDLE,    /* kept alive, no byte of the next request yet */
    F_READING, /* part of a request read */
    F_BUSY,    /* a request being answered: nothing read meanwhile */
    F_WRITING, /* an answer partly written */
    F_LINGER,  /* answered and shut for writing: what the client still sends is read and
                * dropped until it closes (or the deadline), so that closing does not reset
                * the connection before the client has read the answer */
} fstate;

typedef struct fconn fconn;
struct fconn {
    api_front *f;
    int fd;
    fstate state;
    int64_t deadline; /* monotonic ms: of the state (idle, reading, writing) */
    char *in;         /* bytes read: the current request first, then what was pipelined */
    size_t inlen, incap;
    size_t reqlen;    /* the current request's bytes (header and body) at the front of `in` */
    size_t scanned;   /* bytes of `in` searched for the header's end so far */
    size_t hlen;      /* the header's length once parsed (0: not yet) */
    long long clen;   /* its Content-Length */
    bool eof;         /* the client shut its side: answer what is in, then close */
    bool fresh;       /* no request yet on this connection (its first deadline is from accept) */
    bool continued;   /* "100 Continue" sent for the current request */
    char *out;        /* the answer: out[outoff..outlen) unsent */
    size_t outlen, outoff, outcap;
    bool close_after, out_failed;
    char *hdr; /* the current request's header block, split into NUL-terminated pieces */
    char peer[48];
    struct mg_request_info ri;
    fs_http_sink sink;
    fs_http_req req;
    api_order_call call;
    /* waiting for the decision: the loop's deadline list (oldest deadline first) */
    bool timed;
    fconn *tprev, *tnext;
    /* under q_lock */
    bool queued, dead, in_worker, worker_done, again;
    int worker_rc; /* what the worker's steps ended with (ORDER_WAITING: the loop waits) */
    fconn *qnext; /* on `ready` */
    fconn *wnext; /* on `todo` */
    fconn *prev, *next; /* every connection */
};

struct api_front {
    api_ctx *a;
    int lfd, efd, epfd;
    int dfd;          /* their eventfd (the bus's once taken over), or -1 */
    char listen[64];
    long request_ms, idle_s, max_conns, nworkers;
    fconn *all;
    long nconns;
    fconn *thead, *ttail; /* waiting for their deadline, in deadline order */
    pthread_t loop, workers[MAX_WORKERS];
    atomic_int stop, woken;
    atomic_int drain;      /* api_front_drain: answer what was begun, refuse the rest */
    atomic_int drain_done; /* (set by the loop) nothing begun is left, or the drain's time is up */
    bool draining;         /* (loop) the drain has begun */
    int64_t drain_end;     /* (loop) monotonic ms: the drain ends then at the latest */
    int64_t drain_looked;  /* (loop) when drained() last looked */
    pthread_mutex_t q_lock;
    pthread_cond_t q_cond;
    fconn *ready, *ready_tail; /* for the loop */
    fconn *todo, *todo_tail;   /* for the workers */
    /* metrics */
    atomic_long g_conns, c_requests, c_refused_full, c_timeouts, c_bad;
    int64_t accept_paused_until; /* out of descriptors: the listener is left alone until then */
};

static char listen_tag, event_tag, reply_tag, delivery_tag;
static __thread bool on_loop; /* the loop's own thread: it looks at `ready` before it sleeps */

/* ---- queues --------------------------------------------------------------------------- */

/* Makes the loop's epoll_wait return. */
static void poke(api_front *f)
{
    uint64_t one = 1;
    ssize_t w = write(f->efd, &one, sizeof one);
    (void)w;
}

static void wake(api_front *f)
{
    if (atomic_exchange(&f->woken, 1))
        return;
    poke(f);
}

/* q_lock held */
static void ready_push_locked(api_front *f, fconn *c)
{
    if (c->queued)
        return;
    c->queued = true;
    c->qnext = NULL;
    if (f->ready_tail)
        f->ready_tail->qnext = c;
    else
        f->ready = c;
    f->ready_tail = c;
}

/* The bus: the waiter's result changed (bus lock held). */
static void on_notify(void *ctx)
{
    fconn *c = ctx;
    api_front *f = c->f;
    pthread_mutex_lock(&f->q_lock);
    ready_push_locked(f, c);
    pthread_mutex_unlock(&f->q_lock);
    if (!on_loop)
        wake(f);
}

/* ---- connections (loop) --------------------------------------------------------------- */

static void timed_remove(api_front *f, fconn *c)
{
    if (!c->timed)
        return;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        f->thead = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        f->ttail = c->tprev;
    c->tprev = c->tnext = NULL;
    c->timed = false;
}

static void timed_add(api_front *f, fconn *c)
{
    /* deadlines come in the order requests do (t0 + the same wait); an earlier one is put
     * in its place from the tail */
    fconn *at = f->ttail;
    while (at && at->call.deadline > c->call.deadline)
        at = at->tprev;
    c->tprev = at;
    c->tnext = at ? at->tnext : f->thead;
    if (c->tnext)
        c->tnext->tprev = c;
    else
        f->ttail = c;
    if (at)
        at->tnext = c;
    else
        f->thead = c;
    c->timed = true;
}

static void conn_free(fconn *c)
{
    free(c->hdr);
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_close(api_front *f, fconn *c)
{
    timed_remove(f, c);
    if (c->call.w) { /* only at shutdown: a waiting request is never closed otherwise */
        api_bus_waiter_release(f->a->bus, c->call.w);
        c->call.w = NULL;
    }
    json_decref(c->call.body);
    c->call.body = NULL;
    epoll_ctl(f->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        f->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    f->nconns--;
    atomic_fetch_sub(&f->g_conns, 1);
    pthread_mutex_lock(&f->q_lock);
    bool queued = c->queued;
    if (queued)
        c->dead = true; /* freed when taken off the queue */
    pthread_mutex_unlock(&f->q_lock);
    if (!queued)
        conn_free(c);
}

static void arm(api_front *f, fconn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events | EPOLLONESHOT, .data.ptr = c};
    if (epoll_ctl(f->epfd, EPOLL_CTL_MOD, c->fd, &ev))
        conn_close(f, c);
}

/* Whether the current request is the last this connection answers: the client asked to
 * close, or shut its side with nothing read after this request. Requests it pipelined before
 * its FIN are answered first, as on an open connection. */
static bool answers_last(const fconn *c)
{
    return c->close_after || (c->eof && c->inlen <= c->reqlen);
}

/* The sink's write: the answer is kept until the loop sends it. */
static void sink_write(void *ctx, const char *data, size_t len)
{
    fconn *c = ctx;
    if (c->out_failed)
        return;
    if (c->outlen + len > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 1024;
        while (cap < c->outlen + len)
            cap *= 2;
        char *o = realloc(c->out, cap);
        if (!o) {
            c->out_failed = true; /* the connection is closed rather than half answered */
            return;
        }
        c->out = o;
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, data, len);
    c->outlen += len;
}

/* Writes what it can of the answer; when all is written, the connection goes on to its next
 * request (or is closed). */
static void conn_flush(api_front *f, fconn *c)
{
    if (c->out_failed) {
        conn_close(f, c);
        return;
    }
    while (c->outoff < c->outlen) {
        ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (n > 0) {
            c->outoff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->state != F_WRITING) {
                c->state = F_WRITING;
                c->deadline = fs_mono_ms() + f->request_ms;
            }
            arm(f, c, EPOLLOUT);
            return;
        }
        conn_close(f, c); /* the client went away */
        return;
    }
    c->outoff = c->outlen = 0;
    free(c->hdr);
    c->hdr = NULL;
    if (answers_last(c)) {
        shutdown(c->fd, SHUT_WR);
        if (c->eof) {
            conn_close(f, c);
            return;
        }
        c->state = F_LINGER;
        c->deadline = fs_mono_ms() + 2000;
        arm(f, c, EPOLLIN);
        return;
    }
    /* the answered request's bytes go; what was pipelined after it moves up */
    memmove(c->in, c->in + c->reqlen, c->inlen - c->reqlen);
    c->inlen -= c->reqlen;
    c->reqlen = c->scanned = c->hlen = 0;
    c->clen = 0;
    c->continued = false;
    if (!c->inlen && c->incap > IN_START) { /* a large body's room goes back */
        char *in = realloc(c->in, IN_START);
        if (in) {
            c->in = in;
            c->incap = IN_START;
        }
    }
    c->state = c->inlen ? F_READING : F_IDLE;
    c->deadline = fs_mono_ms() + (c->inlen ? f->request_ms : f->idle_s * 1000);
    if (!c->inlen) {
        arm(f, c, EPOLLIN);
        return;
    }
    /* pipelined: served from the ready list, after the connections already waiting */
    pthread_mutex_lock(&f->q_lock);
    c->again = true;
    ready_push_locked(f, c);
    pthread_mutex_unlock(&f->q_lock);
}

/* An error of the front itself (before any handler): the design's JSON, then close. */
static void refuse(api_front *f, fconn *c, int status, const char *code, const char *message,
                   const char *extra)
{
    memset(&c->ri, 0, sizeof c->ri);
    c->ri.request_method = "POST";
    c->ri.local_uri = "/api/orders";
    snprintf(c->ri.remote_addr, sizeof c->ri.remote_addr, "%s", c->peer);
    c->sink = (fs_http_sink){.write = sink_write, .ctx = c, .close = true};
    c->close_after = true;
    fs_http_req_init_sink(&c->req, &c->ri, &c->sink, FS_ROUTE_ORDERS_CREATE);
    fs_http_error(&c->req, status, code, message, extra);
    c->state = F_BUSY;
    conn_flush(f, c);
}

/* The request's answer is in `out`: send it. A pooled PostgreSQL connection this thread
 * took for it goes back first (civetweb's threads give theirs back as they answer). */
static void answered(api_front *f, fconn *c)
{
    api_pg_release();
    conn_flush(f, c);
}

static void malformed(api_front *f, fconn *c, int status, const char *code, const char *message)
{
    atomic_fetch_add(&f->c_bad, 1);
    refuse(f, c, status, code, message, NULL);
}

/* ---- requests (loop) -------------------------------------------------------------------- */

/* Splits the header block (len bytes, ending in an empty line) into c->ri. Returns 0, or the
 * status of what is wrong with it. */
static int parse_header(fconn *c, size_t len)
{
    free(c->hdr);
    if (!(c->hdr = malloc(len + 1)))
        return 503;
    memcpy(c->hdr, c->in, len);
    c->hdr[len] = '\0';
    if (memchr(c->hdr, '\0', len))
        return 400;
    for (size_t i = 0; i < len; i++) /* every line ends in CRLF: a bare LF is refused */
        if (c->hdr[i] == '\n' && (i == 0 || c->hdr[i - 1] != '\r'))
            return 400;
    struct mg_request_info *ri = &c->ri;
    char *save = NULL, *line = strtok_r(c->hdr, "\n", &save);
    if (!line)
        return 400;
    size_t ll = strlen(line);
    if (ll && line[ll - 1] == '\r')
        line[ll - 1] = '\0';
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) || (sp2[8] != '0' && sp2[8] != '1') || sp2[9])
        return 400;
    *sp1 = *sp2 = '\0';
    ri->request_method = line;
    ri->request_uri = sp1 + 1;
    ri->http_version = sp2 + 6;
    char *q = strchr(sp1 + 1, '?');
    if (q) {
        *q = '\0';
        ri->query_string = q + 1;
    }
    ri->local_uri = ri->local_uri_raw = sp1 + 1;
    while ((line = strtok_r(NULL, "\n", &save))) {
        ll = strlen(line);
        if (ll && line[ll - 1] == '\r')
            line[--ll] = '\0';
        if (!ll)
            break;
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            return 400; /* no nameless lines */
        for (const char *n = line; n < colon; n++) /* a name is a token: no folded lines either */
            if (*n <= ' ' || *n >= 127 || strchr("\"(),/:;<=>?@[\\]{}", *n))
                return 400;
        if (ri->num_headers >= MG_MAX_HEADERS)
            return 431;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *e = v + strlen(v);
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        ri->http_headers[ri->num_headers].name = line;
        ri->http_headers[ri->num_headers].value = v;
        ri->num_headers++;
    }
    return 0;
}

/* The header's value; *dup set when it is given more than once. */
static const char *header(const fconn *c, const char *name, bool *dup)
{
    const char *v = NULL;
    for (int i = 0; i < c->ri.num_headers; i++)
        if (!strcasecmp(c->ri.http_headers[i].name, name)) {
            if (v && dup)
                *dup = true;
            v = c->ri.http_headers[i].value;
        }
    return v;
}

static bool token_in(const char *list, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!strncasecmp(p, token, n) && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return true;
        p = strchr(p, ',');
    }
    return false;
}

static void worker_push(api_front *f, fconn *c)
{
    pthread_mutex_lock(&f->q_lock);
    c->in_worker = true;
    c->worker_done = false;
    c->wnext = NULL;
    if (f->todo_tail)
        f->todo_tail->wnext = c;
    else
        f->todo = c;
    f->todo_tail = c;
    pthread_cond_signal(&f->q_cond);
    pthread_mutex_unlock(&f->q_lock);
}

/* Whether the order's wait is over; then its answer is written. */
static void poll_wait(api_front *f, fconn *c)
{
    api_wait_result r;
    if (!c->call.w || !api_bus_wait_poll(f->a->bus, c->call.w, c->call.deadline, c->call.need_decision, &r))
        return;
    timed_remove(f, c);
    if (f->draining) /* a stopping server keeps no connection for a next request */
        c->close_after = c->sink.close = true;
    fs_log_set_cid(c->req.request_id);
    api_order_timed(&c->call, api_order_end(&c->call, &r));
    answered(f, c);
}

/* The order's command is produced: its answer comes when the bus tells of the wait's end. */
static void start_wait(api_front *f, fconn *c)
{
    api_bus_waiter_notify(f->a->bus, c->call.w, on_notify, c);
    if (c->call.need_decision)
        timed_add(f, c);
    poll_wait(f, c); /* a change before the notify was set is seen here */
}

/* A request queued for a worker that this server will not take up because it is stopping:
 * nothing of it was done, so the client may send it again (to another instance, or to this
 * one once it is back). */
static void stopping(api_front *f, fconn *c)
{
    c->close_after = c->sink.close = true;
    fs_http_error(&c->req, 503, "UNAVAILABLE", STOPPING_MESSAGE, "Retry-After: 1\r\n");
    answered(f, c);
}

/* A whole request is in: answer it, or start its wait. */
static void dispatch(api_front *f, fconn *c, size_t hlen, long long clen)
{
    atomic_fetch_add(&f->c_requests, 1);
    c->state = F_BUSY;
    c->reqlen = hlen + (size_t)clen;
    c->sink = (fs_http_sink){.body = c->in + hlen, .body_len = (size_t)clen, .write = sink_write, .ctx = c,
                             .close = answers_last(c)};
    fs_http_req_init_sink(&c->req, &c->ri, &c->sink, FS_ROUTE_ORDERS_CREATE);
    if (strcmp(c->ri.local_uri, "/api/orders")) {
        fs_http_error(&c->req, 404, "NOT_FOUND", "this port serves POST /api/orders only", NULL);
        answered(f, c);
        return;
    }
    if (strcmp(c->ri.request_method, "POST")) {
        fs_http_error(&c->req, 405, "METHOD_NOT_ALLOWED", "this port serves POST /api/orders only",
                      "Allow: POST\r\n");
        answered(f, c);
        return;
    }
    memset(&c->call, 0, sizeof c->call);
    c->call.a = f->a;
    c->call.req = &c->req;
    int rc = api_order_begin(&c->call, false);
    if (rc == ORDER_BLOCKS) {
        worker_push(f, c);
        return;
    }
    if (rc != ORDER_WAITING) {
        api_order_timed(&c->call, rc);
        answered(f, c);
        return;
    }
    start_wait(f, c);
}

/* Reads the header at the front of `in` once it is whole: 0, or 1 when the connection was
 * answered (refused) or is waiting for more bytes. */
static int take_header(api_front *f, fconn *c)
{
    /* empty lines before a request line are ignored (RFC 9112, 2.2): a client's stray CRLF */
    size_t skip = 0;
    while (skip + 1 < c->inlen && c->in[skip] == '\r' && c->in[skip + 1] == '\n')
        skip += 2;
    if (skip) {
        memmove(c->in, c->in + skip, c->inlen - skip);
        c->inlen -= skip;
    }
    size_t from = c->scanned > 3 ? c->scanned - 3 : 0, end = 0;
    for (size_t i = from; i + 3 < c->inlen && i < HEADER_MAX; i++)
        if (c->in[i] == '\r' && !memcmp(c->in + i, "\r\n\r\n", 4)) {
            end = i + 4;
            break;
        }
    c->scanned = c->inlen;
    if (!end) {
        if (c->inlen >= HEADER_MAX)
            malformed(f, c, 431, "HEADERS_TOO_LARGE", "the request line or headers are too large");
        else if (c->eof)
            conn_close(f, c); /* the client left before its request was whole */
        else
            arm(f, c, EPOLLIN);
        return 1;
    }
    memset(&c->ri, 0, sizeof c->ri);
    int bad = parse_header(c, end);
    if (bad == 431) {
        malformed(f, c, 431, "HEADERS_TOO_LARGE", "too many header lines");
        return 1;
    }
    if (bad == 503) {
        refuse(f, c, 503, "UNAVAILABLE", "out of memory", "Retry-After: 1\r\n");
        return 1;
    }
    if (bad) {
        malformed(f, c, 400, "BAD_REQUEST", "the request line or a header is malformed");
        return 1;
    }
    snprintf(c->ri.remote_addr, sizeof c->ri.remote_addr, "%s", c->peer);
    bool dup = false;
    const char *te = header(c, "Transfer-Encoding", NULL), *cl = header(c, "Content-Length", &dup);
    if (te) {
        malformed(f, c, 411, "LENGTH_REQUIRED", "send the body with a Content-Length, not chunked");
        return 1;
    }
    long long clen = 0;
    if (cl) {
        bool digits = *cl && strlen(cl) <= 15;
        for (const char *d = cl; *d && digits; d++)
            digits = *d >= '0' && *d <= '9';
        if (!digits || dup) {
            malformed(f, c, 400, "BAD_REQUEST", "Content-Length must be given once, as a length");
            return 1;
        }
        clen = atoll(cl);
    }
    c->ri.content_length = cl ? clen : -1;
    if (clen > f->a->max_body) {
        refuse(f, c, 413, "BODY_TOO_LARGE", "the request body is too large", NULL);
        return 1;
    }
    const char *conn_h = header(c, "Connection", NULL);
    /* HTTP/1.0 is answered and closed: its keep-alive would need a header of its own */
    c->close_after = !strcmp(c->ri.http_version, "1.0") || (conn_h && token_in(conn_h, "close"));
    c->hlen = end;
    c->clen = clen;
    return 0;
}

/* Looks for a whole request at the front of `in`; answers it, or waits for more bytes. */
static void serve_next(api_front *f, fconn *c)
{
    if (!c->hlen && take_header(f, c))
        return;
    if (f->draining) { /* not taken up: answered at once, the body (if any) left unread */
        atomic_fetch_add(&f->c_requests, 1);
        refuse(f, c, 503, "UNAVAILABLE", STOPPING_MESSAGE, "Retry-After: 1\r\n");
        return;
    }
    size_t hlen = c->hlen, need = hlen + (size_t)c->clen;
    if (c->inlen < need) { /* the body is still coming */
        if (c->eof) {
            conn_close(f, c);
            return;
        }
        if (c->incap < need) {
            char *in = realloc(c->in, need);
            if (!in) {
                refuse(f, c, 503, "UNAVAILABLE", "out of memory", "Retry-After: 1\r\n");
                return;
            }
            c->in = in;
            c->incap = need;
        }
        const char *expect = header(c, "Expect", NULL);
        if (expect && !c->continued && !c->close_after && !strcasecmp(expect, "100-continue")) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            ssize_t w = send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL);
            (void)w; /* a client that cannot take 25 bytes sends its body anyway, or times out */
            c->continued = true;
        }
        arm(f, c, EPOLLIN);
        return;
    }
    dispatch(f, c, hlen, c->clen);
}

static void on_readable(api_front *f, fconn *c)
{
    if (c->state == F_LINGER) { /* read and drop until the client closes */
        char junk[4096];
        for (;;) {
            ssize_t n = recv(c->fd, junk, sizeof junk, 0);
            if (n > 0)
                continue;
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                arm(f, c, EPOLLIN);
            else
                conn_close(f, c);
            return;
        }
    }
    for (;;) {
        if (c->inlen == c->incap) {
            size_t cap = c->incap * 2;
            if (cap > HEADER_MAX + (size_t)f->a->max_body)
                cap = HEADER_MAX + (size_t)f->a->max_body;
            if (cap <= c->incap)
                break; /* full: what is in must be a whole request, or too large */
            char *in = realloc(c->in, cap);
            if (!in) {
                conn_close(f, c);
                return;
            }
            c->in = in;
            c->incap = cap;
        }
        size_t room = c->incap - c->inlen;
        ssize_t n = recv(c->fd, c->in + c->inlen, room, 0);
        if (n > 0) {
            if (c->state == F_IDLE) {
                c->state = F_READING;
                if (!c->fresh) /* a new connection's first request is due from its accept */
                    c->deadline = fs_mono_ms() + f->request_ms;
                c->fresh = false;
            }
            c->inlen += (size_t)n;
            /* A stream socket's read that did not fill the room has nearly always emptied its
             * receive queue: one more would only say EAGAIN. Whatever is left or comes later
             * (bytes, or the client's end) wakes this connection again, as its re-arm is
             * level-triggered. So a FIN sent with the request is read at the next wake, after
             * the answer (which then does not say Connection: close). */
            if ((size_t)n < room)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0 || !c->inlen) {
            conn_close(f, c); /* an error, or EOF with nothing asked */
            return;
        }
        c->eof = true; /* the client shut its side after asking: answer, then close */
        break;
    }
    serve_next(f, c);
}

static void on_accept(api_front *f)
{
    for (;;) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(f->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: the backlog waits, and the listener is left alone a
                 * while (it stays readable: taking it up again at once would spin) */
                epoll_ctl(f->epfd, EPOLL_CTL_DEL, f->lfd, NULL);
                f->accept_paused_until = fs_mono_ms() + 100;
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fconn *c = calloc(1, sizeof *c);
        char *in = c ? malloc(IN_START) : NULL;
        if (!c || !in) {
            free(c);
            free(in);
            close(fd);
            continue;
        }
        c->f = f;
        c->fd = fd;
        c->in = in;
        c->incap = IN_START;
        c->state = F_IDLE;
        c->fresh = true;
        c->deadline = fs_mono_ms() + f->request_ms; /* a first request is due soon */
        if (peer.sin_family == AF_INET)
            inet_ntop(AF_INET, &peer.sin_addr, c->peer, sizeof c->peer);
        c->next = f->all;
        if (f->all)
            f->all->prev = c;
        f->all = c;
        f->nconns++;
        atomic_fetch_add(&f->g_conns, 1);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
        if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev)) {
            conn_close(f, c);
            continue;
        }
        if (f->nconns > f->max_conns) {
            atomic_fetch_add(&f->c_refused_full, 1);
            refuse(f, c, 503, "UNAVAILABLE", "this server holds as many connections as it may",
                   "Retry-After: 1\r\n");
        }
    }
}

/* Takes what the bus and the workers queued. */
static void take_ready(api_front *f)
{
    pthread_mutex_lock(&f->q_lock);
    fconn *r = f->ready;
    f->ready = f->ready_tail = NULL;
    pthread_mutex_unlock(&f->q_lock);
    while (r) {
        fconn *c = r;
        pthread_mutex_lock(&f->q_lock);
        r = c->qnext;
        c->queued = false;
        bool dead = c->dead, done = c->in_worker && c->worker_done, again = c->again;
        c->again = false;
        if (done)
            c->in_worker = false;
        bool in_worker = c->in_worker;
        pthread_mutex_unlock(&f->q_lock);
        if (dead)
            conn_free(c);
        else if (done && c->worker_rc == ORDER_WAITING)
            start_wait(f, c);
        else if (done) {
            if (f->draining) /* (its header may say keep-alive: the drain began meanwhile) */
                c->close_after = true;
            answered(f, c);
        }
        else if (!in_worker && c->state == F_BUSY)
            poll_wait(f, c);
        else if (again && c->state == F_READING)
            serve_next(f, c);
    }
}

/* Waits whose deadline passed; idle, slow and stuck connections. */
static void on_timer(api_front *f, int64_t now, bool expire)
{
    while (f->thead && f->thead->call.deadline <= now) {
        fconn *c = f->thead;
        timed_remove(f, c); /* past it, the bus tells of the delivery report (wants_delivery) */
        poll_wait(f, c);
    }
    if (!expire)
        return;
    if (f->accept_paused_until && now >= f->accept_paused_until && !f->draining) {
        struct epoll_event le = {.events = EPOLLIN, .data.ptr = &listen_tag};
        epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->lfd, &le);
        f->accept_paused_until = 0;
    }
    for (fconn *c = f->all, *next; c; c = next) {
        next = c->next;
        if (c->state != F_BUSY && now >= c->deadline) {
            if (c->state != F_LINGER && c->state != F_IDLE)
                atomic_fetch_add(&f->c_timeouts, 1);
            conn_close(f, c);
        }
    }
}

/* The drain's first step (on the loop): no new connection; the checkouts and first steps
 * no worker has taken up yet are refused (nothing of them was done); orders whose command
 * is produced keep waiting for their decision, and answers being written are written. */
static void drain_begin(api_front *f, int64_t now)
{
    f->draining = true;
    f->drain_end = now + f->a->drain_ms;
    epoll_ctl(f->epfd, EPOLL_CTL_DEL, f->lfd, NULL);
    close(f->lfd); /* connections still in the backlog are reset: they asked nothing yet */
    f->lfd = -1;
    pthread_mutex_lock(&f->q_lock);
    fconn *t = f->todo;
    f->todo = f->todo_tail = NULL;
    for (fconn *c = t; c; c = c->wnext)
        c->in_worker = false;
    pthread_mutex_unlock(&f->q_lock);
    long refused = 0;
    while (t) {
        fconn *c = t;
        t = c->wnext;
        stopping(f, c);
        refused++;
    }
    fs_log_info("order front draining", json_pack("{s:I,s:I,s:I}", "connections", (json_int_t)f->nconns,
                                                  "refused_queued", (json_int_t)refused, "drain_ms",
                                                  (json_int_t)f->a->drain_ms));
}

/* Whether no begun request is left: none waiting for its decision or a worker, none being
 * written or lingering after a refusal, none queued for the loop. */
static bool drained(api_front *f)
{
    pthread_mutex_lock(&f->q_lock);
    bool queued = f->ready != NULL;
    pthread_mutex_unlock(&f->q_lock);
    if (queued)
        return false;
    for (fconn *c = f->all; c; c = c->next)
        if (c->state == F_BUSY || c->state == F_WRITING || c->state == F_LINGER)
            return false;
    return true;
}

static void *loop_main(void *arg)
{
    pthread_setname_np(pthread_self(), "api-front"); /* for per-thread CPU (perf/profile) */
    api_front *f = arg;
    struct epoll_event evs[256];
    int64_t last_expire = 0;
    on_loop = true;
    while (!atomic_load(&f->stop)) {
        int timeout = f->thead ? (int)(f->thead->call.deadline - fs_mono_ms()) : EXPIRE_EVERY_MS;
        if (timeout < 0)
            timeout = 0;
        if (timeout > EXPIRE_EVERY_MS)
            timeout = EXPIRE_EVERY_MS;
        /* the loop does not wake itself: what it queued in its last turn's take_ready (a
         * pipelined request after an answer given at once, a wait ended by on_timer) is
         * served now, not after up to EXPIRE_EVERY_MS */
        pthread_mutex_lock(&f->q_lock);
        if (f->ready)
            timeout = 0;
        pthread_mutex_unlock(&f->q_lock);
        int n = epoll_wait(f->epfd, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &listen_tag)
                on_accept(f);
            else if (p == &event_tag) {
                uint64_t v;
                ssize_t r = read(f->efd, &v, sizeof v);
                (void)r;
                atomic_store(&f->woken, 0); /* before looking: a later change writes again */
                take_ready(f);
            } else if (p == &reply_tag) {
                api_bus_replies_drain(f->a->bus); /* its decisions queue connections on `ready` */
                take_ready(f);
            } else if (p == &delivery_tag) {
                api_bus_delivery_serve(f->a->bus);
                take_ready(f);
            } else {
                fconn *c = p;
                if (c->state == F_WRITING)
                    conn_flush(f, c);
                else if (c->state != F_BUSY)
                    on_readable(f, c);
            }
        }
        take_ready(f); /* pipelined requests queued this turn */
        int64_t now = fs_mono_ms();
        bool expire = now - last_expire >= EXPIRE_EVERY_MS;
        if (expire)
            last_expire = now;
        on_timer(f, now, expire);
        if (atomic_load(&f->drain) && !atomic_load(&f->drain_done)) {
            if (!f->draining)
                drain_begin(f, now);
            bool over = now >= f->drain_end;
            if (!over && now - f->drain_looked >= 20) { /* (a look walks every connection) */
                f->drain_looked = now;
                over = drained(f);
            }
            if (over) {
                long left = 0;
                for (fconn *c = f->all; c; c = c->next)
                    left += c->state == F_BUSY || c->state == F_WRITING;
                fs_log_info("order front drained", json_pack("{s:I}", "unanswered", (json_int_t)left));
                /* the loop goes on until api_front_stop: civetweb's requests, still being
                 * finished, need the decisions' replies and the delivery reports it serves;
                 * what is read meanwhile is refused */
                atomic_store(&f->drain_done, 1);
            }
        }
    }
    return NULL;
}

/* ---- workers: checkouts ------------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    pthread_setname_np(pthread_self(), "api-checkout"); /* for per-thread CPU (perf/profile) */
    api_front *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->q_lock);
        while (!f->todo && !atomic_load(&f->stop))
            pthread_cond_wait(&f->q_cond, &f->q_lock);
        fconn *c = f->todo;
        if (!c) {
            pthread_mutex_unlock(&f->q_lock);
            return NULL;
        }
        f->todo = c->wnext;
        if (!f->todo)
            f->todo_tail = NULL;
        pthread_mutex_unlock(&f->q_lock);
        if (atomic_load(&f->drain)) /* (the worker owns the connection until it is done) */
            c->close_after = c->sink.close = true;
        fs_log_set_cid(c->req.request_id);
        int rc = api_order_run_blocking(&c->call);
        api_pg_release(); /* the pooled connection goes back, whatever comes next */
        if (rc != ORDER_WAITING)
            api_order_timed(&c->call, rc);
        pthread_mutex_lock(&f->q_lock);
        c->worker_rc = rc;
        c->worker_done = true;
        ready_push_locked(f, c);
        pthread_mutex_unlock(&f->q_lock);
        wake(f);
    }
}

/* ---- start, stop, metrics ---------------------------------------------------------------- */

api_front *api_front_start(api_ctx *a, const char *default_addr, fs_err *err)
{
    long port;
    const char *addr;
    if (fs_env_int("FLASHSALE_ORDER_PORT", 0, 0, 65535, &port, err) ||
        fs_env_str("FLASHSALE_ORDER_ADDR", default_addr, false, &addr, err))
        return NULL;
    if (port == 0)
        return NULL;
    api_front *f = calloc(1, sizeof *f);
    if (!f) {
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        return NULL;
    }
    f->a = a;
    f->lfd = f->efd = f->epfd = f->dfd = -1;
    bool delivery_on; /* FLASHSALE_API_DELIVERY_ON_FRONT: the loop serves the delivery reports */
    if (fs_env_int("FLASHSALE_ORDER_REQUEST_TIMEOUT_MS", 10000, 100, 600000, &f->request_ms, err) ||
        fs_env_int("FLASHSALE_ORDER_IDLE_S", 60, 1, 86400, &f->idle_s, err) ||
        fs_env_int("FLASHSALE_ORDER_MAX_CONNS", 20000, 1, 1000000, &f->max_conns, err) ||
        fs_env_int("FLASHSALE_ORDER_WORKERS", 8, 1, MAX_WORKERS, &f->nworkers, err) ||
        fs_env_bool("FLASHSALE_API_DELIVERY_ON_FRONT", true, &delivery_on, err)) {
        free(f);
        return NULL;
    }
    pthread_mutex_init(&f->q_lock, NULL);
    pthread_cond_init(&f->q_cond, NULL);
    if ((f->lfd = api_listen_tcp(addr, port, "the order front", err)) < 0)
        goto fail;
    f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = &listen_tag};
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &event_tag};
    if (f->efd < 0 || f->epfd < 0 || epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->lfd, &le) ||
        epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->efd, &ee)) {
        fs_err_set(err, FS_ERR_FATAL, errno, "the order front: epoll: %s", strerror(errno));
        goto fail;
    }
    snprintf(f->listen, sizeof f->listen, "%s:%ld", addr, port);
    if (pthread_create(&f->loop, NULL, loop_main, f)) {
        fs_err_set(err, FS_ERR_FATAL, 0, "the order front: no thread");
        goto fail;
    }
    long started = 0;
    for (; started < f->nworkers; started++)
        if (pthread_create(&f->workers[started], NULL, worker_main, f))
            break;
    f->nworkers = started;
    if (!started) { /* (the process exits: fs_config_die) */
        fs_err_set(err, FS_ERR_FATAL, 0, "the order front: no worker thread");
        return NULL;
    }
    /* the decisions' replies are read on the loop, so that a decision wakes no other thread
     * (last: until here the bus's reply thread reads them) */
    int rfd = api_bus_replies_take_over(a->bus);
    struct epoll_event re = {.events = EPOLLIN, .data.ptr = &reply_tag};
    if (rfd >= 0 && epoll_ctl(f->epfd, EPOLL_CTL_ADD, rfd, &re)) {
        fs_err_set(err, FS_ERR_FATAL, errno, "the order front: epoll: %s", strerror(errno));
        return NULL; /* (the process exits: fs_config_die) */
    }
    /* the producers' delivery reports too: the messages are freed where they were made
     * (registered before the bus hands them over, so that a failure leaves them to its thread) */
    if (delivery_on) {
        int dfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event de = {.events = EPOLLIN, .data.ptr = &delivery_tag};
        if (dfd < 0 || epoll_ctl(f->epfd, EPOLL_CTL_ADD, dfd, &de)) {
            fs_err_set(err, FS_ERR_FATAL, errno, "the order front: delivery reports: %s", strerror(errno));
            if (dfd >= 0)
                close(dfd);
            return NULL; /* (the process exits: fs_config_die) */
        }
        api_bus_delivery_take_over(a->bus, dfd);
        f->dfd = dfd;
    }
    fs_log_info("order front", json_pack("{s:s,s:I,s:I,s:I,s:I}", "listen", f->listen, "request_timeout_ms",
                                         (json_int_t)f->request_ms, "idle_s", (json_int_t)f->idle_s,
                                         "max_conns", (json_int_t)f->max_conns, "workers",
                                         (json_int_t)f->nworkers));
    return f;
fail:
    if (f->lfd >= 0)
        close(f->lfd);
    if (f->efd >= 0)
        close(f->efd);
    if (f->epfd >= 0)
        close(f->epfd);
    pthread_mutex_destroy(&f->q_lock);
    pthread_cond_destroy(&f->q_cond);
    free(f);
    return NULL;
}

void api_front_drain(api_front *f)
{
    if (!f || atomic_exchange(&f->drain, 1))
        return;
    poke(f); /* (not wake(): its flag may be set by a wake the loop has not read yet) */
}

void api_front_stop(api_front *f)
{
    if (!f)
        return;
    api_front_drain(f);
    /* the loop says when (FLASHSALE_DRAIN_MS at most); bounded here too, should it be held up */
    for (int64_t until = fs_mono_ms() + f->a->drain_ms + 1000; !atomic_load(&f->drain_done) && fs_mono_ms() < until;)
        usleep(10 * 1000);
    atomic_store(&f->stop, 1);
    poke(f);
    pthread_join(f->loop, NULL);
    pthread_mutex_lock(&f->q_lock);
    pthread_cond_broadcast(&f->q_cond);
    pthread_mutex_unlock(&f->q_lock);
    for (long i = 0; i < f->nworkers; i++) {
        /* a worker may be waiting for a command's delivery report (a checkout past its
         * decision wait), which only the loop served: serve them here until it has ended */
        while (f->dfd >= 0 && pthread_tryjoin_np(f->workers[i], NULL) == EBUSY) {
            struct pollfd p = {.fd = f->dfd, .events = POLLIN};
            if (poll(&p, 1, 50) > 0)
                api_bus_delivery_serve(f->a->bus);
        }
        if (f->dfd < 0)
            pthread_join(f->workers[i], NULL);
    }
    /* no bus thread may queue a connection from here on: every wait is let go first */
    for (fconn *c = f->all; c; c = c->next)
        if (c->call.w) { /* (no worker runs any more) */
            api_bus_waiter_release(f->a->bus, c->call.w);
            c->call.w = NULL;
        }
    /* the workers are gone: what they held is on `ready` or `todo` */
    pthread_mutex_lock(&f->q_lock);
    fconn *r = f->ready, *dead = NULL;
    f->ready = f->ready_tail = f->todo = f->todo_tail = NULL;
    while (r) {
        fconn *c = r;
        r = c->qnext;
        c->queued = false;
        if (c->dead) {
            c->qnext = dead;
            dead = c;
        }
    }
    pthread_mutex_unlock(&f->q_lock);
    while (dead) {
        fconn *c = dead;
        dead = c->qnext;
        conn_free(c);
    }
    while (f->all)
        conn_close(f, f->all);
    if (f->lfd >= 0)
        close(f->lfd);
    close(f->efd);
    close(f->epfd);
    pthread_mutex_destroy(&f->q_lock);
    pthread_cond_destroy(&f->q_cond);
    free(f);
}

void api_front_metrics(api_front *f, FILE *out)
{
    if (!f)
        return;
    fprintf(out,
            "# HELP flashsale_order_front_connections Connections the order front holds.\n"
            "# TYPE flashsale_order_front_connections gauge\n"
            "flashsale_order_front_connections %ld\n"
            "# HELP flashsale_order_front_requests_total Requests the order front took up.\n"
            "# TYPE flashsale_order_front_requests_total counter\n"
            "flashsale_order_front_requests_total %ld\n"
            "# HELP flashsale_order_front_refused_total Connections refused, by why.\n"
            "# TYPE flashsale_order_front_refused_total counter\n"
            "flashsale_order_front_refused_total{why=\"full\"} %ld\n"
            "flashsale_order_front_refused_total{why=\"timeout\"} %ld\n"
            "flashsale_order_front_refused_total{why=\"malformed\"} %ld\n",
            atomic_load(&f->g_conns), atomic_load(&f->c_requests), atomic_load(&f->c_refused_full),
            atomic_load(&f->c_timeouts), atomic_load(&f->c_bad));
}
