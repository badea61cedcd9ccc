/* The outbox relay of flashsale-api: one thread that publishes unsent rows of the `outbox`
 * table (fs/outbox.h; written by member_store.c in the transaction of each change) to
 * Kafka in id order, waits for the broker's acknowledgement of every record (acks=all),
 * then deletes the rows in the same transaction. FOR UPDATE SKIP LOCKED lets several API
 * instances share the work without sending a row twice at once. A broker outage leaves the
 * rows in the table (retried every second); a crash between the acknowledgement and the
 * commit sends them again: consumers are idempotent by event id. */
#ifndef FS_API_OUTBOX_RELAY_H
#define FS_API_OUTBOX_RELAY_H
#include "fs/config.h"
#include "fs/err.h"

typedef struct api_relay api_relay;

/* Starts the thread (its own PostgreSQL connection and producer, made by the thread and
 * remade after failures). cfg must outlive the relay. NULL with *err when the thread
 * cannot start. */
api_relay *api_relay_start(const fs_common_config *cfg, fs_err *err);
/* Wakes the relay (after a commit that added to the outbox). Any thread. */
void api_relay_kick(api_relay *r);
/* Stops the thread (the producer flushes for up to 5 s), frees the relay. Accepts NULL. */
void api_relay_stop(api_relay *r);

#endif
