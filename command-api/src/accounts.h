/* Members and sessions of flashsale-api apart from their storage (member_store.h) and their
 * HTTP handlers (members.c: members and auth; wishlist.c): one object per process,
 * api_accounts, made by main.c and held by the API context, with
 *   - the personal-data key (FLASHSALE_PII_KEY): name and phone sealed with
 *     XChaCha20-Poly1305, keyed hashes of codes and refresh tokens;
 *   - password hashing (argon2id, libsodium), at most FLASHSALE_PWHASH_CONCURRENCY at once;
 *   - the per-member session generation cache that access checks use;
 *   - the rate-limit buckets (ratelimit.h);
 *   - the outbox relay (outbox_relay.h).
 * Every function may be called from any thread. */
#ifndef FS_API_ACCOUNTS_H
#define FS_API_ACCOUNTS_H
#include "api.h"
#include "member_store.h"

#include <stdbool.h>
#include <stdint.h>

/* Migrations (member_store_migrate), the key and settings (FLASHSALE_PWHASH_*,
 * FLASHSALE_MEMBER_CACHE_MS, FLASHSALE_RATE_MAX_KEYS), the relay thread. a->cfg must outlive
 * the object. NULL with *err. */
api_accounts *api_accounts_new(api_ctx *a, fs_err *err);
/* Stops the relay, frees the caches and wipes the key; after the HTTP server has stopped.
 * Accepts NULL. */
void api_accounts_destroy(api_accounts *acc);

/* The member's session generation and status (cached FLASHSALE_MEMBER_CACHE_MS, 2000).
 * MEMBER_NONE: no such member (an operator token's subject). -1 with *err when PostgreSQL
 * failed. */
int api_member_state(api_ctx *a, const char *member_id, int64_t *gen, member_status *st, fs_err *err);
/* Whether api_member_state would answer from its cache now (without PostgreSQL). */
bool api_member_cached(api_ctx *a, const char *member_id);
void api_member_forget(api_ctx *a, const char *member_id); /* after this instance changed it */

/* ---- crypto ---- */
/* argon2id hash (crypto_pwhash_str) / verification; at most FLASHSALE_PWHASH_CONCURRENCY at
 * once (each takes FLASHSALE_PWHASH_MEMLIMIT_MB of memory). */
int api_password_hash(api_ctx *a, const char *password, char out[128]);
bool api_password_verify(api_ctx *a, const char *hash, const char *password);
/* A hash of nobody's password, made on first use: verified against when an address is
 * unknown, so that the answer takes as long as for a known one. */
const char *api_password_dummy(api_ctx *a);
/* Seals text for a (member, field): nonce || ciphertext, the member id and field name
 * authenticated as associated data. *out malloc'd. */
int api_seal(api_ctx *a, const char *member_id, const char *field, const char *text, unsigned char **out,
             size_t *len);
/* Opens what api_seal sealed; NULL if it was tampered with or moved. malloc'd. */
char *api_open(api_ctx *a, const char *member_id, const char *field, const unsigned char *in, size_t len);
/* Keyed hash (BLAKE2b under the PII key) as 64 hex characters: refresh tokens, codes. */
void api_secret_hash(api_ctx *a, const char *what, char out[65]);
/* A random URL-safe token of 32 bytes (43 characters). */
void api_random_token(char out[48]);
/* A verification code of the member: 6 random digits, and its keyed hash (what is stored). */
void api_code_new(api_ctx *a, const char *member_id, char code[8], char hash[65]);
void api_code_hash(api_ctx *a, const char *member_id, const char *code, char out[65]);

/* ---- rate limits (ratelimit.h: token buckets in this process) ---- */
/* Takes one token from the bucket `key` (rate per second, burst). false: empty, with
 * *retry_after_s. peek: only look. */
bool api_rate_take(api_ctx *a, const char *key, double rate, double burst, bool peek, int *retry_after_s);
/* Gives back the token an attempt took (a password check that succeeded does not count
 * against the failure budget it was charged to before it was judged). */
void api_rate_refund(api_ctx *a, const char *key);
/* Sends 429 + Retry-After. */
int api_rate_limited(fs_http_req *req, int retry_after_s, const char *what);
/* The client's address: the peer, or X-Forwarded-For from a trusted proxy (http.h). */
const char *api_client_ip(fs_http_req *req);

/* Wakes the outbox relay (member_store.c, after a commit that added to the outbox). */
void api_outbox_kick(api_ctx *a);

/* Before an order is placed: per-member and per-IP token buckets (429 + Retry-After), and a
 * member who logged in must have verified the e-mail address (403 EMAIL_NOT_VERIFIED).
 * Operator tokens (flashsale-token, no session) pass the second check. Returns 0 or the
 * status already sent. */
int api_order_gate(fs_http_req *req, api_ctx *a, const fs_principal *who);
/* Before every other write of a token's holder (profile, wishlist, order actions): one
 * per-subject token bucket (FLASHSALE_RATE_MEMBER_WRITE_PER_S, _BURST), so that no single
 * token can keep the server's threads busy. Returns 0 or the 429 sent. */
int api_write_gate(fs_http_req *req, api_ctx *a, const fs_principal *who);

/* ---- session revocation, on every API instance ----
 * An ended session's access tokens must stop at once everywhere, not when a cached session
 * generation expires. Ended session ids are written to Redis (flashsale:revoked:<sid>, kept
 * as long as an access token lives) and every request with a session token checks there;
 * when Redis does not answer, the check asks PostgreSQL's sessions table instead. */
/* Publishes ended sessions; 0, or -1 when Redis could not be told (PostgreSQL already knows). */
int api_sessions_revoke(api_ctx *a, const char *const *sids, int n);
/* 1 ended, 0 live, -1 with *err when neither Redis nor PostgreSQL answered. */
int api_session_revoked(api_ctx *a, const char *sid, fs_err *err);

/* ---- handlers ---- */
int api_members_route(struct mg_connection *conn, void *cb); /* /api/members... */
int api_auth_route(struct mg_connection *conn, void *cb);    /* /api/auth/... */
int api_wishlist_route(struct mg_connection *conn, void *cb); /* /api/wishlist... */

#endif
