/* RFC 3339 times (common/src/timefmt.c): the forms the API takes, days the month does not
 * have refused, formatting and parsing back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/timefmt.h"

#include <string.h>

static int64_t parsed(const char *s)
{
    int64_t ms = -1;
    assert_int_equal(fs_time_parse(s, &ms), 0);
    return ms;
}

static void test_forms(void **state)
{
    (void)state;
    assert_int_equal(parsed("2026-11-21T08:00:00Z"), 1795248000000LL);
    assert_int_equal(parsed("2026-11-21t08:00:00.250z"), 1795248000250LL);
    assert_int_equal(parsed("2026-11-21T17:00:00+09:00"), 1795248000000LL);
    assert_int_equal(parsed("2026-11-21T07:30:00-00:30"), 1795248000000LL);
    int64_t ms;
    assert_int_equal(fs_time_parse("2026-11-21 08:00:00Z", &ms), -1);
    assert_int_equal(fs_time_parse("2026-11-21T08:00:00", &ms), -1);
    assert_int_equal(fs_time_parse("2026-11-21T08:00:00.Z", &ms), -1);
    assert_int_equal(fs_time_parse("2026-11-21T24:00:00Z", &ms), -1);
    assert_int_equal(fs_time_parse("2026-13-01T00:00:00Z", &ms), -1);
    assert_int_equal(fs_time_parse(NULL, &ms), -1);
}

/* A day the month does not have is refused, not carried into the next month (found by
 * tests/fuzz/fuzz_http.c: "2026-02-30T00:00:00Z" read as 2 March). */
static void test_days_of_the_month(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(fs_time_parse("2026-02-30T00:00:00Z", &ms), -1);
    assert_int_equal(fs_time_parse("2026-02-29T00:00:00Z", &ms), -1);
    assert_int_equal(fs_time_parse("2026-04-31T00:00:00Z", &ms), -1);
    assert_int_equal(fs_time_parse("2100-02-29T00:00:00Z", &ms), -1);
    assert_int_equal(fs_time_parse("2026-01-00T00:00:00Z", &ms), -1);
    assert_int_equal(parsed("2028-02-29T00:00:00Z"), 1835395200000LL);
    assert_int_equal(parsed("2000-02-29T00:00:00Z"), 951782400000LL);
    assert_int_equal(parsed("2026-12-31T23:59:59.999Z"), 1798761599999LL);
}

static void test_format_parses_back(void **state)
{
    (void)state;
    const int64_t times[] = {0, 1795248000250LL, 951782400000LL, 253402300799999LL};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        char s[FS_TIME_STR_LEN];
        fs_time_format(times[i], s);
        assert_int_equal(parsed(s), times[i]);
    }
    char s[FS_TIME_STR_LEN];
    fs_time_format(1795248000250LL, s);
    assert_string_equal(s, "2026-11-21T08:00:00.250Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_days_of_the_month),
        cmocka_unit_test(test_format_parses_back),
    };
    return cmocka_run_group_tests_name("timefmt", tests, NULL, NULL);
}
