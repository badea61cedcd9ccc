/* Token buckets; see ratelimit.h. */
#include "ratelimit.h"

#include "fs/log.h"
#include "fs/map.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double tokens;
    int64_t at;
    double rate, burst; /* its own: an idle bucket is one that has refilled to its burst */
} bucket;

struct api_rate_limits {
    pthread_mutex_t lock;
    fs_map *buckets;
    long max_keys;
    int64_t last_fruitless_sweep;
};

api_rate_limits *api_rate_limits_new(long max_keys)
{
    api_rate_limits *rl = calloc(1, sizeof *rl);
    if (!rl || !(rl->buckets = fs_map_new(4096))) {
        free(rl);
        return NULL;
    }
    pthread_mutex_init(&rl->lock, NULL);
    rl->max_keys = max_keys;
    rl->last_fruitless_sweep = INT64_MIN / 2;
    return rl;
}

void api_rate_limits_destroy(api_rate_limits *rl)
{
    if (!rl)
        return;
    fs_map_destroy_free(rl->buckets);
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static double refilled(const bucket *b, int64_t now)
{
    double t = b->tokens + (double)(now - b->at) / 1000.0 * b->rate;
    return t > b->burst ? b->burst : t;
}

typedef struct {
    int64_t now;
    int pass; /* 0: idle buckets (refilled to their burst: forgetting them changes nothing);
               * 1: at most one token used (forgetting gives back at most one attempt);
               * 2: any bucket that still lets a request through (never a lockout) */
    char **keys;
    size_t n, cap;
} sweep_ctx;

static void sweep_pick(void *ctx, const char *key, void *v)
{
    sweep_ctx *s = ctx;
    const bucket *b = v;
    double t = refilled(b, s->now);
    /* a lockout (below one token) is never picked, whatever its burst */
    bool go = t >= 1.0 && (s->pass == 0 ? t >= b->burst : s->pass == 1 ? t >= b->burst - 1.0 : true);
    if (go && s->n < s->cap && (s->keys[s->n] = strdup(key)))
        s->n++;
}

/* The map is full: forget buckets, pass by pass, until a tenth of the room is free (see
 * ratelimit.h). Called with rl->lock. */
static void sweep(api_rate_limits *rl, int64_t now)
{
    if (now - rl->last_fruitless_sweep < 1000)
        return;
    size_t want = (size_t)rl->max_keys / 10 + 1;
    sweep_ctx s = {now, 0, malloc(want * sizeof *s.keys), 0, want};
    if (!s.keys)
        return;
    size_t before = fs_map_size(rl->buckets);
    for (s.pass = 0; s.pass < 3 && s.n < want; s.pass++) {
        size_t from = s.n;
        fs_map_foreach(rl->buckets, sweep_pick, &s);
        for (size_t k = from; k < s.n; k++)
            free(fs_map_del(rl->buckets, s.keys[k]));
    }
    for (size_t k = 0; k < s.n; k++)
        free(s.keys[k]);
    if (!s.n)
        rl->last_fruitless_sweep = now;
    fs_log_warn("rate-limit buckets full: idle ones forgotten",
                json_pack("{s:I,s:I,s:I}", "before", (json_int_t)before, "forgotten", (json_int_t)s.n,
                          "max", (json_int_t)rl->max_keys));
    free(s.keys);
}

/* The bucket of key, made full when new; NULL: refused (every bucket a lockout) with
 * *full set, or out of memory. Called with rl->lock. */
static bucket *bucket_for(api_rate_limits *rl, const char *key, double burst, int64_t now, bool *full)
{
    bucket *b = fs_map_get(rl->buckets, key);
    if (b)
        return b;
    if (fs_map_size(rl->buckets) >= (size_t)rl->max_keys)
        sweep(rl, now);
    if (fs_map_size(rl->buckets) >= (size_t)rl->max_keys) {
        *full = true; /* every bucket holds a lockout: refuse rather than forget one */
        return NULL;
    }
    if (!(b = malloc(sizeof *b)))
        return NULL;
    b->tokens = burst;
    b->at = now;
    if (fs_map_put(rl->buckets, key, b) == (void *)-1) {
        free(b);
        return NULL;
    }
    return b;
}

bool api_rate_limits_take(api_rate_limits *rl, const char *key, double rate, double burst, bool peek,
                          int64_t now_ms, int *retry_after_s)
{
    if (rate <= 0)
        return true; /* switched off */
    pthread_mutex_lock(&rl->lock);
    bool full = false;
    bucket *b = bucket_for(rl, key, burst, now_ms, &full);
    if (!b) {
        pthread_mutex_unlock(&rl->lock);
        if (full && retry_after_s)
            *retry_after_s = 1;
        return !full; /* out of memory: not a reason to refuse */
    }
    b->rate = rate;
    b->burst = burst;
    b->tokens = refilled(b, now_ms);
    b->at = now_ms;
    bool ok = b->tokens >= 1.0;
    if (ok && !peek)
        b->tokens -= 1.0;
    if (!ok && retry_after_s)
        *retry_after_s = (int)((1.0 - b->tokens) / rate) + 1;
    pthread_mutex_unlock(&rl->lock);
    return ok;
}

void api_rate_limits_refund(api_rate_limits *rl, const char *key)
{
    pthread_mutex_lock(&rl->lock);
    bucket *b = fs_map_get(rl->buckets, key);
    if (b && (b->tokens += 1.0) > b->burst)
        b->tokens = b->burst;
    pthread_mutex_unlock(&rl->lock);
}

size_t api_rate_limits_size(api_rate_limits *rl)
{
    pthread_mutex_lock(&rl->lock);
    size_t n = fs_map_size(rl->buckets);
    pthread_mutex_unlock(&rl->lock);
    return n;
}
