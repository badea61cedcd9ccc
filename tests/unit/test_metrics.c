/* Histograms (fs/metrics.h): each value lands in the first bucket whose bound holds it,
 * the text is valid cumulative Prometheus form with one HELP/TYPE per name, and observing
 * from several threads loses nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long bucket(const char *text, const char *series, const char *le)
{
    char needle[256];
    snprintf(needle, sizeof needle, "%s,le=\"%s\"} ", series, le);
    const char *p = strstr(text, needle);
    assert_non_null(p);
    return strtoul(p + strlen(needle), NULL, 10);
}

static void test_buckets_and_text(void **state)
{
    (void)state;
    fs_hist *h = fs_hist_register("t_stage_ms", "stage=\"a\"", "test stage");
    fs_hist *again = fs_hist_register("t_stage_ms", "stage=\"a\"", "ignored");
    assert_ptr_equal(h, again);
    fs_hist *b = fs_hist_register("t_stage_ms", "stage=\"b\"", "");
    double values[] = {0.0, 0.05, 0.06, 1.0, 1.01, 4.99, 5000, 5000.5, -3};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        fs_hist_observe_ms(h, values[i]);
    fs_hist_observe_ms(b, 2);
    fs_hist_observe_ms(NULL, 1); /* a full registry's NULL handle: no-op */
    size_t len = 0;
    char *text = fs_metrics_text(&len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    const char *a = "t_stage_ms_bucket{stage=\"a\"";
    assert_int_equal(bucket(text, a, "0.05"), 3); /* 0, 0.05 and the negative one */
    assert_int_equal(bucket(text, a, "0.1"), 4);
    assert_int_equal(bucket(text, a, "1"), 5);
    assert_int_equal(bucket(text, a, "2"), 6);
    assert_int_equal(bucket(text, a, "5"), 7);
    assert_int_equal(bucket(text, a, "5000"), 8);
    assert_int_equal(bucket(text, a, "+Inf"), 9);
    assert_non_null(strstr(text, "t_stage_ms_count{stage=\"a\"} 9\n"));
    assert_int_equal(bucket(text, "t_stage_ms_bucket{stage=\"b\"", "1"), 0);
    assert_int_equal(bucket(text, "t_stage_ms_bucket{stage=\"b\"", "2"), 1);
    const char *first = strstr(text, "# TYPE t_stage_ms histogram");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE t_stage_ms histogram")); /* once per name */
    free(text);
}

static fs_hist *shared;
static void *observer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++)
        fs_hist_observe_ms(shared, (double)(i % 7));
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    shared = fs_hist_register("t_threads_ms", "", "threads");
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, observer, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    size_t len;
    char *text = fs_metrics_text(&len);
    assert_non_null(strstr(text, "t_threads_ms_count 400000\n"));
    assert_non_null(strstr(text, "t_threads_ms_bucket{le=\"+Inf\"} 400000\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_and_text),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
