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

#endif
