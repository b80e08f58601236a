/* cli_test.c: the mqhub binary ($MQHUB_CLI) against a real hub — table
 * output, --json parsed with jansson, batch files, --follow ending cleanly on
 * SIGINT, and the exit codes 0 (ok), 1 (server error), 2 (usage), 3 (cannot
 * connect).
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

static void test_ping_and_help(void **state)
{
    run_t r;
    cli(&r, NULL, "ping", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "pong"));
    cli(&r, NULL, "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: mqhub"));
    cli(&r, NULL, "send", "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--batch-file"));
    cli(&r, NULL, "ping", "--json", NULL);
    json_t *j = parse(&r);
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
}

static void test_queue_commands(void **state)
{
    run_t r;
    cli(&r, NULL, "queue", "create", "photos", "--visibility-timeout", "60",
        "max_msg_size=4096", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "queue", "get", "photos", "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = parse(&r);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "photos");
    json_t *a = json_object_get(j, "attrs");
    assert_int_equal(json_integer_value(json_object_get(a, "visibility_timeout")), 60);
    assert_int_equal(json_integer_value(json_object_get(a, "max_msg_size")), 4096);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "stats"), "ready")), 0);
    json_decref(j);

    cli(&r, NULL, "queue", "set", "photos", "--polling-wait", "5", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "queue", "get", "photos", NULL); /* table */
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "polling_wait        5"));

    cli(&r, NULL, "send", "photos", "one", NULL);
    cli(&r, NULL, "queue", "list", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "NAME"));
    assert_non_null(strstr(r.out, "photos  1"));
    cli(&r, NULL, "queue", "list", "--json", NULL);
    j = parse(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "queues"), 0)),
                        "photos");
    json_decref(j);
    cli(&r, NULL, "queue", "purge", "photos", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "queue", "rewind", "photos", "--ago", "60", "--json", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "queue", "delete", "photos", NULL);
    assert_int_equal(r.status, 0);
}

static void test_send_recv_delete(void **state)
{
    run_t r;
    cli(&r, NULL, "queue", "create", "jobs", NULL);
    cli(&r, NULL, "send", "jobs", "hello world", "--attr", "k=v", "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = parse(&r);
    assert_true(json_integer_value(json_object_get(j, "seq")) > 0);
    json_decref(j);
    cli(&r, "from stdin", "send", "jobs", "-", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "MSG_ID"));

    cli(&r, NULL, "recv", "jobs", "--max", "10", "--json", NULL);
    assert_int_equal(r.status, 0);
    j = parse(&r);
    json_t *msgs = json_object_get(j, "msgs");
    assert_int_equal(json_array_size(msgs), 2);
    json_t *m0 = json_array_get(msgs, 0);
    assert_string_equal(json_string_value(json_object_get(m0, "body")), "hello world");
    assert_string_equal(json_string_value(json_object_get(json_object_get(m0, "attrs"), "k")), "v");
    char receipt[128];
    snprintf(receipt, sizeof receipt, "%s", json_string_value(json_object_get(m0, "receipt")));
    json_decref(j);

    cli(&r, NULL, "delete", "jobs", receipt, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "deleted"));
    cli(&r, NULL, "delete", "jobs", receipt, "--json", NULL); /* stale now */
    assert_int_equal(r.status, 1);
    j = parse(&r);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "results"), 0), "code")),
                        "INVALID_RECEIPT");
    json_decref(j);

    /* binary bodies come back as body_base64; the table shows a size */
    cli(&r, NULL, "queue", "create", "bin", NULL);
    cli(&r, "\xff\xfe", "send", "bin", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "recv", "bin", "--json", "--visibility", "0", NULL);
    j = parse(&r);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "msgs"), 0), "body_base64")),
                        "//4=");
    json_decref(j);
    cli(&r, NULL, "recv", "bin", "--delete", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "<2 bytes>"));
    cli(&r, NULL, "recv", "bin", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "no messages"));
}

static void test_batch_file(void **state)
{
    run_t r;
    char path[320];
    snprintf(path, sizeof path, "%s/bodies.txt", hub.dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 600; i++)
        fprintf(f, "line %d\n", i);
    fclose(f);
    cli(&r, NULL, "queue", "create", "lines", NULL);
    cli(&r, NULL, "send", "lines", "--batch-file", path, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "sent 600 messages"));
    cli(&r, NULL, "queue", "get", "lines", "--json", NULL);
    json_t *j = parse(&r);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "stats"), "ready")),
                     600);
    json_decref(j);
}

static void test_follow_sigint(void **state)
{
    run_t r;
    const char *argv[] = {"recv", "follow", "--follow", "--delete", NULL};
    cli(&r, NULL, "queue", "create", "follow", NULL);
    cli(&r, NULL, "send", "follow", "first", NULL);
    pid_t pid = spawn(argv, NULL);
    struct timespec ts = {1, 500000000};
    nanosleep(&ts, NULL);
    kill(pid, SIGINT);
    collect(pid, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "first"));
}

static void test_exit_codes(void **state)
{
    run_t r;
    cli(&r, NULL, "frobnicate", NULL);
    assert_int_equal(r.status, 2);
    cli(&r, NULL, "queue", "create", NULL);
    assert_int_equal(r.status, 2);
    cli(&r, NULL, "recv", "jobs", "--max", "0", NULL);
    assert_int_equal(r.status, 2);
    cli(&r, NULL, "send", "jobs", "x", "--bogus", NULL);
    assert_int_equal(r.status, 2);
    cli(&r, NULL, "queue", "get", "missing", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "NOT_FOUND: "));
    cli(&r, NULL, "queue", "create", "bad name", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "BAD_NAME: "));
    cli(&r, NULL, "--server", "127.0.0.1:1", "ping", NULL);
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
    cli_path = getenv("MQHUB_CLI");
    if (!mqhubd_path || !cli_path) {
        fprintf(stderr, "usage: MQHUB_CLI=mqhub %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
