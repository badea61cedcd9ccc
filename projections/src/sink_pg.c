/* The PostgreSQL target of flashsale-projector.
 *
 * Exactly-once effect: a batch's statements and the next offsets of the partitions it read
 * are written in ONE PostgreSQL transaction, and the projector resumes from the offsets
 * stored there (projector_offsets), not from Kafka's. The frequent changes (counters,
 * orders, lines, history, payments) are buffered per batch, compacted where only the last
 * value counts (a product's counters, an order's snapshot, a line) and written as one
 * multi-row statement per kind (unnest of arrays); product definitions and edits go one by
 * one, before them. Statements are prepared once per connection and sent in libpq's pipeline
 * mode (no round trip per statement; results drained every PG_DRAIN statements).
 * Idempotent by construction as well: counters are the absolute values the events carry,
 * history and payment rows are keyed by their source partition and offset, orders are
 * upserts; an inventory decision never overwrites a status the saga already wrote.
 * --rebuild empties the tables and replays in place. projector_status holds a heartbeat and
 * the last batch's lag, which the API reports as the read model's freshness. */
#include "projector.h"
#include "pg_schema.h"

#include "fs/db.h"
#include "fs/log.h"
#include "fs/map.h"

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_NAME "postgres"
#define PG_DRAIN 256

/* One kind of buffered row: columns of text values (NULL allowed); with `compact`, a row
 * whose key (its first `keycols` columns) is already buffered replaces it. */
typedef struct {
    const char *stmt;
    int ncols, keycols;
    bool compact;
    char **v; /* rows * ncols */
    size_t rows, cap;
    fs_map *index; /* key -> row + 1 */
} rowbuf;

enum { B_CNT, B_OINV, B_IINV, B_OSNAP, B_ISNAP, B_HIST, B_PAY, NBUF };

typedef struct {
    PGconn *c;
    bool piped;
    int queued;
    rowbuf buf[NBUF];
} pgsink;

static const struct {
    const char *name, *sql;
} stmts[] = {
    {"def", "INSERT INTO products (product_id, name, description, price, currency, stock,"
            " available, sale_starts_at, sale_ends_at, per_user_limit, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $6, to_timestamp($7::bigint / 1000.0),"
            " to_timestamp($8::bigint / 1000.0), $9, to_timestamp($10::bigint / 1000.0))"
            " ON CONFLICT (product_id) DO NOTHING"},
    {"upd", "UPDATE products SET name = coalesce($2, name),"
            " description = coalesce($3, description), price = coalesce($4::bigint, price),"
            " sale_starts_at = coalesce(to_timestamp($5::bigint / 1000.0), sale_starts_at),"
            " sale_ends_at = coalesce(to_timestamp($6::bigint / 1000.0), sale_ends_at),"
            " per_user_limit = coalesce($7::integer, per_user_limit),"
            " updated_at = greatest(updated_at, to_timestamp($8::bigint / 1000.0))"
            " WHERE product_id = $1"},
    {"pause", "UPDATE products SET paused = $2,"
              " updated_at = greatest(updated_at, to_timestamp($3::bigint / 1000.0)) WHERE product_id = $1"},
    {"cnt", "UPDATE products p SET available = u.a, reserved = u.r, sold = u.s,"
            " stock = u.a + u.r + u.s,"
            " updated_at = greatest(p.updated_at, to_timestamp(u.t / 1000.0))"
            " FROM unnest($1::text[], $2::integer[], $3::integer[], $4::integer[], $5::bigint[])"
            " AS u(id, a, r, s, t) WHERE p.product_id = u.id"},
    {"oinv", "INSERT INTO orders (order_id, member_id, status, reason, amount, pay_by,"
             " created_at, updated_at) SELECT id, m, st, re, am, to_timestamp(pb / 1000.0),"
             " to_timestamp(t / 1000.0), to_timestamp(t / 1000.0) FROM unnest($1::text[],"
             " $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[])"
             " AS u(id, m, st, re, am, pb, t) ON CONFLICT (order_id) DO NOTHING"},
    {"iinv", "INSERT INTO order_items (order_id, line, product_id, quantity, unit_price, state)"
             " SELECT id, 0, pr, q, up, st FROM unnest($1::text[], $2::text[], $3::integer[],"
             " $4::bigint[], $5::text[]) AS u(id, pr, q, up, st)"
             " ON CONFLICT (order_id, line) DO NOTHING"},
    {"osnap", "INSERT INTO orders (order_id, member_id, status, reason, amount, pay_by, created_at,"
              " updated_at) SELECT id, m, st, re, am, to_timestamp(pb / 1000.0),"
              " to_timestamp(t / 1000.0), to_timestamp(t / 1000.0) FROM unnest($1::text[],"
              " $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[])"
              " AS u(id, m, st, re, am, pb, t)"
              " ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status,"
              " reason = EXCLUDED.reason, amount = EXCLUDED.amount,"
              " pay_by = coalesce(EXCLUDED.pay_by, orders.pay_by), updated_at = EXCLUDED.updated_at"},
    {"isnap", "INSERT INTO order_items (order_id, line, product_id, quantity, unit_price, state)"
              " SELECT id, ln, pr, q, up, st FROM unnest($1::text[], $2::integer[], $3::text[],"
              " $4::integer[], $5::bigint[], $6::text[]) AS u(id, ln, pr, q, up, st)"
              " ON CONFLICT (order_id, line) DO UPDATE SET"
              " product_id = EXCLUDED.product_id, quantity = EXCLUDED.quantity,"
              " unit_price = EXCLUDED.unit_price, state = EXCLUDED.state"},
    {"hist", "INSERT INTO order_status_history (order_id, status, previous, reason, at,"
             " source_partition, source_offset) SELECT id, st, pv, re, to_timestamp(t / 1000.0),"
             " pa, o FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],"
             " $6::integer[], $7::bigint[]) AS u(id, st, pv, re, t, pa, o) ON CONFLICT DO NOTHING"},
    {"pay", "INSERT INTO payments (order_id, attempt, kind, amount, payment_id, reason, at,"
            " source_partition, source_offset) SELECT id, at, k, am, pi, re, to_timestamp(t / 1000.0),"
            " pa, o FROM unnest($1::text[], $2::integer[], $3::text[], $4::bigint[], $5::text[],"
            " $6::text[], $7::bigint[], $8::integer[], $9::bigint[])"
            " AS u(id, at, k, am, pi, re, t, pa, o) ON CONFLICT DO NOTHING"},
    {"off", "INSERT INTO projector_offsets (projector, topic, partition, next_offset)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (projector, topic, partition)"
            " DO UPDATE SET next_offset = EXCLUDED.next_offset"},
    {"status", "INSERT INTO projector_status (projector, heartbeat, lag_ms) VALUES ($1, now(),"
               " coalesce($2::bigint, 0)) ON CONFLICT (projector) DO UPDATE SET heartbeat = now(),"
               " lag_ms = coalesce($2::bigint, projector_status.lag_ms)"},
};

#define NUM(buf, v) (snprintf(buf, sizeof buf, "%lld", (long long)(v)), buf)

static int prepare(pgsink *s, fs_err *err)
{
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
        PGresult *r = PQprepare(s->c, stmts[i].name, stmts[i].sql, 0, NULL);
        int bad = PQresultStatus(r) != PGRES_COMMAND_OK;
        if (bad)
            fs_err_from_pg(err, s->c, r, stmts[i].name);
        PQclear(r);
        if (bad)
            return -1;
    }
    return 0;
}

/* Reads every result up to the pipeline's sync point; the first error is returned. */
static int drain(pgsink *s, fs_err *err)
{
    int rc = 0;
    if (!PQpipelineSync(s->c))
        return fs_err_from_pg(err, s->c, NULL, "pipeline sync");
    for (;;) {
        PGresult *r = PQgetResult(s->c);
        if (!r) {
            if (PQstatus(s->c) == CONNECTION_BAD)
                return rc ? rc : fs_err_from_pg(err, s->c, NULL, "pipeline");
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        if ((st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR) && !rc)
            rc = fs_err_from_pg(err, s->c, r, "projector sql");
        PQclear(r);
    }
    s->queued = 0;
    return rc;
}

static int send_q(pgsink *s, const char *stmt, int n, const char *const *v, fs_err *err)
{
    if (!s->piped) {
        if (!PQenterPipelineMode(s->c))
            return fs_err_from_pg(err, s->c, NULL, "pipeline mode");
        s->piped = true;
        if (!PQsendQueryParams(s->c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
            return fs_err_from_pg(err, s->c, NULL, "begin");
    }
    if (!PQsendQueryPrepared(s->c, stmt, n, v, NULL, NULL, 0))
        return fs_err_from_pg(err, s->c, NULL, stmt);
    return ++s->queued >= PG_DRAIN ? drain(s, err) : 0;
}


/* ---- buffered multi-row writes ----------------------------------------------------------- */

static const struct {
    const char *stmt;
    int ncols, keycols;
    bool compact;
} kinds[NBUF] = {
    [B_CNT] = {"cnt", 5, 1, true},     [B_OINV] = {"oinv", 7, 1, false},
    [B_IINV] = {"iinv", 5, 1, false},  [B_OSNAP] = {"osnap", 7, 1, true},
    [B_ISNAP] = {"isnap", 6, 2, true}, [B_HIST] = {"hist", 7, 0, false},
    [B_PAY] = {"pay", 9, 0, false},
};

static void buf_reset(rowbuf *b)
{
    for (size_t i = 0; i < b->rows * (size_t)b->ncols; i++)
        free(b->v[i]);
    b->rows = 0;
    fs_map_destroy(b->index);
    b->index = NULL;
}

/* Adds a row (copies of vals); -1 when memory runs out (the batch then fails and is redone). */
static int buf_add(rowbuf *b, const char *const *vals);
/* The same, the failure told as an error that fails the batch (redone from the stored
 * offsets). */
static int add_row(rowbuf *b, const char *const *vals, fs_err *err)
{
    return buf_add(b, vals) ? fs_err_set(err, FS_ERR_RETRIABLE, 0, "out of memory buffering a batch") : 0;
}

static int buf_add(rowbuf *b, const char *const *vals)
{
    size_t row = b->rows;
    if (b->compact) {
        char key[2 * INV_ID_MAX + 16];
        snprintf(key, sizeof key, "%s|%s", vals[0] ? vals[0] : "", b->keycols > 1 && vals[1] ? vals[1] : "");
        if (!b->index)
            b->index = fs_map_new(1024);
        uintptr_t at = (uintptr_t)fs_map_get(b->index, key);
        if (at) { /* only the last value of this key counts */
            row = at - 1;
            for (int c = 0; c < b->ncols; c++) {
                free(b->v[row * (size_t)b->ncols + (size_t)c]);
                b->v[row * (size_t)b->ncols + (size_t)c] = vals[c] ? strdup(vals[c]) : NULL;
            }
            return 0;
        }
        fs_map_put(b->index, key, (void *)(row + 1));
    }
    if (b->rows == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        char **v = realloc(b->v, cap * (size_t)b->ncols * sizeof *b->v);
        if (!v)
            return -1;
        b->v = v;
        b->cap = cap;
    }
    for (int c = 0; c < b->ncols; c++)
        b->v[row * (size_t)b->ncols + (size_t)c] = vals[c] ? strdup(vals[c]) : NULL;
    b->rows++;
    return 0;
}

/* An array literal {"a","b",NULL} of one column. */
static char *array_literal(const rowbuf *b, int col)
{
    size_t n = 3;
    for (size_t r = 0; r < b->rows; r++) {
        const char *v = b->v[r * (size_t)b->ncols + (size_t)col];
        n += v ? 2 * strlen(v) + 3 : 5;
    }
    char *out = malloc(n), *o = out;
    if (!out)
        return NULL;
    *o++ = '{';
    for (size_t r = 0; r < b->rows; r++) {
        const char *v = b->v[r * (size_t)b->ncols + (size_t)col];
        if (r)
            *o++ = ',';
        if (!v) {
            memcpy(o, "NULL", 4);
            o += 4;
            continue;
        }
        *o++ = '"';
        for (; *v; v++) {
            if (*v == '"' || *v == '\\')
                *o++ = '\\';
            *o++ = *v;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

static int send_q(pgsink *s, const char *stmt, int n, const char *const *v, fs_err *err);

static int buf_flush(pgsink *s, fs_err *err)
{
    for (int k = 0; k < NBUF; k++) {
        rowbuf *b = &s->buf[k];
        if (!b->rows)
            continue;
        char *cols[9] = {0};
        int rc = 0;
        for (int c = 0; c < b->ncols; c++)
            if (!(cols[c] = array_literal(b, c)))
                rc = fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        if (rc == 0)
            rc = send_q(s, b->stmt, b->ncols, (const char *const *)cols, err);
        for (int c = 0; c < b->ncols; c++)
            free(cols[c]);
        buf_reset(b);
        if (rc)
            return -1;
    }
    return 0;
}

static void buf_init(pgsink *s)
{
    for (int k = 0; k < NBUF; k++) {
        s->buf[k].stmt = kinds[k].stmt;
        s->buf[k].ncols = kinds[k].ncols;
        s->buf[k].keycols = kinds[k].keycols;
        s->buf[k].compact = kinds[k].compact;
    }
}

static void buf_free(pgsink *s)
{
    for (int k = 0; k < NBUF; k++) {
        buf_reset(&s->buf[k]);
        free(s->buf[k].v);
        s->buf[k].v = NULL;
        s->buf[k].cap = 0;
    }
}

static int pg_open(projector *p, bool rebuild, fs_err *err)
{
    pgsink *s = calloc(1, sizeof *s);
    p->store = s;
    buf_init(s);
    for (;;) { /* PostgreSQL may come up after us */
        s->c = fs_pg_connect(&p->cfg, "flashsale-projector", err);
        if (s->c || err->cls == FS_ERR_FATAL || *p->stop)
            break;
        fs_log_warn("postgres not reachable, retrying", json_pack("{s:s}", "error", err->msg));
        sleep(1);
    }
    if (!s->c || pg_schema_migrate(s->c, err) || prepare(s, err))
        return -1;
    if (rebuild) {
        PGresult *r = PQexec(s->c, "TRUNCATE products, orders, order_items, order_status_history,"
                                   " payments, projector_offsets");
        int bad = PQresultStatus(r) != PGRES_COMMAND_OK;
        if (bad)
            fs_err_from_pg(err, s->c, r, "truncate");
        PQclear(r);
        if (bad)
            return -1;
        fs_log_info("read model emptied for a rebuild", NULL);
    }
    return 0;
}

static int pg_load_offsets(projector *p, int64_t *next, fs_err *err)
{
    pgsink *s = p->store;
    PGresult *r = PQexecParams(s->c,
                               "SELECT topic, partition, next_offset FROM projector_offsets"
                               " WHERE projector = $1",
                               1, NULL, (const char *[]){PG_NAME}, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fs_err_from_pg(err, s->c, r, "offsets");
        PQclear(r);
        return -1;
    }
    for (int row = 0; row < PQntuples(r); row++)
        for (int t = 0; t < PROJ_NTOPICS; t++) {
            int part = atoi(PQgetvalue(r, row, 1));
            if (!strcmp(PQgetvalue(r, row, 0), proj_topics[t]) && part >= 0 && part < p->nparts)
                next[t * p->nparts + part] = atoll(PQgetvalue(r, row, 2));
        }
    PQclear(r);
    return 0;
}

static int pg_inventory(projector *p, const inv_event *e, int32_t part, int64_t off, fs_err *err)
{
    (void)part, (void)off;
    pgsink *s = p->store;
    char a[24], b[24], c[24], d[24], t[24], u[24];
    NUM(t, e->occurred_at);
    switch (e->type) {
    case INV_EV_DEFINED: {
        const char *v[] = {e->product_id, e->f.name, e->f.description, NUM(a, e->f.price),
                           e->f.currency[0] ? e->f.currency : "KRW", NUM(b, e->stock),
                           NUM(c, e->f.sale_starts_at), e->f.sale_ends_at ? NUM(d, e->f.sale_ends_at) : NULL,
                           NUM(u, e->f.per_user_limit), t};
        return send_q(s, "def", 10, v, err);
    }
    case INV_EV_UPDATED: {
        const char *v[] = {e->product_id, e->f.has_name ? e->f.name : NULL,
                           e->f.has_description ? e->f.description : NULL,
                           e->f.has_price ? NUM(a, e->f.price) : NULL,
                           e->f.has_starts ? NUM(b, e->f.sale_starts_at) : NULL,
                           e->f.has_ends ? NUM(c, e->f.sale_ends_at) : NULL,
                           e->f.has_limit ? NUM(d, e->f.per_user_limit) : NULL, t};
        return send_q(s, "upd", 8, v, err);
    }
    case INV_EV_PAUSED:
    case INV_EV_RESUMED: {
        const char *v[] = {e->product_id, e->type == INV_EV_PAUSED ? "true" : "false", t};
        return send_q(s, "pause", 3, v, err);
    }
    case INV_EV_RESTOCKED:
    case INV_EV_RESERVED:
    case INV_EV_COMMITTED:
    case INV_EV_RELEASED: {
        const char *v[] = {e->product_id, NUM(a, e->available), NUM(b, e->reserved), NUM(c, e->sold), t};
        if (add_row(&s->buf[B_CNT], v, err))
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
        const char *l[] = {e->order_id, e->product_id, NUM(c, e->quantity), NUM(d, e->unit_price),
                           ok ? "RESERVED" : "REJECTED"};
        return add_row(&s->buf[B_OINV], v, err) || add_row(&s->buf[B_IINV], l, err) ? -1 : 0;
    }
    default:
        return 0;
    }
}

static int pg_order(projector *p, const ord_order *o, int32_t part, int64_t off, fs_err *err)
{
    pgsink *s = p->store;
    char a[24], b[24], t[24], q[24], pr[24], ln[24], pp[24], oo[24];
    NUM(t, o->occurred_at);
    const char *v[] = {o->order_id, o->member_id, ord_status_name(o->status), o->reason,
                       NUM(a, o->amount), o->pay_by ? NUM(b, o->pay_by) : NULL, t};
    if (add_row(&s->buf[B_OSNAP], v, err))
        return -1;
    for (int i = 0; i < o->nlines; i++) {
        const char *l[] = {o->order_id, NUM(ln, i), o->lines[i].product_id,
                           NUM(q, o->lines[i].quantity), NUM(pr, o->lines[i].unit_price),
                           line_state_name(o->lines[i].state)};
        if (add_row(&s->buf[B_ISNAP], l, err))
            return -1;
    }
    if (o->previous == o->status)
        return 0; /* a line's progress, not a transition */
    const char *h[] = {o->order_id, ord_status_name(o->status), ord_status_name(o->previous),
                       o->reason, t, NUM(pp, part), NUM(oo, off)};
    return add_row(&s->buf[B_HIST], h, err);
}

static int pg_payment(projector *p, const pay_event *e, int32_t part, int64_t off, fs_err *err)
{
    pgsink *s = p->store;
    char a[24], at[24], t[24], pp[24], oo[24];
    bool refund = e->type == PAY_EV_REFUND_SUCCEEDED || e->type == PAY_EV_REFUND_FAILED;
    const char *vals[] = {e->order_id, NUM(at, refund ? 1 : e->attempt), pay_event_name(e->type),
                          NUM(a, e->amount), e->payment_id, e->reason, NUM(t, e->occurred_at),
                          NUM(pp, part), NUM(oo, off)};
    return add_row(&s->buf[B_PAY], vals, err);
}

static int pg_commit(projector *p, const int64_t *next, int64_t lag_ms, fs_err *err)
{
    pgsink *s = p->store;
    if (buf_flush(s, err))
        return -1;
    for (int t = 0; t < PROJ_NTOPICS; t++)
        for (int i = 0; i < p->nparts; i++) {
            int64_t n = next[t * p->nparts + i];
            if (n < 0)
                continue;
            char part[16], off[24];
            const char *v[] = {PG_NAME, proj_topics[t], NUM(part, i), NUM(off, n)};
            if (send_q(s, "off", 4, v, err))
                return -1;
        }
    char lag[24];
    if (send_q(s, "status", 2, (const char *[]){PG_NAME, NUM(lag, lag_ms)}, err) ||
        !PQsendQueryParams(s->c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) || drain(s, err))
        return -1;
    if (!PQexitPipelineMode(s->c))
        return fs_err_from_pg(err, s->c, NULL, "pipeline exit");
    s->piped = false;
    return 0;
}

static void pg_rollback(projector *p)
{
    pgsink *s = p->store;
    bool reset = false;
    for (int k = 0; k < NBUF; k++)
        buf_reset(&s->buf[k]);
    if (s->piped) {
        fs_err e = {0};
        drain(s, &e);
        if (!PQexitPipelineMode(s->c))
            PQreset(s->c), reset = true;
        s->piped = false;
        s->queued = 0;
    }
    if (PQstatus(s->c) != CONNECTION_OK)
        PQreset(s->c), reset = true;
    else
        PQclear(PQexec(s->c, "ROLLBACK"));
    fs_err e = {0};
    if (reset && PQstatus(s->c) == CONNECTION_OK && prepare(s, &e)) /* a new session has none */
        fs_log_warn("statements not prepared again", json_pack("{s:s}", "error", e.msg));
}

static int pg_tick(projector *p, bool caught_up, fs_err *err)
{
    pgsink *s = p->store; /* caught up: nothing left to apply, so no lag */
    PGresult *r = PQexecPrepared(s->c, "status", 2, (const char *[]){PG_NAME, caught_up ? "0" : NULL},
                                 NULL, NULL, 0);
    int bad = PQresultStatus(r) != PGRES_COMMAND_OK;
    if (bad)
        fs_err_from_pg(err, s->c, r, "heartbeat");
    PQclear(r);
    return bad ? -1 : 0;
}

static void pg_close(projector *p)
{
    pgsink *s = p->store;
    if (!s)
        return;
    PQfinish(s->c);
    buf_free(s);
    free(s);
    p->store = NULL;
}

const proj_sink proj_sink_pg = {"postgres",  pg_open,   pg_load_offsets, pg_inventory, pg_order,
                                pg_payment,  pg_commit, pg_rollback,     pg_tick,      pg_close};
