/* flashsale-topics: create the Kafka topics of flashsale, or check that the broker answers.
 *
 *   flashsale-topics create   creates every topic (idempotent) with FLASHSALE_PARTITIONS
 *                             partitions and FLASHSALE_REPLICATION replicas; a topic that
 *                             exists with another partition count is an error (families
 *                             must stay co-partitioned)
 *   flashsale-topics check    exit 0 when the broker answers a metadata request
 *   flashsale-topics leaders [TOPIC...]
 *                             one JSON line per partition of the topics (default: every
 *                             topic, internal ones included): topic, partition, leader
 *                             (node id, -1 when none), replicas, in-sync replicas, and the
 *                             nodes with their addresses first ({"node": id, "host", "port"})
 *
 * Waits up to 60 s for the broker to come up. Logs JSON lines to stderr. */
#include "fs/config.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Until at least `brokers` nodes are registered (a topic with N replicas needs N). */
static int wait_broker(rd_kafka_t *rk, int seconds, int brokers)
{
    int64_t deadline = fs_mono_ms() + seconds * 1000L;
    while (fs_mono_ms() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, NULL, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            int ok = md->broker_cnt >= brokers;
            rd_kafka_metadata_destroy(md);
            if (ok)
                return 0;
        }
        usleep(200 * 1000);
    }
    return -1;
}

static bool wanted(int argc, char **argv, const char *topic)
{
    if (argc <= 2)
        return true;
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], topic))
            return true;
    return false;
}

static json_t *ids(const int32_t *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

/* Who leads what: for tests and operators (which node to stop to move a leader). */
static int leaders(rd_kafka_t *rk, int argc, char **argv)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
    if (e) {
        fs_log_error("metadata", json_pack("{s:s}", "error", rd_kafka_err2str(e)));
        return 1;
    }
    for (int i = 0; i < md->broker_cnt; i++) {
        json_t *o = json_pack("{s:i,s:s,s:i}", "node", md->brokers[i].id, "host", md->brokers[i].host,
                              "port", md->brokers[i].port);
        char *line = json_dumps(o, JSON_COMPACT);
        printf("%s\n", line);
        free(line);
        json_decref(o);
    }
    for (int t = 0; t < md->topic_cnt; t++) {
        const rd_kafka_metadata_topic_t *tp = &md->topics[t];
        if (!wanted(argc, argv, tp->topic))
            continue;
        for (int p = 0; p < tp->partition_cnt; p++) {
            const rd_kafka_metadata_partition_t *pp = &tp->partitions[p];
            json_t *o = json_pack("{s:s,s:i,s:i,s:o,s:o}", "topic", tp->topic, "partition", pp->id,
                                  "leader", pp->leader, "replicas", ids(pp->replicas, pp->replica_cnt),
                                  "isrs", ids(pp->isrs, pp->isr_cnt));
            char *line = json_dumps(o, JSON_COMPACT);
            printf("%s\n", line);
            free(line);
            json_decref(o);
        }
    }
    rd_kafka_metadata_destroy(md);
    return 0;
}

int main(int argc, char **argv)
{
    fs_common_config cfg;
    fs_err err = {0};
    fs_log_init("topics", FS_LOG_INFO);
    bool show = argc >= 2 && !strcmp(argv[1], "leaders");
    if (!show && (argc != 2 || (strcmp(argv[1], "create") && strcmp(argv[1], "check")))) {
        fprintf(stderr, "usage: flashsale-topics create|check|leaders [TOPIC...]\n");
        return 2;
    }
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    rd_kafka_t *rk = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-topics"}, &err);
    if (!rk)
        fs_config_die(&err);
    int check = !strcmp(argv[1], "check");
    int rc = 0;
    int need = check || show ? 1 : (int)cfg.replication;
    if (wait_broker(rk, check ? 5 : 60, need)) {
        fs_log_error("brokers not reachable", json_pack("{s:s,s:i}", "brokers", cfg.brokers, "needed", need));
        rc = 1;
    } else if (show) {
        rc = leaders(rk, argc, argv);
    } else if (!check) {
        for (size_t i = 0; i < fs_topics_count; i++) {
            if (fs_kafka_create_topic_spec(rk, &fs_topics[i], (int)cfg.partitions,
                                           (int)cfg.replication, 30000, &err)) {
                fs_log_error("topic", json_pack("{s:s,s:s}", "topic", fs_topics[i].name,
                                                "error", err.msg));
                rc = 1;
            }
        }
        if (!rc)
            fs_log_info("topics ready", json_pack("{s:i,s:i}", "topics", (int)fs_topics_count,
                                                  "partitions", (int)cfg.partitions));
    }
    rd_kafka_destroy(rk);
    return rc;
}
