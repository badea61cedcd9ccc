/* avro-c's memory from per-thread free lists.
 *
 * Every Avro value flashsale encodes or decodes is a fresh generic value: its record, its
 * strings and its arrays are allocated and freed again for each record (a snapshot's lines
 * array alone asks for ~1.2 KB, a request glibc serves by first consolidating its fastbins).
 * avro-c routes all of its allocations through one function (avro_set_allocator); this pool
 * is that function. Blocks of up to FS_AVRO_POOL_MAX_CLASS bytes, in 16-byte classes, go
 * back to a free list of the thread that frees them and are handed out again from it, with
 * no lock and no trip through glibc's bins. Larger blocks, and blocks beyond a thread's
 * FS_AVRO_POOL_THREAD_BYTES of cached memory (headers counted), go straight back to glibc.
 * When a thread other than the main one exits, its lists are given back to glibc (a pthread
 * key's destructor; what that thread frees afterwards goes straight back too). The main
 * thread's lists last as long as the process.
 *
 * Each block carries a header with its class (or, for a large block, its size), so the pool
 * never trusts the size avro-c passes back, and keeps malloc's alignment.
 *
 * Installed before main() in every program that links the codec (a constructor in codec.c
 * calls fs_avro_pool_install), unless FLASHSALE_AVRO_POOL is 0, false, no or off (a value
 * that is not a boolean stops the codec from starting: fs_avro_pool_check). Never in the
 * sanitizer and fuzz builds (CMake defines FS_NO_AVRO_POOL there): ASan must see each of
 * avro-c's blocks to catch a use after free or an overflow into a block's rounding. The
 * valgrind tests set FLASHSALE_AVRO_POOL=0 for the same reason. The unit test drives the
 * functions below directly. */
#ifndef FS_AVRO_POOL_H
#define FS_AVRO_POOL_H
#include "fs/err.h"

#include <stdbool.h>
#include <stddef.h>

#if defined(FS_NO_AVRO_POOL) || defined(__SANITIZE_ADDRESS__)
#define FS_AVRO_POOL_BUILT 0
#else
#define FS_AVRO_POOL_BUILT 1
#endif

#define FS_AVRO_POOL_CLASS 16
#define FS_AVRO_POOL_MAX_CLASS 4096
#define FS_AVRO_POOL_HEADER 16 /* bytes before each block */
/* A thread's lists hold at most this much, blocks and headers counted */
#define FS_AVRO_POOL_THREAD_BYTES (256 * 1024)

/* avro-c's allocator signature: ptr NULL allocates nsize bytes; nsize 0 frees ptr (returns
 * NULL); otherwise resizes ptr to nsize, keeping its first min(old, nsize) bytes. osize is
 * ignored (the block's header knows its size). Returns NULL when out of memory (a failed
 * resize leaves ptr as it was). */
void *fs_avro_pool_alloc(void *user_data, void *ptr, size_t osize, size_t nsize);
/* Bytes the calling thread's free lists hold, headers included. */
size_t fs_avro_pool_cached(void);
/* Gives the calling thread's free lists back to glibc. */
void fs_avro_pool_drain(void);
/* Makes the pool avro-c's allocator, unless FLASHSALE_AVRO_POOL says no or the build has no
 * pool (FS_AVRO_POOL_BUILT 0). Must run before avro-c allocates anything (a block from
 * another allocator would be freed as one of the pool's): codec.c calls it before main().
 * A value that is not a boolean (as fs_env_bool reads one) leaves the pool off. */
void fs_avro_pool_install(void);
/* -1 with *err (FS_ERR_INVALID, naming the variable, its value and the rule) if
 * FLASHSALE_AVRO_POOL held something other than a boolean; fs_codec_new fails with it, so a
 * service stops at start as with any other bad setting. */
int fs_avro_pool_check(fs_err *err);
/* Whether the pool was installed as avro-c's allocator in this process. */
bool fs_avro_pool_installed(void);

#endif
