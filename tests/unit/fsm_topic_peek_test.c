/* fsm_topic_peek_test.c: topic.peek through the FSM with a fake clock —
 * without a subscription it shows the topic's retained messages, with one
 * the pending messages of that push subscription, in seq order, with tags,
 * key and attrs; it changes nothing (topic and subscription stats, pending
 * set, digest); `next` goes on after max or a reply that would outgrow a
 * frame. Hostile: max 0 and 1000, a string max, a negative or string from,
 * a missing topic or subscription (NOT_FOUND), a queue subscription
 * (BAD_REQUEST: its messages are in the queue). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fsm_harness.h"

/* A peek that must succeed; @extra adds fields (",'from':3"). */
static json_t *peek(harness_t *h, const char *extra)
{
    json_t *r = h_read(h, "{'op':'topic.peek','topic':'t'%s}", extra);
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

static int64_t sub_stat(harness_t *h, const char *key)
{
    json_t *r = h_read(h, "{'op':'subscription.get','topic':'t','name':'s'}");
    int64_t v = h_int(json_object_get(r, "stats"), key);
    json_decref(r);
    return v;
}

static void publish_n(harness_t *h, int n)
{
    for (int i = 0; i < n; i++)
        H_EXPECT(h, "", "{'op':'publish','topic':'t','body':'m%d','tags':['a','b%d'],"
                        "'key':'k.%d','attrs':{'n':'%d'}}", i, i, i, i);
}

static void test_retained(void **state)
{
    harness_t *h = *state;
    char before[65], after[65];
    H_EXPECT(h, "", "{'op':'topic.create','name':'t'}");
    publish_n(h, 5);
    h_digest(h, before);
    json_t *r = peek(h, ",'max':10");
    h_digest(h, after);
    assert_string_equal(before, after);
    assert_int_equal(n_msgs(r), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *m = msg_at(r, i);
        char want[16];
        snprintf(want, sizeof want, "m%zu", i);
        assert_string_equal(h_str(m, "body"), want);
        assert_int_equal(h_int(m, "seq"), (int64_t)i + 1);
        snprintf(want, sizeof want, "k.%zu", i);
        assert_string_equal(h_str(m, "key"), want);
        snprintf(want, sizeof want, "b%zu", i);
        assert_string_equal(json_string_value(json_array_get(json_object_get(m, "tags"), 1)),
                            want);
        snprintf(want, sizeof want, "%zu", i);
        assert_string_equal(h_str(json_object_get(m, "attrs"), "n"), want);
        assert_true(h_int(m, "published_at") > 0);
        assert_non_null(h_str(m, "msg_id"));
    }
    assert_null(json_object_get(r, "next"));
    json_decref(r);
    /* default max is 1, as queue.peek's */
    r = peek(h, "");
    assert_int_equal(n_msgs(r), 1);
    assert_int_equal(h_int(r, "next"), 2);
    json_decref(r);
}

static void test_pending_unchanged(void **state)
{
    harness_t *h = *state;
    char before[65], after[65];
    H_EXPECT(h, "", "{'op':'topic.create','name':'t'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'s',"
                    "'endpoint':{'push':true}}");
    publish_n(h, 4);
    H_EXPECT(h, "", "{'op':'ack','topic':'t','subscription':'s','seqs':[2]}");
    h_digest(h, before);
    json_t *r = peek(h, ",'subscription':'s','max':256");
    h_digest(h, after);
    assert_string_equal(before, after);
    assert_int_equal(n_msgs(r), 3);
    assert_int_equal(h_int(msg_at(r, 0), "seq"), 1);
    assert_int_equal(h_int(msg_at(r, 1), "seq"), 3);
    assert_int_equal(h_int(msg_at(r, 2), "seq"), 4);
    assert_string_equal(h_str(msg_at(r, 1), "body"), "m2");
    assert_null(json_object_get(r, "next"));
    json_decref(r);
    /* nothing delivered, acked or counted: a second peek sees the same */
    r = peek(h, ",'subscription':'s','max':256");
    assert_int_equal(n_msgs(r), 3);
    json_decref(r);
    assert_int_equal(sub_stat(h, "pending"), 3);
    assert_int_equal(sub_stat(h, "acked_total"), 1);
    assert_int_equal(sub_stat(h, "cursor"), 1);
    /* the retained log still holds the acked one */
    r = peek(h, ",'max':256");
    assert_int_equal(n_msgs(r), 4);
    json_decref(r);
}

static void test_cursor(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'t'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'s',"
                    "'endpoint':{'push':true}}");
    publish_n(h, 6);
    H_EXPECT(h, "", "{'op':'ack','topic':'t','subscription':'s','seqs':[3]}");
    json_t *r = peek(h, ",'subscription':'s','max':2");
    assert_int_equal(n_msgs(r), 2);
    int64_t next = h_int(r, "next");
    assert_int_equal(next, 3);
    json_decref(r);
    char extra[96];
    snprintf(extra, sizeof extra, ",'subscription':'s','max':2,'from':%lld", (long long)next);
    r = peek(h, extra);
    assert_int_equal(n_msgs(r), 2);
    assert_int_equal(h_int(msg_at(r, 0), "seq"), 4); /* 3 was acked */
    assert_int_equal(h_int(msg_at(r, 1), "seq"), 5);
    next = h_int(r, "next");
    json_decref(r);
    snprintf(extra, sizeof extra, ",'subscription':'s','max':2,'from':%lld", (long long)next);
    r = peek(h, extra);
    assert_int_equal(n_msgs(r), 1);
    assert_null(json_object_get(r, "next"));
    json_decref(r);
    /* a from past the end is an empty page */
    r = peek(h, ",'max':5,'from':100");
    assert_int_equal(n_msgs(r), 0);
    assert_null(json_object_get(r, "next"));
    json_decref(r);
}

/* The reply stops before it would outgrow a frame, one message at least. */
static void test_reply_bounded(void **state)
{
    harness_t *h = *state;
    size_t big = 1000 * 1000;
    char *body = malloc(big + 1);
    memset(body, 'b', big);
    body[big] = 0;
    H_EXPECT(h, "", "{'op':'topic.create','name':'t','attrs':{'max_msg_size':1048576}}");
    for (int i = 0; i < 20; i++)
        H_EXPECT(h, "", "{'op':'publish','topic':'t','body':'%s'}", body);
    free(body);
    json_t *r = peek(h, ",'max':20");
    size_t n = n_msgs(r);
    print_message("topic peek of 20 x 1 MB bodies returned %zu\n", n);
    assert_true(n >= 10 && n < 17);
    assert_int_equal(h_int(r, "next"), (int64_t)n + 1);
    json_decref(r);
}

static void test_hostile(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'t'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'toq',"
                    "'endpoint':{'queue':'q'}}");
    publish_n(h, 1);
    const char *bad[] = {
        "{'op':'topic.peek','topic':'t','max':0}",
        "{'op':'topic.peek','topic':'t','max':1000}",
        "{'op':'topic.peek','topic':'t','max':'ten'}",
        "{'op':'topic.peek','topic':'t','from':-5}",
        "{'op':'topic.peek','topic':'t','from':'1-1'}",
        "{'op':'topic.peek','topic':'t','subscription':'toq'}",
        "{'op':'topic.peek','topic':'t','subscription':7}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *r = h_read(h, "%s", bad[i]);
        if (strcmp(h_code(r), "BAD_REQUEST") != 0 && strcmp(h_code(r), "BAD_NAME") != 0)
            fail_msg("%s: %s", bad[i], json_dumps(r, JSON_COMPACT));
        json_decref(r);
    }
    json_t *r = h_read(h, "{'op':'topic.peek','topic':'nope'}");
    assert_string_equal(h_code(r), "NOT_FOUND");
    json_decref(r);
    r = h_read(h, "{'op':'topic.peek','topic':'t','subscription':'nope'}");
    assert_string_equal(h_code(r), "NOT_FOUND");
    json_decref(r);
    r = h_read(h, "{'op':'topic.peek','topic':'t','subscription':'toq'}");
    assert_non_null(strstr(h_str(r, "error"), "queue 'q'"));
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_retained, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_pending_unchanged, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_cursor, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_reply_bounded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_hostile, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
