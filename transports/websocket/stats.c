/* stats.c: the collector behind stats pushes, /metrics and /readyz.
 *
 * A snapshot is gathered with ordinary requests on the collector's own host
 * session, exactly as a client would: cluster.status, one queue.list
 * {stats: true} (a row of figures per queue, made {name, stats} here),
 * topic.list then topic.get per topic and subscription.get per subscription
 * (topic.get names them only), block.list, script.list.
 * An op the hub does not know (yet) or refuses is recorded under
 * "errors": {op: "CODE: sentence"} and the rest of the snapshot is still
 * served. The snapshot is a JSON object, the body of a {"push": "stats"}
 * message (docs/protocol.md "Extensions").
 *
 * Start with collect(): it sends the first requests; on_reply() handles
 * each answer (sending the per-name gets) and finish() publishes the
 * snapshot to stats subscribers (ws_broadcast_stats), to waiters
 * (stats_want: /metrics, /readyz) and to the history rings (history.c,
 * served by stats_history). A timer gathers one snapshot per interval,
 * subscribers or not, so the rings are full when a page opens.
 * stats_node_info() answers node.info from the process's figures and the
 * latest snapshot's cluster.status.
 *
 * To add a section: send its request in collect() with a new kind, store
 * its answer in on_reply().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <msgpack.h>

#include "codec.h"
#include "mqhub/version.h"
#include "ws.h"

enum kind {
    K_HELLO, K_CLUSTER, K_QUEUES, K_TOPICS, K_BLOCKS, K_SCRIPTS, K_TOPIC, K_SUB
};

static const char *const kind_op[] = {"hello",      "cluster.status", "queue.list",
                                      "topic.list", "block.list",     "script.list",
                                      "topic.get",  "subscription.get"};

typedef struct sreq {
    struct stats *s;
    enum kind kind;
    json_t *target; /* K_TOPIC / K_SUB: the entry to fill (borrowed) */
    struct sreq *prev, *next;
} sreq_t;

typedef struct waiter {
    stats_cb cb;
    void *arg;
    struct waiter *next;
} waiter_t;

struct stats {
    ws_t *w;
    mqhub_session_t *session;
    uv_timer_t timer;
    json_t *snap;     /* the latest snapshot, or NULL */
    uint64_t snap_at; /* loop ms when it was finished */
    json_t *building; /* the snapshot being gathered, or NULL */
    history_t *history;
    unsigned pending; /* requests of `building` without an answer (+1 while sending) */
    sreq_t *reqs;     /* those requests, freed at stop when unanswered */
    waiter_t *waiters;
    uint64_t next_id;
    bool said_hello;
    bool active;
};

static void collect(stats_t *s);

/* ------------------------------------------------------------- finishing */

/* Wall clock, ms since the epoch: the history's time axis. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A subscription with a queue endpoint has no pending or acked figures of
 * its own (its messages are in that queue at once, consumers delete them
 * there): its entry gets endpoint_queue {name, ready, inflight, delayed,
 * deleted_total}, that queue's figures from the same snapshot. */
static void endpoint_queues(json_t *snap)
{
    json_t *by_name, *q, *t, *sub;
    size_t i, j;

    if (json_array_size(json_object_get(snap, "topics")) == 0)
        return; /* no subscription: no name index to build */
    by_name = json_object();
    json_array_foreach(json_object_get(snap, "queues"), i, q) {
        const char *name = json_string_value(json_object_get(q, "name"));
        if (name != NULL)
            json_object_set(by_name, name, json_object_get(q, "stats"));
    }
    json_array_foreach(json_object_get(snap, "topics"), i, t) {
        json_array_foreach(json_object_get(t, "subscriptions"), j, sub) {
            const char *name = json_string_value(
                json_object_get(json_object_get(sub, "endpoint"), "queue"));
            const json_t *st = name != NULL ? json_object_get(by_name, name) : NULL;
            if (st != NULL)
                json_object_set_new(
                    sub, "endpoint_queue",
                    json_pack("{s:s, s:O?, s:O?, s:O?, s:O?}", "name", name, "ready",
                              json_object_get(st, "ready"), "inflight",
                              json_object_get(st, "inflight"), "delayed",
                              json_object_get(st, "delayed"), "deleted_total",
                              json_object_get(st, "deleted_total")));
        }
    }
    json_decref(by_name);
}

static void finish(stats_t *s)
{
    ws_t *w = s->w;
    waiter_t *list = s->waiters;
    json_t *t = json_object();

    json_object_set_new(t, "name", json_string("websocket"));
    json_object_set_new(t, "connections", json_integer(w->n_conns));
    json_object_set_new(t, "messages_in", json_integer((json_int_t)w->messages_in));
    json_object_set_new(t, "messages_out", json_integer((json_int_t)w->messages_out));
    json_object_set_new(s->building, "transport", t);
    endpoint_queues(s->building);
    json_object_set_new(s->building, "ts", json_integer((json_int_t)(uv_now(w->loop))));
    json_decref(s->snap);
    s->snap = s->building;
    s->snap_at = ws_now(w);
    s->building = NULL;
    ws_csp_members(w, json_object_get(s->snap, "cluster"));
    history_sample(s->history, s->snap, wall_ms(),
                   w->api->metric_get(w->host, "push_delivered_total"),
                   w->api->metric_get(w->host, "push_redelivered_total"));
    if (s->active)
        ws_broadcast_stats(w, s->snap, s->snap_at);
    s->waiters = NULL;
    while (list != NULL) {
        waiter_t *next = list->next;
        list->cb(list->arg, s->snap);
        free(list);
        list = next;
    }
}

static void done_one(stats_t *s)
{
    if (--s->pending == 0 && s->building != NULL)
        finish(s);
}

/* ------------------------------------------------------------- requests */

static void on_reply(void *arg, const char *msgpack, size_t len);

static void pack_cstr(msgpack_packer *pk, const char *str)
{
    msgpack_pack_str_with_body(pk, str, strlen(str));
}

/* Send @kind's request; @name is the queue/topic for the per-name gets,
 * @sub the subscription of topic @name for K_SUB (else NULL). */
static void submit(stats_t *s, enum kind kind, const char *name, const char *sub,
                   json_t *target)
{
    const char *token = s->w->token;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    sreq_t *r = calloc(1, sizeof *r);

    if (r == NULL)
        return;
    r->s = s;
    r->kind = kind;
    r->target = target;
    r->next = s->reqs;
    if (s->reqs != NULL)
        s->reqs->prev = r;
    s->reqs = r;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2 + (name != NULL) + (sub != NULL) +
                              (kind == K_HELLO ? 2 + (token != NULL) : 0) +
                              (kind == K_QUEUES || kind == K_TOPICS) + (kind == K_QUEUES));
    pack_cstr(&pk, "op");
    pack_cstr(&pk, kind_op[kind]);
    pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, ++s->next_id);
    if (sub != NULL) {
        pack_cstr(&pk, "topic");
        pack_cstr(&pk, name);
        pack_cstr(&pk, "name");
        pack_cstr(&pk, sub);
    } else if (name != NULL) {
        pack_cstr(&pk, "name");
        pack_cstr(&pk, name);
    }
    if (kind == K_HELLO) {
        pack_cstr(&pk, "version");
        msgpack_pack_uint8(&pk, 1);
        pack_cstr(&pk, "client");
        pack_cstr(&pk, "websocket-stats");
        if (token != NULL) {
            pack_cstr(&pk, "token");
            pack_cstr(&pk, token);
        }
    }
    if (kind == K_QUEUES || kind == K_TOPICS) {
        pack_cstr(&pk, "limit");
        msgpack_pack_uint32(&pk, MQHUB_LIST_LIMIT_MAX); /* as many as one page holds */
    }
    if (kind == K_QUEUES) {
        pack_cstr(&pk, "stats");
        msgpack_pack_true(&pk);
    }
    s->pending++;
    s->w->api->request(s->session, sb.data, sb.size, on_reply, r);
    msgpack_sbuffer_destroy(&sb);
}

/* @r failed: "errors": {op: "CODE: sentence"}, and on the queue's or
 * topic's entry too. */
static void record_error(stats_t *s, const sreq_t *r, const json_t *reply)
{
    json_t *errors = json_object_get(s->building, "errors");
    const char *op = kind_op[r->kind];
    char text[512];

    if (errors == NULL) {
        errors = json_object();
        json_object_set_new(s->building, "errors", errors);
    }
    snprintf(text, sizeof text, "%s: %s",
             json_string_value(json_object_get(reply, "code")) ?: "INTERNAL",
             json_string_value(json_object_get(reply, "error")) ?: "no answer");
    json_object_set_new(errors, op, json_string(text));
    if (r->target != NULL)
        json_object_set_new(r->target, "error", json_string(text));
}

/* topic.list answered: one entry and one topic.get per name. */
static void fan_out(stats_t *s, const char *section, const json_t *names)
{
    json_t *list = json_array();
    size_t i;
    json_t *n;

    json_object_set_new(s->building, section, list);
    json_array_foreach(names, i, n) {
        json_t *entry;
        if (!json_is_string(n))
            continue;
        entry = json_object();
        json_object_set(entry, "name", n);
        json_array_append_new(list, entry);
        submit(s, K_TOPIC, json_string_value(n), NULL, entry);
    }
}

/* queue.list {stats: true} answered: each row {name, figures...} becomes
 * {name, stats: {figures...}}, the shape of a queue.get answer's parts
 * (docs/protocol.md "Stats pushes"). The rows are taken over, not copied:
 * the reply is dropped after this. */
static void queue_rows(stats_t *s, json_t *rows)
{
    json_t *list = json_array();
    size_t i;
    json_t *row;

    json_object_set_new(s->building, "queues", list);
    json_array_foreach(rows, i, row) {
        json_t *name = json_incref(json_object_get(row, "name"));
        if (json_is_string(name) && json_object_del(row, "name") == 0)
            json_array_append_new(list, json_pack("{s:o, s:O}", "name", name, "stats", row));
        else
            json_decref(name);
    }
}

/* topic.get answered into @topic: its subscription names become entries
 * {name} filled by one subscription.get each. */
static void fan_out_subs(stats_t *s, json_t *topic)
{
    const char *tname = json_string_value(json_object_get(topic, "name"));
    json_t *subs = json_object_get(topic, "subscriptions");
    size_t i;
    json_t *n;

    if (tname == NULL)
        return;
    json_array_foreach(subs, i, n) {
        json_t *entry;
        if (!json_is_string(n))
            continue;
        entry = json_pack("{s:O}", "name", n);
        if (entry == NULL)
            continue;
        submit(s, K_SUB, tname, json_string_value(n), entry);
        json_array_set_new(subs, i, entry); /* drops the name string */
    }
}

static void store(stats_t *s, sreq_t *r, json_t *reply)
{
    json_object_del(reply, "id");
    json_object_del(reply, "ok");
    switch (r->kind) {
    case K_CLUSTER:
        json_object_set(s->building, "cluster", reply);
        break;
    case K_QUEUES:
        queue_rows(s, json_object_get(reply, "queues"));
        break;
    case K_TOPICS:
        fan_out(s, "topics", json_object_get(reply, "topics"));
        break;
    case K_BLOCKS:
        json_object_set(s->building, "blocks", json_object_get(reply, "blocks"));
        break;
    case K_SCRIPTS:
        json_object_set(s->building, "scripts", json_object_get(reply, "scripts"));
        break;
    case K_SUB:
        json_object_update(r->target, reply);
        break;
    case K_TOPIC:
        json_object_update(r->target, reply);
        fan_out_subs(s, r->target);
        break;
    case K_HELLO:
        break;
    }
}

static void on_reply(void *arg, const char *msgpack, size_t len)
{
    sreq_t *r = arg;
    stats_t *s = r->s;
    json_t *reply = codec_msgpack_value(msgpack, len);

    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        s->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    if (s->building != NULL && reply != NULL) {
        if (json_is_true(json_object_get(reply, "ok")))
            store(s, r, reply);
        else
            record_error(s, r, reply);
    }
    json_decref(reply);
    free(r);
    done_one(s);
}

/* Start gathering a snapshot unless one is being gathered. */
static void collect(stats_t *s)
{
    if (s->building != NULL || s->session == NULL)
        return;
    s->building = json_pack("{s:s, s:[], s:[], s:[], s:[]}", "push", "stats", "queues",
                            "topics", "blocks", "scripts");
    if (s->building == NULL)
        return;
    s->pending = 1;
    if (!s->said_hello) {
        s->said_hello = true;
        submit(s, K_HELLO, NULL, NULL, NULL);
    }
    submit(s, K_CLUSTER, NULL, NULL, NULL);
    submit(s, K_QUEUES, NULL, NULL, NULL);
    submit(s, K_TOPICS, NULL, NULL, NULL);
    submit(s, K_BLOCKS, NULL, NULL, NULL);
    submit(s, K_SCRIPTS, NULL, NULL, NULL);
    done_one(s);
}

/* ------------------------------------------------------------- public */

static void on_tick(uv_timer_t *t)
{
    collect(t->data);
}

int stats_new(stats_t **out, ws_t *w)
{
    stats_t *s = calloc(1, sizeof *s);
    int64_t interval = w->stats_interval_ms;

    if (s == NULL)
        return -1;
    s->w = w;
    if (history_new(&s->history) != 0) {
        free(s);
        return -1;
    }
    s->session = w->api->session_open(w->host, "websocket-stats", NULL, NULL);
    if (s->session == NULL) {
        history_free(s->history);
        free(s);
        return -1;
    }
    uv_timer_init(w->loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_tick, (uint64_t)interval, (uint64_t)interval);
    uv_unref((uv_handle_t *)&s->timer);
    *out = s;
    return 0;
}

static void on_timer_closed(uv_handle_t *handle)
{
    stats_t *s = handle->data;

    while (s->reqs != NULL) {
        sreq_t *next = s->reqs->next;
        free(s->reqs);
        s->reqs = next;
    }
    while (s->waiters != NULL) {
        waiter_t *next = s->waiters->next;
        free(s->waiters);
        s->waiters = next;
    }
    json_decref(s->snap);
    json_decref(s->building);
    history_free(s->history);
    free(s);
}

void stats_stop(stats_t *s)
{
    s->w->api->session_close(s->session);
    s->session = NULL;
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

void stats_set_active(stats_t *s, bool on)
{
    if (on && !s->active)
        collect(s);
    s->active = on;
}

void *stats_want(stats_t *s, uint64_t max_age_ms, stats_cb cb, void *arg)
{
    waiter_t *wt;

    if (s->snap != NULL && ws_now(s->w) - s->snap_at <= max_age_ms) {
        cb(arg, s->snap);
        return NULL;
    }
    wt = calloc(1, sizeof *wt);
    if (wt == NULL) {
        cb(arg, NULL);
        return NULL;
    }
    wt->cb = cb;
    wt->arg = arg;
    wt->next = s->waiters;
    s->waiters = wt;
    collect(s);
    return wt;
}

void stats_cancel(stats_t *s, void *ticket)
{
    for (waiter_t **p = &s->waiters; *p != NULL; p = &(*p)->next) {
        if (*p == ticket) {
            waiter_t *wt = *p;
            *p = wt->next;
            free(wt);
            return;
        }
    }
}

json_t *stats_history(stats_t *s, const char *queue)
{
    return history_json(s->history, queue);
}

/* @origin is @scheme ("http://", "https://") followed by @addr. */
static bool origin_is(const char *origin, const char *scheme, const char *addr)
{
    size_t n = strlen(scheme);
    return addr != NULL && strncmp(origin, scheme, n) == 0 && strcasecmp(origin + n, addr) == 0;
}

bool stats_member_origin(stats_t *s, const char *origin, bool tls)
{
    const char *scheme = tls ? "https://" : "http://";
    const json_t *cluster = json_object_get(s->snap, "cluster");
    size_t i;
    json_t *n;

    json_array_foreach(json_object_get(cluster, "nodes"), i, n) {
        if (origin_is(origin, scheme, json_string_value(json_object_get(n, "http"))))
            return true;
    }
    return false;
}

json_t *stats_node_info(stats_t *s)
{
    static const char *const process[] = {"rss_bytes", "open_fds", "max_fds", "cpu_us",
                                          "data_bytes", "disk_free_bytes", "disk_total_bytes"};
    static const char *const raft[] = {"node", "role", "leader_id", "term", "commit_index",
                                       "last_applied", "last_index", "snapshot_index"};
    ws_t *w = s->w;
    const json_t *cluster = json_object_get(s->snap, "cluster");
    int64_t start = w->api->metric_get(w->host, "process.start_ms");
    json_t *info = json_pack("{s:s, s:I, s:I}", "version", MQHUB_VERSION_STRING, "start_ms",
                             (json_int_t)start, "uptime_ms", (json_int_t)(wall_ms() - start));
    char name[64];

    for (size_t i = 0; info != NULL && i < sizeof process / sizeof process[0]; i++) {
        snprintf(name, sizeof name, "process.%s", process[i]);
        json_object_set_new(info, process[i],
                            json_integer((json_int_t)w->api->metric_get(w->host, name)));
    }
    /* The latest snapshot's cluster.status (at most stats_interval_ms old):
     * this node's raft view. Absent before the first snapshot. */
    for (size_t i = 0; info != NULL && i < sizeof raft / sizeof raft[0]; i++) {
        json_t *v = json_object_get(cluster, raft[i]);
        if (v != NULL)
            json_object_set(info, raft[i], v);
    }
    return info;
}
