/* flashsale-admin: operator commands on member accounts (never exposed over HTTP).
 *
 *   flashsale-admin create --email EMAIL [--name NAME]
 *       creates an administrator account, verified; the password is read from
 *       FLASHSALE_ADMIN_PASSWORD or, if unset, from the first line of standard input
 *       (at least 12 characters). The account is announced on members.events through the
 *       outbox like any other.
 *   flashsale-admin promote --email EMAIL
 *       gives an existing member the admin role (its sessions end: new tokens carry the role).
 *   flashsale-admin retention (--dedup-window D --sold-memory D | --defaults)
 *                             [--actor NAME] [--timeout S] [--no-wait]
 *       sets how long the inventory remembers decided lines (deduplication window) and sold
 *       lines: a SetRetention command to every partition of inventory.commands, then waits
 *       (up to --timeout, 60 s) until the processor has answered each one in
 *       inventory.events, committed. D: a number with a unit, ms, s, m, h or d (plain: ms),
 *       from 1 minute to 3650 days; --defaults: 1 day and 45 days. Prints one JSON line per
 *       partition and a summary; exit 0 when every partition took the windows, 1 when one
 *       refused them or did not answer in time, 2 on bad arguments. The windows are state in
 *       the log, not a setting of a process (docs/architecture.md, "Bounded state").
 *
 * create and promote need FLASHSALE_PG_URL and FLASHSALE_PII_KEY (the tables are created by
 * flashsale-api); retention needs FLASHSALE_KAFKA_BROKERS. */
#include "flashsale/inventory.h"
#include "flashsale/inventory_codec.h"
#include "flashsale/messages.h"

#include "fs/codec.h"
#include "fs/config.h"
#include "fs/db.h"
#include "fs/follow.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/outbox.h"
#include "fs/secrets.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: flashsale-admin create --email EMAIL [--name NAME]\n"
                    "       flashsale-admin promote --email EMAIL\n"
                    "       flashsale-admin retention (--dedup-window D --sold-memory D | --defaults)\n"
                    "                                 [--actor NAME] [--timeout S] [--no-wait]\n"
                    "         (D: a number with a unit ms, s, m, h or d; 1 minute to 3650 days)\n"
                    "(create reads the password from FLASHSALE_ADMIN_PASSWORD or standard input)\n");
    return 2;
}

static int member_event(const fs_codec *codec, PGconn *c, mem_event_type type, const char *id, fs_err *err)
{
    mem_event e = {.type = type, .occurred_at = fs_now_ms()};
    snprintf(e.member_id, sizeof e.member_id, "%s", id);
    snprintf(e.role, sizeof e.role, "admin");
    void *buf = NULL;
    size_t len = 0;
    int rc = mem_event_encode(codec, &e, &buf, &len, err);
    if (rc == 0)
        rc = fs_outbox_add(c, FS_TOPIC_MEMBERS_EVENTS, id, mem_event_name(type), buf, len, err);
    free(buf);
    return rc;
}

/* ---- retention ---------------------------------------------------------------------- */

/* "90s", "10m", "1d", "60000" (ms) -> ms. */
static int parse_duration(const char *s, int64_t *ms)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || v < 0)
        return -1;
    int64_t unit = !*end || !strcmp(end, "ms") ? 1
                   : !strcmp(end, "s")          ? 1000
                   : !strcmp(end, "m")          ? 60000
                   : !strcmp(end, "h")          ? 3600000
                   : !strcmp(end, "d")          ? 86400000
                                                : -1;
    if (unit < 0 || v > INT64_MAX / unit)
        return -1;
    *ms = v * unit;
    return 0;
}

#define MAX_PARTS 1024

typedef struct {
    int64_t offset[MAX_PARTS]; /* of each partition's command; -1 until delivered */
    int failed;
    char why[256];
} delivery;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    delivery *d = opaque;
    if (m->err) {
        d->failed++;
        snprintf(d->why, sizeof d->why, "%s", rd_kafka_err2str(m->err));
    } else if (m->partition >= 0 && m->partition < MAX_PARTS) {
        d->offset[m->partition] = m->offset;
    }
}

static int retention(int argc, char **argv)
{
    int64_t dedup = -1, sold = -1, timeout_s = 60;
    bool wait = true;
    char actor[INV_ID_MAX];
    snprintf(actor, sizeof actor, "%s", getenv("USER") ? getenv("USER") : "operator");
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && !strcmp(a, "--dedup-window") && ++i) {
            if (parse_duration(v, &dedup))
                return fprintf(stderr, "flashsale-admin: --dedup-window: not a duration: %s\n", v), 2;
        } else if (v && !strcmp(a, "--sold-memory") && ++i) {
            if (parse_duration(v, &sold))
                return fprintf(stderr, "flashsale-admin: --sold-memory: not a duration: %s\n", v), 2;
        } else if (v && !strcmp(a, "--actor") && ++i) {
            snprintf(actor, sizeof actor, "%s", v);
        } else if (v && !strcmp(a, "--timeout") && ++i) {
            char *end;
            timeout_s = strtoll(v, &end, 10);
            if (*end || timeout_s < 1 || timeout_s > 3600)
                return fprintf(stderr, "flashsale-admin: --timeout: 1 to 3600 seconds\n"), 2;
        } else if (!strcmp(a, "--defaults")) {
            dedup = INV_DEDUP_WINDOW_MS;
            sold = INV_SOLD_MEMORY_MS;
        } else if (!strcmp(a, "--no-wait")) {
            wait = false;
        } else {
            return usage();
        }
    }
    if (dedup < 0 || sold < 0)
        return usage();
    if (!inv_retention_valid(dedup, sold)) {
        fprintf(stderr, "flashsale-admin: each window must be from 1 minute to 3650 days\n");
        return 2;
    }
    fs_log_init("admin", FS_LOG_WARN);
    fs_common_config cfg;
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    static delivery d;
    for (int i = 0; i < MAX_PARTS; i++)
        d.offset[i] = -1;
    fs_codec *codec = fs_codec_new(&err);
    rd_kafka_t *prod = codec ? fs_kafka_new(&cfg,
                                            &(fs_kafka_client){.role = FS_KAFKA_PRODUCER,
                                                               .client_id = "flashsale-admin",
                                                               .dr = on_delivery,
                                                               .opaque = &d},
                                            &err)
                             : NULL;
    rd_kafka_t *probe = prod ? fs_kafka_probe_new(&cfg, &err) : NULL;
    int nparts = probe ? fs_kafka_partition_count(prod, FS_TOPIC_INVENTORY_COMMANDS, 10000, &err) : -1;
    int rc = 1;
    void *buf = NULL;
    size_t len = 0;
    rd_kafka_topic_partition_list_t *from = NULL;
    fs_follower *f = NULL;
    if (nparts < 1 || nparts > MAX_PARTS) {
        fprintf(stderr, "flashsale-admin: %s\n", nparts < 1 ? err.msg : "too many partitions");
        goto out;
    }
    /* where each partition's answer can first be: the changelog's end before the commands */
    from = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(probe, FS_TOPIC_INVENTORY_EVENTS, i, &lo, &hi, 10000);
        if (e) {
            fprintf(stderr, "flashsale-admin: %s partition %d: %s\n", FS_TOPIC_INVENTORY_EVENTS, i,
                    rd_kafka_err2str(e));
            goto out;
        }
        rd_kafka_topic_partition_list_add(from, FS_TOPIC_INVENTORY_EVENTS, i)->offset = hi;
    }
    inv_command c = {.type = INV_CMD_SET_RETENTION, .dedup_window_ms = dedup, .sold_memory_ms = sold,
                     .requested_at = fs_now_ms()};
    snprintf(c.actor_id, sizeof c.actor_id, "%s", actor);
    if (inv_command_encode(codec, &c, &buf, &len, &err)) {
        fprintf(stderr, "flashsale-admin: %s\n", err.msg);
        goto out;
    }
    char event_id[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(event_id);
    for (int i = 0; i < nparts; i++) {
        fs_event_meta meta = {.event_type = "SetRetention", .correlation_id = event_id,
                              .occurred_at = c.requested_at};
        rd_kafka_headers_t *h = fs_kafka_headers_new(&meta);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            prod, RD_KAFKA_V_TOPIC(FS_TOPIC_INVENTORY_COMMANDS), RD_KAFKA_V_PARTITION(i),
            RD_KAFKA_V_KEY("retention", 9), RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e) {
            rd_kafka_headers_destroy(h);
            fprintf(stderr, "flashsale-admin: partition %d: %s\n", i, rd_kafka_err2str(e));
            goto out;
        }
    }
    rd_kafka_flush(prod, 35000);
    int delivered = 0;
    for (int i = 0; i < nparts; i++)
        delivered += d.offset[i] >= 0;
    fprintf(stderr, "flashsale-admin: SetRetention (dedup %lld ms, sold %lld ms) written to %d of %d partitions\n",
            (long long)dedup, (long long)sold, delivered, nparts);
    if (delivered < nparts) {
        fprintf(stderr, "flashsale-admin: %d not written (%s); run it again: a repeat is harmless\n",
                nparts - delivered, d.failed ? d.why : "timed out");
        goto out;
    }
    if (!wait) {
        for (int i = 0; i < nparts; i++)
            printf("{\"partition\":%d,\"command_offset\":%lld}\n", i, (long long)d.offset[i]);
        rc = 0;
        goto out;
    }
    /* the answers, as committed: a RetentionSet, or a CommandRejected, naming each command */
    f = fs_follower_new(&cfg, "flashsale-admin", from, NULL, 10000, &err);
    if (!f) {
        fprintf(stderr, "flashsale-admin: %s\n", err.msg);
        goto out;
    }
    static char answer[MAX_PARTS][160];
    int answered = 0, took = 0;
    int64_t deadline = fs_mono_ms() + timeout_s * 1000, next_note = fs_mono_ms() + 5000;
    while (answered < nparts && fs_mono_ms() < deadline) {
        rd_kafka_message_t *m = fs_follower_poll(f, 200);
        if (fs_mono_ms() >= next_note) {
            fprintf(stderr, "flashsale-admin: %d of %d partitions answered; waiting\n", answered, nparts);
            next_note += 5000;
        }
        if (!m)
            continue;
        inv_event ev;
        fs_err derr = {0};
        int32_t part = m->partition;
        if (!m->err && part >= 0 && part < nparts && !answer[part][0] &&
            inv_event_decode_bytes(codec, m->payload, m->len, &ev, &derr) == 0 &&
            ev.command_offset == d.offset[part]) {
            answered++;
            bool ok = ev.type == INV_EV_RETENTION_SET;
            took += ok;
            snprintf(answer[part], sizeof answer[part], "%s", ok ? "RetentionSet" : inv_event_name(ev.type));
            json_t *line = json_pack("{s:i,s:I,s:s,s:I}", "partition", (int)part, "command_offset",
                                     (json_int_t)d.offset[part], "answer", answer[part],
                                     "event_offset", (json_int_t)m->offset);
            if (!ok)
                json_object_set_new(line, "detail", json_string(ev.detail));
            char *text = json_dumps(line, JSON_COMPACT);
            printf("%s\n", text ? text : "{}");
            free(text);
            json_decref(line);
        }
        rd_kafka_message_destroy(m);
    }
    json_t *sum = json_pack("{s:I,s:I,s:i,s:i,s:i}", "dedup_window_ms", (json_int_t)dedup, "sold_memory_ms",
                            (json_int_t)sold, "partitions", nparts, "set", took, "unanswered", nparts - answered);
    char *text = json_dumps(sum, JSON_COMPACT);
    printf("%s\n", text ? text : "{}");
    free(text);
    json_decref(sum);
    if (answered < nparts)
        fprintf(stderr, "flashsale-admin: %d partitions did not answer within %lld s (is flashsale-inventory running?);"
                        " their commands are in the log and take effect when it answers them\n",
                nparts - answered, (long long)timeout_s);
    rc = took == nparts ? 0 : 1;
out:
    fs_follower_destroy(f);
    if (from)
        rd_kafka_topic_partition_list_destroy(from);
    free(buf);
    if (probe)
        rd_kafka_destroy(probe);
    if (prod)
        rd_kafka_destroy(prod);
    fs_codec_destroy(codec);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (!strcmp(argv[1], "retention"))
        return retention(argc, argv);
    const char *cmd = argv[1], *email_in = NULL, *name = "Administrator";
    for (int i = 2; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--email"))
            email_in = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--name"))
            name = argv[++i];
        else
            return usage();
    }
    if (!email_in || (strcmp(cmd, "create") && strcmp(cmd, "promote")))
        return usage();
    char email[256];
    size_t n = strlen(email_in);
    if (n < 3 || n >= sizeof email || !strchr(email_in, '@')) {
        fprintf(stderr, "flashsale-admin: not an e-mail address: %s\n", email_in);
        return 2;
    }
    for (size_t i = 0; i <= n; i++)
        email[i] = (char)tolower((unsigned char)email_in[i]);
    fs_log_init("admin", FS_LOG_WARN);
    fs_common_config cfg;
    fs_err err = {0};
    unsigned char key[FS_PII_KEY_BYTES];
    if (fs_common_config_load(&cfg, &err) || fs_pii_key_load(key, &err))
        fs_config_die(&err);
    PGconn *c = fs_pg_connect(&cfg, "flashsale-admin", &err);
    if (!c) {
        fprintf(stderr, "flashsale-admin: %s\n", err.msg);
        return 1;
    }
    int rc = 1;
    if (!strcmp(cmd, "promote")) {
        PGresult *r = PQexecParams(c,
                                   "UPDATE members SET role = 'admin', session_gen = session_gen + 1,"
                                   " updated_at = now() WHERE email = $1 AND status <> 'DELETED' RETURNING member_id",
                                   1, NULL, (const char *[]){email}, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fprintf(stderr, "flashsale-admin: %s", PQerrorMessage(c));
        else if (PQntuples(r) != 1)
            fprintf(stderr, "flashsale-admin: no member with the address %s\n", email);
        else {
            printf("{\"member_id\":\"%s\",\"email\":\"%s\",\"role\":\"admin\"}\n", PQgetvalue(r, 0, 0), email);
            rc = 0;
        }
        PQclear(r);
        PQfinish(c);
        return rc;
    }
    char pw[1030] = "";
    const char *env = getenv("FLASHSALE_ADMIN_PASSWORD");
    if (env)
        snprintf(pw, sizeof pw, "%s", env);
    else if (fgets(pw, sizeof pw, stdin))
        pw[strcspn(pw, "\r\n")] = '\0';
    if (strlen(pw) < 12 || strlen(pw) > 1024) {
        fprintf(stderr, "flashsale-admin: the password must be 12 to 1024 characters\n");
        PQfinish(c);
        return 2;
    }
    char hash[crypto_pwhash_STRBYTES], id[FS_UUID_STR_LEN + 1];
    if (crypto_pwhash_str(hash, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE)) {
        fprintf(stderr, "flashsale-admin: out of memory hashing the password\n");
        PQfinish(c);
        return 1;
    }
    sodium_memzero(pw, sizeof pw);
    fs_uuid7_str(id);
    unsigned char *sealed = NULL;
    size_t slen = 0;
    fs_codec *codec = fs_codec_new(&err);
    if (!codec || fs_seal(key, id, "name", name, &sealed, &slen)) {
        fprintf(stderr, "flashsale-admin: %s\n", codec ? "out of memory" : err.msg);
        PQfinish(c);
        return 1;
    }
    PQclear(PQexec(c, "BEGIN"));
    const char *v[] = {id, email, hash, (const char *)sealed};
    int lens[] = {0, 0, 0, (int)slen}, fmts[] = {0, 0, 0, 1};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO members (member_id, email, password_hash, name_sealed, role, status,"
                               " verified_at) VALUES ($1, $2, $3, $4, 'admin', 'ACTIVE', now())"
                               " ON CONFLICT (email) DO NOTHING RETURNING member_id",
                               4, NULL, v, lens, fmts, 0);
    free(sealed);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "flashsale-admin: %s%s", PQerrorMessage(c),
                strstr(PQerrorMessage(c), "does not exist") ? "(start flashsale-api once: it creates the tables)\n" : "");
    else if (PQntuples(r) != 1)
        fprintf(stderr, "flashsale-admin: %s already has an account (use promote)\n", email);
    else if (member_event(codec, c, MEM_EV_REGISTERED, id, &err) || member_event(codec, c, MEM_EV_VERIFIED, id, &err))
        fprintf(stderr, "flashsale-admin: %s\n", err.msg);
    else
        rc = 0;
    PQclear(r);
    PQclear(PQexec(c, rc ? "ROLLBACK" : "COMMIT"));
    if (rc == 0)
        printf("{\"member_id\":\"%s\",\"email\":\"%s\",\"role\":\"admin\",\"status\":\"ACTIVE\"}\n", id, email);
    PQfinish(c);
    fs_codec_destroy(codec);
    sodium_memzero(key, sizeof key);
    return rc;
}
