/* flashsale-projector --target postgres|redis [--rebuild]: the read models (see projector.h).
 *
 * The driver reads the event topics (read_committed, every partition) from the offsets the
 * target stored, cuts batches (FLASHSALE_PROJECTOR_BATCH events or
 * FLASHSALE_PROJECTOR_BATCH_MS), has the target commit each batch with the next offsets, and
 * redoes a failed batch from what the target stored. Undecodable records go to the
 * dead-letter topic. While behind the log it logs progress (percent, rate, ETA) every 2 s;
 * afterwards every FLASHSALE_PROJECTOR_REPORT_MS (10000) with the projection lag percentiles
 * of the window (commit time - record time). */
#include "projector.h"

#include "fs/follow.h"

#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const proj_topics[PROJ_NTOPICS] = {FS_TOPIC_INVENTORY_EVENTS, FS_TOPIC_ORDERS_EVENTS,
                                                FS_TOPIC_PAYMENTS_EVENTS};

static volatile int stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

#define LAG_BUCKETS 10001 /* 1 ms resolution up to 10 s; the last bucket holds the rest */

typedef struct {
    projector p;
    fs_codec *codec;
    fs_follower *follower; /* the log from the offsets the target stored */
    rd_kafka_t *dlq;
    char fetch_wait_ms[24];
    long batch_max, batch_ms, report_ms;
    int n;           /* PROJ_NTOPICS * nparts */
    int64_t *next;   /* next offset per partition after the open batch (-1 untouched) */
    int64_t *pos;    /* next offset per partition, for progress */
    int64_t *target; /* end of each partition when assigned */
    int64_t *ts; /* record timestamps of the open batch */
    bool in_batch;
    bool stopping; /* the last commit: its dead letters get a short wait of their own */
    long batch_n;
    int64_t batch_started;
    long batch_dead; /* dead letters produced for the open batch */
    uint64_t applied, dead, since_report;
    uint32_t lag[LAG_BUCKETS];
    uint64_t lag_n;
} driver;

/* The dead-letter producer (made anew after a fatal error: fs_kafka_renew_if_fatal). Its
 * failed deliveries are counted (fs_kafka_dlq_report): a batch is committed only once its
 * dead letters are in the log (commit). */
static const fs_kafka_client dlq_client = {
    .role = FS_KAFKA_PRODUCER, .client_id = "flashsale-projector-dlq", .dr = fs_kafka_dlq_report,
    /* one record per request: a refusal for good (too large) then names one dead letter */
    .extra = (const char *const[]){"batch.num.messages", "1", NULL}};

static int tindex(const char *name)
{
    for (int i = 0; i < PROJ_NTOPICS; i++)
        if (!strcmp(name, proj_topics[i]))
            return i;
    return -1;
}

static int64_t lag_pct(driver *d, double q)
{
    if (!d->lag_n)
        return 0;
    if (q >= 1.0) { /* the largest */
        for (int i = LAG_BUCKETS - 1; i > 0; i--)
            if (d->lag[i])
                return i;
        return 0;
    }
    uint64_t want = (uint64_t)(q * (double)d->lag_n), seen = 0;
    for (int i = 0; i < LAG_BUCKETS; i++)
        if ((seen += d->lag[i]) > want)
            return i;
    return LAG_BUCKETS - 1;
}

static int64_t remaining(driver *d)
{
    int64_t r = 0;
    for (int i = 0; i < d->n; i++)
        if (d->target[i] > d->pos[i])
            r += d->target[i] - d->pos[i];
    return r;
}

/* Nothing is known to be left to read: every partition has told its end since its last
 * record. */
static bool caught_up(driver *d)
{
    return d->follower && fs_follower_at_end(d->follower);
}

/* Follows every partition from the offset the target stored (or its low watermark). */
static int assign(driver *d, fs_err *err)
{
    fs_follower_destroy(d->follower);
    d->follower = NULL;
    int64_t *stored = d->next;
    for (int i = 0; i < d->n; i++)
        stored[i] = -1;
    if (d->p.sink->load_offsets(&d->p, stored, err))
        return -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(d->n);
    for (int t = 0; t < PROJ_NTOPICS; t++)
        for (int i = 0; i < d->p.nparts; i++) {
            int k = t * d->p.nparts + i;
            rd_kafka_topic_partition_list_add(l, proj_topics[t], i)->offset =
                stored[k] < 0 ? RD_KAFKA_OFFSET_BEGINNING : stored[k];
            d->pos[k] = stored[k] < 0 ? 0 : stored[k];
            stored[k] = -1; /* now: nothing consumed in the open batch */
        }
    /* a batch waits up to batch_ms anyway: let the broker gather records for a while too,
     * instead of answering every fetch with the one or two records just written (measured:
     * the broker then spends most of the machine answering tiny fetches) */
    d->follower = fs_follower_new(&d->p.cfg, "flashsale-projector", l,
                                  (const char *const[]){"fetch.wait.max.ms", d->fetch_wait_ms,
                                                        "fetch.min.bytes", "65536", NULL},
                                  30000, err);
    rd_kafka_topic_partition_list_destroy(l);
    if (!d->follower)
        return -1;
    for (int t = 0; t < PROJ_NTOPICS; t++)
        for (int i = 0; i < d->p.nparts; i++)
            d->target[t * d->p.nparts + i] = fs_follower_end(d->follower, proj_topics[t], i);
    fs_log_info("assigned", json_pack("{s:s,s:I}", "target", d->p.sink->name, "behind",
                                      (json_int_t)remaining(d)));
    return 0;
}

static int handle(driver *d, const rd_kafka_message_t *m, fs_err *err)
{
    int t = tindex(rd_kafka_topic_name(m->rkt));
    if (t < 0 || m->partition >= d->p.nparts)
        return 0;
    const fs_schema *s;
    avro_value_t v;
    fs_err derr = {0};
    int rc = 0;
    if (fs_codec_decode(d->codec, m->payload, m->len, &s, &v, &derr) == 0) {
        const char *type = fs_schema_name(s);
        bool bad = false;
        if (t == 0) {
            inv_event e;
            bad = inv_event_decode(&v, type, &e, &derr) != 0;
            if (!bad)
                rc = d->p.sink->inventory(&d->p, &e, m->partition, m->offset, err);
        } else if (t == 1 && !strcmp(type, "OrderStatusChanged")) {
            ord_order o;
            bad = ord_decode(&v, &o, &derr) != 0;
            if (!bad)
                rc = d->p.sink->order(&d->p, &o, m->partition, m->offset, err);
        } else if (t == 2) {
            pay_event e;
            bad = pay_event_decode(&v, type, &e, &derr) != 0;
            if (!bad)
                rc = d->p.sink->payment(&d->p, &e, m->partition, m->offset, err);
        } /* other types (OrderCommandRejected) are not projected */
        avro_value_decref(&v);
        if (!bad)
            derr.cls = FS_OK;
    }
    if (derr.cls != FS_OK) { /* not Avro, or not a valid event of its type */
        d->dead++;
        d->batch_dead++;
        if (fs_kafka_renew_if_fatal(&d->dlq, &d->p.cfg, &dlq_client, "projector dead letters", 2000, err) < 0 ||
            fs_kafka_dlq_write(d->dlq, m, derr.msg, err))
            return -1;
    }
    if (rc == 0) {
        int k = t * d->p.nparts + m->partition;
        d->next[k] = m->offset + 1;
        rd_kafka_timestamp_type_t tt;
        int64_t ts = rd_kafka_message_timestamp(m, &tt);
        d->ts[d->batch_n] = ts > 0 ? ts : fs_now_ms();
    }
    return rc;
}

static int commit(driver *d, fs_err *err)
{
    if (!d->in_batch)
        return 0;
    if (d->batch_dead) { /* its dead letters in the log before the offsets move past them */
        long n = d->batch_dead;
        d->batch_dead = 0; /* a batch redone writes them again */
        if (!d->dlq)
            return fs_err_set(err, FS_ERR_RETRIABLE, 0, "no dead-letter producer");
        if (d->stopping ? fs_kafka_dlq_settle(d->dlq, 2000, NULL, err)
                        : fs_kafka_dlq_settle(d->dlq, 10000, &stop_flag, err)) {
            fs_log_warn(d->stopping ? "dead letters not in the log; the batch is redone at the next start"
                                    : "dead letters not in the log; the batch is redone",
                        json_pack("{s:I,s:s}", "dead_letters", (json_int_t)n, "error", err->msg));
            return -1;
        }
    }
    int64_t now = fs_now_ms(), worst = 0;
    for (long i = 0; i < d->batch_n; i++) {
        int64_t l = now - d->ts[i];
        if (l > worst)
            worst = l;
    }
    if (d->p.sink->commit(&d->p, d->next, worst, err))
        return -1;
    now = fs_now_ms();
    for (long i = 0; i < d->batch_n; i++) {
        int64_t l = now - d->ts[i];
        d->lag[l < 0 ? 0 : l >= LAG_BUCKETS ? LAG_BUCKETS - 1 : l]++;
    }
    d->lag_n += (uint64_t)d->batch_n;
    for (int i = 0; i < d->n; i++) {
        if (d->next[i] >= 0)
            d->pos[i] = d->next[i];
        d->next[i] = -1;
    }
    d->applied += (uint64_t)d->batch_n;
    d->since_report += (uint64_t)d->batch_n;
    d->batch_n = 0;
    d->in_batch = false;
    return 0;
}

static void report(driver *d, int64_t elapsed_ms, bool behind)
{
    double rate = elapsed_ms > 0 ? (double)d->since_report * 1000.0 / (double)elapsed_ms : 0;
    int64_t left = remaining(d);
    json_t *o = json_pack("{s:s,s:I,s:I,s:i,s:I,s:I,s:I}", "target", d->p.sink->name, "applied",
                          (json_int_t)d->applied, "dead_lettered", (json_int_t)d->dead,
                          "events_per_s", (int)rate, "lag_p50_ms", (json_int_t)lag_pct(d, 0.5),
                          "lag_p99_ms", (json_int_t)lag_pct(d, 0.99), "lag_max_ms",
                          (json_int_t)lag_pct(d, 1.0));
    if (behind) {
        int64_t total = 0;
        for (int i = 0; i < d->n; i++)
            total += d->target[i];
        json_object_set_new(o, "behind", json_integer(left));
        json_object_set_new(o, "percent",
                            json_real(total ? 100.0 * (double)(total - left) / (double)total : 100));
        if (rate > 0)
            json_object_set_new(o, "eta_s", json_real((double)left / rate));
    }
    fs_log_info(behind ? "catching up" : "progress", o);
    d->since_report = 0;
    memset(d->lag, 0, sizeof d->lag);
    d->lag_n = 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: flashsale-projector --target postgres|redis [--rebuild] | --schemas\n"
                    "  --rebuild  rebuild the read model from offset 0 (postgres: in place;\n"
                    "             redis: into a new generation, switched to when caught up)\n"
                    "  --schemas  list the Avro schemas of this build (name, fingerprint, role)\n");
}

int main(int argc, char **argv)
{
    static driver d;
    fs_err err = {0};
    bool rebuild = false;
    const char *target = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--target") && i + 1 < argc)
            target = argv[++i];
        else if (!strcmp(argv[i], "--rebuild"))
            rebuild = true;
        else if (!strcmp(argv[i], "--schemas")) { /* what this build reads and writes */
            fs_codec *c = fs_codec_new(&err);
            if (!c)
                fs_config_die(&err);
            for (size_t k = 0; k < fs_codec_count(c); k++) {
                const fs_schema *sc = fs_codec_at(c, k);
                printf("%s %016llx %s\n", fs_schema_fullname(sc),
                       (unsigned long long)fs_schema_fingerprint(sc),
                       fs_schema_is_reader(sc) ? "reader" : "writer");
            }
            fs_codec_destroy(c);
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    if (!target || (strcmp(target, "postgres") && strcmp(target, "redis"))) {
        usage();
        return 2;
    }
    d.p.sink = strcmp(target, "redis") ? &proj_sink_pg : &proj_sink_redis;
    d.p.stop = &stop_flag;
    fs_log_init(strcmp(target, "redis") ? "projector-postgres" : "projector-redis", FS_LOG_INFO);
    if (fs_common_config_load(&d.p.cfg, &err) ||
        fs_env_int("FLASHSALE_PROJECTOR_BATCH", 2000, 1, 100000, &d.batch_max, &err) ||
        fs_env_int("FLASHSALE_PROJECTOR_BATCH_MS", 50, 1, 60000, &d.batch_ms, &err) ||
        fs_env_int("FLASHSALE_PROJECTOR_REPORT_MS", 10000, 100, 3600000, &d.report_ms, &err))
        fs_config_die(&err);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    d.codec = fs_codec_new(&err);
    if (!d.codec)
        fs_config_die(&err);
    rd_kafka_t *admin = fs_kafka_new(&d.p.cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-projector"}, &err);
    d.p.nparts = admin ? fs_kafka_partition_count(admin, FS_TOPIC_INVENTORY_EVENTS, 10000, &err) : -1;
    if (admin)
        rd_kafka_destroy(admin);
    if (d.p.nparts < 1)
        fs_config_die(&err);
    d.n = PROJ_NTOPICS * d.p.nparts;
    d.next = calloc((size_t)d.n, sizeof *d.next);
    d.pos = calloc((size_t)d.n, sizeof *d.pos);
    d.target = calloc((size_t)d.n, sizeof *d.target);
    d.ts = calloc((size_t)d.batch_max, sizeof *d.ts);
    if (!d.next || !d.pos || !d.target || !d.ts) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    if (d.p.sink->open(&d.p, rebuild, &err)) {
        if (stop_flag)
            return 0;
        fs_config_die(&err);
    }
    snprintf(d.fetch_wait_ms, sizeof d.fetch_wait_ms, "%ld", d.batch_ms < 100 ? d.batch_ms / 2 + 1 : 50);
    d.dlq = fs_kafka_new(&d.p.cfg, &dlq_client, &err);
    if (!d.dlq)
        fs_config_die(&err);
    while (assign(&d, &err)) {
        fs_log_warn("cannot assign yet, retrying", json_pack("{s:s}", "error", err.msg));
        if (stop_flag)
            break;
        sleep(1);
    }
    fs_log_info("started", json_pack("{s:s,s:b}", "target", target, "rebuild", rebuild));
    int64_t last_report = fs_mono_ms(), last_tick = fs_mono_ms();
    bool was_caught_up = false;
    while (!stop_flag) {
        rd_kafka_message_t *m = d.follower ? fs_follower_poll(d.follower, 50) : NULL;
        int rc = 0;
        if (m) {
            d.in_batch = true;
            if (d.batch_n == 0)
                d.batch_started = fs_mono_ms();
            rc = handle(&d, m, &err);
            d.batch_n++;
        }
        if (m)
            rd_kafka_message_destroy(m);
        int64_t now = fs_mono_ms();
        bool due_tick = now - last_tick >= 1000;
        bool up = caught_up(&d);
        if (rc == 0 && d.in_batch &&
            (d.batch_n >= d.batch_max || now - d.batch_started >= d.batch_ms || due_tick ||
             (up && !was_caught_up)))
            rc = commit(&d, &err);
        if (rc == 0 && (due_tick || (up && !was_caught_up))) {
            last_tick = now;
            if (up && !was_caught_up)
                fs_log_info("caught up with the log",
                            json_pack("{s:s,s:I}", "target", target, "applied", (json_int_t)d.applied));
            was_caught_up = up;
            rc = d.p.sink->tick(&d.p, up, &err);
            if (rc == 1) { /* the store was emptied or switched: start over from its offsets */
                rc = assign(&d, &err);
                was_caught_up = false;
            }
        }
        if (rc) { /* forget the batch and redo it from what the target stored */
            fs_log_warn("batch failed, redoing it", json_pack("{s:s}", "error", err.msg));
            d.p.sink->rollback(&d.p);
            d.in_batch = false;
            d.batch_n = 0;
            d.batch_dead = 0;
            sleep(1);
            while (!stop_flag && assign(&d, &err)) {
                fs_log_warn("reassign failed", json_pack("{s:s}", "error", err.msg));
                sleep(1);
                /* the rollback above reconnected once; a store still away then (PostgreSQL
                 * or Redis restarting) is reconnected here, else every retry used the dead
                 * connection and the projector never resumed */
                d.p.sink->rollback(&d.p);
            }
            was_caught_up = false;
        }
        if (now - last_report >= (caught_up(&d) ? d.report_ms : d.report_ms < 2000 ? d.report_ms : 2000)) {
            report(&d, now - last_report, !caught_up(&d));
            last_report = now;
        }
    }
    d.stopping = true;
    if (d.in_batch && commit(&d, &err))
        fs_log_error("last batch not committed", json_pack("{s:s}", "error", err.msg));
    fs_log_info("stopped", json_pack("{s:I}", "applied", (json_int_t)d.applied));
    fs_follower_destroy(d.follower);
    if (d.dlq) { /* (NULL: its replacement could not be made) */
        rd_kafka_flush(d.dlq, 5000);
        rd_kafka_destroy(d.dlq);
    }
    d.p.sink->close(&d.p);
    free(d.next);
    free(d.pos);
    free(d.target);
    free(d.ts);
    fs_codec_destroy(d.codec);
    return 0;
}
