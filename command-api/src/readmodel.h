/* Queries of single products and orders over the read models (projections/):
 * Redis first; PostgreSQL when Redis misses, fails or is switched off by its circuit breaker
 * (after FS_RM_BREAKER_FAILS consecutive failures Redis is not asked for
 * FS_RM_BREAKER_OPEN_MS; then one request probes it). Each answer says where it came from
 * and how far the projection was behind the log (its last batch's lag, plus the time since
 * its last heartbeat beyond a second). A product read from Redis is reused for
 * FLASHSALE_STOCK_CACHE_MS (10 ms; 0: off), its age added to the reported lag. */
#ifndef FS_API_READMODEL_H
#define FS_API_READMODEL_H
#include "api.h"

#define FS_RM_BREAKER_FAILS 3
#define FS_RM_BREAKER_OPEN_MS 2000

typedef struct {
    const char *source; /* "redis", "postgres" or "log" (the API's own view of the log) */
    int64_t lag_ms;     /* projection lag; 0 for "log" */
} api_fresh;

bool api_rm_product(api_ctx *a, const char *id, inv_product_view *v, api_fresh *f);
/* Fills the order as the bus would (status in saga_status, history from the transitions),
 * with o->decided_at = the time of its last change. */
bool api_rm_order(api_ctx *a, const char *id, api_order *o, api_fresh *f);
json_t *api_fresh_json(const api_fresh *f);
void api_rm_init(long stock_cache_ms); /* FLASHSALE_STOCK_CACHE_MS, read at start */
void api_rm_stop(void);                 /* frees the product cache */
/* Whether Redis is currently switched off by the breaker (for /metrics and tests). */
bool api_rm_breaker_open(void);
/* The breaker's state: "closed" (Redis is asked), "open" (skipped), "half_open" (the open
 * time is over: the next query probes Redis). */
const char *api_rm_breaker_state(void);
/* How far each projection is behind the log, as the freshness of answers reports it
 * (milliseconds; -1 when it cannot be told: the store unreachable, or no projector has
 * reported yet). Worker threads; takes a pooled PostgreSQL connection for the request. */
void api_rm_projection_lag(api_ctx *a, int64_t *pg_lag, int64_t *redis_lag);

#endif
