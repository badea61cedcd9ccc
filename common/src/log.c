/* JSON-lines logger; see fs/log.h. */
#include "fs/log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char log_svc[32] = "flashsale";
static fs_log_level log_min = FS_LOG_INFO;
static __thread char log_cid[64];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int fs_log_enabled(fs_log_level level)
{
    return level >= log_min;
}

void fs_log_init(const char *svc, fs_log_level min_level)
{
    snprintf(log_svc, sizeof log_svc, "%s", svc ? svc : "flashsale");
    log_min = min_level;
}

int fs_log_level_parse(const char *s, fs_log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, level_names[i])) {
            *out = (fs_log_level)i;
            return 0;
        }
    return -1;
}

void fs_log_set_cid(const char *cid)
{
    snprintf(log_cid, sizeof log_cid, "%s", cid ? cid : "");
}

void fs_log(fs_log_level level, const char *msg, json_t *fields)
{
    if (level < log_min) {
        json_decref(fields);
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[96];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(tv.tv_usec / 1000));

    json_t *line = json_object();
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(level_names[level]));
    json_object_set_new(line, "svc", json_string(log_svc));
    json_object_set_new(line, "msg", json_string(msg ? msg : ""));
    if (log_cid[0])
        json_object_set_new(line, "cid", json_string(log_cid));
    if (json_is_object(fields))
        json_object_update_missing(line, fields);
    json_decref(fields);

    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (!text)
        return;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps allocates n+1: replace the NUL, write n+1 bytes */
    ssize_t w = write(STDERR_FILENO, text, n + 1);
    (void)w;
    free(text);
}
