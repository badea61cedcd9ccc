/* Inventory snapshots in Kafka; see flashsale/inventory_snapshot.h. */
#include "flashsale/inventory_snapshot.h"

#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_MAGIC "FSSC"
#define CHUNK_HEADER 20 /* magic, u64 id, u32 index, u32 count */
/* How far back from a partition's end the latest manifest is looked for, widening only for
 * partitions where none was found yet; then the whole partition. A snapshot is its chunks and
 * then its manifest in one transaction, and its commit marker takes the offset after it, so
 * the latest manifest is most often the partition's last record but one. The compacted
 * topic's active segment (up to 64 MiB, an hour) is never cleaned: a fixed tail of records
 * read every older snapshot still in it, up to 128 MiB a partition at 512 KiB a chunk. */
static const int64_t tails[] = {2, 16, 128, 1024};
#define NTAILS (int)(sizeof tails / sizeof tails[0])

static void put_u64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}
static void put_u32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get_u64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}
static uint32_t get_u32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

int inv_snapshot_write_bytes(const void *buf, size_t len, int64_t changelog_offset,
                             int64_t last_command_offset, int64_t horizon, inv_snapshot_produce_fn produce,
                             void *ctx, fs_err *err)
{
    uint64_t id = (uint64_t)fs_now_ms() << 16 | (uint64_t)(rand() & 0xffff);
    uint32_t count = (uint32_t)((len + INV_SNAPSHOT_CHUNK - 1) / INV_SNAPSHOT_CHUNK);
    unsigned char *rec = malloc(CHUNK_HEADER + INV_SNAPSHOT_CHUNK);
    int rc = rec ? 0 : fs_err_set(err, FS_ERR_RETRIABLE, 0, "snapshot: out of memory");
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        size_t off = (size_t)i * INV_SNAPSHOT_CHUNK;
        size_t n = len - off < INV_SNAPSHOT_CHUNK ? len - off : INV_SNAPSHOT_CHUNK;
        memcpy(rec, CHUNK_MAGIC, 4);
        put_u64(rec + 4, id);
        put_u32(rec + 12, i);
        put_u32(rec + 16, count);
        memcpy(rec + CHUNK_HEADER, (const unsigned char *)buf + off, n);
        char key[32];
        snprintf(key, sizeof key, "chunk-%u", i);
        rc = produce(ctx, key, rec, CHUNK_HEADER + n, err);
    }
    free(rec);
    if (rc)
        return -1;
    char man[256];
    int n = snprintf(man, sizeof man,
                     "{\"format\":1,\"id\":%llu,\"chunks\":%u,\"bytes\":%zu,\"changelog_offset\":%lld,"
                     "\"last_command_offset\":%lld,\"horizon\":%lld}",
                     (unsigned long long)id, count, len, (long long)changelog_offset,
                     (long long)last_command_offset, (long long)horizon);
    return produce(ctx, "manifest", man, (size_t)n, err) ? -1 : 0;
}

typedef struct {
    int32_t partition;
    /* the latest manifest seen */
    int64_t manifest_offset;
    uint64_t id;
    uint32_t chunks;
    size_t bytes;
    int64_t changelog_offset, last_command_offset;
    /* assembling */
    unsigned char *buf;
    uint32_t got;
    char *have;
} part_read;

typedef struct {
    const char *topic;
    part_read *p;
    int n;
    bool chunks; /* second pass */
} read_ctx;

static part_read *find_part(read_ctx *r, int32_t partition)
{
    for (int i = 0; i < r->n; i++)
        if (r->p[i].partition == partition)
            return &r->p[i];
    return NULL;
}

static int on_record(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    (void)err;
    read_ctx *r = ctx;
    part_read *p = find_part(r, m->partition);
    if (!p || !m->key)
        return 0;
    if (!r->chunks) {
        if (m->key_len != 8 || memcmp(m->key, "manifest", 8))
            return 0;
        json_error_t je;
        json_t *j = json_loadb(m->payload, m->len, 0, &je);
        json_int_t fmt = 0, id = 0, chunks = 0, bytes = -1, cl = -1, lco = -1;
        if (j && json_unpack(j, "{s:I,s:I,s:I,s:I,s:I,s:I}", "format", &fmt, "id", &id, "chunks",
                             &chunks, "bytes", &bytes, "changelog_offset", &cl,
                             "last_command_offset", &lco) == 0 &&
            fmt == 1 && chunks > 0 && chunks < 100000 && bytes >= 0 &&
            (uint64_t)bytes <= (uint64_t)chunks * INV_SNAPSHOT_CHUNK && cl >= 0 &&
            m->offset >= chunks) {
            p->manifest_offset = m->offset;
            p->id = (uint64_t)id;
            p->chunks = (uint32_t)chunks;
            p->bytes = (size_t)bytes;
            p->changelog_offset = cl;
            p->last_command_offset = lco;
        }
        json_decref(j);
        return 0;
    }
    if (!p->buf || m->offset >= p->manifest_offset || m->len < CHUNK_HEADER ||
        memcmp(m->payload, CHUNK_MAGIC, 4))
        return 0;
    const unsigned char *b = m->payload;
    uint32_t idx = get_u32(b + 12);
    if (get_u64(b + 4) != p->id || get_u32(b + 16) != p->chunks || idx >= p->chunks || p->have[idx])
        return 0;
    size_t off = (size_t)idx * INV_SNAPSHOT_CHUNK, n = m->len - CHUNK_HEADER;
    if (off + n > p->bytes || (idx + 1 < p->chunks && n != INV_SNAPSHOT_CHUNK))
        return 0;
    memcpy(p->buf + off, b + CHUNK_HEADER, n);
    p->have[idx] = 1;
    p->got++;
    return 0;
}

static int read_from(const fs_common_config *cfg, read_ctx *r, const int64_t *start, int timeout_ms,
                     fs_err *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->n);
    for (int i = 0; i < r->n; i++)
        if (start[i] >= 0)
            rd_kafka_topic_partition_list_add(l, r->topic, r->p[i].partition)->offset =
                start[i];
    int rc = fs_kafka_read_to_end(cfg, l, on_record, r, timeout_ms, err);
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int inv_snapshot_read(const fs_common_config *cfg, inv_snapshot_loaded *out, int n,
                      int64_t payment_window_ms, int timeout_ms, fs_err *err)
{
    return inv_snapshot_read_from(cfg, FS_TOPIC_INVENTORY_SNAPSHOTS, out, n, payment_window_ms, timeout_ms,
                                  err);
}

int inv_snapshot_read_from(const fs_common_config *cfg, const char *topic, inv_snapshot_loaded *out, int n,
                           int64_t payment_window_ms, int timeout_ms, fs_err *err)
{
    for (int i = 0; i < n; i++) {
        out[i].state = NULL;
        out[i].changelog_offset = 0;
        out[i].last_command_offset = -1;
        out[i].bytes = 0;
    }
    if (n <= 0)
        return 0;
    rd_kafka_t *probe = fs_kafka_probe_new(cfg, err);
    if (!probe)
        return -1;
    read_ctx r = {topic, calloc((size_t)n, sizeof *r.p), n, false};
    int64_t *lo = calloc((size_t)n, sizeof *lo), *hi = calloc((size_t)n, sizeof *hi),
            *start = calloc((size_t)n, sizeof *start), *searched = calloc((size_t)n, sizeof *searched);
    int rc = 0;
    if (!r.p || !lo || !hi || !start || !searched) {
        rc = fs_err_set(err, FS_ERR_RETRIABLE, 0, "snapshot: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        r.p[i].partition = out[i].partition;
        r.p[i].manifest_offset = -1;
        rd_kafka_resp_err_t ke = rd_kafka_query_watermark_offsets(
            probe, topic, out[i].partition, &lo[i], &hi[i], 5000);
        if (ke) {
            rc = fs_err_from_kafka_code(err, ke, "snapshot watermarks");
            goto out;
        }
        searched[i] = hi[i]; /* nothing at or after it holds a manifest */
    }
    /* 1: the latest manifest: the last tails[k] records of each partition where none was
     * found yet, then all of it (the window read last holds the latest one, if any) */
    bool again = true;
    for (int k = 0; again && k <= NTAILS; k++) {
        again = false;
        for (int i = 0; i < n; i++) {
            int64_t from = k < NTAILS && hi[i] - tails[k] > lo[i] ? hi[i] - tails[k] : lo[i];
            start[i] = r.p[i].manifest_offset < 0 && searched[i] > from ? from : -1;
            if (start[i] >= 0)
                searched[i] = from;
            again |= start[i] >= 0;
        }
        if (again && read_from(cfg, &r, start, timeout_ms, err))
            goto fail;
    }
    /* 2: its chunks, the records just before it */
    again = false;
    for (int i = 0; i < n; i++) {
        part_read *p = &r.p[i];
        start[i] = -1;
        if (p->manifest_offset < 0)
            continue;
        p->buf = malloc(p->bytes ? p->bytes : 1);
        p->have = calloc(p->chunks, 1);
        if (!p->buf || !p->have) {
            rc = fs_err_set(err, FS_ERR_RETRIABLE, 0, "snapshot: out of memory");
            goto out;
        }
        start[i] = p->manifest_offset - p->chunks > lo[i] ? p->manifest_offset - p->chunks : lo[i];
        again = true;
    }
    r.chunks = true;
    if (again && read_from(cfg, &r, start, timeout_ms, err))
        goto fail;
    for (int i = 0; i < n; i++) {
        part_read *p = &r.p[i];
        if (p->manifest_offset < 0)
            continue;
        inv_state *st = p->got == p->chunks ? inv_state_load(p->buf, p->bytes, payment_window_ms) : NULL;
        if (!st) {
            fs_log_warn("snapshot unusable, replaying the changelog",
                        json_pack("{s:i,s:I,s:i,s:i}", "partition", p->partition, "offset",
                                  (json_int_t)p->manifest_offset, "chunks", (int)p->chunks,
                                  "chunks_found", (int)p->got));
            continue;
        }
        out[i].state = st;
        out[i].changelog_offset = p->changelog_offset;
        out[i].last_command_offset = p->last_command_offset;
        out[i].bytes = p->bytes;
    }
    goto out;
fail:
    rc = -1;
out:
    for (int i = 0; r.p && i < n; i++) {
        free(r.p[i].buf);
        free(r.p[i].have);
    }
    free(r.p);
    free(lo);
    free(hi);
    free(start);
    free(searched);
    rd_kafka_destroy(probe);
    return rc;
}
