/* fsm_queue_test.c: queue ops through the FSM — create/get/set/list/delete/
 * purge, names, attribute validation with the exact codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fsm_harness.h"

static void test_create_get_defaults(void **state)
{
    harness_t *h = *state;
    json_t *r = h_run(h, "{'op':'queue.create','id':7,'name':'jobs'}");
    assert_true(h_ok(r));
    assert_int_equal(h_int(r, "id"), 7);
    json_decref(r);
    r = h_read(h, "{'op':'queue.get','id':8,'name':'jobs'}");
    assert_true(h_ok(r));
    assert_string_equal(h_str(r, "name"), "jobs");
    json_t *a = json_object_get(r, "attrs");
    assert_int_equal(h_int(a, "visibility_timeout"), 30);
    assert_int_equal(h_int(a, "polling_wait"), 0);
    assert_int_equal(h_int(a, "max_msg_size"), 65536);
    assert_int_equal(h_int(a, "retention"), 345600);
    assert_int_equal(h_int(a, "rewind_window"), 0);
    assert_int_equal(h_int(a, "max_backlog"), 0);
    assert_int_equal(h_int(a, "delay"), 0);
    assert_true(json_is_false(json_object_get(a, "ordered")));
    assert_null(json_object_get(a, "dead_letter"));
    json_t *s = json_object_get(r, "stats");
    assert_int_equal(h_int(s, "ready"), 0);
    assert_int_equal(h_int(s, "oldest_age_ms"), 0);
    json_decref(r);
}

static void test_create_idempotent_and_exists(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'visibility_timeout':60}}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'visibility_timeout':60,'x':1}}");
    H_EXPECT(h, "EXISTS", "{'op':'queue.create','name':'q','attrs':{'visibility_timeout':61}}");
    H_EXPECT(h, "EXISTS", "{'op':'queue.create','name':'q'}");
}

static void test_names(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'A.b-c_9'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'9'}");
    H_EXPECT(h, "BAD_NAME", "{'op':'queue.create','name':''}");
    H_EXPECT(h, "BAD_NAME", "{'op':'queue.create','name':'-a'}");
    H_EXPECT(h, "BAD_NAME", "{'op':'queue.create','name':'_a'}");
    H_EXPECT(h, "BAD_NAME", "{'op':'queue.create','name':'a b'}");
    H_EXPECT(h, "BAD_NAME", "{'op':'queue.create','name':'a/b'}");
    char name[70];
    memset(name, 'x', 64);
    name[64] = 0;
    H_EXPECT(h, "", "{'op':'queue.create','name':'%s'}", name);
    strcat(name, "y");
    H_EXPECT(h, "BAD_NAME", "{'op':'queue.create','name':'%s'}", name);
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':5}");
    H_EXPECT(h, "BAD_NAME", "{'op':'send','queue':'a b','body':'x'}");
}

static void test_attr_ranges(void **state)
{
    harness_t *h = *state;
    static const struct {
        const char *attr;
        long long lo, hi;
    } r[] = {{"visibility_timeout", 0, 43200}, {"polling_wait", 0, 30},
             {"max_msg_size", 1024, 1048576}, {"retention", 60, 1296000}, {"delay", 0, 3600}};
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        H_EXPECT(h, "", "{'op':'queue.create','name':'lo%zu','attrs':{'%s':%lld}}", i, r[i].attr, r[i].lo);
        H_EXPECT(h, "", "{'op':'queue.create','name':'hi%zu','attrs':{'%s':%lld}}", i, r[i].attr, r[i].hi);
        H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'x','attrs':{'%s':%lld}}", r[i].attr, r[i].hi + 1);
        if (r[i].lo > 0)
            H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'x','attrs':{'%s':%lld}}", r[i].attr, r[i].lo - 1);
        H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'x','attrs':{'%s':-1}}", r[i].attr);
        H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'x','attrs':{'%s':'5'}}", r[i].attr);
    }
    json_t *e = h_run(h, "{'op':'queue.create','name':'x','attrs':{'polling_wait':31}}");
    assert_non_null(strstr(h_str(e, "error"), "polling_wait"));
    assert_non_null(strstr(h_str(e, "error"), "between 0 and 30"));
    json_decref(e);
    /* rewind_window <= retention */
    H_EXPECT(h, "", "{'op':'queue.create','name':'rw','attrs':{'retention':600,'rewind_window':600}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'x','attrs':{'retention':600,'rewind_window':601}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'x','attrs':{'ordered':1}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'x','attrs':5}");
    /* nothing was created by the failures */
    H_EXPECT(h, "NOT_FOUND", "{'op':'queue.delete','name':'x'}");
}

static void test_dead_letter_attr(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "NOT_FOUND", "{'op':'queue.create','name':'q','attrs':{'dead_letter':{'queue':'dlq','max_receives':3}}}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'q','attrs':{'dead_letter':{'queue':'dlq','max_receives':0}}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'q','attrs':{'dead_letter':{'queue':'dlq','max_receives':1001}}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'q','attrs':{'dead_letter':{'queue':'dlq'}}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.create','name':'q','attrs':{'dead_letter':{'queue':'q','max_receives':2}}}");
    H_EXPECT(h, "BAD_NAME", "{'op':'queue.create','name':'q','attrs':{'dead_letter':{'queue':'a b','max_receives':2}}}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'dead_letter':{'queue':'dlq','max_receives':1000}}}");
    json_t *r = h_read(h, "{'op':'queue.get','name':'q'}");
    json_t *dl = json_object_get(json_object_get(r, "attrs"), "dead_letter");
    assert_string_equal(h_str(dl, "queue"), "dlq");
    assert_int_equal(h_int(dl, "max_receives"), 1000);
    json_decref(r);
}

static void test_set(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q','attrs':{'ordered':true,'delay':5}}");
    H_EXPECT(h, "", "{'op':'queue.set','name':'q','attrs':{'visibility_timeout':99}}");
    H_EXPECT(h, "", "{'op':'queue.set','name':'q','attrs':{'ordered':true}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.set','name':'q','attrs':{'ordered':false}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.set','name':'q','attrs':{'visibility_timeout':43201}}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'queue.set','name':'q'}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'queue.set','name':'nope','attrs':{}}");
    json_t *r = h_read(h, "{'op':'queue.get','name':'q'}");
    json_t *a = json_object_get(r, "attrs");
    assert_int_equal(h_int(a, "visibility_timeout"), 99);
    assert_int_equal(h_int(a, "delay"), 5);
    assert_true(json_is_true(json_object_get(a, "ordered")));
    json_decref(r);
    json_t *e = h_run(h, "{'op':'queue.set','name':'q','attrs':{'ordered':false}}");
    assert_non_null(strstr(h_str(e, "error"), "ordered"));
    json_decref(e);
}

static void test_list(void **state)
{
    harness_t *h = *state;
    const char *names[] = {"b", "a", "ab", "c", "abc"};
    for (int i = 0; i < 5; i++)
        H_EXPECT(h, "", "{'op':'queue.create','name':'%s'}", names[i]);
    json_t *r = h_read(h, "{'op':'queue.list'}");
    assert_int_equal(h_int(r, "total"), 5);
    json_t *qs = json_object_get(r, "queues");
    const char *sorted[] = {"a", "ab", "abc", "b", "c"};
    assert_int_equal(json_array_size(qs), 5);
    for (int i = 0; i < 5; i++)
        assert_string_equal(json_string_value(json_array_get(qs, i)), sorted[i]);
    json_decref(r);
    r = h_read(h, "{'op':'queue.list','prefix':'ab','offset':1,'limit':5}");
    assert_int_equal(h_int(r, "total"), 2);
    assert_int_equal(json_array_size(json_object_get(r, "queues")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "queues"), 0)), "abc");
    json_decref(r);
    r = h_read(h, "{'op':'queue.list','limit':2}");
    assert_int_equal(json_array_size(json_object_get(r, "queues")), 2);
    json_decref(r);
    r = h_read(h, "{'op':'queue.list','limit':1001}");
    assert_string_equal(h_code(r), "BAD_REQUEST");
    json_decref(r);
    r = h_read(h, "{'op':'send','queue':'a','body':'x'}");
    assert_string_equal(h_code(r), "UNKNOWN_OP");
    json_decref(r);
}

static void test_delete_purge(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    for (int i = 0; i < 3; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'q','body':'m%d'}", i);
    json_t *r = h_run(h, "{'op':'receive','queue':'q'}");
    json_decref(r);
    H_EXPECT(h, "", "{'op':'queue.purge','name':'q'}");
    r = h_read(h, "{'op':'queue.get','name':'q'}");
    json_t *s = json_object_get(r, "stats");
    assert_int_equal(h_int(s, "ready"), 0);
    assert_int_equal(h_int(s, "inflight"), 0);
    assert_int_equal(h_int(s, "sent_total"), 3);
    json_decref(r);
    r = h_run(h, "{'op':'receive','queue':'q','max':10}");
    assert_int_equal(json_array_size(json_object_get(r, "msgs")), 0);
    json_decref(r);
    /* seq keeps counting after a purge */
    r = h_run(h, "{'op':'send','queue':'q','body':'after'}");
    assert_int_equal(h_int(r, "seq"), 4);
    json_decref(r);
    H_EXPECT(h, "", "{'op':'queue.delete','name':'q'}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'queue.delete','name':'q'}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'queue.purge','name':'q'}");
    H_EXPECT(h, "NOT_FOUND", "{'op':'send','queue':'q','body':'x'}");
    r = h_read(h, "{'op':'queue.get','name':'q'}");
    assert_string_equal(h_code(r), "NOT_FOUND");
    assert_non_null(strstr(h_str(r, "error"), "queue 'q' does not exist"));
    json_decref(r);
    /* a new queue of the same name starts empty, at seq 1 */
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    r = h_run(h, "{'op':'send','queue':'q','body':'x'}");
    assert_int_equal(h_int(r, "seq"), 1);
    json_decref(r);
}

static enum ops_kind kind_of(const char *op)
{
    const ops_row_t *o = ops_find(op, strlen(op));
    return o ? o->kind : OPS_UNKNOWN;
}

static void test_op_kinds_and_unknown(void **state)
{
    harness_t *h = *state;
    assert_int_equal(kind_of("hello"), OPS_LOCAL);
    assert_int_equal(kind_of("ping"), OPS_LOCAL);
    assert_int_equal(kind_of("queue.get"), OPS_READ);
    assert_int_equal(kind_of("queue.list"), OPS_READ);
    assert_int_equal(kind_of("send"), OPS_WRITE);
    assert_int_equal(kind_of("tick"), OPS_INTERNAL);
    assert_int_equal(kind_of("sub.dead"), OPS_INTERNAL);
    assert_int_equal(kind_of("change_visibility"), OPS_WRITE);
    assert_int_equal(kind_of("sendx"), OPS_UNKNOWN);
    assert_int_equal(kind_of("cluster.add"), OPS_CLUSTER);
    assert_int_equal(kind_of("subscribe"), OPS_SESSION);
    assert_true(ops_find("receive", 7)->flags & OPS_F_LONG_POLL);
    assert_true(ops_find("hello", 5)->flags & OPS_F_PUBLIC);
    assert_false(ops_find("ping", 4)->flags & OPS_F_PUBLIC);
    H_EXPECT(h, "UNKNOWN_OP", "{'op':'nope','id':1}");
    H_EXPECT(h, "UNKNOWN_OP", "{'op':'queue.get','name':'x'}");
    H_EXPECT(h, "BAD_REQUEST", "{'id':1}");
    H_EXPECT(h, "", "{'op':'tick'}");
    /* a non-map command in an entry is a BAD_REQUEST reply, not an apply failure */
    char *cmd = "\x92\x01\x02";
    size_t len = 3;
    json_t *arr = h_entry(h, 1, &cmd, &len);
    assert_string_equal(h_code(json_array_get(arr, 0)), "BAD_REQUEST");
    json_decref(arr);
}

static void test_corrupt_entry(void **state)
{
    harness_t *h = *state;
    fsm_result_t *r = NULL;
    static const char junk[8] = {'\x93', 2, 0, '\x90', '\xc0', '\xc0', '\xc0', '\xc0'};
    assert_int_not_equal(fsm_apply_entry(h->f, junk, sizeof(junk), &r), 0);
    assert_null(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_get_defaults, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_create_idempotent_and_exists, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_names, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_attr_ranges, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_attr, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_set, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_list, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_delete_purge, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_op_kinds_and_unknown, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_entry, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
