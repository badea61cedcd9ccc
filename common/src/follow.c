/* Following a log and noticing when caught up; see fs/follow.h. */
#include "fs/follow.h"

#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/id.h"

#include <stdlib.h>
#include <string.h>

struct fs_follower {
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *parts; /* offset = where reading started */
    int64_t *end;
    bool *done;
    bool *idle; /* the partition's last news was its end (or it had nothing to read) */
    int remaining, busy;
};

static int index_of(const fs_follower *f, const char *topic, int32_t partition)
{
    for (int i = 0; i < f->parts->cnt; i++)
        if (f->parts->elems[i].partition == partition && !strcmp(f->parts->elems[i].topic, topic))
            return i;
    return -1;
}

static void mark_done(fs_follower *f, int i)
{
    if (i >= 0 && !f->done[i]) {
        f->done[i] = true;
        f->remaining--;
    }
}

/* The ends, from a read_uncommitted probe; start offsets below the low watermark move up
 * to it (explicit offsets: a logical BEGINNING would make librdkafka look it up first, on
 * a retry timer). */
static int find_ends(fs_follower *f, const fs_common_config *cfg, int timeout_ms, fs_err *err)
{
    rd_kafka_t *probe = fs_kafka_probe_new(cfg, err);
    if (!probe)
        return -1;
    int64_t deadline = fs_mono_ms() + timeout_ms;
    int rc = 0;
    for (int i = 0; i < f->parts->cnt && rc == 0; i++) {
        rd_kafka_topic_partition_t *p = &f->parts->elems[i];
        int64_t lo = 0;
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_query_watermark_offsets(probe, p->topic, p->partition, &lo, &f->end[i],
                                                     5000)) &&
               fs_mono_ms() < deadline)
            ;
        if (e) {
            rc = fs_err_from_kafka_code(err, e, "watermarks");
            break;
        }
        if (p->offset == RD_KAFKA_OFFSET_END)
            p->offset = f->end[i];
        else if (p->offset < lo)
            p->offset = lo;
        f->done[i] = f->idle[i] = f->end[i] <= p->offset;
        f->remaining += !f->done[i];
        f->busy += !f->idle[i];
    }
    rd_kafka_destroy(probe);
    return rc;
}

fs_follower *fs_follower_new(const fs_common_config *cfg, const char *client_id,
                             const rd_kafka_topic_partition_list_t *from,
                             const char *const *extra, int timeout_ms, fs_err *err)
{
    fs_follower *f = calloc(1, sizeof *f);
    int n = from->cnt;
    if (!f || !(f->parts = rd_kafka_topic_partition_list_copy(from)) ||
        !(f->end = calloc((size_t)(n ? n : 1), sizeof *f->end)) ||
        !(f->done = calloc((size_t)(n ? n : 1), sizeof *f->done)) ||
        !(f->idle = calloc((size_t)(n ? n : 1), sizeof *f->idle))) {
        fs_follower_destroy(f);
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        return NULL;
    }
    f->rk = fs_kafka_new(cfg,
                         &(fs_kafka_client){.role = FS_KAFKA_FOLLOWER, .client_id = client_id,
                                            .extra = extra},
                         err);
    if (!f->rk || find_ends(f, cfg, timeout_ms, err)) {
        fs_follower_destroy(f);
        return NULL;
    }
    /* Learn the partition leaders before assigning: a fresh consumer that has none yet
     * backs off for about half a second per attempt before it starts fetching. */
    for (int i = 0; i < n; i++) {
        bool seen = false; /* one lookup per topic */
        for (int k = 0; k < i; k++)
            seen |= !strcmp(f->parts->elems[k].topic, f->parts->elems[i].topic);
        if (seen)
            continue;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *t = rd_kafka_topic_new(f->rk, f->parts->elems[i].topic, NULL);
        if (rd_kafka_metadata(f->rk, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(t);
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(f->rk, f->parts);
    if (e) {
        fs_err_from_kafka_code(err, e, "assign");
        fs_follower_destroy(f);
        return NULL;
    }
    return f;
}

void fs_follower_destroy(fs_follower *f)
{
    if (!f)
        return;
    if (f->rk) {
        rd_kafka_consumer_close(f->rk);
        rd_kafka_destroy(f->rk);
    }
    if (f->parts)
        rd_kafka_topic_partition_list_destroy(f->parts);
    free(f->end);
    free(f->done);
    free(f->idle);
    free(f);
}

rd_kafka_message_t *fs_follower_poll(fs_follower *f, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(f->rk, timeout_ms);
    if (!m)
        return NULL;
    int i = m->rkt ? index_of(f, rd_kafka_topic_name(m->rkt), m->partition) : -1;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (i >= 0 && m->offset >= f->end[i])
            mark_done(f, i);
        if (i >= 0 && !f->idle[i]) {
            f->idle[i] = true;
            f->busy--;
        }
    } else if (m->err) {
        fs_log_warn("log read error", json_pack("{s:s,s:s}", "client", rd_kafka_name(f->rk), "error",
                                                rd_kafka_message_errstr(m)));
    } else {
        if (i >= 0 && m->offset + 1 >= f->end[i])
            mark_done(f, i);
        if (i >= 0 && f->idle[i]) {
            f->idle[i] = false;
            f->busy++;
        }
        return m;
    }
    rd_kafka_message_destroy(m);
    return NULL;
}

bool fs_follower_caught_up(const fs_follower *f)
{
    return f->remaining == 0;
}

bool fs_follower_at_end(const fs_follower *f)
{
    return f->remaining == 0 && f->busy == 0;
}

int fs_follower_remaining(const fs_follower *f)
{
    return f->remaining;
}

int64_t fs_follower_end(const fs_follower *f, const char *topic, int32_t partition)
{
    int i = index_of(f, topic, partition);
    return i < 0 ? -1 : f->end[i];
}

bool fs_follower_before_end(const fs_follower *f, const rd_kafka_message_t *m)
{
    int i = m->rkt ? index_of(f, rd_kafka_topic_name(m->rkt), m->partition) : -1;
    return i >= 0 && m->offset < f->end[i];
}
