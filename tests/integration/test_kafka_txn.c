/* Transactions on the real broker:
 *  - a read_committed consumer never sees records of an aborted transaction, while a
 *    read_uncommitted one does (so the aborted records really were written);
 *  - fs_kafka_read_to_end, the changelog reader every worker rebuilds its state with, waits
 *    for a transaction that is open when it starts and includes its records once it
 *    commits, instead of stopping short at the last stable offset;
 *  - a transactional loop asked to stop while it cannot set up its partitions leaves
 *    cleanly (nothing of them was read), not as a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/config.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/txn_loop.h"
#include "it_kafka.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static fs_common_config cfg;

static void produce_n(rd_kafka_t *p, const char *topic, const char *prefix, int n)
{
    char v[64];
    for (int i = 0; i < n; i++) {
        int len = snprintf(v, sizeof v, "%s-%d", prefix, i);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(v, (size_t)len),
                                      RD_KAFKA_V_VALUE(v, (size_t)len),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 10);
        assert_int_equal(e, 0);
    }
}

static void txn(rd_kafka_t *p, const char *topic, const char *prefix, int n, int commit)
{
    assert_null(rd_kafka_begin_transaction(p));
    produce_n(p, topic, prefix, n);
    /* librdkafka purges unsent messages on abort: flush so that the aborted records really
     * are in the log (and the read_committed check means something). */
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_error_t *ke = commit ? rd_kafka_commit_transaction(p, -1)
                                  : rd_kafka_abort_transaction(p, -1);
    if (ke)
        fail_msg("end txn: %s", rd_kafka_error_string(ke));
}

typedef struct {
    int committed, aborted, other;
} counts;

static int count_cb(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    (void)err;
    counts *c = ctx;
    if (m->len >= 9 && !memcmp(m->payload, "committed", 9))
        c->committed++;
    else if (m->len >= 7 && !memcmp(m->payload, "aborted", 7))
        c->aborted++;
    else
        c->other++;
    return 0;
}

static rd_kafka_topic_partition_list_t *all_parts(const char *topic, int parts)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    return l;
}

/* read_uncommitted count, by hand (fs_kafka_read_to_end is read_committed only). */
static int count_uncommitted(const char *topic, int parts, int expect)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char e[256];
    rd_kafka_conf_set(c, "bootstrap.servers", cfg.brokers, e, sizeof e);
    rd_kafka_conf_set(c, "group.id", "it-uncommitted", e, sizeof e);
    rd_kafka_conf_set(c, "isolation.level", "read_uncommitted", e, sizeof e);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", e, sizeof e);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof e);
    rd_kafka_topic_partition_list_t *l = all_parts(topic, parts);
    rd_kafka_assign(rk, l);
    int n = 0;
    int64_t deadline = fs_mono_ms() + 20000;
    while (n < expect && fs_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m && !m->err)
            n++;
        if (m)
            rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

static void test_read_committed_never_sees_aborted(void **state)
{
    (void)state;
    char *topic = it_new_topic(&cfg, "abort", 3);
    assert_non_null(topic);
    rd_kafka_t *p = it_txn_producer(&cfg, topic);
    assert_non_null(p);
    txn(p, topic, "aborted-a", 500, 0);
    txn(p, topic, "committed-a", 500, 1);
    txn(p, topic, "aborted-b", 300, 0);
    txn(p, topic, "committed-b", 200, 1);
    rd_kafka_destroy(p);

    counts c = {0};
    fs_err err = {0};
    rd_kafka_topic_partition_list_t *l = all_parts(topic, 3);
    if (fs_kafka_read_to_end(&cfg, l, count_cb, &c, 30000, &err))
        fail_msg("read: %s", err.msg);
    rd_kafka_topic_partition_list_destroy(l);
    printf("read_committed: %d committed, %d aborted\n", c.committed, c.aborted);
    assert_int_equal(c.committed, 700);
    assert_int_equal(c.aborted, 0);
    assert_int_equal(c.other, 0);
    /* The aborted records are in the log: a read_uncommitted reader sees all 1,500. */
    int all = count_uncommitted(topic, 3, 1500);
    printf("read_uncommitted: %d records\n", all);
    assert_int_equal(all, 1500);
    free(topic);
}

typedef struct {
    rd_kafka_t *p;
    int delay_ms;
} committer;

static void *commit_later(void *arg)
{
    committer *c = arg;
    usleep((useconds_t)c->delay_ms * 1000);
    rd_kafka_error_t *ke = rd_kafka_commit_transaction(c->p, -1);
    if (ke) {
        fprintf(stderr, "commit: %s\n", rd_kafka_error_string(ke));
        rd_kafka_error_destroy(ke);
    }
    return NULL;
}

static void test_read_to_end_waits_for_open_transaction(void **state)
{
    (void)state;
    char *topic = it_new_topic(&cfg, "open", 2);
    assert_non_null(topic);
    rd_kafka_t *p = it_txn_producer(&cfg, topic);
    assert_non_null(p);
    txn(p, topic, "committed-first", 100, 1);
    assert_null(rd_kafka_begin_transaction(p));
    produce_n(p, topic, "committed-late", 50);
    assert_int_equal(rd_kafka_flush(p, 10000), 0); /* in the log, not yet committed */

    committer cm = {p, 1500};
    pthread_t t;
    pthread_create(&t, NULL, commit_later, &cm);
    counts c = {0};
    fs_err err = {0};
    rd_kafka_topic_partition_list_t *l = all_parts(topic, 2);
    int64_t t0 = fs_mono_ms();
    int rc = fs_kafka_read_to_end(&cfg, l, count_cb, &c, 30000, &err);
    int64_t waited = fs_mono_ms() - t0;
    pthread_join(t, NULL);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(p);
    if (rc)
        fail_msg("read: %s", err.msg);
    printf("read_to_end returned after %lld ms with %d committed records\n", (long long)waited,
           c.committed);
    assert_int_equal(c.committed, 150);
    assert_true(waited >= 1000);
    free(topic);
}

static void test_read_to_end_times_out_on_a_stuck_transaction(void **state)
{
    (void)state;
    char *topic = it_new_topic(&cfg, "stuck", 1);
    assert_non_null(topic);
    rd_kafka_t *p = it_txn_producer(&cfg, topic);
    assert_non_null(p);
    assert_null(rd_kafka_begin_transaction(p));
    produce_n(p, topic, "never", 5);
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    counts c = {0};
    fs_err err = {0};
    rd_kafka_topic_partition_list_t *l = all_parts(topic, 1);
    assert_int_equal(fs_kafka_read_to_end(&cfg, l, count_cb, &c, 2000, &err), -1);
    assert_int_equal(err.cls, FS_ERR_RETRIABLE);
    assert_non_null(strstr(err.msg, "timed out"));
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_error_t *ke = rd_kafka_abort_transaction(p, -1);
    assert_null(ke);
    rd_kafka_destroy(p);
    free(topic);
}

typedef struct {
    volatile sig_atomic_t *stop;
    int attempts;
    int watchdog_fired;
    int ticked_after, delivered; /* what must not happen, asserted after the run */
} failing_setup;

/* Every setup fails, as when the changelog cannot be read; the stop comes during the second. */
static int fail_assign(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts,
                       fs_err *err)
{
    (void)loop;
    (void)parts;
    failing_setup *f = app;
    if (++f->attempts == 2)
        *f->stop = 1;
    return fs_err_set(err, FS_ERR_RETRIABLE, 0, "the state cannot be rebuilt (test)");
}

static int no_record(void *app, fs_txn_loop *loop, const rd_kafka_message_t *m, fs_err *err)
{
    (void)loop;
    (void)m;
    (void)err;
    ((failing_setup *)app)->delivered++; /* from partitions that were never set up */
    return 0;
}

/* Nothing runs after the setup is given up: the worker's state may be half rebuilt. */
static int tick_before_stop(void *app, fs_txn_loop *loop, fs_err *err)
{
    (void)loop;
    (void)err;
    failing_setup *f = app;
    if (f->attempts >= 2)
        f->ticked_after++;
    return 0;
}

/* Stops the loop if the setup never comes (no assignment), so the test ends either way. */
static void *watchdog(void *arg)
{
    failing_setup *f = arg;
    for (int i = 0; i < 600 && !*f->stop; i++)
        usleep(100 * 1000);
    if (!*f->stop) {
        f->watchdog_fired = 1;
        *f->stop = 1;
    }
    return NULL;
}

static void test_stop_during_failing_setup_is_clean(void **state)
{
    (void)state;
    char *topic = it_new_topic(&cfg, "setup", 1);
    assert_non_null(topic);
    rd_kafka_t *p = it_txn_producer(&cfg, topic);
    assert_non_null(p);
    txn(p, topic, "committed", 3, 1); /* records the loop must not see */
    rd_kafka_destroy(p);
    volatile sig_atomic_t stop = 0;
    failing_setup f = {.stop = &stop};
    const char *const topics[] = {topic, NULL};
    fs_txn_loop_conf conf = {.common = &cfg, .group_id = topic, .instance_id = "0", .topics = topics,
                             .app = &f, .on_assign = fail_assign, .on_record = no_record,
                             .on_tick = tick_before_stop};
    fs_err err = {0};
    fs_txn_loop *l = fs_txn_loop_new(&conf, &err);
    if (!l)
        fail_msg("loop: %s", err.msg);
    pthread_t dog;
    assert_int_equal(pthread_create(&dog, NULL, watchdog, &f), 0);
    int rc = fs_txn_loop_run(l, &stop, &err);
    pthread_join(dog, NULL);
    fs_txn_loop_destroy(l);
    assert_false(f.watchdog_fired); /* the partitions were assigned, and set up twice */
    if (rc)
        fail_msg("a stop during a failing setup ended as an error: %s", err.msg);
    assert_int_equal(f.attempts, 2);
    assert_int_equal(f.delivered, 0);
    if (f.ticked_after)
        fail_msg("the loop ticked after it gave up a failing setup on stop");
    free(topic);
}

int main(void)
{
    fs_log_init("test-kafka-txn", FS_LOG_WARN);
    if (it_config(&cfg))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_committed_never_sees_aborted),
        cmocka_unit_test(test_read_to_end_waits_for_open_transaction),
        cmocka_unit_test(test_read_to_end_times_out_on_a_stuck_transaction),
        cmocka_unit_test(test_stop_during_failing_setup_is_clean),
    };
    return cmocka_run_group_tests_name("kafka_txn", tests, NULL, NULL);
}
