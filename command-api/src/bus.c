/* Kafka link of the API; see bus.h for the contract.
 *
 * Shared state under b->lock: the product view (an inv_state over all partitions), the
 * orders map, the per-partition decided offsets, and the waiters map (key -> list). */
#include "bus.h"
#include "metrics.h"
#include "flashsale/inventory_codec.h"
#include "flashsale/inventory_snapshot.h"
#include "flashsale/messages.h"

#include "fs/follow.h"

#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/map.h"
#include "fs/metrics.h"
#include "fs/reply.h"

#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PARTITIONS 1024
#define DECISION_SLOTS 16 /* > the 10 s the overview's rate covers */

/* An order as the view holds it: api_order's fields, with the lines and the history sized
 * to the order instead of room for the most (3,600 bytes a copy; most orders have one line
 * and two to six entries). api_order's copies are made by held_copy. */
typedef struct held_order {
    API_ORDER_HEAD
    int nlines;
    int nhistory, hcap;
    api_line *lines;      /* nlines of them (NULL: none) */
    api_history *history; /* nhistory of hcap */
    int64_t touched;      /* monotonic ms of the last change (the view forgets idle orders) */
    struct held_order *lru_prev, *lru_next; /* the view's recency list */
} held_order;
/* the fields of API_ORDER_HEAD lie alike in both, up to nlines: copied as one block */
_Static_assert(offsetof(held_order, nlines) == offsetof(api_order, nlines), "one head in both");

struct api_waiter {
    char key[INV_ID_MAX];
    double t0_us; /* registered (just before the command is produced) */
    char token[FS_REPLY_TOKEN_LEN + 1]; /* the reply-token its command carries */
    pthread_cond_t cond;
    int refs;
    bool produced;
    bool wants_delivery; /* its request waits for the delivery report too (async, or late) */
    bool order_command;  /* a ticket of an orders.commands record: only its delivery counts */
    /* a request that does not sleep on `cond` (the order front): told, with the bus's lock
     * held, whenever r changes; cleared by api_bus_waiter_release */
    void (*notify)(void *ctx);
    void *notify_ctx;
    api_wait_result r;
    api_waiter *next;
};

struct api_bus {
    const fs_common_config *cfg;
    const fs_codec *codec;
    /* The producers, each replaced after a fatal error by the keeper thread (keeper_main):
     * every other thread uses them only under plock's read side, and the swap is made under
     * its write side. Writer-preferring: a keeper waiting to swap is not starved by requests. */
    pthread_rwlock_t plock;
    rd_kafka_t *producer;
    rd_kafka_t *answers; /* orders.answers: batched (linger), off every request's path */
    pthread_t keeper_thread;
    char cmd_timeout[24];    /* the commands' message.timeout.ms */
    char answers_linger[24]; /* FLASHSALE_ANSWERS_LINGER_MS: the answers' linger.ms */
    long fatal_at;        /* FLASHSALE_TEST_PRODUCER_FATAL_AT (tests): see api_bus_produce */
    atomic_long reserves; /* ReserveStock commands produced (for fatal_at) */
    long answers_fatal_at; /* FLASHSALE_TEST_ANSWERS_FATAL_AT (tests): see api_bus_record_answer */
    atomic_long answers_recorded;
    atomic_int keeper_stop;
    pthread_mutex_t unsent_lock;
    struct unsent_answer *unsent; /* answers a failed producer never sent (answer_dr_cb) */
    held_order *lru_head, *lru_tail; /* b->orders, least recently changed first */
    pthread_t dr_thread, stream_thread;
    volatile int stop;
    long late_answer_ms; /* FLASHSALE_TEST_LATE_ANSWER_MS (tests): a waiter's result read late */
    long command_copy_ms;  /* FLASHSALE_TEST_COMMAND_COPY_MS (tests): see api_bus_produce */
    long command_delay_ms; /* FLASHSALE_TEST_COMMAND_DELAY_MS (tests): see api_bus_produce */

    pthread_mutex_t lock;
    inv_state *views[MAX_PARTITIONS]; /* per partition of inventory.events */
    int nviews;                       /* views[nviews..] are all NULL */
    int64_t skip_upto[MAX_PARTITIONS]; /* events the partition's snapshot already holds */
    int64_t order_memory_ms;
    long max_orders;
    long cmd_timeout_ms, clock_skew_ms; /* see api_bus_accept_by */
    fs_map *orders;  /* order id -> held_order* */
    fs_map *waiters; /* key -> api_waiter* (list) */
    int64_t decided_offset[MAX_PARTITIONS];
    bool caught_up;
    fs_hist *h_durable, *h_seen, *h_visible;
    /* decision replies (fs/reply.h): the UDP socket commands name in reply-to */
    int reply_fd;
    char reply_to[64];
    pthread_t reply_thread;
    atomic_int replies_taken;          /* read by the order front's loop instead (front.h) */
    /* delivery reports served by the order front's loop instead of dr_main (front.h): the
     * producers' queues write dr_fd (an eventfd) when a report waits */
    atomic_int dr_taken;
    int dr_fd;
    rd_kafka_queue_t *dr_q[2];
    struct reply_item *ext_items;      /* its batch buffers */
    struct wake_list *ext_later;
    atomic_ulong replies_used, replies_ignored, answer_errors;
    api_bus_listener listener; /* the live event stream's (sse.h); set once before requests */
    /* decisions read by the stream (operator overview): the total, and per second of their
     * record timestamps over the last DECISION_SLOTS seconds (under lock) */
    uint64_t decisions_total;
    struct {
        int64_t second;
        uint32_t count;
    } decision_slots[DECISION_SLOTS];
};


const char *api_order_status_name(api_order_status s)
{
    return s == API_ORDER_RESERVED ? "RESERVED" : s == API_ORDER_REJECTED ? "REJECTED" : "PENDING";
}

bool api_order_caused_by(const api_order *o, const char *event_id)
{
    int n = o->ncauses < 8 ? o->ncauses : 8;
    for (int i = 0; i < n; i++)
        if (!strcmp(o->causes[i], event_id))
            return true;
    return false;
}

static const char *current_status(const char *saga_status, api_order_status status)
{
    return saga_status[0] ? saga_status : api_order_status_name(status);
}

ord_status api_order_lifecycle(const api_order *o)
{
    int s = o->saga_status[0] ? ord_status_parse(o->saga_status) : -1;
    if (s >= 0)
        return (ord_status)s;
    return o->status == API_ORDER_RESERVED   ? ORD_RESERVED
           : o->status == API_ORDER_REJECTED ? ORD_REJECTED
                                             : ORD_PENDING;
}

const char *api_order_current_status(const api_order *o)
{
    return current_status(o->saga_status, o->status);
}

static const char *held_status(const held_order *o)
{
    return current_status(o->saga_status, o->status);
}

/* A copy of the held order, as the bus's callers take it. */
static void held_copy(const held_order *o, api_order *out)
{
    memcpy(out, o, offsetof(api_order, nlines));
    out->nlines = o->nlines;
    if (o->nlines)
        memcpy(out->lines, o->lines, sizeof out->lines[0] * (size_t)o->nlines);
    out->nhistory = o->nhistory;
    if (o->nhistory)
        memcpy(out->history, o->history, sizeof out->history[0] * (size_t)o->nhistory);
}

static void held_free(held_order *o)
{
    if (o) {
        free(o->lines);
        free(o->history);
        free(o);
    }
}

/* Room for n lines (0: none); false when out of memory (the lines are then as they were). */
static bool held_lines(held_order *o, int n)
{
    if (n == o->nlines)
        return true;
    if (!n) {
        free(o->lines);
        o->lines = NULL;
    } else {
        api_line *l = realloc(o->lines, sizeof *l * (size_t)n);
        if (!l)
            return false;
        o->lines = l;
    }
    o->nlines = n;
    return true;
}

static void history_add(held_order *o, const char *status, const char *reason, int64_t at)
{
    if (o->nhistory > 0 && !strcmp(o->history[o->nhistory - 1].status, status))
        return;
    if (o->nhistory == o->hcap && o->hcap < API_HISTORY_MAX) {
        int cap = o->hcap ? o->hcap * 2 : 4; /* 4, 8, 16 (an adopted order: its count, twice that, ...) */
        if (cap > API_HISTORY_MAX)
            cap = API_HISTORY_MAX;
        api_history *h = realloc(o->history, sizeof *h * (size_t)cap);
        if (h) {
            o->history = h;
            o->hcap = cap;
        }
    }
    if (o->nhistory == o->hcap) { /* full (or out of memory): the oldest entry goes */
        if (!o->hcap)
            return;
        memmove(o->history, o->history + 1, sizeof o->history[0] * (size_t)(o->hcap - 1));
        o->nhistory--;
    }
    api_history *h = &o->history[o->nhistory++];
    snprintf(h->status, sizeof h->status, "%s", status);
    snprintf(h->reason, sizeof h->reason, "%s", reason ? reason : "");
    h->at = at;
}

static void lru_unlink(api_bus *b, held_order *o)
{
    if (o->lru_prev)
        o->lru_prev->lru_next = o->lru_next;
    else
        b->lru_head = o->lru_next;
    if (o->lru_next)
        o->lru_next->lru_prev = o->lru_prev;
    else
        b->lru_tail = o->lru_prev;
    o->lru_prev = o->lru_next = NULL;
}

/* Marks o (held in b->orders) changed now: the most recent end of the list. */
static void lru_touch(api_bus *b, held_order *o, bool linked)
{
    if (linked)
        lru_unlink(b, o);
    o->lru_prev = b->lru_tail;
    o->lru_next = NULL;
    if (b->lru_tail)
        b->lru_tail->lru_next = o;
    else
        b->lru_head = o;
    b->lru_tail = o;
    o->touched = fs_mono_ms();
}

static held_order *order_get_or_new_locked(api_bus *b, const char *id)
{
    held_order *o = fs_map_get(b->orders, id);
    bool linked = o != NULL;
    if (!o) {
        o = calloc(1, sizeof *o);
        if (!o || fs_map_put(b->orders, id, o) == (void *)-1) {
            free(o);
            return NULL;
        }
        snprintf(o->order_id, sizeof o->order_id, "%s", id);
        o->partition = -1;
        o->command_offset = -1;
    }
    lru_touch(b, o, linked);
    return o;
}

/* Whether an event of an order the view does not hold is worth holding: recent enough. */
static bool order_recent(const api_bus *b, const char *id, int64_t occurred_at)
{
    return fs_map_get(b->orders, id) || occurred_at >= fs_now_ms() - b->order_memory_ms;
}

/* Forgets orders unchanged for order_memory_ms, and beyond max_orders the least recently
 * changed, from the old end of the recency list: the work is the orders forgotten, not the
 * orders held (a scan of the whole map under the lock, once a second, stalled every request
 * as the view filled). An order someone waits on is kept, as if changed now. Caller holds
 * the lock. */
static void forget_locked(api_bus *b)
{
    int64_t before = fs_mono_ms() - b->order_memory_ms;
    size_t size = fs_map_size(b->orders), kept = 0;
    for (held_order *o = b->lru_head; o && kept < size && (o->touched < before || size > (size_t)b->max_orders);
         o = b->lru_head) {
        if (fs_map_get(b->waiters, o->order_id)) {
            lru_touch(b, o, true);
            kept++;
            continue;
        }
        lru_unlink(b, o);
        fs_map_del(b->orders, o->order_id);
        held_free(o);
        size--;
    }
}

static inv_state *view_of(api_bus *b, int32_t partition)
{
    if (partition < 0 || partition >= MAX_PARTITIONS)
        return NULL;
    if (!b->views[partition])
        b->views[partition] = inv_state_new_counters();
    if (partition >= b->nviews)
        b->nviews = partition + 1;
    return b->views[partition];
}

/* The view of the partition that holds the product (NULL: unknown). Caller holds the lock. */
static const inv_state *product_view_locked(const api_bus *b, const char *id, inv_product_view *out)
{
    for (int i = 0; i < b->nviews; i++)
        if (b->views[i] && inv_state_product(b->views[i], id, out))
            return b->views[i];
    return NULL;
}

static void waiter_unref_locked(api_bus *b, api_waiter *w)
{
    (void)b;
    if (--w->refs == 0) {
        pthread_cond_destroy(&w->cond);
        free(w);
    }
}

static void unlink_locked(api_bus *b, api_waiter *w)
{
    api_waiter *head = fs_map_get(b->waiters, w->key), *prev = NULL;
    for (api_waiter *x = head; x; prev = x, x = x->next)
        if (x == w) {
            if (prev)
                prev->next = x->next;
            else if (x->next)
                fs_map_put(b->waiters, w->key, x->next);
            else
                fs_map_del(b->waiters, w->key);
            break;
        }
    w->next = NULL;
}

/* Tells a waiter that r changed (caller holds the lock). */
static void signal_locked(api_waiter *w)
{
    pthread_cond_broadcast(&w->cond);
    if (w->notify)
        w->notify(w->notify_ctx);
}

/* Gives every waiter of key the event (caller holds the lock) and wakes it: at once, or,
 * with `later` and room in it, after the caller has let go of the lock (wake_later): a
 * request thread woken while the lock is still held would only sleep again on the lock. */
typedef struct wake_list {
    api_waiter *w[64];
    int n;
} wake_list;

static void wake_locked_to(api_bus *b, const char *key, const inv_event *ev, bool reply, wake_list *later)
{
    for (api_waiter *w = fs_map_get(b->waiters, key); w; w = w->next) {
        /* the first decision is the waiter's: a command has one (its reply and its committed
         * copy are the same), and nothing heard later may replace it */
        if (!w->r.decided) {
            w->r.via_reply = reply;
            if (w->t0_us > 0)
                fs_hist_observe_ms(b->h_seen, (fs_mono_us() - w->t0_us) / 1000.0);
            w->r.decided = true;
            w->r.ev = *ev;
        }
        if (later && later->n < (int)(sizeof later->w / sizeof later->w[0])) {
            w->refs++; /* kept until wake_later has signalled it */
            later->w[later->n++] = w;
        } else
            signal_locked(w);
    }
}

static void wake_locked(api_bus *b, const char *key, const inv_event *ev, bool reply)
{
    wake_locked_to(b, key, ev, reply, NULL);
}

/* Signals the waiters wake_locked_to kept, with the lock not held, then lets them go. */
static void wake_later(api_bus *b, wake_list *l)
{
    if (!l->n)
        return;
    for (int i = 0; i < l->n; i++)
        pthread_cond_broadcast(&l->w[i]->cond);
    pthread_mutex_lock(&b->lock);
    for (int i = 0; i < l->n; i++) {
        if (l->w[i]->notify) /* under the lock: a released waiter has none any more */
            l->w[i]->notify(l->w[i]->notify_ctx);
        waiter_unref_locked(b, l->w[i]);
    }
    pthread_mutex_unlock(&b->lock);
    l->n = 0;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    api_bus *b = opaque;
    api_waiter *w = m->_private;
    if (!w)
        return;
    pthread_mutex_lock(&b->lock);
    if (m->err) {
        w->r.failed = true;
        w->r.maybe_persisted = rd_kafka_message_status(m) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
        snprintf(w->r.delivery_error, sizeof w->r.delivery_error, "%s", rd_kafka_err2str(m->err));
    } else {
        if (w->t0_us > 0)
            fs_hist_observe_ms(b->h_durable, (fs_mono_us() - w->t0_us) / 1000.0);
        w->r.delivered = true;
        w->r.partition = m->partition;
        w->r.offset = m->offset;
        w->r.logged_at = fs_kafka_record_time(m);
        held_order *o = w->order_command ? NULL : fs_map_get(b->orders, w->key);
        if (o && o->status == API_ORDER_PENDING) {
            o->partition = m->partition;
            o->command_offset = m->offset;
        }
    }
    if (w->wants_delivery || m->err) /* a request waiting for its decision sleeps on */
        signal_locked(w);
    waiter_unref_locked(b, w);
    pthread_mutex_unlock(&b->lock);
}

/* An answer a failed producer never sent, kept for its replacement (keeper_renew). */
typedef struct unsent_answer {
    struct unsent_answer *next;
    rd_kafka_headers_t *headers;
    size_t key_len, len;
    unsigned char data[]; /* the key, then the value */
} unsent_answer;

/* Puts u on the list of kept answers (any thread). */
static void unsent_push(api_bus *b, unsent_answer *u)
{
    pthread_mutex_lock(&b->unsent_lock);
    u->next = b->unsent;
    b->unsent = u;
    pthread_mutex_unlock(&b->unsent_lock);
}

/* Keeps an answer for the producer that replaces a failed one (keeper_resend); takes
 * headers (NULL: none). False when out of memory (the answer is then lost). */
static bool unsent_keep(api_bus *b, const void *key, size_t key_len, const void *value, size_t len,
                        rd_kafka_headers_t *headers)
{
    unsent_answer *u = malloc(sizeof *u + key_len + len);
    if (!u) {
        if (headers)
            rd_kafka_headers_destroy(headers);
        return false;
    }
    u->headers = headers;
    u->key_len = key_len;
    u->len = len;
    if (key_len)
        memcpy(u->data, key, key_len);
    if (len)
        memcpy(u->data + key_len, value, len);
    unsent_push(b, u);
    return true;
}

static void answer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    api_bus *b = opaque;
    if (m->err && rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_NOT_PERSISTED &&
        rd_kafka_fatal_error(rk, NULL, 0)) {
        /* Failed fatally (its queue purged): the answer is kept, and the keeper has the
         * replacement record it, so that the audit loses no answer to the failure. */
        rd_kafka_headers_t *orig = NULL;
        if (unsent_keep(b, m->key, m->key_len, m->payload, m->len,
                        rd_kafka_message_headers(m, &orig) == 0 && orig ? rd_kafka_headers_copy(orig) : NULL))
            return;
    }
    if (m->err) {
        atomic_fetch_add(&b->answer_errors, 1);
        fs_log_warn("answer not recorded", json_pack("{s:s}", "error", rd_kafka_err2str(m->err)));
    }
}

static void *dr_main(void *arg)
{
    pthread_setname_np(pthread_self(), "api-delivery"); /* for per-thread CPU (perf/profile) */
    api_bus *b = arg;
    while (!b->stop && !atomic_load(&b->dr_taken)) {
        pthread_rwlock_rdlock(&b->plock); /* (a swap waits for this poll: 100 ms at most) */
        rd_kafka_poll(b->producer, 100);
        rd_kafka_poll(b->answers, 0);
        pthread_rwlock_unlock(&b->plock);
    }
    return NULL;
}

/* An idempotent producer (acks=all) with the given linger and delivery timeout. */
static rd_kafka_t *bus_producer_new(api_bus *b, const fs_common_config *cfg, const char *client_id,
                                    const char *linger_ms, const char *timeout_ms, fs_kafka_dr_cb *dr,
                                    fs_err *err)
{
    /* reconnect.backoff.max.ms: a broker that is away is tried again at least every second
     * (librdkafka's default backs off to 10 s), and queued commands' timeouts are noticed
     * then: at 10 s a buyer heard 503 up to 10 s after a 2 s timeout. */
    const char *const extra[] = {"linger.ms", linger_ms, "message.timeout.ms", timeout_ms,
                                 "reconnect.backoff.max.ms", "1000",
                                 "queue.buffering.max.messages", "1000000", NULL};
    rd_kafka_t *p = fs_kafka_new(cfg,
                                 &(fs_kafka_client){.role = FS_KAFKA_PRODUCER,
                                                    .client_id = client_id,
                                                    .dr = dr,
                                                    .opaque = b,
                                                    .stats = true, /* dr_main polls both */
                                                    .extra = extra},
                                 err);
    if (!p)
        return NULL;
    const struct rd_kafka_metadata *md = NULL; /* learn topics now, not on first produce */
    if (rd_kafka_metadata(p, 1, NULL, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
    return p;
}

/* Tells the listener when the order's current status is not `before` any more, or
 * (new_reason) when a snapshot kept the status and changed the reason: the closing snapshot of a
 * delivered order (RETURN_WINDOW_CLOSED). */
static void order_notify_locked(api_bus *b, const held_order *o, const char *before,
                                bool new_reason, int64_t at)
{
    if (!b->listener.order_changed || !b->caught_up || !o->member_id[0])
        return;
    const char *now = held_status(o);
    if (!strcmp(before, now) && !new_reason)
        return;
    const char *reason = o->saga_status[0]                 ? o->saga_reason
                         : o->status == API_ORDER_REJECTED ? inv_reason_name(o->reason)
                                                           : "";
    api_order copy;
    held_copy(o, &copy);
    b->listener.order_changed(b->listener.ctx, &copy, reason, at);
}

/* A single-item order's decision, from the committed stream or from a reply. */
static void order_decided_locked(api_bus *b, int32_t partition, const inv_event *ev)
{
    if (!order_recent(b, ev->order_id, ev->occurred_at))
        return;
    held_order *o = order_get_or_new_locked(b, ev->order_id);
    if (o) {
        char before[24];
        snprintf(before, sizeof before, "%s", o->version ? held_status(o) : "");
        snprintf(o->member_id, sizeof o->member_id, "%s", ev->member_id);
        snprintf(o->product_id, sizeof o->product_id, "%s", ev->product_id);
        o->quantity = ev->quantity;
        o->status = ev->type == INV_EV_RESERVED ? API_ORDER_RESERVED : API_ORDER_REJECTED;
        o->reason = ev->reason;
        o->decided_at = ev->occurred_at;
        if (!o->requested_at)
            o->requested_at = ev->occurred_at;
        if (o->nhistory == 0)
            history_add(o, "PENDING", "", o->requested_at);
        history_add(o, api_order_status_name(o->status),
                    ev->type == INV_EV_REJECTED ? inv_reason_name(ev->reason) : "",
                    ev->occurred_at);
        o->pay_by = ev->pay_by;
        o->unit_price = ev->unit_price;
        o->partition = partition;
        o->command_offset = ev->command_offset;
        o->version++;
        order_notify_locked(b, o, before, false, ev->occurred_at);
    }
}

/* One more decision, in the slot of its record's second (decisions of a multi-item
 * checkout count once per line: each line is decided on its own). */
static void count_decision_locked(api_bus *b, const rd_kafka_message_t *m)
{
    b->decisions_total++;
    rd_kafka_timestamp_type_t tst;
    int64_t ts = rd_kafka_message_timestamp(m, &tst);
    if (ts <= 0)
        return;
    int64_t sec = ts / 1000;
    int i = (int)(sec % DECISION_SLOTS);
    if (b->decision_slots[i].second != sec) {
        b->decision_slots[i].second = sec;
        b->decision_slots[i].count = 0;
    }
    b->decision_slots[i].count++;
}

void api_bus_decisions(api_bus *b, int window_s, uint64_t *total, uint64_t *recent)
{
    if (window_s > DECISION_SLOTS - 1)
        window_s = DECISION_SLOTS - 1;
    int64_t now = fs_now_ms() / 1000;
    uint64_t n = 0;
    pthread_mutex_lock(&b->lock);
    *total = b->decisions_total;
    for (int i = 0; i < DECISION_SLOTS; i++)
        if (b->decision_slots[i].second > now - window_s && b->decision_slots[i].second <= now)
            n += b->decision_slots[i].count;
    pthread_mutex_unlock(&b->lock);
    *recent = n;
}

static void apply_locked(api_bus *b, const rd_kafka_message_t *m, const inv_event *ev)
{
    if (m->partition >= 0 && m->partition < MAX_PARTITIONS && ev->command_offset >= 0 &&
        ev->command_offset <= b->skip_upto[m->partition])
        return; /* in the partition's snapshot already */
    inv_state *view = view_of(b, m->partition);
    if (view)
        inv_apply(view, ev); /* a refusal only means the view already had it */
    if (view && b->caught_up && b->listener.product_changed && ev->type != INV_EV_REJECTED &&
        ev->type != INV_EV_CMD_REJECTED) {
        inv_product_view v;
        if (inv_state_product(view, ev->product_id, &v))
            b->listener.product_changed(b->listener.ctx, &v, ev->occurred_at);
    }
    if ((ev->type == INV_EV_RESERVED || ev->type == INV_EV_REJECTED) && ev->item_count <= 1)
        order_decided_locked(b, m->partition, ev);
    if (ev->type == INV_EV_RESERVED || ev->type == INV_EV_REJECTED) {
        count_decision_locked(b, m);
        if (m->partition >= 0 && m->partition < MAX_PARTITIONS &&
            ev->command_offset > b->decided_offset[m->partition])
            b->decided_offset[m->partition] = ev->command_offset;
        if (ev->item_count <= 1)
            wake_locked(b, ev->order_id, ev, false);
    }
    char cause[INV_ID_MAX];
    if (fs_kafka_header_get(m, "causation-id", cause, sizeof cause) > 0)
        wake_locked(b, cause, ev, false);
}

/* orders.events: saga snapshots and refusals. */
static void apply_order_locked(api_bus *b, const rd_kafka_message_t *m, const fs_schema *sc,
                               avro_value_t *v)
{
    char id[INV_ID_MAX];
    int64_t occurred = 0;
    fs_err bad = {0};
    if (fs_av_get_strcpy(v, "order_id", id, sizeof id, &bad) ||
        fs_av_get_long(v, "occurred_at", &occurred, &bad))
        return; /* not an order event (the audit reports what cannot be read) */
    held_order *o = id[0] && order_recent(b, id, occurred) ? order_get_or_new_locked(b, id) : NULL;
    if (!o)
        return;
    char before[24];
    snprintf(before, sizeof before, "%s", o->version ? held_status(o) : "");
    bool new_reason = false;
    if (!strcmp(fs_schema_name(sc), "OrderCommandRejected")) {
        ord_rejection r;
        fs_err err = {0};
        if (ord_rejection_decode(v, &r, &err))
            return;
        fs_kafka_header_get(m, "causation-id", o->rejected_cause, sizeof o->rejected_cause);
        snprintf(o->rejected_code, sizeof o->rejected_code, "%s", r.code);
    } else if (!strcmp(fs_schema_name(sc), "OrderStatusChanged")) {
        ord_order snap;
        fs_err err = {0};
        if (ord_decode(v, &snap, &err))
            return;
        fs_kafka_header_get(m, "causation-id", o->causes[o->ncauses % 8], sizeof o->causes[0]);
        o->ncauses++;
        new_reason = ord_window_closed(&snap) && strcmp(o->saga_reason, snap.reason);
        snprintf(o->member_id, sizeof o->member_id, "%s", snap.member_id);
        snprintf(o->saga_status, sizeof o->saga_status, "%s", ord_status_name(snap.status));
        snprintf(o->saga_reason, sizeof o->saga_reason, "%s", snap.reason);
        o->amount = snap.amount;
        if (snap.pay_by)
            o->pay_by = snap.pay_by;
        if (!o->requested_at)
            o->requested_at = snap.occurred_at;
        /* out of memory, the lines stay as they were (the snapshot's other fields are in) */
        if (held_lines(o, snap.nlines < API_LINES_MAX ? snap.nlines : API_LINES_MAX))
            for (int i = 0; i < o->nlines; i++) {
                const ord_line *l = &snap.lines[i];
                snprintf(o->lines[i].product_id, sizeof o->lines[i].product_id, "%s", l->product_id);
                o->lines[i].quantity = l->quantity;
                o->lines[i].unit_price = l->unit_price;
                snprintf(o->lines[i].state, sizeof o->lines[i].state, "%s", line_state_name(l->state));
            }
        if (o->nlines && !o->product_id[0]) {
            snprintf(o->product_id, sizeof o->product_id, "%s", o->lines[0].product_id);
            o->quantity = o->lines[0].quantity;
        }
        history_add(o, o->saga_status, o->saga_reason, snap.occurred_at);
    } else
        return;
    o->version++;
    order_notify_locked(b, o, before, new_reason, occurred);
    /* the order's status waiters (api_bus_order_wait) read its version; a purchase's waiter
     * is only woken: its answer is the inventory's decision, never a saga snapshot (a saga
     * snapshot seen before the purchase's answer was written once answered a reserved
     * buyer 409 SOLD_OUT, recorded with no order id) */
    for (api_waiter *w = fs_map_get(b->waiters, id); w; w = w->next)
        signal_locked(w);
}

/* The decision stream reads these topics, every partition, from the beginning. */
#define NSTREAM 2 /* inventory.events, orders.events */

/* Where the stream starts: inventory.events from each partition's snapshot (loaded into the
 * views here) or the beginning, orders.events from the time the view remembers orders for.
 * Returns the list (the caller destroys it), or NULL with *err. */
static rd_kafka_topic_partition_list_t *stream_start(api_bus *b, int nparts, int *from_snapshot,
                                                     size_t *snap_bytes, fs_err *err)
{
    rd_kafka_t *probe = fs_kafka_probe_new(b->cfg, err);
    if (!probe)
        return NULL;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NSTREAM * nparts);
    inv_snapshot_loaded *snaps = calloc((size_t)nparts, sizeof *snaps);
    if (!snaps) {
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(probe);
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        return NULL;
    }
    for (int i = 0; i < nparts; i++) {
        snaps[i].partition = i;
        rd_kafka_topic_partition_list_add(l, FS_TOPIC_INVENTORY_EVENTS, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    fs_err serr = {0};
    if (inv_snapshot_read(b->cfg, snaps, nparts, 0, 30000, &serr))
        fs_log_warn("snapshots not read, replaying inventory.events", json_pack("{s:s}", "error", serr.msg));
    /* the views keep the products and their counters, not the snapshots' lines (made and
     * freed before the lock is taken: a snapshot can be large) */
    for (int i = 0; i < nparts; i++)
        if (snaps[i].state) {
            inv_state *full = snaps[i].state;
            snaps[i].state = inv_state_counters_of(full);
            inv_state_destroy(full);
            if (!snaps[i].state) /* replayed from the start instead */
                fs_log_warn("snapshot not used: out of memory", json_pack("{s:i}", "partition", i));
        }
    pthread_mutex_lock(&b->lock);
    for (int i = 0; i < nparts && i < MAX_PARTITIONS; i++)
        if (snaps[i].state) {
            inv_state_destroy(b->views[i]);
            b->views[i] = snaps[i].state;
            if (i >= b->nviews)
                b->nviews = i + 1;
            b->skip_upto[i] = snaps[i].last_command_offset;
            b->decided_offset[i] = snaps[i].last_command_offset; /* answered up to there */
            l->elems[i].offset = snaps[i].changelog_offset;
            *snap_bytes += snaps[i].bytes;
            (*from_snapshot)++;
        }
    pthread_mutex_unlock(&b->lock);
    for (int i = MAX_PARTITIONS; i < nparts; i++) /* (beyond what the views can hold) */
        inv_state_destroy(snaps[i].state);
    free(snaps);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(tl, FS_TOPIC_ORDERS_EVENTS, i)->offset =
            fs_now_ms() - b->order_memory_ms;
    bool timed = rd_kafka_offsets_for_times(probe, tl, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < nparts; i++) {
        const rd_kafka_topic_partition_t *t = &tl->elems[i];
        /* -1: nothing that recent, start at the end; unknown: from the beginning */
        rd_kafka_topic_partition_list_add(l, FS_TOPIC_ORDERS_EVENTS, t->partition)->offset =
            !timed || t->err ? RD_KAFKA_OFFSET_BEGINNING
            : t->offset < 0  ? RD_KAFKA_OFFSET_END
                             : t->offset;
    }
    rd_kafka_topic_partition_list_destroy(tl);
    rd_kafka_destroy(probe);
    return l;
}

static void stream_apply(api_bus *b, const rd_kafka_message_t *m, bool live)
{
    if (m->rkt && !strcmp(rd_kafka_topic_name(m->rkt), FS_TOPIC_ORDERS_EVENTS)) {
        const fs_schema *sc;
        avro_value_t v;
        fs_err derr = {0};
        if (fs_codec_decode(b->codec, m->payload, m->len, &sc, &v, &derr) == 0) {
            pthread_mutex_lock(&b->lock);
            apply_order_locked(b, m, sc, &v);
            pthread_mutex_unlock(&b->lock);
            avro_value_decref(&v);
        }
        return;
    }
    inv_event ev;
    fs_err derr = {0};
    if (inv_event_decode_bytes(b->codec, m->payload, m->len, &ev, &derr))
        return;
    if (live && (ev.type == INV_EV_RESERVED || ev.type == INV_EV_REJECTED)) {
        rd_kafka_timestamp_type_t tst;
        int64_t ts = rd_kafka_message_timestamp(m, &tst);
        if (ts > 0)
            fs_hist_observe_ms(b->h_visible, (double)(fs_now_ms() - ts));
    }
    pthread_mutex_lock(&b->lock);
    apply_locked(b, m, &ev);
    pthread_mutex_unlock(&b->lock);
}

/* The decision stream: follows inventory.events and orders.events, every partition. */
static void *stream_main(void *arg)
{
    pthread_setname_np(pthread_self(), "api-stream"); /* for per-thread CPU (perf/profile) */
    api_bus *b = arg;
    fs_err err = {0};
    fs_log_set_cid("decision-stream");
    fs_follower *f = NULL;
    int64_t t0 = fs_mono_ms();
    int from_snapshot = 0;
    size_t snap_bytes = 0;
    while (!b->stop && !f) {
        rd_kafka_t *admin = fs_kafka_new(
            b->cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-api-meta"}, &err);
        int nparts = admin ? fs_kafka_partition_count(admin, FS_TOPIC_INVENTORY_EVENTS, 5000, &err) : -1;
        int other = admin && nparts > 0 ? fs_kafka_partition_count(admin, FS_TOPIC_ORDERS_EVENTS, 5000, &err) : -1;
        if (admin)
            rd_kafka_destroy(admin);
        if (nparts > 0 && other != nparts)
            fs_err_set(&err, FS_ERR_RETRIABLE, 0, "orders.events and inventory.events differ in partitions");
        else if (nparts > 0) {
            from_snapshot = 0;
            snap_bytes = 0;
            rd_kafka_topic_partition_list_t *l = stream_start(b, nparts, &from_snapshot, &snap_bytes, &err);
            if (l) {
                f = fs_follower_new(b->cfg, "flashsale-api-stream", l, NULL, 30000, &err);
                rd_kafka_topic_partition_list_destroy(l);
            }
        }
        if (!f) {
            fs_log_warn("decision stream not started, retrying", json_pack("{s:s}", "error", err.msg));
            struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
        }
    }
    if (!f)
        return NULL;
    uint64_t events = 0;
    int64_t last_forget = fs_mono_ms();
    bool caught_up = false;
    while (!b->stop) {
        if (!caught_up && fs_follower_caught_up(f)) {
            caught_up = true;
            pthread_mutex_lock(&b->lock);
            b->caught_up = true;
            size_t held = fs_map_size(b->orders);
            pthread_mutex_unlock(&b->lock);
            fs_log_info("decision stream caught up",
                        json_pack("{s:I,s:I,s:i,s:I,s:I}", "events", (json_int_t)events, "ms",
                                  (json_int_t)(fs_mono_ms() - t0), "from_snapshot", from_snapshot,
                                  "snapshot_bytes", (json_int_t)snap_bytes, "orders", (json_int_t)held));
        }
        rd_kafka_message_t *m = fs_follower_poll(f, 100);
        if (fs_mono_ms() - last_forget >= 1000) {
            last_forget = fs_mono_ms();
            pthread_mutex_lock(&b->lock);
            forget_locked(b);
            pthread_mutex_unlock(&b->lock);
        }
        if (!m)
            continue;
        stream_apply(b, m, caught_up);
        events++;
        rd_kafka_message_destroy(m);
    }
    fs_follower_destroy(f);
    return NULL;
}

/* Decision replies: a datagram is used only when a request with its token is still
 * waiting for that order; everything else is ignored (the committed stream brings it). The
 * product view is left to the stream, which applies events in log order. They are taken in
 * batches: every datagram already queued (up to REPLY_BATCH) is read and decoded without the
 * lock, applied under one hold of it, and the requests are woken after it. */
#define REPLY_BATCH 32
typedef struct reply_item {
    char token[FS_REPLY_TOKEN_LEN + 1];
    int32_t partition;
    inv_event ev;
    unsigned char buf[FS_REPLY_MAX]; /* one datagram as received */
} reply_item;

/* Reads and applies one batch of the datagrams queued (never waits); how many were read.
 * One recvmmsg takes every datagram queued, up to REPLY_BATCH: at a low rate a wake finds
 * one, and a loop of recv would need a second call only to hear EAGAIN. */
static int reply_drain(api_bus *b, reply_item *items, wake_list *later)
{
    struct iovec iov[REPLY_BATCH];
    struct mmsghdr msgs[REPLY_BATCH];
    for (int i = 0; i < REPLY_BATCH; i++) {
        iov[i] = (struct iovec){.iov_base = items[i].buf, .iov_len = sizeof items[i].buf};
        msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    int got = recvmmsg(b->reply_fd, msgs, REPLY_BATCH, MSG_DONTWAIT, NULL);
    if (got <= 0)
        return 0;
    int n = 0;
    for (int i = 0; i < got; i++) {
        reply_item *it = &items[n]; /* n <= i: a datagram already read, or this one */
        const void *evb;
        size_t evlen;
        fs_err derr = {0};
        if ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ||
            fs_reply_parse(items[i].buf, msgs[i].msg_len, it->token, &it->partition, &evb, &evlen) ||
            inv_event_decode_bytes(b->codec, evb, evlen, &it->ev, &derr) ||
            (it->ev.type != INV_EV_RESERVED && it->ev.type != INV_EV_REJECTED) || it->ev.item_count > 1) {
            atomic_fetch_add(&b->replies_ignored, 1);
            continue;
        }
        n++;
    }
    if (!n)
        return got;
    unsigned long used = 0;
    pthread_mutex_lock(&b->lock);
    for (int i = 0; i < n; i++) {
        const inv_event *ev = &items[i].ev;
        bool wanted = false;
        for (api_waiter *w = fs_map_get(b->waiters, ev->order_id); w; w = w->next)
            if (w->token[0] && sodium_memcmp(w->token, items[i].token, FS_REPLY_TOKEN_LEN) == 0)
                wanted = true;
        if (!wanted)
            continue;
        used++;
        held_order *o = fs_map_get(b->orders, ev->order_id);
        if (!o || o->status == API_ORDER_PENDING)
            order_decided_locked(b, items[i].partition, ev);
        wake_locked_to(b, ev->order_id, ev, true, later);
    }
    pthread_mutex_unlock(&b->lock);
    wake_later(b, later);
    atomic_fetch_add(&b->replies_used, used);
    atomic_fetch_add(&b->replies_ignored, (unsigned long)n - used);
    return got;
}

static void *reply_main(void *arg)
{
    pthread_setname_np(pthread_self(), "api-replies"); /* for per-thread CPU (perf/profile) */
    api_bus *b = arg;
    fs_log_set_cid("decision-replies");
    reply_item *items = malloc(REPLY_BATCH * sizeof *items);
    wake_list *later = malloc(sizeof *later);
    if (!items || !later) {
        fs_log_error("decision replies: out of memory", NULL);
        free(items);
        free(later);
        return NULL;
    }
    later->n = 0;
    while (!b->stop && !atomic_load(&b->replies_taken)) {
        struct pollfd pfd = {.fd = b->reply_fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0 || atomic_load(&b->replies_taken))
            continue;
        reply_drain(b, items, later);
    }
    free(items);
    free(later);
    return NULL;
}

int api_bus_replies_take_over(api_bus *b)
{
    if (b->reply_fd < 0)
        return -1;
    if (!b->ext_items && !(b->ext_items = malloc(REPLY_BATCH * sizeof *b->ext_items)))
        return -1;
    if (!b->ext_later && !(b->ext_later = calloc(1, sizeof *b->ext_later)))
        return -1;
    atomic_store(&b->replies_taken, 1);
    return b->reply_fd;
}

void api_bus_replies_drain(api_bus *b)
{
    while (reply_drain(b, b->ext_items, b->ext_later) == REPLY_BATCH)
        ;
}

void api_bus_delivery_take_over(api_bus *b, int fd)
{
    static const uint64_t one = 1; /* an eventfd takes 8 bytes */
    pthread_rwlock_wrlock(&b->plock); /* (the keeper moves dr_q to a replacement) */
    b->dr_fd = fd;
    b->dr_q[0] = rd_kafka_queue_get_main(b->producer);
    b->dr_q[1] = rd_kafka_queue_get_main(b->answers);
    rd_kafka_queue_io_event_enable(b->dr_q[0], fd, &one, sizeof one);
    rd_kafka_queue_io_event_enable(b->dr_q[1], fd, &one, sizeof one);
    pthread_rwlock_unlock(&b->plock);
    atomic_store(&b->dr_taken, 1); /* dr_main leaves after its current poll */
    /* librdkafka writes the fd only when a queue goes from empty to not empty: a report
     * queued after dr_main's last poll and before the enables would write nothing, and the
     * queue would never be empty again. One write now makes the caller's first serve drain
     * whatever is there. */
    ssize_t w = write(fd, &one, sizeof one);
    (void)w;
}

void api_bus_delivery_serve(api_bus *b)
{
    uint64_t v;
    ssize_t r = read(b->dr_fd, &v, sizeof v); /* first: a report queued after the polls writes again */
    (void)r;
    pthread_rwlock_rdlock(&b->plock);
    rd_kafka_poll(b->producer, 0);
    rd_kafka_poll(b->answers, 0);
    pthread_rwlock_unlock(&b->plock);
}

void api_bus_record_answer(api_bus *b, const char *order_id, const char *member_id,
                           const char *product_id, int32_t quantity, const char *status,
                           const char *reason, int64_t pay_by, const char *source, int http_status)
{
    ord_answer ans = {.quantity = quantity, .pay_by = pay_by, .http_status = http_status,
                      .answered_at = fs_now_ms()};
    snprintf(ans.order_id, sizeof ans.order_id, "%s", order_id);
    snprintf(ans.member_id, sizeof ans.member_id, "%s", member_id);
    snprintf(ans.product_id, sizeof ans.product_id, "%s", product_id);
    snprintf(ans.status, sizeof ans.status, "%s", status);
    snprintf(ans.reason, sizeof ans.reason, "%s", reason ? reason : "");
    snprintf(ans.source, sizeof ans.source, "%s", source);
    fs_err err = {0};
    void *buf = NULL;
    size_t len = 0;
    if (ord_answer_encode(b->codec, &ans, &buf, &len, &err)) {
        atomic_fetch_add(&b->answer_errors, 1);
        return;
    }
    fs_event_meta meta = {.event_type = "OrderAnswered", .correlation_id = order_id,
                          .occurred_at = fs_now_ms()};
    rd_kafka_headers_t *h = fs_kafka_headers_new(&meta);
    pthread_rwlock_rdlock(&b->plock);
    if (b->answers_fatal_at > 0 && atomic_fetch_add(&b->answers_recorded, 1) + 1 == b->answers_fatal_at)
        /* Fault injection for the tests: this answer finds its producer failed fatally (it is
         * kept for the replacement, below) */
        rd_kafka_test_fatal_error(b->answers, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                  "FLASHSALE_TEST_ANSWERS_FATAL_AT");
    rd_kafka_resp_err_t e = rd_kafka_producev(
        b->answers, RD_KAFKA_V_TOPIC(FS_TOPIC_ORDERS_ANSWERS), RD_KAFKA_V_KEY(order_id, strlen(order_id)),
        RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
        RD_KAFKA_V_END);
    pthread_rwlock_unlock(&b->plock);
    if (e == RD_KAFKA_RESP_ERR__FATAL) { /* refused by a failed producer: kept for its replacement */
        bool kept = unsent_keep(b, order_id, strlen(order_id), buf, len, h);
        free(buf);
        if (kept)
            return;
        atomic_fetch_add(&b->answer_errors, 1);
        fs_log_warn("answer not recorded", json_pack("{s:s,s:s}", "order_id", order_id, "error", "out of memory"));
    } else if (e) {
        rd_kafka_headers_destroy(h);
        free(buf);
        atomic_fetch_add(&b->answer_errors, 1);
        fs_log_warn("answer not recorded", json_pack("{s:s,s:s}", "order_id", order_id, "error",
                                                     rd_kafka_err2str(e)));
    }
}

void api_bus_reply_stats(api_bus *b, unsigned long *used, unsigned long *ignored)
{
    *used = atomic_load(&b->replies_used);
    *ignored = atomic_load(&b->replies_ignored);
}

/* Producer i of the bus (0: commands, 1: answers), made anew. */
static rd_kafka_t *slot_new(api_bus *b, int i, fs_err *err)
{
    return i ? bus_producer_new(b, b->cfg, "flashsale-api-answers", b->answers_linger, "10000", answer_dr_cb, err)
             : bus_producer_new(b, b->cfg, "flashsale-api", "0", b->cmd_timeout, dr_cb, err);
}

/* Replaces the producers that have failed fatally (keeper thread only: the one writer of
 * the pointers). The new ones are made first, with nothing held; the swap, under plock's write
 * side, moves the order front's delivery-report wake-ups to them; then the old ones are
 * retired: their remaining reports are served (a command in flight gets its true outcome, a
 * purged one fails, and its request is answered either way) and they are destroyed. Both are
 * swapped before either is retired: a retirement may take the commands' timeout. */
static void keeper_renew(api_bus *b, bool told[2])
{
    static const uint64_t one = 1;
    static const char *const names[2] = {"commands", "answers"};
    rd_kafka_t *fresh[2] = {NULL, NULL}, *old[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        char why[512];
        rd_kafka_resp_err_t e = rd_kafka_fatal_error(i ? b->answers : b->producer, why, sizeof why);
        if (!e)
            continue;
        if (!told[i]) /* once per failure, not on every retry of the replacement */
            fs_log_error("producer failed fatally; replacing it",
                         json_pack("{s:s,s:s,s:s}", "producer", names[i], "code", rd_kafka_err2name(e), "error", why));
        told[i] = true;
        fs_err err = {0};
        if (!(fresh[i] = slot_new(b, i, &err)))
            fs_log_warn("producer not replaced yet, retrying",
                        json_pack("{s:s,s:s}", "producer", names[i], "error", err.msg));
    }
    if (!fresh[0] && !fresh[1])
        return;
    pthread_rwlock_wrlock(&b->plock);
    int fd = -1;
    for (int i = 0; i < 2; i++) {
        if (!fresh[i])
            continue;
        rd_kafka_t **slot = i ? &b->answers : &b->producer;
        old[i] = *slot;
        *slot = fresh[i];
        if (b->dr_q[i]) {
            rd_kafka_queue_io_event_enable(b->dr_q[i], -1, NULL, 0);
            rd_kafka_queue_destroy(b->dr_q[i]);
            b->dr_q[i] = rd_kafka_queue_get_main(fresh[i]);
            rd_kafka_queue_io_event_enable(b->dr_q[i], b->dr_fd, &one, sizeof one);
            fd = b->dr_fd;
        }
    }
    pthread_rwlock_unlock(&b->plock);
    if (fd >= 0) {
        /* the fd is written only when a queue goes from empty to not empty: an error op the
         * new producer queued while it was made would keep every report after it from waking
         * the front. One write makes the front serve the queue now. */
        ssize_t w = write(fd, &one, sizeof one);
        (void)w;
    }
    for (int i = 0; i < 2; i++) {
        if (!old[i])
            continue;
        fs_kafka_retire(old[i], (int)b->cmd_timeout_ms + 1000);
        fs_metrics_producer_renewed();
        told[i] = false;
        fs_log_info("producer replaced", json_pack("{s:s}", "producer", names[i]));
    }
}

/* Takes the answers kept by answer_dr_cb (oldest first). */
static unsent_answer *unsent_take(api_bus *b)
{
    pthread_mutex_lock(&b->unsent_lock);
    unsent_answer *l = b->unsent, *r = NULL;
    b->unsent = NULL;
    pthread_mutex_unlock(&b->unsent_lock);
    while (l) { /* kept newest first */
        unsent_answer *next = l->next;
        l->next = r;
        r = l;
        l = next;
    }
    return r;
}

/* Frees a list of kept answers; how many there were. */
static unsigned long unsent_free(unsent_answer *l)
{
    unsigned long n = 0;
    while (l) {
        unsent_answer *next = l->next;
        if (l->headers)
            rd_kafka_headers_destroy(l->headers);
        free(l);
        l = next;
        n++;
    }
    return n;
}

/* Records the answers a failed producer never sent, by its working replacement (keeper
 * thread: b->answers is read without the lock by its one writer). */
static void keeper_resend(api_bus *b)
{
    if (rd_kafka_fatal_error(b->answers, NULL, 0))
        return; /* not replaced yet: they wait */
    unsent_answer *l = unsent_take(b);
    if (!l)
        return;
    unsigned long sent = 0, lost = 0;
    while (l) {
        unsent_answer *u = l;
        l = l->next;
        rd_kafka_resp_err_t e = rd_kafka_producev(
            b->answers, RD_KAFKA_V_TOPIC(FS_TOPIC_ORDERS_ANSWERS), RD_KAFKA_V_KEY(u->data, u->key_len),
            RD_KAFKA_V_VALUE(u->data + u->key_len, u->len), RD_KAFKA_V_HEADERS(u->headers),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__FATAL) { /* the replacement failed too: kept for the next */
            unsent_push(b, u);
            continue;
        }
        if (e) {
            lost++;
            atomic_fetch_add(&b->answer_errors, 1);
        } else {
            u->headers = NULL; /* the producer's now */
            sent++;
        }
        u->next = NULL;
        unsent_free(u);
    }
    if (sent || lost)
        fs_log_info("answers a failed producer held, recorded by its replacement",
                    json_pack("{s:I,s:I}", "answers", (json_int_t)sent, "not_recorded", (json_int_t)lost));
}

static void *keeper_main(void *arg)
{
    pthread_setname_np(pthread_self(), "api-producers"); /* for per-thread CPU (perf/profile) */
    api_bus *b = arg;
    fs_log_set_cid("producers");
    bool told[2] = {false, false};
    while (!atomic_load(&b->keeper_stop)) {
        keeper_renew(b, told);
        keeper_resend(b);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

bool api_bus_producers_ok(api_bus *b, char *why, size_t n)
{
    char e[512] = "";
    pthread_rwlock_rdlock(&b->plock);
    rd_kafka_resp_err_t c = rd_kafka_fatal_error(b->producer, e, sizeof e);
    rd_kafka_resp_err_t a = c ? c : rd_kafka_fatal_error(b->answers, e, sizeof e);
    pthread_rwlock_unlock(&b->plock);
    if (c || a)
        snprintf(why, n, "%s producer failed fatally (being replaced): %s", c ? "the commands'" : "the answers'", e);
    return !c && !a;
}

api_bus *api_bus_start(const fs_common_config *cfg, const fs_codec *codec, fs_err *err)
{
    api_bus *b = calloc(1, sizeof *b);
    if (!b) {
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        return NULL;
    }
    bool keeper = false; /* its thread started */
    b->reply_fd = -1; /* (the failure path reads them) */
    b->dr_fd = -1;
    b->cfg = cfg;
    b->codec = codec;
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->unsent_lock, NULL);
    {
        pthread_rwlockattr_t ra;
        pthread_rwlockattr_init(&ra);
        pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&b->plock, &ra);
        pthread_rwlockattr_destroy(&ra);
    }
    for (int i = 0; i < MAX_PARTITIONS; i++)
        b->decided_offset[i] = -1;
    b->h_durable = fs_hist_register("flashsale_order_stage_ms", "stage=\"durable\"",
                                    "POST /api/orders: request received to the stage named.");
    b->h_seen = fs_hist_register("flashsale_order_stage_ms", "stage=\"decision_seen\"", "");
    b->h_visible = fs_hist_register("flashsale_decision_committed_visible_ms", "",
                                    "A decision's record timestamp (the processor's produce) to the API reading it committed.");
    if (fs_env_int("FLASHSALE_API_ORDER_MEMORY_MS", 600000, 1000, 7L * 24 * 3600 * 1000,
                   &b->order_memory_ms, err) ||
        fs_env_int("FLASHSALE_API_MAX_ORDERS", 50000, 100, 100000000, &b->max_orders, err) ||
        fs_env_int("FLASHSALE_TEST_LATE_ANSWER_MS", 0, 0, 60000, &b->late_answer_ms, err) ||
        fs_env_int("FLASHSALE_TEST_COMMAND_COPY_MS", 0, 0, 60000, &b->command_copy_ms, err) ||
        fs_env_int("FLASHSALE_TEST_COMMAND_DELAY_MS", 0, 0, 60000, &b->command_delay_ms, err) ||
        fs_env_int("FLASHSALE_TEST_PRODUCER_FATAL_AT", 0, 0, 1000000000, &b->fatal_at, err) ||
        fs_env_int("FLASHSALE_TEST_ANSWERS_FATAL_AT", 0, 0, 1000000000, &b->answers_fatal_at, err)) {
        pthread_mutex_destroy(&b->lock);
        pthread_rwlock_destroy(&b->plock);
        pthread_mutex_destroy(&b->unsent_lock);
        free(b);
        return NULL;
    }
    for (int i = 0; i < MAX_PARTITIONS; i++)
        b->skip_upto[i] = -1;
    b->orders = fs_map_new(4096);
    b->waiters = fs_map_new(1024);
    /* Commands leave at once (linger 0: the buyer waits on them); answers are only recorded
     * for the audit, so they wait up to 100 ms (FLASHSALE_ANSWERS_LINGER_MS) to share produce
     * requests with others.
     * librdkafka sends one produce request per partition, so the answers (keyed by order,
     * over every partition) cost up to partitions x 1000 / linger requests a second: with 20 ms
     * that was 108 a second at 250 orders/s and 161 at 1,000 (six partitions), each costing
     * the broker as much as a command's. */
    /* A command that Kafka has not taken within FLASHSALE_COMMAND_TIMEOUT_MS fails, so that a
     * buyer hears 503 within about the decision wait while Kafka is away, not after 10 s or
     * more; see docs/architecture.md, "Honest answers while Kafka is away". */
    {
        long cmd_timeout = 2000, answers_linger = 100;
        if (fs_env_int("FLASHSALE_COMMAND_TIMEOUT_MS", 2000, 500, 300000, &cmd_timeout, err) ||
            fs_env_int("FLASHSALE_CLOCK_SKEW_MS", 100, 0, 10000, &b->clock_skew_ms, err) ||
            fs_env_int("FLASHSALE_ANSWERS_LINGER_MS", 100, 0, 5000, &answers_linger, err))
            goto fail;
        snprintf(b->answers_linger, sizeof b->answers_linger, "%ld", answers_linger);
        b->cmd_timeout_ms = cmd_timeout;
        snprintf(b->cmd_timeout, sizeof b->cmd_timeout, "%ld", cmd_timeout);
        b->producer = slot_new(b, 0, err);
    }
    if (!b->producer)
        goto fail;
    b->answers = slot_new(b, 1, err);
    if (!b->answers)
        goto fail;
    {
        const char *raddr = getenv("FLASHSALE_REPLY_ADDR");
        fs_err rerr = {0};
        b->reply_fd = fs_reply_listen(raddr && *raddr ? raddr : "127.0.0.1", b->reply_to,
                                      sizeof b->reply_to, &rerr);
        if (b->reply_fd < 0) /* a fast path only: answers then come from the committed stream */
            fs_log_warn("decision replies off", json_pack("{s:s}", "error", rerr.msg));
        else if (pthread_create(&b->reply_thread, NULL, reply_main, b)) {
            close(b->reply_fd);
            b->reply_fd = -1;
        } else
            fs_log_info("decision replies", json_pack("{s:s}", "listen", b->reply_to));
    }
    if (!b->orders || !b->waiters || !(keeper = !pthread_create(&b->keeper_thread, NULL, keeper_main, b)) ||
        pthread_create(&b->dr_thread, NULL, dr_main, b)) {
        fs_err_set(err, FS_ERR_FATAL, 0, "bus start failed");
        goto fail;
    }
    if (pthread_create(&b->stream_thread, NULL, stream_main, b)) {
        b->stop = 1;
        pthread_join(b->dr_thread, NULL);
        fs_err_set(err, FS_ERR_FATAL, 0, "bus start failed");
        goto fail;
    }
    return b;
fail:
    if (keeper) {
        atomic_store(&b->keeper_stop, 1);
        pthread_join(b->keeper_thread, NULL);
    }
    if (b->reply_fd >= 0) { /* its thread reads b */
        b->stop = 1;
        pthread_join(b->reply_thread, NULL);
        close(b->reply_fd);
    }
    if (b->producer)
        rd_kafka_destroy(b->producer);
    if (b->answers)
        rd_kafka_destroy(b->answers);
    fs_map_destroy(b->orders);
    fs_map_destroy(b->waiters);
    pthread_rwlock_destroy(&b->plock);
    pthread_mutex_destroy(&b->unsent_lock);
    pthread_mutex_destroy(&b->lock);
    free(b);
    return NULL;
}

static void free_order(void *ctx, const char *key, void *value)
{
    (void)ctx;
    (void)key;
    held_free(value);
}

void api_bus_stop(api_bus *b)
{
    if (!b)
        return;
    atomic_store(&b->keeper_stop, 1); /* first: the producers stay as they are from here */
    pthread_join(b->keeper_thread, NULL);
    keeper_resend(b);
    rd_kafka_flush(b->producer, 5000);
    rd_kafka_flush(b->answers, 5000);
    b->stop = 1;
    pthread_join(b->stream_thread, NULL);
    pthread_join(b->dr_thread, NULL);
    if (b->reply_fd >= 0) {
        pthread_join(b->reply_thread, NULL);
        close(b->reply_fd);
    }
    free(b->ext_items);
    free(b->ext_later);
    for (int i = 0; i < 2; i++)
        if (b->dr_q[i]) {
            rd_kafka_queue_io_event_enable(b->dr_q[i], -1, NULL, 0);
            rd_kafka_queue_destroy(b->dr_q[i]);
        }
    if (b->dr_fd >= 0)
        close(b->dr_fd);
    rd_kafka_destroy(b->producer);
    rd_kafka_destroy(b->answers);
    for (int i = 0; i < MAX_PARTITIONS; i++)
        inv_state_destroy(b->views[i]);
    fs_map_foreach(b->orders, free_order, NULL);
    fs_map_destroy(b->orders);
    fs_map_destroy(b->waiters); /* no request is running any more */
    pthread_mutex_destroy(&b->lock);
    pthread_rwlock_destroy(&b->plock);
    unsigned long unsent = unsent_free(unsent_take(b)); /* (kept in the last flush: no producer left) */
    if (unsent)
        fs_log_warn("answers not recorded at stop: their producer had failed", json_pack("{s:I}", "answers", (json_int_t)unsent));
    pthread_mutex_destroy(&b->unsent_lock);
    free(b);
}

int64_t api_bus_accept_by(const api_bus *b, int64_t requested_at)
{
    return requested_at + b->cmd_timeout_ms;
}

void api_bus_refuse_after(const api_bus *b, int64_t accept_by)
{
    for (int64_t now = fs_now_ms(); now <= accept_by + b->clock_skew_ms; now = fs_now_ms()) {
        int64_t ms = accept_by + b->clock_skew_ms - now + 1;
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

bool api_bus_caught_up(api_bus *b)
{
    pthread_mutex_lock(&b->lock);
    bool r = b->caught_up;
    pthread_mutex_unlock(&b->lock);
    return r;
}

bool api_bus_product(api_bus *b, const char *id, inv_product_view *out)
{
    pthread_mutex_lock(&b->lock);
    bool r = product_view_locked(b, id, out) != NULL;
    pthread_mutex_unlock(&b->lock);
    return r;
}

bool api_bus_order(api_bus *b, const char *order_id, api_order *out)
{
    pthread_mutex_lock(&b->lock);
    held_order *o = fs_map_get(b->orders, order_id);
    if (o)
        held_copy(o, out);
    pthread_mutex_unlock(&b->lock);
    return o != NULL;
}

int64_t api_bus_decided_offset(api_bus *b, int32_t partition)
{
    if (partition < 0 || partition >= MAX_PARTITIONS)
        return -1;
    pthread_mutex_lock(&b->lock);
    int64_t r = b->decided_offset[partition];
    pthread_mutex_unlock(&b->lock);
    return r;
}

api_waiter *api_bus_waiter_new(api_bus *b, const char *key)
{
    api_waiter *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    snprintf(w->key, sizeof w->key, "%s", key);
    w->t0_us = fs_mono_us();
    unsigned char rnd[FS_REPLY_TOKEN_LEN / 2];
    if (fs_random_bytes(rnd, sizeof rnd)) /* one getrandom(2) per ~6 orders, not one each */
        randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(w->token, sizeof w->token, rnd, sizeof rnd);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    w->refs = 1;
    pthread_mutex_lock(&b->lock);
    w->next = fs_map_get(b->waiters, key);
    if (fs_map_put(b->waiters, key, w) == (void *)-1) {
        pthread_mutex_unlock(&b->lock);
        pthread_cond_destroy(&w->cond);
        free(w);
        return NULL;
    }
    /* Already decided (a retried idempotent request)? */
    held_order *o = fs_map_get(b->orders, key);
    if (o && o->status != API_ORDER_PENDING) {
        w->r.decided = true;
        memset(&w->r.ev, 0, sizeof w->r.ev);
        w->r.ev.type = o->status == API_ORDER_RESERVED ? INV_EV_RESERVED : INV_EV_REJECTED;
        snprintf(w->r.ev.order_id, sizeof w->r.ev.order_id, "%s", o->order_id);
        snprintf(w->r.ev.product_id, sizeof w->r.ev.product_id, "%s", o->product_id);
        snprintf(w->r.ev.member_id, sizeof w->r.ev.member_id, "%s", o->member_id);
        w->r.ev.quantity = o->quantity;
        w->r.ev.reason = o->reason;
        w->r.ev.pay_by = o->pay_by;
        w->r.ev.unit_price = o->unit_price;
        w->r.ev.occurred_at = o->decided_at;
        w->r.delivered = true;
        w->r.partition = o->partition;
        w->r.offset = o->command_offset;
    }
    pthread_mutex_unlock(&b->lock);
    return w;
}

void api_bus_order_adopt(api_bus *b, const api_order *src)
{
    pthread_mutex_lock(&b->lock);
    if (!fs_map_get(b->orders, src->order_id)) {
        held_order *o = calloc(1, sizeof *o);
        int nh = src->nhistory < API_HISTORY_MAX ? src->nhistory : API_HISTORY_MAX;
        int nl = src->nlines < API_LINES_MAX ? src->nlines : API_LINES_MAX;
        if (o && nh > 0 && !(o->history = malloc(sizeof *o->history * (size_t)nh))) {
            free(o);
            o = NULL;
        }
        if (o && !held_lines(o, nl)) {
            held_free(o);
            o = NULL;
        }
        if (o) {
            memcpy(o, src, offsetof(api_order, nlines));
            if (nl)
                memcpy(o->lines, src->lines, sizeof *o->lines * (size_t)nl);
            if (nh)
                memcpy(o->history, src->history, sizeof *o->history * (size_t)nh);
            o->nhistory = o->hcap = nh;
            o->version = 1;
            if (ord_status_parse(o->saga_status) == ORD_REJECTED) {
                o->status = API_ORDER_REJECTED;
                for (int r = 0; r < INV_R_COUNT; r++)
                    if (!strcmp(o->saga_reason, inv_reason_name((inv_reason)r)))
                        o->reason = (inv_reason)r;
            } else
                o->status = API_ORDER_RESERVED;
            if (fs_map_put(b->orders, o->order_id, o) == (void *)-1)
                held_free(o);
            else
                lru_touch(b, o, false);
        }
    }
    pthread_mutex_unlock(&b->lock);
}

void api_bus_order_pending(api_bus *b, const api_order *src)
{
    pthread_mutex_lock(&b->lock);
    if (!fs_map_get(b->orders, src->order_id)) {
        held_order *o = order_get_or_new_locked(b, src->order_id);
        if (o) {
            snprintf(o->member_id, sizeof o->member_id, "%s", src->member_id);
            snprintf(o->product_id, sizeof o->product_id, "%s", src->product_id);
            o->quantity = src->quantity;
            o->requested_at = src->requested_at;
            o->status = API_ORDER_PENDING;
            history_add(o, "PENDING", "", src->requested_at);
        }
    }
    pthread_mutex_unlock(&b->lock);
}

bool api_bus_order_wait(api_bus *b, const char *order_id, int after, int64_t deadline_ms,
                        api_order *out, bool *exists)
{
    api_waiter w;
    memset(&w, 0, sizeof w);
    snprintf(w.key, sizeof w.key, "%s", order_id);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cond, &ca);
    pthread_condattr_destroy(&ca);
    w.refs = 1000; /* on the stack: never freed through the map */
    pthread_mutex_lock(&b->lock);
    w.next = fs_map_get(b->waiters, order_id);
    bool linked = fs_map_put(b->waiters, order_id, &w) != (void *)-1;
    bool changed = false;
    for (;;) {
        held_order *o = fs_map_get(b->orders, order_id);
        if (o && o->version > after) {
            changed = true;
            break;
        }
        int64_t now = fs_mono_ms();
        if (now >= deadline_ms || !linked)
            break;
        struct timespec ts = {deadline_ms / 1000, (deadline_ms % 1000) * 1000000};
        pthread_cond_timedwait(&w.cond, &b->lock, &ts);
    }
    held_order *o = fs_map_get(b->orders, order_id);
    if (exists)
        *exists = o != NULL;
    if (o)
        held_copy(o, out);
    if (linked)
        unlink_locked(b, &w);
    pthread_mutex_unlock(&b->lock);
    pthread_cond_destroy(&w.cond);
    return changed;
}

int api_bus_produce_order_command(api_bus *b, const char *order_id, const void *value, size_t len,
                                  const char *event_type, const char *event_id, int64_t at,
                                  api_waiter **ticket, fs_err *err)
{
    *ticket = NULL;
    api_waiter *w = calloc(1, sizeof *w); /* not linked among the waiters: no decision wakes it */
    if (!w)
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "out of memory");
    snprintf(w->key, sizeof w->key, "%s", order_id);
    pthread_condattr_t ca; /* api_bus_wait's deadlines are monotonic */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    w->order_command = true;
    w->produced = true;
    w->refs = 2; /* the caller's and the delivery report's */
    fs_event_meta meta = {.event_type = event_type, .event_id = event_id,
                          .correlation_id = order_id, .occurred_at = at};
    rd_kafka_headers_t *h = fs_kafka_headers_new(&meta);
    pthread_rwlock_rdlock(&b->plock);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        b->producer, RD_KAFKA_V_TOPIC(FS_TOPIC_ORDERS_COMMANDS),
        RD_KAFKA_V_KEY(order_id, strlen(order_id)), RD_KAFKA_V_VALUE((void *)value, len),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(w), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_END);
    pthread_rwlock_unlock(&b->plock);
    if (e) {
        rd_kafka_headers_destroy(h);
        pthread_cond_destroy(&w->cond);
        free(w);
        return fs_err_from_kafka_code(err, e, "produce");
    }
    *ticket = w;
    return 0;
}

int api_bus_produce(api_bus *b, api_waiter *w, const char *product_id, const void *value,
                    size_t len, const char *event_type, const char *event_id,
                    const char *correlation_id, int64_t occurred_at, fs_err *err)
{
    fs_event_meta meta = {.event_type = event_type,
                          .event_id = event_id,
                          .correlation_id = correlation_id,
                          .occurred_at = occurred_at};
    rd_kafka_headers_t *h = fs_kafka_headers_new(&meta);
    if (b->reply_fd >= 0) { /* answer at the decision (fs/reply.h) */
        rd_kafka_header_add(h, "reply-to", -1, b->reply_to, -1);
        rd_kafka_header_add(h, "reply-token", -1, w->token, -1);
    }
    if (b->command_copy_ms > 0 && !strcmp(event_type, "ReserveStock")) {
        /* Fault injection for the tests: an order's command is appended twice, as the
         * idempotent producer can do when it re-sends a possibly persisted batch under a new
         * epoch (see api_order_end). This copy, no waiter's, goes first; the waiter's own
         * follows command_copy_ms later, so its delivery report names the later append. The
         * sleep holds the calling thread (on the order front, its event loop): a test knob. */
        rd_kafka_headers_t *hc = rd_kafka_headers_copy(h);
        pthread_rwlock_rdlock(&b->plock);
        if (rd_kafka_producev(b->producer, RD_KAFKA_V_TOPIC(FS_TOPIC_INVENTORY_COMMANDS),
                              RD_KAFKA_V_KEY(product_id, strlen(product_id)),
                              RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_HEADERS(hc),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END))
            rd_kafka_headers_destroy(hc);
        pthread_rwlock_unlock(&b->plock);
        usleep((useconds_t)b->command_copy_ms * 1000);
    } else if (b->command_delay_ms > 0 && !strcmp(event_type, "ReserveStock")) {
        /* Fault injection for the tests: the order's only copy is produced this late, so that
         * it is appended after its accept_by and refused TIMED_OUT. */
        usleep((useconds_t)b->command_delay_ms * 1000);
    }
    pthread_mutex_lock(&b->lock);
    w->refs++; /* the delivery report's reference */
    w->produced = true;
    pthread_mutex_unlock(&b->lock);
    /* never under b->lock: a delivery report served under plock's read side takes b->lock */
    pthread_rwlock_rdlock(&b->plock);
    if (b->fatal_at > 0 && !strcmp(event_type, "ReserveStock") && atomic_fetch_add(&b->reserves, 1) + 1 == b->fatal_at) {
        /* Fault injection for the tests: both producers fail fatally, as an idempotent
         * producer does when the broker reports a lost sequence; this command then fails to
         * be produced, and the keeper replaces them. */
        rd_kafka_test_fatal_error(b->producer, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                  "FLASHSALE_TEST_PRODUCER_FATAL_AT");
        rd_kafka_test_fatal_error(b->answers, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                  "FLASHSALE_TEST_PRODUCER_FATAL_AT");
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        b->producer, RD_KAFKA_V_TOPIC(FS_TOPIC_INVENTORY_COMMANDS),
        RD_KAFKA_V_KEY(product_id, strlen(product_id)), RD_KAFKA_V_VALUE((void *)value, len),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(w), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_END);
    pthread_rwlock_unlock(&b->plock);
    if (e) {
        rd_kafka_headers_destroy(h);
        pthread_mutex_lock(&b->lock);
        w->refs--;
        w->produced = false;
        pthread_mutex_unlock(&b->lock);
        return fs_err_from_kafka_code(err, e, "produce");
    }
    return 0;
}

/* Whether api_bus_wait may return now (lock held); if not, records what the waiter wants
 * to be woken for. */
static bool wait_over_locked(api_waiter *w, int64_t deadline_ms, bool need_decision, int64_t now)
{
    bool delivery_known = !w->produced || w->r.delivered || w->r.failed;
    if (w->r.decided || w->r.failed || (!need_decision && delivery_known) ||
        (now >= deadline_ms && delivery_known))
        return true;
    w->wants_delivery = !need_decision || now >= deadline_ms;
    return false;
}

/* Fault injection for the tests: the waiter's result is read late, as by a thread that woke
 * late, so that what the stream applies meanwhile (a saga's snapshot) is there first. */
static void read_late_locked(api_bus *b)
{
    if (b->late_answer_ms <= 0)
        return;
    pthread_mutex_unlock(&b->lock);
    usleep((useconds_t)b->late_answer_ms * 1000);
    pthread_mutex_lock(&b->lock);
}

void api_bus_wait(api_bus *b, api_waiter *w, int64_t deadline_ms, bool need_decision,
                  api_wait_result *out)
{
    pthread_mutex_lock(&b->lock);
    for (;;) {
        int64_t now = fs_mono_ms();
        if (wait_over_locked(w, deadline_ms, need_decision, now))
            break;
        /* Past the deadline we still wait for the delivery report (bounded by
         * message.timeout.ms), so that "accepted" is never said of a lost command. */
        int64_t until = now >= deadline_ms ? now + 50 : deadline_ms;
        struct timespec ts = {until / 1000, (until % 1000) * 1000000};
        pthread_cond_timedwait(&w->cond, &b->lock, &ts);
    }
    read_late_locked(b);
    *out = w->r;
    pthread_mutex_unlock(&b->lock);
}

bool api_bus_wait_poll(api_bus *b, api_waiter *w, int64_t deadline_ms, bool need_decision,
                       api_wait_result *out)
{
    pthread_mutex_lock(&b->lock);
    bool over = wait_over_locked(w, deadline_ms, need_decision, fs_mono_ms());
    if (over) {
        read_late_locked(b);
        *out = w->r;
    }
    pthread_mutex_unlock(&b->lock);
    return over;
}

void api_bus_waiter_notify(api_bus *b, api_waiter *w, void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&b->lock);
    w->notify = fn;
    w->notify_ctx = ctx;
    pthread_mutex_unlock(&b->lock);
}

void api_bus_waiter_release(api_bus *b, api_waiter *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&b->lock);
    w->notify = NULL;
    if (!w->order_command)
        unlink_locked(b, w);
    waiter_unref_locked(b, w);
    pthread_mutex_unlock(&b->lock);
}

void api_bus_listen(api_bus *b, const api_bus_listener *l)
{
    pthread_mutex_lock(&b->lock);
    b->listener = *l;
    pthread_mutex_unlock(&b->lock);
}

void api_bus_locked(api_bus *b, void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&b->lock);
    fn(ctx);
    pthread_mutex_unlock(&b->lock);
}

bool api_bus_product_locked(api_bus *b, const char *product_id, inv_product_view *out)
{
    return product_view_locked(b, product_id, out) != NULL;
}

void api_bus_member_orders_locked(api_bus *b, const char *member_id,
                                  void (*fn)(void *ctx, const api_order *o), void *ctx)
{
    api_order copy; /* 3,600 bytes of the caller's stack (the event streams' hub thread) */
    for (const held_order *o = b->lru_head; o; o = o->lru_next)
        if (!strcmp(o->member_id, member_id)) {
            held_copy(o, &copy);
            fn(ctx, &copy);
        }
}
