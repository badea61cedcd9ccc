/* flashsale-audit: proves from the event log alone that the sale was correct.
 *
 *   flashsale-audit [--at TIME] [--product ID] [--json FILE] [--topic-prefix P] [--grace-ms N]
 *
 * Reads inventory.commands, inventory.events and orders.events from the beginning
 * (read_committed; with --at only records whose Kafka timestamp is at or before TIME) and
 * checks:
 *  replay       every command, re-decided in log order with the inventory processor's own
 *               decision code (inv_decide), gets exactly the event the processor wrote for it
 *               (same type, reason, quantity, counters) and no other: decisions followed the
 *               rules and first come, first served;
 *  invariants   from the events alone, with counters kept here: available + reserved + sold =
 *               stock, nothing negative, no oversell, SOLD_OUT only when nothing was available
 *               (no undersell), no member above the per-member limit, one decision per order
 *               line, every reservation committed or released at most once;
 *  leaks        no reservation left unsettled when its order has ended without a sale, or more
 *               than --grace-ms (60000) past its payment deadline unless a payment is under way;
 *  orders       every status change of every order is a legal transition of the lifecycle and
 *               an order ends at most once;
 *  answers      every answer the API gave a buyer (orders.answers), including those given
 *               before the processor's transaction committed, equals the committed decision
 *               (outcome, reason, payment deadline); a sold-out answer from the API's view
 *               came after the committed log sold the product out.
 * Output: a summary on stdout (progress on stderr), a JSON report with --json; exit status 0
 * only when every check holds, 1 otherwise, 2 on usage or read errors. --product with --at
 * prints that product's stock at that time.
 *  read models (unless --at, --topic-prefix or --no-read-models) the PostgreSQL and Redis
 *               read models hold exactly the re-derived products (stock, available,
 *               reserved, sold) and orders (status, number of transitions), nothing more and
 *               nothing less; a model still behind what was read gets --wait-ms (30000) to
 *               catch up. A model that cannot be compared (unreachable, behind, or already
 *               past what was read) is reported, and is a violation with --read-models. */
#include "flashsale/inventory_codec.h"
#include "flashsale/inventory.h"
#include "flashsale/messages.h"
#include "flashsale/order.h"

#include "fs/codec.h"
#include "fs/config.h"
#include "fs/db.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/map.h"
#include "fs/readmodel.h"
#include "fs/timefmt.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PARTITIONS 1024
#define MAX_VIOLATIONS 1000

typedef struct {
    int32_t partition;
    int64_t offset, ts;
    bool ok; /* decoded */
    inv_command cmd;
} cmd_rec;

typedef struct {
    int32_t partition;
    int64_t offset, ts;
    inv_event ev;
} ev_rec;

typedef struct {
    int32_t partition;
    int64_t offset;
    char order_id[INV_ID_MAX], member_id[INV_ID_MAX], product_id[INV_ID_MAX];
    char status[16], reason[32], source[16];
    int32_t quantity;
    int64_t pay_by, answered_at;
} answer_rec;

typedef struct {
    void *v;
    size_t n, cap, size;
} vec;

/* Makes room for one more element; -1 when memory runs out (the caller reports it). */
static int vec_grow(vec *x)
{
    if (x->n < x->cap)
        return 0;
    size_t cap = x->cap ? x->cap * 2 : 1024;
    void *nv = realloc(x->v, cap * x->size);
    if (!nv)
        return -1;
    x->v = nv;
    x->cap = cap;
    return 0;
}

/* The next element; room was made by vec_grow. */
static void *vec_push(vec *x)
{
    return (char *)x->v + x->size * x->n++;
}

typedef struct {
    const fs_codec *codec;
    int64_t at;
    vec cmds, evs, orders, answers; /* cmd_rec, ev_rec, ord_order, answer_rec */
    uint64_t read, skipped_time, undecodable;
    const char *topic;
    int64_t next_ev[MAX_PARTITIONS], next_ord[MAX_PARTITIONS]; /* last offset read + 1 */
} audit_ctx;

static json_t *violations;
static size_t nviolations;

static void violation(const char *check, const char *order, const char *product, int32_t part,
                      int64_t offset, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void violation(const char *check, const char *order, const char *product, int32_t part,
                      int64_t offset, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    nviolations++;
    if (json_array_size(violations) < MAX_VIOLATIONS)
        json_array_append_new(violations,
                              json_pack("{s:s,s:s,s:s,s:i,s:I,s:s}", "check", check, "order_id",
                                        order ? order : "", "product_id", product ? product : "",
                                        "partition", part, "offset", (json_int_t)offset, "detail",
                                        detail));
    if (nviolations <= 20)
        printf("VIOLATION %-10s order %s product %s at %d/%lld: %s\n", check,
               order && *order ? order : "-", product && *product ? product : "-", part,
               (long long)offset, detail);
}

static int collect(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    audit_ctx *a = ctx;
    if (vec_grow(&a->cmds) || vec_grow(&a->evs) || vec_grow(&a->answers) || vec_grow(&a->orders))
        return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory after %llu records",
                          (unsigned long long)a->read);
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    if (a->at && ts > a->at) {
        a->skipped_time++;
        return 0;
    }
    if (++a->read % 100000 == 0)
        fprintf(stderr, "flashsale-audit: %s: %llu records read\n", a->topic,
                (unsigned long long)a->read);
    const fs_schema *s;
    avro_value_t v;
    fs_err e = {0};
    bool ok = fs_codec_decode(a->codec, m->payload, m->len, &s, &v, &e) == 0;
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (m->partition >= 0 && m->partition < MAX_PARTITIONS) {
        if (strstr(topic, "inventory.events"))
            a->next_ev[m->partition] = m->offset + 1;
        else if (strstr(topic, "orders.events"))
            a->next_ord[m->partition] = m->offset + 1;
    }
    if (strstr(topic, "inventory.commands")) {
        cmd_rec *c = vec_push(&a->cmds);
        c->partition = m->partition;
        c->offset = m->offset;
        c->ts = ts;
        c->ok = ok && inv_command_decode(&v, fs_schema_name(s), &c->cmd, &e) == 0;
        if (c->ok)
            c->cmd.offset = m->offset;
    } else if (ok && strstr(topic, "inventory.events")) {
        ev_rec *r = vec_push(&a->evs);
        r->partition = m->partition;
        r->offset = m->offset;
        r->ts = ts;
        if (inv_event_decode(&v, fs_schema_name(s), &r->ev, &e)) {
            a->evs.n--;
            a->undecodable++;
        }
    } else if (ok && strstr(topic, "orders.answers") && !strcmp(fs_schema_name(s), "OrderAnswered")) {
        answer_rec *r = vec_push(&a->answers);
        memset(r, 0, sizeof *r);
        r->partition = m->partition;
        r->offset = m->offset;
        ord_answer ans;
        if (ord_answer_decode(&v, &ans, &e)) {
            a->answers.n--;
            a->undecodable++;
        } else {
            snprintf(r->order_id, sizeof r->order_id, "%s", ans.order_id);
            snprintf(r->member_id, sizeof r->member_id, "%s", ans.member_id);
            snprintf(r->product_id, sizeof r->product_id, "%s", ans.product_id);
            snprintf(r->status, sizeof r->status, "%s", ans.status);
            snprintf(r->reason, sizeof r->reason, "%s", ans.reason);
            snprintf(r->source, sizeof r->source, "%s", ans.source);
            r->pay_by = ans.pay_by;
            r->answered_at = ans.answered_at;
            r->quantity = ans.quantity;
        }
    } else if (ok && strstr(topic, "orders.events") &&
               !strcmp(fs_schema_name(s), "OrderStatusChanged")) {
        ord_order *o = vec_push(&a->orders);
        if (ord_decode(&v, o, &e))
            a->orders.n--;
    }
    if (!ok)
        a->undecodable++;
    else
        avro_value_decref(&v);
    return 0;
}

static int read_topic(const fs_common_config *cfg, audit_ctx *a, const char *topic, fs_err *err)
{
    rd_kafka_t *admin = fs_kafka_new(cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-audit"}, err);
    int n = admin ? fs_kafka_partition_count(admin, topic, 10000, err) : -1;
    if (admin)
        rd_kafka_destroy(admin);
    if (n < 1)
        return -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    a->topic = topic;
    uint64_t before = a->read;
    int rc = fs_kafka_read_to_end(cfg, l, collect, a, 600000, err);
    rd_kafka_topic_partition_list_destroy(l);
    fprintf(stderr, "flashsale-audit: %s: %llu records\n", topic,
            (unsigned long long)(a->read - before));
    return rc;
}

/* ---- replay ------------------------------------------------------------------------- */

static int cmp_cmd(const void *x, const void *y)
{
    const cmd_rec *a = x, *b = y;
    return a->partition != b->partition ? a->partition - b->partition
                                        : (a->offset > b->offset) - (a->offset < b->offset);
}

static int cmp_ev(const void *x, const void *y)
{
    const ev_rec *a = x, *b = y;
    return a->partition != b->partition ? a->partition - b->partition
                                        : (a->offset > b->offset) - (a->offset < b->offset);
}

static bool same_decision(const inv_event *want, const inv_event *got)
{
    if (want->type != got->type || strcmp(want->product_id, got->product_id) ||
        strcmp(want->order_id, got->order_id) || want->item_index != got->item_index)
        return false;
    switch (want->type) {
    case INV_EV_REJECTED:
        return want->reason == got->reason && want->quantity == got->quantity;
    case INV_EV_CMD_REJECTED:
        return want->reason == got->reason;
    case INV_EV_RESERVED:
    case INV_EV_COMMITTED:
    case INV_EV_RELEASED:
    case INV_EV_RESTOCKED:
        return want->quantity == got->quantity && want->available == got->available &&
               want->reserved == got->reserved && want->sold == got->sold;
    default:
        return true;
    }
}

static void check_replay(audit_ctx *a, uint64_t *replayed)
{
    cmd_rec *cmds = a->cmds.v;
    ev_rec *evs = a->evs.v;
    qsort(cmds, a->cmds.n, sizeof *cmds, cmp_cmd);
    qsort(evs, a->evs.n, sizeof *evs, cmp_ev);
    size_t ci = 0, ei = 0;
    while (ci < a->cmds.n || ei < a->evs.n) {
        int32_t part = ci < a->cmds.n ? cmds[ci].partition : evs[ei].partition;
        if (ei < a->evs.n && evs[ei].partition < part)
            part = evs[ei].partition;
        /* events of this partition, by the command offset they answer */
        fs_map *by_cmd = fs_map_new(1024);
        size_t e0 = ei;
        while (ei < a->evs.n && evs[ei].partition == part) {
            char k[32];
            snprintf(k, sizeof k, "%lld", (long long)evs[ei].ev.command_offset);
            if (fs_map_get(by_cmd, k))
                violation("replay", evs[ei].ev.order_id, evs[ei].ev.product_id, part,
                          evs[ei].offset, "a second event answers command %lld",
                          (long long)evs[ei].ev.command_offset);
            else
                fs_map_put(by_cmd, k, &evs[ei]);
            ei++;
        }
        inv_state *st = inv_state_new(0);
        for (; ci < a->cmds.n && cmds[ci].partition == part; ci++) {
            cmd_rec *c = &cmds[ci];
            char k[32];
            snprintf(k, sizeof k, "%lld", (long long)c->offset);
            ev_rec *got = fs_map_del(by_cmd, k);
            if (!c->ok) {
                if (got)
                    violation("replay", got->ev.order_id, got->ev.product_id, part, c->offset,
                              "an undecodable command was answered");
                continue;
            }
            inv_event want;
            if (c->offset <= inv_state_last_command_offset(st) ||
                inv_decide(st, &c->cmd, &want) == INV_DUPLICATE) {
                if (got)
                    violation("replay", c->cmd.order_id, c->cmd.product_id, part, c->offset,
                              "a repeated command was answered again (%s)",
                              inv_event_name(got->ev.type));
                continue;
            }
            if (!got) {
                if (!a->at) /* with --at the answer may lie after the cut */
                    violation("replay", c->cmd.order_id, c->cmd.product_id, part, c->offset,
                              "%s got no answer (expected %s)", inv_cmd_name(c->cmd.type),
                              inv_event_name(want.type));
                continue;
            }
            if (!same_decision(&want, &got->ev))
                violation("replay", c->cmd.order_id, c->cmd.product_id, part, got->offset,
                          "%s answered %s %s (%d/%d/%d), the rules give %s %s (%d/%d/%d)",
                          inv_cmd_name(c->cmd.type), inv_event_name(got->ev.type),
                          got->ev.type == INV_EV_REJECTED ? inv_reason_name(got->ev.reason) : "",
                          got->ev.available, got->ev.reserved, got->ev.sold,
                          inv_event_name(want.type),
                          want.type == INV_EV_REJECTED ? inv_reason_name(want.reason) : "",
                          want.available, want.reserved, want.sold);
            if (inv_apply(st, &got->ev)) /* continue from what really happened */
                violation("replay", got->ev.order_id, got->ev.product_id, part, got->offset,
                          "%s does not apply to the state before it", inv_event_name(got->ev.type));
            (*replayed)++;
        }
        for (size_t i = e0; i < ei; i++) {
            char k[32];
            snprintf(k, sizeof k, "%lld", (long long)evs[i].ev.command_offset);
            if (fs_map_get(by_cmd, k) == &evs[i])
                violation("replay", evs[i].ev.order_id, evs[i].ev.product_id, part, evs[i].offset,
                          "%s answers no command (command offset %lld)",
                          inv_event_name(evs[i].ev.type), (long long)evs[i].ev.command_offset);
        }
        inv_state_destroy(st);
        fs_map_destroy(by_cmd);
    }
}

/* ---- invariants from the events alone ------------------------------------------------ */

typedef struct {
    int64_t stock, available, reserved, sold;
    int32_t limit;
} prod_t;

typedef struct {
    char member[INV_ID_MAX];
    char product[INV_ID_MAX];
    int32_t qty;
    int64_t pay_by;
    int settled; /* commits + releases */
    int32_t partition;
    int64_t offset;
} resv_t;

static void check_invariants(audit_ctx *a, fs_map *products, fs_map *resv, fs_map *decided)
{
    fs_map *held = fs_map_new(4096); /* "product|member" -> units */
    ev_rec *evs = a->evs.v;
    for (size_t i = 0; i < a->evs.n; i++) {
        const inv_event *e = &evs[i].ev;
        int32_t part = evs[i].partition;
        int64_t off = evs[i].offset;
        prod_t *p = fs_map_get(products, e->product_id);
        char k[2 * INV_ID_MAX + 16];
        if (e->type == INV_EV_DEFINED) {
            if (p) {
                violation("invariant", "", e->product_id, part, off, "product defined twice");
                continue;
            }
            p = calloc(1, sizeof *p);
            p->stock = p->available = e->stock;
            p->limit = e->f.per_user_limit;
            fs_map_put(products, e->product_id, p);
            continue;
        }
        if (e->type == INV_EV_RESERVED || e->type == INV_EV_REJECTED) {
            snprintf(k, sizeof k, "%s#%d", e->order_id, e->item_index);
            intptr_t n = (intptr_t)fs_map_get(decided, k) + 1;
            fs_map_put(decided, k, (void *)n);
            if (n > 1)
                violation("invariant", e->order_id, e->product_id, part, off,
                          "line %d decided %ld times", e->item_index, (long)n);
        }
        if (!p) {
            if (e->type != INV_EV_REJECTED && e->type != INV_EV_CMD_REJECTED)
                violation("invariant", e->order_id, e->product_id, part, off,
                          "%s for an unknown product", inv_event_name(e->type));
            continue;
        }
        switch (e->type) {
        case INV_EV_UPDATED:
            if (e->f.has_limit)
                p->limit = e->f.per_user_limit;
            break;
        case INV_EV_RESTOCKED:
            p->stock += e->quantity;
            p->available += e->quantity;
            if (e->order_id[0]) { /* a returned or cancelled paid unit is no longer held */
                snprintf(k, sizeof k, "%s#%d", e->order_id, e->item_index);
                resv_t *r = fs_map_get(resv, k);
                if (r) {
                    char hk[2 * INV_ID_MAX + 4];
                    snprintf(hk, sizeof hk, "%s|%s", r->product, r->member);
                    fs_map_put(held, hk, (void *)((intptr_t)fs_map_get(held, hk) - r->qty));
                }
            }
            break;
        case INV_EV_RESERVED: {
            if (e->quantity > p->available)
                violation("oversell", e->order_id, e->product_id, part, off,
                          "%d units granted with %lld available", e->quantity,
                          (long long)p->available);
            p->available -= e->quantity;
            p->reserved += e->quantity;
            char hk[2 * INV_ID_MAX + 4];
            snprintf(hk, sizeof hk, "%s|%s", e->product_id, e->member_id);
            intptr_t h = (intptr_t)fs_map_get(held, hk) + e->quantity;
            fs_map_put(held, hk, (void *)h);
            if (p->limit > 0 && h > p->limit)
                violation("limit", e->order_id, e->product_id, part, off,
                          "member %s holds %ld units, the limit is %d", e->member_id, (long)h,
                          p->limit);
            snprintf(k, sizeof k, "%s#%d", e->order_id, e->item_index);
            resv_t *r = calloc(1, sizeof *r);
            snprintf(r->member, sizeof r->member, "%s", e->member_id);
            snprintf(r->product, sizeof r->product, "%s", e->product_id);
            r->qty = e->quantity;
            r->pay_by = e->pay_by;
            r->partition = part;
            r->offset = off;
            free(fs_map_put(resv, k, r));
            break;
        }
        case INV_EV_REJECTED:
            if (e->reason == INV_R_SOLD_OUT && p->available != 0)
                violation("undersell", e->order_id, e->product_id, part, off,
                          "refused SOLD_OUT with %lld units available", (long long)p->available);
            break;
        case INV_EV_COMMITTED:
        case INV_EV_RELEASED: {
            snprintf(k, sizeof k, "%s#%d", e->order_id, e->item_index);
            resv_t *r = fs_map_get(resv, k);
            if (!r) {
                violation("invariant", e->order_id, e->product_id, part, off,
                          "%s of a reservation that does not exist", inv_event_name(e->type));
                break;
            }
            if (++r->settled > 1)
                violation("invariant", e->order_id, e->product_id, part, off,
                          "reservation settled %d times", r->settled);
            p->reserved -= r->qty;
            if (e->type == INV_EV_COMMITTED)
                p->sold += r->qty;
            else {
                p->available += r->qty;
                char hk[2 * INV_ID_MAX + 4];
                snprintf(hk, sizeof hk, "%s|%s", r->product, r->member);
                fs_map_put(held, hk, (void *)((intptr_t)fs_map_get(held, hk) - r->qty));
            }
            break;
        }
        default:
            break;
        }
        if (p->available < 0 || p->reserved < 0 || p->sold < 0)
            violation("invariant", e->order_id, e->product_id, part, off,
                      "negative counter (%lld/%lld/%lld)", (long long)p->available,
                      (long long)p->reserved, (long long)p->sold);
        if (p->available + p->reserved + p->sold != p->stock)
            violation("invariant", e->order_id, e->product_id, part, off,
                      "available + reserved + sold = %lld, stock %lld",
                      (long long)(p->available + p->reserved + p->sold), (long long)p->stock);
        if (p->reserved + p->sold > p->stock)
            violation("oversell", e->order_id, e->product_id, part, off,
                      "reserved + sold %lld above stock %lld", (long long)(p->reserved + p->sold),
                      (long long)p->stock);
        if ((e->type == INV_EV_RESERVED || e->type == INV_EV_COMMITTED ||
             e->type == INV_EV_RELEASED || e->type == INV_EV_RESTOCKED) &&
            (e->available != p->available || e->reserved != p->reserved || e->sold != p->sold))
            violation("invariant", e->order_id, e->product_id, part, off,
                      "event says %d/%d/%d, the log adds up to %lld/%lld/%lld", e->available,
                      e->reserved, e->sold, (long long)p->available, (long long)p->reserved,
                      (long long)p->sold);
    }
    fs_map_destroy(held);
}

/* ---- orders and leaks --------------------------------------------------------------- */

typedef struct {
    ord_status last;
    int terminal;
} order_t;

static void check_orders(audit_ctx *a, fs_map *orders)
{
    ord_order *snaps = a->orders.v;
    for (size_t i = 0; i < a->orders.n; i++) {
        ord_order *s = &snaps[i];
        order_t *o = fs_map_get(orders, s->order_id);
        if (!o) {
            o = calloc(1, sizeof *o);
            o->last = s->previous;
            fs_map_put(orders, s->order_id, o);
        }
        if (s->previous != s->status) {
            if (!ord_transition_is_valid(s->previous, s->status))
                violation("orders", s->order_id, "", -1, -1, "illegal transition %s -> %s",
                          ord_status_name(s->previous), ord_status_name(s->status));
            if (ord_status_is_terminal(s->status) && ++o->terminal > 1)
                violation("orders", s->order_id, "", -1, -1, "ended twice (now %s)",
                          ord_status_name(s->status));
        }
        o->last = s->status;
    }
}

typedef struct {
    fs_map *orders;
    int64_t now, grace;
    uint64_t unsettled;
} leak_ctx;

static void check_leak(void *ctx, const char *key, void *value)
{
    leak_ctx *l = ctx;
    resv_t *r = value;
    if (r->settled)
        return;
    l->unsettled++;
    char order[INV_ID_MAX];
    snprintf(order, sizeof order, "%.*s", (int)(strrchr(key, '#') - key), key);
    order_t *o = fs_map_get(l->orders, order);
    bool ended_without_sale = o && (o->last == ORD_EXPIRED || o->last == ORD_CANCELLED ||
                                    o->last == ORD_PAYMENT_FAILED || o->last == ORD_REJECTED);
    bool paying = o && (o->last == ORD_PAYING || o->last == ORD_PAID ||
                        o->last == ORD_NEEDS_ATTENTION);
    if (ended_without_sale)
        violation("leak", order, r->product, r->partition, r->offset,
                  "reservation of %d never released though the order is %s", r->qty,
                  ord_status_name(o->last));
    else if (!paying && r->pay_by && r->pay_by + l->grace < l->now)
        violation("leak", order, r->product, r->partition, r->offset,
                  "reservation of %d still held %lld s after its payment deadline", r->qty,
                  (long long)((l->now - r->pay_by) / 1000));
}

/* ---- read models ---------------------------------------------------------------------- */

typedef struct {
    char status[24];
    int transitions;
    bool seen_pg, seen_redis;
    bool ended;       /* Redis lets its keys expire (fs/readmodel.h) */
    int64_t ended_at; /* the time of the event that ended it */
} want_order;

/* What every order must look like in a read model: the saga's last snapshot, else the
 * inventory decision of a single-item order; and how many transitions its history holds. */
static fs_map *expected_orders(audit_ctx *a)
{
    fs_map *m = fs_map_new(4096);
    ev_rec *evs = a->evs.v;
    for (size_t i = 0; i < a->evs.n; i++) {
        const inv_event *e = &evs[i].ev;
        if ((e->type != INV_EV_RESERVED && e->type != INV_EV_REJECTED) || e->item_count > 1 ||
            fs_map_get(m, e->order_id))
            continue;
        want_order *w = calloc(1, sizeof *w);
        snprintf(w->status, sizeof w->status, "%s", e->type == INV_EV_RESERVED ? "RESERVED" : "REJECTED");
        w->ended = e->type == INV_EV_REJECTED;
        w->ended_at = e->occurred_at;
        fs_map_put(m, e->order_id, w);
    }
    ord_order *snaps = a->orders.v;
    for (size_t i = 0; i < a->orders.n; i++) {
        want_order *w = fs_map_get(m, snaps[i].order_id);
        if (!w) {
            w = calloc(1, sizeof *w);
            fs_map_put(m, snaps[i].order_id, w);
        }
        snprintf(w->status, sizeof w->status, "%s", ord_status_name(snaps[i].status));
        w->ended = ord_status_is_terminal(snaps[i].status);
        w->ended_at = snaps[i].occurred_at;
        if (snaps[i].previous != snaps[i].status)
            w->transitions++;
    }
    return m;
}

/* A read model's stored offset against what the audit read: -1 behind, 1 ahead, 0 equal.
 * `seen` (MAX_PARTITIONS per topic: inventory.events, then orders.events) marks the
 * partitions the model holds an offset for. */
static int offsets_state(audit_ctx *a, const char *topic, int32_t part, int64_t next, bool *seen)
{
    bool ev = strstr(topic, "inventory.events") != NULL;
    const int64_t *mine = ev ? a->next_ev : strstr(topic, "orders.events") ? a->next_ord : NULL;
    if (!mine || part < 0 || part >= MAX_PARTITIONS)
        return 0;
    seen[(ev ? 0 : MAX_PARTITIONS) + part] = true;
    int64_t want = mine[part];
    return next < want ? -1 : next > want && want > 0 ? 1 : 0;
}

/* A partition the audit read events of but the model holds no offset for: the model has not
 * projected it at all (a projector that ran while the log was empty, and not since), so it
 * is behind, not comparable. true (with `why`) when there is one. */
static bool offsets_missing(audit_ctx *a, const bool *seen, char *why, size_t whylen)
{
    for (int t = 0; t < 2; t++)
        for (int p = 0; p < MAX_PARTITIONS; p++)
            if ((t ? a->next_ord : a->next_ev)[p] > 0 && !seen[t * MAX_PARTITIONS + p]) {
                snprintf(why, whylen, "behind at %s/%d: no offset stored, the audit read up to %lld",
                         t ? "orders.events" : "inventory.events", p,
                         (long long)(t ? a->next_ord : a->next_ev)[p]);
                return true;
            }
    return false;
}

typedef struct {
    const char *store;
    fs_map *products, *orders;
    uint64_t compared;
    uint64_t expired;   /* ended orders Redis has let go (allowed) */
    long ended_ttl_ms;  /* FS_RM_ENDED_TTL_ENV */
} diff_ctx;

static void product_diff(diff_ctx *d, const char *id, long long stock, long long avail,
                         long long resv, long long sold)
{
    prod_t *p = fs_map_get(d->products, id);
    d->compared++;
    if (!p)
        violation("readmodel", "", id, -1, -1, "%s holds a product the log never defined", d->store);
    else if (p->stock != stock || p->available != avail || p->reserved != resv || p->sold != sold)
        violation("readmodel", "", id, -1, -1,
                  "%s says stock %lld available %lld reserved %lld sold %lld; the log says "
                  "%lld/%lld/%lld/%lld", d->store, stock, avail, resv, sold, (long long)p->stock,
                  (long long)p->available, (long long)p->reserved, (long long)p->sold);
}

static void order_diff(diff_ctx *d, const char *id, const char *status, long long transitions)
{
    want_order *w = fs_map_get(d->orders, id);
    d->compared++;
    if (!w) {
        violation("readmodel", id, "", -1, -1, "%s holds an order the log does not know", d->store);
        return;
    }
    if (!strcmp(d->store, "postgres"))
        w->seen_pg = true;
    else
        w->seen_redis = true;
    if (strcmp(w->status, status) || w->transitions != transitions)
        violation("readmodel", id, "", -1, -1, "%s says %s with %lld transitions; the log says %s with %d",
                  d->store, status, transitions, w->status, w->transitions);
}

typedef struct {
    diff_ctx *d;
    bool pg;
} missing_ctx;

static void order_missing(void *ctx, const char *id, void *v)
{
    missing_ctx *m = ctx;
    want_order *w = v;
    if (m->pg ? w->seen_pg : w->seen_redis)
        return;
    /* (now, taken after Redis was read: a key that expired during the read is due) */
    if (!m->pg && w->ended && w->ended_at + m->d->ended_ttl_ms <= fs_now_ms())
        m->d->expired++;
    else
        violation("readmodel", id, "", -1, -1, "%s lacks this order (%s in the log)", m->d->store, w->status);
}

/* Returns 1 compared, 0 not comparable (the store is behind or ahead of what was read). */
static int diff_pg(const fs_common_config *cfg, audit_ctx *a, diff_ctx *d, char *why, size_t whylen)
{
    fs_err err = {0};
    PGconn *c = fs_pg_connect(cfg, "flashsale-audit", &err);
    if (!c) {
        snprintf(why, whylen, "unreachable: %s", err.msg);
        return -1;
    }
    int rc = 1;
    PGresult *r = PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); /* one snapshot */
    PQclear(r);
    r = PQexec(c, "SELECT topic, partition, next_offset FROM projector_offsets WHERE projector = 'postgres'");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(why, whylen, "no read model: %s", PQresultErrorMessage(r));
        rc = -1;
    }
    bool seen[2 * MAX_PARTITIONS] = {false};
    for (int i = 0; rc == 1 && i < PQntuples(r); i++) {
        int st = offsets_state(a, PQgetvalue(r, i, 0), atoi(PQgetvalue(r, i, 1)), atoll(PQgetvalue(r, i, 2)), seen);
        if (st) {
            snprintf(why, whylen, "%s at %s/%s: offset %s is %s what the audit read", st < 0 ? "behind" : "ahead",
                     PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), st < 0 ? "before" : "after");
            rc = 0;
        }
    }
    PQclear(r);
    if (rc == 1 && offsets_missing(a, seen, why, whylen))
        rc = 0;
    if (rc == 1) {
        r = PQexec(c, "SELECT product_id, stock, available, reserved, sold FROM products");
        for (int i = 0; i < PQntuples(r); i++)
            product_diff(d, PQgetvalue(r, i, 0), atoll(PQgetvalue(r, i, 1)), atoll(PQgetvalue(r, i, 2)),
                         atoll(PQgetvalue(r, i, 3)), atoll(PQgetvalue(r, i, 4)));
        PQclear(r);
        r = PQexec(c, "SELECT o.order_id, o.status, count(h.order_id) FROM orders o"
                      " LEFT JOIN order_status_history h ON h.order_id = o.order_id GROUP BY 1, 2");
        for (int i = 0; i < PQntuples(r); i++)
            order_diff(d, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), atoll(PQgetvalue(r, i, 2)));
        PQclear(r);
        missing_ctx mc = {d, true};
        fs_map_foreach(d->orders, order_missing, &mc);
    }
    PQclear(PQexec(c, "COMMIT"));
    PQfinish(c);
    return rc;
}

typedef struct {
    redisContext *c;
    long long gen;
    vec ids; /* char[INV_ID_MAX] */
    bool short_of_memory;
} rkeys;

static void collect_id(void *ctx, const char *id, void *v)
{
    (void)v;
    rkeys *k = ctx;
    if (vec_grow(&k->ids))
        k->short_of_memory = true;
    else
        snprintf(vec_push(&k->ids), INV_ID_MAX, "%s", id);
}

static int diff_redis(const fs_common_config *cfg, audit_ctx *a, diff_ctx *d, char *why, size_t whylen)
{
    fs_err err = {0};
    redisContext *c = fs_redis_connect(cfg, 2000, &err);
    if (!c) {
        snprintf(why, whylen, "unreachable: %s", err.msg);
        return -1;
    }
    int rc = 1;
    redisReply *r = redisCommand(c, "GET %s", FS_RM_GEN);
    long long gen = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    if (!gen) {
        snprintf(why, whylen, "no generation is served (%s missing)", FS_RM_GEN);
        redisFree(c);
        return -1;
    }
    char key[FS_RM_KEY_MAX];
    r = redisCommand(c, "HGETALL %s", fs_rm_key(key, sizeof key, gen, FS_RM_OFFSETS, NULL));
    bool seen[2 * MAX_PARTITIONS] = {false};
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements && rc == 1; i += 2) {
        char *f = r->element[i]->str, *colon = strrchr(f, ':');
        if (!colon || *f == '_')
            continue;
        *colon = '\0';
        int st = offsets_state(a, f, atoi(colon + 1), atoll(r->element[i + 1]->str), seen);
        if (st) {
            snprintf(why, whylen, "%s at %s/%s: offset %s", st < 0 ? "behind" : "ahead", f, colon + 1,
                     r->element[i + 1]->str);
            rc = 0;
        }
    }
    freeReplyObject(r);
    if (rc == 1 && offsets_missing(a, seen, why, whylen))
        rc = 0;
    if (rc == 1) {
        /* every product: the set of ids, then the counters of each, pipelined */
        r = redisCommand(c, "ZRANGE %s 0 -1", fs_rm_key(key, sizeof key, gen, FS_RM_PRODUCTS, NULL));
        size_t np = r && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        for (size_t i = 0; i < np; i++)
            redisAppendCommand(c, "HMGET %s stock available reserved sold",
                               fs_rm_key(key, sizeof key, gen, FS_RM_PRODUCT, r->element[i]->str));
        for (size_t i = 0; i < np; i++) {
            redisReply *h = NULL;
            if (redisGetReply(c, (void **)&h) != REDIS_OK || !h || h->elements != 4) {
                freeReplyObject(h);
                continue;
            }
            long long x[4];
            for (int j = 0; j < 4; j++)
                x[j] = h->element[j]->type == REDIS_REPLY_STRING ? atoll(h->element[j]->str) : -1;
            product_diff(d, r->element[i]->str, x[0], x[1], x[2], x[3]);
            freeReplyObject(h);
        }
        freeReplyObject(r);
        /* every order the log knows, pipelined in chunks */
        rkeys k = {c, gen, {NULL, 0, 0, INV_ID_MAX}, false};
        fs_map_foreach(d->orders, collect_id, &k);
        if (k.short_of_memory) {
            snprintf(why, whylen, "out of memory listing %zu orders", fs_map_size(d->orders));
            rc = -1;
            k.ids.n = 0;
        }
        char (*ids)[INV_ID_MAX] = k.ids.v;
        for (size_t from = 0; from < k.ids.n; from += 1000) {
            size_t to = from + 1000 < k.ids.n ? from + 1000 : k.ids.n;
            for (size_t i = from; i < to; i++) {
                redisAppendCommand(c, "HGET %s status", fs_rm_key(key, sizeof key, gen, FS_RM_ORDER, ids[i]));
                redisAppendCommand(c, "LLEN %s", fs_rm_key(key, sizeof key, gen, FS_RM_HISTORY, ids[i]));
            }
            for (size_t i = from; i < to; i++) {
                redisReply *s = NULL, *n = NULL;
                redisGetReply(c, (void **)&s);
                redisGetReply(c, (void **)&n);
                if (s && s->type == REDIS_REPLY_STRING)
                    order_diff(d, ids[i], s->str, n && n->type == REDIS_REPLY_INTEGER ? n->integer : -1);
                freeReplyObject(s);
                freeReplyObject(n);
            }
        }
        free(k.ids.v);
        missing_ctx mc = {d, false};
        fs_map_foreach(d->orders, order_missing, &mc);
    }
    redisFree(c);
    return rc;
}

/* Diffs both read models; a store that cannot be compared is reported (and is a violation
 * when `strict`: asked for explicitly). */
static json_t *diff_read_models(const fs_common_config *cfg, audit_ctx *a, fs_map *products,
                                bool strict, long wait_ms)
{
    json_t *out = json_object();
    fs_map *orders = expected_orders(a);
    const char *stores[] = {"postgres", "redis"};
    long ttl = FS_RM_ENDED_TTL_DEFAULT;
    fs_err terr = {0};
    if (fs_env_int(FS_RM_ENDED_TTL_ENV, FS_RM_ENDED_TTL_DEFAULT, FS_RM_ENDED_TTL_MIN,
                   FS_RM_ENDED_TTL_MAX, &ttl, &terr))
        violation("readmodel", "", "", -1, -1, "%s", terr.msg);
    for (int i = 0; i < 2; i++) {
        diff_ctx d = {stores[i], products, orders, 0, 0, ttl};
        char why[512] = "";
        size_t before = nviolations;
        int rc;
        int64_t deadline = fs_mono_ms() + wait_ms;
        for (;;) { /* a projector still catching up with what was read: give it time */
            rc = i == 0 ? diff_pg(cfg, a, &d, why, sizeof why) : diff_redis(cfg, a, &d, why, sizeof why);
            if (rc != 0 || strncmp(why, "behind", 6) || fs_mono_ms() >= deadline)
                break;
            fprintf(stderr, "flashsale-audit: read model %s %s; waiting\n", stores[i], why);
            usleep(500000);
        }
        if (rc == 1) {
            printf("  read model %-8s: %llu rows compared, %llu ended orders expired, %zu difference(s)\n",
                   stores[i], (unsigned long long)d.compared, (unsigned long long)d.expired,
                   nviolations - before);
            json_object_set_new(out, stores[i],
                                json_pack("{s:b,s:I,s:I,s:I}", "compared", 1, "rows", (json_int_t)d.compared,
                                          "expired", (json_int_t)d.expired, "differences",
                                          (json_int_t)(nviolations - before)));
        } else {
            printf("  read model %-8s: not compared: %s\n", stores[i], why);
            if (strict)
                violation("readmodel", "", "", -1, -1, "%s not compared: %s", stores[i], why);
            json_object_set_new(out, stores[i], json_pack("{s:b,s:s}", "compared", 0, "why", why));
        }
    }
    fs_map_destroy_free(orders);
    return out;
}

/* ---- answers ----------------------------------------------------------------------------
 * Every answer the API gave (orders.answers) against the committed log. A decision answered
 * (from the processor's reply before its commit, or from the committed stream) must be the
 * committed decision of that order: same outcome, reason, payment deadline, product and
 * quantity. A sold-out answer from the API's view (no command sent) must name a product that
 * the committed log had already sold out when the answer was given. PENDING answers say
 * nothing to check. */
typedef struct {
    uint64_t compared, via_reply, view, pending, differences;
} answers_stats;

static void check_answers(audit_ctx *a, answers_stats *st)
{
    fs_map *decision = fs_map_new(4096), *commanded = fs_map_new(4096), *sold_out_at = fs_map_new(256);
    ev_rec *evs = a->evs.v;
    for (size_t i = 0; i < a->evs.n; i++) {
        inv_event *e = &evs[i].ev;
        if ((e->type == INV_EV_RESERVED || e->type == INV_EV_REJECTED) && e->item_count <= 1 &&
            !fs_map_get(decision, e->order_id))
            fs_map_put(decision, e->order_id, &evs[i]);
        if ((e->type == INV_EV_RESERVED || e->type == INV_EV_REJECTED) && e->available == 0) {
            int64_t *t = fs_map_get(sold_out_at, e->product_id);
            if (!t && (t = malloc(sizeof *t))) {
                *t = INT64_MAX;
                fs_map_put(sold_out_at, e->product_id, t);
            }
            if (t && e->occurred_at < *t) /* the command's time: a copied log keeps it */
                *t = e->occurred_at;
        }
    }
    cmd_rec *cmds = a->cmds.v;
    for (size_t i = 0; i < a->cmds.n; i++)
        if (cmds[i].ok && cmds[i].cmd.type == INV_CMD_RESERVE)
            fs_map_put(commanded, cmds[i].cmd.order_id, (void *)1);
    answer_rec *ans = a->answers.v;
    for (size_t i = 0; i < a->answers.n; i++) {
        answer_rec *r = &ans[i];
        if (!strcmp(r->status, "PENDING")) {
            st->pending++;
            continue;
        }
        if (!strcmp(r->source, "view")) {
            st->view++;
            int64_t *t = fs_map_get(sold_out_at, r->product_id);
            if (fs_map_get(commanded, r->order_id)) {
                st->differences++;
                violation("answers", r->order_id, r->product_id, r->partition, r->offset,
                          "answered SOLD_OUT from the view, yet a command was sent for the order");
            } else if (strcmp(r->reason, "SOLD_OUT") || !t || *t > r->answered_at) {
                st->differences++;
                violation("answers", r->order_id, r->product_id, r->partition, r->offset,
                          "answered %s %s without a command while the committed log had not sold the product out",
                          r->status, r->reason);
            }
            continue;
        }
        st->compared++;
        if (!strcmp(r->source, "reply"))
            st->via_reply++;
        ev_rec *d = fs_map_get(decision, r->order_id);
        const char *got = !d ? "" : d->ev.type == INV_EV_RESERVED ? "RESERVED" : "REJECTED";
        const char *why = !d || d->ev.type == INV_EV_RESERVED ? "" : inv_reason_name(d->ev.reason);
        int64_t pay_by = d && d->ev.type == INV_EV_RESERVED ? d->ev.pay_by : 0;
        if (!d)
            violation("answers", r->order_id, r->product_id, r->partition, r->offset,
                      "answered %s %s (%s) but no decision of the order was committed", r->status,
                      r->reason, r->source);
        else if (strcmp(got, r->status) || strcmp(why, r->reason) || pay_by != r->pay_by ||
                 strcmp(d->ev.product_id, r->product_id) || d->ev.quantity != r->quantity)
            violation("answers", r->order_id, r->product_id, r->partition, r->offset,
                      "answered %s %s pay_by %lld (%s), committed %s %s pay_by %lld at %d/%lld",
                      r->status, r->reason, (long long)r->pay_by, r->source, got, why,
                      (long long)pay_by, d->partition, (long long)d->offset);
        else
            continue;
        st->differences++;
    }
    fs_map_destroy(decision);
    fs_map_destroy(commanded);
    fs_map_destroy_free(sold_out_at);
}

int main(int argc, char **argv)
{
    const char *json_out = NULL, *prefix = "", *product = NULL;
    int64_t at = 0;
    long grace = 60000, wait_ms = 30000;
    int read_models = 1; /* 0 no, 1 when comparable, 2 required (--read-models) */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--read-models")) {
            read_models = 2;
            continue;
        }
        if (!strcmp(argv[i], "--no-read-models")) {
            read_models = 0;
            continue;
        }
        if (i + 1 >= argc)
            goto usage;
        if (!strcmp(argv[i], "--json"))
            json_out = argv[++i];
        else if (!strcmp(argv[i], "--topic-prefix"))
            prefix = argv[++i];
        else if (!strcmp(argv[i], "--product"))
            product = argv[++i];
        else if (!strcmp(argv[i], "--grace-ms"))
            grace = atol(argv[++i]);
        else if (!strcmp(argv[i], "--wait-ms"))
            wait_ms = atol(argv[++i]);
        else if (!strcmp(argv[i], "--at")) {
            if (fs_time_parse(argv[++i], &at)) {
                char *end;
                at = strtoll(argv[i], &end, 10);
                if (*end || at <= 0)
                    goto usage;
            }
        } else
            goto usage;
    }
    fs_log_init("audit", FS_LOG_WARN);
    fs_common_config cfg;
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    static audit_ctx a;
    a.codec = fs_codec_new(&err);
    if (!a.codec)
        fs_config_die(&err);
    a.at = at;
    a.cmds.size = sizeof(cmd_rec);
    a.evs.size = sizeof(ev_rec);
    a.orders.size = sizeof(ord_order);
    a.answers.size = sizeof(answer_rec);
    violations = json_array();
    char t_cmd[256], t_ev[256], t_ord[256];
    snprintf(t_cmd, sizeof t_cmd, "%s%s", prefix, FS_TOPIC_INVENTORY_COMMANDS);
    snprintf(t_ev, sizeof t_ev, "%s%s", prefix, FS_TOPIC_INVENTORY_EVENTS);
    snprintf(t_ord, sizeof t_ord, "%s%s", prefix, FS_TOPIC_ORDERS_EVENTS);
    /* answers first: every decision they name was committed before them, so reading the
     * decisions afterwards finds it */
    char t_ans[256];
    snprintf(t_ans, sizeof t_ans, "%s%s", prefix, FS_TOPIC_ORDERS_ANSWERS);
    bool have_answers = read_topic(&cfg, &a, t_ans, &err) == 0;
    if (!have_answers)
        fprintf(stderr, "flashsale-audit: %s not read (%s): answers not compared\n", t_ans, err.msg);
    if (read_topic(&cfg, &a, t_cmd, &err) || read_topic(&cfg, &a, t_ev, &err) ||
        read_topic(&cfg, &a, t_ord, &err)) {
        fprintf(stderr, "flashsale-audit: %s\n", err.msg);
        return 2;
    }
    uint64_t replayed = 0;
    check_replay(&a, &replayed);
    fs_map *products = fs_map_new(1024), *resv = fs_map_new(4096), *decided = fs_map_new(4096),
           *orders = fs_map_new(4096);
    /* the invariants walk events in log order per partition (already sorted) */
    check_invariants(&a, products, resv, decided);
    check_orders(&a, orders);
    leak_ctx lc = {orders, at ? at : fs_now_ms(), grace, 0};
    fs_map_foreach(resv, check_leak, &lc);
    answers_stats ast = {0};
    check_answers(&a, &ast);

    printf("flashsale-audit: %zu commands, %zu inventory events, %zu order snapshots%s\n",
           a.cmds.n, a.evs.n, a.orders.n, at ? " (up to --at)" : "");
    printf("  replay: %llu commands re-decided with the processor's rules\n",
           (unsigned long long)replayed);
    printf("  products %zu, order lines decided %zu, reservations %zu (%llu unsettled), orders %zu\n",
           fs_map_size(products), fs_map_size(decided), fs_map_size(resv),
           (unsigned long long)lc.unsettled, fs_map_size(orders));
    if (have_answers)
        printf("  answers: %llu decisions answered compared with the committed ones (%llu answered "
               "before the commit), %llu sold-out answers from the view, %llu pending: %llu "
               "difference(s)\n",
               (unsigned long long)ast.compared, (unsigned long long)ast.via_reply,
               (unsigned long long)ast.view, (unsigned long long)ast.pending,
               (unsigned long long)ast.differences);
    else
        printf("  answers: not compared (no %s topic)\n", t_ans);
    if (product) {
        prod_t *p = fs_map_get(products, product);
        char when[FS_TIME_STR_LEN];
        fs_time_format(at ? at : fs_now_ms(), when);
        if (p)
            printf("  product %s at %s: stock %lld, available %lld, reserved %lld, sold %lld\n",
                   product, when, (long long)p->stock, (long long)p->available,
                   (long long)p->reserved, (long long)p->sold);
        else
            printf("  product %s did not exist at %s\n", product, when);
    }
    json_t *rm = NULL;
    if (read_models == 2 || (read_models == 1 && !at && !*prefix))
        rm = diff_read_models(&cfg, &a, products, read_models == 2, wait_ms);
    else
        printf("  read models: not compared (%s)\n", read_models == 0 ? "--no-read-models"
                                                    : "the log was read up to --at or from a copy");
    printf("%s: %zu violation(s)\n", nviolations ? "FAILED" : "OK", nviolations);
    if (json_out) {
        json_t *rep = json_pack("{s:b,s:I,s:{s:I,s:I,s:I},s:I,s:o}", "ok", nviolations == 0,
                                "violation_count", (json_int_t)nviolations, "read", "commands",
                                (json_int_t)a.cmds.n, "inventory_events", (json_int_t)a.evs.n,
                                "order_snapshots", (json_int_t)a.orders.n, "replayed",
                                (json_int_t)replayed, "violations", violations);
        json_object_set_new(rep, "read_models", rm ? rm : json_null());
        json_object_set_new(rep, "answers",
                            have_answers ? json_pack("{s:I,s:I,s:I,s:I,s:I}", "compared", (json_int_t)ast.compared,
                                                     "before_commit", (json_int_t)ast.via_reply, "view",
                                                     (json_int_t)ast.view, "pending", (json_int_t)ast.pending,
                                                     "differences", (json_int_t)ast.differences)
                                         : json_null());
        rm = NULL;
        if (product) {
            prod_t *p = fs_map_get(products, product);
            json_object_set_new(rep, "product",
                                p ? json_pack("{s:s,s:I,s:I,s:I,s:I}", "product_id", product,
                                              "stock", (json_int_t)p->stock, "available",
                                              (json_int_t)p->available, "reserved",
                                              (json_int_t)p->reserved, "sold", (json_int_t)p->sold)
                                  : json_null());
        }
        if (json_dump_file(rep, json_out, JSON_INDENT(2)))
            fprintf(stderr, "flashsale-audit: cannot write %s\n", json_out);
        json_decref(rep);
    } else
        json_decref(violations);
    json_decref(rm);
    fs_map_destroy_free(products);
    fs_map_destroy_free(resv);
    fs_map_destroy(decided);
    fs_map_destroy_free(orders);
    free(a.cmds.v);
    free(a.evs.v);
    free(a.orders.v);
    free(a.answers.v);
    fs_codec_destroy((fs_codec *)a.codec);
    return nviolations ? 1 : 0;
usage:
    fprintf(stderr, "usage: flashsale-audit [--at TIME] [--product ID] [--json FILE] "
                    "[--topic-prefix P] [--grace-ms N]\n"
                    "                       [--read-models | --no-read-models] [--wait-ms N]\n");
    return 2;
}
