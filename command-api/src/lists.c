/* List endpoints over the PostgreSQL read model (filled by flashsale-projector):
 *   GET /api/products   anyone   catalogue with live stock, in creation order
 *   GET /api/orders     member   the caller's own orders, newest first
 * Paging by ?limit and ?cursor (the last id of the previous page: ids are UUIDv7, so id
 * order is time order). The read model follows the log with a lag (not reported yet). If
 * PostgreSQL is unreachable or its tables are not there yet: 503 + Retry-After (no Redis
 * fallback yet). */
#include "api.h"
#include "metrics.h"

#include "fs/id.h"
#include "fs/timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The rows, or the error sent (fs_http_fail: a table the projector has not made yet is
 * retriable, api_pg_error). Returns 0 or the status sent. */
static int query(fs_http_req *req, api_ctx *a, const char *sql, int n, const char *const *vals,
                 PGresult **out)
{
    fs_err err = {0};
    PGconn *c = api_pg(a, &err);
    *out = c ? PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0) : NULL;
    if (c && PQresultStatus(*out) != PGRES_TUPLES_OK) {
        api_pg_error(&err, c, *out, "read model");
        PQclear(*out);
        *out = NULL;
    }
    return *out ? 0 : fs_http_fail(req, &err, "the read model is unavailable", NULL);
}

static json_t *page(json_t *items, PGresult *r, int limit, int id_col)
{
    int n = PQntuples(r);
    json_t *out = json_pack("{s:o}", "items", items);
    json_object_set_new(out, "next_cursor",
                        n == limit ? json_string(PQgetvalue(r, n - 1, id_col)) : json_null());
    return out;
}

int api_products_list(fs_http_req *req, api_ctx *a)
{
    int limit;
    char cursor[FS_UUID_STR_LEN + 2], lim[8];
    if (!api_paging(req, &limit, cursor, sizeof cursor))
        return 400;
    snprintf(lim, sizeof lim, "%d", limit);
    const char *v[] = {cursor[0] ? cursor : NULL, lim};
    PGresult *r;
    int rc = query(req, a,
                   "SELECT product_id, name, price, currency, stock, available, reserved, sold,"
                   " (extract(epoch FROM sale_starts_at) * 1000)::bigint,"
                   " (extract(epoch FROM sale_ends_at) * 1000)::bigint, per_user_limit, paused,"
                   " (extract(epoch FROM updated_at) * 1000)::bigint"
                   " FROM products WHERE $1::text IS NULL OR product_id > $1"
                   " ORDER BY product_id LIMIT $2",
                   2, v, &r);
    if (rc)
        return rc;
    json_t *items = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        char s1[FS_TIME_STR_LEN], s2[FS_TIME_STR_LEN];
        fs_time_format(atoll(PQgetvalue(r, i, 8)), s1);
        json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:i,s:i,s:i,s:i,s:s,s:o,s:i,s:b}", "product_id",
                              PQgetvalue(r, i, 0), "name", PQgetvalue(r, i, 1), "price",
                              (json_int_t)atoll(PQgetvalue(r, i, 2)), "currency",
                              PQgetvalue(r, i, 3), "stock", atoi(PQgetvalue(r, i, 4)), "available",
                              atoi(PQgetvalue(r, i, 5)), "reserved", atoi(PQgetvalue(r, i, 6)),
                              "sold", atoi(PQgetvalue(r, i, 7)), "sale_starts_at", s1,
                              "sale_ends_at", json_null(), "per_user_limit",
                              atoi(PQgetvalue(r, i, 10)), "paused", PQgetvalue(r, i, 11)[0] == 't');
        if (!PQgetisnull(r, i, 9)) {
            fs_time_format(atoll(PQgetvalue(r, i, 9)), s2);
            json_object_set_new(o, "sale_ends_at", json_string(s2));
        }
        json_array_append_new(items, o);
    }
    json_t *out = page(items, r, limit, 0);
    PQclear(r);
    return fs_http_json(req, 200, out, NULL);
}

int api_orders_list(fs_http_req *req, api_ctx *a)
{
    fs_principal who;
    if (!api_auth(req, a, NULL, &who))
        return 401;
    int limit;
    char cursor[FS_UUID_STR_LEN + 2], lim[8];
    if (!api_paging(req, &limit, cursor, sizeof cursor))
        return 400;
    snprintf(lim, sizeof lim, "%d", limit);
    const char *v[] = {who.sub, cursor[0] ? cursor : NULL, lim};
    PGresult *r;
    int rc = query(req, a,
                   "SELECT order_id, status, reason, amount,"
                   " (extract(epoch FROM created_at) * 1000)::bigint,"
                   " (extract(epoch FROM updated_at) * 1000)::bigint"
                   " FROM orders WHERE member_id = $1 AND ($2::text IS NULL OR order_id < $2)"
                   " ORDER BY order_id DESC LIMIT $3",
                   3, v, &r);
    if (rc)
        return rc;
    json_t *items = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        char c[FS_TIME_STR_LEN], u[FS_TIME_STR_LEN];
        fs_time_format(atoll(PQgetvalue(r, i, 4)), c);
        fs_time_format(atoll(PQgetvalue(r, i, 5)), u);
        json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s}", "order_id", PQgetvalue(r, i, 0), "status",
                              PQgetvalue(r, i, 1), "amount", (json_int_t)atoll(PQgetvalue(r, i, 3)),
                              "created_at", c, "updated_at", u);
        if (PQgetvalue(r, i, 2)[0])
            json_object_set_new(o, "reason", json_string(PQgetvalue(r, i, 2)));
        json_array_append_new(items, o);
    }
    json_t *out = page(items, r, limit, 0);
    PQclear(r);
    return fs_http_json(req, 200, out, NULL);
}
