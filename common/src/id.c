/* UUIDv7 generation; see fs/id.h. One mutex guards the (last_ms, counter) pair: an id costs
 * a lock, a clock read and 8 random bytes from fs_random_bytes' per-thread buffer, refilled
 * by getrandom(2). */
#include "fs/id.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t id_last_ms;
static uint32_t id_counter; /* 12 bits used */

static __thread uint8_t rnd_buf[256];
static __thread size_t rnd_pos = sizeof rnd_buf;
static pthread_once_t rnd_once = PTHREAD_ONCE_INIT;
static bool rnd_fork_safe; /* the fork handler is registered: the buffer may be used */

/* A forked child starts with an empty buffer: bytes its parent had drawn but not handed out
 * are never handed out by both (the forking thread's buffer is the only one a child keeps). */
static void rnd_forget_in_child(void)
{
    rnd_pos = sizeof rnd_buf;
}

static void rnd_register(void)
{
    rnd_fork_safe = pthread_atfork(NULL, NULL, rnd_forget_in_child) == 0;
}

static int fill(void *buf, size_t n)
{
    uint8_t *out = buf;
    for (size_t got = 0; got < n;) {
        ssize_t r = getrandom(out + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

int fs_random_bytes(void *out, size_t n)
{
    if (n > sizeof rnd_buf / 4) /* large requests straight from the kernel */
        return fill(out, n);
    if (rnd_pos + n > sizeof rnd_buf) {
        pthread_once(&rnd_once, rnd_register);
        if (!rnd_fork_safe) /* no handler (out of memory): no buffer either */
            return fill(out, n);
        if (fill(rnd_buf, sizeof rnd_buf))
            return -1; /* rnd_pos unchanged: nothing is handed out twice */
        rnd_pos = 0;
    }
    memcpy(out, rnd_buf + rnd_pos, n);
    rnd_pos += n;
    return 0;
}

int64_t fs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double fs_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int64_t fs_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fs_uuid7_new(fs_uuid *out)
{
    uint8_t rnd[8];
    if (fs_random_bytes(rnd, sizeof rnd))
        return -1;
    uint64_t now = (uint64_t)fs_now_ms();
    pthread_mutex_lock(&id_lock);
    if (now > id_last_ms) {
        id_last_ms = now;
        id_counter = rnd[7] & 0x1ff; /* random start, leaves room to count up */
    } else if (++id_counter > 0xfff) {
        /* counter exhausted in this millisecond (or clock went back): borrow the next ms */
        id_last_ms++;
        id_counter = 0;
    }
    uint64_t ms = id_last_ms;
    uint32_t ctr = id_counter;
    pthread_mutex_unlock(&id_lock);

    for (int i = 0; i < 6; i++)
        out->b[i] = (uint8_t)(ms >> (40 - 8 * i));
    out->b[6] = (uint8_t)(0x70 | (ctr >> 8));
    out->b[7] = (uint8_t)(ctr & 0xff);
    out->b[8] = (uint8_t)(0x80 | (rnd[0] & 0x3f));
    memcpy(out->b + 9, rnd + 1, 7);
    return 0;
}

void fs_uuid_format(const fs_uuid *id, char *out)
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[id->b[i] >> 4];
        *p++ = hex[id->b[i] & 15];
    }
    *p = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int fs_uuid_parse(const char *s, fs_uuid *out)
{
    if (!s || strlen(s) != FS_UUID_STR_LEN)
        return -1;
    int j = 0;
    for (int i = 0; i < FS_UUID_STR_LEN;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -1;
            i++;
            continue;
        }
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out->b[j++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return 0;
}

uint64_t fs_uuid7_millis(const fs_uuid *id)
{
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = ms << 8 | id->b[i];
    return ms;
}

int fs_uuid7_str(char out[FS_UUID_STR_LEN + 1])
{
    fs_uuid id;
    if (fs_uuid7_new(&id))
        return -1;
    fs_uuid_format(&id, out);
    return 0;
}

int fs_uuid7_at(uint64_t ms, char out[FS_UUID_STR_LEN + 1])
{
    fs_uuid id;
    if (fs_random_bytes(id.b + 6, 10))
        return -1;
    for (int i = 0; i < 6; i++)
        id.b[i] = (uint8_t)(ms >> (40 - 8 * i));
    id.b[6] = (uint8_t)(0x70 | (id.b[6] & 0x0f));
    id.b[8] = (uint8_t)(0x80 | (id.b[8] & 0x3f));
    fs_uuid_format(&id, out);
    return 0;
}

int64_t fs_uuid7_str_millis(const char *s)
{
    fs_uuid id;
    if (fs_uuid_parse(s, &id) || (id.b[6] >> 4) != 7 || (id.b[8] >> 6) != 2)
        return -1;
    return (int64_t)fs_uuid7_millis(&id);
}
