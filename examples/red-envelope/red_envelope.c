/* red_envelope.c: the red-envelope campaign of examples/red-envelope.
 *
 *   red_envelope grab      --server LIST --dir D --count N
 *   red_envelope credit    --server LIST --dir D --name C
 *   red_envelope reconcile --server LIST --dir D --count N [--wait S]
 *
 * grab: users grab envelopes E-1..E-N (amount a pure function of the id, in
 * cents); each grab puts one credit request on `env-credits` with the envelope
 * id as its dedup id, and is resent with that same id when the answer was lost
 * (the leader died): the hub stores it once. The campaign's own record goes to
 * D/issued (one line per envelope). At the end the first 10 grabs are replayed
 * on purpose (grab_replay): the hub must answer each with its first msg_id.
 *
 * credit: receives credit requests and calls the account service, which fails
 * 30 % of calls (account_call: a pure function of envelope and attempt, so a
 * run is repeatable). A success appends "E-i amount crediter attempt" to the
 * account ledger D/ledger, then the request is deleted. A failure re-sends the
 * request with a delay of 1 s, attempt + 1 and the dedup id "E-i#attempt" —
 * resent with the same id when the answer was lost, so one failure never turns
 * into two retries (and two credits) — then deletes the failed one. SIGTERM
 * stops it after the current request; it prints its counters.
 *
 * reconcile: waits (up to --wait) until the ledger holds N lines and
 * env-credits is empty, then checks: every issued envelope credited exactly
 * once, no credit for an unknown envelope, totals equal, nothing ready, in
 * flight or delayed. Exit 0 when all hold.
 * Start at main(), then grab_run(), credit_run(), reconcile_run().
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqhub/client.h"

#define QUEUE "env-credits"
#define RESEND_MAX 60   /* tries of one send whose answer was lost (~30 s) */
#define GRAB_REPLAYS 10 /* grabs sent a second time on purpose */

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A code's wire name; MQHUB_ECONN is the client's own. */
static const char *code_name(int rc)
{
    return rc == MQHUB_ECONN ? "ECONN (connection lost)" : mqhub_err_name(rc);
}

/* Codes after which a request may be sent again: it was not performed
 * (NOT_LEADER, UNAVAILABLE) or its answer was lost (ECONN, TIMEOUT). */
static int retryable(int rc)
{
    return rc == MQHUB_ECONN || rc == MQHUB_ETIMEOUT || rc == MQHUB_EUNAVAILABLE ||
           rc == MQHUB_ENOT_LEADER;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Envelope i's amount in cents: 1..2000. */
static unsigned envelope_amount(unsigned i)
{
    char id[32];
    snprintf(id, sizeof id, "E-%u", i);
    return 1 + fnv1a(id) % 2000;
}

/* A send whose answer may be lost: resend with the same dedup id until the
 * hub answers. 0, a refusal code, or the last ECONN/TIMEOUT. *@resent counts
 * the extra tries. */
static int send_surely(mqhub_client_t *c, const char *body, const mqhub_send_opts_t *so,
                       unsigned long *resent, mqhub_send_result_t *out)
{
    int rc = MQHUB_ECONN;
    for (int i = 0; i < RESEND_MAX; i++) {
        rc = mqhub_client_send(c, QUEUE, body, strlen(body), so, out);
        if (!retryable(rc))
            return rc;
        (*resent)++;
        sleep_ms(500);
    }
    return rc;
}

/* Envelope i's credit request: body, attributes and send options. */
typedef struct grab_req {
    char id[32], user[32], amount[16], body[96];
    mqhub_attr_t attrs[4];
    mqhub_send_opts_t so;
} grab_req_t;

static void grab_request(grab_req_t *r, unsigned i)
{
    snprintf(r->id, sizeof r->id, "E-%u", i);
    snprintf(r->user, sizeof r->user, "u-%u", 1 + fnv1a(r->id) % 97);
    snprintf(r->amount, sizeof r->amount, "%u", envelope_amount(i));
    snprintf(r->body, sizeof r->body, "credit %s %s cents to %s", r->id, r->amount, r->user);
    r->attrs[0] = (mqhub_attr_t){"envelope", r->id};
    r->attrs[1] = (mqhub_attr_t){"user", r->user};
    r->attrs[2] = (mqhub_attr_t){"amount", r->amount};
    r->attrs[3] = (mqhub_attr_t){"attempt", "1"};
    r->so = (mqhub_send_opts_t){.attrs = r->attrs, .n_attrs = 4, .dedup_id = r->id};
}

/* A user who taps "grab" again: the first @n grabs sent once more with their
 * dedup ids. Returns how many the hub answered with the first msg_id (stored
 * nothing new). */
static unsigned grab_replay(mqhub_client_t *c, unsigned n, char (*first_ids)[MQHUB_MSG_ID_MAX])
{
    unsigned same = 0;
    unsigned long resent = 0;
    for (unsigned i = 1; i <= n; i++) {
        grab_req_t r;
        mqhub_send_result_t res;
        grab_request(&r, i);
        if (send_surely(c, r.body, &r.so, &resent, &res) == 0 &&
            strcmp(res.msg_id, first_ids[i - 1]) == 0)
            same++;
    }
    return same;
}

static int grab_run(mqhub_client_t *c, const char *dir, unsigned count)
{
    char path[512];
    snprintf(path, sizeof path, "%s/issued", dir);
    FILE *issued = fopen(path, "w");
    if (!issued)
        return -1;
    unsigned long resent = 0, total = 0;
    char first_ids[GRAB_REPLAYS][MQHUB_MSG_ID_MAX];
    int rc = 0;
    for (unsigned i = 1; rc == 0 && i <= count; i++) {
        grab_req_t r;
        mqhub_send_result_t res;
        grab_request(&r, i);
        rc = send_surely(c, r.body, &r.so, &resent, &res);
        if (rc == 0) {
            fprintf(issued, "%s %s\n", r.id, r.amount);
            fflush(issued);
            total += envelope_amount(i);
            if (i <= GRAB_REPLAYS)
                snprintf(first_ids[i - 1], MQHUB_MSG_ID_MAX, "%s", res.msg_id);
        }
        sleep_ms(15); /* users grab over a few seconds */
    }
    fclose(issued);
    printf("grab: %u envelopes, %lu.%02lu in total, %lu sends resent after a lost answer\n",
           count, total / 100, total % 100, resent);
    if (rc != 0 || count < GRAB_REPLAYS)
        return rc;
    unsigned same = grab_replay(c, GRAB_REPLAYS, first_ids);
    printf("grab: %u grabs replayed with their dedup ids: %u answered with the first msg_id\n",
           GRAB_REPLAYS, same);
    return same == GRAB_REPLAYS ? 0 : 1;
}

typedef struct crediter {
    const char *name;
    FILE *ledger;
    unsigned long calls, failures, credited, retries, resent, delete_lost;
} crediter_t;

static const char *msg_attr(const mqhub_msg_t *m, const char *key)
{
    for (size_t i = 0; i < m->n_attrs; i++)
        if (strcmp(m->attrs[i].key, key) == 0)
            return m->attrs[i].value;
    return "";
}

/* The downstream account service: 30 % of calls fail (before crediting). A
 * success appends the credit to the ledger. 0 or -1. */
static int account_call(crediter_t *cr, const char *envelope, const char *amount,
                        unsigned attempt)
{
    char key[64];
    snprintf(key, sizeof key, "%s#%u", envelope, attempt);
    cr->calls++;
    if (fnv1a(key) % 100 < 30) {
        cr->failures++;
        return -1;
    }
    fprintf(cr->ledger, "%s %s %s %u\n", envelope, amount, cr->name, attempt);
    fflush(cr->ledger);
    cr->credited++;
    return 0;
}

/* Delete @m, again when the answer was lost. 1 when a stale receipt showed
 * the lock was gone (the request will come again: the one way to credit twice,
 * when the hub stays unreachable longer than the visibility timeout). */
static int credit_delete(mqhub_client_t *c, crediter_t *cr, const mqhub_msg_t *m)
{
    const char *receipt = m->receipt;
    for (int i = 0; i < RESEND_MAX; i++) {
        int status = 0;
        int rc = mqhub_client_delete(c, QUEUE, &receipt, 1, &status);
        if (rc == 0 && status == 0)
            return 0;
        if (rc == 0 || !retryable(rc)) {
            /* After a lost answer, INVALID_RECEIPT usually means the first try
             * deleted it; it may also mean the lock expired. */
            cr->delete_lost++;
            printf("%s: delete %s: %s\n", cr->name, msg_attr(m, "envelope"),
                   code_name(rc ? rc : status));
            return 1;
        }
        sleep_ms(500);
    }
    return 1;
}

static void credit_one(mqhub_client_t *c, crediter_t *cr, const mqhub_msg_t *m)
{
    const char *envelope = msg_attr(m, "envelope"), *amount = msg_attr(m, "amount");
    unsigned attempt = (unsigned)strtoul(msg_attr(m, "attempt"), NULL, 10);
    if (account_call(cr, envelope, amount, attempt) != 0) {
        char next[16], dedup[64];
        snprintf(next, sizeof next, "%u", attempt + 1);
        snprintf(dedup, sizeof dedup, "%s#%u", envelope, attempt);
        mqhub_attr_t attrs[] = {{"envelope", envelope}, {"user", msg_attr(m, "user")},
                                {"amount", amount}, {"attempt", next}};
        mqhub_send_opts_t so = {.has_delay = true, .delay = 1, .attrs = attrs, .n_attrs = 4,
                                .dedup_id = dedup};
        if (send_surely(c, (const char *)m->body, &so, &cr->resent, NULL) != 0) {
            printf("%s: retry of %s not sent: %s (its request comes again)\n", cr->name,
                   envelope, mqhub_client_errmsg(c));
            return;
        }
        cr->retries++;
    }
    credit_delete(c, cr, m);
}

static int credit_run(mqhub_client_t *c, const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/ledger", dir);
    crediter_t cr = {.name = name, .ledger = fopen(path, "a")};
    if (!cr.ledger)
        return -1;
    mqhub_receive_opts_t ro = {.max = 4, .wait = 1, .visibility = -1};
    while (!stopping) {
        mqhub_msg_list_t got;
        int rc = mqhub_client_receive(c, QUEUE, &ro, &got);
        if (rc != 0) {
            printf("%s: receive: %s (retrying)\n", name, code_name(rc));
            sleep_ms(200);
            continue;
        }
        for (size_t i = 0; i < got.n; i++)
            credit_one(c, &cr, &got.msgs[i]);
        mqhub_msg_list_free(&got);
    }
    fclose(cr.ledger);
    printf("%s: %lu account calls, %lu failed (%.0f %%), %lu credited, %lu retries queued, "
           "%lu sends resent after a lost answer, %lu stale deletes\n",
           name, cr.calls, cr.failures,
           cr.calls ? 100.0 * (double)cr.failures / (double)cr.calls : 0,
           cr.credited, cr.retries, cr.resent, cr.delete_lost);
    return 0;
}

/* Lines of @path, or 0 when it does not exist. */
static unsigned count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    unsigned n = 0;
    for (int ch; f && (ch = getc(f)) != EOF;)
        n += ch == '\n';
    if (f)
        fclose(f);
    return n;
}

static int queue_empty(mqhub_client_t *c, mqhub_queue_stats_t *s)
{
    mqhub_queue_info_t q;
    if (mqhub_client_queue_get(c, QUEUE, &q) != 0)
        return 0;
    *s = q.stats;
    return s->ready == 0 && s->inflight == 0 && s->delayed == 0;
}

/* Credits per envelope from the ledger; totals into *@sum, stray ones counted. */
static int reconcile_ledger(const char *dir, unsigned count, unsigned *credits,
                            unsigned long *sum, unsigned *stray, unsigned *bad_amount)
{
    char path[512], id[64], name[64];
    unsigned amount, attempt;
    snprintf(path, sizeof path, "%s/ledger", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fscanf(f, "%63s %u %63s %u", id, &amount, name, &attempt) == 4) {
        unsigned long i = strncmp(id, "E-", 2) == 0 ? strtoul(id + 2, NULL, 10) : 0;
        if (i == 0 || i > count) {
            (*stray)++;
            continue;
        }
        credits[i]++;
        *sum += amount;
        *bad_amount += amount != envelope_amount((unsigned)i);
    }
    fclose(f);
    return 0;
}

static int reconcile_run(mqhub_client_t *c, const char *dir, unsigned count, unsigned wait_s)
{
    char path[512];
    snprintf(path, sizeof path, "%s/ledger", dir);
    mqhub_queue_stats_t s = {0};
    uint64_t start = now_ms();
    while (now_ms() - start < wait_s * 1000ull &&
           !(count_lines(path) >= count && queue_empty(c, &s)))
        sleep_ms(250);
    sleep_ms(2000); /* a late duplicate would land now */
    int empty = queue_empty(c, &s);

    unsigned *credits = calloc(count + 1, sizeof *credits);
    unsigned long sum = 0, expected = 0;
    unsigned stray = 0, bad_amount = 0, once = 0, twice = 0, never = 0;
    if (!credits || reconcile_ledger(dir, count, credits, &sum, &stray, &bad_amount) != 0) {
        free(credits);
        return -1;
    }
    for (unsigned i = 1; i <= count; i++) {
        expected += envelope_amount(i);
        once += credits[i] == 1;
        twice += credits[i] > 1;
        never += credits[i] == 0;
    }
    free(credits);
    printf("reconcile: %u envelopes issued: %u credited exactly once, %u more than once, "
           "%u never, %u unknown, %u with a wrong amount (%.1f s)\n",
           count, once, twice, never, stray, bad_amount, (double)(now_ms() - start) / 1000);
    printf("reconcile: issued %lu.%02lu, credited %lu.%02lu\n", expected / 100, expected % 100,
           sum / 100, sum % 100);
    printf("reconcile: env-credits sent %llu (retries included), deleted %llu; left: ready "
           "%llu, in flight %llu, delayed %llu\n",
           (unsigned long long)s.sent_total, (unsigned long long)s.deleted_total,
           (unsigned long long)s.ready, (unsigned long long)s.inflight,
           (unsigned long long)s.delayed);
    int ok = once == count && stray == 0 && bad_amount == 0 && sum == expected && empty;
    printf("reconcile: %s\n", ok ? "RESULT ok" : "RESULT MISMATCH");
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *server = "127.0.0.1:6431,127.0.0.1:6432,127.0.0.1:6433", *dir = ".",
               *name = "c1";
    unsigned count = 300, wait_s = 90;
    static const struct option opts[] = {{"server", 1, 0, 's'}, {"dir", 1, 0, 'd'},
                                         {"count", 1, 0, 'n'},  {"name", 1, 0, 'c'},
                                         {"wait", 1, 0, 'w'},   {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 's': server = optarg; break;
        case 'd': dir = optarg; break;
        case 'n': count = (unsigned)atoi(optarg); break;
        case 'c': name = optarg; break;
        case 'w': wait_s = (unsigned)atoi(optarg); break;
        default: optind = argc; break;
        }
    }
    const char *mode = optind < argc ? argv[optind] : "";
    if (strcmp(mode, "grab") != 0 && strcmp(mode, "credit") != 0 &&
        strcmp(mode, "reconcile") != 0) {
        fprintf(stderr, "usage: red_envelope grab|credit|reconcile --server LIST --dir D "
                        "[--count N] [--name C] [--wait S]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    mqhub_client_t *c;
    char err[256];
    mqhub_client_opts_t co = {.timeout_ms = 5000};
    if (mqhub_client_connect(&c, server, &co, err, sizeof err) != 0) {
        fprintf(stderr, "red_envelope: %s\n", err);
        return 3;
    }
    int rc = mode[0] == 'g' ? grab_run(c, dir, count)
             : mode[0] == 'c' ? credit_run(c, dir, name)
                              : reconcile_run(c, dir, count, wait_s);
    if (rc < 0)
        fprintf(stderr, "red_envelope %s: %s: %s\n", mode, code_name(rc),
                mqhub_client_errmsg(c));
    mqhub_client_close(c);
    return rc == 0 ? 0 : 1;
}
