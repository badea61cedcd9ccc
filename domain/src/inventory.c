/* Inventory decisions and state transitions; see flashsale/inventory.h.
 *
 * Runtime layout: products by id; per product the units each member holds and the live
 * reservations by "order_id#item"; per state the set of decided lines (value: the order's
 * time) and the queue of sold lines in the order they were sold. All of it is event-derived:
 * rebuilding from the changelog, or loading a snapshot, recreates it exactly. */
#include "flashsale/inventory.h"

#include "fs/id.h"
#include "fs/map.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct reservation reservation;
struct reservation {
    char member[INV_ID_MAX];
    int32_t qty;
    bool committed;
    bool gone;       /* sold, then restocked: only the sold queue still holds it */
    int64_t at;      /* the order's time */
    char key[INV_ID_MAX + 16];
    char product[INV_ID_MAX];
    reservation *next_sold;
};

typedef struct {
    inv_product_view v;
    fs_map *held;         /* member -> (intptr_t) units held */
    fs_map *reservations; /* "order#item" -> reservation* */
} product;

struct inv_state {
    fs_map *products;
    fs_map *decided; /* "order#item" -> (void *)(intptr_t) the order's time (>= 1) */
    int64_t window;
    int64_t last_command_offset;
    int64_t horizon;  /* H: the greatest occurred_at applied of an event naming a product */
    int64_t swept_at; /* H when the decided lines were last swept */
    int64_t dedup_ms, sold_ms; /* the windows (RetentionSet, else the defaults) */
    int64_t refuse_before; /* max over time of H - dedup_ms: never moves back */
    reservation *sold_head, *sold_tail; /* committed lines, oldest sale first */
    bool counters_only; /* a reader's view: products and the events' counters, no lines */
};

/* The order's time: from its UUIDv7 id, else the command's time. */
static int64_t order_time(const char *order_id, int64_t requested_at)
{
    int64_t t = fs_uuid7_str_millis(order_id);
    return t >= 0 ? t : requested_at;
}

static void *time_value(int64_t t)
{
    return (void *)(intptr_t)(t > 0 ? t : 1);
}

static const char *const reason_names[INV_R_COUNT] = {
    "SOLD_OUT", "LIMIT_EXCEEDED",  "NOT_ON_SALE",         "UNKNOWN_PRODUCT",   "PAUSED",
    "INVALID",  "ALREADY_EXISTS", "UNKNOWN_RESERVATION", "INSUFFICIENT_STOCK", "TIMED_OUT"};
static const char *const cmd_names[INV_CMD_COUNT] = {
    "DefineProduct", "UpdateProduct", "RestockProduct",    "PauseSale",
    "ResumeSale",    "ReserveStock",  "CommitReservation", "ReleaseReservation",
    "SetRetention"};
static const char *const event_names[INV_EV_COUNT] = {
    "ProductDefined", "ProductUpdated",       "ProductRestocked",    "SalePaused",
    "SaleResumed",    "StockReserved",        "StockRejected",       "ReservationCommitted",
    "ReservationReleased", "CommandRejected", "RetentionSet"};

const char *inv_reason_name(inv_reason r)
{
    return (unsigned)r < INV_R_COUNT ? reason_names[r] : "?";
}

inv_reject_answer inv_reject_answer_of(inv_reason r)
{
    switch (r) {
    case INV_R_UNKNOWN_PRODUCT: return (inv_reject_answer){"PRODUCT_NOT_FOUND", 404, "no such product"};
    case INV_R_INVALID: return (inv_reject_answer){"INVALID_ORDER", 422, "the order was refused"};
    case INV_R_SOLD_OUT: return (inv_reject_answer){"SOLD_OUT", 409, "sold out"};
    case INV_R_LIMIT_EXCEEDED:
        return (inv_reject_answer){"LIMIT_EXCEEDED", 409, "the per-member limit of this product is reached"};
    case INV_R_NOT_ON_SALE:
        return (inv_reject_answer){"NOT_ON_SALE", 409, "the product is not on sale at this time"};
    case INV_R_PAUSED: return (inv_reject_answer){"PAUSED", 409, "the sale is paused"};
    case INV_R_INSUFFICIENT_STOCK:
        return (inv_reject_answer){"INSUFFICIENT_STOCK", 409, "fewer units are available than asked for"};
    case INV_R_TIMED_OUT:
        return (inv_reject_answer){"ORDER_TIMED_OUT", 503,
                                   "Kafka did not take the order in time; it was not placed"};
    default: return (inv_reject_answer){inv_reason_name(r), 409, "the order was refused"};
    }
}

bool inv_sale_open(const inv_product_fields *f, int64_t at)
{
    return at >= f->sale_starts_at && (!f->sale_ends_at || at < f->sale_ends_at);
}

inv_sale_status inv_sale_status_at(const inv_product_view *v, int64_t now)
{
    if (v->paused)
        return INV_SALE_PAUSED;
    if (now < v->f.sale_starts_at)
        return INV_SALE_UPCOMING;
    if (!inv_sale_open(&v->f, now))
        return INV_SALE_ENDED;
    return v->available == 0 ? INV_SALE_SOLD_OUT : INV_SALE_ON_SALE;
}

const char *inv_sale_status_name(inv_sale_status s)
{
    static const char *const names[] = {"ON_SALE", "UPCOMING", "ENDED", "PAUSED", "SOLD_OUT"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}
const char *inv_cmd_name(inv_cmd_type t)
{
    return (unsigned)t < INV_CMD_COUNT ? cmd_names[t] : "?";
}
/* `f` is last: the used size of the types without product fields is everything before it */
_Static_assert(offsetof(inv_command, f) + sizeof(inv_product_fields) == sizeof(inv_command),
               "inv_command's product fields must be its last member");
_Static_assert(offsetof(inv_event, f) + sizeof(inv_product_fields) == sizeof(inv_event),
               "inv_event's product fields must be its last member");

bool inv_cmd_has_fields(inv_cmd_type t)
{
    return t == INV_CMD_DEFINE || t == INV_CMD_UPDATE;
}

bool inv_event_has_fields(inv_event_type t)
{
    return t == INV_EV_DEFINED || t == INV_EV_UPDATED;
}

size_t inv_command_used_size(const inv_command *c)
{
    return inv_cmd_has_fields(c->type) ? sizeof *c : offsetof(inv_command, f);
}

size_t inv_event_used_size(const inv_event *e)
{
    return inv_event_has_fields(e->type) ? sizeof *e : offsetof(inv_event, f);
}

const char *inv_event_name(inv_event_type t)
{
    return (unsigned)t < INV_EV_COUNT ? event_names[t] : "?";
}

bool inv_retention_valid(int64_t dedup_window_ms, int64_t sold_memory_ms)
{
    return dedup_window_ms >= INV_RETENTION_MIN_MS && dedup_window_ms <= INV_RETENTION_MAX_MS &&
           sold_memory_ms >= INV_RETENTION_MIN_MS && sold_memory_ms <= INV_RETENTION_MAX_MS;
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
    s->dedup_ms = INV_DEDUP_WINDOW_MS;
    s->sold_ms = INV_SOLD_MEMORY_MS;
    s->refuse_before = INT64_MIN;
    if (!s->products || !s->decided) {
        inv_state_destroy(s);
        return NULL;
    }
    return s;
}

inv_state *inv_state_new_counters(void)
{
    inv_state *s = inv_state_new(0);
    if (s)
        s->counters_only = true;
    return s;
}

typedef struct {
    inv_state *to;
    bool failed;
} copy_ctx;

static void copy_product(void *ctx, const char *key, void *value)
{
    copy_ctx *c = ctx;
    const product *from = value;
    product *p = calloc(1, sizeof *p);
    if (p) {
        p->v = from->v;
        p->held = fs_map_new(4);
        p->reservations = fs_map_new(4);
    }
    if (!p || !p->held || !p->reservations || fs_map_put(c->to->products, key, p) == (void *)-1) {
        if (p) {
            fs_map_destroy(p->held);
            fs_map_destroy(p->reservations);
            free(p);
        }
        c->failed = true;
    }
}

inv_state *inv_state_counters_of(const inv_state *s)
{
    copy_ctx c = {inv_state_new_counters(), false};
    if (!c.to)
        return NULL;
    fs_map_foreach(s->products, copy_product, &c);
    if (c.failed) {
        inv_state_destroy(c.to);
        return NULL;
    }
    c.to->last_command_offset = s->last_command_offset;
    c.to->horizon = c.to->swept_at = s->horizon;
    c.to->dedup_ms = s->dedup_ms;
    c.to->sold_ms = s->sold_ms;
    c.to->refuse_before = s->refuse_before;
    return c.to;
}

/* A counters-only view takes each product's counters from the events that carry them (every
 * event that moves units says what they are after it): no line is remembered. */
static int apply_counters(product *p, const inv_event *e)
{
    switch (e->type) {
    case INV_EV_RESERVED:
    case INV_EV_COMMITTED:
    case INV_EV_RELEASED:
    case INV_EV_RESTOCKED:
        if (!p || e->available < 0 || e->reserved < 0 || e->sold < 0 ||
            (int64_t)e->available + e->reserved + e->sold > INT32_MAX)
            return -1;
        p->v.available = e->available;
        p->v.reserved = e->reserved;
        p->v.sold = e->sold;
        p->v.stock = e->available + e->reserved + e->sold;
        return 0;
    default: /* a refusal: nothing moved */
        return 0;
    }
}

static void free_live(void *ctx, const char *key, void *value)
{
    (void)ctx;
    (void)key;
    reservation *r = value;
    if (!r->committed) /* committed ones belong to the sold queue */
        free(r);
}

static void free_product(void *ctx, const char *key, void *value)
{
    (void)ctx;
    (void)key;
    product *p = value;
    fs_map_destroy(p->held);
    fs_map_foreach(p->reservations, free_live, NULL);
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
    for (reservation *r = s->sold_head, *next; r; r = next) {
        next = r->next_sold;
        free(r);
    }
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
        if (order_time(c->order_id, c->requested_at) < s->refuse_before)
            return reject_cmd(c, e, INV_R_INVALID, "order older than the deduplication window");
        /* decided: remembered for the window, and for as long as the line is held (an id
         * whose time is the command's can come back after the window; deciding it again
         * would put a second reservation under the line's key) */
        if (fs_map_get(s->decided, key) || (p && fs_map_get(p->reservations, key)))
            return INV_DUPLICATE;
        /* appended after its deadline: the API may have answered 503 already (a fence that
         * depends only on the record, so every replay decides the same) */
        if (c->accept_by > 0 && c->logged_at > c->accept_by)
            return reject_reserve(c, e, INV_R_TIMED_OUT, p ? p->v.available : 0);
        if (!p)
            return reject_reserve(c, e, INV_R_UNKNOWN_PRODUCT, 0);
        int32_t avail = p->v.available;
        /* (the bounds keep every order amount inside int64, whatever defined the product) */
        if (c->quantity < 1 || c->quantity > INV_MAX_QUANTITY || p->v.f.price > INV_MAX_PRICE ||
            !c->order_id[0] || !c->member_id[0])
            return reject_reserve(c, e, INV_R_INVALID, avail);
        if (!inv_sale_open(&p->v.f, c->requested_at))
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
    case INV_CMD_SET_RETENTION:
        if (!inv_retention_valid(c->dedup_window_ms, c->sold_memory_ms))
            return reject_cmd(c, e, INV_R_INVALID, "retention windows out of range (1 min to 3650 days)");
        base_event(c, e, INV_EV_RETENTION_SET);
        e->dedup_window_ms = c->dedup_window_ms;
        e->sold_memory_ms = c->sold_memory_ms;
        return INV_DECIDED;
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

static void sold_push(inv_state *s, reservation *r)
{
    r->next_sold = NULL;
    if (s->sold_tail)
        s->sold_tail->next_sold = r;
    else
        s->sold_head = r;
    s->sold_tail = r;
}

typedef struct {
    char (*keys)[INV_ID_MAX + 16];
    size_t k, n;
    int64_t before;
} sweep;

static void sweep_collect(void *ctx, const char *key, void *value)
{
    sweep *sw = ctx;
    if ((int64_t)(intptr_t)value < sw->before && sw->k < sw->n)
        snprintf(sw->keys[sw->k++], sizeof sw->keys[0], "%s", key);
}

/* Moves the refusal point to H - the deduplication window, if that is later. */
static void advance_refusal(inv_state *s)
{
    if (s->horizon && s->horizon - s->dedup_ms > s->refuse_before)
        s->refuse_before = s->horizon - s->dedup_ms;
}

/* Drops what the clock has passed: sold lines older than the sold-line memory (their units
 * stop counting against the member's limit), and, every 1/8 window, decided lines older
 * than the refusal point (decide() refuses those orders before it looks). */
static void expire(inv_state *s)
{
    int64_t sold_before = s->horizon - s->sold_ms;
    while (s->sold_head && (s->sold_head->gone || s->sold_head->at < sold_before)) {
        reservation *r = s->sold_head;
        s->sold_head = r->next_sold;
        if (!s->sold_head)
            s->sold_tail = NULL;
        if (!r->gone) {
            product *p = fs_map_get(s->products, r->product);
            if (p && fs_map_get(p->reservations, r->key) == r) {
                fs_map_del(p->reservations, r->key);
                held_add(p, r->member, -r->qty);
            }
        }
        free(r);
    }
    if (s->horizon - s->swept_at < s->dedup_ms / 8)
        return;
    s->swept_at = s->horizon;
    size_t n = fs_map_size(s->decided);
    if (!n)
        return;
    sweep sw = {malloc(n * sizeof *sw.keys), 0, n, s->refuse_before};
    if (!sw.keys)
        return; /* memory only: the next sweep tries again */
    fs_map_foreach(s->decided, sweep_collect, &sw);
    for (size_t k = 0; k < sw.k; k++)
        fs_map_del(s->decided, sw.keys[k]);
    free(sw.keys);
}

int inv_apply(inv_state *s, const inv_event *e)
{
    int rc = apply_event(s, e);
    if (rc == 0 && e->command_offset > s->last_command_offset)
        s->last_command_offset = e->command_offset;
    /* the clock is the shop's: an event that names no product (RetentionSet, or its
     * refusal) carries the operator's time and does not move it */
    if (rc == 0 && e->product_id[0] && e->occurred_at > s->horizon) {
        s->horizon = e->occurred_at;
        advance_refusal(s);
        expire(s);
    }
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
    if (e->type == INV_EV_RETENTION_SET) {
        if (!inv_retention_valid(e->dedup_window_ms, e->sold_memory_ms))
            return -1; /* as decide() */
        s->dedup_ms = e->dedup_window_ms;
        s->sold_ms = e->sold_memory_ms;
        advance_refusal(s);
        return 0;
    }
    if (e->type != INV_EV_DEFINED && e->type != INV_EV_CMD_REJECTED && !p &&
        e->type != INV_EV_REJECTED)
        return -1;
    if (s->counters_only && e->type != INV_EV_DEFINED && e->type != INV_EV_UPDATED &&
        e->type != INV_EV_PAUSED && e->type != INV_EV_RESUMED)
        return apply_counters(p, e);
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
        if (e->quantity < 1 || (int64_t)p->v.stock + e->quantity > INT32_MAX) /* as decide() */
            return -1;
        p->v.stock += e->quantity;
        p->v.available += e->quantity;
        if (e->order_id[0]) { /* a returned or cancelled paid unit: no longer held */
            line_key(key, sizeof key, e->order_id, e->item_index);
            reservation *r = fs_map_del(p->reservations, key);
            if (r) {
                held_add(p, r->member, -r->qty);
                if (r->committed)
                    r->gone = true; /* the sold queue frees it */
                else
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
        if (e->quantity < 1 || e->quantity > p->v.available || fs_map_get(s->decided, key) ||
            fs_map_get(p->reservations, key))
            return -1;
        reservation *r = calloc(1, sizeof *r);
        if (!r)
            return -1;
        snprintf(r->member, sizeof r->member, "%s", e->member_id);
        snprintf(r->key, sizeof r->key, "%s", key);
        snprintf(r->product, sizeof r->product, "%s", e->product_id);
        r->qty = e->quantity;
        r->at = order_time(e->order_id, e->occurred_at);
        if (fs_map_put(p->reservations, key, r) == (void *)-1 ||
            fs_map_put(s->decided, key, time_value(r->at)) == (void *)-1) {
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
        return fs_map_put(s->decided, key, time_value(order_time(e->order_id, e->occurred_at))) ==
                       (void *)-1
                   ? -1
                   : 0;
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
            sold_push(s, r);
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

size_t inv_state_decided_count(const inv_state *s)
{
    return fs_map_size(s->decided);
}

static void count_reservations(void *ctx, const char *key, void *value)
{
    (void)key;
    const product *p = value;
    *(size_t *)ctx += fs_map_size(p->reservations);
}

size_t inv_state_reservation_count(const inv_state *s)
{
    size_t n = 0;
    fs_map_foreach(s->products, count_reservations, &n);
    return n;
}

int64_t inv_state_horizon(const inv_state *s)
{
    return s->horizon;
}

int64_t inv_state_dedup_window(const inv_state *s)
{
    return s->dedup_ms;
}

int64_t inv_state_sold_memory(const inv_state *s)
{
    return s->sold_ms;
}

int64_t inv_state_refuse_before(const inv_state *s)
{
    return s->refuse_before;
}

/* ---- snapshots -------------------------------------------------------------------------
 * Little-endian, strings as u16 length + bytes:
 *   "FSIS" u32 version | i64 horizon, swept_at, last_command_offset
 *   (version 2:) i64 dedup window, sold-line memory, refusal point
 *   u32 products: id, name, description, currency, i64 price, starts, ends, i32 limit,
 *                 u8 paused, i32 stock, available, reserved, sold,
 *                 u32 held: (member, i32 units)*, u32 live: (key, member, i32 qty, i64 at)*
 *   u32 sold (oldest first): (product, key, member, i32 qty, i64 at)*
 *   u32 decided: (key, i64 time)*
 *   u64 FNV-1a of everything before it */
#define SNAP_MAGIC "FSIS"
#define SNAP_VERSION 2u /* version 1 (no windows: the defaults) is still read */

typedef struct {
    unsigned char *b;
    size_t n, cap;
    bool oom;
} wbuf;

static void w_bytes(wbuf *w, const void *p, size_t n)
{
    if (w->oom)
        return;
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->n + n)
            cap *= 2;
        unsigned char *b = realloc(w->b, cap);
        if (!b) {
            w->oom = true;
            return;
        }
        w->b = b;
        w->cap = cap;
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void w_u64(wbuf *w, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    w_bytes(w, b, 8);
}
static void w_u32(wbuf *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    w_bytes(w, b, 4);
}
static void w_str(wbuf *w, const char *s)
{
    size_t n = strlen(s);
    unsigned char b[2] = {(unsigned char)n, (unsigned char)(n >> 8)};
    w_bytes(w, b, 2);
    w_bytes(w, s, n);
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void save_held(void *ctx, const char *key, void *value)
{
    w_str(ctx, key);
    w_u32(ctx, (uint32_t)(intptr_t)value);
}

static void count_live(void *ctx, const char *key, void *value)
{
    (void)key;
    *(uint32_t *)ctx += !((reservation *)value)->committed;
}

/* A reservation line: key, member, i32 qty, i64 at. */
static void w_line(wbuf *w, const reservation *r)
{
    w_str(w, r->key);
    w_str(w, r->member);
    w_u32(w, (uint32_t)r->qty);
    w_u64(w, (uint64_t)r->at);
}

static void save_live(void *ctx, const char *key, void *value)
{
    (void)key;
    const reservation *r = value;
    if (!r->committed)
        w_line(ctx, r);
}

static void save_product(void *ctx, const char *key, void *value)
{
    (void)key;
    wbuf *w = ctx;
    const product *p = value;
    w_str(w, p->v.id);
    w_str(w, p->v.f.name);
    w_str(w, p->v.f.description);
    w_str(w, p->v.f.currency);
    w_u64(w, (uint64_t)p->v.f.price);
    w_u64(w, (uint64_t)p->v.f.sale_starts_at);
    w_u64(w, (uint64_t)p->v.f.sale_ends_at);
    w_u32(w, (uint32_t)p->v.f.per_user_limit);
    unsigned char paused = p->v.paused;
    w_bytes(w, &paused, 1);
    w_u32(w, (uint32_t)p->v.stock);
    w_u32(w, (uint32_t)p->v.available);
    w_u32(w, (uint32_t)p->v.reserved);
    w_u32(w, (uint32_t)p->v.sold);
    w_u32(w, (uint32_t)fs_map_size(p->held));
    fs_map_foreach(p->held, save_held, w);
    uint32_t live = 0;
    fs_map_foreach(p->reservations, count_live, &live);
    w_u32(w, live);
    fs_map_foreach(p->reservations, save_live, w);
}

static void save_decided(void *ctx, const char *key, void *value)
{
    w_str(ctx, key);
    w_u64(ctx, (uint64_t)(intptr_t)value);
}

/* Sold lines still held (the snapshot leaves out those already restocked). */
static size_t count_not_gone(const inv_state *s)
{
    size_t n = 0;
    for (const reservation *r = s->sold_head; r; r = r->next_sold)
        n += !r->gone;
    return n;
}

int inv_state_save(const inv_state *s, void **buf, size_t *len)
{
    wbuf w = {0};
    w_bytes(&w, SNAP_MAGIC, 4);
    w_u32(&w, SNAP_VERSION);
    w_u64(&w, (uint64_t)s->horizon);
    w_u64(&w, (uint64_t)s->swept_at);
    w_u64(&w, (uint64_t)s->last_command_offset);
    w_u64(&w, (uint64_t)s->dedup_ms);
    w_u64(&w, (uint64_t)s->sold_ms);
    w_u64(&w, (uint64_t)s->refuse_before);
    w_u32(&w, (uint32_t)fs_map_size(s->products));
    fs_map_foreach(s->products, save_product, &w);
    w_u32(&w, (uint32_t)count_not_gone(s));
    for (const reservation *r = s->sold_head; r; r = r->next_sold)
        if (!r->gone) {
            w_str(&w, r->product);
            w_line(&w, r);
        }
    w_u32(&w, (uint32_t)fs_map_size(s->decided));
    fs_map_foreach(s->decided, save_decided, &w);
    if (!w.oom)
        w_u64(&w, fnv1a(w.b, w.n));
    if (w.oom) {
        free(w.b);
        return -1;
    }
    *buf = w.b;
    *len = w.n;
    return 0;
}

typedef struct {
    const unsigned char *p;
    size_t n, at;
    bool bad;
} rbuf;

static const unsigned char *r_take(rbuf *r, size_t n)
{
    if (r->bad || r->n - r->at < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *p = r->p + r->at;
    r->at += n;
    return p;
}
static uint64_t r_u64(rbuf *r)
{
    const unsigned char *b = r_take(r, 8);
    uint64_t v = 0;
    for (int i = 7; b && i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}
static uint32_t r_u32(rbuf *r)
{
    const unsigned char *b = r_take(r, 4);
    return b ? (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24 : 0;
}
static void r_str(rbuf *r, char *out, size_t cap)
{
    const unsigned char *b = r_take(r, 2);
    size_t n = b ? (size_t)(b[0] | b[1] << 8) : 0;
    const unsigned char *s = r_take(r, n);
    if (!s || n >= cap) {
        r->bad = true;
        out[0] = '\0';
        return;
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

/* Reads a reservation line of product p (w_line) into p's reservations. NULL: bad bytes
 * or out of memory. */
static reservation *r_line(rbuf *r, product *p, bool committed)
{
    reservation *res = calloc(1, sizeof *res);
    if (!res)
        return NULL;
    r_str(r, res->key, sizeof res->key);
    r_str(r, res->member, sizeof res->member);
    res->qty = (int32_t)r_u32(r);
    res->at = (int64_t)r_u64(r);
    res->committed = committed;
    snprintf(res->product, sizeof res->product, "%s", p->v.id);
    if (r->bad || fs_map_put(p->reservations, res->key, res) == (void *)-1) {
        free(res);
        return NULL;
    }
    return res;
}

inv_state *inv_state_load(const void *buf, size_t len, int64_t payment_window_ms)
{
    rbuf r = {buf, len, len >= 8 ? len - 8 : 0, false};
    uint64_t sum = r_u64(&r);
    if (len < 20 || memcmp(buf, SNAP_MAGIC, 4) || fnv1a(buf, len - 8) != sum)
        return NULL;
    r = (rbuf){buf, len - 8, 4, false};
    uint32_t version = r_u32(&r);
    if (version != SNAP_VERSION && version != 1)
        return NULL;
    inv_state *s = inv_state_new(payment_window_ms);
    if (!s)
        return NULL;
    s->horizon = (int64_t)r_u64(&r);
    s->swept_at = (int64_t)r_u64(&r);
    s->last_command_offset = (int64_t)r_u64(&r);
    if (version >= 2) {
        s->dedup_ms = (int64_t)r_u64(&r);
        s->sold_ms = (int64_t)r_u64(&r);
        s->refuse_before = (int64_t)r_u64(&r);
        if (!inv_retention_valid(s->dedup_ms, s->sold_ms))
            goto fail;
    } else {
        advance_refusal(s); /* version 1: the default window, as it was decided with */
    }
    uint32_t np = r_u32(&r);
    char key[INV_ID_MAX + 16];
    for (uint32_t i = 0; i < np && !r.bad; i++) {
        product *p = calloc(1, sizeof *p);
        if (!p)
            goto fail;
        p->held = fs_map_new(64);
        p->reservations = fs_map_new(64);
        r_str(&r, p->v.id, sizeof p->v.id);
        if (!p->held || !p->reservations || r.bad ||
            fs_map_put(s->products, p->v.id, p) == (void *)-1) {
            free_product(NULL, NULL, p);
            goto fail;
        }
        r_str(&r, p->v.f.name, sizeof p->v.f.name);
        r_str(&r, p->v.f.description, sizeof p->v.f.description);
        r_str(&r, p->v.f.currency, sizeof p->v.f.currency);
        p->v.f.price = (int64_t)r_u64(&r);
        p->v.f.sale_starts_at = (int64_t)r_u64(&r);
        p->v.f.sale_ends_at = (int64_t)r_u64(&r);
        p->v.f.per_user_limit = (int32_t)r_u32(&r);
        const unsigned char *paused = r_take(&r, 1);
        p->v.paused = paused && *paused;
        p->v.stock = (int32_t)r_u32(&r);
        p->v.available = (int32_t)r_u32(&r);
        p->v.reserved = (int32_t)r_u32(&r);
        p->v.sold = (int32_t)r_u32(&r);
        uint32_t nh = r_u32(&r);
        for (uint32_t j = 0; j < nh && !r.bad; j++) {
            char member[INV_ID_MAX];
            r_str(&r, member, sizeof member);
            int32_t units = (int32_t)r_u32(&r);
            if (r.bad || units <= 0 ||
                fs_map_put(p->held, member, (void *)(intptr_t)units) == (void *)-1)
                goto fail;
        }
        uint32_t nl = r_u32(&r);
        for (uint32_t j = 0; j < nl && !r.bad; j++)
            if (!r_line(&r, p, false))
                goto fail;
    }
    uint32_t ns = r_u32(&r);
    for (uint32_t i = 0; i < ns && !r.bad; i++) {
        char pid[INV_ID_MAX];
        r_str(&r, pid, sizeof pid);
        product *p = r.bad ? NULL : fs_map_get(s->products, pid);
        reservation *res = p ? r_line(&r, p, true) : NULL;
        if (!res)
            goto fail;
        sold_push(s, res);
    }
    uint32_t nd = r_u32(&r);
    for (uint32_t i = 0; i < nd && !r.bad; i++) {
        r_str(&r, key, sizeof key);
        int64_t t = (int64_t)r_u64(&r);
        if (r.bad || fs_map_put(s->decided, key, time_value(t)) == (void *)-1)
            goto fail;
    }
    if (r.bad || r.at != r.n)
        goto fail;
    return s;
fail:
    inv_state_destroy(s);
    return NULL;
}
