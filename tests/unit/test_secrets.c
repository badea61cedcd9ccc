/* Sealed personal data: round trip; a sealed value moved to another member or field, altered,
 * truncated, or opened under another key does not open; the key's format is checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/secrets.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static void test_round_trip_and_tamper(void **state)
{
    (void)state;
    unsigned char key[FS_PII_KEY_BYTES], other[FS_PII_KEY_BYTES];
    assert_true(sodium_init() >= 0);
    randombytes_buf(key, sizeof key);
    randombytes_buf(other, sizeof other);
    unsigned char *s = NULL, *s2 = NULL;
    size_t n = 0, n2 = 0;
    assert_int_equal(fs_seal(key, "m-1", "name", "김민지 Kim", &s, &n), 0);
    assert_int_equal(fs_seal(key, "m-1", "name", "김민지 Kim", &s2, &n2), 0);
    assert_int_equal(n, n2);
    assert_memory_not_equal(s, s2, n); /* a fresh nonce every time */
    assert_null(memmem(s, n, "Kim", 3));
    char *t = fs_open(key, "m-1", "name", s, n);
    assert_non_null(t);
    assert_string_equal(t, "김민지 Kim");
    free(t);
    assert_null(fs_open(key, "m-2", "name", s, n));  /* another member's row */
    assert_null(fs_open(key, "m-1", "phone", s, n)); /* another field */
    assert_null(fs_open(other, "m-1", "name", s, n));
    assert_null(fs_open(key, "m-1", "name", s, n - 1));
    assert_null(fs_open(key, "m-1", "name", s, 10));
    s[n / 2] ^= 1;
    assert_null(fs_open(key, "m-1", "name", s, n));
    free(s);
    free(s2);
}

static void test_key_format(void **state)
{
    (void)state;
    unsigned char key[FS_PII_KEY_BYTES];
    fs_err err = {0};
    unsetenv("FLASHSALE_PII_KEY");
    assert_int_not_equal(fs_pii_key_load(key, &err), 0);
    setenv("FLASHSALE_PII_KEY", "zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 1);
    assert_int_not_equal(fs_pii_key_load(key, &err), 0);
    assert_null(strstr(err.msg, "zz2345")); /* never echoed */
    setenv("FLASHSALE_PII_KEY", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 1);
    assert_int_equal(fs_pii_key_load(key, &err), 0);
    assert_int_equal(key[0], 0x01);
    assert_int_equal(key[31], 0xef);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_tamper),
        cmocka_unit_test(test_key_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
