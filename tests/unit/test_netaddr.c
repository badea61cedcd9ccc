/* Client addresses behind proxies: trusted-proxy lists (addresses, CIDR ranges, IPv6,
 * IPv4-mapped IPv6, bad entries) and the X-Forwarded-For walk (forged headers from untrusted
 * peers ignored, trusted hops skipped, garbage ends the walk). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/netaddr.h"

#include <string.h>

static void test_parse(void **state)
{
    (void)state;
    fs_addr_list l;
    fs_err err = {0};
    assert_int_equal(fs_addr_list_parse("127.0.0.1, 10.0.0.0/8 ::1,fd00::/8", &l, &err), 0);
    assert_int_equal(l.n, 4);
    assert_true(fs_addr_list_has(&l, "127.0.0.1"));
    assert_false(fs_addr_list_has(&l, "127.0.0.2"));
    assert_true(fs_addr_list_has(&l, "10.200.3.4"));
    assert_false(fs_addr_list_has(&l, "11.0.0.1"));
    assert_true(fs_addr_list_has(&l, "::1"));
    assert_true(fs_addr_list_has(&l, "fd12:3456::1"));
    assert_false(fs_addr_list_has(&l, "fe80::1"));
    assert_true(fs_addr_list_has(&l, "::ffff:127.0.0.1")); /* mapped IPv4 is IPv4 */
    assert_false(fs_addr_list_has(&l, "not-an-address"));
    assert_false(fs_addr_list_has(&l, ""));
    assert_false(fs_addr_list_has(&l, NULL));

    assert_int_equal(fs_addr_list_parse("", &l, &err), 0);
    assert_int_equal(l.n, 0);
    assert_false(fs_addr_list_has(&l, "127.0.0.1"));
    assert_int_equal(fs_addr_list_parse(NULL, &l, &err), 0);
    assert_int_equal(fs_addr_list_parse("0.0.0.0/0", &l, &err), 0);
    assert_true(fs_addr_list_has(&l, "8.8.8.8"));
    assert_false(fs_addr_list_has(&l, "::1")); /* an IPv4 range holds no IPv6 address */

    assert_int_equal(fs_addr_list_parse("127.0.0.1 localhost", &l, &err), -1);
    assert_non_null(strstr(err.msg, "localhost"));
    assert_int_equal(fs_addr_list_parse("10.0.0.0/33", &l, &err), -1);
    assert_int_equal(fs_addr_list_parse("10.0.0.0/", &l, &err), -1);
    assert_int_equal(fs_addr_list_parse("10.0.0.0/8x", &l, &err), -1);
    assert_int_equal(fs_addr_list_parse("::/129", &l, &err), -1);
    char many[40 * 12] = "";
    for (int i = 0; i < 40; i++)
        strcat(many, "10.0.0.1 ");
    assert_int_equal(fs_addr_list_parse(many, &l, &err), -1);
}

static void test_client(void **state)
{
    (void)state;
    fs_addr_list t;
    fs_err err = {0};
    char out[FS_ADDR_STR_MAX];
    assert_int_equal(fs_addr_list_parse("127.0.0.1 10.0.0.0/8", &t, &err), 0);

    /* no header, or an untrusted peer: the peer, whatever the header says */
    assert_false(fs_client_addr(&t, "127.0.0.1", NULL, out, sizeof out));
    assert_string_equal(out, "127.0.0.1");
    assert_false(fs_client_addr(&t, "203.0.113.9", "198.51.100.1", out, sizeof out));
    assert_string_equal(out, "203.0.113.9");
    assert_false(fs_client_addr(&t, "127.0.0.2", "198.51.100.1", out, sizeof out));
    assert_string_equal(out, "127.0.0.2");

    /* from the edge: the address it saw */
    assert_true(fs_client_addr(&t, "127.0.0.1", "198.51.100.7", out, sizeof out));
    assert_string_equal(out, "198.51.100.7");
    /* a client-written prefix is not believed: the rightmost untrusted entry wins */
    assert_true(fs_client_addr(&t, "127.0.0.1", "1.2.3.4, 198.51.100.7", out, sizeof out));
    assert_string_equal(out, "198.51.100.7");
    /* trusted hops (a load balancer in 10/8 before the edge) are skipped */
    assert_true(fs_client_addr(&t, "127.0.0.1", "1.2.3.4,198.51.100.7 , 10.1.1.1", out, sizeof out));
    assert_string_equal(out, "198.51.100.7");
    /* every entry trusted: the leftmost (the client is itself one of ours) */
    assert_true(fs_client_addr(&t, "127.0.0.1", "127.0.0.1", out, sizeof out));
    assert_string_equal(out, "127.0.0.1");
    assert_true(fs_client_addr(&t, "127.0.0.1", "10.0.0.5, 10.0.0.6", out, sizeof out));
    assert_string_equal(out, "10.0.0.5");
    /* garbage ends the walk: what was good to its right stands, else the peer */
    assert_true(fs_client_addr(&t, "127.0.0.1", "198.51.100.1, junk, 10.0.0.6", out, sizeof out));
    assert_string_equal(out, "10.0.0.6");
    assert_false(fs_client_addr(&t, "127.0.0.1", "junk", out, sizeof out));
    assert_string_equal(out, "127.0.0.1");
    assert_false(fs_client_addr(&t, "127.0.0.1", " , ", out, sizeof out));
    assert_string_equal(out, "127.0.0.1");
    assert_true(fs_client_addr(&t, "127.0.0.1", "2001:db8::1", out, sizeof out));
    assert_string_equal(out, "2001:db8::1");
    char longest[300];
    memset(longest, '1', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    assert_false(fs_client_addr(&t, "127.0.0.1", longest, out, sizeof out));
    assert_string_equal(out, "127.0.0.1");

    /* nothing trusted: the header never counts */
    fs_addr_list none;
    assert_int_equal(fs_addr_list_parse("", &none, &err), 0);
    assert_false(fs_client_addr(&none, "127.0.0.1", "198.51.100.7", out, sizeof out));
    assert_string_equal(out, "127.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
