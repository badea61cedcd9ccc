/* PostgreSQL and Redis connections; see fs/db.h. */
#include "fs/db.h"
#include "fs/log.h"

#include <stdlib.h>

#include <stdio.h>
#include <string.h>

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
