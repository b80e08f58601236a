/* tls_cli_test.c: the mqhub CLI ($MQHUB_CLI) over TLS — --ca (and
 * MQHUB_CA), --tls, --cert/--key-file — against a hub with a TLS port and a
 * port that requires client certificates (the PKI of tls_pki.h). Failures
 * exit 3 and say what to do.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testcli.h"
#include "testhub.h"
#include "tls_pki.h"

static const char *mqhubd_path;
static testcli_t cli;
static testhub_t hub;
static tls_pki_t pki;
static char tls_addr[64], mtls_addr[64];
static char ca[300], client_pem[300], client_key[300];

static int setup(void **state)
{
    char a[1024], b[1024], extra[2400];
    uint16_t tls_port = testhub_free_port(NULL, 0);
    uint16_t mtls_port = testhub_free_port(&tls_port, 1);
    if (tls_pki_make(&pki) != 0)
        return -1;
    tls_pki_path(&pki, "ca.pem", ca, sizeof ca);
    tls_pki_path(&pki, "client.pem", client_pem, sizeof client_pem);
    tls_pki_path(&pki, "client.key", client_key, sizeof client_key);
    snprintf(tls_addr, sizeof tls_addr, "127.0.0.1:%u", tls_port);
    snprintf(mtls_addr, sizeof mtls_addr, "127.0.0.1:%u", mtls_port);
    tls_pki_transport(&pki, "tls", tls_port, "server", "", a, sizeof a);
    snprintf(extra, sizeof extra, "tls_ca = \"%s\"", ca); /* required by default */
    tls_pki_transport(&pki, "mtls", mtls_port, "server", extra, b, sizeof b);
    snprintf(extra, sizeof extra, "%s%s", a, b);
    testhub_opts_t o = {.extra_config = extra};
    return testhub_start(&hub, mqhubd_path, &o);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    tls_pki_cleanup(&pki);
    return 0;
}

static void test_ping_send_recv(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "--server", tls_addr, "--ca", ca, "ping", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "pong"));
    testcli_run(&cli, &r, NULL, "--server", tls_addr, "--ca", ca, "queue", "create", "tq", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, "over tls", "--server", tls_addr, "--ca", ca, "send", "tq", NULL);
    assert_int_equal(r.status, 0);
    /* MQHUB_CA instead of --ca, and --tls */
    setenv("MQHUB_CA", ca, 1);
    testcli_run(&cli, &r, NULL, "--server", tls_addr, "--tls", "recv", "tq", "--delete", NULL);
    unsetenv("MQHUB_CA");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "over tls"));
}

static void test_failures_say_what_to_do(void **state)
{
    testcli_run_t r;
    /* plaintext to the TLS port */
    testcli_run(&cli, &r, NULL, "--server", tls_addr, "ping", NULL);
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.err, "--tls"));
    /* TLS without the CA that signed the server's certificate */
    testcli_run(&cli, &r, NULL, "--server", tls_addr, "--tls", "ping", NULL);
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.err, "certificate verify failed"));
    assert_non_null(strstr(r.err, "--ca"));
    /* TLS to the plaintext port */
    testcli_run(&cli, &r, NULL, "--ca", ca, "ping", NULL);
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.err, "does not speak TLS"));
    /* a missing file */
    testcli_run(&cli, &r, NULL, "--server", tls_addr, "--ca", "/nonexistent.pem", "ping", NULL);
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.err, "/nonexistent.pem"));
}

static void test_client_certificate(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "--server", mtls_addr, "--ca", ca, "ping", NULL);
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.err, "--cert"));
    testcli_run(&cli, &r, NULL, "--server", mtls_addr, "--ca", ca, "--cert", client_pem,
                "--key-file", client_key, "ping", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "pong"));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping_send_recv),
        cmocka_unit_test(test_failures_say_what_to_do),
        cmocka_unit_test(test_client_certificate),
    };
    mqhubd_path = testhub_binary(argc, argv);
    cli.path = getenv("MQHUB_CLI");
    cli.hub = &hub;
    if (!mqhubd_path || !cli.path) {
        fprintf(stderr, "usage: MQHUB_CLI=mqhub %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
