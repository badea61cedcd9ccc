/* The JSON the Redis read model keeps of an order's status (sink_redis.c): its lines, the
 * history entry when the status changed, and the message published to the order's channel.
 * Shared with flashsale-ledger, which times it as the projector's share of an order. */
#ifndef FS_PROJECTIONS_ORDER_JSON_H
#define FS_PROJECTIONS_ORDER_JSON_H

#include "flashsale/order.h"

typedef struct {
    char *items;   /* [{"product_id","quantity","unit_price","state"}, ...] */
    char *history; /* {"status","previous","reason","at"}, or NULL when the status is unchanged */
    char *message; /* {"order_id","status"} */
} rm_order_json;

/* Fills j (each string malloc'd); 0, or -1 when out of memory (nothing is left allocated).
 * Text that is not UTF-8 is written with its bytes above ASCII as '?', never refused. */
int rm_order_json_make(const ord_order *o, rm_order_json *j);
void rm_order_json_free(rm_order_json *j);

/* The items and message of an order as the inventory's decision describes it (one line, in
 * state `status`), byte for byte as rm_order_json_make writes them for the same order: the
 * read model's order before the saga's first snapshot. Written into the caller's buffers: ids
 * of printable ASCII without a quote or backslash (every id flashsale makes) directly, any
 * other through jansson as rm_order_json_make writes them; `status` is a status name
 * (plain ASCII, written as it is). 0, or -1 when out of memory or a buffer is too small (two
 * ids of 63 bytes, every byte escaped, fit 768 for the items and 512 for the message). */
int rm_decision_json(const char *order_id, const char *product_id, int quantity, int64_t unit_price,
                     const char *status, char *items, size_t items_len, char *message, size_t message_len);

#endif
