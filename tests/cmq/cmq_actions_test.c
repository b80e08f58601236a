/* cmq_actions_test.c: CMQ actions (transports/cmq/actions.c) against a fake
 * host whose request() records each native request and answers it with the
 * next reply a case scripts — how the actions behave when the hub answers
 * what a real one only answers in a race: a batch accepted in part at apply
 * (6010 with msgList and errorList), refused whole at apply (the first
 * error), refused before anything is sent (no send_batch request at all);
 * and the native requests Subscribe protocol=http and
 * SetSubscriptionAttributes build (endpoint, retry per notifyStrategy), and
 * their refusals before any request. The real hub's side of these is in
 * cmq_test.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmq.h"
#include "codec.h"

#define MAX_REQS 8

/* One case: the replies to give, in order, and the requests seen. */
static struct fake {
    const char *replies[MAX_REQS]; /* JSON */
    json_t *reqs[MAX_REQS];
    size_t n;
    json_t *done;
} fk;

static int fake_request(mqhub_session_t *session, const char *buf, size_t len,
                        mqhub_reply_cb cb, void *arg)
{
    msgpack_unpacked u;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char err[64];
    json_t *reply;
    (void)session;
    assert_true(fk.n < MAX_REQS);
    assert_non_null(fk.replies[fk.n]);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, buf, len, NULL), MSGPACK_UNPACK_SUCCESS);
    fk.reqs[fk.n] = mpjson_unpack(&u.data);
    msgpack_unpacked_destroy(&u);
    reply = json_loads(fk.replies[fk.n++], 0, NULL);
    assert_non_null(reply);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(codec_json_pack(reply, &pk, err, sizeof err), 0);
    json_decref(reply);
    cb(arg, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

static void on_done(void *arg, json_t *reply)
{
    (void)arg;
    fk.done = reply;
}

/* Run the action of the NULL-terminated key, value list against the
 * scripted @replies; the reply is in fk.done, the requests in fk.reqs. */
static void run(const char *const *replies, ...)
{
    static mqhub_host_api_t api;
    cmq_params_t params = {0};
    cmq_call_t call = {0};
    va_list ap;
    const char *k;
    for (size_t i = 0; i < fk.n; i++)
        json_decref(fk.reqs[i]);
    json_decref(fk.done);
    memset(&fk, 0, sizeof fk);
    for (size_t i = 0; replies[i] != NULL; i++)
        fk.replies[i] = replies[i];
    va_start(ap, replies);
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        assert_int_equal(cmq_params_add(&params, k, strlen(k), v, strlen(v)), 0);
    }
    va_end(ap);
    api.request = fake_request;
    call.api = &api;
    call.params = &params;
    call.done = on_done;
    cmq_call_start(&call, 1700000000);
    assert_non_null(fk.done);
    cmq_call_cleanup(&call);
    cmq_params_free(&params);
}

static json_int_t code_of(const json_t *o)
{
    return json_integer_value(json_object_get(o, "code"));
}

static const char *op_of(size_t i)
{
    return json_string_value(json_object_get(fk.reqs[i], "op"));
}

#define QUEUE_GET                                                                            \
    "{\"ok\":true,\"name\":\"q\",\"attrs\":{\"max_msg_size\":1024,\"max_backlog\":0},"       \
    "\"stats\":{\"ready\":0,\"inflight\":0,\"delayed\":0}}"

/* Accepted in part at apply: 6010, what was accepted and what was not. */
static void test_batch_send_partial(void **state)
{
    (void)state;
    const char *replies[] = {
        QUEUE_GET,
        "{\"ok\":true,\"results\":[{\"ok\":true,\"msg_id\":\"m1\",\"seq\":1},"
        "{\"ok\":false,\"code\":\"BACKLOG_FULL\",\"error\":\"full\"},"
        "{\"ok\":true,\"msg_id\":\"m3\",\"seq\":2}]}",
        NULL};
    run(replies, "Action", "BatchSendMessage", "queueName", "q", "msgBody.1", "a", "msgBody.2",
        "b", "msgBody.3", "c", NULL);
    assert_int_equal(fk.n, 2);
    assert_string_equal(op_of(0), "queue.get");
    assert_string_equal(op_of(1), "send_batch");
    assert_int_equal(code_of(fk.done), 6010);
    json_t *ml = json_object_get(fk.done, "msgList"), *el = json_object_get(fk.done, "errorList");
    assert_int_equal(json_array_size(ml), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ml, 1), "msgId")), "m3");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ml, 1), "index")), 3);
    assert_int_equal(json_array_size(el), 1);
    assert_int_equal(code_of(json_array_get(el, 0)), 4410);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(el, 0), "index")), 2);
    assert_non_null(strstr(json_string_value(json_object_get(fk.done, "message")),
                           "2 of 3 messages were accepted"));
}

/* Refused whole at apply: the first error, no msgList (retry all). */
static void test_batch_send_all_refused(void **state)
{
    (void)state;
    const char *replies[] = {
        QUEUE_GET,
        "{\"ok\":true,\"results\":[{\"ok\":false,\"code\":\"BACKLOG_FULL\",\"error\":\"full\"},"
        "{\"ok\":false,\"code\":\"BACKLOG_FULL\",\"error\":\"full\"}]}",
        NULL};
    run(replies, "Action", "BatchSendMessage", "queueName", "q", "msgBody.1", "a", "msgBody.2",
        "b", NULL);
    assert_int_equal(code_of(fk.done), 4410);
    assert_null(json_object_get(fk.done, "msgList"));
}

/* Refused before sending: too large, or more than the room the queue has. */
static void test_batch_send_checked_first(void **state)
{
    (void)state;
    char big[1026];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    const char *replies[] = {QUEUE_GET, NULL};
    run(replies, "Action", "BatchSendMessage", "queueName", "q", "msgBody.1", "a", "msgBody.2",
        big, NULL);
    assert_int_equal(fk.n, 1); /* only the lookup: nothing was submitted */
    assert_int_equal(code_of(fk.done), 4400);
    const char *full[] = {
        "{\"ok\":true,\"name\":\"q\",\"attrs\":{\"max_msg_size\":1024,\"max_backlog\":5},"
        "\"stats\":{\"ready\":2,\"inflight\":1,\"delayed\":1}}",
        NULL};
    run(full, "Action", "BatchSendMessage", "queueName", "q", "msgBody.1", "a", "msgBody.2", "b",
        NULL);
    assert_int_equal(fk.n, 1);
    assert_int_equal(code_of(fk.done), 4410);
    assert_non_null(strstr(json_string_value(json_object_get(fk.done, "message")),
                           "room for 1 of the 2"));
}

static void test_batch_publish_partial(void **state)
{
    (void)state;
    const char *replies[] = {
        "{\"ok\":true,\"name\":\"t\",\"attrs\":{\"max_msg_size\":1024},\"stats\":{}}",
        "{\"ok\":true,\"results\":[{\"ok\":true,\"msg_id\":\"t1-1\",\"seq\":1,\"delivered\":1},"
        "{\"ok\":false,\"code\":\"BLOCKED\",\"error\":\"blocked by script\"}]}",
        NULL};
    run(replies, "Action", "BatchPublishMessage", "topicName", "t", "msgBody.1", "a",
        "msgBody.2", "b", "msgTag.1", "x", NULL);
    assert_string_equal(op_of(1), "publish_batch");
    assert_int_equal(code_of(fk.done), 6010);
    assert_int_equal(json_array_size(json_object_get(fk.done, "msgList")), 1);
    assert_int_equal(code_of(json_array_get(json_object_get(fk.done, "errorList"), 0)), 4000);
}

/* Subscribe protocol=http: an http endpoint; no notifyStrategy is CMQ's
 * default, EXPONENTIAL_DECAY_RETRY (about a day of attempts). */
static void test_subscribe_http_request(void **state)
{
    (void)state;
    const char *replies[] = {"{\"ok\":false,\"code\":\"NOT_FOUND\",\"error\":\"no\"}",
                             "{\"ok\":true}", NULL};
    run(replies, "Action", "Subscribe", "topicName", "t", "subscriptionName", "w", "protocol",
        "http", "endpoint", "https://h.example/in", "notifyContentFormat", "SIMPLIFIED", NULL);
    assert_int_equal(code_of(fk.done), 0);
    assert_string_equal(op_of(1), "subscription.create");
    json_t *ep = json_object_get(fk.reqs[1], "endpoint"), *rt = json_object_get(fk.reqs[1], "retry");
    assert_string_equal(json_string_value(json_object_get(ep, "http")), "https://h.example/in");
    assert_string_equal(json_string_value(json_object_get(ep, "format")), "simplified");
    assert_string_equal(json_string_value(json_object_get(rt, "strategy")), "exponential");
    assert_int_equal(json_integer_value(json_object_get(rt, "interval_ms")), 1000);
    assert_int_equal(json_integer_value(json_object_get(rt, "max_interval_ms")), 512000);
    /* 1+2+...+512 s over 10 attempts, then 512 s apart: a day is covered */
    json_int_t n = json_integer_value(json_object_get(rt, "max_attempts"));
    assert_true(1023 + (n - 10) * 512 >= 86400 && 1023 + (n - 11) * 512 < 86400);
}

/* SetSubscriptionAttributes: the given attributes only, an http endpoint
 * keeping its URL with the new format. */
static void test_set_subscription_request(void **state)
{
    (void)state;
    const char *replies[] = {
        "{\"ok\":true,\"name\":\"w\",\"endpoint\":{\"http\":\"http://h/\",\"format\":\"json\"}}",
        "{\"ok\":true}", NULL};
    run(replies, "Action", "SetSubscriptionAttributes", "topicName", "t", "subscriptionName",
        "w", "notifyStrategy", "BACKOFF_RETRY", "notifyContentFormat", "SIMPLIFIED",
        "filterTag.1", "a", NULL);
    assert_int_equal(code_of(fk.done), 0);
    assert_string_equal(op_of(1), "subscription.set");
    json_t *set = fk.reqs[1], *rt = json_object_get(set, "retry");
    assert_string_equal(json_string_value(json_object_get(json_object_get(set, "endpoint"),
                                                          "format")), "simplified");
    assert_string_equal(json_string_value(json_object_get(json_object_get(set, "endpoint"),
                                                          "http")), "http://h/");
    assert_string_equal(json_string_value(json_object_get(rt, "strategy")), "backoff");
    assert_int_equal(json_integer_value(json_object_get(rt, "max_attempts")), 4);
    assert_int_equal(json_array_size(json_object_get(set, "filter_tags")), 1);
    assert_null(json_object_get(set, "binding_keys")); /* not given: kept */
    /* a queue endpoint refuses JSON before anything is set */
    const char *queue[] = {"{\"ok\":true,\"name\":\"s\",\"endpoint\":{\"queue\":\"q\"}}", NULL};
    run(queue, "Action", "SetSubscriptionAttributes", "topicName", "t", "subscriptionName", "s",
        "notifyContentFormat", "JSON", NULL);
    assert_int_equal(fk.n, 1);
    assert_int_equal(code_of(fk.done), 4000);
}

/* A filter refused after notifyStrategy was read: 4000 before any request,
 * and the retry built from the strategy freed (a leak per such request
 * once; LeakSanitizer fails this test under MQHUB_SANITIZE). */
static void test_bad_filter_after_strategy(void **state)
{
    (void)state;
    const char *none[] = {NULL};
    run(none, "Action", "Subscribe", "topicName", "t", "subscriptionName", "w", "protocol",
        "queue", "endpoint", "q", "notifyStrategy", "BACKOFF_RETRY", "filterTag.1", "a",
        "filterTag.3", "c", NULL);
    assert_int_equal(fk.n, 0);
    assert_int_equal(code_of(fk.done), 4000);
    run(none, "Action", "SetSubscriptionAttributes", "topicName", "t", "subscriptionName", "w",
        "notifyStrategy", "EXPONENTIAL_DECAY_RETRY", "bindingKey.2", "k", NULL);
    assert_int_equal(fk.n, 0);
    assert_int_equal(code_of(fk.done), 4000);
}

static int teardown_all(void **state)
{
    (void)state;
    for (size_t i = 0; i < fk.n; i++)
        json_decref(fk.reqs[i]);
    json_decref(fk.done);
    memset(&fk, 0, sizeof fk);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_send_partial),
        cmocka_unit_test(test_batch_send_all_refused),
        cmocka_unit_test(test_batch_send_checked_first),
        cmocka_unit_test(test_batch_publish_partial),
        cmocka_unit_test(test_subscribe_http_request),
        cmocka_unit_test(test_set_subscription_request),
        cmocka_unit_test(test_bad_filter_after_strategy),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
