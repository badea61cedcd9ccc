/* Test worker for the exactly-once kill test: a stateful consume-transform-produce step on
 * the common transactional loop.
 *
 *   eos_worker INPUT_TOPIC OUTPUT_TOPIC GROUP INSTANCE_ID
 *
 * For every input record (key K, value = input sequence number) it increments the running
 * count of K and writes "<seq> <count>" to OUTPUT_TOPIC, same key, same partition number.
 * The counts are its state; on assignment it rebuilds them by reading its own output
 * partitions to the end, exactly as the inventory processor rebuilds stock from its
 * changelog. A record whose value is "poison" is dead-lettered. If any input were lost,
 * doubled, or handled against stale state, the output would show a missing or repeated
 * sequence number or a gap/repeat in some key's counts. */
#include "fs/config.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/txn_loop.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_KEYS 4096

typedef struct {
    long fail_every;         /* EOS_FAIL_EVERY: fail (abortable) each seq divisible by it, once */
    unsigned char *failed;   /* seqs already failed once in this process */
    long fail_count;
    const char *out_topic;
    const fs_common_config *cfg;
    long counts[MAX_KEYS]; /* key "k<N>" -> running count; keys of unowned partitions are 0 */
} worker;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int key_index(const void *key, size_t len)
{
    char buf[16];
    if (!key || len < 2 || len >= sizeof buf || ((const char *)key)[0] != 'k')
        return -1;
    memcpy(buf, (const char *)key + 1, len - 1);
    buf[len - 1] = '\0';
    int k = atoi(buf);
    return k >= 0 && k < MAX_KEYS ? k : -1;
}

static int rebuild_cb(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    worker *w = ctx;
    (void)err;
    int k = key_index(m->key, m->key_len);
    char buf[64];
    if (k < 0 || m->len >= sizeof buf)
        return 0;
    memcpy(buf, m->payload, m->len);
    buf[m->len] = '\0';
    long seq, count;
    if (sscanf(buf, "%ld %ld", &seq, &count) == 2 && count > w->counts[k])
        w->counts[k] = count;
    return 0;
}

static int on_assign(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts,
                     fs_err *err)
{
    worker *w = app;
    (void)loop;
    rd_kafka_topic_partition_list_t *out = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_list_add(out, w->out_topic, parts->elems[i].partition)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    int rc = fs_kafka_read_to_end(w->cfg, out, rebuild_cb, w, 60000, err);
    rd_kafka_topic_partition_list_destroy(out);
    fs_log_info("state rebuilt", json_pack("{s:i}", "partitions", parts->cnt));
    return rc;
}

static void on_revoke(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts)
{
    worker *w = app;
    (void)loop;
    (void)parts;
    /* Simplest correct choice for a test: forget everything; on_assign rebuilds. */
    memset(w->counts, 0, sizeof w->counts);
}

static int on_record(void *app, fs_txn_loop *loop, const rd_kafka_message_t *m, fs_err *err)
{
    worker *w = app;
    int k = key_index(m->key, m->key_len);
    if (k < 0 || (m->len == 6 && !memcmp(m->payload, "poison", 6)))
        return fs_txn_loop_dead_letter(loop, m, k < 0 ? "bad key" : "poison value", err);
    char in[32], out[64];
    size_t n = m->len < sizeof in - 1 ? m->len : sizeof in - 1;
    memcpy(in, m->payload, n);
    in[n] = '\0';
    long seq = atol(in);
    if (w->fail_every > 0 && seq > 0 && seq % w->fail_every == 0 && seq < 10000000 &&
        !w->failed[seq]) {
        /* Fault injection: an abortable error after this batch already changed state. The
         * loop must abort, rebuild state from the changelog and re-deliver the batch. */
        w->failed[seq] = 1;
        w->fail_count++;
        w->counts[k] += 1000; /* corrupt in-memory state: only a rebuild can undo this */
        return fs_err_set(err, FS_ERR_ABORT, 0, "injected failure at seq %ld", seq);
    }
    w->counts[k]++;
    int len = snprintf(out, sizeof out, "%s %ld", in, w->counts[k]);
    fs_event_meta meta = {.event_type = "EosOutput", .correlation_id = in};
    return fs_txn_loop_produce(loop, w->out_topic, m->partition, m->key, m->key_len, out,
                               (size_t)len, fs_kafka_headers_new(&meta), err);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: eos_worker IN OUT GROUP INSTANCE\n");
        return 2;
    }
    fs_log_init("eos-worker", FS_LOG_INFO);
    fs_common_config cfg;
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    sigset_t term; /* (the test starts it with SIGTERM blocked: a stop sent before now waits) */
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &term, NULL);
    static worker w;
    w.out_topic = argv[2];
    w.fail_every = getenv("EOS_FAIL_EVERY") ? atol(getenv("EOS_FAIL_EVERY")) : 0;
    if (w.fail_every > 0)
        w.failed = calloc(10000000, 1);
    w.cfg = &cfg;
    const char *topics[] = {argv[1], NULL};
    fs_txn_loop_conf lc = {
        .common = &cfg,
        .group_id = argv[3],
        .instance_id = argv[4],
        .topics = topics,
        .app = &w,
        .on_assign = on_assign,
        .on_revoke = on_revoke,
        .on_record = on_record,
    };
    fs_txn_loop *loop = fs_txn_loop_new(&lc, &err);
    if (!loop) {
        fs_log_error("start failed", json_pack("{s:s}", "error", err.msg));
        return 1;
    }
    fs_log_info("started", json_pack("{s:s,s:i}", "instance", argv[4], "pid", (int)getpid()));
    int rc = fs_txn_loop_run(loop, &stop_flag, &err);
    const fs_txn_loop_stats *st = fs_txn_loop_stats_get(loop);
    fs_log_info("stopped", json_pack("{s:I,s:I,s:I,s:I,s:I,s:s}", "records", (json_int_t)st->records,
                                     "commits", (json_int_t)st->commits, "aborts",
                                     (json_int_t)st->aborts, "rewinds", (json_int_t)st->rewinds,
                                     "injected", (json_int_t)w.fail_count, "error", rc ? err.msg : ""));
    /* Each injected failure must have rolled the state back (the driver's counts prove the
     * rebuild was right). Not "aborts": a failure on the first record of a batch, while the
     * last batch commits, finds no transaction open, so nothing is aborted. */
    if (w.fail_count && st->rewinds < (uint64_t)w.fail_count) {
        fs_log_error("fewer rewinds than injected failures",
                     json_pack("{s:I,s:I}", "rewinds", (json_int_t)st->rewinds, "injected",
                               (json_int_t)w.fail_count));
        rc = 1;
    }
    fs_txn_loop_destroy(loop);
    free(w.failed);
    return rc ? 1 : 0;
}
