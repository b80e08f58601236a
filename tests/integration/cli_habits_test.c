/* cli_habits_test.c: the mqhub CLI's habits (issue 16) against a real hub —
 * `recv --follow --json` and `tail --json` print each message as it arrives
 * into a pipe (not at exit), recv shows the tags and attrs the server
 * returns, --version, `help CMD` with an example, "did you mean" for
 * mistyped commands, subcommands and options, hints that name CLI commands,
 * one layout with units for the get commands, --server without a port
 * (names, IPv6, lists), a dashboard port named as such, the "waiting for
 * messages" line on a terminal only, and the generated bash completion.
 * Hostile: a server that never answers, one that answers garbage, and a
 * --wait far out of range.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "testcli.h"
#include "testhub.h"

static const char *mqhubd_path;
static testcli_t cli;
static testhub_t hub;
static uint16_t ws_port;

static int setup(void **state)
{
    char extra[128];
    testhub_opts_t o = {.extra_config = extra};
    ws_port = testhub_free_port(NULL, 0);
    snprintf(extra, sizeof extra, "transport \"websocket\" { listen = \"127.0.0.1:%u\" }",
             ws_port);
    return testhub_start(&hub, mqhubd_path, &o);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    return 0;
}

static void run_ok(const char *what, ...)
{
    const char *argv[32];
    size_t n = 0;
    va_list ap;
    testcli_run_t r;
    va_start(ap, what);
    while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    testcli_collect(&cli, testcli_spawn(&cli, argv, NULL), &r);
    if (r.status != 0)
        fprintf(stderr, "%s: exit %d: %s%s\n", what, r.status, r.out, r.err);
    assert_int_equal(r.status, 0);
}

/* The CLI with stdout into a pipe (*@fd, the read end) and stderr into
 * @err_path. */
static pid_t spawn_piped(const char *const *argv, int *fd, const char *err_path)
{
    const char *args[32] = {cli.path};
    int p[2];
    size_t n = 1;
    while (argv[n - 1] && n < 31) {
        args[n] = argv[n - 1];
        n++;
    }
    args[n] = NULL;
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(p[1], 1);
        dup2(e, 2);
        close(p[0]);
        setenv("MQHUB_SERVER", hub.address, 1);
        execv(cli.path, (char *const *)args);
        _exit(127);
    }
    close(p[1]);
    *fd = p[0];
    return pid;
}

/* Read @fd into @buf (appending) until it holds @text; false after @timeout_ms. */
static bool read_until(int fd, char *buf, size_t size, const char *text, int timeout_ms)
{
    uint64_t end = testhub_now_ms() + (uint64_t)timeout_ms;
    size_t len = strlen(buf);
    while (!strstr(buf, text)) {
        uint64_t now = testhub_now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (now >= end || poll(&pfd, 1, (int)(end - now)) != 1)
            return false;
        ssize_t k = read(fd, buf + len, size - 1 - len);
        if (k <= 0)
            return false;
        len += (size_t)k;
        buf[len] = '\0';
    }
    return true;
}

static int stop_child(pid_t pid)
{
    int st;
    kill(pid, SIGINT);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void slurp(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

/* recv --follow --json and tail --json into a pipe: each message is on the
 * pipe while the CLI still runs (stdout is line-buffered when not a TTY). */
static void test_follow_into_a_pipe(void **state)
{
    char buf[8192] = "", err_path[320], err[4096];
    int fd;
    snprintf(err_path, sizeof err_path, "%s/piped.err", hub.dir);
    run_ok("queue create", "queue", "create", "fq", NULL);
    const char *recv_argv[] = {"recv", "fq", "--follow", "--json", "--wait", "1", NULL};
    pid_t pid = spawn_piped(recv_argv, &fd, err_path);
    run_ok("send", "send", "fq", "first", NULL);
    uint64_t t0 = testhub_now_ms();
    assert_true(read_until(fd, buf, sizeof buf, "\"body\":\"first\"", 15000));
    printf("recv --follow --json | pipe: first message read after %llu ms\n",
           (unsigned long long)(testhub_now_ms() - t0));
    assert_int_equal(kill(pid, 0), 0); /* still following */
    run_ok("send", "send", "fq", "second", NULL);
    assert_true(read_until(fd, buf, sizeof buf, "\"body\":\"second\"", 15000));
    assert_int_equal(stop_child(pid), 0);
    close(fd);

    run_ok("topic create", "topic", "create", "ft", NULL);
    run_ok("sub create", "sub", "create", "ft", "fs", "--push", NULL);
    const char *tail_argv[] = {"tail", "ft", "--sub", "fs", "--json", NULL};
    buf[0] = '\0';
    pid = spawn_piped(tail_argv, &fd, err_path);
    /* the subscription may start after the first publish: publish until one shows */
    bool seen = false;
    for (int i = 0; i < 20 && !seen; i++) {
        run_ok("publish", "publish", "ft", "pushed", "--tag", "t1", NULL);
        seen = read_until(fd, buf, sizeof buf, "\"body\":\"pushed\"", 1000);
    }
    assert_true(seen);
    assert_non_null(strstr(buf, "\"tags\":[\"t1\"]"));
    assert_int_equal(kill(pid, 0), 0);
    assert_int_equal(stop_child(pid), 0);
    close(fd);
    slurp(err_path, err, sizeof err);
    assert_null(strstr(err, "waiting for messages")); /* not a terminal */
}

/* tail on a terminal says on stderr that it waits. */
static void test_tail_waiting_line_on_a_tty(void **state)
{
    char buf[4096] = "";
    int master;
    run_ok("topic create", "topic", "create", "wt", NULL);
    run_ok("sub create", "sub", "create", "wt", "ws", "--push", NULL);
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("MQHUB_SERVER", hub.address, 1);
        execl(cli.path, cli.path, "tail", "wt", "--sub", "ws", (char *)NULL);
        _exit(127);
    }
    bool said = read_until(master, buf, sizeof buf, "waiting for messages", 15000);
    stop_child(pid);
    close(master);
    if (!said)
        fprintf(stderr, "terminal showed: %s\n", buf);
    assert_true(said);
}

/* recv prints the tags and attrs the server returns, as JSON and in the table. */
static void test_recv_tags_and_attrs(void **state)
{
    testcli_run_t r;
    run_ok("topic create", "topic", "create", "tt", NULL);
    run_ok("queue create", "queue", "create", "tq", NULL);
    run_ok("sub create", "sub", "create", "tt", "tq", "--queue", "tq", NULL);
    run_ok("publish", "publish", "tt", "hello", "--tag", "card", "--tag", "eu", "--attr",
           "merchant=17", NULL);
    testcli_run(&cli, &r, NULL, "recv", "tq", "--json", "--wait", "5", NULL);
    assert_int_equal(r.status, 0);
    json_t *j = testcli_json(&r);
    json_t *m = json_array_get(testcli_field(j, "msgs"), 0);
    assert_non_null(m);
    json_t *tags = testcli_field(m, "tags");
    assert_int_equal(json_array_size(tags), 2);
    assert_string_equal(json_string_value(json_array_get(tags, 0)), "card");
    assert_string_equal(json_string_value(json_array_get(tags, 1)), "eu");
    assert_string_equal(json_string_value(testcli_field(testcli_field(m, "attrs"), "merchant")),
                        "17");
    assert_string_equal(json_string_value(testcli_field(m, "body")), "hello");
    json_decref(j);

    testcli_run(&cli, &r, NULL, "recv", "tq", "--wait", "99999999999", NULL); /* hostile */
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--wait takes 0 to"));
    run_ok("publish", "publish", "tt", "again", "--tag", "card", "--attr", "merchant=18", NULL);
    testcli_run(&cli, &r, NULL, "recv", "tq", "--wait", "5", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "TAGS"));
    assert_non_null(strstr(r.out, "ATTRS"));
    assert_non_null(strstr(r.out, "merchant=18"));
    assert_non_null(strstr(r.out, "card"));
}

static void test_version_help_examples(void **state)
{
    static const char *const cmds[] = {"ping", "queue", "send", "recv", "delete", "topic",
                                       "publish", "sub", "tail", "cluster", "script", "block",
                                       "user", "completion"};
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "--version", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "mqhub ", 6) == 0);
    assert_non_null(strstr(r.out, "protocol"));
    testcli_run(&cli, &r, NULL, "help", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: mqhub"));
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        testcli_run(&cli, &r, NULL, "help", cmds[i], NULL);
        assert_int_equal(r.status, 0);
        if (!strstr(r.out, "example:\n  mqhub ") && !strstr(r.out, "example:\n  source"))
            fail_msg("`mqhub help %s` has no example: %s", cmds[i], r.out);
    }
    testcli_run(&cli, &r, NULL, "help", "queue", "create", NULL);
    assert_non_null(strstr(r.out, "usage: mqhub queue create"));
    assert_non_null(strstr(r.out, "example:\n  mqhub queue create"));
    testcli_run(&cli, &r, NULL, "queue", "rewind", "--help", NULL);
    assert_non_null(strstr(r.out, "example:\n  mqhub queue rewind"));
}

static void test_did_you_mean(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "pign", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "did you mean `mqhub ping`?"));
    testcli_run(&cli, &r, NULL, "queue", "craete", "x", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "did you mean `mqhub queue create`?"));
    testcli_run(&cli, &r, NULL, "sub", "lsit", "t", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "did you mean `mqhub sub list`?"));
    testcli_run(&cli, &r, NULL, "help", "pubish", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "did you mean `mqhub publish`?"));
    testcli_run(&cli, &r, NULL, "recv", "q", "--folow", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "did you mean --follow?"));
    testcli_run(&cli, &r, NULL, "xyzzyq", NULL); /* nothing near: no guess */
    assert_int_equal(r.status, 2);
    assert_null(strstr(r.err, "did you mean"));
    assert_non_null(strstr(r.err, "unknown command"));
}

/* Server sentences that name a protocol op come out naming the command. */
static void test_hints_name_commands(void **state)
{
    testcli_run_t r;
    testcli_run(&cli, &r, NULL, "queue", "get", "nosuch", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "create it with: mqhub queue create nosuch"));
    assert_null(strstr(r.err, "queue.create"));
    testcli_run(&cli, &r, NULL, "topic", "get", "nosuch", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "create it with: mqhub topic create nosuch"));
    run_ok("topic create", "topic", "create", "ht", NULL);
    testcli_run(&cli, &r, NULL, "sub", "get", "ht", "nosub", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "create it with: mqhub sub create ht nosub"));
}

/* The line of @out whose first word is @key, into @line. */
static bool line_of(const char *out, const char *key, char *line, size_t size)
{
    size_t klen = strlen(key);
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
            snprintf(line, size, "%.*s", (int)strcspn(p, "\n"), p);
            return true;
        }
    }
    return false;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

/* queue get, topic get and sub get: a KIND NAME heading, "field  value"
 * rows in one column, the same unit style. */
static void test_get_layout(void **state)
{
    testcli_run_t r;
    char line[256];
    run_ok("queue create", "queue", "create", "lq", "--visibility-timeout", "45", NULL);
    run_ok("topic create", "topic", "create", "lt", "--retention", "3600", NULL);
    run_ok("sub create", "sub", "create", "lt", "ls", "--queue", "lq", NULL);

    testcli_run(&cli, &r, NULL, "queue", "get", "lq", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "QUEUE ", 6) == 0);
    assert_true(line_of(r.out, "visibility_timeout", line, sizeof line));
    assert_true(ends_with(line, " 45 s"));
    assert_true(line_of(r.out, "max_msg_size", line, sizeof line));
    assert_true(ends_with(line, " B"));
    assert_true(line_of(r.out, "ready", line, sizeof line));

    testcli_run(&cli, &r, NULL, "topic", "get", "lt", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "TOPIC ", 6) == 0);
    assert_true(line_of(r.out, "retention", line, sizeof line));
    assert_true(ends_with(line, " 3600 s"));
    assert_true(line_of(r.out, "max_msg_size", line, sizeof line));
    assert_true(ends_with(line, " B"));
    assert_true(line_of(r.out, "subscriptions", line, sizeof line));
    assert_true(ends_with(line, " ls"));

    testcli_run(&cli, &r, NULL, "sub", "get", "lt", "ls", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "SUBSCRIPTION ", 13) == 0);
    assert_true(line_of(r.out, "matched_total", line, sizeof line));
    assert_true(line_of(r.out, "topic", line, sizeof line));
    assert_true(ends_with(line, " lt"));
}

/* A listening socket on a free loopback port (never accepted from). */
static int listener(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* --server HOST gets the client port; the dashboard's port is named; a port
 * that never answers, or answers garbage, ends in bounded time without a
 * false "HTTP port" claim. */
static void test_server_addresses(void **state)
{
    testcli_run_t r;
    char server[sizeof hub.address + 16];
    uint16_t port;

    /* Nothing is expected on port 6200 here; when a hub of the user's answers
     * there (make run), the address is not in the output and is not checked. */
    testcli_run(&cli, &r, NULL, "--server", "localhost", "--timeout", "2000", "ping", NULL);
    assert_true(r.status == 0 || strstr(r.err, "localhost:6200") ||
                strstr(r.out, "localhost:6200"));
    testcli_run(&cli, &r, NULL, "--server", "::1", "--timeout", "2000", "ping", NULL);
    assert_true(r.status == 0 || strstr(r.err, "[::1]:6200") || strstr(r.out, "[::1]:6200"));
    /* a list: each HOST without a port gets one, the others are kept */
    snprintf(server, sizeof server, "localhost,%s", hub.address);
    testcli_run(&cli, &r, NULL, "--server", server, "--timeout", "2000", "cluster", "status",
                NULL);
    if (r.status != 0) /* nothing on localhost:6200: the CLI named both addresses */
        assert_non_null(strstr(r.err, "localhost:6200,127.0.0.1:"));

    snprintf(server, sizeof server, "127.0.0.1:%u", ws_port);
    testcli_run(&cli, &r, NULL, "--server", server, "ping", NULL);
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.err, "is an HTTP port"));
    assert_non_null(strstr(r.err, "--server 127.0.0.1:6200"));

    int silent = listener(&port); /* accepts (backlog) and never answers */
    snprintf(server, sizeof server, "127.0.0.1:%u", port);
    uint64_t t0 = testhub_now_ms();
    testcli_run(&cli, &r, NULL, "--server", server, "--timeout", "1500", "ping", NULL);
    printf("silent server: exit %d after %llu ms\n", r.status,
           (unsigned long long)(testhub_now_ms() - t0));
    assert_true(r.status == 1 || r.status == 3);
    assert_true(testhub_now_ms() - t0 < 20000);
    assert_null(strstr(r.err, "HTTP port"));
    close(silent);

    int garbage = listener(&port);
    pid_t child = fork();
    if (child == 0) { /* answers every connection with bytes no mqhub sends */
        for (int i = 0; i < 4; i++) {
            int c = accept(garbage, NULL, NULL);
            if (c < 0)
                _exit(0);
            if (write(c, "SSH-2.0-OpenSSH_9.2\r\n\xff\xff\xff\xff", 25) < 0)
                _exit(1);
            close(c);
        }
        _exit(0);
    }
    snprintf(server, sizeof server, "127.0.0.1:%u", port);
    testcli_run(&cli, &r, NULL, "--server", server, "--timeout", "1500", "ping", NULL);
    assert_true(r.status == 1 || r.status == 3);
    assert_null(strstr(r.err, "HTTP port"));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(garbage);
}

/* `mqhub completion bash` is valid bash and completes commands,
 * subcommands and options. */
static void test_completion(void **state)
{
    testcli_run_t r;
    char path[320], cmd[1024], out[512];
    testcli_run(&cli, &r, NULL, "completion", "bash", NULL);
    assert_int_equal(r.status, 0);
    snprintf(path, sizeof path, "%s/mqhub.bash", hub.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(r.out, f);
    fclose(f);
    static const struct {
        const char *words, *want;
        int cword;
    } cases[] = {
        {"mqhub que", "queue", 1},
        {"mqhub --server h:1 queue cr", "create", 4},
        {"mqhub sub li", "list", 2},
        {"mqhub recv q --fol", "--follow", 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cmd, sizeof cmd,
                 "bash -c 'source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _mqhub; "
                 "echo \"${COMPREPLY[*]}\"'",
                 path, cases[i].words, cases[i].cword);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = '\0';
        assert_int_equal(pclose(p), 0);
        if (!strstr(out, cases[i].want))
            fail_msg("completing \"%s\": got \"%s\", want %s", cases[i].words, out,
                     cases[i].want);
    }
}

int main(int argc, char **argv)
{
    mqhubd_path = testhub_binary(argc, argv);
    cli.path = getenv("MQHUB_CLI");
    cli.hub = &hub;
    if (!mqhubd_path || !cli.path) {
        fprintf(stderr, "need $MQHUBD (or argv[1]) and $MQHUB_CLI\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_follow_into_a_pipe),
        cmocka_unit_test(test_tail_waiting_line_on_a_tty),
        cmocka_unit_test(test_recv_tags_and_attrs),
        cmocka_unit_test(test_version_help_examples),
        cmocka_unit_test(test_did_you_mean),
        cmocka_unit_test(test_hints_name_commands),
        cmocka_unit_test(test_get_layout),
        cmocka_unit_test(test_server_addresses),
        cmocka_unit_test(test_completion),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
