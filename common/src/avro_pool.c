/* avro-c's memory from per-thread free lists (fs/avro_pool.h). */
#include "fs/avro_pool.h"

#include <avro.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NCLASS (FS_AVRO_POOL_MAX_CLASS / FS_AVRO_POOL_CLASS + 1) /* class c holds c * 16 bytes */

/* 16 bytes, so the block after it keeps malloc's alignment. */
typedef struct {
    size_t cls;  /* 1..NCLASS-1, or 0 for a large block */
    size_t size; /* a large block's size */
} header;
_Static_assert(sizeof(header) == 16, "the header keeps malloc's 16-byte alignment");

typedef struct block {
    struct block *next;
} block;

static __thread block *t_free[NCLASS];
static __thread size_t t_cached;
static __thread bool t_registered, t_exited;

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static bool installed;

static void on_thread_exit(void *unused)
{
    (void)unused;
    fs_avro_pool_drain();
    t_exited = true; /* what is freed after this goes straight back to glibc */
}

static void make_key(void)
{
    if (pthread_key_create(&exit_key, on_thread_exit))
        exit_key = (pthread_key_t)-1;
}

/* The thread's lists are drained at its exit only once a destructor is registered for it;
 * until then (or if registering fails) blocks go back to glibc. */
static bool may_cache(void)
{
    if (t_registered)
        return true;
    if (t_exited)
        return false;
    pthread_once(&exit_once, make_key);
    if (exit_key == (pthread_key_t)-1 || pthread_setspecific(exit_key, (void *)1))
        return false;
    t_registered = true;
    return true;
}

static size_t usable(const header *h)
{
    return h->cls ? h->cls * FS_AVRO_POOL_CLASS : h->size;
}

static void *take(size_t n)
{
    size_t cls = (n + FS_AVRO_POOL_CLASS - 1) / FS_AVRO_POOL_CLASS;
    if (cls < NCLASS && t_free[cls]) {
        block *b = t_free[cls];
        t_free[cls] = b->next;
        t_cached -= cls * FS_AVRO_POOL_CLASS;
        return b;
    }
    bool pooled = cls < NCLASS;
    if (n > SIZE_MAX - sizeof(header) - FS_AVRO_POOL_CLASS)
        return NULL;
    header *h = malloc(sizeof *h + (pooled ? cls * FS_AVRO_POOL_CLASS : n));
    if (!h)
        return NULL;
    h->cls = pooled ? cls : 0;
    h->size = pooled ? 0 : n;
    return h + 1;
}

static void give(void *p)
{
    header *h = (header *)p - 1;
    size_t bytes = h->cls * FS_AVRO_POOL_CLASS;
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
    size_t have = usable((header *)ptr - 1);
    if (nsize <= have)
        return ptr;
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
            free((header *)b - 1);
        }
    t_cached = 0;
}

bool fs_avro_pool_installed(void)
{
    return installed;
}

void fs_avro_pool_install(void)
{
#if !defined(__SANITIZE_ADDRESS__)
    const char *v = getenv("FLASHSALE_AVRO_POOL");
    if (v && (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
              !strcasecmp(v, "off")))
        return;
    avro_set_allocator(fs_avro_pool_alloc, NULL);
    installed = true;
#endif
}
