/* Integration tests' Kafka helpers; see it_kafka.h. */
#include "it_kafka.h"

#include "fs/id.h"
#include "fs/kafka.h"

#include <stdio.h>
#include <stdlib.h>

int it_config(fs_common_config *cfg)
{
    if (!getenv("FLASHSALE_KAFKA_BROKERS")) {
        fprintf(stderr, "FLASHSALE_KAFKA_BROKERS unset: run the integration tests with make test\n");
        return -1;
    }
    fs_err err = {0};
    if (fs_common_config_load(cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

char *it_new_topic(const fs_common_config *cfg, const char *base, int parts)
{
    char u[FS_UUID_STR_LEN + 1];
    char *name = NULL;
    if (fs_uuid7_str(u) || asprintf(&name, "it.%s.%.12s", base, u + 24) < 0) {
        fprintf(stderr, "topic name: out of memory\n");
        return NULL;
    }
    fs_err err = {0};
    rd_kafka_t *a = fs_kafka_new(cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "it-admin"}, &err);
    if (!a || fs_kafka_create_topic(a, name, parts, 1, NULL, 30000, &err)) {
        fprintf(stderr, "create %s: %s\n", name, err.msg);
        if (a)
            rd_kafka_destroy(a);
        free(name);
        return NULL;
    }
    rd_kafka_destroy(a);
    return name;
}

rd_kafka_t *it_txn_producer(const fs_common_config *cfg, const char *txn_id)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char e[256];
    if (rd_kafka_conf_set(c, "bootstrap.servers", cfg->brokers, e, sizeof e) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(c, "transactional.id", txn_id, e, sizeof e) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "producer settings: %s\n", e);
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof e);
    if (!p) {
        fprintf(stderr, "producer: %s\n", e);
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    rd_kafka_error_t *ke = rd_kafka_init_transactions(p, 30000);
    if (ke) {
        fprintf(stderr, "init_transactions: %s\n", rd_kafka_error_string(ke));
        rd_kafka_error_destroy(ke);
        rd_kafka_destroy(p);
        return NULL;
    }
    return p;
}
