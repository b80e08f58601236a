/* snapshot_send_test.c: a node joining a leader that holds a large state
 * gets it by snapshot install, and the leader's memory stays bounded while it
 * sends (issue 7: raft 0.22 loaded the whole snapshot for every send attempt,
 * ~7 copies at once; core/raft/snapshot.c "Sends" shares one).
 *
 * One node is started, a queue filled with MQHUB_SNAPSHOT_MB MiB (default 128)
 * of 1 KiB bodies, a snapshot taken; then the leader's peak RSS is reset
 * (/proc/<pid>/clear_refs 5) and a second node joins with cluster.add. The
 * peak RSS during the join (VmHWM) may exceed the RSS before it by at most
 * SEND_BOUND times the snapshot, both digests must end equal and both
 * nodes stop cleanly (the leader still holding the shared copy). The same
 * program at MQHUB_SNAPSHOT_MB=1024 is the by-hand measurement of
 * docs/operations.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testclient.h"
#include "testcluster.h"

#define QUEUE "big"
#define BODY 1024
#define SEND_BOUND 1.5 /* copies of the snapshot the join may add to the RSS */

static const char *g_mqhubd;
static testcluster_t g_cluster;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A field of /proc/<pid>/status in bytes ("VmRSS", "VmHWM"), 0 if unknown. */
static uint64_t proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    unsigned long long kb = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            sscanf(line + fl + 1, "%llu", &kb);
    if (f)
        fclose(f);
    return (uint64_t)kb * 1024;
}

static void reset_peak(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("5", f);
    fclose(f);
}

/* Index and size of the latest snapshot node @i logged ("index N: B bytes,
 * dump"); 0 when none yet. */
static uint64_t last_snapshot(testcluster_t *c, unsigned i, uint64_t *index)
{
    char path[400], line[1024];
    unsigned long long bytes = 0, idx, b;
    snprintf(path, sizeof path, "%s/mqhubd.log", c->nodes[i].dir);
    FILE *f = fopen(path, "r");
    *index = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *m = strstr(line, "comp=snapshot msg=\"index ");
        if (m && strstr(m, "bytes, dump") &&
            sscanf(m + strlen("comp=snapshot msg=\"index "), "%llu: %llu bytes", &idx, &b) == 2) {
            bytes = b;
            *index = idx;
        }
    }
    if (f)
        fclose(f);
    return bytes;
}

/* Write small entries until the latest snapshot is at most a few entries
 * behind the applied index: then none is taken during the join (the
 * threshold is 64 entries; ticks add one a second). Returns its size. */
static uint64_t settle_snapshot(testcluster_t *c, mqhub_client_t *cl)
{
    uint64_t idx, bytes = 0;
    for (int i = 0; i < 1200; i++) {
        tc_status_t st;
        bytes = last_snapshot(c, 0, &idx);
        assert_int_equal(testcluster_status(c, 0, false, 5000, &st), 0);
        if (idx && idx + 4 >= st.last_applied)
            return bytes;
        if (st.last_applied - idx < 64) /* top up to the threshold */
            for (uint64_t k = st.last_applied - idx; k < 64; k++)
                assert_int_equal(mqhub_client_send(cl, QUEUE, "x", 1, NULL, NULL), 0);
        sleep_ms(100);
    }
    fail_msg("no snapshot caught up with the applied index");
    return bytes;
}

static void test_join_bounded(void **state)
{
    (void)state;
    const char *mb_env = getenv("MQHUB_SNAPSHOT_MB");
    uint64_t mb = mb_env && atoi(mb_env) > 0 ? (uint64_t)atoi(mb_env) : 128;
    uint64_t n = mb * 1024 * 1024 / BODY;
    assert_int_equal(testcluster_start(&g_cluster, g_mqhubd, 2, 1,
                                       "snapshot { threshold = 64, trailing = 16, growth = 0 }"), 0);
    mqhub_client_opts_t o = {.timeout_ms = 10000};
    mqhub_client_t *cl = NULL;
    for (int i = 0; i < 100 && !cl; i++)
        if (mqhub_client_connect(&cl, g_cluster.nodes[0].address, &o, NULL, 0) != 0)
            sleep_ms(100);
    assert_non_null(cl);
    assert_int_equal(mqhub_client_queue_create(cl, QUEUE, NULL), 0);
    uint64_t t0 = testcluster_now_ms();
    testclient_fill(cl, QUEUE, n, BODY);
    printf("filled %llu x %d B in %llu ms\n", (unsigned long long)n, BODY,
           (unsigned long long)(testcluster_now_ms() - t0));

    uint64_t snap = settle_snapshot(&g_cluster, cl);
    assert_true(snap >= n * BODY);
    sleep_ms(500); /* the overlay drained, the RSS settled */

    pid_t leader = g_cluster.nodes[0].pid;
    uint64_t before = proc_kb(leader, "VmRSS");
    reset_peak(leader);
    t0 = testcluster_now_ms();
    assert_int_equal(testcluster_start_node(&g_cluster, 1), 0);
    int rc = mqhub_client_cluster_add(cl, g_cluster.nodes[1].id, g_cluster.nodes[1].raft,
                                      g_cluster.nodes[1].address);
    if (rc != 0)
        fprintf(stderr, "cluster.add: %s\n", mqhub_client_errmsg(cl));
    assert_int_equal(rc, 0);
    uint64_t joined = testcluster_now_ms() - t0;
    int conv = testcluster_converged(&g_cluster, 120000);
    sleep_ms(1000); /* heartbeats after the install: no more sends */
    uint64_t peak = proc_kb(leader, "VmHWM");
    double copies = (double)(peak > before ? peak - before : 0) / (double)snap;
    printf("snapshot %.1f MB; leader RSS before the join %.1f MB, peak during it %.1f MB "
           "(+%.2f x the snapshot); %u send(s); voter after %llu ms; digests %s\n",
           snap / 1e6, before / 1e6, peak / 1e6, copies,
           testcluster_log_count(&g_cluster, 0, "comp=snapshot msg=\"sent the snapshot"),
           (unsigned long long)joined, conv ? "DIFFER" : "equal");
    if (conv || copies > SEND_BOUND)
        testcluster_dump_logs(&g_cluster);
    mqhub_client_close(cl);
    assert_int_equal(conv, 0);
    assert_true(copies <= SEND_BOUND);
    /* A clean stop while the leader still holds the copy (resend window);
     * under ASan a leak would fail the exit status. */
    assert_int_equal(testcluster_stop(&g_cluster, 0), 0);
    assert_int_equal(testcluster_stop(&g_cluster, 1), 0);
}

/* Teardown, also after a failed assertion: no daemon outlives the test. */
static int stop_cluster(void **state)
{
    (void)state;
    testcluster_cleanup(&g_cluster);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_join_bounded, stop_cluster)};
    g_mqhubd = getenv("MQHUBD");
    if ((!g_mqhubd || !*g_mqhubd) && argc > 1)
        g_mqhubd = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
