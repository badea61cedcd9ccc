/* flashsale-audit's parts (private to the tool): reading the log, the checks, the read
 * models' diff; audit.c is the command line and the report. See audit.c for what is
 * checked. */
#ifndef FS_AUDIT_H
#define FS_AUDIT_H
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

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PARTITIONS 1024
#define MAX_VIOLATIONS 1000

/* The command and the event are malloc'd in inv_*_used_size bytes (without the product
 * fields of the types that do not carry them: ~360 and ~570 of ~2,700 and ~2,900 bytes), so
 * that the records kept for an order with its lifecycle take ~2.7 KB, not ~21 KB. */
typedef struct {
    int32_t partition;
    int64_t offset, ts;
    inv_command *cmd; /* NULL: not decodable */
} cmd_rec;

typedef struct {
    int32_t partition;
    int64_t offset, ts;
    inv_event *ev;
} ev_rec;

/* What the checks read of an order's snapshot (OrderStatusChanged). */
typedef struct {
    char order_id[ORD_ID_MAX];
    ord_status status, previous;
    int64_t ended_at; /* ord_ended_at */
} snap_rec;

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
static inline int vec_grow(vec *x)
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
static inline void *vec_push(vec *x)
{
    return (char *)x->v + x->size * x->n++;
}

typedef struct {
    const fs_codec *codec;
    int64_t at;
    vec cmds, evs, orders, answers; /* cmd_rec, ev_rec, snap_rec, answer_rec */
    uint64_t read, skipped_time, undecodable;
    const char *topic;
    int64_t next_ev[MAX_PARTITIONS], next_ord[MAX_PARTITIONS], next_cmd[MAX_PARTITIONS]; /* last offset read + 1 */
    /* With --at, the first command on each partition appended after it (0: none read yet,
     * else offset + 1): the log at that time holds the commands before it and, whenever
     * they were written, their decisions (an aborted transaction's retry writes a decision
     * again, later than its answer). */
    int64_t at_cut[MAX_PARTITIONS];
    /* The processor's committed offset on each commands partition, read before the events:
     * every command below it has its answer among the events read after (the offsets and
     * the answers commit in one transaction). -1: not known (a copy, --at, or no group). */
    int64_t decided_upto[MAX_PARTITIONS];
    uint64_t pending; /* commands at or after it, not decided yet: not a violation */
    uint64_t repeated; /* commands whose order line was already decided (appended again) */
    fs_map *pending_orders; /* the orders those commands name (order id -> 1) */
} audit_ctx;


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
    int64_t at;          /* the order's time (its id's, else the event's) */
    bool committed, gone; /* sold; then restocked (returned) */
} resv_t;

typedef struct {
    ord_status last;
    int terminal;
} order_t;

typedef struct {
    fs_map *orders;
    int64_t now, grace;
    uint64_t unsettled;
    fs_map *pending_orders; /* orders with a command not decided yet: their release may be it */
} leak_ctx;

typedef struct {
    uint64_t compared, via_reply, view, pending, differences;
} answers_stats;

/* A check that failed: counted, printed (the first 20) and kept for the JSON report. */
void audit_violation(const char *check, const char *order, const char *product, int32_t part,
                     int64_t offset, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
size_t audit_violations(void);
/* From hold on, violations are kept aside; release counts them (as audit_violation would)
 * or drops them: for a comparison that may turn out void. */
void audit_hold_violations(void);
void audit_release_violations(bool count);
/* A read model could not be compared because its projector had already moved past what the
 * audit read (a live system): counted apart, since reading again can settle it (main). */
void audit_note_ahead(void);

/* audit_read.c: every record of a topic from the beginning (from: from these offsets, per
 * partition, instead), read_committed (--at: up to a time), into the context. */
int audit_read_topic(const fs_common_config *cfg, audit_ctx *a, const char *topic,
                     const int64_t *from, fs_err *err);

/* The inventory processor's committed offsets on the commands topic into a->decided_upto
 * (left -1 where it has none); -1 with err when they cannot be read. */
int audit_read_progress(const fs_common_config *cfg, audit_ctx *a, const char *topic, fs_err *err);

/* audit_checks.c */
void audit_check_replay(audit_ctx *a, uint64_t *replayed);
void audit_check_invariants(audit_ctx *a, fs_map *products, fs_map *resv, fs_map *decided);
void audit_check_orders(audit_ctx *a, fs_map *orders);
void audit_check_leak(void *ctx, const char *key, void *value); /* fs_map_foreach over resv_t */
void audit_check_answers(audit_ctx *a, answers_stats *st);

/* audit_diff.c: the PostgreSQL and Redis read models against what the log says. */
json_t *audit_diff_read_models(const fs_common_config *cfg, audit_ctx *a, fs_map *products,
                               bool strict, long wait_ms);

#endif
