/* Fuzz harness: the Avro single-object decoder (fs_codec_decode) on arbitrary bytes, for
 * every schema under schemas/, and the typed decoder of each schema (domain/).
 *
 * Checks: decoding never fails other than with FS_ERR_INVALID; a record that decodes is of a
 * reader schema, and encoded again it decodes to an equal value. Then the typed decoder of
 * its schema (picked by name: inventory commands and events, the order snapshot, order
 * commands, rejections and answers, payment commands and events, notifications, member
 * events) either refuses it with FS_ERR_INVALID or gives a message that its own encoder
 * writes and that reads back equal (after the encoders' documented normalisations), and
 * whose second encoding is byte for byte the first. Every reader schema must have a typed
 * decoder here: a new schema without one stops the harness at start. */
#include "fuzz.h"

#include "flashsale/inventory_codec.h"
#include "flashsale/messages.h"
#include "flashsale/order.h"

#include "fs/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fs_codec *codec;

/* ---- the typed messages: decode, encode, compare --------------------------------------- */

typedef enum {
    K_INV_COMMAND,
    K_INV_EVENT,
    K_ORDER,
    K_ORD_COMMAND,
    K_ORD_REJECTION,
    K_ORD_ANSWER,
    K_PAY_COMMAND,
    K_PAY_EVENT,
    K_NOTIFICATION,
    K_MEM_EVENT,
    K_NONE
} kind;

static kind kind_of(const char *name)
{
    for (int t = 0; t < INV_CMD_COUNT; t++)
        if (!strcmp(name, inv_cmd_name((inv_cmd_type)t)))
            return K_INV_COMMAND;
    for (int t = 0; t < INV_EV_COUNT; t++)
        if (!strcmp(name, inv_event_name((inv_event_type)t)))
            return K_INV_EVENT;
    if (!strcmp(name, "OrderStatusChanged"))
        return K_ORDER;
    if (ord_cmd_parse(name) >= 0)
        return K_ORD_COMMAND;
    if (!strcmp(name, "OrderCommandRejected"))
        return K_ORD_REJECTION;
    if (!strcmp(name, "OrderAnswered"))
        return K_ORD_ANSWER;
    if (pay_cmd_parse(name) >= 0)
        return K_PAY_COMMAND;
    if (pay_event_parse(name) >= 0)
        return K_PAY_EVENT;
    if (!strcmp(name, "NotificationRequested"))
        return K_NOTIFICATION;
    if (mem_event_parse(name) >= 0)
        return K_MEM_EVENT;
    return K_NONE;
}

/* Any typed message: one of these, by kind. */
typedef union {
    inv_command ic;
    inv_event ie;
    ord_order o;
    ord_command oc;
    ord_rejection rj;
    ord_answer an;
    pay_command pc;
    pay_event pe;
    fs_notification n;
    mem_event me;
} message;

static int typed_decode(kind k, avro_value_t *v, const char *name, message *m, fs_err *err)
{
    switch (k) {
    case K_INV_COMMAND: return inv_command_decode(v, name, &m->ic, err);
    case K_INV_EVENT: return inv_event_decode(v, name, &m->ie, err);
    case K_ORDER: return ord_decode(v, &m->o, err);
    case K_ORD_COMMAND: return ord_command_decode(v, name, &m->oc, err);
    case K_ORD_REJECTION: return ord_rejection_decode(v, &m->rj, err);
    case K_ORD_ANSWER: return ord_answer_decode(v, &m->an, err);
    case K_PAY_COMMAND: return pay_command_decode(v, name, &m->pc, err);
    case K_PAY_EVENT: return pay_event_decode(v, name, &m->pe, err);
    case K_NOTIFICATION: return fs_notification_decode(v, &m->n, err);
    case K_MEM_EVENT: return mem_event_decode(v, name, &m->me, err);
    default: return fs_err_set(err, FS_ERR_INVALID, 0, "no typed decoder");
    }
}

static int typed_encode(kind k, const message *m, void **buf, size_t *len, fs_err *err)
{
    switch (k) {
    case K_INV_COMMAND: return inv_command_encode(codec, &m->ic, buf, len, err);
    case K_INV_EVENT: return inv_event_encode(codec, &m->ie, buf, len, err);
    case K_ORDER: return ord_encode(codec, &m->o, buf, len, err);
    case K_ORD_COMMAND: return ord_command_encode(codec, &m->oc, buf, len, err);
    case K_ORD_REJECTION: return ord_rejection_encode(codec, &m->rj, buf, len, err);
    case K_ORD_ANSWER: return ord_answer_encode(codec, &m->an, buf, len, err);
    case K_PAY_COMMAND: return pay_command_encode(codec, &m->pc, buf, len, err);
    case K_PAY_EVENT: return pay_event_encode(codec, &m->pe, buf, len, err);
    case K_NOTIFICATION: return fs_notification_encode(codec, &m->n, buf, len, err);
    case K_MEM_EVENT: return mem_event_encode(codec, &m->me, buf, len, err);
    default: return fs_err_set(err, FS_ERR_INVALID, 0, "no typed encoder");
    }
}

#define SAME_I(f) FZ_SAME_INT(#f, a->f, b->f)
#define SAME_S(f) FZ_SAME_STR(#f, a->f, b->f)

/* The inventory codec writes an empty optional string as null, which reads as absent. */
static bool given(bool has, const char *text)
{
    return has && text[0];
}

/* a: decoded from the fuzzer's record, b: from its re-encoding. define: DefineProduct or
 * ProductDefined, whose optional fields are written when set (sale_ends_at when not 0), so
 * their presence flags are not compared; update: which fields are set is the message. */
static void same_product_fields(const inv_product_fields *a, const inv_product_fields *b,
                                bool define, bool update)
{
    if (!define && !update)
        return; /* no product fields in other messages */
    if (update) {
        FZ_SAME_INT("has_name", given(a->has_name, a->name), b->has_name);
        FZ_SAME_INT("has_description", given(a->has_description, a->description),
                    b->has_description);
        SAME_I(has_price);
        SAME_I(has_starts);
        SAME_I(has_ends);
        SAME_I(has_limit);
    }
    if (!update || given(a->has_name, a->name))
        SAME_S(name);
    if (!update || given(a->has_description, a->description))
        SAME_S(description);
    if (define) /* (only the definition carries one; written "KRW" when empty) */
        FZ_SAME_STR("currency", a->currency[0] ? a->currency : "KRW", b->currency);
    if (!update || a->has_price)
        SAME_I(price);
    if (!update || a->has_starts)
        SAME_I(sale_starts_at);
    if (!update || a->has_ends)
        SAME_I(sale_ends_at);
    if (!update || a->has_limit)
        SAME_I(per_user_limit);
}

static void same_inv_command(const inv_command *a, const inv_command *b)
{
    SAME_I(type);
    SAME_S(product_id);
    SAME_S(order_id);
    SAME_S(member_id);
    SAME_S(actor_id);
    SAME_S(reason);
    SAME_I(quantity);
    SAME_I(item_index);
    FZ_SAME_INT("item_count", a->item_count ? a->item_count : 1, b->item_count);
    SAME_I(stock);
    SAME_I(requested_at);
    SAME_I(offset);
    same_product_fields(&a->f, &b->f, a->type == INV_CMD_DEFINE, a->type == INV_CMD_UPDATE);
}

static void same_inv_event(const inv_event *a, const inv_event *b)
{
    SAME_I(type);
    SAME_S(product_id);
    SAME_S(order_id);
    SAME_S(member_id);
    SAME_S(actor_id);
    SAME_S(release_reason);
    SAME_S(command_type);
    SAME_S(detail);
    SAME_I(quantity);
    SAME_I(item_index);
    FZ_SAME_INT("item_count", a->item_count ? a->item_count : 1, b->item_count);
    SAME_I(stock);
    SAME_I(available);
    SAME_I(reserved);
    SAME_I(sold);
    SAME_I(pay_by);
    SAME_I(unit_price);
    SAME_I(command_offset);
    SAME_I(occurred_at);
    SAME_I(reason);
    same_product_fields(&a->f, &b->f, a->type == INV_EV_DEFINED, a->type == INV_EV_UPDATED);
}

static void same_order(const ord_order *a, const ord_order *b)
{
    SAME_S(order_id);
    SAME_S(member_id);
    SAME_I(status);
    SAME_I(previous);
    SAME_S(reason);
    SAME_I(pay_by);
    SAME_I(amount);
    SAME_I(deadline);
    SAME_I(delivered_at);
    SAME_I(payment_attempts);
    SAME_I(restock_on_return);
    SAME_I(occurred_at);
    SAME_I(nlines);
    for (int i = 0; i < a->nlines; i++) {
        SAME_S(lines[i].product_id);
        SAME_I(lines[i].quantity);
        SAME_I(lines[i].unit_price);
        SAME_I(lines[i].state);
        SAME_S(lines[i].reason);
    }
}

static void same_ord_command(const ord_command *a, const ord_command *b)
{
    SAME_I(type);
    SAME_S(order_id);
    SAME_S(member_id);
    SAME_S(method);
    SAME_S(reason);
    SAME_S(idempotency_key);
    SAME_I(restock);
    SAME_I(nitems);
    for (int i = 0; i < a->nitems; i++) {
        SAME_S(items[i].product_id);
        SAME_I(items[i].quantity);
    }
    SAME_I(requested_at);
}

static void same_rejection(const ord_rejection *a, const ord_rejection *b)
{
    SAME_S(order_id);
    SAME_S(member_id);
    SAME_S(command_type);
    SAME_S(code);
    SAME_S(status);
    SAME_I(occurred_at);
}

static void same_answer(const ord_answer *a, const ord_answer *b)
{
    SAME_S(order_id);
    SAME_S(member_id);
    SAME_S(product_id);
    SAME_I(quantity);
    SAME_S(status);
    SAME_S(reason);
    SAME_I(pay_by);
    SAME_S(source);
    SAME_I(http_status);
    SAME_I(answered_at);
}

static void same_pay_command(const pay_command *a, const pay_command *b)
{
    SAME_I(type);
    SAME_S(order_id);
    SAME_S(member_id);
    SAME_I(amount);
    SAME_S(method);
    SAME_S(reason);
    SAME_I(attempt);
    SAME_I(requested_at);
}

static void same_pay_event(const pay_event *a, const pay_event *b)
{
    SAME_I(type);
    SAME_S(order_id);
    SAME_S(member_id);
    SAME_I(amount);
    SAME_S(payment_id);
    SAME_S(reason);
    SAME_I(retriable);
    SAME_I(attempt);
    SAME_I(occurred_at);
}

static void same_notification(const fs_notification *a, const fs_notification *b)
{
    SAME_S(notification_id);
    SAME_S(member_id);
    SAME_S(kind);
    SAME_S(email);
    SAME_I(nparams);
    for (int i = 0; i < a->nparams; i++) {
        SAME_S(params[i].key);
        SAME_S(params[i].value);
    }
    SAME_I(occurred_at);
}

static void same_mem_event(const mem_event *a, const mem_event *b)
{
    SAME_I(type);
    SAME_S(member_id);
    SAME_S(role);
    SAME_I(nfields);
    for (int i = 0; i < a->nfields; i++)
        SAME_S(fields[i]);
    SAME_I(occurred_at);
}

static void same_message(kind k, const message *a, const message *b)
{
    switch (k) {
    case K_INV_COMMAND: return same_inv_command(&a->ic, &b->ic);
    case K_INV_EVENT: return same_inv_event(&a->ie, &b->ie);
    case K_ORDER: return same_order(&a->o, &b->o);
    case K_ORD_COMMAND: return same_ord_command(&a->oc, &b->oc);
    case K_ORD_REJECTION: return same_rejection(&a->rj, &b->rj);
    case K_ORD_ANSWER: return same_answer(&a->an, &b->an);
    case K_PAY_COMMAND: return same_pay_command(&a->pc, &b->pc);
    case K_PAY_EVENT: return same_pay_event(&a->pe, &b->pe);
    case K_NOTIFICATION: return same_notification(&a->n, &b->n);
    case K_MEM_EVENT: return same_mem_event(&a->me, &b->me);
    default: return;
    }
}

/* ---- the checks ------------------------------------------------------------------------ */

/* Decodes bytes we wrote ourselves: must succeed, as a record of schema s. */
static void decode_own(const void *buf, size_t len, const fs_schema *s, avro_value_t *out)
{
    fs_err err = {0};
    const fs_schema *back;
    if (fs_codec_decode(codec, buf, len, &back, out, &err))
        fz_fail(__FILE__, __LINE__, "%s: own encoding does not decode: %s", fs_schema_name(s),
                err.msg);
    FZ_CHECK(back == s);
}

/* The generic value, encoded again, decodes to an equal value. */
static void generic_round_trip(const fs_schema *s, avro_value_t *v)
{
    fs_err err = {0};
    void *buf;
    size_t len;
    if (fs_codec_encode(s, v, &buf, &len, &err))
        fz_fail(__FILE__, __LINE__, "%s: a decoded value does not encode: %s", fs_schema_name(s),
                err.msg);
    avro_value_t again;
    decode_own(buf, len, s, &again);
    FZ_CHECK(avro_value_equal(v, &again));
    avro_value_decref(&again);
    free(buf);
}

static message first, second; /* large: kept off the stack */

/* Typed: decode; if taken, encode, decode, compare, encode again to the same bytes. */
static void typed_round_trip(const fs_schema *s, avro_value_t *v)
{
    const char *name = fs_schema_name(s);
    kind k = kind_of(name);
    fs_err err = {0};
    if (typed_decode(k, v, name, &first, &err)) {
        FZ_SAME_INT("typed decode error class", err.cls, FS_ERR_INVALID);
        return;
    }
    void *b1, *b2;
    size_t l1, l2;
    if (typed_encode(k, &first, &b1, &l1, &err))
        fz_fail(__FILE__, __LINE__, "%s: a decoded message does not encode: %s", name, err.msg);
    avro_value_t v1;
    decode_own(b1, l1, s, &v1);
    if (typed_decode(k, &v1, name, &second, &err))
        fz_fail(__FILE__, __LINE__, "%s: own encoding refused by the typed decoder: %s", name,
                err.msg);
    avro_value_decref(&v1);
    same_message(k, &first, &second);
    if (typed_encode(k, &second, &b2, &l2, &err))
        fz_fail(__FILE__, __LINE__, "%s: second encoding failed: %s", name, err.msg);
    FZ_CHECK(l1 == l2 && !memcmp(b1, b2, l1));
    free(b1);
    free(b2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    codec = fz_codec_new();
    for (size_t i = 0; i < fs_codec_count(codec); i++) {
        const fs_schema *s = fs_codec_at(codec, i);
        if (fs_schema_is_reader(s) && kind_of(fs_schema_name(s)) == K_NONE)
            fz_fail(__FILE__, __LINE__, "schema %s has no typed decoder in this harness",
                    fs_schema_fullname(s));
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fs_err err = {0};
    const fs_schema *s;
    avro_value_t v;
    if (fs_codec_decode(codec, data, size, &s, &v, &err)) {
        FZ_SAME_INT("decode error class", err.cls, FS_ERR_INVALID);
        return 0;
    }
    FZ_CHECK(fs_schema_is_reader(s));
    generic_round_trip(s, &v);
    typed_round_trip(s, &v);
    avro_value_decref(&v);
    return 0;
}
