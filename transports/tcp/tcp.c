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
 * Closing: a frame above max_frame gets a FRAME_TOO_LARGE error frame; a
 * frame the host could not read gets its BAD_REQUEST reply (the host then
 * reports session_broken). Either way the connection writes what is queued,
 * then closes (conn_end). The host session is closed in the handle's close
 * callback, so no reply is ever delivered to freed memory; replies arriving
 * for a closing connection are dropped.
 *
 * Config (transport "tcp" { ... }): listen (MQHUB_DEFAULT_TCP_ADDRESS,
 * "127.0.0.1:6200"; port 0 picks a free port and logs it), backlog (1024),
 * high_water (8 MiB), max_inflight (4096).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "frame.h"
#include "mqhub/plugin.h"
#include "mqhub/protocol.h"

#define TCP_CHUNK (64 * 1024)

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
    char scratch[TCP_CHUNK]; /* shared by every connection's reads */
} tcp_t;

struct conn {
    tcp_t *t;
    uv_tcp_t handle;
    uv_shutdown_t shutdown;
    mqhub_session_t *session;
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
    conn_t *prev, *next;
};

typedef struct wreq {
    uv_write_t req;
    conn_t *c;
    char *data; /* owned: freed in on_written */
    size_t len;
} wreq_t;

static void conn_resume(conn_t *c);

/* ---------------------------------------------------------------- closing */

static void on_conn_closed(uv_handle_t *handle)
{
    conn_t *c = handle->data;
    tcp_t *t = c->t;

    if (c->session != NULL)
        t->api->session_close(c->session);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (t->conns == c)
        t->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->buf);
    free(c->out);
    free(c);
}

static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
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

/* When ending and every reply is handed to libuv: shut down after the last
 * write, then close. */
static void maybe_shutdown(conn_t *c)
{
    if (!c->ending || c->shut || c->closing || c->out_len > 0)
        return;
    c->shut = true;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->handle, on_shutdown) != 0)
        conn_close(c);
}

/* ---------------------------------------------------------------- writing */

static void flush(conn_t *c);

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
    maybe_shutdown(c);
    conn_resume(c);
}

/* Hand the pending output to libuv as one write; one write in flight at a
 * time, so replies completing meanwhile are coalesced into the next. */
static void flush(conn_t *c)
{
    wreq_t *w;
    uv_buf_t b;

    if (c->writing != NULL || c->out_len == 0 || c->closing)
        return;
    w = malloc(sizeof *w);
    if (w == NULL) {
        conn_close(c);
        return;
    }
    w->c = c;
    w->data = c->out;
    w->len = c->out_len;
    c->out = NULL;
    c->out_len = c->out_cap = 0;
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

static int reserve(conn_t *c, size_t want)
{
    char *b;

    if (c->cap >= want)
        return 0;
    b = realloc(c->buf, want);
    if (b == NULL)
        return -1;
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
    if (rest == 0 && c->cap > TCP_CHUNK) {
        free(c->buf);
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

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = handle->data;
    size_t body, want = c->len + TCP_CHUNK;

    if (c->len == 0) {
        *buf = uv_buf_init(c->t->scratch, sizeof c->t->scratch);
        return;
    }
    /* Room for the whole frame being read, when its header is in. */
    if (frame_next(c->buf, c->len, c->t->max_frame, &body) == FRAME_NEED_MORE &&
        c->len >= FRAME_HEADER && FRAME_HEADER + body > want)
        want = FRAME_HEADER + body;
    if (reserve(c, want) != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = stream->data;
    const char *data;
    size_t n, used;

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
    if (buf->base == c->t->scratch) {
        data = c->t->scratch;
        n = (size_t)nread;
    } else {
        c->len += (size_t)nread;
        data = c->buf;
        n = c->len;
    }
    used = process(c, data, n);
    if (!c->closing && keep(c, data + used, n - used) != 0)
        conn_close(c);
    pause_or_resume(c);
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
    if (c->closing || c->ending)
        return;
    if (over_limits(c))
        pause_or_resume(c);
    else if (uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read) != 0)
        conn_close(c);
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
        t->api->log(t->host, MQHUB_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->t = t;
    uv_tcp_init(t->loop, &c->handle);
    c->handle.data = c;
    c->next = t->conns;
    if (t->conns != NULL)
        t->conns->prev = c;
    t->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->handle) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->handle, 1);
    peer_name(&c->handle, peer, sizeof peer);
    c->session = t->api->session_open(t->host, peer, on_push, c);
    if (c->session == NULL ||
        uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read) != 0)
        conn_close(c);
}

/* -------------------------------------------------------------- lifecycle */

/* "host:port" or "[v6]:port" → a socket address. */
static int parse_listen(const char *s, struct sockaddr_storage *ss)
{
    const char *colon = strrchr(s, ':');
    char host[128];
    size_t hl;
    int port;

    if (colon == NULL || sscanf(colon + 1, "%d", &port) != 1 || port < 0 || port > 65535)
        return -1;
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof host)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0 ? 0 : -1;
}

static void on_failed_server_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void log_bound(tcp_t *t, const char *listen)
{
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    size_t n = strlen(listen);
    bool any_port = n >= 2 && strcmp(listen + n - 2, ":0") == 0;
    char ip[64];
    int port;

    if (uv_tcp_getsockname(&t->server, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    /* With port 0 nobody else knows the port: say it at info level. */
    t->api->log(t->host, any_port ? MQHUB_LOG_INFO : MQHUB_LOG_DEBUG,
                "listening on %s%s%s:%d", ss.ss_family == AF_INET6 ? "[" : "", ip,
                ss.ss_family == AF_INET6 ? "]" : "", port);
}

static int tcp_init(const mqhub_host_api_t *api, mqhub_host_t *host, void **state,
                    char *errmsg, size_t errlen)
{
    const char *listen = api->config_string(host, "listen");
    struct sockaddr_storage ss;
    int64_t backlog, hw, mi;
    tcp_t *t;
    int rc;

    if (listen == NULL)
        listen = MQHUB_DEFAULT_TCP_ADDRESS;
    if (parse_listen(listen, &ss) != 0) {
        snprintf(errmsg, errlen, "listen \"%s\" is not host:port", listen);
        return -1;
    }
    backlog = api->config_int(host, "backlog", 1024);
    hw = api->config_int(host, "high_water", 8 << 20);
    mi = api->config_int(host, "max_inflight", 4096);
    if (backlog < 1 || backlog > 65535 || hw < 4096 || mi < 1 || mi > 1000000) {
        snprintf(errmsg, errlen, "backlog (1-65535), high_water (>= 4096) and max_inflight "
                 "(1-1000000) must be in range");
        return -1;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    t->api = api;
    t->host = host;
    t->loop = api->loop(host);
    t->max_frame = api->max_frame(host) ? api->max_frame(host) : MQHUB_DEFAULT_MAX_FRAME;
    t->high_water = (size_t)hw;
    t->low_water = (size_t)hw / 4;
    t->max_inflight = (unsigned)mi;
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
    *state = t;
    return 0;
}

static void tcp_stop(void *state)
{
    tcp_t *t = state;

    uv_close((uv_handle_t *)&t->server, NULL);
    for (conn_t *c = t->conns; c != NULL; c = c->next)
        conn_close(c);
}

static void tcp_fini(void *state)
{
    free(state);
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
