/* cmq_bench.c: mqhub-cmq-bench, a load generator for the CMQ HTTP API
 * (transports/cmq, docs/cmq.md) over keep-alive HTTP/1.1 with libcurl.
 *
 *   mqhub-cmq-bench send|batch-send|receive-delete --url URL --secret-id ID
 *       --secret-key KEY [--queue Q] [--connections N] [--size B]
 *       [--duration S] [--sha256] [--json]
 *
 * send: SendMessage, one message a request. batch-send: BatchSendMessage of
 * 16. receive-delete: BatchReceiveMessage (numOfMsg 16, no wait), then
 * BatchDeleteMessage of the receipts it got, until --duration or the queue
 * stays empty. Each connection is one thread with one curl easy handle, so
 * its TCP connection is reused (keep-alive); each request is a POST form
 * signed as CMQ's SDKs sign it (sign_request(), with the transport's own
 * sign.c), with a new Nonce (a random start per thread, then +1: the server
 * refuses a replayed request) and the current Timestamp. Prints requests/s, messages/s and the latency of a
 * request; a reply whose code is not 0 counts as an error (the first one is
 * printed). Start at main(), then worker() and call().
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "cmq.h"

#define BATCH 16           /* CMQ's batch limit */
#define PARAMS_MAX (8 + BATCH)
#define EMPTY_STOP 3       /* receive-delete: empty answers in a row that end it */
#define LAT_MAX (1u << 20) /* latencies kept per thread (8 MiB) */

enum mode { SEND, BATCH_SEND, RECEIVE_DELETE };

typedef struct cfg {
    enum mode mode;
    const char *url, *secret_id, *secret_key, *queue;
    char host[256], path[256]; /* of the URL: what the server signs */
    unsigned conns, size;
    double duration;
    bool sha256, json;
    char *body;
    atomic_uint_fast64_t requests, messages, errors;
    atomic_flag error_printed;
} cfg_t;

typedef struct param {
    char key[24];
    const char *val; /* not owned: lives until the request is sent */
} param_t;

typedef struct worker {
    cfg_t *c;
    pthread_t tid;
    CURL *curl;
    unsigned long long nonce;
    char *reply; /* the last reply's body */
    size_t reply_len, reply_cap;
    double *lat; /* ms per request */
    size_t n_lat;
} worker_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ signing */

/* Append @s to the growing string *@b (length *@len, room *@cap); -1 on
 * allocation failure. */
static int append(char **b, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *len + n + 1)
            c *= 2;
        char *nb = realloc(*b, c);
        if (nb == NULL)
            return -1;
        *b = nb;
        *cap = c;
    }
    memcpy(*b + *len, s, n);
    *len += n;
    (*b)[*len] = '\0';
    return 0;
}

/* CMQ's signature of @p as the server checks it (transports/cmq/sign.c,
 * docs/cmq.md "Requests and signatures"): base64(HMAC(key, "POST" + host +
 * path + "?" + the params sorted, k=v&...)). 0, or -1. */
static int sign_request(const cfg_t *c, const param_t *p, size_t n, char out[64])
{
    cmq_params_t ps = {0};
    char *s = NULL;
    size_t len = 0;
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = cmq_params_add(&ps, p[i].key, strlen(p[i].key), p[i].val, strlen(p[i].val));
    if (rc == 0 && (s = cmq_sign_string(&ps, "POST", c->host, c->path, false, &len)) == NULL)
        rc = -1;
    if (rc == 0)
        rc = cmq_sign_hmac(c->secret_key, c->sha256, s, len, out);
    free(s);
    cmq_params_free(&ps);
    return rc;
}

/* ------------------------------------------------------------- requests */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    worker_t *w = arg;
    size_t len = w->reply_len;
    if (append(&w->reply, &len, &w->reply_cap, data, size * n) != 0)
        return 0;
    w->reply_len = len;
    return size * n;
}

static void report_error(worker_t *w, const char *action, const char *what)
{
    atomic_fetch_add(&w->c->errors, 1);
    if (!atomic_flag_test_and_set(&w->c->error_printed))
        fprintf(stderr, "mqhub-cmq-bench: %s: %s\n", action, what);
}

/* POST @action with @p (@n params; room for PARAMS_MAX) plus the common
 * ones, signed. The reply's JSON (the caller decrefs it) when its code is 0
 * or @ok_code; NULL after counting an error. */
static json_t *call(worker_t *w, const char *action, param_t *p, size_t n, int ok_code)
{
    cfg_t *c = w->c;
    char nonce[24], ts[24], sig[64];
    char *form = NULL;
    size_t len = 0, cap = 0;
    long http = 0;
    int rc = 0;

    snprintf(nonce, sizeof nonce, "%llu", ++w->nonce);
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    p[n++] = (param_t){"Action", action};
    p[n++] = (param_t){"Nonce", nonce};
    p[n++] = (param_t){"Timestamp", ts};
    p[n++] = (param_t){"SecretId", c->secret_id};
    if (c->sha256)
        p[n++] = (param_t){"SignatureMethod", "HmacSHA256"};
    if (sign_request(c, p, n, sig) != 0) {
        report_error(w, action, "signing failed");
        return NULL;
    }
    p[n++] = (param_t){"Signature", sig};
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *v = curl_easy_escape(w->curl, p[i].val, 0);
        rc = v == NULL || (i ? append(&form, &len, &cap, "&", 1) : 0) |
                              append(&form, &len, &cap, p[i].key, strlen(p[i].key)) |
                              append(&form, &len, &cap, "=", 1) | append(&form, &len, &cap, v, strlen(v));
        curl_free(v);
    }
    w->reply_len = 0;
    double t0 = now_s();
    CURLcode cc = CURLE_OUT_OF_MEMORY;
    if (rc == 0) {
        curl_easy_setopt(w->curl, CURLOPT_POSTFIELDS, form);
        curl_easy_setopt(w->curl, CURLOPT_POSTFIELDSIZE, (long)len);
        cc = curl_easy_perform(w->curl);
    }
    if (w->n_lat < LAT_MAX)
        w->lat[w->n_lat++] = (now_s() - t0) * 1e3;
    free(form);
    atomic_fetch_add(&c->requests, 1);
    curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &http);
    if (cc != CURLE_OK || http != 200) {
        char why[160];
        snprintf(why, sizeof why, "%s (HTTP %ld)",
                 cc != CURLE_OK ? curl_easy_strerror(cc) : "not 200", http);
        report_error(w, action, why);
        return NULL;
    }
    json_t *j = json_loadb(w->reply ? w->reply : "", w->reply_len, 0, NULL);
    json_int_t code = json_integer_value(json_object_get(j, "code"));
    if (j == NULL || (code != 0 && code != ok_code)) {
        report_error(w, action, w->reply_len ? w->reply : "empty reply");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* One round of the mode: the messages it moved, or -1 to stop (empty). */
static int round_send(worker_t *w)
{
    param_t p[PARAMS_MAX];
    size_t n = 0;
    bool batch = w->c->mode == BATCH_SEND;

    p[n++] = (param_t){"queueName", w->c->queue};
    if (!batch)
        p[n++] = (param_t){"msgBody", w->c->body};
    for (unsigned i = 0; batch && i < BATCH; i++) {
        p[n] = (param_t){"", w->c->body};
        snprintf(p[n++].key, sizeof p[0].key, "msgBody.%u", i);
    }
    json_t *j = call(w, batch ? "BatchSendMessage" : "SendMessage", p, n, 0);
    json_decref(j);
    return j ? (batch ? BATCH : 1) : 0;
}

static int round_receive_delete(worker_t *w)
{
    param_t p[PARAMS_MAX];
    size_t n = 0;
    json_t *got, *msgs;

    p[n++] = (param_t){"queueName", w->c->queue};
    p[n++] = (param_t){"numOfMsg", "16"};
    p[n++] = (param_t){"pollingWaitSeconds", "0"};
    if ((got = call(w, "BatchReceiveMessage", p, n, 7000)) == NULL)
        return 0;
    msgs = json_object_get(got, "msgInfoList");
    size_t m = json_array_size(msgs);
    if (m == 0) {
        json_decref(got);
        return -1;
    }
    n = 0;
    p[n++] = (param_t){"queueName", w->c->queue};
    for (size_t i = 0; i < m && i < BATCH; i++) {
        p[n] = (param_t){"", json_string_value(
                                 json_object_get(json_array_get(msgs, i), "receiptHandle"))};
        snprintf(p[n].key, sizeof p[n].key, "receiptHandle.%zu", i);
        n += p[n].val != NULL;
    }
    json_t *del = call(w, "BatchDeleteMessage", p, n, 0);
    json_decref(del);
    json_decref(got);
    return del ? (int)m : 0;
}

static void *worker(void *arg)
{
    worker_t *w = arg;
    double end = now_s() + w->c->duration;
    unsigned empty = 0;

    while (now_s() < end && empty < EMPTY_STOP) {
        int moved = w->c->mode == RECEIVE_DELETE ? round_receive_delete(w) : round_send(w);
        empty = moved < 0 ? empty + 1 : 0;
        if (moved > 0)
            atomic_fetch_add(&w->c->messages, (uint64_t)moved);
    }
    return NULL;
}

/* --------------------------------------------------------------- main */

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(cfg_t *c, worker_t *w, double secs)
{
    static const char *const names[] = {"send", "batch-send", "receive-delete"};
    size_t n = 0;
    for (unsigned i = 0; i < c->conns; i++)
        n += w[i].n_lat;
    double *all = malloc((n ? n : 1) * sizeof *all), p50 = 0, p99 = 0;
    n = 0;
    for (unsigned i = 0; i < c->conns; i++) {
        memcpy(all + n, w[i].lat, w[i].n_lat * sizeof *all);
        n += w[i].n_lat;
    }
    qsort(all, n, sizeof *all, by_double);
    if (n) {
        p50 = all[n / 2];
        p99 = all[(size_t)((double)(n - 1) * 0.99)];
    }
    free(all);
    double req = (double)atomic_load(&c->requests), msgs = (double)atomic_load(&c->messages);
    unsigned long long errs = (unsigned long long)atomic_load(&c->errors);
    if (c->json)
        printf("{\"mode\":\"%s\",\"seconds\":%.3f,\"connections\":%u,\"size\":%u,"
               "\"requests\":%.0f,\"requests_per_s\":%.1f,\"messages\":%.0f,"
               "\"msgs_per_s\":%.1f,\"latency_p50_ms\":%.3f,\"latency_p99_ms\":%.3f,"
               "\"errors\":%llu}\n",
               names[c->mode], secs, c->conns, c->size, req, req / secs, msgs, msgs / secs, p50,
               p99, errs);
    else
        printf("%s: %.2f s, %u connections, %u-byte bodies: %.0f requests/s, %.0f msgs/s, "
               "request p50 %.3f ms p99 %.3f ms, errors %llu\n",
               names[c->mode], secs, c->conns, c->size, req / secs, msgs / secs, p50, p99, errs);
}

static void usage(FILE *f)
{
    fputs("usage: mqhub-cmq-bench send|batch-send|receive-delete --url URL --secret-id ID\n"
          "                       --secret-key KEY [options]\n"
          "  --url URL          the CMQ endpoint, http://127.0.0.1:6290/v2/index.php\n"
          "  --queue Q          queue (default bench; must exist)\n"
          "  --connections N    keep-alive connections, one thread each (default 4)\n"
          "  --size B           body bytes (default 1024)\n"
          "  --duration S       at most S seconds (default 5)\n"
          "  --sha256           sign with HmacSHA256 (default HmacSHA1)\n"
          "  --json             print one JSON object\n", f);
}

static int parse(cfg_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", 1, NULL, 'u'},      {"secret-id", 1, NULL, 'i'}, {"secret-key", 1, NULL, 'k'},
        {"queue", 1, NULL, 'q'},    {"connections", 1, NULL, 'c'}, {"size", 1, NULL, 'z'},
        {"duration", 1, NULL, 'd'}, {"sha256", 0, NULL, 's'},    {"json", 0, NULL, 'j'},
        {"help", 0, NULL, 'h'},     {NULL, 0, NULL, 0},
    };
    int o;
    c->queue = "bench";
    c->conns = 4;
    c->size = 1024;
    c->duration = 5;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'u': c->url = optarg; break;
        case 'i': c->secret_id = optarg; break;
        case 'k': c->secret_key = optarg; break;
        case 'q': c->queue = optarg; break;
        case 'c': c->conns = (unsigned)atoi(optarg); break;
        case 'z': c->size = (unsigned)atoi(optarg); break;
        case 'd': c->duration = atof(optarg); break;
        case 's': c->sha256 = true; break;
        case 'j': c->json = true; break;
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
    }
    if (optind != argc - 1 || !c->url || !c->secret_id || !c->secret_key || c->conns < 1 ||
        c->conns > 256 || c->size < 1 || c->size > 65536 || c->duration <= 0 ||
        c->duration > 3600)
        return -1;
    const char *m = argv[optind];
    c->mode = !strcmp(m, "send") ? SEND : !strcmp(m, "batch-send") ? BATCH_SEND
              : !strcmp(m, "receive-delete") ? RECEIVE_DELETE : (enum mode)-1;
    /* "http://host:port/path": what the server's signature check sees. */
    const char *h = strncmp(c->url, "http://", 7) == 0 ? c->url + 7 : NULL;
    const char *slash = h ? strchr(h, '/') : NULL;
    if ((int)c->mode < 0 || !h || !slash || (size_t)(slash - h) >= sizeof c->host)
        return -1;
    snprintf(c->host, sizeof c->host, "%.*s", (int)(slash - h), h);
    snprintf(c->path, sizeof c->path, "%s", slash);
    return 0;
}

int main(int argc, char **argv)
{
    cfg_t c = {.error_printed = ATOMIC_FLAG_INIT};
    if (parse(&c, argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c.body = malloc(c.size + 1);
    for (unsigned i = 0; i < c.size; i++) /* text: CMQ bodies are strings */
        c.body[i] = (char)('a' + i % 26);
    c.body[c.size] = '\0';
    worker_t *w = calloc(c.conns, sizeof *w);
    int rc = 0;
    for (unsigned i = 0; i < c.conns && rc == 0; i++) {
        w[i].c = &c;
        w[i].curl = curl_easy_init();
        w[i].lat = malloc(LAT_MAX * sizeof *w[i].lat);
        if (!w[i].curl || !w[i].lat || RAND_bytes((unsigned char *)&w[i].nonce,
                                                  sizeof w[i].nonce) != 1) {
            rc = 1;
            break;
        }
        w[i].nonce = (w[i].nonce >> 2) + 1; /* room to count up, never 0 */
        curl_easy_setopt(w[i].curl, CURLOPT_URL, c.url);
        curl_easy_setopt(w[i].curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(w[i].curl, CURLOPT_WRITEDATA, &w[i]);
        curl_easy_setopt(w[i].curl, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(w[i].curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(w[i].curl, CURLOPT_TIMEOUT, 30L);
    }
    double t0 = now_s();
    for (unsigned i = 0; i < c.conns && rc == 0; i++)
        pthread_create(&w[i].tid, NULL, worker, &w[i]);
    for (unsigned i = 0; i < c.conns && rc == 0; i++)
        pthread_join(w[i].tid, NULL);
    if (rc == 0)
        report(&c, w, now_s() - t0);
    for (unsigned i = 0; i < c.conns; i++) {
        if (w[i].curl)
            curl_easy_cleanup(w[i].curl);
        free(w[i].lat);
        free(w[i].reply);
    }
    free(w);
    free(c.body);
    curl_global_cleanup();
    return rc != 0 ? 1 : atomic_load(&c.errors) ? 4 : 0;
}
