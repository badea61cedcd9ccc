/* The outbox relay; see outbox_relay.h. */
#include "outbox_relay.h"

#include "fs/db.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <endian.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct api_relay {
    const fs_common_config *cfg;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t kick_lock;
    pthread_cond_t kick_cond;
    int kicked; /* under kick_lock */
    atomic_int failed_deliveries; /* delivery reports with an error since the last look */
};

void api_relay_kick(api_relay *r)
{
    pthread_mutex_lock(&r->kick_lock);
    r->kicked = 1;
    pthread_cond_signal(&r->kick_cond);
    pthread_mutex_unlock(&r->kick_lock);
}

/* Delivery reports: every record carries its relay as its opaque (RD_KAFKA_V_OPAQUE). */
static void relay_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    api_relay *r = m->_private;
    if (m->err) {
        if (r)
            atomic_fetch_add_explicit(&r->failed_deliveries, 1, memory_order_relaxed);
        fs_log_warn("outbox record not delivered", json_pack("{s:s}", "error", rd_kafka_err2str(m->err)));
    }
}

/* Produces row i of the outbox batch r (binary results). */
static int produce_row(api_relay *relay, rd_kafka_t *p, PGresult *r, int i, fs_err *err)
{
    char topic[64], key[128], type[64], eid[64];
    snprintf(topic, sizeof topic, "%.*s", PQgetlength(r, i, 1), PQgetvalue(r, i, 1));
    snprintf(key, sizeof key, "%.*s", PQgetlength(r, i, 2), PQgetvalue(r, i, 2));
    snprintf(type, sizeof type, "%.*s", PQgetlength(r, i, 3), PQgetvalue(r, i, 3));
    snprintf(eid, sizeof eid, "%.*s", PQgetlength(r, i, 4), PQgetvalue(r, i, 4));
    uint64_t be = 0;
    memcpy(&be, PQgetvalue(r, i, 6), sizeof be);
    fs_event_meta meta = {.event_type = type, .event_id = eid, .correlation_id = key,
                          .occurred_at = (int64_t)be64toh(be)};
    rd_kafka_headers_t *h = fs_kafka_headers_new(&meta);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE(PQgetvalue(r, i, 5), (size_t)PQgetlength(r, i, 5)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(relay),
        RD_KAFKA_V_END);
    if (e) {
        rd_kafka_headers_destroy(h);
        return fs_err_from_kafka_code(err, e, "outbox produce");
    }
    return 0;
}

/* Acknowledged: the batch's rows go (they hold codes and addresses in the clear; Kafka has
 * them now, and nothing reads a sent row). */
static int delete_rows(PGconn *c, PGresult *r, fs_err *err)
{
    int n = PQntuples(r);
    /* ids are bigint in network order (binary results): pass them back as text */
    char *ids = malloc((size_t)n * 22 + 3), *o = ids;
    if (!ids)
        return fs_err_set(err, FS_ERR_RETRIABLE, 0, "outbox: out of memory");
    *o++ = '{';
    for (int i = 0; i < n; i++) {
        uint64_t be = 0;
        memcpy(&be, PQgetvalue(r, i, 0), sizeof be);
        o += sprintf(o, "%s%lld", i ? "," : "", (long long)be64toh(be));
    }
    *o++ = '}';
    *o = '\0';
    PGresult *u = PQexecParams(c, "DELETE FROM outbox WHERE id = ANY($1::bigint[])", 1, NULL,
                               (const char *[]){ids}, NULL, NULL, 0);
    int rc = PQresultStatus(u) == PGRES_COMMAND_OK ? 0 : fs_err_from_pg(err, c, u, "outbox delete");
    PQclear(u);
    free(ids);
    return rc;
}

/* One batch: the rows sent and deleted, 0 when there were none, -1 with *err. */
static int relay_once(api_relay *relay, PGconn *c, rd_kafka_t *p, fs_err *err)
{
    PQclear(PQexec(c, "BEGIN"));
    PGresult *r = PQexecParams(c,
                               "SELECT id, topic, key, event_type, event_id, payload,"
                               " (extract(epoch FROM created_at) * 1000)::bigint FROM outbox"
                               " WHERE sent_at IS NULL ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED",
                               0, NULL, NULL, NULL, NULL, 1 /* binary results */);
    int n = 0, rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = fs_err_from_pg(err, c, r, "outbox read");
    else
        n = PQntuples(r);
    for (int i = 0; i < n && rc == 0; i++)
        rc = produce_row(relay, p, r, i, err);
    /* every record acknowledged (acks=all), or none counts */
    if (n && rc == 0 && rd_kafka_flush(p, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        rc = fs_err_set(err, FS_ERR_RETRIABLE, 0, "outbox: the broker did not acknowledge in 10 s");
    if (n && rc == 0 && atomic_exchange(&relay->failed_deliveries, 0))
        rc = fs_err_set(err, FS_ERR_RETRIABLE, 0, "outbox: delivery failed");
    if (n && rc == 0)
        rc = delete_rows(c, r, err);
    PQclear(r);
    PQclear(PQexec(c, rc ? "ROLLBACK" : "COMMIT")); /* the batch's one end */
    return rc ? -1 : n;
}

/* Idle or failing: waits for a kick or a second. */
static void relay_wait(api_relay *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    pthread_mutex_lock(&r->kick_lock);
    while (!r->kicked && !atomic_load(&r->stop) && pthread_cond_timedwait(&r->kick_cond, &r->kick_lock, &ts) == 0)
        ;
    r->kicked = 0;
    pthread_mutex_unlock(&r->kick_lock);
}

static void *relay_main(void *arg)
{
    pthread_setname_np(pthread_self(), "api-outbox"); /* for per-thread CPU (perf/profile) */
    api_relay *r = arg;
    fs_log_set_cid("outbox-relay");
    PGconn *c = NULL;
    rd_kafka_t *p = NULL;
    int64_t last_warn = 0;
    /* An idempotent producer's fatal error fails every produce from then on; the rows it
     * could not send stay in the outbox, and its replacement sends them. */
    const fs_kafka_client spec = {.role = FS_KAFKA_PRODUCER,
                                  .client_id = "flashsale-api-outbox",
                                  .dr = relay_dr,
                                  .extra = (const char *const[]){"linger.ms", "1", "message.timeout.ms",
                                                                 "10000", NULL}};
    while (!atomic_load(&r->stop)) {
        fs_err err = {0};
        int renewed = fs_kafka_renew_if_fatal(&p, r->cfg, &spec, "outbox relay", 2000, &err);
        if (renewed < 0) {
            fs_log_error("outbox relay cannot start its producer", json_pack("{s:s}", "error", err.msg));
            sleep(1);
            continue;
        }
        if (renewed)
            atomic_store(&r->failed_deliveries, 0);
        if (!c || PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = fs_pg_connect(r->cfg, "flashsale-api-outbox", &err);
            /* rows that earlier versions kept after their acknowledgement go too */
            if (c)
                PQclear(PQexec(c, "DELETE FROM outbox WHERE sent_at IS NOT NULL"));
        }
        int n = c ? relay_once(r, c, p, &err) : -1;
        if (n < 0 && fs_mono_ms() - last_warn > 10000) {
            last_warn = fs_mono_ms();
            fs_log_warn("outbox relay waiting (messages stay in the outbox)", json_pack("{s:s}", "error", err.msg));
        }
        if (n > 0) {
            fs_log_debug("outbox relayed", json_pack("{s:i}", "records", n));
            continue; /* more may be waiting */
        }
        relay_wait(r);
    }
    PQfinish(c);
    if (p) {
        rd_kafka_flush(p, 5000);
        rd_kafka_destroy(p);
    }
    return NULL;
}

api_relay *api_relay_start(const fs_common_config *cfg, fs_err *err)
{
    api_relay *r = calloc(1, sizeof *r);
    if (!r) {
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory for the outbox relay");
        return NULL;
    }
    r->cfg = cfg;
    atomic_init(&r->stop, 0);
    atomic_init(&r->failed_deliveries, 0);
    pthread_mutex_init(&r->kick_lock, NULL);
    pthread_cond_init(&r->kick_cond, NULL);
    if (pthread_create(&r->thread, NULL, relay_main, r)) {
        pthread_mutex_destroy(&r->kick_lock);
        pthread_cond_destroy(&r->kick_cond);
        free(r);
        fs_err_set(err, FS_ERR_FATAL, 0, "cannot start the outbox relay");
        return NULL;
    }
    return r;
}

void api_relay_stop(api_relay *r)
{
    if (!r)
        return;
    atomic_store(&r->stop, 1);
    api_relay_kick(r);
    pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->kick_lock);
    pthread_cond_destroy(&r->kick_cond);
    free(r);
}
