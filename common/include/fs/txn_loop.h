/* The transactional consume-transform-produce loop used by every stateful worker.
 *
 * One consumer (group member with static membership, eager `range` assignment,
 * read_committed, no auto-commit) and one transactional producer per process. Records are
 * handed to on_record in log order; whatever on_record produces through
 * fs_txn_loop_produce() and the consumed offsets commit together in one Kafka transaction
 * (KIP-447: send_offsets_to_transaction with the consumer's group metadata), so each input
 * record's effects appear exactly once downstream.
 *
 * Batching (group commit): a transaction is opened at the first record and committed as
 * soon as the consumer has nothing more queued (commit_eager, the default) and the floor
 * below allows, or after commit_interval_ms or commit_max_records, whichever comes first.
 * commit_min_gap_ms (50 ms by default) is that floor: a loop that started a commit less
 * than that long ago commits again only when the gap has passed or the batch is
 * commit_interval_ms old (counted from the transaction's opening), whichever comes first.
 * An idle loop therefore commits a lone record at once, and a loaded one commits what
 * queued up during the last commit and the floor in one transaction. With commit_eager off
 * only the interval and size count. Fewer transactions cost the broker less (each one is
 * several requests and its markers; perf/RESULTS.md, 2026-12-04 21:48), at the price of a
 * later commit, which only what reads the outputs downstream waits for (the buyer's answer
 * does not). (librdkafka 2.0.2's main thread spins for ~1 ms on each partition-registration
 * timer a transaction arms, two or more per transaction: ~10 % of a core for two loops at
 * 1,000 orders/s, perf/RESULTS.md 2026-12-06; fixed upstream in 2.4.0.)
 *
 * Pipelining: the commit (send_offsets_to_transaction + commit_transaction, tens of ms on a
 * busy broker) runs on a committer thread while this thread goes on polling and calling
 * on_record; what on_record produces meanwhile is copied and produced into the next
 * transaction as soon as the commit is done (with its offsets). One commit at a time, so
 * offsets commit in order. While a commit runs the loop blocks in the consumer's poll: a
 * record, or the committer's wake-up when it is done (rd_kafka_queue_yield), ends the wait.
 * A failed commit aborts, drops what waited and rewinds as below (on_revoke + on_assign,
 * seek to the committed offsets), so the worker's state never holds
 * effects that neither committed nor will be redone. A worker that answers callers before
 * the commit (the inventory processor's decision replies) must decide deterministically:
 * docs/architecture.md, "Answer at the decision".
 *
 * Timing: every loop exports histograms (fs/metrics.h) labelled loop="<group id>": poll lag
 * (record timestamp -> polled), handle time, commit wait (first record -> commit start),
 * commit duration and records per transaction.
 *
 * Worker state: the worker keeps state per assigned partition in memory and rebuilds it in
 * on_assign (typically with fs_kafka_read_to_end on its changelog) before any record of
 * those partitions is delivered; on_revoke drops it. Because in-memory state may include
 * effects of a batch that is then aborted, an abort is followed by on_revoke + on_assign of
 * the whole assignment (state rebuilt from what was committed) and a seek of every
 * partition back to its committed offset. Aborts are rare (broker errors), so rebuilding is
 * simpler and safer than undo logs.
 *
 * Errors: abortable transaction errors -> abort, rebuild, rewind, go on. Fatal producer
 * errors (e.g. fenced) -> the producer is destroyed and recreated with the same
 * transactional.id (which fences any zombie with that id), then as for an abort; more than
 * max_producer_restarts in a row stops the loop with FS_ERR_FATAL. A fatal consumer error (a
 * static member fenced after its session timed out while a broker was away or frozen) ->
 * the open transaction is aborted, the whole assignment revoked (on_revoke) and a new consumer
 * with the same group.instance.id joins, as a restarted process would (same limit). Revoke commits the open
 * transaction first (abort if the partitions were lost). Stop (*stop set, e.g. by SIGTERM):
 * the open batch is committed and the consumer closed; a stop while an assignment's setup
 * keeps failing gives the assignment up and returns 0 at once (nothing of it was read).
 *
 * Threads: everything runs on the thread that calls fs_txn_loop_run(), including callbacks,
 * except the commit itself (the committer thread, which touches only the producer).
 */
#ifndef FS_TXN_LOOP_H
#define FS_TXN_LOOP_H
#include "fs/config.h"
#include "fs/err.h"
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct fs_txn_loop fs_txn_loop;

typedef struct {
    const fs_common_config *common; /* brokers, batch settings, txn timeout */
    const char *group_id;           /* consumer group */
    const char *instance_id;        /* static membership id; transactional.id = group-instance */
    const char *const *topics;      /* input topics, NULL-terminated */
    int max_producer_restarts;      /* 0 -> 5 */

    void *app;
    /* Rebuild state of `parts` (offsets = committed input offsets, or INVALID). Return 0,
     * or -1 with *err: the loop retries the assignment after a pause. */
    int (*on_assign)(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts,
                     fs_err *err);
    /* Drop state of `parts`. May be NULL. */
    void (*on_revoke)(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts);
    /* Handle one record inside the open transaction. Return 0, or -1 with *err: class
     * ABORT/RETRIABLE aborts and redoes the batch, FATAL stops the loop. A record the
     * worker cannot understand should be dead-lettered (fs_txn_loop_dead_letter) and 0
     * returned: one bad record must never stop a consumer. */
    int (*on_record)(void *app, fs_txn_loop *loop, const rd_kafka_message_t *msg, fs_err *err);
    /* Called after each successful commit with the number of records in it. May be NULL. */
    void (*on_commit)(void *app, fs_txn_loop *loop, size_t records);
    /* Called on every turn of the loop (at least every 100 ms), outside on_record, for work
     * not caused by an input record, e.g. timers. It may call fs_txn_loop_produce (after
     * fs_txn_loop_begin); what it produces commits with the current batch. Return as for
     * on_record. May be NULL. */
    int (*on_tick)(void *app, fs_txn_loop *loop, fs_err *err);
} fs_txn_loop_conf;

typedef struct {
    uint64_t records;   /* records handled in committed transactions */
    uint64_t commits;   /* transactions committed */
    uint64_t aborts;    /* transactions aborted */
    uint64_t rewinds;   /* the worker's state rolled back to the committed one: after a failed
                         * record (whether or not a transaction was open: one that fails
                         * first in a batch while the last commit runs has none to abort), an
                         * abort or a producer restart */
    uint64_t producer_restarts;
    uint64_t rebalances;
} fs_txn_loop_stats;

/* Creates the clients and initialises transactions (fencing older producers with the same
 * transactional.id). Returns NULL with *err. conf is copied (strings are not: they must
 * outlive the loop). */
fs_txn_loop *fs_txn_loop_new(const fs_txn_loop_conf *conf, fs_err *err);
/* Runs until *stop becomes non-zero or a fatal error. Returns 0 after a clean stop, -1 with
 * *err otherwise. */
int fs_txn_loop_run(fs_txn_loop *loop, volatile sig_atomic_t *stop, fs_err *err);
void fs_txn_loop_destroy(fs_txn_loop *loop); /* NULL-safe; closes the consumer */

/* Produces inside the open transaction (from on_record, or from on_tick after
 * fs_txn_loop_begin). partition may be
 * RD_KAFKA_PARTITION_UA (partitioner decides). key/value are copied. headers, if not NULL,
 * is owned by the call (also on error). */
int fs_txn_loop_produce(fs_txn_loop *loop, const char *topic, int32_t partition, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        rd_kafka_headers_t *headers, fs_err *err);
/* Opens a transaction if none is open (for on_tick). Returns 0 or -1 with *err. */
int fs_txn_loop_begin(fs_txn_loop *loop, fs_err *err);
/* Counts one unit of work produced by on_tick toward the batch size. */
void fs_txn_loop_count(fs_txn_loop *loop);

/* Sends msg to the dead-letter topic inside the open transaction (only from on_record). */
int fs_txn_loop_dead_letter(fs_txn_loop *loop, const rd_kafka_message_t *msg, const char *reason,
                            fs_err *err);

const fs_txn_loop_stats *fs_txn_loop_stats_get(const fs_txn_loop *loop);
/* A commit is under way (pipelined): what is produced now goes into the transaction after
 * it. (From the loop's thread: its callbacks.) */
bool fs_txn_loop_committing(const fs_txn_loop *loop);
rd_kafka_t *fs_txn_loop_consumer(fs_txn_loop *loop);

#endif
