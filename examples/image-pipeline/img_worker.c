/* img_worker.c: one worker process of the image pipeline (examples/image-pipeline).
 *
 *   img_worker --server H:P --name W [--work-ms N] [--queue Q]
 *
 * Loop: receive one request from `img-requests` (1 s long polls, the queue's
 * visibility timeout as the lock), "resize" it (sleep --work-ms), send the result
 * to the queue named by the request's `reply_to` attribute, then delete the
 * request. The reply carries the request id (attr `request`), the worker's name
 * and the request's receive_count, and is sent with the dedup id
 * "reply-<request>" so a request done twice (a worker slower than the visibility
 * timeout) is still answered once. A request whose body starts with "poison"
 * cannot be decoded: the worker makes it visible again at once and moves on; the
 * queue's dead_letter setting parks it after max_receives.
 *
 * Each step is one line on stdout (begin / done / poison / stop) so the driver
 * (run.sh) can see a worker mid-task. SIGTERM stops it after the current request.
 * Start at main(), then worker_handle().
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqhub/client.h"

static volatile sig_atomic_t worker_stopping;

static void worker_on_term(int sig)
{
    (void)sig;
    worker_stopping = 1;
}

static const char *worker_attr(const mqhub_msg_t *m, const char *key)
{
    for (size_t i = 0; i < m->n_attrs; i++)
        if (strcmp(m->attrs[i].key, key) == 0)
            return m->attrs[i].value;
    return NULL;
}

static void worker_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) /* a signal: finish the request anyway */
        ;
}

/* Do one request. Returns 1 when it was answered and deleted, 0 otherwise. */
static int worker_handle(mqhub_client_t *c, const char *queue, const char *name, long work_ms,
                         const mqhub_msg_t *m)
{
    const char *request = worker_attr(m, "request");
    const char *reply_to = worker_attr(m, "reply_to");
    if (!request || !reply_to || strncmp((const char *)m->body, "poison", 6) == 0) {
        printf("%s poison %s receive_count %u: cannot decode, released\n", name, m->msg_id,
               m->receive_count);
        mqhub_client_change_visibility(c, queue, m->receipt, 0, NULL);
        return 0;
    }
    printf("%s begin %s receive_count %u\n", name, request, m->receive_count);
    worker_sleep_ms(work_ms); /* the resize */

    char body[512], count[16], dedup[128];
    snprintf(body, sizeof body, "done: %.400s -> thumbnail by %s", (const char *)m->body, name);
    snprintf(count, sizeof count, "%u", m->receive_count);
    snprintf(dedup, sizeof dedup, "reply-%s", request);
    mqhub_attr_t attrs[] = {{"request", request}, {"worker", name}, {"receive_count", count}};
    mqhub_send_opts_t so = {.attrs = attrs, .n_attrs = 3, .dedup_id = dedup};
    int rc = mqhub_client_send(c, reply_to, body, strlen(body), &so, NULL);
    if (rc != 0) {
        printf("%s reply %s failed: %s (left for another worker)\n", name, request,
               mqhub_client_errmsg(c));
        return 0;
    }
    const char *receipt = m->receipt;
    int status = 0;
    rc = mqhub_client_delete(c, queue, &receipt, 1, &status);
    if (rc != 0 || status != 0) {
        printf("%s delete %s failed: %s (the lock expired; the reply's dedup id keeps it single)\n",
               name, request, mqhub_err_name(rc ? rc : status));
        return 0;
    }
    printf("%s done %s\n", name, request);
    return 1;
}

int main(int argc, char **argv)
{
    const char *server = "127.0.0.1:6410", *name = "worker", *queue = "img-requests";
    long work_ms = 100;
    static const struct option opts[] = {{"server", 1, 0, 's'}, {"name", 1, 0, 'n'},
                                         {"work-ms", 1, 0, 'w'}, {"queue", 1, 0, 'q'},
                                         {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 's': server = optarg; break;
        case 'n': name = optarg; break;
        case 'w': work_ms = atol(optarg); break;
        case 'q': queue = optarg; break;
        default:
            fprintf(stderr, "usage: img_worker --server H:P --name W [--work-ms N] [--queue Q]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGTERM, worker_on_term);
    signal(SIGINT, worker_on_term);

    mqhub_client_t *c;
    char err[256];
    mqhub_client_opts_t co = {.timeout_ms = 10000};
    if (mqhub_client_connect(&c, server, &co, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 3;
    }
    printf("%s started (pid %d, %ld ms per request)\n", name, (int)getpid(), work_ms);
    unsigned long done = 0;
    mqhub_receive_opts_t ro = {.max = 1, .wait = 1, .visibility = -1};
    while (!worker_stopping) {
        mqhub_msg_list_t got;
        int rc = mqhub_client_receive(c, queue, &ro, &got);
        if (rc != 0) {
            printf("%s receive: %s (retrying)\n", name, mqhub_client_errmsg(c));
            worker_sleep_ms(200);
            continue;
        }
        for (size_t i = 0; i < got.n; i++)
            done += (unsigned long)worker_handle(c, queue, name, work_ms, &got.msgs[i]);
        mqhub_msg_list_free(&got);
    }
    printf("%s stopped after %lu requests\n", name, done);
    mqhub_client_close(c);
    return 0;
}
