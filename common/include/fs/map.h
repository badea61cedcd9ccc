/* A string-keyed hash map (open addressing, linear probing, tombstones) holding void *
 * values. Keys are copied; values are not owned (the caller frees them, e.g. in an
 * fs_map_foreach before fs_map_destroy). Not thread-safe: one owner at a time. */
#ifndef FS_MAP_H
#define FS_MAP_H
#include <stddef.h>

typedef struct fs_map fs_map;

fs_map *fs_map_new(size_t expected);
void fs_map_destroy(fs_map *m); /* NULL-safe; does not free values */
void fs_map_destroy_free(fs_map *m); /* NULL-safe; free()s every value, then destroys */
void *fs_map_get(const fs_map *m, const char *key);
/* Inserts or replaces; returns the previous value (or NULL). Returns (void *)-1 when out
 * of memory (nothing changed). */
void *fs_map_put(fs_map *m, const char *key, void *value);
/* Removes; returns the removed value or NULL. */
void *fs_map_del(fs_map *m, const char *key);
size_t fs_map_size(const fs_map *m);
/* Calls fn for every entry, in no particular order. fn must not modify the map. */
void fs_map_foreach(const fs_map *m, void (*fn)(void *ctx, const char *key, void *value),
                    void *ctx);

#endif
