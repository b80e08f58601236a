/* testclient.h: what cluster tests do through libmqhub besides their own
 * checks — connect to every node of a testcluster_t (the client follows
 * the leader), fill a queue with incompressible bodies. Failures end the
 * cmocka test where it says so.
 */
#ifndef MQHUB_TESTCLIENT_H
#define MQHUB_TESTCLIENT_H

#include <stdint.h>

#include "mqhub/client.h"
#include "testcluster.h"

/* A client of @c's nodes (its seeds) whose requests time out after
 * @timeout_ms, trying for up to 10 s (the cluster may still be electing);
 * NULL when none answered. The caller closes it (mqhub_client_close). */
mqhub_client_t *testclient_connect(testcluster_t *c, int timeout_ms);

/* @n sends of @body_len (at most 1024) bytes into @queue, in batches of
 * 256, the bodies pseudo-random so that the state is as large as they
 * are. Fails the test on any error. */
void testclient_fill(mqhub_client_t *cl, const char *queue, uint64_t n, size_t body_len);

#endif
