/* core/sm/sm.h: the state machine as the layers above it see it (core/raft,
 * core/node, tests, benchmarks). Everything under core/sm/ runs only inside
 * raft apply (or reads applied state between applies) and gives the same
 * result on every node: no clock, no I/O, no libuv. Its private contract
 * between its own files is sm_int.h.
 *
 * Map:
 *   store.c     Kyoto Cabinet TreeDB wrapper, snapshot dump/load, digest
 *   fsm.c       raft entry format, apply loop, results, reads, raft_fsm glue
 *   subscription.c  the replicated pending set of push subscriptions
 * All functions here run on the daemon's loop thread unless they say so.
 */
#ifndef MQHUB_SM_H
#define MQHUB_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>
#include <raft.h>

#include "mqhub/errors.h"
#include "mqhub/protocol.h"

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
/* The size of the value of @k without reading it, or -1 when absent. */
int64_t store_size(store_t *s, const void *k, size_t kl);
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
/* How many store_put and store_del calls there were (a measure of the work
 * an apply did, for tests: store_del_prefix counts one per key). */
uint64_t store_writes(const store_t *s);
/* Serialise every record into raft buffers (allocated with raft_malloc, the
 * caller owns them) / replace the whole content from such a dump. While
 * frozen, store_dump() serialises the state at store_freeze() and may run on
 * another thread (it only reads the file DB, which nothing writes then);
 * store_load() refuses a frozen store (MQHUB_EINTERNAL). */
int store_dump(store_t *s, struct raft_buffer **bufs, unsigned *n_bufs);
int store_load(store_t *s, const void *data, size_t len);
/* Frozen mode, for snapshots off the loop (core/raft/snapshot.c): after
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
/* Big-endian u64 in store keys; the 17-byte key <prefix><id be64><seq be64>. */
void store_be64_put(unsigned char *p, uint64_t v);
uint64_t store_be64_get(const unsigned char *p);
void store_key_id_seq(unsigned char k[17], char prefix, uint64_t id, uint64_t seq);

/* ======================================================================
 * fsm.c — the deterministic state machine of one raft group.
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

/* ======================================================================
 * ops.c — the one op table: every op of the protocol is one row (name, who
 * answers it, flags, and the handler that runs it). docs/architecture.md
 * "Ops" walks one op from the socket to the disk.
 * ====================================================================== */
enum ops_kind {
    OPS_UNKNOWN = 0,
    OPS_LOCAL,    /* answered by the hub itself (hello, ping) */
    OPS_READ,     /* answered from applied state on the leader: fsm_read() */
    OPS_WRITE,    /* proposed through raft, applied by fsm_apply_entry() */
    OPS_SESSION,  /* subscribe, credit, unsubscribe: the leader's push engine
                   * (node/push.c) answers them; they never reach apply */
    OPS_INTERNAL, /* applied like writes but proposed only by the node itself
                   * (tick, sub.dead): a client sending one gets UNKNOWN_OP */
    OPS_CLUSTER,  /* cluster.*: membership, answered by node/cluster.c */
};

/* Row flags. */
#define OPS_F_PUBLIC 0x01u    /* allowed before a session authenticated (hello) */
#define OPS_F_LONG_POLL 0x02u /* an empty answer may be parked until `wait` (receive) */
#define OPS_F_HOOK_QUEUE 0x04u /* attrs.hook of a queue: script.c sees the command
                                * before and after its handler */
#define OPS_F_HOOK_TOPIC 0x08u /* the same for a topic */
#define OPS_F_TOKEN 0x10u     /* carries a secret the hub replaces by its SHA-256
                               * before submitting (user.create) */
#define OPS_F_SLICED 0x20u    /* a read that may run long (script.test): the hub
                               * runs it in slices, fsm_read_start() */
#define OPS_F_OWNER 0x40u     /* with `ephemeral: true` the hub writes `owner`, the
                               * session's (subscription.create); a client's is
                               * dropped */

/* Which node-side handler answers a row the state machine does not run. */
enum ops_node {
    OPS_NODE_NONE = 0,
    OPS_NODE_HELLO,
    OPS_NODE_PING,
    OPS_NODE_SUBSCRIBE,
    OPS_NODE_CREDIT,
    OPS_NODE_UNSUBSCRIBE,
    OPS_NODE_CLUSTER_STATUS,
    OPS_NODE_CLUSTER_ADD,
    OPS_NODE_CLUSTER_REMOVE,
    OPS_NODE_CLUSTER_TRANSFER,
    OPS_NODE_CONNECTION_LIST, /* the leader's sessions (hub.c) */
    OPS_NODE_CONSUMER_LIST,   /* its long polls and push consumers (hub.c) */
};

/* What a grant allows (docs/security.md "Permissions"). A row names the
 * verb each of its objects needs; the hub checks them before anything is
 * submitted. */
enum ops_verb {
    OPS_V_NONE = 0, /* no check: any authenticated identity */
    OPS_V_ANY,      /* any verb on the name (get: seeing it) */
    OPS_V_SEND,
    OPS_V_RECEIVE,
    OPS_V_PUBLISH,
    OPS_V_SUBSCRIBE,
    OPS_V_MANAGE,   /* create, delete, set, purge, rewind */
    OPS_V_SCRIPT,   /* scripts and blocks */
    OPS_V_ADMIN,    /* cluster.*, user.* */
    OPS_V_MONITOR,  /* read-only: metrics (on *), and seeing names (ANY); admin implies it */
};
/* The verb's wire name ("send"), "any" for OPS_V_ANY, "" for OPS_V_NONE. */
const char *ops_verb_name(enum ops_verb v);
/* The verb named @s (@len bytes), OPS_V_NONE when none is (ANY is not one). */
enum ops_verb ops_verb_find(const char *s, size_t len);

/* One object a request names and the verb it needs on it. @field is the
 * request field holding the name, dotted for nested maps
 * ("attrs.dead_letter.queue"); NULL: the op acts on the whole hub, checked as
 * the name "*" (only a grant with pattern "*" covers it). perm[0] is the
 * op's own object (its field is required); the others are checked when
 * present. */
#define OPS_PERMS 3
typedef struct ops_perm {
    enum ops_verb verb;
    const char *field;
} ops_perm_t;

struct cmd;
typedef struct ops_row {
    const char *name;
    enum ops_kind kind;
    unsigned flags;             /* OPS_F_* */
    enum ops_node node;         /* LOCAL, SESSION, CLUSTER rows */
    int (*fn)(struct cmd *c);   /* READ, WRITE, INTERNAL rows (sm_int.h) */
    ops_perm_t perm[OPS_PERMS]; /* what a named user needs; verb NONE: unused */
    /* The top-level request fields the op uses, space-separated ("op id
     * queue body ..."): all that the hub submits of a client's write request
     * (nested maps such as attrs are kept whole). NULL on rows the hub never
     * submits for a client (reads, node ops, internal ops). */
    const char *fields;
} ops_row_t;

/* The row of op @name (@len bytes), or NULL for an unknown op. */
const ops_row_t *ops_find(const char *name, size_t len);

/* Whether @key (@len bytes) is one of @o's fields (ops_row_t.fields); true
 * for every key when the row names none. */
bool ops_uses_field(const ops_row_t *o, const char *key, size_t len);

/* Answer a read request (@req, the request map) into @out: a complete
 * response map (id, ok, ...). Returns 0. */
int fsm_read(fsm_t *f, const msgpack_object *req, msgpack_sbuffer *out);

/* A read that may run long (rows flagged OPS_F_SLICED: script.test) runs in
 * slices of bounded work, one per loop turn, so it never holds the loop.
 * fsm_read_start() answers any other read at once (*cur NULL, the response
 * in @out, as fsm_read_as). A sliced one runs its first slice; when it is
 * not finished *cur is a cursor and @out stays empty: call fsm_read_step()
 * on a later loop turn until it returns true with the response in @out.
 * Entries may be applied (and a snapshot restored) between slices: each
 * slice reads the state of its moment (what that means for the op:
 * docs/scripting.md). The cursor keeps its own copy of @req and @hash and
 * no pointer into the state; the caller frees it with fsm_read_free()
 * whether the read finished or not (NULL: nothing). Returns 0. Loop thread,
 * between applies. */
typedef struct fsm_read fsm_read_t;
int fsm_read_start(fsm_t *f, const msgpack_object *req, const unsigned char *hash,
                   msgpack_sbuffer *out, fsm_read_t **cur);
bool fsm_read_step(fsm_t *f, fsm_read_t *cur, msgpack_sbuffer *out);
void fsm_read_free(fsm_read_t *cur);

/* Long-poll support: ready messages in @queue now (0 also when absent), and
 * the earliest time (ms) any delayed or locked message of any queue becomes
 * visible (UINT64_MAX when none). */
uint64_t fsm_queue_ready(fsm_t *f, const char *queue, size_t len);
uint64_t fsm_next_due(fsm_t *f);
/* True when the periodic tick would change nothing until something is
 * written (queue_tick_idle, script_tick_idle; topics' retention is in
 * fsm_next_due): the leader may skip it, so an idle hub writes nothing to its
 * log. */
bool fsm_tick_idle(fsm_t *f);
/* The clock of the last applied entry. */
uint64_t fsm_now(fsm_t *f);
/* SHA-256 of the whole state (store content), for determinism checks. */
void fsm_digest(fsm_t *f, unsigned char out[32]);
/* The store of the state machine: for the snapshot wrapper (raft/snapshot.c)
 * and tests; read it only. */
store_t *fsm_store(fsm_t *f);

/* ======================================================================
 * user.c — named identities and their grants (docs/security.md), replicated
 * like queues. A user is known by the SHA-256 of its token; the hub keeps
 * that hash per session and asks here on every request, so a grant, revoke
 * or delete applies to open sessions at once. Loop thread, between applies.
 * ====================================================================== */
#define FSM_USER_HASH_LEN 32
/* SHA-256 of @token (what user.create stores and hello looks up). */
void fsm_user_hash(const char *token, size_t len, unsigned char out[FSM_USER_HASH_LEN]);
/* The user whose token hashes to @hash: 0 with its name in @name (@size ≥
 * MQHUB_NAME_MAX + 1), or MQHUB_EUNAUTHORIZED. */
int fsm_user_find(fsm_t *f, const unsigned char hash[FSM_USER_HASH_LEN], char *name,
                  size_t size);
/* The token hash of the user named @name (@len bytes) into @hash: 0, or
 * MQHUB_EUNAUTHORIZED when no such user exists. For sessions a plugin
 * identified by name (hub.c, session_identify): looked up per request, so a
 * deleted user loses them and one re-created under the name takes them. */
int fsm_user_by_name(fsm_t *f, const char *name, size_t len,
                     unsigned char hash[FSM_USER_HASH_LEN]);
/* Whether the user of @hash holds @verb (OPS_V_ANY: any verb) on object
 * @obj ("*": the whole hub): 0, MQHUB_EFORBIDDEN, or MQHUB_EUNAUTHORIZED when
 * no user has that token any more (deleted). */
int fsm_user_may(fsm_t *f, const unsigned char hash[FSM_USER_HASH_LEN], enum ops_verb verb,
                 const char *obj, size_t len);
/* How many users exist (0: the hub authenticates with its root token only). */
size_t fsm_user_count(fsm_t *f);
/* fsm_read() for a named user (@hash): queue.list and topic.list list only
 * the names it holds some grant on. @hash NULL: everything, as fsm_read. */
int fsm_read_as(fsm_t *f, const msgpack_object *req, const unsigned char *hash,
                msgpack_sbuffer *out);

/* ======================================================================
 * Push subscriptions: the replicated pending set (subscription.c) as the
 * node's push engine (node/push.c) reads it, on the loop thread, between
 * applies.
 * ====================================================================== */

/* What apply tells the leader's push engine about a push subscription:
 *   FSM_PUSH_PENDING  it gained pending messages in this entry (publish,
 *                     rewind, create with from); called once per
 *                     subscription at the end of the entry, @seq 0;
 *   FSM_PUSH_ACKED    message @seq was acknowledged (an applied `ack`);
 *   FSM_PUSH_REWOUND  it was rewound (an applied `subscription.rewind`), @seq 0.
 * Called during apply, on every node (a node without push sessions ignores
 * it). The callback must not apply entries or read the store; it only marks
 * work for later. @topic/@sub are not NUL-terminated. */
enum fsm_push_event { FSM_PUSH_PENDING, FSM_PUSH_ACKED, FSM_PUSH_REWOUND };
typedef void (*fsm_push_cb)(void *arg, enum fsm_push_event ev, const char *topic, size_t tl,
                            const char *sub, size_t sl, uint64_t seq);
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

#endif
