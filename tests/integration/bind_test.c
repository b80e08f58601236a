/* bind_test.c: safe defaults of the listeners (docs/security.md "Safe
 * defaults"). mqhubd listens on exactly the configured addresses — every
 * listening socket of its pid, read from /proc/net/tcp and /proc/net/tcp6
 * through its socket inodes, for the tcp and websocket transports, IPv4 and
 * IPv6 — and logs the address it bound; a listen beyond loopback without a
 * credential is refused with exit code 78 and a sentence naming the
 * transport and the way out; allow_anonymous is warned about.
 * Nothing here binds beyond loopback: the refusals happen before any socket
 * is opened, and the accepted non-loopback case uses an address (TEST-NET-1)
 * this host does not have, so its bind fails.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>

#include "testhub.h"
#include "tmpdir.h"

#define EXIT_CONFIG 78
#define MAX_LISTENERS 16

static const char *mqhubd_path;

typedef struct daemon {
    char dir[256];
    pid_t pid;
} daemon_t;

typedef struct listener {
    char addr[64]; /* "127.0.0.1:6280", "[::1]:6280" */
} listener_t;

/* ---------------------------------------------------------------- daemon */

__attribute__((format(printf, 2, 3))) static void write_config(daemon_t *d, const char *fmt,
                                                              ...)
{
    char path[300];
    va_list ap;
    FILE *f;

    assert_non_null(tmpdir_make(d->dir, sizeof d->dir, "bind"));
    snprintf(path, sizeof path, "%s/config.lua", d->dir);
    assert_non_null(f = fopen(path, "w"));
    fprintf(f, "node { id = 1, data = \"%s/data\" }\n", d->dir);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

/* The daemon's log ("" when none), malloc'ed. */
static char *read_log(const daemon_t *d)
{
    char path[300], *buf = calloc(1, 65536);
    FILE *f;

    snprintf(path, sizeof path, "%s/mqhubd.log", d->dir);
    assert_non_null(buf);
    if ((f = fopen(path, "r")) != NULL) {
        size_t n = fread(buf, 1, 65535, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

/* Start mqhubd and wait until @port accepts connections. */
static void start(daemon_t *d, uint16_t port)
{
    d->pid = testhub_spawn_dir(mqhubd_path, d->dir);
    assert_true(d->pid > 0);
    for (int i = 0; i < 300; i++) {
        int fd = testhub_connect_port(port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        testhub_sleep_ms(50);
    }
    testhub_print_log(d->dir, "not listening ");
    fail_msg("mqhubd does not listen on port %u", port);
}

/* mqhubd must exit on its own within 10 s: its exit status. */
static int exit_status(daemon_t *d)
{
    int st;

    d->pid = testhub_spawn_dir(mqhubd_path, d->dir);
    assert_true(d->pid > 0);
    for (int i = 0; i < 200; i++) {
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        testhub_sleep_ms(50);
    }
    testhub_print_log(d->dir, "still running ");
    fail_msg("mqhubd did not exit");
    return -1;
}

static void cleanup(daemon_t *d)
{
    char cmd[300];

    if (d->pid > 0)
        testhub_term_wait(&d->pid, 10000);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", d->dir);
}

/* ------------------------------------------------------ /proc listeners */

/* Whether socket inode @ino is one of @pid's file descriptors. */
static bool pid_has_inode(pid_t pid, unsigned long ino)
{
    char dir[64], path[400], link[64], want[64];
    struct dirent *e;
    bool found = false;
    DIR *dp;

    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    snprintf(want, sizeof want, "socket:[%lu]", ino);
    if ((dp = opendir(dir)) == NULL)
        return false;
    while (!found && (e = readdir(dp)) != NULL) {
        ssize_t n;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        n = readlink(path, link, sizeof link - 1);
        if (n > 0) {
            link[n] = '\0';
            found = strcmp(link, want) == 0;
        }
    }
    closedir(dp);
    return found;
}

/* The kernel's hex address (/proc/net/tcp: one host-order u32 per 4 bytes)
 * as text. */
static void hex_addr(const char *hex, bool v6, unsigned port, char *out, size_t len)
{
    unsigned char b[16];
    char ip[64];
    int words = v6 ? 4 : 1;

    for (int w = 0; w < words; w++) {
        unsigned v;
        sscanf(hex + 8 * w, "%8x", &v);
        memcpy(b + 4 * w, &v, 4); /* host order = the kernel's in-memory order */
    }
    if (v6)
        snprintf(out, len, "[%s]:%u", inet_ntop(AF_INET6, b, ip, sizeof ip), port);
    else
        snprintf(out, len, "%s:%u", inet_ntop(AF_INET, b, ip, sizeof ip), port);
}

/* Every listening TCP socket of @pid into @out: their count. */
static int listeners(pid_t pid, listener_t *out, int max)
{
    static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    int n = 0;

    for (int f = 0; f < 2; f++) {
        char line[512], local[64];
        unsigned port, state;
        unsigned long ino;
        FILE *fp = fopen(files[f], "r");
        if (fp == NULL)
            continue;
        while (fgets(line, sizeof line, fp) != NULL) {
            if (sscanf(line, " %*d: %63[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*s %*s %lu", local,
                       &port, &state, &ino) != 4 ||
                state != 0x0A || !pid_has_inode(pid, ino))
                continue;
            if (n < max)
                hex_addr(local, f == 1, port, out[n].addr, sizeof out[n].addr);
            n++;
        }
        fclose(fp);
    }
    return n;
}

static bool has_listener(const listener_t *l, int n, const char *addr)
{
    for (int i = 0; i < n; i++)
        if (strcmp(l[i].addr, addr) == 0)
            return true;
    return false;
}

/* @pid listens on exactly the addresses of @want (NULL-ended). */
static void assert_listens_exactly(daemon_t *d, const char *const *want)
{
    listener_t l[MAX_LISTENERS];
    int n = listeners(d->pid, l, MAX_LISTENERS), k = 0;

    for (; want[k] != NULL; k++)
        if (!has_listener(l, n, want[k])) {
            for (int i = 0; i < n && i < MAX_LISTENERS; i++)
                fprintf(stderr, "listening: %s\n", l[i].addr);
            fail_msg("no listener on %s", want[k]);
        }
    if (n != k) {
        for (int i = 0; i < n && i < MAX_LISTENERS; i++)
            fprintf(stderr, "listening: %s\n", l[i].addr);
        fail_msg("%d listening sockets, %d configured", n, k);
    }
}

static bool ipv6_loopback_usable(void)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;

    if (fd >= 0)
        close(fd);
    return ok;
}

/* ---------------------------------------------------------------- tests */

/* IPv4 loopback: the tcp and websocket transports listen on 127.0.0.1
 * only (lws used to listen on [::] for this config), and the websocket
 * transport logs the address it bound. */
static void test_ipv4_loopback_exactly(void **state)
{
    uint16_t tcp = testhub_free_port(NULL, 0), ws = testhub_free_port(&tcp, 1);
    char a[64], b[64], *log;
    daemon_t d = {0};

    (void)state;
    write_config(&d, "transport \"tcp\" { listen = \"127.0.0.1:%u\" }\n"
                     "transport \"websocket\" { listen = \"127.0.0.1:%u\" }\n", tcp, ws);
    start(&d, ws);
    snprintf(a, sizeof a, "127.0.0.1:%u", tcp);
    snprintf(b, sizeof b, "127.0.0.1:%u", ws);
    assert_listens_exactly(&d, (const char *const[]){a, b, NULL});
    log = read_log(&d);
    snprintf(a, sizeof a, "listening on 127.0.0.1:%u,", ws);
    if (strstr(log, a) == NULL)
        fail_msg("no \"%s\" in the log:\n%s", a, log);
    free(log);
    cleanup(&d);
}

/* IPv6 loopback for both transports, and port 0 for the websocket one: the
 * log names the port the kernel picked, and that is where it listens. */
static void test_ipv6_loopback_exactly(void **state)
{
    uint16_t tcp = testhub_free_port(NULL, 0);
    char a[64], b[64], *log, *at;
    unsigned ws = 0;
    daemon_t d = {0};

    (void)state;
    if (!ipv6_loopback_usable())
        skip();
    write_config(&d, "transport \"tcp\" { listen = \"[::1]:%u\" }\n"
                     "transport \"websocket\" { listen = \"[::1]:0\" }\n", tcp);
    d.pid = testhub_spawn_dir(mqhubd_path, d.dir);
    assert_true(d.pid > 0);
    for (int i = 0; i < 300 && ws == 0; i++) {
        log = read_log(&d);
        if ((at = strstr(log, "listening on [::1]:")) != NULL)
            sscanf(at + strlen("listening on [::1]:"), "%u", &ws);
        free(log);
        testhub_sleep_ms(50);
    }
    assert_true(ws > 0);
    snprintf(a, sizeof a, "[::1]:%u", tcp);
    snprintf(b, sizeof b, "[::1]:%u", ws);
    for (int i = 0; i < 100; i++) { /* the tcp transport may start a little later */
        listener_t l[MAX_LISTENERS];
        if (listeners(d.pid, l, MAX_LISTENERS) >= 2)
            break;
        testhub_sleep_ms(50);
    }
    assert_listens_exactly(&d, (const char *const[]){a, b, NULL});
    cleanup(&d);
}

/* Beyond loopback without a credential: refused before anything listens,
 * for each transport. */
static void test_exposed_without_credential_refused(void **state)
{
    static const char *const cases[][2] = {
        {"tcp", "0.0.0.0"}, {"websocket", "0.0.0.0"}, {"websocket", "[::]"},
        {"tcp", "192.0.2.1"}};
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t port = testhub_free_port(NULL, 0);
        char want[160], *log;
        daemon_t d = {0};
        write_config(&d, "transport \"%s\" { listen = \"%s:%u\" }\n", cases[i][0],
                     cases[i][1], port);
        assert_int_equal(exit_status(&d), EXIT_CONFIG);
        log = read_log(&d);
        snprintf(want, sizeof want, "transport \"%s\" listens on %s:%u, beyond loopback, and "
                 "no credential is configured", cases[i][0], cases[i][1], port);
        if (strstr(log, want) == NULL || strstr(log, "allow_anonymous = true") == NULL)
            fail_msg("no \"%s\" in the log:\n%s", want, log);
        free(log);
        cleanup(&d);
    }
}

/* With the root token the rule passes: the listen below is beyond loopback
 * but not an address of this host, so the websocket transport's bind fails
 * (nothing is exposed) with its own sentence, not the refusal above. */
static void test_exposed_with_token_passes_the_rule(void **state)
{
    uint16_t port = testhub_free_port(NULL, 0), tcp = testhub_free_port(&port, 1);
    char want[160], *log;
    daemon_t d = {0};

    (void)state;
    write_config(&d, "auth { token = \"a-long-enough-root-token\" }\n"
                     "transport \"tcp\" { listen = \"127.0.0.1:%u\" }\n"
                     "transport \"websocket\" { listen = \"192.0.2.1:%u\" }\n", tcp, port);
    assert_int_equal(exit_status(&d), EXIT_CONFIG);
    log = read_log(&d);
    snprintf(want, sizeof want, "listen on 192.0.2.1:%u: ", port);
    if (strstr(log, want) == NULL || strstr(log, "beyond loopback") != NULL)
        fail_msg("no \"%s\" (and no refusal) in the log:\n%s", want, log);
    free(log);
    cleanup(&d);
}

/* allow_anonymous: starts, and says so at warn on every start; with a
 * token it is a contradiction. */
static void test_allow_anonymous(void **state)
{
    uint16_t tcp = testhub_free_port(NULL, 0), ws = testhub_free_port(&tcp, 1);
    char *log;
    daemon_t d = {0};

    (void)state;
    write_config(&d, "auth { allow_anonymous = true }\n"
                     "transport \"tcp\" { listen = \"127.0.0.1:%u\" }\n"
                     "transport \"websocket\" { listen = \"127.0.0.1:%u\" }\n", tcp, ws);
    start(&d, ws);
    log = read_log(&d);
    if (strstr(log, "level=warn") == NULL ||
        strstr(log, "auth.allow_anonymous = true: without a root token") == NULL)
        fail_msg("no allow_anonymous warning in the log:\n%s", log);
    free(log);
    cleanup(&d);

    memset(&d, 0, sizeof d);
    write_config(&d, "auth { token = \"a-long-enough-root-token\", allow_anonymous = true }\n"
                     "transport \"tcp\" { listen = \"127.0.0.1:%u\" }\n", tcp);
    assert_int_equal(exit_status(&d), EXIT_CONFIG);
    log = read_log(&d);
    assert_non_null(strstr(log, "auth.token and auth.allow_anonymous = true contradict"));
    free(log);
    cleanup(&d);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_loopback_exactly),
        cmocka_unit_test(test_ipv6_loopback_exactly),
        cmocka_unit_test(test_exposed_without_credential_refused),
        cmocka_unit_test(test_exposed_with_token_passes_the_rule),
        cmocka_unit_test(test_allow_anonymous),
    };

    mqhubd_path = testhub_binary(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
