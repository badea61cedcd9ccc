/* The one mapping of error classes to responses (command-api/src/http.h, fs_http_fail): the
 * bytes flashsale-api writes, caught by stand-ins for civetweb's write functions. RETRIABLE
 * and ABORT are 503 UNAVAILABLE with Retry-After: 1; INVALID is the caller's 4xx when it
 * names one, else 500 as FATAL is; the error's own text is never sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http.h"

#include "fs/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- civetweb stand-ins: what http.c writes lands in `wire` ---- */

static char wire[16384];
static size_t wire_len;

int mg_write(struct mg_connection *conn, const void *buf, size_t len)
{
    (void)conn;
    assert_true(wire_len + len < sizeof wire);
    memcpy(wire + wire_len, buf, len);
    wire_len += len;
    wire[wire_len] = '\0';
    return (int)len;
}

int mg_printf(struct mg_connection *conn, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return mg_write(conn, buf, (size_t)n);
}

const struct mg_request_info *mg_get_request_info(const struct mg_connection *conn)
{
    (void)conn;
    return NULL;
}

const char *mg_get_header(const struct mg_connection *conn, const char *name)
{
    (void)conn, (void)name;
    return NULL;
}

/* ---- a request and its response ---- */

static struct mg_request_info ri;
static fs_http_req req;

static int setup(void **state)
{
    (void)state;
    memset(&ri, 0, sizeof ri);
    ri.request_method = "POST";
    ri.local_uri = "/api/members";
    memset(&req, 0, sizeof req);
    req.conn = (struct mg_connection *)&ri; /* never looked into by the stand-ins */
    req.ri = &ri;
    snprintf(req.request_id, sizeof req.request_id, "req-1");
    snprintf(req.client, sizeof req.client, "127.0.0.1");
    wire_len = 0;
    wire[0] = '\0';
    return 0;
}

typedef struct {
    int status;
    char headers[2048];
    json_t *body;
} response;

static void parse(response *r)
{
    const char *end = strstr(wire, "\r\n\r\n");
    assert_non_null(end);
    assert_int_equal(sscanf(wire, "HTTP/1.1 %d ", &r->status), 1);
    snprintf(r->headers, sizeof r->headers, "%.*s", (int)(end - wire), wire);
    json_error_t jerr;
    r->body = json_loads(end + 4, 0, &jerr);
    assert_non_null(r->body);
}

static const char *error_field(const response *r, const char *name)
{
    const char *v = json_string_value(json_object_get(json_object_get(r->body, "error"), name));
    assert_non_null(v);
    return v;
}

static bool has_header(const response *r, const char *line)
{
    return strstr(r->headers, line) != NULL;
}

static const fs_http_problem taken = {409, "EMAIL_TAKEN", "an account with this e-mail address exists"};

static void test_retriable_is_503_with_retry_after(void **state)
{
    (void)state;
    fs_err err;
    fs_err_set(&err, FS_ERR_RETRIABLE, 0, "signup: 40001 could not serialize access");
    assert_int_equal(fs_http_fail(&req, &err, "the members store is unavailable", &taken), 503);
    response r;
    parse(&r);
    assert_int_equal(r.status, 503);
    assert_true(has_header(&r, "HTTP/1.1 503 Service Unavailable\r\n"));
    assert_true(has_header(&r, "\r\nRetry-After: 1"));
    assert_true(has_header(&r, "\r\nX-Request-Id: req-1"));
    assert_string_equal(error_field(&r, "code"), "UNAVAILABLE");
    assert_string_equal(error_field(&r, "message"), "the members store is unavailable");
    assert_string_equal(error_field(&r, "request_id"), "req-1");
    assert_null(strstr(wire, "serialize")); /* the error's text is logged, never sent */
    json_decref(r.body);
}

static void test_abort_is_retriable_too(void **state)
{
    (void)state;
    fs_err err;
    fs_err_set(&err, FS_ERR_ABORT, 0, "transaction aborted");
    assert_int_equal(fs_http_fail(&req, &err, "the read model is unavailable", NULL), 503);
    response r;
    parse(&r);
    assert_true(has_header(&r, "\r\nRetry-After: 1"));
    assert_string_equal(error_field(&r, "code"), "UNAVAILABLE");
    json_decref(r.body);
}

static void test_invalid_is_the_callers_4xx(void **state)
{
    (void)state;
    fs_err err;
    fs_err_set(&err, FS_ERR_INVALID, 23505, "members: duplicate key value violates unique constraint");
    assert_int_equal(fs_http_fail(&req, &err, "the members store is unavailable", &taken), 409);
    response r;
    parse(&r);
    assert_int_equal(r.status, 409);
    assert_true(has_header(&r, "HTTP/1.1 409 Conflict\r\n"));
    assert_false(has_header(&r, "Retry-After"));
    assert_string_equal(error_field(&r, "code"), "EMAIL_TAKEN");
    assert_string_equal(error_field(&r, "message"), "an account with this e-mail address exists");
    assert_null(strstr(wire, "duplicate key"));
    json_decref(r.body);
}

static void test_invalid_without_a_meaning_is_ours(void **state)
{
    (void)state;
    fs_err err;
    fs_err_set(&err, FS_ERR_INVALID, 0, "avro encode PlaceCheckout: bad value");
    assert_int_equal(fs_http_fail(&req, &err, "no checkout schema", NULL), 500);
    response r;
    parse(&r);
    assert_true(has_header(&r, "HTTP/1.1 500 Server Error\r\n"));
    assert_false(has_header(&r, "Retry-After"));
    assert_string_equal(error_field(&r, "code"), "INTERNAL");
    assert_string_equal(error_field(&r, "message"), "no checkout schema");
    json_decref(r.body);
}

static void test_fatal_is_500_whatever_the_caller_names(void **state)
{
    (void)state;
    fs_err err;
    fs_err_set(&err, FS_ERR_FATAL, 0, "signup: 42601 syntax error");
    assert_int_equal(fs_http_fail(&req, &err, "the members store is unavailable", &taken), 500);
    response r;
    parse(&r);
    assert_string_equal(error_field(&r, "code"), "INTERNAL");
    assert_string_equal(error_field(&r, "message"), "the members store is unavailable");
    assert_null(strstr(wire, "syntax"));
    json_decref(r.body);
}

static void test_no_class_is_not_a_success(void **state)
{
    (void)state;
    fs_err err = {0};
    assert_int_equal(fs_http_fail(&req, &err, "cannot issue a token", NULL), 500);
    response r;
    parse(&r);
    assert_string_equal(error_field(&r, "code"), "INTERNAL");
    json_decref(r.body);
}

static void test_unavailable(void **state)
{
    (void)state;
    assert_int_equal(fs_http_unavailable(&req, "the order could not be queued", "produce: Local: Queue full"), 503);
    response r;
    parse(&r);
    assert_true(has_header(&r, "\r\nRetry-After: 1"));
    assert_string_equal(error_field(&r, "code"), "UNAVAILABLE");
    assert_string_equal(error_field(&r, "message"), "the order could not be queued");
    assert_null(strstr(wire, "Queue full"));
    json_decref(r.body);
}

static void test_head_sends_headers_only(void **state)
{
    (void)state;
    ri.request_method = "HEAD";
    assert_int_equal(fs_http_unavailable(&req, "out of memory", NULL), 503);
    const char *end = strstr(wire, "\r\n\r\n");
    assert_non_null(end);
    assert_string_equal(end, "\r\n\r\n");
    assert_non_null(strstr(wire, "\r\nRetry-After: 1\r\n"));
}

int main(void)
{
    fs_log_init("test", FS_LOG_ERROR); /* (a 5xx is logged as a warning) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_retriable_is_503_with_retry_after, setup),
        cmocka_unit_test_setup(test_abort_is_retriable_too, setup),
        cmocka_unit_test_setup(test_invalid_is_the_callers_4xx, setup),
        cmocka_unit_test_setup(test_invalid_without_a_meaning_is_ours, setup),
        cmocka_unit_test_setup(test_fatal_is_500_whatever_the_caller_names, setup),
        cmocka_unit_test_setup(test_no_class_is_not_a_success, setup),
        cmocka_unit_test_setup(test_unavailable, setup),
        cmocka_unit_test_setup(test_head_sends_headers_only, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
