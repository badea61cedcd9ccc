/* Kafka helpers shared by every flashsale process (librdkafka 2.0.x).
 *
 * - Producers are idempotent with acks=all and the murmur2 partitioner (Java-compatible,
 *   so every tool agrees on which partition a key lives in).
 * - Consumers read_committed, manual offsets, eager `range` assignor, static membership
 *   (group.instance.id), enable.partition.eof off unless asked.
 * - Every record carries the headers event-type, event-id, correlation-id, causation-id,
 *   occurred-at (see fs_kafka_headers_new).
 * Functions here may be called from any thread unless they say otherwise. */
#ifndef FS_KAFKA_H
#define FS_KAFKA_H
#include "fs/config.h"
#include "fs/err.h"
#include <librdkafka/rdkafka.h>
#include <stdint.h>

/* Topic names (every family co-partitioned: same partition count). */
#define FS_TOPIC_INVENTORY_COMMANDS "inventory.commands"
#define FS_TOPIC_INVENTORY_EVENTS "inventory.events"
#define FS_TOPIC_ORDERS_COMMANDS "orders.commands"
#define FS_TOPIC_ORDERS_EVENTS "orders.events"
#define FS_TOPIC_PAYMENTS_COMMANDS "payments.commands"
#define FS_TOPIC_PAYMENTS_EVENTS "payments.events"
#define FS_TOPIC_MEMBERS_EVENTS "members.events"
#define FS_TOPIC_NOTIFICATIONS "notifications"
#define FS_TOPIC_DEADLETTER "deadletter"
#define FS_TOPIC_ORDERS_ANSWERS "orders.answers"
/* Compacted: the latest snapshot of each inventory partition (domain/include/flashsale/inventory_snapshot.h). */
#define FS_TOPIC_INVENTORY_SNAPSHOTS "inventory.snapshots"
/* The inventory processor's consumer group: its committed offsets on inventory.commands say
 * which commands its committed transactions have decided (the audit reads them). */
#define FS_GROUP_INVENTORY "flashsale-inventory"

typedef struct {
    const char *name;
    const char *retention_ms; /* "-1" = keep forever (event topics are the source of truth) */
    const char *const *config; /* more topic settings, key/value pairs, NULL-terminated; may be NULL */
} fs_topic_spec;
extern const fs_topic_spec fs_topics[];
extern const size_t fs_topics_count;

/* Event metadata carried in headers. Any pointer may be NULL (header left out);
 * event_id NULL makes a new UUIDv7; occurred_at 0 means now. */
typedef struct {
    const char *event_type;
    const char *event_id;
    const char *correlation_id;
    const char *causation_id;
    int64_t occurred_at;
} fs_event_meta;

/* New header list; the caller passes it to a produce call (which takes ownership on
 * success) or destroys it with rd_kafka_headers_destroy. */
rd_kafka_headers_t *fs_kafka_headers_new(const fs_event_meta *m);
/* Copies header `name` of msg as a NUL-terminated string into buf. Returns its length,
 * or -1 if absent or too long. */
int fs_kafka_header_get(const rd_kafka_message_t *msg, const char *name, char *buf, size_t n);

/* Clients: every Kafka client of flashsale is made by fs_kafka_new, with the settings of
 * its role (the one place they are written, kafka.c):
 *   FS_KAFKA_PRODUCER  idempotent, acks=all, murmur2 partitioner (Java-compatible, so every
 *                      tool agrees where a key lives), linger 2 ms, message timeout 30 s
 *   FS_KAFKA_TXN       the same, transactional (transactional_id; transaction.timeout.ms
 *                      from the configuration); linger 20 ms, retry backoff 2 ms, message.timeout.ms 5 s
 *                      (FLASHSALE_TXN_MESSAGE_TIMEOUT_MS)
 *   FS_KAFKA_CONSUMER  a group member (group_id; static with instance_id): eager range
 *                      assignor, read_committed, manual offsets, from the earliest offset
 *   FS_KAFKA_FOLLOWER  an assign-only read_committed reader (no group), partition EOF
 *                      reported: what fs_follower uses
 *   FS_KAFKA_PROBE     read_uncommitted, offset lookups only (fs_kafka_probe_new)
 *   FS_KAFKA_ADMIN     metadata and admin requests only
 * Log lines go to the JSON-lines logger; FLASHSALE_RDKAFKA_DEBUG sets librdkafka's debug
 * contexts. Returns NULL with *err on bad configuration. The caller destroys the client. */
typedef enum {
    FS_KAFKA_PRODUCER,
    FS_KAFKA_TXN,
    FS_KAFKA_CONSUMER,
    FS_KAFKA_FOLLOWER,
    FS_KAFKA_PROBE,
    FS_KAFKA_ADMIN
} fs_kafka_role;

typedef void fs_kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
typedef void fs_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                   rd_kafka_topic_partition_list_t *parts, void *opaque);

typedef struct {
    fs_kafka_role role;
    const char *client_id;        /* shown in the broker's logs and metrics */
    const char *group_id;         /* CONSUMER */
    const char *instance_id;      /* CONSUMER: static membership (NULL: dynamic) */
    const char *transactional_id; /* TXN */
    bool partition_eof;           /* CONSUMER (FOLLOWER: always) */
    fs_kafka_dr_cb *dr;           /* producers: delivery reports (NULL: none) */
    fs_kafka_rebalance_cb *rebalance; /* CONSUMER (NULL: librdkafka's) */
    void *opaque;                 /* passed to the callbacks */
    /* Log request and record counts every FLASHSALE_RDKAFKA_STATS_MS ("kafka client
     * stats"). Only for a client whose event queue is served (a producer polled, a consumer
     * with rd_kafka_poll_set_consumer): the statistics queue up there. */
    bool stats;
    /* More librdkafka settings, name/value pairs, NULL-terminated; they override the role's. */
    const char *const *extra;
} fs_kafka_client;

rd_kafka_t *fs_kafka_new(const fs_common_config *cfg, const fs_kafka_client *c, fs_err *err);

/* A producer's fatal error (an idempotent producer's lost sequence, or a fenced epoch) fails
 * every produce from then on; librdkafka's remedy is a new producer. These are for the
 * non-transactional producers (txn_loop has its own, with the batch's abort and rewind).
 *
 * fs_kafka_retire: serves a producer's remaining delivery reports (what was in flight when it
 * failed gets its true outcome, up to drain_ms), fails whatever is left (reported too), and
 * destroys it. Every message thus gets its report: a caller waiting on one is never left
 * waiting. No other thread may use `p` any more.
 *
 * fs_kafka_renew_if_fatal: for a producer one thread owns. When *p has failed fatally, logs
 * it (as `who`), retires it and puts a new one made from cfg and c in *p: returns 1. Returns
 * 0 when *p has not failed (one atomic read: call it before each use), and -1 with *err when
 * the new one cannot be made (*p is then NULL; call again later). A NULL *p is made anew. */
void fs_kafka_retire(rd_kafka_t *p, int drain_ms);
int fs_kafka_renew_if_fatal(rd_kafka_t **p, const fs_common_config *cfg, const fs_kafka_client *c,
                            const char *who, int drain_ms, fs_err *err);

/* fetch.wait.max.ms for readers: FLASHSALE_FETCH_WAIT_MS or 500 (see kafka.c). */
const char *fs_fetch_wait_ms(void);

/* Creates the topics (idempotent). A topic that exists with another partition count is
 * an error. retention_ms may be NULL. */
int fs_kafka_create_topic(rd_kafka_t *rk, const char *name, int partitions, int replication,
                          const char *retention_ms, int timeout_ms, fs_err *err);
/* The same for one of fs_topics, with its settings. */
int fs_kafka_create_topic_spec(rd_kafka_t *rk, const fs_topic_spec *spec, int partitions,
                               int replication, int timeout_ms, fs_err *err);
/* Partition count of a topic, or -1 with *err. */
int fs_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, fs_err *err);
/* The record's time as the log holds it (ms since the epoch; 0 when it has none): on a
 * LogAppendTime topic (inventory.commands) the broker's clock when it appended the record;
 * on a CreateTime topic the producer's stamp (a copy of the log made with each record's
 * original time thus replays the same). */
int64_t fs_kafka_record_time(const rd_kafka_message_t *m);

/* A client for offset lookups only (never fetches; FS_KAFKA_PROBE): read_uncommitted, so
 * that rd_kafka_query_watermark_offsets on it answers the high watermark. librdkafka's
 * isolation.level defaults to read_committed and ListOffsets honours it on any handle (the
 * answer is then the last stable offset); and a group consumer's own lookups queue behind its
 * long-polling fetches on the same connection (up to fetch.wait.max.ms each). Returns NULL
 * with *err. */
rd_kafka_t *fs_kafka_probe_new(const fs_common_config *cfg, fs_err *err);

/* Reads the given partitions (read_committed) from their offsets (or the beginning when an
 * offset is RD_KAFKA_OFFSET_INVALID/BEGINNING) up to the high watermark as it was when the
 * call started, calling cb for every record in log order per partition. Waits for open
 * transactions below that watermark to finish (commit or abort), so the state built from it
 * includes every committed record. Returns 0, the first non-zero return of cb (with *err as
 * cb set it), or -1 with *err on timeout or broker errors. Blocks the calling thread. */
typedef int (*fs_kafka_record_cb)(void *ctx, const rd_kafka_message_t *msg, fs_err *err);
int fs_kafka_read_to_end(const fs_common_config *cfg,
                         const rd_kafka_topic_partition_list_t *parts, fs_kafka_record_cb cb,
                         void *ctx, int timeout_ms, fs_err *err);

/* Rebuild helper for workers: reads `changelog` from the beginning to its end, for the
 * distinct partition numbers found in `assigned` (co-partitioned topics share numbers), as
 * fs_kafka_read_to_end does. */
int fs_kafka_read_changelog(const fs_common_config *cfg,
                            const rd_kafka_topic_partition_list_t *assigned,
                            const char *changelog, fs_kafka_record_cb cb, void *ctx,
                            int timeout_ms, fs_err *err);

/* Produces a copy of src (key, value, headers) to the dead-letter topic with the extra
 * headers dlq-reason, dlq-topic, dlq-partition, dlq-offset. Used inside a transaction by
 * passing the loop's producer. */
int fs_kafka_dead_letter(rd_kafka_t *producer, const rd_kafka_message_t *src, const char *reason,
                         fs_err *err);

/* Dead letters of a reader outside a transaction (the projectors, the notifier), which must be
 * in the log before the reader's offsets move past their records: else a crash in between,
 * or a delivery that fails later, loses the record. The reader writes them with
 * fs_kafka_dlq_write (fs_kafka_dead_letter, counted) through a producer made with
 * .dr = fs_kafka_dlq_report (one such producer per process). fs_kafka_dlq_settle waits up to
 * timeout_ms (less once *stop is set; stop may be NULL) until every dead letter written has
 * its delivery report, and returns 0 when all since the last settle were delivered. Else it
 * purges what is still undelivered and returns -1 with *err: the caller must not move its
 * offsets past the records and writes their dead letters again later, so a dead letter may
 * be in the log more than once (its dlq-topic, dlq-partition and dlq-offset headers tell the
 * copies). A dead letter refused for good (too large for the client or the broker, or a
 * record the broker finds invalid) is logged as an error naming its record's topic,
 * partition and offset, and counts as settled: writing it again would never succeed, and the
 * reader would never move on; the record stays in its own topic (for its retention).
 * FLASHSALE_TEST_DLQ_FAIL=N (tests): the first N successful reports count as failed
 * (FLASHSALE_TEST_DLQ_FAIL_KEY: only those of dead letters with that key). */
int fs_kafka_dlq_write(rd_kafka_t *p, const rd_kafka_message_t *src, const char *reason, fs_err *err);
void fs_kafka_dlq_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
int fs_kafka_dlq_settle(rd_kafka_t *p, int timeout_ms, const volatile int *stop, fs_err *err);

#endif
