/* ops.c: the one op table. Each op of the protocol (docs/protocol.md) is one
 * row: its name, who answers it (enum ops_kind), its flags (OPS_F_*), and
 * either the state machine's handler (reads and writes; the op_fn type of
 * sm_int.h) or the node-side handler that answers it (enum ops_node: hello,
 * ping, the push engine's session ops, cluster.*), and the permission column:
 * the verb a named user needs on each object the request names (ops_perm_t,
 * checked by the hub before anything is submitted), and for writes the fields
 * column: the request fields the handler reads, the only ones the hub puts
 * into the raft entry (F(...)). The hub dispatches on the
 * row (node/hub.c dispatch()), apply runs the row's handler (fsm.c).
 *
 * To add an op: one row here and one handler — an op_fn in the file that
 * owns the state it changes (queue.c, topic.c, subscription.c, script/,
 * user.c), or a node op; and its permission column (docs/security.md); a
 * write row also lists every top-level field its handler reads (a field
 * missing there never reaches apply).
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
/* The fields column of a write row (ops_row_t.fields): the top-level fields
 * its handler reads, after the "op" and "id" of every request; the hub
 * submits only these (docs/protocol.md "Requests and responses"). */
#define F(names) "op id " names
#define NOF NULL /* a row the hub never submits for a client */

static const ops_row_t rows[] = {
    /* the session and the node */
    {"hello", OPS_LOCAL, OPS_F_PUBLIC, OPS_NODE_HELLO, NULL, P(), NOF},
    {"ping", OPS_LOCAL, 0, OPS_NODE_PING, NULL, P(), NOF},
    {"tick", OPS_INTERNAL, 0, NODE, op_tick, P(), NOF},
    /* queues and messages (queue.c) */
    {"queue.get", OPS_READ, 0, NODE, queue_op_get, P(ON(ANY, "name")), NOF},
    {"queue.list", OPS_READ, 0, NODE, queue_op_list, P(), NOF}, /* lists what it may see */
    {"queue.create", OPS_WRITE, HOOK_Q, NODE, queue_op_create, P(Q_SET), F("name attrs")},
    {"queue.delete", OPS_WRITE, HOOK_Q, NODE, queue_op_delete, P(ON(MANAGE, "name")), F("name")},
    {"queue.purge", OPS_WRITE, 0, NODE, queue_op_purge, P(ON(MANAGE, "name")), F("name")},
    {"queue.set", OPS_WRITE, HOOK_Q, NODE, queue_op_set, P(Q_SET), F("name attrs")},
    {"queue.rewind", OPS_WRITE, 0, NODE, queue_op_rewind, P(ON(MANAGE, "name")),
     F("name time seq")},
    /* peek shows bodies: receive, not a read verb */
    {"queue.peek", OPS_READ, 0, NODE, queue_op_peek, P(ON(RECEIVE, "queue")), NOF},
    {"queue.redrive", OPS_WRITE, 0, NODE, queue_op_redrive,
     P(ON(MANAGE, "queue"), ON(SEND, "to")), F("queue to max from")},
    {"send", OPS_WRITE, 0, NODE, queue_op_send, P(ON(SEND, "queue")),
     F("queue body delay attrs group dedup_id")},
    {"send_batch", OPS_WRITE, 0, NODE, queue_op_send_batch, P(ON(SEND, "queue")), F("queue msgs")},
    {"receive", OPS_WRITE, OPS_F_LONG_POLL, NODE, queue_op_receive, P(ON(RECEIVE, "queue")),
     F("queue max visibility reply_max")}, /* reply_max: the hub's, never the client's */
    {"delete", OPS_WRITE, 0, NODE, queue_op_delete_msgs, P(ON(RECEIVE, "queue")),
     F("queue receipts")},
    {"change_visibility", OPS_WRITE, 0, NODE, queue_op_change_visibility,
     P(ON(RECEIVE, "queue")), F("queue receipt timeout")},
    /* topics (topic.c) and subscriptions (subscription.c) */
    {"topic.get", OPS_READ, 0, NODE, topic_op_get, P(ON(ANY, "name")), NOF},
    {"topic.list", OPS_READ, 0, NODE, topic_op_list, P(), NOF}, /* lists what it may see */
    {"subscription.get", OPS_READ, 0, NODE, sub_op_get, P(ON(ANY, "topic")), NOF},
    {"subscription.list", OPS_READ, 0, NODE, sub_op_list, P(ON(ANY, "topic")), NOF},
    /* peek shows bodies: subscribe (what tail needs), not a read verb */
    {"topic.peek", OPS_READ, 0, NODE, sub_op_peek, P(ON(SUBSCRIBE, "topic")), NOF},
    {"topic.create", OPS_WRITE, HOOK_T, NODE, topic_op_create, P(T_SET), F("name attrs")},
    {"topic.delete", OPS_WRITE, HOOK_T, NODE, topic_op_delete, P(ON(MANAGE, "name")), F("name")},
    {"topic.set", OPS_WRITE, HOOK_T, NODE, topic_op_set, P(T_SET), F("name attrs")},
    {"publish", OPS_WRITE, 0, NODE, topic_op_publish, P(ON(PUBLISH, "topic")),
     F("topic body tags key attrs")},
    {"publish_batch", OPS_WRITE, 0, NODE, topic_op_publish_batch, P(ON(PUBLISH, "topic")),
     F("topic msgs")},
    {"subscription.create", OPS_WRITE, OPS_F_OWNER, NODE, sub_op_create,
     P(ON(MANAGE, "topic"), ON(SEND, "endpoint.queue"), ON(SEND, "dead_letter_queue")),
     F("topic name endpoint filter_tags binding_keys filter_script filter_fallback "
       "dead_letter_queue retry from ephemeral owner")}, /* owner: the hub's */
    {"subscription.set", OPS_WRITE, 0, NODE, sub_op_set,
     P(ON(MANAGE, "topic"), ON(SEND, "dead_letter_queue")),
     F("topic name endpoint filter_tags binding_keys filter_script filter_fallback "
       "dead_letter_queue retry")},
    {"subscription.delete", OPS_WRITE, 0, NODE, sub_op_delete, P(ON(MANAGE, "topic")),
     F("topic name")},
    {"subscription.rewind", OPS_WRITE, 0, NODE, sub_op_rewind, P(ON(MANAGE, "topic")),
     F("topic name time seq")},
    {"ack", OPS_WRITE, 0, NODE, sub_op_ack, P(ON(SUBSCRIBE, "topic")),
     F("topic subscription seqs")},
    {"sub.dead", OPS_INTERNAL, 0, NODE, sub_op_dead, P(), NOF},
    {"sub.reap", OPS_INTERNAL, 0, NODE, sub_op_reap, P(), NOF},
    /* push sessions (node/push.c) */
    {"subscribe", OPS_SESSION, 0, OPS_NODE_SUBSCRIBE, NULL, P(ON(SUBSCRIBE, "topic")), NOF},
    {"credit", OPS_SESSION, 0, OPS_NODE_CREDIT, NULL, P(ON(SUBSCRIBE, "topic")), NOF},
    {"unsubscribe", OPS_SESSION, 0, OPS_NODE_UNSUBSCRIBE, NULL, P(ON(SUBSCRIBE, "topic")), NOF},
    /* scripts and blocks (script/: script.c, backtest.c, block.c) */
    {"script.get", OPS_READ, 0, NODE, script_op_get, P(ON(SCRIPT, "name")), NOF},
    {"script.list", OPS_READ, 0, NODE, script_op_list, P(HUB(SCRIPT)), NOF},
    {"script.test", OPS_READ, OPS_F_SLICED, NODE, backtest_op_test,
     P(ON(SCRIPT, "name"), ON(SUBSCRIBE, "topic")), NOF},
    {"block.list", OPS_READ, 0, NODE, block_op_list, P(HUB(SCRIPT)), NOF},
    {"script.load", OPS_WRITE, 0, NODE, script_op_load, P(ON(SCRIPT, "name")), F("name source")},
    {"script.delete", OPS_WRITE, 0, NODE, script_op_delete, P(ON(SCRIPT, "name")), F("name")},
    {"block.delete", OPS_WRITE, 0, NODE, block_op_delete, P(HUB(SCRIPT)), F("attr value")},
    /* identities (user.c) */
    {"user.list", OPS_READ, 0, NODE, user_op_list, P(HUB(ADMIN)), NOF},
    {"user.create", OPS_WRITE, OPS_F_TOKEN, NODE, user_op_create, P(HUB(ADMIN)),
     F("name grants token_sha256")},
    {"user.delete", OPS_WRITE, 0, NODE, user_op_delete, P(HUB(ADMIN)), F("name")},
    {"user.grant", OPS_WRITE, 0, NODE, user_op_grant, P(HUB(ADMIN)), F("name verb pattern")},
    {"user.revoke", OPS_WRITE, 0, NODE, user_op_revoke, P(HUB(ADMIN)), F("name verb pattern")},
    /* membership (node/cluster.c) */
    {"cluster.status", OPS_CLUSTER, 0, OPS_NODE_CLUSTER_STATUS, NULL, P(), NOF},
    /* answered like ping once the check passed: may this identity read /metrics? */
    {"monitor.check", OPS_LOCAL, 0, OPS_NODE_PING, NULL, P(HUB(MONITOR)), NOF},
    /* the leader's sessions and consumers (node/hub.c) */
    {"connection.list", OPS_LOCAL, 0, OPS_NODE_CONNECTION_LIST, NULL, P(HUB(MONITOR)), NOF},
    {"consumer.list", OPS_LOCAL, 0, OPS_NODE_CONSUMER_LIST, NULL, P(HUB(MONITOR)), NOF},
    {"cluster.add", OPS_CLUSTER, 0, OPS_NODE_CLUSTER_ADD, NULL, P(HUB(ADMIN)), NOF},
    {"cluster.remove", OPS_CLUSTER, 0, OPS_NODE_CLUSTER_REMOVE, NULL, P(HUB(ADMIN)), NOF},
    {"cluster.transfer", OPS_CLUSTER, 0, OPS_NODE_CLUSTER_TRANSFER, NULL, P(HUB(ADMIN)), NOF},
};

bool ops_uses_field(const ops_row_t *o, const char *key, size_t len)
{
    const char *p = o->fields;

    if (p == NULL)
        return true;
    while (*p != '\0') {
        size_t n = strcspn(p, " ");
        if (n == len && memcmp(p, key, len) == 0)
            return true;
        p += n;
        p += strspn(p, " ");
    }
    return false;
}

const ops_row_t *ops_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (strlen(rows[i].name) == len && memcmp(rows[i].name, name, len) == 0)
            return &rows[i];
    }
    return NULL;
}
