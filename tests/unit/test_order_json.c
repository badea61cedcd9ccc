/* The Redis read model's JSON of an order's status (projections/src/order_json.c), which the
 * projector publishes and keeps and the storefront reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "order_json.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static ord_order two_lines(void)
{
    ord_order o;
    memset(&o, 0, sizeof o);
    strcpy(o.order_id, "0193a0b4-0000-7000-8000-000000000001");
    o.previous = ORD_RESERVED;
    o.status = ORD_PAYING;
    strcpy(o.reason, "card \"declined\" once");
    o.occurred_at = 1764979200123;
    o.nlines = 2;
    strcpy(o.lines[0].product_id, "p-0001");
    o.lines[0].quantity = 1, o.lines[0].unit_price = 9900, o.lines[0].state = LINE_RESERVED;
    strcpy(o.lines[1].product_id, "p-0002");
    o.lines[1].quantity = 3, o.lines[1].unit_price = 150, o.lines[1].state = LINE_COMMITTED;
    return o;
}

static void test_changed_status_has_history(void **state)
{
    (void)state;
    ord_order o = two_lines();
    rm_order_json j;
    assert_int_equal(rm_order_json_make(&o, &j), 0);
    assert_string_equal(j.items, "[{\"product_id\":\"p-0001\",\"quantity\":1,\"unit_price\":9900,\"state\":\"RESERVED\"},"
                                 "{\"product_id\":\"p-0002\",\"quantity\":3,\"unit_price\":150,\"state\":\"COMMITTED\"}]");
    /* keys in the order written (jansson keeps insertion order) */
    assert_string_equal(j.history, "{\"status\":\"PAYING\",\"previous\":\"RESERVED\","
                                   "\"reason\":\"card \\\"declined\\\" once\",\"at\":1764979200123}");
    assert_string_equal(j.message, "{\"order_id\":\"0193a0b4-0000-7000-8000-000000000001\",\"status\":\"PAYING\"}");
    rm_order_json_free(&j);
    assert_null(j.items);
    assert_null(j.history);
    assert_null(j.message);
}

static void test_same_status_has_no_history(void **state)
{
    (void)state;
    ord_order o = two_lines();
    o.previous = o.status; /* a snapshot that changed no status (e.g. a second PAID) */
    rm_order_json j;
    assert_int_equal(rm_order_json_make(&o, &j), 0);
    assert_null(j.history);
    assert_non_null(j.items);
    assert_string_equal(j.message, "{\"order_id\":\"0193a0b4-0000-7000-8000-000000000001\",\"status\":\"PAYING\"}");
    rm_order_json_free(&j);
}

static void test_no_lines(void **state)
{
    (void)state;
    ord_order o = two_lines();
    o.nlines = 0;
    rm_order_json j;
    assert_int_equal(rm_order_json_make(&o, &j), 0);
    assert_string_equal(j.items, "[]");
    rm_order_json_free(&j);
}

/* A reason cut in the middle of a character (the snapshot's field is fixed-size): kept, its
 * bytes above ASCII as '?', and the entry still written (a refusal would stop the projector). */
static void test_text_that_is_not_utf8(void **state)
{
    (void)state;
    ord_order o = two_lines();
    strcpy(o.reason, "\xea\xb2\xb0\xec\xa0"); /* one whole Hangul syllable, then half of one */
    rm_order_json j;
    assert_int_equal(rm_order_json_make(&o, &j), 0);
    assert_string_equal(j.history, "{\"status\":\"PAYING\",\"previous\":\"RESERVED\",\"reason\":\"?????\","
                                   "\"at\":1764979200123}");
    rm_order_json_free(&j);
}

/* Out of memory at every allocation in turn: -1 with nothing left allocated (ASan and
 * valgrind see the leaks), or the whole JSON. */
static long allocs_left;
static void *failing_malloc(size_t n)
{
    return allocs_left-- > 0 ? malloc(n) : NULL;
}

static void test_out_of_memory(void **state)
{
    (void)state;
    ord_order o = two_lines();
    bool whole = false;
    for (long n = 0; n < 200 && !whole; n++) {
        allocs_left = n;
        json_set_alloc_funcs(failing_malloc, free);
        rm_order_json j;
        int rc = rm_order_json_make(&o, &j);
        json_set_alloc_funcs(malloc, free);
        if (rc) {
            assert_null(j.items);
            assert_null(j.history);
            assert_null(j.message);
            continue;
        }
        whole = true;
        assert_non_null(j.history);
        assert_string_equal(j.message, "{\"order_id\":\"0193a0b4-0000-7000-8000-000000000001\",\"status\":\"PAYING\"}");
        rm_order_json_free(&j);
    }
    assert_true(whole);
}

/* The decision's JSON (before the saga's first snapshot) is the snapshot's JSON of the same
 * one-line order, byte for byte, for flashsale's own ids (the direct path) and for ids that
 * need escaping or are not UTF-8 (through jansson): a reader sees one shape either way. */
static void test_decision_json_is_the_snapshots(void **state)
{
    (void)state;
    const char *ids[][2] = {
        {"0193a0b4-0000-7000-8000-000000000001", "0193a0b4-0000-7000-8000-00000000beef"},
        {"o/1 x~%s", "p/~2 {}[]:,'%d%%"}, /* plain (the direct path): slash, space, punctuation, format signs */
        {"o\"1\\", "p\"q\\r"},         /* a quote and a backslash */
        {"o\t1\n", "p\x01\x1f"},         /* control characters */
        {"o-\xea\xb2\xb0", "p/\xec\xa0\x80"}, /* UTF-8 text, and a slash */
        {"o-\xea\xb2", "p-\xff"},         /* not UTF-8: '?' per byte above ASCII */
        {"", ""},
    };
    const struct {
        const char *status;
        ord_status o;
        line_state l;
    } st[] = {{"RESERVED", ORD_RESERVED, LINE_RESERVED}, {"REJECTED", ORD_REJECTED, LINE_REJECTED}};
    const struct {
        int32_t quantity;
        int64_t unit_price;
    } num[] = {{2, 12345}, {INT32_MIN, INT64_MIN}, {INT32_MAX, INT64_MAX}, {-1, -9900}, {0, 0}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        for (size_t k = 0; k < 2 * sizeof num / sizeof num[0]; k++) {
            ord_order o;
            memset(&o, 0, sizeof o);
            strcpy(o.order_id, ids[i][0]);
            size_t si = k % 2, ni = k / 2;
            o.previous = o.status = st[si].o;
            o.nlines = 1;
            strcpy(o.lines[0].product_id, ids[i][1]);
            o.lines[0].quantity = num[ni].quantity, o.lines[0].unit_price = num[ni].unit_price;
            o.lines[0].state = st[si].l;
            rm_order_json j;
            assert_int_equal(rm_order_json_make(&o, &j), 0);
            char items[768], msg[512];
            assert_int_equal(rm_decision_json(ids[i][0], ids[i][1], num[ni].quantity, num[ni].unit_price,
                                              st[si].status, items, sizeof items, msg, sizeof msg),
                             0);
            assert_string_equal(items, j.items);
            assert_string_equal(msg, j.message);
            json_error_t e;
            json_t *parsed = json_loads(items, 0, &e);
            assert_non_null(parsed);
            json_decref(parsed);
            rm_order_json_free(&j);
        }
    /* the longest ids the events carry (63 bytes), every byte escaped as \u00XX, with the
     * longest numbers: they fit the projector's buffers */
    char worst[64];
    memset(worst, 0x01, 63);
    worst[63] = '\0';
    char items[768], msg[512];
    assert_int_equal(
        rm_decision_json(worst, worst, INT32_MIN, INT64_MIN, "REJECTED", items, sizeof items, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "\\u0001\\u0001"));
    assert_non_null(strstr(items, "-9223372036854775808"));
}

/* Too small a buffer: -1, on both paths, never a cut JSON; a buffer of exactly the length
 * and its NUL is enough. */
static void test_decision_json_too_small(void **state)
{
    (void)state;
    const char *oids[] = {"o-1", "o\"1"}; /* the direct path, then jansson's */
    for (int p = 0; p < 2; p++) {
        char items[128], msg[64];
        assert_int_equal(rm_decision_json(oids[p], "p-1", 1, 1, "RESERVED", items, sizeof items, msg, sizeof msg), 0);
        size_t il = strlen(items) + 1, ml = strlen(msg) + 1;
        char i2[128], m2[64];
        assert_int_equal(rm_decision_json(oids[p], "p-1", 1, 1, "RESERVED", i2, il, m2, ml), 0);
        assert_string_equal(i2, items);
        assert_string_equal(m2, msg);
        assert_int_equal(rm_decision_json(oids[p], "p-1", 1, 1, "RESERVED", i2, il - 1, m2, ml), -1);
        assert_int_equal(rm_decision_json(oids[p], "p-1", 1, 1, "RESERVED", i2, il, m2, ml - 1), -1);
    }
    char items[128], msg[64], small[8];
    assert_int_equal(rm_decision_json("o-1", "p-1", 1, 1, "RESERVED", items, sizeof items, msg, sizeof msg), 0);
    assert_string_equal(msg, "{\"order_id\":\"o-1\",\"status\":\"RESERVED\"}");
    assert_int_equal(rm_decision_json("o-1", "p-1", 1, 1, "RESERVED", small, sizeof small, msg, sizeof msg), -1);
    assert_int_equal(rm_decision_json("o-1", "p-1", 1, 1, "RESERVED", items, sizeof items, small, sizeof small), -1);
    assert_int_equal(rm_decision_json("o\"1", "p-1", 1, 1, "RESERVED", small, sizeof small, msg, sizeof msg), -1);
    assert_int_equal(rm_decision_json("o\"1", "p-1", 1, 1, "RESERVED", items, sizeof items, small, sizeof small), -1);
}

/* Out of memory at every allocation in turn on jansson's path: -1, or the whole JSON; leaks
 * are ASan's and valgrind's to find. */
static void test_decision_json_out_of_memory(void **state)
{
    (void)state;
    char want_items[768], want_msg[512];
    assert_int_equal(rm_decision_json("o\"1", "p\xff", 3, 7, "RESERVED", want_items, sizeof want_items, want_msg,
                                      sizeof want_msg),
                     0);
    bool whole = false;
    for (long n = 0; n < 200 && !whole; n++) {
        allocs_left = n;
        json_set_alloc_funcs(failing_malloc, free);
        char items[768], msg[512];
        int rc = rm_decision_json("o\"1", "p\xff", 3, 7, "RESERVED", items, sizeof items, msg, sizeof msg);
        json_set_alloc_funcs(malloc, free);
        if (rc)
            continue;
        whole = true;
        assert_string_equal(items, want_items);
        assert_string_equal(msg, want_msg);
    }
    assert_true(whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_changed_status_has_history),
        cmocka_unit_test(test_same_status_has_no_history),
        cmocka_unit_test(test_no_lines),
        cmocka_unit_test(test_text_that_is_not_utf8),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_decision_json_is_the_snapshots),
        cmocka_unit_test(test_decision_json_too_small),
        cmocka_unit_test(test_decision_json_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
