/* PostgreSQL and Redis connections; see fs/db.h. */
#include "fs/db.h"

#include <stdio.h>
#include <string.h>

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
