/* Outbox rows; see fs/outbox.h. */
#include "fs/outbox.h"

#include "fs/id.h"
#include "fs/kafka.h"

#include <stdio.h>
#include <stdlib.h>

int fs_outbox_add(PGconn *c, const char *topic, const char *key, const char *event_type,
                  const void *payload, size_t len, fs_err *err)
{
    char eid[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(eid);
    const char *v[] = {topic, key, event_type, eid, payload};
    int lens[] = {0, 0, 0, 0, (int)len};
    int fmts[] = {0, 0, 0, 0, 1};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO outbox (topic, key, event_type, event_id, payload)"
                               " VALUES ($1, $2, $3, $4, $5)",
                               5, NULL, v, lens, fmts, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : fs_err_from_pg(err, c, r, "outbox");
    PQclear(r);
    return rc;
}
