/* permission_test.c: named users on a real mqhubd with a root token
 * (docs/security.md). A matrix — each verb × an allowed and a denied name
 * over the native TCP protocol — where a refusal is FORBIDDEN, changes
 * nothing and reaches no raft segment; queue.list shows a user only what it
 * may see; a grant, revoke or delete applies to a session already open; the
 * token of user.create is never in the raft log (given or generated); an
 * audit line for manage/script/admin ops; and, last (it throttles the
 * loopback address for what follows), 10,000 pipelined wrong hellos on one
 * connection are answered slowly and logged rate-limited.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testhub.h"
#include "testusers.h"

#define ROOT "root-token-for-permission-test"

static const char *mqhubd_path;
static testhub_t hub;

static int setup(void **state)
{
    testhub_opts_t o = {.token = ROOT};
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return testhub_start(&hub, mqhubd_path, &o);
}

static int teardown(void **state)
{
    (void)state;
    testhub_cleanup(&hub);
    return 0;
}

/* Whether @needle is anywhere in the data directory's files (the raft log). */
static bool in_data_dir(const char *needle)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "grep -rqaF -- '%s' '%s/data'", needle, hub.dir);
    return system(cmd) == 0;
}

/* How many lines of the daemon's log hold both @a and @b. */
static int log_lines(const char *a, const char *b)
{
    char path[512], line[4096];
    int n = 0;
    snprintf(path, sizeof path, "%s/mqhubd.log", hub.dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL);
    fclose(f);
    return n;
}

static uint64_t sent_total(mqhub_client_t *root, const char *queue)
{
    mqhub_queue_info_t info;
    assert_int_equal(mqhub_client_queue_get(root, queue, &info), 0);
    return info.stats.sent_total;
}

static void test_matrix(void **state)
{
    mqhub_client_t *root = testusers_connect(&hub, ROOT), *c;
    mqhub_msg_list_t l;
    mqhub_receive_opts_t ro = {.max = 1, .wait = 0, .visibility = -1};
    mqhub_queue_list_t ql;
    (void)state;

    assert_int_equal(mqhub_client_queue_create(root, "payments.in", NULL), 0);
    assert_int_equal(mqhub_client_queue_create(root, "other", NULL), 0);
    assert_int_equal(mqhub_client_topic_create(root, "payments.t", NULL), 0);
    assert_int_equal(mqhub_client_topic_create(root, "other.t", NULL), 0);
    assert_int_equal(mqhub_client_send(root, "other", "x", 1, NULL, NULL), 0);
    testusers_add(root, "sender", "sender-token-0123456789", "send", "payments*");
    testusers_add(root, "receiver", "receiver-token-0123456789", "receive", "payments*");
    testusers_add(root, "publisher", "publisher-token-0123456789", "publish", "payments*");
    testusers_add(root, "subscriber", "subscriber-token-0123456789", "subscribe", "payments*");
    testusers_add(root, "manager", "manager-token-0123456789", "manage", "payments*");
    testusers_add(root, "scripter", "scripter-token-0123456789", "script", "risk*");
    testusers_add(root, "admin", "admin-token-0123456789", "admin", "*");
    uint64_t other_sent = sent_total(root, "other");

    /* send */
    c = testusers_connect(&hub, "sender-token-0123456789");
    assert_int_equal(mqhub_client_send(c, "payments.in", "allowed-body-5e1", 16, NULL, NULL), 0);
    assert_int_equal(mqhub_client_send(c, "other", "denied-body-5e1", 15, NULL, NULL),
                     MQHUB_EFORBIDDEN);
    assert_non_null(strstr(mqhub_client_errmsg(c), "user 'sender' may not send to 'other'"));
    assert_int_equal(mqhub_client_receive(c, "payments.in", &ro, &l), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_queue_purge(c, "payments.in"), MQHUB_EFORBIDDEN);
    mqhub_client_close(c);
    /* receive (and lists show only what it may see) */
    c = testusers_connect(&hub, "receiver-token-0123456789");
    assert_int_equal(mqhub_client_receive(c, "payments.in", &ro, &l), 0);
    assert_int_equal(l.n, 1);
    mqhub_msg_list_free(&l);
    assert_int_equal(mqhub_client_receive(c, "other", &ro, &l), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_send(c, "payments.in", "x", 1, NULL, NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_queue_list(c, NULL, 0, 0, &ql), 0);
    assert_int_equal(ql.n, 1);
    assert_string_equal(ql.names[0], "payments.in");
    mqhub_queue_list_free(&ql);
    mqhub_client_close(c);
    /* publish */
    c = testusers_connect(&hub, "publisher-token-0123456789");
    assert_int_equal(mqhub_client_publish(c, "payments.t", "p", 1, NULL, NULL), 0);
    assert_int_equal(mqhub_client_publish(c, "other.t", "denied-body-5e2", 15, NULL, NULL),
                     MQHUB_EFORBIDDEN);
    mqhub_client_close(c);
    /* subscribe (the push session ops) */
    c = testusers_connect(&hub, "subscriber-token-0123456789");
    assert_int_not_equal(
        testusers_call(c, "unsubscribe", "topic", "payments.t", "subscription", "s", NULL),
        MQHUB_EFORBIDDEN);
    assert_int_equal(
        testusers_call(c, "unsubscribe", "topic", "other.t", "subscription", "s", NULL),
        MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_publish(c, "payments.t", "p", 1, NULL, NULL), MQHUB_EFORBIDDEN);
    mqhub_client_close(c);
    /* manage, with the second object of a dead-letter queue */
    c = testusers_connect(&hub, "manager-token-0123456789");
    assert_int_equal(mqhub_client_queue_create(c, "payments.new", NULL), 0);
    assert_int_equal(mqhub_client_queue_create(c, "denied-queue-5e3", NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_queue_purge(c, "other"), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_topic_create(c, "other.t2", NULL), MQHUB_EFORBIDDEN);
    mqhub_queue_attrs_t a;
    memset(&a, 0, sizeof a);
    assert_int_equal(mqhub_queue_attrs_parse(&a, "dead_letter", "other:5"), 0);
    assert_int_equal(mqhub_client_queue_create(c, "payments.dl", &a), MQHUB_EFORBIDDEN);
    assert_non_null(strstr(mqhub_client_errmsg(c), "needs send on other"));
    assert_int_equal(mqhub_client_send(c, "payments.in", "x", 1, NULL, NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_user_delete(c, "sender"), MQHUB_EFORBIDDEN);
    mqhub_client_close(c);
    /* script */
    c = testusers_connect(&hub, "scripter-token-0123456789");
    const char *src = "function filter(m)\n  return true\nend\n";
    assert_int_equal(mqhub_client_script_load(c, "risk1", src, strlen(src), NULL), 0);
    assert_int_equal(mqhub_client_script_load(c, "denied-script-5e4", src, strlen(src), NULL),
                     MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_queue_create(c, "risk.q", NULL), MQHUB_EFORBIDDEN);
    mqhub_client_close(c);
    /* admin */
    c = testusers_connect(&hub, "admin-token-0123456789");
    mqhub_response_t resp;
    assert_int_equal(mqhub_client_user_list(c, &resp), 0);
    mqhub_response_free(&resp);
    assert_int_equal(testusers_call(c, "cluster.remove", NULL) == MQHUB_EFORBIDDEN, 0);
    assert_int_equal(mqhub_client_send(c, "payments.in", "x", 1, NULL, NULL), MQHUB_EFORBIDDEN);
    mqhub_client_close(c);
    c = testusers_connect(&hub, "sender-token-0123456789");
    mqhub_response_t r2;
    assert_int_equal(mqhub_client_user_list(c, &r2), MQHUB_EFORBIDDEN);
    assert_int_equal(testusers_call(c, "cluster.remove", "x", "y", NULL), MQHUB_EFORBIDDEN);
    mqhub_client_close(c);

    /* nothing refused changed anything or reached the log */
    assert_int_equal(sent_total(root, "other"), other_sent);
    mqhub_queue_info_t qi;
    assert_int_equal(mqhub_client_queue_get(root, "denied-queue-5e3", &qi), MQHUB_ENOT_FOUND);
    assert_int_equal(mqhub_client_queue_get(root, "payments.dl", &qi), MQHUB_ENOT_FOUND);
    assert_true(in_data_dir("allowed-body-5e1"));
    assert_false(in_data_dir("denied-body-5e1"));
    assert_false(in_data_dir("denied-body-5e2"));
    assert_false(in_data_dir("denied-queue-5e3"));
    assert_false(in_data_dir("denied-script-5e4"));
    /* the audit trail */
    assert_true(log_lines("comp=audit", "identity=user:manager op=queue.create name=payments.new") >= 1);
    assert_true(log_lines("comp=audit", "name=denied-queue-5e3") >= 1);
    assert_true(log_lines("comp=audit", "result=denied") >= 1);
    assert_true(log_lines("comp=audit", "identity=user:scripter op=script.load name=risk1") >= 1);
    assert_true(log_lines("comp=audit", "identity=root op=user.create name=admin") >= 1);
    assert_int_equal(log_lines("comp=audit", "op=send "), 0);
    mqhub_client_close(root);
}

static void test_open_session_follows_grants(void **state)
{
    mqhub_client_t *root = testusers_connect(&hub, ROOT), *c;
    bool changed;
    (void)state;

    assert_int_equal(mqhub_client_queue_create(root, "live.q", NULL), 0);
    testusers_add(root, "late", "late-token-0123456789", NULL, NULL);
    c = testusers_connect(&hub, "late-token-0123456789");
    assert_int_equal(mqhub_client_send(c, "live.q", "x", 1, NULL, NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_user_grant(root, "late", "send", "live*", &changed), 0);
    assert_true(changed);
    assert_int_equal(mqhub_client_send(c, "live.q", "x", 1, NULL, NULL), 0);
    assert_int_equal(mqhub_client_user_revoke(root, "late", "send", "live*", &changed), 0);
    assert_int_equal(mqhub_client_send(c, "live.q", "x", 1, NULL, NULL), MQHUB_EFORBIDDEN);
    assert_int_equal(mqhub_client_user_grant(root, "late", "send", "*", NULL), 0);
    assert_int_equal(mqhub_client_send(c, "live.q", "x", 1, NULL, NULL), 0);
    assert_int_equal(mqhub_client_user_delete(root, "late"), 0);
    assert_int_equal(mqhub_client_ping(c), MQHUB_EUNAUTHORIZED);
    mqhub_client_close(c);
    mqhub_client_close(root);
}

static void test_token_never_in_log(void **state)
{
    mqhub_client_t *root = testusers_connect(&hub, ROOT), *c;
    char gen[128] = "";
    mqhub_grant_t g = {"send", "*"};
    (void)state;

    assert_int_equal(mqhub_client_user_create(root, "given", "given-SECRET-token-77x1", &g, 1,
                                              gen, sizeof gen),
                     0);
    assert_string_equal(gen, ""); /* a given token is not echoed */
    assert_int_equal(mqhub_client_user_create(root, "generated", NULL, &g, 1, gen, sizeof gen), 0);
    assert_int_equal(strlen(gen), 64);
    c = testusers_connect(&hub, gen); /* the generated token works */
    assert_int_equal(mqhub_client_ping(c), 0);
    mqhub_client_close(c);
    assert_true(in_data_dir("token_sha256"));
    assert_false(in_data_dir("given-SECRET-token-77x1"));
    assert_false(in_data_dir(gen));
    /* a short token, and the root token, are refused */
    assert_int_equal(mqhub_client_user_create(root, "short", "short", &g, 1, NULL, 0),
                     MQHUB_EBAD_REQUEST);
    assert_int_equal(mqhub_client_user_create(root, "rootish", ROOT, &g, 1, NULL, 0),
                     MQHUB_EBAD_REQUEST);
    assert_false(in_data_dir(ROOT));
    mqhub_client_close(root);
}

struct flood {
    int fd;
    unsigned sent;
};

static void *flood_hellos(void *arg)
{
    struct flood *f = arg;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    for (unsigned i = 0; i < 10000; i++) {
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        mp_pack_cstr(&pk, "op");
        mp_pack_cstr(&pk, "hello");
        mp_pack_cstr(&pk, "id");
        msgpack_pack_uint64(&pk, i + 1);
        mp_pack_cstr(&pk, "version");
        msgpack_pack_uint64(&pk, 1);
        mp_pack_cstr(&pk, "token");
        char tok[64];
        snprintf(tok, sizeof tok, "guess-%08u-xxxxxxxx", i);
        mp_pack_cstr(&pk, tok);
        int rc = testhub_write_frame(f->fd, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        if (rc != 0)
            break;
        f->sent++;
    }
    return NULL;
}

/* Last: the loopback address stays throttled afterwards. */
static void test_wrong_tokens_throttled(void **state)
{
    struct flood f = {testhub_connect_raw(&hub), 0};
    pthread_t t;
    unsigned answered = 0;
    (void)state;

    assert_true(f.fd >= 0);
    assert_int_equal(pthread_create(&t, NULL, flood_hellos, &f), 0);
    uint64_t end = testhub_now_ms() + 3000;
    while (testhub_now_ms() < end) {
        msgpack_zone z;
        msgpack_object o;
        char code[32];
        msgpack_zone_init(&z, 1024);
        if (testhub_read_frame(f.fd, (int)(end - testhub_now_ms()) + 1, &z, &o) == 0) {
            assert_string_equal(testhub_str(&o, "code", code, sizeof code), "UNAUTHORIZED");
            answered++;
        }
        msgpack_zone_destroy(&z);
    }
    shutdown(f.fd, SHUT_RDWR);
    pthread_join(t, NULL);
    close(f.fd);
    /* 3 free guesses, then 100 + 200 + 400 + 800 ms, then one a second:
     * about 8 in 3 s instead of 10,000 */
    fprintf(stderr, "permission_test: %u wrong hellos answered in 3 s (%u sent)\n", answered,
            f.sent);
    assert_true(answered >= 3);
    assert_true(answered <= 12);
    int logged = log_lines("comp=auth", "hello refused");
    assert_true(logged >= 1);
    assert_true(logged <= 6); /* at most one a second */
    assert_true(log_lines("comp=auth", "peer=127.0.0.1") >= 1);
    assert_true(testhub_alive(&hub));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix),
        cmocka_unit_test(test_open_session_follows_grants),
        cmocka_unit_test(test_token_never_in_log),
        cmocka_unit_test(test_wrong_tokens_throttled),
    };
    mqhubd_path = testhub_binary(argc, argv);
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
