/* flashsale-api's route table dispatch (command-api/src/routes.c, included here to reach it
 * with stand-ins for civetweb and the response helpers): a template parameter is exactly one
 * non-empty segment, literal rows and parameter rows both route to their handler, another
 * method on a known path is 405 with every allowed method in Allow, anything else is 404;
 * and the printed table is one JSON object per row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../command-api/src/routes.c"

#include <jansson.h>
#include <stdlib.h>

const char api_openapi_json[] = "{}";
const size_t api_openapi_json_len = 2;

/* ---- stand-ins: the request the dispatcher sees, and what it answered ---- */
static struct mg_request_info fake_ri;
static int answered_status, handled_by;
static char answered_code[64], answered_headers[256];

const struct mg_request_info *mg_get_request_info(const struct mg_connection *conn)
{
    (void)conn;
    return &fake_ri;
}

void fs_http_req_init(fs_http_req *req, struct mg_connection *conn, int route)
{
    memset(req, 0, sizeof *req);
    req->conn = conn;
    req->ri = &fake_ri;
    req->route = route;
}

int fs_http_error(fs_http_req *req, int status, const char *code, const char *message, const char *extra)
{
    (void)req, (void)message;
    answered_status = status;
    snprintf(answered_code, sizeof answered_code, "%s", code);
    snprintf(answered_headers, sizeof answered_headers, "%s", extra ? extra : "");
    return status;
}

int fs_http_text(fs_http_req *req, int status, const char *content_type, const char *body, size_t len)
{
    (void)req, (void)content_type, (void)body, (void)len;
    answered_status = status;
    return status;
}

static int h1(struct mg_connection *c, void *cb)
{
    (void)c, (void)cb;
    handled_by = 1;
    return 200;
}
static int h2(struct mg_connection *c, void *cb)
{
    (void)c, (void)cb;
    handled_by = 2;
    return 200;
}
static int h3(struct mg_connection *c, void *cb)
{
    (void)c, (void)cb;
    handled_by = 3;
    return 200;
}

static const api_route table[] = {
    {"GET", "/api/products", h1, "anyone"},
    {"POST", "/api/products", h1, "admin"},
    {"GET", "/api/products/{product_id}", h2, "anyone"},
    {"PATCH", "/api/products/{product_id}", h2, "admin"},
    {"POST", "/api/products/{product_id}/restock", h2, "admin"},
    {"GET", "/api/members/me", h3, "member"},
};

static int dispatch(const char *method, const char *uri)
{
    fake_ri.request_method = method;
    fake_ri.local_uri = uri;
    handled_by = 0;
    answered_status = 0;
    answered_code[0] = answered_headers[0] = '\0';
    api_routes_set(table, sizeof table / sizeof table[0]);
    return api_routes_dispatch(NULL, NULL);
}

static void test_match(void **state)
{
    (void)state;
    assert_true(api_route_match("/api/products", "/api/products"));
    assert_false(api_route_match("/api/products", "/api/products/"));
    assert_false(api_route_match("/api/products", "/api/productsX"));
    assert_false(api_route_match("/api/products", "/api/product"));
    assert_true(api_route_match("/api/products/{id}", "/api/products/abc"));
    assert_false(api_route_match("/api/products/{id}", "/api/products/"));
    assert_false(api_route_match("/api/products/{id}", "/api/products/a/b"));
    assert_true(api_route_match("/api/products/{id}/stock", "/api/products/abc/stock"));
    assert_false(api_route_match("/api/products/{id}/stock", "/api/products//stock"));
    assert_false(api_route_match("/api/products/{id}/stock", "/api/products/abc/stocks"));
    assert_true(api_route_match("/a/{x}/{y}", "/a/1/2"));
    assert_false(api_route_match("/a/{x}/{y}", "/a/1"));
    assert_false(api_route_match("/a/{x", "/a/1")); /* an unclosed parameter matches nothing */
}

static void test_dispatch(void **state)
{
    (void)state;
    assert_int_equal(dispatch("GET", "/api/products"), 200);
    assert_int_equal(handled_by, 1);
    assert_int_equal(dispatch("POST", "/api/products"), 200);
    assert_int_equal(handled_by, 1);
    assert_int_equal(dispatch("PATCH", "/api/products/p1"), 200);
    assert_int_equal(handled_by, 2);
    assert_int_equal(dispatch("POST", "/api/products/p1/restock"), 200);
    assert_int_equal(handled_by, 2);
    assert_int_equal(dispatch("GET", "/api/members/me"), 200);
    assert_int_equal(handled_by, 3);

    assert_int_equal(dispatch("DELETE", "/api/products"), 405);
    assert_int_equal(handled_by, 0);
    assert_string_equal(answered_code, "METHOD_NOT_ALLOWED");
    assert_string_equal(answered_headers, "Allow: GET, POST\r\n");
    assert_int_equal(dispatch("GET", "/api/products/p1/restock"), 405);
    assert_string_equal(answered_headers, "Allow: POST\r\n");

    const char *unknown[] = {"/", "/api", "/api/products/", "/api/products/p1/pause", "/api/products/p1/restock/x",
                             "/api/members", "/api/members/me/", "/api/productsX"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_int_equal(dispatch("GET", unknown[i]), 404);
        assert_int_equal(handled_by, 0);
        assert_string_equal(answered_code, "NOT_FOUND");
    }
}

static void test_print(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    api_routes_print(f, table, sizeof table / sizeof table[0]);
    fclose(f);
    size_t rows = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), rows++) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "method")), table[rows].method);
        assert_string_equal(json_string_value(json_object_get(o, "path")), table[rows].path);
        json_decref(o);
    }
    assert_int_equal(rows, sizeof table / sizeof table[0]);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
