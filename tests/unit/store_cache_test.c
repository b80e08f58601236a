/* store_cache_test.c: the store's memory stays bounded under queue churn.
 *
 * A queue's life in the store is append at the tail, delete at the head: the
 * live set stays small while millions of records pass through. Kyoto
 * Cabinet's TreeDB bounds its leaf cache by the bytes of the records it holds
 * (pccap), and a leaf emptied by deletes is only marked dead: it stays in the
 * cache, counted as 8 bytes but costing about 680 (node, lock, record
 * vector), until the cache passes pccap — which a small live set never does.
 * The soak (tests/soak) grew ~1 MiB/s that way. store.c now flushes the leaf
 * cache each time its writes spend STORE_FLUSH_BUDGET (puts and removals:
 * store_del, drains, prefix deletes); this test pushes 400,000 records (1 KiB values) through a live
 * window of 2,000 and checks that the live heap grows by less than 24 MiB
 * (without the flush: +70 MiB; with it +0.6 MiB). The figure is printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#if defined(__SANITIZE_ADDRESS__)
#define STORE_CACHE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STORE_CACHE_ASAN 1
#endif
#endif
#ifdef STORE_CACHE_ASAN
/* libasan's allocator statistics (sanitizer/allocator_interface.h, which
 * GCC does not install). */
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

#include "sm/sm.h"
#include "tmpdir.h"

#define CHURN_RECORDS 400000
#define CHURN_WINDOW 2000
#define CHURN_BODY 1024
#define CHURN_BOUND_MIB 24

/* Bytes the program has allocated and not freed (not RSS: the allocator's
 * free lists and fragmentation are not the store's doing). */
static size_t live_heap(void)
{
#ifdef STORE_CACHE_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

static void key_of(char k[17], uint64_t seq)
{
    k[0] = 'B';
    memset(k + 1, 0, 8);
    for (int i = 0; i < 8; i++)
        k[9 + i] = (char)(seq >> (56 - 8 * i));
}

static void test_fifo_churn_is_bounded(void **state)
{
    (void)state;
    char dir[256], path[300], err[256], k[17];
    static char body[CHURN_BODY];
    store_t *s;

    memset(body, 'x', sizeof body);
    assert_non_null(tmpdir_make(dir, sizeof dir, "storecache"));
    snprintf(path, sizeof path, "%s/state.kct", dir);
    if (store_open(&s, path, err, sizeof err) != 0)
        fail_msg("%s", err);
    for (uint64_t seq = 0; seq < CHURN_WINDOW; seq++) {
        key_of(k, seq);
        assert_int_equal(store_put(s, k, sizeof k, body, sizeof body), 0);
    }
    size_t before = live_heap();
    for (uint64_t seq = CHURN_WINDOW; seq < CHURN_RECORDS; seq++) {
        key_of(k, seq);
        assert_int_equal(store_put(s, k, sizeof k, body, sizeof body), 0);
        key_of(k, seq - CHURN_WINDOW);
        assert_int_equal(store_del(s, k, sizeof k), 0);
    }
    size_t after = live_heap();
    double grown = after > before ? (double)(after - before) / (1 << 20) : 0.0;
    printf("store churn: %d records through a window of %d: live heap %+.1f MiB "
           "(bound %d MiB)\n", CHURN_RECORDS, CHURN_WINDOW, grown, CHURN_BOUND_MIB);
    assert_int_equal(store_count(s), CHURN_WINDOW);
    store_close(s);
    unlink(path);
    rmdir(dir);
    assert_true(grown < CHURN_BOUND_MIB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_churn_is_bounded),
    };
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
