/* cluster.c: the cluster.* operations of PROTOCOL.md "Cluster", answered by
 * the hub on the node that receives them.
 *
 *   cluster.status {digest?: bool, records?: bool}  any node: raft's view
 *                                   from here (+ state digest, store records)
 *   cluster.add {id, address, client?, http?}  leader: raft_add, then voter
 *   cluster.remove {id}             leader: standby, then raft_remove
 *   cluster.transfer {id?}          leader: raft_transfer (0/absent: raft picks)
 *
 * Start at cluster_request(). Membership changes complete asynchronously:
 * each waits as a `pending` linked to its session; a closed session detaches
 * its pendings (the reply is then dropped). To add an op: a row in the op
 * table (core/sm/ops.c, kind OPS_CLUSTER, a new enum ops_node value), one
 * handler here and its case in change_of().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

#define CLUSTER_MAX_NODES 64

typedef struct pending {
    cluster_t *c;
    mqhub_session_t *s; /* NULL once its session closed */
    mqhub_reply_cb cb;
    void *arg;
    uint64_t id;
    struct pending *prev, *next;
} pending_t;

struct cluster {
    replica_t *replica;
    fsm_t *fsm;
    pending_t *pending;
};

/* ---- replies ------------------------------------------------------------ */

static void reply(cluster_t *c, mqhub_reply_cb cb, void *arg, uint64_t id, int code,
                  const char *msg)
{
    const char *leader = code == MQHUB_ENOT_LEADER ? replica_leader_address(c->replica)
                                                   : NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (code == 0) {
        wire_pack_head(&pk, true, id, true, 0);
    } else {
        wire_pack_error(&pk, true, id, code, msg && msg[0] ? msg : mqhub_strerror(code),
                       leader);
    }
    cb(arg, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- pending membership changes ------------------------------------------ */

static pending_t *pending_new(cluster_t *c, mqhub_session_t *s, mqhub_reply_cb cb,
                              void *arg, uint64_t id)
{
    pending_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    *p = (pending_t){.c = c, .s = s, .cb = cb, .arg = arg, .id = id, .next = c->pending};
    if (c->pending)
        c->pending->prev = p;
    c->pending = p;
    return p;
}

static void pending_free(pending_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->c->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    free(p);
}

static void change_done(void *arg, int status, const char *errmsg)
{
    pending_t *p = arg;
    if (p->s)
        reply(p->c, p->cb, p->arg, p->id, status, errmsg);
    pending_free(p);
}

void cluster_session_closed(cluster_t *c, mqhub_session_t *s)
{
    for (pending_t *p = c->pending; p; p = p->next)
        if (p->s == s)
            p->s = NULL;
}

/* ---- arguments ----------------------------------------------------------- */

/* The node id is `node`, since `id` is the request's. PROTOCOL.md writes
 * cluster.add/remove as {id, ...}: when `node` is absent from an op that
 * requires one, the request id is taken as the node id, so both spellings work.
 * cluster.transfer's target is optional, so there only `node` names it. */
static int arg_id(const msgpack_object *req, bool required, uint64_t *out)
{
    const msgpack_object *o = mp_map_get(req, "node");
    if (!o && required)
        o = mp_map_get(req, "id");
    *out = 0;
    if (!o)
        return required ? MQHUB_EBAD_REQUEST : 0;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 == 0)
        return MQHUB_EBAD_REQUEST;
    *out = o->via.u64;
    return 0;
}

/* Printable, without spaces: addresses are kept one line per node, space
 * separated (replica.c "clients"). */
static bool printable(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
            return false;
    return true;
}

/* A "host:port" string field copied into @buf; "" when absent. */
static int arg_address(const msgpack_object *req, const char *key, bool required,
                       char *buf, size_t size)
{
    const msgpack_object *o = mp_map_get(req, key);
    buf[0] = '\0';
    if (!o)
        return required ? MQHUB_EBAD_REQUEST : 0;
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 || o->via.str.size >= size ||
        !memchr(o->via.str.ptr, ':', o->via.str.size) ||
        !printable(o->via.str.ptr, o->via.str.size))
        return MQHUB_EBAD_REQUEST;
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = '\0';
    return 0;
}

/* ---- operations ------------------------------------------------------------ */

static void pack_node(msgpack_packer *pk, const replica_node_t *n)
{
    msgpack_pack_map(pk, 5 + (n->client_address != NULL) + (n->http_address != NULL));
    mp_pack_cstr(pk, "id");
    msgpack_pack_uint64(pk, n->id);
    mp_pack_cstr(pk, "address");
    mp_pack_cstr(pk, n->raft_address);
    if (n->client_address) {
        mp_pack_cstr(pk, "client");
        mp_pack_cstr(pk, n->client_address);
    }
    if (n->http_address) {
        mp_pack_cstr(pk, "http");
        mp_pack_cstr(pk, n->http_address);
    }
    mp_pack_cstr(pk, "role");
    mp_pack_cstr(pk, n->role);
    mp_pack_cstr(pk, "leader");
    n->leader ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    mp_pack_cstr(pk, "match_index");
    if (n->has_match)
        msgpack_pack_uint64(pk, n->match_index);
    else
        msgpack_pack_nil(pk);
}

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* A boolean field of @req that is true (absent or another type: false). */
static bool asked(const msgpack_object *req, const char *key)
{
    const msgpack_object *want = mp_map_get(req, key);
    return want && want->type == MSGPACK_OBJECT_BOOLEAN && want->via.boolean;
}

/* cluster.status's figures of the raft log (docs/protocol.md): ten pairs. */
static void pack_log_stats(msgpack_packer *pk, const replica_stats_t *st)
{
    const struct {
        const char *key;
        uint64_t value;
    } pairs[] = {
        {"last_index", st->last_index},         {"snapshot_index", st->snapshot_index},
        {"snapshot_age_ms", st->snapshot_age_ms}, {"log_entries", st->log_entries},
        {"log_bytes", st->log_bytes},           {"leader_changes", st->leader_changes},
        {"entries_answered", st->answered},     {"entries_answered_us", st->answered_us},
        {"entries_applied", st->applied},       {"apply_us", st->apply_us},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        mp_pack_cstr(pk, pairs[i].key);
        msgpack_pack_uint64(pk, pairs[i].value);
    }
}

static void op_status(cluster_t *c, const msgpack_object *req, uint64_t id,
                      mqhub_reply_cb cb, void *arg)
{
    bool digest = asked(req, "digest");
    bool records = asked(req, "records");
    replica_node_t nodes[CLUSTER_MAX_NODES];
    unsigned n = replica_nodes(c->replica, nodes, CLUSTER_MAX_NODES);
    const char *leader = replica_leader_address(c->replica);
    replica_stats_t st;
    const char *http = replica_http_address(c->replica, replica_id(c->replica));
    uint64_t removed_by = 0;
    bool removed = replica_removed(c->replica, &removed_by);
    msgpack_sbuffer sb;
    msgpack_packer pk;

    replica_stats(c->replica, &st);
    if (n > CLUSTER_MAX_NODES)
        n = CLUSTER_MAX_NODES;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_pack_head(&pk, true, id, true, 18 + digest + records + (http != NULL) + removed);
    mp_pack_cstr(&pk, "node");
    msgpack_pack_uint64(&pk, replica_id(c->replica));
    mp_pack_cstr(&pk, "leader");
    leader ? mp_pack_cstr(&pk, leader) : msgpack_pack_nil(&pk);
    mp_pack_cstr(&pk, "leader_id");
    msgpack_pack_uint64(&pk, st.leader_id);
    mp_pack_cstr(&pk, "role");
    mp_pack_cstr(&pk, removed ? "removed"
                      : replica_is_leader(c->replica) ? "leader" : "follower");
    if (removed) { /* the leader known when this node learned it; 0: none */
        mp_pack_cstr(&pk, "removed_by");
        msgpack_pack_uint64(&pk, removed_by);
    }
    if (http) { /* this node's own dashboard, /metrics, /readyz */
        mp_pack_cstr(&pk, "http");
        mp_pack_cstr(&pk, http);
    }
    mp_pack_cstr(&pk, "term");
    msgpack_pack_uint64(&pk, st.term);
    mp_pack_cstr(&pk, "commit_index");
    msgpack_pack_uint64(&pk, st.commit_index);
    mp_pack_cstr(&pk, "last_applied");
    msgpack_pack_uint64(&pk, st.last_applied);
    pack_log_stats(&pk, &st);
    mp_pack_cstr(&pk, "nodes");
    msgpack_pack_array(&pk, n);
    for (unsigned i = 0; i < n; i++)
        pack_node(&pk, &nodes[i]);
    if (digest) {
        unsigned char d[32];
        char h[65];
        fsm_digest(c->fsm, d);
        hex(d, sizeof d, h);
        mp_pack_cstr(&pk, "digest");
        mp_pack_cstr(&pk, h);
    }
    if (records) { /* O(1), or O(overlay) during a snapshot (store_count) */
        mp_pack_cstr(&pk, "records");
        msgpack_pack_int64(&pk, store_count(fsm_store(c->fsm)));
    }
    cb(arg, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

typedef int (*change_fn)(cluster_t *c, const msgpack_object *req, pending_t *p,
                         char *err, size_t errlen);

static int op_add(cluster_t *c, const msgpack_object *req, pending_t *p, char *err,
                  size_t errlen)
{
    char address[256], client[256], http[256];
    uint64_t node;

    if (arg_id(req, true, &node) != 0) {
        snprintf(err, errlen, "node: the id of the node to add, a positive integer");
        return MQHUB_EBAD_REQUEST;
    }
    if (arg_address(req, "address", true, address, sizeof address) != 0 ||
        arg_address(req, "client", false, client, sizeof client) != 0 ||
        arg_address(req, "http", false, http, sizeof http) != 0) {
        snprintf(err, errlen, "address (its raft address), client and http (optional, its "
                              "client and HTTP addresses) must be \"host:port\"");
        return MQHUB_EBAD_REQUEST;
    }
    int rc = replica_add(c->replica, node, address, client[0] ? client : NULL,
                         http[0] ? http : NULL, change_done, p);
    if (rc == MQHUB_EEXISTS)
        snprintf(err, errlen, "node %llu is a member already (or its address differs)",
                 (unsigned long long)node);
    else if (rc == MQHUB_EBAD_REQUEST)
        snprintf(err, errlen, "this node takes no peers: give every node the same "
                              "node.cluster_secret_file and restart it (docs/security.md)");
    return rc;
}

static int op_remove(cluster_t *c, const msgpack_object *req, pending_t *p, char *err,
                     size_t errlen)
{
    uint64_t node;
    if (arg_id(req, true, &node) != 0) {
        snprintf(err, errlen, "node: the id of the node to remove, a positive integer");
        return MQHUB_EBAD_REQUEST;
    }
    int rc = replica_remove(c->replica, node, change_done, p);
    if (rc == MQHUB_ENOT_FOUND)
        snprintf(err, errlen, "node %llu is not a member", (unsigned long long)node);
    else if (rc == MQHUB_EUNAVAILABLE) /* raft makes one change at a time */
        snprintf(err, errlen, "node %llu: another membership change is under way (or this "
                 "node is stopping); retry once it has answered", (unsigned long long)node);
    return rc;
}

static int op_transfer(cluster_t *c, const msgpack_object *req, pending_t *p, char *err,
                       size_t errlen)
{
    uint64_t node;
    if (arg_id(req, false, &node) != 0) {
        snprintf(err, errlen, "node: the id of a voter, a positive integer (or absent)");
        return MQHUB_EBAD_REQUEST;
    }
    int rc = replica_transfer(c->replica, node, change_done, p);
    if (rc == MQHUB_ENOT_FOUND)
        snprintf(err, errlen, "node %llu is not a member", (unsigned long long)node);
    else if (rc == MQHUB_EBAD_REQUEST)
        snprintf(err, errlen, "node %llu is not another voter", (unsigned long long)node);
    return rc;
}

/* The change @op makes; NULL for cluster.status. */
static change_fn change_of(enum ops_node op)
{
    switch (op) {
    case OPS_NODE_CLUSTER_ADD: return op_add;
    case OPS_NODE_CLUSTER_REMOVE: return op_remove;
    case OPS_NODE_CLUSTER_TRANSFER: return op_transfer;
    default: return NULL;
    }
}

void cluster_request(cluster_t *c, mqhub_session_t *s, enum ops_node op,
                     const wire_request_t *v, mqhub_reply_cb cb, void *arg)
{
    change_fn fn = change_of(op);
    char err[256] = "";

    if (fn == NULL) {
        op_status(c, v->map, v->id, cb, arg);
        return;
    }
    pending_t *p = pending_new(c, s, cb, arg, v->id);
    if (!p) {
        reply(c, cb, arg, v->id, MQHUB_EINTERNAL, "out of memory");
        return;
    }
    int rc = fn(c, v->map, p, err, sizeof err);
    if (rc != 0) {
        pending_free(p);
        if (rc == MQHUB_ENOT_LEADER)
            snprintf(err, sizeof err, "membership changes go to the leader%s%s",
                     replica_leader_address(c->replica) ? " at " : "",
                     replica_leader_address(c->replica) ? replica_leader_address(c->replica)
                                                        : " (none known yet; retry)");
        reply(c, cb, arg, v->id, rc, err);
    }
}

int cluster_new(cluster_t **out, fsm_t *f)
{
    cluster_t *c = calloc(1, sizeof *c);
    if (!c)
        return MQHUB_EINTERNAL;
    c->fsm = f;
    *out = c;
    return 0;
}

void cluster_set_replica(cluster_t *c, replica_t *r)
{
    c->replica = r;
}

void cluster_free(cluster_t *c)
{
    if (!c)
        return;
    while (c->pending)
        pending_free(c->pending);
    free(c);
}
