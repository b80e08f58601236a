/* topic_crash_test.c: acknowledged publishes survive kill -9, in every
 * subscription, with intact bodies.
 *
 * One topic "tc" with three queue subscriptions (q.a, q.b: everything; q.hot:
 * filter_tags ["hot"], which every even N carries) and one push subscription
 * "p". Rounds: keep a window of pipelined publishes going (body "m<N>:" then
 * a pattern derived from N, 16..1515 bytes), SIGKILL mqhubd at a random
 * (seeded: $TOPIC_CRASH_SEED, else the time) moment just after topping the
 * window up, so requests are in flight; restart on the same data. Afterwards receive every queue and pull "p" (subscribe + ack), and
 * check: each acknowledged N exactly once in each matching endpoint with the
 * publish's msg_id, unacknowledged ones at most once, odd N never in q.hot,
 * every body byte for byte. Start at test_kill9_rounds; a new endpoint is a
 * new entry in EPS plus its expectation in matches().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testhub.h"

#define ROUNDS 5
#define MAX_MSGS 100000
#define WINDOW 64
#define BODY_MAX 1600
#define TOPIC "tc"

enum { UNSENT = 0, PENDING, ACKED, FAILED };
enum { EP_A, EP_B, EP_HOT, EP_PUSH, N_EPS };

static const char *const EPS[N_EPS] = {"q.a", "q.b", "q.hot", "p"};

typedef struct tcrash {
    testhub_t hub;
    mqhub_client_t *c;
    unsigned char state[MAX_MSGS]; /* per N */
    char msg_id[MAX_MSGS][MQHUB_MSG_ID_MAX]; /* the publish's msg_id when ACKED */
    unsigned char seen[N_EPS][MAX_MSGS];
    unsigned next;
    unsigned bad_delivered; /* acked publishes whose match count was wrong */
    unsigned strangers[N_EPS], bad_body[N_EPS], bad_id[N_EPS], dups[N_EPS];
    uint64_t *acks; /* push seqs to acknowledge after poll */
    size_t n_acks;
} tcrash_t;

typedef struct slot {
    tcrash_t *tc;
    unsigned n;
} slot_t;

static const char *mqhubd_path;

static void must(mqhub_client_t *c, int rc)
{
    if (rc != 0)
        fprintf(stderr, "call failed: %s: %s\n", mqhub_err_name(rc), mqhub_client_errmsg(c));
    assert_int_equal(rc, 0);
}

static bool is_hot(unsigned n)
{
    return n % 2 == 0;
}

static bool matches(int ep, unsigned n)
{
    return ep != EP_HOT || is_hot(n);
}

/* The body of message @n into @buf (BODY_MAX bytes); its length. */
static size_t make_body(unsigned n, char *buf)
{
    size_t len = 16 + (size_t)(n * 7919u % 1500u);
    int head = snprintf(buf, BODY_MAX, "m%u:", n);
    for (size_t i = (size_t)head; i < len; i++)
        buf[i] = (char)('a' + (n + i) % 26);
    return len;
}

/* Account one delivered copy of a message on endpoint @ep. */
static void check_copy(tcrash_t *tc, int ep, const char *msg_id, const void *body, size_t len)
{
    char want[BODY_MAX];
    unsigned n;
    if (sscanf(body, "m%u:", &n) != 1 || n >= tc->next || !matches(ep, n)) {
        tc->strangers[ep]++;
        return;
    }
    if (tc->seen[ep][n]++)
        tc->dups[ep]++;
    size_t want_len = make_body(n, want);
    if (len != want_len || memcmp(body, want, len) != 0)
        tc->bad_body[ep]++;
    if (tc->state[n] == ACKED && strcmp(msg_id, tc->msg_id[n]) != 0)
        tc->bad_id[ep]++;
}

static void on_published(void *arg, const mqhub_publish_result_t *r)
{
    slot_t *s = arg;
    tcrash_t *tc = s->tc;
    tc->state[s->n] = r->status == 0 ? ACKED : FAILED;
    if (r->status == 0) {
        snprintf(tc->msg_id[s->n], sizeof tc->msg_id[0], "%s", r->msg_id);
        tc->bad_delivered += r->delivered != (is_hot(s->n) ? 4u : 3u);
    }
    free(s);
}

static void submit(tcrash_t *tc)
{
    static const char *const hot[] = {"hot", "x"};
    static const char *const cold[] = {"cold"};
    char body[BODY_MAX];
    unsigned n = tc->next;
    mqhub_publish_opts_t po = {.tags = is_hot(n) ? hot : cold, .n_tags = is_hot(n) ? 2 : 1};
    slot_t *s = malloc(sizeof *s);
    assert_non_null(s);
    *s = (slot_t){tc, n};
    size_t len = make_body(n, body);
    if (mqhub_client_publish_async(tc->c, TOPIC, body, len, &po, on_published, s) != 0) {
        free(s);
        return;
    }
    tc->state[tc->next++] = PENDING;
}

/* Publish until @kill_at, kill -9, drain the failures, restart. */
static void round_trip(tcrash_t *tc, uint64_t kill_at)
{
    while (testhub_now_ms() < kill_at && tc->next < MAX_MSGS) {
        while (mqhub_client_pending(tc->c) < WINDOW && tc->next < MAX_MSGS)
            submit(tc);
        mqhub_client_poll(tc->c, 5);
    }
    while (mqhub_client_pending(tc->c) < WINDOW && tc->next < MAX_MSGS)
        submit(tc); /* a full window in flight at the kill */
    mqhub_client_poll(tc->c, 0);
    testhub_sleep_ms(rand() % 6);
    fprintf(stderr, "topic crash: kill -9 at %u published, %u in flight\n", tc->next,
            mqhub_client_pending(tc->c));
    testhub_kill(&tc->hub);
    mqhub_client_flush(tc->c, 15000);
    assert_int_equal(mqhub_client_pending(tc->c), 0);
    assert_int_equal(testhub_restart(&tc->hub), 0);
}

static void drain_queue(tcrash_t *tc, int ep)
{
    mqhub_receive_opts_t o = {.max = 256, .wait = 0, .visibility = 600};
    int empty = 0, lost_conn = 0;
    while (empty < 2) {
        mqhub_msg_list_t l;
        int rc = mqhub_client_receive(tc->c, EPS[ep], &o, &l);
        if (rc == MQHUB_ECONN && ++lost_conn < 3)
            continue; /* first call after the restart */
        must(tc->c, rc);
        empty = l.n == 0 ? empty + 1 : 0;
        for (size_t i = 0; i < l.n; i++)
            check_copy(tc, ep, l.msgs[i].msg_id, l.msgs[i].body, l.msgs[i].body_len);
        mqhub_msg_list_free(&l);
    }
}

static void on_push(void *arg, const mqhub_push_t *p)
{
    tcrash_t *tc = arg;
    if (strcmp(p->kind, "messages") != 0)
        return;
    for (size_t i = 0; i < p->n; i++) {
        check_copy(tc, EP_PUSH, p->msgs[i].msg_id, p->msgs[i].body, p->msgs[i].body_len);
        if (tc->n_acks < MAX_MSGS)
            tc->acks[tc->n_acks++] = p->msgs[i].seq;
    }
}

static uint64_t push_stat(tcrash_t *tc, const char *key)
{
    mqhub_response_t r;
    uint64_t v = UINT64_MAX;
    must(tc->c, mqhub_client_sub_get(tc->c, TOPIC, EPS[EP_PUSH], &r));
    const msgpack_object *st = mqhub_map_get(&r.map, "stats");
    const msgpack_object *o = st ? mqhub_map_get(st, key) : NULL;
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        v = o->via.u64;
    mqhub_response_free(&r);
    return v;
}

/* Subscribe to "p" on a second connection, acknowledge what comes until
 * nothing has come for 500 ms (bounded by 15 s). */
static void drain_push(tcrash_t *tc)
{
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.timeout_ms = 5000};
    char err[256];
    size_t done = 0;
    uint64_t quiet_since = testhub_now_ms(), end = quiet_since + 15000;

    tc->acks = calloc(MAX_MSGS, sizeof *tc->acks);
    assert_non_null(tc->acks);
    assert_int_equal(mqhub_client_connect(&c, tc->hub.address, &o, err, sizeof err), 0);
    mqhub_client_on_push(c, on_push, tc);
    must(c, mqhub_client_subscribe(c, TOPIC, EPS[EP_PUSH], 512));
    while (testhub_now_ms() < end && testhub_now_ms() - quiet_since < 500) {
        mqhub_client_poll(c, 20);
        if (tc->n_acks == done)
            continue;
        size_t upto = tc->n_acks; /* more may arrive while the ack waits */
        for (size_t k; done < upto; done += k) {
            k = upto - done < 256 ? upto - done : 256; /* ack takes 1..256 seqs */
            must(c, mqhub_client_ack(c, TOPIC, EPS[EP_PUSH], &tc->acks[done], k, NULL));
        }
        quiet_since = testhub_now_ms();
    }
    mqhub_client_close(c);
    free(tc->acks);
    tc->acks = NULL;
}

static void create_topology(mqhub_client_t *c)
{
    static const char *const hot[] = {"hot"};
    mqhub_sub_opts_t push = {.retry = "backoff", .interval_ms = 3600000};
    must(c, mqhub_client_topic_create(c, TOPIC, NULL));
    for (int ep = EP_A; ep <= EP_HOT; ep++) {
        mqhub_sub_opts_t so = {.queue = EPS[ep]};
        if (ep == EP_HOT) {
            so.filter_tags = hot;
            so.n_filter_tags = 1;
        }
        must(c, mqhub_client_queue_create(c, EPS[ep], NULL));
        must(c, mqhub_client_sub_create(c, TOPIC, EPS[ep], &so));
    }
    must(c, mqhub_client_sub_create(c, TOPIC, EPS[EP_PUSH], &push));
}

/* Per endpoint: acknowledged matching N missing; unacknowledged N stored. */
static unsigned count_lost(const tcrash_t *tc, int ep, unsigned *kept)
{
    unsigned lost = 0;
    *kept = 0;
    for (unsigned n = 0; n < tc->next; n++) {
        if (!matches(ep, n))
            continue;
        if (tc->state[n] == ACKED)
            lost += tc->seen[ep][n] == 0;
        else
            *kept += tc->seen[ep][n] > 0;
    }
    return lost;
}

static void report_and_check(const tcrash_t *tc, uint64_t pending_before)
{
    unsigned acked = 0, stored = 0, bad = 0;
    for (unsigned n = 0; n < tc->next; n++) {
        acked += tc->state[n] == ACKED;
        stored += tc->seen[EP_A][n] > 0;
    }
    fprintf(stderr, "topic crash: %u published, %u acknowledged, %u wrong 'delivered', "
                    "push pending before drain %llu\n", tc->next, acked, tc->bad_delivered,
            (unsigned long long)pending_before);
    for (int ep = 0; ep < N_EPS; ep++) {
        unsigned kept, lost = count_lost(tc, ep, &kept);
        fprintf(stderr, "  %-5s: %u lost, %u duplicates, %u strangers, %u bad bodies, "
                        "%u wrong msg_id, %u unacknowledged but stored\n", EPS[ep], lost,
                tc->dups[ep], tc->strangers[ep], tc->bad_body[ep], tc->bad_id[ep], kept);
        bad += lost + tc->dups[ep] + tc->strangers[ep] + tc->bad_body[ep] + tc->bad_id[ep];
    }
    assert_true(acked > 0);
    assert_int_equal(tc->bad_delivered, 0);
    assert_int_equal(bad, 0);
    assert_int_equal(pending_before, stored); /* every stored publish is pending on "p" */
}

static void test_kill9_rounds(void **state)
{
    (void)state;
    tcrash_t *tc = calloc(1, sizeof *tc);
    mqhub_client_opts_t o = {.timeout_ms = 5000, .window = WINDOW};
    const char *env = getenv("TOPIC_CRASH_SEED");
    unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
    char err[256];

    assert_non_null(tc);
    fprintf(stderr, "topic crash: seed %u (TOPIC_CRASH_SEED)\n", seed);
    srand(seed);
    assert_int_equal(testhub_start(&tc->hub, mqhubd_path, NULL), 0);
    assert_int_equal(mqhub_client_connect(&tc->c, tc->hub.address, &o, err, sizeof err), 0);
    create_topology(tc->c);
    for (int r = 0; r < ROUNDS; r++)
        round_trip(tc, testhub_now_ms() + 30 + (uint64_t)(rand() % 120));
    for (int ep = EP_A; ep <= EP_HOT; ep++)
        drain_queue(tc, ep);
    uint64_t pending_before = push_stat(tc, "pending");
    drain_push(tc);
    report_and_check(tc, pending_before);
    assert_int_equal(push_stat(tc, "pending"), 0);
    mqhub_client_close(tc->c);
    testhub_cleanup(&tc->hub);
    free(tc);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_kill9_rounds)};
    mqhubd_path = testhub_binary(argc, argv);
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
