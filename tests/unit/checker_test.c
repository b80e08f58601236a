/* checker_test.c: the cluster tests' history checker (tests/lib/checker.c)
 * on hand-made histories: what it must accept (the late answer of a stalled
 * leader, seen in CI) and each violation it must report.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "checker.h"

#define VIS_MS 2000

static long verify(checker_t *k)
{
    long bad = checker_verify(k, stdout);
    checker_free(k);
    return bad;
}

/* A sent, received once, deleted: clean. */
static void test_plain(void **state)
{
    (void)state;
    checker_t *k = checker_new(VIS_MS);
    checker_sent(k, 1);
    checker_received(k, 1, 100, 110, 1, 1);
    checker_deleted(k, 1, 120);
    assert_int_equal(verify(k), 0);
}

/* failover_test in CI: the leader took receive A (count 1), was stopped
 * before answering; the new leader committed A, the lock ran out, receive B
 * got count 2 and deleted it; then the old leader woke and answered A. A and
 * B overlap in time, so the answer order says nothing: no violation. */
static void test_stalled_leader_answers_late(void **state)
{
    (void)state;
    checker_t *k = checker_new(VIS_MS);
    checker_sent(k, 7);
    checker_received(k, 7, 11354, 16042, 1, 3);
    checker_received(k, 7, 11356, 16039, 2, 1);
    checker_deleted(k, 7, 16040);
    assert_int_equal(verify(k), 0);
}

static void test_never_delivered(void **state)
{
    (void)state;
    checker_t *k = checker_new(VIS_MS);
    checker_sent(k, 1);
    checker_sent(k, 2);
    checker_received(k, 2, 100, 110, 1, 1);
    assert_int_equal(verify(k), 1);
}

/* The count went back after a failover: 2 was answered before 1 was asked. */
static void test_count_went_back(void **state)
{
    (void)state;
    checker_t *k = checker_new(VIS_MS);
    checker_sent(k, 1);
    checker_received(k, 1, 100, 110, 2, 1);
    checker_received(k, 1, 5000, 5010, 1, 2);
    assert_int_equal(verify(k), 1);
}

static void test_count_repeats(void **state)
{
    (void)state;
    checker_t *k = checker_new(VIS_MS);
    checker_sent(k, 1);
    checker_received(k, 1, 100, 110, 1, 1);
    checker_received(k, 1, 5000, 5010, 1, 2);
    assert_int_equal(verify(k), 1);
}

/* Delivered again 500 ms after the previous delivery: its lock was lost. */
static void test_lock_lost(void **state)
{
    (void)state;
    checker_t *k = checker_new(VIS_MS);
    checker_sent(k, 1);
    checker_received(k, 1, 100, 110, 1, 1);
    checker_received(k, 1, 600, 610, 2, 2);
    assert_int_equal(verify(k), 1);
}

static void test_delivered_after_delete(void **state)
{
    (void)state;
    checker_t *k = checker_new(VIS_MS);
    checker_sent(k, 1);
    checker_received(k, 1, 100, 110, 1, 1);
    checker_deleted(k, 1, 120);
    checker_received(k, 1, 3000, 3010, 2, 1);
    assert_int_equal(verify(k), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_stalled_leader_answers_late),
        cmocka_unit_test(test_never_delivered),
        cmocka_unit_test(test_count_went_back),
        cmocka_unit_test(test_count_repeats),
        cmocka_unit_test(test_lock_lost),
        cmocka_unit_test(test_delivered_after_delete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
