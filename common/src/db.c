/* PostgreSQL and Redis connections; see fs/db.h. */
#include "fs/db.h"
#include "fs/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Server notices ("... already exists, skipping") as debug log lines, not plain stderr. */
static void notice(void *arg, const char *message)
{
    (void)arg;
    fs_log_debug("postgres notice", json_pack("{s:s}", "detail", message));
}

PGconn *fs_pg_connect(const fs_common_config *cfg, const char *application_name, fs_err *err)
{
    const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *vals[] = {cfg->pg_url, application_name, "5", NULL};
    /* expand_dbname=1: the URL in "dbname" is expanded; the other keys add to it. */
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        fs_err_set(err, FS_ERR_FATAL, 0, "postgres: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        const char *m = PQerrorMessage(c);
        fs_err_from_pg(err, c, NULL, "postgres connect");
        if (strstr(m, "password authentication failed") || strstr(m, "does not exist"))
            err->cls = FS_ERR_FATAL; /* retrying cannot fix credentials or a missing db */
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, notice, NULL);
    return c;
}

redisContext *fs_redis_connect(const fs_common_config *cfg, int timeout_ms, fs_err *err)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(cfg->redis_host, (int)cfg->redis_port, tv);
    if (!c) {
        fs_err_set(err, FS_ERR_FATAL, 0, "redis: out of memory");
        return NULL;
    }
    if (c->err) {
        fs_err_from_redis(err, c, NULL, "redis connect");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (cfg->redis_password) {
        redisReply *r = redisCommand(c, "AUTH %s", cfg->redis_password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fs_err_from_redis(err, c, r, "redis auth");
            if (r)
                freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

int fs_pg_migrate(PGconn *c, const char *version_table, long lock_key,
                  const char *const *migrations, int n, fs_err *err)
{
    char sql[256], key[24];
    snprintf(key, sizeof key, "%ld", lock_key);
    PGresult *r = PQexecParams(c, "SELECT pg_advisory_lock($1::bigint)", 1, NULL,
                               (const char *[]){key}, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    if (!ok)
        return fs_err_from_pg(err, c, NULL, "migration lock");
    int rc = 0;
    /* the table name is a constant of the caller, never input */
    snprintf(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS %s (version integer NOT NULL)", version_table);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof sql, "SELECT coalesce(max(version), 0) FROM %s", version_table);
    r = PQexec(c, sql);
    int have = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    if (have < 0)
        rc = fs_err_from_pg(err, c, NULL, version_table);
    for (int v = have + 1; rc == 0 && v <= n; v++) {
        snprintf(sql, sizeof sql, "INSERT INTO %s VALUES (%d)", version_table, v);
        PQclear(PQexec(c, "BEGIN"));
        PGresult *m = PQexec(c, migrations[v - 1]);
        PGresult *s = PQresultStatus(m) == PGRES_COMMAND_OK ? PQexec(c, sql) : NULL;
        if (!s || PQresultStatus(s) != PGRES_COMMAND_OK) {
            rc = fs_err_from_pg(err, c, s ? s : m, "migration");
            PQclear(PQexec(c, "ROLLBACK"));
        } else {
            PQclear(PQexec(c, "COMMIT"));
            fs_log_info("migration applied", json_pack("{s:s,s:i}", "schema", version_table, "version", v));
        }
        PQclear(m);
        PQclear(s);
    }
    PQclear(PQexecParams(c, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, (const char *[]){key},
                         NULL, NULL, 0));
    return rc;
}

/* ---- pool ------------------------------------------------------------------------------
 * A free list (LIFO: the warmest connection first) under one mutex, a count of connections
 * that exist or are being opened, and a condition variable for waiters. Connecting happens
 * outside the lock with the slot already counted, so a slow connect never holds up others
 * and never lets the count pass `size`. */
struct fs_pg_pool {
    const fs_common_config *cfg;
    char app[64];
    char stmt_timeout[32];
    pthread_mutex_t lock;
    pthread_cond_t freed;
    PGconn **idle;
    long n_idle, size, open, waiting;
    long long acquired, timeouts, connect_failures, discarded;
};

fs_pg_pool *fs_pg_pool_new(const fs_common_config *cfg, const char *application_name, long size,
                           long statement_timeout_ms)
{
    fs_pg_pool *p = calloc(1, sizeof *p);
    if (!p || size < 1 || !(p->idle = calloc((size_t)size, sizeof *p->idle))) {
        free(p);
        return NULL;
    }
    p->cfg = cfg;
    p->size = size;
    snprintf(p->app, sizeof p->app, "%s", application_name);
    if (statement_timeout_ms > 0)
        snprintf(p->stmt_timeout, sizeof p->stmt_timeout, "%ld", statement_timeout_ms);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->freed, &ca);
    pthread_condattr_destroy(&ca);
    return p;
}

void fs_pg_pool_destroy(fs_pg_pool *p)
{
    if (!p)
        return;
    for (long i = 0; i < p->n_idle; i++)
        PQfinish(p->idle[i]);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    free(p->idle);
    free(p);
}

static PGconn *pool_connect(fs_pg_pool *p, fs_err *err)
{
    PGconn *c = fs_pg_connect(p->cfg, p->app, err);
    if (c && p->stmt_timeout[0]) {
        PGresult *r = PQexecParams(c, "SELECT set_config('statement_timeout', $1, false)", 1, NULL,
                                   (const char *[]){p->stmt_timeout}, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fs_err_from_pg(err, c, r, "postgres set statement_timeout");
            PQclear(r);
            PQfinish(c);
            return NULL;
        }
        PQclear(r);
    }
    return c;
}

PGconn *fs_pg_pool_get(fs_pg_pool *p, long timeout_ms, fs_err *err)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->n_idle > 0) {
            PGconn *c = p->idle[--p->n_idle];
            p->acquired++;
            pthread_mutex_unlock(&p->lock);
            return c;
        }
        if (p->open < p->size) {
            p->open++; /* the slot is ours while we connect */
            pthread_mutex_unlock(&p->lock);
            PGconn *c = pool_connect(p, err);
            pthread_mutex_lock(&p->lock);
            if (c)
                p->acquired++;
            else {
                p->open--;
                p->connect_failures++;
                pthread_cond_signal(&p->freed);
            }
            pthread_mutex_unlock(&p->lock);
            return c;
        }
        p->waiting++;
        int rc = pthread_cond_timedwait(&p->freed, &p->lock, &until);
        p->waiting--;
        if (rc == ETIMEDOUT && p->n_idle == 0 && p->open >= p->size) {
            p->timeouts++;
            pthread_mutex_unlock(&p->lock);
            fs_err_set(err, FS_ERR_RETRIABLE, 0, "postgres: all %ld pooled connections busy for %ld ms",
                       p->size, timeout_ms);
            return NULL;
        }
    }
}

void fs_pg_pool_put(fs_pg_pool *p, PGconn *c)
{
    if (!c)
        return;
    bool keep = PQstatus(c) == CONNECTION_OK;
    if (keep && PQtransactionStatus(c) != PQTRANS_IDLE) {
        /* a handler left a transaction open (an error path): it must not leak into the
         * next borrower's statements */
        PGresult *r = PQexec(c, "ROLLBACK");
        keep = PQresultStatus(r) == PGRES_COMMAND_OK && PQtransactionStatus(c) == PQTRANS_IDLE;
        PQclear(r);
    }
    if (!keep)
        PQfinish(c);
    pthread_mutex_lock(&p->lock);
    if (keep)
        p->idle[p->n_idle++] = c;
    else {
        p->open--;
        p->discarded++;
    }
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

void fs_pg_pool_stats_get(fs_pg_pool *p, fs_pg_pool_stats *out)
{
    pthread_mutex_lock(&p->lock);
    *out = (fs_pg_pool_stats){.size = p->size,
                              .open = p->open,
                              .in_use = p->open - p->n_idle,
                              .waiting = p->waiting,
                              .acquired = p->acquired,
                              .timeouts = p->timeouts,
                              .connect_failures = p->connect_failures,
                              .discarded = p->discarded};
    pthread_mutex_unlock(&p->lock);
}
