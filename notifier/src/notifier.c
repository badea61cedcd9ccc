/* flashsale-notifier: delivers `notifications` to members.
 *
 * Consumes `notifications` in the consumer group FLASHSALE_NOTIFIER_GROUP
 * (flashsale-notifier; at least once: a message's offset is stored once it is delivered and
 * the stored offsets are committed once a second and on close, so a crash redelivers about a
 * second of messages (more while commits fail), which the spool and notifications_sent skip; fetches wait for 64 KiB
 * or 100 ms, since a mail need not leave within milliseconds). Each NotificationRequested becomes an
 * RFC 5322 message:
 *  - with FLASHSALE_SMTP_URL set (e.g. smtp://mail:25, smtps://...), sent through libcurl
 *    (FLASHSALE_SMTP_FROM, optional FLASHSALE_SMTP_USER / FLASHSALE_SMTP_PASSWORD); the
 *    notification id is recorded in PostgreSQL (notifications_sent) after sending, and a
 *    redelivered id is not sent again;
 *  - otherwise written into a maildir spool (FLASHSALE_SPOOL_DIR, default
 *    $FLASHSALE_RUN_DIR/mail): tmp/<id> then renamed to new/<id>; a redelivered id whose
 *    file exists is skipped, so each notification is exactly one file.
 * The address is the event's, else the member's from PostgreSQL; a member without one
 * (operator and load-test tokens) is skipped and counted. Sending is rate limited
 * (FLASHSALE_NOTIFY_RATE_PER_S, 20) so a big sale does not get the sender blocked; a failed
 * delivery is retried with exponential backoff (FLASHSALE_NOTIFY_MAX_ATTEMPTS, 5), then the
 * record goes to the dead-letter topic with the reason. Undecodable records too.
 * The wishlist watcher runs on a second thread (wishlist_watch.c). */
#include "notifier.h"

#include "flashsale/messages.h"

#include "fs/db.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/mailhdr.h"
#include "fs/map.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile int stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

typedef struct {
    fs_common_config cfg;
    fs_codec *codec;
    PGconn *pg;
    const char *smtp_url, *smtp_from, *smtp_user, *smtp_password, *spool;
    long rate, max_attempts;
    double tokens;
    int64_t tokens_at;
    uint64_t delivered, duplicates, no_address, dead;
    fs_map *nobody; /* member id -> (int64_t *) monotonic ms until which it is known to have no address */
    /* Dead letters that did not reach the log, "partition/offset" -> (char *) the reason: their
     * records are read again (their offsets are not stored) and dead-lettered at once, without
     * delivery attempts a second time. At most one per partition (each waits at its record). */
    fs_map *dl_pending;
} notifier;

/* Members known to have no address (load-test and operator tokens, deleted members) are not
 * looked up again for a minute, nor the spool checked for their notifications: a sale of
 * anonymous buyers asked PostgreSQL once per order, and the spool twice. Safe because a
 * member id is made by the sign-up that stores its address, and a deleted member stays
 * deleted; nothing would be sent to such a member either way, so a notification of theirs
 * that was spooled before counts as no_address, not as a duplicate. Bounded: emptied when
 * full. */
#define NOBODY_TTL_MS 60000
#define NOBODY_MAX 100000

typedef struct {
    char id[64], member[128], kind[64], email[256];
    json_t *params;
    int64_t at;
} note;

/* ---- message ----------------------------------------------------------------------------- */

static const char *param(const note *n, const char *k)
{
    const char *v = json_string_value(json_object_get(n->params, k));
    return v ? v : "";
}

static char *render(const notifier *nf, const note *n)
{
    char subject[512], body[2048]; /* (room for a whole product name: never cut inside a character) */
    if (!strcmp(n->kind, "VERIFY_EMAIL")) {
        snprintf(subject, sizeof subject, "Your flashsale verification code: %s", param(n, "code"));
        snprintf(body, sizeof body,
                 "Welcome to flashsale.\r\n\r\nYour verification code is %s.\r\n"
                 "It expires in %s minutes. If you did not sign up, ignore this message.\r\n",
                 param(n, "code"), param(n, "expires_in_minutes"));
    } else if (!strcmp(n->kind, "PASSWORD_CHANGED")) {
        snprintf(subject, sizeof subject, "Your flashsale password was changed");
        snprintf(body, sizeof body, "Your password was changed and every session was ended.\r\n"
                                    "If this was not you, reset your password at once.\r\n");
    } else if (!strncmp(n->kind, "WISHLIST_", 9)) {
        bool open = !strcmp(n->kind, "WISHLIST_SALE_OPEN");
        snprintf(subject, sizeof subject, "%s: %s", open ? "On sale now" : "Back in stock", param(n, "name"));
        snprintf(body, sizeof body, "A product on your wishlist %s: %s (product %s).\r\n",
                 open ? "is on sale now" : "was restocked", param(n, "name"), param(n, "product_id"));
    } else if (*param(n, "order_id")) {
        snprintf(subject, sizeof subject, "Your order %s: %s", param(n, "order_id"), n->kind);
        snprintf(body, sizeof body, "Order %s is now %s.\r\n", param(n, "order_id"), param(n, "status"));
    } else {
        snprintf(subject, sizeof subject, "flashsale: %s", n->kind);
        snprintf(body, sizeof body, "%s\r\n", n->kind);
    }
    char date[64];
    time_t t = (time_t)(n->at / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    /* every value from an event goes through the header encoder: a product name holding
     * CR/LF cannot add a header, and non-ASCII text is RFC 2047 encoded */
    char subj[1024], to[512], kind[256], member[256], id[256];
    if (fs_mail_header_value(subject, subj, sizeof subj) || fs_mail_header_value(n->email, to, sizeof to) ||
        fs_mail_header_value(n->kind, kind, sizeof kind) || fs_mail_header_value(n->member, member, sizeof member) ||
        fs_mail_header_value(n->id, id, sizeof id))
        return NULL;
    char *out = NULL;
    if (asprintf(&out,
                 "From: %s\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@flashsale>\r\n"
                 "X-Flashsale-Kind: %s\r\nX-Flashsale-Member: %s\r\nMIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n\r\n%s",
                 nf->smtp_from, to, subj, date, id, kind, member, body) < 0)
        return NULL;
    return out;
}

/* ---- spool ------------------------------------------------------------------------------- */

static int mkdirs(const char *base)
{
    char p[4096];
    const char *subs[] = {"", "/tmp", "/new", "/cur"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", base, subs[i]);
        if (mkdir(p, 0700) && errno != EEXIST)
            return -1;
    }
    return 0;
}

/* Whether the notification's file is already in the spool (new/ or cur/: read or not). */
static bool spooled(const notifier *nf, const char *id)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/new/%s", nf->spool, id);
    if (access(p, F_OK) == 0)
        return true;
    snprintf(p, sizeof p, "%s/cur/%s", nf->spool, id);
    return access(p, F_OK) == 0;
}

/* 1 delivered, -1 failed (*why). The caller checked spooled() first. */
static int spool_write(const notifier *nf, const note *n, const char *msg, char *why, size_t wl)
{
    char tmp[4096], dst[4096];
    snprintf(dst, sizeof dst, "%s/new/%s", nf->spool, n->id);
    snprintf(tmp, sizeof tmp, "%s/tmp/%s.%d", nf->spool, n->id, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        snprintf(why, wl, "spool %.200s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(msg), off = 0;
    while (off < len) {
        ssize_t w = write(fd, msg + off, len - off);
        if (w <= 0) {
            snprintf(why, wl, "spool write: %s", strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) || close(fd) || rename(tmp, dst)) {
        snprintf(why, wl, "spool commit: %s", strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 1;
}

/* ---- SMTP -------------------------------------------------------------------------------- */

typedef struct {
    const char *data;
    size_t len, off;
} upload;

static size_t read_cb(char *buf, size_t size, size_t n, void *arg)
{
    upload *u = arg;
    size_t want = size * n, left = u->len - u->off;
    if (want > left)
        want = left;
    memcpy(buf, u->data + u->off, want);
    u->off += want;
    return want;
}

static int pg_ready(notifier *nf)
{
    if (nf->pg && PQstatus(nf->pg) == CONNECTION_OK)
        return 0;
    if (nf->pg)
        PQfinish(nf->pg);
    fs_err err = {0};
    nf->pg = fs_pg_connect(&nf->cfg, "flashsale-notifier", &err);
    return nf->pg ? 0 : -1;
}

static int smtp_sent_before(notifier *nf, const char *id)
{
    if (pg_ready(nf))
        return -1;
    PGresult *r = PQexecParams(nf->pg, "SELECT 1 FROM notifications_sent WHERE notification_id = $1", 1, NULL,
                               (const char *[]){id}, NULL, NULL, 0);
    int rc = PQresultStatus(r) != PGRES_TUPLES_OK ? -1 : PQntuples(r) > 0;
    PQclear(r);
    return rc;
}

static int smtp_send(notifier *nf, const note *n, const char *msg, char *why, size_t wl)
{
    int seen = smtp_sent_before(nf, n->id);
    if (seen < 0) {
        snprintf(why, wl, "postgres unavailable");
        return -1;
    }
    if (seen)
        return 0;
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(why, wl, "libcurl init failed");
        return -1;
    }
    char rcpt[300];
    snprintf(rcpt, sizeof rcpt, "<%s>", n->email);
    struct curl_slist *to = curl_slist_append(NULL, rcpt);
    upload u = {msg, strlen(msg), 0};
    curl_easy_setopt(c, CURLOPT_URL, nf->smtp_url);
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, nf->smtp_from);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, to);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &u);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
    if (nf->smtp_user) {
        curl_easy_setopt(c, CURLOPT_USERNAME, nf->smtp_user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, nf->smtp_password ? nf->smtp_password : "");
    }
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(to);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        snprintf(why, wl, "smtp: %s", curl_easy_strerror(rc));
        return -1;
    }
    PGresult *r = PQexecParams(nf->pg, "INSERT INTO notifications_sent (notification_id) VALUES ($1)"
                                       " ON CONFLICT DO NOTHING",
                               1, NULL, (const char *[]){n->id}, NULL, NULL, 0);
    PQclear(r);
    return 1;
}

/* ---- one notification -------------------------------------------------------------------- */

static int decode(notifier *nf, const rd_kafka_message_t *m, note *n, char *why, size_t wl)
{
    const fs_schema *s;
    avro_value_t v;
    fs_err err = {0};
    memset(n, 0, sizeof *n);
    if (fs_codec_decode(nf->codec, m->payload, m->len, &s, &v, &err)) {
        snprintf(why, wl, "%s", err.msg);
        return -1;
    }
    int rc = 0;
    if (strcmp(fs_schema_name(s), "NotificationRequested")) {
        snprintf(why, wl, "not a NotificationRequested: %s", fs_schema_name(s));
        rc = -1;
    } else {
        fs_notification typed;
        if (fs_notification_decode(&v, &typed, &err)) {
            snprintf(why, wl, "%s", err.msg);
            avro_value_decref(&v);
            return -1;
        }
        snprintf(n->id, sizeof n->id, "%s", typed.notification_id);
        snprintf(n->member, sizeof n->member, "%s", typed.member_id);
        snprintf(n->kind, sizeof n->kind, "%s", typed.kind);
        snprintf(n->email, sizeof n->email, "%s", typed.email);
        n->at = typed.occurred_at;
        n->params = json_object();
        for (int i = 0; i < typed.nparams; i++)
            json_object_set_new(n->params, typed.params[i].key, json_string(typed.params[i].value));
        /* ids become file names: only [A-Za-z0-9-] */
        if (!n->id[0] || strspn(n->id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") !=
                             strlen(n->id)) {
            snprintf(why, wl, "bad notification_id");
            rc = -1;
        }
    }
    avro_value_decref(&v);
    if (rc) {
        json_decref(n->params);
        n->params = NULL;
    }
    return rc;
}

static void remember_nobody(notifier *nf, const char *member)
{
    if (nf->nobody && fs_map_size(nf->nobody) >= NOBODY_MAX) {
        fs_map_destroy_free(nf->nobody);
        nf->nobody = fs_map_new(1024); /* NULL (out of memory): nothing remembered */
    }
    if (!nf->nobody)
        return;
    int64_t *u = fs_map_get(nf->nobody, member);
    if (!u && (u = malloc(sizeof *u)) && fs_map_put(nf->nobody, member, u) == (void *)-1) {
        free(u);
        return;
    }
    if (u)
        *u = fs_mono_ms() + NOBODY_TTL_MS;
}

/* Whether the member was looked up within NOBODY_TTL_MS and had no address on file. */
static bool known_nobody(const notifier *nf, const note *n)
{
    if (n->email[0] || !nf->nobody)
        return false;
    const int64_t *until = fs_map_get(nf->nobody, n->member);
    return until && *until > fs_mono_ms();
}

static int lookup_email(notifier *nf, note *n)
{
    if (n->email[0])
        return 1;
    if (pg_ready(nf))
        return -1;
    PGresult *r = PQexecParams(nf->pg, "SELECT email FROM members WHERE member_id = $1 AND status <> 'DELETED'",
                               1, NULL, (const char *[]){n->member}, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        /* before flashsale-api has created the members table there is nobody to look up */
        bool missing = strstr(PQresultErrorMessage(r), "does not exist") != NULL;
        PQclear(r);
        return missing ? 0 : -1;
    }
    int found = PQntuples(r) == 1;
    if (found)
        snprintf(n->email, sizeof n->email, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!found)
        remember_nobody(nf, n->member);
    return found;
}

static void throttle(notifier *nf)
{
    for (;;) {
        int64_t now = fs_mono_ms();
        nf->tokens += (double)(now - nf->tokens_at) / 1000.0 * (double)nf->rate;
        if (nf->tokens > (double)nf->rate)
            nf->tokens = (double)nf->rate;
        nf->tokens_at = now;
        if (nf->tokens >= 1.0 || stop_flag) {
            nf->tokens -= 1.0;
            return;
        }
        usleep((useconds_t)((1.0 - nf->tokens) / (double)nf->rate * 1e6) + 1000);
    }
}

/* A notification not sent: its member has no address on file. Counted in the progress lines
 * (no_address): one line per notification would be a line per order of a sale whose buyers
 * have no address on file. */
static void count_no_address(notifier *nf, const note *n)
{
    nf->no_address++;
    if (fs_log_enabled(FS_LOG_DEBUG))
        fs_log_debug("no address for this member; not sent",
                     json_pack("{s:s,s:s,s:s}", "notification_id", n->id, "member_id", n->member, "kind", n->kind));
}

static const fs_kafka_client dlq_client = {
    .role = FS_KAFKA_PRODUCER, .client_id = "flashsale-notifier-dlq", .dr = fs_kafka_dlq_report,
    /* one record per request: a refusal for good (too large) then names one dead letter */
    .extra = (const char *const[]){"batch.num.messages", "1", NULL}};

static void pending_key(const rd_kafka_message_t *m, char *key, size_t n)
{
    snprintf(key, n, "%d/%" PRId64, (int)m->partition, m->offset);
}

/* A copy of m to the dead-letter topic, by a producer made anew after a fatal error (which
 * failed every dead letter from then on), waited for until the broker has it: 0, or 1 when it
 * is not in the log (m is then remembered, to be read again and dead-lettered at once; in
 * this process: after a restart it is handled anew). */
static int dead_letter(notifier *nf, rd_kafka_t **dlq, const rd_kafka_message_t *m, const char *why)
{
    fs_err err = {0};
    char key[48];
    pending_key(m, key, sizeof key);
    if (fs_kafka_renew_if_fatal(dlq, &nf->cfg, &dlq_client, "notifier dead letters", 2000, &err) < 0 ||
        fs_kafka_dlq_write(*dlq, m, why, &err) || fs_kafka_dlq_settle(*dlq, 10000, &stop_flag, &err)) {
        fs_log_warn("dead letter not in the log; its record is read again",
                    json_pack("{s:s,s:i,s:I}", "error", err.msg, "partition", (int)m->partition, "offset",
                              (json_int_t)m->offset));
        char *w = fs_map_get(nf->dl_pending, key) ? NULL : strdup(why);
        if (w && fs_map_put(nf->dl_pending, key, w) == (void *)-1)
            free(w); /* (out of memory: it is decoded, or delivered, again; nothing is lost) */
        return 1;
    }
    free(fs_map_del(nf->dl_pending, key));
    return 0;
}

/* 0 handled (delivered, duplicate, skipped or dead-lettered); -1 stop requested mid-way; 1 its
 * dead letter is not in the log (read m again later). */
static int handle(notifier *nf, rd_kafka_t **dlq, const rd_kafka_message_t *m)
{
    note n;
    char why[512] = "";
    char key[48];
    pending_key(m, key, sizeof key);
    const char *pending = fs_map_get(nf->dl_pending, key);
    if (pending) { /* (already counted and logged) */
        snprintf(why, sizeof why, "%s", pending);
        return dead_letter(nf, dlq, m, why);
    }
    if (decode(nf, m, &n, why, sizeof why)) {
        nf->dead++;
        fs_log_warn("undecodable notification dead-lettered",
                    json_pack("{s:s,s:i,s:I}", "reason", why, "partition", (int)m->partition, "offset",
                              (json_int_t)m->offset));
        return dead_letter(nf, dlq, m, why);
    }
    if (known_nobody(nf, &n)) { /* see NOBODY_TTL_MS: no look-up, no spool check */
        count_no_address(nf, &n);
        json_decref(n.params);
        return 0;
    }
    if (!nf->smtp_url && spooled(nf, n.id)) { /* redelivered: no lookup, no sending token */
        nf->duplicates++;
        json_decref(n.params);
        return 0;
    }
    int rc = 0;
    for (long attempt = 1;; attempt++) {
        int found = lookup_email(nf, &n);
        char *msg = NULL;
        int d = -1;
        if (found == 0) {
            count_no_address(nf, &n);
            break;
        }
        if (found < 0)
            snprintf(why, sizeof why, "postgres unavailable for the address lookup");
        else if (!(msg = render(nf, &n)))
            snprintf(why, sizeof why, "cannot render the message (out of memory, or a header value too long)");
        else {
            throttle(nf);
            d = nf->smtp_url ? smtp_send(nf, &n, msg, why, sizeof why) : spool_write(nf, &n, msg, why, sizeof why);
        }
        free(msg);
        if (d == 1) {
            nf->delivered++;
            fs_log_info("delivered", json_pack("{s:s,s:s,s:s,s:s}", "notification_id", n.id, "member_id",
                                               n.member, "kind", n.kind, "via", nf->smtp_url ? "smtp" : "spool"));
            break;
        }
        if (d == 0) {
            nf->duplicates++;
            break;
        }
        if (attempt >= nf->max_attempts) {
            nf->dead++;
            fs_log_error("notification not delivered; dead-lettered",
                         json_pack("{s:s,s:s,s:I}", "notification_id", n.id, "reason", why, "attempts",
                                   (json_int_t)attempt));
            rc = dead_letter(nf, dlq, m, why);
            break;
        }
        long backoff = 200L << (attempt - 1);
        fs_log_warn("delivery failed; retrying",
                    json_pack("{s:s,s:s,s:I,s:I}", "notification_id", n.id, "reason", why, "attempt",
                              (json_int_t)attempt, "retry_in_ms", (json_int_t)backoff));
        for (long slept = 0; slept < backoff && !stop_flag; slept += 50)
            usleep(50000);
        if (stop_flag) {
            rc = -1;
            break;
        }
    }
    json_decref(n.params);
    return rc;
}

/* Reads m again next: its partition is sought back to m's offset, after a second. */
static void read_again(rd_kafka_t *c, const rd_kafka_message_t *m)
{
    for (int i = 0; i < 20 && !stop_flag; i++)
        usleep(50000);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition)->offset = m->offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c, l, -1);
    if (e || l->elems[0].err)
        fs_log_warn("cannot seek back to a record whose dead letter is not in the log",
                    json_pack("{s:s,s:I}", "error", e ? rd_kafka_error_string(e) : rd_kafka_err2str(l->elems[0].err),
                              "offset", (json_int_t)m->offset));
    if (e)
        rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(l);
}

int main(void)
{
    static notifier nf;
    fs_err err = {0};
    fs_log_init("notifier", FS_LOG_INFO);
    const char *run_dir, *spool, *group;
    long open_window;
    if (fs_common_config_load(&nf.cfg, &err) ||
        fs_env_str("FLASHSALE_SMTP_URL", NULL, false, &nf.smtp_url, &err) ||
        fs_env_str("FLASHSALE_SMTP_FROM", "flashsale <no-reply@flashsale.local>", false, &nf.smtp_from, &err) ||
        fs_env_str("FLASHSALE_SMTP_USER", NULL, false, &nf.smtp_user, &err) ||
        fs_env_secret("FLASHSALE_SMTP_PASSWORD", 0, false, &nf.smtp_password, &err) ||
        fs_env_str("FLASHSALE_RUN_DIR", ".run", false, &run_dir, &err) ||
        fs_env_str("FLASHSALE_SPOOL_DIR", NULL, false, &spool, &err) ||
        fs_env_int("FLASHSALE_NOTIFY_RATE_PER_S", 20, 1, 100000, &nf.rate, &err) ||
        fs_env_int("FLASHSALE_NOTIFY_MAX_ATTEMPTS", 5, 1, 100, &nf.max_attempts, &err) ||
        fs_env_int("FLASHSALE_WISHLIST_OPEN_WINDOW_S", 3600, 1, 30 * 86400, &open_window, &err) ||
        fs_env_str("FLASHSALE_NOTIFIER_GROUP", "flashsale-notifier", false, &group, &err))
        fs_config_die(&err);
    if (nf.smtp_url && !*nf.smtp_url)
        nf.smtp_url = NULL;
    char spool_buf[4096];
    if (!spool) {
        snprintf(spool_buf, sizeof spool_buf, "%s/mail", run_dir);
        spool = spool_buf;
    }
    nf.spool = spool;
    if (!nf.smtp_url && mkdirs(nf.spool)) {
        fprintf(stderr, "flashsale-notifier: cannot create the spool %s: %s\n", nf.spool, strerror(errno));
        return 2;
    }
    nf.tokens = (double)nf.rate;
    nf.tokens_at = fs_mono_ms();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    nf.codec = fs_codec_new(&err);
    if (!nf.codec)
        fs_config_die(&err);
    nf.nobody = fs_map_new(1024);
    nf.dl_pending = fs_map_new(16);
    if (!nf.nobody || !nf.dl_pending) {
        fs_err_set(&err, FS_ERR_FATAL, 0, "out of memory");
        fs_config_die(&err);
    }
    for (int i = 0; i < 60 && pg_ready(&nf) && !stop_flag; i++)
        sleep(1);
    if (nf.pg) {
        PGresult *r = PQexec(nf.pg, "CREATE TABLE IF NOT EXISTS notifications_sent ("
                                    " notification_id text PRIMARY KEY, sent_at timestamptz NOT NULL DEFAULT now())");
        PQclear(r);
    }
    /* one OffsetCommit per message was a broker request per order (measured: 120,000 of
     * them for 120,000 orders); committing the stored offsets once a second is one.
     * socket.timeout.ms: when the group session times out while the broker is away, the
     * revoke commits the stored offsets, and librdkafka 2.0.2 sometimes left that request
     * in the coordinator's out-queue until it timed out (60 s by default), the group
     * waiting for it: no notification for a minute after the broker was back (2 of 32
     * broker restarts in a loop of integration.members' outage, 2026-12-07: "Timed out 0
     * in-flight, 0 retry-queued, 1 out-queue"). Every request of this consumer is small and
     * its fetch waits 100 ms at most, so 10 s bounds that wait and nothing else. */
    rd_kafka_t *c = fs_kafka_new(
        &nf.cfg,
        &(fs_kafka_client){.role = FS_KAFKA_CONSUMER,
                           .client_id = "flashsale-notifier",
                           .group_id = group,
                           .extra = (const char *const[]){"enable.auto.commit", "true",
                                                          "auto.commit.interval.ms", "1000",
                                                          "fetch.wait.max.ms", "100",
                                                          "fetch.min.bytes", "65536",
                                                          "socket.timeout.ms", "10000", NULL}},
        &err);
    rd_kafka_t *dlq = c ? fs_kafka_new(&nf.cfg, &dlq_client, &err) : NULL;
    if (!c || !dlq)
        fs_config_die(&err);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, FS_TOPIC_NOTIFICATIONS, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t se = rd_kafka_subscribe(c, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (se) {
        fs_err_from_kafka_code(&err, se, "subscribe");
        fs_config_die(&err);
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    wishlist_watch ww = {&nf.cfg, nf.codec, &stop_flag, open_window};
    pthread_t watcher;
    pthread_create(&watcher, NULL, wishlist_watch_main, &ww);
    fs_log_info("started", json_pack("{s:s,s:s,s:I}", "via", nf.smtp_url ? "smtp" : "spool", "spool",
                                     nf.smtp_url ? "" : nf.spool, "rate_per_s", (json_int_t)nf.rate));
    int64_t last = fs_mono_ms();
    while (!stop_flag) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (m && !m->err) {
            int h = handle(&nf, &dlq, m);
            if (h == 0)
                rd_kafka_offset_store(m->rkt, m->partition, m->offset);
            else if (h == 1) /* its dead letter is not in the log: read it again, a second later */
                read_again(c, m);
        } else if (m && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fs_log_warn("consumer", json_pack("{s:s}", "error", rd_kafka_message_errstr(m)));
        }
        if (m)
            rd_kafka_message_destroy(m);
        if (fs_mono_ms() - last >= 10000) {
            last = fs_mono_ms();
            fs_log_info("progress", json_pack("{s:I,s:I,s:I,s:I}", "delivered", (json_int_t)nf.delivered,
                                              "duplicates", (json_int_t)nf.duplicates, "no_address",
                                              (json_int_t)nf.no_address, "dead_lettered", (json_int_t)nf.dead));
        }
    }
    pthread_join(watcher, NULL);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    if (dlq) { /* (NULL: its replacement could not be made) */
        rd_kafka_flush(dlq, 5000);
        rd_kafka_destroy(dlq);
    }
    PQfinish(nf.pg);
    fs_codec_destroy(nf.codec);
    fs_map_destroy_free(nf.nobody);
    fs_map_destroy_free(nf.dl_pending);
    curl_global_cleanup();
    fs_log_info("stopped", json_pack("{s:I}", "delivered", (json_int_t)nf.delivered));
    return 0;
}
