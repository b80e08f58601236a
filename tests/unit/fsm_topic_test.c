/* fsm_topic_test.c: topics and subscriptions through the FSM — routing-key and
 * tag matching, fan-out to queue and push endpoints (atomic with the publish,
 * failures counted), push pending/ack/sub.dead, from and rewind, retention,
 * snapshot/restore and determinism of a random topic workload, and the shared
 * bodies of queue messages fanned out from a topic (reference counts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fsm_harness.h"
#include "sm/sm_int.h"

static bool km(const char *binding, const char *key)
{
    return route_key_match(binding, strlen(binding), key, strlen(key));
}

static void test_key_match(void **state)
{
    (void)state;
    /* literal words */
    assert_true(km("a.b.c", "a.b.c"));
    assert_false(km("a.b.c", "a.b"));
    assert_false(km("a.b", "a.b.c"));
    assert_false(km("a.b", "a.bb"));
    /* '*' is exactly one word */
    assert_true(km("*", "a"));
    assert_false(km("*", "a.b"));
    assert_false(km("*", ""));
    assert_true(km("*.*", "a.b"));
    assert_false(km("*.*", "a"));
    assert_false(km("*.*", "a.b.c"));
    assert_true(km("a.*.c", "a.x.c"));
    assert_false(km("a.*.c", "a.c"));
    /* '#' alone: everything, the empty key included */
    assert_true(km("#", ""));
    assert_true(km("#", "a"));
    assert_true(km("#", "a.b.c"));
    /* 'a.#': a, then zero or more words */
    assert_true(km("a.#", "a"));
    assert_true(km("a.#", "a.b"));
    assert_true(km("a.#", "a.b.c"));
    assert_false(km("a.#", "b.a"));
    assert_false(km("a.#", ""));
    /* '#.b' */
    assert_true(km("#.b", "b"));
    assert_true(km("#.b", "a.b"));
    assert_true(km("#.b", "x.y.b"));
    assert_false(km("#.b", "b.x"));
    /* 'a.#.b': backtracking over repeated words */
    assert_true(km("a.#.b", "a.b"));
    assert_true(km("a.#.b", "a.x.b"));
    assert_true(km("a.#.b", "a.b.b"));
    assert_true(km("a.#.b", "a.b.x.b"));
    assert_false(km("a.#.b", "a.b.x"));
    assert_false(km("a.#.b", "a"));
    /* combinations */
    assert_true(km("#.*", "a"));
    assert_false(km("#.*", ""));
    assert_true(km("*.#", "a.b.c"));
    assert_true(km("#.#", ""));
    assert_true(km("a.#.#.b", "a.b"));
    assert_true(km("*.#.*", "a.b"));
    assert_false(km("*.#.*", "a"));
    /* empty words: "a..b" has an empty middle word, which '*' matches */
    assert_true(km("a..b", "a..b"));
    assert_true(km("a.*.b", "a..b"));
    assert_false(km("a.b", "a..b"));
    assert_true(km("", ""));
    assert_false(km("", "a"));
    assert_false(km("a", ""));
    /* '#' and '*' are wildcards only as whole words */
    assert_false(km("a#", "ab"));
    assert_true(km("a#", "a#"));
    assert_false(km("a*", "ab"));
    /* over 255 bytes never matches */
    char big[300];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_false(km("#", big));
}

static void test_topic_crud(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'payments'}");
    H_EXPECT(h, "", "{'op':'topic.create','name':'payments'}");
    H_EXPECT(h, "EXISTS", "{'op':'topic.create','name':'payments','attrs':{'retention':60}}");
    H_EXPECT(h, "BAD_NAME", "{'op':'topic.create','name':'-x'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'topic.create','name':'x','attrs':{'max_msg_size':10}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'topic.create','name':'x','attrs':{'retention':1296001}}");
    H_EXPECT(h, "", "{'op':'topic.create','name':'x','attrs':{'retention':60,'foo':1}}");
    H_EXPECT(h, "", "{'op':'topic.set','name':'payments','attrs':{'max_msg_size':2048}}");
    json_t *r = h_read(h, "{'op':'topic.get','name':'payments'}");
    assert_true(h_ok(r));
    assert_int_equal(h_int(json_object_get(r, "attrs"), "max_msg_size"), 2048);
    assert_int_equal(h_int(json_object_get(r, "attrs"), "retention"), 86400);
    assert_int_equal(h_int(json_object_get(r, "stats"), "first_seq"), 1);
    assert_int_equal(h_int(json_object_get(r, "stats"), "last_seq"), 0);
    json_decref(r);
    r = h_read(h, "{'op':'topic.list'}");
    assert_int_equal(h_int(r, "total"), 2);
    json_decref(r);
    H_EXPECT(h, "", "{'op':'topic.delete','name':'x'}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'topic.delete','name':'x'}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'publish','topic':'x','body':'m'}");
}

static void test_publish_validation(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'t','attrs':{'max_msg_size':1024}}");
    char body[1100];
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = 0;
    H_EXPECT(h, "TOO_LARGE", "{'op':'publish','topic':'t','body':'%s'}", body);
    H_EXPECT(h, "BAD_REQUEST", "{'op':'publish','topic':'t','body':'m','tags':['a','b','c','d','e','f']}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'publish','topic':'t','body':'m','tags':['']}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'publish','topic':'t','body':'m','key':5}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'publish','topic':'t'}");
    json_t *r = h_run(h, "{'op':'publish','topic':'t','body':'m','tags':['a','b','c','d','e']}");
    assert_true(h_ok(r));
    assert_int_equal(h_int(r, "seq"), 1);
    assert_int_equal(h_int(r, "delivered"), 0);
    json_decref(r);
    r = h_run(h, "{'op':'publish_batch','topic':'t','msgs':[{'body':'a'},{'body':'%s'},{'body':'c'}]}",
              body);
    json_t *res = json_object_get(r, "results");
    assert_int_equal(h_int(json_array_get(res, 0), "seq"), 2);
    assert_string_equal(h_str(json_array_get(res, 1), "code"), "TOO_LARGE");
    assert_int_equal(h_int(json_array_get(res, 2), "seq"), 3);
    json_decref(r);
}

/* Publish and return `delivered`. */
static int64_t publish(harness_t *h, const char *extra)
{
    json_t *r = h_run(h, "{'op':'publish','topic':'pay','body':'b'%s}", extra);
    if (!h_ok(r))
        fail_msg("publish: %s", json_dumps(r, JSON_COMPACT));
    int64_t d = h_int(r, "delivered");
    json_decref(r);
    return d;
}

static int64_t ready(harness_t *h, const char *queue)
{
    json_t *r = h_read(h, "{'op':'queue.get','name':'%s'}", queue);
    int64_t n = h_int(json_object_get(r, "stats"), "ready");
    json_decref(r);
    return n;
}

static json_t *sub_stats(harness_t *h, const char *name)
{
    json_t *r = h_read(h, "{'op':'subscription.get','topic':'pay','name':'%s'}", name);
    if (!h_ok(r))
        fail_msg("subscription.get: %s", json_dumps(r, JSON_COMPACT));
    json_t *s = json_incref(json_object_get(r, "stats"));
    json_decref(r);
    return s;
}

static int64_t sub_stat(harness_t *h, const char *sub, const char *key)
{
    json_t *s = sub_stats(h, sub);
    int64_t v = h_int(s, key);
    json_decref(s);
    return v;
}

static void test_filters(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    const char *qs[] = {"all", "tagged", "keyed", "both"};
    for (int i = 0; i < 4; i++)
        H_EXPECT(h, "", "{'op':'queue.create','name':'%s'}", qs[i]);
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'all','endpoint':{'queue':'all'}}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'tagged','endpoint':{'queue':'tagged'},"
                  "'filter_tags':['vip','big']}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'keyed','endpoint':{'queue':'keyed'},"
                  "'binding_keys':['pay.*.cn','refund.#']}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'both','endpoint':{'queue':'both'},"
                  "'filter_tags':['vip'],'binding_keys':['pay.#']}");
    /* same settings again: ok; other settings: EXISTS */
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'all','endpoint':{'queue':'all'}}");
    H_EXPECT(h, "EXISTS", "{'op':'subscription.create','topic':'pay','name':'all','endpoint':{'queue':'all'},"
                        "'filter_tags':['x']}");
    assert_int_equal(publish(h, ""), 1);                                   /* all */
    assert_int_equal(publish(h, ",'tags':['big']"), 2);                    /* all tagged */
    assert_int_equal(publish(h, ",'key':'pay.card.cn'"), 2);               /* all keyed */
    assert_int_equal(publish(h, ",'key':'refund'"), 2);                    /* all keyed */
    assert_int_equal(publish(h, ",'key':'pay.card.cn','tags':['vip']"), 4);
    assert_int_equal(publish(h, ",'key':'pay.x','tags':['vip']"), 3);      /* all tagged both */
    assert_int_equal(publish(h, ",'tags':['vip']"), 2);                    /* no key: not both */
    assert_int_equal(ready(h, "all"), 7);
    assert_int_equal(ready(h, "tagged"), 4);
    assert_int_equal(ready(h, "keyed"), 3);
    assert_int_equal(ready(h, "both"), 2);
    assert_int_equal(sub_stat(h, "both", "matched_total"), 2);
    /* the queue copy carries the topic's msg_id, tags and attrs */
    json_t *r = h_run(h, "{'op':'publish','topic':'pay','body':'hello','tags':['vip'],'key':'pay.a',"
                         "'attrs':{'merchant':'m1'}}");
    char msg_id[64];
    snprintf(msg_id, sizeof(msg_id), "%s", h_str(r, "msg_id"));
    json_decref(r);
    H_EXPECT(h, "", "{'op':'queue.purge','name':'both'}");
    json_decref(h_run(h, "{'op':'publish','topic':'pay','body':'hello','tags':['vip'],'key':'pay.a',"
                         "'attrs':{'merchant':'m1'}}"));
    r = h_run(h, "{'op':'receive','queue':'both'}");
    json_t *m = json_array_get(json_object_get(r, "msgs"), 0);
    assert_non_null(m);
    assert_string_equal(h_str(m, "body"), "hello");
    assert_string_equal(json_string_value(json_array_get(json_object_get(m, "tags"), 0)), "vip");
    assert_string_equal(h_str(json_object_get(m, "attrs"), "merchant"), "m1");
    assert_string_not_equal(h_str(m, "msg_id"), msg_id); /* the second publish's id */
    assert_int_equal(h_str(m, "msg_id")[0], 't');
    json_decref(r);
    /* a plain send carries no tags */
    H_EXPECT(h, "", "{'op':'send','queue':'all','body':'x'}");
    H_EXPECT(h, "", "{'op':'queue.purge','name':'all'}");
    H_EXPECT(h, "", "{'op':'send','queue':'all','body':'x'}");
    r = h_run(h, "{'op':'receive','queue':'all'}");
    assert_null(json_object_get(json_array_get(json_object_get(r, "msgs"), 0), "tags"));
    json_decref(r);
}

static void test_fanout_failures_counted(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'a'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'full','attrs':{'max_backlog':1}}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'z'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'a','endpoint':{'queue':'a'}}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'m','endpoint':{'queue':'full'}}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'z','endpoint':{'queue':'z'}}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'subscription.create','topic':'pay','name':'q','endpoint':{'queue':'nope'}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'subscription.create','topic':'pay','name':'q','endpoint':{}}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'subscription.create','topic':'pay','name':'q','endpoint':{'push':true},"
                           "'filter_script':'risk'}");
    json_t *r = h_run(h, "{'op':'subscription.create','topic':'pay','name':'q','endpoint':{'push':true},"
                         "'filter_script':'risk'}");
    assert_string_equal(h_str(r, "error"), "script 'risk' does not exist (load it with script.load)");
    json_decref(r);
    assert_int_equal(publish(h, ""), 3);
    assert_int_equal(publish(h, ""), 3); /* matched, though 'full' refused it */
    assert_int_equal(ready(h, "a"), 2);
    assert_int_equal(ready(h, "full"), 1);
    assert_int_equal(ready(h, "z"), 2);
    json_t *s = sub_stats(h, "m");
    assert_int_equal(h_int(s, "matched_total"), 2);
    assert_int_equal(h_int(s, "failed_total"), 1);
    json_t *le = json_object_get(s, "last_error");
    assert_string_equal(h_str(le, "code"), "BACKLOG_FULL");
    assert_int_equal(h_int(le, "at"), (int64_t)h->now);
    json_decref(s);
    /* the queue goes away: counted as NOT_FOUND */
    H_EXPECT(h, "", "{'op':'queue.delete','name':'full'}");
    assert_int_equal(publish(h, ""), 3);
    s = sub_stats(h, "m");
    assert_int_equal(h_int(s, "failed_total"), 2);
    assert_string_equal(h_str(json_object_get(s, "last_error"), "code"), "NOT_FOUND");
    json_decref(s);
    assert_int_equal(sub_stat(h, "a", "failed_total"), 0);
    r = h_read(h, "{'op':'topic.get','name':'pay'}");
    assert_int_equal(json_array_size(json_object_get(r, "subscriptions")), 3);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "subscriptions"), 1)), "m");
    assert_int_equal(h_int(json_object_get(r, "stats"), "published_total"), 3);
    json_decref(r);
}

struct seen {
    uint64_t seqs[64];
    unsigned n, stop_at;
};

static int collect(void *arg, const fsm_push_msg_t *m)
{
    struct seen *s = arg;
    s->seqs[s->n++] = m->seq;
    return s->stop_at && s->n >= s->stop_at;
}

static int count_only(void *arg, const fsm_push_msg_t *m)
{
    ((struct seen *)arg)->seqs[0] = m->seq;
    return 0;
}

static int pending(harness_t *h, const char *sub, uint64_t after, struct seen *out)
{
    memset(out, 0, sizeof(*out));
    return fsm_push_pending(h->f, "pay", 3, sub, strlen(sub), after, 64, collect, out);
}

struct woken {
    int n, acked, rewound;
    uint64_t acked_seq;
    char last[64];
};

static void on_push(void *arg, enum fsm_push_event ev, const char *topic, size_t tl,
                    const char *sub, size_t sl, uint64_t seq)
{
    struct woken *w = arg;
    if (ev == FSM_PUSH_ACKED) {
        w->acked++;
        w->acked_seq = seq;
    } else if (ev == FSM_PUSH_REWOUND) {
        w->rewound++;
    } else {
        w->n++;
    }
    snprintf(w->last, sizeof(w->last), "%.*s/%.*s", (int)tl, topic, (int)sl, sub);
}

static void test_push_pending_ack_dead(void **state)
{
    harness_t *h = *state;
    struct woken w = {0};
    struct seen s;
    fsm_retry_t rt;
    fsm_set_push_cb(h->f, on_push, &w);
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'subscription.create','topic':'pay','name':'p','endpoint':{'push':true},"
                             "'retry':{'strategy':'linear'}}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'subscription.create','topic':'pay','name':'p','endpoint':{'push':true},"
                           "'dead_letter_queue':'nope'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'p','endpoint':{'push':true},"
                  "'retry':{'strategy':'exponential','max_attempts':3,'interval_ms':100},"
                  "'dead_letter_queue':'dlq'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'d','endpoint':{'push':true}}");
    assert_int_equal(fsm_push_retry(h->f, "pay", 3, "p", 1, &rt), 0);
    assert_true(rt.exponential);
    assert_int_equal(rt.max_attempts, 3);
    assert_int_equal(rt.interval_ms, 100);
    assert_int_equal(rt.max_interval_ms, 300000);
    assert_int_equal(fsm_push_retry(h->f, "pay", 3, "d", 1, &rt), 0);
    assert_false(rt.exponential);
    assert_int_equal(rt.max_attempts, 16);
    assert_int_equal(rt.interval_ms, 1000);
    assert_int_equal(fsm_push_retry(h->f, "pay", 3, "x", 1, &rt), MQHUB_ENOT_FOUND);
    w.n = 0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(publish(h, ",'attrs':{'k':'v'}"), 2);
    assert_int_equal(w.n, 8); /* once per entry and push subscription */
    assert_int_equal(pending(h, "p", 0, &s), 4);
    assert_int_equal(s.seqs[0], 1);
    assert_int_equal(s.seqs[3], 4);
    assert_int_equal(pending(h, "p", 2, &s), 2);
    assert_int_equal(s.seqs[0], 3);
    memset(&s, 0, sizeof(s));
    s.stop_at = 1;
    assert_int_equal(fsm_push_pending(h->f, "pay", 3, "p", 1, 0, 64, collect, &s), 1);
    memset(&s, 0, sizeof(s));
    assert_int_equal(fsm_push_pending(h->f, "pay", 3, "p", 1, 0, 2, collect, &s), 2);
    assert_int_equal(pending(h, "nope", 0, &s), MQHUB_ENOT_FOUND);
    /* ack: one ok, one unknown */
    json_t *r = h_run(h, "{'op':'ack','topic':'pay','subscription':'p','seqs':[2,9]}");
    json_t *res = json_object_get(r, "results");
    assert_true(json_is_true(json_object_get(json_array_get(res, 0), "ok")));
    assert_string_equal(h_str(json_array_get(res, 1), "code"), "NOT_FOUND");
    json_decref(r);
    assert_int_equal(w.acked, 1); /* the push engine hears of the applied ack */
    assert_int_equal(w.acked_seq, 2);
    assert_string_equal(w.last, "pay/p");
    assert_false(fsm_push_is_pending(h->f, "pay", 3, "p", 1, 2));
    assert_true(fsm_push_is_pending(h->f, "pay", 3, "p", 1, 1));
    assert_int_equal(sub_stat(h, "p", "cursor"), 1);
    /* sub.dead: to the DLQ with the topic's attrs + mqhub.* */
    r = h_run(h, "{'op':'sub.dead','topic':'pay','subscription':'p','seq':1,'attempts':3}");
    assert_string_equal(h_str(r, "outcome"), "dead_lettered");
    json_decref(r);
    H_EXPECT(h, "NOT_FOUND", "{'op':'sub.dead','topic':'pay','subscription':'p','seq':1,'attempts':3}");
    r = h_run(h, "{'op':'receive','queue':'dlq'}");
    json_t *m = json_array_get(json_object_get(r, "msgs"), 0);
    assert_string_equal(h_str(m, "msg_id"), "t1-1");
    json_t *a = json_object_get(m, "attrs");
    assert_string_equal(h_str(a, "k"), "v");
    assert_string_equal(h_str(a, "mqhub.topic"), "pay");
    assert_string_equal(h_str(a, "mqhub.subscription"), "p");
    json_decref(r);
    /* without a DLQ it is dropped */
    r = h_run(h, "{'op':'sub.dead','topic':'pay','subscription':'d','seq':1,'attempts':16}");
    assert_string_equal(h_str(r, "outcome"), "dropped");
    json_decref(r);
    /* the DLQ is gone: dropped, and the failure is visible */
    H_EXPECT(h, "", "{'op':'queue.delete','name':'dlq'}");
    r = h_run(h, "{'op':'sub.dead','topic':'pay','subscription':'p','seq':3,'attempts':3}");
    assert_string_equal(h_str(r, "outcome"), "dropped");
    json_decref(r);
    json_t *st = sub_stats(h, "p");
    assert_int_equal(h_int(st, "pending"), 1);
    assert_int_equal(h_int(st, "cursor"), 4);
    assert_int_equal(h_int(st, "acked_total"), 1);
    assert_int_equal(h_int(st, "dead_lettered_total"), 1);
    assert_int_equal(h_int(st, "dropped_total"), 1);
    assert_string_equal(h_str(json_object_get(st, "last_error"), "code"), "NOT_FOUND");
    json_decref(st);
    H_EXPECT(h, "", "{'op':'ack','topic':'pay','subscription':'p','seqs':[4]}");
    assert_int_equal(sub_stat(h, "p", "cursor"), 5); /* last_seq + 1 */
    /* queue subscriptions take no acks */
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'q','endpoint':{'queue':'q'}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'ack','topic':'pay','subscription':'q','seqs':[1]}");
    assert_int_equal(pending(h, "q", 0, &s), MQHUB_ENOT_FOUND);
    /* delete: the pending set goes with it */
    H_EXPECT(h, "", "{'op':'subscription.delete','topic':'pay','name':'d'}");
    assert_false(fsm_push_is_pending(h->f, "pay", 3, "d", 1, 4));
    r = h_read(h, "{'op':'subscription.get','topic':'pay','name':'d'}");
    assert_string_equal(h_code(r), "NOT_FOUND");
    json_decref(r);
}

/* A long pending set is visited in chunks, in seq order, to the end. */
static void test_push_pending_many(void **state)
{
    harness_t *h = *state;
    struct seen s;
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'p','endpoint':{'push':true}}");
    for (int i = 0; i < 300; i++)
        publish(h, "");
    memset(&s, 0, sizeof(s));
    assert_int_equal(fsm_push_pending(h->f, "pay", 3, "p", 1, 0, 1000, count_only, &s), 300);
    assert_int_equal(s.seqs[0], 300); /* count_only keeps the last seq */
    assert_int_equal(fsm_push_pending(h->f, "pay", 3, "p", 1, 250, 1000, count_only, &s), 50);
    assert_int_equal(fsm_push_pending(h->f, "pay", 3, "p", 1, 0, 257, count_only, &s), 257);
    assert_int_equal(s.seqs[0], 257);
    assert_int_equal(fsm_push_pending(h->f, "pay", 3, "p", 1, UINT64_MAX, 10, count_only, &s), 0);
}

static void test_from_and_rewind(void **state)
{
    harness_t *h = *state;
    struct seen s;
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    for (int i = 0; i < 6; i++) {
        publish(h, i % 2 ? ",'tags':['odd']" : "");
        h_advance(h, 1000);
    }
    /* published at H_T0, H_T0+1000, ... H_T0+5000 */
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'late','endpoint':{'push':true}}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'early','endpoint':{'push':true},"
                  "'from':'earliest'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'odd','endpoint':{'push':true},"
                  "'from':'earliest','filter_tags':['odd']}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'time','endpoint':{'push':true},"
                  "'from':%llu}", (unsigned long long)(H_T0 + 3000));
    H_EXPECT(h, "BAD_REQUEST", "{'op':'subscription.create','topic':'pay','name':'x','endpoint':{'push':true},"
                             "'from':'tomorrow'}");
    assert_int_equal(pending(h, "late", 0, &s), 0);
    assert_int_equal(pending(h, "early", 0, &s), 6);
    assert_int_equal(pending(h, "odd", 0, &s), 3);
    assert_int_equal(s.seqs[0], 2);
    assert_int_equal(pending(h, "time", 0, &s), 3);
    assert_int_equal(s.seqs[0], 4);
    json_t *r = h_read(h, "{'op':'subscription.get','topic':'pay','name':'time'}");
    assert_int_equal(h_int(r, "from"), (int64_t)(H_T0 + 3000));
    assert_true(json_is_true(json_object_get(json_object_get(r, "endpoint"), "push")));
    json_decref(r);
    /* rewind a push subscription by seq and by time */
    H_EXPECT(h, "", "{'op':'ack','topic':'pay','subscription':'early','seqs':[1,2,3,4,5,6]}");
    r = h_run(h, "{'op':'subscription.rewind','topic':'pay','name':'early','seq':5}");
    assert_int_equal(h_int(r, "rewound"), 2);
    json_decref(r);
    assert_int_equal(pending(h, "early", 0, &s), 2);
    r = h_run(h, "{'op':'subscription.rewind','topic':'pay','name':'odd','time':%llu}",
              (unsigned long long)H_T0);
    assert_int_equal(h_int(r, "rewound"), 3); /* already pending: stays pending once */
    json_decref(r);
    assert_int_equal(sub_stat(h, "odd", "pending"), 3);
    H_EXPECT(h, "BAD_REQUEST", "{'op':'subscription.rewind','topic':'pay','name':'odd'}");
    /* rewind a queue subscription: appended again */
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'q','endpoint':{'queue':'q'}}");
    assert_int_equal(ready(h, "q"), 0);
    r = h_run(h, "{'op':'subscription.rewind','topic':'pay','name':'q','time':%llu}",
              (unsigned long long)(H_T0 + 4000));
    assert_int_equal(h_int(r, "rewound"), 2);
    json_decref(r);
    assert_int_equal(ready(h, "q"), 2);
}

static void test_retention(void **state)
{
    harness_t *h = *state;
    struct seen s;
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay','attrs':{'retention':60}}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'p','endpoint':{'push':true}}");
    assert_int_equal(fsm_next_due(h->f), UINT64_MAX);
    publish(h, "");
    publish(h, "");
    assert_int_equal(fsm_next_due(h->f), H_T0 + 60000);
    h_advance(h, 30000);
    publish(h, "");
    H_EXPECT(h, "", "{'op':'ack','topic':'pay','subscription':'p','seqs':[2]}");
    h_advance(h, 30000);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(pending(h, "p", 0, &s), 1);
    assert_int_equal(s.seqs[0], 3);
    json_t *st = sub_stats(h, "p");
    assert_int_equal(h_int(st, "expired_total"), 1);
    assert_int_equal(h_int(st, "cursor"), 3);
    json_decref(st);
    json_t *r = h_read(h, "{'op':'topic.get','name':'pay'}");
    json_t *ts = json_object_get(r, "stats");
    assert_int_equal(h_int(ts, "retained"), 1);
    assert_int_equal(h_int(ts, "first_seq"), 3);
    assert_int_equal(h_int(ts, "last_seq"), 3);
    json_decref(r);
    assert_int_equal(fsm_next_due(h->f), H_T0 + 90000);
    h_advance(h, 30000);
    H_EXPECT(h, "", "{'op':'tick'}");
    r = h_read(h, "{'op':'topic.get','name':'pay'}");
    assert_int_equal(h_int(json_object_get(r, "stats"), "retained"), 0);
    assert_int_equal(h_int(json_object_get(r, "stats"), "first_seq"), 4);
    json_decref(r);
    assert_int_equal(fsm_next_due(h->f), UINT64_MAX);
    assert_int_equal(sub_stat(h, "p", "pending"), 0);
    /* topic.delete removes the log and the subscriptions */
    publish(h, "");
    H_EXPECT(h, "", "{'op':'topic.delete','name':'pay'}");
    assert_false(fsm_push_is_pending(h->f, "pay", 3, "p", 1, 4));
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    r = h_read(h, "{'op':'subscription.list','topic':'pay'}");
    assert_int_equal(json_array_size(json_object_get(r, "subscriptions")), 0);
    json_decref(r);
}

/* ---- determinism: a random topic workload on two state machines ---- */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void setup_topics(harness_t *h)
{
    const char *specs[] = {
        "{'op':'queue.create','name':'q1','attrs':{'max_backlog':20}}",
        "{'op':'queue.create','name':'q2'}",
        "{'op':'queue.create','name':'dlq'}",
        "{'op':'topic.create','name':'pay','attrs':{'retention':60}}",
        "{'op':'subscription.create','topic':'pay','name':'a','endpoint':{'queue':'q1'},'filter_tags':['x']}",
        "{'op':'subscription.create','topic':'pay','name':'b','endpoint':{'queue':'q2'},'binding_keys':['k.*']}",
        "{'op':'subscription.create','topic':'pay','name':'c','endpoint':{'push':true},'dead_letter_queue':'dlq'}",
        "{'op':'subscription.create','topic':'pay','name':'d','endpoint':{'push':true},'binding_keys':['#.z']}",
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
        H_EXPECT(h, "", "%s", specs[i]);
}

/* Apply entries [from, to) of the workload seeded by *rng; returns all
 * replies as one JSON string (caller frees). */
static char *run(harness_t *h, uint64_t *rng, int from, int to)
{
    static const char *keys[] = {"k.a", "k.b.z", "a.z", "k"};
    json_t *all = json_array();
    for (int e = from; e < to; e++) {
        char *cmds[4];
        size_t lens[4];
        unsigned n = 1 + rnd(rng) % 4;
        h_advance(h, rnd(rng) % 5000);
        for (unsigned i = 0; i < n; i++) {
            uint64_t x = rnd(rng);
            switch (x % 8) {
            case 0:
                cmds[i] = h_pack(&lens[i], "{'op':'ack','topic':'pay','subscription':'c','seqs':[%llu]}",
                                 (unsigned long long)(x >> 8) % 50 + 1);
                break;
            case 1:
                cmds[i] = h_pack(&lens[i], "{'op':'sub.dead','topic':'pay','subscription':'%s',"
                                 "'seq':%llu,'attempts':1}", x & 256 ? "c" : "d",
                                 (unsigned long long)(x >> 9) % 50 + 1);
                break;
            case 2:
                cmds[i] = h_pack(&lens[i], "{'op':'tick'}");
                break;
            case 3:
                cmds[i] = h_pack(&lens[i], "{'op':'receive','queue':'q1','max':3}");
                break;
            case 4:
                cmds[i] = h_pack(&lens[i], "{'op':'subscription.rewind','topic':'pay','name':'%s',"
                                 "'seq':%llu}", x & 256 ? "c" : "b", (unsigned long long)(x >> 9) % 50);
                break;
            default:
                cmds[i] = h_pack(&lens[i], "{'op':'publish','topic':'pay','body':'m%d','key':'%s',"
                                 "'tags':['%s']}", e, keys[(x >> 8) % 4], x & 4096 ? "x" : "y");
            }
        }
        json_t *r = h_entry(h, n, cmds, lens);
        json_array_extend(all, r);
        json_decref(r);
        for (unsigned i = 0; i < n; i++)
            free(cmds[i]);
    }
    char *s = json_dumps(all, JSON_COMPACT);
    json_decref(all);
    return s;
}

static void test_determinism_and_snapshot(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        harness_t *a = h_open(H_T0), *b = h_open(H_T0), *c = h_open(H_T0);
        uint64_t ra = seed * 7919, rb = seed * 7919;
        char da[65], db[65];
        setup_topics(a);
        setup_topics(b);
        char *xa = run(a, &ra, 0, 100), *xb = run(b, &rb, 0, 100);
        assert_string_equal(xa, xb);
        assert_non_null(strstr(xa, "\"delivered\":2"));
        free(xa);
        free(xb);
        h_digest(a, da);
        h_digest(b, db);
        assert_string_equal(da, db);
        h_snapshot_restore(b, c);
        h_digest(c, db);
        assert_string_equal(da, db);
        h_close(b);
        xa = run(a, &ra, 100, 200);
        xb = run(c, &rb, 100, 200);
        assert_string_equal(xa, xb);
        free(xa);
        free(xb);
        h_digest(a, da);
        h_digest(c, db);
        assert_string_equal(da, db);
        assert_int_equal(fsm_next_due(a->f), fsm_next_due(c->f));
        json_t *ga = h_read(a, "{'op':'subscription.get','topic':'pay','name':'c'}");
        json_t *gc = h_read(c, "{'op':'subscription.get','topic':'pay','name':'c'}");
        assert_true(json_equal(ga, gc));
        json_decref(ga);
        json_decref(gc);
        h_close(a);
        h_close(c);
    }
}

/* ---- shared bodies: queue messages refer to the topic message's body ---- */

/* The reference count of topic 'pay' (id 1) message @seq. */
static uint64_t refs(harness_t *h, uint64_t seq)
{
    unsigned char k[17];
    size_t vl;
    uint64_t n = 0;
    store_key_id_seq(k, 'R', 1, seq);
    unsigned char *v = store_get(fsm_store(h->f), k, sizeof(k), &vl);
    if (v && vl == 8)
        n = store_be64_get(v);
    store_free(v);
    return n;
}

/* Receive one message of @q, check its body, return its receipt (static). */
static const char *recv_one(harness_t *h, const char *q, const char *body)
{
    static char receipt[64];
    json_t *r = h_run(h, "{'op':'receive','queue':'%s','max':1}", q);
    json_t *m = json_array_get(json_object_get(r, "msgs"), 0);
    if (!m)
        fail_msg("receive %s: %s", q, json_dumps(r, JSON_COMPACT));
    assert_string_equal(h_str(m, "body"), body);
    snprintf(receipt, sizeof(receipt), "%s", h_str(m, "receipt"));
    json_decref(r);
    return receipt;
}

static void setup_shared(harness_t *h, const char *q4_attrs)
{
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay','attrs':{'retention':60}}");
    for (int i = 1; i <= 4; i++) {
        H_EXPECT(h, "", "{'op':'queue.create','name':'q%d'%s}", i, i == 4 ? q4_attrs : "");
        H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'s%d',"
                 "'endpoint':{'queue':'q%d'}}", i, i);
    }
}

static void test_shared_body_retention(void **state)
{
    harness_t *h = *state;
    char receipt[64];
    setup_shared(h, ",'attrs':{'rewind_window':30}");
    json_t *r = h_run(h, "{'op':'publish','topic':'pay','body':'shared'}");
    assert_int_equal(h_int(r, "delivered"), 4);
    json_decref(r);
    /* one body (in the retained message), no queue copies */
    assert_int_equal(h_keys(h, 'B'), 0);
    assert_int_equal(h_keys(h, 'P'), 1);
    assert_int_equal(h_keys(h, 'M'), 4);
    assert_int_equal(refs(h, 1), 4);
    /* the topic drops it; the body moves to G for the queue messages */
    h_advance(h, 61000);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(h_keys(h, 'P'), 0);
    assert_int_equal(h_keys(h, 'G'), 1);
    for (int i = 1; i <= 3; i++) {
        char q[8];
        snprintf(q, sizeof(q), "q%d", i);
        snprintf(receipt, sizeof(receipt), "%s", recv_one(h, q, "shared"));
        H_EXPECT(h, "", "{'op':'delete','queue':'%s','receipts':['%s']}", q, receipt);
        assert_int_equal(refs(h, 1), (uint64_t)(3 - i + 1));
        assert_int_equal(h_keys(h, 'G'), 1);
    }
    /* q4 keeps a deleted message for its rewind window: still referenced */
    snprintf(receipt, sizeof(receipt), "%s", recv_one(h, "q4", "shared"));
    H_EXPECT(h, "", "{'op':'delete','queue':'q4','receipts':['%s']}", receipt);
    assert_int_equal(refs(h, 1), 1);
    H_EXPECT(h, "", "{'op':'queue.rewind','name':'q4','seq':1}");
    snprintf(receipt, sizeof(receipt), "%s", recv_one(h, "q4", "shared"));
    H_EXPECT(h, "", "{'op':'delete','queue':'q4','receipts':['%s']}", receipt);
    h_advance(h, 31000);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(h_keys(h, 'G'), 0);
    assert_int_equal(h_keys(h, 'R'), 0);
    assert_int_equal(h_keys(h, 'M'), 0);
}

static void test_shared_body_purge_delete(void **state)
{
    harness_t *h = *state;
    setup_shared(h, "");
    publish(h, "");
    publish(h, "");
    assert_int_equal(refs(h, 1), 4);
    H_EXPECT(h, "", "{'op':'queue.purge','name':'q1'}");
    assert_int_equal(refs(h, 1), 4); /* purge is O(1): tick reclaims */
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(refs(h, 1), 3);
    assert_int_equal(refs(h, 2), 3);
    H_EXPECT(h, "", "{'op':'queue.delete','name':'q2'}");
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(refs(h, 1), 2);
    assert_int_equal(refs(h, 2), 2);
    /* topic.delete is O(1): tick reclaims P, keeping the bodies the queues
     * still refer to */
    H_EXPECT(h, "", "{'op':'topic.delete','name':'pay'}");
    assert_int_equal(h_keys(h, 'P'), 2);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(h_keys(h, 'P'), 0);
    assert_int_equal(h_keys(h, 'G'), 2);
    recv_one(h, "q3", "b");
    H_EXPECT(h, "", "{'op':'queue.purge','name':'q3'}");
    H_EXPECT(h, "", "{'op':'queue.delete','name':'q4'}");
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(h_keys(h, 'R'), 0);
    assert_int_equal(h_keys(h, 'G'), 0);
    assert_int_equal(h_keys(h, 'B'), 0);
}

static void test_shared_body_dead_letter(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}");
    setup_shared(h, ",'attrs':{'dead_letter':{'queue':'dlq','max_receives':1}}");
    json_t *r = h_run(h, "{'op':'publish','topic':'pay','body':'poison'}");
    char msg_id[64];
    snprintf(msg_id, sizeof(msg_id), "%s", h_str(r, "msg_id"));
    json_decref(r);
    H_EXPECT(h, "", "{'op':'receive','queue':'q4','max':1,'visibility':1}");
    h_advance(h, 61000);
    H_EXPECT(h, "", "{'op':'tick'}"); /* the topic drops it */
    H_EXPECT(h, "", "{'op':'receive','queue':'q4','max':1}"); /* moves it to dlq */
    assert_int_equal(refs(h, 1), 4);
    assert_int_equal(h_keys(h, 'B'), 0);
    r = h_run(h, "{'op':'receive','queue':'dlq','max':1}");
    json_t *m = json_array_get(json_object_get(r, "msgs"), 0);
    assert_non_null(m);
    assert_string_equal(h_str(m, "body"), "poison");
    assert_string_equal(h_str(m, "msg_id"), msg_id);
    json_decref(r);
    for (int i = 1; i <= 3; i++)
        H_EXPECT(h, "", "{'op':'queue.purge','name':'q%d'}", i);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(h_keys(h, 'G'), 1);
    H_EXPECT(h, "", "{'op':'queue.delete','name':'dlq'}");
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(h_keys(h, 'G'), 0);
    assert_int_equal(h_keys(h, 'R'), 0);
}

/* Apply the same shared-body history to @a and @b, with @c restored from
 * a snapshot of @b halfway; the digests agree. */
static void shared_steps(harness_t *h, int from, int to)
{
    for (int i = from; i < to; i++) {
        h_advance(h, 7000);
        json_t *r = h_run(h, "{'op':'publish','topic':'pay','body':'m%d'}", i);
        json_decref(r);
        r = h_run(h, "{'op':'receive','queue':'q%d','max':2}", 1 + i % 4);
        json_t *m = json_array_get(json_object_get(r, "msgs"), 0);
        if (m && i % 3 == 0)
            H_EXPECT(h, "", "{'op':'delete','queue':'q%d','receipts':['%s']}", 1 + i % 4,
                     h_str(m, "receipt"));
        json_decref(r);
        if (i % 7 == 6)
            H_EXPECT(h, "", "{'op':'queue.purge','name':'q%d'}", 1 + i % 4);
        H_EXPECT(h, "", "{'op':'tick'}");
    }
}

static void test_shared_body_determinism(void **state)
{
    (void)state;
    harness_t *a = h_open(H_T0), *b = h_open(H_T0), *c = h_open(H_T0);
    char da[65], db[65];
    setup_shared(a, ",'attrs':{'rewind_window':20}");
    setup_shared(b, ",'attrs':{'rewind_window':20}");
    shared_steps(a, 0, 20);
    shared_steps(b, 0, 20);
    assert_true(h_keys(a, 'G') > 0);
    h_digest(a, da);
    h_digest(b, db);
    assert_string_equal(da, db);
    h_snapshot_restore(b, c);
    h_close(b);
    shared_steps(a, 20, 40);
    shared_steps(c, 20, 40);
    h_digest(a, da);
    h_digest(c, db);
    assert_string_equal(da, db);
    assert_int_equal(h_keys(a, 'R'), h_keys(c, 'R'));
    h_close(a);
    h_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_match),
        cmocka_unit_test_setup_teardown(test_topic_crud, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_publish_validation, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_filters, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_fanout_failures_counted, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_push_pending_ack_dead, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_push_pending_many, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_from_and_rewind, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_retention, h_setup, h_teardown),
        cmocka_unit_test(test_determinism_and_snapshot),
        cmocka_unit_test_setup_teardown(test_shared_body_retention, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_shared_body_purge_delete, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_shared_body_dead_letter, h_setup, h_teardown),
        cmocka_unit_test(test_shared_body_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
