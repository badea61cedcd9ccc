/* Reading the latest inventory snapshot (inv_snapshot_read) on the real broker, from a topic
 * keyed as inventory.snapshots (its own, so that no processor of another test loads these):
 *  - of several committed snapshots, the last is loaded, though older ones are still in the
 *    log (a compacted topic's active segment is never cleaned); the last is several chunks,
 *    the first of them further back than the nearest records looked at;
 *  - a snapshot whose transaction aborted after its manifest was written is passed over for
 *    the committed one before it;
 *  - the latest manifest is found however far back it is: behind more records than the
 *    widest tail looked at before the whole partition;
 *  - a partition with only an aborted snapshot, or nothing, gives none.
 * Each snapshot names its own changelog offset in its manifest, which tells which one was
 * loaded; its state must load and hold what was saved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "flashsale/inventory.h"
#include "flashsale/inventory_snapshot.h"
#include "fs/config.h"
#include "fs/log.h"
#include "it_kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW (10LL * 60 * 1000)

static fs_common_config cfg;

typedef struct {
    rd_kafka_t *p;
    const char *topic;
    int32_t partition;
} out;

static int produce(void *ctx, const char *key, const void *value, size_t len, fs_err *err)
{
    (void)err;
    out *o = ctx;
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(o->p, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_PARTITION(o->partition),
                                  RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)(uintptr_t)value, len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(o->p, 10);
    assert_int_equal(e, 0);
    return 0;
}

static void end_txn(rd_kafka_t *p, bool commit)
{
    /* librdkafka purges unsent messages on abort: flush, so that an aborted snapshot really
     * is in the log, in front of the reader */
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_error_t *ke = commit ? rd_kafka_commit_transaction(p, -1) : rd_kafka_abort_transaction(p, -1);
    if (ke)
        fail_msg("end txn: %s", rd_kafka_error_string(ke));
}

static void define(inv_state *s, const char *id, int stock, size_t description)
{
    inv_command c;
    memset(&c, 0, sizeof c);
    c.type = INV_CMD_DEFINE;
    snprintf(c.product_id, sizeof c.product_id, "%s", id);
    snprintf(c.actor_id, sizeof c.actor_id, "admin");
    snprintf(c.f.name, sizeof c.f.name, "Snapshot product %s", id);
    if (description >= sizeof c.f.description)
        description = sizeof c.f.description - 1;
    memset(c.f.description, 'd', description);
    c.f.price = 100;
    c.f.sale_starts_at = 1795000000000LL;
    c.requested_at = 1795000001000LL;
    c.offset = -1;
    c.item_count = 1;
    c.stock = stock;
    inv_event ev;
    assert_int_equal(inv_decide(s, &c, &ev), INV_DECIDED);
    assert_int_equal(ev.type, INV_EV_DEFINED);
    assert_int_equal(inv_apply(s, &ev), 0);
}

/* A state with the product "snap-product" of `stock` units (what is checked after loading),
 * and `others` more products with long descriptions (a state of several chunks). */
static inv_state *state_with(int stock, int others)
{
    inv_state *s = inv_state_new(WINDOW);
    assert_non_null(s);
    define(s, "snap-product", stock, 0);
    for (int i = 0; i < others; i++) {
        char id[32];
        snprintf(id, sizeof id, "other-%d", i);
        define(s, id, 1, 2047);
    }
    return s;
}

/* One snapshot of state_with(stock, others), naming changelog offset `cl`, in a transaction
 * of its own, committed or aborted; returns its number of chunks. */
static int snapshot(rd_kafka_t *p, const char *topic, int32_t part, int stock, int others, int64_t cl,
                    bool commit)
{
    inv_state *s = state_with(stock, others);
    void *buf;
    size_t len;
    assert_int_equal(inv_state_save(s, &buf, &len), 0);
    assert_null(rd_kafka_begin_transaction(p));
    out o = {p, topic, part};
    fs_err err = {0};
    assert_int_equal(inv_snapshot_write_bytes(buf, len, cl, inv_state_last_command_offset(s), 0, produce, &o, &err), 0);
    end_txn(p, commit);
    free(buf);
    inv_state_destroy(s);
    return (int)((len + INV_SNAPSHOT_CHUNK - 1) / INV_SNAPSHOT_CHUNK); /* its chunks */
}

/* n committed records that are neither chunks of a snapshot nor its manifest. */
static void other_records(rd_kafka_t *p, const char *topic, int32_t part, int n)
{
    assert_null(rd_kafka_begin_transaction(p));
    out o = {p, topic, part};
    for (int i = 0; i < n; i++)
        produce(&o, "other", "not a snapshot", 14, NULL);
    end_txn(p, true);
}

static int stock_of(const inv_state *s)
{
    inv_product_view v;
    assert_true(inv_state_product(s, "snap-product", &v));
    return v.stock;
}

static void test_latest_snapshot_is_found(void **state)
{
    (void)state;
    char *topic = it_new_topic(&cfg, "snapshots", 5);
    assert_non_null(topic);
    rd_kafka_t *p = it_txn_producer(&cfg, topic);
    assert_non_null(p);
    /* 0: three committed snapshots, the last one wins; it is several chunks, the first of
     * them before the last 2 records, where its manifest is found */
    snapshot(p, topic, 0, 10, 0, 100, true);
    snapshot(p, topic, 0, 11, 0, 110, true);
    int chunks = snapshot(p, topic, 0, 12, 600, 120, true);
    printf("partition 0: the last snapshot is %d chunks\n", chunks);
    assert_true(chunks >= 2);
    /* 1: a committed snapshot, then one aborted after its manifest was written */
    snapshot(p, topic, 1, 20, 0, 200, true);
    snapshot(p, topic, 1, 21, 0, 210, false);
    /* 2: a committed snapshot behind 1,500 other records, more than the widest tail */
    snapshot(p, topic, 2, 30, 0, 300, true);
    other_records(p, topic, 2, 1500);
    /* 3: only an aborted snapshot: none */
    snapshot(p, topic, 3, 40, 0, 400, false);
    /* 4: nothing at all */
    rd_kafka_destroy(p);

    inv_snapshot_loaded s[5];
    for (int i = 0; i < 5; i++)
        s[i].partition = i;
    fs_err err = {0};
    if (inv_snapshot_read_from(&cfg, topic, s, 5, WINDOW, 30000, &err))
        fail_msg("read: %s", err.msg);
    const int64_t want_cl[] = {120, 200, 300, 0, 0}, want_stock[] = {12, 20, 30, -1, -1};
    for (int i = 0; i < 5; i++) {
        printf("partition %d: %s, changelog offset %lld\n", i, s[i].state ? "a snapshot" : "none",
               (long long)s[i].changelog_offset);
        assert_int_equal(s[i].changelog_offset, want_cl[i]);
        if (want_stock[i] < 0) {
            assert_null(s[i].state);
        } else {
            assert_non_null(s[i].state);
            assert_true(s[i].bytes > 0);
            assert_int_equal(stock_of(s[i].state), want_stock[i]);
            /* the whole state: partition 0's last snapshot holds 601 products */
            assert_int_equal(inv_state_product_count(s[i].state), i == 0 ? 601 : 1);
        }
        inv_state_destroy(s[i].state);
    }
    free(topic);
}

int main(void)
{
    fs_log_init("test-snapshot-read", FS_LOG_WARN);
    if (it_config(&cfg))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latest_snapshot_is_found),
    };
    return cmocka_run_group_tests_name("snapshot_read", tests, NULL, NULL);
}
