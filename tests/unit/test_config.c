/* Configuration validation: defaults, accepted values, and one-line errors that name the
 * variable, the value and what is allowed (secrets never echoed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/config.h"

#include <stdlib.h>
#include <string.h>

static const char *const vars[] = {
    "FLASHSALE_KAFKA_BROKERS", "FLASHSALE_PARTITIONS", "FLASHSALE_REPLICATION",
    "FLASHSALE_PG_URL", "FLASHSALE_REDIS_HOST", "FLASHSALE_REDIS_PORT",
    "FLASHSALE_REDIS_PASSWORD", "FLASHSALE_LOG_LEVEL", "FLASHSALE_INSTANCE_ID",
    "FLASHSALE_COMMIT_INTERVAL_MS", "FLASHSALE_COMMIT_MAX_RECORDS", "FLASHSALE_TXN_TIMEOUT_MS",
    "FLASHSALE_COMMIT_MIN_GAP_MS", NULL};

static int clean_env(void **state)
{
    (void)state;
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    fs_common_config c;
    fs_err err = {0};
    assert_int_equal(fs_common_config_load(&c, &err), 0);
    assert_string_equal(c.brokers, "127.0.0.1:19092");
    assert_int_equal(c.partitions, 6);
    assert_int_equal(c.redis_port, 16379);
    assert_null(c.redis_password);
    assert_int_equal(c.commit_interval_ms, 20);
    assert_int_equal(c.commit_min_gap_ms, 50);
}

static void test_values_are_read(void **state)
{
    (void)state;
    setenv("FLASHSALE_KAFKA_BROKERS", "10.0.0.1:9092,kafka-2:19092", 1);
    setenv("FLASHSALE_PARTITIONS", "12", 1);
    setenv("FLASHSALE_LOG_LEVEL", "debug", 1);
    setenv("FLASHSALE_COMMIT_MIN_GAP_MS", "0", 1);
    fs_common_config c;
    fs_err err = {0};
    assert_int_equal(fs_common_config_load(&c, &err), 0);
    assert_string_equal(c.brokers, "10.0.0.1:9092,kafka-2:19092");
    assert_int_equal(c.partitions, 12);
    assert_string_equal(c.log_level, "debug");
    assert_int_equal(c.commit_min_gap_ms, 0);
}

static void expect_error(const char *var, const char *value, const char *needle)
{
    clean_env(NULL);
    setenv(var, value, 1);
    fs_common_config c;
    fs_err err = {0};
    assert_int_equal(fs_common_config_load(&c, &err), -1);
    assert_int_equal(err.cls, FS_ERR_INVALID);
    if (!strstr(err.msg, var) || !strstr(err.msg, needle))
        fail_msg("error for %s=%s was: %s", var, value, err.msg);
}

static void test_bad_values_name_variable_value_and_rule(void **state)
{
    (void)state;
    expect_error("FLASHSALE_PARTITIONS", "0", "\"0\": must be an integer from 1 to 1024");
    expect_error("FLASHSALE_PARTITIONS", "6x", "\"6x\"");
    expect_error("FLASHSALE_PARTITIONS", "99999999999999999999", "from 1 to 1024");
    expect_error("FLASHSALE_REDIS_PORT", "70000", "from 1 to 65535");
    expect_error("FLASHSALE_KAFKA_BROKERS", "localhost", "host:port");
    expect_error("FLASHSALE_KAFKA_BROKERS", "a:1,:2", "host:port");
    expect_error("FLASHSALE_KAFKA_BROKERS", "a:0", "host:port");
    expect_error("FLASHSALE_LOG_LEVEL", "loud", "debug, info, warn, error");
    expect_error("FLASHSALE_TXN_TIMEOUT_MS", "10", "from 1000 to 900000");
    expect_error("FLASHSALE_COMMIT_MIN_GAP_MS", "-1", "from 0 to 60000");
}

static void test_secrets_are_not_echoed(void **state)
{
    (void)state;
    setenv("FLASHSALE_TEST_SECRET", "hunter2", 1);
    const char *v;
    fs_err err = {0};
    assert_int_equal(fs_env_secret("FLASHSALE_TEST_SECRET", 32, true, &v, &err), -1);
    assert_null(strstr(err.msg, "hunter2"));
    assert_non_null(strstr(err.msg, "FLASHSALE_TEST_SECRET"));
    assert_non_null(strstr(err.msg, "at least 32"));
    unsetenv("FLASHSALE_TEST_SECRET");
    assert_int_equal(fs_env_secret("FLASHSALE_TEST_SECRET", 32, true, &v, &err), -1);
    assert_non_null(strstr(err.msg, "required"));
    assert_int_equal(fs_env_secret("FLASHSALE_TEST_SECRET", 32, false, &v, &err), 0);
    assert_null(v);
}

static void test_bool(void **state)
{
    (void)state;
    bool b;
    fs_err err = {0};
    setenv("FLASHSALE_TEST_BOOL", "Yes", 1);
    assert_int_equal(fs_env_bool("FLASHSALE_TEST_BOOL", false, &b, &err), 0);
    assert_true(b);
    setenv("FLASHSALE_TEST_BOOL", "off", 1);
    assert_int_equal(fs_env_bool("FLASHSALE_TEST_BOOL", true, &b, &err), 0);
    assert_false(b);
    setenv("FLASHSALE_TEST_BOOL", "maybe", 1);
    assert_int_equal(fs_env_bool("FLASHSALE_TEST_BOOL", true, &b, &err), -1);
    assert_non_null(strstr(err.msg, "\"maybe\": must be a boolean"));
    unsetenv("FLASHSALE_TEST_BOOL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clean_env),
        cmocka_unit_test_setup(test_values_are_read, clean_env),
        cmocka_unit_test_setup(test_bad_values_name_variable_value_and_rule, clean_env),
        cmocka_unit_test_setup(test_secrets_are_not_echoed, clean_env),
        cmocka_unit_test_setup(test_bool, clean_env),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
