/* Product and order queries over the Redis and PostgreSQL read models; see readmodel.h. */
#include "readmodel.h"
#include "metrics.h"

#include "fs/id.h"
#include "fs/log.h"
#include "fs/map.h"
#include "fs/readmodel.h"

#include <pthread.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- circuit breaker over Redis --------------------------------------------------------- */

static atomic_int fails;
static _Atomic int64_t open_until; /* 0: closed */

bool api_rm_breaker_open(void)
{
    return atomic_load(&open_until) > fs_mono_ms();
}

const char *api_rm_breaker_state(void)
{
    int64_t ou = atomic_load(&open_until);
    return ou == 0 ? "closed" : fs_mono_ms() < ou ? "open" : "half_open";
}

static bool breaker_allow(void)
{
    int64_t ou = atomic_load(&open_until), now = fs_mono_ms();
    if (ou == 0)
        return true;
    if (now < ou)
        return false;
    /* half open: exactly one caller probes, the others keep using PostgreSQL */
    return atomic_compare_exchange_strong(&open_until, &ou, now + FS_RM_BREAKER_OPEN_MS);
}

static void breaker_ok(void)
{
    atomic_store(&fails, 0);
    if (atomic_exchange(&open_until, 0)) {
        fs_metrics_breaker(0);
        fs_log_info("redis read model reachable again; breaker closed", NULL);
    }
}

static void breaker_failed(const char *why)
{
    api_redis_drop();
    fs_metrics_redis_read_failure();
    if (atomic_fetch_add(&fails, 1) + 1 >= FS_RM_BREAKER_FAILS) {
        fs_metrics_breaker(1);
        if (atomic_exchange(&open_until, fs_mono_ms() + FS_RM_BREAKER_OPEN_MS) == 0)
            fs_log_warn("redis read model failing; breaker open, reading PostgreSQL",
                        json_pack("{s:s,s:i}", "error", why, "open_ms", FS_RM_BREAKER_OPEN_MS));
    }
}

/* Runs a reader script. NULL: Redis is off, failed, or has no such key (*miss tells). */
static redisReply *redis_read(api_ctx *a, const char *script, const char *id, bool *miss)
{
    *miss = false;
    if (!breaker_allow())
        return NULL;
    fs_err err = {0};
    redisContext *c = api_redis(a, &err);
    if (!c) {
        breaker_failed(err.msg);
        return NULL;
    }
    redisReply *r = redisCommand(c, "EVAL %s 0 %s", script, id);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        breaker_failed(r ? r->str : c->errstr);
        freeReplyObject(r);
        return NULL;
    }
    breaker_ok();
    if (r->type != REDIS_REPLY_ARRAY) { /* nil: no generation served, or no such key */
        freeReplyObject(r);
        *miss = true;
        return NULL;
    }
    return r;
}

static const char *hget(const redisReply *h, const char *field)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && !strcmp(h->element[i]->str, field))
            return h->element[i + 1]->type == REDIS_REPLY_STRING ? h->element[i + 1]->str : NULL;
    return NULL;
}

static long long hnum(const redisReply *h, const char *field)
{
    const char *s = hget(h, field);
    return s ? atoll(s) : 0;
}

static void hstr(const redisReply *h, const char *field, char *out, size_t n)
{
    const char *s = hget(h, field);
    snprintf(out, n, "%s", s ? s : "");
}

static int64_t lag_of(int64_t heartbeat_ms, int64_t lag_ms)
{
    if (heartbeat_ms <= 0)
        return -1; /* never heard of */
    int64_t silent = fs_now_ms() - heartbeat_ms - 1000;
    return lag_ms + (silent > 0 ? silent : 0);
}

static int64_t meta_lag(const redisReply *m)
{
    if (!m || m->type != REDIS_REPLY_ARRAY || m->elements != 2)
        return -1;
    int64_t hb = m->element[0]->type == REDIS_REPLY_STRING ? atoll(m->element[0]->str) : 0;
    int64_t lag = m->element[1]->type == REDIS_REPLY_STRING ? atoll(m->element[1]->str) : 0;
    return lag_of(hb, lag);
}

/* ---- PostgreSQL ------------------------------------------------------------------------- */

static PGresult *pg_read(api_ctx *a, const char *sql, const char *id)
{
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    if (!c)
        return NULL;
    PGresult *r = PQexecParams(c, sql, 1, NULL, (const char *[]){id}, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fs_log_warn("postgres read model query failed",
                        json_pack("{s:s}", "error", PQresultErrorMessage(r)));
        PQclear(r);
        return NULL;
    }
    return r;
}

#define PG_LAG                                                                                   \
    "(SELECT (extract(epoch FROM heartbeat) * 1000)::bigint FROM projector_status"              \
    " WHERE projector = 'postgres'), (SELECT lag_ms FROM projector_status"                       \
    " WHERE projector = 'postgres')"

static int64_t pg_num(PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? 0 : atoll(PQgetvalue(r, 0, col));
}

/* ---- products --------------------------------------------------------------------------- */

/* The served generation, per thread, looked up again after a second or on a miss. */
static __thread long long tl_gen;
static __thread int64_t tl_gen_at;

static long long served_gen(redisContext *c, bool refresh, bool *failed)
{
    if (!refresh && tl_gen && fs_mono_ms() - tl_gen_at < 1000)
        return tl_gen;
    redisReply *r = redisCommand(c, "GET %s", FS_RM_GEN);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        *failed = true;
        freeReplyObject(r);
        return 0;
    }
    tl_gen = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    tl_gen_at = fs_mono_ms();
    freeReplyObject(r);
    return tl_gen;
}

#define NPF 12 /* the fields the HMGET below asks for, in its order */

/* The hot path of GET /api/products/{id}/stock: two HMGETs in one round trip (no script).
 * 1 found, 0 not in Redis, -1 Redis failed. */
static int redis_product(api_ctx *a, const char *id, inv_product_view *v, api_fresh *f)
{
    if (!breaker_allow())
        return -1;
    fs_err err = {0};
    redisContext *c = api_redis(a, &err);
    if (!c) {
        breaker_failed(err.msg);
        return -1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        bool failed = false;
        long long g = served_gen(c, attempt > 0, &failed);
        if (failed) {
            breaker_failed(c->errstr);
            return -1;
        }
        if (!g) {
            breaker_ok();
            return 0;
        }
        char pkey[FS_RM_KEY_MAX], mkey[FS_RM_KEY_MAX];
        redisAppendCommand(c, "HMGET %s name description currency price starts ends limit"
                              " paused stock available reserved sold",
                           fs_rm_key(pkey, sizeof pkey, g, FS_RM_PRODUCT, id));
        redisAppendCommand(c, "HMGET %s heartbeat_ms lag_ms", fs_rm_key(mkey, sizeof mkey, g, FS_RM_META, NULL));
        redisReply *h = NULL, *m = NULL;
        if (redisGetReply(c, (void **)&h) != REDIS_OK || redisGetReply(c, (void **)&m) != REDIS_OK ||
            h->type != REDIS_REPLY_ARRAY || h->elements != NPF) {
            breaker_failed(c->err ? c->errstr : "unexpected reply");
            freeReplyObject(h);
            freeReplyObject(m);
            return -1;
        }
        breaker_ok();
        if (h->element[8]->type != REDIS_REPLY_STRING) { /* no such product in this generation */
            freeReplyObject(h);
            freeReplyObject(m);
            continue; /* the generation may have been switched: look once more */
        }
        const char *val[NPF];
        for (int i = 0; i < NPF; i++)
            val[i] = h->element[i]->type == REDIS_REPLY_STRING ? h->element[i]->str : "";
        snprintf(v->f.name, sizeof v->f.name, "%s", val[0]);
        snprintf(v->f.description, sizeof v->f.description, "%s", val[1]);
        snprintf(v->f.currency, sizeof v->f.currency, "%s", val[2]);
        v->f.price = atoll(val[3]);
        v->f.sale_starts_at = atoll(val[4]);
        v->f.sale_ends_at = atoll(val[5]);
        v->f.per_user_limit = (int32_t)atol(val[6]);
        v->paused = atoi(val[7]) != 0;
        v->stock = (int32_t)atol(val[8]);
        v->available = (int32_t)atol(val[9]);
        v->reserved = (int32_t)atol(val[10]);
        v->sold = (int32_t)atol(val[11]);
        f->source = "redis";
        f->lag_ms = meta_lag(m);
        freeReplyObject(h);
        freeReplyObject(m);
        return 1;
    }
    return 0;
}

/* A product read from Redis is kept for FLASHSALE_STOCK_CACHE_MS (10; 0: off) so that a
 * storm of stock queries for one product costs one Redis read per interval; the answer's
 * freshness includes the entry's age. */
typedef struct {
    inv_product_view v;
    int64_t lag_ms, at;
} cached_product;

static pthread_mutex_t pc_lock = PTHREAD_MUTEX_INITIALIZER;
static fs_map *pc;
static long pc_ms = 10;

void api_rm_init(long stock_cache_ms)
{
    pc_ms = stock_cache_ms;
}

void api_rm_stop(void)
{
    pthread_mutex_lock(&pc_lock);
    fs_map_destroy_free(pc);
    pc = NULL;
    pthread_mutex_unlock(&pc_lock);
}

static bool cache_get(const char *id, inv_product_view *v, api_fresh *f)
{
    if (pc_ms <= 0)
        return false;
    int64_t now = fs_mono_ms();
    bool hit = false;
    pthread_mutex_lock(&pc_lock);
    cached_product *c = pc ? fs_map_get(pc, id) : NULL;
    if (c && now - c->at < pc_ms) {
        *v = c->v;
        f->source = "redis";
        f->lag_ms = c->lag_ms < 0 ? -1 : c->lag_ms + (now - c->at);
        hit = true;
    }
    pthread_mutex_unlock(&pc_lock);
    return hit;
}

static void cache_put(const char *id, const inv_product_view *v, const api_fresh *f)
{
    if (pc_ms <= 0)
        return;
    pthread_mutex_lock(&pc_lock);
    if (!pc || fs_map_size(pc) > 100000) { /* bounded: start over */
        fs_map_destroy_free(pc);
        pc = fs_map_new(1024);
    }
    cached_product *c = fs_map_get(pc, id);
    if (!c && (c = malloc(sizeof *c)))
        fs_map_put(pc, id, c);
    if (c) {
        c->v = *v;
        c->lag_ms = f->lag_ms;
        c->at = fs_mono_ms();
    }
    pthread_mutex_unlock(&pc_lock);
}

bool api_rm_product(api_ctx *a, const char *id, inv_product_view *v, api_fresh *f)
{
    memset(v, 0, sizeof *v);
    snprintf(v->id, sizeof v->id, "%s", id);
    if (cache_get(id, v, f))
        return true;
    if (redis_product(a, id, v, f) == 1) {
        cache_put(id, v, f);
        return true;
    }
    PGresult *p = pg_read(a,
                          "SELECT name, description, currency, price,"
                          " (extract(epoch FROM sale_starts_at) * 1000)::bigint,"
                          " (extract(epoch FROM sale_ends_at) * 1000)::bigint, per_user_limit, paused,"
                          " stock, available, reserved, sold, " PG_LAG
                          " FROM products WHERE product_id = $1",
                          id);
    if (!p)
        return false;
    snprintf(v->f.name, sizeof v->f.name, "%s", PQgetvalue(p, 0, 0));
    snprintf(v->f.description, sizeof v->f.description, "%s", PQgetvalue(p, 0, 1));
    snprintf(v->f.currency, sizeof v->f.currency, "%s", PQgetvalue(p, 0, 2));
    v->f.price = pg_num(p, 3);
    v->f.sale_starts_at = pg_num(p, 4);
    v->f.sale_ends_at = pg_num(p, 5);
    v->f.per_user_limit = (int32_t)pg_num(p, 6);
    v->paused = !strcmp(PQgetvalue(p, 0, 7), "t");
    v->stock = (int32_t)pg_num(p, 8);
    v->available = (int32_t)pg_num(p, 9);
    v->reserved = (int32_t)pg_num(p, 10);
    v->sold = (int32_t)pg_num(p, 11);
    f->source = "postgres";
    f->lag_ms = lag_of(pg_num(p, 12), pg_num(p, 13));
    PQclear(p);
    return true;
}

/* ---- orders ----------------------------------------------------------------------------- */

static void add_history(api_order *o, const char *status, const char *reason, int64_t at)
{
    if (o->nhistory >= API_HISTORY_MAX)
        return;
    api_history *h = &o->history[o->nhistory++];
    snprintf(h->status, sizeof h->status, "%s", status);
    snprintf(h->reason, sizeof h->reason, "%s", reason ? reason : "");
    h->at = at;
}

/* items: JSON array of {product_id, quantity, unit_price, state} (Redis) or of
 * [product_id, quantity, unit_price, state] (PostgreSQL). */
static void set_items(api_order *o, json_t *items)
{
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        if (o->nlines >= API_LINES_MAX)
            break;
        bool arr = json_is_array(it);
        const char *pid = json_string_value(arr ? json_array_get(it, 0) : json_object_get(it, "product_id"));
        json_int_t q = json_integer_value(arr ? json_array_get(it, 1) : json_object_get(it, "quantity"));
        json_int_t up = json_integer_value(arr ? json_array_get(it, 2) : json_object_get(it, "unit_price"));
        const char *st = json_string_value(arr ? json_array_get(it, 3) : json_object_get(it, "state"));
        snprintf(o->lines[o->nlines].product_id, sizeof o->lines[0].product_id, "%s", pid ? pid : "");
        o->lines[o->nlines].quantity = (int32_t)q;
        o->lines[o->nlines].unit_price = up;
        snprintf(o->lines[o->nlines].state, sizeof o->lines[0].state, "%s", st ? st : "");
        o->nlines++;
    }
    if (o->nlines) {
        snprintf(o->product_id, sizeof o->product_id, "%s", o->lines[0].product_id);
        o->quantity = o->lines[0].quantity;
        o->unit_price = o->lines[0].unit_price;
    }
}

/* transitions: JSON array of {status, previous, reason, at} (Redis) or of
 * [status, previous, reason, at] (PostgreSQL). */
static void set_history(api_order *o, int64_t created, json_t *transitions)
{
    size_t i;
    json_t *t;
    json_array_foreach(transitions, i, t)
    {
        bool arr = json_is_array(t);
        const char *st = json_string_value(arr ? json_array_get(t, 0) : json_object_get(t, "status"));
        const char *prev = json_string_value(arr ? json_array_get(t, 1) : json_object_get(t, "previous"));
        const char *why = json_string_value(arr ? json_array_get(t, 2) : json_object_get(t, "reason"));
        int64_t at = json_integer_value(arr ? json_array_get(t, 3) : json_object_get(t, "at"));
        if (o->nhistory == 0 && prev)
            add_history(o, prev, NULL, created);
        add_history(o, st ? st : "", why, at);
    }
    if (o->nhistory == 0) { /* only the inventory decision so far */
        add_history(o, "PENDING", NULL, created);
        add_history(o, o->saga_status, o->saga_reason, o->decided_at);
    }
}

bool api_rm_order(api_ctx *a, const char *id, api_order *o, api_fresh *f)
{
    memset(o, 0, sizeof *o);
    snprintf(o->order_id, sizeof o->order_id, "%s", id);
    o->status = API_ORDER_RESERVED;
    bool miss;
    redisReply *r = redis_read(a, FS_RM_LUA_GET_ORDER, id, &miss);
    if (r) {
        const redisReply *h = r->element[0];
        hstr(h, "member", o->member_id, sizeof o->member_id);
        hstr(h, "status", o->saga_status, sizeof o->saga_status);
        hstr(h, "reason", o->saga_reason, sizeof o->saga_reason);
        o->amount = hnum(h, "amount");
        o->pay_by = hnum(h, "pay_by");
        o->requested_at = hnum(h, "created");
        o->decided_at = hnum(h, "updated");
        json_t *items = json_loads(hget(h, "items") ? hget(h, "items") : "[]", 0, NULL);
        set_items(o, items);
        json_decref(items);
        json_t *hist = json_array();
        const redisReply *l = r->element[1];
        for (size_t i = 0; i < l->elements; i++)
            if (l->element[i]->type == REDIS_REPLY_STRING)
                json_array_append_new(hist, json_loads(l->element[i]->str, 0, NULL));
        set_history(o, o->requested_at, hist);
        json_decref(hist);
        f->source = "redis";
        f->lag_ms = meta_lag(r->element[2]);
        freeReplyObject(r);
        return true;
    }
    PGresult *p = pg_read(
        a,
        "SELECT o.member_id, o.status, o.reason, o.amount,"
        " coalesce((extract(epoch FROM o.pay_by) * 1000)::bigint, 0),"
        " (extract(epoch FROM o.created_at) * 1000)::bigint,"
        " (extract(epoch FROM o.updated_at) * 1000)::bigint,"
        " (SELECT coalesce(json_agg(json_build_array(i.product_id, i.quantity, i.unit_price, i.state)"
        "   ORDER BY i.line), '[]') FROM order_items i WHERE i.order_id = o.order_id),"
        " (SELECT coalesce(json_agg(json_build_array(h.status, h.previous, h.reason,"
        "   (extract(epoch FROM h.at) * 1000)::bigint) ORDER BY h.source_offset), '[]')"
        "   FROM order_status_history h WHERE h.order_id = o.order_id), " PG_LAG
        " FROM orders o WHERE o.order_id = $1",
        id);
    if (!p)
        return false;
    snprintf(o->member_id, sizeof o->member_id, "%s", PQgetvalue(p, 0, 0));
    snprintf(o->saga_status, sizeof o->saga_status, "%s", PQgetvalue(p, 0, 1));
    snprintf(o->saga_reason, sizeof o->saga_reason, "%s", PQgetvalue(p, 0, 2));
    o->amount = pg_num(p, 3);
    o->pay_by = pg_num(p, 4);
    o->requested_at = pg_num(p, 5);
    o->decided_at = pg_num(p, 6);
    json_t *items = json_loads(PQgetvalue(p, 0, 7), 0, NULL);
    set_items(o, items);
    json_decref(items);
    json_t *hist = json_loads(PQgetvalue(p, 0, 8), 0, NULL);
    set_history(o, o->requested_at, hist);
    json_decref(hist);
    f->source = "postgres";
    f->lag_ms = lag_of(pg_num(p, 9), pg_num(p, 10));
    PQclear(p);
    return true;
}

json_t *api_fresh_json(const api_fresh *f)
{
    fs_metrics_read(!strcmp(f->source, "redis") ? FS_READ_REDIS
                    : !strcmp(f->source, "postgres") ? FS_READ_POSTGRES : FS_READ_LOG);
    json_t *o = json_pack("{s:s}", "source", f->source);
    if (strcmp(f->source, "log"))
        json_object_set_new(o, "projection_lag_ms", f->lag_ms >= 0 ? json_integer(f->lag_ms) : json_null());
    return o;
}

/* ---- projection lag (operator overview) ------------------------------------------------ */

void api_rm_projection_lag(api_ctx *a, int64_t *pg_lag, int64_t *redis_lag)
{
    *pg_lag = *redis_lag = -1;
    fs_err err = {0};
    PGconn *pgc = api_pg(a, &err);
    if (pgc) {
        PGresult *r = PQexecParams(pgc, "SELECT " PG_LAG, 0, NULL, NULL, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
            *pg_lag = lag_of(pg_num(r, 0), pg_num(r, 1));
        PQclear(r);
    }
    if (!breaker_allow())
        return;
    redisContext *c = api_redis(a, &err);
    if (!c) {
        breaker_failed(err.msg);
        return;
    }
    bool failed = false;
    long long g = served_gen(c, true, &failed);
    if (failed) {
        breaker_failed(c->errstr);
        return;
    }
    if (!g) {
        breaker_ok();
        return;
    }
    char mkey[FS_RM_KEY_MAX];
    redisReply *m = redisCommand(c, "HMGET %s heartbeat_ms lag_ms", fs_rm_key(mkey, sizeof mkey, g, FS_RM_META, NULL));
    if (!m || m->type == REDIS_REPLY_ERROR) {
        breaker_failed(m ? m->str : c->errstr);
        freeReplyObject(m);
        return;
    }
    breaker_ok();
    *redis_lag = meta_lag(m);
    freeReplyObject(m);
}
