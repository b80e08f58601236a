/* backtest_revoke_test.c: a read in slices (script.test, OPS_F_SLICED) is
 * permitted slice by slice, not only when it starts (issue 11;
 * core/node/hub.c read_still_permitted). A named user with `script` on the
 * hook and `subscribe` on a topic of MESSAGES retained messages runs
 * script.test; while it runs, the root
 *
 *   test_completes_with_grants  (control) changes nothing: the answer is ok
 *                               and counts every message;
 *   test_revoke_stops_it        revokes the subscribe grant: the answer is
 *                               FORBIDDEN naming it (had the run ended
 *                               first it would be ok: the times are
 *                               printed); asked again, it is refused at
 *                               once;
 *   test_delete_stops_it        deletes the user: UNAUTHORIZED.
 * Each time the daemon keeps serving and, at the end, exits cleanly (under
 * ASan: the cursor of a refused test is not leaked).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testhub.h"
#include "testreq.h"

#define ROOT "root-token-for-backtest-revoke"
#define BT "backtest-user-token-0123456789"
#define MESSAGES 20000
#define BATCH 250

static const char *mqhubd_path;
static testhub_t hub;
static uint64_t control_ms; /* the control run's duration */

/* A hook with some work per message, so a run takes a second or so. */
static const char *hook = "function on_message(msg)\n"
                          "  local s = 0\n"
                          "  for i = 1, 2000 do s = s + i end\n"
                          "  return true\n"
                          "end\n";

/* One answer's code ("" when ok) and error sentence. */
static void answer(int fd, int timeout_ms, char *code, size_t cl, char *err, size_t el)
{
    msgpack_zone zone;
    msgpack_object o;
    msgpack_zone_init(&zone, 4096);
    assert_int_equal(testhub_read_frame(fd, timeout_ms, &zone, &o), 0);
    testhub_str(&o, "code", code, cl);
    testhub_str(&o, "error", err, el);
    msgpack_zone_destroy(&zone);
}

static void expect_ok(int fd)
{
    char code[64], err[512];
    answer(fd, 30000, code, sizeof code, err, sizeof err);
    if (code[0])
        fail_msg("answer: %s %s", code, err);
}

/* A raw connection that said hello with @token. */
static int conn_as(const char *token)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int fd = testhub_connect_raw(&hub);
    assert_true(fd >= 0);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    testreq_head(&pk, "hello", 2);
    mp_pack_cstr(&pk, "version");
    msgpack_pack_uint8(&pk, 1);
    mp_pack_cstr(&pk, "token");
    mp_pack_cstr(&pk, token);
    testreq_send(fd, &sb);
    expect_ok(fd);
    return fd;
}

static mqhub_client_t *root_client(void)
{
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.token = ROOT};
    assert_int_equal(mqhub_client_connect(&c, hub.address, &o, NULL, 0), 0);
    return c;
}

/* The hook, topic "big" with MESSAGES retained messages, and user "bt"
 * holding script on the hook and subscribe on the topic. */
static int setup(void **state)
{
    testhub_opts_t o = {.token = ROOT};
    (void)state;
    if (testhub_start(&hub, mqhubd_path, &o) != 0)
        return -1;
    mqhub_client_t *root = root_client();
    assert_int_equal(mqhub_client_script_load(root, "counter", hook, strlen(hook), NULL), 0);
    assert_int_equal(mqhub_client_topic_create(root, "big", NULL), 0);
    mqhub_client_close(root);
    int fd = conn_as(ROOT);
    for (int sent = 0; sent < MESSAGES;) {
        int batches = 0;
        for (; batches < 16 && sent < MESSAGES; batches++) {
            msgpack_sbuffer sb;
            msgpack_packer pk;
            msgpack_sbuffer_init(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            testreq_publish_batch_head(&pk, "big", BATCH);
            for (int i = 0; i < BATCH; i++, sent++) {
                msgpack_pack_map(&pk, 1);
                mp_pack_cstr(&pk, "body");
                mp_pack_cstr(&pk, "0123456789abcdef");
            }
            testreq_send(fd, &sb);
        }
        for (int i = 0; i < batches; i++)
            expect_ok(fd);
    }
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int st = testhub_stop(&hub); /* under ASan: a leak report makes it fail */
    testhub_cleanup(&hub);
    return st == 0 ? 0 : -1;
}

/* Give user "bt" (created when absent) exactly its two grants. */
static void grant_bt(void)
{
    mqhub_client_t *root = root_client();
    mqhub_grant_t g[2] = {{"script", "counter"}, {"subscribe", "big"}};
    int rc = mqhub_client_user_create(root, "bt", BT, g, 2, NULL, 0);
    if (rc == MQHUB_EEXISTS)
        rc = mqhub_client_user_grant(root, "bt", "subscribe", "big", NULL);
    assert_int_equal(rc, 0);
    mqhub_client_close(root);
}

static void test_completes_with_grants(void **state)
{
    msgpack_zone zone;
    msgpack_object o;
    char code[64];
    (void)state;

    grant_bt();
    int fd = conn_as(BT);
    uint64_t t0 = testhub_now_ms();
    testreq_script_test(fd, "counter", "big");
    msgpack_zone_init(&zone, 65536);
    assert_int_equal(testhub_read_frame(fd, 120000, &zone, &o), 0);
    control_ms = testhub_now_ms() - t0;
    assert_string_equal(testhub_str(&o, "code", code, sizeof code), "");
    const msgpack_object *n = mp_map_get(&o, "messages");
    assert_non_null(n);
    assert_int_equal(n->via.u64, MESSAGES);
    msgpack_zone_destroy(&zone);
    printf("script.test over %d messages with its grants: ok in %llu ms\n", MESSAGES,
           (unsigned long long)control_ms);
    close(fd);
}

static void test_revoke_stops_it(void **state)
{
    char code[64], err[512];
    bool changed = false;
    (void)state;

    grant_bt();
    int fd = conn_as(BT);
    mqhub_client_t *root = root_client();
    uint64_t t0 = testhub_now_ms();
    testreq_script_test(fd, "counter", "big");
    testhub_sleep_ms(20);
    assert_int_equal(mqhub_client_user_revoke(root, "bt", "subscribe", "big", &changed), 0);
    assert_true(changed);
    uint64_t revoked = testhub_now_ms() - t0;
    answer(fd, 120000, code, sizeof code, err, sizeof err);
    uint64_t took = testhub_now_ms() - t0;
    printf("revoked after %llu ms: %s after %llu ms (the control run took %llu ms): %s\n",
           (unsigned long long)revoked, code, (unsigned long long)took,
           (unsigned long long)control_ms, err);
    assert_string_equal(code, "FORBIDDEN");
    assert_non_null(strstr(err, "user 'bt' may not subscribe to 'big'"));
    /* Asked again: refused when it starts. */
    testreq_script_test(fd, "counter", "big");
    answer(fd, 10000, code, sizeof code, err, sizeof err);
    assert_string_equal(code, "FORBIDDEN");
    assert_int_equal(mqhub_client_ping(root), 0);
    mqhub_client_close(root);
    close(fd);
}

static void test_delete_stops_it(void **state)
{
    char code[64], err[512];
    (void)state;

    grant_bt();
    int fd = conn_as(BT);
    mqhub_client_t *root = root_client();
    testreq_script_test(fd, "counter", "big");
    testhub_sleep_ms(20);
    assert_int_equal(mqhub_client_user_delete(root, "bt"), 0);
    answer(fd, 120000, code, sizeof code, err, sizeof err);
    printf("user deleted: %s: %s\n", code, err);
    assert_string_equal(code, "UNAUTHORIZED");
    assert_int_equal(mqhub_client_ping(root), 0);
    mqhub_client_close(root);
    close(fd);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completes_with_grants),
        cmocka_unit_test(test_revoke_stops_it),
        cmocka_unit_test(test_delete_stops_it),
    };
    mqhubd_path = testhub_binary(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, setup, teardown);
}
