/* flashsale-audit: the read models against the log; see audit.h. */
#include "audit.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- read models ---------------------------------------------------------------------- */

typedef struct {
    char status[24];
    int transitions;
    bool seen_pg, seen_redis;
    bool ended;       /* Redis lets its keys expire (fs/readmodel.h) */
    int64_t ended_at; /* the time of the event that ended it */
} want_order;

/* What every order must look like in a read model: the saga's last snapshot, else the
 * inventory decision of a single-item order; and how many transitions its history holds. */
static fs_map *expected_orders(audit_ctx *a)
{
    fs_map *m = fs_map_new(4096);
    ev_rec *evs = a->evs.v;
    for (size_t i = 0; i < a->evs.n; i++) {
        const inv_event *e = evs[i].ev;
        if ((e->type != INV_EV_RESERVED && e->type != INV_EV_REJECTED) || e->item_count > 1 ||
            fs_map_get(m, e->order_id))
            continue;
        want_order *w = calloc(1, sizeof *w);
        snprintf(w->status, sizeof w->status, "%s", e->type == INV_EV_RESERVED ? "RESERVED" : "REJECTED");
        w->ended = e->type == INV_EV_REJECTED;
        w->ended_at = e->occurred_at;
        fs_map_put(m, e->order_id, w);
    }
    snap_rec *snaps = a->orders.v;
    for (size_t i = 0; i < a->orders.n; i++) {
        want_order *w = fs_map_get(m, snaps[i].order_id);
        if (!w) {
            w = calloc(1, sizeof *w);
            fs_map_put(m, snaps[i].order_id, w);
        }
        snprintf(w->status, sizeof w->status, "%s", ord_status_name(snaps[i].status));
        w->ended_at = snaps[i].ended_at;
        w->ended = w->ended_at > 0;
        if (snaps[i].previous != snaps[i].status)
            w->transitions++;
    }
    return m;
}

/* A read model's stored offset against what the audit read: -1 behind, 1 ahead, 0 equal.
 * `seen` (MAX_PARTITIONS per topic: inventory.events, then orders.events) marks the
 * partitions the model holds an offset for. */
static int offsets_state(audit_ctx *a, const char *topic, int32_t part, int64_t next, bool *seen)
{
    bool ev = strstr(topic, "inventory.events") != NULL;
    const int64_t *mine = ev ? a->next_ev : strstr(topic, "orders.events") ? a->next_ord : NULL;
    if (!mine || part < 0 || part >= MAX_PARTITIONS)
        return 0;
    seen[(ev ? 0 : MAX_PARTITIONS) + part] = true;
    int64_t want = mine[part];
    return next < want ? -1 : next > want && want > 0 ? 1 : 0;
}

/* A partition the audit read events of but the model holds no offset for: the model has not
 * projected it at all (a projector that ran while the log was empty, and not since), so it
 * is behind, not comparable. true (with `why`) when there is one. */
static bool offsets_missing(audit_ctx *a, const bool *seen, char *why, size_t whylen)
{
    for (int t = 0; t < 2; t++)
        for (int p = 0; p < MAX_PARTITIONS; p++)
            if ((t ? a->next_ord : a->next_ev)[p] > 0 && !seen[t * MAX_PARTITIONS + p]) {
                snprintf(why, whylen, "behind at %s/%d: no offset stored, the audit read up to %lld",
                         t ? "orders.events" : "inventory.events", p,
                         (long long)(t ? a->next_ord : a->next_ev)[p]);
                return true;
            }
    return false;
}

typedef struct {
    const char *store;
    fs_map *products, *orders;
    uint64_t compared;
    uint64_t expired;   /* ended orders Redis has let go (allowed) */
    long ended_ttl_ms;  /* FS_RM_ENDED_TTL_ENV */
} diff_ctx;

static void product_diff(diff_ctx *d, const char *id, long long stock, long long avail,
                         long long resv, long long sold)
{
    prod_t *p = fs_map_get(d->products, id);
    d->compared++;
    if (!p)
        audit_violation("readmodel", "", id, -1, -1, "%s holds a product the log never defined", d->store);
    else if (p->stock != stock || p->available != avail || p->reserved != resv || p->sold != sold)
        audit_violation("readmodel", "", id, -1, -1,
                  "%s says stock %lld available %lld reserved %lld sold %lld; the log says "
                  "%lld/%lld/%lld/%lld", d->store, stock, avail, resv, sold, (long long)p->stock,
                  (long long)p->available, (long long)p->reserved, (long long)p->sold);
}

static void order_diff(diff_ctx *d, const char *id, const char *status, long long transitions)
{
    want_order *w = fs_map_get(d->orders, id);
    d->compared++;
    if (!w) {
        audit_violation("readmodel", id, "", -1, -1, "%s holds an order the log does not know", d->store);
        return;
    }
    if (!strcmp(d->store, "postgres"))
        w->seen_pg = true;
    else
        w->seen_redis = true;
    if (strcmp(w->status, status) || w->transitions != transitions)
        audit_violation("readmodel", id, "", -1, -1, "%s says %s with %lld transitions; the log says %s with %d",
                  d->store, status, transitions, w->status, w->transitions);
}

typedef struct {
    diff_ctx *d;
    bool pg;
} missing_ctx;

static void order_missing(void *ctx, const char *id, void *v)
{
    missing_ctx *m = ctx;
    want_order *w = v;
    if (m->pg ? w->seen_pg : w->seen_redis)
        return;
    /* (now, taken after Redis was read: a key that expired during the read is due) */
    if (!m->pg && w->ended && w->ended_at + m->d->ended_ttl_ms <= fs_now_ms())
        m->d->expired++;
    else
        audit_violation("readmodel", id, "", -1, -1, "%s lacks this order (%s in the log)", m->d->store, w->status);
}

/* Returns 1 compared, 0 not comparable (the store is behind or ahead of what was read). */
static int diff_pg(const fs_common_config *cfg, audit_ctx *a, diff_ctx *d, char *why, size_t whylen)
{
    fs_err err = {0};
    PGconn *c = fs_pg_connect(cfg, "flashsale-audit", &err);
    if (!c) {
        snprintf(why, whylen, "unreachable: %s", err.msg);
        return -1;
    }
    int rc = 1;
    PGresult *r = PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); /* one snapshot */
    PQclear(r);
    r = PQexec(c, "SELECT topic, partition, next_offset FROM projector_offsets WHERE projector = 'postgres'");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(why, whylen, "no read model: %s", PQresultErrorMessage(r));
        rc = -1;
    }
    bool seen[2 * MAX_PARTITIONS] = {false};
    for (int i = 0; rc == 1 && i < PQntuples(r); i++) {
        int st = offsets_state(a, PQgetvalue(r, i, 0), atoi(PQgetvalue(r, i, 1)), atoll(PQgetvalue(r, i, 2)), seen);
        if (st) {
            snprintf(why, whylen, "%s at %s/%s: offset %s is %s what the audit read", st < 0 ? "behind" : "ahead",
                     PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), st < 0 ? "before" : "after");
            rc = 0;
        }
    }
    PQclear(r);
    if (rc == 1 && offsets_missing(a, seen, why, whylen))
        rc = 0;
    if (rc == 1) {
        r = PQexec(c, "SELECT product_id, stock, available, reserved, sold FROM products");
        for (int i = 0; i < PQntuples(r); i++)
            product_diff(d, PQgetvalue(r, i, 0), atoll(PQgetvalue(r, i, 1)), atoll(PQgetvalue(r, i, 2)),
                         atoll(PQgetvalue(r, i, 3)), atoll(PQgetvalue(r, i, 4)));
        PQclear(r);
        r = PQexec(c, "SELECT o.order_id, o.status, count(h.order_id) FROM orders o"
                      " LEFT JOIN order_status_history h ON h.order_id = o.order_id GROUP BY 1, 2");
        for (int i = 0; i < PQntuples(r); i++)
            order_diff(d, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), atoll(PQgetvalue(r, i, 2)));
        PQclear(r);
        missing_ctx mc = {d, true};
        fs_map_foreach(d->orders, order_missing, &mc);
    }
    PQclear(PQexec(c, "COMMIT"));
    PQfinish(c);
    return rc;
}

typedef struct {
    redisContext *c;
    long long gen;
    vec ids; /* char[INV_ID_MAX] */
    bool short_of_memory;
} rkeys;

static void collect_id(void *ctx, const char *id, void *v)
{
    (void)v;
    rkeys *k = ctx;
    if (vec_grow(&k->ids))
        k->short_of_memory = true;
    else
        snprintf(vec_push(&k->ids), INV_ID_MAX, "%s", id);
}

/* Test hook (FLASHSALE_TEST_AUDIT_HOLD=PATH, integration.audit): when the file PATH exists,
 * the audit removes it, creates PATH.held and waits (up to 60 s) for PATH.go, between
 * checking Redis's offsets and reading its rows: the test moves Redis on meanwhile. */
static void test_hold(void)
{
    const char *p = getenv("FLASHSALE_TEST_AUDIT_HOLD");
    char held[PATH_MAX], go[PATH_MAX];
    if (!p || !*p || unlink(p) || snprintf(held, sizeof held, "%s.held", p) >= (int)sizeof held ||
        snprintf(go, sizeof go, "%s.go", p) >= (int)sizeof go)
        return;
    FILE *f = fopen(held, "w");
    if (f)
        fclose(f);
    for (int i = 0; i < 1200 && access(go, F_OK); i++)
        usleep(50000);
    unlink(go);
}

/* A field of an HGETALL reply, or NULL. */
static const char *hfield(const redisReply *r, const char *name)
{
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        if (r->element[i]->str && !strcmp(r->element[i]->str, name))
            return r->element[i + 1]->str;
    return NULL;
}

/* The first stored offset (a "topic:partition" field), or the projector's count of batches
 * begun (_begun: its other "_" fields aside), that differs between two HGETALLs of the
 * offsets, or is in only one; NULL when none. */
static const char *offsets_moved(const redisReply *a, const redisReply *b)
{
    bool aa = a && a->type == REDIS_REPLY_ARRAY, ba = b && b->type == REDIS_REPLY_ARRAY;
    if (!aa || !ba) /* no offsets either time (an empty log): nothing moved */
        return aa == ba ? NULL : "the offsets";
    const redisReply *x[2] = {a, b};
    for (int k = 0; k < 2; k++) /* every field of one is in the other with the same value */
        for (size_t i = 0; i + 1 < x[k]->elements; i += 2) {
            const char *f = x[k]->element[i]->str;
            if (!f || (*f == '_' && strcmp(f, "_begun")))
                continue;
            const char *other = hfield(x[1 - k], f);
            if (!other || !x[k]->element[i + 1]->str || strcmp(other, x[k]->element[i + 1]->str))
                return f;
        }
    return NULL;
}

static int diff_redis(const fs_common_config *cfg, audit_ctx *a, diff_ctx *d, char *why, size_t whylen)
{
    fs_err err = {0};
    redisContext *c = fs_redis_connect(cfg, 2000, &err);
    if (!c) {
        snprintf(why, whylen, "unreachable: %s", err.msg);
        return -1;
    }
    int rc = 1;
    redisReply *r = redisCommand(c, "GET %s", FS_RM_GEN);
    long long gen = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    if (!gen) {
        snprintf(why, whylen, "no generation is served (%s missing)", FS_RM_GEN);
        redisFree(c);
        return -1;
    }
    char key[FS_RM_KEY_MAX];
    r = redisCommand(c, "HGETALL %s", fs_rm_key(key, sizeof key, gen, FS_RM_OFFSETS, NULL));
    bool seen[2 * MAX_PARTITIONS] = {false};
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements && rc == 1; i += 2) {
        char *f = r->element[i]->str, *colon = strrchr(f, ':');
        if (!colon || *f == '_')
            continue;
        *colon = '\0';
        int st = offsets_state(a, f, atoi(colon + 1), atoll(r->element[i + 1]->str), seen);
        if (st) {
            snprintf(why, whylen, "%s at %s/%s: offset %s", st < 0 ? "behind" : "ahead", f, colon + 1,
                     r->element[i + 1]->str);
            rc = 0;
        }
        *colon = ':'; /* the field as stored, for offsets_moved */
    }
    redisReply *offsets_before = r; /* kept: read again after the rows (below) */
    if (rc == 1 && offsets_missing(a, seen, why, whylen))
        rc = 0;
    /* A batch begun and not done (sink_redis.c, append): some of its rows may be written, its
     * offsets not yet: the store is ahead of its offsets (an interrupted batch stays so until
     * the projector's next batch is done). */
    const char *begun = hfield(r, "_begun"), *done = hfield(r, "_done");
    if (rc == 1 && (begun || done) && (!begun || !done || strcmp(begun, done))) {
        snprintf(why, whylen, "ahead: a batch of the projector was being written (batch %s begun, %s done)",
                 begun ? begun : "none", done ? done : "none");
        rc = 0;
    }
    if (rc == 1) {
        test_hold();
        audit_hold_violations(); /* until the offsets are known not to have moved (below) */
        /* every product: the set of ids, then the counters of each, pipelined */
        r = redisCommand(c, "ZRANGE %s 0 -1", fs_rm_key(key, sizeof key, gen, FS_RM_PRODUCTS, NULL));
        size_t np = r && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        for (size_t i = 0; i < np; i++)
            redisAppendCommand(c, "HMGET %s stock available reserved sold",
                               fs_rm_key(key, sizeof key, gen, FS_RM_PRODUCT, r->element[i]->str));
        for (size_t i = 0; i < np; i++) {
            redisReply *h = NULL;
            if (redisGetReply(c, (void **)&h) != REDIS_OK || !h || h->elements != 4) {
                freeReplyObject(h);
                continue;
            }
            long long x[4];
            for (int j = 0; j < 4; j++)
                x[j] = h->element[j]->type == REDIS_REPLY_STRING ? atoll(h->element[j]->str) : -1;
            product_diff(d, r->element[i]->str, x[0], x[1], x[2], x[3]);
            freeReplyObject(h);
        }
        freeReplyObject(r);
        /* every order the log knows, pipelined in chunks */
        rkeys k = {c, gen, {NULL, 0, 0, INV_ID_MAX}, false};
        fs_map_foreach(d->orders, collect_id, &k);
        if (k.short_of_memory) {
            snprintf(why, whylen, "out of memory listing %zu orders", fs_map_size(d->orders));
            rc = -1;
            k.ids.n = 0;
        }
        char (*ids)[INV_ID_MAX] = k.ids.v;
        for (size_t from = 0; from < k.ids.n; from += 1000) {
            size_t to = from + 1000 < k.ids.n ? from + 1000 : k.ids.n;
            for (size_t i = from; i < to; i++) {
                redisAppendCommand(c, "HGET %s status", fs_rm_key(key, sizeof key, gen, FS_RM_ORDER, ids[i]));
                redisAppendCommand(c, "LLEN %s", fs_rm_key(key, sizeof key, gen, FS_RM_HISTORY, ids[i]));
            }
            for (size_t i = from; i < to; i++) {
                redisReply *s = NULL, *n = NULL;
                redisGetReply(c, (void **)&s);
                redisGetReply(c, (void **)&n);
                if (s && s->type == REDIS_REPLY_STRING)
                    order_diff(d, ids[i], s->str, n && n->type == REDIS_REPLY_INTEGER ? n->integer : -1);
                freeReplyObject(s);
                freeReplyObject(n);
            }
        }
        free(k.ids.v);
        missing_ctx mc = {d, false};
        fs_map_foreach(d->orders, order_missing, &mc);
        /* Redis is no snapshot: the projector may have applied more of the log while the rows
         * were read (it writes a batch's rows, then its offsets). Offsets that moved meanwhile
         * make this comparison void, as a store found ahead is (the audit reads again). */
        if (rc == 1) {
            r = redisCommand(c, "GET %s", FS_RM_GEN); /* a switch unlinks the old generation's keys */
            long long now_gen = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
            freeReplyObject(r);
            r = redisCommand(c, "HGETALL %s", fs_rm_key(key, sizeof key, gen, FS_RM_OFFSETS, NULL));
            const char *moved = now_gen != gen ? "fs:rm:gen" : offsets_moved(offsets_before, r);
            if (moved) {
                snprintf(why, whylen, "ahead at %s: the projector moved on while the rows were read", moved);
                rc = 0;
            }
            freeReplyObject(r);
        }
        audit_release_violations(rc == 1); /* a void comparison's differences are dropped */
    }
    freeReplyObject(offsets_before);
    redisFree(c);
    return rc;
}

/* Diffs both read models; a store that cannot be compared is reported (and is a violation
 * when `strict`: asked for explicitly). */
json_t *audit_diff_read_models(const fs_common_config *cfg, audit_ctx *a, fs_map *products,
                                bool strict, long wait_ms)
{
    json_t *out = json_object();
    fs_map *orders = expected_orders(a);
    const char *stores[] = {"postgres", "redis"};
    long ttl = FS_RM_ENDED_TTL_DEFAULT;
    fs_err terr = {0};
    if (fs_env_int(FS_RM_ENDED_TTL_ENV, FS_RM_ENDED_TTL_DEFAULT, FS_RM_ENDED_TTL_MIN,
                   FS_RM_ENDED_TTL_MAX, &ttl, &terr))
        audit_violation("readmodel", "", "", -1, -1, "%s", terr.msg);
    for (int i = 0; i < 2; i++) {
        diff_ctx d = {stores[i], products, orders, 0, 0, ttl};
        char why[512] = "";
        size_t before = audit_violations();
        int rc;
        int64_t deadline = fs_mono_ms() + wait_ms;
        for (;;) { /* a projector still catching up with what was read: give it time */
            rc = i == 0 ? diff_pg(cfg, a, &d, why, sizeof why) : diff_redis(cfg, a, &d, why, sizeof why);
            if (rc != 0 || strncmp(why, "behind", 6) || fs_mono_ms() >= deadline)
                break;
            fprintf(stderr, "flashsale-audit: read model %s %s; waiting\n", stores[i], why);
            usleep(500000);
        }
        if (rc == 1) {
            printf("  read model %-8s: %llu rows compared, %llu ended orders expired, %zu difference(s)\n",
                   stores[i], (unsigned long long)d.compared, (unsigned long long)d.expired,
                   audit_violations() - before);
            json_object_set_new(out, stores[i],
                                json_pack("{s:b,s:I,s:I,s:I}", "compared", 1, "rows", (json_int_t)d.compared,
                                          "expired", (json_int_t)d.expired, "differences",
                                          (json_int_t)(audit_violations() - before)));
        } else {
            printf("  read model %-8s: not compared: %s\n", stores[i], why);
            if (strict) {
                audit_violation("readmodel", "", "", -1, -1, "%s not compared: %s", stores[i], why);
                if (!strncmp(why, "ahead", 5))
                    audit_note_ahead();
            }
            json_object_set_new(out, stores[i], json_pack("{s:b,s:s}", "compared", 0, "why", why));
        }
    }
    fs_map_destroy_free(orders);
    return out;
}

