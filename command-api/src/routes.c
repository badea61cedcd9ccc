/* Dispatch through the route table; see routes.h. Matching is a linear scan of a few dozen
 * rows comparing segments, cheaper than the request's JSON. */
#include "routes.h"
#include "http.h"
#include "metrics.h"

#include <string.h>

extern const char api_openapi_json[];
extern const size_t api_openapi_json_len;

static const api_route *routes;
static size_t nroutes;

void api_routes_set(const api_route *table, size_t n)
{
    routes = table;
    nroutes = n;
}

bool api_route_match(const char *t, const char *p)
{
    while (*t && *p) {
        if (*t == '{') {
            const char *close = strchr(t, '}');
            if (!close || *p == '/')
                return false; /* a parameter is one non-empty segment */
            while (*p && *p != '/')
                p++;
            t = close + 1;
            continue;
        }
        if (*t != *p)
            return false;
        t++, p++;
    }
    return !*t && !*p;
}

int api_routes_dispatch(struct mg_connection *conn, void *cbdata)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    char allow[128] = "";
    size_t alen = 0;
    for (size_t i = 0; i < nroutes; i++) {
        if (!api_route_match(routes[i].path, ri->local_uri))
            continue;
        if (!strcmp(routes[i].method, ri->request_method))
            return routes[i].handler(conn, cbdata);
        if (!strstr(allow, routes[i].method) && alen + strlen(routes[i].method) + 3 < sizeof allow)
            alen += (size_t)snprintf(allow + alen, sizeof allow - alen, "%s%s", alen ? ", " : "",
                                     routes[i].method);
    }
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_OTHER);
    if (alen) {
        char head[160];
        snprintf(head, sizeof head, "Allow: %s\r\n", allow);
        return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "method not allowed here", head);
    }
    return fs_http_error(&req, 404, "NOT_FOUND", "no such resource", NULL);
}

void api_routes_print(FILE *f, const api_route *table, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "{\"method\":\"%s\",\"path\":\"%s\",\"who\":\"%s\"}\n", table[i].method,
                table[i].path, table[i].who);
}

int api_openapi_serve(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_OPENAPI);
    return fs_http_text(&req, 200, "application/json", api_openapi_json, api_openapi_json_len);
}
