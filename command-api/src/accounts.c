/* Members' keys and crypto, session generations, rate limits, revocation and the outbox
 * relay, held by one api_accounts object; see accounts.h. */
#include "accounts.h"
#include "outbox_relay.h"
#include "ratelimit.h"

#include "fs/id.h"
#include "fs/log.h"
#include "fs/map.h"
#include "fs/secrets.h"

#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t gen, fetched;
    member_status st;
} cached_member;

struct api_accounts {
    /* keys and crypto */
    unsigned char pii_key[FS_PII_KEY_BYTES];
    sem_t pwhash_slots; /* argon2id runs that may be under way at once */
    bool slots_made;
    unsigned long long pw_ops;
    size_t pw_mem;
    pthread_mutex_t dummy_lock;
    char dummy[128]; /* api_password_dummy, made on first use */
    /* member state cache: member id -> cached_member */
    pthread_mutex_t cache_lock;
    fs_map *cache;
    long cache_ms;
    api_rate_limits *limits;
    api_relay *relay;
};

/* ---- keys and crypto --------------------------------------------------------------------- */

int api_password_hash(api_ctx *a, const char *password, char out[128])
{
    api_accounts *acc = a->accounts;
    sem_wait(&acc->pwhash_slots);
    int rc = crypto_pwhash_str(out, password, strlen(password), acc->pw_ops, acc->pw_mem);
    sem_post(&acc->pwhash_slots);
    return rc;
}

bool api_password_verify(api_ctx *a, const char *hash, const char *password)
{
    api_accounts *acc = a->accounts;
    sem_wait(&acc->pwhash_slots);
    bool ok = crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
    sem_post(&acc->pwhash_slots);
    return ok;
}

const char *api_password_dummy(api_ctx *a)
{
    api_accounts *acc = a->accounts;
    pthread_mutex_lock(&acc->dummy_lock);
    if (!acc->dummy[0] && api_password_hash(a, "not anybody's password 0", acc->dummy))
        snprintf(acc->dummy, sizeof acc->dummy, "!");
    pthread_mutex_unlock(&acc->dummy_lock);
    return acc->dummy;
}

int api_seal(api_ctx *a, const char *member_id, const char *field, const char *text, unsigned char **out,
             size_t *len)
{
    return fs_seal(a->accounts->pii_key, member_id, field, text, out, len);
}

char *api_open(api_ctx *a, const char *member_id, const char *field, const unsigned char *in, size_t len)
{
    return fs_open(a->accounts->pii_key, member_id, field, in, len);
}

void api_secret_hash(api_ctx *a, const char *what, char out[65])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)what, strlen(what), a->accounts->pii_key,
                       FS_PII_KEY_BYTES);
    sodium_bin2hex(out, 65, h, sizeof h);
}

void api_random_token(char out[48])
{
    unsigned char b[32];
    randombytes_buf(b, sizeof b);
    sodium_bin2base64(out, 48, b, sizeof b, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void api_code_hash(api_ctx *a, const char *member_id, const char *code, char out[65])
{
    char what[128];
    snprintf(what, sizeof what, "code|%s|%s", member_id, code);
    api_secret_hash(a, what, out);
    sodium_memzero(what, sizeof what);
}

void api_code_new(api_ctx *a, const char *member_id, char code[8], char hash[65])
{
    snprintf(code, 8, "%06u", (unsigned)randombytes_uniform(1000000));
    api_code_hash(a, member_id, code, hash);
}

/* ---- member state cache ------------------------------------------------------------------ */

bool api_member_cached(api_ctx *a, const char *member_id)
{
    api_accounts *acc = a->accounts;
    pthread_mutex_lock(&acc->cache_lock);
    cached_member *m = fs_map_get(acc->cache, member_id);
    bool fresh = m && fs_mono_ms() - m->fetched < acc->cache_ms;
    pthread_mutex_unlock(&acc->cache_lock);
    return fresh;
}

int api_member_state(api_ctx *a, const char *member_id, int64_t *gen, member_status *st, fs_err *err)
{
    api_accounts *acc = a->accounts;
    int64_t now = fs_mono_ms();
    pthread_mutex_lock(&acc->cache_lock);
    cached_member *m = fs_map_get(acc->cache, member_id);
    if (m && now - m->fetched < acc->cache_ms) {
        *gen = m->gen;
        *st = m->st;
        pthread_mutex_unlock(&acc->cache_lock);
        return 0;
    }
    pthread_mutex_unlock(&acc->cache_lock);
    cached_member v = {0, now, MEMBER_NONE};
    if (member_store_state(a, member_id, &v.gen, &v.st, err))
        return -1;
    pthread_mutex_lock(&acc->cache_lock);
    if (fs_map_size(acc->cache) > 200000) { /* bounded: start over rather than grow without end */
        fs_map *fresh = fs_map_new(4096);
        if (fresh) {
            fs_map_destroy_free(acc->cache);
            acc->cache = fresh;
        }
    }
    cached_member *slot = fs_map_get(acc->cache, member_id);
    if (!slot && (slot = malloc(sizeof *slot)) && fs_map_put(acc->cache, member_id, slot) == (void *)-1) {
        free(slot);
        slot = NULL;
    }
    if (slot)
        *slot = v;
    pthread_mutex_unlock(&acc->cache_lock);
    *gen = v.gen;
    *st = v.st;
    return 0;
}

void api_member_forget(api_ctx *a, const char *member_id)
{
    api_accounts *acc = a->accounts;
    pthread_mutex_lock(&acc->cache_lock);
    free(fs_map_del(acc->cache, member_id));
    pthread_mutex_unlock(&acc->cache_lock);
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

int api_session_revoked(api_ctx *a, const char *sid, fs_err *err)
{
    redisContext *c = api_redis(a, err);
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
    /* Redis away: PostgreSQL decides */
    return member_store_session_revoked(a, sid, err);
}

/* ---- rate limits ------------------------------------------------------------------------- */

bool api_rate_take(api_ctx *a, const char *key, double rate, double burst, bool peek, int *retry_after_s)
{
    return api_rate_limits_take(a->accounts->limits, key, rate, burst, peek, fs_mono_ms(), retry_after_s);
}

void api_rate_refund(api_ctx *a, const char *key)
{
    api_rate_limits_refund(a->accounts->limits, key);
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

int api_write_gate(fs_http_req *req, api_ctx *a, const fs_principal *who)
{
    int retry;
    char rk[128];
    if (a->rate_write_member <= 0)
        return 0;
    snprintf(rk, sizeof rk, "write-m|%s", who->sub);
    if (!api_rate_take(a, rk, (double)a->rate_write_member, (double)a->rate_write_member_burst, false, &retry))
        return api_rate_limited(req, retry, "changes from this member");
    return 0;
}

int api_order_gate(fs_http_req *req, api_ctx *a, const fs_principal *who)
{
    int retry;
    char rk[128];
    snprintf(rk, sizeof rk, "order-m|%s", who->sub);
    if (!api_rate_take(a, rk, (double)a->rate_order_member, (double)a->rate_order_member_burst, false, &retry))
        return api_rate_limited(req, retry, "orders from this member");
    snprintf(rk, sizeof rk, "order-ip|%s", api_client_ip(req));
    if (!api_rate_take(a, rk, (double)a->rate_order_ip, (double)a->rate_order_ip_burst, false, &retry))
        return api_rate_limited(req, retry, "orders from this address");
    if (who->gen < 0)
        return 0; /* an operator token: no account behind it */
    int64_t gen;
    member_status st;
    fs_err err = {0};
    if (api_member_state(a, who->sub, &gen, &st, &err))
        return fs_http_fail(req, &err, "the members store is unavailable", NULL);
    if (st == MEMBER_UNVERIFIED)
        return fs_http_error(req, 403, "EMAIL_NOT_VERIFIED", "verify your e-mail address before ordering", NULL);
    return 0;
}

/* ---- outbox ------------------------------------------------------------------------------ */

void api_outbox_kick(api_ctx *a)
{
    api_relay_kick(a->accounts->relay);
}

/* ---- the object -------------------------------------------------------------------------- */

/* Keys and settings; 0 or -1 with *err. */
static int accounts_settings(api_accounts *acc, fs_err *err)
{
    long mem_mb, ops, conc, max_keys;
    if (fs_pii_key_load(acc->pii_key, err) ||
        fs_env_int("FLASHSALE_PWHASH_MEMLIMIT_MB", 64, 8, 4096, &mem_mb, err) ||
        fs_env_int("FLASHSALE_PWHASH_OPSLIMIT", 2, 1, 20, &ops, err) ||
        fs_env_int("FLASHSALE_PWHASH_CONCURRENCY", 2, 1, 64, &conc, err) ||
        fs_env_int("FLASHSALE_MEMBER_CACHE_MS", 2000, 0, 60000, &acc->cache_ms, err) ||
        fs_env_int("FLASHSALE_RATE_MAX_KEYS", 500000, 10, 100000000, &max_keys, err))
        return -1;
    acc->pw_mem = (size_t)mem_mb * 1024 * 1024;
    acc->pw_ops = (unsigned long long)ops;
    if (sem_init(&acc->pwhash_slots, 0, (unsigned)conc))
        return fs_err_set(err, FS_ERR_FATAL, 0, "cannot make the password hashing slots");
    acc->slots_made = true;
    if (!(acc->cache = fs_map_new(4096)) || !(acc->limits = api_rate_limits_new(max_keys)))
        return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory for the members' caches");
    return 0;
}

api_accounts *api_accounts_new(api_ctx *a, fs_err *err)
{
    api_accounts *acc = calloc(1, sizeof *acc);
    if (!acc) {
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory for the accounts");
        return NULL;
    }
    pthread_mutex_init(&acc->dummy_lock, NULL);
    pthread_mutex_init(&acc->cache_lock, NULL);
    if (accounts_settings(acc, err) || member_store_migrate(&a->cfg, err) ||
        !(acc->relay = api_relay_start(&a->cfg, err))) {
        api_accounts_destroy(acc);
        return NULL;
    }
    return acc;
}

void api_accounts_destroy(api_accounts *acc)
{
    if (!acc)
        return;
    api_relay_stop(acc->relay);
    fs_map_destroy_free(acc->cache);
    api_rate_limits_destroy(acc->limits);
    if (acc->slots_made)
        sem_destroy(&acc->pwhash_slots);
    pthread_mutex_destroy(&acc->dummy_lock);
    pthread_mutex_destroy(&acc->cache_lock);
    sodium_memzero(acc, sizeof *acc);
    free(acc);
}
