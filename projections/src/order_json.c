/* The Redis read model's JSON of an order's status (order_json.h). */
#include "order_json.h"

#include <jansson.h>
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

int rm_order_json_make(const ord_order *o, rm_order_json *j)
{
    *j = (rm_order_json){0};
    json_t *items = json_array();
    bool whole = items != NULL;
    for (int i = 0; whole && i < o->nlines; i++)
        whole = !json_array_append_new(items, json_pack("{s:o,s:i,s:I,s:s}", "product_id",
                                                        text(o->lines[i].product_id), "quantity",
                                                        (int)o->lines[i].quantity, "unit_price",
                                                        (json_int_t)o->lines[i].unit_price, "state",
                                                        line_state_name(o->lines[i].state)));
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
    json_t *m = json_pack("{s:o,s:s}", "order_id", text(o->order_id), "status", ord_status_name(o->status));
    j->message = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (!j->items || (changed && !j->history) || !j->message) {
        rm_order_json_free(j);
        return -1;
    }
    return 0;
}

void rm_order_json_free(rm_order_json *j)
{
    free(j->items);
    free(j->history);
    free(j->message);
    *j = (rm_order_json){0};
}
