/* img_audit.c: the image pipeline's final account (examples/image-pipeline).
 *
 *   img_audit --server H:P --expect-done N --expect-dead K
 *
 * Checks, from the hub's own numbers, that nothing was lost: `img-requests` holds
 * nothing (ready, in flight and delayed all 0) and deleted exactly N requests (one
 * per answer), and `img-dlq` holds exactly K messages, each a poison request that
 * was received max_receives times before it was parked. It looks at the dead
 * letters with a 1 s lock and leaves them there (for the dashboard). Prints the
 * figures; exit 0 when they match, 1 when not, 3 when the hub is unreachable.
 * Start at main().
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqhub/client.h"

/* Count the poison messages parked on img-dlq; -1 on error. */
static long audit_dead_letters(mqhub_client_t *c, unsigned long *other)
{
    mqhub_receive_opts_t ro = {.max = 256, .wait = 0, .visibility = 1};
    mqhub_msg_list_t got;
    if (mqhub_client_receive(c, "img-dlq", &ro, &got) != 0)
        return -1;
    long poison = 0;
    for (size_t i = 0; i < got.n; i++) {
        if (strncmp((const char *)got.msgs[i].body, "poison", 6) == 0)
            poison++;
        else
            (*other)++;
        printf("audit: img-dlq holds %s (%zu bytes, enqueued at %llu)\n", got.msgs[i].msg_id,
               got.msgs[i].body_len, (unsigned long long)got.msgs[i].enqueued_at);
    }
    mqhub_msg_list_free(&got);
    return poison;
}

int main(int argc, char **argv)
{
    const char *server = "127.0.0.1:6410";
    unsigned long expect_done = 0, expect_dead = 0;
    static const struct option opts[] = {{"server", 1, 0, 's'}, {"expect-done", 1, 0, 'd'},
                                         {"expect-dead", 1, 0, 'k'}, {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 's': server = optarg; break;
        case 'd': expect_done = strtoul(optarg, NULL, 10); break;
        case 'k': expect_dead = strtoul(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: img_audit --server H:P --expect-done N --expect-dead K\n");
            return 2;
        }
    }
    mqhub_client_t *c;
    char err[256];
    mqhub_client_opts_t co = {.timeout_ms = 10000};
    if (mqhub_client_connect(&c, server, &co, err, sizeof err) != 0) {
        fprintf(stderr, "audit: %s\n", err);
        return 3;
    }
    mqhub_queue_info_t q;
    int rc = mqhub_client_queue_get(c, "img-requests", &q);
    unsigned long other = 0;
    long dead = rc == 0 ? audit_dead_letters(c, &other) : -1;
    if (rc != 0 || dead < 0) {
        fprintf(stderr, "audit: %s\n", mqhub_client_errmsg(c));
        mqhub_client_close(c);
        return 1;
    }
    const mqhub_queue_stats_t *s = &q.stats;
    printf("audit: img-requests sent %llu, received %llu times, deleted %llu; "
           "left: ready %llu, in flight %llu, delayed %llu\n",
           (unsigned long long)s->sent_total, (unsigned long long)s->received_total,
           (unsigned long long)s->deleted_total, (unsigned long long)s->ready,
           (unsigned long long)s->inflight, (unsigned long long)s->delayed);
    printf("audit: img-dlq holds %ld poison requests and %lu others\n", dead, other);
    int ok = s->ready == 0 && s->inflight == 0 && s->delayed == 0 &&
             s->deleted_total == expect_done && (unsigned long)dead == expect_dead && other == 0 &&
             s->sent_total == expect_done + expect_dead;
    printf("audit: %s: expected %lu answered + %lu dead-lettered of %llu sent%s\n",
           ok ? "ok" : "MISMATCH", expect_done, expect_dead, (unsigned long long)s->sent_total,
           ok ? ", none lost" : "");
    mqhub_client_close(c);
    return ok ? 0 : 1;
}
