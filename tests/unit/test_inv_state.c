/* Inventory decisions (domain/src/inventory.c) and their Avro glue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "flashsale/inventory_codec.h"
#include "flashsale/inventory_snapshot.h"
#include "flashsale/inventory.h"

#include "fs/id.h"
#include "fs/schemas.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1795000000000LL /* sale start used by the tests */
#define WINDOW 600000

static inv_command cmd(inv_cmd_type t, const char *product)
{
    inv_command c;
    memset(&c, 0, sizeof c);
    c.type = t;
    snprintf(c.product_id, sizeof c.product_id, "%s", product);
    snprintf(c.actor_id, sizeof c.actor_id, "admin");
    c.requested_at = T0 + 1000;
    c.offset = -1;
    c.item_count = 1;
    return c;
}

static inv_command reserve(const char *product, const char *order, const char *member, int q)
{
    inv_command c = cmd(INV_CMD_RESERVE, product);
    snprintf(c.order_id, sizeof c.order_id, "%s", order);
    snprintf(c.member_id, sizeof c.member_id, "%s", member);
    c.quantity = q;
    return c;
}

/* decide + apply, as the processor does; returns the event */
static inv_event step(inv_state *s, const inv_command *c)
{
    inv_event e;
    assert_int_equal(inv_decide(s, c, &e), INV_DECIDED);
    assert_int_equal(inv_apply(s, &e), 0);
    return e;
}

static void define(inv_state *s, const char *id, int stock, int limit)
{
    inv_command c = cmd(INV_CMD_DEFINE, id);
    snprintf(c.f.name, sizeof c.f.name, "Product %s", id);
    c.f.price = 9900;
    c.f.sale_starts_at = T0;
    c.f.per_user_limit = limit;
    c.stock = stock;
    inv_event e = step(s, &c);
    assert_int_equal(e.type, INV_EV_DEFINED);
}

static void expect_reject(inv_state *s, inv_command c, inv_reason r)
{
    inv_event e = step(s, &c);
    assert_int_equal(e.type, INV_EV_REJECTED);
    if (e.reason != r)
        fail_msg("expected %s, got %s", inv_reason_name(r), inv_reason_name(e.reason));
}

static void test_reasons(void **state)
{
    (void)state;
    inv_state *s = inv_state_new(WINDOW);
    define(s, "p1", 3, 2);
    expect_reject(s, reserve("nope", "o0", "m1", 1), INV_R_UNKNOWN_PRODUCT);
    inv_command early = reserve("p1", "o1", "m1", 1);
    early.requested_at = T0 - 1;
    expect_reject(s, early, INV_R_NOT_ON_SALE);
    expect_reject(s, reserve("p1", "o2", "m1", 0), INV_R_INVALID);

    inv_event e = step(s, &(inv_command){0}); /* zero command = define of "" -> invalid */
    assert_int_equal(e.type, INV_EV_CMD_REJECTED);

    e = step(s, &(inv_command){.type = INV_CMD_RESERVE, .product_id = "p1", .order_id = "o3",
                               .member_id = "m1", .quantity = 2, .requested_at = T0 + 5,
                               .item_count = 1});
    assert_int_equal(e.type, INV_EV_RESERVED);
    assert_int_equal(e.available, 1);
    assert_int_equal(e.reserved, 2);
    assert_int_equal(e.pay_by, T0 + 5 + WINDOW);
    assert_int_equal(e.unit_price, 9900);
    expect_reject(s, reserve("p1", "o4", "m1", 1), INV_R_LIMIT_EXCEEDED); /* 2 + 1 > 2 */
    expect_reject(s, reserve("p1", "o5", "m2", 2), INV_R_INSUFFICIENT_STOCK);

    inv_event p = step(s, &(inv_command){.type = INV_CMD_PAUSE, .product_id = "p1"});
    assert_int_equal(p.type, INV_EV_PAUSED);
    expect_reject(s, reserve("p1", "o6", "m2", 1), INV_R_PAUSED);
    step(s, &(inv_command){.type = INV_CMD_RESUME, .product_id = "p1"});
    e = step(s, &(inv_command){.type = INV_CMD_RESERVE, .product_id = "p1", .order_id = "o7",
                               .member_id = "m2", .quantity = 1, .requested_at = T0 + 9});
    assert_int_equal(e.type, INV_EV_RESERVED);
    inv_event so;
    inv_command c8 = reserve("p1", "o8", "m3", 1);
    assert_int_equal(inv_decide(s, &c8, &so), INV_DECIDED);
    assert_int_equal(so.type, INV_EV_REJECTED);
    assert_int_equal(so.reason, INV_R_SOLD_OUT);
    assert_int_equal(so.available, 0);
    assert_int_equal(inv_apply(s, &so), 0);

    /* a decided line never gets a second decision */
    inv_event dup;
    inv_command again = reserve("p1", "o7", "m2", 1);
    assert_int_equal(inv_decide(s, &again, &dup), INV_DUPLICATE);
    inv_command again_rejected = reserve("p1", "o8", "m3", 1);
    assert_int_equal(inv_decide(s, &again_rejected, &dup), INV_DUPLICATE);

    /* sale window end */
    inv_command upd = cmd(INV_CMD_UPDATE, "p1");
    upd.f.has_ends = true;
    upd.f.sale_ends_at = T0 + 100;
    assert_int_equal(step(s, &upd).type, INV_EV_UPDATED);
    inv_command late = reserve("p1", "o9", "m4", 1);
    late.requested_at = T0 + 100;
    expect_reject(s, late, INV_R_NOT_ON_SALE);
    inv_state_destroy(s);
}

static void test_commit_release_restock(void **state)
{
    (void)state;
    inv_state *s = inv_state_new(WINDOW);
    define(s, "p", 2, 1);
    step(s, &(inv_command){.type = INV_CMD_RESERVE, .product_id = "p", .order_id = "a",
                           .member_id = "m1", .quantity = 1, .requested_at = T0});
    step(s, &(inv_command){.type = INV_CMD_RESERVE, .product_id = "p", .order_id = "b",
                           .member_id = "m2", .quantity = 1, .requested_at = T0});
    inv_event e = step(s, &(inv_command){.type = INV_CMD_COMMIT, .product_id = "p", .order_id = "a"});
    assert_int_equal(e.type, INV_EV_COMMITTED);
    assert_int_equal(e.sold, 1);
    assert_int_equal(e.reserved, 1);
    assert_string_equal(e.member_id, "m1");
    e = step(s, &(inv_command){.type = INV_CMD_COMMIT, .product_id = "p", .order_id = "a"});
    assert_int_equal(e.type, INV_EV_CMD_REJECTED); /* twice: refused, not doubled */
    e = step(s, &(inv_command){.type = INV_CMD_RELEASE, .product_id = "p", .order_id = "a"});
    assert_int_equal(e.type, INV_EV_CMD_REJECTED); /* committed units are not released */
    e = step(s, &(inv_command){.type = INV_CMD_RELEASE, .product_id = "p", .order_id = "b",
                               .reason = "EXPIRED"});
    assert_int_equal(e.type, INV_EV_RELEASED);
    assert_int_equal(e.available, 1);
    assert_string_equal(e.release_reason, "EXPIRED");
    assert_int_equal(inv_state_held(s, "p", "m2"), 0);
    e = step(s, &(inv_command){.type = INV_CMD_RELEASE, .product_id = "p", .order_id = "b"});
    assert_int_equal(e.type, INV_EV_CMD_REJECTED);
    assert_int_equal(e.reason, INV_R_UNKNOWN_RESERVATION);
    /* m1 holds 1 (limit 1) until the paid unit comes back by restock */
    expect_reject(s, reserve("p", "c", "m1", 1), INV_R_LIMIT_EXCEEDED);
    e = step(s, &(inv_command){.type = INV_CMD_RESTOCK, .product_id = "p", .order_id = "a",
                               .quantity = 1, .actor_id = "saga"});
    assert_int_equal(e.type, INV_EV_RESTOCKED);
    assert_int_equal(inv_state_held(s, "p", "m1"), 0);
    inv_product_view v;
    assert_true(inv_state_product(s, "p", &v));
    assert_int_equal(v.stock, 3);
    assert_int_equal(v.available + v.reserved + v.sold, v.stock);
    inv_state_destroy(s);
}

/* A product as two states see it: the same counters and the fields decisions use. */
static void assert_same_view(const inv_product_view *got, const inv_product_view *want)
{
    assert_int_equal(got->available, want->available);
    assert_int_equal(got->reserved, want->reserved);
    assert_int_equal(got->sold, want->sold);
    assert_int_equal(got->stock, want->stock);
    assert_int_equal(got->paused, want->paused);
    assert_int_equal(got->f.per_user_limit, want->f.per_user_limit);
    assert_int_equal(got->f.price, want->f.price);
}

/* A copy of the first `size` bytes of p, in an allocation of exactly that size (ASan: a read
 * past it fails the test). */
static void *short_copy(const void *p, size_t size)
{
    void *c = malloc(size);
    assert_non_null(c);
    memcpy(c, p, size);
    return c;
}

/* The audit keeps each command and event in inv_*_used_size bytes and hands those to
 * inv_decide and inv_apply: commands of every type decided from such short copies, and their
 * events applied from short copies, give the same events and the same state as whole ones. */
static void test_short_copies(void **state)
{
    (void)state;
    inv_state *whole = inv_state_new(WINDOW), *part = inv_state_new(WINDOW);
    bool seen[INV_EV_COUNT] = {false};
    inv_command def = cmd(INV_CMD_DEFINE, "p");
    snprintf(def.f.name, sizeof def.f.name, "Product p");
    snprintf(def.f.description, sizeof def.f.description, "a description");
    def.f.price = 9900;
    def.f.sale_starts_at = T0;
    def.stock = 3;
    inv_command upd = cmd(INV_CMD_UPDATE, "p");
    upd.f.has_price = true;
    upd.f.price = 9000;
    upd.f.has_limit = true;
    upd.f.per_user_limit = 2;
    inv_command restock = cmd(INV_CMD_RESTOCK, "p");
    restock.quantity = 1;
    inv_command release = cmd(INV_CMD_RELEASE, "p");
    snprintf(release.order_id, sizeof release.order_id, "b");
    snprintf(release.reason, sizeof release.reason, "EXPIRED");
    inv_command commit = cmd(INV_CMD_COMMIT, "p");
    snprintf(commit.order_id, sizeof commit.order_id, "a");
    inv_command unknown_commit = cmd(INV_CMD_COMMIT, "p");
    snprintf(unknown_commit.order_id, sizeof unknown_commit.order_id, "zz");
    inv_command retention = cmd(INV_CMD_SET_RETENTION, "");
    retention.dedup_window_ms = 3600000;
    retention.sold_memory_ms = 7200000;
    const inv_command cmds[] = {
        def, upd, reserve("p", "a", "m1", 1), reserve("p", "b", "m2", 2),
        reserve("p", "c", "m3", 1) /* sold out */, commit, release, restock,
        cmd(INV_CMD_PAUSE, "p"), reserve("p", "d", "m4", 1) /* paused */,
        cmd(INV_CMD_RESUME, "p"), retention, reserve("nope", "e", "m5", 1) /* unknown */,
        unknown_commit /* CommandRejected */,
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        size_t csize = inv_command_used_size(&cmds[i]);
        bool fields = cmds[i].type == INV_CMD_DEFINE || cmds[i].type == INV_CMD_UPDATE;
        assert_int_equal(inv_cmd_has_fields(cmds[i].type), fields);
        assert_int_equal(csize, fields ? sizeof(inv_command) : offsetof(inv_command, f));
        if (!fields)
            assert_true(csize < sizeof(inv_command) / 4);
        inv_command *c = short_copy(&cmds[i], csize);
        inv_event want, got;
        memset(&want, 0, sizeof want);
        memset(&got, 0, sizeof got);
        assert_int_equal(inv_decide(whole, &cmds[i], &want), INV_DECIDED);
        assert_int_equal(inv_decide(part, c, &got), INV_DECIDED);
        size_t esize = inv_event_used_size(&want);
        seen[want.type] = true;
        assert_int_equal(inv_event_used_size(&got), esize);
        assert_memory_equal(&got, &want, esize);
        inv_event *e = short_copy(&got, esize);
        assert_int_equal(inv_apply(whole, &want), 0);
        assert_int_equal(inv_apply(part, e), 0);
        free(e);
        free(c);
    }
    for (int t = 0; t < INV_EV_COUNT; t++) /* every event type went through a short copy */
        if (!seen[t])
            fail_msg("no %s among the events", inv_event_name((inv_event_type)t));
    inv_product_view a, b;
    assert_true(inv_state_product(whole, "p", &a));
    assert_true(inv_state_product(part, "p", &b));
    assert_same_view(&b, &a);
    assert_string_equal(a.f.name, b.f.name);
    assert_int_equal(b.f.price, 9000);
    assert_string_equal(b.f.description, "a description");
    assert_int_equal(b.sold, 1);
    assert_int_equal(inv_state_dedup_window(part), inv_state_dedup_window(whole));
    assert_int_equal(inv_state_sold_memory(part), 7200000);
    inv_state_destroy(whole);
    inv_state_destroy(part);
}

/* Random commands: invariants after every step, and a state rebuilt from the events
 * (through Avro) equals the live one. */
static void test_random_invariants_and_rebuild(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_codec *codec = fs_codec_new(&err);
    assert_non_null(codec);
    inv_state *live = inv_state_new(WINDOW), *rebuilt = inv_state_new(WINDOW), *snap = NULL;
    /* a reader's view from the start, and one made from live halfway: the same products */
    inv_state *view = inv_state_new_counters(), *view_of_live = NULL;
    const char *products[] = {"pa", "pb", "pc"};
    for (int i = 0; i < 3; i++) {
        inv_command c = cmd(INV_CMD_DEFINE, products[i]);
        snprintf(c.f.name, sizeof c.f.name, "n");
        c.f.sale_starts_at = T0;
        c.f.per_user_limit = 3;
        c.stock = 20;
        inv_event e;
        inv_decide(live, &c, &e);
        inv_apply(live, &e);
        void *buf;
        size_t len;
        assert_int_equal(inv_event_encode(codec, &e, &buf, &len, &err), 0);
        inv_event back;
        assert_int_equal(inv_event_decode_bytes(codec, buf, len, &back, &err), 0);
        assert_int_equal(inv_apply(rebuilt, &back), 0);
        assert_int_equal(inv_apply(view, &back), 0);
        free(buf);
    }
    srand(11);
    int reserved_lines = 0, sold_out_rejections = 0;
    for (int step_no = 0; step_no < 20000; step_no++) {
        const char *p = products[rand() % 3];
        inv_command c;
        int op = rand() % 10;
        char order[32], member[32];
        snprintf(order, sizeof order, "o%d", rand() % 3000);
        snprintf(member, sizeof member, "m%d", rand() % 50);
        if (op < 6)
            c = reserve(p, order, member, 1 + rand() % 3);
        else if (op < 7)
            c = (inv_command){.type = INV_CMD_COMMIT, .product_id = "", .order_id = ""};
        else if (op < 9)
            c = (inv_command){.type = INV_CMD_RELEASE};
        else
            c = (inv_command){.type = INV_CMD_RESTOCK, .quantity = 1 + rand() % 2};
        if (op >= 6) {
            snprintf(c.product_id, sizeof c.product_id, "%s", p);
            snprintf(c.order_id, sizeof c.order_id, "%s", op == 9 && rand() % 2 ? "" : order);
        }
        c.requested_at = T0 + step_no;
        if (step_no % 4000 == 1000) { /* a snapshot of live from here on decides as live does */
            void *sb;
            size_t sl;
            assert_int_equal(inv_state_save(live, &sb, &sl), 0);
            inv_state_destroy(snap);
            snap = inv_state_load(sb, sl, WINDOW);
            assert_non_null(snap);
            ((unsigned char *)sb)[sl / 2] ^= 1; /* and a damaged one is refused */
            assert_null(inv_state_load(sb, sl, WINDOW));
            assert_null(inv_state_load(sb, sl / 2, WINDOW));
            free(sb);
        }
        inv_event e;
        inv_outcome out = inv_decide(live, &c, &e);
        if (snap) {
            inv_event se;
            assert_int_equal(inv_decide(snap, &c, &se), out);
            if (out == INV_DECIDED) {
                assert_int_equal(se.type, e.type);
                assert_int_equal(se.reason, e.reason);
                assert_int_equal(se.available, e.available);
                assert_int_equal(se.reserved, e.reserved);
                assert_int_equal(se.sold, e.sold);
                assert_string_equal(se.member_id, e.member_id);
                assert_int_equal(inv_apply(snap, &se), 0);
            }
        }
        if (out == INV_DUPLICATE)
            continue;
        /* what the decision saw */
        inv_product_view before;
        bool known = inv_state_product(live, p, &before);
        if (e.type == INV_EV_REJECTED && e.reason == INV_R_SOLD_OUT) {
            assert_true(known);
            assert_int_equal(before.available, 0); /* no undersell */
            sold_out_rejections++;
        }
        reserved_lines += e.type == INV_EV_RESERVED;
        assert_int_equal(inv_apply(live, &e), 0);
        void *buf;
        size_t len;
        assert_int_equal(inv_event_encode(codec, &e, &buf, &len, &err), 0);
        inv_event back;
        assert_int_equal(inv_event_decode_bytes(codec, buf, len, &back, &err), 0);
        free(buf);
        assert_int_equal(inv_apply(rebuilt, &back), 0);
        assert_int_equal(inv_apply(view, &back), 0);
        if (view_of_live)
            assert_int_equal(inv_apply(view_of_live, &back), 0);
        if (step_no >= 10000 && !view_of_live) {
            view_of_live = inv_state_counters_of(live);
            assert_non_null(view_of_live);
        }
        inv_product_view v;
        assert_true(inv_state_product(live, p, &v));
        for (int k = 0; k < 2; k++) {
            const inv_state *r = k ? view_of_live : view;
            inv_product_view rv;
            if (!r)
                continue;
            assert_true(inv_state_product(r, p, &rv));
            assert_same_view(&rv, &v);
            assert_int_equal(inv_state_last_command_offset(r), inv_state_last_command_offset(live));
            assert_int_equal(inv_state_horizon(r), inv_state_horizon(live));
        }
        assert_true(v.available >= 0 && v.reserved >= 0 && v.sold >= 0);
        assert_int_equal(v.available + v.reserved + v.sold, v.stock); /* conservation */
        if (e.type == INV_EV_RESERVED || e.type == INV_EV_COMMITTED || e.type == INV_EV_RELEASED ||
            e.type == INV_EV_RESTOCKED) {
            assert_int_equal(e.available, v.available); /* event counters are the truth */
            assert_int_equal(e.reserved, v.reserved);
            assert_int_equal(e.sold, v.sold);
        }
        if (e.type == INV_EV_RESERVED)
            assert_true(inv_state_held(live, p, e.member_id) <= 3); /* per-user limit */
    }
    for (int i = 0; i < 3; i++) {
        inv_product_view a, b;
        assert_true(inv_state_product(live, products[i], &a));
        assert_true(inv_state_product(rebuilt, products[i], &b));
        assert_int_equal(a.available, b.available);
        assert_int_equal(a.reserved, b.reserved);
        assert_int_equal(a.sold, b.sold);
        assert_int_equal(a.stock, b.stock);
    }
    assert_true(reserved_lines > 100);
    assert_true(sold_out_rejections > 10);
    /* the views hold no line: their memory follows the products, not the orders */
    assert_true(inv_state_decided_count(live) > 1000);
    assert_true(inv_state_reservation_count(live) > 10);
    for (int k = 0; k < 2; k++) {
        const inv_state *r = k ? view_of_live : view;
        assert_int_equal(inv_state_product_count(r), 3);
        assert_int_equal(inv_state_decided_count(r), 0);
        assert_int_equal(inv_state_reservation_count(r), 0);
    }
    inv_state_destroy(view);
    inv_state_destroy(view_of_live);
    inv_state_destroy(snap);
    inv_state_destroy(live);
    inv_state_destroy(rebuilt);
    fs_codec_destroy(codec);
}

static void test_command_codec_round_trip(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_codec *codec = fs_codec_new(&err);
    for (int t = 0; t < INV_CMD_COUNT; t++) {
        inv_command c = reserve("prod-1", "order-1", "member-1", 2);
        c.type = (inv_cmd_type)t;
        c.item_index = 1;
        c.item_count = 3;
        snprintf(c.reason, sizeof c.reason, "EXPIRED");
        snprintf(c.f.name, sizeof c.f.name, "Name");
        c.f.has_name = true;
        c.f.price = 1234;
        c.f.has_price = true;
        c.f.sale_starts_at = T0;
        c.f.has_starts = true;
        c.f.per_user_limit = 2;
        c.f.has_limit = true;
        c.stock = 100;
        c.accept_by = c.requested_at + 2000;
        c.dedup_window_ms = 120000;
        c.sold_memory_ms = 600000;
        void *buf;
        size_t len;
        if (inv_command_encode(codec, &c, &buf, &len, &err))
            fail_msg("%s: %s", inv_cmd_name(c.type), err.msg);
        inv_command d;
        assert_int_equal(inv_command_decode_bytes(codec, buf, len, &d, &err), 0);
        free(buf);
        assert_int_equal(d.type, c.type);
        /* every command names its product but SetRetention, addressed to a partition */
        assert_string_equal(d.product_id, t == INV_CMD_SET_RETENTION ? "" : "prod-1");
        assert_int_equal(d.requested_at, c.requested_at);
        if (t == INV_CMD_SET_RETENTION) {
            assert_int_equal(d.dedup_window_ms, 120000);
            assert_int_equal(d.sold_memory_ms, 600000);
            assert_string_equal(d.actor_id, "admin");
        } else {
            assert_int_equal(d.dedup_window_ms, 0);
        }
        if (t == INV_CMD_RESERVE) {
            assert_int_equal(d.accept_by, c.accept_by);
            assert_string_equal(d.order_id, "order-1");
            assert_string_equal(d.member_id, "member-1");
            assert_int_equal(d.quantity, 2);
            assert_int_equal(d.item_index, 1);
            assert_int_equal(d.item_count, 3);
        }
        if (t == INV_CMD_DEFINE) {
            assert_string_equal(d.f.name, "Name");
            assert_int_equal(d.f.price, 1234);
            assert_int_equal(d.stock, 100);
            assert_int_equal(d.f.per_user_limit, 2);
            assert_int_equal(d.f.sale_ends_at, 0);
        }
        if (t == INV_CMD_RELEASE)
            assert_string_equal(d.reason, "EXPIRED");
    }
    /* an event is not a command */
    inv_event e = {.type = INV_EV_PAUSED, .product_id = "p"};
    void *buf;
    size_t len;
    assert_int_equal(inv_event_encode(codec, &e, &buf, &len, &err), 0);
    inv_command d;
    assert_int_equal(inv_command_decode_bytes(codec, buf, len, &d, &err), -1);
    assert_int_equal(err.cls, FS_ERR_INVALID);
    free(buf);
    fs_codec_destroy(codec);
}

#define HOUR (3600LL * 1000)
#define DAY (24 * HOUR)

/* A reservation of an order made at time t (its id carries t, as the API's do). */
static inv_command reserve_at(const char *product, char order[FS_UUID_STR_LEN + 1], const char *member,
                              int q, int64_t t)
{
    fs_uuid7_at((uint64_t)t, order);
    inv_command c = reserve(product, order, member, q);
    c.requested_at = t;
    return c;
}

/* The deduplication window and the sold-line memory: state stays bounded as the log's clock
 * moves on, a forgotten line is refused rather than decided twice, and a sold unit stops
 * counting against the member's limit once it is forgotten. */
static void test_bounded_by_time(void **state)
{
    (void)state;
    inv_state *s = inv_state_new(WINDOW);
    define(s, "p", 1000000, 2);
    char a[FS_UUID_STR_LEN + 1], o[FS_UUID_STR_LEN + 1];
    inv_command ra = reserve_at("p", a, "m", 2, T0 + HOUR);
    assert_int_equal(step(s, &ra).type, INV_EV_RESERVED);
    inv_event e = step(s, &(inv_command){.type = INV_CMD_COMMIT, .product_id = "p", .order_id = "",
                                         .requested_at = T0 + HOUR + 1000});
    assert_int_equal(e.type, INV_EV_CMD_REJECTED); /* (no order id) */
    inv_command commit = {.type = INV_CMD_COMMIT, .product_id = "p", .requested_at = T0 + 2 * HOUR};
    snprintf(commit.order_id, sizeof commit.order_id, "%s", a);
    assert_int_equal(step(s, &commit).type, INV_EV_COMMITTED);
    inv_event dup;
    ra.requested_at = T0 + 3 * HOUR;
    assert_int_equal(inv_decide(s, &ra, &dup), INV_DUPLICATE); /* inside the window */
    expect_reject(s, reserve_at("p", o, "m", 1, T0 + 3 * HOUR), INV_R_LIMIT_EXCEEDED);

    /* a day of orders, one a minute, each sold */
    int64_t t = T0 + 3 * HOUR;
    for (int i = 0; i < 60 * 24 * 50; i++) { /* 50 days */
        t += 60000;
        char member[16];
        snprintf(member, sizeof member, "b%d", i);
        inv_command r = reserve_at("p", o, member, 1, t);
        assert_int_equal(step(s, &r).type, INV_EV_RESERVED);
        inv_command cm = {.type = INV_CMD_COMMIT, .product_id = "p", .requested_at = t + 1000};
        snprintf(cm.order_id, sizeof cm.order_id, "%s", o);
        assert_int_equal(step(s, &cm).type, INV_EV_COMMITTED);
        if (i == 60 * 26) { /* 26 hours on: a's line is forgotten and its order refused */
            assert_int_equal(inv_decide(s, &ra, &e), INV_DECIDED);
            assert_int_equal(e.type, INV_EV_CMD_REJECTED);
            assert_int_equal(e.reason, INV_R_INVALID);
            assert_int_equal(inv_apply(s, &e), 0);
            assert_int_equal(inv_state_held(s, "p", "m"), 2); /* still sold: still counted */
        }
        /* never more than a window and an eighth of decided lines */
        assert_true(inv_state_decided_count(s) <= (size_t)(60 * 24 * 9 / 8 + 2));
    }
    /* 50 days on: the sold lines older than INV_SOLD_MEMORY_MS are gone, m holds nothing */
    assert_int_equal(inv_state_held(s, "p", "m"), 0);
    size_t held_lines = inv_state_reservation_count(s);
    assert_true(held_lines <= (size_t)(INV_SOLD_MEMORY_MS / 60000 + 1));
    assert_true(held_lines >= (size_t)(INV_SOLD_MEMORY_MS / 60000 - 2));
    assert_int_equal(step(s, &(inv_command){.type = INV_CMD_RESERVE, .product_id = "p",
                                            .order_id = "late", .member_id = "m", .quantity = 2,
                                            .requested_at = t + 1000, .item_count = 1})
                         .type,
                     INV_EV_RESERVED);
    /* a return of a forgotten sale adds the unit back but holds no one */
    inv_command back = {.type = INV_CMD_RESTOCK, .product_id = "p", .quantity = 1,
                        .requested_at = t + 2000};
    snprintf(back.order_id, sizeof back.order_id, "%s", a);
    assert_int_equal(step(s, &back).type, INV_EV_RESTOCKED);
    inv_product_view v;
    assert_true(inv_state_product(s, "p", &v));
    assert_int_equal(v.available + v.reserved + v.sold, v.stock);

    /* the bounded state survives a snapshot */
    void *sb;
    size_t sl;
    assert_int_equal(inv_state_save(s, &sb, &sl), 0);
    inv_state *s2 = inv_state_load(sb, sl, WINDOW);
    assert_non_null(s2);
    assert_int_equal(inv_state_reservation_count(s2), inv_state_reservation_count(s));
    assert_int_equal(inv_state_decided_count(s2), inv_state_decided_count(s));
    assert_int_equal(inv_state_horizon(s2), inv_state_horizon(s));
    assert_int_equal(inv_state_held(s2, "p", "m"), 2);
    free(sb);
    inv_state_destroy(s2);
    inv_state_destroy(s);
}

/* Through the codec, as a rebuild reads the changelog. */
static inv_event round_trip(const fs_codec *codec, const inv_event *e)
{
    fs_err err = {0};
    void *buf;
    size_t len;
    if (inv_event_encode(codec, e, &buf, &len, &err))
        fail_msg("%s: %s", inv_event_name(e->type), err.msg);
    inv_event back;
    if (inv_event_decode_bytes(codec, buf, len, &back, &err))
        fail_msg("%s: %s", inv_event_name(e->type), err.msg);
    free(buf);
    return back;
}

static uint64_t fnv1a_test(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* The windows are state set by the log (SetRetention -> RetentionSet): out of range is
 * refused; a shorter window forgets sooner and refuses the orders it forgot; lengthening it
 * again never moves the refusal point back (a forgotten line stays refused, never decided
 * twice); a sold line dropped after the sold-line memory stops counting against the limit;
 * a rebuild through the codec, a snapshot, and a version-1 snapshot (the defaults) agree. */
typedef struct {
    const fs_codec *codec;
    inv_state *s, *rebuilt, *view;
} replicas;

/* decide + apply on s, and the event through the codec applied to the other two */
static inv_event rstep(replicas *r, const inv_command *c)
{
    inv_event e = step(r->s, c);
    inv_event b = round_trip(r->codec, &e);
    assert_int_equal(inv_apply(r->rebuilt, &b), 0);
    assert_int_equal(inv_apply(r->view, &b), 0);
    return e;
}

static void test_retention_windows(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_codec *codec = fs_codec_new(&err);
    assert_non_null(codec);
    inv_state *s = inv_state_new(WINDOW);
    replicas r = {codec, s, inv_state_new(WINDOW), inv_state_new_counters()};
    assert_int_equal(inv_state_dedup_window(s), INV_DEDUP_WINDOW_MS);
    assert_int_equal(inv_state_sold_memory(s), INV_SOLD_MEMORY_MS);
    assert_true(inv_state_refuse_before(s) == INT64_MIN);
    inv_command def = cmd(INV_CMD_DEFINE, "p");
    snprintf(def.f.name, sizeof def.f.name, "Product p");
    def.f.price = 9900;
    def.f.sale_starts_at = T0;
    def.f.per_user_limit = 1;
    def.stock = 1000;
    assert_int_equal(rstep(&r, &def).type, INV_EV_DEFINED);
    int64_t t = T0 + HOUR;
    inv_command set = {.type = INV_CMD_SET_RETENTION, .actor_id = "ops", .requested_at = t,
                       .dedup_window_ms = 1000, .sold_memory_ms = 10 * 60000, .offset = -1};
    inv_event e = rstep(&r, &set); /* a second: shorter than a producer's retry */
    assert_int_equal(e.type, INV_EV_CMD_REJECTED);
    assert_int_equal(e.reason, INV_R_INVALID);
    assert_string_equal(e.command_type, "SetRetention");
    assert_int_equal(inv_state_dedup_window(s), INV_DEDUP_WINDOW_MS);
    set.dedup_window_ms = 2 * 60000;
    set.sold_memory_ms = INV_RETENTION_MAX_MS + 1;
    assert_int_equal(rstep(&r, &set).type, INV_EV_CMD_REJECTED);
    set.sold_memory_ms = 10 * 60000;
    int64_t h = inv_state_horizon(s);
    e = rstep(&r, &set);
    assert_int_equal(e.type, INV_EV_RETENTION_SET);
    assert_string_equal(e.product_id, "");
    assert_int_equal(e.dedup_window_ms, 2 * 60000);
    assert_int_equal(inv_state_dedup_window(s), 2 * 60000);
    assert_int_equal(inv_state_sold_memory(s), 10 * 60000);
    /* the operator's time does not move the shop's clock; the refusal point follows it */
    assert_int_equal(inv_state_horizon(s), h);
    assert_int_equal(inv_state_refuse_before(s), h - 2 * 60000);
    /* an event that breaks the rule does not apply */
    inv_event bad = e;
    bad.dedup_window_ms = 5;
    assert_int_equal(inv_apply(s, &bad), -1);

    /* m buys one (the limit) and pays */
    char a[FS_UUID_STR_LEN + 1], o[FS_UUID_STR_LEN + 1];
    inv_command ra = reserve_at("p", a, "m", 1, t + 1000);
    assert_int_equal(rstep(&r, &ra).type, INV_EV_RESERVED);
    inv_command commit = {.type = INV_CMD_COMMIT, .product_id = "p", .requested_at = t + 2000};
    snprintf(commit.order_id, sizeof commit.order_id, "%s", a);
    assert_int_equal(rstep(&r, &commit).type, INV_EV_COMMITTED);
    inv_event dup;
    assert_int_equal(inv_decide(s, &ra, &dup), INV_DUPLICATE);
    inv_command again = reserve_at("p", o, "m", 1, t + 3000);
    e = rstep(&r, &again);
    assert_int_equal(e.type, INV_EV_REJECTED);
    assert_int_equal(e.reason, INV_R_LIMIT_EXCEEDED);
    /* others buy, one every 30 s, for 11 minutes */
    for (int i = 0; i < 22; i++) {
        t += 30000;
        char member[16];
        snprintf(member, sizeof member, "b%d", i);
        inv_command rb = reserve_at("p", o, member, 1, t);
        assert_int_equal(step(s, &rb).type, INV_EV_RESERVED); /* (only s: the log is short) */
        assert_true(inv_state_decided_count(s) <= 2 * 9 / 8 * 2 + 4);
        if (i == 5) { /* 3 minutes on: a is older than the window and refused, not decided */
            inv_event x;
            assert_int_equal(inv_decide(s, &ra, &x), INV_DECIDED);
            assert_int_equal(x.type, INV_EV_CMD_REJECTED);
            assert_int_equal(x.reason, INV_R_INVALID);
            assert_int_equal(inv_state_held(s, "p", "m"), 1); /* still sold: still counted */
        }
    }
    /* 11 minutes on: m's sold line is forgotten, m may buy again */
    assert_int_equal(inv_state_held(s, "p", "m"), 0);
    /* lengthened again: the refusal point stays where it was */
    int64_t refuse = inv_state_refuse_before(s);
    assert_true(refuse >= t - 2 * 60000);
    inv_command longer = {.type = INV_CMD_SET_RETENTION, .actor_id = "ops", .requested_at = t,
                          .dedup_window_ms = INV_DEDUP_WINDOW_MS, .sold_memory_ms = INV_SOLD_MEMORY_MS,
                          .offset = -1};
    inv_event le;
    assert_int_equal(inv_decide(s, &longer, &le), INV_DECIDED);
    assert_int_equal(inv_apply(s, &le), 0);
    assert_int_equal(inv_state_refuse_before(s), refuse);
    inv_event x;
    assert_int_equal(inv_decide(s, &ra, &x), INV_DECIDED);
    assert_int_equal(x.type, INV_EV_CMD_REJECTED); /* still refused, not decided a second time */
    inv_command mine = reserve_at("p", o, "m", 1, t + 1000);
    assert_int_equal(step(s, &mine).type, INV_EV_RESERVED);

    /* the rebuilt state (through the codec) took the same windows; the view ignores them */
    assert_int_equal(inv_state_dedup_window(r.rebuilt), 2 * 60000);
    assert_int_equal(inv_state_sold_memory(r.rebuilt), 10 * 60000);
    assert_int_equal(inv_state_refuse_before(r.rebuilt), inv_state_horizon(r.rebuilt) - 2 * 60000);
    assert_int_equal(inv_state_product_count(r.view), 1);

    /* a snapshot keeps the windows and the refusal point */
    void *sb;
    size_t sl;
    assert_int_equal(inv_state_save(s, &sb, &sl), 0);
    inv_state *s2 = inv_state_load(sb, sl, WINDOW);
    assert_non_null(s2);
    assert_int_equal(inv_state_dedup_window(s2), INV_DEDUP_WINDOW_MS);
    assert_int_equal(inv_state_sold_memory(s2), INV_SOLD_MEMORY_MS);
    assert_int_equal(inv_state_refuse_before(s2), refuse);
    assert_int_equal(inv_decide(s2, &ra, &x), INV_DECIDED);
    assert_int_equal(x.type, INV_EV_CMD_REJECTED);
    inv_state_destroy(s2);
    /* a version-1 snapshot (before the windows: no such fields) loads with the defaults */
    size_t at = 4 + 4 + 3 * 8; /* magic, version, horizon, swept_at, last offset */
    unsigned char *v1 = malloc(sl);
    memcpy(v1, sb, at);
    memcpy(v1 + at, (unsigned char *)sb + at + 24, sl - 8 - at - 24);
    size_t v1len = sl - 24;
    v1[4] = 1;
    uint64_t sum = fnv1a_test(v1, v1len - 8);
    for (int i = 0; i < 8; i++)
        v1[v1len - 8 + i] = (unsigned char)(sum >> (8 * i));
    s2 = inv_state_load(v1, v1len, WINDOW);
    assert_non_null(s2);
    assert_int_equal(inv_state_dedup_window(s2), INV_DEDUP_WINDOW_MS);
    assert_int_equal(inv_state_refuse_before(s2), inv_state_horizon(s2) - INV_DEDUP_WINDOW_MS);
    assert_int_equal(inv_state_reservation_count(s2), inv_state_reservation_count(s));
    inv_state_destroy(s2);
    /* a version-2 snapshot whose windows break the rule is not loaded */
    memset((unsigned char *)sb + at, 0, 8); /* a deduplication window of 1 ms */
    ((unsigned char *)sb)[at] = 1;
    sum = fnv1a_test(sb, sl - 8);
    for (int i = 0; i < 8; i++)
        ((unsigned char *)sb)[sl - 8 + i] = (unsigned char)(sum >> (8 * i));
    assert_null(inv_state_load(sb, sl, WINDOW));
    free(v1);
    free(sb);
    inv_state_destroy(s);
    inv_state_destroy(r.rebuilt);
    inv_state_destroy(r.view);
    fs_codec_destroy(codec);
}

/* A line the product still holds is decided, also after the deduplication window has
 * forgotten it (found by tests/fuzz/fuzz_inventory.c: an order id without a time in it,
 * reserved again two days later, got a second reservation under the same key, and the
 * first one's units could never be released). */
static void test_held_line_not_decided_twice(void **state)
{
    (void)state;
    inv_state *s = inv_state_new(WINDOW);
    define(s, "p", 10, 0);
    inv_command r = reserve("p", "plain-order", "m", 2);
    r.requested_at = T0 + HOUR;
    assert_int_equal(step(s, &r).type, INV_EV_RESERVED);
    /* two days on: the window has swept the decided line */
    step(s, &(inv_command){.type = INV_CMD_PAUSE, .product_id = "p", .requested_at = T0 + 2 * DAY});
    step(s, &(inv_command){.type = INV_CMD_RESUME, .product_id = "p", .requested_at = T0 + 2 * DAY});
    assert_int_equal(inv_state_decided_count(s), 0);
    inv_event e;
    r.requested_at = T0 + 2 * DAY + 1;
    assert_int_equal(inv_decide(s, &r, &e), INV_DUPLICATE);
    /* and an event that would reserve it again does not apply */
    inv_event twice = {.type = INV_EV_RESERVED, .product_id = "p", .order_id = "plain-order",
                       .member_id = "m", .quantity = 1, .occurred_at = T0 + 2 * DAY + 2};
    assert_int_equal(inv_apply(s, &twice), -1);
    /* released, the line can be decided anew */
    e = step(s, &(inv_command){.type = INV_CMD_RELEASE, .product_id = "p", .order_id = "plain-order",
                               .requested_at = T0 + 2 * DAY + 3});
    assert_int_equal(e.type, INV_EV_RELEASED);
    inv_product_view v;
    assert_true(inv_state_product(s, "p", &v));
    assert_int_equal(v.available, 10);
    assert_int_equal(v.reserved, 0);
    inv_state_destroy(s);
}

/* A restock in a corrupt log that would take the stock past INT32_MAX is refused and
 * changes nothing, as decide() refuses the command (found by tests/fuzz/fuzz_inventory.c:
 * the stock overflowed, undefined behaviour, while rebuilding from such a log). */
static void test_forged_restock_cannot_overflow(void **state)
{
    (void)state;
    inv_state *s = inv_state_new(WINDOW);
    define(s, "p", 2, 0);
    inv_event big = {.type = INV_EV_RESTOCKED, .product_id = "p", .quantity = INT32_MAX,
                     .command_offset = 9, .occurred_at = T0 + 5};
    assert_int_equal(inv_apply(s, &big), -1);
    inv_product_view v;
    assert_true(inv_state_product(s, "p", &v));
    assert_int_equal(v.stock, 2);
    assert_int_equal(v.available, 2);
    assert_int_equal(inv_state_last_command_offset(s), -1);
    big.quantity = INT32_MAX - 2;
    assert_int_equal(inv_apply(s, &big), 0);
    assert_true(inv_state_product(s, "p", &v));
    assert_int_equal(v.stock, INT32_MAX);
    inv_state_destroy(s);
}

/* The fence of a command the API gave up on: a reserve appended (logged_at, the record's
 * LogAppendTime) after its accept_by is refused TIMED_OUT whatever the stock, and decides
 * nothing else; at accept_by exactly, or without either time, it is an order as before. */
static void test_accept_deadline(void **state)
{
    (void)state;
    inv_state *s = inv_state_new(WINDOW);
    define(s, "p1", 3, 0);
    inv_command late = reserve("p1", "o1", "m1", 1);
    late.accept_by = late.requested_at + 2000;
    late.logged_at = late.accept_by + 1;
    inv_event e = step(s, &late);
    assert_int_equal(e.type, INV_EV_REJECTED);
    assert_int_equal(e.reason, INV_R_TIMED_OUT);
    assert_int_equal(e.available, 3);
    inv_reject_answer a = inv_reject_answer_of(INV_R_TIMED_OUT);
    assert_string_equal(a.code, "ORDER_TIMED_OUT");
    assert_int_equal(a.http_status, 503);
    /* decided: the same line again (a retry of the same record) is a duplicate */
    inv_event dup;
    assert_int_equal(inv_decide(s, &late, &dup), INV_DUPLICATE);

    inv_command in_time = reserve("p1", "o2", "m1", 1);
    in_time.accept_by = in_time.requested_at + 2000;
    in_time.logged_at = in_time.accept_by;
    assert_int_equal(step(s, &in_time).type, INV_EV_RESERVED);
    inv_command no_deadline = reserve("p1", "o3", "m1", 1); /* a saga's line: accept_by 0 */
    no_deadline.logged_at = no_deadline.requested_at + 3600000;
    assert_int_equal(step(s, &no_deadline).type, INV_EV_RESERVED);
    inv_command create_time = reserve("p1", "o4", "m1", 1); /* topic without LogAppendTime */
    create_time.accept_by = create_time.requested_at + 2000;
    assert_int_equal(step(s, &create_time).type, INV_EV_RESERVED);
    inv_product_view v;
    assert_true(inv_state_product(s, "p1", &v));
    assert_int_equal(v.available, 0);
    assert_int_equal(v.reserved, 3);
    inv_state_destroy(s);
}

/* The codec's field names against the inventory schemas, both ways: a misspelt name in the
 * codec is in no schema, and the field it meant is then handled by no name. */
static void test_codec_vocabulary(void **state)
{
    (void)state;
    const char *const *vocab = inv_codec_fields();
    size_t nv = 0;
    while (vocab[nv])
        nv++;
    bool *used = calloc(nv, sizeof *used);
    assert_non_null(used);
    int schemas = 0;
    for (size_t i = 0; i < fs_embedded_schemas_count; i++) {
        const fs_embedded_schema *e = &fs_embedded_schemas[i];
        if (strncmp(e->path, "inventory/", 10) || strstr(e->path, ".v")) /* readers only */
            continue;
        json_t *sc = json_loads(e->json, 0, NULL);
        assert_non_null(sc);
        size_t k;
        json_t *f;
        json_array_foreach(json_object_get(sc, "fields"), k, f)
        {
            const char *name = json_string_value(json_object_get(f, "name"));
            size_t j = 0;
            while (j < nv && strcmp(vocab[j], name))
                j++;
            if (j == nv)
                print_error("%s: field %s is not handled by the codec\n", e->path, name);
            assert_true(j < nv);
            used[j] = true;
        }
        json_decref(sc);
        schemas++;
    }
    assert_true(schemas >= INV_CMD_COUNT + INV_EV_COUNT);
    for (size_t j = 0; j < nv; j++) {
        if (!used[j])
            print_error("codec field %s is in no inventory schema\n", vocab[j]);
        assert_true(used[j]);
    }
    free(used);
}

/* The records of a snapshot (inventory_snapshot.h), captured instead of produced. */
typedef struct {
    char key[16][32];
    unsigned char *val[16];
    size_t len[16];
    int n;
} captured;

static int capture(void *ctx, const char *key, const void *value, size_t len, fs_err *err)
{
    (void)err;
    captured *c = ctx;
    assert_true(c->n < 16);
    snprintf(c->key[c->n], sizeof c->key[c->n], "%s", key);
    c->val[c->n] = malloc(len);
    assert_non_null(c->val[c->n]);
    memcpy(c->val[c->n], value, len);
    c->len[c->n++] = len;
    return 0;
}

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void captured_free(captured *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->val[i]);
    c->n = 0;
}

/* A snapshot's records (inv_snapshot_write_bytes, as the processor or its child hands them
 * over): chunks of at most 512 KiB in order, then a manifest that names them and the
 * offsets given; the chunks put together are the state's bytes, and they load. */
static void test_snapshot_records(void **state)
{
    (void)state;
    inv_state *s = inv_state_new(WINDOW);
    define(s, "p", 100000, 0);
    for (int i = 0; i < 8000; i++) { /* ~0.9 MB: a whole chunk and a part */
        char order[FS_UUID_STR_LEN + 1];
        assert_int_equal(fs_uuid7_at((uint64_t)(T0 + 1000 + i), order), 0);
        inv_command c = reserve("p", order, "member-1", 1);
        c.offset = 10 + i;
        step(s, &c);
    }
    captured a = {0};
    fs_err err = {0};
    void *sb;
    size_t sl;
    assert_int_equal(inv_state_save(s, &sb, &sl), 0);
    assert_int_equal(inv_snapshot_write_bytes(sb, sl, 1234, inv_state_last_command_offset(s), 4321, capture,
                                              &a, &err),
                     0);
    assert_int_equal(a.n, (int)((sl + INV_SNAPSHOT_CHUNK - 1) / INV_SNAPSHOT_CHUNK) + 1);
    assert_true(a.n >= 3);
    assert_string_equal(a.key[a.n - 1], "manifest");
    unsigned char *whole = malloc(sl);
    assert_non_null(whole);
    size_t at = 0;
    for (int i = 0; i < a.n - 1; i++) {
        char want[32];
        snprintf(want, sizeof want, "chunk-%d", i);
        assert_string_equal(a.key[i], want);
        /* "FSSC", the snapshot's id (the same in every chunk), index, count, then the bytes */
        assert_memory_equal(a.val[i], "FSSC", 4);
        assert_memory_equal(a.val[i] + 4, a.val[0] + 4, 8);
        assert_int_equal(le32(a.val[i] + 12), i);
        assert_int_equal(le32(a.val[i] + 16), a.n - 1);
        assert_true(a.len[i] - 20 <= INV_SNAPSHOT_CHUNK);
        assert_true(at + a.len[i] - 20 <= sl);
        memcpy(whole + at, a.val[i] + 20, a.len[i] - 20);
        at += a.len[i] - 20;
    }
    assert_int_equal(at, sl);
    assert_memory_equal(whole, sb, sl);
    json_t *m = json_loadb((const char *)a.val[a.n - 1], a.len[a.n - 1], 0, NULL);
    assert_non_null(m);
    assert_int_equal(json_integer_value(json_object_get(m, "format")), 1);
    assert_int_equal(json_integer_value(json_object_get(m, "last_command_offset")), 10 + 7999);
    assert_int_equal(json_integer_value(json_object_get(m, "changelog_offset")), 1234);
    assert_int_equal(json_integer_value(json_object_get(m, "horizon")), 4321);
    assert_int_equal(json_integer_value(json_object_get(m, "chunks")), a.n - 1);
    assert_int_equal(json_integer_value(json_object_get(m, "bytes")), (json_int_t)sl);
    uint64_t id = 0;
    for (int i = 7; i >= 0; i--)
        id = id << 8 | a.val[0][4 + i];
    assert_true((uint64_t)json_integer_value(json_object_get(m, "id")) == id);
    inv_state *back = inv_state_load(whole, sl, WINDOW);
    assert_non_null(back);
    assert_int_equal(inv_state_decided_count(back), 8000);
    assert_int_equal(inv_state_last_command_offset(back), 10 + 7999);
    inv_state_destroy(back);
    json_decref(m);
    free(whole);
    free(sb);
    captured_free(&a);
    inv_state_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_commit_release_restock),
        cmocka_unit_test(test_random_invariants_and_rebuild),
        cmocka_unit_test(test_bounded_by_time),
        cmocka_unit_test(test_retention_windows),
        cmocka_unit_test(test_held_line_not_decided_twice),
        cmocka_unit_test(test_forged_restock_cannot_overflow),
        cmocka_unit_test(test_command_codec_round_trip),
        cmocka_unit_test(test_codec_vocabulary),
        cmocka_unit_test(test_accept_deadline),
        cmocka_unit_test(test_snapshot_records),
        cmocka_unit_test(test_short_copies),
    };
    return cmocka_run_group_tests_name("inv_state", tests, NULL, NULL);
}
