/* A producer's fatal error (fs/kafka.h, fs_kafka_renew_if_fatal and fs_kafka_retire), on
 * librdkafka's mock cluster: the failed producer is replaced by a working one, and every
 * message the failed one held gets its delivery report (none is dropped unreported, which
 * would leave a request waiting on it forever). And a reader's dead letters settled
 * (fs_kafka_dlq_settle) only once the broker has them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/kafka.h"

#include <librdkafka/rdkafka_mock.h>
#include <string.h>
#include <time.h>

typedef struct {
    int ok, failed;
} reports;

static void count_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    reports *r = opaque;
    if (m->err)
        r->failed++;
    else
        r->ok++;
}

typedef struct {
    rd_kafka_t *host; /* the mock cluster's handle */
    rd_kafka_mock_cluster_t *mc;
    fs_common_config cfg;
} cluster;

static int setup(void **state)
{
    static cluster c;
    char e[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", e, sizeof e);
    c.host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!c.host)
        return -1;
    c.mc = rd_kafka_mock_cluster_new(c.host, 1);
    if (!c.mc || rd_kafka_mock_topic_create(c.mc, "renew-test", 1, 1) ||
        rd_kafka_mock_topic_create(c.mc, FS_TOPIC_DEADLETTER, 1, 1))
        return -1;
    c.cfg = (fs_common_config){.brokers = rd_kafka_mock_cluster_bootstraps(c.mc), .txn_timeout_ms = 60000};
    *state = &c;
    return 0;
}

static int teardown(void **state)
{
    cluster *c = *state;
    rd_kafka_mock_cluster_destroy(c->mc);
    rd_kafka_destroy(c->host);
    return 0;
}

static int produce(rd_kafka_t *p, int n)
{
    for (int i = 0; i < n; i++)
        if (rd_kafka_producev(p, RD_KAFKA_V_TOPIC("renew-test"), RD_KAFKA_V_VALUE("v", 1),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END))
            return -1;
    return 0;
}

static void test_failed_producer_replaced_every_message_reported(void **state)
{
    cluster *c = *state;
    reports r = {0};
    /* a long linger: the messages are still queued when the producer fails */
    const fs_kafka_client spec = {.role = FS_KAFKA_PRODUCER, .client_id = "renew-test", .dr = count_dr,
                                  .opaque = &r, .extra = (const char *const[]){"linger.ms", "5000", NULL}};
    fs_err err = {0};
    rd_kafka_t *p = fs_kafka_new(&c->cfg, &spec, &err);
    assert_non_null(p);
    assert_int_equal(fs_kafka_renew_if_fatal(&p, &c->cfg, &spec, "unit", 1000, &err), 0); /* not failed */
    assert_int_equal(produce(p, 10), 0);
    assert_int_equal(rd_kafka_test_fatal_error(p, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "unit"),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(produce(p, 1), -1); /* a fatal producer refuses everything */
    assert_int_equal(fs_kafka_renew_if_fatal(&p, &c->cfg, &spec, "unit", 1000, &err), 1);
    assert_non_null(p); /* (maybe at the old one's address: it is freed) */
    assert_int_equal(r.ok + r.failed, 10); /* each queued message reported (failed: purged) */
    assert_int_equal(r.failed, 10);
    assert_int_equal(rd_kafka_fatal_error(p, NULL, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(produce(p, 3), 0); /* the replacement works */
    assert_int_equal(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(r.ok, 3);
    assert_int_equal(fs_kafka_renew_if_fatal(&p, &c->cfg, &spec, "unit", 1000, &err), 0);
    rd_kafka_destroy(p);
}

static void test_null_is_made(void **state)
{
    cluster *c = *state;
    const fs_kafka_client spec = {.role = FS_KAFKA_PRODUCER, .client_id = "renew-test"};
    fs_err err = {0};
    rd_kafka_t *p = NULL;
    assert_int_equal(fs_kafka_renew_if_fatal(&p, &c->cfg, &spec, "unit", 1000, &err), 1);
    assert_non_null(p);
    fs_kafka_retire(p, 1000); /* nothing held: destroyed at once */
    fs_kafka_retire(NULL, 1000);
    /* a setting librdkafka refuses: -1 with the reason, *p left NULL */
    const fs_kafka_client bad = {.role = FS_KAFKA_PRODUCER, .client_id = "renew-test",
                                 .extra = (const char *const[]){"linger.ms", "not a number", NULL}};
    p = NULL;
    assert_int_equal(fs_kafka_renew_if_fatal(&p, &c->cfg, &bad, "unit", 1000, &err), -1);
    assert_null(p);
    assert_true(err.msg[0] != '\0');
}

/* A record read back from the mock cluster, to dead-letter (its consumer in *consumer). */
static rd_kafka_message_t *read_one(cluster *c, rd_kafka_t **consumer)
{
    char e[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", c->cfg.brokers, e, sizeof e) ||
        rd_kafka_conf_set(conf, "group.id", "dlq-test-reader", e, sizeof e) ||
        rd_kafka_conf_set(conf, "log_level", "0", e, sizeof e))
        return NULL;
    *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!*consumer)
        return NULL;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "renew-test", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(*consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    for (int i = 0; i < 300; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(*consumer, 100);
        if (m && !m->err)
            return m;
        if (m)
            rd_kafka_message_destroy(m);
    }
    return NULL;
}

/* A reader's dead letters (fs_kafka_dlq_write, fs_kafka_dlq_report, fs_kafka_dlq_settle):
 * settled only when the broker has every one; one that fails (a timeout, with the broker
 * away) or that is still on its way when the wait ends makes the settle fail, once; a stop
 * ends the wait; one the broker refuses for good (too large) counts as settled. */
static void test_dead_letters_settle(void **state)
{
    cluster *c = *state;
    fs_err err = {0};
    const fs_kafka_client slow = {.role = FS_KAFKA_PRODUCER, .client_id = "dlq-test", .dr = fs_kafka_dlq_report,
                                  .extra = (const char *const[]){"message.timeout.ms", "30000", NULL}};
    const fs_kafka_client quick = {.role = FS_KAFKA_PRODUCER, .client_id = "dlq-test", .dr = fs_kafka_dlq_report,
                                   .extra = (const char *const[]){"message.timeout.ms", "300", NULL}};
    /* the record to dead-letter, by a producer of its own (its report is nobody's dead letter) */
    const fs_kafka_client plain = {.role = FS_KAFKA_PRODUCER, .client_id = "dlq-src"};
    rd_kafka_t *w = fs_kafka_new(&c->cfg, &plain, &err);
    assert_non_null(w);
    assert_int_equal(produce(w, 1), 0);
    assert_int_equal(rd_kafka_flush(w, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(w);
    rd_kafka_t *p = fs_kafka_new(&c->cfg, &slow, &err);
    assert_non_null(p);
    rd_kafka_t *reader = NULL;
    rd_kafka_message_t *src = read_one(c, &reader);
    assert_non_null(src);
    assert_int_equal(fs_kafka_dlq_settle(p, 1000, NULL, &err), 0); /* nothing written */
    for (int i = 0; i < 3; i++)
        assert_int_equal(fs_kafka_dlq_write(p, src, "unit", &err), 0);
    assert_int_equal(fs_kafka_dlq_settle(p, 30000, NULL, &err), 0);
    /* refused for good by the broker (too large): logged, and settled */
    rd_kafka_mock_push_request_errors(c->mc, 0 /* Produce */, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    assert_int_equal(fs_kafka_dlq_write(p, src, "unit", &err), 0);
    assert_int_equal(fs_kafka_dlq_settle(p, 30000, NULL, &err), 0);
    /* the broker away: the dead letters time out (300 ms) within the wait, and are counted */
    assert_int_equal(rd_kafka_mock_broker_set_down(c->mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_t *q = fs_kafka_new(&c->cfg, &quick, &err);
    assert_non_null(q);
    assert_int_equal(fs_kafka_dlq_write(q, src, "unit", &err), 0);
    assert_int_equal(fs_kafka_dlq_write(q, src, "unit", &err), 0);
    assert_int_equal(fs_kafka_dlq_settle(q, 30000, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "2 dead letter(s) not delivered"));
    assert_int_equal(fs_kafka_dlq_settle(q, 1000, NULL, &err), 0); /* counted once */
    rd_kafka_destroy(q);
    /* still on its way when the wait ends: purged, reported, counted once */
    assert_int_equal(fs_kafka_dlq_write(p, src, "unit", &err), 0);
    assert_int_equal(fs_kafka_dlq_settle(p, 300, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "1 dead letter(s) not delivered in time"));
    assert_int_equal(fs_kafka_dlq_settle(p, 1000, NULL, &err), 0);
    volatile int stop = 1; /* a stop ends the wait (of 10 minutes here) at once */
    assert_int_equal(fs_kafka_dlq_write(p, src, "unit", &err), 0);
    time_t t0 = time(NULL);
    assert_int_equal(fs_kafka_dlq_settle(p, 600000, &stop, &err), -1);
    assert_true(time(NULL) - t0 < 60);
    assert_non_null(strstr(err.msg, "before the stop"));
    assert_int_equal(rd_kafka_mock_broker_set_up(c->mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(fs_kafka_dlq_write(p, src, "unit", &err), 0);
    assert_int_equal(fs_kafka_dlq_settle(p, 30000, NULL, &err), 0);
    rd_kafka_message_destroy(src);
    rd_kafka_consumer_close(reader);
    rd_kafka_destroy(reader);
    rd_kafka_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_producer_replaced_every_message_reported),
        cmocka_unit_test(test_null_is_made),
        cmocka_unit_test(test_dead_letters_settle),
    };
    return cmocka_run_group_tests_name("kafka_renew", tests, setup, teardown);
}
