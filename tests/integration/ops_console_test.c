/* ops_console_test.c: the operators' ops (issue 16) against a real mqhubd
 * through the mqhub CLI ($MQHUB_CLI) and libmqhub — `queue peek` (locks and
 * counts nothing, shows the dead-letter source), `queue redrive` (back to
 * the source in order, in several commands with --max, progress), and
 * `connections` / `consumers` listing a raw connection's parked receive and
 * push subscription, with their permissions (monitor needed; peek needs
 * receive). Hostile: peek max 0 and 1000, redrive of a non-DLQ and to a
 * missing queue, consumer.list with a forged field type and both filters, a
 * raw connection that never reads its pushes. Ephemeral subscriptions: a
 * forged owner replaced by the hub's, deleted when the session closes, a
 * session asking for 1000 (64), `tail --ephemeral`, and the reap by a
 * restarted node of what a killed one left.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "mqhub/client.h"
#include "testcli.h"
#include "testhub.h"

#define ROOT "root-token-for-ops-console-test"

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

/* Run the CLI and expect exit status @want. */
#define RUN(r, want, ...)                                                                     \
    do {                                                                                      \
        testcli_run(&cli, (r), NULL, __VA_ARGS__, NULL);                                      \
        if ((r)->status != (want))                                                            \
            fail_msg("exit %d (want %d): out %s err %s", (r)->status, want, (r)->out,         \
                     (r)->err);                                                               \
    } while (0)

static long long queue_stat(const char *q, const char *key)
{
    testcli_run_t r;
    RUN(&r, 0, "queue", "get", q, "--json");
    json_t *j = testcli_json(&r);
    long long v = (long long)json_integer_value(testcli_field(testcli_field(j, "stats"), key));
    json_decref(j);
    return v;
}

static mqhub_client_t *client(const char *token)
{
    mqhub_client_opts_t o = {.token = token, .timeout_ms = 5000};
    mqhub_client_t *c = NULL;
    char err[256];
    if (mqhub_client_connect(&c, hub.address, &o, err, sizeof err) != 0)
        fail_msg("connect: %s", err);
    return c;
}

/* orders dead-letters into orders-dlq after one receive; three messages
 * are dead-lettered. */
static void make_dead_letters(void)
{
    testcli_run_t r;
    RUN(&r, 0, "queue", "create", "orders-dlq");
    RUN(&r, 0, "queue", "create", "orders", "--dead-letter", "orders-dlq:1");
    for (int i = 0; i < 3; i++) {
        char body[16];
        snprintf(body, sizeof body, "order-%d", i);
        RUN(&r, 0, "send", "orders", body, "--attr", "n=x");
    }
    RUN(&r, 0, "recv", "orders", "--max", "10", "--visibility", "0");
    testhub_sleep_ms(20);
    RUN(&r, 0, "recv", "orders", "--max", "10", "--json");
    json_t *j = testcli_json(&r);
    assert_int_equal(json_array_size(testcli_field(j, "msgs")), 0);
    json_decref(j);
    assert_int_equal(queue_stat("orders-dlq", "ready"), 3);
}

static void test_peek_and_redrive(void **state)
{
    testcli_run_t r;
    (void)state;
    make_dead_letters();
    /* peek: the dead letters with their source, nothing locked */
    RUN(&r, 0, "queue", "peek", "orders-dlq", "--max", "10", "--json");
    json_t *j = testcli_json(&r);
    json_t *msgs = testcli_field(j, "msgs");
    assert_int_equal(json_array_size(msgs), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(msgs, i), *a = testcli_field(m, "attrs");
        char body[16];
        snprintf(body, sizeof body, "order-%zu", i);
        assert_string_equal(json_string_value(testcli_field(m, "body")), body);
        assert_string_equal(json_string_value(testcli_field(a, "mqhub.source_queue")), "orders");
        assert_string_equal(json_string_value(testcli_field(a, "n")), "x");
        assert_int_equal(json_integer_value(testcli_field(m, "receive_count")), 0);
    }
    json_decref(j);
    assert_int_equal(queue_stat("orders-dlq", "ready"), 3);
    assert_int_equal(queue_stat("orders-dlq", "inflight"), 0);
    assert_int_equal(queue_stat("orders-dlq", "received_total"), 0);
    /* the table shows them too */
    RUN(&r, 0, "queue", "peek", "orders-dlq", "--max", "2");
    assert_non_null(strstr(r.out, "order-0"));
    assert_non_null(strstr(r.out, "mqhub.source_queue=orders"));
    assert_non_null(strstr(r.out, "--from"));
    /* hostile peeks: the CLI refuses, and so does the server */
    RUN(&r, 2, "queue", "peek", "orders-dlq", "--max", "0");
    RUN(&r, 2, "queue", "peek", "orders-dlq", "--max", "1000");
    mqhub_client_t *c = client(ROOT);
    mqhub_response_t resp;
    assert_int_equal(mqhub_client_queue_peek(c, "orders-dlq", 1000, 0, &resp), MQHUB_EBAD_REQUEST);
    assert_int_equal(mqhub_client_queue_peek(c, "orders-dlq", 0, 0, &resp), MQHUB_EBAD_REQUEST);
    assert_int_equal(mqhub_client_queue_peek(c, "nope", 1, 0, &resp), MQHUB_ENOT_FOUND);
    mqhub_client_close(c);
    /* redrive: hostile first */
    RUN(&r, 1, "queue", "redrive", "orders");
    assert_non_null(strstr(r.err, "BAD_REQUEST"));
    assert_non_null(strstr(r.err, "dead-letter"));
    RUN(&r, 1, "queue", "redrive", "orders-dlq", "missing");
    assert_non_null(strstr(r.err, "NOT_FOUND"));
    RUN(&r, 2, "queue", "redrive", "orders-dlq", "--max", "20000");
    /* two messages per command: two commands walk three messages */
    RUN(&r, 0, "queue", "redrive", "orders-dlq", "--max", "2", "--json");
    j = testcli_json(&r);
    assert_int_equal(json_integer_value(testcli_field(j, "moved")), 3);
    assert_int_equal(json_integer_value(testcli_field(j, "remaining")), 0);
    assert_int_equal(json_integer_value(testcli_field(j, "commands")), 2);
    json_decref(j);
    assert_int_equal(queue_stat("orders", "ready"), 3);
    RUN(&r, 0, "recv", "orders", "--max", "10", "--json");
    j = testcli_json(&r);
    msgs = testcli_field(j, "msgs");
    assert_int_equal(json_array_size(msgs), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(msgs, i);
        char body[16];
        snprintf(body, sizeof body, "order-%zu", i);
        assert_string_equal(json_string_value(testcli_field(m, "body")), body);
        assert_int_equal(json_integer_value(testcli_field(m, "receive_count")), 1);
        assert_null(json_object_get(testcli_field(m, "attrs"), "mqhub.source_queue"));
    }
    json_decref(j);
    RUN(&r, 0, "queue", "redrive", "orders-dlq");
    assert_non_null(strstr(r.out, "moved 0 messages"));
}

/* A raw connection that said hello with the root token. */
static int raw_open(void)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone z;
    msgpack_object o;
    int fd = testhub_connect_raw(&hub);
    assert_true(fd >= 0);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "hello");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 1);
    mp_pack_cstr(&pk, "version");
    msgpack_pack_uint64(&pk, 1);
    mp_pack_cstr(&pk, "token");
    mp_pack_cstr(&pk, ROOT);
    assert_int_equal(testhub_write_frame(fd, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
    msgpack_zone_init(&z, 1024);
    assert_int_equal(testhub_read_frame(fd, 5000, &z, &o), 0);
    msgpack_zone_destroy(&z);
    return fd;
}

/* {op, id: 2, @k1: @v1, @k2: @v2, @k3: @n} on @fd (@k2, @k3 NULL: left out). */
static void raw_request(int fd, const char *op, const char *k1, const char *v1, const char *k2,
                        const char *v2, const char *k3, uint64_t n)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3 + (k2 != NULL) + (k3 != NULL));
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, op);
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 2);
    mp_pack_cstr(&pk, k1);
    mp_pack_cstr(&pk, v1);
    if (k2) {
        mp_pack_cstr(&pk, k2);
        mp_pack_cstr(&pk, v2);
    }
    if (k3) {
        mp_pack_cstr(&pk, k3);
        msgpack_pack_uint64(&pk, n);
    }
    assert_int_equal(testhub_write_frame(fd, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* The consumers the CLI lists with @filter (NULL, "--queue", "--topic") @name. */
static json_t *consumers(const char *filter, const char *name)
{
    testcli_run_t r;
    if (filter)
        RUN(&r, 0, "consumers", filter, name, "--json");
    else
        RUN(&r, 0, "consumers", "--json");
    json_t *j = testcli_json(&r);
    json_t *l = json_incref(testcli_field(j, "consumers"));
    json_decref(j);
    return l;
}

static void test_connections_and_consumers(void **state)
{
    testcli_run_t r;
    (void)state;
    RUN(&r, 0, "queue", "create", "jobs");
    RUN(&r, 0, "topic", "create", "events");
    RUN(&r, 0, "sub", "create", "events", "live", "--push");
    for (int i = 0; i < 20; i++)
        RUN(&r, 0, "publish", "events", "ev");
    /* a raw session: one receive parked on the empty queue jobs, and a
     * push subscription whose pushes it never reads */
    int fd = raw_open();
    raw_request(fd, "receive", "queue", "jobs", NULL, NULL, "wait", 20);
    raw_request(fd, "subscribe", "topic", "events", "subscription", "live", "credit", 5);
    testhub_sleep_ms(300);

    RUN(&r, 0, "connections", "--json");
    json_t *j = testcli_json(&r);
    json_t *list = testcli_field(j, "connections"), *raw = NULL, *self = NULL, *c;
    size_t i;
    assert_true(json_array_size(list) >= 2);
    json_array_foreach(list, i, c) {
        if (json_is_true(testcli_field(c, "self")))
            self = c;
        else if (json_integer_value(testcli_field(c, "parked")) == 1)
            raw = c;
    }
    assert_non_null(self);
    assert_non_null(raw);
    assert_string_equal(json_string_value(testcli_field(raw, "transport")), "tcp");
    assert_string_equal(json_string_value(testcli_field(raw, "identity")), "root");
    assert_non_null(strstr(json_string_value(testcli_field(raw, "peer")), "127.0.0.1"));
    assert_true(json_integer_value(testcli_field(raw, "bytes_in")) > 40);
    assert_true(json_integer_value(testcli_field(raw, "bytes_out")) > 40); /* hello + pushes */
    assert_int_equal(json_integer_value(testcli_field(raw, "requests")), 3);
    json_t *subs = testcli_field(raw, "subscriptions");
    assert_int_equal(json_array_size(subs), 1);
    assert_string_equal(json_string_value(testcli_field(json_array_get(subs, 0), "topic")),
                        "events");
    assert_int_equal(json_integer_value(testcli_field(json_array_get(subs, 0), "inflight")), 5);
    print_message("raw session: bytes_in %lld bytes_out %lld\n",
                  (long long)json_integer_value(testcli_field(raw, "bytes_in")),
                  (long long)json_integer_value(testcli_field(raw, "bytes_out")));
    json_decref(j);
    RUN(&r, 0, "connections");
    assert_non_null(strstr(r.out, "TRANSPORT"));
    assert_non_null(strstr(r.out, "events/live"));

    json_t *l = consumers("--queue", "jobs");
    assert_int_equal(json_array_size(l), 1);
    assert_string_equal(json_string_value(testcli_field(json_array_get(l, 0), "kind")), "receive");
    assert_int_equal(json_integer_value(testcli_field(json_array_get(l, 0), "parked")), 1);
    json_decref(l);
    l = consumers("--topic", "events");
    assert_int_equal(json_array_size(l), 1);
    assert_string_equal(json_string_value(testcli_field(json_array_get(l, 0), "kind")), "push");
    assert_int_equal(json_integer_value(testcli_field(json_array_get(l, 0), "credit")), 0);
    json_decref(l);
    l = consumers(NULL, NULL);
    assert_int_equal(json_array_size(l), 2);
    json_decref(l);
    l = consumers("--queue", "orders-nothing");
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);
    RUN(&r, 0, "consumers");
    assert_non_null(strstr(r.out, "0 free, 5 held"));

    /* the session goes: so do its consumers */
    close(fd);
    testhub_sleep_ms(300);
    l = consumers(NULL, NULL);
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);

    /* hostile filters */
    mqhub_client_t *cl = client(ROOT);
    mqhub_response_t resp;
    assert_int_equal(mqhub_client_consumer_list(cl, "jobs", "events", &resp), MQHUB_EBAD_REQUEST);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_cstr(&pk, "queue");
    msgpack_pack_uint64(&pk, 5);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(mqhub_client_call(cl, "consumer.list", &u.data, &resp), MQHUB_EBAD_REQUEST);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    mqhub_client_close(cl);
}

static void test_permissions(void **state)
{
    testcli_run_t r;
    (void)state;
    RUN(&r, 0, "queue", "create", "perm-q");
    RUN(&r, 0, "send", "perm-q", "secret");
    RUN(&r, 0, "user", "add", "watcher", "--grant", "monitor:*", "--user-token",
        "watcher-token-0123456789");
    RUN(&r, 0, "user", "add", "sender", "--grant", "send:perm-q", "--user-token",
        "sender-token-0123456789");
    RUN(&r, 0, "--token", "watcher-token-0123456789", "connections", "--json");
    RUN(&r, 1, "--token", "sender-token-0123456789", "connections");
    assert_non_null(strstr(r.err, "FORBIDDEN"));
    RUN(&r, 1, "--token", "sender-token-0123456789", "consumers");
    assert_non_null(strstr(r.err, "FORBIDDEN"));
    /* peek shows bodies: monitor is not enough, receive is */
    RUN(&r, 1, "--token", "watcher-token-0123456789", "queue", "peek", "perm-q");
    assert_non_null(strstr(r.err, "FORBIDDEN"));
    RUN(&r, 0, "user", "grant", "sender", "receive", "perm-q");
    RUN(&r, 0, "--token", "sender-token-0123456789", "queue", "peek", "perm-q");
    assert_non_null(strstr(r.out, "secret"));
    /* redrive needs manage on the DLQ */
    RUN(&r, 1, "--token", "sender-token-0123456789", "queue", "redrive", "perm-q", "perm-q");
    assert_non_null(strstr(r.err, "FORBIDDEN"));
}


/* The subscriptions of topic @t (names), as libmqhub lists them. */
static size_t n_subs(mqhub_client_t *c, const char *t, const char *prefix)
{
    mqhub_queue_list_t l;
    size_t n = 0;
    assert_int_equal(mqhub_client_sub_list(c, t, &l), 0);
    for (size_t i = 0; i < l.n; i++)
        n += strncmp(l.names[i], prefix, strlen(prefix)) == 0;
    mqhub_queue_list_free(&l);
    return n;
}

/* Poll until topic @t has @want subscriptions named @prefix* (bounded). */
static void wait_subs(mqhub_client_t *c, const char *t, const char *prefix, size_t want,
                      int timeout_ms)
{
    uint64_t end = testhub_now_ms() + (uint64_t)timeout_ms;
    size_t n;
    while ((n = n_subs(c, t, prefix)) != want && testhub_now_ms() < end)
        testhub_sleep_ms(50);
    if (n != want)
        fail_msg("%s: %zu subscriptions %s*, want %zu", t, n, prefix, want);
}

static void test_ephemeral(void **state)
{
    testcli_run_t r;
    mqhub_response_t resp;
    char owner[80];
    (void)state;
    RUN(&r, 0, "topic", "create", "feed");
    mqhub_client_t *admin = client(ROOT);
    /* a raw session forges the owner: the hub writes its own */
    int fd = raw_open();
    {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_zone z;
        msgpack_object o;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 7);
        mp_pack_cstr(&pk, "op");
        mp_pack_cstr(&pk, "subscription.create");
        mp_pack_cstr(&pk, "id");
        msgpack_pack_uint64(&pk, 9);
        mp_pack_cstr(&pk, "topic");
        mp_pack_cstr(&pk, "feed");
        mp_pack_cstr(&pk, "name");
        mp_pack_cstr(&pk, "eph-raw");
        mp_pack_cstr(&pk, "endpoint");
        msgpack_pack_map(&pk, 1);
        mp_pack_cstr(&pk, "push");
        msgpack_pack_true(&pk);
        mp_pack_cstr(&pk, "ephemeral");
        msgpack_pack_true(&pk);
        mp_pack_cstr(&pk, "owner");
        mp_pack_cstr(&pk, "forged.owner.1");
        assert_int_equal(testhub_write_frame(fd, sb.data, sb.size), 0);
        msgpack_sbuffer_destroy(&sb);
        msgpack_zone_init(&z, 1024);
        assert_int_equal(testhub_read_frame(fd, 5000, &z, &o), 0);
        const msgpack_object *ok = mp_map_get(&o, "ok");
        assert_true(ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean);
        msgpack_zone_destroy(&z);
    }
    assert_int_equal(mqhub_client_sub_get(admin, "feed", "eph-raw", &resp), 0);
    const msgpack_object *ow = mqhub_map_get(&resp.map, "owner");
    assert_non_null(ow);
    snprintf(owner, sizeof owner, "%.*s", (int)ow->via.str.size, ow->via.str.ptr);
    mqhub_response_free(&resp);
    assert_null(strstr(owner, "forged"));
    print_message("owner of the raw session's subscription: %s\n", owner);
    /* a client cannot propose the node's reap */
    {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_unpacked u;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        mp_pack_cstr(&pk, "owner");
        mp_pack_cstr(&pk, owner);
        msgpack_unpacked_init(&u);
        assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(mqhub_client_call(admin, "sub.reap", &u.data, &resp), MQHUB_EUNKNOWN_OP);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
    }
    assert_int_equal(n_subs(admin, "feed", "eph-raw"), 1);
    /* closing the session deletes it (through raft) */
    close(fd);
    wait_subs(admin, "feed", "eph-raw", 0, 5000);

    /* a session asking for 1000 gets 64; they go with it */
    mqhub_client_t *greedy = client(ROOT);
    mqhub_sub_opts_t o = {.ephemeral = true};
    int ok = 0, refused = 0;
    for (int i = 0; i < 1000; i++) {
        char name[32];
        snprintf(name, sizeof name, "greedy-%d", i);
        int rc = mqhub_client_sub_create(greedy, "feed", name, &o);
        if (rc == 0)
            ok++;
        else if (rc == MQHUB_EBAD_REQUEST)
            refused++;
    }
    assert_int_equal(ok, 64);
    assert_int_equal(refused, 936);
    assert_int_equal(n_subs(admin, "feed", "greedy-"), 64);
    mqhub_client_close(greedy);
    wait_subs(admin, "feed", "greedy-", 0, 5000);

    /* tail --ephemeral: its own subscription, gone when it exits */
    const char *argv[] = {"tail", "feed", "--ephemeral", "--json", NULL};
    pid_t pid = testcli_spawn(&cli, argv, NULL);
    wait_subs(admin, "feed", "tail-", 1, 5000);
    assert_int_equal(mqhub_client_publish(admin, "feed", "hello-tail", 10, NULL, NULL), 0);
    assert_true(testcli_wait_out(&cli, "hello-tail", 5000));
    kill(pid, SIGTERM);
    testcli_collect(&cli, pid, &r);
    assert_int_equal(r.status, 0);
    wait_subs(admin, "feed", "tail-", 0, 5000);

    /* a restarted node (a new leader) reaps what a killed one left */
    mqhub_client_t *c = client(ROOT);
    assert_int_equal(mqhub_client_sub_create(c, "feed", "orphan", &o), 0);
    mqhub_client_close(admin);
    testhub_kill(&hub);
    mqhub_client_close(c);
    assert_int_equal(testhub_restart(&hub), 0);
    admin = client(ROOT);
    assert_int_equal(n_subs(admin, "feed", "orphan"), 1);
    wait_subs(admin, "feed", "orphan", 0, 15000);
    mqhub_client_close(admin);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peek_and_redrive),
        cmocka_unit_test(test_connections_and_consumers),
        cmocka_unit_test(test_permissions),
        cmocka_unit_test(test_ephemeral),
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
