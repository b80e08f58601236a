/* tls_pki.c: the throwaway PKI of the TLS tests (tls_pki.h): each file is
 * one `openssl` command, run through /bin/sh in the temp dir. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls_pki.h"
#include "tmpdir.h"

/* P-256 keys: fast to make, and every TLS 1.2/1.3 client takes them. */
#define NEWKEY "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

static const char script[] =
    "set -e\n"
    "ca() { openssl req -x509 " NEWKEY " -days 2 -subj \"/CN=$1\" -keyout $2.key -out $2.pem; }\n"
    "leaf() { openssl req " NEWKEY " -subj \"/CN=$1\" -keyout $2.key -out $2.csr\n"
    "  printf '%s\\n' \"$4\" > $2.ext\n"
    "  openssl x509 -req -in $2.csr -CA $3.pem -CAkey $3.key -CAcreateserial -days 2 \\\n"
    "    -extfile $2.ext -out $2.pem; }\n"
    "ca 'mqhub test CA' ca\n"
    "ca 'another CA' other-ca\n"
    "leaf 127.0.0.1 server ca 'subjectAltName=IP:127.0.0.1'\n"
    "leaf 127.0.0.1 other-server other-ca 'subjectAltName=IP:127.0.0.1'\n"
    "leaf client1 client ca 'extendedKeyUsage=clientAuth'\n"
    "leaf rogue rogue other-ca 'extendedKeyUsage=clientAuth'\n";

int tls_pki_make(tls_pki_t *p)
{
    char cmd[sizeof script + 512];
    if (!tmpdir_make(p->dir, sizeof p->dir, "pki")) {
        perror("tmpdir_make");
        return -1;
    }
    snprintf(cmd, sizeof cmd, "cd '%s' && { %s} > openssl.log 2>&1 || { cat openssl.log >&2; "
             "exit 1; }", p->dir, script);
    if (system(cmd) != 0) {
        fprintf(stderr, "tls_pki: making the certificates with openssl failed\n");
        return -1;
    }
    return 0;
}

const char *tls_pki_path(const tls_pki_t *p, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", p->dir, name);
    return buf;
}

void tls_pki_cleanup(tls_pki_t *p)
{
    char cmd[300];
    if (!p->dir[0])
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "tls_pki: could not remove %s\n", p->dir);
    p->dir[0] = '\0';
}

const char *tls_pki_transport(const tls_pki_t *p, const char *name, uint16_t port,
                              const char *cert, const char *extra, char *buf, size_t size)
{
    snprintf(buf, size,
             "transport \"%s\" { path = \"%s\", listen = \"127.0.0.1:%u\",\n"
             "  tls_cert = \"%s/%s.pem\", tls_key = \"%s/%s.key\", %s }\n",
             name, MQHUB_TCP_PLUGIN, port, p->dir, cert, p->dir, cert, extra);
    return buf;
}
