/* UUIDv7: layout (version, variant, timestamp), text round trip, strict ordering within a
 * thread, uniqueness across threads; fs_random_bytes across its buffer's refills, for
 * requests larger than the buffer serves, and across a fork. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/id.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* 16-byte draws (a reply token's size) over many refills of the per-thread buffer, and
 * 1 KiB draws (straight from the kernel). No two 8-byte aligned pieces of all that was drawn
 * are equal, which a buffer handed out twice, never filled, or handed out overlapping (the
 * position advanced by less than a draw) would break; and the small draws alone show every
 * byte value (a buffer of zeros or of a few values would not). */
static int cmp64(const void *a, const void *b)
{
    uint64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    return x < y ? -1 : x > y;
}

static void test_random_bytes(void **state)
{
    (void)state;
    enum { N = 2048, BIG = 32 };
    static uint8_t small[N][16], big[BIG][1024];
    for (int i = 0; i < N; i++)
        assert_int_equal(fs_random_bytes(small[i], sizeof small[i]), 0);
    for (int i = 0; i < BIG; i++)
        assert_int_equal(fs_random_bytes(big[i], sizeof big[i]), 0);
    int seen[256] = {0};
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 16; k++)
            seen[small[i][k]] = 1;
    for (int v = 0; v < 256; v++)
        assert_true(seen[v]);
    static uint64_t pieces[(sizeof small + sizeof big) / 8];
    memcpy(pieces, small, sizeof small);
    memcpy((uint8_t *)pieces + sizeof small, big, sizeof big);
    size_t np = sizeof pieces / sizeof pieces[0];
    qsort(pieces, np, sizeof pieces[0], cmp64);
    for (size_t i = 1; i < np; i++)
        assert_true(pieces[i - 1] != pieces[i]);
}

/* A child forked with bytes left in the parent's buffer does not get the parent's next
 * bytes: without the fork handler both would draw the same 16. Four forks in a row: the
 * buffer can run out exactly at a fork at most once in four (16 draws of 16 bytes per
 * refill), so without the handler at least three would match. */
static void test_random_bytes_fork(void **state)
{
    (void)state;
    uint8_t first[16];
    assert_int_equal(fs_random_bytes(first, sizeof first), 0); /* the buffer is filled now */
    for (int round = 0; round < 4; round++) {
        uint8_t parent[16], child[16];
        int fd[2];
        assert_int_equal(pipe(fd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            uint8_t got[16];
            ssize_t w = fs_random_bytes(got, sizeof got) ? -1 : write(fd[1], got, sizeof got);
            _exit(w == (ssize_t)sizeof got ? 0 : 1);
        }
        close(fd[1]);
        assert_int_equal(fs_random_bytes(parent, sizeof parent), 0);
        assert_int_equal(read(fd[0], child, sizeof child), (ssize_t)sizeof child);
        close(fd[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_true(memcmp(parent, child, sizeof parent) != 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_round_trip),
        cmocka_unit_test(test_strictly_increasing),
        cmocka_unit_test(test_unique_across_threads),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_random_bytes_fork),
    };
    return cmocka_run_group_tests_name("id", tests, NULL, NULL);
}
