/* tls_pki.h: a throwaway PKI for the TLS tests, made with the `openssl`
 * command in a temp dir, and the config of a hub with TLS ports: a test CA
 * (ca.pem) signing a server certificate for IP:127.0.0.1 (server.pem/.key)
 * and a client certificate (client.pem/.key); another CA (other-ca.pem)
 * signing a server certificate (other-server.pem/.key) and a client
 * certificate (rogue.pem/.key) that the test CA does not know.
 */
#ifndef MQHUB_TLS_PKI_H
#define MQHUB_TLS_PKI_H

#include <stddef.h>
#include <stdint.h>

typedef struct tls_pki {
    char dir[256]; /* the files above */
} tls_pki_t;

/* Make the temp dir and every file. 0, or -1 (openssl's output on stderr). */
int tls_pki_make(tls_pki_t *p);
/* @name's path in the dir ("ca.pem"), into @buf. */
const char *tls_pki_path(const tls_pki_t *p, const char *name, char *buf, size_t size);
/* Remove the dir. */
void tls_pki_cleanup(tls_pki_t *p);
/* A transport block for the hub's config: tcp.so (MQHUB_TCP_PLUGIN) as
 * transport @name on 127.0.0.1:@port with the server certificate @cert
 * ("server" or "other-server") and @extra (more keys, may be ""), into @buf. */
const char *tls_pki_transport(const tls_pki_t *p, const char *name, uint16_t port,
                              const char *cert, const char *extra, char *buf, size_t size);

#endif
