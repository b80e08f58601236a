/* history_unit_test.c: the dashboard's history rings (transports/websocket/
 * history.c) fed snapshots at chosen wall-clock times, no daemon: points a
 * second apart are kept, closer ones replace the newest, and a wall clock
 * stepped back (NTP, a VM resumed) starts new points at once instead of
 * overwriting the newest until the clock catches up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ws.h"

/* A snapshot as stats.c makes it: one queue with @sent messages sent. */
static json_t *snapshot(int64_t sent)
{
    return json_pack("{s:[{s:s,s:{s:I,s:I}}],s:[],s:[]}", "queues", "name", "q", "stats",
                     "ready", (json_int_t)1, "sent_total", (json_int_t)sent, "topics",
                     "subscriptions");
}

static void sample_at(history_t *h, int64_t ts, int64_t sent)
{
    json_t *s = snapshot(sent);
    history_sample(h, s, ts, 0, 0);
    json_decref(s);
}

/* The times of the hub's per-second points, oldest first. */
static size_t second_times(history_t *h, int64_t *out, size_t max)
{
    json_t *j = history_json(h, NULL), *row;
    size_t i, n = 0;
    json_array_foreach(json_object_get(j, "seconds"), i, row)
        if (n < max)
            out[n++] = (int64_t)json_integer_value(json_array_get(row, 0));
    json_decref(j);
    return n;
}

static void test_spacing(void **state)
{
    history_t *h;
    int64_t t[16];
    (void)state;
    assert_int_equal(history_new(&h), 0);
    sample_at(h, 1000000, 1);
    sample_at(h, 1000300, 2);
    sample_at(h, 1000600, 3); /* 600 ms after the point before: replaces the newest */
    sample_at(h, 1001000, 4); /* 1000 ms after it: a point of its own */
    assert_int_equal(second_times(h, t, 16), 3);
    assert_int_equal(t[0], 1000000);
    assert_int_equal(t[1], 1000600);
    assert_int_equal(t[2], 1001000);
    history_free(h);
}

static void test_clock_stepped_back(void **state)
{
    history_t *h;
    int64_t t[64];
    (void)state;
    assert_int_equal(history_new(&h), 0);
    for (int64_t i = 0; i < 5; i++)
        sample_at(h, 2000000 + i * 1000, i);
    /* the clock goes back an hour; samples keep coming once a second */
    for (int64_t i = 0; i < 5; i++)
        sample_at(h, 2000000 - 3600000 + i * 1000, 5 + i);
    size_t n = second_times(h, t, 64);
    assert_int_equal(n, 10); /* every sample after the step is a point of its own */
    assert_int_equal(t[5], 2000000 - 3600000);
    assert_int_equal(t[9], 2000000 - 3600000 + 4000);
    history_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spacing),
        cmocka_unit_test(test_clock_stepped_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
