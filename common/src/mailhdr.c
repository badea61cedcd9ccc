/* Mail header values that cannot inject headers; see fs/mailhdr.h. */
#include "fs/mailhdr.h"

#include <stdbool.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Appends s (n bytes) to out at *at; false when it does not fit. */
static bool put(char *out, size_t outlen, size_t *at, const char *s, size_t n)
{
    if (*at + n >= outlen)
        return false;
    memcpy(out + *at, s, n);
    *at += n;
    out[*at] = '\0';
    return true;
}

static bool put_b64(char *out, size_t outlen, size_t *at, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < n ? b64[v >> 6 & 63] : '=',
                     i + 2 < n ? b64[v & 63] : '='};
        if (!put(out, outlen, at, q, 4))
            return false;
    }
    return true;
}

int fs_mail_header_value(const char *in, char *out, size_t outlen)
{
    if (!outlen)
        return -1;
    out[0] = '\0';
    size_t n = strlen(in);
    bool plain = true;
    for (size_t i = 0; i < n && plain; i++)
        plain = (unsigned char)in[i] >= 0x20 && (unsigned char)in[i] < 0x7f;
    size_t at = 0;
    if (plain)
        return put(out, outlen, &at, in, n) ? 0 : (out[0] = '\0', -1);
    /* 39 bytes of text -> 52 of base64 + 12 of "=?UTF-8?B?" "?=" = 64, so that even the first
     * line ("Subject: " + a word) stays within 76 characters; never split a
     * UTF-8 sequence across words */
    unsigned char word[40];
    size_t i = 0;
    while (i < n) {
        size_t w = 0;
        while (i < n) {
            unsigned char c = (unsigned char)in[i];
            size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 1;
            if (i + len > n)
                len = n - i;
            if (w + len > 39)
                break;
            for (size_t k = 0; k < len; k++) {
                unsigned char b = (unsigned char)in[i + k];
                word[w++] = b < 0x20 || b == 0x7f ? ' ' : b;
            }
            i += len;
        }
        if ((at && !put(out, outlen, &at, "\r\n ", 3)) || !put(out, outlen, &at, "=?UTF-8?B?", 10) ||
            !put_b64(out, outlen, &at, word, w) || !put(out, outlen, &at, "?=", 2)) {
            out[0] = '\0';
            return -1;
        }
    }
    return 0;
}
