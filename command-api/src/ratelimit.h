/* Token buckets of flashsale-api's rate limits, in this process: one bucket per key (an
 * account's password failures, a client address's sign-ups, a member's orders...), each
 * with the rate and burst its caller gives.
 *
 * The map of buckets is bounded (max_keys, FLASHSALE_RATE_MAX_KEYS): when it is full,
 * buckets that have refilled to their burst are forgotten first (forgetting them changes
 * nothing), then those with at most one token used (at most one attempt given back), then
 * any that still lets a request through. A lockout (a bucket below one token) is never
 * forgotten, so a flood of new keys cannot unlock an account; when every bucket is a
 * lockout, a new key is refused. A sweep that frees nothing is not tried again for a second
 * (each walks the whole map). Every function may be called from any thread. */
#ifndef FS_API_RATELIMIT_H
#define FS_API_RATELIMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct api_rate_limits api_rate_limits;

/* NULL when out of memory. */
api_rate_limits *api_rate_limits_new(long max_keys);
void api_rate_limits_destroy(api_rate_limits *rl); /* accepts NULL */

/* Takes one token from the bucket `key` (rate per second, burst) at now_ms (fs_mono_ms).
 * false: empty, with *retry_after_s (may be NULL). peek: only look. rate <= 0: switched
 * off, always true. */
bool api_rate_limits_take(api_rate_limits *rl, const char *key, double rate, double burst, bool peek,
                          int64_t now_ms, int *retry_after_s);
/* Gives back the token an attempt took (up to the bucket's burst). */
void api_rate_limits_refund(api_rate_limits *rl, const char *key);
size_t api_rate_limits_size(api_rate_limits *rl);

#endif
