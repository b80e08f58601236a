/* libmqhub: the C client library of mqhub (wire protocol: docs/protocol.md).
 *
 * Two ways to talk to a hub over one handle:
 *   - blocking calls, one function per operation (mqhub_client_queue_create,
 *     mqhub_client_send, mqhub_client_receive, ...): each returns when the
 *     answer has arrived or its timeout has passed;
 *   - pipelined calls (mqhub_client_send_async, mqhub_client_call_async): submit
 *     up to `window` requests without waiting; answers are matched by id and
 *     delivered to callbacks from mqhub_client_poll() / mqhub_client_flush().
 * Both may be mixed; a blocking call delivers pending async answers while it
 * waits.
 *
 * Return codes: 0 on success, a negative MQHUB_E* code of mqhub/errors.h (the
 * server's code, or MQHUB_ETIMEOUT when a call's timeout passed; the server
 * also answers TIMEOUT when leadership changed before the request was known
 * to be committed: like a lost connection, it may or may not have been
 * performed, so it is not retried), or
 * MQHUB_ECONN (below) when the connection failed or was lost.
 * mqhub_client_errmsg() then holds the server's sentence or what failed.
 *
 * Retries: NOT_LEADER makes the handle reconnect to the leader the server
 * named and resend (at most 5 hops); UNAVAILABLE, and NOT_LEADER naming no
 * leader (an election), are retried after 50 ms, doubling up to 2 s, until
 * the call's timeout. A cluster: give connect every node ("h1:p1,h2:p2,..."):
 * when a connect fails the handle tries the next address in turn. Both answers mean the server
 * did not perform the request, so retrying is safe. A request whose
 * connection drops after it was written fails with MQHUB_ECONN (the server
 * may or may not have performed it; use dedup_id to make sends safe to
 * repeat); the next call reconnects.
 *
 * Included here: the protocol's limits (MQHUB_NAME_MAX, MQHUB_BATCH_MAX, ...:
 * mqhub/protocol.h) and the MQHUB_VERSION_* macros (mqhub/version.h).
 *
 * Threads: a handle is used by one thread at a time; distinct handles are
 * independent. Callbacks run on the thread that calls poll/flush or a
 * blocking function, and must not close the handle.
 */
#ifndef MQHUB_CLIENT_H
#define MQHUB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "mqhub/errors.h"
#include "mqhub/protocol.h"
#include "mqhub/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Marks what libmqhub exports. The library is built with hidden visibility,
 * so the functions of this header (and mqhub_strerror & co of errors.h) are
 * the whole of libmqhub.so's dynamic symbol table. */
#define MQHUB_EXTERN __attribute__((visibility("default")))

/* Client-side code (outside the wire list): connecting failed, or the
 * connection was lost or the server sent something that is not a frame. */
#define MQHUB_ECONN (-2001)

#define MQHUB_MSG_ID_MAX 96 /* buffer size for a msg_id (longer ids are cut) */

typedef struct mqhub_client mqhub_client_t;

/* ---------------------------------------------------------------- handle */

/* The version of the libmqhub in use ("0.1.0"), which may be newer than the
 * MQHUB_VERSION_STRING of the headers the program was built with. */
MQHUB_EXTERN const char *mqhub_version(void);

typedef struct mqhub_client_opts {
    int timeout_ms;          /* per call; 0: 10000 */
    const char *token;       /* when set, connect (and every reconnect) does hello */
    const char *client_name; /* sent in hello; NULL: "libmqhub" */
    unsigned window;         /* async requests in flight; 0: 128 */
    /* TLS (docs/client.md "TLS"): on when @tls is true or @tls_ca or
     * @tls_cert is set. The server's certificate must chain to @tls_ca and
     * name the host or IP address of the address dialled. Files are PEM,
     * read at connect. TLS 1.2 is the minimum. */
    bool tls;
    const char *tls_ca;          /* CA file to verify the server; NULL: the system's */
    const char *tls_cert;        /* client certificate (chain), when the server asks */
    const char *tls_key;         /* its private key; NULL: read from @tls_cert */
    const char *tls_server_name; /* name to verify instead of the dialled host */
} mqhub_client_opts_t;

/* Connect to @address ("host:port", or a comma-separated list of them tried
 * in turn) and, when @opts->token is set, say hello
 * with it. @opts may be NULL (defaults). On success *@out is a new handle the
 * caller closes with mqhub_client_close(). With TLS the handshake, and one
 * ping, happen here.
 * Returns 0; MQHUB_ECONN (bad address, refused, unreachable, no answer within
 * the timeout; TLS: a file that does not load, a handshake refused either
 * way, e.g. "TLS handshake: certificate verify failed: ..."); MQHUB_EUNAUTHORIZED
 * (token refused); MQHUB_ETIMEOUT. A refused hello is named, in @err and in
 * the errmsg of later calls on the handle it makes fail: "hello refused
 * (UNAUTHORIZED): token: missing or wrong; ..." with the hello's code (a user
 * created on the leader is unknown to a follower until it applied it). On failure *@out is NULL and @err (may
 * be NULL) receives a sentence. */
MQHUB_EXTERN int mqhub_client_connect(mqhub_client_t **out, const char *address,
                                      const mqhub_client_opts_t *opts, char *err, size_t errlen);

/* Close the connection and free the handle. Async requests still pending are
 * dropped without their callbacks. @c may be NULL. */
MQHUB_EXTERN void mqhub_client_close(mqhub_client_t *c);

/* The sentence of the last failed call on @c (server's "error" field or a
 * local reason); "" after a success. Valid until the next call on @c. */
MQHUB_EXTERN const char *mqhub_client_errmsg(const mqhub_client_t *c);

/* Like mqhub_strerror() but also knows MQHUB_ECONN. */
MQHUB_EXTERN const char *mqhub_client_strerror(int code);

/* Address ("host:port") the handle is connected (or reconnecting) to. */
MQHUB_EXTERN const char *mqhub_client_address(const mqhub_client_t *c);

/* --------------------------------------------------------------- session */

typedef struct mqhub_server_info {
    char server[32];   /* "mqhub" */
    unsigned version;  /* protocol version, 1 */
    uint64_t node;     /* node id */
    char leader[128];  /* "host:port" or "" when unknown */
    uint64_t max_frame;
} mqhub_server_info_t;

/* hello {version: 1, client?, token?}. @token/@client may be NULL. @info may be
 * NULL. The token is remembered for reconnects. Returns 0,
 * MQHUB_EUNAUTHORIZED, MQHUB_ETIMEOUT, MQHUB_ECONN. */
MQHUB_EXTERN int mqhub_client_hello(mqhub_client_t *c, const char *token, const char *client,
                                    mqhub_server_info_t *info);

/* ping {}. Returns 0, MQHUB_EUNAUTHORIZED, MQHUB_ETIMEOUT, MQHUB_ECONN. */
MQHUB_EXTERN int mqhub_client_ping(mqhub_client_t *c);

/* ----------------------------------------------------------------- queues */

enum mqhub_attr_bit {
    MQHUB_ATTR_VISIBILITY_TIMEOUT = 1u << 0,
    MQHUB_ATTR_POLLING_WAIT = 1u << 1,
    MQHUB_ATTR_MAX_MSG_SIZE = 1u << 2,
    MQHUB_ATTR_RETENTION = 1u << 3,
    MQHUB_ATTR_REWIND_WINDOW = 1u << 4,
    MQHUB_ATTR_MAX_BACKLOG = 1u << 5,
    MQHUB_ATTR_DELAY = 1u << 6,
    MQHUB_ATTR_DEAD_LETTER = 1u << 7,
    MQHUB_ATTR_ORDERED = 1u << 8,
    MQHUB_ATTR_HOOK = 1u << 9,
};

/* Queue attributes; only the members whose bit is in @set are sent (create,
 * set) or were present in the answer (get). Units as in the protocol:
 * seconds, bytes, messages. */
typedef struct mqhub_queue_attrs {
    unsigned set; /* enum mqhub_attr_bit */
    uint32_t visibility_timeout;
    uint32_t polling_wait;
    uint32_t max_msg_size;
    uint32_t retention;
    uint32_t rewind_window;
    uint64_t max_backlog;
    uint32_t delay;
    char dead_letter_queue[MQHUB_NAME_MAX + 1];
    uint32_t dead_letter_max_receives;
    bool ordered;
    char hook[MQHUB_NAME_MAX + 1]; /* script name; "" detaches */
} mqhub_queue_attrs_t;

/* Set one attribute from its protocol name and a text value ("60", "true",
 * "dlq:5" for dead_letter as queue:max_receives). Used by the CLI.
 * Returns 0 or MQHUB_EBAD_REQUEST (unknown name or bad value). */
MQHUB_EXTERN int mqhub_queue_attrs_parse(mqhub_queue_attrs_t *a, const char *name,
                                         const char *value);

typedef struct mqhub_queue_stats {
    uint64_t ready, inflight, delayed, retained, oldest_age_ms;
    uint64_t sent_total, received_total, deleted_total;
} mqhub_queue_stats_t;

typedef struct mqhub_queue_info {
    char name[MQHUB_NAME_MAX + 1];
    mqhub_queue_attrs_t attrs;
    mqhub_queue_stats_t stats;
} mqhub_queue_info_t;

/* queue.create {name, attrs?}; @attrs may be NULL. Returns 0 (also when an
 * equal queue exists), MQHUB_EEXISTS, MQHUB_EBAD_NAME, MQHUB_EBAD_REQUEST, plus
 * the common codes (UNAUTHORIZED, UNAVAILABLE, TIMEOUT, ECONN, INTERNAL). */
MQHUB_EXTERN int mqhub_client_queue_create(mqhub_client_t *c, const char *name,
                                           const mqhub_queue_attrs_t *attrs);
/* queue.delete / queue.purge {name}. 0, MQHUB_ENOT_FOUND, MQHUB_EBAD_NAME, common. */
MQHUB_EXTERN int mqhub_client_queue_delete(mqhub_client_t *c, const char *name);
MQHUB_EXTERN int mqhub_client_queue_purge(mqhub_client_t *c, const char *name);
/* queue.get {name} into *@out (plain struct, nothing to free).
 * 0, MQHUB_ENOT_FOUND, MQHUB_EBAD_NAME, common. */
MQHUB_EXTERN int mqhub_client_queue_get(mqhub_client_t *c, const char *name,
                                        mqhub_queue_info_t *out);
/* queue.set {name, attrs} (partial update). 0, MQHUB_ENOT_FOUND,
 * MQHUB_EBAD_REQUEST, MQHUB_EBAD_NAME, common. */
MQHUB_EXTERN int mqhub_client_queue_set(mqhub_client_t *c, const char *name,
                                        const mqhub_queue_attrs_t *attrs);

typedef struct mqhub_queue_list {
    char **names; /* n strings */
    size_t n;
    uint64_t total; /* queues matching the prefix, all pages */
} mqhub_queue_list_t;
/* queue.list {prefix?, offset?, limit?}: @prefix may be NULL, @limit 0 means
 * the server default (100). On success the caller owns @out and frees it with
 * mqhub_queue_list_free(); on failure @out is empty. */
MQHUB_EXTERN int mqhub_client_queue_list(mqhub_client_t *c, const char *prefix, uint64_t offset,
                                         uint64_t limit, mqhub_queue_list_t *out);
MQHUB_EXTERN void mqhub_queue_list_free(mqhub_queue_list_t *l);

/* queue.rewind {name, time?, seq?}: @time_ms / @seq may be NULL (absent).
 * *@rewound (may be NULL) gets the count. 0, MQHUB_ENOT_FOUND,
 * MQHUB_EBAD_REQUEST, common. */
MQHUB_EXTERN int mqhub_client_queue_rewind(mqhub_client_t *c, const char *name,
                                           const uint64_t *time_ms, const uint64_t *seq,
                                           uint64_t *rewound);

/* What one queue.redrive command did. */
typedef struct mqhub_redrive_result {
    uint64_t moved;     /* messages moved to their source queue (or `to`) */
    uint64_t kept;      /* ready messages looked at that stay (source gone) */
    uint64_t remaining; /* ready messages left in the dead-letter queue */
    uint64_t next;      /* the @from of the next command; 0: the walk is done */
} mqhub_redrive_result_t;

/* queue.redrive {queue, to?, max?, from?}: one replicated command moving up
 * to @max (1-10000; 0: the server's default, 1000) ready messages of
 * dead-letter queue @queue (and up to 32 MiB of them), from seq @from on,
 * back to the queues they were dead-lettered from, or to @to (NULL: their
 * sources). Loop while out->next != 0, passing it as @from. 0, MQHUB_ENOT_FOUND (@queue or @to),
 * MQHUB_EBAD_REQUEST (not a dead-letter queue and no @to), common. */
MQHUB_EXTERN int mqhub_client_queue_redrive(mqhub_client_t *c, const char *queue,
                                            const char *to, uint32_t max, uint64_t from,
                                            mqhub_redrive_result_t *out);

/* --------------------------------------------------------------- messages */

typedef struct mqhub_attr {
    const char *key;
    const char *value;
} mqhub_attr_t;

typedef struct mqhub_send_opts {
    bool has_delay;
    uint32_t delay;            /* seconds, when has_delay */
    const mqhub_attr_t *attrs; /* n_attrs string pairs, may be NULL */
    size_t n_attrs;
    const char *group;         /* ordered queues; NULL: none */
    const char *dedup_id;      /* NULL: none */
} mqhub_send_opts_t;

/* Outcome of one send; @status is 0 or the item's MQHUB_E* code. */
typedef struct mqhub_send_result {
    int status;
    char msg_id[MQHUB_MSG_ID_MAX];
    uint64_t seq;
    char error[160]; /* server sentence when status != 0 */
} mqhub_send_result_t;

/* send {queue, body, ...}. @opts and @out may be NULL. Returns 0,
 * MQHUB_ENOT_FOUND, MQHUB_ETOO_LARGE, MQHUB_EBACKLOG_FULL, MQHUB_EBLOCKED,
 * MQHUB_EBAD_REQUEST, common. */
MQHUB_EXTERN int mqhub_client_send(mqhub_client_t *c, const char *queue, const void *body,
                                   size_t len, const mqhub_send_opts_t *opts,
                                   mqhub_send_result_t *out);

typedef struct mqhub_batch_msg {
    const void *body;
    size_t len;
    const mqhub_send_opts_t *opts; /* may be NULL */
} mqhub_batch_msg_t;

/* send_batch {queue, msgs} with 1..MQHUB_BATCH_MAX messages. @results holds
 * @n entries (caller's array), filled in order; each has its own status.
 * Returns 0 when the batch was answered (check each result), or the code of
 * the whole request (MQHUB_EBAD_REQUEST for n = 0 or > 256, NOT_FOUND, common). */
MQHUB_EXTERN int mqhub_client_send_batch(mqhub_client_t *c, const char *queue,
                                         const mqhub_batch_msg_t *msgs, size_t n,
                                         mqhub_send_result_t *results);

typedef struct mqhub_receive_opts {
    unsigned max;   /* 1..256; 0: 1 */
    int wait;       /* long-poll seconds 0..30; < 0: the queue's polling_wait */
    int visibility; /* seconds; < 0: the queue's visibility_timeout */
} mqhub_receive_opts_t;

typedef struct mqhub_msg {
    char msg_id[MQHUB_MSG_ID_MAX];
    uint64_t seq;
    char *receipt;
    void *body; /* body_len bytes, plus a NUL after them for convenience */
    size_t body_len;
    mqhub_attr_t *attrs; /* n_attrs pairs of NUL-terminated strings */
    size_t n_attrs;
    char *group; /* NULL when none */
    uint64_t enqueued_at, first_received_at, next_visible_at; /* ms since epoch */
    uint32_t receive_count;
} mqhub_msg_t;

typedef struct mqhub_msg_list {
    mqhub_msg_t *msgs;
    size_t n;
} mqhub_msg_list_t;

/* receive {queue, max?, wait?, visibility?}. @opts may be NULL. The call's
 * timeout is stretched to wait + 5 s. On success the caller owns @out (n may
 * be 0: nothing arrived within wait) and frees it with mqhub_msg_list_free();
 * on failure @out is empty. 0, MQHUB_ENOT_FOUND, MQHUB_EBAD_REQUEST, common. */
MQHUB_EXTERN int mqhub_client_receive(mqhub_client_t *c, const char *queue,
                                      const mqhub_receive_opts_t *opts, mqhub_msg_list_t *out);
MQHUB_EXTERN void mqhub_msg_list_free(mqhub_msg_list_t *l);

/* delete {queue, receipts}. @statuses (may be NULL) receives @n codes, 0 or
 * e.g. MQHUB_EINVALID_RECEIPT per receipt. Returns 0 when answered, else the
 * request's code (NOT_FOUND, BAD_REQUEST, common). */
MQHUB_EXTERN int mqhub_client_delete(mqhub_client_t *c, const char *queue,
                                     const char *const *receipts, size_t n, int *statuses);

/* change_visibility {queue, receipt, timeout}. *@next_visible_at may be NULL.
 * 0, MQHUB_EINVALID_RECEIPT, MQHUB_ENOT_FOUND, MQHUB_EBAD_REQUEST, common. */
MQHUB_EXTERN int mqhub_client_change_visibility(mqhub_client_t *c, const char *queue,
                                                const char *receipt, uint32_t timeout,
                                                uint64_t *next_visible_at);

/* ---------------------------------------------------------------- cluster */

#define MQHUB_CLUSTER_MAX_NODES 64

typedef struct mqhub_cluster_node {
    uint64_t id;
    char address[128];  /* raft address */
    char client[128];   /* client address, "" when the answering node does not know it */
    char role[16];      /* "voter", "standby", "spare" */
    bool leader;
    bool has_match;     /* match_index known: the answer came from the leader */
    uint64_t match_index;
} mqhub_cluster_node_t;

/* cluster.status: raft's view from the node that answered (any node answers;
 * no NOT_LEADER). */
typedef struct mqhub_cluster_status {
    uint64_t node;        /* the node that answered */
    char role[16];        /* its role: "leader" or "follower" */
    char leader[128];     /* leader's client address, "" when unknown */
    uint64_t leader_id;   /* 0 when unknown */
    uint64_t term, commit_index, last_applied;
    char digest[65];      /* hex SHA-256 of its state, when asked; else "" */
    size_t n_nodes;
    mqhub_cluster_node_t nodes[MQHUB_CLUSTER_MAX_NODES];
} mqhub_cluster_status_t;

/* cluster.status {digest?}. @digest asks for the state digest (hashes the
 * whole state: slow on a large backlog). 0 or the common codes. */
MQHUB_EXTERN int mqhub_client_cluster_status(mqhub_client_t *c, bool digest,
                                             mqhub_cluster_status_t *out);
/* cluster.add {node, address, client?}: add node @node whose raft listens on
 * @address and clients connect to @client (may be NULL); returns once it is a
 * voter (the call's timeout is at least 60 s: catching up may take a while).
 * 0, MQHUB_EEXISTS (a member already), MQHUB_EBAD_REQUEST, MQHUB_EUNAVAILABLE
 * (another change in progress or the catch-up failed; retry), common. */
MQHUB_EXTERN int mqhub_client_cluster_add(mqhub_client_t *c, uint64_t node, const char *address,
                                          const char *client);
/* cluster.remove {node}. 0, MQHUB_ENOT_FOUND, common. */
MQHUB_EXTERN int mqhub_client_cluster_remove(mqhub_client_t *c, uint64_t node);
/* cluster.transfer {node?}: hand leadership to voter @node (0: raft picks).
 * 0, MQHUB_ENOT_FOUND, MQHUB_EBAD_REQUEST (not another voter),
 * MQHUB_EUNAVAILABLE (did not complete), common. */
MQHUB_EXTERN int mqhub_client_cluster_transfer(mqhub_client_t *c, uint64_t node);

/* -------------------------------------------------------- generic calls */

/* A response map and the zone that owns it. */
typedef struct mqhub_response {
    msgpack_object map; /* the whole response: id, ok, results or code/error */
    msgpack_zone *zone;
} mqhub_response_t;
MQHUB_EXTERN void mqhub_response_free(mqhub_response_t *r);

/* Look up @key in a response (or any) map; NULL when absent or not a map. */
MQHUB_EXTERN const msgpack_object *mqhub_map_get(const msgpack_object *map, const char *key);

/* Any operation: sends {op: @op, id, ...fields of @args} where @args is a map
 * msgpack_object or NULL. On 0 the caller owns *@out (free it with
 * mqhub_response_free()). On an error answer the code is returned, the
 * sentence is in mqhub_client_errmsg() and *@out is left empty. */
MQHUB_EXTERN int mqhub_client_call(mqhub_client_t *c, const char *op, const msgpack_object *args,
                                   mqhub_response_t *out);

/* queue.peek {queue, max, from?}: up to @max (1-256) ready messages from seq
 * @from on (0: the first), in seq order, locking and counting nothing. On 0
 * the caller owns *@out (mqhub_response_free): `msgs` as receive's without
 * `receipt`, plus `state`; `next`, the seq to pass as @from to go on, when
 * the peek stopped early. 0, MQHUB_ENOT_FOUND, MQHUB_EBAD_REQUEST,
 * MQHUB_EFORBIDDEN (peek needs receive on the queue), common. */
MQHUB_EXTERN int mqhub_client_queue_peek(mqhub_client_t *c, const char *queue, uint32_t max,
                                         uint64_t from, mqhub_response_t *out);

/* connection.list {}: the leader's client sessions (docs/protocol.md
 * "Connections and consumers"); consumer.list {queue?, topic?} (at most one
 * of them, NULL: absent): its parked long polls and push consumers. On 0 the
 * caller owns *@out (mqhub_response_free). Need monitor (or admin) on `*`. */
MQHUB_EXTERN int mqhub_client_connection_list(mqhub_client_t *c, mqhub_response_t *out);
MQHUB_EXTERN int mqhub_client_consumer_list(mqhub_client_t *c, const char *queue,
                                            const char *topic, mqhub_response_t *out);

/* ------------------------------------------------------ pipelined calls */

/* Called once per async request: @status 0 with the response map @resp (valid
 * during the call only), or a code with @resp the error map (NULL for
 * TIMEOUT/ECONN); @errmsg the sentence ("" on success). */
typedef void (*mqhub_response_cb)(void *arg, int status, const msgpack_object *resp,
                                  const char *errmsg);
/* Called once per async send with its result (status, msg_id, seq, error). */
typedef void (*mqhub_send_cb)(void *arg, const mqhub_send_result_t *res);

/* Queue a request without waiting for its answer. When @window requests are
 * in flight it first waits (delivering answers) for a free slot, up to the
 * timeout. Returns 0 (the callback will be called exactly once, from a later
 * poll/flush/blocking call), MQHUB_ETIMEOUT (no slot freed), MQHUB_ECONN
 * (cannot connect); on failure the callback is never called. @args as for
 * mqhub_client_call. */
MQHUB_EXTERN int mqhub_client_call_async(mqhub_client_t *c, const char *op,
                                         const msgpack_object *args, mqhub_response_cb cb,
                                         void *arg);
/* send {queue, body, ...} pipelined; @body is copied. Returns as call_async. */
MQHUB_EXTERN int mqhub_client_send_async(mqhub_client_t *c, const char *queue, const void *body,
                                         size_t len, const mqhub_send_opts_t *opts,
                                         mqhub_send_cb cb, void *arg);

/* Write what is queued and deliver the answers that arrive within
 * @timeout_ms (0: only what is already there; < 0: until one arrives).
 * Returns the number of callbacks called (>= 0) or MQHUB_ECONN when nothing is
 * in flight and the connection cannot be restored. */
MQHUB_EXTERN int mqhub_client_poll(mqhub_client_t *c, int timeout_ms);
/* Poll until no request is in flight. 0, or MQHUB_ETIMEOUT after
 * @timeout_ms (< 0: the handle's timeout per request, i.e. no extra bound). */
MQHUB_EXTERN int mqhub_client_flush(mqhub_client_t *c, int timeout_ms);
/* Requests submitted and not yet answered. */
MQHUB_EXTERN unsigned mqhub_client_pending(const mqhub_client_t *c);

/* ------------------------------------------------------------- topics */

enum mqhub_topic_attr_bit {
    MQHUB_TOPIC_MAX_MSG_SIZE = 1u << 0,
    MQHUB_TOPIC_RETENTION = 1u << 1,
    MQHUB_TOPIC_HOOK = 1u << 2,
};

/* Topic attributes; only members whose bit is in @set are sent / were
 * answered. max_msg_size in bytes (1024-1048576), retention in seconds. */
typedef struct mqhub_topic_attrs {
    unsigned set; /* enum mqhub_topic_attr_bit */
    uint32_t max_msg_size;
    uint32_t retention;
    char hook[MQHUB_NAME_MAX + 1]; /* script name; "" detaches (topic.set) */
} mqhub_topic_attrs_t;

typedef struct mqhub_topic_info {
    char name[MQHUB_NAME_MAX + 1];
    mqhub_topic_attrs_t attrs;
    uint64_t retained, published_total, first_seq, last_seq;
    char **subscriptions; /* n_subscriptions names; mqhub_topic_info_free() */
    size_t n_subscriptions;
} mqhub_topic_info_t;

/* topic.create {name, attrs?} (@attrs may be NULL) / topic.set {name, attrs}.
 * 0 (create: also when an equal topic exists), MQHUB_EEXISTS,
 * MQHUB_ENOT_FOUND (set), MQHUB_EBAD_NAME, MQHUB_EBAD_REQUEST, common. */
MQHUB_EXTERN int mqhub_client_topic_create(mqhub_client_t *c, const char *name,
                                           const mqhub_topic_attrs_t *attrs);
MQHUB_EXTERN int mqhub_client_topic_set(mqhub_client_t *c, const char *name,
                                        const mqhub_topic_attrs_t *attrs);
/* topic.delete {name}: also its subscriptions and retained log.
 * 0, MQHUB_ENOT_FOUND, MQHUB_EBAD_NAME, common. */
MQHUB_EXTERN int mqhub_client_topic_delete(mqhub_client_t *c, const char *name);
/* topic.get {name}. On 0 the caller frees *@out with mqhub_topic_info_free().
 * 0, MQHUB_ENOT_FOUND, MQHUB_EBAD_NAME, common. */
MQHUB_EXTERN int mqhub_client_topic_get(mqhub_client_t *c, const char *name,
                                        mqhub_topic_info_t *out);
MQHUB_EXTERN void mqhub_topic_info_free(mqhub_topic_info_t *t);
/* topic.list {prefix?, offset?, limit?} into a list of names (freed with
 * mqhub_queue_list_free(); the struct is the generic list of names). */
MQHUB_EXTERN int mqhub_client_topic_list(mqhub_client_t *c, const char *prefix, uint64_t offset,
                                         uint64_t limit, mqhub_queue_list_t *out);

/* What to publish besides the body. Every member may be 0/NULL. */
typedef struct mqhub_publish_opts {
    const char *const *tags; /* n_tags <= MQHUB_TAGS_MAX */
    size_t n_tags;
    const char *key;         /* routing key ("payment.card.eu"), NULL: none */
    const mqhub_attr_t *attrs;
    size_t n_attrs;
} mqhub_publish_opts_t;

typedef struct mqhub_publish_result {
    int status; /* 0 or the item's MQHUB_E* code */
    char msg_id[MQHUB_MSG_ID_MAX];
    uint64_t seq;
    uint64_t delivered; /* subscriptions the message matched */
    char error[160];
} mqhub_publish_result_t;

/* publish {topic, body, tags?, key?, attrs?}. @opts and @out may be NULL.
 * 0, MQHUB_ENOT_FOUND, MQHUB_ETOO_LARGE, MQHUB_EBLOCKED, MQHUB_EBAD_REQUEST
 * (e.g. more than 5 tags), common. */
MQHUB_EXTERN int mqhub_client_publish(mqhub_client_t *c, const char *topic, const void *body,
                                      size_t len, const mqhub_publish_opts_t *opts,
                                      mqhub_publish_result_t *out);
/* Called once per async publish with its result. */
typedef void (*mqhub_publish_cb)(void *arg, const mqhub_publish_result_t *res);
/* publish pipelined (see mqhub_client_call_async); @body is copied. */
MQHUB_EXTERN int mqhub_client_publish_async(mqhub_client_t *c, const char *topic, const void *body,
                                            size_t len, const mqhub_publish_opts_t *opts,
                                            mqhub_publish_cb cb, void *arg);

typedef struct mqhub_publish_msg {
    const void *body;
    size_t len;
    const mqhub_publish_opts_t *opts; /* may be NULL */
} mqhub_publish_msg_t;
/* publish_batch {topic, msgs} with 1..MQHUB_BATCH_MAX messages; @results
 * (n entries, caller's array) are filled in order. 0 when answered (check
 * each result), else the request's code. */
MQHUB_EXTERN int mqhub_client_publish_batch(mqhub_client_t *c, const char *topic,
                                            const mqhub_publish_msg_t *msgs, size_t n,
                                            mqhub_publish_result_t *results);

/* ------------------------------------------------------- subscriptions */

/* subscription.create options. Endpoint: @queue (a queue name: pull), @http
 * (an http:// or https:// URL the webhook plugin posts to, @http_format
 * "json" (NULL) or "simplified") or, when both are NULL, push. Retry (push
 * and http): @retry "backoff" or "exponential" (NULL: the server default), 0
 * for the server's default max_attempts (16), interval_ms (1000),
 * max_interval_ms (300000). @from: "latest" (NULL), "earliest", or
 * @from_time (ms since epoch) when @has_from_time. New members are appended
 * only; zero-initialise the struct. */
typedef struct mqhub_sub_opts {
    const char *queue;
    const char *const *filter_tags;
    size_t n_filter_tags;
    const char *const *binding_keys;
    size_t n_binding_keys;
    const char *filter_script;
    const char *retry;
    uint32_t max_attempts;
    uint64_t interval_ms, max_interval_ms;
    const char *dead_letter_queue;
    const char *from;
    bool has_from_time;
    uint64_t from_time;
    const char *http, *http_format;
    /* create only: a push subscription owned by this connection's session,
     * deleted by the hub when the session closes (or by a new leader); at
     * most 64 per session. A reconnect opens another session. */
    bool ephemeral;
} mqhub_sub_opts_t;

/* subscription.create {topic, name, endpoint, ...}. 0 (also when equal),
 * MQHUB_EEXISTS, MQHUB_ENOT_FOUND (topic, queue or script), MQHUB_EBAD_NAME,
 * MQHUB_EBAD_REQUEST, common. */
MQHUB_EXTERN int mqhub_client_sub_create(mqhub_client_t *c, const char *topic, const char *name,
                                         const mqhub_sub_opts_t *opts);
/* subscription.set {topic, name, ...}: change a subscription in place (its
 * pending messages stay). Only what @opts gives is sent: @filter_tags /
 * @binding_keys when not NULL (with a count of 0: remove that filter),
 * @filter_script and @dead_letter_queue when not NULL ("": remove it), the
 * retry when any retry member is set, the endpoint when @http is set (an
 * http subscription's new URL and format). @queue and @from are not
 * changeable and must be NULL / unset (MQHUB_EBAD_REQUEST otherwise, before
 * anything is sent). 0, MQHUB_ENOT_FOUND (topic, subscription, script or
 * queue), MQHUB_EBAD_REQUEST (an endpoint changing kind, a bad field), common. */
MQHUB_EXTERN int mqhub_client_sub_set(mqhub_client_t *c, const char *topic, const char *name,
                                      const mqhub_sub_opts_t *opts);
/* subscription.delete {topic, name}. 0, MQHUB_ENOT_FOUND, common. */
MQHUB_EXTERN int mqhub_client_sub_delete(mqhub_client_t *c, const char *topic, const char *name);
/* subscription.get {topic, name}: the whole answer (endpoint, filters,
 * retry, stats: docs/protocol.md); free it with mqhub_response_free(). */
MQHUB_EXTERN int mqhub_client_sub_get(mqhub_client_t *c, const char *topic, const char *name,
                                      mqhub_response_t *out);
/* subscription.list {topic} into a list of names (mqhub_queue_list_free()). */
MQHUB_EXTERN int mqhub_client_sub_list(mqhub_client_t *c, const char *topic,
                                       mqhub_queue_list_t *out);
/* subscription.rewind {topic, name, time | seq} (exactly one of @time_ms,
 * @seq). *@rewound may be NULL. 0, MQHUB_ENOT_FOUND, MQHUB_EBAD_REQUEST, common. */
MQHUB_EXTERN int mqhub_client_sub_rewind(mqhub_client_t *c, const char *topic, const char *name,
                                         const uint64_t *time_ms, const uint64_t *seq,
                                         uint64_t *rewound);

/* ------------------------------------------------------ push delivery */

/* One pushed message; strings are NUL-terminated, everything is valid during
 * the push callback only. */
typedef struct mqhub_push_msg {
    char msg_id[MQHUB_MSG_ID_MAX];
    uint64_t seq;
    const void *body; /* body_len bytes plus a NUL */
    size_t body_len;
    char **tags;
    size_t n_tags;
    const char *key; /* NULL when the message has none */
    mqhub_attr_t *attrs;
    size_t n_attrs;
    uint64_t published_at; /* ms since epoch */
    uint32_t attempt;      /* 1 on the first delivery */
} mqhub_push_msg_t;

/* A server push. kind "messages": msgs holds n messages of topic /
 * subscription. kind "closed": the server ended the subscription (code:
 * MQHUB_ENOT_LEADER after a failover, leader naming the new one when known;
 * MQHUB_ENOT_FOUND when the subscription was deleted; MQHUB_EUNAVAILABLE on
 * shutdown): subscribe again. @map is the raw push. */
typedef struct mqhub_push {
    char kind[16];
    char topic[MQHUB_NAME_MAX + 1];
    char subscription[MQHUB_NAME_MAX + 1];
    mqhub_push_msg_t *msgs;
    size_t n;
    int code;
    char error[256];
    char leader[128];
    const msgpack_object *map;
} mqhub_push_t;

typedef void (*mqhub_client_push_cb)(void *arg, const mqhub_push_t *push);

/* Receive server pushes on @c: @cb is called from mqhub_client_poll() (and
 * from blocking calls while they wait) once per push. With a callback set,
 * mqhub_client_poll() also waits when no request is in flight, and returns
 * MQHUB_ECONN once the connection is lost (the server forgot the session's
 * subscriptions: subscribe again). The callback must not make blocking calls
 * on @c; collect what to acknowledge and ack after poll returns. @cb NULL
 * stops delivery. */
MQHUB_EXTERN void mqhub_client_on_push(mqhub_client_t *c, mqhub_client_push_cb cb, void *arg);

/* subscribe {topic, subscription, credit}: this session becomes a consumer
 * of the push subscription and may hold up to @credit unacknowledged
 * messages (acknowledging one frees its slot). Leader only (followed like
 * other calls). 0, MQHUB_ENOT_FOUND (no such push subscription), common. */
MQHUB_EXTERN int mqhub_client_subscribe(mqhub_client_t *c, const char *topic, const char *sub,
                                        uint32_t credit);
/* credit {topic, subscription, n}: widen the window by @n. 0,
 * MQHUB_ENOT_FOUND (not subscribed), common. */
MQHUB_EXTERN int mqhub_client_credit(mqhub_client_t *c, const char *topic, const char *sub,
                                     uint32_t n);
/* unsubscribe {topic, subscription}: stop; unacknowledged messages go to
 * other consumers at once. 0, common. */
MQHUB_EXTERN int mqhub_client_unsubscribe(mqhub_client_t *c, const char *topic, const char *sub);
/* ack {topic, subscription, seqs}: @statuses (may be NULL) receives @n codes
 * (0, or MQHUB_ENOT_FOUND for a seq no longer pending). 0 when answered. */
MQHUB_EXTERN int mqhub_client_ack(mqhub_client_t *c, const char *topic, const char *sub,
                                  const uint64_t *seqs, size_t n, int *statuses);
/* ack pipelined; @cb (may be NULL) gets the response (mqhub_response_cb). */
MQHUB_EXTERN int mqhub_client_ack_async(mqhub_client_t *c, const char *topic, const char *sub,
                                        const uint64_t *seqs, size_t n, mqhub_response_cb cb,
                                        void *arg);

/* ---------------------------------------------------------------- scripts */

/* script.load {name, source}: compile and store (a reload replaces the
 * script atomically); *@version (may be NULL) gets the new version. 0,
 * MQHUB_ESCRIPT_ERROR (syntax error; the sentence names the line),
 * MQHUB_EBAD_NAME, MQHUB_ETOO_LARGE (source over 256 KiB), common. */
MQHUB_EXTERN int mqhub_client_script_load(mqhub_client_t *c, const char *name, const char *source,
                                          size_t len, uint64_t *version);
/* script.delete {name}. 0, MQHUB_ENOT_FOUND, MQHUB_EFORBIDDEN (in use: the
 * sentence names the hooks and subscriptions), common. */
MQHUB_EXTERN int mqhub_client_script_delete(mqhub_client_t *c, const char *name);
/* script.get {name} -> {name, version, source, stats, users}; script.list {}
 * -> {scripts: [{name, version, calls, errors}]}; script.test {name, topic,
 * since} -> {kind, messages, calls, errors, refused, matched, publishes,
 * blocks}; block.list {} -> {blocks: [{attr, value, reason, until, script}]}.
 * On 0 the caller frees *@out with mqhub_response_free(). MQHUB_ENOT_FOUND
 * (no such script or topic), common. */
MQHUB_EXTERN int mqhub_client_script_get(mqhub_client_t *c, const char *name,
                                         mqhub_response_t *out);
MQHUB_EXTERN int mqhub_client_script_list(mqhub_client_t *c, mqhub_response_t *out);
MQHUB_EXTERN int mqhub_client_script_test(mqhub_client_t *c, const char *name, const char *topic,
                                          uint64_t since_ms, mqhub_response_t *out);
MQHUB_EXTERN int mqhub_client_block_list(mqhub_client_t *c, mqhub_response_t *out);
/* block.delete {attr, value}. 0, MQHUB_ENOT_FOUND, common. */
MQHUB_EXTERN int mqhub_client_block_delete(mqhub_client_t *c, const char *attr, const char *value);

/* ---- users (docs/security.md; client/user_ops.c) ----
 * Named identities: a user says hello with its token and may do what its
 * grants allow — a verb ("send", "receive", "publish", "subscribe", "manage",
 * "script", "admin") on a name pattern ("*", "payments*", "payments.in").
 * Every call needs the admin verb on * (or the server's root token); without
 * it MQHUB_EFORBIDDEN. Blocking, on the handle's thread. */
typedef struct mqhub_grant {
    const char *verb;
    const char *pattern;
} mqhub_grant_t;
/* user.create {name, token?, grants}. @token NULL: the node generates one
 * (64 hex characters) and it is copied into @token_out (@token_size ≥ 65; it
 * is told only this once); a given token must have 16-256 characters. 0,
 * MQHUB_EEXISTS (the name, or another user's token), MQHUB_EBAD_NAME,
 * MQHUB_EBAD_REQUEST (verb, pattern or token), common. */
MQHUB_EXTERN int mqhub_client_user_create(mqhub_client_t *c, const char *name, const char *token,
                                          const mqhub_grant_t *grants, size_t n_grants,
                                          char *token_out, size_t token_size);
/* user.delete {name}: its open sessions fail from their next request. 0,
 * MQHUB_ENOT_FOUND, common. */
MQHUB_EXTERN int mqhub_client_user_delete(mqhub_client_t *c, const char *name);
/* user.list {} -> {users: [{name, created_at, grants: [{verb, pattern}]}]}
 * (never tokens). On 0 the caller frees *@out with mqhub_response_free(). */
MQHUB_EXTERN int mqhub_client_user_list(mqhub_client_t *c, mqhub_response_t *out);
/* user.grant / user.revoke {name, verb, pattern}: effective at once, open
 * sessions included. *@changed (may be NULL): false when the user held that
 * grant already (grant) or did not hold it (revoke). 0, MQHUB_ENOT_FOUND (no
 * such user), MQHUB_EBAD_REQUEST (verb or pattern), common. */
MQHUB_EXTERN int mqhub_client_user_grant(mqhub_client_t *c, const char *name, const char *verb,
                                         const char *pattern, bool *changed);
MQHUB_EXTERN int mqhub_client_user_revoke(mqhub_client_t *c, const char *name, const char *verb,
                                          const char *pattern, bool *changed);

/* topic.peek {topic, subscription?, max, from?}: up to @max (1-256) messages
 * from seq @from on (0: the first), in seq order, delivering, acking and
 * counting nothing. @subscription NULL: the topic's retained messages; else
 * the pending messages of that push (or http) subscription. On 0 the caller
 * owns *@out (mqhub_response_free): `msgs` [{msg_id, seq, body, tags, key,
 * attrs, published_at}]; `next`, the seq to pass as @from to go on, when the
 * peek stopped early (max, or the reply's size). 0,
 * MQHUB_ENOT_FOUND, MQHUB_EBAD_REQUEST (max; a queue subscription),
 * MQHUB_EFORBIDDEN (peek needs subscribe on the topic), common. */
MQHUB_EXTERN int mqhub_client_topic_peek(mqhub_client_t *c, const char *topic,
                                         const char *subscription, uint32_t max, uint64_t from,
                                         mqhub_response_t *out);

/* The raft log's figures of cluster.status (docs/protocol.md "Cluster ops"),
 * as the node that answered sees them. A struct of its own, so that
 * mqhub_cluster_status_t, which callers allocate, keeps its size. */
typedef struct mqhub_cluster_raft {
    uint64_t last_index;      /* last entry of its log, maybe not committed */
    uint64_t snapshot_index;  /* newest snapshot on disk, 0: none */
    uint64_t snapshot_age_ms; /* since it took, installed or loaded it */
    uint64_t log_entries, log_bytes; /* applied since that snapshot */
    uint64_t leader_changes;  /* leaders this process saw become known */
} mqhub_cluster_raft_t;

/* cluster.status as mqhub_client_cluster_status(), also filling *@raft (may
 * be NULL; all 0 from a server that does not send them). Same returns. */
MQHUB_EXTERN int mqhub_client_cluster_status_raft(mqhub_client_t *c, bool digest,
                                                  mqhub_cluster_status_t *out,
                                                  mqhub_cluster_raft_t *raft);

/* The fields cluster.status gained after mqhub_cluster_status_t was fixed
 * (docs/protocol.md "Cluster ops"): HTTP addresses and removed_by. A struct
 * of its own for the same reason as mqhub_cluster_raft_t. */
typedef struct mqhub_cluster_more {
    char http[128];       /* the answering node's HTTP address, "" when unknown */
    uint64_t removed_by;  /* role "removed": the leader it knew then (0: none) */
    /* node_http[i]: the HTTP address of out->nodes[i], "" when unknown */
    char node_http[MQHUB_CLUSTER_MAX_NODES][128];
} mqhub_cluster_more_t;

/* cluster.status as mqhub_client_cluster_status_raft(), also filling *@more
 * (may be NULL; "" and 0 from a server that does not send them). Same
 * returns. Blocking, on the handle's thread. */
MQHUB_EXTERN int mqhub_client_cluster_status_more(mqhub_client_t *c, bool digest,
                                                  mqhub_cluster_status_t *out,
                                                  mqhub_cluster_raft_t *raft,
                                                  mqhub_cluster_more_t *more);
/* cluster.add {node, address, client?, http?} as mqhub_client_cluster_add(),
 * with @http the new node's HTTP address ("host:port", may be NULL), listed
 * by cluster.status. Same returns; an address that is not a printable
 * "host:port" is MQHUB_EBAD_REQUEST from the server. */
MQHUB_EXTERN int mqhub_client_cluster_add_http(mqhub_client_t *c, uint64_t node,
                                               const char *address, const char *client,
                                               const char *http);

#ifdef __cplusplus
}
#endif
#endif
