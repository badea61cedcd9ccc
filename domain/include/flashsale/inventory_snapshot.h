/* Snapshots of inventory partitions in the compacted topic inventory.snapshots, so that a
 * processor taking over a partition, and the API starting, read a snapshot and the changelog
 * after it instead of the whole history.
 *
 * A snapshot of partition P goes to partition P of inventory.snapshots, inside the
 * processor's transaction, as consecutive records: chunks of inv_state_save()'s bytes
 * (key "chunk-<i>", value "FSSC", u64 id, u32 index, u32 count, bytes) and then a manifest
 * (key "manifest", JSON: id, chunks, bytes, changelog_offset, last_command_offset, horizon).
 * It commits only with every event it reflects (docs/architecture.md, "Bounded state").
 *
 * changelog_offset is a lower bound of the offset in inventory.events of the first event the
 * snapshot does not reflect: the high watermark of the changelog partition when the
 * snapshot was cut (every event the state does not hold is produced after that). A reader loads the state and replays the changelog from there, skipping
 * events whose command_offset is at most the snapshot's last_command_offset (those it
 * already holds: one command, one event, in command order).
 *
 * A snapshot is a cache: a reader that finds none, or one it cannot read, replays the whole
 * changelog. */
#ifndef FLASHSALE_INVENTORY_SNAPSHOT_H
#define FLASHSALE_INVENTORY_SNAPSHOT_H
#include "flashsale/inventory.h"

#include "fs/config.h"
#include "fs/err.h"

#include <stddef.h>
#include <stdint.h>

#define INV_SNAPSHOT_CHUNK (512 * 1024)

/* Produces one record (called for each chunk, then the manifest). Returns 0 or -1. */
typedef int (*inv_snapshot_produce_fn)(void *ctx, const char *key, const void *value, size_t len,
                                       fs_err *err);

/* Writes a snapshot through produce: the bytes inv_state_save() made of a state whose
 * inv_state_last_command_offset() and inv_state_horizon() were last_command_offset and
 * horizon (cut in place, or by a child process from its copy of the state:
 * inventory-processor/src/main.c). Returns 0 or -1. */
int inv_snapshot_write_bytes(const void *buf, size_t len, int64_t changelog_offset,
                             int64_t last_command_offset, int64_t horizon, inv_snapshot_produce_fn produce,
                             void *ctx, fs_err *err);

typedef struct {
    int32_t partition;
    inv_state *state;          /* NULL: no usable snapshot (replay from the beginning) */
    int64_t changelog_offset;  /* replay from here (0 without a snapshot) */
    int64_t last_command_offset; /* skip changelog events with command_offset <= this */
    size_t bytes;
} inv_snapshot_loaded;

/* Loads the latest snapshot of each of n partitions (out[i].partition set by the caller): the
 * one whose manifest is the last committed one. It is looked for in the last 2, 16, 128 and
 * 1,024 records of a partition, then in all of it, so that the older snapshots still in the
 * compacted topic's active segment are not read. Partitions without one get state NULL.
 * Returns 0, or -1 with *err when the topic cannot be read (the caller may replay everything
 * instead). */
int inv_snapshot_read(const fs_common_config *cfg, inv_snapshot_loaded *out, int n,
                      int64_t payment_window_ms, int timeout_ms, fs_err *err);
/* The same from another topic laid out alike (tests). */
int inv_snapshot_read_from(const fs_common_config *cfg, const char *topic, inv_snapshot_loaded *out, int n,
                           int64_t payment_window_ms, int timeout_ms, fs_err *err);

#endif
