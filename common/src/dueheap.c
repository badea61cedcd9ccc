/* Binary min-heap on `due`; see fs/dueheap.h. */
#include "fs/dueheap.h"

#include <stdio.h>
#include <stdlib.h>

int fs_dueheap_push(fs_dueheap *h, int64_t due, int32_t partition, const char *key)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        fs_due *v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return -1;
        h->v = v;
        h->cap = cap;
    }
    fs_due e = {.due = due, .partition = partition};
    snprintf(e.key, sizeof e.key, "%s", key);
    size_t i = h->n++;
    while (i > 0 && h->v[(i - 1) / 2].due > due) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = e;
    return 0;
}

const fs_due *fs_dueheap_top(const fs_dueheap *h)
{
    return h->n ? &h->v[0] : NULL;
}

fs_due fs_dueheap_pop(fs_dueheap *h)
{
    fs_due top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->v[c + 1].due < h->v[c].due)
            c++;
        if (h->v[c].due >= last.due)
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    /* a heap that has emptied out after a peak gives its memory back */
    if (h->cap > 4096 && h->n < h->cap / 8) {
        fs_due *v = realloc(h->v, h->cap / 2 * sizeof *v);
        if (v) {
            h->v = v;
            h->cap /= 2;
        }
    }
    return top;
}

void fs_dueheap_clear(fs_dueheap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
