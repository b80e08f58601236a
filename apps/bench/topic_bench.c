/* topic_bench.c: the topic modes of mqhub-bench (docs/benchmarks.md "Topics").
 *
 *   mqhub-bench publish [--subs N] [--filter] ...   publish with fan-out to N
 *       queue subscriptions (with --filter each has a tag filter and half of
 *       them match every message)
 *   mqhub-bench push [--credit N] ...               publish, and consume the
 *       same topic through one push subscription (subscribe, ack)
 *   common: [--server H:P] [--ca FILE] [--token T] [--connections N] [--size B]
 *       [--batch N] [--window N] [--duration S] [--topic T] [--json] [--quiet | --progress]
 *   (`--mode publish|push` is accepted as well as the positional word)
 *
 * One thread per connection, pipelined like the queue modes of bench.c:
 * producers keep --window publish (or publish_batch) requests in flight;
 * push consumers subscribe with --credit and acknowledge what arrived after
 * every poll. As in the queue modes (bench_common.c): every failed request
 * or batch item is counted by phase (publish, push) and code, the main
 * thread prints a progress line a second on stderr when it is a terminal
 * (--quiet: never, --progress: always), and --json has errors_by_code and
 * phases. Start at topic_bench_main(), then publisher() and pusher().
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "bench_common.h"
#include "clock.h"
#include "mqhub/client.h"
#include "topic_bench.h"

#define IDLE_STOP_MS 2000
enum { PHASE_PUBLISH, PHASE_PUSH };

typedef struct tbench {
    const char *server, *topic;
    const char *ca;    /* TLS: the CA of the server's certificate, or NULL */
    const char *token; /* hello's token (env MQHUB_TOKEN), or NULL */
    unsigned conns, size, batch, window, subs, credit;
    bool filter, push, json;
    bool quiet, progress; /* progress lines: off / on even when not a terminal */
    double duration;
    uint64_t t0, t_end; /* ms */
    atomic_uint_fast64_t t_pub_done, t_last_ack; /* ms, for the rates */
    atomic_uint_fast64_t published, delivered, consumed;
    bench_errors_t errors; /* by phase and code */
    atomic_int publishers_left, running;
    char *body;
} tbench_t;

typedef struct tworker {
    tbench_t *b;
    bool publisher; /* else a push consumer */
    pthread_t tid;
    mqhub_client_t *c;
    unsigned inflight;
    msgpack_zone zone;
    msgpack_object args; /* publish_batch arguments, built once */
    uint64_t *acks;
    size_t n_acks, cap_acks;
    uint64_t last_msg_ms;
} tworker_t;

static const char *const even_tag[] = {"even"};
static const char *const odd_tag[] = {"odd"};

/* ------------------------------------------------------------ publishers */

static int build_batch(tworker_t *w)
{
    tbench_t *b = w->b;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t off = 0;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "topic", 5);
    msgpack_pack_str_with_body(&pk, b->topic, strlen(b->topic));
    msgpack_pack_str_with_body(&pk, "msgs", 4);
    msgpack_pack_array(&pk, b->batch);
    for (unsigned i = 0; i < b->batch; i++) {
        msgpack_pack_map(&pk, b->filter ? 2 : 1);
        msgpack_pack_str_with_body(&pk, "body", 4);
        msgpack_pack_bin_with_body(&pk, b->body, b->size);
        if (b->filter) {
            msgpack_pack_str_with_body(&pk, "tags", 4);
            msgpack_pack_array(&pk, 1);
            msgpack_pack_str_with_body(&pk, "even", 4);
        }
    }
    msgpack_zone_init(&w->zone, sb.size + 4096);
    char *copy = msgpack_zone_malloc(&w->zone, sb.size);
    memcpy(copy, sb.data, sb.size);
    int rc = msgpack_unpack(copy, sb.size, &off, &w->zone, &w->args);
    msgpack_sbuffer_destroy(&sb);
    return rc == MSGPACK_UNPACK_SUCCESS ? 0 : -1;
}

static void on_publish(void *arg, const mqhub_publish_result_t *res)
{
    tworker_t *w = arg;
    w->inflight--;
    if (res->status != 0) {
        bench_errors_count(&w->b->errors, PHASE_PUBLISH, res->status);
        return;
    }
    atomic_fetch_add(&w->b->published, 1);
    atomic_fetch_add(&w->b->delivered, res->delivered);
}

static void on_publish_batch(void *arg, int status, const msgpack_object *resp,
                             const char *errmsg)
{
    tworker_t *w = arg;
    const msgpack_object *res = status == 0 ? mqhub_map_get(resp, "results") : NULL;
    w->inflight--;
    if (status != 0 || !res || res->type != MSGPACK_OBJECT_ARRAY) {
        bench_errors_count(&w->b->errors, PHASE_PUBLISH, status ? status : MQHUB_EINTERNAL);
        return;
    }
    /* items with a code are counted by it; the others were published */
    atomic_fetch_add(&w->b->published,
                     bench_errors_count_items(&w->b->errors, PHASE_PUBLISH, resp));
    for (uint32_t i = 0; i < res->via.array.size; i++) {
        const msgpack_object *d = mqhub_map_get(&res->via.array.ptr[i], "delivered");
        if (d && d->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            atomic_fetch_add(&w->b->delivered, d->via.u64);
    }
}

static int submit_publish(tworker_t *w)
{
    tbench_t *b = w->b;
    mqhub_publish_opts_t o = {.tags = even_tag, .n_tags = 1};
    if (b->batch > 1)
        return mqhub_client_call_async(w->c, "publish_batch", &w->args, on_publish_batch, w);
    return mqhub_client_publish_async(w->c, b->topic, b->body, b->size,
                                      b->filter ? &o : NULL, on_publish, w);
}

static void *publisher(void *arg)
{
    tworker_t *w = arg;
    bool more = true;
    int rc = 0;
    while (more || w->inflight > 0) {
        while (more && w->inflight < w->b->window) {
            more = clock_mono_ms() < w->b->t_end;
            if (more && (rc = submit_publish(w)) != 0) {
                fprintf(stderr, "mqhub-bench: publish: %s\n", mqhub_client_errmsg(w->c));
                bench_errors_count(&w->b->errors, PHASE_PUBLISH, rc);
                more = false;
            } else if (more) {
                w->inflight++;
            }
        }
        if (w->inflight > 0 && mqhub_client_poll(w->c, 100) < 0)
            break;
    }
    atomic_store(&w->b->t_pub_done, clock_mono_ms()); /* the last one to finish wins */
    atomic_fetch_sub(&w->b->publishers_left, 1);
    return NULL;
}

/* -------------------------------------------------------- push consumers */

static void on_push(void *arg, const mqhub_push_t *p)
{
    tworker_t *w = arg;
    if (p->n == 0)
        return;
    if (w->n_acks + p->n > w->cap_acks) {
        size_t cap = (w->n_acks + p->n) * 2;
        uint64_t *a = realloc(w->acks, cap * sizeof *a);
        if (!a)
            return;
        w->acks = a;
        w->cap_acks = cap;
    }
    for (size_t i = 0; i < p->n; i++)
        w->acks[w->n_acks++] = p->msgs[i].seq;
    w->last_msg_ms = clock_mono_ms();
}

static void on_ack(void *arg, int status, const msgpack_object *resp, const char *errmsg)
{
    tworker_t *w = arg;
    w->inflight--;
    if (status != 0) {
        bench_errors_count(&w->b->errors, PHASE_PUSH, status);
        return;
    }
    atomic_fetch_add(&w->b->consumed, bench_errors_count_items(&w->b->errors, PHASE_PUSH, resp));
    atomic_store(&w->b->t_last_ack, clock_mono_ms());
}

static void *pusher(void *arg)
{
    tworker_t *w = arg;
    tbench_t *b = w->b;
    mqhub_client_on_push(w->c, on_push, w);
    int rc = mqhub_client_subscribe(w->c, b->topic, "push", b->credit);
    if (rc != 0) {
        fprintf(stderr, "mqhub-bench: subscribe: %s\n", mqhub_client_errmsg(w->c));
        bench_errors_count(&b->errors, PHASE_PUSH, rc);
        return NULL;
    }
    w->last_msg_ms = clock_mono_ms();
    for (;;) {
        if (mqhub_client_poll(w->c, 50) < 0)
            break;
        for (size_t off = 0; off < w->n_acks; off += MQHUB_BATCH_MAX) {
            size_t n = w->n_acks - off < MQHUB_BATCH_MAX ? w->n_acks - off : MQHUB_BATCH_MAX;
            rc = mqhub_client_ack_async(w->c, b->topic, "push", w->acks + off, n, on_ack, w);
            if (rc == 0)
                w->inflight++;
            else
                bench_errors_count(&b->errors, PHASE_PUSH, rc);
        }
        w->n_acks = 0;
        if (atomic_load(&b->publishers_left) == 0 && w->inflight == 0 &&
            clock_mono_ms() - w->last_msg_ms > IDLE_STOP_MS)
            break;
    }
    mqhub_client_flush(w->c, 5000);
    mqhub_client_on_push(w->c, NULL, NULL);
    return NULL;
}

/* ----------------------------------------------------------------- setup */

static int prepare(tbench_t *b)
{
    mqhub_client_t *c;
    char err[512], name[MQHUB_NAME_MAX + 1];
    mqhub_topic_attrs_t ta = {.set = MQHUB_TOPIC_MAX_MSG_SIZE | MQHUB_TOPIC_RETENTION,
                              .max_msg_size = b->size > 65536 ? b->size : 65536,
                              .retention = 600};
    mqhub_client_opts_t co = {.tls_ca = b->ca, .token = b->token};
    int rc = mqhub_client_connect(&c, b->server, &co, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "mqhub-bench: %s\nis mqhubd running? start it with `make run`\n", err);
        return 3;
    }
    mqhub_client_topic_delete(c, b->topic); /* a fresh topic: no old backlog */
    rc = mqhub_client_topic_create(c, b->topic, &ta);
    for (unsigned i = 0; rc == 0 && i < b->subs; i++) {
        mqhub_sub_opts_t o = {.queue = name};
        if (b->filter) {
            o.filter_tags = i % 2 == 0 ? even_tag : odd_tag;
            o.n_filter_tags = 1;
        }
        snprintf(name, sizeof name, "%s-q%u", b->topic, i);
        mqhub_client_queue_delete(c, name);
        rc = mqhub_client_queue_create(c, name, NULL);
        if (rc == 0)
            rc = mqhub_client_sub_create(c, b->topic, name, &o);
    }
    if (rc == 0 && b->push) {
        mqhub_sub_opts_t o = {.retry = "backoff", .interval_ms = 30000};
        rc = mqhub_client_sub_create(c, b->topic, "push", &o);
    }
    if (rc != 0)
        fprintf(stderr, "mqhub-bench: preparing topic %s: %s\n", b->topic,
                mqhub_client_errmsg(c));
    mqhub_client_close(c);
    return rc != 0 ? 1 : 0;
}

/* Rates: publishes over the publishing time, pushes until the last ack (the
 * consumers' idle wait at the end is not counted). */
static void report(tbench_t *b)
{
    double pub = (double)atomic_load(&b->published), del = (double)atomic_load(&b->delivered),
           con = (double)atomic_load(&b->consumed);
    uint64_t last = atomic_load(&b->t_last_ack);
    /* at least a millisecond: a rate over 0 s would be infinite (and not JSON) */
    double secs = (double)(atomic_load(&b->t_pub_done) - b->t0) / 1e3;
    secs = secs > 1e-3 ? secs : 1e-3;
    double csecs = last > b->t0 ? (double)(last - b->t0) / 1e3 : secs;
    if (b->json) {
        /* phases as in the queue modes: publish, and push (acked) */
        json_t *phases = json_object();
        json_t *pj = bench_phase_json(&b->errors, PHASE_PUBLISH, (uint64_t)pub, secs, b->size);
        json_object_set_new(pj, "delivered", json_integer((json_int_t)del));
        json_object_set_new(phases, "publish", pj);
        if (b->push)
            json_object_set_new(phases, "push", bench_phase_json(&b->errors, PHASE_PUSH,
                                                                 (uint64_t)con, csecs, b->size));
        json_t *j = json_pack("{s:s,s:f,s:I,s:f,s:f,s:I,s:I,s:f,s:I,s:o,s:o,s:i,s:i,s:i,s:i,"
                              "s:b}",
                              "mode", b->push ? "push" : "publish", "seconds", secs,
                              "published", (json_int_t)pub, "publish_msgs_per_s", pub / secs,
                              "publish_mb_per_s", pub * b->size / secs / 1e6,
                              "delivered", (json_int_t)del, "consumed", (json_int_t)con,
                              "consume_msgs_per_s", con / csecs, "errors",
                              (json_int_t)bench_errors_total(&b->errors, -1), "errors_by_code",
                              bench_errors_json(&b->errors, -1), "phases", phases, "subs",
                              (int)b->subs, "connections", (int)b->conns, "size", (int)b->size,
                              "batch", (int)b->batch, "filter", b->filter);
        json_dumpf(j, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(j);
        return;
    }
    printf("%.2f s, %u connections, %u-byte bodies, batch %u, window %u, %u queue subs%s\n",
           secs, b->conns, b->size, b->batch, b->window, b->subs,
           b->filter ? " (tag filters, half match)" : "");
    printf("published %10.0f msgs  %10.0f msgs/s  %8.2f MB/s in   fan-out %.2f per msg\n", pub,
           pub / secs, pub * b->size / secs / 1e6, pub > 0 ? del / pub : 0);
    if (b->push)
        printf("pushed    %10.0f msgs  %10.0f msgs/s acked\n", con, con / csecs);
    bench_errors_print(&b->errors, stdout);
}

/* A worker thread: publisher() or pusher(); counts itself out of
 * b->running (which ends the progress lines) when done. */
static void *worker_main(void *arg)
{
    tworker_t *w = arg;
    if (w->publisher)
        publisher(w);
    else
        pusher(w);
    atomic_fetch_sub(&w->b->running, 1);
    return NULL;
}

static int run(tbench_t *b)
{
    unsigned n = b->conns * (b->push ? 2 : 1), started = 0;
    tworker_t *w = calloc(n, sizeof *w);
    mqhub_client_opts_t o = {.window = b->window * 2, .client_name = "mqhub-bench",
                             .tls_ca = b->ca, .token = b->token};
    char err[512];
    int rc = 0;
    b->t0 = clock_mono_ms();
    b->t_end = b->t0 + (uint64_t)(b->duration * 1000);
    atomic_store(&b->publishers_left, (int)b->conns);
    atomic_store(&b->running, (int)n);
    for (unsigned i = 0; i < n && rc == 0; i++) {
        w[i].b = b;
        w[i].publisher = i < b->conns;
        if (mqhub_client_connect(&w[i].c, b->server, &o, err, sizeof err) != 0 ||
            (w[i].publisher && b->batch > 1 && build_batch(&w[i]) != 0)) {
            fprintf(stderr, "mqhub-bench: connect %s: %s\n", b->server, err);
            rc = 3;
            break;
        }
        pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
        started++;
    }
    atomic_fetch_sub(&b->running, (int)(n - started)); /* those never started */
    bench_meter_t meters[] = {{"published", &b->published, 0}, {"pushed", &b->consumed, 0}};
    bench_progress_run(&b->running, bench_progress_wanted(b->quiet, b->progress), b->t0,
                       meters, b->push ? 2 : 1, &b->errors);
    for (unsigned i = 0; i < started; i++)
        pthread_join(w[i].tid, NULL);
    if (rc == 0)
        report(b);
    for (unsigned i = 0; i < n; i++) {
        mqhub_client_close(w[i].c);
        if (b->batch > 1 && i < b->conns && w[i].c)
            msgpack_zone_destroy(&w[i].zone);
        free(w[i].acks);
    }
    free(w);
    return rc;
}

static void usage(FILE *f)
{
    fputs("usage: mqhub-bench publish|push [options]\n"
          "  --subs N           queue subscriptions on the topic (default 4)\n"
          "  --filter           tag filters on the subscriptions; half of them match\n"
          "  --credit N         push: credit window per consumer (default 1000)\n"
          "  --topic T          topic (default bench-topic; recreated)\n"
          "  --server H:P  --ca FILE  --token T  --connections N  --size B  --batch N\n"
          "  --window N  --duration S  --json  --quiet  --progress   as for produce/consume\n",
          f);
}

static int parse(tbench_t *b, int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", 1, NULL, 's'}, {"connections", 1, NULL, 'c'}, {"size", 1, NULL, 'z'},
        {"batch", 1, NULL, 'b'},  {"window", 1, NULL, 'w'},      {"duration", 1, NULL, 'd'},
        {"subs", 1, NULL, 'S'},   {"filter", 0, NULL, 'f'},      {"credit", 1, NULL, 'C'},
        {"topic", 1, NULL, 't'},  {"json", 0, NULL, 'j'},        {"mode", 1, NULL, 'M'},
        {"quiet", 0, NULL, 'Q'},  {"progress", 0, NULL, 'P'},    {"help", 0, NULL, 'h'},
        {"ca", 1, NULL, 'a'},     {"token", 1, NULL, 'k'},       {NULL, 0, NULL, 0},
    };
    const char *env = getenv("MQHUB_SERVER"), *token = getenv("MQHUB_TOKEN"), *mode = NULL;
    int o;
    *b = (tbench_t){.server = env && *env ? env : MQHUB_DEFAULT_TCP_ADDRESS, .topic = "bench-topic",
                    .conns = 4, .size = 1024, .batch = 1, .window = 64, .duration = 5,
                    .subs = 4, .credit = 1000, .token = token && *token ? token : NULL};
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 's': b->server = optarg; break;
        case 'a': b->ca = optarg; break;
        case 'k': b->token = optarg; break;
        case 'c': b->conns = (unsigned)atoi(optarg); break;
        case 'z': b->size = (unsigned)atoi(optarg); break;
        case 'b': b->batch = (unsigned)atoi(optarg); break;
        case 'w': b->window = (unsigned)atoi(optarg); break;
        case 'd': b->duration = atof(optarg); break;
        case 'S': b->subs = (unsigned)atoi(optarg); break;
        case 'f': b->filter = true; break;
        case 'C': b->credit = (unsigned)atoi(optarg); break;
        case 't': b->topic = optarg; break;
        case 'j': b->json = true; break;
        case 'Q': b->quiet = true; break;
        case 'P': b->progress = true; break;
        case 'M': mode = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
    }
    if (!mode && optind == argc - 1)
        mode = argv[optind++];
    if (!mode || optind != argc || b->conns < 1 || b->conns > 256 || b->batch < 1 ||
        b->batch > MQHUB_BATCH_MAX || b->window < 1 || b->duration <= 0 ||
        b->duration > 3600 || b->subs > 1000 || b->credit < 1)
        return -1;
    b->push = strcmp(mode, "push") == 0;
    return b->push || strcmp(mode, "publish") == 0 ? 0 : -1;
}

bool topic_bench_wants(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "publish") || !strcmp(argv[i], "push") ||
            !strcmp(argv[i], "--mode"))
            return true;
    }
    return false;
}

int topic_bench_main(int argc, char **argv)
{
    tbench_t b;
    if (parse(&b, argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    b.body = malloc(b.size);
    if (!b.body)
        return 1;
    memset(b.body, 'x', b.size);
    int rc = prepare(&b);
    if (rc == 0)
        rc = run(&b);
    free(b.body);
    return rc;
}
