/* The pure parts of GET /api/events (command-api/src/sse_event.h): event ids of this process
 * only, frames, the replay ring (a resume replays exactly what was missed, or says it
 * cannot), the counters behind the per-member and per-address bounds, and the request
 * parser on good, hostile and truncated header blocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sse_event.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_ids(void **state)
{
    (void)state;
    char id[SSE_ID_MAX];
    uint64_t seq = 0;
    sse_id_format(1763700000000ULL, 42, id);
    assert_true(sse_id_parse(id, 1763700000000ULL, &seq));
    assert_int_equal(seq, 42);
    assert_false(sse_id_parse(id, 1763700000001ULL, &seq)); /* another process's */
    sse_id_format(7, 0, id);
    assert_true(sse_id_parse(id, 7, &seq));
    assert_int_equal(seq, 0);
    const char *bad[] = {"", "7", "7-", "7-x", "7--1", "7-1 ", "-1", "7-99999999999999999999",
                         "7-18446744073709551616", NULL};
    for (int i = 0; bad[i]; i++)
        assert_false(sse_id_parse(bad[i], 7, &seq));
    assert_false(sse_id_parse(NULL, 7, &seq));
    assert_true(sse_id_parse("7-18446744073709551615", 7, &seq));
    assert_true(seq == UINT64_MAX);
}

static void test_frames(void **state)
{
    (void)state;
    inv_product_view v;
    memset(&v, 0, sizeof v);
    snprintf(v.id, sizeof v.id, "p-1");
    v.stock = 10, v.available = 7, v.reserved = 2, v.sold = 1;
    v.f.sale_starts_at = 1000;
    char *data = sse_stock_data(&v, 2000, 1763700000123LL);
    assert_non_null(data);
    assert_null(strchr(data, '\n')); /* one data line */
    json_t *o = json_loads(data, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "product_id")), "p-1");
    assert_int_equal(json_integer_value(json_object_get(o, "available")), 7);
    assert_int_equal(json_integer_value(json_object_get(o, "reserved")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "sold")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "stock")), 10);
    assert_string_equal(json_string_value(json_object_get(o, "sale_status")), "ON_SALE");
    assert_string_equal(json_string_value(json_object_get(o, "at")), "2025-11-21T04:40:00.123Z");
    json_decref(o);
    size_t len = 0;
    char *f = sse_frame("e-1", SSE_KIND_STOCK, data, &len);
    assert_non_null(f);
    assert_int_equal(len, strlen(f));
    assert_true(!strncmp(f, "id: e-1\nevent: stock\ndata: {", 28));
    assert_string_equal(f + len - 3, "}\n\n");
    free(f);
    free(data);
    v.paused = true;
    data = sse_stock_data(&v, 2000, 0);
    assert_non_null(strstr(data, "\"sale_status\":\"PAUSED\""));
    free(data);

    data = sse_order_data("o-1", "RESERVED", "", 3, 0);
    o = json_loads(data, 0, NULL);
    assert_null(json_object_get(o, "reason"));
    assert_int_equal(json_integer_value(json_object_get(o, "version")), 3);
    json_decref(o);
    free(data);
    data = sse_order_data("o-1", "REJECTED", "SOLD_OUT", 4, 0);
    assert_non_null(strstr(data, "\"reason\":\"SOLD_OUT\""));
    free(data);
    /* a status or reason with a newline cannot break the frame: JSON escapes it */
    data = sse_order_data("o-\n1", "X\nevent: stock", "a\r\nb", 1, 0);
    assert_null(strchr(data, '\n'));
    assert_null(strchr(data, '\r'));
    free(data);

    char hb[40];
    size_t n = sse_heartbeat(1763700000123LL, hb);
    assert_int_equal(n, strlen(hb));
    assert_string_equal(hb, ": hb 1763700000123\n\n");
}

/* A ring of 8: pushes, then every possible resume point checked against a plain list. */
static void test_ring_resume(void **state)
{
    (void)state;
    sse_ring *r = sse_ring_new(8, 99);
    assert_non_null(r);
    assert_int_equal(sse_ring_head(r), 0);
    assert_true(sse_ring_holds_after(r, 0)); /* nothing yet: nothing missed */
    assert_false(sse_ring_holds_after(r, 1));
    assert_null(sse_ring_get(r, 1));
    for (int n = 1; n <= 30; n++) {
        char key[8], data[16];
        snprintf(key, sizeof key, "k%d", n % 3);
        snprintf(data, sizeof data, "{\"n\":%d}", n);
        assert_int_equal(sse_ring_push(r, n % 2 ? SSE_KIND_STOCK : SSE_KIND_ORDER, key, data), n);
        assert_int_equal(sse_ring_head(r), n);
        uint64_t oldest = n > 8 ? (uint64_t)n - 7 : 1;
        for (uint64_t seq = 0; seq <= (uint64_t)n + 1; seq++) {
            bool held = sse_ring_holds_after(r, seq);
            assert_int_equal(held, seq <= (uint64_t)n && seq + 1 >= oldest);
            if (!held)
                continue;
            /* the replay: every later entry present, in order, with its own number */
            for (uint64_t q = seq + 1; q <= (uint64_t)n; q++) {
                const sse_entry *e = sse_ring_get(r, q);
                assert_non_null(e);
                assert_int_equal(e->seq, q);
                char want[64];
                snprintf(want, sizeof want, "id: 2r-%llu\nevent: %s\ndata: {\"n\":%llu}\n\n",
                         (unsigned long long)q, q % 2 ? "stock" : "order", (unsigned long long)q);
                assert_string_equal(e->frame, want);
                assert_int_equal(e->len, strlen(want));
                char k[8];
                snprintf(k, sizeof k, "k%llu", (unsigned long long)(q % 3));
                assert_string_equal(e->key, k);
            }
        }
        for (uint64_t q = 1; q < oldest; q++)
            assert_null(sse_ring_get(r, q)); /* overwritten */
    }
    sse_ring_destroy(r);
    sse_ring_destroy(NULL);
    assert_null(sse_ring_new(0, 1));
}

static void test_counts(void **state)
{
    (void)state;
    sse_counts *c = sse_counts_new();
    assert_non_null(c);
    for (int i = 0; i < 4; i++)
        assert_true(sse_counts_take(c, "m-1", 4));
    assert_false(sse_counts_take(c, "m-1", 4)); /* the fifth */
    assert_true(sse_counts_take(c, "m-2", 4));  /* another key is not affected */
    assert_int_equal(sse_counts_get(c, "m-1"), 4);
    sse_counts_put(c, "m-1");
    assert_true(sse_counts_take(c, "m-1", 4)); /* a place came free */
    for (int i = 0; i < 4; i++)
        sse_counts_put(c, "m-1");
    assert_int_equal(sse_counts_get(c, "m-1"), 0);
    assert_int_equal(sse_counts_keys(c), 1); /* forgotten at zero */
    sse_counts_put(c, "m-2");
    sse_counts_put(c, "never");
    assert_int_equal(sse_counts_keys(c), 0);
    for (int i = 0; i < 1000; i++)
        assert_true(sse_counts_take(c, "x", 0)); /* no limit */
    sse_counts_destroy(c);
    sse_counts_destroy(NULL);
}

static sse_problem parse(const char *text, sse_request *r)
{
    return sse_request_parse(text, strlen(text), r);
}

static void test_request(void **state)
{
    (void)state;
    sse_request *r = malloc(sizeof *r);
    assert_non_null(r);
    sse_problem p = parse("GET /api/events?product=a-1&product=b_2&x=1&product=a-1&last_event_id=q-3 HTTP/1.1\r\n"
                          "Host: x\r\nauthorization:  Bearer t.t.t \r\nX-Forwarded-For: 10.0.0.1\r\n"
                          "X-Request-Id: r-1\r\n\r\n",
                          r);
    assert_int_equal(p.status, 0);
    assert_int_equal(r->nproducts, 2); /* the repeated one once */
    assert_string_equal(r->products[0], "a-1");
    assert_string_equal(r->products[1], "b_2");
    assert_string_equal(r->last_event_id, "q-3");
    assert_string_equal(r->authorization, "Bearer t.t.t");
    assert_string_equal(r->forwarded_for, "10.0.0.1");
    assert_string_equal(r->request_id, "r-1");
    /* the header wins over the query; bare LF line ends; no query at all */
    p = parse("GET /api/events?last_event_id=q-3 HTTP/1.0\nLast-Event-ID: h-9\nX-Request-Id: bad id!\n\n", r);
    assert_int_equal(p.status, 0);
    assert_string_equal(r->last_event_id, "h-9");
    assert_string_equal(r->request_id, "");
    assert_int_equal(r->nproducts, 0);
    p = parse("GET /api/events HTTP/1.1\r\n\r\n", r);
    assert_int_equal(p.status, 0);
    assert_string_equal(r->authorization, "");
    /* percent-encoding */
    p = parse("GET /api/events?product=a%2Db HTTP/1.1\r\n\r\n", r);
    assert_int_equal(p.status, 0);
    assert_string_equal(r->products[0], "a-b");

    struct {
        const char *text;
        int status;
        const char *code;
    } bad[] = {
        {"POST /api/events HTTP/1.1\r\n\r\n", 405, "METHOD_NOT_ALLOWED"},
        {"GET /api/eventsX HTTP/1.1\r\n\r\n", 404, "NOT_FOUND"},
        {"GET /api/event HTTP/1.1\r\n\r\n", 404, "NOT_FOUND"},
        {"GET /api/events?product=a%20b HTTP/1.1\r\n\r\n", 400, "INVALID_FIELD"},
        {"GET /api/events?product= HTTP/1.1\r\n\r\n", 400, "INVALID_FIELD"},
        {"GET /api/events?product=a%00b HTTP/1.1\r\n\r\n", 400, "INVALID_FIELD"},
        {"GET /api/events?product=%zz HTTP/1.1\r\n\r\n", 400, "INVALID_FIELD"},
        {"GET /api/events?product=% HTTP/1.1\r\n\r\n", 400, "INVALID_FIELD"},
        {"GET /api/events?product=ab%4 HTTP/1.1\r\n\r\n", 400, "INVALID_FIELD"},
        {"GET /api/events?product=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
         400, "INVALID_FIELD"},
        {"GET /api/events", 400, "BAD_REQUEST"},
        {"GET /api/events\r\n\r\n", 400, "BAD_REQUEST"},
        {"GET /api/events FTP/1.1\r\n\r\n", 400, "BAD_REQUEST"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = parse(bad[i].text, r);
        assert_int_equal(p.status, bad[i].status);
        assert_string_equal(p.code, bad[i].code);
        assert_non_null(p.message);
    }
    /* 50 products pass, 51 do not */
    char line[4096] = "GET /api/events?";
    for (int i = 0; i < 51; i++) {
        char one[24];
        snprintf(one, sizeof one, "%sproduct=p%d", i ? "&" : "", i);
        strcat(line, one);
        char whole[4200];
        snprintf(whole, sizeof whole, "%s HTTP/1.1\r\n\r\n", line);
        p = parse(whole, r);
        assert_int_equal(p.status, i < 50 ? 0 : 400);
    }
    /* a header too large for its field */
    char big[3000] = "GET /api/events HTTP/1.1\r\nAuthorization: Bearer ";
    size_t bl = strlen(big);
    memset(big + bl, 'a', 2100);
    strcpy(big + bl + 2100, "\r\n\r\n");
    p = parse(big, r);
    assert_int_equal(p.status, 431);
    /* every prefix of a good request: parsed or refused, never read past its length */
    const char *good = "GET /api/events?product=a-1&last_event_id=e-1 HTTP/1.1\r\nLast-Event-ID: e-2\r\n\r\n";
    for (size_t n = 0; n < strlen(good); n++) {
        char *copy = malloc(n ? n : 1); /* exactly n bytes: ASan sees any over-read */
        memcpy(copy, good, n);
        p = sse_request_parse(copy, n, r);
        assert_true(p.status == 0 || p.status == 400 || p.status == 404 || p.status == 405);
        free(copy);
    }
    free(r);
}

static void test_responses(void **state)
{
    (void)state;
    size_t len = 0;
    char *e = sse_error_response(429, "TOO_MANY_STREAMS", "too \"many\"", "r-1", "Retry-After: 5\r\n", &len);
    assert_non_null(e);
    assert_int_equal(len, strlen(e));
    assert_true(!strncmp(e, "HTTP/1.1 429 Too Many Requests\r\n", 32));
    assert_non_null(strstr(e, "Retry-After: 5\r\n"));
    assert_non_null(strstr(e, "Connection: close\r\n"));
    const char *body = strstr(e, "\r\n\r\n") + 4;
    char cl[64];
    snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", strlen(body));
    assert_non_null(strstr(e, cl));
    json_t *o = json_loads(body, 0, NULL);
    assert_non_null(o);
    json_t *err = json_object_get(o, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "TOO_MANY_STREAMS");
    assert_string_equal(json_string_value(json_object_get(err, "message")), "too \"many\"");
    assert_string_equal(json_string_value(json_object_get(err, "request_id")), "r-1");
    json_decref(o);
    free(e);
    char *h = sse_stream_head("r-2", 2000, &len);
    assert_non_null(h);
    assert_non_null(strstr(h, "Content-Type: text/event-stream\r\n"));
    assert_non_null(strstr(h, "Cache-Control: no-cache\r\n"));
    assert_non_null(strstr(h, "X-Accel-Buffering: no\r\n"));
    assert_string_equal(h + len - 13, "retry: 2000\n\n");
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),     cmocka_unit_test(test_frames),
        cmocka_unit_test(test_ring_resume), cmocka_unit_test(test_counts),
        cmocka_unit_test(test_request), cmocka_unit_test(test_responses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
