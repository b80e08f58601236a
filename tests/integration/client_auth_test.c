/* client_auth_test.c: a hub configured with auth { token = ... }. Without
 * hello every op is UNAUTHORIZED; a wrong token is refused; the right one
 * (given to connect, or through mqhub_client_hello) opens every op, and a
 * reconnect says hello again by itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testhub.h"

#define TOKEN "s3cret-token"

static const char *mqhubd_path;
static testhub_t hub;

static int setup(void **state)
{
    testhub_opts_t o = {.token = TOKEN};
    return testhub_start(&hub, mqhubd_path, &o);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    return 0;
}

static void test_no_token(void **state)
{
    mqhub_client_t *c;
    mqhub_queue_list_t l;
    assert_int_equal(mqhub_client_connect(&c, hub.address, NULL, NULL, 0), 0);
    assert_int_equal(mqhub_client_ping(c), MQHUB_EUNAUTHORIZED);
    assert_int_equal(mqhub_client_queue_list(c, NULL, 0, 0, &l), MQHUB_EUNAUTHORIZED);
    assert_int_equal(mqhub_client_queue_create(c, "sneaky", NULL), MQHUB_EUNAUTHORIZED);
    assert_int_equal(mqhub_client_send(c, "sneaky", "x", 1, NULL, NULL), MQHUB_EUNAUTHORIZED);
    assert_int_equal(mqhub_client_hello(c, "wrong", NULL, NULL), MQHUB_EUNAUTHORIZED);
    assert_int_equal(mqhub_client_ping(c), MQHUB_EUNAUTHORIZED);
    /* hello with the right token on the same connection */
    mqhub_server_info_t info;
    assert_int_equal(mqhub_client_hello(c, TOKEN, "auth-test", &info), 0);
    assert_string_equal(info.server, "mqhub");
    assert_int_equal(mqhub_client_ping(c), 0);
    mqhub_client_close(c);
}

static void test_wrong_token_on_connect(void **state)
{
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.token = "nope"};
    char err[256] = "";
    assert_int_equal(mqhub_client_connect(&c, hub.address, &o, err, sizeof err),
                     MQHUB_EUNAUTHORIZED);
    assert_null(c);
    assert_true(err[0] != '\0');
}

static void test_token_on_connect(void **state)
{
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.token = TOKEN};
    mqhub_queue_info_t info;
    assert_int_equal(mqhub_client_connect(&c, hub.address, &o, NULL, 0), 0);
    assert_int_equal(mqhub_client_queue_create(c, "guarded", NULL), 0);
    assert_int_equal(mqhub_client_send(c, "guarded", "x", 1, NULL, NULL), 0);
    /* restart: the handle reconnects and says hello again */
    assert_int_equal(testhub_stop(&hub), 0);
    assert_int_equal(testhub_restart(&hub), 0);
    int rc = mqhub_client_queue_get(c, "guarded", &info);
    if (rc == MQHUB_ECONN)
        rc = mqhub_client_queue_get(c, "guarded", &info);
    assert_int_equal(rc, 0);
    assert_int_equal(info.stats.ready, 1);
    mqhub_client_close(c);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_token),
        cmocka_unit_test(test_wrong_token_on_connect),
        cmocka_unit_test(test_token_on_connect),
    };
    mqhubd_path = testhub_binary(argc, argv);
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
