/* flashsale-snapread [--repeats N] [--window-ms W]: times what a processor taking over every
 * partition, or the API starting, spends loading the inventory's snapshots
 * (inv_snapshot_read) from the broker of FLASHSALE_KAFKA_BROKERS: for each repeat one JSON
 * line with the milliseconds, the snapshots' bytes and how many partitions had one. Run it
 * against a stopped sale's broker, nothing else running (perf/README.md: e.g. the one of the
 * run directory `make chaos` keeps, started again on its ports); the first repeat reads from
 * disk, the rest mostly from the page cache. */
#include "flashsale/inventory.h"
#include "flashsale/inventory_snapshot.h"
#include "fs/config.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    int repeats = 5;
    long long window = 600000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
            repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--window-ms") && i + 1 < argc)
            window = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: flashsale-snapread [--repeats N] [--window-ms W]\n");
            return 2;
        }
    }
    fs_log_init("snapread", FS_LOG_WARN);
    fs_common_config cfg;
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    rd_kafka_t *admin = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "snapread"}, &err);
    int n = admin ? fs_kafka_partition_count(admin, FS_TOPIC_INVENTORY_SNAPSHOTS, 10000, &err) : -1;
    if (admin)
        rd_kafka_destroy(admin);
    if (n <= 0) {
        fprintf(stderr, "%s: %s\n", FS_TOPIC_INVENTORY_SNAPSHOTS, err.msg);
        return 1;
    }
    inv_snapshot_loaded *s = calloc((size_t)n, sizeof *s);
    if (!s)
        return 1;
    for (int r = 0; r < repeats; r++) {
        fprintf(stderr, "[snapread] repeat %d of %d: %d partitions\n", r + 1, repeats, n);
        for (int i = 0; i < n; i++)
            s[i].partition = i;
        int64_t t0 = fs_mono_ms();
        int rc = inv_snapshot_read(&cfg, s, n, window, 30000, &err);
        int64_t ms = fs_mono_ms() - t0;
        size_t bytes = 0;
        int states = 0;
        for (int i = 0; i < n; i++) {
            bytes += s[i].bytes;
            states += s[i].state != NULL;
            inv_state_destroy(s[i].state);
        }
        if (rc) {
            fprintf(stderr, "[snapread] %s\n", err.msg);
            free(s);
            return 1;
        }
        printf("{\"repeat\":%d,\"ms\":%lld,\"bytes\":%zu,\"partitions\":%d,\"snapshots\":%d}\n", r + 1,
               (long long)ms, bytes, n, states);
        fflush(stdout);
    }
    free(s);
    return 0;
}
