/* Open-addressing hash map; see fs/map.h. FNV-1a hashes; the table doubles at 70 % load
 * (live + tombstones) so probes stay short. Each slot keeps its key's hash beside the key
 * pointer, so a probe compares hashes in one array and follows a key pointer (a cache miss
 * in a large map) only when the hashes are equal. */
#include "fs/map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOMBSTONE ((char *)-1)

struct fs_map {
    char **keys;
    void **vals;
    uint64_t *hashes; /* hashes[i]: hash(keys[i]) for a live slot */
    size_t cap, live, used; /* used = live + tombstones */
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

fs_map *fs_map_new(size_t expected)
{
    fs_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    size_t cap = 16;
    while (cap < expected * 2)
        cap *= 2;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    m->hashes = calloc(cap, sizeof *m->hashes);
    if (!m->keys || !m->vals || !m->hashes) {
        free(m->keys);
        free(m->vals);
        free(m->hashes);
        free(m);
        return NULL;
    }
    m->cap = cap;
    return m;
}

void fs_map_destroy(fs_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] && m->keys[i] != TOMBSTONE)
            free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    free(m->hashes);
    free(m);
}

void fs_map_destroy_free(fs_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] && m->keys[i] != TOMBSTONE)
            free(m->vals[i]);
    fs_map_destroy(m);
}

static size_t find_h(const fs_map *m, const char *key, uint64_t h)
{
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    for (;;) {
        char *k = m->keys[i];
        if (!k)
            return (size_t)-1;
        if (k != TOMBSTONE && m->hashes[i] == h && !strcmp(k, key))
            return i;
        i = (i + 1) & mask;
    }
}

static size_t find(const fs_map *m, const char *key)
{
    return find_h(m, key, hash(key));
}

void *fs_map_get(const fs_map *m, const char *key)
{
    size_t i = find(m, key);
    return i == (size_t)-1 ? NULL : m->vals[i];
}

static int grow(fs_map *m)
{
    size_t cap = m->live * 4 > m->cap ? m->cap * 2 : m->cap; /* rehash drops tombstones */
    char **keys = calloc(cap, sizeof *keys);
    void **vals = calloc(cap, sizeof *vals);
    uint64_t *hashes = calloc(cap, sizeof *hashes);
    if (!keys || !vals || !hashes) {
        free(keys);
        free(vals);
        free(hashes);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        char *k = m->keys[i];
        if (!k || k == TOMBSTONE)
            continue;
        size_t j = (size_t)m->hashes[i] & (cap - 1);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = k;
        vals[j] = m->vals[i];
        hashes[j] = m->hashes[i];
    }
    free(m->keys);
    free(m->vals);
    free(m->hashes);
    m->keys = keys;
    m->vals = vals;
    m->hashes = hashes;
    m->cap = cap;
    m->used = m->live;
    return 0;
}

void *fs_map_put(fs_map *m, const char *key, void *value)
{
    uint64_t h = hash(key);
    size_t i = find_h(m, key, h);
    if (i != (size_t)-1) {
        void *old = m->vals[i];
        m->vals[i] = value;
        return old;
    }
    if ((m->used + 1) * 10 > m->cap * 7 && grow(m))
        return (void *)-1;
    char *k = strdup(key);
    if (!k)
        return (void *)-1;
    size_t mask = m->cap - 1;
    i = (size_t)h & mask;
    while (m->keys[i] && m->keys[i] != TOMBSTONE)
        i = (i + 1) & mask;
    if (!m->keys[i])
        m->used++;
    m->keys[i] = k;
    m->vals[i] = value;
    m->hashes[i] = h;
    m->live++;
    return NULL;
}

void *fs_map_del(fs_map *m, const char *key)
{
    size_t i = find(m, key);
    if (i == (size_t)-1)
        return NULL;
    void *v = m->vals[i];
    free(m->keys[i]);
    m->keys[i] = TOMBSTONE;
    m->vals[i] = NULL;
    m->live--;
    return v;
}

size_t fs_map_size(const fs_map *m)
{
    return m->live;
}

void fs_map_foreach(const fs_map *m, void (*fn)(void *ctx, const char *key, void *value),
                    void *ctx)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] && m->keys[i] != TOMBSTONE)
            fn(ctx, m->keys[i], m->vals[i]);
}
