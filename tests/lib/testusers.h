/* testusers.h: named users on a testhub_t mqhubd started with a root token,
 * through libmqhub — connect as a token, add a user with one grant, send any
 * op with string fields and get its code. For the permission tests
 * (tests/integration/permission_test.c, monitor_test.c). Failures end the
 * cmocka test (fail_msg / assert); nothing here returns an error to handle.
 */
#ifndef MQHUB_TESTUSERS_H
#define MQHUB_TESTUSERS_H

#include "mqhub/client.h"
#include "testhub.h"

/* A client connected to @hub with @token; the caller closes it
 * (mqhub_client_close). Fails the test when the connect fails. */
mqhub_client_t *testusers_connect(const testhub_t *hub, const char *token);

/* User @name with @token and the one grant @verb on @pattern (no grant when
 * @verb is NULL), created through @root. Fails the test unless it answers ok. */
void testusers_add(mqhub_client_t *root, const char *name, const char *token,
                   const char *verb, const char *pattern);

/* Op @op with string fields given as key, value, ..., NULL (at most 8
 * pairs): its code (0 or a negative MQHUB_E*); the answer is freed. */
int testusers_call(mqhub_client_t *c, const char *op, ...);

#endif
