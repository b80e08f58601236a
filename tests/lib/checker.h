/* checker.h: the history checker of the cluster tests. Client threads record
 * what the hub acknowledged (sends, deliveries, deletes) with monotonic
 * timestamps; checker_verify() then checks the promises of issue 7:
 *   1. every acknowledged send is delivered at least once;
 *   2. no receive issued after a delete of that message was acknowledged
 *      returns it again (no rewind in these tests);
 *   3. locks survive failover: a message is not delivered again before the
 *      visibility timeout of its previous delivery ran out;
 *   4. receive counts survive failover: no count repeats, and a delivery
 *      answered before another receive was issued has the lower count.
 * Deliveries are ordered by receive_count, the order the hub committed them
 * in: answers may arrive in another order (a leader stalled by SIGSTOP still
 * answers, late, for an entry that was committed while it was stopped).
 * Messages are identified by a uint64 key (the body is its 16 hex digits).
 * Thread-safe.
 */
#ifndef MQHUB_TESTS_CHECKER_H
#define MQHUB_TESTS_CHECKER_H

#include <stdint.h>
#include <stdio.h>

typedef struct checker checker_t;

/* @visibility_ms: the queue's visibility timeout. NULL on out of memory. */
checker_t *checker_new(uint64_t visibility_ms);
void checker_free(checker_t *k);
void checker_sent(checker_t *k, uint64_t key);
/* A delivery: the receive was issued at @issued and answered at @answered by
 * the node whose client port is @via (for the report). */
void checker_received(checker_t *k, uint64_t key, uint64_t issued, uint64_t answered,
                      uint32_t receive_count, unsigned via);
/* A delete acknowledged at @acked. */
void checker_deleted(checker_t *k, uint64_t key, uint64_t acked);
/* Check the history; violations are described on @out. Returns how many. */
long checker_verify(checker_t *k, FILE *out);
/* Counts recorded so far. */
void checker_counts(checker_t *k, long *sent, long *received, long *deleted);

#endif
