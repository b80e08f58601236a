/* ephemeral_failover_test.c: an ephemeral push subscription whose session
 * stays open on a node that stops leading is deleted by the new leader
 * (sub.reap {keep} after its grace period, through raft), while a durable
 * one stays and every node converges on the same state. The time from the
 * leadership transfer to the delete is printed (about the 5 s grace).
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
#include "testcluster.h"

static testcluster_t cl;
static const char *mqhubd_path;

static mqhub_client_t *connect_to(const char *address)
{
    mqhub_client_opts_t o = {.timeout_ms = 10000};
    mqhub_client_t *c = NULL;
    char err[256];
    if (mqhub_client_connect(&c, address, &o, err, sizeof err) != 0)
        fail_msg("connect %s: %s", address, err);
    return c;
}

static int sub_state(mqhub_client_t *c, const char *name)
{
    mqhub_response_t r;
    int rc = mqhub_client_sub_get(c, "feed", name, &r);
    if (rc == 0)
        mqhub_response_free(&r);
    return rc;
}

static void test_new_leader_reaps(void **state)
{
    (void)state;
    assert_int_equal(testcluster_start(&cl, mqhubd_path, 3, 3, NULL), 0);
    int leader = testcluster_leader(&cl, 10000);
    assert_true(leader >= 0);
    /* the owner's session: on the leader only, it never follows */
    mqhub_client_t *owner = connect_to(cl.nodes[leader].address);
    mqhub_client_t *admin = connect_to(cl.seeds);
    assert_int_equal(mqhub_client_topic_create(owner, "feed", NULL), 0);
    mqhub_sub_opts_t eph = {.ephemeral = true}, dur = {0};
    assert_int_equal(mqhub_client_sub_create(owner, "feed", "eph", &eph), 0);
    assert_int_equal(mqhub_client_sub_create(owner, "feed", "dur", &dur), 0);
    assert_int_equal(sub_state(admin, "eph"), 0);

    unsigned next = (unsigned)(leader + 1) % 3;
    uint64_t t0 = testcluster_now_ms();
    assert_int_equal(mqhub_client_cluster_transfer(admin, cl.nodes[next].id), 0);
    int now = -1;
    while (testcluster_now_ms() - t0 < 10000 && (now = testcluster_leader(&cl, 1000)) == leader)
        ;
    assert_true(now >= 0 && now != leader);
    /* the owner's session is still open on the old leader; the new one
     * deletes the subscription once its grace period is over */
    int rc = 0;
    while (testcluster_now_ms() - t0 < 20000 && (rc = sub_state(admin, "eph")) == 0) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    print_message("ephemeral subscription deleted %llu ms after the transfer\n",
                  (unsigned long long)(testcluster_now_ms() - t0));
    assert_int_equal(rc, MQHUB_ENOT_FOUND);
    assert_int_equal(sub_state(admin, "dur"), 0);
    assert_int_equal(testcluster_converged(&cl, 10000), 0);
    mqhub_client_close(owner);
    mqhub_client_close(admin);
}

static int teardown(void **state)
{
    (void)state;
    testcluster_cleanup(&cl);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_new_leader_reaps, teardown),
    };
    mqhubd_path = getenv("MQHUBD") ? getenv("MQHUBD") : (argc > 1 ? argv[1] : NULL);
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
