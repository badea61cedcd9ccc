/* Order lifecycle table and snapshot codec; see flashsale/order.h. */
#include "flashsale/order.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[ORD_STATUS_COUNT] = {
    "PENDING",   "RESERVED",       "PAID",    "SHIPPING",  "DELIVERED",       "RETURN_REQUESTED",
    "RETURNED",  "REJECTED",       "PAYMENT_FAILED", "EXPIRED", "CANCELLED", "NEEDS_ATTENTION",
    "PAYING"};
static const char *const line_names[LINE_STATE_COUNT] = {"PENDING",  "RESERVED",  "REJECTED",
                                                         "RELEASED", "COMMITTED", "RESTOCKED"};

const char *ord_status_name(ord_status s)
{
    return (unsigned)s < ORD_STATUS_COUNT ? status_names[s] : "?";
}

int ord_status_parse(const char *name)
{
    for (int i = 0; i < ORD_STATUS_COUNT; i++)
        if (!strcmp(name, status_names[i]))
            return i;
    return -1;
}

const char *line_state_name(line_state s)
{
    return (unsigned)s < LINE_STATE_COUNT ? line_names[s] : "?";
}

static int line_parse(const char *name)
{
    for (int i = 0; i < LINE_STATE_COUNT; i++)
        if (!strcmp(name, line_names[i]))
            return i;
    return LINE_PENDING;
}

#define T(from, to) [from][to] = true
static const bool table[ORD_STATUS_COUNT][ORD_STATUS_COUNT] = {
    T(ORD_PENDING, ORD_RESERVED),       T(ORD_PENDING, ORD_REJECTED),
    T(ORD_RESERVED, ORD_PAYING),        T(ORD_RESERVED, ORD_EXPIRED),
    T(ORD_RESERVED, ORD_CANCELLED),     T(ORD_PAYING, ORD_PAID),
    T(ORD_PAYING, ORD_PAYING), /* a retried payment attempt */
    T(ORD_PAYING, ORD_PAYMENT_FAILED),  T(ORD_PAYING, ORD_NEEDS_ATTENTION),
    T(ORD_PAID, ORD_SHIPPING),          T(ORD_PAID, ORD_CANCELLED),
    T(ORD_PAID, ORD_NEEDS_ATTENTION),   T(ORD_SHIPPING, ORD_DELIVERED),
    T(ORD_DELIVERED, ORD_RETURN_REQUESTED), T(ORD_RETURN_REQUESTED, ORD_RETURNED),
    T(ORD_CANCELLED, ORD_NEEDS_ATTENTION), T(ORD_RETURNED, ORD_NEEDS_ATTENTION),
};
#undef T

bool ord_transition_is_valid(ord_status from, ord_status to)
{
    return (unsigned)from < ORD_STATUS_COUNT && (unsigned)to < ORD_STATUS_COUNT && table[from][to];
}

bool ord_status_is_terminal(ord_status s)
{
    return s == ORD_REJECTED || s == ORD_PAYMENT_FAILED || s == ORD_EXPIRED || s == ORD_CANCELLED ||
           s == ORD_RETURNED;
}

bool ord_window_closed(const ord_order *o)
{
    return o->status == ORD_DELIVERED && !strcmp(o->reason, ORD_REASON_WINDOW_CLOSED);
}

_Static_assert(offsetof(ord_order, lines) + sizeof(((ord_order *)0)->lines) == sizeof(ord_order),
               "ord_order's lines must be its last member (ord_order_used_size)");

size_t ord_order_used_size(const ord_order *o)
{
    int n = o->nlines < 0 ? 0 : o->nlines > ORD_MAX_LINES ? ORD_MAX_LINES : o->nlines;
    return offsetof(ord_order, lines) + (size_t)n * sizeof(ord_line);
}

int64_t ord_ended_at(const ord_order *o)
{
    return ord_status_is_terminal(o->status) || ord_window_closed(o) ? o->occurred_at : 0;
}

int ord_encode(const fs_codec *codec, const ord_order *o, void **buf, size_t *len, fs_err *err)
{
    const fs_schema *s = fs_codec_reader(codec, "OrderStatusChanged");
    avro_value_t v, lines;
    if (!s)
        return fs_err_set(err, FS_ERR_FATAL, 0, "no schema OrderStatusChanged");
    if (fs_schema_value_new(s, &v, err))
        return -1;
    int rc = fs_av_set_str(&v, "order_id", o->order_id, err) ||
             fs_av_set_str(&v, "member_id", o->member_id, err) ||
             fs_av_set_enum(&v, "status", ord_status_name(o->status), err) ||
             fs_av_set_enum(&v, "previous", ord_status_name(o->previous), err) ||
             fs_av_set_str(&v, "reason", o->reason, err) ||
             (o->pay_by ? fs_av_set_long(&v, "pay_by", o->pay_by, err) : fs_av_set_null(&v, "pay_by", err)) ||
             fs_av_set_long(&v, "amount", o->amount, err) ||
             fs_av_set_long(&v, "deadline", o->deadline, err) ||
             fs_av_set_long(&v, "delivered_at", o->delivered_at, err) ||
             fs_av_set_int(&v, "payment_attempts", o->payment_attempts, err) ||
             fs_av_set_bool(&v, "restock_on_return", o->restock_on_return, err) ||
             fs_av_set_long(&v, "occurred_at", o->occurred_at, err);
    if (!rc && avro_value_get_by_name(&v, "lines", &lines, NULL))
        rc = fs_err_set(err, FS_ERR_INVALID, 0, "OrderStatusChanged without lines");
    for (int i = 0; !rc && i < o->nlines; i++) {
        avro_value_t l;
        const ord_line *ln = &o->lines[i];
        if (avro_value_append(&lines, &l, NULL))
            rc = fs_err_set(err, FS_ERR_INVALID, 0, "OrderStatusChanged: %s", avro_strerror());
        else
            rc = fs_av_set_str(&l, "product_id", ln->product_id, err) ||
                 fs_av_set_int(&l, "quantity", ln->quantity, err) ||
                 fs_av_set_long(&l, "unit_price", ln->unit_price, err) ||
                 fs_av_set_str(&l, "state", line_state_name(ln->state), err) ||
                 fs_av_set_str(&l, "reason", ln->reason, err);
    }
    if (!rc)
        rc = fs_codec_encode(s, &v, buf, len, err);
    avro_value_decref(&v);
    return rc ? -1 : 0;
}

int ord_decode(avro_value_t *v, ord_order *o, fs_err *err)
{
    char sym[32];
    memset(o, 0, sizeof *o);
    int st, prev;
    if (fs_av_get_strcpy(v, "order_id", o->order_id, sizeof o->order_id, err) ||
        fs_av_get_strcpy(v, "member_id", o->member_id, sizeof o->member_id, err) ||
        fs_av_get_enum(v, "status", sym, sizeof sym, err))
        return -1;
    st = ord_status_parse(sym);
    if (fs_av_get_enum(v, "previous", sym, sizeof sym, err))
        return -1;
    prev = ord_status_parse(sym);
    if (!o->order_id[0] || st < 0 || prev < 0)
        return fs_err_set(err, FS_ERR_INVALID, 0, "OrderStatusChanged without order or status");
    o->status = (ord_status)st;
    o->previous = (ord_status)prev;
    avro_value_t pay_by;
    if (fs_av_get_strcpy(v, "reason", o->reason, sizeof o->reason, err) ||
        fs_av_get_long(v, "amount", &o->amount, err) ||
        fs_av_get_long(v, "deadline", &o->deadline, err) ||
        fs_av_get_long(v, "delivered_at", &o->delivered_at, err) ||
        fs_av_get_int(v, "payment_attempts", &o->payment_attempts, err) ||
        fs_av_get_bool(v, "restock_on_return", &o->restock_on_return, err) ||
        fs_av_get_long(v, "occurred_at", &o->occurred_at, err))
        return -1;
    /* pay_by: null until the order has a reservation */
    if (avro_value_get_by_name(v, "pay_by", &pay_by, NULL) == 0) {
        avro_value_t b;
        int disc = -1;
        if (avro_value_get_discriminant(&pay_by, &disc) == 0 && disc == 1 &&
            avro_value_get_current_branch(&pay_by, &b) == 0)
            avro_value_get_long(&b, &o->pay_by);
    }
    avro_value_t lines;
    size_t n = 0;
    if (avro_value_get_by_name(v, "lines", &lines, NULL) || avro_value_get_size(&lines, &n))
        return fs_err_set(err, FS_ERR_INVALID, 0, "OrderStatusChanged without lines");
    if (n > ORD_MAX_LINES)
        return fs_err_set(err, FS_ERR_INVALID, 0, "OrderStatusChanged with %zu lines (at most %d)", n,
                          ORD_MAX_LINES);
    for (size_t i = 0; i < n; i++) {
        avro_value_t l;
        ord_line *ln = &o->lines[o->nlines++];
        if (avro_value_get_by_index(&lines, i, &l, NULL))
            return fs_err_set(err, FS_ERR_INVALID, 0, "OrderStatusChanged: line %zu", i);
        if (fs_av_get_strcpy(&l, "product_id", ln->product_id, sizeof ln->product_id, err) ||
            fs_av_get_int(&l, "quantity", &ln->quantity, err) ||
            fs_av_get_long(&l, "unit_price", &ln->unit_price, err) ||
            fs_av_get_strcpy(&l, "state", sym, sizeof sym, err) ||
            fs_av_get_strcpy(&l, "reason", ln->reason, sizeof ln->reason, err))
            return -1;
        ln->state = (line_state)line_parse(sym);
    }
    return 0;
}
