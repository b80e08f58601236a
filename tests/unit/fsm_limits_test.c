/* fsm_limits_test.c: the state machine's bounds on one request (issue 12) —
 * attrs count in max_msg_size (send, publish), a receive reply stops before
 * the frame limit (the rest stay ready; a follower locks the same messages),
 * block.list filters by the read's clock, hooks looping over C library
 * functions are refused by the instruction budget within a bounded time,
 * queue.delete/purge, topic.delete and subscription.delete of any size
 * write O(1) records in apply and tick reclaims the rest in bounded chunks
 * (resuming after a snapshot restore). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fsm_harness.h"
#include "mp.h"

/* A string of @n 'x' (caller frees). */
static char *xs(size_t n)
{
    char *s = malloc(n + 1);
    memset(s, 'x', n);
    s[n] = 0;
    return s;
}

static void test_attrs_in_size(void **state)
{
    harness_t *h = *state;
    char *body = xs(600), *val = xs(500);
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'max_msg_size':1024}}");
    H_EXPECT(h, "", "{'op':'topic.create','name':'t','attrs':{'max_msg_size':1024}}");
    /* body alone fits, body + attrs does not */
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'%s','attrs':{'k':'v'}}", body);
    json_t *r = h_run(h, "{'op':'send','queue':'q','body':'%s','attrs':{'k':'%s'}}", body, val);
    assert_string_equal(h_code(r), "TOO_LARGE");
    assert_non_null(strstr(h_str(r, "error"), "body and attrs"));
    json_decref(r);
    H_EXPECT(h, "TOO_LARGE", "{'op':'send','queue':'q','body':'','attrs':{'a':'%s','b':'%s'}}",
             val, body);
    H_EXPECT(h, "", "{'op':'publish','topic':'t','body':'%s','attrs':{'k':'v'}}", body);
    H_EXPECT(h, "TOO_LARGE", "{'op':'publish','topic':'t','body':'%s','attrs':{'k':'%s'}}",
             body, val);
    /* a topic fan-out into a queue counts them too */
    H_EXPECT(h, "", "{'op':'topic.create','name':'big'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'big','name':'s',"
                    "'endpoint':{'queue':'q'}}");
    H_EXPECT(h, "", "{'op':'publish','topic':'big','body':'%s','attrs':{'k':'%s'}}", body, val);
    r = h_read(h, "{'op':'subscription.get','topic':'big','name':'s'}");
    assert_int_equal(h_int(json_object_get(r, "stats"), "failed_total"), 1);
    json_decref(r);
    free(body);
    free(val);
}

/* Send @n messages of @size bytes to queue @q. */
static void fill(harness_t *h, const char *q, int n, size_t size)
{
    char *body = xs(size);
    for (int i = 0; i < n; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'%s','body':'%s'}", q, body);
    free(body);
}

static void test_receive_stops_at_frame(void **state)
{
    harness_t *h = *state, *follower = h_open(H_T0);
    char a[65], b[65];
    fsm_set_emit(follower->f, false);
    harness_t *both[2] = {h, follower};
    for (int i = 0; i < 2; i++) {
        H_EXPECT(both[i], "", "{'op':'queue.create','name':'q','attrs':{'max_msg_size':1048576}}");
        fill(both[i], "q", 20, 1048000);
    }
    json_t *r = h_run(h, "{'op':'receive','queue':'q','max':256}");
    json_decref(h_run(follower, "{'op':'receive','queue':'q','max':256}"));
    json_t *msgs = json_object_get(r, "msgs");
    size_t n = json_array_size(msgs), bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(h_str(json_array_get(msgs, i), "body"));
    assert_true(n >= 10 && n < 20);
    assert_true(bytes < MQHUB_DEFAULT_MAX_FRAME - 65536);
    json_decref(r);
    /* the rest stayed ready, in order */
    r = h_run(h, "{'op':'receive','queue':'q','max':256}");
    json_decref(h_run(follower, "{'op':'receive','queue':'q','max':256}"));
    assert_int_equal(json_array_size(json_object_get(r, "msgs")), 20 - n);
    assert_int_equal(h_int(json_array_get(json_object_get(r, "msgs"), 0), "seq"), (int64_t)n + 1);
    json_decref(r);
    /* a follower (no reply packed) locked the same messages */
    h_digest(h, a);
    h_digest(follower, b);
    assert_string_equal(a, b);
    h_close(follower);
}

static void test_receive_stops_ordered(void **state)
{
    harness_t *h = *state;
    char *body = xs(1048000);
    H_EXPECT(h, "", "{'op':'queue.create','name':'o','attrs':{'max_msg_size':1048576,"
                    "'ordered':true}}");
    for (int i = 0; i < 20; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'o','body':'%s','group':'g%d'}", body, i % 2);
    free(body);
    json_t *r = h_run(h, "{'op':'receive','queue':'o','max':256}");
    /* one per group at a time: two messages, far below the limit */
    assert_int_equal(json_array_size(json_object_get(r, "msgs")), 2);
    json_decref(r);
    H_EXPECT(h, "", "{'op':'queue.create','name':'o2','attrs':{'max_msg_size':1048576,"
                    "'ordered':true}}");
    body = xs(1048000);
    for (int i = 0; i < 20; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'o2','body':'%s','group':'g%d'}", body, i);
    free(body);
    r = h_run(h, "{'op':'receive','queue':'o2','max':256}");
    size_t n = json_array_size(json_object_get(r, "msgs"));
    assert_true(n >= 10 && n < 20);
    json_decref(r);
    r = h_run(h, "{'op':'receive','queue':'o2','max':256}");
    assert_int_equal(json_array_size(json_object_get(r, "msgs")), 20 - n);
    json_decref(r);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Hooks that call C library functions in a loop: each call does work the
 * count hook cannot see. Each must be refused with the budget error (the
 * message accepted, as for any script error) and take a bounded time. */
static const struct {
    const char *name, *setup, *op;
} c_loops[] = {
    {"utf8_len", "local s = ('x'):rep(1024):rep(1024)", "utf8.len(s)"},
    {"gsub", "local s = ('x'):rep(1000):rep(1000)", "s:gsub('y', 'z')"},
    {"find_plain", "local s = ('x'):rep(1000):rep(1000)", "s:find('y', 1, true)"},
    {"find", "local s = ('x'):rep(1000):rep(1000)", "s:find('y')"},
    {"upper", "local s = ('x'):rep(1000):rep(1000)", "local u = s:upper()"},
    {"rep", "local s = 'x'", "local r = s:rep(1000000)"},
    {"format", "local s = ('x'):rep(1000):rep(1000)", "string.format('%s', s)"},
    {"concat", "local t = {} for i = 1, 1000 do t[i] = ('x'):rep(1000) end",
     "table.concat(t)"},
    {"sort", "local t = {} for i = 1, 100000 do t[i] = (i * 7919) % 100003 end",
     "table.sort(t)"},
    {"tonumber", "local s = ('1'):rep(1000):rep(1000)", "tonumber(s)"},
    {"json", "local s = '[' .. ('1,'):rep(1000):rep(500)", "hub.json.decode(s)"},
    {"move", "", "table.move({}, 1, 1000000000, 1)"},
    {"byte", "local s = ('x'):rep(100000)", "string.byte(s, 1, 100)"},
    {"msgpack", "local s = ('\\xc0'):rep(1000):rep(1000)", "hub.msgpack.decode(s)"},
    {"rep_small", "local s = 'x'", "s:rep(1000)"},
    {"state", "", "hub.state.get('k')"},
};

static void test_c_call_budget(void **state)
{
    harness_t *h = *state;
    char src[1024], name[32];
    for (size_t i = 0; i < sizeof c_loops / sizeof c_loops[0]; i++) {
        snprintf(name, sizeof name, "c_%s", c_loops[i].name);
        snprintf(src, sizeof src,
                 "function on_message(msg)\n  %s\n  for i = 1, 1000000 do %s end\n"
                 "  return true\nend\n", c_loops[i].setup, c_loops[i].op);
        json_t *loaded = h_script_load(h, name, src);
        if (!h_ok(loaded))
            fail_msg("load %s: %s", name, json_dumps(loaded, JSON_COMPACT));
        json_decref(loaded);
        H_EXPECT(h, "", "{'op':'queue.create','name':'%s','attrs':{'hook':'%s'}}", name, name);
        double t0 = now_ms();
        H_EXPECT(h, "", "{'op':'send','queue':'%s','body':'x'}", name);
        double ms = now_ms() - t0;
        json_t *r = h_read(h, "{'op':'script.get','name':'%s'}", name);
        const char *err = json_string_value(json_object_get(json_object_get(r, "stats"),
                                                            "last_error"));
        print_message("%-12s %7.1f ms  %s\n", c_loops[i].name, ms, err ? err : "(none)");
        if (!err || (!strstr(err, "instruction budget") && !strstr(err, "not enough memory")))
            fail_msg("%s: not refused by the budget: %s", name, json_dumps(r, JSON_COMPACT));
        json_decref(r);
        /* bounded: the target is 10 ms; the bound leaves room for sanitizers */
        if (ms > 250)
            fail_msg("%s: the refused call took %.0f ms", name, ms);
    }
}

/* Send @n small messages to @q in batches of 256. */
static void fill_fast(harness_t *h, const char *q, int n)
{
    char *spec = malloc(256 * 16 + 128);
    while (n > 0) {
        int b = n < 256 ? n : 256;
        size_t off = (size_t)sprintf(spec, "{'op':'send_batch','queue':'%s','msgs':[", q);
        for (int i = 0; i < b; i++)
            off += (size_t)sprintf(spec + off, "%s{'body':'m'}", i ? "," : "");
        sprintf(spec + off, "]}");
        json_t *r = h_run(h, "%s", spec);
        assert_true(h_ok(r));
        json_decref(r);
        n -= b;
    }
    free(spec);
}

/* The store writes of one command. */
static uint64_t writes_of(harness_t *h, const char *spec)
{
    uint64_t before = store_writes(fsm_store(h->f));
    H_EXPECT(h, "", "%s", spec);
    return store_writes(fsm_store(h->f)) - before;
}

/* Tick until the reclaim is done; the most store writes of one tick. */
static uint64_t tick_until_reclaimed(harness_t *h, int *ticks)
{
    uint64_t worst = 0;
    *ticks = 0;
    while (fsm_next_due(h->f) <= fsm_now(h->f) && *ticks < 10000) {
        uint64_t w = writes_of(h, "{'op':'tick'}");
        worst = w > worst ? w : worst;
        ++*ticks;
    }
    return worst;
}

#define BIG 100000

static void test_delete_is_o1(void **state)
{
    harness_t *h = *state, *h2 = h_open(H_T0);
    int ticks;
    char a[65], b[65];
    int64_t empty = store_count(fsm_store(h->f));
    H_EXPECT(h, "", "{'op':'queue.create','name':'big'}");
    fill_fast(h, "big", BIG);
    assert_true(store_count(fsm_store(h->f)) > BIG); /* one record per message */
    uint64_t w = writes_of(h, "{'op':'queue.delete','name':'big'}");
    print_message("queue.delete of %d messages: %llu store writes in apply\n", BIG,
                  (unsigned long long)w);
    assert_true(w <= 4);
    /* a new queue of the same name starts empty while the old one is reclaimed */
    H_EXPECT(h, "", "{'op':'queue.create','name':'big'}");
    json_t *r = h_read(h, "{'op':'queue.get','name':'big'}");
    assert_int_equal(h_int(json_object_get(r, "stats"), "ready"), 0);
    json_decref(r);
    H_EXPECT(h, "", "{'op':'tick'}");
    /* restore mid-reclaim: the reclaim resumes and both end equal */
    h_snapshot_restore(h, h2);
    uint64_t worst = tick_until_reclaimed(h, &ticks);
    print_message("reclaimed in %d ticks, at most %llu store writes per tick\n", ticks + 1,
                  (unsigned long long)worst);
    assert_true(worst <= 3 * 2048 + 16);
    tick_until_reclaimed(h2, &ticks);
    assert_true(ticks > 0);
    h_digest(h, a);
    h_digest(h2, b);
    assert_string_equal(a, b);
    H_EXPECT(h, "", "{'op':'queue.delete','name':'big'}");
    tick_until_reclaimed(h, &ticks);
    assert_int_equal(h_keys(h, 'M') + h_keys(h, 'B') + h_keys(h, 'D') + h_keys(h, 'Z'), 0);
    assert_int_equal(store_count(fsm_store(h->f)), empty + 2); /* + #now, #qid */
    h_close(h2);
}

static void test_purge_is_o1(void **state)
{
    harness_t *h = *state;
    int ticks;
    H_EXPECT(h, "", "{'op':'queue.create','name':'p','attrs':{'rewind_window':60}}");
    fill_fast(h, "p", 20000);
    H_EXPECT(h, "", "{'op':'receive','queue':'p','max':10,'visibility':1}");
    H_EXPECT(h, "", "{'op':'send','queue':'p','body':'d','delay':1}");
    uint64_t w = writes_of(h, "{'op':'queue.purge','name':'p'}");
    assert_true(w <= 4);
    json_t *r = h_read(h, "{'op':'queue.get','name':'p'}");
    assert_int_equal(h_int(json_object_get(r, "stats"), "ready"), 0);
    assert_int_equal(h_int(json_object_get(r, "stats"), "oldest_age_ms"), 0);
    json_decref(r);
    /* seqs continue; the purged messages never come back (locks, delays,
     * rewind), the new one is delivered */
    r = h_run(h, "{'op':'send','queue':'p','body':'new'}");
    assert_int_equal(h_int(r, "seq"), 20002);
    json_decref(r);
    h_advance(h, 2000);
    H_EXPECT(h, "", "{'op':'queue.rewind','name':'p','seq':1}");
    r = h_run(h, "{'op':'receive','queue':'p','max':256}");
    assert_int_equal(json_array_size(json_object_get(r, "msgs")), 1);
    assert_string_equal(h_str(json_array_get(json_object_get(r, "msgs"), 0), "body"), "new");
    json_decref(r);
    tick_until_reclaimed(h, &ticks);
    assert_true(ticks >= 4);
    r = h_read(h, "{'op':'queue.get','name':'p'}");
    assert_int_equal(h_int(json_object_get(r, "stats"), "inflight"), 1);
    json_decref(r);
}

/* Publish @n small messages to topic @t in batches of 256. */
static void publish_fast(harness_t *h, const char *t, int n)
{
    char *spec = malloc(256 * 16 + 128);
    while (n > 0) {
        int b = n < 256 ? n : 256;
        size_t off = (size_t)sprintf(spec, "{'op':'publish_batch','topic':'%s','msgs':[", t);
        for (int i = 0; i < b; i++)
            off += (size_t)sprintf(spec + off, "%s{'body':'m'}", i ? "," : "");
        sprintf(spec + off, "]}");
        json_t *r = h_run(h, "%s", spec);
        assert_true(h_ok(r));
        json_decref(r);
        n -= b;
    }
    free(spec);
}

/* topic.delete and subscription.delete of any size are O(1) in apply: the
 * retained log P and the pending set W are reclaimed by tick (the same Z
 * records as queues), bodies still referred to by queue messages are kept. */
static void test_topic_delete_is_o1(void **state)
{
    harness_t *h = *state, *h2 = h_open(H_T0);
    int ticks;
    char a[65], b[65];
    int64_t empty = store_count(fsm_store(h->f));
    H_EXPECT(h, "", "{'op':'queue.create','name':'qq'}");
    H_EXPECT(h, "", "{'op':'topic.create','name':'big'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'big','name':'sq',"
                    "'endpoint':{'queue':'qq'}}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'big','name':'sp',"
                    "'endpoint':{'push':true}}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'big','name':'sp2',"
                    "'endpoint':{'push':true}}");
    publish_fast(h, "big", BIG);
    assert_int_equal(h_keys(h, 'W'), 2 * BIG);
    uint64_t w = writes_of(h, "{'op':'subscription.delete','topic':'big','name':'sp'}");
    print_message("subscription.delete of %d pending: %llu store writes in apply\n", BIG,
                  (unsigned long long)w);
    assert_true(w <= 3);
    w = writes_of(h, "{'op':'topic.delete','name':'big'}");
    print_message("topic.delete of %d retained: %llu store writes in apply\n", BIG,
                  (unsigned long long)w);
    assert_true(w <= 8);
    /* a new topic of the same name starts empty */
    H_EXPECT(h, "", "{'op':'topic.create','name':'big'}");
    json_t *r = h_read(h, "{'op':'topic.get','name':'big'}");
    assert_int_equal(h_int(json_object_get(r, "stats"), "retained"), 0);
    json_decref(r);
    H_EXPECT(h, "", "{'op':'tick'}");
    /* restore mid-reclaim: the reclaim resumes and both end equal */
    h_snapshot_restore(h, h2);
    uint64_t worst = tick_until_reclaimed(h, &ticks);
    print_message("reclaimed in %d ticks, at most %llu store writes per tick\n", ticks + 1,
                  (unsigned long long)worst);
    assert_true(worst <= 3 * 2048 + 16);
    tick_until_reclaimed(h2, &ticks);
    assert_true(ticks > 0);
    h_digest(h, a);
    h_digest(h2, b);
    assert_string_equal(a, b);
    assert_int_equal(h_keys(h, 'P') + h_keys(h, 'W') + h_keys(h, 'Z') + h_keys(h, 'S'), 0);
    /* the queue's messages kept their bodies (G), released as they go */
    assert_int_equal(h_keys(h, 'G'), BIG);
    r = h_run(h, "{'op':'receive','queue':'qq','max':1}");
    assert_string_equal(h_str(json_array_get(json_object_get(r, "msgs"), 0), "body"), "m");
    json_decref(r);
    H_EXPECT(h, "", "{'op':'queue.delete','name':'qq'}");
    H_EXPECT(h, "", "{'op':'topic.delete','name':'big'}");
    tick_until_reclaimed(h, &ticks);
    assert_int_equal(h_keys(h, 'G') + h_keys(h, 'R') + h_keys(h, 'M') + h_keys(h, 'Z'), 0);
    assert_int_equal(store_count(fsm_store(h->f)), empty + 4); /* #now #qid #tid #sid */
    h_close(h2);
}

static uint64_t read_now;
static uint64_t read_clock(void)
{
    return read_now;
}

static const char *blocker = "function on_message(msg)\n"
                             "  hub.block{attr = 'user', value = msg.attrs.user, ttl = 1,"
                             " reason = 'r'}\n"
                             "  return true\n"
                             "end\n";

static void test_block_list_read_clock(void **state)
{
    harness_t *h = *state;
    char *cmd;
    size_t len;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mp_pack_str(&pk, "op", 2);
    mp_pack_str(&pk, "script.load", 11);
    mp_pack_str(&pk, "name", 4);
    mp_pack_str(&pk, "b", 1);
    mp_pack_str(&pk, "source", 6);
    mp_pack_str(&pk, blocker, strlen(blocker));
    cmd = sb.data;
    len = sb.size;
    json_decref(h_entry(h, 1, &cmd, &len));
    msgpack_sbuffer_destroy(&sb);
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'hook':'b'}}");
    H_EXPECT(h, "", "{'op':'send','queue':'q','body':'x','attrs':{'user':'u'}}");
    fsm_set_read_clock(h->f, read_clock);
    read_now = h->now + 500;
    json_t *r = h_read(h, "{'op':'block.list'}");
    assert_int_equal(json_array_size(json_object_get(r, "blocks")), 1);
    json_decref(r);
    /* past until, no entry applied since: the read's clock decides */
    read_now = h->now + 1000;
    r = h_read(h, "{'op':'block.list'}");
    assert_int_equal(json_array_size(json_object_get(r, "blocks")), 0);
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attrs_in_size, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_receive_stops_at_frame, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_receive_stops_ordered, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_block_list_read_clock, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_c_call_budget, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_delete_is_o1, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_purge_is_o1, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_topic_delete_is_o1, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
