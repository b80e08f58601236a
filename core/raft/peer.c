/* peer.c: the raft peer transport — authenticated connections for raft_uv.
 *
 * raft_uv sends and receives raft messages on libuv streams that a struct
 * raft_uv_transport hands it (raft/uv.h). This is that transport, in place
 * of raft's raft_uv_tcp: TCP on the loop, where every connection in either
 * direction first runs a mutual challenge-response over the cluster secret,
 * and only a connection that passed it is given to raft. raft therefore
 * parses no byte from a peer that does not know the secret (docs/security.md
 * "Peers"). Connector C, acceptor A (formats in peer.h):
 *
 *   C -> A  hello_C               magic, version, id, nonce, raft address
 *   A -> C  hello_A, proof_A      proof = HMAC-SHA256(secret, label ||
 *   C -> A  proof_C                       hello_C || hello_A)
 *
 * A checks proof_C and calls raft's accept callback; C checks proof_A and,
 * once proof_C is written, calls raft's connect callback. Each side reads
 * exactly the bytes of the handshake (the read buffer is the handshake's
 * own), so raft's first message stays in the socket for raft. A handshake
 * not done within PEER_HANDSHAKE_MS is closed by the sweep timer. Every
 * refusal is one log line with the peer's address, at most LOG_BURST lines
 * per LOG_WINDOW_MS (the rest are counted in one line). Peer sockets get
 * TCP_NODELAY both ways: a commit is one small message and its answer.
 *
 * With peer TLS (node.peer_tls_*), a connection first becomes a tunnel
 * (peer_tls.c): mutual TLS against the cluster CA on the socket, plaintext
 * on a socketpair pipe, and the handshake above runs on that pipe, with the
 * TLS channel binding in its proofs; raft gets the pipe. The secret stays
 * the authentication: a certificate alone does not reach raft.
 *
 * Start reading at peer_transport_init(), on_connection() (incoming) and
 * peer_connect() (outgoing); each step of a handshake is one function named
 * after what it received. A new handshake field means a new PEER_VERSION.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "log.h"
#include "mqhub/errors.h"
#include "peer.h"
#include "peer_tls.h"

#define LISTEN_BACKLOG 64
/* Incoming handshakes at once; more are closed at once (a flood of idle
 * connections must not take every file descriptor of the process). */
#define INCOMING_MAX 64
#define SWEEP_MS 500
#define LOG_WINDOW_MS 10000
#define LOG_BURST 10
/* The HMAC key with node.allow_unauthenticated_peers: public, so the
 * handshake proves nothing, but the code path and format checks are the
 * same, and such a node never talks to one that has a secret. */
#define OPEN_KEY "mqhub-unauthenticated-peers"

/* Offsets in a hello (peer.h). */
#define HELLO_VERSION 4
#define HELLO_RESERVED 5
#define HELLO_ADDRESS_LEN 6
#define HELLO_ID 8
#define HELLO_NONCE 16
#define HELLO_ADDRESS 48

static const char label_connector[] = "mqhub-peer-v1 connector";
static const char label_acceptor[] = "mqhub-peer-v1 acceptor";

typedef struct peer peer_t;

/* One connection being authenticated, in either direction. */
typedef struct shake {
    peer_t *p;
    struct shake *prev, *next;  /* p->shakes */
    uv_tcp_t *tcp;              /* raft_malloc'ed; the tunnel's once it is made */
    uv_stream_t *stream;        /* the handshake's and then raft's: tcp, or the
                                   tunnel's pipe (raft_malloc'ed: raft frees it) */
    peer_tunnel_t *tunnel;      /* peer TLS, until the tunnel ends or raft has it */
    bool bound;                 /* binding is set */
    uint8_t binding[PEER_BINDING_SIZE]; /* the TLS channel binding */
    bool outgoing;
    bool resolving;             /* gai in flight (outgoing, host name) */
    bool closing;               /* refused or cancelled: tcp closing */
    bool got_hello;             /* acceptor: the connector's hello is in */
    bool proven;                /* the other side's proof checked */
    unsigned writing;           /* uv_write requests not completed */
    int status;                 /* for raft's connect callback when it fails */
    uint64_t deadline;          /* uv_now() */
    char remote[PEER_ADDRESS_MAX + 40]; /* "from 127.0.0.1:40112", for logs */
    uint8_t hello[2][PEER_HELLO_SIZE];  /* [enum peer_side] */
    uint8_t proof[PEER_PROOF_SIZE];     /* ours */
    uint8_t in[PEER_HELLO_SIZE + PEER_PROOF_SIZE];
    size_t need, got;           /* bytes of `in` expected and read */
    uv_write_t w[2];            /* connector: hello, proof; acceptor: both in w[0] */
    uint64_t their_id;          /* outgoing: the id raft asked for */
    char their_address[PEER_ADDRESS_MAX + 1];
    struct raft_uv_connect *req; /* outgoing */
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
} shake_t;

struct peer {
    struct raft_uv_transport *t;
    uv_loop_t *loop;
    char *key;                  /* HMAC key; NULL: this node takes no peers */
    bool authenticated;         /* key is the cluster secret, not OPEN_KEY */
    uint64_t id;
    char address[PEER_ADDRESS_MAX + 1];
    raft_uv_accept_cb accept_cb;
    uv_tcp_t listener;
    uv_timer_t sweep;           /* handshake deadlines, log window */
    bool listener_open, sweep_open, closing;
    raft_uv_transport_close_cb close_cb;
    shake_t *shakes;
    unsigned incoming;          /* incoming ones in shakes */
    uint64_t log_window;        /* uv_now() at its start */
    unsigned logged, suppressed;
    peer_tls_t *tls;            /* node.peer_tls_*, or NULL */
    bool tls_open;              /* tls has tunnels to close */
};

/* ---- wire format ------------------------------------------------------- */

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int peer_hello_encode(uint8_t out[PEER_HELLO_SIZE], uint64_t id, const char *address,
                      const uint8_t nonce[PEER_NONCE_SIZE])
{
    size_t n = strlen(address);
    if (id == 0 || n == 0 || n > PEER_ADDRESS_MAX)
        return MQHUB_EBAD_REQUEST;
    memset(out, 0, PEER_HELLO_SIZE);
    memcpy(out, PEER_MAGIC, 4);
    out[HELLO_VERSION] = PEER_VERSION;
    out[HELLO_ADDRESS_LEN] = (uint8_t)(n >> 8);
    out[HELLO_ADDRESS_LEN + 1] = (uint8_t)n;
    put64(out + HELLO_ID, id);
    memcpy(out + HELLO_NONCE, nonce, PEER_NONCE_SIZE);
    memcpy(out + HELLO_ADDRESS, address, n);
    return 0;
}

static int bad_hello(char *errmsg, size_t errlen, const char *why)
{
    snprintf(errmsg, errlen, "bad hello: %s", why);
    return MQHUB_EBAD_REQUEST;
}

int peer_hello_decode(const uint8_t in[PEER_HELLO_SIZE], uint64_t *id,
                      char address[PEER_ADDRESS_MAX + 1], char *errmsg, size_t errlen)
{
    size_t n = (size_t)in[HELLO_ADDRESS_LEN] << 8 | in[HELLO_ADDRESS_LEN + 1];

    if (memcmp(in, PEER_MAGIC, 4) != 0)
        return bad_hello(errmsg, errlen, "not an mqhub peer (raft_uv_tcp or another protocol?)");
    if (in[HELLO_VERSION] != PEER_VERSION || in[HELLO_RESERVED] != 0)
        return bad_hello(errmsg, errlen, "another handshake version");
    *id = get64(in + HELLO_ID);
    if (*id == 0)
        return bad_hello(errmsg, errlen, "node id 0");
    if (n == 0 || n > PEER_ADDRESS_MAX)
        return bad_hello(errmsg, errlen, "address length out of range");
    for (size_t i = 0; i < PEER_ADDRESS_MAX + 1; i++) {
        uint8_t c = in[HELLO_ADDRESS + i];
        if (i < n ? c < 0x21 || c > 0x7e : c != 0)
            return bad_hello(errmsg, errlen, "address not printable or not zero-padded");
    }
    memcpy(address, in + HELLO_ADDRESS, n);
    address[n] = '\0';
    return 0;
}

int peer_proof(uint8_t out[PEER_PROOF_SIZE], const char *key, enum peer_side side,
               const uint8_t connector_hello[PEER_HELLO_SIZE],
               const uint8_t acceptor_hello[PEER_HELLO_SIZE], const uint8_t *binding)
{
    const char *label = side == PEER_CONNECTOR ? label_connector : label_acceptor;
    size_t ll = strlen(label), n = ll + 2 * PEER_HELLO_SIZE;
    uint8_t msg[sizeof label_connector + 2 * PEER_HELLO_SIZE + PEER_BINDING_SIZE];
    unsigned len = 0;

    memcpy(msg, label, ll);
    memcpy(msg + ll, connector_hello, PEER_HELLO_SIZE);
    memcpy(msg + ll + PEER_HELLO_SIZE, acceptor_hello, PEER_HELLO_SIZE);
    if (binding) {
        memcpy(msg + n, binding, PEER_BINDING_SIZE);
        n += PEER_BINDING_SIZE;
    }
    if (!HMAC(EVP_sha256(), key, (int)strlen(key), msg, n, out, &len) ||
        len != PEER_PROOF_SIZE)
        return MQHUB_EINTERNAL;
    return 0;
}

/* Whether @proof is @side's proof over the shake's hellos (constant time). */
static bool proof_valid(const shake_t *s, enum peer_side side, const uint8_t *proof)
{
    uint8_t want[PEER_PROOF_SIZE];
    return peer_proof(want, s->p->key, side, s->hello[PEER_CONNECTOR],
                      s->hello[PEER_ACCEPTOR], s->bound ? s->binding : NULL) == 0 &&
           CRYPTO_memcmp(want, proof, PEER_PROOF_SIZE) == 0;
}

/* Our proof for side @side of @s, into s->proof. */
static int make_proof(shake_t *s, enum peer_side side)
{
    return peer_proof(s->proof, s->p->key, side, s->hello[PEER_CONNECTOR],
                      s->hello[PEER_ACCEPTOR], s->bound ? s->binding : NULL);
}

/* With peer TLS, the tunnel's channel binding into the shake (the first
 * handshake bytes came through TLS, so the session is established). */
static int bind_channel(shake_t *s)
{
    if (!s->tunnel)
        return s->p->tls ? -1 : 0;
    if (peer_tunnel_binding(s->tunnel, s->binding) != 0)
        return -1;
    s->bound = true;
    return 0;
}

/* Our hello for side @side of @s, with a fresh nonce. */
static int make_hello(shake_t *s, enum peer_side side)
{
    uint8_t nonce[PEER_NONCE_SIZE];
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        return MQHUB_EINTERNAL;
    return peer_hello_encode(s->hello[side], s->p->id, s->p->address, nonce);
}

/* ---- refusals: logged, rate-limited ------------------------------------ */

static void log_window_roll(peer_t *p, uint64_t now)
{
    if (p->suppressed)
        log_warn("peer", "%u more refused peer connections were not logged", p->suppressed);
    p->log_window = now;
    p->logged = p->suppressed = 0;
}

static void refusal_log(peer_t *p, const char *remote, const char *why)
{
    uint64_t now = uv_now(p->loop);
    if (now - p->log_window >= LOG_WINDOW_MS)
        log_window_roll(p, now);
    if (p->logged < LOG_BURST) {
        p->logged++;
        log_warn("peer", "peer connection %s refused: %s", remote, why);
    } else {
        p->suppressed++;
    }
}

/* ---- a handshake's life ------------------------------------------------ */

static void maybe_closed(peer_t *p)
{
    raft_uv_transport_close_cb cb = p->close_cb;
    if (!p->closing || p->listener_open || p->sweep_open || p->shakes || p->tls_open || !cb)
        return;
    p->close_cb = NULL;
    cb(p->t);
}

static void unlink_shake(shake_t *s)
{
    s->p->incoming -= !s->outgoing;
    if (s->prev)
        s->prev->next = s->next;
    else
        s->p->shakes = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

/* A new handshake with its (unconnected) TCP handle, listed in p->shakes. */
static shake_t *shake_new(peer_t *p, bool outgoing)
{
    shake_t *s = calloc(1, sizeof *s);
    if (!s || !(s->tcp = raft_malloc(sizeof *s->tcp))) {
        free(s);
        return NULL;
    }
    uv_tcp_init(p->loop, s->tcp);
    s->tcp->data = s;
    s->stream = (uv_stream_t *)s->tcp;
    s->p = p;
    s->outgoing = outgoing;
    p->incoming += !outgoing;
    s->deadline = uv_now(p->loop) + PEER_HANDSHAKE_MS;
    s->next = p->shakes;
    if (p->shakes)
        p->shakes->prev = s;
    p->shakes = s;
    return s;
}

/* The end of a failed handshake: raft hears of a failed connect. */
static void shake_finish(shake_t *s)
{
    peer_t *p = s->p;
    struct raft_uv_connect *req = s->outgoing ? s->req : NULL;
    int status = p->closing ? RAFT_CANCELED : s->status;

    unlink_shake(s);
    free(s);
    if (req)
        req->cb(req, NULL, status);
    maybe_closed(p);
}

static void on_shake_closed(uv_handle_t *h)
{
    shake_t *s = h->data;
    raft_free(h);
    shake_finish(s);
}

/* Close the connection (quietly: see shake_refuse); raft's connect callback
 * runs once the handle is closed. */
static void shake_abort(shake_t *s, int status)
{
    if (s->closing)
        return;
    s->closing = true;
    s->status = status;
    if (s->tunnel) {
        peer_tunnel_abort(s->tunnel);
        s->tunnel = NULL;
    }
    if (s->resolving)
        uv_cancel((uv_req_t *)&s->gai); /* on_resolved closes the handle */
    else
        uv_close((uv_handle_t *)s->stream, on_shake_closed);
}

__attribute__((format(printf, 2, 3))) static void shake_refuse(shake_t *s, const char *fmt,
                                                               ...)
{
    char why[160];
    va_list ap;
    if (s->closing)
        return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    refusal_log(s->p, s->remote, why);
    shake_abort(s, RAFT_NOCONNECTION);
}

/* Hand the authenticated stream to raft; the stream is raft's from now on. */
static void shake_done(shake_t *s)
{
    peer_t *p = s->p;
    uv_stream_t *stream = s->stream;
    struct raft_uv_connect *req = s->req;
    char address[PEER_ADDRESS_MAX + 1];
    uint64_t id = s->their_id;
    bool outgoing = s->outgoing;

    if (!s->proven || s->writing > 0 || s->closing)
        return;
    memcpy(address, s->their_address, sizeof address);
    stream->data = NULL;
    if (s->tunnel)
        peer_tunnel_detach(s->tunnel);
    unlink_shake(s);
    free(s);
    if (outgoing)
        req->cb(req, stream, 0);
    else
        p->accept_cb(p->t, id, address, stream);
}

static void on_written(uv_write_t *w, int status)
{
    shake_t *s = w->data;
    s->writing--;
    if (status < 0)
        shake_abort(s, RAFT_NOCONNECTION);
    else
        shake_done(s);
}

static void shake_write(shake_t *s, unsigned i, uv_buf_t *bufs, unsigned n)
{
    s->w[i].data = s;
    int rv = uv_write(&s->w[i], s->stream, bufs, n, on_written);
    if (rv != 0)
        shake_abort(s, RAFT_NOCONNECTION);
    else
        s->writing++;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    shake_t *s = h->data;
    *buf = uv_buf_init((char *)s->in + s->got, (unsigned)(s->need - s->got));
}

/* Connector: the acceptor's hello and proof are in; answer our proof. */
static void got_acceptor_reply(shake_t *s)
{
    char why[128];
    uint64_t id;

    memcpy(s->hello[PEER_ACCEPTOR], s->in, PEER_HELLO_SIZE);
    if (peer_hello_decode(s->hello[PEER_ACCEPTOR], &id, s->their_address, why, sizeof why))
        shake_refuse(s, "%s", why);
    else if (bind_channel(s) != 0)
        shake_refuse(s, "no TLS channel binding");
    else if (id != s->their_id)
        shake_refuse(s, "it is node %llu", (unsigned long long)id);
    else if (!proof_valid(s, PEER_ACCEPTOR, s->in + PEER_HELLO_SIZE))
        shake_refuse(s, "wrong cluster secret");
    else if (make_proof(s, PEER_CONNECTOR) != 0)
        shake_refuse(s, "HMAC failed");
    if (s->closing)
        return;
    uv_read_stop(s->stream);
    s->proven = true;
    shake_write(s, 1, &(uv_buf_t){.base = (char *)s->proof, .len = PEER_PROOF_SIZE}, 1);
}

/* Acceptor: the connector's hello is in; answer ours and our proof. */
static void got_connector_hello(shake_t *s)
{
    char why[128];

    memcpy(s->hello[PEER_CONNECTOR], s->in, PEER_HELLO_SIZE);
    if (peer_hello_decode(s->hello[PEER_CONNECTOR], &s->their_id, s->their_address, why,
                          sizeof why))
        shake_refuse(s, "%s", why);
    else if (s->their_id == s->p->id)
        shake_refuse(s, "it claims this node's id %llu", (unsigned long long)s->p->id);
    else if (bind_channel(s) != 0)
        shake_refuse(s, "no TLS channel binding");
    else if (make_hello(s, PEER_ACCEPTOR) != 0 || make_proof(s, PEER_ACCEPTOR) != 0)
        shake_refuse(s, "RAND_bytes or HMAC failed");
    if (s->closing)
        return;
    s->got_hello = true;
    s->need = PEER_PROOF_SIZE; /* keep reading: the proof comes next */
    s->got = 0;
    uv_buf_t bufs[2] = {{.base = (char *)s->hello[PEER_ACCEPTOR], .len = PEER_HELLO_SIZE},
                        {.base = (char *)s->proof, .len = PEER_PROOF_SIZE}};
    shake_write(s, 0, bufs, 2);
}

/* Acceptor: the connector's proof is in. */
static void got_connector_proof(shake_t *s)
{
    if (!proof_valid(s, PEER_CONNECTOR, s->in)) {
        shake_refuse(s, "wrong cluster secret");
        return;
    }
    uv_read_stop(s->stream);
    s->proven = true;
    shake_done(s);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    shake_t *s = stream->data;

    if (nread == 0)
        return;
    if (nread < 0) {
        shake_refuse(s, "%s %s", nread == UV_EOF ? "closed" : uv_strerror((int)nread),
                     s->got_hello ? "after our proof: another cluster secret, or it "
                                    "expected another node at this address?"
                                  : "during the handshake");
        return;
    }
    s->got += (size_t)nread;
    if (!s->outgoing && !s->got_hello && !s->p->tls && s->got >= 2 && s->in[0] == 0x16 &&
        s->in[1] == 0x03) { /* a TLS record: a ClientHello */
        shake_refuse(s, "it speaks TLS (node.peer_tls_* set there, not here?)");
        return;
    }
    if (s->got < s->need)
        return;
    if (s->outgoing)
        got_acceptor_reply(s);
    else if (!s->got_hello)
        got_connector_hello(s);
    else
        got_connector_proof(s);
}

static void start_reading(shake_t *s, size_t need)
{
    s->need = need;
    s->got = 0;
    int rv = uv_read_start(s->stream, on_alloc, on_read);
    if (rv != 0)
        shake_abort(s, RAFT_NOCONNECTION);
}

/* The tunnel of @owner (a shake) ended during the handshake. */
static void on_tunnel_down(void *owner, const char *why)
{
    shake_t *s = owner;
    s->tunnel = NULL;
    shake_refuse(s, "%s", why);
}

/* With peer TLS, put a tunnel between the socket and the handshake: the
 * handshake (and then raft) uses the tunnel's pipe. 0 or -1. */
static int shake_tunnel(shake_t *s)
{
    if (!s->p->tls)
        return 0;
    if (peer_tunnel_start(s->p->tls, s->tcp, s->outgoing, s->remote, s, on_tunnel_down,
                          &s->tunnel, &s->stream) != 0)
        return -1;
    s->stream->data = s;
    s->tcp = NULL;
    return 0;
}

/* ---- incoming ---------------------------------------------------------- */

/* "from 127.0.0.1:40112" into s->remote. */
static void name_remote(shake_t *s)
{
    struct sockaddr_storage sa;
    int len = sizeof sa;
    char ip[64] = "?";
    int port = 0;

    if (uv_tcp_getpeername(s->tcp, (struct sockaddr *)&sa, &len) == 0) {
        uv_ip_name((struct sockaddr *)&sa, ip, sizeof ip);
        port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                              : ((struct sockaddr_in *)&sa)->sin_port);
    }
    snprintf(s->remote, sizeof s->remote, "from %s:%d", ip, port);
}

static void on_connection(uv_stream_t *server, int status)
{
    peer_t *p = server->data;
    shake_t *s;

    if (status < 0 || p->closing)
        return;
    if (!(s = shake_new(p, false))) {
        log_error("peer", "out of memory accepting a peer connection");
        return;
    }
    if (uv_accept(server, (uv_stream_t *)s->tcp) != 0) {
        shake_abort(s, RAFT_NOCONNECTION);
        return;
    }
    uv_tcp_nodelay(s->tcp, 1);
    name_remote(s);
    if (p->incoming > INCOMING_MAX)
        shake_refuse(s, "more than %d handshakes at once", INCOMING_MAX);
    else if (shake_tunnel(s) != 0)
        shake_refuse(s, "out of memory for TLS");
    else
        start_reading(s, PEER_HELLO_SIZE);
}

/* ---- outgoing ---------------------------------------------------------- */

static void on_connected(uv_connect_t *req, int status)
{
    shake_t *s = req->data;

    if (s->closing)
        return;
    if (status < 0) { /* the peer is down: raft retries, nothing to log */
        shake_abort(s, RAFT_NOCONNECTION);
        return;
    }
    uv_tcp_nodelay(s->tcp, 1);
    if (shake_tunnel(s) != 0) {
        shake_refuse(s, "out of memory for TLS");
        return;
    }
    if (make_hello(s, PEER_CONNECTOR) != 0) {
        shake_refuse(s, "RAND_bytes failed");
        return;
    }
    shake_write(s, 0, &(uv_buf_t){.base = (char *)s->hello[PEER_CONNECTOR],
                                  .len = PEER_HELLO_SIZE}, 1);
    if (!s->closing)
        start_reading(s, PEER_HELLO_SIZE + PEER_PROOF_SIZE);
}

static void start_connect(shake_t *s, const struct sockaddr *sa)
{
    s->connect.data = s;
    if (uv_tcp_connect(&s->connect, s->tcp, sa, on_connected) != 0)
        shake_abort(s, RAFT_NOCONNECTION);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    shake_t *s = req->data;

    s->resolving = false;
    if (s->closing)
        uv_close((uv_handle_t *)s->stream, on_shake_closed);
    else if (status < 0 || !res)
        shake_abort(s, RAFT_NOCONNECTION);
    else
        start_connect(s, res->ai_addr);
    uv_freeaddrinfo(res);
}

/* "host:port" or "[v6]:port" into @host and @port; 0 or UV_EINVAL. */
static int split_address(const char *address, char host[PEER_ADDRESS_MAX + 1], char port[8])
{
    const char *colon = strrchr(address, ':');
    size_t n = colon ? (size_t)(colon - address) : 0;

    if (!colon || !colon[1] || strlen(colon + 1) >= 8 || n > PEER_ADDRESS_MAX)
        return UV_EINVAL;
    if (n >= 2 && address[0] == '[' && address[n - 1] == ']') {
        address++;
        n -= 2;
    }
    memcpy(host, address, n);
    host[n] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

/* @host as a numeric IPv4 or IPv6 address (no resolver needed). */
static int ip_literal(const char *host, const char *port, struct sockaddr_storage *sa)
{
    int n = atoi(port);
    if (uv_ip4_addr(host, n, (struct sockaddr_in *)sa) == 0)
        return 0;
    return uv_ip6_addr(host, n, (struct sockaddr_in6 *)sa);
}

static int peer_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                        const char *address, raft_uv_connect_cb cb)
{
    peer_t *p = t->impl;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct sockaddr_storage sa;
    char host[PEER_ADDRESS_MAX + 1], port[8], remote[PEER_ADDRESS_MAX + 40];
    shake_t *s;

    snprintf(remote, sizeof remote, "to %s (node %llu)", address, (unsigned long long)id);
    if (!p->key) {
        refusal_log(p, remote, "this node has no cluster secret (node.cluster_secret_file)");
        return RAFT_NOCONNECTION;
    }
    if (split_address(address, host, port) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "bad peer address %s", address);
        return RAFT_NOCONNECTION;
    }
    if (!(s = shake_new(p, true)))
        return RAFT_NOMEM;
    req->cb = cb;
    s->req = req;
    s->their_id = id;
    memcpy(s->remote, remote, sizeof remote);
    if (ip_literal(host, port, &sa) == 0) {
        start_connect(s, (struct sockaddr *)&sa);
        return 0;
    }
    s->gai.data = s;
    if (uv_getaddrinfo(p->loop, &s->gai, on_resolved, host, port, &hints) != 0)
        shake_abort(s, RAFT_NOCONNECTION);
    else
        s->resolving = true;
    return 0;
}

/* ---- the transport ----------------------------------------------------- */

static void on_sweep(uv_timer_t *timer)
{
    peer_t *p = timer->data;
    uint64_t now = uv_now(p->loop);

    for (shake_t *s = p->shakes; s; s = s->next) /* aborts free nothing here */
        if (now >= s->deadline)
            shake_refuse(s, "no handshake within %d ms", PEER_HANDSHAKE_MS);
    if (p->suppressed && now - p->log_window >= LOG_WINDOW_MS)
        log_window_roll(p, now);
}

static int peer_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    peer_t *p = t->impl;
    if (strlen(address) > PEER_ADDRESS_MAX) {
        snprintf(t->errmsg, sizeof t->errmsg, "raft address longer than %d bytes",
                 PEER_ADDRESS_MAX);
        return RAFT_INVALID;
    }
    p->id = id;
    strcpy(p->address, address);
    return 0;
}

/* The first address @address resolves to, for bind (a blocking lookup, once
 * at start, as raft_uv_tcp does). */
static int resolve_bind(uv_loop_t *loop, const char *address, struct sockaddr_storage *sa)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    char host[PEER_ADDRESS_MAX + 1], port[8];
    uv_getaddrinfo_t req;
    int rv = split_address(address, host, port);

    if (rv == 0 && (rv = ip_literal(host, port, sa)) != 0 &&
        (rv = uv_getaddrinfo(loop, &req, NULL, host, port, &hints)) == 0) {
        memcpy(sa, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
        uv_freeaddrinfo(req.addrinfo);
    }
    return rv;
}

static int peer_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    peer_t *p = t->impl;
    struct sockaddr_storage sa;
    int rv;

    p->accept_cb = cb;
    if (!p->key) {
        log_info("peer", "no cluster secret: raft port %s not opened, this node takes no "
                 "peers", p->address);
        return 0;
    }
    uv_timer_init(p->loop, &p->sweep);
    p->sweep.data = p;
    p->sweep_open = true;
    uv_timer_start(&p->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_tcp_init(p->loop, &p->listener);
    p->listener.data = p;
    p->listener_open = true;
    rv = resolve_bind(p->loop, p->address, &sa);
    if (rv == 0)
        rv = uv_tcp_bind(&p->listener, (struct sockaddr *)&sa, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&p->listener, LISTEN_BACKLOG, on_connection);
    if (rv != 0) { /* the handles are closed by peer_close() */
        snprintf(t->errmsg, sizeof t->errmsg, "listen on %.200s: %s", p->address,
                 uv_strerror(rv));
        log_error("peer", "raft port: %s", t->errmsg);
        return RAFT_IOERR;
    }
    if (p->authenticated)
        log_info("peer", "raft port %s: peers must prove the cluster secret%s", p->address,
                 p->tls ? ", inside TLS with a certificate of the cluster CA" : "");
    else
        log_warn("peer", "raft port %s takes UNAUTHENTICATED peers "
                 "(node.allow_unauthenticated_peers): whoever reaches it can disrupt "
                 "this cluster or commit anything", p->address);
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    peer_t *p = h->data;
    p->listener_open = false;
    maybe_closed(p);
}

static void on_sweep_closed(uv_handle_t *h)
{
    peer_t *p = h->data;
    p->sweep_open = false;
    maybe_closed(p);
}

static void on_tls_closed(void *data)
{
    peer_t *p = data;
    p->tls_open = false;
    maybe_closed(p);
}

static void peer_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    peer_t *p = t->impl;

    p->closing = true;
    p->close_cb = cb;
    for (shake_t *s = p->shakes; s; s = s->next)
        shake_abort(s, RAFT_CANCELED);
    if (p->listener_open)
        uv_close((uv_handle_t *)&p->listener, on_listener_closed);
    if (p->sweep_open)
        uv_close((uv_handle_t *)&p->sweep, on_sweep_closed);
    if (p->tls) {
        p->tls_open = true;
        peer_tls_close(p->tls, on_tls_closed, p);
    }
    maybe_closed(p);
}

int peer_transport_init(struct raft_uv_transport *t, uv_loop_t *loop, const char *secret,
                        bool allow_unauthenticated, const peer_tls_files_t *tls,
                        char *errmsg, size_t errlen)
{
    const char *key = secret ? secret : allow_unauthenticated ? OPEN_KEY : NULL;
    peer_t *p = calloc(1, sizeof *p);
    int rv;

    if (!p || (key && !(p->key = strdup(key)))) {
        free(p);
        snprintf(errmsg, errlen, "out of memory");
        return MQHUB_EINTERNAL;
    }
    if (tls && tls->cert && (rv = peer_tls_new(&p->tls, loop, tls, errmsg, errlen)) != 0) {
        free(p->key);
        free(p);
        return rv;
    }
    p->t = t;
    p->loop = loop;
    p->authenticated = secret != NULL;
    memset(t, 0, sizeof *t);
    t->version = 1; /* the struct version raft_uv_init expects */
    t->impl = p;
    t->init = peer_init;
    t->listen = peer_listen;
    t->connect = peer_connect;
    t->close = peer_close;
    return 0;
}

void peer_transport_free(struct raft_uv_transport *t)
{
    peer_t *p = t->impl;
    if (!p)
        return;
    if (p->key) {
        OPENSSL_cleanse(p->key, strlen(p->key));
        free(p->key);
    }
    peer_tls_free(p->tls);
    free(p);
    t->impl = NULL;
}
