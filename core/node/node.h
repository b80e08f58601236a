/* core/node/node.h: the daemon around the state machine and its raft group —
 * configuration (config.c), the hub (hub.c: sessions, dispatch, long-poll
 * waiters, metrics), cluster.* ops (cluster.c), the plugin host (plugin.c)
 * and the leader's push engine (push.c). Loop thread only unless a function
 * says otherwise.
 */
#ifndef MQHUB_NODE_H
#define MQHUB_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include <msgpack.h>
#include <uv.h>

#include "mqhub/errors.h"
#include "mqhub/plugin.h"
#include "log.h"
#include "mp.h"
#include "wire.h"
#include "raft/replica.h"
#include "sm/sm.h"

/* ======================================================================
 * config.c — the Lua configuration file (docs/operations.md).
 * ====================================================================== */
typedef struct config_transport {
    char *name;      /* "tcp" */
    char *path;      /* .so to load; default <plugin dir>/<name>.so */
    int table_ref;   /* registry ref of its table in config->L */
} config_transport_t;

/* A queue or topic declared in the file; the hub creates it at start. */
typedef struct config_object {
    char *name;
    char *attrs;             /* msgpack map, the "attrs" of queue/topic.create */
    size_t attrs_len;
} config_object_t;

typedef struct config {
    void *L;                 /* lua_State kept for plugin config lookups */
    uint64_t node_id;
    char *data_dir;
    char *raft_address;
    replica_peer_t *peers;   /* strings owned by the config */
    unsigned n_peers;
    config_transport_t *transports;
    unsigned n_transports;
    char *token;             /* required hello token, or NULL */
    size_t max_frame;
    int log_level;
    unsigned snapshot_threshold;
    char *plugin_dir;
    /* Added by config.c: */
    char *path;              /* the file loaded, NULL for defaults */
    char *client_address;    /* node.client, else the tcp transport's listen */
    char *http_address;      /* node.http, else the websocket transport's listen */
    unsigned snapshot_trailing;
    uint64_t snapshot_log_bytes; /* snapshot.log_bytes (0: default) */
    int snapshot_growth;         /* snapshot.growth, percent (< 0: default) */
    config_object_t *queues;
    unsigned n_queues;
    config_object_t *topics;
    unsigned n_topics;
    config_object_t *scripts;  /* hook files: name + source (in attrs) */
    unsigned n_scripts;
    bool join;               /* node.join: a new member, never bootstraps */
    char *cluster_secret;    /* node.cluster_secret_file's content, or NULL */
    bool allow_unauthenticated_peers; /* node.allow_unauthenticated_peers */
    char *peer_tls_cert;     /* node.peer_tls_cert, _key, _ca: all or none (peer.h) */
    char *peer_tls_key;
    char *peer_tls_ca;
    bool allow_anonymous;    /* auth.allow_anonymous: listen beyond loopback with no token */
} config_t;

/* Load @path (NULL: defaults). Errors name the file, line and problem
 * ("mqhub.conf:3: node.id must be a positive integer"): 0 or
 * MQHUB_EBAD_REQUEST with @errmsg set. */
int config_load(config_t **out, const char *path, char *errmsg, size_t errlen);
void config_free(config_t *c);
/* A string field of @t's table (valid until config_free), NULL when absent or
 * not a string. */
const char *config_transport_string(config_t *c, const config_transport_t *t,
                                    const char *key);
/* An integer field of @t's table: 0 with *out = @def when absent, 0 with the
 * value (a boolean reads as 1/0), or MQHUB_EBAD_REQUEST when present but
 * neither an integer nor a boolean. */
int config_transport_int(config_t *c, const config_transport_t *t, const char *key,
                         int64_t def, int64_t *out);

/* ======================================================================
 * metrics.c — counters and per-transport request latency histograms.
 * ====================================================================== */
typedef struct metrics metrics_t;
typedef struct metrics_lat metrics_lat_t;

/* 0, or MQHUB_EINTERNAL (out of memory). @data_dir (copied) is the
 * folder whose size and file system "process.data_bytes" and
 * "process.disk_*" read. */
int metrics_new(metrics_t **out, const char *data_dir);
void metrics_free(metrics_t *m);
/* Add @delta to counter @name, created at 0 on first use (dropped when out
 * of memory). */
void metrics_add(metrics_t *m, const char *name, int64_t delta);
/* Counter @name, 0 for unknown names; also the latency histograms:
 * "request_seconds_count.<transport>", "request_seconds_sum_us.<transport>"
 * (microseconds) and "request_seconds_bucket.<transport>.<i>" (cumulative,
 * i = 0..11 for the bounds 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1
 * 0.25 0.5 1 5 s); and the process's own figures, read when asked:
 * "process.rss_bytes", "process.open_fds", "process.max_fds",
 * "process.cpu_us" (user + system), "process.start_ms",
 * "process.data_bytes" (bytes of the files under the data dir),
 * "process.disk_free_bytes" and "process.disk_total_bytes" (its file
 * system, free to unprivileged users) (-1: unreadable). */
int64_t metrics_get(metrics_t *m, const char *name);
/* @cb(@arg, name, value) for every counter whose name begins with @prefix,
 * in the order they were created (not the histograms or process figures).
 * @cb must not add counters. */
void metrics_each(metrics_t *m, const char *prefix, mqhub_metric_cb cb, void *arg);
/* The histogram of @transport, found or claimed (NULL: all slots taken; such
 * sessions are not timed). */
metrics_lat_t *metrics_lat_slot(metrics_t *m, const char *transport);
/* Count one request that started at uv_hrtime() @t0 (@l NULL: nothing). */
void metrics_lat_observe(metrics_lat_t *l, uint64_t t0);

/* ======================================================================
 * hub.c — the node: owns loop-side objects (fsm, replica, plugins, sessions,
 * long-poll waiters) and dispatches requests.
 * ====================================================================== */
typedef struct hub hub_t;

/* Open the state machine in cfg->data_dir, load the plugins, start the raft
 * group. Returns 0; MQHUB_EBAD_REQUEST when a plugin the config names is
 * refused; MQHUB_EINTERNAL otherwise (data dir, storage, raft address, out of
 * memory), with the reason in @errmsg. On failure nothing is left on @loop. */
int hub_start(hub_t **out, uv_loop_t *loop, config_t *cfg, char *errmsg, size_t errlen);
/* Graceful stop: stop transports, fail waiters with UNAVAILABLE, close raft;
 * @cb when everything is closed (the loop then has no more work). */
void hub_stop(hub_t *h, void (*cb)(void *arg), void *arg);
void hub_free(hub_t *h);

/* The host side of the plugin ABI: plugin.c's host table forwards to these,
 * the semantics are those of mqhub_host_api_t (include/mqhub/plugin.h).
 * @transport names the plugin that opened the session (for logs). */
uv_loop_t *hub_loop(hub_t *h);
size_t hub_max_frame(hub_t *h);
mqhub_session_t *hub_session_open(hub_t *h, const char *transport, const char *peer,
                                  mqhub_push_cb push, void *push_arg);
void hub_session_close(mqhub_session_t *s);
int hub_request(mqhub_session_t *s, const char *buf, size_t len, mqhub_reply_cb cb,
                void *arg);
/* The transport's output for @s went above its high-water mark (@writable
 * 0: no pushes to it) or back below its low-water mark (1: pushes resume). */
void hub_session_writable(mqhub_session_t *s, int writable);
/* False while the transport said @s is not writable (push.c skips it). */
bool hub_session_can_push(const mqhub_session_t *s);
/* @len bytes of pushes went to @s (push.c): its bytes_out in connection.list. */
void hub_session_sent(mqhub_session_t *s, size_t len);
/* True once the session answered a frame it could not read (not one map, or
 * no uint id): the reply carries no id, so the stream is out of sync and the
 * transport closes the connection after writing the reply. */
bool hub_session_broken(mqhub_session_t *s);
/* @s acts as the user named @user from its next request (a transport that
 * authenticated the client itself, e.g. CMQ's signed requests): the user's
 * grants apply, looked up by name on each request (UNAUTHORIZED while no
 * such user exists). 0, or MQHUB_EBAD_REQUEST for a name that is empty or
 * longer than MQHUB_NAME_MAX. */
int hub_session_identify(mqhub_session_t *s, const char *user);
/* The node's counters and histograms (metrics.c), for the plugin host. */
metrics_t *hub_metrics(hub_t *h);

/* ======================================================================
 * cluster.c — cluster.status/add/remove/transfer (PROTOCOL.md "Cluster"),
 * answered by the hub on the node that receives them. The node's id is the
 * request field `node` (`id` is the request id).
 * ====================================================================== */
typedef struct cluster cluster_t;

/* A new cluster op handler over @f; 0 or MQHUB_EINTERNAL. */
int cluster_new(cluster_t **out, fsm_t *f);
/* The raft group it changes; set once it runs (before any request). */
void cluster_set_replica(cluster_t *c, replica_t *r);
/* Frees what is still pending (their replies are dropped). */
void cluster_free(cluster_t *c);
/* Answer @v, the OPS_CLUSTER op @op: at once, or when raft completes the
 * change. */
void cluster_request(cluster_t *c, mqhub_session_t *s, enum ops_node op,
                     const wire_request_t *v, mqhub_reply_cb cb, void *arg);
/* @s is closing: its pending changes complete without a reply. */
void cluster_session_closed(cluster_t *c, mqhub_session_t *s);

/* ======================================================================
 * plugin.c — loading plugins and the host function table.
 * ====================================================================== */
typedef struct plugin plugin_t;

/* dlopen @t->path, check the entry point and ABI, call init. Returns 0;
 * MQHUB_EBAD_REQUEST when the plugin is refused (not found, not a plugin,
 * another ABI, its init failed: the configuration names a plugin this daemon
 * cannot run) or MQHUB_EINTERNAL when out of memory, with
 * "plugin <file>: <reason>" in @errmsg. */
int plugin_load(plugin_t **out, hub_t *hub, config_t *cfg, const config_transport_t *t,
                char *errmsg, size_t errlen);
/* Shutdown step 1: the plugin's stop() (close its handles). */
void plugin_stop(plugin_t *p);
/* Shutdown step 2, after the loop drained: fini() and dlclose. Also valid on
 * a plugin that was never stopped when its init added no handle. */
void plugin_unload(plugin_t *p);
/* The plugin's own name (its descriptor's). */
const char *plugin_name(const plugin_t *p);

/* ======================================================================
 * push.c — the leader's push delivery engine (docs/protocol.md "Push
 * delivery"). Sessions subscribe to push subscriptions with a credit window;
 * the engine hands each pending message to one subscribed session with free
 * credit (round-robin), tracks it in flight (seq -> session, attempt,
 * redeliver_at), redelivers it per the subscription's retry strategy and
 * proposes `sub.dead` once max_attempts are used. Acks go through raft as
 * ordinary writes; apply tells the engine what was acked or rewound
 * (fsm_push_cb). All state is in memory on the leader and forgotten when
 * leadership is lost.
 * ====================================================================== */
typedef struct push push_t;

/* A new engine over @fsm (registers the fsm push callback; no loop handle
 * yet, so push_free() alone undoes it); it counts the messages it pushes in
 * @metrics ("push_delivered_total", "push_redelivered_total": attempt > 1).
 * 0 or MQHUB_EINTERNAL. */
int push_new(push_t **out, fsm_t *fsm, metrics_t *metrics);
/* Start delivering on @loop: opens the engine's timer; @r is the raft group
 * it proposes sub.dead through and asks about leadership. Once, before any
 * session subscribes; push_stop() closes it. */
void push_start(push_t *p, uv_loop_t *loop, replica_t *r);
/* @op, one of the OPS_SESSION ops (subscribe, credit, unsubscribe), of
 * session @s, whose pushes go to @cb(@cb_arg, ...). @req is the request map. Returns 0
 * (reply {}), or MQHUB_ENOT_LEADER, MQHUB_ENOT_FOUND, MQHUB_EBAD_REQUEST,
 * MQHUB_EINTERNAL with a sentence in @err. Pushes may be sent before it
 * returns. */
int push_request(push_t *p, mqhub_session_t *s, enum ops_node op, mqhub_push_cb cb, void *cb_arg,
                 const msgpack_object *req, char *err, size_t errlen);
/* @s is closing: its consumers go away, their unacked messages are
 * deliverable again at once (the attempt counts). */
void push_session_close(push_t *p, mqhub_session_t *s);
/* @s is writable again (hub_session_writable): its subscriptions get a round
 * soon. While it is not, deliver() gives it nothing (its flights time out
 * and go to other consumers). */
void push_session_writable(push_t *p, mqhub_session_t *s);
/* Periodic: when this node is no longer the leader, every subscribed session
 * gets a "closed" push (NOT_LEADER) and the engine forgets its state. */
void push_check(push_t *p);
/* One consumer as connection.list and consumer.list show it (hub.c): the
 * names are not NUL-terminated and valid during the visit only. */
typedef struct push_consumer_info {
    const mqhub_session_t *s;
    const char *topic, *subscription;
    size_t tl, sl;
    uint64_t credit_free; /* messages it may still be given */
    uint64_t inflight;    /* messages it holds unacknowledged */
} push_consumer_info_t;
/* Call @fn for every consumer of the engine (@s NULL) or of session @s, in
 * the engine's order. */
void push_consumers(const push_t *p, const mqhub_session_t *s,
                    void (*fn)(void *arg, const push_consumer_info_t *c), void *arg);
/* Close the engine's timer; @cb once it is closed. push_free() after. */
void push_stop(push_t *p, void (*cb)(void *arg), void *arg);
void push_free(push_t *p);

#endif
