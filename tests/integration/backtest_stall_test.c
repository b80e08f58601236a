/* backtest_stall_test.c: script.test over 100k retained messages runs in
 * slices (issue 12): while one connection's backtest runs, another
 * connection's pings keep being answered. The target is 100 ms (measured and
 * printed here, recorded in docs/benchmarks.md); the assertion allows
 * STALL_MAX_MS so that a loaded machine or a sanitizer build does not flake,
 * which still catches the old unsliced run (seconds of blocked loop). A
 * connection closed in the middle of a backtest is never answered and its
 * test is freed: the daemon keeps serving and exits cleanly (under ASan:
 * nothing leaked).
 */
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "testhub.h"
#include "testreq.h"

#define STALL_MAX_MS 1000
#define MESSAGES 100000
#define BATCH 256

static const char *mqhubd_path;
static testhub_t hub;

/* A hook with some work per message (a loop of a few thousand
 * instructions: unsliced, the test held the loop for seconds), a counter in
 * hub.state, a block for one user. */
static const char *hook =
    "function on_message(msg)\n"
    "  local s = 0\n"
    "  for i = 1, 2000 do s = s + i end\n"
    "  local n = (hub.state.get('n') or 0) + 1\n"
    "  hub.state.set('n', n)\n"
    "  if msg.attrs.user == 'u7' then\n"
    "    hub.block{attr = 'user', value = 'u7', ttl = 60, reason = 'test'}\n"
    "  end\n"
    "  return true\n"
    "end\n";

static int setup(void **state)
{
    (void)state;
    return testhub_start(&hub, mqhubd_path, NULL);
}

static int teardown(void **state)
{
    (void)state;
    testhub_cleanup(&hub);
    return 0;
}

static int conn(void)
{
    int fd = testhub_connect_raw(&hub);
    assert_true(fd >= 0);
    return fd;
}

/* Request @op with string fields (NULL-terminated key/value list). */
static void send_req(int fd, const char *op, ...)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    va_list ap;
    uint32_t n = 0;
    va_start(ap, op);
    while (va_arg(ap, const char *))
        n++;
    va_end(ap);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    testreq_head(&pk, op, n / 2);
    va_start(ap, op);
    for (const char *k; (k = va_arg(ap, const char *));) {
        mp_pack_cstr(&pk, k);
        mp_pack_cstr(&pk, va_arg(ap, const char *));
    }
    va_end(ap);
    testreq_send(fd, &sb);
}

/* Read one answer into @zone/@o; fails the test unless it is ok. */
static void expect_ok_obj(int fd, msgpack_zone *zone, msgpack_object *o)
{
    char code[64], err[512];
    assert_int_equal(testhub_read_frame(fd, 60000, zone, o), 0);
    testhub_str(o, "code", code, sizeof code);
    if (code[0])
        fail_msg("answer: %s %s", code, testhub_str(o, "error", err, sizeof err));
}

static void expect_ok(int fd)
{
    msgpack_zone zone;
    msgpack_object o;
    msgpack_zone_init(&zone, 4096);
    expect_ok_obj(fd, &zone, &o);
    msgpack_zone_destroy(&zone);
}

static uint64_t ping(int fd)
{
    uint64_t t0 = testhub_now_ms();
    send_req(fd, "ping", NULL);
    expect_ok(fd);
    return testhub_now_ms() - t0;
}

static bool readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

/* The hook script and topic "big" with MESSAGES retained messages
 * (publish_batch of BATCH, 64 pipelined at a time). */
static void prepare(int fd)
{
    send_req(fd, "script.load", "name", "counter", "source", hook, NULL);
    expect_ok(fd);
    send_req(fd, "topic.create", "name", "big", NULL);
    expect_ok(fd);
    for (int sent = 0; sent < MESSAGES;) {
        int batches = 0;
        for (; batches < 64 && sent < MESSAGES; batches++) {
            msgpack_sbuffer sb;
            msgpack_packer pk;
            char user[16];
            msgpack_sbuffer_init(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            testreq_publish_batch_head(&pk, "big", BATCH);
            for (int i = 0; i < BATCH; i++, sent++) {
                snprintf(user, sizeof user, "u%d", sent % 1000);
                msgpack_pack_map(&pk, 2);
                mp_pack_cstr(&pk, "body");
                mp_pack_cstr(&pk, "0123456789abcdef");
                mp_pack_cstr(&pk, "attrs");
                msgpack_pack_map(&pk, 1);
                mp_pack_cstr(&pk, "user");
                mp_pack_cstr(&pk, user);
            }
            testreq_send(fd, &sb);
        }
        for (int i = 0; i < batches; i++)
            expect_ok(fd);
    }
}

/* script.test over 100k messages on @a while @b pings. */
static void test_pings_during_backtest(void **state)
{
    (void)state;
    int a = conn(), b = conn();
    prepare(a);
    uint64_t worst = 0, pings = 0, t0 = testhub_now_ms();
    testreq_script_test(a, "counter", "big");
    while (!readable(a)) {
        uint64_t dt = ping(b);
        worst = dt > worst ? dt : worst;
        pings++;
        testhub_sleep_ms(5);
    }
    uint64_t took = testhub_now_ms() - t0;
    msgpack_zone zone;
    msgpack_object o;
    msgpack_zone_init(&zone, 65536);
    expect_ok_obj(a, &zone, &o);
    const msgpack_object *n = mp_map_get(&o, "messages"), *r = mp_map_get(&o, "refused");
    assert_non_null(n);
    assert_int_equal(n->via.u64, MESSAGES);
    assert_non_null(r);
    assert_int_equal(r->via.u64, MESSAGES / 1000 - 1); /* u7 blocked after its first */
    msgpack_zone_destroy(&zone);
    fprintf(stderr, "script.test over %d messages: %llu ms; %llu pings, slowest %llu ms\n",
            MESSAGES, (unsigned long long)took, (unsigned long long)pings,
            (unsigned long long)worst);
    assert_true(pings > 0);
    assert_true(worst < STALL_MAX_MS);
    close(a);
    close(b);
}

/* A connection closed in the middle of its backtest: never answered, its
 * test freed; the daemon keeps serving and exits cleanly. */
static void test_close_during_backtest(void **state)
{
    (void)state;
    int a = conn(), b = conn();
    prepare(a);
    testreq_script_test(a, "counter", "big");
    testhub_sleep_ms(50);
    close(a);
    for (int i = 0; i < 20; i++)
        assert_true(ping(b) < STALL_MAX_MS);
    close(b);
    assert_int_equal(testhub_stop(&hub), 0);
}

int main(int argc, char **argv)
{
    mqhubd_path = testhub_binary(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pings_during_backtest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_during_backtest, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
