/* delete_election_test.c: deleting a queue of 1,000,000 messages on a
 * three-node cluster causes no election (issue 12).
 *
 * Three real mqhubd nodes; one client fills a queue with 1,000,000 small
 * messages through the leader (send_batch of 256, pipelined); then, while a
 * pinger thread pings the leader every 5 ms on its own connection, the queue
 * is deleted and its storage reclaimed by ticks (docs/architecture.md
 * "Deleting and purging"). Checked: the raft term and the leader are the same
 * on every node before and after (no election); every ping is answered, the
 * slowest under PING_BOUND_MS (printed); the store's record count
 * (cluster.status {records: true}) falls back to what it was before the fill,
 * on every node (digests equal); a queue created again under the name is
 * empty. Hostile: a cluster.status whose flags are not booleans is answered
 * without them. Figures (fill rate, delete time, reclaim time, worst ping)
 * go to stdout.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testcluster.h"
#include "testhub.h"

#define QUEUE "big"
#define FILL_MESSAGES 1000000
#define BATCH 256                /* MQHUB_BATCH_MAX */
#define FILL_WINDOW 16           /* batches in flight */
#define FILL_LIMIT_MS 120000
#define RECLAIM_LIMIT_MS 60000
#define PING_EVERY_MS 5
#define PING_BOUND_MS 1000
#define CLIENT_TIMEOUT_MS 30000

static const char *g_mqhubd;
static testcluster_t g_cluster;
static mqhub_client_t *g_client; /* to the leader; closed by the teardown too */

/* ------------------------------------------------------------ requests */

/* Unpack the MessagePack in @sb into @zone: the args of a generic call. */
static msgpack_object args_of(msgpack_sbuffer *sb, msgpack_zone *zone)
{
    msgpack_object o;
    size_t off = 0;
    assert_int_equal(msgpack_unpack(sb->data, sb->size, &off, zone, &o), MSGPACK_UNPACK_SUCCESS);
    return o;
}

/* cluster.status of the node @cl talks to, with {records: true}: the
 * store's record count, the term and the leader id. */
static void status_records(mqhub_client_t *cl, int64_t *records, uint64_t *term,
                           uint64_t *leader_id)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    mqhub_response_t r;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "records", 7);
    msgpack_pack_true(&pk);
    msgpack_zone_init(&zone, 256);
    msgpack_object args = args_of(&sb, &zone);
    assert_int_equal(mqhub_client_call(cl, "cluster.status", &args, &r), 0);
    const msgpack_object *n = mqhub_map_get(&r.map, "records");
    const msgpack_object *t = mqhub_map_get(&r.map, "term");
    const msgpack_object *l = mqhub_map_get(&r.map, "leader_id");
    assert_non_null(n);
    assert_true(n->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_true(t && l);
    *records = (int64_t)n->via.u64;
    *term = t->via.u64;
    *leader_id = l->via.u64;
    mqhub_response_free(&r);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

/* Hostile: flags that are not booleans are ignored, not obeyed or refused. */
static void status_bad_flags(mqhub_client_t *cl)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    mqhub_response_t r;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "records", 7);
    msgpack_pack_str_with_body(&pk, "yes", 3);
    msgpack_pack_str_with_body(&pk, "digest", 6);
    msgpack_pack_uint64(&pk, 1);
    msgpack_zone_init(&zone, 256);
    msgpack_object args = args_of(&sb, &zone);
    assert_int_equal(mqhub_client_call(cl, "cluster.status", &args, &r), 0);
    assert_null(mqhub_map_get(&r.map, "records"));
    assert_null(mqhub_map_get(&r.map, "digest"));
    assert_non_null(mqhub_map_get(&r.map, "term"));
    mqhub_response_free(&r);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

static mqhub_client_t *connect_to(const char *address, unsigned window)
{
    mqhub_client_opts_t o = {.timeout_ms = CLIENT_TIMEOUT_MS, .window = window};
    mqhub_client_t *cl = NULL;
    for (int i = 0; i < 100 && !cl; i++)
        if (mqhub_client_connect(&cl, address, &o, NULL, 0) != 0)
            testhub_sleep_ms(100);
    assert_non_null(cl);
    return cl;
}

/* ------------------------------------------------------------- the fill */

typedef struct fill {
    long acked, failed;  /* messages */
    long batches_failed;
    char first_error[200];
} fill_t;

static void on_batch(void *arg, int status, const msgpack_object *resp, const char *errmsg)
{
    fill_t *f = arg;
    const msgpack_object *res = status == 0 ? mqhub_map_get(resp, "results") : NULL;
    if (!res || res->type != MSGPACK_OBJECT_ARRAY) {
        f->batches_failed++;
        if (!f->first_error[0])
            snprintf(f->first_error, sizeof f->first_error, "batch: %s (%d)", errmsg, status);
        return;
    }
    for (uint32_t i = 0; i < res->via.array.size; i++) {
        if (mqhub_map_get(&res->via.array.ptr[i], "msg_id"))
            f->acked++;
        else
            f->failed++;
    }
}

/* send_batch {queue, msgs: @n × {body: 16 bytes}} as call args. */
static msgpack_object batch_args(msgpack_sbuffer *sb, msgpack_zone *zone, unsigned n)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "queue", 5);
    msgpack_pack_str_with_body(&pk, QUEUE, strlen(QUEUE));
    msgpack_pack_str_with_body(&pk, "msgs", 4);
    msgpack_pack_array(&pk, n);
    for (unsigned i = 0; i < n; i++) {
        char body[17];
        snprintf(body, sizeof body, "msg-%012u", i);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "body", 4);
        msgpack_pack_bin_with_body(&pk, body, 16);
    }
    return args_of(sb, zone);
}

/* Fill QUEUE with FILL_MESSAGES through @address; the time it took in ms. */
static uint64_t fill_queue(const char *address)
{
    mqhub_client_t *cl = connect_to(address, FILL_WINDOW);
    msgpack_sbuffer sb, tail_sb;
    msgpack_zone zone;
    fill_t f = {0};

    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&tail_sb);
    msgpack_zone_init(&zone, 64 * 1024);
    msgpack_object full = batch_args(&sb, &zone, BATCH);
    msgpack_object tail = batch_args(&tail_sb, &zone, FILL_MESSAGES % BATCH ? FILL_MESSAGES % BATCH
                                                                             : BATCH);
    uint64_t t0 = testcluster_now_ms();
    for (long sent = 0; sent < FILL_MESSAGES; sent += BATCH) {
        const msgpack_object *args = sent + BATCH <= FILL_MESSAGES ? &full : &tail;
        assert_int_equal(mqhub_client_call_async(cl, "send_batch", args, on_batch, &f), 0);
        assert_true(testcluster_now_ms() - t0 < FILL_LIMIT_MS);
    }
    assert_int_equal(mqhub_client_flush(cl, CLIENT_TIMEOUT_MS), 0);
    uint64_t ms = testcluster_now_ms() - t0;
    long batches = (FILL_MESSAGES + BATCH - 1) / BATCH;
    printf("fill: %ld batches of up to %d (16-byte bodies) in %llu ms: %.0f messages/s; "
           "%ld acknowledged, %ld refused, %ld batches failed %s\n",
           batches, BATCH, (unsigned long long)ms, (double)f.acked * 1000.0 / (double)(ms ? ms : 1),
           f.acked, f.failed, f.batches_failed, f.first_error);
    assert_int_equal(f.batches_failed, 0);
    assert_int_equal(f.failed, 0);
    assert_int_equal(f.acked, FILL_MESSAGES);
    assert_true(ms < FILL_LIMIT_MS);
    mqhub_client_close(cl);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&tail_sb);
    return ms;
}

/* ------------------------------------------------------------ the pinger */

typedef struct pinger {
    const char *address;
    volatile int stop;
    bool running;
    long pings, failures;
    uint64_t worst_ms, worst_at; /* worst_at: ms since the pinger started */
    pthread_t th;
} pinger_t;

static pinger_t g_pinger;

static void *pinger_run(void *arg)
{
    pinger_t *p = arg;
    mqhub_client_opts_t o = {.timeout_ms = 10000};
    mqhub_client_t *cl = NULL;
    if (mqhub_client_connect(&cl, p->address, &o, NULL, 0) != 0) {
        p->failures++;
        return NULL;
    }
    uint64_t start = testcluster_now_ms();
    while (!p->stop) {
        uint64_t t = testcluster_now_ms();
        int rc = mqhub_client_ping(cl);
        uint64_t ms = testcluster_now_ms() - t;
        if (rc != 0)
            p->failures++;
        p->pings++;
        if (ms > p->worst_ms) {
            p->worst_ms = ms;
            p->worst_at = t - start;
        }
        testhub_sleep_ms(PING_EVERY_MS);
    }
    mqhub_client_close(cl);
    return NULL;
}

static void pinger_stop(pinger_t *p)
{
    if (!p->running)
        return;
    p->stop = 1;
    pthread_join(p->th, NULL);
    p->running = false;
}

/* ------------------------------------------------------------- the test */

static void test_delete_without_election(void **state)
{
    (void)state;
    testcluster_t *c = &g_cluster;
    uint64_t start = testcluster_now_ms();
    assert_int_equal(testcluster_start(c, g_mqhubd, 3, 3, NULL), 0);
    int leader = testcluster_leader(c, 20000);
    assert_true(leader >= 0);
    const char *at = c->nodes[leader].address;
    mqhub_client_t *cl = g_client = connect_to(at, 0);
    status_bad_flags(cl);
    assert_int_equal(mqhub_client_queue_create(cl, QUEUE, NULL), 0);

    int64_t base, records;
    uint64_t term0, leader0, term, lead;
    status_records(cl, &base, &term0, &leader0);
    fill_queue(at);
    mqhub_queue_info_t qi;
    assert_int_equal(mqhub_client_queue_get(cl, QUEUE, &qi), 0);
    assert_int_equal(qi.stats.ready, FILL_MESSAGES);
    status_records(cl, &records, &term, &lead);
    printf("store: %lld records before the fill, %lld after\n", (long long)base,
           (long long)records);
    /* one record per message: a body this small is inside it */
    assert_true(records >= base + (int64_t)qi.stats.ready);

    /* The leader may have changed during the fill (not what is tested): the
     * election check starts here. */
    int now_leader = testcluster_leader(c, 20000);
    assert_true(now_leader >= 0);
    if (now_leader != leader) {
        mqhub_client_close(cl);
        at = c->nodes[now_leader].address;
        cl = g_client = connect_to(at, 0);
    }
    status_records(cl, &records, &term0, &leader0);
    pinger_t *p = &g_pinger;
    *p = (pinger_t){.address = at};
    assert_int_equal(pthread_create(&p->th, NULL, pinger_run, p), 0);
    p->running = true;
    testhub_sleep_ms(500);

    uint64_t t0 = testcluster_now_ms();
    assert_int_equal(mqhub_client_queue_delete(cl, QUEUE), 0);
    uint64_t delete_ms = testcluster_now_ms() - t0;
    do {
        testhub_sleep_ms(200);
        status_records(cl, &records, &term, &lead);
    } while (records > base && testcluster_now_ms() - t0 < RECLAIM_LIMIT_MS);
    uint64_t reclaim_ms = testcluster_now_ms() - t0;
    testhub_sleep_ms(500);
    pinger_stop(p);
    printf("queue.delete answered in %llu ms; reclaimed (%lld records left, %lld before the "
           "fill) %llu ms after it\n", (unsigned long long)delete_ms, (long long)records,
           (long long)base, (unsigned long long)reclaim_ms);
    printf("pings to the leader every %d ms: %ld, %ld failed, worst %llu ms at +%llu ms "
           "(bound %d ms)\n", PING_EVERY_MS, p->pings, p->failures,
           (unsigned long long)p->worst_ms, (unsigned long long)p->worst_at, PING_BOUND_MS);

    /* No election: same term and leader on every node; each reclaimed too
     * (a follower may apply the last ticks a moment after the leader). */
    for (unsigned i = 0; i < c->n; i++) {
        mqhub_client_t *ni = connect_to(c->nodes[i].address, 0);
        uint64_t t = testcluster_now_ms();
        int64_t nr;
        status_records(ni, &nr, &term, &lead);
        while (nr > base && testcluster_now_ms() - t < 10000) {
            testhub_sleep_ms(100);
            status_records(ni, &nr, &term, &lead);
        }
        mqhub_client_close(ni);
        printf("node %u: term %llu (before %llu), leader %llu (before %llu), %lld records\n",
               i + 1, (unsigned long long)term, (unsigned long long)term0,
               (unsigned long long)lead, (unsigned long long)leader0, (long long)nr);
        assert_int_equal(term, term0);
        assert_int_equal(lead, leader0);
        assert_true(nr <= base);
    }
    assert_int_equal(p->failures, 0);
    assert_true(p->pings > 0);
    assert_true(p->worst_ms < PING_BOUND_MS);
    assert_true(records <= base);

    /* The name starts afresh; the nodes agree. */
    assert_int_equal(mqhub_client_queue_create(cl, QUEUE, NULL), 0);
    assert_int_equal(mqhub_client_queue_get(cl, QUEUE, &qi), 0);
    assert_int_equal(qi.stats.ready, 0);
    mqhub_receive_opts_t ro = {.max = 16, .wait = 0, .visibility = -1};
    mqhub_msg_list_t ml;
    assert_int_equal(mqhub_client_receive(cl, QUEUE, &ro, &ml), 0);
    assert_int_equal(ml.n, 0);
    mqhub_msg_list_free(&ml);
    mqhub_client_close(cl);
    g_client = NULL;
    int conv = testcluster_converged(c, 30000);
    printf("digests %s; %llu s in all\n", conv == 0 ? "equal" : "DIFFER",
           (unsigned long long)(testcluster_now_ms() - start) / 1000);
    if (conv)
        testcluster_dump_logs(c);
    assert_int_equal(conv, 0);
}

/* Teardown, also after a failed assertion: no daemon outlives the test. */
static int stop_cluster(void **state)
{
    (void)state;
    pinger_stop(&g_pinger);
    mqhub_client_close(g_client);
    g_client = NULL;
    testcluster_cleanup(&g_cluster);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_delete_without_election, stop_cluster)};
    g_mqhubd = getenv("MQHUBD");
    if ((!g_mqhubd || !*g_mqhubd) && argc > 1)
        g_mqhubd = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
