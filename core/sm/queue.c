/* queue.c: queues and messages — the semantics of PROTOCOL.md "Queues" and
 * "Messages", called by fsm.c only (handlers queue_op_*).
 *
 * State lives in the store (docs/architecture.md "Key layout"):
 *   #qid                      next queue id (u64be)
 *   Q<name>                   queue record: id, attrs, next_seq, counters,
 *                             created_at, modified_at
 *   M<qid be64><seq be64>     message record (msgpack array, see msg_decode);
 *                             a body of at most MSG_INLINE_MAX bytes is in it
 *   B<qid be64><seq be64>     a larger message body (none when the record
 *                             refers to a topic message's body: see "Shared
 *                             bodies")
 *   D<qid be64><dedup_id>     dedup entry [at, seq, msg_id]
 * In memory there are only indexes, rebuilt from the store by queue_rebuild():
 * per queue the ready heap (seqs; for ordered queues the head of each
 * deliverable group, with one heap per group), the heap of deleted-but-kept
 * messages and the dedup heap (both expired by tick), one global timer
 * heap (due, qid, seq) for delayed and locked messages, and the tick index
 * (due, qid): the queues in which tick may find something to remove, so a
 * tick visits only those. Index entries are validated lazily (against the
 * stored record, or the queue's tick_due), so stale ones are skipped.
 *
 * A message is in one state: READY, DELAYED, INFLIGHT (locked until
 * visible_at) or DELETED (kept for the rewind window). Every transition goes
 * through set_state(), which keeps the stats counters exact. A receipt is
 * "<qid>.<seq>.<receive_count>" (hex): valid while the message is INFLIGHT
 * with that receive count and its lock has not expired.
 *
 * A send passes the gate (script.c: active blocks, the queue's hook) after
 * every other check and before it is stored.
 *
 * Shared bodies: a message fanned out from a topic stores no B body; its
 * record names the topic message [tid, seq] and body.c keeps the body with
 * a reference count (body_get / body_release). Every path that
 * removes a record releases its reference (msg_remove, reclaim_msg);
 * a dead-letter move hands it over to the new record.
 *
 * The queues themselves: by name in an ordered map (omap: lookups and
 * queue.list pages in O(log n)), by id in a hash map, and in id order in a
 * doubly linked list (a new queue has the highest id: appended; rebuild
 * sorts once).
 *
 * Operators: queue.peek (a read) and queue.redrive (a write) walk a queue's
 * records in seq order from a cursor, a bounded number per call (walk_queue);
 * a dead-letter move records the source queue in the attr
 * mqhub.source_queue, where redrive takes the message back (move_msg).
 *
 * Start reading at queue_op_send() and queue_op_receive(). To add a queue op:
 * a handler here, one line in fsm.c's op table. Iterate queues only through
 * the id-ordered list (never a hash map) and visit tick's due queues in id
 * order: tick's work budget must pick the same messages on every node. A new
 * path that makes something expire sooner must lower the queue's tick due
 * (tick_index_lower).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "hmap.h"
#include "sm_int.h"

#define META_QID "#qid"
#define ID_MAX_LEN 128        /* group and dedup_id */
#define TICK_BUDGET 10000     /* removals per tick */
#define TICK_INDEX_SLACK 1024 /* stale tick_index entries kept beyond 1 a queue */
#define RECLAIM_BUDGET 2048   /* records of deleted/purged queues a tick removes */
/* Bodies up to this size live inside the message record: a message then
 * costs one record write per send and receive, one read per receive and
 * delete, and one removal, instead of a second record for the body
 * (docs/benchmarks.md "Bodies in the record"). Larger bodies get their own B
 * record so that a state change does not rewrite them. */
#define MSG_INLINE_MAX 4096
#define RECLAIM_SCAN 64       /* reclaim records a tick looks at */
#define KEY_LEN 17            /* prefix + qid + seq */

enum msg_state { MS_READY, MS_DELAYED, MS_INFLIGHT, MS_DELETED };

struct attrs {
    uint64_t visibility_timeout, polling_wait, max_msg_size, retention, rewind_window;
    uint64_t max_backlog, delay, dlq_max;
    char dlq[MQHUB_NAME_MAX + 1]; /* "" when none */
    bool ordered;
};

static const struct attrs attrs_default = {
    .visibility_timeout = MQHUB_VISIBILITY_TIMEOUT_DEFAULT,
    .max_msg_size = MQHUB_MSG_SIZE_DEFAULT,
    .retention = MQHUB_QUEUE_RETENTION_DEFAULT,
};

struct stats {
    uint64_t ready, inflight, delayed, retained, sent_total, received_total, deleted_total;
    /* Receives of a message received before; messages moved to the
     * dead-letter queue. Kept in Q records since QREC_N 23. */
    uint64_t redelivered_total, dead_lettered_total;
};

struct group {
    heap_t ready;      /* seqs of READY messages of the group */
    uint32_t inflight;
    uint64_t listed;   /* the seq listed in the queue's ready heap, 0 when none */
};

typedef struct queue {
    char name[MQHUB_NAME_MAX + 1];
    size_t nlen;
    uint64_t id, next_seq;
    uint64_t created_at, modified_at; /* entry clock, ms */
    struct attrs a;
    struct stats s;
    heap_t ready;      /* u64 seqs (ordered: group heads) */
    hmap_t groups;     /* ordered queues: group name -> struct group */
    uint64_t n_listed; /* ordered queues: groups deliverable now */
    heap_t deleted;    /* struct stamp (deleted_at, seq) */
    heap_t dedup;      /* struct dedup_ref */
    uint64_t floor;    /* messages below this seq were purged (Z record):
                        * absent to every read, reclaimed by tick */
    uint64_t retain_due; /* no message expires by retention before this (a
                          * lower bound; 0: tick looks, UINT64_MAX: none can) */
    uint64_t tick_due; /* this queue's live entry in the tick index (at most
                        * tick_due_of(q)), UINT64_MAX when not in it */
    uint64_t oldest_at; /* enqueued_at of the first ready or in-flight message
                         * (UINT64_MAX: none), valid while oldest_known: a cache of
                         * oldest_age()'s scan for reads, cleared by every
                         * change of a message's state (mark_dirty); never
                         * read by apply, so it needs no place in the state */
    bool oldest_known;
    bool dirty, woke;
    struct queue *next, *prev; /* id order */
    struct queue *dirty_next; /* this entry's dirty list */
} queue_t;

struct stamp { uint64_t at, seq; };
struct timer { uint64_t due, qid, seq; };
struct tick_ref { uint64_t due, qid; }; /* an entry of the tick index */
struct dedup_ref { uint64_t at; char *id; size_t len; };

struct queues {
    store_t *st;
    omap_t by_name;   /* name -> queue: lookups and queue.list */
    hmap_t by_id;
    queue_t *first, *last; /* id order */
    heap_t timers;
    heap_t tick_index; /* struct tick_ref: the queues tick may find work in */
    uint64_t n_tick_due; /* queues with a live tick_index entry */
    bool tick_walk;      /* the next tick rebuilds tick_index from the list */
    queue_t *dirty;
    uint64_t next_qid, now;
    bool failed, tick_more;
    fsm_ready_cb cb;
    void *cb_arg;
    fsm_gate_fn gate;          /* script.c: blocks and hooks, or NULL */
    fsm_hook_name_fn hook_name;
    void *gate_arg;
};

/* A decoded message record; the pointers live in u / raw. */
struct msg {
    uint64_t seq;
    int st;
    char msg_id[48];
    uint64_t enqueued_at, visible_at, rc, first_received_at, deleted_at;
    const char *group, *dedup;
    size_t glen, dlen;
    bool has_group;
    msgpack_object attrs; /* NIL or a map */
    msgpack_object tags;  /* NIL or an array of str (messages from a topic) */
    bool has_ref;         /* the body is topic message [ref_tid, ref_seq]'s */
    uint64_t ref_tid, ref_seq;
    bool blen_known;      /* blen is set (records from before it was kept: not) */
    bool body_inline;     /* the body is in the record: body, blen */
    const char *body;     /* with body_inline: into raw (or the sender's buffer) */
    size_t blen;          /* the body's length */
    msgpack_unpacked u;   /* its strings point into raw */
    char *raw;            /* the stored record (store_free), or NULL */
};

/* ---- small helpers ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_stamp(const void *a, const void *b)
{
    const struct stamp *x = a, *y = b;
    return x->at != y->at ? (x->at < y->at ? -1 : 1) : cmp_u64(&x->seq, &y->seq);
}

static int cmp_timer(const void *a, const void *b)
{
    const struct timer *x = a, *y = b;
    if (x->due != y->due)
        return x->due < y->due ? -1 : 1;
    if (x->qid != y->qid)
        return x->qid < y->qid ? -1 : 1;
    return cmp_u64(&x->seq, &y->seq);
}

/* By time, then by id as the D keys sort: entries of equal time leave in
 * the same order on every node, however each built its heap (a restored one
 * pushes in key order), so tick's budget picks the same ones. */
static int cmp_dedup(const void *a, const void *b)
{
    const struct dedup_ref *x = a, *y = b;
    int c = cmp_u64(&x->at, &y->at);
    if (c == 0 && (c = memcmp(x->id, y->id, x->len < y->len ? x->len : y->len)) == 0)
        c = (x->len > y->len) - (x->len < y->len);
    return c;
}

static int cmp_tick_ref(const void *a, const void *b)
{
    const struct tick_ref *x = a, *y = b;
    if (x->due != y->due)
        return x->due < y->due ? -1 : 1;
    return cmp_u64(&x->qid, &y->qid);
}

static void qput(queues_t *qs, const void *k, size_t kl, const void *v, size_t vl)
{
    if (store_put(qs->st, k, kl, v, vl) != 0)
        qs->failed = true;
}

/* ---- the tick index ----
 * qs->tick_index holds (due, qid) for every queue in which tick may find
 * something to remove, due being at most tick_due_of(q): so tick visits only
 * the queues whose due has come (tick_due_queues), not all of them. Entries
 * are checked lazily like the timer heap's: the live one of a queue equals
 * its tick_due; lowering a due pushes a new entry and leaves the old one to
 * be skipped; a deleted queue's id is never found again. Every change that
 * can make something expire sooner lowers the due (enqueue, a kept delete, a
 * dedup entry, queue.set, rebuild); one that empties the queue asks for a
 * visit (tick drops it from the index then, which makes the hub idle). */

/* When tick may next find work in @q: retention, rewind window, dedup. */
static uint64_t tick_due_of(const queue_t *q)
{
    const struct stamp *del = heap_top(&q->deleted);
    const struct dedup_ref *dd = heap_top(&q->dedup);
    uint64_t due = q->retain_due;
    if (del && del->at + q->a.rewind_window * 1000 < due)
        due = del->at + q->a.rewind_window * 1000;
    if (dd && dd->at + MQHUB_DEDUP_WINDOW_MS < due)
        due = dd->at + MQHUB_DEDUP_WINDOW_MS;
    return due;
}

/* Push @q's live entry; if that fails the next tick walks every queue. */
static void tick_index_push(queues_t *qs, const queue_t *q)
{
    struct tick_ref e = {q->tick_due, q->id};
    if (heap_push(&qs->tick_index, &e) != 0)
        qs->tick_walk = true;
}

/* Make tick visit @q by @due (UINT64_MAX: changes nothing). */
static void tick_index_lower(queues_t *qs, queue_t *q, uint64_t due)
{
    if (due >= q->tick_due)
        return;
    if (q->tick_due == UINT64_MAX)
        qs->n_tick_due++;
    q->tick_due = due;
    tick_index_push(qs, q);
}

/* @q leaves the index: its entries turn stale. */
static void tick_index_drop(queues_t *qs, queue_t *q)
{
    if (q->tick_due != UINT64_MAX)
        qs->n_tick_due--;
    q->tick_due = UINT64_MAX;
}

/* ---- queue records ---- */

static queue_t *queue_find(queues_t *qs, const char *name, size_t len)
{
    return omap_get(&qs->by_name, name, len);
}

static queue_t *queue_by_id(queues_t *qs, uint64_t id)
{
    return hmap_get(&qs->by_id, &id, sizeof(id));
}

static void mark_dirty(queues_t *qs, queue_t *q)
{
    q->oldest_known = false;
    if (!q->dirty) {
        q->dirty = true;
        q->dirty_next = qs->dirty;
        qs->dirty = q;
    }
}

static void qrec_key(unsigned char *k, const queue_t *q)
{
    k[0] = 'Q';
    memcpy(k + 1, q->name, q->nlen);
}

/* Items of a Q record: 19 before created_at and modified_at, 21 before
 * redelivered_total and dead_lettered_total. */
#define QREC_N 23
#define QREC_N_V2 21
#define QREC_N_V1 19

static void queue_save(queues_t *qs, queue_t *q)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char k[1 + MQHUB_NAME_MAX];
    const struct attrs *a = &q->a;
    const struct stats *s = &q->s;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, QREC_N);
    uint64_t nums[] = {q->id, q->next_seq, a->visibility_timeout, a->polling_wait,
                       a->max_msg_size, a->retention, a->rewind_window, a->max_backlog,
                       a->delay, a->dlq_max, s->ready, s->inflight, s->delayed, s->retained,
                       s->sent_total, s->received_total, s->deleted_total};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        msgpack_pack_uint64(&pk, nums[i]);
    mp_pack_str(&pk, a->dlq, strlen(a->dlq));
    if (a->ordered)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    msgpack_pack_uint64(&pk, q->created_at);
    msgpack_pack_uint64(&pk, q->modified_at);
    msgpack_pack_uint64(&pk, s->redelivered_total);
    msgpack_pack_uint64(&pk, s->dead_lettered_total);
    qrec_key(k, q);
    qput(qs, k, 1 + q->nlen, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static int queue_decode(queue_t *q, const char *v, size_t vl)
{
    msgpack_unpacked u;
    uint64_t nums[17];
    int rc = MQHUB_EINTERNAL;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, v, vl, NULL) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_ARRAY ||
        (u.data.via.array.size != QREC_N && u.data.via.array.size != QREC_N_V2 &&
         u.data.via.array.size != QREC_N_V1))
        goto out;
    const msgpack_object *o = u.data.via.array.ptr;
    if (u.data.via.array.size == QREC_N &&
        (o[21].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
         o[22].type != MSGPACK_OBJECT_POSITIVE_INTEGER))
        goto out;
    if (u.data.via.array.size >= QREC_N_V2) {
        if (o[19].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            o[20].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            goto out;
        q->created_at = o[19].via.u64;
        q->modified_at = o[20].via.u64;
    }
    for (int i = 0; i < 17; i++) {
        if (o[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            goto out;
        nums[i] = o[i].via.u64;
    }
    if (o[17].type != MSGPACK_OBJECT_STR || o[17].via.str.size > MQHUB_NAME_MAX ||
        o[18].type != MSGPACK_OBJECT_BOOLEAN)
        goto out;
    q->id = nums[0], q->next_seq = nums[1];
    q->a = (struct attrs){nums[2], nums[3], nums[4], nums[5], nums[6], nums[7], nums[8],
                          nums[9], "", o[18].via.boolean};
    memcpy(q->a.dlq, o[17].via.str.ptr, o[17].via.str.size);
    q->s = (struct stats){nums[10], nums[11], nums[12], nums[13], nums[14], nums[15], nums[16],
                          0, 0};
    if (u.data.via.array.size == QREC_N) {
        q->s.redelivered_total = o[21].via.u64;
        q->s.dead_lettered_total = o[22].via.u64;
    }
    rc = 0;
out:
    msgpack_unpacked_destroy(&u);
    return rc;
}

static queue_t *queue_alloc(const char *name, size_t len)
{
    queue_t *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    memcpy(q->name, name, len);
    q->nlen = len;
    heap_init(&q->ready, sizeof(uint64_t), cmp_u64);
    hmap_init(&q->groups);
    heap_init(&q->deleted, sizeof(struct stamp), cmp_stamp);
    heap_init(&q->dedup, sizeof(struct dedup_ref), cmp_dedup);
    q->tick_due = UINT64_MAX;
    return q;
}

static void group_free(struct group *g)
{
    heap_free(&g->ready);
    free(g);
}

/* Drop the in-memory indexes of @q (not the store records). */
static void queue_clear_indexes(queue_t *q)
{
    for (size_t i = 0; i < q->groups.cap; i++) {
        if (q->groups.slots[i].key)
            group_free(q->groups.slots[i].val);
    }
    hmap_free(&q->groups);
    heap_clear(&q->ready);
    heap_clear(&q->deleted);
    q->n_listed = 0;
}

static void queue_destroy(queue_t *q)
{
    struct dedup_ref d;
    queue_clear_indexes(q);
    heap_free(&q->ready);
    heap_free(&q->deleted);
    while (heap_pop(&q->dedup, &d) == 0)
        free(d.id);
    heap_free(&q->dedup);
    free(q);
}

/* Add @q to the maps and at the end of the id-ordered list: its id is
 * above every linked queue's (a new queue; queue_rebuild links in id order).
 * 0, or MQHUB_EINTERNAL with @q linked nowhere. */
static int queue_link(queues_t *qs, queue_t *q)
{
    if (omap_put(&qs->by_name, q->name, q->nlen, q) != 0)
        return MQHUB_EINTERNAL;
    if (hmap_put(&qs->by_id, &q->id, sizeof(q->id), q) != 0) {
        omap_del(&qs->by_name, q->name, q->nlen);
        return MQHUB_EINTERNAL;
    }
    q->prev = qs->last;
    q->next = NULL;
    *(qs->last ? &qs->last->next : &qs->first) = q;
    qs->last = q;
    return 0;
}

static void queue_unlink(queues_t *qs, queue_t *q)
{
    omap_del(&qs->by_name, q->name, q->nlen);
    hmap_del(&qs->by_id, &q->id, sizeof(q->id));
    *(q->prev ? &q->prev->next : &qs->first) = q->next;
    *(q->next ? &q->next->prev : &qs->last) = q->prev;
    tick_index_drop(qs, q);
    for (queue_t **pp = &qs->dirty; q->dirty && *pp; pp = &(*pp)->dirty_next) {
        if (*pp == q) {
            *pp = q->dirty_next;
            break;
        }
    }
}

/* ---- message records ---- */

static void msg_free(struct msg *m)
{
    msgpack_unpacked_destroy(&m->u);
    store_free(m->raw);
    m->raw = NULL;
}

static bool obj_uint(const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = o->via.u64;
    return true;
}

static bool obj_opt_str(const msgpack_object *o, const char **s, size_t *len)
{
    *s = NULL;
    *len = 0;
    if (o->type == MSGPACK_OBJECT_NIL)
        return true;
    if (o->type != MSGPACK_OBJECT_STR)
        return false;
    *s = o->via.str.ptr;
    *len = o->via.str.size;
    return true;
}

/* Record: [state, msg_id, enqueued_at, visible_at, receive_count,
 *          first_received_at, deleted_at, group|nil, dedup_id|nil, attrs|nil,
 *          tags|nil, ref|nil, body|blen]: ref is [topic id, topic seq] when the
 * body is shared; the last field is the body itself (bin, at most
 * MSG_INLINE_MAX bytes) or its length (uint: the body is in B or shared).
 * Older records end earlier: 10 fields (before tags), 11, or 12 with ref;
 * their body is in B or shared and its length is not recorded. */
/* The record's last field: the body (bin) or its length (uint). */
static bool msg_decode_body(struct msg *m, const msgpack_object *o)
{
    uint64_t n;
    m->blen_known = true;
    if (o->type == MSGPACK_OBJECT_BIN && !m->has_ref && o->via.bin.size <= MSG_INLINE_MAX) {
        m->body_inline = true;
        m->body = o->via.bin.ptr;
        m->blen = o->via.bin.size;
        return true;
    }
    if (!obj_uint(o, &n) || n > SIZE_MAX)
        return false;
    m->blen = (size_t)n;
    return true;
}

static int msg_decode(struct msg *m, uint64_t seq, const char *v, size_t vl)
{
    uint64_t st;
    const msgpack_object *o;
    msgpack_unpacked_init(&m->u);
    m->seq = seq;
    if (msgpack_unpack_next(&m->u, v, vl, NULL) != MSGPACK_UNPACK_SUCCESS ||
        m->u.data.type != MSGPACK_OBJECT_ARRAY || m->u.data.via.array.size < 10 ||
        m->u.data.via.array.size > 13)
        goto bad;
    o = m->u.data.via.array.ptr;
    if (!obj_uint(&o[0], &st) || st > MS_DELETED || o[1].type != MSGPACK_OBJECT_STR ||
        o[1].via.str.size >= sizeof(m->msg_id) || !obj_uint(&o[2], &m->enqueued_at) ||
        !obj_uint(&o[3], &m->visible_at) || !obj_uint(&o[4], &m->rc) ||
        !obj_uint(&o[5], &m->first_received_at) || !obj_uint(&o[6], &m->deleted_at) ||
        !obj_opt_str(&o[7], &m->group, &m->glen) || !obj_opt_str(&o[8], &m->dedup, &m->dlen))
        goto bad;
    m->st = (int)st;
    memcpy(m->msg_id, o[1].via.str.ptr, o[1].via.str.size);
    m->msg_id[o[1].via.str.size] = 0;
    m->has_group = m->group != NULL;
    m->attrs = o[9];
    m->tags = m->u.data.via.array.size > 10 ? o[10] : (msgpack_object){.type = MSGPACK_OBJECT_NIL};
    m->has_ref = m->u.data.via.array.size > 11 && o[11].type != MSGPACK_OBJECT_NIL;
    if (m->has_ref && (o[11].type != MSGPACK_OBJECT_ARRAY || o[11].via.array.size != 2 ||
                       !obj_uint(&o[11].via.array.ptr[0], &m->ref_tid) ||
                       !obj_uint(&o[11].via.array.ptr[1], &m->ref_seq)))
        goto bad;
    m->blen_known = m->body_inline = false;
    m->body = NULL;
    m->blen = 0;
    if (m->u.data.via.array.size > 12 && !msg_decode_body(m, &o[12]))
        goto bad;
    return 0;
bad:
    log_error("queue", "corrupt message record (seq %llu)", (unsigned long long)seq);
    return MQHUB_EINTERNAL;
}

static int msg_load(queues_t *qs, const queue_t *q, uint64_t seq, struct msg *m)
{
    unsigned char k[KEY_LEN];
    size_t vl;
    store_key_id_seq(k, 'M', q->id, seq);
    m->raw = seq < q->floor ? NULL : store_get(qs->st, k, KEY_LEN, &vl);
    if (!m->raw) {
        msgpack_unpacked_init(&m->u);
        return MQHUB_ENOT_FOUND;
    }
    return msg_decode(m, seq, m->raw, vl);
}

static void msg_save(queues_t *qs, const queue_t *q, const struct msg *m)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char k[KEY_LEN];
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, m->blen_known ? 13 : m->has_ref ? 12 : 11);
    msgpack_pack_uint8(&pk, (uint8_t)m->st);
    mp_pack_str(&pk, m->msg_id, strlen(m->msg_id));
    msgpack_pack_uint64(&pk, m->enqueued_at);
    msgpack_pack_uint64(&pk, m->visible_at);
    msgpack_pack_uint64(&pk, m->rc);
    msgpack_pack_uint64(&pk, m->first_received_at);
    msgpack_pack_uint64(&pk, m->deleted_at);
    if (m->has_group)
        mp_pack_str(&pk, m->group, m->glen);
    else
        msgpack_pack_nil(&pk);
    if (m->dedup)
        mp_pack_str(&pk, m->dedup, m->dlen);
    else
        msgpack_pack_nil(&pk);
    msgpack_pack_object(&pk, m->attrs);
    msgpack_pack_object(&pk, m->tags);
    if (m->has_ref) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint64(&pk, m->ref_tid);
        msgpack_pack_uint64(&pk, m->ref_seq);
    } else if (m->blen_known) {
        msgpack_pack_nil(&pk);
    }
    if (m->body_inline) {
        msgpack_pack_bin(&pk, m->blen);
        msgpack_pack_bin_body(&pk, m->body, m->blen);
    } else if (m->blen_known) {
        msgpack_pack_uint64(&pk, m->blen);
    }
    store_key_id_seq(k, 'M', q->id, m->seq);
    qput(qs, k, KEY_LEN, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Remove @m's record and body; a shared body's reference is released
 * unless @keep_ref (a dead-letter move hands it over). */
static void msg_remove(queues_t *qs, const queue_t *q, const struct msg *m, bool keep_ref)
{
    unsigned char k[KEY_LEN];
    store_key_id_seq(k, 'M', q->id, m->seq);
    store_del(qs->st, k, KEY_LEN);
    if (!m->has_ref && !m->body_inline) {
        store_key_id_seq(k, 'B', q->id, m->seq);
        store_del(qs->st, k, KEY_LEN);
    } else if (m->has_ref && !keep_ref && body_release(qs->st, m->ref_tid, m->ref_seq) != 0) {
        qs->failed = true;
    }
}

/* The body of @m, NULL when absent: in its record, or read from the store
 * into *@owned, which the caller frees with store_free (NULL when inline). */
static const char *msg_body(queues_t *qs, const queue_t *q, const struct msg *m, size_t *blen,
                            char **owned)
{
    unsigned char k[KEY_LEN];
    *owned = NULL;
    if (m->body_inline) {
        *blen = m->blen;
        return m->body;
    }
    if (m->has_ref)
        return *owned = body_get(qs->st, m->ref_tid, m->ref_seq, blen);
    store_key_id_seq(k, 'B', q->id, m->seq);
    return *owned = store_get(qs->st, k, KEY_LEN, blen);
}

static uint64_t *state_counter(queue_t *q, int st)
{
    switch (st) {
    case MS_READY: return &q->s.ready;
    case MS_DELAYED: return &q->s.delayed;
    case MS_INFLIGHT: return &q->s.inflight;
    default: return &q->s.retained;
    }
}

/* Move @m to @st, keeping the counters exact (@m->st < 0: a new message). */
static void set_state(queues_t *qs, queue_t *q, struct msg *m, int st)
{
    if (m->st >= 0)
        (*state_counter(q, m->st))--;
    if (st >= 0)
        (*state_counter(q, st))++;
    m->st = st;
    mark_dirty(qs, q);
    if (st < 0 && q->s.ready + q->s.inflight + q->s.delayed + q->s.retained == 0)
        tick_index_lower(qs, q, 0); /* emptied: the next tick may drop it */
}

/* ---- ready index and ordered groups ---- */

static struct group *group_get(queue_t *q, const struct msg *m, bool create)
{
    const char *name = m->has_group ? m->group : "";
    size_t len = m->has_group ? m->glen : 0;
    struct group *g = hmap_get(&q->groups, name, len);
    if (!g && create && (g = calloc(1, sizeof(*g)))) {
        heap_init(&g->ready, sizeof(uint64_t), cmp_u64);
        if (hmap_put(&q->groups, name, len, g) != 0) {
            group_free(g);
            g = NULL;
        }
    }
    return g;
}

/* List the group's head in the queue's ready heap when it is deliverable;
 * free the group when it holds nothing (@g is then gone). */
static void group_update(queue_t *q, const struct msg *m, struct group *g)
{
    const uint64_t *top = heap_top(&g->ready);
    uint64_t head = g->inflight == 0 && top ? *top : 0;
    if (head != g->listed) {
        if (g->listed == 0)
            q->n_listed++;
        else if (head == 0)
            q->n_listed--;
        g->listed = head;
        if (head)
            heap_push(&q->ready, &head);
    }
    if (g->inflight == 0 && !top)
        group_free(hmap_del(&q->groups, m->has_group ? m->group : "", m->has_group ? m->glen : 0));
}

static void ready_add(queues_t *qs, queue_t *q, struct msg *m)
{
    set_state(qs, q, m, MS_READY);
    q->woke = true;
    if (!q->a.ordered) {
        heap_push(&q->ready, &m->seq);
        return;
    }
    struct group *g = group_get(q, m, true);
    if (g) {
        heap_push(&g->ready, &m->seq);
        group_update(q, m, g);
    }
}

/* An INFLIGHT message of an ordered queue leaves that state. */
static void group_release(queue_t *q, const struct msg *m)
{
    struct group *g;
    if (q->a.ordered && m->st == MS_INFLIGHT && (g = group_get(q, m, false))) {
        g->inflight--;
        group_update(q, m, g);
    }
}

static void timer_add(queues_t *qs, const queue_t *q, uint64_t due, uint64_t seq)
{
    struct timer t = {due, q->id, seq};
    heap_push(&qs->timers, &t);
}

/* Remove a message for good (retention, rewind window, purge of one). */
static void msg_drop(queues_t *qs, queue_t *q, struct msg *m)
{
    struct group *g;
    if (q->a.ordered && m->st == MS_READY && (g = group_get(q, m, false))) {
        /* Retention removes in seq order: m is its group's oldest. */
        const uint64_t *top;
        while ((top = heap_top(&g->ready)) && *top <= m->seq)
            heap_pop(&g->ready, NULL);
        if (g->listed == m->seq) {
            g->listed = 0;
            q->n_listed--;
        }
        group_update(q, m, g);
    }
    group_release(q, m);
    set_state(qs, q, m, -1);
    msg_remove(qs, q, m, false);
}

/* ---- lifecycle ---- */

int queue_state_new(queues_t **out, store_t *st)
{
    queues_t *qs = calloc(1, sizeof(*qs));
    if (!qs)
        return MQHUB_EINTERNAL;
    qs->st = st;
    qs->next_qid = 1;
    omap_init(&qs->by_name);
    hmap_init(&qs->by_id);
    heap_init(&qs->timers, sizeof(struct timer), cmp_timer);
    heap_init(&qs->tick_index, sizeof(struct tick_ref), cmp_tick_ref);
    *out = qs;
    return 0;
}

static void free_all_queues(queues_t *qs)
{
    while (qs->first) {
        queue_t *q = qs->first;
        qs->first = q->next;
        queue_destroy(q);
    }
    qs->last = NULL;
    omap_free(&qs->by_name);
    hmap_free(&qs->by_id);
    heap_clear(&qs->timers);
    heap_clear(&qs->tick_index);
    qs->n_tick_due = 0;
    qs->tick_walk = false;
    qs->dirty = NULL;
}

void queue_state_free(queues_t *qs)
{
    if (!qs)
        return;
    free_all_queues(qs);
    heap_free(&qs->timers);
    heap_free(&qs->tick_index);
    free(qs);
}

void queue_set_ready_cb(queues_t *qs, fsm_ready_cb cb, void *arg)
{
    qs->cb = cb;
    qs->cb_arg = arg;
}

/* ---- rebuild from the store ---- */

struct rebuild {
    queues_t *qs;
    queue_t *q;
    queue_t **all; /* the Q records, in name order as the store has them */
    size_t n, cap;
    int rc;
};

static int rebuild_queue(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct rebuild *r = arg;
    queue_t *q = kl - 1 <= MQHUB_NAME_MAX ? queue_alloc(k + 1, kl - 1) : NULL;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        queue_t **all = realloc(r->all, cap * sizeof(*all));
        if (all)
            r->all = all, r->cap = cap;
    }
    if (!q || r->n == r->cap || queue_decode(q, v, vl) != 0) {
        if (q)
            queue_destroy(q);
        r->rc = MQHUB_EINTERNAL;
        return 1;
    }
    r->all[r->n++] = q;
    return 0;
}

static int cmp_queue_id(const void *a, const void *b)
{
    const queue_t *x = *(queue_t *const *)a, *y = *(queue_t *const *)b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Link the queues read from the store, sorted once by id: O(n log n). */
static void rebuild_link(struct rebuild *r)
{
    if (r->n)
        qsort(r->all, r->n, sizeof(*r->all), cmp_queue_id);
    for (size_t i = 0; i < r->n; i++) {
        if (r->rc == 0 && queue_link(r->qs, r->all[i]) != 0)
            r->rc = MQHUB_EINTERNAL;
        if (r->rc != 0)
            queue_destroy(r->all[i]);
    }
    free(r->all);
}

static int rebuild_msg(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct rebuild *r = arg;
    queue_t *q = r->q;
    struct msg m = {.raw = NULL};
    struct group *g;
    if (kl != KEY_LEN || msg_decode(&m, store_be64_get((const unsigned char *)k + 9), v, vl) != 0) {
        msg_free(&m);
        r->rc = MQHUB_EINTERNAL;
        return 1;
    }
    if (q->retain_due == UINT64_MAX) /* the first record: what retention's scan reads */
        q->retain_due = m.enqueued_at + q->a.retention * 1000;
    switch (m.st) {
    case MS_READY:
        if (!q->a.ordered) {
            heap_push(&q->ready, &m.seq);
        } else if ((g = group_get(q, &m, true))) {
            heap_push(&g->ready, &m.seq);
        }
        break;
    case MS_INFLIGHT:
        if (q->a.ordered && (g = group_get(q, &m, true)))
            g->inflight++;
        /* fall through */
    case MS_DELAYED:
        timer_add(r->qs, q, m.visible_at, m.seq);
        break;
    default: {
        struct stamp s = {m.deleted_at, m.seq};
        heap_push(&q->deleted, &s);
    }
    }
    msg_free(&m);
    return 0;
}

static int rebuild_dedup(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct rebuild *r = arg;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 3 &&
        u.data.via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        struct dedup_ref d = {u.data.via.array.ptr[0].via.u64, malloc(kl - 9), kl - 9};
        if (d.id) {
            memcpy(d.id, k + 9, kl - 9);
            heap_push(&r->q->dedup, &d);
        }
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}

/* Ordered queues: list the head of every deliverable group. */
static void list_groups(queue_t *q)
{
    for (size_t i = 0; i < q->groups.cap; i++) {
        struct group *g = q->groups.slots[i].val;
        const uint64_t *top;
        if (q->groups.slots[i].key && g->inflight == 0 && (top = heap_top(&g->ready))) {
            g->listed = *top;
            q->n_listed++;
            heap_push(&q->ready, top);
        }
    }
}

static int rebuild_dead(void *arg, const char *k, size_t kl, const char *v, size_t vl);

int queue_rebuild(queues_t *qs)
{
    struct rebuild r = {.qs = qs};
    size_t vl;
    unsigned char *v;
    free_all_queues(qs);
    qs->next_qid = 1;
    if ((v = store_get(qs->st, META_QID, strlen(META_QID), &vl)) && vl == 8)
        qs->next_qid = store_be64_get(v);
    store_free(v);
    qs->tick_more = false;
    store_scan(qs->st, "Q", 1, NULL, 0, rebuild_queue, &r);
    rebuild_link(&r);
    store_scan(qs->st, "Z", 1, NULL, 0, rebuild_dead, qs);
    for (queue_t *q = qs->first; q && r.rc == 0; q = q->next) {
        unsigned char p[KEY_LEN];
        r.q = q;
        q->retain_due = UINT64_MAX; /* until rebuild_msg reads a record */
        store_key_id_seq(p, 'M', q->id, q->floor);
        store_scan(qs->st, p, 9, p, KEY_LEN, rebuild_msg, &r);
        p[0] = 'D';
        store_scan(qs->st, p, 9, NULL, 0, rebuild_dedup, &r);
        if (q->a.ordered)
            list_groups(q);
        tick_index_lower(qs, q, tick_due_of(q));
    }
    return r.rc;
}

/* ---- around each entry ---- */

/* Promote every delayed or locked message due by @now to ready. */
void queue_begin(queues_t *qs, uint64_t now)
{
    const struct timer *top;
    qs->now = now;
    qs->failed = false;
    while ((top = heap_top(&qs->timers)) && top->due <= now) {
        struct timer t;
        struct msg m;
        heap_pop(&qs->timers, &t);
        queue_t *q = queue_by_id(qs, t.qid);
        if (!q)
            continue;
        if (msg_load(qs, q, t.seq, &m) == 0 && m.visible_at == t.due &&
            (m.st == MS_DELAYED || m.st == MS_INFLIGHT)) {
            group_release(q, &m);
            ready_add(qs, q, &m);
            msg_save(qs, q, &m);
        }
        msg_free(&m);
    }
}

int queue_end(queues_t *qs)
{
    while (qs->dirty) {
        queue_t *q = qs->dirty;
        qs->dirty = q->dirty_next;
        q->dirty = false;
        queue_save(qs, q);
        if (q->woke && qs->cb)
            qs->cb(qs->cb_arg, q->name, q->nlen);
        q->woke = false;
    }
    return qs->failed ? MQHUB_EINTERNAL : 0;
}

uint64_t queue_ready_count(queues_t *qs, const char *name, size_t len)
{
    queue_t *q = queue_find(qs, name, len);
    if (!q)
        return 0;
    return q->a.ordered ? q->n_listed : q->s.ready;
}

bool queue_tick_idle(const queues_t *qs)
{
    return qs->n_tick_due == 0 && !qs->tick_more;
}

uint64_t queue_next_due(queues_t *qs, uint64_t now)
{
    const struct timer *t = heap_top(&qs->timers);
    if (qs->tick_more)
        return now;
    return t ? t->due : UINT64_MAX;
}

/* ---- queue ops ---- */

/* Apply the attrs map at @c->req["attrs"] over @a, validating every field.
 * @self: the queue's own name (a dead-letter queue may not be itself). */
static int attrs_parse(queues_t *qs, cmd_t *c, struct attrs *a, const char *self,
                       size_t self_len, bool is_set)
{
    const msgpack_object *m = mp_map_get(c->req, "attrs"), *v;
    int rc;
    if (!m || m->type == MSGPACK_OBJECT_NIL)
        return is_set ? cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'attrs' is required (a map)") : 0;
    if (m->type != MSGPACK_OBJECT_MAP)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'attrs' must be a map");
    if ((rc = cmd_arg_uint(c, m, "visibility_timeout", 0, MQHUB_VISIBILITY_TIMEOUT_MAX, &a->visibility_timeout)) ||
        (rc = cmd_arg_uint(c, m, "polling_wait", 0, MQHUB_POLLING_WAIT_MAX, &a->polling_wait)) ||
        (rc = cmd_arg_uint(c, m, "max_msg_size", MQHUB_MSG_SIZE_MIN, MQHUB_MSG_SIZE_MAX, &a->max_msg_size)) ||
        (rc = cmd_arg_uint(c, m, "retention", MQHUB_RETENTION_MIN, MQHUB_RETENTION_MAX, &a->retention)) ||
        (rc = cmd_arg_uint(c, m, "rewind_window", 0, MQHUB_RETENTION_MAX, &a->rewind_window)) ||
        (rc = cmd_arg_uint(c, m, "max_backlog", 0, UINT64_MAX, &a->max_backlog)) ||
        (rc = cmd_arg_uint(c, m, "delay", 0, MQHUB_DELAY_MAX, &a->delay)))
        return rc;
    if (a->rewind_window > a->retention)
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'rewind_window' must be between 0 and the retention (%llu)",
                        (unsigned long long)a->retention);
    if ((v = mp_map_get(m, "ordered")) && v->type != MSGPACK_OBJECT_NIL) {
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
            return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'ordered' must be a boolean");
        if (is_set && v->via.boolean != a->ordered)
            return cmd_fail(c, MQHUB_EBAD_REQUEST,
                            "field 'ordered' cannot change; create another queue instead");
        a->ordered = v->via.boolean;
    }
    if (!(v = mp_map_get(m, "dead_letter")))
        return 0;
    if (v->type == MSGPACK_OBJECT_NIL) {
        a->dlq[0] = 0;
        a->dlq_max = 0;
        return 0;
    }
    if (v->type != MSGPACK_OBJECT_MAP)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'dead_letter' must be a map {queue, max_receives}");
    const char *dlq;
    size_t dlen;
    uint64_t max = 0;
    if ((rc = cmd_arg_name(c, v, "queue", &dlq, &dlen)) ||
        (rc = cmd_arg_uint(c, v, "max_receives", 1, MQHUB_MAX_RECEIVES_MAX, &max)))
        return rc;
    if (max == 0)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'max_receives' is required (1-%d)",
                        MQHUB_MAX_RECEIVES_MAX);
    if (dlen == self_len && memcmp(dlq, self, dlen) == 0)
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'dead_letter': a queue cannot be its own dead-letter queue");
    if (!queue_find(qs, dlq, dlen))
        return cmd_fail(c, MQHUB_ENOT_FOUND,
                        "dead-letter queue '%.*s' does not exist; create it first", (int)dlen, dlq);
    memcpy(a->dlq, dlq, dlen);
    a->dlq[dlen] = 0;
    a->dlq_max = max;
    return 0;
}

static bool attrs_equal(const struct attrs *x, const struct attrs *y)
{
    return x->visibility_timeout == y->visibility_timeout && x->polling_wait == y->polling_wait &&
           x->max_msg_size == y->max_msg_size && x->retention == y->retention &&
           x->rewind_window == y->rewind_window && x->max_backlog == y->max_backlog &&
           x->delay == y->delay && x->dlq_max == y->dlq_max && strcmp(x->dlq, y->dlq) == 0 &&
           x->ordered == y->ordered;
}

/* The queue named by field @key, or a NOT_FOUND/BAD_NAME failure. */
static int arg_queue(queues_t *qs, cmd_t *c, const char *key, queue_t **out)
{
    const char *name;
    size_t len;
    int rc = cmd_arg_name(c, c->req, key, &name, &len);
    if (rc)
        return rc;
    if (!(*out = queue_find(qs, name, len)))
        return cmd_fail(c, MQHUB_ENOT_FOUND,
                        "queue '%.*s' does not exist; create it with queue.create", (int)len, name);
    return 0;
}

int queue_op_create(cmd_t *c)
{
    queues_t *qs = c->qs;
    const char *name;
    size_t len;
    struct attrs a = attrs_default;
    int rc;
    if ((rc = cmd_arg_name(c, c->req, "name", &name, &len)) ||
        (rc = attrs_parse(qs, c, &a, name, len, false)))
        return rc;
    queue_t *q = queue_find(qs, name, len);
    if (q)
        return attrs_equal(&q->a, &a) ? 0
               : cmd_fail(c, MQHUB_EEXISTS,
                          "queue '%.*s' exists with other attributes; use queue.set to change them",
                          (int)len, name);
    if (!(q = queue_alloc(name, len)))
        return cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
    q->id = qs->next_qid++;
    q->next_seq = 1;
    q->a = a;
    q->retain_due = UINT64_MAX; /* empty */
    q->created_at = q->modified_at = c->now;
    if (queue_link(qs, q) != 0) {
        queue_destroy(q);
        return cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
    }
    unsigned char be[8];
    store_be64_put(be, qs->next_qid);
    qput(qs, META_QID, strlen(META_QID), be, 8);
    mark_dirty(qs, q);
    return 0;
}

/* ---- delete and purge: O(1) in apply, reclaimed by tick ----
 *
 * queue.delete and queue.purge only write the reclaim record
 *   Z<kind><id be64>   [floor be64][dedup: 1 byte]
 * with kind 'M' and id the queue id, and drop the queue's in-memory indexes:
 * every message record of queue id qid below seq floor is dead from then on
 * (msg_load and every scan start at the floor; a deleted queue's id is
 * never used again, its floor is UINT64_MAX), and with dedup set its D
 * records too (delete; purge keeps them). topic.delete and
 * subscription.delete use the same record (queue_reclaim_mark) with kind
 * 'P' (a topic's retained log P<tid>: each body that R still counts is
 * first kept in G, as retention does) and 'W' (a subscription's pending set
 * W<sid>). tick removes the dead records RECLAIM_BUDGET at a time, in Z key
 * then seq order (the same records on every node), releasing shared-body
 * references as msg_remove does, and removes Z once nothing is left. Z is an
 * ordinary record: it survives snapshots and restarts, and the reclaim
 * resumes where it stopped. */

#define ZKEY_LEN 10 /* 'Z', kind, id */

void queue_reclaim_mark(queues_t *qs, char kind, uint64_t id, uint64_t floor, bool dedup)
{
    unsigned char k[ZKEY_LEN], v[9];
    k[0] = 'Z';
    k[1] = (unsigned char)kind;
    store_be64_put(k + 2, id);
    store_be64_put(v, floor);
    v[8] = dedup;
    qput(qs, k, sizeof k, v, sizeof v);
    qs->tick_more = true;
}

int queue_op_delete(cmd_t *c)
{
    queues_t *qs = c->qs;
    queue_t *q;
    unsigned char k[1 + MQHUB_NAME_MAX];
    int rc = arg_queue(qs, c, "name", &q);
    if (rc)
        return rc;
    queue_reclaim_mark(qs, 'M', q->id, UINT64_MAX, true);
    qrec_key(k, q);
    store_del(qs->st, k, 1 + q->nlen);
    queue_unlink(qs, q);
    queue_destroy(q);
    return 0;
}

/* Purge drops every message (not the dedup entries: a repeated send within
 * 5 minutes is still a repeat) and keeps the totals; seqs continue. */
int queue_op_purge(cmd_t *c)
{
    queues_t *qs = c->qs;
    queue_t *q;
    int rc = arg_queue(qs, c, "name", &q);
    if (rc)
        return rc;
    q->floor = q->next_seq;
    queue_reclaim_mark(qs, 'M', q->id, q->floor, false);
    queue_clear_indexes(q);
    q->s.ready = q->s.inflight = q->s.delayed = q->s.retained = 0;
    tick_index_lower(qs, q, 0); /* emptied: the next tick may drop it */
    mark_dirty(qs, q);
    return 0;
}

/* One Z record. */
struct dead {
    char kind; /* the prefix of the dead records: 'M', 'P' or 'W' */
    uint64_t id, floor;
    bool dedup;
};

struct dead_list {
    struct dead v[RECLAIM_SCAN];
    size_t n;
    bool more; /* Z records beyond v */
};

static bool dead_decode(const char *k, size_t kl, const char *v, size_t vl, struct dead *d)
{
    if (kl != ZKEY_LEN || vl != 9)
        return false;
    d->kind = k[1];
    d->id = store_be64_get((const unsigned char *)k + 2);
    d->floor = store_be64_get((const unsigned char *)v);
    d->dedup = v[8] != 0;
    return true;
}

static int collect_dead(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct dead_list *l = arg;
    if (l->n == RECLAIM_SCAN) {
        l->more = true;
        return 1;
    }
    if (dead_decode(k, kl, v, vl, &l->v[l->n]))
        l->n++;
    return 0;
}

/* Keys gathered by a scan for removal after it (a visit must not write). */
struct dead_keys {
    uint64_t floor, budget;
    size_t n, cap;
    char **k;
    size_t *kl;
};

static int collect_dead_key(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct dead_keys *d = arg;
    (void)v, (void)vl;
    if (d->n >= d->budget ||
        (k[0] != 'D' && kl == KEY_LEN && store_be64_get((const unsigned char *)k + 9) >= d->floor))
        return 1;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        char **nk = realloc(d->k, cap * sizeof(*nk));
        size_t *nl = nk ? realloc(d->kl, cap * sizeof(*nl)) : NULL;
        if (nk)
            d->k = nk;
        if (!nl)
            return 1;
        d->kl = nl;
        d->cap = cap;
    }
    if (!(d->k[d->n] = malloc(kl)))
        return 1;
    memcpy(d->k[d->n], k, kl);
    d->kl[d->n++] = kl;
    return 0;
}

static void dead_keys_free(struct dead_keys *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->k[i]);
    free(d->k);
    free(d->kl);
}

/* Remove a dead message record @k, its body, its shared-body reference. */
static void reclaim_msg(queues_t *qs, unsigned char *k)
{
    struct msg m = {.raw = NULL};
    size_t vl;
    bool b_record = true; /* unless the record says otherwise */
    if ((m.raw = store_get(qs->st, k, KEY_LEN, &vl)) &&
        msg_decode(&m, store_be64_get(k + 9), m.raw, vl) == 0) {
        b_record = !m.has_ref && !m.body_inline;
        if (m.has_ref && body_release(qs->st, m.ref_tid, m.ref_seq) != 0)
            qs->failed = true;
    }
    if (!m.raw)
        msgpack_unpacked_init(&m.u);
    msg_free(&m);
    store_del(qs->st, k, KEY_LEN);
    k[0] = 'B';
    if (b_record)
        store_del(qs->st, k, KEY_LEN);
}

/* Remove a dead retained topic message @k, keeping its body in G while
 * queue messages still refer to it (as retention does). */
static void reclaim_topic_msg(queues_t *qs, const unsigned char *k)
{
    if (body_keep(qs->st, store_be64_get(k + 1), store_be64_get(k + 9)) != 0)
        qs->failed = true;
    store_del(qs->st, k, KEY_LEN);
}

/* Remove up to @budget dead records of @d; returns how many, *done when
 * none is left. */
static uint64_t reclaim_one(queues_t *qs, const struct dead *d, uint64_t budget, bool *done)
{
    struct dead_keys keys = {.floor = d->floor, .budget = budget};
    unsigned char p[9];
    p[0] = (unsigned char)d->kind;
    store_be64_put(p + 1, d->id);
    store_scan(qs->st, p, 9, NULL, 0, collect_dead_key, &keys);
    if (keys.n < budget && d->dedup) {
        p[0] = 'D';
        store_scan(qs->st, p, 9, NULL, 0, collect_dead_key, &keys);
    }
    for (size_t i = 0; i < keys.n; i++) {
        unsigned char *k = (unsigned char *)keys.k[i];
        if (k[0] == 'M' && keys.kl[i] == KEY_LEN)
            reclaim_msg(qs, k);
        else if (k[0] == 'P' && keys.kl[i] == KEY_LEN)
            reclaim_topic_msg(qs, k);
        else
            store_del(qs->st, k, keys.kl[i]);
    }
    uint64_t n = keys.n;
    *done = n < budget;
    dead_keys_free(&keys);
    return n;
}

/* The reclaim half of tick: the dead records of deleted and purged queues,
 * deleted topics and subscriptions, RECLAIM_BUDGET per tick. */
static void reclaim_tick(queues_t *qs)
{
    struct dead_list l = {.n = 0};
    uint64_t budget = RECLAIM_BUDGET;
    store_scan(qs->st, "Z", 1, NULL, 0, collect_dead, &l);
    for (size_t i = 0; i < l.n && budget; i++) {
        bool done;
        budget -= reclaim_one(qs, &l.v[i], budget, &done);
        if (done) {
            unsigned char k[ZKEY_LEN];
            k[0] = 'Z';
            k[1] = (unsigned char)l.v[i].kind;
            store_be64_put(k + 2, l.v[i].id);
            store_del(qs->st, k, sizeof k);
        } else {
            l.more = true;
        }
    }
    if (budget == 0 || l.more)
        qs->tick_more = true;
}

/* After a load: each live queue's floor, and whether tick has work. */
static int rebuild_dead(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    queues_t *qs = arg;
    struct dead d;
    queue_t *q;
    if (dead_decode(k, kl, v, vl, &d) && d.kind == 'M' && (q = queue_by_id(qs, d.id)))
        q->floor = d.floor;
    qs->tick_more = true;
    return 0;
}

int queue_op_set(cmd_t *c)
{
    queues_t *qs = c->qs;
    queue_t *q;
    int rc = arg_queue(qs, c, "name", &q);
    struct attrs a;
    if (rc)
        return rc;
    a = q->a;
    if ((rc = attrs_parse(qs, c, &a, q->name, q->nlen, true)))
        return rc;
    q->a = a;
    q->modified_at = c->now;
    q->retain_due = 0; /* the retention may have changed: tick looks again */
    tick_index_lower(qs, q, 0);
    mark_dirty(qs, q);
    return 0;
}

static void pack_attrs(msgpack_packer *pk, const struct attrs *a, const char *hook)
{
    msgpack_pack_map(pk, (a->dlq[0] ? 9 : 8) + (hook ? 1 : 0));
    if (hook)
        cmd_pack_kv_str(pk, "hook", hook, strlen(hook));
    cmd_pack_kv_uint(pk, "visibility_timeout", a->visibility_timeout);
    cmd_pack_kv_uint(pk, "polling_wait", a->polling_wait);
    cmd_pack_kv_uint(pk, "max_msg_size", a->max_msg_size);
    cmd_pack_kv_uint(pk, "retention", a->retention);
    cmd_pack_kv_uint(pk, "rewind_window", a->rewind_window);
    cmd_pack_kv_uint(pk, "max_backlog", a->max_backlog);
    cmd_pack_kv_uint(pk, "delay", a->delay);
    mp_pack_str(pk, "ordered", 7);
    if (a->ordered)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    if (a->dlq[0]) {
        mp_pack_str(pk, "dead_letter", 11);
        msgpack_pack_map(pk, 2);
        cmd_pack_kv_str(pk, "queue", a->dlq, strlen(a->dlq));
        cmd_pack_kv_uint(pk, "max_receives", a->dlq_max);
    }
}

static int first_live(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct msg m = {.raw = NULL};
    int found = 0;
    if (msg_decode(&m, 0, v, vl) == 0 && m.st != MS_DELETED && m.st != MS_DELAYED) {
        *(uint64_t *)arg = m.enqueued_at;
        found = 1;
    }
    msg_free(&m);
    return found;
}

/* now - enqueued_at of the oldest message ready or in flight (a scan past
 * the deleted-but-kept and the delayed ones at the front: a delayed message
 * is not waiting for a consumer yet), 0 when there is none. The scan's
 * result is kept until the queue's messages change, so a list sorted by
 * age over many idle queues reads the store once per changed queue. */
static uint64_t oldest_age(queues_t *qs, queue_t *q, uint64_t now)
{
    unsigned char from[KEY_LEN];
    if (!q->oldest_known) {
        q->oldest_at = UINT64_MAX;
        store_key_id_seq(from, 'M', q->id, q->floor);
        store_scan(qs->st, from, 9, from, KEY_LEN, first_live, &q->oldest_at);
        q->oldest_known = true;
    }
    return now > q->oldest_at ? now - q->oldest_at : 0;
}

int queue_op_get(cmd_t *c)
{
    queues_t *qs = c->qs;
    queue_t *q;
    int rc = arg_queue(qs, c, "name", &q);
    if (rc || !c->pk)
        return rc;
    cmd_reply_key(c, "name");
    mp_pack_str(c->pk, q->name, q->nlen);
    cmd_reply_key(c, "attrs");
    pack_attrs(c->pk, &q->a, qs->hook_name ? qs->hook_name(qs->gate_arg, true, q->name, q->nlen)
                                           : NULL);
    cmd_reply_uint(c, "created_at", q->created_at);
    cmd_reply_uint(c, "modified_at", q->modified_at);
    cmd_reply_key(c, "stats");
    msgpack_pack_map(c->pk, 10);
    cmd_pack_kv_uint(c->pk, "ready", q->s.ready);
    cmd_pack_kv_uint(c->pk, "inflight", q->s.inflight);
    cmd_pack_kv_uint(c->pk, "delayed", q->s.delayed);
    cmd_pack_kv_uint(c->pk, "retained", q->s.retained);
    cmd_pack_kv_uint(c->pk, "oldest_age_ms", oldest_age(qs, q, c->now));
    cmd_pack_kv_uint(c->pk, "sent_total", q->s.sent_total);
    cmd_pack_kv_uint(c->pk, "received_total", q->s.received_total);
    cmd_pack_kv_uint(c->pk, "deleted_total", q->s.deleted_total);
    cmd_pack_kv_uint(c->pk, "redelivered_total", q->s.redelivered_total);
    cmd_pack_kv_uint(c->pk, "dead_lettered_total", q->s.dead_lettered_total);
    return 0;
}

/* queue.list's sorts (listing.c), in LIST_* order; "name" first. */
static const char *const list_sorts[] = {"name",   "ready", "inflight", "delayed",  "retained",
                                         "oldest", "dead",  "sent",     "received", NULL};
enum { LIST_NAME, LIST_READY, LIST_INFLIGHT, LIST_DELAYED, LIST_RETAINED, LIST_OLDEST, LIST_DEAD,
       LIST_SENT, LIST_RECEIVED };

/* The dead-letter queue of @q, when it names one that exists and @c's
 * viewer (a named user) sees: its backlog is that queue's figure. */
static const queue_t *list_dlq(cmd_t *c, const queue_t *q)
{
    size_t len = strlen(q->a.dlq);
    if (len == 0 || (c->viewer && !user_sees(c->us, c->viewer, q->a.dlq, len)))
        return NULL;
    return omap_get(&c->qs->by_name, q->a.dlq, len);
}

static uint64_t list_key(void *arg, const void *obj, int sort)
{
    cmd_t *c = arg;
    queue_t *q = (queue_t *)obj; /* oldest_age() fills its cache */
    const queue_t *dlq;
    switch (sort) {
    case LIST_READY: return q->s.ready;
    case LIST_INFLIGHT: return q->s.inflight;
    case LIST_DELAYED: return q->s.delayed;
    case LIST_RETAINED: return q->s.retained;
    case LIST_OLDEST: return oldest_age(c->qs, q, c->now);
    case LIST_DEAD: return (dlq = list_dlq(c, q)) ? dlq->s.ready : 0;
    case LIST_SENT: return q->s.sent_total;
    default: return q->s.received_total;
    }
}

/* One row: the counters of queue.get's stats, flat, with the dead-letter
 * queue's name and its ready count when it has one. */
static void list_row(void *arg, cmd_t *c, const void *obj)
{
    queue_t *q = (queue_t *)obj; /* oldest_age() fills its cache */
    const queue_t *dlq = list_dlq(c, q);
    (void)arg; /* c itself */
    msgpack_pack_map(c->pk, 11 + (q->a.dlq[0] ? 1 : 0) + (dlq ? 1 : 0));
    cmd_pack_kv_str(c->pk, "name", q->name, q->nlen);
    cmd_pack_kv_uint(c->pk, "ready", q->s.ready);
    cmd_pack_kv_uint(c->pk, "inflight", q->s.inflight);
    cmd_pack_kv_uint(c->pk, "delayed", q->s.delayed);
    cmd_pack_kv_uint(c->pk, "retained", q->s.retained);
    cmd_pack_kv_uint(c->pk, "oldest_age_ms", oldest_age(c->qs, q, c->now));
    cmd_pack_kv_uint(c->pk, "sent_total", q->s.sent_total);
    cmd_pack_kv_uint(c->pk, "received_total", q->s.received_total);
    cmd_pack_kv_uint(c->pk, "deleted_total", q->s.deleted_total);
    cmd_pack_kv_uint(c->pk, "redelivered_total", q->s.redelivered_total);
    cmd_pack_kv_uint(c->pk, "dead_lettered_total", q->s.dead_lettered_total);
    if (q->a.dlq[0])
        cmd_pack_kv_str(c->pk, "dead_letter_queue", q->a.dlq, strlen(q->a.dlq));
    if (dlq)
        cmd_pack_kv_uint(c->pk, "dead", dlq->s.ready);
}

/* The old form (names) through cmd_list_names; with stats, match, sort or
 * desc through listing.c. */
int queue_op_list(cmd_t *c)
{
    queues_t *qs = c->qs;
    listing_t l;
    bool extended;
    int rc = listing_args(c, list_sorts, &l, &extended);
    if (rc)
        return rc;
    if (!extended)
        return cmd_list_names(c, &qs->by_name, "queues");
    return listing_run(c, &l, &qs->by_name, "queues", list_key, list_row, c);
}

/* ---- send ---- */

struct sent {
    char msg_id[48];
    uint64_t seq;
};

static int arg_opt_id(cmd_t *c, const msgpack_object *m, const char *key, const char **s,
                      size_t *len)
{
    int rc = cmd_arg_str(c, m, key, false, s, len);
    if (rc == 0 && *s && (*len < 1 || *len > ID_MAX_LEN))
        rc = cmd_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be 1-%d bytes", key, ID_MAX_LEN);
    return rc;
}

static bool dedup_lookup(queues_t *qs, const queue_t *q, const char *id, size_t len,
                         uint64_t now, struct sent *out)
{
    unsigned char k[9 + ID_MAX_LEN];
    size_t vl;
    msgpack_unpacked u;
    bool hit = false;
    k[0] = 'D';
    store_be64_put(k + 1, q->id);
    memcpy(k + 9, id, len);
    char *v = store_get(qs->st, k, 9 + len, &vl);
    if (!v)
        return false;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 3) {
        const msgpack_object *o = u.data.via.array.ptr;
        hit = o[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && o[0].via.u64 + MQHUB_DEDUP_WINDOW_MS > now &&
              o[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && o[2].type == MSGPACK_OBJECT_STR &&
              o[2].via.str.size < sizeof(out->msg_id);
        if (hit) {
            out->seq = o[1].via.u64;
            memcpy(out->msg_id, o[2].via.str.ptr, o[2].via.str.size);
            out->msg_id[o[2].via.str.size] = 0;
        }
    }
    msgpack_unpacked_destroy(&u);
    store_free(v);
    return hit;
}

static void dedup_store(queues_t *qs, queue_t *q, const char *id, size_t len, uint64_t now,
                        const struct sent *s)
{
    unsigned char k[9 + ID_MAX_LEN];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct dedup_ref d = {now, malloc(len), len};
    k[0] = 'D';
    store_be64_put(k + 1, q->id);
    memcpy(k + 9, id, len);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, now);
    msgpack_pack_uint64(&pk, s->seq);
    mp_pack_str(&pk, s->msg_id, strlen(s->msg_id));
    qput(qs, k, 9 + len, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (d.id) {
        memcpy(d.id, id, len);
        if (heap_push(&q->dedup, &d) != 0)
            free(d.id);
    }
    tick_index_lower(qs, q, now + MQHUB_DEDUP_WINDOW_MS);
}

/* Store a new message: @m carries msg_id (or "" to make one), group, dedup,
 * attrs, and for a shared body its ref and blen; state and times are set here
 * from @delay_ms, the body (@body, @blen) kept inline or in a B record. */
static void enqueue(queues_t *qs, queue_t *q, struct msg *m, const void *body, size_t blen,
                    uint64_t delay_ms)
{
    unsigned char k[KEY_LEN];
    m->seq = q->next_seq++;
    if (!m->msg_id[0])
        snprintf(m->msg_id, sizeof(m->msg_id), "%llx-%llx", (unsigned long long)q->id,
                 (unsigned long long)m->seq);
    m->enqueued_at = qs->now;
    m->visible_at = qs->now + delay_ms;
    m->rc = m->first_received_at = m->deleted_at = 0;
    if (q->retain_due > qs->now + q->a.retention * 1000)
        q->retain_due = qs->now + q->a.retention * 1000;
    tick_index_lower(qs, q, q->retain_due);
    if (!q->a.ordered)
        m->has_group = false;
    m->st = -1;
    q->s.sent_total++;
    if (delay_ms) {
        set_state(qs, q, m, MS_DELAYED);
        timer_add(qs, q, m->visible_at, m->seq);
    } else {
        ready_add(qs, q, m);
    }
    if (!m->has_ref) {
        m->blen = blen;
        m->blen_known = true;
        m->body_inline = blen <= MSG_INLINE_MAX;
        m->body = m->body_inline ? body : NULL;
    }
    msg_save(qs, q, m);
    if (m->has_ref || m->body_inline)
        return;
    store_key_id_seq(k, 'B', q->id, m->seq);
    qput(qs, k, KEY_LEN, body, blen);
}

/* The queue's checks a sent message passes, besides its own fields. @size
 * is the message's size: body + the encoded attrs (cmd_attrs_size). */
static int check_room(queue_t *q, cmd_t *c, size_t size)
{
    if (size > q->a.max_msg_size)
        return cmd_fail(c, MQHUB_ETOO_LARGE,
                        "the message (body and attrs) has %zu bytes, more than the queue's "
                        "max_msg_size (%llu)", size, (unsigned long long)q->a.max_msg_size);
    if (q->a.max_backlog && q->s.ready + q->s.inflight + q->s.delayed >= q->a.max_backlog)
        return cmd_fail(c, MQHUB_EBACKLOG_FULL,
                        "queue '%s' holds its max_backlog of %llu messages; receive and delete "
                        "some first", q->name, (unsigned long long)q->a.max_backlog);
    return 0;
}

void queue_set_gate(queues_t *qs, fsm_gate_fn fn, fsm_hook_name_fn hook_name, void *arg)
{
    qs->gate = fn;
    qs->hook_name = hook_name;
    qs->gate_arg = arg;
}

/* Pass @m through the gate (blocks, the queue's hook) as the message it
 * would become: its msg_id and seq are fixed here. */
static int gate(queues_t *qs, queue_t *q, cmd_t *c, struct msg *m, const char *body,
                size_t blen)
{
    static const msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    if (!qs->gate)
        return 0;
    snprintf(m->msg_id, sizeof(m->msg_id), "%llx-%llx", (unsigned long long)q->id,
             (unsigned long long)q->next_seq);
    fsm_push_msg_t v = {q->next_seq, m->msg_id, strlen(m->msg_id), body, blen, &nil, &nil,
                        &m->attrs, qs->now, NULL, 0};
    return qs->gate(qs->gate_arg, c, true, q->name, q->nlen, &v);
}

/* Validate and apply one message map @mm of a send or send_batch. */
static int send_one(queues_t *qs, queue_t *q, cmd_t *c, const msgpack_object *mm,
                    struct sent *out)
{
    const msgpack_object *body = mp_map_get(mm, "body");
    struct msg m = {.raw = NULL};
    uint64_t delay = q->a.delay;
    int rc;
    if (!body || (body->type != MSGPACK_OBJECT_BIN && body->type != MSGPACK_OBJECT_STR))
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'body' is required (bin or str)");
    if ((rc = cmd_arg_uint(c, mm, "delay", 0, MQHUB_DELAY_MAX, &delay)) ||
        (rc = cmd_arg_attrs(c, mm, &m.attrs)) ||
        (rc = arg_opt_id(c, mm, "group", &m.group, &m.glen)) ||
        (rc = arg_opt_id(c, mm, "dedup_id", &m.dedup, &m.dlen)))
        return rc;
    /* str and bin share the layout of their (size, ptr) pair. */
    size_t blen = body->type == MSGPACK_OBJECT_BIN ? body->via.bin.size : body->via.str.size;
    const char *bptr = body->type == MSGPACK_OBJECT_BIN ? body->via.bin.ptr : body->via.str.ptr;
    size_t size = blen + cmd_attrs_size(&m.attrs);
    if (size > q->a.max_msg_size)
        return check_room(q, c, size);
    if (m.dedup && dedup_lookup(qs, q, m.dedup, m.dlen, qs->now, out))
        return 0;
    if ((rc = check_room(q, c, size)) || (rc = gate(qs, q, c, &m, bptr, blen)))
        return rc;
    m.has_group = m.group != NULL;
    enqueue(qs, q, &m, bptr, blen, delay * 1000);
    out->seq = m.seq;
    memcpy(out->msg_id, m.msg_id, sizeof(out->msg_id));
    if (m.dedup)
        dedup_store(qs, q, m.dedup, m.dlen, qs->now, out);
    return 0;
}

bool queue_exists(queues_t *qs, const char *name, size_t len)
{
    return queue_find(qs, name, len) != NULL;
}

/* Append for a topic: @ref (NULL: store @body) names the shared body. */
static int append_topic(queues_t *qs, cmd_t *c, const char *name, size_t len,
                        const char *msg_id, const void *body, size_t blen,
                        const msgpack_object *tags, const msgpack_object *attrs,
                        const uint64_t *ref)
{
    static const msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    queue_t *q = queue_find(qs, name, len);
    struct msg m = {.raw = NULL, .has_ref = ref != NULL};
    int rc;
    if (!q)
        return cmd_fail(c, MQHUB_ENOT_FOUND, "queue '%.*s' does not exist", (int)len, name);
    if ((rc = check_room(q, c, blen + cmd_attrs_size(attrs))))
        return rc;
    snprintf(m.msg_id, sizeof(m.msg_id), "%s", msg_id);
    m.tags = tags ? *tags : nil;
    m.attrs = attrs ? *attrs : nil;
    if (ref) {
        m.ref_tid = ref[0];
        m.ref_seq = ref[1];
        m.blen = blen;
        m.blen_known = true;
    }
    enqueue(qs, q, &m, body, blen, q->a.delay * 1000);
    return 0;
}

int queue_append_from_topic(queues_t *qs, cmd_t *c, const char *name, size_t len,
                            const char *msg_id, const void *body, size_t blen,
                            const msgpack_object *tags, const msgpack_object *attrs)
{
    return append_topic(qs, c, name, len, msg_id, body, blen, tags, attrs, NULL);
}

int queue_append_ref(queues_t *qs, cmd_t *c, const char *name, size_t len,
                     const char *msg_id, size_t blen, const msgpack_object *tags,
                     const msgpack_object *attrs, uint64_t tid, uint64_t seq)
{
    const uint64_t ref[2] = {tid, seq};
    return append_topic(qs, c, name, len, msg_id, NULL, blen, tags, attrs, ref);
}

static void pack_sent(msgpack_packer *pk, const struct sent *s)
{
    cmd_pack_kv_str(pk, "msg_id", s->msg_id, strlen(s->msg_id));
    cmd_pack_kv_uint(pk, "seq", s->seq);
}

int queue_op_send(cmd_t *c)
{
    queues_t *qs = c->qs;
    queue_t *q;
    struct sent s;
    int rc = arg_queue(qs, c, "queue", &q);
    if (rc || (rc = send_one(qs, q, c, c->req, &s)))
        return rc;
    if (c->pk) {
        c->n_fields += 2;
        pack_sent(c->pk, &s);
    }
    return 0;
}

struct batch {
    queues_t *qs;
    queue_t *q;
};

static int send_item(void *arg, cmd_t *c, const msgpack_object *mm)
{
    struct batch *b = arg;
    struct sent s;
    int rc = mm->type == MSGPACK_OBJECT_MAP
                 ? send_one(b->qs, b->q, c, mm, &s)
                 : cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'msgs': each message must be a map");
    if (rc == 0 && c->pk) {
        msgpack_pack_map(c->pk, 2);
        pack_sent(c->pk, &s);
    }
    return rc;
}

int queue_op_send_batch(cmd_t *c)
{
    queues_t *qs = c->qs;
    struct batch b = {.qs = qs};
    int rc = arg_queue(qs, c, "queue", &b.q);
    return rc ? rc : cmd_batch(c, "msgs", "maps", MQHUB_BATCH_MAX, send_item, &b);
}

/* ---- receive ---- */

static void receipt_make(char *out, size_t len, const queue_t *q, const struct msg *m)
{
    snprintf(out, len, "%llx.%llx.%llx", (unsigned long long)q->id, (unsigned long long)m->seq,
             (unsigned long long)m->rc);
}

static bool parse_hex(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    for (; s < end && *s != '.'; s++) {
        int d = *s >= '0' && *s <= '9' ? *s - '0' : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10 : -1;
        if (d < 0 || s - *p >= 16)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    if (s == *p)
        return false;
    *out = v;
    *p = s;
    return true;
}

/* Load the message a receipt names when the receipt holds its current lock. */
static int receipt_check(queues_t *qs, cmd_t *c, queue_t *q, const char *r, size_t len,
                         struct msg *m)
{
    const char *p = r, *end = r + len;
    uint64_t qid, seq, rc;
    bool ok = parse_hex(&p, end, &qid) && p < end && *p++ == '.' && parse_hex(&p, end, &seq) &&
              p < end && *p++ == '.' && parse_hex(&p, end, &rc) && p == end && qid == q->id;
    if (ok)
        ok = msg_load(qs, q, seq, m) == 0 && m->st == MS_INFLIGHT && m->rc == rc &&
             m->visible_at > c->now;
    else
        *m = (struct msg){.raw = NULL};
    if (!ok)
        return cmd_fail(c, MQHUB_EINVALID_RECEIPT,
                        "receipt '%.*s' is stale or unknown: the lock expired or the message was "
                        "received again; receive it again", (int)(len > 64 ? 64 : len), r);
    return 0;
}

/* One message of a reply: a receive's (@receipt given: with the receipt and
 * next_visible_at) or a peek's (@receipt NULL: with state "ready"). */
static void pack_msg(queues_t *qs, msgpack_packer *pk, const queue_t *q, const struct msg *m,
                     const char *receipt)
{
    size_t blen = 0;
    char *owned;
    const char *body = msg_body(qs, q, m, &blen, &owned);
    bool tags = m->tags.type == MSGPACK_OBJECT_ARRAY;
    msgpack_pack_map(pk, 7 + (receipt ? 2 : 1) + m->has_group + tags);
    cmd_pack_kv_str(pk, "msg_id", m->msg_id, strlen(m->msg_id));
    cmd_pack_kv_uint(pk, "seq", m->seq);
    if (receipt)
        cmd_pack_kv_str(pk, "receipt", receipt, strlen(receipt));
    mp_pack_str(pk, "body", 4);
    msgpack_pack_bin(pk, blen);
    msgpack_pack_bin_body(pk, body ? body : "", blen);
    mp_pack_str(pk, "attrs", 5);
    if (m->attrs.type == MSGPACK_OBJECT_MAP)
        msgpack_pack_object(pk, m->attrs);
    else
        msgpack_pack_map(pk, 0);
    if (m->has_group)
        cmd_pack_kv_str(pk, "group", m->group, m->glen);
    if (tags) {
        mp_pack_str(pk, "tags", 4);
        msgpack_pack_object(pk, m->tags);
    }
    cmd_pack_kv_uint(pk, "enqueued_at", m->enqueued_at);
    cmd_pack_kv_uint(pk, "first_received_at", m->first_received_at);
    if (receipt)
        cmd_pack_kv_uint(pk, "next_visible_at", m->visible_at);
    cmd_pack_kv_uint(pk, "receive_count", m->rc);
    if (!receipt)
        cmd_pack_kv_str(pk, "state", "ready", 5);
    store_free(owned);
}

static void pack_message(queues_t *qs, msgpack_packer *pk, const queue_t *q, const struct msg *m)
{
    char receipt[64];
    receipt_make(receipt, sizeof(receipt), q, m);
    pack_msg(qs, pk, q, m, receipt);
}

/* The attr a dead-letter move adds: the queue the message came from, where
 * queue.redrive takes it back (and removes the attr again). */
#define SOURCE_ATTR "mqhub.source_queue"
#define SOURCE_ATTR_LEN (sizeof(SOURCE_ATTR) - 1)

static bool is_source_attr(const msgpack_object *k)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == SOURCE_ATTR_LEN &&
           memcmp(k->via.str.ptr, SOURCE_ATTR, SOURCE_ATTR_LEN) == 0;
}

/* @attrs (NIL or a map) without SOURCE_ATTR, plus SOURCE_ATTR = @src when
 * @src is not NULL, packed into @sb and unpacked into @u (its strings point
 * into @sb: the caller destroys both after use). An empty result is NIL, as
 * a message sent without attrs has. */
static const msgpack_object *attrs_with_source(msgpack_sbuffer *sb, msgpack_unpacked *u,
                                               const msgpack_object *attrs, const char *src,
                                               size_t srclen)
{
    msgpack_packer pk;
    uint32_t n = src != NULL;
    bool is_map = attrs->type == MSGPACK_OBJECT_MAP;
    for (uint32_t i = 0; is_map && i < attrs->via.map.size; i++)
        n += !is_source_attr(&attrs->via.map.ptr[i].key);
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (n == 0)
        msgpack_pack_nil(&pk);
    else
        msgpack_pack_map(&pk, n);
    for (uint32_t i = 0; is_map && i < attrs->via.map.size; i++) {
        const msgpack_object_kv *kv = &attrs->via.map.ptr[i];
        if (is_source_attr(&kv->key))
            continue;
        msgpack_pack_object(&pk, kv->key);
        msgpack_pack_object(&pk, kv->val);
    }
    if (src != NULL)
        cmd_pack_kv_str(&pk, SOURCE_ATTR, src, srclen);
    msgpack_unpacked_init(u);
    msgpack_unpack_next(u, sb->data, sb->size, NULL);
    return &u->data;
}

/* Move @m (READY, taken off the indexes) to queue @t with a new seq and
 * receive_count 0; the msg_id, body (a shared body's reference moves along),
 * attrs and group stay. The attrs gain SOURCE_ATTR = @src (a dead-letter
 * move) or lose it (@src NULL: a redrive). */
static void move_msg(queues_t *qs, queue_t *q, struct msg *m, queue_t *t, const char *src,
                     size_t srclen)
{
    size_t blen = 0;
    char *owned = NULL;
    const char *body = NULL;
    struct msg nm = {.raw = NULL};
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    if (!m->has_ref)
        body = msg_body(qs, q, m, &blen, &owned);
    memcpy(nm.msg_id, m->msg_id, sizeof(nm.msg_id));
    nm.group = m->group, nm.glen = m->glen, nm.has_group = m->has_group;
    nm.attrs = *attrs_with_source(&sb, &u, &m->attrs, src, srclen);
    nm.tags = m->tags;
    nm.has_ref = m->has_ref, nm.ref_tid = m->ref_tid, nm.ref_seq = m->ref_seq;
    nm.blen = m->blen, nm.blen_known = m->blen_known;
    enqueue(qs, t, &nm, body ? body : "", blen, 0);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    store_free(owned);
    set_state(qs, q, m, -1);
    msg_remove(qs, q, m, true);
}

/* A dead-letter move of @m from @q to @t, recording @q as its source. */
static void dead_letter(queues_t *qs, queue_t *q, struct msg *m, queue_t *t)
{
    move_msg(qs, q, m, t, q->name, q->nlen);
}

/* The bytes a receive reply may hold: it must fit the default frame limit
 * (MQHUB_DEFAULT_MAX_FRAME) with room for the envelope. A fixed number, not
 * the node's max_frame setting: which messages a receive locks must be the
 * same on every node. */
#define RECEIVE_REPLY_MAX (MQHUB_DEFAULT_MAX_FRAME - (64u << 10))
/* A bound on what pack_message() adds besides body and attrs: msg_id,
 * receipt, group (<= ID_MAX_LEN), tags (<= 5 of 64 bytes), the numbers and
 * the field names. */
#define MSG_REPLY_OVERHEAD 768
/* What a receive reply holds besides its messages: id, ok, the msgs key and
 * the array's header. */
#define RECEIVE_ENVELOPE 64
/* Dead-letter moves one receive makes at most (they do not count toward its
 * max): a queue full of exhausted messages is moved over several receives,
 * never in one long apply. */
#define RECEIVE_DEAD_MAX 1000

/* The bytes @m takes in a receive reply, at most (the body's size is in
 * the record, or asked of the store for an older record, so followers, which
 * pack no reply, compute the same). */
static size_t msg_reply_size(queues_t *qs, const queue_t *q, const struct msg *m)
{
    unsigned char k[KEY_LEN];
    size_t blen = m->blen;
    if (!m->blen_known && m->has_ref) {
        store_free(body_get(qs->st, m->ref_tid, m->ref_seq, &blen));
    } else if (!m->blen_known) {
        store_key_id_seq(k, 'B', q->id, m->seq);
        int64_t n = store_size(qs->st, k, KEY_LEN);
        blen = n > 0 ? (size_t)n : 0;
    }
    return blen + cmd_attrs_size(&m->attrs) + MSG_REPLY_OVERHEAD;
}

/* Give back a message take_next() popped and the receive did not take. */
static void untake(queue_t *q, const struct msg *m, struct group *g)
{
    if (!g) {
        heap_push(&q->ready, &m->seq);
        return;
    }
    heap_push(&g->ready, &m->seq);
    group_update(q, m, g);
}

/* Pop the next deliverable message of @q into @m; false when none. */
static bool take_next(queues_t *qs, queue_t *q, struct msg *m, struct group **gp)
{
    uint64_t seq;
    while (heap_pop(&q->ready, &seq) == 0) {
        struct group *g = NULL;
        if (msg_load(qs, q, seq, m) != 0 || m->st != MS_READY) {
            msg_free(m);
            continue;
        }
        if (q->a.ordered) {
            const uint64_t *top;
            g = group_get(q, m, false);
            if (!g || g->listed != seq || g->inflight || !(top = heap_top(&g->ready)) ||
                *top != seq) {
                msg_free(m);
                continue;
            }
            heap_pop(&g->ready, NULL);
            g->listed = 0;
            q->n_listed--;
        }
        *gp = g;
        return true;
    }
    return false;
}

int queue_op_receive(cmd_t *c)
{
    queues_t *qs = c->qs;
    queue_t *q;
    uint64_t max = 1, vis, reply_max = 0;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n = 0, moved = 0;
    size_t bytes = 0, limit = RECEIVE_REPLY_MAX;
    int rc = arg_queue(qs, c, "queue", &q);
    if (rc)
        return rc;
    vis = q->a.visibility_timeout;
    if ((rc = cmd_arg_uint(c, c->req, "max", 1, MQHUB_RECEIVE_MAX, &max)) ||
        (rc = cmd_arg_uint(c, c->req, "visibility", 0, MQHUB_VISIBILITY_TIMEOUT_MAX, &vis)) ||
        (rc = cmd_arg_uint(c, c->req, "reply_max", 0, UINT64_MAX, &reply_max)))
        return rc;
    /* reply_max: the max_frame of the node that took the request, written
     * into the entry by its hub, so every node stops at the same message. */
    if (reply_max > RECEIVE_ENVELOPE && reply_max - RECEIVE_ENVELOPE < limit)
        limit = (size_t)(reply_max - RECEIVE_ENVELOPE);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    while (n < max) {
        struct msg m;
        struct group *g;
        queue_t *t;
        if (!take_next(qs, q, &m, &g))
            break;
        if (q->a.dlq[0] && m.rc >= q->a.dlq_max && (t = queue_find(qs, q->a.dlq, strlen(q->a.dlq))) &&
            t != q) {
            dead_letter(qs, q, &m, t);
            q->s.dead_lettered_total++;
            if (g)
                group_update(q, &m, g);
            msg_free(&m);
            if (++moved < RECEIVE_DEAD_MAX)
                continue;
            q->woke = true; /* the rest on the next receive: long polls retry */
            break;
        }
        /* Stop before the reply outgrows a frame; the rest stay ready. */
        size_t size = msg_reply_size(qs, q, &m);
        if (n == 0 && reply_max > 0 && size > limit) {
            untake(q, &m, g);
            msg_free(&m);
            msgpack_sbuffer_destroy(&sb);
            return cmd_fail(c, MQHUB_ETOO_LARGE,
                            "the next message of queue '%s' needs up to %zu bytes in a reply, "
                            "more than this node's max_frame allows (%llu); receive it "
                            "through a node with a larger limits.max_frame",
                            q->name, size + RECEIVE_ENVELOPE, (unsigned long long)reply_max);
        }
        if (n > 0 && bytes + size > limit) {
            untake(q, &m, g);
            msg_free(&m);
            break;
        }
        bytes += size;
        set_state(qs, q, &m, MS_INFLIGHT);
        q->s.redelivered_total += m.rc > 0;
        m.rc++;
        if (!m.first_received_at)
            m.first_received_at = c->now;
        m.visible_at = c->now + vis * 1000;
        q->s.received_total++;
        if (g)
            g->inflight++;
        msg_save(qs, q, &m);
        timer_add(qs, q, m.visible_at, m.seq);
        if (c->pk)
            pack_message(qs, &pk, q, &m);
        msg_free(&m);
        n++;
    }
    cmd_reply_key(c, "msgs");
    if (c->pk) {
        msgpack_pack_array(c->pk, n);
        c->pk->callback(c->pk->data, sb.data, sb.size);
    }
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

/* ---- delete, change_visibility ---- */

static void delete_one(queues_t *qs, queue_t *q, struct msg *m, uint64_t now)
{
    group_release(q, m);
    q->s.deleted_total++;
    if (q->a.rewind_window == 0) {
        set_state(qs, q, m, -1);
        msg_remove(qs, q, m, false);
        return;
    }
    struct stamp s = {now, m->seq};
    set_state(qs, q, m, MS_DELETED);
    m->deleted_at = now;
    msg_save(qs, q, m);
    heap_push(&q->deleted, &s);
    tick_index_lower(qs, q, now + q->a.rewind_window * 1000);
}

static int delete_item(void *arg, cmd_t *c, const msgpack_object *r)
{
    struct batch *b = arg;
    struct msg m = {.raw = NULL};
    int rc = r->type != MSGPACK_OBJECT_STR
                 ? cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'receipts': each receipt must be a string")
                 : receipt_check(b->qs, c, b->q, r->via.str.ptr, r->via.str.size, &m);
    if (rc == 0)
        delete_one(b->qs, b->q, &m, c->now);
    msg_free(&m);
    if (rc == 0 && c->pk)
        cmd_pack_ok_item(c->pk);
    return rc;
}

int queue_op_delete_msgs(cmd_t *c)
{
    queues_t *qs = c->qs;
    struct batch b = {.qs = qs};
    int rc = arg_queue(qs, c, "queue", &b.q);
    return rc ? rc : cmd_batch(c, "receipts", "strings", MQHUB_BATCH_MAX, delete_item, &b);
}

int queue_op_change_visibility(cmd_t *c)
{
    queues_t *qs = c->qs;
    queue_t *q;
    const char *r;
    size_t rl;
    uint64_t timeout = UINT64_MAX;
    struct msg m = {.raw = NULL};
    int rc = arg_queue(qs, c, "queue", &q);
    if (rc || (rc = cmd_arg_str(c, c->req, "receipt", true, &r, &rl)) ||
        (rc = cmd_arg_uint(c, c->req, "timeout", 0, MQHUB_VISIBILITY_TIMEOUT_MAX, &timeout)))
        return rc;
    if (timeout == UINT64_MAX)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'timeout' is required (0-%d s)", MQHUB_VISIBILITY_TIMEOUT_MAX);
    if ((rc = receipt_check(qs, c, q, r, rl, &m)) == 0) {
        m.visible_at = c->now + timeout * 1000;
        if (timeout == 0) {
            group_release(q, &m);
            ready_add(qs, q, &m);
        } else {
            timer_add(qs, q, m.visible_at, m.seq);
        }
        msg_save(qs, q, &m);
        cmd_reply_uint(c, "next_visible_at", m.visible_at);
    }
    msg_free(&m);
    return rc;
}

/* ---- rewind ---- */

struct rewind {
    uint64_t time, count;
    heap_t seqs; /* non-ready messages to release, in seq order */
};

static int rewind_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct rewind *r = arg;
    struct msg m = {.raw = NULL};
    if (msg_decode(&m, store_be64_get((const unsigned char *)k + 9), v, vl) == 0 &&
        m.enqueued_at >= r->time) {
        r->count++;
        if (m.st != MS_READY)
            heap_push(&r->seqs, &m.seq);
    }
    msg_free(&m);
    return 0;
}

int queue_op_rewind(cmd_t *c)
{
    queues_t *qs = c->qs;
    queue_t *q;
    uint64_t seq = 0;
    struct rewind r = {.time = 0};
    unsigned char from[KEY_LEN];
    int rc = arg_queue(qs, c, "name", &q);
    if (rc || (rc = cmd_arg_uint(c, c->req, "time", 0, UINT64_MAX, &r.time)) ||
        (rc = cmd_arg_uint(c, c->req, "seq", 0, UINT64_MAX, &seq)))
        return rc;
    if (!mp_map_get(c->req, "time") && !mp_map_get(c->req, "seq"))
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "give field 'time' (ms since epoch) or 'seq' to rewind from");
    heap_init(&r.seqs, sizeof(uint64_t), cmp_u64);
    store_key_id_seq(from, 'M', q->id, seq > q->floor ? seq : q->floor);
    store_scan(qs->st, from, 9, from, KEY_LEN, rewind_visit, &r);
    while (heap_pop(&r.seqs, &seq) == 0) {
        struct msg m;
        if (msg_load(qs, q, seq, &m) == 0) {
            group_release(q, &m);
            m.deleted_at = 0;
            m.visible_at = c->now;
            ready_add(qs, q, &m);
            msg_save(qs, q, &m);
        }
        msg_free(&m);
    }
    heap_free(&r.seqs);
    cmd_reply_uint(c, "rewound", r.count);
    return 0;
}

/* ---- peek and redrive: bounded walks over a queue's records ---- */

/* Records of a queue a peek looks at, at most (a huge queue of locked or
 * retained messages does not hold the loop: the reply's `next` goes on). */
#define PEEK_SCAN 4096
#define REDRIVE_DEFAULT 1000
#define REDRIVE_MAX 10000
#define REDRIVE_BYTES ((size_t)32 << 20) /* bodies and attrs one redrive moves */

/* A walk over M<qid> records from a seq on: the READY ones it gathers (up
 * to @want) among at most @budget records, and where a next walk goes on. */
struct walk {
    body_seqs_t ready;
    size_t want, budget, seen;
    uint64_t next; /* the seq after the last record looked at */
    bool more;     /* the walk stopped before the queue's end */
};

static int walk_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct walk *w = arg;
    struct msg m = {.raw = NULL};
    uint64_t seq = store_be64_get((const unsigned char *)k + 9);
    (void)kl;
    if (w->seen == w->budget || w->ready.n == w->want) {
        w->more = true;
        return 1;
    }
    w->seen++;
    w->next = seq + 1;
    if (msg_decode(&m, seq, v, vl) == 0 && m.st == MS_READY && body_seqs_push(&w->ready, k)) {
        w->next = seq; /* out of memory: a next walk starts at this one */
        w->more = true;
    }
    msg_free(&m);
    return w->more;
}

/* Walk @q from seq @from (purged seqs skipped). */
static void walk_queue(queues_t *qs, const queue_t *q, uint64_t from, struct walk *w)
{
    unsigned char k[KEY_LEN];
    w->next = from > q->floor ? from : q->floor;
    store_key_id_seq(k, 'M', q->id, w->next);
    store_scan(qs->st, k, 9, k, KEY_LEN, walk_visit, w);
}

/* Field 'from' of a peek or redrive: a seq, or a msg_id this queue gave
 * ("<qid>-<seq>", hex) standing for its seq. */
static int arg_from(cmd_t *c, const queue_t *q, uint64_t *from)
{
    const msgpack_object *v = mp_map_get(c->req, "from");
    char id[48], *dash, *end = NULL;
    unsigned long long qid = 0, seq = 0;
    if (!v || v->type != MSGPACK_OBJECT_STR)
        return cmd_arg_uint(c, c->req, "from", 0, UINT64_MAX, from);
    snprintf(id, sizeof id, "%.*s", (int)(v->via.str.size < sizeof id ? v->via.str.size : 0),
             v->via.str.ptr);
    dash = strchr(id, '-');
    /* One dash: strtoull would take a second as a minus sign. */
    if (dash && dash > id && !strchr(dash + 1, '-') &&
        strspn(id, "0123456789abcdef-") == strlen(id)) {
        qid = strtoull(id, NULL, 16);
        seq = strtoull(dash + 1, &end, 16);
    }
    if (!end || end == dash + 1 || *end != '\0' || qid != q->id)
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'from': '%.*s' is not a msg_id queue '%s' gave; give the seq "
                        "(a message moved here keeps the msg_id of the queue it came from)",
                        (int)(v->via.str.size > 64 ? 64 : v->via.str.size), v->via.str.ptr,
                        q->name);
    *from = seq;
    return 0;
}

/* queue.peek {queue, max?, from?}: a read. The READY messages from seq
 * `from` on, in seq order, unlocked and uncounted; `next` tells where a
 * following peek goes on when this one stopped early (max, PEEK_SCAN, or
 * the reply's size). */
int queue_op_peek(cmd_t *c)
{
    queues_t *qs = c->qs;
    queue_t *q;
    uint64_t max = 1, from = 0;
    struct walk w = {.budget = PEEK_SCAN};
    size_t bytes = 0;
    uint32_t packed = 0; /* a record gone since the walk is skipped, not counted */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rc = arg_queue(qs, c, "queue", &q);
    if (rc || (rc = cmd_arg_uint(c, c->req, "max", 1, MQHUB_RECEIVE_MAX, &max)) ||
        (rc = arg_from(c, q, &from)) || !c->pk)
        return rc;
    w.want = (size_t)max;
    walk_queue(qs, q, from, &w);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (size_t i = 0; i < w.ready.n; i++) {
        struct msg m;
        if (msg_load(qs, q, w.ready.v[i], &m) != 0) {
            msg_free(&m);
            continue;
        }
        /* Stop before the reply outgrows a frame (one message at least). */
        size_t size = msg_reply_size(qs, q, &m);
        if (packed > 0 && bytes + size > RECEIVE_REPLY_MAX) {
            msg_free(&m);
            w.next = w.ready.v[i];
            w.more = true;
            break;
        }
        bytes += size;
        pack_msg(qs, &pk, q, &m, NULL);
        packed++;
        msg_free(&m);
    }
    cmd_reply_key(c, "msgs");
    msgpack_pack_array(c->pk, packed);
    c->pk->callback(c->pk->data, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (w.more)
        cmd_reply_uint(c, "next", w.next);
    free(w.ready.v);
    return 0;
}

/* Whether some queue names @q as its dead-letter queue (the id-ordered
 * list: the same answer on every node). */
static bool is_dead_letter_queue(queues_t *qs, const queue_t *q)
{
    for (const queue_t *s = qs->first; s; s = s->next)
        if (strcmp(s->a.dlq, q->name) == 0)
            return true;
    return false;
}

/* Where a redrive of @m out of DLQ @q goes: @to, or the source queue its
 * dead-letter move recorded while that queue exists and still names @q as
 * its dead-letter queue; NULL: the message stays. */
static queue_t *redrive_target(queues_t *qs, const queue_t *q, const struct msg *m, queue_t *to)
{
    queue_t *t;
    if (to)
        return to;
    for (uint32_t i = 0; m->attrs.type == MSGPACK_OBJECT_MAP && i < m->attrs.via.map.size; i++) {
        const msgpack_object_kv *kv = &m->attrs.via.map.ptr[i];
        if (!is_source_attr(&kv->key) || kv->val.type != MSGPACK_OBJECT_STR)
            continue;
        t = queue_find(qs, kv->val.via.str.ptr, kv->val.via.str.size);
        return t && t != q && strcmp(t->a.dlq, q->name) == 0 ? t : NULL;
    }
    return NULL;
}

/* Take READY @m off @q's ready index for a move. An ordered queue gives up
 * only its groups' heads, and none of a group with a message in flight (a
 * message behind one that stays stays too, so each group keeps its order);
 * false: @m stays. */
static bool redrive_take(queue_t *q, const struct msg *m, struct group **gp)
{
    const uint64_t *top;
    struct group *g;
    *gp = NULL;
    if (!q->a.ordered)
        return true; /* its entry in q->ready is skipped once the record is gone */
    g = group_get(q, m, false);
    if (!g || g->inflight || !(top = heap_top(&g->ready)) || *top != m->seq)
        return false;
    heap_pop(&g->ready, NULL);
    if (g->listed == m->seq) {
        g->listed = 0;
        q->n_listed--;
    }
    *gp = g;
    return true;
}

/* queue.redrive {queue, to?, max?, from?}: move up to `max` READY messages
 * of dead-letter queue `queue`, in seq order, back to their source queues
 * (or to `to`), as new messages there (receive_count 0). Looks at `max`
 * records and moves REDRIVE_BYTES at most (one message at least); `next`
 * tells where the next command goes on. */
int queue_op_redrive(cmd_t *c)
{
    queues_t *qs = c->qs;
    queue_t *q, *to = NULL;
    uint64_t max = REDRIVE_DEFAULT, from = 0, moved = 0, kept = 0;
    struct walk w = {.budget = 0};
    int rc = arg_queue(qs, c, "queue", &q);
    if (rc || (mp_map_get(c->req, "to") && (rc = arg_queue(qs, c, "to", &to))) ||
        (rc = cmd_arg_uint(c, c->req, "max", 1, REDRIVE_MAX, &max)) ||
        (rc = arg_from(c, q, &from)))
        return rc;
    if (to == q)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'to': queue '%s' is the queue redriven",
                        q->name);
    if (!to && !is_dead_letter_queue(qs, q))
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "queue '%s' is no queue's dead-letter queue (attrs.dead_letter); give "
                        "'to' to move its messages to a queue", q->name);
    w.want = w.budget = (size_t)max;
    walk_queue(qs, q, from, &w);
    for (size_t i = 0, bytes = 0; i < w.ready.n; i++) {
        struct msg m;
        struct group *g;
        queue_t *t = NULL;
        bool go = msg_load(qs, q, w.ready.v[i], &m) == 0 && m.st == MS_READY &&
                  (t = redrive_target(qs, q, &m, to));
        size_t size = go ? msg_reply_size(qs, q, &m) : 0;
        /* Stop before one command copies more than REDRIVE_BYTES (one message
         * at least): large bodies must not hold every node's loop for long. */
        if (go && moved > 0 && bytes + size > REDRIVE_BYTES) {
            msg_free(&m);
            w.next = w.ready.v[i];
            w.more = true;
            break;
        }
        if (go && redrive_take(q, &m, &g)) {
            move_msg(qs, q, &m, t, NULL, 0);
            if (g)
                group_update(q, &m, g);
            bytes += size;
            moved++;
        } else {
            kept++;
        }
        msg_free(&m);
    }
    free(w.ready.v);
    cmd_reply_uint(c, "moved", moved);
    cmd_reply_uint(c, "kept", kept);
    cmd_reply_uint(c, "remaining", q->s.ready);
    if (w.more)
        cmd_reply_uint(c, "next", w.next);
    return 0;
}

/* ---- tick: retention, rewind window, dedup expiry ---- */

struct expired {
    uint64_t now, retention_ms, budget;
    heap_t seqs;
    uint64_t next_due; /* when the first message left expires; 0: unknown */
};

static int expired_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct expired *e = arg;
    struct msg m = {.raw = NULL};
    int stop = 1;
    if (heap_len(&e->seqs) >= e->budget)
        return 1;
    if (msg_decode(&m, store_be64_get((const unsigned char *)k + 9), v, vl) != 0) {
        e->next_due = 0; /* look again next time */
    } else if (m.enqueued_at + e->retention_ms <= e->now) {
        heap_push(&e->seqs, &m.seq);
        stop = 0;
    } else {
        e->next_due = m.enqueued_at + e->retention_ms;
    }
    msg_free(&m);
    return stop;
}

static uint64_t expire_retention(queues_t *qs, queue_t *q, uint64_t now, uint64_t budget)
{
    struct expired e = {.now = now, .retention_ms = q->a.retention * 1000, .budget = budget};
    unsigned char from[KEY_LEN];
    uint64_t seq, n = 0;
    if (q->s.ready + q->s.inflight + q->s.delayed + q->s.retained == 0) {
        q->retain_due = UINT64_MAX; /* the next enqueue sets it */
        return 0;
    }
    if (q->retain_due > now)
        return 0;
    store_key_id_seq(from, 'M', q->id, q->floor);
    heap_init(&e.seqs, sizeof(uint64_t), cmp_u64);
    e.next_due = UINT64_MAX; /* the scan may end without a record left */
    store_scan(qs->st, from, 9, from, KEY_LEN, expired_visit, &e);
    if (heap_len(&e.seqs) == budget)
        e.next_due = 0; /* the budget is spent: the next tick goes on */
    q->retain_due = e.next_due;
    while (heap_pop(&e.seqs, &seq) == 0) {
        struct msg m;
        if (msg_load(qs, q, seq, &m) == 0) {
            msg_drop(qs, q, &m);
            n++;
        }
        msg_free(&m);
    }
    heap_free(&e.seqs);
    return n;
}

static uint64_t expire_deleted(queues_t *qs, queue_t *q, uint64_t now, uint64_t budget)
{
    const struct stamp *top;
    uint64_t n = 0;
    while (n < budget && (top = heap_top(&q->deleted)) &&
           top->at + q->a.rewind_window * 1000 <= now) {
        struct stamp s;
        struct msg m;
        heap_pop(&q->deleted, &s);
        if (msg_load(qs, q, s.seq, &m) == 0 && m.st == MS_DELETED && m.deleted_at == s.at) {
            msg_drop(qs, q, &m);
            n++;
        }
        msg_free(&m);
    }
    return n;
}

static uint64_t expire_dedup(queues_t *qs, queue_t *q, uint64_t now, uint64_t budget)
{
    const struct dedup_ref *top;
    uint64_t n = 0;
    while (n < budget && (top = heap_top(&q->dedup)) && top->at + MQHUB_DEDUP_WINDOW_MS <= now) {
        struct dedup_ref d;
        unsigned char k[9 + ID_MAX_LEN];
        size_t vl;
        heap_pop(&q->dedup, &d);
        k[0] = 'D';
        store_be64_put(k + 1, q->id);
        memcpy(k + 9, d.id, d.len);
        unsigned char *v = store_get(qs->st, k, 9 + d.len, &vl);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (v && msgpack_unpack_next(&u, (char *)v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
            u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 3 &&
            u.data.via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            u.data.via.array.ptr[0].via.u64 == d.at) {
            store_del(qs->st, k, 9 + d.len);
            n++;
        }
        msgpack_unpacked_destroy(&u);
        store_free(v);
        free(d.id);
    }
    return n;
}

/* Remove what has expired in @q, spending *budget, and index it again. */
static void tick_visit(queues_t *qs, queue_t *q, uint64_t now, uint64_t *budget)
{
    *budget -= expire_retention(qs, q, now, *budget);
    *budget -= expire_deleted(qs, q, now, *budget);
    *budget -= expire_dedup(qs, q, now, *budget);
    tick_index_drop(qs, q);
    tick_index_lower(qs, q, tick_due_of(q));
}

/* Visit every queue due by @now in list (id) order and rebuild the index
 * from the queues' tick_due: after a failed push, or to shed stale entries. */
static void tick_walk(queues_t *qs, uint64_t now, uint64_t *budget)
{
    heap_clear(&qs->tick_index);
    qs->tick_walk = false;
    for (queue_t *q = qs->first; q; q = q->next) {
        if (*budget && q->tick_due <= now)
            tick_visit(qs, q, now, budget);
        else if (q->tick_due != UINT64_MAX)
            tick_index_push(qs, q);
    }
}

/* Visit the queues whose entries are due by @now, in id order: a queue
 * not due has nothing to remove, so the budget picks the same records as a
 * walk over all queues would, on every node, whatever early or stale
 * entries a node holds. The queues the budget does not reach stay due. */
static void tick_due_queues(queues_t *qs, uint64_t now, uint64_t *budget)
{
    const struct tick_ref *top;
    queue_t **v = NULL, *q;
    size_t n = 0, cap = 0;
    while ((top = heap_top(&qs->tick_index)) && top->due <= now) {
        struct tick_ref e;
        heap_pop(&qs->tick_index, &e);
        if (!(q = queue_by_id(qs, e.qid)) || q->tick_due != e.due)
            continue; /* stale */
        if (n == cap) {
            queue_t **nv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof(*v));
            if (!nv) {
                free(v); /* the popped queues keep their tick_due: */
                tick_walk(qs, now, budget); /* the walk finds them */
                return;
            }
            v = nv;
        }
        v[n++] = q;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_queue_id);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && v[i] == v[i - 1])
            continue; /* two entries with the same due */
        if (*budget)
            tick_visit(qs, v[i], now, budget);
        else
            tick_index_push(qs, v[i]);
    }
    free(v);
}

int queue_op_tick(cmd_t *c)
{
    queues_t *qs = c->qs;
    uint64_t budget = TICK_BUDGET;
    /* Stale entries outnumber the queues: shed them with a walk, O(queues)
     * after at least as many pushes. */
    if (heap_len(&qs->tick_index) > 2 * hmap_len(&qs->by_id) + TICK_INDEX_SLACK)
        qs->tick_walk = true;
    if (qs->tick_walk)
        tick_walk(qs, c->now, &budget);
    else
        tick_due_queues(qs, c->now, &budget);
    qs->tick_more = budget == 0;
    reclaim_tick(qs);
    return 0;
}
