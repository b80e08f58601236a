/* install_hold_test.c: a follower that falls behind the leader's trailing
 * entries while it writes its own snapshot is sent an InstallSnapshot in
 * that window. raft 0.22.1 crashes on it once the snapshot is written
 * (legacy.c takeSnapshotCb starts a put of NULL); core/raft/snapshot.c
 * "Installs" holds the install until then.
 *
 * Three nodes, a 16 MiB queue (each snapshot's dump and write take a
 * while), a snapshot every 64 entries keeping 8, a producer of small
 * messages. A follower, as soon as its cluster.status shows a snapshot due
 * or being written (log_entries at the threshold: the count restarts when
 * the put is done), is stopped (SIGSTOP) for STOP_MS, long enough for the
 * leader to move its log past the follower's, and resumed; again until a
 * log says an install was held (at most ROUNDS or LOOP_MS). Every
 * node must still run, all digests end equal, and every node stops cleanly.
 */
#include <pthread.h>
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

#define QUEUE "big"
#define BODY 1024
#define FILL_MB 16
#define THRESHOLD 64
#define ROUNDS 60
#define LOOP_MS 100000 /* the rounds stop after this long, too */
#define STOP_MS 1500

static const char *g_mqhubd;
static testcluster_t g_cluster;

typedef struct load {
    testcluster_t *c;
    volatile int stop;
    unsigned long sent;
} load_t;

static void *produce(void *arg)
{
    load_t *l = arg;
    mqhub_client_t *cl = testclient_connect(l->c, 10000);
    while (cl && !l->stop) {
        if (mqhub_client_send(cl, QUEUE, "x", 1, NULL, NULL) == 0)
            l->sent++;
        testhub_sleep_ms(1);
    }
    mqhub_client_close(cl);
    return NULL;
}

/* Wait (at most 5 s) until node @i has a snapshot due or being written. */
static bool snapshot_writing(testcluster_t *c, unsigned i)
{
    mqhub_client_opts_t o = {.timeout_ms = 2000};
    mqhub_client_t *fc = NULL;
    mqhub_cluster_status_t st;
    mqhub_cluster_raft_t raft = {0};
    bool writing = false;
    if (mqhub_client_connect(&fc, c->nodes[i].address, &o, NULL, 0) != 0)
        return false;
    for (uint64_t until = testcluster_now_ms() + 5000; !writing && testcluster_now_ms() < until;)
        writing = mqhub_client_cluster_status_raft(fc, false, &st, &raft) == 0 &&
                  raft.log_entries >= THRESHOLD;
    mqhub_client_close(fc);
    return writing;
}

static void test_install_during_snapshot(void **state)
{
    (void)state;
    char config[96];
    snprintf(config, sizeof config, "snapshot { threshold = %d, trailing = 8, growth = 0 }",
             THRESHOLD);
    assert_int_equal(testcluster_start(&g_cluster, g_mqhubd, 3, 3, config), 0);
    mqhub_client_t *cl = testclient_connect(&g_cluster, 10000);
    assert_non_null(cl);
    assert_int_equal(mqhub_client_queue_create(cl, QUEUE, NULL), 0);
    testclient_fill(cl, QUEUE, (uint64_t)FILL_MB * 1024 * 1024 / BODY, BODY);
    load_t l = {.c = &g_cluster};
    pthread_t producer;
    pthread_create(&producer, NULL, produce, &l);

    unsigned rounds = 0, holds = 0;
    bool alive = true;
    uint64_t until = testcluster_now_ms() + LOOP_MS;
    while (rounds < ROUNDS && testcluster_now_ms() < until && holds == 0 && alive) {
        int leader = testcluster_leader(&g_cluster, 20000);
        assert_true(leader >= 0);
        unsigned f = ((unsigned)leader + 1 + rounds % 2) % 3;
        if (snapshot_writing(&g_cluster, f)) {
            testcluster_pause(&g_cluster, f);
            testhub_sleep_ms(STOP_MS);
            testcluster_resume(&g_cluster, f);
        }
        rounds++;
        holds = 0;
        for (unsigned i = 0; i < 3; i++) {
            holds += testcluster_log_count(&g_cluster, i, "held until this node's own snapshot");
            alive &= testcluster_running(&g_cluster, i);
        }
    }
    l.stop = 1;
    pthread_join(producer, NULL);
    int conv = alive ? testcluster_converged(&g_cluster, 60000) : -1;
    printf("%u round(s), %lu sends during them; installs held: %u; every node %s; digests %s\n",
           rounds, l.sent, holds, alive ? "running" : "NOT running",
           conv ? "DIFFER" : "equal");
    if (!alive || conv)
        testcluster_dump_logs(&g_cluster);
    mqhub_client_close(cl);
    assert_true(alive);
    assert_int_equal(conv, 0);
    assert_true(holds > 0);
    for (unsigned i = 0; i < 3; i++) { /* under ASan a leak would fail the exit status */
        int status = testcluster_stop(&g_cluster, i);
        if (status != 0) {
            fprintf(stderr, "node %u exited with status %d\n", i + 1, status);
            testcluster_dump_logs(&g_cluster);
        }
        assert_int_equal(status, 0);
    }
}

/* Teardown, also after a failed assertion: no daemon outlives the test. */
static int stop_cluster(void **state)
{
    (void)state;
    testcluster_cleanup(&g_cluster);
    memset(&g_cluster, 0, sizeof g_cluster);
    return 0;
}

int main(int argc, char **argv)
{
    g_mqhubd = argc > 1 ? argv[1] : getenv("MQHUBD");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_install_during_snapshot, stop_cluster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
