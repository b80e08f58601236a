/* topic_push_test.c: push subscriptions end to end against one real mqhubd
 * through libmqhub: delivery and ack, the credit window (never more
 * unacknowledged pushes than granted), redelivery timing of both retry
 * strategies, competing consumers, unsubscribe/close handing messages on,
 * dead-lettering, rewind, and a restart in the middle of delivery (acked
 * messages stay gone, unacked ones come again).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testhub.h"

#define MAX_GOT 256

typedef struct got {
    uint64_t seq[MAX_GOT];
    uint32_t attempt[MAX_GOT];
    uint64_t at[MAX_GOT]; /* monotonic ms of arrival */
    char body[MAX_GOT][32];
    size_t n;
    unsigned closed;
} got_t;

typedef struct fixture {
    testhub_t hub;
    mqhub_client_t *c;
} fixture_t;

static const char *mqhubd_path;

static void must(mqhub_client_t *c, int rc)
{
    if (rc != 0)
        fprintf(stderr, "call failed: %s: %s\n", mqhub_err_name(rc), mqhub_client_errmsg(c));
    assert_int_equal(rc, 0);
}

static void on_push(void *arg, const mqhub_push_t *p)
{
    got_t *g = arg;
    if (strcmp(p->kind, "closed") == 0) {
        g->closed++;
        return;
    }
    for (size_t i = 0; i < p->n && g->n < MAX_GOT; i++) {
        g->seq[g->n] = p->msgs[i].seq;
        g->attempt[g->n] = p->msgs[i].attempt;
        g->at[g->n] = testhub_now_ms();
        snprintf(g->body[g->n], sizeof g->body[0], "%s", (const char *)p->msgs[i].body);
        g->n++;
    }
}

static mqhub_client_t *consumer(const testhub_t *h, got_t *g)
{
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.timeout_ms = 5000};
    char err[256];
    int rc = mqhub_client_connect(&c, h->address, &o, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "connect: %s\n", err);
    assert_int_equal(rc, 0);
    memset(g, 0, sizeof *g);
    mqhub_client_on_push(c, on_push, g);
    return c;
}

/* Poll @c until @g holds @n messages or @ms passed. */
static void wait_for(mqhub_client_t *c, got_t *g, size_t n, int ms)
{
    uint64_t end = testhub_now_ms() + (uint64_t)ms;
    while (g->n < n && testhub_now_ms() < end)
        mqhub_client_poll(c, 20);
}

/* Poll for @ms whatever arrives. */
static void pump_for(mqhub_client_t *c, int ms)
{
    uint64_t end = testhub_now_ms() + (uint64_t)ms;
    while (testhub_now_ms() < end)
        mqhub_client_poll(c, 20);
}

static void publish_n(mqhub_client_t *c, const char *topic, int n)
{
    for (int i = 0; i < n; i++) {
        char body[32];
        mqhub_publish_result_t r;
        snprintf(body, sizeof body, "m%d", i + 1);
        must(c, mqhub_client_publish(c, topic, body, strlen(body), NULL, &r));
        assert_int_equal(r.status, 0);
    }
}

/* A topic with one push subscription "s". */
static void push_topic(mqhub_client_t *c, const char *topic, const char *retry,
                       uint32_t max_attempts, uint64_t interval_ms, const char *dlq)
{
    mqhub_sub_opts_t o = {.retry = retry, .max_attempts = max_attempts,
                          .interval_ms = interval_ms, .dead_letter_queue = dlq};
    must(c, mqhub_client_topic_create(c, topic, NULL));
    must(c, mqhub_client_sub_create(c, topic, "s", &o));
}

static void ack_all(mqhub_client_t *c, const char *topic, const got_t *g, size_t from)
{
    if (g->n > from)
        must(c, mqhub_client_ack(c, topic, "s", &g->seq[from], g->n - from, NULL));
}

static uint64_t sub_stat(mqhub_client_t *c, const char *topic, const char *key)
{
    mqhub_response_t r;
    uint64_t v = UINT64_MAX;
    must(c, mqhub_client_sub_get(c, topic, "s", &r));
    const msgpack_object *st = mqhub_map_get(&r.map, "stats");
    const msgpack_object *o = st ? mqhub_map_get(st, key) : NULL;
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        v = o->via.u64;
    mqhub_response_free(&r);
    return v;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    mqhub_client_opts_t o = {.timeout_ms = 5000};
    char err[256];
    if (!f || testhub_start(&f->hub, mqhubd_path, NULL) != 0)
        return -1;
    if (mqhub_client_connect(&f->c, f->hub.address, &o, err, sizeof err) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    mqhub_client_close(f->c);
    testhub_cleanup(&f->hub);
    free(f);
    return 0;
}

/* ---------------------------------------------------------------- tests */

static void test_deliver_and_ack(void **state)
{
    fixture_t *f = *state;
    got_t g;
    push_topic(f->c, "t.basic", "backoff", 5, 5000, NULL);
    assert_int_equal(mqhub_client_subscribe(f->c, "t.basic", "nope", 1), MQHUB_ENOT_FOUND);
    mqhub_client_t *c = consumer(&f->hub, &g);
    must(c, mqhub_client_subscribe(c, "t.basic", "s", 10));
    publish_n(f->c, "t.basic", 3);
    wait_for(c, &g, 3, 3000);
    assert_int_equal(g.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(g.seq[i], i + 1);
        assert_int_equal(g.attempt[i], 1);
    }
    assert_string_equal(g.body[0], "m1");
    ack_all(c, "t.basic", &g, 0);
    assert_int_equal(sub_stat(f->c, "t.basic", "pending"), 0);
    pump_for(c, 200);
    assert_int_equal(g.n, 3); /* nothing comes again */
    must(c, mqhub_client_unsubscribe(c, "t.basic", "s"));
    mqhub_client_close(c);
}

static void test_credit_window(void **state)
{
    fixture_t *f = *state;
    got_t g;
    push_topic(f->c, "t.credit", "backoff", 5, 10000, NULL);
    mqhub_client_t *c = consumer(&f->hub, &g);
    must(c, mqhub_client_subscribe(c, "t.credit", "s", 2));
    publish_n(f->c, "t.credit", 10);
    pump_for(c, 400);
    assert_int_equal(g.n, 2); /* window of 2, nothing acked */
    ack_all(c, "t.credit", &g, 0);
    pump_for(c, 400);
    assert_int_equal(g.n, 4); /* two slots freed */
    must(c, mqhub_client_credit(c, "t.credit", "s", 3));
    pump_for(c, 400);
    assert_int_equal(g.n, 7); /* 2 unacked + 3 more slots */
    for (size_t i = 0; i < g.n; i++)
        assert_int_equal(g.seq[i], i + 1);
    mqhub_client_close(c);
}

static void test_backoff_timing(void **state)
{
    fixture_t *f = *state;
    got_t g;
    push_topic(f->c, "t.backoff", "backoff", 3, 200, NULL);
    mqhub_client_t *c = consumer(&f->hub, &g);
    must(c, mqhub_client_subscribe(c, "t.backoff", "s", 5));
    publish_n(f->c, "t.backoff", 1);
    wait_for(c, &g, 3, 3000);
    assert_int_equal(g.n, 3);
    for (size_t i = 1; i < 3; i++) {
        uint64_t gap = g.at[i] - g.at[i - 1];
        assert_int_equal(g.attempt[i], i + 1);
        assert_true(gap >= 180 && gap < 450);
    }
    mqhub_client_close(c);
}

static void test_exponential_timing(void **state)
{
    fixture_t *f = *state;
    got_t g;
    push_topic(f->c, "t.exp", "exponential", 4, 100, NULL);
    mqhub_client_t *c = consumer(&f->hub, &g);
    must(c, mqhub_client_subscribe(c, "t.exp", "s", 5));
    publish_n(f->c, "t.exp", 1);
    wait_for(c, &g, 4, 4000);
    assert_int_equal(g.n, 4);
    for (size_t i = 1; i < 4; i++) {
        uint64_t want = 100u << (i - 1), gap = g.at[i] - g.at[i - 1];
        assert_true(gap >= want - 20 && gap < want + 250);
    }
    mqhub_client_close(c);
}

static void test_competing_consumers(void **state)
{
    fixture_t *f = *state;
    got_t a, b;
    push_topic(f->c, "t.compete", "backoff", 5, 10000, NULL);
    mqhub_client_t *ca = consumer(&f->hub, &a), *cb = consumer(&f->hub, &b);
    must(ca, mqhub_client_subscribe(ca, "t.compete", "s", 100));
    must(cb, mqhub_client_subscribe(cb, "t.compete", "s", 100));
    publish_n(f->c, "t.compete", 20);
    uint64_t end = testhub_now_ms() + 3000;
    while (a.n + b.n < 20 && testhub_now_ms() < end) {
        mqhub_client_poll(ca, 10);
        mqhub_client_poll(cb, 10);
    }
    assert_int_equal(a.n + b.n, 20);
    assert_true(a.n > 0 && b.n > 0);
    for (size_t i = 0; i < a.n; i++)
        for (size_t j = 0; j < b.n; j++)
            assert_true(a.seq[i] != b.seq[j]);
    /* a leaves without acking: b gets a's messages at once, attempt 2 */
    size_t had = b.n, moved = a.n;
    mqhub_client_close(ca);
    wait_for(cb, &b, had + moved, 2000);
    assert_int_equal(b.n, had + moved);
    assert_int_equal(b.attempt[had], 2);
    ack_all(cb, "t.compete", &b, 0);
    assert_int_equal(sub_stat(f->c, "t.compete", "pending"), 0);
    mqhub_client_close(cb);
}

static void test_dead_letter(void **state)
{
    fixture_t *f = *state;
    got_t g;
    mqhub_msg_list_t l;
    mqhub_receive_opts_t ro = {.max = 1, .wait = 3, .visibility = -1};
    must(f->c, mqhub_client_queue_create(f->c, "t.dlq", NULL));
    push_topic(f->c, "t.dead", "backoff", 2, 100, "t.dlq");
    mqhub_client_t *c = consumer(&f->hub, &g);
    must(c, mqhub_client_subscribe(c, "t.dead", "s", 5));
    publish_n(f->c, "t.dead", 1);
    wait_for(c, &g, 2, 2000);
    assert_int_equal(g.n, 2);
    must(f->c, mqhub_client_receive(f->c, "t.dlq", &ro, &l));
    assert_int_equal(l.n, 1);
    assert_memory_equal(l.msgs[0].body, "m1", 2);
    mqhub_msg_list_free(&l);
    pump_for(c, 300);
    assert_int_equal(g.n, 2); /* no third attempt */
    assert_int_equal(sub_stat(f->c, "t.dead", "pending"), 0);
    mqhub_client_close(c);
}

static void test_rewind(void **state)
{
    fixture_t *f = *state;
    got_t g;
    uint64_t seq = 2, rewound = 0;
    push_topic(f->c, "t.rewind", "backoff", 5, 10000, NULL);
    mqhub_client_t *c = consumer(&f->hub, &g);
    must(c, mqhub_client_subscribe(c, "t.rewind", "s", 10));
    publish_n(f->c, "t.rewind", 3);
    wait_for(c, &g, 3, 2000);
    assert_int_equal(g.n, 3);
    ack_all(c, "t.rewind", &g, 0);
    must(f->c, mqhub_client_sub_rewind(f->c, "t.rewind", "s", NULL, &seq, &rewound));
    assert_int_equal(rewound, 2);
    wait_for(c, &g, 5, 2000);
    assert_int_equal(g.n, 5);
    assert_int_equal(g.seq[3], 2);
    assert_int_equal(g.seq[4], 3);
    mqhub_client_close(c);
}

static void test_no_match(void **state)
{
    fixture_t *f = *state;
    const char *tags[] = {"card"}, *other[] = {"wire"};
    mqhub_sub_opts_t o = {.filter_tags = tags, .n_filter_tags = 1};
    mqhub_publish_opts_t po = {.tags = other, .n_tags = 1};
    mqhub_publish_result_t r;
    must(f->c, mqhub_client_topic_create(f->c, "t.nomatch", NULL));
    must(f->c, mqhub_client_sub_create(f->c, "t.nomatch", "s", &o));
    must(f->c, mqhub_client_publish(f->c, "t.nomatch", "x", 1, &po, &r));
    assert_int_equal(r.delivered, 0);
    po.tags = tags;
    must(f->c, mqhub_client_publish(f->c, "t.nomatch", "y", 1, &po, &r));
    assert_int_equal(r.delivered, 1);
}

static void test_restart_mid_delivery(void **state)
{
    fixture_t *f = *state;
    got_t g;
    push_topic(f->c, "t.restart", "backoff", 5, 10000, NULL);
    mqhub_client_t *c = consumer(&f->hub, &g);
    must(c, mqhub_client_subscribe(c, "t.restart", "s", 10));
    publish_n(f->c, "t.restart", 4);
    wait_for(c, &g, 4, 2000);
    assert_int_equal(g.n, 4);
    must(c, mqhub_client_ack(c, "t.restart", "s", g.seq, 2, NULL)); /* 1 and 2 */
    assert_int_equal(testhub_stop(&f->hub), 0); /* a clean exit, not a crash in the stop */
    assert_int_equal(testhub_restart(&f->hub), 0);
    mqhub_client_close(c);
    c = consumer(&f->hub, &g);
    must(c, mqhub_client_subscribe(c, "t.restart", "s", 10));
    wait_for(c, &g, 2, 3000);
    pump_for(c, 200);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.seq[0], 3);
    assert_int_equal(g.seq[1], 4);
    mqhub_client_close(c);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_and_ack),
        cmocka_unit_test(test_credit_window),
        cmocka_unit_test(test_backoff_timing),
        cmocka_unit_test(test_exponential_timing),
        cmocka_unit_test(test_competing_consumers),
        cmocka_unit_test(test_dead_letter),
        cmocka_unit_test(test_rewind),
        cmocka_unit_test(test_no_match),
        cmocka_unit_test(test_restart_mid_delivery),
    };
    mqhubd_path = testhub_binary(argc, argv);
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
