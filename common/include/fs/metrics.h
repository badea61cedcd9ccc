/* Latency histograms in Prometheus form, shared by every service, and a /metrics listener
 * for the services that have no HTTP server of their own.
 *
 * A histogram is registered once (at start, before the threads that observe it) and then
 * observed from any thread without locks (atomic counters). Buckets are fixed, in
 * milliseconds from 0.05 to 5,000, fine enough to tell a 1 ms hop from a 3 ms one. What is
 * observed is the project's per-stage timing of the order path (request -> command durable
 * -> polled -> decided -> commit -> visible -> answered) and of each saga hop; perf/run
 * scrapes it before and after each step and prints the breakdown. */
#ifndef FS_METRICS_H
#define FS_METRICS_H
#include "fs/err.h"
#include <stddef.h>
#include <stdint.h>

typedef struct fs_hist fs_hist;

/* Registers (or finds: same name and labels) a histogram. `labels` is the inside of the
 * braces, e.g. `stage="decided"`, or "" for none. Returns NULL only when the registry (128)
 * is full; observing NULL is a no-op, so a caller never checks. Strings are copied. */
fs_hist *fs_hist_register(const char *name, const char *labels, const char *help);
/* Any thread. Negative values count as 0. */
void fs_hist_observe_ms(fs_hist *h, double ms);

/* Every registered histogram as Prometheus text (malloc'd, NUL-terminated, *len without
 * the NUL); NULL when out of memory. Any thread. */
char *fs_metrics_text(size_t *len);

/* Starts a civetweb listener serving GET /metrics (fs_metrics_text) on "ADDR:PORT".
 * Returns the server, or NULL with *err. fs_metrics_serve_stop stops it (NULL-safe). */
typedef struct fs_metrics_server fs_metrics_server;
fs_metrics_server *fs_metrics_serve(const char *listen, fs_err *err);
void fs_metrics_serve_stop(fs_metrics_server *s);
/* The FLASHSALE_METRICS_ADDR setting ("ADDR:PORT", unset: no listener) for the services
 * without their own HTTP server: starts it, or logs why not and goes on without it. */
fs_metrics_server *fs_metrics_serve_from_env(void);

/* This process's resident memory in kB (/proc/self/statm), or -1 when it cannot be read. For
 * the progress lines of services whose memory follows what they hold. */
long fs_resident_kb(void);

#endif
