/* Error classification; see fs/err.h. */
#include "fs/err.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

int fs_err_set(fs_err *err, fs_err_class cls, int code, const char *fmt, ...)
{
    if (!err)
        return -1;
    err->cls = cls;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void fs_err_clear(fs_err *err)
{
    if (err) {
        err->cls = FS_OK;
        err->code = 0;
        err->msg[0] = '\0';
    }
}

const char *fs_err_class_name(fs_err_class cls)
{
    switch (cls) {
    case FS_OK: return "ok";
    case FS_ERR_RETRIABLE: return "retriable";
    case FS_ERR_ABORT: return "abort";
    case FS_ERR_FATAL: return "fatal";
    case FS_ERR_INVALID: return "invalid";
    }
    return "unknown";
}

int fs_err_from_kafka_error(fs_err *err, const struct rd_kafka_error_s *kerr, const char *what)
{
    const rd_kafka_error_t *e = (const rd_kafka_error_t *)kerr;
    fs_err_class cls = FS_ERR_FATAL;
    if (rd_kafka_error_is_fatal(e))
        cls = FS_ERR_FATAL;
    else if (rd_kafka_error_txn_requires_abort(e))
        cls = FS_ERR_ABORT;
    else if (rd_kafka_error_is_retriable(e))
        cls = FS_ERR_RETRIABLE;
    return fs_err_set(err, cls, rd_kafka_error_code(e), "%s: %s (%s)", what,
                      rd_kafka_error_string(e), rd_kafka_error_name(e));
}

int fs_err_from_kafka_code(fs_err *err, int resp_err, const char *what)
{
    rd_kafka_resp_err_t code = (rd_kafka_resp_err_t)resp_err;
    fs_err_class cls;
    switch (code) {
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT:
        cls = FS_ERR_RETRIABLE;
        break;
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__FATAL:
        cls = FS_ERR_FATAL;
        break;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        cls = FS_ERR_INVALID;
        break;
    default:
        cls = FS_ERR_FATAL;
    }
    return fs_err_set(err, cls, code, "%s: %s (%s)", what, rd_kafka_err2str(code),
                      rd_kafka_err2name(code));
}

int fs_err_from_pg(fs_err *err, const struct pg_conn *conn, const struct pg_result *res,
                   const char *what)
{
    const PGconn *c = (const PGconn *)conn;
    const PGresult *r = (const PGresult *)res;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : NULL;
    if ((!msg || !*msg) && c)
        msg = PQerrorMessage(c);
    if (!msg)
        msg = "unknown error";
    fs_err_class cls = FS_ERR_FATAL;
    if (c && PQstatus(c) != CONNECTION_OK)
        cls = FS_ERR_RETRIABLE;
    else if (state) {
        if (!strncmp(state, "40", 2) || !strncmp(state, "08", 2) || !strcmp(state, "55P03") ||
            !strcmp(state, "57P01"))
            cls = FS_ERR_RETRIABLE;
        else if (!strncmp(state, "23", 2) || !strncmp(state, "22", 2) || !strncmp(state, "42", 2))
            cls = FS_ERR_INVALID;
    }
    /* libpq messages end with a newline; keep the log line on one line. */
    char clean[200];
    snprintf(clean, sizeof clean, "%s", msg);
    for (char *p = clean; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return fs_err_set(err, cls, 0, "%s: %s%s%s", what, state ? state : "", state ? " " : "",
                      clean);
}

int fs_err_from_redis(fs_err *err, const struct redisContext *ctx, const struct redisReply *reply,
                      const char *what)
{
    const redisContext *c = (const redisContext *)ctx;
    const redisReply *r = (const redisReply *)reply;
    if (r && r->type == REDIS_REPLY_ERROR) {
        fs_err_class cls = (!strncmp(r->str, "LOADING", 7) || !strncmp(r->str, "BUSY", 4) ||
                            !strncmp(r->str, "TRYAGAIN", 8))
                               ? FS_ERR_RETRIABLE
                               : (!strncmp(r->str, "NOAUTH", 6) || !strncmp(r->str, "WRONGPASS", 9))
                                     ? FS_ERR_FATAL
                                     : FS_ERR_INVALID;
        return fs_err_set(err, cls, 0, "%s: %s", what, r->str);
    }
    if (c && c->err) {
        fs_err_class cls = (c->err == REDIS_ERR_IO || c->err == REDIS_ERR_EOF)
                               ? FS_ERR_RETRIABLE
                               : FS_ERR_FATAL;
        return fs_err_set(err, cls, c->err, "%s: %s", what, c->errstr);
    }
    return fs_err_set(err, FS_ERR_RETRIABLE, 0, "%s: no reply", what);
}
