/* Following a log: read partitions of topics, read_committed, from given offsets on, and
 * know when the reading has caught up.
 *
 * "Caught up" means: in every partition, the reader has passed the high watermark the
 * partition had when the follower started (the end), so everything committed before the
 * follower started has been handed over. The end is the high watermark (from a
 * read_uncommitted probe), not the last stable offset: a read_committed handle's own
 * lookups answer the LSO, which stops short of an open transaction whose records may yet
 * commit; the follower waits for such a transaction to end before it says caught up.
 *
 * After catching up it goes on following (the API's decision stream, the projectors, the
 * wishlist watcher); fs_kafka_read_to_end stops there (rebuilding state from a changelog).
 * One thread uses a follower at a time. */
#ifndef FS_FOLLOW_H
#define FS_FOLLOW_H
#include "fs/config.h"
#include "fs/err.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct fs_follower fs_follower;

/* Starts following the partitions of `from` at their offsets (RD_KAFKA_OFFSET_BEGINNING or
 * any offset below the low watermark: the low watermark; RD_KAFKA_OFFSET_END: the end). extra: more librdkafka settings
 * of the reader (name/value pairs, NULL-terminated; may be NULL), e.g. larger fetches.
 * Looking the ends up is retried for up to timeout_ms. Returns NULL with *err. */
fs_follower *fs_follower_new(const fs_common_config *cfg, const char *client_id,
                             const rd_kafka_topic_partition_list_t *from,
                             const char *const *extra, int timeout_ms, fs_err *err);
void fs_follower_destroy(fs_follower *f); /* NULL-safe */

/* The next record, which the caller destroys; NULL when none came within timeout_ms.
 * Reaching the end of a partition and transient errors are handled here (errors logged). */
rd_kafka_message_t *fs_follower_poll(fs_follower *f, int timeout_ms);

bool fs_follower_caught_up(const fs_follower *f);
/* Caught up, and at this moment at the end of every partition: each one's last news was
 * its end, not a record (so nothing is known to be left to read). */
bool fs_follower_at_end(const fs_follower *f);
/* Partitions not caught up yet. */
int fs_follower_remaining(const fs_follower *f);
/* The end (high watermark at start) of a partition followed, or -1 if it is not followed. */
int64_t fs_follower_end(const fs_follower *f, const char *topic, int32_t partition);
/* Whether a record lies before its partition's end: part of what was there at start. */
bool fs_follower_before_end(const fs_follower *f, const rd_kafka_message_t *m);

#endif
