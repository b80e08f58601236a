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
 * It runs in slices (the row is flagged OPS_F_SLICED; fsm_read_start): each
 * looks at SLICE_MSGS messages at most and stops after about SLICE_STEPS Lua
 * instructions, and entries may be applied in between. So everything it
 * keeps is on its own heap object (struct test): the position by seq, the
 * counters and its overlay (moved into sc->test_ov for the slice); the
 * script and the topic are looked up by name again at every slice, and one
 * deleted or replaced meanwhile ends the test with an error. Called without
 * a slice (fsm_read), it runs every slice at once.
 *
 * Start reading at backtest_op_test(); test_slice() runs one slice,
 * test_visit() handles one message.
 */
#include <stdlib.h>
#include <string.h>

#include "script_int.h"

#define TEST_MAX 100000     /* messages script.test visits */
#define SLICE_MSGS 1000     /* messages one slice looks at, at most */
#define SLICE_STEPS 2000000 /* Lua instructions after which a slice stops */

struct test {
    uint64_t version; /* the script's at the first slice */
    bool hook, started;
    topic_visit_t pos;
    uint64_t messages, calls, errors, refused, matched, publishes;
    hmap_t ov; /* the test's writes, sc->test_ov during a slice */
    /* during a slice */
    scripts_t *sc;
    sentry_t *e;
    uint64_t steps;
};

static void test_free(void *arg)
{
    struct test *t = arg;
    script_ov_clear(&t->ov);
    hmap_free(&t->ov);
    free(t);
}

static int test_visit(void *arg, const fsm_push_msg_t *m)
{
    struct test *t = arg;
    scripts_t *sc = t->sc;
    char err[320];
    if (t->messages >= TEST_MAX || t->steps >= SLICE_STEPS)
        return 1; /* all visited, or this slice's work done */
    t->messages++;
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
    /* the instance now, so that its instructions count too (the call below
     * finds it made) */
    script_instance(sc, t->e, err, sizeof(err));
    t->steps += sc->steps;
    int rc = t->hook ? script_run_hook(sc, t->e, m, err, sizeof(err))
                     : script_call(sc, t->e, "filter", m, 1, err, sizeof(err));
    t->steps += sc->steps;
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

/* The blocks the backtest made (in overlay @m), in key order. */
static void pack_test_blocks(const hmap_t *m, msgpack_packer *pk)
{
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

static void pack_result(cmd_t *c, const struct test *t)
{
    const char *names[] = {"messages", "calls", "errors", "refused", "matched", "publishes"};
    uint64_t nums[] = {t->messages, t->calls, t->errors, t->refused, t->matched, t->publishes};
    cmd_reply_key(c, "kind");
    mp_pack_str(c->pk, t->hook ? "hook" : "filter", t->hook ? 4 : 6);
    for (int i = 0; i < 6; i++) {
        cmd_reply_key(c, names[i]);
        msgpack_pack_uint64(c->pk, nums[i]);
    }
    cmd_reply_key(c, "blocks");
    pack_test_blocks(&t->ov, c->pk);
}

/* The script of the request, the same as at the first slice: 0, or why
 * not (deleted or loaded again since). */
static int test_script(cmd_t *c, struct test *t)
{
    const char *name;
    size_t nl;
    int rc = script_arg(c->sc, c, &t->e);
    if (rc == MQHUB_ENOT_FOUND && t->started && cmd_arg_name(c, c->req, "name", &name, &nl) == 0)
        return cmd_fail(c, rc, "script '%.*s' was deleted during the test", (int)nl, name);
    if (rc == 0 && t->started && t->e->version != t->version)
        return cmd_fail(c, MQHUB_EUNAVAILABLE,
                        "script '%s' was loaded again during the test; run the test again",
                        t->e->name);
    return rc;
}

/* One slice: sets c->slice->more when messages are left. */
static int test_slice(cmd_t *c, struct test *t)
{
    scripts_t *sc = c->sc;
    const char *topic;
    size_t tl;
    uint64_t now = sc->now, id = t->pos.topic_id;
    int rc;
    if ((rc = test_script(c, t)) || (rc = cmd_arg_name(c, c->req, "topic", &topic, &tl)))
        return rc;
    t->sc = sc;
    t->steps = 0;
    t->pos.max = SLICE_MSGS;
    sc->test_ov = t->ov;
    sc->test_pubs = t->publishes;
    sc->testing = true;
    rc = topic_visit_since(sc->ts, topic, tl, &t->pos, test_visit, t);
    sc->testing = false;
    t->publishes = sc->test_pubs;
    t->ov = sc->test_ov;
    hmap_init(&sc->test_ov);
    sc->now = now;
    sc->gen++;
    if (t->started && (rc || t->pos.topic_id != id))
        return cmd_fail(c, MQHUB_ENOT_FOUND, "topic '%.*s' was deleted during the test",
                        (int)tl, topic);
    if (rc)
        return cmd_fail(c, rc, "topic '%.*s' does not exist", (int)tl, topic);
    t->started = true;
    c->slice->more = !t->pos.end && t->messages < TEST_MAX;
    return 0;
}

/* The first slice: the arguments, the script's kind (hook or filter). */
static int test_start(cmd_t *c, cmd_slice_t *s)
{
    scripts_t *sc = c->sc;
    const char *topic;
    size_t tl;
    sentry_t *e;
    struct test *t;
    uint64_t since = 0;
    int rc;
    if ((rc = script_arg(sc, c, &e)) || (rc = cmd_arg_name(c, c->req, "topic", &topic, &tl)) ||
        (rc = cmd_arg_uint(c, c->req, "since", 0, UINT64_MAX, &since)) ||
        (rc = script_instance(sc, e, c->err, sizeof(c->err))))
        return rc;
    if (!(t = calloc(1, sizeof(*t))))
        return cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
    lua_rawgeti(sc->L, LUA_REGISTRYINDEX, e->env_ref);
    t->hook = lua_getfield(sc->L, -1, "on_message") == LUA_TFUNCTION;
    lua_pop(sc->L, 2);
    sc->gen++;
    t->version = e->version;
    t->pos.since = since;
    hmap_init(&t->ov);
    s->state = t;
    s->free = test_free;
    return test_slice(c, t);
}

/* A read: every write goes to an overlay that is dropped at the end, the
 * counters are not touched, hub.publish is only counted. */
int backtest_op_test(cmd_t *c)
{
    cmd_slice_t whole = {0};
    bool sliced = c->slice != NULL;
    int rc;
    if (!sliced)
        c->slice = &whole;
    do {
        c->slice->more = false;
        rc = c->slice->state ? test_slice(c, c->slice->state) : test_start(c, c->slice);
    } while (rc == 0 && !sliced && c->slice->more);
    if (rc == 0 && !c->slice->more && c->pk)
        pack_result(c, c->slice->state);
    if (!sliced) {
        if (whole.state)
            test_free(whole.state);
        c->slice = NULL;
    }
    return rc;
}
