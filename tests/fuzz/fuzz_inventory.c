/* Fuzz harness: the inventory decision (domain/src/inventory.c) over command sequences.
 *
 * The bytes are a program of steps over a small world (3 products, 8 orders, 4 members) so
 * that commands meet each other: define, update, restock, pause, resume, reserve, commit,
 * release with small or out-of-range quantities, the clock moving by milliseconds or by
 * days (past the deduplication window and the sold-line memory), and snapshots. Each
 * command goes through its Avro codec as the processor reads it, is decided, and its event
 * applied. Checks after every step (the invariants of inventory.h, as in
 * tests/unit/test_inv_state.c):
 * - deciding is deterministic and its event always applies; INV_DUPLICATE only for a
 *   reservation;
 * - per product: available, reserved, sold >= 0 and their sum is the stock;
 * - a reservation respects what the state said before it (on sale, not paused, enough
 *   available, the per-user limit, the bounds), SOLD_OUT only when available was 0,
 *   INSUFFICIENT_STOCK only when some but too few were; event counters are the state's;
 * - rebuild equals apply: a state that applies every event read back from Avro equals the
 *   live one (views, held units and counts after every step; inv_state_save bytes every 16
 *   commands, after a forged event and at the end);
 * - a snapshot loads, saves to the same bytes, decides every later command as the live
 *   state does; a snapshot with a byte changed or cut short is refused;
 * - a forged event (a corrupt changelog: any type, extreme quantities) either is refused
 *   and leaves the state as it was, or applies and keeps the invariants, and the rebuilt
 *   and loaded states judge it alike;
 * - a reader's counters-only view (the API's), fed every event read back, shows the live
 *   state's products (fields, pause, counters) and holds no line; one made from the live
 *   state (inv_state_counters_of) at a snapshot step goes on the same way. (A forged event
 *   the live state accepted ends the comparison until the next snapshot step: the view
 *   trusts the counters an event carries, which only the processor's own events get right.) */
#include "fuzz.h"

#include "flashsale/inventory.h"
#include "flashsale/inventory_codec.h"

#include "fs/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1795000000000LL
#define WINDOW 600000
#define HOUR (3600LL * 1000)
#define DAY (24 * HOUR)
#define PRODUCTS 3
#define ORDERS 8
#define MEMBERS 4
#define MAX_STEPS 400

static fs_codec *codec;

typedef struct {
    inv_state *live;
    inv_state *rebuilt; /* every event applied, as read back from Avro */
    inv_state *snap;    /* loaded from a snapshot of live, then deciding alongside */
    int64_t clock, offset;
    inv_state *view; /* counters-only: a reader's view, fed every event read back */
    bool view_ok;    /* false after a forged event live accepted: not comparable */
} world;

/* ---- commands from bytes ---------------------------------------------------------------- */

static void product_id(fz_input *in, char *out)
{
    uint32_t k = fz_pick(in, PRODUCTS + 1);
    if (k < PRODUCTS)
        snprintf(out, INV_ID_MAX, "p%u", k);
    else /* (refused by the codec: dead-lettered) */
        out[0] = '\0';
}

static void member_id(int k, char *out)
{
    snprintf(out, INV_ID_MAX, "m%d", k);
}

/* Orders 0-3 have plain ids (their time is the command's); 4-7 are UUIDv7 made 20 days
 * apart, so that the clock passes their deduplication window and sold-line memory. */
static void order_id(int k, char *out)
{
    if (k < ORDERS / 2) {
        snprintf(out, INV_ID_MAX, "o%d", k);
        return;
    }
    uint64_t ms = (uint64_t)(T0 + (k - ORDERS / 2) * 20 * DAY);
    snprintf(out, INV_ID_MAX, "%08llx-%04llx-7000-8000-%012x", (unsigned long long)(ms >> 16),
             (unsigned long long)(ms & 0xffff), (unsigned)k);
}

static int32_t pick_i32(fz_input *in, const int32_t *v, uint32_t n)
{
    return v[fz_pick(in, n)];
}

static int64_t pick_i64(fz_input *in, const int64_t *v, uint32_t n)
{
    return v[fz_pick(in, n)];
}

#define PICK_I32(in, ...) pick_i32(in, (const int32_t[]){__VA_ARGS__}, sizeof((int32_t[]){__VA_ARGS__}) / 4)
#define PICK_I64(in, ...) pick_i64(in, (const int64_t[]){__VA_ARGS__}, sizeof((int64_t[]){__VA_ARGS__}) / 8)

/* Product fields; in an update each is set or not by a bit. */
static void product_fields(fz_input *in, const world *w, inv_product_fields *f, bool update)
{
    uint8_t set = update ? fz_byte(in) : 0xff;
    f->has_name = set & 1;
    f->has_description = set & 2;
    f->has_price = set & 4;
    f->has_starts = set & 8;
    f->has_ends = set & 16;
    f->has_limit = set & 32;
    snprintf(f->name, sizeof f->name, "%s", fz_pick(in, 8) ? "name" : "");
    snprintf(f->description, sizeof f->description, "%s", fz_bool(in) ? "text" : "");
    snprintf(f->currency, sizeof f->currency, "%s", fz_bool(in) ? "KRW" : "");
    f->price = PICK_I64(in, 100, 0, 9900, INV_MAX_PRICE, INV_MAX_PRICE + 1, -1);
    f->sale_starts_at = w->clock + PICK_I64(in, -1000, 0, 1000, HOUR, -DAY);
    f->sale_ends_at = PICK_I64(in, 0, 0, f->sale_starts_at + HOUR, f->sale_starts_at + 2 * DAY,
                               f->sale_starts_at, f->sale_starts_at - 1);
    f->per_user_limit = PICK_I32(in, 0, 2, 1, 3, 5, -1);
}

static void command_of(fz_input *in, const world *w, inv_command *c)
{
    memset(c, 0, sizeof *c);
    c->type = (inv_cmd_type)fz_pick(in, INV_CMD_COUNT);
    product_id(in, c->product_id);
    snprintf(c->actor_id, sizeof c->actor_id, "admin");
    c->requested_at = w->clock;
    c->item_count = 1;
    switch (c->type) {
    case INV_CMD_DEFINE:
        c->stock = PICK_I32(in, 5, 1, 2, 10, 0, 100, -1, INT32_MAX);
        product_fields(in, w, &c->f, false);
        break;
    case INV_CMD_UPDATE: product_fields(in, w, &c->f, true); break;
    case INV_CMD_RESTOCK:
        c->quantity = PICK_I32(in, 1, 2, 5, 0, -1, INT32_MAX);
        if (fz_bool(in)) { /* a returned or cancelled paid unit */
            order_id((int)fz_pick(in, ORDERS), c->order_id);
            c->item_index = (int32_t)fz_pick(in, 3);
        }
        break;
    case INV_CMD_RESERVE:
        order_id((int)fz_pick(in, ORDERS), c->order_id);
        member_id((int)fz_pick(in, MEMBERS), c->member_id);
        c->quantity = PICK_I32(in, 1, 2, 3, 4, 0, -1, INV_MAX_QUANTITY, INV_MAX_QUANTITY + 1);
        c->item_index = PICK_I32(in, 0, 1, 2, -1);
        c->item_count = PICK_I32(in, 1, 3);
        if (!fz_pick(in, 16))
            c->member_id[0] = '\0';
        break;
    case INV_CMD_COMMIT:
    case INV_CMD_RELEASE:
        order_id((int)fz_pick(in, ORDERS), c->order_id);
        c->item_index = PICK_I32(in, 0, 1, 2, -1);
        snprintf(c->reason, sizeof c->reason, "%s", fz_bool(in) ? "EXPIRED" : "CANCELLED");
        break;
    case INV_CMD_SET_RETENTION: /* windows shortened and lengthened again, some out of range */
        c->dedup_window_ms = PICK_I64(in, INV_RETENTION_MIN_MS, HOUR, DAY, 2 * DAY, 0,
                                      INV_RETENTION_MIN_MS - 1, INV_RETENTION_MAX_MS, INV_RETENTION_MAX_MS + 1);
        c->sold_memory_ms = PICK_I64(in, INV_RETENTION_MIN_MS, HOUR, DAY, 45 * DAY, -1,
                                     INV_RETENTION_MAX_MS + 1);
        break;
    default: break;
    }
}

/* Through the codec, as the processor reads a command. false: it would be dead-lettered. */
static bool as_read(const inv_command *c, inv_command *out, int64_t offset)
{
    fs_err err = {0};
    void *buf;
    size_t len;
    if (inv_command_encode(codec, c, &buf, &len, &err))
        fz_fail(__FILE__, __LINE__, "%s does not encode: %s", inv_cmd_name(c->type), err.msg);
    int rc = inv_command_decode_bytes(codec, buf, len, out, &err);
    free(buf);
    if (rc) {
        FZ_CHECK(!c->product_id[0]); /* the only command the codec refuses */
        return false;
    }
    out->offset = offset;
    return true;
}

static void event_as_read(const inv_event *e, inv_event *out)
{
    fs_err err = {0};
    void *buf;
    size_t len;
    if (inv_event_encode(codec, e, &buf, &len, &err))
        fz_fail(__FILE__, __LINE__, "%s does not encode: %s", inv_event_name(e->type), err.msg);
    if (inv_event_decode_bytes(codec, buf, len, out, &err))
        fz_fail(__FILE__, __LINE__, "%s does not decode: %s", inv_event_name(e->type), err.msg);
    free(buf);
}

/* ---- checks ----------------------------------------------------------------------------- */

/* decide twice: the same answer */
static inv_outcome decide(const inv_state *s, const inv_command *c, inv_event *e)
{
    static inv_event again;
    memset(e, 0, sizeof *e);
    memset(&again, 0, sizeof again);
    inv_outcome out = inv_decide(s, c, e);
    FZ_CHECK(inv_decide(s, c, &again) == out);
    FZ_CHECK(!memcmp(e, &again, sizeof again));
    return out;
}

static void check_product(const inv_state *s, const char *id)
{
    inv_product_view v;
    if (!inv_state_product(s, id, &v))
        return;
    FZ_CHECK(v.available >= 0 && v.reserved >= 0 && v.sold >= 0);
    FZ_SAME_INT("available + reserved + sold", (int64_t)v.available + v.reserved + v.sold,
                v.stock);
}

/* What a reservation's answer must agree with: the product as it was before. */
static void check_reservation(const inv_state *s, const inv_command *c, const inv_event *e)
{
    inv_product_view b;
    bool known = inv_state_product(s, c->product_id, &b);
    int32_t held = inv_state_held(s, c->product_id, c->member_id);
    if (e->type == INV_EV_RESERVED) {
        FZ_CHECK(known && !b.paused && inv_sale_open(&b.f, c->requested_at));
        FZ_CHECK(c->quantity >= 1 && c->quantity <= INV_MAX_QUANTITY && c->quantity <= b.available);
        FZ_CHECK(b.f.price <= INV_MAX_PRICE && c->order_id[0] && c->member_id[0]);
        FZ_CHECK(b.f.per_user_limit <= 0 || (int64_t)held + c->quantity <= b.f.per_user_limit);
        FZ_SAME_INT("available after", e->available, b.available - c->quantity);
        FZ_SAME_INT("reserved after", e->reserved, b.reserved + c->quantity);
        FZ_SAME_INT("unit price", e->unit_price, b.f.price);
    } else if (e->type == INV_EV_REJECTED && e->reason == INV_R_SOLD_OUT) {
        FZ_CHECK(known && b.available == 0); /* no undersell */
    } else if (e->type == INV_EV_REJECTED && e->reason == INV_R_INSUFFICIENT_STOCK) {
        FZ_CHECK(known && b.available > 0 && b.available < c->quantity);
    } else if (e->type == INV_EV_REJECTED && e->reason == INV_R_UNKNOWN_PRODUCT) {
        FZ_CHECK(!known);
    }
}

/* The event's counters are the state's after it. */
static void check_counters(const inv_state *s, const inv_event *e)
{
    if (e->type != INV_EV_RESERVED && e->type != INV_EV_COMMITTED &&
        e->type != INV_EV_RELEASED && e->type != INV_EV_RESTOCKED)
        return;
    inv_product_view v;
    FZ_CHECK(inv_state_product(s, e->product_id, &v));
    FZ_SAME_INT("available", e->available, v.available);
    FZ_SAME_INT("reserved", e->reserved, v.reserved);
    FZ_SAME_INT("sold", e->sold, v.sold);
    if (e->type == INV_EV_RESERVED && v.f.per_user_limit > 0)
        FZ_CHECK(inv_state_held(s, e->product_id, e->member_id) <= v.f.per_user_limit);
}

static void same_view(const inv_product_view *a, const inv_product_view *b)
{
    FZ_SAME_STR("id", a->id, b->id);
    FZ_SAME_STR("name", a->f.name, b->f.name);
    FZ_SAME_STR("description", a->f.description, b->f.description);
    FZ_SAME_STR("currency", a->f.currency, b->f.currency);
    FZ_SAME_INT("price", a->f.price, b->f.price);
    FZ_SAME_INT("sale_starts_at", a->f.sale_starts_at, b->f.sale_starts_at);
    FZ_SAME_INT("sale_ends_at", a->f.sale_ends_at, b->f.sale_ends_at);
    FZ_SAME_INT("per_user_limit", a->f.per_user_limit, b->f.per_user_limit);
    FZ_SAME_INT("paused", a->paused, b->paused);
    FZ_SAME_INT("stock", a->stock, b->stock);
    FZ_SAME_INT("available", a->available, b->available);
    FZ_SAME_INT("reserved", a->reserved, b->reserved);
    FZ_SAME_INT("sold", a->sold, b->sold);
}

static void same_save(const inv_state *a, const inv_state *b)
{
    void *ba, *bb;
    size_t la, lb;
    FZ_CHECK(inv_state_save(a, &ba, &la) == 0 && inv_state_save(b, &bb, &lb) == 0);
    FZ_CHECK(la == lb && !memcmp(ba, bb, la));
    free(ba);
    free(bb);
}

/* Two states hold the same: products, held units, counts, clock, and (bytes) the same
 * snapshot bytes. */
static void same_state(const inv_state *a, const inv_state *b, bool bytes)
{
    char id[INV_ID_MAX], m[INV_ID_MAX];
    FZ_SAME_INT("products", inv_state_product_count(a), inv_state_product_count(b));
    for (int p = 0; p < PRODUCTS; p++) {
        inv_product_view va, vb;
        snprintf(id, sizeof id, "p%d", p);
        bool ka = inv_state_product(a, id, &va), kb = inv_state_product(b, id, &vb);
        FZ_SAME_INT("known", ka, kb);
        if (ka)
            same_view(&va, &vb);
        for (int k = 0; k < MEMBERS; k++) {
            member_id(k, m);
            FZ_SAME_INT("held", inv_state_held(a, id, m), inv_state_held(b, id, m));
        }
    }
    FZ_SAME_INT("decided lines", inv_state_decided_count(a), inv_state_decided_count(b));
    FZ_SAME_INT("reservations", inv_state_reservation_count(a), inv_state_reservation_count(b));
    FZ_SAME_INT("horizon", inv_state_horizon(a), inv_state_horizon(b));
    FZ_SAME_INT("deduplication window", inv_state_dedup_window(a), inv_state_dedup_window(b));
    FZ_SAME_INT("sold-line memory", inv_state_sold_memory(a), inv_state_sold_memory(b));
    FZ_SAME_INT("refusal point", inv_state_refuse_before(a), inv_state_refuse_before(b));
    FZ_SAME_INT("last command offset", inv_state_last_command_offset(a),
                inv_state_last_command_offset(b));
    if (bytes)
        same_save(a, b);
}

/* The counters-only view shows live's products and holds no line. */
static void same_products(const inv_state *live, const inv_state *view)
{
    char id[INV_ID_MAX];
    FZ_SAME_INT("view's products", inv_state_product_count(live), inv_state_product_count(view));
    for (int p = 0; p < PRODUCTS; p++) {
        inv_product_view a, b;
        snprintf(id, sizeof id, "p%d", p);
        bool ka = inv_state_product(live, id, &a), kb = inv_state_product(view, id, &b);
        FZ_SAME_INT("known to the view", ka, kb);
        if (ka)
            same_view(&a, &b);
    }
    FZ_SAME_INT("view's decided lines", inv_state_decided_count(view), 0);
    FZ_SAME_INT("view's reservations", inv_state_reservation_count(view), 0);
    FZ_SAME_INT("view's clock", inv_state_horizon(live), inv_state_horizon(view));
}

/* ---- steps ------------------------------------------------------------------------------ */

/* A snapshot of live: loads, saves the same; damaged at a chosen byte, or cut, refused. */
static void snapshot(fz_input *in, world *w)
{
    void *buf;
    size_t len;
    FZ_CHECK(inv_state_save(w->live, &buf, &len) == 0);
    inv_state_destroy(w->snap);
    w->snap = inv_state_load(buf, len, WINDOW);
    FZ_CHECK(w->snap != NULL);
    same_state(w->live, w->snap, true);
    if (!w->view_ok) { /* a view made from the state, from here on fed as the API feeds it */
        inv_state_destroy(w->view);
        w->view = inv_state_counters_of(w->live);
        FZ_CHECK(w->view != NULL);
        w->view_ok = true;
        same_products(w->live, w->view);
    }
    size_t at = fz_pick(in, 65536) % len;
    ((unsigned char *)buf)[at] ^= (unsigned char)(1 + fz_pick(in, 255));
    FZ_CHECK(inv_state_load(buf, len, WINDOW) == NULL);
    ((unsigned char *)buf)[at] = 0;
    FZ_CHECK(inv_state_load(buf, at, WINDOW) == NULL);
    free(buf);
}

static void command_step(fz_input *in, world *w)
{
    static inv_command made, c;
    static inv_event e, se, back;
    command_of(in, w, &made);
    if (!as_read(&made, &c, ++w->offset))
        return;
    inv_outcome out = decide(w->live, &c, &e);
    if (w->snap) { /* a loaded snapshot decides as the live state does */
        FZ_SAME_INT("snapshot's outcome", decide(w->snap, &c, &se), out);
        FZ_CHECK(out == INV_DUPLICATE || !memcmp(&se, &e, sizeof e));
    }
    if (out == INV_DUPLICATE) {
        FZ_SAME_INT("duplicate of", c.type, INV_CMD_RESERVE);
        return;
    }
    if (c.type == INV_CMD_RESERVE)
        check_reservation(w->live, &c, &e);
    if (inv_apply(w->live, &e))
        fz_fail(__FILE__, __LINE__, "%s (deciding %s) does not apply", inv_event_name(e.type),
                inv_cmd_name(c.type));
    if (w->snap)
        FZ_CHECK(inv_apply(w->snap, &e) == 0);
    event_as_read(&e, &back);
    FZ_CHECK(inv_apply(w->rebuilt, &back) == 0);
    if (w->view_ok) {
        FZ_CHECK(inv_apply(w->view, &back) == 0);
        same_products(w->live, w->view);
    }
    check_counters(w->live, &e);
    char id[INV_ID_MAX];
    for (int p = 0; p < PRODUCTS; p++) {
        snprintf(id, sizeof id, "p%d", p);
        check_product(w->live, id);
    }
    same_state(w->live, w->rebuilt, w->offset % 16 == 0);
}

static void *saved(const inv_state *s, size_t *len)
{
    void *buf;
    FZ_CHECK(inv_state_save(s, &buf, len) == 0);
    return buf;
}

/* A forged event, as a corrupt changelog could hold one (read back through the codec):
 * applying it fails and changes nothing, or succeeds and keeps the invariants; the live,
 * rebuilt and loaded states give the same verdict. */
static void forged_step(fz_input *in, world *w)
{
    static inv_event e, back;
    memset(&e, 0, sizeof e);
    e.type = (inv_event_type)fz_pick(in, INV_EV_COUNT);
    product_id(in, e.product_id);
    if (!e.product_id[0])
        snprintf(e.product_id, sizeof e.product_id, "p0");
    if (fz_bool(in))
        order_id((int)fz_pick(in, ORDERS), e.order_id);
    member_id((int)fz_pick(in, MEMBERS), e.member_id);
    e.quantity = PICK_I32(in, 1, 2, 0, -1, INT32_MAX, INT32_MIN, INV_MAX_QUANTITY + 1);
    e.item_index = PICK_I32(in, 0, 1, -1);
    e.stock = PICK_I32(in, 5, 0, -1, INT32_MAX);
    e.reason = (inv_reason)fz_pick(in, INV_R_COUNT);
    product_fields(in, w, &e.f, e.type == INV_EV_UPDATED);
    e.occurred_at = w->clock;
    e.command_offset = -1;
    e.dedup_window_ms = PICK_I64(in, HOUR, 0, INV_RETENTION_MIN_MS, INV_RETENTION_MAX_MS + 1);
    e.sold_memory_ms = PICK_I64(in, DAY, -1, INV_RETENTION_MIN_MS, INV_RETENTION_MAX_MS);
    event_as_read(&e, &back);
    size_t l0, l1;
    void *before = saved(w->live, &l0);
    int rc = inv_apply(w->live, &back);
    void *after = saved(w->live, &l1);
    if (rc)
        FZ_CHECK(l0 == l1 && !memcmp(before, after, l0)); /* refused: unchanged */
    else
        w->view_ok = false;
    free(before);
    free(after);
    FZ_SAME_INT("rebuilt's verdict on a forged event", inv_apply(w->rebuilt, &back), rc);
    if (w->snap)
        FZ_SAME_INT("snapshot's verdict on a forged event", inv_apply(w->snap, &back), rc);
    char id[INV_ID_MAX];
    for (int p = 0; p < PRODUCTS; p++) {
        snprintf(id, sizeof id, "p%d", p);
        check_product(w->live, id);
    }
    same_state(w->live, w->rebuilt, true);
}

/* The clock: mostly milliseconds, sometimes hours or days. */
static void tick(fz_input *in, world *w)
{
    w->clock += PICK_I64(in, 1, 1000, 10, 0, HOUR, DAY, 10 * DAY, 30 * DAY);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    codec = fz_codec_new();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_input in = fz_input_of(data, size);
    world w = {inv_state_new(WINDOW), inv_state_new(WINDOW), NULL, T0, 0, inv_state_new_counters(), true};
    FZ_CHECK(w.live && w.rebuilt && w.view);
    for (int i = 0; i < MAX_STEPS && fz_more(&in); i++) {
        tick(&in, &w);
        switch (fz_pick(&in, 16)) {
        case 0: snapshot(&in, &w); break;
        case 15: forged_step(&in, &w); break;
        default: command_step(&in, &w); break;
        }
    }
    same_state(w.live, w.rebuilt, true);
    if (w.snap)
        same_state(w.live, w.snap, true);
    inv_state_destroy(w.live);
    inv_state_destroy(w.rebuilt);
    inv_state_destroy(w.snap);
    inv_state_destroy(w.view);
    return 0;
}
