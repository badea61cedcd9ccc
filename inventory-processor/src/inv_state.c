/* Inventory decisions and state transitions; see inv_state.h.
 *
 * Runtime layout: products by id; per product the units each member holds and the live
 * reservations by "order_id#item"; per state the set of decided lines. All of it is
 * event-derived: rebuilding from the changelog recreates it exactly. */
#include "inv_state.h"

#include "fs/map.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char member[INV_ID_MAX];
    int32_t qty;
    bool committed;
} reservation;

typedef struct {
    inv_product_view v;
    fs_map *held;         /* member -> (intptr_t) units held */
    fs_map *reservations; /* "order#item" -> reservation* */
} product;

struct inv_state {
    fs_map *products;
    fs_map *decided; /* "order#item" -> (void *)1 */
    int64_t window;
    int64_t last_command_offset;
};

static const char *const reason_names[INV_R_COUNT] = {
    "SOLD_OUT", "LIMIT_EXCEEDED",  "NOT_ON_SALE",         "UNKNOWN_PRODUCT",   "PAUSED",
    "INVALID",  "ALREADY_EXISTS", "UNKNOWN_RESERVATION", "INSUFFICIENT_STOCK"};
static const char *const cmd_names[INV_CMD_COUNT] = {
    "DefineProduct", "UpdateProduct", "RestockProduct",    "PauseSale",
    "ResumeSale",    "ReserveStock",  "CommitReservation", "ReleaseReservation"};
static const char *const event_names[INV_EV_COUNT] = {
    "ProductDefined", "ProductUpdated",       "ProductRestocked",    "SalePaused",
    "SaleResumed",    "StockReserved",        "StockRejected",       "ReservationCommitted",
    "ReservationReleased", "CommandRejected"};

const char *inv_reason_name(inv_reason r)
{
    return (unsigned)r < INV_R_COUNT ? reason_names[r] : "?";
}
const char *inv_cmd_name(inv_cmd_type t)
{
    return (unsigned)t < INV_CMD_COUNT ? cmd_names[t] : "?";
}
const char *inv_event_name(inv_event_type t)
{
    return (unsigned)t < INV_EV_COUNT ? event_names[t] : "?";
}

static void line_key(char *buf, size_t n, const char *order, int32_t item)
{
    snprintf(buf, n, "%s#%d", order, (int)item);
}

inv_state *inv_state_new(int64_t payment_window_ms)
{
    inv_state *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->products = fs_map_new(64);
    s->decided = fs_map_new(1024);
    s->window = payment_window_ms;
    s->last_command_offset = -1;
    if (!s->products || !s->decided) {
        inv_state_destroy(s);
        return NULL;
    }
    return s;
}

static void free_value(void *ctx, const char *key, void *value)
{
    (void)ctx;
    (void)key;
    free(value);
}

static void free_product(void *ctx, const char *key, void *value)
{
    (void)ctx;
    (void)key;
    product *p = value;
    fs_map_destroy(p->held);
    fs_map_foreach(p->reservations, free_value, NULL);
    fs_map_destroy(p->reservations);
    free(p);
}

void inv_state_destroy(inv_state *s)
{
    if (!s)
        return;
    if (s->products) {
        fs_map_foreach(s->products, free_product, NULL);
        fs_map_destroy(s->products);
    }
    fs_map_destroy(s->decided);
    free(s);
}

static int32_t held_of(const product *p, const char *member)
{
    return (int32_t)(intptr_t)fs_map_get(p->held, member);
}

static void base_event(const inv_command *c, inv_event *e, inv_event_type t)
{
    memset(e, 0, sizeof *e);
    e->type = t;
    snprintf(e->product_id, sizeof e->product_id, "%s", c->product_id);
    snprintf(e->order_id, sizeof e->order_id, "%s", c->order_id);
    snprintf(e->member_id, sizeof e->member_id, "%s", c->member_id);
    snprintf(e->actor_id, sizeof e->actor_id, "%s", c->actor_id);
    e->quantity = c->quantity;
    e->item_index = c->item_index;
    e->item_count = c->item_count;
    e->occurred_at = c->requested_at;
    e->command_offset = c->offset;
}

static inv_outcome reject_cmd(const inv_command *c, inv_event *e, inv_reason r, const char *detail)
{
    base_event(c, e, INV_EV_CMD_REJECTED);
    e->reason = r;
    snprintf(e->command_type, sizeof e->command_type, "%s", inv_cmd_name(c->type));
    snprintf(e->detail, sizeof e->detail, "%s", detail);
    return INV_DECIDED;
}

static inv_outcome reject_reserve(const inv_command *c, inv_event *e, inv_reason r,
                                   int32_t available)
{
    base_event(c, e, INV_EV_REJECTED);
    e->reason = r;
    e->available = available;
    return INV_DECIDED;
}

static bool fields_valid(const inv_product_fields *f, bool update)
{
    if ((!update || f->has_name) && !f->name[0])
        return false;
    if ((!update || f->has_price) && f->price < 0)
        return false;
    if ((!update || f->has_limit) && f->per_user_limit < 0)
        return false;
    if (f->has_ends && f->sale_ends_at && f->has_starts && f->sale_ends_at <= f->sale_starts_at)
        return false;
    return true;
}

inv_outcome inv_decide(const inv_state *s, const inv_command *c, inv_event *e)
{
    const product *p = fs_map_get(s->products, c->product_id);
    char key[INV_ID_MAX + 16];
    switch (c->type) {
    case INV_CMD_DEFINE:
        if (p)
            return reject_cmd(c, e, INV_R_ALREADY_EXISTS, "product already defined");
        if (c->stock < 0 || !fields_valid(&c->f, false))
            return reject_cmd(c, e, INV_R_INVALID, "invalid product fields");
        base_event(c, e, INV_EV_DEFINED);
        e->f = c->f;
        e->stock = c->stock;
        e->available = c->stock;
        return INV_DECIDED;
    case INV_CMD_UPDATE:
        if (!p)
            return reject_cmd(c, e, INV_R_UNKNOWN_PRODUCT, "no such product");
        if (!fields_valid(&c->f, true))
            return reject_cmd(c, e, INV_R_INVALID, "invalid product fields");
        base_event(c, e, INV_EV_UPDATED);
        e->f = c->f;
        return INV_DECIDED;
    case INV_CMD_RESTOCK:
        if (!p)
            return reject_cmd(c, e, INV_R_UNKNOWN_PRODUCT, "no such product");
        if (c->quantity < 1 || (int64_t)p->v.stock + c->quantity > INT32_MAX)
            return reject_cmd(c, e, INV_R_INVALID, "quantity must be at least 1");
        base_event(c, e, INV_EV_RESTOCKED);
        e->available = p->v.available + c->quantity;
        e->reserved = p->v.reserved;
        e->sold = p->v.sold;
        return INV_DECIDED;
    case INV_CMD_PAUSE:
    case INV_CMD_RESUME:
        if (!p)
            return reject_cmd(c, e, INV_R_UNKNOWN_PRODUCT, "no such product");
        base_event(c, e, c->type == INV_CMD_PAUSE ? INV_EV_PAUSED : INV_EV_RESUMED);
        return INV_DECIDED;
    case INV_CMD_RESERVE: {
        line_key(key, sizeof key, c->order_id, c->item_index);
        if (fs_map_get(s->decided, key))
            return INV_DUPLICATE;
        if (!p)
            return reject_reserve(c, e, INV_R_UNKNOWN_PRODUCT, 0);
        int32_t avail = p->v.available;
        /* (the bounds keep every order amount inside int64, whatever defined the product) */
        if (c->quantity < 1 || c->quantity > INV_MAX_QUANTITY || p->v.f.price > INV_MAX_PRICE ||
            !c->order_id[0] || !c->member_id[0])
            return reject_reserve(c, e, INV_R_INVALID, avail);
        if (c->requested_at < p->v.f.sale_starts_at ||
            (p->v.f.sale_ends_at && c->requested_at >= p->v.f.sale_ends_at))
            return reject_reserve(c, e, INV_R_NOT_ON_SALE, avail);
        if (p->v.paused)
            return reject_reserve(c, e, INV_R_PAUSED, avail);
        if (p->v.f.per_user_limit > 0 &&
            (int64_t)held_of(p, c->member_id) + c->quantity > p->v.f.per_user_limit)
            return reject_reserve(c, e, INV_R_LIMIT_EXCEEDED, avail);
        if (avail == 0)
            return reject_reserve(c, e, INV_R_SOLD_OUT, 0);
        if (avail < c->quantity)
            return reject_reserve(c, e, INV_R_INSUFFICIENT_STOCK, avail);
        base_event(c, e, INV_EV_RESERVED);
        e->available = avail - c->quantity;
        e->reserved = p->v.reserved + c->quantity;
        e->sold = p->v.sold;
        e->pay_by = c->requested_at + s->window;
        e->unit_price = p->v.f.price;
        return INV_DECIDED;
    }
    case INV_CMD_COMMIT:
    case INV_CMD_RELEASE: {
        if (!p)
            return reject_cmd(c, e, INV_R_UNKNOWN_PRODUCT, "no such product");
        line_key(key, sizeof key, c->order_id, c->item_index);
        const reservation *r = fs_map_get(p->reservations, key);
        if (!r)
            return reject_cmd(c, e, INV_R_UNKNOWN_RESERVATION, "no live reservation");
        if (r->committed)
            return reject_cmd(c, e, INV_R_INVALID,
                              c->type == INV_CMD_COMMIT ? "already committed"
                                                        : "committed units are restocked, not released");
        base_event(c, e, c->type == INV_CMD_COMMIT ? INV_EV_COMMITTED : INV_EV_RELEASED);
        snprintf(e->member_id, sizeof e->member_id, "%s", r->member);
        e->quantity = r->qty;
        e->reserved = p->v.reserved - r->qty;
        e->available = p->v.available + (c->type == INV_CMD_RELEASE ? r->qty : 0);
        e->sold = p->v.sold + (c->type == INV_CMD_COMMIT ? r->qty : 0);
        snprintf(e->release_reason, sizeof e->release_reason, "%s", c->reason);
        return INV_DECIDED;
    }
    default:
        return reject_cmd(c, e, INV_R_INVALID, "unknown command");
    }
}

static int held_add(product *p, const char *member, int32_t delta)
{
    int32_t h = held_of(p, member) + delta;
    if (h < 0)
        h = 0;
    void *r = h ? fs_map_put(p->held, member, (void *)(intptr_t)h) : fs_map_del(p->held, member);
    return r == (void *)-1 ? -1 : 0;
}

static int apply_event(inv_state *s, const inv_event *e);

int inv_apply(inv_state *s, const inv_event *e)
{
    int rc = apply_event(s, e);
    if (rc == 0 && e->command_offset > s->last_command_offset)
        s->last_command_offset = e->command_offset;
    return rc;
}

int64_t inv_state_last_command_offset(const inv_state *s)
{
    return s->last_command_offset;
}

static int apply_event(inv_state *s, const inv_event *e)
{
    product *p = fs_map_get(s->products, e->product_id);
    char key[INV_ID_MAX + 16];
    if (e->type != INV_EV_DEFINED && e->type != INV_EV_CMD_REJECTED && !p &&
        e->type != INV_EV_REJECTED)
        return -1;
    switch (e->type) {
    case INV_EV_DEFINED:
        if (p || e->stock < 0)
            return -1;
        p = calloc(1, sizeof *p);
        if (!p)
            return -1;
        snprintf(p->v.id, sizeof p->v.id, "%s", e->product_id);
        p->v.f = e->f;
        p->v.stock = p->v.available = e->stock;
        p->held = fs_map_new(64);
        p->reservations = fs_map_new(64);
        if (!p->held || !p->reservations ||
            fs_map_put(s->products, e->product_id, p) == (void *)-1) {
            free_product(NULL, NULL, p);
            return -1;
        }
        return 0;
    case INV_EV_UPDATED:
        if (e->f.has_name)
            snprintf(p->v.f.name, sizeof p->v.f.name, "%s", e->f.name);
        if (e->f.has_description)
            snprintf(p->v.f.description, sizeof p->v.f.description, "%s", e->f.description);
        if (e->f.has_price)
            p->v.f.price = e->f.price;
        if (e->f.has_starts)
            p->v.f.sale_starts_at = e->f.sale_starts_at;
        if (e->f.has_ends)
            p->v.f.sale_ends_at = e->f.sale_ends_at;
        if (e->f.has_limit)
            p->v.f.per_user_limit = e->f.per_user_limit;
        return 0;
    case INV_EV_RESTOCKED:
        if (e->quantity < 1)
            return -1;
        p->v.stock += e->quantity;
        p->v.available += e->quantity;
        if (e->order_id[0]) { /* a returned or cancelled paid unit: no longer held */
            line_key(key, sizeof key, e->order_id, e->item_index);
            reservation *r = fs_map_del(p->reservations, key);
            if (r) {
                held_add(p, r->member, -r->qty);
                free(r);
            }
        }
        return 0;
    case INV_EV_PAUSED:
        p->v.paused = true;
        return 0;
    case INV_EV_RESUMED:
        p->v.paused = false;
        return 0;
    case INV_EV_RESERVED: {
        line_key(key, sizeof key, e->order_id, e->item_index);
        if (e->quantity < 1 || e->quantity > p->v.available || fs_map_get(s->decided, key))
            return -1;
        reservation *r = calloc(1, sizeof *r);
        if (!r)
            return -1;
        snprintf(r->member, sizeof r->member, "%s", e->member_id);
        r->qty = e->quantity;
        if (fs_map_put(p->reservations, key, r) == (void *)-1 ||
            fs_map_put(s->decided, key, (void *)1) == (void *)-1) {
            fs_map_del(p->reservations, key);
            free(r);
            return -1;
        }
        p->v.available -= e->quantity;
        p->v.reserved += e->quantity;
        held_add(p, e->member_id, e->quantity);
        return 0;
    }
    case INV_EV_REJECTED:
        line_key(key, sizeof key, e->order_id, e->item_index);
        return fs_map_put(s->decided, key, (void *)1) == (void *)-1 ? -1 : 0;
    case INV_EV_COMMITTED:
    case INV_EV_RELEASED: {
        line_key(key, sizeof key, e->order_id, e->item_index);
        reservation *r = fs_map_get(p->reservations, key);
        if (!r || r->committed || r->qty > p->v.reserved)
            return -1;
        p->v.reserved -= r->qty;
        if (e->type == INV_EV_COMMITTED) {
            p->v.sold += r->qty;
            r->committed = true;
        } else {
            p->v.available += r->qty;
            held_add(p, r->member, -r->qty);
            fs_map_del(p->reservations, key);
            free(r);
        }
        return 0;
    }
    case INV_EV_CMD_REJECTED:
        return 0;
    default:
        return -1;
    }
}

bool inv_state_product(const inv_state *s, const char *product_id, inv_product_view *out)
{
    const product *p = fs_map_get(s->products, product_id);
    if (!p)
        return false;
    *out = p->v;
    return true;
}

int32_t inv_state_held(const inv_state *s, const char *product_id, const char *member_id)
{
    const product *p = fs_map_get(s->products, product_id);
    return p ? held_of(p, member_id) : 0;
}

size_t inv_state_product_count(const inv_state *s)
{
    return fs_map_size(s->products);
}
