/* client_badinput_test.c: bad bytes on a raw socket. Frame-level garbage
 * (truncated frame, length over max_frame, non-msgpack, non-map, trailing
 * bytes) gets an error frame and a closed connection; request-level mistakes
 * (wrong field types, missing op, unknown op, bad names, a batch of 300) get
 * an error answer on a connection that stays usable. After each, another
 * connection is still served.
 */
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

#define MAX_FRAME 65536

static const char *mqhubd_path;
static testhub_t hub;
static uint64_t next_id;

static int setup(void **state)
{
    testhub_opts_t o = {.max_frame = MAX_FRAME};
    return testhub_start(&hub, mqhubd_path, &o);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    return 0;
}

static int conn(void)
{
    int fd = testhub_connect_raw(&hub);
    assert_true(fd >= 0);
    return fd;
}

/* Read one answer; returns its code ("" when ok) in @code. */
static void answer(int fd, char *code, size_t size, char *error, size_t esize)
{
    msgpack_zone zone;
    msgpack_object o;
    msgpack_zone_init(&zone, 4096);
    assert_int_equal(testhub_read_frame(fd, 5000, &zone, &o), 0);
    testhub_str(&o, "code", code, size);
    if (error)
        testhub_str(&o, "error", error, esize);
    msgpack_zone_destroy(&zone);
}

static void packer(msgpack_sbuffer *sb, msgpack_packer *pk)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Start a request map {op, id, ...} with @extra more pairs to come. */
static void begin(msgpack_packer *pk, const char *op, uint32_t extra)
{
    msgpack_pack_map(pk, 2 + extra);
    pack_str(pk, "op");
    pack_str(pk, op);
    pack_str(pk, "id");
    msgpack_pack_uint64(pk, ++next_id);
}

static void expect_code(int fd, msgpack_sbuffer *sb, const char *want, const char *in_error)
{
    char code[64], error[512];
    assert_int_equal(testhub_write_frame(fd, sb->data, sb->size), 0);
    answer(fd, code, sizeof code, error, sizeof error);
    if (strcmp(code, want) != 0)
        fprintf(stderr, "got %s (%s), wanted %s\n", code, error, want);
    assert_string_equal(code, want);
    if (in_error)
        assert_non_null(strstr(error, in_error));
    msgpack_sbuffer_destroy(sb);
}

/* ping on @fd (still usable) and on a fresh connection (server alive). */
static void still_serving(int fd)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int fresh = conn();
    for (int i = 0; i < 2; i++) {
        int f = i == 0 ? fresh : fd;
        if (f < 0)
            continue;
        packer(&sb, &pk);
        begin(&pk, "ping", 0);
        expect_code(f, &sb, "", NULL);
    }
    close(fresh);
}

static void expect_closed_after(const char *bytes, size_t n, const char *want)
{
    int fd = conn();
    char code[64];
    assert_int_equal(testhub_write_all(fd, bytes, n), 0);
    if (want) {
        answer(fd, code, sizeof code, NULL, 0);
        assert_string_equal(code, want);
    }
    assert_true(testhub_closed(fd, 5000));
    close(fd);
    still_serving(-1);
}

static void test_truncated_frame(void **state)
{
    /* says 100 bytes, sends 10, then ends the stream */
    static const char bytes[] = {0, 0, 0, 100, (char)0x81, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    int fd = conn();
    assert_int_equal(testhub_write_all(fd, bytes, sizeof bytes), 0);
    shutdown(fd, SHUT_WR);
    assert_true(testhub_closed(fd, 5000));
    close(fd);
    still_serving(-1);
}

static void test_frame_too_large(void **state)
{
    static const char bytes[] = {0, 0x01, 0, 0x01}; /* 65537 > max_frame */
    expect_closed_after(bytes, sizeof bytes, "FRAME_TOO_LARGE");
}

static void test_not_msgpack(void **state)
{
    static const char bytes[] = {0, 0, 0, 3, (char)0xc1, (char)0xc1, (char)0xc1};
    expect_closed_after(bytes, sizeof bytes, "BAD_REQUEST");
}

static void test_not_a_map(void **state)
{
    static const char bytes[] = {0, 0, 0, 3, (char)0x92, 1, 2}; /* [1, 2] */
    expect_closed_after(bytes, sizeof bytes, "BAD_REQUEST");
}

static void test_trailing_bytes(void **state)
{
    static const char bytes[] = {0, 0, 0, 2, (char)0x80, 0x01}; /* {} then 1 */
    expect_closed_after(bytes, sizeof bytes, "BAD_REQUEST");
}

static void test_wrong_field_types(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int fd = conn();

    packer(&sb, &pk);
    begin(&pk, "queue.create", 1);
    pack_str(&pk, "name");
    msgpack_pack_int(&pk, 5);
    expect_code(fd, &sb, "BAD_REQUEST", "name");

    packer(&sb, &pk);
    begin(&pk, "queue.create", 1);
    pack_str(&pk, "name");
    pack_str(&pk, "typed");
    expect_code(fd, &sb, "", NULL);

    packer(&sb, &pk);
    begin(&pk, "receive", 2);
    pack_str(&pk, "queue");
    pack_str(&pk, "typed");
    pack_str(&pk, "max");
    pack_str(&pk, "ten");
    expect_code(fd, &sb, "BAD_REQUEST", "max");

    packer(&sb, &pk); /* no op at all */
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, ++next_id);
    expect_code(fd, &sb, "BAD_REQUEST", "op");

    packer(&sb, &pk);
    begin(&pk, "queue.create", 0); /* missing name */
    expect_code(fd, &sb, "BAD_REQUEST", "name");
    still_serving(fd);
    close(fd);
}

static void test_unknown_op(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int fd = conn();
    packer(&sb, &pk);
    begin(&pk, "queue.explode", 0);
    expect_code(fd, &sb, "UNKNOWN_OP", NULL);
    still_serving(fd);
    close(fd);
}

static void test_bad_names(void **state)
{
    static const char *const names[] = {
        "", "-lead", ".dot", "has space", "slash/no", "ünicode",
        "a2345678901234567890123456789012345678901234567890123456789012345", /* 65 */
    };
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int fd = conn();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        packer(&sb, &pk);
        begin(&pk, "queue.create", 1);
        pack_str(&pk, "name");
        pack_str(&pk, names[i]);
        expect_code(fd, &sb, "BAD_NAME", NULL);
    }
    packer(&sb, &pk); /* 64 is fine */
    begin(&pk, "queue.create", 1);
    pack_str(&pk, "name");
    pack_str(&pk, "a234567890123456789012345678901234567890123456789012345678901234");
    expect_code(fd, &sb, "", NULL);
    still_serving(fd);
    close(fd);
}

static void test_batch_of_300(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int fd = conn();
    packer(&sb, &pk);
    begin(&pk, "queue.create", 1);
    pack_str(&pk, "name");
    pack_str(&pk, "bulk");
    expect_code(fd, &sb, "", NULL);

    packer(&sb, &pk);
    begin(&pk, "send_batch", 2);
    pack_str(&pk, "queue");
    pack_str(&pk, "bulk");
    pack_str(&pk, "msgs");
    msgpack_pack_array(&pk, 300);
    for (int i = 0; i < 300; i++) {
        msgpack_pack_map(&pk, 1);
        pack_str(&pk, "body");
        msgpack_pack_bin_with_body(&pk, "x", 1);
    }
    expect_code(fd, &sb, "BAD_REQUEST", NULL);
    still_serving(fd);
    close(fd);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_frame),  cmocka_unit_test(test_frame_too_large),
        cmocka_unit_test(test_not_msgpack),      cmocka_unit_test(test_not_a_map),
        cmocka_unit_test(test_trailing_bytes),   cmocka_unit_test(test_wrong_field_types),
        cmocka_unit_test(test_unknown_op),       cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_batch_of_300),
    };
    mqhubd_path = testhub_binary(argc, argv);
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
