/* replica_test.c: one node through real raft (loopback) and the real fsm.
 * Proposes 100,000 sends with 256 in flight, with a snapshot threshold low
 * enough that several snapshots are taken; stops, restarts from disk (new fsm,
 * new replica: snapshot restore + log replay) and receives everything: every
 * acknowledged send is there exactly once. Also: group commit (one loop turn,
 * one entry), NOT_LEADER/UNAVAILABLE at submit, callbacks at stop.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "replica_util.h"

#define N_SENDS 100000
#define IN_FLIGHT 256

typedef struct sender {
    tnode_t *n;
    msgpack_sbuffer sb;
    uint64_t next, acked, failed, outstanding;
    unsigned char *seen; /* per body: 1 acknowledged, 2.. received */
    bool done;
} sender_t;

static void send_next(sender_t *s);

static void send_done(void *arg, int status, const char *reply, size_t len)
{
    uint64_t *slot = arg; /* points into a per-command body number array */
    sender_t *s = (sender_t *)slot[1];
    s->outstanding--;
    if (status == 0 && reply_ok(reply, len)) {
        s->seen[slot[0]] = 1;
        s->acked++;
    } else {
        s->failed++;
    }
    free(slot);
    send_next(s);
}

static void send_next(sender_t *s)
{
    while (s->outstanding < IN_FLIGHT && s->next < N_SENDS) {
        uint64_t *slot = malloc(2 * sizeof *slot);
        slot[0] = s->next;
        slot[1] = (uint64_t)(uintptr_t)s;
        cmd_send(&s->sb, s->next + 1, "q", s->next);
        if (replica_submit(s->n->r, s->sb.data, s->sb.size, send_done, slot) != 0) {
            free(slot);
            s->failed++;
        } else {
            s->outstanding++;
        }
        s->next++;
    }
    if (s->next == N_SENDS && s->outstanding == 0)
        s->done = true;
}

static int count_snapshots(const char *raft_dir)
{
    DIR *d = opendir(raft_dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "snapshot-", 9) == 0 && !strstr(e->d_name, ".meta"))
            n++;
    closedir(d);
    return n;
}

static void on_received(void *arg, uint64_t body, const char *receipt, size_t rlen)
{
    sender_t *s = arg;
    assert_true(body < N_SENDS);
    s->seen[body]++;
}

static void create_queue(tnode_t *n, const char *name)
{
    msgpack_sbuffer sb;
    char *reply;
    size_t len;
    msgpack_sbuffer_init(&sb);
    cmd_queue_create(&sb, 1, name);
    assert_int_equal(tnode_call(n, &sb, &reply, &len), 0);
    assert_true(reply_ok(reply, len));
    free(reply);
    msgpack_sbuffer_destroy(&sb);
}

static void test_sends_survive_restart(void **state)
{
    char dir[256];
    tnode_t n;
    sender_t s = {.n = &n};
    int port = test_port(0);

    make_dir(dir, sizeof dir, "replica");
    s.seen = calloc(N_SENDS, 1);
    msgpack_sbuffer_init(&s.sb);

    assert_int_equal(tnode_start(&n, dir, port, 64, 16), 0);
    assert_true(tnode_wait_leader(&n, 10000));
    create_queue(&n, "q");
    uv_update_time(&n.loop);
    uint64_t t0 = uv_now(&n.loop);
    send_next(&s);
    assert_true(tnode_run_until(&n, &s.done, 120000));
    uv_update_time(&n.loop);
    uint64_t ms = uv_now(&n.loop) - t0;
    printf("# %d sends acknowledged in %llu ms (%.0f/s), %llu failed, %d snapshot(s)\n",
           N_SENDS, (unsigned long long)ms, ms ? N_SENDS * 1000.0 / (double)ms : 0.0,
           (unsigned long long)s.failed, count_snapshots(n.raft_dir));
    assert_int_equal(s.acked, N_SENDS);
    assert_true(count_snapshots(n.raft_dir) >= 1);
    tnode_stop(&n);

    /* Restart from disk: raft restores the snapshot and replays the log. */
    assert_int_equal(tnode_start(&n, dir, port, 64, 16), 0);
    assert_true(tnode_wait_leader(&n, 10000));
    long got = drain_queue(&n, "q", on_received, &s);
    assert_int_equal(got, N_SENDS);
    for (uint64_t i = 0; i < N_SENDS; i++)
        if (s.seen[i] != 2) {
            fprintf(stderr, "body %llu: state %d\n", (unsigned long long)i, s.seen[i]);
            fail();
        }
    tnode_stop(&n);
    msgpack_sbuffer_destroy(&s.sb);
    free(s.seen);
    rm_dir(dir);
}

/* ---- group commit and stop -------------------------------------------------- */

typedef struct counter {
    unsigned ok, unavailable, other;
} counter_t;

static void count_done(void *arg, int status, const char *reply, size_t len)
{
    counter_t *c = arg;
    if (status == 0 && reply_ok(reply, len))
        c->ok++;
    else if (status == MQHUB_EUNAVAILABLE || status == MQHUB_ETIMEOUT)
        c->unavailable++; /* not proposed / outcome unknown */
    else
        c->other++;
}

static void stopped(void *arg)
{
    *(bool *)arg = true;
}

static void test_group_commit_and_stop(void **state)
{
    char dir[256];
    tnode_t n;
    msgpack_sbuffer sb;
    counter_t c = {0};

    make_dir(dir, sizeof dir, "replica");
    msgpack_sbuffer_init(&sb);
    assert_int_equal(tnode_start(&n, dir, test_port(1), 0, 0), 0);
    assert_true(tnode_wait_leader(&n, 10000));
    create_queue(&n, "g");

    /* 100 submits in one turn share one raft entry. */
    replica_stats_t st0, st1;
    replica_stats(n.r, &st0);
    for (unsigned i = 0; i < 100; i++) {
        cmd_send(&sb, i, "g", i);
        assert_int_equal(replica_submit(n.r, sb.data, sb.size, count_done, &c), 0);
    }
    while (c.ok + c.other < 100)
        uv_run(&n.loop, UV_RUN_ONCE);
    assert_int_equal(c.ok, 100);
    replica_stats(n.r, &st1);
    assert_int_equal(st1.commands - st0.commands, 100);
    assert_true(st1.entries - st0.entries <= 2); /* ours, maybe one tick */
    assert_true(st1.commit_index > st0.commit_index);
    assert_true(st1.term >= 1);

    /* At stop, every submitted command gets exactly one callback: the open
     * batch fails with UNAVAILABLE at once, an in-flight entry either
     * applies or fails. Later submits are refused without a callback. */
    c = (counter_t){0};
    for (unsigned i = 0; i < 10; i++) {
        cmd_send(&sb, i, "g", i);
        assert_int_equal(replica_submit(n.r, sb.data, sb.size, count_done, &c), 0);
    }
    uv_run(&n.loop, UV_RUN_NOWAIT); /* the check phase proposes them */
    for (unsigned i = 0; i < 5; i++) {
        cmd_send(&sb, i, "g", i);
        assert_int_equal(replica_submit(n.r, sb.data, sb.size, count_done, &c), 0);
    }
    bool done = false;
    replica_stop(n.r, stopped, &done);
    assert_true(c.unavailable >= 5);
    assert_int_equal(replica_submit(n.r, sb.data, sb.size, count_done, &c),
                     MQHUB_EUNAVAILABLE);
    while (!done)
        uv_run(&n.loop, UV_RUN_ONCE);
    uv_run(&n.loop, UV_RUN_DEFAULT);
    assert_int_equal(c.unavailable + c.ok, 15);
    assert_int_equal(c.other, 0);
    fsm_close(n.fsm);
    assert_int_equal(uv_loop_close(&n.loop), 0);
    msgpack_sbuffer_destroy(&sb);
    rm_dir(dir);
}

/* ---- ticks ----------------------------------------------------------------- */

typedef struct ready {
    uv_loop_t *loop;
    uint64_t at; /* loop time of the first ready callback */
} ready_t;

static void on_ready(void *arg, const char *queue, size_t len)
{
    ready_t *r = arg;
    uv_update_time(r->loop);
    if (!r->at)
        r->at = uv_now(r->loop);
}

/* A message sent with delay 2 s becomes ready by itself, on time: the replica
 * ticks at the fsm's next due time (the periodic 1 s tick alone would be up
 * to a second late), with nobody submitting anything. */
static void test_delay_promoted_by_tick(void **state)
{
    char dir[256];
    tnode_t n;
    ready_t rd = {0};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char *reply;
    size_t len;

    make_dir(dir, sizeof dir, "replica");
    assert_int_equal(tnode_start(&n, dir, test_port(2), 0, 0), 0);
    assert_true(tnode_wait_leader(&n, 10000));
    assert_int_equal(replica_id(n.r), 1);
    assert_string_equal(replica_leader_address(n.r), "127.0.0.1:1");
    create_queue(&n, "d");
    rd.loop = &n.loop;
    fsm_set_ready_cb(n.fsm, on_ready, &rd);

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "send", 4);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint32(&pk, 5);
    msgpack_pack_str_with_body(&pk, "queue", 5);
    msgpack_pack_str_with_body(&pk, "d", 1);
    msgpack_pack_str_with_body(&pk, "body", 4);
    msgpack_pack_bin_with_body(&pk, "m1", 2);
    msgpack_pack_str_with_body(&pk, "delay", 5);
    msgpack_pack_uint32(&pk, 2);
    uv_update_time(&n.loop);
    uint64_t t0 = uv_now(&n.loop);
    assert_int_equal(tnode_call(&n, &sb, &reply, &len), 0);
    assert_true(reply_ok(reply, len));
    free(reply);
    rd.at = 0; /* only a promotion counts */
    bool never = false;
    tnode_run_until(&n, &never, 2600);
    printf("# delayed message ready after %llu ms\n",
           (unsigned long long)(rd.at ? rd.at - t0 : 0));
    assert_true(rd.at >= t0 + 1950 && rd.at <= t0 + 2400);
    tnode_stop(&n);
    msgpack_sbuffer_destroy(&sb);
    rm_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_promoted_by_tick),
        cmocka_unit_test(test_group_commit_and_stop),
        cmocka_unit_test(test_sends_survive_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
