/* Sealing personal data; see fs/secrets.h. */
#include "fs/secrets.h"
#include "fs/config.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fs_pii_key_load(unsigned char key[FS_PII_KEY_BYTES], fs_err *err)
{
    if (sodium_init() < 0)
        return fs_err_set(err, FS_ERR_FATAL, 0, "libsodium did not initialise");
    const char *hex;
    if (fs_env_secret("FLASHSALE_PII_KEY", 64, true, &hex, err))
        return -1;
    size_t n = 0;
    if (strlen(hex) != 64 || sodium_hex2bin(key, FS_PII_KEY_BYTES, hex, 64, NULL, &n, NULL) ||
        n != FS_PII_KEY_BYTES)
        return fs_err_set(err, FS_ERR_FATAL, 0,
                          "FLASHSALE_PII_KEY: must be 64 hexadecimal characters (32 bytes)");
    return 0;
}

static void ad_of(const char *member_id, const char *field, char *ad, size_t n)
{
    snprintf(ad, n, "%s|%s", member_id, field);
}

int fs_seal(const unsigned char *key, const char *member_id, const char *field, const char *text,
            unsigned char **out, size_t *len)
{
    size_t n = strlen(text);
    const size_t nb = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    unsigned char *buf = malloc(nb + n + crypto_aead_xchacha20poly1305_ietf_ABYTES);
    if (!buf)
        return -1;
    randombytes_buf(buf, nb);
    char ad[160];
    ad_of(member_id, field, ad, sizeof ad);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(buf + nb, &clen, (const unsigned char *)text, n,
                                               (const unsigned char *)ad, strlen(ad), NULL, buf, key);
    *out = buf;
    *len = nb + (size_t)clen;
    return 0;
}

char *fs_open(const unsigned char *key, const char *member_id, const char *field,
              const unsigned char *in, size_t len)
{
    const size_t nb = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    if (len < nb + crypto_aead_xchacha20poly1305_ietf_ABYTES)
        return NULL;
    char *out = malloc(len);
    if (!out)
        return NULL;
    char ad[160];
    ad_of(member_id, field, ad, sizeof ad);
    unsigned long long mlen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *)out, &mlen, NULL, in + nb, len - nb,
                                                   (const unsigned char *)ad, strlen(ad), in, key)) {
        free(out);
        return NULL;
    }
    out[mlen] = '\0';
    return out;
}
