/* flashsale-audit: reading the log into the context; see audit.h. */
#include "audit.h"

/* With --at: whether the log at that time held this decision. It did when its command
 * was appended by then (commands are read first): below the partition's cut, or, with no
 * cut, among the commands read (one appended since came after the time, which is clamped
 * to the audit's start). An event naming no command is judged by its own timestamp. */
static bool at_holds(const audit_ctx *a, int32_t partition, int64_t command_offset, int64_t ts)
{
    if (command_offset < 0 || partition < 0 || partition >= MAX_PARTITIONS)
        return ts <= a->at;
    int64_t cut = a->at_cut[partition] ? a->at_cut[partition] - 1 : a->next_cmd[partition];
    return command_offset < cut;
}

/* A malloc'd copy of the first `size` bytes of p, or NULL. */
static void *keep(const void *p, size_t size)
{
    void *c = malloc(size);
    if (c)
        memcpy(c, p, size);
    return c;
}

static int out_of_memory(const audit_ctx *a, fs_err *err)
{
    return fs_err_set(err, FS_ERR_FATAL, 0, "out of memory after %llu records",
                      (unsigned long long)a->read);
}

static int collect(void *ctx, const rd_kafka_message_t *m, fs_err *err)
{
    audit_ctx *a = ctx;
    if (vec_grow(&a->cmds) || vec_grow(&a->evs) || vec_grow(&a->answers) || vec_grow(&a->orders))
        return out_of_memory(a, err);
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    const char *topic = rd_kafka_topic_name(m->rkt);
    bool in_part = m->partition >= 0 && m->partition < MAX_PARTITIONS;
    bool is_cmd = strstr(topic, "inventory.commands") != NULL,
         is_ev = strstr(topic, "inventory.events") != NULL;
    if (a->at && is_cmd && in_part && !a->at_cut[m->partition] && ts > a->at)
        a->at_cut[m->partition] = m->offset + 1; /* (LogAppendTime: the rest is later too) */
    if (a->at && is_cmd && in_part && a->at_cut[m->partition]) {
        a->skipped_time++;
        return 0;
    }
    if (a->at && !is_cmd && !is_ev && ts > a->at) { /* events: by their command, below */
        a->skipped_time++;
        return 0;
    }
    if (++a->read % 100000 == 0)
        fprintf(stderr, "flashsale-audit: %s: %llu records read\n", a->topic,
                (unsigned long long)a->read);
    const fs_schema *s;
    avro_value_t v;
    fs_err e = {0};
    bool ok = fs_codec_decode(a->codec, m->payload, m->len, &s, &v, &e) == 0;
    if (in_part) {
        if (is_ev)
            a->next_ev[m->partition] = m->offset + 1;
        else if (strstr(topic, "orders.events"))
            a->next_ord[m->partition] = m->offset + 1;
        else if (is_cmd)
            a->next_cmd[m->partition] = m->offset + 1;
    }
    int rc = 0;
    if (is_cmd) {
        cmd_rec *c = vec_push(&a->cmds);
        c->partition = m->partition;
        c->offset = m->offset;
        c->ts = ts;
        c->cmd = NULL;
        inv_command cmd;
        if (ok && inv_command_decode(&v, fs_schema_name(s), &cmd, &e) == 0) {
            cmd.offset = m->offset;
            cmd.logged_at = fs_kafka_record_time(m);
            if (!(c->cmd = keep(&cmd, inv_command_used_size(&cmd)))) {
                a->cmds.n--;
                rc = out_of_memory(a, err);
            }
        }
    } else if (ok && is_ev) {
        inv_event ev;
        if (inv_event_decode(&v, fs_schema_name(s), &ev, &e)) {
            a->undecodable++;
        } else if (a->at && !at_holds(a, m->partition, ev.command_offset, ts)) {
            a->skipped_time++;
        } else {
            ev_rec *r = vec_push(&a->evs);
            r->partition = m->partition;
            r->offset = m->offset;
            r->ts = ts;
            if (!(r->ev = keep(&ev, inv_event_used_size(&ev)))) {
                a->evs.n--;
                rc = out_of_memory(a, err);
            }
        }
    } else if (ok && strstr(topic, "orders.answers") && !strcmp(fs_schema_name(s), "OrderAnswered")) {
        answer_rec *r = vec_push(&a->answers);
        memset(r, 0, sizeof *r);
        r->partition = m->partition;
        r->offset = m->offset;
        ord_answer ans;
        if (ord_answer_decode(&v, &ans, &e)) {
            a->answers.n--;
            a->undecodable++;
            /* an answer a buyer was given that names no order cannot be held to a decision */
            audit_violation("answers", "", "", m->partition, m->offset, "an answer that cannot be read: %s",
                            e.msg);
        } else {
            snprintf(r->order_id, sizeof r->order_id, "%s", ans.order_id);
            snprintf(r->member_id, sizeof r->member_id, "%s", ans.member_id);
            snprintf(r->product_id, sizeof r->product_id, "%s", ans.product_id);
            snprintf(r->status, sizeof r->status, "%s", ans.status);
            snprintf(r->reason, sizeof r->reason, "%s", ans.reason);
            snprintf(r->source, sizeof r->source, "%s", ans.source);
            r->pay_by = ans.pay_by;
            r->answered_at = ans.answered_at;
            r->quantity = ans.quantity;
        }
    } else if (ok && strstr(topic, "orders.events") &&
               !strcmp(fs_schema_name(s), "OrderStatusChanged")) {
        ord_order o;
        if (ord_decode(&v, &o, &e) == 0) {
            snap_rec *r = vec_push(&a->orders);
            snprintf(r->order_id, sizeof r->order_id, "%s", o.order_id);
            r->status = o.status;
            r->previous = o.previous;
            r->ended_at = ord_ended_at(&o);
        }
    }
    if (!ok)
        a->undecodable++;
    else
        avro_value_decref(&v);
    return rc;
}

/* Every partition of the topic, each at the beginning; NULL with err. */
static rd_kafka_topic_partition_list_t *all_partitions(const fs_common_config *cfg,
                                                       const char *topic, fs_err *err)
{
    rd_kafka_t *admin = fs_kafka_new(cfg, &(fs_kafka_client){.role = FS_KAFKA_ADMIN, .client_id = "flashsale-audit"}, err);
    int n = admin ? fs_kafka_partition_count(admin, topic, 10000, err) : -1;
    if (admin)
        rd_kafka_destroy(admin);
    if (n < 1)
        return NULL;
    if (n > MAX_PARTITIONS) {
        fs_err_set(err, FS_ERR_FATAL, 0, "%s has %d partitions, the audit reads at most %d",
                   topic, n, MAX_PARTITIONS);
        return NULL;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    return l;
}

int audit_read_topic(const fs_common_config *cfg, audit_ctx *a, const char *topic,
                     const int64_t *from, fs_err *err)
{
    rd_kafka_topic_partition_list_t *l = all_partitions(cfg, topic, err);
    if (!l)
        return -1;
    for (int i = 0; from && i < l->cnt; i++)
        l->elems[i].offset = from[l->elems[i].partition]; /* (0: nothing read there yet) */
    a->topic = topic;
    uint64_t before = a->read;
    int rc = fs_kafka_read_to_end(cfg, l, collect, a, 600000, err);
    rd_kafka_topic_partition_list_destroy(l);
    fprintf(stderr, "flashsale-audit: %s: %llu records\n", topic,
            (unsigned long long)(a->read - before));
    return rc;
}

int audit_read_progress(const fs_common_config *cfg, audit_ctx *a, const char *topic, fs_err *err)
{
    rd_kafka_topic_partition_list_t *l = all_partitions(cfg, topic, err);
    if (!l)
        return -1;
    /* a consumer of the processor's group that never subscribes: it only asks for the
     * group's offsets (read_committed, so a pending transactional commit is waited for) */
    rd_kafka_t *c = fs_kafka_new(cfg, &(fs_kafka_client){.role = FS_KAFKA_CONSUMER, .client_id = "flashsale-audit",
                                                         .group_id = FS_GROUP_INVENTORY},
                                 err);
    int rc = -1;
    if (c) {
        rd_kafka_resp_err_t e = rd_kafka_committed(c, l, 30000);
        if (e)
            fs_err_from_kafka_code(err, e, "the inventory processor's committed offsets");
        else {
            for (int i = 0; i < l->cnt; i++)
                if (l->elems[i].err == 0 && l->elems[i].offset >= 0)
                    a->decided_upto[l->elems[i].partition] = l->elems[i].offset;
            rc = 0;
        }
        rd_kafka_destroy(c);
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}
