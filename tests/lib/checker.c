/* checker.c: records the acknowledged history of the cluster tests and
 * verifies it (the four rules are in checker.h). Events go to three growing
 * arrays under one mutex; verify sorts them by key (then time) and walks
 * each message's history once. To add a rule: a pass over the sorted arrays
 * in checker_verify().
 */
#include <pthread.h>
#include <stdlib.h>

#include "checker.h"

#define CLOCK_SLACK_MS 50 /* leader clock vs. the test's clock (one machine) */

typedef struct event {
    uint64_t key, t, t2; /* receive: t issued, t2 answered; delete: t acked */
    uint32_t count;
    unsigned via;
} event_t;

typedef struct events {
    event_t *e;
    size_t n, cap;
} events_t;

struct checker {
    pthread_mutex_t mu;
    uint64_t visibility_ms;
    events_t sent, received, deleted;
};

checker_t *checker_new(uint64_t visibility_ms)
{
    checker_t *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    pthread_mutex_init(&k->mu, NULL);
    k->visibility_ms = visibility_ms;
    return k;
}

void checker_free(checker_t *k)
{
    if (!k)
        return;
    free(k->sent.e);
    free(k->received.e);
    free(k->deleted.e);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

static void push(checker_t *k, events_t *v, event_t e)
{
    pthread_mutex_lock(&k->mu);
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 1024;
        event_t *p = realloc(v->e, cap * sizeof *p);
        if (!p)
            abort();
        v->e = p;
        v->cap = cap;
    }
    v->e[v->n++] = e;
    pthread_mutex_unlock(&k->mu);
}

void checker_sent(checker_t *k, uint64_t key)
{
    push(k, &k->sent, (event_t){.key = key});
}

void checker_received(checker_t *k, uint64_t key, uint64_t issued, uint64_t answered,
                      uint32_t receive_count, unsigned via)
{
    push(k, &k->received, (event_t){key, issued, answered, receive_count, via});
}

void checker_deleted(checker_t *k, uint64_t key, uint64_t acked)
{
    push(k, &k->deleted, (event_t){.key = key, .t = acked});
}

void checker_counts(checker_t *k, long *sent, long *received, long *deleted)
{
    pthread_mutex_lock(&k->mu);
    *sent = (long)k->sent.n;
    *received = (long)k->received.n;
    *deleted = (long)k->deleted.n;
    pthread_mutex_unlock(&k->mu);
}

/* Sends and deletes by (key, time); deliveries by (key, receive_count): the
 * count is the order in which the hub committed them, while answers can come
 * in any order (a stalled leader answers late for an entry it still committed). */
static int by_key_time(const void *a, const void *b)
{
    const event_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->t2 < y->t2 ? -1 : x->t2 > y->t2;
}

static int by_key_count(const void *a, const void *b)
{
    const event_t *x = a, *y = b;
    if (x->key != y->key || x->count == y->count)
        return by_key_time(a, b);
    return x->count < y->count ? -1 : 1;
}

/* The first event of @key in the sorted @v at or after *@i (moved there). */
static const event_t *seek(const events_t *v, size_t *i, uint64_t key)
{
    while (*i < v->n && v->e[*i].key < key)
        (*i)++;
    return *i < v->n && v->e[*i].key == key ? &v->e[*i] : NULL;
}

/* The whole history of one message, after a violation. */
static void print_history(checker_t *k, size_t from, size_t to, FILE *out)
{
    size_t d = 0;
    const event_t *del = NULL;
    for (size_t j = from; j < to; j++) {
        const event_t *e = &k->received.e[j];
        fprintf(out, "  %016llx delivered: issued %llu answered %llu count %u via :%u\n",
                (unsigned long long)e->key, (unsigned long long)e->t,
                (unsigned long long)e->t2, e->count, e->via);
    }
    while ((del = seek(&k->deleted, &d, k->received.e[from].key)) != NULL) {
        fprintf(out, "  %016llx delete acknowledged at %llu\n", (unsigned long long)del->key,
                (unsigned long long)del->t);
        d++;
    }
}

/* Rules 3 and 4 on the deliveries of one message, received[from, to), in
 * receive_count order. A count that repeats, or a delivery answered before
 * one with a lower count was even issued, means the count went back; two
 * successive deliveries closer than the visibility timeout mean a lock was lost. */
static long check_deliveries(checker_t *k, size_t from, size_t to, FILE *out)
{
    long bad = 0;
    for (size_t j = from + 1; j < to; j++) {
        const event_t *a = &k->received.e[j - 1], *b = &k->received.e[j];
        if (b->count == a->count) {
            fprintf(out, "key %016llx: receive_count %u delivered twice\n",
                    (unsigned long long)b->key, b->count);
            bad++;
        } else if (b->t2 >= a->t && b->t2 + CLOCK_SLACK_MS < a->t + k->visibility_ms) {
            fprintf(out, "key %016llx delivered again %llu ms after a delivery issued at "
                         "%llu (visibility %llu ms): a lock was lost\n",
                    (unsigned long long)b->key, (unsigned long long)(b->t2 - a->t),
                    (unsigned long long)a->t, (unsigned long long)k->visibility_ms);
            bad++;
        }
        for (size_t i = from; i < j; i++)
            if (b->t2 < k->received.e[i].t) {
                fprintf(out, "key %016llx: receive_count %u answered before the receive "
                             "that got %u was issued\n",
                        (unsigned long long)b->key, b->count, k->received.e[i].count);
                bad++;
            }
    }
    return bad;
}

/* qsort with an empty array: its pointer may be NULL, which qsort does not take. */
static void sort(events_t *v, int (*cmp)(const void *, const void *))
{
    if (v->n > 0)
        qsort(v->e, v->n, sizeof(event_t), cmp);
}

long checker_verify(checker_t *k, FILE *out)
{
    long bad = 0;
    size_t r = 0, d = 0;

    pthread_mutex_lock(&k->mu);
    sort(&k->sent, by_key_time);
    sort(&k->received, by_key_count);
    sort(&k->deleted, by_key_time);
    for (size_t s = 0; s < k->sent.n; s++)
        if (!seek(&k->received, &r, k->sent.e[s].key)) {
            fprintf(out, "key %016llx: acknowledged send never delivered\n",
                    (unsigned long long)k->sent.e[s].key);
            bad++;
        }
    r = 0;
    for (size_t i = 0; i < k->received.n; i = r) {
        uint64_t key = k->received.e[i].key;
        for (r = i; r < k->received.n && k->received.e[r].key == key; r++)
            ;
        long before = bad;
        bad += check_deliveries(k, i, r, out);
        const event_t *del = seek(&k->deleted, &d, key);
        for (size_t j = i; del && j < r; j++)
            if (k->received.e[j].t > del->t) {
                fprintf(out, "key %016llx delivered by a receive issued %llu ms after its "
                             "delete was acknowledged\n",
                        (unsigned long long)key,
                        (unsigned long long)(k->received.e[j].t - del->t));
                bad++;
            }
        if (bad > before)
            print_history(k, i, r, out);
    }
    pthread_mutex_unlock(&k->mu);
    return bad;
}
