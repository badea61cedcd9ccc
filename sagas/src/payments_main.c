/* flashsale-payments: a simulated payment provider behind payments.commands /
 * payments.events, so that a real provider's adapter can take its place.
 *
 * RequestPayment -> PaymentSucceeded | PaymentFailed; RequestRefund -> RefundSucceeded.
 * Idempotent per (order, attempt): the first result is kept (rebuilt on assignment from
 * payments.events) and a repeated request gets that same result again. A result is kept for
 * FLASHSALE_PAYMENT_RESULT_MEMORY_MS (one day) after its request was made, then forgotten,
 * and a rebuild does not take it back: the saga asks once per attempt, in its exactly-once
 * transaction, so a repeat comes only from a replay, and one that came later than that would
 * get the same outcome (a function of the key and the success rate) under a new payment id.
 * The clock of that day is the latest request time read, not the wall clock. The outcome is a
 * deterministic function of (order, attempt) and the configured success rate, so a replay
 * answers the same. A declined payment is marked retriable every other time, to exercise
 * the saga's bounded retries.
 *
 * Settings: FLASHSALE_INSTANCE_ID (payments-1), FLASHSALE_PAYMENT_SUCCESS_PERCENT (100),
 * FLASHSALE_PAYMENT_LATENCY_MS (0: mean of a uniform 0..2x delay per request, which holds
 * the partition like a slow provider would), FLASHSALE_PAYMENT_RESULT_MEMORY_MS (86400000;
 * 0: keep every result). */
#include "flashsale/messages.h"

#include "fs/codec.h"
#include "fs/config.h"
#include "fs/dueheap.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/metrics.h"
#include "fs/map.h"
#include "fs/txn_loop.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PARTITIONS 1024

/* The answer given to a request: its event without the request's fields (order, member,
 * amount, attempt, time), which are copied from each request again. */
typedef pay_event result;

typedef struct {
    fs_common_config cfg;
    fs_codec *codec;
    long success_percent, latency_ms, memory_ms;
    fs_map *results[MAX_PARTITIONS]; /* "order#attempt" or "order#refund" -> result* */
    fs_dueheap forgets;              /* each result's occurred_at + memory_ms */
    int64_t clock;                   /* the latest request time read (as the order saga's) */
    uint64_t forgotten;              /* since the last report */
    int64_t reported_at;
} provider;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static uint32_t fnv(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void free_value(void *c, const char *k, void *v)
{
    (void)c;
    (void)k;
    free(v);
}

static void drop(provider *p, int32_t part)
{
    if (part >= 0 && part < MAX_PARTITIONS && p->results[part]) {
        fs_map_foreach(p->results[part], free_value, NULL);
        fs_map_destroy(p->results[part]);
        p->results[part] = NULL;
    }
}

/* "order#attempt" for a payment, "order#refund" for a refund. */
static void key_of(const char *order, bool refund, int32_t attempt, char *key, size_t n)
{
    if (refund)
        snprintf(key, n, "%s#refund", order);
    else
        snprintf(key, n, "%s#%ld", order, (long)attempt);
}

/* When a result may be forgotten (0: never). */
static int64_t forget_at(const provider *p, const result *r)
{
    return p->memory_ms > 0 ? r->occurred_at + p->memory_ms : 0;
}

static int remember(provider *p, int32_t part, const char *key, const result *r, bool arm)
{
    result *copy = malloc(sizeof *copy);
    if (!copy || !p->results[part]) {
        free(copy);
        return -1;
    }
    *copy = *r;
    void *old = fs_map_put(p->results[part], key, copy);
    if (old == (void *)-1) {
        free(copy);
        return -1;
    }
    free(old);
    int64_t due = forget_at(p, r);
    return arm && due > 0 ? fs_dueheap_push(&p->forgets, due, part, key) : 0;
}

typedef struct {
    provider *p;
    int32_t part;
    int rc;
} arm_ctx;

static void arm_held(void *ctx, const char *key, void *value)
{
    arm_ctx *a = ctx;
    int64_t due = forget_at(a->p, value);
    if (a->rc == 0 && due > 0)
        a->rc = fs_dueheap_push(&a->p->forgets, due, a->part, key);
}

/* Forgets the results whose time has come by the clock of the requests read (at most
 * 10,000 a call); reports how many are held once a minute. */
static int on_tick(void *app, fs_txn_loop *loop, fs_err *err)
{
    provider *p = app;
    (void)loop;
    (void)err;
    int64_t now = fs_now_ms();
    const fs_due *top;
    int n = 0;
    while ((top = fs_dueheap_top(&p->forgets)) && top->due <= p->clock && n++ < 10000) {
        fs_due t = fs_dueheap_pop(&p->forgets);
        fs_map *m = p->results[t.partition];
        result *r = m ? fs_map_get(m, t.key) : NULL;
        if (!r || forget_at(p, r) != t.due)
            continue; /* stale: the partition left, or the key was taken again */
        if (fs_log_enabled(FS_LOG_DEBUG))
            fs_log_debug("payment result forgotten", json_pack("{s:s}", "key", t.key));
        free(fs_map_del(m, t.key));
        p->forgotten++;
    }
    if (now - p->reported_at >= 60000) {
        size_t held = 0;
        for (int i = 0; i < MAX_PARTITIONS; i++)
            held += p->results[i] ? fs_map_size(p->results[i]) : 0;
        fs_log_info("results held", json_pack("{s:I,s:I}", "held", (json_int_t)held, "forgotten",
                                              (json_int_t)p->forgotten));
        p->forgotten = 0;
        p->reported_at = now;
    }
    return 0;
}

typedef struct {
    provider *p;
    int64_t clock; /* the latest result time read so far (a result carries its request's) */
    uint64_t n, left_out;
} rebuild_ctx;

/* The answers given before: every event of the owned partitions, but for those that may be
 * forgotten by the time of the latest read so far. A record that is not a payment event
 * (none is written here) changes nothing. */
static int rebuild_cb(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    rebuild_ctx *rc_ = ctx;
    provider *p = rc_->p;
    const fs_schema *sc;
    avro_value_t v;
    fs_err e = {0};
    if (fs_codec_decode(p->codec, m->payload, m->len, &sc, &v, &e))
        return 0;
    result r;
    int rc = 0;
    if (pay_event_decode(&v, fs_schema_name(sc), &r, &e) == 0) {
        char key[96];
        bool refund = r.type == PAY_EV_REFUND_SUCCEEDED || r.type == PAY_EV_REFUND_FAILED;
        key_of(r.order_id, refund, r.attempt, key, sizeof key);
        int64_t due = forget_at(p, &r);
        rc_->n++;
        if (r.occurred_at > rc_->clock)
            rc_->clock = r.occurred_at;
        if (due > 0 && due <= rc_->clock) {
            if (p->results[m->partition])
                free(fs_map_del(p->results[m->partition], key));
            rc_->left_out++;
        } else if (remember(p, m->partition, key, &r, false)) {
            rc = fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        }
    }
    avro_value_decref(&v);
    return rc;
}

static int on_assign(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts,
                     fs_err *err)
{
    provider *p = app;
    (void)loop;
    for (int i = 0; i < parts->cnt; i++) {
        int32_t part = parts->elems[i].partition;
        if (part < 0 || part >= MAX_PARTITIONS)
            return fs_err_set(err, FS_ERR_FATAL, 0, "partition %d out of range", part);
        drop(p, part);
        p->results[part] = fs_map_new(1024);
        if (!p->results[part])
            return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
    }
    rebuild_ctx r = {p, p->clock, 0, 0};
    int64_t t0 = fs_mono_ms();
    if (fs_kafka_read_changelog(&p->cfg, parts, FS_TOPIC_PAYMENTS_EVENTS, rebuild_cb, &r, 30000,
                                err))
        return -1;
    p->clock = r.clock;
    fs_dueheap_clear(&p->forgets); /* re-armed from what is held */
    size_t held = 0;
    for (int i = 0; i < MAX_PARTITIONS; i++)
        if (p->results[i]) {
            arm_ctx a = {p, i, 0};
            fs_map_foreach(p->results[i], arm_held, &a);
            if (a.rc)
                return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
            held += fs_map_size(p->results[i]);
        }
    fs_log_info("results rebuilt", json_pack("{s:I,s:I,s:I,s:I}", "events", (json_int_t)r.n, "held",
                                             (json_int_t)held, "left_out", (json_int_t)r.left_out,
                                             "ms", (json_int_t)(fs_mono_ms() - t0)));
    return 0;
}

static void on_revoke(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts)
{
    (void)loop;
    for (int i = 0; i < parts->cnt; i++)
        drop(app, parts->elems[i].partition);
}

static int on_record(void *app, fs_txn_loop *loop, const rd_kafka_message_t *m, fs_err *err)
{
    provider *p = app;
    const fs_schema *sc;
    avro_value_t v;
    fs_err why = {0};
    if (fs_codec_decode(p->codec, m->payload, m->len, &sc, &v, &why))
        return fs_txn_loop_dead_letter(loop, m, why.msg, err);
    pay_command c;
    int bad = pay_command_decode(&v, fs_schema_name(sc), &c, &why);
    avro_value_decref(&v);
    if (bad)
        return fs_txn_loop_dead_letter(loop, m, why.msg, err);
    bool refund = c.type == PAY_CMD_REQUEST_REFUND;
    if (c.requested_at > p->clock)
        p->clock = c.requested_at;
    char key[96];
    key_of(c.order_id, refund, c.attempt, key, sizeof key);

    result *known = p->results[m->partition] ? fs_map_get(p->results[m->partition], key) : NULL;
    result r;
    memset(&r, 0, sizeof r);
    if (known)
        r = *known; /* idempotent: the first answer again */
    else {
        if (p->latency_ms > 0)
            usleep((useconds_t)((fnv(key) % (uint32_t)(2 * p->latency_ms + 1)) * 1000));
        fs_uuid7_str(r.payment_id);
        if (refund)
            r.type = PAY_EV_REFUND_SUCCEEDED;
        else if ((long)(fnv(key) % 100) < p->success_percent)
            r.type = PAY_EV_PAYMENT_SUCCEEDED;
        else {
            r.type = PAY_EV_PAYMENT_FAILED;
            snprintf(r.reason, sizeof r.reason, "DECLINED");
            r.retriable = (fnv(key) >> 8) % 2 == 0;
        }
    }
    /* the request's own fields */
    snprintf(r.order_id, sizeof r.order_id, "%s", c.order_id);
    snprintf(r.member_id, sizeof r.member_id, "%s", c.member_id);
    r.amount = c.amount;
    r.attempt = refund ? 1 : c.attempt;
    r.occurred_at = c.requested_at;
    if (!known && remember(p, m->partition, key, &r, true))
        return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
    void *buf = NULL;
    size_t len = 0;
    if (pay_event_encode(p->codec, &r, &buf, &len, err))
        return -1;
    char cause[64] = "";
    fs_kafka_header_get(m, "event-id", cause, sizeof cause);
    fs_event_meta meta = {.event_type = pay_event_name(r.type), .correlation_id = c.order_id,
                          .causation_id = cause[0] ? cause : NULL, .occurred_at = c.requested_at};
    int rc = fs_txn_loop_produce(loop, FS_TOPIC_PAYMENTS_EVENTS, m->partition, c.order_id,
                                 strlen(c.order_id), buf, len, fs_kafka_headers_new(&meta), err);
    free(buf);
    return rc;
}

int main(void)
{
    static provider p;
    fs_err err = {0};
    fs_log_init("payments", FS_LOG_INFO);
    if (fs_common_config_load(&p.cfg, &err))
        fs_config_die(&err);
    fs_log_level lvl;
    fs_log_level_parse(p.cfg.log_level, &lvl);
    fs_log_init("payments", lvl);
    const char *instance;
    if (fs_env_str("FLASHSALE_INSTANCE_ID", "payments-1", false, &instance, &err) ||
        fs_env_int("FLASHSALE_PAYMENT_SUCCESS_PERCENT", 100, 0, 100, &p.success_percent, &err) ||
        fs_env_int("FLASHSALE_PAYMENT_LATENCY_MS", 0, 0, 10000, &p.latency_ms, &err) ||
        fs_env_int("FLASHSALE_PAYMENT_RESULT_MEMORY_MS", 86400000, 0, 3650L * 86400000,
                   &p.memory_ms, &err))
        fs_config_die(&err);
    p.reported_at = fs_now_ms();
    p.codec = fs_codec_new(&err);
    if (!p.codec)
        fs_config_die(&err);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    const char *topics[] = {FS_TOPIC_PAYMENTS_COMMANDS, NULL};
    fs_txn_loop_conf lc = {.common = &p.cfg, .group_id = "flashsale-payments",
                           .instance_id = instance, .topics = topics, .app = &p,
                           .on_assign = on_assign, .on_revoke = on_revoke,
                           .on_record = on_record, .on_tick = on_tick};
    fs_txn_loop *loop = fs_txn_loop_new(&lc, &err);
    if (!loop) {
        fs_log_error("start failed", json_pack("{s:s}", "error", err.msg));
        return 1;
    }
    fs_log_info("started", json_pack("{s:s,s:I,s:I,s:I}", "instance", instance, "success_percent",
                                     (json_int_t)p.success_percent, "latency_ms",
                                     (json_int_t)p.latency_ms, "result_memory_ms",
                                     (json_int_t)p.memory_ms));
    fs_metrics_server *metrics = fs_metrics_serve_from_env(); /* FLASHSALE_METRICS_ADDR */
    int rc = fs_txn_loop_run(loop, &stop_flag, &err);
    if (rc)
        fs_log_error("stopped on error", json_pack("{s:s}", "error", err.msg));
    fs_txn_loop_destroy(loop);
    fs_metrics_serve_stop(metrics);
    for (int i = 0; i < MAX_PARTITIONS; i++)
        drop(&p, i);
    fs_dueheap_clear(&p.forgets);
    fs_codec_destroy(p.codec);
    return rc ? 1 : 0;
}
