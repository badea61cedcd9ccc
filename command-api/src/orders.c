/* Order endpoints.
 *   POST /api/orders        member  {"product_id", "quantity"}; Idempotency-Key; Prefer: respond-async
 *   GET  /api/orders/{id}   owner or admin
 *
 * The purchase path: validate -> (Idempotency-Key: claim it in Redis, SET NX, 24 h) ->
 * sold-out fast path (only when the view says available = 0) -> stamp order id and time ->
 * produce ReserveStock (key = product id) -> wait, bounded by FLASHSALE_DECISION_WAIT_MS,
 * for the processor's decision. The delivery report is the durable "accepted": a 202 is only
 * ever sent for a command Kafka acknowledged. */
#include "api.h"
#include "accounts.h"
#include "readmodel.h"
#include "flashsale/inventory_codec.h"
#include "flashsale/messages.h"
#include "flashsale/saga.h"
#include "metrics.h"

#include "fs/id.h"
#include "fs/log.h"
#include "fs/metrics.h"
#include "fs/timefmt.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define IDEM_TTL_S 86400
#define IDEM_DOWN "the idempotency store is unavailable"

static int send_decision(fs_http_req *req, const inv_event *ev)
{
    if (ev->type == INV_EV_RESERVED) {
        char pay_by[FS_TIME_STR_LEN];
        fs_time_format(ev->pay_by, pay_by);
        return fs_http_json(req, 201,
                            json_pack("{s:s,s:s,s:s,s:i,s:I,s:s}", "order_id", ev->order_id,
                                      "status", "RESERVED", "product_id", ev->product_id,
                                      "quantity", ev->quantity, "unit_price",
                                      (json_int_t)ev->unit_price, "pay_by", pay_by),
                            NULL);
    }
    inv_reject_answer why = inv_reject_answer_of(ev->reason);
    return fs_http_json(req, why.http_status,
                        json_pack("{s:{s:s,s:s,s:s,s:s}}", "error", "code", why.code, "message",
                                  why.message, "request_id", req->request_id,
                                  "order_id", ev->order_id),
                        why.http_status == 503 ? "Retry-After: 1\r\n" : NULL); /* TIMED_OUT */
}

/* Sends the decision and records the answer (orders.answers) for the audit. */
static void idem_release(api_ctx *a, const char *member, const char *key);

/* A refusal TIMED_OUT says "not placed, try again": the Idempotency-Key that named the order is
 * free again, so that the same request sent again makes a new order (as after any 503). */
static int answer_decision(fs_http_req *req, api_ctx *a, const api_wait_result *r, const char *idem)
{
    const inv_event *ev = &r->ev;
    if (idem && ev->type == INV_EV_REJECTED && ev->reason == INV_R_TIMED_OUT)
        idem_release(a, ev->member_id, idem);
    int status = send_decision(req, ev);
    bool reserved = ev->type == INV_EV_RESERVED;
    api_bus_record_answer(a->bus, ev->order_id, ev->member_id, ev->product_id, ev->quantity,
                          reserved ? "RESERVED" : "REJECTED", reserved ? "" : inv_reason_name(ev->reason),
                          reserved ? ev->pay_by : 0, r->via_reply ? "reply" : "committed", status);
    return status;
}

static int send_pending(fs_http_req *req, api_ctx *a, const char *order_id,
                        const api_wait_result *r)
{
    long long position = 1;
    if (r->delivered) {
        int64_t decided = api_bus_decided_offset(a->bus, r->partition);
        position = r->offset - decided;
        if (position < 1)
            position = 1;
    }
    char loc[128];
    snprintf(loc, sizeof loc, "Location: /api/orders/%s\r\n", order_id);
    return fs_http_json(req, 202,
                        json_pack("{s:s,s:s,s:I}", "order_id", order_id, "status", "PENDING",
                                  "queue_position", (json_int_t)position),
                        loc);
}

static bool idem_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)k[i]))
            return false;
    return true;
}

/* Claims the key for order_id, or finds the order that claimed it.
 * Returns 1 = claimed (new order), 0 = existing (*existing filled), -1 = response sent. */
static int idem_claim(fs_http_req *req, api_ctx *a, const char *member, const char *key,
                      const char *order_id, const char *product_id, long long qty,
                      char *existing, size_t n)
{
    fs_err err = {0};
    redisContext *c = api_redis(a, &err);
    if (!c) {
        fs_http_unavailable(req, IDEM_DOWN, err.msg);
        return -1;
    }
    char rkey[300], val[200];
    snprintf(rkey, sizeof rkey, "flashsale:idem:%s:%s", member, key);
    snprintf(val, sizeof val, "%s|%s|%lld", order_id, product_id, qty);
    redisReply *r = redisCommand(c, "SET %s %s NX EX %d", rkey, val, IDEM_TTL_S);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        fs_err_from_redis(&err, c, r, "idempotency claim");
        if (r)
            freeReplyObject(r);
        api_redis_drop();
        fs_http_unavailable(req, IDEM_DOWN, err.msg);
        return -1;
    }
    int claimed = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (claimed)
        return 1;
    r = redisCommand(c, "GET %s", rkey);
    if (!r || r->type != REDIS_REPLY_STRING) {
        fs_err_from_redis(&err, c, r, "idempotency read");
        if (r)
            freeReplyObject(r);
        fs_http_unavailable(req, IDEM_DOWN, err.msg);
        return -1;
    }
    char stored[200];
    snprintf(stored, sizeof stored, "%s", r->str);
    freeReplyObject(r);
    char *p1 = strchr(stored, '|'), *p2 = p1 ? strchr(p1 + 1, '|') : NULL;
    if (!p1 || !p2) {
        fs_http_unavailable(req, "corrupt idempotency record", NULL);
        return -1;
    }
    *p1 = *p2 = '\0';
    if (strcmp(p1 + 1, product_id) || atoll(p2 + 1) != qty) {
        fs_http_error(req, 422, "IDEMPOTENCY_KEY_REUSED",
                      "this Idempotency-Key was used for a different order", NULL);
        return -1;
    }
    snprintf(existing, n, "%.*s", (int)(n - 1), stored);
    return 0;
}

static void idem_release(api_ctx *a, const char *member, const char *key)
{
    fs_err err = {0};
    redisContext *c = api_redis(a, &err);
    if (!c)
        return;
    redisReply *r = redisCommand(c, "DEL flashsale:idem:%s:%s", member, key);
    if (r)
        freeReplyObject(r);
}


/* The view remembers recent orders only (bus.h): an older one comes from the read models,
 * and is taken into the view so that waiting for its next change works. */
static void adopt_from_read_model(api_ctx *a, const char *id)
{
    api_order o;
    api_fresh f;
    if (api_bus_order(a->bus, id, &o))
        return;
    memset(&o, 0, sizeof o);
    if (api_rm_order(a, id, &o, &f))
        api_bus_order_adopt(a->bus, &o);
}

static json_t *order_json(const api_order *o)
{
    char t[FS_TIME_STR_LEN];
    json_t *out = json_pack("{s:s,s:s,s:s}", "order_id", o->order_id, "status",
                            api_order_current_status(o), "member_id", o->member_id);
    json_t *lines = json_array();
    if (o->nlines)
        for (int i = 0; i < o->nlines; i++)
            json_array_append_new(lines, json_pack("{s:s,s:i,s:I,s:s}", "product_id",
                                                   o->lines[i].product_id, "quantity",
                                                   o->lines[i].quantity, "unit_price",
                                                   (json_int_t)o->lines[i].unit_price, "state",
                                                   o->lines[i].state));
    else
        json_array_append_new(lines, json_pack("{s:s,s:i,s:I}", "product_id", o->product_id,
                                               "quantity", o->quantity, "unit_price",
                                               (json_int_t)o->unit_price));
    json_object_set_new(out, "items", lines);
    json_object_set_new(out, "product_id", json_string(o->product_id));
    json_object_set_new(out, "quantity", json_integer(o->quantity));
    if (o->amount)
        json_object_set_new(out, "amount", json_integer(o->amount));
    if (o->pay_by) {
        fs_time_format(o->pay_by, t);
        json_object_set_new(out, "pay_by", json_string(t));
    }
    const char *reason = o->saga_status[0] ? o->saga_reason
                         : o->status == API_ORDER_REJECTED ? inv_reason_name(o->reason) : "";
    if (reason && *reason)
        json_object_set_new(out, "reason", json_string(reason));
    json_t *hist = json_array();
    for (int i = 0; i < o->nhistory; i++) {
        fs_time_format(o->history[i].at, t);
        json_t *h = json_pack("{s:s,s:s}", "status", o->history[i].status, "at", t);
        if (o->history[i].reason[0])
            json_object_set_new(h, "reason", json_string(o->history[i].reason));
        json_array_append_new(hist, h);
    }
    json_object_set_new(out, "history", hist);
    return out;
}

/* Waits for the saga's answer to the command whose event id is `cause`: a refusal caused by
 * it, or a snapshot caused by it, after which the order's later changes are followed until
 * it reaches one of `targets` (ended by ORD_STATUS_COUNT). Changes not caused by the command (e.g. a
 * line's progress) never count as its answer. For a new order (checkout) `cause` may be
 * NULL: any change counts. Returns 1 reached, 0 refused, -1 timed out. */
static int wait_for_status(api_ctx *a, const char *order_id, const char *cause,
                           const ord_status *targets, int version, int64_t deadline, api_order *o)
{
    bool answered = cause == NULL;
    for (;;) {
        bool exists = false;
        api_bus_order_wait(a->bus, order_id, version, deadline, o, &exists);
        if (exists) {
            if (cause && !strcmp(o->rejected_cause, cause))
                return 0;
            if (!answered && api_order_caused_by(o, cause))
                answered = true;
            if (answered)
                for (const ord_status *t = targets; *t != ORD_STATUS_COUNT; t++)
                    if (api_order_lifecycle(o) == *t)
                        return 1;
            version = o->version;
        }
        if (fs_mono_ms() >= deadline)
            return -1;
    }
}

/* Whether Kafka took an orders.commands record: waits for its delivery report (it comes
 * within FLASHSALE_COMMAND_TIMEOUT_MS of the produce, and is almost always in already). */
static bool command_durable(api_ctx *a, api_waiter *ticket)
{
    api_wait_result dr;
    api_bus_wait(a->bus, ticket, fs_mono_ms(), false, &dr);
    return dr.delivered;
}

/* A command that was neither answered within the wait nor confirmed by Kafka: it may still
 * reach the log (librdkafka cannot tell a request lost in flight from one the broker took),
 * so neither "accepted" (202) nor "refused" would be honest. */
static int outcome_unknown(fs_http_req *req, const char *order_id, const char *what, bool retry_after)
{
    fs_metrics_produce_error();
    char loc[128], msg[192];
    snprintf(loc, sizeof loc, "Location: /api/orders/%s\r\n%s", order_id,
             retry_after ? "Retry-After: 2\r\n" : "");
    snprintf(msg, sizeof msg,
             "Kafka did not confirm %s for order %s in time: it may still take effect; look the "
             "order up before trying again",
             what, order_id);
    return fs_http_error(req, 504, "ORDER_OUTCOME_UNKNOWN", msg, loc);
}

/* POST /api/orders {"items": [{"product_id", "quantity"}, ...]}: all or nothing. */
static int checkout(fs_http_req *req, api_ctx *a, const fs_principal *who, json_t *body, int64_t t0)
{
    json_t *items = json_object_get(body, "items");
    if (!json_is_array(items) || json_array_size(items) < 1 || json_array_size(items) > 16)
        return fs_http_error(req, 400, "INVALID_FIELD", "items: must be an array of 1 to 16 lines", NULL);
    ord_command cmd = {.type = ORD_CMD_PLACE_CHECKOUT};
    fs_err err = {0};
    char order_id[FS_UUID_STR_LEN + 1], event_id[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(order_id);
    fs_uuid7_str(event_id);
    int64_t now = fs_now_ms();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *pid = NULL;
        long long qty = 0;
        if (!json_is_object(it) ||
            !api_field_string(req, it, "product_id", true, INV_ID_MAX - 1, &pid, NULL) ||
            !api_field_int(req, it, "quantity", true, 1, 1000000000, &qty, NULL))
            return json_is_object(it) ? 400
                                      : fs_http_error(req, 400, "INVALID_FIELD", "items: each line must be an object", NULL);
        if (qty > INV_MAX_QUANTITY)
            return fs_http_error(req, 422, "INVALID_QUANTITY", "quantity must be at most 1000000 per line", NULL);
        inv_product_view pv;
        if (!api_bus_product(a->bus, pid, &pv) && api_bus_caught_up(a->bus))
            return fs_http_error(req, 404, "PRODUCT_NOT_FOUND", "no such product", NULL);
        ord_item *line = &cmd.items[cmd.nitems++];
        snprintf(line->product_id, sizeof line->product_id, "%s", pid);
        line->quantity = (int32_t)qty;
    }
    snprintf(cmd.order_id, sizeof cmd.order_id, "%s", order_id);
    snprintf(cmd.member_id, sizeof cmd.member_id, "%s", who->sub);
    cmd.requested_at = now;
    void *buf = NULL;
    size_t len = 0;
    int rc = ord_command_encode(a->codec, &cmd, &buf, &len, &err);
    if (rc)
        return fs_http_fail(req, &err, err.msg, NULL); /* (our record: INVALID is ours too) */
    api_waiter *ticket = NULL;
    rc = api_bus_produce_order_command(a->bus, order_id, buf, len, "PlaceCheckout", event_id, now,
                                       &ticket, &err);
    free(buf);
    if (rc) {
        fs_metrics_produce_error();
        return fs_http_unavailable(req, "the order could not be queued", err.msg);
    }
    static const ord_status done[] = {ORD_RESERVED, ORD_REJECTED, ORD_PAYING, ORD_PAID, ORD_STATUS_COUNT};
    api_order o;
    int r = wait_for_status(a, order_id, NULL, done, -1, t0 + a->decision_wait_ms, &o);
    bool durable = r == 1 || command_durable(a, ticket);
    api_bus_waiter_release(a->bus, ticket);
    if (!durable)
        return outcome_unknown(req, order_id, "the checkout", true);
    if (r == 1 && api_order_lifecycle(&o) != ORD_REJECTED)
        return fs_http_json(req, 201, order_json(&o), NULL);
    if (r == 1)
        return fs_http_json(req, 409,
                            json_pack("{s:{s:s,s:s,s:s,s:s}}", "error", "code", "CHECKOUT_REJECTED",
                                      "message", o.saga_reason, "request_id", req->request_id,
                                      "order_id", order_id),
                            NULL);
    char loc[128];
    snprintf(loc, sizeof loc, "Location: /api/orders/%s\r\n", order_id);
    return fs_http_json(req, 202, json_pack("{s:s,s:s}", "order_id", order_id, "status", "PENDING"),
                        loc);
}

static fs_hist *h_answered;

void api_orders_metrics_init(void)
{
    h_answered = fs_hist_register("flashsale_order_stage_ms", "stage=\"answered\"", "");
}

int api_order_timed(const api_order_call *c, int status)
{
    if (status == 201 || status == 202 || status == 409)
        fs_hist_observe_ms(h_answered, (fs_mono_us() - c->t0_us) / 1000.0);
    return status;
}

/* The purchase up to the wait for its decision: validation, the Idempotency-Key, the sold-out
 * fast path, the command produced. Returns the status sent, ORDER_WAITING (c->w, deadline and
 * need_decision set: api_order_end after the wait) or, without may_block, ORDER_BLOCKS when
 * the rest may sleep: a checkout (its wait is the order's versions), an Idempotency-Key (a
 * repeat may read its order from PostgreSQL), or a login token whose member is not in the
 * cache (PostgreSQL is asked); api_order_run_blocking then goes on with it on a thread that
 * may sleep. (The members cache may still expire between that look and the member's use:
 * then the caller asks PostgreSQL itself, once in FLASHSALE_MEMBER_CACHE_MS per member.) */
int api_order_begin(api_order_call *c, bool may_block)
{
    fs_http_req *req = c->req;
    api_ctx *a = c->a;
    if (!c->t0_us) { /* (taken up again on a worker: the request's own time stands) */
        c->t0 = fs_mono_ms();
        c->t0_us = fs_mono_us();
    }
    if (strcmp(req->ri->request_method, "POST"))
        return fs_http_error(req, 405, "METHOD_NOT_ALLOWED", "use GET or POST", "Allow: GET, POST\r\n");
    fs_principal *who = &c->who;
    if (!may_block && fs_http_header(req, "Idempotency-Key"))
        return ORDER_BLOCKS; /* a repeat may read its order from PostgreSQL (adopt_from_read_model) */
    if (!may_block && fs_jwt_verify(a->jwt_secret, fs_http_header(req, "Authorization"), (int64_t)time(NULL), who) ==
                          FS_JWT_OK &&
        who->gen >= 0 && !api_member_cached(a, who->sub))
        return ORDER_BLOCKS; /* a login token whose member PostgreSQL must be asked about */
    if (!api_auth(req, a, NULL, who))
        return 401;
    if (strlen(who->sub) >= INV_ID_MAX)
        return fs_http_error(req, 401, "INVALID_TOKEN", "the access token is not valid", NULL);
    int gate = api_order_gate(req, a, who); /* rate limits, verified e-mail */
    if (gate)
        return gate;
    json_t *body = api_read_json(req, a);
    if (!body)
        return 400;
    const char *product_id = NULL;
    long long qty = 0;
    if (json_object_get(body, "items")) {
        c->body = body;
        return may_block ? api_order_run_blocking(c) : ORDER_BLOCKS;
    }
    if (!api_field_string(req, body, "product_id", true, INV_ID_MAX - 1, &product_id, NULL) ||
        !api_field_int(req, body, "quantity", true, -1000000000, 1000000000, &qty, NULL)) {
        json_decref(body);
        return 400;
    }
    char *pid = c->pid;
    snprintf(pid, sizeof c->pid, "%s", product_id);
    json_decref(body);
    if (qty < 1)
        return fs_http_error(req, 422, "INVALID_QUANTITY", "quantity must be at least 1", NULL);
    if (qty > INV_MAX_QUANTITY)
        return fs_http_error(req, 422, "INVALID_QUANTITY", "quantity must be at most 1000000 per line", NULL);
    c->qty = (int32_t)qty;

    inv_product_view v;
    bool known = api_bus_product(a->bus, pid, &v);
    if (!known && api_bus_caught_up(a->bus))
        return fs_http_error(req, 404, "PRODUCT_NOT_FOUND", "no such product", NULL);
    if (known && v.f.per_user_limit > 0 && qty > v.f.per_user_limit) {
        char msg[96];
        snprintf(msg, sizeof msg, "quantity must be at most %d for this product", v.f.per_user_limit);
        return fs_http_error(req, 422, "INVALID_QUANTITY", msg, NULL);
    }

    const char *idem = fs_http_header(req, "Idempotency-Key");
    if (idem && !idem_key_ok(idem))
        return fs_http_error(req, 400, "INVALID_HEADER",
                             "Idempotency-Key must be 1 to 128 visible characters", NULL);
    if (idem)
        snprintf(c->idem, sizeof c->idem, "%s", idem);
    char *order_id = c->order_id;
    fs_uuid7_str(order_id);
    const char *prefer = fs_http_header(req, "Prefer");
    bool async = prefer && strstr(prefer, "respond-async");
    c->need_decision = !async;

    if (idem) {
        char existing[INV_ID_MAX];
        int claim = idem_claim(req, a, who->sub, idem, order_id, pid, qty, existing, sizeof existing);
        if (claim < 0)
            return 503;
        if (claim == 0) { /* the same request again: answer with that order, never a second one */
            snprintf(order_id, sizeof c->order_id, "%s", existing);
            c->existing = true;
            adopt_from_read_model(a, existing);
            if (!(c->w = api_bus_waiter_new(a->bus, existing)))
                return fs_http_unavailable(req, "out of memory", NULL);
            c->deadline = fs_mono_ms() + (async ? 0 : a->decision_wait_ms);
            return ORDER_WAITING;
        }
    }

    /* Fast path: the view says nothing is left. It can only be behind the log, never ahead,
     * and units only come back through events it will see; so available = 0 here means no
     * unit was free when the view last heard. */
    if (known && v.available == 0 && !v.paused) {
        fs_metrics_fast_sold_out();
        if (idem)
            idem_release(a, who->sub, idem);
        api_bus_record_answer(a->bus, order_id, who->sub, pid, (int32_t)qty, "REJECTED", "SOLD_OUT", 0,
                              "view", 409);
        return fs_http_json(req, 409,
                                        json_pack("{s:{s:s,s:s,s:s}}", "error", "code", "SOLD_OUT", "message",
                                                  "sold out", "request_id", req->request_id),
                                        NULL);
    }

    inv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = INV_CMD_RESERVE;
    snprintf(cmd.order_id, sizeof cmd.order_id, "%s", order_id);
    snprintf(cmd.product_id, sizeof cmd.product_id, "%s", pid);
    snprintf(cmd.member_id, sizeof cmd.member_id, "%s", who->sub);
    cmd.quantity = (int32_t)qty;
    cmd.item_count = 1;
    cmd.requested_at = fs_now_ms();
    cmd.accept_by = api_bus_accept_by(a->bus, cmd.requested_at);
    c->accept_by = cmd.accept_by;
    void *buf = NULL;
    size_t len = 0;
    fs_err err = {0};
    if (inv_command_encode(a->codec, &cmd, &buf, &len, &err))
        return fs_http_fail(req, &err, err.msg, NULL); /* (our record: INVALID is ours too) */
    api_waiter *w = api_bus_waiter_new(a->bus, order_id);
    if (!w) {
        free(buf);
        return fs_http_unavailable(req, "out of memory", NULL);
    }
    api_order pending = {0};
    snprintf(pending.order_id, sizeof pending.order_id, "%s", order_id);
    snprintf(pending.member_id, sizeof pending.member_id, "%s", who->sub);
    snprintf(pending.product_id, sizeof pending.product_id, "%s", pid);
    pending.quantity = cmd.quantity;
    pending.requested_at = cmd.requested_at;
    api_bus_order_pending(a->bus, &pending);
    char event_id[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(event_id);
    int rc = api_bus_produce(a->bus, w, pid, buf, len, "ReserveStock", event_id, order_id,
                             cmd.requested_at, &err);
    free(buf);
    if (rc) {
        api_bus_waiter_release(a->bus, w);
        fs_metrics_produce_error();
        if (idem)
            idem_release(a, who->sub, idem);
        return fs_http_unavailable(req, "the order could not be queued", err.msg);
    }
    c->w = w;
    c->deadline = c->t0 + (async ? 0 : a->decision_wait_ms);
    return ORDER_WAITING;
}

/* The answer once the wait is over (r: what it ended with); releases the waiter. */
int api_order_end(api_order_call *c, const api_wait_result *res)
{
    fs_http_req *req = c->req;
    api_ctx *a = c->a;
    api_wait_result r = *res;
    const char *idem = c->idem[0] ? c->idem : NULL, *member = c->who.sub;
    api_bus_waiter_release(a->bus, c->w);
    c->w = NULL;
    if (c->existing) {
        if (r.decided)
            return answer_decision(req, a, &r, idem);
        int st = send_pending(req, a, c->order_id, &r);
        api_bus_record_answer(a->bus, c->order_id, member, c->pid, c->qty, "PENDING", "", 0, "none", st);
        return st;
    }
    if (r.failed && r.maybe_persisted) {
        /* Timed out in flight: the command may yet be in the log, so neither "no" (503) nor
         * "accepted" (202) would be honest. The Idempotency-Key stays claimed by this order,
         * so sending the request again with it can never make a second one. */
        return outcome_unknown(req, c->order_id, "the order", false);
    }
    if (r.failed) { /* not in the log (never sent, or refused), and fenced: never will be */
        api_bus_refuse_after(a->bus, c->accept_by);
        fs_metrics_produce_error();
        if (idem)
            idem_release(a, member, idem);
        return fs_http_unavailable(req, "the order was not accepted by Kafka", NULL);
    }
    if (r.decided && ((r.ev.type != INV_EV_RESERVED && r.ev.type != INV_EV_REJECTED) ||
                      strcmp(r.ev.order_id, c->order_id)))
        r.decided = false; /* not this order's decision: never answered as one */
    if (r.decided) {
        fs_metrics_decision_latency((double)(fs_mono_ms() - c->t0));
        return answer_decision(req, a, &r, idem);
    }
    /* In the log, not decided yet: 202, even when the delivery report's append time is past
     * accept_by. Such a copy would be refused TIMED_OUT, but it need not be the only copy:
     * when a message times out in a partition's queue, the idempotent producer bumps its
     * epoch and renumbers what is left (librdkafka's INTRODUCTION.md, "Message timeout
     * considerations"), so a batch the broker appended but never acknowledged goes again as
     * new (confluentinc/librdkafka#4953). An earlier copy may have been appended in time, and
     * the processor decides the first copy. Answered 503 TIMED_OUT from such a report, a
     * buyer heard "no" while a unit was reserved for them (perf/chaos kill-broker,
     * 2026-12-07). Only the decision tells: it follows the Location. Counted, as a sign of a
     * broker that took longer than FLASHSALE_COMMAND_TIMEOUT_MS to append. */
    if (r.delivered && r.logged_at > c->accept_by) {
        static _Atomic int64_t last_told; /* one line a second at most: a frozen broker makes many */
        int64_t now = fs_mono_ms(), told = atomic_load(&last_told);
        fs_metrics_appended_late();
        if (now - told >= 1000 && atomic_compare_exchange_strong(&last_told, &told, now))
            fs_log_warn("order appended after its accept_by: answered 202, its decision follows "
                        "(flashsale_orders_appended_late_total counts them)",
                        json_pack("{s:s,s:I,s:I}", "order_id", c->order_id, "accept_by",
                                  (json_int_t)c->accept_by, "appended_at", (json_int_t)r.logged_at));
    }
    int st = send_pending(req, a, c->order_id, &r);
    api_bus_record_answer(a->bus, c->order_id, member, c->pid, c->qty, "PENDING", "", 0, "none", st);
    return st;
}

int api_order_run_blocking(api_order_call *c)
{
    if (!c->body) /* taken up again from the start, here where it may sleep */
        return api_order_begin(c, true);
    int rc = checkout(c->req, c->a, &c->who, c->body, c->t0);
    json_decref(c->body);
    c->body = NULL;
    return rc;
}

/* POST /api/orders (and GET: the member's orders) on a civetweb worker thread: the wait
 * sleeps on it. */
int api_orders_create(struct mg_connection *conn, void *cb)
{
    api_ctx *a = cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_ORDERS_CREATE);
    if (!strcmp(req.ri->request_method, "GET"))
        return api_orders_list(&req, a);
    api_order_call c = {.a = a, .req = &req};
    int rc = api_order_begin(&c, true);
    if (rc == ORDER_WAITING) {
        api_wait_result r;
        api_bus_wait(a->bus, c.w, c.deadline, c.need_decision, &r);
        rc = api_order_end(&c, &r);
    }
    return api_order_timed(&c, rc);
}

/* POST /api/orders/{id}/payment|cancel|return|return/complete */
static int order_action(fs_http_req *req, api_ctx *a, const fs_principal *who, const char *id,
                        const char *action)
{
    struct {
        const char *path;
        ord_cmd_type command;
        const char *role;
        ord_status targets[4]; /* ended by ORD_STATUS_COUNT */
    } acts[] = {
        {"payment", ORD_CMD_PAY, NULL, {ORD_PAID, ORD_PAYMENT_FAILED, ORD_NEEDS_ATTENTION, ORD_STATUS_COUNT}},
        {"cancel", ORD_CMD_CANCEL, NULL, {ORD_CANCELLED, ORD_STATUS_COUNT}},
        {"return", ORD_CMD_REQUEST_RETURN, NULL, {ORD_RETURN_REQUESTED, ORD_STATUS_COUNT}},
        {"return/complete", ORD_CMD_COMPLETE_RETURN, "admin", {ORD_RETURNED, ORD_STATUS_COUNT}},
    };
    int k = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(action, acts[i].path))
            k = i;
    if (k < 0)
        return fs_http_error(req, 404, "NOT_FOUND", "no such resource", NULL);
    if (acts[k].role && strcmp(who->role, acts[k].role))
        return fs_http_error(req, 403, "FORBIDDEN", "this operation needs the admin role", NULL);
    api_order o;
    bool admin = !strcmp(who->role, "admin");
    adopt_from_read_model(a, id);
    if (!api_bus_order(a->bus, id, &o) || (strcmp(o.member_id, who->sub) && !admin))
        return fs_http_error(req, 404, "ORDER_NOT_FOUND", "no such order", NULL);
    /* The saga learns of an order one hop after the inventory decision. A command sent
     * before the saga's first record of the order could reach it first; wait (bounded)
     * until the saga has spoken, so that log order puts the command after it. */
    int64_t ready_by = fs_mono_ms() + (a->decision_wait_ms > 5000 ? a->decision_wait_ms : 5000);
    while (!o.saga_status[0]) {
        if (o.status == API_ORDER_REJECTED)
            break; /* the saga will record it as REJECTED; no need to wait for that */
        if (fs_mono_ms() >= ready_by)
            return fs_http_error(req, 409, "ORDER_NOT_READY",
                                 "the order is still being set up; retry shortly",
                                 "Retry-After: 1\r\n");
        api_bus_order_wait(a->bus, id, o.version, ready_by, &o, NULL);
    }
    json_t *body = NULL;
    const char *method = "CARD";
    bool restock = true;
    if (req->ri->content_length > 0) {
        body = api_read_json(req, a);
        if (!body)
            return 400;
        if (!api_field_string(req, body, "method", false, 31, &method, NULL)) {
            json_decref(body);
            return 400;
        }
        json_t *r = json_object_get(body, "restock");
        if (r && !json_is_boolean(r)) {
            json_decref(body);
            return fs_http_error(req, 400, "INVALID_FIELD", "restock: must be a boolean", NULL);
        }
        restock = !r || json_is_true(r);
        if (!method)
            method = "CARD";
    }
    fs_err err = {0};
    char event_id[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(event_id);
    int64_t now = fs_now_ms(), t0 = fs_mono_ms();
    api_bus_order(a->bus, id, &o);
    int sent_at_version = o.version; /* only changes after this answer the command */
    ord_command cmd = {.type = acts[k].command, .restock = restock, .requested_at = now};
    snprintf(cmd.order_id, sizeof cmd.order_id, "%s", id);
    snprintf(cmd.member_id, sizeof cmd.member_id, "%s", who->sub);
    snprintf(cmd.method, sizeof cmd.method, "%s", method);
    json_decref(body);
    void *buf = NULL;
    size_t len = 0;
    int rc = ord_command_encode(a->codec, &cmd, &buf, &len, &err);
    api_waiter *ticket = NULL;
    if (!rc)
        rc = api_bus_produce_order_command(a->bus, id, buf, len, ord_cmd_name(cmd.type), event_id,
                                           now, &ticket, &err);
    free(buf);
    if (rc) {
        fs_metrics_produce_error();
        return fs_http_unavailable(req, "the command could not be queued", err.msg);
    }
    int r = wait_for_status(a, id, event_id, acts[k].targets, sent_at_version,
                            t0 + (a->decision_wait_ms > 5000 ? a->decision_wait_ms : 5000), &o);
    bool durable = r != -1 || command_durable(a, ticket);
    api_bus_waiter_release(a->bus, ticket);
    if (!durable)
        return outcome_unknown(req, id, "the command", true);
    if (r == 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "not allowed while the order is %s", api_order_current_status(&o));
        /* an order this caller may act on (checked above), ended long enough ago that the
         * saga has forgotten it (FLASHSALE_SAGA_ENDED_MEMORY_MS): what the saga said of it
         * while it held it */
        const char *code = o.rejected_code,
                   *ended = ord_ended_refusal(acts[k].command, api_order_lifecycle(&o));
        /* (a member's command on another's order is refused ORDER_NOT_FOUND by the saga
         * whether it holds the order or not; completing a return is the admin's own) */
        if (!strcmp(code, "ORDER_NOT_FOUND") && ended &&
            (acts[k].command == ORD_CMD_COMPLETE_RETURN || !strcmp(o.member_id, who->sub)))
            code = ended;
        return fs_http_json(req, !strcmp(code, "ORDER_NOT_FOUND") ? 404 : 409,
                            json_pack("{s:{s:s,s:s,s:s,s:s}}", "error", "code", code,
                                      "message", msg, "request_id", req->request_id, "status",
                                      api_order_current_status(&o)),
                            NULL);
    }
    if (r == 1 && api_order_lifecycle(&o) == ORD_PAYMENT_FAILED)
        return fs_http_json(req, 409,
                            json_pack("{s:{s:s,s:s,s:s,s:s}}", "error", "code", "PAYMENT_FAILED",
                                      "message", "the payment was declined; the reservation was released",
                                      "request_id", req->request_id, "status", "PAYMENT_FAILED"),
                            NULL);
    if (r == 1)
        return fs_http_json(req, 200, order_json(&o), NULL);
    char loc[128];
    snprintf(loc, sizeof loc, "Location: /api/orders/%s\r\n", id);
    return fs_http_json(req, 202, order_json(&o), loc);
}

int api_orders_item(struct mg_connection *conn, void *cb)
{
    api_ctx *a = cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_ORDER);
    fs_principal who;
    const char *method = req.ri->request_method;
    if (strcmp(method, "GET") && strcmp(method, "POST"))
        return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "use GET or POST", "Allow: GET, POST\r\n");
    if (!api_auth(&req, a, NULL, &who))
        return 401;
    const char *rest = req.ri->local_uri + strlen("/api/orders/");
    char id[INV_ID_MAX];
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (idlen == 0 || idlen >= sizeof id)
        return fs_http_error(&req, 404, "ORDER_NOT_FOUND", "no such order", NULL);
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
    if (slash) {
        if (strcmp(method, "POST"))
            return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "use POST", "Allow: POST\r\n");
        int gated = api_write_gate(&req, a, &who);
        if (gated)
            return gated;
        return order_action(&req, a, &who, id, slash + 1);
    }
    if (strcmp(method, "GET"))
        return fs_http_error(&req, 405, "METHOD_NOT_ALLOWED", "use GET", "Allow: GET\r\n");
    /* The read model (Redis, else PostgreSQL) answers, unless the API's own view of the log
     * already holds a newer change of this order (read your own writes). */
    api_order o, rm;
    api_fresh fresh = {"log", 0}, rm_fresh;
    bool in_bus = api_bus_order(a->bus, id, &o);
    if (api_rm_order(a, id, &rm, &rm_fresh) &&
        (!in_bus || o.nhistory == 0 || rm.decided_at >= o.history[o.nhistory - 1].at)) {
        o = rm;
        fresh = rm_fresh;
        in_bus = true;
    }
    /* Another member's order is answered exactly like a missing one. */
    if (!in_bus || (strcmp(o.member_id, who.sub) && strcmp(who.role, "admin")))
        return fs_http_error(&req, 404, "ORDER_NOT_FOUND", "no such order", NULL);
    char wait[16] = "";
    if (req.ri->query_string && mg_get_var(req.ri->query_string, strlen(req.ri->query_string), "wait",
                                           wait, sizeof wait) > 0) {
        char *end;
        long secs = strtol(wait, &end, 10);
        if (*end || secs < 0 || secs > 30)
            return fs_http_error(&req, 400, "INVALID_PARAMETER", "wait: seconds from 0 to 30", NULL);
        if (secs > 0)
            adopt_from_read_model(a, id);
        if (secs > 0 && api_bus_order(a->bus, id, &o)) { /* long poll: the next change, or after `secs` */
            api_bus_order_wait(a->bus, id, o.version, fs_mono_ms() + secs * 1000, &o, NULL);
            fresh = (api_fresh){"log", 0};
        }
    }
    json_t *out = order_json(&o);
    json_object_set_new(out, "freshness", api_fresh_json(&fresh));
    return fs_http_json(&req, 200, out, NULL);
}
