/* hub.c: the node. It owns the loop-side objects of one daemon (the state
 * machine, its raft group, the plugins, client sessions, long-poll waiters)
 * and dispatches every request a transport submits.
 *
 * Start with hub_request(): decode (wire_decode_request), find the op's row
 * in the op table (ops_find, core/sm/ops.c), authenticate, check a named
 * user's permissions against the row's permission column (permitted(): grants
 * read from the state machine per request, so nothing refused reaches raft),
 * write the audit line of manage/script/admin ops (audit()), then dispatch()
 * by the row's kind: local ops (hello, ping) are answered here, reads by
 * fsm_read() on the leader, writes go through replica_submit() and their
 * reply comes back in on_replica_done(); session ops go to the push engine
 * (push.c), cluster ops to cluster.c. `receive` with a wait is a long
 * poll: receive_start() parks it in its queue's FIFO (waitq_t) until the
 * state machine reports ready messages (on_fsm_ready → on_wake, next loop
 * turn) or its deadline timer fires; a receive applied with no message while
 * time remains is parked again at the head of the FIFO.
 *
 * Lifetimes: a request that waits on raft, on a queue or for its next slice
 * (a read in slices: script.test, read_op) is a hub_req_t linked to its
 * session. Closing the session detaches them (their callbacks
 * are never called again); a detached request still in raft is freed when
 * raft answers, a parked one at once (after its timer handle closed).
 *
 * Latency: every request is timed from hub_request() entry to the call of
 * its reply callback, into its session's transport histogram (metrics_lat_t,
 * found once when the session opens). While hub_request() runs, the reply
 * callback is timed_reply() (on the stack: no allocation); a request that
 * waits copies its start into its hub_req_t (req_new). Not timed: receives
 * that were parked (their wait is the client's, counted by
 * longpoll_parked_total), cluster.* admin ops, and requests whose session
 * closed first. Plugins read the histograms through metric_get (lat_get).
 *
 * Identities (docs/security.md): hello's token is the config's root token
 * (every right), a user's (core/sm/user.c, looked up by SHA-256), or — on a
 * hub with neither — nothing (anonymous, every right). Wrong tokens are
 * throttled per connection and per source address: after AUTH_FREE failures
 * each hello is held on a timer (hello(), on_hello_due) and refusals are
 * logged at most once per AUTH_LOG_MS. user.create's token is hashed here
 * (token_op) before submission, so the raft log never holds it. A plugin
 * that authenticates its clients itself (CMQ's signatures) names a
 * session's user instead (hub_session_identify): that user's hash is looked
 * up by name before each request (named_user_current).
 *
 * Operators' lists: connection.list and consumer.list (console_list) are
 * local ops answered from the leader's sessions — their counters (sid,
 * connected_at, requests, bytes in and out), their parked receives and
 * their push consumers (push_consumers). Ephemeral subscriptions: the hub
 * writes the session's owner into subscription.create {ephemeral: true}
 * (pack_used_fields) and proposes `sub.reap` when that session closes
 * (hub_session_close) and once per term as leader for other owners'
 * (reap_check).
 *
 * Declarations: when a node first leads, check_leadership() submits what the
 * config declares (declare(): scripts, then queues — dead-letter queues
 * first, declare_queues() — then topics); until raft has answered them
 * all, dispatch() answers every op but the local ones UNAVAILABLE
 * ("starting: ..."), so no client, nor /readyz, sees a declared queue
 * missing: clients retry UNAVAILABLE with back-off.
 *
 * Extending: a new local op is a row in the op table with kind OPS_LOCAL and
 * one branch in dispatch(); ops of the state machine need nothing here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "clock.h"
#include "node.h"

#define HUB_CHECK_MS 200 /* how often parked waiters check leadership */
/* A new leader deletes the ephemeral subscriptions of other leaders'
 * sessions this long after it took over (sub.reap {keep}). */
#define HUB_EPHEMERAL_GRACE_MS 5000
#define HUB_WAITQ_BUCKETS 256
/* Failed hellos (docs/security.md "Throttling"): after AUTH_FREE failures
 * on a connection or from an address, each further hello waits
 * AUTH_DELAY_MS doubled per failure, up to AUTH_DELAY_MAX_MS. Addresses are
 * remembered in a table of AUTH_ADDRS entries for AUTH_FORGET_MS after their
 * last failure; refusals are logged at most once per AUTH_LOG_MS. */
#define AUTH_FREE 3
#define AUTH_DELAY_MS 100
#define AUTH_DELAY_MAX_MS 1000
#define AUTH_ADDRS 1024
#define AUTH_FORGET_MS (10 * 60 * 1000)
#define AUTH_LOG_MS 1000
#define TOKEN_MIN 16  /* characters of a token a client chooses */
#define TOKEN_MAX 256
#define TOKEN_RANDOM 32 /* random bytes of a generated token (hex: 64 characters) */

typedef struct hub_req hub_req_t;
typedef struct waitq waitq_t;

/* Who a session is (hello): nobody yet; anonymous (a hub with no root token
 * and no users); the root token of the config; a named user (user.c). */
enum who { WHO_NONE, WHO_ANON, WHO_ROOT, WHO_USER };

struct mqhub_session {
    hub_t *hub;
    mqhub_push_cb push;
    void *push_arg;
    enum who who;
    unsigned char hash[FSM_USER_HASH_LEN]; /* WHO_USER: its token's SHA-256 */
    char user[MQHUB_NAME_MAX + 1];         /* WHO_USER: its name, for messages */
    bool by_name; /* WHO_USER named by its transport (hub_session_identify):
                   * hash looked up from the name on every request */
    unsigned fails;       /* failed hellos on this connection */
    unsigned hellos_held; /* hellos waiting for their turn (throttled) */
    uint64_t hello_next;  /* uv_now() before which no held hello is answered */
    bool broken;
    bool blocked;    /* its transport's output is above high water: no pushes */
    hub_req_t *reqs; /* outstanding requests */
    mqhub_session_t *prev, *next;
    metrics_lat_t *lat; /* its transport's histogram; NULL: not timed */
    char transport[32];
    char peer[64];
    /* What connection.list shows (console_list): */
    uint64_t sid;          /* this node's number for it, from 1 */
    uint64_t connected_at; /* wall clock, ms */
    uint64_t requests, bytes_in, bytes_out; /* frames in; replies and pushes out */
    bool ephemeral; /* it asked for an ephemeral subscription: reap them at close */
};

struct hub_req {
    hub_t *hub;
    mqhub_session_t *s; /* NULL once the session closed */
    mqhub_reply_cb cb;
    void *arg;
    hub_req_t *prev, *next; /* in s->reqs */
    metrics_lat_t *lat; /* NULL: not timed (parked once) */
    uint64_t t0;    /* uv_hrtime() at hub_request entry */
    uint64_t id;
    bool in_replica;
    fsm_read_t *read; /* a read in slices (script.test): its cursor, freed with it */
    const ops_row_t *op; /* a read in slices: its row, checked again each slice */
    char token[2 * TOKEN_RANDOM + 1]; /* user.create: the token generated, told once */
    /* Long-poll receives and held hellos only. */
    waitq_t *q;
    hub_req_t *wprev, *wnext; /* in q's FIFO while parked */
    bool parked;
    bool timer_init;
    uint64_t deadline; /* uv_now() ms */
    uv_timer_t timer;
    size_t len;
    char frame[]; /* the receive request, resubmitted on wake-up */
};

/* Long-poll waiters of one queue. Freed when it has none and no receive of
 * it is in raft. */
struct waitq {
    waitq_t *next; /* hash chain */
    hub_req_t *head, *tail;
    unsigned inflight; /* its receives submitted to raft */
    bool signalled;
    waitq_t *snext; /* in hub->signalled */
    size_t len;
    char name[];
};

/* A request's reply callback while hub_request() runs (see the map). */
typedef struct timed {
    mqhub_reply_cb cb;
    void *arg;
    metrics_lat_t *lat;
    uint64_t t0;
    uint64_t *bytes_out; /* its session's */
} timed_t;

struct hub {
    uv_loop_t *loop;
    config_t *cfg;
    fsm_t *fsm;
    replica_t *replica;
    cluster_t *cluster;
    push_t *push;
    plugin_t **plugins;
    unsigned n_plugins;
    mqhub_session_t *sessions;
    uint64_t last_sid; /* the sid of the last session opened */
    /* Ephemeral subscriptions: owners are "<node>.<boot>.<sid>", boot random
     * per start, so a new leader (or this node restarted) tells its own
     * sessions' from the others'. */
    char boot[17];
    uint64_t leader_since; /* uv_now() when it became leader; 0: not leader */
    bool reaped;           /* its sub.reap {keep} of this term was proposed */
    waitq_t *buckets[HUB_WAITQ_BUCKETS];
    waitq_t *signalled;
    unsigned n_parked;
    uv_timer_t wake;  /* 0 ms: wakes signalled queues on the next loop turn */
    uv_timer_t check; /* periodic: parked waiters of a node no longer leader */
    metrics_t *metrics;
    bool declared; /* the config's queues and topics were submitted */
    unsigned declaring; /* of them, not answered by raft yet: clients wait */
    unsigned declare_unsettled; /* answered with no outcome while stopping */
    uint64_t told_leader; /* the leader the log last named; 0: none (yet) */
    bool stopping;
    unsigned stop_pending;
    void (*stop_cb)(void *arg);
    void *stop_arg;
    char client_address[256];
    struct auth_addr { /* failed hellos per source address (throttling) */
        char addr[64];
        unsigned fails;
        uint64_t last; /* uv_now() of the last failure */
    } addrs[AUTH_ADDRS];
    uint64_t auth_logged;     /* uv_now() of the last refusal logged */
    unsigned auth_unlogged;   /* refusals since then not logged */
};

/* ---------------------------------------------------------------- metrics */

/* Time a reply given before hub_request() returned. */
static void timed_reply(void *arg, const char *reply, size_t len)
{
    timed_t *t = arg;

    metrics_lat_observe(t->lat, t->t0);
    *t->bytes_out += len;
    t->cb(t->arg, reply, len);
}

/* The gauge "sessions_open.<transport>": sessions open per transport (the
 * name of the plugin that opened them), exported by /metrics. */
static void count_session(hub_t *h, const char *transport, int64_t delta)
{
    char name[64];

    snprintf(name, sizeof name, "sessions_open.%s", transport);
    metrics_add(h->metrics, name, delta);
}

static const char *leader_address(hub_t *h)
{
    return h->replica != NULL ? replica_leader_address(h->replica) : NULL;
}

static void reply_error(hub_t *h, mqhub_reply_cb cb, void *arg, bool has_id, uint64_t id,
                        int code, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void reply_error(hub_t *h, mqhub_reply_cb cb, void *arg, bool has_id, uint64_t id,
                        int code, const char *fmt, ...)
{
    const char *leader = code == MQHUB_ENOT_LEADER ? leader_address(h) : NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    metrics_add(h->metrics, "errors_total", 1);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_pack_error(&pk, has_id, id, code, msg, leader);
    cb(arg, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* The sentence for a status raft gave us instead of a reply. */
static void reply_status(hub_t *h, mqhub_reply_cb cb, void *arg, uint64_t id, int status)
{
    const char *leader = leader_address(h);

    if (status == MQHUB_ENOT_LEADER && h->replica && replica_removed(h->replica, NULL))
        reply_error(h, cb, arg, true, id, status,
                    "this node was removed from the cluster (cluster.remove); send it to "
                    "a member%s%s", leader ? ": " : " (none known)", leader ? leader : "");
    else if (status == MQHUB_ENOT_LEADER && leader != NULL)
        reply_error(h, cb, arg, true, id, status,
                    "this node is not the leader; send it to the leader at %s", leader);
    else if (status == MQHUB_ENOT_LEADER)
        reply_error(h, cb, arg, true, id, status,
                    "this node is not the leader and no leader is known yet; retry");
    else if (status == MQHUB_EUNAVAILABLE)
        reply_error(h, cb, arg, true, id, status,
                    "no leader or no quorum right now, or the node is shutting down; retry");
    else if (status == MQHUB_ETIMEOUT)
        reply_error(h, cb, arg, true, id, status,
                    "leadership changed before the request was known to be committed: it "
                    "may or may not have been performed (use dedup_id to resend safely)");
    else
        reply_error(h, cb, arg, true, id, status, "%s", mqhub_strerror(status));
}

static void reply_empty_msgs(mqhub_reply_cb cb, void *arg, uint64_t id)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_pack_head(&pk, true, id, true, 1);
    mp_pack_cstr(&pk, "msgs");
    msgpack_pack_array(&pk, 0);
    cb(arg, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* ------------------------------------------------------- pending requests */

static hub_req_t *req_new(mqhub_session_t *s, mqhub_reply_cb cb, void *arg, uint64_t id,
                          const char *frame, size_t len)
{
    hub_req_t *r = calloc(1, sizeof *r + len);

    if (r == NULL)
        return NULL;
    r->hub = s->hub;
    r->s = s;
    r->cb = cb;
    r->arg = arg;
    if (cb == timed_reply) { /* it outlives hub_request(): keep its start */
        timed_t *t = arg;
        r->cb = t->cb;
        r->arg = t->arg;
        r->lat = t->lat;
        r->t0 = t->t0;
    }
    r->id = id;
    r->len = len;
    if (len > 0)
        memcpy(r->frame, frame, len);
    r->next = s->reqs;
    if (s->reqs != NULL)
        s->reqs->prev = r;
    s->reqs = r;
    return r;
}

static void req_detach(hub_req_t *r)
{
    if (r->s == NULL)
        return;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        r->s->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->s = NULL;
}

static waitq_t **waitq_slot(hub_t *h, const char *name, size_t len)
{
    uint32_t hash = 2166136261u;

    for (size_t i = 0; i < len; i++)
        hash = (hash ^ (unsigned char)name[i]) * 16777619u;
    return &h->buckets[hash % HUB_WAITQ_BUCKETS];
}

static waitq_t *waitq_find(hub_t *h, const char *name, size_t len)
{
    for (waitq_t *q = *waitq_slot(h, name, len); q != NULL; q = q->next) {
        if (q->len == len && memcmp(q->name, name, len) == 0)
            return q;
    }
    return NULL;
}

static waitq_t *waitq_get(hub_t *h, const char *name, size_t len)
{
    waitq_t *q = waitq_find(h, name, len), **slot;

    if (q != NULL)
        return q;
    q = calloc(1, sizeof *q + len);
    if (q == NULL)
        return NULL;
    memcpy(q->name, name, len);
    q->len = len;
    slot = waitq_slot(h, name, len);
    q->next = *slot;
    *slot = q;
    return q;
}

/* Free @q when nothing refers to it any more. */
static void waitq_release(hub_t *h, waitq_t *q)
{
    waitq_t **p;

    if (q->head != NULL || q->inflight > 0 || q->signalled)
        return;
    for (p = waitq_slot(h, q->name, q->len); *p != q; p = &(*p)->next)
        ;
    *p = q->next;
    free(q);
}

static void park_unlink(hub_req_t *r)
{
    waitq_t *q = r->q;

    if (!r->parked)
        return;
    if (r->wprev != NULL)
        r->wprev->wnext = r->wnext;
    else
        q->head = r->wnext;
    if (r->wnext != NULL)
        r->wnext->wprev = r->wprev;
    else
        q->tail = r->wprev;
    r->wprev = r->wnext = NULL;
    r->parked = false;
    r->hub->n_parked--;
}

static void on_req_timer_closed(uv_handle_t *handle)
{
    free(handle->data);
}

/* Forget @r: out of its session, its queue's FIFO, then freed (after its
 * timer handle closed). Never while raft still holds it. */
static void req_free(hub_req_t *r)
{
    hub_t *h = r->hub;
    waitq_t *q = r->q;

    req_detach(r);
    park_unlink(r);
    if (q != NULL)
        waitq_release(h, q);
    fsm_read_free(r->read);
    r->read = NULL;
    if (r->timer_init) {
        r->timer.data = r;
        uv_close((uv_handle_t *)&r->timer, on_req_timer_closed);
    } else {
        free(r);
    }
}

/* Whether a reply of @len bytes fits this node's max_frame; when it does
 * not, @cb gets TOO_LARGE instead (the reply is dropped, never sent past the
 * limit the client was told in hello). Receive batches are bounded before
 * they are taken (reply_max, pack_used_fields); this catches the rest. */
static bool reply_fits(hub_t *h, mqhub_reply_cb cb, void *arg, uint64_t id, size_t len)
{
    if (len <= hub_max_frame(h))
        return true;
    reply_error(h, cb, arg, true, id, MQHUB_ETOO_LARGE,
                "the reply would be %zu bytes, above this node's max_frame %zu; ask for "
                "fewer (limit, max)", len, hub_max_frame(h));
    return false;
}

/* Call @r's callback (when its session is open) with @reply, then free it. */
static void req_reply(hub_req_t *r, const char *reply, size_t len)
{
    mqhub_reply_cb cb = r->cb;
    void *arg = r->arg;
    bool open = r->s != NULL;
    hub_t *h = r->hub;
    uint64_t id = r->id;

    if (open) {
        metrics_lat_observe(r->lat, r->t0);
        r->s->bytes_out += len;
    }
    req_free(r);
    if (open && reply_fits(h, cb, arg, id, len))
        cb(arg, reply, len);
}

static void req_fail(hub_req_t *r, int status)
{
    mqhub_reply_cb cb = r->cb;
    void *arg = r->arg;
    bool open = r->s != NULL;
    uint64_t id = r->id;
    hub_t *h = r->hub;

    if (open)
        metrics_lat_observe(r->lat, r->t0);
    req_free(r);
    if (open)
        reply_status(h, cb, arg, id, status);
}

/* ------------------------------------------------------------ long polls */

static void receive_submit(hub_req_t *r);

static void on_deadline(uv_timer_t *t)
{
    hub_req_t *r = t->data;
    mqhub_reply_cb cb = r->cb;
    void *arg = r->arg;
    uint64_t id = r->id;
    bool open = r->s != NULL;

    /* A receive in raft now answers when raft replies (deadline passed). */
    if (!r->parked)
        return;
    req_free(r);
    if (open)
        reply_empty_msgs(cb, arg, id);
}

/* Park @r in its queue's FIFO (at the head when it was there before), with
 * its deadline timer running. */
static void receive_park(hub_req_t *r, bool at_head)
{
    waitq_t *q = r->q;
    uint64_t now = uv_now(r->hub->loop);

    if (!r->timer_init) {
        uv_timer_init(r->hub->loop, &r->timer);
        r->timer.data = r;
        r->timer_init = true;
        uv_timer_start(&r->timer, on_deadline, r->deadline > now ? r->deadline - now : 0, 0);
    }
    if (at_head && q->head != NULL) {
        r->wnext = q->head;
        q->head->wprev = r;
        q->head = r;
    } else {
        r->wprev = q->tail;
        if (q->tail != NULL)
            q->tail->wnext = r;
        else
            q->head = r;
        q->tail = r;
    }
    r->parked = true;
    r->lat = NULL; /* its wait is not latency (see the map) */
    r->hub->n_parked++;
    metrics_add(r->hub->metrics, "longpoll_parked_total", 1);
}

/* Whether @reply is a successful receive with an empty msgs list. */
static bool reply_is_empty_receive(const char *reply, size_t len)
{
    msgpack_unpacked u;
    const msgpack_object *ok, *msgs;
    bool empty = false;

    msgpack_unpacked_init(&u);
    if (mp_unpack(&u, reply, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        ok = mp_map_get(&u.data, "ok");
        msgs = mp_map_get(&u.data, "msgs");
        empty = ok != NULL && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean &&
                msgs != NULL && msgs->type == MSGPACK_OBJECT_ARRAY && msgs->via.array.size == 0;
    }
    msgpack_unpacked_destroy(&u);
    return empty;
}

static void on_receive_done(hub_req_t *r, int status, const char *reply, size_t len)
{
    hub_t *h = r->hub;

    r->q->inflight--;
    if (r->s == NULL) {
        req_free(r);
    } else if (status != 0) {
        req_fail(r, status);
    } else if (!h->stopping && uv_now(h->loop) < r->deadline &&
               reply_is_empty_receive(reply, len)) {
        receive_park(r, true);
    } else {
        req_reply(r, reply, len);
    }
}

/* user.create's successful reply gains the token the node generated
 * (r->token), told this once and wiped from memory after. */
static void reply_with_token(hub_req_t *r, const char *reply, size_t len)
{
    msgpack_unpacked u;
    const msgpack_object *ok;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_unpacked_init(&u);
    msgpack_sbuffer_init(&sb);
    if (mp_unpack(&u, reply, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP && (ok = mp_map_get(&u.data, "ok")) != NULL &&
        ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean) {
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, u.data.via.map.size + 1);
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            msgpack_pack_object(&pk, u.data.via.map.ptr[i].key);
            msgpack_pack_object(&pk, u.data.via.map.ptr[i].val);
        }
        mp_pack_cstr(&pk, "token");
        mp_pack_cstr(&pk, r->token);
        reply = sb.data;
        len = sb.size;
    }
    OPENSSL_cleanse(r->token, sizeof r->token);
    req_reply(r, reply, len);
    if (sb.data != NULL)
        OPENSSL_cleanse(sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
}

static void on_replica_done(void *arg, int status, const char *reply, size_t len)
{
    hub_req_t *r = arg;

    r->in_replica = false;
    if (r->q != NULL)
        on_receive_done(r, status, reply, len);
    else if (r->s == NULL)
        req_free(r);
    else if (status != 0)
        req_fail(r, status);
    else if (r->token[0] != '\0')
        reply_with_token(r, reply, len);
    else
        req_reply(r, reply, len);
}

static void receive_submit(hub_req_t *r)
{
    int rc = replica_submit(r->hub->replica, r->frame, r->len, on_replica_done, r);

    if (rc != 0) {
        req_fail(r, rc);
        return;
    }
    r->in_replica = true;
    r->q->inflight++;
}

/* Hand the head waiters of @q to raft, as many as it has ready messages
 * beyond the receives already on their way. FIFO: the oldest first. */
static void waitq_wake(hub_t *h, waitq_t *q)
{
    uint64_t ready = fsm_queue_ready(h->fsm, q->name, q->len);

    while (q->head != NULL && q->inflight < ready) {
        hub_req_t *r = q->head;
        park_unlink(r);
        receive_submit(r);
    }
}

static void on_wake(uv_timer_t *t)
{
    hub_t *h = t->data;

    while (h->signalled != NULL) {
        waitq_t *q = h->signalled;
        h->signalled = q->snext;
        q->snext = NULL;
        if (!h->stopping)
            waitq_wake(h, q); /* q stays allocated while signalled */
        q->signalled = false;
        waitq_release(h, q);
    }
}

/* Called during apply: note the queue; wake its waiters on the next turn,
 * outside raft's apply. */
static void on_fsm_ready(void *arg, const char *queue, size_t len)
{
    hub_t *h = arg;
    waitq_t *q = waitq_find(h, queue, len);

    if (h->stopping || q == NULL || q->head == NULL || q->signalled)
        return;
    q->signalled = true;
    q->snext = h->signalled;
    h->signalled = q;
    uv_timer_start(&h->wake, on_wake, 0, 0);
}

/* Complete every parked waiter with @status. */
static void fail_parked(hub_t *h, int status)
{
    for (unsigned i = 0; i < HUB_WAITQ_BUCKETS && h->n_parked > 0; i++) {
        waitq_t *q = h->buckets[i];
        while (q != NULL) {
            waitq_t *next = q->next;
            /* The last req_fail may free q: stop touching it then. */
            while (q->head != NULL) {
                bool last = q->head->wnext == NULL && q->inflight == 0 && !q->signalled;
                req_fail(q->head, status);
                if (last)
                    break;
            }
            q = next;
        }
    }
}

/* One declaration in raft: the object, and the hub that counts it. */
typedef struct hub_decl {
    hub_t *h;
    const config_object_t *o;
} hub_decl_t;

/* The reply of one declaration: the state machine's refusal is logged; one
 * that raft could not settle because leadership moved is submitted again
 * when this node next leads; while stopping, those are counted into one
 * line rather than one warning each. */
static void on_declared_done(void *arg, int status, const char *reply, size_t len)
{
    hub_decl_t *d = arg;
    hub_t *h = d->h;
    const config_object_t *o = d->o;
    msgpack_unpacked u;
    const msgpack_object *ok, *err;

    free(d);
    h->declaring--;
    if (status != 0 && h->stopping) {
        h->declare_unsettled++;
    } else if (status != 0) {
        if (status == MQHUB_ENOT_LEADER || status == MQHUB_ETIMEOUT)
            h->declared = false;
        log_warn("hub", "%s declared in the config: %s%s", o->name, mqhub_strerror(status),
                 h->declared ? "" : " (submitted again when this node leads)");
    } else {
        msgpack_unpacked_init(&u);
        if (mp_unpack(&u, reply, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
            (ok = mp_map_get(&u.data, "ok")) != NULL && ok->type == MSGPACK_OBJECT_BOOLEAN &&
            !ok->via.boolean && (err = mp_map_get(&u.data, "error")) != NULL &&
            err->type == MSGPACK_OBJECT_STR)
            log_warn("hub", "%s declared in the config: %.*s", o->name,
                     (int)err->via.str.size, err->via.str.ptr);
        msgpack_unpacked_destroy(&u);
    }
    if (h->declaring == 0 && h->declare_unsettled > 0) {
        log_info("hub", "stopped before %u of the config's declarations were known applied; "
                 "the next start submits them again", h->declare_unsettled);
        h->declare_unsettled = 0;
    }
}

/* Submit @op (script.load, queue.create, topic.create) for each of the @n
 * objects at @objs, in order; raft applies them in that order. Creating one
 * that exists with equal attributes succeeds. Until raft has answered them
 * all (h->declaring), dispatch() asks clients to retry. */
static void declare(hub_t *h, const char *op, config_object_t *objs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        hub_decl_t *d = malloc(sizeof *d);
        msgpack_sbuffer sb;
        msgpack_packer pk;

        if (d == NULL) {
            log_warn("hub", "%s declared in the config: not submitted (out of memory)",
                     objs[i].name);
            continue;
        }
        *d = (hub_decl_t){h, &objs[i]};
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, objs[i].attrs_len > 0 ? 4 : 3);
        mp_pack_cstr(&pk, "op");
        mp_pack_cstr(&pk, op);
        mp_pack_cstr(&pk, "id");
        msgpack_pack_uint64(&pk, 0);
        mp_pack_cstr(&pk, "name");
        mp_pack_cstr(&pk, objs[i].name);
        if (strcmp(op, "script.load") == 0) { /* attrs holds the source text */
            mp_pack_cstr(&pk, "source");
            msgpack_pack_str_with_body(&pk, objs[i].attrs, objs[i].attrs_len);
        } else if (objs[i].attrs_len > 0) {
            mp_pack_cstr(&pk, "attrs");
            msgpack_sbuffer_write(&sb, objs[i].attrs, objs[i].attrs_len);
        }
        h->declaring++;
        if (replica_submit(h->replica, sb.data, sb.size, on_declared_done, d) != 0) {
            h->declaring--;
            free(d);
            log_warn("hub", "%s declared in the config: not submitted", objs[i].name);
        }
        msgpack_sbuffer_destroy(&sb);
    }
}

/* The index among the config's queues of the dead-letter queue @o names,
 * or -1: none, or one the config does not declare (it may exist already). */
static int declared_dead_letter(const config_t *cfg, const config_object_t *o)
{
    msgpack_unpacked u;
    const msgpack_object *q;
    int found = -1;

    msgpack_unpacked_init(&u);
    if (o->attrs_len > 0 &&
        mp_unpack(&u, o->attrs, o->attrs_len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        (q = mp_map_get(mp_map_get(&u.data, "dead_letter"), "queue")) != NULL &&
        q->type == MSGPACK_OBJECT_STR)
        for (unsigned k = 0; k < cfg->n_queues && found < 0; k++)
            if (strlen(cfg->queues[k].name) == q->via.str.size &&
                memcmp(cfg->queues[k].name, q->via.str.ptr, q->via.str.size) == 0)
                found = (int)k;
    msgpack_unpacked_destroy(&u);
    return found;
}

/* queue.create for each queue the config declares, whatever the file's
 * order: a dead-letter queue it declares goes before the queues that name
 * it (config.c refused cycles at load; the step bound only keeps a loop
 * finite). */
static void declare_queues(hub_t *h)
{
    config_t *cfg = h->cfg;
    bool *done = calloc(cfg->n_queues + 1, sizeof *done);

    if (done == NULL) {
        log_warn("hub", "declared queues: out of memory, submitted in the file's order");
        declare(h, "queue.create", cfg->queues, cfg->n_queues);
        return;
    }
    for (unsigned i = 0; i < cfg->n_queues; i++) {
        while (!done[i]) { /* the end of i's chain not yet submitted goes first */
            unsigned j = i;
            int k;

            for (unsigned steps = 0; steps < cfg->n_queues &&
                                     (k = declared_dead_letter(cfg, &cfg->queues[j])) >= 0 &&
                                     !done[k];
                 steps++)
                j = (unsigned)k;
            declare(h, "queue.create", &cfg->queues[j], 1);
            done[j] = true;
        }
    }
    free(done);
}

/* The owner of @s's ephemeral subscriptions into @buf (see hub.boot). */
static void session_owner(const mqhub_session_t *s, char *buf, size_t size)
{
    snprintf(buf, size, "%llu.%s.%llu", (unsigned long long)s->hub->cfg->node_id, s->hub->boot,
             (unsigned long long)s->sid);
}

static void on_reap_done(void *arg, int status, const char *reply, size_t len)
{
    (void)arg, (void)reply, (void)len;
    if (status != 0)
        log_warn("hub", "sub.reap: %s (the next leader reaps them)", mqhub_strerror(status));
}

/* Propose the internal op sub.reap {@key: @val} (subscription.c). */
static void reap_propose(hub_t *h, const char *key, const char *val)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "sub.reap");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 0);
    mp_pack_cstr(&pk, key);
    mp_pack_cstr(&pk, val);
    if (replica_submit(h->replica, sb.data, sb.size, on_reap_done, NULL) != 0)
        log_warn("hub", "sub.reap not proposed (not leader): the next leader reaps them");
    msgpack_sbuffer_destroy(&sb);
}

/* HUB_EPHEMERAL_GRACE_MS into a term as leader: delete the ephemeral
 * subscriptions whose owners are not this start's sessions. */
static void reap_check(hub_t *h, bool leader)
{
    char keep[64];

    if (!leader) {
        h->leader_since = 0;
        h->reaped = false;
        return;
    }
    if (h->leader_since == 0)
        h->leader_since = uv_now(h->loop);
    if (h->reaped || uv_now(h->loop) - h->leader_since < HUB_EPHEMERAL_GRACE_MS)
        return;
    h->reaped = true;
    snprintf(keep, sizeof keep, "%llu.%s.", (unsigned long long)h->cfg->node_id, h->boot);
    reap_propose(h, "keep", keep);
}

/* Log once when a leader becomes known (or another takes over) and once
 * when it is lost, not at every check: followers too say when they are
 * ready. At start mqhubd's main() tells whether it waits for quorum. */
static void tell_leader(hub_t *h)
{
    replica_stats_t st;

    if (h->stopping)
        return;
    replica_stats(h->replica, &st);
    if (st.leader_id == h->told_leader || replica_removed(h->replica, NULL))
        return; /* a removed node is not ready: the replica said so */
    if (st.leader_id != 0)
        log_info("hub", "ready: leader node %llu (term %llu)",
                 (unsigned long long)st.leader_id, (unsigned long long)st.term);
    else
        log_warn("hub", "waiting for quorum: leader node %llu lost (term %llu)",
                 (unsigned long long)h->told_leader, (unsigned long long)st.term);
    h->told_leader = st.leader_id;
}

/* From the replica as soon as leadership changes: waiters parked here can
 * no longer be served, so they move to the new leader (NOT_LEADER names it). */
/* Leadership is checked on every change (on_leadership) and periodically as
 * a safety net (on_check): a node that stops leading fails its parked
 * waiters and closes its push sessions with NOT_LEADER, so clients move to
 * the leader; a node that leads for the first time creates what the config
 * declares. */
static void check_leadership(hub_t *h, bool leader)
{
    tell_leader(h);
    if (h->n_parked > 0 && !leader)
        fail_parked(h, MQHUB_ENOT_LEADER);
    push_check(h->push);
    reap_check(h, leader);
    if (leader && !h->declared) {
        h->declared = true;
        declare(h, "script.load", h->cfg->scripts, h->cfg->n_scripts);
        declare_queues(h);
        declare(h, "topic.create", h->cfg->topics, h->cfg->n_topics);
    }
}

static void on_leadership(void *arg, bool leader)
{
    check_leadership(arg, leader);
}

static void on_check(uv_timer_t *t)
{
    hub_t *h = t->data;
    check_leadership(h, replica_is_leader(h->replica));
}

/* The queue's polling_wait attribute (its default long-poll wait), read
 * through the state machine's queue.get; 0 when the queue does not exist. */
static uint64_t default_wait(hub_t *h, const msgpack_object *queue)
{
    msgpack_sbuffer req, resp;
    msgpack_packer pk;
    msgpack_unpacked u;
    const msgpack_object *attrs, *pw;
    uint64_t wait = 0;
    size_t off = 0;

    msgpack_sbuffer_init(&req);
    msgpack_sbuffer_init(&resp);
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "queue.get");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 0);
    mp_pack_cstr(&pk, "name");
    msgpack_pack_object(&pk, *queue);
    msgpack_unpacked_init(&u);
    if (mp_unpack(&u, req.data, req.size, &off) == MSGPACK_UNPACK_SUCCESS &&
        fsm_read(h->fsm, &u.data, &resp) == 0) {
        msgpack_unpacked_destroy(&u);
        msgpack_unpacked_init(&u);
        if (mp_unpack(&u, resp.data, resp.size, NULL) == MSGPACK_UNPACK_SUCCESS &&
            (attrs = mp_map_get(&u.data, "attrs")) != NULL &&
            (pw = mp_map_get(attrs, "polling_wait")) != NULL &&
            pw->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            wait = pw->via.u64;
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&req);
    msgpack_sbuffer_destroy(&resp);
    return wait > MQHUB_RECEIVE_WAIT_MAX ? MQHUB_RECEIVE_WAIT_MAX : wait;
}

/* `receive`: submit now when messages are ready or no wait is asked, else
 * park until some arrive or the wait ends. */
static void receive_start(mqhub_session_t *s, const wire_request_t *v, const char *buf,
                          size_t len, mqhub_reply_cb cb, void *arg)
{
    hub_t *h = s->hub;
    const msgpack_object *queue = mp_map_get(v->map, "queue");
    const msgpack_object *w = mp_map_get(v->map, "wait");
    uint64_t wait;
    hub_req_t *r;

    if (queue == NULL || queue->type != MSGPACK_OBJECT_STR) {
        reply_error(h, cb, arg, true, v->id, MQHUB_EBAD_REQUEST,
                    "queue: receive needs the queue's name as a string");
        return;
    }
    if (w != NULL && (w->type != MSGPACK_OBJECT_POSITIVE_INTEGER || w->via.u64 > MQHUB_RECEIVE_WAIT_MAX)) {
        reply_error(h, cb, arg, true, v->id, MQHUB_EBAD_REQUEST,
                    "wait: seconds to wait for a message, an integer 0-%d", MQHUB_RECEIVE_WAIT_MAX);
        return;
    }
    if (!replica_is_leader(h->replica)) {
        reply_status(h, cb, arg, v->id, MQHUB_ENOT_LEADER);
        return;
    }
    wait = w != NULL ? w->via.u64 : default_wait(h, queue);
    r = req_new(s, cb, arg, v->id, buf, len);
    if (r == NULL || (r->q = waitq_get(h, queue->via.str.ptr, queue->via.str.size)) == NULL) {
        if (r != NULL)
            req_free(r);
        reply_error(h, cb, arg, true, v->id, MQHUB_EINTERNAL, "out of memory");
        return;
    }
    r->deadline = uv_now(h->loop) + wait * 1000;
    if (wait == 0 || fsm_queue_ready(h->fsm, r->q->name, r->q->len) > r->q->inflight)
        receive_submit(r);
    else
        receive_park(r, false);
}

/* ------------------------------------------------------------ identities */

static bool token_equal(const char *want, const char *got, size_t n)
{
    unsigned char diff = 0;

    if (strlen(want) != n)
        return false;
    for (size_t i = 0; i < n; i++) /* constant time: no early exit */
        diff |= (unsigned char)(want[i] ^ got[i]);
    return diff == 0;
}

/* Whether a session must say hello with a token: a root token is configured
 * or users exist. Otherwise every session is anonymous with every right. */
static bool auth_required(hub_t *h)
{
    return h->cfg->token != NULL || fsm_user_count(h->fsm) > 0;
}

static bool identified(mqhub_session_t *s)
{
    return s->who == WHO_ROOT || s->who == WHO_USER || !auth_required(s->hub);
}

static const char *identity(const mqhub_session_t *s, char *buf, size_t size)
{
    if (s->who == WHO_ROOT)
        return "root";
    if (s->who != WHO_USER)
        return "anonymous";
    snprintf(buf, size, "user:%s", s->user);
    return buf;
}

/* The source address of @s, the key of its throttling state: the peer
 * without the port the tcp transport appends ("127.0.0.1:5000"). */
static void peer_host(const mqhub_session_t *s, char *out, size_t size)
{
    const char *colon = strrchr(s->peer, ':');
    size_t n = strlen(s->peer);

    if (strcmp(s->transport, "tcp") == 0 && colon != NULL)
        n = (size_t)(colon - s->peer);
    snprintf(out, size, "%.*s", (int)n, s->peer);
}

/* The throttling state of address @host, NULL when it has none; with
 * @create, a slot for it (a free one, else the least recently failed). */
static struct auth_addr *auth_addr(hub_t *h, const char *host, bool create)
{
    uint64_t now = uv_now(h->loop);
    struct auth_addr *free_slot = NULL, *oldest = NULL;

    for (unsigned i = 0; i < AUTH_ADDRS; i++) {
        struct auth_addr *a = &h->addrs[i];
        if (a->addr[0] != '\0' && now - a->last > AUTH_FORGET_MS)
            a->addr[0] = '\0'; /* forgotten */
        if (a->addr[0] == '\0') {
            free_slot = free_slot != NULL ? free_slot : a;
            continue;
        }
        if (strcmp(a->addr, host) == 0)
            return a;
        if (oldest == NULL || a->last < oldest->last)
            oldest = a;
    }
    if (!create)
        return NULL;
    if (free_slot == NULL)
        free_slot = oldest;
    memset(free_slot, 0, sizeof *free_slot);
    snprintf(free_slot->addr, sizeof free_slot->addr, "%s", host);
    return free_slot;
}

/* How long the next hello of @s waits (ms): 0 until AUTH_FREE failures on
 * its connection or from its address, counting the hellos already held. */
static uint64_t hello_delay(mqhub_session_t *s)
{
    char host[64];
    struct auth_addr *a;
    unsigned n = s->fails;
    uint64_t d = AUTH_DELAY_MS;

    peer_host(s, host, sizeof host);
    a = auth_addr(s->hub, host, false);
    if (a != NULL && a->fails > n)
        n = a->fails;
    n += s->hellos_held;
    if (n < AUTH_FREE)
        return 0;
    for (unsigned i = AUTH_FREE; i < n && d < AUTH_DELAY_MAX_MS; i++)
        d *= 2;
    return d < AUTH_DELAY_MAX_MS ? d : AUTH_DELAY_MAX_MS;
}

/* Count a wrong token from @s and log it, at most once per AUTH_LOG_MS. */
static void auth_failed(mqhub_session_t *s)
{
    hub_t *h = s->hub;
    uint64_t now = uv_now(h->loop);
    char host[64];
    struct auth_addr *a;

    peer_host(s, host, sizeof host);
    a = auth_addr(h, host, true);
    s->fails++;
    a->fails++;
    a->last = now;
    metrics_add(h->metrics, "auth_failures_total", 1);
    if (h->auth_logged != 0 && now - h->auth_logged < AUTH_LOG_MS) {
        h->auth_unlogged++;
        return;
    }
    log_warn("auth",
             "hello refused: wrong token peer=%s transport=%s failures_connection=%u "
             "failures_address=%u refusals_not_logged=%u",
             s->peer, s->transport, s->fails, a->fails, h->auth_unlogged);
    h->auth_logged = now;
    h->auth_unlogged = 0;
}

/* Who @token makes @s: 0 (s->who set), or MQHUB_EUNAUTHORIZED (unchanged). */
static int authenticate(mqhub_session_t *s, const msgpack_object *token)
{
    hub_t *h = s->hub;
    unsigned char hash[FSM_USER_HASH_LEN];
    const char *t = NULL;
    size_t tl = 0;

    if (token != NULL && token->type == MSGPACK_OBJECT_STR) {
        t = token->via.str.ptr;
        tl = token->via.str.size;
    }
    if (t != NULL && h->cfg->token != NULL && token_equal(h->cfg->token, t, tl)) {
        s->who = WHO_ROOT;
        return 0;
    }
    if (t != NULL && fsm_user_count(h->fsm) > 0) {
        fsm_user_hash(t, tl, hash);
        if (fsm_user_find(h->fsm, hash, s->user, sizeof s->user) == 0) {
            memcpy(s->hash, hash, sizeof hash);
            s->who = WHO_USER;
            return 0;
        }
    }
    if (auth_required(h))
        return MQHUB_EUNAUTHORIZED;
    s->who = WHO_ANON;
    return 0;
}

static void hello_now(mqhub_session_t *s, const wire_request_t *v, mqhub_reply_cb cb, void *arg)
{
    hub_t *h = s->hub;
    const msgpack_object *ver = mp_map_get(v->map, "version");
    const msgpack_object *token = mp_map_get(v->map, "token");
    const char *leader = leader_address(h);
    msgpack_sbuffer sb;
    msgpack_packer pk;

    if (ver == NULL || ver->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        ver->via.u64 != MQHUB_PROTOCOL_VERSION) {
        reply_error(h, cb, arg, true, v->id, MQHUB_EBAD_REQUEST,
                    "version: this server speaks protocol version %d", MQHUB_PROTOCOL_VERSION);
        return;
    }
    if (authenticate(s, token) != 0) {
        if (token != NULL && token->type != MSGPACK_OBJECT_NIL)
            auth_failed(s);
        reply_error(h, cb, arg, true, v->id, MQHUB_EUNAUTHORIZED,
                    "token: missing or wrong; give the token of the server's auth{} config "
                    "or a user's token");
        return;
    }
    s->by_name = false; /* a token now says who the session is */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_pack_head(&pk, true, v->id, true, 4 + (leader ? 1 : 0) + (s->who == WHO_USER ? 1 : 0));
    mp_pack_cstr(&pk, "server");
    mp_pack_cstr(&pk, "mqhub");
    mp_pack_cstr(&pk, "version");
    msgpack_pack_uint32(&pk, MQHUB_PROTOCOL_VERSION);
    mp_pack_cstr(&pk, "node");
    msgpack_pack_uint64(&pk, h->cfg->node_id);
    if (leader != NULL) {
        mp_pack_cstr(&pk, "leader");
        mp_pack_cstr(&pk, leader);
    }
    if (s->who == WHO_USER) {
        mp_pack_cstr(&pk, "user");
        mp_pack_cstr(&pk, s->user);
    }
    mp_pack_cstr(&pk, "max_frame");
    msgpack_pack_uint64(&pk, hub_max_frame(h));
    cb(arg, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* A held hello's turn came: answer it. @r leaves the session's list before
 * the reply (whose callback may close the session) and is freed after; its
 * frame stays valid until its timer handle closed. */
static void on_hello_due(uv_timer_t *t)
{
    hub_req_t *r = t->data;
    mqhub_session_t *s = r->s;
    wire_request_t v;
    msgpack_unpacked u;
    char err[256];

    s->hellos_held--;
    req_detach(r);
    msgpack_unpacked_init(&u);
    if (wire_decode_request(&u, r->frame, r->len, &v, err, sizeof err) == 0)
        hello_now(s, &v, r->cb, r->arg); /* decoded once already: cannot fail */
    msgpack_unpacked_destroy(&u);
    req_free(r);
}

/* hello: answered now, or — after failed ones (hello_delay) — held on a
 * timer, in arrival order, so guesses never come faster than the delay
 * whether sent one by one or pipelined. The loop never blocks. */
static void hello(mqhub_session_t *s, const wire_request_t *v, const char *buf, size_t len,
                  mqhub_reply_cb cb, void *arg)
{
    hub_t *h = s->hub;
    uint64_t delay = hello_delay(s), now = uv_now(h->loop);
    hub_req_t *r;

    if (delay == 0) {
        hello_now(s, v, cb, arg);
        return;
    }
    if ((r = req_new(s, cb, arg, v->id, buf, len)) == NULL) {
        reply_error(h, cb, arg, true, v->id, MQHUB_EINTERNAL, "out of memory");
        return;
    }
    r->lat = NULL; /* its wait is the penalty, not latency */
    s->hello_next = (s->hello_next > now ? s->hello_next : now) + delay;
    s->hellos_held++;
    uv_timer_init(h->loop, &r->timer);
    r->timer.data = r;
    r->timer_init = true;
    uv_timer_start(&r->timer, on_hello_due, s->hello_next - now, 0);
}

/* ----------------------------------------------------------- permissions */

/* Field @path of @map, dotted for nested maps ("attrs.hook"); NULL if absent. */
static const msgpack_object *field_get(const msgpack_object *map, const char *path)
{
    char key[64];
    const char *dot;

    while (map != NULL && (dot = strchr(path, '.')) != NULL) {
        snprintf(key, sizeof key, "%.*s", (int)(dot - path), path);
        map = mp_map_get(map, key);
        if (map != NULL && map->type != MSGPACK_OBJECT_MAP)
            return NULL;
        path = dot + 1;
    }
    return map != NULL ? mp_map_get(map, path) : NULL;
}

/* One line per manage, script or admin request (comp=audit, level=info,
 * written whatever the configured level: log_audit): who, the op, the names it carries, where from, and whether the
 * permission check let it through ("allowed" is not "succeeded"). */
static void audit(mqhub_session_t *s, const ops_row_t *o, const wire_request_t *v,
                  const char *result)
{
    static const char *const fields[] = {"name", "topic", "queue", "verb", "pattern",
                                         "endpoint.queue", "dead_letter_queue",
                                         "attrs.dead_letter.queue", "attrs.hook", "address"};
    enum ops_verb verb = o->perm[0].verb;
    char names[768] = "", who[96];
    size_t off = 0;

    if ((verb != OPS_V_MANAGE && verb != OPS_V_SCRIPT && verb != OPS_V_ADMIN) ||
        o->kind == OPS_READ)
        return;
    for (unsigned i = 0; i < sizeof fields / sizeof fields[0] && off < sizeof names; i++) {
        const msgpack_object *f = field_get(v->map, fields[i]);
        if (f != NULL && f->type == MSGPACK_OBJECT_STR)
            off += (size_t)snprintf(names + off, sizeof names - off, " %s=%.*s", fields[i],
                                    (int)(f->via.str.size > 64 ? 64 : f->via.str.size),
                                    f->via.str.ptr);
    }
    log_audit("identity=%s op=%s%s peer=%s transport=%s result=%s",
             identity(s, who, sizeof who), o->name, names, s->peer, s->transport, result);
}

/* What a user is refused, in words: "send to", "manage", ... */
static const char *verb_phrase(enum ops_verb v)
{
    switch (v) {
    case OPS_V_SEND: return "send to";
    case OPS_V_RECEIVE: return "receive from";
    case OPS_V_PUBLISH: return "publish to";
    case OPS_V_SUBSCRIBE: return "subscribe to";
    case OPS_V_MANAGE: return "manage";
    case OPS_V_SCRIPT: return "manage the script";
    case OPS_V_ADMIN: return "administer";
    case OPS_V_MONITOR: return "monitor";
    default: return "see";
    }
}

static void reply_forbidden(mqhub_session_t *s, const ops_row_t *o, const ops_perm_t *p,
                            const wire_request_t *v, const char *name, size_t nl,
                            mqhub_reply_cb cb, void *arg)
{
    int n = (int)(nl > MQHUB_NAME_MAX ? MQHUB_NAME_MAX : nl);
    const char *verb = p->verb == OPS_V_ANY ? "any verb" : ops_verb_name(p->verb);

    audit(s, o, v, "denied");
    if (p->field == NULL)
        reply_error(s->hub, cb, arg, true, v->id, MQHUB_EFORBIDDEN,
                    "user '%s' may not %s the hub (%s needs %s on *)", s->user,
                    verb_phrase(p->verb), o->name, verb);
    else
        reply_error(s->hub, cb, arg, true, v->id, MQHUB_EFORBIDDEN,
                    "user '%s' may not %s '%.*s' (%s needs %s on %.*s)", s->user,
                    verb_phrase(p->verb), n, name, o->name, verb, n, name);
}

/* The permission column of row @o for a named user (docs/security.md):
 * true, or false having replied FORBIDDEN (or UNAUTHORIZED when the user was
 * deleted, BAD_REQUEST when the op's own object is not named). Grants are
 * read from the state machine on every request, so changes apply at once. */
static bool permitted(mqhub_session_t *s, const ops_row_t *o, const wire_request_t *v,
                      mqhub_reply_cb cb, void *arg)
{
    hub_t *h = s->hub;

    for (unsigned i = 0; i < OPS_PERMS; i++) {
        const ops_perm_t *p = &o->perm[i];
        const msgpack_object *f = p->field != NULL ? field_get(v->map, p->field) : NULL;
        const char *name = "*";
        size_t nl = 1;
        int rc;

        if (i > 0 && p->verb == OPS_V_NONE)
            break;
        if (p->field != NULL && (f == NULL || f->type != MSGPACK_OBJECT_STR)) {
            if (i > 0)
                continue; /* an optional second object, absent */
            reply_error(h, cb, arg, true, v->id, MQHUB_EBAD_REQUEST,
                        "field '%s' is required (a string)", p->field);
            return false;
        }
        if (f != NULL) {
            name = f->via.str.ptr;
            nl = f->via.str.size;
        }
        rc = fsm_user_may(h->fsm, s->hash, p->verb, name, nl);
        if (rc == MQHUB_EUNAUTHORIZED) {
            reply_error(h, cb, arg, true, v->id, rc,
                        "user '%s' was deleted; say hello again with a valid token", s->user);
            return false;
        }
        if (rc != 0) {
            reply_forbidden(s, o, p, v, name, nl, cb, arg);
            return false;
        }
    }
    return true;
}

/* -------------------------------------------------------------- dispatch */

static void reply_ok(mqhub_reply_cb cb, void *arg, uint64_t id)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_pack_head(&pk, true, id, true, 0);
    cb(arg, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* A reply callback that keeps the reply in the msgpack_sbuffer @arg. */
static void sbuffer_reply(void *arg, const char *reply, size_t len)
{
    msgpack_sbuffer_write(arg, reply, len);
}

/* Whether a named user's read in slices @r is still permitted: its request
 * (kept in r->frame) against its row, with the grants of now, so a revoked
 * grant or a deleted user stops it at the next slice. When it is not, the
 * refusal (FORBIDDEN or UNAUTHORIZED, as permitted() words it) is in @sb. */
static bool read_still_permitted(hub_req_t *r, msgpack_sbuffer *sb)
{
    msgpack_unpacked u;
    wire_request_t v;
    char err[64];
    bool ok;

    if (r->s == NULL || r->s->who != WHO_USER)
        return true;
    msgpack_unpacked_init(&u);
    ok = wire_decode_request(&u, r->frame, r->len, &v, err, sizeof err) == 0 &&
         permitted(r->s, r->op, &v, sbuffer_reply, sb);
    msgpack_unpacked_destroy(&u);
    return ok;
}

/* The next slice of a read in slices, one per loop turn (a 1 ms repeating
 * timer: libuv 1.44 runs a 0 ms timer started from a timer callback again in
 * the same turn); it ends with NOT_LEADER once this node stops leading, with
 * UNAVAILABLE when the hub stops (its timer keeps the loop running until
 * then), and with FORBIDDEN once a named user lost the grant it needs (each
 * slice checks it again: read_still_permitted). */
static void on_read_slice(uv_timer_t *t)
{
    hub_req_t *r = t->data;
    msgpack_sbuffer sb;

    if (r->hub->stopping || !replica_is_leader(r->hub->replica)) {
        req_fail(r, r->hub->stopping ? MQHUB_EUNAVAILABLE : MQHUB_ENOT_LEADER);
        return;
    }
    msgpack_sbuffer_init(&sb);
    if (!read_still_permitted(r, &sb) || fsm_read_step(r->hub->fsm, r->read, &sb))
        req_reply(r, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* A read, from applied state on the leader; a named user's lists show only
 * what it holds grants on. A long one (script.test) runs in slices
 * (fsm_read_start): its cursor waits in a hub_req_t of the session, with the
 * request @buf (@len bytes) and its row @o for the permission check of each
 * slice; a closed session frees it (req_free) and is never called back. */
static void read_op(mqhub_session_t *s, const ops_row_t *o, const wire_request_t *v,
                    const char *buf, size_t len, mqhub_reply_cb cb, void *arg)
{
    hub_t *h = s->hub;
    msgpack_sbuffer sb;
    fsm_read_t *cur;
    hub_req_t *r;

    if (!replica_is_leader(h->replica)) {
        reply_status(h, cb, arg, v->id, MQHUB_ENOT_LEADER);
        return;
    }
    msgpack_sbuffer_init(&sb);
    fsm_read_start(h->fsm, v->map, s->who == WHO_USER ? s->hash : NULL, &sb, &cur);
    if (cur == NULL) {
        if (reply_fits(h, cb, arg, v->id, sb.size))
            cb(arg, sb.data, sb.size);
    } else if ((r = req_new(s, cb, arg, v->id, buf, len)) == NULL) {
        fsm_read_free(cur);
        reply_error(h, cb, arg, true, v->id, MQHUB_EINTERNAL, "out of memory");
    } else {
        r->read = cur;
        r->op = o;
        uv_timer_init(h->loop, &r->timer);
        r->timer.data = r;
        r->timer_init = true;
        uv_timer_start(&r->timer, on_read_slice, 0, 1);
    }
    msgpack_sbuffer_destroy(&sb);
}

static bool is_key(const msgpack_object *k, const char *name)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name) &&
           memcmp(k->via.str.ptr, name, k->via.str.size) == 0;
}

/* Whether key @k of a request is a field of op @o (ops_uses_field). */
static bool used_field(const ops_row_t *o, const msgpack_object *k)
{
    return k->type == MSGPACK_OBJECT_STR && ops_uses_field(o, k->via.str.ptr, k->via.str.size);
}

/* @map re-packed into @sb (initialized here; the caller destroys it) with
 * only the fields op @o uses (its row's fields column, core/sm/ops.c): a
 * field no handler reads never reaches the raft log, so padding a request
 * costs the client its frame, not every node's log and every apply. A
 * receive (OPS_F_LONG_POLL) gets reply_max, this node's max_frame, in place
 * of any the client sent: apply stops its batch below it (queue.c). */
static void pack_used_fields(mqhub_session_t *s, const ops_row_t *o,
                             const msgpack_object *map, msgpack_sbuffer *sb)
{
    const msgpack_object_map *m = &map->via.map;
    bool receive = (o->flags & OPS_F_LONG_POLL) != 0;
    /* subscription.create {ephemeral: true}: the owner is this session */
    const char *own = (o->flags & OPS_F_OWNER) ? "owner" : NULL;
    const msgpack_object *e = own ? mp_map_get(map, "ephemeral") : NULL;
    bool owned = e != NULL && e->type == MSGPACK_OBJECT_BOOLEAN && e->via.boolean;
    const char *node = receive ? "reply_max" : own; /* the field the node writes */
    msgpack_packer pk;
    uint32_t n = 0;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    for (uint32_t i = 0; i < m->size; i++)
        n += used_field(o, &m->ptr[i].key) && !(node && is_key(&m->ptr[i].key, node));
    msgpack_pack_map(&pk, n + receive + owned);
    for (uint32_t i = 0; i < m->size; i++) {
        if (!used_field(o, &m->ptr[i].key) || (node && is_key(&m->ptr[i].key, node)))
            continue;
        msgpack_pack_object(&pk, m->ptr[i].key);
        msgpack_pack_object(&pk, m->ptr[i].val);
    }
    if (receive) {
        mp_pack_cstr(&pk, "reply_max");
        msgpack_pack_uint64(&pk, hub_max_frame(s->hub));
    }
    if (owned) {
        char owner[64];
        session_owner(s, owner, sizeof owner);
        mp_pack_cstr(&pk, "owner");
        mp_pack_cstr(&pk, owner);
        s->ephemeral = true;
    }
}

/* Submit @buf through raft; @token (NULL: none) is added to the reply. */
static void write_op(mqhub_session_t *s, uint64_t id, const char *buf, size_t len,
                     const char *token, mqhub_reply_cb cb, void *arg)
{
    hub_t *h = s->hub;
    hub_req_t *r = req_new(s, cb, arg, id, NULL, 0);
    int rc;

    if (r == NULL) {
        reply_error(h, cb, arg, true, id, MQHUB_EINTERNAL, "out of memory");
        return;
    }
    if (token != NULL)
        snprintf(r->token, sizeof r->token, "%s", token);
    rc = replica_submit(h->replica, buf, len, on_replica_done, r);
    if (rc != 0)
        req_fail(r, rc);
    else
        r->in_replica = true;
}

static bool is_token_key(const msgpack_object *k)
{
    return k->type == MSGPACK_OBJECT_STR &&
           ((k->via.str.size == 5 && memcmp(k->via.str.ptr, "token", 5) == 0) ||
            (k->via.str.size == 12 && memcmp(k->via.str.ptr, "token_sha256", 12) == 0));
}

/* A row flagged OPS_F_TOKEN (user.create): the token — the client's (at
 * least TOKEN_MIN characters) or, when it gives none, TOKEN_RANDOM random
 * bytes in hex made here (apply has no random source) — is replaced by its
 * SHA-256 before the request is submitted, so the log never holds it. A
 * generated token is told once, in the reply. Like any write it submits only
 * the fields of its row @o. */
static void token_op(mqhub_session_t *s, const ops_row_t *o, const wire_request_t *v,
                     mqhub_reply_cb cb, void *arg)
{
    hub_t *h = s->hub;
    const msgpack_object *t = mp_map_get(v->map, "token");
    unsigned char rnd[TOKEN_RANDOM], hash[FSM_USER_HASH_LEN];
    char gen[2 * TOKEN_RANDOM + 1] = "";
    const msgpack_object_map *m = &v->map->via.map;
    uint32_t n = 0;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    if (t != NULL && t->type != MSGPACK_OBJECT_NIL) {
        if (t->type != MSGPACK_OBJECT_STR || t->via.str.size < TOKEN_MIN ||
            t->via.str.size > TOKEN_MAX) {
            reply_error(h, cb, arg, true, v->id, MQHUB_EBAD_REQUEST,
                        "token: a string of %d-%d characters (leave it out and the node "
                        "generates one)", TOKEN_MIN, TOKEN_MAX);
            return;
        }
        if (h->cfg->token != NULL && token_equal(h->cfg->token, t->via.str.ptr, t->via.str.size)) {
            reply_error(h, cb, arg, true, v->id, MQHUB_EBAD_REQUEST,
                        "token: this is the server's root token; choose another");
            return;
        }
        fsm_user_hash(t->via.str.ptr, t->via.str.size, hash);
    } else {
        if (RAND_bytes(rnd, sizeof rnd) != 1) {
            reply_error(h, cb, arg, true, v->id, MQHUB_EINTERNAL, "no random source for a token");
            return;
        }
        for (unsigned i = 0; i < sizeof rnd; i++)
            snprintf(gen + 2 * i, 3, "%02x", rnd[i]);
        OPENSSL_cleanse(rnd, sizeof rnd);
        fsm_user_hash(gen, strlen(gen), hash);
    }
    for (uint32_t i = 0; i < m->size; i++)
        n += !is_token_key(&m->ptr[i].key) && used_field(o, &m->ptr[i].key);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, n + 1);
    for (uint32_t i = 0; i < m->size; i++) {
        if (is_token_key(&m->ptr[i].key) || !used_field(o, &m->ptr[i].key))
            continue; /* every copy: the plaintext must not reach the log */
        msgpack_pack_object(&pk, m->ptr[i].key);
        msgpack_pack_object(&pk, m->ptr[i].val);
    }
    mp_pack_cstr(&pk, "token_sha256");
    msgpack_pack_bin(&pk, sizeof hash);
    msgpack_pack_bin_body(&pk, hash, sizeof hash);
    write_op(s, v->id, sb.data, sb.size, gen[0] ? gen : NULL, cb, arg);
    OPENSSL_cleanse(gen, sizeof gen);
    msgpack_sbuffer_destroy(&sb);
}

/* subscribe / credit / unsubscribe (@op): the push engine (push.c). */
static void session_op(mqhub_session_t *s, enum ops_node op, const wire_request_t *v,
                       mqhub_reply_cb cb, void *arg)
{
    char err[256];
    int rc = push_request(s->hub->push, s, op, s->push, s->push_arg, v->map, err, sizeof err);

    if (rc == 0)
        reply_ok(cb, arg, v->id);
    else if (rc == MQHUB_ENOT_LEADER)
        reply_status(s->hub, cb, arg, v->id, rc);
    else
        reply_error(s->hub, cb, arg, true, v->id, rc, "%s", err);
}

/* A session its transport named (hub_session_identify): the named user's
 * token hash of now into s->hash, so its grants — and a delete or re-create
 * of the name — apply from this request on. false, having replied
 * UNAUTHORIZED, when no user has the name. */
static bool named_user_current(mqhub_session_t *s, const wire_request_t *v,
                               mqhub_reply_cb cb, void *arg)
{
    if (fsm_user_by_name(s->hub->fsm, s->user, strlen(s->user), s->hash) == 0)
        return true;
    memset(s->hash, 0, sizeof s->hash);
    reply_error(s->hub, cb, arg, true, v->id, MQHUB_EUNAUTHORIZED,
                "user '%s' (named by transport %s) does not exist", s->user, s->transport);
    return false;
}

/* ------------------------------------------ connection.list, consumer.list */

#define CONSOLE_LIST_MAX 1000 /* connections or consumers one reply lists */

/* A console list being packed: its items into @sb, counted in @n (all) of
 * which the first CONSOLE_LIST_MAX are packed. */
typedef struct console {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint64_t n;
    const mqhub_session_t *self;
    const char *topic; /* consumer.list {topic}: only its consumers */
    size_t tl;
} console_t;

/* The map header of a connection or consumer map with @n fields of its
 * own, then the fields saying who @s is: connection (its sid), transport,
 * peer, identity ("root", "anonymous", "user" with user: name, or "none"
 * before a hello on a hub that needs one). */
static void pack_who(msgpack_packer *pk, const mqhub_session_t *s, unsigned n)
{
    static const char *const names[] = {"none", "anonymous", "root", "user"};
    msgpack_pack_map(pk, n + (s->who == WHO_USER ? 5 : 4));
    mp_pack_cstr(pk, "connection");
    msgpack_pack_uint64(pk, s->sid);
    mp_pack_cstr(pk, "transport");
    mp_pack_cstr(pk, s->transport);
    mp_pack_cstr(pk, "peer");
    mp_pack_text(pk, s->peer);
    mp_pack_cstr(pk, "identity");
    mp_pack_cstr(pk, names[s->who]);
    if (s->who == WHO_USER) {
        mp_pack_cstr(pk, "user");
        mp_pack_cstr(pk, s->user);
    }
}

static void pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
    mp_pack_cstr(pk, key);
    msgpack_pack_uint64(pk, v);
}

/* One push consumer as an element of a connection's subscriptions. */
static void console_sub(void *arg, const push_consumer_info_t *c)
{
    msgpack_packer *pk = arg;
    msgpack_pack_map(pk, 4);
    mp_pack_cstr(pk, "topic");
    mp_pack_str(pk, c->topic, c->tl);
    mp_pack_cstr(pk, "subscription");
    mp_pack_str(pk, c->subscription, c->sl);
    pack_kv_u64(pk, "credit", c->credit_free);
    pack_kv_u64(pk, "inflight", c->inflight);
}

static void count_sub(void *arg, const push_consumer_info_t *c)
{
    (void)c;
    (*(uint32_t *)arg)++;
}

/* The requests of @s parked as long polls (of queue @q; NULL: any), and
 * its other outstanding ones. */
static void session_reqs(const mqhub_session_t *s, const waitq_t *q, uint64_t *parked,
                         uint64_t *inflight)
{
    *parked = *inflight = 0;
    for (const hub_req_t *r = s->reqs; r != NULL; r = r->next) {
        if (r->parked && r->q != NULL && (q == NULL || r->q == q))
            (*parked)++;
        else if (q == NULL)
            (*inflight)++;
    }
}

static void console_connection(console_t *k, const mqhub_session_t *s)
{
    msgpack_packer *pk = &k->pk;
    uint64_t parked, inflight;
    uint32_t n_subs = 0;
    push_consumers(s->hub->push, s, count_sub, &n_subs);
    session_reqs(s, NULL, &parked, &inflight);
    pack_who(pk, s, 8);
    pack_kv_u64(pk, "connected_at", s->connected_at);
    pack_kv_u64(pk, "requests", s->requests);
    pack_kv_u64(pk, "bytes_in", s->bytes_in);
    pack_kv_u64(pk, "bytes_out", s->bytes_out);
    pack_kv_u64(pk, "inflight", inflight);
    pack_kv_u64(pk, "parked", parked);
    mp_pack_cstr(pk, "subscriptions");
    msgpack_pack_array(pk, n_subs);
    push_consumers(s->hub->push, s, console_sub, pk);
    mp_pack_cstr(pk, "self");
    if (s == k->self)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

/* A push consumer as an element of consumer.list. */
static void console_push(void *arg, const push_consumer_info_t *c)
{
    console_t *k = arg;
    if (k->topic != NULL && (c->tl != k->tl || memcmp(c->topic, k->topic, c->tl) != 0))
        return;
    if (k->n++ >= CONSOLE_LIST_MAX)
        return;
    pack_who(&k->pk, c->s, 5);
    mp_pack_cstr(&k->pk, "kind");
    mp_pack_cstr(&k->pk, "push");
    mp_pack_cstr(&k->pk, "topic");
    mp_pack_str(&k->pk, c->topic, c->tl);
    mp_pack_cstr(&k->pk, "subscription");
    mp_pack_str(&k->pk, c->subscription, c->sl);
    pack_kv_u64(&k->pk, "credit", c->credit_free);
    pack_kv_u64(&k->pk, "inflight", c->inflight);
}

/* The long-poll consumers of @s: one per queue it has receives parked on
 * (@only: that queue's only). */
static void console_polls(console_t *k, const mqhub_session_t *s, const waitq_t *only)
{
    for (const hub_req_t *r = s->reqs; r != NULL; r = r->next) {
        uint64_t parked, unused;
        bool seen = false;
        if (!r->parked || r->q == NULL || (only != NULL && r->q != only))
            continue;
        for (const hub_req_t *e = s->reqs; e != r && !seen; e = e->next)
            seen = e->parked && e->q == r->q;
        if (seen || k->n++ >= CONSOLE_LIST_MAX)
            continue;
        session_reqs(s, r->q, &parked, &unused);
        pack_who(&k->pk, s, 3);
        mp_pack_cstr(&k->pk, "kind");
        mp_pack_cstr(&k->pk, "receive");
        mp_pack_cstr(&k->pk, "queue");
        mp_pack_str(&k->pk, r->q->name, r->q->len);
        pack_kv_u64(&k->pk, "parked", parked);
    }
}

/* An optional string field @key of @v: true with *s NULL when absent;
 * false (having replied BAD_REQUEST) when not a string. */
static bool console_arg(mqhub_session_t *s, const wire_request_t *v, const char *key,
                        const msgpack_object **out, mqhub_reply_cb cb, void *arg)
{
    const msgpack_object *o = mp_map_get(v->map, key);
    *out = NULL;
    if (o == NULL || o->type == MSGPACK_OBJECT_NIL)
        return true;
    if (o->type == MSGPACK_OBJECT_STR) {
        *out = o;
        return true;
    }
    reply_error(s->hub, cb, arg, true, v->id, MQHUB_EBAD_REQUEST,
                "field '%s' must be a string (a name)", key);
    return false;
}

/* connection.list {} → {connections: [...], total} and consumer.list
 * {queue? | topic?} → {consumers: [...], total}: this node's sessions, on
 * the leader only (where long polls and push consumers live), newest first,
 * at most CONSOLE_LIST_MAX of them. */
static void console_list(mqhub_session_t *s, enum ops_node op, const wire_request_t *v,
                         mqhub_reply_cb cb, void *arg)
{
    hub_t *h = s->hub;
    const msgpack_object *queue = NULL, *topic = NULL;
    const waitq_t *only = NULL;
    console_t k = {.self = s};
    msgpack_sbuffer out;
    msgpack_packer pk;

    if (!replica_is_leader(h->replica)) {
        reply_status(h, cb, arg, v->id, MQHUB_ENOT_LEADER);
        return;
    }
    if (op == OPS_NODE_CONSUMER_LIST &&
        (!console_arg(s, v, "queue", &queue, cb, arg) || !console_arg(s, v, "topic", &topic, cb, arg)))
        return;
    if (queue != NULL && topic != NULL) {
        reply_error(h, cb, arg, true, v->id, MQHUB_EBAD_REQUEST,
                    "give field 'queue' or field 'topic', not both");
        return;
    }
    if (topic != NULL) {
        k.topic = topic->via.str.ptr;
        k.tl = topic->via.str.size;
    }
    msgpack_sbuffer_init(&k.sb);
    msgpack_packer_init(&k.pk, &k.sb, msgpack_sbuffer_write);
    if (op == OPS_NODE_CONNECTION_LIST) {
        for (const mqhub_session_t *e = h->sessions; e != NULL; e = e->next)
            if (k.n++ < CONSOLE_LIST_MAX)
                console_connection(&k, e);
    } else {
        if (queue != NULL)
            only = waitq_find(h, queue->via.str.ptr, queue->via.str.size);
        for (const mqhub_session_t *e = h->sessions;
             e != NULL && topic == NULL && (queue == NULL || only != NULL); e = e->next)
            console_polls(&k, e, only);
        if (queue == NULL)
            push_consumers(h->push, NULL, console_push, &k);
    }
    msgpack_sbuffer_init(&out);
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    wire_pack_head(&pk, true, v->id, true, 2);
    mp_pack_cstr(&pk, op == OPS_NODE_CONNECTION_LIST ? "connections" : "consumers");
    msgpack_pack_array(&pk, (uint32_t)(k.n < CONSOLE_LIST_MAX ? k.n : CONSOLE_LIST_MAX));
    msgpack_sbuffer_write(&out, k.sb.data, k.sb.size);
    pack_kv_u64(&pk, "total", k.n);
    if (reply_fits(h, cb, arg, v->id, out.size))
        cb(arg, out.data, out.size);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&k.sb);
}

/* @v's row of the op table (@o, NULL: unknown) decides who answers it.
 * @cb is timed_reply, @arg its timed_t. */
static void dispatch(mqhub_session_t *s, const ops_row_t *o, const wire_request_t *v,
                     const char *buf, size_t len, mqhub_reply_cb cb, void *arg)
{
    hub_t *h = s->hub;
    timed_t *t = arg;
    msgpack_sbuffer sb;

    if (h->stopping) {
        reply_status(h, cb, arg, v->id, MQHUB_EUNAVAILABLE);
        return;
    }
    if (h->declaring > 0 && o != NULL && o->kind != OPS_LOCAL) { /* see declare() */
        reply_error(h, cb, arg, true, v->id, MQHUB_EUNAVAILABLE,
                    "starting: applying the configuration's declarations; retry");
        return;
    }
    if (!(o && (o->flags & OPS_F_PUBLIC)) && !identified(s)) {
        reply_error(h, cb, arg, true, v->id, MQHUB_EUNAUTHORIZED,
                    "this server needs a token: send hello {version: %d, token} first",
                    MQHUB_PROTOCOL_VERSION);
        return;
    }
    if (o != NULL && !(o->flags & OPS_F_PUBLIC)) {
        if (s->by_name && !named_user_current(s, v, cb, arg))
            return;
        if (s->who == WHO_USER && !permitted(s, o, v, cb, arg))
            return; /* refused before anything reached raft */
        audit(s, o, v, "allowed");
    }
    switch (o ? o->kind : OPS_UNKNOWN) {
    case OPS_LOCAL:
        if (o->node == OPS_NODE_HELLO)
            hello(s, v, buf, len, cb, arg);
        else if (o->node == OPS_NODE_CONNECTION_LIST || o->node == OPS_NODE_CONSUMER_LIST)
            console_list(s, o->node, v, cb, arg);
        else
            reply_ok(cb, arg, v->id); /* ping; monitor.check (its check passed above) */
        return;
    case OPS_READ:
        read_op(s, o, v, buf, len, cb, arg);
        return;
    case OPS_WRITE:
        if (o->flags & OPS_F_TOKEN) {
            token_op(s, o, v, cb, arg);
            return;
        }
        pack_used_fields(s, o, v->map, &sb);
        if (o->flags & OPS_F_LONG_POLL)
            receive_start(s, v, sb.data, sb.size, cb, arg);
        else
            write_op(s, v->id, sb.data, sb.size, NULL, cb, arg);
        msgpack_sbuffer_destroy(&sb);
        return;
    case OPS_SESSION:
        session_op(s, o->node, v, cb, arg);
        return;
    case OPS_CLUSTER: /* not timed: may wait outside a hub_req_t */
        cluster_request(h->cluster, s, o->node, v, t->cb, t->arg);
        return;
    case OPS_INTERNAL: /* proposed by the node itself, never by a client */
    case OPS_UNKNOWN:
        break;
    }
    reply_error(h, cb, arg, true, v->id, MQHUB_EUNKNOWN_OP, "unknown op '%.*s'",
                (int)(v->op_len > 64 ? 64 : v->op_len), v->op);
}

int hub_request(mqhub_session_t *s, const char *buf, size_t len, mqhub_reply_cb cb, void *arg)
{
    timed_t t = {.cb = cb, .arg = arg, .lat = s->lat, .t0 = uv_hrtime(),
                 .bytes_out = &s->bytes_out};
    wire_request_t v;
    msgpack_unpacked u;
    char err[256];

    metrics_add(s->hub->metrics, "requests_total", 1);
    s->requests++;
    s->bytes_in += len;
    msgpack_unpacked_init(&u);
    if (wire_decode_request(&u, buf, len, &v, err, sizeof err) != 0) {
        if (!v.has_id)
            s->broken = true;
        reply_error(s->hub, timed_reply, &t, v.has_id, v.id, MQHUB_EBAD_REQUEST, "%s", err);
    } else {
        dispatch(s, ops_find(v.op, v.op_len), &v, buf, len, timed_reply, &t);
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}

/* -------------------------------------------------------------- sessions */

mqhub_session_t *hub_session_open(hub_t *h, const char *transport, const char *peer,
                                  mqhub_push_cb push, void *push_arg)
{
    mqhub_session_t *s = calloc(1, sizeof *s);

    if (s == NULL)
        return NULL;
    s->hub = h;
    s->push = push;
    s->push_arg = push_arg;
    snprintf(s->transport, sizeof s->transport, "%s", transport);
    s->lat = metrics_lat_slot(h->metrics, s->transport);
    snprintf(s->peer, sizeof s->peer, "%s", peer ? peer : "?");
    s->sid = ++h->last_sid;
    s->connected_at = clock_wall_ms();
    s->next = h->sessions;
    if (h->sessions != NULL)
        h->sessions->prev = s;
    h->sessions = s;
    metrics_add(h->metrics, "sessions_opened_total", 1);
    count_session(h, s->transport, 1);
    log_debug("hub", "session open %s %s", s->transport, s->peer);
    return s;
}

void hub_session_close(mqhub_session_t *s)
{
    hub_t *h = s->hub;

    while (s->reqs != NULL) {
        hub_req_t *r = s->reqs;
        if (r->in_replica)
            req_detach(r); /* freed when raft answers */
        else
            req_free(r);
    }
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        h->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    cluster_session_closed(h->cluster, s);
    push_session_close(h->push, s);
    if (s->ephemeral && !h->stopping && replica_is_leader(h->replica)) {
        char owner[64];
        session_owner(s, owner, sizeof owner);
        reap_propose(h, "owner", owner);
    }
    metrics_add(h->metrics, "sessions_closed_total", 1);
    count_session(h, s->transport, -1);
    log_debug("hub", "session close %s %s", s->transport, s->peer);
    free(s);
}

int hub_session_identify(mqhub_session_t *s, const char *user)
{
    size_t n = user != NULL ? strlen(user) : 0;

    if (n == 0 || n > MQHUB_NAME_MAX)
        return MQHUB_EBAD_REQUEST;
    memcpy(s->user, user, n + 1);
    memset(s->hash, 0, sizeof s->hash);
    s->who = WHO_USER;
    s->by_name = true;
    return 0;
}

bool hub_session_broken(mqhub_session_t *s)
{
    return s->broken;
}

void hub_session_writable(mqhub_session_t *s, int writable)
{
    bool was = s->blocked;

    s->blocked = !writable;
    if (was && writable)
        push_session_writable(s->hub->push, s);
}

bool hub_session_can_push(const mqhub_session_t *s)
{
    return !s->blocked;
}

void hub_session_sent(mqhub_session_t *s, size_t len)
{
    s->bytes_out += len;
}

metrics_t *hub_metrics(hub_t *h)
{
    return h->metrics;
}

uv_loop_t *hub_loop(hub_t *h)
{
    return h->loop;
}

size_t hub_max_frame(hub_t *h)
{
    return h->cfg->max_frame;
}

/* ------------------------------------------------------------- lifecycle */

/* The address clients reach us at, told to them as the leader's: the
 * config's, else our TCP transport's listen address. */
static void find_client_address(hub_t *h)
{
    const char *listen = MQHUB_DEFAULT_TCP_ADDRESS;

    if (h->cfg->client_address != NULL) {
        snprintf(h->client_address, sizeof h->client_address, "%s", h->cfg->client_address);
        return;
    }
    for (unsigned i = 0; i < h->cfg->n_transports; i++) {
        config_transport_t *t = &h->cfg->transports[i];
        if (strcmp(t->name, "tcp") == 0) {
            const char *l = config_transport_string(h->cfg, t, "listen");
            if (l != NULL)
                listen = l;
        }
    }
    snprintf(h->client_address, sizeof h->client_address, "%s", listen);
}

static int make_dir(const char *dir, char *errmsg, size_t errlen)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(errmsg, errlen, "data directory %s: %s", dir, strerror(errno));
        return MQHUB_EINTERNAL;
    }
    return 0;
}

/* Stop and unload the plugins loaded so far, running the loop until their
 * handles are closed (start failed: nothing else runs yet). */
static void unload_plugins(hub_t *h)
{
    for (unsigned i = 0; i < h->n_plugins; i++)
        plugin_stop(h->plugins[i]);
    uv_run(h->loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < h->n_plugins; i++)
        plugin_unload(h->plugins[i]);
    free(h->plugins);
    h->plugins = NULL;
    h->n_plugins = 0;
}

static int load_plugins(hub_t *h, char *errmsg, size_t errlen)
{
    h->plugins = calloc(h->cfg->n_transports + 1, sizeof *h->plugins);
    if (h->plugins == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return MQHUB_EINTERNAL;
    }
    for (unsigned i = 0; i < h->cfg->n_transports; i++) {
        int rc = plugin_load(&h->plugins[h->n_plugins], h, h->cfg, &h->cfg->transports[i],
                             errmsg, errlen);
        if (rc != 0) {
            unload_plugins(h);
            return rc;
        }
        h->n_plugins++;
    }
    return 0;
}

static int start_replica(hub_t *h, char *errmsg, size_t errlen)
{
    char dir[4096];
    replica_config_t rc = {
        .id = h->cfg->node_id,
        .dir = dir,
        .raft_address = h->cfg->raft_address,
        .client_address = h->client_address,
        .http_address = h->cfg->http_address,
        .peers = h->cfg->peers,
        .n_peers = h->cfg->n_peers,
        .snapshot_threshold = h->cfg->snapshot_threshold,
        .snapshot_trailing = h->cfg->snapshot_trailing,
        .snapshot_log_bytes = h->cfg->snapshot_log_bytes,
        .snapshot_growth = h->cfg->snapshot_growth,
        .join = h->cfg->join,
        .cluster_secret = h->cfg->cluster_secret,
        .allow_unauthenticated_peers = h->cfg->allow_unauthenticated_peers,
        .peer_tls = {h->cfg->peer_tls_cert, h->cfg->peer_tls_key, h->cfg->peer_tls_ca},
    };

    snprintf(dir, sizeof dir, "%s/raft", h->cfg->data_dir);
    return replica_start(&h->replica, h->loop, h->fsm, &rc, errmsg, errlen);
}

/* The parts that need no loop handle, so a failure frees them plainly. */
static int hub_alloc(hub_t **out, uv_loop_t *loop, config_t *cfg, char *errmsg, size_t errlen)
{
    hub_t *h = calloc(1, sizeof *h);
    int rc;

    if (h == NULL || metrics_new(&h->metrics, cfg->data_dir) != 0) {
        free(h);
        snprintf(errmsg, errlen, "out of memory");
        return MQHUB_EINTERNAL;
    }
    h->loop = loop;
    h->cfg = cfg;
    find_client_address(h);
    rc = make_dir(cfg->data_dir, errmsg, errlen);
    if (rc == 0)
        rc = fsm_open(&h->fsm, cfg->data_dir, errmsg, errlen);
    if (rc == 0 && (push_new(&h->push, h->fsm, h->metrics) != 0 ||
                    cluster_new(&h->cluster, h->fsm) != 0)) {
        snprintf(errmsg, errlen, "out of memory");
        rc = MQHUB_EINTERNAL;
    }
    if (rc != 0) {
        hub_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int hub_start(hub_t **out, uv_loop_t *loop, config_t *cfg, char *errmsg, size_t errlen)
{
    hub_t *h;
    unsigned char boot[8];
    int rc = hub_alloc(&h, loop, cfg, errmsg, errlen);

    if (rc != 0)
        return rc;
    if (RAND_bytes(boot, sizeof boot) != 1) {
        hub_free(h);
        snprintf(errmsg, errlen, "no random source for the node's boot id");
        return MQHUB_EINTERNAL;
    }
    for (unsigned i = 0; i < sizeof boot; i++)
        snprintf(h->boot + 2 * i, 3, "%02x", boot[i]);
    fsm_set_ready_cb(h->fsm, on_fsm_ready, h);
    fsm_set_read_clock(h->fsm, clock_wall_ms);
    rc = load_plugins(h, errmsg, errlen);
    if (rc == 0 && (rc = start_replica(h, errmsg, errlen)) != 0)
        unload_plugins(h);
    if (rc != 0) {
        hub_free(h);
        return rc;
    }
    uv_timer_init(loop, &h->wake);
    h->wake.data = h;
    uv_timer_init(loop, &h->check);
    h->check.data = h;
    replica_set_state_cb(h->replica, on_leadership, h);
    cluster_set_replica(h->cluster, h->replica);
    push_start(h->push, loop, h->replica);
    uv_timer_start(&h->check, on_check, HUB_CHECK_MS, HUB_CHECK_MS);
    *out = h;
    return 0;
}

static void stop_step_done(hub_t *h)
{
    if (--h->stop_pending == 0 && h->stop_cb != NULL)
        h->stop_cb(h->stop_arg);
}

static void on_hub_timer_closed(uv_handle_t *handle)
{
    stop_step_done(handle->data);
}

static void on_replica_stopped(void *arg)
{
    stop_step_done(arg);
}

void hub_stop(hub_t *h, void (*cb)(void *arg), void *arg)
{
    if (h->stopping)
        return;
    h->stopping = true;
    h->stop_cb = cb;
    h->stop_arg = arg;
    h->stop_pending = 4;
    for (unsigned i = 0; i < h->n_plugins; i++)
        plugin_stop(h->plugins[i]);
    fail_parked(h, MQHUB_EUNAVAILABLE);
    uv_close((uv_handle_t *)&h->wake, on_hub_timer_closed);
    uv_close((uv_handle_t *)&h->check, on_hub_timer_closed);
    push_stop(h->push, on_replica_stopped, h);
    replica_stop(h->replica, on_replica_stopped, h);
}

void hub_free(hub_t *h)
{
    while (h->sessions != NULL)
        hub_session_close(h->sessions);
    for (unsigned i = 0; i < h->n_plugins; i++)
        plugin_unload(h->plugins[i]);
    free(h->plugins);
    for (unsigned i = 0; i < HUB_WAITQ_BUCKETS; i++) {
        while (h->buckets[i] != NULL) {
            waitq_t *q = h->buckets[i];
            h->buckets[i] = q->next;
            free(q);
        }
    }
    cluster_free(h->cluster);
    push_free(h->push);
    fsm_close(h->fsm);
    metrics_free(h->metrics);
    free(h);
}
