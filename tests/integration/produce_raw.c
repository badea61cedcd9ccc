/* Test helper: produces one record with the given key and the bytes of a file (or of a
 * hex string) to a topic, with an optional event-type header, and waits for delivery.
 *   produce_raw TOPIC KEY (--file PATH | --hex HEX) [EVENT_TYPE] */
#include "fs/config.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: produce_raw TOPIC KEY (--file PATH | --hex HEX) [EVENT_TYPE]\n");
        return 2;
    }
    fs_log_init("produce-raw", FS_LOG_WARN);
    fs_common_config cfg;
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    unsigned char *buf = malloc(1 << 20);
    size_t len = 0;
    if (!strcmp(argv[3], "--file")) {
        FILE *f = fopen(argv[4], "rb");
        if (!f)
            return 1;
        len = fread(buf, 1, 1 << 20, f);
        fclose(f);
    } else {
        for (const char *h = argv[4]; h[0] && h[1] && len < (1 << 20); h += 2) {
            unsigned v;
            sscanf(h, "%2x", &v);
            buf[len++] = (unsigned char)v;
        }
    }
    rd_kafka_t *p = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_PRODUCER, .client_id = "produce-raw"}, &err);
    if (!p)
        return 1;
    fs_event_meta meta = {.event_type = argc > 5 ? argv[5] : NULL};
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC(argv[1]), RD_KAFKA_V_KEY(argv[2], strlen(argv[2])),
        RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_HEADERS(fs_kafka_headers_new(&meta)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    int rc = e || rd_kafka_flush(p, 10000) ? 1 : 0;
    rd_kafka_destroy(p);
    free(buf);
    return rc;
}
