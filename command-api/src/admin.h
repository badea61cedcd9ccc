/* Operator routes of flashsale-api (admin role only; 401 without a token, 403 for members):
 *
 *   GET  /api/admin/overview           decisions per second (last 10 s) and in total, the
 *                                      projections' lag, the Redis breaker's state, the number
 *                                      of dead letters
 *   GET  /api/admin/dead-letters?limit the newest dead letters (default 20, at most 200)
 *   POST /api/admin/audit {product_id} runs flashsale-audit for the product (a child process,
 *                                      time-limited, one at a time: 409 AUDIT_RUNNING)
 *
 * Dead letters are followed by a thread of their own (api_admin_start): it reads the
 * dead-letter topic from the beginning (read_committed) and keeps the count and the newest
 * ADMIN_DEAD_LETTERS_KEPT records in memory, so both answers are instant and bounded; dead
 * letters are rare and the topic keeps 30 days.
 *
 * Settings: FLASHSALE_AUDIT_BIN (the flashsale-audit executable; default: next to
 * flashsale-api, or ../projections/ of it in the build tree), FLASHSALE_AUDIT_TIMEOUT_MS
 * (300000: the child is killed past it, 504 AUDIT_TIMEOUT; the edge gives this route 310 s). */
#ifndef FS_API_ADMIN_H
#define FS_API_ADMIN_H
#include "api.h"

#define ADMIN_DEAD_LETTERS_KEPT 200

typedef struct api_admin api_admin;

/* Reads the settings and starts the dead-letter follower. NULL with *err on a bad setting.
 * Called once from main before the server starts. */
api_admin *api_admin_start(const fs_common_config *cfg, fs_err *err);
void api_admin_stop(api_admin *ad); /* NULL-safe; joins the follower */
/* Set once at start, before any request (the handlers find it here). */
void api_admin_set(api_admin *ad);

/* civetweb handlers (worker threads) */
int api_admin_overview(struct mg_connection *conn, void *cb);
int api_admin_dead_letters(struct mg_connection *conn, void *cb);
int api_admin_audit(struct mg_connection *conn, void *cb);

#endif
