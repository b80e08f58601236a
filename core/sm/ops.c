/* ops.c: the one op table. Each op of the protocol (docs/protocol.md) is one
 * row: its name, who answers it (enum ops_kind), its flags (OPS_F_*), and
 * either the state machine's handler (reads and writes; the op_fn type of
 * sm_int.h) or the node-side handler that answers it (enum ops_node: hello,
 * ping, the push engine's session ops, cluster.*), and the permission column:
 * the verb a named user needs on each object the request names (ops_perm_t,
 * checked by the hub before anything is submitted). The hub dispatches on the
 * row (node/hub.c dispatch()), apply runs the row's handler (fsm.c).
 *
 * To add an op: one row here and one handler — an op_fn in the file that
 * owns the state it changes (queue.c, topic.c, subscription.c, script/,
 * user.c), or a node op; and its permission column (docs/security.md).
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
#define NODE OPS_NODE_NONE
/* The permission column: the verbs a named user needs on the objects the
 * request names (docs/security.md "Verbs of each op"). */
#define P(...) {__VA_ARGS__}
#define ON(verb, field) {OPS_V_##verb, field}
#define HUB(verb) {OPS_V_##verb, NULL} /* the whole hub: a grant on "*" */
#define Q_SET ON(MANAGE, "name"), ON(SEND, "attrs.dead_letter.queue"), ON(SCRIPT, "attrs.hook")
#define T_SET ON(MANAGE, "name"), ON(SCRIPT, "attrs.hook")

static const ops_row_t rows[] = {
    /* the session and the node */
    {"hello", OPS_LOCAL, OPS_F_PUBLIC, OPS_NODE_HELLO, NULL, P()},
    {"ping", OPS_LOCAL, 0, OPS_NODE_PING, NULL, P()},
    {"tick", OPS_INTERNAL, 0, NODE, op_tick, P()},
    /* queues and messages (queue.c) */
    {"queue.get", OPS_READ, 0, NODE, queue_op_get, P(ON(ANY, "name"))},
    {"queue.list", OPS_READ, 0, NODE, queue_op_list, P()}, /* lists what it may see */
    {"queue.create", OPS_WRITE, HOOK_Q, NODE, queue_op_create, P(Q_SET)},
    {"queue.delete", OPS_WRITE, HOOK_Q, NODE, queue_op_delete, P(ON(MANAGE, "name"))},
    {"queue.purge", OPS_WRITE, 0, NODE, queue_op_purge, P(ON(MANAGE, "name"))},
    {"queue.set", OPS_WRITE, HOOK_Q, NODE, queue_op_set, P(Q_SET)},
    {"queue.rewind", OPS_WRITE, 0, NODE, queue_op_rewind, P(ON(MANAGE, "name"))},
    {"send", OPS_WRITE, 0, NODE, queue_op_send, P(ON(SEND, "queue"))},
    {"send_batch", OPS_WRITE, 0, NODE, queue_op_send_batch, P(ON(SEND, "queue"))},
    {"receive", OPS_WRITE, OPS_F_LONG_POLL, NODE, queue_op_receive, P(ON(RECEIVE, "queue"))},
    {"delete", OPS_WRITE, 0, NODE, queue_op_delete_msgs, P(ON(RECEIVE, "queue"))},
    {"change_visibility", OPS_WRITE, 0, NODE, queue_op_change_visibility,
     P(ON(RECEIVE, "queue"))},
    /* topics (topic.c) and subscriptions (subscription.c) */
    {"topic.get", OPS_READ, 0, NODE, topic_op_get, P(ON(ANY, "name"))},
    {"topic.list", OPS_READ, 0, NODE, topic_op_list, P()}, /* lists what it may see */
    {"subscription.get", OPS_READ, 0, NODE, sub_op_get, P(ON(ANY, "topic"))},
    {"subscription.list", OPS_READ, 0, NODE, sub_op_list, P(ON(ANY, "topic"))},
    {"topic.create", OPS_WRITE, HOOK_T, NODE, topic_op_create, P(T_SET)},
    {"topic.delete", OPS_WRITE, HOOK_T, NODE, topic_op_delete, P(ON(MANAGE, "name"))},
    {"topic.set", OPS_WRITE, HOOK_T, NODE, topic_op_set, P(T_SET)},
    {"publish", OPS_WRITE, 0, NODE, topic_op_publish, P(ON(PUBLISH, "topic"))},
    {"publish_batch", OPS_WRITE, 0, NODE, topic_op_publish_batch, P(ON(PUBLISH, "topic"))},
    {"subscription.create", OPS_WRITE, 0, NODE, sub_op_create,
     P(ON(MANAGE, "topic"), ON(SEND, "endpoint.queue"), ON(SEND, "dead_letter_queue"))},
    {"subscription.delete", OPS_WRITE, 0, NODE, sub_op_delete, P(ON(MANAGE, "topic"))},
    {"subscription.rewind", OPS_WRITE, 0, NODE, sub_op_rewind, P(ON(MANAGE, "topic"))},
    {"ack", OPS_WRITE, 0, NODE, sub_op_ack, P(ON(SUBSCRIBE, "topic"))},
    {"sub.dead", OPS_INTERNAL, 0, NODE, sub_op_dead, P()},
    /* push sessions (node/push.c) */
    {"subscribe", OPS_SESSION, 0, OPS_NODE_SUBSCRIBE, NULL, P(ON(SUBSCRIBE, "topic"))},
    {"credit", OPS_SESSION, 0, OPS_NODE_CREDIT, NULL, P(ON(SUBSCRIBE, "topic"))},
    {"unsubscribe", OPS_SESSION, 0, OPS_NODE_UNSUBSCRIBE, NULL, P(ON(SUBSCRIBE, "topic"))},
    /* scripts and blocks (script/: script.c, backtest.c, block.c) */
    {"script.get", OPS_READ, 0, NODE, script_op_get, P(ON(SCRIPT, "name"))},
    {"script.list", OPS_READ, 0, NODE, script_op_list, P(HUB(SCRIPT))},
    {"script.test", OPS_READ, OPS_F_SLICED, NODE, backtest_op_test,
     P(ON(SCRIPT, "name"), ON(SUBSCRIBE, "topic"))},
    {"block.list", OPS_READ, 0, NODE, block_op_list, P(HUB(SCRIPT))},
    {"script.load", OPS_WRITE, 0, NODE, script_op_load, P(ON(SCRIPT, "name"))},
    {"script.delete", OPS_WRITE, 0, NODE, script_op_delete, P(ON(SCRIPT, "name"))},
    {"block.delete", OPS_WRITE, 0, NODE, block_op_delete, P(HUB(SCRIPT))},
    /* identities (user.c) */
    {"user.list", OPS_READ, 0, NODE, user_op_list, P(HUB(ADMIN))},
    {"user.create", OPS_WRITE, OPS_F_TOKEN, NODE, user_op_create, P(HUB(ADMIN))},
    {"user.delete", OPS_WRITE, 0, NODE, user_op_delete, P(HUB(ADMIN))},
    {"user.grant", OPS_WRITE, 0, NODE, user_op_grant, P(HUB(ADMIN))},
    {"user.revoke", OPS_WRITE, 0, NODE, user_op_revoke, P(HUB(ADMIN))},
    /* membership (node/cluster.c) */
    {"cluster.status", OPS_CLUSTER, 0, OPS_NODE_CLUSTER_STATUS, NULL, P()},
    {"cluster.add", OPS_CLUSTER, 0, OPS_NODE_CLUSTER_ADD, NULL, P(HUB(ADMIN))},
    {"cluster.remove", OPS_CLUSTER, 0, OPS_NODE_CLUSTER_REMOVE, NULL, P(HUB(ADMIN))},
    {"cluster.transfer", OPS_CLUSTER, 0, OPS_NODE_CLUSTER_TRANSFER, NULL, P(HUB(ADMIN))},
};

const ops_row_t *ops_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (strlen(rows[i].name) == len && memcmp(rows[i].name, name, len) == 0)
            return &rows[i];
    }
    return NULL;
}
