/* client_tls.c: TLS for libmqhub's connection — OpenSSL straight on the
 * handle's non-blocking socket.
 *
 * client.c calls client_tls_start() right after a TCP connect (the handshake,
 * waited for with poll within the connect timeout, and the server's
 * certificate checked against tls_ca and the host or IP address dialled),
 * then client_tls_recv()/client_tls_send() in place of recv()/send(): they
 * answer like them (bytes, 0 for the end, -1 with errno EAGAIN when the
 * socket would block), so the poll loop stays the same. A TLS failure is -1
 * with errno EPROTO and client_tls_error() says why.
 *
 * One client_tls_t per handle: the SSL_CTX (CA, client certificate, TLS 1.2
 * minimum) lives as long as the handle, the SSL as long as one connection.
 * The SSL talks to the socket through a small BIO of ours (sock_bio) that
 * sends with MSG_NOSIGNAL, as client.c does: OpenSSL's socket BIO uses
 * write(2), which raises SIGPIPE in the application when the server has gone.
 * OpenSSL's error sentences come from core/util/tls.c (tls_error_text).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "clock.h"
#include "client_int.h"
#include "tls.h"

struct client_tls {
    SSL_CTX *ctx;
    BIO_METHOD *sock; /* sock_bio's methods */
    SSL *ssl;          /* the current connection's, or NULL */
    char *server_name; /* verified instead of the dialled host, or NULL */
    bool want_write;   /* a read needs the socket writable first */
    bool broken;       /* a fatal error: no close_notify */
    char error[256];
};

/* ---- sock_bio: the socket without SIGPIPE; its data is the fd ---- */

static int sock_write(BIO *b, const char *data, int len)
{
    ssize_t n = send((int)(intptr_t)BIO_get_data(b), data, (size_t)len, MSG_NOSIGNAL);
    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int sock_read(BIO *b, char *buf, int len)
{
    ssize_t n = recv((int)(intptr_t)BIO_get_data(b), buf, (size_t)len, 0);
    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *sock_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mqhub socket");
    if (m && (BIO_meth_set_write(m, sock_write) != 1 || BIO_meth_set_read(m, sock_read) != 1 ||
              BIO_meth_set_ctrl(m, sock_ctrl) != 1)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

static BIO *sock_bio(client_tls_t *t, int fd)
{
    BIO *b = BIO_new(t->sock);
    if (b) {
        BIO_set_data(b, (void *)(intptr_t)fd);
        BIO_set_init(b, 1);
    }
    return b;
}

/* ---- contexts and connections ---- */

static int load_fail(SSL_CTX *ctx, const char *what, const char *file, char *err,
                     size_t errlen)
{
    char why[160];

    tls_error_text(why, sizeof why, "cannot load");
    snprintf(err, errlen, "TLS %s %s: %s", what, file, why);
    SSL_CTX_free(ctx);
    return MQHUB_ECONN;
}

int client_tls_new(client_tls_t **out, const mqhub_client_opts_t *o, char *err,
                   size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    client_tls_t *t;

    *out = NULL;
    if (!ctx) {
        snprintf(err, errlen, "TLS: SSL_CTX_new failed");
        return MQHUB_EINTERNAL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* client.c appends to its output buffer (which may move) between tries. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->tls_ca ? SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL) != 1
                  : SSL_CTX_set_default_verify_paths(ctx) != 1)
        return load_fail(ctx, "CA", o->tls_ca ? o->tls_ca : "(system default)", err, errlen);
    if (o->tls_cert && SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1)
        return load_fail(ctx, "certificate", o->tls_cert, err, errlen);
    if (o->tls_cert &&
        (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key ? o->tls_key : o->tls_cert,
                                     SSL_FILETYPE_PEM) != 1 ||
         SSL_CTX_check_private_key(ctx) != 1))
        return load_fail(ctx, "key", o->tls_key ? o->tls_key : o->tls_cert, err, errlen);
    t = calloc(1, sizeof *t);
    if (!t || !(t->sock = sock_method()) ||
        (o->tls_server_name && !(t->server_name = strdup(o->tls_server_name)))) {
        if (t)
            BIO_meth_free(t->sock);
        free(t);
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "out of memory");
        return MQHUB_EINTERNAL;
    }
    t->ctx = ctx;
    *out = t;
    return 0;
}

void client_tls_free(client_tls_t *t)
{
    if (!t)
        return;
    client_tls_end(t);
    SSL_CTX_free(t->ctx);
    BIO_meth_free(t->sock);
    free(t->server_name);
    free(t);
}

/* What the certificate must name: an IP address literal or a host name
 * (also sent as SNI). */
static int expect_name(SSL *ssl, const char *name)
{
    unsigned char ip[16];
    bool literal = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;

    if (literal)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : -1;
    if (SSL_set_tlsext_host_name(ssl, name) != 1)
        return -1;
    return SSL_set1_host(ssl, name) == 1 ? 0 : -1;
}

/* Why @ret of an SSL call failed, into t->error: 0 when it only waits (and
 * then *@events is what to poll for), 1 at the server's close_notify, -1 on
 * a failure. */
static int ssl_status(client_tls_t *t, int ret, short *events)
{
    int e = SSL_get_error(t->ssl, ret);
    long vr;

    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(t->error, sizeof t->error, "connection closed by the server");
        return 1;
    }
    t->broken = true;
    vr = SSL_get_verify_result(t->ssl);
    if (vr != X509_V_OK) {
        snprintf(t->error, sizeof t->error, "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
        ERR_clear_error();
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
        snprintf(t->error, sizeof t->error, "%s",
                 errno ? strerror(errno) : "connection closed by the server");
    } else {
        tls_error_text(t->error, sizeof t->error, "TLS protocol error");
    }
    return -1;
}

int client_tls_start(client_tls_t *t, int fd, const char *host, int timeout_ms, char *err,
                     size_t errlen)
{
    uint64_t until = clock_mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    short events = 0;
    BIO *bio;
    int rc;

    client_tls_end(t);
    t->broken = t->want_write = false;
    t->ssl = SSL_new(t->ctx);
    bio = t->ssl ? sock_bio(t, fd) : NULL;
    if (bio)
        SSL_set_bio(t->ssl, bio, bio);
    if (!bio || expect_name(t->ssl, t->server_name ? t->server_name : host) != 0) {
        snprintf(err, errlen, "TLS setup failed");
        t->broken = true;
        client_tls_end(t);
        return MQHUB_ECONN;
    }
    while ((rc = SSL_connect(t->ssl)) != 1) {
        uint64_t now = clock_mono_ms();
        struct pollfd pfd = {.fd = fd};
        errno = 0;
        if (ssl_status(t, rc, &events) != 0) {
            t->broken = true;
            break;
        }
        pfd.events = events;
        if (now >= until || poll(&pfd, 1, (int)(until - now)) == 0) {
            snprintf(t->error, sizeof t->error, "no TLS handshake within %d ms (is the "
                     "server's port plaintext?)", timeout_ms);
            t->broken = true;
            break;
        }
    }
    if (rc == 1)
        return 0;
    snprintf(err, errlen, "TLS handshake: %s", t->error);
    client_tls_end(t);
    return MQHUB_ECONN;
}

void client_tls_end(client_tls_t *t)
{
    if (!t->ssl)
        return;
    /* Best effort and non-blocking: tell the server we are leaving. */
    if (!t->broken && SSL_is_init_finished(t->ssl))
        SSL_shutdown(t->ssl);
    SSL_free(t->ssl);
    t->ssl = NULL;
    ERR_clear_error();
}

/* recv()/send()-like result of an SSL_read/SSL_write that returned @ret. */
static ssize_t io_result(client_tls_t *t, int ret, bool reading)
{
    short events = 0;
    int st;

    if (ret > 0)
        return ret;
    st = ssl_status(t, ret, &events);
    if (st == 0) {
        t->want_write = reading && events == POLLOUT;
        errno = EAGAIN;
        return -1;
    }
    if (st == 1)
        return 0;
    errno = EPROTO;
    return -1;
}

ssize_t client_tls_recv(client_tls_t *t, void *buf, size_t n)
{
    ERR_clear_error();
    t->want_write = false;
    return io_result(t, SSL_read(t->ssl, buf, n > INT_MAX ? INT_MAX : (int)n), true);
}

ssize_t client_tls_send(client_tls_t *t, const void *buf, size_t n)
{
    ERR_clear_error();
    return io_result(t, SSL_write(t->ssl, buf, n > INT_MAX ? INT_MAX : (int)n), false);
}

bool client_tls_wants_write(const client_tls_t *t)
{
    return t->want_write;
}

const char *client_tls_error(const client_tls_t *t)
{
    return t->error;
}
