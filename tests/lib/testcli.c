/* testcli.c: runs the mqhub CLI for integration tests (see testcli.h).
 *
 * testcli_run() is what tests call; testcli_spawn() + testcli_collect() are
 * for a CLI that must be signalled while it runs (--follow, tail), with
 * testcli_wait_out() to know when it got there. stdin, stdout and stderr are
 * the files cli.in, cli.out, cli.err of the hub's dir; XDG_CONFIG_HOME is its
 * folder config-home (testcli_config_home()), so the saved contexts of the
 * developer running the tests never reach them.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testcli.h"

#define ARGS_MAX 32

static void slurp(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

static void io_path(const testcli_t *c, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", c->hub->dir, name);
}

void testcli_config_home(const testcli_t *c, char *out, size_t size)
{
    io_path(c, "config-home", out, size);
}

pid_t testcli_spawn(const testcli_t *c, const char *const *argv, const char *input)
{
    char out[320], err[320], in[320], home[320];
    const char *args[ARGS_MAX] = {c->path};
    size_t n = 1;
    while (argv[n - 1] && n < ARGS_MAX - 1) {
        args[n] = argv[n - 1];
        n++;
    }
    args[n] = NULL;
    io_path(c, "cli.out", out, sizeof out);
    io_path(c, "cli.err", err, sizeof err);
    io_path(c, "cli.in", in, sizeof in);
    testcli_config_home(c, home, sizeof home);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    if (input)
        fputs(input, f);
    fclose(f);
    /* Opened (emptied) before the fork, so that testcli_wait_out() never
     * reads what an earlier run left. */
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644),
        fe = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fo >= 0 && fe >= 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(open(in, O_RDONLY | O_CLOEXEC), 0);
        dup2(fo, 1);
        dup2(fe, 2);
        setenv("MQHUB_SERVER", c->hub->address, 1);
        setenv("XDG_CONFIG_HOME", home, 1);
        execv(c->path, (char *const *)args);
        _exit(127);
    }
    close(fo);
    close(fe);
    return pid;
}

bool testcli_wait_out(const testcli_t *c, const char *text, int timeout_ms)
{
    char path[320], out[sizeof ((testcli_run_t *)0)->out];
    uint64_t end = testhub_now_ms() + (uint64_t)timeout_ms;
    io_path(c, "cli.out", path, sizeof path);
    for (;;) {
        slurp(path, out, sizeof out);
        if (strstr(out, text))
            return true;
        if (testhub_now_ms() >= end)
            return false;
        testhub_sleep_ms(20);
    }
}

void testcli_collect(const testcli_t *c, pid_t pid, testcli_run_t *r)
{
    char path[320];
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    io_path(c, "cli.out", path, sizeof path);
    slurp(path, r->out, sizeof r->out);
    io_path(c, "cli.err", path, sizeof path);
    slurp(path, r->err, sizeof r->err);
}

void testcli_run(const testcli_t *c, testcli_run_t *r, const char *input, ...)
{
    const char *argv[ARGS_MAX];
    size_t n = 0;
    va_list ap;
    va_start(ap, input);
    while (n < ARGS_MAX - 1 && (argv[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    testcli_collect(c, testcli_spawn(c, argv, input), r);
}

json_t *testcli_json(const testcli_run_t *r)
{
    json_error_t e;
    json_t *j = json_loads(r->out, 0, &e);
    if (!j)
        fprintf(stderr, "not JSON (%s): %s\n", e.text, r->out);
    assert_non_null(j);
    return j;
}

json_t *testcli_field(json_t *j, const char *k)
{
    json_t *v = json_object_get(j, k);
    assert_non_null(v);
    return v;
}

void testcli_expect_status(const testcli_run_t *r, int want)
{
    if (r->status != want)
        fail_msg("exit %d (want %d): out %s err %s", r->status, want, r->out, r->err);
}

void testcli_expect_in(const char *text, const char *want)
{
    if (!strstr(text, want))
        fail_msg("\"%s\" not in: %s", want, text);
}
