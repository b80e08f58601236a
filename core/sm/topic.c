/* topic.c: topics — PROTOCOL.md "Topics". Its handlers (topic_op_*:
 * topic.create/delete/set/get/list, publish, publish_batch and the topic
 * half of tick) run from the op table; fsm.c drives the topics' state
 * (topic_state_new, topic_begin/topic_end, topic_rebuild, topic_next_due);
 * script/ publishes and reads through topic_publish_internal,
 * topic_visit_since and topic_script_users. Subscriptions are
 * subscription.c's; the two files share topic_int.h.
 *
 * A publish appends to the topic's retained log and, in the same apply, fans
 * out to the topic's subscriptions (sub_fan_out() in subscription.c: filters,
 * then the queue or push endpoint). A failed delivery never fails the
 * publish. Retention (tick) drops the oldest retained messages and their
 * pending entries.
 *
 * State in the store (docs/architecture.md "Key layout"):
 *   #tid                      next topic id (u64be)
 *   T<name>                   topic record (topic_save): ids, attrs,
 *                             counters, created_at, modified_at
 *   P<tid be64><seq be64>     retained message [msg_id, published_at, tags,
 *                             key, attrs, body]
 * Queue messages fanned out from a publish refer to the body in P (body.c):
 * dropping a P record (retention; the reclaim after topic.delete) first
 * lets body.c keep the bodies still referred to (body_keep).
 * topic.delete is O(1) in the retained log: it marks P<tid> dead for tick's
 * reclaim (queue_reclaim_mark, queue.c) and removes T<name>.
 * In memory: topics in id order, a doubly linked list (tick picks the same
 * work on every node; a new topic has the highest id: appended; rebuild sorts
 * once), with their subscriptions in name order, and an ordered map by name
 * for lookups and topic.list pages (O(log n)).
 *
 * Start reading at topic_op_publish(). Scripts (script.c) come in through
 * ts->hooks: the gate (blocks and hooks) before a client publish is accepted
 * (publish_one), and filter scripts (subscription.c). To add a topic
 * attribute: struct tattrs (topic_int.h), tattrs_parse(), the T record
 * (topic_save/topic_decode) and topic.get.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topic_int.h"

#define META_TID "#tid"
#define TICK_BUDGET 10000     /* expired messages per tick */

static const struct tattrs tattrs_default = {.max_msg_size = MQHUB_MSG_SIZE_DEFAULT,
                                              .retention = MQHUB_TOPIC_RETENTION_DEFAULT,
                                              .filter_type = TOPIC_FILTER_TAGS};

/* Items of a T record: 7 before created_at, modified_at and filter_type. */
#define TREC_N 10
#define TREC_N_V1 7

static const msgpack_object nil_obj = {.type = MSGPACK_OBJECT_NIL};

/* ---- small helpers ---- */

void topic_put(topics_t *ts, const void *k, size_t kl, const void *v, size_t vl)
{
    if (store_put(ts->st, k, kl, v, vl) != 0)
        ts->failed = true;
}

void topic_put_meta(topics_t *ts, const char *key, uint64_t v)
{
    unsigned char be[8];
    store_be64_put(be, v);
    topic_put(ts, key, strlen(key), be, 8);
}

static uint64_t get_meta(topics_t *ts, const char *key)
{
    size_t vl;
    unsigned char *v = store_get(ts->st, key, strlen(key), &vl);
    uint64_t x = v && vl == 8 ? store_be64_get(v) : 1;
    store_free(v);
    return x;
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
    unsigned char k[1 + MQHUB_NAME_MAX];
    uint64_t nums[TREC_N] = {t->id, t->next_seq, t->first_seq, t->a.max_msg_size,
                             t->a.retention, t->retained, t->published_total, t->created_at,
                             t->modified_at, t->a.filter_type};
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, TREC_N);
    for (size_t i = 0; i < TREC_N; i++)
        msgpack_pack_uint64(&pk, nums[i]);
    trec_key(k, t);
    topic_put(ts, k, 1 + t->nlen, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static int topic_decode(topic_t *t, const char *v, size_t vl)
{
    msgpack_unpacked u;
    uint64_t nums[TREC_N] = {[9] = TOPIC_FILTER_TAGS};
    int rc = MQHUB_EINTERNAL;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, v, vl, NULL) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_ARRAY ||
        (u.data.via.array.size != TREC_N && u.data.via.array.size != TREC_N_V1))
        goto out;
    for (uint32_t i = 0; i < u.data.via.array.size; i++) {
        if (u.data.via.array.ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            goto out;
        nums[i] = u.data.via.array.ptr[i].via.u64;
    }
    t->id = nums[0], t->next_seq = nums[1], t->first_seq = nums[2];
    t->a = (struct tattrs){nums[3], nums[4], nums[9]};
    t->retained = nums[5], t->published_total = nums[6];
    t->created_at = nums[7], t->modified_at = nums[8];
    rc = 0;
out:
    msgpack_unpacked_destroy(&u);
    return rc;
}

static void topic_msg_save(topics_t *ts, const topic_t *t, const fsm_push_msg_t *m)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char k[KEY_LEN];
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 6);
    mp_pack_str(&pk, m->msg_id, m->msg_id_len);
    msgpack_pack_uint64(&pk, m->published_at);
    msgpack_pack_object(&pk, *m->tags);
    msgpack_pack_object(&pk, *m->key);
    msgpack_pack_object(&pk, *m->attrs);
    msgpack_pack_bin(&pk, m->body_len);
    msgpack_pack_bin_body(&pk, m->body, m->body_len);
    store_key_id_seq(k, 'P', t->id, m->seq);
    topic_put(ts, k, KEY_LEN, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Retained message record: [msg_id, published_at, tags, key, attrs, body]. */
int topic_msg_load(topics_t *ts, const topic_t *t, uint64_t seq, struct tmsg *tm)
{
    unsigned char k[KEY_LEN];
    size_t vl;
    const msgpack_object *o;
    msgpack_unpacked_init(&tm->u);
    store_key_id_seq(k, 'P', t->id, seq);
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

void topic_msg_free(struct tmsg *tm)
{
    msgpack_unpacked_destroy(&tm->u);
    store_free(tm->raw);
    tm->raw = NULL;
}

/* A collect_since() visit: the seqs of messages published at or after time,
 * looking at @max records at most (@seen of them, the last one @last). */
struct since {
    body_seqs_t list;
    uint64_t time, last;
    size_t max, seen;
};

static int collect_since(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct since *s = arg;
    msgpack_unpacked u;
    bool keep;
    if (s->seen >= s->max)
        return 1;
    s->seen++;
    if (kl == KEY_LEN)
        s->last = store_be64_get((const unsigned char *)k + 9);
    msgpack_unpacked_init(&u);
    keep = kl == KEY_LEN && msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
           u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 6 &&
           u.data.via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
           u.data.via.array.ptr[1].via.u64 >= s->time;
    msgpack_unpacked_destroy(&u);
    if (!keep)
        return 0;
    return body_seqs_push(&s->list, k);
}

/* Scan @t's retained messages from @seq on (at most s->max records). */
static void scan_since(topics_t *ts, const topic_t *t, uint64_t seq, struct since *s)
{
    unsigned char from[KEY_LEN];
    store_key_id_seq(from, 'P', t->id, seq);
    store_scan(ts->st, from, 9, from, KEY_LEN, collect_since, s);
}

void topic_seqs_since(topics_t *ts, const topic_t *t, uint64_t seq, uint64_t time,
                      body_seqs_t *out)
{
    struct since s = {.time = time, .max = SIZE_MAX};
    scan_since(ts, t, seq, &s);
    *out = s.list;
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

topic_t *topic_find(topics_t *ts, const char *name, size_t len)
{
    return omap_get(&ts->by_name, name, len);
}

/* Add @t to the name map and at the end of the id-ordered list (its id is
 * above every linked topic's). 0, or MQHUB_EINTERNAL with @t linked nowhere. */
static int topic_link(topics_t *ts, topic_t *t)
{
    if (omap_put(&ts->by_name, t->name, t->nlen, t) != 0)
        return MQHUB_EINTERNAL;
    t->prev = ts->last;
    t->next = NULL;
    *(ts->last ? &ts->last->next : &ts->first) = t;
    ts->last = t;
    return 0;
}

static void topic_destroy(topics_t *ts, topic_t *t)
{
    sub_free_all(ts, t);
    omap_del(&ts->by_name, t->name, t->nlen);
    *(t->prev ? &t->prev->next : &ts->first) = t->next;
    *(t->next ? &t->next->prev : &ts->last) = t->prev;
    for (topic_t **pp = &ts->dirty; t->dirty && *pp; pp = &(*pp)->dirty_next) {
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
    if (topic_msg_load(ts, t, t->first_seq, &tm) == 0)
        t->first_at = tm.m.published_at;
    topic_msg_free(&tm);
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
    omap_init(&ts->by_name);
    omap_init(&ts->http_subs);
    *out = ts;
    return 0;
}

static void free_all_topics(topics_t *ts)
{
    while (ts->first)
        topic_destroy(ts, ts->first);
    omap_free(&ts->by_name);
    omap_free(&ts->http_subs); /* empty by now: sub_unlink took each out */
}

void topic_state_free(topics_t *ts)
{
    if (!ts)
        return;
    free_all_topics(ts);
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
    topic_t **all; /* the T records, in name order as the store has them */
    size_t n, cap;
    int rc;
};

static int rebuild_topic(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct rebuild *r = arg;
    topic_t *t = kl - 1 <= MQHUB_NAME_MAX ? topic_alloc(k + 1, kl - 1) : NULL;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        topic_t **all = realloc(r->all, cap * sizeof(*all));
        if (all)
            r->all = all, r->cap = cap;
    }
    if (!t || r->n == r->cap || topic_decode(t, v, vl) != 0) {
        free(t);
        r->rc = MQHUB_EINTERNAL;
        return 1;
    }
    r->all[r->n++] = t;
    return 0;
}

static int cmp_topic_id(const void *a, const void *b)
{
    const topic_t *x = *(topic_t *const *)a, *y = *(topic_t *const *)b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Link the topics read from the store, sorted once by id: O(n log n). */
static void rebuild_link(struct rebuild *r)
{
    if (r->n)
        qsort(r->all, r->n, sizeof(*r->all), cmp_topic_id);
    for (size_t i = 0; i < r->n; i++) {
        if (r->rc == 0 && topic_link(r->ts, r->all[i]) != 0)
            r->rc = MQHUB_EINTERNAL;
        if (r->rc != 0)
            free(r->all[i]);
    }
    free(r->all);
}

int topic_rebuild(topics_t *ts)
{
    struct rebuild r = {.ts = ts};
    free_all_topics(ts);
    ts->dirty_subs = NULL;
    ts->next_tid = get_meta(ts, META_TID);
    ts->next_sid = get_meta(ts, META_SID);
    store_scan(ts->st, "T", 1, NULL, 0, rebuild_topic, &r);
    rebuild_link(&r);
    for (topic_t *t = ts->first; t && r.rc == 0; t = t->next) {
        r.rc = sub_rebuild(ts, t);
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
    sub_end(ts);
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

/* ---- topic ops ---- */

int topic_arg(topics_t *ts, cmd_t *c, const char *key, topic_t **out)
{
    const char *name;
    size_t len;
    int rc = cmd_arg_name(c, c->req, key, &name, &len);
    if (rc)
        return rc;
    if (!(*out = topic_find(ts, name, len)))
        return cmd_fail(c, MQHUB_ENOT_FOUND,
                        "topic '%.*s' does not exist; create it with topic.create", (int)len, name);
    return 0;
}

int topic_arg_strs(cmd_t *c, const msgpack_object *map, const char *key, uint32_t max,
                   size_t minlen, size_t maxlen, const msgpack_object **out)
{
    const msgpack_object *v = mp_map_get(map, key);
    *out = &nil_obj;
    if (!v || v->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be an array of strings", key);
    if (v->via.array.size > max)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field '%s' holds %u entries, at most %u allowed",
                        key, v->via.array.size, max);
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        const msgpack_object *s = &v->via.array.ptr[i];
        if (s->type != MSGPACK_OBJECT_STR || s->via.str.size < minlen || s->via.str.size > maxlen)
            return cmd_fail(c, MQHUB_EBAD_REQUEST, "field '%s': each entry must be a string of "
                            "%zu-%zu bytes", key, minlen, maxlen);
    }
    *out = v;
    return 0;
}

static const char *filter_type_name(uint64_t ft)
{
    return ft == TOPIC_FILTER_ROUTING_KEY ? "routing_key" : "tags";
}

/* attrs.filter_type: "tags" or "routing_key". */
static int filter_type_parse(cmd_t *c, const msgpack_object *m, struct tattrs *a)
{
    const char *s;
    size_t n;
    int rc = cmd_arg_str(c, m, "filter_type", false, &s, &n);
    if (rc == 0 && s && n == 4 && memcmp(s, "tags", 4) == 0)
        a->filter_type = TOPIC_FILTER_TAGS;
    else if (rc == 0 && s && n == 11 && memcmp(s, "routing_key", 11) == 0)
        a->filter_type = TOPIC_FILTER_ROUTING_KEY;
    else if (rc != 0 || s)
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'attrs.filter_type' must be \"tags\" or \"routing_key\"");
    return 0;
}

static int tattrs_parse(cmd_t *c, struct tattrs *a, bool is_set)
{
    const msgpack_object *m = mp_map_get(c->req, "attrs");
    int rc;
    if (!m || m->type == MSGPACK_OBJECT_NIL)
        return is_set ? cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'attrs' is required (a map)") : 0;
    if (m->type != MSGPACK_OBJECT_MAP)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'attrs' must be a map");
    if ((rc = cmd_arg_uint(c, m, "max_msg_size", MQHUB_MSG_SIZE_MIN, MQHUB_MSG_SIZE_MAX, &a->max_msg_size)) ||
        (rc = cmd_arg_uint(c, m, "retention", MQHUB_RETENTION_MIN, MQHUB_RETENTION_MAX, &a->retention)))
        return rc;
    return filter_type_parse(c, m, a);
}

int topic_op_create(cmd_t *c)
{
    topics_t *ts = c->ts;
    const char *name;
    size_t len;
    struct tattrs a = tattrs_default;
    int rc;
    if ((rc = cmd_arg_name(c, c->req, "name", &name, &len)) || (rc = tattrs_parse(c, &a, false)))
        return rc;
    topic_t *t = topic_find(ts, name, len);
    if (t)
        return memcmp(&t->a, &a, sizeof(a)) == 0
                   ? 0
                   : cmd_fail(c, MQHUB_EEXISTS,
                              "topic '%.*s' exists with other attributes; use topic.set to "
                              "change them", (int)len, name);
    if (!(t = topic_alloc(name, len)))
        return cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
    t->id = ts->next_tid++;
    t->next_seq = t->first_seq = 1;
    t->a = a;
    t->created_at = t->modified_at = ts->now;
    if (topic_link(ts, t) != 0) {
        free(t);
        return cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
    }
    topic_put_meta(ts, META_TID, ts->next_tid);
    mark_topic(ts, t);
    return 0;
}

int topic_op_delete(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    unsigned char k[1 + MQHUB_NAME_MAX];
    int rc = topic_arg(ts, c, "name", &t);
    if (rc)
        return rc;
    sub_delete_all(ts, t);
    queue_reclaim_mark(ts->qs, 'P', t->id, UINT64_MAX, false);
    trec_key(k, t);
    store_del(ts->st, k, 1 + t->nlen);
    topic_destroy(ts, t);
    return 0;
}

int topic_op_set(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    struct tattrs a;
    int rc = topic_arg(ts, c, "name", &t);
    if (rc)
        return rc;
    a = t->a;
    if ((rc = tattrs_parse(c, &a, true)))
        return rc;
    t->a = a;
    t->modified_at = ts->now;
    mark_topic(ts, t);
    return 0;
}

int topic_op_get(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    int rc = topic_arg(ts, c, "name", &t);
    if (rc || !c->pk)
        return rc;
    cmd_reply_key(c, "name");
    mp_pack_str(c->pk, t->name, t->nlen);
    const char *hook = ts->hooks.hook_name ? ts->hooks.hook_name(ts->hooks.arg, false, t->name,
                                                                 t->nlen) : NULL;
    cmd_reply_key(c, "attrs");
    msgpack_pack_map(c->pk, hook ? 4 : 3);
    if (hook)
        cmd_pack_kv_str(c->pk, "hook", hook, strlen(hook));
    cmd_pack_kv_uint(c->pk, "max_msg_size", t->a.max_msg_size);
    cmd_pack_kv_uint(c->pk, "retention", t->a.retention);
    const char *ft = filter_type_name(t->a.filter_type);
    cmd_pack_kv_str(c->pk, "filter_type", ft, strlen(ft));
    cmd_reply_uint(c, "created_at", t->created_at);
    cmd_reply_uint(c, "modified_at", t->modified_at);
    cmd_reply_key(c, "stats");
    msgpack_pack_map(c->pk, 4);
    cmd_pack_kv_uint(c->pk, "retained", t->retained);
    cmd_pack_kv_uint(c->pk, "published_total", t->published_total);
    cmd_pack_kv_uint(c->pk, "first_seq", t->first_seq);
    cmd_pack_kv_uint(c->pk, "last_seq", t->next_seq - 1);
    cmd_reply_key(c, "subscriptions");
    sub_pack_names(c->pk, t);
    return 0;
}

/* topic.list's sorts (listing.c): "name" first, then the counters. */
static const char *const list_sorts[] = {"name", "retained", "published", NULL};

static uint64_t list_key(void *arg, const void *obj, int sort)
{
    const topic_t *t = obj;
    (void)arg;
    return sort == 1 ? t->retained : t->published_total;
}

/* One row: topic.get's stats, flat. */
static void list_row(void *arg, cmd_t *c, const void *obj)
{
    const topic_t *t = obj;
    (void)arg;
    msgpack_pack_map(c->pk, 6);
    cmd_pack_kv_str(c->pk, "name", t->name, t->nlen);
    cmd_pack_kv_uint(c->pk, "retained", t->retained);
    cmd_pack_kv_uint(c->pk, "published_total", t->published_total);
    cmd_pack_kv_uint(c->pk, "first_seq", t->first_seq);
    cmd_pack_kv_uint(c->pk, "last_seq", t->next_seq - 1);
    cmd_pack_kv_uint(c->pk, "created_at", t->created_at);
}

/* The old form (names) through cmd_list_names; with stats, match, sort or
 * desc through listing.c. */
int topic_op_list(cmd_t *c)
{
    topics_t *ts = c->ts;
    listing_t l;
    bool extended;
    int rc = listing_args(c, list_sorts, &l, &extended);
    if (rc)
        return rc;
    if (!extended)
        return cmd_list_names(c, &ts->by_name, "topics");
    return listing_run(c, &l, &ts->by_name, "topics", list_key, list_row, NULL);
}

/* ---- publish ---- */

struct published {
    char msg_id[48];
    uint64_t seq, delivered;
};

static int publish_one(topics_t *ts, topic_t *t, cmd_t *c, const msgpack_object *mm,
                       struct published *out)
{
    const msgpack_object *body = mp_map_get(mm, "body"), *tags, *key = mp_map_get(mm, "key");
    msgpack_object attrs;
    int rc;
    if (!body || (body->type != MSGPACK_OBJECT_BIN && body->type != MSGPACK_OBJECT_STR))
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'body' is required (bin or str)");
    if ((rc = topic_arg_strs(c, mm, "tags", MQHUB_TAGS_MAX, 1, MQHUB_TAG_LEN_MAX, &tags)) ||
        (rc = cmd_arg_attrs(c, mm, &attrs)))
        return rc;
    if (!key || key->type == MSGPACK_OBJECT_NIL)
        key = &nil_obj;
    else if (key->type != MSGPACK_OBJECT_STR || key->via.str.size > MQHUB_ROUTING_KEY_MAX)
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'key' must be a string of at most %d bytes (dot-separated words)",
                        MQHUB_ROUTING_KEY_MAX);
    /* str and bin share the layout of their (size, ptr) pair. */
    size_t blen = body->type == MSGPACK_OBJECT_BIN ? body->via.bin.size : body->via.str.size;
    const char *bptr = body->type == MSGPACK_OBJECT_BIN ? body->via.bin.ptr : body->via.str.ptr;
    size_t size = blen + cmd_attrs_size(&attrs);
    if (size > t->a.max_msg_size)
        return cmd_fail(c, MQHUB_ETOO_LARGE,
                        "the message (body and attrs) has %zu bytes, more than the topic's "
                        "max_msg_size (%llu)", size, (unsigned long long)t->a.max_msg_size);
    snprintf(out->msg_id, sizeof(out->msg_id), "t%llx-%llx", (unsigned long long)t->id,
             (unsigned long long)t->next_seq);
    fsm_push_msg_t m = {t->next_seq, out->msg_id, strlen(out->msg_id), bptr, blen, tags, key,
                        &attrs, ts->now, t->name, t->nlen};
    if (!ts->ungated && ts->hooks.gate &&
        (rc = ts->hooks.gate(ts->hooks.arg, c, false, t->name, t->nlen, &m)))
        return rc;
    out->seq = t->next_seq++;
    topic_msg_save(ts, t, &m);
    if (t->retained++ == 0) {
        t->first_seq = out->seq;
        t->first_at = ts->now;
    }
    t->published_total++;
    mark_topic(ts, t);
    out->delivered = sub_fan_out(ts, c, t, &m);
    return 0;
}

static void pack_published(msgpack_packer *pk, const struct published *p)
{
    cmd_pack_kv_str(pk, "msg_id", p->msg_id, strlen(p->msg_id));
    cmd_pack_kv_uint(pk, "seq", p->seq);
    cmd_pack_kv_uint(pk, "delivered", p->delivered);
}

int topic_op_publish(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    struct published p;
    int rc = topic_arg(ts, c, "topic", &t);
    if (rc || (rc = publish_one(ts, t, c, c->req, &p)))
        return rc;
    if (c->pk) {
        c->n_fields += 3;
        pack_published(c->pk, &p);
    }
    return 0;
}

struct publish_batch {
    topics_t *ts;
    topic_t *t;
};

static int publish_item(void *arg, cmd_t *c, const msgpack_object *mm)
{
    struct publish_batch *b = arg;
    struct published p;
    int rc = mm->type == MSGPACK_OBJECT_MAP
                 ? publish_one(b->ts, b->t, c, mm, &p)
                 : cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'msgs': each message must be a map");
    if (rc == 0 && c->pk) {
        msgpack_pack_map(c->pk, 3);
        pack_published(c->pk, &p);
    }
    return rc;
}

int topic_op_publish_batch(cmd_t *c)
{
    topics_t *ts = c->ts;
    struct publish_batch b = {.ts = ts};
    int rc = topic_arg(ts, c, "topic", &b.t);
    return rc ? rc : cmd_batch(c, "msgs", "maps", MQHUB_BATCH_MAX, publish_item, &b);
}

int topic_publish_internal(topics_t *ts, cmd_t *c, const char *name, size_t len,
                           const msgpack_object *msg)
{
    topic_t *t = topic_find(ts, name, len);
    struct published p;
    int rc;
    if (!t)
        return cmd_fail(c, MQHUB_ENOT_FOUND, "topic '%.*s' does not exist", (int)len, name);
    ts->ungated = true;
    rc = publish_one(ts, t, c, msg, &p);
    ts->ungated = false;
    return rc;
}

void topic_script_users(topics_t *ts, const char *script, size_t len,
                        void (*fn)(void *arg, const char *user), void *arg)
{
    for (topic_t *t = ts->first; t; t = t->next)
        sub_script_users(t, script, len, fn, arg);
}

int topic_visit_since(topics_t *ts, const char *name, size_t len, topic_visit_t *v,
                      int (*fn)(void *arg, const fsm_push_msg_t *m), void *arg)
{
    topic_t *t = topic_find(ts, name, len);
    struct since s = {.time = v->since, .max = v->max};
    if (!t)
        return MQHUB_ENOT_FOUND;
    v->topic_id = t->id;
    scan_since(ts, t, v->from, &s);
    v->end = s.seen < v->max;
    if (s.seen)
        v->from = s.last + 1;
    for (size_t i = 0; i < s.list.n; i++) {
        struct tmsg tm;
        int stop = topic_msg_load(ts, t, s.list.v[i], &tm) == 0 && fn(arg, &tm.m);
        topic_msg_free(&tm);
        if (stop) {
            v->from = s.list.v[i]; /* not taken: the next visit starts with it */
            v->end = false;
            break;
        }
    }
    free(s.list.v);
    return 0;
}

/* ---- tick: retention ---- */

struct expiry {
    uint64_t now, retention_ms, budget;
    body_seqs_t list;
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
    return old ? body_seqs_push(&e->list, k) : 1;
}

static uint64_t expire_topic(topics_t *ts, topic_t *t, uint64_t now, uint64_t budget)
{
    struct expiry e = {.now = now, .retention_ms = t->a.retention * 1000, .budget = budget};
    unsigned char k[KEY_LEN];
    if (!t->retained || t->first_at + e.retention_ms > now)
        return 0;
    store_key_id_seq(k, 'P', t->id, 0);
    store_scan(ts->st, k, 9, NULL, 0, expired_visit, &e);
    for (size_t i = 0; i < e.list.n; i++) {
        uint64_t seq = e.list.v[i];
        if (body_keep(ts->st, t->id, seq) != 0)
            ts->failed = true;
        store_key_id_seq(k, 'P', t->id, seq);
        store_del(ts->st, k, KEY_LEN);
        sub_expired(ts, t, seq);
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

int topic_op_tick(cmd_t *c)
{
    topics_t *ts = c->ts;
    uint64_t budget = TICK_BUDGET;
    for (topic_t *t = ts->first; t && budget; t = t->next)
        budget -= expire_topic(ts, t, c->now, budget);
    ts->tick_more = budget == 0;
    return 0;
}
