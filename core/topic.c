/* topic.c: topics and subscriptions — PROTOCOL.md "Topics", called by fsm.c
 * only (handlers topic_op_*), plus the read side of push delivery
 * (topic_push_*, behind fsm_push_* in internal.h).
 *
 * A publish appends to the topic's retained log and, in the same apply, fans
 * out to every subscription whose filter matches, in name order: a queue
 * endpoint gets a message appended to its queue that refers to the retained
 * message's body (queue_append_ref; see "Shared bodies" below), a push
 * endpoint gets a pending entry (sub, seq) that the leader's push engine
 * delivers and that `ack` or `sub.dead` removes. A failed delivery (queue
 * full or gone, script error) is counted in the subscription's stats, never
 * dropped silently, and never fails the publish.
 *
 * State in the store (docs/architecture.md "Key layout"):
 *   #tid, #sid                next topic id, next subscription id (u64be)
 *   T<name>                   topic record (topic_save)
 *   P<tid be64><seq be64>     retained message [msg_id, published_at, tags,
 *                             key, attrs, body]
 *   S<tid be64><name>         subscription record (sub_save): id, its
 *                             canonical config (bin), stats
 *   W<sid be64><seq be64>     a pending message of a push subscription
 *   R<tid be64><seq be64>     shared body: how many queue messages refer to
 *                             the body of topic message seq (u64be)
 *   G<tid be64><seq be64>     that body once P<tid><seq> is gone (retention
 *                             expiry, topic.delete) while references remain
 * Shared bodies: queue messages fanned out from a publish store no body of
 * their own; the publish adds its count of them to R once. Dropping a P
 * record that R still counts first copies its body to G (body_keep);
 * queue.c reads it with topic_body_get() and gives each reference back with
 * topic_body_release(), the last one removing R and G.
 * In memory: topics in id order (tick picks the same work on every node) with
 * their subscriptions in name order, hash maps for lookups only.
 *
 * Start reading at topic_op_publish(). To add a filter kind: a field in the
 * config (config_pack/sub_bind) and a clause in sub_match(). Scripts
 * (script.c) come in through ts->hooks: filter scripts in sub_match(), the
 * gate (blocks and hooks) before a client publish is accepted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "internal.h"

#define META_TID "#tid"
#define META_SID "#sid"
#define TAGS_MAX 5
#define TAG_MAX_LEN 64
#define KEY_MAX_LEN 255
#define KEY_MAX_WORDS 128     /* 255 bytes hold at most 128 words */
#define FILTER_MAX 32         /* entries of filter_tags / binding_keys */
#define BATCH_MAX 256
#define TICK_BUDGET 10000     /* expired messages per tick */
#define KEY_LEN 17            /* prefix + id + seq */

/* Indexes into the canonical subscription config (config_pack). */
enum { CF_QUEUE, CF_TAGS, CF_BINDINGS, CF_SCRIPT, CF_EXP, CF_ATTEMPTS, CF_INTERVAL,
       CF_MAX_INTERVAL, CF_DLQ, CF_FROM, CF_FROM_TIME, CF_SKIP_ON_ERROR, CF_N };
enum { FROM_LATEST, FROM_EARLIEST, FROM_TIME };

struct tattrs { uint64_t max_msg_size, retention; };

static const struct tattrs tattrs_default = {.max_msg_size = 65536, .retention = 86400};

struct sstats {
    uint64_t matched_total, failed_total, pending, acked_total, dead_lettered_total,
        dropped_total, expired_total, last_at;
    char last_code[24];  /* "" when no failure yet */
    char last_error[320];
};

typedef struct topic topic_t;

typedef struct sub {
    char name[FSM_NAME_MAX + 1];
    size_t nlen;
    uint64_t id;
    topic_t *t;
    char *cfg;                 /* canonical config, owned */
    size_t cfg_len;
    msgpack_unpacked cu;       /* cfg decoded; cf points into it */
    const msgpack_object *cf;  /* CF_N items */
    struct sstats s;
    bool dirty, woke;
    struct sub *next;          /* name order */
    struct sub *dirty_next;
} sub_t;

struct topic {
    char name[FSM_NAME_MAX + 1];
    size_t nlen;
    uint64_t id, next_seq, first_seq, retained, published_total;
    uint64_t first_at;         /* published_at of first_seq (memory only) */
    struct tattrs a;
    sub_t *subs;
    bool dirty;
    topic_t *next;             /* id order */
    topic_t *dirty_next;
};

struct topics {
    store_t *st;
    queues_t *qs;
    hmap_t by_name;
    topic_t *first;
    topic_t *dirty;
    sub_t *dirty_subs;
    uint64_t next_tid, next_sid, now;
    bool failed, tick_more;
    bool ungated;              /* publishing a hook's hub.publish */
    uint64_t refs;             /* queue references made by the current offer */
    fsm_push_cb cb;
    void *cb_arg;
    topic_script_hooks_t hooks;
};

/* A retained message loaded from the store; m's pointers live in u / raw. */
struct tmsg {
    fsm_push_msg_t m;
    msgpack_unpacked u;
    char *raw;
};

static const msgpack_object nil_obj = {.type = MSGPACK_OBJECT_NIL};

/* ---- small helpers ---- */

static void tput(topics_t *ts, const void *k, size_t kl, const void *v, size_t vl)
{
    if (store_put(ts->st, k, kl, v, vl) != 0)
        ts->failed = true;
}

static void put_meta(topics_t *ts, const char *key, uint64_t v)
{
    unsigned char be[8];
    fsm_put_be64(be, v);
    tput(ts, key, strlen(key), be, 8);
}

static uint64_t get_meta(topics_t *ts, const char *key)
{
    size_t vl;
    unsigned char *v = store_get(ts->st, key, strlen(key), &vl);
    uint64_t x = v && vl == 8 ? fsm_get_be64(v) : 1;
    store_free(v);
    return x;
}

static void pack_bool(msgpack_packer *pk, bool b)
{
    if (b)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static bool str_eq(const msgpack_object *o, const char *s, size_t len)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == len &&
           memcmp(o->via.str.ptr, s, len) == 0;
}

/* ---- routing keys ---- */

struct words {
    const char *w[KEY_MAX_WORDS];
    size_t len[KEY_MAX_WORDS];
    unsigned n;
};

/* Split @s at dots; "" has no words. False when it is too long. */
static bool split_words(const char *s, size_t len, struct words *out)
{
    size_t start = 0;
    out->n = 0;
    if (len > KEY_MAX_LEN)
        return false;
    if (len == 0)
        return true;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            out->w[out->n] = s + start;
            out->len[out->n++] = i - start;
            start = i + 1;
        }
    }
    return true;
}

static bool word_is(const struct words *w, unsigned i, char ch)
{
    return w->len[i] == 1 && w->w[i][0] == ch;
}

/* Glob matching over words: "#" is the star (backtracking to the last one
 * seen is enough, as for '*' in file globs), "*" any one word. */
bool topic_key_match(const char *binding, size_t bl, const char *key, size_t kl)
{
    struct words p, k;
    unsigned pi = 0, ki = 0, star = 0, mark = 0;
    bool have_star = false;
    if (!split_words(binding, bl, &p) || !split_words(key, kl, &k))
        return false;
    while (ki < k.n) {
        if (pi < p.n && word_is(&p, pi, '#')) {
            have_star = true;
            star = pi++;
            mark = ki;
        } else if (pi < p.n && (word_is(&p, pi, '*') ||
                                (p.len[pi] == k.len[ki] && memcmp(p.w[pi], k.w[ki], p.len[pi]) == 0))) {
            pi++;
            ki++;
        } else if (have_star) {
            pi = star + 1;
            ki = ++mark;
        } else {
            return false;
        }
    }
    while (pi < p.n && word_is(&p, pi, '#'))
        pi++;
    return pi == p.n;
}

/* ---- records ---- */

static void trec_key(unsigned char *k, const topic_t *t)
{
    k[0] = 'T';
    memcpy(k + 1, t->name, t->nlen);
}

static void topic_save(topics_t *ts, topic_t *t)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char k[1 + FSM_NAME_MAX];
    uint64_t nums[] = {t->id, t->next_seq, t->first_seq, t->a.max_msg_size, t->a.retention,
                       t->retained, t->published_total};
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 7);
    for (size_t i = 0; i < 7; i++)
        msgpack_pack_uint64(&pk, nums[i]);
    trec_key(k, t);
    tput(ts, k, 1 + t->nlen, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static int topic_decode(topic_t *t, const char *v, size_t vl)
{
    msgpack_unpacked u;
    uint64_t nums[7];
    int rc = MQHUB_EINTERNAL;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, v, vl, NULL) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_ARRAY || u.data.via.array.size != 7)
        goto out;
    for (int i = 0; i < 7; i++) {
        if (u.data.via.array.ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            goto out;
        nums[i] = u.data.via.array.ptr[i].via.u64;
    }
    t->id = nums[0], t->next_seq = nums[1], t->first_seq = nums[2];
    t->a = (struct tattrs){nums[3], nums[4]};
    t->retained = nums[5], t->published_total = nums[6];
    rc = 0;
out:
    msgpack_unpacked_destroy(&u);
    return rc;
}

static void sub_save(topics_t *ts, sub_t *s)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char k[9 + FSM_NAME_MAX];
    const struct sstats *x = &s->s;
    uint64_t nums[] = {x->matched_total, x->failed_total, x->pending, x->acked_total,
                       x->dead_lettered_total, x->dropped_total, x->expired_total, x->last_at};
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 12);
    msgpack_pack_uint64(&pk, s->id);
    msgpack_pack_bin(&pk, s->cfg_len);
    msgpack_pack_bin_body(&pk, s->cfg, s->cfg_len);
    for (size_t i = 0; i < 8; i++)
        msgpack_pack_uint64(&pk, nums[i]);
    fsm_pack_str(&pk, x->last_code, strlen(x->last_code));
    fsm_pack_str(&pk, x->last_error, strlen(x->last_error));
    k[0] = 'S';
    fsm_put_be64(k + 1, s->t->id);
    memcpy(k + 9, s->name, s->nlen);
    tput(ts, k, 9 + s->nlen, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Take ownership of @cfg (malloc'ed) and point s->cf into it. */
static int sub_bind(sub_t *s, char *cfg, size_t len)
{
    s->cfg = cfg;
    s->cfg_len = len;
    msgpack_unpacked_init(&s->cu);
    if (msgpack_unpack_next(&s->cu, cfg, len, NULL) != MSGPACK_UNPACK_SUCCESS ||
        s->cu.data.type != MSGPACK_OBJECT_ARRAY || s->cu.data.via.array.size != CF_N)
        return MQHUB_EINTERNAL;
    s->cf = s->cu.data.via.array.ptr;
    return 0;
}

static void copy_str(char *dst, size_t cap, const msgpack_object *o)
{
    size_t n = o->type == MSGPACK_OBJECT_STR ? o->via.str.size : 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, n ? o->via.str.ptr : "", n);
    dst[n] = 0;
}

static int sub_decode(sub_t *s, const char *v, size_t vl)
{
    msgpack_unpacked u;
    uint64_t nums[8];
    int rc = MQHUB_EINTERNAL;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, v, vl, NULL) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_ARRAY || u.data.via.array.size != 12)
        goto out;
    const msgpack_object *o = u.data.via.array.ptr;
    for (int i = 0; i < 8; i++) {
        if (o[2 + i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            goto out;
        nums[i] = o[2 + i].via.u64;
    }
    if (o[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || o[1].type != MSGPACK_OBJECT_BIN)
        goto out;
    char *cfg = malloc(o[1].via.bin.size ? o[1].via.bin.size : 1);
    if (!cfg)
        goto out;
    memcpy(cfg, o[1].via.bin.ptr, o[1].via.bin.size);
    s->id = o[0].via.u64;
    s->s = (struct sstats){nums[0], nums[1], nums[2], nums[3], nums[4], nums[5], nums[6],
                           nums[7], "", ""};
    copy_str(s->s.last_code, sizeof(s->s.last_code), &o[10]);
    copy_str(s->s.last_error, sizeof(s->s.last_error), &o[11]);
    rc = sub_bind(s, cfg, o[1].via.bin.size);
out:
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* Retained message record: [msg_id, published_at, tags, key, attrs, body]. */
static int tmsg_load(topics_t *ts, const topic_t *t, uint64_t seq, struct tmsg *tm)
{
    unsigned char k[KEY_LEN];
    size_t vl;
    const msgpack_object *o;
    msgpack_unpacked_init(&tm->u);
    fsm_key_id_seq(k, 'P', t->id, seq);
    if (!(tm->raw = store_get(ts->st, k, KEY_LEN, &vl)))
        return MQHUB_ENOT_FOUND;
    if (msgpack_unpack_next(&tm->u, tm->raw, vl, NULL) != MSGPACK_UNPACK_SUCCESS ||
        tm->u.data.type != MSGPACK_OBJECT_ARRAY || tm->u.data.via.array.size != 6)
        goto bad;
    o = tm->u.data.via.array.ptr;
    if (o[0].type != MSGPACK_OBJECT_STR || o[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o[5].type != MSGPACK_OBJECT_BIN)
        goto bad;
    tm->m = (fsm_push_msg_t){seq, o[0].via.str.ptr, o[0].via.str.size, o[5].via.bin.ptr,
                             o[5].via.bin.size, &o[2], &o[3], &o[4], o[1].via.u64,
                             t->name, t->nlen};
    return 0;
bad:
    log_error("topic", "corrupt message record (topic %s, seq %llu)", t->name,
              (unsigned long long)seq);
    return MQHUB_EINTERNAL;
}

static void tmsg_free(struct tmsg *tm)
{
    msgpack_unpacked_destroy(&tm->u);
    store_free(tm->raw);
    tm->raw = NULL;
}

/* ---- shared bodies ---- */

struct seqs {
    uint64_t *v;
    size_t n, cap;
    uint64_t time; /* only messages published at or after it */
};

/* Append the seq of message key @k (T/P<id be64><seq be64>); 1 when out of
 * memory, which stops the store_scan visiting. */
static int seqs_push(struct seqs *s, const char *k)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint64_t *nv = realloc(s->v, cap * sizeof(*nv));
        if (!nv)
            return 1;
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = fsm_get_be64((const unsigned char *)k + 9);
    return 0;
}

void *topic_body_get(store_t *st, uint64_t tid, uint64_t seq, size_t *len)
{
    unsigned char k[KEY_LEN];
    msgpack_unpacked u;
    size_t vl;
    char *raw;
    fsm_key_id_seq(k, 'P', tid, seq);
    if (!(raw = store_get(st, k, KEY_LEN, &vl))) {
        fsm_key_id_seq(k, 'G', tid, seq);
        return store_get(st, k, KEY_LEN, len);
    }
    msgpack_unpacked_init(&u);
    *len = 0;
    if (msgpack_unpack_next(&u, raw, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 6 &&
        u.data.via.array.ptr[5].type == MSGPACK_OBJECT_BIN) {
        *len = u.data.via.array.ptr[5].via.bin.size;
        memmove(raw, u.data.via.array.ptr[5].via.bin.ptr, *len);
    }
    msgpack_unpacked_destroy(&u);
    return raw;
}

/* The reference count of topic message @seq (0: none). */
static uint64_t body_refs(store_t *st, uint64_t tid, uint64_t seq)
{
    unsigned char k[KEY_LEN];
    size_t vl;
    unsigned char *v;
    uint64_t n = 0;
    fsm_key_id_seq(k, 'R', tid, seq);
    if ((v = store_get(st, k, KEY_LEN, &vl)) && vl == 8)
        n = fsm_get_be64(v);
    store_free(v);
    return n;
}

static int body_set_refs(store_t *st, uint64_t tid, uint64_t seq, uint64_t n)
{
    unsigned char k[KEY_LEN], be[8];
    fsm_key_id_seq(k, 'R', tid, seq);
    if (n) {
        fsm_put_be64(be, n);
        return store_put(st, k, KEY_LEN, be, 8);
    }
    store_del(st, k, KEY_LEN);
    fsm_key_id_seq(k, 'G', tid, seq);
    store_del(st, k, KEY_LEN);
    return 0;
}

int topic_body_release(store_t *st, uint64_t tid, uint64_t seq)
{
    uint64_t n = body_refs(st, tid, seq);
    return n ? body_set_refs(st, tid, seq, n - 1) : 0;
}

/* Add the references the last offer made to topic message @seq. */
static void refs_flush(topics_t *ts, const topic_t *t, uint64_t seq)
{
    if (ts->refs && body_set_refs(ts->st, t->id, seq, body_refs(ts->st, t->id, seq) + ts->refs))
        ts->failed = true;
    ts->refs = 0;
}

/* P<tid><seq> is about to go: keep its body in G while references remain. */
static void body_keep(topics_t *ts, uint64_t tid, uint64_t seq)
{
    unsigned char k[KEY_LEN];
    size_t len;
    char *body;
    if (!body_refs(ts->st, tid, seq) || !(body = topic_body_get(ts->st, tid, seq, &len)))
        return;
    fsm_key_id_seq(k, 'G', tid, seq);
    tput(ts, k, KEY_LEN, body, len);
    store_free(body);
}

static void tmsg_save(topics_t *ts, const topic_t *t, const fsm_push_msg_t *m)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char k[KEY_LEN];
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 6);
    fsm_pack_str(&pk, m->msg_id, m->msg_id_len);
    msgpack_pack_uint64(&pk, m->published_at);
    msgpack_pack_object(&pk, *m->tags);
    msgpack_pack_object(&pk, *m->key);
    msgpack_pack_object(&pk, *m->attrs);
    msgpack_pack_bin(&pk, m->body_len);
    msgpack_pack_bin_body(&pk, m->body, m->body_len);
    fsm_key_id_seq(k, 'P', t->id, m->seq);
    tput(ts, k, KEY_LEN, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- in-memory objects ---- */

static void mark_topic(topics_t *ts, topic_t *t)
{
    if (!t->dirty) {
        t->dirty = true;
        t->dirty_next = ts->dirty;
        ts->dirty = t;
    }
}

static void mark_sub(topics_t *ts, sub_t *s)
{
    if (!s->dirty) {
        s->dirty = true;
        s->dirty_next = ts->dirty_subs;
        ts->dirty_subs = s;
    }
}

static void sub_destroy(sub_t *s)
{
    if (s->cfg)
        msgpack_unpacked_destroy(&s->cu);
    free(s->cfg);
    free(s);
}

static void sub_unlink(topics_t *ts, sub_t *s)
{
    for (sub_t **pp = &s->t->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    for (sub_t **pp = &ts->dirty_subs; *pp; pp = &(*pp)->dirty_next) {
        if (*pp == s) {
            *pp = s->dirty_next;
            break;
        }
    }
}

/* Insert @s in its topic's name-ordered list. */
static void sub_link(sub_t *s)
{
    sub_t **pp = &s->t->subs;
    while (*pp) {
        size_t n = (*pp)->nlen < s->nlen ? (*pp)->nlen : s->nlen;
        int cmp = memcmp((*pp)->name, s->name, n);
        if (cmp > 0 || (cmp == 0 && (*pp)->nlen > s->nlen))
            break;
        pp = &(*pp)->next;
    }
    s->next = *pp;
    *pp = s;
}

static sub_t *sub_find(const topic_t *t, const char *name, size_t len)
{
    for (sub_t *s = t->subs; s; s = s->next) {
        if (s->nlen == len && memcmp(s->name, name, len) == 0)
            return s;
    }
    return NULL;
}

static bool sub_is_push(const sub_t *s)
{
    return s->cf[CF_QUEUE].type == MSGPACK_OBJECT_NIL;
}

static topic_t *topic_find(topics_t *ts, const char *name, size_t len)
{
    return hmap_get(&ts->by_name, name, len);
}

static int topic_link(topics_t *ts, topic_t *t)
{
    topic_t **pp = &ts->first;
    if (hmap_put(&ts->by_name, t->name, t->nlen, t) != 0)
        return MQHUB_EINTERNAL;
    while (*pp && (*pp)->id < t->id)
        pp = &(*pp)->next;
    t->next = *pp;
    *pp = t;
    return 0;
}

static void topic_destroy(topics_t *ts, topic_t *t)
{
    while (t->subs) {
        sub_t *s = t->subs;
        sub_unlink(ts, s);
        sub_destroy(s);
    }
    hmap_del(&ts->by_name, t->name, t->nlen);
    for (topic_t **pp = &ts->first; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    for (topic_t **pp = &ts->dirty; *pp; pp = &(*pp)->dirty_next) {
        if (*pp == t) {
            *pp = t->dirty_next;
            break;
        }
    }
    free(t);
}

static topic_t *topic_alloc(const char *name, size_t len)
{
    topic_t *t = calloc(1, sizeof(*t));
    if (t) {
        memcpy(t->name, name, len);
        t->nlen = len;
    }
    return t;
}

/* Remember when the first retained message was published (expiry due). */
static void topic_load_first_at(topics_t *ts, topic_t *t)
{
    struct tmsg tm;
    t->first_at = 0;
    if (!t->retained)
        return;
    if (tmsg_load(ts, t, t->first_seq, &tm) == 0)
        t->first_at = tm.m.published_at;
    tmsg_free(&tm);
}

/* ---- lifecycle ---- */

int topic_state_new(topics_t **out, store_t *st, queues_t *qs)
{
    topics_t *ts = calloc(1, sizeof(*ts));
    if (!ts)
        return MQHUB_EINTERNAL;
    ts->st = st;
    ts->qs = qs;
    ts->next_tid = ts->next_sid = 1;
    hmap_init(&ts->by_name);
    *out = ts;
    return 0;
}

static void free_all_topics(topics_t *ts)
{
    while (ts->first)
        topic_destroy(ts, ts->first);
    hmap_free(&ts->by_name);
    hmap_init(&ts->by_name);
}

void topic_state_free(topics_t *ts)
{
    if (!ts)
        return;
    free_all_topics(ts);
    hmap_free(&ts->by_name);
    free(ts);
}

void topic_set_push_cb(topics_t *ts, fsm_push_cb cb, void *arg)
{
    ts->cb = cb;
    ts->cb_arg = arg;
}

void topic_set_script_hooks(topics_t *ts, const topic_script_hooks_t *h)
{
    ts->hooks = h ? *h : (topic_script_hooks_t){0};
}

struct rebuild {
    topics_t *ts;
    topic_t *t;
    int rc;
};

static int rebuild_topic(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct rebuild *r = arg;
    topic_t *t = kl - 1 <= FSM_NAME_MAX ? topic_alloc(k + 1, kl - 1) : NULL;
    if (!t || topic_decode(t, v, vl) != 0 || topic_link(r->ts, t) != 0) {
        free(t);
        r->rc = MQHUB_EINTERNAL;
        return 1;
    }
    return 0;
}

static int rebuild_sub(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct rebuild *r = arg;
    sub_t *s = kl - 9 <= FSM_NAME_MAX ? calloc(1, sizeof(*s)) : NULL;
    if (!s || sub_decode(s, v, vl) != 0) {
        if (s)
            sub_destroy(s);
        r->rc = MQHUB_EINTERNAL;
        return 1;
    }
    memcpy(s->name, k + 9, kl - 9);
    s->nlen = kl - 9;
    s->t = r->t;
    sub_link(s);
    return 0;
}

int topic_rebuild(topics_t *ts)
{
    struct rebuild r = {ts, NULL, 0};
    free_all_topics(ts);
    ts->dirty_subs = NULL;
    ts->next_tid = get_meta(ts, META_TID);
    ts->next_sid = get_meta(ts, META_SID);
    store_scan(ts->st, "T", 1, NULL, 0, rebuild_topic, &r);
    for (topic_t *t = ts->first; t && r.rc == 0; t = t->next) {
        unsigned char p[9];
        p[0] = 'S';
        fsm_put_be64(p + 1, t->id);
        r.t = t;
        store_scan(ts->st, p, 9, NULL, 0, rebuild_sub, &r);
        topic_load_first_at(ts, t);
    }
    return r.rc;
}

void topic_begin(topics_t *ts, uint64_t now)
{
    ts->now = now;
    ts->failed = false;
}

int topic_end(topics_t *ts)
{
    while (ts->dirty) {
        topic_t *t = ts->dirty;
        ts->dirty = t->dirty_next;
        t->dirty = false;
        topic_save(ts, t);
    }
    while (ts->dirty_subs) {
        sub_t *s = ts->dirty_subs;
        ts->dirty_subs = s->dirty_next;
        s->dirty = false;
        sub_save(ts, s);
        if (s->woke && ts->cb)
            ts->cb(ts->cb_arg, s->t->name, s->t->nlen, s->name, s->nlen);
        s->woke = false;
    }
    return ts->failed ? MQHUB_EINTERNAL : 0;
}

uint64_t topic_next_due(topics_t *ts, uint64_t now)
{
    uint64_t due = UINT64_MAX;
    if (ts->tick_more)
        return now;
    for (topic_t *t = ts->first; t; t = t->next) {
        uint64_t d = t->first_at + t->a.retention * 1000;
        if (t->retained && d < due)
            due = d;
    }
    return due;
}

/* ---- fan-out ---- */

static void sub_failed(topics_t *ts, sub_t *s, int code, const char *err)
{
    const char *name = mqhub_err_name(code);
    s->s.failed_total++;
    snprintf(s->s.last_code, sizeof(s->s.last_code), "%s", name);
    snprintf(s->s.last_error, sizeof(s->s.last_error), "%s", err);
    s->s.last_at = ts->now;
    mark_sub(ts, s);
}

static bool tags_intersect(const msgpack_object *filter, const msgpack_object *tags)
{
    if (tags->type != MSGPACK_OBJECT_ARRAY)
        return false;
    for (uint32_t i = 0; i < filter->via.array.size; i++) {
        const msgpack_object *f = &filter->via.array.ptr[i];
        for (uint32_t j = 0; j < tags->via.array.size; j++) {
            if (str_eq(&tags->via.array.ptr[j], f->via.str.ptr, f->via.str.size))
                return true;
        }
    }
    return false;
}

static bool key_matches(const msgpack_object *bindings, const msgpack_object *key)
{
    if (key->type != MSGPACK_OBJECT_STR)
        return false;
    for (uint32_t i = 0; i < bindings->via.array.size; i++) {
        const msgpack_object *b = &bindings->via.array.ptr[i];
        if (topic_key_match(b->via.str.ptr, b->via.str.size, key->via.str.ptr, key->via.str.size))
            return true;
    }
    return false;
}

/* Every filter the subscription has must match (tags AND bindings AND
 * script). 0 with *match, or a code with the sentence in @err. */
static int sub_match(topics_t *ts, const sub_t *s, const fsm_push_msg_t *m, bool *match,
                     char *err, size_t errlen)
{
    const msgpack_object *tags = &s->cf[CF_TAGS], *binds = &s->cf[CF_BINDINGS];
    const msgpack_object *script = &s->cf[CF_SCRIPT];
    *match = (tags->via.array.size == 0 || tags_intersect(tags, m->tags)) &&
             (binds->via.array.size == 0 || key_matches(binds, m->key));
    if (!*match || script->type != MSGPACK_OBJECT_STR)
        return 0;
    if (!ts->hooks.filter) {
        snprintf(err, errlen, "script '%.*s' does not exist (load it with script.load)",
                 (int)script->via.str.size, script->via.str.ptr);
        return MQHUB_ENOT_FOUND;
    }
    return ts->hooks.filter(ts->hooks.arg, script->via.str.ptr, script->via.str.size, m, match,
                            err, errlen);
}

static void pending_key(unsigned char k[KEY_LEN], const sub_t *s, uint64_t seq)
{
    fsm_key_id_seq(k, 'W', s->id, seq);
}

static bool pending_has(topics_t *ts, const sub_t *s, uint64_t seq)
{
    unsigned char k[KEY_LEN];
    size_t vl;
    pending_key(k, s, seq);
    void *v = store_get(ts->st, k, KEY_LEN, &vl);
    store_free(v);
    return v != NULL;
}

/* Remove a pending entry; true when it was there. */
static bool pending_del(topics_t *ts, sub_t *s, uint64_t seq)
{
    unsigned char k[KEY_LEN];
    pending_key(k, s, seq);
    if (store_del(ts->st, k, KEY_LEN) != 0)
        return false;
    s->s.pending--;
    mark_sub(ts, s);
    return true;
}

/* Hand @m to @s's endpoint (the filter already matched). */
static void deliver(topics_t *ts, fsm_cmd_t *c, sub_t *s, const fsm_push_msg_t *m)
{
    const msgpack_object *q = &s->cf[CF_QUEUE];
    char msg_id[64];
    unsigned char k[KEY_LEN];
    int rc;
    if (!sub_is_push(s)) {
        snprintf(msg_id, sizeof(msg_id), "%.*s", (int)m->msg_id_len, m->msg_id);
        rc = queue_append_ref(ts->qs, c, q->via.str.ptr, q->via.str.size, msg_id, m->body_len,
                              m->tags, m->attrs, s->t->id, m->seq);
        if (rc)
            sub_failed(ts, s, rc, c->err);
        else
            ts->refs++;
        return;
    }
    if (pending_has(ts, s, m->seq))
        return;
    pending_key(k, s, m->seq);
    tput(ts, k, KEY_LEN, "", 0);
    s->s.pending++;
    s->woke = true;
    mark_sub(ts, s);
}

/* Match and deliver; true when it matched. */
static bool offer(topics_t *ts, fsm_cmd_t *c, sub_t *s, const fsm_push_msg_t *m)
{
    char err[320];
    bool match = false;
    int rc = sub_match(ts, s, m, &match, err, sizeof(err));
    if (rc) {
        /* A failed filter script counts as a failure; filter_fallback
         * decides whether the message is delivered all the same. */
        sub_failed(ts, s, rc, err);
        if (s->cf[CF_SKIP_ON_ERROR].via.boolean)
            return false;
        match = true;
    }
    if (match)
        deliver(ts, c, s, m);
    return match;
}

/* ---- topic ops ---- */

static int arg_topic(topics_t *ts, fsm_cmd_t *c, const char *key, topic_t **out)
{
    const char *name;
    size_t len;
    int rc = fsm_arg_name(c, c->req, key, &name, &len);
    if (rc)
        return rc;
    if (!(*out = topic_find(ts, name, len)))
        return fsm_fail(c, MQHUB_ENOT_FOUND,
                        "topic '%.*s' does not exist; create it with topic.create", (int)len, name);
    return 0;
}

static int arg_sub(topics_t *ts, fsm_cmd_t *c, const char *key, topic_t **tp, sub_t **out)
{
    const char *name;
    size_t len;
    int rc = arg_topic(ts, c, "topic", tp);
    if (rc || (rc = fsm_arg_name(c, c->req, key, &name, &len)))
        return rc;
    if (!(*out = sub_find(*tp, name, len)))
        return fsm_fail(c, MQHUB_ENOT_FOUND,
                        "subscription '%.*s' of topic '%s' does not exist; create it with "
                        "subscription.create", (int)len, name, (*tp)->name);
    return 0;
}

static int tattrs_parse(fsm_cmd_t *c, struct tattrs *a, bool is_set)
{
    const msgpack_object *m = fsm_arg(c->req, "attrs");
    int rc;
    if (!m || m->type == MSGPACK_OBJECT_NIL)
        return is_set ? fsm_fail(c, MQHUB_EBAD_REQUEST, "field 'attrs' is required (a map)") : 0;
    if (m->type != MSGPACK_OBJECT_MAP)
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field 'attrs' must be a map");
    if ((rc = fsm_arg_uint(c, m, "max_msg_size", 1024, 1048576, &a->max_msg_size)) ||
        (rc = fsm_arg_uint(c, m, "retention", 60, 1296000, &a->retention)))
        return rc;
    return 0;
}

int topic_op_create(topics_t *ts, fsm_cmd_t *c)
{
    const char *name;
    size_t len;
    struct tattrs a = tattrs_default;
    int rc;
    if ((rc = fsm_arg_name(c, c->req, "name", &name, &len)) || (rc = tattrs_parse(c, &a, false)))
        return rc;
    topic_t *t = topic_find(ts, name, len);
    if (t)
        return memcmp(&t->a, &a, sizeof(a)) == 0
                   ? 0
                   : fsm_fail(c, MQHUB_EEXISTS,
                              "topic '%.*s' exists with other attributes; use topic.set to "
                              "change them", (int)len, name);
    if (!(t = topic_alloc(name, len)))
        return fsm_fail(c, MQHUB_EINTERNAL, "out of memory");
    t->id = ts->next_tid++;
    t->next_seq = t->first_seq = 1;
    t->a = a;
    if (topic_link(ts, t) != 0) {
        free(t);
        return fsm_fail(c, MQHUB_EINTERNAL, "out of memory");
    }
    put_meta(ts, META_TID, ts->next_tid);
    mark_topic(ts, t);
    return 0;
}

static void sub_del_records(topics_t *ts, const sub_t *s)
{
    unsigned char p[9 + FSM_NAME_MAX];
    p[0] = 'W';
    fsm_put_be64(p + 1, s->id);
    store_del_prefix(ts->st, p, 9);
    p[0] = 'S';
    fsm_put_be64(p + 1, s->t->id);
    memcpy(p + 9, s->name, s->nlen);
    store_del(ts->st, p, 9 + s->nlen);
}

static int collect_ref_seq(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct seqs *s = arg;
    (void)v, (void)vl;
    if (kl != KEY_LEN)
        return 0;
    return seqs_push(s, k);
}

/* Before the retained log goes: keep every body queue messages refer to. */
static void keep_shared(topics_t *ts, const topic_t *t)
{
    struct seqs list = {0};
    unsigned char p[9];
    p[0] = 'R';
    fsm_put_be64(p + 1, t->id);
    if (store_scan(ts->st, p, 9, NULL, 0, collect_ref_seq, &list) != 0)
        ts->failed = true;
    for (size_t i = 0; i < list.n; i++)
        body_keep(ts, t->id, list.v[i]);
    free(list.v);
}

int topic_op_delete(topics_t *ts, fsm_cmd_t *c)
{
    topic_t *t;
    unsigned char k[1 + FSM_NAME_MAX];
    int rc = arg_topic(ts, c, "name", &t);
    if (rc)
        return rc;
    for (sub_t *s = t->subs; s; s = s->next)
        sub_del_records(ts, s);
    keep_shared(ts, t);
    k[0] = 'P';
    fsm_put_be64(k + 1, t->id);
    store_del_prefix(ts->st, k, 9);
    trec_key(k, t);
    store_del(ts->st, k, 1 + t->nlen);
    topic_destroy(ts, t);
    return 0;
}

int topic_op_set(topics_t *ts, fsm_cmd_t *c)
{
    topic_t *t;
    struct tattrs a;
    int rc = arg_topic(ts, c, "name", &t);
    if (rc)
        return rc;
    a = t->a;
    if ((rc = tattrs_parse(c, &a, true)))
        return rc;
    t->a = a;
    mark_topic(ts, t);
    return 0;
}

static void pack_names(msgpack_packer *pk, const topic_t *t)
{
    uint32_t n = 0;
    for (const sub_t *s = t->subs; s; s = s->next)
        n++;
    msgpack_pack_array(pk, n);
    for (const sub_t *s = t->subs; s; s = s->next)
        fsm_pack_str(pk, s->name, s->nlen);
}

int topic_op_get(topics_t *ts, fsm_cmd_t *c)
{
    topic_t *t;
    int rc = arg_topic(ts, c, "name", &t);
    if (rc || !c->pk)
        return rc;
    fsm_reply_key(c, "name");
    fsm_pack_str(c->pk, t->name, t->nlen);
    const char *hook = ts->hooks.hook_name ? ts->hooks.hook_name(ts->hooks.arg, false, t->name,
                                                                 t->nlen) : NULL;
    fsm_reply_key(c, "attrs");
    msgpack_pack_map(c->pk, hook ? 3 : 2);
    if (hook)
        fsm_pack_kv_str(c->pk, "hook", hook, strlen(hook));
    fsm_pack_kv_uint(c->pk, "max_msg_size", t->a.max_msg_size);
    fsm_pack_kv_uint(c->pk, "retention", t->a.retention);
    fsm_reply_key(c, "stats");
    msgpack_pack_map(c->pk, 4);
    fsm_pack_kv_uint(c->pk, "retained", t->retained);
    fsm_pack_kv_uint(c->pk, "published_total", t->published_total);
    fsm_pack_kv_uint(c->pk, "first_seq", t->first_seq);
    fsm_pack_kv_uint(c->pk, "last_seq", t->next_seq - 1);
    fsm_reply_key(c, "subscriptions");
    pack_names(c->pk, t);
    return 0;
}

int topic_op_list(topics_t *ts, fsm_cmd_t *c)
{
    return fsm_list_names(c, ts->st, 'T', "topics");
}

/* ---- publish ---- */

struct published {
    char msg_id[48];
    uint64_t seq, delivered;
};

/* An optional array of 0..@max strings of @minlen..@maxlen bytes; *out NIL
 * when absent. */
static int arg_str_array(fsm_cmd_t *c, const msgpack_object *map, const char *key,
                         uint32_t max, size_t minlen, size_t maxlen, const msgpack_object **out)
{
    const msgpack_object *v = fsm_arg(map, key);
    *out = &nil_obj;
    if (!v || v->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be an array of strings", key);
    if (v->via.array.size > max)
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field '%s' holds %u entries, at most %u allowed",
                        key, v->via.array.size, max);
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        const msgpack_object *s = &v->via.array.ptr[i];
        if (s->type != MSGPACK_OBJECT_STR || s->via.str.size < minlen || s->via.str.size > maxlen)
            return fsm_fail(c, MQHUB_EBAD_REQUEST, "field '%s': each entry must be a string of "
                            "%zu-%zu bytes", key, minlen, maxlen);
    }
    *out = v;
    return 0;
}

static int publish_one(topics_t *ts, topic_t *t, fsm_cmd_t *c, const msgpack_object *mm,
                       struct published *out)
{
    const msgpack_object *body = fsm_arg(mm, "body"), *tags, *key = fsm_arg(mm, "key");
    msgpack_object attrs;
    int rc;
    if (!body || (body->type != MSGPACK_OBJECT_BIN && body->type != MSGPACK_OBJECT_STR))
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field 'body' is required (bin or str)");
    if ((rc = arg_str_array(c, mm, "tags", TAGS_MAX, 1, TAG_MAX_LEN, &tags)) ||
        (rc = fsm_arg_attrs(c, mm, &attrs)))
        return rc;
    if (!key || key->type == MSGPACK_OBJECT_NIL)
        key = &nil_obj;
    else if (key->type != MSGPACK_OBJECT_STR || key->via.str.size > KEY_MAX_LEN)
        return fsm_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'key' must be a string of at most %d bytes (dot-separated words)",
                        KEY_MAX_LEN);
    /* str and bin share the layout of their (size, ptr) pair. */
    size_t blen = body->type == MSGPACK_OBJECT_BIN ? body->via.bin.size : body->via.str.size;
    const char *bptr = body->type == MSGPACK_OBJECT_BIN ? body->via.bin.ptr : body->via.str.ptr;
    if (blen > t->a.max_msg_size)
        return fsm_fail(c, MQHUB_ETOO_LARGE,
                        "the body has %zu bytes, more than the topic's max_msg_size (%llu)", blen,
                        (unsigned long long)t->a.max_msg_size);
    snprintf(out->msg_id, sizeof(out->msg_id), "t%llx-%llx", (unsigned long long)t->id,
             (unsigned long long)t->next_seq);
    fsm_push_msg_t m = {t->next_seq, out->msg_id, strlen(out->msg_id), bptr, blen, tags, key,
                        &attrs, ts->now, t->name, t->nlen};
    if (!ts->ungated && ts->hooks.gate &&
        (rc = ts->hooks.gate(ts->hooks.arg, c, false, t->name, t->nlen, &m)))
        return rc;
    out->seq = t->next_seq++;
    tmsg_save(ts, t, &m);
    if (t->retained++ == 0) {
        t->first_seq = out->seq;
        t->first_at = ts->now;
    }
    t->published_total++;
    mark_topic(ts, t);
    out->delivered = 0;
    for (sub_t *s = t->subs; s; s = s->next) {
        if (offer(ts, c, s, &m)) {
            out->delivered++;
            s->s.matched_total++;
            mark_sub(ts, s);
        }
    }
    refs_flush(ts, t, out->seq);
    return 0;
}

static void pack_published(msgpack_packer *pk, const struct published *p)
{
    fsm_pack_kv_str(pk, "msg_id", p->msg_id, strlen(p->msg_id));
    fsm_pack_kv_uint(pk, "seq", p->seq);
    fsm_pack_kv_uint(pk, "delivered", p->delivered);
}

int topic_op_publish(topics_t *ts, fsm_cmd_t *c)
{
    topic_t *t;
    struct published p;
    int rc = arg_topic(ts, c, "topic", &t);
    if (rc || (rc = publish_one(ts, t, c, c->req, &p)))
        return rc;
    if (c->pk) {
        c->n_fields += 3;
        pack_published(c->pk, &p);
    }
    return 0;
}

struct batch {
    topics_t *ts;
    topic_t *t;
    sub_t *s;
};

static int publish_item(void *arg, fsm_cmd_t *c, const msgpack_object *mm)
{
    struct batch *b = arg;
    struct published p;
    int rc = mm->type == MSGPACK_OBJECT_MAP
                 ? publish_one(b->ts, b->t, c, mm, &p)
                 : fsm_fail(c, MQHUB_EBAD_REQUEST, "field 'msgs': each message must be a map");
    if (rc == 0 && c->pk) {
        msgpack_pack_map(c->pk, 3);
        pack_published(c->pk, &p);
    }
    return rc;
}

int topic_op_publish_batch(topics_t *ts, fsm_cmd_t *c)
{
    struct batch b = {.ts = ts};
    int rc = arg_topic(ts, c, "topic", &b.t);
    return rc ? rc : fsm_batch(c, "msgs", "maps", BATCH_MAX, publish_item, &b);
}

bool topic_exists(topics_t *ts, const char *name, size_t len)
{
    return topic_find(ts, name, len) != NULL;
}

int topic_publish_internal(topics_t *ts, fsm_cmd_t *c, const char *name, size_t len,
                           const msgpack_object *msg)
{
    topic_t *t = topic_find(ts, name, len);
    struct published p;
    int rc;
    if (!t)
        return fsm_fail(c, MQHUB_ENOT_FOUND, "topic '%.*s' does not exist", (int)len, name);
    ts->ungated = true;
    rc = publish_one(ts, t, c, msg, &p);
    ts->ungated = false;
    return rc;
}

void topic_script_users(topics_t *ts, const char *script, size_t len,
                        void (*fn)(void *arg, const char *user), void *arg)
{
    char user[2 * FSM_NAME_MAX + 2];
    for (topic_t *t = ts->first; t; t = t->next) {
        for (sub_t *s = t->subs; s; s = s->next) {
            if (str_eq(&s->cf[CF_SCRIPT], script, len)) {
                snprintf(user, sizeof(user), "%s/%s", t->name, s->name);
                fn(arg, user);
            }
        }
    }
}

/* ---- replay (from at create, rewind) ---- */

static int collect_seq(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct seqs *s = arg;
    msgpack_unpacked u;
    bool keep;
    msgpack_unpacked_init(&u);
    keep = kl == KEY_LEN && msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
           u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 6 &&
           u.data.via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
           u.data.via.array.ptr[1].via.u64 >= s->time;
    msgpack_unpacked_destroy(&u);
    if (!keep)
        return 0;
    return seqs_push(s, k);
}

/* Offer every retained message with seq >= @seq published at or after
 * @time to @s again; returns how many matched. */
static uint64_t replay(topics_t *ts, fsm_cmd_t *c, sub_t *s, uint64_t seq, uint64_t time)
{
    struct seqs list = {.time = time};
    unsigned char from[KEY_LEN];
    uint64_t n = 0;
    fsm_key_id_seq(from, 'P', s->t->id, seq);
    store_scan(ts->st, from, 9, from, KEY_LEN, collect_seq, &list);
    for (size_t i = 0; i < list.n; i++) {
        struct tmsg tm;
        if (tmsg_load(ts, s->t, list.v[i], &tm) == 0 && offer(ts, c, s, &tm.m))
            n++;
        tmsg_free(&tm);
        refs_flush(ts, s->t, list.v[i]);
    }
    free(list.v);
    return n;
}

int topic_visit_since(topics_t *ts, const char *name, size_t len, uint64_t since,
                      int (*fn)(void *arg, const fsm_push_msg_t *m), void *arg)
{
    topic_t *t = topic_find(ts, name, len);
    struct seqs list = {.time = since};
    unsigned char from[KEY_LEN];
    if (!t)
        return MQHUB_ENOT_FOUND;
    fsm_key_id_seq(from, 'P', t->id, 0);
    store_scan(ts->st, from, 9, from, KEY_LEN, collect_seq, &list);
    for (size_t i = 0; i < list.n; i++) {
        struct tmsg tm;
        int stop = tmsg_load(ts, t, list.v[i], &tm) == 0 && fn(arg, &tm.m);
        tmsg_free(&tm);
        if (stop)
            break;
    }
    free(list.v);
    return 0;
}

/* ---- subscription ops ---- */

static int arg_retry(fsm_cmd_t *c, fsm_retry_t *r)
{
    const msgpack_object *m = fsm_arg(c->req, "retry");
    const char *strategy;
    size_t sl;
    uint64_t attempts = 16;
    int rc;
    *r = (fsm_retry_t){false, 16, 1000, 300000};
    if (!m || m->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (m->type != MSGPACK_OBJECT_MAP)
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field 'retry' must be a map {strategy, "
                        "max_attempts, interval_ms, max_interval_ms}");
    if ((rc = fsm_arg_str(c, m, "strategy", false, &strategy, &sl)) ||
        (rc = fsm_arg_uint(c, m, "max_attempts", 1, 1000, &attempts)) ||
        (rc = fsm_arg_uint(c, m, "interval_ms", 10, 3600000, &r->interval_ms)) ||
        (rc = fsm_arg_uint(c, m, "max_interval_ms", 10, 86400000, &r->max_interval_ms)))
        return rc;
    if (strategy && !(sl == 7 && memcmp(strategy, "backoff", 7) == 0) &&
        !(sl == 11 && memcmp(strategy, "exponential", 11) == 0))
        return fsm_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'strategy' must be \"backoff\" or \"exponential\"");
    r->exponential = strategy && sl == 11;
    r->max_attempts = (uint32_t)attempts;
    if (r->max_interval_ms < r->interval_ms)
        r->max_interval_ms = r->interval_ms;
    return 0;
}

static int arg_from(fsm_cmd_t *c, int *kind, uint64_t *time)
{
    const msgpack_object *v = fsm_arg(c->req, "from");
    *kind = FROM_LATEST;
    *time = 0;
    if (!v || v->type == MSGPACK_OBJECT_NIL || str_eq(v, "latest", 6))
        return 0;
    if (str_eq(v, "earliest", 8)) {
        *kind = FROM_EARLIEST;
        return 0;
    }
    if (v->type != MSGPACK_OBJECT_STR) {
        *kind = FROM_TIME;
        return fsm_arg_uint(c, c->req, "from", 0, UINT64_MAX, time);
    }
    return fsm_fail(c, MQHUB_EBAD_REQUEST,
                    "field 'from' must be \"latest\", \"earliest\" or a time (ms since epoch)");
}

static void pack_opt_str(msgpack_packer *pk, const char *s, size_t len)
{
    if (s)
        fsm_pack_str(pk, s, len);
    else
        msgpack_pack_nil(pk);
}

/* The endpoint map: {queue: name} (the queue must exist) or {push: true}. */
static int arg_endpoint(topics_t *ts, fsm_cmd_t *c, const char **q, size_t *ql)
{
    const msgpack_object *e = fsm_arg(c->req, "endpoint"), *push;
    int rc;
    *q = NULL;
    *ql = 0;
    if (!e || e->type != MSGPACK_OBJECT_MAP)
        goto bad;
    if (fsm_arg(e, "queue")) {
        if ((rc = fsm_arg_name(c, e, "queue", q, ql)))
            return rc;
        if (!queue_exists(ts->qs, *q, *ql))
            return fsm_fail(c, MQHUB_ENOT_FOUND,
                            "endpoint queue '%.*s' does not exist; create it first", (int)*ql, *q);
        return 0;
    }
    if ((push = fsm_arg(e, "push")) && push->type == MSGPACK_OBJECT_BOOLEAN && push->via.boolean)
        return 0;
bad:
    return fsm_fail(c, MQHUB_EBAD_REQUEST,
                    "field 'endpoint' must be {queue: name} or {push: true}");
}

/* Validate subscription.create and pack its canonical config into @sb. */
static int config_pack(topics_t *ts, fsm_cmd_t *c, msgpack_sbuffer *sb)
{
    const char *q, *script = NULL, *dlq = NULL, *fb;
    size_t ql, scl = 0, dl = 0, fbl;
    const msgpack_object *tags, *binds;
    fsm_retry_t r;
    int from, rc;
    uint64_t from_time;
    msgpack_packer pk;
    if ((rc = arg_endpoint(ts, c, &q, &ql)) ||
        (rc = arg_str_array(c, c->req, "filter_tags", FILTER_MAX, 1, TAG_MAX_LEN, &tags)) ||
        (rc = arg_str_array(c, c->req, "binding_keys", FILTER_MAX, 0, KEY_MAX_LEN, &binds)) ||
        (rc = arg_retry(c, &r)) || (rc = arg_from(c, &from, &from_time)))
        return rc;
    if (fsm_arg(c->req, "filter_script") &&
        (rc = fsm_arg_name(c, c->req, "filter_script", &script, &scl)))
        return rc;
    if (script && !(ts->hooks.exists && ts->hooks.exists(ts->hooks.arg, script, scl)))
        return fsm_fail(c, MQHUB_ENOT_FOUND,
                        "script '%.*s' does not exist (load it with script.load)", (int)scl, script);
    if ((rc = fsm_arg_str(c, c->req, "filter_fallback", false, &fb, &fbl)))
        return rc;
    if (fb && !(fbl == 4 && memcmp(fb, "skip", 4) == 0) &&
        !(fbl == 7 && memcmp(fb, "deliver", 7) == 0))
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field 'filter_fallback' must be \"deliver\" or "
                        "\"skip\"");
    if (fsm_arg(c->req, "dead_letter_queue") &&
        (rc = fsm_arg_name(c, c->req, "dead_letter_queue", &dlq, &dl)))
        return rc;
    if (dlq && q)
        return fsm_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'dead_letter_queue' applies to push subscriptions only");
    if (dlq && !queue_exists(ts->qs, dlq, dl))
        return fsm_fail(c, MQHUB_ENOT_FOUND,
                        "dead-letter queue '%.*s' does not exist; create it first", (int)dl, dlq);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, CF_N);
    pack_opt_str(&pk, q, ql);
    msgpack_pack_object(&pk, tags->type == MSGPACK_OBJECT_NIL
                                  ? (msgpack_object){.type = MSGPACK_OBJECT_ARRAY} : *tags);
    msgpack_pack_object(&pk, binds->type == MSGPACK_OBJECT_NIL
                                  ? (msgpack_object){.type = MSGPACK_OBJECT_ARRAY} : *binds);
    pack_opt_str(&pk, script, scl);
    pack_bool(&pk, r.exponential);
    msgpack_pack_uint64(&pk, r.max_attempts);
    msgpack_pack_uint64(&pk, r.interval_ms);
    msgpack_pack_uint64(&pk, r.max_interval_ms);
    pack_opt_str(&pk, dlq, dl);
    msgpack_pack_uint8(&pk, (uint8_t)from);
    msgpack_pack_uint64(&pk, from_time);
    pack_bool(&pk, fb && fbl == 4);
    return 0;
}

int topic_op_sub_create(topics_t *ts, fsm_cmd_t *c)
{
    topic_t *t;
    const char *name;
    size_t len;
    msgpack_sbuffer sb;
    sub_t *s;
    int rc = arg_topic(ts, c, "topic", &t);
    if (rc || (rc = fsm_arg_name(c, c->req, "name", &name, &len)))
        return rc;
    msgpack_sbuffer_init(&sb);
    if ((rc = config_pack(ts, c, &sb)))
        goto out;
    if ((s = sub_find(t, name, len))) {
        if (s->cfg_len != sb.size || memcmp(s->cfg, sb.data, sb.size) != 0)
            rc = fsm_fail(c, MQHUB_EEXISTS, "subscription '%.*s' exists with other settings; "
                          "delete it first to change them", (int)len, name);
        goto out;
    }
    size_t cfg_len = sb.size;
    if (!(s = calloc(1, sizeof(*s))) || sub_bind(s, msgpack_sbuffer_release(&sb), cfg_len) != 0) {
        if (s)
            sub_destroy(s);
        rc = fsm_fail(c, MQHUB_EINTERNAL, "out of memory");
        goto out;
    }
    memcpy(s->name, name, len);
    s->nlen = len;
    s->id = ts->next_sid++;
    s->t = t;
    sub_link(s);
    put_meta(ts, META_SID, ts->next_sid);
    mark_sub(ts, s);
    if (s->cf[CF_FROM].via.u64 != FROM_LATEST)
        replay(ts, c, s, 0, s->cf[CF_FROM_TIME].via.u64);
out:
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int topic_op_sub_delete(topics_t *ts, fsm_cmd_t *c)
{
    topic_t *t;
    sub_t *s;
    int rc = arg_sub(ts, c, "name", &t, &s);
    if (rc)
        return rc;
    sub_del_records(ts, s);
    sub_unlink(ts, s);
    sub_destroy(s);
    return 0;
}

int topic_op_sub_list(topics_t *ts, fsm_cmd_t *c)
{
    topic_t *t;
    int rc = arg_topic(ts, c, "topic", &t);
    if (rc || !c->pk)
        return rc;
    fsm_reply_key(c, "subscriptions");
    pack_names(c->pk, t);
    return 0;
}

static int first_pending(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    (void)v, (void)vl;
    if (kl == KEY_LEN)
        *(uint64_t *)arg = fsm_get_be64((const unsigned char *)k + 9);
    return 1;
}

/* The lowest pending seq, or the topic's next seq when nothing is pending. */
static uint64_t sub_cursor(topics_t *ts, const sub_t *s)
{
    unsigned char p[9];
    uint64_t seq = s->t->next_seq;
    p[0] = 'W';
    fsm_put_be64(p + 1, s->id);
    store_scan(ts->st, p, 9, NULL, 0, first_pending, &seq);
    return seq;
}

static void pack_sub_config(msgpack_packer *pk, const sub_t *s)
{
    const msgpack_object *cf = s->cf;
    fsm_pack_str(pk, "endpoint", 8);
    msgpack_pack_map(pk, 1);
    if (sub_is_push(s)) {
        fsm_pack_str(pk, "push", 4);
        msgpack_pack_true(pk);
    } else {
        fsm_pack_str(pk, "queue", 5);
        msgpack_pack_object(pk, cf[CF_QUEUE]);
    }
    fsm_pack_str(pk, "filter_tags", 11);
    msgpack_pack_object(pk, cf[CF_TAGS]);
    fsm_pack_str(pk, "binding_keys", 12);
    msgpack_pack_object(pk, cf[CF_BINDINGS]);
    fsm_pack_str(pk, "filter_script", 13);
    msgpack_pack_object(pk, cf[CF_SCRIPT]);
    fsm_pack_kv_str(pk, "filter_fallback", cf[CF_SKIP_ON_ERROR].via.boolean ? "skip" : "deliver",
                cf[CF_SKIP_ON_ERROR].via.boolean ? 4 : 7);
    fsm_pack_str(pk, "retry", 5);
    msgpack_pack_map(pk, 4);
    fsm_pack_kv_str(pk, "strategy", cf[CF_EXP].via.boolean ? "exponential" : "backoff",
                cf[CF_EXP].via.boolean ? 11 : 7);
    fsm_pack_kv_uint(pk, "max_attempts", cf[CF_ATTEMPTS].via.u64);
    fsm_pack_kv_uint(pk, "interval_ms", cf[CF_INTERVAL].via.u64);
    fsm_pack_kv_uint(pk, "max_interval_ms", cf[CF_MAX_INTERVAL].via.u64);
    fsm_pack_str(pk, "dead_letter_queue", 17);
    msgpack_pack_object(pk, cf[CF_DLQ]);
    fsm_pack_str(pk, "from", 4);
    if (cf[CF_FROM].via.u64 == FROM_TIME)
        msgpack_pack_uint64(pk, cf[CF_FROM_TIME].via.u64);
    else if (cf[CF_FROM].via.u64 == FROM_EARLIEST)
        fsm_pack_str(pk, "earliest", 8);
    else
        fsm_pack_str(pk, "latest", 6);
}

static void pack_sub_stats(topics_t *ts, msgpack_packer *pk, const sub_t *s)
{
    const struct sstats *x = &s->s;
    bool push = sub_is_push(s);
    msgpack_pack_map(pk, 6 + (x->last_code[0] != 0) + 2 * push);
    fsm_pack_kv_uint(pk, "matched_total", x->matched_total);
    fsm_pack_kv_uint(pk, "failed_total", x->failed_total);
    if (x->last_code[0]) {
        fsm_pack_str(pk, "last_error", 10);
        msgpack_pack_map(pk, 3);
        fsm_pack_kv_str(pk, "code", x->last_code, strlen(x->last_code));
        fsm_pack_kv_str(pk, "error", x->last_error, strlen(x->last_error));
        fsm_pack_kv_uint(pk, "at", x->last_at);
    }
    if (push) {
        fsm_pack_kv_uint(pk, "pending", x->pending);
        fsm_pack_kv_uint(pk, "cursor", sub_cursor(ts, s));
    }
    fsm_pack_kv_uint(pk, "acked_total", x->acked_total);
    fsm_pack_kv_uint(pk, "dead_lettered_total", x->dead_lettered_total);
    fsm_pack_kv_uint(pk, "dropped_total", x->dropped_total);
    fsm_pack_kv_uint(pk, "expired_total", x->expired_total);
}

int topic_op_sub_get(topics_t *ts, fsm_cmd_t *c)
{
    topic_t *t;
    sub_t *s;
    int rc = arg_sub(ts, c, "name", &t, &s);
    if (rc || !c->pk)
        return rc;
    fsm_reply_key(c, "topic");
    fsm_pack_str(c->pk, t->name, t->nlen);
    fsm_reply_key(c, "name");
    fsm_pack_str(c->pk, s->name, s->nlen);
    pack_sub_config(c->pk, s);
    c->n_fields += 8;
    fsm_reply_key(c, "stats");
    pack_sub_stats(ts, c->pk, s);
    return 0;
}

int topic_op_sub_rewind(topics_t *ts, fsm_cmd_t *c)
{
    topic_t *t;
    sub_t *s;
    uint64_t seq = 0, time = 0;
    int rc = arg_sub(ts, c, "name", &t, &s);
    if (rc || (rc = fsm_arg_uint(c, c->req, "time", 0, UINT64_MAX, &time)) ||
        (rc = fsm_arg_uint(c, c->req, "seq", 0, UINT64_MAX, &seq)))
        return rc;
    if (!fsm_arg(c->req, "time") && !fsm_arg(c->req, "seq"))
        return fsm_fail(c, MQHUB_EBAD_REQUEST,
                        "give field 'time' (ms since epoch) or 'seq' to rewind from");
    fsm_reply_uint(c, "rewound", replay(ts, c, s, seq, time));
    return 0;
}

/* ---- push: ack, sub.dead ---- */

static int arg_push_sub(topics_t *ts, fsm_cmd_t *c, sub_t **out)
{
    topic_t *t;
    int rc = arg_sub(ts, c, "subscription", &t, out);
    if (rc == 0 && !sub_is_push(*out))
        rc = fsm_fail(c, MQHUB_EBAD_REQUEST,
                      "subscription '%s' has a queue endpoint: receive from its queue instead",
                      (*out)->name);
    return rc;
}

static int ack_item(void *arg, fsm_cmd_t *c, const msgpack_object *v)
{
    struct batch *b = arg;
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field 'seqs': each seq must be an unsigned integer");
    if (!pending_del(b->ts, b->s, v->via.u64))
        return fsm_fail(c, MQHUB_ENOT_FOUND, "seq %llu is not pending (acknowledged, "
                        "dead-lettered or expired)", (unsigned long long)v->via.u64);
    b->s->s.acked_total++;
    if (c->pk)
        fsm_pack_ok_item(c->pk);
    return 0;
}

int topic_op_ack(topics_t *ts, fsm_cmd_t *c)
{
    struct batch b = {.ts = ts};
    int rc = arg_push_sub(ts, c, &b.s);
    return rc ? rc : fsm_batch(c, "seqs", "seqs", BATCH_MAX, ack_item, &b);
}

/* The message's attrs plus mqhub.topic and mqhub.subscription, into @sb. */
static void dead_attrs(msgpack_sbuffer *sb, const sub_t *s, const msgpack_object *attrs)
{
    static const char *const own[] = {"mqhub.topic", "mqhub.subscription"};
    msgpack_packer pk;
    uint32_t n = 2;
    bool is_map = attrs->type == MSGPACK_OBJECT_MAP;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    for (uint32_t i = 0; is_map && i < attrs->via.map.size; i++)
        n += !str_eq(&attrs->via.map.ptr[i].key, own[0], 11) &&
             !str_eq(&attrs->via.map.ptr[i].key, own[1], 18);
    msgpack_pack_map(&pk, n);
    for (uint32_t i = 0; is_map && i < attrs->via.map.size; i++) {
        const msgpack_object_kv *kv = &attrs->via.map.ptr[i];
        if (str_eq(&kv->key, own[0], 11) || str_eq(&kv->key, own[1], 18))
            continue;
        msgpack_pack_object(&pk, kv->key);
        msgpack_pack_object(&pk, kv->val);
    }
    fsm_pack_kv_str(&pk, own[0], s->t->name, s->t->nlen);
    fsm_pack_kv_str(&pk, own[1], s->name, s->nlen);
}

/* Move pending message @tm of @s to its dead-letter queue; a code when it
 * could not (no such queue, full, too large). */
static int dead_letter(topics_t *ts, fsm_cmd_t *c, sub_t *s, const struct tmsg *tm)
{
    const msgpack_object *dlq = &s->cf[CF_DLQ];
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    char msg_id[64];
    int rc;
    if (dlq->type != MSGPACK_OBJECT_STR)
        return MQHUB_ENOT_FOUND;
    msgpack_sbuffer_init(&sb);
    msgpack_unpacked_init(&u);
    dead_attrs(&sb, s, tm->m.attrs);
    msgpack_unpack_next(&u, sb.data, sb.size, NULL);
    snprintf(msg_id, sizeof(msg_id), "%.*s", (int)tm->m.msg_id_len, tm->m.msg_id);
    rc = queue_append_from_topic(ts->qs, c, dlq->via.str.ptr, dlq->via.str.size, msg_id,
                                 tm->m.body, tm->m.body_len, tm->m.tags, &u.data);
    if (rc)
        sub_failed(ts, s, rc, c->err);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int topic_op_sub_dead(topics_t *ts, fsm_cmd_t *c)
{
    sub_t *s;
    uint64_t seq = 0, attempts = 0;
    struct tmsg tm;
    int rc = arg_push_sub(ts, c, &s);
    if (rc || (rc = fsm_arg_uint(c, c->req, "seq", 1, UINT64_MAX, &seq)) ||
        (rc = fsm_arg_uint(c, c->req, "attempts", 0, UINT64_MAX, &attempts)))
        return rc;
    if (!pending_has(ts, s, seq))
        return fsm_fail(c, MQHUB_ENOT_FOUND, "seq %llu is not pending",
                        (unsigned long long)seq);
    bool moved = tmsg_load(ts, s->t, seq, &tm) == 0 && dead_letter(ts, c, s, &tm) == 0;
    tmsg_free(&tm);
    if (moved)
        s->s.dead_lettered_total++;
    else
        s->s.dropped_total++;
    pending_del(ts, s, seq);
    fsm_reply_key(c, "outcome");
    if (c->pk)
        fsm_pack_str(c->pk, moved ? "dead_lettered" : "dropped", moved ? 13 : 7);
    return 0;
}

/* ---- tick: retention ---- */

struct expiry {
    uint64_t now, retention_ms, budget;
    struct seqs list;
};

static int expired_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct expiry *e = arg;
    msgpack_unpacked u;
    bool old;
    if (e->list.n >= e->budget)
        return 1;
    msgpack_unpacked_init(&u);
    old = kl == KEY_LEN && msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
          u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 6 &&
          u.data.via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
          u.data.via.array.ptr[1].via.u64 + e->retention_ms <= e->now;
    msgpack_unpacked_destroy(&u);
    return old ? collect_seq(&e->list, k, kl, v, vl) : 1;
}

static uint64_t expire_topic(topics_t *ts, topic_t *t, uint64_t now, uint64_t budget)
{
    struct expiry e = {.now = now, .retention_ms = t->a.retention * 1000, .budget = budget};
    unsigned char k[KEY_LEN];
    if (!t->retained || t->first_at + e.retention_ms > now)
        return 0;
    fsm_key_id_seq(k, 'P', t->id, 0);
    store_scan(ts->st, k, 9, NULL, 0, expired_visit, &e);
    for (size_t i = 0; i < e.list.n; i++) {
        uint64_t seq = e.list.v[i];
        body_keep(ts, t->id, seq);
        fsm_key_id_seq(k, 'P', t->id, seq);
        store_del(ts->st, k, KEY_LEN);
        for (sub_t *s = t->subs; s; s = s->next) {
            if (sub_is_push(s) && pending_del(ts, s, seq))
                s->s.expired_total++;
        }
        t->retained--;
        t->first_seq = seq + 1;
    }
    if (e.list.n) {
        topic_load_first_at(ts, t);
        mark_topic(ts, t);
    }
    free(e.list.v);
    return e.list.n;
}

int topic_op_tick(topics_t *ts, fsm_cmd_t *c)
{
    uint64_t budget = TICK_BUDGET;
    for (topic_t *t = ts->first; t && budget; t = t->next)
        budget -= expire_topic(ts, t, c->now, budget);
    ts->tick_more = budget == 0;
    return 0;
}

/* ---- push engine reads (fsm_push_*) ---- */

static sub_t *push_sub(topics_t *ts, const char *topic, size_t tl, const char *sub, size_t sl)
{
    topic_t *t = topic_find(ts, topic, tl);
    sub_t *s = t ? sub_find(t, sub, sl) : NULL;
    return s && sub_is_push(s) ? s : NULL;
}

struct visit {
    struct seqs list;
    unsigned max;
};

static int pending_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct visit *p = arg;
    (void)v, (void)vl;
    if (p->list.n >= p->max)
        return 1;
    if (p->list.n == p->list.cap) {
        size_t cap = p->list.cap ? p->list.cap * 2 : 16;
        uint64_t *nv = realloc(p->list.v, cap * sizeof(*nv));
        if (!nv)
            return 1;
        p->list.v = nv;
        p->list.cap = cap;
    }
    if (kl == KEY_LEN)
        p->list.v[p->list.n++] = fsm_get_be64((const unsigned char *)k + 9);
    return 0;
}

/* Pending seqs are read in chunks, so a visit that stops early (a session's
 * credit is used up) never loads the whole pending set. */
#define VISIT_CHUNK 256

int topic_push_pending(topics_t *ts, const char *topic, size_t tl, const char *sub, size_t sl,
                       uint64_t after, unsigned max,
                       int (*fn)(void *arg, const fsm_push_msg_t *m), void *arg)
{
    sub_t *s = push_sub(ts, topic, tl, sub, sl);
    struct visit p = {.max = 0};
    unsigned char from[KEY_LEN];
    unsigned n = 0;
    bool stop = false;
    if (!s)
        return MQHUB_ENOT_FOUND;
    while (!stop && n < max && after != UINT64_MAX) {
        p.list.n = 0;
        p.max = max - n < VISIT_CHUNK ? max - n : VISIT_CHUNK;
        pending_key(from, s, after + 1);
        store_scan(ts->st, from, 9, from, KEY_LEN, pending_visit, &p);
        for (size_t i = 0; i < p.list.n && !stop; i++) {
            struct tmsg tm;
            if (tmsg_load(ts, s->t, p.list.v[i], &tm) == 0) {
                n++;
                stop = fn(arg, &tm.m) != 0;
            }
            tmsg_free(&tm);
            after = p.list.v[i];
        }
        if (p.list.n < p.max)
            break;
    }
    free(p.list.v);
    return (int)n;
}

bool topic_push_is_pending(topics_t *ts, const char *topic, size_t tl, const char *sub,
                           size_t sl, uint64_t seq)
{
    sub_t *s = push_sub(ts, topic, tl, sub, sl);
    return s && pending_has(ts, s, seq);
}

int topic_push_retry(topics_t *ts, const char *topic, size_t tl, const char *sub, size_t sl,
                     fsm_retry_t *out)
{
    sub_t *s = push_sub(ts, topic, tl, sub, sl);
    if (!s)
        return MQHUB_ENOT_FOUND;
    *out = (fsm_retry_t){s->cf[CF_EXP].via.boolean, (uint32_t)s->cf[CF_ATTEMPTS].via.u64,
                         s->cf[CF_INTERVAL].via.u64, s->cf[CF_MAX_INTERVAL].via.u64};
    return 0;
}
