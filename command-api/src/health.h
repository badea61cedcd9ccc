/* Readiness of flashsale-api's dependencies (Kafka, PostgreSQL, Redis), checked by one
 * background thread every second so that /readyz never blocks a request thread on a
 * dependency. fs_health_snapshot() is callable from any thread. */
#ifndef FS_API_HEALTH_H
#define FS_API_HEALTH_H
#include "fs/config.h"
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>

typedef struct fs_health fs_health;

/* Kafka is checked by a metadata request from the monitor's own client, and, when
 * producers_ok is given, by asking it whether the service's producers work (false, with the
 * reason, while one has failed fatally). */
typedef bool fs_health_producers_fn(void *ctx, char *why, size_t n);
fs_health *fs_health_start(const fs_common_config *cfg, fs_health_producers_fn *producers_ok, void *ctx);
void fs_health_stop(fs_health *h); /* NULL-safe; joins the thread */
/* Returns true when every dependency was reachable at the last check; *detail (new
 * reference) describes each. */
bool fs_health_snapshot(fs_health *h, json_t **detail);

#endif
