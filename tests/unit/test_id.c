/* UUIDv7: layout (version, variant, timestamp), text round trip, strict ordering within a
 * thread, uniqueness across threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/id.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void test_layout_and_round_trip(void **state)
{
    (void)state;
    fs_uuid a, b;
    char s[FS_UUID_STR_LEN + 1];
    int64_t before = fs_now_ms();
    assert_int_equal(fs_uuid7_new(&a), 0);
    int64_t after = fs_now_ms();
    assert_int_equal(a.b[6] >> 4, 7);      /* version */
    assert_int_equal(a.b[8] >> 6, 2);      /* variant 10 */
    assert_true((int64_t)fs_uuid7_millis(&a) >= before);
    assert_true((int64_t)fs_uuid7_millis(&a) <= after + 1);
    fs_uuid_format(&a, s);
    assert_int_equal(strlen(s), 36);
    assert_int_equal(s[14], '7');
    assert_int_equal(fs_uuid_parse(s, &b), 0);
    assert_memory_equal(a.b, b.b, 16);
    assert_int_equal(fs_uuid_parse("not-a-uuid", &b), -1);
    assert_int_equal(fs_uuid_parse("0192f0e2-1c3b-7d4e-8f00-12345678901g", &b), -1);
    assert_int_equal(fs_uuid_parse("0192f0e2x1c3b-7d4e-8f00-123456789012", &b), -1);
}

static void test_strictly_increasing(void **state)
{
    (void)state;
    char prev[FS_UUID_STR_LEN + 1] = "", cur[FS_UUID_STR_LEN + 1];
    for (int i = 0; i < 200000; i++) { /* far more than 4096 per millisecond */
        assert_int_equal(fs_uuid7_str(cur), 0);
        if (strcmp(prev, cur) >= 0)
            fail_msg("id %d not increasing: %s then %s", i, prev, cur);
        memcpy(prev, cur, sizeof cur);
    }
}

#define THREADS 4
#define PER_THREAD 50000
static fs_uuid ids[THREADS][PER_THREAD];

static void *gen(void *arg)
{
    fs_uuid *out = arg;
    for (int i = 0; i < PER_THREAD; i++)
        fs_uuid7_new(&out[i]);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static void test_unique_across_threads(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, gen, ids[i]);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++)
        for (int k = 1; k < PER_THREAD; k++)
            assert_true(memcmp(ids[i][k - 1].b, ids[i][k].b, 16) < 0);
    qsort(ids, THREADS * PER_THREAD, sizeof(fs_uuid), cmp);
    fs_uuid *all = &ids[0][0];
    for (int k = 1; k < THREADS * PER_THREAD; k++)
        assert_true(memcmp(all[k - 1].b, all[k].b, 16) != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_round_trip),
        cmocka_unit_test(test_strictly_increasing),
        cmocka_unit_test(test_unique_across_threads),
    };
    return cmocka_run_group_tests_name("id", tests, NULL, NULL);
}
