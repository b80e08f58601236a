/* config_declare_test.c: objects declared in the config file exist once the
 * node leads. A hook given as a .lua file is loaded as the script named after
 * the file and attached; a queue's dead-letter target declared in the same
 * file works; internal ops (tick, sub.dead) are refused from clients.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testhub.h"

static const char *mqhubd_path;
static testhub_t hub;

static int setup(void **state)
{
    static char extra[1024];
    snprintf(extra, sizeof extra,
             "queue \"risk-alerts\" {}\n"
             "queue \"image-dlq\" {}\n"
             "queue \"image-requests\" { visibility_timeout = 120,\n"
             "    dead_letter = { queue = \"image-dlq\", max_receives = 5 } }\n"
             "topic \"payments\" { hook = \"%s/scripts/risk/merchant_spike.lua\" }\n",
             MQHUB_SOURCE_DIR);
    testhub_opts_t o = {.extra_config = extra};
    return testhub_start(&hub, mqhubd_path, &o);
}

static int teardown(void **state)
{
    testhub_cleanup(&hub);
    return 0;
}

static void test_declared_objects(void **state)
{
    mqhub_client_t *c;
    mqhub_queue_info_t q;
    mqhub_topic_info_t t;
    mqhub_response_t r = {0};

    assert_int_equal(mqhub_client_connect(&c, hub.address, NULL, NULL, 0), 0);
    /* Declared objects are created as soon as the node leads: poll briefly. */
    int rc = MQHUB_ENOT_FOUND;
    for (int i = 0; i < 100 && rc == MQHUB_ENOT_FOUND; i++) {
        rc = mqhub_client_topic_get(c, "payments", &t);
        if (rc == MQHUB_ENOT_FOUND)
            usleep(50 * 1000);
    }
    assert_int_equal(rc, 0);
    mqhub_topic_info_free(&t);
    assert_int_equal(mqhub_client_queue_get(c, "image-requests", &q), 0);
    assert_int_equal(q.attrs.visibility_timeout, 120);
    assert_int_equal(mqhub_client_topic_get(c, "payments", &t), 0);
    assert_string_equal(t.attrs.hook, "merchant_spike");
    mqhub_topic_info_free(&t);
    assert_int_equal(mqhub_client_script_list(c, &r), 0);
    const msgpack_object *scripts = mqhub_map_get(&r.map, "scripts");
    assert_non_null(scripts);
    assert_int_equal(scripts->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(scripts->via.array.size, 1);
    mqhub_response_free(&r);
    mqhub_client_close(c);
}

static void test_internal_ops_refused(void **state)
{
    mqhub_client_t *c;
    mqhub_response_t r = {0};

    assert_int_equal(mqhub_client_connect(&c, hub.address, NULL, NULL, 0), 0);
    assert_int_equal(mqhub_client_call(c, "tick", NULL, &r), MQHUB_EUNKNOWN_OP);
    assert_int_equal(mqhub_client_call(c, "sub.dead", NULL, &r), MQHUB_EUNKNOWN_OP);
    assert_int_equal(mqhub_client_ping(c), 0);
    mqhub_client_close(c);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_declared_objects),
        cmocka_unit_test(test_internal_ops_refused),
    };
    mqhubd_path = argc > 1 ? argv[1] : getenv("MQHUBD");
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD\n", argv[0]);
        return 2;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
