/* ops.c: the one op table. Each op of the protocol (docs/protocol.md) is one
 * row: its name, who answers it (enum ops_kind), its flags (OPS_F_*), and
 * either the state machine's handler (reads and writes; the op_fn type of
 * sm_int.h) or the node-side handler that answers it (enum ops_node: hello,
 * ping, the push engine's session ops, cluster.*). The hub dispatches on the
 * row (node/hub.c dispatch()), apply runs the row's handler (fsm.c).
 *
 * To add an op: one row here and one handler — an op_fn in the file that
 * owns the state it changes (queue.c, topic.c, subscription.c, script/), or a
 * node op.
 */
#include <string.h>

#include "sm_int.h"

/* tick: promotions and expiry of every part, in a fixed order. */
static int op_tick(cmd_t *c)
{
    int rc = queue_op_tick(c);
    if (rc == 0)
        rc = topic_op_tick(c);
    if (rc == 0)
        rc = script_op_tick(c);
    return rc;
}

#define HOOK_Q OPS_F_HOOK_QUEUE
#define HOOK_T OPS_F_HOOK_TOPIC
#define ADMIN OPS_F_ADMIN

static const ops_row_t rows[] = {
    /* the session and the node */
    {"hello", OPS_LOCAL, OPS_F_PUBLIC, OPS_NODE_HELLO, NULL},
    {"ping", OPS_LOCAL, 0, OPS_NODE_PING, NULL},
    {"tick", OPS_INTERNAL, 0, OPS_NODE_NONE, op_tick},
    /* queues and messages (queue.c) */
    {"queue.get", OPS_READ, 0, OPS_NODE_NONE, queue_op_get},
    {"queue.list", OPS_READ, 0, OPS_NODE_NONE, queue_op_list},
    {"queue.create", OPS_WRITE, ADMIN | HOOK_Q, OPS_NODE_NONE, queue_op_create},
    {"queue.delete", OPS_WRITE, ADMIN | HOOK_Q, OPS_NODE_NONE, queue_op_delete},
    {"queue.purge", OPS_WRITE, ADMIN, OPS_NODE_NONE, queue_op_purge},
    {"queue.set", OPS_WRITE, ADMIN | HOOK_Q, OPS_NODE_NONE, queue_op_set},
    {"queue.rewind", OPS_WRITE, ADMIN, OPS_NODE_NONE, queue_op_rewind},
    {"send", OPS_WRITE, 0, OPS_NODE_NONE, queue_op_send},
    {"send_batch", OPS_WRITE, 0, OPS_NODE_NONE, queue_op_send_batch},
    {"receive", OPS_WRITE, OPS_F_LONG_POLL, OPS_NODE_NONE, queue_op_receive},
    {"delete", OPS_WRITE, 0, OPS_NODE_NONE, queue_op_delete_msgs},
    {"change_visibility", OPS_WRITE, 0, OPS_NODE_NONE, queue_op_change_visibility},
    /* topics (topic.c) and subscriptions (subscription.c) */
    {"topic.get", OPS_READ, 0, OPS_NODE_NONE, topic_op_get},
    {"topic.list", OPS_READ, 0, OPS_NODE_NONE, topic_op_list},
    {"subscription.get", OPS_READ, 0, OPS_NODE_NONE, sub_op_get},
    {"subscription.list", OPS_READ, 0, OPS_NODE_NONE, sub_op_list},
    {"topic.create", OPS_WRITE, ADMIN | HOOK_T, OPS_NODE_NONE, topic_op_create},
    {"topic.delete", OPS_WRITE, ADMIN | HOOK_T, OPS_NODE_NONE, topic_op_delete},
    {"topic.set", OPS_WRITE, ADMIN | HOOK_T, OPS_NODE_NONE, topic_op_set},
    {"publish", OPS_WRITE, 0, OPS_NODE_NONE, topic_op_publish},
    {"publish_batch", OPS_WRITE, 0, OPS_NODE_NONE, topic_op_publish_batch},
    {"subscription.create", OPS_WRITE, ADMIN, OPS_NODE_NONE, sub_op_create},
    {"subscription.delete", OPS_WRITE, ADMIN, OPS_NODE_NONE, sub_op_delete},
    {"subscription.rewind", OPS_WRITE, ADMIN, OPS_NODE_NONE, sub_op_rewind},
    {"ack", OPS_WRITE, 0, OPS_NODE_NONE, sub_op_ack},
    {"sub.dead", OPS_INTERNAL, 0, OPS_NODE_NONE, sub_op_dead},
    /* push sessions (node/push.c) */
    {"subscribe", OPS_SESSION, 0, OPS_NODE_SUBSCRIBE, NULL},
    {"credit", OPS_SESSION, 0, OPS_NODE_CREDIT, NULL},
    {"unsubscribe", OPS_SESSION, 0, OPS_NODE_UNSUBSCRIBE, NULL},
    /* scripts and blocks (script/: script.c, backtest.c, block.c) */
    {"script.get", OPS_READ, 0, OPS_NODE_NONE, script_op_get},
    {"script.list", OPS_READ, 0, OPS_NODE_NONE, script_op_list},
    {"script.test", OPS_READ, 0, OPS_NODE_NONE, backtest_op_test},
    {"block.list", OPS_READ, 0, OPS_NODE_NONE, block_op_list},
    {"script.load", OPS_WRITE, ADMIN, OPS_NODE_NONE, script_op_load},
    {"script.delete", OPS_WRITE, ADMIN, OPS_NODE_NONE, script_op_delete},
    {"block.delete", OPS_WRITE, ADMIN, OPS_NODE_NONE, block_op_delete},
    /* membership (node/cluster.c) */
    {"cluster.status", OPS_CLUSTER, 0, OPS_NODE_CLUSTER_STATUS, NULL},
    {"cluster.add", OPS_CLUSTER, ADMIN, OPS_NODE_CLUSTER_ADD, NULL},
    {"cluster.remove", OPS_CLUSTER, ADMIN, OPS_NODE_CLUSTER_REMOVE, NULL},
    {"cluster.transfer", OPS_CLUSTER, ADMIN, OPS_NODE_CLUSTER_TRANSFER, NULL},
};

const ops_row_t *ops_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (strlen(rows[i].name) == len && memcmp(rows[i].name, name, len) == 0)
            return &rows[i];
    }
    return NULL;
}
