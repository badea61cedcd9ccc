/* flashsale-orders: the order saga's I/O, single writer of orders.events (key = order id).
 * The rules are flashsale/saga.h's ord_step; this file reads, calls the step, writes what it
 * returns and arms timers.
 *
 * Inputs, all through the transactional loop (outputs + offsets commit together):
 *  - inventory.events (key = product): decisions and outcomes that name an order are
 *    forwarded, unchanged, to orders.commands keyed by the order id, so that the owner of
 *    the order's partition handles them (stateless; exactly once like everything else);
 *  - orders.commands (key = order): forwarded inventory outcomes, PlaceCheckout, and the
 *    members' PayOrder, CancelOrder, RequestReturn, CompleteReturn;
 *  - payments.events (key = order): payment and refund results.
 * A record that is not one of these (or lacks a required field) goes to the dead-letter
 * topic. State: the orders of the owned partitions, rebuilt on assignment from
 * orders.events (every change is a full snapshot, OrderStatusChanged). Timers (payment
 * deadline, shipping D+1, delivery D+2) are a min-heap re-armed from the snapshots; a timer
 * that came due while the saga was down fires at once. A firing is a snapshot in the same
 * transaction as its effects, so it happens exactly once. An ended order leaves the state
 * FLASHSALE_SAGA_ENDED_MEMORY_MS (one day) after its end (ord_forget_at; a second heap),
 * and a rebuild does not take it back: memory follows the live orders, not the history.
 *
 * Settings: FLASHSALE_INSTANCE_ID (orders-1), FLASHSALE_DAY_SECONDS (86400),
 * FLASHSALE_RETURN_WINDOW_DAYS (7), FLASHSALE_AUTO_PAY (false: pay right after the
 * reservation), FLASHSALE_PAYMENT_MAX_ATTEMPTS (3), FLASHSALE_SAGA_ENDED_MEMORY_MS (86400000;
 * 0: keep every order). */
#include "flashsale/inventory_codec.h"
#include "flashsale/messages.h"
#include "flashsale/order.h"
#include "flashsale/saga.h"

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

#define MAX_PARTITIONS 1024

typedef struct {
    fs_common_config cfg;
    fs_codec *codec;
    ord_saga_config rules;
    /* per owned partition: order id -> ord_order*, malloc'd at ord_order_used_size: only its
     * nlines lines exist, so it is never copied or handed on whole (load) */
    fs_map *orders[MAX_PARTITIONS];
    fs_dueheap timers;  /* each order's deadline */
    fs_dueheap forgets; /* each ended order's ord_forget_at */
    int64_t clock;      /* the forgetting's clock: the latest time of an input read (below) */
    uint64_t forgotten; /* since the last report */
    int64_t reported_at;
    /* the record being handled */
    char cause[64];
    ord_order before; /* the held order it steps, whole (load) */
    ord_input in;
    ord_step_result out;
} saga;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* ---- timers and forgetting ---------------------------------------------------------- */

static int arm(fs_dueheap *h, int64_t due, int32_t partition, const char *id, fs_err *err)
{
    if (fs_dueheap_push(h, due, partition, id)) /* fatal: a restart re-arms from the log */
        return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory arming %zu entries", h->n + 1);
    return 0;
}

/* Arms what the order held now needs: its deadline's timer, and its forgetting once ended. */
static int arm_order(saga *s, int32_t part, const ord_order *o, fs_err *err)
{
    int64_t forget = ord_forget_at(&s->rules, o);
    if (o->deadline > 0 && arm(&s->timers, o->deadline, part, o->order_id, err))
        return -1;
    return forget > 0 ? arm(&s->forgets, forget, part, o->order_id, err) : 0;
}

/* ---- the orders held ---------------------------------------------------------------- */

static ord_order *find(saga *s, int32_t part, const char *id)
{
    return part >= 0 && part < MAX_PARTITIONS && s->orders[part] ? fs_map_get(s->orders[part], id)
                                                                  : NULL;
}

/* The held order `held` (or none), whole in s->before, for ord_step: a held order has only
 * the bytes its lines need. */
static const ord_order *load(saga *s, const ord_order *held)
{
    if (!held)
        return NULL;
    size_t n = ord_order_used_size(held);
    memcpy(&s->before, held, n);
    memset((char *)&s->before + n, 0, sizeof s->before - n); /* the lines it does not have */
    return &s->before;
}

/* Keeps the step's order, only the bytes its lines need (~360 of ~2,200 for one line): a copy
 * over the one held when that has room for its lines, or else into a new allocation that
 * replaces it in the map. */
static int keep(saga *s, int32_t part, const ord_order *o, fs_err *err)
{
    size_t size = ord_order_used_size(o);
    ord_order *held = find(s, part, o->order_id);
    if (held && ord_order_used_size(held) >= size) {
        memcpy(held, o, size);
        return 0;
    }
    if (part < 0 || part >= MAX_PARTITIONS || !s->orders[part])
        return fs_err_set(err, FS_ERR_FATAL, 0, "order %s on partition %d not owned",
                          o->order_id, part);
    ord_order *copy = malloc(size);
    if (!copy)
        return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
    memcpy(copy, o, size);
    void *old = fs_map_put(s->orders[part], o->order_id, copy);
    if (old == (void *)-1) {
        free(copy);
        return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
    }
    free(old); /* the one held before, too small for the lines now (or none) */
    return 0;
}

/* ---- writing what a step returns ---------------------------------------------------- */

typedef int (*encode_fn)(const fs_codec *codec, const void *msg, void **buf, size_t *len,
                         fs_err *err);

static int produce(saga *s, fs_txn_loop *loop, const char *topic, int32_t partition,
                   const char *key, const char *type, const char *correlation, int64_t at,
                   const void *buf, size_t len, fs_err *err)
{
    fs_event_meta meta = {.event_type = type,
                          .correlation_id = correlation,
                          .causation_id = s->cause[0] ? s->cause : NULL,
                          .occurred_at = at};
    return fs_txn_loop_produce(loop, topic, partition, key, strlen(key), buf, len,
                               fs_kafka_headers_new(&meta), err);
}

static int enc_inv(const fs_codec *c, const void *m, void **b, size_t *l, fs_err *e)
{
    return inv_command_encode(c, m, b, l, e);
}
static int enc_pay(const fs_codec *c, const void *m, void **b, size_t *l, fs_err *e)
{
    return pay_command_encode(c, m, b, l, e);
}
static int enc_snapshot(const fs_codec *c, const void *m, void **b, size_t *l, fs_err *e)
{
    return ord_encode(c, m, b, l, e);
}
static int enc_rejection(const fs_codec *c, const void *m, void **b, size_t *l, fs_err *e)
{
    return ord_rejection_encode(c, m, b, l, e);
}
static int enc_note(const fs_codec *c, const void *m, void **b, size_t *l, fs_err *e)
{
    return fs_notification_encode(c, m, b, l, e);
}

static int write_one(saga *s, fs_txn_loop *loop, encode_fn enc, const void *msg,
                     const char *topic, int32_t partition, const char *key, const char *type,
                     const char *correlation, int64_t at, fs_err *err)
{
    void *buf = NULL;
    size_t len = 0;
    int rc = enc(s->codec, msg, &buf, &len, err);
    if (rc == 0)
        rc = produce(s, loop, topic, partition, key, type, correlation, at, buf, len, err);
    free(buf);
    return rc;
}

/* Writes the step's commands, events and notifications, keeps the order, arms its timer. */
static int apply_step(saga *s, fs_txn_loop *loop, int32_t part, const ord_order *before,
                      fs_err *err)
{
    ord_step_result *r = &s->out;
    const char *id = r->order.order_id[0] ? r->order.order_id : ord_input_order_id(&s->in);
    if (r->refused)
        fs_log_error(r->refused, json_pack("{s:s,s:s,s:s}", "order_id", id, "from",
                                           before ? ord_status_name(before->status) : "",
                                           "to", ord_status_name(r->refused_to)));
    for (int i = 0; i < r->ninventory; i++) {
        const inv_command *c = &r->inventory[i];
        if (write_one(s, loop, enc_inv, c, FS_TOPIC_INVENTORY_COMMANDS, RD_KAFKA_PARTITION_UA,
                      c->product_id, inv_cmd_name(c->type), c->order_id, c->requested_at, err))
            return -1;
    }
    if (r->has_payment &&
        write_one(s, loop, enc_pay, &r->payment, FS_TOPIC_PAYMENTS_COMMANDS, part,
                  r->payment.order_id, pay_cmd_name(r->payment.type), r->payment.order_id,
                  r->payment.requested_at, err))
        return -1;
    for (int i = 0; i < r->nsnapshots; i++) {
        const ord_order *o = &r->snapshots[i];
        if (write_one(s, loop, enc_snapshot, o, FS_TOPIC_ORDERS_EVENTS, part, o->order_id,
                      "OrderStatusChanged", o->order_id, o->occurred_at, err))
            return -1;
    }
    if (r->rejected) {
        const ord_rejection *j = &r->rejection;
        if (write_one(s, loop, enc_rejection, j, FS_TOPIC_ORDERS_EVENTS, part, j->order_id,
                      "OrderCommandRejected", j->order_id, j->occurred_at, err))
            return -1;
        fs_log_info("order command refused", json_pack("{s:s,s:s,s:s}", "order_id", j->order_id,
                                                       "command", j->command_type, "code", j->code));
    }
    for (int i = 0; i < r->nnotes; i++) {
        fs_notification *n = &r->notes[i];
        fs_uuid7_str(n->notification_id);
        if (write_one(s, loop, enc_note, n, FS_TOPIC_NOTIFICATIONS, RD_KAFKA_PARTITION_UA,
                      n->member_id, "NotificationRequested", r->order.order_id, n->occurred_at,
                      err))
            return -1;
    }
    if (!r->changed)
        return 0;
    if (keep(s, part, &r->order, err))
        return -1;
    return arm_order(s, part, &r->order, err);
}

static int step(saga *s, fs_txn_loop *loop, int32_t part, fs_err *err)
{
    const ord_order *before = load(s, find(s, part, ord_input_order_id(&s->in)));
    ord_step(&s->rules, before, &s->in, &s->out);
    return apply_step(s, loop, part, before, err);
}

/* ---- reading ------------------------------------------------------------------------ */

/* An orders.commands record into s->in: a forwarded inventory outcome or an order command.
 * Returns 0, or -1 with *why (the record is dead-lettered). */
static int read_order_input(saga *s, const fs_schema *sc, avro_value_t *v, fs_err *why)
{
    const char *type = fs_schema_name(sc);
    memset(&s->in, 0, sizeof s->in);
    if (!strncmp(fs_schema_fullname(sc), "flashsale.inventory.", 20)) {
        s->in.kind = ORD_IN_INVENTORY;
        if (inv_event_decode(v, type, &s->in.inv, why))
            return -1;
        s->in.at = s->in.inv.occurred_at;
        return s->in.inv.order_id[0] ? 0 : fs_err_set(why, FS_ERR_INVALID, 0, "%s names no order", type);
    }
    if (ord_cmd_parse(type) < 0)
        return fs_err_set(why, FS_ERR_INVALID, 0, "not an order command");
    s->in.kind = ORD_IN_COMMAND;
    if (ord_command_decode(v, type, &s->in.cmd, why))
        return -1;
    s->in.at = s->in.cmd.requested_at;
    return 0;
}

static int forward(fs_txn_loop *loop, const rd_kafka_message_t *m, const fs_schema *sc,
                   avro_value_t *v, fs_err *err)
{
    /* forward what names an order to the order's partition */
    char order[ORD_ID_MAX];
    fs_err ignored = {0};
    if (fs_av_get_strcpy(v, "order_id", order, sizeof order, &ignored) || !order[0] ||
        !strcmp(fs_schema_name(sc), "ProductDefined"))
        return 0;
    rd_kafka_headers_t *h = NULL, *copy = NULL;
    if (rd_kafka_message_headers(m, &h) == 0 && h)
        copy = rd_kafka_headers_copy(h);
    return fs_txn_loop_produce(loop, FS_TOPIC_ORDERS_COMMANDS, RD_KAFKA_PARTITION_UA, order,
                               strlen(order), m->payload, m->len, copy, err);
}

static int on_record(void *app, fs_txn_loop *loop, const rd_kafka_message_t *m, fs_err *err)
{
    saga *s = app;
    const char *topic = rd_kafka_topic_name(m->rkt);
    s->cause[0] = '\0';
    fs_kafka_header_get(m, "event-id", s->cause, sizeof s->cause);
    const fs_schema *sc;
    avro_value_t v;
    fs_err why = {0};
    if (fs_codec_decode(s->codec, m->payload, m->len, &sc, &v, &why))
        return fs_txn_loop_dead_letter(loop, m, why.msg, err);
    int rc = 0, bad = 0;
    if (!strcmp(topic, FS_TOPIC_INVENTORY_EVENTS)) {
        rc = forward(loop, m, sc, &v, err);
    } else if (!strcmp(topic, FS_TOPIC_ORDERS_COMMANDS)) {
        bad = read_order_input(s, sc, &v, &why);
    } else if (!strcmp(topic, FS_TOPIC_PAYMENTS_EVENTS)) {
        memset(&s->in, 0, sizeof s->in);
        s->in.kind = ORD_IN_PAYMENT;
        bad = pay_event_decode(&v, fs_schema_name(sc), &s->in.pay, &why);
        s->in.at = s->in.pay.occurred_at;
    }
    avro_value_decref(&v);
    if (bad)
        return fs_txn_loop_dead_letter(loop, m, why.msg, err);
    if (rc == 0 && strcmp(topic, FS_TOPIC_INVENTORY_EVENTS)) {
        if (s->in.at > s->clock) /* a forwarded decision, a command, a payment result */
            s->clock = s->in.at;
        rc = step(s, loop, m->partition, err);
    }
    return rc < 0 ? -1 : 0;
}

/* Forgets the ended orders whose time has come by the saga's clock (memory only: the log
 * keeps them, and a rebuild leaves them out by the same rule), at most 10,000 a call. The
 * clock is the latest time of the inputs read, not the wall clock: a saga that is behind
 * its inputs (down for a while, catching up) forgets nothing before the inputs of that time
 * have been read. Reports how many are held once a minute. */
static void forget_ended(saga *s, int64_t now)
{
    const fs_due *top;
    int n = 0;
    while ((top = fs_dueheap_top(&s->forgets)) && top->due <= s->clock && n++ < 10000) {
        fs_due t = fs_dueheap_pop(&s->forgets);
        ord_order *o = find(s, t.partition, t.key);
        if (!o || ord_forget_at(&s->rules, o) != t.due)
            continue; /* stale: changed since (a newer entry stands), or already gone */
        if (fs_log_enabled(FS_LOG_DEBUG))
            fs_log_debug("order forgotten", json_pack("{s:s,s:s}", "order_id", o->order_id,
                                                      "status", ord_status_name(o->status)));
        free(fs_map_del(s->orders[t.partition], t.key));
        s->forgotten++;
    }
    if (now - s->reported_at >= 60000) {
        size_t held = 0;
        for (int p = 0; p < MAX_PARTITIONS; p++)
            held += s->orders[p] ? fs_map_size(s->orders[p]) : 0;
        fs_log_info("orders held",
                    json_pack("{s:I,s:I,s:I,s:I}", "held", (json_int_t)held, "forgotten",
                              (json_int_t)s->forgotten, "timers", (json_int_t)s->timers.n,
                              "rss_kb", (json_int_t)fs_resident_kb()));
        s->forgotten = 0;
        s->reported_at = now;
    }
}

/* Timers: fire what is due, each in the current transaction. */
static int on_tick(void *app, fs_txn_loop *loop, fs_err *err)
{
    saga *s = app;
    int64_t now = fs_now_ms();
    int fired = 0;
    forget_ended(s, now);
    const fs_due *top;
    while ((top = fs_dueheap_top(&s->timers)) && top->due <= now && fired < 500) {
        fs_due t = fs_dueheap_pop(&s->timers);
        ord_order *o = find(s, t.partition, t.key);
        if (!o || o->deadline != t.due)
            continue; /* stale entry: the order moved on, or the partition left */
        if (fs_txn_loop_begin(loop, err))
            return -1;
        s->cause[0] = '\0';
        fired++;
        fs_txn_loop_count(loop);
        memset(&s->in, 0, sizeof s->in);
        s->in.kind = ORD_IN_TIMER;
        s->in.at = now;
        s->in.due = t.due;
        snprintf(s->in.timer_order, sizeof s->in.timer_order, "%.*s", (int)sizeof s->in.timer_order - 1, t.key);
        const ord_order *before = load(s, o);
        ord_step(&s->rules, before, &s->in, &s->out);
        if (apply_step(s, loop, t.partition, before, err))
            return -1;
    }
    return 0;
}

/* ---- assignment --------------------------------------------------------------------- */

typedef struct {
    saga *s;
    int64_t clock; /* the latest snapshot time read so far */
    uint64_t n, left_out;
} rebuild_ctx;

/* Each order is its last snapshot. An order whose last snapshot says it may be forgotten by
 * the rebuild's clock, the latest snapshot time read so far (each snapshot carries its
 * step's input time: the same clock as forget_ended's, but for the timers' firings), is not
 * held. A record of another type, or one that is not readable (dead-lettered when it was
 * written, never by this writer), changes nothing. */
static int rebuild_cb(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    rebuild_ctx *r = ctx;
    const fs_schema *sc;
    avro_value_t v;
    fs_err e = {0};
    if (fs_codec_decode(r->s->codec, m->payload, m->len, &sc, &v, &e))
        return 0;
    int rc = 0;
    ord_order snap;
    if (!strcmp(fs_schema_name(sc), "OrderStatusChanged") && ord_decode(&v, &snap, &e) == 0 &&
        r->s->orders[m->partition]) {
        if (snap.occurred_at > r->clock)
            r->clock = snap.occurred_at;
        int64_t forget = ord_forget_at(&r->s->rules, &snap);
        if (forget > 0 && forget <= r->clock) {
            free(fs_map_del(r->s->orders[m->partition], snap.order_id));
            r->left_out++;
        } else {
            rc = keep(r->s, m->partition, &snap, err);
        }
        r->n++;
    }
    avro_value_decref(&v);
    return rc;
}

typedef struct {
    saga *s;
    int32_t part;
    int rc;
    fs_err *err;
} arm_ctx;

static void arm_held(void *ctx, const char *key, void *value)
{
    arm_ctx *a = ctx;
    (void)key;
    if (a->rc == 0)
        a->rc = arm_order(a->s, a->part, value, a->err);
}

static void free_order(void *ctx, const char *key, void *value)
{
    (void)ctx;
    (void)key;
    free(value);
}

static void drop_partition(saga *s, int32_t p)
{
    if (p < 0 || p >= MAX_PARTITIONS || !s->orders[p])
        return;
    fs_map_foreach(s->orders[p], free_order, NULL);
    fs_map_destroy(s->orders[p]);
    s->orders[p] = NULL;
}

static int on_assign(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts,
                     fs_err *err)
{
    saga *s = app;
    (void)loop;
    bool fresh[MAX_PARTITIONS] = {false}; /* each number appears once per input topic */
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (p < 0 || p >= MAX_PARTITIONS)
            return fs_err_set(err, FS_ERR_FATAL, 0, "partition %d out of range", p);
        if (!fresh[p]) {
            drop_partition(s, p);
            s->orders[p] = fs_map_new(1024);
            fresh[p] = true;
        }
    }
    rebuild_ctx r = {s, s->clock, 0, 0};
    int64_t t0 = fs_mono_ms();
    if (fs_kafka_read_changelog(&s->cfg, parts, FS_TOPIC_ORDERS_EVENTS, rebuild_cb, &r, 30000, err))
        return -1;
    s->clock = r.clock;
    /* re-arm every held order's timer and forgetting from its snapshot */
    fs_dueheap_clear(&s->timers);
    fs_dueheap_clear(&s->forgets);
    size_t held = 0;
    for (int p = 0; p < MAX_PARTITIONS; p++)
        if (s->orders[p]) {
            arm_ctx a = {s, p, 0, err};
            fs_map_foreach(s->orders[p], arm_held, &a);
            if (a.rc)
                return -1;
            held += fs_map_size(s->orders[p]);
        }
    fs_log_info("orders rebuilt",
                json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "snapshots", (json_int_t)r.n, "held",
                          (json_int_t)held, "left_out", (json_int_t)r.left_out, "timers",
                          (json_int_t)s->timers.n, "ms", (json_int_t)(fs_mono_ms() - t0),
                          "rss_kb", (json_int_t)fs_resident_kb()));
    return 0;
}

static void on_revoke(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts)
{
    saga *s = app;
    (void)loop;
    for (int i = 0; i < parts->cnt; i++)
        drop_partition(s, parts->elems[i].partition);
}

int main(void)
{
    static saga s;
    fs_err err = {0};
    fs_log_init("orders", FS_LOG_INFO);
    if (fs_common_config_load(&s.cfg, &err))
        fs_config_die(&err);
    fs_log_level lvl;
    fs_log_level_parse(s.cfg.log_level, &lvl);
    fs_log_init("orders", lvl);
    const char *instance;
    long day_s, window_days, max_attempts, ended_memory_ms;
    if (fs_env_str("FLASHSALE_INSTANCE_ID", "orders-1", false, &instance, &err) ||
        fs_env_int("FLASHSALE_DAY_SECONDS", 86400, 1, 864000, &day_s, &err) ||
        fs_env_int("FLASHSALE_RETURN_WINDOW_DAYS", 7, 0, 365, &window_days, &err) ||
        fs_env_bool("FLASHSALE_AUTO_PAY", false, &s.rules.auto_pay, &err) ||
        fs_env_int("FLASHSALE_PAYMENT_MAX_ATTEMPTS", 3, 1, 10, &max_attempts, &err) ||
        fs_env_int("FLASHSALE_SAGA_ENDED_MEMORY_MS", 86400000, 0, 3650L * 86400000,
                   &ended_memory_ms, &err))
        fs_config_die(&err);
    s.rules.max_attempts = (int32_t)max_attempts;
    s.rules.ended_memory_ms = ended_memory_ms;
    s.reported_at = fs_now_ms();
    s.rules.day_ms = day_s * 1000;
    s.rules.return_window_ms = window_days * s.rules.day_ms;
    /* the inventory remembers a sold line for INV_SOLD_MEMORY_MS: a return must come before */
    if (s.rules.return_window_ms > 30LL * 24 * 3600 * 1000) {
        fs_err_set(&err, FS_ERR_INVALID, 0,
                   "FLASHSALE_RETURN_WINDOW_DAYS: at most 30 days (x FLASHSALE_DAY_SECONDS)");
        fs_config_die(&err);
    }
    s.codec = fs_codec_new(&err);
    if (!s.codec)
        fs_config_die(&err);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    const char *topics[] = {FS_TOPIC_INVENTORY_EVENTS, FS_TOPIC_ORDERS_COMMANDS,
                            FS_TOPIC_PAYMENTS_EVENTS, NULL};
    fs_txn_loop_conf lc = {.common = &s.cfg,
                           .group_id = "flashsale-orders",
                           .instance_id = instance,
                           .topics = topics,
                           .app = &s,
                           .on_assign = on_assign,
                           .on_revoke = on_revoke,
                           .on_record = on_record,
                           .on_tick = on_tick};
    fs_txn_loop *loop = fs_txn_loop_new(&lc, &err);
    if (!loop) {
        fs_log_error("start failed", json_pack("{s:s}", "error", err.msg));
        return 1;
    }
    fs_log_info("started", json_pack("{s:s,s:I,s:b,s:I}", "instance", instance, "day_seconds",
                                     (json_int_t)day_s, "auto_pay", s.rules.auto_pay,
                                     "ended_memory_ms", (json_int_t)ended_memory_ms));
    fs_metrics_server *metrics = fs_metrics_serve_from_env(); /* FLASHSALE_METRICS_ADDR */
    int rc = fs_txn_loop_run(loop, &stop_flag, &err);
    if (rc)
        fs_log_error("stopped on error", json_pack("{s:s}", "error", err.msg));
    fs_txn_loop_destroy(loop);
    fs_metrics_serve_stop(metrics);
    for (int p = 0; p < MAX_PARTITIONS; p++)
        drop_partition(&s, p);
    fs_dueheap_clear(&s.timers);
    fs_dueheap_clear(&s.forgets);
    fs_codec_destroy(s.codec);
    return rc ? 1 : 0;
}
