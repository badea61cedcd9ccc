/* flashsale-ledger: the CPU of an order's own logic, without Kafka, HTTP or any store.
 *
 * Times, one thread, warm caches, each piece of per-order work that flashsale's processes do
 * beyond moving records (the Kafka floor, perf/kfloor.sh), with flashsale's own functions:
 * the JSON of the request and the answer, the token's checks, the ids, every Avro encoding
 * and decoding of the order's records, the decision, the API's view of it and its live-update
 * JSON, the saga's steps, and the Redis projector's JSON of each status. Each piece is
 * then counted as often as the order path does it, reader by reader, once for decisions only
 * and once for the whole lifecycle with auto-pay, and each sum is the least CPU an order's
 * logic costs on that path: a lower bound (in the services the caches are colder and the data
 * is spread over more memory).
 *
 * What it leaves out, so the bound stays a bound: the read models' writes in PostgreSQL and
 * Redis beyond the floor's one row, the notifier's look-up and message (load-test buyers have
 * no address: it sends nothing), the maps of the API and the saga, locks, logging, metrics,
 * and every system call.
 *
 * Usage: flashsale-ledger [--iterations N] [--repeats R]
 * Prints one JSON object on stdout (each piece's median ns per call over R repeats, its
 * counts per order on each path, and the sums); progress on stderr. */
#include "flashsale/inventory.h"
#include "flashsale/inventory_codec.h"
#include "flashsale/messages.h"
#include "flashsale/order.h"
#include "flashsale/saga.h"

#include "fs/codec.h"
#include "fs/id.h"
#include "fs/jwt.h"

#include "order_json.h"
#include "sse_event.h"

#include <jansson.h>
#include <jwt.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PRODUCTS 1000
#define BUYERS 10000         /* perf/run's load: flashsale-load --members 10000 */
#define JWT_CACHE_SLOTS 65536 /* common/src/jwt.c */
#define SECRET "ledger-secret-ledger-secret-ledger-secret"

static fs_codec *codec;
static inv_state *state, *view;
static char token_header[1024];
static char **fresh_tokens; /* never verified before: each misses the token cache */
static long nfresh, next_fresh;
static long serial, view_serial;

/* Each piece works on its own inputs, made once. */
static inv_command reserve_cmd;
static void *cmd_buf, *ev_buf, *snap_buf, *note_buf;
static size_t cmd_len, ev_len, snap_len, note_len;
static inv_event decision;
static ord_order snapshot, snapshot_same;
static fs_notification note;
static ord_input saga_in;
static ord_step_result *saga_out;
static const ord_saga_config rules = {.day_ms = 86400000LL, .return_window_ms = 7 * 86400000LL,
                                      .auto_pay = false, .max_attempts = 3,
                                      .ended_memory_ms = 86400000LL};
/* The whole lifecycle with auto-pay: the saga's three steps (the reservation, the payment's
 * result, the sale), the payment's request and result, the commit command and the sale's
 * event, each made once in setup(): by the saga's and the processor's own functions, the
 * payment's result as the payments service builds it (sagas/src/payments_main.c). */
static const ord_saga_config rules_pay = {.day_ms = 86400000LL, .return_window_ms = 7 * 86400000LL,
                                          .auto_pay = true, .max_attempts = 3,
                                          .ended_memory_ms = 86400000LL};
static ord_order paying, paid;
static ord_input reserved_in, paid_in, sold_in;
static pay_command pay_req;
static pay_event pay_res;
static inv_command commit_cmd;
static inv_event sold;
static void *payreq_buf, *payres_buf, *commit_buf, *sold_buf;
static size_t payreq_len, payres_len, commit_len, sold_len;
static inv_state *sales; /* reservations made by make_sales(), committed one per call */
static long ncommit, next_commit;

static void die(const char *what)
{
    fprintf(stderr, "flashsale-ledger: %s\n", what);
    exit(1);
}

static int64_t thread_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- the pieces --------------------------------------------------------------------- */

static void p_request_json(void)
{
    static const char body[] = "{\"product_id\":\"p-0421\",\"quantity\":1}";
    json_error_t je;
    json_t *j = json_loadb(body, sizeof body - 1, 0, &je);
    if (!j || !json_is_string(json_object_get(j, "product_id")) ||
        json_integer_value(json_object_get(j, "quantity")) != 1)
        die("request JSON");
    json_decref(j);
}

static void p_answer_json(void)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:i,s:I,s:s}", "order_id", decision.order_id, "status",
                          "RESERVED", "product_id", decision.product_id, "quantity", 1,
                          "unit_price", (json_int_t)9900, "pay_by", "2026-12-06T01:10:00.000Z");
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        die("answer JSON");
    free(text);
    json_decref(j);
}

static void p_token(void)
{
    fs_principal who;
    if (fs_jwt_verify(SECRET, token_header, (int64_t)time(NULL), &who) != FS_JWT_OK)
        die("token");
}

static void p_token_fresh(void)
{
    fs_principal who;
    if (next_fresh >= nfresh)
        die("fresh tokens used up");
    if (fs_jwt_verify(SECRET, fresh_tokens[next_fresh++], (int64_t)time(NULL), &who) != FS_JWT_OK)
        die("fresh token");
}

static void p_id(void)
{
    char a[FS_UUID_STR_LEN + 1];
    if (fs_uuid7_str(a))
        die("id");
}

/* The API's view of the partition (counters only) takes the decision, and the product's new
 * state is read for the live updates (bus.c, apply_locked). */
static void p_view_apply(void)
{
    inv_event e = decision;
    snprintf(e.order_id, sizeof e.order_id, "v-%ld", view_serial++);
    inv_product_view v;
    if (inv_apply(view, &e) || !inv_state_product(view, e.product_id, &v))
        die("view");
}

static void p_sse_stock(void)
{
    inv_product_view v;
    if (!inv_state_product(state, decision.product_id, &v))
        die("product");
    char *d = sse_stock_data(&v, decision.occurred_at, decision.occurred_at);
    if (!d)
        die("stock JSON");
    free(d);
}

static void p_sse_order(void)
{
    char *d = sse_order_data(decision.order_id, "RESERVED", "", 2, decision.occurred_at);
    if (!d)
        die("order JSON");
    free(d);
}

static void p_command_encode(void)
{
    void *buf;
    size_t len;
    fs_err err = {0};
    if (inv_command_encode(codec, &reserve_cmd, &buf, &len, &err))
        die(err.msg);
    free(buf);
}

static void p_command_decode(void)
{
    inv_command c;
    fs_err err = {0};
    if (inv_command_decode_bytes(codec, cmd_buf, cmd_len, &c, &err))
        die(err.msg);
}

static void p_decide_apply(void)
{
    inv_command c = reserve_cmd;
    snprintf(c.product_id, sizeof c.product_id, "p-%04ld", serial % PRODUCTS);
    snprintf(c.order_id, sizeof c.order_id, "o-%ld", serial);
    snprintf(c.member_id, sizeof c.member_id, "m-%ld", serial);
    serial++;
    inv_event e;
    if (inv_decide(state, &c, &e) != INV_DECIDED || e.type != INV_EV_RESERVED || inv_apply(state, &e))
        die("decision");
}

static void p_event_encode(void)
{
    void *buf;
    size_t len;
    fs_err err = {0};
    if (inv_event_encode(codec, &decision, &buf, &len, &err))
        die(err.msg);
    free(buf);
}

static void p_event_decode(void)
{
    inv_event e;
    fs_err err = {0};
    if (inv_event_decode_bytes(codec, ev_buf, ev_len, &e, &err))
        die(err.msg);
}

/* The saga's first look at a decision: the generic record only (it forwards the bytes). */
static void p_event_generic(void)
{
    const fs_schema *sc;
    avro_value_t v;
    fs_err err = {0};
    if (fs_codec_decode(codec, ev_buf, ev_len, &sc, &v, &err))
        die(err.msg);
    avro_value_decref(&v);
}

static void p_snapshot_encode(void)
{
    void *buf;
    size_t len;
    fs_err err = {0};
    if (ord_encode(codec, &snapshot, &buf, &len, &err))
        die(err.msg);
    free(buf);
}

static void p_snapshot_decode(void)
{
    const fs_schema *sc;
    avro_value_t v;
    fs_err err = {0};
    ord_order o;
    if (fs_codec_decode(codec, snap_buf, snap_len, &sc, &v, &err) || ord_decode(&v, &o, &err))
        die(err.msg);
    avro_value_decref(&v);
}

static void p_note_encode(void)
{
    void *buf;
    size_t len;
    fs_err err = {0};
    if (fs_notification_encode(codec, &note, &buf, &len, &err))
        die(err.msg);
    free(buf);
}

static void p_note_decode(void)
{
    const fs_schema *sc;
    avro_value_t v;
    fs_err err = {0};
    fs_notification n;
    if (fs_codec_decode(codec, note_buf, note_len, &sc, &v, &err) || fs_notification_decode(&v, &n, &err))
        die(err.msg);
    avro_value_decref(&v);
}

static void p_answer_record(void)
{
    ord_answer a;
    memset(&a, 0, sizeof a);
    snprintf(a.order_id, sizeof a.order_id, "%s", decision.order_id);
    snprintf(a.member_id, sizeof a.member_id, "%s", decision.member_id);
    snprintf(a.product_id, sizeof a.product_id, "%s", decision.product_id);
    a.quantity = 1;
    snprintf(a.status, sizeof a.status, "RESERVED");
    snprintf(a.source, sizeof a.source, "reply");
    a.http_status = 201;
    a.pay_by = decision.pay_by;
    a.answered_at = decision.occurred_at;
    void *buf;
    size_t len;
    fs_err err = {0};
    if (ord_answer_encode(codec, &a, &buf, &len, &err))
        die(err.msg);
    free(buf);
}

static void p_saga_step(void)
{
    ord_step(&rules, NULL, &saga_in, saga_out);
    if (!saga_out->changed || saga_out->nsnapshots < 1)
        die("saga step");
}

/* The Redis projector's JSON of a status (projections/src/order_json.c, as sink_redis.c's
 * r_order makes it): the lines, the history entry when the status changed, and the published
 * message. Without a history entry: snapshot_same, the status unchanged (as a second PAID). */
static void redis_status_json(bool history)
{
    rm_order_json j;
    if (rm_order_json_make(history ? &snapshot : &snapshot_same, &j) || (history != (j.history != NULL)))
        die("Redis status JSON");
    rm_order_json_free(&j);
}
static void p_redis_status_json(void) { redis_status_json(true); }
static void p_redis_status_json_same(void) { redis_status_json(false); }

/* The saga's steps of the lifecycle: the reservation (with auto-pay it also asks for the
 * payment and writes PAYING), the payment's result (the commit command, PAID and its
 * notification), the sale's event (the order's last status). */
static void step(const ord_order *o, const ord_input *in)
{
    ord_step(&rules_pay, o, in, saga_out);
    if (!saga_out->changed)
        die("lifecycle step");
}
static void p_step_reserve_pay(void) { step(NULL, &reserved_in); }
static void p_step_paid(void) { step(&paying, &paid_in); }
static void p_step_sold(void) { step(&paid, &sold_in); }

static void p_payreq_encode(void)
{
    void *buf;
    size_t len;
    fs_err err = {0};
    if (pay_command_encode(codec, &pay_req, &buf, &len, &err))
        die(err.msg);
    free(buf);
}

static void p_payreq_decode(void)
{
    const fs_schema *sc;
    avro_value_t v;
    fs_err err = {0};
    pay_command c;
    if (fs_codec_decode(codec, payreq_buf, payreq_len, &sc, &v, &err) ||
        pay_command_decode(&v, fs_schema_name(sc), &c, &err))
        die(err.msg);
    avro_value_decref(&v);
}

static void p_payres_encode(void)
{
    void *buf;
    size_t len;
    fs_err err = {0};
    if (pay_event_encode(codec, &pay_res, &buf, &len, &err))
        die(err.msg);
    free(buf);
}

static void p_payres_decode(void)
{
    const fs_schema *sc;
    avro_value_t v;
    fs_err err = {0};
    pay_event e;
    if (fs_codec_decode(codec, payres_buf, payres_len, &sc, &v, &err) ||
        pay_event_decode(&v, fs_schema_name(sc), &e, &err))
        die(err.msg);
    avro_value_decref(&v);
}

static void p_commit_encode(void)
{
    void *buf;
    size_t len;
    fs_err err = {0};
    if (inv_command_encode(codec, &commit_cmd, &buf, &len, &err))
        die(err.msg);
    free(buf);
}

static void p_commit_decode(void)
{
    inv_command c;
    fs_err err = {0};
    if (inv_command_decode_bytes(codec, commit_buf, commit_len, &c, &err))
        die(err.msg);
}

/* The processor commits one of the reservations setup() made (each only once). */
static void sale_ids(inv_command *c, long i)
{
    snprintf(c->product_id, sizeof c->product_id, "p-%04ld", i % PRODUCTS);
    snprintf(c->order_id, sizeof c->order_id, "s-%ld", i);
    snprintf(c->member_id, sizeof c->member_id, "sm-%ld", i);
}

static void p_commit_decide(void)
{
    if (next_commit >= ncommit)
        die("reservations to commit used up");
    inv_command c = commit_cmd;
    sale_ids(&c, next_commit++);
    inv_event e;
    if (inv_decide(sales, &c, &e) != INV_DECIDED || e.type != INV_EV_COMMITTED || inv_apply(sales, &e))
        die("commit");
}

static void p_sold_encode(void)
{
    void *buf;
    size_t len;
    fs_err err = {0};
    if (inv_event_encode(codec, &sold, &buf, &len, &err))
        die(err.msg);
    free(buf);
}

static void p_sold_decode(void)
{
    inv_event e;
    fs_err err = {0};
    if (inv_event_decode_bytes(codec, sold_buf, sold_len, &e, &err))
        die(err.msg);
}

static void p_sold_generic(void)
{
    const fs_schema *sc;
    avro_value_t v;
    fs_err err = {0};
    if (fs_codec_decode(codec, sold_buf, sold_len, &sc, &v, &err))
        die(err.msg);
    avro_value_decref(&v);
}

typedef struct {
    const char *name;
    void (*fn)(void);
    double per_order; /* how often the order path does it, decisions only */
    double per_life;  /* ... and with the whole lifecycle (auto-pay) */
    const char *where;
    const char *where_life; /* NULL: the same */
} piece;

/* The share of first token checks that miss the cache (the second, right after, never does).
 * A buyer's token shares its slot with k others (k Poisson, mean (buyers - 1) / slots); the
 * tokens of one slot evict each other, so with k others the slot holds another's token at
 * its check k / (k + 1) of the time (buyers ordering in turn at random). Set in main(). */
static double token_miss;

static double expected_token_miss(void)
{
    double lambda = (double)(BUYERS - 1) / JWT_CACHE_SLOTS, p = exp(-lambda), sum = 0;
    for (int k = 0; k < 40; k++) {
        sum += p * k / (k + 1);
        p *= lambda / (k + 1);
    }
    return sum;
}

/* Counts per order, decisions only, as the services do it (read from their sources):
 * - request and answer JSON, the command's encoding and the recorded answer's: the API;
 * - the token: checked twice by the API (orders.c: for the member cache, then api_auth), the
 *   second always from the cache; the first misses it for token_miss of the orders;
 * - ids (UUIDv7): the request's (http.c: the load sends no X-Request-Id, and perf/run and
 *   perf/profile send orders to the order front, not through the edge, whose nginx would give
 *   one: 7 then), the order's, the command's event id, the event-id header of the recorded
 *   answer, the decision, the status and the notification (fs_kafka_headers_new), and the
 *   notification's id: 8;
 * - the API's view takes each decision, and it writes the live-update JSON of the product's
 *   stock and of the order's one change (pending -> RESERVED; the stream's second look at
 *   the decision and the saga's RESERVED status change nothing), listeners or not;
 * - the command's decoding, the decision, the event's encoding: the processor;
 * - the event decoded whole: the API twice (the processor's reply, then its decision
 *   stream), the saga once (the forward read back), the two projectors, the notifier's
 *   watch of the products: 6;
 * - the event decoded generically: the saga's first read (it forwards the bytes): 1;
 * - the order's status (snapshot): encoded by the saga, decoded by the API's stream and
 *   the two projectors; the Redis projector's JSON of it (items, message, history);
 * - the notification: encoded by the saga, decoded by the notifier;
 * - the saga's step: 1.
 * The whole lifecycle with auto-pay (a single-line order paid at the first attempt) adds:
 * - the saga's first step with auto-pay (two statuses, the notification and the payment's
 *   request) instead of the plain one, and two more steps (the payment's result, the sale);
 * - encoded by the saga: the payment's request, the commit command, three statuses
 *   (PAYING, PAID, the last) and the ORDER_PAID notification; by the payments service the
 *   payment's result; by the processor the sale's event (ReservationCommitted);
 * - decoded: the request by the payments service; the result by the saga and both
 *   projectors (the Redis one decodes it and writes nothing); the commit by the processor;
 *   the sale's event whole by the API's stream (once: the saga's commit carries no reply-to,
 *   so no reply), the saga (its forward read back), both projectors and the notifier's
 *   watch, and generically by the saga's first read; each new status by the API and both projectors
 *   (9); the notification by the notifier;
 * - the processor's commit decision; the API's view of the sale, its stock's live update,
 *   and the order's two live updates (PAYING, PAID: the last status stays PAID);
 * - ids: six event-id headers and the notification's id from the saga, the payment's id and
 *   its header from the payments service, the sale's header from the processor: 10;
 * - the Redis projector's JSON of three more statuses (the last without a history entry: its
 *   status stays PAID).
 * Left out as before: maps (the payments service's results, the saga's orders), the
 * notifier's parameters object, timers, system calls. */
static piece pieces[] = {
    {"request_json", p_request_json, 1, 1, "API", NULL},
    {"answer_json", p_answer_json, 1, 1, "API", NULL},
    {"token_cached", p_token, 2, 2, "API", NULL},     /* less token_miss: main() */
    {"token_uncached", p_token_fresh, 0, 0, "API", NULL}, /* token_miss: main() */
    {"uuid", p_id, 8, 18, "API x4, processor, saga x3", "API x4, processor x2, saga x10, payments x2"},
    {"view_apply", p_view_apply, 1, 2, "API", "API, the sale too"},
    {"live_stock_json", p_sse_stock, 1, 2, "API", "API, the sale too"},
    {"live_order_json", p_sse_order, 1, 3, "API", "API: RESERVED, PAYING, PAID"},
    {"command_encode", p_command_encode, 1, 1, "API", NULL},
    {"answer_record_encode", p_answer_record, 1, 1, "API", NULL},
    {"command_decode", p_command_decode, 1, 1, "processor", NULL},
    {"decide_apply", p_decide_apply, 1, 1, "processor", NULL},
    {"event_encode", p_event_encode, 1, 1, "processor", NULL},
    {"event_decode", p_event_decode, 6, 6, "API x2, saga, projectors x2, notifier's watch", NULL},
    {"event_decode_generic", p_event_generic, 1, 1, "saga", NULL},
    {"saga_step", p_saga_step, 1, 0, "saga", "(the step with auto-pay instead)"},
    {"status_encode", p_snapshot_encode, 1, 4, "saga", NULL},
    {"status_decode", p_snapshot_decode, 3, 12, "API, projectors x2", NULL},
    {"redis_status_json", p_redis_status_json, 1, 3, "Redis projector", NULL},
    {"redis_status_json_same", p_redis_status_json_same, 0, 1, "Redis projector", "Redis projector: the last status"},
    {"notification_encode", p_note_encode, 1, 2, "saga", NULL},
    {"notification_decode", p_note_decode, 1, 2, "notifier", NULL},
    {"saga_step_autopay", p_step_reserve_pay, 0, 1, "saga", NULL},
    {"saga_step_paid", p_step_paid, 0, 1, "saga", NULL},
    {"saga_step_sold", p_step_sold, 0, 1, "saga", NULL},
    {"payment_request_encode", p_payreq_encode, 0, 1, "saga", NULL},
    {"payment_request_decode", p_payreq_decode, 0, 1, "payments", NULL},
    {"payment_result_encode", p_payres_encode, 0, 1, "payments", NULL},
    {"payment_result_decode", p_payres_decode, 0, 3, "saga, projectors x2", NULL},
    {"commit_encode", p_commit_encode, 0, 1, "saga", NULL},
    {"commit_decode", p_commit_decode, 0, 1, "processor", NULL},
    {"commit_decide_apply", p_commit_decide, 0, 1, "processor", NULL},
    {"sale_event_encode", p_sold_encode, 0, 1, "processor", NULL},
    {"sale_event_decode", p_sold_decode, 0, 5, "API, saga, projectors x2, notifier's watch", NULL},
    {"sale_event_generic", p_sold_generic, 0, 1, "saga", NULL},
};

/* ---- set-up ------------------------------------------------------------------------- */

static void setup(void)
{
    fs_err err = {0};
    if (!(codec = fs_codec_new(&err)))
        die(err.msg);
    int64_t t0 = fs_now_ms() - 60000;
    if (!(state = inv_state_new(600000)) || !(view = inv_state_new_counters()) ||
        !(sales = inv_state_new(600000)))
        die("state");
    for (int i = 0; i < PRODUCTS; i++) {
        inv_command c;
        memset(&c, 0, sizeof c);
        c.type = INV_CMD_DEFINE;
        snprintf(c.product_id, sizeof c.product_id, "p-%04d", i);
        snprintf(c.actor_id, sizeof c.actor_id, "admin");
        snprintf(c.f.name, sizeof c.f.name, "Product %d", i);
        c.f.price = 9900;
        c.f.sale_starts_at = t0;
        c.stock = 1000000000;
        c.requested_at = t0 + 1;
        c.offset = -1;
        c.item_count = 1;
        inv_event e; /* the API's view knows the products from the same events */
        if (inv_decide(state, &c, &e) != INV_DECIDED || inv_apply(state, &e) || inv_apply(view, &e) ||
            inv_apply(sales, &e))
            die("define");
    }
    memset(&reserve_cmd, 0, sizeof reserve_cmd);
    reserve_cmd.type = INV_CMD_RESERVE;
    fs_uuid7_str(reserve_cmd.order_id);
    snprintf(reserve_cmd.product_id, sizeof reserve_cmd.product_id, "p-0421");
    fs_uuid7_str(reserve_cmd.member_id);
    reserve_cmd.quantity = 1;
    reserve_cmd.item_count = 1;
    reserve_cmd.requested_at = fs_now_ms();
    reserve_cmd.accept_by = reserve_cmd.requested_at + 5000;
    reserve_cmd.offset = -1;
    if (inv_command_encode(codec, &reserve_cmd, &cmd_buf, &cmd_len, &err))
        die(err.msg);
    if (inv_decide(state, &reserve_cmd, &decision) != INV_DECIDED || decision.type != INV_EV_RESERVED)
        die("first decision");
    if (inv_event_encode(codec, &decision, &ev_buf, &ev_len, &err))
        die(err.msg);

    memset(&saga_in, 0, sizeof saga_in);
    saga_in.kind = ORD_IN_INVENTORY;
    saga_in.inv = decision;
    saga_in.at = decision.occurred_at;
    if (!(saga_out = calloc(1, sizeof *saga_out)))
        die("memory");
    ord_step(&rules, NULL, &saga_in, saga_out);
    if (!saga_out->changed || saga_out->nsnapshots < 1 || saga_out->nnotes < 1)
        die("the saga's first step wrote no status or notification");
    snapshot = saga_out->snapshots[saga_out->nsnapshots - 1];
    snapshot_same = snapshot;
    snapshot_same.previous = snapshot_same.status;
    note = saga_out->notes[0];
    fs_uuid7_str(note.notification_id);
    if (ord_encode(codec, &snapshot, &snap_buf, &snap_len, &err) ||
        fs_notification_encode(codec, &note, &note_buf, &note_len, &err))
        die(err.msg);

    /* The lifecycle, step by step, as the saga (auto-pay), the payments service and the
     * processor make it. */
    reserved_in = saga_in;
    ord_step(&rules_pay, NULL, &reserved_in, saga_out);
    if (!saga_out->changed || !saga_out->has_payment || saga_out->nsnapshots < 2)
        die("the reservation with auto-pay asked for no payment");
    paying = saga_out->order;
    pay_req = saga_out->payment;
    memset(&pay_res, 0, sizeof pay_res); /* as sagas/src/payments_main.c answers it */
    pay_res.type = PAY_EV_PAYMENT_SUCCEEDED;
    fs_uuid7_str(pay_res.payment_id);
    snprintf(pay_res.order_id, sizeof pay_res.order_id, "%s", pay_req.order_id);
    snprintf(pay_res.member_id, sizeof pay_res.member_id, "%s", pay_req.member_id);
    pay_res.amount = pay_req.amount;
    pay_res.attempt = pay_req.attempt;
    pay_res.occurred_at = pay_req.requested_at;
    memset(&paid_in, 0, sizeof paid_in);
    paid_in.kind = ORD_IN_PAYMENT;
    paid_in.pay = pay_res;
    paid_in.at = pay_res.occurred_at;
    ord_step(&rules_pay, &paying, &paid_in, saga_out);
    if (!saga_out->changed || saga_out->ninventory < 1 || saga_out->inventory[0].type != INV_CMD_COMMIT)
        die("the payment's result asked for no commit");
    paid = saga_out->order;
    commit_cmd = saga_out->inventory[0];
    if (inv_apply(state, &decision) || inv_decide(state, &commit_cmd, &sold) != INV_DECIDED ||
        sold.type != INV_EV_COMMITTED)
        die("the commit was not decided COMMITTED");
    memset(&sold_in, 0, sizeof sold_in);
    sold_in.kind = ORD_IN_INVENTORY;
    sold_in.inv = sold;
    sold_in.at = sold.occurred_at;
    ord_step(&rules_pay, &paid, &sold_in, saga_out);
    if (!saga_out->changed || saga_out->nsnapshots < 1)
        die("the sale wrote no last status");
    if (pay_command_encode(codec, &pay_req, &payreq_buf, &payreq_len, &err) ||
        pay_event_encode(codec, &pay_res, &payres_buf, &payres_len, &err) ||
        inv_command_encode(codec, &commit_cmd, &commit_buf, &commit_len, &err) ||
        inv_event_encode(codec, &sold, &sold_buf, &sold_len, &err))
        die(err.msg);

    char *tok = NULL;
    if (fs_jwt_issue(SECRET, reserve_cmd.member_id, "member", 3600, &tok, &err))
        die(err.msg);
    snprintf(token_header, sizeof token_header, "Bearer %s", tok);
    free(tok);
}

static void make_fresh_tokens(long n)
{
    if (!(fresh_tokens = calloc((size_t)n, sizeof *fresh_tokens)))
        die("memory");
    /* minted with libjwt itself: a token fs_jwt_issue makes is remembered as it is issued
     * (the verified-token cache), so its first check would not be a decode */
    long now = (long)time(NULL);
    for (long i = 0; i < n; i++) {
        char member[32], *tok = NULL;
        snprintf(member, sizeof member, "ledger-%ld", i);
        jwt_t *jwt = NULL;
        if (jwt_new(&jwt) || jwt_add_grant(jwt, "sub", member) || jwt_add_grant(jwt, "role", "member") ||
            jwt_add_grant_int(jwt, "iat", now) || jwt_add_grant_int(jwt, "exp", now + 3600) ||
            jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)SECRET, (int)strlen(SECRET)) ||
            !(tok = jwt_encode_str(jwt)) || asprintf(&fresh_tokens[i], "Bearer %s", tok) < 0)
            die("fresh token");
        jwt_free(jwt);
        free(tok);
    }
    nfresh = n;
}

/* n reservations for the processor's commits to take, one per call (p_commit_decide). */
static void make_sales(long n)
{
    for (long i = 0; i < n; i++) {
        inv_command c = reserve_cmd;
        sale_ids(&c, i);
        inv_event e;
        if (inv_decide(sales, &c, &e) != INV_DECIDED || e.type != INV_EV_RESERVED || inv_apply(sales, &e))
            die("a reservation to commit");
    }
    ncommit = n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long iterations = 20000;
    int repeats = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
            iterations = atol(argv[++i]);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
            repeats = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: flashsale-ledger [--iterations N] [--repeats R]\n");
            return 2;
        }
    }
    if (iterations < 100 || repeats < 1 || repeats > 99)
        die("--iterations must be at least 100, --repeats 1 to 99");
    token_miss = expected_token_miss();
    for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++)
        if (pieces[k].fn == p_token)
            pieces[k].per_order = pieces[k].per_life = 2 - token_miss;
        else if (pieces[k].fn == p_token_fresh)
            pieces[k].per_order = pieces[k].per_life = token_miss;
    setup();
    fprintf(stderr, "flashsale-ledger: issuing %ld tokens for the cache misses\n",
            iterations / 10 + iterations * repeats);
    make_fresh_tokens(iterations / 10 + iterations * repeats);
    make_sales(iterations / 10 + iterations * repeats);
    size_t n = sizeof pieces / sizeof pieces[0];
    double total = 0, total_life = 0;
    printf("{\"iterations\":%ld,\"repeats\":%d,\"pieces\":[", iterations, repeats);
    for (size_t k = 0; k < n; k++) {
        const piece *p = &pieces[k];
        for (long i = 0; i < iterations / 10; i++) /* warm */
            p->fn();
        double runs[99];
        for (int r = 0; r < repeats; r++) {
            int64_t t = thread_ns();
            for (long i = 0; i < iterations; i++)
                p->fn();
            runs[r] = (double)(thread_ns() - t) / (double)iterations;
        }
        qsort(runs, (size_t)repeats, sizeof runs[0], cmp_double);
        double med = runs[repeats / 2];
        total += med * p->per_order;
        total_life += med * p->per_life;
        fprintf(stderr, "flashsale-ledger: %-22s %8.0f ns (runs %.0f-%.0f) x %.2f, lifecycle x %.2f  [%s%s%s]\n",
                p->name, med, runs[0], runs[repeats - 1], p->per_order, p->per_life, p->where,
                p->where_life ? "; lifecycle: " : "", p->where_life ? p->where_life : "");
        printf("%s{\"piece\":\"%s\",\"ns\":%.0f,\"min_ns\":%.0f,\"max_ns\":%.0f,\"per_order\":%.2f,"
               "\"per_order_lifecycle\":%.2f,\"where\":\"%s\",\"where_lifecycle\":\"%s\"}",
               k ? "," : "", p->name, med, runs[0], runs[repeats - 1], p->per_order, p->per_life, p->where,
               p->where_life ? p->where_life : p->where);
    }
    printf("],\"ns_per_order\":%.0f,\"ns_per_order_lifecycle\":%.0f}\n", total, total_life);
    fprintf(stderr, "flashsale-ledger: the order's logic, decisions only: %.1f us of CPU per order\n",
            total / 1000.0);
    fprintf(stderr, "flashsale-ledger: the order's logic, whole lifecycle (auto-pay): %.1f us of CPU per order\n",
            total_life / 1000.0);
    free(cmd_buf);
    free(ev_buf);
    free(snap_buf);
    free(note_buf);
    free(saga_out);
    free(payreq_buf);
    free(payres_buf);
    free(commit_buf);
    free(sold_buf);
    for (long i = 0; i < nfresh; i++)
        free(fresh_tokens[i]);
    free(fresh_tokens);
    inv_state_destroy(view);
    inv_state_destroy(state);
    inv_state_destroy(sales);
    fs_codec_destroy(codec);
    return 0;
}
