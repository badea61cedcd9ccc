/* Order lifecycle table and snapshot codec; see order_state.h. */
#include "flashsale/order.h"

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

int ord_encode(const fs_codec *codec, const ord_order *o, void **buf, size_t *len, fs_err *err)
{
    const fs_schema *s = fs_codec_reader(codec, "OrderStatusChanged");
    avro_value_t v, lines;
    if (!s)
        return fs_err_set(err, FS_ERR_FATAL, 0, "no schema OrderStatusChanged");
    if (fs_schema_value_new(s, &v, err))
        return -1;
    int rc = fs_av_put_str(&v, "order_id", o->order_id, true) ||
             fs_av_put_str(&v, "member_id", o->member_id, true) ||
             fs_av_put_symbol(&v, "status", ord_status_name(o->status)) ||
             fs_av_put_symbol(&v, "previous", ord_status_name(o->previous)) ||
             fs_av_put_str(&v, "reason", o->reason, true) ||
             fs_av_put_long(&v, "pay_by", o->pay_by, o->pay_by != 0) ||
             fs_av_put_long(&v, "amount", o->amount, true) ||
             fs_av_put_long(&v, "deadline", o->deadline, true) ||
             fs_av_put_long(&v, "delivered_at", o->delivered_at, true) ||
             fs_av_put_long(&v, "payment_attempts", o->payment_attempts, true) ||
             fs_av_put_bool(&v, "restock_on_return", o->restock_on_return) ||
             fs_av_put_long(&v, "occurred_at", o->occurred_at, true) ||
             avro_value_get_by_name(&v, "lines", &lines, NULL);
    for (int i = 0; !rc && i < o->nlines; i++) {
        avro_value_t l;
        const ord_line *ln = &o->lines[i];
        rc = avro_value_append(&lines, &l, NULL) ||
             fs_av_put_str(&l, "product_id", ln->product_id, true) ||
             fs_av_put_long(&l, "quantity", ln->quantity, true) ||
             fs_av_put_long(&l, "unit_price", ln->unit_price, true) ||
             fs_av_put_str(&l, "state", line_state_name(ln->state), true) ||
             fs_av_put_str(&l, "reason", ln->reason, true);
    }
    if (rc)
        rc = fs_err_set(err, FS_ERR_FATAL, 0, "OrderStatusChanged: %s", avro_strerror());
    else
        rc = fs_codec_encode(s, &v, buf, len, err);
    avro_value_decref(&v);
    return rc;
}

int ord_decode(avro_value_t *v, ord_order *o, fs_err *err)
{
    char sym[32];
    memset(o, 0, sizeof *o);
    fs_av_read_str(v, "order_id", o->order_id, sizeof o->order_id, NULL);
    fs_av_read_str(v, "member_id", o->member_id, sizeof o->member_id, NULL);
    fs_av_read_symbol(v, "status", sym, sizeof sym);
    int st = ord_status_parse(sym);
    fs_av_read_symbol(v, "previous", sym, sizeof sym);
    int prev = ord_status_parse(sym);
    if (!o->order_id[0] || st < 0)
        return fs_err_set(err, FS_ERR_INVALID, 0, "OrderStatusChanged without order or status");
    o->status = (ord_status)st;
    o->previous = prev < 0 ? ORD_PENDING : (ord_status)prev;
    fs_av_read_str(v, "reason", o->reason, sizeof o->reason, NULL);
    o->pay_by = fs_av_read_long(v, "pay_by", 0, NULL);
    o->amount = fs_av_read_long(v, "amount", 0, NULL);
    o->deadline = fs_av_read_long(v, "deadline", 0, NULL);
    o->delivered_at = fs_av_read_long(v, "delivered_at", 0, NULL);
    o->payment_attempts = (int32_t)fs_av_read_long(v, "payment_attempts", 0, NULL);
    o->restock_on_return = fs_av_read_bool(v, "restock_on_return", true);
    o->occurred_at = fs_av_read_long(v, "occurred_at", 0, NULL);
    avro_value_t lines;
    size_t n = 0;
    if (avro_value_get_by_name(v, "lines", &lines, NULL) == 0)
        avro_value_get_size(&lines, &n);
    for (size_t i = 0; i < n && i < ORD_MAX_LINES; i++) {
        avro_value_t l;
        avro_value_get_by_index(&lines, i, &l, NULL);
        ord_line *ln = &o->lines[o->nlines++];
        fs_av_read_str(&l, "product_id", ln->product_id, sizeof ln->product_id, NULL);
        ln->quantity = (int32_t)fs_av_read_long(&l, "quantity", 0, NULL);
        ln->unit_price = fs_av_read_long(&l, "unit_price", 0, NULL);
        fs_av_read_str(&l, "state", sym, sizeof sym, NULL);
        ln->state = (line_state)line_parse(sym);
        fs_av_read_str(&l, "reason", ln->reason, sizeof ln->reason, NULL);
    }
    return 0;
}
