/* The Redis target of flashsale-projector (key layout: fs/readmodel.h).
 *
 * Writes are idempotent: every key carries the version of the event that wrote it and a
 * Lua script applies an event only when its version is newer, so a replayed batch after a
 * crash, or a rebuild running next to the service, changes nothing twice. A batch's writes
 * to one key are coalesced into one script call, sent when the batch commits (below:
 * "Coalescing"); each batch is pipelined (one round trip), then the next offsets and the
 * heartbeat are written.
 *
 * Generations: a rebuild (--rebuild, or Redis found without its read model) writes a new
 * generation from offset 0 while the API keeps reading the old one (or PostgreSQL when there
 * is none); when the rebuild has caught up with the log, fs:rm:gen is switched to it and the
 * old generation's keys are unlinked. A running projector notices, about once a second, that
 * its generation vanished (Redis flushed or restarted empty) and rebuilds, or that another
 * process switched the generation, and follows it. */
#include "order_json.h"
#include "projector.h"

#include "fs/db.h"
#include "fs/id.h"
#include "fs/log.h"
#include "fs/map.h"
#include "fs/readmodel.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* KEYS[1] product hash, KEYS[2] product set; ARGV[1] version, ARGV[2] id, then field/value
 * pairs. */
static const char lua_product[] =
    "local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1') "
    "if v >= tonumber(ARGV[1]) then return 0 end "
    "redis.call('HSET', KEYS[1], 'v', ARGV[1], unpack(ARGV, 3)) "
    "redis.call('ZADD', KEYS[2], 0, ARGV[2]) return 1";
/* KEYS[1] order hash, KEYS[2] history list; ARGV[1] version (the newest write's), ARGV[2]
 * channel, ARGV[3] created (ms: the first write's time), ARGV[4] expire-at (ms; '0': the
 * order has not ended, and an expiry an earlier end gave it is taken off: a refund that
 * failed after a cancel makes it NEEDS_ATTENTION), ARGV[5] n, then n writes of three values
 * each (version, history entry or '', message), oldest first, then the newest write's
 * field/value pairs. Each write newer than the stored version appends its history entry and
 * publishes its message, as n calls of one write each would. */
static const char lua_order[] =
    "local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1') "
    "if v >= tonumber(ARGV[1]) then return 0 end "
    "local f = 6 + 3 * tonumber(ARGV[5]) "
    "redis.call('HSET', KEYS[1], 'v', ARGV[1], unpack(ARGV, f)) "
    "redis.call('HSETNX', KEYS[1], 'created', ARGV[3]) "
    "local h = {} "
    "for i = 6, f - 1, 3 do if tonumber(ARGV[i]) > v then "
    "if ARGV[i + 1] ~= '' then h[#h + 1] = ARGV[i + 1] end "
    "redis.call('PUBLISH', ARGV[2], ARGV[i + 2]) end end "
    "if #h > 0 then redis.call('RPUSH', KEYS[2], unpack(h)) end "
    "if ARGV[4] ~= '0' then redis.call('PEXPIREAT', KEYS[1], ARGV[4]) "
    "redis.call('PEXPIREAT', KEYS[2], ARGV[4]) "
    "elseif redis.call('PERSIST', KEYS[1]) == 1 then redis.call('PERSIST', KEYS[2]) end "
    "return 1";

/* KEYS[1] offsets hash; ARGV[1] the batch's number ('' when it wrote no rows), then the
 * offsets' field/value pairs. The batch is done only if no other batch began since (another
 * writer of the generation: a rebuild next to the service), so that _done catches up with
 * _begun whenever the last batch begun is done. */
static const char lua_done[] =
    "if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], '_begun') == ARGV[1] then "
    "redis.call('HSET', KEYS[1], '_done', ARGV[1]) end "
    "if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end return 1";

typedef struct {
    redisContext *c;
    long long gen;
    bool building;
    long long abandoned; /* a generation given up for a rebuild: unlinked at the switch */
    char sha_p[48], sha_o[48], sha_d[48];
    int pending; /* commands appended, replies not read */
    long ended_ttl_ms; /* FS_RM_ENDED_TTL_ENV */
    /* the open batch's writes, one per key (Coalescing, below) */
    struct pend *pend;
    size_t npend, cappend;
    fs_map *pidx; /* "p|<product>" / "o|<order>" -> index + 1 */
    const char **argv; /* a flushed write's arguments */
    size_t argcap;
    projector *p; /* its counters */
} rsink;

#define NUM(buf, v) (snprintf(buf, sizeof buf, "%lld", (long long)(v)), buf)

static int reply_err(fs_err *err, redisContext *c, redisReply *r, const char *what)
{
    if (!r)
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "redis %s: %s", what, c->errstr);
    fs_err_set(err, FS_ERR_RETRIABLE, 0, "redis %s: %s", what, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    freeReplyObject(r);
    return -1;
}

static redisReply *cmd(rsink *s, fs_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(s->c, fmt, ap);
    va_end(ap);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        reply_err(err, s->c, r, "command");
        return NULL;
    }
    return r;
}

static long long get_ll(rsink *s, const char *key, fs_err *err, bool *ok)
{
    redisReply *r = cmd(s, err, "GET %s", key);
    *ok = r != NULL;
    long long v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

static bool has_offsets(rsink *s, long long g, fs_err *err, bool *ok)
{
    char key[FS_RM_KEY_MAX];
    redisReply *r = cmd(s, err, "EXISTS %s", fs_rm_key(key, sizeof key, g, FS_RM_OFFSETS, NULL));
    *ok = r != NULL;
    bool yes = r && r->integer == 1;
    freeReplyObject(r);
    return yes;
}

static int connect_redis(projector *p, rsink *s, fs_err *err)
{
    if (s->c)
        redisFree(s->c);
    s->c = NULL;
    s->pending = 0;
    while (!*p->stop) {
        s->c = fs_redis_connect(&p->cfg, 2000, err);
        if (s->c)
            break;
        if (err->cls == FS_ERR_FATAL)
            return -1;
        fs_log_warn("redis not reachable, retrying", json_pack("{s:s}", "error", err->msg));
        sleep(1);
    }
    if (!s->c)
        return -1;
    const char *scripts[] = {lua_product, lua_order, lua_done};
    char *shas[] = {s->sha_p, s->sha_o, s->sha_d};
    for (int i = 0; i < 3; i++) {
        redisReply *r = cmd(s, err, "SCRIPT LOAD %s", scripts[i]);
        if (!r)
            return -1;
        snprintf(shas[i], sizeof s->sha_p, "%s", r->str);
        freeReplyObject(r);
    }
    return 0;
}

/* Starts a new generation from offset 0; it is served once it has caught up. */
static int start_build(rsink *s, const char *why, fs_err *err)
{
    bool ok;
    long long g = 0;
    redisReply *r = cmd(s, err, "INCR %s", FS_RM_SEQ);
    if (!r)
        return -1;
    g = r->integer;
    freeReplyObject(r);
    long long cur = get_ll(s, FS_RM_GEN, err, &ok);
    if (!ok)
        return -1;
    /* Stay above the served generation and the one this projector was writing: after a
     * FLUSHALL the counter starts again at 1, and the batches applied between the flush and
     * the next tick have already written keys of the old generation again (its offsets
     * too). Reusing its number would mix those keys into the rebuild, where the version
     * guard of the Lua scripts keeps them (an order's history then misses its earlier
     * transitions). */
    long long above = cur > s->gen ? cur : s->gen;
    if (g <= above) {
        freeReplyObject(cmd(s, err, "SET %s %lld", FS_RM_SEQ, above + 1));
        g = above + 1;
    }
    if (s->gen && s->gen != cur)
        s->abandoned = s->gen;
    char now[24];
    char okey[FS_RM_KEY_MAX];
    if (!(r = cmd(s, err, "HSET %s _created %s", fs_rm_key(okey, sizeof okey, g, FS_RM_OFFSETS, NULL),
                  NUM(now, fs_now_ms()))))
        return -1;
    freeReplyObject(r);
    if (!(r = cmd(s, err, "SET %s %lld", FS_RM_BUILDING, g)))
        return -1;
    freeReplyObject(r);
    s->gen = g;
    s->building = true;
    fs_log_info("building a new generation of the read model",
                json_pack("{s:I,s:s,s:I}", "generation", (json_int_t)g, "why", why, "serving",
                          (json_int_t)cur));
    return 0;
}

static int choose_generation(rsink *s, bool rebuild, fs_err *err)
{
    bool ok;
    if (rebuild)
        return start_build(s, "asked to rebuild", err);
    long long cur = get_ll(s, FS_RM_GEN, err, &ok);
    if (!ok)
        return -1;
    if (cur && has_offsets(s, cur, err, &ok)) {
        s->gen = cur;
        s->building = false;
        return 0;
    }
    long long bld = ok ? get_ll(s, FS_RM_BUILDING, err, &ok) : 0;
    if (!ok)
        return -1;
    if (bld && has_offsets(s, bld, err, &ok)) {
        s->gen = bld;
        s->building = true;
        fs_log_info("resuming the build of a generation", json_pack("{s:I}", "generation", (json_int_t)bld));
        return 0;
    }
    return ok ? start_build(s, cur ? "the served generation has no offsets" : "no read model in redis", err) : -1;
}

static int r_open(projector *p, bool rebuild, fs_err *err)
{
    rsink *s = calloc(1, sizeof *s);
    p->store = s;
    if (!s)
        return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
    s->p = p;
    if (fs_env_int(FS_RM_ENDED_TTL_ENV, FS_RM_ENDED_TTL_DEFAULT, FS_RM_ENDED_TTL_MIN,
                   FS_RM_ENDED_TTL_MAX, &s->ended_ttl_ms, err))
        return -1;
    while (!*p->stop) {
        if (connect_redis(p, s, err) == 0 && choose_generation(s, rebuild, err) == 0)
            return 0;
        if (err->cls == FS_ERR_FATAL)
            return -1;
        fs_log_warn("redis not ready, retrying", json_pack("{s:s}", "error", err->msg));
        sleep(1);
    }
    return -1;
}

static int r_load_offsets(projector *p, int64_t *next, fs_err *err)
{
    rsink *s = p->store;
    char key[FS_RM_KEY_MAX];
    redisReply *r = cmd(s, err, "HGETALL %s", fs_rm_key(key, sizeof key, s->gen, FS_RM_OFFSETS, NULL));
    if (!r)
        return -1;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *f = r->element[i]->str, *colon = strrchr(f, ':');
        if (!colon)
            continue;
        int part = atoi(colon + 1);
        for (int t = 0; t < PROJ_NTOPICS; t++)
            if (strlen(proj_topics[t]) == (size_t)(colon - f) && !strncmp(f, proj_topics[t], (size_t)(colon - f)) &&
                part >= 0 && part < p->nparts)
                next[t * p->nparts + part] = atoll(r->element[i + 1]->str);
    }
    freeReplyObject(r);
    return 0;
}

/* A batch's first command numbers it (HINCRBY of the offsets hash's _begun); its offsets,
 * written after all its rows, say it is done (_done: that number, lua_done). A reader that
 * finds _begun = _done, reads rows, then finds _begun unchanged read no row of a batch in
 * progress (a sequence lock: flashsale-audit's comparison of Redis with the log). A batch
 * cut off after its first command leaves _begun ahead until the next batch with rows is
 * done (the audit reads again, or reports Redis not compared). With two writers (a rebuild
 * next to the service, after its switch) one's rows can land after the other's _done: the
 * lock assumes one writer. */
static int append(rsink *s, int argc, const char **argv)
{
    if (!s->pending) {
        char key[FS_RM_KEY_MAX];
        const char *begin[] = {"HINCRBY", fs_rm_key(key, sizeof key, s->gen, FS_RM_OFFSETS, NULL), "_begun", "1"};
        if (redisAppendCommandArgv(s->c, 4, begin, NULL) != REDIS_OK)
            return -1;
        s->pending++;
    }
    if (redisAppendCommandArgv(s->c, argc, argv, NULL) != REDIS_OK)
        return -1;
    s->pending++;
    return 0;
}

/* ---- Coalescing ---------------------------------------------------------------------------
 * A batch's writes to one product, or to one order, become one script call, sent when the
 * batch commits. A product takes the union of its writes' fields, each field the value of
 * the newest write that has it, under the newest write's version; an order takes its newest
 * write's fields and version, the first write's time as `created`, and every write's
 * version, history entry and message (lua_order applies those newer than the stored
 * version). That leaves every key as the writes one by one would, from whichever of them
 * Redis already holds (a batch redone after a crash): a product's writes come from one
 * partition in offset order and set fields to what their events say, and a batch holds
 * every event from its stored offsets on. A write not newer than the batch's last for its
 * key would be refused by the script one by one as well (the inventory's decision read
 * after the saga's snapshot of the order), so it is dropped here. Measured in
 * perf/RESULTS.md ("The read models' writes coalesced per batch"). */

enum { PF_NAME, PF_DESCRIPTION, PF_PRICE, PF_CURRENCY, PF_STOCK, PF_AVAILABLE, PF_RESERVED,
       PF_SOLD, PF_STARTS, PF_ENDS, PF_LIMIT, PF_PAUSED, PF_UPDATED, PF_N };
static const char *const pf_names[PF_N] = {"name",     "description", "price",    "currency", "stock",
                                           "available", "reserved",   "sold",     "starts",   "ends",
                                           "limit",     "paused",     "updated"};
enum { OF_MEMBER, OF_STATUS, OF_REASON, OF_AMOUNT, OF_PAY_BY, OF_UPDATED, OF_ITEMS, OF_N };
static const char *const of_names[OF_N] = {"member", "status",  "reason", "amount",
                                           "pay_by", "updated", "items"};

typedef struct {
    char ver[24];
    char *hist; /* NULL: the status did not change */
    char *msg;
} owrite;

struct pend {
    bool order;
    char id[ORD_ID_MAX > INV_ID_MAX ? ORD_ID_MAX : INV_ID_MAX];
    long long ver;  /* the newest write's */
    char *f[PF_N];  /* a product's PF_N fields, an order's OF_N; NULL: not written */
    long long created, exp; /* an order's */
    owrite *w;              /* an order's writes, oldest first */
    int nw, capw;
};

static void pend_clear(struct pend *p)
{
    for (int k = 0; k < PF_N; k++)
        free(p->f[k]);
    for (int i = 0; i < p->nw; i++) {
        free(p->w[i].hist);
        free(p->w[i].msg);
    }
    free(p->w);
}

static void pend_reset(rsink *s)
{
    for (size_t i = 0; i < s->npend; i++)
        pend_clear(&s->pend[i]);
    s->npend = 0;
    fs_map_destroy(s->pidx);
    s->pidx = NULL;
}

/* The open batch's write to this key, made if it has none (*fresh then); NULL when out of
 * memory. */
static struct pend *pend_get(rsink *s, bool order, const char *id, bool *fresh)
{
    char key[2 + sizeof s->pend->id];
    snprintf(key, sizeof key, "%c|%s", order ? 'o' : 'p', id);
    if (!s->pidx && !(s->pidx = fs_map_new(1024)))
        return NULL;
    uintptr_t at = (uintptr_t)fs_map_get(s->pidx, key);
    *fresh = !at;
    if (at)
        return &s->pend[at - 1];
    if (s->npend == s->cappend) {
        size_t cap = s->cappend ? 2 * s->cappend : 256;
        struct pend *v = realloc(s->pend, cap * sizeof *v);
        if (!v)
            return NULL;
        s->pend = v;
        s->cappend = cap;
    }
    if (fs_map_put(s->pidx, key, (void *)(uintptr_t)(s->npend + 1)) == (void *)-1)
        return NULL;
    struct pend *p = &s->pend[s->npend++];
    memset(p, 0, sizeof *p);
    p->order = order;
    snprintf(p->id, sizeof p->id, "%s", id);
    p->ver = -1;
    return p;
}

/* Sets field k to a copy of v; -1 when out of memory. */
static int pend_set(struct pend *p, int k, const char *v)
{
    char *c = strdup(v);
    if (!c)
        return -1;
    free(p->f[k]);
    p->f[k] = c;
    return 0;
}

static int oom(fs_err *err)
{
    return fs_err_set(err, FS_ERR_RETRIABLE, 0, "out of memory buffering a batch");
}

/* A product's write: fields[k] NULL where the event does not set it. */
static int product_write(rsink *s, const char *id, long long ver, const char *const *fields, fs_err *err)
{
    s->p->writes_in++;
    bool fresh;
    struct pend *p = pend_get(s, false, id, &fresh);
    if (!p)
        return oom(err);
    if (ver <= p->ver)
        return 0;
    p->ver = ver;
    for (int k = 0; k < PF_N; k++)
        if (fields[k] && pend_set(p, k, fields[k]))
            return oom(err);
    return 0;
}

/* An order's write. Takes hist and msg (malloc'd; hist may be NULL) in every case. */
static int order_write(rsink *s, const char *id, long long ver, long long at, long long exp,
                       char *hist, char *msg, const char *const *fields, fs_err *err)
{
    s->p->writes_in++;
    bool fresh;
    struct pend *p = pend_get(s, true, id, &fresh);
    if (p && ver <= p->ver) { /* the script would refuse it after the newer one */
        free(hist);
        free(msg);
        return 0;
    }
    if (p && p->nw == p->capw) {
        int cap = p->capw ? 2 * p->capw : 4;
        owrite *v = realloc(p->w, (size_t)cap * sizeof *v);
        if (v)
            p->w = v, p->capw = cap;
        else
            p = NULL;
    }
    if (!p) {
        free(hist);
        free(msg);
        return oom(err);
    }
    if (fresh)
        p->created = at;
    p->ver = ver;
    p->exp = exp;
    owrite *w = &p->w[p->nw++];
    NUM(w->ver, ver);
    w->hist = hist;
    w->msg = msg;
    for (int k = 0; k < OF_N; k++)
        if (pend_set(p, k, fields[k]))
            return oom(err);
    return 0;
}

/* Room for n arguments. */
static const char **args(rsink *s, size_t n)
{
    if (n > s->argcap) {
        const char **v = realloc(s->argv, n * sizeof *v);
        if (!v)
            return NULL;
        s->argv = v;
        s->argcap = n;
    }
    return s->argv;
}

/* Appends the open batch's writes, one script call per key, to the pipeline. */
static int pend_flush(rsink *s, fs_err *err)
{
    int rc = 0;
    for (size_t i = 0; i < s->npend && !rc; i++) {
        struct pend *p = &s->pend[i];
        char key[FS_RM_KEY_MAX], hkey[FS_RM_KEY_MAX], set[64], chan[128], ver[24], created[24],
            exp[24], nw[24];
        const char **argv = args(s, 10 + 3 * (size_t)p->nw + 2 * PF_N);
        if (!argv) {
            rc = oom(err);
            break;
        }
        int n = 0;
        argv[n++] = "EVALSHA";
        if (!p->order) {
            argv[n++] = s->sha_p, argv[n++] = "2";
            argv[n++] = fs_rm_key(key, sizeof key, s->gen, FS_RM_PRODUCT, p->id);
            argv[n++] = fs_rm_key(set, sizeof set, s->gen, FS_RM_PRODUCTS, NULL);
            argv[n++] = NUM(ver, p->ver), argv[n++] = p->id;
            for (int k = 0; k < PF_N; k++)
                if (p->f[k])
                    argv[n++] = pf_names[k], argv[n++] = p->f[k];
        } else {
            argv[n++] = s->sha_o, argv[n++] = "2";
            argv[n++] = fs_rm_key(key, sizeof key, s->gen, FS_RM_ORDER, p->id);
            argv[n++] = fs_rm_key(hkey, sizeof hkey, s->gen, FS_RM_HISTORY, p->id);
            snprintf(chan, sizeof chan, FS_RM_ORDER_CHANNEL "%s", p->id);
            argv[n++] = NUM(ver, p->ver), argv[n++] = chan, argv[n++] = NUM(created, p->created);
            argv[n++] = NUM(exp, p->exp), argv[n++] = NUM(nw, p->nw);
            for (int k = 0; k < p->nw; k++) {
                argv[n++] = p->w[k].ver;
                argv[n++] = p->w[k].hist ? p->w[k].hist : "";
                argv[n++] = p->w[k].msg;
            }
            for (int k = 0; k < OF_N; k++)
                argv[n++] = of_names[k], argv[n++] = p->f[k];
        }
        if (append(s, n, argv))
            rc = fs_err_set(err, FS_ERR_RETRIABLE, 0, "redis append: %s", s->c->errstr);
        s->p->writes_out++;
    }
    pend_reset(s);
    return rc;
}

static int r_inventory(projector *p, const inv_event *e, int32_t part, int64_t off, fs_err *err)
{
    (void)part;
    rsink *s = p->store;
    char t[24], a[24], b[24], c[24], d[24], x[24];
    const char *f[PF_N] = {0};
    NUM(t, e->occurred_at);
    switch (e->type) {
    case INV_EV_DEFINED:
        f[PF_NAME] = e->f.name, f[PF_DESCRIPTION] = e->f.description, f[PF_PRICE] = NUM(a, e->f.price);
        f[PF_CURRENCY] = e->f.currency[0] ? e->f.currency : "KRW", f[PF_STOCK] = NUM(b, e->stock);
        f[PF_AVAILABLE] = b, f[PF_RESERVED] = "0", f[PF_SOLD] = "0";
        f[PF_STARTS] = NUM(c, e->f.sale_starts_at), f[PF_ENDS] = NUM(d, e->f.sale_ends_at);
        f[PF_LIMIT] = NUM(x, e->f.per_user_limit), f[PF_PAUSED] = "0", f[PF_UPDATED] = t;
        break;
    case INV_EV_UPDATED:
        if (e->f.has_name)
            f[PF_NAME] = e->f.name;
        if (e->f.has_description)
            f[PF_DESCRIPTION] = e->f.description;
        if (e->f.has_price)
            f[PF_PRICE] = NUM(a, e->f.price);
        if (e->f.has_starts)
            f[PF_STARTS] = NUM(b, e->f.sale_starts_at);
        if (e->f.has_ends)
            f[PF_ENDS] = NUM(c, e->f.sale_ends_at);
        if (e->f.has_limit)
            f[PF_LIMIT] = NUM(d, e->f.per_user_limit);
        f[PF_UPDATED] = t;
        break;
    case INV_EV_PAUSED:
    case INV_EV_RESUMED:
        f[PF_PAUSED] = e->type == INV_EV_PAUSED ? "1" : "0", f[PF_UPDATED] = t;
        break;
    case INV_EV_RESTOCKED:
    case INV_EV_RESERVED:
    case INV_EV_COMMITTED:
    case INV_EV_RELEASED:
        f[PF_AVAILABLE] = NUM(a, e->available), f[PF_RESERVED] = NUM(b, e->reserved);
        f[PF_SOLD] = NUM(c, e->sold), f[PF_STOCK] = NUM(d, (int64_t)e->available + e->reserved + e->sold);
        f[PF_UPDATED] = t;
        break;
    default:
        break;
    }
    if (f[PF_UPDATED] && product_write(s, e->product_id, off, f, err))
        return -1;
    if ((e->type != INV_EV_RESERVED && e->type != INV_EV_REJECTED) || e->item_count > 1)
        return 0; /* checkout lines: the saga's snapshots describe the order */
    /* A decision older than the ended-order TTL writes nothing of the order: if the order
     * has ended, its keys may already have expired (the version that would refuse this
     * older write went with them), and a reservation would bring back a phantom RESERVED
     * order (seen when a rebuild or a lagging projector applied the saga's terminal snapshot
     * before this event of another topic). A live order loses nothing: the saga's own
     * snapshot of it (ranked above this write) makes the keys. */
    if (e->occurred_at + s->ended_ttl_ms <= fs_now_ms())
        return 0;
    bool ok = e->type == INV_EV_RESERVED;
    const char *status = ok ? "RESERVED" : "REJECTED";
    char msg[256], items[512];
    snprintf(msg, sizeof msg, "{\"order_id\":\"%s\",\"status\":\"%s\"}", e->order_id, status);
    snprintf(items, sizeof items,
             "[{\"product_id\":\"%s\",\"quantity\":%d,\"unit_price\":%lld,\"state\":\"%s\"}]",
             e->product_id, (int)e->quantity, (long long)e->unit_price, status);
    char *msg_s = strdup(msg);
    if (!msg_s)
        return oom(err);
    const char *of[OF_N] = {[OF_MEMBER] = e->member_id, [OF_STATUS] = status,
                            [OF_REASON] = ok ? "" : inv_reason_name(e->reason),
                            [OF_AMOUNT] = NUM(a, (int64_t)e->quantity * e->unit_price),
                            [OF_PAY_BY] = ok ? NUM(b, e->pay_by) : "0", [OF_UPDATED] = t,
                            [OF_ITEMS] = items};
    return order_write(s, e->order_id, FS_RM_RANK_INVENTORY + off, e->occurred_at,
                         ok ? 0 : e->occurred_at + s->ended_ttl_ms, /* a refusal ends the order */
                         NULL, msg_s, of, err);
}

static int r_order(projector *p, const ord_order *o, int32_t part, int64_t off, fs_err *err)
{
    (void)part;
    rsink *s = p->store;
    char t[24], a[24], b[24];
    int64_t ended = ord_ended_at(o);
    NUM(t, o->occurred_at);
    rm_order_json j;
    if (rm_order_json_make(o, &j))
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "order %s: out of memory for its JSON", o->order_id);
    const char *f[OF_N] = {[OF_MEMBER] = o->member_id, [OF_STATUS] = ord_status_name(o->status),
                           [OF_REASON] = o->reason, [OF_AMOUNT] = NUM(a, o->amount),
                           [OF_PAY_BY] = NUM(b, o->pay_by), [OF_UPDATED] = t, [OF_ITEMS] = j.items};
    int rc = order_write(s, o->order_id, FS_RM_RANK_SAGA + off, o->occurred_at,
                         ended > 0 ? ended + s->ended_ttl_ms : 0, j.history, j.message, f, err);
    free(j.items);
    return rc;
}

static int r_payment(projector *p, const pay_event *e, int32_t part, int64_t off, fs_err *err)
{
    (void)p, (void)e, (void)part, (void)off, (void)err;
    return 0; /* payments are read from PostgreSQL only */
}

/* The heartbeat, and the lag unless lag_ms < 0 (then the last batch's stays). */
static int write_meta(rsink *s, int64_t lag_ms, fs_err *err)
{
    char now[24], lag[24], key[FS_RM_KEY_MAX];
    fs_rm_key(key, sizeof key, s->gen, FS_RM_META, NULL);
    redisReply *r = lag_ms < 0 ? cmd(s, err, "HSET %s heartbeat_ms %s", key, NUM(now, fs_now_ms()))
                               : cmd(s, err, "HSET %s heartbeat_ms %s lag_ms %s", key,
                                     NUM(now, fs_now_ms()), NUM(lag, lag_ms));
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

static int r_commit(projector *p, const int64_t *next, int64_t lag_ms, fs_err *err)
{
    rsink *s = p->store;
    int rc = pend_flush(s, err);
    if (rc)
        return rc; /* the batch is redone (r_rollback reconnects: nothing of it is sent) */
    int nreplies = s->pending;
    long long begun = -1; /* the batch's number (append), when it had rows */
    s->pending = 0;
    for (int i = 0; i < nreplies; i++) {
        redisReply *r = NULL;
        if (redisGetReply(s->c, (void **)&r) != REDIS_OK)
            return reply_err(err, s->c, NULL, "batch");
        if (r->type == REDIS_REPLY_ERROR && !rc)
            rc = reply_err(err, s->c, r, "batch");
        else {
            if (i == 0 && r->type == REDIS_REPLY_INTEGER)
                begun = r->integer;
            freeReplyObject(r);
        }
    }
    if (rc)
        return rc;
    /* only now, after every change of the batch is in: the offsets, and the batch done */
    char key[64], f[PROJ_NTOPICS * 64][96], o[PROJ_NTOPICS * 64][24], done[24] = "";
    if (begun >= 0)
        NUM(done, begun);
    const char *argv[5 + 2 * PROJ_NTOPICS * 64] = {"EVALSHA", s->sha_d, "1", key, done};
    int n = 5, k = 0;
    fs_rm_key(key, sizeof key, s->gen, FS_RM_OFFSETS, NULL);
    for (int t = 0; t < PROJ_NTOPICS; t++)
        for (int i = 0; i < p->nparts && k < PROJ_NTOPICS * 64; i++) {
            int64_t nx = next[t * p->nparts + i];
            if (nx < 0)
                continue;
            snprintf(f[k], sizeof f[k], "%s:%d", proj_topics[t], i);
            NUM(o[k], nx);
            argv[n++] = f[k];
            argv[n++] = o[k];
            k++;
        }
    bool any = n > 5 || begun >= 0; /* offsets to store, or a batch to mark done */
    redisReply *r = any ? redisCommandArgv(s->c, n, argv, NULL) : NULL;
    if (any && (!r || r->type == REDIS_REPLY_ERROR))
        return reply_err(err, s->c, r, "offsets");
    freeReplyObject(r);
    return write_meta(s, lag_ms, err);
}

static void r_rollback(projector *p)
{
    rsink *s = p->store;
    fs_err e = {0};
    pend_reset(s);
    if (connect_redis(p, s, &e)) /* drops unread replies; scripts loaded again */
        fs_log_warn("redis reconnect failed", json_pack("{s:s}", "error", e.msg));
}

static void unlink_generation(rsink *s, long long g)
{
    char pattern[FS_RM_KEY_MAX], cursor[32] = "0";
    fs_rm_key(pattern, sizeof pattern, g, FS_RM_ALL, NULL);
    long long n = 0;
    fs_err e = {0};
    do {
        redisReply *r = cmd(s, &e, "SCAN %s MATCH %s COUNT 2000", cursor, pattern);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
            break;
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        if (keys->elements) {
            const char **argv = malloc((keys->elements + 1) * sizeof *argv);
            argv[0] = "UNLINK";
            for (size_t i = 0; i < keys->elements; i++)
                argv[i + 1] = keys->element[i]->str;
            freeReplyObject(redisCommandArgv(s->c, (int)keys->elements + 1, argv, NULL));
            free(argv);
            n += (long long)keys->elements;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    fs_log_info("old generation removed", json_pack("{s:I,s:I}", "generation", (json_int_t)g, "keys", (json_int_t)n));
}

static int r_tick(projector *p, bool caught_up, fs_err *err)
{
    rsink *s = p->store;
    bool ok;
    if (!has_offsets(s, s->gen, err, &ok)) {
        if (!ok)
            return -1;
        fs_log_warn("the read model is gone from redis (flushed or restarted empty); rebuilding",
                    json_pack("{s:I}", "generation", (json_int_t)s->gen));
        return start_build(s, "read model lost", err) ? -1 : 1;
    }
    long long cur = get_ll(s, FS_RM_GEN, err, &ok);
    if (!ok)
        return -1;
    if (s->building && caught_up) {
        redisReply *r = cmd(s, err, "SET %s %lld", FS_RM_GEN, s->gen);
        if (!r)
            return -1;
        freeReplyObject(r);
        freeReplyObject(cmd(s, err, "DEL %s", FS_RM_BUILDING));
        s->building = false;
        fs_log_info("now serving the rebuilt generation",
                    json_pack("{s:I,s:I}", "generation", (json_int_t)s->gen, "previous", (json_int_t)cur));
        if (cur && cur != s->gen)
            unlink_generation(s, cur);
        if (s->abandoned && s->abandoned != cur && s->abandoned != s->gen)
            unlink_generation(s, s->abandoned);
        s->abandoned = 0;
    } else if (!s->building && cur != s->gen) {
        fs_log_info("another projector switched the generation; following it",
                    json_pack("{s:I,s:I}", "from", (json_int_t)s->gen, "to", (json_int_t)cur));
        if (cur == 0)
            return start_build(s, "no generation served", err) ? -1 : 1;
        s->gen = cur;
        return 1;
    }
    return write_meta(s, caught_up ? 0 : -1, err); /* caught up: nothing left to apply, no lag */
}

static void r_close(projector *p)
{
    rsink *s = p->store;
    if (!s)
        return;
    if (s->c)
        redisFree(s->c);
    pend_reset(s);
    free(s->pend);
    free(s->argv);
    free(s);
    p->store = NULL;
}

const proj_sink proj_sink_redis = {"redis",   r_open,   r_load_offsets, r_inventory, r_order,
                                   r_payment, r_commit, r_rollback,     r_tick,      r_close};
