/* fsm_names_test.c: queues and topics by name (issue 12) — many creates in
 * an order unrelated to names, queue.list / topic.list pages (prefix,
 * offset, limit) equal to the sorted names, deletes from the middle, and a
 * rebuild (snapshot restore) that gives the same lists and digest. The
 * ordered map itself (core/util/omap.c) is checked against a sorted array. */
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
#include "omap.h"

#define N 20000
#define BATCH 256

/* Name i: a bijection of i, so names come in no particular order. */
static void name_of(char *out, size_t i)
{
    sprintf(out, "n%08x", (unsigned)((uint32_t)i * 2654435761u));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Apply `@op {name}` for names [from, to) of @names, BATCH per entry. */
static void apply_names(harness_t *h, const char *op, char **names, size_t from, size_t to)
{
    char *cmds[BATCH];
    size_t lens[BATCH];
    while (from < to) {
        unsigned k = 0;
        for (; k < BATCH && from + k < to; k++)
            cmds[k] = h_pack(&lens[k], "{'op':'%s','name':'%s'}", op, names[from + k]);
        json_t *r = h_entry(h, k, cmds, lens);
        for (unsigned i = 0; i < k; i++) {
            if (!h_ok(json_array_get(r, i)))
                fail_msg("%s: %s", op, json_dumps(json_array_get(r, i), JSON_COMPACT));
            free(cmds[i]);
        }
        json_decref(r);
        from += k;
    }
}

/* The page @list(prefix, offset, limit) equals @want[0..n), total @total. */
static void check_page(harness_t *h, const char *kind, const char *prefix, size_t offset,
                       size_t limit, char **want, size_t n, size_t total)
{
    json_t *r = h_read(h, "{'op':'%s.list','prefix':'%s','offset':%zu,'limit':%zu}", kind,
                       prefix, offset, limit);
    char key[16];
    snprintf(key, sizeof(key), "%ss", kind);
    json_t *a = json_object_get(r, key);
    if (json_array_size(a) != n || h_int(r, "total") != (int64_t)total)
        fail_msg("%s.list %s/%zu/%zu: %s", kind, prefix, offset, limit, json_dumps(r, 0));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(a, i)), want[i]);
    json_decref(r);
}

/* Every page of 1000 and a few odd pages, against the sorted @names. */
static void check_lists(harness_t *h, const char *kind, char **names, size_t n)
{
    for (size_t off = 0; off < n + 1000; off += 1000) {
        size_t got = off < n ? (n - off < 1000 ? n - off : 1000) : 0;
        check_page(h, kind, "", off, 1000, names + off, got, n);
    }
    check_page(h, kind, "", n - 3, 10, names + n - 3, 3, n);
    /* a prefix: the names starting with "n7" are a contiguous run */
    size_t lo = 0, hi;
    while (lo < n && strncmp(names[lo], "n7", 2) < 0)
        lo++;
    for (hi = lo; hi < n && strncmp(names[hi], "n7", 2) == 0; hi++)
        ;
    assert_true(hi - lo > 100);
    check_page(h, kind, "n7", 50, 7, names + lo + 50, 7, hi - lo);
    check_page(h, kind, "n7", hi - lo - 2, 7, names + hi - 2, 2, hi - lo);
    check_page(h, kind, "zz", 0, 10, names, 0, 0);
}

static void run_kind(const char *kind)
{
    harness_t *h = h_open(H_T0), *h2 = h_open(H_T0);
    char **names = malloc(N * sizeof(*names)), **sorted = malloc(N * sizeof(*sorted));
    char op[32], a[65], b[65];
    for (size_t i = 0; i < N; i++) {
        names[i] = malloc(16);
        name_of(names[i], i);
        sorted[i] = names[i];
    }
    snprintf(op, sizeof(op), "%s.create", kind);
    apply_names(h, op, names, 0, N);
    qsort(sorted, N, sizeof(*sorted), cmp_str);
    check_lists(h, kind, sorted, N);
    /* delete every other name of the middle half */
    snprintf(op, sizeof(op), "%s.delete", kind);
    size_t kept = 0;
    for (size_t i = 0; i < N; i++) {
        if (i >= N / 4 && i < 3 * N / 4 && i % 2) {
            char *del[1] = {sorted[i]};
            apply_names(h, op, del, 0, 1);
        } else {
            sorted[kept++] = sorted[i];
        }
    }
    check_lists(h, kind, sorted, kept);
    /* lookups after the deletes */
    json_t *r = h_read(h, "{'op':'%s.get','name':'%s'}", kind, sorted[kept / 2]);
    assert_true(h_ok(r));
    json_decref(r);
    /* a rebuild from the store gives the same state and lists */
    h_snapshot_restore(h, h2);
    check_lists(h2, kind, sorted, kept);
    h_digest(h, a);
    h_digest(h2, b);
    assert_string_equal(a, b);
    /* and both go on the same way: new ids after the old ones */
    snprintf(op, sizeof(op), "%s.create", kind);
    char *more[2] = {"a-new", "zz-new"};
    apply_names(h, op, more, 0, 2);
    apply_names(h2, op, more, 0, 2);
    H_EXPECT(h, "", "{'op':'tick'}");
    H_EXPECT(h2, "", "{'op':'tick'}");
    h_digest(h, a);
    h_digest(h2, b);
    assert_string_equal(a, b);
    for (size_t i = 0; i < N; i++)
        free(names[i]);
    free(names);
    free(sorted);
    h_close(h);
    h_close(h2);
}

static void test_queues(void **state)
{
    (void)state;
    run_kind("queue");
}

static void test_topics(void **state)
{
    (void)state;
    run_kind("topic");
}

/* The ordered map against a sorted array: ranks, entries at ranks, deletes
 * (including nodes with two children), keys that are prefixes of others. */
static void test_omap(void **state)
{
    omap_t m;
    char keys[3000][8];
    size_t n = 0;
    (void)state;
    omap_init(&m);
    for (size_t i = 0; i < 3000; i++) {
        snprintf(keys[i], sizeof(keys[i]), "%u", (unsigned)((i * 7919) % 3000));
        assert_int_equal(omap_put(&m, keys[i], strlen(keys[i]), keys[i]), 0);
    }
    assert_int_equal(omap_put(&m, keys[0], strlen(keys[0]), keys[0]), 0); /* replace */
    assert_int_equal(omap_len(&m), 3000);
    for (size_t i = 0; i < 3000; i += 3) /* delete a third */
        assert_ptr_equal(omap_del(&m, keys[i], strlen(keys[i])), keys[i]);
    assert_null(omap_del(&m, "x", 1));
    char *live[3000];
    for (size_t i = 0; i < 3000; i++) {
        if (i % 3)
            live[n++] = keys[i];
    }
    qsort(live, n, sizeof(*live), cmp_str); /* no key holds a byte below '0' */
    assert_int_equal(omap_len(&m), n);
    for (size_t i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        assert_ptr_equal(omap_at(&m, i, &k, &kl), live[i]);
        assert_int_equal(kl, strlen(live[i]));
        assert_memory_equal(k, live[i], kl);
        assert_int_equal(omap_rank(&m, live[i], strlen(live[i])), i);
        assert_ptr_equal(omap_get(&m, live[i], strlen(live[i])), live[i]);
    }
    assert_null(omap_at(&m, n, NULL, NULL));
    assert_int_equal(omap_rank(&m, "", 0), 0);
    assert_int_equal(omap_rank(&m, "\xff", 1), n);
    omap_free(&m);
    assert_int_equal(omap_len(&m), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_omap),
        cmocka_unit_test(test_queues),
        cmocka_unit_test(test_topics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
