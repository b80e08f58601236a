/* client_crash_test.c: acknowledged sends survive kill -9.
 *
 * Rounds: keep a window of pipelined sends going (each body "m<N>", N unique),
 * SIGKILL mqhubd at a random moment, let the in-flight requests fail, restart
 * it on the same data. Afterwards receive everything: each acknowledged N
 * exactly once, each unacknowledged N (its answer lost in the crash) at most
 * once, nothing else. The client never resends after a lost connection, so
 * "at most once" is the server's promise to check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testhub.h"

#define ROUNDS 5
#define MAX_MSGS 200000

enum { UNSENT = 0, PENDING, ACKED, FAILED };

typedef struct crash {
    testhub_t hub;
    mqhub_client_t *c;
    unsigned char state[MAX_MSGS]; /* per N */
    unsigned char seen[MAX_MSGS];
    unsigned next;
} crash_t;

typedef struct slot {
    crash_t *cr;
    unsigned n;
} slot_t;

static const char *mqhubd_path;

static void on_sent(void *arg, const mqhub_send_result_t *r)
{
    slot_t *s = arg;
    s->cr->state[s->n] = r->status == 0 ? ACKED : FAILED;
    free(s);
}

static void submit(crash_t *cr)
{
    char body[32];
    slot_t *s = malloc(sizeof *s);
    assert_non_null(s);
    *s = (slot_t){cr, cr->next};
    int len = snprintf(body, sizeof body, "m%u", cr->next);
    if (mqhub_client_send_async(cr->c, "crash", body, (size_t)len, NULL, on_sent, s) != 0) {
        free(s);
        return;
    }
    cr->state[cr->next++] = PENDING;
}

/* Send until @kill_at, kill -9, drain the failures, restart. */
static void round_trip(crash_t *cr, uint64_t kill_at)
{
    while (testhub_now_ms() < kill_at && cr->next < MAX_MSGS) {
        while (mqhub_client_pending(cr->c) < 64 && cr->next < MAX_MSGS)
            submit(cr);
        mqhub_client_poll(cr->c, 5);
    }
    testhub_kill(&cr->hub);
    mqhub_client_flush(cr->c, 15000);
    assert_int_equal(mqhub_client_pending(cr->c), 0);
    assert_int_equal(testhub_restart(&cr->hub), 0);
}

static void drain(crash_t *cr, unsigned *dups, unsigned *strangers)
{
    mqhub_receive_opts_t o = {.max = 256, .wait = 1, .visibility = 600};
    int empty = 0, lost_conn = 0;
    while (empty < 2) {
        mqhub_msg_list_t l;
        int rc = mqhub_client_receive(cr->c, "crash", &o, &l);
        if (rc == MQHUB_ECONN && ++lost_conn < 3)
            continue; /* first call after the restart */
        assert_int_equal(rc, 0);
        empty = l.n == 0 ? empty + 1 : 0;
        for (size_t i = 0; i < l.n; i++) {
            unsigned n;
            if (sscanf(l.msgs[i].body, "m%u", &n) != 1 || n >= cr->next) {
                (*strangers)++;
                continue;
            }
            if (cr->seen[n]++)
                (*dups)++;
        }
        mqhub_msg_list_free(&l);
    }
}

static void test_kill9_rounds(void **state)
{
    crash_t *cr = calloc(1, sizeof *cr);
    mqhub_client_opts_t o = {.timeout_ms = 5000, .window = 64};
    unsigned dups = 0, strangers = 0, acked = 0, lost = 0, unknown_kept = 0;
    char err[256];

    assert_non_null(cr);
    srand((unsigned)time(NULL));
    assert_int_equal(testhub_start(&cr->hub, mqhubd_path, NULL), 0);
    assert_int_equal(mqhub_client_connect(&cr->c, cr->hub.address, &o, err, sizeof err), 0);
    assert_int_equal(mqhub_client_queue_create(cr->c, "crash", NULL), 0);
    for (int r = 0; r < ROUNDS; r++)
        round_trip(cr, testhub_now_ms() + 100 + (uint64_t)(rand() % 400));
    drain(cr, &dups, &strangers);

    for (unsigned n = 0; n < cr->next; n++) {
        if (cr->state[n] == ACKED) {
            acked++;
            lost += cr->seen[n] == 0;
        } else {
            unknown_kept += cr->seen[n] > 0;
        }
    }
    fprintf(stderr, "crash: %u sent, %u acknowledged, %u lost, %u duplicates, "
                    "%u unacknowledged but stored\n", cr->next, acked, lost, dups, unknown_kept);
    assert_true(acked > 0);
    assert_int_equal(lost, 0);
    assert_int_equal(dups, 0);
    assert_int_equal(strangers, 0);
    mqhub_client_close(cr->c);
    testhub_cleanup(&cr->hub);
    free(cr);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_kill9_rounds)};
    mqhubd_path = testhub_binary(argc, argv);
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
