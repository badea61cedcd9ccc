/* Inventory Avro glue; see flashsale/inventory_codec.h. The inventory schemas share field names, so one
 * tolerant writer/reader per field (skipping fields a schema does not have) serves every
 * command and event. Optional fields are ["null", T] unions. */
#include "flashsale/inventory_codec.h"

#include <stdio.h>
#include <string.h>

/* The codec's field vocabulary: every field name it reads or writes is one of these, and
 * the unit test checks them against the schemas both ways (each is a field of some
 * inventory schema; each field of every inventory schema is one of them), so a misspelt
 * name cannot be skipped silently by the tolerant accessors below. */
#define F_ACTOR_ID "actor_id"
#define F_AVAILABLE "available"
#define F_COMMAND_OFFSET "command_offset"
#define F_COMMAND_TYPE "command_type"
#define F_CURRENCY "currency"
#define F_DEDUP_WINDOW_MS "dedup_window_ms"
#define F_DESCRIPTION "description"
#define F_DETAIL "detail"
#define F_IDEMPOTENCY_KEY "idempotency_key"
#define F_ITEM_COUNT "item_count"
#define F_ITEM_INDEX "item_index"
#define F_MEMBER_ID "member_id"
#define F_NAME "name"
#define F_OCCURRED_AT "occurred_at"
#define F_ORDER_ID "order_id"
#define F_PAY_BY "pay_by"
#define F_PER_USER_LIMIT "per_user_limit"
#define F_PRICE "price"
#define F_PRODUCT_ID "product_id"
#define F_QUANTITY "quantity"
#define F_REASON "reason"
#define F_REQUESTED_AT "requested_at"
#define F_ACCEPT_BY "accept_by"
#define F_RESERVED "reserved"
#define F_SALE_ENDS_AT "sale_ends_at"
#define F_SALE_STARTS_AT "sale_starts_at"
#define F_SOLD "sold"
#define F_SOLD_MEMORY_MS "sold_memory_ms"
#define F_STOCK "stock"
#define F_UNIT_PRICE "unit_price"
static const char *const vocabulary[] = {F_ACCEPT_BY, F_ACTOR_ID, F_AVAILABLE, F_COMMAND_OFFSET, F_COMMAND_TYPE, F_CURRENCY, F_DEDUP_WINDOW_MS, F_DESCRIPTION, F_DETAIL, F_IDEMPOTENCY_KEY, F_ITEM_COUNT, F_ITEM_INDEX, F_MEMBER_ID, F_NAME, F_OCCURRED_AT, F_ORDER_ID, F_PAY_BY, F_PER_USER_LIMIT, F_PRICE, F_PRODUCT_ID, F_QUANTITY, F_REASON, F_REQUESTED_AT, F_RESERVED, F_SALE_ENDS_AT, F_SALE_STARTS_AT, F_SOLD, F_SOLD_MEMORY_MS, F_STOCK, F_UNIT_PRICE, NULL};

const char *const *inv_codec_fields(void)
{
    return vocabulary;
}

static bool has(avro_value_t *rec, const char *f, avro_value_t *out)
{
    return avro_value_get_by_name(rec, f, out, NULL) == 0;
}

static int put_reason(avro_value_t *rec, const char *f, inv_reason r, const char *text)
{
    avro_value_t fv;
    if (!has(rec, f, &fv))
        return 0;
    if (avro_value_get_type(&fv) == AVRO_ENUM)
        return avro_value_set_enum(&fv, (int)r);
    return avro_value_set_string(&fv, text ? text : "");
}

static void get_reason(avro_value_t *rec, const char *f, inv_reason *r, char *text, size_t n)
{
    avro_value_t fv;
    if (!has(rec, f, &fv))
        return;
    if (avro_value_get_type(&fv) == AVRO_ENUM) {
        int x = 0;
        avro_value_get_enum(&fv, &x);
        *r = (inv_reason)x;
    } else if (text) {
        fs_av_read_str(rec, f, text, n, NULL);
    }
}

static int put_fields(avro_value_t *rec, const inv_product_fields *pf, bool update)
{
    return fs_av_put_str(rec, F_NAME, pf->name, !update || pf->has_name) ||
           fs_av_put_str(rec, F_DESCRIPTION, pf->description, !update || pf->has_description) ||
           fs_av_put_long(rec, F_PRICE, pf->price, !update || pf->has_price) ||
           fs_av_put_str(rec, F_CURRENCY, pf->currency[0] ? pf->currency : "KRW", true) ||
           fs_av_put_long(rec, F_SALE_STARTS_AT, pf->sale_starts_at, !update || pf->has_starts) ||
           fs_av_put_long(rec, F_SALE_ENDS_AT, pf->sale_ends_at,
                    update ? pf->has_ends : pf->sale_ends_at != 0) ||
           fs_av_put_long(rec, F_PER_USER_LIMIT, pf->per_user_limit, !update || pf->has_limit);
}

static void get_fields(avro_value_t *rec, inv_product_fields *pf)
{
    fs_av_read_str(rec, F_NAME, pf->name, sizeof pf->name, &pf->has_name);
    fs_av_read_str(rec, F_DESCRIPTION, pf->description, sizeof pf->description, &pf->has_description);
    fs_av_read_str(rec, F_CURRENCY, pf->currency, sizeof pf->currency, NULL);
    pf->price = fs_av_read_long(rec, F_PRICE, 0, &pf->has_price);
    pf->sale_starts_at = fs_av_read_long(rec, F_SALE_STARTS_AT, 0, &pf->has_starts);
    pf->sale_ends_at = fs_av_read_long(rec, F_SALE_ENDS_AT, 0, &pf->has_ends);
    pf->per_user_limit = (int32_t)fs_av_read_long(rec, F_PER_USER_LIMIT, 0, &pf->has_limit);
}

int inv_command_encode(const fs_codec *codec, const inv_command *c, void **buf, size_t *len,
                       fs_err *err)
{
    const fs_schema *s = fs_codec_reader(codec, inv_cmd_name(c->type));
    avro_value_t v;
    if (!s)
        return fs_err_set(err, FS_ERR_FATAL, 0, "no schema %s", inv_cmd_name(c->type));
    if (fs_schema_value_new(s, &v, err))
        return -1;
    bool update = c->type == INV_CMD_UPDATE;
    int rc = fs_av_put_str(&v, F_PRODUCT_ID, c->product_id, true) ||
             fs_av_put_str(&v, F_ORDER_ID, c->order_id, c->order_id[0] != '\0') ||
             fs_av_put_str(&v, F_MEMBER_ID, c->member_id, true) ||
             fs_av_put_str(&v, F_ACTOR_ID, c->actor_id, true) ||
             fs_av_put_str(&v, F_REASON, c->reason, true) ||
             fs_av_put_str(&v, F_IDEMPOTENCY_KEY, NULL, false) ||
             fs_av_put_long(&v, F_QUANTITY, c->quantity, true) ||
             fs_av_put_long(&v, F_ITEM_INDEX, c->item_index, true) ||
             fs_av_put_long(&v, F_ITEM_COUNT, c->item_count ? c->item_count : 1, true) ||
             fs_av_put_long(&v, F_STOCK, c->stock, true) ||
             fs_av_put_long(&v, F_REQUESTED_AT, c->requested_at, true) ||
             fs_av_put_long(&v, F_ACCEPT_BY, c->accept_by, c->accept_by > 0) ||
             fs_av_put_long(&v, F_DEDUP_WINDOW_MS, c->dedup_window_ms, true) ||
             fs_av_put_long(&v, F_SOLD_MEMORY_MS, c->sold_memory_ms, true) ||
             ((c->type == INV_CMD_DEFINE || update) && put_fields(&v, &c->f, update));
    if (rc)
        rc = fs_err_set(err, FS_ERR_INVALID, 0, "%s: %s", inv_cmd_name(c->type), avro_strerror());
    else
        rc = fs_codec_encode(s, &v, buf, len, err);
    avro_value_decref(&v);
    return rc;
}

int inv_event_encode(const fs_codec *codec, const inv_event *e, void **buf, size_t *len,
                     fs_err *err)
{
    const fs_schema *s = fs_codec_reader(codec, inv_event_name(e->type));
    avro_value_t v;
    if (!s)
        return fs_err_set(err, FS_ERR_FATAL, 0, "no schema %s", inv_event_name(e->type));
    if (fs_schema_value_new(s, &v, err))
        return -1;
    bool update = e->type == INV_EV_UPDATED;
    int rc = fs_av_put_str(&v, F_PRODUCT_ID, e->product_id, true) ||
             fs_av_put_str(&v, F_ORDER_ID, e->order_id, e->order_id[0] != '\0') ||
             fs_av_put_str(&v, F_MEMBER_ID, e->member_id, true) ||
             fs_av_put_str(&v, F_ACTOR_ID, e->actor_id, true) ||
             fs_av_put_str(&v, F_COMMAND_TYPE, e->command_type, true) ||
             fs_av_put_str(&v, F_DETAIL, e->detail, true) ||
             put_reason(&v, F_REASON, e->reason, e->release_reason) ||
             fs_av_put_long(&v, F_QUANTITY, e->quantity, true) ||
             fs_av_put_long(&v, F_ITEM_INDEX, e->item_index, true) ||
             fs_av_put_long(&v, F_ITEM_COUNT, e->item_count ? e->item_count : 1, true) ||
             fs_av_put_long(&v, F_STOCK, e->stock, true) ||
             fs_av_put_long(&v, F_AVAILABLE, e->available, true) ||
             fs_av_put_long(&v, F_RESERVED, e->reserved, true) ||
             fs_av_put_long(&v, F_SOLD, e->sold, true) ||
             fs_av_put_long(&v, F_PAY_BY, e->pay_by, true) ||
             fs_av_put_long(&v, F_UNIT_PRICE, e->unit_price, true) ||
             fs_av_put_long(&v, F_COMMAND_OFFSET, e->command_offset, true) ||
             fs_av_put_long(&v, F_OCCURRED_AT, e->occurred_at, true) ||
             fs_av_put_long(&v, F_DEDUP_WINDOW_MS, e->dedup_window_ms, true) ||
             fs_av_put_long(&v, F_SOLD_MEMORY_MS, e->sold_memory_ms, true) ||
             ((e->type == INV_EV_DEFINED || update) && put_fields(&v, &e->f, update));
    if (rc)
        rc = fs_err_set(err, FS_ERR_INVALID, 0, "%s: %s", inv_event_name(e->type),
                        avro_strerror());
    else
        rc = fs_codec_encode(s, &v, buf, len, err);
    avro_value_decref(&v);
    return rc;
}

int inv_command_decode(avro_value_t *rec, const char *type_name, inv_command *c, fs_err *err)
{
    memset(c, 0, sizeof *c);
    int t;
    for (t = 0; t < INV_CMD_COUNT; t++)
        if (!strcmp(type_name, inv_cmd_name((inv_cmd_type)t)))
            break;
    if (t == INV_CMD_COUNT)
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s is not an inventory command", type_name);
    c->type = (inv_cmd_type)t;
    fs_av_read_str(rec, F_PRODUCT_ID, c->product_id, sizeof c->product_id, NULL);
    fs_av_read_str(rec, F_ORDER_ID, c->order_id, sizeof c->order_id, NULL);
    fs_av_read_str(rec, F_MEMBER_ID, c->member_id, sizeof c->member_id, NULL);
    fs_av_read_str(rec, F_ACTOR_ID, c->actor_id, sizeof c->actor_id, NULL);
    fs_av_read_str(rec, F_REASON, c->reason, sizeof c->reason, NULL);
    c->quantity = (int32_t)fs_av_read_long(rec, F_QUANTITY, 0, NULL);
    c->item_index = (int32_t)fs_av_read_long(rec, F_ITEM_INDEX, 0, NULL);
    c->item_count = (int32_t)fs_av_read_long(rec, F_ITEM_COUNT, 1, NULL);
    c->stock = (int32_t)fs_av_read_long(rec, F_STOCK, 0, NULL);
    c->requested_at = fs_av_read_long(rec, F_REQUESTED_AT, 0, NULL);
    c->accept_by = fs_av_read_long(rec, F_ACCEPT_BY, 0, NULL);
    c->dedup_window_ms = fs_av_read_long(rec, F_DEDUP_WINDOW_MS, 0, NULL);
    c->sold_memory_ms = fs_av_read_long(rec, F_SOLD_MEMORY_MS, 0, NULL);
    c->offset = -1;
    if (inv_cmd_has_fields(c->type))
        get_fields(rec, &c->f);
    /* every command names its product, but SetRetention, which is for its partition */
    if (!c->product_id[0] && c->type != INV_CMD_SET_RETENTION)
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s without product_id", type_name);
    return 0;
}

int inv_event_decode(avro_value_t *rec, const char *type_name, inv_event *e, fs_err *err)
{
    memset(e, 0, sizeof *e);
    int t;
    for (t = 0; t < INV_EV_COUNT; t++)
        if (!strcmp(type_name, inv_event_name((inv_event_type)t)))
            break;
    if (t == INV_EV_COUNT)
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s is not an inventory event", type_name);
    e->type = (inv_event_type)t;
    fs_av_read_str(rec, F_PRODUCT_ID, e->product_id, sizeof e->product_id, NULL);
    fs_av_read_str(rec, F_ORDER_ID, e->order_id, sizeof e->order_id, NULL);
    fs_av_read_str(rec, F_MEMBER_ID, e->member_id, sizeof e->member_id, NULL);
    fs_av_read_str(rec, F_ACTOR_ID, e->actor_id, sizeof e->actor_id, NULL);
    fs_av_read_str(rec, F_COMMAND_TYPE, e->command_type, sizeof e->command_type, NULL);
    fs_av_read_str(rec, F_DETAIL, e->detail, sizeof e->detail, NULL);
    get_reason(rec, F_REASON, &e->reason, e->release_reason, sizeof e->release_reason);
    e->quantity = (int32_t)fs_av_read_long(rec, F_QUANTITY, 0, NULL);
    e->item_index = (int32_t)fs_av_read_long(rec, F_ITEM_INDEX, 0, NULL);
    e->item_count = (int32_t)fs_av_read_long(rec, F_ITEM_COUNT, 1, NULL);
    e->stock = (int32_t)fs_av_read_long(rec, F_STOCK, 0, NULL);
    e->available = (int32_t)fs_av_read_long(rec, F_AVAILABLE, 0, NULL);
    e->reserved = (int32_t)fs_av_read_long(rec, F_RESERVED, 0, NULL);
    e->sold = (int32_t)fs_av_read_long(rec, F_SOLD, 0, NULL);
    e->pay_by = fs_av_read_long(rec, F_PAY_BY, 0, NULL);
    e->unit_price = fs_av_read_long(rec, F_UNIT_PRICE, 0, NULL);
    e->command_offset = fs_av_read_long(rec, F_COMMAND_OFFSET, -1, NULL);
    e->occurred_at = fs_av_read_long(rec, F_OCCURRED_AT, 0, NULL);
    e->dedup_window_ms = fs_av_read_long(rec, F_DEDUP_WINDOW_MS, 0, NULL);
    e->sold_memory_ms = fs_av_read_long(rec, F_SOLD_MEMORY_MS, 0, NULL);
    if (inv_event_has_fields(e->type))
        get_fields(rec, &e->f);
    /* every event names its product, but RetentionSet and the refusal of a SetRetention */
    if (!e->product_id[0] && e->type != INV_EV_RETENTION_SET &&
        !(e->type == INV_EV_CMD_REJECTED && !strcmp(e->command_type, "SetRetention")))
        return fs_err_set(err, FS_ERR_INVALID, 0, "%s without product_id", type_name);
    return 0;
}

int inv_event_decode_bytes(const fs_codec *codec, const void *buf, size_t len, inv_event *e,
                           fs_err *err)
{
    const fs_schema *s;
    avro_value_t v;
    if (fs_codec_decode(codec, buf, len, &s, &v, err))
        return -1;
    int rc = inv_event_decode(&v, fs_schema_name(s), e, err);
    avro_value_decref(&v);
    return rc;
}

int inv_command_decode_bytes(const fs_codec *codec, const void *buf, size_t len, inv_command *c,
                             fs_err *err)
{
    const fs_schema *s;
    avro_value_t v;
    if (fs_codec_decode(codec, buf, len, &s, &v, err))
        return -1;
    int rc = inv_command_decode(&v, fs_schema_name(s), c, err);
    avro_value_decref(&v);
    return rc;
}
