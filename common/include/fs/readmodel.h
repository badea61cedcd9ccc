/* The Redis read model's key layout, shared by flashsale-projector (writer), flashsale-api
 * and flashsale-audit (readers).
 *
 *   fs:rm:gen                 the generation being served (absent: no Redis read model)
 *   fs:rm:building            a generation being built (rebuild), not served yet
 *   fs:rm:seq                 generation counter
 *   fs:rm:<g>:p:<product>     hash: name description price currency stock available
 *                             reserved sold starts ends limit paused updated (ms) v
 *   fs:rm:<g>:products        sorted set of product ids (score 0: ordered by id = time)
 *   fs:rm:<g>:o:<order>       hash: member status reason amount pay_by created updated
 *                             items (JSON array) v
 *   fs:rm:<g>:h:<order>       list of JSON transitions {status, previous, reason, at}
 *   fs:rm:<g>:offsets         hash "<topic>:<partition>" -> next offset (+ "_created";
 *                             "_begun": batches begun, "_done": the number of the
 *                             last batch done; sink_redis.c)
 *   fs:rm:<g>:meta            hash heartbeat_ms lag_ms applied
 *   channel fs:order:<order>  a JSON {order_id, status} per applied order change
 *
 * "v" versions every write: a product's is the offset of its event in inventory.events (one
 * partition per product); an order's is FS_RM_RANK_INVENTORY + offset for the inventory
 * decision of a single-item order and FS_RM_RANK_SAGA + offset for the saga's snapshots
 * (one orders.events partition per order), so a snapshot always wins over a decision and a
 * replayed event never overwrites a newer one.
 *
 * An ended order's o: and h: keys expire FLASHSALE_REDIS_ENDED_TTL_MS (one day) after it
 * ended (PEXPIREAT its end time + the TTL, so a rebuild does not bring old ended orders
 * back); PostgreSQL keeps every order, and the API reads it there on a Redis miss. "Ended":
 * the saga's terminal statuses, a DELIVERED order's return window's close (ord_ended_at), or
 * the inventory's refusal of a single-item order. The audit
 * accepts an ended order missing from Redis once its time is up. */
#ifndef FS_READMODEL_H
#define FS_READMODEL_H
#include <stddef.h>

#define FS_RM_ENDED_TTL_ENV "FLASHSALE_REDIS_ENDED_TTL_MS"
#define FS_RM_ENDED_TTL_DEFAULT 86400000L
#define FS_RM_ENDED_TTL_MIN 1000L
#define FS_RM_ENDED_TTL_MAX (3650L * 86400000L)

#define FS_RM_GEN "fs:rm:gen"
#define FS_RM_BUILDING "fs:rm:building"
#define FS_RM_SEQ "fs:rm:seq"
#define FS_RM_ORDER_CHANNEL "fs:order:"
/* Keys of a generation: fs:rm:<gen>:<kind>[:<id>]. The one place they are spelt. */
typedef enum {
    FS_RM_PRODUCT,  /* p:<product> */
    FS_RM_PRODUCTS, /* products */
    FS_RM_ORDER,    /* o:<order> */
    FS_RM_HISTORY,  /* h:<order> */
    FS_RM_OFFSETS,  /* offsets */
    FS_RM_META,     /* meta */
    FS_RM_ALL       /* * (a SCAN pattern: every key of the generation) */
} fs_rm_kind;
#define FS_RM_KEY_MAX 160
/* Writes the key into out[n]; id is the product or order (ignored by the other kinds).
 * Returns out, or NULL when the key would not fit (out is then ""). */
const char *fs_rm_key(char *out, size_t n, long long gen, fs_rm_kind kind, const char *id);

#define FS_RM_RANK_INVENTORY 1125899906842624LL /* 2^50 */
#define FS_RM_RANK_SAGA 2251799813685248LL      /* 2^51: exact in a Lua number (double) */

/* Reader script for an order: resolves the served generation inside Redis, one round trip.
 * ARGV[1] order id -> {hash, history list, {heartbeat_ms, lag_ms}} or nil. (Products are
 * read with two pipelined HMGETs under a per-thread cached generation: their hot path.) */
#define FS_RM_LUA_GET_ORDER                                                                     \
    "local g = redis.call('GET', 'fs:rm:gen') if not g then return false end "                  \
    "local h = redis.call('HGETALL', 'fs:rm:' .. g .. ':o:' .. ARGV[1]) "                       \
    "if #h == 0 then return false end "                                                         \
    "return {h, redis.call('LRANGE', 'fs:rm:' .. g .. ':h:' .. ARGV[1], 0, -1), "               \
    "redis.call('HMGET', 'fs:rm:' .. g .. ':meta', 'heartbeat_ms', 'lag_ms')}"

#endif
