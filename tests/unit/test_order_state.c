/* The order lifecycle table and the snapshot codec (domain/src/order.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "flashsale/order.h"

#include <stdlib.h>
#include <string.h>

static void test_table(void **state)
{
    (void)state;
    /* the happy path */
    ord_status path[] = {ORD_PENDING, ORD_RESERVED, ORD_PAYING, ORD_PAID, ORD_SHIPPING,
                         ORD_DELIVERED, ORD_RETURN_REQUESTED, ORD_RETURNED};
    for (size_t i = 1; i < sizeof path / sizeof path[0]; i++)
        assert_true(ord_transition_is_valid(path[i - 1], path[i]));
    /* compensations and other ends */
    assert_true(ord_transition_is_valid(ORD_RESERVED, ORD_EXPIRED));
    assert_true(ord_transition_is_valid(ORD_RESERVED, ORD_CANCELLED));
    assert_true(ord_transition_is_valid(ORD_PAID, ORD_CANCELLED));
    assert_true(ord_transition_is_valid(ORD_PAYING, ORD_PAYMENT_FAILED));
    assert_true(ord_transition_is_valid(ORD_PENDING, ORD_REJECTED));
    /* illegal: skipping steps, leaving terminal states, going back */
    assert_false(ord_transition_is_valid(ORD_RESERVED, ORD_PAID));
    assert_false(ord_transition_is_valid(ORD_SHIPPING, ORD_CANCELLED));
    assert_false(ord_transition_is_valid(ORD_EXPIRED, ORD_PAYING));
    assert_false(ord_transition_is_valid(ORD_CANCELLED, ORD_RESERVED));
    assert_false(ord_transition_is_valid(ORD_DELIVERED, ORD_SHIPPING));
    assert_false(ord_transition_is_valid(ORD_REJECTED, ORD_RESERVED));
    for (int s = 0; s < ORD_STATUS_COUNT; s++) {
        assert_int_equal(ord_status_parse(ord_status_name((ord_status)s)), s);
        if (ord_status_is_terminal((ord_status)s))
            for (int t = 0; t < ORD_STATUS_COUNT; t++)
                if (t != ORD_NEEDS_ATTENTION)
                    assert_false(ord_transition_is_valid((ord_status)s, (ord_status)t));
    }
    assert_int_equal(ord_status_parse("NOPE"), -1);
}

/* A two-line order with every field set (restock_on_return: see test_used_size). */
static void sample_order(ord_order *o_)
{
    ord_order o;
    memset(&o, 0, sizeof o);
    strcpy(o.order_id, "order-1");
    strcpy(o.member_id, "member-1");
    o.status = ORD_PAYING;
    o.previous = ORD_RESERVED;
    strcpy(o.reason, "why");
    o.pay_by = 1795000000000LL;
    o.amount = 7500;
    o.deadline = 1795000001000LL;
    o.payment_attempts = 2;
    o.restock_on_return = false;
    o.nlines = 2;
    strcpy(o.lines[0].product_id, "p1");
    o.lines[0].quantity = 1;
    o.lines[0].unit_price = 2500;
    o.lines[0].state = LINE_COMMITTED;
    strcpy(o.lines[1].product_id, "p2");
    o.lines[1].quantity = 2;
    o.lines[1].unit_price = 2500;
    o.lines[1].state = LINE_REJECTED;
    strcpy(o.lines[1].reason, "SOLD_OUT");
    o.occurred_at = 1795000000500LL;
    o.delivered_at = 1795000000400LL;
    *o_ = o;
}

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_codec *c = fs_codec_new(&err);
    ord_order o;
    sample_order(&o);
    void *buf;
    size_t len;
    assert_int_equal(ord_encode(c, &o, &buf, &len, &err), 0);
    const fs_schema *s;
    avro_value_t v;
    assert_int_equal(fs_codec_decode(c, buf, len, &s, &v, &err), 0);
    ord_order d;
    assert_int_equal(ord_decode(&v, &d, &err), 0);
    avro_value_decref(&v);
    free(buf);
    assert_string_equal(d.order_id, "order-1");
    assert_int_equal(d.status, ORD_PAYING);
    assert_int_equal(d.previous, ORD_RESERVED);
    assert_int_equal(d.amount, 7500);
    assert_int_equal(d.deadline, o.deadline);
    assert_int_equal(d.payment_attempts, 2);
    assert_false(d.restock_on_return);
    assert_int_equal(d.nlines, 2);
    assert_int_equal(d.lines[0].state, LINE_COMMITTED);
    assert_int_equal(d.lines[1].state, LINE_REJECTED);
    assert_string_equal(d.lines[1].reason, "SOLD_OUT");
    fs_codec_destroy(c);
}

/* The order saga keeps each order in ord_order_used_size bytes: everything a snapshot holds
 * must lie in them. Encoding such a short copy (ASan: nothing is read past it) gives the same
 * bytes as the whole order, and a whole order loaded back from it equals the original up to
 * its lines. */
static void test_used_size(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_codec *c = fs_codec_new(&err);
    ord_order o;
    sample_order(&o);
    size_t used = ord_order_used_size(&o);
    assert_int_equal(used, offsetof(ord_order, lines) + 2 * sizeof(ord_line));
    assert_true(used < sizeof o / 4);
    ord_order *held = malloc(used);
    assert_non_null(held);
    memcpy(held, &o, used);
    void *whole, *part;
    size_t whole_len, part_len;
    assert_int_equal(ord_encode(c, &o, &whole, &whole_len, &err), 0);
    assert_int_equal(ord_encode(c, held, &part, &part_len, &err), 0);
    assert_int_equal(part_len, whole_len);
    assert_memory_equal(part, whole, whole_len);
    ord_order back;
    memset(&back, 0, sizeof back);
    memcpy(&back, held, ord_order_used_size(held));
    assert_memory_equal(&back, &o, used);
    assert_int_equal(back.occurred_at, o.occurred_at);
    assert_int_equal(back.delivered_at, o.delivered_at);
    free(whole);
    free(part);
    free(held);
    /* a field that is only true or false, and a line's reason, are kept too */
    o.restock_on_return = true;
    strcpy(o.lines[0].reason, "r0");
    held = malloc(ord_order_used_size(&o));
    assert_non_null(held);
    memcpy(held, &o, ord_order_used_size(&o));
    memset(&back, 0, sizeof back);
    memcpy(&back, held, ord_order_used_size(held));
    assert_true(back.restock_on_return);
    assert_string_equal(back.lines[0].reason, "r0");
    assert_string_equal(back.lines[1].reason, "SOLD_OUT");
    free(held);
    /* nlines out of range is read as 0 or ORD_MAX_LINES */
    o.nlines = -3;
    assert_int_equal(ord_order_used_size(&o), offsetof(ord_order, lines));
    o.nlines = ORD_MAX_LINES + 5;
    assert_int_equal(ord_order_used_size(&o),
                     offsetof(ord_order, lines) + ORD_MAX_LINES * sizeof(ord_line));
    assert_true(ord_order_used_size(&o) <= sizeof o);
    fs_codec_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_used_size),
    };
    return cmocka_run_group_tests_name("order_state", tests, NULL, NULL);
}
