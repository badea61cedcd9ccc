/* The Redis target of flashsale-projector (key layout: fs/readmodel.h).
 *
 * Writes are idempotent: every key carries the version of the event that wrote it and a
 * Lua script applies an event only when its version is newer, so a replayed batch after a
 * crash, or a rebuild running next to the service, changes nothing twice. Each batch is
 * pipelined (one round trip), then the next offsets and the heartbeat are written.
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
/* KEYS[1] order hash, KEYS[2] history list; ARGV[1] version, ARGV[2] channel, ARGV[3]
 * history entry or '', ARGV[4] message, ARGV[5] created (ms), ARGV[6] expire-at (ms; '0':
 * the order has not ended, and an expiry an earlier end gave it is taken off: a refund that
 * failed after a cancel makes it NEEDS_ATTENTION), then field/value pairs. */
static const char lua_order[] =
    "local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1') "
    "if v >= tonumber(ARGV[1]) then return 0 end "
    "redis.call('HSET', KEYS[1], 'v', ARGV[1], unpack(ARGV, 7)) "
    "redis.call('HSETNX', KEYS[1], 'created', ARGV[5]) "
    "if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[3]) end "
    "if ARGV[6] ~= '0' then redis.call('PEXPIREAT', KEYS[1], ARGV[6]) "
    "redis.call('PEXPIREAT', KEYS[2], ARGV[6]) "
    "elseif redis.call('PERSIST', KEYS[1]) == 1 then redis.call('PERSIST', KEYS[2]) end "
    "redis.call('PUBLISH', ARGV[2], ARGV[4]) return 1";

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

static int r_inventory(projector *p, const inv_event *e, int32_t part, int64_t off, fs_err *err)
{
    (void)part;
    rsink *s = p->store;
    char key[160], set[64], ver[24], t[24], a[24], b[24], c[24], d[24], x[24];
    fs_rm_key(key, sizeof key, s->gen, FS_RM_PRODUCT, e->product_id);
    fs_rm_key(set, sizeof set, s->gen, FS_RM_PRODUCTS, NULL);
    NUM(ver, off);
    NUM(t, e->occurred_at);
    const char *argv[40] = {"EVALSHA", s->sha_p, "2", key, set, ver, e->product_id};
    int n = 7;
#define F(name, val) (argv[n++] = (name), argv[n++] = (val))
    switch (e->type) {
    case INV_EV_DEFINED:
        F("name", e->f.name), F("description", e->f.description), F("price", NUM(a, e->f.price));
        F("currency", e->f.currency[0] ? e->f.currency : "KRW"), F("stock", NUM(b, e->stock));
        F("available", b), F("reserved", "0"), F("sold", "0");
        F("starts", NUM(c, e->f.sale_starts_at)), F("ends", NUM(d, e->f.sale_ends_at));
        F("limit", NUM(x, e->f.per_user_limit)), F("paused", "0"), F("updated", t);
        break;
    case INV_EV_UPDATED:
        if (e->f.has_name)
            F("name", e->f.name);
        if (e->f.has_description)
            F("description", e->f.description);
        if (e->f.has_price)
            F("price", NUM(a, e->f.price));
        if (e->f.has_starts)
            F("starts", NUM(b, e->f.sale_starts_at));
        if (e->f.has_ends)
            F("ends", NUM(c, e->f.sale_ends_at));
        if (e->f.has_limit)
            F("limit", NUM(d, e->f.per_user_limit));
        F("updated", t);
        break;
    case INV_EV_PAUSED:
    case INV_EV_RESUMED:
        F("paused", e->type == INV_EV_PAUSED ? "1" : "0"), F("updated", t);
        break;
    case INV_EV_RESTOCKED:
    case INV_EV_RESERVED:
    case INV_EV_COMMITTED:
    case INV_EV_RELEASED:
        F("available", NUM(a, e->available)), F("reserved", NUM(b, e->reserved));
        F("sold", NUM(c, e->sold)), F("stock", NUM(d, (int64_t)e->available + e->reserved + e->sold));
        F("updated", t);
        break;
    default:
        break;
    }
#undef F
    if (n > 7 && append(s, n, argv))
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "redis append: %s", s->c->errstr);
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
    char hkey[160], chan[128], msg[512], items[768];
    /* room for two ids of INV_ID_MAX - 1 bytes with every byte escaped (\u00XX), the longest
     * numbers and the status: rm_decision_json fails only when out of memory */
    _Static_assert(sizeof items >= 6 * (INV_ID_MAX - 1) + 128 && sizeof msg >= 6 * (INV_ID_MAX - 1) + 64,
                   "the decision's JSON buffers");
    fs_rm_key(key, sizeof key, s->gen, FS_RM_ORDER, e->order_id);
    fs_rm_key(hkey, sizeof hkey, s->gen, FS_RM_HISTORY, e->order_id);
    snprintf(chan, sizeof chan, FS_RM_ORDER_CHANNEL "%s", e->order_id);
    NUM(ver, FS_RM_RANK_INVENTORY + off);
    const char *status = ok ? "RESERVED" : "REJECTED";
    if (rm_decision_json(e->order_id, e->product_id, (int)e->quantity, e->unit_price, status, items, sizeof items,
                         msg, sizeof msg))
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "order %s: out of memory for its JSON", e->order_id);
    char exp[24];
    NUM(exp, ok ? 0 : e->occurred_at + s->ended_ttl_ms); /* a refusal ends the order */
    const char *oargv[] = {"EVALSHA", s->sha_o, "2", key, hkey, ver, chan, "", msg, t, exp,
                           "member", e->member_id, "status", status,
                           "reason", ok ? "" : inv_reason_name(e->reason),
                           "amount", NUM(a, (int64_t)e->quantity * e->unit_price),
                           "pay_by", ok ? NUM(b, e->pay_by) : "0", "updated", t, "items", items};
    if (append(s, (int)(sizeof oargv / sizeof oargv[0]), oargv))
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "redis append: %s", s->c->errstr);
    return 0;
}

static int r_order(projector *p, const ord_order *o, int32_t part, int64_t off, fs_err *err)
{
    (void)part;
    rsink *s = p->store;
    char key[160], hkey[160], chan[128], ver[24], t[24], a[24], b[24], exp[24];
    int64_t ended = ord_ended_at(o);
    NUM(exp, ended > 0 ? ended + s->ended_ttl_ms : 0);
    fs_rm_key(key, sizeof key, s->gen, FS_RM_ORDER, o->order_id);
    fs_rm_key(hkey, sizeof hkey, s->gen, FS_RM_HISTORY, o->order_id);
    snprintf(chan, sizeof chan, FS_RM_ORDER_CHANNEL "%s", o->order_id);
    NUM(ver, FS_RM_RANK_SAGA + off);
    NUM(t, o->occurred_at);
    rm_order_json j;
    if (rm_order_json_make(o, &j))
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "order %s: out of memory for its JSON", o->order_id);
    const char *argv[] = {"EVALSHA", s->sha_o, "2", key, hkey, ver, chan, j.history ? j.history : "", j.message, t,
                          exp, "member", o->member_id, "status", ord_status_name(o->status),
                          "reason", o->reason, "amount", NUM(a, o->amount),
                          "pay_by", NUM(b, o->pay_by), "updated", t, "items", j.items};
    int rc = append(s, (int)(sizeof argv / sizeof argv[0]), argv);
    rm_order_json_free(&j);
    return rc ? fs_err_set(err, FS_ERR_RETRIABLE, 0, "redis append: %s", s->c->errstr) : 0;
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
    int rc = 0;
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
    free(s);
    p->store = NULL;
}

const proj_sink proj_sink_redis = {"redis",   r_open,   r_load_offsets, r_inventory, r_order,
                                   r_payment, r_commit, r_rollback,     r_tick,      r_close};
