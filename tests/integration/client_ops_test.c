/* client_ops_test.c: every op of the protocol's Session, Queues and Messages
 * sections through libmqhub against one real mqhubd: queue lifecycle and
 * attributes, send/receive/delete, long-poll timing, visibility expiry,
 * dead-letter, rewind, ordered groups, dedup, batches (send_batch, and
 * publish_batch seen through a topic's queue endpoints), the pipelined API,
 * the generic call, call timeouts and reconnecting after a restart.
 */
#include <setjmp.h>
#include <signal.h>
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

typedef struct fixture {
    testhub_t hub;
    mqhub_client_t *c;
} fixture_t;

static const char *mqhubd_path;

static mqhub_client_t *connect_to(const testhub_t *h, int timeout_ms)
{
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.timeout_ms = timeout_ms, .window = 16};
    char err[256];
    int rc = mqhub_client_connect(&c, h->address, &o, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "connect: %s\n", err);
    assert_int_equal(rc, 0);
    return c;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f || testhub_start(&f->hub, mqhubd_path, NULL) != 0)
        return -1;
    f->c = connect_to(&f->hub, 5000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    mqhub_client_close(f->c);
    testhub_cleanup(&f->hub);
    free(f);
    return 0;
}

static void must(mqhub_client_t *c, int rc)
{
    if (rc != 0)
        fprintf(stderr, "call failed: %s: %s\n", mqhub_err_name(rc), mqhub_client_errmsg(c));
    assert_int_equal(rc, 0);
}

static uint64_t send_text(mqhub_client_t *c, const char *q, const char *body,
                          const mqhub_send_opts_t *o)
{
    mqhub_send_result_t r;
    must(c, mqhub_client_send(c, q, body, strlen(body), o, &r));
    assert_int_equal(r.status, 0);
    assert_true(r.msg_id[0] != '\0');
    return r.seq;
}

static void recv_n(mqhub_client_t *c, const char *q, unsigned max, int wait,
                   mqhub_msg_list_t *l)
{
    mqhub_receive_opts_t o = {.max = max, .wait = wait, .visibility = -1};
    must(c, mqhub_client_receive(c, q, &o, l));
}

static void delete_one(mqhub_client_t *c, const char *q, const char *receipt, int expect)
{
    int st = 99;
    must(c, mqhub_client_delete(c, q, &receipt, 1, &st));
    assert_int_equal(st, expect);
}

/* ------------------------------------------------------------- session */

static void test_session(void **state)
{
    fixture_t *f = *state;
    mqhub_server_info_t info;
    must(f->c, mqhub_client_ping(f->c));
    must(f->c, mqhub_client_hello(f->c, NULL, "ops-test", &info));
    assert_string_equal(info.server, "mqhub");
    assert_int_equal(info.version, 1);
    assert_true(info.max_frame >= 1024);
    assert_string_equal(mqhub_client_address(f->c), f->hub.address);
}

/* -------------------------------------------------------------- queues */

static void test_queue_lifecycle(void **state)
{
    fixture_t *f = *state;
    mqhub_queue_attrs_t a = {0};
    mqhub_queue_info_t info;
    mqhub_queue_list_t l;

    assert_int_equal(mqhub_queue_attrs_parse(&a, "visibility_timeout", "45"), 0);
    assert_int_equal(mqhub_queue_attrs_parse(&a, "polling_wait", "2"), 0);
    assert_int_equal(mqhub_queue_attrs_parse(&a, "max_msg_size", "2048"), 0);
    assert_int_equal(mqhub_queue_attrs_parse(&a, "retention", "600"), 0);
    assert_int_equal(mqhub_queue_attrs_parse(&a, "rewind_window", "60"), 0);
    assert_int_equal(mqhub_queue_attrs_parse(&a, "max_backlog", "10"), 0);
    assert_int_equal(mqhub_queue_attrs_parse(&a, "nonsense", "1"), MQHUB_EBAD_REQUEST);
    must(f->c, mqhub_client_queue_create(f->c, "lc-a", &a));
    must(f->c, mqhub_client_queue_create(f->c, "lc-a", &a)); /* equal attrs: ok */
    must(f->c, mqhub_client_queue_create(f->c, "lc-b", NULL));

    must(f->c, mqhub_client_queue_get(f->c, "lc-a", &info));
    assert_string_equal(info.name, "lc-a");
    assert_int_equal(info.attrs.visibility_timeout, 45);
    assert_int_equal(info.attrs.polling_wait, 2);
    assert_int_equal(info.attrs.max_msg_size, 2048);
    assert_int_equal(info.attrs.retention, 600);
    assert_int_equal(info.attrs.rewind_window, 60);
    assert_int_equal(info.attrs.max_backlog, 10);
    assert_true(info.attrs.set & MQHUB_ATTR_ORDERED);
    assert_false(info.attrs.ordered);

    mqhub_queue_attrs_t other = {.set = MQHUB_ATTR_VISIBILITY_TIMEOUT, .visibility_timeout = 7};
    assert_int_equal(mqhub_client_queue_create(f->c, "lc-a", &other), MQHUB_EEXISTS);
    assert_true(strlen(mqhub_client_errmsg(f->c)) > 0);

    must(f->c, mqhub_client_queue_set(f->c, "lc-a", &other));
    must(f->c, mqhub_client_queue_get(f->c, "lc-a", &info));
    assert_int_equal(info.attrs.visibility_timeout, 7);
    assert_int_equal(info.attrs.max_msg_size, 2048); /* partial update */

    mqhub_queue_attrs_t bad = {.set = MQHUB_ATTR_VISIBILITY_TIMEOUT, .visibility_timeout = 50000};
    assert_int_equal(mqhub_client_queue_set(f->c, "lc-a", &bad), MQHUB_EBAD_REQUEST);
    assert_int_equal(mqhub_client_queue_create(f->c, "-bad", NULL), MQHUB_EBAD_NAME);
    assert_int_equal(mqhub_client_queue_set(f->c, "lc-none", &other), MQHUB_ENOT_FOUND);

    must(f->c, mqhub_client_queue_list(f->c, "lc-", 0, 0, &l));
    assert_int_equal(l.total, 2);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.names[0], "lc-a");
    assert_string_equal(l.names[1], "lc-b");
    mqhub_queue_list_free(&l);
    must(f->c, mqhub_client_queue_list(f->c, "lc-", 1, 1, &l));
    assert_int_equal(l.n, 1);
    assert_string_equal(l.names[0], "lc-b");
    mqhub_queue_list_free(&l);

    /* purge drops messages, keeps the queue */
    send_text(f->c, "lc-b", "one", NULL);
    send_text(f->c, "lc-b", "two", NULL);
    must(f->c, mqhub_client_queue_get(f->c, "lc-b", &info));
    assert_int_equal(info.stats.ready, 2);
    assert_int_equal(info.stats.sent_total, 2);
    must(f->c, mqhub_client_queue_purge(f->c, "lc-b"));
    must(f->c, mqhub_client_queue_get(f->c, "lc-b", &info));
    assert_int_equal(info.stats.ready, 0);

    must(f->c, mqhub_client_queue_delete(f->c, "lc-a"));
    must(f->c, mqhub_client_queue_delete(f->c, "lc-b"));
    assert_int_equal(mqhub_client_queue_get(f->c, "lc-a", &info), MQHUB_ENOT_FOUND);
    assert_int_equal(mqhub_client_queue_delete(f->c, "lc-a"), MQHUB_ENOT_FOUND);
    assert_int_equal(mqhub_client_queue_purge(f->c, "lc-a"), MQHUB_ENOT_FOUND);
}

/* ------------------------------------------------------------ messages */

static void test_send_receive_delete(void **state)
{
    fixture_t *f = *state;
    static const char body[] = {'b', 0, 'i', 'n', (char)0xff};
    mqhub_attr_t attrs[] = {{"kind", "photo"}, {"size", "big"}};
    mqhub_send_opts_t o = {.attrs = attrs, .n_attrs = 2};
    mqhub_send_result_t r;
    mqhub_msg_list_t l;
    mqhub_queue_info_t info;
    mqhub_queue_attrs_t small = {.set = MQHUB_ATTR_MAX_MSG_SIZE, .max_msg_size = 1024};
    char big[2000];

    must(f->c, mqhub_client_queue_create(f->c, "srd", &small));
    must(f->c, mqhub_client_send(f->c, "srd", body, sizeof body, &o, &r));
    recv_n(f->c, "srd", 10, 0, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.msgs[0].seq, r.seq);
    assert_string_equal(l.msgs[0].msg_id, r.msg_id);
    assert_int_equal(l.msgs[0].body_len, sizeof body);
    assert_memory_equal(l.msgs[0].body, body, sizeof body);
    assert_int_equal(l.msgs[0].n_attrs, 2);
    assert_int_equal(l.msgs[0].receive_count, 1);
    assert_true(l.msgs[0].enqueued_at > 0);
    assert_true(l.msgs[0].next_visible_at > l.msgs[0].enqueued_at);
    must(f->c, mqhub_client_queue_get(f->c, "srd", &info));
    assert_int_equal(info.stats.inflight, 1);
    delete_one(f->c, "srd", l.msgs[0].receipt, 0);
    delete_one(f->c, "srd", l.msgs[0].receipt, MQHUB_EINVALID_RECEIPT);
    mqhub_msg_list_free(&l);
    must(f->c, mqhub_client_queue_get(f->c, "srd", &info));
    assert_int_equal(info.stats.inflight + info.stats.ready, 0);
    assert_int_equal(info.stats.deleted_total, 1);

    memset(big, 'x', sizeof big);
    assert_int_equal(mqhub_client_send(f->c, "srd", big, sizeof big, NULL, &r), MQHUB_ETOO_LARGE);
    assert_int_equal(r.status, MQHUB_ETOO_LARGE);
    assert_int_equal(mqhub_client_send(f->c, "nope", "x", 1, NULL, NULL), MQHUB_ENOT_FOUND);
    recv_n(f->c, "srd", 1, 0, &l);
    assert_int_equal(l.n, 0);
    mqhub_msg_list_free(&l);
    must(f->c, mqhub_client_queue_delete(f->c, "srd"));
}

static void test_send_batch(void **state)
{
    fixture_t *f = *state;
    mqhub_batch_msg_t msgs[20];
    mqhub_send_result_t res[20];
    char bodies[20][8];
    mqhub_msg_list_t l;

    must(f->c, mqhub_client_queue_create(f->c, "batch", NULL));
    for (int i = 0; i < 20; i++) {
        snprintf(bodies[i], sizeof bodies[i], "b%d", i);
        msgs[i] = (mqhub_batch_msg_t){bodies[i], strlen(bodies[i]), NULL};
    }
    must(f->c, mqhub_client_send_batch(f->c, "batch", msgs, 20, res));
    for (int i = 0; i < 20; i++) {
        assert_int_equal(res[i].status, 0);
        if (i > 0)
            assert_int_equal(res[i].seq, res[i - 1].seq + 1);
    }
    assert_int_equal(mqhub_client_send_batch(f->c, "batch", msgs, 0, res), MQHUB_EBAD_REQUEST);
    recv_n(f->c, "batch", 256, 0, &l);
    assert_int_equal(l.n, 20);
    for (int i = 0; i < 20; i++)
        assert_string_equal(l.msgs[i].body, bodies[i]); /* in order */
    mqhub_msg_list_free(&l);
    must(f->c, mqhub_client_queue_delete(f->c, "batch"));
}

/* A topic (max_msg_size at its minimum) with two queue endpoints: "pb-all"
 * takes every message, "pb-x" those tagged "x". */
static void topic_with_queues(mqhub_client_t *c, const char *topic)
{
    static const char *const x[] = {"x"};
    mqhub_topic_attrs_t a = {.set = MQHUB_TOPIC_MAX_MSG_SIZE, .max_msg_size = MQHUB_MSG_SIZE_MIN};
    mqhub_sub_opts_t all = {.queue = "pb-all"};
    mqhub_sub_opts_t tagged = {.queue = "pb-x", .filter_tags = x, .n_filter_tags = 1};

    must(c, mqhub_client_topic_create(c, topic, &a));
    must(c, mqhub_client_queue_create(c, "pb-all", NULL));
    must(c, mqhub_client_queue_create(c, "pb-x", NULL));
    must(c, mqhub_client_sub_create(c, topic, "all", &all));
    must(c, mqhub_client_sub_create(c, topic, "x", &tagged));
}

static uint64_t published_total(mqhub_client_t *c, const char *topic)
{
    mqhub_topic_info_t t;
    must(c, mqhub_client_topic_get(c, topic, &t));
    uint64_t n = t.published_total;
    mqhub_topic_info_free(&t);
    return n;
}

/* Receive everything ready in @q and compare the bodies, in order. */
static void expect_bodies(mqhub_client_t *c, const char *q, const char *const *bodies, size_t n)
{
    mqhub_msg_list_t l;
    recv_n(c, q, MQHUB_RECEIVE_MAX, 0, &l);
    assert_int_equal(l.n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l.msgs[i].body, bodies[i]);
    mqhub_msg_list_free(&l);
}

/* A batch with two failing messages among good ones: one result per
 * message in order; the failures are the item's own (the request succeeds),
 * take no seq and reach no endpoint. */
static void test_publish_batch(void **state)
{
    fixture_t *f = *state;
    static const char *const x[] = {"x"}, *const six[] = {"1", "2", "3", "4", "5", "6"};
    static const char *const all_bodies[] = {"a", "c", "e"}, *const x_bodies[] = {"a"};
    static char big[MQHUB_MSG_SIZE_MIN + 1];
    mqhub_publish_opts_t tag_x = {.tags = x, .n_tags = 1}, keyed = {.key = "k.1"},
                         too_many = {.tags = six, .n_tags = MQHUB_TAGS_MAX + 1};
    mqhub_publish_msg_t msgs[] = {{"a", 1, &tag_x}, {big, sizeof big, NULL}, {"c", 1, &keyed},
                                  {"d", 1, &too_many}, {"e", 1, NULL}};
    static const int status[] = {0, MQHUB_ETOO_LARGE, 0, MQHUB_EBAD_REQUEST, 0};
    static const uint64_t seq[] = {1, 0, 2, 0, 3}, delivered[] = {2, 0, 1, 0, 1};
    mqhub_publish_result_t res[5];

    memset(big, 'z', sizeof big);
    topic_with_queues(f->c, "pb");
    must(f->c, mqhub_client_publish_batch(f->c, "pb", msgs, 5, res));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(res[i].status, status[i]);
        assert_int_equal(res[i].seq, seq[i]);
        assert_int_equal(res[i].delivered, delivered[i]);
        assert_int_equal(res[i].msg_id[0] != '\0', status[i] == 0);
        assert_int_equal(res[i].error[0] != '\0', status[i] != 0);
    }
    assert_string_not_equal(res[0].msg_id, res[2].msg_id);
    assert_int_equal(published_total(f->c, "pb"), 3);
    expect_bodies(f->c, "pb-all", all_bodies, 3);
    expect_bodies(f->c, "pb-x", x_bodies, 1);
    must(f->c, mqhub_client_topic_delete(f->c, "pb"));
    must(f->c, mqhub_client_queue_delete(f->c, "pb-all"));
    must(f->c, mqhub_client_queue_delete(f->c, "pb-x"));
}

/* MQHUB_BATCH_MAX messages go in one batch; one more, or none, is refused
 * before anything is sent. */
static void test_publish_batch_limits(void **state)
{
    fixture_t *f = *state;
    mqhub_publish_msg_t *msgs = calloc(MQHUB_BATCH_MAX + 1, sizeof *msgs);
    mqhub_publish_result_t *res = calloc(MQHUB_BATCH_MAX + 1, sizeof *res);

    assert_non_null(msgs);
    assert_non_null(res);
    must(f->c, mqhub_client_topic_create(f->c, "pb-limits", NULL));
    for (int i = 0; i <= MQHUB_BATCH_MAX; i++)
        msgs[i] = (mqhub_publish_msg_t){"m", 1, NULL};
    assert_int_equal(mqhub_client_publish_batch(f->c, "pb-limits", msgs, MQHUB_BATCH_MAX + 1, res),
                     MQHUB_EBAD_REQUEST);
    assert_non_null(strstr(mqhub_client_errmsg(f->c), "publish_batch"));
    assert_int_equal(mqhub_client_publish_batch(f->c, "pb-limits", msgs, 0, res),
                     MQHUB_EBAD_REQUEST);
    assert_int_equal(published_total(f->c, "pb-limits"), 0);
    must(f->c, mqhub_client_publish_batch(f->c, "pb-limits", msgs, MQHUB_BATCH_MAX, res));
    for (int i = 0; i < MQHUB_BATCH_MAX; i++) {
        assert_int_equal(res[i].status, 0);
        assert_int_equal(res[i].seq, (uint64_t)i + 1);
    }
    assert_int_equal(published_total(f->c, "pb-limits"), MQHUB_BATCH_MAX);
    must(f->c, mqhub_client_topic_delete(f->c, "pb-limits"));
    free(msgs);
    free(res);
}

static void test_long_poll_empty(void **state)
{
    fixture_t *f = *state;
    mqhub_msg_list_t l;
    must(f->c, mqhub_client_queue_create(f->c, "lp-empty", NULL));
    uint64_t t0 = testhub_now_ms();
    recv_n(f->c, "lp-empty", 1, 2, &l);
    uint64_t dt = testhub_now_ms() - t0;
    assert_int_equal(l.n, 0);
    assert_true(dt >= 1800 && dt <= 3500);
    mqhub_msg_list_free(&l);
}

typedef struct got {
    int calls, status;
    size_t n;
    uint64_t at;
} got_t;

static void on_receive(void *arg, int status, const msgpack_object *resp, const char *errmsg)
{
    got_t *g = arg;
    const msgpack_object *msgs = status == 0 ? mqhub_map_get(resp, "msgs") : NULL;
    g->calls++;
    g->status = status;
    g->n = msgs && msgs->type == MSGPACK_OBJECT_ARRAY ? msgs->via.array.size : 0;
    g->at = testhub_now_ms();
}

/* A waiting receive returns as soon as another connection sends. */
/* {queue: @q, wait: 10} into @args, held by @sb and @zone (the caller
 * destroys both). */
static void long_poll_args(const char *q, msgpack_sbuffer *sb, msgpack_zone *zone,
                           msgpack_object *args)
{
    msgpack_packer pk;
    size_t off = 0;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "queue", 5);
    msgpack_pack_str_with_body(&pk, q, strlen(q));
    msgpack_pack_str_with_body(&pk, "wait", 4);
    msgpack_pack_uint32(&pk, 10);
    msgpack_zone_init(zone, 1024);
    assert_int_equal(msgpack_unpack(sb->data, sb->size, &off, zone, args), MSGPACK_UNPACK_SUCCESS);
}

static void test_long_poll_wakeup(void **state)
{
    fixture_t *f = *state;
    mqhub_client_t *other = connect_to(&f->hub, 5000);
    msgpack_zone zone;
    msgpack_object args;
    msgpack_sbuffer sb;
    got_t g = {0};

    must(f->c, mqhub_client_queue_create(f->c, "lp-wake", NULL));
    long_poll_args("lp-wake", &sb, &zone, &args);
    must(f->c, mqhub_client_call_async(f->c, "receive", &args, on_receive, &g));
    assert_int_equal(mqhub_client_pending(f->c), 1);
    mqhub_client_poll(f->c, 300); /* writes it; nothing arrives yet */
    assert_int_equal(g.calls, 0);

    uint64_t t0 = testhub_now_ms();
    send_text(other, "lp-wake", "wake up", NULL);
    while (g.calls == 0 && testhub_now_ms() - t0 < 5000)
        mqhub_client_poll(f->c, 100);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.n, 1);
    assert_true(g.at - t0 < 1000);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
    mqhub_client_close(other);
}

/* Closing a handle with async requests in flight drops them without their
 * callbacks (client.h) and frees what they hold: under ASan, a leak of the
 * per-request state fails the run. */
static void test_close_in_flight(void **state)
{
    fixture_t *f = *state;
    mqhub_client_t *c = connect_to(&f->hub, 5000);
    msgpack_zone zone;
    msgpack_object args;
    msgpack_sbuffer sb;
    got_t g = {0};

    must(f->c, mqhub_client_queue_create(f->c, "lp-close", NULL));
    long_poll_args("lp-close", &sb, &zone, &args);
    must(c, mqhub_client_call_async(c, "receive", &args, on_receive, &g));
    mqhub_client_poll(c, 100); /* written, parked on the server */
    must(c, mqhub_client_call_async(c, "receive", &args, on_receive, &g)); /* not written */
    assert_int_equal(mqhub_client_pending(c), 2);
    mqhub_client_close(c);
    assert_int_equal(g.calls, 0);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

static void test_visibility(void **state)
{
    fixture_t *f = *state;
    mqhub_queue_attrs_t a = {.set = MQHUB_ATTR_VISIBILITY_TIMEOUT, .visibility_timeout = 1};
    mqhub_msg_list_t l1, l2, l3;
    uint64_t next = 0;

    must(f->c, mqhub_client_queue_create(f->c, "vis", &a));
    send_text(f->c, "vis", "again", NULL);
    recv_n(f->c, "vis", 1, 0, &l1);
    assert_int_equal(l1.n, 1);
    recv_n(f->c, "vis", 1, 0, &l2); /* locked */
    assert_int_equal(l2.n, 0);
    mqhub_msg_list_free(&l2);
    recv_n(f->c, "vis", 1, 3, &l2); /* reappears after about 1 s */
    assert_int_equal(l2.n, 1);
    assert_int_equal(l2.msgs[0].seq, l1.msgs[0].seq);
    assert_int_equal(l2.msgs[0].receive_count, 2);
    assert_string_not_equal(l2.msgs[0].receipt, l1.msgs[0].receipt);
    delete_one(f->c, "vis", l1.msgs[0].receipt, MQHUB_EINVALID_RECEIPT);
    assert_int_equal(mqhub_client_change_visibility(f->c, "vis", l1.msgs[0].receipt, 0, NULL),
                     MQHUB_EINVALID_RECEIPT);

    /* change_visibility 0: visible again at once */
    must(f->c, mqhub_client_change_visibility(f->c, "vis", l2.msgs[0].receipt, 0, &next));
    recv_n(f->c, "vis", 1, 0, &l3);
    assert_int_equal(l3.n, 1);
    assert_int_equal(l3.msgs[0].receive_count, 3);
    /* a longer lock keeps it hidden past the queue's 1 s */
    must(f->c, mqhub_client_change_visibility(f->c, "vis", l3.msgs[0].receipt, 60, &next));
    assert_true(next > l3.msgs[0].enqueued_at);
    mqhub_msg_list_free(&l2);
    recv_n(f->c, "vis", 1, 2, &l2);
    assert_int_equal(l2.n, 0);
    delete_one(f->c, "vis", l3.msgs[0].receipt, 0);
    mqhub_msg_list_free(&l1);
    mqhub_msg_list_free(&l2);
    mqhub_msg_list_free(&l3);
}

static void test_dead_letter(void **state)
{
    fixture_t *f = *state;
    mqhub_queue_attrs_t a = {.set = MQHUB_ATTR_VISIBILITY_TIMEOUT, .visibility_timeout = 1};
    mqhub_msg_list_t l;

    must(f->c, mqhub_client_queue_create(f->c, "dlq", NULL));
    assert_int_equal(mqhub_queue_attrs_parse(&a, "dead_letter", "dlq:2"), 0);
    must(f->c, mqhub_client_queue_create(f->c, "work", &a));
    send_text(f->c, "work", "poison", NULL);
    for (int i = 1; i <= 2; i++) {
        recv_n(f->c, "work", 1, 3, &l);
        assert_int_equal(l.n, 1);
        assert_int_equal(l.msgs[0].receive_count, i);
        mqhub_msg_list_free(&l);
    }
    /* Past max_receives, the next receive of "work" moves it to the dead-letter
     * queue instead of delivering it. */
    usleep(1500 * 1000);
    recv_n(f->c, "work", 1, 0, &l);
    assert_int_equal(l.n, 0);
    mqhub_msg_list_free(&l);
    recv_n(f->c, "dlq", 1, 2, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.msgs[0].body, "poison");
    mqhub_msg_list_free(&l);
    recv_n(f->c, "work", 1, 0, &l);
    assert_int_equal(l.n, 0);
    mqhub_msg_list_free(&l);
}

static void test_rewind(void **state)
{
    fixture_t *f = *state;
    mqhub_queue_attrs_t a = {.set = MQHUB_ATTR_REWIND_WINDOW | MQHUB_ATTR_RETENTION,
                             .rewind_window = 600, .retention = 3600};
    mqhub_msg_list_t l;
    uint64_t n = 0, t = 0;
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    t = (uint64_t)ts.tv_sec * 1000 - 60000;
    must(f->c, mqhub_client_queue_create(f->c, "rew", &a));
    uint64_t first = send_text(f->c, "rew", "r1", NULL);
    send_text(f->c, "rew", "r2", NULL);
    send_text(f->c, "rew", "r3", NULL);
    recv_n(f->c, "rew", 10, 0, &l);
    assert_int_equal(l.n, 3);
    for (size_t i = 0; i < l.n; i++)
        delete_one(f->c, "rew", l.msgs[i].receipt, 0);
    mqhub_msg_list_free(&l);

    uint64_t seq = first + 1;
    must(f->c, mqhub_client_queue_rewind(f->c, "rew", NULL, &seq, &n));
    assert_int_equal(n, 2);
    recv_n(f->c, "rew", 10, 0, &l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.msgs[0].body, "r2");
    for (size_t i = 0; i < l.n; i++)
        delete_one(f->c, "rew", l.msgs[i].receipt, 0);
    mqhub_msg_list_free(&l);

    must(f->c, mqhub_client_queue_rewind(f->c, "rew", &t, NULL, &n));
    assert_int_equal(n, 3);
    recv_n(f->c, "rew", 10, 0, &l);
    assert_int_equal(l.n, 3);
    mqhub_msg_list_free(&l);
    assert_int_equal(mqhub_client_queue_rewind(f->c, "rew-none", &t, NULL, &n), MQHUB_ENOT_FOUND);
}

static void test_ordered_groups(void **state)
{
    fixture_t *f = *state;
    mqhub_queue_attrs_t a = {.set = MQHUB_ATTR_ORDERED, .ordered = true};
    mqhub_send_opts_t g1 = {.group = "g1"}, g2 = {.group = "g2"};
    mqhub_msg_list_t l, l2;

    must(f->c, mqhub_client_queue_create(f->c, "fifo", &a));
    send_text(f->c, "fifo", "a1", &g1);
    send_text(f->c, "fifo", "a2", &g1);
    send_text(f->c, "fifo", "b1", &g2);
    recv_n(f->c, "fifo", 10, 0, &l); /* one message per group at a time */
    assert_int_equal(l.n, 2);
    assert_string_equal(l.msgs[0].body, "a1");
    assert_string_equal(l.msgs[0].group, "g1");
    assert_string_equal(l.msgs[1].body, "b1");
    recv_n(f->c, "fifo", 10, 0, &l2);
    assert_int_equal(l2.n, 0);
    mqhub_msg_list_free(&l2);
    delete_one(f->c, "fifo", l.msgs[0].receipt, 0);
    recv_n(f->c, "fifo", 10, 0, &l2);
    assert_int_equal(l2.n, 1);
    assert_string_equal(l2.msgs[0].body, "a2");
    mqhub_msg_list_free(&l);
    mqhub_msg_list_free(&l2);
}

static void test_dedup(void **state)
{
    fixture_t *f = *state;
    mqhub_send_opts_t o = {.dedup_id = "order-42"};
    mqhub_send_result_t r1, r2;
    mqhub_queue_info_t info;

    must(f->c, mqhub_client_queue_create(f->c, "dedup", NULL));
    must(f->c, mqhub_client_send(f->c, "dedup", "pay", 3, &o, &r1));
    must(f->c, mqhub_client_send(f->c, "dedup", "pay", 3, &o, &r2));
    assert_string_equal(r1.msg_id, r2.msg_id);
    assert_int_equal(r1.seq, r2.seq);
    must(f->c, mqhub_client_queue_get(f->c, "dedup", &info));
    assert_int_equal(info.stats.ready, 1);
}

static void test_delay(void **state)
{
    fixture_t *f = *state;
    mqhub_send_opts_t o = {.has_delay = true, .delay = 1};
    mqhub_msg_list_t l;
    mqhub_queue_info_t info;

    must(f->c, mqhub_client_queue_create(f->c, "delayed", NULL));
    send_text(f->c, "delayed", "later", &o);
    must(f->c, mqhub_client_queue_get(f->c, "delayed", &info));
    assert_int_equal(info.stats.delayed, 1);
    recv_n(f->c, "delayed", 1, 0, &l);
    assert_int_equal(l.n, 0);
    mqhub_msg_list_free(&l);
    recv_n(f->c, "delayed", 1, 3, &l);
    assert_int_equal(l.n, 1);
    mqhub_msg_list_free(&l);
}

typedef struct sent {
    int calls, failures;
    uint64_t last_seq;
    bool in_order;
} sent_t;

static void on_sent(void *arg, const mqhub_send_result_t *r)
{
    sent_t *s = arg;
    s->calls++;
    s->failures += r->status != 0;
    if (r->seq <= s->last_seq)
        s->in_order = false;
    s->last_seq = r->seq;
}

static void test_pipelined(void **state)
{
    fixture_t *f = *state;
    sent_t s = {.in_order = true};
    mqhub_queue_info_t info;

    must(f->c, mqhub_client_queue_create(f->c, "pipe", NULL));
    for (int i = 0; i < 500; i++)
        must(f->c, mqhub_client_send_async(f->c, "pipe", "p", 1, NULL, on_sent, &s));
    assert_true(mqhub_client_pending(f->c) <= 16 + 1);
    must(f->c, mqhub_client_flush(f->c, 10000));
    assert_int_equal(s.calls, 500);
    assert_int_equal(s.failures, 0);
    assert_true(s.in_order);
    assert_int_equal(mqhub_client_pending(f->c), 0);
    must(f->c, mqhub_client_queue_get(f->c, "pipe", &info));
    assert_int_equal(info.stats.ready, 500);
}

static void test_generic_call(void **state)
{
    fixture_t *f = *state;
    mqhub_response_t r;
    msgpack_object_kv kv;
    msgpack_object args = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = 1, .ptr = &kv}};
    kv.key = (msgpack_object){.type = MSGPACK_OBJECT_STR, .via.str = {4, "name"}};
    kv.val = (msgpack_object){.type = MSGPACK_OBJECT_STR, .via.str = {4, "pipe"}};

    must(f->c, mqhub_client_call(f->c, "queue.get", &args, &r));
    assert_non_null(mqhub_map_get(&r.map, "stats"));
    mqhub_response_free(&r);
    assert_int_equal(mqhub_client_call(f->c, "no.such.op", NULL, &r), MQHUB_EUNKNOWN_OP);
    assert_null(r.zone);
    assert_int_equal(mqhub_client_call(f->c, "queue.get", NULL, &r), MQHUB_EBAD_REQUEST);
    assert_non_null(strstr(mqhub_client_errmsg(f->c), "name"));
}

/* A stopped server: calls end with TIMEOUT; a long-poll stretches its timeout. */
static void test_timeouts(void **state)
{
    fixture_t *f = *state;
    mqhub_client_t *c = connect_to(&f->hub, 300);
    mqhub_msg_list_t l;

    must(c, mqhub_client_queue_create(c, "tmo", NULL));
    recv_n(c, "tmo", 1, 1, &l); /* wait 1 s > timeout 300 ms: still fine */
    assert_int_equal(l.n, 0);
    mqhub_msg_list_free(&l);
    kill(f->hub.pid, SIGSTOP);
    uint64_t t0 = testhub_now_ms();
    int rc = mqhub_client_ping(c);
    uint64_t dt = testhub_now_ms() - t0;
    kill(f->hub.pid, SIGCONT);
    assert_int_equal(rc, MQHUB_ETIMEOUT);
    assert_true(dt >= 250 && dt < 2000);
    must(c, mqhub_client_ping(c)); /* the late answer is dropped, the next works */
    mqhub_client_close(c);
}

/* After a restart the same handle reconnects; the state survived. */
static void test_reconnect(void **state)
{
    fixture_t *f = *state;
    mqhub_queue_info_t info;
    must(f->c, mqhub_client_queue_create(f->c, "survivor", NULL));
    send_text(f->c, "survivor", "still here", NULL);
    assert_int_equal(testhub_stop(&f->hub), 0);
    assert_int_equal(testhub_restart(&f->hub), 0);
    int rc = mqhub_client_ping(f->c);
    if (rc == MQHUB_ECONN) /* the first call learns the old connection died */
        rc = mqhub_client_ping(f->c);
    must(f->c, rc);
    must(f->c, mqhub_client_queue_get(f->c, "survivor", &info));
    assert_int_equal(info.stats.ready, 1);
}

static void test_connect_refused(void **state)
{
    mqhub_client_t *c = (mqhub_client_t *)1;
    char err[256] = "";
    (void)state;
    assert_int_equal(mqhub_client_connect(&c, "127.0.0.1:1", NULL, err, sizeof err), MQHUB_ECONN);
    assert_null(c);
    assert_non_null(strstr(err, "127.0.0.1:1"));
    assert_int_equal(mqhub_client_connect(&c, "no-port", NULL, err, sizeof err), MQHUB_ECONN);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_session),
        cmocka_unit_test(test_queue_lifecycle),
        cmocka_unit_test(test_send_receive_delete),
        cmocka_unit_test(test_send_batch),
        cmocka_unit_test(test_publish_batch),
        cmocka_unit_test(test_publish_batch_limits),
        cmocka_unit_test(test_long_poll_empty),
        cmocka_unit_test(test_long_poll_wakeup),
        cmocka_unit_test(test_close_in_flight),
        cmocka_unit_test(test_visibility),
        cmocka_unit_test(test_dead_letter),
        cmocka_unit_test(test_rewind),
        cmocka_unit_test(test_ordered_groups),
        cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_generic_call),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_reconnect),
    };
    mqhubd_path = testhub_binary(argc, argv);
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
