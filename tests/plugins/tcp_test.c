/* tcp_test.c: mqhubd with the tcp transport (and the good test plugin), driven
 * over real loopback sockets with hand-built frames: session ops, queue ops,
 * long polls, pipelining, authentication, bad frames, graceful stop.
 *
 * usage: tcp_test MQHUBD GOOD_PLUGIN. Starts its own mqhubd on ports derived
 * from the pid, in a temp dir, with a token and max_frame 1 MiB.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpack.h>
#include "tmpdir.h"

#define TOKEN "s3cret"

static const char *mqhubd_path, *good_path;
static char dir[256];
static int port;
static pid_t daemon_pid;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int dial(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void send_raw(int fd, const void *body, size_t len)
{
    unsigned char h[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                          (unsigned char)(len >> 8), (unsigned char)len};
    write_all(fd, h, 4);
    write_all(fd, body, len);
}

/* Read exactly @len bytes within @ms; returns 0, or -1 on EOF/timeout. */
static int read_all(int fd, void *buf, size_t len, int ms)
{
    char *p = buf;
    uint64_t end = now_ms() + (uint64_t)ms;

    while (len > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left = (int)(end - now_ms());
        ssize_t n;
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return -1;
        n = read(fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The objects msgpack_unpack_next() makes point into the frame's bytes:
 * keep the last frames alive in a ring (a test holds only a few at once). */
static char *frames[16];
static unsigned frame_at;

static char *frame_alloc(size_t len)
{
    unsigned i = frame_at++ % 16;
    free(frames[i]);
    frames[i] = malloc(len + 1);
    return frames[i];
}

/* One response frame into @u; 0 or -1. */
static int recv_msg(int fd, msgpack_unpacked *u, int ms)
{
    unsigned char h[4];
    size_t len;
    char *buf;
    int rc;

    if (read_all(fd, h, 4, ms) != 0)
        return -1;
    len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    buf = frame_alloc(len);
    rc = read_all(fd, buf, len, ms);
    if (rc == 0)
        rc = msgpack_unpack_next(u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS ? 0 : -1;
    return rc;
}

/* Send {"op", "id", ...} where @fmt lists the extra fields: 's' str, 'u'
 * uint, 'b' bin; each takes a key then a value. */
static void put(int fd, const char *op, uint64_t id, const char *fmt, ...)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    va_list ap;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2 + strlen(fmt));
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, id);
    va_start(ap, fmt);
    for (const char *f = fmt; *f; f++) {
        const char *k = va_arg(ap, const char *), *s;
        msgpack_pack_str_with_body(&pk, k, strlen(k));
        if (*f == 'u') {
            msgpack_pack_uint64(&pk, va_arg(ap, uint64_t));
        } else if (*f == 'b') {
            s = va_arg(ap, const char *);
            msgpack_pack_bin_with_body(&pk, s, strlen(s));
        } else {
            s = va_arg(ap, const char *);
            msgpack_pack_str_with_body(&pk, s, strlen(s));
        }
    }
    va_end(ap);
    send_raw(fd, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static const msgpack_object *field(const msgpack_object *m, const char *key)
{
    size_t n = strlen(key);
    if (m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

static bool str_is(const msgpack_object *o, const char *s)
{
    return o != NULL && (o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_BIN) &&
           o->via.str.size == strlen(s) && memcmp(o->via.str.ptr, s, strlen(s)) == 0;
}

static uint64_t uint_of(const msgpack_object *m, const char *key)
{
    const msgpack_object *o = field(m, key);
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    return o->via.u64;
}

static bool is_ok(const msgpack_object *m)
{
    const msgpack_object *o = field(m, "ok");
    return o != NULL && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

/* Receive the reply to request @id; assert success (or the @code). */
static void expect(int fd, uint64_t id, const char *code, msgpack_unpacked *u)
{
    assert_int_equal(recv_msg(fd, u, 5000), 0);
    assert_int_equal(uint_of(&u->data, "id"), id);
    if (code == NULL) {
        if (!is_ok(&u->data))
            msgpack_object_print(stderr, u->data);
        assert_true(is_ok(&u->data));
    } else {
        assert_false(is_ok(&u->data));
        assert_true(str_is(field(&u->data, "code"), code));
        assert_non_null(field(&u->data, "error"));
    }
}

static void call(int fd, uint64_t id, const char *code)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    expect(fd, id, code, &u);
    msgpack_unpacked_destroy(&u);
}

static int session(void)
{
    int fd = dial();
    assert_true(fd >= 0);
    put(fd, "hello", 1, "us", "version", (uint64_t)1, "token", TOKEN);
    call(fd, 1, NULL);
    return fd;
}

/* The connection was closed by the server (after what was read already). */
static void expect_closed(int fd)
{
    char c;
    assert_int_equal(read_all(fd, &c, 1, 5000), -1);
}

/* ------------------------------------------------------------------ tests */

static void test_hello(void **state)
{
    int fd = dial();
    msgpack_unpacked u;

    msgpack_unpacked_init(&u);
    put(fd, "hello", 7, "uss", "version", (uint64_t)1, "token", TOKEN, "client", "test");
    expect(fd, 7, NULL, &u);
    assert_true(str_is(field(&u.data, "server"), "mqhub"));
    assert_int_equal(uint_of(&u.data, "version"), 1);
    assert_int_equal(uint_of(&u.data, "node"), 1);
    assert_int_equal(uint_of(&u.data, "max_frame"), 1 << 20);
    put(fd, "ping", 8, "");
    call(fd, 8, NULL);
    put(fd, "no.such.op", 9, "");
    call(fd, 9, "UNKNOWN_OP");
    put(fd, "hello", 10, "u", "version", (uint64_t)2);
    call(fd, 10, "BAD_REQUEST");
    msgpack_unpacked_destroy(&u);
    close(fd);
}

static void test_auth(void **state)
{
    int fd = dial();

    put(fd, "ping", 1, "");
    call(fd, 1, "UNAUTHORIZED");
    put(fd, "queue.list", 2, "");
    call(fd, 2, "UNAUTHORIZED");
    put(fd, "hello", 3, "us", "version", (uint64_t)1, "token", "wrong");
    call(fd, 3, "UNAUTHORIZED");
    put(fd, "ping", 4, "");
    call(fd, 4, "UNAUTHORIZED");
    put(fd, "hello", 5, "us", "version", (uint64_t)1, "token", TOKEN);
    call(fd, 5, NULL);
    put(fd, "ping", 6, "");
    call(fd, 6, NULL);
    close(fd);
}

static void test_send_receive(void **state)
{
    int fd = session();
    msgpack_unpacked u;
    const msgpack_object *msgs;

    msgpack_unpacked_init(&u);
    put(fd, "queue.create", 2, "s", "name", "q1");
    call(fd, 2, NULL);
    put(fd, "send", 3, "sb", "queue", "q1", "body", "hello");
    expect(fd, 3, NULL, &u);
    assert_int_equal(uint_of(&u.data, "seq"), 1);
    put(fd, "receive", 4, "su", "queue", "q1", "wait", (uint64_t)0);
    expect(fd, 4, NULL, &u);
    msgs = field(&u.data, "msgs");
    assert_non_null(msgs);
    assert_int_equal(msgs->via.array.size, 1);
    assert_true(str_is(field(&msgs->via.array.ptr[0], "body"), "hello"));
    put(fd, "queue.get", 5, "s", "name", "q1");
    call(fd, 5, NULL);
    put(fd, "receive", 6, "s", "queue", "nope");
    call(fd, 6, "NOT_FOUND");
    put(fd, "receive", 7, "su", "queue", "q1", "wait", (uint64_t)31);
    call(fd, 7, "BAD_REQUEST");
    msgpack_unpacked_destroy(&u);
    close(fd);
}

/* A parked receive wakes on a send from another connection, and does not
 * hold up later requests of its own connection. */
static void test_long_poll(void **state)
{
    int a = session(), b = session();
    msgpack_unpacked u;
    const msgpack_object *msgs;
    uint64_t t0;

    msgpack_unpacked_init(&u);
    put(a, "queue.create", 2, "s", "name", "lp");
    call(a, 2, NULL);
    t0 = now_ms();
    put(a, "receive", 3, "su", "queue", "lp", "wait", (uint64_t)10);
    put(a, "ping", 4, "");
    call(a, 4, NULL); /* answered while receive 3 waits */
    usleep(200 * 1000);
    put(b, "send", 2, "sb", "queue", "lp", "body", "wake");
    call(b, 2, NULL);
    expect(a, 3, NULL, &u);
    msgs = field(&u.data, "msgs");
    assert_int_equal(msgs->via.array.size, 1);
    assert_true(str_is(field(&msgs->via.array.ptr[0], "body"), "wake"));
    assert_true(now_ms() - t0 < 3000);
    /* Nothing arrives: an empty list after the wait. */
    t0 = now_ms();
    put(a, "receive", 5, "su", "queue", "lp", "wait", (uint64_t)1);
    expect(a, 5, NULL, &u);
    assert_int_equal(field(&u.data, "msgs")->via.array.size, 0);
    assert_true(now_ms() - t0 >= 900);
    assert_true(now_ms() - t0 < 3000);
    /* A waiter whose connection closes is dropped; the message goes to the
     * next waiter. */
    put(b, "receive", 3, "su", "queue", "lp", "wait", (uint64_t)10);
    close(b);
    put(a, "receive", 6, "su", "queue", "lp", "wait", (uint64_t)10);
    usleep(200 * 1000);
    b = session();
    put(b, "send", 2, "sb", "queue", "lp", "body", "second");
    call(b, 2, NULL);
    expect(a, 6, NULL, &u);
    assert_true(str_is(field(&field(&u.data, "msgs")->via.array.ptr[0], "body"), "second"));
    msgpack_unpacked_destroy(&u);
    close(a);
    close(b);
}

static void test_pipelining(void **state)
{
    int fd = session();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    bool seen[200] = {false};

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (uint64_t i = 0; i < 200; i++) { /* 200 frames in one write */
        size_t at = sb.size;
        unsigned char h[4] = {0};
        msgpack_sbuffer_write(&sb, (const char *)h, 4);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "op", 2);
        msgpack_pack_str_with_body(&pk, "ping", 4);
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_uint64(&pk, 1000 + i);
        sb.data[at + 3] = (char)(sb.size - at - 4);
    }
    write_all(fd, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    for (int i = 0; i < 200; i++) {
        msgpack_unpacked u;
        uint64_t id;
        msgpack_unpacked_init(&u);
        assert_int_equal(recv_msg(fd, &u, 5000), 0);
        id = uint_of(&u.data, "id");
        assert_true(id >= 1000 && id < 1200 && !seen[id - 1000]);
        seen[id - 1000] = true;
        msgpack_unpacked_destroy(&u);
    }
    close(fd);
}

/* Bad frames: BAD_REQUEST without id (or FRAME_TOO_LARGE), then close. */
static void bad_frame(const void *body, size_t len, const char *code)
{
    int fd = session();
    msgpack_unpacked u;

    msgpack_unpacked_init(&u);
    send_raw(fd, body, len);
    assert_int_equal(recv_msg(fd, &u, 5000), 0);
    assert_false(is_ok(&u.data));
    assert_null(field(&u.data, "id"));
    assert_true(str_is(field(&u.data, "code"), code));
    expect_closed(fd);
    msgpack_unpacked_destroy(&u);
    close(fd);
}

static void test_bad_frames(void **state)
{
    static const char not_map[] = {(char)0x2a};                  /* 42 */
    static const char trailing[] = {(char)0x80, (char)0xc0};     /* {} nil */
    static const char truncated[] = {(char)0x82, (char)0xa2, 'o'}; /* {"o... */
    static const char no_id[] = {(char)0x81, (char)0xa2, 'o', 'p', (char)0xa4, 'p', 'i', 'n', 'g'};
    /* A map announcing 4 billion pairs in a 5-byte frame. */
    static const char huge_map[] = {(char)0xdf, (char)0xff, (char)0xff, (char)0xff, (char)0xff};
    unsigned char huge[4] = {0, 0x20, 0, 0}; /* 2 MiB > max_frame 1 MiB */
    int fd;

    bad_frame(not_map, sizeof not_map, "BAD_REQUEST");
    bad_frame(trailing, sizeof trailing, "BAD_REQUEST");
    bad_frame(truncated, sizeof truncated, "BAD_REQUEST");
    bad_frame(no_id, sizeof no_id, "BAD_REQUEST");
    bad_frame(huge_map, sizeof huge_map, "BAD_REQUEST");
    fd = session();
    write_all(fd, huge, 4);
    {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        assert_int_equal(recv_msg(fd, &u, 5000), 0);
        assert_true(str_is(field(&u.data, "code"), "FRAME_TOO_LARGE"));
        msgpack_unpacked_destroy(&u);
    }
    expect_closed(fd);
    close(fd);
    /* A request with an id but a wrong field keeps the connection. */
    fd = session();
    put(fd, "receive", 2, "u", "queue", (uint64_t)5);
    call(fd, 2, "BAD_REQUEST");
    put(fd, "ping", 3, "");
    call(fd, 3, NULL);
    close(fd);
}

/* ------------------------------------------------------------ the daemon */

static int start_daemon(void **state)
{
    char conf[512], log[480];
    FILE *f;
    uint64_t end;

    assert_non_null(tmpdir_make(dir, sizeof dir, "tcp-test"));
    port = 21000 + (int)(getpid() % 4000) * 2;
    snprintf(conf, sizeof conf, "%s/mqhub.conf", dir);
    f = fopen(conf, "w");
    fprintf(f,
            "node { id = 1, data = \"%s/data\", raft = \"127.0.0.1:%d\" }\n"
            "transport \"tcp\" { listen = \"127.0.0.1:%d\" }\n"
            "transport \"good\" { path = \"%s\", greeting = \"hi\" }\n"
            "auth { token = \"%s\" }\n"
            "limits { max_frame = %d }\n",
            dir, port + 1, port, good_path, TOKEN, 1 << 20);
    fclose(f);
    snprintf(log, sizeof log, "%s/mqhubd.log", dir);
    daemon_pid = fork();
    if (daemon_pid == 0) {
        freopen(log, "w", stderr);
        execl(mqhubd_path, mqhubd_path, "--config", conf, (char *)NULL);
        _exit(127);
    }
    /* Wait for the port, then for a leader (a write succeeds). */
    for (end = now_ms() + 10000; now_ms() < end; usleep(50 * 1000)) {
        int fd = dial();
        msgpack_unpacked u;
        bool ok;
        if (fd < 0)
            continue;
        msgpack_unpacked_init(&u);
        put(fd, "hello", 1, "us", "version", (uint64_t)1, "token", TOKEN);
        put(fd, "queue.create", 2, "s", "name", "ready");
        ok = recv_msg(fd, &u, 2000) == 0 && recv_msg(fd, &u, 2000) == 0 && is_ok(&u.data);
        msgpack_unpacked_destroy(&u);
        close(fd);
        if (ok)
            return 0;
    }
    fprintf(stderr, "mqhubd did not become ready; its log:\n");
    snprintf(conf, sizeof conf, "cat '%s' >&2", log);
    return system(conf) == 0 ? -1 : -1;
}

static void test_graceful_stop(void **state)
{
    int fd = session(), status;
    uint64_t end;
    char cmd[600];

    put(fd, "queue.create", 2, "s", "name", "stop");
    call(fd, 2, NULL);
    put(fd, "receive", 3, "su", "queue", "stop", "wait", (uint64_t)20);
    usleep(100 * 1000);
    kill(daemon_pid, SIGTERM);
    /* The parked receive is failed or its connection closed, quickly. */
    {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (recv_msg(fd, &u, 3000) == 0)
            assert_true(str_is(field(&u.data, "code"), "UNAVAILABLE"));
        msgpack_unpacked_destroy(&u);
    }
    close(fd);
    for (end = now_ms() + 5000; now_ms() < end; usleep(20 * 1000)) {
        if (waitpid(daemon_pid, &status, WNOHANG) == daemon_pid)
            break;
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    snprintf(cmd, sizeof cmd, "grep -q 'good plugin loaded: hi' %s/mqhubd.log", dir);
    assert_int_equal(system(cmd), 0);
    daemon_pid = 0;
}

static int stop_daemon(void **state)
{
    char cmd[300];

    if (daemon_pid > 0) {
        kill(daemon_pid, SIGKILL);
        waitpid(daemon_pid, NULL, 0);
    }
    for (unsigned i = 0; i < 16; i++)
        free(frames[i]);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),          cmocka_unit_test(test_auth),
        cmocka_unit_test(test_send_receive),   cmocka_unit_test(test_long_poll),
        cmocka_unit_test(test_pipelining),     cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_graceful_stop),
    };

    if (argc != 3) {
        fprintf(stderr, "usage: tcp_test MQHUBD GOOD_PLUGIN\n");
        return 2;
    }
    mqhubd_path = argv[1];
    good_path = argv[2];
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, start_daemon, stop_daemon);
}
