/* Dependency monitor; see health.h. Keeps one PostgreSQL and one Redis connection open and
 * reconnects when a check fails. */
#include "health.h"

#include "fs/db.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    bool ok;
    long ms;
    char error[256];
} dep_state;

struct fs_health {
    const fs_common_config *cfg;
    rd_kafka_t *meta; /* the monitor's own client for metadata (made on first use) */
    fs_health_producers_fn *producers_ok;
    void *producers_ctx;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop, checked;
    dep_state kafka, pg, redis;
    PGconn *pg_conn;
    redisContext *redis_conn;
};

static void check_kafka(fs_health *h, dep_state *s)
{
    fs_err err = {0};
    if (!h->meta &&
        !(h->meta = fs_kafka_new(h->cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-api-health"},
                                 &err))) {
        s->ok = false;
        snprintf(s->error, sizeof s->error, "%s", err.msg);
        return;
    }
    rd_kafka_poll(h->meta, 0); /* its queue collects connection errors while Kafka is away */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(h->meta, 0, NULL, &md, 2000);
    s->ok = e == RD_KAFKA_RESP_ERR_NO_ERROR && md->broker_cnt > 0;
    snprintf(s->error, sizeof s->error, "%s", s->ok ? "" : rd_kafka_err2str(e));
    if (md)
        rd_kafka_metadata_destroy(md);
    if (s->ok && h->producers_ok && !h->producers_ok(h->producers_ctx, s->error, sizeof s->error))
        s->ok = false;
}

static void check_pg(fs_health *h, dep_state *s)
{
    fs_err err = {0};
    if (h->pg_conn && PQstatus(h->pg_conn) != CONNECTION_OK) {
        PQfinish(h->pg_conn);
        h->pg_conn = NULL;
    }
    if (!h->pg_conn)
        h->pg_conn = fs_pg_connect(h->cfg, "flashsale-api-health", &err);
    if (!h->pg_conn) {
        s->ok = false;
        snprintf(s->error, sizeof s->error, "%s", err.msg);
        return;
    }
    PGresult *r = PQexec(h->pg_conn, "SELECT 1");
    s->ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!s->ok) {
        fs_err_from_pg(&err, h->pg_conn, r, "postgres");
        snprintf(s->error, sizeof s->error, "%s", err.msg);
        PQfinish(h->pg_conn);
        h->pg_conn = NULL;
    } else
        s->error[0] = '\0';
    PQclear(r);
}

static void check_redis(fs_health *h, dep_state *s)
{
    fs_err err = {0};
    if (!h->redis_conn)
        h->redis_conn = fs_redis_connect(h->cfg, 1000, &err);
    if (!h->redis_conn) {
        s->ok = false;
        snprintf(s->error, sizeof s->error, "%s", err.msg);
        return;
    }
    redisReply *r = redisCommand(h->redis_conn, "PING");
    s->ok = r && r->type == REDIS_REPLY_STATUS;
    if (!s->ok) {
        fs_err_from_redis(&err, h->redis_conn, r, "redis");
        snprintf(s->error, sizeof s->error, "%s", err.msg);
        redisFree(h->redis_conn);
        h->redis_conn = NULL;
    } else
        s->error[0] = '\0';
    if (r)
        freeReplyObject(r);
}

static void *monitor(void *arg)
{
    pthread_setname_np(pthread_self(), "api-health"); /* for per-thread CPU (perf/profile) */
    fs_health *h = arg;
    fs_log_set_cid("health");
    for (;;) {
        dep_state k = {0}, p = {0}, r = {0};
        int64_t t = fs_mono_ms();
        check_kafka(h, &k);
        k.ms = (long)(fs_mono_ms() - t);
        t = fs_mono_ms();
        check_pg(h, &p);
        p.ms = (long)(fs_mono_ms() - t);
        t = fs_mono_ms();
        check_redis(h, &r);
        r.ms = (long)(fs_mono_ms() - t);
        pthread_mutex_lock(&h->lock);
        if (h->checked && (h->kafka.ok != k.ok || h->pg.ok != p.ok || h->redis.ok != r.ok))
            fs_log_warn("readiness changed",
                        json_pack("{s:b,s:b,s:b}", "kafka", k.ok, "postgres", p.ok, "redis", r.ok));
        h->kafka = k;
        h->pg = p;
        h->redis = r;
        h->checked = true;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        while (!h->stop && pthread_cond_timedwait(&h->wake, &h->lock, &until) == 0)
            ;
        bool stop = h->stop;
        pthread_mutex_unlock(&h->lock);
        if (stop)
            break;
    }
    if (h->pg_conn)
        PQfinish(h->pg_conn);
    if (h->redis_conn)
        redisFree(h->redis_conn);
    if (h->meta)
        rd_kafka_destroy(h->meta);
    return NULL;
}

fs_health *fs_health_start(const fs_common_config *cfg, fs_health_producers_fn *producers_ok, void *ctx)
{
    fs_health *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->cfg = cfg;
    h->producers_ok = producers_ok;
    h->producers_ctx = ctx;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->wake, NULL);
    if (pthread_create(&h->thread, NULL, monitor, h)) {
        free(h);
        return NULL;
    }
    return h;
}

void fs_health_stop(fs_health *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->stop = true;
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->thread, NULL);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->wake);
    free(h);
}

static json_t *dep_json(const dep_state *s)
{
    json_t *o = json_pack("{s:s,s:i}", "status", s->ok ? "ok" : "down", "check_ms", (int)s->ms);
    if (!s->ok)
        json_object_set_new(o, "error", json_string(s->error));
    return o;
}

bool fs_health_snapshot(fs_health *h, json_t **detail)
{
    pthread_mutex_lock(&h->lock);
    bool ok = h->checked && h->kafka.ok && h->pg.ok && h->redis.ok;
    *detail = json_pack("{s:s,s:o,s:o,s:o}", "status", ok ? "ready" : "not_ready", "kafka",
                        dep_json(&h->kafka), "postgres", dep_json(&h->pg), "redis",
                        dep_json(&h->redis));
    pthread_mutex_unlock(&h->lock);
    return ok;
}
