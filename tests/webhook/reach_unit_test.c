/* reach_unit_test.c: the webhook plugin's reach control (plugins/webhook/
 * reach.c) on its own: parsing allow_networks / deny_networks (good blocks,
 * hostile ones refused with the key named) and the verdict for IPv4, IPv6
 * and IPv4-mapped addresses. The daemon-level behaviour (a POST refused on
 * the address curl connects to) is webhook_reach_test.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "reach.h"

/* @text as a socket address (IPv4 or IPv6). */
static bool allowed(const reach_t *r, const char *text)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ss.ss_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
        ss.ss_family = AF_INET6;
    }
    return reach_allowed(r, (struct sockaddr *)&ss);
}

static void test_default(void **state)
{
    reach_t r;
    char err[256];

    (void)state;
    assert_int_equal(reach_parse(&r, NULL, NULL, err, sizeof err), 0);
    assert_false(allowed(&r, "169.254.169.254"));   /* cloud metadata */
    assert_false(allowed(&r, "169.254.0.1"));
    assert_false(allowed(&r, "::ffff:169.254.169.254"));
    assert_false(allowed(&r, "fe80::1"));
    assert_false(allowed(&r, "febf:ffff::1"));
    assert_false(allowed(&r, "0.0.0.0"));
    assert_true(allowed(&r, "127.0.0.1"));           /* self-hosted: internal services */
    assert_true(allowed(&r, "10.1.2.3"));
    assert_true(allowed(&r, "169.255.0.1"));
    assert_true(allowed(&r, "fec0::1"));
    assert_true(allowed(&r, "::1"));
    assert_true(allowed(&r, "93.184.216.34"));
    reach_free(&r);
}

static void test_deny_and_allow(void **state)
{
    reach_t r;
    char err[256];

    (void)state;
    /* deny_networks replaces the default list; deny wins over allow. */
    assert_int_equal(reach_parse(&r, " 10.0.0.0/8 , 127.0.0.0/8,2001:db8::/32",
                                 "127.0.0.0/8,::1", err, sizeof err), 0);
    assert_false(allowed(&r, "127.0.0.1"));
    assert_false(allowed(&r, "::ffff:127.0.0.1"));
    assert_false(allowed(&r, "::1"));
    assert_true(allowed(&r, "10.255.255.255"));
    assert_false(allowed(&r, "11.0.0.0"));
    assert_true(allowed(&r, "2001:db8:1::5"));
    assert_false(allowed(&r, "2001:db9::5"));
    assert_false(allowed(&r, "169.254.169.254")); /* outside allow */
    reach_free(&r);
    /* deny_networks = "": nothing denied; /0 blocks; odd prefix lengths. */
    assert_int_equal(reach_parse(&r, "192.168.1.128/25,0.0.0.0/0", "", err, sizeof err), 0);
    assert_true(allowed(&r, "169.254.169.254"));
    assert_false(allowed(&r, "fe80::1")); /* an IPv4 /0 is not every IPv6 address */
    reach_free(&r);
    assert_int_equal(reach_parse(&r, "192.168.1.128/25", "", err, sizeof err), 0);
    assert_true(allowed(&r, "192.168.1.200"));
    assert_false(allowed(&r, "192.168.1.127"));
    reach_free(&r);
    assert_int_equal(reach_parse(&r, NULL, "::/0", err, sizeof err), 0);
    assert_false(allowed(&r, "8.8.8.8"));
    assert_false(allowed(&r, "2001:db8::1"));
    reach_free(&r);
}

static void test_refused_family(void **state)
{
    reach_t r;
    char err[256];
    struct sockaddr sa = {.sa_family = AF_UNIX};

    (void)state;
    assert_int_equal(reach_parse(&r, NULL, "", err, sizeof err), 0);
    assert_false(reach_allowed(&r, &sa));
    reach_free(&r);
}

static void bad(const char *allow, const char *deny, const char *want)
{
    reach_t r;
    char err[256] = "";

    assert_int_equal(reach_parse(&r, allow, deny, err, sizeof err), -1);
    if (strstr(err, want) == NULL)
        fail_msg("want \"%s\" in \"%s\"", want, err);
}

static void test_hostile_config(void **state)
{
    char long_block[300];

    (void)state;
    memset(long_block, '1', sizeof long_block - 1);
    long_block[sizeof long_block - 1] = '\0';
    bad("10.0.0.0/33", NULL, "allow_networks: bad network \"10.0.0.0/33\"");
    bad(NULL, "fe80::/129", "deny_networks: bad network \"fe80::/129\"");
    bad("10.0.0.1/8", NULL, "allow_networks: bad network \"10.0.0.1/8\""); /* host bits */
    bad("10.0.0.0/", NULL, "allow_networks");
    bad("10.0.0.0/-1", NULL, "allow_networks");
    bad("10.0.0.0/+8", NULL, "allow_networks");
    bad("10.0.0.0/8x", NULL, "allow_networks");
    bad("10.0.0/8", NULL, "allow_networks");
    bad("localhost", NULL, "allow_networks: bad network \"localhost\"");
    bad("10.0.0.0/8,,fd00::/8", NULL, "allow_networks: bad network \"\"");
    bad(" ", NULL, "allow_networks");
    bad(NULL, long_block, "deny_networks: bad network");
    bad(NULL, "fe80::1%eth0", "deny_networks");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_deny_and_allow),
        cmocka_unit_test(test_refused_family),
        cmocka_unit_test(test_hostile_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
