/* flashsale-kprobe: the Kafka floor under the order path, measured on the running broker.
 *
 * Produces N small records, one at a time every --interval-ms, to a scratch topic
 * (flashsale.probe, created with one partition if missing) and measures for each:
 *   durable   producev -> delivery report (idempotent producer, acks=all, linger --linger-ms)
 *   seen      producev -> a consumer (--isolation read_committed|read_uncommitted) polls it
 * and, with --txn, the same through a transactional producer that commits each record:
 *   commit    commit_transaction duration
 * Prints p50/p90/p99/max of each in ms. Nothing of flashsale runs in it: it is the control
 * that says how much of a hop is the broker's and how much is ours.
 *
 * Usage: flashsale-kprobe [--n 200] [--interval-ms 20] [--linger-ms 0] [--txn]
 *                         [--isolation read_committed] [--fetch-wait-ms 500]
 * Settings: FLASHSALE_KAFKA_BROKERS. */
#include "fs/config.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TOPIC "flashsale.probe"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n)
{
    if (n <= 0) {
        printf("%-8s no samples\n", what);
        return;
    }
    qsort(v, (size_t)n, sizeof *v, cmp);
    printf("%-8s n=%d p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms\n", what, n, v[n / 2],
           v[(int)(n * 0.9)], v[(int)(n * 0.99) < n ? (int)(n * 0.99) : n - 1], v[n - 1]);
}

static double delivered_at;
static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    if (!m->err)
        delivered_at = now_us();
}

int main(int argc, char **argv)
{
    long n = 200, interval = 20, linger = 0, fetch_wait = -1;
    int txn = 0;
    const char *isolation = "read_committed";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = atol(argv[++i]);
        else if (!strcmp(argv[i], "--interval-ms") && i + 1 < argc)
            interval = atol(argv[++i]);
        else if (!strcmp(argv[i], "--linger-ms") && i + 1 < argc)
            linger = atol(argv[++i]);
        else if (!strcmp(argv[i], "--fetch-wait-ms") && i + 1 < argc)
            fetch_wait = atol(argv[++i]);
        else if (!strcmp(argv[i], "--isolation") && i + 1 < argc)
            isolation = argv[++i];
        else if (!strcmp(argv[i], "--txn"))
            txn = 1;
        else {
            fprintf(stderr, "usage: %s [--n N] [--interval-ms MS] [--linger-ms MS] [--txn] "
                            "[--isolation read_committed|read_uncommitted] [--fetch-wait-ms MS]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n < 1 || n > 1000000)
        n = 200;
    fs_log_init("kprobe", FS_LOG_WARN);
    fs_common_config cfg;
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    rd_kafka_t *admin = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-kprobe-admin"}, &err);
    if (!admin || fs_kafka_create_topic(admin, TOPIC, 1, (int)cfg.replication, "3600000", 10000, &err)) {
        fprintf(stderr, "kprobe: %s\n", err.msg);
        return 1;
    }
    rd_kafka_destroy(admin);

    char lg[16], fw[16], tid[64];
    snprintf(lg, sizeof lg, "%ld", linger);
    snprintf(fw, sizeof fw, "%ld", fetch_wait);
    char u[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(u);
    snprintf(tid, sizeof tid, "flashsale-kprobe-%s", u);
    const char *pextra[] = {"linger.ms", lg, NULL};
    rd_kafka_t *p = fs_kafka_new(&cfg,
                                 &(fs_kafka_client){.role = txn ? FS_KAFKA_TXN : FS_KAFKA_PRODUCER,
                                                    .client_id = "flashsale-kprobe",
                                                    .transactional_id = tid,
                                                    .dr = on_dr,
                                                    .extra = pextra},
                                 &err);
    const char *cextra[] = {"isolation.level", isolation, fetch_wait >= 0 ? "fetch.wait.max.ms" : NULL, fw,
                            NULL};
    rd_kafka_t *c = p ? fs_kafka_new(&cfg,
                                     &(fs_kafka_client){.role = FS_KAFKA_CONSUMER,
                                                        .client_id = "flashsale-kprobe",
                                                        .extra = cextra},
                                     &err)
                      : NULL;
    if (!p || !c) {
        fprintf(stderr, "kprobe: %s\n", err.msg);
        return 1;
    }
    if (txn) {
        rd_kafka_error_t *ke = rd_kafka_init_transactions(p, 30000);
        if (ke) {
            fprintf(stderr, "kprobe: init_transactions: %s\n", rd_kafka_error_string(ke));
            return 1;
        }
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, TOPIC, 0)->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    /* let the consumer reach the end and the producer learn the leader */
    for (int i = 0; i < 20; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m)
            rd_kafka_message_destroy(m);
        rd_kafka_poll(p, 0);
    }
    double *durable = calloc((size_t)n, sizeof *durable), *seen = calloc((size_t)n, sizeof *seen),
           *commit = calloc((size_t)n, sizeof *commit);
    int nd = 0, ns = 0, nc = 0;
    fprintf(stderr, "kprobe: %ld records, every %ld ms, linger %ld ms, %s, consumer %s\n", n, interval,
            linger, txn ? "transactional (one commit per record)" : "idempotent", isolation);
    for (long i = 0; i < n; i++) {
        char val[32];
        snprintf(val, sizeof val, "%ld", i);
        delivered_at = 0;
        if (txn) {
            rd_kafka_error_t *ke = rd_kafka_begin_transaction(p);
            if (ke) {
                fprintf(stderr, "kprobe: begin: %s\n", rd_kafka_error_string(ke));
                return 1;
            }
        }
        double t0 = now_us();
        if (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(0),
                              RD_KAFKA_V_VALUE(val, strlen(val)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END))
            continue;
        double tc = 0;
        if (txn) {
            double c0 = now_us();
            rd_kafka_error_t *ke = rd_kafka_commit_transaction(p, -1);
            if (ke) {
                fprintf(stderr, "kprobe: commit: %s\n", rd_kafka_error_string(ke));
                return 1;
            }
            tc = now_us() - c0;
            commit[nc++] = tc / 1000.0;
        }
        bool got = false;
        while (now_us() - t0 < 5e6 && !got) {
            rd_kafka_poll(p, 0);
            rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 1);
            if (m) {
                if (!m->err && m->len == strlen(val) && !memcmp(m->payload, val, m->len)) {
                    seen[ns++] = (now_us() - t0) / 1000.0;
                    got = true;
                }
                rd_kafka_message_destroy(m);
            }
        }
        while (!delivered_at && now_us() - t0 < 5e6)
            rd_kafka_poll(p, 1);
        if (delivered_at)
            durable[nd++] = (delivered_at - t0) / 1000.0;
        if (i % 50 == 49)
            fprintf(stderr, "kprobe: %ld/%ld\n", i + 1, n);
        usleep((useconds_t)(interval * 1000));
    }
    report("durable", durable, nd);
    report("seen", seen, ns);
    if (txn)
        report("commit", commit, nc);
    free(durable), free(seen), free(commit);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_flush(p, 5000);
    rd_kafka_destroy(p);
    return 0;
}
