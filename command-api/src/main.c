/* flashsale-api: the HTTP front of flashsale (civetweb).
 *
 * Commands become Kafka records; answers come from the decision stream (bus.c). Endpoints:
 * the route table below (routes.h: the server dispatches through it, `flashsale-api
 * --routes` prints it, and docs/openapi.json must describe every row): products
 * (products.c), orders (orders.c), members and sessions (members.c), the wishlist
 * (wishlist.c), operator routes (admin.c), /healthz, /readyz (Kafka, PostgreSQL, Redis
 * reachable and the decision stream caught up), /metrics (Prometheus text), the OpenAPI
 * document. Anything else is a JSON 404 in the design's error format.
 *
 * Settings (environment, validated at start): FLASHSALE_HTTP_ADDR (127.0.0.1),
 * FLASHSALE_HTTP_PORT (8080), FLASHSALE_HTTP_THREADS (512), FLASHSALE_HTTP_QUEUE (4096),
 * FLASHSALE_HTTP_KEEPALIVE_MS (2000), FLASHSALE_DECISION_WAIT_MS (2000: how long POST
 * /api/orders waits for the decision before answering 202), FLASHSALE_DRAIN_MS (that + 5000: how
 * long a stop, SIGTERM, keeps answering what was begun while it refuses new requests with 503;
 * front.h), FLASHSALE_HTTP_MAX_BODY (16384),
 * FLASHSALE_JWT_SECRET (required, at least 32 characters), FLASHSALE_PII_KEY (required, 64
 * hex characters), FLASHSALE_PG_POOL_SIZE (16: PostgreSQL connections shared by all worker
 * threads), FLASHSALE_PG_POOL_WAIT_MS (1000: a request waits this long for one, then 503),
 * FLASHSALE_PG_STATEMENT_TIMEOUT_MS (5000), FLASHSALE_TRUSTED_PROXIES (none: peers whose
 * X-Forwarded-For names the client, e.g. the edge's 127.0.0.1; fs/netaddr.h), session and
 * rate-limit settings (README), the event streams' FLASHSALE_SSE_* (sse.h), the order front's FLASHSALE_ORDER_* (front.h), plus the common
 * settings. */
#include "accounts.h"
#include "admin.h"
#include "readmodel.h"
#include "routes.h"
#include "api.h"
#include "health.h"
#include "http.h"
#include "metrics.h"
#include "front.h"
#include "sse.h"

#include "fs/id.h"
#include "fs/jwt.h"

#include "fs/config.h"
#include "fs/db.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/metrics.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

typedef api_ctx api;

static int handle_healthz(struct mg_connection *conn, void *cb)
{
    (void)cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_HEALTHZ);
    return fs_http_json(&req, 200, json_pack("{s:s}", "status", "ok"), NULL);
}

static int handle_readyz(struct mg_connection *conn, void *cb)
{
    api *a = cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_READYZ);
    json_t *detail = NULL;
    bool ok = fs_health_snapshot(a->health, &detail);
    bool caught_up = api_bus_caught_up(a->bus);
    json_object_set_new(detail, "decision_stream",
                        json_pack("{s:s}", "status", caught_up ? "ok" : "catching_up"));
    if (!caught_up) {
        ok = false;
        json_object_set_new(detail, "status", json_string("not_ready"));
    }
    return fs_http_json(&req, ok ? 200 : 503, detail, ok ? NULL : "Retry-After: 1\r\n");
}

/* /readyz's Kafka check asks whether the bus's producers work (fs_health_producers_fn). */
static bool health_producers_ok(void *bus, char *why, size_t n)
{
    return api_bus_producers_ok(bus, why, n);
}

static fs_pg_pool *pg_pool;
static api_sse *sse; /* GET /api/events (sse.h); NULL when FLASHSALE_SSE_PORT is 0 */
static api_front *front; /* POST /api/orders (front.h); NULL when FLASHSALE_ORDER_PORT is 0 */

static int handle_metrics(struct mg_connection *conn, void *cb)
{
    (void)cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_METRICS);
    size_t len = 0, plen = 0;
    char *text = fs_metrics_render(&len), *pool = NULL;
    FILE *f = text ? open_memstream(&pool, &plen) : NULL;
    if (!f) {
        free(text);
        return fs_http_error(&req, 500, "INTERNAL", "out of memory", NULL);
    }
    size_t hlen = 0;
    char *hist = fs_metrics_text(&hlen);
    if (hist) {
        fwrite(hist, 1, hlen, f);
        free(hist);
    }
    fs_pg_pool_stats st;
    fs_pg_pool_stats_get(pg_pool, &st);
    fprintf(f,
            "# HELP flashsale_pg_pool_connections PostgreSQL connections of the API's pool by state.\n"
            "# TYPE flashsale_pg_pool_connections gauge\n"
            "flashsale_pg_pool_connections{state=\"size\"} %ld\n"
            "flashsale_pg_pool_connections{state=\"open\"} %ld\n"
            "flashsale_pg_pool_connections{state=\"in_use\"} %ld\n"
            "# HELP flashsale_pg_pool_waiting Requests waiting for a pooled connection.\n"
            "# TYPE flashsale_pg_pool_waiting gauge\nflashsale_pg_pool_waiting %ld\n"
            "# HELP flashsale_pg_pool_total Pool events: acquired, timed out waiting (503), failed connects, closed as broken.\n"
            "# TYPE flashsale_pg_pool_total counter\n"
            "flashsale_pg_pool_total{event=\"acquired\"} %lld\n"
            "flashsale_pg_pool_total{event=\"timeout\"} %lld\n"
            "flashsale_pg_pool_total{event=\"connect_failure\"} %lld\n"
            "flashsale_pg_pool_total{event=\"discarded\"} %lld\n",
            st.size, st.open, st.in_use, st.waiting, st.acquired, st.timeouts, st.connect_failures, st.discarded);
    api_sse_metrics(sse, f);
    api_front_metrics(front, f);
    fclose(f);
    char *all = realloc(text, len + plen + 1);
    if (!all) {
        free(text);
        free(pool);
        return fs_http_error(&req, 500, "INTERNAL", "out of memory", NULL);
    }
    memcpy(all + len, pool, plen + 1);
    free(pool);
    int rc = fs_http_text(&req, 200, "text/plain; version=0.0.4", all, len + plen);
    free(all);
    return rc;
}

/* The stop's drain on civetweb's side (its mg_stop drops what a handler writes once it has
 * begun): new requests are refused while those under way finish. */
static atomic_int http_draining;
static atomic_long http_in_flight;

/* Every request goes through the route table from civetweb's first callback on: no request
 * can arrive before a handler is registered (between mg_start and mg_set_request_handler
 * civetweb would answer a 404 of its own). While the API stops (http_drain) it is refused
 * instead. Returns the status sent (never 0: civetweb must not handle the request itself). */
static int begin_request(struct mg_connection *conn)
{
    atomic_fetch_add(&http_in_flight, 1); /* (counted first: http_drain then waits for it) */
    if (atomic_load(&http_draining)) {
        atomic_fetch_sub(&http_in_flight, 1);
        fs_http_req req;
        fs_http_req_init(&req, conn, FS_ROUTE_OTHER);
        return fs_http_error(&req, 503, "UNAVAILABLE", "this server is stopping; nothing was done: send it again",
                             "Connection: close\r\nRetry-After: 1\r\n");
    }
    int status = api_routes_dispatch(conn, mg_get_user_data(mg_get_context(conn)));
    atomic_fetch_sub(&http_in_flight, 1);
    return status > 0 && status < 1000 ? status : 500;
}

/* Refuses new requests and waits (at most drain_ms) until those under way have answered. */
static void http_drain(long drain_ms)
{
    atomic_store(&http_draining, 1);
    int64_t until = fs_mono_ms() + drain_ms;
    while (atomic_load(&http_in_flight) > 0 && fs_mono_ms() < until)
        usleep(10 * 1000);
    long left = atomic_load(&http_in_flight);
    fs_log_info("http drained", json_pack("{s:I}", "unanswered", (json_int_t)left));
}

/* After every request on a worker thread: the pooled PostgreSQL connection goes back. */
static void end_request(const struct mg_connection *conn, int status)
{
    (void)conn, (void)status;
    api_pg_release();
}

/* Every route the API serves (routes.h). Handlers that serve several rows read the path
 * again themselves. */
static const api_route route_table[] = {
    {"GET", "/healthz", handle_healthz, "ops"},
    {"GET", "/readyz", handle_readyz, "ops"},
    {"GET", "/metrics", handle_metrics, "ops"},
    {"GET", "/api/openapi.json", api_openapi_serve, "anyone"},
    {"GET", "/api/products", api_products_create, "anyone"},
    {"POST", "/api/products", api_products_create, "admin"},
    {"GET", "/api/products/{product_id}", api_products_item, "anyone"},
    {"PATCH", "/api/products/{product_id}", api_products_item, "admin"},
    {"GET", "/api/products/{product_id}/stock", api_products_item, "anyone"},
    {"POST", "/api/products/{product_id}/restock", api_products_item, "admin"},
    {"POST", "/api/products/{product_id}/pause", api_products_item, "admin"},
    {"POST", "/api/products/{product_id}/resume", api_products_item, "admin"},
    {"GET", "/api/orders", api_orders_create, "member"},
    {"POST", "/api/orders", api_orders_create, "member"},
    {"GET", "/api/orders/{order_id}", api_orders_item, "owner"},
    {"POST", "/api/orders/{order_id}/payment", api_orders_item, "owner"},
    {"POST", "/api/orders/{order_id}/cancel", api_orders_item, "owner"},
    {"POST", "/api/orders/{order_id}/return", api_orders_item, "owner"},
    {"POST", "/api/orders/{order_id}/return/complete", api_orders_item, "admin"},
    {"POST", "/api/members", api_members_route, "anyone"},
    {"POST", "/api/members/verify", api_members_route, "anyone"},
    {"POST", "/api/members/verify/resend", api_members_route, "anyone"},
    {"GET", "/api/members/me", api_members_route, "member"},
    {"PATCH", "/api/members/me", api_members_route, "member"},
    {"DELETE", "/api/members/me", api_members_route, "member"},
    {"PUT", "/api/members/me/password", api_members_route, "member"},
    {"POST", "/api/auth/login", api_auth_route, "anyone"},
    {"POST", "/api/auth/refresh", api_auth_route, "anyone"},
    {"POST", "/api/auth/logout", api_auth_route, "member"},
    {"POST", "/api/auth/logout-all", api_auth_route, "member"},
    {"GET", "/api/wishlist", api_wishlist_route, "member"},
    {"POST", "/api/wishlist", api_wishlist_route, "member"},
    {"DELETE", "/api/wishlist/{product_id}", api_wishlist_route, "member"},
    {"GET", "/api/admin/overview", api_admin_overview, "admin"},
    {"GET", "/api/admin/dead-letters", api_admin_dead_letters, "admin"},
    {"POST", "/api/admin/audit", api_admin_audit, "admin"},
    {"GET", "/api/events", api_sse_route, "anyone"},
};
#define NROUTES (sizeof route_table / sizeof route_table[0])

static int log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    fs_log_warn("civetweb", json_pack("{s:s}", "detail", message));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--routes")) { /* the route table, for the tests */
        api_routes_print(stdout, route_table, NROUTES);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: flashsale-api [--routes]   (settings come from the environment)\n");
        return 2;
    }
    static api_ctx a;
    fs_common_config *cfgp = &a.cfg;
#define cfg (*cfgp)
    fs_err err = {0};
    fs_log_init("api", FS_LOG_INFO);
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    fs_log_level lvl;
    fs_log_level_parse(cfg.log_level, &lvl);
    fs_log_init("api", lvl);
    const char *addr, *trusted_text;
    long port, threads, queue, keepalive, stock_cache_ms, pool_size, pool_wait_ms, stmt_timeout_ms;
    if (fs_env_str("FLASHSALE_HTTP_ADDR", "127.0.0.1", false, &addr, &err) ||
        fs_env_int("FLASHSALE_HTTP_PORT", 8080, 1, 65535, &port, &err) ||
        fs_env_int("FLASHSALE_HTTP_THREADS", 512, 2, 20000, &threads, &err) ||
        fs_env_int("FLASHSALE_HTTP_QUEUE", 4096, 16, 1000000, &queue, &err) ||
        fs_env_int("FLASHSALE_HTTP_KEEPALIVE_MS", 2000, 0, 600000, &keepalive, &err) ||
        fs_env_int("FLASHSALE_DECISION_WAIT_MS", 2000, 0, 60000, &a.decision_wait_ms, &err) ||
        fs_env_int("FLASHSALE_DRAIN_MS", a.decision_wait_ms + 5000, 0, 600000, &a.drain_ms, &err) ||
        fs_env_int("FLASHSALE_HTTP_MAX_BODY", 16384, 256, 1048576, &a.max_body, &err) ||
        fs_env_secret("FLASHSALE_JWT_SECRET", FS_JWT_SECRET_MIN, true, &a.jwt_secret, &err) ||
        fs_env_int("FLASHSALE_ACCESS_TTL_S", 900, 10, 86400, &a.access_ttl_s, &err) ||
        fs_env_int("FLASHSALE_REFRESH_TTL_S", 30 * 86400, 60, 365 * 86400, &a.refresh_ttl_s, &err) ||
        fs_env_int("FLASHSALE_VERIFY_CODE_TTL_S", 900, 1, 86400, &a.code_ttl_s, &err) ||
        fs_env_int("FLASHSALE_VERIFY_MAX_ATTEMPTS", 5, 1, 100, &a.code_max_attempts, &err) ||
        fs_env_int("FLASHSALE_RATE_LOGIN_ACCOUNT_PER_MIN", 5, 0, 100000, &a.rate_login_account, &err) ||
        fs_env_int("FLASHSALE_RATE_LOGIN_IP_PER_MIN", 60, 0, 1000000, &a.rate_login_ip, &err) ||
        fs_env_int("FLASHSALE_RATE_SIGNUP_IP_PER_MIN", 20, 0, 1000000, &a.rate_signup_ip, &err) ||
        fs_env_int("FLASHSALE_RATE_ORDER_MEMBER_PER_S", 5, 0, 1000000, &a.rate_order_member, &err) ||
        fs_env_int("FLASHSALE_RATE_ORDER_MEMBER_BURST", 20, 1, 1000000, &a.rate_order_member_burst, &err) ||
        fs_env_int("FLASHSALE_RATE_ORDER_IP_PER_S", 2000, 0, 10000000, &a.rate_order_ip, &err) ||
        fs_env_int("FLASHSALE_RATE_ORDER_IP_BURST", 50000, 1, 10000000, &a.rate_order_ip_burst, &err) ||
        fs_env_int("FLASHSALE_RATE_MEMBER_WRITE_PER_S", 5, 0, 1000000, &a.rate_write_member, &err) ||
        fs_env_int("FLASHSALE_RATE_MEMBER_WRITE_BURST", 20, 1, 1000000, &a.rate_write_member_burst, &err) ||
        fs_env_int("FLASHSALE_STOCK_CACHE_MS", 10, 0, 60000, &stock_cache_ms, &err) ||
        fs_env_int("FLASHSALE_PG_POOL_SIZE", 16, 1, 1000, &pool_size, &err) ||
        fs_env_int("FLASHSALE_PG_POOL_WAIT_MS", 1000, 0, 60000, &pool_wait_ms, &err) ||
        fs_env_int("FLASHSALE_PG_STATEMENT_TIMEOUT_MS", 5000, 0, 3600000, &stmt_timeout_ms, &err) ||
        fs_env_str("FLASHSALE_TRUSTED_PROXIES", "", false, &trusted_text, &err))
        fs_config_die(&err);
    static fs_addr_list trusted; /* read by the event server's thread until the end */
    if (fs_addr_list_parse(trusted_text, &trusted, &err)) {
        char why[sizeof err.msg];
        snprintf(why, sizeof why, "%s", err.msg);
        fs_err_set(&err, FS_ERR_FATAL, 0, "FLASHSALE_TRUSTED_PROXIES: %s", why);
        fs_config_die(&err);
    }
    fs_http_trust_proxies(&trusted);
    fs_http_on_respond(api_pg_release); /* the pooled connection goes back before the answer */
    api_rm_init(stock_cache_ms);
    pg_pool = fs_pg_pool_new(&cfg, "flashsale-api", pool_size, stmt_timeout_ms);
    if (!pg_pool) {
        fs_err_set(&err, FS_ERR_FATAL, 0, "out of memory for the PostgreSQL pool");
        fs_config_die(&err);
    }
    api_pg_pool_set(pg_pool, pool_wait_ms);
    a.codec = fs_codec_new(&err);
    if (!a.codec)
        fs_config_die(&err);
    if (!(a.accounts = api_accounts_new(&a, &err)))
        fs_config_die(&err);
    a.bus = api_bus_start(&cfg, a.codec, &err);
    if (!a.bus)
        fs_config_die(&err);
    api_orders_metrics_init();
    if (!(sse = api_sse_start(&a, addr, &trusted, &err)) && err.msg[0])
        fs_config_die(&err);
    api_sse_route_set(sse);
    if (!(front = api_front_start(&a, addr, &err)) && err.msg[0])
        fs_config_die(&err);
    api_admin *admin = api_admin_start(&cfg, &err);
    if (!admin)
        fs_config_die(&err);
    api_admin_set(admin);
    a.health = fs_health_start(&cfg, health_producers_ok, a.bus);

    char ports[96], nthreads[16], nqueue[16], ka[16];
    snprintf(ports, sizeof ports, "%s:%ld", addr, port);
    snprintf(nthreads, sizeof nthreads, "%ld", threads);
    snprintf(nqueue, sizeof nqueue, "%ld", queue);
    snprintf(ka, sizeof ka, "%ld", keepalive);
    const char *options[] = {"listening_ports", ports,
                             "num_threads", nthreads,
                             "connection_queue", nqueue,
                             "listen_backlog", nqueue,
                             "enable_keep_alive", "yes",
                             "keep_alive_timeout_ms", ka,
                             "request_timeout_ms", "10000",
                             "max_request_size", "16384",
                             NULL};
    struct mg_callbacks cbs;
    memset(&cbs, 0, sizeof cbs);
    cbs.log_message = log_message;
    cbs.begin_request = begin_request;
    cbs.end_request = end_request;
    api_routes_set(route_table, NROUTES);
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&cbs, &a, options);
    if (!ctx) {
        fs_log_error("http server did not start", json_pack("{s:s}", "listen", ports));
        fs_health_stop(a.health);
        api_front_stop(front);
        api_sse_stop(sse);
        api_admin_stop(admin);
        api_bus_stop(a.bus);
        api_accounts_destroy(a.accounts);
        fs_codec_destroy(a.codec);
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    fs_log_info("listening", json_pack("{s:s,s:I,s:s,s:s}", "listen", ports, "threads",
                                       (json_int_t)threads, "brokers", cfg.brokers,
                                       "trusted_proxies", trusted_text));
    while (!stop_flag)
        usleep(100 * 1000);
    fs_log_info("stopping", NULL);
    api_front_drain(front); /* both fronts finish what they began at once */
    http_drain(a.drain_ms);
    mg_stop(ctx);
    mg_exit_library();
    fs_health_stop(a.health);
    api_front_stop(front);
    api_sse_stop(sse);
    api_admin_set(NULL);
    api_admin_stop(admin);
    api_bus_stop(a.bus);
    api_accounts_destroy(a.accounts);
    a.accounts = NULL;
    api_rm_stop();
    fs_pg_pool_destroy(pg_pool);
    fs_codec_destroy(a.codec);
    return 0;
#undef cfg
}
