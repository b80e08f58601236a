/* tick_index_test.c: the periodic tick visits only the queues with something
 * due (queue.c "the tick index") and still removes exactly what a brute-force
 * walk over every queue would.
 *
 * A model keeps every message record and dedup entry the test made; model_tick
 * applies the documented rules (docs/architecture.md "Shared bodies": queue by
 * queue in id order, retention from the first record on, then the rewind
 * window, then dedup entries older than 5 minutes, at most TICK_BUDGET records
 * a tick) and after every tick the store's M and D keys must be exactly the
 * model's. A copy restored from a snapshot receives the same entries and must
 * keep the same store digest. Start reading at test_many_queues; test_churn
 * is the hostile client (an index full of stale entries), test_dedup_same_time
 * the budget ending among dedup entries of one time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fsm_harness.h"

#define TICK_BUDGET 10000 /* records a tick removes at most (docs/architecture.md) */
#define DEDUP_MS 300000   /* MQHUB_DEDUP_WINDOW_MS */
#define SEC 1000ULL

struct mrec {
    uint64_t seq, enq, del_at;
    bool deleted, gone;
};

struct drec {
    char id[8];
    uint64_t at;
    bool gone;
};

/* One queue as the test made it: queue index i is queue id i + 1. */
struct mq {
    uint64_t ret_ms, rw_ms, next_seq;
    bool dead; /* queue.delete: its records go by reclaim */
    struct mrec *r;
    size_t nr, capr;
    struct drec *d;
    size_t nd, capd;
};

struct model {
    harness_t *h[2]; /* the original and (from model_restore on) a restored copy */
    int nh;
    struct mq *q;
    size_t nq;
    int ticks;
};

static void model_init(struct model *m, harness_t *h, size_t nq)
{
    memset(m, 0, sizeof(*m));
    m->h[0] = h;
    m->nh = 1;
    m->nq = nq;
    m->q = calloc(nq, sizeof(*m->q));
    assert_non_null(m->q);
}

static void model_free(struct model *m)
{
    for (size_t i = 0; i < m->nq; i++) {
        free(m->q[i].r);
        free(m->q[i].d);
    }
    free(m->q);
    if (m->nh == 2)
        h_close(m->h[1]);
}

/* Apply one command to every harness; all must answer @code ("" = ok).
 * Returns the first harness's reply (caller json_decref()s). */
static json_t *run_all(struct model *m, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static json_t *run_all(struct model *m, const char *code, const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    json_t *first = NULL;
    for (int i = 0; i < m->nh; i++) {
        json_t *r = h_run(m->h[i], "%s", cmd);
        if (strcmp(h_code(r), code) != 0)
            fail_msg("%s: expected '%s', got %s", cmd, code, json_dumps(r, JSON_COMPACT));
        if (i == 0)
            first = r;
        else
            json_decref(r);
    }
    return first;
}

static void advance_to(struct model *m, uint64_t t)
{
    for (int i = 0; i < m->nh; i++)
        h_advance(m->h[i], t - m->h[i]->now);
}

static void create(struct model *m, size_t i, uint64_t ret_s, uint64_t rw_s)
{
    json_decref(run_all(m, "",
                        "{'op':'queue.create','name':'q%05zu','attrs':{'retention':%llu,"
                        "'rewind_window':%llu}}",
                        i, (unsigned long long)ret_s, (unsigned long long)rw_s));
    m->q[i].ret_ms = ret_s * SEC;
    m->q[i].rw_ms = rw_s * SEC;
    m->q[i].next_seq = 1;
}

/* Send to queue @i (with @dedup unless NULL) at the current clock. */
static void send_msg(struct model *m, size_t i, const char *dedup)
{
    struct mq *q = &m->q[i];
    char extra[64] = "";
    if (dedup)
        snprintf(extra, sizeof(extra), ",'dedup_id':'%s'", dedup);
    json_t *r = run_all(m, "", "{'op':'send','queue':'q%05zu','body':'b'%s}", i, extra);
    assert_int_equal(h_int(r, "seq"), q->next_seq);
    json_decref(r);
    if (q->nr == q->capr) {
        q->capr = q->capr ? 2 * q->capr : 4;
        q->r = realloc(q->r, q->capr * sizeof(*q->r));
        assert_non_null(q->r);
    }
    q->r[q->nr++] = (struct mrec){.seq = q->next_seq++, .enq = m->h[0]->now};
    if (dedup) {
        if (q->nd == q->capd) {
            q->capd = q->capd ? 2 * q->capd : 4;
            q->d = realloc(q->d, q->capd * sizeof(*q->d));
            assert_non_null(q->d);
        }
        struct drec *d = &q->d[q->nd++];
        memset(d, 0, sizeof(*d));
        snprintf(d->id, sizeof(d->id), "%s", dedup);
        d->at = m->h[0]->now;
    }
}

/* Receive @n messages of queue @i and delete them (kept for the queue's
 * rewind window, or removed at once). */
static void receive_delete(struct model *m, size_t i, int n)
{
    struct mq *q = &m->q[i];
    json_t *r = run_all(m, "", "{'op':'receive','queue':'q%05zu','max':%d}", i, n);
    json_t *msgs = json_object_get(r, "msgs");
    assert_int_equal(json_array_size(msgs), n);
    for (int k = 0; k < n; k++) {
        json_t *msg = json_array_get(msgs, (size_t)k);
        uint64_t seq = (uint64_t)h_int(msg, "seq");
        json_decref(run_all(m, "", "{'op':'delete','queue':'q%05zu','receipts':['%s']}", i,
                            h_str(msg, "receipt")));
        for (size_t j = 0; j < q->nr; j++) {
            if (q->r[j].seq == seq) {
                q->r[j].deleted = q->rw_ms > 0;
                q->r[j].gone = q->rw_ms == 0;
                q->r[j].del_at = m->h[0]->now;
            }
        }
    }
    json_decref(r);
}

/* From now on every command also goes to a copy restored from a snapshot. */
static void model_restore(struct model *m)
{
    m->h[1] = h_open(H_T0);
    h_snapshot_restore(m->h[0], m->h[1]);
    m->nh = 2;
}

/* ---- the expectation: a walk over every queue, as the rules say ---- */

static uint64_t expire_retention(struct mq *q, uint64_t now, uint64_t budget)
{
    uint64_t n = 0;
    for (size_t j = 0; j < q->nr && n < budget; j++) {
        if (q->r[j].gone)
            continue;
        if (q->r[j].enq + q->ret_ms > now)
            break; /* the scan stops at the first record not expired */
        q->r[j].gone = true;
        n++;
    }
    return n;
}

static uint64_t expire_deleted(struct mq *q, uint64_t now, uint64_t budget)
{
    uint64_t n = 0;
    while (n < budget) {
        struct mrec *min = NULL; /* the oldest kept delete: (del_at, seq) */
        for (size_t j = 0; j < q->nr; j++) {
            struct mrec *r = &q->r[j];
            if (r->deleted && !r->gone &&
                (!min || r->del_at < min->del_at ||
                 (r->del_at == min->del_at && r->seq < min->seq)))
                min = r;
        }
        if (!min || min->del_at + q->rw_ms > now)
            break;
        min->gone = true;
        n++;
    }
    return n;
}

static uint64_t expire_dedup(struct mq *q, uint64_t now, uint64_t budget)
{
    uint64_t n = 0;
    while (n < budget) {
        struct drec *min = NULL; /* the oldest entry: (at, id) */
        for (size_t j = 0; j < q->nd; j++) {
            struct drec *d = &q->d[j];
            if (!d->gone && (!min || d->at < min->at ||
                             (d->at == min->at && strcmp(d->id, min->id) < 0)))
                min = d;
        }
        if (!min || min->at + DEDUP_MS > now)
            break;
        min->gone = true;
        n++;
    }
    return n;
}

/* What the tick at @now removes; returns how many records. */
static uint64_t model_tick(struct model *m, uint64_t now)
{
    uint64_t budget = TICK_BUDGET;
    for (size_t i = 0; i < m->nq && budget; i++) {
        struct mq *q = &m->q[i];
        if (q->dead)
            continue;
        budget -= expire_retention(q, now, budget);
        budget -= expire_deleted(q, now, budget);
        budget -= expire_dedup(q, now, budget);
    }
    return TICK_BUDGET - budget;
}

/* ---- comparing the store with the model ---- */

struct scan {
    struct model *m;
    size_t n;
    const char *bad; /* the first mismatch */
};

static uint64_t be64(const char *p)
{
    return store_be64_get((const unsigned char *)p);
}

static int check_msg_key(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct scan *s = arg;
    (void)v, (void)vl;
    uint64_t qid = be64(k + 1), seq = be64(k + 9);
    if (kl != 17 || qid == 0 || qid > s->m->nq) {
        s->bad = "a message key of no queue";
        return 1;
    }
    struct mq *q = &s->m->q[qid - 1];
    if (q->dead)
        return 0; /* reclaim removes these: counted apart */
    for (size_t j = 0; j < q->nr; j++) {
        if (q->r[j].seq == seq) {
            if (q->r[j].gone)
                s->bad = "a message kept that the model removed";
            s->n++;
            return s->bad != NULL;
        }
    }
    s->bad = "a message the model does not know";
    return 1;
}

static int check_dedup_key(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct scan *s = arg;
    (void)v, (void)vl;
    uint64_t qid = be64(k + 1);
    if (kl < 9 || qid == 0 || qid > s->m->nq) {
        s->bad = "a dedup key of no queue";
        return 1;
    }
    struct mq *q = &s->m->q[qid - 1];
    if (q->dead)
        return 0;
    for (size_t j = 0; j < q->nd; j++) {
        if (strlen(q->d[j].id) == kl - 9 && memcmp(q->d[j].id, k + 9, kl - 9) == 0) {
            if (q->d[j].gone)
                s->bad = "a dedup entry kept that the model removed";
            s->n++;
            return s->bad != NULL;
        }
    }
    s->bad = "a dedup entry the model does not know";
    return 1;
}

/* Every harness's M and D records are exactly the model's live ones (dead
 * queues aside), and all harnesses have the same digest. */
static void model_check(struct model *m)
{
    size_t want_m = 0, want_d = 0;
    for (size_t i = 0; i < m->nq; i++) {
        if (m->q[i].dead)
            continue;
        for (size_t j = 0; j < m->q[i].nr; j++)
            want_m += !m->q[i].r[j].gone;
        for (size_t j = 0; j < m->q[i].nd; j++)
            want_d += !m->q[i].d[j].gone;
    }
    char d0[65], d1[65];
    for (int i = 0; i < m->nh; i++) {
        struct scan s = {.m = m};
        store_scan(fsm_store(m->h[i]->f), "M", 1, NULL, 0, check_msg_key, &s);
        if (s.bad)
            fail_msg("tick %d, harness %d: %s", m->ticks, i, s.bad);
        assert_int_equal(s.n, want_m);
        s.n = 0;
        store_scan(fsm_store(m->h[i]->f), "D", 1, NULL, 0, check_dedup_key, &s);
        if (s.bad)
            fail_msg("tick %d, harness %d: %s", m->ticks, i, s.bad);
        assert_int_equal(s.n, want_d);
    }
    if (m->nh == 2) {
        h_digest(m->h[0], d0);
        h_digest(m->h[1], d1);
        assert_string_equal(d0, d1);
    }
}

/* One tick at @t on every harness, checked; returns the model's removals. */
static uint64_t tick_at(struct model *m, uint64_t t)
{
    advance_to(m, t);
    json_decref(run_all(m, "", "{'op':'tick'}"));
    uint64_t n = model_tick(m, t);
    m->ticks++;
    model_check(m);
    return n;
}

static int count_key(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    (void)k, (void)kl, (void)v, (void)vl;
    ++*(int64_t *)arg;
    return 0;
}

/* M records of queue index @i in harness @h (a deleted queue's, reclaimed). */
static int64_t queue_keys(harness_t *h, size_t i)
{
    unsigned char p[9];
    int64_t n = 0;
    p[0] = 'M';
    for (int b = 0; b < 8; b++)
        p[1 + b] = (unsigned char)((uint64_t)(i + 1) >> (56 - 8 * b));
    store_scan(fsm_store(h->f), p, 9, NULL, 0, count_key, &n);
    return n;
}

/* 20,000 queues, one message each: half expire at 60 s, more than one
 * tick's budget with the extra ones, so the first tick stops mid-way and
 * the next goes on; kept deletes, dedup entries, a queue.set that shortens
 * retention and a queue.delete of an indexed queue on top; a restored copy
 * follows the same entries. */
static void test_many_queues(void **state)
{
    harness_t *h = *state;
    enum { N = 20000 };
    struct model m;
    model_init(&m, h, N);
    for (size_t i = 0; i < N; i++)
        create(&m, i, i % 2 ? 3600 : 60, i == 1 ? 60 : 0);
    for (size_t i = 0; i < N; i++)
        send_msg(&m, i, NULL);
    for (int k = 0; k < 3; k++)
        send_msg(&m, 0, NULL); /* 4 records expire together in queue 0 */
    for (int k = 0; k < 5; k++)
        send_msg(&m, 1, NULL);
    advance_to(&m, H_T0 + 10 * SEC);
    receive_delete(&m, 1, 3); /* kept 60 s: gone at +70 s */
    advance_to(&m, H_T0 + 20 * SEC);
    send_msg(&m, 3, "a");
    send_msg(&m, N - 1, "z");
    advance_to(&m, H_T0 + 25 * SEC);
    send_msg(&m, 3, "b");
    model_restore(&m); /* rebuilt indexes from here on in h[1] */
    model_check(&m);
    advance_to(&m, H_T0 + 30 * SEC);
    json_decref(run_all(&m, "", "{'op':'queue.delete','name':'q00009'}"));
    m.q[9].dead = true;
    assert_int_equal(tick_at(&m, H_T0 + 50 * SEC), 0); /* nothing due yet */
    assert_false(fsm_tick_idle(h->f));
    advance_to(&m, H_T0 + 55 * SEC);
    json_decref(run_all(&m, "", "{'op':'queue.set','name':'q00007','attrs':{'retention':60}}"));
    m.q[7].ret_ms = 60 * SEC;
    /* the highest id now comes due first: tick must still visit in id order */
    json_decref(
        run_all(&m, "", "{'op':'queue.set','name':'q%05d','attrs':{'retention':60}}", N - 1));
    m.q[N - 1].ret_ms = 60 * SEC;
    /* at +61 s: 10000 even queues, 3 more in queue 0, queues 7 and N-1 */
    assert_int_equal(tick_at(&m, H_T0 + 61 * SEC), TICK_BUDGET);
    assert_int_equal(fsm_next_due(h->f), h->now); /* the budget ran out: again at once */
    assert_true(m.q[7].r[0].gone && !m.q[N - 1].r[0].gone);
    assert_int_equal(tick_at(&m, H_T0 + 61 * SEC + 5), 5);
    assert_int_equal(tick_at(&m, H_T0 + 62 * SEC), 0);
    assert_int_equal(tick_at(&m, H_T0 + 71 * SEC), 3);  /* queue 1's kept deletes */
    assert_int_equal(tick_at(&m, H_T0 + 81 * SEC), 1);  /* N-1's message of +20 s */
    assert_int_equal(tick_at(&m, H_T0 + 321 * SEC), 2); /* dedup 'a' and 'z' */
    assert_int_equal(tick_at(&m, H_T0 + 326 * SEC), 1); /* dedup 'b' */
    /* at +3601 s the odd queues' messages sent at +0: one in each of 9997
     * queues (7 and N-1 went, 9 is deleted) and 2 more in queue 1 */
    assert_int_equal(tick_at(&m, H_T0 + 3601 * SEC), 9999);
    assert_int_equal(tick_at(&m, H_T0 + 3602 * SEC), 0);
    assert_int_equal(tick_at(&m, H_T0 + 3626 * SEC), 2); /* queue 3's of +20 and +25 s */
    for (int i = 0; i < m.nh; i++) {
        assert_int_equal(queue_keys(m.h[i], 9), 0); /* reclaimed meanwhile */
        assert_true(fsm_tick_idle(m.h[i]->f));
        assert_int_equal(h_keys(m.h[i], 'M') + h_keys(m.h[i], 'D'), 0);
    }
    model_free(&m);
}

/* A client that empties and refills a queue between every tick leaves a
 * stale index entry each time (the lazy index never searches); tick sheds
 * them with a walk over the queues (here after some 1030 rounds: more than
 * 2 x 3 queues + 1024 entries), and what it removes stays exact around it:
 * from +60 s on every tick has a record of queue 2 to remove, so a walk that
 * skipped its work would show. Queue 1's kept deletes and dedup entries come
 * due meanwhile. */
static void test_churn(void **state)
{
    harness_t *h = *state;
    enum { N = 3, ROUNDS = 1500 };
    struct model m;
    model_init(&m, h, N);
    create(&m, 0, 3600, 0); /* its stale entries live an hour */
    create(&m, 1, 600, 120);
    create(&m, 2, 60, 0);
    model_restore(&m);
    uint64_t removed = 0, want = 0;
    for (int k = 0; k < ROUNDS; k++) {
        char id[8];
        advance_to(&m, H_T0 + (uint64_t)k * SEC);
        send_msg(&m, 0, NULL);
        receive_delete(&m, 0, 1); /* empties queue 0 */
        if (k % 50 == 0) {
            snprintf(id, sizeof(id), "d%04d", k);
            send_msg(&m, 1, id);
            receive_delete(&m, 1, 1); /* kept 120 s */
            want += 2;
        }
        send_msg(&m, 2, NULL); /* expires after 60 s: every tick from +60 s removes one */
        want++;
        removed += tick_at(&m, H_T0 + (uint64_t)k * SEC + 500);
    }
    for (uint64_t t = ROUNDS; t < ROUNDS + 700; t += 10)
        removed += tick_at(&m, H_T0 + t * SEC);
    assert_int_equal(removed, want);
    for (int i = 0; i < m.nh; i++) {
        assert_int_equal(h_keys(m.h[i], 'M') + h_keys(m.h[i], 'D'), 0);
        assert_true(fsm_tick_idle(m.h[i]->f));
    }
    model_free(&m);
}

/* More dedup entries of one time than a tick's budget, sent in an order
 * that is not their id order: the tick removes the first TICK_BUDGET by
 * (time, id), the same in a copy restored from a snapshot (whose heap was
 * pushed in key order). */
static void test_dedup_same_time(void **state)
{
    harness_t *h = *state;
    enum { N = TICK_BUDGET + 3 };
    struct model m;
    model_init(&m, h, 1);
    create(&m, 0, 3600, 0);
    for (unsigned k = 0; k < N; k++) {
        char id[8];
        snprintf(id, sizeof(id), "%05u", (k * 7919u) % N); /* a bijection: 7919 is prime */
        send_msg(&m, 0, id);
    }
    model_restore(&m);
    assert_int_equal(tick_at(&m, H_T0 + 300 * SEC), TICK_BUDGET);
    assert_int_equal(tick_at(&m, H_T0 + 300 * SEC + 5), 3);
    model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_queues, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_churn, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_dedup_same_time, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
