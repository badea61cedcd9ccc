/* flashsale-topics: create the Kafka topics of flashsale, or check that the broker answers.
 *
 *   flashsale-topics create   creates every topic (idempotent) with FLASHSALE_PARTITIONS
 *                             partitions and FLASHSALE_REPLICATION replicas; a topic that
 *                             exists with another partition count is an error (families
 *                             must stay co-partitioned)
 *   flashsale-topics check    exit 0 when the broker answers a metadata request
 *
 * Waits up to 60 s for the broker to come up. Logs JSON lines to stderr. */
#include "fs/config.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int wait_broker(rd_kafka_t *rk, int seconds)
{
    int64_t deadline = fs_mono_ms() + seconds * 1000L;
    while (fs_mono_ms() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, NULL, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            int ok = md->broker_cnt > 0;
            rd_kafka_metadata_destroy(md);
            if (ok)
                return 0;
        }
        usleep(200 * 1000);
    }
    return -1;
}

int main(int argc, char **argv)
{
    fs_common_config cfg;
    fs_err err = {0};
    fs_log_init("topics", FS_LOG_INFO);
    if (argc != 2 || (strcmp(argv[1], "create") && strcmp(argv[1], "check"))) {
        fprintf(stderr, "usage: flashsale-topics create|check\n");
        return 2;
    }
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    rd_kafka_t *rk = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-topics"}, &err);
    if (!rk)
        fs_config_die(&err);
    int check = !strcmp(argv[1], "check");
    int rc = 0;
    if (wait_broker(rk, check ? 5 : 60)) {
        fs_log_error("broker not reachable", json_pack("{s:s}", "brokers", cfg.brokers));
        rc = 1;
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
