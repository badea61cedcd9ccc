/* HTTP helpers over civetweb shared by every handler of flashsale-api.
 *
 * Every response is JSON. Errors use the one format of the design:
 *   {"error": {"code": "SOLD_OUT", "message": "...", "request_id": "..."}}
 * with a stable code per situation. Each request gets a request id (the client's
 * X-Request-Id if it is sane, else a new UUIDv7), echoed in the X-Request-Id header and
 * set as the logging correlation id of the worker thread.
 * Called on civetweb worker threads; nothing here blocks on anything but the socket. */
#ifndef FS_API_HTTP_H
#define FS_API_HTTP_H
#include "fs/err.h"
#include "fs/netaddr.h"

#include <civetweb.h>
#include <jansson.h>
#include <stdbool.h>

#define FS_HTTP_REQUEST_ID_MAX 64

/* Where a request that civetweb did not read (the order front, front.h) takes its body and
 * puts its response: the body is whole in memory, and write() keeps the response for the
 * front to send. */
typedef struct {
    const char *body;
    size_t body_len, body_read;
    void (*write)(void *ctx, const char *data, size_t len);
    void *ctx;
    bool close; /* the connection ends after this response: "Connection: close" is sent */
} fs_http_sink;

typedef struct {
    struct mg_connection *conn; /* NULL for a request of the order front (`sink`) */
    const struct mg_request_info *ri;
    fs_http_sink *sink;
    char request_id[FS_HTTP_REQUEST_ID_MAX + 1];
    int route; /* index into the metrics route table */
    /* the client's address: the TCP peer, or X-Forwarded-For when the peer is a trusted
     * proxy (fs_http_trust_proxies); rate limits per address and the logs use this */
    char client[FS_ADDR_STR_MAX];
} fs_http_req;

/* Sets, once at start and before any request, which peers may tell the client's address in
 * X-Forwarded-For (FLASHSALE_TRUSTED_PROXIES; empty: none). */
void fs_http_trust_proxies(const fs_addr_list *trusted);
/* Called just before any response is written (NULL: nothing): the request's pooled
 * resources go back first, so that the client's next request finds them free. (Handed back
 * only when the request ended, a one-connection pool answered a client's next request 503
 * while the previous one was still being wound up.) Set once at start. */
void fs_http_on_respond(void (*before_send)(void));

void fs_http_req_init(fs_http_req *req, struct mg_connection *conn, int route);
/* The same for a request the order front read itself: ri's method, URI, address, headers and
 * content length are the front's (the struct is civetweb's, filled by the front); the body
 * and the response go through sink. */
void fs_http_req_init_sink(fs_http_req *req, const struct mg_request_info *ri, fs_http_sink *sink,
                           int route);
/* A request header (case-insensitive name), or NULL. */
const char *fs_http_header(const fs_http_req *req, const char *name);
/* Reads up to n bytes of the body; 0 at its end. */
int fs_http_read(fs_http_req *req, void *buf, size_t n);
/* Sends `body` (stolen) with the status; returns the status for civetweb. */
int fs_http_json(fs_http_req *req, int status, json_t *body, const char *extra_headers);
/* Sends the design's error body. extra_headers (may be NULL) are complete header lines,
 * e.g. "Retry-After: 1\r\n". */
int fs_http_error(fs_http_req *req, int status, const char *code, const char *message,
                  const char *extra_headers);
/* What an FS_ERR_INVALID means to the client where it happened: the status (4xx), the code
 * and the message to send. */
typedef struct {
    int status;
    const char *code, *message;
} fs_http_problem;

/* The one place where an error's class becomes the response:
 *   FS_ERR_RETRIABLE, FS_ERR_ABORT  503 UNAVAILABLE with Retry-After: 1 and `what` (e.g. "the
 *                                   members store is unavailable"): the same request may succeed
 *                                   later;
 *   FS_ERR_INVALID                  `invalid` when the caller names what the client sent wrong;
 *                                   NULL: the bad data was the server's own, as FATAL;
 *   FS_ERR_FATAL (and anything else) 500 INTERNAL with `what`.
 * err->msg is logged with a 5xx, never sent (it may name tables, hosts or statements).
 * Returns the status sent. */
int fs_http_fail(fs_http_req *req, const fs_err *err, const char *what, const fs_http_problem *invalid);
/* fs_http_fail of a RETRIABLE error: something the request needs cannot serve it now, whatever
 * the cause (detail, may be NULL, is logged). */
int fs_http_unavailable(fs_http_req *req, const char *what, const char *detail);
/* A non-blocking IPv4 listener on addr:port (backlog 4096); the descriptor, or -1 with *err
 * naming `what`. */
int api_listen_tcp(const char *addr, long port, const char *what, fs_err *err);
/* Sends a text body (for /metrics). */
int fs_http_text(fs_http_req *req, int status, const char *content_type, const char *body,
                 size_t len);

#endif
