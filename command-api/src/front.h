/* The order front: POST /api/orders served by an event loop of the API's own.
 *
 * Why: civetweb gives each request a thread that sleeps through the decision wait and is
 * woken by the decision's reply; at 1,000 orders/s those hand-offs were the API's largest
 * cost (perf/RESULTS.md: half of its samples in the kernel, a fifth in the task switch).
 * Here one thread (the loop) holds every connection with epoll. It reads a request,
 * runs the order's first steps (api_order_begin: token, rate limits, body, command produced)
 * and leaves the connection until the bus tells it that the wait is over
 * (api_bus_waiter_notify): the decision's reply, a failed delivery, or the wait's deadline,
 * from the loop's own timer. Then it writes the answer (api_order_end). A request never has
 * a thread of its own; the reply thread only queues the connection and wakes the loop once
 * for all that became ready together.
 *
 * What it serves: POST /api/orders, both forms. What may sleep is handed to one of
 * FLASHSALE_ORDER_WORKERS (8) threads: a checkout (several lines: it waits for the saga's
 * answer in the order's versions), and the first steps of an order with an Idempotency-Key
 * or whose login token's member is not in the members cache (PostgreSQL may be asked);
 * that order's wait then comes back to the loop. Redis (a session's revocation) is asked on
 * the loop. Every other method is 405, every other path 404: the edge routes
 * POST /api/orders here (infra/edge), the rest to civetweb.
 *
 * Defences (a client, however slow, holds only its own connection): a request's header and
 * body within FLASHSALE_ORDER_REQUEST_TIMEOUT_MS (10000) of its first byte, the header at
 * most 16 KiB and 64 lines, the body at most FLASHSALE_HTTP_MAX_BODY (then 431 / 413 and
 * the connection closed); a response written within the same time; an idle kept-alive
 * connection closed after FLASHSALE_ORDER_IDLE_S (60) seconds; at most
 * FLASHSALE_ORDER_MAX_CONNS (20000) connections (the next one is answered 503 and closed).
 * Pipelined requests are answered in order, one at a time: the next is not read before the
 * answer to the one before is written. Chunked bodies are refused (411: the edge always
 * sends a Content-Length), and so are a Content-Length given twice or not as digits, a header
 * name that is not a token, a bare LF (400): what a proxy in front might read otherwise.
 * HTTP/1.0 requests are answered and the connection closed. A refusal that leaves unread
 * input shuts the connection for writing and reads until the client closes (at most 2 s),
 * so that the client sees the answer rather than a reset. */
#ifndef FS_API_FRONT_H
#define FS_API_FRONT_H
#include "api.h"

#include "fs/netaddr.h"

#include <stdio.h>

typedef struct api_front api_front;

/* Reads the FLASHSALE_ORDER_* settings and FLASHSALE_API_DELIVERY_ON_FRONT; with
 * FLASHSALE_ORDER_PORT 0 (the default) nothing is started and NULL returned with err->msg
 * empty. `a` must outlive it. */
api_front *api_front_start(api_ctx *a, const char *default_addr, fs_err *err);
/* The stop's drain (NULL-safe; returns at once): the listener is closed (what waits in its
 * backlog is reset), requests not taken up yet (a checkout or first steps queued for a
 * worker, a request read from now on) are answered 503 UNAVAILABLE with Connection: close
 * (nothing of them was done: send them again), and every order whose command is produced
 * still gets its answer, as it would without the stop, for at most FLASHSALE_DRAIN_MS
 * (FLASHSALE_DECISION_WAIT_MS + 5000). The loop keeps serving the decisions' replies and the
 * delivery reports (civetweb's requests need them) until api_front_stop. */
void api_front_drain(api_front *f);
/* Drains (api_front_drain) and waits for the drain's end, then stops the loop and the
 * workers and closes every connection. NULL-safe. */
void api_front_stop(api_front *f);
/* Prometheus lines of its gauges and counters (nothing for NULL). */
void api_front_metrics(api_front *f, FILE *out);

#endif
