/* The transactional outbox (table `outbox`, created by flashsale-api's migrations): a change
 * in PostgreSQL and the events others must learn of it are written in ONE transaction; a
 * relay (flashsale-api) publishes unsent rows to Kafka and marks them sent. At least once:
 * consumers are idempotent by event id (header event-id) or by their own ids. */
#ifndef FS_OUTBOX_H
#define FS_OUTBOX_H
#include "fs/codec.h"
#include "fs/err.h"

#include <libpq-fe.h>

/* Adds an encoded record inside the caller's transaction on c. */
int fs_outbox_add(PGconn *c, const char *topic, const char *key, const char *event_type,
                  const void *payload, size_t len, fs_err *err);
/* Encodes value v of schema sc and adds it. */
int fs_outbox_add_value(PGconn *c, const char *topic, const char *key, const fs_schema *sc,
                        avro_value_t *v, fs_err *err);
/* A NotificationRequested for `notifications` (key: the member); email may be NULL (the
 * notifier looks it up); params: name, value pairs, NULL-terminated (may be NULL). */
int fs_outbox_notify(const fs_codec *codec, PGconn *c, const char *member_id, const char *email,
                     const char *kind, const char *const *params, fs_err *err);

#endif
