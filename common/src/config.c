/* Environment configuration; see fs/config.h. */
#include "fs/config.h"
#include "fs/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *env_get(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

int fs_env_int(const char *name, long def, long min, long max, long *out, fs_err *err)
{
    const char *v = env_get(name);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max)
        return fs_err_set(err, FS_ERR_INVALID, 0,
                          "%s=\"%.64s\": must be an integer from %ld to %ld", name, v, min, max);
    *out = n;
    return 0;
}

int fs_env_str(const char *name, const char *def, bool required, const char **out, fs_err *err)
{
    const char *v = env_get(name);
    if (!v && required)
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s is not set: it is required", name);
    *out = v ? v : def;
    return 0;
}

int fs_env_bool(const char *name, bool def, bool *out, fs_err *err)
{
    const char *v = env_get(name);
    if (!v) {
        *out = def;
        return 0;
    }
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcasecmp(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    return fs_err_set(err, FS_ERR_INVALID, 0,
                      "%s=\"%.32s\": must be a boolean (1/0, true/false, yes/no, on/off)", name, v);
}

int fs_env_secret(const char *name, size_t min_len, bool required, const char **out, fs_err *err)
{
    const char *v = env_get(name);
    if (!v) {
        if (required)
            return fs_err_set(err, FS_ERR_INVALID, 0, "%s is not set: it is required", name);
        *out = NULL;
        return 0;
    }
    if (strlen(v) < min_len)
        return fs_err_set(err, FS_ERR_INVALID, 0,
                          "%s=<%zu characters, hidden>: must be at least %zu characters", name,
                          strlen(v), min_len);
    *out = v;
    return 0;
}

static int check_brokers(const char *name, const char *v, fs_err *err)
{
    /* host:port[,host:port...], ports 1-65535 */
    const char *p = v;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *colon = memrchr(p, ':', len);
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == p || end != p + len || port < 1 || port > 65535)
            return fs_err_set(err, FS_ERR_INVALID, 0,
                              "%s=\"%.128s\": must be a comma-separated list of host:port", name,
                              v);
        p = comma ? comma + 1 : p + len;
    }
    return 0;
}

int fs_common_config_load(fs_common_config *cfg, fs_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    fs_log_level lvl;
    if (fs_env_str("FLASHSALE_KAFKA_BROKERS", "127.0.0.1:19092", false, &cfg->brokers, err) ||
        check_brokers("FLASHSALE_KAFKA_BROKERS", cfg->brokers, err) ||
        fs_env_int("FLASHSALE_PARTITIONS", 6, 1, 1024, &cfg->partitions, err) ||
        fs_env_int("FLASHSALE_REPLICATION", 1, 1, 16, &cfg->replication, err) ||
        fs_env_str("FLASHSALE_PG_URL", "postgresql://flashsale@127.0.0.1:15432/flashsale", false,
                   &cfg->pg_url, err) ||
        fs_env_str("FLASHSALE_REDIS_HOST", "127.0.0.1", false, &cfg->redis_host, err) ||
        fs_env_int("FLASHSALE_REDIS_PORT", 16379, 1, 65535, &cfg->redis_port, err) ||
        fs_env_secret("FLASHSALE_REDIS_PASSWORD", 1, false, &cfg->redis_password, err) ||
        fs_env_str("FLASHSALE_LOG_LEVEL", "info", false, &cfg->log_level, err) ||
        fs_env_str("FLASHSALE_INSTANCE_ID", NULL, false, &cfg->instance_id, err) ||
        fs_env_int("FLASHSALE_COMMIT_INTERVAL_MS", 20, 1, 60000, &cfg->commit_interval_ms, err) ||
        fs_env_int("FLASHSALE_COMMIT_MAX_RECORDS", 2000, 1, 1000000, &cfg->commit_max_records,
                   err) ||
        fs_env_bool("FLASHSALE_COMMIT_EAGER", true, &cfg->commit_eager, err) ||
        fs_env_int("FLASHSALE_COMMIT_MIN_GAP_MS", 50, 0, 60000, &cfg->commit_min_gap_ms, err) ||
        fs_env_int("FLASHSALE_TXN_TIMEOUT_MS", 30000, 1000, 900000, &cfg->txn_timeout_ms, err))
        return -1;
    if (fs_log_level_parse(cfg->log_level, &lvl))
        return fs_err_set(err, FS_ERR_INVALID, 0,
                          "FLASHSALE_LOG_LEVEL=\"%.32s\": must be one of debug, info, warn, error",
                          cfg->log_level);
    return 0;
}

void fs_config_die(const fs_err *err)
{
    fs_log_error("configuration error", json_pack("{s:s}", "error", err->msg));
    exit(2);
}
