/* GET /api/events: server-sent events, served by an event server of the API's own.
 *
 * Why not civetweb: civetweb gives every connection a thread for as long as it is open, and
 * a stream is open for hours; a few hundred idle browsers would hold every thread of the
 * API. civetweb 1.15 cannot hand a connection's socket to someone else, so the streams have
 * a listener of their own (FLASHSALE_SSE_ADDR:FLASHSALE_SSE_PORT) in the API process, which
 * the edge's `location = /api/events` proxies to, unbuffered. One thread (the hub) holds
 * every stream with epoll: it reads the request (header within 5 s, at most 8 KiB), answers
 * errors, and writes events and heartbeats; FLASHSALE_SSE_WORKERS (2) threads check the
 * session of a login token (PostgreSQL, Redis: they may block), nothing else.
 *
 * Feed: the API's decision stream (bus.h's listener). Every change is numbered once in a
 * replay ring (sse_event.h) and fanned out by key (product id, member id) to the streams
 * that asked for it; a resume (Last-Event-ID) replays from the ring what the stream missed,
 * else the stream starts from the current state, read from the same view under the same
 * lock, so no change falls between the two.
 *
 * Bounds: streams per member (FLASHSALE_SSE_PER_MEMBER, 4) and per client address
 * (FLASHSALE_SSE_PER_ADDR, 16; behind the edge, X-Forwarded-For from
 * FLASHSALE_TRUSTED_PROXIES) -> 429 TOO_MANY_STREAMS with Retry-After; all streams
 * (FLASHSALE_SSE_MAX_STREAMS, 10000) -> 503; a stream whose unsent output passes
 * FLASHSALE_SSE_BUFFER_BYTES (262144) is closed (the client resumes with Last-Event-ID).
 * Heartbeat comments every FLASHSALE_SSE_HEARTBEAT_S (15) seconds. */
#ifndef FS_API_SSE_H
#define FS_API_SSE_H
#include "api.h"

#include "fs/netaddr.h"

#include <civetweb.h>
#include <stdio.h>

typedef struct api_sse api_sse;

/* Reads the FLASHSALE_SSE_* settings; with FLASHSALE_SSE_PORT 0 (the default) nothing is
 * started and NULL returned with err->msg empty. Listens, starts the hub and the workers and
 * sets itself as the bus's listener. NULL with *err when a setting is wrong or the port
 * cannot be bound. `a` and `trusted` must outlive it. */
api_sse *api_sse_start(api_ctx *a, const char *default_addr, const fs_addr_list *trusted,
                       fs_err *err);
/* Closes every stream and stops the threads; before the bus stops. NULL-safe. */
void api_sse_stop(api_sse *s);
/* Prometheus text of the streams (gauges and counters) into f. s may be NULL (off). */
void api_sse_metrics(api_sse *s, FILE *f);
/* civetweb's GET /api/events on the API's own port: 307 to the event listener (the edge
 * proxies /api/events there itself), 503 when streams are off. cb: the api_ctx; the
 * api_sse is set by api_sse_route_set. */
int api_sse_route(struct mg_connection *conn, void *cb);
void api_sse_route_set(api_sse *s);

#endif
