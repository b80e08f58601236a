/* cluster_ops.c: libmqhub's cluster.* calls (status, add, remove, transfer).
 *
 * Each builds its request with client_req_init() and waits with
 * client_call(); status unpacks the answer into a plain struct. To add a
 * cluster op, follow mqhub_client_cluster_remove().
 */
#include <string.h>

#include "client_int.h"

#define CHANGE_TIMEOUT_MS 60000

static void copy_node(const msgpack_object *m, mqhub_cluster_node_t *n)
{
    const msgpack_object *leader = mqhub_map_get(m, "leader");
    memset(n, 0, sizeof *n);
    client_get_uint(m, "id", &n->id);
    client_copy_str(m, "address", n->address, sizeof n->address);
    client_copy_str(m, "client", n->client, sizeof n->client);
    client_copy_str(m, "role", n->role, sizeof n->role);
    n->leader = leader && leader->type == MSGPACK_OBJECT_BOOLEAN && leader->via.boolean;
    n->has_match = client_get_uint(m, "match_index", &n->match_index) == 0;
}

int mqhub_client_cluster_status(mqhub_client_t *c, bool digest, mqhub_cluster_status_t *out)
{
    client_req_t r;
    mqhub_response_t resp;
    const msgpack_object *nodes;

    memset(out, 0, sizeof *out);
    client_req_init(c, &r, "cluster.status", 1);
    client_pack_str(&r.pk, "digest");
    digest ? msgpack_pack_true(&r.pk) : msgpack_pack_false(&r.pk);
    int rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    const msgpack_object *m = &resp.map;
    client_get_uint(m, "node", &out->node);
    client_copy_str(m, "role", out->role, sizeof out->role);
    client_copy_str(m, "leader", out->leader, sizeof out->leader);
    client_get_uint(m, "leader_id", &out->leader_id);
    client_get_uint(m, "term", &out->term);
    client_get_uint(m, "commit_index", &out->commit_index);
    client_get_uint(m, "last_applied", &out->last_applied);
    client_copy_str(m, "digest", out->digest, sizeof out->digest);
    nodes = mqhub_map_get(m, "nodes");
    if (nodes && nodes->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < nodes->via.array.size && i < MQHUB_CLUSTER_MAX_NODES; i++)
            copy_node(&nodes->via.array.ptr[i], &out->nodes[out->n_nodes++]);
    }
    mqhub_response_free(&resp);
    return 0;
}

static int call_change(mqhub_client_t *c, client_req_t *r)
{
    r->timeout_ms = CHANGE_TIMEOUT_MS;
    return client_call_simple(c, r);
}

int mqhub_client_cluster_add(mqhub_client_t *c, uint64_t node, const char *address,
                             const char *client)
{
    client_req_t r;
    client_req_init(c, &r, "cluster.add", client ? 3 : 2);
    client_pack_kv_uint(&r.pk, "node", node);
    client_pack_kv_str(&r.pk, "address", address);
    if (client)
        client_pack_kv_str(&r.pk, "client", client);
    return call_change(c, &r);
}

int mqhub_client_cluster_remove(mqhub_client_t *c, uint64_t node)
{
    client_req_t r;
    client_req_init(c, &r, "cluster.remove", 1);
    client_pack_kv_uint(&r.pk, "node", node);
    return call_change(c, &r);
}

int mqhub_client_cluster_transfer(mqhub_client_t *c, uint64_t node)
{
    client_req_t r;
    client_req_init(c, &r, "cluster.transfer", node ? 1 : 0);
    if (node)
        client_pack_kv_uint(&r.pk, "node", node);
    return call_change(c, &r);
}
