/* fsm_peek_redrive_test.c: queue.peek and queue.redrive through the FSM with
 * a fake clock — peek changes nothing (stats, digest), shows ready messages
 * in seq order and goes on with `next`; a dead-letter move records its
 * source (mqhub.source_queue); redrive moves dead letters back in order with
 * receive_count 0, keeps those whose source is gone, is bounded by `max`,
 * and by 32 MiB of bodies a command, and gives the same state on every
 * replica and across a snapshot; an ordered DLQ keeps a group whose head is
 * in flight. Hostile: max 0 and 1000, forged `from`, redrive of a non-DLQ,
 * to a missing queue, to itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fsm_harness.h"

static int64_t qstat(harness_t *h, const char *q, const char *key)
{
    json_t *r = h_read(h, "{'op':'queue.get','name':'%s'}", q);
    int64_t v = h_int(json_object_get(r, "stats"), key);
    json_decref(r);
    return v;
}

/* A peek that must succeed; the caller decrefs the reply. */
static json_t *peek(harness_t *h, const char *q, int max, const char *extra)
{
    json_t *r = h_read(h, "{'op':'queue.peek','queue':'%s','max':%d%s}", q, max,
                       extra ? extra : "");
    if (!h_ok(r))
        fail_msg("peek failed: %s", json_dumps(r, JSON_COMPACT));
    return r;
}

static json_t *msg_at(json_t *r, size_t i)
{
    return json_array_get(json_object_get(r, "msgs"), i);
}

static size_t n_msgs(json_t *r)
{
    return json_array_size(json_object_get(r, "msgs"));
}

static void test_peek_changes_nothing(void **state)
{
    harness_t *h = *state;
    char before[65], after[65];
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    for (int i = 0; i < 5; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'q','body':'m%d','attrs':{'n':'%d'}}", i, i);
    H_EXPECT(h, "", "{'op':'receive','queue':'q','max':1}"); /* m0 locked */
    h_digest(h, before);
    json_t *r = peek(h, "q", 10, NULL);
    h_digest(h, after);
    assert_string_equal(before, after);
    assert_int_equal(n_msgs(r), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *m = msg_at(r, i);
        char body[8];
        snprintf(body, sizeof body, "m%zu", i + 1);
        assert_string_equal(h_str(m, "body"), body);
        assert_int_equal(h_int(m, "seq"), (int64_t)i + 2);
        assert_int_equal(h_int(m, "receive_count"), 0);
        assert_string_equal(h_str(m, "state"), "ready");
        assert_null(json_object_get(m, "receipt"));
    }
    assert_null(json_object_get(r, "next"));
    json_decref(r);
    assert_int_equal(qstat(h, "q", "ready"), 4);
    assert_int_equal(qstat(h, "q", "inflight"), 1);
    assert_int_equal(qstat(h, "q", "received_total"), 1);
    /* the next receive still gets m1: nothing was locked by the peek */
    r = h_run(h, "{'op':'receive','queue':'q'}");
    assert_string_equal(h_str(msg_at(r, 0), "body"), "m1");
    json_decref(r);
}

static void test_peek_cursor(void **state)
{
    harness_t *h = *state;
    char id[64];
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    for (int i = 0; i < 6; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'q','body':'m%d'}", i);
    json_t *r = peek(h, "q", 2, NULL);
    assert_int_equal(n_msgs(r), 2);
    int64_t next = h_int(r, "next");
    assert_int_equal(next, 3);
    snprintf(id, sizeof id, "%s", h_str(msg_at(r, 1), "msg_id"));
    json_decref(r);
    r = peek(h, "q", 2, NULL);
    json_decref(r);
    r = peek(h, "q", 256, ",'from':3");
    assert_int_equal(n_msgs(r), 4);
    assert_string_equal(h_str(msg_at(r, 0), "body"), "m2");
    assert_null(json_object_get(r, "next"));
    json_decref(r);
    /* a msg_id this queue gave stands for its seq */
    r = peek(h, "q", 1, NULL);
    json_decref(r);
    char extra[96];
    snprintf(extra, sizeof extra, ",'from':'%s'", id);
    r = peek(h, "q", 1, extra);
    assert_string_equal(h_str(msg_at(r, 0), "msg_id"), id);
    json_decref(r);
}

static void test_peek_hostile(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'x'}");
    const char *bad[] = {
        "{'op':'queue.peek','queue':'q','max':0}",
        "{'op':'queue.peek','queue':'q','max':1000}",
        "{'op':'queue.peek','queue':'q','max':'ten'}",
        "{'op':'queue.peek','queue':'q','from':'ff-1'}",   /* another queue's id */
        "{'op':'queue.peek','queue':'q','from':'1-'}",
        "{'op':'queue.peek','queue':'q','from':'-1'}",
        "{'op':'queue.peek','queue':'q','from':' 1-1'}",
        "{'op':'queue.peek','queue':'q','from':'1--2'}",   /* strtoull's minus sign */
        "{'op':'queue.peek','queue':'q','from':-5}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *r = h_read(h, "%s", bad[i]);
        if (strcmp(h_code(r), "BAD_REQUEST") != 0)
            fail_msg("%s: %s", bad[i], json_dumps(r, JSON_COMPACT));
        json_decref(r);
    }
    json_t *r = h_read(h, "{'op':'queue.peek','queue':'nope'}");
    assert_string_equal(h_code(r), "NOT_FOUND");
    json_decref(r);
}

/* Bodies near 1 MiB: the reply stops below the frame limit and says where
 * to go on. */
static void test_peek_reply_bounded(void **state)
{
    harness_t *h = *state;
    size_t big = 1000 * 1000;
    char *body = malloc(big + 1);
    memset(body, 'b', big);
    body[big] = 0;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'max_msg_size':1048576}}");
    for (int i = 0; i < 20; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'q','body':'%s'}", body);
    free(body);
    json_t *r = peek(h, "q", 20, NULL);
    size_t n = n_msgs(r);
    print_message("peek of 20 x 1 MB bodies returned %zu\n", n);
    assert_true(n >= 10 && n < 17);
    assert_int_equal(h_int(r, "next"), (int64_t)n + 1);
    json_decref(r);
}

/* Only PEEK_SCAN records are looked at: a queue of locked messages answers
 * an empty list with `next`. */
static void test_peek_scan_bounded(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    for (int b = 0; b < 20; b++) {
        char *cmd = malloc(256 * 24 + 128), *p = cmd;
        p += sprintf(p, "{'op':'send_batch','queue':'q','msgs':[");
        for (int i = 0; i < 256; i++)
            p += sprintf(p, "%s{'body':'x'}", i ? "," : "");
        sprintf(p, "]}");
        H_EXPECT(h, "", "%s", cmd);
        free(cmd);
        H_EXPECT(h, "", "{'op':'receive','queue':'q','max':256}");
    }
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'last'}");
    json_t *r = peek(h, "q", 1, NULL);
    assert_int_equal(n_msgs(r), 0);
    int64_t next = h_int(r, "next");
    assert_int_equal(next, 4097);
    json_decref(r);
    r = peek(h, "q", 1, ",'from':5000");
    assert_string_equal(h_str(msg_at(r, 0), "body"), "last");
    json_decref(r);
}

/* q dead-letters into dlq after one receive; @n messages are moved. */
static void dead_letter_n(harness_t *h, int n, const char *q)
{
    for (int i = 0; i < n; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'%s','body':'%s-%d','attrs':{'k':'v%d'}}", q, q,
                 i, i);
    H_EXPECT(h, "", "{'op':'receive','queue':'%s','max':256,'visibility':0}", q);
    h_advance(h, 10);
    json_t *r = h_run(h, "{'op':'receive','queue':'%s','max':256}", q);
    assert_int_equal(n_msgs(r), 0);
    json_decref(r);
}

static void make_pair(harness_t *h)
{
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'dead_letter':{'queue':'dlq',"
                    "'max_receives':1}}}");
}

static void test_dead_letter_records_source(void **state)
{
    harness_t *h = *state;
    make_pair(h);
    dead_letter_n(h, 2, "q");
    assert_int_equal(qstat(h, "dlq", "ready"), 2);
    json_t *r = peek(h, "dlq", 2, NULL);
    json_t *a = json_object_get(msg_at(r, 0), "attrs");
    assert_string_equal(h_str(a, "mqhub.source_queue"), "q");
    assert_string_equal(h_str(a, "k"), "v0");
    assert_int_equal(json_object_size(a), 2);
    json_decref(r);
}

static void test_redrive_back_in_order(void **state)
{
    harness_t *h = *state;
    make_pair(h);
    dead_letter_n(h, 5, "q");
    json_t *r = h_run(h, "{'op':'queue.redrive','queue':'dlq'}");
    assert_true(h_ok(r));
    assert_int_equal(h_int(r, "moved"), 5);
    assert_int_equal(h_int(r, "kept"), 0);
    assert_int_equal(h_int(r, "remaining"), 0);
    assert_null(json_object_get(r, "next"));
    json_decref(r);
    assert_int_equal(qstat(h, "dlq", "ready"), 0);
    assert_int_equal(qstat(h, "q", "ready"), 5);
    r = h_run(h, "{'op':'receive','queue':'q','max':10}");
    assert_int_equal(n_msgs(r), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *m = msg_at(r, i), *a = json_object_get(m, "attrs");
        char body[16], v[8];
        snprintf(body, sizeof body, "q-%zu", i);
        snprintf(v, sizeof v, "v%zu", i);
        assert_string_equal(h_str(m, "body"), body);
        assert_int_equal(h_int(m, "receive_count"), 1); /* reset by the move */
        assert_string_equal(h_str(a, "k"), v);
        assert_null(json_object_get(a, "mqhub.source_queue"));
    }
    json_decref(r);
}

static void test_redrive_bounded(void **state)
{
    harness_t *h = *state;
    make_pair(h);
    dead_letter_n(h, 5, "q");
    json_t *r = h_run(h, "{'op':'queue.redrive','queue':'dlq','max':2}");
    assert_int_equal(h_int(r, "moved"), 2);
    assert_int_equal(h_int(r, "remaining"), 3);
    int64_t next = h_int(r, "next");
    json_decref(r);
    r = h_run(h, "{'op':'queue.redrive','queue':'dlq','max':10,'from':%lld}", (long long)next);
    assert_int_equal(h_int(r, "moved"), 3);
    assert_int_equal(h_int(r, "remaining"), 0);
    json_decref(r);
    r = peek(h, "q", 10, NULL);
    assert_int_equal(n_msgs(r), 5);
    assert_string_equal(h_str(msg_at(r, 0), "body"), "q-0");
    assert_string_equal(h_str(msg_at(r, 4), "body"), "q-4");
    json_decref(r);
}

/* A message whose source queue is gone (or no longer dead-letters here)
 * stays and is counted; `to` moves it anyway. */
static void test_redrive_source_gone(void **state)
{
    harness_t *h = *state;
    make_pair(h);
    H_EXPECT(h, "", "{'op':'queue.create','name':'q2','attrs':{'dead_letter':{'queue':'dlq',"
                    "'max_receives':1}}}");
    dead_letter_n(h, 2, "q");
    dead_letter_n(h, 1, "q2");
    H_EXPECT(h, "", "{'op':'queue.delete','name':'q'}");
    json_t *r = h_run(h, "{'op':'queue.redrive','queue':'dlq'}");
    assert_int_equal(h_int(r, "moved"), 1);
    assert_int_equal(h_int(r, "kept"), 2);
    assert_int_equal(h_int(r, "remaining"), 2);
    json_decref(r);
    assert_int_equal(qstat(h, "q2", "ready"), 1);
    H_EXPECT(h, "", "{'op':'queue.create','name':'other'}");
    r = h_run(h, "{'op':'queue.redrive','queue':'dlq','to':'other'}");
    assert_int_equal(h_int(r, "moved"), 2);
    assert_int_equal(h_int(r, "remaining"), 0);
    json_decref(r);
    assert_int_equal(qstat(h, "other", "ready"), 2);
}

static void test_redrive_hostile(void **state)
{
    harness_t *h = *state;
    make_pair(h);
    dead_letter_n(h, 1, "q");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.redrive','queue':'q'}");   /* not a DLQ */
    H_EXPECT(h, "NOT_FOUND", "{'op':'queue.redrive','queue':'dlq','to':'missing'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.redrive','queue':'dlq','to':'dlq'}");
    H_EXPECT(h, "BAD_NAME", "{'op':'queue.redrive','queue':'dlq','to':'b@d'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.redrive','queue':'dlq','max':0}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.redrive','queue':'dlq','max':10001}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'queue.redrive','queue':'nope'}");
    /* a forged source attr on a message sent to the DLQ: it names a queue
     * that does not dead-letter into dlq, so it stays */
    H_EXPECT(h, "", "{'op':'queue.create','name':'victim'}");
    H_EXPECT(h, "", "{'op':'send','queue':'dlq','body':'forged',"
                    "'attrs':{'mqhub.source_queue':'victim'}}");
    json_t *r = h_run(h, "{'op':'queue.redrive','queue':'dlq'}");
    assert_int_equal(h_int(r, "moved"), 1);
    assert_int_equal(h_int(r, "kept"), 1);
    json_decref(r);
    assert_int_equal(qstat(h, "victim", "ready"), 0);
    assert_int_equal(qstat(h, "dlq", "ready"), 1);
}

/* An ordered DLQ gives up group heads only: a message behind one that
 * stays stays too. */
static void test_redrive_ordered(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq','attrs':{'ordered':true}}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'ordered':true,'dead_letter':"
                    "{'queue':'dlq','max_receives':1}}}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'gone','attrs':{'dead_letter':"
                    "{'queue':'dlq','max_receives':1}}}");
    H_EXPECT(h, "", "{'op':'send','queue':'gone','body':'g0'}");
    H_EXPECT(h, "", "{'op':'receive','queue':'gone','visibility':0}");
    h_advance(h, 10);
    H_EXPECT(h, "", "{'op':'receive','queue':'gone'}");   /* g0 -> dlq, default group */
    for (int i = 0; i < 3; i++) {
        H_EXPECT(h, "", "{'op':'send','queue':'q','body':'a%d','group':'A'}", i);
        H_EXPECT(h, "", "{'op':'receive','queue':'q','visibility':0}");
        h_advance(h, 10);
    }
    H_EXPECT(h, "", "{'op':'receive','queue':'q'}"); /* moves what is still due */
    H_EXPECT(h, "", "{'op':'queue.delete','name':'gone'}");
    int64_t in_dlq = qstat(h, "dlq", "ready");
    json_t *r = h_run(h, "{'op':'queue.redrive','queue':'dlq'}");
    assert_int_equal(h_int(r, "kept"), 1); /* g0: its source is gone */
    assert_int_equal(h_int(r, "moved"), in_dlq - 1);
    json_decref(r);
    /* what q delivers of group A comes in order */
    r = peek(h, "q", 10, NULL);
    for (size_t i = 1; i < n_msgs(r); i++)
        assert_true(strcmp(h_str(msg_at(r, i - 1), "body"), h_str(msg_at(r, i), "body")) < 0);
    json_decref(r);
    r = h_run(h, "{'op':'receive','queue':'dlq'}");
    assert_string_equal(h_str(msg_at(r, 0), "body"), "g0");
    json_decref(r);
}

/* An ordered DLQ keeps a group whose head is in flight: moving the message
 * behind it would put it ahead of the head once that one is ready again. */
static void test_redrive_ordered_inflight(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq','attrs':{'ordered':true}}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'dead_letter':"
                    "{'queue':'dlq','max_receives':1}}}");
    for (int i = 0; i < 2; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'q','body':'a%d','group':'A'}", i);
    H_EXPECT(h, "", "{'op':'receive','queue':'q','max':2,'visibility':0}");
    h_advance(h, 10);
    H_EXPECT(h, "", "{'op':'receive','queue':'q','max':2}"); /* both -> dlq */
    assert_int_equal(qstat(h, "dlq", "ready"), 2);
    json_t *r = h_run(h, "{'op':'receive','queue':'dlq','visibility':60}");
    assert_string_equal(h_str(msg_at(r, 0), "body"), "a0"); /* in flight */
    json_decref(r);
    r = h_run(h, "{'op':'queue.redrive','queue':'dlq'}");
    assert_int_equal(h_int(r, "moved"), 0);
    assert_int_equal(h_int(r, "kept"), 1);
    json_decref(r);
    assert_int_equal(qstat(h, "q", "ready"), 0);
}

/* The same commands give the same state; a replica restored from a
 * snapshot taken after the dead-letter moves redrives to the same state. */
static void run_scenario(harness_t *h)
{
    make_pair(h);
    dead_letter_n(h, 7, "q");
    H_EXPECT(h, "", "{'op':'queue.redrive','queue':'dlq','max':3}");
}

static void test_redrive_determinism_snapshot(void **state)
{
    harness_t *a = *state, *b = h_open(H_T0), *c = h_open(H_T0);
    char da[65], db[65], dc[65];
    run_scenario(a);
    run_scenario(b);
    h_digest(a, da);
    h_digest(b, db);
    assert_string_equal(da, db);
    h_snapshot_restore(a, c);
    H_EXPECT(a, "", "{'op':'queue.redrive','queue':'dlq'}");
    H_EXPECT(c, "", "{'op':'queue.redrive','queue':'dlq'}");
    h_digest(a, da);
    h_digest(c, dc);
    assert_string_equal(da, dc);
    assert_int_equal(qstat(c, "q", "ready"), 7);
    assert_int_equal(qstat(c, "dlq", "ready"), 0);
    h_close(b);
    h_close(c);
}


static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* The largest redrive (10,000 messages in one command) and a full peek:
 * the apply and read times are printed (docs/benchmarks.md), not asserted. */
static void test_redrive_largest_command(void **state)
{
    harness_t *h = *state;
    struct timespec t0;
    make_pair(h);
    for (int b = 0; b < 40; b++) {
        char *cmd = malloc(250 * 24 + 128), *p = cmd;
        p += sprintf(p, "{'op':'send_batch','queue':'q','msgs':[");
        for (int i = 0; i < 250; i++)
            p += sprintf(p, "%s{'body':'m%d'}", i ? "," : "", b * 250 + i);
        sprintf(p, "]}");
        H_EXPECT(h, "", "%s", cmd);
        free(cmd);
        H_EXPECT(h, "", "{'op':'receive','queue':'q','max':250,'visibility':0}");
    }
    h_advance(h, 10);
    H_EXPECT(h, "", "{'op':'receive','queue':'q'}"); /* moves all 10,000 */
    assert_int_equal(qstat(h, "dlq", "ready"), 10000);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_t *r = peek(h, "dlq", 256, NULL);
    print_message("peek of 256 of 10000: %.2f ms\n", ms_since(&t0));
    assert_int_equal(n_msgs(r), 256);
    json_decref(r);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = h_run(h, "{'op':'queue.redrive','queue':'dlq','max':10000}");
    print_message("redrive of 10000 in one command: %.1f ms\n", ms_since(&t0));
    assert_int_equal(h_int(r, "moved"), 10000);
    json_decref(r);
    assert_int_equal(qstat(h, "q", "ready"), 10000);
}

/* 36 bodies of 1 MB: one redrive stops before it would copy more than 32 MiB
 * and names the seq to go on from; the next moves the rest. */
static void test_redrive_bytes_bounded(void **state)
{
    harness_t *h = *state;
    size_t big = 1000 * 1000;
    char *body = malloc(big + 1);
    memset(body, 'r', big);
    body[big] = 0;
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq','attrs':{'max_msg_size':1048576}}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'other'}");
    for (int i = 0; i < 36; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'dlq','body':'%s'}", body);
    free(body);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_t *r = h_run(h, "{'op':'queue.redrive','queue':'dlq','to':'other'}");
    int64_t moved = h_int(r, "moved"), next = h_int(r, "next");
    print_message("redrive of 36 x 1 MB bodies moved %lld in one command: %.1f ms\n",
                  (long long)moved, ms_since(&t0));
    assert_true(moved >= 30 && moved < 36);
    assert_int_equal(next, moved + 1);
    assert_int_equal(h_int(r, "remaining"), 36 - moved);
    json_decref(r);
    r = h_run(h, "{'op':'queue.redrive','queue':'dlq','to':'other','from':%lld}", (long long)next);
    assert_int_equal(h_int(r, "moved"), 36 - moved);
    assert_null(json_object_get(r, "next"));
    json_decref(r);
    assert_int_equal(qstat(h, "other", "ready"), 36);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_peek_changes_nothing, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_peek_cursor, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_peek_hostile, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_peek_reply_bounded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_peek_scan_bounded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_records_source, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_back_in_order, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_bounded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_source_gone, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_hostile, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_ordered, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_ordered_inflight, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_bytes_bounded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_determinism_snapshot, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_largest_command, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
