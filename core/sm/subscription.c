/* subscription.c: the subscriptions of topics — PROTOCOL.md "Topics". Called
 * by fsm.c (handlers sub_op_*: subscription.create/set/delete/get/list/rewind,
 * ack, topic.peek (a read of retained or pending messages), and the
 * internal op `sub.dead {topic, subscription, seq, attempts}` the leader
 * proposes when it gave up on a push message), by topic.c
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
 * that `ack`, `sub.dead` or retention removes. An http endpoint ({http: url,
 * format}) is a push endpoint whose pending messages a delivery plugin
 * (plugins/webhook) pushes to the URL; it finds them with the cross-topic
 * `subscription.list {endpoint: "http"}`. A failed delivery (queue full
 * or gone, script error) is counted in the subscription's stats, never
 * dropped silently, and never fails the publish. `from` at create and
 * subscription.rewind replay retained messages through the same path.
 * subscription.set replaces the config in place (sub_op_set): the pending set
 * and the stats stay, the next offer uses the new filters. An ephemeral push
 * subscription carries the owner the node wrote (its session, in the S record
 * after modified_at) and goes with `sub.reap` (sub_op_reap).
 *
 * State in the store (docs/architecture.md "Key layout"):
 *   #sid                      next subscription id (u64be)
 *   S<tid be64><name>         subscription record (sub_save): id, its
 *                             canonical config (bin), stats, created_at,
 *                             modified_at
 *   W<sid be64><seq be64>     a pending message of a push subscription
 * In memory: each topic's subscriptions in name order (topic_t.subs), and
 * the http ones of every topic in an ordered map (ts->http_subs, key
 * "topic\0name": topic then name order) for the cross-topic listing.
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
       CF_MAX_INTERVAL, CF_DLQ, CF_FROM, CF_FROM_TIME, CF_SKIP_ON_ERROR, CF_HTTP, CF_FORMAT,
       CF_N };
/* A config saved before http endpoints ends at CF_HTTP (sub_bind). */
#define CF_N_V1 CF_HTTP
enum { FROM_LATEST, FROM_EARLIEST, FROM_TIME };
enum { FORMAT_JSON, FORMAT_SIMPLIFIED }; /* CF_FORMAT of an http endpoint */
#define SREC_N 14 /* items of an S record (12 before created_at, modified_at) */
/* An ephemeral subscription's S record has one more item: its owner. */
#define SREC_N_OWNED (SREC_N + 1)
#define OWNER_MAX 64     /* bytes of an owner ("<node>.<boot>.<session>", hub.c) */
#define EPHEMERAL_MAX 64 /* ephemeral subscriptions one owner may hold */

struct sstats {
    uint64_t matched_total, failed_total, pending, acked_total, dead_lettered_total,
        dropped_total, expired_total, last_at;
    char last_code[24];  /* "" when no failure yet */
    char last_error[320];
};

struct sub {
    char name[MQHUB_NAME_MAX + 1];
    size_t nlen;
    uint64_t id, created_at, modified_at; /* entry clock, ms */
    topic_t *t;
    char *cfg;                 /* canonical config, owned */
    size_t cfg_len;
    msgpack_unpacked cu;       /* cfg decoded; cf points into it */
    const msgpack_object *cf;  /* CF_N items */
    struct sstats s;
    char owner[OWNER_MAX + 1]; /* ephemeral: the session owning it; "" durable */
    size_t olen;
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
    msgpack_pack_array(&pk, s->olen ? SREC_N_OWNED : SREC_N);
    msgpack_pack_uint64(&pk, s->id);
    msgpack_pack_bin(&pk, s->cfg_len);
    msgpack_pack_bin_body(&pk, s->cfg, s->cfg_len);
    for (size_t i = 0; i < 8; i++)
        msgpack_pack_uint64(&pk, nums[i]);
    mp_pack_str(&pk, x->last_code, strlen(x->last_code));
    mp_pack_str(&pk, x->last_error, strlen(x->last_error));
    msgpack_pack_uint64(&pk, s->created_at);
    msgpack_pack_uint64(&pk, s->modified_at);
    if (s->olen)
        mp_pack_str(&pk, s->owner, s->olen);
    k[0] = 'S';
    store_be64_put(k + 1, s->t->id);
    memcpy(k + 9, s->name, s->nlen);
    topic_put(ts, k, 9 + s->nlen, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* A config of CF_N_V1 items (saved before http endpoints) with no URL and
 * the json format appended: the config such a subscription has today, in a
 * new malloc'ed buffer (NULL when out of memory). */
static char *cfg_upgrade(const msgpack_object *old, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, CF_N);
    for (uint32_t i = 0; i < CF_N_V1; i++)
        msgpack_pack_object(&pk, old->via.array.ptr[i]);
    msgpack_pack_nil(&pk);
    msgpack_pack_uint8(&pk, FORMAT_JSON);
    *len = sb.size;
    return msgpack_sbuffer_release(&sb);
}

/* Take ownership of @cfg (malloc'ed) and point s->cf into it. */
static int sub_bind(sub_t *s, char *cfg, size_t len)
{
    s->cfg = cfg;
    s->cfg_len = len;
    msgpack_unpacked_init(&s->cu);
    if (msgpack_unpack_next(&s->cu, cfg, len, NULL) != MSGPACK_UNPACK_SUCCESS ||
        s->cu.data.type != MSGPACK_OBJECT_ARRAY)
        return MQHUB_EINTERNAL;
    if (s->cu.data.via.array.size == CF_N_V1) {
        char *up = cfg_upgrade(&s->cu.data, &len);
        msgpack_unpacked_destroy(&s->cu);
        free(s->cfg);
        s->cfg = NULL;
        return up ? sub_bind(s, up, len) : MQHUB_EINTERNAL;
    }
    if (s->cu.data.via.array.size != CF_N)
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
        u.data.type != MSGPACK_OBJECT_ARRAY ||
        (u.data.via.array.size != 12 && u.data.via.array.size != SREC_N &&
         u.data.via.array.size != SREC_N_OWNED))
        goto out;
    const msgpack_object *o = u.data.via.array.ptr;
    if (u.data.via.array.size == SREC_N_OWNED) {
        if (o[SREC_N].type != MSGPACK_OBJECT_STR || o[SREC_N].via.str.size == 0 ||
            o[SREC_N].via.str.size > OWNER_MAX)
            goto out;
        copy_str(s->owner, sizeof(s->owner), &o[SREC_N]);
        s->olen = o[SREC_N].via.str.size;
    }
    if (u.data.via.array.size >= SREC_N) {
        if (o[12].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            o[13].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            goto out;
        s->created_at = o[12].via.u64;
        s->modified_at = o[13].via.u64;
    }
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

/* The key of @s in ts->http_subs into @k: topic name, a 0 byte (which no
 * name holds, so topic then name order), name; returns its length. */
static size_t http_key(const sub_t *s, char k[2 * MQHUB_NAME_MAX + 1])
{
    memcpy(k, s->t->name, s->t->nlen);
    k[s->t->nlen] = 0;
    memcpy(k + s->t->nlen + 1, s->name, s->nlen);
    return s->t->nlen + 1 + s->nlen;
}

static bool sub_is_http(const sub_t *s);

/* Add @s (name, topic and config set) to ts->http_subs when it is an http
 * subscription. 0, or MQHUB_EINTERNAL when out of memory. */
static int http_index(topics_t *ts, sub_t *s)
{
    char k[2 * MQHUB_NAME_MAX + 1];
    if (!sub_is_http(s))
        return 0;
    return omap_put(&ts->http_subs, k, http_key(s, k), s) == 0 ? 0 : MQHUB_EINTERNAL;
}

static void sub_unlink(topics_t *ts, sub_t *s)
{
    char k[2 * MQHUB_NAME_MAX + 1];
    if (s->cf && sub_is_http(s))
        omap_del(&ts->http_subs, k, http_key(s, k));
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

/* Push and http endpoints: a pending set the leader delivers. */
static bool sub_is_push(const sub_t *s)
{
    return s->cf[CF_QUEUE].type == MSGPACK_OBJECT_NIL;
}

static bool sub_is_http(const sub_t *s)
{
    return s->cf[CF_HTTP].type == MSGPACK_OBJECT_STR;
}

struct rebuild {
    topics_t *ts;
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
    if (http_index(r->ts, s) != 0) {
        r->rc = MQHUB_EINTERNAL;
        return 1;
    }
    return 0;
}

int sub_rebuild(topics_t *ts, topic_t *t)
{
    struct rebuild r = {ts, t, NULL, 0};
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

/* An endpoint: a queue name, an http URL, or neither (push). */
struct endpoint {
    const char *q, *url;
    size_t ql, ul;
    uint8_t format; /* FORMAT_*, http only */
};

/* endpoint.http: http:// or https:// and at least one byte more, at most
 * MQHUB_SUB_URL_MAX bytes, no space or control character; endpoint.format:
 * "json" (default) or "simplified". */
static int arg_http(cmd_t *c, const msgpack_object *e, struct endpoint *ep)
{
    const msgpack_object *v = mp_map_get(e, "http");
    const char *fmt;
    size_t fl, n;
    int rc;
    if (v->type != MSGPACK_OBJECT_STR)
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'endpoint.http' must be a string (an http:// or https:// URL)");
    ep->url = v->via.str.ptr;
    ep->ul = n = v->via.str.size;
    if (n > MQHUB_SUB_URL_MAX)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'endpoint.http' holds %zu bytes, at most "
                        "%d allowed", n, MQHUB_SUB_URL_MAX);
    if (!(n > 7 && memcmp(ep->url, "http://", 7) == 0) &&
        !(n > 8 && memcmp(ep->url, "https://", 8) == 0))
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'endpoint.http' must start with http:// "
                        "or https:// followed by a host");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)ep->url[i];
        if (ch <= 0x20 || ch == 0x7f)
            return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'endpoint.http' must not contain "
                            "spaces or control characters (byte %zu is 0x%02x)", i, ch);
    }
    if ((rc = cmd_arg_str(c, e, "format", false, &fmt, &fl)))
        return cmd_fail(c, rc, "field 'endpoint.format' must be \"json\" or \"simplified\"");
    ep->format = FORMAT_JSON;
    if (fmt && fl == 10 && memcmp(fmt, "simplified", 10) == 0)
        ep->format = FORMAT_SIMPLIFIED;
    else if (fmt && !(fl == 4 && memcmp(fmt, "json", 4) == 0))
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'endpoint.format' must be \"json\" or \"simplified\"");
    return 0;
}

/* The endpoint map: exactly one of {queue: name} (the queue must exist),
 * {push: true} or {http: url, format?}. */
static int arg_endpoint(topics_t *ts, cmd_t *c, struct endpoint *ep)
{
    const msgpack_object *e = mp_map_get(c->req, "endpoint"), *push;
    int rc;
    *ep = (struct endpoint){.format = FORMAT_JSON};
    if (!e || e->type != MSGPACK_OBJECT_MAP)
        goto bad;
    push = mp_map_get(e, "push");
    bool is_push = push && push->type == MSGPACK_OBJECT_BOOLEAN && push->via.boolean;
    if ((mp_map_get(e, "queue") != NULL) + (mp_map_get(e, "http") != NULL) + is_push != 1)
        goto bad;
    if (mp_map_get(e, "http"))
        return arg_http(c, e, ep);
    if (mp_map_get(e, "queue")) {
        if ((rc = cmd_arg_name(c, e, "queue", &ep->q, &ep->ql)))
            return rc;
        if (!queue_exists(ts->qs, ep->q, ep->ql))
            return cmd_fail(c, MQHUB_ENOT_FOUND, "endpoint queue '%.*s' does not exist; "
                            "create it first", (int)ep->ql, ep->q);
    }
    return 0;
bad:
    return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'endpoint' must be {queue: name}, "
                    "{push: true} or {http: url, format?}");
}

static const char *endpoint_kind(const sub_t *s)
{
    return !sub_is_push(s) ? "queue" : sub_is_http(s) ? "http" : "push";
}

/* subscription.set's endpoint: absent keeps @base's; an http endpoint may
 * get another URL or format, no endpoint may change kind. */
static int arg_endpoint_set(topics_t *ts, cmd_t *c, const sub_t *base, struct endpoint *ep)
{
    const msgpack_object *cf = base->cf;
    int rc;
    if (!mp_map_get(c->req, "endpoint")) {
        *ep = (struct endpoint){.format = (uint8_t)cf[CF_FORMAT].via.u64};
        if (cf[CF_QUEUE].type == MSGPACK_OBJECT_STR)
            ep->q = cf[CF_QUEUE].via.str.ptr, ep->ql = cf[CF_QUEUE].via.str.size;
        if (sub_is_http(base))
            ep->url = cf[CF_HTTP].via.str.ptr, ep->ul = cf[CF_HTTP].via.str.size;
        return 0;
    }
    if ((rc = arg_endpoint(ts, c, ep)))
        return rc;
    if (!sub_is_http(base) || !ep->url)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "subscription '%s' has a %s endpoint and field "
                        "'endpoint' gives a%s %s one: an endpoint cannot change kind (only an "
                        "http endpoint's url and format can change); delete the subscription "
                        "and create it again", base->name, endpoint_kind(base),
                        ep->url ? "n" : "", ep->q ? "queue" : ep->url ? "http" : "push");
    return 0;
}

/* An optional string list of subscription.set: absent keeps @keep. */
static int arg_strs_or(cmd_t *c, const char *key, size_t minlen, size_t maxlen,
                       const msgpack_object *keep, const msgpack_object **out)
{
    if (keep && !mp_map_get(c->req, key)) {
        *out = keep;
        return 0;
    }
    return topic_arg_strs(c, c->req, key, FILTER_MAX, minlen, maxlen, out);
}

/* An optional name (filter_script, dead_letter_queue): absent keeps @keep's
 * (create: none), nil removes it. */
static int arg_opt_name(cmd_t *c, const char *key, const msgpack_object *keep,
                        const char **s, size_t *len)
{
    const msgpack_object *v = mp_map_get(c->req, key);
    *s = NULL;
    *len = 0;
    if (!v && keep && keep->type == MSGPACK_OBJECT_STR)
        *s = keep->via.str.ptr, *len = keep->via.str.size;
    if (!v || v->type == MSGPACK_OBJECT_NIL)
        return 0;
    return cmd_arg_name(c, c->req, key, s, len);
}

/* Validate subscription.create (@base NULL) or subscription.set (@base the
 * subscription: every absent field keeps its value) and pack the canonical
 * config into @sb. */
static int config_pack(topics_t *ts, cmd_t *c, const sub_t *base, msgpack_sbuffer *sb)
{
    const msgpack_object *cf = base ? base->cf : NULL;
    const char *script, *dlq, *fb;
    size_t scl, dl, fbl;
    const msgpack_object *tags, *binds;
    struct endpoint ep;
    fsm_retry_t r;
    int from = FROM_LATEST, rc;
    uint64_t from_time = 0;
    bool skip;
    msgpack_packer pk;
    if ((rc = base ? arg_endpoint_set(ts, c, base, &ep) : arg_endpoint(ts, c, &ep)) ||
        (rc = arg_strs_or(c, "filter_tags", 1, MQHUB_TAG_LEN_MAX, cf ? &cf[CF_TAGS] : NULL,
                          &tags)) ||
        (rc = arg_strs_or(c, "binding_keys", 0, MQHUB_ROUTING_KEY_MAX,
                          cf ? &cf[CF_BINDINGS] : NULL, &binds)) ||
        (rc = arg_retry(c, &r)) || (!base && (rc = arg_from(c, &from, &from_time))) ||
        (rc = arg_opt_name(c, "filter_script", cf ? &cf[CF_SCRIPT] : NULL, &script, &scl)) ||
        (rc = arg_opt_name(c, "dead_letter_queue", cf ? &cf[CF_DLQ] : NULL, &dlq, &dl)))
        return rc;
    if (base && !mp_map_get(c->req, "retry"))
        r = (fsm_retry_t){cf[CF_EXP].via.boolean, (uint32_t)cf[CF_ATTEMPTS].via.u64,
                          cf[CF_INTERVAL].via.u64, cf[CF_MAX_INTERVAL].via.u64};
    if (base)
        from = (int)cf[CF_FROM].via.u64, from_time = cf[CF_FROM_TIME].via.u64;
    if (mp_map_get(c->req, "filter_script") && script &&
        !(ts->hooks.exists && ts->hooks.exists(ts->hooks.arg, script, scl)))
        return cmd_fail(c, MQHUB_ENOT_FOUND,
                        "script '%.*s' does not exist (load it with script.load)", (int)scl, script);
    if ((rc = cmd_arg_str(c, c->req, "filter_fallback", false, &fb, &fbl)))
        return rc;
    if (fb && !(fbl == 4 && memcmp(fb, "skip", 4) == 0) &&
        !(fbl == 7 && memcmp(fb, "deliver", 7) == 0))
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'filter_fallback' must be \"deliver\" or "
                        "\"skip\"");
    skip = fb ? fbl == 4 : base && cf[CF_SKIP_ON_ERROR].via.boolean;
    if (dlq && ep.q)
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'dead_letter_queue' applies to push and http subscriptions only");
    if (mp_map_get(c->req, "dead_letter_queue") && dlq && !queue_exists(ts->qs, dlq, dl))
        return cmd_fail(c, MQHUB_ENOT_FOUND,
                        "dead-letter queue '%.*s' does not exist; create it first", (int)dl, dlq);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, CF_N);
    pack_opt_str(&pk, ep.q, ep.ql);
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
    pack_bool(&pk, skip);
    pack_opt_str(&pk, ep.url, ep.ul);
    msgpack_pack_uint8(&pk, ep.url ? ep.format : FORMAT_JSON);
    return 0;
}

/* ---- ephemeral subscriptions: owned by a session, deleted with it ---- */

/* The ephemeral subscriptions of @owner (@len bytes), over every topic. */
static uint64_t owned_count(const topics_t *ts, const char *owner, size_t len)
{
    uint64_t n = 0;
    for (const topic_t *t = ts->first; t; t = t->next)
        for (const sub_t *s = t->subs; s; s = s->next)
            n += s->olen == len && memcmp(s->owner, owner, len) == 0;
    return n;
}

/* Fields `ephemeral` and `owner` of subscription.create: *owner NULL for a
 * durable subscription. `owner` is written by the node that took the
 * request (the creating session; a client's is replaced), so a request
 * without it did not come through a node. */
static int arg_owner(cmd_t *c, const char **owner, size_t *len)
{
    const msgpack_object *e = mp_map_get(c->req, "ephemeral");
    int rc;
    *owner = NULL;
    *len = 0;
    if (!e || e->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (e->type != MSGPACK_OBJECT_BOOLEAN)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'ephemeral' must be a boolean");
    if (!e->via.boolean)
        return 0;
    if ((rc = cmd_arg_str(c, c->req, "owner", true, owner, len)))
        return rc;
    if (*len == 0 || *len > OWNER_MAX)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'owner' must have 1-%d bytes", OWNER_MAX);
    return 0;
}

int sub_op_create(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    const char *name, *owner;
    size_t len, olen;
    msgpack_sbuffer sb;
    sub_t *s;
    int rc = topic_arg(ts, c, "topic", &t);
    if (rc || (rc = cmd_arg_name(c, c->req, "name", &name, &len)))
        return rc;
    msgpack_sbuffer_init(&sb);
    if ((rc = config_pack(ts, c, NULL, &sb)))
        goto out;
    if ((rc = arg_owner(c, &owner, &olen)))
        goto out;
    if ((s = sub_find(t, name, len))) {
        /* The same settings again: ok (an ephemeral one: for its owner only). */
        if (s->cfg_len != sb.size || memcmp(s->cfg, sb.data, sb.size) != 0 ||
            s->olen != olen || memcmp(s->owner, owner ? owner : "", olen) != 0)
            rc = cmd_fail(c, MQHUB_EEXISTS, "subscription '%.*s' exists with other settings%s; "
                          "use subscription.set to change them", (int)len, name,
                          s->olen ? " (an ephemeral one, of another session)" : "");
        goto out;
    }
    if (owner && owned_count(ts, owner, olen) >= EPHEMERAL_MAX) {
        rc = cmd_fail(c, MQHUB_EBAD_REQUEST,
                      "this session holds %d ephemeral subscriptions, the most one may; "
                      "delete some first", EPHEMERAL_MAX);
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
    s->t = t;
    if (owner && (!sub_is_push(s) || sub_is_http(s))) {
        sub_destroy(s);
        rc = cmd_fail(c, MQHUB_EBAD_REQUEST,
                      "an ephemeral subscription has endpoint {push: true}");
        goto out;
    }
    memcpy(s->owner, owner ? owner : "", olen);
    s->olen = olen;
    if (http_index(ts, s) != 0) {
        sub_destroy(s);
        rc = cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
        goto out;
    }
    s->id = ts->next_sid++;
    s->created_at = s->modified_at = ts->now;
    sub_link(s);
    topic_put_meta(ts, META_SID, ts->next_sid);
    mark_sub(ts, s);
    if (s->cf[CF_FROM].via.u64 != FROM_LATEST)
        replay(ts, c, s, 0, s->cf[CF_FROM_TIME].via.u64);
out:
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* subscription.set: the new config replaces the old one in place — the
 * pending set (W records), the cursor and the stats stay, nothing is
 * replayed; the next publish is offered with the new filters. */
int sub_op_set(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    sub_t *s, nb = {.cfg = NULL};
    msgpack_sbuffer sb;
    int rc = arg_sub(ts, c, "name", &t, &s);
    if (rc)
        return rc;
    msgpack_sbuffer_init(&sb);
    if ((rc = config_pack(ts, c, s, &sb)))
        goto out;
    size_t cfg_len = sb.size;
    if (sub_bind(&nb, msgpack_sbuffer_release(&sb), cfg_len) != 0) {
        if (nb.cfg)
            msgpack_unpacked_destroy(&nb.cu);
        free(nb.cfg);
        rc = cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
        goto out;
    }
    msgpack_unpacked_destroy(&s->cu);
    free(s->cfg);
    s->cfg = nb.cfg, s->cfg_len = nb.cfg_len, s->cu = nb.cu;
    s->cf = s->cu.data.via.array.ptr;
    s->modified_at = ts->now;
    mark_sub(ts, s);
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

/* sub.reap {owner? | keep?}: delete the ephemeral subscriptions of session
 * `owner` (it closed), or every one whose owner does not start with `keep`
 * (a new leader's prefix: their sessions were on another leader). In topic
 * id then name order; replies {deleted}. */
int sub_op_reap(cmd_t *c)
{
    topics_t *ts = c->ts;
    const char *owner, *keep;
    size_t ol, kl;
    uint64_t n = 0;
    int rc;
    if ((rc = cmd_arg_str(c, c->req, "owner", false, &owner, &ol)) ||
        (rc = cmd_arg_str(c, c->req, "keep", false, &keep, &kl)))
        return rc;
    if (!owner == !keep)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "give field 'owner' or field 'keep'");
    for (topic_t *t = ts->first; t; t = t->next) {
        for (sub_t *s = t->subs, *next; s; s = next) {
            next = s->next;
            if (!s->olen || (owner && (s->olen != ol || memcmp(s->owner, owner, ol) != 0)) ||
                (keep && s->olen >= kl && memcmp(s->owner, keep, kl) == 0))
                continue;
            sub_del_records(ts, s);
            sub_unlink(ts, s);
            sub_destroy(s);
            n++;
        }
    }
    cmd_reply_uint(c, "deleted", n);
    return 0;
}

static void pack_endpoint(msgpack_packer *pk, const sub_t *s)
{
    const msgpack_object *cf = s->cf;
    bool simplified = cf[CF_FORMAT].via.u64 == FORMAT_SIMPLIFIED;
    mp_pack_str(pk, "endpoint", 8);
    if (sub_is_http(s)) {
        msgpack_pack_map(pk, 2);
        mp_pack_str(pk, "http", 4);
        msgpack_pack_object(pk, cf[CF_HTTP]);
        cmd_pack_kv_str(pk, "format", simplified ? "simplified" : "json", simplified ? 10 : 4);
    } else if (sub_is_push(s)) {
        msgpack_pack_map(pk, 1);
        mp_pack_str(pk, "push", 4);
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_map(pk, 1);
        mp_pack_str(pk, "queue", 5);
        msgpack_pack_object(pk, cf[CF_QUEUE]);
    }
}

static void pack_http_sub(msgpack_packer *pk, const sub_t *s)
{
    msgpack_pack_map(pk, 3);
    cmd_pack_kv_str(pk, "topic", s->t->name, s->t->nlen);
    cmd_pack_kv_str(pk, "name", s->name, s->nlen);
    pack_endpoint(pk, s);
}

/* The http subscriptions of @t (or of every topic), topic then name order,
 * those the viewer sees: from the @offset-th on, at most @limit, packed into
 * @pk; returns how many there are. From the index ts->http_subs: O(log n +
 * limit) per page (a named user's list checks every entry in range). */
static uint64_t pack_http_subs(topics_t *ts, cmd_t *c, msgpack_packer *pk, const topic_t *only,
                               uint64_t offset, uint64_t limit)
{
    size_t from = 0, to = omap_len(&ts->http_subs), kl;
    uint64_t total = 0;
    const char *k;
    char p[MQHUB_NAME_MAX + 1];
    if (only) { /* the keys "topic\0..." lie in ["topic\0", "topic\1") */
        memcpy(p, only->name, only->nlen);
        p[only->nlen] = 0;
        from = omap_rank(&ts->http_subs, p, only->nlen + 1);
        p[only->nlen] = 1;
        to = omap_rank(&ts->http_subs, p, only->nlen + 1);
    }
    if (!c->viewer) {
        for (size_t i = from + offset; offset < to - from && i < to && i - from - offset < limit;
             i++)
            pack_http_sub(pk, omap_at(&ts->http_subs, i, &k, &kl));
        return to - from;
    }
    for (size_t i = from; i < to; i++) {
        const sub_t *s = omap_at(&ts->http_subs, i, &k, &kl);
        if (!user_sees(c->us, c->viewer, s->t->name, s->t->nlen))
            continue;
        if (total >= offset && total - offset < limit)
            pack_http_sub(pk, s);
        total++;
    }
    return total;
}

/* subscription.list {endpoint: "http", topic?, offset?, limit?}: the http
 * subscriptions as {topic, name, endpoint}, of one topic or of all. */
static int list_http(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t = NULL;
    uint64_t offset = 0, limit = MQHUB_LIST_LIMIT_DEFAULT, total;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rc;
    if ((mp_map_get(c->req, "topic") && (rc = topic_arg(ts, c, "topic", &t))) ||
        (rc = cmd_arg_uint(c, c->req, "offset", 0, UINT64_MAX, &offset)) ||
        (rc = cmd_arg_uint(c, c->req, "limit", 1, MQHUB_LIST_LIMIT_MAX, &limit)))
        return rc;
    if (!c->pk)
        return 0;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    total = pack_http_subs(ts, c, &pk, t, offset, limit);
    uint64_t shown = total > offset ? total - offset : 0;
    cmd_reply_key(c, "subscriptions");
    msgpack_pack_array(c->pk, (uint32_t)(shown < limit ? shown : limit));
    c->pk->callback(c->pk->data, sb.data, sb.size);
    cmd_reply_uint(c, "total", total);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

int sub_op_list(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    const char *ep;
    size_t el;
    int rc = cmd_arg_str(c, c->req, "endpoint", false, &ep, &el);
    if (rc)
        return cmd_fail(c, rc, "field 'endpoint' must be \"http\" (or absent)");
    if (ep && !(el == 4 && memcmp(ep, "http", 4) == 0))
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'endpoint' must be \"http\" (or absent)");
    if (ep)
        return list_http(c);
    if ((rc = topic_arg(ts, c, "topic", &t)) || !c->pk)
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
    pack_endpoint(pk, s);
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
    cmd_reply_uint(c, "created_at", s->created_at);
    cmd_reply_uint(c, "modified_at", s->modified_at);
    cmd_reply_key(c, "ephemeral");
    pack_bool(c->pk, s->olen > 0);
    if (s->olen) {
        cmd_reply_key(c, "owner");
        mp_pack_str(c->pk, s->owner, s->olen);
    }
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

/* ---- topic.peek: a bounded read of retained or pending messages ---- */

/* What a peek's reply may hold (as queue.peek's: receive's bound in
 * queue.c); a message counts its body, attrs and key plus a fixed allowance
 * (ids, tags, numbers, field names). Every record a peek walks is one it
 * shows (retained and pending records are live), so max bounds the walk. */
#define PEEK_REPLY_MAX (MQHUB_DEFAULT_MAX_FRAME - (64u << 10))
#define PEEK_MSG_OVERHEAD 768

/* A peek's walk: the seqs of up to @want records, where a next peek goes
 * on (@next), and whether it stopped before the end. */
struct peek {
    body_seqs_t seqs;
    size_t want;
    uint64_t next;
    bool more;
};

static int peek_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct peek *p = arg;
    (void)v, (void)vl;
    if (kl != KEY_LEN)
        return 0;
    if (p->seqs.n == p->want) {
        p->more = true;
        return 1;
    }
    p->next = store_be64_get((const unsigned char *)k + 9) + 1;
    if (body_seqs_push(&p->seqs, k) != 0) {
        p->next--; /* out of memory: a next peek starts at this one */
        p->more = true;
        return 1;
    }
    return 0;
}

/* One retained message as a peek shows it: a push's fields without attempt. */
static void peek_pack_msg(msgpack_packer *pk, const fsm_push_msg_t *m)
{
    msgpack_pack_map(pk, 7);
    cmd_pack_kv_str(pk, "msg_id", m->msg_id, m->msg_id_len);
    cmd_pack_kv_uint(pk, "seq", m->seq);
    mp_pack_str(pk, "body", 4);
    msgpack_pack_bin(pk, m->body_len);
    msgpack_pack_bin_body(pk, m->body, m->body_len);
    mp_pack_str(pk, "tags", 4);
    msgpack_pack_object(pk, *m->tags);
    mp_pack_str(pk, "key", 3);
    msgpack_pack_object(pk, *m->key);
    mp_pack_str(pk, "attrs", 5);
    if (m->attrs->type == MSGPACK_OBJECT_MAP)
        msgpack_pack_object(pk, *m->attrs);
    else
        msgpack_pack_map(pk, 0);
    cmd_pack_kv_uint(pk, "published_at", m->published_at);
}

static size_t peek_msg_size(const fsm_push_msg_t *m)
{
    size_t n = m->body_len + cmd_attrs_size(m->attrs) + PEEK_MSG_OVERHEAD;
    if (m->key->type == MSGPACK_OBJECT_STR)
        n += m->key->via.str.size;
    return n;
}

/* topic.peek {topic, subscription?, max?, from?}: a read. Without a
 * subscription the topic's retained messages (P<tid>), with one the pending
 * messages of that push subscription (W<sid>), from seq `from` on, in seq
 * order; nothing is delivered, acked or counted. `next` tells where a
 * following peek goes on when this one stopped early (max or the reply's
 * size). */
int sub_op_peek(cmd_t *c)
{
    topics_t *ts = c->ts;
    topic_t *t;
    sub_t *s = NULL;
    uint64_t max = 1, from = 0;
    struct peek p = {.want = 0};
    unsigned char k[KEY_LEN];
    size_t bytes = 0;
    uint32_t packed = 0;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rc = mp_map_get(c->req, "subscription") ? arg_sub(ts, c, "subscription", &t, &s)
                                                : topic_arg(ts, c, "topic", &t);
    if (rc || (rc = cmd_arg_uint(c, c->req, "max", 1, MQHUB_RECEIVE_MAX, &max)) ||
        (rc = cmd_arg_uint(c, c->req, "from", 0, UINT64_MAX, &from)))
        return rc;
    if (s && !sub_is_push(s))
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "subscription '%s' of topic '%s' delivers to queue '%.*s' and has no "
                        "pending messages; peek at the queue with queue.peek", s->name, t->name,
                        (int)s->cf[CF_QUEUE].via.str.size, s->cf[CF_QUEUE].via.str.ptr);
    if (!c->pk)
        return 0;
    p.want = (size_t)max;
    p.next = from > t->first_seq || s ? from : t->first_seq;
    if (s)
        pending_key(k, s, p.next);
    else
        store_key_id_seq(k, 'P', t->id, p.next);
    store_scan(ts->st, k, 9, k, KEY_LEN, peek_visit, &p);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (size_t i = 0; i < p.seqs.n; i++) {
        struct tmsg tm;
        if (topic_msg_load(ts, t, p.seqs.v[i], &tm) == 0) {
            size_t size = peek_msg_size(&tm.m);
            if (packed > 0 && bytes + size > PEEK_REPLY_MAX) {
                topic_msg_free(&tm);
                p.next = p.seqs.v[i];
                p.more = true;
                break;
            }
            bytes += size;
            peek_pack_msg(&pk, &tm.m);
            packed++;
        }
        topic_msg_free(&tm);
    }
    cmd_reply_key(c, "msgs");
    msgpack_pack_array(c->pk, packed);
    c->pk->callback(c->pk->data, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (p.more)
        cmd_reply_uint(c, "next", p.next);
    free(p.seqs.v);
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
