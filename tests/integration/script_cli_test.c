/* script_cli_test.c: the script and block commands of the mqhub binary
 * ($MQHUB_CLI) against a real hub — script load (a syntax error names the
 * line), list, get, a queue hook that blocks a user (send refused with
 * BLOCKED), blocks and scripts kept over a restart, block list and delete,
 * script test over a topic's retained messages, and script delete refused
 * while the hook is attached.
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
    return testhub_start(&hub, mqhubd_path, NULL);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    return 0;
}

static const char *guard =
    "function on_message(msg)\n"
    "  if msg.attrs.user == 'mallory' then\n"
    "    hub.block{attr = 'user', value = 'mallory', ttl = 300, reason = 'suspicious'}\n"
    "    return false, 'mallory is not welcome'\n"
    "  end\n"
    "  return true\n"
    "end\n";

static void test_script_commands(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, "function filter(m)\n  return m.seq >\nend\n", "script", "load", "bad", "-", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "SCRIPT_ERROR"));
    assert_non_null(strstr(r.err, "bad:3:"));
    testcli_run(&cli, &r, guard, "script", "load", "guard", "-", "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(j, "version")), 1);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "script", "list", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "guard"));

    /* a queue hook: mallory is refused, then blocked */
    testcli_run(&cli, &r, NULL, "queue", "create", "payments", "--hook", "guard", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "send", "payments", "hi", "--attr", "user=alice", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "send", "payments", "hi", "--attr", "user=mallory", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "BLOCKED"));
    assert_non_null(strstr(r.err, "not welcome"));
    testcli_run(&cli, &r, NULL, "block", "list", "--json", NULL);
    j = testcli_json(&r);
    json_t *b = json_array_get(testcli_field(j, "blocks"), 0);
    assert_string_equal(json_string_value(testcli_field(b, "value")), "mallory");
    assert_string_equal(json_string_value(testcli_field(b, "reason")), "suspicious");
    json_decref(j);
    testcli_run(&cli, &r, NULL, "block", "list", NULL);
    assert_non_null(strstr(r.out, "mallory"));

    /* a restart keeps scripts, counters, hooks and blocks (raft replays the log) */
    testhub_stop(&hub);
    assert_int_equal(testhub_restart(&hub), 0);
    testcli_run(&cli, &r, NULL, "send", "payments", "again", "--attr", "user=mallory", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "suspicious"));
    testcli_run(&cli, &r, NULL, "script", "get", "guard", "--json", NULL);
    j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(testcli_field(j, "stats"), "refused")), 1);
    assert_string_equal(json_string_value(json_array_get(testcli_field(j, "users"), 0)), "queue:payments");
    json_decref(j);
    testcli_run(&cli, &r, NULL, "script", "delete", "guard", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "FORBIDDEN"));
    testcli_run(&cli, &r, NULL, "block", "delete", "user", "mallory", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "block", "delete", "user", "mallory", NULL);
    assert_int_equal(r.status, 1);

    /* a backtest over a topic's history changes nothing */
    testcli_run(&cli, &r, NULL, "topic", "create", "history", NULL);
    assert_int_equal(r.status, 0);
    const char *users[] = {"user=alice", "user=mallory", "user=bob", "user=mallory"};
    for (int i = 0; i < 4; i++) {
        testcli_run(&cli, &r, NULL, "publish", "history", "m", "--attr", users[i], NULL);
        assert_int_equal(r.status, 0);
    }
    testcli_run(&cli, &r, NULL, "script", "test", "guard", "--topic", "history", "--since", "1h", "--json", NULL);
    assert_int_equal(r.status, 0);
    j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(j, "messages")), 4);
    assert_int_equal(json_integer_value(testcli_field(j, "calls")), 3);
    assert_int_equal(json_integer_value(testcli_field(j, "refused")), 2);
    assert_int_equal(json_array_size(testcli_field(j, "blocks")), 1);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "script", "test", "guard", "--topic", "history", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "would block user=mallory"));
    testcli_run(&cli, &r, NULL, "block", "list", "--json", NULL);
    j = testcli_json(&r);
    assert_int_equal(json_array_size(testcli_field(j, "blocks")), 0);
    json_decref(j);
    testcli_run(&cli, &r, NULL, "script", "test", "guard", NULL);
    assert_int_equal(r.status, 2);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_script_commands),
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
