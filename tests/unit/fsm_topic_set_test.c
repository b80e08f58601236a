/* fsm_topic_set_test.c: subscriptions that change after their creation,
 * through the FSM — http endpoints (validation, push semantics, the
 * cross-topic `subscription.list {endpoint: "http"}`), `subscription.set`
 * changing filters in place (pending messages and the cursor kept, new
 * publishes matched by the new filters), the refusals of set (missing
 * subscription, an endpoint changing kind), and the created_at /
 * modified_at times of queues, topics and subscriptions: from the entry
 * clock, equal on replicas and across snapshot/restore; records written in
 * the formats before these fields still load. */
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

static int64_t publish(harness_t *h, const char *extra)
{
    json_t *r = h_run(h, "{'op':'publish','topic':'pay','body':'b'%s}", extra);
    if (!h_ok(r))
        fail_msg("publish: %s", json_dumps(r, JSON_COMPACT));
    int64_t d = h_int(r, "delivered");
    json_decref(r);
    return d;
}

static json_t *sub_get(harness_t *h, const char *name)
{
    json_t *r = h_read(h, "{'op':'subscription.get','topic':'pay','name':'%s'}", name);
    if (!h_ok(r))
        fail_msg("subscription.get: %s", json_dumps(r, JSON_COMPACT));
    return r;
}

static int64_t sub_stat(harness_t *h, const char *name, const char *key)
{
    json_t *r = sub_get(h, name);
    int64_t v = h_int(json_object_get(r, "stats"), key);
    json_decref(r);
    return v;
}

static int64_t ready(harness_t *h, const char *queue)
{
    json_t *r = h_read(h, "{'op':'queue.get','name':'%s'}", queue);
    int64_t n = h_int(json_object_get(r, "stats"), "ready");
    json_decref(r);
    return n;
}

/* Run a command; fail unless its code is @code and its error contains @part. */
#define EXPECT_ERR(h, code, part, ...)                                                       \
    do {                                                                                     \
        json_t *r_ = h_run(h, __VA_ARGS__);                                                  \
        if (strcmp(h_code(r_), code) != 0 || strstr(h_str(r_, "error"), part) == NULL)       \
            fail_msg("expected %s with '%s', got %s", code, part,                            \
                     json_dumps(r_, JSON_COMPACT));                                          \
        json_decref(r_);                                                                     \
    } while (0)

static int count_msg(void *arg, const fsm_push_msg_t *m)
{
    (void)m;
    (*(int *)arg)++;
    return 0;
}

static int pending_n(harness_t *h, const char *sub)
{
    int n = 0;
    int rc = fsm_push_pending(h->f, "pay", 3, sub, strlen(sub), 0, 1000, count_msg, &n);
    return rc < 0 ? rc : n;
}

/* ---- http endpoints ---- */

static void test_http_validation(void **state)
{
    harness_t *h = *state;
    char big[MQHUB_SUB_URL_MAX + 2];
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    EXPECT_ERR(h, "BAD_REQUEST", "endpoint.http", "{'op':'subscription.create','topic':'pay',"
               "'name':'w','endpoint':{'http':'ftp://x.example/'}}");
    EXPECT_ERR(h, "BAD_REQUEST", "endpoint.http", "{'op':'subscription.create','topic':'pay',"
               "'name':'w','endpoint':{'http':'http://'}}");
    EXPECT_ERR(h, "BAD_REQUEST", "endpoint.http", "{'op':'subscription.create','topic':'pay',"
               "'name':'w','endpoint':{'http':''}}");
    EXPECT_ERR(h, "BAD_REQUEST", "endpoint.http", "{'op':'subscription.create','topic':'pay',"
               "'name':'w','endpoint':{'http':42}}");
    EXPECT_ERR(h, "BAD_REQUEST", "spaces or control", "{'op':'subscription.create',"
               "'topic':'pay','name':'w','endpoint':{'http':'http://a.example/x y'}}");
    EXPECT_ERR(h, "BAD_REQUEST", "byte 18 is 0x0a", "{'op':'subscription.create',"
               "'topic':'pay','name':'w','endpoint':{'http':'http://a.example/x\\ny'}}");
    EXPECT_ERR(h, "BAD_REQUEST", "endpoint.format", "{'op':'subscription.create',"
               "'topic':'pay','name':'w','endpoint':{'http':'http://a.example/','format':'xml'}}");
    EXPECT_ERR(h, "BAD_REQUEST", "{http: url, format?}", "{'op':'subscription.create',"
               "'topic':'pay','name':'w','endpoint':{'http':'http://a.example/','push':true}}");
    /* 1025 bytes is one too many; 1024 is accepted */
    memcpy(big, "https://", 8);
    memset(big + 8, 'a', sizeof(big) - 9);
    big[sizeof(big) - 1] = 0;
    EXPECT_ERR(h, "BAD_REQUEST", "holds 1025 bytes", "{'op':'subscription.create','topic':'pay',"
               "'name':'w','endpoint':{'http':'%s'}}", big);
    big[sizeof(big) - 2] = 0;
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'big','endpoint':"
             "{'http':'%s'}}", big);
    json_t *r = h_read(h, "{'op':'subscription.list'}");
    assert_string_equal(h_code(r), "BAD_REQUEST"); /* no topic, no endpoint filter */
    json_decref(r);
    r = h_read(h, "{'op':'subscription.list','endpoint':'queue'}");
    assert_string_equal(h_code(r), "BAD_REQUEST");
    json_decref(r);
    r = h_read(h, "{'op':'subscription.list','endpoint':'http','limit':1001}");
    assert_string_equal(h_code(r), "BAD_REQUEST");
    json_decref(r);
}

/* An http subscription is a push subscription: pending, ack, dead letters;
 * subscription.get shows its endpoint with the default format. */
static void test_http_is_push(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'w','endpoint':"
             "{'http':'https://hooks.example/in?a=1'},'dead_letter_queue':'dlq',"
             "'retry':{'strategy':'exponential','max_attempts':176,'interval_ms':1000,"
             "'max_interval_ms':512000}}");
    /* the same settings again: ok; another URL: EXISTS */
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'w','endpoint':"
             "{'http':'https://hooks.example/in?a=1','format':'json'},'dead_letter_queue':'dlq',"
             "'retry':{'strategy':'exponential','max_attempts':176,'interval_ms':1000,"
             "'max_interval_ms':512000}}");
    H_EXPECT(h, "EXISTS", "{'op':'subscription.create','topic':'pay','name':'w','endpoint':"
             "{'http':'https://hooks.example/other'}}");
    json_t *r = sub_get(h, "w");
    json_t *ep = json_object_get(r, "endpoint");
    assert_string_equal(h_str(ep, "http"), "https://hooks.example/in?a=1");
    assert_string_equal(h_str(ep, "format"), "json");
    assert_int_equal(json_object_size(ep), 2);
    assert_string_equal(h_str(r, "dead_letter_queue"), "dlq");
    json_decref(r);
    assert_int_equal(publish(h, ""), 1);
    assert_int_equal(publish(h, ""), 1);
    assert_int_equal(pending_n(h, "w"), 2);
    H_EXPECT(h, "", "{'op':'ack','topic':'pay','subscription':'w','seqs':[1]}");
    r = h_run(h, "{'op':'sub.dead','topic':'pay','subscription':'w','seq':2,'attempts':176}");
    assert_string_equal(h_str(r, "outcome"), "dead_lettered");
    json_decref(r);
    assert_int_equal(pending_n(h, "w"), 0);
    assert_int_equal(ready(h, "dlq"), 1);
    fsm_retry_t rt;
    assert_int_equal(fsm_push_retry(h->f, "pay", 3, "w", 1, &rt), 0);
    assert_true(rt.exponential);
    assert_int_equal(rt.max_attempts, 176);
    assert_int_equal(rt.max_interval_ms, 512000);
}

/* The cross-topic listing: http subscriptions only, topic then name order,
 * offset/limit, total; with topic: that topic's only. */
static void test_http_list(void **state)
{
    harness_t *h = *state;
    const char *topics[] = {"b", "a", "c"};
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    for (int i = 0; i < 3; i++) {
        H_EXPECT(h, "", "{'op':'topic.create','name':'%s'}", topics[i]);
        H_EXPECT(h, "", "{'op':'subscription.create','topic':'%s','name':'z','endpoint':"
                 "{'http':'http://h/%s/z','format':'simplified'}}", topics[i], topics[i]);
        H_EXPECT(h, "", "{'op':'subscription.create','topic':'%s','name':'y','endpoint':"
                 "{'http':'http://h/%s/y'}}", topics[i], topics[i]);
        H_EXPECT(h, "", "{'op':'subscription.create','topic':'%s','name':'p','endpoint':"
                 "{'push':true}}", topics[i]);
        H_EXPECT(h, "", "{'op':'subscription.create','topic':'%s','name':'q','endpoint':"
                 "{'queue':'q'}}", topics[i]);
    }
    json_t *r = h_read(h, "{'op':'subscription.list','endpoint':'http'}");
    assert_true(h_ok(r));
    assert_int_equal(h_int(r, "total"), 6);
    json_t *l = json_object_get(r, "subscriptions");
    assert_int_equal(json_array_size(l), 6);
    const char *want[] = {"a/y", "a/z", "b/y", "b/z", "c/y", "c/z"};
    for (size_t i = 0; i < 6; i++) {
        json_t *e = json_array_get(l, i);
        char got[16], url[32];
        snprintf(got, sizeof got, "%s/%s", h_str(e, "topic"), h_str(e, "name"));
        assert_string_equal(got, want[i]);
        snprintf(url, sizeof url, "http://h/%s", want[i]);
        assert_string_equal(h_str(json_object_get(e, "endpoint"), "http"), url);
        assert_string_equal(h_str(json_object_get(e, "endpoint"), "format"),
                            want[i][2] == 'z' ? "simplified" : "json");
    }
    json_decref(r);
    r = h_read(h, "{'op':'subscription.list','endpoint':'http','offset':3,'limit':2}");
    assert_int_equal(h_int(r, "total"), 6);
    l = json_object_get(r, "subscriptions");
    assert_int_equal(json_array_size(l), 2);
    assert_string_equal(h_str(json_array_get(l, 0), "topic"), "b");
    assert_string_equal(h_str(json_array_get(l, 0), "name"), "z");
    assert_string_equal(h_str(json_array_get(l, 1), "topic"), "c");
    json_decref(r);
    r = h_read(h, "{'op':'subscription.list','endpoint':'http','offset':6}");
    assert_int_equal(h_int(r, "total"), 6);
    assert_int_equal(json_array_size(json_object_get(r, "subscriptions")), 0);
    json_decref(r);
    r = h_read(h, "{'op':'subscription.list','endpoint':'http','topic':'c'}");
    assert_int_equal(h_int(r, "total"), 2);
    assert_string_equal(h_str(json_array_get(json_object_get(r, "subscriptions"), 0), "topic"),
                        "c");
    json_decref(r);
    r = h_read(h, "{'op':'subscription.list','endpoint':'http','topic':'nope'}");
    assert_string_equal(h_code(r), "NOT_FOUND");
    json_decref(r);
    /* the plain listing is unchanged: every name of one topic */
    r = h_read(h, "{'op':'subscription.list','topic':'a'}");
    assert_int_equal(json_array_size(json_object_get(r, "subscriptions")), 4);
    json_decref(r);
    /* a deleted topic's subscriptions leave the listing */
    H_EXPECT(h, "", "{'op':'topic.delete','name':'b'}");
    r = h_read(h, "{'op':'subscription.list','endpoint':'http'}");
    assert_int_equal(h_int(r, "total"), 4);
    json_decref(r);
}

/* A named user's listing holds only the topics it has some grant on. */
static void test_http_list_viewer(void **state)
{
    harness_t *h = *state;
    unsigned char hash[FSM_USER_HASH_LEN];
    const char *token = "viewer-token-0123456789";
    const char *topics[] = {"a", "ab", "b"};
    msgpack_sbuffer sb, out;
    msgpack_packer pk;
    msgpack_unpacked u, r;
    for (int i = 0; i < 3; i++) {
        H_EXPECT(h, "", "{'op':'topic.create','name':'%s'}", topics[i]);
        H_EXPECT(h, "", "{'op':'subscription.create','topic':'%s','name':'w','endpoint':"
                 "{'http':'http://h/'}}", topics[i]);
    }
    fsm_user_hash(token, strlen(token), hash);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "user.create");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 1);
    mp_pack_cstr(&pk, "name");
    mp_pack_cstr(&pk, "v");
    mp_pack_cstr(&pk, "token_sha256");
    msgpack_pack_bin(&pk, sizeof hash);
    msgpack_pack_bin_body(&pk, hash, sizeof hash);
    mp_pack_cstr(&pk, "grants");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    mp_pack_cstr(&pk, "verb");
    mp_pack_cstr(&pk, "subscribe");
    mp_pack_cstr(&pk, "pattern");
    mp_pack_cstr(&pk, "a*");
    char *cmd = sb.data;
    size_t len = sb.size;
    json_t *res = h_entry(h, 1, &cmd, &len);
    assert_true(h_ok(json_array_get(res, 0)));
    json_decref(res);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 5);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "subscription.list");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 2);
    mp_pack_cstr(&pk, "endpoint");
    mp_pack_cstr(&pk, "http");
    mp_pack_cstr(&pk, "offset");
    msgpack_pack_uint64(&pk, 1);
    mp_pack_cstr(&pk, "limit");
    msgpack_pack_uint64(&pk, 5);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer_init(&out);
    assert_int_equal(fsm_read_as(h->f, &u.data, hash, &out), 0);
    msgpack_unpacked_init(&r);
    assert_int_equal(msgpack_unpack_next(&r, out.data, out.size, NULL), MSGPACK_UNPACK_SUCCESS);
    json_t *j = h_to_json(&r.data);
    assert_int_equal(h_int(j, "total"), 2); /* a/w and ab/w; not b/w */
    json_t *l = json_object_get(j, "subscriptions");
    assert_int_equal(json_array_size(l), 1); /* offset 1 */
    assert_string_equal(h_str(json_array_get(l, 0), "topic"), "ab");
    json_decref(j);
    msgpack_unpacked_destroy(&r);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- subscription.set ---- */

/* Filters change in place: what was pending stays pending (the cursor does
 * not move), nothing is replayed, the next publishes use the new filters. */
static void test_set_in_place_push(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'p','endpoint':"
             "{'push':true},'filter_tags':['a']}");
    assert_int_equal(publish(h, ",'tags':['a']"), 1);
    assert_int_equal(publish(h, ",'tags':['b']"), 0);
    assert_int_equal(publish(h, ",'tags':['a']"), 1);
    assert_int_equal(pending_n(h, "p"), 2);
    assert_int_equal(sub_stat(h, "p", "cursor"), 1);
    H_EXPECT(h, "", "{'op':'subscription.set','topic':'pay','name':'p','filter_tags':['b']}");
    assert_int_equal(pending_n(h, "p"), 2);            /* kept */
    assert_int_equal(sub_stat(h, "p", "cursor"), 1);   /* not moved */
    assert_int_equal(sub_stat(h, "p", "matched_total"), 2);
    assert_int_equal(publish(h, ",'tags':['a']"), 0);  /* the old filter no longer applies */
    assert_int_equal(publish(h, ",'tags':['b']"), 1);  /* the new one does */
    assert_int_equal(pending_n(h, "p"), 3);
    H_EXPECT(h, "", "{'op':'ack','topic':'pay','subscription':'p','seqs':[1,3,5]}");
    assert_int_equal(pending_n(h, "p"), 0);
    /* routing keys, then clearing every filter with [] */
    H_EXPECT(h, "", "{'op':'subscription.set','topic':'pay','name':'p','binding_keys':['x.#']}");
    json_t *r = sub_get(h, "p");
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "filter_tags"), 0)),
                        "b"); /* absent: kept */
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "binding_keys"),
                                                         0)), "x.#");
    json_decref(r);
    assert_int_equal(publish(h, ",'tags':['b'],'key':'y.1'"), 0);
    assert_int_equal(publish(h, ",'tags':['b'],'key':'x.1'"), 1);
    H_EXPECT(h, "", "{'op':'subscription.set','topic':'pay','name':'p','filter_tags':[],"
             "'binding_keys':null}");
    assert_int_equal(publish(h, ""), 1);
    r = sub_get(h, "p");
    assert_int_equal(json_array_size(json_object_get(r, "filter_tags")), 0);
    assert_int_equal(json_array_size(json_object_get(r, "binding_keys")), 0);
    json_decref(r);
    /* retry and the dead-letter queue */
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}");
    H_EXPECT(h, "", "{'op':'subscription.set','topic':'pay','name':'p','retry':"
             "{'strategy':'backoff','max_attempts':4,'interval_ms':15000},"
             "'dead_letter_queue':'dlq'}");
    fsm_retry_t rt;
    assert_int_equal(fsm_push_retry(h->f, "pay", 3, "p", 1, &rt), 0);
    assert_false(rt.exponential);
    assert_int_equal(rt.max_attempts, 4);
    assert_int_equal(rt.interval_ms, 15000);
    r = sub_get(h, "p");
    assert_string_equal(h_str(r, "dead_letter_queue"), "dlq");
    json_decref(r);
    H_EXPECT(h, "", "{'op':'subscription.set','topic':'pay','name':'p','dead_letter_queue':null}");
    r = sub_get(h, "p");
    assert_true(json_is_null(json_object_get(r, "dead_letter_queue")));
    assert_int_equal(h_int(json_object_get(r, "retry"), "max_attempts"), 4); /* kept */
    json_decref(r);
}

/* A queue endpoint: the messages already in its queue stay; new ones follow
 * the new filters. */
static void test_set_in_place_queue(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'s','endpoint':"
             "{'queue':'q'},'binding_keys':['eu.*']}");
    assert_int_equal(publish(h, ",'key':'eu.fr'"), 1);
    assert_int_equal(publish(h, ",'key':'us.ny'"), 0);
    assert_int_equal(ready(h, "q"), 1);
    H_EXPECT(h, "", "{'op':'subscription.set','topic':'pay','name':'s','binding_keys':['us.*']}");
    assert_int_equal(ready(h, "q"), 1);
    assert_int_equal(publish(h, ",'key':'eu.fr'"), 0);
    assert_int_equal(publish(h, ",'key':'us.ny'"), 1);
    assert_int_equal(ready(h, "q"), 2);
    /* create with the old settings is now EXISTS; with the new ones ok */
    H_EXPECT(h, "EXISTS", "{'op':'subscription.create','topic':'pay','name':'s','endpoint':"
             "{'queue':'q'},'binding_keys':['eu.*']}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'s','endpoint':"
             "{'queue':'q'},'binding_keys':['us.*']}");
}

/* Hostile and mistaken sets: nothing changes. */
static void test_set_refusals(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'p','endpoint':"
             "{'push':true},'filter_tags':['a']}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'q','endpoint':"
             "{'queue':'q'}}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'w','endpoint':"
             "{'http':'http://h/w'}}");
    EXPECT_ERR(h, "NOT_FOUND", "subscription 'nope'", "{'op':'subscription.set','topic':'pay',"
               "'name':'nope','filter_tags':['a']}");
    EXPECT_ERR(h, "NOT_FOUND", "topic 'nope'", "{'op':'subscription.set','topic':'nope',"
               "'name':'p','filter_tags':['a']}");
    EXPECT_ERR(h, "BAD_REQUEST", "cannot change kind", "{'op':'subscription.set','topic':'pay',"
               "'name':'p','endpoint':{'http':'http://h/p'}}");
    EXPECT_ERR(h, "BAD_REQUEST", "cannot change kind", "{'op':'subscription.set','topic':'pay',"
               "'name':'w','endpoint':{'queue':'q'}}");
    EXPECT_ERR(h, "BAD_REQUEST", "cannot change kind", "{'op':'subscription.set','topic':'pay',"
               "'name':'w','endpoint':{'push':true}}");
    EXPECT_ERR(h, "BAD_REQUEST", "cannot change kind", "{'op':'subscription.set','topic':'pay',"
               "'name':'q','endpoint':{'queue':'q'}}");
    EXPECT_ERR(h, "BAD_REQUEST", "endpoint.http", "{'op':'subscription.set','topic':'pay',"
               "'name':'w','endpoint':{'http':'gopher://h/w'}}");
    EXPECT_ERR(h, "BAD_REQUEST", "push and http subscriptions only", "{'op':'subscription.set',"
               "'topic':'pay','name':'q','dead_letter_queue':'q'}");
    EXPECT_ERR(h, "NOT_FOUND", "dead-letter queue 'gone'", "{'op':'subscription.set',"
               "'topic':'pay','name':'p','dead_letter_queue':'gone'}");
    EXPECT_ERR(h, "NOT_FOUND", "script 'nos'", "{'op':'subscription.set','topic':'pay',"
               "'name':'p','filter_script':'nos'}");
    EXPECT_ERR(h, "BAD_REQUEST", "filter_tags", "{'op':'subscription.set','topic':'pay',"
               "'name':'p','filter_tags':'a'}");
    EXPECT_ERR(h, "BAD_REQUEST", "at most 32", "{'op':'subscription.set','topic':'pay',"
               "'name':'p','filter_tags':['1','2','3','4','5','6','7','8','9','10','11','12',"
               "'13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28',"
               "'29','30','31','32','33']}");
    EXPECT_ERR(h, "BAD_REQUEST", "strategy", "{'op':'subscription.set','topic':'pay',"
               "'name':'p','retry':{'strategy':'linear'}}");
    /* nothing of that changed p */
    json_t *r = sub_get(h, "p");
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "filter_tags"), 0)),
                        "a");
    assert_true(json_is_true(json_object_get(json_object_get(r, "endpoint"), "push")));
    assert_int_equal(h_int(r, "modified_at"), h_int(r, "created_at"));
    json_decref(r);
    /* an http endpoint may change URL and format */
    H_EXPECT(h, "", "{'op':'subscription.set','topic':'pay','name':'w','endpoint':"
             "{'http':'https://h2/w','format':'simplified'}}");
    r = sub_get(h, "w");
    assert_string_equal(h_str(json_object_get(r, "endpoint"), "http"), "https://h2/w");
    assert_string_equal(h_str(json_object_get(r, "endpoint"), "format"), "simplified");
    json_decref(r);
    /* a set that names nothing to change is accepted and changes nothing */
    H_EXPECT(h, "", "{'op':'subscription.set','topic':'pay','name':'w'}");
    r = sub_get(h, "w");
    assert_string_equal(h_str(json_object_get(r, "endpoint"), "format"), "simplified");
    json_decref(r);
}

/* ---- times ---- */

static void expect_times(harness_t *h, const char *op, const char *args, uint64_t created,
                         uint64_t modified)
{
    json_t *r = h_read(h, "{'op':'%s',%s}", op, args);
    if (!h_ok(r))
        fail_msg("%s: %s", op, json_dumps(r, JSON_COMPACT));
    assert_int_equal(h_int(r, "created_at"), created);
    assert_int_equal(h_int(r, "modified_at"), modified);
    json_decref(r);
}

static void times_history(harness_t *h)
{
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    h_advance(h, 1000);
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'s','endpoint':"
             "{'queue':'q'}}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'w','endpoint':"
             "{'http':'http://h/w'}}");
    h_advance(h, 2000);
    H_EXPECT(h, "", "{'op':'subscription.set','topic':'pay','name':'w','endpoint':"
             "{'http':'https://h/w2','format':'simplified'}}");
    H_EXPECT(h, "", "{'op':'queue.set','name':'q','attrs':{'delay':5}}");
    H_EXPECT(h, "", "{'op':'topic.set','name':'pay','attrs':{'retention':600}}");
    H_EXPECT(h, "", "{'op':'subscription.set','topic':'pay','name':'s','filter_tags':['t']}");
    h_advance(h, 4000);
    /* traffic is no modification */
    assert_int_equal(publish(h, ",'tags':['t']"), 2); /* s and w */
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'x'}");
}

static void check_times(harness_t *h)
{
    expect_times(h, "queue.get", "'name':'q'", H_T0, H_T0 + 3000);
    expect_times(h, "topic.get", "'name':'pay'", H_T0, H_T0 + 3000);
    expect_times(h, "subscription.get", "'topic':'pay','name':'s'", H_T0 + 1000, H_T0 + 3000);
}

static void test_times(void **state)
{
    harness_t *h = *state, *b = h_open(H_T0), *c = h_open(H_T0 + 999999);
    char da[65], dc[65];
    times_history(h);
    check_times(h);
    times_history(b);
    h_digest(h, da);
    h_digest(b, dc);
    assert_string_equal(da, dc); /* the same entries give the same state */
    h_snapshot_restore(b, c);
    check_times(c);
    h_digest(c, dc);
    assert_string_equal(da, dc);
    /* the http index is rebuilt from the records */
    json_t *la = h_read(h, "{'op':'subscription.list','endpoint':'http'}");
    json_t *lc = h_read(c, "{'op':'subscription.list','endpoint':'http'}");
    assert_int_equal(h_int(lc, "total"), 1);
    assert_string_equal(h_str(json_object_get(json_array_get(json_object_get(lc, "subscriptions"),
                                                             0), "endpoint"), "http"),
                        "https://h/w2");
    assert_true(json_equal(la, lc));
    json_decref(la);
    json_decref(lc);
    /* creating again with the same settings is no modification */
    H_EXPECT(c, "", "{'op':'topic.create','name':'pay','attrs':{'retention':600}}");
    expect_times(c, "topic.get", "'name':'pay'", H_T0, H_T0 + 3000);
    h_close(b);
    h_close(c);
}

/* ---- records written before these fields ---- */

/* Rewrite the record at @k, @kl with only its first @keep items (and, with
 * @cfg_at >= 0, the bin at that index holding an array cut to @cfg_keep):
 * what a hub from before created_at / filter_type / http endpoints wrote. */
static void downgrade(harness_t *h, const void *k, size_t kl, uint32_t keep, int cfg_at,
                      uint32_t cfg_keep)
{
    store_t *st = fsm_store(h->f);
    size_t vl;
    char *v = store_get(st, k, kl, &vl);
    msgpack_unpacked u, cu;
    msgpack_sbuffer sb, cb;
    msgpack_packer pk, cp;
    assert_non_null(v);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, v, vl, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_true(u.data.via.array.size > keep);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, keep);
    for (uint32_t i = 0; i < keep; i++) {
        const msgpack_object *o = &u.data.via.array.ptr[i];
        if ((int)i != cfg_at) {
            msgpack_pack_object(&pk, *o);
            continue;
        }
        msgpack_unpacked_init(&cu);
        assert_int_equal(msgpack_unpack_next(&cu, o->via.bin.ptr, o->via.bin.size, NULL),
                         MSGPACK_UNPACK_SUCCESS);
        msgpack_sbuffer_init(&cb);
        msgpack_packer_init(&cp, &cb, msgpack_sbuffer_write);
        msgpack_pack_array(&cp, cfg_keep);
        for (uint32_t j = 0; j < cfg_keep; j++)
            msgpack_pack_object(&cp, cu.data.via.array.ptr[j]);
        msgpack_pack_bin(&pk, cb.size);
        msgpack_pack_bin_body(&pk, cb.data, cb.size);
        msgpack_sbuffer_destroy(&cb);
        msgpack_unpacked_destroy(&cu);
    }
    assert_int_equal(store_put(st, k, kl, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
    store_free(v);
}

/* A state written by the previous record formats (Q of 19 items, T of 7, S
 * of 12 with a config of 12) loads: times 0, filter_type tags, the old
 * subscription unchanged (the same create again is no conflict) and
 * settable. */
static void test_old_records(void **state)
{
    harness_t *h = *state, *b = h_open(H_T0);
    unsigned char sk[9 + 3] = {'S', 0, 0, 0, 0, 0, 0, 0, 1, 's', 'u', 'b'};
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'topic.create','name':'pay'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'pay','name':'sub','endpoint':"
             "{'queue':'q'},'filter_tags':['a'],'retry':{'strategy':'exponential'}}");
    downgrade(h, "Qq", 2, 19, -1, 0);
    downgrade(h, "Tpay", 4, 7, -1, 0);
    downgrade(h, sk, sizeof sk, 12, 1, 12);
    h_snapshot_restore(h, b);
    expect_times(b, "queue.get", "'name':'q'", 0, 0);
    expect_times(b, "topic.get", "'name':'pay'", 0, 0);
    expect_times(b, "subscription.get", "'topic':'pay','name':'sub'", 0, 0);
    json_t *r = h_read(b, "{'op':'topic.get','name':'pay'}");
    assert_string_equal(h_str(json_object_get(r, "attrs"), "filter_type"), "tags");
    json_decref(r);
    r = h_read(b, "{'op':'subscription.get','topic':'pay','name':'sub'}");
    assert_string_equal(h_str(json_object_get(r, "endpoint"), "queue"), "q");
    assert_string_equal(h_str(json_object_get(r, "retry"), "strategy"), "exponential");
    json_decref(r);
    H_EXPECT(b, "", "{'op':'subscription.create','topic':'pay','name':'sub','endpoint':"
             "{'queue':'q'},'filter_tags':['a'],'retry':{'strategy':'exponential'}}");
    H_EXPECT(b, "", "{'op':'publish','topic':'pay','body':'x','tags':['a']}");
    assert_int_equal(ready(b, "q"), 1);
    H_EXPECT(b, "", "{'op':'subscription.set','topic':'pay','name':'sub','filter_tags':['b']}");
    expect_times(b, "subscription.get", "'topic':'pay','name':'sub'", 0, H_T0);
    h_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_validation, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_is_push, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_list, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_list_viewer, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_set_in_place_push, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_set_in_place_queue, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_set_refusals, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_times, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_old_records, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
