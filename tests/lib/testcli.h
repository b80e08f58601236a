/* testcli.h: running the mqhub CLI against a testhub for integration tests —
 * spawn it with arguments and stdin, wait, read back its exit status, stdout
 * and stderr; parse --json output with jansson, failing the test when it is
 * not what was expected. Output goes through files in the hub's temp dir, so
 * one CLI at a time per hub. Every CLI runs with XDG_CONFIG_HOME in that dir
 * too (testcli_config_home()): a developer's saved contexts never apply.
 */
#ifndef MQHUB_TESTCLI_H
#define MQHUB_TESTCLI_H

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

#include "testhub.h"

typedef struct testcli {
    const char *path;      /* the mqhub binary ($MQHUB_CLI) */
    const testhub_t *hub;  /* its address is MQHUB_SERVER; its dir holds the output */
} testcli_t;

/* What one run left: exit status (128 + signal when killed), output (cut to
 * the buffer, NUL-terminated). */
typedef struct testcli_run {
    int status;
    char out[16384], err[4096];
} testcli_run_t;

/* The folder the CLIs of @c get as XDG_CONFIG_HOME ("<hub dir>/config-home",
 * created by the CLI when it saves a context) into @out. */
void testcli_config_home(const testcli_t *c, char *out, size_t size);
/* Start the CLI with @argv (NULL-ended, argv[0] excluded, at most 30),
 * stdin from @input (NULL: empty). Returns the child's pid. */
pid_t testcli_spawn(const testcli_t *c, const char *const *argv, const char *input);
/* Poll the stdout of the CLI testcli_spawn() started until it holds @text:
 * true, or false when @timeout_ms passed first. */
bool testcli_wait_out(const testcli_t *c, const char *text, int timeout_ms);
/* Wait for @pid (from testcli_spawn) and read what it left into @r. */
void testcli_collect(const testcli_t *c, pid_t pid, testcli_run_t *r);
/* Spawn and collect: the arguments after @input are the CLI's, NULL-ended. */
void testcli_run(const testcli_t *c, testcli_run_t *r, const char *input, ...);
/* @r's stdout as JSON (the test fails when it is not); json_decref() it. */
json_t *testcli_json(const testcli_run_t *r);
/* Member @k of object @j (the test fails when absent); borrowed. */
json_t *testcli_field(json_t *j, const char *k);
/* The test fails unless @r exited with @want (its output in the message). */
void testcli_expect_status(const testcli_run_t *r, int want);
/* The test fails unless @want is in @text. */
void testcli_expect_in(const char *text, const char *want);
/* testcli_run(@c, @r, no input, the CLI's arguments...) expecting exit @want. */
#define TESTCLI_RUN(c, r, want, ...)                                                          \
    do {                                                                                      \
        testcli_run((c), (r), NULL, __VA_ARGS__, NULL);                                       \
        testcli_expect_status((r), (want));                                                   \
    } while (0)

#endif
