/* The order saga's step; see flashsale/saga.h. */
#include "flashsale/saga.h"

#include <stdio.h>
#include <string.h>

/* no overflow in an order's amount: every reserved line has quantity <= INV_MAX_QUANTITY and
 * unit price <= INV_MAX_PRICE (the inventory refuses others; inventory.h) */
_Static_assert(INT64_MAX / ORD_MAX_LINES / INV_MAX_QUANTITY >= INV_MAX_PRICE,
               "an order amount could overflow int64");

#define L(from, to) [from][to] = true
static const bool line_table[LINE_STATE_COUNT][LINE_STATE_COUNT] = {
    L(LINE_PENDING, LINE_RESERVED),    L(LINE_PENDING, LINE_REJECTED),
    L(LINE_RESERVED, LINE_RELEASED),   L(LINE_RESERVED, LINE_COMMITTED),
    L(LINE_RELEASED, LINE_RELEASED), /* the inventory confirms a release the saga asked for */
    L(LINE_COMMITTED, LINE_RESTOCKED), /* a cancelled or returned paid unit back in stock */
};
#undef L

bool ord_line_step_is_valid(line_state from, line_state to)
{
    return (unsigned)from < LINE_STATE_COUNT && (unsigned)to < LINE_STATE_COUNT &&
           line_table[from][to];
}

const char *ord_input_order_id(const ord_input *in)
{
    switch (in->kind) {
    case ORD_IN_COMMAND: return in->cmd.order_id;
    case ORD_IN_INVENTORY: return in->inv.order_id;
    case ORD_IN_PAYMENT: return in->pay.order_id;
    case ORD_IN_TIMER: return in->timer_order;
    default: return "";
    }
}

/* ---- effects: each appends to the result --------------------------------------------- */

typedef struct {
    const ord_saga_config *cfg;
    ord_order *o; /* = &out->order */
    ord_step_result *out;
    int64_t at;
} step;

static void snapshot(step *s)
{
    if (s->out->nsnapshots < ORD_STEP_MAX_SNAPSHOTS)
        s->out->snapshots[s->out->nsnapshots++] = *s->o;
    else /* cannot happen: the longest step writes two; keep the last one right anyway */
        s->out->snapshots[ORD_STEP_MAX_SNAPSHOTS - 1] = *s->o;
}

/* A snapshot that changes no status (a line's progress, or a delivered order's closing
 * snapshot): previous = status. */
static void line_update(step *s)
{
    s->o->previous = s->o->status;
    s->o->occurred_at = s->at;
    snapshot(s);
}

/* A DELIVERED order's return window closes at its deadline; a snapshot written before the
 * deadline was recorded in it has none, and the setting gives the close. */
static int64_t return_window_end(const ord_saga_config *cfg, const ord_order *o)
{
    return o->deadline > 0 ? o->deadline : o->delivered_at + cfg->return_window_ms;
}

/* Moves the order; the caller has checked the table (check_transition). */
static void transition(step *s, ord_status to, const char *reason, int64_t deadline)
{
    s->o->previous = s->o->status;
    s->o->status = to;
    snprintf(s->o->reason, sizeof s->o->reason, "%s", reason ? reason : "");
    s->o->occurred_at = s->at;
    s->o->deadline = deadline;
    snapshot(s);
}

static bool check_transition(step *s, ord_status to)
{
    if (ord_transition_is_valid(s->o->status, to))
        return true;
    s->out->refused = "illegal order transition";
    s->out->refused_to = to;
    return false;
}

static void note(step *s, const char *kind)
{
    if (s->out->nnotes >= ORD_STEP_MAX_NOTES)
        return; /* cannot happen: a step notifies at most once */
    fs_notification *n = &s->out->notes[s->out->nnotes++];
    memset(n, 0, sizeof *n);
    snprintf(n->member_id, sizeof n->member_id, "%s", s->o->member_id);
    snprintf(n->kind, sizeof n->kind, "%s", kind);
    fs_notification_param(n, "order_id", s->o->order_id);
    fs_notification_param(n, "status", ord_status_name(s->o->status));
    n->occurred_at = s->o->occurred_at;
}

static void inventory(step *s, inv_cmd_type type, int line, const char *reason)
{
    if (s->out->ninventory >= ORD_MAX_LINES)
        return; /* cannot happen: one command per line and step */
    inv_command *c = &s->out->inventory[s->out->ninventory++];
    memset(c, 0, sizeof *c);
    c->type = type;
    snprintf(c->product_id, sizeof c->product_id, "%s", s->o->lines[line].product_id);
    snprintf(c->order_id, sizeof c->order_id, "%s", s->o->order_id);
    snprintf(c->member_id, sizeof c->member_id, "%s", s->o->member_id);
    snprintf(c->actor_id, sizeof c->actor_id, "saga");
    snprintf(c->reason, sizeof c->reason, "%s", reason ? reason : "");
    c->quantity = s->o->lines[line].quantity;
    c->item_index = line;
    c->item_count = s->o->nlines;
    c->requested_at = s->at;
    c->offset = -1;
}

static void payment(step *s, pay_cmd_type type, const char *method_or_reason)
{
    pay_command *c = &s->out->payment;
    memset(c, 0, sizeof *c);
    s->out->has_payment = true;
    c->type = type;
    snprintf(c->order_id, sizeof c->order_id, "%s", s->o->order_id);
    snprintf(c->member_id, sizeof c->member_id, "%s", s->o->member_id);
    c->amount = s->o->amount;
    if (type == PAY_CMD_REQUEST_PAYMENT)
        snprintf(c->method, sizeof c->method, "%s", method_or_reason);
    else
        snprintf(c->reason, sizeof c->reason, "%s", method_or_reason);
    c->attempt = s->o->payment_attempts;
    c->requested_at = s->at;
}

static void reject(step *s, const ord_command *cmd, const char *code, bool has_order)
{
    ord_rejection *r = &s->out->rejection;
    memset(r, 0, sizeof *r);
    s->out->rejected = true;
    snprintf(r->order_id, sizeof r->order_id, "%s", cmd->order_id);
    snprintf(r->member_id, sizeof r->member_id, "%s", cmd->member_id);
    snprintf(r->command_type, sizeof r->command_type, "%s", ord_cmd_name(cmd->type));
    snprintf(r->code, sizeof r->code, "%s", code);
    snprintf(r->status, sizeof r->status, "%s", has_order ? ord_status_name(s->o->status) : "");
    r->occurred_at = s->at;
}

/* Releases every reserved line (compensation). */
static void release_lines(step *s, const char *reason)
{
    for (int i = 0; i < s->o->nlines; i++)
        if (s->o->lines[i].state == LINE_RESERVED) {
            inventory(s, INV_CMD_RELEASE, i, reason);
            s->o->lines[i].state = LINE_RELEASED;
        }
}

static void restock_lines(step *s)
{
    for (int i = 0; i < s->o->nlines; i++)
        inventory(s, INV_CMD_RESTOCK, i, NULL);
}

/* A payment attempt: RESERVED or PAYING -> PAYING. */
static void pay(step *s, const char *method)
{
    if (!check_transition(s, ORD_PAYING))
        return;
    s->o->payment_attempts++;
    payment(s, PAY_CMD_REQUEST_PAYMENT, method);
    transition(s, ORD_PAYING, "", 0);
}

/* ---- inputs --------------------------------------------------------------------------- */

static void on_line_decision(step *s, const inv_event *e, int li)
{
    ord_order *o = s->o;
    ord_line *ln = &o->lines[li];
    if (e->type == INV_EV_REJECTED) {
        if (o->status == ORD_PENDING && !check_transition(s, ORD_REJECTED))
            return;
        ln->state = LINE_REJECTED;
        snprintf(ln->reason, sizeof ln->reason, "%s", inv_reason_name(e->reason));
        if (o->status != ORD_PENDING)
            return line_update(s);
        char why[48];
        if (o->nlines > 1)
            snprintf(why, sizeof why, "ITEM_%d_%s", li, inv_reason_name(e->reason));
        else
            snprintf(why, sizeof why, "%s", inv_reason_name(e->reason));
        release_lines(s, "CHECKOUT_FAILED");
        return transition(s, ORD_REJECTED, why, 0);
    }
    ln->state = LINE_RESERVED;
    ln->unit_price = e->unit_price;
    if (!o->pay_by || e->pay_by < o->pay_by)
        o->pay_by = e->pay_by;
    if (o->status != ORD_PENDING) { /* the checkout failed meanwhile: give it back */
        inventory(s, INV_CMD_RELEASE, li, "CHECKOUT_FAILED");
        ln->state = LINE_RELEASED;
        return line_update(s);
    }
    for (int i = 0; i < o->nlines; i++)
        if (o->lines[i].state != LINE_RESERVED)
            return line_update(s); /* lines still pending */
    o->amount = 0;
    for (int i = 0; i < o->nlines; i++)
        o->amount += o->lines[i].unit_price * o->lines[i].quantity;
    transition(s, ORD_RESERVED, "", o->pay_by);
    note(s, "ORDER_RESERVED");
    if (s->cfg->auto_pay)
        pay(s, "AUTO");
}

static void on_inventory(step *s, const inv_event *e, bool existed)
{
    ord_order *o = s->o;
    int li = e->item_index;
    if (e->type == INV_EV_RESERVED || e->type == INV_EV_REJECTED) {
        if (!existed) { /* a single-item order begins here */
            if (e->item_count > 1)
                return; /* a line of a checkout we do not know: nothing to do */
            snprintf(o->order_id, sizeof o->order_id, "%s", e->order_id);
            snprintf(o->member_id, sizeof o->member_id, "%s", e->member_id);
            o->restock_on_return = true;
            o->nlines = 1;
            snprintf(o->lines[0].product_id, sizeof o->lines[0].product_id, "%s", e->product_id);
            o->lines[0].quantity = e->quantity;
            li = 0;
            s->out->created = true;
        }
        if (li < 0 || li >= o->nlines || o->lines[li].state != LINE_PENDING)
            return; /* unknown line, or a decision already recorded */
        return on_line_decision(s, e, li);
    }
    if (!existed || li < 0 || li >= o->nlines)
        return;
    if (e->type == INV_EV_CMD_REJECTED) {
        /* the inventory refused our commit/release: a unit's fate is unclear */
        char why[48];
        snprintf(why, sizeof why, "INVENTORY_%s", inv_reason_name(e->reason));
        if (ord_transition_is_valid(o->status, ORD_NEEDS_ATTENTION))
            return transition(s, ORD_NEEDS_ATTENTION, why, 0);
        return line_update(s); /* already an operator's case, or closed: keep the record */
    }
    line_state to = e->type == INV_EV_COMMITTED   ? LINE_COMMITTED
                    : e->type == INV_EV_RELEASED  ? LINE_RELEASED
                    : e->type == INV_EV_RESTOCKED ? LINE_RESTOCKED
                                                  : LINE_STATE_COUNT;
    if (to == LINE_STATE_COUNT)
        return;
    if (!ord_line_step_is_valid(o->lines[li].state, to)) {
        s->out->refused = "illegal line transition";
        return;
    }
    o->lines[li].state = to;
    line_update(s);
}

static void on_checkout(step *s, const ord_command *c, bool existed)
{
    ord_order *o = s->o;
    if (existed)
        return; /* already placed */
    snprintf(o->order_id, sizeof o->order_id, "%s", c->order_id);
    snprintf(o->member_id, sizeof o->member_id, "%s", c->member_id);
    o->restock_on_return = true;
    for (int i = 0; i < c->nitems && i < ORD_MAX_LINES; i++) {
        ord_line *ln = &o->lines[o->nlines++];
        snprintf(ln->product_id, sizeof ln->product_id, "%s", c->items[i].product_id);
        ln->quantity = c->items[i].quantity;
    }
    o->status = o->previous = ORD_PENDING;
    o->occurred_at = s->at;
    s->out->created = true;
    for (int i = 0; i < o->nlines; i++)
        inventory(s, INV_CMD_RESERVE, i, NULL);
    snapshot(s);
}

static const char *cancel_refusal(ord_status st)
{
    if (st == ORD_PAYING)
        return "PAYMENT_IN_PROGRESS";
    if (st == ORD_SHIPPING || st == ORD_DELIVERED || st == ORD_RETURN_REQUESTED)
        return "ORDER_ALREADY_SHIPPED";
    return "ORDER_CLOSED";
}

static const char *pay_refusal(ord_status st)
{
    return st == ORD_PAYING ? "PAYMENT_IN_PROGRESS"
           : st == ORD_PAID ? "ORDER_ALREADY_PAID"
                            : "ORDER_NOT_RESERVED";
}

static void on_command(step *s, const ord_command *c, bool existed)
{
    ord_order *o = s->o;
    if (c->type == ORD_CMD_PLACE_CHECKOUT)
        return on_checkout(s, c, existed);
    bool admin = c->type == ORD_CMD_COMPLETE_RETURN;
    if (!existed || (!admin && strcmp(o->member_id, c->member_id)))
        return reject(s, c, "ORDER_NOT_FOUND", false);
    switch (c->type) {
    case ORD_CMD_PAY:
        if (o->status != ORD_RESERVED)
            return reject(s, c, pay_refusal(o->status), true);
        return pay(s, c->method[0] ? c->method : "CARD");
    case ORD_CMD_CANCEL:
        if (o->status == ORD_RESERVED) {
            if (!check_transition(s, ORD_CANCELLED))
                return;
            release_lines(s, "CANCELLED");
            return transition(s, ORD_CANCELLED, "CANCELLED_BY_MEMBER", 0);
        }
        if (o->status == ORD_PAID) {
            if (!check_transition(s, ORD_CANCELLED))
                return;
            restock_lines(s);
            payment(s, PAY_CMD_REQUEST_REFUND, "CANCELLED");
            return transition(s, ORD_CANCELLED, "CANCELLED_AFTER_PAYMENT", 0);
        }
        return reject(s, c, cancel_refusal(o->status), true);
    case ORD_CMD_REQUEST_RETURN:
        if (o->status != ORD_DELIVERED)
            return reject(s, c, "ORDER_NOT_DELIVERED", true);
        /* (closed once the closing snapshot is written, even for a request stamped just
         * before the close that the saga reads after it: that snapshot is the order's end) */
        if (ord_window_closed(o) || s->at > return_window_end(s->cfg, o))
            return reject(s, c, "RETURN_WINDOW_CLOSED", true);
        if (!check_transition(s, ORD_RETURN_REQUESTED))
            return;
        return transition(s, ORD_RETURN_REQUESTED, "", 0);
    case ORD_CMD_COMPLETE_RETURN:
        if (o->status != ORD_RETURN_REQUESTED)
            return reject(s, c, "RETURN_NOT_REQUESTED", true);
        if (!check_transition(s, ORD_RETURNED))
            return;
        o->restock_on_return = c->restock;
        if (o->restock_on_return)
            restock_lines(s);
        payment(s, PAY_CMD_REQUEST_REFUND, "RETURNED");
        return transition(s, ORD_RETURNED, "", 0);
    default: return;
    }
}

static void on_payment(step *s, const pay_event *e, bool existed)
{
    ord_order *o = s->o;
    if (!existed)
        return;
    switch (e->type) {
    case PAY_EV_PAYMENT_SUCCEEDED:
        if (o->status != ORD_PAYING || e->attempt != o->payment_attempts)
            return; /* a late or repeated answer */
        if (!check_transition(s, ORD_PAID))
            return;
        for (int i = 0; i < o->nlines; i++)
            if (o->lines[i].state == LINE_RESERVED)
                inventory(s, INV_CMD_COMMIT, i, NULL);
        transition(s, ORD_PAID, "", s->at + s->cfg->day_ms);
        return note(s, "ORDER_PAID");
    case PAY_EV_PAYMENT_FAILED:
        if (o->status != ORD_PAYING || e->attempt != o->payment_attempts)
            return;
        if (e->retriable && o->payment_attempts < s->cfg->max_attempts)
            return pay(s, "RETRY"); /* bounded retry before compensation */
        if (!check_transition(s, ORD_PAYMENT_FAILED))
            return;
        release_lines(s, "PAYMENT_FAILED");
        transition(s, ORD_PAYMENT_FAILED, e->reason, 0);
        return note(s, "PAYMENT_FAILED");
    case PAY_EV_REFUND_SUCCEEDED: return note(s, "REFUNDED");
    case PAY_EV_REFUND_FAILED:
        if (!check_transition(s, ORD_NEEDS_ATTENTION))
            return;
        return transition(s, ORD_NEEDS_ATTENTION, "REFUND_FAILED", 0);
    default: return;
    }
}

static void on_timer(step *s, int64_t due, bool existed)
{
    ord_order *o = s->o;
    if (!existed || o->deadline <= 0 || o->deadline != due)
        return; /* stale: the order moved on (0: no timer) */
    switch (o->status) {
    case ORD_RESERVED:
        if (!check_transition(s, ORD_EXPIRED))
            return;
        release_lines(s, "EXPIRED");
        transition(s, ORD_EXPIRED, "DEADLINE_PASSED", 0);
        return note(s, "ORDER_EXPIRED");
    case ORD_PAID:
        if (!check_transition(s, ORD_SHIPPING))
            return;
        transition(s, ORD_SHIPPING, "", s->at + s->cfg->day_ms);
        return note(s, "ORDER_SHIPPED");
    case ORD_SHIPPING:
        if (!check_transition(s, ORD_DELIVERED))
            return;
        o->delivered_at = s->at;
        /* the window's close goes into the snapshot: the order's own, whatever the setting
         * later; its timer writes the closing snapshot, the end the read models expire the
         * order by (ord_ended_at) */
        transition(s, ORD_DELIVERED, "", s->at + s->cfg->return_window_ms);
        return note(s, "ORDER_DELIVERED");
    case ORD_DELIVERED: /* the return window closes: the order's last snapshot */
        snprintf(o->reason, sizeof o->reason, "%s", ORD_REASON_WINDOW_CLOSED);
        o->deadline = 0;
        return line_update(s);
    default: return;
    }
}

void ord_step(const ord_saga_config *cfg, const ord_order *order, const ord_input *in,
              ord_step_result *out)
{
    out->changed = out->created = out->rejected = out->has_payment = false;
    out->nsnapshots = out->ninventory = out->nnotes = 0;
    out->refused = NULL;
    out->refused_to = ORD_STATUS_COUNT;
    if (order)
        out->order = *order;
    else
        memset(&out->order, 0, sizeof out->order);
    step s = {cfg, &out->order, out, in->at};
    bool existed = order != NULL;
    switch (in->kind) {
    case ORD_IN_COMMAND: on_command(&s, &in->cmd, existed); break;
    case ORD_IN_INVENTORY: on_inventory(&s, &in->inv, existed); break;
    case ORD_IN_PAYMENT: on_payment(&s, &in->pay, existed); break;
    case ORD_IN_TIMER: on_timer(&s, in->due, existed); break;
    default: break;
    }
    out->changed = out->nsnapshots > 0;
    if (!out->changed) { /* nothing to keep: the order stays as it was */
        out->created = false;
        if (order)
            out->order = *order;
    }
}

int64_t ord_forget_at(const ord_saga_config *cfg, const ord_order *o)
{
    if (cfg->ended_memory_ms <= 0)
        return 0;
    int64_t ended;
    if (ord_status_is_terminal(o->status))
        ended = o->occurred_at;
    else if (ord_window_closed(o))
        ended = o->occurred_at;
    else if (o->status == ORD_DELIVERED && o->deadline <= 0) /* (from before the close was
                                                               * recorded: never closed) */
        ended = return_window_end(cfg, o);
    else
        return 0; /* live, or DELIVERED until its closing snapshot */
    for (int i = 0; i < o->nlines; i++)
        if (o->lines[i].state == LINE_PENDING)
            return 0;
    return ended + cfg->ended_memory_ms;
}

const char *ord_ended_refusal(ord_cmd_type type, ord_status status)
{
    if (!ord_status_is_terminal(status) && status != ORD_DELIVERED)
        return NULL;
    switch (type) {
    case ORD_CMD_PAY: return pay_refusal(status);
    case ORD_CMD_CANCEL: return cancel_refusal(status);
    case ORD_CMD_REQUEST_RETURN:
        return status == ORD_DELIVERED ? "RETURN_WINDOW_CLOSED" : "ORDER_NOT_DELIVERED";
    case ORD_CMD_COMPLETE_RETURN: return "RETURN_NOT_REQUESTED";
    default: return "ORDER_CLOSED";
    }
}
