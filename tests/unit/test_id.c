/* UUIDv7: layout (version, variant, timestamp), text round trip, strict ordering within a
 * thread, uniqueness across threads; fs_random_bytes across its buffer's refills and for
 * requests larger than the buffer serves. */
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

/* 16-byte draws (a reply token's size) over several refills of the per-thread buffer, and
 * 1 KiB draws (straight from the kernel): no two equal, and every byte value turns up in
 * the 64 KiB drawn (a buffer handed out twice, or never filled, would fail one or both). */
static void test_random_bytes(void **state)
{
    (void)state;
    enum { N = 2048 };
    static uint8_t small[N][16];
    for (int i = 0; i < N; i++)
        assert_int_equal(fs_random_bytes(small[i], sizeof small[i]), 0);
    qsort(small, N, sizeof small[0], cmp);
    for (int i = 1; i < N; i++)
        assert_true(memcmp(small[i - 1], small[i], 16) != 0);
    static uint8_t big[32][1024];
    for (int i = 0; i < 32; i++)
        assert_int_equal(fs_random_bytes(big[i], sizeof big[i]), 0);
    for (int i = 1; i < 32; i++)
        assert_true(memcmp(big[i - 1], big[i], sizeof big[i]) != 0);
    int seen[256] = {0};
    for (int i = 0; i < 32; i++)
        for (size_t k = 0; k < sizeof big[i]; k++)
            seen[big[i][k]] = 1;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 16; k++)
            seen[small[i][k]] = 1;
    for (int v = 0; v < 256; v++)
        assert_true(seen[v]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_round_trip),
        cmocka_unit_test(test_strictly_increasing),
        cmocka_unit_test(test_unique_across_threads),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests_name("id", tests, NULL, NULL);
}
