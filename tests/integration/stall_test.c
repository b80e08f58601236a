/* stall_test.c: no request takes the node away from other clients (issue
 * 12): while one connection sends work that used to hold the loop for
 * seconds or minutes, another connection's pings keep being answered. The
 * target is 100 ms on a quiet machine (measured and printed here, recorded
 * in docs/benchmarks.md); the assertion allows STALL_MAX_MS so that a loaded
 * CI machine or a sanitizer build does not flake, which still catches the
 * seconds-long stalls of the old code. The work: a queue hook looping over C library functions
 * (refused by the instruction budget), and queue.delete / queue.purge of a
 * large queue (apply marks it gone at once; tick reclaims the records in
 * bounded chunks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testhub.h"

#define STALL_MAX_MS 1000

static const char *mqhubd_path;
static testhub_t hub;
static uint64_t next_id;

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

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Write request {op, id, k1: v1, ...} with string values (NULL-terminated
 * key/value list). */
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
    msgpack_pack_map(&pk, 2 + n / 2);
    pack_str(&pk, "op");
    pack_str(&pk, op);
    pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, ++next_id);
    va_start(ap, op);
    for (const char *k; (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        pack_str(&pk, k);
        /* "#123" packs the integer 123 */
        if (v[0] == '#')
            msgpack_pack_uint64(&pk, strtoull(v + 1, NULL, 10));
        else
            pack_str(&pk, v);
    }
    va_end(ap);
    assert_int_equal(testhub_write_frame(fd, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* Read one answer and return its code ("" when ok). */
static const char *answer(int fd, char *code, size_t size)
{
    msgpack_zone zone;
    msgpack_object o;
    char err[512];
    msgpack_zone_init(&zone, 4096);
    assert_int_equal(testhub_read_frame(fd, 30000, &zone, &o), 0);
    testhub_str(&o, "code", code, size);
    testhub_str(&o, "error", err, sizeof err);
    if (code[0] && strcmp(code, "UNAVAILABLE") != 0)
        fprintf(stderr, "answer: %s %s\n", code, err);
    msgpack_zone_destroy(&zone);
    return code;
}

static void expect_ok(int fd)
{
    char code[64];
    assert_string_equal(answer(fd, code, sizeof code), "");
}

/* Ping on @fd @n times, one after the other; the slowest round trip (ms). */
static uint64_t max_ping(int fd, int n)
{
    uint64_t worst = 0;
    for (int i = 0; i < n; i++) {
        uint64_t t0 = testhub_now_ms();
        send_req(fd, "ping", NULL);
        expect_ok(fd);
        uint64_t dt = testhub_now_ms() - t0;
        if (dt > worst)
            worst = dt;
        testhub_sleep_ms(5);
    }
    return worst;
}

static const char *c_loop_hook =
    "function on_message(msg)\n"
    "  local s = msg.body:rep(1024)\n"
    "  for i = 1, 1000000 do utf8.len(s) s:find('y', 1, true) s:upper() end\n"
    "  return true\n"
    "end\n";

/* A hook looping over C functions on a 1 MiB string: each call is refused by
 * the budget, and pings in between stay fast. */
static void test_c_function_hook(void **state)
{
    (void)state;
    int a = conn(), b = conn();
    char body[1025];
    memset(body, 'x', 1024);
    body[1024] = 0;
    send_req(a, "script.load", "name", "cloop", "source", c_loop_hook, NULL);
    expect_ok(a);
    send_req(a, "queue.create", "name", "hooked", NULL);
    expect_ok(a);
    assert_int_equal(testhub_send_set_hook(a, ++next_id, "hooked", "cloop"), 0);
    expect_ok(a);
    /* 20 sends pipelined, each its own hook call, while b pings */
    for (int i = 0; i < 20; i++)
        send_req(a, "send", "queue", "hooked", "body", body, NULL);
    uint64_t worst = max_ping(b, 40);
    /* a script error accepts the message; once the hooks of one raft entry
     * spent its budget, the others are refused with UNAVAILABLE (retry) */
    int unavailable = 0;
    for (int i = 0; i < 20; i++) {
        char code[64];
        answer(a, code, sizeof code);
        if (code[0]) {
            assert_string_equal(code, "UNAVAILABLE");
            unavailable++;
        }
    }
    fprintf(stderr, "c-function hook: %d of 20 sends refused UNAVAILABLE\n", unavailable);
    fprintf(stderr, "c-function hook: slowest ping %llu ms\n", (unsigned long long)worst);
    assert_true(worst < STALL_MAX_MS);
    /* refused by the budget, every call */
    msgpack_zone zone;
    msgpack_object o;
    char err[512];
    send_req(a, "script.get", "name", "cloop", NULL);
    msgpack_zone_init(&zone, 4096);
    assert_int_equal(testhub_read_frame(a, 5000, &zone, &o), 0);
    const msgpack_object *stats = mp_map_get(&o, "stats");
    assert_non_null(stats);
    testhub_str(stats, "last_error", err, sizeof err);
    assert_non_null(strstr(err, "instruction budget"));
    const msgpack_object *errors = mp_map_get(stats, "errors");
    assert_non_null(errors);
    assert_true(errors->via.u64 >= 1);
    msgpack_zone_destroy(&zone);
    close(a);
    close(b);
}

/* Fill queue @q with @n small messages (send_batch of 256, pipelined). */
static void fill(int fd, const char *q, int n)
{
    int sent = 0;
    while (sent < n) {
        int batches = 0;
        for (; batches < 64 && sent < n; batches++) {
            msgpack_sbuffer sb;
            msgpack_packer pk;
            int b = n - sent < 256 ? n - sent : 256;
            msgpack_sbuffer_init(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, 4);
            pack_str(&pk, "op");
            pack_str(&pk, "send_batch");
            pack_str(&pk, "id");
            msgpack_pack_uint64(&pk, ++next_id);
            pack_str(&pk, "queue");
            pack_str(&pk, q);
            pack_str(&pk, "msgs");
            msgpack_pack_array(&pk, (uint32_t)b);
            for (int i = 0; i < b; i++) {
                msgpack_pack_map(&pk, 1);
                pack_str(&pk, "body");
                pack_str(&pk, "0123456789abcdef");
            }
            assert_int_equal(testhub_write_frame(fd, sb.data, sb.size), 0);
            msgpack_sbuffer_destroy(&sb);
            sent += b;
        }
        for (int i = 0; i < batches; i++)
            expect_ok(fd);
    }
}

/* queue.delete and queue.purge of a large queue: apply marks it gone at
 * once, tick reclaims in bounded chunks; pings stay fast throughout. */
static void test_delete_large_queue(void **state)
{
    (void)state;
    int a = conn(), b = conn();
    send_req(a, "queue.create", "name", "big", NULL);
    expect_ok(a);
    send_req(a, "queue.create", "name", "big2", NULL);
    expect_ok(a);
    fill(a, "big", 300000);
    fill(a, "big2", 100000);
    send_req(a, "queue.delete", "name", "big", NULL);
    send_req(a, "queue.purge", "name", "big2", NULL);
    /* the reclaim takes ~100 ticks: ping through all of it */
    uint64_t worst = max_ping(b, 300);
    expect_ok(a);
    expect_ok(a);
    fprintf(stderr, "delete of 300k + purge of 100k messages: slowest ping %llu ms\n",
            (unsigned long long)worst);
    assert_true(worst < STALL_MAX_MS);
    close(a);
    close(b);
}

int main(int argc, char **argv)
{
    mqhubd_path = testhub_binary(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_c_function_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_large_queue, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
