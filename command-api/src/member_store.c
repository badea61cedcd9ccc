/* Members' storage in PostgreSQL; see member_store.h. */
#include "member_store.h"

#include "flashsale/messages.h"
#include "accounts.h"

#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/outbox.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- schema ------------------------------------------------------------------------------ */

static const char *const migrations[] = {
    /* 1: members, verification codes, sessions and refresh tokens, outbox, wishlist */
    "CREATE TABLE members ("
    "  member_id text PRIMARY KEY, email text NOT NULL UNIQUE, password_hash text NOT NULL,"
    "  name_sealed bytea, phone_sealed bytea, role text NOT NULL DEFAULT 'member'"
    "  CHECK (role IN ('member', 'admin')),"
    "  status text NOT NULL DEFAULT 'UNVERIFIED' CHECK (status IN ('UNVERIFIED', 'ACTIVE', 'DELETED')),"
    "  session_gen bigint NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(),"
    "  updated_at timestamptz NOT NULL DEFAULT now(), verified_at timestamptz, deleted_at timestamptz);"
    "CREATE TABLE verification_codes ("
    "  member_id text PRIMARY KEY REFERENCES members ON DELETE CASCADE, code_hash text NOT NULL,"
    "  expires_at timestamptz NOT NULL, attempts integer NOT NULL DEFAULT 0);"
    "CREATE TABLE sessions ("
    "  session_id text PRIMARY KEY, member_id text NOT NULL REFERENCES members ON DELETE CASCADE,"
    "  device text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now(),"
    "  last_used_at timestamptz NOT NULL DEFAULT now(), expires_at timestamptz NOT NULL,"
    "  revoked_at timestamptz, revoked_why text);"
    "CREATE INDEX sessions_member ON sessions (member_id) WHERE revoked_at IS NULL;"
    "CREATE TABLE refresh_tokens ("
    "  token_hash text PRIMARY KEY, session_id text NOT NULL REFERENCES sessions ON DELETE CASCADE,"
    "  issued_at timestamptz NOT NULL DEFAULT now(), used_at timestamptz);"
    "CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);"
    "CREATE TABLE outbox ("
    "  id bigserial PRIMARY KEY, topic text NOT NULL, key text NOT NULL, event_type text NOT NULL,"
    "  event_id text NOT NULL UNIQUE, payload bytea NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz);"
    "CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;"
    "CREATE TABLE wishlist ("
    "  member_id text NOT NULL REFERENCES members ON DELETE CASCADE, product_id text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (member_id, product_id));"
    "CREATE INDEX wishlist_product ON wishlist (product_id);"
    "CREATE TABLE wishlist_notices ("
    "  member_id text NOT NULL, product_id text NOT NULL, occurrence text NOT NULL,"
    "  notified_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (member_id, product_id, occurrence));",
};

int member_store_migrate(const fs_common_config *cfg, fs_err *err)
{
    PGconn *c = NULL;
    for (int i = 0; i < 30 && !c; i++) { /* PostgreSQL may still be starting */
        c = fs_pg_connect(cfg, "flashsale-api-migrate", err);
        if (!c) {
            if (err->cls == FS_ERR_FATAL)
                return -1;
            sleep(1);
        }
    }
    if (!c)
        return -1;
    int rc = fs_pg_migrate(c, "members_schema_version", 824718, migrations,
                           (int)(sizeof migrations / sizeof migrations[0]), err);
    PQfinish(c);
    return rc;
}

/* ---- statements and the one transaction path ----------------------------------------------- */

/* One statement: its result, or NULL with *err classed. The store's statements only see
 * values the handlers checked or the store made, so one that PostgreSQL refuses (INVALID)
 * is ours to fix (FATAL). */
static PGresult *run(PGconn *c, const char *what, const char *sql, int n, const char *const *v, const int *lens,
                     const int *fmts, fs_err *err)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, v, lens, fmts, 0);
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
        return r;
    api_pg_error(err, c, r, what);
    if (err->cls == FS_ERR_INVALID)
        err->cls = FS_ERR_FATAL;
    PQclear(r);
    return NULL;
}

static PGresult *q(PGconn *c, const char *what, const char *sql, int n, const char *const *v, fs_err *err)
{
    return run(c, what, sql, n, v, NULL, NULL, err);
}

static int cmd(PGconn *c, const char *what, const char *sql, int n, const char *const *v, fs_err *err)
{
    PGresult *r = q(c, what, sql, n, v, err);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

/* A transaction under way: its connection, and whether it added to the outbox. */
typedef struct {
    api_ctx *a;
    PGconn *c;
    bool outbox;
} store_tx;

enum { TX_COMMIT, TX_ROLLBACK };
typedef int tx_body(store_tx *t, void *arg, fs_err *err);

/* The one way the store's transactions end: BEGIN, the body, then COMMIT when it returned
 * TX_COMMIT, else ROLLBACK (it failed: -1 with *err; or TX_ROLLBACK: an outcome that keeps
 * nothing). A COMMIT that PostgreSQL refuses, or that ends a failed transaction, stored
 * nothing: -1. A committed transaction that added to the outbox wakes the relay. Returns -1
 * or the body's TX_*. */
static int with_tx(api_ctx *a, const char *what, tx_body *body, void *arg, fs_err *err)
{
    store_tx t = {a, api_pg(a, err), false};
    if (!t.c || cmd(t.c, what, "BEGIN", 0, NULL, err))
        return -1;
    int rc = body(&t, arg, err);
    if (rc == TX_COMMIT) {
        PGresult *r = q(t.c, what, "COMMIT", 0, NULL, err);
        if (!r)
            rc = -1;
        else if (strcmp(PQcmdStatus(r), "COMMIT"))
            rc = fs_err_set(err, FS_ERR_FATAL, 0, "%s: the transaction had failed: nothing was stored", what);
        PQclear(r);
        if (rc == TX_COMMIT && t.outbox)
            api_outbox_kick(a);
        return rc;
    }
    PQclear(PQexec(t.c, "ROLLBACK"));
    return rc;
}

/* ---- outbox rows (in the transaction of the change) ----------------------------------------- */

/* An event's encoding or row that fails is ours to fix, never the client's input. */
static int outbox_failed(fs_err *err)
{
    if (err && err->cls == FS_ERR_INVALID)
        err->cls = FS_ERR_FATAL;
    return -1;
}

/* A member event (MemberRegistered/Verified/Deleted/Updated); fields: for MemberUpdated, the
 * changed field names (NULL-terminated). */
static int member_event(store_tx *t, const char *type, const char *member_id, const char *role,
                        const char *const *fields, fs_err *err)
{
    int kind = mem_event_parse(type);
    if (kind < 0)
        return fs_err_set(err, FS_ERR_FATAL, 0, "no member event %s", type);
    mem_event e = {.type = (mem_event_type)kind, .occurred_at = fs_now_ms()};
    snprintf(e.member_id, sizeof e.member_id, "%s", member_id);
    snprintf(e.role, sizeof e.role, "%s", role ? role : "");
    for (const char *const *f = fields; f && *f && e.nfields < MEM_MAX_FIELDS; f++)
        snprintf(e.fields[e.nfields++], sizeof e.fields[0], "%s", *f);
    void *buf = NULL;
    size_t len = 0;
    int rc = mem_event_encode(t->a->codec, &e, &buf, &len, err) ||
             fs_outbox_add(t->c, FS_TOPIC_MEMBERS_EVENTS, member_id, type, buf, len, err);
    free(buf);
    if (rc)
        return outbox_failed(err);
    t->outbox = true;
    return 0;
}

/* A NotificationRequested (an e-mail); params: name, value pairs, NULL-terminated. */
static int notify(store_tx *t, const char *member_id, const char *email, const char *kind,
                  const char *const *params, fs_err *err)
{
    void *buf = NULL;
    size_t len = 0;
    int rc = fs_notification_new_bytes(t->a->codec, member_id, email, kind, params, fs_now_ms(),
                                       &buf, &len, err) ||
             fs_outbox_add(t->c, FS_TOPIC_NOTIFICATIONS, member_id, "NotificationRequested", buf, len,
                           err);
    free(buf);
    if (rc)
        return outbox_failed(err);
    t->outbox = true;
    return 0;
}

/* A new code for the member (api_code_new), stored hashed, and its e-mail. */
static int new_code(store_tx *t, const char *member_id, const char *email, fs_err *err)
{
    char code[8], h[65], ttl[24], mins[24];
    api_code_new(t->a, member_id, code, h);
    snprintf(ttl, sizeof ttl, "%ld", t->a->code_ttl_s);
    snprintf(mins, sizeof mins, "%ld", (t->a->code_ttl_s + 59) / 60);
    int rc = cmd(t->c, "code",
                 "INSERT INTO verification_codes (member_id, code_hash, expires_at, attempts)"
                 " VALUES ($1, $2, now() + make_interval(secs => $3::bigint), 0)"
                 " ON CONFLICT (member_id) DO UPDATE SET code_hash = EXCLUDED.code_hash,"
                 " expires_at = EXCLUDED.expires_at, attempts = 0",
                 3, (const char *[]){member_id, h, ttl}, err);
    sodium_memzero(h, sizeof h);
    if (rc == 0)
        rc = notify(t, member_id, email, "VERIFY_EMAIL",
                    (const char *const[]){"code", code, "expires_in_minutes", mins, NULL}, err);
    sodium_memzero(code, sizeof code);
    return rc;
}

/* ---- members ----------------------------------------------------------------------------- */

static int signup_body(store_tx *t, void *arg, fs_err *err)
{
    const member_new *m = arg;
    const char *v[] = {m->member_id, m->email, m->password_hash, (const char *)m->name_sealed,
                       (const char *)m->phone_sealed};
    int lens[] = {0, 0, 0, (int)m->name_len, (int)m->phone_len};
    int fmts[] = {0, 0, 0, 1, 1};
    PGresult *r = run(t->c, "signup",
                      "INSERT INTO members (member_id, email, password_hash, name_sealed, phone_sealed)"
                      " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING RETURNING member_id",
                      5, v, lens, fmts, err);
    if (!r)
        return -1;
    bool created = PQntuples(r) == 1;
    PQclear(r);
    if (!created)
        return fs_err_set(err, FS_ERR_INVALID, 0, "an account with this e-mail address exists");
    if (member_event(t, "MemberRegistered", m->member_id, "member", NULL, err) ||
        new_code(t, m->member_id, m->email, err))
        return -1;
    return TX_COMMIT;
}

int member_store_signup(api_ctx *a, const member_new *m, fs_err *err)
{
    return with_tx(a, "signup", signup_body, (void *)m, err) < 0 ? -1 : 0;
}

typedef struct {
    const char *email, *code;
    member_verify *out;
} verify_arg;

/* Whether the code read by verify_body can be judged; if not, why not. */
static bool judgeable(PGresult *r, long max, member_verify_outcome *why_not)
{
    if (PQntuples(r) == 0 || !strcmp(PQgetvalue(r, 0, 1), "DELETED"))
        *why_not = VERIFY_UNKNOWN;
    else if (!strcmp(PQgetvalue(r, 0, 1), "ACTIVE"))
        *why_not = VERIFY_ALREADY;
    else if (PQgetisnull(r, 0, 2)) /* no code, or every attempt of it already used */
        *why_not = !strcmp(PQgetvalue(r, 0, 5), "t") ? VERIFY_LOCKED : VERIFY_NO_CODE;
    else if (!strcmp(PQgetvalue(r, 0, 3), "t"))
        *why_not = VERIFY_EXPIRED;
    else if (atol(PQgetvalue(r, 0, 4)) >= max)
        *why_not = VERIFY_LOCKED;
    else
        return true;
    return false;
}

/* The read counts the attempt before it is judged (UPDATE ... RETURNING on the code's row):
 * parallel attempts queue on that row and each sees the count the one before it left. */
static int verify_body(store_tx *t, void *arg, fs_err *err)
{
    verify_arg *va = arg;
    member_verify *out = va->out;
    long max = t->a->code_max_attempts;
    char maxs[24];
    snprintf(maxs, sizeof maxs, "%ld", max);
    PGresult *r = q(t->c, "verify",
                    "WITH m AS (SELECT member_id, status FROM members WHERE email = $1 FOR UPDATE),"
                    " v AS (UPDATE verification_codes SET attempts = attempts + 1"
                    "       WHERE member_id = (SELECT member_id FROM m) AND attempts < $2::int"
                    "         AND (SELECT status FROM m) = 'UNVERIFIED'"
                    "       RETURNING member_id, code_hash, expires_at < now() AS expired, attempts),"
                    " locked AS (SELECT count(*) > 0 AS has_code FROM verification_codes"
                    "       WHERE member_id = (SELECT member_id FROM m))"
                    " SELECT m.member_id, m.status, v.code_hash, v.expired, v.attempts - 1, (SELECT has_code FROM locked)"
                    " FROM m LEFT JOIN v USING (member_id)",
                    2, (const char *[]){va->email, maxs}, err);
    if (!r)
        return -1;
    if (!judgeable(r, max, &out->outcome)) {
        if (PQntuples(r) == 1)
            snprintf(out->member_id, sizeof out->member_id, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        return TX_ROLLBACK; /* an expired code's attempt is not counted either */
    }
    char want[65], got[65];
    snprintf(out->member_id, sizeof out->member_id, "%s", PQgetvalue(r, 0, 0));
    snprintf(want, sizeof want, "%s", PQgetvalue(r, 0, 2));
    long attempts = atol(PQgetvalue(r, 0, 4));
    PQclear(r);
    api_code_hash(t->a, out->member_id, va->code, got);
    if (sodium_memcmp(want, got, 64) != 0) {
        out->outcome = VERIFY_WRONG;
        out->attempts_left = max - attempts - 1;
        return TX_COMMIT; /* the count stands; an attempt that cannot be counted is not judged */
    }
    const char *id[] = {out->member_id};
    if (cmd(t->c, "verify",
            "UPDATE members SET status = 'ACTIVE', verified_at = now(), updated_at = now() WHERE member_id = $1",
            1, id, err) ||
        cmd(t->c, "verify", "DELETE FROM verification_codes WHERE member_id = $1", 1, id, err) ||
        member_event(t, "MemberVerified", out->member_id, NULL, NULL, err))
        return -1;
    out->outcome = VERIFY_DONE;
    return TX_COMMIT;
}

int member_store_verify(api_ctx *a, const char *email, const char *code, member_verify *out, fs_err *err)
{
    memset(out, 0, sizeof *out);
    verify_arg va = {email, code, out};
    return with_tx(a, "verify", verify_body, &va, err) < 0 ? -1 : 0;
}

typedef struct {
    const char *email;
    int sent;
} resend_arg;

static int resend_body(store_tx *t, void *arg, fs_err *err)
{
    resend_arg *ra = arg;
    PGresult *r = q(t->c, "resend",
                    "SELECT member_id FROM members WHERE email = $1 AND status = 'UNVERIFIED' FOR UPDATE", 1,
                    (const char *[]){ra->email}, err);
    if (!r)
        return -1;
    char id[64] = "";
    if (PQntuples(r) == 1)
        snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (id[0] && new_code(t, id, ra->email, err))
        return -1;
    ra->sent = id[0] != '\0';
    return TX_COMMIT;
}

int member_store_resend_code(api_ctx *a, const char *email, fs_err *err)
{
    resend_arg ra = {email, 0};
    return with_tx(a, "resend", resend_body, &ra, err) < 0 ? -1 : ra.sent;
}

/* A bytea column (text format) as bytes: PQfreemem'd by member_profile_clear. */
static unsigned char *bytea_col(PGresult *r, int col, size_t *len)
{
    *len = 0;
    if (PQgetisnull(r, 0, col))
        return NULL;
    return PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, col), len);
}

int member_store_profile(api_ctx *a, const char *member_id, member_profile *out, fs_err *err)
{
    memset(out, 0, sizeof *out);
    PGconn *c = api_pg(a, err);
    if (!c)
        return -1;
    PGresult *r = q(c, "profile",
                    "SELECT email, name_sealed, phone_sealed, role, status,"
                    " (extract(epoch FROM created_at) * 1000)::bigint,"
                    " (extract(epoch FROM verified_at) * 1000)::bigint, password_hash"
                    " FROM members WHERE member_id = $1 AND status <> 'DELETED'",
                    1, (const char *[]){member_id}, err);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    if (found) {
        snprintf(out->email, sizeof out->email, "%s", PQgetvalue(r, 0, 0));
        out->name_sealed = bytea_col(r, 1, &out->name_len);
        out->phone_sealed = bytea_col(r, 2, &out->phone_len);
        snprintf(out->role, sizeof out->role, "%s", PQgetvalue(r, 0, 3));
        snprintf(out->status, sizeof out->status, "%s", PQgetvalue(r, 0, 4));
        out->created_at = atoll(PQgetvalue(r, 0, 5));
        out->verified = !PQgetisnull(r, 0, 6);
        out->verified_at = out->verified ? atoll(PQgetvalue(r, 0, 6)) : 0;
        snprintf(out->password_hash, sizeof out->password_hash, "%s", PQgetvalue(r, 0, 7));
    }
    PQclear(r);
    return found;
}

void member_profile_clear(member_profile *p)
{
    PQfreemem(p->name_sealed);
    PQfreemem(p->phone_sealed);
    sodium_memzero(p->password_hash, sizeof p->password_hash);
    p->name_sealed = p->phone_sealed = NULL;
    p->name_len = p->phone_len = 0;
}

typedef struct {
    const char *member_id;
    const member_update *u;
} update_arg;

static int update_body(store_tx *t, void *arg, fs_err *err)
{
    const update_arg *ua = arg;
    const member_update *u = ua->u;
    const char *v[] = {ua->member_id, u->set_name ? "t" : "f", (const char *)u->name_sealed,
                       u->set_phone ? "t" : "f", (const char *)u->phone_sealed};
    int lens[] = {0, 0, (int)u->name_len, 0, (int)u->phone_len};
    int fmts[] = {0, 0, 1, 0, 1};
    PGresult *r = run(t->c, "profile update",
                      "UPDATE members SET name_sealed = CASE WHEN $2 THEN $3 ELSE name_sealed END,"
                      " phone_sealed = CASE WHEN $4 THEN $5 ELSE phone_sealed END, updated_at = now()"
                      " WHERE member_id = $1",
                      5, v, lens, fmts, err);
    if (!r)
        return -1;
    PQclear(r);
    const char *fields[3] = {NULL, NULL, NULL};
    int nf = 0;
    if (u->set_name)
        fields[nf++] = "name";
    if (u->set_phone)
        fields[nf++] = "phone";
    if (nf && member_event(t, "MemberUpdated", ua->member_id, NULL, fields, err))
        return -1;
    return TX_COMMIT;
}

int member_store_update_profile(api_ctx *a, const char *member_id, const member_update *u, fs_err *err)
{
    update_arg ua = {member_id, u};
    return with_tx(a, "profile update", update_body, &ua, err) < 0 ? -1 : 0;
}

/* Ends sessions (all of the member's, or one) and, for all, bumps the generation so that
 * access tokens already issued stop working. The ended ids land in *out. */
static int end_sessions(store_tx *t, const char *member_id, const char *sid, const char *why,
                        member_ended_sessions *out, fs_err *err)
{
    PGresult *r = sid ? q(t->c, "end sessions",
                          "UPDATE sessions SET revoked_at = now(), revoked_why = $3 WHERE member_id = $1"
                          " AND session_id = $2 AND revoked_at IS NULL RETURNING session_id",
                          3, (const char *[]){member_id, sid, why}, err)
                      : q(t->c, "end sessions",
                          "UPDATE sessions SET revoked_at = now(), revoked_why = $2 WHERE member_id = $1"
                          " AND revoked_at IS NULL RETURNING session_id",
                          2, (const char *[]){member_id, why}, err);
    out->n = 0;
    out->ended = 0;
    if (!r)
        return -1;
    out->ended = PQntuples(r);
    for (int i = 0; i < PQntuples(r) && out->n < MEMBER_ENDED_NAMED; i++)
        snprintf(out->sid[out->n++], sizeof out->sid[0], "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    if (sid)
        return 0;
    return cmd(t->c, "end sessions",
               "UPDATE members SET session_gen = session_gen + 1, updated_at = now() WHERE member_id = $1", 1,
               (const char *[]){member_id}, err);
}

typedef struct {
    const char *member_id, *sid, *why, *email, *hash;
    member_ended_sessions *ended;
} sessions_arg;

static int end_sessions_body(store_tx *t, void *arg, fs_err *err)
{
    sessions_arg *sa = arg;
    return end_sessions(t, sa->member_id, sa->sid, sa->why, sa->ended, err) ? -1 : TX_COMMIT;
}

int member_store_end_sessions(api_ctx *a, const char *member_id, const char *sid, const char *why,
                              member_ended_sessions *ended, fs_err *err)
{
    sessions_arg sa = {.member_id = member_id, .sid = sid, .why = why, .ended = ended};
    return with_tx(a, "end sessions", end_sessions_body, &sa, err) < 0 ? -1 : 0;
}

static int password_body(store_tx *t, void *arg, fs_err *err)
{
    sessions_arg *sa = arg;
    if (cmd(t->c, "password", "UPDATE members SET password_hash = $2, updated_at = now() WHERE member_id = $1", 2,
            (const char *[]){sa->member_id, sa->hash}, err) ||
        end_sessions(t, sa->member_id, NULL, "password changed", sa->ended, err) ||
        notify(t, sa->member_id, sa->email, "PASSWORD_CHANGED", NULL, err))
        return -1;
    return TX_COMMIT;
}

int member_store_set_password(api_ctx *a, const char *member_id, const char *email, const char *password_hash,
                              member_ended_sessions *ended, fs_err *err)
{
    sessions_arg sa = {.member_id = member_id, .email = email, .hash = password_hash, .ended = ended};
    return with_tx(a, "password", password_body, &sa, err) < 0 ? -1 : 0;
}

static int delete_body(store_tx *t, void *arg, fs_err *err)
{
    sessions_arg *sa = arg;
    const char *id[] = {sa->member_id};
    /* personal data goes; the id stays (orders in the log refer to it) */
    if (cmd(t->c, "delete",
            "UPDATE members SET status = 'DELETED', email = 'deleted:' || member_id, password_hash = '!',"
            " name_sealed = NULL, phone_sealed = NULL, deleted_at = now(), updated_at = now() WHERE member_id = $1",
            1, id, err) ||
        cmd(t->c, "delete", "DELETE FROM wishlist WHERE member_id = $1", 1, id, err) ||
        cmd(t->c, "delete", "DELETE FROM verification_codes WHERE member_id = $1", 1, id, err))
        return -1;
    /* the member's messages not yet relayed (codes, addresses, profile changes) go with the
     * data; only the deletion itself (added below) is still to be told. The relay may hold
     * these rows for up to its 10 s flush during a broker outage: wait for it rather than
     * fail on the 5 s statement timeout. */
    if (cmd(t->c, "delete", "SET LOCAL statement_timeout = '20s'", 0, NULL, err) ||
        cmd(t->c, "delete", "DELETE FROM outbox WHERE key = $1", 1, id, err) ||
        end_sessions(t, sa->member_id, NULL, "account deleted", sa->ended, err) ||
        member_event(t, "MemberDeleted", sa->member_id, NULL, NULL, err))
        return -1;
    return TX_COMMIT;
}

int member_store_delete(api_ctx *a, const char *member_id, member_ended_sessions *ended, fs_err *err)
{
    sessions_arg sa = {.member_id = member_id, .ended = ended};
    return with_tx(a, "delete", delete_body, &sa, err) < 0 ? -1 : 0;
}

int member_store_state(api_ctx *a, const char *member_id, int64_t *gen, member_status *st, fs_err *err)
{
    PGconn *c = api_pg(a, err);
    if (!c)
        return -1;
    PGresult *r = q(c, "member state", "SELECT session_gen, status FROM members WHERE member_id = $1", 1,
                    (const char *[]){member_id}, err);
    if (!r)
        return -1;
    *gen = 0;
    *st = MEMBER_NONE;
    if (PQntuples(r) == 1) {
        *gen = atoll(PQgetvalue(r, 0, 0));
        const char *s = PQgetvalue(r, 0, 1);
        *st = !strcmp(s, "ACTIVE") ? MEMBER_ACTIVE : !strcmp(s, "DELETED") ? MEMBER_DELETED : MEMBER_UNVERIFIED;
    }
    PQclear(r);
    return 0;
}

/* ---- sessions ---------------------------------------------------------------------------- */

int member_store_login_lookup(api_ctx *a, const char *email, member_login *out, fs_err *err)
{
    memset(out, 0, sizeof *out);
    PGconn *c = api_pg(a, err);
    if (!c)
        return -1;
    PGresult *r = q(c, "login",
                    "SELECT member_id, password_hash, role, status, session_gen FROM members"
                    " WHERE email = $1 AND status <> 'DELETED'",
                    1, (const char *[]){email}, err);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    if (found) {
        snprintf(out->member_id, sizeof out->member_id, "%s", PQgetvalue(r, 0, 0));
        snprintf(out->password_hash, sizeof out->password_hash, "%s", PQgetvalue(r, 0, 1));
        snprintf(out->role, sizeof out->role, "%s", PQgetvalue(r, 0, 2));
        snprintf(out->status, sizeof out->status, "%s", PQgetvalue(r, 0, 3));
        out->gen = atoll(PQgetvalue(r, 0, 4));
    }
    PQclear(r);
    return found;
}

/* A refresh token (its hash) of session sid. */
static int add_refresh(store_tx *t, const char *sid, const char *hash, fs_err *err)
{
    return cmd(t->c, "refresh token", "INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)", 2,
               (const char *[]){hash, sid}, err);
}

typedef struct {
    const char *sid, *member_id, *device, *refresh_hash;
} session_arg;

static int session_body(store_tx *t, void *arg, fs_err *err)
{
    session_arg *sa = arg;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%ld", t->a->refresh_ttl_s);
    if (cmd(t->c, "login",
            "INSERT INTO sessions (session_id, member_id, device, expires_at)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4::bigint))",
            4, (const char *[]){sa->sid, sa->member_id, sa->device, ttl}, err) ||
        add_refresh(t, sa->sid, sa->refresh_hash, err))
        return -1;
    return TX_COMMIT;
}

int member_store_session_open(api_ctx *a, const char *sid, const char *member_id, const char *device,
                              const char *refresh_hash, fs_err *err)
{
    session_arg sa = {sid, member_id, device, refresh_hash};
    return with_tx(a, "login", session_body, &sa, err) < 0 ? -1 : 0;
}

typedef struct {
    const char *hash, *new_hash;
    member_refresh *out;
} refresh_arg;

static int refresh_body(store_tx *t, void *arg, fs_err *err)
{
    refresh_arg *ra = arg;
    member_refresh *out = ra->out;
    PGresult *r = q(t->c, "refresh",
                    "SELECT t.used_at IS NOT NULL, s.session_id, s.member_id,"
                    " s.revoked_at IS NOT NULL OR s.expires_at < now(), m.role, m.session_gen, m.status"
                    " FROM refresh_tokens t JOIN sessions s USING (session_id) JOIN members m USING (member_id)"
                    " WHERE t.token_hash = $1 FOR UPDATE OF t, s",
                    1, (const char *[]){ra->hash}, err);
    if (!r)
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        out->outcome = REFRESH_UNKNOWN;
        return TX_ROLLBACK;
    }
    snprintf(out->sid, sizeof out->sid, "%s", PQgetvalue(r, 0, 1));
    snprintf(out->member_id, sizeof out->member_id, "%s", PQgetvalue(r, 0, 2));
    snprintf(out->role, sizeof out->role, "%s", PQgetvalue(r, 0, 4));
    snprintf(out->status, sizeof out->status, "%s", PQgetvalue(r, 0, 6));
    bool reused = !strcmp(PQgetvalue(r, 0, 0), "t"), ended = !strcmp(PQgetvalue(r, 0, 3), "t");
    out->gen = atoll(PQgetvalue(r, 0, 5));
    PQclear(r);
    if (reused) { /* a stolen copy or the real owner: either way the family is compromised */
        out->outcome = REFRESH_REUSED;
        return end_sessions(t, out->member_id, out->sid, "refresh token reused", &out->ended, err) ? -1
                                                                                                    : TX_COMMIT;
    }
    if (ended || !strcmp(out->status, "DELETED")) {
        out->outcome = REFRESH_ENDED;
        return TX_ROLLBACK;
    }
    const char *sid[] = {out->sid};
    if (cmd(t->c, "refresh", "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", 1,
            (const char *[]){ra->hash}, err) ||
        cmd(t->c, "refresh", "UPDATE sessions SET last_used_at = now() WHERE session_id = $1", 1, sid, err) ||
        add_refresh(t, out->sid, ra->new_hash, err))
        return -1;
    out->outcome = REFRESH_ROTATED;
    return TX_COMMIT;
}

int member_store_refresh(api_ctx *a, const char *token_hash, const char *new_hash, member_refresh *out,
                         fs_err *err)
{
    memset(out, 0, sizeof *out);
    refresh_arg ra = {token_hash, new_hash, out};
    return with_tx(a, "refresh", refresh_body, &ra, err) < 0 ? -1 : 0;
}

int member_store_session_revoked(api_ctx *a, const char *sid, fs_err *err)
{
    PGconn *c = api_pg(a, err);
    if (!c)
        return -1;
    PGresult *r = q(c, "session state", "SELECT revoked_at IS NOT NULL FROM sessions WHERE session_id = $1", 1,
                    (const char *[]){sid}, err);
    if (!r)
        return -1;
    /* a missing row is a session that no longer exists */
    int revoked = PQntuples(r) != 1 || !strcmp(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    return revoked;
}

/* ---- wishlist ---------------------------------------------------------------------------- */

int member_store_wishlist(api_ctx *a, const char *member_id, const char *cursor, int limit,
                          void (*fn)(void *ctx, const member_wish *w), void *ctx, fs_err *err)
{
    PGconn *c = api_pg(a, err);
    if (!c)
        return -1;
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    const char *v[] = {member_id, cursor, lim};
    PGresult *r = PQexecParams(c,
                               "SELECT w.product_id, (extract(epoch FROM w.created_at) * 1000)::bigint,"
                               " p.name, p.available, p.sale_starts_at IS NOT NULL"
                               " FROM wishlist w LEFT JOIN products p USING (product_id)"
                               " WHERE w.member_id = $1 AND ($2 = '' OR w.product_id < $2)"
                               " ORDER BY w.product_id DESC LIMIT $3::integer",
                               3, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        /* the products table is the projector's; without it, the list alone */
        r = q(c, "wishlist",
              "SELECT product_id, (extract(epoch FROM created_at) * 1000)::bigint, NULL, NULL, false"
              " FROM wishlist WHERE member_id = $1 AND ($2 = '' OR product_id < $2)"
              " ORDER BY product_id DESC LIMIT $3::integer",
              3, v, err);
        if (!r)
            return -1;
    }
    int n = PQntuples(r);
    for (int i = 0; i < n && i < limit; i++) {
        bool known = !PQgetisnull(r, i, 2);
        member_wish w = {PQgetvalue(r, i, 0), atoll(PQgetvalue(r, i, 1)), known, known ? PQgetvalue(r, i, 2) : NULL,
                         known ? atoll(PQgetvalue(r, i, 3)) : 0};
        fn(ctx, &w);
    }
    PQclear(r);
    return n;
}

int member_store_wish_add(api_ctx *a, const char *member_id, const char *product_id, fs_err *err)
{
    PGconn *c = api_pg(a, err);
    if (!c)
        return -1;
    PGresult *r = q(c, "wishlist add",
                    "INSERT INTO wishlist (member_id, product_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", 2,
                    (const char *[]){member_id, product_id}, err);
    if (!r)
        return -1;
    int added = atoi(PQcmdTuples(r)) == 1;
    PQclear(r);
    return added;
}

int member_store_wish_remove(api_ctx *a, const char *member_id, const char *product_id, fs_err *err)
{
    PGconn *c = api_pg(a, err);
    if (!c)
        return -1;
    PGresult *r = PQexecParams(c, "DELETE FROM wishlist WHERE member_id = $1 AND product_id = $2", 2, NULL,
                               (const char *[]){member_id, product_id}, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        api_pg_error(err, c, r, "wishlist remove");
        PQclear(r);
        if (err->cls != FS_ERR_INVALID)
            return -1;
        /* the id comes from the URL: bytes PostgreSQL refuses as text are in no wishlist */
        fs_err_clear(err);
        return 0;
    }
    int gone = atoi(PQcmdTuples(r)) == 1;
    PQclear(r);
    return gone;
}
