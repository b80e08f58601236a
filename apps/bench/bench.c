/* bench.c: mqhub-bench, a load generator for a running mqhubd.
 *
 *   mqhub-bench produce|consume|both [--server H:P] [--ca FILE] [--token T]
 *       [--connections N]
 *   (publish|push: the topic modes, topic_bench.c)
 *       [--size B] [--batch N] [--window N] [--duration S | --count N]
 *       [--rate R] [--recv-max M] [--threads T] [--queue Q] [--json]
 *       [--quiet | --progress] [--idle-queues N]
 *
 * Each connection drives libmqhub's pipelined API: keep --window requests in
 * flight, poll for answers; by default one thread per connection, with
 * --threads T the connections share T threads (round robin, non-blocking
 * polls), which keeps the client from crowding a small machine. Producers send (or
 * send_batch when --batch > 1) and record send->ack latency per request in a
 * log-linear histogram, optionally paced to --rate messages/s in total;
 * consumers receive up to --recv-max messages per request and delete them. It always stops by itself (duration, count, or a consumer idle for
 * 2 s after the producers finished). Every failed request, and every failed
 * item of a send_batch or delete, is counted by its code (errors_by_code)
 * and phase. While it runs the main thread prints a progress line a second
 * on stderr (rates, errors so far) when stderr is a terminal, unless
 * --quiet (--progress: also when it is not); at the end a summary, or with
 * --json one object (report()). Start at main(), then drive(),
 * producer_step() and consumer_step(). docs/client.md shows figures.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench_common.h"
#include "receipts.h"
#include "mqhub/client.h"
#include "topic_bench.h"

#define HIST_SUB 32   /* sub-buckets per power of two: ~3% resolution */
#define HIST_BUCKETS (64 * HIST_SUB)
#define IDLE_STOP_MS 2000
#define IDLE_QUEUES_MAX 1000000 /* --idle-queues */
enum { PHASE_PRODUCE, PHASE_CONSUME, PHASES };

typedef struct hist {
    uint64_t b[HIST_BUCKETS];
    uint64_t n, max;
} hist_t;

typedef struct bench {
    const char *server, *queue;
    const char *ca; /* TLS: the CA of the server's certificate, or NULL */
    const char *token; /* hello's token (env MQHUB_TOKEN), or NULL */
    unsigned conns, size, batch, window, recv_max, threads;
    unsigned idle_queues; /* created before the run, one message each */
    double rate;       /* produced msgs/s over all producers, 0: unpaced */
    double duration;   /* seconds, 0 when --count */
    uint64_t count;    /* messages per role, 0 when --duration */
    bool json;
    bool quiet, progress; /* progress lines: off / on even when not a terminal */
    uint64_t t_start, t_end; /* ms */
    atomic_uint_fast64_t produced, consumed, claimed;
    bench_errors_t errors;                          /* by phase and code */
    atomic_uint_fast64_t phase_end[PHASES];         /* ms: its last worker finished */
    atomic_int producers_left, threads_left;
    char *body;
} bench_t;

typedef struct worker {
    bench_t *b;
    bool producer;
    hist_t hist;
    mqhub_client_t *c;
    unsigned inflight;
    uint64_t done; /* messages acknowledged / consumed by this worker */
    uint64_t submitted, t0_us; /* producer pacing */
    bool more, live;     /* more to submit; not finished yet */
    int poll_ms;         /* 0 when sharing a thread */
    msgpack_zone zone;
    msgpack_object args; /* the request arguments, built once */
    /* consumer: receipts waiting for a delete */
    receipts_t receipts;
    uint64_t last_msg_ms;
    int failed;
} worker_t;

typedef struct req {
    worker_t *w;
    uint64_t t0_us;
} req_t;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------ histogram */

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 5; /* keep 5 bits below the msb (HIST_SUB = 32) */
    return (msb - 4) * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1));
}

static uint64_t hist_value(unsigned i)
{
    if (i < HIST_SUB)
        return i;
    unsigned msb = i / HIST_SUB + 4, shift = msb - 5;
    return ((uint64_t)(HIST_SUB + i % HIST_SUB) << shift) + ((1ull << shift) >> 1);
}

static void hist_add(hist_t *h, uint64_t v)
{
    unsigned i = hist_index(v);
    h->b[i < HIST_BUCKETS ? i : HIST_BUCKETS - 1]++;
    h->n++;
    h->max = v > h->max ? v : h->max;
}

static uint64_t hist_pct(const hist_t *h, double p)
{
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->n + 0.5), seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want && h->b[i])
            return hist_value(i);
    }
    return 0;
}

/* ------------------------------------------------------------- requests */

/* Build {queue, msgs: [{body} x batch]} or {queue, max, wait} into w->args. */
static int build_args(worker_t *w)
{
    bench_t *b = w->b;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t off = 0;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2 + !w->producer);
    msgpack_pack_str_with_body(&pk, "queue", 5);
    msgpack_pack_str_with_body(&pk, b->queue, strlen(b->queue));
    if (w->producer) {
        msgpack_pack_str_with_body(&pk, "msgs", 4);
        msgpack_pack_array(&pk, b->batch);
        for (unsigned i = 0; i < b->batch; i++) {
            msgpack_pack_map(&pk, 1);
            msgpack_pack_str_with_body(&pk, "body", 4);
            msgpack_pack_bin_with_body(&pk, b->body, b->size);
        }
    } else {
        msgpack_pack_str_with_body(&pk, "max", 3);
        msgpack_pack_uint32(&pk, b->recv_max);
        msgpack_pack_str_with_body(&pk, "wait", 4);
        msgpack_pack_uint32(&pk, 1);
    }
    msgpack_zone_init(&w->zone, sb.size + 4096);
    char *copy = msgpack_zone_malloc(&w->zone, sb.size);
    memcpy(copy, sb.data, sb.size);
    int rc = msgpack_unpack(copy, sb.size, &off, &w->zone, &w->args);
    msgpack_sbuffer_destroy(&sb);
    return rc == MSGPACK_UNPACK_SUCCESS ? 0 : -1;
}

static bool produce_more(worker_t *w)
{
    bench_t *b = w->b;
    if (b->count)
        return atomic_fetch_add(&b->claimed, b->batch) < b->count;
    return now_us() / 1000 < b->t_end;
}

static void acked(worker_t *w, uint64_t t0_us, uint64_t n, int status)
{
    w->inflight--;
    if (status != 0) {
        bench_errors_count(&w->b->errors, PHASE_PRODUCE, status);
        return;
    }
    hist_add(&w->hist, now_us() - t0_us);
    w->done += n;
    atomic_fetch_add(&w->b->produced, n);
}

static void on_send(void *arg, const mqhub_send_result_t *res)
{
    req_t *r = arg;
    acked(r->w, r->t0_us, 1, res->status);
    free(r);
}

static void on_batch(void *arg, int status, const msgpack_object *resp, const char *errmsg)
{
    req_t *r = arg;
    uint64_t n = status == 0 ? bench_errors_count_items(&r->w->b->errors, PHASE_PRODUCE, resp) : 0;
    acked(r->w, r->t0_us, n, status);
    free(r);
}

static int submit_produce(worker_t *w)
{
    req_t *r = malloc(sizeof *r);
    if (!r)
        return -1;
    *r = (req_t){w, now_us()};
    int rc = w->b->batch == 1
                 ? mqhub_client_send_async(w->c, w->b->queue, w->b->body, w->b->size, NULL,
                                           on_send, r)
                 : mqhub_client_call_async(w->c, "send_batch", &w->args, on_batch, r);
    if (rc != 0) {
        free(r);
        return rc;
    }
    w->inflight++;
    return 0;
}

/* With --rate, whether this producer is behind its share of the schedule. */
static bool on_schedule(worker_t *w)
{
    bench_t *b = w->b;
    if (b->rate <= 0)
        return true;
    double due = b->rate / b->conns * (double)(now_us() - w->t0_us) / 1e6;
    return (double)(w->submitted * b->batch) < due + 1;
}

/* One round of a producer: submit what the window (and --rate) allows, then
 * handle answers. Clears w->live when done. */
static void producer_step(worker_t *w)
{
    while (w->more && w->inflight < w->b->window && on_schedule(w)) {
        w->more = produce_more(w);
        if (w->more && submit_produce(w) != 0) {
            fprintf(stderr, "mqhub-bench: submit: %s\n", mqhub_client_errmsg(w->c));
            w->failed = 1;
            w->more = false;
        }
        w->submitted++;
    }
    if (w->inflight > 0) {
        if (mqhub_client_poll(w->c, w->poll_ms) < 0)
            w->inflight = 0, w->more = false;
    } else if (w->more && w->poll_ms) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    if (!w->more && w->inflight == 0) {
        w->live = false;
        atomic_fetch_sub(&w->b->producers_left, 1);
    }
}

/* ------------------------------------------------------------- consumer */

static void on_receive(void *arg, int status, const msgpack_object *resp, const char *errmsg)
{
    worker_t *w = arg;
    w->inflight--;
    if (status != 0) {
        bench_errors_count(&w->b->errors, PHASE_CONSUME, status);
        return;
    }
    const msgpack_object *msgs = mqhub_map_get(resp, "msgs");
    if (msgs && msgs->type == MSGPACK_OBJECT_ARRAY && msgs->via.array.size > 0) {
        if (receipts_keep(&w->receipts, msgs) != 0)
            bench_errors_count(&w->b->errors, PHASE_CONSUME, MQHUB_EINTERNAL);
        w->last_msg_ms = now_us() / 1000;
    }
}

static void on_delete(void *arg, int status, const msgpack_object *resp, const char *errmsg)
{
    req_t *r = arg;
    uint64_t n = status == 0 ? bench_errors_count_items(&r->w->b->errors, PHASE_CONSUME, resp) : 0;
    r->w->inflight--;
    if (status != 0)
        bench_errors_count(&r->w->b->errors, PHASE_CONSUME, status);
    r->w->done += n;
    atomic_fetch_add(&r->w->b->consumed, n);
    free(r);
}

/* Delete every kept receipt (chunks of MQHUB_BATCH_MAX). */
static int submit_deletes(worker_t *w)
{
    while (w->receipts.n > 0) {
        req_t *r = malloc(sizeof *r);
        if (!r)
            return -1;
        *r = (req_t){w, now_us()};
        int rc = receipts_delete(&w->receipts, w->c, w->b->queue, on_delete, r, NULL);
        if (rc != 0) {
            free(r);
            return rc;
        }
        w->inflight++;
    }
    return 0;
}

static bool consume_more(worker_t *w)
{
    bench_t *b = w->b;
    uint64_t t = now_us() / 1000;
    if (b->count)
        return atomic_load(&b->consumed) + w->receipts.n < b->count &&
               !(atomic_load(&b->producers_left) == 0 && t - w->last_msg_ms > IDLE_STOP_MS &&
                 atomic_load(&b->consumed) >= atomic_load(&b->produced));
    if (t >= b->t_end)
        return false;
    return true;
}

/* One round of a consumer: deletes for what was received, a few receives
 * outstanding, then answers. Clears w->live when done. */
static void consumer_step(worker_t *w)
{
    if (submit_deletes(w) != 0) {
        w->live = false;
        return;
    }
    w->more = w->more && consume_more(w);
    /* Keep a few receives outstanding; the rest of the window is deletes. */
    unsigned recv_window = w->b->window < 4 ? w->b->window : 4;
    while (w->more && w->inflight < recv_window) {
        if (mqhub_client_call_async(w->c, "receive", &w->args, on_receive, w) != 0) {
            w->failed = 1;
            w->more = false;
            break;
        }
        w->inflight++;
    }
    if (w->inflight > 0 && mqhub_client_poll(w->c, w->poll_ms) < 0)
        w->inflight = 0, w->more = false, receipts_free(&w->receipts);
    if (!w->more && w->inflight == 0 && w->receipts.n == 0)
        w->live = false;
}

/* The connections given to one thread. */
typedef struct group {
    worker_t **w;
    unsigned n;
    pthread_t tid;
} group_t;

/* Worker @w has finished: its phase ends no earlier than now. */
static void phase_done(worker_t *w)
{
    atomic_uint_fast64_t *end = &w->b->phase_end[w->producer ? PHASE_PRODUCE : PHASE_CONSUME];
    uint64_t t = now_us() / 1000, cur = atomic_load(end);
    while (cur < t && !atomic_compare_exchange_weak(end, &cur, t))
        ;
}

static void *drive(void *arg)
{
    group_t *g = arg;
    unsigned live = g->n;
    for (unsigned i = 0; i < g->n; i++) {
        worker_t *w = g->w[i];
        w->more = w->live = true;
        w->poll_ms = g->n > 1 ? 0 : !w->producer || w->b->rate <= 0 ? 100 : 1;
        w->t0_us = now_us();
        w->last_msg_ms = w->t0_us / 1000;
    }
    while (live > 0) {
        live = 0;
        for (unsigned i = 0; i < g->n; i++) {
            worker_t *w = g->w[i];
            if (!w->live)
                continue;
            if (w->producer)
                producer_step(w);
            else
                consumer_step(w);
            if (!w->live)
                phase_done(w);
            live += w->live;
        }
        if (g->n > 1) { /* shared thread: polls do not block, so yield a little */
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    atomic_fetch_sub(&g->w[0]->b->threads_left, 1);
    return NULL;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fputs("usage: mqhub-bench produce|consume|both [options]\n"
          "       mqhub-bench publish|push [options]   (topics: mqhub-bench publish --help)\n"
          "  --server H:P       hub (env MQHUB_SERVER, default " MQHUB_DEFAULT_TCP_ADDRESS ")\n"
          "  --ca FILE          connect with TLS, verifying the server with this CA\n"
          "  --token T          say hello with this token (env MQHUB_TOKEN)\n"
          "  --connections N    producers and consumers each (default 4)\n"
          "  --size B           body bytes (default 100)\n"
          "  --batch N          send_batch size / receive max (default 1 = send)\n"
          "  --window N         requests in flight per connection (default 64)\n"
          "  --duration S       run S seconds (default 5)\n"
          "  --count N          or: produce / consume N messages\n"
          "  --rate R           pace the producers to R msgs/s in total (default: flat out)\n"
          "  --recv-max M       messages per receive (default: --batch)\n"
          "  --threads T        client threads shared by the connections (default: one each)\n"
          "  --queue Q          queue (default bench; created if missing)\n"
          "  --idle-queues N    first create N more queues Q.idle-0000000 ... with one\n"
          "                     message each (at most 1000000; kept for later runs)\n"
          "  --json             print one JSON object: per phase rates, latency\n"
          "                     percentiles, errors by code\n"
          "  --quiet            no progress line (printed each second on stderr when it\n"
          "                     is a terminal)\n"
          "  --progress         the progress lines even when stderr is not a terminal\n", f);
}

static int parse(bench_t *b, int argc, char **argv, int *mode)
{
    static const struct option opts[] = {
        {"server", 1, NULL, 's'}, {"connections", 1, NULL, 'c'}, {"size", 1, NULL, 'z'},
        {"batch", 1, NULL, 'b'},  {"window", 1, NULL, 'w'},      {"duration", 1, NULL, 'd'},
        {"count", 1, NULL, 'n'},  {"queue", 1, NULL, 'q'},       {"json", 0, NULL, 'j'},
        {"rate", 1, NULL, 'r'},   {"recv-max", 1, NULL, 'm'},    {"threads", 1, NULL, 't'},
        {"ca", 1, NULL, 'a'},     {"token", 1, NULL, 'k'},       {"help", 0, NULL, 'h'},
        {"quiet", 0, NULL, 'Q'},  {"progress", 0, NULL, 'P'},    {"idle-queues", 1, NULL, 'I'},
        {NULL, 0, NULL, 0},
    };
    const char *env = getenv("MQHUB_SERVER"), *token = getenv("MQHUB_TOKEN");
    int o;
    *b = (bench_t){.server = env && *env ? env : MQHUB_DEFAULT_TCP_ADDRESS, .queue = "bench",
                   .conns = 4, .size = 100, .batch = 1, .window = 64, .duration = 5,
                   .token = token && *token ? token : NULL};
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 's': b->server = optarg; break;
        case 'a': b->ca = optarg; break;
        case 'k': b->token = optarg; break;
        case 'c': b->conns = (unsigned)atoi(optarg); break;
        case 'z': b->size = (unsigned)atoi(optarg); break;
        case 'b': b->batch = (unsigned)atoi(optarg); break;
        case 'w': b->window = (unsigned)atoi(optarg); break;
        case 'd': b->duration = atof(optarg); b->count = 0; break;
        case 'n': b->count = strtoull(optarg, NULL, 10); b->duration = 0; break;
        case 'q': b->queue = optarg; break;
        case 'r': b->rate = atof(optarg); break;
        case 'm': b->recv_max = (unsigned)atoi(optarg); break;
        case 't': b->threads = (unsigned)atoi(optarg); break;
        case 'j': b->json = true; break;
        case 'Q': b->quiet = true; break;
        case 'P': b->progress = true; break;
        case 'I': b->idle_queues = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
    }
    if (!b->recv_max)
        b->recv_max = b->batch;
    if (optind != argc - 1 || b->recv_max > MQHUB_RECEIVE_MAX || b->rate < 0 || b->conns < 1 ||
        b->conns > 256 || b->batch < 1 || b->batch > MQHUB_BATCH_MAX || b->window < 1 ||
        (b->duration <= 0 && !b->count) || b->duration > 3600 || b->idle_queues > IDLE_QUEUES_MAX)
        return -1;
    const char *m = argv[optind];
    *mode = !strcmp(m, "produce") ? 1 : !strcmp(m, "consume") ? 2 : !strcmp(m, "both") ? 3 : 0;
    return *mode ? 0 : -1;
}

/* --idle-queues: a failed create or send, EEXISTS aside (a queue kept from an
 * earlier run, which then gets one more message). */
static void on_idle(void *arg, int status, const msgpack_object *resp, const char *errmsg)
{
    unsigned *failed = arg;
    (void)resp;
    if (status != 0 && status != MQHUB_EEXISTS && (*failed)++ == 0)
        fprintf(stderr, "mqhub-bench: idle queues: %s\n", errmsg);
}

static void on_idle_send(void *arg, const mqhub_send_result_t *res)
{
    on_idle(arg, res->status, NULL, res->error);
}

/* queue.create {name: @name}, pipelined. */
static int create_async(mqhub_client_t *c, const char *name, unsigned *failed)
{
    msgpack_object_kv kv = {
        .key = {.type = MSGPACK_OBJECT_STR, .via.str = {.size = 4, .ptr = "name"}},
        .val = {.type = MSGPACK_OBJECT_STR,
                .via.str = {.size = (uint32_t)strlen(name), .ptr = name}}};
    msgpack_object args = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = 1, .ptr = &kv}};
    return mqhub_client_call_async(c, "queue.create", &args, on_idle, failed);
}

/* Create b->idle_queues queues "<queue>.idle-%07u" and send one message to
 * each, pipelined on @c: the many idle queues a busy one runs beside. 0, or
 * -1 after the first failure was printed. */
static int idle_queues(bench_t *b, mqhub_client_t *c)
{
    unsigned failed = 0;
    uint64_t t0 = now_us();
    for (int round = 0; round < 2 && !failed; round++) {
        for (unsigned i = 0; i < b->idle_queues && !failed; i++) {
            char name[MQHUB_NAME_MAX + 1];
            int n = snprintf(name, sizeof name, "%s.idle-%07u", b->queue, i);
            if (n < 0 || (size_t)n >= sizeof name) {
                fprintf(stderr, "mqhub-bench: --queue is too long for idle queue names\n");
                return -1;
            }
            int rc = round == 0 ? create_async(c, name, &failed)
                                : mqhub_client_send_async(c, name, "idle", 4, NULL, on_idle_send,
                                                          &failed);
            if (rc != 0) {
                fprintf(stderr, "mqhub-bench: idle queues: %s\n", mqhub_client_errmsg(c));
                return -1;
            }
        }
        while (mqhub_client_pending(c) > 0 && mqhub_client_poll(c, 1000) >= 0)
            ;
    }
    if (!failed && !b->quiet)
        fprintf(stderr, "mqhub-bench: %u idle queues with a message each in %.1f s\n",
                b->idle_queues, (double)(now_us() - t0) / 1e6);
    return failed ? -1 : 0;
}

static int prepare_queue(bench_t *b)
{
    mqhub_client_t *c;
    char err[512];
    mqhub_queue_attrs_t a = {0};
    mqhub_client_opts_t o = {.tls_ca = b->ca, .token = b->token};
    int rc = mqhub_client_connect(&c, b->server, &o, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "mqhub-bench: %s\nis mqhubd running? start it with `make run`\n", err);
        return 3;
    }
    if (b->size > 65536) {
        a.set = MQHUB_ATTR_MAX_MSG_SIZE;
        a.max_msg_size = b->size;
    }
    rc = mqhub_client_queue_create(c, b->queue, a.set ? &a : NULL);
    if (rc != 0 && rc != MQHUB_EEXISTS)
        fprintf(stderr, "mqhub-bench: queue.create %s: %s\n", b->queue, mqhub_client_errmsg(c));
    else if (b->idle_queues && idle_queues(b, c) != 0)
        rc = MQHUB_EINTERNAL;
    mqhub_client_close(c);
    return rc != 0 && rc != MQHUB_EEXISTS ? 1 : 0;
}

/* The seconds phase @p took (start to its last worker's end; the whole run
 * when it had no worker or none finished). */
static double phase_secs(bench_t *b, int p, double secs)
{
    uint64_t end = atomic_load(&b->phase_end[p]);
    return end > b->t_start ? (double)(end - b->t_start) / 1e3 : secs;
}

/* The summary: a table for people, or with --json one object (the flat
 * fields scripts read — produced, produce_msgs_per_s, latency_p99_ms, errors
 * ... — plus "phases" with each phase's own rate and "errors_by_code"). */
static void report(bench_t *b, int mode, worker_t *w, unsigned n, double secs,
                   const bench_raft_t *raft)
{
    hist_t h = {0};
    for (unsigned i = 0; i < n; i++) {
        if (!w[i].producer)
            continue;
        for (unsigned j = 0; j < HIST_BUCKETS; j++)
            h.b[j] += w[i].hist.b[j];
        h.n += w[i].hist.n;
        h.max = w[i].hist.max > h.max ? w[i].hist.max : h.max;
    }
    uint64_t prod = atomic_load(&b->produced), cons = atomic_load(&b->consumed);
    uint64_t errors = bench_errors_total(&b->errors, -1);
    double psecs = phase_secs(b, PHASE_PRODUCE, secs), csecs = phase_secs(b, PHASE_CONSUME, secs);
    double p50 = hist_pct(&h, 50) / 1e3, p90 = hist_pct(&h, 90) / 1e3,
           p99 = hist_pct(&h, 99) / 1e3, p999 = hist_pct(&h, 99.9) / 1e3, max = h.max / 1e3;
    if (b->json) {
        json_t *phases = json_object();
        if (mode & 1) {
            json_t *pj = bench_phase_json(&b->errors, PHASE_PRODUCE, prod, psecs, b->size);
            json_object_set_new(pj, "latency_ms",
                                json_pack("{s:f,s:f,s:f,s:f,s:f}", "p50", p50, "p90", p90, "p99",
                                          p99, "p999", p999, "max", max));
            json_object_set_new(phases, "produce", pj);
        }
        if (mode & 2)
            json_object_set_new(phases, "consume",
                                bench_phase_json(&b->errors, PHASE_CONSUME, cons, csecs, b->size));
        json_t *j = json_pack("{s:s,s:f,s:I,s:f,s:f,s:I,s:f,s:f,s:f,s:f,s:f,s:I,s:o,s:o,s:i,"
                              "s:i,s:i,s:i}",
                              "mode", mode == 1 ? "produce" : mode == 2 ? "consume" : "both",
                              "seconds", secs, "produced", (json_int_t)prod, "produce_msgs_per_s",
                              prod / psecs, "produce_mb_per_s", (double)prod * b->size / psecs / 1e6,
                              "consumed", (json_int_t)cons, "consume_msgs_per_s", cons / csecs,
                              "latency_p50_ms", p50, "latency_p99_ms", p99, "latency_p999_ms",
                              p999, "latency_max_ms", max, "errors", (json_int_t)errors,
                              "errors_by_code", bench_errors_json(&b->errors, -1), "phases", phases,
                              "connections", (int)b->conns, "size", (int)b->size, "batch",
                              (int)b->batch, "window", (int)b->window);
        json_t *rj = bench_raft_json(&raft[0], &raft[1], secs);
        if (rj != NULL) /* the leader's raft entries meanwhile */
            json_object_set_new(j, "raft", rj);
        json_dumpf(j, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(j);
        return;
    }
    printf("%.2f s, %u connections, %u-byte bodies, batch %u, window %u\n", secs, b->conns,
           b->size, b->batch, b->window);
    if (prod > 0)
        printf("produced  %10llu msgs  %10.0f msgs/s  %8.2f MB/s   send->ack p50 %.3f ms  "
               "p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n", (unsigned long long)prod,
               prod / psecs, (double)prod * b->size / psecs / 1e6, p50, p99, p999, max);
    if (cons > 0)
        printf("consumed  %10llu msgs  %10.0f msgs/s  %8.2f MB/s\n", (unsigned long long)cons,
               cons / csecs, (double)cons * b->size / csecs / 1e6);
    bench_raft_print(&raft[0], &raft[1], secs, stdout);
    bench_errors_print(&b->errors, stdout);
}

static int run(bench_t *b, int mode)
{
    unsigned n = b->conns * ((mode & 1) + (mode >> 1 & 1)), connected = 0;
    unsigned nt = b->threads && b->threads < n ? b->threads : n;
    worker_t *w = calloc(n, sizeof *w);
    worker_t **order = calloc(n, sizeof *order);
    group_t *g = calloc(nt, sizeof *g);
    mqhub_client_opts_t o = {.window = b->window, .client_name = "mqhub-bench",
                             .tls_ca = b->ca, .token = b->token};
    char err[512];
    int rc = 0;
    atomic_store(&b->producers_left, (mode & 1) ? (int)b->conns : 0);
    for (unsigned i = 0; i < n && rc == 0; i++, connected++) {
        w[i].b = b;
        w[i].producer = (mode & 1) && i < b->conns;
        if (mqhub_client_connect(&w[i].c, b->server, &o, err, sizeof err) != 0 ||
            build_args(&w[i]) != 0) {
            fprintf(stderr, "mqhub-bench: connect %s: %s\n", b->server, err);
            rc = 3;
        }
    }
    bench_raft_t raft[2] = {{0}};
    if (rc == 0)
        bench_raft_sample(w[0].c, &raft[0]);
    b->t_start = now_us() / 1000;
    b->t_end = b->t_start + (uint64_t)(b->duration * 1000);
    atomic_store(&b->threads_left, rc == 0 ? (int)nt : 0);
    for (unsigned t = 0, k = 0; rc == 0 && t < nt; t++) { /* worker i goes to thread i % nt */
        g[t].w = order + k;
        for (unsigned i = t; i < n; i += nt)
            order[k++] = &w[i];
        g[t].n = (unsigned)(order + k - g[t].w);
        pthread_create(&g[t].tid, NULL, drive, &g[t]);
    }
    /* a progress line a second on stderr while the threads run */
    bench_meter_t meters[] = {{"produced", &b->produced, 0}, {"consumed", &b->consumed, 0}};
    bench_progress_run(&b->threads_left, bench_progress_wanted(b->quiet, b->progress),
                       b->t_start, meters, 2, &b->errors);
    for (unsigned t = 0; rc == 0 && t < nt; t++)
        pthread_join(g[t].tid, NULL);
    double secs = (double)(now_us() / 1000 - b->t_start) / 1e3;
    if (rc == 0) {
        bench_raft_sample(w[0].c, &raft[1]);
        report(b, mode, w, n, secs > 0 ? secs : 1e-3, raft);
    }
    for (unsigned i = 0; i < connected; i++) {
        rc |= w[i].failed;
        mqhub_client_close(w[i].c);
        if (w[i].c)
            msgpack_zone_destroy(&w[i].zone);
        receipts_free(&w[i].receipts);
    }
    free(g);
    free(order);
    free(w);
    return rc;
}

int main(int argc, char **argv)
{
    bench_t b;
    int mode;
    if (topic_bench_wants(argc, argv)) /* publish / push: topic_bench.c */
        return topic_bench_main(argc, argv);
    if (parse(&b, argc, argv, &mode) != 0) {
        usage(stderr);
        return 2;
    }
    b.body = malloc(b.size ? b.size : 1);
    memset(b.body, 'x', b.size);
    int rc = prepare_queue(&b);
    if (rc == 0)
        rc = run(&b, mode);
    free(b.body);
    return rc;
}
