/* fields_test.c: what a write puts into the raft log and how large a reply
 * may grow, on a real mqhubd (issue 12 item 2; docs/protocol.md "Requests and
 * responses", docs/operations.md "Limits"). One case per CTest entry (argv[2]):
 *   padded_send    a send padded with a 1 MiB unknown field succeeds and the
 *                  padding is nowhere in the data directory; the known fields
 *                  are (the grep works); a client's reply_max is ignored
 *   small_receive  max_frame 64 KiB: a receive of more than fits stops below
 *                  it, the rest stay ready; a message that alone cannot fit
 *                  is TOO_LARGE and stays ready (not locked)
 *   small_list     max_frame 4 KiB: a queue.list whose reply would pass it is
 *                  TOO_LARGE, a smaller limit answers
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

static const char *mqhubd_path;
static testhub_t hub;
static uint64_t next_id;

#define PAD_MARK "PADDING-MARK-4d1e"

static void start(size_t max_frame)
{
    testhub_opts_t o = {.max_frame = max_frame};
    assert_int_equal(testhub_start(&hub, mqhubd_path, &o), 0);
}

static int teardown(void **state)
{
    (void)state;
    testhub_cleanup(&hub);
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Begin a request map of @n fields besides op and id. */
static void begin(msgpack_sbuffer *sb, msgpack_packer *pk, const char *op, uint32_t n)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, 2 + n);
    pack_str(pk, "op");
    pack_str(pk, op);
    pack_str(pk, "id");
    msgpack_pack_uint64(pk, ++next_id);
}

/* Send @sb (destroyed) on @fd and read the reply into @zone / @out, skipping
 * pushes; returns the reply's code ("" when ok) in @code. */
static void call(int fd, msgpack_sbuffer *sb, msgpack_zone *zone, msgpack_object *out,
                 char *code)
{
    assert_int_equal(testhub_write_frame(fd, sb->data, sb->size), 0);
    msgpack_sbuffer_destroy(sb);
    for (;;) {
        msgpack_zone_init(zone, 4096);
        assert_int_equal(testhub_read_frame(fd, 10000, zone, out), 0);
        if (mp_map_get(out, "push") == NULL)
            break;
        msgpack_zone_destroy(zone);
    }
    testhub_str(out, "code", code, 64);
}

/* Send @sb and require success. */
static void must(int fd, msgpack_sbuffer *sb)
{
    msgpack_zone zone;
    msgpack_object o;
    char code[64], err[512];

    call(fd, sb, &zone, &o, code);
    if (code[0])
        fail_msg("%s: %s", code, testhub_str(&o, "error", err, sizeof err));
    msgpack_zone_destroy(&zone);
}

static void create_queue(int fd, const char *name)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    begin(&sb, &pk, "queue.create", 1);
    pack_str(&pk, "name");
    pack_str(&pk, name);
    must(fd, &sb);
}

static void send_body(int fd, const char *queue, size_t size, char fill)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char *body = malloc(size);

    assert_non_null(body);
    memset(body, fill, size);
    begin(&sb, &pk, "send", 2);
    pack_str(&pk, "queue");
    pack_str(&pk, queue);
    pack_str(&pk, "body");
    msgpack_pack_bin_with_body(&pk, body, size);
    free(body);
    must(fd, &sb);
}

/* receive {queue, max}: the number of messages, or -1 with @code set. */
static int receive(int fd, const char *queue, unsigned max, char *code)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object o;
    const msgpack_object *msgs;
    int n = -1;

    begin(&sb, &pk, "receive", 2);
    pack_str(&pk, "queue");
    pack_str(&pk, queue);
    pack_str(&pk, "max");
    msgpack_pack_uint64(&pk, max);
    call(fd, &sb, &zone, &o, code);
    if (!code[0]) {
        msgs = mp_map_get(&o, "msgs");
        assert_non_null(msgs);
        assert_int_equal(msgs->type, MSGPACK_OBJECT_ARRAY);
        n = (int)msgs->via.array.size;
    }
    msgpack_zone_destroy(&zone);
    return n;
}

/* A field of queue.get's stats. */
static uint64_t queue_stat(int fd, const char *queue, const char *key)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object o;
    const msgpack_object *stats, *v;
    char code[64];
    uint64_t n;

    begin(&sb, &pk, "queue.get", 1);
    pack_str(&pk, "name");
    pack_str(&pk, queue);
    call(fd, &sb, &zone, &o, code);
    assert_string_equal(code, "");
    stats = mp_map_get(&o, "stats");
    assert_non_null(stats);
    v = mp_map_get(stats, key);
    assert_non_null(v);
    n = v->via.u64;
    msgpack_zone_destroy(&zone);
    return n;
}

/* Whether @needle is anywhere in the data directory's files (the raft log,
 * the store), as permission_test.c checks. */
static bool in_data_dir(const char *needle)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "grep -rqaF -- '%s' '%s/data'", needle, hub.dir);
    return system(cmd) == 0;
}

/* ------------------------------------------------------------ the cases */

static void test_padded_send(void **state)
{
    (void)state;
    size_t pad_len = 1u << 20, mark = strlen(PAD_MARK);
    char *pad = malloc(pad_len);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object o;
    char code[64];
    int fd;

    start(0);
    fd = testhub_connect_raw(&hub);
    assert_true(fd >= 0);
    create_queue(fd, "padded");
    assert_non_null(pad);
    for (size_t i = 0; i < pad_len; i++)
        pad[i] = PAD_MARK[i % mark];

    /* a send with every documented field and a 1 MiB unknown one */
    begin(&sb, &pk, "send", 7);
    pack_str(&pk, "queue");
    pack_str(&pk, "padded");
    pack_str(&pk, "body");
    pack_str(&pk, "kept-body-8a2f");
    pack_str(&pk, "delay");
    msgpack_pack_uint64(&pk, 0);
    pack_str(&pk, "attrs");
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "kept-attr-key");
    pack_str(&pk, "kept-attr-value-3b7c");
    pack_str(&pk, "group");
    pack_str(&pk, "g1");
    pack_str(&pk, "dedup_id");
    pack_str(&pk, "kept-dedup-9e0d");
    pack_str(&pk, "padding");
    msgpack_pack_bin_with_body(&pk, pad, pad_len);
    must(fd, &sb);
    free(pad);

    /* a receive with a client's reply_max of 1 (the node's own wins) and an
     * unknown field */
    begin(&sb, &pk, "receive", 3);
    pack_str(&pk, "queue");
    pack_str(&pk, "padded");
    pack_str(&pk, "reply_max");
    msgpack_pack_uint64(&pk, 1);
    pack_str(&pk, "unknown_" PAD_MARK);
    pack_str(&pk, PAD_MARK);
    call(fd, &sb, &zone, &o, code);
    assert_string_equal(code, "");
    const msgpack_object *msgs = mp_map_get(&o, "msgs");
    assert_non_null(msgs);
    assert_int_equal(msgs->via.array.size, 1);
    const msgpack_object *body = mp_map_get(&msgs->via.array.ptr[0], "body");
    assert_non_null(body);
    assert_int_equal(body->via.bin.size, strlen("kept-body-8a2f"));
    assert_memory_equal(body->via.bin.ptr, "kept-body-8a2f", body->via.bin.size);
    msgpack_zone_destroy(&zone);

    /* the known fields reached the log (so the grep sees it), the padding
     * and the unknown field did not */
    assert_true(in_data_dir("kept-body-8a2f"));
    assert_true(in_data_dir("kept-attr-value-3b7c"));
    assert_true(in_data_dir("kept-dedup-9e0d"));
    assert_false(in_data_dir(PAD_MARK));
    close(fd);

    /* and a restart replays the log as before */
    assert_int_equal(testhub_stop(&hub), 0);
    assert_int_equal(testhub_restart(&hub), 0);
    fd = testhub_connect_raw(&hub);
    assert_true(fd >= 0);
    assert_int_equal(queue_stat(fd, "padded", "sent_total"), 1);
    close(fd);
}

static void test_small_receive(void **state)
{
    (void)state;
    char code[64];
    int fd, n, total = 0, rounds = 0;

    start(64u << 10);
    fd = testhub_connect_raw(&hub);
    assert_true(fd >= 0);
    create_queue(fd, "small");
    for (int i = 0; i < 20; i++)
        send_body(fd, "small", 8u << 10, 'a' + i);
    /* 20 x 8 KiB > 64 KiB: each reply stops below the frame */
    while (total < 20) {
        n = receive(fd, "small", 20, code);
        assert_string_equal(code, "");
        assert_true(n >= 1 && n <= 7);
        total += n;
        rounds++;
    }
    assert_int_equal(total, 20);
    assert_true(rounds >= 3);
    printf("# 20 messages of 8 KiB in %d receives under max_frame 64 KiB\n", rounds);

    /* a message that alone cannot fit a reply: TOO_LARGE, and it stays ready */
    create_queue(fd, "big");
    send_body(fd, "big", 65000, 'z');
    n = receive(fd, "big", 1, code);
    assert_int_equal(n, -1);
    assert_string_equal(code, "TOO_LARGE");
    assert_int_equal(queue_stat(fd, "big", "ready"), 1);
    assert_int_equal(queue_stat(fd, "big", "inflight"), 0);
    close(fd);
}

static void test_small_list(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object o;
    char code[64], err[512], name[80];
    int fd;

    start(4096);
    fd = testhub_connect_raw(&hub);
    assert_true(fd >= 0);
    for (int i = 0; i < 80; i++) {
        snprintf(name, sizeof name, "a-rather-long-queue-name-to-fill-the-list-reply-%04d", i);
        create_queue(fd, name);
    }
    begin(&sb, &pk, "queue.list", 1);
    pack_str(&pk, "limit");
    msgpack_pack_uint64(&pk, 1000);
    call(fd, &sb, &zone, &o, code);
    assert_string_equal(code, "TOO_LARGE");
    testhub_str(&o, "error", err, sizeof err);
    printf("# %s\n", err);
    assert_non_null(strstr(err, "max_frame 4096"));
    msgpack_zone_destroy(&zone);

    begin(&sb, &pk, "queue.list", 1);
    pack_str(&pk, "limit");
    msgpack_pack_uint64(&pk, 10);
    must(fd, &sb);
    close(fd);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest all[] = {
        cmocka_unit_test_teardown(test_padded_send, teardown),
        cmocka_unit_test_teardown(test_small_receive, teardown),
        cmocka_unit_test_teardown(test_small_list, teardown),
    };
    static const char *const names[] = {"padded_send", "small_receive", "small_list"};

    mqhubd_path = testhub_binary(argc, argv);
    if (argc > 2) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(argv[2], names[i]) == 0)
                return _cmocka_run_group_tests(names[i], &all[i], 1, NULL, NULL);
        fprintf(stderr, "unknown case %s\n", argv[2]);
        return 2;
    }
    return cmocka_run_group_tests(all, NULL, NULL);
}
