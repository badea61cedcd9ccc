/* Time-ordered ids: UUIDv7 (RFC 9562) for orders, events and products.
 *
 * Layout: 48-bit Unix milliseconds, version 7, a 12-bit counter that increases within one
 * millisecond (RFC 9562 method 1), variant 10, 62 random bits. Ids made by one process are
 * strictly increasing, also across threads and when the clock steps back (the last
 * timestamp is kept). The text form is the canonical 36-character lowercase hex. */
#ifndef FS_ID_H
#define FS_ID_H
#include <stddef.h>
#include <stdint.h>

#define FS_UUID_STR_LEN 36

typedef struct {
    uint8_t b[16];
} fs_uuid;

/* Makes a new id. Thread-safe. Returns 0, or -1 if no randomness could be read. */
int fs_uuid7_new(fs_uuid *out);
/* Formats into out (at least FS_UUID_STR_LEN + 1 bytes). */
void fs_uuid_format(const fs_uuid *id, char *out);
/* Parses the canonical text form (any case). Returns 0 or -1. */
int fs_uuid_parse(const char *s, fs_uuid *out);
/* Unix milliseconds encoded in a UUIDv7. */
uint64_t fs_uuid7_millis(const fs_uuid *id);
/* An id for the given Unix milliseconds (for tools that write history, and tests): the same
 * layout with a random counter; not ordered against fs_uuid7_new. Returns 0 or -1. */
int fs_uuid7_at(uint64_t ms, char out[FS_UUID_STR_LEN + 1]);
/* Unix milliseconds of a UUIDv7 in text form, or -1 if s is not one. */
int64_t fs_uuid7_str_millis(const char *s);
/* New id straight to text; returns 0 or -1. */
int fs_uuid7_str(char out[FS_UUID_STR_LEN + 1]);

/* n bytes from the kernel's CSPRNG (getrandom(2)), small requests (up to 64 bytes) served
 * from a per-thread buffer so that one system call covers many of them; a forked child
 * starts with an empty buffer (pthread_atfork). Returns 0, or -1 if the kernel refused (out
 * may then hold some bytes of a large request). */
int fs_random_bytes(void *out, size_t n);

/* Wall clock in Unix milliseconds, and a monotonic clock in milliseconds. */
int64_t fs_now_ms(void);
int64_t fs_mono_ms(void);
/* Monotonic clock in microseconds, for stage timing. */
double fs_mono_us(void);

#endif
