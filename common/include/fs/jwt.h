/* Access tokens: HS256 JWTs with claims sub (member id), role ("member" or "admin"),
 * iat and exp (seconds since the epoch); login tokens also sid and gen. Issued by
 * flashsale-token (operators, tests, load tests) and by login; verified by the API with
 * libjwt. Only HS256 is accepted:
 * a token naming another algorithm (including "none") is invalid.
 * Thread-safe; the secret is never logged or put into an error message. */
#ifndef FS_JWT_H
#define FS_JWT_H
#include "fs/err.h"
#include <stdint.h>

#define FS_JWT_SECRET_MIN 32

typedef struct {
    char sub[64];
    char role[16];
    int64_t exp;
    char sid[48]; /* the session (refresh family) of a login token; "" for operator tokens */
    int64_t gen;  /* the member's session generation when issued; -1 for operator tokens */
} fs_principal;

typedef enum {
    FS_JWT_OK = 0,
    FS_JWT_MISSING,  /* no token */
    FS_JWT_INVALID,  /* malformed, forged, wrong algorithm, missing claims, unknown role */
    FS_JWT_EXPIRED,  /* exp in the past */
} fs_jwt_status;

/* Issues a token; *out is malloc'd (caller frees). Returns 0 or -1 with *err. */
int fs_jwt_issue(const char *secret, const char *sub, const char *role, int64_t ttl_seconds,
                 char **out, fs_err *err);
/* Issues a login token: also carries the session id and the member's session generation
 * (claims sid, gen), which the API checks against the member's current generation. */
int fs_jwt_issue_session(const char *secret, const char *sub, const char *role, int64_t ttl_seconds,
                         const char *sid, int64_t gen, char **out, fs_err *err);
/* Verifies `authorization` (the whole header value, "Bearer <token>", may be NULL). */
fs_jwt_status fs_jwt_verify(const char *secret, const char *authorization, int64_t now_seconds,
                            fs_principal *out);
/* How many tokens libjwt has decoded in this process: the verifications the verified-token
 * cache did not answer (a token issued here is remembered as it is issued). */
unsigned long fs_jwt_decodes(void);

#endif
