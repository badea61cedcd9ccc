/* Members' storage, crypto, session generations, rate limits and the outbox; see accounts.h. */
#include "accounts.h"

#include "fs/db.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/map.h"
#include "fs/outbox.h"
#include "fs/secrets.h"

#include <ctype.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>
#include <time.h>
#include <unistd.h>

/* ---- schema ------------------------------------------------------------------------------ */

static const char *const migrations[] = {
    /* 1: members, verification codes, sessions and refresh tokens, outbox, wishlist */
    "CREATE TABLE members ("
    "  member_id text PRIMARY KEY, email text NOT NULL UNIQUE, password_hash text NOT NULL,"
    "  name_sealed bytea, phone_sealed bytea, role text NOT NULL DEFAULT 'member'"
    "  CHECK (role IN ('member', 'admin')),"
    "  status text NOT NULL DEFAULT 'UNVERIFIED' CHECK (status IN ('UNVERIFIED', 'ACTIVE', 'DELETED')),"
    "  session_gen bigint NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(),"
    "  updated_at timestamptz NOT NULL DEFAULT now(), verified_at timestamptz, deleted_at timestamptz);"
    "CREATE TABLE verification_codes ("
    "  member_id text PRIMARY KEY REFERENCES members ON DELETE CASCADE, code_hash text NOT NULL,"
    "  expires_at timestamptz NOT NULL, attempts integer NOT NULL DEFAULT 0);"
    "CREATE TABLE sessions ("
    "  session_id text PRIMARY KEY, member_id text NOT NULL REFERENCES members ON DELETE CASCADE,"
    "  device text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now(),"
    "  last_used_at timestamptz NOT NULL DEFAULT now(), expires_at timestamptz NOT NULL,"
    "  revoked_at timestamptz, revoked_why text);"
    "CREATE INDEX sessions_member ON sessions (member_id) WHERE revoked_at IS NULL;"
    "CREATE TABLE refresh_tokens ("
    "  token_hash text PRIMARY KEY, session_id text NOT NULL REFERENCES sessions ON DELETE CASCADE,"
    "  issued_at timestamptz NOT NULL DEFAULT now(), used_at timestamptz);"
    "CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);"
    "CREATE TABLE outbox ("
    "  id bigserial PRIMARY KEY, topic text NOT NULL, key text NOT NULL, event_type text NOT NULL,"
    "  event_id text NOT NULL UNIQUE, payload bytea NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz);"
    "CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;"
    "CREATE TABLE wishlist ("
    "  member_id text NOT NULL REFERENCES members ON DELETE CASCADE, product_id text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (member_id, product_id));"
    "CREATE INDEX wishlist_product ON wishlist (product_id);"
    "CREATE TABLE wishlist_notices ("
    "  member_id text NOT NULL, product_id text NOT NULL, occurrence text NOT NULL,"
    "  notified_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (member_id, product_id, occurrence));",
};

/* ---- keys and crypto --------------------------------------------------------------------- */

static unsigned char pii_key[FS_PII_KEY_BYTES];
static sem_t pwhash_slots;
static unsigned long long pw_ops;
static size_t pw_mem;

int api_password_hash(const char *password, char out[128])
{
    sem_wait(&pwhash_slots);
    int rc = crypto_pwhash_str(out, password, strlen(password), pw_ops, pw_mem);
    sem_post(&pwhash_slots);
    return rc;
}

bool api_password_verify(const char *hash, const char *password)
{
    sem_wait(&pwhash_slots);
    bool ok = crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
    sem_post(&pwhash_slots);
    return ok;
}

int api_seal(const char *member_id, const char *field, const char *text, unsigned char **out, size_t *len)
{
    return fs_seal(pii_key, member_id, field, text, out, len);
}

char *api_open(const char *member_id, const char *field, const unsigned char *in, size_t len)
{
    return fs_open(pii_key, member_id, field, in, len);
}

void api_secret_hash(const char *what, char out[65])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)what, strlen(what), pii_key, sizeof pii_key);
    sodium_bin2hex(out, 65, h, sizeof h);
}

void api_random_token(char out[48])
{
    unsigned char b[32];
    randombytes_buf(b, sizeof b);
    sodium_bin2base64(out, 48, b, sizeof b, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* ---- member state cache ------------------------------------------------------------------ */

typedef struct {
    int64_t gen, fetched;
    member_status st;
} cached_member;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static fs_map *cache;
static long cache_ms = 2000;

int api_member_state(api_ctx *a, const char *member_id, int64_t *gen, member_status *st)
{
    int64_t now = fs_mono_ms();
    pthread_mutex_lock(&cache_lock);
    cached_member *m = cache ? fs_map_get(cache, member_id) : NULL;
    if (m && now - m->fetched < cache_ms) {
        *gen = m->gen;
        *st = m->st;
        pthread_mutex_unlock(&cache_lock);
        return 0;
    }
    pthread_mutex_unlock(&cache_lock);
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    if (!c)
        return -1;
    PGresult *r = PQexecParams(c, "SELECT session_gen, status FROM members WHERE member_id = $1", 1,
                               NULL, (const char *[]){member_id}, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return -1;
    }
    cached_member v = {0, now, MEMBER_NONE};
    if (PQntuples(r) == 1) {
        v.gen = atoll(PQgetvalue(r, 0, 0));
        const char *s = PQgetvalue(r, 0, 1);
        v.st = !strcmp(s, "ACTIVE") ? MEMBER_ACTIVE : !strcmp(s, "DELETED") ? MEMBER_DELETED : MEMBER_UNVERIFIED;
    }
    PQclear(r);
    pthread_mutex_lock(&cache_lock);
    if (!cache)
        cache = fs_map_new(4096);
    if (fs_map_size(cache) > 200000) { /* bounded: start over rather than grow without end */
        fs_map_destroy_free(cache);
        cache = fs_map_new(4096);
    }
    cached_member *slot = fs_map_get(cache, member_id);
    if (!slot && (slot = malloc(sizeof *slot)))
        fs_map_put(cache, member_id, slot);
    if (slot)
        *slot = v;
    pthread_mutex_unlock(&cache_lock);
    *gen = v.gen;
    *st = v.st;
    return 0;
}

void api_member_forget(const char *member_id)
{
    pthread_mutex_lock(&cache_lock);
    if (cache)
        free(fs_map_del(cache, member_id));
    pthread_mutex_unlock(&cache_lock);
}

/* ---- session revocation ------------------------------------------------------------------ */

#define REVOKED_KEY "flashsale:revoked:%s"

int api_sessions_revoke(api_ctx *a, const char *const *sids, int n)
{
    if (n <= 0)
        return 0;
    fs_err err = {0};
    redisContext *c = api_redis(a, &err);
    if (!c) {
        fs_log_warn("session revocation not published: Redis unavailable", json_pack("{s:s}", "error", err.msg));
        return -1;
    }
    for (int i = 0; i < n; i++)
        redisAppendCommand(c, "SET " REVOKED_KEY " 1 EX %ld", sids[i], a->access_ttl_s + 60);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r || r->type == REDIS_REPLY_ERROR)
            rc = -1;
        freeReplyObject(r);
        if (rc)
            break;
    }
    if (rc) {
        api_redis_drop();
        fs_log_warn("session revocation not published: Redis failed", NULL);
    }
    return rc;
}

int api_session_revoked(api_ctx *a, const char *sid)
{
    fs_err err = {0};
    redisContext *c = api_redis(a, &err);
    redisReply *r = c ? redisCommand(c, "EXISTS " REVOKED_KEY, sid) : NULL;
    if (r && r->type == REDIS_REPLY_INTEGER) {
        int revoked = r->integer > 0;
        freeReplyObject(r);
        return revoked;
    }
    if (c) {
        freeReplyObject(r);
        api_redis_drop();
    }
    /* Redis away: PostgreSQL decides (a missing row is a session that no longer exists) */
    PGconn *pg = api_pg(a, &err);
    if (!pg)
        return -1;
    PGresult *q = PQexecParams(pg, "SELECT revoked_at IS NOT NULL FROM sessions WHERE session_id = $1", 1, NULL,
                               (const char *[]){sid}, NULL, NULL, 0);
    int rc = PQresultStatus(q) != PGRES_TUPLES_OK ? -1 : PQntuples(q) != 1 || !strcmp(PQgetvalue(q, 0, 0), "t");
    PQclear(q);
    return rc;
}

/* ---- rate limits ------------------------------------------------------------------------- */

typedef struct {
    double tokens;
    int64_t at;
    double rate, burst; /* its own: an idle bucket is one that has refilled to its burst */
} bucket;

static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;
static fs_map *buckets;
static long rate_max_keys = 500000; /* FLASHSALE_RATE_MAX_KEYS */

static double refilled(const bucket *b, int64_t now)
{
    double t = b->tokens + (double)(now - b->at) / 1000.0 * b->rate;
    return t > b->burst ? b->burst : t;
}

typedef struct {
    int64_t now;
    int pass; /* 0: idle buckets (refilled to their burst: forgetting them changes nothing);
               * 1: at most one token used (forgetting gives back at most one attempt);
               * 2: any bucket that still lets a request through (never a lockout) */
    char **keys;
    size_t n, cap;
} sweep_ctx;

static void sweep_pick(void *ctx, const char *key, void *v)
{
    sweep_ctx *s = ctx;
    const bucket *b = v;
    double t = refilled(b, s->now);
    /* a lockout (below one token) is never picked, whatever its burst */
    bool go = t >= 1.0 && (s->pass == 0 ? t >= b->burst : s->pass == 1 ? t >= b->burst - 1.0 : true);
    if (go && s->n < s->cap && (s->keys[s->n] = strdup(key)))
        s->n++;
}

static int64_t last_fruitless_sweep = -1000000;

/* The map is full: forget idle buckets first, then those with at most one token used, then
 * those not holding a lockout, until a tenth of the room is free. A lockout (a bucket below
 * one token) is never forgotten, so a flood of new keys cannot unlock an account. A sweep
 * that frees nothing is not tried again for a second (each would walk the whole map).
 * Called with rate_lock. */
static void sweep(int64_t now)
{
    if (now - last_fruitless_sweep < 1000)
        return;
    size_t want = (size_t)rate_max_keys / 10 + 1;
    sweep_ctx s = {now, 0, malloc(want * sizeof *s.keys), 0, want};
    if (!s.keys)
        return;
    size_t before = fs_map_size(buckets);
    for (s.pass = 0; s.pass < 3 && s.n < want; s.pass++) {
        size_t from = s.n;
        fs_map_foreach(buckets, sweep_pick, &s);
        for (size_t k = from; k < s.n; k++)
            free(fs_map_del(buckets, s.keys[k]));
    }
    for (size_t k = 0; k < s.n; k++)
        free(s.keys[k]);
    if (!s.n)
        last_fruitless_sweep = now;
    fs_log_warn("rate-limit buckets full: idle ones forgotten",
                json_pack("{s:I,s:I,s:I}", "before", (json_int_t)before, "forgotten", (json_int_t)s.n,
                          "max", (json_int_t)rate_max_keys));
    free(s.keys);
}

bool api_rate_take(const char *key, double rate, double burst, bool peek, int *retry_after_s)
{
    if (rate <= 0)
        return true; /* switched off */
    int64_t now = fs_mono_ms();
    pthread_mutex_lock(&rate_lock);
    if (!buckets)
        buckets = fs_map_new(4096);
    bucket *b = fs_map_get(buckets, key);
    if (!b && fs_map_size(buckets) >= (size_t)rate_max_keys)
        sweep(now);
    if (!b && fs_map_size(buckets) >= (size_t)rate_max_keys) {
        /* every bucket holds a lockout: refuse rather than forget one */
        pthread_mutex_unlock(&rate_lock);
        if (retry_after_s)
            *retry_after_s = 1;
        return false;
    }
    if (!b) {
        b = malloc(sizeof *b);
        if (!b) {
            pthread_mutex_unlock(&rate_lock);
            return true;
        }
        b->tokens = burst;
        b->at = now;
        fs_map_put(buckets, key, b);
    }
    b->rate = rate;
    b->burst = burst;
    b->tokens = refilled(b, now);
    b->at = now;
    bool ok = b->tokens >= 1.0;
    if (ok && !peek)
        b->tokens -= 1.0;
    if (!ok && retry_after_s)
        *retry_after_s = (int)((1.0 - b->tokens) / rate) + 1;
    pthread_mutex_unlock(&rate_lock);
    return ok;
}

void api_rate_refund(const char *key)
{
    pthread_mutex_lock(&rate_lock);
    bucket *b = buckets ? fs_map_get(buckets, key) : NULL;
    if (b && (b->tokens += 1.0) > b->burst)
        b->tokens = b->burst;
    pthread_mutex_unlock(&rate_lock);
}

int api_rate_limited(fs_http_req *req, int retry_after_s, const char *what)
{
    char hdr[48], msg[160];
    snprintf(hdr, sizeof hdr, "Retry-After: %d\r\n", retry_after_s);
    snprintf(msg, sizeof msg, "too many %s; retry after %d s", what, retry_after_s);
    fs_log_info("rate limited", json_pack("{s:s,s:s,s:s}", "path", req->ri->local_uri, "client",
                                          req->client, "limit", what));
    return fs_http_error(req, 429, "RATE_LIMITED", msg, hdr);
}

const char *api_client_ip(fs_http_req *req)
{
    return req->client;
}

/* ---- outbox ------------------------------------------------------------------------------ */

int api_outbox_member_event(api_ctx *a, PGconn *c, const char *type, const char *member_id,
                            const char *role, const char *const *fields, fs_err *err)
{
    const fs_schema *sc = fs_codec_reader(a->codec, type);
    avro_value_t v, arr, item;
    if (!sc || fs_schema_value_new(sc, &v, err))
        return sc ? -1 : fs_err_set(err, FS_ERR_FATAL, 0, "no schema %s", type);
    int rc = fs_av_put_str(&v, "member_id", member_id, true) ||
             fs_av_put_long(&v, "occurred_at", fs_now_ms(), true);
    if (!rc && role)
        rc = fs_av_put_str(&v, "role", role, true);
    if (!rc && fields) {
        rc = avro_value_get_by_name(&v, "fields", &arr, NULL);
        for (const char *const *f = fields; !rc && *f; f++)
            rc = avro_value_append(&arr, &item, NULL) || avro_value_set_string(&item, *f);
    }
    if (rc)
        rc = fs_err_set(err, FS_ERR_FATAL, 0, "%s: %s", type, avro_strerror());
    else
        rc = fs_outbox_add_value(c, FS_TOPIC_MEMBERS_EVENTS, member_id, sc, &v, err);
    avro_value_decref(&v);
    return rc;
}

int api_outbox_notify(api_ctx *a, PGconn *c, const char *member_id, const char *email,
                      const char *kind, const char *const *params, fs_err *err)
{
    return fs_outbox_notify(a->codec, c, member_id, email, kind, params, err);
}

/* The relay: publishes unsent outbox rows in id order (FOR UPDATE SKIP LOCKED, so several
 * API instances share the work without sending a row twice at once), waits for the
 * broker's acknowledgement, then marks them sent in the same transaction. A broker outage
 * leaves them unsent (retried every second); a crash between the acknowledgement and the
 * commit sends them again: consumers are idempotent by event id. */
static pthread_t relay_thread;
static volatile int relay_stop;
static pthread_mutex_t kick_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t kick_cond = PTHREAD_COND_INITIALIZER;
static int kicked;
static api_ctx *relay_api;

void api_outbox_kick(void)
{
    pthread_mutex_lock(&kick_lock);
    kicked = 1;
    pthread_cond_signal(&kick_cond);
    pthread_mutex_unlock(&kick_lock);
}

static int failed_deliveries;

static void relay_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    if (m->err) {
        __atomic_add_fetch(&failed_deliveries, 1, __ATOMIC_RELAXED);
        fs_log_warn("outbox record not delivered", json_pack("{s:s}", "error", rd_kafka_err2str(m->err)));
    }
}

static int delivery_failures(rd_kafka_t *p)
{
    (void)p;
    return __atomic_exchange_n(&failed_deliveries, 0, __ATOMIC_RELAXED);
}

static int relay_once(PGconn *c, rd_kafka_t *p, fs_err *err)
{
    PGresult *b = PQexec(c, "BEGIN");
    PQclear(b);
    PGresult *r = PQexecParams(c,
                               "SELECT id, topic, key, event_type, event_id, payload,"
                               " (extract(epoch FROM created_at) * 1000)::bigint FROM outbox"
                               " WHERE sent_at IS NULL ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED",
                               0, NULL, NULL, NULL, NULL, 1 /* binary results */);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fs_err_from_pg(err, c, r, "outbox read");
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        return -1;
    }
    int n = PQntuples(r);
    if (n == 0) {
        PQclear(r);
        PQclear(PQexec(c, "COMMIT"));
        return 0;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char topic[64], key[128], type[64], eid[64];
        snprintf(topic, sizeof topic, "%.*s", PQgetlength(r, i, 1), PQgetvalue(r, i, 1));
        snprintf(key, sizeof key, "%.*s", PQgetlength(r, i, 2), PQgetvalue(r, i, 2));
        snprintf(type, sizeof type, "%.*s", PQgetlength(r, i, 3), PQgetvalue(r, i, 3));
        snprintf(eid, sizeof eid, "%.*s", PQgetlength(r, i, 4), PQgetvalue(r, i, 4));
        uint64_t be = 0;
        memcpy(&be, PQgetvalue(r, i, 6), sizeof be);
        fs_event_meta meta = {.event_type = type, .event_id = eid, .correlation_id = key,
                              .occurred_at = (int64_t)be64toh(be)};
        rd_kafka_headers_t *h = fs_kafka_headers_new(&meta);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(PQgetvalue(r, i, 5), (size_t)PQgetlength(r, i, 5)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (e) {
            rd_kafka_headers_destroy(h);
            rc = fs_err_from_kafka_code(err, e, "outbox produce");
        }
    }
    /* every record acknowledged (acks=all), or none counts */
    if (rc == 0 && rd_kafka_flush(p, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        rc = fs_err_set(err, FS_ERR_RETRIABLE, 0, "outbox: the broker did not acknowledge in 10 s");
    if (rc == 0 && delivery_failures(p))
        rc = fs_err_set(err, FS_ERR_RETRIABLE, 0, "outbox: delivery failed");
    if (rc == 0) {
        /* ids are bigint in network order (binary results): pass them back as text */
        char *ids = malloc((size_t)n * 22 + 3), *o = ids;
        *o++ = '{';
        for (int i = 0; i < n; i++) {
            uint64_t be = 0;
            memcpy(&be, PQgetvalue(r, i, 0), sizeof be);
            o += sprintf(o, "%s%lld", i ? "," : "", (long long)be64toh(be));
        }
        *o++ = '}';
        *o = '\0';
        /* acknowledged: the rows go (they hold codes and addresses in the clear; Kafka has
         * them now, and nothing reads a sent row) */
        PGresult *u = PQexecParams(c, "DELETE FROM outbox WHERE id = ANY($1::bigint[])", 1, NULL,
                                   (const char *[]){ids}, NULL, NULL, 0);
        if (PQresultStatus(u) != PGRES_COMMAND_OK)
            rc = fs_err_from_pg(err, c, u, "outbox delete");
        PQclear(u);
        free(ids);
    }
    PQclear(r);
    PQclear(PQexec(c, rc ? "ROLLBACK" : "COMMIT"));
    return rc ? -1 : n;
}

static void *relay_main(void *arg)
{
    (void)arg;
    fs_log_set_cid("outbox-relay");
    PGconn *c = NULL;
    rd_kafka_t *p = NULL;
    int64_t last_warn = 0;
    while (!relay_stop) {
        fs_err err = {0};
        if (!p && !(p = fs_kafka_new(&relay_api->cfg,
                                     &(fs_kafka_client){.role = FS_KAFKA_PRODUCER,
                                                        .client_id = "flashsale-api-outbox",
                                                        .dr = relay_dr,
                                                        .extra = (const char *const[]){
                                                            "linger.ms", "1", "message.timeout.ms",
                                                            "10000", NULL}},
                                     &err))) {
            fs_log_error("outbox relay cannot start its producer", json_pack("{s:s}", "error", err.msg));
            sleep(1);
            continue;
        }
        if (!c || PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = fs_pg_connect(&relay_api->cfg, "flashsale-api-outbox", &err);
            /* rows that earlier versions kept after their acknowledgement go too */
            if (c)
                PQclear(PQexec(c, "DELETE FROM outbox WHERE sent_at IS NOT NULL"));
        }
        int n = c ? relay_once(c, p, &err) : -1;
        if (n < 0 && fs_mono_ms() - last_warn > 10000) {
            last_warn = fs_mono_ms();
            fs_log_warn("outbox relay waiting (messages stay in the outbox)", json_pack("{s:s}", "error", err.msg));
        }
        if (n > 0) {
            fs_log_debug("outbox relayed", json_pack("{s:i}", "records", n));
            continue; /* more may be waiting */
        }
        /* idle or failing: wait for a kick or a second */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_mutex_lock(&kick_lock);
        while (!kicked && !relay_stop && pthread_cond_timedwait(&kick_cond, &kick_lock, &ts) == 0)
            ;
        kicked = 0;
        pthread_mutex_unlock(&kick_lock);
    }
    PQfinish(c);
    if (p) {
        rd_kafka_flush(p, 5000);
        rd_kafka_destroy(p);
    }
    return NULL;
}

int api_accounts_start(api_ctx *a, fs_err *err)
{
    long mem_mb, ops, conc;
    if (fs_pii_key_load(pii_key, err) ||
        fs_env_int("FLASHSALE_PWHASH_MEMLIMIT_MB", 64, 8, 4096, &mem_mb, err) ||
        fs_env_int("FLASHSALE_PWHASH_OPSLIMIT", 2, 1, 20, &ops, err) ||
        fs_env_int("FLASHSALE_PWHASH_CONCURRENCY", 2, 1, 64, &conc, err) ||
        fs_env_int("FLASHSALE_MEMBER_CACHE_MS", 2000, 0, 60000, &cache_ms, err) ||
        fs_env_int("FLASHSALE_RATE_MAX_KEYS", 500000, 10, 100000000, &rate_max_keys, err))
        return -1;
    pw_mem = (size_t)mem_mb * 1024 * 1024;
    pw_ops = (unsigned long long)ops;
    sem_init(&pwhash_slots, 0, (unsigned)conc);
    PGconn *c = NULL;
    for (int i = 0; i < 30 && !c; i++) { /* PostgreSQL may still be starting */
        c = fs_pg_connect(&a->cfg, "flashsale-api-migrate", err);
        if (!c) {
            if (err->cls == FS_ERR_FATAL)
                return -1;
            sleep(1);
        }
    }
    if (!c)
        return -1;
    int rc = fs_pg_migrate(c, "members_schema_version", 824718, migrations,
                           (int)(sizeof migrations / sizeof migrations[0]), err);
    PQfinish(c);
    if (rc)
        return -1;
    relay_api = a;
    relay_stop = 0;
    if (pthread_create(&relay_thread, NULL, relay_main, NULL))
        return fs_err_set(err, FS_ERR_FATAL, 0, "cannot start the outbox relay");
    return 0;
}

void api_accounts_stop(void)
{
    if (!relay_api)
        return;
    relay_stop = 1;
    api_outbox_kick();
    pthread_join(relay_thread, NULL);
    relay_api = NULL;
    pthread_mutex_lock(&cache_lock);
    fs_map_destroy_free(cache);
    cache = NULL;
    pthread_mutex_unlock(&cache_lock);
    pthread_mutex_lock(&rate_lock);
    fs_map_destroy_free(buckets);
    buckets = NULL;
    pthread_mutex_unlock(&rate_lock);
    sodium_memzero(pii_key, sizeof pii_key);
}
