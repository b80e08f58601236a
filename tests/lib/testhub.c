/* testhub.c: runs a real mqhubd for integration tests (see testhub.h).
 *
 * testhub_start() makes a temp dir (mkdtemp under $TMPDIR or /tmp), picks two
 * free loopback ports (bind to port 0, read it back), writes config.lua,
 * spawns mqhubd with its log in the dir, and polls with raw frames until
 * queue.list answers ok. The raw frame helpers are also what bad-input tests
 * use. To support a new config directive, extend write_config().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mp.h"
#include "tmpdir.h"
#include "testhub.h"

#define READY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 10000

uint64_t testhub_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void testhub_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *testhub_binary(int argc, char **argv)
{
    const char *env = getenv("MQHUBD");
    if (env && *env)
        return env;
    return argc > 1 && access(argv[1], X_OK) == 0 ? argv[1] : NULL;
}

uint16_t testhub_free_port(const uint16_t *taken, unsigned n)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        uint16_t port = 0;
        if (fd < 0)
            return 0;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &al) == 0)
            port = ntohs(a.sin_port);
        close(fd);
        bool dup = false;
        for (unsigned i = 0; i < n; i++)
            dup |= taken[i] == port;
        if (port && !dup)
            return port;
    }
    return 0;
}

static int write_config(testhub_t *h, const testhub_opts_t *o)
{
    char path[320];
    snprintf(path, sizeof path, "%s/config.lua", h->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "node { id = 1, data = \"%s/data\", raft = \"127.0.0.1:%u\" }\n", h->dir,
            h->raft_port);
    fprintf(f, "transport \"tcp\" { listen = \"127.0.0.1:%u\"%s }\n", h->port,
            o && o->tcp_extra ? o->tcp_extra : "");
    fprintf(f, "log { level = \"warn\" }\n");
    if (o && o->token)
        fprintf(f, "auth { token = \"%s\" }\n", o->token);
    if (o && o->max_frame)
        fprintf(f, "limits { max_frame = %zu }\n", o->max_frame);
    if (o && o->extra_config)
        fprintf(f, "%s\n", o->extra_config);
    return fclose(f);
}

void testhub_print_log(const char *dir, const char *label)
{
    char path[340], line[1024];
    snprintf(path, sizeof path, "%s/mqhubd.log", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fprintf(stderr, "---- %s%s\n", label, path);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

pid_t testhub_spawn_dir(const char *mqhubd, const char *dir)
{
    char config[340], log[340];
    snprintf(config, sizeof config, "%s/config.lua", dir);
    snprintf(log, sizeof log, "%s/mqhubd.log", dir);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execl(mqhubd, mqhubd, "--config", config, (char *)NULL);
    _exit(127);
}

/* Pack {op, id, [token/version]} into @sb. */
static void pack_op(msgpack_sbuffer *sb, const char *op, const char *token)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, token ? 4 : 2);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, 1);
    if (token) {
        msgpack_pack_str_with_body(&pk, "version", 7);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_str_with_body(&pk, "token", 5);
        msgpack_pack_str_with_body(&pk, token, strlen(token));
    }
}

static bool answer_ok(int fd, const char *op, const char *token)
{
    msgpack_sbuffer sb;
    msgpack_zone zone;
    msgpack_object o;
    bool ok = false;
    msgpack_sbuffer_init(&sb);
    msgpack_zone_init(&zone, 4096);
    pack_op(&sb, op, token);
    if (testhub_write_frame(fd, sb.data, sb.size) == 0 &&
        testhub_read_frame(fd, 2000, &zone, &o) == 0) {
        for (uint32_t i = 0; i < o.via.map.size; i++) {
            msgpack_object_kv *kv = &o.via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 2 &&
                !memcmp(kv->key.via.str.ptr, "ok", 2) && kv->val.type == MSGPACK_OBJECT_BOOLEAN)
                ok = kv->val.via.boolean;
        }
    }
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
    return ok;
}

/* One readiness probe: hello (with the token) then queue.list. */
static bool ready(const testhub_t *h)
{
    int fd = testhub_connect_raw(h);
    if (fd < 0)
        return false;
    bool ok = (!h->token[0] || answer_ok(fd, "hello", h->token)) &&
              answer_ok(fd, "queue.list", NULL);
    close(fd);
    return ok;
}

bool testhub_alive(testhub_t *h)
{
    int status;
    if (h->pid <= 0)
        return false;
    if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
        h->pid = 0;
        return false;
    }
    return true;
}

static int wait_ready(testhub_t *h)
{
    uint64_t until = testhub_now_ms() + READY_TIMEOUT_MS;
    while (testhub_now_ms() < until) {
        if (!testhub_alive(h)) {
            fprintf(stderr, "testhub: mqhubd exited during start\n");
            testhub_print_log(h->dir, "");
            return -1;
        }
        if (ready(h))
            return 0;
        testhub_sleep_ms(50);
    }
    fprintf(stderr, "testhub: mqhubd not ready on %s within %d ms\n", h->address,
            READY_TIMEOUT_MS);
    testhub_print_log(h->dir, "");
    return -1;
}

int testhub_restart(testhub_t *h)
{
    if (h->pid > 0) { /* a second daemon would be refused the dir, and the
                         first would be forgotten: left running after the test */
        fprintf(stderr, "testhub: restart while mqhubd %d runs: stop or kill it first\n",
                (int)h->pid);
        return -1;
    }
    h->pid = testhub_spawn_dir(h->mqhubd, h->dir);
    if (h->pid < 0) {
        h->pid = 0;
        return -1;
    }
    return wait_ready(h);
}

int testhub_start(testhub_t *h, const char *mqhubd, const testhub_opts_t *opts)
{
    memset(h, 0, sizeof *h);
    if (!mqhubd) {
        fprintf(stderr, "testhub: no mqhubd binary (set MQHUBD)\n");
        return -1;
    }
    snprintf(h->mqhubd, sizeof h->mqhubd, "%s", mqhubd);
    if (!tmpdir_make(h->dir, sizeof h->dir, "test"))
        return -1;
    h->port = testhub_free_port(NULL, 0);
    h->raft_port = testhub_free_port(&h->port, 1);
    snprintf(h->address, sizeof h->address, "127.0.0.1:%u", h->port);
    if (opts && opts->token)
        snprintf(h->token, sizeof h->token, "%s", opts->token);
    if (!h->port || !h->raft_port || write_config(h, opts) != 0)
        return -1;
    return testhub_restart(h);
}

int testhub_term_wait(pid_t *pid, int timeout_ms)
{
    int status = 0;
    kill(*pid, SIGTERM);
    uint64_t until = testhub_now_ms() + (uint64_t)timeout_ms;
    while (testhub_now_ms() < until) {
        if (waitpid(*pid, &status, WNOHANG) == *pid) {
            *pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        testhub_sleep_ms(10);
    }
    return -1;
}

int testhub_stop(testhub_t *h)
{
    if (h->pid <= 0)
        return 0;
    int st = testhub_term_wait(&h->pid, STOP_TIMEOUT_MS);
    if (st < 0) {
        fprintf(stderr, "testhub: mqhubd ignored SIGTERM for %d ms\n", STOP_TIMEOUT_MS);
        testhub_kill(h);
    }
    return st;
}

void testhub_kill(testhub_t *h)
{
    if (h->pid <= 0)
        return;
    kill(h->pid, SIGKILL);
    waitpid(h->pid, NULL, 0);
    h->pid = 0;
}

static int remove_tree(const char *path)
{
    char cmd[600];
    if (strstr(path, "/mqhub-test-") == NULL)
        return -1; /* only ever our own temp dirs */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    return system(cmd);
}

void testhub_cleanup(testhub_t *h)
{
    testhub_stop(h);
    if (h->dir[0] && !getenv("MQHUB_KEEP_TEST_DIR"))
        remove_tree(h->dir);
}

/* ---------------------------------------------------------------- raw */

int testhub_connect_raw(const testhub_t *h)
{
    return testhub_connect_port(h->port);
}

int testhub_connect_port(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int testhub_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Header and body in one write: two small writes would wait on Nagle's
 * algorithm and the peer's delayed ACK (~40 ms a request). */
int testhub_write_frame(int fd, const void *p, size_t n)
{
    uint32_t len = htonl((uint32_t)n);
    char *buf = malloc(n + 4);
    if (buf == NULL)
        return -1;
    memcpy(buf, &len, 4);
    memcpy(buf + 4, p, n);
    int rc = testhub_write_all(fd, buf, n + 4);
    free(buf);
    return rc;
}

int testhub_send_set_hook(int fd, uint64_t id, const char *queue, const char *script)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "queue.set");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, id);
    mp_pack_cstr(&pk, "name");
    mp_pack_cstr(&pk, queue);
    mp_pack_cstr(&pk, "attrs");
    msgpack_pack_map(&pk, 1);
    mp_pack_cstr(&pk, "hook");
    mp_pack_cstr(&pk, script);
    int rc = testhub_write_frame(fd, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int read_exact(int fd, void *p, size_t n, uint64_t until)
{
    char *c = p;
    while (n > 0) {
        uint64_t t = testhub_now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (t >= until || poll(&pfd, 1, (int)(until - t)) <= 0)
            return -1;
        ssize_t r = recv(fd, c, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

int testhub_read_frame(int fd, int timeout_ms, msgpack_zone *zone, msgpack_object *out)
{
    uint64_t until = testhub_now_ms() + (uint64_t)timeout_ms;
    uint32_t len;
    size_t off = 0;
    if (read_exact(fd, &len, 4, until) != 0)
        return -1;
    len = ntohl(len);
    if (len > (64u << 20))
        return -1;
    char *data = msgpack_zone_malloc(zone, len ? len : 1);
    if (!data || read_exact(fd, data, len, until) != 0)
        return -1;
    if (msgpack_unpack(data, len, &off, zone, out) != MSGPACK_UNPACK_SUCCESS ||
        out->type != MSGPACK_OBJECT_MAP)
        return -1;
    return 0;
}

bool testhub_closed(int fd, int timeout_ms)
{
    uint64_t until = testhub_now_ms() + (uint64_t)timeout_ms;
    char buf[4096];
    for (;;) {
        uint64_t t = testhub_now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (t >= until || poll(&pfd, 1, (int)(until - t)) <= 0)
            return false;
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
            return true;
    }
}


const char *testhub_str(const msgpack_object *map, const char *key, char *buf, size_t size)
{
    const msgpack_object *v = mp_map_get(map, key);
    buf[0] = '\0';
    if (v && v->type == MSGPACK_OBJECT_STR) {
        size_t n = v->via.str.size < size - 1 ? v->via.str.size : size - 1;
        memcpy(buf, v->via.str.ptr, n);
        buf[n] = '\0';
    }
    return buf;
}
