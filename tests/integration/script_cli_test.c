/* script_cli_test.c: the script and block commands of the mqhub binary
 * ($MQHUB_CLI) against a real hub — script load (a syntax error names the
 * line), list, get, a queue hook that blocks a user (send refused with
 * BLOCKED), blocks and scripts kept over a restart, block list and delete,
 * script test over a topic's retained messages, and script delete refused
 * while the hook is attached.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "testhub.h"

static const char *mqhubd_path, *cli_path;
static testhub_t hub;

typedef struct run {
    int status;
    char out[16384], err[4096];
} run_t;

static int setup(void **state)
{
    return testhub_start(&hub, mqhubd_path, NULL);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    return 0;
}

static void slurp(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

/* Start the CLI with @argv (NULL-ended, argv[0] excluded), stdin from @input
 * (may be NULL), output into files of the hub's dir. */
static pid_t spawn(const char *const *argv, const char *input)
{
    char out[320], err[320], in[320];
    const char *args[32] = {cli_path};
    size_t n = 1;
    while (argv[n - 1] && n < 31) {
        args[n] = argv[n - 1];
        n++;
    }
    args[n] = NULL;
    snprintf(out, sizeof out, "%s/cli.out", hub.dir);
    snprintf(err, sizeof err, "%s/cli.err", hub.dir);
    snprintf(in, sizeof in, "%s/cli.in", hub.dir);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    if (input)
        fputs(input, f);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        int fi = open(in, O_RDONLY), fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644),
            fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        setenv("MQHUB_SERVER", hub.address, 1);
        execv(cli_path, (char *const *)args);
        _exit(127);
    }
    return pid;
}

static void collect(pid_t pid, run_t *r)
{
    char path[320];
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    snprintf(path, sizeof path, "%s/cli.out", hub.dir);
    slurp(path, r->out, sizeof r->out);
    snprintf(path, sizeof path, "%s/cli.err", hub.dir);
    slurp(path, r->err, sizeof r->err);
}

static void cli(run_t *r, const char *input, ...)
{
    const char *argv[32];
    size_t n = 0;
    va_list ap;
    va_start(ap, input);
    while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    collect(spawn(argv, input), r);
}

static json_t *parse(const run_t *r)
{
    json_error_t e;
    json_t *j = json_loads(r->out, 0, &e);
    if (!j)
        fprintf(stderr, "not JSON (%s): %s\n", e.text, r->out);
    assert_non_null(j);
    return j;
}

static json_t *field(json_t *j, const char *k)
{
    json_t *v = json_object_get(j, k);
    assert_non_null(v);
    return v;
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
    run_t r;
    cli(&r, "function filter(m)\n  return m.seq >\nend\n", "script", "load", "bad", "-", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "SCRIPT_ERROR"));
    assert_non_null(strstr(r.err, "bad:3:"));
    cli(&r, guard, "script", "load", "guard", "-", "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = parse(&r);
    assert_int_equal(json_integer_value(field(j, "version")), 1);
    json_decref(j);
    cli(&r, NULL, "script", "list", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "guard"));

    /* a queue hook: mallory is refused, then blocked */
    cli(&r, NULL, "queue", "create", "payments", "--hook", "guard", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "send", "payments", "hi", "--attr", "user=alice", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "send", "payments", "hi", "--attr", "user=mallory", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "BLOCKED"));
    assert_non_null(strstr(r.err, "not welcome"));
    cli(&r, NULL, "block", "list", "--json", NULL);
    j = parse(&r);
    json_t *b = json_array_get(field(j, "blocks"), 0);
    assert_string_equal(json_string_value(field(b, "value")), "mallory");
    assert_string_equal(json_string_value(field(b, "reason")), "suspicious");
    json_decref(j);
    cli(&r, NULL, "block", "list", NULL);
    assert_non_null(strstr(r.out, "mallory"));

    /* a restart keeps scripts, counters, hooks and blocks (raft replays the log) */
    testhub_stop(&hub);
    assert_int_equal(testhub_restart(&hub), 0);
    cli(&r, NULL, "send", "payments", "again", "--attr", "user=mallory", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "suspicious"));
    cli(&r, NULL, "script", "get", "guard", "--json", NULL);
    j = parse(&r);
    assert_int_equal(json_integer_value(field(field(j, "stats"), "refused")), 1);
    assert_string_equal(json_string_value(json_array_get(field(j, "users"), 0)), "queue:payments");
    json_decref(j);
    cli(&r, NULL, "script", "delete", "guard", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "FORBIDDEN"));
    cli(&r, NULL, "block", "delete", "user", "mallory", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "block", "delete", "user", "mallory", NULL);
    assert_int_equal(r.status, 1);

    /* a backtest over a topic's history changes nothing */
    cli(&r, NULL, "topic", "create", "history", NULL);
    assert_int_equal(r.status, 0);
    const char *users[] = {"user=alice", "user=mallory", "user=bob", "user=mallory"};
    for (int i = 0; i < 4; i++) {
        cli(&r, NULL, "publish", "history", "m", "--attr", users[i], NULL);
        assert_int_equal(r.status, 0);
    }
    cli(&r, NULL, "script", "test", "guard", "--topic", "history", "--since", "1h", "--json", NULL);
    assert_int_equal(r.status, 0);
    j = parse(&r);
    assert_int_equal(json_integer_value(field(j, "messages")), 4);
    assert_int_equal(json_integer_value(field(j, "calls")), 3);
    assert_int_equal(json_integer_value(field(j, "refused")), 2);
    assert_int_equal(json_array_size(field(j, "blocks")), 1);
    json_decref(j);
    cli(&r, NULL, "script", "test", "guard", "--topic", "history", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "would block user=mallory"));
    cli(&r, NULL, "block", "list", "--json", NULL);
    j = parse(&r);
    assert_int_equal(json_array_size(field(j, "blocks")), 0);
    json_decref(j);
    cli(&r, NULL, "script", "test", "guard", NULL);
    assert_int_equal(r.status, 2);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_script_commands),
    };
    mqhubd_path = testhub_binary(argc, argv);
    cli_path = getenv("MQHUB_CLI");
    if (!mqhubd_path || !cli_path) {
        fprintf(stderr, "usage: MQHUB_CLI=mqhub %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
