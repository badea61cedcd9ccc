/* flashsale-projector --target postgres [--rebuild]: the PostgreSQL read model.
 *
 * Reads inventory.events, orders.events and payments.events (read_committed, every
 * partition) and applies each batch of events together with the offsets it consumed in ONE
 * PostgreSQL transaction; on start it resumes from the offsets stored in PostgreSQL (not from
 * Kafka's), so a crash at any instant neither skips nor doubles an event. Counters are
 * written as the absolute values the events carry; history and payment rows are keyed by
 * their source offset as a second guard. Undecodable events go to the dead-letter topic and
 * are skipped. --rebuild empties the read model and replays from offset 0, logging progress
 * and an ETA.
 *
 * Settings: FLASHSALE_PG_URL, FLASHSALE_PROJECTOR_BATCH (2000 events), FLASHSALE_PROJECTOR_BATCH_MS
 * (50). The Redis target is not built yet. */
#include "inv_codec.h"
#include "order_state.h"
#include "pg_schema.h"

#include "fs/codec.h"
#include "fs/config.h"
#include "fs/db.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROJECTOR "postgres"
static const char *const topics[] = {FS_TOPIC_INVENTORY_EVENTS, FS_TOPIC_ORDERS_EVENTS,
                                     FS_TOPIC_PAYMENTS_EVENTS};
#define NTOPICS 3

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

typedef struct {
    fs_common_config cfg;
    fs_codec *codec;
    PGconn *pg;
    rd_kafka_t *consumer, *dlq;
    long batch_max, batch_ms;
    int nparts;
    int64_t *next; /* [topic * nparts + partition]: next offset of the open batch */
    bool in_txn;
    long batch_n;
    int64_t batch_started;
    uint64_t applied, dead;
} projector;

/* ---- SQL ---------------------------------------------------------------------------- */

static int exec(projector *p, const char *sql, int n, const char *const *vals, fs_err *err)
{
    PGresult *r = PQexecParams(p->pg, sql, n, NULL, vals, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = fs_err_from_pg(err, p->pg, r, "projector sql");
    PQclear(r);
    return rc;
}

#define NUM(buf, v) (snprintf(buf, sizeof buf, "%lld", (long long)(v)), buf)

static int apply_inventory(projector *p, const inv_event *e, fs_err *err)
{
    char a[24], b[24], c[24], d[24], t[24], u[24], w[24];
    NUM(t, e->occurred_at);
    switch (e->type) {
    case INV_EV_DEFINED: {
        const char *v[] = {e->product_id, e->f.name, e->f.description, NUM(a, e->f.price),
                           e->f.currency[0] ? e->f.currency : "KRW", NUM(b, e->stock),
                           NUM(c, e->f.sale_starts_at), e->f.sale_ends_at ? NUM(d, e->f.sale_ends_at) : NULL,
                           NUM(u, e->f.per_user_limit), t};
        return exec(p,
                    "INSERT INTO products (product_id, name, description, price, currency, stock,"
                    " available, sale_starts_at, sale_ends_at, per_user_limit, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $6, to_timestamp($7::bigint / 1000.0),"
                    " to_timestamp($8::bigint / 1000.0), $9, to_timestamp($10::bigint / 1000.0))"
                    " ON CONFLICT (product_id) DO NOTHING",
                    10, v, err);
    }
    case INV_EV_UPDATED: {
        const char *v[] = {e->product_id, e->f.has_name ? e->f.name : NULL,
                           e->f.has_description ? e->f.description : NULL,
                           e->f.has_price ? NUM(a, e->f.price) : NULL,
                           e->f.has_starts ? NUM(b, e->f.sale_starts_at) : NULL,
                           e->f.has_ends ? NUM(c, e->f.sale_ends_at) : NULL,
                           e->f.has_limit ? NUM(d, e->f.per_user_limit) : NULL, t};
        return exec(p,
                    "UPDATE products SET name = coalesce($2, name),"
                    " description = coalesce($3, description), price = coalesce($4::bigint, price),"
                    " sale_starts_at = coalesce(to_timestamp($5::bigint / 1000.0), sale_starts_at),"
                    " sale_ends_at = coalesce(to_timestamp($6::bigint / 1000.0), sale_ends_at),"
                    " per_user_limit = coalesce($7::integer, per_user_limit),"
                    " updated_at = to_timestamp($8::bigint / 1000.0) WHERE product_id = $1",
                    8, v, err);
    }
    case INV_EV_PAUSED:
    case INV_EV_RESUMED: {
        const char *v[] = {e->product_id, e->type == INV_EV_PAUSED ? "true" : "false", t};
        return exec(p,
                    "UPDATE products SET paused = $2, updated_at = to_timestamp($3::bigint / 1000.0)"
                    " WHERE product_id = $1",
                    3, v, err);
    }
    case INV_EV_RESTOCKED:
    case INV_EV_RESERVED:
    case INV_EV_COMMITTED:
    case INV_EV_RELEASED: {
        const char *v[] = {e->product_id, NUM(a, e->available), NUM(b, e->reserved), NUM(c, e->sold), t};
        if (exec(p,
                 "UPDATE products SET available = $2, reserved = $3, sold = $4,"
                 " stock = $2::integer + $3::integer + $4::integer,"
                 " updated_at = to_timestamp($5::bigint / 1000.0) WHERE product_id = $1",
                 5, v, err))
            return -1;
        if (e->type != INV_EV_RESERVED)
            return 0;
    } /* fall through: a single-item reservation is also an order */
    /* FALLTHROUGH */
    case INV_EV_REJECTED: {
        if (e->item_count > 1)
            return 0; /* checkout lines: the saga's snapshots describe the order */
        bool ok = e->type == INV_EV_RESERVED;
        const char *v[] = {e->order_id, e->member_id, ok ? "RESERVED" : "REJECTED",
                           ok ? "" : inv_reason_name(e->reason),
                           NUM(a, (int64_t)e->quantity * e->unit_price),
                           ok ? NUM(b, e->pay_by) : NULL, t};
        if (exec(p,
                 "INSERT INTO orders (order_id, member_id, status, reason, amount, pay_by,"
                 " created_at, updated_at) VALUES ($1, $2, $3, $4, $5,"
                 " to_timestamp($6::bigint / 1000.0), to_timestamp($7::bigint / 1000.0),"
                 " to_timestamp($7::bigint / 1000.0)) ON CONFLICT (order_id) DO NOTHING",
                 7, v, err))
            return -1;
        const char *l[] = {e->order_id, e->product_id, NUM(c, e->quantity), NUM(d, e->unit_price),
                           ok ? "RESERVED" : "REJECTED"};
        (void)w;
        return exec(p,
                    "INSERT INTO order_items (order_id, line, product_id, quantity, unit_price, state)"
                    " VALUES ($1, 0, $2, $3, $4, $5) ON CONFLICT (order_id, line) DO NOTHING",
                    5, l, err);
    }
    default:
        return 0;
    }
}

static int apply_order(projector *p, const ord_order *o, int32_t part, int64_t offset, fs_err *err)
{
    char a[24], b[24], t[24], q[24], pr[24], ln[24], pp[24], oo[24];
    NUM(t, o->occurred_at);
    const char *v[] = {o->order_id, o->member_id, ord_status_name(o->status), o->reason,
                       NUM(a, o->amount), o->pay_by ? NUM(b, o->pay_by) : NULL, t};
    if (exec(p,
             "INSERT INTO orders (order_id, member_id, status, reason, amount, pay_by, created_at,"
             " updated_at) VALUES ($1, $2, $3, $4, $5, to_timestamp($6::bigint / 1000.0),"
             " to_timestamp($7::bigint / 1000.0), to_timestamp($7::bigint / 1000.0))"
             " ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status,"
             " reason = EXCLUDED.reason, amount = EXCLUDED.amount,"
             " pay_by = coalesce(EXCLUDED.pay_by, orders.pay_by), updated_at = EXCLUDED.updated_at",
             7, v, err))
        return -1;
    for (int i = 0; i < o->nlines; i++) {
        const char *l[] = {o->order_id, NUM(ln, i), o->lines[i].product_id,
                           NUM(q, o->lines[i].quantity), NUM(pr, o->lines[i].unit_price),
                           line_state_name(o->lines[i].state)};
        if (exec(p,
                 "INSERT INTO order_items (order_id, line, product_id, quantity, unit_price, state)"
                 " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id, line) DO UPDATE SET"
                 " product_id = EXCLUDED.product_id, quantity = EXCLUDED.quantity,"
                 " unit_price = EXCLUDED.unit_price, state = EXCLUDED.state",
                 6, l, err))
            return -1;
    }
    if (o->previous == o->status)
        return 0; /* a line's progress, not a transition */
    const char *h[] = {o->order_id, ord_status_name(o->status), ord_status_name(o->previous),
                       o->reason, t, NUM(pp, part), NUM(oo, offset)};
    return exec(p,
                "INSERT INTO order_status_history (order_id, status, previous, reason, at,"
                " source_partition, source_offset) VALUES ($1, $2, $3, $4,"
                " to_timestamp($5::bigint / 1000.0), $6, $7) ON CONFLICT DO NOTHING",
                7, h, err);
}

static int apply_payment(projector *p, const char *kind, avro_value_t *v, int32_t part,
                         int64_t offset, fs_err *err)
{
    char order[64], pid[64], reason[32], a[24], at[24], t[24], pp[24], oo[24];
    fs_av_read_str(v, "order_id", order, sizeof order, NULL);
    fs_av_read_str(v, "payment_id", pid, sizeof pid, NULL);
    fs_av_read_str(v, "reason", reason, sizeof reason, NULL);
    const char *vals[] = {order, NUM(at, fs_av_read_long(v, "attempt", 1, NULL)), kind,
                          NUM(a, fs_av_read_long(v, "amount", 0, NULL)), pid, reason,
                          NUM(t, fs_av_read_long(v, "occurred_at", 0, NULL)), NUM(pp, part),
                          NUM(oo, offset)};
    return exec(p,
                "INSERT INTO payments (order_id, attempt, kind, amount, payment_id, reason, at,"
                " source_partition, source_offset) VALUES ($1, $2, $3, $4, $5, $6,"
                " to_timestamp($7::bigint / 1000.0), $8, $9) ON CONFLICT DO NOTHING",
                9, vals, err);
}

/* ---- batches and offsets -------------------------------------------------------------- */

static int topic_index(const char *name)
{
    for (int i = 0; i < NTOPICS; i++)
        if (!strcmp(name, topics[i]))
            return i;
    return -1;
}

static int batch_commit(projector *p, fs_err *err)
{
    if (!p->in_txn)
        return 0;
    for (int t = 0; t < NTOPICS; t++)
        for (int i = 0; i < p->nparts; i++) {
            int64_t n = p->next[t * p->nparts + i];
            if (n < 0)
                continue;
            char part[16], off[24];
            snprintf(part, sizeof part, "%d", i);
            snprintf(off, sizeof off, "%lld", (long long)n);
            const char *v[] = {PROJECTOR, topics[t], part, off};
            if (exec(p,
                     "INSERT INTO projector_offsets (projector, topic, partition, next_offset)"
                     " VALUES ($1, $2, $3, $4) ON CONFLICT (projector, topic, partition)"
                     " DO UPDATE SET next_offset = EXCLUDED.next_offset",
                     4, v, err))
                return -1;
        }
    if (exec(p, "COMMIT", 0, NULL, err))
        return -1;
    p->in_txn = false;
    p->applied += (uint64_t)p->batch_n;
    p->batch_n = 0;
    return 0;
}

/* Assigns every partition at the offset stored in PostgreSQL (or its low watermark). */
static int assign_from_pg(projector *p, fs_err *err)
{
    PGresult *r = PQexecParams(p->pg,
                               "SELECT topic, partition, next_offset FROM projector_offsets"
                               " WHERE projector = $1",
                               1, NULL, (const char *[]){PROJECTOR}, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fs_err_from_pg(err, p->pg, r, "offsets");
        PQclear(r);
        return -1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NTOPICS * p->nparts);
    for (int t = 0; t < NTOPICS; t++)
        for (int i = 0; i < p->nparts; i++) {
            int64_t lo = 0, hi = 0;
            rd_kafka_query_watermark_offsets(p->consumer, topics[t], i, &lo, &hi, 5000);
            rd_kafka_topic_partition_list_add(l, topics[t], i)->offset = lo;
            p->next[t * p->nparts + i] = -1;
        }
    for (int row = 0; row < PQntuples(r); row++) {
        rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_find(
            l, PQgetvalue(r, row, 0), atoi(PQgetvalue(r, row, 1)));
        if (e)
            e->offset = atoll(PQgetvalue(r, row, 2));
    }
    PQclear(r);
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(p->consumer, 1, NULL, &md, 5000) == 0)
        rd_kafka_metadata_destroy(md);
    rd_kafka_resp_err_t e = rd_kafka_assign(p->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    return e ? fs_err_from_kafka_code(err, e, "assign") : 0;
}

static int handle(projector *p, const rd_kafka_message_t *m, fs_err *err)
{
    int t = topic_index(rd_kafka_topic_name(m->rkt));
    const fs_schema *s;
    avro_value_t v;
    fs_err derr = {0};
    int rc = 0;
    if (fs_codec_decode(p->codec, m->payload, m->len, &s, &v, &derr)) {
        p->dead++;
        if (fs_kafka_dead_letter(p->dlq, m, derr.msg, err))
            return -1;
    } else {
        const char *type = fs_schema_name(s);
        if (t == 0) {
            inv_event e;
            if (inv_event_decode(&v, type, &e, &derr) == 0)
                rc = apply_inventory(p, &e, err);
        } else if (t == 1 && !strcmp(type, "OrderStatusChanged")) {
            ord_order o;
            if (ord_decode(&v, &o, &derr) == 0)
                rc = apply_order(p, &o, m->partition, m->offset, err);
        } else if (t == 2) {
            rc = apply_payment(p, type, &v, m->partition, m->offset, err);
        }
        avro_value_decref(&v);
    }
    if (rc == 0 && t >= 0 && m->partition < p->nparts)
        p->next[t * p->nparts + m->partition] = m->offset + 1;
    return rc;
}

int main(int argc, char **argv)
{
    static projector p;
    fs_err err = {0};
    bool rebuild = false;
    const char *target = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--target") && i + 1 < argc)
            target = argv[++i];
        else if (!strcmp(argv[i], "--rebuild"))
            rebuild = true;
        else
            target = NULL, i = argc;
    }
    if (!target || strcmp(target, "postgres")) {
        fprintf(stderr, "usage: flashsale-projector --target postgres [--rebuild]\n"
                        "(the redis target is not built yet)\n");
        return 2;
    }
    fs_log_init("projector", FS_LOG_INFO);
    if (fs_common_config_load(&p.cfg, &err) ||
        fs_env_int("FLASHSALE_PROJECTOR_BATCH", 2000, 1, 100000, &p.batch_max, &err) ||
        fs_env_int("FLASHSALE_PROJECTOR_BATCH_MS", 50, 1, 60000, &p.batch_ms, &err))
        fs_config_die(&err);
    p.codec = fs_codec_new(&err);
    if (!p.codec)
        fs_config_die(&err);
    for (;;) { /* PostgreSQL may come up after us */
        p.pg = fs_pg_connect(&p.cfg, "flashsale-projector", &err);
        if (p.pg || err.cls == FS_ERR_FATAL || stop_flag)
            break;
        fs_log_warn("postgres not reachable, retrying", json_pack("{s:s}", "error", err.msg));
        sleep(1);
    }
    if (!p.pg || pg_schema_migrate(p.pg, &err))
        fs_config_die(&err);
    if (rebuild) {
        if (exec(&p, "TRUNCATE products, orders, order_items, order_status_history, payments,"
                     " projector_offsets", 0, NULL, &err))
            fs_config_die(&err);
        fs_log_info("read model emptied for a rebuild", NULL);
    }
    rd_kafka_t *admin = fs_kafka_admin_new(&p.cfg, "flashsale-projector", &err);
    p.nparts = admin ? fs_kafka_partition_count(admin, FS_TOPIC_INVENTORY_EVENTS, 10000, &err) : -1;
    if (admin)
        rd_kafka_destroy(admin);
    if (p.nparts < 1)
        fs_config_die(&err);
    p.next = calloc((size_t)(NTOPICS * p.nparts), sizeof *p.next);
    p.consumer = fs_kafka_consumer_new(&p.cfg, NULL, NULL, false, &err);
    p.dlq = fs_kafka_producer_new(&p.cfg, "flashsale-projector-dlq", &err);
    if (!p.consumer || !p.dlq || assign_from_pg(&p, &err))
        fs_config_die(&err);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    fs_log_info("started", json_pack("{s:s,s:b}", "target", target, "rebuild", rebuild));
    int64_t last_report = fs_mono_ms();
    while (!stop_flag) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p.consumer, 50);
        int rc = 0;
        if (m && !m->err) {
            if (!p.in_txn) {
                rc = exec(&p, "BEGIN", 0, NULL, &err);
                p.in_txn = rc == 0;
                p.batch_started = fs_mono_ms();
            }
            if (rc == 0) {
                rc = handle(&p, m, &err);
                p.batch_n++;
            }
        }
        if (m)
            rd_kafka_message_destroy(m);
        if (rc == 0 && p.in_txn &&
            (p.batch_n >= p.batch_max || fs_mono_ms() - p.batch_started >= p.batch_ms))
            rc = batch_commit(&p, &err);
        if (rc) { /* roll back and redo from what PostgreSQL has */
            fs_log_warn("batch failed, redoing it", json_pack("{s:s}", "error", err.msg));
            PQclear(PQexec(p.pg, "ROLLBACK"));
            p.in_txn = false;
            p.batch_n = 0;
            if (PQstatus(p.pg) != CONNECTION_OK)
                PQreset(p.pg);
            sleep(1);
            rd_kafka_assign(p.consumer, NULL);
            if (assign_from_pg(&p, &err))
                fs_log_warn("reassign failed", json_pack("{s:s}", "error", err.msg));
        }
        if (fs_mono_ms() - last_report >= 10000) {
            last_report = fs_mono_ms();
            fs_log_info("progress", json_pack("{s:I,s:I}", "applied", (json_int_t)p.applied,
                                              "dead_lettered", (json_int_t)p.dead));
        }
    }
    if (p.in_txn && batch_commit(&p, &err))
        fs_log_error("last batch not committed", json_pack("{s:s}", "error", err.msg));
    fs_log_info("stopped", json_pack("{s:I}", "applied", (json_int_t)p.applied));
    rd_kafka_consumer_close(p.consumer);
    rd_kafka_destroy(p.consumer);
    rd_kafka_flush(p.dlq, 5000);
    rd_kafka_destroy(p.dlq);
    PQfinish(p.pg);
    free(p.next);
    fs_codec_destroy(p.codec);
    return 0;
}
