/* topic_cli_test.c: the topic commands of the mqhub binary ($MQHUB_CLI)
 * against a real hub — topic create/list/get/set/delete, publish with tags,
 * key and attrs, queue-endpoint subscriptions with tag and routing-key
 * filters (a publish matching none: delivered 0), sub list/get/rewind/delete,
 * and `mqhub tail` printing a push and ending cleanly on SIGINT.
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

static void test_topic_commands(void **state)
{
    run_t r;
    cli(&r, NULL, "topic", "create", "pay", "--retention", "3600", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "topic", "list", "--json", NULL);
    json_t *j = parse(&r);
    assert_string_equal(json_string_value(json_array_get(field(j, "topics"), 0)), "pay");
    json_decref(j);
    cli(&r, NULL, "topic", "set", "pay", "--max-msg-size", "2048", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "topic", "get", "pay", "--json", NULL);
    j = parse(&r);
    assert_int_equal(json_integer_value(field(field(j, "attrs"), "max_msg_size")), 2048);
    assert_int_equal(json_integer_value(field(field(j, "attrs"), "retention")), 3600);
    json_decref(j);
    cli(&r, NULL, "topic", "create", "Bad Name", NULL);
    assert_int_equal(r.status, 1);
    cli(&r, NULL, "topic", "get", NULL);
    assert_int_equal(r.status, 2);
    cli(&r, NULL, "topic", "set", "pay", "--delay", "3", NULL);
    assert_int_equal(r.status, 2);
    cli(&r, NULL, "topic", "delete", "pay", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "topic", "get", "pay", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "NOT_FOUND"));
}

static void test_queue_endpoint(void **state)
{
    run_t r;
    cli(&r, NULL, "topic", "create", "orders", NULL);
    cli(&r, NULL, "queue", "create", "risk", NULL);
    cli(&r, NULL, "queue", "create", "eu", NULL);
    cli(&r, NULL, "sub", "create", "orders", "risk", "--queue", "risk", "--filter-tag",
        "card", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "sub", "create", "orders", "eu", "--queue", "eu", "--binding", "pay.*.eu",
        NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "sub", "create", "orders", "x", NULL);
    assert_int_equal(r.status, 2); /* no endpoint */
    cli(&r, NULL, "publish", "orders", "hello", "--tag", "card", "--key", "pay.card.eu",
        "--attr", "merchant=42", "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = parse(&r);
    assert_int_equal(json_integer_value(field(j, "delivered")), 2);
    json_decref(j);
    cli(&r, NULL, "publish", "orders", "-", "--tag", "wire", "--json", NULL);
    j = parse(&r);
    assert_int_equal(json_integer_value(field(j, "delivered")), 0);
    json_decref(j);
    cli(&r, NULL, "recv", "risk", "--json", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "hello"));
    assert_non_null(strstr(r.out, "42"));
    cli(&r, NULL, "sub", "list", "orders", NULL);
    assert_non_null(strstr(r.out, "risk"));
    assert_non_null(strstr(r.out, "eu"));
    cli(&r, NULL, "sub", "get", "orders", "risk", "--json", NULL);
    j = parse(&r);
    assert_int_equal(json_integer_value(field(field(j, "stats"), "matched_total")), 1);
    json_decref(j);
    cli(&r, NULL, "sub", "rewind", "orders", "risk", "--seq", "1", "--json", NULL);
    j = parse(&r);
    assert_int_equal(json_integer_value(field(j, "rewound")), 1);
    json_decref(j);
    cli(&r, NULL, "sub", "delete", "orders", "eu", NULL);
    assert_int_equal(r.status, 0);
}

static void test_tail_sigint(void **state)
{
    run_t r;
    const char *argv[] = {"tail", "live", "--sub", "p", "--json", NULL};
    cli(&r, NULL, "topic", "create", "live", NULL);
    cli(&r, NULL, "sub", "create", "live", "p", "--push", "--retry", "exponential",
        "--max-attempts", "3", "--interval-ms", "100", NULL);
    assert_int_equal(r.status, 0);
    cli(&r, NULL, "publish", "live", "first", "--tag", "a", NULL);
    pid_t pid = spawn(argv, NULL);
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    kill(pid, SIGINT);
    collect(pid, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "first"));
    assert_non_null(strstr(r.out, "\"attempt\":1"));
    cli(&r, NULL, "sub", "get", "live", "p", "--json", NULL);
    json_t *j = parse(&r);
    assert_int_equal(json_integer_value(field(field(j, "stats"), "pending")), 0);
    json_decref(j);
    cli(&r, NULL, "tail", "live", NULL);
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
    cli_path = getenv("MQHUB_CLI");
    if (!mqhubd_path || !cli_path) {
        fprintf(stderr, "usage: MQHUB_CLI=mqhub %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
