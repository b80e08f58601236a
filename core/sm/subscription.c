/* subscription.c: the subscriptions of topics — PROTOCOL.md "Topics". Called
 * by fsm.c (handlers sub_op_*: subscription.create/delete/get/list/rewind,
 * ack, and the internal op `sub.dead {topic, subscription, seq, attempts}`
 * the leader proposes when it gave up on a push message), by topic.c
 * (fan-out, retention, rebuild, end of entry: topic_int.h), and by the push
 * engine's reads (sub_push_*, behind fsm_push_* in sm.h).
 *
 * A published message is offered to every subscription of its topic, in name
 * order (sub_fan_out): every filter the subscription has must match (tags and
 * routing keys: route.c; a filter script: ts->hooks), then its endpoint gets
 * the message. A queue endpoint gets a message appended to its queue that
 * refers to the retained message's body (queue_append_ref; the references
 * are added to the body's count once per message, body.c). A push endpoint
 * gets a pending entry (sub, seq) that the leader's push engine delivers and
 * that `ack`, `sub.dead` or retention removes. A failed delivery (queue full
 * or gone, script error) is counted in the subscription's stats, never
 * dropped silently, and never fails the publish. `from` at create and
 * subscription.rewind replay retained messages through the same path.
 *
 * State in the store (docs/architecture.md "Key layout"):
 *   #sid                      next subscription id (u64be)
 *   S<tid be64><name>         subscription record (sub_save): id, its
 *                             canonical config (bin), stats
 *   W<sid be64><seq be64>     a pending message of a push subscription
 * In memory: each topic's subscriptions in name order (topic_t.subs).
 *
 * Start reading at sub_fan_out() and sub_op_create(). To add a filter kind: a
 * field in the config (config_pack/sub_bind, CF_*) and a clause in
 * sub_match().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topic_int.h"

#define FILTER_MAX 32         /* entries of filter_tags / binding_keys */

/* Indexes into the canonical subscription config (config_pack). */
enum { CF_QUEUE, CF_TAGS, CF_BINDINGS, CF_SCRIPT, CF_EXP, CF_ATTEMPTS, CF_INTERVAL,
       CF_MAX_INTERVAL, CF_DLQ, CF_FROM, CF_FROM_TIME, CF_SKIP_ON_ERROR, CF_N };
enum { FROM_LATEST, FROM_EARLIEST, FROM_TIME };

struct sstats {
    uint64_t matched_total, failed_total, pending, acked_total, dead_lettered_total,
        dropped_total, expired_total, last_at;
    char last_code[24];  /* "" when no failure yet */
    char last_error[320];
};

struct sub {
    char name[MQHUB_NAME_MAX + 1];
    size_t nlen;
    uint64_t id;
    topic_t *t;
    char *cfg;                 /* canonical config, owned */
    size_t cfg_len;
    msgpack_unpacked cu;       /* cfg decoded; cf points into it */
    const msgpack_object *cf;  /* CF_N items */
    struct sstats s;
    bool dirty, woke;
    sub_t *next;               /* name order */
    sub_t *dirty_next;
};

/* ---- small helpers ---- */

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

static void pack_opt_str(msgpack_packer *pk, const char *s, size_t len)
{
    if (s)
        mp_pack_str(pk, s, len);
    else
        msgpack_pack_nil(pk);
}

static void copy_str(char *dst, size_t cap, const msgpack_object *o)
{
    size_t n = o->type == MSGPACK_OBJECT_STR ? o->via.str.size : 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, n ? o->via.str.ptr : "", n);
    dst[n] = 0;
}

/* ---- records ---- */

static void sub_save(topics_t *ts, sub_t *s)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char k[9 + MQHUB_NAME_MAX];
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
    mp_pack_str(&pk, x->last_code, strlen(x->last_code));
    mp_pack_str(&pk, x->last_error, strlen(x->last_error));
    k[0] = 'S';
    store_be64_put(k + 1, s->t->id);
    memcpy(k + 9, s->name, s->nlen);
    topic_put(ts, k, 9 + s->nlen, sb.data, sb.size);
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

/* ---- in-memory objects ---- */

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
    for (sub_t **pp = &ts->dirty_subs; s->dirty && *pp; pp = &(*pp)->dirty_next) {
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

struct rebuild {
    topic_t *t;
    sub_t *last; /* S records come in name order: each is appended here */
    int rc;
};

static int rebuild_sub(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct rebuild *r = arg;
    sub_t *s = kl - 9 <= MQHUB_NAME_MAX ? calloc(1, sizeof(*s)) : NULL;
    if (!s || sub_decode(s, v, vl) != 0) {
        if (s)
            sub_destroy(s);
        r->rc = MQHUB_EINTERNAL;
        return 1;
    }
    memcpy(s->name, k + 9, kl - 9);
    s->nlen = kl - 9;
    s->t = r->t;
    *(r->last ? &r->last->next : &r->t->subs) = s;
    r->last = s;
    return 0;
}

int sub_rebuild(topics_t *ts, topic_t *t)
{
    struct rebuild r = {t, NULL, 0};
    unsigned char p[9];
    p[0] = 'S';
    store_be64_put(p + 1, t->id);
    store_scan(ts->st, p, 9, NULL, 0, rebuild_sub, &r);
    return r.rc;
}

void sub_free_all(topics_t *ts, topic_t *t)
{
    while (t->subs) {
        sub_t *s = t->subs;
        sub_unlink(ts, s);
        sub_destroy(s);
    }
}

static void push_event(topics_t *ts, const sub_t *s, enum fsm_push_event ev, uint64_t seq)
{
    if (ts->cb)
        ts->cb(ts->cb_arg, ev, s->t->name, s->t->nlen, s->name, s->nlen, seq);
}

void sub_end(topics_t *ts)
{
    while (ts->dirty_subs) {
        sub_t *s = ts->dirty_subs;
        ts->dirty_subs = s->dirty_next;
        s->dirty = false;
        sub_save(ts, s);
        if (s->woke)
            push_event(ts, s, FSM_PUSH_PENDING, 0);
        s->woke = false;
    }
}

void sub_pack_names(msgpack_packer *pk, const topic_t *t)
{
    uint32_t n = 0;
    for (const sub_t *s = t->subs; s; s = s->next)
        n++;
    msgpack_pack_array(pk, n);
    for (const sub_t *s = t->subs; s; s = s->next)
        mp_pack_str(pk, s->name, s->nlen);
}

void sub_script_users(const topic_t *t, const char *script, size_t len,
                      void (*fn)(void *arg, const char *user), void *arg)
{
    char user[2 * MQHUB_NAME_MAX + 2];
    for (sub_t *s = t->subs; s; s = s->next) {
        if (str_eq(&s->cf[CF_SCRIPT], script, len)) {
            snprintf(user, sizeof(user), "%s/%s", t->name, s->name);
            fn(arg, user);
        }
    }
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

/* Every filter the subscription has must match (tags AND bindings AND
 * script). 0 with *match, or a code with the sentence in @err. */
static int sub_match(topics_t *ts, const sub_t *s, const fsm_push_msg_t *m, bool *match,
                     char *err, size_t errlen)
{
    const msgpack_object *tags = &s->cf[CF_TAGS], *binds = &s->cf[CF_BINDINGS];
    const msgpack_object *script = &s->cf[CF_SCRIPT];
    *match = (tags->via.array.size == 0 || route_tags_match(tags, m->tags)) &&
             (binds->via.array.size == 0 || route_bindings_match(binds, m->key));
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
    store_key_id_seq(k, 'W', s->id, seq);
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
static void deliver(topics_t *ts, cmd_t *c, sub_t *s, const fsm_push_msg_t *m)
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
    topic_put(ts, k, KEY_LEN, "", 0);
    s->s.pending++;
    s->woke = true;
    mark_sub(ts, s);
}

/* Match and deliver; true when it matched. */
static bool offer(topics_t *ts, cmd_t *c, sub_t *s, const fsm_push_msg_t *m)
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

/* Add the references the last offers made to topic message @seq of @t. */
static void refs_flush(topics_t *ts, const topic_t *t, uint64_t seq)
{
    if (body_add_refs(ts->st, t->id, seq, ts->refs) != 0)
        ts->failed = true;
    ts->refs = 0;
}

uint64_t sub_fan_out(topics_t *ts, cmd_t *c, topic_t *t, const fsm_push_msg_t *m)
{
    uint64_t delivered = 0;
    for (sub_t *s = t->subs; s; s = s->next) {
        if (offer(ts, c, s, m)) {
            delivered++;
            s->s.matched_total++;
            mark_sub(ts, s);
        }
    }
    refs_flush(ts, t, m->seq);
    return delivered;
}

void sub_expired(topics_t *ts, topic_t *t, uint64_t seq)
{
    for (sub_t *s = t->subs; s; s = s->next) {
        if (sub_is_push(s) && pending_del(ts, s, seq))
            s->s.expired_total++;
    }
}

/* ---- replay (from at create, rewind) ---- */

/* Offer every retained message with seq >= @seq published at or after
 * @time to @s again; returns how many matched. */
static uint64_t replay(topics_t *ts, cmd_t *c, sub_t *s, uint64_t seq, uint64_t time)
{
    body_seqs_t list;
    uint64_t n = 0;
    topic_seqs_since(ts, s->t, seq, time, &list);
    for (size_t i = 0; i < list.n; i++) {
        struct tmsg tm;
        if (topic_msg_load(ts, s->t, list.v[i], &tm) == 0 && offer(ts, c, s, &tm.m))
            n++;
        topic_msg_free(&tm);
        refs_flush(ts, s->t, list.v[i]);
    }
    free(list.v);
    return n;
}

/* ---- subscription ops ---- */

static int arg_sub(topics_t *ts, cmd_t *c, const char *key, topic_t **tp, sub_t **out)
{
    const char *name;
    size_t len;
    int rc = topic_arg(ts, c, "topic", tp);
    if (rc || (rc = cmd_arg_name(c, c->req, key, &name, &len)))
        return rc;
    if (!(*out = sub_find(*tp, name, len)))
        return cmd_fail(c, MQHUB_ENOT_FOUND,
                        "subscription '%.*s' of topic '%s' does not exist; create it with "
                        "subscription.create", (int)len, name, (*tp)->name);
    return 0;
}

static int arg_retry(cmd_t *c, fsm_retry_t *r)
{
    const msgpack_object *m = mp_map_get(c->req, "retry");
    const char *strategy;
    size_t sl;
    uint64_t attempts = 16;
    int rc;
    *r = (fsm_retry_t){false, 16, 1000, 300000};
    if (!m || m->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (m->type != MSGPACK_OBJECT_MAP)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'retry' must be a map {strategy, "
                        "max_attempts, interval_ms, max_interval_ms}");
    if ((rc = cmd_arg_str(c, m, "strategy", false, &strategy, &sl)) ||
        (rc = cmd_arg_uint(c, m, "max_attempts", 1, MQHUB_RETRY_MAX_ATTEMPTS_MAX, &attempts)) ||
        (rc = cmd_arg_uint(c, m, "interval_ms", MQHUB_RETRY_INTERVAL_MS_MIN,
                                    MQHUB_RETRY_INTERVAL_MS_MAX, &r->interval_ms)) ||
        (rc = cmd_arg_uint(c, m, "max_interval_ms", MQHUB_RETRY_INTERVAL_MS_MIN,
                                    MQHUB_RETRY_MAX_INTERVAL_MS_MAX, &r->max_interval_ms)))
        return rc;
    if (strategy && !(sl == 7 && memcmp(strategy, "backoff", 7) == 0) &&
        !(sl == 11 && memcmp(strategy, "exponential", 11) == 0))
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'strategy' must be \"backoff\" or \"exponential\"");
    r->exponential = strategy && sl == 11;
    r->max_attempts = (uint32_t)attempts;
    if (r->max_interval_ms < r->interval_ms)
        r->max_interval_ms = r->interval_ms;
    return 0;
}

static int arg_from(cmd_t *c, int *kind, uint64_t *time)
{
    const msgpack_object *v = mp_map_get(c->req, "from");
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
        return cmd_arg_uint(c, c->req, "from", 0, UINT64_MAX, time);
    }
    return cmd_fail(c, MQHUB_EBAD_REQUEST,
                    "field 'from' must be \"latest\", \"earliest\" or a time (ms since epoch)");
}

/* The endpoint map: {queue: name} (the queue must exist) or {push: true}. */
static int arg_endpoint(topics_t *ts, cmd_t *c, const char **q, size_t *ql)
{
    const msgpack_object *e = mp_map_get(c->req, "endpoint"), *push;
    int rc;
    *q = NULL;
    *ql = 0;
    if (!e || e->type != MSGPACK_OBJECT_MAP)
        goto bad;
    if (mp_map_get(e, "queue")) {
        if ((rc = cmd_arg_name(c, e, "queue", q, ql)))
            return rc;
        if (!queue_exists(ts->qs, *q, *ql))
            return cmd_fail(c, MQHUB_ENOT_FOUND,
                            "endpoint queue '%.*s' does not exist; create it first", (int)*ql, *q);
        return 0;
    }
    if ((push = mp_map_get(e, "push")) && push->type == MSGPACK_OBJECT_BOOLEAN && push->via.boolean)
        return 0;
bad:
    return cmd_fail(c, MQHUB_EBAD_REQUEST,
                    "field 'endpoint' must be {queue: name} or {push: true}");
}

/* Validate subscription.create and pack its canonical config into @sb. */
static int config_pack(topics_t *ts, cmd_t *c, msgpack_sbuffer *sb)
{
    const char *q, *script = NULL, *dlq = NULL, *fb;
    size_t ql, scl = 0, dl = 0, fbl;
    const msgpack_object *tags, *binds;
    fsm_retry_t r;
    int from, rc;
    uint64_t from_time;
    msgpack_packer pk;
    if ((rc = arg_endpoint(ts, c, &q, &ql)) ||
        (rc = topic_arg_strs(c, c->req, "filter_tags", FILTER_MAX, 1, MQHUB_TAG_LEN_MAX,
                             &tags)) ||
        (rc = topic_arg_strs(c, c->req, "binding_keys", FILTER_MAX, 0, MQHUB_ROUTING_KEY_MAX,
                             &binds)) ||
        (rc = arg_retry(c, &r)) || (rc = arg_from(c, &from, &from_time)))
        return rc;
    if (mp_map_get(c->req, "filter_script") &&
        (rc = cmd_arg_name(c, c->req, "filter_script", &script, &scl)))
        return rc;
    if (script && !(ts->hooks.exists && ts->hooks.exists(ts->hooks.arg, script, scl)))
        return cmd_fail(c, MQHUB_ENOT_FOUND,
                        "script '%.*s' does not exist (load it with script.load)", (int)scl, script);
    if ((rc = cmd_arg_str(c, c->req, "filter_fallback", false, &fb, &fbl)))
        return rc;
    if (fb && !(fbl == 4 && memcmp(fb, "skip", 4) == 0) &&
        !(fbl == 7 && memcmp(fb, "deliver", 7) == 0))
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'filter_fallback' must be \"deliver\" or "
                        "\"skip\"");
    if (mp_map_get(c->req, "dead_letter_queue") &&
        (rc = cmd_arg_name(c, c->req, "dead_letter_queue", &dlq, &dl)))
        return rc;
    if (dlq && q)
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'dead_letter_queue' applies to push subscriptions only");
    if (dlq && !queue_exists(ts->qs, dlq, dl))
        return cmd_fail(c, MQHUB_ENOT_FOUND,
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

int sub_op_create(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    const char *name;
    size_t len;
    msgpack_sbuffer sb;
    sub_t *s;
    int rc = topic_arg(ts, c, "topic", &t);
    if (rc || (rc = cmd_arg_name(c, c->req, "name", &name, &len)))
        return rc;
    msgpack_sbuffer_init(&sb);
    if ((rc = config_pack(ts, c, &sb)))
        goto out;
    if ((s = sub_find(t, name, len))) {
        if (s->cfg_len != sb.size || memcmp(s->cfg, sb.data, sb.size) != 0)
            rc = cmd_fail(c, MQHUB_EEXISTS, "subscription '%.*s' exists with other settings; "
                          "delete it first to change them", (int)len, name);
        goto out;
    }
    size_t cfg_len = sb.size;
    if (!(s = calloc(1, sizeof(*s))) || sub_bind(s, msgpack_sbuffer_release(&sb), cfg_len) != 0) {
        if (s)
            sub_destroy(s);
        rc = cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
        goto out;
    }
    memcpy(s->name, name, len);
    s->nlen = len;
    s->id = ts->next_sid++;
    s->t = t;
    sub_link(s);
    topic_put_meta(ts, META_SID, ts->next_sid);
    mark_sub(ts, s);
    if (s->cf[CF_FROM].via.u64 != FROM_LATEST)
        replay(ts, c, s, 0, s->cf[CF_FROM_TIME].via.u64);
out:
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* Remove S<tid><name>; the pending set W<sid> is left to tick's reclaim
 * (queue_reclaim_mark), so a delete is O(1) whatever is pending. */
static void sub_del_records(topics_t *ts, const sub_t *s)
{
    unsigned char p[9 + MQHUB_NAME_MAX];
    queue_reclaim_mark(ts->qs, 'W', s->id, UINT64_MAX, false);
    p[0] = 'S';
    store_be64_put(p + 1, s->t->id);
    memcpy(p + 9, s->name, s->nlen);
    store_del(ts->st, p, 9 + s->nlen);
}

void sub_delete_all(topics_t *ts, topic_t *t)
{
    for (sub_t *s = t->subs; s; s = s->next)
        sub_del_records(ts, s);
}

int sub_op_delete(cmd_t *c)
{
    topics_t *ts = c->ts;
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

int sub_op_list(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    int rc = topic_arg(ts, c, "topic", &t);
    if (rc || !c->pk)
        return rc;
    cmd_reply_key(c, "subscriptions");
    sub_pack_names(c->pk, t);
    return 0;
}

static int first_pending(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    (void)v, (void)vl;
    if (kl == KEY_LEN)
        *(uint64_t *)arg = store_be64_get((const unsigned char *)k + 9);
    return 1;
}

/* The lowest pending seq, or the topic's next seq when nothing is pending. */
static uint64_t sub_cursor(topics_t *ts, const sub_t *s)
{
    unsigned char p[9];
    uint64_t seq = s->t->next_seq;
    p[0] = 'W';
    store_be64_put(p + 1, s->id);
    store_scan(ts->st, p, 9, NULL, 0, first_pending, &seq);
    return seq;
}

static void pack_sub_config(msgpack_packer *pk, const sub_t *s)
{
    const msgpack_object *cf = s->cf;
    mp_pack_str(pk, "endpoint", 8);
    msgpack_pack_map(pk, 1);
    if (sub_is_push(s)) {
        mp_pack_str(pk, "push", 4);
        msgpack_pack_true(pk);
    } else {
        mp_pack_str(pk, "queue", 5);
        msgpack_pack_object(pk, cf[CF_QUEUE]);
    }
    mp_pack_str(pk, "filter_tags", 11);
    msgpack_pack_object(pk, cf[CF_TAGS]);
    mp_pack_str(pk, "binding_keys", 12);
    msgpack_pack_object(pk, cf[CF_BINDINGS]);
    mp_pack_str(pk, "filter_script", 13);
    msgpack_pack_object(pk, cf[CF_SCRIPT]);
    cmd_pack_kv_str(pk, "filter_fallback", cf[CF_SKIP_ON_ERROR].via.boolean ? "skip" : "deliver",
                    cf[CF_SKIP_ON_ERROR].via.boolean ? 4 : 7);
    mp_pack_str(pk, "retry", 5);
    msgpack_pack_map(pk, 4);
    cmd_pack_kv_str(pk, "strategy", cf[CF_EXP].via.boolean ? "exponential" : "backoff",
                    cf[CF_EXP].via.boolean ? 11 : 7);
    cmd_pack_kv_uint(pk, "max_attempts", cf[CF_ATTEMPTS].via.u64);
    cmd_pack_kv_uint(pk, "interval_ms", cf[CF_INTERVAL].via.u64);
    cmd_pack_kv_uint(pk, "max_interval_ms", cf[CF_MAX_INTERVAL].via.u64);
    mp_pack_str(pk, "dead_letter_queue", 17);
    msgpack_pack_object(pk, cf[CF_DLQ]);
    mp_pack_str(pk, "from", 4);
    if (cf[CF_FROM].via.u64 == FROM_TIME)
        msgpack_pack_uint64(pk, cf[CF_FROM_TIME].via.u64);
    else if (cf[CF_FROM].via.u64 == FROM_EARLIEST)
        mp_pack_str(pk, "earliest", 8);
    else
        mp_pack_str(pk, "latest", 6);
}

static void pack_sub_stats(topics_t *ts, msgpack_packer *pk, const sub_t *s)
{
    const struct sstats *x = &s->s;
    bool push = sub_is_push(s);
    msgpack_pack_map(pk, 6 + (x->last_code[0] != 0) + 2 * push);
    cmd_pack_kv_uint(pk, "matched_total", x->matched_total);
    cmd_pack_kv_uint(pk, "failed_total", x->failed_total);
    if (x->last_code[0]) {
        mp_pack_str(pk, "last_error", 10);
        msgpack_pack_map(pk, 3);
        cmd_pack_kv_str(pk, "code", x->last_code, strlen(x->last_code));
        cmd_pack_kv_str(pk, "error", x->last_error, strlen(x->last_error));
        cmd_pack_kv_uint(pk, "at", x->last_at);
    }
    if (push) {
        cmd_pack_kv_uint(pk, "pending", x->pending);
        cmd_pack_kv_uint(pk, "cursor", sub_cursor(ts, s));
    }
    cmd_pack_kv_uint(pk, "acked_total", x->acked_total);
    cmd_pack_kv_uint(pk, "dead_lettered_total", x->dead_lettered_total);
    cmd_pack_kv_uint(pk, "dropped_total", x->dropped_total);
    cmd_pack_kv_uint(pk, "expired_total", x->expired_total);
}

int sub_op_get(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    sub_t *s;
    int rc = arg_sub(ts, c, "name", &t, &s);
    if (rc || !c->pk)
        return rc;
    cmd_reply_key(c, "topic");
    mp_pack_str(c->pk, t->name, t->nlen);
    cmd_reply_key(c, "name");
    mp_pack_str(c->pk, s->name, s->nlen);
    pack_sub_config(c->pk, s);
    c->n_fields += 8;
    cmd_reply_key(c, "stats");
    pack_sub_stats(ts, c->pk, s);
    return 0;
}

int sub_op_rewind(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    sub_t *s;
    uint64_t seq = 0, time = 0;
    int rc = arg_sub(ts, c, "name", &t, &s);
    if (rc || (rc = cmd_arg_uint(c, c->req, "time", 0, UINT64_MAX, &time)) ||
        (rc = cmd_arg_uint(c, c->req, "seq", 0, UINT64_MAX, &seq)))
        return rc;
    if (!mp_map_get(c->req, "time") && !mp_map_get(c->req, "seq"))
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "give field 'time' (ms since epoch) or 'seq' to rewind from");
    cmd_reply_uint(c, "rewound", replay(ts, c, s, seq, time));
    push_event(ts, s, FSM_PUSH_REWOUND, 0);
    return 0;
}

/* ---- push: ack, sub.dead ---- */

static int arg_push_sub(topics_t *ts, cmd_t *c, sub_t **out)
{
    topic_t *t;
    int rc = arg_sub(ts, c, "subscription", &t, out);
    if (rc == 0 && !sub_is_push(*out))
        rc = cmd_fail(c, MQHUB_EBAD_REQUEST,
                      "subscription '%s' has a queue endpoint: receive from its queue instead",
                      (*out)->name);
    return rc;
}

struct acks {
    topics_t *ts;
    sub_t *s;
};

static int ack_item(void *arg, cmd_t *c, const msgpack_object *v)
{
    struct acks *b = arg;
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'seqs': each seq must be an unsigned integer");
    if (!pending_del(b->ts, b->s, v->via.u64))
        return cmd_fail(c, MQHUB_ENOT_FOUND, "seq %llu is not pending (acknowledged, "
                        "dead-lettered or expired)", (unsigned long long)v->via.u64);
    b->s->s.acked_total++;
    push_event(b->ts, b->s, FSM_PUSH_ACKED, v->via.u64);
    if (c->pk)
        cmd_pack_ok_item(c->pk);
    return 0;
}

int sub_op_ack(cmd_t *c)
{
    topics_t *ts = c->ts;
    struct acks b = {.ts = ts};
    int rc = arg_push_sub(ts, c, &b.s);
    return rc ? rc : cmd_batch(c, "seqs", "seqs", MQHUB_BATCH_MAX, ack_item, &b);
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
    cmd_pack_kv_str(&pk, own[0], s->t->name, s->t->nlen);
    cmd_pack_kv_str(&pk, own[1], s->name, s->nlen);
}

/* Move pending message @tm of @s to its dead-letter queue; a code when it
 * could not (no such queue, full, too large). */
static int dead_letter(topics_t *ts, cmd_t *c, sub_t *s, const struct tmsg *tm)
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

int sub_op_dead(cmd_t *c)
{
    topics_t *ts = c->ts;
    sub_t *s;
    uint64_t seq = 0, attempts = 0;
    struct tmsg tm;
    int rc = arg_push_sub(ts, c, &s);
    if (rc || (rc = cmd_arg_uint(c, c->req, "seq", 1, UINT64_MAX, &seq)) ||
        (rc = cmd_arg_uint(c, c->req, "attempts", 0, UINT64_MAX, &attempts)))
        return rc;
    if (!pending_has(ts, s, seq))
        return cmd_fail(c, MQHUB_ENOT_FOUND, "seq %llu is not pending",
                        (unsigned long long)seq);
    bool moved = topic_msg_load(ts, s->t, seq, &tm) == 0 && dead_letter(ts, c, s, &tm) == 0;
    topic_msg_free(&tm);
    if (moved)
        s->s.dead_lettered_total++;
    else
        s->s.dropped_total++;
    pending_del(ts, s, seq);
    cmd_reply_key(c, "outcome");
    if (c->pk)
        mp_pack_str(c->pk, moved ? "dead_lettered" : "dropped", moved ? 13 : 7);
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
    body_seqs_t list;
    unsigned max;
};

static int pending_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct visit *p = arg;
    (void)v, (void)vl;
    if (p->list.n >= p->max)
        return 1;
    return kl == KEY_LEN ? body_seqs_push(&p->list, k) : 0;
}

/* Pending seqs are read in chunks, so a visit that stops early (a session's
 * credit is used up) never loads the whole pending set. */
#define VISIT_CHUNK 256

int sub_push_pending(topics_t *ts, const char *topic, size_t tl, const char *sub, size_t sl,
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
            if (topic_msg_load(ts, s->t, p.list.v[i], &tm) == 0) {
                n++;
                stop = fn(arg, &tm.m) != 0;
            }
            topic_msg_free(&tm);
            after = p.list.v[i];
        }
        if (p.list.n < p.max)
            break;
    }
    free(p.list.v);
    return (int)n;
}

bool sub_push_is_pending(topics_t *ts, const char *topic, size_t tl, const char *sub,
                         size_t sl, uint64_t seq)
{
    sub_t *s = push_sub(ts, topic, tl, sub, sl);
    return s && pending_has(ts, s, seq);
}

int sub_push_retry(topics_t *ts, const char *topic, size_t tl, const char *sub, size_t sl,
                   fsm_retry_t *out)
{
    sub_t *s = push_sub(ts, topic, tl, sub, sl);
    if (!s)
        return MQHUB_ENOT_FOUND;
    *out = (fsm_retry_t){s->cf[CF_EXP].via.boolean, (uint32_t)s->cf[CF_ATTEMPTS].via.u64,
                         s->cf[CF_INTERVAL].via.u64, s->cf[CF_MAX_INTERVAL].via.u64};
    return 0;
}
