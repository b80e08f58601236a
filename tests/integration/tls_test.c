/* tls_test.c: TLS on the TCP transport, driven through libmqhub, raw
 * sockets, OpenSSL and `openssl s_client`. One hub with a plaintext port and
 * three TLS ports (tcp.so loaded three times): "tls" (no client
 * certificates, 1 s handshake timeout, small high_water), "mtls" (client
 * certificates required) and "otls" (a server certificate from another CA).
 * Checks: ping/send/receive over TLS; plaintext refused with one log line;
 * a server certificate from an unknown CA or for another name refused by the
 * client; client certificates missing, rogue or good; TLS 1.1 refused, 1.2
 * and 1.3 accepted; a silent client closed after the handshake timeout; a
 * client that never reads leaves the server's memory bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "mqhub/client.h"
#include "testhub.h"
#include "tls_pki.h"

static const char *mqhubd_path;
static testhub_t hub;
static tls_pki_t pki;
static uint16_t tls_port, mtls_port, otls_port;
static char tls_addr[64], mtls_addr[64], otls_addr[64];
static char ca[300], other_ca[300], client_pem[300], client_key[300], rogue_pem[300],
    rogue_key[300];

static int setup(void **state)
{
    char a[1024], b[1024], c[1024], extra[3200];
    uint16_t taken[3];
    if (tls_pki_make(&pki) != 0)
        return -1;
    tls_pki_path(&pki, "ca.pem", ca, sizeof ca);
    tls_pki_path(&pki, "other-ca.pem", other_ca, sizeof other_ca);
    tls_pki_path(&pki, "client.pem", client_pem, sizeof client_pem);
    tls_pki_path(&pki, "client.key", client_key, sizeof client_key);
    tls_pki_path(&pki, "rogue.pem", rogue_pem, sizeof rogue_pem);
    tls_pki_path(&pki, "rogue.key", rogue_key, sizeof rogue_key);
    taken[0] = tls_port = testhub_free_port(NULL, 0);
    taken[1] = mtls_port = testhub_free_port(taken, 1);
    otls_port = testhub_free_port(taken, 2);
    snprintf(tls_addr, sizeof tls_addr, "127.0.0.1:%u", tls_port);
    snprintf(mtls_addr, sizeof mtls_addr, "127.0.0.1:%u", mtls_port);
    snprintf(otls_addr, sizeof otls_addr, "127.0.0.1:%u", otls_port);
    tls_pki_transport(&pki, "tls", tls_port, "server",
                      "tls_handshake_timeout = 1, high_water = 65536", a, sizeof a);
    snprintf(extra, sizeof extra, "tls_ca = \"%s\", tls_client_certs = \"required\"", ca);
    tls_pki_transport(&pki, "mtls", mtls_port, "server", extra, b, sizeof b);
    tls_pki_transport(&pki, "otls", otls_port, "other-server", "", c, sizeof c);
    snprintf(extra, sizeof extra, "%s%s%s", a, b, c);
    testhub_opts_t o = {.extra_config = extra};
    return testhub_start(&hub, mqhubd_path, &o);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    tls_pki_cleanup(&pki);
    return 0;
}

/* Connect to @addr with TLS (@cafile, optional client @cert/@key): the
 * code, the sentence in @err. */
static int tls_connect(mqhub_client_t **c, const char *addr, const char *cafile,
                       const char *cert, const char *key, char *err, size_t errlen)
{
    mqhub_client_opts_t o = {.timeout_ms = 5000, .tls = true, .tls_ca = cafile,
                             .tls_cert = cert, .tls_key = key};
    err[0] = '\0';
    return mqhub_client_connect(c, addr, &o, err, errlen);
}

static void test_ping_send_receive(void **state)
{
    mqhub_client_t *c;
    mqhub_receive_opts_t ro = {.max = 1, .wait = 1, .visibility = 30};
    mqhub_msg_list_t l;
    char err[512];
    assert_int_equal(tls_connect(&c, tls_addr, ca, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(mqhub_client_ping(c), 0);
    assert_int_equal(mqhub_client_queue_create(c, "tls-q", NULL), 0);
    /* a body larger than one TLS record (16 KiB) */
    static char body[60000];
    memset(body, 'b', sizeof body);
    assert_int_equal(mqhub_client_send(c, "tls-q", body, sizeof body, NULL, NULL), 0);
    assert_int_equal(mqhub_client_receive(c, "tls-q", &ro, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.msgs[0].body_len, sizeof body);
    assert_memory_equal(l.msgs[0].body, body, sizeof body);
    mqhub_msg_list_free(&l);
    mqhub_client_close(c);
}

static void test_plaintext_refused(void **state)
{
    mqhub_client_t *c;
    char err[256], log[400], line[2048];
    /* libmqhub without TLS: the first request fails, the connection is closed */
    assert_int_equal(mqhub_client_connect(&c, tls_addr, NULL, err, sizeof err), 0);
    assert_int_equal(mqhub_client_ping(c), MQHUB_ECONN);
    mqhub_client_close(c);
    /* a raw frame: closed at once */
    int fd = testhub_connect_port(tls_port);
    assert_true(fd >= 0);
    assert_int_equal(testhub_write_frame(fd, "\x81\xa2op\xa4ping", 9), 0);
    assert_true(testhub_closed(fd, 2000));
    close(fd);
    /* the server said why, once a second at most */
    snprintf(log, sizeof log, "%s/mqhubd.log", hub.dir);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    int said = 0;
    while (fgets(line, sizeof line, f))
        said += strstr(line, "refused: wrong version number (not TLS") != NULL;
    fclose(f);
    assert_true(said >= 1 && said <= 2);
}

static void test_server_from_other_ca(void **state)
{
    mqhub_client_t *c = NULL;
    char err[512];
    assert_int_equal(tls_connect(&c, otls_addr, ca, NULL, NULL, err, sizeof err), MQHUB_ECONN);
    assert_null(c);
    assert_non_null(strstr(err, "certificate verify failed"));
    /* the system's CAs do not know the test CA either */
    assert_int_equal(tls_connect(&c, tls_addr, NULL, NULL, NULL, err, sizeof err), MQHUB_ECONN);
    assert_non_null(strstr(err, "certificate verify failed"));
    /* with its own CA it is fine */
    assert_int_equal(tls_connect(&c, otls_addr, other_ca, NULL, NULL, err, sizeof err), 0);
    mqhub_client_close(c);
}

static void test_server_name_checked(void **state)
{
    mqhub_client_t *c = NULL;
    char err[512] = "";
    mqhub_client_opts_t o = {.timeout_ms = 5000, .tls_ca = ca,
                             .tls_server_name = "mqhub.example"};
    assert_int_equal(mqhub_client_connect(&c, tls_addr, &o, err, sizeof err), MQHUB_ECONN);
    assert_non_null(strstr(err, "hostname mismatch"));
}

static void test_client_certs(void **state)
{
    mqhub_client_t *c = NULL;
    char err[512];
    assert_int_equal(tls_connect(&c, mtls_addr, ca, NULL, NULL, err, sizeof err), MQHUB_ECONN);
    assert_non_null(strstr(err, "certificate required"));
    assert_int_equal(tls_connect(&c, mtls_addr, ca, rogue_pem, rogue_key, err, sizeof err),
                     MQHUB_ECONN);
    assert_non_null(strstr(err, "unknown ca"));
    /* a key that does not match the certificate: refused before connecting */
    assert_int_equal(tls_connect(&c, mtls_addr, ca, client_pem, rogue_key, err, sizeof err),
                     MQHUB_ECONN);
    assert_non_null(strstr(err, "key"));
    assert_int_equal(tls_connect(&c, mtls_addr, ca, client_pem, client_key, err, sizeof err), 0);
    assert_int_equal(mqhub_client_ping(c), 0);
    mqhub_client_close(c);
}

/* `openssl s_client` with @flags against the TLS port: its exit status. */
static int s_client(const char *flags)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "openssl s_client -connect %s -CAfile %s -verify_return_error "
             "%s </dev/null >/dev/null 2>&1", tls_addr, ca, flags);
    return system(cmd);
}

static void test_tls12_minimum(void **state)
{
    /* SECLEVEL=0: let this OpenSSL offer TLS 1.1, so the server is the one refusing */
    assert_int_not_equal(s_client("-tls1_1 -cipher DEFAULT@SECLEVEL=0"), 0);
    assert_int_not_equal(s_client("-tls1 -cipher DEFAULT@SECLEVEL=0"), 0);
    assert_int_equal(s_client("-tls1_2"), 0);
    assert_int_equal(s_client("-tls1_3"), 0);
}

static void test_handshake_timeout(void **state)
{
    int fd = testhub_connect_port(tls_port);
    assert_true(fd >= 0);
    uint64_t t0 = testhub_now_ms();
    assert_true(testhub_closed(fd, 5000));
    assert_true(testhub_now_ms() - t0 >= 900);
    close(fd);
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* How much the hub's RSS may grow in test_never_reads: what it holds is
 * bounded by high_water (64 KiB) and max_inflight; the rest is allocator
 * slack. Under ASan, freed memory waits in a quarantine (kept small for the
 * hub by main()) and every block has redzones. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_GROWTH_MAX_KIB (96 * 1024)
#else
#define RSS_GROWTH_MAX_KIB (32 * 1024)
#endif

/* A TLS client that pipelines pings as fast as the server takes them and
 * never reads an answer: the server stops reading it (high_water 64 KiB)
 * instead of queueing replies without end. Without that, the writes would
 * not stall and the replies would pile up in the hub. */
static void test_never_reads(void **state)
{
    /* ping {op, id} as one frame: 4-byte length 13, then the map */
    static const char ping[] = "\x00\x00\x00\x0d\x82\xa2op\xa4ping\xa2id\x01";
    char batch[256 * (sizeof ping - 1)];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int fd = testhub_connect_port(tls_port);
    assert_true(fd >= 0);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    assert_int_equal(SSL_connect(ssl), 1);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    for (size_t i = 0; i < sizeof batch; i += sizeof ping - 1)
        memcpy(batch + i, ping, sizeof ping - 1);

    long before = rss_kib(hub.pid);
    /* until the writes stall for 1.5 s (slow hubs, e.g. under ASan, take longer) */
    uint64_t written = 0, t_end = testhub_now_ms() + 30000, last_progress = testhub_now_ms();
    while (testhub_now_ms() < t_end && testhub_now_ms() - last_progress < 1500) {
        int w = SSL_write(ssl, batch, sizeof batch);
        if (w > 0) {
            written += (uint64_t)w;
            last_progress = testhub_now_ms();
        } else {
            testhub_sleep_ms(5);
        }
    }
    long after = rss_kib(hub.pid);
    fprintf(stderr, "never-reads: wrote %llu bytes of pings; server RSS %ld -> %ld KiB\n",
            (unsigned long long)written, before, after);
    assert_true(written > 0);
    /* the writes stalled: the server stopped reading */
    assert_true(testhub_now_ms() - last_progress >= 1500);
    assert_true(after - before < RSS_GROWTH_MAX_KIB);
    /* and it still serves others */
    mqhub_client_t *c;
    char err[512];
    assert_int_equal(tls_connect(&c, tls_addr, ca, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(mqhub_client_ping(c), 0);
    mqhub_client_close(c);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
}

/* Under ASan the hub's quarantine of freed memory (256 MiB by default)
 * would be counted as growth: keep it at 16 MiB for the hub this test runs. */
static void small_quarantine(void)
{
#if defined(__SANITIZE_ADDRESS__)
    const char *old = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%squarantine_size_mb=16", old ? old : "",
             old && *old ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
#endif
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping_send_receive), cmocka_unit_test(test_plaintext_refused),
        cmocka_unit_test(test_server_from_other_ca), cmocka_unit_test(test_server_name_checked),
        cmocka_unit_test(test_client_certs),      cmocka_unit_test(test_tls12_minimum),
        cmocka_unit_test(test_handshake_timeout), cmocka_unit_test(test_never_reads),
    };
    mqhubd_path = testhub_binary(argc, argv);
    small_quarantine();
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
