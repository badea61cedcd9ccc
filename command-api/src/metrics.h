/* Prometheus metrics of flashsale-api: requests by route and status. Lock-free counters,
 * callable from any thread. */
#ifndef FS_API_METRICS_H
#define FS_API_METRICS_H
#include <stddef.h>

enum { FS_ROUTE_HEALTHZ, FS_ROUTE_READYZ, FS_ROUTE_METRICS, FS_ROUTE_OTHER, FS_ROUTE_COUNT };

void fs_metrics_request(int route, int status);
/* Renders the Prometheus text exposition into a malloc'd string; *len its length. */
char *fs_metrics_render(size_t *len);

#endif
