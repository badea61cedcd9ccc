/* Writes the seed corpora of the fuzz harnesses: make_seeds DIR writes DIR/<harness>/<name>
 * (make fuzz-seeds: DIR = tests/fuzz/corpus). Deterministic: the same build writes the
 * same bytes, so regenerating shows as a change only when the schemas or encoders changed.
 *   avro       a sample record of every schema, reader and older writer versions
 *              (tests/support/sample_value.c), and a record of every typed message made by
 *              its encoder (so that the typed round trip starts from messages it accepts)
 *   jwt        Authorization headers: tokens signed with FZ_JWT_SECRET (operator, admin,
 *              login session), with claims the verifier must refuse, other algorithms, another
 *              secret, and headers that are not bearer tokens
 *   inventory  command programs (fuzz_inventory.c's byte layout): a product's whole life,
 *              and orders outliving the deduplication window and the sold-line memory
 *   saga       input programs (fuzz_saga.c's byte layout): a paid, delivered and returned
 *              order, a checkout that fails and compensates, payment retries
 *   http       one valid body for every route of fuzz_http.c, and a few invalid ones */
#include "fuzz.h"
#include "sample_value.h"

#include "flashsale/inventory_codec.h"
#include "flashsale/messages.h"
#include "flashsale/order.h"

#include "fs/codec.h"

#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *root;
static fs_codec *codec;
static int failures;

static void put(const char *harness, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, harness);
    if (mkdir(path, 0755) && errno != EEXIST)
        perror(path);
    snprintf(path, sizeof path, "%s/%s/%s", root, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        perror(path);
        failures++;
    }
    if (f)
        fclose(f);
}

static void put_text(const char *harness, const char *name, const char *text)
{
    put(harness, name, text, strlen(text));
}

/* ---- avro ------------------------------------------------------------------------------- */

static void sample_records(void)
{
    fs_err err = {0};
    for (size_t i = 0; i < fs_codec_count(codec); i++) {
        const fs_schema *s = fs_codec_at(codec, i);
        avro_value_t v;
        void *buf;
        size_t len;
        char name[256];
        if (fs_schema_value_new(s, &v, &err) || fs_test_fill(&v, (int)i + 1) ||
            fs_codec_encode(s, &v, &buf, &len, &err)) {
            fprintf(stderr, "%s: %s\n", fs_schema_fullname(s), err.msg);
            failures++;
            continue;
        }
        snprintf(name, sizeof name, "sample-%s-%016llx", fs_schema_fullname(s),
                 (unsigned long long)fs_schema_fingerprint(s));
        put("avro", name, buf, len);
        free(buf);
        avro_value_decref(&v);
    }
}

/* Writes one typed message's bytes (enc returned rc). */
static void typed(const char *name, int rc, void *buf, size_t len, const fs_err *err)
{
    char file[128];
    if (rc) {
        fprintf(stderr, "typed %s: %s\n", name, err->msg);
        failures++;
        return;
    }
    snprintf(file, sizeof file, "typed-%s", name);
    put("avro", file, buf, len);
    free(buf);
}

#define TYPED(name, encode, msg)                                                                   \
    do {                                                                                           \
        void *buf_ = NULL;                                                                         \
        size_t len_ = 0;                                                                           \
        fs_err err_ = {0};                                                                         \
        int rc_ = encode(codec, msg, &buf_, &len_, &err_);                                         \
        typed(name, rc_, buf_, len_, &err_);                                                       \
    } while (0)

static void typed_inventory(void)
{
    for (int t = 0; t < INV_CMD_COUNT; t++) {
        inv_command c = {.type = (inv_cmd_type)t, .product_id = "p1", .order_id = "o1",
                         .member_id = "m1", .actor_id = "admin", .reason = "EXPIRED",
                         .quantity = 2, .item_index = 1, .item_count = 3, .stock = 100,
                         .requested_at = 1795000001000LL, .offset = -1,
                         .dedup_window_ms = 3600000, .sold_memory_ms = 864000000};
        c.f = (inv_product_fields){.has_name = true, .has_price = true, .has_starts = true,
                                   .has_limit = true, .name = "Sneaker", .currency = "KRW",
                                   .price = 129000, .sale_starts_at = 1795000000000LL,
                                   .per_user_limit = 2};
        TYPED(inv_cmd_name(c.type), inv_command_encode, &c);
    }
    for (int t = 0; t < INV_EV_COUNT; t++) {
        inv_event e = {.type = (inv_event_type)t, .product_id = "p1", .order_id = "o1",
                       .member_id = "m1", .actor_id = "admin", .release_reason = "EXPIRED",
                       .command_type = "ReserveStock", .detail = "no live reservation",
                       .quantity = 2, .item_index = 1, .item_count = 3, .stock = 100,
                       .available = 90, .reserved = 8, .sold = 2, .pay_by = 1795000601000LL,
                       .unit_price = 129000, .command_offset = 42,
                       .occurred_at = 1795000001000LL, .reason = INV_R_SOLD_OUT,
                       .dedup_window_ms = 3600000, .sold_memory_ms = 864000000};
        e.f = (inv_product_fields){.has_name = true, .has_ends = true, .name = "Sneaker",
                                   .currency = "KRW", .price = 129000,
                                   .sale_starts_at = 1795000000000LL,
                                   .sale_ends_at = 1795086400000LL};
        TYPED(inv_event_name(e.type), inv_event_encode, &e);
    }
}

static void typed_orders(void)
{
    ord_order o = {.order_id = "o1", .member_id = "m1", .status = ORD_PAID,
                   .previous = ORD_PAYING, .pay_by = 1795000601000LL, .amount = 258000,
                   .deadline = 1795086401000LL, .payment_attempts = 1,
                   .restock_on_return = true, .nlines = 2, .occurred_at = 1795000002000LL};
    o.lines[0] = (ord_line){"p1", 1, 129000, LINE_COMMITTED, ""};
    o.lines[1] = (ord_line){"p2", 1, 129000, LINE_RESERVED, ""};
    TYPED("OrderStatusChanged", ord_encode, &o);
    for (int t = 0; t < ORD_CMD_COUNT; t++) {
        ord_command c = {.type = (ord_cmd_type)t, .order_id = "o1", .member_id = "m1",
                         .method = "CARD", .reason = "too small", .idempotency_key = "k-1",
                         .restock = true, .nitems = 2, .requested_at = 1795000001000LL};
        c.items[0] = (ord_item){"p1", 2};
        c.items[1] = (ord_item){"p2", 1};
        TYPED(ord_cmd_name(c.type), ord_command_encode, &c);
    }
    ord_rejection r = {"o1", "m1", "PayOrder", "PAYMENT_IN_PROGRESS", "PAYING", 1795000003000LL};
    TYPED("OrderCommandRejected", ord_rejection_encode, &r);
    ord_answer a = {"o1", "m1", "p1", 1, "RESERVED", "", 1795000601000LL, "reply", 201,
                    1795000001500LL};
    TYPED("OrderAnswered", ord_answer_encode, &a);
}

static void typed_payments_notifications_members(void)
{
    for (int t = 0; t < PAY_CMD_COUNT; t++) {
        pay_command c = {(pay_cmd_type)t, "o1", "m1", 258000, "CARD", "RETURNED", 1,
                         1795000002000LL};
        TYPED(pay_cmd_name(c.type), pay_command_encode, &c);
    }
    for (int t = 0; t < PAY_EV_COUNT; t++) {
        pay_event e = {(pay_event_type)t, "o1", "m1", 258000, "pay-1", "DECLINED", true, 1,
                       1795000002500LL};
        TYPED(pay_event_name(e.type), pay_event_encode, &e);
    }
    fs_notification n = {.notification_id = "n-1", .member_id = "m1", .kind = "ORDER_PAID",
                         .email = "kim@example.com", .occurred_at = 1795000003000LL};
    fs_notification_param(&n, "order_id", "o1");
    fs_notification_param(&n, "status", "PAID");
    TYPED("NotificationRequested", fs_notification_encode, &n);
    for (int t = 0; t < MEM_EV_COUNT; t++) {
        mem_event e = {.type = (mem_event_type)t, .member_id = "m1", .role = "member",
                       .nfields = 2, .fields = {"name", "phone"}, .occurred_at = 1795000004000LL};
        TYPED(mem_event_name(e.type), mem_event_encode, &e);
    }
}

/* ---- jwt -------------------------------------------------------------------------------- */

#define ISSUED 1790000000L
#define TEN_YEARS (10L * 365 * 86400)

/* A token with these claims (JSON) under alg and key; written as "Bearer <token>". */
static void token(const char *name, const char *claims, jwt_alg_t alg, const char *key)
{
    jwt_t *jwt = NULL;
    char *t = NULL, *header = NULL;
    if (jwt_new(&jwt) || jwt_add_grants_json(jwt, claims) ||
        jwt_set_alg(jwt, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0) ||
        !(t = jwt_encode_str(jwt)) || asprintf(&header, "Bearer %s", t) < 0) {
        fprintf(stderr, "jwt %s: cannot make it\n", name);
        failures++;
    } else {
        put_text("jwt", name, header);
    }
    free(header);
    free(t);
    jwt_free(jwt);
}

static void jwt_seeds(void)
{
    char c[512];
    const char *s = FZ_JWT_SECRET;
    long exp = ISSUED + TEN_YEARS;
#define CLAIMS(...) (snprintf(c, sizeof c, __VA_ARGS__), c)
    token("member", CLAIMS("{\"sub\":\"m-1\",\"role\":\"member\",\"iat\":%ld,\"exp\":%ld}", ISSUED, exp),
          JWT_ALG_HS256, s);
    token("admin", CLAIMS("{\"sub\":\"ops\",\"role\":\"admin\",\"iat\":%ld,\"exp\":%ld}", ISSUED, exp),
          JWT_ALG_HS256, s);
    token("session", CLAIMS("{\"sub\":\"m-2\",\"role\":\"member\",\"iat\":%ld,\"exp\":%ld,"
                             "\"sid\":\"s-1\",\"gen\":3}", ISSUED, exp),
          JWT_ALG_HS256, s);
    token("expired", CLAIMS("{\"sub\":\"m-1\",\"role\":\"member\",\"exp\":%ld}", 1600000000L),
          JWT_ALG_HS256, s);
    token("no-sub", CLAIMS("{\"role\":\"member\",\"exp\":%ld}", exp), JWT_ALG_HS256, s);
    token("role-root", CLAIMS("{\"sub\":\"m-1\",\"role\":\"root\",\"exp\":%ld}", exp), JWT_ALG_HS256, s);
    token("exp-text", "{\"sub\":\"m-1\",\"role\":\"member\",\"exp\":\"never\"}", JWT_ALG_HS256, s);
    token("sub-64", CLAIMS("{\"sub\":\"%064d\",\"role\":\"member\",\"exp\":%ld}", 7, exp),
          JWT_ALG_HS256, s);
    token("sid-no-gen", CLAIMS("{\"sub\":\"m-1\",\"role\":\"member\",\"exp\":%ld,\"sid\":\"s-1\"}", exp),
          JWT_ALG_HS256, s);
    token("sid-negative-gen",
          CLAIMS("{\"sub\":\"m-1\",\"role\":\"member\",\"exp\":%ld,\"sid\":\"s-1\",\"gen\":-1}", exp),
          JWT_ALG_HS256, s);
    token("sid-empty", CLAIMS("{\"sub\":\"m-1\",\"role\":\"member\",\"exp\":%ld,\"sid\":\"\",\"gen\":1}", exp),
          JWT_ALG_HS256, s);
    token("hs512", CLAIMS("{\"sub\":\"m-1\",\"role\":\"member\",\"exp\":%ld}", exp), JWT_ALG_HS512, s);
    token("alg-none", CLAIMS("{\"sub\":\"m-1\",\"role\":\"admin\",\"exp\":%ld}", exp), JWT_ALG_NONE, NULL);
    token("other-secret", CLAIMS("{\"sub\":\"m-1\",\"role\":\"admin\",\"exp\":%ld}", exp), JWT_ALG_HS256,
          "another-secret-0123456789abcdefghijklmnopqrstuvwxyz");
#undef CLAIMS
    put_text("jwt", "empty", "");
    put_text("jwt", "bearer-only", "Bearer ");
    put_text("jwt", "basic", "Basic dXNlcjpwYXNz");
    put_text("jwt", "three-dots", "bearer   a.b.c");
}

/* ---- programs for the sequence harnesses ------------------------------------------------ */

#define PROGRAM(harness, name, ...)                                                                \
    do {                                                                                           \
        static const uint8_t p_[] = {__VA_ARGS__};                                                 \
        put(harness, name, p_, sizeof p_);                                                         \
    } while (0)

/* fuzz_inventory.c: per step a tick (1 = 1 s, 6 = 10 days, 7 = 30 days), then 0 for a
 * snapshot (3 more bytes), 15 for a forged event (type, product, [order], member, quantity,
 * item, stock, reason, product fields) or anything else for a command: type, product, then
 * the type's choices. */
#define I_DEFINE(prod, stock, limit) 1, 1, 0, prod, stock, 1, 0, 1, 0, 0, 0, limit
#define I_RESERVE(prod, order, member, qty) 1, 1, 5, prod, order, member, qty, 0, 0, 1
#define I_COMMIT(prod, order) 1, 1, 6, prod, order, 0, 0
#define I_RELEASE(prod, order) 1, 1, 7, prod, order, 0, 1
#define I_RESTOCK_ORDER(prod, order) 1, 1, 2, prod, 0, 1, order, 0
#define I_PAUSE(prod) 1, 1, 3, prod
#define I_RESUME(prod) 1, 1, 4, prod
#define I_UPDATE(prod) 1, 1, 1, prod, 0x3f, 1, 1, 0, 2, 1, 2, 2
#define I_SNAPSHOT 1, 0, 0x12, 0x34, 7
#define I_WAIT_30_DAYS 7, 1, 3, 0
#define I_FORGED(type, prod, order, qty, stock) 1, 15, type, prod, 1, order, 0, qty, 0, stock, 0, \
    1, 0, 0, 0, 0, 0, 0

static void inventory_seeds(void)
{
    PROGRAM("inventory", "life-of-a-product", I_DEFINE(0, 0, 1), I_RESERVE(0, 0, 0, 1),
            I_RESERVE(0, 1, 1, 2), I_RESERVE(0, 2, 2, 0), I_RESERVE(0, 0, 0, 1), I_COMMIT(0, 0),
            I_RELEASE(0, 1), I_RESTOCK_ORDER(0, 0), I_SNAPSHOT, I_PAUSE(0), I_RESERVE(0, 3, 3, 0),
            I_RESUME(0), I_UPDATE(0), I_RESERVE(0, 3, 3, 0), I_COMMIT(0, 3), I_RELEASE(0, 3));
    PROGRAM("inventory", "sold-out-and-limits", I_DEFINE(1, 1, 2), I_RESERVE(1, 0, 0, 0),
            I_RESERVE(1, 1, 1, 0), I_RESERVE(1, 2, 0, 6), I_DEFINE(2, 3, 1), I_RESERVE(2, 0, 0, 2),
            I_RESERVE(2, 1, 0, 3), I_RESERVE(2, 2, 1, 0), I_RESERVE(2, 3, 2, 0), I_RESERVE(2, 0, 3, 0));
    PROGRAM("inventory", "orders-outlive-memory", I_DEFINE(0, 3, 0), I_RESERVE(0, 4, 0, 1),
            I_COMMIT(0, 4), I_RESERVE(0, 5, 1, 0), I_COMMIT(0, 5), I_SNAPSHOT, I_WAIT_30_DAYS,
            I_RESERVE(0, 6, 0, 0), I_WAIT_30_DAYS, I_RESERVE(0, 4, 0, 0), I_RESTOCK_ORDER(0, 4),
            I_WAIT_30_DAYS, I_RESERVE(0, 7, 2, 0), I_COMMIT(0, 7), I_SNAPSHOT, I_WAIT_30_DAYS,
            I_RESTOCK_ORDER(0, 5), I_RESERVE(0, 5, 1, 0));
    /* a corrupt changelog: a commit and a release of a line twice, a definition with a
     * negative stock, a reservation of more than there is, a restock past INT32_MAX */
    PROGRAM("inventory", "forged-events", I_DEFINE(0, 0, 0), I_RESERVE(0, 0, 0, 1),
            I_FORGED(INV_EV_COMMITTED, 0, 0, 1, 0), I_FORGED(INV_EV_COMMITTED, 0, 0, 1, 0),
            I_FORGED(INV_EV_RELEASED, 0, 0, 0, 0), I_FORGED(INV_EV_DEFINED, 1, 0, 0, 2),
            I_FORGED(INV_EV_RESERVED, 0, 1, 4, 0), I_FORGED(INV_EV_RESTOCKED, 0, 1, 4, 0),
            I_FORGED(INV_EV_RESTOCKED, 0, 0, 0, 0), I_RESERVE(0, 2, 1, 0));
}

/* fuzz_saga.c: auto-pay, attempts; per step the order (0-3), [the new order's line count],
 * the line, the tick (1 = 1 s, 5 = a day), the kind, then the kind's choices. */
#define S_RESERVED(k) k, 0, 1, 1, 5, 0, 0, 0, 0, 1
#define S_PAY(k) k, 1, 1, 2, 0, 1, 1, 0
#define S_PAID(k) k, 1, 1, 3, 0, 1, 0
#define S_COMMITTED(k, line) k, line + 1, 1, 1, 2, 0, 0, 0
#define S_TIMER(k) k, 1, 5, 4, 1
#define S_RETURN(k) k, 1, 1, 2, 2, 1, 0, 0
#define S_COMPLETE_RETURN(k) k, 1, 1, 2, 3, 1, 0, 1
#define S_FAILED(k, retriable) k, 1, 1, 3, 1, 1, retriable
#define S_CHECKOUT3(k) k, 2, 1, 1, 0, 1, 2, 0, 1, 2
#define S_DECIDE(k, line, reserved) k, line + 1, 1, 5, 0, 0, 0, 0, reserved

static void saga_seeds(void)
{
    PROGRAM("saga", "paid-delivered-returned", 0, 2, S_RESERVED(0), S_PAY(0), S_PAID(0),
            S_COMMITTED(0, 0), S_TIMER(0), S_TIMER(0), S_RETURN(0), S_COMPLETE_RETURN(0));
    PROGRAM("saga", "checkout-compensation", 0, 2, S_CHECKOUT3(1), S_DECIDE(1, 0, 1),
            S_DECIDE(1, 1, 0), S_DECIDE(1, 2, 1), S_CHECKOUT3(2), S_DECIDE(2, 0, 1),
            S_DECIDE(2, 1, 1), S_DECIDE(2, 2, 1), S_PAY(2), S_PAID(2));
    PROGRAM("saga", "payment-retries", 1, 2, S_RESERVED(3), S_FAILED(3, 1), S_FAILED(3, 1),
            S_FAILED(3, 1), S_RESERVED(0), S_TIMER(0), S_FAILED(0, 0));
}

/* fuzz_http.c: route, Content-Type (0 = application/json), declared length (0 = exact),
 * read size (3 = 2101 bytes), X-Request-Id (1 = none), body. */
static void http(const char *name, int route, const char *body)
{
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%c%c%c%c%c%s", route, 0, 0, 3, 1, body);
    put("http", name, buf, (size_t)n);
}

static void http_seeds(void)
{
    http("products-create", 0,
         "{\"name\":\"Sneaker\",\"description\":\"line one\\nline two\",\"currency\":\"KRW\","
         "\"price\":129000,\"sale_starts_at\":\"2026-11-21T08:00:00Z\",\"sale_ends_at\":1795000000000,"
         "\"per_user_limit\":2,\"stock\":100}");
    http("products-update", 1, "{\"name\":\"New\",\"sale_ends_at\":\"2026-11-22T08:00:00.500+09:00\"}");
    http("products-restock", 2, "{\"quantity\":5}");
    http("orders-create", 3, "{\"product_id\":\"01890a5d-ac96-774b-bcce-b302099a8057\",\"quantity\":1}");
    http("orders-checkout", 3,
         "{\"items\":[{\"product_id\":\"p1\",\"quantity\":2},{\"product_id\":\"p2\",\"quantity\":1}]}");
    http("orders-action", 4, "{\"method\":\"CARD\",\"restock\":false}");
    http("members-signup", 5,
         "{\"email\":\"kim@example.com\",\"password\":\"correct horse\",\"name\":\"Kim\","
         "\"phone\":\"+82-10-1234-5678\"}");
    http("members-verify", 6, "{\"email\":\"kim@example.com\",\"code\":\"123456\"}");
    http("members-resend", 7, "{\"email\":\"kim@example.com\"}");
    http("members-password", 8, "{\"old_password\":\"a\",\"new_password\":\"b\"}");
    http("members-patch", 9, "{\"name\":\"Lee\",\"phone\":null}");
    http("members-delete", 10, "{\"password\":\"x\"}");
    http("auth-login", 11, "{\"email\":\"kim@example.com\",\"password\":\"pw\",\"device\":\"phone\"}");
    http("auth-refresh", 12, "{\"refresh_token\":\"abc\"}");
    http("wishlist-add", 13, "{\"product_id\":\"p1\"}");
    http("paging", 14, "limit=20&cursor=01890a5d-ac96-774b-bcce-b302099a8057");
    http("bad-json", 0, "{\"name\":");
    http("control-character", 0, "{\"name\":\"A\\u0007B\",\"price\":1,\"sale_starts_at\":0,\"stock\":1}");
    http("nul-in-string", 5, "{\"email\":\"a\\u0000b\"}");
    http("wrong-types", 1, "{\"name\":7,\"price\":\"7\",\"sale_starts_at\":-1}");
    http("february-30", 1, "{\"sale_starts_at\":\"2026-02-30T00:00:00Z\"}");
}

int main(int argc, char **argv)
{
    fs_err err = {0};
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    root = argv[1];
    if (mkdir(root, 0755) && errno != EEXIST) {
        perror(root);
        return 1;
    }
    codec = fs_codec_new(&err);
    if (!codec) {
        fprintf(stderr, "codec: %s\n", err.msg);
        return 1;
    }
    sample_records();
    typed_inventory();
    typed_orders();
    typed_payments_notifications_members();
    jwt_seeds();
    inventory_seeds();
    saga_seeds();
    http_seeds();
    fs_codec_destroy(codec);
    return failures ? 1 : 0;
}
