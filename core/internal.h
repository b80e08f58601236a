/* core/internal.h: the one internal header of the engine, in sections, one per
 * core/ file. Each section is the contract of its file: ownership, threads,
 * return codes. Everything here runs on the daemon's loop thread unless a
 * function says otherwise. Leaf helpers (core/util/) have their own headers and
 * never include this file.
 *
 * Map (where to start reading):
 *   log.c       structured logging
 *   store.c     Kyoto Cabinet TreeDB wrapper, snapshot dump/load, digest
 *   snapshot.c  snapshots off the loop: placeholder + raft_io wrapper
 *   fsm.c       raft entry format, apply loop, command table, results, reads
 *   queue.c     queue and message semantics (called by fsm.c only)
 *   topic.c     topics, subscriptions, fan-out, filters, push pending state
 *   script.c    the Lua script host: filters, hooks, blocks, script.* ops
 *   replica.c   one raft group: raft_uv, group commit, ticks, leadership
 *   config.c    the Lua configuration file
 *   cluster.c   cluster.* operations (membership, status)
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
 * caller owns them) / replace the whole content from such a dump. While
 * frozen, store_dump() serialises the state at store_freeze() and may run on
 * another thread (it only reads the file DB, which nothing writes then);
 * store_load() refuses a frozen store (MQHUB_EINTERNAL). */
int store_dump(store_t *s, struct raft_buffer **bufs, unsigned *n_bufs);
int store_load(store_t *s, const void *data, size_t len);
/* Frozen mode, for snapshots off the loop (core/snapshot.c): after
 * store_freeze() every write goes to an in-memory ordered overlay and reads
 * see file DB + overlay, so callers notice nothing. store_unfreeze() sends
 * writes to the file DB again; store_drain() then moves up to @max overlay
 * records into it and returns how many are left (0: overlay gone) or
 * MQHUB_EINTERNAL on a KC write failure; call it until 0 (loop thread).
 * store_thaw() = unfreeze + drain everything. store_freeze(): 0, or
 * MQHUB_EINTERNAL when already frozen or out of memory (an unfinished drain
 * is completed first); store_dump() also completes one. */
int store_freeze(store_t *s);
void store_unfreeze(store_t *s);
int64_t store_drain(store_t *s, size_t max);
int store_thaw(store_t *s);
bool store_frozen(const store_t *s);
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
/* The clock reads use (the hub: wall-clock ms), so ages such as oldest_age_ms
 * are current rather than as of the last applied entry; never used by apply.
 * Without one (tests), reads use the clock of the last applied entry. */
void fsm_set_read_clock(fsm_t *f, uint64_t (*now_ms)(void));

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
    FSM_OP_SESSION, /* subscribe, credit, unsubscribe: the leader's push engine
                     * (push.c) answers them; they never reach apply */
    FSM_OP_INTERNAL, /* applied like writes but proposed only by the node itself
                      * (tick, sub.dead): a client sending one gets UNKNOWN_OP */
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
/* Added for tests: the store of the state machine (read it only). */
store_t *fsm_store(fsm_t *f);

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
/* Added by dedupe: helpers queue.c and topic.c share. The longest queue or
 * topic name (PROTOCOL.md names, fsm_arg_name). */
#define FSM_NAME_MAX 64
/* fsm_reply_key(@key) then the uint @v (no-op when c->pk is NULL). */
void fsm_reply_uint(fsm_cmd_t *c, const char *key, uint64_t v);
/* A map entry @key: @v / @key: @s into @pk (non-NULL). */
void fsm_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t v);
void fsm_pack_kv_str(msgpack_packer *pk, const char *key, const char *s, size_t len);
/* The result {ok: true} of one item of a batch op. */
void fsm_pack_ok_item(msgpack_packer *pk);
/* One item of a batch op: validate and apply @item; 0 (having packed the
 * item's result map when c->pk is set) or a code with the sentence in c->err. */
typedef int (*fsm_item_fn)(void *arg, fsm_cmd_t *c, const msgpack_object *item);
/* The batch ops (send_batch, publish_batch, delete, ack): field @key must be
 * an array of 1..@max items (@what names them in the error: "maps"); @fn runs
 * on each in order, one failing does not stop the others, and the reply field
 * "results" holds per item @fn's map or {code, error}. 0 or MQHUB_EBAD_REQUEST. */
int fsm_batch(fsm_cmd_t *c, const char *key, const char *what, uint32_t max,
              fsm_item_fn fn, void *arg);
/* queue.list / topic.list: the names of the records "<@rec><name>" in @st
 * filtered by the request's prefix, offset, limit, as reply field @key plus
 * "total". Returns 0 or MQHUB_EBAD_REQUEST. */
int fsm_list_names(fsm_cmd_t *c, store_t *st, char rec, const char *key);
/* Big-endian u64 in store keys; the 17-byte key <prefix><id be64><seq be64>. */
void fsm_put_be64(unsigned char *p, uint64_t v);
uint64_t fsm_get_be64(const unsigned char *p);
void fsm_key_id_seq(unsigned char k[17], char prefix, uint64_t id, uint64_t seq);

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
/* Added for topic.c. Whether queue @name exists. */
bool queue_exists(queues_t *qs, const char *name, size_t len);
/* Append a message that a topic fans out (or dead-letters) to queue @name
 * under the queue's rules (max_msg_size, max_backlog; no dedup, no delay
 * beyond the queue's default). @msg_id is kept; @tags (array of str) and
 * @attrs (map str -> str) may be NULL or NIL. Returns 0, or MQHUB_ENOT_FOUND,
 * MQHUB_ETOO_LARGE, MQHUB_EBACKLOG_FULL with the sentence in c->err. */
int queue_append_from_topic(queues_t *qs, fsm_cmd_t *c, const char *name, size_t len,
                            const char *msg_id, const void *body, size_t blen,
                            const msgpack_object *tags, const msgpack_object *attrs);
/* Added for shared bodies: the same, but the message stores no body of its
 * own; it refers to topic message @seq of topic id @tid (whose body has
 * @blen bytes). The caller counts the reference (topic.c, R key). */
int queue_append_ref(queues_t *qs, fsm_cmd_t *c, const char *name, size_t len,
                     const char *msg_id, size_t blen, const msgpack_object *tags,
                     const msgpack_object *attrs, uint64_t tid, uint64_t seq);
/* Added for topic.c: a name field (PROTOCOL.md names; BAD_NAME otherwise) and
 * an optional attrs field (map str -> str; *out NIL when absent). */
int fsm_arg_name(fsm_cmd_t *c, const msgpack_object *map, const char *key, const char **s,
                 size_t *len);
int fsm_arg_attrs(fsm_cmd_t *c, const msgpack_object *map, msgpack_object *out);
/* Added for script.c: the gate every send and publish passes before it is
 * accepted (active blocks, then the queue's or topic's hook). @m describes
 * the message as it would be stored (seq and msg_id it would get). Returns 0
 * (accept) or MQHUB_EBLOCKED with the sentence in c->err. */
struct fsm_push_msg;
typedef int (*fsm_gate_fn)(void *arg, fsm_cmd_t *c, bool is_queue, const char *name,
                           size_t len, const struct fsm_push_msg *m);
/* The hook script of a queue or topic (attrs.hook of queue.get and
 * topic.get), NULL when none. */
typedef const char *(*fsm_hook_name_fn)(void *arg, bool is_queue, const char *name,
                                        size_t len);
void queue_set_gate(queues_t *qs, fsm_gate_fn fn, fsm_hook_name_fn hook_name, void *arg);

/* ======================================================================
 * topic.c — topics, subscriptions, fan-out, filters and the replicated
 * pending set of push subscriptions (docs/architecture.md "Topics").
 *
 * Public part (hub.c / push.c use it, on the loop thread, between applies):
 * ====================================================================== */

/* Called at the end of an applied entry, once per push subscription that
 * gained pending messages in it (publish, rewind, create with from). The
 * push engine then delivers them (fsm_push_pending). The callback must not
 * apply entries. @topic/@sub are not NUL-terminated. */
typedef void (*fsm_push_cb)(void *arg, const char *topic, size_t tl, const char *sub,
                            size_t sl);
void fsm_set_push_cb(fsm_t *f, fsm_push_cb cb, void *arg);

/* A pending message of a push subscription, valid during the visit only.
 * @tags: array of str or NIL; @key: str or NIL; @attrs: map or NIL. */
typedef struct fsm_push_msg {
    uint64_t seq;
    const char *msg_id;
    size_t msg_id_len;
    const char *body;
    size_t body_len;
    const msgpack_object *tags, *key, *attrs;
    uint64_t published_at;
    /* Added for script.c: the topic's name (msg.topic of a filter), NULL
     * when unknown. */
    const char *topic;
    size_t topic_len;
} fsm_push_msg_t;

/* Visit the pending messages of @topic/@sub with seq > @after, in seq order,
 * until @fn returns nonzero (that message counts as visited) or @max were
 * visited. Returns the number visited (0..max), or MQHUB_ENOT_FOUND when the
 * topic or subscription does not exist or is not a push subscription.
 * @fn must not apply entries. */
int fsm_push_pending(fsm_t *f, const char *topic, size_t tl, const char *sub, size_t sl,
                     uint64_t after, unsigned max,
                     int (*fn)(void *arg, const fsm_push_msg_t *m), void *arg);
/* Whether @seq is still pending (not acked, dead-lettered or expired); false
 * also when the subscription is gone. */
bool fsm_push_is_pending(fsm_t *f, const char *topic, size_t tl, const char *sub, size_t sl,
                         uint64_t seq);

/* The retry strategy of a subscription (for redelivery timing): attempt n
 * (1-based) is redelivered interval_ms after it was sent (backoff), or
 * min(interval_ms * 2^(n-1), max_interval_ms) (exponential); after
 * max_attempts deliveries the leader proposes `sub.dead`. */
typedef struct fsm_retry {
    bool exponential;
    uint32_t max_attempts;
    uint64_t interval_ms, max_interval_ms;
} fsm_retry_t;
/* 0 with *out filled, or MQHUB_ENOT_FOUND (no such push subscription). */
int fsm_push_retry(fsm_t *f, const char *topic, size_t tl, const char *sub, size_t sl,
                   fsm_retry_t *out);

/* ---- fsm.c <-> topic.c (private) ----
 * Ops (handlers topic_op_*, same contract as fsm_op_fn): topic.create/
 * delete/set/get/list, publish, publish_batch, subscription.create/delete/
 * get/list/rewind, ack, and the internal ops `sub.dead {topic, subscription,
 * seq, attempts}` (the leader gave up on a push message) and the topic half
 * of `tick` (retention expiry). */
typedef struct topics topics_t;
typedef int (*topic_op_fn)(topics_t *ts, fsm_cmd_t *c);

/* The topics of one state machine over @st and @qs (neither owned). */
int topic_state_new(topics_t **out, store_t *st, queues_t *qs);
void topic_state_free(topics_t *ts);
void topic_set_push_cb(topics_t *ts, fsm_push_cb cb, void *arg);
/* Added for shared bodies (queue.c): the body of topic message @seq of topic
 * id @tid that queue messages refer to (store_free; NULL when gone), and
 * giving one reference back (the last one frees the body). 0 or a store
 * failure. */
void *topic_body_get(store_t *st, uint64_t tid, uint64_t seq, size_t *len);
int topic_body_release(store_t *st, uint64_t tid, uint64_t seq);
/* Drop the in-memory state and rebuild it from the store (after load). */
int topic_rebuild(topics_t *ts);
/* Around each entry (inside queue_begin/queue_end): end flushes dirty topic
 * and subscription records and calls the push callback; MQHUB_EINTERNAL when
 * a store write failed during the entry. */
void topic_begin(topics_t *ts, uint64_t now);
int topic_end(topics_t *ts);
/* Earliest time a retained topic message expires (UINT64_MAX: none; @now
 * when the last tick ran out of budget). */
uint64_t topic_next_due(topics_t *ts, uint64_t now);

/* The filter-script slot (issue 5 fills it): @exists tells whether script
 * @name is loaded; @filter runs it on one message, 0 with *match set, or a
 * negative code with a sentence in @err (counted as a delivery failure).
 * Without hooks every named script is missing (NOT_FOUND at create). */
typedef struct topic_script_hooks {
    bool (*exists)(void *arg, const char *name, size_t len);
    int (*filter)(void *arg, const char *name, size_t len, const fsm_push_msg_t *m,
                  bool *match, char *err, size_t errlen);
    void *arg;
    /* Added by script.c: run by every client publish before acceptance;
     * the topic's hook for topic.get. */
    fsm_gate_fn gate;
    fsm_hook_name_fn hook_name;
} topic_script_hooks_t;
void topic_set_script_hooks(topics_t *ts, const topic_script_hooks_t *h);
/* Added for script.c. Whether topic @name exists. */
bool topic_exists(topics_t *ts, const char *name, size_t len);
/* Publish @msg (a map {body, tags?, key?, attrs?} as in `publish`) to topic
 * @name without passing the gate (a hook's hub.publish: no recursion). 0 or
 * a code with the sentence in c->err. */
int topic_publish_internal(topics_t *ts, fsm_cmd_t *c, const char *name, size_t len,
                           const msgpack_object *msg);
/* Visit the retained messages of topic @name published at or after @since,
 * in seq order, until @fn returns nonzero. 0, or MQHUB_ENOT_FOUND. */
int topic_visit_since(topics_t *ts, const char *name, size_t len, uint64_t since,
                      int (*fn)(void *arg, const fsm_push_msg_t *m), void *arg);
/* Call @fn("topic/subscription") for every subscription whose filter_script
 * is @script, in topic id then name order. */
void topic_script_users(topics_t *ts, const char *script, size_t len,
                        void (*fn)(void *arg, const char *user), void *arg);

int topic_push_pending(topics_t *ts, const char *topic, size_t tl, const char *sub, size_t sl,
                       uint64_t after, unsigned max,
                       int (*fn)(void *arg, const fsm_push_msg_t *m), void *arg);
bool topic_push_is_pending(topics_t *ts, const char *topic, size_t tl, const char *sub,
                           size_t sl, uint64_t seq);
int topic_push_retry(topics_t *ts, const char *topic, size_t tl, const char *sub, size_t sl,
                     fsm_retry_t *out);

/* Routing-key matching, pure (exported for the unit test): @key and
 * @binding are dot-separated words ("" is zero words, "a..b" has an empty
 * middle word); in @binding a word "*" matches exactly one word and "#" zero
 * or more words. Either longer than 255 bytes never matches. */
bool topic_key_match(const char *binding, size_t bl, const char *key, size_t kl);

int topic_op_create(topics_t *ts, fsm_cmd_t *c);
int topic_op_delete(topics_t *ts, fsm_cmd_t *c);
int topic_op_set(topics_t *ts, fsm_cmd_t *c);
int topic_op_get(topics_t *ts, fsm_cmd_t *c);
int topic_op_list(topics_t *ts, fsm_cmd_t *c);
int topic_op_publish(topics_t *ts, fsm_cmd_t *c);
int topic_op_publish_batch(topics_t *ts, fsm_cmd_t *c);
int topic_op_sub_create(topics_t *ts, fsm_cmd_t *c);
int topic_op_sub_delete(topics_t *ts, fsm_cmd_t *c);
int topic_op_sub_get(topics_t *ts, fsm_cmd_t *c);
int topic_op_sub_list(topics_t *ts, fsm_cmd_t *c);
int topic_op_sub_rewind(topics_t *ts, fsm_cmd_t *c);
int topic_op_ack(topics_t *ts, fsm_cmd_t *c);
int topic_op_sub_dead(topics_t *ts, fsm_cmd_t *c);
int topic_op_tick(topics_t *ts, fsm_cmd_t *c);

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
    bool join;                   /* never bootstrap: wait to be added */
} replica_config_t;

/* Called once per submitted command: status 0 with the reply map, or with
 * reply NULL: MQHUB_ENOT_LEADER / MQHUB_EUNAVAILABLE when it was never
 * proposed (safe to retry), MQHUB_ETIMEOUT when its entry was proposed but
 * leadership was lost or raft closed before it was known to be committed
 * (it may still be applied: outcome unknown). */
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

/* ---- membership (cluster.c is the caller) ----
 * Client addresses of other nodes: from the config's peers, from
 * replica_add(), and from what the leader replicates (docs/operations.md). */
const char *replica_client_address(replica_t *r, uint64_t id); /* NULL: unknown */
/* Called on the loop whenever this node gains (true) or loses leadership. */
void replica_set_state_cb(replica_t *r, void (*cb)(void *arg, bool leader), void *arg);
/* Completion of add/remove/transfer: 0, or MQHUB_ENOT_LEADER,
 * MQHUB_ENOT_FOUND, MQHUB_EEXISTS, MQHUB_EBAD_REQUEST, MQHUB_EUNAVAILABLE with
 * raft's sentence in @errmsg. */
typedef void (*replica_change_cb)(void *arg, int status, const char *errmsg);
/* Add node @id (raft at @raft_address) as a spare, then make it a voter once
 * it caught up (raft's catch-up rounds). @client_address may be NULL. Returns
 * 0 (cb will run), or a code (cb never runs; MQHUB_EEXISTS also when @id is a
 * voter at that address already). Leader only. */
int replica_add(replica_t *r, uint64_t id, const char *raft_address,
                const char *client_address, replica_change_cb cb, void *arg);
int replica_remove(replica_t *r, uint64_t id, replica_change_cb cb, void *arg);
/* Hand leadership to voter @id (0: raft picks the most up to date). */
int replica_transfer(replica_t *r, uint64_t id, replica_change_cb cb, void *arg);
typedef struct replica_node {
    uint64_t id;
    const char *raft_address;   /* valid until the next loop turn */
    const char *client_address; /* NULL when unknown */
    const char *role;           /* "voter", "standby", "spare" */
    bool leader;
    bool has_match;             /* match_index known (we lead) */
    uint64_t match_index;
} replica_node_t;
/* Fill up to @max members of the current configuration; returns how many
 * there are. */
unsigned replica_nodes(replica_t *r, replica_node_t *out, unsigned max);
/* Close raft; the open batch fails with MQHUB_EUNAVAILABLE, proposed entries
 * with MQHUB_ETIMEOUT (each callback
 * still runs exactly once, some of them before this returns); @cb when done,
 * after which @r is freed. Call it from the loop, not from a replica_done_cb.
 * replica_start() failing after raft_init also cleans up through the loop. */
void replica_stop(replica_t *r, void (*cb)(void *arg), void *arg);

/* ======================================================================
 * snapshot.c — raft snapshots off the loop thread (docs/architecture.md
 * "Recovery"): the fsm's snapshot callback freezes the store and returns a
 * placeholder; a struct raft_io wrapped around raft_uv dumps the frozen store
 * in the libuv thread pool, writes it through raft_uv, thaws the store.
 * ====================================================================== */
/* fsm.c's raft_fsm snapshot: with @deferred, freeze @st and return one
 * placeholder buffer that only snapshot_io's snapshot_put understands; else
 * a complete synchronous store_dump(). 0 or MQHUB_EINTERNAL (nothing to free). */
int snapshot_take(store_t *st, bool deferred, struct raft_buffer **bufs, unsigned *n_bufs);
/* fsm.c's raft_fsm snapshot_finalize: free what snapshot_take() returned (and
 * thaw the store if a failed put left it frozen). */
void snapshot_release(struct raft_buffer **bufs, unsigned *n_bufs);

/* The wrapper. Fields are private; embed it in the object that owns @inner.
 * It owns two uv timers (opened at first use, closed by raft's close).
 * InstallSnapshot sends share one loaded copy of the snapshot, at most one
 * send per follower is in flight, and a follower that was sent the snapshot
 * at some index is not sent it again for SNAPSHOT_RESEND_MS (snapshot.c
 * "Sends"): the leader holds at most one copy of the snapshot for them. */
#define SNAPSHOT_PEERS 8
struct snapshot_put;
struct snapshot_sent;
struct snapshot_get;
typedef struct snapshot_peer {
    uint64_t id, index, done_ms; /* last successful send: index, uv_now() */
    bool in_flight;
} snapshot_peer_t;
typedef struct snapshot_io {
    struct raft_io io;          /* what raft sees */
    struct raft_io *inner;      /* raft_uv */
    uv_loop_t *loop;
    struct snapshot_put *put;   /* the deferred put in progress, or NULL */
    raft_io_close_cb close_cb;  /* set once raft closes */
    uv_timer_t timer;           /* loop lag probe during a dump, then drain */
    bool timer_init, timer_closed;
    store_t *draining;          /* store whose overlay the timer drains */
    uint64_t lag_last, lag_max, drain_t0; /* uv_hrtime() ns */
    /* Sends (added by perf2): */
    struct snapshot_sent *sent;  /* the loaded snapshot sends share, or NULL */
    struct snapshot_get *gets;   /* raft's snapshot_get requests waiting */
    struct raft_io_snapshot_get load_req; /* our load through raft_uv */
    bool loading;
    uint64_t load_epoch, put_epoch, next_gen; /* put_epoch: puts completed */
    uv_timer_t get_timer;        /* serves waiting gets; expires the copy */
    bool get_timer_init, get_timer_closed, inner_closing;
    snapshot_peer_t peers[SNAPSHOT_PEERS];
} snapshot_io_t;
/* Wrap @inner (initialised, not yet given to raft_init) and switch @f to
 * deferred snapshots; returns &w->io for raft_init(). @w lives until raft's
 * close callback. Loop thread. */
struct raft_io *snapshot_io_wrap(snapshot_io_t *w, struct raft_io *inner, uv_loop_t *loop,
                                 fsm_t *f);
/* Implemented in fsm.c (its raft glue): make the fsm's snapshot callback
 * return placeholders (true) or full dumps (false, the default). Only for an
 * fsm whose raft runs over snapshot_io. */
void fsm_set_snapshot_deferred(fsm_t *f, bool deferred);

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
    config_object_t *scripts;  /* hook files: name + source (in attrs) */
    unsigned n_scripts;
    bool join;               /* node.join: a new member, never bootstraps */
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
/* Counters, created on first use; hub_metric_get returns 0 for unknown names.
 * hub_metric_get also reads the request latency histograms kept per
 * transport (hub.c's map): "request_seconds_count.<transport>",
 * "request_seconds_sum_us.<transport>" (microseconds) and
 * "request_seconds_bucket.<transport>.<i>" (cumulative, i = 0..11 for the
 * bounds 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 5 s). */
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
/* Added by dedupe: response packing shared by hub.c and cluster.c. A str. */
void hub_pack_str(msgpack_packer *pk, const char *s);
/* Start a response map of @n_extra fields after id (when @has_id) and ok. */
void hub_pack_head(msgpack_packer *pk, bool has_id, uint64_t id, bool ok, unsigned n_extra);
/* A complete error response {id?, ok: false, code, error: @msg, leader?}
 * (@leader NULL: no leader field). */
void hub_pack_error(msgpack_packer *pk, bool has_id, uint64_t id, int code, const char *msg,
                    const char *leader);

/* ======================================================================
 * cluster.c — cluster.status/add/remove/transfer (PROTOCOL.md "Cluster"),
 * answered by the hub on the node that receives them. The node's id is the
 * request field `node` (`id` is the request id).
 * ====================================================================== */
typedef struct cluster cluster_t;

int cluster_new(cluster_t **out, replica_t *r, fsm_t *f);
/* Frees what is still pending (their replies are dropped). */
void cluster_free(cluster_t *c);
bool cluster_is_op(const char *op, size_t len);
/* Answer @v (a cluster.* op): at once, or when raft completes the change. */
void cluster_request(cluster_t *c, mqhub_session_t *s, const hub_request_view_t *v,
                     mqhub_reply_cb cb, void *arg);
/* @s is closing: its pending changes complete without a reply. */
void cluster_session_closed(cluster_t *c, mqhub_session_t *s);

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

/* ======================================================================
 * push.c — the leader's push delivery engine (docs/protocol.md "Push
 * delivery"). Sessions subscribe to push subscriptions with a credit window;
 * the engine hands each pending message to one subscribed session with free
 * credit (round-robin), tracks it in flight (seq -> session, attempt,
 * redeliver_at), redelivers it per the subscription's retry strategy and
 * proposes `sub.dead` once max_attempts are used. Acks go through raft as
 * ordinary writes; the hub tells the engine when one was applied. All state is
 * in memory on the leader and forgotten when leadership is lost.
 * ====================================================================== */
typedef struct push push_t;

/* A new engine over @fsm (registers the fsm push callback). 0 or
 * MQHUB_EINTERNAL. */
int push_new(push_t **out, uv_loop_t *loop, fsm_t *fsm);
/* The raft group the engine proposes sub.dead through and asks about
 * leadership; set once it exists (no delivery happens before). */
void push_set_replica(push_t *p, replica_t *r);
/* subscribe / credit / unsubscribe (the FSM_OP_SESSION ops) of session @s,
 * whose pushes go to @cb(@cb_arg, ...). @req is the request map. Returns 0
 * (reply {}), or MQHUB_ENOT_LEADER, MQHUB_ENOT_FOUND, MQHUB_EBAD_REQUEST,
 * MQHUB_EINTERNAL with a sentence in @err. Pushes may be sent before it
 * returns. */
int push_request(push_t *p, mqhub_session_t *s, mqhub_push_cb cb, void *cb_arg,
                 const msgpack_object *req, char *err, size_t errlen);
/* An `ack` or `subscription.rewind` request (@frame, the request as
 * submitted) was applied and answered: acknowledged messages leave the
 * in-flight set and release their session's credit; a rewound subscription
 * is scanned again from its first pending message. */
void push_write_done(push_t *p, const char *frame, size_t len);
/* @s is closing: its consumers go away, their unacked messages are
 * deliverable again at once (the attempt counts). */
void push_session_close(push_t *p, mqhub_session_t *s);
/* Periodic: when this node is no longer the leader, every subscribed session
 * gets a "closed" push (NOT_LEADER) and the engine forgets its state. */
void push_check(push_t *p);
/* Close the engine's timer; @cb once it is closed. push_free() after. */
void push_stop(push_t *p, void (*cb)(void *arg), void *arg);
void push_free(push_t *p);

/* ======================================================================
 * script.c — the Lua 5.4 script host (docs/scripting.md): scripts live in
 * the store and run inside apply in a sandbox, so every node computes the
 * same result. Filters (topic_script_hooks_t), hooks and blocks (the gate of
 * queue.c and topic.c), hub.state / hub.window / hub.block / hub.publish,
 * and the ops script.load/get/list/delete/test, block.list/delete.
 * ====================================================================== */
typedef struct scripts scripts_t;
typedef int (*script_op_fn)(scripts_t *sc, fsm_cmd_t *c);

/* The script host over @st; registers itself as @qs's gate and @ts's
 * script hooks (none of them owned). 0 or MQHUB_EINTERNAL. */
int script_state_new(scripts_t **out, store_t *st, queues_t *qs, topics_t *ts);
void script_state_free(scripts_t *sc);
/* Drop compiled scripts and caches, reload them from the store (after load). */
int script_rebuild(scripts_t *sc);
/* Around each entry: begin starts a new script instance generation (each
 * script's chunk runs again, lazily, in a fresh environment); end flushes
 * the counters, MQHUB_EINTERNAL when a store write failed. */
void script_begin(scripts_t *sc, uint64_t now);
int script_end(scripts_t *sc);
/* After each applied command: publish what hooks emitted with hub.publish. */
void script_after_cmd(scripts_t *sc, fsm_cmd_t *c);
/* attrs.hook of queue.create/set, topic.create/set (@kind 'q' or 't'):
 * before the handler (@after false) validate it; after a successful handler
 * attach/detach it; after queue.delete/topic.delete drop the binding. @op is
 * the op name. */
int script_hook_op(scripts_t *sc, fsm_cmd_t *c, char kind, const char *op, bool after);
int script_op_load(scripts_t *sc, fsm_cmd_t *c);
int script_op_get(scripts_t *sc, fsm_cmd_t *c);
int script_op_list(scripts_t *sc, fsm_cmd_t *c);
int script_op_delete(scripts_t *sc, fsm_cmd_t *c);
int script_op_test(scripts_t *sc, fsm_cmd_t *c);
int script_op_block_list(scripts_t *sc, fsm_cmd_t *c);
int script_op_block_delete(scripts_t *sc, fsm_cmd_t *c);
/* The script half of `tick`: expired blocks and idle windows go. */
int script_op_tick(scripts_t *sc, fsm_cmd_t *c);

#endif
