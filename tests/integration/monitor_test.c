/* monitor_test.c: the read-only `monitor` verb (docs/security.md
 * "Permissions") on a real mqhubd with a root token and the WebSocket
 * transport's HTTP endpoints.
 *
 *   test_monitor_row   the permission matrix row of a user with monitor on
 *                      *: every read of the monitor set answers (and the
 *                      lists hold every name); every write and every read
 *                      outside the set (scripts, blocks, users) is
 *                      FORBIDDEN and changes nothing; a user with monitor on
 *                      a prefix sees only those names.
 *   test_metrics       /metrics: a monitor token 200 (header or ?token=), an
 *                      admin token 200, a token without the grant 403, a
 *                      monitor grant narrower than * 403, a forged token and
 *                      no token 401; monitor.check over TCP says the same.
 */
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testhub.h"
#include "testusers.h"

#define ROOT "root-token-for-monitor-test"
#define MON "monitor-token-0123456789"
#define NARROW "narrow-monitor-token-0123456789"
#define SENDER "sender-token-0123456789"
#define ADMIN "admin-token-0123456789"

static const char *mqhubd_path;
static testhub_t hub;
static uint16_t ws_port;

static int setup(void **state)
{
    char extra[128];
    testhub_opts_t o = {.token = ROOT, .extra_config = extra};
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    ws_port = testhub_free_port(NULL, 0);
    snprintf(extra, sizeof extra, "transport \"websocket\" { listen = \"127.0.0.1:%u\" }",
             ws_port);
    return testhub_start(&hub, mqhubd_path, &o);
}

static int teardown(void **state)
{
    (void)state;
    testhub_cleanup(&hub);
    return 0;
}

/* The users and objects of both tests (idempotent: the second call finds
 * them made). */
static void make_world(void)
{
    mqhub_client_t *root = testusers_connect(&hub, ROOT);
    mqhub_queue_info_t qi;
    if (mqhub_client_queue_get(root, "payments.in", &qi) == 0) {
        mqhub_client_close(root);
        return;
    }
    assert_int_equal(mqhub_client_queue_create(root, "payments.in", NULL), 0);
    assert_int_equal(mqhub_client_queue_create(root, "other", NULL), 0);
    assert_int_equal(mqhub_client_topic_create(root, "payments.t", NULL), 0);
    assert_int_equal(mqhub_client_send(root, "other", "x", 1, NULL, NULL), 0);
    const char *src = "function filter(m)\n  return true\nend\n";
    assert_int_equal(mqhub_client_script_load(root, "risk1", src, strlen(src), NULL), 0);
    testusers_add(root, "mon", MON, "monitor", "*");
    testusers_add(root, "narrow", NARROW, "monitor", "payments*");
    testusers_add(root, "sender", SENDER, "send", "*");
    testusers_add(root, "admin", ADMIN, "admin", "*");
    mqhub_client_close(root);
}

static uint64_t sent_total(const char *queue)
{
    mqhub_client_t *root = testusers_connect(&hub, ROOT);
    mqhub_queue_info_t info;
    assert_int_equal(mqhub_client_queue_get(root, queue, &info), 0);
    mqhub_client_close(root);
    return info.stats.sent_total;
}

static void test_monitor_row(void **state)
{
    mqhub_queue_list_t ql;
    mqhub_queue_info_t qi;
    mqhub_msg_list_t ml;
    mqhub_receive_opts_t ro = {.max = 1, .wait = 0, .visibility = -1};
    bool changed;
    (void)state;

    make_world();
    uint64_t before = sent_total("other");
    mqhub_client_t *c = testusers_connect(&hub, MON);
    /* the reads of the monitor set */
    assert_int_equal(mqhub_client_ping(c), 0);
    assert_int_equal(testusers_call(c, "monitor.check", NULL), 0);
    assert_int_equal(testusers_call(c, "cluster.status", NULL), 0);
    assert_int_equal(mqhub_client_queue_get(c, "other", &qi), 0);
    assert_int_equal(qi.stats.sent_total, before);
    assert_int_equal(testusers_call(c, "topic.get", "name", "payments.t", NULL), 0);
    assert_int_equal(testusers_call(c, "subscription.list", "topic", "payments.t", NULL), 0);
    assert_int_equal(mqhub_client_queue_list(c, NULL, 0, 0, &ql), 0);
    assert_int_equal(ql.n, 2); /* every queue */
    mqhub_queue_list_free(&ql);
    assert_int_equal(mqhub_client_topic_list(c, NULL, 0, 0, &ql), 0);
    assert_int_equal(ql.n, 1);
    mqhub_queue_list_free(&ql);
    /* no write, no read outside the set */
    assert_int_equal(mqhub_client_send(c, "other", "denied-5f1", 10, NULL, NULL),
                     MQHUB_EFORBIDDEN);
    assert_non_null(strstr(mqhub_client_errmsg(c), "user 'mon' may not send to 'other'"));
    assert_int_equal(mqhub_client_receive(c, "other", &ro, &ml), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_publish(c, "payments.t", "p", 1, NULL, NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_queue_create(c, "denied-queue-5f2", NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_queue_purge(c, "other"), MQHUB_EFORBIDDEN);
    assert_int_equal(testusers_call(c, "topic.delete", "name", "payments.t", NULL),
                     MQHUB_EFORBIDDEN);
    assert_int_equal(
        testusers_call(c, "subscription.delete", "topic", "payments.t", "name", "s", NULL),
        MQHUB_EFORBIDDEN);
    assert_int_equal(
        testusers_call(c, "unsubscribe", "topic", "payments.t", "subscription", "s", NULL),
        MQHUB_EFORBIDDEN);
    assert_int_equal(testusers_call(c, "script.get", "name", "risk1", NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(testusers_call(c, "script.list", NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(testusers_call(c, "block.list", NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(testusers_call(c, "user.list", NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_user_grant(c, "mon", "admin", "*", &changed), MQHUB_EFORBIDDEN);
    assert_int_equal(testusers_call(c, "cluster.transfer", NULL), MQHUB_EFORBIDDEN);
    mqhub_client_close(c);
    /* nothing changed */
    assert_int_equal(sent_total("other"), before);
    c = testusers_connect(&hub, ROOT);
    assert_int_equal(mqhub_client_queue_get(c, "denied-queue-5f2", &qi), MQHUB_ENOT_FOUND);
    assert_int_equal(testusers_call(c, "topic.get", "name", "payments.t", NULL), 0);
    mqhub_client_close(c);
    /* monitor on a prefix: those names only, not the hub */
    c = testusers_connect(&hub, NARROW);
    assert_int_equal(mqhub_client_queue_get(c, "payments.in", &qi), 0);
    assert_int_equal(mqhub_client_queue_get(c, "other", &qi), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_queue_list(c, NULL, 0, 0, &ql), 0);
    assert_int_equal(ql.n, 1);
    assert_string_equal(ql.names[0], "payments.in");
    mqhub_queue_list_free(&ql);
    assert_int_equal(testusers_call(c, "monitor.check", NULL), MQHUB_EFORBIDDEN);
    assert_non_null(strstr(mqhub_client_errmsg(c), "monitor.check needs monitor on *"));
    mqhub_client_close(c);
    /* a grant of another verb does not pass monitor.check; admin does */
    c = testusers_connect(&hub, SENDER);
    assert_int_equal(testusers_call(c, "monitor.check", NULL), MQHUB_EFORBIDDEN);
    mqhub_client_close(c);
    c = testusers_connect(&hub, ADMIN);
    assert_int_equal(testusers_call(c, "monitor.check", NULL), 0);
    mqhub_client_close(c);
}

/* GET @path with @auth ("" for none) on the WebSocket listener: the status
 * code, the body into @body. */
static int http_get(const char *path, const char *auth, char *body, size_t size)
{
    char req[512], resp[1 << 16];
    size_t got = 0;
    int fd = testhub_connect_port(ws_port), status = -1;
    assert_true(fd >= 0);
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sConnection: close\r\n\r\n", path,
             *auth ? "Authorization: " : "", auth, *auth ? "\r\n" : "");
    assert_int_equal(testhub_write_all(fd, req, strlen(req)), 0);
    for (int rounds = 0; rounds < 200 && got < sizeof resp - 1; rounds++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, resp + got, sizeof resp - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    resp[got] = '\0';
    sscanf(resp, "HTTP/1.1 %d", &status);
    const char *b = strstr(resp, "\r\n\r\n");
    snprintf(body, size, "%s", b ? b + 4 : "");
    return status;
}

static void test_metrics(void **state)
{
    char body[1 << 16];
    (void)state;

    make_world();
    assert_int_equal(http_get("/metrics", "Bearer " MON, body, sizeof body), 200);
    assert_non_null(strstr(body, "queue=\"other\""));
    assert_int_equal(http_get("/metrics?token=" MON, "", body, sizeof body), 200);
    assert_int_equal(http_get("/metrics", "Bearer " ADMIN, body, sizeof body), 200);
    assert_int_equal(http_get("/metrics", "Bearer " SENDER, body, sizeof body), 403);
    assert_non_null(strstr(body, "monitor or admin grant on *"));
    assert_int_equal(http_get("/metrics", "Bearer " NARROW, body, sizeof body), 403);
    assert_int_equal(http_get("/metrics", "", body, sizeof body), 401);
    /* forged: a monitor token with one character changed */
    assert_int_equal(http_get("/metrics", "Bearer monitor-token-0123456788", body, sizeof body),
                     401);
    assert_int_equal(http_get("/metrics", "Bearer " MON, body, sizeof body), 200);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monitor_row),
        cmocka_unit_test(test_metrics),
    };
    mqhubd_path = testhub_binary(argc, argv);
    return cmocka_run_group_tests(tests, setup, teardown);
}
