/* tcp.c: the TCP transport plugin. Clients connect, send length-prefixed
 * MessagePack requests (core/util/frame.h) and read responses framed the
 * same way.
 *
 * Start with on_connection() (one conn_t and one host session per client)
 * and on_read() → process(): every complete frame in the read buffer is
 * submitted to the host at once (pipelining); on_reply() writes each
 * response as it completes, in any order.
 *
 * Memory per idle connection is small: bytes are read into one shared
 * scratch buffer and only an incomplete frame's bytes are copied into the
 * connection's own buffer. Replies are appended to one output buffer with
 * at most one uv_write in flight, so replies completing together leave in
 * one write. Backpressure: when the reply bytes not yet written
 * pass high_water, or the requests in flight pass max_inflight, the
 * connection stops reading until they drain (below low_water, half of
 * max_inflight).
 *
 * Limits (docs/operations.md "Limits"): the host is told (session_writable)
 * when the unwritten output passes high_water and when it drains below
 * low_water, so pushes stop for a client that does not read; one that stays
 * above high_water for write_timeout seconds is closed. The bytes of
 * unfinished frames of all connections together stay within input_budget:
 * the connection that would pass it is closed. A connection holding part of
 * a frame for frame_timeout seconds, or (idle_timeout > 0) quiet for
 * idle_timeout seconds with nothing in flight, is closed; sweep() checks
 * once a second. At most max_connections (and never closer than
 * TCP_FD_RESERVE to the open-file limit, so accept() never meets EMFILE)
 * are open; a connection past it is accepted and closed at once. Every such
 * close is logged (log_limited).
 *
 * Closing: a frame above max_frame gets a FRAME_TOO_LARGE error frame; a
 * frame the host could not read gets its BAD_REQUEST reply (the host then
 * reports session_broken). Either way the connection writes what is queued,
 * then closes (conn_end). The host session is closed in the handle's close
 * callback, so no reply is ever delivered to freed memory; replies arriving
 * for a closing connection are dropped.
 *
 * TLS (when tls_cert is set): the bytes read go into the connection's TLS
 * engine (tls.h, OpenSSL on memory BIOs) and the plaintext it yields goes
 * through the same frame decoder (tls_drain); flush() seals the queued
 * replies into TLS records just before each write, so the byte counts of the
 * backpressure see the records that are really written. The host session is
 * opened once the handshake completes; a connection without a completed
 * handshake after tls_handshake_timeout seconds is closed, and failed
 * handshakes (plaintext clients, refused certificates) are logged at most
 * once a second (log_limited).
 *
 * Config (transport "tcp" { ... }): listen (MQHUB_DEFAULT_TCP_ADDRESS,
 * "127.0.0.1:6200"; port 0 picks a free port and logs it), backlog (1024),
 * high_water (8 MiB), max_inflight (4096); tls_cert, tls_key (PEM files),
 * tls_ca (PEM, CAs of client certificates), tls_client_certs ("none",
 * "optional", "required"; default "required" with tls_ca, else "none"),
 * tls_handshake_timeout (seconds, 10); write_timeout (60 s), frame_timeout
 * (30 s), idle_timeout (0: off), input_budget (256 MiB), max_connections
 * (10000). docs/operations.md lists them.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <msgpack.h>

#include "frame.h"
#include "listen.h"
#include "mqhub/plugin.h"
#include "mqhub/protocol.h"
#include "tls.h"

#define TCP_CHUNK (64 * 1024)
/* File descriptors left to the rest of the daemon (raft, data, other
 * transports) when the open-file limit caps max_connections. */
#define TCP_FD_RESERVE 64

typedef struct conn conn_t;

typedef struct tcp {
    const mqhub_host_api_t *api;
    mqhub_host_t *host;
    uv_loop_t *loop;
    uv_tcp_t server;
    conn_t *conns;
    size_t max_frame;
    size_t high_water, low_water;
    unsigned max_inflight;
    tls_ctx_t *tls;        /* NULL: plaintext */
    uint64_t handshake_ms; /* a TLS client must finish its handshake within */
    uint64_t write_ms, frame_ms, idle_ms; /* the timeouts; idle_ms 0: none */
    size_t input_budget;   /* bytes of unfinished frames, all connections */
    size_t input_bytes;    /* ...held now (the sum of every conn's cap) */
    unsigned max_conns, n_conns;
    uv_timer_t sweep;      /* once a second: the timeouts */
    uint64_t log_second;   /* log_limited(): the second of the last line */
    unsigned log_dropped;  /* lines not logged since */
    char scratch[TCP_CHUNK]; /* shared by every connection's reads */
} tcp_t;

struct conn {
    tcp_t *t;
    uv_tcp_t handle;
    uv_shutdown_t shutdown;
    tls_conn_t *tls;  /* NULL: plaintext */
    uv_timer_t timer; /* TLS: the handshake deadline */
    int handles;      /* handles not closed yet (handle, timer) */
    mqhub_session_t *session; /* TLS: NULL until the handshake completes */
    char *buf; /* bytes of an incomplete frame (or paused frames) */
    size_t len, cap;
    char *out;         /* replies not handed to libuv yet */
    size_t out_len, out_cap;
    struct wreq *writing; /* the one write in flight, or NULL */
    unsigned inflight; /* requests without a reply yet */
    bool paused;       /* reading stopped for backpressure */
    bool processing;   /* inside process(): replies must not re-enter it */
    bool ending;       /* shutting down after the queued writes */
    bool shut;         /* uv_shutdown requested: no more writes */
    bool closing;
    bool notified;     /* TLS: close_notify queued */
    bool blocked;      /* output above high_water (told the host) */
    uint64_t blocked_at, partial_at, active_at; /* uv_now(): since when */
    conn_t *prev, *next;
};

typedef struct wreq {
    uv_write_t req;
    conn_t *c;
    char *data; /* owned: freed in on_written */
    size_t len;
} wreq_t;

static void conn_resume(conn_t *c);
static void flush(conn_t *c);
static void peer_name(uv_tcp_t *h, char *out, size_t len);
static void log_limited(tcp_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- closing */

static void on_conn_closed(uv_handle_t *handle)
{
    conn_t *c = handle->data;
    tcp_t *t = c->t;

    if (--c->handles > 0)
        return;
    if (c->session != NULL)
        t->api->session_close(c->session);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (t->conns == c)
        t->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    t->input_bytes -= c->cap;
    t->n_conns--;
    free(c->buf);
    free(c->out);
    tls_conn_free(c->tls);
    free(c);
}

/* Closing without the orderly conn_end() (server stop, errors): still try
 * to tell a TLS client with close_notify, if the socket takes it at once. */
static void tls_goodbye(conn_t *c)
{
    char *data;
    size_t len;
    uv_buf_t b;

    if (c->notified || c->shut || c->writing != NULL || !tls_conn_established(c->tls))
        return;
    c->notified = true;
    tls_conn_close_notify(c->tls);
    if (tls_conn_take_out(c->tls, &data, &len) != 0 || data == NULL)
        return;
    b = uv_buf_init(data, (unsigned)len);
    uv_try_write((uv_stream_t *)&c->handle, &b, 1);
    free(data);
}

static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->tls != NULL) {
        tls_goodbye(c);
        uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    }
    uv_close((uv_handle_t *)&c->handle, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_close(req->data);
}

static size_t queued(const conn_t *c)
{
    return c->out_len + (c->writing != NULL ? c->writing->len : 0);
}

/* Tell the host when the output passes high_water (no more pushes) and
 * when it drains below low_water; sweep() closes a connection blocked for
 * write_timeout. */
static void track_blocked(conn_t *c)
{
    tcp_t *t = c->t;
    size_t q = queued(c);
    bool was = c->blocked;

    if (!c->blocked && q >= t->high_water) {
        c->blocked = true;
        c->blocked_at = uv_now(t->loop);
    } else if (c->blocked && q <= t->low_water) {
        c->blocked = false;
    }
    if (was != c->blocked && c->session != NULL && MQHUB_HOST_HAS(t->api, session_writable))
        t->api->session_writable(c->session, !c->blocked);
}

/* When ending and every reply is handed to libuv: shut down after the last
 * write, then close. TLS: close_notify goes out first, and the shutdown
 * waits until every record is written. */
static void maybe_shutdown(conn_t *c)
{
    if (!c->ending || c->shut || c->closing || c->out_len > 0)
        return;
    if (c->tls != NULL && !c->notified) {
        c->notified = true;
        tls_conn_close_notify(c->tls);
        flush(c);
    }
    if (c->tls != NULL && (c->writing != NULL || tls_conn_out_len(c->tls) > 0))
        return;
    c->shut = true;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->handle, on_shutdown) != 0)
        conn_close(c);
}

/* ---------------------------------------------------------------- writing */

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    conn_t *c = w->c;

    c->writing = NULL;
    free(w->data);
    free(w);
    if (status != 0) {
        conn_close(c);
        return;
    }
    flush(c);
    track_blocked(c);
    maybe_shutdown(c);
    conn_resume(c);
}

/* The bytes of the next write into *@data (the caller owns them; NULL when
 * none): the queued replies as they are, or sealed into TLS records along
 * with what the handshake has to say. 0, or -1 on failure. */
static int next_write(conn_t *c, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (c->tls == NULL) {
        if (c->out_len == 0)
            return 0;
        *data = c->out;
        *len = c->out_len;
        c->out = NULL;
        c->out_len = c->out_cap = 0;
        return 0;
    }
    if (c->out_len > 0 && tls_conn_established(c->tls)) {
        if (tls_conn_write(c->tls, c->out, c->out_len) != 0)
            return -1;
        free(c->out);
        c->out = NULL;
        c->out_len = c->out_cap = 0;
    }
    return tls_conn_take_out(c->tls, data, len);
}

/* Hand the pending output to libuv as one write; one write in flight at a
 * time, so replies completing meanwhile are coalesced into the next. */
static void flush(conn_t *c)
{
    wreq_t *w;
    uv_buf_t b;
    char *data;
    size_t len;

    if (c->writing != NULL || c->closing)
        return;
    if (next_write(c, &data, &len) != 0) {
        conn_close(c);
        return;
    }
    if (data == NULL)
        return;
    w = malloc(sizeof *w);
    if (w == NULL) {
        free(data);
        conn_close(c);
        return;
    }
    w->c = c;
    w->data = data;
    w->len = len;
    b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->handle, &b, 1, on_written) != 0) {
        free(w->data);
        free(w);
        conn_close(c);
        return;
    }
    c->writing = w;
}

/* Queue one frame holding @msgpack and start writing it. */
static void conn_write(conn_t *c, const char *msgpack, size_t len)
{
    size_t want = c->out_len + FRAME_HEADER + len;

    if (c->closing || c->shut)
        return;
    if (want > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        char *o;
        while (cap < want)
            cap *= 2;
        o = realloc(c->out, cap);
        if (o == NULL) {
            conn_close(c);
            return;
        }
        c->out = o;
        c->out_cap = cap;
    }
    frame_header(c->out + c->out_len, len);
    memcpy(c->out + c->out_len + FRAME_HEADER, msgpack, len);
    c->out_len = want;
    flush(c);
    track_blocked(c);
}

/* Stop reading, write what is queued, then close. */
static void conn_end(conn_t *c)
{
    if (c->ending || c->closing)
        return;
    c->ending = true;
    uv_read_stop((uv_stream_t *)&c->handle);
    flush(c);
    maybe_shutdown(c);
}

static void on_reply(void *arg, const char *msgpack, size_t len)
{
    conn_t *c = arg;
    tcp_t *t = c->t;

    c->inflight--;
    if (c->closing)
        return;
    conn_write(c, msgpack, len);
    if (!c->closing && t->api->session_broken(c->session))
        conn_end(c);
    if (!c->processing)
        conn_resume(c);
}

static void on_push(void *arg, const char *msgpack, size_t len)
{
    conn_write(arg, msgpack, len);
}

static void send_too_large(conn_t *c, size_t n)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char msg[160];

    snprintf(msg, sizeof msg, "a frame of %zu bytes is larger than max_frame (%zu bytes)", n,
             c->t->max_frame);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "ok", 2);
    msgpack_pack_false(&pk);
    msgpack_pack_str_with_body(&pk, "code", 4);
    msgpack_pack_str_with_body(&pk, "FRAME_TOO_LARGE", 15);
    msgpack_pack_str_with_body(&pk, "error", 5);
    msgpack_pack_str_with_body(&pk, msg, strlen(msg));
    conn_write(c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* ---------------------------------------------------------------- reading */

static bool over_limits(const conn_t *c)
{
    return c->inflight >= c->t->max_inflight || queued(c) >= c->t->high_water;
}

/* Submit every complete frame of @data while the limits allow; returns the
 * bytes consumed. */
static size_t process(conn_t *c, const char *data, size_t n)
{
    tcp_t *t = c->t;
    size_t off = 0, body;

    c->processing = true;
    while (!c->ending && !c->closing && !over_limits(c)) {
        int st = frame_next(data + off, n - off, t->max_frame, &body);
        if (st == FRAME_NEED_MORE)
            break;
        if (st == FRAME_TOO_LARGE) {
            t->api->metric_add(t->host, "frames_too_large", 1);
            send_too_large(c, body);
            conn_end(c);
            break;
        }
        c->inflight++;
        t->api->request(c->session, data + off + FRAME_HEADER, body, on_reply, c);
        off += FRAME_HEADER + body;
    }
    c->processing = false;
    return off;
}

/* Grow the connection's buffer to @want bytes, within input_budget. -1 when
 * out of memory or over the budget (logged: the caller closes). */
static int reserve(conn_t *c, size_t want)
{
    tcp_t *t = c->t;
    char peer[96];
    char *b;

    if (c->cap >= want)
        return 0;
    if (t->input_bytes - c->cap + want > t->input_budget) {
        peer_name(&c->handle, peer, sizeof peer);
        t->api->metric_add(t->host, "input_budget_closes", 1);
        log_limited(t, "closing %s: its unfinished frame of %zu bytes would pass "
                    "input_budget (%zu bytes held by all connections)", peer, want,
                    t->input_bytes);
        return -1;
    }
    b = realloc(c->buf, want);
    if (b == NULL)
        return -1;
    t->input_bytes += want - c->cap;
    c->buf = b;
    c->cap = want;
    return 0;
}

/* Keep the @rest unconsumed bytes at @data in the connection's buffer. */
static int keep(conn_t *c, const char *data, size_t rest)
{
    if (c->buf != NULL && data >= c->buf && data <= c->buf + c->cap) {
        memmove(c->buf, data, rest);
    } else if (rest > 0) {
        if (reserve(c, rest) != 0)
            return -1;
        memcpy(c->buf, data, rest);
    }
    c->len = rest;
    if (rest == 0)
        c->partial_at = 0;
    else if (c->partial_at == 0)
        c->partial_at = uv_now(c->t->loop);
    if (rest == 0 && c->cap > TCP_CHUNK) {
        free(c->buf);
        c->t->input_bytes -= c->cap;
        c->buf = NULL;
        c->cap = 0;
    }
    return 0;
}

static void pause_or_resume(conn_t *c)
{
    if (c->ending || c->closing)
        return;
    if (over_limits(c) && !c->paused) {
        c->paused = true;
        uv_read_stop((uv_stream_t *)&c->handle);
    }
}

/* Where the next plaintext bytes go: the shared scratch when no frame is
 * incomplete, else the connection's buffer after its bytes. -1 when out of
 * memory. */
static int read_room(conn_t *c, char **room, size_t *len)
{
    size_t body, want = c->len + TCP_CHUNK;

    if (c->len == 0) {
        *room = c->t->scratch;
        *len = sizeof c->t->scratch;
        return 0;
    }
    /* Room for the whole frame being read, when its header is in. */
    if (frame_next(c->buf, c->len, c->t->max_frame, &body) == FRAME_NEED_MORE &&
        c->len >= FRAME_HEADER && FRAME_HEADER + body > want)
        want = FRAME_HEADER + body;
    if (reserve(c, want) != 0)
        return -1;
    *room = c->buf + c->len;
    *len = c->cap - c->len;
    return 0;
}

/* @n plaintext bytes arrived at @room (from read_room): submit the complete
 * frames, keep the rest. */
static void received(conn_t *c, const char *room, size_t n)
{
    const char *data = room;
    size_t used;

    if (room != c->t->scratch) {
        c->len += n;
        data = c->buf;
        n = c->len;
    }
    used = process(c, data, n);
    if (!c->closing && keep(c, data + used, n - used) != 0)
        conn_close(c);
}

/* TLS reads ciphertext into the scratch: the engine copies it at once. */
static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = handle->data;
    char *room;
    size_t len;

    if (c->tls != NULL) {
        *buf = uv_buf_init(c->t->scratch, sizeof c->t->scratch);
        return;
    }
    if (read_room(c, &room, &len) != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(room, (unsigned)len);
}

static void tls_received(conn_t *c, const char *data, size_t n);

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = stream->data;

    if (nread < 0) {
        /* EOF: the client sent all it will; flush our replies, then close. */
        if (nread == UV_EOF)
            conn_end(c);
        else
            conn_close(c);
        return;
    }
    if (nread == 0 || c->closing)
        return;
    c->active_at = uv_now(c->t->loop);
    if (c->tls != NULL) {
        tls_received(c, buf->base, (size_t)nread);
        return;
    }
    received(c, buf->base, (size_t)nread);
    pause_or_resume(c);
}

/* ------------------------------------------------------------------- TLS */

/* A warning at most once a second (a port scan or a misconfigured client
 * fleet must not flood the log); the next line says how many were dropped. */
static void log_limited(tcp_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_limited(tcp_t *t, const char *fmt, ...)
{
    uint64_t second = uv_now(t->loop) / 1000;
    char line[512];
    va_list ap;

    if (second == t->log_second && t->log_second != 0) {
        t->log_dropped++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (t->log_dropped > 0)
        t->api->log(t->host, MQHUB_LOG_WARN, "%s (%u similar lines dropped)", line,
                    t->log_dropped);
    else
        t->api->log(t->host, MQHUB_LOG_WARN, "%s", line);
    t->log_second = second;
    t->log_dropped = 0;
}

/* The handshake is done: the connection becomes a session. */
static void tls_established(conn_t *c)
{
    tcp_t *t = c->t;
    char peer[96], subject[256];

    uv_timer_stop(&c->timer);
    peer_name(&c->handle, peer, sizeof peer);
    tls_conn_peer_subject(c->tls, subject, sizeof subject);
    t->api->log(t->host, MQHUB_LOG_DEBUG, "%s: %s%s%s", peer, tls_conn_version(c->tls),
                subject[0] ? ", client certificate " : "", subject);
    c->session = t->api->session_open(t->host, peer, on_push, c);
    if (c->session == NULL)
        conn_close(c);
}

/* A refused handshake or a broken record: send the alert OpenSSL wrote,
 * then close. */
static void tls_failed(conn_t *c)
{
    tcp_t *t = c->t;
    char peer[96];

    peer_name(&c->handle, peer, sizeof peer);
    t->api->metric_add(t->host, "tls_failures", 1);
    log_limited(t, "TLS from %s refused: %s", peer, tls_conn_error(c->tls));
    conn_end(c);
}

/* Decrypt what the TLS engine holds into the frame decoder while the limits
 * allow; send what the handshake has to say. */
static void tls_drain(conn_t *c)
{
    char *room;
    size_t len;
    ssize_t n;

    while (!c->ending && !c->closing && !over_limits(c)) {
        if (read_room(c, &room, &len) != 0) {
            conn_close(c);
            return;
        }
        n = tls_conn_read(c->tls, room, len);
        if (c->session == NULL && tls_conn_established(c->tls))
            tls_established(c);
        if (n == TLS_FAILED) {
            tls_failed(c);
            return;
        }
        if (n == TLS_CLOSED)
            conn_end(c);
        if (n <= 0 || c->closing)
            break;
        received(c, room, (size_t)n);
    }
    flush(c);
    pause_or_resume(c);
}

static void tls_received(conn_t *c, const char *data, size_t n)
{
    if (tls_conn_feed(c->tls, data, n) != 0) {
        conn_close(c);
        return;
    }
    tls_drain(c);
}

static void on_handshake_timeout(uv_timer_t *timer)
{
    conn_t *c = timer->data;
    char peer[96];

    peer_name(&c->handle, peer, sizeof peer);
    c->t->api->metric_add(c->t->host, "tls_failures", 1);
    log_limited(c->t, "TLS from %s refused: no handshake within %llu s", peer,
                (unsigned long long)(c->t->handshake_ms / 1000));
    conn_close(c);
}

/* Continue after backpressure: process buffered frames, then read again. */
static void conn_resume(conn_t *c)
{
    tcp_t *t = c->t;
    size_t used;

    if (!c->paused || c->ending || c->closing || c->inflight > t->max_inflight / 2 ||
        queued(c) > t->low_water)
        return;
    c->paused = false;
    if (c->len > 0) {
        used = process(c, c->buf, c->len);
        if (!c->closing && keep(c, c->buf + used, c->len - used) != 0) {
            conn_close(c);
            return;
        }
    }
    if (c->tls != NULL && !c->closing && !c->ending)
        tls_drain(c); /* records read before the pause */
    if (c->closing || c->ending || c->paused)
        return;
    if (over_limits(c))
        pause_or_resume(c);
    else if (uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read) != 0)
        conn_close(c);
}

/* --------------------------------------------------------------- timeouts */

/* Why @c is overdue at @now, or NULL. */
static const char *overdue(const conn_t *c, uint64_t now, uint64_t *secs)
{
    const tcp_t *t = c->t;

    if (c->blocked && now - c->blocked_at >= t->write_ms) {
        *secs = t->write_ms / 1000;
        return "does not read its replies (output above high_water for write_timeout";
    }
    if (c->partial_at != 0 && now - c->partial_at >= t->frame_ms) {
        *secs = t->frame_ms / 1000;
        return "left a frame unfinished (frame_timeout";
    }
    if (t->idle_ms > 0 && c->inflight == 0 && queued(c) == 0 &&
        now - c->active_at >= t->idle_ms) {
        *secs = t->idle_ms / 1000;
        return "was idle (idle_timeout";
    }
    return NULL;
}

/* Once a second: close the connections past a timeout. */
static void sweep(uv_timer_t *timer)
{
    tcp_t *t = timer->data;
    uint64_t now = uv_now(t->loop), secs;
    const char *why;
    char peer[96];

    for (conn_t *c = t->conns; c != NULL; c = c->next) {
        if (c->closing || (why = overdue(c, now, &secs)) == NULL)
            continue;
        peer_name(&c->handle, peer, sizeof peer);
        t->api->metric_add(t->host, "timeout_closes", 1);
        log_limited(t, "closing %s: it %s %llu s)", peer, why, (unsigned long long)secs);
        conn_close(c);
    }
}

/* -------------------------------------------------------------- accepting */

static void peer_name(uv_tcp_t *h, char *out, size_t len)
{
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    char ip[64] = "?";
    int port = 0;

    if (uv_tcp_getpeername(h, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    snprintf(out, len, "%s:%d", ip, port);
}

static void on_connection(uv_stream_t *server, int status)
{
    tcp_t *t = server->data;
    conn_t *c;
    char peer[96];

    if (status != 0) {
        log_limited(t, "accept: %s (%u connections open)", uv_strerror(status), t->n_conns);
        return;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->t = t;
    t->n_conns++;
    c->active_at = uv_now(t->loop);
    if (t->tls != NULL && (c->tls = tls_conn_new(t->tls)) == NULL) {
        free(c);
        return;
    }
    uv_tcp_init(t->loop, &c->handle);
    c->handle.data = c;
    c->handles = 1;
    if (c->tls != NULL) {
        uv_timer_init(t->loop, &c->timer);
        c->timer.data = c;
        c->handles = 2;
    }
    c->next = t->conns;
    if (t->conns != NULL)
        t->conns->prev = c;
    t->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->handle) != 0) {
        conn_close(c);
        return;
    }
    if (t->n_conns > t->max_conns) {
        peer_name(&c->handle, peer, sizeof peer);
        t->api->metric_add(t->host, "connections_refused", 1);
        log_limited(t, "refusing %s: %u connections open (max_connections %u)", peer,
                    t->n_conns - 1, t->max_conns);
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->handle, 1);
    if (c->tls != NULL)
        uv_timer_start(&c->timer, on_handshake_timeout, t->handshake_ms, 0);
    else {
        peer_name(&c->handle, peer, sizeof peer);
        c->session = t->api->session_open(t->host, peer, on_push, c);
    }
    if ((c->tls == NULL && c->session == NULL) ||
        uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read) != 0)
        conn_close(c);
}

/* -------------------------------------------------------------- lifecycle */

static void on_failed_server_closed(uv_handle_t *handle)
{
    tcp_t *t = handle->data;

    tls_ctx_free(t->tls);
    free(t);
}

static void log_bound(tcp_t *t, const char *listen)
{
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    size_t n = strlen(listen);
    bool any_port = n >= 2 && strcmp(listen + n - 2, ":0") == 0;
    char bound[INET6_ADDRSTRLEN + 8];

    if (uv_tcp_getsockname(&t->server, (struct sockaddr *)&ss, &sl) != 0)
        return;
    listen_name(&ss, bound, sizeof bound);
    /* With port 0 nobody else knows the port: say it at info level. */
    t->api->log(t->host, any_port ? MQHUB_LOG_INFO : MQHUB_LOG_DEBUG, "listening on %s%s",
                bound, t->tls ? " (TLS)" : "");
}

/* The integer @key of the config into *@out (@def when absent); on a value
 * that is not an integer, a sentence in @errmsg (the host logged it too). */
static int config_int(const mqhub_host_api_t *api, mqhub_host_t *host, const char *key,
                      int64_t def, int64_t *out, char *errmsg, size_t errlen)
{
    int rc = api->config_int(host, key, def, out);

    if (rc != 0)
        snprintf(errmsg, errlen, "%s must be an integer", key);
    return rc;
}

/* tls_client_certs as an enum: -1 when it is none of the words. */
static int client_certs(const char *s, const char *ca)
{
    if (s == NULL)
        return ca != NULL ? TLS_CERTS_REQUIRED : TLS_CERTS_NONE;
    if (strcmp(s, "none") == 0)
        return TLS_CERTS_NONE;
    if (strcmp(s, "optional") == 0)
        return TLS_CERTS_OPTIONAL;
    return strcmp(s, "required") == 0 ? TLS_CERTS_REQUIRED : -1;
}

/* The tls_* keys: *@out stays NULL without tls_cert. 0, or -1 with a
 * sentence in @errmsg. */
static int tls_setup(const mqhub_host_api_t *api, mqhub_host_t *host, tls_ctx_t **out,
                     int64_t *handshake_s, char *errmsg, size_t errlen)
{
    tls_config_t cfg = {
        .cert_file = api->config_string(host, "tls_cert"),
        .key_file = api->config_string(host, "tls_key"),
        .ca_file = api->config_string(host, "tls_ca"),
    };
    int certs = client_certs(api->config_string(host, "tls_client_certs"), cfg.ca_file);

    *out = NULL;
    if (config_int(api, host, "tls_handshake_timeout", 10, handshake_s, errmsg, errlen) != 0)
        return -1;
    if (*handshake_s < 1 || *handshake_s > 3600) {
        snprintf(errmsg, errlen, "tls_handshake_timeout must be 1-3600 seconds");
        return -1;
    }
    if (cfg.cert_file == NULL && cfg.key_file == NULL && cfg.ca_file == NULL)
        return 0;
    if (cfg.cert_file == NULL || cfg.key_file == NULL) {
        snprintf(errmsg, errlen, "TLS needs both tls_cert and tls_key");
        return -1;
    }
    if (certs < 0) {
        snprintf(errmsg, errlen, "tls_client_certs must be \"none\", \"optional\" or "
                 "\"required\"");
        return -1;
    }
    cfg.client_certs = (enum tls_client_certs)certs;
    return tls_ctx_new(out, &cfg, errmsg, errlen);
}

/* The limits of the "Limits" table (docs/operations.md) into @t. 0, or -1
 * with a sentence in @errmsg. */
static int limits_setup(tcp_t *t, char *errmsg, size_t errlen)
{
    const mqhub_host_api_t *api = t->api;
    int64_t wt, ft, it, ib, mc;
    struct rlimit rl;

    if (config_int(api, t->host, "write_timeout", 60, &wt, errmsg, errlen) != 0 ||
        config_int(api, t->host, "frame_timeout", 30, &ft, errmsg, errlen) != 0 ||
        config_int(api, t->host, "idle_timeout", 0, &it, errmsg, errlen) != 0 ||
        config_int(api, t->host, "input_budget", 256 << 20, &ib, errmsg, errlen) != 0 ||
        config_int(api, t->host, "max_connections", 10000, &mc, errmsg, errlen) != 0)
        return -1;
    if (wt < 1 || wt > 86400 || ft < 1 || ft > 86400 || it < 0 || it > 86400 ||
        ib < (int64_t)t->max_frame + 4 || mc < 1 || mc > 1000000) {
        snprintf(errmsg, errlen, "write_timeout and frame_timeout (1-86400 s), idle_timeout "
                 "(0-86400 s), input_budget (>= max_frame + 4) and max_connections "
                 "(1-1000000) must be in range");
        return -1;
    }
    t->write_ms = (uint64_t)wt * 1000;
    t->frame_ms = (uint64_t)ft * 1000;
    t->idle_ms = (uint64_t)it * 1000;
    t->input_budget = (size_t)ib;
    t->max_conns = (unsigned)mc;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)mc + 2 * TCP_FD_RESERVE) {
        t->max_conns = rl.rlim_cur > 2 * TCP_FD_RESERVE ? (unsigned)rl.rlim_cur - TCP_FD_RESERVE
                                                         : (unsigned)rl.rlim_cur / 2;
        api->log(t->host, MQHUB_LOG_WARN, "max_connections %u (the open-file limit is %llu)",
                 t->max_conns, (unsigned long long)rl.rlim_cur);
    }
    return 0;
}

/* Every counter of this plugin, exported at 0 from the start (a Prometheus
 * series that appears only at its first event hides rate() and alerts). */
static void counters_declare(const mqhub_host_api_t *api, mqhub_host_t *host)
{
    static const char *const names[] = {
        "connections_refused", "frames_too_large", "input_budget_closes", "timeout_closes",
        "tls_failures"};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        api->metric_add(host, names[i], 0);
}

static int tcp_init(const mqhub_host_api_t *api, mqhub_host_t *host, void **state,
                    char *errmsg, size_t errlen)
{
    const char *listen = api->config_string(host, "listen");
    struct sockaddr_storage ss;
    int64_t backlog, hw, mi, handshake_s;
    tls_ctx_t *tls;
    tcp_t *t;
    int rc;

    counters_declare(api, host);
    if (listen == NULL)
        listen = MQHUB_DEFAULT_TCP_ADDRESS;
    if (listen_parse(listen, &ss) != 0) {
        snprintf(errmsg, errlen, "listen \"%s\" is not host:port", listen);
        return -1;
    }
    if (config_int(api, host, "backlog", 1024, &backlog, errmsg, errlen) != 0 ||
        config_int(api, host, "high_water", 8 << 20, &hw, errmsg, errlen) != 0 ||
        config_int(api, host, "max_inflight", 4096, &mi, errmsg, errlen) != 0)
        return -1;
    if (backlog < 1 || backlog > 65535 || hw < 4096 || mi < 1 || mi > 1000000) {
        snprintf(errmsg, errlen, "backlog (1-65535), high_water (>= 4096) and max_inflight "
                 "(1-1000000) must be in range");
        return -1;
    }
    if (tls_setup(api, host, &tls, &handshake_s, errmsg, errlen) != 0)
        return -1;
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        tls_ctx_free(tls);
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    t->tls = tls;
    t->handshake_ms = (uint64_t)handshake_s * 1000;
    t->api = api;
    t->host = host;
    t->loop = api->loop(host);
    t->max_frame = api->max_frame(host) ? api->max_frame(host) : MQHUB_DEFAULT_MAX_FRAME;
    t->high_water = (size_t)hw;
    t->low_water = (size_t)hw / 4;
    t->max_inflight = (unsigned)mi;
    if (limits_setup(t, errmsg, errlen) != 0) {
        tls_ctx_free(tls);
        free(t);
        return -1;
    }
    uv_tcp_init(t->loop, &t->server);
    t->server.data = t;
    rc = uv_tcp_bind(&t->server, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&t->server, (int)backlog, on_connection);
    if (rc != 0) {
        snprintf(errmsg, errlen, "listen on %s: %s", listen, uv_strerror(rc));
        uv_close((uv_handle_t *)&t->server, on_failed_server_closed);
        return -1;
    }
    log_bound(t, listen);
    uv_timer_init(t->loop, &t->sweep);
    t->sweep.data = t;
    uv_timer_start(&t->sweep, sweep, 1000, 1000);
    *state = t;
    return 0;
}

static void tcp_stop(void *state)
{
    tcp_t *t = state;

    uv_close((uv_handle_t *)&t->server, NULL);
    uv_close((uv_handle_t *)&t->sweep, NULL);
    for (conn_t *c = t->conns; c != NULL; c = c->next)
        conn_close(c);
}

static void tcp_fini(void *state)
{
    tcp_t *t = state;

    tls_ctx_free(t->tls);
    free(t);
}

static const mqhub_plugin_t tcp_plugin = {
    .abi_version = MQHUB_PLUGIN_ABI,
    .size = sizeof(mqhub_plugin_t),
    .name = "tcp",
    .init = tcp_init,
    .stop = tcp_stop,
    .fini = tcp_fini,
};

MQHUB_PLUGIN_EXPORT const mqhub_plugin_t *mqhub_plugin_entry(void)
{
    return &tcp_plugin;
}
