/* fsm_message_test.c: message semantics through the FSM with a fake clock —
 * send/receive/delete, locks and receipts, delays, dead letters, ordered
 * groups, dedup, rewind, retention, batches, limits, the ready callback,
 * where bodies are stored (in the record or beside it; older records). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fsm_harness.h"

/* Receive up to @max from @q; returns the msgs array (caller decrefs). */
static json_t *recv_msgs(harness_t *h, const char *q, int max, const char *extra)
{
    json_t *r = h_run(h, "{'op':'receive','queue':'%s','max':%d%s}", q, max, extra ? extra : "");
    if (!h_ok(r))
        fail_msg("receive failed: %s", json_dumps(r, JSON_COMPACT));
    json_t *m = json_incref(json_object_get(r, "msgs"));
    json_decref(r);
    return m;
}

/* Receive up to @max from @q and expect @n messages, the first with @body
 * (NULL: any). */
static void expect_recv(harness_t *h, const char *q, int max, size_t n, const char *body)
{
    json_t *m = recv_msgs(h, q, max, NULL);
    assert_int_equal(json_array_size(m), n);
    if (body)
        assert_string_equal(h_str(json_array_get(m, 0), "body"), body);
    json_decref(m);
}

static int64_t qstat(harness_t *h, const char *q, const char *key)
{
    json_t *r = h_read(h, "{'op':'queue.get','name':'%s'}", q);
    int64_t v = h_int(json_object_get(r, "stats"), key);
    json_decref(r);
    return v;
}

static json_t *delete1(harness_t *h, const char *q, const char *receipt)
{
    json_t *r = h_run(h, "{'op':'delete','queue':'%s','receipts':['%s']}", q, receipt);
    json_t *res = json_incref(json_array_get(json_object_get(r, "results"), 0));
    assert_true(h_ok(r));
    json_decref(r);
    return res;
}

static void test_send_receive_delete(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    json_t *r = h_run(h, "{'op':'send','id':3,'queue':'q','body':'hello','attrs':{'k':'v'}}");
    assert_true(h_ok(r));
    assert_int_equal(h_int(r, "id"), 3);
    assert_int_equal(h_int(r, "seq"), 1);
    char msg_id[64];
    strcpy(msg_id, h_str(r, "msg_id"));
    json_decref(r);
    r = h_run(h, "{'op':'send','queue':'q','body':'two'}");
    assert_int_equal(h_int(r, "seq"), 2);
    assert_string_not_equal(h_str(r, "msg_id"), msg_id);
    json_decref(r);
    assert_int_equal(qstat(h, "q", "ready"), 2);
    assert_int_equal(fsm_queue_ready(h->f, "q", 1), 2);

    h_advance(h, 1000);
    json_t *m = recv_msgs(h, "q", 1, NULL);
    assert_int_equal(json_array_size(m), 1);
    json_t *m0 = json_array_get(m, 0);
    assert_string_equal(h_str(m0, "msg_id"), msg_id);
    assert_int_equal(h_int(m0, "seq"), 1);
    assert_string_equal(h_str(m0, "body"), "hello");
    assert_string_equal(h_str(json_object_get(m0, "attrs"), "k"), "v");
    assert_null(json_object_get(m0, "group"));
    assert_int_equal(h_int(m0, "enqueued_at"), H_T0);
    assert_int_equal(h_int(m0, "first_received_at"), H_T0 + 1000);
    assert_int_equal(h_int(m0, "next_visible_at"), H_T0 + 1000 + 30000);
    assert_int_equal(h_int(m0, "receive_count"), 1);
    assert_int_equal(qstat(h, "q", "ready"), 1);
    assert_int_equal(qstat(h, "q", "inflight"), 1);
    assert_int_equal(qstat(h, "q", "oldest_age_ms"), 1000);

    json_t *d = delete1(h, "q", h_str(m0, "receipt"));
    assert_true(h_ok(d));
    json_decref(d);
    d = delete1(h, "q", h_str(m0, "receipt"));
    assert_string_equal(h_code(d), "INVALID_RECEIPT");
    json_decref(d);
    d = delete1(h, "q", "garbage");
    assert_string_equal(h_code(d), "INVALID_RECEIPT");
    json_decref(d);
    json_decref(m);
    assert_int_equal(qstat(h, "q", "inflight"), 0);
    assert_int_equal(qstat(h, "q", "deleted_total"), 1);
    assert_int_equal(qstat(h, "q", "received_total"), 1);
    assert_int_equal(qstat(h, "q", "sent_total"), 2);
    assert_int_equal(qstat(h, "q", "retained"), 0);
    H_EXPECT(h, "BAD_REQUEST", "{'op':'delete','queue':'q','receipts':[]}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'delete','queue':'q'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'send','queue':'q'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'send','queue':'q','body':1}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'send','queue':'q','body':'x','attrs':{'a':1}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'receive','queue':'q','max':0}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'receive','queue':'q','max':257}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'receive','queue':'q','visibility':43201}");
}

static int first_key(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    (void)v, (void)vl;
    memcpy(arg, k, kl);
    return 1;
}

/* Rewrite the only message record of the store in the format of the
 * releases before bodies went into the record: its first 11 fields, the
 * body in a B record of the same key. */
static void make_old_record(harness_t *h)
{
    unsigned char k[17];
    size_t vl;
    char p = 'M';
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    store_scan(fsm_store(h->f), &p, 1, NULL, 0, first_key, k);
    char *v = store_get(fsm_store(h->f), k, sizeof(k), &vl);
    assert_non_null(v);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, v, vl, NULL), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object_array *a = &u.data.via.array;
    assert_int_equal(a->size, 13);
    assert_int_equal(a->ptr[12].type, MSGPACK_OBJECT_BIN);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 11);
    for (uint32_t i = 0; i < 11; i++)
        msgpack_pack_object(&pk, a->ptr[i]);
    assert_int_equal(store_put(fsm_store(h->f), k, sizeof(k), sb.data, sb.size), 0);
    k[0] = 'B';
    assert_int_equal(store_put(fsm_store(h->f), k, sizeof(k), a->ptr[12].via.bin.ptr,
                               a->ptr[12].via.bin.size), 0);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
    store_free(v);
}

/* Bodies up to 4096 bytes live in the message record, larger ones in a B
 * record; either kind is gone after its delete. A record written by an older
 * release (body in B, no length) is still received, and deleted with its B
 * record. */
static void test_body_storage(void **state)
{
    harness_t *h = *state;
    char big[5001];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'small'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'%s'}", big);
    assert_int_equal(h_keys(h, 'M'), 2);
    assert_int_equal(h_keys(h, 'B'), 1);
    json_t *m = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(m), 2);
    assert_string_equal(h_str(json_array_get(m, 0), "body"), "small");
    assert_string_equal(h_str(json_array_get(m, 1), "body"), big);
    for (size_t i = 0; i < 2; i++) {
        json_t *d = delete1(h, "q", h_str(json_array_get(m, i), "receipt"));
        assert_true(h_ok(d));
        json_decref(d);
    }
    json_decref(m);
    assert_int_equal(h_keys(h, 'M') + h_keys(h, 'B'), 0);

    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'from an older release'}");
    make_old_record(h);
    m = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(h_str(json_array_get(m, 0), "body"), "from an older release");
    json_t *d = delete1(h, "q", h_str(json_array_get(m, 0), "receipt"));
    assert_true(h_ok(d));
    json_decref(d);
    json_decref(m);
    assert_int_equal(h_keys(h, 'M') + h_keys(h, 'B'), 0);
}

/* The periodic tick is idle (fsm_tick_idle) only while nothing stored could
 * expire: messages, deleted-but-kept ones, dedup entries, blocks. */
static void test_tick_idle(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_true(fsm_tick_idle(h->f));
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'retention':60}}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'a'}");
    assert_false(fsm_tick_idle(h->f));
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_false(fsm_tick_idle(h->f)); /* the message expires in 60 s */
    h_advance(h, 61000);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(qstat(h, "q", "ready"), 0); /* retention removed it */
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_true(fsm_tick_idle(h->f));
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'b','dedup_id':'d1'}");
    json_t *m = recv_msgs(h, "q", 1, NULL);
    json_decref(delete1(h, "q", h_str(json_array_get(m, 0), "receipt")));
    json_decref(m);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_false(fsm_tick_idle(h->f)); /* the dedup entry lives 5 minutes */
    h_advance(h, 301000);
    H_EXPECT(h, "", "{'op':'tick'}");
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_true(fsm_tick_idle(h->f));
    H_EXPECT(h, "", "{'op':'queue.set','name':'q','attrs':{'rewind_window':30}}");
    assert_false(fsm_tick_idle(h->f));
}

static void test_lock_expiry(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'x'}");
    json_t *m = recv_msgs(h, "q", 1, ",'visibility':10");
    char receipt[64];
    strcpy(receipt, h_str(json_array_get(m, 0), "receipt"));
    json_decref(m);
    assert_int_equal(fsm_next_due(h->f), H_T0 + 10000);
    h_advance(h, 9999);
    expect_recv(h, "q", 1, 0, NULL);
    h_advance(h, 1);
    m = recv_msgs(h, "q", 1, NULL);
    assert_int_equal(json_array_size(m), 1);
    json_t *m0 = json_array_get(m, 0);
    assert_int_equal(h_int(m0, "receive_count"), 2);
    assert_int_equal(h_int(m0, "first_received_at"), H_T0);
    assert_string_not_equal(h_str(m0, "receipt"), receipt);
    json_t *d = delete1(h, "q", receipt);
    assert_string_equal(h_code(d), "INVALID_RECEIPT");
    json_decref(d);
    d = delete1(h, "q", h_str(m0, "receipt"));
    assert_true(h_ok(d));
    json_decref(d);
    json_decref(m);
}

static void test_change_visibility(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'x'}");
    json_t *m = recv_msgs(h, "q", 1, NULL);
    char receipt[64];
    strcpy(receipt, h_str(json_array_get(m, 0), "receipt"));
    json_decref(m);
    json_t *r = h_run(h, "{'op':'change_visibility','queue':'q','receipt':'%s','timeout':100}", receipt);
    assert_true(h_ok(r));
    assert_int_equal(h_int(r, "next_visible_at"), H_T0 + 100000);
    json_decref(r);
    h_advance(h, 30000); /* the original lock would have expired */
    expect_recv(h, "q", 1, 0, NULL);
    H_EXPECT(h, "BAD_REQUEST", "{'op':'change_visibility','queue':'q','receipt':'%s'}", receipt);
    H_EXPECT(h, "BAD_REQUEST", "{'op':'change_visibility','queue':'q','receipt':'%s','timeout':43201}", receipt);
    r = h_run(h, "{'op':'change_visibility','queue':'q','receipt':'%s','timeout':0}", receipt);
    assert_int_equal(h_int(r, "next_visible_at"), H_T0 + 30000);
    json_decref(r);
    assert_int_equal(qstat(h, "q", "ready"), 1);
    H_EXPECT(h, "INVALID_RECEIPT", "{'op':'change_visibility','queue':'q','receipt':'%s','timeout':5}", receipt);
    expect_recv(h, "q", 1, 1, NULL);
}

static void test_delay(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'delay':2}}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'late','delay':5}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'default'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'now','delay':0}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'send','queue':'q','body':'x','delay':3601}");
    assert_int_equal(qstat(h, "q", "delayed"), 2);
    assert_int_equal(fsm_next_due(h->f), H_T0 + 2000);
    json_t *m = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(h_str(json_array_get(m, 0), "body"), "now");
    json_decref(m);
    h_advance(h, 1999);
    expect_recv(h, "q", 10, 0, NULL);
    h_advance(h, 1);
    expect_recv(h, "q", 10, 1, "default");
    h_advance(h, 2999);
    expect_recv(h, "q", 10, 0, NULL);
    h_advance(h, 1);
    expect_recv(h, "q", 10, 1, "late");
    assert_int_equal(qstat(h, "q", "delayed"), 0);
}

static void test_dead_letter(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'dead_letter':{'queue':'dlq','max_receives':2}}}");
    json_t *r = h_run(h, "{'op':'send','queue':'q','body':'poison','attrs':{'a':'b'}}");
    char msg_id[64];
    strcpy(msg_id, h_str(r, "msg_id"));
    json_decref(r);
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'good'}");
    for (int i = 0; i < 2; i++) {
        json_t *m = recv_msgs(h, "q", 1, ",'visibility':1");
        assert_int_equal(json_array_size(m), 1);
        assert_string_equal(h_str(json_array_get(m, 0), "body"), "poison");
        json_decref(m);
        h_advance(h, 1000);
    }
    /* the third receive moves it and goes on with the next message */
    json_t *m = recv_msgs(h, "q", 1, NULL);
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(h_str(json_array_get(m, 0), "body"), "good");
    json_decref(m);
    assert_int_equal(qstat(h, "q", "ready"), 0);
    assert_int_equal(qstat(h, "dlq", "ready"), 1);
    m = recv_msgs(h, "dlq", 1, NULL);
    json_t *m0 = json_array_get(m, 0);
    assert_string_equal(h_str(m0, "msg_id"), msg_id);
    assert_string_equal(h_str(m0, "body"), "poison");
    assert_string_equal(h_str(json_object_get(m0, "attrs"), "a"), "b");
    assert_int_equal(h_int(m0, "seq"), 1);
    assert_int_equal(h_int(m0, "receive_count"), 1);
    json_decref(m);
    /* The second receive of "poison" was a redelivery, the third moved it;
     * the counts are in the Q record: a snapshot restored elsewhere has them. */
    assert_int_equal(qstat(h, "q", "redelivered_total"), 1);
    assert_int_equal(qstat(h, "q", "dead_lettered_total"), 1);
    assert_int_equal(qstat(h, "dlq", "redelivered_total"), 0);
    harness_t *copy = h_open(0);
    h_snapshot_restore(h, copy);
    assert_int_equal(qstat(copy, "q", "redelivered_total"), 1);
    assert_int_equal(qstat(copy, "q", "dead_lettered_total"), 1);
    h_close(copy);
}

/* A receive moves at most 1000 exhausted messages to the dead-letter queue
 * (they do not count toward its max); the next receives move the rest. */
static void test_dead_letter_bounded(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    for (int i = 0; i < 2500; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'q','body':'m%d'}", i);
    for (int i = 0; i < 10; i++) {
        json_t *m = recv_msgs(h, "q", 256, ",'visibility':1");
        json_decref(m);
    }
    h_advance(h, 2000);
    H_EXPECT(h, "", "{'op':'queue.set','name':'q','attrs':{'dead_letter':{'queue':'dlq','max_receives':1}}}");
    const int64_t moved[] = {1000, 2000, 2500};
    for (int i = 0; i < 3; i++) {
        json_t *m = recv_msgs(h, "q", 10, NULL);
        assert_int_equal(json_array_size(m), 0);
        json_decref(m);
        assert_int_equal(qstat(h, "dlq", "ready"), moved[i]);
        assert_int_equal(qstat(h, "q", "ready"), 2500 - moved[i]);
    }
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'fresh'}");
    expect_recv(h, "q", 10, 1, "fresh");
}

static void test_dead_letter_gone_keeps_delivering(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'dead_letter':{'queue':'dlq','max_receives':1}}}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'x'}");
    json_t *m = recv_msgs(h, "q", 1, ",'visibility':0");
    json_decref(m);
    H_EXPECT(h, "", "{'op':'queue.delete','name':'dlq'}");
    h_advance(h, 1);
    m = recv_msgs(h, "q", 1, NULL);
    assert_int_equal(json_array_size(m), 1);
    assert_int_equal(h_int(json_array_get(m, 0), "receive_count"), 2);
    json_decref(m);
}

static void test_ordered_groups(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'ordered':true}}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'a1','group':'a'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'a2','group':'a'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'b1','group':'b'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'n1'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'n2'}");
    assert_int_equal(fsm_queue_ready(h->f, "q", 1), 3);
    json_t *m = recv_msgs(h, "q", 10, ",'visibility':5");
    assert_int_equal(json_array_size(m), 3);
    assert_string_equal(h_str(json_array_get(m, 0), "body"), "a1");
    assert_string_equal(h_str(json_array_get(m, 0), "group"), "a");
    assert_string_equal(h_str(json_array_get(m, 1), "body"), "b1");
    assert_string_equal(h_str(json_array_get(m, 2), "body"), "n1");
    assert_null(json_object_get(json_array_get(m, 2), "group"));
    assert_int_equal(fsm_queue_ready(h->f, "q", 1), 0);
    json_t *again = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(again), 0);
    json_decref(again);
    /* deleting a1 unblocks a2 */
    json_t *d = delete1(h, "q", h_str(json_array_get(m, 0), "receipt"));
    json_decref(d);
    again = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(again), 1);
    assert_string_equal(h_str(json_array_get(again, 0), "body"), "a2");
    json_decref(again);
    json_decref(m);
    /* n1's lock expires: n1 comes again before n2 */
    h_advance(h, 5000);
    m = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(m), 2);
    assert_string_equal(h_str(json_array_get(m, 0), "body"), "b1");
    assert_string_equal(h_str(json_array_get(m, 1), "body"), "n1");
    assert_int_equal(h_int(json_array_get(m, 1), "receive_count"), 2);
    json_decref(m);
}

static void test_group_ignored_when_not_ordered(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'a1','group':'a'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'a2','group':'a'}");
    json_t *m = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(m), 2);
    assert_null(json_object_get(json_array_get(m, 0), "group"));
    json_decref(m);
}

static void test_dedup(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    json_t *r1 = h_run(h, "{'op':'send','queue':'q','body':'x','dedup_id':'d1'}");
    h_advance(h, 299999);
    json_t *r2 = h_run(h, "{'op':'send','queue':'q','body':'other','dedup_id':'d1'}");
    assert_int_equal(h_int(r2, "seq"), h_int(r1, "seq"));
    assert_string_equal(h_str(r2, "msg_id"), h_str(r1, "msg_id"));
    assert_int_equal(qstat(h, "q", "ready"), 1);
    assert_int_equal(qstat(h, "q", "sent_total"), 1);
    json_decref(r2);
    h_advance(h, 1);
    H_EXPECT(h, "", "{'op':'tick'}");
    r2 = h_run(h, "{'op':'send','queue':'q','body':'x','dedup_id':'d1'}");
    assert_int_equal(h_int(r2, "seq"), 2);
    json_decref(r2);
    json_decref(r1);
    /* an expired entry not yet ticked away is no repeat either */
    h_advance(h, 300000);
    r2 = h_run(h, "{'op':'send','queue':'q','body':'x','dedup_id':'d1'}");
    assert_int_equal(h_int(r2, "seq"), 3);
    json_decref(r2);
    H_EXPECT(h, "BAD_REQUEST", "{'op':'send','queue':'q','body':'x','dedup_id':''}");
}

static void test_rewind(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'rewind_window':60}}");
    for (int i = 1; i <= 3; i++) {
        H_EXPECT(h, "", "{'op':'send','queue':'q','body':'m%d'}", i);
        h_advance(h, 1000);
    }
    json_t *m = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(m), 3);
    for (int i = 0; i < 3; i++)
        json_decref(delete1(h, "q", h_str(json_array_get(m, i), "receipt")));
    json_decref(m);
    assert_int_equal(qstat(h, "q", "retained"), 3);
    assert_int_equal(qstat(h, "q", "oldest_age_ms"), 0);
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.rewind','name':'q'}");
    json_t *r = h_run(h, "{'op':'queue.rewind','name':'q','seq':2}");
    assert_int_equal(h_int(r, "rewound"), 2);
    json_decref(r);
    m = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(m), 2);
    assert_string_equal(h_str(json_array_get(m, 0), "body"), "m2");
    assert_int_equal(h_int(json_array_get(m, 0), "receive_count"), 2);
    /* rewind by time releases in-flight ones and voids their receipts */
    r = h_run(h, "{'op':'queue.rewind','name':'q','time':%llu}", (unsigned long long)H_T0 + 2000);
    assert_int_equal(h_int(r, "rewound"), 1);
    json_decref(r);
    json_t *d = delete1(h, "q", h_str(json_array_get(m, 1), "receipt"));
    assert_string_equal(h_code(d), "INVALID_RECEIPT");
    json_decref(d);
    json_decref(delete1(h, "q", h_str(json_array_get(m, 0), "receipt")));
    json_decref(m);
    m = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(h_str(json_array_get(m, 0), "body"), "m3");
    json_decref(delete1(h, "q", h_str(json_array_get(m, 0), "receipt")));
    json_decref(m);
    /* past the window the deleted ones are gone for good */
    h_advance(h, 60000);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(qstat(h, "q", "retained"), 0);
    r = h_run(h, "{'op':'queue.rewind','name':'q','seq':0}");
    assert_int_equal(h_int(r, "rewound"), 0);
    json_decref(r);
}

static void test_rewind_window_zero_drops(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'x'}");
    json_t *m = recv_msgs(h, "q", 1, NULL);
    json_decref(delete1(h, "q", h_str(json_array_get(m, 0), "receipt")));
    json_decref(m);
    json_t *r = h_run(h, "{'op':'queue.rewind','name':'q','seq':0}");
    assert_int_equal(h_int(r, "rewound"), 0);
    json_decref(r);
}

static void test_retention(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'retention':60,'rewind_window':60}}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'inflight'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'deleted'}");
    h_advance(h, 1000);
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'ready'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'delayed','delay':3600}");
    json_t *m = recv_msgs(h, "q", 2, ",'visibility':43200");
    json_decref(delete1(h, "q", h_str(json_array_get(m, 1), "receipt")));
    json_decref(m);
    assert_int_equal(qstat(h, "q", "oldest_age_ms"), 1000);
    h_advance(h, 58999);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(qstat(h, "q", "inflight"), 1);
    assert_int_equal(qstat(h, "q", "retained"), 1);
    h_advance(h, 1);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(qstat(h, "q", "inflight"), 0);
    assert_int_equal(qstat(h, "q", "retained"), 0);
    assert_int_equal(qstat(h, "q", "ready"), 1);
    assert_int_equal(qstat(h, "q", "delayed"), 1);
    h_advance(h, 1000);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(qstat(h, "q", "ready"), 0);
    assert_int_equal(qstat(h, "q", "delayed"), 0);
    expect_recv(h, "q", 10, 0, NULL);
}

static void test_retention_ordered(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'retention':60,'ordered':true}}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'old','group':'g'}");
    h_advance(h, 30000);
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'new','group':'g'}");
    h_advance(h, 30000);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(fsm_queue_ready(h->f, "q", 1), 1);
    json_t *m = recv_msgs(h, "q", 10, NULL);
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(h_str(json_array_get(m, 0), "body"), "new");
    json_decref(m);
}

static void test_send_batch(void **state)
{
    harness_t *h = *state;
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'max_msg_size':1024}}");
    json_t *r = h_run(h, "{'op':'send_batch','queue':'q','msgs':[{'body':'a'},{'body':'%s'},5,"
                         "{'body':'b','delay':9999},{'body':'c'}]}", big);
    assert_true(h_ok(r));
    json_t *res = json_object_get(r, "results");
    assert_int_equal(json_array_size(res), 5);
    assert_int_equal(h_int(json_array_get(res, 0), "seq"), 1);
    assert_string_equal(h_code(json_array_get(res, 1)), "TOO_LARGE");
    assert_string_equal(h_code(json_array_get(res, 2)), "BAD_REQUEST");
    assert_string_equal(h_code(json_array_get(res, 3)), "BAD_REQUEST");
    assert_non_null(strstr(h_str(json_array_get(res, 3), "error"), "delay"));
    assert_int_equal(h_int(json_array_get(res, 4), "seq"), 2);
    json_decref(r);
    H_EXPECT(h, "BAD_REQUEST", "{'op':'send_batch','queue':'q','msgs':[]}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'send_batch','queue':'nope','msgs':[{'body':'a'}]}");
    H_EXPECT(h, "TOO_LARGE", "{'op':'send','queue':'q','body':'%s'}", big);
    big[1024] = 0;
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'%s'}", big);
}

static void test_backlog_full(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'max_backlog':2}}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'1'}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'2','delay':10}");
    H_EXPECT(h, "BACKLOG_FULL", "{'op':'send','queue':'q','body':'3'}");
    json_t *m = recv_msgs(h, "q", 1, NULL);
    H_EXPECT(h, "BACKLOG_FULL", "{'op':'send','queue':'q','body':'3'}");
    json_decref(delete1(h, "q", h_str(json_array_get(m, 0), "receipt")));
    json_decref(m);
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'3'}");
}

struct wakes {
    int n;
    char last[80];
};

static void on_ready(void *arg, const char *q, size_t len)
{
    struct wakes *w = arg;
    w->n++;
    snprintf(w->last, sizeof(w->last), "%.*s", (int)len, q);
}

static void test_ready_callback_and_emit(void **state)
{
    harness_t *h = *state;
    struct wakes w = {0};
    fsm_set_ready_cb(h->f, on_ready, &w);
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    assert_int_equal(w.n, 0);
    char *cmds[3];
    size_t lens[3];
    for (int i = 0; i < 3; i++)
        cmds[i] = h_pack(&lens[i], "{'op':'send','queue':'q','body':'%d'}", i);
    json_decref(h_entry(h, 3, cmds, lens));
    assert_int_equal(w.n, 1); /* once per queue per entry */
    assert_string_equal(w.last, "q");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'d','delay':1}");
    assert_int_equal(w.n, 1);
    h_advance(h, 1000);
    H_EXPECT(h, "", "{'op':'tick'}");
    assert_int_equal(w.n, 2);
    /* followers: no replies, same state */
    fsm_set_emit(h->f, false);
    struct raft_buffer buf;
    fsm_result_t *r = (fsm_result_t *)1;
    assert_int_equal(fsm_entry_encode(h->now, (const char *const *)cmds, lens, 1, &buf), 0);
    assert_int_equal(fsm_apply_entry(h->f, buf.base, buf.len, &r), 0);
    assert_null(r);
    raft_free(buf.base);
    fsm_set_emit(h->f, true);
    assert_int_equal(qstat(h, "q", "ready"), 5);
    for (int i = 0; i < 3; i++)
        free(cmds[i]);
}

static void test_clock_monotonic(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    assert_int_equal(fsm_now(h->f), H_T0);
    h->now = H_T0 - 5000; /* a new leader with a slower clock */
    json_t *r = h_run(h, "{'op':'send','queue':'q','body':'x'}");
    json_decref(r);
    assert_int_equal(fsm_now(h->f), H_T0);
    json_t *m = recv_msgs(h, "q", 1, NULL);
    assert_int_equal(h_int(json_array_get(m, 0), "enqueued_at"), H_T0);
    json_decref(m);
    assert_int_equal(fsm_next_due(h->f), H_T0 + 30000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_send_receive_delete, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_body_storage, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_tick_idle, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_lock_expiry, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_change_visibility, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_delay, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_bounded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_gone_keeps_delivering, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_ordered_groups, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_group_ignored_when_not_ordered, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_dedup, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_rewind, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_rewind_window_zero_drops, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_retention, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_retention_ordered, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_send_batch, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_backlog_full, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_ready_callback_and_emit, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_clock_monotonic, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
