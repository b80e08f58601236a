/* cli_context_test.c: saved contexts of the mqhub CLI (`context add|use|
 * list|show|del`, docs/cli.md "Contexts") against a real mqhubd with a root
 * token, and how a refused hello is named (issue 16).
 *
 * Contexts live in $XDG_CONFIG_HOME/mqhub/contexts.json, here a folder of
 * the hub's temp dir: the file is 0600 in a 0700 folder and never holds a
 * half-written document; list and show never print a token; a context's
 * server and token reach the hub; flags override the context and env
 * variables override it too; a token file works; TLS files are kept by
 * absolute path. Hostile: a contexts file
 * others may read that holds a token is refused (with the chmod that fixes
 * it), a context naming a dead server fails with a message naming the
 * context, an unknown --context, a bad name, a file that is not JSON, a
 * wrong token whose refused hello is named (CLI and libmqhub) instead of
 * "send hello first".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "mqhub/client.h"
#include "testcli.h"
#include "testhub.h"

#define ROOT "root-token-for-cli-context-test"

static const char *mqhubd_path;
static testcli_t cli;      /* MQHUB_SERVER = the hub */
static testcli_t cli_bare; /* MQHUB_SERVER empty: the context's server counts */
static testhub_t hub, bare;
static char cfg[320], file[400];

static int setup(void **state)
{
    testhub_opts_t o = {.token = ROOT};
    (void)state;
    if (testhub_start(&hub, mqhubd_path, &o) != 0)
        return -1;
    /* The same temp dir for the CLI's output; an empty address makes
     * testcli set MQHUB_SERVER="", which the CLI takes as unset. */
    bare = hub;
    bare.address[0] = '\0';
    snprintf(cfg, sizeof cfg, "%s/config-home", hub.dir);
    snprintf(file, sizeof file, "%s/mqhub/contexts.json", cfg);
    setenv("XDG_CONFIG_HOME", cfg, 1);
    unsetenv("MQHUB_TOKEN");
    unsetenv("MQHUB_CONTEXT");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    testhub_cleanup(&hub);
    return 0;
}

static void test_add_list_use(void **state)
{
    testcli_run_t r;
    struct stat st;
    (void)state;
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "list");
    testcli_expect_in(r.out, "no contexts");
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "add", "local", "--server", hub.address, "--token", ROOT);
    testcli_expect_in(r.out, "selected");
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char dir[400];
    snprintf(dir, sizeof dir, "%s/mqhub", cfg);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    /* the selected context reaches the hub: server and token */
    TESTCLI_RUN(&cli_bare, &r, 0, "queue", "create", "ctx-q");
    TESTCLI_RUN(&cli_bare, &r, 0, "ping");
    testcli_expect_in(r.out, hub.address);

    /* list and show never print the token */
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "list");
    testcli_expect_in(r.out, "local");
    testcli_expect_in(r.out, "(saved)");
    assert_null(strstr(r.out, ROOT));
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "list", "--json");
    assert_null(strstr(r.out, ROOT));
    json_t *j = testcli_json(&r);
    assert_string_equal(json_string_value(testcli_field(j, "selected")), "local");
    json_t *c0 = json_array_get(testcli_field(j, "contexts"), 0);
    assert_string_equal(json_string_value(testcli_field(c0, "server")), hub.address);
    assert_true(json_is_true(testcli_field(c0, "selected")));
    json_decref(j);
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "show");
    testcli_expect_in(r.out, "CONTEXT");
    testcli_expect_in(r.out, hub.address);
    assert_null(strstr(r.out, ROOT));

    /* a second one is not selected until `use`; del of the selected one */
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "add", "other", "--server", "127.0.0.1:1");
    TESTCLI_RUN(&cli_bare, &r, 0, "ping");
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "use", "other");
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "show", "--json");
    j = testcli_json(&r);
    assert_string_equal(json_string_value(testcli_field(j, "name")), "other");
    json_decref(j);
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "use", "local");
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "del", "other");
    TESTCLI_RUN(&cli_bare, &r, 1, "context", "del", "other");
    testcli_expect_in(r.err, "no context \"other\"");
    TESTCLI_RUN(&cli_bare, &r, 1, "context", "use", "nope");
    TESTCLI_RUN(&cli_bare, &r, 2, "context", "add", "bad/name", "--server", hub.address);
    TESTCLI_RUN(&cli_bare, &r, 2, "context", "add", "noserver");
    testcli_expect_in(r.err, "--server");
    /* TLS files are saved by absolute path (and imply tls); a missing one
     * is refused */
    char cwd[512], rel[600];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(hub.dir), 0);
    TESTCLI_RUN(&cli_bare, &r, 2, "context", "add", "tls", "--server", hub.address, "--ca", "none.pem");
    testcli_expect_in(r.err, "none.pem");
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "add", "tls", "--server", hub.address, "--ca", "config.lua");
    assert_int_equal(chdir(cwd), 0);
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "show", "tls", "--json");
    j = testcli_json(&r);
    snprintf(rel, sizeof rel, "%s/config.lua", hub.dir);
    assert_string_equal(json_string_value(testcli_field(j, "ca")), rel);
    assert_true(json_is_true(testcli_field(j, "tls")));
    json_decref(j);
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "del", "tls");
    /* the file is whole JSON after every change */
    FILE *f = fopen(file, "r");
    json_error_t err;
    json_t *doc = json_loadf(f, 0, &err);
    fclose(f);
    assert_non_null(doc);
    assert_non_null(json_object_get(json_object_get(doc, "contexts"), "local"));
    assert_null(json_object_get(json_object_get(doc, "contexts"), "other"));
    json_decref(doc);
}

/* Flags > env > context > defaults. */
static void test_precedence(void **state)
{
    testcli_run_t r;
    (void)state;
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "add", "dead", "--server", "127.0.0.1:1", "--token", ROOT);
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "use", "dead");
    /* the context's dead server fails, and the message names the context */
    TESTCLI_RUN(&cli_bare, &r, 3, "ping");
    testcli_expect_in(r.err, "cannot connect to 127.0.0.1:1");
    testcli_expect_in(r.err, "context dead");
    testcli_expect_in(r.err, "mqhub context add dead --server");
    /* --server overrides it, and the context's token, saved for another
     * server, is not sent there (a hostile --server never sees it) */
    TESTCLI_RUN(&cli_bare, &r, 1, "--server", hub.address, "queue", "get", "ctx-q");
    testcli_expect_in(r.err, "context dead's token is for 127.0.0.1:1, so it is not sent to");
    TESTCLI_RUN(&cli_bare, &r, 0, "--server", hub.address, "--token", ROOT, "queue", "get", "ctx-q");
    /* so does MQHUB_SERVER (cli sets it to the hub), with the same rule */
    TESTCLI_RUN(&cli, &r, 1, "queue", "get", "ctx-q");
    testcli_expect_in(r.err, "is not sent to");
    TESTCLI_RUN(&cli, &r, 0, "--token", ROOT, "queue", "get", "ctx-q");
    /* a flag overrides the context's token: a wrong one is refused */
    TESTCLI_RUN(&cli, &r, 1, "--token", "wrong-token-wrong-token", "queue", "get", "ctx-q");
    /* --context picks another than the selected one */
    TESTCLI_RUN(&cli_bare, &r, 0, "--context", "local", "queue", "get", "ctx-q");
    TESTCLI_RUN(&cli_bare, &r, 2, "--context", "nope", "ping");
    testcli_expect_in(r.err, "no context \"nope\"");
    setenv("MQHUB_CONTEXT", "local", 1);
    TESTCLI_RUN(&cli_bare, &r, 0, "ping");
    unsetenv("MQHUB_CONTEXT");
    /* a token file, given to a context or as a flag */
    char tf[400];
    snprintf(tf, sizeof tf, "%s/token.txt", hub.dir);
    FILE *f = fopen(tf, "w");
    fprintf(f, "%s\n", ROOT);
    fclose(f);
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "add", "viafile", "--server", hub.address, "--token-file",
        tf);
    TESTCLI_RUN(&cli_bare, &r, 0, "--context", "viafile", "queue", "get", "ctx-q");
    TESTCLI_RUN(&cli, &r, 0, "--token-file", tf, "queue", "get", "ctx-q");
    TESTCLI_RUN(&cli, &r, 2, "--token-file", tf, "--token", ROOT, "ping");
    TESTCLI_RUN(&cli_bare, &r, 0, "context", "use", "local");
}

/* A contexts file that others may read and that holds a token is refused;
 * one that is not JSON too. */
static void test_unsafe_file(void **state)
{
    testcli_run_t r;
    (void)state;
    TESTCLI_RUN(&cli_bare, &r, 0, "ping");
    assert_int_equal(chmod(file, 0644), 0);
    TESTCLI_RUN(&cli_bare, &r, 2, "ping");
    testcli_expect_in(r.err, "holds a token");
    testcli_expect_in(r.err, "chmod 600");
    TESTCLI_RUN(&cli_bare, &r, 2, "context", "list");
    /* flags do not make the CLI read it anyway */
    TESTCLI_RUN(&cli, &r, 2, "--token", ROOT, "ping");
    assert_int_equal(chmod(file, 0600), 0);
    TESTCLI_RUN(&cli_bare, &r, 0, "ping");

    char saved[420];
    snprintf(saved, sizeof saved, "%s.saved", file);
    assert_int_equal(rename(file, saved), 0);
    FILE *f = fopen(file, "w");
    fputs("{\"contexts\": [oops", f);
    fclose(f);
    chmod(file, 0600);
    TESTCLI_RUN(&cli_bare, &r, 2, "ping");
    testcli_expect_in(r.err, "contexts.json");
    assert_int_equal(rename(saved, file), 0);
    TESTCLI_RUN(&cli_bare, &r, 0, "ping");
}

/* A refused hello is named, with its code and sentence, not "send hello
 * first"; the CLI says what to do. */
static void test_hello_refused(void **state)
{
    testcli_run_t r;
    char err[512];
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.token = "not-the-token-at-all"};
    (void)state;
    TESTCLI_RUN(&cli, &r, 1, "--token", "not-the-token-at-all", "ping");
    testcli_expect_in(r.err, "hello refused (UNAUTHORIZED): token");
    testcli_expect_in(r.err, "may not have reached");
    assert_null(strstr(r.err, "send hello"));
    int rc = mqhub_client_connect(&c, hub.address, &o, err, sizeof err);
    assert_int_equal(rc, MQHUB_EUNAUTHORIZED);
    assert_null(c);
    testcli_expect_in(err, "hello refused (UNAUTHORIZED)");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_list_use),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_unsafe_file),
        cmocka_unit_test(test_hello_refused),
    };
    mqhubd_path = testhub_binary(argc, argv);
    cli.path = cli_bare.path = getenv("MQHUB_CLI");
    cli.hub = &hub;
    cli_bare.hub = &bare;
    if (!mqhubd_path || !cli.path) {
        fprintf(stderr, "usage: MQHUB_CLI=... %s MQHUBD\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
