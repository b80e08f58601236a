/* session_ops.c: libmqhub's session operations (docs/protocol.md "Session":
 * hello, ping) and the generic calls that send any op with the caller's
 * arguments (mqhub_client_call, mqhub_client_call_async), built on
 * client.c's engine like the other *_ops.c files.
 *
 * Start with mqhub_client_hello(): it also remembers the token for the
 * engine's reconnects (client_set_auth()).
 */
#include <string.h>

#include "client_int.h"

/* ----------------------------------------------------------- generic */

void mqhub_response_free(mqhub_response_t *r)
{
    if (r && r->zone)
        msgpack_zone_free(r->zone);
    if (r)
        r->zone = NULL;
}

static uint32_t args_count(const msgpack_object *args)
{
    return args && args->type == MSGPACK_OBJECT_MAP ? args->via.map.size : 0;
}

static void pack_args(msgpack_packer *pk, const msgpack_object *args)
{
    for (uint32_t i = 0; i < args_count(args); i++) {
        msgpack_pack_object(pk, args->via.map.ptr[i].key);
        msgpack_pack_object(pk, args->via.map.ptr[i].val);
    }
}

int mqhub_client_call(mqhub_client_t *c, const char *op, const msgpack_object *args,
                      mqhub_response_t *out)
{
    client_req_t r;
    client_req_init(c, &r, op, args_count(args));
    pack_args(&r.pk, args);
    return client_call(c, &r, out);
}

int mqhub_client_call_async(mqhub_client_t *c, const char *op,
                            const msgpack_object *args, mqhub_response_cb cb, void *arg)
{
    client_req_t r;
    client_req_init(c, &r, op, args_count(args));
    pack_args(&r.pk, args);
    return client_submit_response(c, &r, cb, arg);
}

/* ----------------------------------------------------------- session */

int mqhub_client_hello(mqhub_client_t *c, const char *token, const char *client,
                       mqhub_server_info_t *info)
{
    client_req_t r;
    mqhub_response_t resp;
    uint64_t u;

    client_set_auth(c, token, client);
    client_req_init(c, &r, "hello", 1 + (token != NULL) + (client != NULL));
    client_pack_kv_uint(&r.pk, "version", MQHUB_PROTOCOL_VERSION);
    if (token)
        client_pack_kv_str(&r.pk, "token", token);
    if (client)
        client_pack_kv_str(&r.pk, "client", client);
    int rc = client_call(c, &r, &resp);
    if (rc != 0 || !info) {
        mqhub_response_free(&resp);
        return rc;
    }
    memset(info, 0, sizeof *info);
    client_copy_str(&resp.map, "server", info->server, sizeof info->server);
    client_copy_str(&resp.map, "leader", info->leader, sizeof info->leader);
    if (client_get_uint(&resp.map, "version", &u) == 0)
        info->version = (unsigned)u;
    client_get_uint(&resp.map, "node", &info->node);
    client_get_uint(&resp.map, "max_frame", &info->max_frame);
    mqhub_response_free(&resp);
    return 0;
}

int mqhub_client_ping(mqhub_client_t *c)
{
    client_req_t r;
    client_req_init(c, &r, "ping", 0);
    return client_call_simple(c, &r);
}
