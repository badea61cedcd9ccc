/* PostgreSQL and Redis through libpq and hiredis, on the instances the test run started
 * (never the machine's own servers on 5432/6379): parameterised SQL, error classes, Redis
 * authentication and AOF. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/config.h"
#include "fs/db.h"
#include "fs/id.h"
#include "fs/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static fs_common_config cfg;

static void test_postgres(void **state)
{
    (void)state;
    fs_err err = {0};
    PGconn *c = fs_pg_connect(&cfg, "flashsale-test", &err);
    if (!c)
        fail_msg("connect: %s", err.msg);
    /* the test's own instance */
    PGresult *r = PQexec(c, "SHOW port");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    printf("postgres on port %s\n", PQgetvalue(r, 0, 0));
    assert_string_not_equal(PQgetvalue(r, 0, 0), "5432");
    PQclear(r);

    const char *p[2] = {"40", "2"};
    r = PQexecParams(c, "SELECT $1::int + $2::int", 2, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "42");
    PQclear(r);

    r = PQexec(c, "CREATE TEMP TABLE t (id int PRIMARY KEY, v text NOT NULL)");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    const char *evil = "x'); DROP TABLE t; --";
    const char *ins[2] = {"1", evil};
    r = PQexecParams(c, "INSERT INTO t (id, v) VALUES ($1, $2)", 2, NULL, ins, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexecParams(c, "INSERT INTO t (id, v) VALUES ($1, $2)", 2, NULL, ins, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    fs_err_from_pg(&err, c, r, "insert");
    assert_int_equal(err.cls, FS_ERR_INVALID);
    assert_non_null(strstr(err.msg, "23505"));
    PQclear(r);
    r = PQexec(c, "SELECT v FROM t WHERE id = 1");
    assert_string_equal(PQgetvalue(r, 0, 0), evil);
    PQclear(r);
    PQfinish(c);

    fs_common_config bad = cfg;
    bad.pg_url = "postgresql://flashsale:wrong-password@127.0.0.1:1/flashsale";
    assert_null(fs_pg_connect(&bad, "flashsale-test", &err));
    assert_int_equal(err.cls, FS_ERR_RETRIABLE); /* nothing listens on port 1 */
    char url[512];
    const char *port = strrchr(cfg.pg_url, ':');
    snprintf(url, sizeof url, "postgresql://flashsale:wrong-password@127.0.0.1%s", port);
    bad.pg_url = url;
    assert_null(fs_pg_connect(&bad, "flashsale-test", &err));
    assert_int_equal(err.cls, FS_ERR_FATAL);
    assert_null(strstr(err.msg, "wrong-password"));
}

/* The API's pool: bounded, waits then fails retriable, rolls back what a borrower left
 * open, closes a broken connection and frees its place. */
static void test_pg_pool(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_pg_pool *p = fs_pg_pool_new(&cfg, "flashsale-test-pool", 2, 2000);
    assert_non_null(p);
    PGconn *a = fs_pg_pool_get(p, 1000, &err), *b = fs_pg_pool_get(p, 1000, &err);
    if (!a || !b)
        fail_msg("pool get: %s", err.msg);
    assert_ptr_not_equal(a, b);
    int64_t t0 = fs_mono_ms();
    assert_null(fs_pg_pool_get(p, 150, &err));
    int64_t waited = fs_mono_ms() - t0;
    assert_int_equal(err.cls, FS_ERR_RETRIABLE);
    assert_true(waited >= 140);
    fs_pg_pool_stats st;
    fs_pg_pool_stats_get(p, &st);
    assert_int_equal(st.open, 2);
    assert_int_equal(st.in_use, 2);
    assert_int_equal(st.timeouts, 1);

    /* the statement timeout is set on pooled connections */
    PGresult *r = PQexec(a, "SHOW statement_timeout");
    assert_string_equal(PQgetvalue(r, 0, 0), "2s");
    PQclear(r);

    /* a transaction left open is rolled back before the next borrower gets the handle */
    PQclear(PQexec(a, "BEGIN"));
    PQclear(PQexec(a, "CREATE TEMP TABLE pool_left (x int)"));
    assert_int_equal(PQtransactionStatus(a), PQTRANS_INTRANS);
    fs_pg_pool_put(p, a);
    PGconn *a2 = fs_pg_pool_get(p, 1000, &err);
    assert_ptr_equal(a2, a); /* kept, not reconnected */
    assert_int_equal(PQtransactionStatus(a2), PQTRANS_IDLE);
    r = PQexec(a2, "SELECT count(*) FROM pg_tables WHERE tablename = 'pool_left'");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    r = PQexec(a2, "SELECT 1 FROM pool_left");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR); /* the rolled-back table is gone */
    PQclear(r);

    /* a waiter is woken by a put, well before its deadline */
    fs_pg_pool_put(p, a2);
    t0 = fs_mono_ms();
    PGconn *c = fs_pg_pool_get(p, 5000, &err);
    assert_non_null(c);
    assert_true(fs_mono_ms() - t0 < 1000);

    /* a connection whose server process died is closed on put; its place is freed */
    char pid[16];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(c));
    r = PQexecParams(b, "SELECT pg_terminate_backend($1::int)", 1, NULL, (const char *[]){pid}, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    for (int i = 0; i < 50 && PQstatus(c) == CONNECTION_OK; i++) {
        PQclear(PQexec(c, "SELECT 1"));
        if (PQstatus(c) == CONNECTION_OK)
            usleep(20 * 1000);
    }
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    fs_pg_pool_put(p, c);
    fs_pg_pool_stats_get(p, &st);
    assert_int_equal(st.open, 1);
    assert_int_equal(st.discarded, 1);
    PGconn *d = fs_pg_pool_get(p, 1000, &err);
    assert_non_null(d);
    r = PQexec(d, "SELECT 1");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    fs_pg_pool_put(p, d);
    fs_pg_pool_put(p, b);
    fs_pg_pool_stats_get(p, &st);
    assert_int_equal(st.in_use, 0);
    fs_pg_pool_destroy(p);
}

static void test_redis(void **state)
{
    (void)state;
    fs_err err = {0};
    redisContext *c = fs_redis_connect(&cfg, 2000, &err);
    if (!c)
        fail_msg("connect: %s", err.msg);
    redisReply *r = redisCommand(c, "CONFIG GET port");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    printf("redis on port %s\n", r->element[1]->str);
    assert_int_equal(atol(r->element[1]->str), cfg.redis_port);
    assert_string_not_equal(r->element[1]->str, "6379");
    freeReplyObject(r);
    r = redisCommand(c, "CONFIG GET appendonly");
    assert_string_equal(r->element[1]->str, "yes");
    freeReplyObject(r);
    r = redisCommand(c, "SET %s %s", "flashsale:test", "v1");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = redisCommand(c, "GET %s", "flashsale:test");
    assert_string_equal(r->str, "v1");
    freeReplyObject(r);
    r = redisCommand(c, "INCRBY %s %d", "flashsale:test", 1);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    fs_err_from_redis(&err, c, r, "incr");
    assert_int_equal(err.cls, FS_ERR_INVALID);
    freeReplyObject(r);
    r = redisCommand(c, "DEL %s", "flashsale:test");
    freeReplyObject(r);
    redisFree(c);

    fs_common_config bad = cfg;
    bad.redis_password = "wrong-password";
    assert_null(fs_redis_connect(&bad, 2000, &err));
    assert_int_equal(err.cls, FS_ERR_FATAL);
    bad = cfg;
    bad.redis_port = 1;
    assert_null(fs_redis_connect(&bad, 2000, &err));
    assert_int_equal(err.cls, FS_ERR_RETRIABLE);
}

int main(void)
{
    fs_log_init("test-pg-redis", FS_LOG_WARN);
    fs_err err = {0};
    if (!getenv("FLASHSALE_PG_URL") || !getenv("FLASHSALE_REDIS_PORT")) {
        fprintf(stderr, "FLASHSALE_PG_URL/FLASHSALE_REDIS_PORT unset: run with make test\n");
        return 1;
    }
    if (fs_common_config_load(&cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_postgres),
        cmocka_unit_test(test_pg_pool),
        cmocka_unit_test(test_redis),
    };
    return cmocka_run_group_tests_name("pg_redis", tests, NULL, NULL);
}
