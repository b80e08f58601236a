/* history.c: the rings behind the dashboard's charts (docs/protocol.md
 * "stats.history").
 *
 * Every snapshot the collector finishes (stats.c, once per
 * stats_interval_ms whether or not a page is open) becomes one point of the
 * hub's figures: the counters sent, received, deleted (queues), published
 * (topics), delivered and redelivered (push deliveries of this node: the
 * daemon's push_*_total), acked and dead-lettered (subscriptions, plus the
 * queues' own counts where queue.get has them), and the gauges backlog
 * (ready), inflight, delayed and pending (subscriptions' lag). The hub keeps
 * HIST_SECONDS per-second points (a snapshot less than HIST_MIN_GAP_MS after
 * the point before the newest replaces the newest) and HIST_MINUTES per-minute points (the
 * last sample of each minute); each of the first HIST_QUEUES queues of the
 * snapshot keeps QUEUE_SECONDS and HIST_MINUTES points of its own figures. A
 * queue that leaves the snapshot loses its rings. Counters are stored as
 * they are (the page turns two points into a rate), so a point is exact
 * whatever the interval between samples.
 *
 * Start with history_sample() (one snapshot in) and history_json() (the
 * rings out, oldest first). To add a figure: a name in hub_fields or
 * queue_fields and its line in hub_point() or queue_point().
 */
#include <stdlib.h>
#include <string.h>

#include "ws.h"

#define HIST_SECONDS 600 /* 10 minutes of per-second points */
#define HIST_MINUTES 60  /* an hour of per-minute points */
#define QUEUE_SECONDS 300
#define HIST_QUEUES 100  /* queues with rings; the rest have none */
/* Snapshots closer than this to the newest point replace it: /metrics
 * scrapes gather snapshots too, and a scraper asking ten times a second must
 * not shrink 10 minutes of points to one. */
#define HIST_MIN_GAP_MS 900

static const char *const hub_fields[] = {
    "sent",      "received",      "deleted", "published", "delivered", "acked",
    "redelivered", "dead_lettered", "backlog", "inflight",  "delayed",   "pending"};
enum { HUB_N = sizeof hub_fields / sizeof hub_fields[0] };

static const char *const queue_fields[] = {"ready",   "inflight",    "delayed",
                                           "sent",    "received",    "deleted",
                                           "redelivered", "dead_lettered"};
enum { QUEUE_N = sizeof queue_fields / sizeof queue_fields[0] };

/* A ring of points of 1 + nf numbers (the time first), oldest at head. */
typedef struct ring {
    int64_t *v;
    unsigned cap, n, head, nf;
} ring_t;

typedef struct qhist {
    char *name;
    ring_t seconds, minutes;
    bool seen; /* in the latest snapshot */
} qhist_t;

struct history {
    ring_t seconds, minutes;
    qhist_t queues[HIST_QUEUES];
};

/* ------------------------------------------------------------- rings */

static int ring_init(ring_t *r, unsigned cap, unsigned nf)
{
    r->v = calloc((size_t)cap * (1 + nf), sizeof *r->v);
    r->cap = cap;
    r->nf = nf;
    r->n = r->head = 0;
    return r->v == NULL ? -1 : 0;
}

static int64_t *ring_at(const ring_t *r, unsigned i)
{
    return r->v + (size_t)((r->head + i) % r->cap) * (1 + r->nf);
}

static void ring_push(ring_t *r, const int64_t *point)
{
    if (r->n == r->cap)
        r->head = (r->head + 1) % r->cap;
    else
        r->n++;
    memcpy(ring_at(r, r->n - 1), point, (1 + r->nf) * sizeof *point);
}

/* A per-second ring: @point replaces the newest one while it is less than
 * HIST_MIN_GAP_MS after the point before the newest (so points stay about
 * that far apart however often snapshots come). A point before that one
 * (the wall clock stepped back) starts afresh instead of replacing the
 * newest until the clock has caught up: the chart would stall that long. */
static void ring_second(ring_t *r, const int64_t *point)
{
    int64_t gap = r->n > 1 ? point[0] - ring_at(r, r->n - 2)[0] : HIST_MIN_GAP_MS;
    if (gap >= 0 && gap < HIST_MIN_GAP_MS)
        memcpy(ring_at(r, r->n - 1), point, (1 + r->nf) * sizeof *point);
    else
        ring_push(r, point);
}

/* A per-minute ring: @point replaces the newest one while in its minute. */
static void ring_minute(ring_t *r, const int64_t *point)
{
    if (r->n > 0 && ring_at(r, r->n - 1)[0] / 60000 == point[0] / 60000)
        memcpy(ring_at(r, r->n - 1), point, (1 + r->nf) * sizeof *point);
    else
        ring_push(r, point);
}

static json_t *ring_json(const ring_t *r)
{
    json_t *list = json_array();

    for (unsigned i = 0; list != NULL && i < r->n; i++) {
        const int64_t *p = ring_at(r, i);
        json_t *row = json_array();
        for (unsigned k = 0; row != NULL && k <= r->nf; k++)
            json_array_append_new(row, json_integer((json_int_t)p[k]));
        json_array_append_new(list, row);
    }
    return list;
}

/* ------------------------------------------------------------- points */

/* @obj's number @key, 0 when absent. */
static int64_t num(const json_t *obj, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(obj, key));
}

static void queue_point(const json_t *stats, int64_t *p)
{
    static const char *const keys[QUEUE_N] = {
        "ready", "inflight", "delayed", "sent_total", "received_total", "deleted_total",
        "redelivered_total", "dead_lettered_total"};

    for (unsigned k = 0; k < QUEUE_N; k++)
        p[1 + k] = num(stats, keys[k]);
}

/* The hub's point: sums over the snapshot's queues and subscriptions, and
 * this node's push counters. */
static void hub_point(const json_t *snap, int64_t delivered, int64_t redelivered, int64_t *p)
{
    enum { SENT = 1, RECEIVED, DELETED, PUBLISHED, DELIVERED, ACKED, REDELIVERED, DEAD,
           BACKLOG, INFLIGHT, DELAYED, PENDING };
    size_t i, j;
    json_t *q, *t, *sub;

    p[DELIVERED] = delivered;
    p[REDELIVERED] = redelivered;
    json_array_foreach(json_object_get(snap, "queues"), i, q) {
        const json_t *st = json_object_get(q, "stats");
        p[SENT] += num(st, "sent_total");
        p[RECEIVED] += num(st, "received_total");
        p[DELETED] += num(st, "deleted_total");
        p[REDELIVERED] += num(st, "redelivered_total");
        p[DEAD] += num(st, "dead_lettered_total");
        p[BACKLOG] += num(st, "ready");
        p[INFLIGHT] += num(st, "inflight");
        p[DELAYED] += num(st, "delayed");
    }
    json_array_foreach(json_object_get(snap, "topics"), i, t) {
        p[PUBLISHED] += num(json_object_get(t, "stats"), "published_total");
        json_array_foreach(json_object_get(t, "subscriptions"), j, sub) {
            const json_t *st = json_object_get(sub, "stats");
            p[ACKED] += num(st, "acked_total");
            p[DEAD] += num(st, "dead_lettered_total");
            p[PENDING] += num(st, "pending");
        }
    }
}

/* ------------------------------------------------------------- queues */

static void qhist_clear(qhist_t *q)
{
    free(q->name);
    free(q->seconds.v);
    free(q->minutes.v);
    memset(q, 0, sizeof *q);
}

static int qhist_find(const history_t *h, const char *name)
{
    for (int i = 0; i < HIST_QUEUES; i++)
        if (h->queues[i].name != NULL && strcmp(h->queues[i].name, name) == 0)
            return i;
    return -1;
}

/* @name's rings, made in a free slot if it has none (NULL: no slot left,
 * or out of memory). */
static qhist_t *qhist_get(history_t *h, const char *name)
{
    int at = qhist_find(h, name);
    qhist_t *q = at >= 0 ? &h->queues[at] : NULL;

    for (unsigned i = 0; q == NULL && i < HIST_QUEUES; i++) {
        if (h->queues[i].name != NULL)
            continue;
        q = &h->queues[i];
        q->name = strdup(name);
        if (q->name == NULL || ring_init(&q->seconds, QUEUE_SECONDS, QUEUE_N) != 0 ||
            ring_init(&q->minutes, HIST_MINUTES, QUEUE_N) != 0) {
            qhist_clear(q);
            return NULL;
        }
    }
    return q;
}

static void sample_queues(history_t *h, const json_t *snap, int64_t ts)
{
    size_t i;
    json_t *q;

    for (unsigned k = 0; k < HIST_QUEUES; k++)
        h->queues[k].seen = false;
    json_array_foreach(json_object_get(snap, "queues"), i, q) {
        const char *name = json_string_value(json_object_get(q, "name"));
        const json_t *st = json_object_get(q, "stats");
        qhist_t *qh = name != NULL && st != NULL ? qhist_get(h, name) : NULL;
        int64_t p[1 + QUEUE_N] = {ts};
        if (qh == NULL)
            continue;
        qh->seen = true;
        queue_point(st, p);
        ring_second(&qh->seconds, p);
        ring_minute(&qh->minutes, p);
    }
    for (unsigned k = 0; k < HIST_QUEUES; k++)
        if (h->queues[k].name != NULL && !h->queues[k].seen)
            qhist_clear(&h->queues[k]);
}

/* ------------------------------------------------------------- public */

int history_new(history_t **out)
{
    history_t *h = calloc(1, sizeof *h);

    if (h == NULL || ring_init(&h->seconds, HIST_SECONDS, HUB_N) != 0 ||
        ring_init(&h->minutes, HIST_MINUTES, HUB_N) != 0) {
        history_free(h);
        return -1;
    }
    *out = h;
    return 0;
}

void history_free(history_t *h)
{
    if (h == NULL)
        return;
    for (unsigned i = 0; i < HIST_QUEUES; i++)
        qhist_clear(&h->queues[i]);
    free(h->seconds.v);
    free(h->minutes.v);
    free(h);
}

void history_sample(history_t *h, const json_t *snap, int64_t ts_ms, int64_t delivered,
                    int64_t redelivered)
{
    int64_t p[1 + HUB_N] = {ts_ms};

    /* A follower's snapshot has no queues (reads are the leader's): its
     * rings stay empty rather than drawing a hub with nothing in it. */
    if (json_object_get(json_object_get(snap, "errors"), "queue.list") != NULL)
        return;
    hub_point(snap, delivered, redelivered, p);
    ring_second(&h->seconds, p);
    ring_minute(&h->minutes, p);
    sample_queues(h, snap, ts_ms);
}

json_t *history_json(const history_t *h, const char *queue)
{
    const char *const *names = queue != NULL ? queue_fields : hub_fields;
    unsigned n = queue != NULL ? QUEUE_N : HUB_N;
    int at = queue != NULL ? qhist_find(h, queue) : -1;
    const qhist_t *q = at >= 0 ? &h->queues[at] : NULL;
    json_t *out = json_object(), *fields = json_array();

    if (out == NULL || fields == NULL) {
        json_decref(out);
        json_decref(fields);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(fields, json_string(names[i]));
    json_object_set_new(out, "fields", fields);
    if (queue == NULL || q != NULL) {
        json_object_set_new(out, "seconds", ring_json(queue != NULL ? &q->seconds : &h->seconds));
        json_object_set_new(out, "minutes", ring_json(queue != NULL ? &q->minutes : &h->minutes));
    } else {
        json_object_set_new(out, "seconds", json_array());
        json_object_set_new(out, "minutes", json_array());
    }
    return out;
}
