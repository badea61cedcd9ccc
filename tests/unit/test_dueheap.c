/* fs_dueheap against a sorted model: random pushes and pops come out in time order, keys
 * travel with their times, and a heap emptied after a peak gives its memory back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/dueheap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 2000

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_against_model(void **state)
{
    (void)state;
    fs_dueheap h = {0};
    static int64_t model[N];
    size_t n = 0;
    srand(11);
    assert_null(fs_dueheap_top(&h));
    for (int step = 0; step < 30000; step++) {
        if (n < N && (n == 0 || rand() % 3)) {
            int64_t due = rand() % 100000;
            char key[32];
            snprintf(key, sizeof key, "k%lld", (long long)due);
            assert_int_equal(fs_dueheap_push(&h, due, (int32_t)(due % 7), key), 0);
            model[n++] = due;
        } else {
            qsort(model, n, sizeof *model, cmp64);
            assert_int_equal(fs_dueheap_top(&h)->due, model[0]);
            fs_due e = fs_dueheap_pop(&h);
            char key[32];
            snprintf(key, sizeof key, "k%lld", (long long)e.due);
            assert_int_equal(e.due, model[0]);
            assert_string_equal(e.key, key);
            assert_int_equal(e.partition, (int32_t)(e.due % 7));
            memmove(model, model + 1, (n - 1) * sizeof *model);
            n--;
        }
        assert_int_equal(h.n, n);
    }
    fs_dueheap_clear(&h);
    assert_int_equal(h.cap, 0);
}

/* A peak of 50,000 entries, drained in time order: the memory shrinks with it. */
static void test_drain_shrinks(void **state)
{
    (void)state;
    fs_dueheap h = {0};
    for (int i = 0; i < 50000; i++)
        assert_int_equal(fs_dueheap_push(&h, (i * 7919) % 50000, 0, "k"), 0);
    size_t peak = h.cap;
    assert_true(peak >= 50000);
    int64_t last = -1;
    while (h.n) {
        fs_due e = fs_dueheap_pop(&h);
        assert_true(e.due >= last);
        last = e.due;
    }
    assert_int_equal(last, 49999);
    assert_true(h.cap <= 8192);
    assert_true(h.cap < peak);
    fs_dueheap_clear(&h);
}

static void test_long_key_cut(void **state)
{
    (void)state;
    fs_dueheap h = {0};
    char key[200];
    memset(key, 'x', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    assert_int_equal(fs_dueheap_push(&h, 5, 0, key), 0);
    fs_due e = fs_dueheap_pop(&h);
    assert_int_equal(strlen(e.key), FS_DUE_KEY_MAX - 1);
    fs_dueheap_clear(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_drain_shrinks),
        cmocka_unit_test(test_long_key_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
