/* core/internal.h: the one internal header of the engine, in sections, one per
 * core/ file. Each section is the contract of its file: ownership, threads,
 * return codes. Everything here runs on the daemon's loop thread unless a
 * function says otherwise. Leaf helpers (core/util/) have their own headers and
 * never include this file.
 *
 * Map (where to start reading):
 *   log.c       structured logging
 *   store.c     Kyoto Cabinet TreeDB wrapper, snapshot dump/load, digest
 *   fsm.c       raft entry format, apply loop, command table, results, reads
 *   queue.c     queue and message semantics (called by fsm.c only)
 *   replica.c   one raft group: raft_uv, group commit, ticks, leadership
 *   config.c    the Lua configuration file
 *   plugin.c    dlopen of plugins and the host function table
 *   hub.c       the node: sessions, request dispatch, long-poll waiters
 */
#ifndef MQHUB_CORE_INTERNAL_H
#define MQHUB_CORE_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>
#include <raft.h>
#include <uv.h>

#include "mqhub/errors.h"
#include "mqhub/plugin.h"

#define MQHUB_VERSION_STRING "0.1.0"

/* ======================================================================
 * log.c — structured, quiet logs: one line per event on stderr,
 *   ts=2026-11-25T13:58:01.123Z level=info comp=replica msg="..." k=v ...
 * Default level is info; debug lines are dropped unless log_set_level().
 * ====================================================================== */
void log_set_level(int level); /* enum mqhub_log_level */
int log_get_level(void);
/* @comp: short component name ("fsm", "tcp"). */
void log_msg(int level, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(int level, const char *comp, const char *fmt, va_list ap);
#define log_debug(comp, ...) log_msg(MQHUB_LOG_DEBUG, comp, __VA_ARGS__)
#define log_info(comp, ...) log_msg(MQHUB_LOG_INFO, comp, __VA_ARGS__)
#define log_warn(comp, ...) log_msg(MQHUB_LOG_WARN, comp, __VA_ARGS__)
#define log_error(comp, ...) log_msg(MQHUB_LOG_ERROR, comp, __VA_ARGS__)

/* ======================================================================
 * store.c — the materialised state in one Kyoto Cabinet TreeDB file.
 * The file is a cache: store_open() truncates it, because raft restores the
 * latest snapshot and replays the log after it on every start (a KC file
 * written without sync is not trustworthy after kill -9). Key layout: see
 * docs/architecture.md "Key layout".
 * ====================================================================== */
typedef struct store store_t;

/* Open (create, truncate) @path. 0 or MQHUB_EINTERNAL with @errmsg set. */
int store_open(store_t **out, const char *path, char *errmsg, size_t errlen);
void store_close(store_t *s);
int store_put(store_t *s, const void *k, size_t kl, const void *v, size_t vl);
/* Returns a buffer the caller frees with store_free(), or NULL if absent. */
void *store_get(store_t *s, const void *k, size_t kl, size_t *vl);
void store_free(void *p);
/* 0 when removed, MQHUB_ENOT_FOUND when absent. */
int store_del(store_t *s, const void *k, size_t kl);
/* Visit keys >= @from and starting with @prefix, in order, until @fn returns
 * nonzero (that value is returned) or the prefix ends (0). @k/@v valid during
 * the call only. @fn must not modify the store. */
typedef int (*store_visit_fn)(void *arg, const char *k, size_t kl, const char *v,
                              size_t vl);
int store_scan(store_t *s, const void *prefix, size_t pl, const void *from, size_t fl,
               store_visit_fn fn, void *arg);
/* Remove every key starting with @prefix; returns the count removed. */
int64_t store_del_prefix(store_t *s, const void *prefix, size_t pl);
int64_t store_count(store_t *s);
/* Serialise every record into raft buffers (allocated with raft_malloc, the
 * caller owns them) / replace the whole content from such a dump. */
int store_dump(store_t *s, struct raft_buffer **bufs, unsigned *n_bufs);
int store_load(store_t *s, const void *data, size_t len);
/* SHA-256 over every key and value in order: equal states, equal digests. */
void store_digest(store_t *s, unsigned char out[32]);

/* ======================================================================
 * fsm.c (+ queue.c) — the deterministic state machine of one raft group.
 *
 * Entry format (one raft entry, padded to a multiple of 8 bytes with nil):
 *   msgpack array [1 (format), now_ms (uint), [cmd_bytes (bin), ...]] where
 *   each cmd is a request map exactly as on the wire (PROTOCOL.md), op
 *   included; internal ops: "tick" (expiry, promotion). apply uses only now_ms
 *   (clamped to be monotonic), never the system clock.
 * Business errors (NOT_FOUND, BACKLOG_FULL, ...) are results, never apply
 * failures: apply fails only on a corrupt entry or store I/O failure.
 * ====================================================================== */
typedef struct fsm fsm_t;

/* Replies of one applied entry, one complete response map per command, in
 * command order. Owned by whoever receives it from raft; fsm_result_free(). */
typedef struct fsm_result {
    unsigned n;
    size_t *off;    /* n + 1 offsets into data */
    char *data;
} fsm_result_t;
void fsm_result_free(fsm_result_t *r);

/* Called during apply when a queue gains ready messages (send, lock expiry,
 * delay due, rewind, change_visibility 0). The hub wakes long-poll waiters. */
typedef void (*fsm_ready_cb)(void *arg, const char *queue, size_t len);

/* Open the state machine with its store at @dir/state.kct (truncated). */
int fsm_open(fsm_t **out, const char *dir, char *errmsg, size_t errlen);
void fsm_close(fsm_t *f);
/* The raft_fsm (version 3) bound to @f, for raft_init(). */
struct raft_fsm *fsm_raft(fsm_t *f);
void fsm_set_ready_cb(fsm_t *f, fsm_ready_cb cb, void *arg);
/* Whether apply should encode replies (the leader); followers skip it. */
void fsm_set_emit(fsm_t *f, bool emit);

/* Build one entry from @n commands (each a wire request map). @out->base is
 * raft_malloc'ed, its length a multiple of 8. 0 or MQHUB_EINTERNAL. */
int fsm_entry_encode(uint64_t now_ms, const char *const *cmds, const size_t *lens,
                     unsigned n, struct raft_buffer *out);
/* Apply one entry directly (what raft's apply does); for tests and replay.
 * *result may be NULL when emit is off. */
int fsm_apply_entry(fsm_t *f, const void *buf, size_t len, fsm_result_t **result);

/* Kinds of ops, for the dispatcher. */
enum fsm_op_kind {
    FSM_OP_UNKNOWN = 0,
    FSM_OP_LOCAL,   /* answered by the hub itself (hello, ping) */
    FSM_OP_READ,    /* answered from applied state on the leader: fsm_read() */
    FSM_OP_WRITE,   /* proposed through raft, applied by fsm_apply_entry() */
};
enum fsm_op_kind fsm_op_kind(const char *op, size_t len);
/* Answer a read request (@req, the request map) into @out: a complete
 * response map (id, ok, ...). Returns 0. */
int fsm_read(fsm_t *f, const msgpack_object *req, msgpack_sbuffer *out);

/* Long-poll support: ready messages in @queue now (0 also when absent), and
 * the earliest time (ms) any delayed or locked message of any queue becomes
 * visible (UINT64_MAX when none). */
uint64_t fsm_queue_ready(fsm_t *f, const char *queue, size_t len);
uint64_t fsm_next_due(fsm_t *f);
/* The clock of the last applied entry. */
uint64_t fsm_now(fsm_t *f);
/* SHA-256 of the whole state (store content), for determinism checks. */
void fsm_digest(fsm_t *f, unsigned char out[32]);

/* ---- fsm.c <-> queue.c (private: nothing outside these two files uses it) ----
 * fsm.c decodes entries and commands, finds the handler in its op table and
 * wraps what the handler packs into a complete response map; queue.c owns the
 * queues (store records + in-memory indexes). Adding an op: one line in fsm.c's
 * op table + one handler. */
typedef struct queues queues_t;

/* One command being applied (or read). A handler validates @req, changes the
 * state, and packs its result fields into @pk as map entries (fsm_reply_key()
 * then the value), or returns fsm_fail(). @pk is NULL when replies are not
 * emitted (followers): handlers then skip the work done only for the reply. */
typedef struct fsm_cmd {
    const msgpack_object *req; /* the request map */
    uint64_t now;              /* the entry's clock, ms */
    msgpack_packer *pk;
    uint32_t n_fields;         /* map entries packed into pk */
    char err[320];             /* the sentence of the failure */
} fsm_cmd_t;
/* Returns 0 or a negative MQHUB_E* code (a business error, reported in the
 * reply; the state is unchanged by a failed command). */
typedef int (*fsm_op_fn)(queues_t *qs, fsm_cmd_t *c);

/* Argument helpers for handlers. All failures are MQHUB_EBAD_REQUEST with a
 * sentence naming the field. fsm_arg: the value of @key in @map, or NULL. */
const msgpack_object *fsm_arg(const msgpack_object *map, const char *key);
int fsm_fail(fsm_cmd_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A str field; when absent and not @required, *s = NULL, *len = 0. */
int fsm_arg_str(fsm_cmd_t *c, const msgpack_object *map, const char *key, bool required,
                const char **s, size_t *len);
/* An unsigned integer field within [min, max]; *out unchanged when absent. */
int fsm_arg_uint(fsm_cmd_t *c, const msgpack_object *map, const char *key, uint64_t min,
                 uint64_t max, uint64_t *out);
/* Pack @key as the next reply field (no-op when c->pk is NULL). */
void fsm_reply_key(fsm_cmd_t *c, const char *key);
void fsm_pack_str(msgpack_packer *pk, const char *s, size_t len);

/* queue.c: the queues of one state machine over @st (not owned). */
int queue_state_new(queues_t **out, store_t *st);
void queue_state_free(queues_t *qs);
void queue_set_ready_cb(queues_t *qs, fsm_ready_cb cb, void *arg);
/* Drop the in-memory indexes and rebuild them from the store (after load). */
int queue_rebuild(queues_t *qs);
/* Around each entry: begin promotes due delayed/locked messages; end flushes
 * dirty queue records and calls the ready callback. end returns
 * MQHUB_EINTERNAL when a store write failed during the entry. */
void queue_begin(queues_t *qs, uint64_t now);
int queue_end(queues_t *qs);
uint64_t queue_ready_count(queues_t *qs, const char *name, size_t len);
uint64_t queue_next_due(queues_t *qs, uint64_t now);
/* Handlers (see PROTOCOL.md for each op). */
int queue_op_create(queues_t *qs, fsm_cmd_t *c);
int queue_op_delete(queues_t *qs, fsm_cmd_t *c);
int queue_op_purge(queues_t *qs, fsm_cmd_t *c);
int queue_op_set(queues_t *qs, fsm_cmd_t *c);
int queue_op_rewind(queues_t *qs, fsm_cmd_t *c);
int queue_op_get(queues_t *qs, fsm_cmd_t *c);
int queue_op_list(queues_t *qs, fsm_cmd_t *c);
int queue_op_send(queues_t *qs, fsm_cmd_t *c);
int queue_op_send_batch(queues_t *qs, fsm_cmd_t *c);
int queue_op_receive(queues_t *qs, fsm_cmd_t *c);
int queue_op_delete_msgs(queues_t *qs, fsm_cmd_t *c);
int queue_op_change_visibility(queues_t *qs, fsm_cmd_t *c);
int queue_op_tick(queues_t *qs, fsm_cmd_t *c);

/* ======================================================================
 * replica.c — one raft group on the loop: raft_uv + raft_uv_tcp storage and
 * transport, bootstrap on first start, group commit of submitted commands,
 * periodic and due-time ticks, snapshots. A group is an object: several may
 * live on one loop.
 * ====================================================================== */
typedef struct replica replica_t;

typedef struct replica_peer {
    uint64_t id;
    const char *raft_address;   /* host:port */
    const char *client_address; /* host:port of its TCP transport, or NULL */
} replica_peer_t;

typedef struct replica_config {
    uint64_t id;                 /* this node */
    const char *dir;             /* raft log + snapshots live here */
    const char *raft_address;    /* host:port raft listens on */
    const char *client_address;  /* our TCP transport address, for NOT_LEADER */
    const replica_peer_t *peers; /* the other initial voters */
    unsigned n_peers;
    unsigned snapshot_threshold; /* entries between snapshots (0: default) */
    unsigned snapshot_trailing;  /* entries kept after one (0: default) */
} replica_config_t;

/* Called once per submitted command: status 0 with the reply map, or
 * MQHUB_ENOT_LEADER / MQHUB_EUNAVAILABLE with reply NULL. */
typedef void (*replica_done_cb)(void *arg, int status, const char *reply, size_t len);

int replica_start(replica_t **out, uv_loop_t *loop, fsm_t *fsm,
                  const replica_config_t *cfg, char *errmsg, size_t errlen);
/* Copy @cmd (a request map) into the current batch; all commands submitted
 * in one loop turn share one raft entry. Returns 0 (cb will be called), or
 * MQHUB_ENOT_LEADER / MQHUB_EUNAVAILABLE (cb never called). */
int replica_submit(replica_t *r, const char *cmd, size_t len, replica_done_cb cb,
                   void *arg);
bool replica_is_leader(replica_t *r);
/* Client address of the current leader, NULL while unknown. */
const char *replica_leader_address(replica_t *r);
uint64_t replica_id(replica_t *r);
/* Counters for cluster.status and metrics. */
typedef struct replica_stats {
    uint64_t term;
    uint64_t commit_index;
    uint64_t last_applied;
    uint64_t leader_id;          /* 0 while unknown */
    uint64_t entries;            /* raft entries this node proposed */
    uint64_t commands;           /* commands in them */
} replica_stats_t;
void replica_stats(replica_t *r, replica_stats_t *out);
/* Close raft; pending commands fail with MQHUB_EUNAVAILABLE (each callback
 * still runs exactly once, some of them before this returns); @cb when done,
 * after which @r is freed. Call it from the loop, not from a replica_done_cb.
 * replica_start() failing after raft_init also cleans up through the loop. */
void replica_stop(replica_t *r, void (*cb)(void *arg), void *arg);

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
    unsigned snapshot_trailing;
    config_object_t *queues;
    unsigned n_queues;
    config_object_t *topics;
    unsigned n_topics;
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
 * value, or MQHUB_EBAD_REQUEST when present but not an integer. */
int config_transport_int(config_t *c, const config_transport_t *t, const char *key,
                         int64_t def, int64_t *out);

/* ======================================================================
 * hub.c — the node: owns loop-side objects (fsm, replica, plugins, sessions,
 * long-poll waiters) and dispatches requests.
 * ====================================================================== */
typedef struct hub hub_t;

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
/* True once the session answered a frame it could not read (not one map, or
 * no uint id): the reply carries no id, so the stream is out of sync and the
 * transport closes the connection after writing the reply. */
bool hub_session_broken(mqhub_session_t *s);
/* Counters, created on first use; hub_metric_get returns 0 for unknown names. */
void hub_metric_add(hub_t *h, const char *name, int64_t delta);
int64_t hub_metric_get(hub_t *h, const char *name);

/* Pure request decoding (also the fuzz target): @buf must hold exactly one
 * MessagePack map with "op" (str) and "id" (uint). @u is initialised by the
 * caller and destroyed after the view is no longer used. Returns 0, or
 * MQHUB_EBAD_REQUEST with a sentence in @errmsg; has_id tells whether the id
 * was readable (then it is echoed in the error reply). */
typedef struct hub_request_view {
    const msgpack_object *map;
    const char *op;
    size_t op_len;
    uint64_t id;
    bool has_id;
} hub_request_view_t;
int hub_decode_request(msgpack_unpacked *u, const char *buf, size_t len,
                       hub_request_view_t *v, char *errmsg, size_t errlen);
/* The value of @key in the map @map, or NULL. */
const msgpack_object *hub_map_get(const msgpack_object *map, const char *key);

/* ======================================================================
 * plugin.c — loading plugins and the host function table.
 * ====================================================================== */
typedef struct plugin plugin_t;

/* dlopen @t->path, check the entry point and ABI, call init. On refusal
 * returns MQHUB_EINTERNAL with "plugin <file>: <reason>" in @errmsg. */
int plugin_load(plugin_t **out, hub_t *hub, config_t *cfg, const config_transport_t *t,
                char *errmsg, size_t errlen);
/* Shutdown step 1: the plugin's stop() (close its handles). */
void plugin_stop(plugin_t *p);
/* Shutdown step 2, after the loop drained: fini() and dlclose. Also valid on
 * a plugin that was never stopped when its init added no handle. */
void plugin_unload(plugin_t *p);
/* The plugin's own name (its descriptor's). */
const char *plugin_name(const plugin_t *p);

#endif
