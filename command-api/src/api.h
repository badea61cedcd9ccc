/* Shared context and request helpers of flashsale-api's handlers.
 * Every handler runs on a civetweb worker thread and finishes its own request: it may wait
 * for its own command's decision (bounded), never for another request. */
#ifndef FS_API_API_H
#define FS_API_API_H
#include "bus.h"
#include "health.h"
#include "http.h"

#include "fs/codec.h"
#include "fs/config.h"
#include "fs/db.h"
#include "fs/jwt.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <jansson.h>
#include <stdbool.h>

typedef struct api_accounts api_accounts; /* accounts.h */

typedef struct {
    fs_common_config cfg;
    const char *jwt_secret;
    fs_codec *codec;
    api_bus *bus;
    fs_health *health;
    long decision_wait_ms; /* FLASHSALE_DECISION_WAIT_MS */
    long drain_ms;         /* FLASHSALE_DRAIN_MS: a stop finishes what was begun within this */
    long max_body;         /* FLASHSALE_HTTP_MAX_BODY */
    /* members and sessions (accounts.h): keys, password hashing, the member cache, rate
     * limits and the outbox relay, made by api_accounts_new in main.c */
    api_accounts *accounts;
    long access_ttl_s, refresh_ttl_s, code_ttl_s, code_max_attempts;
    /* rate limits: login failures per account and attempts per IP (per minute), sign-ups
     * and verification attempts per IP (per minute), orders per member and per IP (per
     * second, with bursts); 0 switches one off */
    long rate_login_account, rate_login_ip, rate_signup_ip;
    long rate_order_member, rate_order_member_burst, rate_order_ip, rate_order_ip_burst;
    long rate_write_member, rate_write_member_burst; /* profile, password, wishlist, order actions, logout */
} api_ctx;

/* Verifies the bearer token; with role "admin" also the role. On failure the 401/403 is
 * already sent and false returned. */
bool api_auth(fs_http_req *req, api_ctx *a, const char *role, fs_principal *who);
/* Reads and parses a JSON object body (Content-Type application/json, at most max_body
 * bytes). On failure the 400/413/415 is already sent and NULL returned. */
json_t *api_read_json(fs_http_req *req, api_ctx *a);
/* This thread's Redis connection (connected on first use, reconnected after errors);
 * NULL with *err if Redis is unreachable. */
redisContext *api_redis(api_ctx *a, fs_err *err);
void api_redis_drop(void);
/* A PostgreSQL connection from the API's pool for the rest of this request (the same one
 * on every call until released); NULL with *err when none is free within
 * FLASHSALE_PG_POOL_WAIT_MS or PostgreSQL is unreachable: answer 503 with Retry-After. */
PGconn *api_pg(api_ctx *a, fs_err *err);
/* Hands this thread's connection back to the pool (rolled back if a transaction is open).
 * Called after every request; a handler calls it itself before a long wait that needs no
 * connection (a password hash), and must not use the old handle afterwards. */
void api_pg_release(void);
void api_pg_pool_set(fs_pg_pool *pool, long wait_ms);
/* Classes a failed statement of the API (fs_err_from_pg, widened): RETRIABLE also for errors
 * libpq made itself (no SQLSTATE: the connection), lack of resources (53), locks, cancels,
 * statement timeouts and shutdowns (55, 57), system errors (58), a read-only server (25006:
 * a standby) and a table or column that does not exist yet (42P01, 42703: the read model's
 * tables are the projector's); INVALID for a value or a constraint PostgreSQL refused (22,
 * 23); FATAL for the rest (a wrong statement, a missing privilege). Returns -1. */
int api_pg_error(fs_err *err, const PGconn *c, const PGresult *r, const char *what);

/* Paging: ?limit=1..100 (default 20) and ?cursor=<id from next_cursor>. On a bad value the
 * 400 is sent and false returned. */
bool api_paging(fs_http_req *req, int *limit, char *cursor, size_t cursor_len);

/* Field readers for request bodies: on a wrong type the error response is sent and false
 * returned. `required` missing -> 400 MISSING_FIELD. *present (may be NULL) tells whether
 * the field was given. */
bool api_field_string(fs_http_req *req, json_t *body, const char *name, bool required,
                      size_t max_len, const char **out, bool *present);
/* api_field_string for text that people read or that reaches mail headers (names,
 * descriptions, profiles): control characters (C0, DEL) are refused with 400 INVALID_FIELD;
 * multi_line lets newlines and tabs through (descriptions). */
bool api_field_text(fs_http_req *req, json_t *body, const char *name, bool required, size_t max_len,
                    bool multi_line, const char **out, bool *present);
bool api_field_int(fs_http_req *req, json_t *body, const char *name, bool required, long long min,
                   long long max, long long *out, bool *present);
/* A time: an RFC 3339 string or integer milliseconds since the epoch. */
bool api_field_time(fs_http_req *req, json_t *body, const char *name, bool required, int64_t *out,
                    bool *present);

int api_products_create(struct mg_connection *conn, void *cb);
int api_products_item(struct mg_connection *conn, void *cb); /* /api/products/{id}[/...] */
int api_orders_create(struct mg_connection *conn, void *cb);
void api_orders_metrics_init(void); /* at start, before the server */

/* POST /api/orders in steps, for a server that does not sleep through the decision wait (the
 * order front, front.h); api_orders_create runs the same steps on one civetweb thread. */
#define ORDER_WAITING 0
#define ORDER_BLOCKS (-2)
typedef struct {
    api_ctx *a;
    fs_http_req *req;         /* the caller's; lives until the answer is sent */
    int64_t t0;               /* monotonic ms: the request taken up */
    double t0_us;
    fs_principal who;
    json_t *body;             /* a checkout's body (ORDER_BLOCKS) */
    api_waiter *w;            /* ORDER_WAITING: what to wait on, until when, and for what */
    int64_t deadline;
    bool need_decision, existing;
    char order_id[INV_ID_MAX], pid[INV_ID_MAX], idem[129];
    int32_t qty;
    int64_t accept_by;
} api_order_call;
int api_order_begin(api_order_call *c, bool may_block);
int api_order_end(api_order_call *c, const api_wait_result *r);
/* After ORDER_BLOCKS, on a thread that may sleep: a checkout's answer (its status), or the
 * order taken up again from the start (api_order_begin's result, ORDER_WAITING included). */
int api_order_run_blocking(api_order_call *c);
/* Records the answer's time (request taken up -> response written) when status is an
 * order's answer (201, 202, 409); returns status. */
int api_order_timed(const api_order_call *c, int status);
int api_orders_item(struct mg_connection *conn, void *cb);
int api_products_list(fs_http_req *req, api_ctx *a);  /* GET /api/products */
int api_orders_list(fs_http_req *req, api_ctx *a);    /* GET /api/orders */

#endif
