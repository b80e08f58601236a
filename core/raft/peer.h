/* core/raft/peer.h: the raft peer transport (peer.c) — the struct
 * raft_uv_transport that raft_uv gets instead of raft's raft_uv_tcp: libuv
 * TCP where every connection proves the cluster secret (a mutual
 * HMAC-SHA256 challenge-response) before raft reads a byte of it
 * (docs/security.md "Peers"), optionally inside mutual TLS (peer_tls.c).
 * replica.c is its user; the handshake functions are exported for the
 * tests. Loop thread only.
 */
#ifndef MQHUB_RAFT_PEER_H
#define MQHUB_RAFT_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

/* The hello each side sends first, fixed size, integers big-endian:
 *   0   4  magic "MQHP"
 *   4   1  version (PEER_VERSION)
 *   5   1  reserved, 0
 *   6   2  address length n, 1..PEER_ADDRESS_MAX
 *   8   8  node id, > 0
 *  16  32  nonce (RAND_bytes, fresh per connection)
 *  48 256  raft address: n printable ASCII bytes, then zeros
 * The connector sends its hello; the acceptor answers its own hello and its
 * proof; the connector answers its proof. A proof is
 *   HMAC-SHA256(secret, label || connector's hello || acceptor's hello)
 * with the label "mqhub-peer-v1 connector" or "mqhub-peer-v1 acceptor".
 * With peer TLS, the whole exchange runs inside the TLS session and the
 * HMAC input ends with the session's channel binding (PEER_BINDING_SIZE
 * bytes exported under "EXPORTER-mqhub-peer-v1"). */
#define PEER_MAGIC "MQHP"
#define PEER_VERSION 1
#define PEER_NONCE_SIZE 32
#define PEER_ADDRESS_MAX 255
#define PEER_HELLO_SIZE (48 + PEER_ADDRESS_MAX + 1)
#define PEER_PROOF_SIZE 32
/* A handshake not complete after this long is closed. */
#define PEER_HANDSHAKE_MS 5000
/* Bounds of the cluster secret, in bytes (config.c checks them). */
#define PEER_SECRET_MIN 32
#define PEER_SECRET_MAX 1024
#define PEER_BINDING_SIZE 32

/* Peer TLS: PEM files, all three or none (NULL). */
typedef struct peer_tls_files {
    const char *cert; /* this node's certificate chain */
    const char *key;  /* its private key */
    const char *ca;   /* the cluster CA: every peer's certificate is checked against it */
} peer_tls_files_t;

enum peer_side { PEER_CONNECTOR, PEER_ACCEPTOR };

/* Set up @t (caller-allocated; its previous content is ignored) for
 * raft_uv_init(). @secret (copied; NULL: none) is the cluster secret. With
 * none, @allow_unauthenticated runs the same handshake with a public key
 * (format checks only, no authentication); without it the transport takes
 * no peers: it opens no port and refuses every outgoing connection (a single
 * node). @tls (NULL, or files all NULL: none) puts every peer connection
 * inside mutual TLS; the files are loaded here. Returns 0, MQHUB_EINTERNAL
 * (out of memory) or MQHUB_EBAD_REQUEST (a TLS file), with @errmsg. */
int peer_transport_init(struct raft_uv_transport *t, uv_loop_t *loop, const char *secret,
                        bool allow_unauthenticated, const peer_tls_files_t *tls,
                        char *errmsg, size_t errlen);
/* Release @t's memory: after raft_uv's close completed, or when raft never
 * started (no handle was opened before raft's listen). */
void peer_transport_free(struct raft_uv_transport *t);

/* The handshake's pieces (exported for tests/unit/peer_test.c and the
 * forged-peer cluster test). */
/* Fill @out with node @id's hello. 0, or MQHUB_EBAD_REQUEST when @id is 0 or
 * @address is empty or longer than PEER_ADDRESS_MAX. */
int peer_hello_encode(uint8_t out[PEER_HELLO_SIZE], uint64_t id, const char *address,
                      const uint8_t nonce[PEER_NONCE_SIZE]);
/* Check and read a received hello: 0 with *@id and @address (NUL-ended), or
 * MQHUB_EBAD_REQUEST with the reason in @errmsg. */
int peer_hello_decode(const uint8_t in[PEER_HELLO_SIZE], uint64_t *id,
                      char address[PEER_ADDRESS_MAX + 1], char *errmsg, size_t errlen);
/* The proof that @side knows @key, over both hellos and @binding (the TLS
 * channel binding, PEER_BINDING_SIZE bytes; NULL without TLS). 0, or
 * MQHUB_EINTERNAL when libcrypto fails. */
int peer_proof(uint8_t out[PEER_PROOF_SIZE], const char *key, enum peer_side side,
               const uint8_t connector_hello[PEER_HELLO_SIZE],
               const uint8_t acceptor_hello[PEER_HELLO_SIZE], const uint8_t *binding);

#endif
