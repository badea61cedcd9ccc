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
/* Connects with a timeout and authenticates when FLASHSALE_REDIS_PASSWORD is set. */
redisContext *fs_redis_connect(const fs_common_config *cfg, int timeout_ms, fs_err *err);

/* Applies versioned migrations (SQL texts, each one transaction) above the version recorded
 * in `version_table` (created if missing), one migrator at a time (advisory lock
 * `lock_key`). Append only: a released migration is never edited. Returns 0 or -1. */
int fs_pg_migrate(PGconn *c, const char *version_table, long lock_key,
                  const char *const *migrations, int n, fs_err *err);

#endif
