/* flashsale-orders: the order saga, single writer of orders.events (key = order id).
 *
 * Inputs, all through the transactional loop (outputs + offsets commit together):
 *  - inventory.events (key = product): decisions and outcomes that name an order are
 *    forwarded, unchanged, to orders.commands keyed by the order id, so that the owner of
 *    the order's partition handles them (stateless; exactly once like everything else);
 *  - orders.commands (key = order): forwarded inventory outcomes, PlaceCheckout, and the
 *    members' PayOrder, CancelOrder, RequestReturn, CompleteReturn;
 *  - payments.events (key = order): payment and refund results.
 * State: the orders of the owned partitions, rebuilt on assignment from orders.events (every
 * change is a full snapshot, OrderStatusChanged). Timers (payment deadline, shipping D+1,
 * delivery D+2) are a min-heap re-armed from the snapshots; a timer that came due while the
 * saga was down fires at once. A firing is a snapshot in the same transaction as its
 * effects, so it happens exactly once.
 *
 * Settings: FLASHSALE_INSTANCE_ID (orders-1), FLASHSALE_DAY_SECONDS (86400),
 * FLASHSALE_RETURN_WINDOW_DAYS (7), FLASHSALE_AUTO_PAY (false: pay right after the
 * reservation), FLASHSALE_PAYMENT_MAX_ATTEMPTS (3). */
#include "inv_codec.h"
#include "order_state.h"

#include "fs/config.h"
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
    int64_t due;
    int32_t partition;
    char order_id[ORD_ID_MAX];
} timer_t_;

typedef struct {
    fs_common_config cfg;
    fs_codec *codec;
    int64_t day_ms, return_window_ms;
    bool auto_pay;
    long max_attempts;
    fs_map *orders[MAX_PARTITIONS]; /* per owned partition: order id -> ord_order* */
    timer_t_ *heap;
    size_t nheap, capheap;
    /* the record being handled */
    char cause[64];
} saga;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* ---- timers ------------------------------------------------------------------------- */

static void heap_push(saga *s, int64_t due, int32_t partition, const char *id)
{
    if (s->nheap == s->capheap) {
        size_t cap = s->capheap ? s->capheap * 2 : 1024;
        timer_t_ *h = realloc(s->heap, cap * sizeof *h);
        if (!h)
            return;
        s->heap = h;
        s->capheap = cap;
    }
    size_t i = s->nheap++;
    timer_t_ t = {due, partition, ""};
    snprintf(t.order_id, sizeof t.order_id, "%s", id);
    while (i > 0 && s->heap[(i - 1) / 2].due > due) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = t;
}

static timer_t_ heap_pop(saga *s)
{
    timer_t_ top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && s->heap[c + 1].due < s->heap[c].due)
            c++;
        if (s->heap[c].due >= last.due)
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

/* ---- outputs ------------------------------------------------------------------------ */

static int produce(saga *s, fs_txn_loop *loop, const char *topic, int32_t partition,
                   const char *key, const void *buf, size_t len, const char *type,
                   const char *correlation, int64_t at, fs_err *err)
{
    fs_event_meta meta = {.event_type = type,
                          .correlation_id = correlation,
                          .causation_id = s->cause[0] ? s->cause : NULL,
                          .occurred_at = at};
    return fs_txn_loop_produce(loop, topic, partition, key, strlen(key), buf, len,
                               fs_kafka_headers_new(&meta), err);
}

static int notify(saga *s, fs_txn_loop *loop, const ord_order *o, const char *kind, fs_err *err)
{
    const fs_schema *sc = fs_codec_reader(s->codec, "NotificationRequested");
    avro_value_t v, params, p;
    if (!sc || fs_schema_value_new(sc, &v, err))
        return -1;
    char nid[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(nid);
    void *buf = NULL;
    size_t len = 0;
    int rc = fs_av_put_str(&v, "notification_id", nid, true) ||
             fs_av_put_str(&v, "member_id", o->member_id, true) ||
             fs_av_put_str(&v, "kind", kind, true) || fs_av_put_str(&v, "email", NULL, false) ||
             fs_av_put_long(&v, "occurred_at", o->occurred_at, true) ||
             avro_value_get_by_name(&v, "params", &params, NULL) ||
             avro_value_add(&params, "order_id", &p, NULL, NULL) ||
             avro_value_set_string(&p, o->order_id) ||
             avro_value_add(&params, "status", &p, NULL, NULL) ||
             avro_value_set_string(&p, ord_status_name(o->status));
    if (rc)
        rc = fs_err_set(err, FS_ERR_FATAL, 0, "notification: %s", avro_strerror());
    else
        rc = fs_codec_encode(sc, &v, &buf, &len, err);
    avro_value_decref(&v);
    if (!rc)
        rc = produce(s, loop, FS_TOPIC_NOTIFICATIONS, RD_KAFKA_PARTITION_UA, o->member_id, buf,
                     len, "NotificationRequested", o->order_id, o->occurred_at, err);
    free(buf);
    return rc;
}

static int snapshot(saga *s, fs_txn_loop *loop, int32_t part, ord_order *o, fs_err *err)
{
    void *buf = NULL;
    size_t len = 0;
    if (ord_encode(s->codec, o, &buf, &len, err))
        return -1;
    int rc = produce(s, loop, FS_TOPIC_ORDERS_EVENTS, part, o->order_id, buf, len,
                     "OrderStatusChanged", o->order_id, o->occurred_at, err);
    free(buf);
    if (!rc && o->deadline > 0)
        heap_push(s, o->deadline, part, o->order_id);
    return rc;
}

/* Writes a snapshot that changes no status (a line's progress): previous = status, so that
 * a reader can tell it from a transition. */
static int line_update(saga *s, fs_txn_loop *loop, int32_t part, ord_order *o, int64_t at, fs_err *err)
{
    o->previous = o->status;
    o->occurred_at = at;
    return snapshot(s, loop, part, o, err);
}

/* Moves o to `to` and writes the snapshot. An illegal transition is logged and refused. */
static int transition(saga *s, fs_txn_loop *loop, int32_t part, ord_order *o, ord_status to,
                      const char *reason, int64_t at, int64_t deadline, fs_err *err)
{
    if (!ord_transition_is_valid(o->status, to)) {
        fs_log_error("illegal order transition refused",
                     json_pack("{s:s,s:s,s:s}", "order_id", o->order_id, "from",
                               ord_status_name(o->status), "to", ord_status_name(to)));
        return 1;
    }
    o->previous = o->status;
    o->status = to;
    snprintf(o->reason, sizeof o->reason, "%s", reason ? reason : "");
    o->occurred_at = at;
    o->deadline = deadline;
    return snapshot(s, loop, part, o, err);
}

static int reject_command(saga *s, fs_txn_loop *loop, int32_t part, const char *order_id,
                          const char *member, const char *cmd, const char *code,
                          const ord_order *o, int64_t at, fs_err *err)
{
    const fs_schema *sc = fs_codec_reader(s->codec, "OrderCommandRejected");
    avro_value_t v;
    if (!sc || fs_schema_value_new(sc, &v, err))
        return -1;
    void *buf = NULL;
    size_t len = 0;
    int rc = fs_av_put_str(&v, "order_id", order_id, true) ||
             fs_av_put_str(&v, "member_id", member, true) ||
             fs_av_put_str(&v, "command_type", cmd, true) || fs_av_put_str(&v, "code", code, true) ||
             fs_av_put_str(&v, "status", o ? ord_status_name(o->status) : "", true) ||
             fs_av_put_long(&v, "occurred_at", at, true);
    rc = rc ? fs_err_set(err, FS_ERR_FATAL, 0, "reject: %s", avro_strerror())
            : fs_codec_encode(sc, &v, &buf, &len, err);
    avro_value_decref(&v);
    if (!rc)
        rc = produce(s, loop, FS_TOPIC_ORDERS_EVENTS, part, order_id, buf, len,
                     "OrderCommandRejected", order_id, at, err);
    free(buf);
    fs_log_info("order command refused", json_pack("{s:s,s:s,s:s}", "order_id", order_id,
                                                   "command", cmd, "code", code));
    return rc;
}

static int inventory_command(saga *s, fs_txn_loop *loop, inv_cmd_type type, const ord_order *o,
                             int line, const char *reason, int64_t at, fs_err *err)
{
    inv_command c;
    memset(&c, 0, sizeof c);
    c.type = type;
    snprintf(c.product_id, sizeof c.product_id, "%s", o->lines[line].product_id);
    snprintf(c.order_id, sizeof c.order_id, "%s", o->order_id);
    snprintf(c.member_id, sizeof c.member_id, "%s", o->member_id);
    snprintf(c.actor_id, sizeof c.actor_id, "saga");
    snprintf(c.reason, sizeof c.reason, "%s", reason ? reason : "");
    c.quantity = o->lines[line].quantity;
    c.item_index = line;
    c.item_count = o->nlines;
    c.requested_at = at;
    void *buf = NULL;
    size_t len = 0;
    if (inv_command_encode(s->codec, &c, &buf, &len, err))
        return -1;
    int rc = produce(s, loop, FS_TOPIC_INVENTORY_COMMANDS, RD_KAFKA_PARTITION_UA, c.product_id,
                     buf, len, inv_cmd_name(type), o->order_id, at, err);
    free(buf);
    return rc;
}

static int payment_command(saga *s, fs_txn_loop *loop, int32_t part, const ord_order *o,
                           const char *type, const char *method_or_reason, int64_t at, fs_err *err)
{
    const fs_schema *sc = fs_codec_reader(s->codec, type);
    avro_value_t v;
    if (!sc || fs_schema_value_new(sc, &v, err))
        return -1;
    void *buf = NULL;
    size_t len = 0;
    int rc = fs_av_put_str(&v, "order_id", o->order_id, true) ||
             fs_av_put_str(&v, "member_id", o->member_id, true) ||
             fs_av_put_long(&v, "amount", o->amount, true) ||
             fs_av_put_str(&v, "method", method_or_reason, true) ||
             fs_av_put_str(&v, "reason", method_or_reason, true) ||
             fs_av_put_long(&v, "attempt", o->payment_attempts, true) ||
             fs_av_put_long(&v, "requested_at", at, true);
    rc = rc ? fs_err_set(err, FS_ERR_FATAL, 0, "%s: %s", type, avro_strerror())
            : fs_codec_encode(sc, &v, &buf, &len, err);
    avro_value_decref(&v);
    if (!rc)
        rc = produce(s, loop, FS_TOPIC_PAYMENTS_COMMANDS, part, o->order_id, buf, len, type,
                     o->order_id, at, err);
    free(buf);
    return rc;
}

/* Releases every reserved line (compensation). */
static int release_lines(saga *s, fs_txn_loop *loop, ord_order *o, const char *reason, int64_t at,
                         fs_err *err)
{
    for (int i = 0; i < o->nlines; i++)
        if (o->lines[i].state == LINE_RESERVED) {
            if (inventory_command(s, loop, INV_CMD_RELEASE, o, i, reason, at, err))
                return -1;
            o->lines[i].state = LINE_RELEASED;
        }
    return 0;
}

static int pay(saga *s, fs_txn_loop *loop, int32_t part, ord_order *o, const char *method,
               int64_t at, fs_err *err)
{
    o->payment_attempts++;
    if (payment_command(s, loop, part, o, "RequestPayment", method, at, err))
        return -1;
    return transition(s, loop, part, o, ORD_PAYING, "", at, 0, err) < 0 ? -1 : 0;
}

/* ---- handlers ----------------------------------------------------------------------- */

static ord_order *find(saga *s, int32_t part, const char *id)
{
    return part >= 0 && part < MAX_PARTITIONS && s->orders[part] ? fs_map_get(s->orders[part], id)
                                                                  : NULL;
}

static ord_order *create(saga *s, int32_t part, const char *id)
{
    ord_order *o = calloc(1, sizeof *o);
    if (!o || !s->orders[part] || fs_map_put(s->orders[part], id, o) == (void *)-1) {
        free(o);
        return NULL;
    }
    snprintf(o->order_id, sizeof o->order_id, "%s", id);
    o->restock_on_return = true;
    return o;
}

static int on_inventory_outcome(saga *s, fs_txn_loop *loop, int32_t part, const inv_event *e,
                                fs_err *err)
{
    ord_order *o = find(s, part, e->order_id);
    int64_t at = e->occurred_at;
    int li = e->item_index;
    if (e->type == INV_EV_RESERVED || e->type == INV_EV_REJECTED) {
        if (!o) { /* a single-item order begins here */
            if (e->item_count > 1)
                return 0; /* a line of a checkout we do not know: nothing to do */
            o = create(s, part, e->order_id);
            if (!o)
                return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
            snprintf(o->member_id, sizeof o->member_id, "%s", e->member_id);
            o->nlines = 1;
            snprintf(o->lines[0].product_id, sizeof o->lines[0].product_id, "%s", e->product_id);
            o->lines[0].quantity = e->quantity;
            li = 0;
        }
        if (li < 0 || li >= o->nlines || o->lines[li].state != LINE_PENDING)
            return 0; /* unknown line, or a decision already recorded */
        ord_line *ln = &o->lines[li];
        if (e->type == INV_EV_RESERVED) {
            ln->state = LINE_RESERVED;
            ln->unit_price = e->unit_price;
            if (!o->pay_by || e->pay_by < o->pay_by)
                o->pay_by = e->pay_by;
            if (o->status != ORD_PENDING) { /* the checkout failed meanwhile: give it back */
                if (inventory_command(s, loop, INV_CMD_RELEASE, o, li, "CHECKOUT_FAILED", at, err))
                    return -1;
                ln->state = LINE_RELEASED;
                return line_update(s, loop, part, o, at, err);
            }
        } else {
            ln->state = LINE_REJECTED;
            snprintf(ln->reason, sizeof ln->reason, "%s", inv_reason_name(e->reason));
            if (o->status == ORD_PENDING) {
                char why[48];
                if (o->nlines > 1)
                    snprintf(why, sizeof why, "ITEM_%d_%s", li, inv_reason_name(e->reason));
                else
                    snprintf(why, sizeof why, "%s", inv_reason_name(e->reason));
                if (release_lines(s, loop, o, "CHECKOUT_FAILED", at, err))
                    return -1;
                return transition(s, loop, part, o, ORD_REJECTED, why, at, 0, err) < 0 ? -1 : 0;
            }
            return line_update(s, loop, part, o, at, err);
        }
        for (int i = 0; i < o->nlines; i++)
            if (o->lines[i].state != LINE_RESERVED)
                return line_update(s, loop, part, o, at, err); /* lines still pending */
        /* no overflow: every reserved line has quantity <= INV_MAX_QUANTITY and unit price
         * <= INV_MAX_PRICE (the processor refuses others; inv_state.h) */
        _Static_assert(INT64_MAX / ORD_MAX_LINES / INV_MAX_QUANTITY >= INV_MAX_PRICE,
                       "an order amount could overflow int64");
        o->amount = 0;
        for (int i = 0; i < o->nlines; i++)
            o->amount += o->lines[i].unit_price * o->lines[i].quantity;
        if (transition(s, loop, part, o, ORD_RESERVED, "", at, o->pay_by, err) < 0 ||
            notify(s, loop, o, "ORDER_RESERVED", err))
            return -1;
        return s->auto_pay ? pay(s, loop, part, o, "AUTO", at, err) : 0;
    }
    if (!o || li < 0 || li >= o->nlines)
        return 0;
    if (e->type == INV_EV_COMMITTED)
        o->lines[li].state = LINE_COMMITTED;
    else if (e->type == INV_EV_RELEASED)
        o->lines[li].state = LINE_RELEASED;
    else if (e->type == INV_EV_RESTOCKED)
        o->lines[li].state = LINE_RESTOCKED;
    else if (e->type == INV_EV_CMD_REJECTED) {
        /* inventory refused our commit/release: a unit's fate is unclear */
        char why[48];
        snprintf(why, sizeof why, "INVENTORY_%s", inv_reason_name(e->reason));
        int rc = transition(s, loop, part, o, ORD_NEEDS_ATTENTION, why, at, 0, err);
        return rc < 0 ? -1 : rc > 0 ? line_update(s, loop, part, o, at, err) : 0;
    } else
        return 0;
    return line_update(s, loop, part, o, at, err);
}

static int on_checkout(saga *s, fs_txn_loop *loop, int32_t part, avro_value_t *v, fs_err *err)
{
    char id[ORD_ID_MAX];
    fs_av_read_str(v, "order_id", id, sizeof id, NULL);
    if (find(s, part, id))
        return 0; /* already placed */
    ord_order *o = create(s, part, id);
    if (!o)
        return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
    fs_av_read_str(v, "member_id", o->member_id, sizeof o->member_id, NULL);
    int64_t at = fs_av_read_long(v, "requested_at", 0, NULL);
    avro_value_t items;
    size_t n = 0;
    if (avro_value_get_by_name(v, "items", &items, NULL) == 0)
        avro_value_get_size(&items, &n);
    for (size_t i = 0; i < n && i < ORD_MAX_LINES; i++) {
        avro_value_t it;
        avro_value_get_by_index(&items, i, &it, NULL);
        ord_line *ln = &o->lines[o->nlines++];
        fs_av_read_str(&it, "product_id", ln->product_id, sizeof ln->product_id, NULL);
        ln->quantity = (int32_t)fs_av_read_long(&it, "quantity", 0, NULL);
    }
    o->status = o->previous = ORD_PENDING;
    o->occurred_at = at;
    for (int i = 0; i < o->nlines; i++)
        if (inventory_command(s, loop, INV_CMD_RESERVE, o, i, NULL, at, err))
            return -1;
    return snapshot(s, loop, part, o, err);
}

static int on_member_command(saga *s, fs_txn_loop *loop, int32_t part, const char *type,
                             avro_value_t *v, fs_err *err)
{
    char id[ORD_ID_MAX], member[ORD_ID_MAX], method[32];
    fs_av_read_str(v, "order_id", id, sizeof id, NULL);
    fs_av_read_str(v, "member_id", member, sizeof member, NULL);
    if (!member[0])
        fs_av_read_str(v, "actor_id", member, sizeof member, NULL);
    int64_t at = fs_av_read_long(v, "requested_at", fs_now_ms(), NULL);
    ord_order *o = find(s, part, id);
    bool admin = !strcmp(type, "CompleteReturn");
    if (!o || (!admin && strcmp(o->member_id, member)))
        return reject_command(s, loop, part, id, member, type, "ORDER_NOT_FOUND", NULL, at, err);
    if (!strcmp(type, "PayOrder")) {
        if (o->status != ORD_RESERVED)
            return reject_command(s, loop, part, id, member, type,
                                  o->status == ORD_PAYING ? "PAYMENT_IN_PROGRESS"
                                  : o->status == ORD_PAID ? "ORDER_ALREADY_PAID"
                                                          : "ORDER_NOT_RESERVED",
                                  o, at, err);
        fs_av_read_str(v, "method", method, sizeof method, NULL);
        return pay(s, loop, part, o, method[0] ? method : "CARD", at, err);
    }
    if (!strcmp(type, "CancelOrder")) {
        if (o->status == ORD_RESERVED) {
            if (release_lines(s, loop, o, "CANCELLED", at, err))
                return -1;
            return transition(s, loop, part, o, ORD_CANCELLED, "CANCELLED_BY_MEMBER", at, 0, err) < 0
                       ? -1
                       : 0;
        }
        if (o->status == ORD_PAID) {
            for (int i = 0; i < o->nlines; i++)
                if (inventory_command(s, loop, INV_CMD_RESTOCK, o, i, NULL, at, err))
                    return -1;
            if (payment_command(s, loop, part, o, "RequestRefund", "CANCELLED", at, err))
                return -1;
            return transition(s, loop, part, o, ORD_CANCELLED, "CANCELLED_AFTER_PAYMENT", at, 0, err) < 0
                       ? -1
                       : 0;
        }
        const char *code = o->status == ORD_PAYING ? "PAYMENT_IN_PROGRESS"
                           : (o->status == ORD_SHIPPING || o->status == ORD_DELIVERED ||
                              o->status == ORD_RETURN_REQUESTED)
                               ? "ORDER_ALREADY_SHIPPED"
                               : "ORDER_CLOSED";
        return reject_command(s, loop, part, id, member, type, code, o, at, err);
    }
    if (!strcmp(type, "RequestReturn")) {
        if (o->status != ORD_DELIVERED)
            return reject_command(s, loop, part, id, member, type, "ORDER_NOT_DELIVERED", o, at, err);
        if (at > o->delivered_at + s->return_window_ms)
            return reject_command(s, loop, part, id, member, type, "RETURN_WINDOW_CLOSED", o, at, err);
        return transition(s, loop, part, o, ORD_RETURN_REQUESTED, "", at, 0, err) < 0 ? -1 : 0;
    }
    if (admin) {
        if (o->status != ORD_RETURN_REQUESTED)
            return reject_command(s, loop, part, id, member, type, "RETURN_NOT_REQUESTED", o, at, err);
        o->restock_on_return = fs_av_read_bool(v, "restock", true);
        if (o->restock_on_return)
            for (int i = 0; i < o->nlines; i++)
                if (inventory_command(s, loop, INV_CMD_RESTOCK, o, i, NULL, at, err))
                    return -1;
        if (payment_command(s, loop, part, o, "RequestRefund", "RETURNED", at, err))
            return -1;
        return transition(s, loop, part, o, ORD_RETURNED, "", at, 0, err) < 0 ? -1 : 0;
    }
    return 0;
}

static int on_payment_event(saga *s, fs_txn_loop *loop, int32_t part, const char *type,
                            avro_value_t *v, fs_err *err)
{
    char id[ORD_ID_MAX], reason[32];
    fs_av_read_str(v, "order_id", id, sizeof id, NULL);
    ord_order *o = find(s, part, id);
    int64_t at = fs_av_read_long(v, "occurred_at", fs_now_ms(), NULL);
    if (!o)
        return 0;
    if (!strcmp(type, "PaymentSucceeded") || !strcmp(type, "PaymentFailed")) {
        long attempt = (long)fs_av_read_long(v, "attempt", 1, NULL);
        if (o->status != ORD_PAYING || attempt != o->payment_attempts)
            return 0; /* a late or repeated answer */
        if (type[7] == 'S') {
            for (int i = 0; i < o->nlines; i++)
                if (o->lines[i].state == LINE_RESERVED &&
                    inventory_command(s, loop, INV_CMD_COMMIT, o, i, NULL, at, err))
                    return -1;
            if (transition(s, loop, part, o, ORD_PAID, "", at, at + s->day_ms, err) < 0)
                return -1;
            return notify(s, loop, o, "ORDER_PAID", err);
        }
        fs_av_read_str(v, "reason", reason, sizeof reason, NULL);
        if (fs_av_read_bool(v, "retriable", false) && o->payment_attempts < s->max_attempts)
            return pay(s, loop, part, o, "RETRY", at, err); /* bounded retry before compensation */
        if (release_lines(s, loop, o, "PAYMENT_FAILED", at, err) ||
            transition(s, loop, part, o, ORD_PAYMENT_FAILED, reason, at, 0, err) < 0)
            return -1;
        return notify(s, loop, o, "PAYMENT_FAILED", err);
    }
    if (!strcmp(type, "RefundSucceeded"))
        return notify(s, loop, o, "REFUNDED", err);
    if (!strcmp(type, "RefundFailed"))
        return transition(s, loop, part, o, ORD_NEEDS_ATTENTION, "REFUND_FAILED", at, 0, err) < 0
                   ? -1
                   : 0;
    return 0;
}

static int on_record(void *app, fs_txn_loop *loop, const rd_kafka_message_t *m, fs_err *err)
{
    saga *s = app;
    const char *topic = rd_kafka_topic_name(m->rkt);
    s->cause[0] = '\0';
    fs_kafka_header_get(m, "event-id", s->cause, sizeof s->cause);
    const fs_schema *sc;
    avro_value_t v;
    fs_err derr = {0};
    if (fs_codec_decode(s->codec, m->payload, m->len, &sc, &v, &derr))
        return fs_txn_loop_dead_letter(loop, m, derr.msg, err);
    const char *type = fs_schema_name(sc);
    int rc = 0;
    if (!strcmp(topic, FS_TOPIC_INVENTORY_EVENTS)) {
        /* forward what names an order to the order's partition */
        char order[ORD_ID_MAX];
        fs_av_read_str(&v, "order_id", order, sizeof order, NULL);
        if (order[0] && strcmp(type, "ProductDefined")) {
            rd_kafka_headers_t *h = NULL, *copy = NULL;
            if (rd_kafka_message_headers(m, &h) == 0 && h)
                copy = rd_kafka_headers_copy(h);
            rc = fs_txn_loop_produce(loop, FS_TOPIC_ORDERS_COMMANDS, RD_KAFKA_PARTITION_UA, order,
                                     strlen(order), m->payload, m->len, copy, err);
        }
    } else if (!strcmp(topic, FS_TOPIC_ORDERS_COMMANDS)) {
        if (!strncmp(fs_schema_fullname(sc), "flashsale.inventory.", 20)) {
            inv_event e;
            if (inv_event_decode(&v, type, &e, &derr) == 0)
                rc = on_inventory_outcome(s, loop, m->partition, &e, err);
            else
                rc = fs_txn_loop_dead_letter(loop, m, derr.msg, err);
        } else if (!strcmp(type, "PlaceCheckout"))
            rc = on_checkout(s, loop, m->partition, &v, err);
        else if (!strcmp(type, "PayOrder") || !strcmp(type, "CancelOrder") ||
                 !strcmp(type, "RequestReturn") || !strcmp(type, "CompleteReturn"))
            rc = on_member_command(s, loop, m->partition, type, &v, err);
        else
            rc = fs_txn_loop_dead_letter(loop, m, "not an order command", err);
    } else if (!strcmp(topic, FS_TOPIC_PAYMENTS_EVENTS)) {
        rc = on_payment_event(s, loop, m->partition, type, &v, err);
    }
    avro_value_decref(&v);
    return rc < 0 ? -1 : 0;
}

/* Timers: fire what is due, each in the current transaction. */
static int on_tick(void *app, fs_txn_loop *loop, fs_err *err)
{
    saga *s = app;
    int64_t now = fs_now_ms();
    int fired = 0;
    while (s->nheap && s->heap[0].due <= now && fired < 500) {
        timer_t_ t = heap_pop(s);
        ord_order *o = find(s, t.partition, t.order_id);
        if (!o || o->deadline != t.due)
            continue; /* stale entry: the order moved on, or the partition left */
        if (fs_txn_loop_begin(loop, err))
            return -1;
        s->cause[0] = '\0';
        fired++;
        fs_txn_loop_count(loop);
        int rc = 0;
        if (o->status == ORD_RESERVED) {
            if (release_lines(s, loop, o, "EXPIRED", now, err) ||
                transition(s, loop, t.partition, o, ORD_EXPIRED, "DEADLINE_PASSED", now, 0, err) < 0 ||
                notify(s, loop, o, "ORDER_EXPIRED", err))
                rc = -1;
        } else if (o->status == ORD_PAID) {
            if (transition(s, loop, t.partition, o, ORD_SHIPPING, "", now, now + s->day_ms, err) < 0 ||
                notify(s, loop, o, "ORDER_SHIPPED", err))
                rc = -1;
        } else if (o->status == ORD_SHIPPING) {
            o->delivered_at = now;
            if (transition(s, loop, t.partition, o, ORD_DELIVERED, "", now, 0, err) < 0 ||
                notify(s, loop, o, "ORDER_DELIVERED", err))
                rc = -1;
        }
        if (rc)
            return -1;
    }
    return 0;
}

/* ---- assignment --------------------------------------------------------------------- */

typedef struct {
    saga *s;
    uint64_t n;
} rebuild_ctx;

static int rebuild_cb(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    rebuild_ctx *r = ctx;
    const fs_schema *sc;
    avro_value_t v;
    fs_err e = {0};
    (void)err;
    if (fs_codec_decode(r->s->codec, m->payload, m->len, &sc, &v, &e))
        return 0;
    if (!strcmp(fs_schema_name(sc), "OrderStatusChanged")) {
        ord_order snap;
        if (ord_decode(&v, &snap, &e) == 0 && r->s->orders[m->partition]) {
            ord_order *o = fs_map_get(r->s->orders[m->partition], snap.order_id);
            if (!o) {
                o = malloc(sizeof *o);
                if (o && fs_map_put(r->s->orders[m->partition], snap.order_id, o) == (void *)-1) {
                    free(o);
                    o = NULL;
                }
            }
            if (o)
                *o = snap;
            r->n++;
        }
    }
    avro_value_decref(&v);
    return 0;
}

static void arm(void *ctx, const char *key, void *value)
{
    void **c = ctx;
    saga *s = c[0];
    int32_t part = *(int32_t *)c[1];
    ord_order *o = value;
    (void)key;
    if (o->deadline > 0)
        heap_push(s, o->deadline, part, o->order_id);
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
    rebuild_ctx r = {s, 0};
    int64_t t0 = fs_mono_ms();
    if (fs_kafka_read_changelog(&s->cfg, parts, FS_TOPIC_ORDERS_EVENTS, rebuild_cb, &r, 30000, err))
        return -1;
    s->nheap = 0; /* re-arm every owned order's timer from its snapshot */
    for (int p = 0; p < MAX_PARTITIONS; p++)
        if (s->orders[p]) {
            void *c[2] = {s, &p};
            fs_map_foreach(s->orders[p], arm, c);
        }
    fs_log_info("orders rebuilt", json_pack("{s:I,s:I,s:I}", "snapshots", (json_int_t)r.n, "timers",
                                            (json_int_t)s->nheap, "ms",
                                            (json_int_t)(fs_mono_ms() - t0)));
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
    long day_s, window_days;
    if (fs_env_str("FLASHSALE_INSTANCE_ID", "orders-1", false, &instance, &err) ||
        fs_env_int("FLASHSALE_DAY_SECONDS", 86400, 1, 864000, &day_s, &err) ||
        fs_env_int("FLASHSALE_RETURN_WINDOW_DAYS", 7, 0, 365, &window_days, &err) ||
        fs_env_bool("FLASHSALE_AUTO_PAY", false, &s.auto_pay, &err) ||
        fs_env_int("FLASHSALE_PAYMENT_MAX_ATTEMPTS", 3, 1, 10, &s.max_attempts, &err))
        fs_config_die(&err);
    s.day_ms = day_s * 1000;
    s.return_window_ms = window_days * s.day_ms;
    /* the inventory remembers a sold line for INV_SOLD_MEMORY_MS: a return must come before */
    if (s.return_window_ms > 30LL * 24 * 3600 * 1000) {
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
    fs_log_info("started", json_pack("{s:s,s:I,s:b}", "instance", instance, "day_seconds",
                                     (json_int_t)day_s, "auto_pay", s.auto_pay));
    fs_metrics_server *metrics = fs_metrics_serve_from_env(); /* FLASHSALE_METRICS_ADDR */
    int rc = fs_txn_loop_run(loop, &stop_flag, &err);
    if (rc)
        fs_log_error("stopped on error", json_pack("{s:s}", "error", err.msg));
    fs_txn_loop_destroy(loop);
    fs_metrics_serve_stop(metrics);
    for (int p = 0; p < MAX_PARTITIONS; p++)
        drop_partition(&s, p);
    free(s.heap);
    fs_codec_destroy(s.codec);
    return rc ? 1 : 0;
}
