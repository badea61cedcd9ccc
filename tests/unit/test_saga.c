/* The order saga's step (domain/src/saga.c): scenarios, then random input sequences
 * against the invariants, and rebuild (the last snapshot, through the codec) equals apply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "flashsale/saga.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY 86400000LL
static const ord_saga_config rules = {.day_ms = DAY, .return_window_ms = 7 * DAY,
                                      .auto_pay = false, .max_attempts = 3};
static fs_codec *codec;

static int setup(void **state)
{
    (void)state;
    fs_err err = {0};
    codec = fs_codec_new(&err);
    return codec ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fs_codec_destroy(codec);
    return 0;
}

/* ---- input builders ------------------------------------------------------------------- */

static ord_input command(ord_cmd_type t, const char *order, const char *member, int64_t at)
{
    ord_input in;
    memset(&in, 0, sizeof in);
    in.kind = ORD_IN_COMMAND;
    in.at = at;
    in.cmd.type = t;
    snprintf(in.cmd.order_id, sizeof in.cmd.order_id, "%s", order);
    snprintf(in.cmd.member_id, sizeof in.cmd.member_id, "%s", member);
    in.cmd.requested_at = at;
    in.cmd.restock = true;
    return in;
}

static ord_input decision(const char *order, const char *member, const char *product, int line,
                          int lines, bool reserved, int64_t at)
{
    ord_input in;
    memset(&in, 0, sizeof in);
    in.kind = ORD_IN_INVENTORY;
    in.at = at;
    in.inv.type = reserved ? INV_EV_RESERVED : INV_EV_REJECTED;
    snprintf(in.inv.order_id, sizeof in.inv.order_id, "%s", order);
    snprintf(in.inv.member_id, sizeof in.inv.member_id, "%s", member);
    snprintf(in.inv.product_id, sizeof in.inv.product_id, "%s", product);
    in.inv.quantity = 1;
    in.inv.item_index = line;
    in.inv.item_count = lines;
    in.inv.unit_price = 1000;
    in.inv.pay_by = at + 600000;
    in.inv.reason = INV_R_SOLD_OUT;
    in.inv.occurred_at = at;
    return in;
}

static ord_input outcome(const char *order, inv_event_type t, int line, int64_t at)
{
    ord_input in = decision(order, "m", "p", line, 1, true, at);
    in.inv.type = t;
    return in;
}

static ord_input payment(const char *order, pay_event_type t, int attempt, bool retriable,
                         int64_t at)
{
    ord_input in;
    memset(&in, 0, sizeof in);
    in.kind = ORD_IN_PAYMENT;
    in.at = at;
    in.pay.type = t;
    snprintf(in.pay.order_id, sizeof in.pay.order_id, "%s", order);
    in.pay.attempt = attempt;
    in.pay.retriable = retriable;
    snprintf(in.pay.reason, sizeof in.pay.reason, "DECLINED");
    in.pay.occurred_at = at;
    return in;
}

static ord_input timer(const ord_order *o, int64_t at)
{
    ord_input in;
    memset(&in, 0, sizeof in);
    in.kind = ORD_IN_TIMER;
    in.at = at;
    in.due = o->deadline;
    snprintf(in.timer_order, sizeof in.timer_order, "%s", o->order_id);
    return in;
}

/* ---- the invariants of one step ------------------------------------------------------- */

static bool line_reachable(line_state from, line_state to)
{
    if (from == to)
        return true;
    if (ord_line_step_is_valid(from, to))
        return true;
    for (int mid = 0; mid < LINE_STATE_COUNT; mid++) /* e.g. RESERVED then RELEASED at once */
        if (ord_line_step_is_valid(from, (line_state)mid) &&
            ord_line_step_is_valid((line_state)mid, to))
            return true;
    return false;
}

static void assert_same_order(const ord_order *a, const ord_order *b)
{
    assert_string_equal(a->order_id, b->order_id);
    assert_string_equal(a->member_id, b->member_id);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->previous, b->previous);
    assert_string_equal(a->reason, b->reason);
    assert_int_equal(a->pay_by, b->pay_by);
    assert_int_equal(a->amount, b->amount);
    assert_int_equal(a->deadline, b->deadline);
    assert_int_equal(a->delivered_at, b->delivered_at);
    assert_int_equal(a->payment_attempts, b->payment_attempts);
    assert_int_equal(a->restock_on_return, b->restock_on_return);
    assert_int_equal(a->occurred_at, b->occurred_at);
    assert_int_equal(a->nlines, b->nlines);
    for (int i = 0; i < a->nlines; i++) {
        assert_string_equal(a->lines[i].product_id, b->lines[i].product_id);
        assert_int_equal(a->lines[i].quantity, b->lines[i].quantity);
        assert_int_equal(a->lines[i].unit_price, b->lines[i].unit_price);
        assert_int_equal(a->lines[i].state, b->lines[i].state);
        assert_string_equal(a->lines[i].reason, b->lines[i].reason);
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
    assert_int_equal(ord_encode(codec, snap, &buf, &len, &err), 0);
    assert_int_equal(fs_codec_decode(codec, buf, len, &sc, &v, &err), 0);
    assert_int_equal(ord_decode(&v, out, &err), 0);
    avro_value_decref(&v);
    free(buf);
}

static void check_step(const ord_order *before, const ord_input *in, const ord_step_result *r)
{
    (void)in;
    if (r->refused) { /* refused: nothing at all happened */
        assert_false(r->changed);
        assert_int_equal(r->ninventory + r->nsnapshots + r->nnotes, 0);
        assert_false(r->has_payment);
        assert_false(r->rejected);
    }
    if (!r->changed) {
        assert_int_equal(r->nsnapshots, 0);
        assert_false(r->created);
        if (before)
            assert_same_order(before, &r->order);
        return;
    }
    assert_true(r->created == (before == NULL));
    /* the status moves only along the table; a line update keeps it */
    ord_status st = before ? before->status : ORD_PENDING;
    for (int i = 0; i < r->nsnapshots; i++) {
        const ord_order *s = &r->snapshots[i];
        if (s->previous == s->status && s->status == st)
            continue;
        if (!(i == 0 && !before && s->status == ORD_PENDING))
            assert_true(ord_transition_is_valid(st, s->status));
        assert_int_equal(s->previous, st);
        st = s->status;
    }
    /* the order kept is the last snapshot; rebuilding it from the log gives it back */
    assert_same_order(&r->order, &r->snapshots[r->nsnapshots - 1]);
    ord_order rebuilt;
    rebuild(&r->order, &rebuilt);
    assert_same_order(&r->order, &rebuilt);
    /* lines move only along the line-state table */
    for (int i = 0; before && i < before->nlines; i++)
        assert_true(line_reachable(before->lines[i].state, r->order.lines[i].state));
    /* an order that has ended unpaid holds no reservation */
    ord_status now = r->order.status;
    if (now == ORD_REJECTED || now == ORD_EXPIRED || now == ORD_PAYMENT_FAILED ||
        (now == ORD_CANCELLED && r->order.previous == ORD_RESERVED))
        for (int i = 0; i < r->order.nlines; i++)
            assert_int_not_equal(r->order.lines[i].state, LINE_RESERVED);
    /* paid: every reserved line is committed in the same step */
    if (now == ORD_PAID && (!before || before->status != ORD_PAID)) {
        int reserved = 0;
        for (int i = 0; i < r->order.nlines; i++)
            reserved += r->order.lines[i].state == LINE_RESERVED;
        int commits = 0;
        for (int i = 0; i < r->ninventory; i++)
            commits += r->inventory[i].type == INV_CMD_COMMIT;
        assert_int_equal(commits, reserved);
    }
    /* each command names a line of the order, at most once per line and step */
    bool seen[ORD_MAX_LINES] = {false};
    for (int i = 0; i < r->ninventory; i++) {
        const inv_command *c = &r->inventory[i];
        assert_true(c->item_index >= 0 && c->item_index < r->order.nlines);
        assert_false(seen[c->item_index]);
        seen[c->item_index] = true;
        assert_string_equal(c->order_id, r->order.order_id);
        assert_string_equal(c->product_id, r->order.lines[c->item_index].product_id);
        if (c->type == INV_CMD_RELEASE)
            assert_int_equal(r->order.lines[c->item_index].state, LINE_RELEASED);
        if (c->type == INV_CMD_RESERVE)
            assert_true(r->created);
    }
    assert_true(r->order.payment_attempts <= rules.max_attempts);
}

static ord_step_result res; /* large: kept off the stack */

static const ord_order *run(const ord_order *before, const ord_input *in, ord_order *held)
{
    ord_step(&rules, before, in, &res);
    check_step(before, in, &res);
    if (res.changed)
        *held = res.order;
    return res.changed || before ? held : NULL;
}

/* ---- scenarios ------------------------------------------------------------------------ */

static void test_single_item_happy_path(void **state)
{
    (void)state;
    ord_order o;
    ord_input in = decision("o1", "m1", "p1", 0, 1, true, 1000);
    const ord_order *h = run(NULL, &in, &o);
    assert_non_null(h);
    assert_int_equal(o.status, ORD_RESERVED);
    assert_int_equal(o.amount, 1000);
    assert_int_equal(o.deadline, 601000);
    assert_int_equal(res.nnotes, 1);
    assert_string_equal(res.notes[0].kind, "ORDER_RESERVED");
    assert_string_equal(fs_notification_get(&res.notes[0], "status"), "RESERVED");

    in = command(ORD_CMD_PAY, "o1", "m1", 2000);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_PAYING);
    assert_true(res.has_payment);
    assert_int_equal(res.payment.type, PAY_CMD_REQUEST_PAYMENT);
    assert_string_equal(res.payment.method, "CARD");
    assert_int_equal(res.payment.attempt, 1);
    assert_int_equal(res.payment.amount, 1000);

    in = payment("o1", PAY_EV_PAYMENT_SUCCEEDED, 1, false, 3000);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_PAID);
    assert_int_equal(res.ninventory, 1);
    assert_int_equal(res.inventory[0].type, INV_CMD_COMMIT);
    assert_int_equal(o.deadline, 3000 + DAY);

    in = outcome("o1", INV_EV_COMMITTED, 0, 3500);
    run(&o, &in, &o);
    assert_int_equal(o.lines[0].state, LINE_COMMITTED);
    assert_int_equal(o.status, ORD_PAID);
    assert_int_equal(o.previous, ORD_PAID); /* a line update */

    in = timer(&o, 3000 + DAY);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_SHIPPING);
    in = timer(&o, 3000 + 2 * DAY);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_DELIVERED);
    assert_int_equal(o.delivered_at, 3000 + 2 * DAY);

    in = command(ORD_CMD_REQUEST_RETURN, "o1", "m1", 4 * DAY);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_RETURN_REQUESTED);
    in = command(ORD_CMD_COMPLETE_RETURN, "o1", "admin", 5 * DAY);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_RETURNED);
    assert_int_equal(res.ninventory, 1);
    assert_int_equal(res.inventory[0].type, INV_CMD_RESTOCK);
    assert_int_equal(res.payment.type, PAY_CMD_REQUEST_REFUND);
    assert_string_equal(res.payment.reason, "RETURNED");
}

static void test_refusals(void **state)
{
    (void)state;
    ord_order o;
    ord_input in = decision("o2", "m1", "p1", 0, 1, true, 1000);
    run(NULL, &in, &o);
    /* another member's command: as if there were no such order */
    in = command(ORD_CMD_PAY, "o2", "intruder", 1500);
    run(&o, &in, &o);
    assert_true(res.rejected);
    assert_string_equal(res.rejection.code, "ORDER_NOT_FOUND");
    assert_string_equal(res.rejection.status, "");
    assert_false(res.changed);
    /* a return before delivery */
    in = command(ORD_CMD_REQUEST_RETURN, "o2", "m1", 1600);
    run(&o, &in, &o);
    assert_string_equal(res.rejection.code, "ORDER_NOT_DELIVERED");
    assert_string_equal(res.rejection.status, "RESERVED");
    /* a late payment answer for an attempt that never was */
    in = payment("o2", PAY_EV_PAYMENT_SUCCEEDED, 7, false, 1700);
    run(&o, &in, &o);
    assert_false(res.changed);
    assert_int_equal(res.ninventory, 0);
    /* a stale timer */
    in = timer(&o, 5000);
    in.due = o.deadline - 1;
    run(&o, &in, &o);
    assert_false(res.changed);
    /* the deadline: released and expired, once */
    in = timer(&o, o.deadline);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_EXPIRED);
    assert_int_equal(res.ninventory, 1);
    assert_int_equal(res.inventory[0].type, INV_CMD_RELEASE);
    assert_string_equal(res.inventory[0].reason, "EXPIRED");
    in = command(ORD_CMD_CANCEL, "o2", "m1", 700000);
    run(&o, &in, &o);
    assert_string_equal(res.rejection.code, "ORDER_CLOSED");
    /* a commit confirmation for a released line breaks the line table: refused */
    in = outcome("o2", INV_EV_COMMITTED, 0, 700001);
    run(&o, &in, &o);
    assert_non_null(res.refused);
    assert_false(res.changed);
}

static void test_checkout_and_compensation(void **state)
{
    (void)state;
    ord_order o;
    ord_input in = command(ORD_CMD_PLACE_CHECKOUT, "o3", "m1", 1000);
    in.cmd.nitems = 3;
    for (int i = 0; i < 3; i++) {
        snprintf(in.cmd.items[i].product_id, sizeof in.cmd.items[i].product_id, "p%d", i);
        in.cmd.items[i].quantity = 1;
    }
    run(NULL, &in, &o);
    assert_int_equal(o.status, ORD_PENDING);
    assert_int_equal(res.ninventory, 3);
    /* repeated: nothing */
    run(&o, &in, &o);
    assert_false(res.changed);
    assert_int_equal(res.ninventory, 0);

    in = decision("o3", "m1", "p0", 0, 3, true, 1100);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_PENDING);
    assert_int_equal(o.lines[0].state, LINE_RESERVED);
    in = decision("o3", "m1", "p1", 1, 3, false, 1200);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_REJECTED);
    assert_string_equal(o.reason, "ITEM_1_SOLD_OUT");
    assert_int_equal(res.ninventory, 1); /* line 0 given back */
    assert_int_equal(res.inventory[0].item_index, 0);
    /* line 2 reserved after the checkout failed: given back at once */
    in = decision("o3", "m1", "p2", 2, 3, true, 1300);
    run(&o, &in, &o);
    assert_int_equal(o.lines[2].state, LINE_RELEASED);
    assert_int_equal(res.inventory[0].type, INV_CMD_RELEASE);
    assert_string_equal(res.inventory[0].reason, "CHECKOUT_FAILED");
}

/* When an order may be forgotten: never while live, its end + the memory once ended, a
 * DELIVERED order's end being its return window's, a checkout with an undecided line kept
 * for the inventory's deduplication window; never with no memory set. */
static void test_forget_at(void **state)
{
    (void)state;
    ord_saga_config cfg = rules;
    cfg.ended_memory_ms = 60000;
    ord_order o;
    ord_input in = decision("f1", "m1", "p1", 0, 1, true, 1000);
    run(NULL, &in, &o);
    assert_int_equal(ord_forget_at(&cfg, &o), 0); /* RESERVED: live */
    in = command(ORD_CMD_CANCEL, "f1", "m1", 5000);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_CANCELLED);
    assert_int_equal(ord_forget_at(&cfg, &o), 5000 + 60000);
    /* the confirmation of the release is a snapshot with the release's time */
    in = outcome("f1", INV_EV_RELEASED, 0, 5000);
    run(&o, &in, &o);
    assert_true(res.changed);
    assert_int_equal(ord_forget_at(&cfg, &o), 5000 + 60000);
    ord_saga_config never = cfg;
    never.ended_memory_ms = 0;
    assert_int_equal(ord_forget_at(&never, &o), 0);

    /* paid, shipped, delivered: live until the return window has passed */
    in = decision("f2", "m1", "p1", 0, 1, true, 1000);
    run(NULL, &in, &o);
    in = command(ORD_CMD_PAY, "f2", "m1", 2000);
    run(&o, &in, &o);
    assert_int_equal(ord_forget_at(&cfg, &o), 0);
    in = payment("f2", PAY_EV_PAYMENT_SUCCEEDED, 1, false, 3000);
    run(&o, &in, &o);
    assert_int_equal(ord_forget_at(&cfg, &o), 0);
    in = timer(&o, o.deadline);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_SHIPPING);
    assert_int_equal(ord_forget_at(&cfg, &o), 0);
    in = timer(&o, o.deadline);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_DELIVERED);
    /* the window's close is written into the order; live for the read models until the
     * closing snapshot */
    assert_int_equal(o.deadline, o.delivered_at + 7 * DAY);
    assert_int_equal(ord_ended_at(&o), 0);
    assert_int_equal(ord_forget_at(&cfg, &o), 0); /* kept until its closing snapshot */
    /* a return is judged by the order's own close, whatever the setting says later */
    ord_saga_config shorter = cfg;
    shorter.return_window_ms = DAY;
    ord_order delivered = o;
    in = command(ORD_CMD_REQUEST_RETURN, "f2", "m1", o.delivered_at + 3 * DAY);
    ord_step(&shorter, &delivered, &in, &res);
    assert_int_equal(res.order.status, ORD_RETURN_REQUESTED);
    in = command(ORD_CMD_REQUEST_RETURN, "f2", "m1", o.delivered_at + 7 * DAY + 1);
    ord_step(&cfg, &delivered, &in, &res);
    assert_true(res.rejected);
    assert_string_equal(res.rejection.code, "RETURN_WINDOW_CLOSED");
    assert_int_equal(ord_forget_at(&shorter, &delivered), 0);
    /* a DELIVERED snapshot from before the close was recorded: live for the read models (no
     * end known to them), the setting's window for the saga */
    delivered.deadline = 0;
    assert_int_equal(ord_ended_at(&delivered), 0);
    assert_int_equal(ord_forget_at(&shorter, &delivered), o.delivered_at + DAY + 60000);
    in = command(ORD_CMD_REQUEST_RETURN, "f2", "m1", o.delivered_at + DAY + 1);
    ord_step(&shorter, &delivered, &in, &res);
    assert_true(res.rejected);
    assert_string_equal(res.rejection.code, "RETURN_WINDOW_CLOSED");
    /* the timer at the close writes the closing snapshot: the order's end */
    in = timer(&o, o.deadline);
    ord_step(&cfg, &o, &in, &res);
    assert_true(res.changed);
    assert_int_equal(res.nsnapshots, 1);
    ord_order closed = res.order;
    assert_int_equal(closed.status, ORD_DELIVERED);
    assert_int_equal(closed.previous, ORD_DELIVERED);
    assert_string_equal(closed.reason, ORD_REASON_WINDOW_CLOSED);
    assert_int_equal(closed.deadline, 0);
    assert_int_equal(closed.occurred_at, o.deadline);
    assert_int_equal(ord_ended_at(&closed), o.deadline);
    assert_int_equal(ord_forget_at(&cfg, &closed), o.deadline + 60000);
    in = timer(&o, o.deadline); /* stale: the deadline is gone */
    ord_step(&cfg, &closed, &in, &res);
    assert_false(res.changed);
    in = timer(&closed, o.deadline); /* (due 0: no timer) */
    ord_step(&cfg, &closed, &in, &res);
    assert_false(res.changed);
    /* a request stamped before the close but read after the closing snapshot: refused */
    in = command(ORD_CMD_REQUEST_RETURN, "f2", "m1", o.deadline - 1);
    ord_step(&cfg, &closed, &in, &res);
    assert_true(res.rejected);
    assert_string_equal(res.rejection.code, "RETURN_WINDOW_CLOSED");
    in = command(ORD_CMD_REQUEST_RETURN, "f2", "m1", o.delivered_at + DAY);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_RETURN_REQUESTED);
    assert_int_equal(ord_forget_at(&cfg, &o), 0); /* a return under way is live */

    /* a checkout that failed with a line still undecided: kept, so that a line reserved late
     * still finds it and is given back (the decision carries the checkout's time) */
    in = command(ORD_CMD_PLACE_CHECKOUT, "f3", "m1", 1000);
    in.cmd.nitems = 2;
    for (int i = 0; i < 2; i++) {
        snprintf(in.cmd.items[i].product_id, sizeof in.cmd.items[i].product_id, "p%d", i);
        in.cmd.items[i].quantity = 1;
    }
    run(NULL, &in, &o);
    in = decision("f3", "m1", "p0", 0, 2, false, 1100);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_REJECTED);
    assert_int_equal(o.lines[1].state, LINE_PENDING);
    assert_int_equal(ord_forget_at(&cfg, &o), 0);
    in = decision("f3", "m1", "p1", 1, 2, true, 1000);
    run(&o, &in, &o);
    assert_int_equal(o.lines[1].state, LINE_RELEASED);
    assert_int_equal(ord_forget_at(&cfg, &o), 1000 + 60000); /* every line settled */
}

/* What the API answers for an order the saga has forgotten is what the saga said while it
 * held it: every command on an order in every ended status. */
static void test_ended_refusal(void **state)
{
    (void)state;
    ord_saga_config cfg = rules;
    cfg.ended_memory_ms = 1;
    const ord_cmd_type cmds[] = {ORD_CMD_PAY, ORD_CMD_CANCEL, ORD_CMD_REQUEST_RETURN,
                                 ORD_CMD_COMPLETE_RETURN};
    int checked = 0;
    for (int st = 0; st < ORD_STATUS_COUNT; st++) {
        ord_order o;
        memset(&o, 0, sizeof o);
        snprintf(o.order_id, sizeof o.order_id, "e1");
        snprintf(o.member_id, sizeof o.member_id, "m1");
        o.status = (ord_status)st;
        o.nlines = 1;
        o.lines[0].state = LINE_RELEASED;
        o.delivered_at = 1000;
        o.occurred_at = 1000;
        if (ord_forget_at(&cfg, &o) == 0) { /* live: never forgotten, no ended refusal */
            assert_null(ord_ended_refusal(ORD_CMD_CANCEL, o.status));
            continue;
        }
        for (size_t k = 0; k < sizeof cmds / sizeof *cmds; k++) {
            /* after the return window, when a DELIVERED order may be forgotten */
            ord_input in = command(cmds[k], "e1", "m1", 1000 + rules.return_window_ms + 1);
            ord_step(&cfg, &o, &in, &res);
            assert_true(res.rejected);
            assert_false(res.changed);
            assert_string_equal(res.rejection.code, ord_ended_refusal(cmds[k], o.status));
            checked++;
        }
    }
    assert_int_equal(checked, 4 * 6); /* five terminal statuses and DELIVERED */
}

static void test_payment_retries(void **state)
{
    (void)state;
    ord_saga_config auto_rules = rules;
    auto_rules.auto_pay = true;
    ord_order o;
    ord_input in = decision("o4", "m1", "p1", 0, 1, true, 1000);
    ord_step(&auto_rules, NULL, &in, &res);
    check_step(NULL, &in, &res);
    o = res.order;
    assert_int_equal(o.status, ORD_PAYING); /* reserved, then paying: two snapshots */
    assert_int_equal(res.nsnapshots, 2);
    assert_string_equal(res.payment.method, "AUTO");
    for (int attempt = 1; attempt < rules.max_attempts; attempt++) {
        in = payment("o4", PAY_EV_PAYMENT_FAILED, attempt, true, 2000 + attempt);
        run(&o, &in, &o);
        assert_int_equal(o.status, ORD_PAYING);
        assert_int_equal(res.payment.attempt, attempt + 1);
        assert_string_equal(res.payment.method, "RETRY");
    }
    in = payment("o4", PAY_EV_PAYMENT_FAILED, rules.max_attempts, true, 3000);
    run(&o, &in, &o);
    assert_int_equal(o.status, ORD_PAYMENT_FAILED);
    assert_string_equal(o.reason, "DECLINED");
    assert_int_equal(res.inventory[0].type, INV_CMD_RELEASE);
    assert_string_equal(res.notes[0].kind, "PAYMENT_FAILED");
}

/* ---- random sequences ----------------------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static uint32_t pick(uint32_t n)
{
    return next() % n;
}

#define ORDERS 6

typedef struct {
    ord_order held[ORDERS];
    bool exists[ORDERS];
    ord_order logged[ORDERS]; /* the last snapshot written, as the log holds it */
    int64_t clock;
} world;

/* An input for order k: mostly what the world would send next, sometimes anything. */
static ord_input random_input(world *w, int k)
{
    char id[16], member[16], product[16];
    snprintf(id, sizeof id, "o%d", k);
    snprintf(member, sizeof member, "m%d", k % 3);
    const ord_order *o = w->exists[k] ? &w->held[k] : NULL;
    int lines = o ? o->nlines : 1 + (int)pick(3);
    int line = (int)pick((uint32_t)lines + 1) - (pick(10) == 0); /* now and then out of range */
    snprintf(product, sizeof product, "p%d", line);
    w->clock += 1 + pick(DAY / 4);
    int64_t at = w->clock;
    switch (pick(12)) {
    case 0: {
        ord_input in = command(ORD_CMD_PLACE_CHECKOUT, id, member, at);
        in.cmd.nitems = lines;
        for (int i = 0; i < lines; i++) {
            snprintf(in.cmd.items[i].product_id, sizeof in.cmd.items[i].product_id, "p%d", i);
            in.cmd.items[i].quantity = 1 + (int)pick(3);
        }
        return in;
    }
    case 1:
    case 2: return decision(id, member, product, line, lines, pick(3) != 0, at);
    case 3: return command((ord_cmd_type)(1 + pick(4)), id, pick(8) ? member : "other", at);
    case 4: {
        static const inv_event_type t[] = {INV_EV_COMMITTED, INV_EV_RELEASED, INV_EV_RESTOCKED,
                                           INV_EV_CMD_REJECTED};
        return outcome(id, t[pick(4)], line, at);
    }
    case 5:
    case 6: {
        int attempt = o ? o->payment_attempts + (pick(6) == 0) : 1;
        return payment(id, (pay_event_type)pick(PAY_EV_COUNT), attempt, pick(2), at);
    }
    case 7:
    case 8:
        if (o && o->deadline) {
            w->clock = o->deadline > w->clock ? o->deadline : w->clock;
            return timer(o, w->clock);
        }
        return command(ORD_CMD_PAY, id, member, at);
    default: return command(ORD_CMD_PAY, id, member, at);
    }
}

static void test_random_sequences(void **state)
{
    (void)state;
    int steps = 0, changed = 0, ended = 0;
    for (int seq = 0; seq < 150; seq++) {
        world w;
        memset(&w, 0, sizeof w);
        w.clock = 1000;
        ord_saga_config r = rules;
        r.auto_pay = pick(2);
        for (int i = 0; i < 120; i++) {
            int k = (int)pick(ORDERS);
            ord_input in = random_input(&w, k);
            const ord_order *before = w.exists[k] ? &w.held[k] : NULL;
            ord_order copy;
            if (before)
                copy = *before;
            ord_step(&r, before, &in, &res);
            check_step(before ? &copy : NULL, &in, &res);
            steps++;
            if (res.changed) {
                changed++;
                w.held[k] = res.order;
                w.exists[k] = true;
                rebuild(&res.snapshots[res.nsnapshots - 1], &w.logged[k]);
            }
        }
        /* rebuild equals apply: what the log holds of each order is the order held */
        for (int k = 0; k < ORDERS; k++)
            if (w.exists[k]) {
                assert_same_order(&w.held[k], &w.logged[k]);
                ended += ord_status_is_terminal(w.held[k].status);
            }
    }
    /* the generator reaches the lifecycle, not only refusals */
    assert_true(changed > steps / 10);
    assert_true(ended > 0);
    print_message("%d steps, %d changed an order, %d orders ended\n", steps, changed, ended);
}

/* ---- the typed messages through their codecs ------------------------------------------ */

static void decode(const void *buf, size_t len, const char *type, avro_value_t *v)
{
    fs_err err = {0};
    const fs_schema *sc;
    assert_int_equal(fs_codec_decode(codec, buf, len, &sc, v, &err), 0);
    assert_string_equal(fs_schema_name(sc), type);
}

static void test_message_codecs(void **state)
{
    (void)state;
    fs_err err = {0};
    void *buf;
    size_t len;
    avro_value_t v;
    /* every order command */
    for (int t = 0; t < ORD_CMD_COUNT; t++) {
        ord_input in = command((ord_cmd_type)t, "o9", "m9", 1234);
        in.cmd.nitems = 2;
        strcpy(in.cmd.items[0].product_id, "p0");
        in.cmd.items[0].quantity = 2;
        strcpy(in.cmd.items[1].product_id, "p1");
        in.cmd.items[1].quantity = 1;
        strcpy(in.cmd.method, "CARD");
        strcpy(in.cmd.idempotency_key, "k-1");
        in.cmd.restock = false;
        assert_int_equal(ord_command_encode(codec, &in.cmd, &buf, &len, &err), 0);
        decode(buf, len, ord_cmd_name((ord_cmd_type)t), &v);
        ord_command d;
        assert_int_equal(ord_command_decode(&v, ord_cmd_name((ord_cmd_type)t), &d, &err), 0);
        avro_value_decref(&v);
        free(buf);
        assert_int_equal(d.type, t);
        assert_string_equal(d.order_id, "o9");
        assert_string_equal(d.member_id, "m9");
        assert_int_equal(d.requested_at, 1234);
        if (t == ORD_CMD_PLACE_CHECKOUT) {
            assert_int_equal(d.nitems, 2);
            assert_string_equal(d.items[1].product_id, "p1");
            assert_int_equal(d.items[0].quantity, 2);
            assert_string_equal(d.idempotency_key, "k-1");
        }
        if (t == ORD_CMD_PAY)
            assert_string_equal(d.method, "CARD");
        if (t == ORD_CMD_COMPLETE_RETURN)
            assert_false(d.restock);
    }
    assert_int_equal(ord_cmd_parse("PayOrder"), ORD_CMD_PAY);
    assert_int_equal(ord_cmd_parse("StockReserved"), -1);
    /* payment events and commands */
    for (int t = 0; t < PAY_EV_COUNT; t++) {
        ord_input in = payment("o9", (pay_event_type)t, 2, true, 99);
        in.pay.amount = 500;
        strcpy(in.pay.member_id, "m9");
        strcpy(in.pay.payment_id, "pay-1");
        assert_int_equal(pay_event_encode(codec, &in.pay, &buf, &len, &err), 0);
        decode(buf, len, pay_event_name((pay_event_type)t), &v);
        pay_event d;
        assert_int_equal(pay_event_decode(&v, pay_event_name((pay_event_type)t), &d, &err), 0);
        avro_value_decref(&v);
        free(buf);
        assert_int_equal(d.type, t);
        assert_int_equal(d.amount, 500);
        if (t == PAY_EV_PAYMENT_FAILED) {
            assert_true(d.retriable);
            assert_int_equal(d.attempt, 2);
            assert_string_equal(d.reason, "DECLINED");
        }
    }
    pay_command pc = {.type = PAY_CMD_REQUEST_PAYMENT, .order_id = "o9", .member_id = "m9",
                      .amount = 7, .method = "AUTO", .attempt = 3, .requested_at = 5};
    assert_int_equal(pay_command_encode(codec, &pc, &buf, &len, &err), 0);
    decode(buf, len, "RequestPayment", &v);
    pay_command pd;
    assert_int_equal(pay_command_decode(&v, "RequestPayment", &pd, &err), 0);
    avro_value_decref(&v);
    free(buf);
    assert_int_equal(pd.attempt, 3);
    assert_string_equal(pd.method, "AUTO");
    /* a notification with parameters, and one without an address */
    fs_notification n;
    memset(&n, 0, sizeof n);
    strcpy(n.notification_id, "n-1");
    strcpy(n.member_id, "m9");
    strcpy(n.kind, "ORDER_PAID");
    assert_int_equal(fs_notification_param(&n, "order_id", "o9"), 0);
    n.occurred_at = 77;
    assert_int_equal(fs_notification_encode(codec, &n, &buf, &len, &err), 0);
    decode(buf, len, "NotificationRequested", &v);
    fs_notification nd;
    assert_int_equal(fs_notification_decode(&v, &nd, &err), 0);
    avro_value_decref(&v);
    free(buf);
    assert_string_equal(nd.email, "");
    assert_string_equal(fs_notification_get(&nd, "order_id"), "o9");
    assert_null(fs_notification_get(&nd, "status"));
    /* a notification for the outbox, with a fresh id */
    const char *params[] = {"code", "123456", NULL};
    assert_int_equal(fs_notification_new_bytes(codec, "m9", NULL, "VERIFY_EMAIL", params, 5, &buf, &len, &err), 0);
    decode(buf, len, "NotificationRequested", &v);
    assert_int_equal(fs_notification_decode(&v, &nd, &err), 0);
    avro_value_decref(&v);
    free(buf);
    assert_int_equal(strlen(nd.notification_id), 36);
    assert_string_equal(fs_notification_get(&nd, "code"), "123456");
    /* member events */
    mem_event me = {.type = MEM_EV_UPDATED, .member_id = "m9", .nfields = 2, .occurred_at = 8};
    strcpy(me.fields[0], "name");
    strcpy(me.fields[1], "email");
    assert_int_equal(mem_event_encode(codec, &me, &buf, &len, &err), 0);
    decode(buf, len, "MemberUpdated", &v);
    mem_event md;
    assert_int_equal(mem_event_decode(&v, "MemberUpdated", &md, &err), 0);
    avro_value_decref(&v);
    free(buf);
    assert_int_equal(md.nfields, 2);
    assert_string_equal(md.fields[1], "email");
    me = (mem_event){.type = MEM_EV_REGISTERED, .member_id = "m9", .role = "member", .occurred_at = 9};
    assert_int_equal(mem_event_encode(codec, &me, &buf, &len, &err), 0);
    decode(buf, len, "MemberRegistered", &v);
    assert_int_equal(mem_event_decode(&v, "MemberRegistered", &md, &err), 0);
    avro_value_decref(&v);
    free(buf);
    assert_string_equal(md.role, "member");
    /* a record of another type is not taken for this one */
    assert_int_equal(ord_command_encode(codec, &(ord_command){.type = ORD_CMD_CANCEL,
                                                              .order_id = "o9",
                                                              .member_id = "m9"},
                                        &buf, &len, &err),
                     0);
    decode(buf, len, "CancelOrder", &v);
    pay_event wrong;
    assert_int_not_equal(pay_event_decode(&v, "CancelOrder", &wrong, &err), 0);
    assert_int_equal(err.cls, FS_ERR_INVALID);
    avro_value_decref(&v);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_item_happy_path),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_checkout_and_compensation),
        cmocka_unit_test(test_payment_retries),
        cmocka_unit_test(test_forget_at),
        cmocka_unit_test(test_ended_refusal),
        cmocka_unit_test(test_random_sequences),
        cmocka_unit_test(test_message_codecs),
    };
    return cmocka_run_group_tests_name("saga", tests, setup, teardown);
}
