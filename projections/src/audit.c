/* flashsale-audit: proves from the event log alone that the sale was correct.
 *
 *   flashsale-audit [--at TIME] [--product ID] [--json FILE] [--topic-prefix P] [--grace-ms N]
 *
 * Reads orders.answers, inventory.commands, inventory.events and orders.events from the
 * beginning, then inventory.commands again for what came meanwhile (read_committed; with --at
 * the commands appended at or before TIME, the decisions of those commands whenever they were
 * written, and the other records whose Kafka timestamp is at or before TIME; the order is
 * explained in main)
 * and checks:
 *  replay       every command, re-decided in log order with the inventory processor's own
 *               decision code (inv_decide), gets exactly the event the processor wrote for it
 *               (same type, reason, quantity, counters) and no other: decisions followed the
 *               rules and first come, first served;
 *  invariants   from the events alone, with counters kept here: available + reserved + sold =
 *               stock, nothing negative, no oversell, SOLD_OUT only when nothing was available
 *               (no undersell), no member above the per-member limit, one decision per order
 *               line, every reservation committed or released at most once;
 *  leaks        no reservation left unsettled when its order has ended without a sale, or more
 *               than --grace-ms (60000) past its payment deadline unless a payment is under way;
 *  orders       every status change of every order is a legal transition of the lifecycle and
 *               an order ends at most once;
 *  answers      every answer the API gave a buyer (orders.answers), including those given
 *               before the processor's transaction committed, equals the committed decision
 *               (outcome, reason, payment deadline); a sold-out answer from the API's view
 *               came after the committed log sold the product out.
 * Output: a summary on stdout (progress on stderr), a JSON report with --json; exit status 0
 * only when every check holds, 1 otherwise, 2 on usage or read errors. --product with --at
 * prints that product's stock at that time.
 *  read models (unless --at, --topic-prefix or --no-read-models) the PostgreSQL and Redis
 *               read models hold exactly the re-derived products (stock, available,
 *               reserved, sold) and orders (status, number of transitions), nothing more and
 *               nothing less; a model still behind what was read gets --wait-ms (30000) to
 *               catch up. A model that cannot be compared (unreachable, behind, or already
 *               past what was read) is reported, and is a violation with --read-models.
 *               On a live system a projector can move past what was read before the diff,
 *               or (Redis, no snapshot) while its rows are read: Redis's stored offsets are
 *               read again after its rows, and offsets that moved make the comparison void
 *               (its differences dropped) and the store "ahead". When that is an attempt's
 *               only violation, the whole audit is read again (FLASHSALE_AUDIT_ATTEMPTS, 5,
 *               a second apart; only the last attempt's output is shown). */
#include "audit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static json_t *violations;
static size_t nviolations, nahead;

/* Exit status of an attempt whose only violations are read models found past what it read,
 * when another attempt may follow (never seen outside: main reads again). */
#define AUDIT_AHEAD 3

void audit_note_ahead(void)
{
    nahead++;
}

static json_t *held; /* violations of a comparison that may yet turn out void */

/* A violation counted: kept for the report (the first MAX_VIOLATIONS), printed (the first 20). */
static void count_violation(json_t *v)
{
    nviolations++;
    if (nviolations <= 20) {
        const char *order = json_string_value(json_object_get(v, "order_id"));
        const char *product = json_string_value(json_object_get(v, "product_id"));
        printf("VIOLATION %-10s order %s product %s at %d/%lld: %s\n",
               json_string_value(json_object_get(v, "check")), order && *order ? order : "-",
               product && *product ? product : "-", (int)json_integer_value(json_object_get(v, "partition")),
               (long long)json_integer_value(json_object_get(v, "offset")),
               json_string_value(json_object_get(v, "detail")));
    }
    if (json_array_size(violations) < MAX_VIOLATIONS)
        json_array_append(violations, v);
}

void audit_hold_violations(void)
{
    json_decref(held);
    held = json_array();
}

void audit_release_violations(bool count)
{
    json_t *h = held;
    held = NULL;
    for (size_t i = 0; count && i < json_array_size(h); i++)
        count_violation(json_array_get(h, i));
    json_decref(h);
}

void audit_violation(const char *check, const char *order, const char *product, int32_t part,
                     int64_t offset, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    json_t *v = json_pack("{s:s,s:s,s:s,s:i,s:I,s:s}", "check", check, "order_id", order ? order : "",
                          "product_id", product ? product : "", "partition", part, "offset", (json_int_t)offset,
                          "detail", detail);
    if (!v) { /* out of memory: still counted */
        nviolations++;
        return;
    }
    if (held) /* kept aside until the comparison is known to stand */
        json_array_append(held, v);
    else
        count_violation(v);
    json_decref(v);
}

size_t audit_violations(void)
{
    return nviolations;
}

static int audit_once(int argc, char **argv, bool may_retry)
{
    const char *json_out = NULL, *prefix = "", *product = NULL;
    int64_t at = 0;
    long grace = 60000, wait_ms = 30000;
    int read_models = 1; /* 0 no, 1 when comparable, 2 required (--read-models) */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--read-models")) {
            read_models = 2;
            continue;
        }
        if (!strcmp(argv[i], "--no-read-models")) {
            read_models = 0;
            continue;
        }
        if (i + 1 >= argc)
            goto usage;
        if (!strcmp(argv[i], "--json"))
            json_out = argv[++i];
        else if (!strcmp(argv[i], "--topic-prefix"))
            prefix = argv[++i];
        else if (!strcmp(argv[i], "--product"))
            product = argv[++i];
        else if (!strcmp(argv[i], "--grace-ms"))
            grace = atol(argv[++i]);
        else if (!strcmp(argv[i], "--wait-ms"))
            wait_ms = atol(argv[++i]);
        else if (!strcmp(argv[i], "--at")) {
            if (fs_time_parse(argv[++i], &at)) {
                char *end;
                at = strtoll(argv[i], &end, 10);
                if (*end || at <= 0)
                    goto usage;
            }
        } else
            goto usage;
    }
    if (at > fs_now_ms()) /* the log up to now: a command appended later is after it */
        at = fs_now_ms();
    fs_log_init("audit", FS_LOG_WARN);
    fs_common_config cfg;
    fs_err err = {0};
    if (fs_common_config_load(&cfg, &err))
        fs_config_die(&err);
    static audit_ctx a;
    a.codec = fs_codec_new(&err);
    if (!a.codec)
        fs_config_die(&err);
    a.at = at;
    a.cmds.size = sizeof(cmd_rec);
    a.evs.size = sizeof(ev_rec);
    a.orders.size = sizeof(snap_rec);
    a.answers.size = sizeof(answer_rec);
    violations = json_array();
    char t_cmd[256], t_ev[256], t_ord[256];
    snprintf(t_cmd, sizeof t_cmd, "%s%s", prefix, FS_TOPIC_INVENTORY_COMMANDS);
    snprintf(t_ev, sizeof t_ev, "%s%s", prefix, FS_TOPIC_INVENTORY_EVENTS);
    snprintf(t_ord, sizeof t_ord, "%s%s", prefix, FS_TOPIC_ORDERS_EVENTS);
    /* answers first: every decision they name was made before them (answered at the
     * decision, its transaction may commit just after), so reading the decisions afterwards
     * finds it, or finds its command not decided yet (pending) */
    char t_ans[256];
    snprintf(t_ans, sizeof t_ans, "%s%s", prefix, FS_TOPIC_ORDERS_ANSWERS);
    bool have_answers = audit_read_topic(&cfg, &a, t_ans, NULL, &err) == 0;
    if (!have_answers)
        fprintf(stderr, "flashsale-audit: %s not read (%s): answers not compared\n", t_ans, err.msg);
    /* Then the commands, how far the processor's committed transactions got, the decisions
     * and the orders (these two last, nearest the read models' diff, which needs the stores
     * at the offsets read), and then the commands appended meanwhile. Every command a
     * decision answers, or an ended order's release (the saga writes it in the transaction
     * of the order's end), was appended before that decision or order was visible, so the
     * second read of the commands finds it; read once, before the decisions, a live
     * system's newest decisions answered commands the audit had not read. A command read
     * but not decided yet makes its order pending: its answer and its reservation's release
     * are not judged. */
    for (int i = 0; i < MAX_PARTITIONS; i++)
        a.decided_upto[i] = -1;
    a.pending_orders = fs_map_new(1024);
    bool live = !at && !*prefix; /* a copy, or the log up to a time, does not move */
    if (audit_read_topic(&cfg, &a, t_cmd, NULL, &err)) {
        fprintf(stderr, "flashsale-audit: %s\n", err.msg);
        return 2;
    }
    if (live && audit_read_progress(&cfg, &a, t_cmd, &err))
        fprintf(stderr, "flashsale-audit: %s: the processor's progress not read (%s): commands "
                        "after its last decision count as pending\n", t_cmd, err.msg);
    if (audit_read_topic(&cfg, &a, t_ev, NULL, &err) || audit_read_topic(&cfg, &a, t_ord, NULL, &err) ||
        (live && audit_read_topic(&cfg, &a, t_cmd, a.next_cmd, &err))) {
        fprintf(stderr, "flashsale-audit: %s\n", err.msg);
        return 2;
    }
    uint64_t replayed = 0;
    audit_check_replay(&a, &replayed);
    fs_map *products = fs_map_new(1024), *resv = fs_map_new(4096), *decided = fs_map_new(4096),
           *orders = fs_map_new(4096);
    /* the invariants walk events in log order per partition (already sorted) */
    audit_check_invariants(&a, products, resv, decided);
    audit_check_orders(&a, orders);
    leak_ctx lc = {orders, at ? at : fs_now_ms(), grace, 0, a.pending_orders};
    fs_map_foreach(resv, audit_check_leak, &lc);
    answers_stats ast = {0};
    audit_check_answers(&a, &ast);

    printf("flashsale-audit: %zu commands, %zu inventory events, %zu order snapshots%s\n",
           a.cmds.n, a.evs.n, a.orders.n, at ? " (up to --at)" : "");
    printf("  replay: %llu commands re-decided with the processor's rules, %llu not decided "
           "yet, %llu repeated (an order line appended again: ignored, as by the processor)\n",
           (unsigned long long)replayed, (unsigned long long)a.pending, (unsigned long long)a.repeated);
    printf("  products %zu, order lines decided %zu, reservations %zu (%llu unsettled), orders %zu\n",
           fs_map_size(products), fs_map_size(decided), fs_map_size(resv),
           (unsigned long long)lc.unsettled, fs_map_size(orders));
    if (have_answers)
        printf("  answers: %llu decisions answered compared with the committed ones (%llu answered "
               "before the commit), %llu sold-out answers from the view, %llu pending: %llu "
               "difference(s)\n",
               (unsigned long long)ast.compared, (unsigned long long)ast.via_reply,
               (unsigned long long)ast.view, (unsigned long long)ast.pending,
               (unsigned long long)ast.differences);
    else
        printf("  answers: not compared (no %s topic)\n", t_ans);
    if (product) {
        prod_t *p = fs_map_get(products, product);
        char when[FS_TIME_STR_LEN];
        fs_time_format(at ? at : fs_now_ms(), when);
        if (p)
            printf("  product %s at %s: stock %lld, available %lld, reserved %lld, sold %lld\n",
                   product, when, (long long)p->stock, (long long)p->available,
                   (long long)p->reserved, (long long)p->sold);
        else
            printf("  product %s did not exist at %s\n", product, when);
    }
    json_t *rm = NULL;
    if (read_models == 2 || (read_models == 1 && !at && !*prefix))
        rm = audit_diff_read_models(&cfg, &a, products, read_models == 2, wait_ms);
    else
        printf("  read models: not compared (%s)\n", read_models == 0 ? "--no-read-models"
                                                    : "the log was read up to --at or from a copy");
    printf("%s: %zu violation(s)\n", nviolations ? "FAILED" : "OK", nviolations);
    if (json_out) {
        json_t *rep = json_pack("{s:b,s:I,s:{s:I,s:I,s:I},s:I,s:o}", "ok", nviolations == 0,
                                "violation_count", (json_int_t)nviolations, "read", "commands",
                                (json_int_t)a.cmds.n, "inventory_events", (json_int_t)a.evs.n,
                                "order_snapshots", (json_int_t)a.orders.n, "replayed",
                                (json_int_t)replayed, "violations", violations);
        json_object_set_new(rep, "pending_commands", json_integer((json_int_t)a.pending));
        json_object_set_new(rep, "repeated_commands", json_integer((json_int_t)a.repeated));
        json_object_set_new(rep, "read_models", rm ? rm : json_null());
        json_object_set_new(rep, "answers",
                            have_answers ? json_pack("{s:I,s:I,s:I,s:I,s:I}", "compared", (json_int_t)ast.compared,
                                                     "before_commit", (json_int_t)ast.via_reply, "view",
                                                     (json_int_t)ast.view, "pending", (json_int_t)ast.pending,
                                                     "differences", (json_int_t)ast.differences)
                                         : json_null());
        rm = NULL;
        if (product) {
            prod_t *p = fs_map_get(products, product);
            json_object_set_new(rep, "product",
                                p ? json_pack("{s:s,s:I,s:I,s:I,s:I}", "product_id", product,
                                              "stock", (json_int_t)p->stock, "available",
                                              (json_int_t)p->available, "reserved",
                                              (json_int_t)p->reserved, "sold", (json_int_t)p->sold)
                                  : json_null());
        }
        if (json_dump_file(rep, json_out, JSON_INDENT(2)))
            fprintf(stderr, "flashsale-audit: cannot write %s\n", json_out);
        json_decref(rep);
    } else
        json_decref(violations);
    json_decref(rm);
    fs_map_destroy_free(products);
    fs_map_destroy_free(resv);
    fs_map_destroy(decided);
    fs_map_destroy_free(orders);
    fs_map_destroy(a.pending_orders);
    for (size_t i = 0; i < a.cmds.n; i++)
        free(((cmd_rec *)a.cmds.v)[i].cmd);
    for (size_t i = 0; i < a.evs.n; i++)
        free(((ev_rec *)a.evs.v)[i].ev);
    free(a.cmds.v);
    free(a.evs.v);
    free(a.orders.v);
    free(a.answers.v);
    fs_codec_destroy((fs_codec *)a.codec);
    if (may_retry && nviolations > 0 && nviolations == nahead)
        return AUDIT_AHEAD;
    return nviolations ? 1 : 0;
usage:
    fprintf(stderr, "usage: flashsale-audit [--at TIME] [--product ID] [--json FILE] "
                    "[--topic-prefix P] [--grace-ms N]\n"
                    "                       [--read-models | --no-read-models] [--wait-ms N]\n");
    return 2;
}

/* Runs the audit in a child process, its stdout kept aside; an attempt that found only read
 * models past what it read (AUDIT_AHEAD) is dropped and the audit read again, up to
 * FLASHSALE_AUDIT_ATTEMPTS times (the last attempt's verdict stands, whatever it is).
 * (Each attempt is a process of its own: the audit's state is the process's.) */
int main(int argc, char **argv)
{
    const char *e = getenv("FLASHSALE_AUDIT_ATTEMPTS");
    long attempts = e && *e ? atol(e) : 5;
    if (attempts < 1 || attempts > 100)
        attempts = 5;
    for (long t = 1;; t++) {
        FILE *out = tmpfile();
        if (!out) /* nowhere to keep an attempt's output: one attempt, as it comes */
            return audit_once(argc, argv, false);
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            fclose(out);
            return audit_once(argc, argv, false);
        }
        if (pid == 0) {
            if (dup2(fileno(out), STDOUT_FILENO) < 0)
                _exit(2);
            int rc = audit_once(argc, argv, t < attempts);
            fflush(stdout);
            _exit(rc);
        }
        int st = 0, w;
        while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
            ;
        int rc = w == pid && WIFEXITED(st) ? WEXITSTATUS(st) : 2;
        if (rc == AUDIT_AHEAD) {
            char line[1024], why[2048] = "";
            rewind(out); /* the attempt's reasons ("read model redis: not compared: ...") */
            while (fgets(line, sizeof line, out))
                if (!strncmp(line + strspn(line, " "), "read model", 10) && strstr(line, "not compared: ") &&
                    strlen(why) + strlen(line) + 3 < sizeof why) {
                    line[strcspn(line, "\n")] = '\0';
                    snprintf(why + strlen(why), sizeof why - strlen(why), "; %s", line + strspn(line, " "));
                }
            fclose(out);
            fprintf(stderr, "flashsale-audit: attempt %ld of %ld: a read model moved past what was read "
                            "(a live system)%s; reading again\n", t, attempts, why);
            sleep(1);
            continue;
        }
        rewind(out);
        char buf[8192];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, out)) > 0)
            fwrite(buf, 1, n, stdout);
        fclose(out);
        fflush(stdout);
        return rc;
    }
}
