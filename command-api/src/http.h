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
#include "fs/netaddr.h"

#include <civetweb.h>
#include <jansson.h>

#define FS_HTTP_REQUEST_ID_MAX 64

typedef struct {
    struct mg_connection *conn;
    const struct mg_request_info *ri;
    char request_id[FS_HTTP_REQUEST_ID_MAX + 1];
    int route; /* index into the metrics route table */
    /* the client's address: the TCP peer, or X-Forwarded-For when the peer is a trusted
     * proxy (fs_http_trust_proxies); rate limits per address and the logs use this */
    char client[FS_ADDR_STR_MAX];
} fs_http_req;

/* Sets, once at start and before any request, which peers may tell the client's address in
 * X-Forwarded-For (FLASHSALE_TRUSTED_PROXIES; empty: none). */
void fs_http_trust_proxies(const fs_addr_list *trusted);

void fs_http_req_init(fs_http_req *req, struct mg_connection *conn, int route);
/* Sends `body` (stolen) with the status; returns the status for civetweb. */
int fs_http_json(fs_http_req *req, int status, json_t *body, const char *extra_headers);
/* Sends the design's error body. extra_headers (may be NULL) are complete header lines,
 * e.g. "Retry-After: 1\r\n". */
int fs_http_error(fs_http_req *req, int status, const char *code, const char *message,
                  const char *extra_headers);
/* Sends a text body (for /metrics). */
int fs_http_text(fs_http_req *req, int status, const char *content_type, const char *body,
                 size_t len);

#endif
