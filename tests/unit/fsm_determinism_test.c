/* fsm_determinism_test.c: the same entries give the same state.
 * A seeded random workload (every op, several queues, ordered ones, delays,
 * dedup, dead letters, rewinds, ticks, a moving clock) is applied to two fresh
 * state machines: equal digests. Then a snapshot is taken halfway and restored
 * into a fresh one, which continues: equal digests and equal replies to a
 * never-snapshotted one — so the in-memory indexes are rebuilt exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fsm_harness.h"

#define ENTRIES 600
#define MAX_CMDS 6
#define N_RECEIPTS 8

/* The workload: a deterministic function of (seed, entry index) and of the
 * receipts seen so far, which every machine returns identically. */
struct workload {
    uint64_t rng;
    char receipts[N_RECEIPTS][64]; /* "queue receipt" */
    const char *cmd_queue[MAX_CMDS];  /* the queue of each command of the entry */
};

static uint32_t rnd(struct workload *w, uint32_t n)
{
    w->rng = w->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(w->rng >> 33) % n;
}

static char *gen_cmd(struct workload *w, unsigned i, size_t *len)
{
    static const char *queues[] = {"a", "b", "ord", "dlq"};
    const char *q = queues[rnd(w, 4)];
    char r1[64], r2[64];
    w->cmd_queue[i] = q;
    snprintf(r1, sizeof(r1), "%s", w->receipts[rnd(w, N_RECEIPTS)]);
    snprintf(r2, sizeof(r2), "%s", w->receipts[rnd(w, N_RECEIPTS)]);
    if (strchr(r1, ' ')) { /* mostly the receipt's own queue */
        *strchr(r1, ' ') = 0;
        if (rnd(w, 5))
            q = r1[0] == 'a' ? "a" : r1[0] == 'b' ? "b" : r1[0] == 'o' ? "ord" : "dlq";
        memmove(r1, r1 + strlen(r1) + 1, strlen(r1 + strlen(r1) + 1) + 1);
    }
    if (strchr(r2, ' '))
        memmove(r2, strchr(r2, ' ') + 1, strlen(strchr(r2, ' ') + 1) + 1);
    switch (rnd(w, 14)) {
    case 0:
        return h_pack(len, "{'op':'queue.create','name':'a','attrs':{'rewind_window':30,'retention':120,"
                           "'dead_letter':{'queue':'dlq','max_receives':3}}}");
    case 1:
        return h_pack(len, "{'op':'queue.create','name':'ord','attrs':{'ordered':true,'rewind_window':20}}");
    case 2:
        return rnd(w, 10) == 0 ? h_pack(len, "{'op':'queue.purge','name':'%s'}", q)
                               : h_pack(len, "{'op':'tick'}");
    case 3:
    case 4:
    case 5:
        return h_pack(len, "{'op':'send','queue':'%s','body':'m%u','delay':%u,'group':'g%u',"
                           "'dedup_id':'d%u','attrs':{'k':'%u'}}",
                      q, rnd(w, 1000), rnd(w, 3) ? 0 : rnd(w, 20), rnd(w, 3), rnd(w, 40), rnd(w, 5));
    case 6:
        return h_pack(len, "{'op':'send_batch','queue':'%s','msgs':[{'body':'x'},{'body':'y','delay':%u}]}",
                      q, rnd(w, 5));
    case 7:
    case 8:
        return h_pack(len, "{'op':'receive','queue':'%s','max':%u,'visibility':%u}", q,
                      1 + rnd(w, 4), rnd(w, 8) ? 5 + rnd(w, 30) : 0);
    case 9:
    case 10:
        return h_pack(len, "{'op':'delete','queue':'%s','receipts':['%s','%s']}", q, r1, r2);
    case 11:
        return h_pack(len, "{'op':'change_visibility','queue':'%s','receipt':'%s','timeout':%u}", q,
                      r1, rnd(w, 3) * 5);
    case 12:
        return h_pack(len, "{'op':'queue.rewind','name':'%s','seq':%u}", q, rnd(w, 30));
    default:
        return rnd(w, 30) == 0 ? h_pack(len, "{'op':'queue.delete','name':'%s'}", q)
                               : h_pack(len, "{'op':'queue.create','name':'%s'}", q);
    }
}

/* Remember receipts handed out, so deletes hit live and stale ones. */
static void note_receipts(struct workload *w, json_t *replies)
{
    size_t i, j;
    json_t *r, *m;
    json_array_foreach(replies, i, r) {
        json_array_foreach(json_object_get(r, "msgs"), j, m) {
            snprintf(w->receipts[rnd(w, N_RECEIPTS)], 64, "%s %s", w->cmd_queue[i],
                     h_str(m, "receipt"));
        }
    }
}

/* Apply entries [from, to) of the workload; returns the replies as one
 * compact JSON string (caller frees). */
static char *run(harness_t *h, struct workload *w, int from, int to)
{
    json_t *all = json_array();
    for (int e = from; e < to; e++) {
        char *cmds[MAX_CMDS];
        size_t lens[MAX_CMDS];
        unsigned n = 1 + rnd(w, MAX_CMDS);
        for (unsigned i = 0; i < n; i++)
            cmds[i] = gen_cmd(w, i, &lens[i]);
        h_advance(h, rnd(w, 4) == 0 ? rnd(w, 20000) : rnd(w, 300));
        json_t *rep = h_entry(h, n, cmds, lens);
        note_receipts(w, rep);
        json_array_extend(all, rep);
        json_decref(rep);
        for (unsigned i = 0; i < n; i++)
            free(cmds[i]);
    }
    char *s = json_dumps(all, JSON_COMPACT);
    json_decref(all);
    return s;
}

static void setup_queues(harness_t *h)
{
    const char *specs[] = {
        "{'op':'queue.create','name':'dlq'}",
        ("{'op':'queue.create','name':'a','attrs':{'rewind_window':30,'retention':120,"
         "'dead_letter':{'queue':'dlq','max_receives':3}}}"),
        "{'op':'queue.create','name':'b'}",
        "{'op':'queue.create','name':'ord','attrs':{'ordered':true,'rewind_window':20}}",
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
        json_decref(h_run(h, "%s", specs[i]));
}

static void test_same_entries_same_digest(void **state)
{
    (void)state;
    harness_t *a = h_open(H_T0), *b = h_open(H_T0);
    struct workload wa = {.rng = 42}, wb = {.rng = 42};
    char da[65], db[65];
    setup_queues(a);
    setup_queues(b);
    char *ra = run(a, &wa, 0, ENTRIES), *rb = run(b, &wb, 0, ENTRIES);
    assert_string_equal(ra, rb);
    h_digest(a, da);
    h_digest(b, db);
    assert_string_equal(da, db);
    /* the workload did something: the state is not empty */
    assert_true(strstr(ra, "\"msgs\": [{") || strstr(ra, "\"msgs\":[{"));
    free(ra);
    free(rb);
    h_close(a);
    h_close(b);
}

/* Snapshot @src through the raft glue and restore it into @dst. */
static void test_snapshot_restore_continue(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        harness_t *a = h_open(H_T0), *b = h_open(H_T0), *c = h_open(H_T0);
        struct workload wa = {.rng = seed}, wb = {.rng = seed};
        char da[65], dc[65];
        setup_queues(a);
        setup_queues(b);
        free(run(a, &wa, 0, ENTRIES / 2));
        free(run(b, &wb, 0, ENTRIES / 2));
        h_snapshot_restore(b, c);
        h_digest(b, da);
        h_digest(c, dc);
        assert_string_equal(da, dc);
        h_close(b);
        char *ra = run(a, &wa, ENTRIES / 2, ENTRIES), *rc = run(c, &wb, ENTRIES / 2, ENTRIES);
        assert_string_equal(ra, rc);
        h_digest(a, da);
        h_digest(c, dc);
        assert_string_equal(da, dc);
        assert_int_equal(fsm_next_due(a->f), fsm_next_due(c->f));
        assert_int_equal(fsm_queue_ready(a->f, "ord", 3), fsm_queue_ready(c->f, "ord", 3));
        assert_int_equal(fsm_queue_ready(a->f, "a", 1), fsm_queue_ready(c->f, "a", 1));
        free(ra);
        free(rc);
        h_close(a);
        h_close(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_entries_same_digest),
        cmocka_unit_test(test_snapshot_restore_continue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
