/* flashsale-inventory: the single writer of stock.
 *
 * Consumes inventory.commands (key = product id) with the transactional loop. For each
 * assigned partition it holds an inv_state, rebuilt on assignment by reading the same
 * partition of inventory.events (its changelog) to the end; then every command is decided
 * in log order (= arrival order: first come, first served), its event produced to
 * inventory.events on the same partition with the same key, and applied to the state; the
 * events and the consumed offsets commit in one transaction. One instance per partition at
 * a time (consumer group), so no locks.
 *
 * Snapshots (flashsale/inventory_snapshot.h): a rebuild starts from the partition's latest snapshot in
 * inventory.snapshots and replays only the changelog after it. A snapshot is written inside
 * the transaction once FLASHSALE_SNAPSHOT_EVENTS (100000) decisions were made since the last
 * one, or FLASHSALE_SNAPSHOT_INTERVAL_MS (300000) after it when anything was decided, and
 * right after a rebuild that replayed more than a tenth of that. One partition's snapshot at
 * a time: at most one per transaction, and (except right after a rebuild) the next one no
 * sooner than the interval divided by twice the partitions held (at most 30 s), taking the
 * partitions in turn, so their snapshots, which come due together after an assignment, are
 * spread out instead of stalling the decisions of every partition at once (make soak: six
 * in one transaction stalled decisions up to 736 ms). A child process serialises each one
 * (FLASHSALE_SNAPSHOT_CHILD, on by default; snapshot_fork below), so that the decisions of
 * every partition do not wait for it either.
 *
 * Settings: FLASHSALE_INSTANCE_ID (inventory-1; static membership and transactional id),
 * FLASHSALE_PAYMENT_WINDOW_MS (600000: pay_by = requested_at + window), the snapshot ones
 * above, and the common ones (batching: FLASHSALE_COMMIT_INTERVAL_MS /
 * FLASHSALE_COMMIT_MAX_RECORDS). */
#include "flashsale/inventory_codec.h"
#include "flashsale/inventory_snapshot.h"
#include "flashsale/inventory.h"

#include "fs/codec.h"
#include "fs/config.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/metrics.h"
#include "fs/reply.h"
#include "fs/txn_loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PARTITIONS 1024

typedef struct {
    fs_common_config cfg;
    fs_codec *codec;
    int64_t window;
    inv_state *parts[MAX_PARTITIONS];
    fs_reply_sender *reply; /* decisions straight to the waiting API (fs/reply.h) */
    uint64_t decided, duplicates, dead, replies, snapshots;
    int64_t last_report;
    /* snapshots, per partition */
    int64_t snapshot_events, snapshot_interval_ms;
    int64_t since_snapshot[MAX_PARTITIONS]; /* decisions since the last snapshot */
    int64_t snapshot_at[MAX_PARTITIONS];    /* monotonic ms of the last one */
    bool snapshot_due[MAX_PARTITIONS];
    int64_t skip_upto[MAX_PARTITIONS]; /* rebuild: events the loaded snapshot holds */
    int32_t assigned[MAX_PARTITIONS];  /* the partitions held now */
    int nassigned;
    rd_kafka_t *probe; /* changelog watermarks for snapshots (fs_kafka_probe_new) */
    fs_hist *h_snapshot_ms, *h_snapshot_bytes;
    int64_t last_snapshot_ms;  /* monotonic ms of the last snapshot of any partition */
    uint64_t last_snapshot_txn; /* transactions ended (committed + aborted) once its own has */
    int snapshot_next;          /* the index in assigned[] to look at first */
    bool snapshot_child_on;     /* FLASHSALE_SNAPSHOT_CHILD: cut snapshots in a child process */
    int32_t child_failed_part;  /* its last child failed: cut this partition's next one here
                                 * (-1: none) */
    struct {                    /* the snapshot a child is cutting (snapshot_fork) */
        bool cutting;           /* a child runs (pid) or was just reaped; fd is open */
        pid_t pid;
        int fd; /* memfd the child writes the state's bytes into */
        int32_t partition;
        int index;      /* its index in assigned[] */
        int64_t since;  /* its decisions since the last snapshot before the fork, given
                         * back if the child fails */
        uint64_t epoch; /* loop_epoch at the fork */
        int64_t changelog_offset, last_command_offset, horizon, decided_lines, reservations;
        double forked_us, fork_ms;
    } child;
} processor;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void snapshot_child_end(processor *p, bool kill_it);

typedef struct {
    processor *p;
    uint64_t applied, bad;
} rebuild_ctx;

static int rebuild_cb(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    rebuild_ctx *r = ctx;
    inv_event ev;
    fs_err e = {0};
    (void)err;
    inv_state *st = r->p->parts[m->partition];
    int rc = inv_event_decode_bytes(r->p->codec, m->payload, m->len, &ev, &e);
    if (rc == 0 && st && ev.command_offset >= 0 && ev.command_offset <= r->p->skip_upto[m->partition])
        return 0; /* in the snapshot already */
    if (rc || !st || inv_apply(st, &ev)) {
        /* Only this processor writes the changelog, so this means a corrupt log. Skipping
         * is the only way forward; the audit will name the record. */
        r->bad++;
        fs_log_error("changelog record skipped",
                     json_pack("{s:i,s:I,s:s}", "partition", m->partition, "offset",
                               (json_int_t)m->offset, "error", e.msg[0] ? e.msg : "inconsistent"));
        return 0;
    }
    r->applied++;
    return 0;
}

/* Rebuilds every assigned partition from its latest snapshot and the changelog after it
 * (or the whole changelog), all in one read. */
static int on_assign(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts,
                     fs_err *err)
{
    processor *p = app;
    (void)loop;
    snapshot_child_end(p, true); /* (an assignment may come without a revoke before it) */
    p->child_failed_part = -1;
    inv_snapshot_loaded *snaps = calloc((size_t)(parts->cnt ? parts->cnt : 1), sizeof *snaps);
    if (!snaps)
        return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
    for (int i = 0; i < parts->cnt; i++) {
        int32_t part = parts->elems[i].partition;
        if (part < 0 || part >= MAX_PARTITIONS) {
            free(snaps);
            return fs_err_set(err, FS_ERR_FATAL, 0, "partition %d out of range", part);
        }
        snaps[i].partition = part;
    }
    int64_t t0 = fs_mono_ms();
    fs_err serr = {0};
    if (inv_snapshot_read(&p->cfg, snaps, parts->cnt, p->window, 30000, &serr))
        fs_log_warn("snapshots not read, replaying the changelogs", json_pack("{s:s}", "error", serr.msg));
    int64_t t_snap = fs_mono_ms() - t0;
    rd_kafka_topic_partition_list_t *cl = rd_kafka_topic_partition_list_new(parts->cnt);
    size_t snap_bytes = 0;
    int from_snapshot = 0;
    for (int i = 0; i < parts->cnt; i++) {
        int32_t part = snaps[i].partition;
        inv_state_destroy(p->parts[part]);
        p->parts[part] = snaps[i].state ? snaps[i].state : inv_state_new(p->window);
        p->skip_upto[part] = snaps[i].state ? snaps[i].last_command_offset : -1;
        from_snapshot += snaps[i].state != NULL;
        snap_bytes += snaps[i].bytes;
        rd_kafka_topic_partition_list_add(cl, FS_TOPIC_INVENTORY_EVENTS, part)->offset =
            snaps[i].state ? snaps[i].changelog_offset : RD_KAFKA_OFFSET_BEGINNING;
        if (!p->parts[part]) {
            for (int k = i + 1; k < parts->cnt; k++)
                inv_state_destroy(snaps[k].state);
            free(snaps);
            rd_kafka_topic_partition_list_destroy(cl);
            return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        }
    }
    free(snaps);
    rebuild_ctx r = {p, 0, 0};
    int rc = fs_kafka_read_to_end(&p->cfg, cl, rebuild_cb, &r, 30000, err);
    rd_kafka_topic_partition_list_destroy(cl);
    if (rc)
        return -1;
    size_t products = 0, decided_lines = 0;
    json_t *retention = json_array(); /* partitions whose windows are not the defaults */
    p->nassigned = 0;
    for (int i = 0; i < parts->cnt; i++) {
        int32_t part = parts->elems[i].partition;
        p->assigned[p->nassigned++] = part;
        const inv_state *st = p->parts[part];
        if (inv_state_dedup_window(st) != INV_DEDUP_WINDOW_MS ||
            inv_state_sold_memory(st) != INV_SOLD_MEMORY_MS)
            json_array_append_new(retention, json_pack("{s:i,s:I,s:I}", "partition", part, "dedup_window_ms",
                                                       (json_int_t)inv_state_dedup_window(st), "sold_memory_ms",
                                                       (json_int_t)inv_state_sold_memory(st)));
        products += inv_state_product_count(p->parts[part]);
        decided_lines += inv_state_decided_count(p->parts[part]);
        p->since_snapshot[part] = 0;
        p->snapshot_at[part] = fs_mono_ms();
        /* a long replay is worth a snapshot at once, so the next owner is spared it */
        p->snapshot_due[part] = r.applied > (uint64_t)(p->snapshot_events / 10);
    }
    fs_log_info("partitions rebuilt",
                json_pack("{s:i,s:i,s:I,s:I,s:I,s:i,s:I,s:I,s:I,s:o}", "partitions", parts->cnt,
                          "from_snapshot", from_snapshot, "snapshot_bytes", (json_int_t)snap_bytes,
                          "snapshot_ms", (json_int_t)t_snap, "events", (json_int_t)r.applied,
                          "products", (int)products, "skipped", (json_int_t)r.bad, "ms",
                          (json_int_t)(fs_mono_ms() - t0), "decided_lines", (json_int_t)decided_lines,
                          "retention", retention));
    return 0;
}

typedef struct {
    fs_txn_loop *loop;
    int32_t partition;
} snap_out;

static int snap_produce(void *ctx, const char *key, const void *value, size_t len, fs_err *err)
{
    snap_out *o = ctx;
    if (fs_txn_loop_produce(o->loop, FS_TOPIC_INVENTORY_SNAPSHOTS, o->partition, key, strlen(key),
                            value, len, NULL, err))
        return -1;
    fs_txn_loop_count(o->loop);
    return 0;
}

/* Hands a cut snapshot (inv_state_save's bytes of a state whose last command offset and
 * horizon were lco and horizon) to the producer, in the open transaction. */
static int snapshot_put(fs_txn_loop *loop, int32_t part, const void *buf, size_t len, int64_t hw,
                        int64_t lco, int64_t horizon, fs_err *err)
{
    if (fs_txn_loop_begin(loop, err))
        return -1;
    snap_out o = {loop, part};
    return inv_snapshot_write_bytes(buf, len, hw, lco, horizon, snap_produce, &o, err);
}

static void snapshot_done(processor *p, fs_txn_loop *loop, int32_t part, size_t bytes, int64_t hw,
                          int64_t decided_lines, int64_t reservations, double write_ms, double cut_ms,
                          double fork_ms)
{
    const fs_txn_loop_stats *ls = fs_txn_loop_stats_get(loop);
    fs_hist_observe_ms(p->h_snapshot_ms, write_ms);
    fs_hist_observe_ms(p->h_snapshot_bytes, (double)bytes / 1024.0);
    p->snapshots++;
    /* the transactions that will have ended with the one it went into (with a commit
     * under way, that is the one after it) */
    p->last_snapshot_txn = ls->commits + ls->aborts + (fs_txn_loop_committing(loop) ? 1 : 0);
    fs_log_info("snapshot", json_pack("{s:i,s:I,s:I,s:I,s:I,s:f,s:f,s:f}", "partition", part, "bytes",
                                      (json_int_t)bytes, "changelog_offset", (json_int_t)hw,
                                      "decided_lines", (json_int_t)decided_lines, "reservations",
                                      (json_int_t)reservations, "write_ms", write_ms, "cut_ms", cut_ms,
                                      "fork_ms", fork_ms));
}

/* Cuts partition part's snapshot on the decision thread (every partition's decisions wait). */
static int snapshot_in_place(processor *p, fs_txn_loop *loop, int32_t part, const inv_state *st,
                             int64_t hw, fs_err *err)
{
    double t0 = fs_mono_us();
    void *buf = NULL;
    size_t len = 0;
    if (inv_state_save(st, &buf, &len))
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "snapshot: out of memory");
    int rc = snapshot_put(loop, part, buf, len, hw, inv_state_last_command_offset(st),
                          inv_state_horizon(st), err);
    free(buf);
    if (rc)
        return -1;
    double ms = (fs_mono_us() - t0) / 1000.0;
    snapshot_done(p, loop, part, len, hw, (int64_t)inv_state_decided_count(st),
                  (int64_t)inv_state_reservation_count(st), ms, ms, 0.0);
    return 0;
}

/* A child process cuts the snapshot: fork() gives it a copy-on-write image of the state as
 * it is now; it serialises the partition's state (inv_state_save) into a memfd and exits,
 * while this thread goes on deciding. snapshot_collect() hands the bytes to the producer
 * once it is done. The decision thread pays the fork (copying the page tables, during which
 * no thread of the process can fault a page in), the hand-over, and a copy-on-write fault
 * for each page any thread first writes while the child lives; not the serialisation, which
 * at perf/run's history (~100,000 decided lines per partition) stalled every partition's
 * decisions for 50-80 ms on an idle machine (perf/RESULTS.md, 2026-12-05).
 *
 * Consistency: the snapshot reflects the state at the fork. Every event in it was produced
 * before, in the transaction open then or an earlier one; it goes into the transaction open
 * when the child is done, that one or a later one. The loop commits one transaction at a
 * time and, when one fails, drops every later one and revokes the assignment (fs/txn_loop.h);
 * on_revoke and on_assign kill the child, and snapshot_collect drops a snapshot when the
 * loop aborted, rewound, rebalanced or restarted its producer since the fork. So the
 * snapshot commits only with every event it reflects, and never reflects one that aborted.
 *
 * The child touches only the state's memory, malloc (safe in a child of a threaded process
 * with glibc, which takes its locks around fork(); not promised by POSIX) and its memfd; it
 * ignores SIGTERM (the processor's stop kills it) and dies with the thread that forked it
 * (PR_SET_PDEATHSIG): the main thread, which runs the loop for the process's life, so forks
 * must stay on it. It inherits the process's other descriptors until it exits. The OOM
 * killer takes it first. Exit codes: 2 out of memory, 3 the memfd write failed, 4 the
 * processor was gone (or PR_SET_PDEATHSIG could not be set). */
/* What a snapshot's fork remembers, to learn later whether the loop aborted, rewound,
 * rebalanced or restarted its producer in between (snapshot_collect). */
static uint64_t loop_epoch(const fs_txn_loop_stats *ls)
{
    return ls->aborts + ls->rewinds + ls->rebalances + ls->producer_restarts;
}

static _Noreturn void snapshot_child_main(const inv_state *st, int fd, pid_t parent)
{
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
        _exit(4);
    (void)setpriority(PRIO_PROCESS, 0, 10); /* behind the decisions (best effort) */
    int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (adj >= 0) {
        ssize_t w = write(adj, "1000", 4);
        (void)w;
        close(adj);
    }
    void *buf = NULL;
    size_t len = 0;
    if (inv_state_save(st, &buf, &len))
        _exit(2);
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, (const char *)buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(3);
        off += (size_t)n;
    }
    _exit(0); /* no atexit handlers, no stdio: they belong to the parent's threads */
}

/* Forks the child that cuts part's snapshot. 0, or -1 (not forked: cut it in place). */
static int snapshot_fork(processor *p, int32_t part, int index, const inv_state *st, int64_t hw,
                         int64_t since, uint64_t epoch)
{
    int fd = memfd_create("flashsale-snapshot", MFD_CLOEXEC);
    pid_t pid = -1;
    double t0 = fs_mono_us();
    if (fd >= 0) {
        pid_t parent = getpid();
        pid = fork();
        if (pid == 0)
            snapshot_child_main(st, fd, parent);
    }
    if (pid < 0) {
        fs_log_warn("snapshot child not forked; cutting it on the decision thread",
                    json_pack("{s:i,s:s}", "partition", part, "error", strerror(errno)));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    double now = fs_mono_us();
    p->child.cutting = true;
    p->child.pid = pid;
    p->child.fd = fd;
    p->child.partition = part;
    p->child.index = index;
    p->child.since = since;
    p->child.epoch = epoch;
    p->child.changelog_offset = hw;
    p->child.last_command_offset = inv_state_last_command_offset(st);
    p->child.horizon = inv_state_horizon(st);
    p->child.decided_lines = (int64_t)inv_state_decided_count(st);
    p->child.reservations = (int64_t)inv_state_reservation_count(st);
    p->child.forked_us = now;
    p->child.fork_ms = (now - t0) / 1000.0;
    return 0;
}

/* Kills the child (if it still runs: kill = true), reaps it and closes its memfd. */
static void snapshot_child_end(processor *p, bool kill_it)
{
    if (!p->child.cutting)
        return;
    if (kill_it) {
        kill(p->child.pid, SIGKILL);
        while (waitpid(p->child.pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    close(p->child.fd);
    p->child.fd = -1;
    p->child.cutting = false;
}

/* The child failed: the partition's snapshot is due again, at once (the spacing between
 * snapshots aside), and cut in place. */
static void snapshot_child_failed(processor *p, const char *why, int code)
{
    int32_t part = p->child.partition;
    fs_log_warn("snapshot child failed; cutting it on the decision thread",
                json_pack("{s:i,s:s,s:i}", "partition", part, "reason", why, "code", code));
    p->since_snapshot[part] += p->child.since;
    p->snapshot_due[part] = true;
    p->child_failed_part = part;
    p->snapshot_next = p->child.index; /* (a revoke or an assignment would have ended the child) */
}

#define SNAPSHOT_CHILD_MAX_MS 60000.0 /* a child still cutting after this is killed */

/* The child's snapshot, if it is done: into the open transaction. 0, or -1 with *err. */
static int snapshot_collect(processor *p, fs_txn_loop *loop, fs_err *err)
{
    int status = 0;
    pid_t r = waitpid(p->child.pid, &status, WNOHANG);
    double cut_ms = (fs_mono_us() - p->child.forked_us) / 1000.0; /* (seen at this turn) */
    if (r == 0 || (r < 0 && errno == EINTR)) {
        if (cut_ms < SNAPSHOT_CHILD_MAX_MS)
            return 0; /* still cutting */
        snapshot_child_end(p, true);
        snapshot_child_failed(p, "still cutting after 60 s; killed", 0);
        return 0;
    }
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        int code = r < 0 ? errno : WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status);
        snapshot_child_end(p, false);
        snapshot_child_failed(p, r < 0 ? "not reaped" : WIFEXITED(status) ? "exited" : "killed by a signal",
                              code);
        return 0;
    }
    const fs_txn_loop_stats *ls = fs_txn_loop_stats_get(loop);
    if (loop_epoch(ls) != p->child.epoch) {
        /* the loop aborted, rewound, rebalanced or restarted its producer since the fork:
         * the state it copied may hold events that never committed */
        fs_log_info("snapshot dropped: the loop aborted or rewound while it was cut",
                    json_pack("{s:i}", "partition", p->child.partition));
        snapshot_child_end(p, false);
        return 0;
    }
    int32_t part = p->child.partition;
    double t0 = fs_mono_us();
    struct stat sb = {0};
    void *m = MAP_FAILED;
    int e = 0;
    const char *why = "its bytes could not be mapped";
    if (fstat(p->child.fd, &sb) != 0) {
        e = errno;
        why = "its bytes could not be examined";
    } else if (sb.st_size <= 0) {
        why = "it wrote nothing"; /* (no errno to tell) */
    } else {
        m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, p->child.fd, 0);
        e = m == MAP_FAILED ? errno : 0;
    }
    if (m == MAP_FAILED) {
        snapshot_child_end(p, false);
        snapshot_child_failed(p, why, e);
        return 0;
    }
    int rc = snapshot_put(loop, part, m, (size_t)sb.st_size, p->child.changelog_offset,
                          p->child.last_command_offset, p->child.horizon, err);
    munmap(m, (size_t)sb.st_size);
    int64_t hw = p->child.changelog_offset, lines = p->child.decided_lines, res = p->child.reservations;
    double fork_ms = p->child.fork_ms;
    snapshot_child_end(p, false);
    if (rc)
        return -1;
    double write_ms = fork_ms + (fs_mono_us() - t0) / 1000.0;
    snapshot_done(p, loop, part, (size_t)sb.st_size, hw, lines, res, write_ms, cut_ms, fork_ms);
    return 0;
}

/* Writes the snapshots that are due, into the open transaction (or forks the child that cuts
 * one; see snapshot_fork). */
static int on_tick(void *app, fs_txn_loop *loop, fs_err *err)
{
    processor *p = app;
    int64_t now = fs_mono_ms();
    if (p->child.cutting) {
        if (snapshot_collect(p, loop, err))
            return -1;
        if (p->child.cutting)
            return 0; /* one at a time */
    }
    if (p->nassigned == 0)
        return 0;
    const fs_txn_loop_stats *ls = fs_txn_loop_stats_get(loop);
    uint64_t txns = ls->commits + ls->aborts;
    int64_t gap = p->snapshot_interval_ms / (2 * p->nassigned);
    if (gap > 30000)
        gap = 30000;
    /* One snapshot per transaction: the one the last snapshot went into has ended. */
    if (p->snapshots > 0 && txns <= p->last_snapshot_txn)
        return 0;
    bool spaced = p->snapshots == 0 || now - p->last_snapshot_ms >= gap;
    /* from where the last one left off: a busy partition does not starve the others */
    for (int k = 0; k < p->nassigned; k++) {
        int i = (p->snapshot_next + k) % p->nassigned;
        int32_t part = p->assigned[i];
        inv_state *st = p->parts[part];
        if (!st)
            continue;
        /* after a rebuild at once (spares the next owner the replay); the others spread out */
        bool due = p->snapshot_due[part] ||
                   (spaced && (p->since_snapshot[part] >= p->snapshot_events ||
                               (p->since_snapshot[part] > 0 &&
                                now - p->snapshot_at[part] >= p->snapshot_interval_ms)));
        if (!due)
            continue;
        /* the changelog's high watermark: every event this state does not hold yet is
         * produced after now, so at or above it */
        int64_t lo, hw;
        rd_kafka_resp_err_t ke =
            rd_kafka_query_watermark_offsets(p->probe, FS_TOPIC_INVENTORY_EVENTS, part, &lo, &hw, 5000);
        if (ke) {
            fs_log_warn("snapshot postponed", json_pack("{s:i,s:s}", "partition", part, "error",
                                                        rd_kafka_err2str(ke)));
            p->snapshot_at[part] = now; /* try again after the interval */
            p->snapshot_due[part] = false;
            continue;
        }
        int64_t since = p->since_snapshot[part];
        p->since_snapshot[part] = 0;
        p->snapshot_at[part] = now;
        p->snapshot_due[part] = false;
        p->last_snapshot_ms = now;
        p->snapshot_next = (i + 1) % p->nassigned;
        if (p->snapshot_child_on && part != p->child_failed_part &&
            snapshot_fork(p, part, i, st, hw, since, loop_epoch(ls)) == 0)
            break; /* collected on a later turn */
        if (part == p->child_failed_part)
            p->child_failed_part = -1; /* its next one tries a child again */
        if (snapshot_in_place(p, loop, part, st, hw, err))
            return -1;
        break; /* the next one in a later transaction */
    }
    return 0;
}

static void on_revoke(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts)
{
    processor *p = app;
    (void)loop;
    snapshot_child_end(p, true); /* it copied a state that is being dropped */
    for (int i = 0; i < parts->cnt; i++) {
        int32_t part = parts->elems[i].partition;
        if (part >= 0 && part < MAX_PARTITIONS) {
            inv_state_destroy(p->parts[part]);
            p->parts[part] = NULL;
        }
    }
    p->nassigned = 0; /* (eager assignment: the whole assignment goes at once) */
}

static int on_record(void *app, fs_txn_loop *loop, const rd_kafka_message_t *m, fs_err *err)
{
    processor *p = app;
    inv_state *st = m->partition < MAX_PARTITIONS ? p->parts[m->partition] : NULL;
    if (!st)
        return fs_err_set(err, FS_ERR_ABORT, 0, "record of unassigned partition %d", m->partition);
    inv_command cmd;
    fs_err derr = {0};
    if (inv_command_decode_bytes(p->codec, m->payload, m->len, &cmd, &derr)) {
        p->dead++;
        return fs_txn_loop_dead_letter(loop, m, derr.msg, err);
    }
    cmd.offset = m->offset;
    cmd.logged_at = fs_kafka_record_time(m);
    if (m->offset <= inv_state_last_command_offset(st)) {
        /* Already answered in the changelog: the consumer offset was behind it (lost or
         * reset). Answering again could apply a restock twice. */
        p->duplicates++;
        fs_log_warn("command already answered, skipped",
                    json_pack("{s:i,s:I,s:I}", "partition", m->partition, "offset",
                              (json_int_t)m->offset, "answered_up_to",
                              (json_int_t)inv_state_last_command_offset(st)));
        return 0;
    }
    inv_event ev;
    if (inv_decide(st, &cmd, &ev) == INV_DUPLICATE) {
        p->duplicates++;
        fs_log_info("duplicate reservation ignored",
                    json_pack("{s:s,s:i}", "order_id", cmd.order_id, "item", cmd.item_index));
        return 0;
    }
    void *buf = NULL;
    size_t len = 0;
    if (inv_event_encode(p->codec, &ev, &buf, &len, err)) {
        err->cls = FS_ERR_FATAL; /* our own event does not encode: a bug, stop */
        return -1;
    }
    char cause[64] = "";
    fs_kafka_header_get(m, "event-id", cause, sizeof cause);
    fs_event_meta meta = {
        .event_type = inv_event_name(ev.type),
        .correlation_id = ev.order_id[0] ? ev.order_id : ev.product_id[0] ? ev.product_id : "retention",
        .causation_id = cause[0] ? cause : NULL,
        .occurred_at = ev.occurred_at,
    };
    int rc = fs_txn_loop_produce(loop, FS_TOPIC_INVENTORY_EVENTS, m->partition, m->key,
                                 m->key_len, buf, len, fs_kafka_headers_new(&meta), err);
    if (rc) {
        free(buf);
        return -1;
    }
    if (inv_apply(st, &ev)) {
        /* decide() produced an event apply() refuses: a bug; abort so nothing half-done
         * commits, and stop. */
        free(buf);
        return fs_err_set(err, FS_ERR_FATAL, 0, "event %s does not apply to the state it was decided on",
                          inv_event_name(ev.type));
    }
    if (ev.type == INV_EV_RETENTION_SET)
        fs_log_info("retention set",
                    json_pack("{s:i,s:I,s:I,s:I,s:s}", "partition", m->partition, "dedup_window_ms",
                              (json_int_t)ev.dedup_window_ms, "sold_memory_ms", (json_int_t)ev.sold_memory_ms,
                              "refuse_before", (json_int_t)inv_state_refuse_before(st), "actor", ev.actor_id));
    /* Answer at the decision: the waiting API gets the event now, before the commit. */
    char to[64], token[FS_REPLY_TOKEN_LEN + 1];
    if (ev.order_id[0] && fs_kafka_header_get(m, "reply-to", to, sizeof to) > 0 &&
        fs_kafka_header_get(m, "reply-token", token, sizeof token) > 0 &&
        fs_reply_send(p->reply, to, token, m->partition, buf, len) == 0)
        p->replies++;
    free(buf);
    p->decided++;
    p->since_snapshot[m->partition]++;
    return 0;
}

static void on_commit(void *app, fs_txn_loop *loop, size_t records)
{
    processor *p = app;
    (void)records;
    int64_t now = fs_mono_ms();
    if (now - p->last_report >= 10000) {
        const fs_txn_loop_stats *s = fs_txn_loop_stats_get(loop);
        fs_log_info("progress", json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "decided",
                                          (json_int_t)p->decided, "replies", (json_int_t)p->replies,
                                          "duplicates",
                                          (json_int_t)p->duplicates, "snapshots", (json_int_t)p->snapshots, "dead_lettered",
                                          (json_int_t)p->dead, "commits", (json_int_t)s->commits,
                                          "aborts", (json_int_t)s->aborts));
        p->last_report = now;
    }
}

int main(void)
{
    static processor p;
    fs_err err = {0};
    fs_log_init("inventory", FS_LOG_INFO);
    if (fs_common_config_load(&p.cfg, &err))
        fs_config_die(&err);
    fs_log_level lvl;
    fs_log_level_parse(p.cfg.log_level, &lvl);
    fs_log_init("inventory", lvl);
    const char *instance;
    if (fs_env_int("FLASHSALE_PAYMENT_WINDOW_MS", 600000, 1000, 7L * 24 * 3600 * 1000, &p.window,
                   &err) ||
        fs_env_str("FLASHSALE_INSTANCE_ID", "inventory-1", false, &instance, &err) ||
        fs_env_int("FLASHSALE_SNAPSHOT_EVENTS", 100000, 100, 100000000, &p.snapshot_events, &err) ||
        fs_env_int("FLASHSALE_SNAPSHOT_INTERVAL_MS", 300000, 1000, 86400000, &p.snapshot_interval_ms,
                   &err) ||
        fs_env_bool("FLASHSALE_SNAPSHOT_CHILD", true, &p.snapshot_child_on, &err))
        fs_config_die(&err);
    p.h_snapshot_ms = fs_hist_register("flashsale_inventory_snapshot_ms", "",
                                       "Time the decision thread spent on one partition's snapshot: cutting it"
                                       " and handing it to the producer, or with a child process (the default)"
                                       " the fork and the hand-over.");
    p.h_snapshot_bytes = fs_hist_register("flashsale_inventory_snapshot_kib", "",
                                          "Size of one partition's snapshot, KiB.");
    p.child_failed_part = -1;
    p.codec = fs_codec_new(&err);
    if (!p.codec)
        fs_config_die(&err);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGCHLD, SIG_DFL); /* not an ignored disposition inherited from the parent: the
                               * snapshot children are reaped here (waitpid) */
    const char *topics[] = {FS_TOPIC_INVENTORY_COMMANDS, NULL};
    fs_txn_loop_conf lc = {
        .common = &p.cfg,
        .group_id = FS_GROUP_INVENTORY,
        .instance_id = instance,
        .topics = topics,
        .app = &p,
        .on_assign = on_assign,
        .on_revoke = on_revoke,
        .on_record = on_record,
        .on_commit = on_commit,
        .on_tick = on_tick,
    };
    p.probe = fs_kafka_probe_new(&p.cfg, &err);
    fs_txn_loop *loop = p.probe ? fs_txn_loop_new(&lc, &err) : NULL;
    if (!loop) {
        fs_log_error("start failed", json_pack("{s:s}", "error", err.msg));
        if (p.probe)
            rd_kafka_destroy(p.probe);
        fs_codec_destroy(p.codec);
        return 1;
    }
    fs_log_info("started", json_pack("{s:s,s:s,s:I}", "instance", instance, "brokers",
                                     p.cfg.brokers, "payment_window_ms", (json_int_t)p.window));
    p.reply = fs_reply_sender_new(&err);
    if (!p.reply) /* replies are a fast path: without them the API waits for the commit */
        fs_log_warn("decision replies off", json_pack("{s:s}", "error", err.msg));
    fs_metrics_server *metrics = fs_metrics_serve_from_env(); /* FLASHSALE_METRICS_ADDR */
    int rc = fs_txn_loop_run(loop, &stop_flag, &err);
    if (rc)
        fs_log_error("stopped on error", json_pack("{s:s}", "error", err.msg));
    snapshot_child_end(&p, true);
    fs_txn_loop_destroy(loop);
    rd_kafka_destroy(p.probe);
    fs_metrics_serve_stop(metrics);
    fs_reply_sender_destroy(p.reply);
    for (int i = 0; i < MAX_PARTITIONS; i++)
        inv_state_destroy(p.parts[i]);
    fs_codec_destroy(p.codec);
    fs_log_info("stopped", json_pack("{s:I}", "decided", (json_int_t)p.decided));
    return rc ? 1 : 0;
}
