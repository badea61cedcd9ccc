/* The API's link to Kafka: commands out, decisions in.
 *
 * - Commands are produced with the idempotent producer (acks=all); a request learns from
 *   its own delivery report when its command is durable ("accepted") and at which offset
 *   (its place in the queue).
 * - The decision stream: one thread reads every partition of inventory.events
 *   (read_committed) from its latest snapshot (flashsale/inventory_snapshot.h; from the beginning without
 *   one) and orders.events from FLASHSALE_API_ORDER_MEMORY_MS (600000) ago, and keeps (a) a
 *   view of every product per partition, built with the inventory processor's own
 *   inv_apply(), and (b) the orders that changed within that time: older ones are forgotten
 *   (and beyond FLASHSALE_API_MAX_ORDERS (50000) the least recently changed first), and
 *   are read from the read models when asked for (api_bus_order_adopt). It wakes the
 *   requests waiting for an order (by order id) or for an admin command's outcome (by the
 *   command's event id, which the processor copies into causation-id).
 * - Waiters are registered *before* producing, and looking a decision up and registering
 *   happen under one lock, so a decision can never slip between them.
 *
 * Everything here is called from civetweb worker threads and from the bus's own two
 * threads (delivery reports, decision stream); one mutex guards the shared state. */
#ifndef FS_API_BUS_H
#define FS_API_BUS_H
#include "flashsale/inventory.h"
#include "flashsale/order.h"

#include "fs/codec.h"
#include "fs/config.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum { API_ORDER_PENDING, API_ORDER_RESERVED, API_ORDER_REJECTED } api_order_status;
const char *api_order_status_name(api_order_status s);

typedef struct api_bus api_bus;
typedef struct api_waiter api_waiter;

#define API_HISTORY_MAX 16
#define API_LINES_MAX 16

typedef struct {
    char status[24];
    char reason[48];
    int64_t at;
} api_history;

/* An order's fields other than its lines and its history. The view (bus.c) holds these
 * with the lines and the history sized to the order (most orders have one line and a few
 * entries); a copy handed out (api_order) has room for the most of each. */
#define API_ORDER_HEAD                                                                             \
    char order_id[INV_ID_MAX];                                                                 \
    char member_id[INV_ID_MAX];                                                                \
    char product_id[INV_ID_MAX]; /* first line */                                              \
    int32_t quantity;            /* first line */                                              \
    api_order_status status;     /* the inventory decision (single-item orders) */             \
    inv_reason reason;                                                                         \
    int64_t requested_at, decided_at, pay_by, unit_price;                                      \
    int32_t partition;                                                                         \
    int64_t command_offset;                                                                    \
    /* from orders.events (the saga), once it has spoken */                                    \
    char saga_status[24]; /* "" until the first snapshot */                                    \
    char saga_reason[48];                                                                      \
    int64_t amount;                                                                            \
    int version;              /* bumped on every change */                                     \
    char causes[8][40];       /* causation ids of the last snapshots (ring) */                 \
    int ncauses;                                                                               \
    char rejected_cause[64];  /* event id of the last refused command, and why */              \
    char rejected_code[40];

typedef struct {
    char product_id[INV_ID_MAX];
    int32_t quantity;
    int64_t unit_price;
    char state[16];
} api_line;

typedef struct api_order {
    API_ORDER_HEAD
    int nlines;
    api_line lines[API_LINES_MAX];
    int nhistory;
    api_history history[API_HISTORY_MAX];
} api_order;

/* Whether one of the order's recent snapshots was caused by the record with this event id. */
bool api_order_caused_by(const api_order *o, const char *event_id);
/* The order's current status name: the saga's when known, else the inventory decision. */
const char *api_order_current_status(const api_order *o);
/* The same as a status of the lifecycle (flashsale/order.h): the saga's once it has spoken,
 * else the decision's (RESERVED / REJECTED / PENDING). */
ord_status api_order_lifecycle(const api_order *o);
/* Waits until the order exists with a version above `after`, or the deadline (monotonic
 * ms). Returns true and a copy if it changed; false (with the current copy if any) else. */
bool api_bus_order_wait(api_bus *b, const char *order_id, int after, int64_t deadline_ms,
                        api_order *out, bool *exists);
/* Produces a command to orders.commands (key = order id); the answer comes through the
 * order's versions. *ticket follows the command's delivery report (wait for it with
 * api_bus_wait, need_decision false; release it with api_bus_waiter_release), so that a
 * request that gives up waiting for the answer says "accepted" (202) only of a durable
 * command. Returns 0 or -1 with *err (then *ticket is NULL). */
int api_bus_produce_order_command(api_bus *b, const char *order_id, const void *value, size_t len,
                                  const char *event_type, const char *event_id, int64_t at,
                                  api_waiter **ticket, fs_err *err);

typedef struct api_bus api_bus;
typedef struct api_waiter api_waiter;

/* Who is told of the changes the live event stream (GET /api/events, sse.h) carries, once
 * the decision stream has caught up (history read at start is not told):
 *   product_changed  a product's stock or sale state changed by a committed event (defined,
 *                    updated, restocked, paused, resumed, reserved, committed, released;
 *                    not a rejection, which changes nothing); `at` is the event's time;
 *   order_changed    an order's current status (api_order_current_status) changed, from the
 *                    committed streams or from a decision reply (before the commit);
 *                    `reason` the rejection or failure reason, "" else.
 * Both run on the bus's threads with the bus's lock held, in the order the view applied the
 * changes: they must be quick, must not block and must not call into the bus. */
typedef struct {
    void (*product_changed)(void *ctx, const inv_product_view *v, int64_t at);
    void (*order_changed)(void *ctx, const api_order *o, const char *reason, int64_t at);
    void *ctx;
} api_bus_listener;
/* Sets the listener (a copy is kept); once, before requests come. */
void api_bus_listen(api_bus *b, const api_bus_listener *l);
/* Calls fn with the bus's lock held (the same rules as the listener's calls): what fn reads
 * of the views and what the listener is told are then one sequence. */
void api_bus_locked(api_bus *b, void (*fn)(void *ctx), void *ctx);
/* Under api_bus_locked only: a product's view. */
bool api_bus_product_locked(api_bus *b, const char *product_id, inv_product_view *out);
/* Under api_bus_locked only: calls fn for every order of the member the view holds (a copy,
 * valid during the call). */
void api_bus_member_orders_locked(api_bus *b, const char *member_id,
                                  void (*fn)(void *ctx, const api_order *o), void *ctx);

api_bus *api_bus_start(const fs_common_config *cfg, const fs_codec *codec, fs_err *err);
void api_bus_stop(api_bus *b); /* NULL-safe */
/* Whether the bus's producers work: false, with the reason in why, while one has failed
 * fatally and its replacement is not made yet. A fatal error (an idempotent producer's lost
 * sequence, say) fails every produce from then on; the bus's keeper thread sees it within
 * 200 ms, makes a new producer, swaps it in, and retires the old one (every message it held
 * gets its delivery report). Any thread. */
bool api_bus_producers_ok(api_bus *b, char *why, size_t n);
/* True once the decision stream has read up to the end offsets it saw at start. */
bool api_bus_caught_up(api_bus *b);

/* The fence of a refused command (docs/architecture.md, "Honest answers while Kafka is
 * away"). A ReserveStock carries accept_by = requested_at + FLASHSALE_COMMAND_TIMEOUT_MS, and
 * the processor refuses one that the broker appended later (TIMED_OUT). So a command whose
 * delivery failed may be answered "not placed" (503) once the broker's clock is past
 * accept_by: api_bus_refuse_after returns when this clock is past accept_by plus
 * FLASHSALE_CLOCK_SKEW_MS (100 ms), the most the broker's clock may be behind this one. */
int64_t api_bus_accept_by(const api_bus *b, int64_t requested_at);
void api_bus_refuse_after(const api_bus *b, int64_t accept_by);

/* Views (copies, taken under the lock). */
bool api_bus_product(api_bus *b, const char *product_id, inv_product_view *out);
bool api_bus_order(api_bus *b, const char *order_id, api_order *out);
/* Decisions (StockReserved / StockRejected) the decision stream has read since this instance
 * started (*total; events inside the snapshot it started from are not read), and those whose
 * record timestamp lies within the last window_s seconds (at most 15) (*recent). */
void api_bus_decisions(api_bus *b, int window_s, uint64_t *total, uint64_t *recent);
/* Highest command offset decided so far on a partition of inventory.commands (-1: none). */
int64_t api_bus_decided_offset(api_bus *b, int32_t partition);

/* A waiter for one order (key = order id) or one admin command (key = its event id). */
api_waiter *api_bus_waiter_new(api_bus *b, const char *key);
/* Takes an order read from the read models into the view if the view does not hold it (it
 * forgot it, or never saw it), so that waiting for its next change works. */
void api_bus_order_adopt(api_bus *b, const api_order *o);
/* Records an order as accepted-pending in this instance's view (before producing). */
void api_bus_order_pending(api_bus *b, const api_order *o);
/* Produces value to inventory.commands with key = product id; the waiter is told about
 * delivery. Returns 0, or -1 with *err (nothing was produced). */
int api_bus_produce(api_bus *b, api_waiter *w, const char *product_id, const void *value,
                    size_t len, const char *event_type, const char *event_id,
                    const char *correlation_id, int64_t occurred_at, fs_err *err);

typedef struct {
    bool delivered, failed, decided;
    /* failed, but the command may have reached the log (it timed out in flight: librdkafka's
     * RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED). Only a failure without it is definitive:
     * the command is not in the log and never will be. */
    bool maybe_persisted;
    bool via_reply; /* decided by the processor's reply (before its commit), not the stream */
    int32_t partition;
    int64_t offset;
    int64_t logged_at; /* delivered: the record's time (fs_kafka_record_time: on inventory.commands,
                        * a LogAppendTime topic, the broker's append time; 0 unknown) */
    char delivery_error[128];
    inv_event ev; /* the decision / outcome, when decided */
} api_wait_result;
/* Waits until the waiter is decided, or until deadline_ms (monotonic) has passed and the
 * command's delivery is known (durable or failed) - never returns "not delivered" for a
 * produced command before its delivery report, so a 202 always means durable. A waiter of
 * an order that was decided earlier returns at once. */
void api_bus_wait(api_bus *b, api_waiter *w, int64_t deadline_ms, bool need_decision,
                  api_wait_result *out);
/* api_bus_wait without the sleep, for a request that is told of changes (the order front):
 * true, with *out, when api_bus_wait would return now. */
bool api_bus_wait_poll(api_bus *b, api_waiter *w, int64_t deadline_ms, bool need_decision,
                       api_wait_result *out);
/* Has fn(ctx) called whenever the waiter's result changes, from the bus's threads with its
 * lock held: fn must be quick, must not block and must not call into the bus. Poll after
 * setting it (a change before it is not told); api_bus_waiter_release clears it. */
void api_bus_waiter_notify(api_bus *b, api_waiter *w, void (*fn)(void *ctx), void *ctx);
/* The decision replies' socket for a thread that reads them itself (the order front's loop:
 * a reply then wakes no other thread): from now on the bus's reply thread leaves it, and the
 * caller calls api_bus_replies_drain, from one thread only, whenever it is readable. -1: no
 * replies (they are off, or out of memory): nothing changes. */
int api_bus_replies_take_over(api_bus *b);
void api_bus_replies_drain(api_bus *b);
/* The same for the producers' delivery reports (the command's and the answers'): fd is an
 * eventfd the caller already watches, and the bus owns it from now on (closed by
 * api_bus_stop). librdkafka writes it when a report is queued; the caller calls
 * api_bus_delivery_serve, from one thread only, whenever it is readable. The reports'
 * callbacks then run on that thread: no other thread is woken, and a message made on that
 * thread is freed there too. The bus's delivery thread ends; until api_bus_stop (whose
 * flush serves what is left) only the caller serves them, so a caller that stops serving
 * before then must go on serving while anything it waits for may need a report
 * (api_front_stop does, while its workers end). */
void api_bus_delivery_take_over(api_bus *b, int fd);
void api_bus_delivery_serve(api_bus *b);
/* Decision replies used (woke a waiting request) and ignored (no such request waiting,
 * wrong token, not a reply), for /metrics. */
void api_bus_reply_stats(api_bus *b, unsigned long *used, unsigned long *ignored);
/* Records an answer given to a buyer in orders.answers (fire and forget; a failure is
 * logged and counted, never answered to the buyer). status: RESERVED, REJECTED, PENDING;
 * source: reply, committed, view, none. See schemas/orders/OrderAnswered.avsc. */
void api_bus_record_answer(api_bus *b, const char *order_id, const char *member_id,
                           const char *product_id, int32_t quantity, const char *status,
                           const char *reason, int64_t pay_by, const char *source, int http_status);
/* Releases the caller's reference (the delivery report holds its own). */
void api_bus_waiter_release(api_bus *b, api_waiter *w);

#endif
