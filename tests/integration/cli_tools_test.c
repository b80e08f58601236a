/* cli_tools_test.c: the operator commands of issue 16 against a real mqhubd
 * with a root token, through the mqhub CLI ($MQHUB_CLI), libmqhub and
 * mqhub-bench ($MQHUB_BENCH):
 *   - `topic peek TOPIC [SUB]`: retained or pending messages with tags, key
 *     and attrs; the subscription's pending and acked counts do not change;
 *     paging with --from; NOT_FOUND for a missing topic; FORBIDDEN without
 *     subscribe on the topic (monitor is not enough);
 *   - `change-visibility QUEUE RECEIPT SECONDS`: extends and ends a lock;
 *   - `topic set NAME hook=X`, the key=value form `queue set` accepts;
 *   - `cluster status` shows the raft log's figures;
 *   - `mqhub-bench --json`: one object that python3 parses, with per phase
 *     rates, latency percentiles and errors by code; a progress line a second;
 *   - the topic modes (`mqhub-bench publish|push`) the same: phases (publish
 *     with its fan-out, push), errors_by_code, the progress line.
 * Hostile: peek max 1000 through the CLI (usage) and libmqhub (BAD_REQUEST),
 * a stale receipt (INVALID_RECEIPT), SECONDS out of range, a bad topic
 * attribute, sends the queue refuses counted by their code, publishes by a
 * user without the publish verb counted as FORBIDDEN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "mqhub/client.h"
#include "testcli.h"
#include "testhub.h"

#define ROOT "root-token-for-cli-tools-test"
#define BENCH_USER_TOKEN "token-of-a-user-who-may-not-publish"

static const char *mqhubd_path;
static testcli_t cli, bench;
static testhub_t hub;

static int setup(void **state)
{
    testhub_opts_t o = {.token = ROOT};
    (void)state;
    setenv("MQHUB_TOKEN", ROOT, 1);
    return testhub_start(&hub, mqhubd_path, &o);
}

static int teardown(void **state)
{
    (void)state;
    testhub_cleanup(&hub);
    return 0;
}

static json_int_t sub_stat(const char *key)
{
    testcli_run_t r;
    TESTCLI_RUN(&cli, &r, 0, "sub", "get", "feed", "s", "--json");
    json_t *j = testcli_json(&r);
    json_int_t v = json_integer_value(testcli_field(testcli_field(j, "stats"), key));
    json_decref(j);
    return v;
}

static void test_topic_peek(void **state)
{
    testcli_run_t r;
    char body[32];
    (void)state;
    TESTCLI_RUN(&cli, &r, 0, "topic", "create", "feed");
    TESTCLI_RUN(&cli, &r, 0, "sub", "create", "feed", "s", "--push");
    for (int i = 1; i <= 5; i++) {
        snprintf(body, sizeof body, "msg-%d", i);
        TESTCLI_RUN(&cli, &r, 0, "publish", "feed", body, "--tag", "card", "--key", "pay.eu", "--attr",
            "n=7");
    }
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.token = ROOT};
    assert_int_equal(mqhub_client_connect(&c, hub.address, &o, NULL, 0), 0);
    uint64_t seq = 2;
    assert_int_equal(mqhub_client_ack(c, "feed", "s", &seq, 1, NULL), 0);
    json_int_t pending = sub_stat("pending"), acked = sub_stat("acked_total");
    assert_int_equal(pending, 4);

    /* the retained log: all five, tags, key, attrs */
    TESTCLI_RUN(&cli, &r, 0, "topic", "peek", "feed");
    testcli_expect_in(r.out, "msg-2");
    testcli_expect_in(r.out, "pay.eu");
    testcli_expect_in(r.out, "n=7");
    /* the subscription's pending ones: seq 2 was acked */
    TESTCLI_RUN(&cli, &r, 0, "topic", "peek", "feed", "s", "--json");
    json_t *j = testcli_json(&r);
    json_t *msgs = testcli_field(j, "msgs");
    assert_int_equal(json_array_size(msgs), 4);
    assert_int_equal(json_integer_value(testcli_field(json_array_get(msgs, 1), "seq")), 3);
    assert_string_equal(json_string_value(testcli_field(json_array_get(msgs, 1), "body")),
                        "msg-3");
    assert_string_equal(json_string_value(testcli_field(json_array_get(msgs, 1), "key")),
                        "pay.eu");
    json_decref(j);
    /* nothing was delivered or acked by the peeks */
    assert_int_equal(sub_stat("pending"), pending);
    assert_int_equal(sub_stat("acked_total"), acked);

    /* paging */
    TESTCLI_RUN(&cli, &r, 0, "topic", "peek", "feed", "s", "--max", "2");
    testcli_expect_in(r.out, "--from 4");
    TESTCLI_RUN(&cli, &r, 0, "topic", "peek", "feed", "s", "--max", "2", "--from", "4", "--json");
    j = testcli_json(&r);
    assert_int_equal(json_array_size(testcli_field(j, "msgs")), 2);
    assert_null(json_object_get(j, "next"));
    json_decref(j);

    /* hostile and missing */
    TESTCLI_RUN(&cli, &r, 2, "topic", "peek", "feed", "--max", "1000");
    testcli_expect_in(r.err, "--max takes 1-256");
    mqhub_response_t resp;
    assert_int_equal(mqhub_client_topic_peek(c, "feed", NULL, 1000, 0, &resp),
                     MQHUB_EBAD_REQUEST);
    assert_int_equal(mqhub_client_topic_peek(c, "feed", "s", 0, 0, &resp), MQHUB_EBAD_REQUEST);
    TESTCLI_RUN(&cli, &r, 1, "topic", "peek", "nope");
    testcli_expect_in(r.err, "NOT_FOUND");
    TESTCLI_RUN(&cli, &r, 1, "topic", "peek", "feed", "nope");
    testcli_expect_in(r.err, "NOT_FOUND");

    /* permissions: subscribe on the topic, monitor is not enough */
    TESTCLI_RUN(&cli, &r, 0, "user", "add", "watcher", "--grant", "monitor:*", "--grant", "publish:feed",
        "--user-token", "watcher-token-0123456789");
    TESTCLI_RUN(&cli, &r, 1, "--token", "watcher-token-0123456789", "topic", "peek", "feed");
    testcli_expect_in(r.err, "FORBIDDEN");
    TESTCLI_RUN(&cli, &r, 0, "user", "grant", "watcher", "subscribe", "feed");
    TESTCLI_RUN(&cli, &r, 0, "--token", "watcher-token-0123456789", "topic", "peek", "feed", "s");
    testcli_expect_in(r.out, "msg-5");
    mqhub_client_close(c);
}

static void test_change_visibility(void **state)
{
    testcli_run_t r;
    char receipt[64];
    (void)state;
    TESTCLI_RUN(&cli, &r, 0, "queue", "create", "cv", "--visibility-timeout", "30");
    TESTCLI_RUN(&cli, &r, 0, "send", "cv", "hello");
    TESTCLI_RUN(&cli, &r, 0, "recv", "cv", "--json");
    json_t *j = testcli_json(&r);
    snprintf(receipt, sizeof receipt, "%s",
             json_string_value(testcli_field(json_array_get(testcli_field(j, "msgs"), 0),
                                             "receipt")));
    json_decref(j);
    TESTCLI_RUN(&cli, &r, 0, "change-visibility", "cv", receipt, "600", "--json");
    j = testcli_json(&r);
    assert_true(json_integer_value(testcli_field(j, "next_visible_at")) > 0);
    json_decref(j);
    /* still locked: nothing to receive */
    TESTCLI_RUN(&cli, &r, 0, "recv", "cv", "--json");
    j = testcli_json(&r);
    assert_int_equal(json_array_size(testcli_field(j, "msgs")), 0);
    json_decref(j);
    /* 0: visible again at once; the old receipt is then stale */
    TESTCLI_RUN(&cli, &r, 0, "change-visibility", "cv", receipt, "0");
    testcli_expect_in(r.out, "visible again");
    TESTCLI_RUN(&cli, &r, 0, "recv", "cv", "--json");
    j = testcli_json(&r);
    assert_int_equal(json_array_size(testcli_field(j, "msgs")), 1);
    json_decref(j);
    TESTCLI_RUN(&cli, &r, 1, "change-visibility", "cv", receipt, "60");
    testcli_expect_in(r.err, "INVALID_RECEIPT");
    TESTCLI_RUN(&cli, &r, 1, "change-visibility", "cv", "1.1.999999", "60");
    testcli_expect_in(r.err, "INVALID_RECEIPT");
    TESTCLI_RUN(&cli, &r, 2, "change-visibility", "cv", receipt, "99999");
    TESTCLI_RUN(&cli, &r, 2, "change-visibility", "cv", receipt, "-5");
    TESTCLI_RUN(&cli, &r, 2, "change-visibility", "cv", receipt);
}

static void test_topic_set_kv(void **state)
{
    testcli_run_t r;
    char path[320];
    (void)state;
    snprintf(path, sizeof path, "%s/hook.lua", hub.dir);
    FILE *f = fopen(path, "w");
    fputs("function on_message(msg) return \"pass\" end\n", f);
    fclose(f);
    TESTCLI_RUN(&cli, &r, 0, "script", "load", "gate", path);
    TESTCLI_RUN(&cli, &r, 0, "topic", "create", "hooked", "retention=3600");
    TESTCLI_RUN(&cli, &r, 0, "topic", "set", "hooked", "hook=gate");
    TESTCLI_RUN(&cli, &r, 0, "topic", "get", "hooked", "--json");
    json_t *j = testcli_json(&r);
    json_t *a = testcli_field(j, "attrs");
    assert_string_equal(json_string_value(testcli_field(a, "hook")), "gate");
    assert_int_equal(json_integer_value(testcli_field(a, "retention")), 3600);
    json_decref(j);
    TESTCLI_RUN(&cli, &r, 0, "topic", "set", "hooked", "max-msg-size=2048", "hook=");
    TESTCLI_RUN(&cli, &r, 0, "topic", "get", "hooked", "--json");
    j = testcli_json(&r);
    a = testcli_field(j, "attrs");
    assert_null(json_string_value(json_object_get(a, "hook")));
    assert_int_equal(json_integer_value(testcli_field(a, "max_msg_size")), 2048);
    json_decref(j);
    TESTCLI_RUN(&cli, &r, 2, "topic", "set", "hooked", "visibility_timeout=3");
    testcli_expect_in(r.err, "topics take only");
    TESTCLI_RUN(&cli, &r, 2, "topic", "set", "hooked", "nonsense");
    TESTCLI_RUN(&cli, &r, 2, "topic", "set", "hooked", "bogus=1");
}

static void test_cluster_status(void **state)
{
    testcli_run_t r;
    (void)state;
    TESTCLI_RUN(&cli, &r, 0, "cluster", "status");
    testcli_expect_in(r.out, "last log index");
    testcli_expect_in(r.out, "leader changes seen");
    TESTCLI_RUN(&cli, &r, 0, "cluster", "status", "--json");
    json_t *j = testcli_json(&r);
    assert_true(json_integer_value(testcli_field(j, "last_index")) >=
                json_integer_value(testcli_field(j, "commit_index")));
    assert_true(json_integer_value(testcli_field(j, "leader_changes")) >= 1);
    testcli_field(j, "log_entries");
    testcli_field(j, "log_bytes");
    testcli_field(j, "snapshot_index");
    testcli_field(j, "snapshot_age_ms");
    json_decref(j);
}

/* @out parses with python3's json module and has the summary's fields,
 * with phase @phase ("produce", "publish"). */
static void python_parses(const char *out, const char *phase)
{
    char path[320], cmd[800];
    snprintf(path, sizeof path, "%s/bench.json", hub.dir);
    FILE *f = fopen(path, "w");
    fputs(out, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
             "p=d[\"phases\"][sys.argv[2]]; "
             "assert p[\"msgs_per_s\"] >= 0 and isinstance(p[\"errors_by_code\"], dict); "
             "assert sys.argv[2] != \"produce\" or \"p99\" in p[\"latency_ms\"]; "
             "assert isinstance(d[\"errors_by_code\"], dict)' %s %s", path, phase);
    assert_int_equal(system(cmd), 0);
}

static void test_bench(void **state)
{
    testcli_run_t r;
    (void)state;
    TESTCLI_RUN(&bench, &r, 0, "both", "--count", "300", "--connections", "1", "--queue", "bq",
        "--json");
    python_parses(r.out, "produce");
    json_t *j = testcli_json(&r);
    json_t *ph = testcli_field(j, "phases");
    json_t *pr = testcli_field(ph, "produce"), *co = testcli_field(ph, "consume");
    assert_int_equal(json_integer_value(testcli_field(pr, "msgs")), 300);
    assert_int_equal(json_integer_value(testcli_field(co, "msgs")), 300);
    assert_true(json_real_value(testcli_field(pr, "msgs_per_s")) > 0);
    assert_true(json_real_value(testcli_field(co, "msgs_per_s")) > 0);
    json_t *lat = testcli_field(pr, "latency_ms");
    assert_true(json_real_value(testcli_field(lat, "p50")) <=
                json_real_value(testcli_field(lat, "p99")));
    testcli_field(lat, "p90");
    testcli_field(lat, "p999");
    testcli_field(lat, "max");
    assert_int_equal(json_integer_value(testcli_field(j, "errors")), 0);
    assert_int_equal(json_object_size(testcli_field(j, "errors_by_code")), 0);
    /* the leader's raft entries during the run: at least one, each taking
     * longer than its apply (proposal to replies includes it) */
    json_t *raft = testcli_field(j, "raft");
    assert_true(json_integer_value(testcli_field(raft, "entries")) >= 1);
    assert_true(json_real_value(testcli_field(raft, "entries_per_s")) > 0);
    assert_true(json_real_value(testcli_field(raft, "entry_ms")) >=
                json_real_value(testcli_field(raft, "apply_ms")));
    print_message("bench 300 msgs: produce %.0f msgs/s, consume %.0f msgs/s, p99 %.3f ms\n",
                  json_real_value(testcli_field(pr, "msgs_per_s")),
                  json_real_value(testcli_field(co, "msgs_per_s")),
                  json_real_value(testcli_field(lat, "p99")));
    json_decref(j);
    /* not a terminal: no progress lines unless asked */
    assert_null(strstr(r.err, "produced"));

    /* sends the queue refuses are counted by their code */
    testcli_run_t q;
    TESTCLI_RUN(&cli, &q, 0, "queue", "create", "small", "--max-msg-size", "1024");
    TESTCLI_RUN(&bench, &r, 0, "produce", "--count", "20", "--connections", "1", "--queue", "small",
        "--size", "2000", "--json");
    python_parses(r.out, "produce");
    j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(j, "errors")), 20);
    assert_int_equal(json_integer_value(testcli_field(testcli_field(j, "errors_by_code"),
                                                      "TOO_LARGE")), 20);
    pr = testcli_field(testcli_field(j, "phases"), "produce");
    assert_int_equal(json_integer_value(testcli_field(pr, "errors")), 20);
    assert_int_equal(json_integer_value(testcli_field(pr, "msgs")), 0);
    json_decref(j);
    TESTCLI_RUN(&bench, &r, 0, "produce", "--count", "20", "--connections", "1", "--queue", "small",
        "--size", "2000", "--batch", "4");
    testcli_expect_in(r.out, "TOO_LARGE 20");

    /* --idle-queues: that many more queues, a message each, before the run;
     * a second run finds them (one more message each); out of range: usage */
    TESTCLI_RUN(&bench, &r, 0, "produce", "--count", "10", "--connections", "1", "--queue", "iq",
        "--idle-queues", "30");
    testcli_expect_in(r.err, "30 idle queues with a message each");
    TESTCLI_RUN(&bench, &r, 0, "produce", "--count", "10", "--connections", "1", "--queue", "iq",
        "--idle-queues", "30", "--quiet");
    TESTCLI_RUN(&cli, &q, 0, "--json", "queue", "get", "iq.idle-0000029");
    j = testcli_json(&q);
    assert_int_equal(json_integer_value(testcli_field(testcli_field(j, "stats"), "ready")), 2);
    json_decref(j);
    TESTCLI_RUN(&cli, &q, 1, "queue", "get", "iq.idle-0000030");
    TESTCLI_RUN(&bench, &r, 2, "produce", "--count", "10", "--idle-queues", "1000001");

    /* a progress line a second, on stderr */
    TESTCLI_RUN(&bench, &r, 0, "both", "--duration", "2.5", "--connections", "1", "--queue", "bq",
        "--rate", "200", "--progress");
    testcli_expect_in(r.err, "mqhub-bench:   1 s  produced");
    testcli_expect_in(r.err, "errors 0");
    testcli_expect_in(r.out, "errors    0");
    testcli_expect_in(r.out, "mean entry");
}

/* The topic modes: phases, errors by code and progress lines as the queue
 * modes have them. */
static void test_topic_bench(void **state)
{
    testcli_run_t r, q;
    (void)state;
    TESTCLI_RUN(&bench, &r, 0, "publish", "--duration", "1.5", "--connections", "1", "--subs", "2",
        "--topic", "tb", "--window", "8", "--json", "--progress");
    python_parses(r.out, "publish");
    json_t *j = testcli_json(&r);
    json_t *pj = testcli_field(testcli_field(j, "phases"), "publish");
    json_int_t pub = json_integer_value(testcli_field(j, "published"));
    assert_true(pub > 0);
    assert_int_equal(json_integer_value(testcli_field(pj, "msgs")), pub);
    assert_int_equal(json_integer_value(testcli_field(pj, "delivered")), 2 * pub);
    assert_true(json_real_value(testcli_field(pj, "msgs_per_s")) > 0);
    assert_int_equal(json_integer_value(testcli_field(j, "errors")), 0);
    assert_int_equal(json_object_size(testcli_field(j, "errors_by_code")), 0);
    assert_int_equal(json_object_size(testcli_field(pj, "errors_by_code")), 0);
    testcli_expect_in(r.err, "mqhub-bench:   1 s  published");
    print_message("topic bench publish: %lld msgs, %.0f msgs/s, fan-out 2\n", (long long)pub,
                  json_real_value(testcli_field(pj, "msgs_per_s")));
    json_decref(j);

    TESTCLI_RUN(&bench, &r, 0, "push", "--duration", "1", "--connections", "1", "--subs", "0",
        "--topic", "tp", "--window", "8", "--json");
    python_parses(r.out, "push");
    j = testcli_json(&r);
    json_t *ph = testcli_field(j, "phases");
    pub = json_integer_value(testcli_field(testcli_field(ph, "publish"), "msgs"));
    json_int_t pushed = json_integer_value(testcli_field(testcli_field(ph, "push"), "msgs"));
    assert_true(pushed > 0 && pushed <= pub);
    assert_int_equal(json_integer_value(testcli_field(j, "consumed")), pushed);
    assert_int_equal(json_integer_value(testcli_field(j, "errors")), 0);
    print_message("topic bench push: published %lld, pushed and acked %lld\n", (long long)pub,
                  (long long)pushed);
    json_decref(j);
    /* not a terminal: no progress lines unless asked */
    assert_null(strstr(r.err, "pushed"));

    /* hostile: a user who may manage the topic but not publish to it; every
     * refused publish is counted by its code */
    TESTCLI_RUN(&cli, &q, 0, "user", "add", "bench-user", "--grant", "manage:tbf", "--user-token",
        BENCH_USER_TOKEN);
    setenv("MQHUB_TOKEN", BENCH_USER_TOKEN, 1);
    testcli_run(&bench, &r, NULL, "publish", "--duration", "1", "--connections", "1", "--subs",
                "0", "--topic", "tbf", "--window", "4", "--json", NULL);
    testcli_run(&bench, &q, NULL, "publish", "--duration", "0.5", "--connections", "1",
                "--subs", "0", "--topic", "tbf", "--window", "4", "--batch", "2", NULL);
    setenv("MQHUB_TOKEN", ROOT, 1);
    if (r.status != 0 || q.status != 0)
        fail_msg("exit %d / %d: %s %s", r.status, q.status, r.err, q.err);
    python_parses(r.out, "publish");
    j = testcli_json(&r);
    json_int_t errors = json_integer_value(testcli_field(j, "errors"));
    json_t *by = testcli_field(j, "errors_by_code");
    assert_true(errors > 0);
    assert_true(json_integer_value(testcli_field(by, "FORBIDDEN")) > 0);
    json_int_t sum = 0;
    const char *code;
    json_t *n;
    json_object_foreach (by, code, n)
        sum += json_integer_value(n);
    assert_int_equal(sum, errors);
    pj = testcli_field(testcli_field(j, "phases"), "publish");
    assert_int_equal(json_integer_value(testcli_field(pj, "errors")), errors);
    assert_int_equal(json_integer_value(testcli_field(pj, "msgs")), 0);
    print_message("refused publishes: %lld, FORBIDDEN %lld\n", (long long)errors,
                  (long long)json_integer_value(testcli_field(by, "FORBIDDEN")));
    json_decref(j);
    testcli_expect_in(q.out, "(by code: FORBIDDEN ");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_peek),
        cmocka_unit_test(test_change_visibility),
        cmocka_unit_test(test_topic_set_kv),
        cmocka_unit_test(test_cluster_status),
        cmocka_unit_test(test_bench),
        cmocka_unit_test(test_topic_bench),
    };
    mqhubd_path = testhub_binary(argc, argv);
    cli.path = getenv("MQHUB_CLI");
    bench.path = getenv("MQHUB_BENCH");
    cli.hub = bench.hub = &hub;
    if (!mqhubd_path || !cli.path || !bench.path) {
        fprintf(stderr, "usage: MQHUB_CLI=... MQHUB_BENCH=... %s MQHUBD\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
