/* Inventory state of the products of one partition, and the decision rules.
 *
 * Event-sourced: inv_decide() looks at the state and a command and produces the one event
 * that answers it (never changing the state); inv_apply() changes the state by an event.
 * The processor does decide -> produce -> apply; rebuilding a partition is apply() over its
 * changelog; the audit replays the same code. Both functions are pure (no I/O, no clock):
 * decisions use the time stamped into the command, so a replay decides the same.
 *
 * Invariants kept (per product): available, reserved, sold >= 0;
 * available + reserved + sold == stock (initial + restocked); a member's live units
 * (reserved + sold, minus restocked returns) never exceed per_user_limit when it is > 0;
 * SOLD_OUT only when available == 0. Each (order, item) gets at most one decision:
 * a repeated ReserveStock for an already decided line, or for a line the product still
 * holds (reserved or sold), yields no event.
 *
 * Bounded memory (docs/architecture.md, "Bounded state"): the state's clock is the log's,
 * H = the greatest occurred_at applied (commands carry the time they were made) of the
 * events that name a product (not RetentionSet: an operator's clock is not the shop's). An order's
 * time is the one in its id (UUIDv7), or its command's requested_at for other ids. Two
 * windows, state of the partition set by its log (SetRetention -> RetentionSet; until then
 * INV_DEDUP_WINDOW_MS and INV_SOLD_MEMORY_MS):
 * - Decided lines are remembered for the deduplication window: a ReserveStock whose order is
 *   older than the refusal point is refused (CommandRejected, INVALID) without deciding the
 *   line, so a line forgotten can never be decided twice. The refusal point is
 *   max(itself, H - window), kept as it moves: it never goes back, not even when the window
 *   is lengthened.
 * - A sold (committed) line is kept for the sold-line memory after its order's time, for its
 *   return (restock) and for the per-user limit; then it is dropped in the order it was
 *   sold, and its units stop counting against the member's limit. Live (unpaid)
 *   reservations are kept until they are committed or released.
 * Both depend only on the events applied, so the processor, a rebuild, a snapshot and the
 * audit's replay agree.
 *
 * Threads: one inv_state is used by one thread at a time. */
#ifndef FLASHSALE_INVENTORY_H
#define FLASHSALE_INVENTORY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INV_ID_MAX 64
#define INV_NAME_MAX 256
/* Bounds that keep every order amount (lines x quantity x unit price) inside int64: the API
 * refuses a price or quantity above them with 422, the processor refuses to reserve beyond
 * them (INVALID: also for a product priced higher before the bound existed), and the order
 * saga asserts at compile time that the product of the bounds fits. */
#define INV_MAX_PRICE 100000000000LL /* 1e11 per unit */
#define INV_MAX_QUANTITY 1000000     /* per line */
#define INV_DESC_MAX 2048
/* A second ReserveStock for a line comes from a retry within seconds (the idempotent
 * producer, message.timeout.ms 10 s) or never (the API maps a repeated Idempotency-Key to
 * the same order for 24 h; the saga sends each line once, exactly once); a replayed
 * command log is caught by command offset. One day is far beyond all of them. */
#define INV_DEDUP_WINDOW_MS (24LL * 3600 * 1000) /* the default, until a RetentionSet */
/* Longer than the payment window (<= 7 days), delivery and the longest return window the
 * order saga accepts (FLASHSALE_RETURN_WINDOW_DAYS <= 30). */
#define INV_SOLD_MEMORY_MS (45LL * 24 * 3600 * 1000) /* the default, until a RetentionSet */
/* The range SetRetention accepts for either window (else CommandRejected, INVALID): a
 * minute is the shortest (a producer's retry of a ReserveStock comes within
 * FLASHSALE_COMMAND_TIMEOUT_MS, 2 s by default; a shorter window would refuse orders
 * still on their way), ten years the longest. */
#define INV_RETENTION_MIN_MS 60000LL
#define INV_RETENTION_MAX_MS (3650LL * 24 * 3600 * 1000)
/* Both windows inside that range: the one rule of it (decide, apply, snapshot load, tools). */
bool inv_retention_valid(int64_t dedup_window_ms, int64_t sold_memory_ms);

/* Same order as the symbols of flashsale.inventory.RejectReason. */
typedef enum {
    INV_R_SOLD_OUT,
    INV_R_LIMIT_EXCEEDED,
    INV_R_NOT_ON_SALE,
    INV_R_UNKNOWN_PRODUCT,
    INV_R_PAUSED,
    INV_R_INVALID,
    INV_R_ALREADY_EXISTS,
    INV_R_UNKNOWN_RESERVATION,
    INV_R_INSUFFICIENT_STOCK,
    INV_R_TIMED_OUT, /* appended after the command's accept_by: see inv_command.accept_by */
    INV_R_COUNT
} inv_reason;
const char *inv_reason_name(inv_reason r);

/* How a rejected order is explained to the buyer, the one table of it: the stable error
 * code (the reason's name, except UNKNOWN_PRODUCT -> PRODUCT_NOT_FOUND and INVALID ->
 * INVALID_ORDER), its HTTP status (404, 422, else 409) and a message. */
typedef struct {
    const char *code;
    int http_status;
    const char *message;
} inv_reject_answer;
inv_reject_answer inv_reject_answer_of(inv_reason r);

typedef enum {
    INV_CMD_DEFINE,
    INV_CMD_UPDATE,
    INV_CMD_RESTOCK,
    INV_CMD_PAUSE,
    INV_CMD_RESUME,
    INV_CMD_RESERVE,
    INV_CMD_COMMIT,
    INV_CMD_RELEASE,
    INV_CMD_SET_RETENTION, /* names no product: addressed to a partition */
    INV_CMD_COUNT
} inv_cmd_type;
/* Schema short name (= event-type header) of a command type. */
const char *inv_cmd_name(inv_cmd_type t);

typedef enum {
    INV_EV_DEFINED,
    INV_EV_UPDATED,
    INV_EV_RESTOCKED,
    INV_EV_PAUSED,
    INV_EV_RESUMED,
    INV_EV_RESERVED,
    INV_EV_REJECTED,
    INV_EV_COMMITTED,
    INV_EV_RELEASED,
    INV_EV_CMD_REJECTED,
    INV_EV_RETENTION_SET, /* names no product */
    INV_EV_COUNT
} inv_event_type;
const char *inv_event_name(inv_event_type t);

/* Descriptive product fields. In an update, has_* says which are set. */
typedef struct {
    bool has_name, has_description, has_price, has_starts, has_ends, has_limit;
    char name[INV_NAME_MAX];
    char description[INV_DESC_MAX];
    char currency[8];
    int64_t price;
    int64_t sale_starts_at;
    int64_t sale_ends_at; /* 0 = open ended */
    int32_t per_user_limit; /* 0 = no limit */
} inv_product_fields;

typedef struct {
    inv_cmd_type type;
    char product_id[INV_ID_MAX];
    char order_id[INV_ID_MAX]; /* reserve, commit, release; restock: optional */
    char member_id[INV_ID_MAX];
    char actor_id[INV_ID_MAX];
    char reason[32]; /* release */
    int32_t quantity, item_index, item_count, stock;
    int64_t requested_at;
    /* reserve: the command counts only if the broker appended its record by this time
     * (0 = no deadline); logged_at: the record's LogAppendTime, set by whoever read it from
     * the log (0 = unknown: the topic keeps CreateTime, or not read from the log). A
     * reserve with logged_at > accept_by > 0 is refused TIMED_OUT: the API answers 503 for
     * a command it could not get acknowledged only once accept_by has passed, so that no
     * later append can make an order of it (docs/architecture.md, "Honest answers"). */
    int64_t accept_by, logged_at;
    int64_t offset; /* of the command record in its partition (-1 if unknown) */
    int64_t dedup_window_ms, sold_memory_ms; /* SetRetention */
    inv_product_fields f; /* DefineProduct, UpdateProduct; last: see inv_command_used_size */
} inv_command;

typedef struct {
    inv_event_type type;
    char product_id[INV_ID_MAX];
    char order_id[INV_ID_MAX]; /* empty when none */
    char member_id[INV_ID_MAX];
    char actor_id[INV_ID_MAX];
    char release_reason[32];
    char command_type[32];
    char detail[160];
    int32_t quantity, item_index, item_count, stock;
    int32_t available, reserved, sold; /* counters after the event */
    int64_t pay_by, unit_price, command_offset, occurred_at;
    int64_t dedup_window_ms, sold_memory_ms; /* RetentionSet */
    inv_reason reason;
    inv_product_fields f; /* ProductDefined, ProductUpdated; last: see inv_event_used_size */
} inv_event;

/* The types that carry product fields (`f`): DefineProduct, UpdateProduct; ProductDefined,
 * ProductUpdated. The codec reads and writes `f` only for these, and inv_decide/inv_apply
 * read it only for these. */
bool inv_cmd_has_fields(inv_cmd_type t);
bool inv_event_has_fields(inv_event_type t);

/* The bytes that hold something: the whole struct for a type that carries product fields,
 * else everything before `f` (`f`, ~2.3 KB of name and description, is the last member):
 * ~360 of ~2,700 bytes for a command, ~570 of ~2,900 for an event. Nothing reads `f` of
 * another type, so a holder of many (the audit) keeps only these bytes and may hand them on
 * as a command or an event. */
size_t inv_command_used_size(const inv_command *c);
size_t inv_event_used_size(const inv_event *e);

typedef struct {
    char id[INV_ID_MAX];
    inv_product_fields f; /* name/description kept for the read side; decisions use the rest */
    bool paused;
    int32_t stock, available, reserved, sold;
} inv_product_view;

/* The sale window, the one rule of it: a command stamped `at` may buy when
 * sale_starts_at <= at < sale_ends_at (sale_ends_at 0 = open ended). */
bool inv_sale_open(const inv_product_fields *f, int64_t at);

/* A product's sale as shown to buyers at `now`, in this order of precedence: PAUSED,
 * UPCOMING (before the window), ENDED (after it), SOLD_OUT (available 0), ON_SALE. */
typedef enum {
    INV_SALE_ON_SALE,
    INV_SALE_UPCOMING,
    INV_SALE_ENDED,
    INV_SALE_PAUSED,
    INV_SALE_SOLD_OUT
} inv_sale_status;
inv_sale_status inv_sale_status_at(const inv_product_view *v, int64_t now);
const char *inv_sale_status_name(inv_sale_status s);

typedef struct inv_state inv_state;

/* payment_window_ms: pay_by = requested_at + window, stamped into StockReserved. */
inv_state *inv_state_new(int64_t payment_window_ms);
void inv_state_destroy(inv_state *s); /* NULL-safe */
/* A reader's view (the API's): the products, their fields and their counters, taken from the
 * events that carry them, and no line at all: no deduplication window, no reservations, no
 * sold lines, so its memory follows the products, not the orders. inv_apply() and the read
 * functions work on it (inv_state_held() is 0); inv_decide() must not be called on it.
 * inv_state_counters_of() makes one from a state (a snapshot read), or NULL (out of memory). */
inv_state *inv_state_new_counters(void);
inv_state *inv_state_counters_of(const inv_state *s);

typedef enum { INV_DECIDED, INV_DUPLICATE } inv_outcome;
/* Fills *ev with the answer to cmd. INV_DUPLICATE: the line was decided before; nothing to
 * emit. Never fails: an invalid command gets a rejection event. */
inv_outcome inv_decide(const inv_state *s, const inv_command *cmd, inv_event *ev);
/* Applies an event. Returns 0, or -1 if the event contradicts the state (a corrupt log:
 * the caller logs and dead-letters it; the state is unchanged). */
int inv_apply(inv_state *s, const inv_event *ev);

/* Read access (tests, audit, API view). Returns false if unknown. */
bool inv_state_product(const inv_state *s, const char *product_id, inv_product_view *out);
int32_t inv_state_held(const inv_state *s, const char *product_id, const char *member_id);
size_t inv_state_product_count(const inv_state *s);
/* Lines remembered as decided, and reservations held (live and sold), for metrics/tests. */
size_t inv_state_decided_count(const inv_state *s);
size_t inv_state_reservation_count(const inv_state *s);
/* The state's clock: the greatest occurred_at applied of an event naming a product (0 if
 * none). */
int64_t inv_state_horizon(const inv_state *s);
/* The windows in force (RetentionSet, else the defaults), and the refusal point: a
 * ReserveStock of an order older than it is refused (INT64_MIN while H is 0). */
int64_t inv_state_dedup_window(const inv_state *s);
int64_t inv_state_sold_memory(const inv_state *s);
int64_t inv_state_refuse_before(const inv_state *s);

/* Snapshot: the whole state as bytes (a versioned binary format private to this file), and
 * back. inv_state_load(save(s)) decides and applies every later command exactly as s would.
 * save returns 0 with a malloc'd *buf, or -1 (out of memory); load returns NULL if the bytes
 * are not a snapshot of this version (the caller then replays the changelog instead). */
int inv_state_save(const inv_state *s, void **buf, size_t *len);
inv_state *inv_state_load(const void *buf, size_t len, int64_t payment_window_ms);
/* Highest command_offset among the applied events (-1 if none): the processor skips
 * commands at or below it, so a lost or reset consumer offset cannot apply a command twice. */
int64_t inv_state_last_command_offset(const inv_state *s);

#endif
