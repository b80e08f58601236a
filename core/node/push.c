/* push.c: the leader's push delivery engine for push subscriptions.
 *
 * Sessions `subscribe` to a push subscription with a credit window (how many
 * unacknowledged messages they may hold). The engine keeps, per
 * subscription it serves (sub_t): its consumers (one per session, with free
 * credit) and its in-flight set (flight_t: seq -> holder, attempt,
 * redeliver_at), a sorted array. Everything else — which messages are pending
 * — is the replicated state of the fsm (fsm_push_pending,
 * fsm_push_is_pending).
 *
 * Start with deliver(): (1) flights acknowledged or no longer pending are
 * dropped, flights past their redeliver_at are taken back from their holder,
 * and a taken-back flight whose attempts are used up is proposed as
 * `sub.dead`; (2) the pending messages are visited in seq order and each one
 * that is new or taken back goes to the next consumer with free credit
 * (round-robin), several per push frame; (3) the frames are sent and the
 * engine timer is set to the earliest redeliver_at. deliver() runs from the
 * engine timer, which is kicked (0 ms) when the fsm reports new pending
 * messages, when an ack was applied, on subscribe/credit and when a consumer
 * leaves.
 *
 * All of it is in memory on the leader: a new leader starts with no
 * consumers and attempt counts from 1 (delivery is at-least-once).
 * Extending: a new session op is one branch in push_request().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"


typedef struct sub sub_t;

typedef struct consumer {
    sub_t *sub;
    mqhub_session_t *s;
    mqhub_push_cb cb;
    void *cb_arg;
    uint64_t free;     /* credit not used by messages in flight */
    uint64_t inflight; /* messages it holds unacknowledged */
    struct consumer *next;
    /* The frame being built during one deliver() round. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned n_out;
} consumer_t;

typedef struct flight {
    uint64_t seq;
    consumer_t *holder;    /* NULL: waiting to be (re)delivered */
    uint32_t attempt;      /* deliveries so far */
    uint64_t redeliver_at; /* uv_now() ms, while held */
    bool acked;            /* ack applied: drop at the next round */
    bool dead;             /* sub.dead proposed */
} flight_t;

struct sub {
    sub_t *next;
    char topic[MQHUB_NAME_MAX + 1];
    char name[MQHUB_NAME_MAX + 1];
    size_t tl, nl;
    consumer_t *consumers;
    consumer_t *rr; /* round-robin: the consumer to try first */
    flight_t *flights; /* sorted by seq */
    size_t n, cap;
    bool dirty;        /* deliver at the next timer run */
    bool rescan;       /* visit pending messages from seq 0 (subscribe, rewind) */
    uint64_t hw;       /* every pending seq <= hw is in flights (or was) */
    uint64_t next_due; /* earliest redeliver_at, UINT64_MAX when none */
};

struct push {
    uv_loop_t *loop;
    fsm_t *fsm;
    replica_t *replica;
    metrics_t *metrics; /* push_delivered_total, push_redelivered_total */
    sub_t *subs;
    uv_timer_t timer;
    bool stopping;
    void (*stop_cb)(void *arg);
    void *stop_arg;
};

/* A sub.dead proposal in raft: names, not pointers (the sub may go). */
typedef struct dead_ctx {
    push_t *p;
    uint64_t seq;
    size_t tl, nl;
    char topic[MQHUB_NAME_MAX + 1];
    char name[MQHUB_NAME_MAX + 1];
} dead_ctx_t;

static void schedule(push_t *p);

/* ----------------------------------------------------------- packing */

/* {"push": kind, topic, subscription, ...@n_extra more fields} */
static void pack_push_head(msgpack_packer *pk, const sub_t *sb, const char *kind,
                           unsigned n_extra)
{
    msgpack_pack_map(pk, 3 + n_extra);
    mp_pack_cstr(pk, "push");
    mp_pack_cstr(pk, kind);
    mp_pack_cstr(pk, "topic");
    mp_pack_str(pk, sb->topic, sb->tl);
    mp_pack_cstr(pk, "subscription");
    mp_pack_str(pk, sb->name, sb->nl);
}

static bool present(const msgpack_object *o)
{
    return o != NULL && o->type != MSGPACK_OBJECT_NIL;
}

static void pack_msg(msgpack_packer *pk, const fsm_push_msg_t *m, uint32_t attempt)
{
    msgpack_pack_map(pk, 8);
    mp_pack_cstr(pk, "msg_id");
    mp_pack_str(pk, m->msg_id, m->msg_id_len);
    mp_pack_cstr(pk, "seq");
    msgpack_pack_uint64(pk, m->seq);
    mp_pack_cstr(pk, "body");
    msgpack_pack_bin(pk, m->body_len);
    msgpack_pack_bin_body(pk, m->body, m->body_len);
    mp_pack_cstr(pk, "tags");
    if (present(m->tags))
        msgpack_pack_object(pk, *m->tags);
    else
        msgpack_pack_array(pk, 0);
    mp_pack_cstr(pk, "key");
    if (present(m->key))
        msgpack_pack_object(pk, *m->key);
    else
        msgpack_pack_nil(pk);
    mp_pack_cstr(pk, "attrs");
    if (present(m->attrs))
        msgpack_pack_object(pk, *m->attrs);
    else
        msgpack_pack_map(pk, 0);
    mp_pack_cstr(pk, "published_at");
    msgpack_pack_uint64(pk, m->published_at);
    mp_pack_cstr(pk, "attempt");
    msgpack_pack_uint32(pk, attempt);
}

/* {"push": "closed", topic, subscription, code, error, leader?} to @c. */
static void send_closed(push_t *p, consumer_t *c, int code, const char *why)
{
    const char *leader = code == MQHUB_ENOT_LEADER && p->replica != NULL
                             ? replica_leader_address(p->replica) : NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    if (c->cb == NULL)
        return;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_push_head(&pk, c->sub, "closed", leader != NULL ? 3 : 2);
    mp_pack_cstr(&pk, "code");
    mp_pack_cstr(&pk, mqhub_err_name(code));
    mp_pack_cstr(&pk, "error");
    mp_pack_text(&pk, why);
    if (leader != NULL) {
        mp_pack_cstr(&pk, "leader");
        mp_pack_cstr(&pk, leader);
    }
    c->cb(c->cb_arg, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* ------------------------------------------------------------ lookup */

static sub_t *sub_find(push_t *p, const char *topic, size_t tl, const char *name, size_t nl)
{
    for (sub_t *sb = p->subs; sb != NULL; sb = sb->next) {
        if (sb->tl == tl && sb->nl == nl && memcmp(sb->topic, topic, tl) == 0 &&
            memcmp(sb->name, name, nl) == 0)
            return sb;
    }
    return NULL;
}

static sub_t *sub_get(push_t *p, const char *topic, size_t tl, const char *name, size_t nl)
{
    sub_t *sb = sub_find(p, topic, tl, name, nl);

    if (sb != NULL || tl > MQHUB_NAME_MAX || nl > MQHUB_NAME_MAX)
        return sb;
    sb = calloc(1, sizeof *sb);
    if (sb == NULL)
        return NULL;
    memcpy(sb->topic, topic, tl);
    memcpy(sb->name, name, nl);
    sb->tl = tl;
    sb->nl = nl;
    sb->next_due = UINT64_MAX;
    sb->next = p->subs;
    p->subs = sb;
    return sb;
}

static void sub_free(push_t *p, sub_t *sb)
{
    sub_t **pp;

    for (pp = &p->subs; *pp != sb; pp = &(*pp)->next)
        ;
    *pp = sb->next;
    while (sb->consumers != NULL) {
        consumer_t *c = sb->consumers;
        sb->consumers = c->next;
        free(c);
    }
    free(sb->flights);
    free(sb);
}

static consumer_t *consumer_find(sub_t *sb, mqhub_session_t *s)
{
    for (consumer_t *c = sb->consumers; c != NULL; c = c->next) {
        if (c->s == s)
            return c;
    }
    return NULL;
}

/* Index of the first flight with seq >= @seq. */
static size_t flight_lower(const sub_t *sb, uint64_t seq)
{
    size_t lo = 0, hi = sb->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sb->flights[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static flight_t *flight_find(sub_t *sb, uint64_t seq)
{
    size_t i = flight_lower(sb, seq);

    return i < sb->n && sb->flights[i].seq == seq ? &sb->flights[i] : NULL;
}

static flight_t *flight_add(sub_t *sb, uint64_t seq)
{
    size_t i = flight_lower(sb, seq);

    if (sb->n == sb->cap) {
        size_t cap = sb->cap ? sb->cap * 2 : 64;
        flight_t *f = realloc(sb->flights, cap * sizeof *f);
        if (f == NULL)
            return NULL;
        sb->flights = f;
        sb->cap = cap;
    }
    memmove(&sb->flights[i + 1], &sb->flights[i], (sb->n - i) * sizeof *sb->flights);
    sb->n++;
    sb->flights[i] = (flight_t){.seq = seq};
    return &sb->flights[i];
}

/* Take @f back from its holder: the holder's credit is free again. */
static void flight_release(flight_t *f)
{
    if (f->holder == NULL)
        return;
    f->holder->inflight--;
    f->holder->free++;
    f->holder = NULL;
}

/* ------------------------------------------------------------ retries */

/* How long attempt number @attempt may stay unacknowledged. */
static uint64_t retry_interval(const fsm_retry_t *r, uint32_t attempt)
{
    uint64_t ms = r->interval_ms;

    if (!r->exponential)
        return ms;
    for (uint32_t i = 1; i < attempt && ms < r->max_interval_ms; i++)
        ms *= 2;
    return ms < r->max_interval_ms ? ms : r->max_interval_ms;
}

static void on_dead_done(void *arg, int status, const char *reply, size_t len)
{
    dead_ctx_t *d = arg;
    push_t *p = d->p;
    sub_t *sb;
    flight_t *f;

    if (status != 0)
        log_warn("push", "sub.dead %.*s/%.*s seq %llu: %s", (int)d->tl, d->topic,
                 (int)d->nl, d->name, (unsigned long long)d->seq, mqhub_strerror(status));
    sb = p->stopping ? NULL : sub_find(p, d->topic, d->tl, d->name, d->nl);
    if (sb != NULL && (f = flight_find(sb, d->seq)) != NULL && f->dead) {
        /* Gone from the fsm, or the proposal failed: in both cases the fsm's
         * pending set decides; a message still pending starts over. */
        f->acked = true;
        sb->dirty = true;
        schedule(p);
    }
    free(d);
}

/* Propose sub.dead {topic, subscription, seq, attempts} for @f. */
static void propose_dead(push_t *p, sub_t *sb, flight_t *f)
{
    dead_ctx_t *d = calloc(1, sizeof *d);
    msgpack_sbuffer buf;
    msgpack_packer pk;

    if (d == NULL)
        return;
    *d = (dead_ctx_t){.p = p, .seq = f->seq, .tl = sb->tl, .nl = sb->nl};
    memcpy(d->topic, sb->topic, sb->tl);
    memcpy(d->name, sb->name, sb->nl);
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "sub.dead");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 0);
    mp_pack_cstr(&pk, "topic");
    mp_pack_str(&pk, sb->topic, sb->tl);
    mp_pack_cstr(&pk, "subscription");
    mp_pack_str(&pk, sb->name, sb->nl);
    mp_pack_cstr(&pk, "seq");
    msgpack_pack_uint64(&pk, f->seq);
    mp_pack_cstr(&pk, "attempts");
    msgpack_pack_uint32(&pk, f->attempt);
    if (replica_submit(p->replica, buf.data, buf.size, on_dead_done, d) == 0)
        f->dead = true;
    else
        free(d);
    msgpack_sbuffer_destroy(&buf);
}

/* ------------------------------------------------------------ delivery */

/* Step 1: drop acknowledged flights, take back the overdue ones, propose
 * sub.dead for taken-back ones with no attempt left. */
static void sweep(push_t *p, sub_t *sb, const fsm_retry_t *r, uint64_t now)
{
    size_t w = 0;

    for (size_t i = 0; i < sb->n; i++) {
        flight_t *f = &sb->flights[i];
        if (f->acked) {
            flight_release(f);
            continue;
        }
        if (f->holder != NULL && f->redeliver_at <= now)
            flight_release(f);
        if (f->holder == NULL && !f->dead) {
            if (!fsm_push_is_pending(p->fsm, sb->topic, sb->tl, sb->name, sb->nl, f->seq))
                continue; /* acknowledged through another path, or expired */
            if (f->attempt >= r->max_attempts)
                propose_dead(p, sb, f);
        }
        sb->flights[w++] = *f;
    }
    sb->n = w;
}

static uint64_t free_credit(const sub_t *sb)
{
    uint64_t n = 0;

    for (const consumer_t *c = sb->consumers; c != NULL; c = c->next)
        if (hub_session_can_push(c->s))
            n += c->free;
    return n;
}

/* The next consumer with free credit whose transport takes more (not above
 * its high-water mark), round-robin; NULL when none. */
static consumer_t *next_consumer(sub_t *sb)
{
    consumer_t *c = sb->rr != NULL ? sb->rr : sb->consumers;

    for (consumer_t *start = c; c != NULL;) {
        consumer_t *next = c->next != NULL ? c->next : sb->consumers;
        if (c->free > 0 && hub_session_can_push(c->s)) {
            sb->rr = next;
            return c;
        }
        c = next;
        if (c == start)
            break;
    }
    return NULL;
}

typedef struct round {
    sub_t *sb;
    const fsm_retry_t *r;
    uint64_t now;
    uint64_t free; /* credit left this round */
    int64_t delivered, redelivered; /* messages pushed, those with attempt > 1 */
} round_t;

/* Append @m to @c's frame. The frame is packed as the head, then each message
 * into a separate buffer, so the array size is known when it is sent. */
static void frame_add(consumer_t *c, const fsm_push_msg_t *m, uint32_t attempt)
{
    if (c->n_out == 0) {
        msgpack_sbuffer_init(&c->sb);
        msgpack_packer_init(&c->pk, &c->sb, msgpack_sbuffer_write);
    }
    pack_msg(&c->pk, m, attempt);
    c->n_out++;
}

/* Send @c's collected messages as one push frame. */
static void frame_send(consumer_t *c)
{
    msgpack_sbuffer head;
    msgpack_packer pk;

    if (c->n_out == 0)
        return;
    msgpack_sbuffer_init(&head);
    msgpack_packer_init(&pk, &head, msgpack_sbuffer_write);
    pack_push_head(&pk, c->sub, "messages", 1);
    mp_pack_cstr(&pk, "msgs");
    msgpack_pack_array(&pk, c->n_out);
    msgpack_sbuffer_write(&head, c->sb.data, c->sb.size);
    msgpack_sbuffer_destroy(&c->sb);
    c->n_out = 0;
    hub_session_sent(c->s, head.size);
    c->cb(c->cb_arg, head.data, head.size);
    msgpack_sbuffer_destroy(&head);
}

/* Step 2, per pending message visited in seq order. */
static int visit(void *arg, const fsm_push_msg_t *m)
{
    round_t *rd = arg;
    sub_t *sb = rd->sb;
    flight_t *f = flight_find(sb, m->seq);
    consumer_t *c;

    if (m->seq > sb->hw)
        sb->hw = m->seq;
    if (f != NULL && (f->holder != NULL || f->dead || f->acked))
        return 0;
    if (f == NULL && (f = flight_add(sb, m->seq)) == NULL) {
        sb->rescan = true; /* out of memory: look at it again next round */
        return 1;
    }
    if (f->attempt >= rd->r->max_attempts)
        return 0; /* sweep() proposes it as dead */
    c = next_consumer(sb);
    if (c == NULL)
        return 1;
    f->holder = c;
    f->attempt++;
    f->redeliver_at = rd->now + retry_interval(rd->r, f->attempt);
    c->free--;
    c->inflight++;
    frame_add(c, m, f->attempt);
    rd->delivered++;
    rd->redelivered += f->attempt > 1;
    if (c->n_out >= MQHUB_PUSH_FRAME_MSGS)
        frame_send(c);
    return --rd->free == 0 ? 1 : 0;
}

/* Forget @sb after telling its consumers why (subscription gone). */
static void sub_close(push_t *p, sub_t *sb, int code, const char *why)
{
    for (consumer_t *c = sb->consumers; c != NULL; c = c->next)
        send_closed(p, c, code, why);
    sub_free(p, sb);
}

/* Where this round's visit starts: after hw, where new messages appear,
 * unless a rewind or subscribe asked for a full scan or a waiting flight lies
 * below it. Scanning from hw keeps a round proportional to what is new, not to
 * what is in flight. */
static uint64_t scan_from(sub_t *sb)
{
    uint64_t after = sb->rescan ? 0 : sb->hw;

    if (sb->rescan)
        sb->hw = 0;
    sb->rescan = false;
    for (size_t i = 0; i < sb->n && sb->flights[i].seq <= after; i++) {
        const flight_t *f = &sb->flights[i];
        if (f->holder == NULL && !f->dead && !f->acked)
            return f->seq - 1; /* sorted: the lowest waiting one */
    }
    return after;
}

/* One round for @sb (see the map). Returns false when @sb was freed. */
static bool deliver(push_t *p, sub_t *sb)
{
    round_t rd = {.sb = sb, .now = uv_now(p->loop)};
    fsm_retry_t r;
    int rc;

    sb->dirty = false;
    if (fsm_push_retry(p->fsm, sb->topic, sb->tl, sb->name, sb->nl, &r) != 0) {
        sub_close(p, sb, MQHUB_ENOT_FOUND, "the subscription was deleted");
        return false;
    }
    if (r.max_attempts == 0)
        r.max_attempts = 1;
    rd.r = &r;
    sweep(p, sb, &r, rd.now);
    rd.free = free_credit(sb);
    if (rd.free > 0) {
        rc = fsm_push_pending(p->fsm, sb->topic, sb->tl, sb->name, sb->nl, scan_from(sb),
                              UINT32_MAX, visit, &rd);
        for (consumer_t *c = sb->consumers; c != NULL; c = c->next)
            frame_send(c);
        metrics_add(p->metrics, "push_delivered_total", rd.delivered);
        metrics_add(p->metrics, "push_redelivered_total", rd.redelivered);
        if (rc == MQHUB_ENOT_FOUND) {
            sub_close(p, sb, MQHUB_ENOT_FOUND, "the subscription was deleted");
            return false;
        }
    }
    sb->next_due = UINT64_MAX;
    for (size_t i = 0; i < sb->n; i++) {
        if (sb->flights[i].holder != NULL && sb->flights[i].redeliver_at < sb->next_due)
            sb->next_due = sb->flights[i].redeliver_at;
    }
    if (sb->consumers == NULL && sb->n == 0) {
        sub_free(p, sb);
        return false;
    }
    return true;
}

static void on_timer(uv_timer_t *t)
{
    push_t *p = t->data;
    uint64_t now = uv_now(p->loop);
    sub_t *sb = p->subs;

    if (p->stopping || p->replica == NULL || !replica_is_leader(p->replica))
        return;
    while (sb != NULL) {
        sub_t *next = sb->next;
        if (sb->dirty || sb->next_due <= now)
            deliver(p, sb);
        sb = next;
    }
    schedule(p);
}

/* Run the timer at the earliest moment any subscription needs a round. */
static void schedule(push_t *p)
{
    uint64_t now = uv_now(p->loop), due = UINT64_MAX;

    if (p->stopping)
        return;
    for (sub_t *sb = p->subs; sb != NULL; sb = sb->next) {
        uint64_t d = sb->dirty ? now : sb->next_due;
        if (d < due)
            due = d;
    }
    if (due == UINT64_MAX)
        uv_timer_stop(&p->timer);
    else
        uv_timer_start(&p->timer, on_timer, due > now ? due - now : 0, 0);
}

/* fsm push callback (during apply): the subscription has new pending
 * messages; deliver on the next loop turn, outside apply. */
/* Apply's events (fsm_push_cb): new pending messages and rewinds make the
 * subscription scan again; an ack releases its message's credit. */
static void on_fsm_push(void *arg, enum fsm_push_event ev, const char *topic, size_t tl,
                        const char *sub, size_t sl, uint64_t seq)
{
    push_t *p = arg;
    sub_t *sb = sub_find(p, topic, tl, sub, sl);
    flight_t *f;

    if (sb == NULL)
        return;
    if (ev == FSM_PUSH_ACKED) {
        if ((f = flight_find(sb, seq)) == NULL || f->acked)
            return;
        flight_release(f);
        f->acked = true;
    } else if (ev == FSM_PUSH_REWOUND) {
        sb->rescan = true;
    } else if (sb->consumers == NULL) {
        return;
    }
    sb->dirty = true;
    schedule(p);
}

/* ---------------------------------------------------------- session ops */

static int arg_name(const msgpack_object *req, const char *key, const char **s, size_t *n,
                    char *err, size_t errlen)
{
    const msgpack_object *o = mp_map_get(req, key);

    if (o == NULL || o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 ||
        o->via.str.size > MQHUB_NAME_MAX) {
        snprintf(err, errlen, "%s: the %s's name, a string of 1-%d bytes", key,
                 strcmp(key, "topic") == 0 ? "topic" : "subscription", MQHUB_NAME_MAX);
        return MQHUB_EBAD_REQUEST;
    }
    *s = o->via.str.ptr;
    *n = o->via.str.size;
    return 0;
}

static int arg_count(const msgpack_object *req, const char *key, uint64_t *out, char *err,
                     size_t errlen)
{
    const msgpack_object *o = mp_map_get(req, key);

    if (o == NULL || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX) {
        snprintf(err, errlen, "%s: a count of messages, an integer 0-%u", key, UINT32_MAX);
        return MQHUB_EBAD_REQUEST;
    }
    *out = o->via.u64;
    return 0;
}

static int do_subscribe(push_t *p, sub_t *sb, mqhub_session_t *s, mqhub_push_cb cb,
                        void *cb_arg, uint64_t credit)
{
    consumer_t *c = consumer_find(sb, s);

    if (c == NULL) {
        c = calloc(1, sizeof *c);
        if (c == NULL)
            return MQHUB_EINTERNAL;
        *c = (consumer_t){.sub = sb, .s = s, .cb = cb, .cb_arg = cb_arg, .next = sb->consumers};
        sb->consumers = c;
    }
    c->free = credit > c->inflight ? credit - c->inflight : 0;
    sb->dirty = true;
    sb->rescan = true;
    schedule(p);
    return 0;
}

/* Remove @c; the messages it held are deliverable again at once. */
static void consumer_remove(push_t *p, sub_t *sb, consumer_t *c)
{
    consumer_t **pp;

    for (size_t i = 0; i < sb->n; i++) {
        if (sb->flights[i].holder == c)
            flight_release(&sb->flights[i]);
    }
    for (pp = &sb->consumers; *pp != c; pp = &(*pp)->next)
        ;
    *pp = c->next;
    if (sb->rr == c)
        sb->rr = c->next;
    free(c);
    sb->dirty = true;
    schedule(p);
}

int push_request(push_t *p, mqhub_session_t *s, enum ops_node op, mqhub_push_cb cb,
                 void *cb_arg, const msgpack_object *req, char *err, size_t errlen)
{
    const char *topic, *name;
    size_t tl, nl;
    uint64_t n = 0;
    fsm_retry_t r;
    sub_t *sb;
    consumer_t *c;
    int rc;

    if (p->replica == NULL || !replica_is_leader(p->replica)) {
        snprintf(err, errlen, "this node is not the leader");
        return MQHUB_ENOT_LEADER;
    }
    if ((rc = arg_name(req, "topic", &topic, &tl, err, errlen)) != 0 ||
        (rc = arg_name(req, "subscription", &name, &nl, err, errlen)) != 0)
        return rc;
    if (op == OPS_NODE_UNSUBSCRIBE) {
        sb = sub_find(p, topic, tl, name, nl);
        if (sb != NULL && (c = consumer_find(sb, s)) != NULL)
            consumer_remove(p, sb, c);
        return 0;
    }
    if ((rc = arg_count(req, op == OPS_NODE_CREDIT ? "n" : "credit", &n, err, errlen)) != 0)
        return rc;
    if (fsm_push_retry(p->fsm, topic, tl, name, nl, &r) != 0) {
        snprintf(err, errlen, "no push subscription '%.*s' on topic '%.*s'", (int)nl, name,
                 (int)tl, topic);
        return MQHUB_ENOT_FOUND;
    }
    if (op == OPS_NODE_CREDIT) {
        sb = sub_find(p, topic, tl, name, nl);
        if (sb == NULL || (c = consumer_find(sb, s)) == NULL) {
            snprintf(err, errlen, "this session has not subscribed to '%.*s' on '%.*s'",
                     (int)nl, name, (int)tl, topic);
            return MQHUB_ENOT_FOUND;
        }
        c->free += n;
        sb->dirty = true;
        schedule(p);
        return 0;
    }
    if (cb == NULL) {
        snprintf(err, errlen, "this transport cannot deliver pushes");
        return MQHUB_EBAD_REQUEST;
    }
    sb = sub_get(p, topic, tl, name, nl);
    if (sb == NULL || do_subscribe(p, sb, s, cb, cb_arg, n) != 0) {
        snprintf(err, errlen, "out of memory");
        return MQHUB_EINTERNAL;
    }
    return 0;
}

/* subscription.rewind was applied: rescan @sb's pending set from seq 0. */
void push_session_close(push_t *p, mqhub_session_t *s)
{
    for (sub_t *sb = p->subs; sb != NULL; sb = sb->next) {
        consumer_t *c = consumer_find(sb, s);
        if (c != NULL)
            consumer_remove(p, sb, c);
    }
}

void push_consumers(const push_t *p, const mqhub_session_t *s,
                    void (*fn)(void *arg, const push_consumer_info_t *c), void *arg)
{
    for (const sub_t *sb = p->subs; sb != NULL; sb = sb->next) {
        for (const consumer_t *c = sb->consumers; c != NULL; c = c->next) {
            push_consumer_info_t i = {c->s, sb->topic, sb->name, sb->tl, sb->nl, c->free,
                                      c->inflight};
            if (s == NULL || c->s == s)
                fn(arg, &i);
        }
    }
}

/* --------------------------------------------------------------- engine */

void push_session_writable(push_t *p, mqhub_session_t *s)
{
    for (sub_t *sb = p->subs; sb != NULL; sb = sb->next)
        if (consumer_find(sb, s) != NULL)
            sb->dirty = true;
    schedule(p);
}

static void forget_all(push_t *p, int code, const char *why)
{
    while (p->subs != NULL)
        sub_close(p, p->subs, code, why);
    if (!p->stopping)
        uv_timer_stop(&p->timer);
}

void push_check(push_t *p)
{
    if (p->subs == NULL || p->replica == NULL || replica_is_leader(p->replica))
        return;
    log_info("push", "leadership lost: closing push sessions");
    forget_all(p, MQHUB_ENOT_LEADER,
               "this node is no longer the leader; subscribe again at the leader");
}

int push_new(push_t **out, fsm_t *fsm, metrics_t *metrics)
{
    push_t *p = calloc(1, sizeof *p);

    if (p == NULL)
        return MQHUB_EINTERNAL;
    p->fsm = fsm;
    p->metrics = metrics;
    metrics_add(metrics, "push_delivered_total", 0);
    metrics_add(metrics, "push_redelivered_total", 0);
    fsm_set_push_cb(fsm, on_fsm_push, p);
    *out = p;
    return 0;
}

void push_start(push_t *p, uv_loop_t *loop, replica_t *r)
{
    p->loop = loop;
    p->replica = r;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
}

static void on_timer_closed(uv_handle_t *h)
{
    push_t *p = h->data;

    if (p->stop_cb != NULL)
        p->stop_cb(p->stop_arg);
}

void push_stop(push_t *p, void (*cb)(void *arg), void *arg)
{
    forget_all(p, MQHUB_EUNAVAILABLE, "the server is shutting down");
    p->stopping = true;
    p->stop_cb = cb;
    p->stop_arg = arg;
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

void push_free(push_t *p)
{
    if (p == NULL)
        return;
    while (p->subs != NULL)
        sub_free(p, p->subs);
    free(p);
}
