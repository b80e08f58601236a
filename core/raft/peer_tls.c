/* peer_tls.c: TLS for raft peer connections — a tunnel per connection.
 *
 * raft_uv reads and writes a plain uv_stream_t, so TLS cannot sit inside
 * raft: each tunnel owns the peer's TCP socket (ciphertext) and one end of
 * a socketpair (`outer`, plaintext), and pumps bytes between them through
 * the memory-BIO engine of core/util/tls.c. The socketpair's other end is a
 * uv_pipe_t that peer.c runs its HMAC handshake on and then gives raft:
 *
 *   raft <-> inner pipe ==socketpair== outer pipe <-> TLS <-> TCP <-> peer
 *
 * TLS comes first, so the HMAC handshake and everything after it travel
 * encrypted; peer.c also mixes this session's exporter value
 * (peer_tunnel_binding) into the proofs, so a proof is only good inside the
 * TLS session it was made in (docs/security.md "Peers").
 *
 * Backpressure: a direction stops reading its source while the stream it
 * writes to has more than HIGH_WATER bytes queued in libuv, and resumes
 * below LOW_WATER; the kernel buffers of the socketpair and of TCP do the
 * rest. The outer end is read only once the TLS handshake is done, so
 * plaintext written early waits in the socketpair.
 *
 * A tunnel ends on the first error or end of file on either side: both its
 * handles close, which the other side of the pipe sees as an end of file.
 * An end of file from raft's side first lets queued ciphertext go out.
 *
 * Start at peer_tunnel_start(); bytes flow in on_tcp_read() (peer to raft)
 * and on_outer_read() (raft to peer).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <raft.h>

#include "log.h"
#include "mqhub/errors.h"
#include "peer_tls.h"
#include "tls.h"

#define CHUNK (64 * 1024)
#define HIGH_WATER (256 * 1024)
#define LOW_WATER (64 * 1024)
/* The largest plaintext of one TLS record. */
#define RECORD_MAX (16 * 1024)
#define BINDING_LABEL "EXPORTER-mqhub-peer-v1"

struct peer_tls {
    uv_loop_t *loop;
    tls_ctx_t *ctx;
    peer_tunnel_t *tunnels;
    void (*closed_cb)(void *data); /* set by peer_tls_close */
    void *closed_data;
};

struct peer_tunnel {
    peer_tls_t *pt;
    peer_tunnel_t *prev, *next;    /* pt->tunnels */
    tls_conn_t *tc;
    uv_tcp_t *tcp;                 /* to the peer: ciphertext */
    uv_pipe_t outer;               /* to raft's pipe: plaintext */
    unsigned open;                 /* handles not closed yet */
    unsigned tcp_writes;           /* uv_write requests on tcp not completed */
    bool established, closing, draining;
    bool tcp_paused, outer_paused; /* reading stopped by backpressure */
    void *owner;
    peer_tunnel_down_cb down_cb;
    char remote[PEER_ADDRESS_MAX + 40];
    char in[CHUNK];                /* one read from either handle, used at once */
};

typedef struct tunnel_write {
    uv_write_t req;
    char *data;
} tunnel_write_t;

/* ---- the end of a tunnel ---------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    peer_tunnel_t *tn = h->data;
    peer_tls_t *pt = tn->pt;

    if (--tn->open > 0)
        return;
    if (tn->prev)
        tn->prev->next = tn->next;
    else
        pt->tunnels = tn->next;
    if (tn->next)
        tn->next->prev = tn->prev;
    tls_conn_free(tn->tc);
    raft_free(tn->tcp);
    free(tn);
    if (!pt->tunnels && pt->closed_cb)
        pt->closed_cb(pt->closed_data);
}

static void tunnel_close(peer_tunnel_t *tn)
{
    if (tn->closing)
        return;
    tn->closing = true;
    tn->owner = NULL;
    uv_close((uv_handle_t *)tn->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&tn->outer, on_handle_closed);
}

/* The tunnel failed: its owner hears why, or, once raft has the stream, a
 * failure of TLS itself is logged (a dropped connection is not: raft
 * reconnects, as with plain TCP). */
__attribute__((format(printf, 3, 4))) static void tunnel_fail(peer_tunnel_t *tn, bool tls,
                                                              const char *fmt, ...)
{
    peer_tunnel_down_cb cb = tn->down_cb;
    void *owner = tn->owner;
    char why[320];
    va_list ap;

    if (tn->closing)
        return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    tn->owner = NULL;
    if (owner)
        cb(owner, why);
    else if (tls)
        log_warn("peer", "peer connection %s closed: %s", tn->remote, why);
    tunnel_close(tn);
}

/* ---- writing ----------------------------------------------------------- */

static void resume(uv_stream_t *s, bool *paused, uv_read_cb cb);
static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_outer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_tcp_written(uv_write_t *req, int status)
{
    tunnel_write_t *w = (tunnel_write_t *)req;
    peer_tunnel_t *tn = req->handle->data;

    free(w->data);
    free(w);
    tn->tcp_writes--;
    if (tn->closing)
        return;
    if (status < 0)
        tunnel_fail(tn, false, "write: %s", uv_strerror(status));
    else if (tn->draining && tn->tcp_writes == 0)
        tunnel_close(tn);
    else if (uv_stream_get_write_queue_size((uv_stream_t *)tn->tcp) < LOW_WATER)
        resume((uv_stream_t *)&tn->outer, &tn->outer_paused, on_outer_read);
}

static void on_outer_written(uv_write_t *req, int status)
{
    tunnel_write_t *w = (tunnel_write_t *)req;
    peer_tunnel_t *tn = req->handle->data;

    free(w->data);
    free(w);
    if (tn->closing)
        return;
    if (status < 0) /* raft's end is gone */
        tunnel_close(tn);
    else if (uv_stream_get_write_queue_size((uv_stream_t *)&tn->outer) < LOW_WATER)
        resume((uv_stream_t *)tn->tcp, &tn->tcp_paused, on_tcp_read);
}

/* Write @len bytes of @data (malloc'ed, taken) to @to. 0 or -1. */
static int send_to(peer_tunnel_t *tn, uv_stream_t *to, char *data, size_t len)
{
    tunnel_write_t *w = malloc(sizeof *w);
    uv_buf_t buf = uv_buf_init(data, (unsigned)len);
    bool tcp = to == (uv_stream_t *)tn->tcp;

    if (!w || uv_write(&w->req, to, &buf, 1, tcp ? on_tcp_written : on_outer_written) != 0) {
        free(w);
        free(data);
        return -1;
    }
    w->data = data;
    tn->tcp_writes += tcp;
    return 0;
}

/* Send the engine's waiting ciphertext to the peer. 0 or -1. */
static int flush_out(peer_tunnel_t *tn)
{
    char *data;
    size_t len;

    if (tls_conn_take_out(tn->tc, &data, &len) != 0)
        return -1;
    return data ? send_to(tn, (uv_stream_t *)tn->tcp, data, len) : 0;
}

/* ---- reading ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    peer_tunnel_t *tn = h->data;
    *buf = uv_buf_init(tn->in, sizeof tn->in);
}

static void resume(uv_stream_t *s, bool *paused, uv_read_cb cb)
{
    if (!*paused)
        return;
    *paused = false;
    uv_read_start(s, on_alloc, cb);
}

/* Stop reading @s while @to has more than HIGH_WATER bytes queued. */
static void maybe_pause(uv_stream_t *s, bool *paused, uv_stream_t *to)
{
    if (!*paused && uv_stream_get_write_queue_size(to) > HIGH_WATER) {
        *paused = true;
        uv_read_stop(s);
    }
}

/* Decrypt what the engine holds and write it to raft's side, up to CHUNK
 * bytes per write. TLS_AGAIN when all is done, or why it stopped. */
static ssize_t decrypt_all(peer_tunnel_t *tn)
{
    for (;;) {
        char *buf = malloc(CHUNK);
        size_t len = 0;
        ssize_t n = TLS_AGAIN;

        if (!buf)
            return TLS_FAILED;
        while (len + RECORD_MAX <= CHUNK && (n = tls_conn_read(tn->tc, buf + len,
                                                              CHUNK - len)) > 0)
            len += (size_t)n;
        if (len == 0)
            free(buf);
        else if (send_to(tn, (uv_stream_t *)&tn->outer, buf, len) != 0)
            return TLS_CLOSED;
        if (n <= 0)
            return n;
    }
}

/* The handshake just completed: plaintext from raft's side may flow. */
static void established(peer_tunnel_t *tn)
{
    tn->established = true;
    if (uv_read_start((uv_stream_t *)&tn->outer, on_alloc, on_outer_read) != 0)
        tunnel_fail(tn, false, "cannot read the socketpair");
}

/* Drive the engine after bytes came in (or to start a client's handshake). */
static void pump_in(peer_tunnel_t *tn)
{
    ssize_t n = decrypt_all(tn);

    if (flush_out(tn) != 0)
        tunnel_fail(tn, false, "out of memory");
    else if (n == TLS_FAILED)
        tunnel_fail(tn, true, "TLS: %s", tls_conn_error(tn->tc)[0] ? tls_conn_error(tn->tc)
                                                                   : "out of memory");
    else if (n == TLS_CLOSED)
        tunnel_fail(tn, false, "closed");
    else if (!tn->established && tls_conn_established(tn->tc))
        established(tn);
    if (!tn->closing)
        maybe_pause((uv_stream_t *)tn->tcp, &tn->tcp_paused, (uv_stream_t *)&tn->outer);
}

static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    peer_tunnel_t *tn = s->data;

    if (n == 0 || tn->closing)
        return;
    if (n < 0)
        tunnel_fail(tn, false, "%s%s", n == UV_EOF ? "closed" : uv_strerror((int)n),
                    tn->established ? "" : " during the TLS handshake (its CA does not "
                                           "know our certificate, or it has no "
                                           "node.peer_tls_*?)");
    else if (tls_conn_feed(tn->tc, buf->base, (size_t)n) != 0)
        tunnel_fail(tn, false, "out of memory");
    else
        pump_in(tn);
}

static void on_outer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    peer_tunnel_t *tn = s->data;

    if (n == 0 || tn->closing)
        return;
    if (n < 0) { /* raft or the handshake closed its end: flush, then close */
        uv_read_stop(s);
        tn->draining = true;
        if (tn->tcp_writes == 0)
            tunnel_close(tn);
        return;
    }
    if (tls_conn_write(tn->tc, buf->base, (size_t)n) != 0)
        tunnel_fail(tn, true, "TLS: %s", tls_conn_error(tn->tc));
    else if (flush_out(tn) != 0)
        tunnel_fail(tn, false, "out of memory");
    else
        maybe_pause(s, &tn->outer_paused, (uv_stream_t *)tn->tcp);
}

/* ---- the API ----------------------------------------------------------- */

int peer_tls_new(peer_tls_t **out, uv_loop_t *loop, const peer_tls_files_t *files,
                 char *errmsg, size_t errlen)
{
    tls_config_t cfg = {.cert_file = files->cert, .key_file = files->key,
                        .ca_file = files->ca, .client_certs = TLS_CERTS_REQUIRED,
                        .keys = "node.peer_tls_"};
    peer_tls_t *pt = calloc(1, sizeof *pt);

    if (!pt) {
        snprintf(errmsg, errlen, "out of memory");
        return MQHUB_EINTERNAL;
    }
    if (tls_ctx_new(&pt->ctx, &cfg, errmsg, errlen) != 0) {
        free(pt);
        return MQHUB_EBAD_REQUEST;
    }
    pt->loop = loop;
    *out = pt;
    return 0;
}

void peer_tls_close(peer_tls_t *pt, void (*cb)(void *data), void *data)
{
    pt->closed_cb = cb;
    pt->closed_data = data;
    for (peer_tunnel_t *tn = pt->tunnels; tn; tn = tn->next) /* frees nothing here */
        tunnel_close(tn);
    if (!pt->tunnels)
        cb(data);
}

void peer_tls_free(peer_tls_t *pt)
{
    if (!pt)
        return;
    tls_ctx_free(pt->ctx);
    free(pt);
}

/* A connected socketpair as two pipe handles. 0, or -1 with nothing open. */
static int pipe_pair(uv_loop_t *loop, uv_pipe_t *outer, uv_pipe_t *inner)
{
    uv_os_sock_t fds[2];

    if (uv_socketpair(SOCK_STREAM, 0, fds, UV_NONBLOCK_PIPE, UV_NONBLOCK_PIPE) != 0)
        return -1;
    uv_pipe_init(loop, outer, 0);
    uv_pipe_init(loop, inner, 0);
    /* Cannot fail for a fresh socket the loop does not watch yet; if it
     * did, that end stays without a descriptor and its first read or write
     * fails, which closes the tunnel. */
    if (uv_pipe_open(outer, fds[0]) != 0)
        close(fds[0]);
    if (uv_pipe_open(inner, fds[1]) != 0)
        close(fds[1]);
    return 0;
}

int peer_tunnel_start(peer_tls_t *pt, uv_tcp_t *tcp, bool connector, const char *remote,
                      void *owner, peer_tunnel_down_cb cb, peer_tunnel_t **out,
                      uv_stream_t **stream)
{
    peer_tunnel_t *tn = calloc(1, sizeof *tn);
    uv_pipe_t *inner = raft_malloc(sizeof *inner);

    if (tn)
        tn->tc = connector ? tls_conn_new_client(pt->ctx) : tls_conn_new(pt->ctx);
    if (!tn || !inner || !tn->tc || pipe_pair(pt->loop, &tn->outer, inner) != 0) {
        if (tn)
            tls_conn_free(tn->tc);
        free(tn);
        raft_free(inner);
        return MQHUB_EINTERNAL;
    }
    tn->pt = pt;
    tn->tcp = tcp;
    tn->open = 2;
    tcp->data = tn;
    tn->outer.data = tn;
    snprintf(tn->remote, sizeof tn->remote, "%s", remote);
    tn->next = pt->tunnels;
    if (pt->tunnels)
        pt->tunnels->prev = tn;
    pt->tunnels = tn;
    if (uv_read_start((uv_stream_t *)tcp, on_alloc, on_tcp_read) != 0)
        tunnel_close(tn);
    else if (connector)
        pump_in(tn); /* the client's hello */
    /* A failure above closed the tunnel quietly: the caller's stream then
     * reads an end of file and the handshake fails. */
    tn->owner = tn->closing ? NULL : owner;
    tn->down_cb = cb;
    *out = tn->closing ? NULL : tn;
    *stream = (uv_stream_t *)inner;
    return 0;
}

int peer_tunnel_binding(const peer_tunnel_t *tn, uint8_t out[PEER_BINDING_SIZE])
{
    return tls_conn_export(tn->tc, BINDING_LABEL, out, PEER_BINDING_SIZE);
}

void peer_tunnel_detach(peer_tunnel_t *tn)
{
    tn->owner = NULL;
}

void peer_tunnel_abort(peer_tunnel_t *tn)
{
    tunnel_close(tn);
}
