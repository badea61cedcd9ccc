/* Request counters; see metrics.h. Statuses are bucketed by exact code among the few the
 * API sends (index by code - 100), so the table stays small and lock-free. */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const route_names[FS_ROUTE_COUNT] = {"healthz", "readyz", "metrics", "other"};
static atomic_ulong counts[FS_ROUTE_COUNT][500]; /* status 100..599 */

void fs_metrics_request(int route, int status)
{
    if (route < 0 || route >= FS_ROUTE_COUNT || status < 100 || status > 599)
        return;
    atomic_fetch_add_explicit(&counts[route][status - 100], 1, memory_order_relaxed);
}

char *fs_metrics_render(size_t *len)
{
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    n += (size_t)snprintf(out + n, cap - n,
                          "# HELP flashsale_http_requests_total HTTP requests by route and status.\n"
                          "# TYPE flashsale_http_requests_total counter\n");
    for (int r = 0; r < FS_ROUTE_COUNT; r++)
        for (int s = 0; s < 500; s++) {
            unsigned long v = atomic_load_explicit(&counts[r][s], memory_order_relaxed);
            if (!v)
                continue;
            if (cap - n < 256) {
                char *bigger = realloc(out, cap * 2);
                if (!bigger) {
                    free(out);
                    return NULL;
                }
                out = bigger;
                cap *= 2;
            }
            n += (size_t)snprintf(out + n, cap - n,
                                  "flashsale_http_requests_total{route=\"%s\",status=\"%d\"} %lu\n",
                                  route_names[r], s + 100, v);
        }
    *len = n;
    return out;
}
