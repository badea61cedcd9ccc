/* Fuzz harness: the order saga's step (domain/src/saga.c) over input sequences.
 *
 * The bytes pick a configuration (auto-pay, payment attempts) and then steps over four
 * orders: checkouts, the inventory's decisions and outcomes for lines in and out of range,
 * members' and admins' commands (also from another member), payment and refund results
 * for the current attempt or another, timers due or stale, the clock moving by milliseconds
 * or days. Values stay inside what the inventory guarantees (quantity <= INV_MAX_QUANTITY,
 * unit price <= INV_MAX_PRICE, at most ORD_MAX_LINES lines: saga.c relies on them for the
 * amount). Checks after every step, those of tests/unit/test_saga.c's check_step:
 * - a refused input changes nothing; an unchanged order is the order before;
 * - the status moves only along the transition table, lines along the line-state table;
 * - the order kept is the last snapshot, and reading that snapshot back through the codec
 *   gives the order (rebuild equals apply, also for the whole sequence at the end);
 * - an order ended unpaid holds no reservation; paying commits every reserved line;
 * - each inventory command names a line of the order once; releases leave it RELEASED;
 *   reservations only when the order is created; attempts never exceed the maximum;
 * and also: a reserved order's amount is the sum of its lines, and every command,
 * notification and rejection the step returns encodes (the saga can always write them). */
#include "fuzz.h"

#include "flashsale/inventory_codec.h"
#include "flashsale/saga.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY 86400000LL
#define ORDERS 4
#define MAX_STEPS 300

static fs_codec *codec;
static ord_saga_config rules;

/* ---- the invariants of one step (as tests/unit/test_saga.c) ------------------------------ */

static bool line_reachable(line_state from, line_state to)
{
    if (from == to || ord_line_step_is_valid(from, to))
        return true;
    for (int mid = 0; mid < LINE_STATE_COUNT; mid++) /* e.g. RESERVED then RELEASED at once */
        if (ord_line_step_is_valid(from, (line_state)mid) &&
            ord_line_step_is_valid((line_state)mid, to))
            return true;
    return false;
}

static void same_order(const ord_order *a, const ord_order *b)
{
    FZ_SAME_STR("order_id", a->order_id, b->order_id);
    FZ_SAME_STR("member_id", a->member_id, b->member_id);
    FZ_SAME_INT("status", a->status, b->status);
    FZ_SAME_INT("previous", a->previous, b->previous);
    FZ_SAME_STR("reason", a->reason, b->reason);
    FZ_SAME_INT("pay_by", a->pay_by, b->pay_by);
    FZ_SAME_INT("amount", a->amount, b->amount);
    FZ_SAME_INT("deadline", a->deadline, b->deadline);
    FZ_SAME_INT("delivered_at", a->delivered_at, b->delivered_at);
    FZ_SAME_INT("payment_attempts", a->payment_attempts, b->payment_attempts);
    FZ_SAME_INT("restock_on_return", a->restock_on_return, b->restock_on_return);
    FZ_SAME_INT("occurred_at", a->occurred_at, b->occurred_at);
    FZ_SAME_INT("nlines", a->nlines, b->nlines);
    for (int i = 0; i < a->nlines; i++) {
        FZ_SAME_STR("line product", a->lines[i].product_id, b->lines[i].product_id);
        FZ_SAME_INT("line quantity", a->lines[i].quantity, b->lines[i].quantity);
        FZ_SAME_INT("line unit price", a->lines[i].unit_price, b->lines[i].unit_price);
        FZ_SAME_INT("line state", a->lines[i].state, b->lines[i].state);
        FZ_SAME_STR("line reason", a->lines[i].reason, b->lines[i].reason);
    }
}

/* The order as a reader of orders.events rebuilds it: the snapshot through the codec. */
static void rebuild(const ord_order *snap, ord_order *out)
{
    fs_err err = {0};
    void *buf = NULL;
    size_t len = 0;
    const fs_schema *sc;
    avro_value_t v;
    if (ord_encode(codec, snap, &buf, &len, &err) || fs_codec_decode(codec, buf, len, &sc, &v, &err))
        fz_fail(__FILE__, __LINE__, "snapshot through the codec: %s", err.msg);
    if (ord_decode(&v, out, &err))
        fz_fail(__FILE__, __LINE__, "snapshot does not read back: %s", err.msg);
    avro_value_decref(&v);
    free(buf);
}

static void check_statuses(const ord_order *before, const ord_step_result *r)
{
    ord_status st = before ? before->status : ORD_PENDING;
    for (int i = 0; i < r->nsnapshots; i++) {
        const ord_order *s = &r->snapshots[i];
        if (s->previous == s->status && s->status == st)
            continue;
        if (!(i == 0 && !before && s->status == ORD_PENDING))
            FZ_CHECK(ord_transition_is_valid(st, s->status));
        FZ_SAME_INT("previous", s->previous, st);
        st = s->status;
    }
}

static void check_commands(const ord_order *before, const ord_step_result *r)
{
    ord_status now = r->order.status;
    if (now == ORD_REJECTED || now == ORD_EXPIRED || now == ORD_PAYMENT_FAILED ||
        (now == ORD_CANCELLED && r->order.previous == ORD_RESERVED))
        for (int i = 0; i < r->order.nlines; i++)
            FZ_CHECK(r->order.lines[i].state != LINE_RESERVED);
    if (now == ORD_PAID && (!before || before->status != ORD_PAID)) {
        int reserved = 0, commits = 0;
        for (int i = 0; i < r->order.nlines; i++)
            reserved += r->order.lines[i].state == LINE_RESERVED;
        for (int i = 0; i < r->ninventory; i++)
            commits += r->inventory[i].type == INV_CMD_COMMIT;
        FZ_SAME_INT("commits when paid", commits, reserved);
    }
    bool seen[ORD_MAX_LINES] = {false};
    for (int i = 0; i < r->ninventory; i++) {
        const inv_command *c = &r->inventory[i];
        FZ_CHECK(c->item_index >= 0 && c->item_index < r->order.nlines);
        FZ_CHECK(!seen[c->item_index]);
        seen[c->item_index] = true;
        FZ_SAME_STR("command's order", c->order_id, r->order.order_id);
        FZ_SAME_STR("command's product", c->product_id, r->order.lines[c->item_index].product_id);
        if (c->type == INV_CMD_RELEASE)
            FZ_SAME_INT("released line", r->order.lines[c->item_index].state, LINE_RELEASED);
        if (c->type == INV_CMD_RESERVE)
            FZ_CHECK(r->created);
    }
    if (now == ORD_RESERVED && (!before || before->status != ORD_RESERVED)) {
        int64_t amount = 0;
        for (int i = 0; i < r->order.nlines; i++)
            amount += r->order.lines[i].unit_price * r->order.lines[i].quantity;
        FZ_SAME_INT("amount", r->order.amount, amount);
    }
    FZ_CHECK(r->order.payment_attempts <= rules.max_attempts);
}

static void check_step(const ord_order *before, const ord_step_result *r)
{
    if (r->refused) { /* refused: nothing at all happened */
        FZ_CHECK(!r->changed && !r->has_payment && !r->rejected);
        FZ_SAME_INT("effects of a refused input", r->ninventory + r->nsnapshots + r->nnotes, 0);
    }
    if (!r->changed) {
        FZ_SAME_INT("snapshots", r->nsnapshots, 0);
        FZ_CHECK(!r->created);
        if (before)
            same_order(before, &r->order);
        return;
    }
    FZ_CHECK(r->created == (before == NULL));
    check_statuses(before, r);
    same_order(&r->order, &r->snapshots[r->nsnapshots - 1]);
    ord_order rebuilt;
    rebuild(&r->order, &rebuilt);
    same_order(&r->order, &rebuilt);
    for (int i = 0; before && i < before->nlines; i++)
        FZ_CHECK(line_reachable(before->lines[i].state, r->order.lines[i].state));
    check_commands(before, r);
}

/* What the step asks to write can be written. */
static void check_writable(const ord_step_result *r)
{
    fs_err err = {0};
    void *buf;
    size_t len;
    for (int i = 0; i < r->ninventory; i++) {
        inv_command back;
        if (inv_command_encode(codec, &r->inventory[i], &buf, &len, &err) ||
            inv_command_decode_bytes(codec, buf, len, &back, &err))
            fz_fail(__FILE__, __LINE__, "inventory command: %s", err.msg);
        free(buf);
        FZ_SAME_INT("type", back.type, r->inventory[i].type);
        FZ_SAME_STR("order", back.order_id, r->inventory[i].order_id);
    }
    if (r->has_payment) {
        if (pay_command_encode(codec, &r->payment, &buf, &len, &err))
            fz_fail(__FILE__, __LINE__, "payment command: %s", err.msg);
        free(buf);
    }
    for (int i = 0; i < r->nnotes; i++) {
        if (fs_notification_encode(codec, &r->notes[i], &buf, &len, &err))
            fz_fail(__FILE__, __LINE__, "notification: %s", err.msg);
        free(buf);
    }
    if (r->rejected) {
        if (ord_rejection_encode(codec, &r->rejection, &buf, &len, &err))
            fz_fail(__FILE__, __LINE__, "rejection: %s", err.msg);
        free(buf);
    }
}

/* ---- inputs from bytes ------------------------------------------------------------------ */

typedef struct {
    ord_order held[ORDERS];
    bool exists[ORDERS];
    ord_order logged[ORDERS]; /* the last snapshot written, as the log holds it */
    int64_t clock;
} world;

static int64_t price(fz_input *in)
{
    static const int64_t p[] = {1000, 0, 1, 9900, INV_MAX_PRICE};
    return p[fz_pick(in, 5)];
}

static int32_t quantity(fz_input *in)
{
    static const int32_t q[] = {1, 2, 3, INV_MAX_QUANTITY};
    return q[fz_pick(in, 4)];
}

static ord_input base(ord_input_kind kind, int64_t at)
{
    ord_input in;
    memset(&in, 0, sizeof in);
    in.kind = kind;
    in.at = at;
    return in;
}

static ord_input checkout(fz_input *b, const char *id, const char *member, int64_t at)
{
    ord_input in = base(ORD_IN_COMMAND, at);
    in.cmd.type = ORD_CMD_PLACE_CHECKOUT;
    snprintf(in.cmd.order_id, sizeof in.cmd.order_id, "%s", id);
    snprintf(in.cmd.member_id, sizeof in.cmd.member_id, "%s", member);
    in.cmd.requested_at = at;
    in.cmd.nitems = fz_pick(b, 8) ? 1 + (int)fz_pick(b, 3) : 1 + (int)fz_pick(b, ORD_MAX_LINES);
    for (int i = 0; i < in.cmd.nitems; i++) {
        snprintf(in.cmd.items[i].product_id, sizeof in.cmd.items[i].product_id, "p%d", i);
        in.cmd.items[i].quantity = quantity(b);
    }
    return in;
}

/* The inventory's answer to a line (reserved or rejected) or its outcome (committed...). */
static ord_input inventory_event(fz_input *b, const char *id, const char *member, int line,
                                 int lines, int64_t at)
{
    static const inv_event_type types[] = {INV_EV_RESERVED,  INV_EV_REJECTED,  INV_EV_COMMITTED,
                                           INV_EV_RELEASED,  INV_EV_RESTOCKED, INV_EV_CMD_REJECTED,
                                           INV_EV_RESERVED};
    ord_input in = base(ORD_IN_INVENTORY, at);
    in.inv.type = types[fz_pick(b, 7)];
    snprintf(in.inv.order_id, sizeof in.inv.order_id, "%s", id);
    snprintf(in.inv.member_id, sizeof in.inv.member_id, "%s", member);
    snprintf(in.inv.product_id, sizeof in.inv.product_id, "p%d", line);
    in.inv.quantity = quantity(b);
    in.inv.item_index = line;
    in.inv.item_count = lines;
    in.inv.unit_price = price(b);
    in.inv.pay_by = at + 600000;
    in.inv.reason = (inv_reason)fz_pick(b, INV_R_COUNT);
    in.inv.occurred_at = at;
    return in;
}

static ord_input member_command(fz_input *b, const char *id, const char *member, int64_t at)
{
    ord_input in = base(ORD_IN_COMMAND, at);
    in.cmd.type = (ord_cmd_type)(1 + fz_pick(b, ORD_CMD_COUNT - 1));
    snprintf(in.cmd.order_id, sizeof in.cmd.order_id, "%s", id);
    snprintf(in.cmd.member_id, sizeof in.cmd.member_id, "%s", fz_pick(b, 8) ? member : "other");
    snprintf(in.cmd.method, sizeof in.cmd.method, "%s", fz_bool(b) ? "CARD" : "");
    in.cmd.restock = fz_bool(b);
    in.cmd.requested_at = at;
    return in;
}

static ord_input payment_event(fz_input *b, const ord_order *o, const char *id, int64_t at)
{
    ord_input in = base(ORD_IN_PAYMENT, at);
    in.pay.type = (pay_event_type)fz_pick(b, PAY_EV_COUNT);
    snprintf(in.pay.order_id, sizeof in.pay.order_id, "%s", id);
    in.pay.attempt = (o ? o->payment_attempts : 1) + (int32_t)fz_pick(b, 3) - 1;
    in.pay.retriable = fz_bool(b);
    snprintf(in.pay.reason, sizeof in.pay.reason, "DECLINED");
    in.pay.occurred_at = at;
    return in;
}

static ord_input timer(fz_input *b, world *w, const ord_order *o, const char *id)
{
    ord_input in = base(ORD_IN_TIMER, w->clock);
    snprintf(in.timer_order, sizeof in.timer_order, "%s", id);
    in.due = o ? o->deadline : 0;
    if (fz_pick(b, 4) == 0)
        in.due -= 1; /* stale */
    else if (in.due > w->clock) /* the timer fires when due */
        w->clock = in.due;
    in.at = w->clock;
    return in;
}

static ord_input input_of(fz_input *b, world *w, int k)
{
    static const int64_t ticks[] = {1, 1000, 60000, 3600000, DAY / 4, DAY, 8 * DAY};
    char id[16], member[16];
    snprintf(id, sizeof id, "o%d", k);
    snprintf(member, sizeof member, "m%d", k % 3);
    const ord_order *o = w->exists[k] ? &w->held[k] : NULL;
    int lines = o ? o->nlines : 1 + (int)fz_pick(b, 3);
    int line = (int)fz_pick(b, (uint32_t)lines + 2) - 1; /* -1 and lines: out of range */
    w->clock += ticks[fz_pick(b, 7)];
    switch (fz_pick(b, 6)) {
    case 0: return checkout(b, id, member, w->clock);
    case 1: return inventory_event(b, id, member, line, lines, w->clock);
    case 2: return member_command(b, id, member, w->clock);
    case 3: return payment_event(b, o, id, w->clock);
    case 4: return timer(b, w, o, id);
    default: { /* what the world would send next: the decision of a pending line */
        ord_input in = inventory_event(b, id, member, line < 0 ? 0 : line, lines, w->clock);
        in.inv.type = fz_pick(b, 4) ? INV_EV_RESERVED : INV_EV_REJECTED;
        return in;
    }
    }
}

static ord_step_result res; /* large: kept off the stack */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    codec = fz_codec_new();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static world w;
    fz_input b = fz_input_of(data, size);
    memset(&w, 0, sizeof w);
    w.clock = 1000;
    rules = (ord_saga_config){.day_ms = DAY, .return_window_ms = 7 * DAY,
                              .auto_pay = fz_bool(&b), .max_attempts = 1 + (int32_t)fz_pick(&b, 4)};
    for (int i = 0; i < MAX_STEPS && fz_more(&b); i++) {
        int k = (int)fz_pick(&b, ORDERS);
        ord_input in = input_of(&b, &w, k);
        const ord_order *before = w.exists[k] ? &w.held[k] : NULL;
        ord_order copy;
        if (before)
            copy = *before;
        ord_step(&rules, before, &in, &res);
        if (before)
            same_order(&copy, before); /* the step reads the order, never writes it */
        check_step(before ? &copy : NULL, &res);
        check_writable(&res);
        if (res.changed) {
            w.held[k] = res.order;
            w.exists[k] = true;
            rebuild(&res.snapshots[res.nsnapshots - 1], &w.logged[k]);
        }
    }
    for (int k = 0; k < ORDERS; k++) /* rebuild equals apply: the log's last snapshots */
        if (w.exists[k])
            same_order(&w.held[k], &w.logged[k]);
    return 0;
}
