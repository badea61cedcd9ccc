/* The Redis read model's JSON of an order's status (order_json.h). */
#include "order_json.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A string as JSON. Text that is not UTF-8 (a provider's reason cut in the middle of a
 * character by the snapshot's fixed field, say) is kept with each byte above ASCII as '?',
 * so one odd field can neither drop the entry nor stop the projector; NULL: out of memory. */
static json_t *text(const char *s)
{
    json_t *t = json_string(s);
    if (t)
        return t;
    char *c = strdup(s);
    if (!c)
        return NULL;
    for (char *p = c; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    t = json_string(c);
    free(c);
    return t;
}

/* One line of an order's items, and the message published on its channel (NULL: out of
 * memory); shared by the snapshot's JSON and the decision's, so both have one shape. */
static json_t *line_json(const char *product_id, int quantity, int64_t unit_price, const char *state)
{
    return json_pack("{s:o,s:i,s:I,s:s}", "product_id", text(product_id), "quantity", quantity, "unit_price",
                     (json_int_t)unit_price, "state", state);
}

static json_t *message_json(const char *order_id, const char *status)
{
    return json_pack("{s:o,s:s}", "order_id", text(order_id), "status", status);
}

int rm_order_json_make(const ord_order *o, rm_order_json *j)
{
    *j = (rm_order_json){0};
    json_t *items = json_array();
    bool whole = items != NULL;
    for (int i = 0; whole && i < o->nlines; i++)
        whole = !json_array_append_new(items, line_json(o->lines[i].product_id, (int)o->lines[i].quantity,
                                                        o->lines[i].unit_price, line_state_name(o->lines[i].state)));
    j->items = whole ? json_dumps(items, JSON_COMPACT) : NULL;
    json_decref(items);
    bool changed = o->previous != o->status;
    if (changed) {
        json_t *h = json_pack("{s:s,s:s,s:o,s:I}", "status", ord_status_name(o->status), "previous",
                              ord_status_name(o->previous), "reason", text(o->reason), "at",
                              (json_int_t)o->occurred_at);
        j->history = h ? json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(h);
    }
    json_t *m = message_json(o->order_id, ord_status_name(o->status));
    j->message = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (!j->items || (changed && !j->history) || !j->message) {
        rm_order_json_free(j);
        return -1;
    }
    return 0;
}

/* Whether s needs no escaping in a JSON string: printable ASCII, no quote, no backslash. */
static bool plain(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e || *s == '"' || *s == '\\')
            return false;
    return true;
}

/* j dumped compactly into out (NUL-terminated); j's reference is taken. 0, or -1. */
static int dump_into(json_t *j, char *out, size_t len)
{
    size_t n = j ? json_dumpb(j, out, len, JSON_COMPACT) : 0;
    json_decref(j);
    if (n == 0 || n >= len)
        return -1;
    out[n] = '\0';
    return 0;
}

int rm_decision_json(const char *order_id, const char *product_id, int quantity, int64_t unit_price,
                     const char *status, char *items, size_t items_len, char *message, size_t message_len)
{
    if (plain(order_id) && plain(product_id)) {
        int a = snprintf(items, items_len,
                         "[{\"product_id\":\"%s\",\"quantity\":%d,\"unit_price\":%lld,\"state\":\"%s\"}]",
                         product_id, quantity, (long long)unit_price, status);
        int b = snprintf(message, message_len, "{\"order_id\":\"%s\",\"status\":\"%s\"}", order_id, status);
        return a < 0 || (size_t)a >= items_len || b < 0 || (size_t)b >= message_len ? -1 : 0;
    }
    if (dump_into(json_pack("[o]", line_json(product_id, quantity, unit_price, status)), items, items_len))
        return -1;
    return dump_into(message_json(order_id, status), message, message_len);
}

void rm_order_json_free(rm_order_json *j)
{
    free(j->items);
    free(j->history);
    free(j->message);
    *j = (rm_order_json){0};
}
