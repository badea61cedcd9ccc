/* Decision replies (fs/reply.h): a datagram sent over loopback parses back to the same
 * token, partition and event bytes; anything else (wrong magic, short, bad token, bad
 * address) is refused, never half-parsed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/reply.h"

#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *TOKEN = "0123456789abcdef0123456789abcdef";

static void test_roundtrip_over_loopback(void **state)
{
    (void)state;
    fs_err err = {0};
    char bound[64];
    int fd = fs_reply_listen("127.0.0.1", bound, sizeof bound, &err);
    assert_true(fd >= 0);
    assert_non_null(strstr(bound, "127.0.0.1:"));
    fs_reply_sender *s = fs_reply_sender_new(&err);
    assert_non_null(s);
    const unsigned char ev[] = {0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x42, 0x00, 0xff};
    for (int i = 0; i < 3; i++) /* the second and third use the cached address */
        assert_int_equal(fs_reply_send(s, bound, TOKEN, 5 + i, ev, sizeof ev), 0);
    for (int i = 0; i < 3; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 2000), 1);
        unsigned char buf[FS_REPLY_MAX];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        assert_true(n > 0);
        char token[FS_REPLY_TOKEN_LEN + 1];
        int32_t part = -1;
        const void *got;
        size_t len = 0;
        assert_int_equal(fs_reply_parse(buf, (size_t)n, token, &part, &got, &len), 0);
        assert_string_equal(token, TOKEN);
        assert_int_equal(part, 5 + i);
        assert_int_equal(len, sizeof ev);
        assert_memory_equal(got, ev, sizeof ev);
    }
    fs_reply_sender_destroy(s);
    fs_reply_sender_destroy(NULL);
    close(fd);
}

static void test_refusals(void **state)
{
    (void)state;
    fs_err err = {0};
    fs_reply_sender *s = fs_reply_sender_new(&err);
    const char ev[] = "x";
    assert_int_equal(fs_reply_send(s, "127.0.0.1:1", "short", 0, ev, 1), -1);
    assert_int_equal(fs_reply_send(s, "127.0.0.1:1", "0123456789ABCDEF0123456789abcdef", 0, ev, 1), -1);
    assert_int_equal(fs_reply_send(s, "not-an-address", TOKEN, 0, ev, 1), -1);
    assert_int_equal(fs_reply_send(s, "127.0.0.1:99999", TOKEN, 0, ev, 1), -1);
    assert_int_equal(fs_reply_send(s, "localhost:80", TOKEN, 0, ev, 1), -1); /* IPv4 literals only */
    static char big[FS_REPLY_MAX];
    assert_int_equal(fs_reply_send(s, "127.0.0.1:1", TOKEN, 0, big, sizeof big), -1);
    fs_reply_sender_destroy(s);

    char token[FS_REPLY_TOKEN_LEN + 1];
    int32_t part;
    const void *got;
    size_t len;
    unsigned char d[64];
    memcpy(d, "FSR1", 4);
    memcpy(d + 4, TOKEN, 32);
    memset(d + 36, 0, 4);
    d[40] = 0xc3;
    assert_int_equal(fs_reply_parse(d, 41, token, &part, &got, &len), 0);
    assert_int_equal(len, 1);
    assert_int_equal(fs_reply_parse(d, 40, token, &part, &got, &len), -1); /* no event */
    d[0] = 'X';
    assert_int_equal(fs_reply_parse(d, 41, token, &part, &got, &len), -1); /* magic */
    d[0] = 'F';
    d[10] = 'Z';
    assert_int_equal(fs_reply_parse(d, 41, token, &part, &got, &len), -1); /* token */
    assert_true(fs_reply_listen("localhost", (char[64]){0}, 64, &err) < 0);
    assert_int_equal(err.cls, FS_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_over_loopback),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
