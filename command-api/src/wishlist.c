/* The wishlist of a member:
 *   GET    /api/wishlist               the caller's wished products, newest first, paged
 *   POST   /api/wishlist               {product_id}: 201 added, 200 if already there
 *   DELETE /api/wishlist/{product_id}  200 removed, 404 if it was not there
 * flashsale-notifier tells each wisher once when a wished product's sale opens and once per
 * restock (wishlist_notices records who was told what). Only members with an account have
 * a wishlist. HTTP only: the rows are member_store.h's. */
#include "accounts.h"
#include "member_store.h"
#include "metrics.h"

#include "fs/timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_DOWN "the members store is unavailable"

typedef struct {
    json_t *items;
    char last[INV_ID_MAX]; /* the last product id listed: the next page's cursor */
} page;

static void add_item(void *ctx, const member_wish *w)
{
    page *pg = ctx;
    char at[FS_TIME_STR_LEN];
    fs_time_format(w->added_at, at);
    json_t *it = json_pack("{s:s,s:s}", "product_id", w->product_id, "added_at", at);
    if (w->known) {
        json_object_set_new(it, "name", json_string(w->name));
        json_object_set_new(it, "available", json_integer(w->available));
    }
    json_array_append_new(pg->items, it);
    snprintf(pg->last, sizeof pg->last, "%s", w->product_id);
}

static int list(fs_http_req *req, api_ctx *a, const fs_principal *who)
{
    int limit;
    char cursor[64];
    if (!api_paging(req, &limit, cursor, sizeof cursor))
        return 400;
    page pg = {json_array(), ""};
    fs_err err = {0};
    int n = member_store_wishlist(a, who->sub, cursor, limit, add_item, &pg, &err);
    if (n < 0) {
        json_decref(pg.items);
        return fs_http_fail(req, &err, STORE_DOWN, NULL);
    }
    json_t *out = json_pack("{s:o,s:o}", "items", pg.items, "next_cursor", n > limit ? json_string(pg.last) : json_null());
    return fs_http_json(req, 200, out, NULL);
}

int api_wishlist_route(struct mg_connection *conn, void *cb)
{
    api_ctx *a = cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_WISHLIST);
    const char *path = req.ri->local_uri, *m = req.ri->request_method;
    const char *item = !strncmp(path, "/api/wishlist/", 14) ? path + 14 : NULL;
    if (!item && strcmp(path, "/api/wishlist"))
        return fs_http_error(&req, 404, "NOT_FOUND", "no such resource", NULL);
    if (item && (!*item || strchr(item, '/') || strlen(item) >= INV_ID_MAX))
        return fs_http_error(&req, 404, "NOT_FOUND", "no such resource", NULL);
    if (item ? strcmp(m, "DELETE") : strcmp(m, "GET") && strcmp(m, "POST"))
        return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", item ? "use DELETE" : "use GET or POST",
                             item ? "Allow: DELETE\r\n" : "Allow: GET, POST\r\n");
    fs_principal who;
    if (!api_auth(&req, a, NULL, &who))
        return 401;
    int64_t gen;
    member_status st;
    fs_err err = {0};
    if (api_member_state(a, who.sub, &gen, &st, &err))
        return fs_http_fail(&req, &err, STORE_DOWN, NULL);
    if (st == MEMBER_NONE || st == MEMBER_DELETED)
        return fs_http_error(&req, 404, "MEMBER_NOT_FOUND", "this token's subject has no member account", NULL);
    if (!strcmp(m, "GET"))
        return list(&req, a, &who);
    int gated = api_write_gate(&req, a, &who);
    if (gated)
        return gated;
    if (item) {
        int gone = member_store_wish_remove(a, who.sub, item, &err);
        if (gone < 0)
            return fs_http_fail(&req, &err, STORE_DOWN, NULL);
        if (!gone)
            return fs_http_error(&req, 404, "NOT_IN_WISHLIST", "this product is not in the wishlist", NULL);
        return fs_http_json(&req, 200, json_pack("{s:s,s:s}", "product_id", item, "status", "removed"), NULL);
    }
    json_t *body = api_read_json(&req, a);
    if (!body)
        return 400;
    const char *pid;
    if (!api_field_string(&req, body, "product_id", true, INV_ID_MAX - 1, &pid, NULL)) {
        json_decref(body);
        return 400;
    }
    inv_product_view v;
    if (!api_bus_product(a->bus, pid, &v)) {
        json_decref(body);
        return fs_http_error(&req, 404, "PRODUCT_NOT_FOUND", "no such product", NULL);
    }
    int added = member_store_wish_add(a, who.sub, pid, &err);
    json_decref(body);
    if (added < 0)
        return fs_http_fail(&req, &err, STORE_DOWN, NULL);
    return fs_http_json(&req, added ? 201 : 200,
                        json_pack("{s:s,s:s}", "product_id", v.id, "status", added ? "added" : "already there"),
                        NULL);
}
