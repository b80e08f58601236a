/* core/sm/sm_int.h: the private contract between the files of the state
 * machine (core/sm/): the command being applied and its argument/reply
 * helpers (cmd.c), and the parts fsm.c drives — queues (queue.c), topics
 * (topic.c, subscription.c, body.c, route.c), scripts (script.c). Nothing
 * outside core/sm/ includes it.
 * Everything here runs inside apply (or a read between applies): no clock,
 * no I/O, the same result on every node.
 */
#ifndef MQHUB_SM_INT_H
#define MQHUB_SM_INT_H

#include "log.h"
#include "mp.h"
#include "omap.h"
#include "sm.h"
#include "wire.h"

typedef struct queues queues_t;
typedef struct topics topics_t;
typedef struct scripts scripts_t;
typedef struct users users_t;

/* ======================================================================
 * cmd.c — one command being applied (or read), and the toolkit handlers
 * use to read its fields and pack their reply.
 * ====================================================================== */

/* A handler validates @req, changes the state, and packs its result fields
 * into @pk as map entries (cmd_reply_key() then the value), or returns
 * cmd_fail(). @pk is NULL when replies are not emitted (followers): handlers
 * then skip the work done only for the reply. The parts of the state machine
 * are reachable from the command (fsm.c sets them; none owned). */
typedef struct cmd {
    const msgpack_object *req; /* the request map */
    uint64_t now;              /* the entry's clock, ms */
    msgpack_packer *pk;
    uint32_t n_fields;         /* map entries packed into pk */
    store_t *st;
    queues_t *qs;
    topics_t *ts;
    scripts_t *sc;
    users_t *us;
    const unsigned char *viewer; /* reads for a named user (token hash): lists
                                  * show only what it may see; NULL: all */
    struct cmd_slice *slice;   /* a read run in slices (OPS_F_SLICED rows,
                                * fsm_read_start); NULL: run it to the end */
    char err[320];             /* the sentence of the failure */
} cmd_t;
/* What a read run in slices keeps between them. Its handler allocates
 * @state at the first slice (NULL until then) with @free to release it, and
 * sets @more when it needs another slice (its reply fields are then not
 * used). fsm.c owns the struct and calls @free once the read ends or is
 * abandoned. */
typedef struct cmd_slice {
    void *state;
    void (*free)(void *state);
    bool more;
} cmd_slice_t;
/* The one handler type of the op table (ops.c). Returns 0 or a negative
 * MQHUB_E* code (a business error, reported in the reply; the state is
 * unchanged by a failed command). */
typedef int (*op_fn)(cmd_t *c);

/* Record @code's sentence in c->err; returns @code. */
int cmd_fail(cmd_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Argument readers. All failures are MQHUB_EBAD_REQUEST (cmd_arg_name:
 * MQHUB_EBAD_NAME) with a sentence naming the field. A str field; when
 * absent and not @required, *s = NULL, *len = 0. */
int cmd_arg_str(cmd_t *c, const msgpack_object *map, const char *key, bool required,
                const char **s, size_t *len);
/* An unsigned integer field within [min, max]; *out unchanged when absent. */
int cmd_arg_uint(cmd_t *c, const msgpack_object *map, const char *key, uint64_t min,
                 uint64_t max, uint64_t *out);
/* A name field (docs/protocol.md names). */
int cmd_arg_name(cmd_t *c, const msgpack_object *map, const char *key, const char **s,
                 size_t *len);
/* An optional attrs field (map str -> str; *out NIL when absent). */
int cmd_arg_attrs(cmd_t *c, const msgpack_object *map, msgpack_object *out);
/* The MessagePack encoded size of @attrs (a map str -> str as cmd_arg_attrs
 * accepts; 0 for NIL or NULL): what max_msg_size counts besides the body. */
size_t cmd_attrs_size(const msgpack_object *attrs);
/* Pack @key as the next reply field (no-op when c->pk is NULL). */
void cmd_reply_key(cmd_t *c, const char *key);
/* cmd_reply_key(@key) then the uint @v (no-op when c->pk is NULL). */
void cmd_reply_uint(cmd_t *c, const char *key, uint64_t v);
/* A map entry @key: @v / @key: @s into @pk (non-NULL). */
void cmd_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t v);
void cmd_pack_kv_str(msgpack_packer *pk, const char *key, const char *s, size_t len);
/* The result {ok: true} of one item of a batch op. */
void cmd_pack_ok_item(msgpack_packer *pk);
/* One item of a batch op: validate and apply @item; 0 (having packed the
 * item's result map when c->pk is set) or a code with the sentence in c->err. */
typedef int (*cmd_item_fn)(void *arg, cmd_t *c, const msgpack_object *item);
/* The batch ops (send_batch, publish_batch, delete, ack): field @key must be
 * an array of 1..@max items (@what names them in the error: "maps"); @fn runs
 * on each in order, one failing does not stop the others, and the reply field
 * "results" holds per item @fn's map or {code, error}. 0 or MQHUB_EBAD_REQUEST. */
int cmd_batch(cmd_t *c, const char *key, const char *what, uint32_t max,
              cmd_item_fn fn, void *arg);
/* queue.list / topic.list: the keys of @names (name -> object, in name
 * order) filtered by the request's prefix, offset, limit, as reply field
 * @key plus "total". O(log n + limit) per list; for a viewer (a named user)
 * every name under the prefix is checked. Returns 0 or MQHUB_EBAD_REQUEST. */
int cmd_list_names(cmd_t *c, const omap_t *names, const char *key);

/* ======================================================================
 * listing.c — queue.list / topic.list with stats, match, sort, desc.
 * ====================================================================== */
typedef struct listing {
    const char *match, *prefix;
    size_t mlen, plen;
    bool stats, desc;
    int sort;                /* index into the caller's sort names; 0: name */
    uint64_t offset, limit;
} listing_t;
/* The sort key of @obj (an omap value) for sort @sort (>= 1). */
typedef uint64_t (*listing_key_fn)(void *arg, const void *obj, int sort);
/* Pack @obj's row (one map) into c->pk. */
typedef void (*listing_row_fn)(void *arg, cmd_t *c, const void *obj);
/* Parse a list request. *extended is false for the old form (none of stats,
 * match, sort, desc: answer it with cmd_list_names). @sorts: the sort names,
 * "name" first, NULL-terminated. 0 or MQHUB_EBAD_REQUEST. */
int listing_args(cmd_t *c, const char *const *sorts, listing_t *l, bool *extended);
/* Reply field @key (rows, or names without stats) and "total" for the
 * names of @names (name -> object) that @l selects, in its order. 0, or
 * MQHUB_EINTERNAL when out of memory. */
int listing_run(cmd_t *c, const listing_t *l, const omap_t *names, const char *key,
                listing_key_fn sort_key, listing_row_fn pack_row, void *arg);

/* ======================================================================
 * queue.c — queues and their messages (docs/architecture.md "Messages").
 * ====================================================================== */
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
/* True when no queue is in queue.c's tick index (so none holds anything
 * that retention, a rewind window or dedup expiry could remove) and no
 * reclaim is pending: the periodic tick has nothing to do (fsm_tick_idle).
 * Never true while something can expire. Not part of the replicated state. */
bool queue_tick_idle(const queues_t *qs);
/* Handlers (see PROTOCOL.md for each op). */
int queue_op_create(cmd_t *c);
int queue_op_delete(cmd_t *c);
int queue_op_purge(cmd_t *c);
int queue_op_set(cmd_t *c);
int queue_op_rewind(cmd_t *c);
int queue_op_peek(cmd_t *c);
int queue_op_redrive(cmd_t *c);
int queue_op_get(cmd_t *c);
int queue_op_list(cmd_t *c);
int queue_op_send(cmd_t *c);
int queue_op_send_batch(cmd_t *c);
int queue_op_receive(cmd_t *c);
int queue_op_delete_msgs(cmd_t *c);
int queue_op_change_visibility(cmd_t *c);
int queue_op_tick(cmd_t *c);
/* Mark dead every record <@kind><@id be64><seq be64> with seq below @floor
 * (UINT64_MAX: all), and with @dedup the queue's D<@id> records too: tick
 * removes them in bounded chunks (docs/architecture.md "Deleting and
 * purging"). @kind is 'M' (a queue's messages, with their B bodies and
 * shared-body references), 'P' (a topic's retained log; bodies still
 * referred to are kept in G first) or 'W' (a subscription's pending set).
 * One store write. */
void queue_reclaim_mark(queues_t *qs, char kind, uint64_t id, uint64_t floor, bool dedup);
/* Whether queue @name exists. */
bool queue_exists(queues_t *qs, const char *name, size_t len);
/* Append a message that a topic fans out (or dead-letters) to queue @name
 * under the queue's rules (max_msg_size, max_backlog; no dedup, no delay
 * beyond the queue's default). @msg_id is kept; @tags (array of str) and
 * @attrs (map str -> str) may be NULL or NIL. Returns 0, or MQHUB_ENOT_FOUND,
 * MQHUB_ETOO_LARGE, MQHUB_EBACKLOG_FULL with the sentence in c->err. */
int queue_append_from_topic(queues_t *qs, cmd_t *c, const char *name, size_t len,
                            const char *msg_id, const void *body, size_t blen,
                            const msgpack_object *tags, const msgpack_object *attrs);
/* The same, but the message stores no body of its own; it refers to topic
 * message @seq of topic id @tid (whose body has @blen bytes). The caller
 * counts the reference (body_add_refs). */
int queue_append_ref(queues_t *qs, cmd_t *c, const char *name, size_t len,
                     const char *msg_id, size_t blen, const msgpack_object *tags,
                     const msgpack_object *attrs, uint64_t tid, uint64_t seq);
/* The gate every send and publish passes before it is accepted (active
 * blocks, then the queue's or topic's hook). @m describes the message as it
 * would be stored (seq and msg_id it would get). Returns 0 (accept),
 * MQHUB_EBLOCKED, or MQHUB_EUNAVAILABLE (the entry's script budget is spent,
 * the hook did not run) with the sentence in c->err. */
struct fsm_push_msg;
typedef int (*fsm_gate_fn)(void *arg, cmd_t *c, bool is_queue, const char *name,
                           size_t len, const struct fsm_push_msg *m);
/* The hook script of a queue or topic (attrs.hook of queue.get and
 * topic.get), NULL when none. */
typedef const char *(*fsm_hook_name_fn)(void *arg, bool is_queue, const char *name,
                                        size_t len);
void queue_set_gate(queues_t *qs, fsm_gate_fn fn, fsm_hook_name_fn hook_name, void *arg);

/* ======================================================================
 * Topics (docs/architecture.md "Topics"): topic.c — topics, publish,
 * retention; subscription.c — subscriptions, their filters and endpoints,
 * the replicated pending set of push subscriptions; body.c — the bodies
 * queue messages share with topic messages; route.c — routing keys. topic.c
 * and subscription.c share their structures in topic_int.h.
 * ====================================================================== */

/* ---- topic.c ---- */

/* The topics of one state machine over @st and @qs (neither owned). */
int topic_state_new(topics_t **out, store_t *st, queues_t *qs);
void topic_state_free(topics_t *ts);
void topic_set_push_cb(topics_t *ts, fsm_push_cb cb, void *arg);
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

/* The script slots (script/ fills them): @exists tells whether script
 * @name is loaded; @filter runs it on one message, 0 with *match set, or a
 * negative code with a sentence in @err (counted as a delivery failure).
 * Without hooks every named script is missing (NOT_FOUND at create). @gate
 * runs before every client publish is accepted; @hook_name gives the
 * topic's hook for topic.get. */
typedef struct topic_script_hooks {
    bool (*exists)(void *arg, const char *name, size_t len);
    int (*filter)(void *arg, const char *name, size_t len, const fsm_push_msg_t *m,
                  bool *match, char *err, size_t errlen);
    void *arg;
    fsm_gate_fn gate;
    fsm_hook_name_fn hook_name;
} topic_script_hooks_t;
void topic_set_script_hooks(topics_t *ts, const topic_script_hooks_t *h);
/* Publish @msg (a map {body, tags?, key?, attrs?} as in `publish`) to topic
 * @name without passing the gate (a hook's hub.publish: no recursion). 0 or
 * a code with the sentence in c->err. */
int topic_publish_internal(topics_t *ts, cmd_t *c, const char *name, size_t len,
                           const msgpack_object *msg);
/* A visit of a topic's retained messages that may go on in later calls
 * (script.test runs in slices): the caller sets @since, @from (0 at first)
 * and @max; each call advances @from and sets the rest. */
typedef struct topic_visit {
    uint64_t since;    /* messages published at or after (ms) */
    uint64_t from;     /* the next seq to look at */
    size_t max;        /* records to look at in this call, at most */
    uint64_t topic_id; /* set: the topic's id (another once it is deleted and
                        * created again) */
    bool end;          /* set: nothing retained after @from */
} topic_visit_t;
/* Visit the retained messages of topic @name from seq v->from on that were
 * published at or after v->since, in seq order, looking at v->max records at
 * most, until @fn returns nonzero (that message is not taken: v->from stays
 * on it). 0, or MQHUB_ENOT_FOUND. */
int topic_visit_since(topics_t *ts, const char *name, size_t len, topic_visit_t *v,
                      int (*fn)(void *arg, const fsm_push_msg_t *m), void *arg);
/* Call @fn("topic/subscription") for every subscription whose filter_script
 * is @script, in topic id then name order. */
void topic_script_users(topics_t *ts, const char *script, size_t len,
                        void (*fn)(void *arg, const char *user), void *arg);

/* Handlers (see PROTOCOL.md for each op); topic_op_tick is the topic half
 * of `tick` (retention expiry). */
int topic_op_create(cmd_t *c);
int topic_op_delete(cmd_t *c);
int topic_op_set(cmd_t *c);
int topic_op_get(cmd_t *c);
int topic_op_list(cmd_t *c);
int topic_op_publish(cmd_t *c);
int topic_op_publish_batch(cmd_t *c);
int topic_op_tick(cmd_t *c);

/* ---- subscription.c ---- */

/* Handlers: subscription.create/delete/get/list/rewind, ack, and the
 * internal op `sub.dead {topic, subscription, seq, attempts}` (the leader
 * gave up on a push message). */
int sub_op_create(cmd_t *c);
int sub_op_set(cmd_t *c);
int sub_op_delete(cmd_t *c);
int sub_op_get(cmd_t *c);
int sub_op_list(cmd_t *c);
int sub_op_rewind(cmd_t *c);
/* topic.peek {topic, subscription?, max?, from?}: a read of the topic's
 * retained messages, or of a push subscription's pending ones. */
int sub_op_peek(cmd_t *c);
int sub_op_ack(cmd_t *c);
int sub_op_dead(cmd_t *c);
/* The internal op `sub.reap {owner | keep}`: ephemeral subscriptions whose
 * session is gone (hub.c proposes it). */
int sub_op_reap(cmd_t *c);
/* The push engine's reads: fsm_push_pending, fsm_push_is_pending and
 * fsm_push_retry of sm.h, with the same contracts. */
int sub_push_pending(topics_t *ts, const char *topic, size_t tl, const char *sub, size_t sl,
                     uint64_t after, unsigned max,
                     int (*fn)(void *arg, const fsm_push_msg_t *m), void *arg);
bool sub_push_is_pending(topics_t *ts, const char *topic, size_t tl, const char *sub,
                         size_t sl, uint64_t seq);
int sub_push_retry(topics_t *ts, const char *topic, size_t tl, const char *sub, size_t sl,
                   fsm_retry_t *out);

/* ---- body.c ---- */

/* The body of topic message @seq of topic id @tid that queue messages refer
 * to (free it with store_free; NULL when gone). */
void *body_get(store_t *st, uint64_t tid, uint64_t seq, size_t *len);
/* Give one reference back (the last one removes the kept body). 0 or a
 * store failure. */
int body_release(store_t *st, uint64_t tid, uint64_t seq);
/* Count @n more references (0: nothing to do). 0 or a store failure. */
int body_add_refs(store_t *st, uint64_t tid, uint64_t seq, uint64_t n);
/* Before record P<tid><seq> goes (retention, the reclaim of a deleted
 * topic): copy its body to G while references remain. 0 or a store
 * failure. */
int body_keep(store_t *st, uint64_t tid, uint64_t seq);
/* The seqs of message keys (<prefix><id be64><seq be64>) that a store_scan
 * visit gathers for the work it may not do itself (a visit must not write
 * the store): body.c gathers R keys, topic.c P keys, subscription.c W keys.
 * The owner frees v. */
typedef struct body_seqs {
    uint64_t *v;
    size_t n, cap;
} body_seqs_t;
/* Append the seq of message key @k; 1 when out of memory, which stops the
 * store_scan visiting. */
int body_seqs_push(body_seqs_t *s, const char *k);

/* ---- route.c ---- */

/* Routing-key matching, pure: @key and @binding are dot-separated words (""
 * is zero words, "a..b" has an empty middle word); in @binding a word "*"
 * matches exactly one word and "#" zero or more words. Either longer than
 * MQHUB_ROUTING_KEY_MAX bytes never matches. */
bool route_key_match(const char *binding, size_t bl, const char *key, size_t kl);
/* Whether the message's @tags (array of str, or NIL) hold one of @filter's
 * (array of str). */
bool route_tags_match(const msgpack_object *filter, const msgpack_object *tags);
/* Whether the message's @key (str, or NIL: never) matches one of @bindings
 * (array of str). */
bool route_bindings_match(const msgpack_object *bindings, const msgpack_object *key);

/* ======================================================================
 * script/ — the Lua 5.4 script host (docs/scripting.md): scripts live in
 * the store and run inside apply in a sandbox, so every node computes the
 * same result. Filters (topic_script_hooks_t), hooks and blocks (the gate of
 * queue.c and topic.c), hub.state / hub.window / hub.block / hub.publish,
 * and the ops script.load/get/list/delete (script.c), script.test
 * (backtest.c), block.list/delete (block.c). The files' own contract is
 * script/script_int.h.
 * ====================================================================== */

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
void script_after_cmd(scripts_t *sc, cmd_t *c);
/* attrs.hook of queue.create/set, topic.create/set (@kind 'q' or 't'):
 * before the handler (@after false) validate it; after a successful handler
 * attach/detach it; after queue.delete/topic.delete drop the binding. @op is
 * the op name. */
int script_hook_op(scripts_t *sc, cmd_t *c, char kind, const char *op, bool after);
int script_op_load(cmd_t *c);
int script_op_get(cmd_t *c);
int script_op_list(cmd_t *c);
int script_op_delete(cmd_t *c);
int backtest_op_test(cmd_t *c);
int block_op_list(cmd_t *c);
int block_op_delete(cmd_t *c);
/* The script half of `tick`: expired blocks and idle windows go. */
int script_op_tick(cmd_t *c);
/* True when script.c's expiry index is empty (so no block and no hub.window
 * state exists; stale entries of removed ones keep it false until tick drops
 * them): tick has nothing of the scripts' to expire (fsm_tick_idle). */
bool script_tick_idle(scripts_t *sc);

/* ======================================================================
 * user.c — identities and grants (docs/security.md). Records U<name>.
 * ====================================================================== */
int user_state_new(users_t **out, store_t *st);
void user_state_free(users_t *us);
/* Drop the in-memory table and rebuild it from the store (after load). */
int user_rebuild(users_t *us);
/* Whether the user of token hash @hash holds any grant covering @name
 * (false when there is no such user). */
bool user_sees(users_t *us, const unsigned char *hash, const char *name, size_t len);
/* fsm_user_find, fsm_user_may, fsm_user_count of sm.h, on the table. */
int user_find_by_hash(users_t *us, const unsigned char *hash, char *name, size_t size);
/* fsm_user_by_name of sm.h, on the table. */
int user_hash_by_name(users_t *us, const char *name, size_t len, unsigned char *hash);
int user_may(users_t *us, const unsigned char *hash, enum ops_verb verb, const char *obj,
             size_t len);
size_t user_count(users_t *us);
/* Grant patterns: "*" (everything), "<prefix>*" or an exact name. */
bool user_pattern_match(const char *pat, size_t pl, const char *name, size_t nl);
int user_op_create(cmd_t *c);
int user_op_delete(cmd_t *c);
int user_op_list(cmd_t *c);
int user_op_grant(cmd_t *c);
int user_op_revoke(cmd_t *c);

#endif
