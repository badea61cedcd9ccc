/* fs_avro_pool: a freed block comes back to the next request of its class on the same thread,
 * resizing keeps the contents, large blocks and blocks over a thread's cap go back to glibc,
 * a block freed on another thread joins that thread's lists, an exiting thread's lists are
 * given back, and the pool is avro-c's allocator when it should be (orders of 1 to 16 lines
 * encoded and decoded through it come back equal); a FLASHSALE_AVRO_POOL that is not a
 * boolean stops the codec from starting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "flashsale/order.h"

#include "fs/avro_pool.h"
#include "fs/codec.h"
#include "fs/config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define H ((size_t)FS_AVRO_POOL_HEADER)

static void *pool(void *p, size_t osize, size_t nsize)
{
    return fs_avro_pool_alloc(NULL, p, osize, nsize);
}

static void test_reuse_per_class(void **state)
{
    (void)state;
    fs_avro_pool_drain();
    char *a = pool(NULL, 0, 100);
    assert_non_null(a);
    assert_int_equal((uintptr_t)a % 16, 0);
    memset(a, 'x', 100);
    assert_null(pool(a, 100, 0));
    assert_int_equal(fs_avro_pool_cached(), H + 112); /* 100 rounded up to its class */
    char *b = pool(NULL, 0, 97); /* same class (97..112) */
    assert_ptr_equal(a, b);
    assert_int_equal(fs_avro_pool_cached(), 0);
    pool(b, 97, 0);
    char *c = pool(NULL, 0, 113); /* the next class: not the cached block */
    assert_non_null(c);
    assert_ptr_not_equal(b, c);
    assert_int_equal(fs_avro_pool_cached(), H + 112);
    pool(c, 113, 0);
    assert_int_equal(fs_avro_pool_cached(), H + 112 + H + 128);
    fs_avro_pool_drain();
    assert_int_equal(fs_avro_pool_cached(), 0);
}

static void test_resize_keeps_contents(void **state)
{
    (void)state;
    fs_avro_pool_drain();
    unsigned char *p = pool(NULL, 0, 10);
    for (int i = 0; i < 10; i++)
        p[i] = (unsigned char)i;
    unsigned char *q = pool(p, 10, 16); /* fits its block: the same pointer */
    assert_ptr_equal(p, q);
    q = pool(q, 16, 1000); /* a bigger class */
    assert_non_null(q);
    for (int i = 0; i < 10; i++)
        assert_int_equal(q[i], i);
    memset(q + 10, 0xab, 990);
    unsigned char *r = pool(q, 1000, 100000); /* a large block */
    assert_non_null(r);
    for (int i = 0; i < 10; i++)
        assert_int_equal(r[i], i);
    for (int i = 10; i < 1000; i++)
        assert_int_equal(r[i], 0xab);
    memset(r + 1000, 0xcd, 99000);
    unsigned char *s = pool(r, 100000, 50000); /* shrinking a large block keeps it */
    assert_ptr_equal(r, s);
    s = pool(s, 50000, 200000); /* large to larger */
    assert_non_null(s);
    assert_int_equal(s[999], 0xab);
    assert_int_equal(s[49999], 0xcd);
    size_t before = fs_avro_pool_cached();
    pool(s, 200000, 0); /* large blocks are not cached */
    assert_int_equal(fs_avro_pool_cached(), before);
    assert_null(pool(NULL, 0, SIZE_MAX - 8)); /* too large: NULL, no overflow */
    fs_avro_pool_drain();
}

static void test_thread_cap(void **state)
{
    (void)state;
    fs_avro_pool_drain();
    enum { N = FS_AVRO_POOL_THREAD_BYTES / FS_AVRO_POOL_MAX_CLASS + 20 };
    static void *v[N];
    for (int i = 0; i < N; i++)
        assert_non_null(v[i] = pool(NULL, 0, FS_AVRO_POOL_MAX_CLASS));
    for (int i = 0; i < N; i++)
        pool(v[i], FS_AVRO_POOL_MAX_CLASS, 0);
    size_t one = H + FS_AVRO_POOL_MAX_CLASS; /* the cap counts headers too */
    assert_int_equal(fs_avro_pool_cached(), FS_AVRO_POOL_THREAD_BYTES / one * one);
    fs_avro_pool_drain();
}

/* A key made after the pool's: glibc (not POSIX) runs destructors in the order of their keys'
 * indexes, and gives a new key the lowest free one, so this one runs after the pool's. Were
 * that order to change, the test would fail, not pass falsely. */
static pthread_key_t later_key;
static size_t cached_at_exit = (size_t)-1, cached_after_late_free = (size_t)-1;

static void later_destructor(void *block)
{
    cached_at_exit = fs_avro_pool_cached(); /* the pool's destructor drained the lists */
    pool(block, 0, 0); /* freed after that: straight back to glibc, not to a list */
    cached_after_late_free = fs_avro_pool_cached();
}

static void *alloc_and_exit(void *arg)
{
    void **out = arg;
    void *keep[64];
    for (int i = 0; i < 64; i++)
        keep[i] = pool(NULL, 0, 48 + (size_t)i * 16);
    for (int i = 0; i < 64; i++)
        pool(keep[i], 0, 0);
    *out = pool(NULL, 0, 200); /* handed to the main thread */
    pthread_setspecific(later_key, pool(NULL, 0, 64));
    return (void *)fs_avro_pool_cached();
}

static void test_threads(void **state)
{
    (void)state;
    pool(pool(NULL, 0, 16), 0, 0); /* the pool's key exists before later_key */
    fs_avro_pool_drain();
    assert_int_equal(pthread_key_create(&later_key, later_destructor), 0);
    pthread_t t;
    void *handed = NULL, *cached = NULL;
    assert_int_equal(pthread_create(&t, NULL, alloc_and_exit, &handed), 0);
    assert_int_equal(pthread_join(t, &cached), 0);
    /* its lists held the 64 blocks (48, 64, ... 1056 bytes, each with its header) but the
     * two it took back; its exit emptied them, and a block freed by a later destructor was
     * not cached (LeakSanitizer would also see it) */
    assert_int_equal((size_t)cached, 35328 + 64 * H - (H + 208) - (H + 64));
    assert_int_equal(cached_at_exit, 0);
    assert_int_equal(cached_after_late_free, 0);
    pool(handed, 0, 0); /* freed here: it joins this thread's lists */
    assert_int_equal(fs_avro_pool_cached(), H + 208);
    fs_avro_pool_drain();
    pthread_key_delete(later_key);
}

#if FS_AVRO_POOL_BUILT
static bool pool_wanted(void)
{
    bool on = true;
    fs_err err = {0};
    return fs_env_bool("FLASHSALE_AVRO_POOL", true, &on, &err) == 0 && on;
}
#endif

static void test_avro_allocator(void **state)
{
    (void)state;
#if !FS_AVRO_POOL_BUILT
    assert_false(fs_avro_pool_installed());
#else
    assert_int_equal(fs_avro_pool_installed(), pool_wanted());
#endif
    fs_err err = {0};
    fs_codec *c = fs_codec_new(&err);
    assert_non_null(c);
    size_t cached_before = fs_avro_pool_cached();
    static ord_order o, back;
    for (int round = 0; round < 50; round++) { /* orders of 1 to 16 lines: arrays regrown */
        memset(&o, 0, sizeof o);
        snprintf(o.order_id, sizeof o.order_id, "order-%d", round);
        snprintf(o.member_id, sizeof o.member_id, "member-%d", round * 7);
        o.status = ORD_RESERVED;
        o.previous = ORD_PENDING;
        o.pay_by = round % 2 ? 1700000000000 + round : 0;
        o.amount = 1000 + round;
        o.occurred_at = 1700000000000 + round;
        o.nlines = round % ORD_MAX_LINES + 1;
        for (int i = 0; i < o.nlines; i++) {
            snprintf(o.lines[i].product_id, sizeof o.lines[i].product_id, "p-%d-%d", round, i);
            o.lines[i].quantity = i + 1;
            o.lines[i].unit_price = 100 * (i + 1);
            o.lines[i].state = LINE_RESERVED;
        }
        void *buf = NULL;
        size_t len = 0;
        assert_int_equal(ord_encode(c, &o, &buf, &len, &err), 0);
        const fs_schema *got = NULL;
        avro_value_t v;
        assert_int_equal(fs_codec_decode(c, buf, len, &got, &v, &err), 0);
        free(buf);
        assert_int_equal(ord_decode(&v, &back, &err), 0);
        avro_value_decref(&v);
        assert_string_equal(back.order_id, o.order_id);
        assert_string_equal(back.member_id, o.member_id);
        assert_int_equal(back.pay_by, o.pay_by);
        assert_int_equal(back.amount, o.amount);
        assert_int_equal(back.nlines, o.nlines);
        for (int i = 0; i < o.nlines; i++) {
            assert_string_equal(back.lines[i].product_id, o.lines[i].product_id);
            assert_int_equal(back.lines[i].quantity, o.lines[i].quantity);
            assert_int_equal(back.lines[i].unit_price, o.lines[i].unit_price);
        }
    }
    if (fs_avro_pool_installed()) /* the values' memory went back to this thread's lists */
        assert_true(fs_avro_pool_cached() > cached_before);
    fs_codec_destroy(c);
    fs_avro_pool_drain();
}

static const char *self; /* argv[0]: under valgrind /proc/self/exe is valgrind's */

/* Runs this program again with FLASHSALE_AVRO_POOL=value and "--codec-new"; returns its
 * exit status, its output in out. */
static int run_with(const char *value, char *out, size_t n)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        setenv("FLASHSALE_AVRO_POOL", value, 1);
        execl(self, self, "--codec-new", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < n && (r = read(fd[0], out + got, n - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(fd[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_bad_setting_stops_the_codec(void **state)
{
    (void)state;
    char out[512];
    assert_int_equal(run_with("maybe", out, sizeof out), 3);
    assert_non_null(strstr(out, "FLASHSALE_AVRO_POOL=\"maybe\": must be a boolean"));
    assert_int_equal(run_with("off", out, sizeof out), 0);
    assert_string_equal(out, "installed 0\n");
    assert_int_equal(run_with("yes", out, sizeof out), 0);
    assert_string_equal(out, FS_AVRO_POOL_BUILT ? "installed 1\n" : "installed 0\n");
}

int main(int argc, char **argv)
{
    self = argv[0];
    if (argc > 1 && !strcmp(argv[1], "--codec-new")) { /* run_with's child */
        fs_err err = {0};
        fs_codec *c = fs_codec_new(&err);
        if (!c) {
            printf("%s\n", err.msg);
            return 3;
        }
        fs_codec_destroy(c);
        printf("installed %d\n", fs_avro_pool_installed());
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_per_class), cmocka_unit_test(test_resize_keeps_contents),
        cmocka_unit_test(test_thread_cap),      cmocka_unit_test(test_threads),
        cmocka_unit_test(test_avro_allocator),  cmocka_unit_test(test_bad_setting_stops_the_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
