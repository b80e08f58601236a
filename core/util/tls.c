/* tls.c: the TLS engine of tls.h — OpenSSL on two memory BIOs.
 *
 * Each connection's SSL reads ciphertext from `rbio` (filled by
 * tls_conn_feed with what the transport read from its socket) and writes
 * ciphertext to `wbio` (emptied by tls_conn_take_out into the transport's
 * next socket write). Nothing here blocks or knows about sockets, so any
 * transport that owns a byte stream can use it: the TCP transport as a
 * server, the raft peer transport (core/raft/peer_tls.c) as both sides.
 *
 * Start at tls_ctx_new() (policy: TLS 1.2 minimum, no compression, no
 * renegotiation, client certificates per tls_client_certs) and
 * tls_conn_read(), which also drives the handshake. SSL_MODE_RELEASE_BUFFERS
 * keeps an idle connection's OpenSSL buffers freed, and a memory BIO that
 * grew past BIO_KEEP is replaced by a new one once empty (a memory BIO never
 * gives back what it grew to: one 16 MiB reply would stay allocated).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define BIO_KEEP (32 * 1024)

struct tls_ctx {
    SSL_CTX *ssl;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    size_t fed;       /* bytes into rbio since it was new */
    bool failed;
    char error[256];
};

void tls_error_text(char *buf, size_t size, const char *fallback)
{
    unsigned long e, sys = 0, last = 0;

    /* A file that cannot be opened queues errno as a system error, then
     * OpenSSL's own "system lib": say the errno. */
    while ((e = ERR_get_error()) != 0) {
        if (ERR_SYSTEM_ERROR(e))
            sys = e;
        last = e;
    }
    if (sys != 0)
        snprintf(buf, size, "%s", strerror(ERR_GET_REASON(sys)));
    else
        snprintf(buf, size, "%s", last && ERR_reason_error_string(last)
                                      ? ERR_reason_error_string(last) : fallback);
}

static int ctx_fail(SSL_CTX *ssl, const tls_config_t *cfg, const char *key, const char *file,
                    char *errmsg, size_t errlen)
{
    char why[160];

    tls_error_text(why, sizeof why, "cannot load");
    snprintf(errmsg, errlen, "%s%s %s: %s", cfg->keys ? cfg->keys : "tls_", key, file, why);
    SSL_CTX_free(ssl);
    return -1;
}

/* Client certificates: verified against @cfg->ca_file, whose names are also
 * sent to the client as the acceptable issuers. */
static int ctx_client_certs(SSL_CTX *ssl, const tls_config_t *cfg, char *errmsg,
                            size_t errlen)
{
    STACK_OF(X509_NAME) *names;
    int mode = SSL_VERIFY_PEER;

    if (cfg->client_certs == TLS_CERTS_NONE)
        return 0;
    if (cfg->ca_file == NULL) {
        snprintf(errmsg, errlen, "tls_client_certs needs tls_ca (the CA of the clients)");
        SSL_CTX_free(ssl);
        return -1;
    }
    if (SSL_CTX_load_verify_locations(ssl, cfg->ca_file, NULL) != 1 ||
        (names = SSL_load_client_CA_file(cfg->ca_file)) == NULL)
        return ctx_fail(ssl, cfg, "ca", cfg->ca_file, errmsg, errlen);
    SSL_CTX_set_client_CA_list(ssl, names);
    if (cfg->client_certs == TLS_CERTS_REQUIRED)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ssl, mode, NULL);
    return 0;
}

int tls_ctx_new(tls_ctx_t **out, const tls_config_t *cfg, char *errmsg, size_t errlen)
{
    SSL_CTX *ssl = SSL_CTX_new(TLS_method());
    tls_ctx_t *ctx;

    if (ssl == NULL) {
        snprintf(errmsg, errlen, "SSL_CTX_new failed");
        return -1;
    }
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ssl, cfg->cert_file) != 1)
        return ctx_fail(ssl, cfg, "cert", cfg->cert_file, errmsg, errlen);
    if (SSL_CTX_use_PrivateKey_file(ssl, cfg->key_file, SSL_FILETYPE_PEM) != 1)
        return ctx_fail(ssl, cfg, "key", cfg->key_file, errmsg, errlen);
    if (SSL_CTX_check_private_key(ssl) != 1)
        return ctx_fail(ssl, cfg, "key", cfg->key_file, errmsg, errlen);
    if (ctx_client_certs(ssl, cfg, errmsg, errlen) != 0)
        return -1;
    ctx = malloc(sizeof *ctx);
    if (ctx == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        SSL_CTX_free(ssl);
        return -1;
    }
    ctx->ssl = ssl;
    *out = ctx;
    return 0;
}

void tls_ctx_free(tls_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

static BIO *mem_bio(void)
{
    BIO *b = BIO_new(BIO_s_mem());
    /* An empty memory BIO means "no bytes yet", not end of file. */
    if (b != NULL)
        BIO_set_mem_eof_return(b, -1);
    return b;
}

/* Swap an empty BIO that grew for a new one (failing that, keep it). */
static void shrink_rbio(tls_conn_t *tc)
{
    BIO *b;

    if (tc->fed <= BIO_KEEP || BIO_ctrl_pending(tc->rbio) > 0 || (b = mem_bio()) == NULL)
        return;
    SSL_set0_rbio(tc->ssl, b);
    tc->rbio = b;
    tc->fed = 0;
}

static void shrink_wbio(tls_conn_t *tc, size_t taken)
{
    BIO *b;

    if (taken <= BIO_KEEP || (b = mem_bio()) == NULL)
        return;
    SSL_set0_wbio(tc->ssl, b);
    tc->wbio = b;
}

static tls_conn_t *conn_new(tls_ctx_t *ctx, bool client)
{
    tls_conn_t *tc = calloc(1, sizeof *tc);

    if (tc == NULL)
        return NULL;
    tc->ssl = SSL_new(ctx->ssl);
    tc->rbio = mem_bio();
    tc->wbio = mem_bio();
    if (tc->ssl == NULL || tc->rbio == NULL || tc->wbio == NULL) {
        BIO_free(tc->rbio);
        BIO_free(tc->wbio);
        SSL_free(tc->ssl);
        free(tc);
        return NULL;
    }
    SSL_set_bio(tc->ssl, tc->rbio, tc->wbio);
    if (client)
        SSL_set_connect_state(tc->ssl);
    else
        SSL_set_accept_state(tc->ssl);
    return tc;
}

tls_conn_t *tls_conn_new(tls_ctx_t *ctx)
{
    return conn_new(ctx, false);
}

tls_conn_t *tls_conn_new_client(tls_ctx_t *ctx)
{
    return conn_new(ctx, true);
}

void tls_conn_free(tls_conn_t *tc)
{
    if (tc == NULL)
        return;
    SSL_free(tc->ssl);
    free(tc);
}

int tls_conn_feed(tls_conn_t *tc, const char *data, size_t len)
{
    while (len > 0) {
        int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
        int n = BIO_write(tc->rbio, data, chunk);
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
        tc->fed += (size_t)n;
    }
    return 0;
}

/* Record why @ret of an SSL call failed; TLS_AGAIN when it only waits. */
static int conn_status(tls_conn_t *tc, int ret)
{
    int e = SSL_get_error(tc->ssl, ret);
    long vr;

    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return TLS_AGAIN;
    if (e == SSL_ERROR_ZERO_RETURN)
        return TLS_CLOSED;
    tc->failed = true;
    vr = SSL_get_verify_result(tc->ssl);
    if (vr != X509_V_OK) {
        snprintf(tc->error, sizeof tc->error, "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
        ERR_clear_error();
    } else {
        tls_error_text(tc->error, sizeof tc->error,
                       e == SSL_ERROR_SYSCALL ? "unexpected end of stream" : "protocol error");
        if (strcmp(tc->error, "wrong version number") == 0 ||
            strcmp(tc->error, "http request") == 0)
            strncat(tc->error, " (not TLS: a plaintext client?)",
                    sizeof tc->error - strlen(tc->error) - 1);
    }
    return TLS_FAILED;
}

ssize_t tls_conn_read(tls_conn_t *tc, char *buf, size_t len)
{
    int n;

    if (tc->failed)
        return TLS_FAILED;
    if (!SSL_is_init_finished(tc->ssl)) {
        n = SSL_do_handshake(tc->ssl);
        if (n != 1)
            return conn_status(tc, n);
    }
    n = SSL_read(tc->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0)
        return n;
    n = conn_status(tc, n);
    if (n == TLS_AGAIN)
        shrink_rbio(tc);
    return n;
}

int tls_conn_write(tls_conn_t *tc, const char *data, size_t len)
{
    if (tc->failed)
        return TLS_FAILED;
    if (!SSL_is_init_finished(tc->ssl))
        return TLS_AGAIN;
    while (len > 0) {
        int n = SSL_write(tc->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
        /* A memory BIO takes everything: any stop is a failure. */
        if (n <= 0) {
            if (conn_status(tc, n) != TLS_FAILED)
                snprintf(tc->error, sizeof tc->error, "write refused");
            tc->failed = true;
            return TLS_FAILED;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

void tls_conn_close_notify(tls_conn_t *tc)
{
    if (tc->failed || !SSL_is_init_finished(tc->ssl))
        return;
    SSL_shutdown(tc->ssl);
    ERR_clear_error();
}

size_t tls_conn_out_len(const tls_conn_t *tc)
{
    return BIO_ctrl_pending(tc->wbio);
}

int tls_conn_take_out(tls_conn_t *tc, char **data, size_t *len)
{
    size_t n = BIO_ctrl_pending(tc->wbio);

    *data = NULL;
    *len = 0;
    if (n == 0)
        return 0;
    *data = malloc(n);
    if (*data == NULL)
        return -1;
    if (BIO_read(tc->wbio, *data, (int)n) != (int)n) {
        free(*data);
        *data = NULL;
        return -1;
    }
    *len = n;
    shrink_wbio(tc, n);
    return 0;
}

bool tls_conn_established(const tls_conn_t *tc)
{
    return SSL_is_init_finished(tc->ssl);
}

const char *tls_conn_error(const tls_conn_t *tc)
{
    return tc->error;
}

const char *tls_conn_version(const tls_conn_t *tc)
{
    return SSL_get_version(tc->ssl);
}

void tls_conn_peer_subject(const tls_conn_t *tc, char *buf, size_t size)
{
    X509 *cert = SSL_get1_peer_certificate(tc->ssl);

    buf[0] = '\0';
    if (cert == NULL)
        return;
    X509_NAME_oneline(X509_get_subject_name(cert), buf, (int)size);
    X509_free(cert);
}

int tls_conn_export(const tls_conn_t *tc, const char *label, unsigned char *out, size_t len)
{
    if (!SSL_is_init_finished(tc->ssl) ||
        SSL_export_keying_material(tc->ssl, out, len, label, strlen(label), NULL, 0, 0) != 1) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}
