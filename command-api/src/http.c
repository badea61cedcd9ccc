/* HTTP helpers; see http.h. */
#include "http.h"
#include "metrics.h"

#include "fs/id.h"
#include "fs/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return status < 500 ? "Client Error" : "Server Error";
    }
}

static int sane_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > FS_HTTP_REQUEST_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static fs_addr_list trusted_proxies; /* written once before the server starts */

void fs_http_trust_proxies(const fs_addr_list *trusted)
{
    trusted_proxies = *trusted;
}

static void req_init(fs_http_req *req, int route)
{
    req->route = route;
    fs_client_addr(&trusted_proxies, req->ri->remote_addr, fs_http_header(req, "X-Forwarded-For"),
                   req->client, sizeof req->client);
    const char *rid = fs_http_header(req, "X-Request-Id");
    if (sane_id(rid))
        snprintf(req->request_id, sizeof req->request_id, "%s", rid);
    else
        fs_uuid7_str(req->request_id);
    fs_log_set_cid(req->request_id);
}

void fs_http_req_init(fs_http_req *req, struct mg_connection *conn, int route)
{
    req->conn = conn;
    req->ri = mg_get_request_info(conn);
    req->sink = NULL;
    req_init(req, route);
}

void fs_http_req_init_sink(fs_http_req *req, const struct mg_request_info *ri, fs_http_sink *sink,
                           int route)
{
    req->conn = NULL;
    req->ri = ri;
    req->sink = sink;
    req_init(req, route);
}

const char *fs_http_header(const fs_http_req *req, const char *name)
{
    if (req->conn)
        return mg_get_header(req->conn, name);
    for (int i = 0; i < req->ri->num_headers; i++)
        if (!strcasecmp(req->ri->http_headers[i].name, name))
            return req->ri->http_headers[i].value;
    return NULL;
}

int fs_http_read(fs_http_req *req, void *buf, size_t n)
{
    if (req->conn)
        return mg_read(req->conn, buf, n);
    fs_http_sink *s = req->sink;
    size_t left = s->body_len - s->body_read;
    if (n > left)
        n = left;
    memcpy(buf, s->body + s->body_read, n);
    s->body_read += n;
    return (int)n;
}

static void put(fs_http_req *req, const char *data, size_t len)
{
    if (req->conn)
        mg_write(req->conn, data, len);
    else
        req->sink->write(req->sink->ctx, data, len);
}

static void (*on_respond)(void);

void fs_http_on_respond(void (*before_send)(void))
{
    on_respond = before_send;
}

/* Headers and body in ONE write: two small writes on a keep-alive connection meet Nagle's
 * algorithm and the peer's delayed ACK (measured: every response 40 ms late). */
static int send_raw(fs_http_req *req, int status, const char *ctype, const char *body, size_t len,
                    const char *extra)
{
    char head[1024];
    bool with_body = len && strcmp(req->ri->request_method, "HEAD");
    if (on_respond)
        on_respond();
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "X-Request-Id: %s\r\nCache-Control: no-store\r\n%s%s\r\n",
                      status, reason(status), ctype, len, req->request_id, extra ? extra : "",
                      req->sink && req->sink->close ? "Connection: close\r\n" : "");
    if (hl < 0 || (size_t)hl >= sizeof head) { /* never with our headers; be safe anyway */
        static const char fail[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
        put(req, fail, sizeof fail - 1);
        fs_metrics_request(req->route, 500);
        fs_log_set_cid(NULL);
        return 500;
    }
    size_t total = (size_t)hl + (with_body ? len : 0);
    char stackbuf[8192], *buf = total <= sizeof stackbuf ? stackbuf : malloc(total);
    if (buf) {
        memcpy(buf, head, (size_t)hl);
        if (with_body)
            memcpy(buf + hl, body, len);
        put(req, buf, total);
        if (buf != stackbuf)
            free(buf);
    } else { /* out of memory: two writes rather than none */
        put(req, head, (size_t)hl);
        if (with_body)
            put(req, body, len);
    }
    fs_metrics_request(req->route, status);
    fs_log_set_cid(NULL);
    return status;
}

int fs_http_json(fs_http_req *req, int status, json_t *body, const char *extra_headers)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    if (!text)
        return send_raw(req, 500, "application/json", "{}", 2, NULL);
    int rc = send_raw(req, status, "application/json", text, strlen(text), extra_headers);
    free(text);
    return rc;
}

/* The design's error body; a 5xx is logged, with the error behind it when there is one. */
static int send_error(fs_http_req *req, int status, const char *code, const char *message,
                      const char *extra_headers, const fs_err *cause)
{
    if (status >= 500) {
        json_t *f = json_pack("{s:s,s:s,s:s,s:i,s:s}", "path", req->ri->local_uri, "client", req->client,
                              "code", code, "status", status, "message", message);
        if (cause && f) {
            json_object_set_new(f, "class", json_string(fs_err_class_name(cause->cls)));
            json_object_set_new(f, "error", json_string(cause->msg));
        }
        fs_log_warn("request failed", f);
    }
    return fs_http_json(req, status,
                        json_pack("{s:{s:s,s:s,s:s}}", "error", "code", code, "message", message,
                                  "request_id", req->request_id),
                        extra_headers);
}

int fs_http_error(fs_http_req *req, int status, const char *code, const char *message,
                  const char *extra_headers)
{
    return send_error(req, status, code, message, extra_headers, NULL);
}

int fs_http_fail(fs_http_req *req, const fs_err *err, const char *what, const fs_http_problem *invalid)
{
    switch (err->cls) {
    case FS_ERR_RETRIABLE:
    case FS_ERR_ABORT:
        return send_error(req, 503, "UNAVAILABLE", what, "Retry-After: 1\r\n", err);
    case FS_ERR_INVALID:
        if (invalid)
            return send_error(req, invalid->status, invalid->code, invalid->message, NULL, err);
        break;
    case FS_OK:
    case FS_ERR_FATAL:
        break;
    }
    return send_error(req, 500, "INTERNAL", what, NULL, err);
}

int fs_http_unavailable(fs_http_req *req, const char *what, const char *detail)
{
    fs_err err;
    fs_err_set(&err, FS_ERR_RETRIABLE, 0, "%s", detail ? detail : what);
    return fs_http_fail(req, &err, what, NULL);
}

int fs_http_text(fs_http_req *req, int status, const char *content_type, const char *body,
                 size_t len)
{
    return send_raw(req, status, content_type, body, len, NULL);
}

int api_listen_tcp(const char *addr, long port, const char *what, fs_err *err)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1)
        return fs_err_set(err, FS_ERR_FATAL, 0, "%s: not an IPv4 address: %s", what, addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&sin, sizeof sin) || listen(fd, 4096)) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fs_err_set(err, FS_ERR_FATAL, 0, "%s: cannot listen on %s:%ld: %s", what, addr, port,
                          strerror(e));
    }
    return fd;
}
