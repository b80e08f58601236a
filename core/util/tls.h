/* tls.h: a TLS engine over memory buffers (OpenSSL with two memory BIOs),
 * for code that owns its sockets: the TCP transport (server side) and the
 * raft peer transport (core/raft/peer_tls.c, both sides, mutual
 * certificates). It never touches a socket or a loop: the
 * transport feeds it the bytes it read (tls_conn_feed), pulls plaintext out
 * (tls_conn_read), pushes plaintext in (tls_conn_write) and writes whatever
 * tls_conn_take_out() hands it. Not thread-safe; one loop thread per context.
 */
#ifndef MQHUB_TLS_H
#define MQHUB_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Who must present a client certificate (verified against ca_file). */
enum tls_client_certs { TLS_CERTS_NONE, TLS_CERTS_OPTIONAL, TLS_CERTS_REQUIRED };

typedef struct tls_config {
    const char *cert_file; /* PEM: the server's certificate chain */
    const char *key_file;  /* PEM: its private key */
    const char *ca_file;   /* PEM: CAs that sign client certificates, or NULL */
    enum tls_client_certs client_certs;
    const char *keys;      /* the config keys' prefix in errors: "tls_" when NULL */
} tls_config_t;

/* One per listener: certificates, key and policy (TLS 1.2 minimum, no
 * compression, no renegotiation). Its connections can be either side; as a
 * client, a connection verifies the server's chain against ca_file whenever
 * client_certs is not TLS_CERTS_NONE (no host name check). */
typedef struct tls_ctx tls_ctx_t;
/* One per connection. */
typedef struct tls_conn tls_conn_t;

/* Why the queued OpenSSL errors happened, short ("No such file or
 * directory", "wrong version number"; @fallback when none says), into @buf,
 * emptying the thread's OpenSSL error queue. Also used by the client
 * library's own TLS (client/client_tls.c). */
void tls_error_text(char *buf, size_t size, const char *fallback);

/* tls_conn_read() results besides a byte count. */
#define TLS_AGAIN 0     /* needs more bytes from the peer */
#define TLS_CLOSED (-1) /* the peer sent close_notify */
#define TLS_FAILED (-2) /* handshake or record error: tls_conn_error() says why */

/* Load @cfg's files and make a context. 0, or -1 with a sentence in @errmsg
 * ("tls_key /etc/x.pem: no such file"). The caller frees it with
 * tls_ctx_free() once every connection made from it is freed. */
int tls_ctx_new(tls_ctx_t **out, const tls_config_t *cfg, char *errmsg, size_t errlen);
void tls_ctx_free(tls_ctx_t *ctx);

/* A server connection of @ctx, waiting for the client's hello; NULL when out
 * of memory. Freed with tls_conn_free(). */
tls_conn_t *tls_conn_new(tls_ctx_t *ctx);
/* The same for the client side: the first tls_conn_read() queues its hello. */
tls_conn_t *tls_conn_new_client(tls_ctx_t *ctx);
void tls_conn_free(tls_conn_t *tc);

/* Hand over @len bytes read from the peer (copied). 0, or -1 out of memory. */
int tls_conn_feed(tls_conn_t *tc, const char *data, size_t len);
/* Advance the handshake and decrypt: up to @len plaintext bytes into @buf.
 * Returns the byte count (> 0), TLS_AGAIN, TLS_CLOSED or TLS_FAILED. Output
 * for the peer (handshake records) may be waiting afterwards. */
ssize_t tls_conn_read(tls_conn_t *tc, char *buf, size_t len);
/* Encrypt all of @data (records wait in the output). 0; TLS_AGAIN before the
 * handshake is done (nothing taken); TLS_FAILED. */
int tls_conn_write(tls_conn_t *tc, const char *data, size_t len);
/* Queue close_notify (best effort; nothing after a failure). */
void tls_conn_close_notify(tls_conn_t *tc);
/* Bytes waiting to be written to the peer. */
size_t tls_conn_out_len(const tls_conn_t *tc);
/* Take every waiting byte: *@data (malloc'ed, the caller frees it) and
 * *@len. 0 (*@data NULL when nothing waits), or -1 out of memory. */
int tls_conn_take_out(tls_conn_t *tc, char **data, size_t *len);
/* Whether the handshake has completed. */
bool tls_conn_established(const tls_conn_t *tc);
/* Why the last TLS_FAILED happened ("wrong version number", "certificate
 * verify failed: ..."): valid until the next call on @tc. */
const char *tls_conn_error(const tls_conn_t *tc);
/* The negotiated version ("TLSv1.3") and the client certificate's subject
 * (cut to @size, "" when none), for logs. */
const char *tls_conn_version(const tls_conn_t *tc);
void tls_conn_peer_subject(const tls_conn_t *tc, char *buf, size_t size);
/* @len bytes of keying material exported for @label (RFC 5705/8446), the
 * same on both ends of an established connection: a channel binding. 0, or
 * -1 before the handshake is done. */
int tls_conn_export(const tls_conn_t *tc, const char *label, unsigned char *out, size_t len);

#endif
