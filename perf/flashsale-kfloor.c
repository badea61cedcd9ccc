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
 *   - the first three readers (the API's stream and the two projectors) follow the statuses
 *     as well as the events, any more the events only (the notifier's watch of the
 *     products), and one more reader (the notifier) follows the notifications.
 * That is six records and two transactional hops per order, as in flashsale.
 * With --lifecycle (implies --saga), the whole lifecycle as flashsale's order saga runs it
 * with auto-pay: the reservation's forward also asks for the payment (and writes a PAYING
 * status); a third transactional loop ("payments") turns each request into its result; the
 * saga turns the result into the commit command (to the processor, which writes the sale's
 * event), the PAID status and its notification; the sale's event is forwarded and becomes
 * the order's last status. Fifteen records and three transactional loops per order (eight
 * transactions on its path), as in flashsale.
 * With --sinks, the read models' least work besides: the first reader writes each order (its
 * status with --saga, else its event) to PostgreSQL, one prepared multi-row upsert per batch
 * (up to 2,000 orders or 50 ms, as a projector batches), and the second to Redis, one
 * pipelined HSET per order (an order's statuses that arrive in one batch written once); each
 * reports the p99 lag from a record's Kafka timestamp to its write, over the records of the
 * measured window. A failed write fails the run.
 * With --saga (or --sinks) the readers fetch as their counterparts do: the first two as the
 * projectors (64 KiB, waiting up to 26 ms), the third as the API's stream (the defaults), any
 * more as the notifier's watch (200 ms), the notifications' reader as the notifier (100 ms).
 * With --lifecycle, a run also fails when fewer than 99 % of its orders reach their last
 * status (counted by the first reader; "completed" in the JSON, warm-up included).
 * flashsale's projectors write more per order (items, history, stock, payments, offsets).
 * With --work API,PROC,SAGA,READ (µs of CPU per order, decimals allowed), each role also
 * burns that much of its own thread's CPU time (CLOCK_THREAD_CPUTIME_ID) per order, standing
 * in for the order's own logic as flashsale-ledger times it per process: the "API" before it
 * produces the command, the "processor" on the order's reserve command (with --lifecycle
 * half there and half on its commit), the "order saga" on the order's first record (its
 * decision; the payments service's share belongs in SAGA) and the first reader (the
 * projectors' and the notifier's share) on the order's decision. So the floor and the logic's
 * lower bound run together, and a run shows whether both fit, not a difference of CPU
 * readings (the broker takes what the machine leaves: its CPU at a rate is not what it needs).
 * SAGA needs --saga (or --lifecycle), READ a reader. Each burn reads the thread's CPU clock
 * in a loop (a system call each time), so figures under ~1 µs are mostly that call.
 * Latency is due time -> answer received (coordinated omission corrected). The machine's CPU
 * (/proc/stat), this process's and the broker's (--broker-pid) are read over the measured
 * window, and with --sinks every PostgreSQL and Redis server process's (stores_cpu_pct; a
 * process that exits within the window, such as an autovacuum worker, is not counted).
 * Prints one JSON object on stdout; progress on stderr.
 *
 * Usage: flashsale-kfloor --rate N [--seconds 20] [--warmup 3] [--readers 5]
 *                         [--products 1000] [--saga] [--lifecycle] [--sinks]
 *                         [--work API,PROC,SAGA,READ] [--broker-pid PID]
 * Settings: FLASHSALE_KAFKA_BROKERS, FLASHSALE_PARTITIONS, FLASHSALE_COMMIT_* as the services;
 * FLASHSALE_PG_URL and FLASHSALE_REDIS_* with --sinks. */
#include "fs/config.h"
#include "fs/db.h"
#include "fs/follow.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/txn_loop.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
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
#define PAYREQ_TOPIC "flashsale.floor.payment-requests"
#define PAYRES_TOPIC "flashsale.floor.payment-results"

/* Byte 16 of every record (the first of a command's padding, copied along): what it is. */
#define KIND_RESERVE 'c' /* a buyer's command, its decision, forward and statuses */
#define KIND_COMMIT 'k'  /* the paid order's commit: its command, event, forward and status */

typedef struct {
    uint64_t seq;
    double due_us;
    char pad[134];
} command;

typedef struct {
    fs_common_config cfg;
    long rate, seconds, warmup, readers, products, saga, sinks, lifecycle;
    int broker_pid;
    int udp; /* the "API"'s answer socket */
    struct sockaddr_in udp_addr;
    int worker_udp;
    volatile sig_atomic_t stop_worker, stop_saga, stop_payments;
    atomic_int assigned, gen_done, stop_readers;
    atomic_long sent, produce_errors, answered, events_read;
    double t0, measure_from, measure_to; /* first due time; due times counted */
    double *lat;
    long lat_cap;
    atomic_long nlat;
    double sink_lag_p99[2]; /* ms, PostgreSQL and Redis, over the measured window */
    atomic_llong wall_from_ms, wall_to_ms; /* the measured window by the records' timestamps */
    atomic_long sink_errors, completed;     /* failed writes; orders whose last status was read */
    long run_tag;                           /* order ids are unique across runs */
    double work_ns[4];                      /* --work: per order, API, processor, saga, reader */
} floor_run;

enum { WORK_API, WORK_PROC, WORK_SAGA, WORK_READ };

/* Burns ns of this thread's CPU time (--work): the order's logic, as a cost, not its code. */
static void burn(double ns)
{
    if (ns <= 0)
        return;
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    double end = (double)t.tv_sec * 1e9 + (double)t.tv_nsec + ns;
    volatile unsigned sink_ = 0;
    do {
        for (unsigned i = 0; i < 50; i++)
            sink_ += i;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    } while ((double)t.tv_sec * 1e9 + (double)t.tv_nsec < end);
}

/* A record's kind byte (see KIND_*), 0 when it has none. */
static char kind_of(const rd_kafka_message_t *m)
{
    return m->len > 16 ? ((const char *)m->payload)[16] : 0;
}

typedef struct {
    floor_run *r;
    int sink;
    bool events_only; /* with --saga, the fourth reader on: the events only (as the notifier's
                       * watch of the products; the API and both projectors read the statuses) */
    bool projector;   /* with --saga or --sinks, the first two readers: fetch as the projectors */
    bool first;       /* counts the orders whose last status it read (--lifecycle) */
} reader_arg;

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
    burn(r->lifecycle ? r->work_ns[WORK_PROC] / 2 : kind_of(m) == KIND_COMMIT ? 0 : r->work_ns[WORK_PROC]);
    char ev[200];
    memset(ev, 'e', sizeof ev);
    memcpy(ev, m->payload, m->len < sizeof ev ? m->len : sizeof ev);
    if (fs_txn_loop_produce(loop, EVT_TOPIC, m->partition, m->key, m->key_len, ev, sizeof ev, NULL, err))
        return -1;
    if (kind_of(m) == KIND_COMMIT) /* no buyer waits on a commit */
        return 0;
    if (m->len >= 16) /* the answer, before the commit */
        sendto(r->worker_udp, m->payload, 16, MSG_DONTWAIT, (const struct sockaddr *)&r->udp_addr,
               sizeof r->udp_addr);
    return 0;
}

/* The order saga's hop: an event is forwarded to the order's partition; a forward becomes
 * the order's status and its notification. With --lifecycle, as flashsale's saga does with
 * auto-pay: a reservation's forward also asks for the payment (and a PAYING status); a
 * payment's result becomes the commit command, the PAID status and its notification; the
 * commit's forward becomes the order's last status. Fifteen records per order in all. */
static int on_saga_record(void *app, fs_txn_loop *loop, const rd_kafka_message_t *m, fs_err *err)
{
    floor_run *r = app;
    char rec[300], key[24];
    memset(rec, 's', sizeof rec);
    memcpy(rec, m->payload, m->len < sizeof rec ? m->len : sizeof rec);
    uint64_t seq = 0;
    if (m->len >= sizeof seq)
        memcpy(&seq, m->payload, sizeof seq);
    int kl = snprintf(key, sizeof key, "o%llu", (unsigned long long)seq);
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (!strcmp(topic, EVT_TOPIC)) {
        if (kind_of(m) == KIND_RESERVE)
            burn(r->work_ns[WORK_SAGA]); /* the order's first record here: its decision */
        return fs_txn_loop_produce(loop, FWD_TOPIC, RD_KAFKA_PARTITION_UA, key, (size_t)kl, rec, sizeof rec, NULL,
                                   err);
    }
#define OUT(t, part, n) fs_txn_loop_produce(loop, t, part, key, (size_t)kl, rec, n, NULL, err)
    if (!strcmp(topic, PAYRES_TOPIC)) { /* paid: commit the stock, the PAID status, its notification */
        char pkey[24];
        uint32_t product = 0; /* the reserved product, carried from the command (bytes 17-20) */
        memcpy(&product, rec + 17, sizeof product);
        int pl = snprintf(pkey, sizeof pkey, "p%u", (unsigned)product);
        char cmd[150];
        memcpy(cmd, rec, sizeof cmd);
        cmd[16] = KIND_COMMIT;
        if (fs_txn_loop_produce(loop, CMD_TOPIC, RD_KAFKA_PARTITION_UA, pkey, (size_t)pl, cmd, sizeof cmd, NULL, err))
            return -1;
        return OUT(STATUS_TOPIC, RD_KAFKA_PARTITION_UA, sizeof rec) || OUT(NOTE_TOPIC, RD_KAFKA_PARTITION_UA, 200)
                   ? -1
                   : 0;
    }
    bool commit = kind_of(m) == KIND_COMMIT;
    if (commit) /* the stock is sold: the order's last status */
        return OUT(STATUS_TOPIC, m->partition, sizeof rec);
    if (r->lifecycle && OUT(PAYREQ_TOPIC, RD_KAFKA_PARTITION_UA, 200))
        return -1;
    if (OUT(STATUS_TOPIC, m->partition, sizeof rec) || (r->lifecycle && OUT(STATUS_TOPIC, m->partition, sizeof rec)))
        return -1;
    return OUT(NOTE_TOPIC, RD_KAFKA_PARTITION_UA, 200);
#undef OUT
}

/* The payment service's hop (--lifecycle): a request becomes its result, in a transaction. */
static int on_payment_record(void *app, fs_txn_loop *loop, const rd_kafka_message_t *m, fs_err *err)
{
    (void)app;
    char res[200];
    memset(res, 'p', sizeof res);
    memcpy(res, m->payload, m->len < sizeof res ? m->len : sizeof res);
    return fs_txn_loop_produce(loop, PAYRES_TOPIC, m->partition, m->key, m->key_len, res, sizeof res, NULL, err);
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

static void *payments_main(void *arg)
{
    floor_run *r = arg;
    const char *topics[] = {PAYREQ_TOPIC, NULL};
    fs_txn_loop_conf lc = {.common = &r->cfg, .group_id = "flashsale-floor-payments", .instance_id = "payments-1",
                           .topics = topics, .app = r, .on_assign = on_saga_assign, .on_record = on_payment_record};
    run_loop(&lc, &r->stop_payments, "payments");
    return NULL;
}

static void *saga_main(void *arg)
{
    floor_run *r = arg;
    const char *topics[] = {EVT_TOPIC, FWD_TOPIC, r->lifecycle ? PAYRES_TOPIC : NULL, NULL};
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

/* The read models' minimal work (--sinks): one row, or one hash, per order. The projectors
 * write more per order (items, history, the product's stock, their offsets); this is what any
 * read model of the orders costs at least. */
enum { SINK_NONE, SINK_PG, SINK_REDIS };
#define SINK_BATCH 2000     /* as the projectors: FLASHSALE_PROJECTOR_BATCH */
#define SINK_AGE_US 50000.0 /* and FLASHSALE_PROJECTOR_BATCH_MS */

typedef struct {
    floor_run *r;
    int kind;
    PGconn *pg;
    redisContext *redis;
    long n;
    double first_us;
    unsigned long long seq[SINK_BATCH];
    long long ts_ms[SINK_BATCH]; /* each record's Kafka timestamp, for the read model's lag */
    long long flushes, writes;
    double *lag; /* ms, records written within the measured window */
    long nlag, lag_cap;
} sink;

static int cmp_u64(const void *a, const void *b)
{
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

static int sink_open(sink *s, fs_err *err)
{
    if (s->kind == SINK_PG) {
        if (!(s->pg = fs_pg_connect(&s->r->cfg, "flashsale-floor-sink", err)))
            return -1;
        /* a fresh table each run: every order is a new row, as in flashsale */
        PGresult *res = PQexec(s->pg, "DROP TABLE IF EXISTS floor_orders; CREATE TABLE floor_orders"
                                      " (order_id text PRIMARY KEY, status text NOT NULL, at bigint NOT NULL)");
        int bad = PQresultStatus(res) != PGRES_COMMAND_OK;
        PQclear(res);
        if (!bad) { /* prepared once, as the projector's statements */
            res = PQprepare(s->pg, "upsert",
                            "INSERT INTO floor_orders (order_id, status, at) SELECT * FROM"
                            " unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT (order_id)"
                            " DO UPDATE SET status = EXCLUDED.status, at = EXCLUDED.at",
                            3, NULL);
            bad = PQresultStatus(res) != PGRES_COMMAND_OK;
            PQclear(res);
        }
        if (bad)
            fs_err_set(err, FS_ERR_FATAL, 0, "floor_orders: %s", PQerrorMessage(s->pg));
        return bad ? -1 : 0;
    }
    if (s->kind == SINK_REDIS && !(s->redis = fs_redis_connect(&s->r->cfg, 5000, err)))
        return -1;
    return 0;
}

/* Writes the batch: one multi-row upsert (PostgreSQL), or one pipelined HSET per order (Redis);
 * the lag of each of its records, from its Kafka timestamp to the write's end, is kept. */
static void sink_flush(sink *s)
{
    if (!s->n)
        return;
    /* the lag of every record in the batch; then one write per order (an order's statuses
     * of one transaction arrive together, and one upsert may not touch a row twice) */
    long n = s->n;
    bool failed = false;
    qsort(s->seq, (size_t)n, sizeof *s->seq, cmp_u64);
    long u = 0;
    for (long i = 0; i < n; i++)
        if (!u || s->seq[i] != s->seq[u - 1])
            s->seq[u++] = s->seq[i];
    s->n = u;
    if (s->kind == SINK_PG) {
        size_t cap = (size_t)s->n * 48 + 4;
        char *ids = malloc(cap), *ats = malloc(cap), *sts = malloc((size_t)s->n * 10 + 4);
        size_t a = 0, b = 0, c = 0;
        ids[a++] = ats[b++] = sts[c++] = '{';
        for (long i = 0; i < s->n; i++) {
            const char *sep = i ? "," : "";
            a += (size_t)snprintf(ids + a, cap - a, "%so%ld-%llu", sep, s->r->run_tag, s->seq[i]);
            b += (size_t)snprintf(ats + b, cap - b, "%s%llu", sep, s->seq[i]);
            c += (size_t)snprintf(sts + c, (size_t)s->n * 10 + 4 - c, "%sRESERVED", sep);
        }
        ids[a++] = '}', ats[b++] = '}', sts[c++] = '}';
        ids[a] = ats[b] = sts[c] = '\0';
        const char *params[] = {ids, sts, ats};
        PGresult *res = PQexecPrepared(s->pg, "upsert", 3, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "kfloor: sink: %s", PQerrorMessage(s->pg));
            failed = true;
        }
        PQclear(res);
        free(ids), free(ats), free(sts);
    } else {
        for (long i = 0; i < s->n; i++)
            redisAppendCommand(s->redis, "HSET floor:o%ld-%llu status RESERVED at %llu", s->r->run_tag, s->seq[i],
                               s->seq[i]);
        for (long i = 0; i < s->n; i++) {
            redisReply *rep = NULL;
            if (redisGetReply(s->redis, (void **)&rep) != REDIS_OK) {
                fprintf(stderr, "kfloor: sink: %s\n", s->redis->errstr);
                failed = true;
                break;
            }
            if (rep->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "kfloor: sink: %s\n", rep->str);
                failed = true;
            }
            freeReplyObject(rep);
        }
    }
    s->flushes++;
    s->n = 0;
    if (failed) { /* the run does not count (main fails it) */
        atomic_fetch_add(&s->r->sink_errors, 1);
        return;
    }
    s->writes += u;
    long long wall = fs_now_ms(), from = atomic_load(&s->r->wall_from_ms), to = atomic_load(&s->r->wall_to_ms);
    for (long i = 0; i < n; i++) {
        if (s->ts_ms[i] < from || s->ts_ms[i] >= to) /* records of the measured window */
            continue;
        if (s->nlag == s->lag_cap) {
            s->lag_cap = s->lag_cap ? 2 * s->lag_cap : 65536;
            s->lag = realloc(s->lag, (size_t)s->lag_cap * sizeof *s->lag);
        }
        s->lag[s->nlag++] = (double)(wall - s->ts_ms[i]);
    }
}

/* A follower of the events (and, with --saga, the statuses), or of the notifications; with
 * a sink, it writes each order (its status with --saga, else its event) to a read model. */
static void follow(floor_run *r, bool notes, const reader_arg *a)
{
    fs_err err = {0};
    int sink_kind = a ? a->sink : SINK_NONE;
    bool events_only = a && a->events_only, first = a && a->first;
    sink *s = NULL;
    if (sink_kind != SINK_NONE) {
        s = calloc(1, sizeof *s);
        s->r = r, s->kind = sink_kind;
        if (sink_open(s, &err)) {
            fprintf(stderr, "kfloor: sink: %s\n", err.msg);
            exit(1);
        }
    }
    const char *sink_topic = r->saga ? STATUS_TOPIC : EVT_TOPIC;
    rd_kafka_topic_partition_list_t *from = rd_kafka_topic_partition_list_new(3 * (int)r->cfg.partitions);
    for (int p = 0; p < r->cfg.partitions; p++) {
        if (notes) {
            rd_kafka_topic_partition_list_add(from, NOTE_TOPIC, p)->offset = RD_KAFKA_OFFSET_END;
            continue;
        }
        rd_kafka_topic_partition_list_add(from, EVT_TOPIC, p)->offset = RD_KAFKA_OFFSET_END;
        if (r->saga && !events_only)
            rd_kafka_topic_partition_list_add(from, STATUS_TOPIC, p)->offset = RD_KAFKA_OFFSET_END;
        if (r->lifecycle && a && a->projector) /* the projectors read the payments too */
            rd_kafka_topic_partition_list_add(from, PAYRES_TOPIC, p)->offset = RD_KAFKA_OFFSET_END;
    }
    /* each reader fetches as its counterpart in flashsale does: the projectors wait for 64 KiB
     * up to half their batch window, the notifier 100 ms and its watch of the products 200 ms;
     * the API's decision stream takes the defaults (a response per commit) */
    const char *const projector[] = {"fetch.wait.max.ms", "26", "fetch.min.bytes", "65536", NULL};
    const char *const notifier[] = {"fetch.wait.max.ms", "100", "fetch.min.bytes", "65536", NULL};
    const char *const watch[] = {"fetch.wait.max.ms", "200", "fetch.min.bytes", "65536", NULL};
    const char *const *extra = notes ? notifier : a && a->projector ? projector : events_only ? watch : NULL;
    fs_follower *f = fs_follower_new(&r->cfg, "flashsale-floor-reader", from, extra, 30000, &err);
    rd_kafka_topic_partition_list_destroy(from);
    if (!f) {
        fprintf(stderr, "kfloor: reader: %s\n", err.msg);
        exit(1); /* a reader short: the run would not measure the floor */
    }
    while (!atomic_load(&r->stop_readers)) {
        rd_kafka_message_t *m = fs_follower_poll(f, s ? 50 : 100);
        if (m) {
            if (!m->err) {
                atomic_fetch_add(&r->events_read, 1);
                if (first && kind_of(m) == KIND_RESERVE && !strcmp(rd_kafka_topic_name(m->rkt), EVT_TOPIC))
                    burn(r->work_ns[WORK_READ]); /* the read models' and the notifier's share */
                if (first && r->lifecycle && kind_of(m) == KIND_COMMIT &&
                    !strcmp(rd_kafka_topic_name(m->rkt), STATUS_TOPIC))
                    atomic_fetch_add(&r->completed, 1); /* the order's last status */
                if (s && m->len >= 8 && !strcmp(rd_kafka_topic_name(m->rkt), sink_topic)) {
                    uint64_t seq;
                    memcpy(&seq, m->payload, sizeof seq);
                    if (!s->n)
                        s->first_us = fs_mono_us();
                    s->ts_ms[s->n] = rd_kafka_message_timestamp(m, NULL);
                    s->seq[s->n++] = (unsigned long long)seq;
                }
            }
            rd_kafka_message_destroy(m);
        }
        if (s && s->n && (s->n == SINK_BATCH || fs_mono_us() - s->first_us >= SINK_AGE_US))
            sink_flush(s);
    }
    fs_follower_destroy(f);
    if (s) {
        sink_flush(s);
        qsort(s->lag, (size_t)s->nlag, sizeof *s->lag, cmpd);
        r->sink_lag_p99[s->kind == SINK_PG ? 0 : 1] = pct(s->lag, s->nlag, 0.99);
        fprintf(stderr, "kfloor: %s sink: %lld writes in %lld batches\n", s->kind == SINK_PG ? "PostgreSQL" : "Redis",
                s->writes, s->flushes);
        free(s->lag);
        if (s->pg)
            PQfinish(s->pg);
        if (s->redis)
            redisFree(s->redis);
        free(s);
    }
}

static void *reader_main(void *arg)
{
    reader_arg *a = arg;
    follow(a->r, false, a);
    return NULL;
}

static void *notes_main(void *arg)
{
    follow(arg, true, NULL);
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
        memset(c.pad, KIND_RESERVE, sizeof c.pad); /* its kind byte (16) among them */
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
        uint32_t product = (uint32_t)(rand_r(&seed) % r->products);
        memcpy(c.pad + 1, &product, sizeof product); /* for the commit (--lifecycle) */
        int kl = snprintf(key, sizeof key, "p%u", (unsigned)product);
        burn(r->work_ns[WORK_API]); /* the API's share of the order's logic */
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

/* The CPU ticks of every PostgreSQL and Redis server process on the machine (the stores the
 * sinks write to; their backends included). */
static unsigned long long stores_cpu(void)
{
    unsigned long long sum = 0;
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(comm, sizeof comm, f))
            comm[0] = '\0';
        fclose(f);
        comm[strcspn(comm, "\n")] = '\0';
        if (!strcmp(comm, "postgres") || !strcmp(comm, "redis-server"))
            sum += proc_cpu(atoi(e->d_name));
    }
    closedir(d);
    return sum;
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
        if (!strcmp(argv[i], "--saga") || !strcmp(argv[i], "--sinks") || !strcmp(argv[i], "--lifecycle")) {
            *(!strcmp(argv[i], "--saga") ? &r.saga : !strcmp(argv[i], "--sinks") ? &r.sinks : &r.lifecycle) = 1;
            continue;
        }
        if (slot && i + 1 < argc)
            *slot = atol(argv[++i]);
        else if (!strcmp(argv[i], "--broker-pid") && i + 1 < argc)
            r.broker_pid = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--work") && i + 1 < argc) {
            const char *w = argv[++i];
            for (int k = 0; k < 4; k++) {
                char *end;
                double us = strtod(w, &end);
                if (end == w || !(us >= 0 && us <= 10000) || (k < 3 ? *end != ',' : *end != '\0')) {
                    fprintf(stderr, "kfloor: --work takes four µs figures, API,PROC,SAGA,READ (0-10000 each)\n");
                    return 2;
                }
                r.work_ns[k] = us * 1000;
                w = end + 1;
            }
        }
        else {
            fprintf(stderr, "usage: %s --rate N [--seconds 20] [--warmup 3] [--readers 5] [--products 1000] "
                            "[--saga] [--lifecycle] [--sinks] [--work API,PROC,SAGA,READ] [--broker-pid PID]\n", argv[0]);
            return 2;
        }
    }
    if (r.rate < 1 || r.rate > 200000 || r.seconds < 1 || r.warmup < 0 || r.readers < 0 || r.readers > 32 ||
        r.products < 1 || (r.sinks && r.readers < 2)) {
        fprintf(stderr, "kfloor: --rate 1..200000, --seconds >= 1, --readers 0..32 (2 or more with --sinks), "
                        "--products >= 1\n");
        return 2;
    }
    if (r.lifecycle)
        r.saga = 1;
    if ((r.work_ns[WORK_SAGA] > 0 && !r.saga) || (r.work_ns[WORK_READ] > 0 && !r.readers)) {
        fprintf(stderr, "kfloor: --work: no order saga without --saga, no reader with --readers 0: "
                        "its figure would not be burned\n");
        return 2;
    }
    r.run_tag = (long)time(NULL);
    atomic_store(&r.wall_from_ms, LLONG_MAX); /* no lag counted before the window is known */
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
                                          "600000", 15000, &err))) ||
        (r.lifecycle && (fs_kafka_create_topic(admin, PAYREQ_TOPIC, (int)r.cfg.partitions, (int)r.cfg.replication,
                                               "600000", 15000, &err) ||
                         fs_kafka_create_topic(admin, PAYRES_TOPIC, (int)r.cfg.partitions, (int)r.cfg.replication,
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

    pthread_t worker, saga, payments, notes, answers, readers[32];
    reader_arg rargs[32];
    pthread_create(&worker, NULL, worker_main, &r);
    if (r.lifecycle)
        pthread_create(&payments, NULL, payments_main, &r);
    if (r.saga) {
        pthread_create(&saga, NULL, saga_main, &r);
        pthread_create(&notes, NULL, notes_main, &r);
    }
    for (long i = 0; i < r.readers; i++) {
        rargs[i] = (reader_arg){.r = &r,
                                .sink = !r.sinks ? SINK_NONE : i == 0 ? SINK_PG : i == 1 ? SINK_REDIS : SINK_NONE,
                                .events_only = r.saga && i >= 3,
                                .projector = (r.saga || r.sinks) && i < 2,
                                .first = i == 0};
        pthread_create(&readers[i], NULL, reader_main, &rargs[i]);
    }
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
    unsigned long long mb0 = 0, mt0 = 0, mb1 = 0, mt1 = 0, bk0 = 0, bk1 = 0, st0 = 0, st1 = 0;
    double s0 = 0, s1 = 0;
    pthread_t gen;
    r.t0 = fs_mono_us() + 300000;
    r.measure_from = r.t0 + (double)r.warmup * 1e6;
    r.measure_to = r.measure_from + (double)r.seconds * 1e6;
    long long wall_now = fs_now_ms();
    double mono_now = fs_mono_us();
    atomic_store(&r.wall_to_ms, wall_now + (long long)((r.measure_to - mono_now) / 1000));
    atomic_store(&r.wall_from_ms, wall_now + (long long)((r.measure_from - mono_now) / 1000));
    pthread_create(&answers, NULL, answers_main, &r);
    pthread_create(&gen, NULL, generate, &r);
    while (fs_mono_us() < r.measure_from)
        usleep(1000);
    machine_cpu(&mb0, &mt0);
    bk0 = r.broker_pid ? proc_cpu(r.broker_pid) : 0;
    st0 = stores_cpu();
    s0 = self_cpu_s();
    while (fs_mono_us() < r.measure_to)
        usleep(1000);
    machine_cpu(&mb1, &mt1);
    bk1 = r.broker_pid ? proc_cpu(r.broker_pid) : 0;
    st1 = stores_cpu();
    s1 = self_cpu_s();
    pthread_join(gen, NULL);
    pthread_join(answers, NULL);
    if (r.saga)
        sleep(r.lifecycle ? 4 : 2); /* the last forwards (and payments, commits, sales) */
    r.stop_worker = 1;
    if (r.saga) {
        r.stop_saga = 1;
        pthread_join(saga, NULL);
    }
    if (r.lifecycle) {
        r.stop_payments = 1;
        pthread_join(payments, NULL);
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
    double stores = st1 >= st0 ? 100.0 * (double)(st1 - st0) / (double)hz / win : -1;
    long expected = r.rate * r.seconds;
    printf("{\"rate\":%ld,\"products\":%ld,\"saga\":%s,\"seconds\":%ld,\"readers\":%ld,\"partitions\":%ld,\"expected\":%ld,\"answered\":%ld,"
           "\"answered_per_s\":%.1f,\"p50_ms\":%.2f,\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
           "\"produce_errors\":%ld,\"events_read\":%ld,\"machine_cpu_pct\":%.1f,\"broker_cpu_pct\":%.1f,"
           "\"clients_cpu_pct\":%.1f,\"sinks\":%s,\"stores_cpu_pct\":%.1f,\"lifecycle\":%s,"
           "\"pg_lag_p99_ms\":%.0f,\"redis_lag_p99_ms\":%.0f,\"sink_errors\":%ld,\"completed\":%ld,"
           "\"work_us\":[%.2f,%.2f,%.2f,%.2f]}\n",
           r.rate, r.products, r.saga ? "true" : "false", r.seconds, r.readers, r.cfg.partitions, expected, n, (double)n / win, pct(r.lat, n, 0.5),
           pct(r.lat, n, 0.9), pct(r.lat, n, 0.99), n ? r.lat[n - 1] : -1, (long)atomic_load(&r.produce_errors),
           (long)atomic_load(&r.events_read), machine, broker, self, r.sinks ? "true" : "false", stores,
           r.lifecycle ? "true" : "false", r.sinks ? r.sink_lag_p99[0] : -1, r.sinks ? r.sink_lag_p99[1] : -1,
           (long)atomic_load(&r.sink_errors), r.lifecycle && r.readers ? (long)atomic_load(&r.completed) : -1,
           r.work_ns[0] / 1000, r.work_ns[1] / 1000, r.work_ns[2] / 1000, r.work_ns[3] / 1000);
    free(r.lat);
    close(r.udp);
    close(r.worker_udp);
    long sent = atomic_load(&r.sent);
    if (r.lifecycle && r.readers && atomic_load(&r.completed) < sent * 99 / 100)
        fprintf(stderr, "kfloor: only %ld of %ld orders went through the whole lifecycle\n",
                (long)atomic_load(&r.completed), sent);
    if (atomic_load(&r.sink_errors))
        fprintf(stderr, "kfloor: %ld failed read-model writes\n", (long)atomic_load(&r.sink_errors));
    return n >= expected * 99 / 100 && !atomic_load(&r.sink_errors) &&
                   (!r.lifecycle || !r.readers || atomic_load(&r.completed) >= sent * 99 / 100)
               ? 0
               : 1;
}
