/* The transactional outbox (table `outbox`, created by flashsale-api's migrations): a change
 * in PostgreSQL and the events others must learn of it are written in ONE transaction; a
 * relay (flashsale-api) publishes unsent rows to Kafka and marks them sent. At least once:
 * consumers are idempotent by event id (header event-id) or by their own ids. */
#ifndef FS_OUTBOX_H
#define FS_OUTBOX_H
#include "fs/err.h"

#include <libpq-fe.h>

/* Adds an encoded record inside the caller's transaction on c. */
int fs_outbox_add(PGconn *c, const char *topic, const char *key, const char *event_type,
                  const void *payload, size_t len, fs_err *err);
/* (The records themselves are encoded by the domain's codecs, flashsale/messages.h:
 * mem_event_encode, fs_notification_new_bytes.) */

#endif
