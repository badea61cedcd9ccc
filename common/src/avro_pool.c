/* avro-c's memory from per-thread free lists (fs/avro_pool.h). */
#include "fs/avro_pool.h"
#include "fs/config.h"

#include <avro.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NCLASS (FS_AVRO_POOL_MAX_CLASS / FS_AVRO_POOL_CLASS + 1) /* class c holds c * 16 bytes */

/* Before each block: its class, or for a large block its size; as aligned as malloc's. */
typedef struct {
    _Alignas(max_align_t) size_t cls; /* 1..NCLASS-1, or 0 for a large block */
    size_t size;                      /* a large block's size */
} header;
_Static_assert(sizeof(header) == FS_AVRO_POOL_HEADER, "the header is FS_AVRO_POOL_HEADER bytes");

typedef struct block {
    struct block *next;
} block;

static __thread block *t_free[NCLASS];
static __thread size_t t_cached;
static __thread bool t_registered, t_exited;

static pthread_key_t exit_key;
static bool exit_key_ok;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static bool installed;
static fs_err config_err; /* FLASHSALE_AVRO_POOL's value, if it was not a boolean */

static void on_thread_exit(void *unused)
{
    (void)unused;
    fs_avro_pool_drain();
    t_exited = true; /* what is freed after this (another key's destructor) goes to glibc */
}

static void make_key(void)
{
    exit_key_ok = pthread_key_create(&exit_key, on_thread_exit) == 0;
}

/* A thread's lists are drained at its exit only once a destructor is registered for it;
 * until then (if registering fails), and after it ran, blocks go back to glibc. */
static bool may_cache(void)
{
    if (t_exited)
        return false;
    if (t_registered)
        return true;
    pthread_once(&exit_once, make_key);
    if (!exit_key_ok || pthread_setspecific(exit_key, (void *)1))
        return false;
    t_registered = true;
    return true;
}

static header *head_of(void *p)
{
    return (header *)p - 1;
}

static size_t usable(const header *h)
{
    return h->cls ? h->cls * FS_AVRO_POOL_CLASS : h->size;
}

static void *take(size_t n)
{
    if (n > FS_AVRO_POOL_MAX_CLASS) {
        if (n > SIZE_MAX - sizeof(header))
            return NULL;
        header *h = malloc(sizeof *h + n);
        if (!h)
            return NULL;
        h->cls = 0;
        h->size = n;
        return h + 1;
    }
    size_t cls = (n + FS_AVRO_POOL_CLASS - 1) / FS_AVRO_POOL_CLASS;
    if (t_free[cls]) {
        block *b = t_free[cls];
        t_free[cls] = b->next;
        t_cached -= cls * FS_AVRO_POOL_CLASS + sizeof(header);
        return b;
    }
    header *h = malloc(sizeof *h + cls * FS_AVRO_POOL_CLASS);
    if (!h)
        return NULL;
    h->cls = cls;
    h->size = 0;
    return h + 1;
}

static void give(void *p)
{
    header *h = head_of(p);
    size_t bytes = h->cls * FS_AVRO_POOL_CLASS + sizeof(header);
    if (h->cls && t_cached + bytes <= FS_AVRO_POOL_THREAD_BYTES && may_cache()) {
        block *b = p;
        b->next = t_free[h->cls];
        t_free[h->cls] = b;
        t_cached += bytes;
        return;
    }
    free(h);
}

void *fs_avro_pool_alloc(void *user_data, void *ptr, size_t osize, size_t nsize)
{
    (void)user_data;
    (void)osize;
    if (nsize == 0) {
        if (ptr)
            give(ptr);
        return NULL;
    }
    if (!ptr)
        return take(nsize);
    header *h = head_of(ptr);
    size_t have = usable(h);
    if (nsize <= have)
        return ptr;
    if (!h->cls) { /* large to larger: glibc may grow it in place */
        if (nsize > SIZE_MAX - sizeof(header))
            return NULL;
        header *g = realloc(h, sizeof *g + nsize);
        if (!g)
            return NULL;
        g->size = nsize;
        return g + 1;
    }
    void *n = take(nsize);
    if (!n)
        return NULL; /* as realloc: the old block stays the caller's */
    memcpy(n, ptr, have);
    give(ptr);
    return n;
}

size_t fs_avro_pool_cached(void)
{
    return t_cached;
}

void fs_avro_pool_drain(void)
{
    for (int c = 1; c < NCLASS; c++)
        while (t_free[c]) {
            block *b = t_free[c];
            t_free[c] = b->next;
            free(head_of(b));
        }
    t_cached = 0;
}

bool fs_avro_pool_installed(void)
{
    return installed;
}

void fs_avro_pool_install(void)
{
    bool on = true;
    if (fs_env_bool("FLASHSALE_AVRO_POOL", true, &on, &config_err) || !on)
        return; /* a bad value: left off, and fs_avro_pool_check reports it */
#if FS_AVRO_POOL_BUILT
    avro_set_allocator(fs_avro_pool_alloc, NULL);
    installed = true;
#endif
}

int fs_avro_pool_check(fs_err *err)
{
    if (!config_err.msg[0])
        return 0;
    *err = config_err;
    return -1;
}
