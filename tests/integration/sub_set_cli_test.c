/* sub_set_cli_test.c: `mqhub sub set` and `mqhub sub create --http` (the
 * mqhub binary, $MQHUB_CLI) against a real hub: filters changed in place
 * keep what was delivered and apply to the next publishes, --clear-filters,
 * an http endpoint's URL and format, and the refusals — a kind change, a
 * bad URL, a missing subscription, options sub set cannot take.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "testcli.h"
#include "testhub.h"

static const char *mqhubd_path;
static testcli_t cli;
static testhub_t hub;

static int setup(void **state)
{
    (void)state;
    return testhub_start(&hub, mqhubd_path, NULL);
}

static int teardown(void **state)
{
    (void)state;
    testhub_cleanup(&hub);
    return 0;
}

/* `publish orders BODY ARGS...` and its delivered count. */
static json_int_t publish(const char *body, const char *tag)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "publish", "orders", body, "--tag", tag, "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = testcli_json(&r);
    json_int_t d = json_integer_value(testcli_field(j, "delivered"));
    json_decref(j);
    return d;
}

static json_t *sub_get(const char *name)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "sub", "get", "orders", name, "--json", NULL);
    assert_int_equal(r.status, 0);
    return testcli_json(&r);
}

static void test_sub_set(void **state)
{
    (void)state;
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "topic", "create", "orders", NULL);
    testcli_run(&cli, &r, NULL, "queue", "create", "risk", NULL);
    testcli_run(&cli, &r, NULL, "sub", "create", "orders", "risk", "--queue", "risk",
                "--filter-tag", "card", NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(publish("one", "card"), 1);
    testcli_run(&cli, &r, NULL, "sub", "set", "orders", "risk", "--filter-tag", "wire", NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(publish("two", "card"), 0);
    assert_int_equal(publish("three", "wire"), 1);
    testcli_run(&cli, &r, NULL, "queue", "get", "risk", "--json", NULL);
    json_t *j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(testcli_field(j, "stats"), "ready")), 2);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "sub", "set", "orders", "risk", "--clear-filters", NULL);
    assert_int_equal(r.status, 0);
    j = sub_get("risk");
    assert_int_equal(json_array_size(testcli_field(j, "filter_tags")), 0);
    assert_true(json_integer_value(testcli_field(j, "modified_at")) >=
                json_integer_value(testcli_field(j, "created_at")));
    json_decref(j);
    assert_int_equal(publish("four", "other"), 1);
    /* refusals: exit 2 before connecting, exit 1 from the server */
    testcli_run(&cli, &r, NULL, "sub", "set", "orders", "risk", "--queue", "risk", NULL);
    assert_int_equal(r.status, 2);
    testcli_run(&cli, &r, NULL, "sub", "set", "orders", "risk", "--format", "json", NULL);
    assert_int_equal(r.status, 2);
    testcli_run(&cli, &r, NULL, "sub", "set", "orders", "nope", "--filter-tag", "a", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "NOT_FOUND"));
    testcli_run(&cli, &r, NULL, "sub", "set", "orders", "risk", "--http", "http://h/", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "cannot change kind"));
}

static void test_sub_http(void **state)
{
    (void)state;
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "topic", "create", "orders", NULL);
    testcli_run(&cli, &r, NULL, "sub", "create", "orders", "hook", "--http",
                "https://hooks.example/in", "--format", "simplified", "--retry", "backoff",
                "--max-attempts", "4", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = sub_get("hook");
    json_t *ep = testcli_field(j, "endpoint");
    assert_string_equal(json_string_value(testcli_field(ep, "http")), "https://hooks.example/in");
    assert_string_equal(json_string_value(testcli_field(ep, "format")), "simplified");
    json_decref(j);
    assert_int_equal(publish("p1", "x"), 1);
    testcli_run(&cli, &r, NULL, "sub", "set", "orders", "hook", "--http", "http://other/in",
                NULL);
    assert_int_equal(r.status, 0);
    j = sub_get("hook");
    ep = testcli_field(j, "endpoint");
    assert_string_equal(json_string_value(testcli_field(ep, "http")), "http://other/in");
    assert_string_equal(json_string_value(testcli_field(ep, "format")), "json");
    assert_int_equal(json_integer_value(testcli_field(testcli_field(j, "stats"), "pending")), 1);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "sub", "create", "orders", "bad", "--http", "ftp://x/", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "endpoint.http"));
    testcli_run(&cli, &r, NULL, "sub", "create", "orders", "two", "--http", "http://x/",
                "--push", NULL);
    assert_int_equal(r.status, 2);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sub_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sub_http, setup, teardown),
    };
    mqhubd_path = testhub_binary(argc, argv);
    cli.path = getenv("MQHUB_CLI");
    cli.hub = &hub;
    if (!mqhubd_path || !cli.path) {
        fprintf(stderr, "usage: MQHUB_CLI=mqhub %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
