/* Kafka helpers; see fs/kafka.h. */
#include "fs/kafka.h"
#include "fs/id.h"
#include "fs/log.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Snapshots replace each other: compacted, in segments small enough to be cleaned. */
static const char *const snapshot_config[] = {"cleanup.policy", "compact",
                                              "segment.bytes", "67108864",
                                              "segment.ms", "3600000",
                                              "min.cleanable.dirty.ratio", "0.1",
                                              NULL};
const fs_topic_spec fs_topics[] = {
    {FS_TOPIC_INVENTORY_COMMANDS, "604800000", NULL}, {FS_TOPIC_INVENTORY_EVENTS, "-1", NULL},
    {FS_TOPIC_ORDERS_COMMANDS, "604800000", NULL},    {FS_TOPIC_ORDERS_EVENTS, "-1", NULL},
    {FS_TOPIC_PAYMENTS_COMMANDS, "604800000", NULL},  {FS_TOPIC_PAYMENTS_EVENTS, "-1", NULL},
    {FS_TOPIC_MEMBERS_EVENTS, "-1", NULL},            {FS_TOPIC_NOTIFICATIONS, "604800000", NULL},
    {FS_TOPIC_DEADLETTER, "2592000000", NULL},        {FS_TOPIC_ORDERS_ANSWERS, "-1", NULL},
    {FS_TOPIC_INVENTORY_SNAPSHOTS, NULL, snapshot_config},
};
const size_t fs_topics_count = sizeof fs_topics / sizeof fs_topics[0];

rd_kafka_headers_t *fs_kafka_headers_new(const fs_event_meta *m)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    char id[FS_UUID_STR_LEN + 1];
    const char *eid = m->event_id;
    if (!eid && fs_uuid7_str(id) == 0)
        eid = id;
    if (m->event_type)
        rd_kafka_header_add(h, "event-type", -1, m->event_type, -1);
    if (eid)
        rd_kafka_header_add(h, "event-id", -1, eid, -1);
    if (m->correlation_id)
        rd_kafka_header_add(h, "correlation-id", -1, m->correlation_id, -1);
    if (m->causation_id)
        rd_kafka_header_add(h, "causation-id", -1, m->causation_id, -1);
    char at[24];
    snprintf(at, sizeof at, "%" PRId64, m->occurred_at ? m->occurred_at : fs_now_ms());
    rd_kafka_header_add(h, "occurred-at", -1, at, -1);
    return h;
}

int fs_kafka_header_get(const rd_kafka_message_t *msg, const char *name, char *buf, size_t n)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t len;
    if (rd_kafka_message_headers(msg, &h) || !h ||
        rd_kafka_header_get_last(h, name, &v, &len) || len + 1 > n)
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return (int)len;
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, fs_err *err)
{
    char e[256];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof e) != RD_KAFKA_CONF_OK)
        return fs_err_set(err, FS_ERR_FATAL, 0, "kafka config %s: %s", k, e);
    return 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    fs_log(level <= 3 ? FS_LOG_ERROR : level <= 4 ? FS_LOG_WARN : FS_LOG_DEBUG, "rdkafka",
           json_pack("{s:s,s:s}", "facility", fac, "detail", buf));
}

/* How long the broker may hold a fetch when there is nothing new. It answers at once when
 * records (or transaction markers) arrive, so this costs no latency; it only bounds idle
 * polling. Measured: at 10 ms the idle broker spent 120 % CPU answering empty fetches of
 * the system's ~10 consumers, and order decisions at 250/s took p50 138 ms; at 500 ms the
 * idle broker used 7 % and the same load p50 74 ms. FLASHSALE_FETCH_WAIT_MS overrides. */
const char *fs_fetch_wait_ms(void)
{
    const char *v = getenv("FLASHSALE_FETCH_WAIT_MS");
    return v && *v ? v : "500";
}

/* FLASHSALE_RDKAFKA_STATS_MS (diagnosis): the clients of the order path (the API's
 * producers, every transactional loop's producer and consumer) log, that often, how many
 * requests they sent to the brokers and how many records they produced or consumed since
 * their start, so the broker's load can be traced to the clients causing it. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)opaque;
    json_t *st = json_loadb(json, len, 0, NULL);
    if (!st)
        return 0;
    json_int_t tx = 0, rx = 0;
    const char *name;
    json_t *b;
    json_object_foreach(json_object_get(st, "brokers"), name, b) {
        tx += json_integer_value(json_object_get(b, "tx"));
        rx += json_integer_value(json_object_get(b, "rx"));
    }
    fs_log_info("kafka client stats",
                json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "client", rd_kafka_name(rk), "type",
                          rd_kafka_type(rk) == RD_KAFKA_PRODUCER ? "producer" : "consumer", "requests", tx,
                          "responses", rx, "txmsgs", json_integer_value(json_object_get(st, "txmsgs")), "rxmsgs",
                          json_integer_value(json_object_get(st, "rxmsgs"))));
    json_decref(st);
    return 0;
}

void fs_kafka_conf_stats(rd_kafka_conf_t *conf)
{
    const char *ms = getenv("FLASHSALE_RDKAFKA_STATS_MS");
    char e[128];
    if (ms && *ms && rd_kafka_conf_set(conf, "statistics.interval.ms", ms, e, sizeof e) == RD_KAFKA_CONF_OK)
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
}

rd_kafka_conf_t *fs_kafka_conf_new(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

static rd_kafka_t *client_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, fs_err *err)
{
    char e[512];
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_t *rk = rd_kafka_new(type, conf, e, sizeof e);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        fs_err_set(err, FS_ERR_FATAL, 0, "kafka client: %s", e);
    }
    return rk;
}

rd_kafka_t *fs_kafka_producer_new(const fs_common_config *cfg, const char *client_id, fs_err *err)
{
    return fs_kafka_producer_new_with(cfg, client_id, NULL, NULL, err);
}

rd_kafka_t *fs_kafka_producer_new_with(const fs_common_config *cfg, const char *client_id,
                                       const char *const *extra, fs_kafka_dr_cb *dr, fs_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", cfg->brokers, err) ||
        conf_set(conf, "client.id", client_id, err) ||
        conf_set(conf, "enable.idempotence", "true", err) || conf_set(conf, "acks", "all", err) ||
        conf_set(conf, "linger.ms", "2", err) ||
        conf_set(conf, "partitioner", "murmur2_random", err) ||
        conf_set(conf, "message.timeout.ms", "30000", err)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (const char *const *kv = extra; kv && kv[0]; kv += 2)
        if (conf_set(conf, kv[0], kv[1], err)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    if (dr)
        rd_kafka_conf_set_dr_msg_cb(conf, dr);
    return client_new(RD_KAFKA_PRODUCER, conf, err);
}

rd_kafka_t *fs_kafka_admin_new(const fs_common_config *cfg, const char *client_id, fs_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", cfg->brokers, err) ||
        conf_set(conf, "client.id", client_id, err)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return client_new(RD_KAFKA_PRODUCER, conf, err);
}

rd_kafka_t *fs_kafka_consumer_new(const fs_common_config *cfg, const char *group,
                                  const char *instance_id, bool partition_eof, fs_err *err)
{
    return fs_kafka_consumer_new_with(cfg, group, instance_id, partition_eof, NULL, err);
}

rd_kafka_t *fs_kafka_consumer_new_with(const fs_common_config *cfg, const char *group,
                                       const char *instance_id, bool partition_eof,
                                       const char *const *extra, fs_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char gid[128];
    if (!group) { /* assign-only: a group id is still needed by librdkafka for some calls */
        char u[FS_UUID_STR_LEN + 1];
        fs_uuid7_str(u);
        snprintf(gid, sizeof gid, "flashsale-reader-%s", u);
        group = gid;
    }
    if (conf_set(conf, "bootstrap.servers", cfg->brokers, err) ||
        conf_set(conf, "group.id", group, err) ||
        (instance_id && conf_set(conf, "group.instance.id", instance_id, err)) ||
        conf_set(conf, "partition.assignment.strategy", "range", err) ||
        conf_set(conf, "isolation.level", "read_committed", err) ||
        conf_set(conf, "enable.auto.commit", "false", err) ||
        conf_set(conf, "enable.auto.offset.store", "false", err) ||
        conf_set(conf, "auto.offset.reset", "earliest", err) ||
        conf_set(conf, "session.timeout.ms", "6000", err) ||
        conf_set(conf, "heartbeat.interval.ms", "1500", err) ||
        conf_set(conf, "fetch.wait.max.ms", fs_fetch_wait_ms(), err) ||
        conf_set(conf, "enable.partition.eof", partition_eof ? "true" : "false", err) ||
        (getenv("FLASHSALE_RDKAFKA_DEBUG") &&
         conf_set(conf, "debug", getenv("FLASHSALE_RDKAFKA_DEBUG"), err))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (const char *const *kv = extra; kv && kv[0]; kv += 2)
        if (conf_set(conf, kv[0], kv[1], err)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    return client_new(RD_KAFKA_CONSUMER, conf, err);
}

int fs_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, fs_err *err)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
    rd_kafka_topic_destroy(t);
    if (e)
        return fs_err_from_kafka_code(err, e, "metadata");
    int n = -1;
    if (md->topic_cnt == 1 && !md->topics[0].err)
        n = md->topics[0].partition_cnt;
    else
        fs_err_from_kafka_code(err, md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, topic);
    rd_kafka_metadata_destroy(md);
    return n;
}

static int create_topic(rd_kafka_t *rk, const char *name, int partitions, int replication,
                        const char *retention_ms, const char *const *config, int timeout_ms,
                        fs_err *err);

int fs_kafka_create_topic(rd_kafka_t *rk, const char *name, int partitions, int replication,
                          const char *retention_ms, int timeout_ms, fs_err *err)
{
    return create_topic(rk, name, partitions, replication, retention_ms, NULL, timeout_ms, err);
}

int fs_kafka_create_topic_spec(rd_kafka_t *rk, const fs_topic_spec *spec, int partitions,
                               int replication, int timeout_ms, fs_err *err)
{
    return create_topic(rk, spec->name, partitions, replication, spec->retention_ms, spec->config,
                        timeout_ms, err);
}

static int create_topic(rd_kafka_t *rk, const char *name, int partitions, int replication,
                        const char *retention_ms, const char *const *config, int timeout_ms,
                        fs_err *err)
{
    char e[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, replication, e, sizeof e);
    if (!nt)
        return fs_err_set(err, FS_ERR_INVALID, 0, "topic %s: %s", name, e);
    if (retention_ms)
        rd_kafka_NewTopic_set_config(nt, "retention.ms", retention_ms);
    for (size_t i = 0; config && config[i] && config[i + 1]; i += 2)
        rd_kafka_NewTopic_set_config(nt, config[i], config[i + 1]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opt, timeout_ms, e, sizeof e);
    rd_kafka_CreateTopics(rk, &nt, 1, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
    int rc = 0;
    if (!ev)
        rc = fs_err_set(err, FS_ERR_RETRIABLE, 0, "create topic %s: timed out", name);
    else if (rd_kafka_event_error(ev))
        rc = fs_err_from_kafka_code(err, rd_kafka_event_error(ev), "create topic");
    else {
        size_t n;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rd_kafka_resp_err_t te = n ? rd_kafka_topic_result_error(res[0]) : 0;
        if (te == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            int have = fs_kafka_partition_count(rk, name, timeout_ms, err);
            if (have < 0)
                rc = -1;
            else if (have != partitions)
                rc = fs_err_set(err, FS_ERR_INVALID, 0,
                                "topic %s exists with %d partitions, configuration says %d "
                                "(co-partitioned families need equal counts)",
                                name, have, partitions);
        } else if (te)
            rc = fs_err_set(err, FS_ERR_FATAL, te, "create topic %s: %s", name,
                            rd_kafka_topic_result_error_string(res[0]));
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

rd_kafka_t *fs_kafka_probe_new(const fs_common_config *cfg, fs_err *err)
{
    rd_kafka_conf_t *pc = fs_kafka_conf_new();
    char e[256];
    rd_kafka_t *probe = NULL;
    if (rd_kafka_conf_set(pc, "bootstrap.servers", cfg->brokers, e, sizeof e) ||
        rd_kafka_conf_set(pc, "group.id", "flashsale-watermark-probe", e, sizeof e) ||
        rd_kafka_conf_set(pc, "isolation.level", "read_uncommitted", e, sizeof e) ||
        !(probe = rd_kafka_new(RD_KAFKA_CONSUMER, pc, e, sizeof e))) {
        rd_kafka_conf_destroy(pc);
        fs_err_set(err, FS_ERR_FATAL, 0, "watermark client: %s", e);
        return NULL;
    }
    return probe;
}

int fs_kafka_read_to_end(const fs_common_config *cfg,
                         const rd_kafka_topic_partition_list_t *parts, fs_kafka_record_cb cb,
                         void *ctx, int timeout_ms, fs_err *err)
{
    if (!parts || parts->cnt == 0)
        return 0;
    rd_kafka_t *rk = fs_kafka_consumer_new(cfg, NULL, NULL, true, err);
    if (!rk)
        return -1;
    /* The end must be the high watermark, not the last stable offset: a read_committed
     * handle's ListOffsets answers the LSO, which stops short of an open transaction whose
     * records may yet commit. So the watermarks come from a separate read_uncommitted
     * handle, and reading continues until the read_committed position passes them. */
    rd_kafka_t *probe = fs_kafka_probe_new(cfg, err);
    if (!probe) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return -1;
    }
    int rc = 0;
    int n = parts->cnt;
    int64_t *hi = calloc((size_t)n, sizeof *hi);
    char *done = calloc((size_t)n, 1);
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_copy(parts);
    int remaining = 0;
    int64_t deadline = fs_mono_ms() + timeout_ms;
    for (int i = 0; i < n; i++) {
        rd_kafka_topic_partition_t *p = &assign->elems[i];
        int64_t lo;
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_query_watermark_offsets(probe, p->topic, p->partition, &lo, &hi[i],
                                                     5000)) &&
               fs_mono_ms() < deadline)
            ;
        if (e) {
            rc = fs_err_from_kafka_code(err, e, "watermarks");
            goto out;
        }
        /* Explicit start offsets: a logical BEGINNING would make librdkafka look the
         * offset up first, on a retry timer. */
        if (p->offset < lo)
            p->offset = lo;
        if (hi[i] <= p->offset)
            done[i] = 1;
        else
            remaining++;
    }
    if (!remaining)
        goto out;
    /* Learn the partition leaders before assigning: a fresh consumer that has none yet
     * backs off for about half a second per attempt before it starts fetching. */
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int k = 0; k < i; k++)
            seen |= !strcmp(assign->elems[k].topic, assign->elems[i].topic);
        if (seen)
            continue;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, assign->elems[i].topic, NULL);
        if (rd_kafka_metadata(rk, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(t);
    }
    rd_kafka_assign(rk, assign);
    while (remaining > 0) {
        if (fs_mono_ms() > deadline) {
            rc = fs_err_set(err, FS_ERR_RETRIABLE, 0,
                            "reading %s to its end timed out after %d ms (%d partitions left; "
                            "an open transaction may be holding the last stable offset)",
                            assign->elems[0].topic, timeout_ms, remaining);
            goto out;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        int idx = -1;
        for (int i = 0; i < n; i++)
            if (assign->elems[i].partition == m->partition && m->rkt &&
                !strcmp(assign->elems[i].topic, rd_kafka_topic_name(m->rkt)))
                idx = i;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (idx >= 0 && !done[idx] && m->offset >= hi[idx]) {
                done[idx] = 1;
                remaining--;
            }
        } else if (m->err) {
            fs_log_warn("changelog read error",
                        json_pack("{s:s}", "error", rd_kafka_message_errstr(m)));
        } else if (idx >= 0 && !done[idx]) {
            if (m->offset < hi[idx]) {
                int r = cb(ctx, m, err);
                if (r) {
                    rc = r;
                    rd_kafka_message_destroy(m);
                    goto out;
                }
            }
            if (m->offset + 1 >= hi[idx]) {
                done[idx] = 1;
                remaining--;
            }
        }
        rd_kafka_message_destroy(m);
    }
out:
    rd_kafka_destroy(probe);
    rd_kafka_topic_partition_list_destroy(assign);
    free(hi);
    free(done);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

int fs_kafka_read_changelog(const fs_common_config *cfg,
                            const rd_kafka_topic_partition_list_t *assigned,
                            const char *changelog, fs_kafka_record_cb cb, void *ctx,
                            int timeout_ms, fs_err *err)
{
    rd_kafka_topic_partition_list_t *cl = rd_kafka_topic_partition_list_new(assigned->cnt);
    for (int i = 0; i < assigned->cnt; i++) {
        int32_t p = assigned->elems[i].partition;
        if (!rd_kafka_topic_partition_list_find(cl, changelog, p))
            rd_kafka_topic_partition_list_add(cl, changelog, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    int rc = fs_kafka_read_to_end(cfg, cl, cb, ctx, timeout_ms, err);
    rd_kafka_topic_partition_list_destroy(cl);
    return rc;
}

int fs_kafka_dead_letter(rd_kafka_t *producer, const rd_kafka_message_t *src, const char *reason,
                         fs_err *err)
{
    rd_kafka_headers_t *orig = NULL;
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(src, &orig) == 0 && orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(4);
    char num[32];
    rd_kafka_header_add(h, "dlq-reason", -1, reason, -1);
    rd_kafka_header_add(h, "dlq-topic", -1, src->rkt ? rd_kafka_topic_name(src->rkt) : "", -1);
    snprintf(num, sizeof num, "%" PRId32, src->partition);
    rd_kafka_header_add(h, "dlq-partition", -1, num, -1);
    snprintf(num, sizeof num, "%" PRId64, src->offset);
    rd_kafka_header_add(h, "dlq-offset", -1, num, -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(FS_TOPIC_DEADLETTER), RD_KAFKA_V_KEY(src->key, src->key_len),
        RD_KAFKA_V_VALUE(src->payload, src->len), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e) {
        rd_kafka_headers_destroy(h);
        return fs_err_from_kafka_code(err, e, "dead-letter produce");
    }
    return 0;
}
