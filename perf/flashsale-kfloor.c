/* flashsale-kfloor: the Kafka floor of the order path at a sustained rate.
 *
 * The order path without flashsale's logic: nothing but the Kafka work each order costs,
 * with the same clients, settings and guarantees as flashsale's own.
 *   - "API": an idempotent producer (acks=all, linger 0, as the API's command producer)
 *     sends one ~150-byte command per order at --rate orders/s (open loop: each has a due
 *     time), keyed by one of --products products, to flashsale.floor.commands;
 *   - "processor": the common transactional loop (fs_txn_loop: read_committed consumer,
 *     transactional producer, group commit, pipelined commits) writes one ~200-byte event
 *     per command to flashsale.floor.events in its transaction and answers at once by UDP
 *     datagram, as the inventory processor answers the API before its commit;
 *   - "readers": --readers read_committed followers of the events (the API's decision
 *     stream, the order saga, the projectors and the notifier each read them in flashsale).
 * With --saga, the rest of an order's records as flashsale writes them (decisions only):
 *   - the API's recorded answer: one ~120-byte record per order on a producer of its own
 *     (linger 100 ms, as orders.answers);
 *   - "order saga": a second transactional loop reads the events and forwards each to the
 *     order's partition (one ~300-byte record, keyed by order), reads that forward back and
 *     writes the order's status and its notification (~300 and ~200 bytes), as the order
 *     saga does with inventory.events -> orders.commands -> orders.events + notifications;
 *   - the readers follow the statuses as well as the events, and one more reader (the
 *     notifier) follows the notifications.
 * That is six records and two transactional hops per order, as in flashsale.
 * Latency is due time -> answer received (coordinated omission corrected). The machine's CPU
 * (/proc/stat), this process's and the broker's (--broker-pid) are read over the measured
 * window. Prints one JSON object on stdout; progress on stderr.
 *
 * Usage: flashsale-kfloor --rate N [--seconds 20] [--warmup 3] [--readers 5]
 *                         [--products 1000] [--broker-pid PID]
 * Settings: FLASHSALE_KAFKA_BROKERS, FLASHSALE_PARTITIONS, FLASHSALE_COMMIT_* as the services. */
#include "fs/config.h"
#include "fs/follow.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/txn_loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CMD_TOPIC "flashsale.floor.commands"
#define EVT_TOPIC "flashsale.floor.events"
#define ANS_TOPIC "flashsale.floor.answers"
#define FWD_TOPIC "flashsale.floor.forwards"
#define STATUS_TOPIC "flashsale.floor.statuses"
#define NOTE_TOPIC "flashsale.floor.notifications"

typedef struct {
    uint64_t seq;
    double due_us;
    char pad[134];
} command;

typedef struct {
    fs_common_config cfg;
    long rate, seconds, warmup, readers, products, saga;
    int broker_pid;
    int udp; /* the "API"'s answer socket */
    struct sockaddr_in udp_addr;
    int worker_udp;
    volatile sig_atomic_t stop_worker, stop_saga;
    atomic_int assigned, gen_done, stop_readers;
    atomic_long sent, produce_errors, answered, events_read;
    double t0, measure_from, measure_to; /* first due time; due times counted */
    double *lat;
    long lat_cap;
    atomic_long nlat;
} floor_run;

static int on_assign(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts, fs_err *err)
{
    (void)loop, (void)err;
    floor_run *r = app;
    if (parts->cnt > 0)
        atomic_store(&r->assigned, 1);
    return 0;
}

static int on_record(void *app, fs_txn_loop *loop, const rd_kafka_message_t *m, fs_err *err)
{
    floor_run *r = app;
    char ev[200];
    memset(ev, 'e', sizeof ev);
    memcpy(ev, m->payload, m->len < sizeof ev ? m->len : sizeof ev);
    if (fs_txn_loop_produce(loop, EVT_TOPIC, m->partition, m->key, m->key_len, ev, sizeof ev, NULL, err))
        return -1;
    if (m->len >= 16) /* the answer, before the commit */
        sendto(r->worker_udp, m->payload, 16, MSG_DONTWAIT, (const struct sockaddr *)&r->udp_addr,
               sizeof r->udp_addr);
    return 0;
}

/* The order saga's hop: an event is forwarded to the order's partition; a forward becomes
 * the order's status and its notification. */
static int on_saga_record(void *app, fs_txn_loop *loop, const rd_kafka_message_t *m, fs_err *err)
{
    (void)app;
    char rec[300], key[24];
    memset(rec, 's', sizeof rec);
    memcpy(rec, m->payload, m->len < sizeof rec ? m->len : sizeof rec);
    uint64_t seq = 0;
    if (m->len >= sizeof seq)
        memcpy(&seq, m->payload, sizeof seq);
    int kl = snprintf(key, sizeof key, "o%llu", (unsigned long long)seq);
    if (!strcmp(rd_kafka_topic_name(m->rkt), EVT_TOPIC))
        return fs_txn_loop_produce(loop, FWD_TOPIC, RD_KAFKA_PARTITION_UA, key, (size_t)kl, rec, sizeof rec, NULL,
                                   err);
    return fs_txn_loop_produce(loop, STATUS_TOPIC, m->partition, key, (size_t)kl, rec, sizeof rec, NULL, err) ||
                   fs_txn_loop_produce(loop, NOTE_TOPIC, RD_KAFKA_PARTITION_UA, key, (size_t)kl, rec, 200, NULL,
                                       err)
               ? -1
               : 0;
}

static int on_saga_assign(void *app, fs_txn_loop *loop, const rd_kafka_topic_partition_list_t *parts, fs_err *err)
{
    (void)app, (void)loop, (void)parts, (void)err;
    return 0;
}

/* Runs one transactional loop until *stop, then prints its counts. */
static void run_loop(const fs_txn_loop_conf *lc, volatile sig_atomic_t *stop, const char *name)
{
    fs_err err = {0};
    fs_txn_loop *loop = fs_txn_loop_new(lc, &err);
    if (!loop || fs_txn_loop_run(loop, stop, &err))
        fprintf(stderr, "kfloor: %s: %s\n", name, err.msg);
    if (loop) {
        const fs_txn_loop_stats *st = fs_txn_loop_stats_get(loop);
        fprintf(stderr, "kfloor: %s: %llu records in %llu transactions, %llu aborts\n", name,
                (unsigned long long)st->records, (unsigned long long)st->commits,
                (unsigned long long)st->aborts);
    }
    fs_txn_loop_destroy(loop);
}

static void *saga_main(void *arg)
{
    floor_run *r = arg;
    const char *topics[] = {EVT_TOPIC, FWD_TOPIC, NULL};
    fs_txn_loop_conf lc = {.common = &r->cfg, .group_id = "flashsale-floor-saga", .instance_id = "saga-1",
                           .topics = topics, .app = r, .on_assign = on_saga_assign, .on_record = on_saga_record};
    run_loop(&lc, &r->stop_saga, "saga");
    return NULL;
}

static void *worker_main(void *arg)
{
    floor_run *r = arg;
    /* one group for every run: a run goes on from the commands the previous one committed */
    const char *topics[] = {CMD_TOPIC, NULL};
    fs_txn_loop_conf lc = {.common = &r->cfg, .group_id = "flashsale-floor", .instance_id = "floor-1", .topics = topics,
                           .app = r, .on_assign = on_assign, .on_record = on_record};
    run_loop(&lc, &r->stop_worker, "processor");
    return NULL;
}

/* A follower of the events (and, with --saga, the statuses), or of the notifications. */
static void follow(floor_run *r, bool notes)
{
    fs_err err = {0};
    rd_kafka_topic_partition_list_t *from = rd_kafka_topic_partition_list_new(2 * (int)r->cfg.partitions);
    for (int p = 0; p < r->cfg.partitions; p++) {
        if (notes) {
            rd_kafka_topic_partition_list_add(from, NOTE_TOPIC, p)->offset = RD_KAFKA_OFFSET_END;
            continue;
        }
        rd_kafka_topic_partition_list_add(from, EVT_TOPIC, p)->offset = RD_KAFKA_OFFSET_END;
        if (r->saga)
            rd_kafka_topic_partition_list_add(from, STATUS_TOPIC, p)->offset = RD_KAFKA_OFFSET_END;
    }
    fs_follower *f = fs_follower_new(&r->cfg, "flashsale-floor-reader", from, NULL, 30000, &err);
    rd_kafka_topic_partition_list_destroy(from);
    if (!f) {
        fprintf(stderr, "kfloor: reader: %s\n", err.msg);
        return;
    }
    while (!atomic_load(&r->stop_readers)) {
        rd_kafka_message_t *m = fs_follower_poll(f, 100);
        if (m) {
            if (!m->err)
                atomic_fetch_add(&r->events_read, 1);
            rd_kafka_message_destroy(m);
        }
    }
    fs_follower_destroy(f);
}

static void *reader_main(void *arg)
{
    follow(arg, false);
    return NULL;
}

static void *notes_main(void *arg)
{
    follow(arg, true);
    return NULL;
}

static void *answers_main(void *arg)
{
    floor_run *r = arg;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    setsockopt(r->udp, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (;;) {
        char buf[64];
        ssize_t n = recv(r->udp, buf, sizeof buf, 0);
        double now = fs_mono_us();
        if (n < 16) {
            if (atomic_load(&r->gen_done) && now > r->measure_to + 5e6)
                break;
            continue;
        }
        command c;
        memcpy(&c, buf, 16);
        if (c.due_us < r->t0) /* an earlier run's command */
            continue;
        atomic_fetch_add(&r->answered, 1);
        if (c.due_us >= r->measure_from && c.due_us < r->measure_to) {
            long i = atomic_fetch_add(&r->nlat, 1);
            if (i < r->lat_cap)
                r->lat[i] = (now - c.due_us) / 1000.0;
        }
        if (atomic_load(&r->gen_done) && (long)atomic_load(&r->answered) >= atomic_load(&r->sent))
            break;
    }
    return NULL;
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    floor_run *r = opaque;
    if (m->err)
        atomic_fetch_add(&r->produce_errors, 1);
}

static void *generate(void *arg)
{
    floor_run *r = arg;
    fs_err err = {0};
    const char *extra[] = {"linger.ms", "0", NULL};
    rd_kafka_t *p = fs_kafka_new(&r->cfg,
                                 &(fs_kafka_client){.role = FS_KAFKA_PRODUCER, .client_id = "flashsale-floor-api",
                                                    .dr = on_dr, .opaque = r, .extra = extra},
                                 &err);
    if (!p) {
        fprintf(stderr, "kfloor: producer: %s\n", err.msg);
        exit(1);
    }
    const char *aextra[] = {"linger.ms", "100", NULL};
    rd_kafka_t *ans = !r->saga ? NULL
                               : fs_kafka_new(&r->cfg,
                                              &(fs_kafka_client){.role = FS_KAFKA_PRODUCER,
                                                                 .client_id = "flashsale-floor-answers",
                                                                 .extra = aextra},
                                              &err);
    if (r->saga && !ans) {
        fprintf(stderr, "kfloor: answers producer: %s\n", err.msg);
        exit(1);
    }
    double t0 = r->t0;
    long total = (r->warmup + r->seconds) * r->rate;
    unsigned seed = 12345;
    long last_report = 0;
    for (long i = 0; i < total; i++) {
        command c = {.seq = (uint64_t)i, .due_us = t0 + (double)i * 1e6 / (double)r->rate};
        memset(c.pad, 'c', sizeof c.pad);
        for (;;) {
            double wait = c.due_us - fs_mono_us();
            if (wait <= 0)
                break;
            rd_kafka_poll(p, 0);
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wait * 1000)};
            if (wait > 1000)
                ts.tv_nsec = 1000000;
            nanosleep(&ts, NULL);
        }
        char key[24];
        int kl = snprintf(key, sizeof key, "p%ld", (long)(rand_r(&seed) % r->products));
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(CMD_TOPIC), RD_KAFKA_V_KEY(key, (size_t)kl),
                                      RD_KAFKA_V_VALUE(&c, sizeof c), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 1);
        if (e)
            atomic_fetch_add(&r->produce_errors, 1);
        else
            atomic_fetch_add(&r->sent, 1);
        if (ans) { /* the recorded answer (sent with the command: its timing does not matter) */
            char a[120];
            memset(a, 'a', sizeof a);
            int ol = snprintf(key, sizeof key, "o%ld", i);
            if (rd_kafka_producev(ans, RD_KAFKA_V_TOPIC(ANS_TOPIC), RD_KAFKA_V_KEY(key, (size_t)ol),
                                  RD_KAFKA_V_VALUE(a, sizeof a), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_END))
                atomic_fetch_add(&r->produce_errors, 1);
            rd_kafka_poll(ans, 0);
        }
        rd_kafka_poll(p, 0);
        long sec = (long)((fs_mono_us() - t0) / 1e6);
        if (sec >= last_report + 5) {
            last_report = sec;
            fprintf(stderr, "kfloor: %lds: %ld sent, %ld answered\n", sec, (long)atomic_load(&r->sent),
                    (long)atomic_load(&r->answered));
        }
    }
    rd_kafka_flush(p, 10000);
    rd_kafka_destroy(p);
    if (ans) {
        rd_kafka_flush(ans, 10000);
        rd_kafka_destroy(ans);
    }
    atomic_store(&r->gen_done, 1);
    return NULL;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, long n, double q)
{
    if (n <= 0)
        return -1;
    long i = (long)(q * (double)n);
    return v[i < n ? i : n - 1];
}

/* Busy and total jiffies of the machine. */
static void machine_cpu(unsigned long long *busy, unsigned long long *total)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]) != 8)
            memset(v, 0, sizeof v);
        fclose(f);
    }
    *total = 0;
    for (int i = 0; i < 8; i++)
        *total += v[i];
    *busy = *total - v[3] - v[4];
}

/* utime + stime of a process, in clock ticks (0 when unreadable). */
static unsigned long long proc_cpu(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!s || sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return ut + st;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    static floor_run r = {.rate = 0, .seconds = 20, .warmup = 3, .readers = 5, .products = 1000};
    for (int i = 1; i < argc; i++) {
        long *slot = !strcmp(argv[i], "--rate")       ? &r.rate
                     : !strcmp(argv[i], "--seconds")  ? &r.seconds
                     : !strcmp(argv[i], "--warmup")   ? &r.warmup
                     : !strcmp(argv[i], "--readers")  ? &r.readers
                     : !strcmp(argv[i], "--products") ? &r.products
                                                      : NULL;
        if (!strcmp(argv[i], "--saga")) {
            r.saga = 1;
            continue;
        }
        if (slot && i + 1 < argc)
            *slot = atol(argv[++i]);
        else if (!strcmp(argv[i], "--broker-pid") && i + 1 < argc)
            r.broker_pid = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s --rate N [--seconds 20] [--warmup 3] [--readers 5] [--products 1000] "
                            "[--saga] [--broker-pid PID]\n", argv[0]);
            return 2;
        }
    }
    if (r.rate < 1 || r.rate > 200000 || r.seconds < 1 || r.warmup < 0 || r.readers < 0 || r.readers > 32 ||
        r.products < 1) {
        fprintf(stderr, "kfloor: --rate 1..200000, --seconds >= 1, --readers 0..32, --products >= 1\n");
        return 2;
    }
    fs_log_init("kfloor", FS_LOG_WARN);
    fs_err err = {0};
    if (fs_common_config_load(&r.cfg, &err))
        fs_config_die(&err);
    rd_kafka_t *admin =
        fs_kafka_new(&r.cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-floor-admin"}, &err);
    if (!admin ||
        fs_kafka_create_topic(admin, CMD_TOPIC, (int)r.cfg.partitions, (int)r.cfg.replication, "600000", 15000,
                              &err) ||
        fs_kafka_create_topic(admin, EVT_TOPIC, (int)r.cfg.partitions, (int)r.cfg.replication, "600000", 15000,
                              &err) ||
        (r.saga && (fs_kafka_create_topic(admin, ANS_TOPIC, (int)r.cfg.partitions, (int)r.cfg.replication,
                                          "600000", 15000, &err) ||
                    fs_kafka_create_topic(admin, FWD_TOPIC, (int)r.cfg.partitions, (int)r.cfg.replication,
                                          "600000", 15000, &err) ||
                    fs_kafka_create_topic(admin, STATUS_TOPIC, (int)r.cfg.partitions, (int)r.cfg.replication,
                                          "600000", 15000, &err) ||
                    fs_kafka_create_topic(admin, NOTE_TOPIC, (int)r.cfg.partitions, (int)r.cfg.replication,
                                          "600000", 15000, &err)))) {
        fprintf(stderr, "kfloor: topics: %s\n", err.msg);
        return 1;
    }
    rd_kafka_destroy(admin);

    r.udp = socket(AF_INET, SOCK_DGRAM, 0);
    r.worker_udp = socket(AF_INET, SOCK_DGRAM, 0);
    r.udp_addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof r.udp_addr;
    int rcvbuf = 8 << 20;
    setsockopt(r.udp, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (r.udp < 0 || r.worker_udp < 0 || bind(r.udp, (struct sockaddr *)&r.udp_addr, sizeof r.udp_addr) ||
        getsockname(r.udp, (struct sockaddr *)&r.udp_addr, &al)) {
        fprintf(stderr, "kfloor: udp: %s\n", strerror(errno));
        return 1;
    }
    r.lat_cap = r.rate * r.seconds + 16;
    r.lat = calloc((size_t)r.lat_cap, sizeof *r.lat);

    pthread_t worker, saga, notes, answers, readers[32];
    pthread_create(&worker, NULL, worker_main, &r);
    if (r.saga) {
        pthread_create(&saga, NULL, saga_main, &r);
        pthread_create(&notes, NULL, notes_main, &r);
    }
    for (long i = 0; i < r.readers; i++)
        pthread_create(&readers[i], NULL, reader_main, &r);
    for (int i = 0; i < 300 && !atomic_load(&r.assigned); i++)
        usleep(100000);
    if (!atomic_load(&r.assigned)) {
        fprintf(stderr, "kfloor: the processor got no partitions in 30 s\n");
        return 1;
    }
    sleep(1);
    fprintf(stderr, "kfloor: %ld orders/s for %ld s (+%ld s warm-up), %ld readers, %ld partitions\n", r.rate,
            r.seconds, r.warmup, r.readers, r.cfg.partitions);
    /* CPU readings at the measured window's edges */
    unsigned long long mb0 = 0, mt0 = 0, mb1 = 0, mt1 = 0, bk0 = 0, bk1 = 0;
    double s0 = 0, s1 = 0;
    pthread_t gen;
    r.t0 = fs_mono_us() + 300000;
    r.measure_from = r.t0 + (double)r.warmup * 1e6;
    r.measure_to = r.measure_from + (double)r.seconds * 1e6;
    pthread_create(&answers, NULL, answers_main, &r);
    pthread_create(&gen, NULL, generate, &r);
    while (fs_mono_us() < r.measure_from)
        usleep(1000);
    machine_cpu(&mb0, &mt0);
    bk0 = r.broker_pid ? proc_cpu(r.broker_pid) : 0;
    s0 = self_cpu_s();
    while (fs_mono_us() < r.measure_to)
        usleep(1000);
    machine_cpu(&mb1, &mt1);
    bk1 = r.broker_pid ? proc_cpu(r.broker_pid) : 0;
    s1 = self_cpu_s();
    pthread_join(gen, NULL);
    pthread_join(answers, NULL);
    r.stop_worker = 1;
    if (r.saga) {
        sleep(2); /* the saga's last forwards */
        r.stop_saga = 1;
        pthread_join(saga, NULL);
    }
    atomic_store(&r.stop_readers, 1);
    pthread_join(worker, NULL);
    if (r.saga)
        pthread_join(notes, NULL);
    for (long i = 0; i < r.readers; i++)
        pthread_join(readers[i], NULL);

    long n = atomic_load(&r.nlat);
    if (n > r.lat_cap)
        n = r.lat_cap;
    qsort(r.lat, (size_t)n, sizeof *r.lat, cmpd);
    long hz = sysconf(_SC_CLK_TCK);
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    double machine = mt1 > mt0 ? 100.0 * ncpu * (double)(mb1 - mb0) / (double)(mt1 - mt0) : -1;
    double win = (double)r.seconds;
    double broker = r.broker_pid ? 100.0 * (double)(bk1 - bk0) / (double)hz / win : -1;
    double self = 100.0 * (s1 - s0) / win;
    long expected = r.rate * r.seconds;
    printf("{\"rate\":%ld,\"saga\":%s,\"seconds\":%ld,\"readers\":%ld,\"partitions\":%ld,\"expected\":%ld,\"answered\":%ld,"
           "\"answered_per_s\":%.1f,\"p50_ms\":%.2f,\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
           "\"produce_errors\":%ld,\"events_read\":%ld,\"machine_cpu_pct\":%.1f,\"broker_cpu_pct\":%.1f,"
           "\"clients_cpu_pct\":%.1f}\n",
           r.rate, r.saga ? "true" : "false", r.seconds, r.readers, r.cfg.partitions, expected, n, (double)n / win, pct(r.lat, n, 0.5),
           pct(r.lat, n, 0.9), pct(r.lat, n, 0.99), n ? r.lat[n - 1] : -1, (long)atomic_load(&r.produce_errors),
           (long)atomic_load(&r.events_read), machine, broker, self);
    free(r.lat);
    close(r.udp);
    close(r.worker_udp);
    return n >= expected * 99 / 100 ? 0 : 1;
}
