/* Latency histograms and the /metrics listener; see fs/metrics.h.
 *
 * The registry is a fixed array filled at start under a mutex and read without it (a
 * histogram, once published through `count`, never moves). Buckets are cumulative only when
 * rendered; each observation bumps one bucket, the count and the sum (microseconds). */
#include "fs/metrics.h"
#include "fs/log.h"

#include <civetweb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double bounds_ms[] = {0.05, 0.1, 0.25, 0.5, 1,   2,   3,   5,    7.5,  10,  15, 20,
                                   30,   50,  75,   100, 150, 200, 300, 500, 1000, 2000, 5000};
#define NB (sizeof bounds_ms / sizeof bounds_ms[0])
#define MAX_HISTS 128

struct fs_hist {
    char name[96], labels[128], help[200];
    atomic_ulong bucket[NB + 1];
    atomic_ulong count, sum_us;
};

static fs_hist hists[MAX_HISTS];
static atomic_int nhists;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

fs_hist *fs_hist_register(const char *name, const char *labels, const char *help)
{
    pthread_mutex_lock(&reg_lock);
    int n = atomic_load(&nhists);
    for (int i = 0; i < n; i++)
        if (!strcmp(hists[i].name, name) && !strcmp(hists[i].labels, labels)) {
            pthread_mutex_unlock(&reg_lock);
            return &hists[i];
        }
    fs_hist *h = NULL;
    if (n < MAX_HISTS) {
        h = &hists[n];
        snprintf(h->name, sizeof h->name, "%s", name);
        snprintf(h->labels, sizeof h->labels, "%s", labels);
        snprintf(h->help, sizeof h->help, "%s", help);
        atomic_store(&nhists, n + 1);
    }
    pthread_mutex_unlock(&reg_lock);
    return h;
}

void fs_hist_observe_ms(fs_hist *h, double ms)
{
    if (!h)
        return;
    if (ms < 0)
        ms = 0;
    size_t lo = 0, hi = NB; /* first bound >= ms, or NB (+Inf) */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (bounds_ms[mid] >= ms)
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&h->bucket[lo], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (unsigned long)(ms * 1000.0), memory_order_relaxed);
}

char *fs_metrics_text(size_t *len)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f)
        return NULL;
    int count = atomic_load(&nhists);
    for (int i = 0; i < count; i++) {
        fs_hist *h = &hists[i];
        bool first = true; /* HELP/TYPE once per name */
        for (int j = 0; j < i; j++)
            if (!strcmp(hists[j].name, h->name))
                first = false;
        if (first)
            fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
        const char *sep = h->labels[0] ? "," : "";
        unsigned long cum = 0;
        for (size_t b = 0; b <= NB; b++) {
            cum += atomic_load_explicit(&h->bucket[b], memory_order_relaxed);
            if (b < NB)
                fprintf(f, "%s_bucket{%s%sle=\"%g\"} %lu\n", h->name, h->labels, sep, bounds_ms[b], cum);
            else
                fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %lu\n", h->name, h->labels, sep, cum);
        }
        const char *open = h->labels[0] ? "{" : "", *close = h->labels[0] ? "}" : "";
        fprintf(f, "%s_sum%s%s%s %.3f\n%s_count%s%s%s %lu\n", h->name, open, h->labels, close,
                atomic_load(&h->sum_us) / 1000.0, h->name, open, h->labels, close,
                atomic_load(&h->count));
    }
    if (fclose(f)) {
        free(out);
        return NULL;
    }
    *len = n;
    return out;
}

struct fs_metrics_server {
    struct mg_context *ctx;
};

static int serve_metrics(struct mg_connection *conn, void *cb)
{
    (void)cb;
    size_t len = 0;
    char *text = fs_metrics_text(&len);
    if (!text) {
        mg_printf(conn, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        return 503;
    }
    mg_printf(conn,
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\n\r\n",
              len);
    mg_write(conn, text, len);
    free(text);
    return 200;
}

static int quiet_log(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    fs_log_warn("metrics listener", json_pack("{s:s}", "detail", message));
    return 1;
}

fs_metrics_server *fs_metrics_serve(const char *listen, fs_err *err)
{
    fs_metrics_server *s = calloc(1, sizeof *s);
    if (!s) {
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        return NULL;
    }
    const char *options[] = {"listening_ports", listen, "num_threads", "2", "request_timeout_ms", "5000",
                             NULL};
    struct mg_callbacks cbs;
    memset(&cbs, 0, sizeof cbs);
    cbs.log_message = quiet_log;
    mg_init_library(0);
    s->ctx = mg_start(&cbs, NULL, options);
    if (!s->ctx) {
        free(s);
        fs_err_set(err, FS_ERR_FATAL, 0, "metrics listener could not listen on %s", listen);
        return NULL;
    }
    mg_set_request_handler(s->ctx, "/metrics$", serve_metrics, NULL);
    return s;
}

void fs_metrics_serve_stop(fs_metrics_server *s)
{
    if (!s)
        return;
    mg_stop(s->ctx);
    free(s);
}

fs_metrics_server *fs_metrics_serve_from_env(void)
{
    const char *addr = getenv("FLASHSALE_METRICS_ADDR");
    if (!addr || !*addr)
        return NULL;
    fs_err err = {0};
    fs_metrics_server *s = fs_metrics_serve(addr, &err);
    if (s)
        fs_log_info("metrics listening", json_pack("{s:s}", "listen", addr));
    else
        fs_log_warn("metrics listener not started", json_pack("{s:s}", "error", err.msg));
    return s;
}

long fs_resident_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long size, resident;
    int n = fscanf(f, "%ld %ld", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? resident * (page / 1024) : -1;
}
