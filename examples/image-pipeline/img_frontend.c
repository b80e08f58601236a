/* img_frontend.c: a front end of the image pipeline (examples/image-pipeline).
 *
 *   img_frontend --server H:P --name F [--count N] [--poison K] [--deadline S]
 *                [--grace S] [--misbehave]
 *
 * Creates its reply queue `img-replies-F`, puts N resize requests ("resize
 * photo-F-i.jpg 640x480", attrs request=F-i, reply_to=img-replies-F, dedup id
 * F-i) and K poison requests on `img-requests`, then collects the answers from
 * its reply queue until every request is answered (plus --grace seconds to
 * catch a late duplicate) or --deadline passes. It prints how many requests
 * were answered once, twice or never, which worker answered how many, and the
 * requests answered only after a retry (receive_count > 1); answers naming a
 * request it never made (forged) are counted and ignored. --misbehave also
 * replays a request with its dedup id and sends one over the size limit
 * (frontend_misbehave). Exit 0 when every request was answered exactly once,
 * 1 otherwise, 3 when the hub is unreachable. Start at main(): frontend_send(),
 * then frontend_collect().
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqhub/client.h"

#define FRONTEND_WORKERS_MAX 32

typedef struct frontend {
    const char *name;
    char reply_queue[MQHUB_NAME_MAX + 1];
    unsigned count;
    unsigned *answers; /* per request: answers received */
    struct {
        char name[64];
        unsigned n;
    } workers[FRONTEND_WORKERS_MAX];
    unsigned n_workers;
    unsigned forged; /* answers naming a request this front end never made */
} frontend_t;

static uint64_t frontend_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *frontend_attr(const mqhub_msg_t *m, const char *key)
{
    for (size_t i = 0; i < m->n_attrs; i++)
        if (strcmp(m->attrs[i].key, key) == 0)
            return m->attrs[i].value;
    return "";
}

static int frontend_send(mqhub_client_t *c, frontend_t *f, unsigned poison)
{
    for (unsigned i = 0; i < f->count + poison; i++) {
        char body[128], request[96];
        int poisoned = i >= f->count;
        snprintf(request, sizeof request, "%s-%s%u", f->name, poisoned ? "poison-" : "", i);
        if (poisoned)
            snprintf(body, sizeof body, "poison: \xff\xfe not an image request");
        else
            snprintf(body, sizeof body, "resize photo-%s.jpg 640x480", request);
        mqhub_attr_t attrs[] = {{"request", request}, {"reply_to", f->reply_queue}};
        mqhub_send_opts_t so = {.attrs = attrs, .n_attrs = poisoned ? 0 : 2, .dedup_id = request};
        int rc = mqhub_client_send(c, "img-requests", body, strlen(body), &so, NULL);
        if (rc != 0) {
            fprintf(stderr, "%s: send %s: %s: %s\n", f->name, request, mqhub_err_name(rc),
                    mqhub_client_errmsg(c));
            return rc;
        }
    }
    return 0;
}

/* What a careless or hostile client does: send request 0 again with its dedup
 * id (a retry after a lost answer: the hub must answer with the first msg_id
 * and store nothing) and send a 2 MiB request (over max_msg_size: TOO_LARGE).
 * 0 when the hub behaved so. */
static int frontend_misbehave(mqhub_client_t *c, frontend_t *f)
{
    char request[96], body[128];
    snprintf(request, sizeof request, "%s-0", f->name);
    snprintf(body, sizeof body, "resize photo-%s.jpg 640x480", request);
    mqhub_attr_t attrs[] = {{"request", request}, {"reply_to", f->reply_queue}};
    mqhub_send_opts_t so = {.attrs = attrs, .n_attrs = 2, .dedup_id = request};
    mqhub_send_result_t first, again;
    int rc1 = mqhub_client_send(c, "img-requests", body, strlen(body), &so, &first);
    int rc2 = mqhub_client_send(c, "img-requests", body, strlen(body), &so, &again);
    size_t big_len = 2u << 20;
    char *big = malloc(big_len);
    if (!big)
        return -1;
    memset(big, 'x', big_len);
    int rc3 = mqhub_client_send(c, "img-requests", big, big_len, NULL, NULL);
    free(big);
    int ok = rc1 == 0 && rc2 == 0 && strcmp(first.msg_id, again.msg_id) == 0 &&
             rc3 == MQHUB_ETOO_LARGE;
    printf("%s: replayed %s twice: msg_id %s both times; a 2 MiB request: %s\n", f->name,
           request, rc2 == 0 ? again.msg_id : "-", rc3 == 0 ? "accepted" : mqhub_err_name(rc3));
    return ok ? 0 : -1;
}

static void frontend_count_worker(frontend_t *f, const char *worker)
{
    for (unsigned i = 0; i < f->n_workers; i++) {
        if (strcmp(f->workers[i].name, worker) == 0) {
            f->workers[i].n++;
            return;
        }
    }
    if (f->n_workers < FRONTEND_WORKERS_MAX) {
        snprintf(f->workers[f->n_workers].name, sizeof f->workers[0].name, "%s", worker);
        f->workers[f->n_workers++].n = 1;
    }
}

/* Record one answer; print it when it came after a retry. */
static void frontend_record(frontend_t *f, const mqhub_msg_t *m)
{
    const char *request = frontend_attr(m, "request");
    size_t plen = strlen(f->name);
    char *end = NULL;
    unsigned long i = strncmp(request, f->name, plen) == 0 && request[plen] == '-'
                          ? strtoul(request + plen + 1, &end, 10)
                          : f->count;
    if (i >= f->count || !end || *end) {
        printf("%s: ignored a forged answer naming request '%s'\n", f->name, request);
        f->forged++;
        return;
    }
    f->answers[i]++;
    frontend_count_worker(f, frontend_attr(m, "worker"));
    if (strcmp(frontend_attr(m, "receive_count"), "1") != 0)
        printf("%s: %s answered by %s after a retry (receive_count %s)\n", f->name, request,
               frontend_attr(m, "worker"), frontend_attr(m, "receive_count"));
}

static unsigned frontend_answered(const frontend_t *f)
{
    unsigned n = 0;
    for (unsigned i = 0; i < f->count; i++)
        n += f->answers[i] > 0;
    return n;
}

/* Receive answers until all are in and @grace_ms passed, or @deadline_ms. */
static int frontend_collect(mqhub_client_t *c, frontend_t *f, uint64_t deadline_ms,
                            uint64_t grace_ms)
{
    uint64_t all_in_at = 0;
    mqhub_receive_opts_t ro = {.max = 64, .wait = 1, .visibility = 30};
    while (frontend_now_ms() < deadline_ms) {
        if (all_in_at && frontend_now_ms() - all_in_at >= grace_ms)
            return 0;
        mqhub_msg_list_t got;
        int rc = mqhub_client_receive(c, f->reply_queue, &ro, &got);
        if (rc != 0) {
            fprintf(stderr, "%s: receive: %s\n", f->name, mqhub_client_errmsg(c));
            return rc;
        }
        const char *receipts[64];
        for (size_t i = 0; i < got.n; i++) {
            frontend_record(f, &got.msgs[i]);
            receipts[i] = got.msgs[i].receipt;
        }
        if (got.n)
            mqhub_client_delete(c, f->reply_queue, receipts, got.n, NULL);
        mqhub_msg_list_free(&got);
        if (!all_in_at && frontend_answered(f) == f->count)
            all_in_at = frontend_now_ms();
    }
    return 0;
}

static int frontend_report(const frontend_t *f, uint64_t elapsed_ms)
{
    unsigned once = 0, more = 0, never = 0;
    for (unsigned i = 0; i < f->count; i++) {
        once += f->answers[i] == 1;
        more += f->answers[i] > 1;
        never += f->answers[i] == 0;
    }
    printf("%s: %u requests: %u answered exactly once, %u more than once, %u never (%.1f s); "
           "%u forged answers ignored\n",
           f->name, f->count, once, more, never, (double)elapsed_ms / 1000, f->forged);
    printf("%s: answers by worker:", f->name);
    for (unsigned i = 0; i < f->n_workers; i++)
        printf(" %s=%u", f->workers[i].name, f->workers[i].n);
    printf("\n");
    return once == f->count ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *server = "127.0.0.1:6410";
    frontend_t f = {.name = "f1", .count = 100};
    unsigned poison = 0, deadline_s = 60, grace_s = 2, hostile = 0;
    static const struct option opts[] = {
        {"server", 1, 0, 's'}, {"name", 1, 0, 'n'},     {"count", 1, 0, 'c'},
        {"poison", 1, 0, 'p'}, {"deadline", 1, 0, 'd'}, {"grace", 1, 0, 'g'},
        {"misbehave", 0, 0, 'm'}, {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 's': server = optarg; break;
        case 'n': f.name = optarg; break;
        case 'c': f.count = (unsigned)atoi(optarg); break;
        case 'p': poison = (unsigned)atoi(optarg); break;
        case 'd': deadline_s = (unsigned)atoi(optarg); break;
        case 'g': grace_s = (unsigned)atoi(optarg); break;
        case 'm': hostile = 1; break;
        default:
            fprintf(stderr, "usage: img_frontend --server H:P --name F [--count N] "
                            "[--poison K] [--deadline S] [--grace S] [--misbehave]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(f.reply_queue, sizeof f.reply_queue, "img-replies-%s", f.name);
    f.answers = calloc(f.count ? f.count : 1, sizeof *f.answers);
    if (!f.answers)
        return 1;

    mqhub_client_t *c;
    char err[256];
    mqhub_client_opts_t co = {.timeout_ms = 10000};
    if (mqhub_client_connect(&c, server, &co, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", f.name, err);
        free(f.answers);
        return 3;
    }
    uint64_t start = frontend_now_ms();
    int rc = mqhub_client_queue_create(c, f.reply_queue, NULL);
    if (rc == 0)
        rc = frontend_send(c, &f, poison);
    if (rc == 0 && hostile)
        rc = frontend_misbehave(c, &f);
    if (rc == 0) {
        printf("%s: put %u requests and %u poison on img-requests\n", f.name, f.count, poison);
        rc = frontend_collect(c, &f, start + deadline_s * 1000ull, grace_s * 1000ull);
    } else {
        fprintf(stderr, "%s: %s\n", f.name, mqhub_client_errmsg(c));
    }
    if (rc == 0)
        rc = frontend_report(&f, frontend_now_ms() - start);
    mqhub_client_close(c);
    free(f.answers);
    return rc == 0 ? 0 : 1;
}
