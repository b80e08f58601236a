/* receipts.h: the receipts a benchmark consumer received and has not
 * deleted yet (receipts.c), shared by mqhub-bench (bench.c) and the
 * side-by-side driver (peers/peer_mqhub.c). One per consumer thread; not
 * thread-safe.
 */
#ifndef MQHUB_BENCH_RECEIPTS_H
#define MQHUB_BENCH_RECEIPTS_H

#include <stddef.h>

#include "mqhub/client.h"

typedef struct receipts {
    char **v; /* owned copies */
    size_t n, cap;
} receipts_t;

/* Keep the receipt of every message of @msgs (a receive answer's "msgs"
 * array; anything else is ignored). 0, or -1 when out of memory: the
 * receipts not kept are lost, and their messages come back after their
 * visibility timeout. */
int receipts_keep(receipts_t *r, const msgpack_object *msgs);

/* Submit one pipelined `delete {queue: @queue, receipts}` for up to
 * MQHUB_BATCH_MAX kept receipts, which are then forgotten (*@n, unless
 * NULL: how many).
 * Returns mqhub_client_call_async's code (@cb, @arg as there); on failure
 * the receipts are forgotten too (their messages come back). */
int receipts_delete(receipts_t *r, mqhub_client_t *c, const char *queue, mqhub_response_cb cb,
                    void *arg, size_t *n);

/* Free every kept receipt and the array. */
void receipts_free(receipts_t *r);

#endif
