/* cli_test.c: the mqhub binary ($MQHUB_CLI) against a real hub — table
 * output, --json parsed with jansson, batch files, --follow ending cleanly on
 * SIGINT, and the exit codes 0 (ok), 1 (server error), 2 (usage), 3 (cannot
 * connect).
 */
#include <setjmp.h>
#include <signal.h>
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
    return testhub_start(&hub, mqhubd_path, NULL);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    return 0;
}

static void test_ping_and_help(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "ping", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "pong"));
    testcli_run(&cli, &r, NULL, "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: mqhub"));
    testcli_run(&cli, &r, NULL, "send", "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--batch-file"));
    testcli_run(&cli, &r, NULL, "ping", "--json", NULL);
    json_t *j = testcli_json(&r);
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
}

static void test_queue_commands(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "queue", "create", "photos", "--visibility-timeout", "60",
        "max_msg_size=4096", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "queue", "get", "photos", "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = testcli_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "photos");
    json_t *a = json_object_get(j, "attrs");
    assert_int_equal(json_integer_value(json_object_get(a, "visibility_timeout")), 60);
    assert_int_equal(json_integer_value(json_object_get(a, "max_msg_size")), 4096);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "stats"), "ready")), 0);
    json_decref(j);

    testcli_run(&cli, &r, NULL, "queue", "set", "photos", "--polling-wait", "5", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "queue", "get", "photos", NULL); /* table */
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "polling_wait        5"));

    testcli_run(&cli, &r, NULL, "send", "photos", "one", NULL);
    testcli_run(&cli, &r, NULL, "queue", "list", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "NAME"));
    assert_non_null(strstr(r.out, "photos  1"));
    testcli_run(&cli, &r, NULL, "queue", "list", "--json", NULL);
    j = testcli_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "queues"), 0)),
                        "photos");
    json_decref(j);
    testcli_run(&cli, &r, NULL, "queue", "purge", "photos", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "queue", "rewind", "photos", "--ago", "60", "--json", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "queue", "delete", "photos", NULL);
    assert_int_equal(r.status, 0);
}

static void test_send_recv_delete(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "queue", "create", "jobs", NULL);
    testcli_run(&cli, &r, NULL, "send", "jobs", "hello world", "--attr", "k=v", "--attr", "id=7",
                "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = testcli_json(&r);
    assert_true(json_integer_value(json_object_get(j, "seq")) > 0);
    json_decref(j);
    testcli_run(&cli, &r, "from stdin", "send", "jobs", "-", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "MSG_ID"));

    testcli_run(&cli, &r, NULL, "recv", "jobs", "--max", "10", "--json", NULL);
    assert_int_equal(r.status, 0);
    j = testcli_json(&r);
    json_t *msgs = json_object_get(j, "msgs");
    assert_int_equal(json_array_size(msgs), 2);
    json_t *m0 = json_array_get(msgs, 0);
    assert_string_equal(json_string_value(json_object_get(m0, "body")), "hello world");
    assert_string_equal(json_string_value(json_object_get(json_object_get(m0, "attrs"), "k")), "v");
    /* an attr named like the reply's envelope ("id") is the user's: kept */
    assert_string_equal(json_string_value(json_object_get(json_object_get(m0, "attrs"), "id")),
                        "7");
    char receipt[128];
    snprintf(receipt, sizeof receipt, "%s", json_string_value(json_object_get(m0, "receipt")));
    json_decref(j);

    testcli_run(&cli, &r, NULL, "delete", "jobs", receipt, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "deleted"));
    testcli_run(&cli, &r, NULL, "delete", "jobs", receipt, "--json", NULL); /* stale now */
    assert_int_equal(r.status, 1);
    j = testcli_json(&r);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "results"), 0), "code")),
                        "INVALID_RECEIPT");
    json_decref(j);

    /* binary bodies come back as body_base64; the table shows a size */
    testcli_run(&cli, &r, NULL, "queue", "create", "bin", NULL);
    testcli_run(&cli, &r, "\xff\xfe", "send", "bin", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "recv", "bin", "--json", "--visibility", "0", NULL);
    j = testcli_json(&r);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "msgs"), 0), "body_base64")),
                        "//4=");
    json_decref(j);
    testcli_run(&cli, &r, NULL, "recv", "bin", "--delete", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "<2 bytes>"));
    testcli_run(&cli, &r, NULL, "recv", "bin", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "no messages"));
}

static void test_batch_file(void **state)
{
    testcli_run_t r;
    char path[320];
    snprintf(path, sizeof path, "%s/bodies.txt", hub.dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 600; i++)
        fprintf(f, "line %d\n", i);
    fclose(f);
    testcli_run(&cli, &r, NULL, "queue", "create", "lines", NULL);
    testcli_run(&cli, &r, NULL, "send", "lines", "--batch-file", path, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "sent 600 messages"));
    testcli_run(&cli, &r, NULL, "queue", "get", "lines", "--json", NULL);
    json_t *j = testcli_json(&r);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "stats"), "ready")),
                     600);
    json_decref(j);
}

static void test_follow_sigint(void **state)
{
    testcli_run_t r;
    const char *argv[] = {"recv", "follow", "--follow", "--delete", NULL};
    testcli_run(&cli, &r, NULL, "queue", "create", "follow", NULL);
    testcli_run(&cli, &r, NULL, "send", "follow", "first", NULL);
    pid_t pid = testcli_spawn(&cli, argv, NULL);
    /* Printed: its SIGINT handler is in place and it is following. */
    bool printed = testcli_wait_out(&cli, "first", 10000);
    kill(pid, SIGINT);
    testcli_collect(&cli, pid, &r);
    assert_true(printed);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "first"));
}

static void test_exit_codes(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "frobnicate", NULL);
    assert_int_equal(r.status, 2);
    testcli_run(&cli, &r, NULL, "queue", "create", NULL);
    assert_int_equal(r.status, 2);
    testcli_run(&cli, &r, NULL, "recv", "jobs", "--max", "0", NULL);
    assert_int_equal(r.status, 2);
    testcli_run(&cli, &r, NULL, "send", "jobs", "x", "--bogus", NULL);
    assert_int_equal(r.status, 2);
    testcli_run(&cli, &r, NULL, "queue", "get", "missing", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "NOT_FOUND: "));
    testcli_run(&cli, &r, NULL, "queue", "create", "bad name", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "BAD_NAME: "));
    testcli_run(&cli, &r, NULL, "--server", "127.0.0.1:1", "ping", NULL);
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.err, "is mqhubd running?"));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping_and_help),    cmocka_unit_test(test_queue_commands),
        cmocka_unit_test(test_send_recv_delete), cmocka_unit_test(test_batch_file),
        cmocka_unit_test(test_follow_sigint),    cmocka_unit_test(test_exit_codes),
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
