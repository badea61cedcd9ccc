/* Structured logging: one JSON object per line on stderr.
 *
 *   {"ts":"2026-11-21T07:40:01.123Z","level":"info","svc":"inventory","msg":"assigned",
 *    "cid":"0192...", ...fields}
 *
 * Thread-safe: each line is built in memory and written with one write(2). The correlation
 * id ("cid": the request or order being worked on) is per thread. Secrets must never be
 * passed as fields. */
#ifndef FS_LOG_H
#define FS_LOG_H
#include <jansson.h>

typedef enum { FS_LOG_DEBUG = 0, FS_LOG_INFO, FS_LOG_WARN, FS_LOG_ERROR } fs_log_level;

/* Process-wide settings; call once from main before starting threads. svc is copied. */
void fs_log_init(const char *svc, fs_log_level min_level);
/* Parses "debug", "info", "warn", "error"; returns -1 on anything else. */
int fs_log_level_parse(const char *s, fs_log_level *out);
/* Sets (or clears with NULL) this thread's correlation id. The string is copied. */
void fs_log_set_cid(const char *cid);

/* Logs msg with the given fields. `fields` is a JSON object (or NULL) whose reference is
 * stolen, so json_pack(...) can be passed directly. Returns nothing: logging never fails
 * the caller. */
void fs_log(fs_log_level level, const char *msg, json_t *fields);
/* Whether a line of this level would be written: a caller on a hot path checks it before
 * building the fields of a debug line. */
int fs_log_enabled(fs_log_level level);

#define fs_log_debug(msg, fields) fs_log(FS_LOG_DEBUG, (msg), (fields))
#define fs_log_info(msg, fields) fs_log(FS_LOG_INFO, (msg), (fields))
#define fs_log_warn(msg, fields) fs_log(FS_LOG_WARN, (msg), (fields))
#define fs_log_error(msg, fields) fs_log(FS_LOG_ERROR, (msg), (fields))

#endif
