/* Test helper: copies every record of a topic (read_committed, to its end) into a new topic
 * with the same partition count, same partition, key, value and headers, AT THE SAME
 * OFFSETS: the gaps the source has (transaction markers, aborted records) are filled with
 * empty records, which readers skip as undecodable. Events refer to commands by offset, so
 * only an offset-faithful copy can be audited.
 *   copy_topic SRC DST */
#include "fs/config.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <stdio.h>
#include <string.h>

static rd_kafka_t *producer;
static long copied, fillers;
static int64_t next_offset[1024];

static int put(const char *dst, int32_t part, const void *key, size_t klen, const void *val,
               size_t vlen, rd_kafka_headers_t *h, int64_t ts, fs_err *err)
{
    rd_kafka_resp_err_t e;
    /* each record keeps its time (a command's append time takes part in its decision) */
    while ((e = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(dst), RD_KAFKA_V_PARTITION(part),
                                  RD_KAFKA_V_TIMESTAMP(ts > 0 ? ts : 0),
                                  RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_VALUE((void *)val, vlen),
                                  RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(producer, 10);
    return e ? fs_err_from_kafka_code(err, e, "copy") : 0;
}

static int copy_cb(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    const char *dst = ctx;
    if (m->partition < 0 || m->partition >= 1024)
        return fs_err_set(err, FS_ERR_INVALID, 0, "partition out of range");
    while (next_offset[m->partition] < m->offset) { /* keep offsets aligned */
        if (put(dst, m->partition, NULL, 0, NULL, 0, NULL, 0, err))
            return -1;
        next_offset[m->partition]++;
        fillers++;
    }
    rd_kafka_headers_t *h = NULL, *copy = NULL;
    if (rd_kafka_message_headers(m, &h) == 0 && h)
        copy = rd_kafka_headers_copy(h);
    if (put(dst, m->partition, m->key, m->key_len, m->payload, m->len, copy, fs_kafka_record_time(m), err))
        return -1;
    next_offset[m->partition] = m->offset + 1;
    copied++;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: copy_topic SRC DST\n");
        return 2;
    }
    fs_log_init("copy-topic", FS_LOG_WARN);
    fs_common_config cfg;
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    rd_kafka_t *admin = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "copy-topic"}, &err);
    int n = admin ? fs_kafka_partition_count(admin, argv[1], 10000, &err) : -1;
    if (n < 1 || fs_kafka_create_topic(admin, argv[2], n, 1, NULL, 30000, &err)) {
        fprintf(stderr, "copy_topic: %s\n", err.msg);
        return 1;
    }
    rd_kafka_destroy(admin);
    producer = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_PRODUCER, .client_id = "copy-topic"}, &err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, argv[1], i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    int rc = fs_kafka_read_to_end(&cfg, l, copy_cb, argv[2], 120000, &err);
    rd_kafka_topic_partition_list_destroy(l);
    if (rc || rd_kafka_flush(producer, 60000)) {
        fprintf(stderr, "copy_topic: %s\n", rc ? err.msg : "flush timed out");
        return 1;
    }
    rd_kafka_destroy(producer);
    printf("copied %ld records from %s to %s (%ld gap fillers)\n", copied, argv[1], argv[2],
           fillers);
    return 0;
}
