/* The order saga as one pure function:
 *
 *     ord_step(config, order or none, input) -> (new order, commands, events, notifications)
 *
 * No I/O, no clock, no randomness: time comes from the input (a command's requested_at, an
 * event's occurred_at, a timer's firing time), so the same inputs give the same outputs.
 * flashsale-orders reads a record, turns it into an ord_input, calls ord_step, writes what
 * it returns in its transaction, keeps the new order and arms its timer.
 *
 * Every step validates first and then acts: an input the order's state refuses yields a
 * rejection event (member commands) or nothing at all (late or repeated inputs), never
 * half of its effects. The status moves only along the transition table (order.h) and
 * each line only along the line-state table (ord_line_step_is_valid). When the order
 * changes, the last snapshot of the step is the new order itself, so rebuilding from the
 * log (the last snapshot of each order) gives back exactly what the step left. */
#ifndef FLASHSALE_SAGA_H
#define FLASHSALE_SAGA_H
#include "flashsale/inventory.h"
#include "flashsale/messages.h"
#include "flashsale/order.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int64_t day_ms;           /* shipping after PAID, delivery after SHIPPING */
    int64_t return_window_ms; /* after delivery */
    bool auto_pay;            /* pay right after the reservation (load tests, demos) */
    int32_t max_attempts;     /* payment attempts before compensation */
    int64_t ended_memory_ms;  /* how long an ended order is kept after its end (0: forever) */
} ord_saga_config;

/* What can happen to an order: the input table. */
typedef enum {
    ORD_IN_COMMAND,   /* a member's or an admin's command (orders.commands) */
    ORD_IN_INVENTORY, /* an inventory outcome naming the order (forwarded inventory.events) */
    ORD_IN_PAYMENT,   /* a payment or refund result (payments.events) */
    ORD_IN_TIMER,     /* the order's deadline came due */
    ORD_IN_KIND_COUNT
} ord_input_kind;

typedef struct {
    ord_input_kind kind;
    int64_t at; /* the input's time: requested_at / occurred_at / the timer's firing time */
    ord_command cmd;  /* ORD_IN_COMMAND */
    inv_event inv;    /* ORD_IN_INVENTORY */
    pay_event pay;    /* ORD_IN_PAYMENT */
    int64_t due;      /* ORD_IN_TIMER: the deadline the timer was armed for, */
    char timer_order[ORD_ID_MAX]; /* and its order */
} ord_input;

#define ORD_STEP_MAX_SNAPSHOTS 3
#define ORD_STEP_MAX_NOTES 2

typedef struct {
    /* the order after the step; changed = it must be kept (and its snapshot is the last of
     * snapshots[]); created = it did not exist before */
    ord_order order;
    bool changed, created;
    /* events for orders.events, in this order */
    int nsnapshots;
    ord_order snapshots[ORD_STEP_MAX_SNAPSHOTS];
    bool rejected;
    ord_rejection rejection;
    /* commands: to inventory.commands (key = product), to payments.commands (key = order) */
    int ninventory;
    inv_command inventory[ORD_MAX_LINES];
    bool has_payment;
    pay_command payment;
    /* notifications (kind + order id, status; the writer gives each its id) */
    int nnotes;
    fs_notification notes[ORD_STEP_MAX_NOTES];
    /* the input was refused by a table (logged by the caller); nothing else happened */
    const char *refused;
    ord_status refused_to; /* the status it would have moved to (ORD_STATUS_COUNT: none) */
} ord_step_result;

/* One step. order is NULL when the saga holds no order of that id. *out is filled (cleared
 * first). Never fails: what cannot be done is refused or rejected in *out. */
void ord_step(const ord_saga_config *cfg, const ord_order *order, const ord_input *in,
              ord_step_result *out);

/* When the saga may forget the order: the time (ms, by the saga's clock: the latest input
 * time it has read) from which nothing that can still arrive needs it, or 0 while it must
 * be kept.
 *  - An ended order (a terminal status) is kept for cfg->ended_memory_ms after its end (the
 *    time of its last snapshot): the confirmations of what its end released or restocked,
 *    the refund's result and a member's repeated command arrive within that.
 *  - A DELIVERED order ends with its closing snapshot, which its timer writes when its
 *    return window closes (ord_ended_at), then as above; it is kept until then, even past
 *    the close (a timer late after a rebuild still finds it). A DELIVERED snapshot written
 *    before the close was recorded in it (deadline 0) ends at delivered_at +
 *    return_window_ms.
 *  - An order with a line still PENDING (a checkout that failed before every line was
 *    decided) is kept: the line's decision must find the order, to be given back if it was
 *    a reservation.
 *  - Every other status is live: 0. So is everything when ended_memory_ms is 0. */
int64_t ord_forget_at(const ord_saga_config *cfg, const ord_order *o);

/* The refusal the owner's command (or an admin's completion of a return) gets from the saga
 * on an order that has ended with this status (a terminal one, or DELIVERED: the only
 * statuses ord_forget_at forgets), or NULL for a live status: what the API answers once the
 * saga has forgotten the order and says ORDER_NOT_FOUND of it. */
const char *ord_ended_refusal(ord_cmd_type type, ord_status status);

/* The order id an input is about ("" when none). */
const char *ord_input_order_id(const ord_input *in);

/* The line-state table: may a line move from one state to another? (A state to itself is
 * allowed where a confirmation arrives for what the saga already recorded: RELEASED.) */
bool ord_line_step_is_valid(line_state from, line_state to);

#endif
