/* fs_map against a brute-force model: random puts, replaces and deletes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/map.h"

#include <stdio.h>
#include <stdlib.h>

#define N 5000

static void count_cb(void *ctx, const char *key, void *value)
{
    (void)key;
    (void)value;
    (*(size_t *)ctx)++;
}

static void test_against_model(void **state)
{
    (void)state;
    fs_map *m = fs_map_new(4);
    static intptr_t model[N]; /* 0 = absent, else value */
    char key[32];
    srand(7);
    for (int step = 0; step < 200000; step++) {
        int k = rand() % N;
        snprintf(key, sizeof key, "key-%d", k);
        int op = rand() % 3;
        if (op < 2) {
            intptr_t v = step + 1;
            void *old = fs_map_put(m, key, (void *)v);
            assert_true((intptr_t)old == model[k]);
            model[k] = v;
        } else {
            void *old = fs_map_del(m, key);
            assert_true((intptr_t)old == model[k]);
            model[k] = 0;
        }
    }
    size_t live = 0, seen = 0;
    for (int k = 0; k < N; k++) {
        snprintf(key, sizeof key, "key-%d", k);
        assert_true((intptr_t)fs_map_get(m, key) == model[k]);
        live += model[k] != 0;
    }
    assert_int_equal(fs_map_size(m), live);
    fs_map_foreach(m, count_cb, &seen);
    assert_int_equal(seen, live);
    assert_null(fs_map_get(m, "absent"));
    fs_map_destroy(m);
    fs_map_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_against_model)};
    return cmocka_run_group_tests_name("map", tests, NULL, NULL);
}
