/* testusers.c: named users on a test mqhubd through libmqhub (testusers.h).
 * Start from testusers_connect; testusers_call is the escape hatch for ops
 * the client library has no function for (or for sending them raw).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testusers.h"

mqhub_client_t *testusers_connect(const testhub_t *hub, const char *token)
{
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.token = token};
    char err[256] = "";
    int rc = mqhub_client_connect(&c, hub->address, &o, err, sizeof err);
    if (rc != 0)
        fail_msg("connect: %s: %s", mqhub_err_name(rc), err);
    return c;
}

void testusers_add(mqhub_client_t *root, const char *name, const char *token,
                   const char *verb, const char *pattern)
{
    mqhub_grant_t g = {verb, pattern};
    assert_int_equal(mqhub_client_user_create(root, name, token, &g, verb ? 1 : 0, NULL, 0), 0);
}

int testusers_call(mqhub_client_t *c, const char *op, ...)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    mqhub_response_t resp;
    const char *kv[16];
    unsigned n = 0;
    va_list ap;
    int rc;

    va_start(ap, op);
    for (const char *s = va_arg(ap, const char *); s && n < 16; s = va_arg(ap, const char *))
        kv[n++] = s;
    va_end(ap);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, n / 2);
    for (unsigned i = 0; i < n; i++)
        mp_pack_cstr(&pk, kv[i]);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    rc = mqhub_client_call(c, op, &u.data, &resp);
    if (rc == 0)
        mqhub_response_free(&resp);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}
