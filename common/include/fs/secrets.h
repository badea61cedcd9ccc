/* Personal data sealed at rest and the key it is sealed under (libsodium).
 *
 * FLASHSALE_PII_KEY: 64 hexadecimal characters (32 bytes), from the environment, never
 * logged. A value is sealed with XChaCha20-Poly1305 (random 24-byte nonce || ciphertext ||
 * tag), the member id and the field name authenticated as associated data, so a sealed value
 * copied to another member or field does not open. */
#ifndef FS_SECRETS_H
#define FS_SECRETS_H
#include "fs/err.h"

#include <stddef.h>

#define FS_PII_KEY_BYTES 32

/* Reads FLASHSALE_PII_KEY into key (initialises libsodium). Returns 0 or -1 with *err. */
int fs_pii_key_load(unsigned char key[FS_PII_KEY_BYTES], fs_err *err);
/* *out malloc'd. Returns 0 or -1 (out of memory). */
int fs_seal(const unsigned char *key, const char *member_id, const char *field, const char *text,
            unsigned char **out, size_t *len);
/* A malloc'd string, or NULL when tampered with, moved, or sealed under another key. */
char *fs_open(const unsigned char *key, const char *member_id, const char *field,
              const unsigned char *in, size_t len);

#endif
