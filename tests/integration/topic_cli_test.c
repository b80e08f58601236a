/* topic_cli_test.c: the topic commands of the mqhub binary ($MQHUB_CLI)
 * against a real hub — topic create/list/get/set/delete, publish with tags,
 * key and attrs, queue-endpoint subscriptions with tag and routing-key
 * filters (a publish matching none: delivered 0), sub list/get/rewind/delete,
 * and `mqhub tail` printing a push and ending cleanly on SIGINT.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "testcli.h"
#include "testhub.h"

static const char *mqhubd_path;
static testcli_t cli;
static testhub_t hub;

static int setup(void **state)
{
    return testhub_start(&hub, mqhubd_path, NULL);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    return 0;
}

static void test_topic_commands(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "topic", "create", "pay", "--retention", "3600", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "topic", "list", "--json", NULL);
    json_t *j = testcli_json(&r);
    assert_string_equal(json_string_value(json_array_get(testcli_field(j, "topics"), 0)), "pay");
    json_decref(j);
    testcli_run(&cli, &r, NULL, "topic", "set", "pay", "--max-msg-size", "2048", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "topic", "get", "pay", "--json", NULL);
    j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(testcli_field(j, "attrs"), "max_msg_size")), 2048);
    assert_int_equal(json_integer_value(testcli_field(testcli_field(j, "attrs"), "retention")), 3600);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "topic", "create", "Bad Name", NULL);
    assert_int_equal(r.status, 1);
    testcli_run(&cli, &r, NULL, "topic", "get", NULL);
    assert_int_equal(r.status, 2);
    testcli_run(&cli, &r, NULL, "topic", "set", "pay", "--delay", "3", NULL);
    assert_int_equal(r.status, 2);
    testcli_run(&cli, &r, NULL, "topic", "delete", "pay", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "topic", "get", "pay", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "NOT_FOUND"));
}

static void test_queue_endpoint(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "topic", "create", "orders", NULL);
    testcli_run(&cli, &r, NULL, "queue", "create", "risk", NULL);
    testcli_run(&cli, &r, NULL, "queue", "create", "eu", NULL);
    testcli_run(&cli, &r, NULL, "sub", "create", "orders", "risk", "--queue", "risk", "--filter-tag",
        "card", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "sub", "create", "orders", "eu", "--queue", "eu", "--binding", "pay.*.eu",
        NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "sub", "create", "orders", "x", NULL);
    assert_int_equal(r.status, 2); /* no endpoint */
    testcli_run(&cli, &r, NULL, "publish", "orders", "hello", "--tag", "card", "--key", "pay.card.eu",
        "--attr", "merchant=42", "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(j, "delivered")), 2);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "publish", "orders", "-", "--tag", "wire", "--json", NULL);
    j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(j, "delivered")), 0);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "recv", "risk", "--json", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "hello"));
    assert_non_null(strstr(r.out, "42"));
    testcli_run(&cli, &r, NULL, "sub", "list", "orders", NULL);
    assert_non_null(strstr(r.out, "risk"));
    assert_non_null(strstr(r.out, "eu"));
    testcli_run(&cli, &r, NULL, "sub", "get", "orders", "risk", "--json", NULL);
    j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(testcli_field(j, "stats"), "matched_total")), 1);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "sub", "rewind", "orders", "risk", "--seq", "1", "--json", NULL);
    j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(j, "rewound")), 1);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "sub", "delete", "orders", "eu", NULL);
    assert_int_equal(r.status, 0);
}

static void test_tail_sigint(void **state)
{
    testcli_run_t r;
    const char *argv[] = {"tail", "live", "--sub", "p", "--json", NULL};
    testcli_run(&cli, &r, NULL, "topic", "create", "live", NULL);
    testcli_run(&cli, &r, NULL, "sub", "create", "live", "p", "--push", "--retry", "exponential",
        "--max-attempts", "3", "--interval-ms", "100", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "publish", "live", "first", "--tag", "a", NULL);
    pid_t pid = testcli_spawn(&cli, argv, NULL);
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    kill(pid, SIGINT);
    testcli_collect(&cli, pid, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "first"));
    assert_non_null(strstr(r.out, "\"attempt\":1"));
    testcli_run(&cli, &r, NULL, "sub", "get", "live", "p", "--json", NULL);
    json_t *j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(testcli_field(j, "stats"), "pending")), 0);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "tail", "live", NULL);
    assert_int_equal(r.status, 2); /* --sub missing */
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_commands),
        cmocka_unit_test(test_queue_endpoint),
        cmocka_unit_test(test_tail_sigint),
    };
    mqhubd_path = testhub_binary(argc, argv);
    cli.path = getenv("MQHUB_CLI");
    cli.hub = &hub;
    if (!mqhubd_path || !cli.path) {
        fprintf(stderr, "usage: MQHUB_CLI=mqhub %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
