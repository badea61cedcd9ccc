/* flashsale-synth: writes a synthetic but consistent event stream, as the workers would, for
 * benchmarking the projectors on an isolated system (never on a real one: it bypasses the
 * inventory processor and the sagas).
 *
 *   flashsale-synth [--orders N] [--products P] [--rate EVENTS_PER_S] [--span-days D]
 *
 * Defines P products with ample stock, then per order: StockReserved, OrderStatusChanged
 * RESERVED, PAYING, PAID, PaymentSucceeded, ReservationCommitted (6 events: the mix of a
 * sale where every order is paid). --rate 0 (default) writes as fast as the broker takes
 * them; otherwise paced to EVENTS_PER_S. Progress on stderr once a second; a JSON summary
 * on stdout. Record timestamps are the produce time, so a projector's lag is measured from
 * when each event was written. --span-days D (default 0: now) spreads the orders' ids and
 * times evenly over the last D days, as the history of a shop that has sold that long: each
 * order's events are stamped with its time and its id carries it (UUIDv7). Command offsets
 * are distinct and increasing, as the processor's are. */
#include "flashsale/inventory_codec.h"
#include "flashsale/messages.h"
#include "flashsale/order.h"

#include "fs/codec.h"
#include "fs/config.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char id[INV_ID_MAX];
    int32_t available, reserved, sold;
} product;

static rd_kafka_t *producer;
static uint64_t produced;
static int64_t order_at; /* the time of the order being written (0: now): events and records */

static int64_t at_now(void)
{
    return order_at ? order_at : fs_now_ms();
}

static void emit(const char *topic, const char *key, void *buf, size_t len)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_TIMESTAMP(order_at), /* 0: now */
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "flashsale-synth: produce: %s\n", rd_kafka_err2str(e));
            exit(1);
        }
        rd_kafka_poll(producer, 10);
    }
    produced++;
}

static void die(const fs_err *err)
{
    fprintf(stderr, "flashsale-synth: %s\n", err->msg);
    exit(1);
}

static void inv(const fs_codec *c, const inv_event *e)
{
    void *buf;
    size_t len;
    fs_err err = {0};
    if (inv_event_encode(c, e, &buf, &len, &err))
        die(&err);
    emit(FS_TOPIC_INVENTORY_EVENTS, e->product_id, buf, len);
}

static void snapshot(const fs_codec *c, ord_order *o, ord_status to)
{
    void *buf;
    size_t len;
    fs_err err = {0};
    o->previous = o->status;
    o->status = to;
    o->occurred_at = at_now();
    if (ord_encode(c, o, &buf, &len, &err))
        die(&err);
    emit(FS_TOPIC_ORDERS_EVENTS, o->order_id, buf, len);
}

static void paid(const fs_codec *c, const ord_order *o)
{
    pay_event e = {.type = PAY_EV_PAYMENT_SUCCEEDED, .amount = o->amount, .attempt = 1,
                   .occurred_at = at_now()};
    snprintf(e.order_id, sizeof e.order_id, "%s", o->order_id);
    snprintf(e.member_id, sizeof e.member_id, "%s", o->member_id);
    fs_uuid7_str(e.payment_id);
    fs_err err = {0};
    void *buf;
    size_t len;
    if (pay_event_encode(c, &e, &buf, &len, &err))
        die(&err);
    emit(FS_TOPIC_PAYMENTS_EVENTS, o->order_id, buf, len);
}

int main(int argc, char **argv)
{
    long orders = 20000, nproducts = 1000;
    double rate = 0, span_days = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--orders"))
            orders = atol(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--products"))
            nproducts = atol(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--rate"))
            rate = atof(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--span-days"))
            span_days = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: flashsale-synth [--orders N] [--products P] [--rate EVENTS_PER_S] [--span-days D]\n");
            return 2;
        }
    }
    if (orders < 1 || nproducts < 1 || rate < 0 || span_days < 0 || span_days > 3650) {
        fprintf(stderr, "flashsale-synth: --orders and --products must be positive, --rate >= 0, "
                        "--span-days 0 to 3650\n");
        return 2;
    }
    fs_log_init("synth", FS_LOG_WARN);
    fs_common_config cfg;
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    fs_codec *codec = fs_codec_new(&err);
    producer = codec ? fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_PRODUCER, .client_id = "flashsale-synth"}, &err) : NULL;
    if (!producer)
        die(&err);
    product *ps = calloc((size_t)nproducts, sizeof *ps);
    int32_t each = (int32_t)(orders / nproducts + 10);
    int64_t span_ms = (int64_t)(span_days * 86400000.0), first_at = fs_now_ms() - span_ms;
    order_at = span_ms ? first_at - 60000 : 0; /* the products come first */
    for (long i = 0; i < nproducts; i++) {
        inv_event e;
        memset(&e, 0, sizeof e);
        e.type = INV_EV_DEFINED;
        fs_uuid7_str(ps[i].id);
        snprintf(e.product_id, sizeof e.product_id, "%s", ps[i].id);
        snprintf(e.actor_id, sizeof e.actor_id, "synth");
        snprintf(e.f.name, sizeof e.f.name, "synthetic %ld", i);
        snprintf(e.f.currency, sizeof e.f.currency, "KRW");
        e.f.price = 1000;
        e.f.sale_starts_at = 1577836800000LL;
        e.stock = e.available = ps[i].available = each;
        e.occurred_at = at_now();
        inv(codec, &e);
    }
    int64_t t0 = fs_mono_ms(), last = t0;
    uint64_t start = produced;
    for (long n = 0; n < orders; n++) {
        product *p = &ps[n % nproducts];
        int64_t at = span_ms ? first_at + (int64_t)((double)span_ms * (double)n / (double)orders)
                             : fs_now_ms();
        inv_event e;
        memset(&e, 0, sizeof e);
        e.type = INV_EV_RESERVED;
        snprintf(e.product_id, sizeof e.product_id, "%s", p->id);
        order_at = span_ms ? at : 0;
        if (span_ms)
            fs_uuid7_at((uint64_t)at, e.order_id);
        else
            fs_uuid7_str(e.order_id);
        snprintf(e.member_id, sizeof e.member_id, "synth-%ld", n);
        e.quantity = 1;
        e.item_count = 1;
        e.unit_price = 1000;
        e.pay_by = at + 600000;
        e.command_offset = 2 * n;
        e.available = --p->available;
        e.reserved = ++p->reserved;
        e.sold = p->sold;
        e.occurred_at = at;
        inv(codec, &e);
        ord_order o;
        memset(&o, 0, sizeof o);
        snprintf(o.order_id, sizeof o.order_id, "%s", e.order_id);
        snprintf(o.member_id, sizeof o.member_id, "%s", e.member_id);
        o.status = ORD_PENDING;
        o.amount = 1000;
        o.pay_by = e.pay_by;
        o.nlines = 1;
        snprintf(o.lines[0].product_id, sizeof o.lines[0].product_id, "%s", p->id);
        o.lines[0].quantity = 1;
        o.lines[0].unit_price = 1000;
        o.lines[0].state = LINE_RESERVED;
        snapshot(codec, &o, ORD_RESERVED);
        o.payment_attempts = 1;
        snapshot(codec, &o, ORD_PAYING);
        paid(codec, &o);
        o.lines[0].state = LINE_COMMITTED;
        snapshot(codec, &o, ORD_PAID);
        e.type = INV_EV_COMMITTED;
        e.command_offset = 2 * n + 1;
        e.reserved = --p->reserved;
        e.sold = ++p->sold;
        e.occurred_at = at + 1000;
        inv(codec, &e);
        rd_kafka_poll(producer, 0);
        int64_t now = fs_mono_ms();
        if (rate > 0) { /* pace: never ahead of rate * elapsed */
            double due_ms = (double)(produced - start) * 1000.0 / rate;
            if (due_ms > (double)(now - t0) + 1)
                usleep((useconds_t)((due_ms - (double)(now - t0)) * 1000));
        }
        if (now - last >= 1000) {
            last = now;
            fprintf(stderr, "flashsale-synth: %ld/%ld orders, %llu events, %.0f events/s\n", n + 1,
                    orders, (unsigned long long)produced,
                    (double)(produced - start) * 1000.0 / (double)(now - t0 + 1));
        }
    }
    if (rd_kafka_flush(producer, 120000)) {
        fprintf(stderr, "flashsale-synth: not every event was delivered\n");
        return 1;
    }
    int64_t ms = fs_mono_ms() - t0;
    printf("{\"orders\":%ld,\"products\":%ld,\"events\":%llu,\"seconds\":%.3f,\"events_per_s\":%.0f}\n",
           orders, nproducts, (unsigned long long)produced, (double)ms / 1000.0,
           (double)(produced - start) * 1000.0 / (double)(ms ? ms : 1));
    rd_kafka_destroy(producer);
    fs_codec_destroy(codec);
    free(ps);
    return 0;
}
