/* Operator routes; see admin.h.
 *
 * Dead letters: one thread follows every partition of the dead-letter topic from the
 * beginning with fs_follower (read_committed: a dead letter of an aborted transaction was
 * never written). It counts the records and keeps the newest ADMIN_DEAD_LETTERS_KEPT of them,
 * by record time, in a sorted array; everything else is dropped once counted. Shared state
 * under ad->lock.
 *
 * Audit: flashsale-audit is spawned (posix_spawn, no shell, the API's environment: the same
 * brokers and stores) with --product ID --read-models --json FILE; its stdout is the summary,
 * its exit status the verdict (0 OK, 1 VIOLATION, anything else: it could not audit). One at
 * a time (a flag taken with compare-and-swap), killed past FLASHSALE_AUDIT_TIMEOUT_MS. */
#include "admin.h"
#include "metrics.h"
#include "readmodel.h"

#include "fs/follow.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct {
    int32_t partition;
    int64_t offset, at;
    char reason[256], source_topic[128], source_partition[16], source_offset[24], key[128];
} dead_letter;

struct api_admin {
    const fs_common_config *cfg;
    char audit_bin[PATH_MAX];
    long audit_timeout_ms;
    atomic_int audit_running;
    pthread_t thread;
    bool started;
    atomic_int stop;

    pthread_mutex_t lock;
    uint64_t dead_total;
    bool dead_caught_up;
    dead_letter kept[ADMIN_DEAD_LETTERS_KEPT]; /* newest first */
    int nkept;
};

static api_admin *the_admin;

void api_admin_set(api_admin *ad)
{
    the_admin = ad;
}

/* ---- dead letters ----------------------------------------------------------------------- */

/* Printable ASCII only (and newlines when asked): keys, reasons and topic names come from
 * other processes' records, and the answer must be valid JSON text. */
static void copy_text(char *out, size_t n, const void *src, size_t len, bool newlines)
{
    const unsigned char *s = src;
    size_t j = 0;
    for (size_t i = 0; s && i < len && j + 1 < n; i++)
        out[j++] = (s[i] >= 0x20 && s[i] < 0x7f) || (newlines && s[i] == '\n') ? (char)s[i] : '?';
    out[j] = '\0';
}

static void copy_printable(char *out, size_t n, const void *src, size_t len)
{
    copy_text(out, n, src, len, false);
}

static void header(const rd_kafka_message_t *m, const char *name, char *out, size_t n)
{
    char raw[512];
    int len = fs_kafka_header_get(m, name, raw, sizeof raw);
    copy_printable(out, n, raw, len > 0 ? strnlen(raw, sizeof raw) : 0);
}

static bool newer(const dead_letter *x, const dead_letter *y)
{
    if (x->at != y->at)
        return x->at > y->at;
    if (x->partition != y->partition)
        return x->partition > y->partition;
    return x->offset > y->offset;
}

static void dead_letter_add(api_admin *ad, const rd_kafka_message_t *m)
{
    dead_letter d;
    memset(&d, 0, sizeof d);
    d.partition = m->partition;
    d.offset = m->offset;
    rd_kafka_timestamp_type_t tst;
    d.at = rd_kafka_message_timestamp(m, &tst);
    header(m, "dlq-reason", d.reason, sizeof d.reason);
    header(m, "dlq-topic", d.source_topic, sizeof d.source_topic);
    header(m, "dlq-partition", d.source_partition, sizeof d.source_partition);
    header(m, "dlq-offset", d.source_offset, sizeof d.source_offset);
    copy_printable(d.key, sizeof d.key, m->key, m->key_len);
    pthread_mutex_lock(&ad->lock);
    ad->dead_total++;
    int pos = ad->nkept;
    while (pos > 0 && newer(&d, &ad->kept[pos - 1]))
        pos--;
    if (pos < ADMIN_DEAD_LETTERS_KEPT) {
        int last = ad->nkept < ADMIN_DEAD_LETTERS_KEPT ? ad->nkept : ADMIN_DEAD_LETTERS_KEPT - 1;
        memmove(&ad->kept[pos + 1], &ad->kept[pos], (size_t)(last - pos) * sizeof d);
        ad->kept[pos] = d;
        if (ad->nkept < ADMIN_DEAD_LETTERS_KEPT)
            ad->nkept++;
    }
    pthread_mutex_unlock(&ad->lock);
}

static fs_follower *dead_letter_follower(api_admin *ad, fs_err *err)
{
    rd_kafka_t *admin = fs_kafka_new(
        ad->cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-api-dlq-meta"}, err);
    if (!admin)
        return NULL;
    int n = fs_kafka_partition_count(admin, FS_TOPIC_DEADLETTER, 5000, err);
    rd_kafka_destroy(admin);
    if (n <= 0)
        return NULL;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(l, FS_TOPIC_DEADLETTER, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    fs_follower *f = fs_follower_new(ad->cfg, "flashsale-api-dlq", l, NULL, 30000, err);
    rd_kafka_topic_partition_list_destroy(l);
    return f;
}

static void *dead_letter_main(void *arg)
{
    pthread_setname_np(pthread_self(), "api-deadletter"); /* for per-thread CPU (perf/profile) */
    api_admin *ad = arg;
    fs_log_set_cid("dead-letters");
    fs_follower *f = NULL;
    while (!atomic_load(&ad->stop) && !f) {
        fs_err err = {0};
        f = dead_letter_follower(ad, &err);
        if (!f) {
            fs_log_warn("dead-letter follower not started, retrying", json_pack("{s:s}", "error", err.msg));
            for (int i = 0; i < 20 && !atomic_load(&ad->stop); i++)
                usleep(100 * 1000);
        }
    }
    while (!atomic_load(&ad->stop)) {
        rd_kafka_message_t *m = fs_follower_poll(f, 100);
        if (m) {
            dead_letter_add(ad, m);
            rd_kafka_message_destroy(m);
        }
        if (fs_follower_caught_up(f)) {
            pthread_mutex_lock(&ad->lock);
            ad->dead_caught_up = true;
            pthread_mutex_unlock(&ad->lock);
        }
    }
    fs_follower_destroy(f);
    return NULL;
}

/* ---- start and stop ----------------------------------------------------------------------- */

/* flashsale-audit next to our own executable (installed), or in ../projections (build tree). */
static void default_audit_bin(char *out, size_t n)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    out[0] = '\0';
    if (len <= 0)
        return;
    self[len] = '\0';
    const char *dir = dirname(self);
    const char *const tries[] = {"%s/flashsale-audit", "%s/../projections/flashsale-audit"};
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        char cand[PATH_MAX];
        if (snprintf(cand, sizeof cand, tries[i], dir) >= (int)sizeof cand)
            continue;
        if (access(cand, X_OK) == 0) {
            snprintf(out, n, "%s", cand);
            return;
        }
    }
}

api_admin *api_admin_start(const fs_common_config *cfg, fs_err *err)
{
    api_admin *ad = calloc(1, sizeof *ad);
    if (!ad) {
        fs_err_set(err, FS_ERR_FATAL, 0, "out of memory");
        return NULL;
    }
    ad->cfg = cfg;
    const char *bin;
    if (fs_env_str("FLASHSALE_AUDIT_BIN", "", false, &bin, err) ||
        fs_env_int("FLASHSALE_AUDIT_TIMEOUT_MS", 300000, 1000, 3600000, &ad->audit_timeout_ms, err)) {
        free(ad);
        return NULL;
    }
    if (*bin)
        snprintf(ad->audit_bin, sizeof ad->audit_bin, "%s", bin);
    else
        default_audit_bin(ad->audit_bin, sizeof ad->audit_bin);
    pthread_mutex_init(&ad->lock, NULL);
    if (pthread_create(&ad->thread, NULL, dead_letter_main, ad)) {
        pthread_mutex_destroy(&ad->lock);
        free(ad);
        fs_err_set(err, FS_ERR_FATAL, 0, "cannot start the dead-letter follower");
        return NULL;
    }
    ad->started = true;
    return ad;
}

void api_admin_stop(api_admin *ad)
{
    if (!ad)
        return;
    atomic_store(&ad->stop, 1);
    if (ad->started)
        pthread_join(ad->thread, NULL);
    pthread_mutex_destroy(&ad->lock);
    free(ad);
}

/* ---- handlers ----------------------------------------------------------------------------- */

static json_t *time_json(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char s[FS_TIME_STR_LEN];
    fs_time_format(ms, s);
    return json_string(s);
}

static json_t *lag_json(int64_t lag)
{
    return lag >= 0 ? json_integer(lag) : json_null();
}

/* The request's method must be `method` and the caller an admin; otherwise the answer is
 * sent and false returned. */
static bool admin_gate(fs_http_req *req, api_ctx *a, const char *method)
{
    if (strcmp(req->ri->request_method, method)) {
        char allow[32];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", method);
        fs_http_error(req, 405, "METHOD_NOT_ALLOWED", "method not allowed here", allow);
        return false;
    }
    fs_principal who;
    if (!api_auth(req, a, "admin", &who))
        return false;
    if (!the_admin) {
        fs_http_error(req, 503, "UNAVAILABLE", "the operator routes are not started", "Retry-After: 1\r\n");
        return false;
    }
    return true;
}

#define RATE_WINDOW_S 10

int api_admin_overview(struct mg_connection *conn, void *cb)
{
    api_ctx *a = cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_ADMIN);
    if (!admin_gate(&req, a, "GET"))
        return 401;
    uint64_t total, recent;
    api_bus_decisions(a->bus, RATE_WINDOW_S, &total, &recent);
    int64_t pg_lag, redis_lag;
    api_rm_projection_lag(a, &pg_lag, &redis_lag);
    api_admin *ad = the_admin;
    pthread_mutex_lock(&ad->lock);
    uint64_t dead = ad->dead_total;
    bool dead_caught_up = ad->dead_caught_up;
    pthread_mutex_unlock(&ad->lock);
    json_t *out = json_pack(
        "{s:f,s:I,s:i,s:{s:o,s:o},s:{s:s},s:{s:I,s:b},s:o,s:b}", "decisions_per_second",
        (double)recent / RATE_WINDOW_S, "decisions_total", (json_int_t)total, "rate_window_s",
        RATE_WINDOW_S, "projection_lag_ms", "postgres", lag_json(pg_lag), "redis", lag_json(redis_lag),
        "breaker", "state", api_rm_breaker_state(), "dead_letters", "total", (json_int_t)dead,
        "caught_up", dead_caught_up, "at", time_json(fs_now_ms()), "decision_stream_caught_up",
        api_bus_caught_up(a->bus));
    if (!out)
        return fs_http_error(&req, 500, "INTERNAL", "out of memory", NULL);
    return fs_http_json(&req, 200, out, NULL);
}

int api_admin_dead_letters(struct mg_connection *conn, void *cb)
{
    api_ctx *a = cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_ADMIN);
    if (!admin_gate(&req, a, "GET"))
        return 401;
    long limit = 20;
    char buf[16];
    const char *qs = req.ri->query_string;
    if (qs) {
        int got = mg_get_var(qs, strlen(qs), "limit", buf, sizeof buf);
        if (got == -2 || got == 0)
            return fs_http_error(&req, 400, "INVALID_PARAMETER", "limit: an integer from 1 to 200", NULL);
        if (got > 0) {
            char *end;
            errno = 0;
            limit = strtol(buf, &end, 10);
            if (errno || *end || limit < 1 || limit > ADMIN_DEAD_LETTERS_KEPT)
                return fs_http_error(&req, 400, "INVALID_PARAMETER", "limit: an integer from 1 to 200", NULL);
        }
    }
    api_admin *ad = the_admin;
    json_t *items = json_array();
    pthread_mutex_lock(&ad->lock);
    uint64_t total = ad->dead_total;
    bool caught_up = ad->dead_caught_up;
    for (int i = 0; i < ad->nkept && i < limit; i++) {
        const dead_letter *d = &ad->kept[i];
        char *end;
        long long sp = strtoll(d->source_partition, &end, 10);
        bool sp_ok = d->source_partition[0] && !*end;
        long long so = strtoll(d->source_offset, &end, 10);
        bool so_ok = d->source_offset[0] && !*end;
        json_array_append_new(
            items, json_pack("{s:s,s:i,s:I,s:o,s:s,s:s,s:o,s:o,s:s}", "topic", FS_TOPIC_DEADLETTER,
                             "partition", (int)d->partition, "offset", (json_int_t)d->offset, "at",
                             time_json(d->at), "reason", d->reason, "source_topic", d->source_topic,
                             "source_partition", sp_ok ? json_integer(sp) : json_null(),
                             "source_offset", so_ok ? json_integer(so) : json_null(), "key", d->key));
    }
    pthread_mutex_unlock(&ad->lock);
    return fs_http_json(&req, 200,
                        json_pack("{s:o,s:I,s:b}", "items", items, "total", (json_int_t)total,
                                  "caught_up", caught_up),
                        NULL);
}

/* ---- audit -------------------------------------------------------------------------------- */

typedef struct {
    int exit_status; /* the child's, or -1 killed past the time limit */
    char out[8192];  /* stdout (the summary), cut at the buffer's size */
    size_t out_len;
    char err[1024]; /* the end of stderr (why it could not audit) */
    size_t err_len;
} audit_run;

static void keep_tail(char *buf, size_t cap, size_t *len, const char *data, size_t n)
{
    if (n >= cap) {
        data += n - (cap - 1);
        n = cap - 1;
    }
    if (*len + n >= cap) {
        size_t drop = *len + n - (cap - 1);
        memmove(buf, buf + drop, *len - drop);
        *len -= drop;
    }
    memcpy(buf + *len, data, n);
    *len += n;
    buf[*len] = '\0';
}

/* Spawns the audit and collects its output until it exits or the deadline passes (then it
 * is killed). Returns 0, or -1 when it could not be spawned (errno-like code in *spawn_err). */
static int audit_spawn(api_admin *ad, char *const argv[], audit_run *r, int *spawn_err)
{
    int out_p[2] = {-1, -1}, err_p[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    bool fa_ok = false, at_ok = false;
    int rc = -1;
    pid_t pid = -1;
    if (pipe2(out_p, O_CLOEXEC) || pipe2(err_p, O_CLOEXEC)) {
        *spawn_err = errno;
        goto done;
    }
    if ((*spawn_err = posix_spawn_file_actions_init(&fa)))
        goto done;
    fa_ok = true;
    if ((*spawn_err = posix_spawnattr_init(&at)))
        goto done;
    at_ok = true;
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE); /* the API ignores it; the audit must not inherit that */
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGINT);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if ((*spawn_err = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) ||
        (*spawn_err = posix_spawn_file_actions_adddup2(&fa, out_p[1], 1)) ||
        (*spawn_err = posix_spawn_file_actions_adddup2(&fa, err_p[1], 2)) ||
        (*spawn_err = posix_spawn_file_actions_addclosefrom_np(&fa, 3)))
        goto done;
    if ((*spawn_err = posix_spawn(&pid, argv[0], &fa, &at, argv, environ))) {
        pid = -1;
        goto done;
    }
    close(out_p[1]);
    close(err_p[1]);
    out_p[1] = err_p[1] = -1;
    int64_t deadline = fs_mono_ms() + ad->audit_timeout_ms;
    bool out_open = true, err_open = true, killed = false;
    while (out_open || err_open) {
        int64_t left = deadline - fs_mono_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            killed = true;
            break;
        }
        struct pollfd p[2] = {{.fd = out_open ? out_p[0] : -1, .events = POLLIN},
                              {.fd = err_open ? err_p[0] : -1, .events = POLLIN}};
        int n = poll(p, 2, (int)(left > 1000 ? 1000 : left));
        if (n < 0 && errno != EINTR)
            break;
        char buf[4096];
        for (int i = 0; i < 2 && n > 0; i++) {
            if (!p[i].revents)
                continue;
            ssize_t got = read(i ? err_p[0] : out_p[0], buf, sizeof buf);
            if (got <= 0) {
                *(i ? &err_open : &out_open) = false;
                continue;
            }
            if (i)
                keep_tail(r->err, sizeof r->err, &r->err_len, buf, (size_t)got);
            else if (r->out_len + (size_t)got < sizeof r->out) {
                memcpy(r->out + r->out_len, buf, (size_t)got);
                r->out_len += (size_t)got;
                r->out[r->out_len] = '\0';
            }
        }
    }
    if (!killed && (out_open || err_open)) { /* poll failed: do not wait forever */
        kill(pid, SIGKILL);
        killed = true;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    r->exit_status = killed ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    rc = 0;
done:
    for (int i = 0; i < 2; i++) {
        if (out_p[i] >= 0)
            close(out_p[i]);
        if (err_p[i] >= 0)
            close(err_p[i]);
    }
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (at_ok)
        posix_spawnattr_destroy(&at);
    return rc;
}

static int audit_product(fs_http_req *req, api_admin *ad, const char *product_id)
{
    if (!ad->audit_bin[0] || access(ad->audit_bin, X_OK))
        return fs_http_error(req, 500, "AUDIT_UNAVAILABLE",
                             "flashsale-audit was not found (FLASHSALE_AUDIT_BIN)", NULL);
    char report[] = "/tmp/flashsale-audit-XXXXXX";
    const char *tmpdir = getenv("TMPDIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/flashsale-audit-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (strlen(path) >= sizeof path - 1)
        snprintf(path, sizeof path, "%s", report);
    int fd = mkstemp(path);
    if (fd < 0)
        return fs_http_unavailable(req, "the audit's report file cannot be made", strerror(errno));
    close(fd);
    char wait_ms[24];
    snprintf(wait_ms, sizeof wait_ms, "%ld", ad->audit_timeout_ms / 2 < 30000 ? ad->audit_timeout_ms / 2 : 30000);
    char *const argv[] = {ad->audit_bin, "--product", (char *)product_id, "--read-models", "--wait-ms",
                          wait_ms, "--json", path, NULL};
    audit_run *r = calloc(1, sizeof *r);
    if (!r) {
        unlink(path);
        return fs_http_error(req, 500, "INTERNAL", "out of memory", NULL);
    }
    int64_t t0 = fs_mono_ms();
    int spawn_err = 0;
    int rc;
    fs_log_info("audit started", json_pack("{s:s}", "product_id", product_id));
    if (audit_spawn(ad, argv, r, &spawn_err)) {
        fs_log_error("audit not started", json_pack("{s:s,s:s}", "bin", ad->audit_bin, "error", strerror(spawn_err)));
        rc = fs_http_error(req, 500, "INTERNAL", "the audit could not be started", NULL);
        goto out;
    }
    int64_t ms = fs_mono_ms() - t0;
    fs_log_info("audit ended", json_pack("{s:s,s:i,s:I}", "product_id", product_id, "exit_status",
                                         r->exit_status, "ms", (json_int_t)ms));
    if (r->exit_status == -1) {
        rc = fs_http_error(req, 504, "AUDIT_TIMEOUT", "the audit did not finish within its time limit", NULL);
        goto out;
    }
    if (r->exit_status != 0 && r->exit_status != 1) {
        fs_log_warn("audit could not audit", json_pack("{s:i,s:s}", "exit_status", r->exit_status,
                                                         "stderr", r->err));
        rc = fs_http_error(req, 503, "AUDIT_FAILED", "the audit could not read the log; try again",
                           "Retry-After: 5\r\n");
        goto out;
    }
    json_error_t jerr;
    json_t *rep = json_load_file(path, 0, &jerr);
    json_t *count = json_object_get(rep, "violation_count");
    if (!json_is_integer(count)) {
        json_decref(rep);
        rc = fs_http_error(req, 500, "INTERNAL", "the audit's report could not be read", NULL);
        goto out;
    }
    /* the summary: the printable text of stdout, without its trailing newline */
    char summary[sizeof r->out];
    copy_text(summary, sizeof summary, r->out, r->out_len, true);
    size_t sl = strlen(summary);
    while (sl && (summary[sl - 1] == '\n' || summary[sl - 1] == ' '))
        summary[--sl] = '\0';
    json_t *product = json_object_get(rep, "product");
    json_t *out = json_pack("{s:s,s:s,s:O,s:s,s:I,s:O}", "product_id", product_id, "verdict",
                            r->exit_status == 0 ? "OK" : "VIOLATION", "violations", count,
                            "summary", summary, "duration_ms", (json_int_t)ms, "product",
                            product ? product : json_null());
    json_t *rm = json_object_get(rep, "read_models");
    if (out)
        json_object_set(out, "read_models", rm ? rm : json_null());
    json_t *v = json_object_get(rep, "violations");
    if (json_is_array(v) && out)
        json_object_set(out, "violation_list", v);
    if (r->exit_status == 1) { /* which ones (the first ten), for whoever reads the log afterwards */
        json_t *first = json_array();
        for (size_t i = 0; json_is_array(v) && i < json_array_size(v) && i < 10; i++)
            json_array_append(first, json_array_get(v, i));
        fs_log_warn("audit found violations", json_pack("{s:s,s:O,s:o}", "product_id", product_id, "violations",
                                                        count, "first", first));
    }
    json_decref(rep);
    rc = out ? fs_http_json(req, 200, out, NULL) : fs_http_error(req, 500, "INTERNAL", "out of memory", NULL);
out:
    unlink(path);
    free(r);
    return rc;
}

int api_admin_audit(struct mg_connection *conn, void *cb)
{
    api_ctx *a = cb;
    fs_http_req req;
    fs_http_req_init(&req, conn, FS_ROUTE_ADMIN);
    if (!admin_gate(&req, a, "POST"))
        return 401;
    json_t *body = api_read_json(&req, a);
    if (!body)
        return 400;
    const char *pid = NULL;
    if (!api_field_string(&req, body, "product_id", true, INV_ID_MAX - 1, &pid, NULL)) {
        json_decref(body);
        return 400;
    }
    char product_id[INV_ID_MAX];
    snprintf(product_id, sizeof product_id, "%s", pid);
    json_decref(body);
    inv_product_view v;
    if (!api_bus_product(a->bus, product_id, &v))
        return fs_http_error(&req, 404, "PRODUCT_NOT_FOUND", "no such product", NULL);
    api_admin *ad = the_admin;
    int idle = 0;
    if (!atomic_compare_exchange_strong(&ad->audit_running, &idle, 1))
        return fs_http_error(&req, 409, "AUDIT_RUNNING", "an audit is running; try again when it has ended",
                             "Retry-After: 5\r\n");
    api_pg_release(); /* no pooled connection held through the audit */
    int rc = audit_product(&req, ad, product_id);
    atomic_store(&ad->audit_running, 0);
    return rc;
}
