/* flashsale-projector: one driver, two targets (sinks).
 *
 * The driver (projector.c) reads inventory.events, orders.events and payments.events
 * (read_committed, every partition, assigned at the offsets the *target* stored), decodes
 * each record once and hands it to the sink; it cuts batches (count or time), asks the sink
 * to commit each batch together with the next offsets, measures the projection lag of every
 * event (commit time - record timestamp), logs progress with an ETA while catching up, and
 * sends records it cannot decode (not Avro, or not a valid event of its type) to the
 * dead-letter topic.
 *
 * A sink (sink_pg.c, sink_redis.c) owns its store: where the offsets live, how a batch is
 * made atomic or idempotent, how a rebuild is done. */
#ifndef FS_PROJECTOR_H
#define FS_PROJECTOR_H
#include "flashsale/inventory_codec.h"
#include "flashsale/messages.h"
#include "flashsale/order.h"

#include "fs/codec.h"
#include "fs/config.h"
#include "fs/err.h"

#include <avro.h>
#include <stdbool.h>
#include <stdint.h>

#define PROJ_NTOPICS 3
extern const char *const proj_topics[PROJ_NTOPICS];

typedef struct projector projector;

typedef struct {
    const char *name;
    /* Connects and prepares the store; `rebuild` asks for a read model rebuilt from offset
     * 0. Retries transient errors itself; -1 only for fatal ones. */
    int (*open)(projector *p, bool rebuild, fs_err *err);
    /* Fills next[topic * nparts + partition] with the offset to resume from, or -1 for
     * "from the beginning". */
    int (*load_offsets)(projector *p, int64_t *next, fs_err *err);
    int (*inventory)(projector *p, const inv_event *e, int32_t part, int64_t off, fs_err *err);
    int (*order)(projector *p, const ord_order *o, int32_t part, int64_t off, fs_err *err);
    int (*payment)(projector *p, const pay_event *e, int32_t part, int64_t off, fs_err *err);
    /* Makes the batch's changes and next[] (-1: untouched partition) durable; lag_ms is the
     * batch's largest projection lag. */
    int (*commit)(projector *p, const int64_t *next, int64_t lag_ms, fs_err *err);
    /* Forgets an uncommitted batch (the driver re-reads it from the stored offsets). */
    void (*rollback)(projector *p);
    /* Called about once a second and when the driver first catches up with the log
     * (caught_up: every partition was read to its end and applied; the lag is then 0). Returns 1 when the driver must reload the offsets (the store was
     * emptied or switched), 0, or -1 with *err. */
    int (*tick)(projector *p, bool caught_up, fs_err *err);
    void (*close)(projector *p);
} proj_sink;

extern const proj_sink proj_sink_pg;
extern const proj_sink proj_sink_redis;

struct projector {
    fs_common_config cfg;
    const proj_sink *sink;
    void *store; /* the sink's own state */
    int nparts;
    volatile int *stop; /* set by signals */
};

#endif
