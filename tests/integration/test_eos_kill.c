/* Exactly-once under SIGKILL, on the real broker.
 *
 *   test_eos_kill EOS_WORKER_PATH [N_INPUTS] [KILLS] [RATE]
 *
 * Produces N inputs (key k0..k999, value = sequence number) plus one poison record per
 * 2,000, at about 10,000 records/s so that processing spans several seconds; meanwhile
 * kills eos_worker with SIGKILL at random moments KILLS times, restarting it each time.
 * When the consumer group's committed offsets reach the end of the input, the worker is
 * stopped with SIGTERM (it must exit 0) and the output is read back read_committed:
 *   - exactly one output per input sequence number (no loss, no duplicate);
 *   - per key, counts 1, 2, 3... without gap or repeat, and input order preserved (the
 *     worker's state was rebuilt correctly after every kill);
 *   - every poison record dead-lettered exactly once.
 * Exit 0 only when all of that holds. */
#include "fs/config.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PARTS 6
#define KEYS 1000
#define POISON_EVERY 2000

static fs_common_config cfg;
static char in_topic[64], out_topic[64], group[64];
static long n_inputs = 100000;
static volatile int producer_done;
static long rate = 10000; /* input records per second; 0 = as fast as possible */
static long poison_sent;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "FAIL: %s: %s\n", what, detail ? detail : "");
    char cmd[512]; /* the worker's own account of what happened */
    snprintf(cmd, sizeof cmd, "tail -n 25 '%s/logs/eos-worker.log' >&2",
             getenv("FLASHSALE_RUN_DIR") ? getenv("FLASHSALE_RUN_DIR") : "/tmp");
    if (system(cmd) < 0)
        perror("tail");
    exit(1);
}

static void *produce_inputs(void *arg)
{
    (void)arg;
    fs_err err = {0};
    rd_kafka_t *p = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_PRODUCER, .client_id = "eos-input"}, &err);
    if (!p)
        die("producer", err.msg);
    char key[16], val[32];
    for (long i = 0; i < n_inputs; i++) {
        int kl = snprintf(key, sizeof key, "k%ld", i % KEYS);
        int vl = snprintf(val, sizeof val, "%ld", i);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(in_topic), RD_KAFKA_V_KEY(key, (size_t)kl),
                                      RD_KAFKA_V_VALUE(val, (size_t)vl),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 10);
        if (e)
            die("produce", rd_kafka_err2str(e));
        if (i % POISON_EVERY == 0) { /* spread over keys, hence partitions */
            kl = snprintf(key, sizeof key, "k%ld", (i / POISON_EVERY * 37) % KEYS);
            rd_kafka_producev(p, RD_KAFKA_V_TOPIC(in_topic), RD_KAFKA_V_KEY(key, (size_t)kl),
                              RD_KAFKA_V_VALUE("poison", 6), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END);
            poison_sent++;
        }
        if (rate > 0 && i % 1000 == 999) { /* pace the input: 1,000 records per 1000/rate s */
            rd_kafka_poll(p, 0);
            usleep((useconds_t)(1000000000LL / rate));
        }
    }
    if (rd_kafka_flush(p, 60000))
        die("flush", "inputs not all delivered");
    rd_kafka_destroy(p);
    producer_done = 1;
    return NULL;
}

static pid_t start_worker(const char *path, int generation)
{
    pid_t pid = fork();
    if (pid == 0) {
        char log[256];
        snprintf(log, sizeof log, "%s/logs/eos-worker.log",
                 getenv("FLASHSALE_RUN_DIR") ? getenv("FLASHSALE_RUN_DIR") : "/tmp");
        FILE *f = freopen(log, "a", stderr);
        (void)f;
        /* SIGTERM stays pending until the worker has its handler (it unblocks it then): a
         * stop sent to a generation that has only just started is a clean stop, not a kill */
        sigset_t term;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        sigprocmask(SIG_BLOCK, &term, NULL);
        execl(path, path, in_topic, out_topic, group, "worker-1", (char *)NULL);
        _exit(127);
    }
    printf("  worker generation %d started (pid %d)\n", generation, (int)pid);
    fflush(stdout);
    return pid;
}

/* Sum of committed offsets of the group and sum of input end offsets. */
static void progress(rd_kafka_t *c, int64_t *committed, int64_t *end)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS);
    for (int i = 0; i < PARTS; i++)
        rd_kafka_topic_partition_list_add(l, in_topic, i);
    *committed = 0;
    *end = 0;
    if (rd_kafka_committed(c, l, 10000) == 0)
        for (int i = 0; i < PARTS; i++)
            if (l->elems[i].offset > 0)
                *committed += l->elems[i].offset;
    for (int i = 0; i < PARTS; i++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(c, in_topic, i, &lo, &hi, 10000) == 0)
            *end += hi;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

typedef struct {
    unsigned char *seen;
    long last_count[KEYS];
    long last_seq[KEYS];
    long total, dup, gaps, order, bad;
} check;

static int out_cb(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    (void)err;
    check *c = ctx;
    char buf[64], key[16];
    long seq, count;
    c->total++;
    if (m->len >= sizeof buf || m->key_len >= sizeof key) {
        c->bad++;
        return 0;
    }
    memcpy(buf, m->payload, m->len);
    buf[m->len] = '\0';
    memcpy(key, m->key, m->key_len);
    key[m->key_len] = '\0';
    int k = atoi(key + 1);
    if (sscanf(buf, "%ld %ld", &seq, &count) != 2 || seq < 0 || seq >= n_inputs || k < 0 ||
        k >= KEYS) {
        c->bad++;
        return 0;
    }
    if (c->seen[seq]++)
        c->dup++;
    if (count != c->last_count[k] + 1)
        c->gaps++;
    if (seq <= c->last_seq[k])
        c->order++;
    c->last_count[k] = count;
    c->last_seq[k] = seq;
    return 0;
}

static long dlq_count;
static int dlq_cb(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    (void)ctx;
    (void)err;
    char t[128];
    if (fs_kafka_header_get(m, "dlq-topic", t, sizeof t) > 0 && !strcmp(t, in_topic))
        dlq_count++;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        die("usage", "test_eos_kill EOS_WORKER [N] [KILLS]");
    if (!getenv("FLASHSALE_KAFKA_BROKERS"))
        die("environment", "FLASHSALE_KAFKA_BROKERS unset: run the integration tests with make test");
    if (argc > 2)
        n_inputs = atol(argv[2]);
    int kills = argc > 3 ? atoi(argv[3]) : 5;
    if (argc > 4)
        rate = atol(argv[4]);
    fs_log_init("test-eos", FS_LOG_WARN);
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err))
        die("config", err.msg);
    char u[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(u);
    snprintf(in_topic, sizeof in_topic, "it.eos.in.%.8s%.4s", u + 24, u + 9);
    snprintf(out_topic, sizeof out_topic, "it.eos.out.%.8s%.4s", u + 24, u + 9);
    snprintf(group, sizeof group, "it-eos-%.8s%.4s", u + 24, u + 9);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());

    rd_kafka_t *admin = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "eos-admin"}, &err);
    if (!admin || fs_kafka_create_topic(admin, in_topic, PARTS, 1, NULL, 30000, &err) ||
        fs_kafka_create_topic(admin, out_topic, PARTS, 1, NULL, 30000, &err))
        die("create topics", err.msg);
    rd_kafka_destroy(admin);
    printf("eos: %ld inputs on %s (%d partitions), %d SIGKILLs\n", n_inputs, in_topic, PARTS, kills);

    rd_kafka_t *watch = fs_kafka_new(
        &cfg, &(fs_kafka_client){.role = FS_KAFKA_CONSUMER, .client_id = "eos-watch", .group_id = group},
        &err);
    if (!watch)
        die("watch consumer", err.msg);

    pthread_t prod;
    pthread_create(&prod, NULL, produce_inputs, NULL);
    int gen = 1;
    pid_t w = start_worker(argv[1], gen);
    int mid_stream = 0;
    for (int k = 0; k < kills; k++) {
        usleep((useconds_t)(700 + rand() % 1800) * 1000);
        int64_t done, end;
        progress(watch, &done, &end);
        kill(w, SIGKILL);
        waitpid(w, NULL, 0);
        int still_producing = !producer_done;
        printf("  SIGKILL %d: committed %lld of %lld input records so far%s\n", k + 1,
               (long long)done, (long long)end, still_producing ? " (inputs still arriving)" : "");
        if (still_producing || done < end)
            mid_stream++;
        w = start_worker(argv[1], ++gen);
    }
    pthread_join(prod, NULL);
    int64_t t_caught_up = fs_mono_ms();
    int64_t total_in = n_inputs + poison_sent, done = 0, end = 0;
    time_t deadline = time(NULL) + 180;
    for (;;) {
        progress(watch, &done, &end);
        if (end == total_in && done == end)
            break;
        if (time(NULL) > deadline) {
            kill(w, SIGKILL);
            fprintf(stderr, "FAIL: worker did not catch up: committed %lld of %lld\n",
                    (long long)done, (long long)end);
            return 1;
        }
        usleep(200 * 1000);
    }
    printf("  caught up %.2f s after the last input was delivered\n",
           (fs_mono_ms() - t_caught_up) / 1000.0);
    rd_kafka_destroy(watch);
    int status = 0;
    if (waitpid(w, &status, WNOHANG) == w) { /* it must still be running to be stopped */
        char how[96];
        snprintf(how, sizeof how, "exited before SIGTERM (status %d)", status);
        die("worker", how);
    }
    kill(w, SIGTERM);
    waitpid(w, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char how[96];
        if (WIFSIGNALED(status))
            snprintf(how, sizeof how, "killed by signal %d after SIGTERM", WTERMSIG(status));
        else
            snprintf(how, sizeof how, "exited %d after SIGTERM (see logs/eos-worker.log)",
                     WEXITSTATUS(status));
        die("worker", how);
    }

    check *c = calloc(1, sizeof *c);
    c->seen = calloc((size_t)n_inputs, 1);
    for (int k = 0; k < KEYS; k++)
        c->last_seq[k] = -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS);
    for (int i = 0; i < PARTS; i++)
        rd_kafka_topic_partition_list_add(l, out_topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    if (fs_kafka_read_to_end(&cfg, l, out_cb, c, 120000, &err))
        die("read output", err.msg);
    rd_kafka_topic_partition_list_destroy(l);
    int dlq_parts = 0;
    rd_kafka_t *meta = fs_kafka_new(&cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "eos-meta"}, &err);
    dlq_parts = fs_kafka_partition_count(meta, FS_TOPIC_DEADLETTER, 10000, &err);
    rd_kafka_destroy(meta);
    if (dlq_parts < 1)
        die("dead-letter topic", err.msg);
    l = rd_kafka_topic_partition_list_new(dlq_parts);
    for (int i = 0; i < dlq_parts; i++)
        rd_kafka_topic_partition_list_add(l, FS_TOPIC_DEADLETTER, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if (fs_kafka_read_to_end(&cfg, l, dlq_cb, NULL, 60000, &err))
        die("read dead letters", err.msg);
    rd_kafka_topic_partition_list_destroy(l);

    long missing = 0;
    for (long i = 0; i < n_inputs; i++)
        if (!c->seen[i])
            missing++;
    printf("eos: %d worker generations, %d kills mid-stream; outputs %ld for %ld inputs: "
           "missing %ld, duplicated %ld, count gaps/repeats %ld, order violations %ld, "
           "malformed %ld; dead-lettered %ld of %ld poison records\n",
           gen, mid_stream, c->total, n_inputs, missing, c->dup, c->gaps, c->order, c->bad,
           dlq_count, poison_sent);
    int ok = c->total == n_inputs && !missing && !c->dup && !c->gaps && !c->order && !c->bad &&
             dlq_count == poison_sent && mid_stream >= (kills + 1) / 2;
    free(c->seen);
    free(c);
    printf("%s\n", ok ? "eos: PASS" : "eos: FAIL");
    return ok ? 0 : 1;
}
