/* The order lifecycle: states, the transition table, and the order record the saga keeps.
 *
 *   PENDING ─▶ RESERVED ─▶ PAYING ─▶ PAID ─▶ SHIPPING ─▶ DELIVERED ─▶ RETURN_REQUESTED ─▶ RETURNED
 *      │          │           │        │
 *      ▼          ├▶ EXPIRED  ├▶ PAYMENT_FAILED, NEEDS_ATTENTION
 *   REJECTED      └▶ CANCELLED ◀───────┘ (cancel before shipping)
 *
 * PENDING is a multi-item checkout waiting for its lines' decisions. Terminal: REJECTED,
 * PAYMENT_FAILED, EXPIRED, CANCELLED, RETURNED, and DELIVERED once the return window has
 * closed. NEEDS_ATTENTION: a step kept failing (e.g. a refund), for an operator.
 *
 * An order is event-derived: every change is written to orders.events as a full snapshot
 * (OrderStatusChanged), and the saga's state is the last snapshot of each order. */
#ifndef FLASHSALE_ORDER_H
#define FLASHSALE_ORDER_H
#include "fs/codec.h"

#include <stdbool.h>
#include <stdint.h>

#define ORD_ID_MAX 64
#define ORD_MAX_LINES 16

/* Same order as the symbols of flashsale.orders.OrderStatus. */
typedef enum {
    ORD_PENDING,
    ORD_RESERVED,
    ORD_PAID,
    ORD_SHIPPING,
    ORD_DELIVERED,
    ORD_RETURN_REQUESTED,
    ORD_RETURNED,
    ORD_REJECTED,
    ORD_PAYMENT_FAILED,
    ORD_EXPIRED,
    ORD_CANCELLED,
    ORD_NEEDS_ATTENTION,
    ORD_PAYING,
    ORD_STATUS_COUNT
} ord_status;

typedef enum { LINE_PENDING, LINE_RESERVED, LINE_REJECTED, LINE_RELEASED, LINE_COMMITTED, LINE_RESTOCKED, LINE_STATE_COUNT } line_state;

const char *ord_status_name(ord_status s);
int ord_status_parse(const char *name); /* -1 if unknown */
const char *line_state_name(line_state s);
/* The transition table: is from -> to a legal step of the lifecycle? */
bool ord_transition_is_valid(ord_status from, ord_status to);
bool ord_status_is_terminal(ord_status s);

typedef struct {
    char product_id[ORD_ID_MAX];
    int32_t quantity;
    int64_t unit_price;
    line_state state;
    char reason[32];
} ord_line;

typedef struct {
    /* event-derived (written in every OrderStatusChanged) */
    char order_id[ORD_ID_MAX];
    char member_id[ORD_ID_MAX];
    ord_status status;
    ord_status previous;
    char reason[48];
    int64_t pay_by;
    int64_t amount;
    int64_t deadline; /* next timer, 0 = none */
    int64_t delivered_at;
    int32_t payment_attempts;
    bool restock_on_return;
    int64_t occurred_at;
    int nlines;
    ord_line lines[ORD_MAX_LINES]; /* last: see ord_order_used_size */
} ord_order;

/* The bytes of o that hold something: everything before its lines, and its nlines lines
 * (nlines read as 0 to ORD_MAX_LINES). Most orders have one line, so this is about a sixth of
 * sizeof(ord_order): a holder of many orders (the order saga) keeps only these bytes and
 * copies them back into a whole ord_order before handing one to code that takes a whole one. */
size_t ord_order_used_size(const ord_order *o);

/* The reason of a DELIVERED order's closing snapshot, which the saga writes when its return
 * window closes (the DELIVERED snapshot's deadline): nothing can happen to the order after
 * it. */
#define ORD_REASON_WINDOW_CLOSED "RETURN_WINDOW_CLOSED"

/* Is this a DELIVERED order's closing snapshot? */
bool ord_window_closed(const ord_order *o);

/* When the order ended (ms since the epoch), or 0 while it is live or may still move, the one
 * rule of it for the read models' expiry and the audit: the time of a snapshot after which
 * no status can follow, i.e. a terminal status's, or a DELIVERED order's closing snapshot's. */
int64_t ord_ended_at(const ord_order *o);

/* Encodes a snapshot event; *buf malloc'd. */
int ord_encode(const fs_codec *codec, const ord_order *o, void **buf, size_t *len, fs_err *err);
/* Decodes an OrderStatusChanged record. */
int ord_decode(avro_value_t *rec, ord_order *o, fs_err *err);

#endif
