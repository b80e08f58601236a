/* user_cli_test.c: `mqhub user add|del|list|grant|revoke` ($MQHUB_CLI)
 * against a hub with a root token given through MQHUB_TOKEN — a generated
 * token printed once and usable with --token, a given one, --grant, the
 * table and --json of user list (no tokens in it), grant and revoke taking
 * effect, FORBIDDEN exit status for a user without admin, del.
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

#define ROOT "root-token-for-user-cli-test"

static const char *mqhubd_path;
static testcli_t cli;
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

static void test_user_commands(void **state)
{
    testcli_run_t r;
    char token[80];
    (void)state;

    testcli_run(&cli, &r, NULL, "queue", "create", "payments.in", NULL);
    assert_int_equal(r.status, 0);
    /* add with a generated token, as JSON */
    testcli_run(&cli, &r, NULL, "user", "add", "alice", "--grant", "send:payments*", "--json",
                NULL);
    assert_int_equal(r.status, 0);
    json_t *j = testcli_json(&r);
    snprintf(token, sizeof token, "%s", json_string_value(testcli_field(j, "token")));
    json_decref(j);
    assert_int_equal(strlen(token), 64);
    testcli_run(&cli, &r, NULL, "--token", token, "send", "payments.in", "hi", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "--token", token, "queue", "purge", "payments.in", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "FORBIDDEN"));
    assert_non_null(strstr(r.err, "user 'alice' may not manage 'payments.in'"));
    testcli_run(&cli, &r, NULL, "--token", token, "user", "list", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "FORBIDDEN"));
    /* add with a given token, table output */
    testcli_run(&cli, &r, NULL, "user", "add", "bob", "--user-token", "bob-token-0123456789",
                NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "created user bob"));
    assert_null(strstr(r.out, "token:"));
    testcli_run(&cli, &r, NULL, "user", "add", "bad", "--grant", "fly:*", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "BAD_REQUEST"));
    testcli_run(&cli, &r, NULL, "user", "add", "bad", "--grant", "nocolon", NULL);
    assert_int_equal(r.status, 2);
    /* grant / revoke */
    testcli_run(&cli, &r, NULL, "user", "grant", "bob", "manage", "payments*", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "granted manage on payments* to bob"));
    testcli_run(&cli, &r, NULL, "--token", "bob-token-0123456789", "queue", "purge",
                "payments.in", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "user", "grant", "bob", "admin", "*", "--json", NULL);
    assert_int_equal(r.status, 0);
    j = testcli_json(&r);
    assert_true(json_is_true(testcli_field(j, "changed")));
    json_decref(j);
    testcli_run(&cli, &r, NULL, "user", "list", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "NAME"));
    assert_non_null(strstr(r.out, "send:payments*"));
    assert_non_null(strstr(r.out, "manage:payments* admin:*"));
    assert_null(strstr(r.out, token));
    testcli_run(&cli, &r, NULL, "--token", "bob-token-0123456789", "user", "list", "--json", NULL);
    assert_int_equal(r.status, 0);
    j = testcli_json(&r);
    json_t *users = testcli_field(j, "users");
    assert_int_equal(json_array_size(users), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(users, 0), "name")),
                        "alice");
    assert_null(json_object_get(json_array_get(users, 0), "token"));
    json_decref(j);
    testcli_run(&cli, &r, NULL, "user", "revoke", "bob", "manage", "payments*", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "revoked manage on payments* from bob"));
    testcli_run(&cli, &r, NULL, "--token", "bob-token-0123456789", "queue", "purge",
                "payments.in", NULL);
    assert_int_equal(r.status, 1);
    /* del */
    testcli_run(&cli, &r, NULL, "user", "del", "alice", NULL);
    assert_int_equal(r.status, 0);
    testcli_run(&cli, &r, NULL, "--token", token, "send", "payments.in", "hi", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "UNAUTHORIZED"));
    testcli_run(&cli, &r, NULL, "user", "del", "alice", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "NOT_FOUND"));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_commands),
    };
    mqhubd_path = testhub_binary(argc, argv);
    cli.path = getenv("MQHUB_CLI");
    cli.hub = &hub;
    if (!mqhubd_path || !cli.path) {
        fprintf(stderr, "usage: MQHUB_CLI=... %s MQHUBD\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
