/* store_test.c: the Kyoto Cabinet wrapper — put/get/del, ordered prefix
 * scans, prefix deletes, dump/load round trips, digests, truncation on open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sm/sm.h"
#include "tmpdir.h"

struct fixture {
    char dir[256], path[300];
    store_t *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];
    assert_non_null(tmpdir_make(f->dir, sizeof f->dir, "store"));
    snprintf(f->path, sizeof(f->path), "%s/state.kct", f->dir);
    if (store_open(&f->s, f->path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void put(store_t *s, const char *k, const char *v)
{
    assert_int_equal(store_put(s, k, strlen(k), v, strlen(v)), 0);
}

static void test_put_get_del(void **state)
{
    struct fixture *f = *state;
    size_t vl;
    put(f->s, "k1", "v1");
    put(f->s, "k1", "v2");
    char *v = store_get(f->s, "k1", 2, &vl);
    assert_non_null(v);
    assert_int_equal(vl, 2);
    assert_memory_equal(v, "v2", 2);
    store_free(v);
    assert_null(store_get(f->s, "k2", 2, &vl));
    assert_int_equal(store_count(f->s), 1);
    assert_int_equal(store_del(f->s, "k1", 2), 0);
    assert_int_equal(store_del(f->s, "k1", 2), MQHUB_ENOT_FOUND);
    /* binary keys and values with NULs */
    assert_int_equal(store_put(f->s, "a\0b", 3, "\0\1", 2), 0);
    v = store_get(f->s, "a\0b", 3, &vl);
    assert_int_equal(vl, 2);
    assert_memory_equal(v, "\0\1", 2);
    store_free(v);
}

struct seen {
    char keys[16][16];
    int n, stop_at;
};

static int collect(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct seen *s = arg;
    snprintf(s->keys[s->n++], 16, "%.*s", (int)kl, k);
    return s->n == s->stop_at ? 7 : 0;
}

static void test_scan(void **state)
{
    struct fixture *f = *state;
    const char *keys[] = {"M2", "M1", "A", "M3", "N", "M10"};
    for (int i = 0; i < 6; i++)
        put(f->s, keys[i], "x");
    struct seen s = {.n = 0};
    assert_int_equal(store_scan(f->s, "M", 1, NULL, 0, collect, &s), 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.keys[0], "M1");
    assert_string_equal(s.keys[1], "M10");
    assert_string_equal(s.keys[2], "M2");
    assert_string_equal(s.keys[3], "M3");
    s = (struct seen){.n = 0};
    assert_int_equal(store_scan(f->s, "M", 1, "M2", 2, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.keys[0], "M2");
    s = (struct seen){.n = 0, .stop_at = 2};
    assert_int_equal(store_scan(f->s, "M", 1, NULL, 0, collect, &s), 7);
    assert_int_equal(s.n, 2);
    s = (struct seen){.n = 0};
    assert_int_equal(store_scan(f->s, "Z", 1, NULL, 0, collect, &s), 0);
    assert_int_equal(s.n, 0);
    s = (struct seen){.n = 0};
    store_scan(f->s, "", 0, NULL, 0, collect, &s);
    assert_int_equal(s.n, 6);
    assert_int_equal(store_del_prefix(f->s, "M", 1), 4);
    assert_int_equal(store_count(f->s), 2);
    assert_int_equal(store_del_prefix(f->s, "M", 1), 0);
}

static void test_dump_load_digest(void **state)
{
    struct fixture *f = *state;
    unsigned char d1[32], d2[32];
    char k[32], v[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof(k), "key%04d", i);
        snprintf(v, sizeof(v), "value-%d", i * 7);
        put(f->s, k, v);
    }
    store_digest(f->s, d1);
    struct raft_buffer *bufs;
    unsigned n;
    assert_int_equal(store_dump(f->s, &bufs, &n), 0);
    assert_true(n >= 1);
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    char *all = malloc(total);
    total = 0;
    for (unsigned i = 0; i < n; i++) {
        memcpy(all + total, bufs[i].base, bufs[i].len);
        total += bufs[i].len;
        raft_free(bufs[i].base);
    }
    raft_free(bufs);
    /* the dump is a copy: later changes do not touch it */
    put(f->s, "key0000", "changed");
    put(f->s, "zzz", "new");
    store_digest(f->s, d2);
    assert_memory_not_equal(d1, d2, 32);
    assert_int_equal(store_load(f->s, all, total), 0);
    store_digest(f->s, d2);
    assert_memory_equal(d1, d2, 32);
    assert_int_equal(store_count(f->s), 1000);
    /* corrupt streams are refused */
    assert_int_not_equal(store_load(f->s, "XXXX", 4), 0);
    assert_int_not_equal(store_load(f->s, all, total - 3), 0);
    assert_int_equal(store_count(f->s), 1000); /* unchanged by a refused load */
    free(all);
}

static void test_open_truncates(void **state)
{
    struct fixture *f = *state;
    char err[256];
    size_t vl;
    put(f->s, "k", "v");
    store_close(f->s);
    assert_int_equal(store_open(&f->s, f->path, err, sizeof(err)), 0);
    assert_null(store_get(f->s, "k", 1, &vl));
    assert_int_equal(store_count(f->s), 0);
    store_t *bad;
    assert_int_equal(store_open(&bad, "/nonexistent-dir/x/state.kct", err, sizeof(err)),
                     MQHUB_EINTERNAL);
    assert_non_null(strstr(err, "/nonexistent-dir/x/state.kct"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_load_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_truncates, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
