/* Transactional consume-transform-produce loop; see fs/txn_loop.h for the contract.
 *
 * State kept here is runtime bookkeeping only: whether a transaction is open, when it
 * started, how many records it holds, and the next offset to commit per partition. The
 * worker's own state lives in the worker and is rebuilt through on_assign. */
#include "fs/txn_loop.h"
#include "fs/config.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct fs_txn_loop {
    fs_txn_loop_conf conf;
    char txn_id[256];
    rd_kafka_t *consumer;
    rd_kafka_queue_t *consumer_q; /* the consumer's queue: the committer wakes its poll */
    rd_kafka_t *producer;

    int txn_open;
    int64_t txn_started;
    int64_t last_commit_ms; /* when the last commit started (fs_mono_ms), for the gap */
    size_t txn_records;
    rd_kafka_topic_partition_list_t *offsets; /* next offsets of the open transaction */

    int need_reset;     /* abort happened in a callback: rebuild + rewind before going on */
    int lost_waiting;   /* a rewind found the assignment lost and waits for its revoke (said
                         * and counted once; cleared by the revoke, or by a rewind that finds
                         * it unassigned without one) */
    /* What on_assign was last given through the rebalance callback, until its revoke: a
     * fatal consumer error makes librdkafka unassign by itself, with no callback, and the
     * worker's state of those partitions must still be dropped. */
    rd_kafka_topic_partition_list_t *assigned;
    volatile sig_atomic_t *stop; /* the caller's stop flag, seen by callbacks too */
    int fatal;          /* stop: unrecoverable */
    int abandoned;      /* stop: asked to while an assignment's setup kept failing */
    fs_err fatal_err;
    int restarts_in_row;
    fs_txn_loop_stats stats;
    /* per-stage timing (fs/metrics.h), labelled with the loop's group */
    fs_hist *h_lag, *h_handle, *h_age, *h_commit, *h_offsets, *h_records;
    double txn_first_us; /* when the open transaction's first record was handled */
    long crash_at;       /* FLASHSALE_CRASH_BEFORE_COMMIT (tests): die at this commit */
    long commits_tried;

    /* Pipelined commit: a transaction commits on the committer thread while this thread goes
     * on handling records; what they produce waits in `pending` (copies) until the commit is
     * done, then opens the next transaction. Only one commit at a time; the consumed offsets
     * of the committing batch are in commit_offsets, the current batch's in `offsets`. */
    bool committing;
    pthread_t committer;
    atomic_int commit_done;
    rd_kafka_error_t *commit_ke; /* the committer's result */
    rd_kafka_topic_partition_list_t *commit_offsets;
    rd_kafka_consumer_group_metadata_t *commit_cgmd;
    size_t commit_records;
    double commit_t_start;
    struct pending_rec *pending;
    size_t npending, cappending;
    long init_fast_ms; /* FLASHSALE_TXN_INIT_FAST_MS: producer_new */
};

typedef struct pending_rec {
    char *topic;
    int32_t partition;
    void *key, *value;
    size_t key_len, value_len;
    rd_kafka_headers_t *headers;
} pending_rec;


static rd_kafka_t *producer_new(fs_txn_loop *l, fs_err *err)
{
    rd_kafka_t *p = fs_kafka_new(l->conf.common,
                                 &(fs_kafka_client){.role = FS_KAFKA_TXN,
                                                    .client_id = l->txn_id,
                                                    .transactional_id = l->txn_id,
                                                    .stats = true},
                                 err);
    if (!p)
        return NULL;
    /* Fences any older producer with this transactional.id and aborts its open txn. The
     * coordinator may still be loading, or finishing the abort of a killed predecessor's
     * transaction: retriable errors are retried for up to two minutes.
     *
     * The latter is every restart after a kill in the middle of a transaction: the
     * coordinator answers CONCURRENT_TRANSACTIONS while it aborts (milliseconds), and
     * librdkafka 2.0.2 asks again only after a fixed 500 ms (rd_kafka_idemp_pid_timer_restart,
     * not a setting). A new call of init_transactions asks again at once (the API resumes and
     * fires that timer immediately; nothing is sent while a request is in flight). So during
     * its first 10 x FLASHSALE_TXN_INIT_FAST_MS (50; 0: off) each call is given that long
     * and, without an id by then, called again. A try that meets no open transaction takes a
     * few ms on loopback. */
    long fast_ms = l->init_fast_ms;
    int64_t t0 = fs_mono_ms(), give_up = t0 + 120000;
    for (int tries = 1;; tries++) {
        int fast = fast_ms > 0 && fs_mono_ms() - t0 < 10 * fast_ms;
        rd_kafka_error_t *ke = rd_kafka_init_transactions(p, fast ? (int)fast_ms : 30000);
        if (!ke) {
            if (tries > 1)
                fs_log_info("init_transactions: producer id acquired",
                            json_pack("{s:s,s:i,s:i}", "transactional_id", l->txn_id, "tries", tries,
                                      "ms", (int)(fs_mono_ms() - t0)));
            break;
        }
        if (fast && rd_kafka_error_is_retriable(ke)) {
            if (tries == 1)
                fs_log_info("init_transactions: no producer id yet; asking again at once",
                            json_pack("{s:s,s:s,s:i}", "transactional_id", l->txn_id, "error",
                                      rd_kafka_error_string(ke), "after_ms", (int)fast_ms));
            rd_kafka_error_destroy(ke);
            continue;
        }
        fs_err_from_kafka_error(err, ke, "init_transactions");
        int retry = rd_kafka_error_is_retriable(ke) && fs_mono_ms() < give_up;
        rd_kafka_error_destroy(ke);
        fs_log_warn("init_transactions failed", json_pack("{s:s,s:b}", "error", err->msg, "retrying", retry));
        if (!retry) {
            rd_kafka_destroy(p);
            return NULL;
        }
        usleep(500 * 1000);
    }
    /* Learn every topic's partitions and leaders now: otherwise the first write of a
     * transaction to each topic waits for a metadata round and is appended late. */
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(p, 1, NULL, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
    return p;
}

static void offsets_clear(fs_txn_loop *l)
{
    rd_kafka_topic_partition_list_destroy(l->offsets);
    l->offsets = rd_kafka_topic_partition_list_new(16);
}

/* Partitions without a committed offset would start at a logical "earliest", which a fresh
 * consumer resolves with an offset lookup on a ~0.5 s retry timer while it does not know the
 * leaders yet. Learn the leaders, then give such partitions their low watermark. */
static void resolve_start_offsets(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, NULL, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t lo, hi;
        if (p->offset < 0 &&
            rd_kafka_query_watermark_offsets(rk, p->topic, p->partition, &lo, &hi, 5000) == 0)
            p->offset = lo;
    }
}

static int commit_finish(fs_txn_loop *l, fs_err *err);
static void pending_clear(fs_txn_loop *l);

/* The partitions went without a revoke callback: drop the worker's state of them. */
static void drop_assigned(fs_txn_loop *l)
{
    if (!l->assigned)
        return;
    if (l->assigned->cnt > 0 && l->conf.on_revoke)
        l->conf.on_revoke(l->conf.app, l, l->assigned);
    rd_kafka_topic_partition_list_destroy(l->assigned);
    l->assigned = NULL;
}

/* Roll the worker back to committed state: rebuild every assigned partition and seek the
 * consumer to the committed offsets. Used after an abort and after a producer restart.
 * Returns 0 when done, 1 when the assignment is lost (nothing rebuilt: the caller waits for
 * the revoke, which the group's next assignment follows), -1 with *err to try again. */
static int rewind_to_committed(fs_txn_loop *l, fs_err *err)
{
    if (l->committing) { /* settle the commit under way first: its offsets may yet land */
        fs_err cerr = {0};
        commit_finish(l, &cerr);
    }
    pending_clear(l);
    offsets_clear(l);
    l->txn_records = 0;
    /* The group session timed out (say the broker was away): librdkafka has queued a revoke
     * and will join again, and the next assignment rebuilds. Rebuilding now would be thrown
     * away: after a broker SIGKILL a processor rebuilt 32,600 events for 1.4 s just before
     * its lost partitions were revoked and rebuilt again (perf/RESULTS.md, 2026-12-07). */
    if (rd_kafka_assignment_lost(l->consumer))
        return 1;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(l->consumer, &parts) || !parts)
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "assignment unavailable");
    int rc = 0;
    if (parts->cnt == 0) { /* unassigned by librdkafka itself (a fatal consumer error) */
        drop_assigned(l);
    } else {
        if (l->conf.on_revoke)
            l->conf.on_revoke(l->conf.app, l, parts);
        rd_kafka_resp_err_t e = rd_kafka_committed(l->consumer, parts, 30000);
        if (e) {
            rc = fs_err_from_kafka_code(err, e, "committed offsets");
            goto out;
        }
        if (rd_kafka_assignment_lost(l->consumer)) { /* lost while we waited for the offsets */
            rc = 1;
            goto out;
        }
        if (l->conf.on_assign(l->conf.app, l, parts, err)) {
            rc = -1;
            goto out;
        }
        resolve_start_offsets(l->consumer, parts);
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].offset < 0)
                parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        /* librdkafka 2.0: a -1 timeout makes the seek synchronous and reliable. */
        rd_kafka_error_t *ke = rd_kafka_seek_partitions(l->consumer, parts, -1);
        if (ke) {
            rc = fs_err_from_kafka_error(err, ke, "seek");
            rd_kafka_error_destroy(ke);
        }
    }
out:
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

static int producer_restart(fs_txn_loop *l, fs_err *err)
{
    if (l->committing) { /* the committer uses the producer: let it end first */
        if (!pthread_equal(l->committer, pthread_self()))
            pthread_join(l->committer, NULL);
        l->committing = false;
        if (l->commit_ke)
            rd_kafka_error_destroy(l->commit_ke);
        l->commit_ke = NULL;
        rd_kafka_consumer_group_metadata_destroy(l->commit_cgmd);
        l->commit_cgmd = NULL;
    }
    pending_clear(l);
    l->stats.producer_restarts++;
    int max = l->conf.max_producer_restarts ? l->conf.max_producer_restarts : 5;
    if (++l->restarts_in_row > max)
        return fs_err_set(err, FS_ERR_FATAL, 0,
                          "producer failed fatally %d times in a row; last: %s", max, err->msg);
    fs_log_warn("recreating transactional producer",
                json_pack("{s:s,s:s}", "transactional_id", l->txn_id, "reason", err->msg));
    rd_kafka_destroy_flags(l->producer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    l->producer = producer_new(l, err);
    l->txn_open = 0;
    offsets_clear(l);
    if (!l->producer)
        return -1;
    return 0;
}

static void pending_clear(fs_txn_loop *l)
{
    if (!l->pending)
        return;
    for (size_t i = 0; i < l->npending; i++) {
        free(l->pending[i].topic);
        free(l->pending[i].key);
        free(l->pending[i].value);
        if (l->pending[i].headers)
            rd_kafka_headers_destroy(l->pending[i].headers);
    }
    l->npending = 0;
}

/* Aborts the open transaction (if any) and drops what waits for the next one. A commit
 * under way is waited for first (its batch may still commit: then only the later records
 * are undone). Returns 0, or -1 when the producer had to be recreated and that failed. The
 * caller rewinds afterwards. */
static int txn_abort(fs_txn_loop *l, fs_err *err)
{
    if (l->committing && commit_finish(l, err) && !l->producer)
        return -1;
    pending_clear(l);
    if (!l->txn_open) {
        offsets_clear(l);
        l->txn_records = 0;
        return 0;
    }
    l->stats.aborts++;
    rd_kafka_error_t *ke = rd_kafka_abort_transaction(l->producer, -1);
    l->txn_open = 0;
    l->txn_records = 0;
    offsets_clear(l);
    if (ke) {
        fs_err_from_kafka_error(err, ke, "abort_transaction");
        rd_kafka_error_destroy(ke);
        return producer_restart(l, err);
    }
    return 0;
}

static void *committer_main(void *arg)
{
    pthread_setname_np(pthread_self(), "txn-commit"); /* for per-thread CPU (perf/profile) */
    fs_txn_loop *l = arg;
    rd_kafka_error_t *ke = NULL;
    for (int attempt = 0; attempt < 5 && l->commit_offsets->cnt > 0; attempt++) {
        ke = rd_kafka_send_offsets_to_transaction(l->producer, l->commit_offsets, l->commit_cgmd, -1);
        if (!ke || !rd_kafka_error_is_retriable(ke))
            break;
        rd_kafka_error_destroy(ke);
        ke = NULL;
        usleep(100 * 1000);
    }
    fs_hist_observe_ms(l->h_offsets, (fs_mono_us() - l->commit_t_start) / 1000.0);
    if (!ke) {
        for (int attempt = 0; attempt < 5; attempt++) {
            ke = rd_kafka_commit_transaction(l->producer, -1);
            if (!ke || !rd_kafka_error_is_retriable(ke))
                break;
            rd_kafka_error_destroy(ke);
            ke = NULL;
            usleep(100 * 1000);
        }
    }
    l->commit_ke = ke;
    atomic_store(&l->commit_done, 1);
    rd_kafka_queue_yield(l->consumer_q); /* wake the loop's poll: the next transaction can go */
    return NULL;
}

/* Starts committing the open transaction on the committer thread (or, when no thread can
 * be had, runs the commit here). The current batch starts empty; records handled meanwhile
 * are kept for the next transaction. commit_finish settles the result. */
static void commit_start(fs_txn_loop *l)
{
    if (l->crash_at > 0 && l->txn_records > 0 && ++l->commits_tried == l->crash_at) {
        /* Fault injection for the tests: everything the batch produced (and every decision
         * reply sent) is out, the commit never happens. */
        rd_kafka_flush(l->producer, 5000);
        fs_log_warn("crash point: killed before commit",
                    json_pack("{s:I,s:I}", "commit", (json_int_t)l->commits_tried, "records",
                              (json_int_t)l->txn_records));
        usleep(50 * 1000);
        raise(SIGKILL);
    }
    l->commit_t_start = fs_mono_us();
    l->last_commit_ms = fs_mono_ms();
    if (l->txn_records > 0)
        fs_hist_observe_ms(l->h_age, (l->commit_t_start - l->txn_first_us) / 1000.0);
    l->commit_cgmd = rd_kafka_consumer_group_metadata(l->consumer);
    if (l->commit_offsets)
        rd_kafka_topic_partition_list_destroy(l->commit_offsets);
    l->commit_offsets = l->offsets;
    l->offsets = rd_kafka_topic_partition_list_new(16);
    l->commit_records = l->txn_records;
    l->txn_records = 0;
    l->txn_open = 0;
    l->committing = true;
    atomic_store(&l->commit_done, 0);
    if (pthread_create(&l->committer, NULL, committer_main, l)) {
        committer_main(l); /* no thread: commit here */
        l->committer = pthread_self();
    }
}

/* begin_transaction on the producer (the batch counters are the caller's). */
static int producer_begin(fs_txn_loop *l, fs_err *err)
{
    rd_kafka_error_t *ke = rd_kafka_begin_transaction(l->producer);
    if (ke) {
        fs_err_from_kafka_error(err, ke, "begin_transaction");
        rd_kafka_error_destroy(ke);
        return -1;
    }
    l->txn_open = 1;
    l->txn_started = fs_mono_ms();
    return 0;
}

/* Produces into the open transaction, waiting while the local queue is full. On success the
 * producer owns headers; on error the caller still does. Errors are classed for the loop
 * (abort the batch, or fatal). */
static int producer_send(fs_txn_loop *l, const char *topic, int32_t partition, const void *key,
                         size_t key_len, const void *value, size_t value_len,
                         rd_kafka_headers_t *headers, fs_err *err)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            l->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
            RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (!e)
            return 0;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(l->producer, 10);
            continue;
        }
        fs_err_from_kafka_code(err, e, "produce");
        if (err->cls != FS_ERR_FATAL)
            err->cls = FS_ERR_ABORT;
        return -1;
    }
}

/* Opens the next transaction with what waited for it. Returns 0, or -1 with *err (the
 * caller treats it as a failed record: abort and rewind). */
static int pending_flush(fs_txn_loop *l, fs_err *err)
{
    if (l->npending == 0 && l->txn_records == 0)
        return 0;
    if (producer_begin(l, err))
        return -1;
    for (size_t i = 0; i < l->npending; i++) {
        pending_rec *r = &l->pending[i];
        if (producer_send(l, r->topic, r->partition, r->key, r->key_len, r->value, r->value_len,
                          r->headers, err))
            return -1; /* the rest (headers included) is freed by pending_clear */
        r->headers = NULL; /* the producer owns them now */
    }
    pending_clear(l);
    return 0;
}

/* Waits for the commit under way and settles it: on success the batch is counted and the
 * next transaction opened with what waited; on failure the transaction is aborted (or the
 * producer recreated), what waited is dropped and need_reset set. Returns -1 only if the
 * loop must stop. */
static int commit_finish(fs_txn_loop *l, fs_err *err)
{
    if (!l->committing)
        return 0;
    if (!pthread_equal(l->committer, pthread_self()))
        pthread_join(l->committer, NULL);
    l->committing = false;
    rd_kafka_consumer_group_metadata_destroy(l->commit_cgmd);
    l->commit_cgmd = NULL;
    rd_kafka_error_t *ke = l->commit_ke;
    l->commit_ke = NULL;
    if (!ke) {
        size_t n = l->commit_records;
        fs_hist_observe_ms(l->h_commit, (fs_mono_us() - l->commit_t_start) / 1000.0);
        fs_hist_observe_ms(l->h_records, (double)n);
        l->stats.commits++;
        l->stats.records += n;
        l->restarts_in_row = 0;
        if (l->conf.on_commit)
            l->conf.on_commit(l->conf.app, l, n);
        if (pending_flush(l, err)) {
            fs_log_warn("next transaction could not open, aborting it",
                        json_pack("{s:s}", "error", err->msg));
            l->need_reset = 1;
            if (err->cls == FS_ERR_FATAL || rd_kafka_fatal_error(l->producer, NULL, 0)) {
                l->txn_open = 0;
                pending_clear(l);
                offsets_clear(l);
                l->txn_records = 0;
                return producer_restart(l, err);
            }
            return txn_abort(l, err);
        }
        return 0;
    }
    fs_err_from_kafka_error(err, ke, "commit");
    int fatal = rd_kafka_error_is_fatal(ke);
    rd_kafka_error_destroy(ke);
    fs_log_warn("transaction commit failed, aborting batch",
                json_pack("{s:s,s:I}", "error", err->msg, "records", (json_int_t)l->commit_records));
    l->need_reset = 1;
    pending_clear(l);
    offsets_clear(l);
    l->txn_records = 0;
    if (fatal) {
        l->txn_open = 0;
        return producer_restart(l, err);
    }
    l->txn_open = 1; /* the failed transaction is still the producer's: abort it */
    return txn_abort(l, err);
}

/* Commits everything handled so far, synchronously (revoke, stop): the commit under way,
 * then the rest. Returns -1 only if the loop must stop. */
static int txn_commit(fs_txn_loop *l, fs_err *err)
{
    if (commit_finish(l, err))
        return -1;
    if (l->need_reset || !l->txn_open)
        return 0;
    commit_start(l);
    return commit_finish(l, err);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t code,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    fs_txn_loop *l = opaque;
    fs_err err = {0};
    l->stats.rebalances++;
    if (code == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        fs_log_info("partitions assigned", json_pack("{s:i}", "count", parts->cnt));
        for (;;) {
            /* Committed offsets first (require_stable under read_committed waits for any
             * pending transactional offset commit), then rebuild state up to the changelog's
             * end, then start fetching. */
            rd_kafka_resp_err_t e = rd_kafka_committed(rk, parts, 30000);
            if (!e && l->conf.on_assign(l->conf.app, l, parts, &err) == 0)
                break;
            if (e)
                fs_err_from_kafka_code(&err, e, "committed offsets");
            if (l->stop && *l->stop) {
                /* Asked to stop: give up this assignment and leave at once, without another
                 * tick or commit (the worker's state may be half rebuilt). Nothing of it was
                 * read and nothing is open (the revoke before it committed), so nothing is
                 * lost: the stop is as clean as any other (exit status 0). */
                fs_log_warn("assignment abandoned on stop", json_pack("{s:s}", "error", err.msg));
                l->abandoned = 1;
                rd_kafka_assign(rk, NULL);
                return;
            }
            fs_log_warn("assignment setup failed, retrying", json_pack("{s:s}", "error", err.msg));
            sleep(1);
        }
        resolve_start_offsets(rk, parts);
        if (l->assigned)
            rd_kafka_topic_partition_list_destroy(l->assigned);
        l->assigned = rd_kafka_topic_partition_list_copy(parts);
        rd_kafka_assign(rk, parts);
    } else if (code == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        fs_log_info("partitions revoked", json_pack("{s:i,s:b}", "count", parts->cnt, "lost",
                                                    rd_kafka_assignment_lost(rk)));
        if (l->txn_open || l->committing || l->npending) {
            if (rd_kafka_assignment_lost(rk)) {
                if (txn_abort(l, &err)) {
                    l->fatal = 1;
                    l->fatal_err = err;
                }
            } else if (txn_commit(l, &err)) {
                l->fatal = 1;
                l->fatal_err = err;
            }
        }
        l->need_reset = 0; /* the partitions are gone: nothing to rewind */
        l->lost_waiting = 0;
        if (l->conf.on_revoke)
            l->conf.on_revoke(l->conf.app, l, parts);
        if (l->assigned)
            rd_kafka_topic_partition_list_destroy(l->assigned);
        l->assigned = NULL;
        rd_kafka_assign(rk, NULL);
    } else {
        fs_log_error("rebalance error", json_pack("{s:s}", "error", rd_kafka_err2str(code)));
        rd_kafka_assign(rk, NULL);
    }
}

/* The group consumer, subscribed to the input topics. Returns 0, or -1 with *err. */
static int consumer_new(fs_txn_loop *l, fs_err *err)
{
    l->consumer = fs_kafka_new(l->conf.common,
                               &(fs_kafka_client){.role = FS_KAFKA_CONSUMER,
                                                  .client_id = l->txn_id,
                                                  .group_id = l->conf.group_id,
                                                  .instance_id = l->conf.instance_id,
                                                  .rebalance = rebalance_cb,
                                                  .opaque = l,
                                                  /* served: rd_kafka_poll_set_consumer below */
                                                  .stats = true},
                               err);
    if (!l->consumer)
        return -1;
    rd_kafka_poll_set_consumer(l->consumer);
    l->consumer_q = rd_kafka_queue_get_consumer(l->consumer); /* a group consumer's: never NULL */
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(4);
    for (const char *const *t = l->conf.topics; *t; t++)
        rd_kafka_topic_partition_list_add(topics, *t, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t se = rd_kafka_subscribe(l->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    return se ? fs_err_from_kafka_code(err, se, "subscribe") : 0;
}

/* The consumer failed fatally: a static member fenced ("fenced by other consumer with the
 * same group.instance.id") after its session timed out while a broker was away or frozen.
 * The worker goes on as a restarted process would: the open transaction is aborted, the
 * state of the whole assignment dropped (on_revoke), and a new consumer with the same
 * group.instance.id joins; its assignment rebuilds state from what was committed
 * (on_assign), exactly as at start. Counted with the producer's restarts. */
static int consumer_restart(fs_txn_loop *l, fs_err *err)
{
    fs_err aerr = {0};
    if (txn_abort(l, &aerr) && !l->producer) {
        *err = aerr;
        return -1;
    }
    /* librdkafka has unassigned already (no callback) when it raises a fatal error:
     * rd_kafka_assignment() is empty by now, so the worker is given what it was last
     * assigned. */
    drop_assigned(l);
    int max = l->conf.max_producer_restarts ? l->conf.max_producer_restarts : 5;
    if (++l->restarts_in_row > max)
        return fs_err_set(err, FS_ERR_FATAL, 0, "consumer failed fatally %d times in a row", max);
    fs_log_warn("recreating the consumer after a fatal consumer error",
                json_pack("{s:s,s:s}", "group", l->conf.group_id, "instance", l->conf.instance_id));
    rd_kafka_queue_destroy(l->consumer_q); /* no commit runs: txn_abort waited for it */
    l->consumer_q = NULL;
    rd_kafka_destroy_flags(l->consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    l->consumer = NULL;
    l->need_reset = 0;
    l->lost_waiting = 0;
    return consumer_new(l, err);
}

fs_txn_loop *fs_txn_loop_new(const fs_txn_loop_conf *conf, fs_err *err)
{
    fs_txn_loop *l = calloc(1, sizeof *l);
    if (!l) {
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        return NULL;
    }
    l->conf = *conf;
    snprintf(l->txn_id, sizeof l->txn_id, "%s-%s", conf->group_id, conf->instance_id);
    const char *crash = getenv("FLASHSALE_CRASH_BEFORE_COMMIT");
    l->crash_at = crash ? atol(crash) : 0;
    if (fs_env_int("FLASHSALE_TXN_INIT_FAST_MS", 50, 0, 1000, &l->init_fast_ms, err)) {
        free(l);
        return NULL;
    }
    char lbl[128];
    snprintf(lbl, sizeof lbl, "loop=\"%s\"", conf->group_id);
    l->h_lag = fs_hist_register("flashsale_loop_poll_lag_ms", lbl,
                                "Input record's timestamp (its producer's clock) to the loop polling it.");
    l->h_handle = fs_hist_register("flashsale_loop_handle_ms", lbl,
                                   "Time the worker spent on one input record (decide, produce).");
    l->h_age = fs_hist_register("flashsale_loop_commit_wait_ms", lbl,
                                "A transaction's first handled record to the start of its commit.");
    l->h_commit = fs_hist_register("flashsale_loop_commit_ms", lbl,
                                   "Commit of one transaction: offsets sent, commit acknowledged.");
    l->h_offsets = fs_hist_register("flashsale_loop_send_offsets_ms", lbl,
                                    "The consumed offsets sent to the transaction (part of the commit).");
    l->h_records = fs_hist_register("flashsale_loop_txn_records", lbl,
                                    "Input records per committed transaction (a count, not ms).");
    l->offsets = rd_kafka_topic_partition_list_new(16);

    l->producer = producer_new(l, err);
    if (!l->producer || consumer_new(l, err))
        goto fail;
    return l;
fail:
    fs_txn_loop_destroy(l);
    return NULL;
}

int fs_txn_loop_begin(fs_txn_loop *l, fs_err *err)
{
    if (l->txn_open)
        return 0;
    if (l->committing) { /* the batch is open logically; its records wait in pending */
        if (l->txn_records == 0)
            l->txn_started = fs_mono_ms();
        return 0;
    }
    if (producer_begin(l, err))
        return -1;
    l->txn_records = 0;
    return 0;
}

bool fs_txn_loop_committing(const fs_txn_loop *l)
{
    return l->committing;
}

void fs_txn_loop_count(fs_txn_loop *l)
{
    l->txn_records++;
}

static void track_offset(fs_txn_loop *l, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    rd_kafka_topic_partition_t *p =
        rd_kafka_topic_partition_list_find(l->offsets, topic, m->partition);
    if (!p)
        p = rd_kafka_topic_partition_list_add(l->offsets, topic, m->partition);
    p->offset = m->offset + 1;
}

static int handle_failure(fs_txn_loop *l, fs_err *err)
{
    if (err->cls == FS_ERR_FATAL && !l->producer)
        return -1;
    fs_log_warn("aborting transaction", json_pack("{s:s,s:s}", "class",
                                                  fs_err_class_name(err->cls), "error", err->msg));
    if (txn_abort(l, err))
        return -1;
    l->need_reset = 1;
    return 0;
}

/* After on_record or on_tick failed with *e: a fatal worker error stops the loop (after an
 * abort); a dead producer is recreated and the worker rewound; anything else aborts the
 * batch and rewinds. Returns -1 (with *err) only when the loop must stop. */
static int recover(fs_txn_loop *l, fs_err *e, fs_err *err)
{
    bool producer_dead = rd_kafka_fatal_error(l->producer, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
    if (e->cls == FS_ERR_FATAL && !producer_dead) {
        *err = *e;
        txn_abort(l, err);
        return -1;
    }
    if (producer_dead) {
        if (producer_restart(l, e)) {
            *err = *e;
            return -1;
        }
        l->need_reset = 1;
        return 0;
    }
    if (handle_failure(l, e)) {
        *err = *e;
        return -1;
    }
    return 0;
}

int fs_txn_loop_run(fs_txn_loop *l, volatile sig_atomic_t *stop, fs_err *err)
{
    const fs_common_config *c = l->conf.common;
    l->stop = stop;
    while (!*stop && !l->fatal && !l->abandoned) {
        if (l->need_reset) {
            int r = rewind_to_committed(l, err);
            if (r < 0) {
                fs_log_warn("rewind failed, retrying", json_pack("{s:s}", "error", err->msg));
                sleep(1);
                continue;
            }
            /* r == 1: the assignment is lost. need_reset stays set, so the poll below drops
             * what was fetched and serves the revoke (which clears need_reset) and then the
             * next assignment (which rebuilds). */
            if (r == 0) {
                l->need_reset = 0;
                if (l->lost_waiting) /* the loss, counted, ended without a revoke callback */
                    l->lost_waiting = 0;
                else
                    l->stats.rewinds++;
            } else if (!l->lost_waiting) {
                l->lost_waiting = 1;
                l->stats.rewinds++; /* the revoke drops the state; the assignment rebuilds */
                fs_log_info("assignment lost: no rewind, waiting for the group's next assignment",
                            json_pack("{s:s}", "transactional_id", l->txn_id));
            }
        }
        /* Group commit: with records in the open transaction, only look whether more are
         * queued (timeout 0); nothing more -> commit now, unless the gap below holds it.
         * Under load the records that arrive while a commit runs make the next batch, so
         * batches grow with the load and an idle system commits each record at once.
         * A gap (commit_min_gap_ms) makes a busy loop wait until that long after its last
         * commit started, or until the batch is commit_interval_ms old (the interval test
         * below does not look at the gap), gathering what arrives meanwhile: fewer, larger
         * transactions for the same records. A record after a quiet spell commits at once. */
        bool eager = c->commit_eager && (l->txn_open || l->committing) && l->txn_records > 0;
        int64_t now = fs_mono_ms();
        int64_t gap_left = l->last_commit_ms + c->commit_min_gap_ms - now;
        int timeout = 100;
        if (l->committing) /* wait for a record, or for the committer's wake-up */
            timeout = atomic_load(&l->commit_done) ? 0 : 100;
        else if (l->txn_open) {
            int64_t left = l->txn_started + c->commit_interval_ms - now;
            if (eager && gap_left < left)
                left = gap_left;
            timeout = left < 0 ? 0 : left < 100 ? (int)left : 100;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(l->consumer, timeout);
        bool drained = m == NULL;
        if (l->fatal || l->abandoned) {
            if (m)
                rd_kafka_message_destroy(m);
            break;
        }
        if (m && l->need_reset && m->err != RD_KAFKA_RESP_ERR__FATAL) {
            /* delivered before a rewind that a callback requested, or while a lost assignment
             * waits for its revoke (a fatal error, raised once, is handled below) */
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m && m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fs_log_warn("consumer error", json_pack("{s:s}", "error",
                                                        rd_kafka_message_errstr(m)));
            if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                rd_kafka_message_destroy(m);
                if (consumer_restart(l, err))
                    return -1;
                continue;
            }
            rd_kafka_message_destroy(m);
            m = NULL;
            drained = true;
        }
        if (m) {
            if (!l->txn_open && fs_txn_loop_begin(l, err)) {
                rd_kafka_message_destroy(m);
                if (err->cls == FS_ERR_FATAL && producer_restart(l, err))
                    return -1;
                l->need_reset = 1;
                continue;
            }
            fs_err rerr = {0};
            rd_kafka_timestamp_type_t tst;
            int64_t ts = rd_kafka_message_timestamp(m, &tst);
            if (ts > 0)
                fs_hist_observe_ms(l->h_lag, (double)(fs_now_ms() - ts));
            double t_rec = fs_mono_us();
            if (l->txn_records == 0)
                l->txn_first_us = t_rec;
            if (l->conf.on_record(l->conf.app, l, m, &rerr)) {
                rd_kafka_message_destroy(m);
                if (recover(l, &rerr, err))
                    return -1;
                continue;
            }
            track_offset(l, m);
            l->txn_records++;
            fs_hist_observe_ms(l->h_handle, (fs_mono_us() - t_rec) / 1000.0);
            rd_kafka_message_destroy(m);
        }
        if (l->conf.on_tick && !l->need_reset) {
            fs_err terr = {0};
            if (l->conf.on_tick(l->conf.app, l, &terr)) {
                if (recover(l, &terr, err))
                    return -1;
                continue;
            }
        }
        if (l->committing) {
            /* the commit under way is done, or the batch waiting behind it is full: settle
             * it (opens the next transaction with what waited) */
            if (atomic_load(&l->commit_done) || (long)l->txn_records >= c->commit_max_records) {
                if (commit_finish(l, err))
                    return -1;
                if (l->need_reset)
                    continue;
            }
        }
        if (!l->committing) {
            rd_kafka_poll(l->producer, 0);
            if (l->txn_open && ((long)l->txn_records >= c->commit_max_records ||
                                fs_mono_ms() - l->txn_started >= c->commit_interval_ms ||
                                (c->commit_eager && drained && l->txn_records > 0 &&
                                 fs_mono_ms() - l->last_commit_ms >= c->commit_min_gap_ms)))
                commit_start(l);
        }
    }
    if (l->fatal) {
        *err = l->fatal_err;
        return -1;
    }
    if (l->abandoned)
        return 0;
    /* Graceful stop: commit what we have, then leave. */
    if ((l->txn_open || l->committing) && txn_commit(l, err))
        return -1;
    return 0;
}

void fs_txn_loop_destroy(fs_txn_loop *l)
{
    if (!l)
        return;
    if (l->committing && !pthread_equal(l->committer, pthread_self()))
        pthread_join(l->committer, NULL); /* a commit left running by an error exit */
    if (l->commit_ke)
        rd_kafka_error_destroy(l->commit_ke);
    if (l->commit_cgmd)
        rd_kafka_consumer_group_metadata_destroy(l->commit_cgmd);
    pending_clear(l);
    free(l->pending);
    if (l->commit_offsets)
        rd_kafka_topic_partition_list_destroy(l->commit_offsets);
    if (l->consumer_q)
        rd_kafka_queue_destroy(l->consumer_q);
    if (l->consumer) {
        rd_kafka_consumer_close(l->consumer);
        rd_kafka_destroy(l->consumer);
    }
    if (l->producer) {
        rd_kafka_flush(l->producer, 10000);
        rd_kafka_destroy(l->producer);
    }
    if (l->assigned) /* (the close's revoke has freed it, unless the close failed) */
        rd_kafka_topic_partition_list_destroy(l->assigned);
    rd_kafka_topic_partition_list_destroy(l->offsets);
    free(l);
}

int fs_txn_loop_produce(fs_txn_loop *l, const char *topic, int32_t partition, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        rd_kafka_headers_t *headers, fs_err *err)
{
    if (l->committing) { /* kept for the next transaction (pipelined commit) */
        if (l->npending == l->cappending) {
            size_t cap = l->cappending ? l->cappending * 2 : 256;
            pending_rec *np = realloc(l->pending, cap * sizeof *np);
            if (!np) {
                if (headers)
                    rd_kafka_headers_destroy(headers);
                return fs_err_set(err, FS_ERR_ABORT, 0, "out of memory for pending records");
            }
            l->pending = np;
            l->cappending = cap;
        }
        pending_rec *r = &l->pending[l->npending];
        r->topic = strdup(topic);
        r->partition = partition;
        r->key = key_len ? malloc(key_len) : NULL;
        r->value = value_len ? malloc(value_len) : NULL;
        if (!r->topic || (key_len && !r->key) || (value_len && !r->value)) {
            free(r->topic), free(r->key), free(r->value);
            if (headers)
                rd_kafka_headers_destroy(headers);
            return fs_err_set(err, FS_ERR_ABORT, 0, "out of memory for pending records");
        }
        if (key_len)
            memcpy(r->key, key, key_len);
        if (value_len)
            memcpy(r->value, value, value_len);
        r->key_len = key_len;
        r->value_len = value_len;
        r->headers = headers;
        l->npending++;
        return 0;
    }
    if (producer_send(l, topic, partition, key, key_len, value, value_len, headers, err)) {
        if (headers)
            rd_kafka_headers_destroy(headers);
        return -1;
    }
    return 0;
}

int fs_txn_loop_dead_letter(fs_txn_loop *l, const rd_kafka_message_t *msg, const char *reason,
                            fs_err *err)
{
    fs_log_warn("record dead-lettered",
                json_pack("{s:s,s:i,s:I,s:s}", "topic", rd_kafka_topic_name(msg->rkt),
                          "partition", msg->partition, "offset", (json_int_t)msg->offset,
                          "reason", reason));
    if (l->committing) { /* rare: settle the commit, so the producer is ours again */
        if (commit_finish(l, err))
            return -1;
        if (l->need_reset)
            return fs_err_set(err, FS_ERR_ABORT, 0, "commit failed before a dead letter");
        if (fs_txn_loop_begin(l, err))
            return -1;
    }
    if (fs_kafka_dead_letter(l->producer, msg, reason, err)) {
        if (err->code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            /* its copy, with the dlq-* headers, is over message.max.bytes: refused by the
             * client before sending, at every attempt. Aborting would read the record again
             * and again, and stop the loop's partition for ever; it stays in its topic. */
            fs_log_error("dead letter too large to write; the record is only in its topic",
                         json_pack("{s:s,s:i,s:I,s:I}", "topic", rd_kafka_topic_name(msg->rkt), "partition",
                                   msg->partition, "offset", (json_int_t)msg->offset, "bytes",
                                   (json_int_t)msg->len));
            return 0;
        }
        if (err->cls != FS_ERR_FATAL)
            err->cls = FS_ERR_ABORT;
        return -1;
    }
    return 0;
}

const fs_txn_loop_stats *fs_txn_loop_stats_get(const fs_txn_loop *l)
{
    return &l->stats;
}

rd_kafka_t *fs_txn_loop_consumer(fs_txn_loop *l)
{
    return l->consumer;
}
