/* Product endpoints.
 *   POST  /api/products                      admin  define (201 with the product)
 *   PATCH /api/products/{id}                 admin  update
 *   POST  /api/products/{id}/restock|pause|resume   admin
 *   GET   /api/products/{id}, /api/products/{id}/stock   anyone, from the read models
 *         (readmodel.h), or the API's view of the log for a product they do not hold yet
 * Admin commands are produced to inventory.commands and the handler waits (bounded) for the
 * processor's outcome, matched by the command's event id. */
#include "api.h"
#include "readmodel.h"
#include "flashsale/inventory_codec.h"
#include "metrics.h"

#include "fs/id.h"
#include "fs/log.h"
#include "fs/timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *sale_status(const inv_product_view *v, int64_t now)
{
    return inv_sale_status_name(inv_sale_status_at(v, now));
}

static json_t *product_json(const inv_product_view *v)
{
    char starts[FS_TIME_STR_LEN], ends[FS_TIME_STR_LEN];
    fs_time_format(v->f.sale_starts_at, starts);
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:s,s:i,s:i,s:i,s:i,s:s,s:o,s:i,s:b,s:s}",
                          "product_id", v->id, "name", v->f.name, "description", v->f.description,
                          "price", (json_int_t)v->f.price, "currency",
                          v->f.currency[0] ? v->f.currency : "KRW", "stock", v->stock, "available",
                          v->available, "reserved", v->reserved, "sold", v->sold, "sale_starts_at",
                          starts, "sale_ends_at", json_null(), "per_user_limit",
                          v->f.per_user_limit, "paused", v->paused, "status",
                          sale_status(v, fs_now_ms()));
    if (v->f.sale_ends_at) {
        fs_time_format(v->f.sale_ends_at, ends);
        json_object_set_new(o, "sale_ends_at", json_string(ends));
    }
    return o;
}

static int outcome_error(fs_http_req *req, const inv_event *ev)
{
    switch (ev->reason) {
    case INV_R_UNKNOWN_PRODUCT:
        return fs_http_error(req, 404, "PRODUCT_NOT_FOUND", "no such product", NULL);
    case INV_R_ALREADY_EXISTS:
        return fs_http_error(req, 409, "ALREADY_EXISTS", "the product already exists", NULL);
    default:
        return fs_http_error(req, 422, "INVALID_PRODUCT", ev->detail[0] ? ev->detail : "refused",
                             NULL);
    }
}

/* Produces cmd and waits for its outcome; sends the response. */
static int run_admin_command(fs_http_req *req, api_ctx *a, inv_command *cmd, int ok_status)
{
    char event_id[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(event_id);
    void *buf = NULL;
    size_t len = 0;
    fs_err err = {0};
    if (inv_command_encode(a->codec, cmd, &buf, &len, &err))
        return fs_http_fail(req, &err, err.msg, NULL); /* (our record: INVALID is ours too) */
    api_waiter *w = api_bus_waiter_new(a->bus, event_id);
    if (!w) {
        free(buf);
        return fs_http_unavailable(req, "out of memory", NULL);
    }
    int rc = api_bus_produce(a->bus, w, cmd->product_id, buf, len, inv_cmd_name(cmd->type),
                             event_id, cmd->product_id, cmd->requested_at, &err);
    free(buf);
    if (rc) {
        api_bus_waiter_release(a->bus, w);
        fs_metrics_produce_error();
        return fs_http_unavailable(req, "the command could not be queued", err.msg);
    }
    api_wait_result r;
    api_bus_wait(a->bus, w, fs_mono_ms() + (a->decision_wait_ms > 5000 ? a->decision_wait_ms : 5000),
                 true, &r);
    api_bus_waiter_release(a->bus, w);
    if (r.failed) {
        fs_metrics_produce_error();
        return fs_http_unavailable(req, "the command was not accepted by Kafka", NULL);
    }
    if (!r.decided)
        return fs_http_json(req, 202,
                            json_pack("{s:s,s:s}", "product_id", cmd->product_id, "status",
                                      "ACCEPTED"),
                            NULL);
    if (r.ev.type == INV_EV_CMD_REJECTED)
        return outcome_error(req, &r.ev);
    inv_product_view v;
    if (!api_bus_product(a->bus, cmd->product_id, &v))
        return fs_http_json(req, ok_status, json_pack("{s:s}", "product_id", cmd->product_id),
                            NULL);
    return fs_http_json(req, ok_status, product_json(&v), NULL);
}

static bool read_product_fields(fs_http_req *req, json_t *body, inv_product_fields *f, bool update,
                                long long *stock)
{
    const char *name = NULL, *desc = NULL, *currency = NULL;
    long long price = 0, limit = 0;
    if (!api_field_text(req, body, "name", !update, INV_NAME_MAX - 1, false, &name, &f->has_name) ||
        !api_field_text(req, body, "description", false, INV_DESC_MAX - 1, true, &desc,
                        &f->has_description) ||
        !api_field_string(req, body, "currency", false, 3, &currency, NULL) ||
        !api_field_int(req, body, "price", !update, 0, 1000000000000LL, &price, &f->has_price) ||
        !api_field_time(req, body, "sale_starts_at", !update, &f->sale_starts_at, &f->has_starts) ||
        !api_field_time(req, body, "sale_ends_at", false, &f->sale_ends_at, &f->has_ends) ||
        !api_field_int(req, body, "per_user_limit", false, 0, 1000000, &limit, &f->has_limit))
        return false;
    if (!update &&
        !api_field_int(req, body, "stock", true, 0, 1000000000, stock, NULL))
        return false;
    if (name && !*name) {
        fs_http_error(req, 400, "INVALID_FIELD", "name: must not be empty", NULL);
        return false;
    }
    if (price > INV_MAX_PRICE) { /* so that no order amount can overflow (flashsale/inventory.h) */
        fs_http_error(req, 422, "PRICE_TOO_HIGH", "price: at most 100000000000 per unit", NULL);
        return false;
    }
    if (f->has_ends && f->has_starts && f->sale_ends_at <= f->sale_starts_at) {
        fs_http_error(req, 400, "INVALID_FIELD", "sale_ends_at: must be after sale_starts_at", NULL);
        return false;
    }
    snprintf(f->name, sizeof f->name, "%s", name ? name : "");
    snprintf(f->description, sizeof f->description, "%s", desc ? desc : "");
    snprintf(f->currency, sizeof f->currency, "%s", currency ? currency : "KRW");
    f->price = price;
    f->per_user_limit = (int32_t)limit;
    return true;
}

int api_products_create(struct mg_connection *conn, void *cb)
{
    api_ctx *a = cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_PRODUCTS_CREATE);
    if (!strcmp(req.ri->request_method, "GET"))
        return api_products_list(&req, a);
    if (strcmp(req.ri->request_method, "POST"))
        return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "use GET or POST",
                             "Allow: GET, POST\r\n");
    fs_principal who;
    if (!api_auth(&req, a, "admin", &who))
        return 401;
    json_t *body = api_read_json(&req, a);
    if (!body)
        return 400;
    inv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    long long stock = 0;
    if (!read_product_fields(&req, body, &cmd.f, false, &stock)) {
        json_decref(body);
        return 400;
    }
    json_decref(body);
    cmd.type = INV_CMD_DEFINE;
    fs_uuid7_str(cmd.product_id);
    snprintf(cmd.actor_id, sizeof cmd.actor_id, "%s", who.sub);
    cmd.stock = (int32_t)stock;
    cmd.requested_at = fs_now_ms();
    return run_admin_command(&req, a, &cmd, 201);
}

int api_products_item(struct mg_connection *conn, void *cb)
{
    api_ctx *a = cb;
    fs_http_req req;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *rest = ri->local_uri + strlen("/api/products/");
    char id[INV_ID_MAX], op[16] = "";
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    int route = !slash ? FS_ROUTE_PRODUCT : !strcmp(slash + 1, "stock") ? FS_ROUTE_PRODUCT_STOCK
                                                                        : FS_ROUTE_PRODUCT_OP;
    fs_http_req_init(&req, conn, route);
    if (idlen == 0 || idlen >= sizeof id || (slash && strlen(slash + 1) >= sizeof op))
        return fs_http_error(&req, 404, "NOT_FOUND", "no such resource", NULL);
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
    if (slash)
        snprintf(op, sizeof op, "%s", slash + 1);
    const char *method = ri->request_method;
    inv_product_view v;

    if (!strcmp(method, "GET") && (!op[0] || !strcmp(op, "stock"))) {
        /* the read model (Redis, else PostgreSQL); a product it does not hold yet (just
         * defined) from the API's own view of the log */
        api_fresh fresh = {"log", 0};
        if (!api_rm_product(a, id, &v, &fresh) && !api_bus_product(a->bus, id, &v))
            return fs_http_error(&req, 404, "PRODUCT_NOT_FOUND", "no such product", NULL);
        json_t *out = !op[0] ? product_json(&v)
                             : json_pack("{s:s,s:i,s:i,s:i,s:i,s:s}", "product_id", v.id, "stock",
                                         v.stock, "available", v.available, "reserved", v.reserved,
                                         "sold", v.sold, "status", sale_status(&v, fs_now_ms()));
        json_object_set_new(out, "freshness", api_fresh_json(&fresh));
        return fs_http_json(&req, 200, out, NULL);
    }
    bool known = api_bus_product(a->bus, id, &v);
    bool patch = !op[0] && !strcmp(method, "PATCH");
    bool post_op = !strcmp(method, "POST") &&
                   (!strcmp(op, "restock") || !strcmp(op, "pause") || !strcmp(op, "resume"));
    if (!patch && !post_op) {
        if (op[0] && strcmp(op, "stock") && strcmp(op, "restock") && strcmp(op, "pause") &&
            strcmp(op, "resume"))
            return fs_http_error(&req, 404, "NOT_FOUND", "no such resource", NULL);
        return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "method not allowed here", NULL);
    }
    fs_principal who;
    if (!api_auth(&req, a, "admin", &who))
        return 401;
    if (!known && api_bus_caught_up(a->bus))
        return fs_http_error(&req, 404, "PRODUCT_NOT_FOUND", "no such product", NULL);
    inv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    snprintf(cmd.product_id, sizeof cmd.product_id, "%s", id);
    snprintf(cmd.actor_id, sizeof cmd.actor_id, "%s", who.sub);
    cmd.requested_at = fs_now_ms();
    if (patch || !strcmp(op, "restock")) {
        json_t *body = api_read_json(&req, a);
        if (!body)
            return 400;
        bool ok;
        if (patch) {
            cmd.type = INV_CMD_UPDATE;
            ok = read_product_fields(&req, body, &cmd.f, true, NULL);
        } else {
            long long q = 0;
            cmd.type = INV_CMD_RESTOCK;
            ok = api_field_int(&req, body, "quantity", true, 1, 1000000000, &q, NULL);
            cmd.quantity = (int32_t)q;
        }
        json_decref(body);
        if (!ok)
            return 400;
    } else
        cmd.type = !strcmp(op, "pause") ? INV_CMD_PAUSE : INV_CMD_RESUME;
    return run_admin_command(&req, a, &cmd, 200);
}
