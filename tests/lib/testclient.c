/* testclient.c: see testclient.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "testclient.h"
#include "testhub.h"

#define BATCH 256
#define BODY_MAX 1024

mqhub_client_t *testclient_connect(testcluster_t *c, int timeout_ms)
{
    mqhub_client_opts_t o = {.timeout_ms = timeout_ms};
    mqhub_client_t *cl = NULL;
    for (int i = 0; i < 100 && !cl; i++)
        if (mqhub_client_connect(&cl, c->seeds, &o, NULL, 0) != 0)
            testhub_sleep_ms(100);
    return cl;
}

void testclient_fill(mqhub_client_t *cl, const char *queue, uint64_t n, size_t body_len)
{
    static char bodies[BATCH][BODY_MAX];
    mqhub_batch_msg_t msgs[BATCH];
    mqhub_send_result_t res[BATCH];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    assert_true(body_len <= BODY_MAX);
    for (unsigned i = 0; i < BATCH; i++) { /* xorshift: incompressible-ish */
        for (size_t j = 0; j < body_len; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            bodies[i][j] = (char)x;
        }
        msgs[i] = (mqhub_batch_msg_t){.body = bodies[i], .len = body_len};
    }
    for (uint64_t sent = 0; sent < n; sent += BATCH) {
        size_t k = n - sent < BATCH ? (size_t)(n - sent) : BATCH;
        assert_int_equal(mqhub_client_send_batch(cl, queue, msgs, k, res), 0);
        assert_int_equal(res[0].status, 0);
    }
}
