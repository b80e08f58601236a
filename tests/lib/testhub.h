/* testhub.h: a real mqhubd for integration tests — a temp dir with a
 * generated config on free loopback ports, start/stop/kill/restart, and raw
 * frame helpers for tests that must speak bytes (bad input). Leaf code: only
 * libc, POSIX and msgpack-c; no core headers, no client library.
 */
#ifndef MQHUB_TESTHUB_H
#define MQHUB_TESTHUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <msgpack.h>

#include "mp.h" /* mp_map_get(): a field of a reply */

typedef struct testhub_opts {
    const char *token;         /* auth { token = ... } when set */
    size_t max_frame;          /* limits { max_frame = ... } when > 0 */
    const char *extra_config;  /* appended verbatim to the config file */
    const char *tcp_extra;     /* more keys of transport "tcp": ", k = v, ..." */
} testhub_opts_t;

typedef struct testhub {
    char mqhubd[512];  /* binary */
    char dir[256];     /* temp dir: config.lua, data/, mqhubd.log */
    char address[64];  /* "127.0.0.1:<port>" of the TCP transport */
    uint16_t port, raft_port;
    char token[128];   /* "" when none */
    pid_t pid;         /* 0 when not running */
} testhub_t;

/* The mqhubd binary: $MQHUBD, else argv[1] when it names an executable. */
const char *testhub_binary(int argc, char **argv);

/* Create a temp dir and config, start mqhubd, wait until it serves reads
 * (queue.list answers ok, so a leader exists). 0 or -1 (reason on stderr,
 * the daemon's log printed). */
int testhub_start(testhub_t *h, const char *mqhubd, const testhub_opts_t *opts);
/* Start again on the same dir and ports after stop or kill; -1 (and a line on
 * stderr) while the hub still runs, or when it does not get ready. */
int testhub_restart(testhub_t *h);
/* SIGTERM and wait (up to 10 s, then SIGKILL). Returns the exit status, or
 * -1 when it had to be killed. */
int testhub_stop(testhub_t *h);
/* SIGKILL and reap. */
void testhub_kill(testhub_t *h);
/* Stop if running, remove the temp dir. */
void testhub_cleanup(testhub_t *h);
/* Still running (not exited)? */
bool testhub_alive(testhub_t *h);

/* Raw connection helpers. */
int testhub_connect_raw(const testhub_t *h);            /* fd or -1 */
int testhub_write_all(int fd, const void *p, size_t n);  /* 0 or -1 */
/* Write one frame (length prefix + @n bytes). */
int testhub_write_frame(int fd, const void *p, size_t n);
/* Send queue.set {id: @id, name: @queue, attrs: {hook: @script}} (the
 * answer is the caller's to read). 0 or -1. */
int testhub_send_set_hook(int fd, uint64_t id, const char *queue, const char *script);
/* Read one frame within @timeout_ms and unpack it into @zone. 0, or -1 on
 * EOF / timeout / garbage. */
int testhub_read_frame(int fd, int timeout_ms, msgpack_zone *zone, msgpack_object *out);
/* True when the peer closed @fd within @timeout_ms (EOF or reset). */
bool testhub_closed(int fd, int timeout_ms);
/* A string field of a map ("" when absent), copied into @buf. */
const char *testhub_str(const msgpack_object *map, const char *key, char *buf, size_t size);

/* Also used by testcluster.c. The monotonic clock in ms; sleep @ms. */
uint64_t testhub_now_ms(void);
void testhub_sleep_ms(int ms);
/* A free loopback port not among @taken[0..n) (NULL, 0: any); 0 if none. */
uint16_t testhub_free_port(const uint16_t *taken, unsigned n);
/* Fork mqhubd --config @dir/config.lua, stdout and stderr appended to
 * @dir/mqhubd.log. Returns the pid, or -1 when fork failed. */
pid_t testhub_spawn_dir(const char *mqhubd, const char *dir);
/* Copy @dir/mqhubd.log to stderr under "---- <label><path>". */
void testhub_print_log(const char *dir, const char *label);
/* SIGTERM *@pid (> 0) and reap it within @timeout_ms: its exit status (128 +
 * signal when killed) with *@pid = 0, or -1 when it still runs. */
int testhub_term_wait(pid_t *pid, int timeout_ms);
/* A raw connection to 127.0.0.1:@port: fd or -1. */
int testhub_connect_port(uint16_t port);

#endif
