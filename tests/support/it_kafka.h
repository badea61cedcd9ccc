/* Integration tests' Kafka helpers, on the broker infra/test.sh started (its environment). */
#ifndef FS_TEST_IT_KAFKA_H
#define FS_TEST_IT_KAFKA_H
#include "fs/config.h"

#include <librdkafka/rdkafka.h>

/* The configuration from the environment; -1 (the reason printed) when the tests were not
 * started by make test (no FLASHSALE_KAFKA_BROKERS) or it does not load. */
int it_config(fs_common_config *cfg);

/* A new topic "it.<base>.<12 random characters>" of `parts` partitions; the name is
 * malloc'd. NULL (the reason printed) when it cannot be made. */
char *it_new_topic(const fs_common_config *cfg, const char *base, int parts);

/* A transactional producer with this transactional.id, its transactions initialised. NULL
 * (the reason printed) when it cannot be made. */
rd_kafka_t *it_txn_producer(const fs_common_config *cfg, const char *txn_id);

#endif
