/* Members' storage in PostgreSQL for flashsale-api: the schema (own migrations) and every
 * statement on members, verification codes, sessions, refresh tokens and the wishlist, with
 * the outbox rows a change publishes (member events, e-mails: fs/outbox.h) written in its
 * transaction. Parameterised SQL only. Each function takes this request's pooled connection
 * (api_pg) itself and is one transaction or one statement: callers see no SQL, no result and
 * no transaction. A transaction that added to the outbox wakes the relay after its commit.
 *
 * Failures are -1 with *err classed (api_pg_error):
 *   FS_ERR_RETRIABLE  PostgreSQL cannot do it now: no connection within the pool's wait, a
 *                     lost connection, a serialization failure or deadlock, a lock or
 *                     statement timeout, a shutdown, lack of resources;
 *   FS_ERR_INVALID    only where a function says so (a taken e-mail address);
 *   FS_ERR_FATAL      a statement or an event that is wrong: a bug, not the input (handlers
 *                     check what clients send before it reaches a statement).
 * Outcomes that are not failures (no such member, a wrong code) are return values. */
#ifndef FS_API_MEMBER_STORE_H
#define FS_API_MEMBER_STORE_H
#include "api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { MEMBER_NONE, MEMBER_UNVERIFIED, MEMBER_ACTIVE, MEMBER_DELETED } member_status;

/* Sessions ended by one request: their ids, to be told to every API instance after the
 * commit (api_sessions_revoke). */
#define MEMBER_ENDED_NAMED 64
typedef struct {
    char sid[MEMBER_ENDED_NAMED][64]; /* session ids (UUIDv7 text; room for any stored id) */
    int n;
    long ended; /* may exceed n: only the first 64 are named; the generation bump covers all */
} member_ended_sessions;

/* Applies the schema's migrations (members_schema_version), waiting up to 30 s for
 * PostgreSQL to accept connections. */
int member_store_migrate(const fs_common_config *cfg, fs_err *err);

/* ---- members ---- */
typedef struct {
    const char *member_id, *email, *password_hash; /* e-mail normalised; argon2id hash */
    const unsigned char *name_sealed, *phone_sealed; /* api_seal; phone_sealed may be NULL */
    size_t name_len, phone_len;
} member_new;

/* Sign-up: the member, MemberRegistered, a verification code (api_code_new) and its e-mail,
 * in one transaction. 0, or -1: INVALID when an account has the address. */
int member_store_signup(api_ctx *a, const member_new *m, fs_err *err);

typedef enum {
    VERIFY_DONE,      /* verified now (MemberVerified sent, the code gone) */
    VERIFY_UNKNOWN,   /* no account with this address, or a deleted one */
    VERIFY_ALREADY,   /* verified before */
    VERIFY_NO_CODE,   /* no code pending */
    VERIFY_LOCKED,    /* every attempt of the code used */
    VERIFY_EXPIRED,   /* not counted */
    VERIFY_WRONG,     /* counted: attempts_left */
} member_verify_outcome;

typedef struct {
    member_verify_outcome outcome;
    char member_id[64];
    long attempts_left;
} member_verify;

/* Judges a verification code. The attempt is counted before it is judged, in the statement
 * that reads the code, so at most max_attempts (a->code_max_attempts) are ever judged. */
int member_store_verify(api_ctx *a, const char *email, const char *code, member_verify *out, fs_err *err);
/* A new code for an unverified account of this address, with its e-mail. 1 sent, 0 no such
 * account. */
int member_store_resend_code(api_ctx *a, const char *email, fs_err *err);

typedef struct {
    char email[256], role[16], status[16];
    char password_hash[128];
    int64_t created_at, verified_at; /* ms */
    bool verified;
    unsigned char *name_sealed, *phone_sealed; /* NULL when none; member_profile_clear */
    size_t name_len, phone_len;
} member_profile;

/* The member's row (not a deleted one). 1 found, 0 none. */
int member_store_profile(api_ctx *a, const char *member_id, member_profile *out, fs_err *err);
void member_profile_clear(member_profile *p);

typedef struct {
    bool set_name, set_phone; /* set_phone with phone_sealed NULL clears the phone */
    const unsigned char *name_sealed, *phone_sealed;
    size_t name_len, phone_len;
} member_update;

/* Changes name and/or phone; MemberUpdated names the fields (none: no event). */
int member_store_update_profile(api_ctx *a, const char *member_id, const member_update *u, fs_err *err);
/* A new password hash; every session ends (the generation bumped) and a PASSWORD_CHANGED
 * e-mail goes to `email`. */
int member_store_set_password(api_ctx *a, const char *member_id, const char *email, const char *password_hash,
                              member_ended_sessions *ended, fs_err *err);
/* Deletion: personal data, codes, the wishlist and the member's messages not yet relayed go;
 * the id stays (orders in the log refer to it); every session ends; MemberDeleted. */
int member_store_delete(api_ctx *a, const char *member_id, member_ended_sessions *ended, fs_err *err);

/* The member's session generation and status; MEMBER_NONE when there is no such member. */
int member_store_state(api_ctx *a, const char *member_id, int64_t *gen, member_status *st, fs_err *err);

/* ---- sessions ---- */
typedef struct {
    char member_id[64], password_hash[128], role[16], status[16];
    int64_t gen;
} member_login;

/* The account of an address (not a deleted one), for a login. 1 found, 0 none. */
int member_store_login_lookup(api_ctx *a, const char *email, member_login *out, fs_err *err);
/* A new session (expires in a->refresh_ttl_s) with its first refresh token (hash). */
int member_store_session_open(api_ctx *a, const char *sid, const char *member_id, const char *device,
                              const char *refresh_hash, fs_err *err);

typedef enum {
    REFRESH_ROTATED, /* the token is used; new_hash is the session's next one */
    REFRESH_UNKNOWN, /* no such token */
    REFRESH_REUSED,  /* used before: a stolen copy or the owner; its session is ended (ended) */
    REFRESH_ENDED,   /* the session ended or expired, or the member was deleted */
} member_refresh_outcome;

typedef struct {
    member_refresh_outcome outcome;
    char sid[64], member_id[64], role[16], status[16];
    int64_t gen;
    member_ended_sessions ended;
} member_refresh;

/* Rotates a refresh token (its hash): the token's row and its session are locked (FOR
 * UPDATE) while it is judged. */
int member_store_refresh(api_ctx *a, const char *token_hash, const char *new_hash, member_refresh *out,
                         fs_err *err);
/* Ends the member's session sid, or every session (sid NULL: the generation is bumped too, so
 * access tokens already issued stop). */
int member_store_end_sessions(api_ctx *a, const char *member_id, const char *sid, const char *why,
                              member_ended_sessions *ended, fs_err *err);
/* 1 ended (or no such session), 0 live. */
int member_store_session_revoked(api_ctx *a, const char *sid, fs_err *err);

/* ---- wishlist ---- */
typedef struct {
    const char *product_id;
    int64_t added_at;        /* ms */
    bool known;              /* the read model has the product: name, available */
    const char *name;
    long long available;
} member_wish;

/* The member's wishes with a product id below cursor ("" for the first page), by product id
 * descending: at most limit, each handed to fn (valid during the call). Returns how many it
 * found, up to limit + 1: more than limit means a next page after the last one handed.
 * Names and stock come from the read model's products table when it is there. */
int member_store_wishlist(api_ctx *a, const char *member_id, const char *cursor, int limit,
                          void (*fn)(void *ctx, const member_wish *w), void *ctx, fs_err *err);
/* 1 added, 0 already there. */
int member_store_wish_add(api_ctx *a, const char *member_id, const char *product_id, fs_err *err);
/* 1 removed, 0 not there (a product id that is not text PostgreSQL can hold included). */
int member_store_wish_remove(api_ctx *a, const char *member_id, const char *product_id, fs_err *err);

#endif
