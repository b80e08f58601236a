/* peer_tls_test.c: three real mqhubd nodes with peer TLS (node.peer_tls_*,
 * core/raft/peer_tls.c; a throwaway PKI from tests/integration/tls_pki.c).
 * They elect a leader and commit; a producer sends numbered messages while
 * the test kills the leader (kill -9) twice and restarts it; afterwards
 * every acknowledged send is received exactly where it should be (none
 * lost) and the nodes' state digests agree. Every node logs that its raft
 * port requires TLS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testclient.h"
#include "testcluster.h"
#include "testhub.h"
#include "tls_pki.h"

#define QUEUE "orders"
#define SENDS 600
#define KILL_AT 150 /* and 2 * KILL_AT */

static const char *g_mqhubd;
static testcluster_t g_cluster;
static tls_pki_t g_pki;

/* Kill the leader with SIGKILL, wait for another one, start it again. */
static void kill_leader(testcluster_t *c)
{
    int old = testcluster_leader(c, 10000);
    assert_true(old >= 0);
    testcluster_kill(c, (unsigned)old);
    uint64_t t0 = testcluster_now_ms();
    int now = testcluster_leader(c, 15000);
    assert_true(now >= 0 && now != old);
    printf("node %d killed, node %d leads after %llu ms\n", old + 1, now + 1,
           (unsigned long long)(testcluster_now_ms() - t0));
    assert_int_equal(testcluster_start_node(c, (unsigned)old), 0);
}

/* Receive and delete until the queue stays empty; @seen counts each body. */
static void drain(mqhub_client_t *cl, unsigned *seen)
{
    mqhub_receive_opts_t ro = {.max = 64, .wait = 1, .visibility = 30};
    for (int empty = 0; empty < 3;) {
        mqhub_msg_list_t ml;
        const char *receipts[64];
        int st[64];
        if (mqhub_client_receive(cl, QUEUE, &ro, &ml) != 0) {
            testhub_sleep_ms(200);
            continue;
        }
        empty = ml.n == 0 ? empty + 1 : 0;
        for (size_t i = 0; i < ml.n; i++) {
            unsigned n = (unsigned)strtoul((char *)ml.msgs[i].body + 8, NULL, 10);
            if (n < SENDS)
                seen[n]++;
            receipts[i] = ml.msgs[i].receipt;
        }
        if (ml.n)
            mqhub_client_delete(cl, QUEUE, receipts, ml.n, st);
        mqhub_msg_list_free(&ml);
    }
}

static void test_peer_tls_failover(void **state)
{
    char extra[2048], cert[300], key[300], ca[300];
    static bool acked[SENDS];
    static unsigned seen[SENDS];
    unsigned n_acked = 0, lost = 0;

    assert_int_equal(tls_pki_make(&g_pki), 0);
    snprintf(extra, sizeof extra,
             "node { peer_tls_cert = \"%s\", peer_tls_key = \"%s\", peer_tls_ca = \"%s\" }\n"
             "queue \"%s\" { visibility_timeout = 30 }",
             tls_pki_path(&g_pki, "server.pem", cert, sizeof cert),
             tls_pki_path(&g_pki, "server.key", key, sizeof key),
             tls_pki_path(&g_pki, "ca.pem", ca, sizeof ca), QUEUE);
    assert_int_equal(testcluster_start(&g_cluster, g_mqhubd, 3, 3, extra), 0);
    for (unsigned i = 0; i < 3; i++)
        assert_true(testcluster_log_count(&g_cluster, i,
                                          "inside TLS with a certificate of the cluster CA") > 0);

    mqhub_client_t *cl = testclient_connect(&g_cluster, 4000);
    assert_non_null(cl);
    mqhub_queue_info_t qi;
    for (int i = 0; i < 100 && mqhub_client_queue_get(cl, QUEUE, &qi) != 0; i++)
        testhub_sleep_ms(100);
    for (unsigned n = 0; n < SENDS; n++) {
        char body[32];
        if (n == KILL_AT || n == 2 * KILL_AT)
            kill_leader(&g_cluster);
        snprintf(body, sizeof body, "tls-msg-%u", n);
        if (mqhub_client_send(cl, QUEUE, body, strlen(body), NULL, NULL) == 0) {
            acked[n] = true;
            n_acked++;
        }
    }
    drain(cl, seen);
    mqhub_client_close(cl);
    for (unsigned n = 0; n < SENDS; n++)
        lost += acked[n] && seen[n] == 0;
    int conv = testcluster_converged(&g_cluster, 20000);
    printf("%u of %d sends acknowledged, %u of them lost; digests %s\n", n_acked, SENDS, lost,
           conv == 0 ? "equal" : "DIFFER");
    for (unsigned i = 0; i < 3; i++)
        if (testcluster_log_count(&g_cluster, i, "refused") > 0)
            printf("node %u logged a refused peer connection\n", i + 1);
    if (lost || conv)
        testcluster_dump_logs(&g_cluster);
    assert_true(n_acked > SENDS / 2);
    assert_int_equal(lost, 0);
    assert_int_equal(conv, 0);
}

/* Teardown, also after a failed assertion: no daemon outlives the test. */
static int stop_cluster(void **state)
{
    testcluster_cleanup(&g_cluster);
    tls_pki_cleanup(&g_pki);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_peer_tls_failover, stop_cluster)};
    g_mqhubd = getenv("MQHUBD");
    if ((!g_mqhubd || !*g_mqhubd) && argc > 1)
        g_mqhubd = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
