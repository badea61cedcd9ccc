/* UUIDv7: layout (version, variant, timestamp), text round trip, strict ordering within a
 * thread, uniqueness across threads; ids drawn until a test takes them, and ids that land in
 * a key's Kafka partition (fs/kafka.h), with the partitioner checked against Java's murmur2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/id.h"
#include "fs/kafka.h"

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

static int ends_in_zero(const char *id, void *ctx)
{
    (*(int *)ctx)++;
    return id[FS_UUID_STR_LEN - 1] == '0';
}

static int never(const char *id, void *ctx)
{
    (void)id;
    (*(int *)ctx)++;
    return 0;
}

static void test_such_that(void **state)
{
    (void)state;
    char prev[FS_UUID_STR_LEN + 1], s[FS_UUID_STR_LEN + 1];
    assert_int_equal(fs_uuid7_str(prev), 0);
    for (int i = 0; i < 200; i++) {
        int calls = 0;
        assert_int_equal(fs_uuid7_str_such_that(s, ends_in_zero, &calls, 10000), 1);
        assert_int_equal(s[FS_UUID_STR_LEN - 1], '0');
        assert_true(calls >= 1);
        fs_uuid u;
        assert_int_equal(fs_uuid_parse(s, &u), 0);
        assert_int_equal(u.b[6] >> 4, 7);    /* still version 7 */
        assert_int_equal(u.b[8] >> 6, 2);    /* and variant 10 */
        assert_true(strcmp(prev, s) < 0); /* still increasing */
        memcpy(prev, s, sizeof s);
    }
    int calls = 0;
    assert_int_equal(fs_uuid7_str_such_that(s, never, &calls, 5), 0);
    assert_int_equal(calls, 5);
    assert_int_equal(fs_uuid_parse(s, &(fs_uuid){{0}}), 0); /* a valid id all the same */
    assert_true(strcmp(prev, s) < 0);
}

/* Kafka's own test vectors for Utils.murmur2 (the Java client's default partitioner):
 * partition = (hash & 0x7fffffff) % partitions, so INT32_MAX partitions show the hash. */
static void test_key_partition(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        int32_t hash;
    } v[] = {{"21", -973932308},
             {"foobar", -790332482},
             {"a-little-bit-long-string", -985981536},
             {"a-little-bit-longer-string", -1486304829},
             {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
             {"abc", 479470107}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        int32_t want = (int32_t)((uint32_t)v[i].hash & 0x7fffffffu);
        assert_int_equal(fs_kafka_key_partition(v[i].key, strlen(v[i].key), INT32_MAX), want);
        assert_int_equal(fs_kafka_key_partition(v[i].key, strlen(v[i].key), 6), want % 6);
    }
}

static void test_copartitioned_id(void **state)
{
    (void)state;
    const char *products[] = {"p-1", "0190f3a2-7c1e-7d2a-9b3c-aa00bb11cc22", "x"};
    for (int32_t n = 1; n <= 12; n++)
        for (size_t k = 0; k < 3; k++)
            for (int i = 0; i < 20; i++) {
                char id[FS_UUID_STR_LEN + 1];
                assert_int_equal(fs_kafka_copartitioned_id(id, products[k], n), 1);
                assert_int_equal(fs_kafka_key_partition(id, strlen(id), n),
                                 fs_kafka_key_partition(products[k], strlen(products[k]), n));
                assert_true(fs_uuid7_str_millis(id) > 0);
            }
    char id[FS_UUID_STR_LEN + 1];
    assert_int_equal(fs_kafka_copartitioned_id(id, "p-1", 0), 0); /* no count: any new id */
    assert_true(fs_uuid7_str_millis(id) > 0);
    assert_int_equal(fs_kafka_copartitioned_id(id, "", 6), 0);
    assert_true(fs_uuid7_str_millis(id) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_round_trip),
        cmocka_unit_test(test_strictly_increasing),
        cmocka_unit_test(test_unique_across_threads),
        cmocka_unit_test(test_such_that),
        cmocka_unit_test(test_key_partition),
        cmocka_unit_test(test_copartitioned_id),
    };
    return cmocka_run_group_tests_name("id", tests, NULL, NULL);
}
