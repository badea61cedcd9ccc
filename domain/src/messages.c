/* Codecs of the order, payment and notification messages; see flashsale/messages.h. */
#include "flashsale/messages.h"

#include "fs/id.h"

#include <stdio.h>
#include <string.h>

static const char *const ord_cmd_names[ORD_CMD_COUNT] = {
    "PlaceCheckout", "PayOrder", "CancelOrder", "RequestReturn", "CompleteReturn"};
static const char *const pay_cmd_names[PAY_CMD_COUNT] = {"RequestPayment", "RequestRefund"};
static const char *const mem_event_names[MEM_EV_COUNT] = {"MemberRegistered", "MemberVerified",
                                                           "MemberUpdated", "MemberDeleted"};
static const char *const pay_event_names[PAY_EV_COUNT] = {"PaymentSucceeded", "PaymentFailed",
                                                          "RefundSucceeded", "RefundFailed"};

static int parse(const char *const *names, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (!strcmp(names[i], name))
            return i;
    return -1;
}

const char *ord_cmd_name(ord_cmd_type t)
{
    return (unsigned)t < ORD_CMD_COUNT ? ord_cmd_names[t] : "?";
}
int ord_cmd_parse(const char *schema_name)
{
    return parse(ord_cmd_names, ORD_CMD_COUNT, schema_name);
}
const char *pay_cmd_name(pay_cmd_type t)
{
    return (unsigned)t < PAY_CMD_COUNT ? pay_cmd_names[t] : "?";
}
int pay_cmd_parse(const char *schema_name)
{
    return parse(pay_cmd_names, PAY_CMD_COUNT, schema_name);
}
const char *pay_event_name(pay_event_type t)
{
    return (unsigned)t < PAY_EV_COUNT ? pay_event_names[t] : "?";
}
int pay_event_parse(const char *schema_name)
{
    return parse(pay_event_names, PAY_EV_COUNT, schema_name);
}

const char *mem_event_name(mem_event_type t)
{
    return (unsigned)t < MEM_EV_COUNT ? mem_event_names[t] : "?";
}
int mem_event_parse(const char *schema_name)
{
    return parse(mem_event_names, MEM_EV_COUNT, schema_name);
}

/* Builds a value of the named schema, lets fill() set its fields, encodes it. */
static int encode(const fs_codec *codec, const char *schema, const void *msg,
                  int (*fill)(avro_value_t *v, const void *msg, fs_err *err), void **buf,
                  size_t *len, fs_err *err)
{
    const fs_schema *sc = fs_codec_reader(codec, schema);
    avro_value_t v;
    if (!sc)
        return fs_err_set(err, FS_ERR_FATAL, 0, "no schema %s", schema);
    if (fs_schema_value_new(sc, &v, err))
        return -1;
    int rc = fill(&v, msg, err);
    if (rc == 0)
        rc = fs_codec_encode(sc, &v, buf, len, err);
    avro_value_decref(&v);
    return rc;
}

static int need(const char *value, const char *what, const char *field, fs_err *err)
{
    return value[0] ? 0 : fs_err_set(err, FS_ERR_INVALID, 0, "%s without %s", what, field);
}

/* ---- orders.commands ------------------------------------------------------------------ */

static int fill_ord_command(avro_value_t *v, const void *msg, fs_err *err)
{
    const ord_command *c = msg;
    const char *who = c->type == ORD_CMD_COMPLETE_RETURN ? "actor_id" : "member_id";
    if (fs_av_set_str(v, "order_id", c->order_id, err) || fs_av_set_str(v, who, c->member_id, err) ||
        fs_av_set_long(v, "requested_at", c->requested_at, err))
        return -1;
    switch (c->type) {
    case ORD_CMD_PLACE_CHECKOUT: {
        avro_value_t items, it;
        if (fs_av_set_str(v, "idempotency_key", c->idempotency_key[0] ? c->idempotency_key : NULL,
                          err))
            return -1;
        if (avro_value_get_by_name(v, "items", &items, NULL))
            return fs_err_set(err, FS_ERR_INVALID, 0, "PlaceCheckout without items");
        for (int i = 0; i < c->nitems; i++)
            if (avro_value_append(&items, &it, NULL) ||
                fs_av_set_str(&it, "product_id", c->items[i].product_id, err) ||
                fs_av_set_int(&it, "quantity", c->items[i].quantity, err))
                return err->cls ? -1 : fs_err_set(err, FS_ERR_INVALID, 0, "%s", avro_strerror());
        return 0;
    }
    case ORD_CMD_PAY: return fs_av_set_str(v, "method", c->method, err);
    case ORD_CMD_CANCEL: return 0;
    case ORD_CMD_REQUEST_RETURN: return fs_av_set_str(v, "reason", c->reason, err);
    case ORD_CMD_COMPLETE_RETURN: return fs_av_set_bool(v, "restock", c->restock, err);
    default: return fs_err_set(err, FS_ERR_INVALID, 0, "unknown order command %d", (int)c->type);
    }
}

int ord_command_encode(const fs_codec *codec, const ord_command *c, void **buf, size_t *len,
                       fs_err *err)
{
    return encode(codec, ord_cmd_name(c->type), c, fill_ord_command, buf, len, err);
}

int ord_command_decode(avro_value_t *v, const char *type_name, ord_command *c, fs_err *err)
{
    memset(c, 0, sizeof *c);
    int t = ord_cmd_parse(type_name);
    if (t < 0)
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s is not an order command", type_name);
    c->type = (ord_cmd_type)t;
    const char *who = c->type == ORD_CMD_COMPLETE_RETURN ? "actor_id" : "member_id";
    if (fs_av_get_strcpy(v, "order_id", c->order_id, sizeof c->order_id, err) ||
        fs_av_get_strcpy(v, who, c->member_id, sizeof c->member_id, err) ||
        fs_av_get_long(v, "requested_at", &c->requested_at, err) ||
        need(c->order_id, type_name, "order_id", err))
        return -1;
    switch (c->type) {
    case ORD_CMD_PLACE_CHECKOUT: {
        avro_value_t items, it;
        size_t n = 0;
        if (fs_av_get_strcpy(v, "idempotency_key", c->idempotency_key, sizeof c->idempotency_key,
                             err))
            return -1;
        if (avro_value_get_by_name(v, "items", &items, NULL) || avro_value_get_size(&items, &n))
            return fs_err_set(err, FS_ERR_INVALID, 0, "PlaceCheckout without items");
        if (n == 0 || n > ORD_MAX_LINES)
            return fs_err_set(err, FS_ERR_INVALID, 0, "PlaceCheckout with %zu items (1..%d)", n,
                              ORD_MAX_LINES);
        for (size_t i = 0; i < n; i++) {
            ord_item *item = &c->items[c->nitems++];
            if (avro_value_get_by_index(&items, i, &it, NULL) ||
                fs_av_get_strcpy(&it, "product_id", item->product_id, sizeof item->product_id, err) ||
                fs_av_get_int(&it, "quantity", &item->quantity, err))
                return err->cls ? -1 : fs_err_set(err, FS_ERR_INVALID, 0, "PlaceCheckout item");
        }
        return need(c->member_id, type_name, "member_id", err);
    }
    case ORD_CMD_PAY: return fs_av_get_strcpy(v, "method", c->method, sizeof c->method, err);
    case ORD_CMD_REQUEST_RETURN: return fs_av_get_strcpy(v, "reason", c->reason, sizeof c->reason, err);
    case ORD_CMD_COMPLETE_RETURN: return fs_av_get_bool(v, "restock", &c->restock, err);
    default: return 0;
    }
}

/* ---- orders.events: OrderCommandRejected ---------------------------------------------- */

static int fill_rejection(avro_value_t *v, const void *msg, fs_err *err)
{
    const ord_rejection *r = msg;
    return fs_av_set_str(v, "order_id", r->order_id, err) ||
                   fs_av_set_str(v, "member_id", r->member_id, err) ||
                   fs_av_set_str(v, "command_type", r->command_type, err) ||
                   fs_av_set_str(v, "code", r->code, err) || fs_av_set_str(v, "status", r->status, err) ||
                   fs_av_set_long(v, "occurred_at", r->occurred_at, err)
               ? -1
               : 0;
}

int ord_rejection_encode(const fs_codec *codec, const ord_rejection *r, void **buf, size_t *len,
                         fs_err *err)
{
    return encode(codec, "OrderCommandRejected", r, fill_rejection, buf, len, err);
}

int ord_rejection_decode(avro_value_t *v, ord_rejection *r, fs_err *err)
{
    memset(r, 0, sizeof *r);
    return fs_av_get_strcpy(v, "order_id", r->order_id, sizeof r->order_id, err) ||
                   fs_av_get_strcpy(v, "member_id", r->member_id, sizeof r->member_id, err) ||
                   fs_av_get_strcpy(v, "command_type", r->command_type, sizeof r->command_type, err) ||
                   fs_av_get_strcpy(v, "code", r->code, sizeof r->code, err) ||
                   fs_av_get_strcpy(v, "status", r->status, sizeof r->status, err) ||
                   fs_av_get_long(v, "occurred_at", &r->occurred_at, err) ||
                   need(r->order_id, "OrderCommandRejected", "order_id", err)
               ? -1
               : 0;
}

/* ---- orders.answers ------------------------------------------------------------------- */

static int fill_answer(avro_value_t *v, const void *msg, fs_err *err)
{
    const ord_answer *a = msg;
    return fs_av_set_str(v, "order_id", a->order_id, err) ||
                   fs_av_set_str(v, "member_id", a->member_id, err) ||
                   fs_av_set_str(v, "product_id", a->product_id, err) ||
                   fs_av_set_int(v, "quantity", a->quantity, err) ||
                   fs_av_set_str(v, "status", a->status, err) || fs_av_set_str(v, "reason", a->reason, err) ||
                   fs_av_set_long(v, "pay_by", a->pay_by, err) ||
                   fs_av_set_str(v, "source", a->source, err) ||
                   fs_av_set_int(v, "http_status", a->http_status, err) ||
                   fs_av_set_long(v, "answered_at", a->answered_at, err)
               ? -1
               : 0;
}

int ord_answer_encode(const fs_codec *codec, const ord_answer *a, void **buf, size_t *len,
                      fs_err *err)
{
    return encode(codec, "OrderAnswered", a, fill_answer, buf, len, err);
}

int ord_answer_decode(avro_value_t *v, ord_answer *a, fs_err *err)
{
    memset(a, 0, sizeof *a);
    return fs_av_get_strcpy(v, "order_id", a->order_id, sizeof a->order_id, err) ||
                   fs_av_get_strcpy(v, "member_id", a->member_id, sizeof a->member_id, err) ||
                   fs_av_get_strcpy(v, "product_id", a->product_id, sizeof a->product_id, err) ||
                   fs_av_get_int(v, "quantity", &a->quantity, err) ||
                   fs_av_get_strcpy(v, "status", a->status, sizeof a->status, err) ||
                   fs_av_get_strcpy(v, "reason", a->reason, sizeof a->reason, err) ||
                   fs_av_get_long(v, "pay_by", &a->pay_by, err) ||
                   fs_av_get_strcpy(v, "source", a->source, sizeof a->source, err) ||
                   fs_av_get_int(v, "http_status", &a->http_status, err) ||
                   fs_av_get_long(v, "answered_at", &a->answered_at, err) ||
                   need(a->order_id, "OrderAnswered", "order_id", err)
               ? -1
               : 0;
}

/* ---- payments ------------------------------------------------------------------------- */

static int fill_pay_command(avro_value_t *v, const void *msg, fs_err *err)
{
    const pay_command *c = msg;
    if (fs_av_set_str(v, "order_id", c->order_id, err) ||
        fs_av_set_str(v, "member_id", c->member_id, err) ||
        fs_av_set_long(v, "amount", c->amount, err) ||
        fs_av_set_long(v, "requested_at", c->requested_at, err))
        return -1;
    if (c->type == PAY_CMD_REQUEST_PAYMENT)
        return fs_av_set_str(v, "method", c->method, err) || fs_av_set_int(v, "attempt", c->attempt, err)
                   ? -1
                   : 0;
    return fs_av_set_str(v, "reason", c->reason, err);
}

int pay_command_encode(const fs_codec *codec, const pay_command *c, void **buf, size_t *len,
                       fs_err *err)
{
    if ((unsigned)c->type >= PAY_CMD_COUNT)
        return fs_err_set(err, FS_ERR_INVALID, 0, "unknown payment command %d", (int)c->type);
    return encode(codec, pay_cmd_name(c->type), c, fill_pay_command, buf, len, err);
}

int pay_command_decode(avro_value_t *v, const char *type_name, pay_command *c, fs_err *err)
{
    memset(c, 0, sizeof *c);
    int t = pay_cmd_parse(type_name);
    if (t < 0)
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s is not a payment command", type_name);
    c->type = (pay_cmd_type)t;
    if (fs_av_get_strcpy(v, "order_id", c->order_id, sizeof c->order_id, err) ||
        fs_av_get_strcpy(v, "member_id", c->member_id, sizeof c->member_id, err) ||
        fs_av_get_long(v, "amount", &c->amount, err) ||
        fs_av_get_long(v, "requested_at", &c->requested_at, err) ||
        need(c->order_id, type_name, "order_id", err))
        return -1;
    if (c->type == PAY_CMD_REQUEST_PAYMENT)
        return fs_av_get_strcpy(v, "method", c->method, sizeof c->method, err) ||
                       fs_av_get_int(v, "attempt", &c->attempt, err)
                   ? -1
                   : 0;
    return fs_av_get_strcpy(v, "reason", c->reason, sizeof c->reason, err);
}

static int fill_pay_event(avro_value_t *v, const void *msg, fs_err *err)
{
    const pay_event *e = msg;
    if (fs_av_set_str(v, "order_id", e->order_id, err) ||
        fs_av_set_str(v, "member_id", e->member_id, err) ||
        fs_av_set_long(v, "amount", e->amount, err) ||
        fs_av_set_long(v, "occurred_at", e->occurred_at, err))
        return -1;
    switch (e->type) {
    case PAY_EV_PAYMENT_SUCCEEDED:
        return fs_av_set_str(v, "payment_id", e->payment_id, err) ||
                       fs_av_set_int(v, "attempt", e->attempt, err)
                   ? -1
                   : 0;
    case PAY_EV_PAYMENT_FAILED:
        return fs_av_set_str(v, "reason", e->reason, err) ||
                       fs_av_set_bool(v, "retriable", e->retriable, err) ||
                       fs_av_set_int(v, "attempt", e->attempt, err)
                   ? -1
                   : 0;
    case PAY_EV_REFUND_SUCCEEDED: return fs_av_set_str(v, "payment_id", e->payment_id, err);
    default: return fs_av_set_str(v, "reason", e->reason, err);
    }
}

int pay_event_encode(const fs_codec *codec, const pay_event *e, void **buf, size_t *len,
                     fs_err *err)
{
    if ((unsigned)e->type >= PAY_EV_COUNT)
        return fs_err_set(err, FS_ERR_INVALID, 0, "unknown payment event %d", (int)e->type);
    return encode(codec, pay_event_name(e->type), e, fill_pay_event, buf, len, err);
}

int pay_event_decode(avro_value_t *v, const char *type_name, pay_event *e, fs_err *err)
{
    memset(e, 0, sizeof *e);
    int t = pay_event_parse(type_name);
    if (t < 0)
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s is not a payment event", type_name);
    e->type = (pay_event_type)t;
    if (fs_av_get_strcpy(v, "order_id", e->order_id, sizeof e->order_id, err) ||
        fs_av_get_strcpy(v, "member_id", e->member_id, sizeof e->member_id, err) ||
        fs_av_get_long(v, "amount", &e->amount, err) ||
        fs_av_get_long(v, "occurred_at", &e->occurred_at, err) ||
        need(e->order_id, type_name, "order_id", err))
        return -1;
    switch (e->type) {
    case PAY_EV_PAYMENT_SUCCEEDED:
        return fs_av_get_strcpy(v, "payment_id", e->payment_id, sizeof e->payment_id, err) ||
                       fs_av_get_int(v, "attempt", &e->attempt, err)
                   ? -1
                   : 0;
    case PAY_EV_PAYMENT_FAILED:
        return fs_av_get_strcpy(v, "reason", e->reason, sizeof e->reason, err) ||
                       fs_av_get_bool(v, "retriable", &e->retriable, err) ||
                       fs_av_get_int(v, "attempt", &e->attempt, err)
                   ? -1
                   : 0;
    case PAY_EV_REFUND_SUCCEEDED:
        return fs_av_get_strcpy(v, "payment_id", e->payment_id, sizeof e->payment_id, err);
    default: return fs_av_get_strcpy(v, "reason", e->reason, sizeof e->reason, err);
    }
}

/* ---- notifications -------------------------------------------------------------------- */

int fs_notification_param(fs_notification *n, const char *key, const char *value)
{
    if (n->nparams >= FS_NOTIFICATION_MAX_PARAMS || strlen(key) >= sizeof n->params[0].key ||
        strlen(value) >= sizeof n->params[0].value)
        return -1;
    snprintf(n->params[n->nparams].key, sizeof n->params[0].key, "%s", key);
    snprintf(n->params[n->nparams].value, sizeof n->params[0].value, "%s", value);
    n->nparams++;
    return 0;
}

const char *fs_notification_get(const fs_notification *n, const char *key)
{
    for (int i = 0; i < n->nparams; i++)
        if (!strcmp(n->params[i].key, key))
            return n->params[i].value;
    return NULL;
}

static int fill_notification(avro_value_t *v, const void *msg, fs_err *err)
{
    const fs_notification *n = msg;
    avro_value_t map, p;
    if (fs_av_set_str(v, "notification_id", n->notification_id, err) ||
        fs_av_set_str(v, "member_id", n->member_id, err) || fs_av_set_str(v, "kind", n->kind, err) ||
        fs_av_set_str(v, "email", n->email[0] ? n->email : NULL, err) ||
        fs_av_set_long(v, "occurred_at", n->occurred_at, err))
        return -1;
    if (avro_value_get_by_name(v, "params", &map, NULL))
        return fs_err_set(err, FS_ERR_INVALID, 0, "NotificationRequested without params");
    for (int i = 0; i < n->nparams; i++)
        if (avro_value_add(&map, n->params[i].key, &p, NULL, NULL) ||
            avro_value_set_string(&p, n->params[i].value))
            return fs_err_set(err, FS_ERR_INVALID, 0, "notification params: %s", avro_strerror());
    return 0;
}

int fs_notification_encode(const fs_codec *codec, const fs_notification *n, void **buf,
                           size_t *len, fs_err *err)
{
    return encode(codec, "NotificationRequested", n, fill_notification, buf, len, err);
}

int fs_notification_decode(avro_value_t *v, fs_notification *n, fs_err *err)
{
    avro_value_t map, p;
    size_t count = 0;
    memset(n, 0, sizeof *n);
    if (fs_av_get_strcpy(v, "notification_id", n->notification_id, sizeof n->notification_id, err) ||
        fs_av_get_strcpy(v, "member_id", n->member_id, sizeof n->member_id, err) ||
        fs_av_get_strcpy(v, "kind", n->kind, sizeof n->kind, err) ||
        fs_av_get_strcpy(v, "email", n->email, sizeof n->email, err) ||
        fs_av_get_long(v, "occurred_at", &n->occurred_at, err) ||
        need(n->member_id, "NotificationRequested", "member_id", err) ||
        need(n->kind, "NotificationRequested", "kind", err))
        return -1;
    if (avro_value_get_by_name(v, "params", &map, NULL) || avro_value_get_size(&map, &count))
        return fs_err_set(err, FS_ERR_INVALID, 0, "NotificationRequested without params");
    for (size_t i = 0; i < count; i++) {
        const char *key, *value;
        size_t len;
        if (avro_value_get_by_index(&map, i, &p, &key) || avro_value_get_string(&p, &value, &len) ||
            fs_notification_param(n, key, value))
            return fs_err_set(err, FS_ERR_INVALID, 0, "NotificationRequested: param %zu unreadable or too long", i);
    }
    return 0;
}

int fs_notification_new_bytes(const fs_codec *codec, const char *member_id, const char *email,
                              const char *kind, const char *const *params, int64_t at,
                              void **buf, size_t *len, fs_err *err)
{
    fs_notification n;
    memset(&n, 0, sizeof n);
    fs_uuid7_str(n.notification_id);
    if (snprintf(n.member_id, sizeof n.member_id, "%s", member_id) >= (int)sizeof n.member_id ||
        snprintf(n.kind, sizeof n.kind, "%s", kind) >= (int)sizeof n.kind ||
        snprintf(n.email, sizeof n.email, "%s", email ? email : "") >= (int)sizeof n.email)
        return fs_err_set(err, FS_ERR_INVALID, 0, "notification %s: a field is too long", kind);
    for (const char *const *p = params; p && p[0]; p += 2)
        if (fs_notification_param(&n, p[0], p[1] ? p[1] : ""))
            return fs_err_set(err, FS_ERR_INVALID, 0, "notification %s: parameter %s does not fit",
                              kind, p[0]);
    n.occurred_at = at;
    return fs_notification_encode(codec, &n, buf, len, err);
}

/* ---- members.events ------------------------------------------------------------------- */

static int fill_mem_event(avro_value_t *v, const void *msg, fs_err *err)
{
    const mem_event *e = msg;
    if (fs_av_set_str(v, "member_id", e->member_id, err) ||
        fs_av_set_long(v, "occurred_at", e->occurred_at, err))
        return -1;
    if (e->type == MEM_EV_REGISTERED)
        return fs_av_set_str(v, "role", e->role, err);
    if (e->type == MEM_EV_UPDATED) {
        avro_value_t arr, item;
        if (avro_value_get_by_name(v, "fields", &arr, NULL))
            return fs_err_set(err, FS_ERR_INVALID, 0, "MemberUpdated without fields");
        for (int i = 0; i < e->nfields; i++)
            if (avro_value_append(&arr, &item, NULL) || avro_value_set_string(&item, e->fields[i]))
                return fs_err_set(err, FS_ERR_INVALID, 0, "MemberUpdated: %s", avro_strerror());
    }
    return 0;
}

int mem_event_encode(const fs_codec *codec, const mem_event *e, void **buf, size_t *len,
                     fs_err *err)
{
    if ((unsigned)e->type >= MEM_EV_COUNT)
        return fs_err_set(err, FS_ERR_INVALID, 0, "unknown member event %d", (int)e->type);
    return encode(codec, mem_event_name(e->type), e, fill_mem_event, buf, len, err);
}

int mem_event_decode(avro_value_t *v, const char *type_name, mem_event *e, fs_err *err)
{
    memset(e, 0, sizeof *e);
    int t = mem_event_parse(type_name);
    if (t < 0)
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s is not a member event", type_name);
    e->type = (mem_event_type)t;
    if (fs_av_get_strcpy(v, "member_id", e->member_id, sizeof e->member_id, err) ||
        fs_av_get_long(v, "occurred_at", &e->occurred_at, err) ||
        need(e->member_id, type_name, "member_id", err))
        return -1;
    if (e->type == MEM_EV_REGISTERED)
        return fs_av_get_strcpy(v, "role", e->role, sizeof e->role, err);
    if (e->type == MEM_EV_UPDATED) {
        avro_value_t arr, item;
        size_t n = 0;
        if (avro_value_get_by_name(v, "fields", &arr, NULL) || avro_value_get_size(&arr, &n) ||
            n > MEM_MAX_FIELDS)
            return fs_err_set(err, FS_ERR_INVALID, 0, "MemberUpdated: fields unreadable or too many");
        for (size_t i = 0; i < n; i++) {
            const char *f;
            size_t fl;
            if (avro_value_get_by_index(&arr, i, &item, NULL) || avro_value_get_string(&item, &f, &fl) ||
                snprintf(e->fields[i], sizeof e->fields[i], "%s", f) >= (int)sizeof e->fields[i])
                return fs_err_set(err, FS_ERR_INVALID, 0, "MemberUpdated: field %zu", i);
            e->nfields++;
        }
    }
    return 0;
}
