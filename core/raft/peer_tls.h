/* core/raft/peer_tls.h: TLS under the raft peer transport (peer_tls.c). A
 * tunnel per peer connection runs TLS (core/util/tls.c) on the TCP socket
 * and moves the plaintext through a socketpair; the other end of the pair,
 * a uv_pipe_t, is the stream peer.c runs its handshake on and then hands to
 * raft, which only reads, writes and closes streams. peer.c is the only
 * user. Loop thread only.
 */
#ifndef MQHUB_RAFT_PEER_TLS_H
#define MQHUB_RAFT_PEER_TLS_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "peer.h"

/* The TLS context of one transport and the tunnels made from it. */
typedef struct peer_tls peer_tls_t;
typedef struct peer_tunnel peer_tunnel_t;

/* A tunnel ended while its owner still listened: @why is a sentence for the
 * refusal log ("TLS: certificate verify failed: ..."). The tunnel forgets
 * @owner before the call; it closes itself afterwards. */
typedef void (*peer_tunnel_down_cb)(void *owner, const char *why);

/* Load @files (mutual TLS: our certificate and key, the cluster CA that
 * must have signed the other side's certificate). 0, or MQHUB_EBAD_REQUEST
 * with "node.peer_tls_cert /x.pem: No such file or directory" in @errmsg.
 * Freed with peer_tls_free() once peer_tls_close()'s callback ran (or when
 * no tunnel was ever started). */
int peer_tls_new(peer_tls_t **out, uv_loop_t *loop, const peer_tls_files_t *files,
                 char *errmsg, size_t errlen);
/* Close every tunnel; @cb(@data) runs once none is left (maybe at once). */
void peer_tls_close(peer_tls_t *pt, void (*cb)(void *data), void *data);
void peer_tls_free(peer_tls_t *pt);

/* Start TLS on the connected @tcp (raft_malloc'ed; taken on success, the
 * tunnel closes and raft_frees it) as the client (@connector) or the server.
 * *@stream is a new raft_malloc'ed uv_pipe_t carrying the plaintext, the
 * caller's to read, write and close (free it with raft_free in the close
 * callback); nothing written to it leaves before the TLS handshake is done.
 * @remote ("from 127.0.0.1:40112") names the peer in logs. Until
 * peer_tunnel_detach() or peer_tunnel_abort(), @cb(@owner, why) reports the
 * tunnel's end. 0, or MQHUB_EINTERNAL (out of memory, no socketpair). */
int peer_tunnel_start(peer_tls_t *pt, uv_tcp_t *tcp, bool connector, const char *remote,
                      void *owner, peer_tunnel_down_cb cb, peer_tunnel_t **out,
                      uv_stream_t **stream);
/* The channel binding of an established tunnel: a TLS exporter value, the
 * same on both ends of this TLS session only. 0, or -1 before the handshake
 * is done. */
int peer_tunnel_binding(const peer_tunnel_t *tn, uint8_t out[PEER_BINDING_SIZE]);
/* The owner no longer hears of the tunnel (raft owns the stream now). */
void peer_tunnel_detach(peer_tunnel_t *tn);
/* Detach and close the tunnel (its stream gets an end of file). */
void peer_tunnel_abort(peer_tunnel_t *tn);

#endif
