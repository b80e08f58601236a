/* script_ops.c: libmqhub's script.* and block.* calls (PROTOCOL.md "Scripts and
 * blocks", docs/scripting.md).
 *
 * load/delete and block.delete return only a status; get/list/test and
 * block.list hand back the whole response (its fields are documented in
 * docs/protocol.md), which the caller frees with mqhub_response_free(). To
 * add a call, follow mqhub_client_script_delete().
 */
#include <string.h>

#include "client_int.h"

int mqhub_client_script_load(mqhub_client_t *c, const char *name, const char *source,
                             size_t len, uint64_t *version)
{
    client_req_t r;
    mqhub_response_t resp;
    client_req_init(c, &r, "script.load", 2);
    client_pack_kv_str(&r.pk, "name", name);
    client_pack_str(&r.pk, "source");
    msgpack_pack_str(&r.pk, len);
    msgpack_pack_str_body(&r.pk, source, len);
    int rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    if (version && client_get_uint(&resp.map, "version", version) != 0)
        *version = 0;
    mqhub_response_free(&resp);
    return 0;
}

int mqhub_client_script_delete(mqhub_client_t *c, const char *name)
{
    client_req_t r;
    client_req_init(c, &r, "script.delete", 1);
    client_pack_kv_str(&r.pk, "name", name);
    return client_call_simple(c, &r);
}

int mqhub_client_script_get(mqhub_client_t *c, const char *name, mqhub_response_t *out)
{
    client_req_t r;
    client_req_init(c, &r, "script.get", 1);
    client_pack_kv_str(&r.pk, "name", name);
    return client_call(c, &r, out);
}

int mqhub_client_script_list(mqhub_client_t *c, mqhub_response_t *out)
{
    client_req_t r;
    client_req_init(c, &r, "script.list", 0);
    return client_call(c, &r, out);
}

int mqhub_client_script_test(mqhub_client_t *c, const char *name, const char *topic,
                             uint64_t since_ms, mqhub_response_t *out)
{
    client_req_t r;
    client_req_init(c, &r, "script.test", 3);
    client_pack_kv_str(&r.pk, "name", name);
    client_pack_kv_str(&r.pk, "topic", topic);
    client_pack_kv_uint(&r.pk, "since", since_ms);
    return client_call(c, &r, out);
}

int mqhub_client_block_list(mqhub_client_t *c, mqhub_response_t *out)
{
    client_req_t r;
    client_req_init(c, &r, "block.list", 0);
    return client_call(c, &r, out);
}

int mqhub_client_block_delete(mqhub_client_t *c, const char *attr, const char *value)
{
    client_req_t r;
    client_req_init(c, &r, "block.delete", 2);
    client_pack_kv_str(&r.pk, "attr", attr);
    client_pack_kv_str(&r.pk, "value", value);
    return client_call_simple(c, &r);
}
