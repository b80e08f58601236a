/* script_tick_test.c: the script half of tick reads only the block (K) and
 * window (Y) records that are due (script.c "the expiry index") and still
 * removes exactly what a scan of every record would.
 *
 * A model keeps every record the test made with the time it expires (a
 * block at its until, a window when its latest bucket leaves the window:
 * docs/scripting.md) and applies the documented rule on every tick: the
 * expired records, at most TICK_BUDGET, the first in key order (K before Y).
 * After every tick the store's K and Y keys must be exactly the model's. A
 * copy restored from a snapshot receives the same entries and must keep the
 * same store digest. Start reading at test_many (20,000 blocks and 5,000
 * windows: rewrites with a later or earlier expiry, block.delete, a restored
 * copy, the budget ending among blocks); test_budget_in_windows ends it among
 * windows of one clock; test_rewrite_same_key is the hostile script (one
 * window rewritten on every call: stale index entries pile up, memory must
 * stay bounded, measured with the allocator's own count);
 * test_rewrite_same_due hits one window in its newest bucket: no index
 * entry each, and the window still goes when due. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#if defined(__SANITIZE_ADDRESS__)
/* The ASan runtime's count (sanitizer/allocator_interface.h, not installed). */
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

#include "fsm_harness.h"

#define TICK_BUDGET 10000 /* records a tick removes at most (docs/architecture.md) */
#define SEC 1000ULL
#define PER_CALL 1000 /* records one hook call makes */

/* Makes records lo..hi of one kind: blocks u=<i> or windows w/<i>, each
 * living ttl + (i * 7919) % spread seconds (a window: that long a window). */
static const char *maker =
    "function on_message(msg)\n"
    "  local a = msg.attrs\n"
    "  local ttl, spread = tonumber(a.ttl), tonumber(a.spread)\n"
    "  for i = tonumber(a.lo), tonumber(a.hi) do\n"
    "    local t = ttl + (i * 7919) % spread\n"
    "    local v = string.format('%06d', i)\n"
    "    if a.kind == 'b' then\n"
    "      hub.block{attr = 'u', value = v, ttl = t, reason = 'r'}\n"
    "    else\n"
    "      hub.window.add('w', v, 1, t)\n"
    "    end\n"
    "  end\n"
    "  return true\n"
    "end\n";

/* The hostile script: the same window key rewritten on every call (an
 * hour's window: its stale index entries do not come due in the test). */
static const char *hot =
    "function on_message(msg)\n"
    "  hub.window.add('hot', 'k', 1, 3600)\n"
    "  return true\n"
    "end\n";

struct rec {
    char key[16];
    size_t kl;
    uint64_t due; /* the first clock at which tick may remove it */
    bool live;
};

struct model {
    harness_t *h[2]; /* the original and (from model_restore on) a restored copy */
    int nh;
    struct rec *r; /* in store key order */
    size_t n;
    int ticks;
};

static int cmp_key(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->kl < y->kl ? x->kl : y->kl);
    return c ? c : (x->kl > y->kl) - (x->kl < y->kl);
}

static size_t rec_key(char *k, char kind, const char *name, unsigned i)
{
    int n = snprintf(k, 16, "%c%s%c%06u", kind, name, 0, i);
    return (size_t)n;
}

/* @nb blocks, @nw windows and (@with_hot) the hostile script's window. */
static void model_init(struct model *m, size_t nb, size_t nw, bool with_hot)
{
    memset(m, 0, sizeof(*m));
    m->h[0] = h_open(H_T0);
    m->nh = 1;
    m->r = calloc(nb + nw + 1, sizeof(*m->r));
    for (size_t i = 0; i < nb; i++, m->n++)
        m->r[m->n].kl = rec_key(m->r[m->n].key, 'K', "u", (unsigned)i);
    for (size_t i = 0; i < nw; i++, m->n++)
        m->r[m->n].kl = rec_key(m->r[m->n].key, 'Y', "w", (unsigned)i);
    if (with_hot) {
        memcpy(m->r[m->n].key, "Yhot\0k", 6);
        m->r[m->n++].kl = 6;
    }
    qsort(m->r, m->n, sizeof(*m->r), cmp_key);
}

static void model_free(struct model *m)
{
    for (int i = 0; i < m->nh; i++)
        h_close(m->h[i]);
    free(m->r);
}

static struct rec *model_find(struct model *m, const char *k, size_t kl)
{
    struct rec want = {.kl = kl};
    memcpy(want.key, k, kl);
    return bsearch(&want, m->r, m->n, sizeof(*m->r), cmp_key);
}

/* Run one command on every harness; each must answer @code. */
__attribute__((format(printf, 3, 4))) static void run_all(struct model *m, const char *code,
                                                          const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    for (int i = 0; i < m->nh; i++) {
        json_t *r = h_run(m->h[i], "%s", cmd);
        if (strcmp(h_code(r), code) != 0)
            fail_msg("%s: expected '%s', got %s", cmd, code, json_dumps(r, JSON_COMPACT));
        json_decref(r);
    }
}

static void setup_scripts(struct model *m)
{
    for (int i = 0; i < m->nh; i++) {
        json_t *r = h_script_load(m->h[i], "maker", maker);
        assert_true(h_ok(r));
        json_decref(r);
        r = h_script_load(m->h[i], "hot", hot);
        assert_true(h_ok(r));
        json_decref(r);
    }
    run_all(m, "", "{'op':'topic.create','name':'mk','attrs':{'hook':'maker'}}");
    run_all(m, "", "{'op':'topic.create','name':'hot','attrs':{'hook':'hot'}}");
}

/* The window record's due: its latest bucket (started at @now rounded down
 * to the bucket size, window/30) leaves the window. */
static uint64_t window_due(uint64_t now, uint64_t win_ms)
{
    uint64_t b = win_ms / 30 ? win_ms / 30 : 1;
    return now - now % b + b + win_ms;
}

/* Records lo..hi of @kind ('b' blocks, 'w' windows) made or rewritten now. */
static void make(struct model *m, char kind, unsigned lo, unsigned hi, unsigned ttl,
                 unsigned spread)
{
    uint64_t now = m->h[0]->now;
    for (unsigned a = lo; a <= hi; a += PER_CALL) {
        unsigned b = a + PER_CALL - 1 < hi ? a + PER_CALL - 1 : hi;
        run_all(m, "",
                "{'op':'publish','topic':'mk','body':'x','attrs':{'kind':'%c','lo':'%u',"
                "'hi':'%u','ttl':'%u','spread':'%u'}}",
                kind, a, b, ttl, spread);
    }
    for (unsigned i = lo; i <= hi; i++) {
        char k[16];
        struct rec *r = model_find(m, k, rec_key(k, kind == 'b' ? 'K' : 'Y',
                                                 kind == 'b' ? "u" : "w", i));
        uint64_t t = (ttl + (uint64_t)i * 7919 % spread) * SEC;
        r->due = kind == 'b' ? now + t : window_due(now, t);
        r->live = true;
    }
}

static void advance_to(struct model *m, uint64_t t)
{
    for (int i = 0; i < m->nh; i++)
        h_advance(m->h[i], t - m->h[i]->now);
}

/* From now on every command also goes to a copy restored from a snapshot. */
static void model_restore(struct model *m)
{
    m->h[1] = h_open(H_T0);
    h_snapshot_restore(m->h[0], m->h[1]);
    m->nh = 2;
}

/* The rule: expired records in key order, at most TICK_BUDGET. */
static size_t model_tick(struct model *m, uint64_t now)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n && n < TICK_BUDGET; i++) {
        if (m->r[i].live && m->r[i].due <= now) {
            m->r[i].live = false;
            n++;
        }
    }
    return n;
}

static size_t model_live(const struct model *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++)
        n += m->r[i].live;
    return n;
}

struct scan {
    struct model *m;
    size_t n;
    char bad[128];
};

static int check_key(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct scan *s = arg;
    struct rec *r = kl < 16 ? model_find(s->m, k, kl) : NULL;
    (void)v, (void)vl;
    if (!r || !r->live) {
        snprintf(s->bad, sizeof(s->bad), "store holds %c%.*s, the model %s", k[0],
                 (int)(kl - 1), k + 1, r ? "removed it" : "never made it");
        return 1;
    }
    s->n++;
    return 0;
}

/* Every harness's K and Y records are exactly the model's live ones; the
 * copies agree byte for byte; idle only when nothing is left. */
static void model_check(struct model *m)
{
    size_t want = model_live(m);
    for (int i = 0; i < m->nh; i++) {
        struct scan s = {.m = m};
        store_scan(fsm_store(m->h[i]->f), "K", 1, NULL, 0, check_key, &s);
        if (!s.bad[0])
            store_scan(fsm_store(m->h[i]->f), "Y", 1, NULL, 0, check_key, &s);
        if (s.bad[0])
            fail_msg("tick %d, harness %d: %s", m->ticks, i, s.bad);
        if (s.n != want)
            fail_msg("tick %d, harness %d: %zu records, the model %zu", m->ticks, i, s.n, want);
        if (want)
            assert_false(fsm_tick_idle(m->h[i]->f));
    }
    if (m->nh == 2) {
        char d0[65], d1[65];
        h_digest(m->h[0], d0);
        h_digest(m->h[1], d1);
        assert_string_equal(d0, d1);
    }
}

/* One tick at @t on every harness, checked; returns the model's removals. */
static size_t tick_at(struct model *m, uint64_t t)
{
    advance_to(m, t);
    run_all(m, "", "{'op':'tick'}");
    size_t n = model_tick(m, t);
    m->ticks++;
    model_check(m);
    return n;
}

/* Tick at @t until a tick removes less than the budget. */
static void drain_at(struct model *m, uint64_t t)
{
    for (int i = 0; i < 10 && tick_at(m, t) == TICK_BUDGET; i++)
        ;
}

/* ---- 20,000 blocks and 5,000 windows ---- */

static void test_many(void **state)
{
    struct model m;
    (void)state;
    model_init(&m, 20000, 5000, false);
    setup_scripts(&m);
    uint64_t t0 = m.h[0]->now;
    make(&m, 'b', 0, 19999, 10, 600); /* blocks live 10-609 s */
    make(&m, 'w', 0, 4999, 5, 300);   /* windows of 5-304 s */
    model_check(&m);
    assert_int_equal(tick_at(&m, t0 + 5 * SEC), 0);
    assert_true(tick_at(&m, t0 + 20 * SEC) > 0);
    /* Rewritten with a later until (and a few earlier: both stale entries
     * must not remove what the record says now); windows added to again. */
    advance_to(&m, t0 + 60 * SEC);
    make(&m, 'b', 0, 1999, 500, 600);
    make(&m, 'w', 0, 499, 5, 300);
    /* block.delete of indexed blocks, live or expired-not-yet-removed */
    for (unsigned i = 3000; i < 3020; i++) {
        char k[16];
        struct rec *r = model_find(&m, k, rec_key(k, 'K', "u", i));
        run_all(&m, r->live ? "" : "NOT_FOUND",
                "{'op':'block.delete','attr':'u','value':'%06u'}", i);
        r->live = false;
    }
    model_check(&m);
    model_restore(&m);
    model_check(&m);
    /* about 12,000 blocks expire at once: the budget ends among them, the
     * next tick at the same clock goes on (blocks, then windows) */
    assert_int_equal(tick_at(&m, t0 + 420 * SEC), TICK_BUDGET);
    drain_at(&m, t0 + 420 * SEC);
    tick_at(&m, t0 + 600 * SEC);
    drain_at(&m, t0 + 1300 * SEC);
    assert_int_equal(model_live(&m), 0);
    for (int i = 0; i < m.nh; i++)
        assert_true(fsm_tick_idle(m.h[i]->f));
    model_free(&m);
}

/* ---- many records expiring on one clock: the budget ends among windows ---- */

static void test_budget_in_windows(void **state)
{
    struct model m;
    (void)state;
    model_init(&m, 6000, 8000, false);
    setup_scripts(&m);
    uint64_t t0 = m.h[0]->now;
    make(&m, 'b', 0, 5999, 30, 1);
    make(&m, 'w', 0, 7999, 30, 1);
    model_restore(&m);
    assert_int_equal(tick_at(&m, t0 + 29 * SEC), 0);
    assert_int_equal(tick_at(&m, t0 + 32 * SEC), TICK_BUDGET);
    assert_int_equal(tick_at(&m, t0 + 32 * SEC), 4000);
    for (int i = 0; i < m.nh; i++)
        assert_true(fsm_tick_idle(m.h[i]->f));
    model_free(&m);
}

/* ---- hostile: one window rewritten on every call ---- */

static size_t allocated(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes();
#else
    return mallinfo2().uordblks;
#endif
}

#define HOT_CALLS 100000
#define HOT_TICK_EVERY 1000

static void test_rewrite_same_key(void **state)
{
    struct model m;
    (void)state;
    model_init(&m, 100, 0, true);
    setup_scripts(&m);
    uint64_t t0 = m.h[0]->now;
    struct rec *hr = model_find(&m, "Yhot\0k", 6);
    make(&m, 'b', 0, 99, 60, 120);
    size_t before = 0;
    for (unsigned i = 0; i < HOT_CALLS; i++) {
        if (i == 2 * HOT_TICK_EVERY)
            before = allocated(); /* Lua and the store warmed up */
        run_all(&m, "", "{'op':'publish','topic':'hot','body':'x'}");
        hr->live = true;
        hr->due = window_due(m.h[0]->now, 3600 * SEC);
        if (i % HOT_TICK_EVERY == HOT_TICK_EVERY - 1)
            tick_at(&m, m.h[0]->now + 2 * SEC); /* blocks expire on the way */
    }
    size_t after = allocated();
    print_message("%d rewrites of one window: %zu -> %zu bytes allocated\n", HOT_CALLS, before,
                  after);
    /* An unbounded index would hold ~100,000 entries (~6 MB); it holds at
     * most 2 a record + 1024 after each tick. */
    assert_true(after < before + (1u << 20));
    assert_true(model_live(&m) > 0);
    tick_at(&m, t0 + 5000 * SEC);
    assert_int_equal(model_live(&m), 0);
    assert_true(fsm_tick_idle(m.h[0]->f));
    model_free(&m);
}

#define SAME_DUE_CALLS 20000
#define HOT_BUCKET (3600 * SEC / 30)

static void hot_hits(struct model *m, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        run_all(m, "", "{'op':'publish','topic':'hot','body':'x'}");
    struct rec *hr = model_find(m, "Yhot\0k", 6);
    hr->live = true;
    hr->due = window_due(m->h[0]->now, 3600 * SEC);
}

/* Hits in a window's newest bucket keep its due: they add no index entry
 * (20,000 entries would be ~1 MB), and tick still removes the window when
 * it is due, on a restored copy too; a hit in a new bucket moves the due. */
static void test_rewrite_same_due(void **state)
{
    struct model m;
    (void)state;
    model_init(&m, 0, 0, true);
    setup_scripts(&m);
    hot_hits(&m, 2 * HOT_TICK_EVERY); /* Lua and the store warmed up */
    size_t before = allocated();
    hot_hits(&m, SAME_DUE_CALLS);
    size_t after = allocated();
    print_message("%d hits in one bucket: %zu -> %zu bytes allocated\n", SAME_DUE_CALLS, before,
                  after);
    assert_true(after < before + (64u << 10));
    uint64_t first_due = model_find(&m, "Yhot\0k", 6)->due;
    model_restore(&m);
    model_check(&m);
    advance_to(&m, m.h[0]->now + HOT_BUCKET);
    hot_hits(&m, 100);
    assert_int_equal(model_find(&m, "Yhot\0k", 6)->due, first_due + HOT_BUCKET);
    tick_at(&m, first_due - 1);
    tick_at(&m, first_due); /* the first due passed: not the window's any more */
    assert_int_equal(model_live(&m), 1);
    tick_at(&m, first_due + HOT_BUCKET);
    assert_int_equal(model_live(&m), 0);
    for (int i = 0; i < m.nh; i++)
        assert_true(fsm_tick_idle(m.h[i]->f));
    model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_budget_in_windows),
        cmocka_unit_test(test_rewrite_same_key),
        cmocka_unit_test(test_rewrite_same_due),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
