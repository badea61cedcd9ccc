/* The wishlist watcher of flashsale-notifier; see notifier.h.
 *
 * Reads every partition of inventory.events from the beginning (read_committed, assign
 * only) to know each product's name and sale start, then follows it. Occurrences:
 *  - "open:<sale start ms>" once the start has passed (checked every second), for members
 *    who wished the product before it opened;
 *  - "restock:<partition>:<offset>" for each ProductRestocked, for members who wished it
 *    before the restock.
 * Occurrences older than the window are not announced (a fresh start does not replay old
 * news). wishlist_notices' primary key (member, product, occurrence) makes each notice once
 * only, and the notification goes into the outbox in the same transaction. Only members with
 * a verified address are told. */
#include "flashsale/inventory_codec.h"
#include "flashsale/messages.h"
#include "notifier.h"

#include "fs/db.h"
#include "fs/follow.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/map.h"
#include "fs/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char name[256];
    int64_t starts, announced_start;
} product;

static PGconn *pg_get(const wishlist_watch *w, PGconn **c)
{
    if (*c && PQstatus(*c) == CONNECTION_OK)
        return *c;
    PQfinish(*c);
    fs_err err = {0};
    *c = fs_pg_connect(w->cfg, "flashsale-notifier-wishlist", &err);
    return *c;
}

/* Returns the number told, or -1 (PostgreSQL unavailable or the tables not there yet). */
static int announce(const wishlist_watch *w, PGconn **cp, const char *pid, const product *p,
                    const char *occurrence, const char *kind, int64_t at, const char *quantity)
{
    PGconn *c = pg_get(w, cp);
    if (!c)
        return -1;
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)at);
    PQclear(PQexec(c, "BEGIN"));
    PGresult *r = PQexecParams(c,
                               "WITH n AS (INSERT INTO wishlist_notices (member_id, product_id, occurrence)"
                               " SELECT w.member_id, w.product_id, $2 FROM wishlist w JOIN members m USING (member_id)"
                               " WHERE w.product_id = $1 AND m.status = 'ACTIVE'"
                               " AND w.created_at <= to_timestamp($3::bigint / 1000.0)"
                               " ON CONFLICT DO NOTHING RETURNING member_id)"
                               " SELECT n.member_id, m.email FROM n JOIN members m USING (member_id)",
                               3, NULL, (const char *[]){pid, occurrence, ts}, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        return -1;
    }
    int n = PQntuples(r), rc = 0;
    fs_err err = {0};
    for (int i = 0; i < n && rc == 0; i++) {
        void *buf = NULL;
        size_t len = 0;
        rc = fs_notification_new_bytes(w->codec, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), kind,
                                       (const char *const[]){"product_id", pid, "name", p->name,
                                                             "quantity", quantity ? quantity : "", NULL},
                                       fs_now_ms(), &buf, &len, &err) ||
             fs_outbox_add(c, FS_TOPIC_NOTIFICATIONS, PQgetvalue(r, i, 0), "NotificationRequested",
                           buf, len, &err);
        free(buf);
    }
    PQclear(r);
    PGresult *e = PQexec(c, rc ? "ROLLBACK" : "COMMIT");
    bool ok = rc == 0 && PQresultStatus(e) == PGRES_COMMAND_OK;
    PQclear(e);
    if (!ok)
        return -1;
    if (n)
        fs_log_info("wishlist notices", json_pack("{s:s,s:s,s:i}", "product_id", pid, "occurrence", occurrence,
                                                  "members", n));
    return n;
}

typedef struct {
    const wishlist_watch *w;
    PGconn **c;
    int64_t now;
} tick_ctx;

static void tick_one(void *ctx, const char *pid, void *v)
{
    tick_ctx *t = ctx;
    product *p = v;
    if (!p->starts || p->starts > t->now || p->announced_start == p->starts)
        return;
    if (t->now - p->starts > t->w->open_window_s * 1000) {
        p->announced_start = p->starts; /* old news */
        return;
    }
    char occ[48];
    snprintf(occ, sizeof occ, "open:%lld", (long long)p->starts);
    if (announce(t->w, t->c, pid, p, occ, "WISHLIST_SALE_OPEN", p->starts, NULL) >= 0)
        p->announced_start = p->starts;
}

/* Follows inventory.events, every partition, from the beginning. */
static fs_follower *reader(const wishlist_watch *w)
{
    fs_err err = {0};
    rd_kafka_t *admin = fs_kafka_new(w->cfg,
                                     &(fs_kafka_client){.role = FS_KAFKA_ADMIN,
                                                        .client_id = "flashsale-notifier-wishlist"},
                                     &err);
    int n = admin ? fs_kafka_partition_count(admin, FS_TOPIC_INVENTORY_EVENTS, 10000, &err) : -1;
    if (admin)
        rd_kafka_destroy(admin);
    fs_follower *f = NULL;
    if (n > 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
        for (int i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(l, FS_TOPIC_INVENTORY_EVENTS, i)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
        /* it needs no low latency: larger, rarer fetches spare the broker a response per commit */
        f = fs_follower_new(w->cfg, "flashsale-notifier-wishlist", l,
                            (const char *const[]){"fetch.wait.max.ms", "200", "fetch.min.bytes",
                                                  "65536", NULL},
                            10000, &err);
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (!f)
        fs_log_warn("wishlist watcher cannot read inventory.events yet", json_pack("{s:s}", "error", err.msg));
    return f;
}

void *wishlist_watch_main(void *arg)
{
    const wishlist_watch *w = arg;
    fs_log_set_cid("wishlist-watch");
    fs_follower *c = NULL;
    while (!*w->stop && !(c = reader(w)))
        sleep(1);
    fs_map *products = fs_map_new(1024);
    PGconn *pg = NULL;
    int64_t last_tick = 0;
    while (!*w->stop && c) {
        rd_kafka_message_t *m = fs_follower_poll(c, 200);
        if (m) {
            inv_event e;
            fs_err err = {0};
            if (inv_event_decode_bytes(w->codec, m->payload, m->len, &e, &err) == 0) {
                product *p = fs_map_get(products, e.product_id);
                if (!p && e.type == INV_EV_DEFINED && (p = calloc(1, sizeof *p)))
                    fs_map_put(products, e.product_id, p);
                if (p && (e.type == INV_EV_DEFINED || e.type == INV_EV_UPDATED)) {
                    if (e.type == INV_EV_DEFINED || e.f.has_name)
                        snprintf(p->name, sizeof p->name, "%s", e.f.name);
                    if (e.type == INV_EV_DEFINED || e.f.has_starts)
                        p->starts = e.f.sale_starts_at;
                } else if (p && e.type == INV_EV_RESTOCKED && fs_now_ms() - e.occurred_at < w->open_window_s * 1000) {
                    char occ[64], qty[16];
                    snprintf(occ, sizeof occ, "restock:%d:%lld", (int)m->partition, (long long)m->offset);
                    snprintf(qty, sizeof qty, "%d", (int)e.quantity);
                    while (announce(w, &pg, e.product_id, p, occ, "WISHLIST_RESTOCKED", e.occurred_at, qty) < 0 &&
                           !*w->stop)
                        sleep(1); /* the notice must not be skipped: wait for PostgreSQL */
                }
            }
        }
        if (m)
            rd_kafka_message_destroy(m);
        if (fs_mono_ms() - last_tick >= 1000) {
            last_tick = fs_mono_ms();
            tick_ctx t = {w, &pg, fs_now_ms()};
            fs_map_foreach(products, tick_one, &t);
        }
    }
    fs_follower_destroy(c);
    PQfinish(pg);
    fs_map_destroy_free(products);
    return NULL;
}
