/* cluster_ops.c: libmqhub's cluster.* calls (status, status_raft,
 * status_more, add, add_http, remove, transfer).
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
    return mqhub_client_cluster_status_more(c, digest, out, NULL, NULL);
}

int mqhub_client_cluster_status_raft(mqhub_client_t *c, bool digest,
                                     mqhub_cluster_status_t *out, mqhub_cluster_raft_t *raft)
{
    return mqhub_client_cluster_status_more(c, digest, out, raft, NULL);
}

/* The reply's http fields (top level and per node, in the order copy_node
 * kept them) and removed_by into *@more. */
static void copy_more(const msgpack_object *m, const msgpack_object *nodes,
                      mqhub_cluster_more_t *more)
{
    memset(more, 0, sizeof *more);
    client_copy_str(m, "http", more->http, sizeof more->http);
    client_get_uint(m, "removed_by", &more->removed_by);
    if (!nodes || nodes->type != MSGPACK_OBJECT_ARRAY)
        return;
    for (uint32_t i = 0; i < nodes->via.array.size && i < MQHUB_CLUSTER_MAX_NODES; i++)
        client_copy_str(&nodes->via.array.ptr[i], "http", more->node_http[i],
                        sizeof more->node_http[i]);
}

int mqhub_client_cluster_status_more(mqhub_client_t *c, bool digest,
                                     mqhub_cluster_status_t *out, mqhub_cluster_raft_t *raft,
                                     mqhub_cluster_more_t *more)
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
    if (raft) {
        *raft = (mqhub_cluster_raft_t){0};
        client_get_uint(m, "last_index", &raft->last_index);
        client_get_uint(m, "snapshot_index", &raft->snapshot_index);
        client_get_uint(m, "snapshot_age_ms", &raft->snapshot_age_ms);
        client_get_uint(m, "log_entries", &raft->log_entries);
        client_get_uint(m, "log_bytes", &raft->log_bytes);
        client_get_uint(m, "leader_changes", &raft->leader_changes);
    }
    if (more)
        copy_more(m, nodes, more);
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
    return mqhub_client_cluster_add_http(c, node, address, client, NULL);
}

int mqhub_client_cluster_add_http(mqhub_client_t *c, uint64_t node, const char *address,
                                  const char *client, const char *http)
{
    client_req_t r;
    client_req_init(c, &r, "cluster.add", 2 + (client != NULL) + (http != NULL));
    client_pack_kv_uint(&r.pk, "node", node);
    client_pack_kv_str(&r.pk, "address", address);
    if (client)
        client_pack_kv_str(&r.pk, "client", client);
    if (http)
        client_pack_kv_str(&r.pk, "http", http);
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
