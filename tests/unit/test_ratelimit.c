/* flashsale-api's token buckets (command-api/src/ratelimit.h): take, refill, peek and refund;
 * a full map forgets idle and barely used buckets first and never a lockout, so a flood of
 * new keys cannot unlock an account; with nothing but lockouts a new key is refused. The
 * clock is the caller's, so these run in no time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ratelimit.h"

#include "fs/log.h"

#include <stdio.h>

static void test_take_refill_peek_refund(void **state)
{
    (void)state;
    api_rate_limits *rl = api_rate_limits_new(100);
    assert_non_null(rl);
    int retry = 0;
    for (int i = 0; i < 3; i++) /* a full bucket: the burst at once */
        assert_true(api_rate_limits_take(rl, "k", 1.0, 3, false, 0, &retry));
    assert_false(api_rate_limits_take(rl, "k", 1.0, 3, false, 0, &retry));
    assert_true(retry >= 1 && retry <= 2);
    assert_false(api_rate_limits_take(rl, "k", 1.0, 3, false, 500, &retry)); /* half a token */
    assert_true(api_rate_limits_take(rl, "k", 1.0, 3, true, 1000, &retry)); /* peek: one is back... */
    assert_true(api_rate_limits_take(rl, "k", 1.0, 3, false, 1000, &retry)); /* ...and still there */
    assert_false(api_rate_limits_take(rl, "k", 1.0, 3, false, 1000, &retry));
    api_rate_limits_refund(rl, "k"); /* an attempt that did not count */
    assert_true(api_rate_limits_take(rl, "k", 1.0, 3, false, 1000, &retry));
    for (int i = 0; i < 10; i++) /* refunds stop at the burst */
        api_rate_limits_refund(rl, "k");
    for (int i = 0; i < 3; i++)
        assert_true(api_rate_limits_take(rl, "k", 1.0, 3, false, 1000, &retry));
    assert_false(api_rate_limits_take(rl, "k", 1.0, 3, false, 1000, &retry));
    api_rate_limits_refund(rl, "unknown"); /* nothing to give back */
    assert_int_equal(api_rate_limits_size(rl), 1);
    api_rate_limits_destroy(rl);
}

static void test_switched_off(void **state)
{
    (void)state;
    api_rate_limits *rl = api_rate_limits_new(100);
    for (int i = 0; i < 1000; i++)
        assert_true(api_rate_limits_take(rl, "off", 0, 0, false, 0, NULL));
    assert_int_equal(api_rate_limits_size(rl), 0);
    api_rate_limits_destroy(rl);
    api_rate_limits_destroy(NULL);
}

/* n keys "<prefix><i>", each taken `takes` times at t (rate: one a minute, burst). */
static void fill(api_rate_limits *rl, const char *prefix, int n, int takes, double burst, int64_t t)
{
    char key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%s%d", prefix, i);
        for (int k = 0; k < takes; k++)
            api_rate_limits_take(rl, key, 1.0 / 60, burst, false, t, NULL);
    }
}

static void test_full_map_forgets_barely_used_buckets(void **state)
{
    (void)state;
    api_rate_limits *rl = api_rate_limits_new(10);
    fill(rl, "used", 10, 1, 5, 0); /* one token used of five each */
    assert_int_equal(api_rate_limits_size(rl), 10);
    assert_true(api_rate_limits_take(rl, "new", 1.0 / 60, 5, false, 0, NULL));
    assert_int_equal(api_rate_limits_size(rl), 9); /* a tenth of the room (+1) freed, then the new key */
    api_rate_limits_destroy(rl);
}

static void test_lockouts_are_never_forgotten(void **state)
{
    (void)state;
    api_rate_limits *rl = api_rate_limits_new(10);
    fill(rl, "locked", 5, 5, 5, 0); /* five accounts locked out */
    fill(rl, "used", 5, 1, 5, 0);
    int retry = 0;
    for (int i = 0; i < 40; i++) { /* a flood of new keys */
        char key[32];
        snprintf(key, sizeof key, "flood%d", i);
        assert_true(api_rate_limits_take(rl, key, 1.0 / 60, 5, false, 0, NULL));
    }
    for (int i = 0; i < 5; i++) {
        char key[32];
        snprintf(key, sizeof key, "locked%d", i);
        assert_false(api_rate_limits_take(rl, key, 1.0 / 60, 5, false, 0, &retry));
        assert_true(retry >= 1);
    }
    api_rate_limits_destroy(rl);
}

static void test_only_lockouts_refuse_a_new_key(void **state)
{
    (void)state;
    api_rate_limits *rl = api_rate_limits_new(10);
    fill(rl, "locked", 10, 1, 1, 0); /* burst 1, taken: every bucket below one token */
    int retry = 0;
    assert_false(api_rate_limits_take(rl, "new", 1.0 / 60, 5, false, 0, &retry));
    assert_int_equal(retry, 1);
    assert_int_equal(api_rate_limits_size(rl), 10);
    assert_false(api_rate_limits_take(rl, "locked3", 1.0 / 60, 1, false, 0, NULL));
    /* a minute on, every lockout has refilled: the next new key finds room (the fruitless
     * sweep is not retried within a second, but this is later) */
    assert_true(api_rate_limits_take(rl, "new", 1.0 / 60, 5, false, 61000, &retry));
    assert_true(api_rate_limits_size(rl) <= 10);
    api_rate_limits_destroy(rl);
}

int main(void)
{
    fs_log_init("test", FS_LOG_ERROR); /* (a full map is logged as a warning) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_refill_peek_refund),
        cmocka_unit_test(test_switched_off),
        cmocka_unit_test(test_full_map_forgets_barely_used_buckets),
        cmocka_unit_test(test_lockouts_are_never_forgotten),
        cmocka_unit_test(test_only_lockouts_refuse_a_new_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
