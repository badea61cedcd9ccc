/* Outbox rows; see fs/outbox.h. */
#include "fs/outbox.h"

#include "fs/id.h"
#include "fs/kafka.h"

#include <stdio.h>
#include <stdlib.h>

int fs_outbox_add(PGconn *c, const char *topic, const char *key, const char *event_type,
                  const void *payload, size_t len, fs_err *err)
{
    char eid[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(eid);
    const char *v[] = {topic, key, event_type, eid, payload};
    int lens[] = {0, 0, 0, 0, (int)len};
    int fmts[] = {0, 0, 0, 0, 1};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO outbox (topic, key, event_type, event_id, payload)"
                               " VALUES ($1, $2, $3, $4, $5)",
                               5, NULL, v, lens, fmts, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : fs_err_from_pg(err, c, r, "outbox");
    PQclear(r);
    return rc;
}

int fs_outbox_add_value(PGconn *c, const char *topic, const char *key, const fs_schema *sc,
                        avro_value_t *v, fs_err *err)
{
    void *buf = NULL;
    size_t len = 0;
    int rc = fs_codec_encode(sc, v, &buf, &len, err);
    if (rc == 0)
        rc = fs_outbox_add(c, topic, key, fs_schema_name(sc), buf, len, err);
    free(buf);
    return rc;
}

int fs_outbox_notify(const fs_codec *codec, PGconn *c, const char *member_id, const char *email,
                     const char *kind, const char *const *params, fs_err *err)
{
    const fs_schema *sc = fs_codec_reader(codec, "NotificationRequested");
    avro_value_t v, map, p;
    if (!sc)
        return fs_err_set(err, FS_ERR_FATAL, 0, "no schema NotificationRequested");
    if (fs_schema_value_new(sc, &v, err))
        return -1;
    char nid[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(nid);
    int rc = fs_av_put_str(&v, "notification_id", nid, true) ||
             fs_av_put_str(&v, "member_id", member_id, true) || fs_av_put_str(&v, "kind", kind, true) ||
             fs_av_put_str(&v, "email", email, email != NULL) ||
             fs_av_put_long(&v, "occurred_at", fs_now_ms(), true) ||
             avro_value_get_by_name(&v, "params", &map, NULL);
    for (const char *const *q = params; !rc && q && q[0]; q += 2)
        rc = avro_value_add(&map, q[0], &p, NULL, NULL) || avro_value_set_string(&p, q[1]);
    if (rc)
        rc = fs_err_set(err, FS_ERR_FATAL, 0, "notification: %s", avro_strerror());
    else
        rc = fs_outbox_add_value(c, FS_TOPIC_NOTIFICATIONS, member_id, sc, &v, err);
    avro_value_decref(&v);
    return rc;
}
