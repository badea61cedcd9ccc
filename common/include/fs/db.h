/* Connections to PostgreSQL (libpq) and Redis (hiredis) from the common configuration.
 *
 * Both return a connected handle or NULL with *err classed by fs_err_from_pg /
 * fs_err_from_redis (unreachable: retriable; bad credentials: fatal). The caller owns the
 * handle (PQfinish / redisFree). A handle is used by one thread at a time. */
#ifndef FS_DB_H
#define FS_DB_H
#include "fs/config.h"
#include "fs/err.h"
#include <hiredis/hiredis.h>
#include <libpq-fe.h>

/* application_name is shown in pg_stat_activity. */
PGconn *fs_pg_connect(const fs_common_config *cfg, const char *application_name, fs_err *err);
/* A bounded pool of PostgreSQL connections shared by threads (the API's worker threads).
 *
 * At most `size` connections exist at once, connected on first need and kept; a caller
 * that finds them all taken waits up to its deadline and then gets NULL with an
 * FS_ERR_RETRIABLE error ("pool exhausted"), so a flood of requests queues here instead of
 * opening connections until the server's max_connections refuses everyone (other
 * processes included). A connection handed back inside a transaction is rolled back; one
 * that is broken (or cannot be rolled back) is closed and its place freed, so the pool
 * heals by itself when PostgreSQL comes back. Every function may be called from any thread;
 * the handle is used by one thread between get and put. */
typedef struct fs_pg_pool fs_pg_pool;
typedef struct {
    long size, open, in_use, waiting;
    long long acquired, timeouts, connect_failures, discarded;
} fs_pg_pool_stats;

/* NULL only when out of memory. statement_timeout_ms > 0 is set on every connection. */
fs_pg_pool *fs_pg_pool_new(const fs_common_config *cfg, const char *application_name, long size,
                           long statement_timeout_ms);
/* Waits every borrower out is not its job: the caller puts every connection back first.
 * Accepts NULL. */
void fs_pg_pool_destroy(fs_pg_pool *p);
/* A connection for the caller's exclusive use until fs_pg_pool_put, or NULL with *err when
 * none could be had within timeout_ms (retriable) or connecting failed (its class). */
PGconn *fs_pg_pool_get(fs_pg_pool *p, long timeout_ms, fs_err *err);
/* Hands `c` (may be NULL) back: kept when healthy and idle, rolled back when inside a
 * transaction, closed when broken. */
void fs_pg_pool_put(fs_pg_pool *p, PGconn *c);
void fs_pg_pool_stats_get(fs_pg_pool *p, fs_pg_pool_stats *out);

/* Connects with a timeout and authenticates when FLASHSALE_REDIS_PASSWORD is set. */
redisContext *fs_redis_connect(const fs_common_config *cfg, int timeout_ms, fs_err *err);

/* Applies versioned migrations (SQL texts, each one transaction) above the version recorded
 * in `version_table` (created if missing), one migrator at a time (advisory lock
 * `lock_key`). Append only: a released migration is never edited. Returns 0 or -1. */
int fs_pg_migrate(PGconn *c, const char *version_table, long lock_key,
                  const char *const *migrations, int n, fs_err *err);

#endif
