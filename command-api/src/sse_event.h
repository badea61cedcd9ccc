/* The pure parts of GET /api/events (server-sent events; sse.h holds the server): no I/O,
 * no threads, no clock of their own, so that the unit tests (tests/unit/test_sse.c) reach
 * every rule.
 *
 * - Frames: "id: <epoch>-<seq>\nevent: <name>\ndata: <one JSON line>\n\n". <epoch> names
 *   the API process that numbered the event (its start time, base 36), <seq> counts that
 *   process's events from 1. An id of another process (a restart, another instance behind
 *   the edge) is never mistaken for one of ours: it cannot be resumed, the stream starts
 *   from the current state instead.
 * - The replay ring: the last `cap` events (every product and every member, each with the
 *   key a stream subscribes by: the product id or the member id), oldest overwritten
 *   first. A stream that names an id the ring still holds gets every later event of its
 *   keys, in order, then the live ones: no gap, no repeat.
 * - Counters per key (per member, per client address) with a limit.
 * - The request: the request line and the few headers the stream needs, parsed from the
 *   raw header block the event server read, and the error response in the API's format.
 * Ownership is stated per call; nothing here is thread-safe (the server holds the locks). */
#ifndef FS_API_SSE_EVENT_H
#define FS_API_SSE_EVENT_H
#include "flashsale/inventory.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SSE_MAX_PRODUCTS 50
#define SSE_ID_MAX 48      /* "<epoch>-<seq>" */
#define SSE_HEADER_MAX 8192 /* the whole request header block */

typedef enum { SSE_KIND_STOCK, SSE_KIND_ORDER } sse_kind;
const char *sse_kind_name(sse_kind k); /* "stock", "order" */

/* ---- frames ---- */

/* "<epoch>-<seq>" into out (SSE_ID_MAX bytes). */
void sse_id_format(uint64_t epoch, uint64_t seq, char *out);
/* Whether `id` (a Last-Event-ID, may be NULL) was numbered by the process `epoch`; then
 * *seq is its number. Anything else (another epoch, junk, an empty id) is false. */
bool sse_id_parse(const char *id, uint64_t epoch, uint64_t *seq);
/* A whole frame; malloc'd (caller frees), NULL when out of memory. *len its length. */
char *sse_frame(const char *id, sse_kind kind, const char *data, size_t *len);
/* The data of a stock event: {"product_id","available","reserved","sold","stock",
 * "sale_status","at"} with the sale status at `now` and `at` formatted (RFC 3339).
 * malloc'd, NULL when out of memory. */
char *sse_stock_data(const inv_product_view *v, int64_t now, int64_t at);
/* The data of an order event: {"order_id","status","version","at"} plus "reason" when one
 * is given (rejected, failed, expired). malloc'd or NULL. */
char *sse_order_data(const char *order_id, const char *status, const char *reason, int version,
                     int64_t at);
/* A heartbeat comment ": hb <now_ms>\n\n" into out (at least 40 bytes); its length. */
size_t sse_heartbeat(int64_t now_ms, char *out);

/* ---- the replay ring ---- */

typedef struct {
    uint64_t seq;
    sse_kind kind;
    char key[INV_ID_MAX]; /* product id (stock) or member id (order) */
    char *frame;          /* the whole frame, owned by the ring */
    size_t len;
} sse_entry;

typedef struct sse_ring sse_ring;

/* A ring of `cap` (>= 1) entries numbered by process `epoch`; NULL when out of memory. */
sse_ring *sse_ring_new(size_t cap, uint64_t epoch);
void sse_ring_destroy(sse_ring *r); /* NULL-safe; frees the frames */
/* Numbers the next event, frames it (the data is copied) and keeps it, overwriting the
 * oldest when full. Returns its seq, or 0 when out of memory (nothing kept, the number not
 * used). */
uint64_t sse_ring_push(sse_ring *r, sse_kind kind, const char *key, const char *data);
uint64_t sse_ring_head(const sse_ring *r);   /* the last seq pushed; 0: none yet */
uint64_t sse_ring_epoch(const sse_ring *r);
/* Whether every event after `seq` (up to the head) is still held: a resume from it is
 * gap-free. */
bool sse_ring_holds_after(const sse_ring *r, uint64_t seq);
/* The entry numbered seq, or NULL when it was overwritten or is not yet pushed. The
 * pointer is valid until the next push. */
const sse_entry *sse_ring_get(const sse_ring *r, uint64_t seq);

/* ---- counters per key ---- */

typedef struct sse_counts sse_counts;
sse_counts *sse_counts_new(void);
void sse_counts_destroy(sse_counts *c); /* NULL-safe */
/* Adds one to key unless it is already at `limit` (limit <= 0: no limit). false: refused
 * (or out of memory). */
bool sse_counts_take(sse_counts *c, const char *key, long limit);
/* Takes one away (the key is forgotten at zero). */
void sse_counts_put(sse_counts *c, const char *key);
long sse_counts_get(const sse_counts *c, const char *key);
size_t sse_counts_keys(const sse_counts *c); /* keys held (non-zero counts) */

/* ---- the request ---- */

typedef struct {
    char products[SSE_MAX_PRODUCTS][INV_ID_MAX];
    int nproducts;
    char last_event_id[SSE_ID_MAX + 16]; /* the header, else ?last_event_id=, else "" */
    char authorization[2048];            /* "" when absent */
    char forwarded_for[256];             /* X-Forwarded-For, "" when absent */
    char request_id[65];                 /* X-Request-Id when sane, else "" */
} sse_request;

typedef struct {
    int status; /* 0: parsed */
    const char *code, *message;
} sse_problem;

/* Parses a whole request header block (request line to the empty line, `len` bytes, not
 * NUL-terminated). GET /api/events only (405 METHOD_NOT_ALLOWED, 404 NOT_FOUND); the query
 * holds product=<id> at most SSE_MAX_PRODUCTS times (ids of letters, digits, '-' and '_',
 * repeated ones once) and last_event_id=; other parameters are ignored. A malformed product
 * or too many: 400 INVALID_FIELD. Header lines too long for their field: 431
 * HEADERS_TOO_LARGE. Returns the problem (status 0: *out filled). */
sse_problem sse_request_parse(const char *buf, size_t len, sse_request *out);

/* A whole error response (status line, headers, the API's JSON error body) with
 * Connection: close; extra_headers (may be NULL) are whole lines. malloc'd, NULL when out of
 * memory; *len its length. */
char *sse_error_response(int status, const char *code, const char *message, const char *request_id,
                         const char *extra_headers, size_t *len);
/* The header of a stream's response (200, text/event-stream, no caching, no buffering by a
 * proxy, Connection: close: the body ends when the stream does) and "retry: <ms>". */
char *sse_stream_head(const char *request_id, long retry_ms, size_t *len);

#endif
