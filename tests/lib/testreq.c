/* testreq.c: hand-built native-protocol requests (testreq.h). Start from
 * testreq_head: a request is its head, its fields, then testreq_send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "testhub.h"
#include "testreq.h"

static uint64_t testreq_next_id; /* the id of the last request built */

void testreq_head(msgpack_packer *pk, const char *op, uint32_t n)
{
    msgpack_pack_map(pk, 2 + n);
    mp_pack_cstr(pk, "op");
    mp_pack_cstr(pk, op);
    mp_pack_cstr(pk, "id");
    msgpack_pack_uint64(pk, ++testreq_next_id);
}

void testreq_publish_batch_head(msgpack_packer *pk, const char *topic, uint32_t n)
{
    testreq_head(pk, "publish_batch", 2);
    mp_pack_cstr(pk, "topic");
    mp_pack_cstr(pk, topic);
    mp_pack_cstr(pk, "msgs");
    msgpack_pack_array(pk, n);
}

void testreq_send(int fd, msgpack_sbuffer *sb)
{
    assert_int_equal(testhub_write_frame(fd, sb->data, sb->size), 0);
    msgpack_sbuffer_destroy(sb);
}

void testreq_script_test(int fd, const char *script, const char *topic)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    testreq_head(&pk, "script.test", 3);
    mp_pack_cstr(&pk, "name");
    mp_pack_cstr(&pk, script);
    mp_pack_cstr(&pk, "topic");
    mp_pack_cstr(&pk, topic);
    mp_pack_cstr(&pk, "since");
    msgpack_pack_uint64(&pk, 0);
    testreq_send(fd, &sb);
}
