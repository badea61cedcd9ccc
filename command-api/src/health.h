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

/* producer: the API's Kafka producer, used for metadata checks (not owned). */
fs_health *fs_health_start(const fs_common_config *cfg, rd_kafka_t *producer);
void fs_health_stop(fs_health *h); /* NULL-safe; joins the thread */
/* Returns true when every dependency was reachable at the last check; *detail (new
 * reference) describes each. */
bool fs_health_snapshot(fs_health *h, json_t **detail);

#endif
