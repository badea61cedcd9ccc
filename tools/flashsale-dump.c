/* flashsale-dump: prints the records of a topic as JSON lines, decoded with the project's
 * Avro codec, read_committed, from the beginning to the end offsets seen at start.
 *
 *   flashsale-dump TOPIC
 *
 * One line per record: {"partition", "offset", "timestamp" (Kafka record time, ms), "key",
 * "headers": {...}, "type", "value"}
 * (value is avro-c's JSON rendering; "error" instead when it does not decode). Progress goes
 * to stderr every 100,000 records. For operators (kcat cannot decode Avro) and for tests
 * that re-derive state from the log. */
#include "fs/codec.h"
#include "fs/config.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    fs_codec *codec;
    unsigned long n;
} dump_ctx;

static int print_record(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    dump_ctx *d = ctx;
    (void)err;
    rd_kafka_timestamp_type_t tst;
    int64_t ts = rd_kafka_message_timestamp(m, &tst);
    json_t *o = json_pack("{s:i,s:I,s:I}", "partition", m->partition, "offset",
                          (json_int_t)m->offset, "timestamp", (json_int_t)ts);
    json_object_set_new(o, "timestamp_type",
                        json_string(tst == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? "LogAppendTime"
                                    : tst == RD_KAFKA_TIMESTAMP_CREATE_TIME   ? "CreateTime"
                                                                              : "none"));
    json_object_set_new(o, "key", m->key ? json_stringn(m->key, m->key_len) : json_null());
    json_t *h = json_object();
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == 0 && hdrs) {
        const char *name;
        const void *val;
        size_t len;
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &len) == 0; i++)
            json_object_set_new(h, name, json_stringn(val ? val : "", val ? len : 0));
    }
    json_object_set_new(o, "headers", h);
    const fs_schema *s;
    avro_value_t v;
    fs_err derr = {0};
    if (fs_codec_decode(d->codec, m->payload, m->len, &s, &v, &derr) == 0) {
        char *text = NULL;
        avro_value_to_json(&v, 1, &text);
        json_object_set_new(o, "type", json_string(fs_schema_name(s)));
        json_object_set_new(o, "value", text ? json_loads(text, 0, NULL) : json_null());
        free(text);
        avro_value_decref(&v);
    } else {
        json_object_set_new(o, "error", json_string(derr.msg));
    }
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (line) {
        puts(line);
        free(line);
    }
    if (++d->n % 100000 == 0)
        fprintf(stderr, "flashsale-dump: %lu records\n", d->n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: flashsale-dump TOPIC\n");
        return 2;
    }
    fs_log_init("dump", FS_LOG_WARN);
    fs_common_config cfg;
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    dump_ctx d = {fs_codec_new(&err), 0};
    if (!d.codec)
        fs_config_die(&err);
    rd_kafka_t *admin = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-dump"}, &err);
    int n = admin ? fs_kafka_partition_count(admin, argv[1], 10000, &err) : -1;
    if (admin)
        rd_kafka_destroy(admin);
    if (n < 1) {
        fprintf(stderr, "flashsale-dump: %s\n", err.msg);
        fs_codec_destroy(d.codec);
        return 1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, argv[1], i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    int rc = fs_kafka_read_to_end(&cfg, l, print_record, &d, 300000, &err);
    rd_kafka_topic_partition_list_destroy(l);
    fs_codec_destroy(d.codec);
    if (rc) {
        fprintf(stderr, "flashsale-dump: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "flashsale-dump: %lu records from %d partitions of %s\n", d.n, n, argv[1]);
    return 0;
}
