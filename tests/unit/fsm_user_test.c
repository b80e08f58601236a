/* fsm_user_test.c: named identities in the state machine (core/sm/user.c) —
 * user.create with the token's hash (never the token), grants and their
 * patterns as the hub checks them (fsm_user_may), grant/revoke, user.list,
 * user.delete, list filtering for a user (fsm_read_as), the permission
 * column of the op table, snapshot/restore keeping users, and two state
 * machines agreeing (digests).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fsm_harness.h"
#include "mp.h"

#define ALICE "alice-token-0123456789"
#define BOB "bob-token-abcdefghijklmn"

/* user.create {name, token_sha256: sha256(@token), grants: [{verb, pattern}]}
 * as the hub submits it; @grants is "verb pattern verb pattern ..." or NULL. */
static json_t *create(harness_t *h, const char *name, const char *token, const char *grants)
{
    unsigned char hash[FSM_USER_HASH_LEN];
    char copy[256], *words[32], *save = NULL;
    unsigned n = 0;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    snprintf(copy, sizeof copy, "%s", grants ? grants : "");
    for (char *w = strtok_r(copy, " ", &save); w && n < 32; w = strtok_r(NULL, " ", &save))
        words[n++] = w;
    fsm_user_hash(token, strlen(token), hash);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "user.create");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 1);
    mp_pack_cstr(&pk, "name");
    mp_pack_cstr(&pk, name);
    mp_pack_cstr(&pk, "token_sha256");
    msgpack_pack_bin(&pk, sizeof hash);
    msgpack_pack_bin_body(&pk, hash, sizeof hash);
    mp_pack_cstr(&pk, "grants");
    msgpack_pack_array(&pk, n / 2);
    for (unsigned i = 0; i + 1 < n; i += 2) {
        msgpack_pack_map(&pk, 2);
        mp_pack_cstr(&pk, "verb");
        mp_pack_cstr(&pk, words[i]);
        mp_pack_cstr(&pk, "pattern");
        mp_pack_cstr(&pk, words[i + 1]);
    }
    char *cmd = sb.data;
    size_t len = sb.size;
    json_t *arr = h_entry(h, 1, &cmd, &len);
    json_t *r = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

static void create_ok(harness_t *h, const char *name, const char *token, const char *grants)
{
    json_t *r = create(h, name, token, grants);
    if (!h_ok(r))
        fail_msg("user.create %s: %s", name, json_dumps(r, JSON_COMPACT));
    assert_string_equal(h_str(r, "name"), name);
    json_decref(r);
}

static int may(harness_t *h, const char *token, enum ops_verb verb, const char *obj)
{
    unsigned char hash[FSM_USER_HASH_LEN];
    fsm_user_hash(token, strlen(token), hash);
    return fsm_user_may(h->f, hash, verb, obj, strlen(obj));
}

static void test_create_find_may(void **state)
{
    harness_t *h = *state;
    unsigned char hash[FSM_USER_HASH_LEN];
    char name[MQHUB_NAME_MAX + 1];

    assert_int_equal(fsm_user_count(h->f), 0);
    create_ok(h, "alice", ALICE, "send payments* receive payments.in");
    assert_int_equal(fsm_user_count(h->f), 1);
    fsm_user_hash(ALICE, strlen(ALICE), hash);
    assert_int_equal(fsm_user_find(h->f, hash, name, sizeof name), 0);
    assert_string_equal(name, "alice");
    fsm_user_hash(BOB, strlen(BOB), hash);
    assert_int_equal(fsm_user_find(h->f, hash, name, sizeof name), MQHUB_EUNAUTHORIZED);
    /* patterns: prefix, exact, and what they do not cover */
    assert_int_equal(may(h, ALICE, OPS_V_SEND, "payments.in"), 0);
    assert_int_equal(may(h, ALICE, OPS_V_SEND, "payments"), 0);
    assert_int_equal(may(h, ALICE, OPS_V_SEND, "paymentz"), MQHUB_EFORBIDDEN);
    assert_int_equal(may(h, ALICE, OPS_V_RECEIVE, "payments.in"), 0);
    assert_int_equal(may(h, ALICE, OPS_V_RECEIVE, "payments.in2"), MQHUB_EFORBIDDEN);
    assert_int_equal(may(h, ALICE, OPS_V_PUBLISH, "payments.in"), MQHUB_EFORBIDDEN);
    assert_int_equal(may(h, ALICE, OPS_V_ANY, "payments.x"), 0);
    assert_int_equal(may(h, ALICE, OPS_V_ANY, "orders"), MQHUB_EFORBIDDEN);
    assert_int_equal(may(h, ALICE, OPS_V_NONE, "orders"), 0);
    /* whole-hub ops are checked as "*": a prefix grant does not cover them */
    assert_int_equal(may(h, ALICE, OPS_V_SEND, "*"), MQHUB_EFORBIDDEN);
    assert_int_equal(may(h, BOB, OPS_V_NONE, "x"), MQHUB_EUNAUTHORIZED);
    create_ok(h, "root2", BOB, "admin *");
    assert_int_equal(may(h, BOB, OPS_V_ADMIN, "*"), 0);
    assert_int_equal(may(h, BOB, OPS_V_ADMIN, "anything"), 0);
    assert_int_equal(may(h, BOB, OPS_V_SEND, "anything"), MQHUB_EFORBIDDEN);
}

static void test_create_refused(void **state)
{
    harness_t *h = *state;
    json_t *r;

    create_ok(h, "alice", ALICE, NULL);
    r = create(h, "alice", BOB, NULL);
    assert_string_equal(h_code(r), "EXISTS");
    json_decref(r);
    r = create(h, "alice2", ALICE, NULL); /* the same token as alice */
    assert_string_equal(h_code(r), "EXISTS");
    json_decref(r);
    r = create(h, "bad name!", BOB, NULL);
    assert_string_equal(h_code(r), "BAD_NAME");
    json_decref(r);
    r = create(h, "bob", BOB, "steal *");
    assert_string_equal(h_code(r), "BAD_REQUEST");
    assert_non_null(strstr(h_str(r, "error"), "verb"));
    json_decref(r);
    const char *bad[] = {"pay*ments", "*pay", "**", ".x*", "a/b"};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char g[64];
        snprintf(g, sizeof g, "send %s", bad[i]);
        r = create(h, "bob", BOB, g);
        assert_string_equal(h_code(r), "BAD_REQUEST");
        json_decref(r);
    }
    /* a token never comes in plain: without the node's hash it is refused */
    H_EXPECT(h, "BAD_REQUEST", "{'op':'user.create','id':1,'name':'eve','token':'%s'}", BOB);
    assert_int_equal(fsm_user_count(h->f), 1);
}

static void test_grant_revoke_delete(void **state)
{
    harness_t *h = *state;
    json_t *r;

    create_ok(h, "alice", ALICE, NULL);
    assert_int_equal(may(h, ALICE, OPS_V_PUBLISH, "orders"), MQHUB_EFORBIDDEN);
    r = h_run(h, "{'op':'user.grant','id':1,'name':'alice','verb':'publish','pattern':'ord*'}");
    assert_true(h_ok(r));
    assert_true(json_is_true(json_object_get(r, "changed")));
    json_decref(r);
    assert_int_equal(may(h, ALICE, OPS_V_PUBLISH, "orders"), 0);
    r = h_run(h, "{'op':'user.grant','id':1,'name':'alice','verb':'publish','pattern':'ord*'}");
    assert_true(json_is_false(json_object_get(r, "changed")));
    json_decref(r);
    H_EXPECT(h, "NOT_FOUND", "{'op':'user.grant','id':1,'name':'nobody','verb':'send','pattern':'*'}");
    H_EXPECT(h, "BAD_REQUEST", "{'op':'user.grant','id':1,'name':'alice','verb':'send'}");
    /* user.list: names and grants, never a token or its hash */
    r = h_read(h, "{'op':'user.list','id':2}");
    assert_true(h_ok(r));
    json_t *u = json_array_get(json_object_get(r, "users"), 0);
    assert_string_equal(json_string_value(json_object_get(u, "name")), "alice");
    json_t *g = json_array_get(json_object_get(u, "grants"), 0);
    assert_string_equal(json_string_value(json_object_get(g, "verb")), "publish");
    assert_string_equal(json_string_value(json_object_get(g, "pattern")), "ord*");
    assert_null(json_object_get(u, "token"));
    assert_null(json_object_get(u, "token_sha256"));
    json_decref(r);
    r = h_run(h, "{'op':'user.revoke','id':1,'name':'alice','verb':'publish','pattern':'ord*'}");
    assert_true(json_is_true(json_object_get(r, "changed")));
    json_decref(r);
    assert_int_equal(may(h, ALICE, OPS_V_PUBLISH, "orders"), MQHUB_EFORBIDDEN);
    r = h_run(h, "{'op':'user.revoke','id':1,'name':'alice','verb':'publish','pattern':'ord*'}");
    assert_true(json_is_false(json_object_get(r, "changed")));
    json_decref(r);
    H_EXPECT(h, "", "{'op':'user.delete','id':1,'name':'alice'}");
    assert_int_equal(may(h, ALICE, OPS_V_NONE, "x"), MQHUB_EUNAUTHORIZED);
    H_EXPECT(h, "NOT_FOUND", "{'op':'user.delete','id':1,'name':'alice'}");
    assert_int_equal(fsm_user_count(h->f), 0);
    /* the name and the token are free again */
    create_ok(h, "alice", ALICE, "send x");
}

static void test_list_filtered(void **state)
{
    harness_t *h = *state;
    unsigned char hash[FSM_USER_HASH_LEN];
    msgpack_sbuffer req, out;
    msgpack_packer pk;
    msgpack_unpacked u;

    H_EXPECT(h, "", "{'op':'queue.create','id':1,'name':'payments.in'}");
    H_EXPECT(h, "", "{'op':'queue.create','id':1,'name':'orders'}");
    create_ok(h, "alice", ALICE, "receive payments*");
    fsm_user_hash(ALICE, strlen(ALICE), hash);
    msgpack_sbuffer_init(&req);
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "queue.list");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 3);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, req.data, req.size, NULL), MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer_init(&out);
    assert_int_equal(fsm_read_as(h->f, &u.data, hash, &out), 0);
    msgpack_unpacked r;
    msgpack_unpacked_init(&r);
    assert_int_equal(msgpack_unpack_next(&r, out.data, out.size, NULL), MSGPACK_UNPACK_SUCCESS);
    json_t *j = h_to_json(&r.data);
    assert_int_equal(h_int(j, "total"), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "queues"), 0)),
                        "payments.in");
    json_decref(j);
    msgpack_unpacked_destroy(&r);
    /* without a viewer: everything */
    j = h_read(h, "{'op':'queue.list','id':3}");
    assert_int_equal(h_int(j, "total"), 2);
    json_decref(j);
    msgpack_sbuffer_destroy(&out);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&req);
}

static void test_op_table_perms(void **state)
{
    (void)state;
    const ops_row_t *o = ops_find("send", 4);
    assert_int_equal(o->perm[0].verb, OPS_V_SEND);
    assert_string_equal(o->perm[0].field, "queue");
    o = ops_find("queue.create", 12);
    assert_int_equal(o->perm[0].verb, OPS_V_MANAGE);
    assert_int_equal(o->perm[1].verb, OPS_V_SEND);
    assert_string_equal(o->perm[1].field, "attrs.dead_letter.queue");
    o = ops_find("user.create", 11);
    assert_true(o->flags & OPS_F_TOKEN);
    assert_int_equal(o->perm[0].verb, OPS_V_ADMIN);
    assert_null(o->perm[0].field);
    assert_int_equal(ops_find("cluster.add", 11)->perm[0].verb, OPS_V_ADMIN);
    assert_int_equal(ops_find("script.load", 11)->perm[0].verb, OPS_V_SCRIPT);
    assert_int_equal(ops_find("subscribe", 9)->perm[0].verb, OPS_V_SUBSCRIBE);
    assert_int_equal(ops_find("ping", 4)->perm[0].verb, OPS_V_NONE);
    assert_int_equal(ops_verb_find("manage", 6), OPS_V_MANAGE);
    assert_int_equal(ops_verb_find("any", 3), OPS_V_NONE);
    assert_string_equal(ops_verb_name(OPS_V_RECEIVE), "receive");
}

static void test_snapshot_and_determinism(void **state)
{
    harness_t *a = *state, *b = h_open(H_T0), *c = h_open(H_T0);
    char da[65], db[65], dc[65];

    for (harness_t *h = a; h != NULL; h = h == a ? b : NULL) {
        create_ok(h, "alice", ALICE, "send payments* manage payments*");
        create_ok(h, "bob", BOB, "admin *");
        H_EXPECT(h, "", "{'op':'user.grant','id':1,'name':'alice','verb':'script','pattern':'risk'}");
        H_EXPECT(h, "", "{'op':'user.revoke','id':1,'name':'alice','verb':'send','pattern':'payments*'}");
    }
    h_digest(a, da);
    h_digest(b, db);
    assert_string_equal(da, db);
    h_snapshot_restore(a, c);
    h_digest(c, dc);
    assert_string_equal(da, dc);
    assert_int_equal(fsm_user_count(c->f), 2);
    assert_int_equal(may(c, ALICE, OPS_V_SCRIPT, "risk"), 0);
    assert_int_equal(may(c, ALICE, OPS_V_MANAGE, "payments.in"), 0);
    assert_int_equal(may(c, ALICE, OPS_V_SEND, "payments.in"), MQHUB_EFORBIDDEN);
    assert_int_equal(may(c, BOB, OPS_V_ADMIN, "*"), 0);
    /* restoring over a state with other users replaces them */
    create_ok(b, "carol", "carol-token-0123456789", "send x");
    h_snapshot_restore(a, b);
    assert_int_equal(fsm_user_count(b->f), 2);
    assert_int_equal(may(b, "carol-token-0123456789", OPS_V_SEND, "x"), MQHUB_EUNAUTHORIZED);
    h_close(b);
    h_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_find_may, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_create_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_grant_revoke_delete, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_list_filtered, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_op_table_perms, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_and_determinism, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
