/* The wishlist of a member:
 *   GET    /api/wishlist               the caller's wished products, newest first, paged
 *   POST   /api/wishlist               {product_id}: 201 added, 200 if already there
 *   DELETE /api/wishlist/{product_id}  200 removed, 404 if it was not there
 * flashsale-notifier tells each wisher once when a wished product's sale opens and once per
 * restock (wishlist_notices records who was told what). Only members with an account have
 * a wishlist. */
#include "accounts.h"
#include "metrics.h"

#include "fs/timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int store_down(fs_http_req *req)
{
    return fs_http_error(req, 503, "UNAVAILABLE", "the members store is unavailable", "Retry-After: 1\r\n");
}

static int list(fs_http_req *req, api_ctx *a, const fs_principal *who)
{
    int limit;
    char cursor[64];
    if (!api_paging(req, &limit, cursor, sizeof cursor))
        return 400;
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    if (!c)
        return store_down(req);
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    PGresult *r = PQexecParams(c,
                               "SELECT w.product_id, (extract(epoch FROM w.created_at) * 1000)::bigint,"
                               " p.name, p.available, p.sale_starts_at IS NOT NULL"
                               " FROM wishlist w LEFT JOIN products p USING (product_id)"
                               " WHERE w.member_id = $1 AND ($2 = '' OR w.product_id < $2)"
                               " ORDER BY w.product_id DESC LIMIT $3::integer",
                               3, NULL, (const char *[]){who->sub, cursor, lim}, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        /* the products table is the projector's; without it, the list alone */
        r = PQexecParams(c,
                         "SELECT product_id, (extract(epoch FROM created_at) * 1000)::bigint, NULL, NULL, false"
                         " FROM wishlist WHERE member_id = $1 AND ($2 = '' OR product_id < $2)"
                         " ORDER BY product_id DESC LIMIT $3::integer",
                         3, NULL, (const char *[]){who->sub, cursor, lim}, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            PQclear(r);
            return store_down(req);
        }
    }
    int n = PQntuples(r), shown = n > limit ? limit : n;
    json_t *items = json_array();
    for (int i = 0; i < shown; i++) {
        char at[FS_TIME_STR_LEN];
        fs_time_format(atoll(PQgetvalue(r, i, 1)), at);
        json_t *it = json_pack("{s:s,s:s}", "product_id", PQgetvalue(r, i, 0), "added_at", at);
        if (!PQgetisnull(r, i, 2)) {
            json_object_set_new(it, "name", json_string(PQgetvalue(r, i, 2)));
            json_object_set_new(it, "available", json_integer(atoll(PQgetvalue(r, i, 3))));
        }
        json_array_append_new(items, it);
    }
    json_t *out = json_pack("{s:o,s:o}", "items", items, "next_cursor",
                            n > limit ? json_string(PQgetvalue(r, shown - 1, 0)) : json_null());
    PQclear(r);
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
    if (api_member_state(a, who.sub, &gen, &st))
        return store_down(&req);
    if (st == MEMBER_NONE || st == MEMBER_DELETED)
        return fs_http_error(&req, 404, "MEMBER_NOT_FOUND", "this token's subject has no member account", NULL);
    if (!strcmp(m, "GET"))
        return list(&req, a, &who);
    int gated = api_write_gate(&req, a, &who);
    if (gated)
        return gated;
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    if (!c)
        return store_down(&req);
    if (item) {
        PGresult *r = PQexecParams(c, "DELETE FROM wishlist WHERE member_id = $1 AND product_id = $2", 2, NULL,
                                   (const char *[]){who.sub, item}, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            PQclear(r);
            return store_down(&req);
        }
        bool gone = atoi(PQcmdTuples(r)) == 1;
        PQclear(r);
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
    PGresult *r = PQexecParams(c,
                               "INSERT INTO wishlist (member_id, product_id) VALUES ($1, $2)"
                               " ON CONFLICT DO NOTHING",
                               2, NULL, (const char *[]){who.sub, pid}, NULL, NULL, 0);
    json_decref(body);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        PQclear(r);
        return store_down(&req);
    }
    bool added = atoi(PQcmdTuples(r)) == 1;
    PQclear(r);
    return fs_http_json(&req, added ? 201 : 200,
                        json_pack("{s:s,s:s}", "product_id", v.id, "status", added ? "added" : "already there"),
                        NULL);
}
