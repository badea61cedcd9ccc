/* Prometheus metrics of flashsale-api: requests by route and status. Lock-free counters,
 * callable from any thread. */
#ifndef FS_API_METRICS_H
#define FS_API_METRICS_H
#include <stddef.h>

enum {
    FS_ROUTE_HEALTHZ,
    FS_ROUTE_READYZ,
    FS_ROUTE_METRICS,
    FS_ROUTE_OTHER,
    FS_ROUTE_PRODUCTS_CREATE,
    FS_ROUTE_PRODUCT,       /* GET/PATCH /api/products/{id} */
    FS_ROUTE_PRODUCT_STOCK, /* GET /api/products/{id}/stock */
    FS_ROUTE_PRODUCT_OP,    /* POST /api/products/{id}/restock|pause|resume */
    FS_ROUTE_ORDERS_CREATE,
    FS_ROUTE_ORDER,         /* GET /api/orders/{id} */
    FS_ROUTE_MEMBERS,       /* /api/members... */
    FS_ROUTE_AUTH,          /* /api/auth/... */
    FS_ROUTE_WISHLIST,      /* /api/wishlist... */
    FS_ROUTE_ADMIN,         /* /api/admin/... */
    FS_ROUTE_OPENAPI,       /* GET /api/openapi.json */
    FS_ROUTE_COUNT
};

void fs_metrics_request(int route, int status);
/* Time from accepting POST /api/orders to the decision being known, in milliseconds. */
void fs_metrics_decision_latency(double ms);
/* Answered without Kafka because the view said available = 0. */
void fs_metrics_fast_sold_out(void);
/* A command could not be produced or was not delivered. */
void fs_metrics_produce_error(void);
/* One of the API's producers (commands, answers) replaced after a fatal error (bus.c's
 * keeper; the outbox relay's replacements are only logged). */
void fs_metrics_producer_renewed(void);
/* An order answered 202 whose command the broker appended after its accept_by. */
void fs_metrics_appended_late(void);
/* Read-model queries: which store answered (FS_READ_*), Redis failures, breaker state. */
enum { FS_READ_REDIS, FS_READ_POSTGRES, FS_READ_LOG, FS_READ_SOURCES };
void fs_metrics_read(int source);
void fs_metrics_redis_read_failure(void);
void fs_metrics_breaker(int open);
/* Renders the Prometheus text exposition into a malloc'd string; *len its length. */
char *fs_metrics_render(size_t *len);

#endif
