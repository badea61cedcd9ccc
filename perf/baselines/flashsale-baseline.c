/* flashsale-baseline: the designs users pick instead of flashsale, behind the same HTTP
 * server library (civetweb) and the same request shape, for side-by-side measurement.
 *
 *   flashsale-baseline --mode pg-lock|pg-optimistic|redis-lua|trivial [--port P]
 *                      [--threads N] [--pool N]
 *
 *   POST /api/orders {product_id, quantity}   (Bearer JWT, HS256, FLASHSALE_JWT_SECRET)
 *     pg-lock        BEGIN; SELECT stock ... FOR UPDATE; UPDATE stock; INSERT order; COMMIT
 *     pg-optimistic  SELECT stock, version; UPDATE ... WHERE version = v (retry up to 20
 *                    times with a short random backoff); INSERT order
 *     redis-lua      a Lua script decrements the stock if enough is left; the winner's order
 *                    is inserted into PostgreSQL
 *     trivial        answers 201 without looking at anything: the HTTP ceiling
 *   201 {"order_id", "status": "RESERVED"} | 409 SOLD_OUT | 503 (retries exhausted, store down)
 *   POST /setup?product=ID&stock=N   creates the tables, the product and its Redis counter
 *   GET  /healthz
 * PostgreSQL through a pool of --pool connections (20, like a typical application server's
 * pool); Redis one connection per worker thread. Tables bl_products, bl_orders. */
#include "fs/config.h"
#include "fs/db.h"
#include "fs/id.h"
#include "fs/jwt.h"
#include "fs/log.h"

#include <civetweb.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum { PG_LOCK, PG_OPT, REDIS_LUA, TRIVIAL } mode;
static fs_common_config cfg;
static const char *secret;
static volatile sig_atomic_t stop_flag;

/* ---- PostgreSQL pool ---------------------------------------------------------------------- */
static PGconn **pool;
static int pool_n, pool_free;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;

static PGconn *pg_take(void)
{
    pthread_mutex_lock(&pool_lock);
    while (pool_free == 0)
        pthread_cond_wait(&pool_cond, &pool_lock);
    PGconn *c = pool[--pool_free];
    pthread_mutex_unlock(&pool_lock);
    if (PQstatus(c) != CONNECTION_OK)
        PQreset(c);
    return c;
}

static void pg_give(PGconn *c)
{
    pthread_mutex_lock(&pool_lock);
    pool[pool_free++] = c;
    pthread_cond_signal(&pool_cond);
    pthread_mutex_unlock(&pool_lock);
}

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *v)
{
    return PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
}

static bool ok(PGresult *r)
{
    return PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
}

/* ---- Redis per thread --------------------------------------------------------------------- */
static pthread_key_t rkey;
static void rfree(void *c) { redisFree(c); }

static redisContext *redis_get(void)
{
    redisContext *c = pthread_getspecific(rkey);
    if (c && !c->err)
        return c;
    if (c)
        redisFree(c);
    fs_err err = {0};
    c = fs_redis_connect(&cfg, 2000, &err);
    pthread_setspecific(rkey, c);
    return c;
}

static const char lua[] = "local s = tonumber(redis.call('GET', KEYS[1]) or '0') "
                          "if s >= tonumber(ARGV[1]) then redis.call('DECRBY', KEYS[1], ARGV[1]) return 1 end "
                          "return 0";

/* ---- HTTP -------------------------------------------------------------------------------- */

static int reply(struct mg_connection *conn, int status, const char *body)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", status,
                     status == 201 ? "Created" : status == 200 ? "OK" : status == 409 ? "Conflict"
                     : status == 401 ? "Unauthorized" : status == 400 ? "Bad Request" : "Service Unavailable",
                     strlen(body), body);
    mg_write(conn, buf, (size_t)n);
    return status;
}

static int insert_order(PGconn *c, const char *pid, const char *member, const char *qty, char *oid)
{
    fs_uuid7_str(oid);
    PGresult *r = q(c, "INSERT INTO bl_orders (order_id, product_id, member_id, quantity) VALUES ($1, $2, $3, $4)",
                    4, (const char *[]){oid, pid, member, qty});
    int rc = ok(r) ? 0 : -1;
    PQclear(r);
    return rc;
}

static int order(struct mg_connection *conn)
{
    if (mode == TRIVIAL)
        return reply(conn, 201, "{\"status\":\"RESERVED\"}");
    fs_principal who;
    if (fs_jwt_verify(secret, mg_get_header(conn, "Authorization"), (int64_t)time(NULL), &who) != FS_JWT_OK)
        return reply(conn, 401, "{\"error\":{\"code\":\"UNAUTHENTICATED\"}}");
    char body[1024];
    int n = mg_read(conn, body, sizeof body - 1);
    body[n > 0 ? n : 0] = '\0';
    json_t *j = json_loads(body, 0, NULL);
    const char *pid = json_string_value(json_object_get(j, "product_id"));
    json_int_t qty = json_integer_value(json_object_get(j, "quantity"));
    if (!pid || qty < 1) {
        json_decref(j);
        return reply(conn, 400, "{\"error\":{\"code\":\"INVALID_FIELD\"}}");
    }
    char p[128], qs[24], oid[FS_UUID_STR_LEN + 1], out[160];
    snprintf(p, sizeof p, "%s", pid);
    snprintf(qs, sizeof qs, "%lld", (long long)qty);
    json_decref(j);
    int status = 503;
    if (mode == REDIS_LUA) {
        redisContext *rc = redis_get();
        redisReply *r = rc ? redisCommand(rc, "EVAL %s 1 bl:stock:%s %s", lua, p, qs) : NULL;
        long won = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        freeReplyObject(r);
        if (won == 0)
            return reply(conn, 409, "{\"error\":{\"code\":\"SOLD_OUT\"}}");
        if (won < 0)
            return reply(conn, 503, "{\"error\":{\"code\":\"UNAVAILABLE\"}}");
        PGconn *c = pg_take();
        status = insert_order(c, p, who.sub, qs, oid) ? 503 : 201;
        pg_give(c);
    } else if (mode == PG_LOCK) {
        PGconn *c = pg_take();
        PQclear(PQexec(c, "BEGIN"));
        PGresult *r = q(c, "SELECT stock FROM bl_products WHERE product_id = $1 FOR UPDATE", 1, (const char *[]){p});
        long stock = ok(r) && PQntuples(r) == 1 ? atol(PQgetvalue(r, 0, 0)) : -1;
        PQclear(r);
        if (stock >= qty) {
            r = q(c, "UPDATE bl_products SET stock = stock - $2::integer WHERE product_id = $1", 2,
                  (const char *[]){p, qs});
            bool good = ok(r) && insert_order(c, p, who.sub, qs, oid) == 0;
            PQclear(r);
            r = PQexec(c, good ? "COMMIT" : "ROLLBACK");
            status = good && ok(r) ? 201 : 503;
            PQclear(r);
        } else {
            PQclear(PQexec(c, "ROLLBACK"));
            status = stock < 0 ? 503 : 409;
        }
        pg_give(c);
    } else { /* optimistic */
        PGconn *c = pg_take();
        status = 503;
        for (int attempt = 0; attempt < 20; attempt++) {
            PGresult *r = q(c, "SELECT stock, version FROM bl_products WHERE product_id = $1", 1, (const char *[]){p});
            if (!ok(r) || PQntuples(r) != 1) {
                PQclear(r);
                break;
            }
            long stock = atol(PQgetvalue(r, 0, 0));
            char ver[24];
            snprintf(ver, sizeof ver, "%s", PQgetvalue(r, 0, 1));
            PQclear(r);
            if (stock < qty) {
                status = 409;
                break;
            }
            r = q(c, "UPDATE bl_products SET stock = stock - $2::integer, version = version + 1"
                     " WHERE product_id = $1 AND version = $3::integer",
                  3, (const char *[]){p, qs, ver});
            bool won = ok(r) && atoi(PQcmdTuples(r)) == 1;
            PQclear(r);
            if (won) {
                status = insert_order(c, p, who.sub, qs, oid) ? 503 : 201;
                break;
            }
            usleep((useconds_t)(rand() % 2000)); /* lost the race: back off and read again */
        }
        pg_give(c);
    }
    if (status == 201) {
        snprintf(out, sizeof out, "{\"order_id\":\"%s\",\"status\":\"RESERVED\"}", oid);
        return reply(conn, 201, out);
    }
    return reply(conn, status, status == 409 ? "{\"error\":{\"code\":\"SOLD_OUT\"}}"
                                             : "{\"error\":{\"code\":\"UNAVAILABLE\"}}");
}

static int h_orders(struct mg_connection *conn, void *cb)
{
    (void)cb;
    return order(conn);
}

static int h_health(struct mg_connection *conn, void *cb)
{
    (void)cb;
    return reply(conn, 200, "{\"status\":\"ok\"}");
}

static int h_setup(struct mg_connection *conn, void *cb)
{
    (void)cb;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    char pid[128] = "", stock[24] = "";
    if (ri->query_string) {
        mg_get_var(ri->query_string, strlen(ri->query_string), "product", pid, sizeof pid);
        mg_get_var(ri->query_string, strlen(ri->query_string), "stock", stock, sizeof stock);
    }
    if (!pid[0] || atol(stock) < 0)
        return reply(conn, 400, "{\"error\":{\"code\":\"INVALID_FIELD\"}}");
    PGconn *c = pg_take();
    PQclear(PQexec(c, "CREATE TABLE IF NOT EXISTS bl_products (product_id text PRIMARY KEY,"
                      " stock integer NOT NULL, version integer NOT NULL DEFAULT 0)"));
    PQclear(PQexec(c, "CREATE TABLE IF NOT EXISTS bl_orders (order_id text PRIMARY KEY, product_id text NOT NULL,"
                      " member_id text NOT NULL, quantity integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"));
    PGresult *r = q(c, "INSERT INTO bl_products (product_id, stock) VALUES ($1, $2) ON CONFLICT (product_id)"
                       " DO UPDATE SET stock = EXCLUDED.stock, version = 0",
                    2, (const char *[]){pid, stock});
    bool good = ok(r);
    PQclear(r);
    pg_give(c);
    redisContext *rc = redis_get();
    redisReply *rr = rc ? redisCommand(rc, "SET bl:stock:%s %s", pid, stock) : NULL;
    good = good && rr && rr->type != REDIS_REPLY_ERROR;
    freeReplyObject(rr);
    return reply(conn, good ? 200 : 503, good ? "{\"status\":\"ready\"}" : "{\"error\":{\"code\":\"UNAVAILABLE\"}}");
}

static void on_signal(int s)
{
    (void)s;
    stop_flag = 1;
}

int main(int argc, char **argv)
{
    const char *m = NULL, *port = "28090", *threads = "1000";
    int pool_size = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--mode")) m = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = argv[i + 1];
        else if (!strcmp(argv[i], "--pool")) pool_size = atoi(argv[i + 1]);
    }
    if (!m || (strcmp(m, "pg-lock") && strcmp(m, "pg-optimistic") && strcmp(m, "redis-lua") && strcmp(m, "trivial")) ||
        pool_size < 1) {
        fprintf(stderr, "usage: flashsale-baseline --mode pg-lock|pg-optimistic|redis-lua|trivial [--port P]"
                        " [--threads N] [--pool N]\n");
        return 2;
    }
    mode = !strcmp(m, "pg-lock") ? PG_LOCK : !strcmp(m, "pg-optimistic") ? PG_OPT : !strcmp(m, "redis-lua") ? REDIS_LUA : TRIVIAL;
    fs_log_init("baseline", FS_LOG_INFO);
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err) || fs_env_secret("FLASHSALE_JWT_SECRET", FS_JWT_SECRET_MIN, true, &secret, &err))
        fs_config_die(&err);
    pthread_key_create(&rkey, rfree);
    pool = calloc((size_t)pool_size, sizeof *pool);
    for (int i = 0; i < pool_size; i++) {
        pool[i] = fs_pg_connect(&cfg, "flashsale-baseline", &err);
        if (!pool[i])
            fs_config_die(&err);
    }
    pool_n = pool_free = pool_size;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%s", port);
    const char *opts[] = {"listening_ports", listen, "num_threads", threads, "enable_keep_alive", "yes",
                          "keep_alive_timeout_ms", "5000", "listen_backlog", "20000", "connection_queue", "20000",
                          NULL};
    struct mg_callbacks cbs;
    memset(&cbs, 0, sizeof cbs);
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&cbs, NULL, opts);
    if (!ctx) {
        fprintf(stderr, "flashsale-baseline: cannot listen on %s\n", listen);
        return 1;
    }
    mg_set_request_handler(ctx, "/api/orders$", h_orders, NULL);
    mg_set_request_handler(ctx, "/healthz$", h_health, NULL);
    mg_set_request_handler(ctx, "/setup$", h_setup, NULL);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    fs_log_info("listening", json_pack("{s:s,s:s,s:i}", "mode", m, "listen", listen, "pool", pool_size));
    while (!stop_flag)
        usleep(100000);
    mg_stop(ctx);
    for (int i = 0; i < pool_size; i++)
        PQfinish(pool[i]);
    free(pool);
    return 0;
}
