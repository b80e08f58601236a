/* peer.c: the harness of the side-by-side drivers (peer.h).
 *
 *   peer_<system> produce|consume|both [--url U] [--queue Q] [--nodes N]
 *       [--producers P] [--consumers C] [--window W] [--size B]
 *       [--duration S] [--count N] [--idle-ms M] [--label L]
 *
 * Start at peer_main(): parse, ops->setup, one thread per producer and per
 * consumer running the driver's body, then report(). Producers claim each
 * message with peer_produce_more() (deadline and --count); consumers ask
 * peer_consume_more() (deadline, --count, idle once the producers are done).
 * Rates are counted to the last confirmed operation, so a consumer that
 * drains the backlog early is not charged its idle wait. The latency
 * histogram is log-linear (~3 %), in microseconds.
 */
#include "peer.h"

#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PEER_ERRORS_SHOWN 5

uint64_t peer_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------ histogram */

static unsigned hist_index(uint64_t v)
{
    if (v < PEER_HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 5; /* 5 bits below the msb: PEER_HIST_SUB = 32 */
    return (msb - 4) * PEER_HIST_SUB + (unsigned)((v >> shift) & (PEER_HIST_SUB - 1));
}

static uint64_t hist_value(unsigned i)
{
    if (i < PEER_HIST_SUB)
        return i;
    unsigned msb = i / PEER_HIST_SUB + 4, shift = msb - 5;
    return ((uint64_t)(PEER_HIST_SUB + i % PEER_HIST_SUB) << shift) + ((1ull << shift) >> 1);
}

static void hist_merge(peer_hist_t *into, const peer_hist_t *h)
{
    for (unsigned i = 0; i < PEER_HIST_BUCKETS; i++)
        into->b[i] += h->b[i];
    into->n += h->n;
}

static double hist_pct_ms(const peer_hist_t *h, double pct)
{
    uint64_t want = (uint64_t)(pct / 100.0 * (double)h->n + 0.5), seen = 0;
    if (want == 0)
        want = 1;
    for (unsigned i = 0; h->n && i < PEER_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want && h->b[i])
            return (double)hist_value(i) / 1000.0;
    }
    return 0;
}

/* ------------------------------------------------------- worker API */

bool peer_produce_more(peer_worker_t *w)
{
    peer_t *p = w->p;
    if (peer_now_us() >= p->t_end_us)
        return false;
    return atomic_fetch_add(&p->claimed, 1) < p->count;
}

bool peer_consume_more(peer_worker_t *w)
{
    peer_t *p = w->p;
    uint64_t now = peer_now_us();
    if (now >= p->t_end_us || atomic_load(&p->consumed) >= p->count)
        return false;
    if (w->last_msg_us == 0)
        w->last_msg_us = now;
    return atomic_load(&p->producers_left) > 0 || now - w->last_msg_us < (uint64_t)p->idle_ms * 1000;
}

void peer_acked(peer_worker_t *w, uint64_t t0_us, uint64_t n)
{
    uint64_t now = peer_now_us(), v = now > t0_us ? now - t0_us : 0;
    unsigned i = hist_index(v);
    w->hist.b[i < PEER_HIST_BUCKETS ? i : PEER_HIST_BUCKETS - 1] += n;
    w->hist.n += n;
    atomic_fetch_add(&w->p->produced, n);
    atomic_store(&w->p->last_done_us, now);
}

void peer_consumed(peer_worker_t *w, uint64_t n)
{
    if (n == 0)
        return;
    w->last_msg_us = peer_now_us();
    atomic_fetch_add(&w->p->consumed, n);
    atomic_store(&w->p->last_done_us, w->last_msg_us);
}

void peer_error(peer_worker_t *w, const char *why)
{
    if (atomic_fetch_add(&w->p->errors, 1) < PEER_ERRORS_SHOWN)
        fprintf(stderr, "peer_%s %s: %s\n", w->p->system, w->producer ? "producer" : "consumer",
                why);
}

/* ------------------------------------------------------------- threads */

typedef struct thread_arg {
    peer_worker_t w;
    const peer_ops_t *ops;
    pthread_t tid;
} thread_arg_t;

static void *thread_main(void *arg)
{
    thread_arg_t *t = arg;
    if (t->w.producer) {
        t->ops->produce(&t->w);
        atomic_fetch_sub(&t->w.p->producers_left, 1);
    } else {
        t->ops->consume(&t->w);
    }
    return NULL;
}

static void report(peer_t *p, const peer_hist_t *h)
{
    uint64_t last = atomic_load(&p->last_done_us), end = p->t_end_us;
    if (last && last < end)
        end = last;
    double secs = end > p->t_start_us ? (double)(end - p->t_start_us) / 1e6 : 0;
    uint64_t in = atomic_load(&p->produced), out = atomic_load(&p->consumed);
    double rin = secs > 0 ? (double)in / secs : 0, rout = secs > 0 ? (double)out / secs : 0;
    /* both: what flows through the queue, the smaller of in and out. */
    double rate = p->producers && p->consumers ? (rin < rout ? rin : rout)
                  : p->producers               ? rin
                                               : rout;
    printf("{\"system\":\"%s\",\"nodes\":%u,\"phase\":\"%s\",\"producers\":%u,"
           "\"consumers\":%u,\"window\":%u,\"size\":%u,\"seconds\":%.3f,\"produced\":%llu,"
           "\"consumed\":%llu,\"rate_in\":%.0f,\"rate_out\":%.0f,\"rate\":%.0f,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"errors\":%llu}\n",
           p->system, p->nodes, p->label, p->producers, p->consumers, p->window, p->size, secs,
           (unsigned long long)in, (unsigned long long)out, rin, rout, rate,
           hist_pct_ms(h, 50), hist_pct_ms(h, 99), hist_pct_ms(h, 99.9),
           (unsigned long long)atomic_load(&p->errors));
    fflush(stdout);
}

static int run(peer_t *p, const peer_ops_t *ops)
{
    unsigned n = p->producers + p->consumers;
    thread_arg_t *t = calloc(n, sizeof *t);
    peer_hist_t *all = calloc(1, sizeof *all);
    if (!t || !all) {
        free(t), free(all);
        return 1;
    }
    atomic_store(&p->producers_left, (int)p->producers);
    p->t_start_us = peer_now_us();
    p->t_end_us = p->t_start_us + (uint64_t)(p->duration * 1e6);
    unsigned started = 0;
    for (unsigned i = 0; i < n; i++) {
        t[i].ops = ops;
        t[i].w.p = p;
        t[i].w.producer = i < p->producers;
        t[i].w.index = t[i].w.producer ? i : i - p->producers;
        if (pthread_create(&t[i].tid, NULL, thread_main, &t[i]) != 0) {
            fprintf(stderr, "peer_%s: pthread_create failed\n", p->system);
            p->t_end_us = 0; /* the started ones stop at once */
            break;
        }
        started++;
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(t[i].tid, NULL);
        hist_merge(all, &t[i].w.hist);
    }
    int64_t removed = started == n && ops->removed ? ops->removed(p) : -1;
    if (removed >= 0 && (uint64_t)removed < atomic_load(&p->consumed)) {
        fprintf(stderr, "peer_%s: the server removed %lld of the %llu messages acknowledged\n",
                p->system, (long long)removed, (unsigned long long)atomic_load(&p->consumed));
        atomic_store(&p->consumed, (uint64_t)removed);
    }
    if (started == n)
        report(p, all);
    free(t);
    free(all);
    if (started != n)
        return 1;
    return atomic_load(&p->errors) ? 3 : 0;
}

/* ---------------------------------------------------------------- main */

static void usage(const peer_ops_t *ops)
{
    fprintf(stderr,
            "usage: peer_%s produce|consume|both [options]\n"
            "  --url U         server (default %s)\n"
            "  --queue Q       queue / stream name (default peers)\n"
            "  --nodes N       cluster size, for the result line (default 1)\n"
            "  --producers P   (default 4; 0 for consume)   --consumers C (default 4; 0 for produce)\n"
            "  --window W      unconfirmed messages per worker (default 64)\n"
            "  --size B        body bytes (default 1024)\n"
            "  --duration S    phase length in seconds (default 10)\n"
            "  --count N       at most N messages each way (default 10000000)\n"
            "  --idle-ms M     a consumer stops after M ms without messages (default 1000)\n"
            "  --label L       the phase's name in the result line\n",
            ops->system, ops->default_url);
}

static int parse(peer_t *p, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", 1, 0, 'u'},      {"queue", 1, 0, 'q'},    {"nodes", 1, 0, 'n'},
        {"producers", 1, 0, 'P'}, {"consumers", 1, 0, 'C'}, {"window", 1, 0, 'w'},
        {"size", 1, 0, 's'},     {"duration", 1, 0, 'd'}, {"count", 1, 0, 'c'},
        {"idle-ms", 1, 0, 'i'},  {"label", 1, 0, 'l'},    {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    if (argc < 2)
        return -1;
    p->phase = argv[1];
    bool prod = !strcmp(p->phase, "produce"), cons = !strcmp(p->phase, "consume");
    if (!prod && !cons && strcmp(p->phase, "both"))
        return -1;
    p->producers = cons ? 0 : 4;
    p->consumers = prod ? 0 : 4;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': p->url = optarg; break;
        case 'q': p->queue = optarg; break;
        case 'n': p->nodes = (unsigned)atoi(optarg); break;
        case 'P': p->producers = (unsigned)atoi(optarg); break;
        case 'C': p->consumers = (unsigned)atoi(optarg); break;
        case 'w': p->window = (unsigned)atoi(optarg); break;
        case 's': p->size = (unsigned)atoi(optarg); break;
        case 'd': p->duration = atof(optarg); break;
        case 'c': p->count = strtoull(optarg, NULL, 10); break;
        case 'i': p->idle_ms = (unsigned)atoi(optarg); break;
        case 'l': p->label = optarg; break;
        default: return -1;
        }
    }
    if (prod)
        p->consumers = 0;
    if (cons)
        p->producers = 0;
    /* !(d > 0 && d <= 3600): also refuses "nan", which every comparison passes */
    if (optind != argc || p->window < 1 || p->window > 4096 || p->size < 16 ||
        p->size > (1u << 20) || !(p->duration > 0 && p->duration <= 3600) || p->count == 0 ||
        p->producers + p->consumers == 0 || p->producers > 64 || p->consumers > 64)
        return -1;
    return 0;
}

int peer_main(int argc, char **argv, const peer_ops_t *ops)
{
    peer_t p = {.system = ops->system, .url = ops->default_url, .queue = "peers", .nodes = 1,
                .window = 64, .size = 1024, .duration = 10, .count = 10000000,
                .idle_ms = 1000};
    if (parse(&p, argc, argv) != 0) {
        usage(ops);
        return 2;
    }
    if (!p.label)
        p.label = p.phase;
    p.body = malloc(p.size);
    if (!p.body)
        return 1;
    for (unsigned i = 0; i < p.size; i++)
        p.body[i] = (char)('a' + i % 26);
    char err[512] = "";
    if (ops->setup(&p, err, sizeof err) != 0) {
        fprintf(stderr, "peer_%s: setup: %s\n", p.system, err);
        free(p.body);
        return 1;
    }
    int rc = run(&p, ops);
    if (ops->teardown)
        ops->teardown(&p);
    free(p.body);
    return rc;
}
