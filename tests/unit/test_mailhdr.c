/* Mail header values: printable ASCII kept; CR/LF and other controls can never end a header
 * line; UTF-8 text RFC 2047 encoded in words of at most 75 characters, never splitting a
 * character; too small an output refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/mailhdr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* decodes one "=?UTF-8?B?...?=" word (test helper, independent of the encoder) */
static size_t decode_word(const char *w, size_t len, unsigned char *out)
{
    static const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert_true(len > 12 && !strncmp(w, "=?UTF-8?B?", 10) && !strncmp(w + len - 2, "?=", 2));
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 10; i < len - 2; i++) {
        if (w[i] == '=')
            break;
        const char *p = strchr(alpha, w[i]);
        assert_non_null(p);
        acc = acc << 6 | (unsigned)(p - alpha);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    return n;
}

/* decodes a whole encoded value (words separated by CRLF SP) */
static void decode_all(const char *enc, char *out)
{
    size_t n = 0;
    const char *p = enc;
    while (*p) {
        const char *end = strstr(p, "\r\n ");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        assert_true(len <= 64); /* "Subject: " + a word stays within 76 */
        n += decode_word(p, len, (unsigned char *)out + n);
        /* each word alone is valid UTF-8: it never ends inside a character */
        p = end ? end + 3 : p + len;
    }
    out[n] = '\0';
}

static void test_plain_kept(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(fs_mail_header_value("Your flashsale verification code: 123456", out, sizeof out), 0);
    assert_string_equal(out, "Your flashsale verification code: 123456");
    assert_int_equal(fs_mail_header_value("", out, sizeof out), 0);
    assert_string_equal(out, "");
}

static void test_injection_neutralised(void **state)
{
    (void)state;
    char out[512], back[512];
    const char *evil = "Back in stock: shoes\r\nBcc: everyone@example.com\r\n\r\nfree money";
    assert_int_equal(fs_mail_header_value(evil, out, sizeof out), 0);
    /* the only CR/LF left are folds followed by a space: no new header, no body */
    for (const char *p = out; (p = strstr(p, "\r\n")); p += 2)
        assert_int_equal(p[2], ' ');
    assert_null(strstr(out, "Bcc:"));
    decode_all(out, back);
    assert_string_equal(back, "Back in stock: shoes  Bcc: everyone@example.com    free money");
}

static void test_utf8_encoded(void **state)
{
    (void)state;
    char out[1024], back[1024];
    const char *name = "재입고: 한정판 운동화 — 선착순 100켤레, 오늘 단 하루! Limited sneakers";
    assert_int_equal(fs_mail_header_value(name, out, sizeof out), 0);
    assert_non_null(strstr(out, "\r\n ")); /* long: folded into several words */
    decode_all(out, back);
    assert_string_equal(back, name);
    /* every word decodes to whole characters: no word starts with a continuation byte */
    const char *p = out;
    while (p) {
        unsigned char w[64];
        const char *end = strstr(p, "\r\n ");
        size_t n = decode_word(p, end ? (size_t)(end - p) : strlen(p), w);
        assert_true(n > 0 && (w[0] & 0xc0) != 0x80);
        p = end ? end + 3 : NULL;
    }
}

static void test_too_small(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(fs_mail_header_value("a value longer than sixteen", out, sizeof out), -1);
    assert_string_equal(out, "");
    assert_int_equal(fs_mail_header_value("한정판 운동화", out, sizeof out), -1);
    assert_string_equal(out, "");
    assert_int_equal(fs_mail_header_value("x", out, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_kept),
        cmocka_unit_test(test_injection_neutralised),
        cmocka_unit_test(test_utf8_encoded),
        cmocka_unit_test(test_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
