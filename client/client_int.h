/* client_int.h: what the *_ops.c files (and the async wrappers) use from
 * client.c, the connection and request engine of libmqhub. Not installed. */
#ifndef MQHUB_CLIENT_INT_H
#define MQHUB_CLIENT_INT_H

#include <sys/types.h>

#include <msgpack.h>

#include "mqhub/client.h"

/* Called exactly once per submitted request. @status 0 with the response
 * map, or a code with the error map (NULL for TIMEOUT/ECONN). The callee may
 * take the zone owning @resp by setting *@zone to NULL. */
typedef void (*client_done_fn)(void *arg, int status, const msgpack_object *resp,
                               msgpack_zone **zone, const char *errmsg);

/* A request being built: a frame with its 4-byte length prefix reserved. */
typedef struct client_req {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int timeout_ms; /* 0: the handle's */
} client_req_t;

/* Start {op, id, ...}: @nfields more key/value pairs must be packed on @r->pk. */
void client_req_init(mqhub_client_t *c, client_req_t *r, const char *op, uint32_t nfields);
void client_req_free(client_req_t *r);
/* Pack a NUL-terminated string. */
void client_pack_str(msgpack_packer *pk, const char *s);
/* Pack key @k followed by string @v. */
void client_pack_kv_str(msgpack_packer *pk, const char *k, const char *v);
void client_pack_kv_uint(msgpack_packer *pk, const char *k, uint64_t v);

/* Hand @r over (always: it is freed or owned from here on). Returns 0 (@fn
 * will be called once) or a code (@fn never called). @async: count against
 * the window and wait for a free slot. */
int client_submit(mqhub_client_t *c, client_req_t *r, bool async, client_done_fn fn,
                  void *arg);
/* The async calls: the user's callback (cast back to its own type by @fn)
 * and argument, boxed by client_submit_async() as @fn's arg; @fn copies the
 * box and free()s it. Submits @r like client_submit(c, r, true, ...):
 * 0, or a code (MQHUB_EINTERNAL when out of memory; @fn never called). */
typedef struct client_async {
    void (*cb)(void);
    void *arg;
} client_async_t;
int client_submit_async(mqhub_client_t *c, client_req_t *r, client_done_fn fn,
                        void (*cb)(void), void *arg);
/* An async call whose answer goes as it is to @cb (may be NULL). */
int client_submit_response(mqhub_client_t *c, client_req_t *r, mqhub_response_cb cb,
                           void *arg);
/* Submit and wait. On 0 *@out owns the response; on failure c's errmsg is set. */
int client_call(mqhub_client_t *c, client_req_t *r, mqhub_response_t *out);
/* Submit and wait, keeping nothing of the answer: 0 or the code. */
int client_call_simple(mqhub_client_t *c, client_req_t *r);
/* The list ops (queue.list, topic.list): start @op with the optional
 * prefix (NULL: none), offset and limit (0: none). */
void client_list_req(mqhub_client_t *c, client_req_t *r, const char *op, const char *prefix,
                     uint64_t offset, uint64_t limit);
/* Call @r and read an answer {@key: [names], total?} into @out (total: the
 * count when absent). On failure @out is empty. */
int client_list_call(mqhub_client_t *c, client_req_t *r, const char *key,
                     mqhub_queue_list_t *out);
/* Remember the hello token and client name for every (re)connect. */
void client_set_auth(mqhub_client_t *c, const char *token, const char *client);
/* Set the handle's errmsg (printf-like). */
void client_set_errmsg(mqhub_client_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reading helpers: 0 or MQHUB_EBAD_REQUEST when absent / of another type.
 * Strings may be msgpack str or bin. */
int client_get_uint(const msgpack_object *map, const char *key, uint64_t *out);
int client_get_str(const msgpack_object *map, const char *key, const char **p, size_t *len);
/* Copy a string field into @buf (cut to fit, NUL-terminated); "" when absent. */
void client_copy_str(const msgpack_object *map, const char *key, char *buf, size_t size);
/* Item @i of the "results" array of a batch answer @resp, NULL when absent. */
const msgpack_object *client_result_item(const msgpack_object *resp, size_t i);
/* The status of one result item: the code named by its "code", else 0. */
int client_item_status(const msgpack_object *item);
/* The str items of array @key of @map (others skipped) into *@names (NULL
 * when none): 0, or MQHUB_EINTERNAL with what was copied left to free. */
int client_copy_names(const msgpack_object *map, const char *key, char ***names, size_t *n);

/* client_tls.c: TLS on the handle's socket. One per handle, made from the
 * tls* members of the connect options: 0, or MQHUB_ECONN (a file that does
 * not load) / MQHUB_EINTERNAL with a sentence in @err. */
typedef struct client_tls client_tls_t;
int client_tls_new(client_tls_t **out, const mqhub_client_opts_t *o, char *err,
                   size_t errlen);
/* Ends the connection's TLS (client_tls_end) and frees @t; NULL is fine. */
void client_tls_free(client_tls_t *t);
/* Handshake on the connected non-blocking @fd within @timeout_ms; the
 * server's certificate must chain to the CA and name @host (an IP address
 * literal or a DNS name; tls_server_name instead when set). 0, or
 * MQHUB_ECONN with the reason in @err ("TLS handshake: certificate verify
 * failed: unable to get local issuer certificate"). */
int client_tls_start(client_tls_t *t, int fd, const char *host, int timeout_ms, char *err,
                     size_t errlen);
/* Like recv()/send() on the fd: bytes, 0 at the end (recv), -1 with errno
 * EAGAIN (would block) or EPROTO (client_tls_error() says why). */
ssize_t client_tls_recv(client_tls_t *t, void *buf, size_t n);
ssize_t client_tls_send(client_tls_t *t, const void *buf, size_t n);
/* The last client_tls_recv() waits for the socket to be writable. */
bool client_tls_wants_write(const client_tls_t *t);
/* Send close_notify when the connection is healthy (best effort, never
 * blocks) and forget the connection; the caller closes the fd. */
void client_tls_end(client_tls_t *t);
const char *client_tls_error(const client_tls_t *t);

/* topic_ops.c: decode the push @map into an mqhub_push_t and call @cb with it. */
void client_push_dispatch(mqhub_client_push_cb cb, void *arg, const msgpack_object *map);

#endif
