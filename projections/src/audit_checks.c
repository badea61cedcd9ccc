/* flashsale-audit: the checks of the log (replay, invariants, orders, leaks, answers); see
 * audit.h. */
#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- replay ------------------------------------------------------------------------- */

static int cmp_cmd(const void *x, const void *y)
{
    const cmd_rec *a = x, *b = y;
    return a->partition != b->partition ? a->partition - b->partition
                                        : (a->offset > b->offset) - (a->offset < b->offset);
}

static int cmp_ev(const void *x, const void *y)
{
    const ev_rec *a = x, *b = y;
    return a->partition != b->partition ? a->partition - b->partition
                                        : (a->offset > b->offset) - (a->offset < b->offset);
}

static bool same_decision(const inv_event *want, const inv_event *got)
{
    if (want->type != got->type || strcmp(want->product_id, got->product_id) ||
        strcmp(want->order_id, got->order_id) || want->item_index != got->item_index)
        return false;
    switch (want->type) {
    case INV_EV_REJECTED:
        return want->reason == got->reason && want->quantity == got->quantity;
    case INV_EV_CMD_REJECTED:
        return want->reason == got->reason;
    case INV_EV_RETENTION_SET:
        return want->dedup_window_ms == got->dedup_window_ms &&
               want->sold_memory_ms == got->sold_memory_ms;
    case INV_EV_RESERVED:
    case INV_EV_COMMITTED:
    case INV_EV_RELEASED:
    case INV_EV_RESTOCKED:
        return want->quantity == got->quantity && want->available == got->available &&
               want->reserved == got->reserved && want->sold == got->sold;
    default:
        return true;
    }
}

void audit_check_replay(audit_ctx *a, uint64_t *replayed)
{
    cmd_rec *cmds = a->cmds.v;
    ev_rec *evs = a->evs.v;
    qsort(cmds, a->cmds.n, sizeof *cmds, cmp_cmd);
    qsort(evs, a->evs.n, sizeof *evs, cmp_ev);
    size_t ci = 0, ei = 0;
    while (ci < a->cmds.n || ei < a->evs.n) {
        int32_t part = ci < a->cmds.n ? cmds[ci].partition : evs[ei].partition;
        if (ei < a->evs.n && evs[ei].partition < part)
            part = evs[ei].partition;
        /* events of this partition, by the command offset they answer */
        fs_map *by_cmd = fs_map_new(1024);
        size_t e0 = ei;
        while (ei < a->evs.n && evs[ei].partition == part) {
            char k[32];
            snprintf(k, sizeof k, "%lld", (long long)evs[ei].ev->command_offset);
            if (fs_map_get(by_cmd, k))
                audit_violation("replay", evs[ei].ev->order_id, evs[ei].ev->product_id, part,
                          evs[ei].offset, "a second event answers command %lld",
                          (long long)evs[ei].ev->command_offset);
            else
                fs_map_put(by_cmd, k, &evs[ei]);
            ei++;
        }
        /* commands from here on may be undecided yet: past the processor's committed offset
         * (when known) and past the last command answered (a later answer means the
         * command was handled, in a transaction that committed) */
        int64_t upto = part >= 0 && part < MAX_PARTITIONS ? a->decided_upto[part] : -1;
        for (size_t i = e0; i < ei; i++)
            if (evs[i].ev->command_offset >= upto)
                upto = evs[i].ev->command_offset + 1;
        inv_state *st = inv_state_new(0);
        for (; ci < a->cmds.n && cmds[ci].partition == part; ci++) {
            cmd_rec *c = &cmds[ci];
            char k[32];
            snprintf(k, sizeof k, "%lld", (long long)c->offset);
            ev_rec *got = fs_map_del(by_cmd, k);
            if (!c->cmd) {
                if (got)
                    audit_violation("replay", got->ev->order_id, got->ev->product_id, part,
                                    c->offset, "an undecodable command was answered");
                continue;
            }
            inv_event want;
            bool covered = c->offset <= inv_state_last_command_offset(st);
            if (covered || inv_decide(st, c->cmd, &want) == INV_DUPLICATE) {
                if (!covered)
                    a->repeated++;
                if (got)
                    audit_violation("replay", c->cmd->order_id, c->cmd->product_id, part, c->offset,
                              "a repeated command was answered again (%s)",
                              inv_event_name(got->ev->type));
                continue;
            }
            if (!got) {
                if (a->at || c->offset >= upto) { /* after the cut, or not decided yet */
                    a->pending++;
                    if (c->cmd->order_id[0])
                        fs_map_put(a->pending_orders, c->cmd->order_id, (void *)1);
                } else
                    audit_violation("replay", c->cmd->order_id, c->cmd->product_id, part, c->offset,
                              "%s got no answer (expected %s)", inv_cmd_name(c->cmd->type),
                              inv_event_name(want.type));
                continue;
            }
            if (!same_decision(&want, got->ev))
                audit_violation("replay", c->cmd->order_id, c->cmd->product_id, part, got->offset,
                          "%s answered %s %s (%d/%d/%d), the rules give %s %s (%d/%d/%d)",
                          inv_cmd_name(c->cmd->type), inv_event_name(got->ev->type),
                          got->ev->type == INV_EV_REJECTED ? inv_reason_name(got->ev->reason) : "",
                          got->ev->available, got->ev->reserved, got->ev->sold,
                          inv_event_name(want.type),
                          want.type == INV_EV_REJECTED ? inv_reason_name(want.reason) : "",
                          want.available, want.reserved, want.sold);
            if (inv_apply(st, got->ev)) /* continue from what really happened */
                audit_violation("replay", got->ev->order_id, got->ev->product_id, part,
                                got->offset, "%s does not apply to the state before it",
                                inv_event_name(got->ev->type));
            (*replayed)++;
        }
        for (size_t i = e0; i < ei; i++) {
            char k[32];
            snprintf(k, sizeof k, "%lld", (long long)evs[i].ev->command_offset);
            if (fs_map_get(by_cmd, k) == &evs[i])
                audit_violation("replay", evs[i].ev->order_id, evs[i].ev->product_id, part,
                                evs[i].offset, "%s answers no command (command offset %lld)",
                                inv_event_name(evs[i].ev->type),
                                (long long)evs[i].ev->command_offset);
        }
        inv_state_destroy(st);
        fs_map_destroy(by_cmd);
    }
}

/* ---- invariants from the events alone ------------------------------------------------ */





/* A member's lines of a product ("product|member" -> lines), for the sold-line cut below. */
typedef struct {
    resv_t **v;
    size_t n, cap;
} member_lines;

static int lines_push(fs_map *lines, const char *hk, resv_t *r)
{
    member_lines *l = fs_map_get(lines, hk);
    if (!l && (!(l = calloc(1, sizeof *l)) || fs_map_put(lines, hk, l) == (void *)-1)) {
        free(l);
        return -1;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        resv_t **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = r;
    return 0;
}

static void lines_remove(fs_map *lines, const resv_t *r)
{
    char hk[2 * INV_ID_MAX + 4];
    snprintf(hk, sizeof hk, "%s|%s", r->product, r->member);
    member_lines *l = fs_map_get(lines, hk);
    for (size_t i = 0; l && i < l->n; i++)
        if (l->v[i] == r) {
            l->v[i] = l->v[--l->n];
            return;
        }
}

static void lines_free(void *ctx, const char *key, void *value)
{
    (void)ctx, (void)key;
    member_lines *l = value;
    free(l->v);
    free(l);
}

/* Units of a member's sold lines of a product that the inventory may have dropped: those
 * whose order is older than the partition's sold-line cut (its clock minus its sold-line
 * memory, the latest of those so far), marked dropped here for good. The inventory drops
 * sold lines in the order they were sold, so it may still hold some of these: counting them
 * all as dropped makes the per-user limit check looser, never stricter, than the rule (the
 * replay check holds each decision to the rule itself). */
static intptr_t drop_forgotten(fs_map *lines, const char *hk, int64_t cut)
{
    member_lines *l = fs_map_get(lines, hk);
    intptr_t units = 0;
    for (size_t i = 0; l && i < l->n; i++) {
        resv_t *r = l->v[i];
        if (r->committed && !r->gone && r->at < cut) {
            r->gone = true;
            units += r->qty;
        }
    }
    return units;
}

void audit_check_invariants(audit_ctx *a, fs_map *products, fs_map *resv, fs_map *decided)
{
    fs_map *held = fs_map_new(4096);  /* "product|member" -> units */
    fs_map *lines = fs_map_new(4096); /* "product|member" -> member_lines */
    /* each partition's clock and sold-line memory, as the inventory's state has them */
    int64_t clock[MAX_PARTITIONS], sold_ms[MAX_PARTITIONS], sold_cut[MAX_PARTITIONS];
    for (int i = 0; i < MAX_PARTITIONS; i++) {
        clock[i] = 0;
        sold_ms[i] = INV_SOLD_MEMORY_MS;
        sold_cut[i] = INT64_MIN;
    }
    ev_rec *evs = a->evs.v;
    for (size_t i = 0; i < a->evs.n; i++) {
        const inv_event *e = evs[i].ev;
        int32_t part = evs[i].partition;
        int64_t off = evs[i].offset;
        prod_t *p = fs_map_get(products, e->product_id);
        char k[2 * INV_ID_MAX + 16];
        if (part >= 0 && part < MAX_PARTITIONS) {
            if (e->type == INV_EV_RETENTION_SET)
                sold_ms[part] = e->sold_memory_ms;
            if (e->product_id[0] && e->occurred_at > clock[part]) /* as inv_apply's clock */
                clock[part] = e->occurred_at;
            if (clock[part] - sold_ms[part] > sold_cut[part])
                sold_cut[part] = clock[part] - sold_ms[part];
        }
        if (e->type == INV_EV_RETENTION_SET)
            continue; /* names no product */
        if (e->type == INV_EV_DEFINED) {
            if (p) {
                audit_violation("invariant", "", e->product_id, part, off, "product defined twice");
                continue;
            }
            p = calloc(1, sizeof *p);
            p->stock = p->available = e->stock;
            p->limit = e->f.per_user_limit;
            fs_map_put(products, e->product_id, p);
            continue;
        }
        if (e->type == INV_EV_RESERVED || e->type == INV_EV_REJECTED) {
            snprintf(k, sizeof k, "%s#%d", e->order_id, e->item_index);
            intptr_t n = (intptr_t)fs_map_get(decided, k) + 1;
            fs_map_put(decided, k, (void *)n);
            if (n > 1)
                audit_violation("invariant", e->order_id, e->product_id, part, off,
                          "line %d decided %ld times", e->item_index, (long)n);
        }
        if (!p) {
            if (e->type != INV_EV_REJECTED && e->type != INV_EV_CMD_REJECTED)
                audit_violation("invariant", e->order_id, e->product_id, part, off,
                          "%s for an unknown product", inv_event_name(e->type));
            continue;
        }
        switch (e->type) {
        case INV_EV_UPDATED:
            if (e->f.has_limit)
                p->limit = e->f.per_user_limit;
            break;
        case INV_EV_RESTOCKED:
            p->stock += e->quantity;
            p->available += e->quantity;
            if (e->order_id[0]) { /* a returned or cancelled paid unit is no longer held */
                snprintf(k, sizeof k, "%s#%d", e->order_id, e->item_index);
                resv_t *r = fs_map_get(resv, k);
                if (r && !r->gone) {
                    char hk[2 * INV_ID_MAX + 4];
                    snprintf(hk, sizeof hk, "%s|%s", r->product, r->member);
                    fs_map_put(held, hk, (void *)((intptr_t)fs_map_get(held, hk) - r->qty));
                    r->gone = true;
                }
            }
            break;
        case INV_EV_RESERVED: {
            if (e->quantity > p->available)
                audit_violation("oversell", e->order_id, e->product_id, part, off,
                          "%d units granted with %lld available", e->quantity,
                          (long long)p->available);
            p->available -= e->quantity;
            p->reserved += e->quantity;
            char hk[2 * INV_ID_MAX + 4];
            snprintf(hk, sizeof hk, "%s|%s", e->product_id, e->member_id);
            intptr_t h = (intptr_t)fs_map_get(held, hk) + e->quantity;
            fs_map_put(held, hk, (void *)h);
            if (p->limit > 0 && h > p->limit && part >= 0 && part < MAX_PARTITIONS) {
                h -= drop_forgotten(lines, hk, sold_cut[part]);
                fs_map_put(held, hk, (void *)h);
            }
            if (p->limit > 0 && h > p->limit)
                audit_violation("limit", e->order_id, e->product_id, part, off,
                          "member %s holds %ld units, the limit is %d", e->member_id, (long)h,
                          p->limit);
            snprintf(k, sizeof k, "%s#%d", e->order_id, e->item_index);
            resv_t *r = calloc(1, sizeof *r);
            snprintf(r->member, sizeof r->member, "%s", e->member_id);
            snprintf(r->product, sizeof r->product, "%s", e->product_id);
            r->qty = e->quantity;
            r->pay_by = e->pay_by;
            r->partition = part;
            r->offset = off;
            int64_t t = fs_uuid7_str_millis(e->order_id);
            r->at = t >= 0 ? t : e->occurred_at;
            resv_t *old = fs_map_put(resv, k, r);
            if (old && old != (void *)-1) { /* a line reserved twice (flagged above) */
                lines_remove(lines, old);
                free(old);
            }
            if (lines_push(lines, hk, r))
                audit_violation("invariant", e->order_id, e->product_id, part, off, "out of memory");
            break;
        }
        case INV_EV_REJECTED:
            if (e->reason == INV_R_SOLD_OUT && p->available != 0)
                audit_violation("undersell", e->order_id, e->product_id, part, off,
                          "refused SOLD_OUT with %lld units available", (long long)p->available);
            break;
        case INV_EV_COMMITTED:
        case INV_EV_RELEASED: {
            snprintf(k, sizeof k, "%s#%d", e->order_id, e->item_index);
            resv_t *r = fs_map_get(resv, k);
            if (!r) {
                audit_violation("invariant", e->order_id, e->product_id, part, off,
                          "%s of a reservation that does not exist", inv_event_name(e->type));
                break;
            }
            if (++r->settled > 1)
                audit_violation("invariant", e->order_id, e->product_id, part, off,
                          "reservation settled %d times", r->settled);
            p->reserved -= r->qty;
            if (e->type == INV_EV_COMMITTED) {
                p->sold += r->qty;
                r->committed = true;
            } else {
                p->available += r->qty;
                char hk[2 * INV_ID_MAX + 4];
                snprintf(hk, sizeof hk, "%s|%s", r->product, r->member);
                fs_map_put(held, hk, (void *)((intptr_t)fs_map_get(held, hk) - r->qty));
            }
            break;
        }
        default:
            break;
        }
        if (p->available < 0 || p->reserved < 0 || p->sold < 0)
            audit_violation("invariant", e->order_id, e->product_id, part, off,
                      "negative counter (%lld/%lld/%lld)", (long long)p->available,
                      (long long)p->reserved, (long long)p->sold);
        if (p->available + p->reserved + p->sold != p->stock)
            audit_violation("invariant", e->order_id, e->product_id, part, off,
                      "available + reserved + sold = %lld, stock %lld",
                      (long long)(p->available + p->reserved + p->sold), (long long)p->stock);
        if (p->reserved + p->sold > p->stock)
            audit_violation("oversell", e->order_id, e->product_id, part, off,
                      "reserved + sold %lld above stock %lld", (long long)(p->reserved + p->sold),
                      (long long)p->stock);
        if ((e->type == INV_EV_RESERVED || e->type == INV_EV_COMMITTED ||
             e->type == INV_EV_RELEASED || e->type == INV_EV_RESTOCKED) &&
            (e->available != p->available || e->reserved != p->reserved || e->sold != p->sold))
            audit_violation("invariant", e->order_id, e->product_id, part, off,
                      "event says %d/%d/%d, the log adds up to %lld/%lld/%lld", e->available,
                      e->reserved, e->sold, (long long)p->available, (long long)p->reserved,
                      (long long)p->sold);
    }
    fs_map_destroy(held);
    fs_map_foreach(lines, lines_free, NULL);
    fs_map_destroy(lines);
}

/* ---- orders and leaks --------------------------------------------------------------- */



void audit_check_orders(audit_ctx *a, fs_map *orders)
{
    snap_rec *snaps = a->orders.v;
    for (size_t i = 0; i < a->orders.n; i++) {
        snap_rec *s = &snaps[i];
        order_t *o = fs_map_get(orders, s->order_id);
        if (!o) {
            o = calloc(1, sizeof *o);
            o->last = s->previous;
            fs_map_put(orders, s->order_id, o);
        }
        if (s->previous != s->status) {
            if (!ord_transition_is_valid(s->previous, s->status))
                audit_violation("orders", s->order_id, "", -1, -1, "illegal transition %s -> %s",
                          ord_status_name(s->previous), ord_status_name(s->status));
            if (ord_status_is_terminal(s->status) && ++o->terminal > 1)
                audit_violation("orders", s->order_id, "", -1, -1, "ended twice (now %s)",
                          ord_status_name(s->status));
        }
        o->last = s->status;
    }
}



void audit_check_leak(void *ctx, const char *key, void *value)
{
    leak_ctx *l = ctx;
    resv_t *r = value;
    if (r->settled)
        return;
    l->unsettled++;
    char order[INV_ID_MAX];
    snprintf(order, sizeof order, "%.*s", (int)(strrchr(key, '#') - key), key);
    if (fs_map_get(l->pending_orders, order))
        return; /* its release (or commit) is in the log, not decided yet: a live log */
    order_t *o = fs_map_get(l->orders, order);
    bool ended_without_sale = o && (o->last == ORD_EXPIRED || o->last == ORD_CANCELLED ||
                                    o->last == ORD_PAYMENT_FAILED || o->last == ORD_REJECTED);
    bool paying = o && (o->last == ORD_PAYING || o->last == ORD_PAID ||
                        o->last == ORD_NEEDS_ATTENTION);
    if (ended_without_sale)
        audit_violation("leak", order, r->product, r->partition, r->offset,
                  "reservation of %d never released though the order is %s", r->qty,
                  ord_status_name(o->last));
    else if (!paying && r->pay_by && r->pay_by + l->grace < l->now)
        audit_violation("leak", order, r->product, r->partition, r->offset,
                  "reservation of %d still held %lld s after its payment deadline", r->qty,
                  (long long)((l->now - r->pay_by) / 1000));
}

/* ---- answers ----------------------------------------------------------------------------
 * Every answer the API gave (orders.answers) against the committed log. A decision answered
 * (from the processor's reply before its commit, or from the committed stream) must be the
 * committed decision of that order: same outcome, reason, payment deadline, product and
 * quantity. A sold-out answer from the API's view (no command sent) must name a product that
 * the committed log had already sold out when the answer was given. A TIMED_OUT refusal
 * answered from the command's delivery report (source "delivery": appended after its
 * accept_by; written by APIs before 2026-12-07, as an older log holds) must be the committed
 * decision too. PENDING answers say nothing to check. */


void audit_check_answers(audit_ctx *a, answers_stats *st)
{
    fs_map *decision = fs_map_new(4096), *commanded = fs_map_new(4096), *sold_out_at = fs_map_new(256);
    ev_rec *evs = a->evs.v;
    for (size_t i = 0; i < a->evs.n; i++) {
        inv_event *e = evs[i].ev;
        if ((e->type == INV_EV_RESERVED || e->type == INV_EV_REJECTED) && e->item_count <= 1 &&
            !fs_map_get(decision, e->order_id))
            fs_map_put(decision, e->order_id, &evs[i]);
        if ((e->type == INV_EV_RESERVED || e->type == INV_EV_REJECTED) && e->available == 0) {
            int64_t *t = fs_map_get(sold_out_at, e->product_id);
            if (!t && (t = malloc(sizeof *t))) {
                *t = INT64_MAX;
                fs_map_put(sold_out_at, e->product_id, t);
            }
            if (t && e->occurred_at < *t) /* the command's time: a copied log keeps it */
                *t = e->occurred_at;
        }
    }
    cmd_rec *cmds = a->cmds.v;
    for (size_t i = 0; i < a->cmds.n; i++)
        if (cmds[i].cmd && cmds[i].cmd->type == INV_CMD_RESERVE)
            fs_map_put(commanded, cmds[i].cmd->order_id, (void *)1);
    answer_rec *ans = a->answers.v;
    for (size_t i = 0; i < a->answers.n; i++) {
        answer_rec *r = &ans[i];
        if (!strcmp(r->status, "PENDING")) {
            st->pending++;
            continue;
        }
        if (!strcmp(r->source, "view")) {
            st->view++;
            int64_t *t = fs_map_get(sold_out_at, r->product_id);
            if (fs_map_get(commanded, r->order_id)) {
                st->differences++;
                audit_violation("answers", r->order_id, r->product_id, r->partition, r->offset,
                          "answered SOLD_OUT from the view, yet a command was sent for the order");
            } else if (strcmp(r->reason, "SOLD_OUT") || !t || *t > r->answered_at) {
                st->differences++;
                audit_violation("answers", r->order_id, r->product_id, r->partition, r->offset,
                          "answered %s %s without a command while the committed log had not sold the product out",
                          r->status, r->reason);
            }
            continue;
        }
        ev_rec *d = fs_map_get(decision, r->order_id);
        if (!d && fs_map_get(a->pending_orders, r->order_id)) {
            st->pending++; /* answered at the decision; its transaction not committed yet */
            continue;
        }
        st->compared++;
        if (!strcmp(r->source, "reply"))
            st->via_reply++;
        const char *got = !d ? "" : d->ev->type == INV_EV_RESERVED ? "RESERVED" : "REJECTED";
        const char *why =
            !d || d->ev->type == INV_EV_RESERVED ? "" : inv_reason_name(d->ev->reason);
        int64_t pay_by = d && d->ev->type == INV_EV_RESERVED ? d->ev->pay_by : 0;
        if (!d)
            audit_violation("answers", r->order_id, r->product_id, r->partition, r->offset,
                      "answered %s %s (%s) but no decision of the order was committed", r->status,
                      r->reason, r->source);
        else if (strcmp(got, r->status) || strcmp(why, r->reason) || pay_by != r->pay_by ||
                 strcmp(d->ev->product_id, r->product_id) || d->ev->quantity != r->quantity)
            audit_violation("answers", r->order_id, r->product_id, r->partition, r->offset,
                      "answered %s %s pay_by %lld (%s), committed %s %s pay_by %lld at %d/%lld",
                      r->status, r->reason, (long long)r->pay_by, r->source, got, why,
                      (long long)pay_by, d->partition, (long long)d->offset);
        else
            continue;
        st->differences++;
    }
    fs_map_destroy(decision);
    fs_map_destroy(commanded);
    fs_map_destroy_free(sold_out_at);
}

