/* flashsale-load: HTTP/1.1 load generator: non-blocking sockets and epoll, one thread.
 *
 * Why not libcurl: the first version drove libcurl's multi-socket interface; against the
 * trivial endpoint it reached 13,600 requests/s where wrk reached 41,000 in the same run,
 * spending ~40 us of CPU per request to wrk's ~14 us (time(1), 5 s runs) — on two shared
 * cores the generator itself was the bottleneck. Requests here are prebuilt byte strings and
 * responses are parsed only for the status line and Content-Length (the servers measured
 * always send it); connections are kept alive and re-opened if the server closes them.
 *
 *   flashsale-load --url URL [--path /healthz] [--method GET|POST]
 *                  [--product ID | --products FILE] [--quantity 1]
 *                  [--members N] [--connections C]
 *                  [--requests N | --duration SECONDS] [--rate PER_S]
 *                  [--json FILE] [--label NAME] [--quiet] [--close] [--sources N]
 *                  [--log FILE]
 *
 * Closed loop (no --rate): C connections, each sending its next request when the previous
 * one is answered, until N requests (--requests) or the duration. The flash burst is
 * --connections N --requests N: every request in flight at once.
 * Open loop (--rate R): requests are due at fixed intervals (1/R) whatever the server does;
 * a request's latency runs from when it was DUE, not from when a free connection could send
 * it, so a stalled server shows as latency instead of being hidden (coordinated omission
 * corrected). Up to C connections; when all are busy, due requests queue (and their latency
 * grows).
 * With --product/--products, each request is POST /api/orders {"product_id", "quantity"}
 * with a member token (sub load-<run>-<i>, i cycling over --members, minted up front from
 * FLASHSALE_JWT_SECRET); products are taken in turn. Otherwise --path with --method.
 * Connections are kept alive (HTTP/1.1), or with --close each request has its own connection
 * (the flash burst: each buyer arrives once; a thread-per-connection server would otherwise
 * hold a worker per idle kept-alive connection). Prints a live line every second on stderr (rate,
 * errors, p50/p99 so far), then a summary; --json writes outcomes by status, latency
 * percentiles (p50, p90, p99, p99.9, max, from a log-linear histogram with ~1.6 % precision)
 * and completions per second. --sources N spreads the connections over N loopback client
 * addresses (127.1.0.1 onwards; loopback URLs only), as a crowd arrives from many addresses
 * at an edge that limits each one.
 * --log FILE writes one line per request, in the order they were answered, tab separated:
 * due (wall clock, ms since the epoch), latency from due (ms), HTTP status (-1: no answer,
 * the connection failed or closed), the member (token sub), the order_id the body named
 * (in "order_id" at its top level or inside "error"; - when none), and how many times the
 * request was sent again on a new connection after the old one closed unanswered (0 or 1).
 * With --members at least the number of requests, every request has a member of its own,
 * so an order found in the log can be traced back to the request that placed it (perf/chaos
 * checks answers against the log so). */
#include "fs/id.h"
#include "fs/jwt.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* ---- histogram: microseconds, 64 sub-buckets per power of two ---------------------------- */

#define SUB 64
#define POW 40
static uint64_t hist[POW][SUB], hist_n, win_hist[POW][SUB];

static void hist_add(uint64_t (*h)[SUB], uint64_t us)
{
    if (us < SUB) {
        h[0][us]++;
        return;
    }
    int p = 63 - __builtin_clzll(us); /* us in [2^p, 2^(p+1)) */
    int sub = (int)((us >> (p - 6)) & (SUB - 1));
    int row = p - 5;
    if (row >= POW)
        row = POW - 1, sub = SUB - 1;
    h[row][sub]++;
}

static double bucket_us(int row, int sub)
{
    if (row == 0)
        return sub;
    int p = row + 5;
    return ldexp(1.0 + (sub + 0.5) / SUB, p);
}

static double hist_pct(uint64_t (*h)[SUB], double q)
{
    uint64_t n = 0;
    for (int r = 0; r < POW; r++)
        for (int s = 0; s < SUB; s++)
            n += h[r][s];
    if (!n)
        return 0;
    uint64_t want = q >= 1.0 ? n : (uint64_t)(q * (double)n) + 1, seen = 0;
    for (int r = 0; r < POW; r++)
        for (int s = 0; s < SUB; s++)
            if ((seen += h[r][s]) >= want)
                return bucket_us(r, s) / 1000.0;
    return 0;
}

/* ---- connections ------------------------------------------------------------------------- */

typedef struct {
    int fd;
    bool connected, busy;
    char req[2048];
    size_t req_len, req_off;
    char buf[8192];
    size_t buf_len;
    double due; /* ms, monotonic: when the request was due (open loop) or sent */
    int resent;
    long member; /* index into tokens/subs of the request in flight (--log) */
} conn;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int epfd;
static conn *conns;
static long nconns, free_top, *free_list;
static char **tokens, **subs, **products;
static FILE *log_file;      /* --log */
static double wall_minus_mono; /* ms since the epoch minus now_ms(), read at the start */
static long ntokens, nproducts, next_member, next_product, quantity = 1;
static const char *method = "GET", *req_path;
static char host_hdr[128];
static const char *conn_hdr = ""; /* "Connection: close\r\n" with --close */
static struct sockaddr_in addr;
static long nsources; /* --sources: connection i comes from loopback address i mod N */
static uint64_t started, done, errors, status_count[600], win_done, win_err;
static json_t *timeline;

static void arm(conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) && errno == ENOENT)
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static int open_conn(conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->connected = false;
    c->buf_len = 0;
    if (nsources > 0) { /* 127.1.0.1, 127.1.0.2, ... (tests/integration/fsharness.py's client_addr) */
        long i = (long)(c - conns) % nsources;
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl((127u << 24) | ((uint32_t)(1 + i / 62500) << 16) |
                                    ((uint32_t)((i / 250) % 250) << 8) | (uint32_t)(i % 250 + 1));
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src)) {
            close(c->fd);
            c->fd = -1;
            return -1;
        }
    }
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    arm(c, EPOLLOUT);
    return 0;
}

static void close_conn(conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->connected = false;
}

static void build(conn *c)
{
    if (products) {
        c->member = next_member++ % ntokens;
        const char *tok = tokens[c->member];
        const char *pid = products[next_product++ % nproducts];
        char body[256];
        int bl = snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":%ld}", pid, quantity);
        c->req_len = (size_t)snprintf(c->req, sizeof c->req,
                                      "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                                      "Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s",
                                      req_path, host_hdr, tok, bl, conn_hdr, body);
    } else if (!strcmp(method, "POST")) {
        c->req_len = (size_t)snprintf(c->req, sizeof c->req,
                                      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                                      "Content-Length: 2\r\n%s\r\n{}",
                                      req_path, host_hdr, conn_hdr);
    } else {
        c->req_len = (size_t)snprintf(c->req, sizeof c->req, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", req_path,
                                      host_hdr, conn_hdr);
    }
}

/* The order id the response body names: "order_id":"..." (a 201/202 body, or a refusal's
 * error object); empty when none. buf is the whole response, NUL-terminated. */
static void body_order_id(const char *buf, char *out, size_t cap)
{
    out[0] = '\0';
    const char *b = buf ? strstr(buf, "\r\n\r\n") : NULL;
    const char *k = b ? strstr(b, "\"order_id\"") : NULL;
    if (!k)
        return;
    k += strlen("\"order_id\"");
    while (*k == ' ' || *k == ':')
        k++;
    if (*k++ != '"')
        return;
    size_t n = 0;
    while (k[n] && k[n] != '"' && n + 1 < cap)
        n++;
    memcpy(out, k, n);
    out[n] = '\0';
}

static void record(conn *c, long code, double t)
{
    if (log_file) {
        char oid[80];
        body_order_id(code > 0 ? c->buf : NULL, oid, sizeof oid);
        fprintf(log_file, "%.1f\t%.2f\t%ld\t%s\t%s\t%d\n", wall_minus_mono + c->due, t - c->due, code > 0 ? code : -1L,
                subs ? subs[c->member] : "-", oid[0] ? oid : "-", c->resent);
    }
    double ms = t - c->due;
    uint64_t us = ms > 0 ? (uint64_t)(ms * 1000.0) : 0;
    hist_add(hist, us);
    hist_add(win_hist, us);
    hist_n++;
    done++;
    win_done++;
    if (code <= 0 || code >= 500) {
        errors++;
        win_err++;
        status_count[0]++;
    } else if (code < 600)
        status_count[code]++;
    c->busy = false;
    free_list[free_top++] = c - conns;
}

static void try_write(conn *c)
{
    while (c->req_off < c->req_len) {
        ssize_t w = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN)
                break;
            return;
        }
        c->req_off += (size_t)w;
    }
    arm(c, c->req_off < c->req_len ? EPOLLOUT : EPOLLIN);
}

static void start(conn *c, double due)
{
    build(c);
    c->req_off = 0;
    c->buf_len = 0;
    c->due = due;
    c->busy = true;
    c->resent = 0;
    started++;
    if (c->fd < 0 && open_conn(c)) {
        record(c, -1, now_ms());
        return;
    }
    if (c->connected)
        try_write(c);
}

/* The server closed or the socket failed: reconnect and send again once (a keep-alive
 * connection closed by the server between requests is not the request's fault). */
static void broken(conn *c)
{
    bool answered_nothing = c->buf_len == 0;
    close_conn(c);
    if (c->busy && answered_nothing && c->resent++ < 1 && open_conn(c) == 0) {
        c->req_off = 0;
        return;
    }
    if (c->busy)
        record(c, -1, now_ms());
}

static void on_event(conn *c, uint32_t ev)
{
    if (!c->connected) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err || (ev & (EPOLLERR | EPOLLHUP))) {
            broken(c);
            return;
        }
        c->connected = true;
        if (c->busy)
            try_write(c);
        else
            arm(c, EPOLLIN);
        return;
    }
    if (ev & EPOLLOUT)
        try_write(c);
    if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->buf_len, sizeof c->buf - c->buf_len - 1, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            broken(c);
            return;
        }
        if (r < 0)
            break;
        c->buf_len += (size_t)r;
        c->buf[c->buf_len] = '\0';
        char *end = strstr(c->buf, "\r\n\r\n");
        if (!end) {
            if (c->buf_len >= sizeof c->buf - 1) { /* headers too large: not ours */
                broken(c);
                return;
            }
            continue;
        }
        long code = strncmp(c->buf, "HTTP/1.", 7) ? -1 : strtol(c->buf + 9, NULL, 10);
        const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
        size_t body = cl && cl < end ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
        size_t need = (size_t)(end + 4 - c->buf) + body;
        if (c->buf_len < need) {
            if (need >= sizeof c->buf) { /* a big body: count it as read as it streams */
                c->buf_len = 0;
                broken(c);
                return;
            }
            continue;
        }
        bool close_after = *conn_hdr || strcasestr(c->buf, "\r\nConnection: close") != NULL;
        c->buf_len = 0;
        if (c->busy)
            record(c, code, now_ms());
        if (close_after)
            close_conn(c);
        return;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: flashsale-load --url URL [--path P] [--method GET|POST] [--product ID | "
                    "--products FILE]\n       [--quantity Q] [--members N] [--connections C] "
                    "[--requests N | --duration S] [--rate R]\n       [--json FILE] [--label NAME] [--quiet] [--close] "
                    "[--sources N] [--log FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *url = NULL, *path = "/healthz", *product = NULL, *pfile = NULL, *json_out = NULL,
               *label = "load", *log_path = NULL;
    long members = 1000, nconn = 100, requests = 0;
    double duration = 0, rate = 0;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quiet")) {
            quiet = true;
            continue;
        }
        if (!strcmp(a, "--close")) { /* one request per connection, like buyers arriving */
            conn_hdr = "Connection: close\r\n";
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--path")) path = v;
        else if (!strcmp(a, "--method")) method = v;
        else if (!strcmp(a, "--product")) product = v;
        else if (!strcmp(a, "--products")) pfile = v;
        else if (!strcmp(a, "--quantity")) quantity = atol(v);
        else if (!strcmp(a, "--members")) members = atol(v);
        else if (!strcmp(a, "--connections")) nconn = atol(v);
        else if (!strcmp(a, "--requests")) requests = atol(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--rate")) rate = atof(v);
        else if (!strcmp(a, "--json")) json_out = v;
        else if (!strcmp(a, "--label")) label = v;
        else if (!strcmp(a, "--sources")) nsources = atol(v);
        else if (!strcmp(a, "--log")) log_path = v;
        else usage();
    }
    if (!url || nconn < 1 || members < 1 || (requests <= 0 && duration <= 0) || rate < 0)
        usage();
    /* products and member tokens, up front */
    if (product || pfile) {
        path = "/api/orders";
        method = "POST";
        products = malloc(sizeof *products * 100000);
        if (product)
            products[nproducts++] = strdup(product);
        else {
            FILE *f = fopen(pfile, "r");
            char line[128];
            while (f && nproducts < 100000 && fgets(line, sizeof line, f))
                if ((line[strcspn(line, "\r\n")] = '\0', line[0]))
                    products[nproducts++] = strdup(line);
            if (f)
                fclose(f);
        }
        const char *secret = getenv("FLASHSALE_JWT_SECRET");
        if (!nproducts || !secret) {
            fprintf(stderr, "flashsale-load: no products, or FLASHSALE_JWT_SECRET unset\n");
            return 2;
        }
        char run[FS_UUID_STR_LEN + 1];
        fs_uuid7_str(run);
        tokens = malloc(sizeof *tokens * (size_t)members);
        subs = malloc(sizeof *subs * (size_t)members);
        for (long i = 0; i < members; i++) {
            char sub[64];
            fs_err err = {0};
            snprintf(sub, sizeof sub, "load-%.8s-%ld", run + 28, i);
            subs[i] = strdup(sub);
            if (fs_jwt_issue(secret, sub, "member", 7200, &tokens[i], &err)) {
                fprintf(stderr, "flashsale-load: %s\n", err.msg);
                return 2;
            }
        }
        ntokens = members;
    }
    /* http://HOST:PORT, HOST an IPv4 address or localhost */
    char host[96] = "";
    int port = 80;
    if (strncmp(url, "http://", 7) || sscanf(url + 7, "%95[^:/]:%d", host, &port) < 1) {
        fprintf(stderr, "flashsale-load: --url must be http://IPV4[:PORT]\n");
        return 2;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1", &addr.sin_addr) != 1) {
        fprintf(stderr, "flashsale-load: not an IPv4 address: %s\n", host);
        return 2;
    }
    snprintf(host_hdr, sizeof host_hdr, "%s:%d", host, port);
    req_path = path;
    char full[2048];
    snprintf(full, sizeof full, "%s%s", url, path);
    epfd = epoll_create1(0);
    nconns = nconn;
    conns = calloc((size_t)nconns, sizeof *conns);
    free_list = malloc(sizeof *free_list * (size_t)nconns);
    for (long i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        free_list[free_top++] = nconns - 1 - i;
    }
    if (log_path && !(log_file = fopen(log_path, "w"))) {
        fprintf(stderr, "flashsale-load: cannot write %s\n", log_path);
        return 2;
    }
    timeline = json_array();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    wall_minus_mono = (double)wall.tv_sec * 1000.0 + (double)wall.tv_nsec / 1e6 - now_ms();
    double t0 = now_ms(), last = t0, interval = rate > 0 ? 1000.0 / rate : 0;
    uint64_t due_n = 0;
    double end = duration > 0 ? t0 + duration * 1000.0 : 0;
    struct epoll_event evs[1024];
    for (;;) {
        double t = now_ms();
        bool more = (!requests || (long)started < requests) && (!end || t < end);
        if (rate > 0) {
            while (more && free_top > 0 && t0 + (double)due_n * interval <= t &&
                   (!requests || (long)started < requests)) {
                start(&conns[free_list[--free_top]], t0 + (double)due_n * interval);
                due_n++;
            }
        } else {
            while (more && free_top > 0 && (!requests || (long)started < requests))
                start(&conns[free_list[--free_top]], t);
        }
        if (free_top == nconns && !more)
            break; /* all answered and nothing more to send */
        /* sleep until the next due time to the microsecond: a millisecond timeout truncated
         * to 0 spun the loop (a third of a core at 1,000/s, taken from the system measured) */
        double wait = 100;
        if (rate > 0 && more && free_top > 0) { /* with every connection busy, only an answer frees one */
            double next = t0 + (double)due_n * interval - t;
            if (next < wait)
                wait = next < 0 ? 0 : next;
        }
        struct timespec wts = {(time_t)(wait / 1000.0), (long)(fmod(wait, 1000.0) * 1e6)};
        int n = epoll_pwait2(epfd, evs, 1024, &wts, NULL);
        if (n < 0 && errno == ENOSYS) /* a kernel before 5.11: whole milliseconds, rounded up */
            n = epoll_wait(epfd, evs, 1024, (int)ceil(wait));
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        double tf = now_ms();
        if (tf - last >= 1000.0) {
            double secs = (tf - last) / 1000.0;
            json_array_append_new(timeline, json_pack("{s:f,s:f,s:I,s:f,s:f}", "t", (tf - t0) / 1000.0, "rps",
                                                      (double)win_done / secs, "errors", (json_int_t)win_err,
                                                      "p50_ms", hist_pct(win_hist, 0.5), "p99_ms",
                                                      hist_pct(win_hist, 0.99)));
            if (!quiet)
                fprintf(stderr, "[%s] %5.1fs %8.0f req/s  done %llu  errors %llu  p50 %.1f ms  p99 %.1f ms  in flight %ld\n",
                        label, (tf - t0) / 1000.0, (double)win_done / secs, (unsigned long long)done,
                        (unsigned long long)errors, hist_pct(hist, 0.5), hist_pct(hist, 0.99), nconns - free_top);
            memset(win_hist, 0, sizeof win_hist);
            win_done = win_err = 0;
            last = tf;
        }
    }
    double secs = (now_ms() - t0) / 1000.0;
    json_t *st = json_object();
    for (int c = 0; c < 600; c++)
        if (status_count[c]) {
            char k[8];
            snprintf(k, sizeof k, "%d", c);
            json_object_set_new(st, c ? k : "error", json_integer((json_int_t)status_count[c]));
        }
    json_t *out = json_pack("{s:s,s:s,s:s,s:I,s:I,s:f,s:f,s:f,s:I,s:o,s:{s:f,s:f,s:f,s:f,s:f},s:o}", "label", label,
                            "mode", rate > 0 ? "open" : "closed", "url", full, "connections", (json_int_t)nconn,
                            "requests", (json_int_t)done, "seconds", secs, "rps", (double)done / secs, "target_rate",
                            rate, "errors", (json_int_t)errors, "status", st, "latency_ms", "p50",
                            hist_pct(hist, 0.5), "p90", hist_pct(hist, 0.9), "p99", hist_pct(hist, 0.99), "p999",
                            hist_pct(hist, 0.999), "max", hist_pct(hist, 1.0), "timeline", timeline);
    char *text = json_dumps(out, JSON_INDENT(2));
    printf("%s: %llu requests in %.2f s = %.0f req/s, errors %llu, latency ms p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f\n",
           label, (unsigned long long)done, secs, (double)done / secs, (unsigned long long)errors, hist_pct(hist, 0.5),
           hist_pct(hist, 0.9), hist_pct(hist, 0.99), hist_pct(hist, 0.999), hist_pct(hist, 1.0));
    if (json_out) {
        FILE *f = fopen(json_out, "w");
        if (f) {
            fputs(text, f);
            fclose(f);
        }
    }
    free(text);
    json_decref(out);
    if (log_file && fclose(log_file)) {
        fprintf(stderr, "flashsale-load: writing %s failed\n", log_path);
        return 2;
    }
    for (long i = 0; i < nconns; i++)
        close_conn(&conns[i]);
    close(epfd);
    return errors ? 1 : 0;
}
