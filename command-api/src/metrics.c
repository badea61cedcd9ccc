/* Request counters; see metrics.h. Statuses are bucketed by exact code among the few the
 * API sends (index by code - 100), so the table stays small and lock-free. */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const route_names[FS_ROUTE_COUNT] = {
    "healthz",       "readyz",     "metrics",        "other", "products_create", "product",
    "product_stock", "product_op", "orders_create", "order", "members", "auth", "wishlist",
    "admin",         "openapi"};
static atomic_ulong counts[FS_ROUTE_COUNT][500]; /* status 100..599 */

static const double buckets_ms[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000};
#define NBUCKETS (sizeof buckets_ms / sizeof buckets_ms[0])
static atomic_ulong latency_buckets[NBUCKETS + 1];
static atomic_ulong latency_sum_us, latency_count, fast_sold_out, produce_errors, producer_renewals,
    appended_late;
static atomic_ulong reads[FS_READ_SOURCES], redis_read_failures;
static atomic_int breaker_open;

void fs_metrics_read(int source)
{
    if (source >= 0 && source < FS_READ_SOURCES)
        atomic_fetch_add_explicit(&reads[source], 1, memory_order_relaxed);
}

void fs_metrics_redis_read_failure(void)
{
    atomic_fetch_add_explicit(&redis_read_failures, 1, memory_order_relaxed);
}

void fs_metrics_breaker(int open)
{
    atomic_store(&breaker_open, open);
}

void fs_metrics_decision_latency(double ms)
{
    size_t i = 0;
    while (i < NBUCKETS && ms > buckets_ms[i])
        i++;
    atomic_fetch_add_explicit(&latency_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_sum_us, (unsigned long)(ms * 1000), memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_count, 1, memory_order_relaxed);
}

void fs_metrics_fast_sold_out(void)
{
    atomic_fetch_add_explicit(&fast_sold_out, 1, memory_order_relaxed);
}

void fs_metrics_produce_error(void)
{
    atomic_fetch_add_explicit(&produce_errors, 1, memory_order_relaxed);
}

void fs_metrics_producer_renewed(void)
{
    atomic_fetch_add_explicit(&producer_renewals, 1, memory_order_relaxed);
}

void fs_metrics_appended_late(void)
{
    atomic_fetch_add_explicit(&appended_late, 1, memory_order_relaxed);
}

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
    char *tail = NULL;
    size_t tl = 0;
    FILE *f = open_memstream(&tail, &tl);
    if (!f) {
        free(out);
        return NULL;
    }
    fprintf(f, "# HELP flashsale_decision_latency_ms Time from accepting an order to its decision.\n"
               "# TYPE flashsale_decision_latency_ms histogram\n");
    unsigned long cum = 0;
    for (size_t i = 0; i <= NBUCKETS; i++) {
        cum += atomic_load(&latency_buckets[i]);
        if (i < NBUCKETS)
            fprintf(f, "flashsale_decision_latency_ms_bucket{le=\"%g\"} %lu\n", buckets_ms[i], cum);
        else
            fprintf(f, "flashsale_decision_latency_ms_bucket{le=\"+Inf\"} %lu\n", cum);
    }
    fprintf(f, "flashsale_decision_latency_ms_sum %.3f\nflashsale_decision_latency_ms_count %lu\n",
            atomic_load(&latency_sum_us) / 1000.0, atomic_load(&latency_count));
    fprintf(f, "# HELP flashsale_fast_sold_out_total Orders answered SOLD_OUT from the view, without Kafka.\n"
               "# TYPE flashsale_fast_sold_out_total counter\nflashsale_fast_sold_out_total %lu\n",
            atomic_load(&fast_sold_out));
    fprintf(f, "# HELP flashsale_kafka_produce_errors_total Commands not produced or not delivered.\n"
               "# TYPE flashsale_kafka_produce_errors_total counter\nflashsale_kafka_produce_errors_total %lu\n",
            atomic_load(&produce_errors));
    fprintf(f, "# HELP flashsale_kafka_producer_renewals_total The API's command and answer producers replaced after a fatal error.\n"
               "# TYPE flashsale_kafka_producer_renewals_total counter\nflashsale_kafka_producer_renewals_total %lu\n",
            atomic_load(&producer_renewals));
    fprintf(f, "# HELP flashsale_orders_appended_late_total Orders answered 202 whose command the broker appended "
               "after its accept_by (refused TIMED_OUT unless an earlier copy was in time).\n"
               "# TYPE flashsale_orders_appended_late_total counter\nflashsale_orders_appended_late_total %lu\n",
            atomic_load(&appended_late));
    static const char *const sources[FS_READ_SOURCES] = {"redis", "postgres", "log"};
    fprintf(f, "# HELP flashsale_reads_total Product and order queries by the store that answered.\n"
               "# TYPE flashsale_reads_total counter\n");
    for (int i = 0; i < FS_READ_SOURCES; i++)
        fprintf(f, "flashsale_reads_total{source=\"%s\"} %lu\n", sources[i], atomic_load(&reads[i]));
    fprintf(f, "# HELP flashsale_redis_read_failures_total Read-model queries Redis failed (timeouts, errors).\n"
               "# TYPE flashsale_redis_read_failures_total counter\nflashsale_redis_read_failures_total %lu\n",
            atomic_load(&redis_read_failures));
    fprintf(f, "# HELP flashsale_redis_breaker_open 1 while Redis is skipped by the circuit breaker.\n"
               "# TYPE flashsale_redis_breaker_open gauge\nflashsale_redis_breaker_open %d\n",
            atomic_load(&breaker_open));
    fclose(f);
    char *all = realloc(out, n + tl + 1);
    if (!all) {
        free(out);
        free(tail);
        return NULL;
    }
    memcpy(all + n, tail, tl + 1);
    free(tail);
    *len = n + tl;
    return all;
}
