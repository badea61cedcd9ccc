/* The Avro schemas of schemas/ embedded at build time (see schemas/embed.cmake).
 * Paths are relative to schemas/, e.g. "inventory/ReserveStock.avsc". A file named
 * Name.vN.avsc is an older version kept so records written with it still decode. */
#ifndef FS_SCHEMAS_H
#define FS_SCHEMAS_H
#include <stddef.h>

typedef struct {
    const char *path; /* relative to schemas/ */
    const char *json; /* NUL-terminated schema text */
} fs_embedded_schema;

extern const fs_embedded_schema fs_embedded_schemas[];
extern const size_t fs_embedded_schemas_count;

#endif
