/* limits_test.c: the node's limits against hostile clients on a real mqhubd
 * (docs/operations.md "Limits", issue 12). One case per CTest entry (argv[2]):
 *   huge_count     a 5-byte array32 frame to the hub over TCP
 *   hook_decode    hub.msgpack.decode of the same bytes in a hook
 *   client_decode  libmqhub receiving it from a fake server
 *   utf8           invalid UTF-8 in an op and a name: the error text is valid
 *                  UTF-8 with the bytes escaped (\xff)
 *   frame_timeout  a frame announced, then bytes trickling: closed
 *   idle_timeout   a quiet connection: closed
 *   conn_cap       past max_connections: refused and logged
 *   emfile         a low open-file limit: refused and logged, no spinning
 *   input_budget   unfinished frames of many connections: the one passing
 *                  input_budget is closed
 *   push_stall     a push subscriber that does not read: RSS stays bounded,
 *                  it is closed after write_timeout, others are served
 * Timing bounds are generous (a loaded 2-core machine); measured figures are
 * printed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "mqhub/protocol.h"
#include "testhub.h"
#include "utf8.h"

#if defined(__SANITIZE_ADDRESS__)
#define RSS_BOUND_MB 600 /* ASan's shadow and quarantine */
#else
#define RSS_BOUND_MB 150
#endif

static const char *mqhubd_path;
static testhub_t hub;
static uint64_t next_id;

/* ---------------------------------------------------------------- helpers */

static void start(const char *tcp_extra, size_t max_frame)
{
    testhub_opts_t o = {.tcp_extra = tcp_extra, .max_frame = max_frame};
    assert_int_equal(testhub_start(&hub, mqhubd_path, &o), 0);
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

/* Send {op, id, k1: v1, ...} (string values, NULL-terminated pairs) and read
 * the reply into @code / @error ("" when absent); skips pushes. */
static void request(int fd, char *code, char *error, size_t esize, const char *op, ...)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    const char *kv[16];
    unsigned n = 0;
    va_list ap;

    va_start(ap, op);
    while (n < 16 && (kv[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2 + n / 2);
    pack_str(&pk, "op");
    pack_str(&pk, op);
    pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, ++next_id);
    for (unsigned i = 0; i + 1 < n; i += 2) {
        pack_str(&pk, kv[i]);
        pack_str(&pk, kv[i + 1]);
    }
    assert_int_equal(testhub_write_frame(fd, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
    for (;;) {
        msgpack_zone zone;
        msgpack_object o;
        msgpack_zone_init(&zone, 4096);
        assert_int_equal(testhub_read_frame(fd, 10000, &zone, &o), 0);
        if (mp_map_get(&o, "push") != NULL) {
            msgpack_zone_destroy(&zone);
            continue;
        }
        testhub_str(&o, "code", code, 64);
        if (error)
            testhub_str(&o, "error", error, esize);
        msgpack_zone_destroy(&zone);
        return;
    }
}

/* request() that must succeed; the pairs end with NULL. */
#define must(fd, ...)                                                                      \
    do {                                                                                   \
        char code_[64], error_[256];                                                       \
        request(fd, code_, error_, sizeof error_, __VA_ARGS__);                            \
        if (code_[0])                                                                      \
            fail_msg("%s: %s", code_, error_);                                             \
    } while (0)

/* A fresh connection gets a ping answered within @ms; returns the ms. */
static uint64_t ping_fresh(int ms_bound)
{
    uint64_t t0 = testhub_now_ms();
    int fd = conn();
    must(fd, "ping", NULL);
    close(fd);
    uint64_t ms = testhub_now_ms() - t0;
    assert_true(ms < (uint64_t)ms_bound);
    return ms;
}

static bool log_has(const char *needle)
{
    char path[320], line[2048];
    bool found = false;
    snprintf(path, sizeof path, "%s/mqhubd.log", hub.dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static long proc_field(pid_t pid, const char *file, const char *key)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, key, strlen(key)) == 0)
            v = atol(line + strlen(key));
    fclose(f);
    return v;
}

/* utime + stime of @pid in clock ticks. */
static long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long ut = 0, st = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(buf, sizeof buf, f) == NULL) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    char *p = strrchr(buf, ')');
    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
    return (long)(ut + st);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    return 0;
}

/* ------------------------------------------------------- item 5: decoders */

static const char huge_array[] = {(char)0xdd, (char)0xff, (char)0xff, (char)0xff, (char)0xff};

static void test_huge_count(void **state)
{
    start(NULL, 0);
    int fd = conn();
    msgpack_zone zone;
    msgpack_object o;
    char code[64];
    assert_int_equal(testhub_write_frame(fd, huge_array, sizeof huge_array), 0);
    msgpack_zone_init(&zone, 4096);
    assert_int_equal(testhub_read_frame(fd, 5000, &zone, &o), 0);
    assert_string_equal(testhub_str(&o, "code", code, sizeof code), "BAD_REQUEST");
    msgpack_zone_destroy(&zone);
    assert_true(testhub_closed(fd, 5000));
    close(fd);
    print_message("ping after: %llu ms\n", (unsigned long long)ping_fresh(5000));
}

static void test_hook_decode(void **state)
{
    static const char src[] =
        "function on_message(msg)\n"
        "  local v, err = hub.msgpack.decode('\\221\\255\\255\\255\\255')\n"
        "  if v ~= nil or err == nil then error('decoded a huge array') end\n"
        "  return true\n"
        "end\n";
    char code[64], error[512];
    start(NULL, 0);
    int fd = conn();
    must(fd, "script.load", "name", "dec", "source", src, NULL);
    request(fd, code, error, sizeof error, "queue.create", "name", "hq", NULL);
    assert_string_equal(code, "");
    assert_int_equal(testhub_send_set_hook(fd, ++next_id, "hq", "dec"), 0);
    msgpack_zone zone;
    msgpack_object o;
    msgpack_zone_init(&zone, 4096);
    assert_int_equal(testhub_read_frame(fd, 5000, &zone, &o), 0);
    assert_string_equal(testhub_str(&o, "code", code, sizeof code), "");
    msgpack_zone_destroy(&zone);
    request(fd, code, error, sizeof error, "send", "queue", "hq", "body", "x", NULL);
    if (code[0])
        fail_msg("send through the hook: %s %s", code, error);
    close(fd);
    ping_fresh(5000);
}

/* A fake server: answers every frame it reads with the 5-byte array32. */
static void *fake_server(void *arg)
{
    int lfd = *(int *)arg;
    for (int n = 0; n < 8; n++) {
        struct timeval tv = {.tv_sec = 5};
        setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            break;
        char buf[4096];
        if (read(fd, buf, sizeof buf) > 0) {
            char frame[4 + sizeof huge_array] = {0, 0, 0, sizeof huge_array};
            memcpy(frame + 4, huge_array, sizeof huge_array);
            testhub_write_all(fd, frame, sizeof frame);
        }
        testhub_sleep_ms(200);
        close(fd);
    }
    return NULL;
}

static void test_client_decode(void **state)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fake_server, &lfd), 0);
    char addr[64], err[256];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(sa.sin_port));
    mqhub_client_t *c = NULL;
    uint64_t t0 = testhub_now_ms();
    if (mqhub_client_connect(&c, addr, NULL, err, sizeof err) == 0) {
        int rc = mqhub_client_ping(c);
        print_message("ping: %d (%s) after %llu ms\n", rc, mqhub_client_errmsg(c),
                      (unsigned long long)(testhub_now_ms() - t0));
        assert_true(rc != 0);
        mqhub_client_close(c);
    }
    shutdown(lfd, SHUT_RDWR);
    close(lfd);
    pthread_join(th, NULL);
}

/* An error text is valid UTF-8 and shows @escaped. */
static void expect_escaped(const char *code, const char *error, const char *escaped)
{
    print_message("%s: %s\n", code, error);
    assert_true(code[0] != '\0');
    assert_true(utf8_valid(error, strlen(error)));
    assert_non_null(strstr(error, escaped));
}

static void test_utf8(void **state)
{
    char code[64], error[512];
    start(NULL, 0);
    int fd = conn();
    request(fd, code, error, sizeof error, "queue.create", "name", "bad\xff\xfename", NULL);
    expect_escaped(code, error, "bad\\xff\\xfename");
    request(fd, code, error, sizeof error, "no\xc3op", NULL);
    expect_escaped(code, error, "no\\xc3op");
    request(fd, code, error, sizeof error, "queue.get", "name", "h\xc3\xa9llo\xed\xa0\x80", NULL);
    expect_escaped(code, error, "h\xc3\xa9llo\\xed\\xa0\\x80");
    must(fd, "ping", NULL);
    close(fd);
}

/* ------------------------------------------------ item 2: input limits */

static void test_frame_timeout(void **state)
{
    static const char header[] = {0, (char)0xf0, 0, 0}; /* announces 15 MiB */
    start(", frame_timeout = 2", 0);
    int fd = conn();
    uint64_t t0 = testhub_now_ms();
    assert_int_equal(testhub_write_all(fd, header, sizeof header), 0);
    bool closed = false;
    while (!closed && testhub_now_ms() - t0 < 15000) {
        if (testhub_write_all(fd, "xxxxxxxx", 8) != 0)
            break;
        closed = testhub_closed(fd, 300);
    }
    uint64_t ms = testhub_now_ms() - t0;
    print_message("trickling frame closed after %llu ms (frame_timeout 2 s)\n",
                  (unsigned long long)ms);
    assert_true(ms >= 1500 && ms < 12000);
    close(fd);
    ping_fresh(5000);
    assert_true(log_has("frame_timeout"));
}

static void test_idle_timeout(void **state)
{
    start(", idle_timeout = 2", 0);
    int fd = conn();
    must(fd, "ping", NULL);
    uint64_t t0 = testhub_now_ms();
    assert_true(testhub_closed(fd, 15000));
    uint64_t ms = testhub_now_ms() - t0;
    print_message("idle connection closed after %llu ms (idle_timeout 2 s)\n",
                  (unsigned long long)ms);
    assert_true(ms >= 1500 && ms < 12000);
    close(fd);
    ping_fresh(5000);
    assert_true(log_has("idle_timeout"));
}

static void test_conn_cap(void **state)
{
    int fds[6], open_fd = -1;
    start(", max_connections = 4", 0);
    testhub_sleep_ms(500); /* the start-up check's connection is gone */
    for (int i = 0; i < 6; i++)
        fds[i] = conn();
    int refused = 0;
    for (int i = 0; i < 6; i++) {
        bool closed = testhub_closed(fds[i], i < 4 ? 200 : 3000);
        refused += closed;
        print_message("connection %d: %s\n", i, closed ? "refused" : "open");
        if (!closed && open_fd < 0)
            open_fd = fds[i];
    }
    print_message("%d of 6 refused (max_connections 4)\n", refused);
    assert_true(testhub_alive(&hub));
    assert_true(refused >= 2 && refused <= 3);
    uint64_t t0 = testhub_now_ms();
    char code[64], error[256];
    request(open_fd, code, error, sizeof error, "ping", NULL);
    print_message("ping on an open connection: '%s' after %llu ms\n", code,
                  (unsigned long long)(testhub_now_ms() - t0));
    assert_string_equal(code, "");
    for (int i = 0; i < 6; i++)
        close(fds[i]);
    assert_true(log_has("max_connections 4"));
    testhub_sleep_ms(500); /* the server sees the closes */
    ping_fresh(5000);
}

static void test_emfile(void **state)
{
    enum { N = 260 };
    struct rlimit old, low;
    static int fds[N];
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 192; /* the daemon inherits it */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    testhub_opts_t o = {0};
    int rc = testhub_start(&hub, mqhubd_path, &o);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(rc, 0);
    int first = conn();
    must(first, "ping", NULL);
    long cpu0 = cpu_ticks(hub.pid);
    uint64_t t0 = testhub_now_ms();
    for (int i = 0; i < N; i++)
        fds[i] = testhub_connect_raw(&hub);
    testhub_sleep_ms(2000);
    long cpu = cpu_ticks(hub.pid) - cpu0;
    uint64_t ms = testhub_now_ms() - t0;
    uint64_t tp = testhub_now_ms();
    must(first, "ping", NULL); /* served while the rest are refused */
    uint64_t ping = testhub_now_ms() - tp;
    print_message("%d connections past an open-file limit of 192: daemon CPU %ld ticks "
                  "in %llu ms, a ping %llu ms\n", N, cpu, (unsigned long long)ms,
                  (unsigned long long)ping);
    assert_true(cpu >= 0 && cpu < (long)(ms / 1000 + 1) * sysconf(_SC_CLK_TCK) * 3 / 4);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    close(first);
    testhub_sleep_ms(500);
    ping_fresh(10000);
    assert_true(log_has("refusing"));
    assert_true(testhub_alive(&hub));
}

static void test_input_budget(void **state)
{
    /* max_frame 1 MiB, 3 MiB for all unfinished frames: each connection
     * announces a 1 MiB frame and sends part of it */
    static const char header[] = {0, 0x0f, (char)0xff, 0};
    static char part[64 * 1024];
    int fds[6];
    start(", input_budget = 3145728", 1 << 20);
    for (int i = 0; i < 6; i++) {
        fds[i] = conn();
        assert_int_equal(testhub_write_all(fds[i], header, sizeof header), 0);
        assert_int_equal(testhub_write_all(fds[i], part, sizeof part), 0);
        testhub_sleep_ms(100);
    }
    int closed = 0;
    for (int i = 0; i < 6; i++)
        closed += testhub_closed(fds[i], 1000);
    print_message("%d of 6 unfinished 1 MiB frames closed (input_budget 3 MiB)\n", closed);
    assert_true(closed >= 3 && closed <= 4);
    for (int i = 0; i < 6; i++)
        close(fds[i]);
    assert_true(log_has("input_budget"));
    ping_fresh(5000);
}

/* ---------------------------------------------------- item 1: push stall */

static void publish_batch(int fd, int n, size_t body)
{
    static char text[16384];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char code[64];
    memset(text, 'p', sizeof text);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "op");
    pack_str(&pk, "publish_batch");
    pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, ++next_id);
    pack_str(&pk, "topic");
    pack_str(&pk, "busy");
    pack_str(&pk, "msgs");
    msgpack_pack_array(&pk, n);
    for (int i = 0; i < n; i++) {
        msgpack_pack_map(&pk, 1);
        pack_str(&pk, "body");
        msgpack_pack_str_with_body(&pk, text, body);
    }
    assert_int_equal(testhub_write_frame(fd, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
    msgpack_zone zone;
    msgpack_object o;
    msgpack_zone_init(&zone, 4096);
    assert_int_equal(testhub_read_frame(fd, 10000, &zone, &o), 0);
    if (testhub_str(&o, "code", code, sizeof code)[0])
        fail_msg("publish_batch: %s", code);
    msgpack_zone_destroy(&zone);
}

/* subscription.create {topic busy, name s, endpoint {push: true}, retry
 * {the shortest interval, the most attempts}}, then subscribe with @credit. */
static void subscribe_push(int pub, int sub, unsigned credit)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object o;
    char code[64];
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    pack_str(&pk, "op");
    pack_str(&pk, "subscription.create");
    pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, ++next_id);
    pack_str(&pk, "topic");
    pack_str(&pk, "busy");
    pack_str(&pk, "name");
    pack_str(&pk, "s");
    pack_str(&pk, "endpoint");
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "push");
    msgpack_pack_true(&pk);
    pack_str(&pk, "retry");
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "strategy");
    pack_str(&pk, "backoff");
    pack_str(&pk, "interval_ms");
    msgpack_pack_uint32(&pk, MQHUB_RETRY_INTERVAL_MS_MIN);
    pack_str(&pk, "max_attempts");
    msgpack_pack_uint32(&pk, MQHUB_RETRY_MAX_ATTEMPTS_MAX);
    assert_int_equal(testhub_write_frame(pub, sb.data, sb.size), 0);
    msgpack_sbuffer_clear(&sb);
    msgpack_zone_init(&zone, 4096);
    assert_int_equal(testhub_read_frame(pub, 10000, &zone, &o), 0);
    if (testhub_str(&o, "code", code, sizeof code)[0])
        fail_msg("subscription.create: %s", code);
    msgpack_zone_destroy(&zone);
    msgpack_pack_map(&pk, 5);
    pack_str(&pk, "op");
    pack_str(&pk, "subscribe");
    pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, ++next_id);
    pack_str(&pk, "topic");
    pack_str(&pk, "busy");
    pack_str(&pk, "subscription");
    pack_str(&pk, "s");
    pack_str(&pk, "credit");
    msgpack_pack_uint32(&pk, credit);
    assert_int_equal(testhub_write_frame(sub, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_push_stall(void **state)
{
    start(", write_timeout = 3, high_water = 262144", 0);
    int pub = conn(), sub = conn();
    must(pub, "topic.create", "name", "busy", NULL);
    subscribe_push(pub, sub, 1000000); /* and never read */
    uint64_t t0 = testhub_now_ms();
    long rss0 = proc_field(hub.pid, "status", "VmRSS:"), rss_max = rss0;
    while (testhub_now_ms() - t0 < 6000) {
        publish_batch(pub, 50, 1024);
        testhub_sleep_ms(20);
        long rss = proc_field(hub.pid, "status", "VmRSS:");
        if (rss > rss_max)
            rss_max = rss;
    }
    must(pub, "ping", NULL);
    bool closed = testhub_closed(sub, 10000);
    uint64_t ms = testhub_now_ms() - t0;
    print_message("non-reading push subscriber: VmRSS %ld -> max %ld KiB (bound %d MiB); "
                  "closed: %d after %llu ms (write_timeout 3 s)\n", rss0, rss_max,
                  RSS_BOUND_MB, closed, (unsigned long long)ms);
    assert_true(closed);
    assert_true(rss_max < RSS_BOUND_MB * 1024L);
    assert_true(log_has("write_timeout"));
    must(pub, "ping", NULL);
    ping_fresh(5000);
    close(sub);
    close(pub);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        struct CMUnitTest t;
    } cases[] = {
        {"huge_count", cmocka_unit_test_teardown(test_huge_count, teardown)},
        {"hook_decode", cmocka_unit_test_teardown(test_hook_decode, teardown)},
        {"client_decode", cmocka_unit_test(test_client_decode)},
        {"utf8", cmocka_unit_test_teardown(test_utf8, teardown)},
        {"frame_timeout", cmocka_unit_test_teardown(test_frame_timeout, teardown)},
        {"idle_timeout", cmocka_unit_test_teardown(test_idle_timeout, teardown)},
        {"conn_cap", cmocka_unit_test_teardown(test_conn_cap, teardown)},
        {"emfile", cmocka_unit_test_teardown(test_emfile, teardown)},
        {"input_budget", cmocka_unit_test_teardown(test_input_budget, teardown)},
        {"push_stall", cmocka_unit_test_teardown(test_push_stall, teardown)},
    };
    mqhubd_path = testhub_binary(argc, argv);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (argc > 2 && strcmp(argv[2], cases[i].name) == 0)
            return _cmocka_run_group_tests(cases[i].name, &cases[i].t, 1, NULL, NULL);
    fprintf(stderr, "usage: limits_test MQHUBD CASE\n");
    return 2;
}
