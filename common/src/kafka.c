/* Kafka helpers; see fs/kafka.h. */
#include "fs/kafka.h"

#include "fs/follow.h"
#include "fs/id.h"
#include "fs/log.h"

#include <inttypes.h>
#include <stdatomic.h>
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
/* Commands carry the broker's append time: a ReserveStock appended after its accept_by is
 * refused (domain/include/flashsale/inventory.h, inv_command). */
static const char *const commands_config[] = {"message.timestamp.type", "LogAppendTime", NULL};
const fs_topic_spec fs_topics[] = {
    {FS_TOPIC_INVENTORY_COMMANDS, "604800000", commands_config}, {FS_TOPIC_INVENTORY_EVENTS, "-1", NULL},
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
static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

const char *fs_fetch_wait_ms(void)
{
    return env_or("FLASHSALE_FETCH_WAIT_MS", "500");
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

/* message.timeout.ms of transactional producers: FLASHSALE_TXN_MESSAGE_TIMEOUT_MS or 5000
 * (librdkafka lowers it to transaction.timeout.ms when that is shorter). */
static const char *txn_msg_timeout_ms(void)
{
    const char *v = getenv("FLASHSALE_TXN_MESSAGE_TIMEOUT_MS");
    return v && *v ? v : "5000";
}

/* The settings of each role; see fs/kafka.h. */
static int role_settings(rd_kafka_conf_t *conf, const fs_common_config *cfg,
                         const fs_kafka_client *c, fs_err *err)
{
    char tmo[24], gid[128];
    switch (c->role) {
    case FS_KAFKA_PRODUCER:
    case FS_KAFKA_TXN: {
        const bool txn = c->role == FS_KAFKA_TXN;
        if (txn && !c->transactional_id)
            return fs_err_set(err, FS_ERR_FATAL, 0, "a transactional client needs its id");
        snprintf(tmo, sizeof tmo, "%ld", cfg->txn_timeout_ms);
        return conf_set(conf, "enable.idempotence", "true", err) ||
                       conf_set(conf, "acks", "all", err) ||
                       conf_set(conf, "partitioner", "murmur2_random", err) ||
                       /* A transaction's records are read by nobody before its commit, which
                        * flushes at once whatever still lingers, so they may wait to share
                        * produce requests; an eager commit may then send its last records
                        * only at that flush (one produce round trip more in the commit).
                        * Measured side by side at 1,000 orders/s (2 ms vs 20 ms, two runs
                        * each) the produce requests did not clearly fall: saga 316/488 vs
                        * 581/282 a second, processor 244/398 vs 381/215. */
                       conf_set(conf, "linger.ms", txn ? "20" : "2", err) ||
                       (!txn && conf_set(conf, "message.timeout.ms", "30000", err)) ||
                       (txn && conf_set(conf, "transactional.id", c->transactional_id, err)) ||
                       (txn && conf_set(conf, "transaction.timeout.ms", tmo, err)) ||
                       /* A record stuck in flight (its partition's leader died with the
                        * request unanswered) fails after this, which makes the transaction
                        * abortable: the loop aborts, rewinds and redoes the batch with the
                        * new leader. Left at transaction.timeout.ms (30 s) the commit, which
                        * first flushes, waited the full 30 s after a broker SIGKILL. */
                       (txn && conf_set(conf, "message.timeout.ms", txn_msg_timeout_ms(), err)) ||
                       /* Back-to-back transactions (group commit) meet CONCURRENT_TRANSACTIONS
                        * while the coordinator still writes the previous one's markers.
                        * librdkafka 2.0.2 retries AddOffsetsToTxn and EndTxn after
                        * retry.backoff.ms (100 ms by default); AddPartitionsToTxn retries
                        * after a fixed 20 ms that no setting changes (rdkafka_txnmgr.c).
                        * The effect was not isolated by measurement here. */
                       (txn && conf_set(conf, "retry.backoff.ms", "2", err))
                   ? -1
                   : 0;
    }
    case FS_KAFKA_CONSUMER:
    case FS_KAFKA_FOLLOWER: {
        const char *group = c->group_id;
        if (c->role == FS_KAFKA_FOLLOWER || !group) {
            /* assign-only: a group id is still needed by librdkafka for some calls */
            char u[FS_UUID_STR_LEN + 1];
            fs_uuid7_str(u);
            snprintf(gid, sizeof gid, "flashsale-reader-%s", u);
            group = gid;
        }
        bool eof = c->role == FS_KAFKA_FOLLOWER || c->partition_eof;
        return conf_set(conf, "group.id", group, err) ||
                       (c->role == FS_KAFKA_CONSUMER && c->instance_id &&
                        conf_set(conf, "group.instance.id", c->instance_id, err)) ||
                       conf_set(conf, "partition.assignment.strategy", "range", err) ||
                       conf_set(conf, "isolation.level", "read_committed", err) ||
                       conf_set(conf, "enable.auto.commit", "false", err) ||
                       conf_set(conf, "enable.auto.offset.store", "false", err) ||
                       conf_set(conf, "auto.offset.reset", "earliest", err) ||
                       conf_set(conf, "session.timeout.ms", "6000", err) ||
                       conf_set(conf, "heartbeat.interval.ms", "1500", err) ||
                       conf_set(conf, "max.poll.interval.ms", "300000", err) ||
                       conf_set(conf, "fetch.wait.max.ms", fs_fetch_wait_ms(), err) ||
                       /* 1 byte (answered at once) unless FLASHSALE_FETCH_MIN_BYTES, a
                        * knob for measurement: 64 KiB within a 10 ms wait did not lower the
                        * broker's CPU at 300 orders/s (perf/RESULTS.md, 2026-12-04) */
                       conf_set(conf, "fetch.min.bytes", env_or("FLASHSALE_FETCH_MIN_BYTES", "1"), err) ||
                       conf_set(conf, "enable.partition.eof", eof ? "true" : "false", err)
                   ? -1
                   : 0;
    }
    case FS_KAFKA_PROBE:
        return conf_set(conf, "group.id", "flashsale-watermark-probe", err) ||
                       conf_set(conf, "isolation.level", "read_uncommitted", err)
                   ? -1
                   : 0;
    case FS_KAFKA_ADMIN: return 0;
    default: return fs_err_set(err, FS_ERR_FATAL, 0, "unknown Kafka client role %d", (int)c->role);
    }
}

rd_kafka_t *fs_kafka_new(const fs_common_config *cfg, const fs_kafka_client *c, fs_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *dbg = getenv("FLASHSALE_RDKAFKA_DEBUG");
    if (conf_set(conf, "bootstrap.servers", cfg->brokers, err) ||
        conf_set(conf, "client.id", c->client_id ? c->client_id : "flashsale", err) ||
        /* After a connection fails, librdkafka waits before the next try, doubling the wait
         * up to this bound (10 s by default). A broker back from a restart was then seen up
         * to 10 s late by each client: a processor's commit, blocked on the broker, returned
         * ~4.6 s after the system was up again, and decisions resumed only then. With 1 s,
         * orders were decided again 18.5-20.5 s after a broker SIGKILL instead of 24.7-26.8 s
         * (perf/RESULTS.md, 2026-12-07, kill-broker). Our brokers are few and near: a try a
         * second costs nothing. FLASHSALE_RECONNECT_BACKOFF_MAX_MS for measurement. */
        conf_set(conf, "reconnect.backoff.max.ms", env_or("FLASHSALE_RECONNECT_BACKOFF_MAX_MS", "1000"), err) ||
        role_settings(conf, cfg, c, err) || (dbg && *dbg && conf_set(conf, "debug", dbg, err))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (const char *const *kv = c->extra; kv && kv[0]; kv += 2)
        if (conf_set(conf, kv[0], kv[1], err)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    const char *ms = getenv("FLASHSALE_RDKAFKA_STATS_MS");
    if (c->stats && ms && *ms) {
        if (conf_set(conf, "statistics.interval.ms", ms, err)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
    }
    if (c->dr)
        rd_kafka_conf_set_dr_msg_cb(conf, c->dr);
    if (c->rebalance)
        rd_kafka_conf_set_rebalance_cb(conf, c->rebalance);
    if (c->opaque)
        rd_kafka_conf_set_opaque(conf, c->opaque);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    bool producer = c->role == FS_KAFKA_PRODUCER || c->role == FS_KAFKA_TXN || c->role == FS_KAFKA_ADMIN;
    char e[512];
    rd_kafka_t *rk = rd_kafka_new(producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        fs_err_set(err, FS_ERR_FATAL, 0, "kafka client %s: %s", c->client_id ? c->client_id : "", e);
    }
    return rk;
}

void fs_kafka_retire(rd_kafka_t *p, int drain_ms)
{
    if (!p)
        return;
    /* A fatal error has purged what was queued (its reports wait in the queue); what was in
     * flight gets its outcome from the broker, or fails at message.timeout.ms. */
    rd_kafka_flush(p, drain_ms);
    rd_kafka_purge(p, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    /* the purged messages' reports: served before the destroy, which would drop them */
    for (int i = 0; i < 50 && rd_kafka_outq_len(p) > 0; i++)
        rd_kafka_poll(p, 100);
    rd_kafka_destroy(p);
}

int fs_kafka_renew_if_fatal(rd_kafka_t **p, const fs_common_config *cfg, const fs_kafka_client *c,
                            const char *who, int drain_ms, fs_err *err)
{
    char why[512];
    bool failed = *p != NULL;
    if (*p) {
        rd_kafka_resp_err_t e = rd_kafka_fatal_error(*p, why, sizeof why);
        if (!e)
            return 0;
        fs_log_error("producer failed fatally; replacing it",
                     json_pack("{s:s,s:s,s:s}", "producer", who, "code", rd_kafka_err2name(e), "error", why));
        fs_kafka_retire(*p, drain_ms);
        *p = NULL;
    }
    if (!(*p = fs_kafka_new(cfg, c, err)))
        return -1;
    if (failed)
        fs_log_info("producer replaced", json_pack("{s:s}", "producer", who));
    return 1;
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

/* Sets a topic's configuration to exactly retention_ms + config (AlterConfigs replaces the
 * topic's whole set): a topic made before an entry was added gets it too. */
static int alter_topic(rd_kafka_t *rk, const char *name, const char *retention_ms,
                       const char *const *config, int timeout_ms, fs_err *err)
{
    char e[256];
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name);
    if (retention_ms)
        rd_kafka_ConfigResource_set_config(res, "retention.ms", retention_ms);
    for (size_t i = 0; config && config[i] && config[i + 1]; i += 2)
        rd_kafka_ConfigResource_set_config(res, config[i], config[i + 1]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, e, sizeof e);
    rd_kafka_AlterConfigs(rk, &res, 1, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
    int rc = 0;
    if (!ev)
        rc = fs_err_set(err, FS_ERR_RETRIABLE, 0, "configure topic %s: timed out", name);
    else if (rd_kafka_event_error(ev))
        rc = fs_err_from_kafka_code(err, rd_kafka_event_error(ev), "configure topic");
    else {
        size_t n = 0;
        const rd_kafka_ConfigResource_t **r =
            rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
        if (n && rd_kafka_ConfigResource_error(r[0]))
            rc = fs_err_set(err, FS_ERR_FATAL, rd_kafka_ConfigResource_error(r[0]),
                            "configure topic %s: %s", name, rd_kafka_ConfigResource_error_string(r[0]));
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(res);
    return rc;
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
            else if (config)
                rc = alter_topic(rk, name, retention_ms, config, timeout_ms, err);
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

int64_t fs_kafka_record_time(const rd_kafka_message_t *m)
{
    rd_kafka_timestamp_type_t tt = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    return tt != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts > 0 ? ts : 0;
}

rd_kafka_t *fs_kafka_probe_new(const fs_common_config *cfg, fs_err *err)
{
    return fs_kafka_new(cfg, &(fs_kafka_client){.role = FS_KAFKA_PROBE,
                                                .client_id = "flashsale-watermark-probe"},
                        err);
}

/* A read to the end knows it is there only from a fetch that found nothing (the partition's
 * EOF): a transactional partition ends with a commit marker, which is never delivered, so its
 * last record does not reach the end offset. Such a fetch waits fetch.wait.max.ms, the
 * followers' 500 ms, and so did every read to the end: a processor taking over partitions
 * waited for it three times (two snapshot reads and the changelog). A read to the end lives
 * only until it is there, so it waits 10 ms instead. The cost: while an open transaction holds
 * the end back (up to its timeout, or the read's), the reader asks ~100 times a second, where
 * ~10 idle readers at 10 ms once cost the broker ~120 % of a core (docs/architecture.md). */
static const char *const to_end_settings[] = {"fetch.wait.max.ms", "10", NULL};

int fs_kafka_read_to_end(const fs_common_config *cfg,
                         const rd_kafka_topic_partition_list_t *parts, fs_kafka_record_cb cb,
                         void *ctx, int timeout_ms, fs_err *err)
{
    if (!parts || parts->cnt == 0)
        return 0;
    int64_t deadline = fs_mono_ms() + timeout_ms;
    fs_follower *f = fs_follower_new(cfg, "flashsale-changelog", parts, to_end_settings, timeout_ms, err);
    if (!f)
        return -1;
    int rc = 0;
    while (rc == 0 && !fs_follower_caught_up(f)) {
        if (fs_mono_ms() > deadline) {
            rc = fs_err_set(err, FS_ERR_RETRIABLE, 0,
                            "reading %s to its end timed out after %d ms (%d partitions left; "
                            "an open transaction may be holding the last stable offset)",
                            parts->elems[0].topic, timeout_ms, fs_follower_remaining(f));
            break;
        }
        rd_kafka_message_t *m = fs_follower_poll(f, 100);
        if (m && fs_follower_before_end(f, m))
            rc = cb(ctx, m, err);
        if (m)
            rd_kafka_message_destroy(m);
    }
    fs_follower_destroy(f);
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

/* The readers' dead letters (fs_kafka_dlq_write, fs_kafka_dlq_report, fs_kafka_dlq_settle):
 * the current round (each dead letter carries the round it was written in as its opaque;
 * a settle that gives up starts a new one, so that a report that comes later is not taken
 * for one of the next round's), how many of this round were written and not yet reported,
 * how many failed and the last failure's code; the test knob's remaining count (-1: not read
 * yet) and its key. */
static atomic_long dlq_round = 1;
static int dead_letter(rd_kafka_t *producer, const rd_kafka_message_t *src, const char *reason, void *opaque,
                       fs_err *err);
static atomic_long dlq_outstanding;
static atomic_ulong dlq_failed;
static atomic_int dlq_failed_code;
static atomic_long dlq_test_fail = -1;
static const char *dlq_test_key;

/* A refusal that a new attempt cannot mend: the broker (or the client, before sending) refuses
 * this record itself, whatever the state of the cluster. (An authorisation error is not one:
 * an operator mends it, and the reader waits for that.) */
static bool dlq_refused_for_good(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || /* (also the client's own check) */
           e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE || e == RD_KAFKA_RESP_ERR_INVALID_RECORD;
}

static void dlq_log_refused(rd_kafka_resp_err_t e, const char *topic, const char *partition, const char *offset)
{
    fs_log_error("dead letter refused for good; the record is only in its topic",
                 json_pack("{s:s,s:s,s:s,s:s}", "code", rd_kafka_err2name(e), "topic", topic, "partition", partition,
                           "offset", offset));
}

int fs_kafka_dlq_write(rd_kafka_t *p, const rd_kafka_message_t *src, const char *reason, fs_err *err)
{
    atomic_fetch_add(&dlq_outstanding, 1);
    if (dead_letter(p, src, reason, (void *)(intptr_t)atomic_load(&dlq_round), err) == 0)
        return 0;
    atomic_fetch_sub(&dlq_outstanding, 1); /* no report will come */
    if (!dlq_refused_for_good((rd_kafka_resp_err_t)err->code))
        return -1;
    char part[32], off[32];
    snprintf(part, sizeof part, "%" PRId32, src->partition);
    snprintf(off, sizeof off, "%" PRId64, src->offset);
    dlq_log_refused((rd_kafka_resp_err_t)err->code, src->rkt ? rd_kafka_topic_name(src->rkt) : "", part, off);
    return 0;
}

void fs_kafka_dlq_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if ((intptr_t)m->_private != (intptr_t)atomic_load(&dlq_round))
        return; /* of a round a settle gave up: its dead letters are written again */
    rd_kafka_resp_err_t e = m->err;
    if (!e && atomic_load(&dlq_test_fail) != 0) {
        long left = atomic_load(&dlq_test_fail);
        if (left < 0) { /* first report: read the knob */
            const char *v = getenv("FLASHSALE_TEST_DLQ_FAIL");
            long n = v && *v ? strtol(v, NULL, 10) : 0;
            dlq_test_key = getenv("FLASHSALE_TEST_DLQ_FAIL_KEY");
            atomic_compare_exchange_strong(&dlq_test_fail, &left, n > 0 ? n : 0);
        }
        bool ours = !dlq_test_key || (m->key && m->key_len == strlen(dlq_test_key) &&
                                      !memcmp(m->key, dlq_test_key, m->key_len));
        for (left = atomic_load(&dlq_test_fail); ours && left > 0;)
            if (atomic_compare_exchange_weak(&dlq_test_fail, &left, left - 1)) {
                e = RD_KAFKA_RESP_ERR__MSG_TIMED_OUT; /* as if it had not been delivered */
                break;
            }
    }
    if (e && dlq_refused_for_good(e)) {
        /* writing it again would be refused again, and its reader would never move on */
        char topic[256] = "", part[32] = "", off[32] = "";
        fs_kafka_header_get(m, "dlq-topic", topic, sizeof topic);
        fs_kafka_header_get(m, "dlq-partition", part, sizeof part);
        fs_kafka_header_get(m, "dlq-offset", off, sizeof off);
        dlq_log_refused(e, topic, part, off);
    } else if (e) {
        atomic_store(&dlq_failed_code, (int)e);
        atomic_fetch_add(&dlq_failed, 1);
    }
    atomic_fetch_sub(&dlq_outstanding, 1);
}

int fs_kafka_dlq_settle(rd_kafka_t *p, int timeout_ms, const volatile int *stop, fs_err *err)
{
    /* in slices, so that a stop is not held up by a broker that is away */
    int64_t until = fs_mono_ms() + timeout_ms;
    while (atomic_load(&dlq_outstanding) > 0 && fs_mono_ms() < until && !(stop && *stop))
        rd_kafka_poll(p, 100);
    long left = atomic_load(&dlq_outstanding);
    if (left > 0) {
        /* not delivered in time: purged, so that what is still queued is not sent later (what
         * was in flight may still be written by the broker: a copy the next attempt repeats) */
        rd_kafka_purge(p, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 50 && atomic_load(&dlq_outstanding) > 0; i++)
            rd_kafka_poll(p, 100); /* their reports (counted as failed) */
        /* a new round: a report still to come (or never: a retired producer's, dropped by its
         * destroy) neither counts for the next round nor holds it; the caller writes all of
         * this round's dead letters again */
        atomic_fetch_add(&dlq_round, 1);
        atomic_store(&dlq_outstanding, 0);
    }
    unsigned long failed = atomic_exchange(&dlq_failed, 0);
    if (left > 0)
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "%ld dead letter(s) not delivered %s", left,
                          stop && *stop ? "before the stop" : "in time");
    if (failed)
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "%lu dead letter(s) not delivered: %s", failed,
                          rd_kafka_err2str((rd_kafka_resp_err_t)atomic_load(&dlq_failed_code)));
    return 0;
}

static int dead_letter(rd_kafka_t *producer, const rd_kafka_message_t *src, const char *reason, void *opaque,
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
        RD_KAFKA_V_VALUE(src->payload, src->len), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(opaque),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e) {
        rd_kafka_headers_destroy(h);
        return fs_err_from_kafka_code(err, e, "dead-letter produce");
    }
    return 0;
}

int fs_kafka_dead_letter(rd_kafka_t *producer, const rd_kafka_message_t *src, const char *reason,
                         fs_err *err)
{
    return dead_letter(producer, src, reason, NULL, err);
}
