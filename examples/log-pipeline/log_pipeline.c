/* log_pipeline.c: the log pipeline of examples/log-pipeline, run and checked.
 *
 *   log_pipeline --server H:P [--messages N] [--collectors C] [--min-backlog B]
 *                [--lag-rate R] [--timeout S]
 *
 * Creates the queue `lp-archive` (the nightly indexer's input) and the topic
 * `lp-logs` with the push subscription `lp-live` (the alerting stream), then:
 *   - hostile_collector: a batch with a 70 KiB line (TOO_LARGE, the others
 *     kept) sent twice with dedup ids (the replay stores nothing);
 *   - C collector threads send their N/C log lines in batches of 256, each
 *     batch with send_batch to lp-archive and publish_batch to lp-logs;
 *   - the stream consumer (stream_run) follows lp-live with a credit window,
 *     acks what it counted, and counts ERROR lines for alerting;
 *   - the batch consumer (batch_run) long-polls lp-archive 256 at a time but
 *     holds itself to R messages/s while the collectors run (falling behind on
 *     purpose), then drains the backlog at full speed;
 *   - a stalled consumer (stall_run) subscribes to lp-live, never reads, acks
 *     a forged seq and disconnects: its messages must reach the live consumer;
 *   - main prints a progress line every second (rates, the archive backlog, the
 *     live subscription's pending count) and at the end checks: lines in =
 *     lines out for each consumer (by seq, duplicates counted apart), ERROR
 *     lines in = ERROR lines alerted, the peak backlog >= B, the queue's own
 *     totals; it prints the drain rate and exits 0 only when every check holds.
 * Start at main(); the shared counters are pipe_t.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqhub/client.h"

#define QUEUE "lp-archive"
#define TOPIC "lp-logs"
#define SUB "lp-live"
#define BATCH 256
#define CREDIT 2048
#define STALL_CREDIT 256
#define HOSTILE_KEPT 2 /* lines of hostile_collector that are stored */

/* A set of seqs (1..cap) seen once, and how many came again. */
typedef struct seqset {
    unsigned char *bits;
    uint64_t cap, unique, dups;
} seqset_t;

/* What every thread shares; counters are read and written with __atomic. */
typedef struct pipe {
    const char *server;
    uint64_t messages, lag_rate, timeout_ms;
    unsigned collectors;
    uint64_t queued, published, errors_in; /* accepted by the hub */
    uint64_t batch_out, live_out, errors_out, live_dups, batch_dups;
    uint64_t stall_forged_code, collectors_exited;
    int collectors_done, stop, failed;
    uint64_t start_ms, done_ms, out_at_done, drained_ms; /* set once each */
} pipe_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t get(const uint64_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }
static void add(uint64_t *v, uint64_t n) { __atomic_add_fetch(v, n, __ATOMIC_RELAXED); }
static int flag(const int *v) { return __atomic_load_n(v, __ATOMIC_ACQUIRE); }
static void raise_flag(int *v) { __atomic_store_n(v, 1, __ATOMIC_RELEASE); }

static int seqset_init(seqset_t *s, uint64_t cap)
{
    s->cap = cap;
    s->unique = s->dups = 0;
    s->bits = calloc(cap / 8 + 1, 1);
    return s->bits ? 0 : -1;
}

/* 1 when @seq is new to the set; seqs out of range count as duplicates. */
static int seqset_add(seqset_t *s, uint64_t seq)
{
    if (seq == 0 || seq > s->cap || (s->bits[seq / 8] & (1u << (seq % 8)))) {
        s->dups++;
        return 0;
    }
    s->bits[seq / 8] |= (unsigned char)(1u << (seq % 8));
    s->unique++;
    return 1;
}

static mqhub_client_t *connect_or_null(const pipe_t *p, const char *who)
{
    mqhub_client_t *c;
    char err[256];
    mqhub_client_opts_t co = {.timeout_ms = 30000};
    if (mqhub_client_connect(&c, p->server, &co, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", who, err);
        return NULL;
    }
    return c;
}

static void fail(pipe_t *p, const char *who, mqhub_client_t *c, int rc)
{
    fprintf(stderr, "%s: %s: %s\n", who, mqhub_client_strerror(rc),
            c ? mqhub_client_errmsg(c) : "");
    raise_flag(&p->failed);
    raise_flag(&p->stop);
}

/* ------------------------------------------------------------ collectors */

/* Line @no of collector @id: one in 64 is an ERROR, one in 8 a WARN. */
static int line_make(char *buf, size_t size, unsigned id, uint64_t no)
{
    static const char *const paths[] = {"/api/orders", "/api/users", "/health", "/api/cart"};
    uint64_t h = (no * 2654435761u + id * 40503u) & 0xffffffu;
    const char *level = h % 64 == 0 ? "ERROR" : h % 8 == 0 ? "WARN" : "INFO";
    return snprintf(buf, size, "2026-12-03T%02u:%02u:%02u.%03uZ %s web-%u GET %s %u %ums",
                    (unsigned)(no / 3600000 % 24), (unsigned)(no / 60000 % 60),
                    (unsigned)(no / 1000 % 60), (unsigned)(no % 1000), level, id,
                    paths[h % 4], level[0] == 'E' ? 500 : 200, (unsigned)(h % 900));
}

typedef struct collector {
    pipe_t *p;
    unsigned id;
    uint64_t first, count; /* line numbers first .. first+count-1 */
} collector_t;

static void *collector_run(void *arg)
{
    collector_t *col = arg;
    pipe_t *p = col->p;
    mqhub_client_t *c = connect_or_null(p, "collector");
    char lines[BATCH][160];
    mqhub_batch_msg_t msgs[BATCH];
    mqhub_publish_msg_t pubs[BATCH];
    mqhub_send_result_t sres[BATCH];
    mqhub_publish_result_t pres[BATCH];
    if (!c) {
        raise_flag(&p->failed);
        raise_flag(&p->stop);
        add(&p->collectors_exited, 1);
        return NULL;
    }
    for (uint64_t done = 0; done < col->count && !flag(&p->stop);) {
        size_t n = col->count - done < BATCH ? (size_t)(col->count - done) : BATCH;
        uint64_t errors = 0, queued = 0, published = 0;
        for (size_t i = 0; i < n; i++) {
            int len = line_make(lines[i], sizeof lines[i], col->id, col->first + done + i);
            msgs[i] = (mqhub_batch_msg_t){.body = lines[i], .len = (size_t)len};
            pubs[i] = (mqhub_publish_msg_t){.body = lines[i], .len = (size_t)len};
        }
        int rc = mqhub_client_send_batch(c, QUEUE, msgs, n, sres);
        if (rc == 0)
            rc = mqhub_client_publish_batch(c, TOPIC, pubs, n, pres);
        if (rc != 0) {
            fail(p, "collector", c, rc);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            queued += sres[i].status == 0;
            published += pres[i].status == 0;
            errors += pres[i].status == 0 && strstr(lines[i], " ERROR ") != NULL;
        }
        add(&p->queued, queued);
        add(&p->published, published);
        add(&p->errors_in, errors);
        done += n;
    }
    mqhub_client_close(c);
    if (__atomic_add_fetch(&p->collectors_exited, 1, __ATOMIC_ACQ_REL) == p->collectors) {
        p->out_at_done = get(&p->batch_out); /* the last one out: the drain starts */
        p->done_ms = now_ms();
        raise_flag(&p->collectors_done);
    }
    return NULL;
}

/* A careless collector: one 70 KiB line among two normal ones (the queue's
 * max_msg_size is 64 KiB), sent with dedup ids and then sent again as a retry
 * would. 1 when the big line was TOO_LARGE, the others stored once, and the
 * replay answered the same seqs. */
static int hostile_collector(pipe_t *p, mqhub_client_t *c)
{
    static char big[70 * 1024];
    memset(big, 'x', sizeof big);
    const char *small = "2026-12-03T00:00:00.000Z INFO web-0 GET /health 200 1ms";
    mqhub_send_opts_t o[3] = {{.dedup_id = "hostile-1"}, {.dedup_id = "hostile-2"},
                              {.dedup_id = "hostile-3"}};
    mqhub_batch_msg_t msgs[3] = {{small, strlen(small), &o[0]},
                                 {big, sizeof big, &o[1]},
                                 {small, strlen(small), &o[2]}};
    mqhub_send_result_t first[3], again[3];
    if (mqhub_client_send_batch(c, QUEUE, msgs, 3, first) != 0 ||
        mqhub_client_send_batch(c, QUEUE, msgs, 3, again) != 0) {
        fprintf(stderr, "hostile collector: %s\n", mqhub_client_errmsg(c));
        return 0;
    }
    printf("hostile collector: a 70 KiB line: %s; the batch replayed with its dedup ids: "
           "seqs %llu,%llu again %llu,%llu\n",
           mqhub_err_name(first[1].status), (unsigned long long)first[0].seq,
           (unsigned long long)first[2].seq, (unsigned long long)again[0].seq,
           (unsigned long long)again[2].seq);
    add(&p->queued, (first[0].status == 0) + (first[2].status == 0));
    return first[1].status == MQHUB_ETOO_LARGE && first[0].status == 0 &&
           first[2].status == 0 && again[0].seq == first[0].seq &&
           again[2].seq == first[2].seq && again[1].status == MQHUB_ETOO_LARGE;
}

/* -------------------------------------------------------- batch consumer */

static void *batch_run(void *arg)
{
    pipe_t *p = arg;
    mqhub_client_t *c = connect_or_null(p, "batch consumer");
    seqset_t seen;
    if (!c || seqset_init(&seen, p->messages + 1024) != 0) {
        mqhub_client_close(c);
        raise_flag(&p->failed);
        raise_flag(&p->stop);
        return NULL;
    }
    uint64_t lag_start = now_ms();
    while (!flag(&p->stop)) {
        int done = flag(&p->collectors_done);
        if (done && seen.unique == get(&p->queued)) {
            p->drained_ms = now_ms();
            break;
        }
        /* Falling behind on purpose: at most lag_rate messages a second. */
        if (!done && seen.unique + BATCH > p->lag_rate * (now_ms() - lag_start) / 1000) {
            usleep(50 * 1000);
            continue;
        }
        mqhub_receive_opts_t ro = {.max = BATCH, .wait = 2, .visibility = 120};
        mqhub_msg_list_t got;
        int rc = mqhub_client_receive(c, QUEUE, &ro, &got);
        if (rc != 0) {
            fail(p, "batch consumer: receive", c, rc);
            break;
        }
        const char *receipts[BATCH];
        for (size_t i = 0; i < got.n; i++) {
            seqset_add(&seen, got.msgs[i].seq);
            receipts[i] = got.msgs[i].receipt;
        }
        rc = got.n ? mqhub_client_delete(c, QUEUE, receipts, got.n, NULL) : 0;
        mqhub_msg_list_free(&got);
        if (rc != 0) {
            fail(p, "batch consumer: delete", c, rc);
            break;
        }
        __atomic_store_n(&p->batch_out, seen.unique, __ATOMIC_RELAXED);
        __atomic_store_n(&p->batch_dups, seen.dups, __ATOMIC_RELAXED);
    }
    free(seen.bits);
    mqhub_client_close(c);
    return NULL;
}

/* ------------------------------------------------------- stream consumer */

typedef struct stream {
    pipe_t *p;
    seqset_t seen;
    uint64_t *acks, errors;
    size_t n_acks, cap_acks;
    int closed;
} stream_t;

static void stream_on_push(void *arg, const mqhub_push_t *push)
{
    stream_t *s = arg;
    if (strcmp(push->kind, "messages") != 0) {
        s->closed = 1;
        return;
    }
    for (size_t i = 0; i < push->n; i++) {
        const mqhub_push_msg_t *m = &push->msgs[i];
        if (seqset_add(&s->seen, m->seq) && strstr(m->body, " ERROR ") != NULL)
            s->errors++;
        if (s->n_acks == s->cap_acks) {
            size_t cap = s->cap_acks * 2;
            uint64_t *more = realloc(s->acks, cap * sizeof *more);
            if (!more)
                continue; /* not acked now: it comes again */
            s->acks = more;
            s->cap_acks = cap;
        }
        s->acks[s->n_acks++] = m->seq;
    }
}

static void *stream_run(void *arg)
{
    pipe_t *p = arg;
    stream_t s = {.p = p, .cap_acks = CREDIT};
    mqhub_client_t *c = connect_or_null(p, "stream consumer");
    s.acks = malloc(s.cap_acks * sizeof *s.acks);
    int rc = !c || !s.acks || seqset_init(&s.seen, p->messages + 1024) != 0 ? MQHUB_ECONN : 0;
    if (rc == 0) {
        mqhub_client_on_push(c, stream_on_push, &s);
        rc = mqhub_client_subscribe(c, TOPIC, SUB, CREDIT);
    }
    while (rc == 0 && !flag(&p->stop) && !s.closed) {
        if (flag(&p->collectors_done) && s.seen.unique == get(&p->published))
            break;
        if ((rc = mqhub_client_poll(c, 200)) < 0)
            break;
        rc = 0;
        for (size_t i = 0; rc == 0 && i < s.n_acks; i += BATCH) {
            size_t n = s.n_acks - i < BATCH ? s.n_acks - i : BATCH;
            rc = mqhub_client_ack_async(c, TOPIC, SUB, s.acks + i, n, NULL, NULL);
        }
        s.n_acks = 0;
        __atomic_store_n(&p->live_out, s.seen.unique, __ATOMIC_RELAXED);
        __atomic_store_n(&p->errors_out, s.errors, __ATOMIC_RELAXED);
        __atomic_store_n(&p->live_dups, s.seen.dups, __ATOMIC_RELAXED);
    }
    for (size_t i = 0; rc == 0 && i < s.n_acks; i += BATCH) /* came again in the last poll */
        rc = mqhub_client_ack(c, TOPIC, SUB, s.acks + i, s.n_acks - i < BATCH ? s.n_acks - i : BATCH,
                              NULL);
    if (rc == 0)
        rc = mqhub_client_flush(c, 10000);
    if (rc == 0)
        rc = mqhub_client_unsubscribe(c, TOPIC, SUB);
    if (rc != 0 || s.closed)
        fail(p, s.closed ? "stream consumer: subscription closed" : "stream consumer", c,
             rc ? rc : MQHUB_EUNAVAILABLE);
    free(s.acks);
    free(s.seen.bits);
    mqhub_client_close(c);
    return NULL;
}

/* A consumer that subscribes with a credit of 256 and never reads: the hub
 * fills its window and it holds those lines until it disconnects 3 s later,
 * after acking a seq that was never delivered to it (forged). */
static void *stall_run(void *arg)
{
    pipe_t *p = arg;
    mqhub_client_t *c = connect_or_null(p, "stalled consumer");
    if (!c)
        return NULL;
    uint64_t forged = 1ull << 40;
    int status = 0;
    int rc = mqhub_client_subscribe(c, TOPIC, SUB, STALL_CREDIT);
    if (rc == 0)
        rc = mqhub_client_ack(c, TOPIC, SUB, &forged, 1, &status);
    __atomic_store_n(&p->stall_forged_code, (uint64_t)-status, __ATOMIC_RELAXED);
    if (rc != 0)
        fail(p, "stalled consumer", c, rc);
    for (int i = 0; i < 30 && !flag(&p->stop); i++)
        usleep(100 * 1000); /* never polls: pushes pile up unread */
    mqhub_client_close(c);
    return NULL;
}

/* --------------------------------------------------------------- monitor */

static int setup(mqhub_client_t *c)
{
    mqhub_queue_attrs_t qa = {.set = MQHUB_ATTR_VISIBILITY_TIMEOUT | MQHUB_ATTR_RETENTION,
                              .visibility_timeout = 120, .retention = 86400};
    mqhub_sub_opts_t live = {.retry = "backoff", .max_attempts = 1000, .interval_ms = 5000};
    int rc = mqhub_client_queue_create(c, QUEUE, &qa);
    if (rc == 0)
        rc = mqhub_client_topic_create(c, TOPIC, NULL);
    if (rc == 0)
        rc = mqhub_client_sub_create(c, TOPIC, SUB, &live);
    if (rc == 0)
        printf("setup: queue %s, topic %s with push subscription %s\n", QUEUE, TOPIC, SUB);
    return rc;
}

/* The live subscription's pending count, 0 when unknown. */
static uint64_t live_pending(mqhub_client_t *c)
{
    mqhub_response_t r;
    uint64_t n = 0;
    if (mqhub_client_sub_get(c, TOPIC, SUB, &r) != 0)
        return 0;
    const msgpack_object *v = mqhub_map_get(mqhub_map_get(&r.map, "stats"), "pending");
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        n = v->via.u64;
    mqhub_response_free(&r);
    return n;
}

typedef struct watch {
    uint64_t peak, last_ms, last_in, last_batch, last_live;
    uint64_t stall_held; /* most lines the stalled consumer was seen holding */
} watch_t;

/* How many lines the stalled consumer holds unacknowledged, from
 * consumer.list; 0 when it is not subscribed. It is the consumer whose window
 * (credit still free + inflight) is STALL_CREDIT. */
static uint64_t stall_probe(mqhub_client_t *c)
{
    mqhub_response_t r;
    uint64_t held = 0;
    if (mqhub_client_consumer_list(c, NULL, TOPIC, &r) != 0)
        return 0;
    const msgpack_object *a = mqhub_map_get(&r.map, "consumers");
    for (uint32_t i = 0; a && a->type == MSGPACK_OBJECT_ARRAY && i < a->via.array.size; i++) {
        const msgpack_object *credit = mqhub_map_get(&a->via.array.ptr[i], "credit");
        const msgpack_object *inflight = mqhub_map_get(&a->via.array.ptr[i], "inflight");
        if (credit && credit->type == MSGPACK_OBJECT_POSITIVE_INTEGER && inflight &&
            inflight->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            credit->via.u64 + inflight->via.u64 == STALL_CREDIT)
            held = inflight->via.u64;
    }
    mqhub_response_free(&r);
    return held;
}

/* One progress line; returns the archive backlog (ready + inflight), or -1. */
static int64_t watch_tick(pipe_t *p, mqhub_client_t *c, watch_t *w)
{
    mqhub_queue_info_t qi;
    int rc = mqhub_client_queue_get(c, QUEUE, &qi);
    if (rc != 0) {
        fail(p, "monitor: queue.get", c, rc);
        return -1;
    }
    uint64_t backlog = qi.stats.ready + qi.stats.inflight, t = now_ms();
    uint64_t in = get(&p->queued), bo = get(&p->batch_out), lo = get(&p->live_out);
    double dt = (double)(t - w->last_ms) / 1000;
    if (backlog > w->peak)
        w->peak = backlog;
    uint64_t held = stall_probe(c);
    if (held > w->stall_held)
        w->stall_held = held;
    printf("[%6.1fs] in %9llu (%6.0f/s) | archive backlog %9llu (peak %9llu), batch out "
           "%9llu (%6.0f/s) | live out %9llu (%6.0f/s), pending %5llu, ERROR %6llu\n",
           (double)(t - p->start_ms) / 1000, (unsigned long long)in, (double)(in - w->last_in) / dt,
           (unsigned long long)backlog, (unsigned long long)w->peak, (unsigned long long)bo,
           (double)(bo - w->last_batch) / dt, (unsigned long long)lo,
           (double)(lo - w->last_live) / dt, (unsigned long long)live_pending(c),
           (unsigned long long)get(&p->errors_out));
    w->last_ms = t;
    w->last_in = in;
    w->last_batch = bo;
    w->last_live = lo;
    return (int64_t)backlog;
}

/* The checks of the end, printed; 1 when all hold. */
static int verdict(pipe_t *p, mqhub_client_t *c, const watch_t *w, uint64_t min_backlog,
                   int hostile_ok)
{
    mqhub_queue_info_t qi;
    int ok = hostile_ok && !flag(&p->failed);
    int rc = mqhub_client_queue_get(c, QUEUE, &qi);
    uint64_t in = get(&p->queued), pub = get(&p->published);
    double drain_s = (double)(p->drained_ms - p->done_ms) / 1000;
    double ingest_s = (double)(p->done_ms - p->start_ms) / 1000;
    printf("collectors: %llu lines sent to %s, %llu published to %s in %.1f s (%.0f lines/s "
           "each way)\n",
           (unsigned long long)in, QUEUE, (unsigned long long)pub, TOPIC, ingest_s,
           ingest_s > 0 ? (double)pub / ingest_s : 0);
    printf("batch consumer: %llu lines out (%llu again), expected %llu; peak backlog %llu "
           "(needed >= %llu)\n",
           (unsigned long long)get(&p->batch_out), (unsigned long long)get(&p->batch_dups),
           (unsigned long long)in, (unsigned long long)w->peak, (unsigned long long)min_backlog);
    printf("batch consumer: drained %llu lines in %.1f s after the collectors stopped: "
           "%.0f lines/s\n",
           (unsigned long long)(in - p->out_at_done), drain_s,
           drain_s > 0 ? (double)(in - p->out_at_done) / drain_s : 0);
    printf("stream consumer: %llu lines out (%llu again), expected %llu; ERROR lines "
           "alerted %llu, sent %llu\n",
           (unsigned long long)get(&p->live_out), (unsigned long long)get(&p->live_dups),
           (unsigned long long)pub, (unsigned long long)get(&p->errors_out),
           (unsigned long long)get(&p->errors_in));
    printf("stalled consumer: held up to %llu lines unread and unacked until it left; its "
           "forged ack answered %s\n",
           (unsigned long long)w->stall_held, mqhub_err_name(-(int)get(&p->stall_forged_code)));
    ok &= get(&p->batch_out) == in && get(&p->live_out) == pub &&
          get(&p->errors_out) == get(&p->errors_in) && w->peak >= min_backlog &&
          -(int)get(&p->stall_forged_code) == MQHUB_ENOT_FOUND && w->stall_held > 0;
    ok &= in == p->messages + HOSTILE_KEPT && pub == p->messages;
    if (rc == 0) {
        printf("%s: ready %llu, inflight %llu, sent_total %llu, deleted_total %llu\n", QUEUE,
               (unsigned long long)qi.stats.ready, (unsigned long long)qi.stats.inflight,
               (unsigned long long)qi.stats.sent_total, (unsigned long long)qi.stats.deleted_total);
        ok &= qi.stats.ready == 0 && qi.stats.inflight == 0 && qi.stats.sent_total == in &&
              qi.stats.deleted_total == in;
    }
    printf("%s\n", ok && rc == 0 ? "RESULT ok" : "RESULT MISMATCH");
    return ok && rc == 0;
}

/* Watch until everything drained (or a failure, or the timeout); fills @w.
 * 1 when it joined the collector threads. */
static int watch_run(pipe_t *p, mqhub_client_t *c, watch_t *w, pthread_t *cols)
{
    int joined = 0;
    w->last_ms = p->start_ms;
    while (!flag(&p->stop)) {
        usleep(1000 * 1000);
        if (watch_tick(p, c, w) < 0)
            break;
        if (!joined && flag(&p->collectors_done)) {
            for (unsigned i = 0; i < p->collectors; i++)
                pthread_join(cols[i], NULL);
            joined = 1;
            printf("collectors done after %.1f s: the batch consumer now drains at full speed\n",
                   (double)(p->done_ms - p->start_ms) / 1000);
            if (watch_tick(p, c, w) < 0) /* the backlog at its peak */
                break;
        }
        if (joined && get(&p->batch_out) == get(&p->queued) &&
            get(&p->live_out) == get(&p->published))
            break;
        if (now_ms() - p->start_ms > p->timeout_ms) {
            fprintf(stderr, "timeout after %llu s\n", (unsigned long long)p->timeout_ms / 1000);
            raise_flag(&p->failed);
            raise_flag(&p->stop);
        }
    }
    return joined;
}

int main(int argc, char **argv)
{
    pipe_t p = {.server = "127.0.0.1:6460", .messages = 1048576, .collectors = 8,
                .lag_rate = 256, .timeout_ms = 600000};
    uint64_t min_backlog = 1000000;
    static const struct option opts[] = {
        {"server", 1, 0, 's'},      {"messages", 1, 0, 'n'}, {"collectors", 1, 0, 'c'},
        {"min-backlog", 1, 0, 'b'}, {"lag-rate", 1, 0, 'l'}, {"timeout", 1, 0, 't'},
        {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 's': p.server = optarg; break;
        case 'n': p.messages = strtoull(optarg, NULL, 10); break;
        case 'c': p.collectors = (unsigned)atoi(optarg); break;
        case 'b': min_backlog = strtoull(optarg, NULL, 10); break;
        case 'l': p.lag_rate = strtoull(optarg, NULL, 10); break;
        case 't': p.timeout_ms = strtoull(optarg, NULL, 10) * 1000; break;
        default:
            fprintf(stderr, "usage: log_pipeline --server H:P [--messages N] [--collectors C] "
                            "[--min-backlog B] [--lag-rate R] [--timeout S]\n");
            return 2;
        }
    }
    if (p.collectors == 0 || p.collectors > 64 || p.messages < p.collectors) {
        fprintf(stderr, "log_pipeline: need 1-64 collectors and at least one line each\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    mqhub_client_t *c = connect_or_null(&p, "log_pipeline");
    if (!c)
        return 3;
    int rc = setup(c);
    if (rc != 0) {
        fail(&p, "setup", c, rc);
        mqhub_client_close(c);
        return 1;
    }
    int hostile_ok = hostile_collector(&p, c);
    printf("run: %u collectors x %llu lines; the batch consumer held to %llu lines/s until "
           "they finish\n",
           p.collectors, (unsigned long long)(p.messages / p.collectors),
           (unsigned long long)p.lag_rate);
    p.start_ms = now_ms();
    pthread_t cols[64], batch, stream, stall;
    collector_t col[64];
    uint64_t per = p.messages / p.collectors;
    for (unsigned i = 0; i < p.collectors; i++) {
        col[i] = (collector_t){.p = &p, .id = i + 1, .first = i * per,
                               .count = i + 1 == p.collectors ? p.messages - i * per : per};
        pthread_create(&cols[i], NULL, collector_run, &col[i]);
    }
    pthread_create(&stream, NULL, stream_run, &p);
    pthread_create(&batch, NULL, batch_run, &p);
    pthread_create(&stall, NULL, stall_run, &p);
    watch_t w = {0};
    int joined = watch_run(&p, c, &w, cols);
    raise_flag(&p.collectors_done);
    for (unsigned i = 0; !joined && i < p.collectors; i++)
        pthread_join(cols[i], NULL);
    pthread_join(stall, NULL);
    pthread_join(stream, NULL);
    pthread_join(batch, NULL);
    int ok = !flag(&p.failed) && verdict(&p, c, &w, min_backlog, hostile_ok);
    mqhub_client_close(c);
    return ok ? 0 : 1;
}
