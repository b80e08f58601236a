/* datadir_lock_test.c: one daemon per data directory (docs/operations.md
 * "One daemon per data directory").
 *
 * A hub runs; a second mqhubd with its own ports but the same data
 * directory exits at once with status 78 and "data directory D in use by
 * pid N" (N: the first one), and so does `mqhubd --repair`; the first keeps
 * serving (ping, send, receive) with its data intact. The lock goes with
 * the process: after SIGTERM, and after kill -9, the hub starts again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testdamage.h"
#include "testhub.h"

#define EXIT_CONFIG 78
#define AT_ONCE_MS 3000

static const char *mqhubd_path;

static mqhub_client_t *connect_hub(testhub_t *h)
{
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.timeout_ms = 10000};
    char err[256];
    assert_int_equal(mqhub_client_connect(&c, h->address, &o, err, sizeof err), 0);
    return c;
}

/* A second configuration: other ports, the same data directory. */
static void write_second_config(const testhub_t *h, char *path, size_t len)
{
    uint16_t taken[2] = {h->port, h->raft_port};
    uint16_t port = testhub_free_port(taken, 2);
    taken[0] = port;
    uint16_t raft = testhub_free_port(taken, 2);
    snprintf(path, len, "%s/second.lua", h->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "node { id = 1, data = \"%s/data\", raft = \"127.0.0.1:%u\" }\n", h->dir, raft);
    fprintf(f, "transport \"tcp\" { listen = \"127.0.0.1:%u\" }\n", port);
    assert_int_equal(fclose(f), 0);
}

/* Start a second daemon with @arg; it must be refused at once. */
static void refused(const testhub_t *h, const char *config, const char *arg)
{
    char out[4096], want[400];
    uint64_t t0 = testhub_now_ms();
    int st = testdamage_run(mqhubd_path, config, arg, 10000, out, sizeof out);
    uint64_t took = testhub_now_ms() - t0;
    assert_int_equal(st, EXIT_CONFIG);
    assert_true(took < AT_ONCE_MS);
    snprintf(want, sizeof want, "data directory %s/data in use by pid %d", h->dir, (int)h->pid);
    if (!strstr(out, want)) {
        fprintf(stderr, "expected \"%s\" in:\n%s\n", want, out);
        fail();
    }
}

/* Receive one message and check its body. */
static void receive_one(mqhub_client_t *c, const char *body)
{
    mqhub_receive_opts_t o = {.max = 1, .wait = 1, .visibility = 600};
    mqhub_msg_list_t l;
    assert_int_equal(mqhub_client_receive(c, "q", &o, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.msgs[0].body, body);
    mqhub_msg_list_free(&l);
}

static void test_second_daemon(void **state)
{
    testhub_t *h = *state;
    char second[400];

    assert_int_equal(testhub_start(h, mqhubd_path, NULL), 0);
    mqhub_client_t *c = connect_hub(h);
    assert_int_equal(mqhub_client_queue_create(c, "q", NULL), 0);
    assert_int_equal(mqhub_client_send(c, "q", "before", 6, NULL, NULL), 0);

    write_second_config(h, second, sizeof second);
    refused(h, second, NULL);
    refused(h, second, "--repair");

    /* The first one never noticed. */
    assert_true(testhub_alive(h));
    assert_int_equal(mqhub_client_ping(c), 0);
    assert_int_equal(mqhub_client_send(c, "q", "after", 5, NULL, NULL), 0);
    receive_one(c, "before");
    receive_one(c, "after");
    mqhub_client_close(c);

    /* The lock is the process's: gone after a stop, and after kill -9. */
    assert_int_equal(testhub_stop(h), 0);
    assert_int_equal(testhub_restart(h), 0);
    testhub_kill(h);
    assert_int_equal(testhub_restart(h), 0);
    c = connect_hub(h);
    assert_int_equal(mqhub_client_ping(c), 0);
    mqhub_client_close(c);
    assert_int_equal(testhub_stop(h), 0);
}

static int setup(void **state)
{
    *state = calloc(1, sizeof(testhub_t));
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    testhub_cleanup(*state);
    free(*state);
    return 0;
}

int main(int argc, char **argv)
{
    mqhubd_path = testhub_binary(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_second_daemon, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
