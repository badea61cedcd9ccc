/* The route table of flashsale-api: every (method, path) the API serves, and the handler
 * that serves it. It is the one place routes are listed: the server dispatches through it
 * (a request no row matches gets 404 NOT_FOUND, or 405 METHOD_NOT_ALLOWED with Allow when
 * only the method differs), `flashsale-api --routes` prints it, and a test checks that
 * every row is described in docs/openapi.json.
 *
 * A path is a template: "{name}" matches one non-empty segment (no '/'). Handlers still
 * read their own path parameters from the request. The table is static data, set once at
 * start before the server runs; the dispatcher runs on civetweb worker threads. */
#ifndef FS_API_ROUTES_H
#define FS_API_ROUTES_H
#include <civetweb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    const char *method;
    const char *path;
    mg_request_handler handler;
    const char *who; /* anyone, member, owner, admin, ops: for the printed table */
} api_route;

/* Whether `path` (the request's decoded path) matches the template. */
bool api_route_match(const char *tmpl, const char *path);
void api_routes_set(const api_route *table, size_t n);
/* Finds the row and calls its handler with cbdata (main.c calls it from civetweb's
 * begin_request callback, for every request). Returns the handler's status. */
int api_routes_dispatch(struct mg_connection *conn, void *cbdata);
/* One JSON object per line: {"method","path","who"}. */
void api_routes_print(FILE *f, const api_route *table, size_t n);
/* GET /api/openapi.json: the document compiled in from docs/openapi.json (anyone). */
int api_openapi_serve(struct mg_connection *conn, void *cbdata);

#endif
