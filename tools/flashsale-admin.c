/* flashsale-admin: operator commands on member accounts (never exposed over HTTP).
 *
 *   flashsale-admin create --email EMAIL [--name NAME]
 *       creates an administrator account, verified; the password is read from
 *       FLASHSALE_ADMIN_PASSWORD or, if unset, from the first line of standard input
 *       (at least 12 characters). The account is announced on members.events through the
 *       outbox like any other.
 *   flashsale-admin promote --email EMAIL
 *       gives an existing member the admin role (its sessions end: new tokens carry the role).
 *
 * Needs FLASHSALE_PG_URL and FLASHSALE_PII_KEY (the tables are created by flashsale-api). */
#include "flashsale/messages.h"

#include "fs/codec.h"
#include "fs/config.h"
#include "fs/db.h"
#include "fs/id.h"
#include "fs/kafka.h"
#include "fs/log.h"
#include "fs/outbox.h"
#include "fs/secrets.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: flashsale-admin create --email EMAIL [--name NAME]\n"
                    "       flashsale-admin promote --email EMAIL\n"
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

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
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
