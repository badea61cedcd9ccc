/* A min-heap of things that come due: (time, partition, key). The services keep their
 * timers and their forgetting in it: the order saga's deadlines and ended orders, the
 * payment provider's remembered results. An entry is only a reminder: whoever pops it checks
 * that what it names is still due (the order may have moved on, the partition may have
 * left), so stale entries cost a pop and nothing else. Not thread-safe: one owner. */
#ifndef FS_DUEHEAP_H
#define FS_DUEHEAP_H
#include <stddef.h>
#include <stdint.h>

#define FS_DUE_KEY_MAX 96

typedef struct {
    int64_t due;
    int32_t partition;
    char key[FS_DUE_KEY_MAX];
} fs_due;

typedef struct {
    fs_due *v;
    size_t n, cap;
} fs_dueheap;

/* Adds an entry (a key longer than FS_DUE_KEY_MAX - 1 is cut). Returns 0, or -1 when out of
 * memory (nothing changed). */
int fs_dueheap_push(fs_dueheap *h, int64_t due, int32_t partition, const char *key);
/* The earliest entry, or NULL when the heap is empty. */
const fs_due *fs_dueheap_top(const fs_dueheap *h);
/* Removes and returns the earliest entry; the heap must not be empty. */
fs_due fs_dueheap_pop(fs_dueheap *h);
/* Empties the heap and gives back its memory (the heap stays usable). */
void fs_dueheap_clear(fs_dueheap *h);

#endif
