/* Schema of the PostgreSQL read model: versioned migrations (pg_schema.c). */
#ifndef PG_SCHEMA_H
#define PG_SCHEMA_H
#include "fs/err.h"
#include <libpq-fe.h>

/* Applies the missing migrations, each in its own transaction. Returns 0 or -1 with *err. */
int pg_schema_migrate(PGconn *c, fs_err *err);

#endif
