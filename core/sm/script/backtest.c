/* backtest.c: script.test — run a script over a topic's retained messages
 * as if they were arriving again, and report what it would have done
 * (calls, errors, refusals, matches, publishes, the blocks it would make)
 * without changing anything (docs/scripting.md "Backtests: script.test").
 *
 * It is a read: the calls' writes go to a second overlay (sc->test_ov,
 * while sc->testing) that is dropped at the end, the counters are not
 * touched and hub.publish is only counted, so the state's digest is
 * unchanged. Each message gets a fresh instance and its publication time as
 * the clock; a hook sees only the blocks the backtest made itself
 * (block_check), never the live ones.
 *
 * Start reading at backtest_op_test(); test_visit() handles one message.
 */
#include <stdlib.h>
#include <string.h>

#include "script_int.h"

#define TEST_MAX 100000               /* messages script.test visits */

struct test {
    scripts_t *sc;
    sentry_t *e;
    bool hook;
    uint64_t messages, calls, errors, refused, matched;
};

static int test_visit(void *arg, const fsm_push_msg_t *m)
{
    struct test *t = arg;
    scripts_t *sc = t->sc;
    char err[320];
    if (t->messages++ >= TEST_MAX)
        return 1;
    sc->now = m->published_at;
    sc->gen++; /* a fresh instance per message */
    sc->dest = m->topic;
    sc->destlen = m->topic_len;
    sc->msg_queue = false;
    if (t->hook && block_check(sc, m->attrs, err, sizeof(err))) {
        t->refused++;
        return 0;
    }
    t->calls++;
    int rc = t->hook ? script_run_hook(sc, t->e, m, err, sizeof(err))
                     : script_call(sc, t->e, "filter", m, 1, err, sizeof(err));
    if (rc == MQHUB_ESCRIPT_ERROR)
        t->errors++;
    else if (rc == MQHUB_EBLOCKED)
        t->refused++;
    else if (!t->hook && lua_toboolean(sc->L, -1))
        t->matched++;
    if (!t->hook && rc == 0)
        lua_pop(sc->L, 1);
    return 0;
}

static int cmp_slot(const void *a, const void *b)
{
    const hmap_slot_t *x = *(hmap_slot_t *const *)a, *y = *(hmap_slot_t *const *)b;
    int c = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

/* The blocks the backtest made, in key order. */
static void pack_test_blocks(scripts_t *sc, msgpack_packer *pk)
{
    hmap_t *m = &sc->test_ov;
    hmap_slot_t **v = calloc(m->len ? m->len : 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; v && i < m->cap; i++) {
        const struct ov *o = m->slots[i].val;
        if (m->slots[i].key && m->slots[i].key[0] == 'K' && !o->del)
            v[n++] = &m->slots[i];
    }
    qsort(v, n, sizeof(*v), cmp_slot);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        const struct ov *o = v[i]->val;
        block_pack_record(pk, v[i]->key, v[i]->klen, o->v, o->vl);
    }
    free(v);
}

/* A read: every write goes to an overlay that is dropped at the end, the
 * counters are not touched, hub.publish is only counted. */
int backtest_op_test(cmd_t *c)
{
    scripts_t *sc = c->sc;
    const char *topic;
    size_t tl;
    uint64_t since = 0, now = sc->now;
    struct test t = {.sc = sc};
    int rc;
    if ((rc = script_arg(sc, c, &t.e)) ||
        (rc = cmd_arg_name(c, c->req, "topic", &topic, &tl)) ||
        (rc = cmd_arg_uint(c, c->req, "since", 0, UINT64_MAX, &since)))
        return rc;
    if ((rc = script_instance(sc, t.e, c->err, sizeof(c->err))))
        return rc;
    lua_rawgeti(sc->L, LUA_REGISTRYINDEX, t.e->env_ref);
    t.hook = lua_getfield(sc->L, -1, "on_message") == LUA_TFUNCTION;
    lua_pop(sc->L, 2);
    sc->testing = true;
    sc->test_pubs = 0;
    rc = topic_visit_since(sc->ts, topic, tl, since, test_visit, &t);
    sc->testing = false;
    sc->now = now;
    sc->gen++;
    if (rc == 0 && c->pk) {
        cmd_reply_key(c, "kind");
        mp_pack_str(c->pk, t.hook ? "hook" : "filter", t.hook ? 4 : 6);
        const char *names[] = {"messages", "calls", "errors", "refused", "matched", "publishes"};
        uint64_t nums[] = {t.messages > TEST_MAX ? TEST_MAX : t.messages, t.calls, t.errors,
                           t.refused, t.matched, sc->test_pubs};
        for (int i = 0; i < 6; i++) {
            cmd_reply_key(c, names[i]);
            msgpack_pack_uint64(c->pk, nums[i]);
        }
        cmd_reply_key(c, "blocks");
        pack_test_blocks(sc, c->pk);
    }
    script_ov_clear(&sc->test_ov);
    if (rc)
        return cmd_fail(c, rc, "topic '%.*s' does not exist", (int)tl, topic);
    return 0;
}
