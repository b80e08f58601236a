/* failover_test.c: three real mqhubd nodes under a steady load of sends,
 * receives and deletes from several libmqhub clients (each given all three
 * addresses), while the test kills the leader (kill -9), stalls it
 * (SIGSTOP/SIGCONT) and restarts all nodes at once, in rounds with seeded
 * random timing. It measures the time to a new leader, then checks the
 * history (checker.h), and that the three nodes' state digests are equal at
 * the same applied index.
 *
 * Environment: MQHUB_SEED (default: time), MQHUB_ROUNDS (default 4; the soak
 * mode of docs/operations.md uses more), MQHUB_CLIENTS (threads per role,
 * default 2).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "checker.h"
#include "mqhub/client.h"
#include "testcluster.h"
#include "testhub.h"

#define QUEUE "orders"
#define VISIBILITY_S 2
#define CLIENT_TIMEOUT_MS 4000
#define MAX_THREADS 16

static const char *g_mqhubd;
static testcluster_t g_cluster;

typedef struct load {
    testcluster_t *c;
    checker_t *k;
    volatile int stop_send, stop_recv;
    long errors[MAX_THREADS];
} load_t;

typedef struct worker {
    load_t *l;
    unsigned index;
    pthread_t th;
} worker_t;

static mqhub_client_t *connect_all(load_t *l)
{
    mqhub_client_opts_t o = {.timeout_ms = CLIENT_TIMEOUT_MS};
    mqhub_client_t *cl = NULL;
    for (int i = 0; i < 100 && !cl; i++)
        if (mqhub_client_connect(&cl, l->c->seeds, &o, NULL, 0) != 0)
            testhub_sleep_ms(100);
    return cl;
}

static void *producer(void *arg)
{
    worker_t *w = arg;
    load_t *l = w->l;
    mqhub_client_t *cl = connect_all(l);
    for (uint64_t seq = 0; cl && !l->stop_send; seq++) {
        char body[17];
        uint64_t key = (uint64_t)w->index << 32 | seq;
        snprintf(body, sizeof body, "%016llx", (unsigned long long)key);
        int rc = mqhub_client_send(cl, QUEUE, body, 16, NULL, NULL);
        if (rc == 0)
            checker_sent(l->k, key);
        else
            l->errors[w->index]++;
    }
    mqhub_client_close(cl);
    return NULL;
}

/* The client port of the node @cl talks to now (for the checker's report). */
static unsigned via_port(mqhub_client_t *cl)
{
    const char *colon = strrchr(mqhub_client_address(cl), ':');
    return colon ? (unsigned)atoi(colon + 1) : 0;
}

/* Receive once and delete what came; false when nothing came. */
static bool consume_once(load_t *l, mqhub_client_t *cl, long *errors)
{
    mqhub_receive_opts_t ro = {.max = 16, .wait = 1, .visibility = -1};
    mqhub_msg_list_t ml;
    uint64_t issued = testcluster_now_ms();
    int rc = mqhub_client_receive(cl, QUEUE, &ro, &ml);
    uint64_t answered = testcluster_now_ms();
    if (rc != 0) {
        (*errors)++;
        return true;
    }
    const char *receipts[16];
    uint64_t keys[16];
    int st[16];
    for (size_t i = 0; i < ml.n; i++) {
        keys[i] = strtoull(ml.msgs[i].body, NULL, 16);
        receipts[i] = ml.msgs[i].receipt;
        checker_received(l->k, keys[i], issued, answered, ml.msgs[i].receive_count,
                         via_port(cl));
    }
    bool got = ml.n > 0;
    if (got && mqhub_client_delete(cl, QUEUE, receipts, ml.n, st) == 0) {
        uint64_t acked = testcluster_now_ms();
        for (size_t i = 0; i < ml.n; i++)
            if (st[i] == 0)
                checker_deleted(l->k, keys[i], acked);
    } else if (got) {
        (*errors)++;
    }
    mqhub_msg_list_free(&ml);
    return got;
}

static void *consumer(void *arg)
{
    worker_t *w = arg;
    load_t *l = w->l;
    mqhub_client_t *cl = connect_all(l);
    while (cl && !l->stop_recv)
        consume_once(l, cl, &l->errors[w->index]);
    mqhub_client_close(cl);
    return NULL;
}

typedef struct figures {
    uint64_t elect_min, elect_max, elect_sum;
    unsigned elections;
} figures_t;

static void note_election(figures_t *f, uint64_t ms)
{
    if (f->elections == 0 || ms < f->elect_min)
        f->elect_min = ms;
    if (ms > f->elect_max)
        f->elect_max = ms;
    f->elect_sum += ms;
    f->elections++;
}

/* Wait for a leader other than @old (or any when @old < 0); its time. */
static uint64_t await_leader(testcluster_t *c, int old, figures_t *f, uint64_t t0)
{
    int l;
    do {
        l = testcluster_leader(c, 20000);
    } while (l >= 0 && l == old && testcluster_now_ms() < t0 + 20000);
    assert_true(l >= 0 && l != old);
    uint64_t ms = testcluster_now_ms() - t0;
    note_election(f, ms);
    return ms;
}

static void round_kill(testcluster_t *c, figures_t *f, unsigned *seed)
{
    int old = testcluster_leader(c, 20000);
    assert_true(old >= 0);
    uint64_t t0 = testcluster_now_ms();
    testcluster_kill(c, (unsigned)old);
    uint64_t ms = await_leader(c, old, f, t0);
    printf("t=%llu round kill -9 node %d (:%u): new leader in %llu ms\n", (unsigned long long)t0,
           old + 1, c->nodes[old].port, (unsigned long long)ms);
    testhub_sleep_ms(200 + (unsigned)rand_r(seed) % 1500);
    assert_int_equal(testcluster_start_node(c, (unsigned)old), 0);
}

static void round_pause(testcluster_t *c, figures_t *f, unsigned *seed)
{
    int old = testcluster_leader(c, 20000);
    assert_true(old >= 0);
    uint64_t t0 = testcluster_now_ms();
    testcluster_pause(c, (unsigned)old);
    uint64_t ms = await_leader(c, old, f, t0);
    printf("t=%llu round SIGSTOP node %d (:%u): new leader in %llu ms\n", (unsigned long long)t0,
           old + 1, c->nodes[old].port, (unsigned long long)ms);
    testhub_sleep_ms(500 + (unsigned)rand_r(seed) % 1500);
    testcluster_resume(c, (unsigned)old);
}

static void round_restart_all(testcluster_t *c, figures_t *f)
{
    for (unsigned i = 0; i < c->n; i++)
        testcluster_kill(c, i);
    uint64_t t0 = testcluster_now_ms();
    for (unsigned i = 0; i < c->n; i++)
        assert_int_equal(testcluster_spawn(c, i), 0);
    uint64_t ms = await_leader(c, -1, f, t0);
    printf("t=%llu round restart all: leader %llu ms after the start\n", (unsigned long long)t0,
           (unsigned long long)ms);
}

/* After the load: wait out the locks, then receive until the queue is empty. */
static void final_drain(load_t *l)
{
    mqhub_client_t *cl = connect_all(l);
    long errors = 0;
    unsigned empty = 0;
    assert_non_null(cl);
    testhub_sleep_ms(VISIBILITY_S * 1000 + 500);
    for (int i = 0; i < 10000 && empty < 2; i++)
        empty = consume_once(l, cl, &errors) ? 0 : empty + 1;
    mqhub_client_close(cl);
}

static unsigned env_uint(const char *name, unsigned def)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 10) : def;
}

static void test_failover(void **state)
{
    unsigned seed = env_uint("MQHUB_SEED", (unsigned)time(NULL));
    unsigned rounds = env_uint("MQHUB_ROUNDS", 4);
    unsigned clients = env_uint("MQHUB_CLIENTS", 2);
    figures_t f = {0};
    char attrs[64];
    uint64_t start = testcluster_now_ms();

    printf("seed %u, %u rounds, %u producers + %u consumers\n", seed, rounds, clients,
           clients);
    if (clients < 1 || clients > MAX_THREADS / 2)
        clients = 2;
    snprintf(attrs, sizeof attrs, "queue \"%s\" { visibility_timeout = %d }", QUEUE,
             VISIBILITY_S);
    assert_int_equal(testcluster_start(&g_cluster, g_mqhubd, 3, 3, attrs), 0);
    load_t l = {.c = &g_cluster, .k = checker_new(VISIBILITY_S * 1000)};
    worker_t w[MAX_THREADS];
    /* The config's queue is created by the first leader: wait for it. */
    mqhub_client_t *cl = connect_all(&l);
    assert_non_null(cl);
    mqhub_queue_info_t qi;
    for (int i = 0; i < 100 && mqhub_client_queue_get(cl, QUEUE, &qi) != 0; i++)
        testhub_sleep_ms(100);
    mqhub_client_close(cl);
    for (unsigned i = 0; i < 2 * clients; i++) {
        w[i] = (worker_t){.l = &l, .index = i};
        pthread_create(&w[i].th, NULL, i < clients ? producer : consumer, &w[i]);
    }
    testhub_sleep_ms(1000);
    for (unsigned r = 0; r < rounds; r++) {
        switch (r % 4) {
        case 0: case 2: round_kill(&g_cluster, &f, &seed); break;
        case 1: round_pause(&g_cluster, &f, &seed); break;
        default: round_restart_all(&g_cluster, &f); break;
        }
        testhub_sleep_ms(500 + (unsigned)rand_r(&seed) % 1000);
    }
    l.stop_send = 1;
    for (unsigned i = 0; i < clients; i++)
        pthread_join(w[i].th, NULL);
    l.stop_recv = 1;
    for (unsigned i = clients; i < 2 * clients; i++)
        pthread_join(w[i].th, NULL);
    final_drain(&l);

    long sent, received, deleted, errors = 0;
    checker_counts(l.k, &sent, &received, &deleted);
    for (unsigned i = 0; i < 2 * clients; i++)
        errors += l.errors[i];
    printf("acknowledged: %ld sends, %ld deliveries, %ld deletes; %ld failed calls "
           "(lost connection or outcome unknown: not acknowledged)\n",
           sent, received, deleted, errors);
    if (f.elections)
        printf("time to a new leader: min %llu ms, avg %llu ms, max %llu ms (%u elections)\n",
               (unsigned long long)f.elect_min,
               (unsigned long long)(f.elect_sum / f.elections),
               (unsigned long long)f.elect_max, f.elections);
    long bad = checker_verify(l.k, stdout);
    int conv = testcluster_converged(&g_cluster, 20000);
    printf("digests %s; %ld violations; %llu s in all\n", conv == 0 ? "equal" : "DIFFER",
           bad, (unsigned long long)(testcluster_now_ms() - start) / 1000);
    if (bad || conv)
        testcluster_dump_logs(&g_cluster);
    checker_free(l.k);
    assert_true(sent > 0);
    assert_int_equal(bad, 0);
    assert_int_equal(conv, 0);
}

/* Teardown, also after a failed assertion: no daemon outlives the test. */
static int stop_cluster(void **state)
{
    testcluster_cleanup(&g_cluster);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_failover, stop_cluster)};
    g_mqhubd = getenv("MQHUBD");
    if ((!g_mqhubd || !*g_mqhubd) && argc > 1)
        g_mqhubd = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
