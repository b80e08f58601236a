/* fsm_ephemeral_test.c: ephemeral push subscriptions in the FSM — created
 * with the owner the node writes, shown by subscription.get, bounded per
 * owner (a session asking for 1000 gets 64), deleted by `sub.reap {owner}`
 * (its session closed) or `sub.reap {keep}` (a new leader), the same on a
 * replica restored from a snapshot. Hostile: no owner, a queue or http
 * endpoint, another session's name, a malformed reap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fsm_harness.h"

#define EPH "'endpoint':{'push':true},'ephemeral':true"

static json_t *sub_get(harness_t *h, const char *name)
{
    return h_read(h, "{'op':'subscription.get','topic':'t','name':'%s'}", name);
}

static void test_create_and_get(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'t'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'e'," EPH ",'owner':'1.ab.7'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'d','endpoint':{'push':true}}");
    json_t *r = sub_get(h, "e");
    assert_true(json_is_true(json_object_get(r, "ephemeral")));
    assert_string_equal(h_str(r, "owner"), "1.ab.7");
    json_decref(r);
    r = sub_get(h, "d");
    assert_true(json_is_false(json_object_get(r, "ephemeral")));
    assert_null(json_object_get(r, "owner"));
    json_decref(r);
    /* its owner may create it again; another session may not take it */
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'e'," EPH ",'owner':'1.ab.7'}");
    H_EXPECT(h, "EXISTS", "{'op':'subscription.create','topic':'t','name':'e'," EPH ",'owner':'1.ab.8'}");
    H_EXPECT(h, "EXISTS", "{'op':'subscription.create','topic':'t','name':'e','endpoint':{'push':true}}");
    H_EXPECT(h, "EXISTS", "{'op':'subscription.create','topic':'t','name':'d'," EPH ",'owner':'1.ab.7'}");
    /* it is an ordinary push subscription otherwise */
    H_EXPECT(h, "", "{'op':'publish','topic':'t','body':'x'}");
    r = sub_get(h, "e");
    assert_int_equal(h_int(json_object_get(r, "stats"), "pending"), 1);
    json_decref(r);
}

static void test_hostile_creates(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'t'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    /* without the node's owner field (not through a node) */
    H_EXPECT(h, "BAD_REQUEST", "{'op':'subscription.create','topic':'t','name':'e'," EPH "}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'subscription.create','topic':'t','name':'e'," EPH ",'owner':''}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'subscription.create','topic':'t','name':'e'," EPH ",'owner':7}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'subscription.create','topic':'t','name':'e',"
                               "'endpoint':{'push':true},'ephemeral':'yes','owner':'o'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'subscription.create','topic':'t','name':'e',"
                               "'endpoint':{'queue':'q'},'ephemeral':true,'owner':'o'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'subscription.create','topic':'t','name':'e',"
                               "'endpoint':{'http':'http://x'},'ephemeral':true,'owner':'o'}");
    /* ephemeral false: a durable one, an owner is ignored */
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'d',"
                    "'endpoint':{'push':true},'ephemeral':false,'owner':'o'}");
    json_t *r = sub_get(h, "d");
    assert_true(json_is_false(json_object_get(r, "ephemeral")));
    json_decref(r);
    H_EXPECT(h, "BAD_REQUEST", "{'op':'sub.reap'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'sub.reap','owner':'a','keep':'b'}");
}

/* A session asking for 1000 gets 64; another session still gets its own. */
static void test_bound_per_owner(void **state)
{
    harness_t *h = *state;
    int ok = 0;
    H_EXPECT(h, "", "{'op':'topic.create','name':'t'}");
    H_EXPECT(h, "", "{'op':'topic.create','name':'u'}");
    for (int i = 0; i < 1000; i++) {
        json_t *r = h_run(h, "{'op':'subscription.create','topic':'%s','name':'e%d'," EPH
                             ",'owner':'1.ab.7'}", i % 2 ? "t" : "u", i);
        if (h_ok(r))
            ok++;
        else
            assert_string_equal(h_code(r), "BAD_REQUEST");
        json_decref(r);
    }
    assert_int_equal(ok, 64);
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'other'," EPH ",'owner':'1.ab.8'}");
    json_t *r = h_run(h, "{'op':'sub.reap','owner':'1.ab.7'}");
    assert_int_equal(h_int(r, "deleted"), 64);
    json_decref(r);
    r = sub_get(h, "other");
    assert_true(h_ok(r));
    json_decref(r);
    /* room again */
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'again'," EPH ",'owner':'1.ab.7'}");
}

static void make_owned(harness_t *h)
{
    H_EXPECT(h, "", "{'op':'topic.create','name':'t'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'old'," EPH ",'owner':'1.aa.3'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'mine'," EPH ",'owner':'2.bb.1'}");
    H_EXPECT(h, "", "{'op':'subscription.create','topic':'t','name':'durable','endpoint':{'push':true}}");
    H_EXPECT(h, "", "{'op':'publish','topic':'t','body':'x'}");
}

/* A new leader (node 2, boot bb) keeps its own sessions' and the durable
 * ones; a replica restored from a snapshot agrees. */
static void test_reap_keep_and_snapshot(void **state)
{
    harness_t *a = *state, *b = h_open(H_T0);
    char da[65], db[65];
    make_owned(a);
    h_snapshot_restore(a, b);
    json_t *r = sub_get(b, "old");
    assert_string_equal(h_str(r, "owner"), "1.aa.3");
    json_decref(r);
    r = h_run(a, "{'op':'sub.reap','keep':'2.bb.'}");
    assert_int_equal(h_int(r, "deleted"), 1);
    json_decref(r);
    r = h_run(b, "{'op':'sub.reap','keep':'2.bb.'}");
    assert_int_equal(h_int(r, "deleted"), 1);
    json_decref(r);
    h_digest(a, da);
    h_digest(b, db);
    assert_string_equal(da, db);
    r = sub_get(a, "old");
    assert_string_equal(h_code(r), "NOT_FOUND");
    json_decref(r);
    r = sub_get(b, "mine");
    assert_true(h_ok(r));
    json_decref(r);
    r = sub_get(b, "durable");
    assert_true(h_ok(r));
    json_decref(r);
    h_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_get, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_creates, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_bound_per_owner, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_reap_keep_and_snapshot, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
