/* Error classification of library failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/err.h"

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <string.h>

static void test_kafka_codes(void **state)
{
    (void)state;
    fs_err e;
    assert_int_equal(fs_err_from_kafka_code(&e, RD_KAFKA_RESP_ERR__QUEUE_FULL, "produce"), -1);
    assert_int_equal(e.cls, FS_ERR_RETRIABLE);
    assert_non_null(strstr(e.msg, "produce"));
    fs_err_from_kafka_code(&e, RD_KAFKA_RESP_ERR__FENCED, "commit");
    assert_int_equal(e.cls, FS_ERR_FATAL);
    fs_err_from_kafka_code(&e, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, "produce");
    assert_int_equal(e.cls, FS_ERR_INVALID);
}

static void test_kafka_error_objects(void **state)
{
    (void)state;
    fs_err e;
    rd_kafka_error_t *k = rd_kafka_error_new(RD_KAFKA_RESP_ERR__TIMED_OUT, "slow");
    fs_err_from_kafka_error(&e, k, "commit");
    assert_int_equal(e.cls, FS_ERR_FATAL); /* a plain error object is neither retriable nor abortable */
    rd_kafka_error_destroy(k);
}

static void test_redis(void **state)
{
    (void)state;
    fs_err e;
    redisReply r = {0};
    r.type = REDIS_REPLY_ERROR;
    r.str = "LOADING Redis is loading the dataset in memory";
    fs_err_from_redis(&e, NULL, &r, "get");
    assert_int_equal(e.cls, FS_ERR_RETRIABLE);
    r.str = "WRONGPASS invalid username-password pair";
    fs_err_from_redis(&e, NULL, &r, "auth");
    assert_int_equal(e.cls, FS_ERR_FATAL);
    r.str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    fs_err_from_redis(&e, NULL, &r, "get");
    assert_int_equal(e.cls, FS_ERR_INVALID);
    redisContext *c = redisConnect("127.0.0.1", 1); /* nothing listens on port 1 */
    assert_non_null(c);
    fs_err_from_redis(&e, c, NULL, "connect");
    assert_int_equal(e.cls, FS_ERR_RETRIABLE);
    redisFree(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_codes),
        cmocka_unit_test(test_kafka_error_objects),
        cmocka_unit_test(test_redis),
    };
    return cmocka_run_group_tests_name("err", tests, NULL, NULL);
}
