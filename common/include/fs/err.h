/* One error type at every library boundary.
 *
 * rdkafka, libpq, hiredis and avro failures become an fs_err with a class that tells the
 * caller what to do: retry the same step (RETRIABLE), abort the current transaction and redo
 * the batch (ABORT), give up and let main() decide (FATAL), or reject the input (INVALID:
 * bad data, never retried). Callers branch on the class, never on library codes.
 * An fs_err is a plain value: no allocation, safe to copy, usable from any thread. */
#ifndef FS_ERR_H
#define FS_ERR_H
#include <stdarg.h>

typedef enum {
    FS_OK = 0,
    FS_ERR_RETRIABLE, /* transient: the same step may succeed if tried again */
    FS_ERR_ABORT,     /* the transaction must be aborted; redo the batch */
    FS_ERR_FATAL,     /* the component cannot go on (e.g. fenced producer, bad config) */
    FS_ERR_INVALID,   /* bad input; retrying cannot help */
} fs_err_class;

typedef struct {
    fs_err_class cls;
    int code;      /* library code when there is one (rd_kafka_resp_err_t, errno...) */
    char msg[256]; /* human readable, never contains secrets */
} fs_err;

/* Sets *err (if err is non-NULL) and returns -1, so that `return fs_err_set(...)` reads well. */
int fs_err_set(fs_err *err, fs_err_class cls, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void fs_err_clear(fs_err *err);
const char *fs_err_class_name(fs_err_class cls);

/* Mappers. Each returns -1 after filling *err. They take the library's objects by their
 * struct tags so that this header pulls in no library header. */
struct rd_kafka_error_s;
struct pg_conn;
struct pg_result;
struct redisContext;
struct redisReply;

/* rdkafka: a rd_kafka_error_t from the transactional API (honours is_fatal / requires_abort /
 * is_retriable). Does not destroy the error object. */
int fs_err_from_kafka_error(fs_err *err, const struct rd_kafka_error_s *kerr, const char *what);
/* rdkafka: a plain rd_kafka_resp_err_t (as int) from producev, poll, admin results... */
int fs_err_from_kafka_code(fs_err *err, int resp_err, const char *what);
/* libpq: conn and/or result (either may be NULL). SQLSTATE class 40 (serialization,
 * deadlock) and 08 (connection) are retriable, 23/22/42 invalid, the rest fatal. */
int fs_err_from_pg(fs_err *err, const struct pg_conn *conn, const struct pg_result *res,
                   const char *what);
/* hiredis: a context error (I/O, EOF, timeout: retriable) or an error reply. */
int fs_err_from_redis(fs_err *err, const struct redisContext *ctx, const struct redisReply *reply,
                      const char *what);

#endif
