/* damaged_follower_test.c: a follower whose raft log is damaged refuses to
 * start, `mqhubd --repair` drops the damaged part, and the node then catches
 * up from the leader (docs/operations.md "Damaged data").
 *
 * Three nodes; known messages sent (each acknowledged); one follower is
 * stopped and a payload byte of the batch holding message DAMAGED in one of
 * its closed segments is flipped. It must exit with 65 naming the segment;
 * --repair must say what it drops; more messages are sent meanwhile; once
 * started again it must converge (same applied index and state digest as
 * the others) and, made leader, serve every acknowledged message exactly
 * once.
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
#include "testdamage.h"
#include "testhub.h"

#define BEFORE 60  /* messages sent before the damage */
#define AFTER 20   /* sent while the follower is down */
#define DAMAGED 30
#define EXIT_DATAERR 65

static const char *g_mqhubd;

static void send_range(mqhub_client_t *cl, unsigned from, unsigned to)
{
    char body[32];
    for (unsigned i = from; i <= to; i++) {
        snprintf(body, sizeof body, "dmg-%03u", i);
        assert_int_equal(mqhub_client_send(cl, "q", body, strlen(body), NULL, NULL), 0);
    }
}

static void expect_in(const char *out, const char *what)
{
    if (!strstr(out, what)) {
        fprintf(stderr, "expected \"%s\" in:\n%s\n", what, out);
        fail();
    }
}

/* Damage the follower @f, check the refusal and the repair. */
static void damage_and_repair(testcluster_t *c, unsigned f)
{
    char raft[400], config[400], body[32], want[256];
    static char out[16384];
    td_batch_t b;

    snprintf(raft, sizeof raft, "%s/data/raft", c->nodes[f].dir);
    snprintf(config, sizeof config, "%s/config.lua", c->nodes[f].dir);
    snprintf(body, sizeof body, "dmg-%03u", DAMAGED);
    assert_int_equal(testdamage_find(raft, body, false, &b), 0);
    assert_int_equal(testdamage_flip(raft, b.file, b.hit, 0x20), 0);

    assert_int_equal(testdamage_run(g_mqhubd, config, NULL, 20000, out, sizeof out),
                     EXIT_DATAERR);
    snprintf(want, sizeof want, "closed segment %s: batch %u at byte %zu (index ", b.file,
             b.number, b.off);
    expect_in(out, want);
    assert_int_equal(testdamage_run(g_mqhubd, config, "--repair", 20000, out, sizeof out), 0);
    expect_in(out, want);
    expect_in(out, "the log now ends at index ");
}

/* Receive everything through the cluster: each message exactly once. */
static void receive_all(mqhub_client_t *cl)
{
    unsigned seen[BEFORE + AFTER + 1] = {0}, total = 0;
    mqhub_receive_opts_t o = {.max = 256, .wait = 0, .visibility = 600};
    for (int empty = 0; empty < 2;) {
        mqhub_msg_list_t l;
        assert_int_equal(mqhub_client_receive(cl, "q", &o, &l), 0);
        empty = l.n ? 0 : empty + 1;
        for (size_t i = 0; i < l.n; i++) {
            unsigned n = 0;
            assert_int_equal(sscanf(l.msgs[i].body, "dmg-%u", &n), 1);
            assert_true(n >= 1 && n <= BEFORE + AFTER);
            seen[n]++;
            total++;
        }
        mqhub_msg_list_free(&l);
    }
    assert_int_equal(total, BEFORE + AFTER);
    for (unsigned i = 1; i <= BEFORE + AFTER; i++)
        assert_int_equal(seen[i], 1);
}

static void test_damaged_follower(void **state)
{
    testcluster_t *c = *state;
    assert_int_equal(testcluster_start(c, g_mqhubd, 3, 3, NULL), 0);
    mqhub_client_t *cl = testclient_connect(c, 10000);
    assert_non_null(cl);
    assert_int_equal(mqhub_client_queue_create(cl, "q", NULL), 0);
    send_range(cl, 1, BEFORE);

    int leader = testcluster_leader(c, 10000);
    assert_true(leader >= 0);
    unsigned f = ((unsigned)leader + 1) % 3;
    assert_int_equal(testcluster_stop(c, f), 0); /* its segments are closed */
    damage_and_repair(c, f);
    send_range(cl, BEFORE + 1, BEFORE + AFTER);

    assert_int_equal(testcluster_start_node(c, f), 0);
    if (testcluster_converged(c, 30000) != 0) {
        testcluster_dump_logs(c);
        fail();
    }
    assert_int_equal(mqhub_client_cluster_transfer(cl, c->nodes[f].id), 0);
    assert_int_equal(testcluster_leader(c, 10000), (int)f);
    receive_all(cl);
    mqhub_client_close(cl);
    for (unsigned i = 0; i < 3; i++) /* 0: a clean stop, no sanitizer report */
        assert_int_equal(testcluster_stop(c, i), 0);
}

static int setup(void **state)
{
    *state = calloc(1, sizeof(testcluster_t));
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    testcluster_cleanup(*state);
    free(*state);
    return 0;
}

int main(int argc, char **argv)
{
    g_mqhubd = testhub_binary(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_damaged_follower, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
