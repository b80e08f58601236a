/* recon_rewind.c: billing reconciliation by rewinding, of examples/reconciliation-rewind.
 *
 *   recon_rewind --server H:P [--window S] [--per-hour N]
 *
 * The story, in order (each step prints what it did; exit 0 only when every
 * check holds):
 *   1. setup: the queue `rr-usage` (rewind_window S seconds), the topic
 *      `rr-invoices` and its subscription `tax` into the queue `rr-tax-in`;
 *   2. day_send: a day of usage records, hour by hour (N records an hour, each
 *      with its timestamp), noting the hub's clock as each hour starts;
 *   3. billing v1 (bill_run) processes them, with a bug: from 13:00 the price of
 *      premium customers went up and v1 still charges the old one; it
 *      publishes its invoices (revision 1);
 *   4. the bug is found: rewind `rr-usage` to 13:00 (by time) and check what
 *      came back (count, no duplicates, a stale receipt of v1 refused);
 *      billing v2 reverses v1's charges for those records and charges them
 *      right; the recomputed totals must equal the expected ones (price_of
 *      over every record, computed apart); v2 publishes revision 2;
 *   5. after the rewind window has passed, a rewind to the start of the day
 *      finds nothing: the deleted records are gone for good;
 *   6. the tax service, restored from a backup older than the corrected
 *      invoices, rewinds its subscription by seq to the first revision-2
 *      invoice and re-imports exactly those; their sum must equal the total.
 * Start at main(); the expected figures are pure functions of the record index.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqhub/client.h"

#define QUEUE "rr-usage"
#define TOPIC "rr-invoices"
#define TAX_SUB "tax"
#define TAX_QUEUE "rr-tax-in"
#define HOURS 24
#define FIX_HOUR 13 /* the price list changed at 13:00 */
#define CUSTOMERS 20
#define PREMIUM 5 /* c-1 .. c-5 */

typedef struct record {
    unsigned index, hour, customer; /* customer 1..CUSTOMERS */
    unsigned units;
    char ts[48];
} record_t;

/* Record @index of the day (per_hour records an hour). */
static record_t record_make(unsigned index, unsigned per_hour)
{
    record_t r = {.index = index, .hour = index / per_hour};
    unsigned k = index * 2654435761u;
    unsigned sec = (index % per_hour) * 3600 / per_hour;
    r.customer = 1 + k % CUSTOMERS;
    r.units = 1 + (k >> 8) % 100;
    snprintf(r.ts, sizeof r.ts, "2026-12-02T%02u:%02u:%02uZ", r.hour, sec / 60, sec % 60);
    return r;
}

/* Cents for @r: 3 a unit; premium customers 4 a unit from FIX_HOUR on. The
 * buggy v1 ignores the change. */
static unsigned price_of(const record_t *r, int buggy)
{
    int premium_rate = !buggy && r->hour >= FIX_HOUR && r->customer <= PREMIUM;
    return r->units * (premium_rate ? 4 : 3);
}

typedef struct billing {
    unsigned per_hour, total;
    uint64_t *charged;                    /* cents charged per record (ledger) */
    unsigned char *processed;             /* times each record was processed */
    uint64_t cents[CUSTOMERS + 1];        /* totals per customer */
    uint64_t marks[HOURS];                /* hub time (ms) as each hour began */
    char stale_receipt[160];              /* one of v1's receipts, kept */
    uint64_t first_v2_seq;
} billing_t;

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *money(char *buf, size_t size, uint64_t cents)
{
    snprintf(buf, size, "$%llu.%02llu", (unsigned long long)(cents / 100),
             (unsigned long long)(cents % 100));
    return buf;
}

static int setup(mqhub_client_t *c, unsigned window)
{
    mqhub_queue_attrs_t qa = {.set = MQHUB_ATTR_REWIND_WINDOW | MQHUB_ATTR_RETENTION,
                              .rewind_window = window, .retention = 3600};
    mqhub_sub_opts_t tax = {.queue = TAX_QUEUE};
    int rc = mqhub_client_queue_create(c, QUEUE, &qa);
    if (rc == 0)
        rc = mqhub_client_queue_create(c, TAX_QUEUE, NULL);
    if (rc == 0)
        rc = mqhub_client_topic_create(c, TOPIC, NULL);
    if (rc == 0)
        rc = mqhub_client_sub_create(c, TOPIC, TAX_SUB, &tax);
    if (rc == 0)
        printf("setup: queue %s (rewind_window %u s), topic %s -> subscription %s -> queue %s\n",
               QUEUE, window, TOPIC, TAX_SUB, TAX_QUEUE);
    return rc;
}

/* Send the day hour by hour; b->marks[h] is taken before hour h's first send,
 * after hour h-1 was acknowledged (so every earlier record is older). */
static int day_send(mqhub_client_t *c, billing_t *b)
{
    char bodies[256][128], attrs_buf[256][3][16];
    mqhub_attr_t attrs[256][3];
    mqhub_send_opts_t opts[256];
    mqhub_batch_msg_t msgs[256];
    mqhub_send_result_t res[256];
    for (unsigned h = 0; h < HOURS; h++) {
        usleep(5 * 1000);
        b->marks[h] = wall_ms();
        for (unsigned first = h * b->per_hour; first < (h + 1) * b->per_hour;) {
            unsigned n = (h + 1) * b->per_hour - first;
            n = n > 256 ? 256 : n;
            for (unsigned i = 0; i < n; i++) {
                record_t r = record_make(first + i, b->per_hour);
                int len = snprintf(bodies[i], sizeof bodies[i],
                                   "{\"id\":\"u-%05u\",\"customer\":\"c-%u\",\"units\":%u,"
                                   "\"ts\":\"%s\"}",
                                   r.index, r.customer, r.units, r.ts);
                snprintf(attrs_buf[i][0], sizeof attrs_buf[i][0], "%u", r.index);
                snprintf(attrs_buf[i][1], sizeof attrs_buf[i][1], "%u", r.hour);
                snprintf(attrs_buf[i][2], sizeof attrs_buf[i][2], "c-%u", r.customer);
                attrs[i][0] = (mqhub_attr_t){"record", attrs_buf[i][0]};
                attrs[i][1] = (mqhub_attr_t){"hour", attrs_buf[i][1]};
                attrs[i][2] = (mqhub_attr_t){"customer", attrs_buf[i][2]};
                opts[i] = (mqhub_send_opts_t){.attrs = attrs[i], .n_attrs = 3};
                msgs[i] = (mqhub_batch_msg_t){bodies[i], (size_t)len, &opts[i]};
            }
            int rc = mqhub_client_send_batch(c, QUEUE, msgs, n, res);
            for (unsigned i = 0; rc == 0 && i < n; i++)
                rc = res[i].status;
            if (rc != 0)
                return rc;
            first += n;
        }
    }
    printf("day: sent %u usage records, %u an hour, 00:00-23:59 of 2026-12-02\n", b->total,
           b->per_hour);
    return 0;
}

static const char *msg_attr(const mqhub_msg_t *m, const char *key)
{
    for (size_t i = 0; i < m->n_attrs; i++)
        if (strcmp(m->attrs[i].key, key) == 0)
            return m->attrs[i].value;
    return "";
}

/* Process what rr-usage holds with prices v1 (@buggy) or v2: v2 first reverses
 * what v1 charged for the record. *@seen gets the records processed, *@early
 * those from before @min_hour. */
static int bill_run(mqhub_client_t *c, billing_t *b, int buggy, unsigned min_hour,
                    unsigned *seen, unsigned *early)
{
    *seen = *early = 0;
    for (int idle = 0; idle < 2;) {
        mqhub_receive_opts_t ro = {.max = 256, .wait = 1, .visibility = 60};
        mqhub_msg_list_t got;
        int rc = mqhub_client_receive(c, QUEUE, &ro, &got);
        if (rc != 0)
            return rc;
        idle = got.n == 0 ? idle + 1 : 0;
        const char *receipts[256];
        for (size_t i = 0; i < got.n; i++) {
            unsigned long idx = strtoul(msg_attr(&got.msgs[i], "record"), NULL, 10);
            receipts[i] = got.msgs[i].receipt;
            if (idx >= b->total)
                continue;
            record_t r = record_make((unsigned)idx, b->per_hour);
            b->cents[r.customer] -= b->charged[idx]; /* v2: reverse v1's charge */
            b->charged[idx] = price_of(&r, buggy);
            b->cents[r.customer] += b->charged[idx];
            b->processed[idx]++;
            (*seen)++;
            *early += r.hour < min_hour;
            if (buggy && r.hour == FIX_HOUR && !b->stale_receipt[0])
                snprintf(b->stale_receipt, sizeof b->stale_receipt, "%s", got.msgs[i].receipt);
        }
        rc = got.n ? mqhub_client_delete(c, QUEUE, receipts, got.n, NULL) : 0;
        mqhub_msg_list_free(&got);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Publish one invoice per customer; *@first_seq gets the first one's seq. */
static int invoices_publish(mqhub_client_t *c, const billing_t *b, const char *revision,
                            uint64_t *first_seq)
{
    for (unsigned k = 1; k <= CUSTOMERS; k++) {
        char body[96], cust[16], cents[24];
        snprintf(cust, sizeof cust, "c-%u", k);
        snprintf(cents, sizeof cents, "%llu", (unsigned long long)b->cents[k]);
        snprintf(body, sizeof body, "{\"customer\":\"%s\",\"cents\":%s,\"revision\":%s}", cust,
                 cents, revision);
        mqhub_attr_t attrs[] = {{"customer", cust}, {"cents", cents}, {"revision", revision}};
        mqhub_publish_opts_t po = {.attrs = attrs, .n_attrs = 3, .key = "invoice"};
        mqhub_publish_result_t res;
        int rc = mqhub_client_publish(c, TOPIC, body, strlen(body), &po, &res);
        if (rc != 0)
            return rc;
        if (k == 1)
            *first_seq = res.seq;
    }
    return 0;
}

/* Customers whose total differs from the expected one; prints the first few. */
static unsigned totals_compare(const billing_t *b, const uint64_t *expected, const char *who)
{
    unsigned wrong = 0;
    char m1[32], m2[32];
    uint64_t sum = 0, want = 0;
    for (unsigned k = 1; k <= CUSTOMERS; k++) {
        sum += b->cents[k];
        want += expected[k];
        if (b->cents[k] != expected[k] && ++wrong <= 3)
            printf("%s: c-%u billed %s, expected %s\n", who, k, money(m1, sizeof m1, b->cents[k]),
                   money(m2, sizeof m2, expected[k]));
    }
    printf("%s: total %s, expected %s; %u of %u customers wrong\n", who, money(m1, sizeof m1, sum),
           money(m2, sizeof m2, want), wrong, CUSTOMERS);
    return wrong;
}

/* Step 4: rewind by time to FIX_HOUR, checks, billing v2. 1 when all held. */
static int fix_run(mqhub_client_t *c, billing_t *b, const uint64_t *expected)
{
    unsigned want = (HOURS - FIX_HOUR) * b->per_hour, seen, early;
    uint64_t rewound = 0, again = 0;
    mqhub_queue_info_t qi;
    int rc = mqhub_client_queue_rewind(c, QUEUE, &b->marks[FIX_HOUR], NULL, &rewound);
    printf("fix: queue.rewind %s to 13:00 (time %llu): rewound %llu records, expected %u\n",
           QUEUE, (unsigned long long)b->marks[FIX_HOUR], (unsigned long long)rewound, want);
    /* Hostile: v1's old receipt, and the same rewind sent twice. */
    int stale = 0;
    const char *r1 = b->stale_receipt;
    if (rc == 0)
        rc = mqhub_client_delete(c, QUEUE, &r1, 1, &stale);
    if (rc == 0)
        rc = mqhub_client_queue_rewind(c, QUEUE, &b->marks[FIX_HOUR], NULL, &again);
    if (rc == 0)
        rc = mqhub_client_queue_get(c, QUEUE, &qi);
    if (rc != 0)
        return 0;
    printf("fix: v1's receipt of a 13:00 record deleted again: %s; the rewind repeated: rewound "
           "%llu, ready %llu\n",
           stale ? mqhub_err_name(stale) : "ok", (unsigned long long)again,
           (unsigned long long)qi.stats.ready);
    int ok = rewound == want && again == want && qi.stats.ready == want &&
             stale == MQHUB_EINVALID_RECEIPT;
    if (bill_run(c, b, 0, FIX_HOUR, &seen, &early) != 0)
        return 0;
    unsigned twice = 0;
    for (unsigned i = 0; i < b->total; i++)
        twice += b->processed[i] != (record_make(i, b->per_hour).hour >= FIX_HOUR ? 2 : 1);
    printf("fix: billing v2 re-processed %u records (%u from before 13:00, %u processed a wrong "
           "number of times)\n",
           seen, early, twice);
    ok &= seen == want && early == 0 && twice == 0;
    ok &= totals_compare(b, expected, "v2") == 0;
    return ok && invoices_publish(c, b, "2", &b->first_v2_seq) == 0;
}

/* Step 5: once the rewind window has passed, nothing is left to rewind. */
static int window_run(mqhub_client_t *c, const billing_t *b, unsigned window)
{
    mqhub_queue_info_t qi = {.stats.retained = 1};
    uint64_t rewound = 1, start = wall_ms();
    while (mqhub_client_queue_get(c, QUEUE, &qi) == 0 && qi.stats.retained > 0 &&
           wall_ms() - start < (window + 30) * 1000ull)
        usleep(250 * 1000);
    int rc = mqhub_client_queue_rewind(c, QUEUE, &b->marks[0], NULL, &rewound);
    printf("window: %.1f s later %s retains %llu deleted records; a rewind to 00:00: %s, rewound "
           "%llu\n",
           (double)(wall_ms() - start) / 1000, QUEUE, (unsigned long long)qi.stats.retained,
           rc ? mqhub_err_name(rc) : "ok", (unsigned long long)rewound);
    /* Hostile: a rewind that names no point, and one of a queue that is not there. */
    int none = mqhub_client_queue_rewind(c, QUEUE, NULL, NULL, NULL);
    int missing = mqhub_client_queue_rewind(c, "rr-no-such-queue", &b->marks[0], NULL, NULL);
    printf("window: a rewind without time or seq: %s; of a missing queue: %s\n",
           mqhub_err_name(none), mqhub_err_name(missing));
    return rc == 0 && qi.stats.retained == 0 && rewound == 0 && none == MQHUB_EBAD_REQUEST &&
           missing == MQHUB_ENOT_FOUND;
}

/* Receive what rr-tax-in holds; counts invoices and revision-2 cents. */
static int tax_drain(mqhub_client_t *c, unsigned *n, unsigned *rev1, uint64_t *cents)
{
    *n = *rev1 = 0;
    *cents = 0;
    for (int idle = 0; idle < 2;) {
        mqhub_receive_opts_t ro = {.max = 64, .wait = 1, .visibility = 60};
        mqhub_msg_list_t got;
        int rc = mqhub_client_receive(c, TAX_QUEUE, &ro, &got);
        if (rc != 0)
            return rc;
        idle = got.n == 0 ? idle + 1 : 0;
        const char *receipts[64];
        for (size_t i = 0; i < got.n; i++) {
            receipts[i] = got.msgs[i].receipt;
            (*n)++;
            if (strcmp(msg_attr(&got.msgs[i], "revision"), "2") == 0)
                *cents += strtoull(msg_attr(&got.msgs[i], "cents"), NULL, 10);
            else
                (*rev1)++;
        }
        rc = got.n ? mqhub_client_delete(c, TAX_QUEUE, receipts, got.n, NULL) : 0;
        mqhub_msg_list_free(&got);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Step 6: the tax service re-imports the corrected invoices by seq. */
static int tax_run(mqhub_client_t *c, const billing_t *b, uint64_t want_cents)
{
    unsigned n, rev1, n2, rev1_2;
    uint64_t cents, cents2, rewound = 0, past = 1, beyond;
    char m1[32], m2[32];
    if (tax_drain(c, &n, &rev1, &cents) != 0)
        return 0;
    printf("tax: imported %u invoices as they came (%u of revision 1)\n", n, rev1);
    int rc = mqhub_client_sub_rewind(c, TOPIC, TAX_SUB, NULL, &b->first_v2_seq, &rewound);
    if (rc == 0)
        rc = tax_drain(c, &n2, &rev1_2, &cents2);
    beyond = b->first_v2_seq + 1000;
    if (rc == 0)
        rc = mqhub_client_sub_rewind(c, TOPIC, TAX_SUB, NULL, &beyond, &past);
    if (rc != 0) {
        fprintf(stderr, "tax: %s: %s\n", mqhub_err_name(rc), mqhub_client_errmsg(c));
        return 0;
    }
    printf("tax: restored from a backup, subscription.rewind %s/%s to seq %llu: rewound %llu; "
           "re-imported %u invoices (%u of revision 1) totalling %s, expected %s\n",
           TOPIC, TAX_SUB, (unsigned long long)b->first_v2_seq, (unsigned long long)rewound, n2,
           rev1_2, money(m1, sizeof m1, cents2), money(m2, sizeof m2, want_cents));
    printf("tax: a rewind past the last seq (%llu): rewound %llu\n", (unsigned long long)beyond,
           (unsigned long long)past);
    return n == 2 * CUSTOMERS && rev1 == CUSTOMERS && rewound == CUSTOMERS && n2 == CUSTOMERS &&
           rev1_2 == 0 && cents2 == want_cents && past == 0;
}

static int story_run(mqhub_client_t *c, billing_t *b, unsigned window)
{
    uint64_t expected[CUSTOMERS + 1] = {0}, grand = 0, first_v1 = 0;
    unsigned seen, early;
    for (unsigned i = 0; i < b->total; i++) {
        record_t r = record_make(i, b->per_hour);
        expected[r.customer] += price_of(&r, 0);
        grand += price_of(&r, 0);
    }
    int rc = setup(c, window);
    if (rc == 0)
        rc = day_send(c, b);
    if (rc == 0)
        rc = bill_run(c, b, 1, 0, &seen, &early);
    if (rc == 0)
        rc = invoices_publish(c, b, "1", &first_v1);
    if (rc != 0) {
        fprintf(stderr, "recon_rewind: %s: %s\n", mqhub_err_name(rc), mqhub_client_errmsg(c));
        return 0;
    }
    printf("v1: billed %u records and published invoices (seqs %llu-%llu)\n", seen,
           (unsigned long long)first_v1, (unsigned long long)first_v1 + CUSTOMERS - 1);
    int ok = seen == b->total && totals_compare(b, expected, "v1") == PREMIUM;
    printf("bug: from 13:00 premium customers (c-1..c-%u) pay 4 cents a unit, not 3; v1 "
           "missed the price change\n",
           PREMIUM);
    ok &= fix_run(c, b, expected);
    printf("v2: published corrected invoices (seqs %llu-%llu)\n",
           (unsigned long long)b->first_v2_seq,
           (unsigned long long)b->first_v2_seq + CUSTOMERS - 1);
    ok &= window_run(c, b, window);
    ok &= tax_run(c, b, grand);
    return ok;
}

int main(int argc, char **argv)
{
    const char *server = "127.0.0.1:6470";
    unsigned window = 10, per_hour = 250;
    static const struct option opts[] = {
        {"server", 1, 0, 's'}, {"window", 1, 0, 'w'}, {"per-hour", 1, 0, 'n'}, {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 's': server = optarg; break;
        case 'w': window = (unsigned)atoi(optarg); break;
        case 'n': per_hour = (unsigned)atoi(optarg); break;
        default:
            fprintf(stderr, "usage: recon_rewind --server H:P [--window S] [--per-hour N]\n");
            return 2;
        }
    }
    if (window < 1 || window > 3600 || per_hour < 1 || per_hour > 4000) {
        fprintf(stderr, "recon_rewind: --window 1-3600, --per-hour 1-4000\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    billing_t b = {.per_hour = per_hour, .total = per_hour * HOURS};
    b.charged = calloc(b.total, sizeof *b.charged);
    b.processed = calloc(b.total, 1);
    mqhub_client_t *c = NULL;
    char err[256];
    mqhub_client_opts_t co = {.timeout_ms = 10000};
    if (!b.charged || !b.processed || mqhub_client_connect(&c, server, &co, err, sizeof err)) {
        fprintf(stderr, "recon_rewind: %s\n", b.charged && b.processed ? err : "out of memory");
        free(b.charged);
        free(b.processed);
        return 3;
    }
    int ok = story_run(c, &b, window);
    printf("%s\n", ok ? "RESULT ok" : "RESULT MISMATCH");
    mqhub_client_close(c);
    free(b.charged);
    free(b.processed);
    return ok ? 0 : 1;
}
