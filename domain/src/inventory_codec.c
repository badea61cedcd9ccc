/* Inventory Avro glue; see inv_codec.h. The inventory schemas share field names, so one
 * tolerant writer/reader per field (skipping fields a schema does not have) serves every
 * command and event. Optional fields are ["null", T] unions. */
#include "flashsale/inventory_codec.h"

#include <stdio.h>
#include <string.h>

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
    return fs_av_put_str(rec, "name", pf->name, !update || pf->has_name) ||
           fs_av_put_str(rec, "description", pf->description, !update || pf->has_description) ||
           fs_av_put_long(rec, "price", pf->price, !update || pf->has_price) ||
           fs_av_put_str(rec, "currency", pf->currency[0] ? pf->currency : "KRW", true) ||
           fs_av_put_long(rec, "sale_starts_at", pf->sale_starts_at, !update || pf->has_starts) ||
           fs_av_put_long(rec, "sale_ends_at", pf->sale_ends_at,
                    update ? pf->has_ends : pf->sale_ends_at != 0) ||
           fs_av_put_long(rec, "per_user_limit", pf->per_user_limit, !update || pf->has_limit);
}

static void get_fields(avro_value_t *rec, inv_product_fields *pf)
{
    fs_av_read_str(rec, "name", pf->name, sizeof pf->name, &pf->has_name);
    fs_av_read_str(rec, "description", pf->description, sizeof pf->description, &pf->has_description);
    fs_av_read_str(rec, "currency", pf->currency, sizeof pf->currency, NULL);
    pf->price = fs_av_read_long(rec, "price", 0, &pf->has_price);
    pf->sale_starts_at = fs_av_read_long(rec, "sale_starts_at", 0, &pf->has_starts);
    pf->sale_ends_at = fs_av_read_long(rec, "sale_ends_at", 0, &pf->has_ends);
    pf->per_user_limit = (int32_t)fs_av_read_long(rec, "per_user_limit", 0, &pf->has_limit);
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
    int rc = fs_av_put_str(&v, "product_id", c->product_id, true) ||
             fs_av_put_str(&v, "order_id", c->order_id, c->order_id[0] != '\0') ||
             fs_av_put_str(&v, "member_id", c->member_id, true) ||
             fs_av_put_str(&v, "actor_id", c->actor_id, true) ||
             fs_av_put_str(&v, "reason", c->reason, true) ||
             fs_av_put_str(&v, "idempotency_key", NULL, false) ||
             fs_av_put_long(&v, "quantity", c->quantity, true) ||
             fs_av_put_long(&v, "item_index", c->item_index, true) ||
             fs_av_put_long(&v, "item_count", c->item_count ? c->item_count : 1, true) ||
             fs_av_put_long(&v, "stock", c->stock, true) ||
             fs_av_put_long(&v, "requested_at", c->requested_at, true) ||
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
    int rc = fs_av_put_str(&v, "product_id", e->product_id, true) ||
             fs_av_put_str(&v, "order_id", e->order_id, e->order_id[0] != '\0') ||
             fs_av_put_str(&v, "member_id", e->member_id, true) ||
             fs_av_put_str(&v, "actor_id", e->actor_id, true) ||
             fs_av_put_str(&v, "command_type", e->command_type, true) ||
             fs_av_put_str(&v, "detail", e->detail, true) ||
             put_reason(&v, "reason", e->reason, e->release_reason) ||
             fs_av_put_long(&v, "quantity", e->quantity, true) ||
             fs_av_put_long(&v, "item_index", e->item_index, true) ||
             fs_av_put_long(&v, "item_count", e->item_count ? e->item_count : 1, true) ||
             fs_av_put_long(&v, "stock", e->stock, true) ||
             fs_av_put_long(&v, "available", e->available, true) ||
             fs_av_put_long(&v, "reserved", e->reserved, true) ||
             fs_av_put_long(&v, "sold", e->sold, true) ||
             fs_av_put_long(&v, "pay_by", e->pay_by, true) ||
             fs_av_put_long(&v, "unit_price", e->unit_price, true) ||
             fs_av_put_long(&v, "command_offset", e->command_offset, true) ||
             fs_av_put_long(&v, "occurred_at", e->occurred_at, true) ||
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
    fs_av_read_str(rec, "product_id", c->product_id, sizeof c->product_id, NULL);
    fs_av_read_str(rec, "order_id", c->order_id, sizeof c->order_id, NULL);
    fs_av_read_str(rec, "member_id", c->member_id, sizeof c->member_id, NULL);
    fs_av_read_str(rec, "actor_id", c->actor_id, sizeof c->actor_id, NULL);
    fs_av_read_str(rec, "reason", c->reason, sizeof c->reason, NULL);
    c->quantity = (int32_t)fs_av_read_long(rec, "quantity", 0, NULL);
    c->item_index = (int32_t)fs_av_read_long(rec, "item_index", 0, NULL);
    c->item_count = (int32_t)fs_av_read_long(rec, "item_count", 1, NULL);
    c->stock = (int32_t)fs_av_read_long(rec, "stock", 0, NULL);
    c->requested_at = fs_av_read_long(rec, "requested_at", 0, NULL);
    c->offset = -1;
    if (c->type == INV_CMD_DEFINE || c->type == INV_CMD_UPDATE)
        get_fields(rec, &c->f);
    if (!c->product_id[0])
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
    fs_av_read_str(rec, "product_id", e->product_id, sizeof e->product_id, NULL);
    fs_av_read_str(rec, "order_id", e->order_id, sizeof e->order_id, NULL);
    fs_av_read_str(rec, "member_id", e->member_id, sizeof e->member_id, NULL);
    fs_av_read_str(rec, "actor_id", e->actor_id, sizeof e->actor_id, NULL);
    fs_av_read_str(rec, "command_type", e->command_type, sizeof e->command_type, NULL);
    fs_av_read_str(rec, "detail", e->detail, sizeof e->detail, NULL);
    get_reason(rec, "reason", &e->reason, e->release_reason, sizeof e->release_reason);
    e->quantity = (int32_t)fs_av_read_long(rec, "quantity", 0, NULL);
    e->item_index = (int32_t)fs_av_read_long(rec, "item_index", 0, NULL);
    e->item_count = (int32_t)fs_av_read_long(rec, "item_count", 1, NULL);
    e->stock = (int32_t)fs_av_read_long(rec, "stock", 0, NULL);
    e->available = (int32_t)fs_av_read_long(rec, "available", 0, NULL);
    e->reserved = (int32_t)fs_av_read_long(rec, "reserved", 0, NULL);
    e->sold = (int32_t)fs_av_read_long(rec, "sold", 0, NULL);
    e->pay_by = fs_av_read_long(rec, "pay_by", 0, NULL);
    e->unit_price = fs_av_read_long(rec, "unit_price", 0, NULL);
    e->command_offset = fs_av_read_long(rec, "command_offset", -1, NULL);
    e->occurred_at = fs_av_read_long(rec, "occurred_at", 0, NULL);
    if (e->type == INV_EV_DEFINED || e->type == INV_EV_UPDATED)
        get_fields(rec, &e->f);
    if (!e->product_id[0])
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
