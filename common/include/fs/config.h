/* Configuration from the environment, validated at start.
 *
 * Every setting is an environment variable FLASHSALE_* with a default. A bad value is
 * reported as one line naming the variable, the value and what is allowed; main() prints
 * it and exits with status 2 (fs_config_die). Values that are secrets are never echoed. */
#ifndef FS_CONFIG_H
#define FS_CONFIG_H
#include "fs/err.h"
#include <stdbool.h>
#include <stddef.h>

/* Reads an integer in [min, max]; unset or empty -> def. */
int fs_env_int(const char *name, long def, long min, long max, long *out, fs_err *err);
/* Reads a string; unset or empty -> def (which may be NULL). The result points into the
 * environment or to def: do not free. `required` makes unset an error. */
int fs_env_str(const char *name, const char *def, bool required, const char **out, fs_err *err);
/* Reads a boolean: 1/0, true/false, yes/no, on/off. */
int fs_env_bool(const char *name, bool def, bool *out, fs_err *err);
/* Reads a secret: like fs_env_str but the error never contains the value, and min_len
 * is enforced. */
int fs_env_secret(const char *name, size_t min_len, bool required, const char **out, fs_err *err);

/* Settings shared by every flashsale process. */
typedef struct {
    const char *brokers;       /* FLASHSALE_KAFKA_BROKERS, host:port[,host:port] */
    long partitions;           /* FLASHSALE_PARTITIONS: partitions per topic family */
    long replication;          /* FLASHSALE_REPLICATION: replication factor of topics */
    const char *pg_url;        /* FLASHSALE_PG_URL (libpq connection URI) */
    const char *redis_host;    /* FLASHSALE_REDIS_HOST */
    long redis_port;           /* FLASHSALE_REDIS_PORT */
    const char *redis_password; /* FLASHSALE_REDIS_PASSWORD (secret, may be unset) */
    const char *log_level;     /* FLASHSALE_LOG_LEVEL */
    const char *instance_id;   /* FLASHSALE_INSTANCE_ID: static group membership id */
    long commit_interval_ms;   /* FLASHSALE_COMMIT_INTERVAL_MS: transactional batch age */
    long commit_max_records;   /* FLASHSALE_COMMIT_MAX_RECORDS: transactional batch size */
    bool commit_eager;         /* FLASHSALE_COMMIT_EAGER (true): commit as soon as nothing more
                                * is queued and the gap below allows (group commit); the
                                * interval is then only a bound */
    long commit_min_gap_ms;    /* FLASHSALE_COMMIT_MIN_GAP_MS (50): group commit's floor, up
                                * to the interval (fs/txn_loop.h); 0: none */
    long txn_timeout_ms;       /* FLASHSALE_TXN_TIMEOUT_MS: transaction.timeout.ms */
} fs_common_config;

/* Loads and validates the common settings. Returns 0, or -1 with a one-line *err. */
int fs_common_config_load(fs_common_config *cfg, fs_err *err);

/* Prints "flashsale: configuration error: <msg>" as a JSON log line and exits 2.
 * For main() only. */
void fs_config_die(const fs_err *err) __attribute__((noreturn));

#endif
