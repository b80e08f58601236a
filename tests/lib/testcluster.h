/* testcluster.h: N real mqhubd processes on loopback for the cluster tests —
 * one temp dir, generated configs on free ports, start/kill/stop/pause of any
 * node, and cluster.status over raw frames. Leaf code like testhub.h (libc,
 * POSIX, msgpack-c): the tests drive the data path with libmqhub.
 *
 * Nodes 1..n_initial bootstrap together (each lists the others as peers with
 * their client addresses); nodes n_initial+1..n_total are configured with
 * node.join = true and become members only through cluster.add.
 */
#ifndef MQHUB_TESTCLUSTER_H
#define MQHUB_TESTCLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TC_MAX_NODES 7
/* Every node's cluster secret (node.cluster_secret_file = <dir>/cluster.secret). */
#define TC_SECRET "mqhub-test-cluster-secret-3f9a1c07d2e84b6a95c1f0e7d3b2a8c4"

typedef struct tc_node {
    uint64_t id;             /* 1-based */
    char dir[300];           /* config.lua, data/, mqhubd.log */
    char address[32];        /* client (TCP transport) address */
    char raft[32];           /* raft address */
    uint16_t port;
    pid_t pid;               /* 0 when not running */
    bool paused;             /* SIGSTOP'ed */
} tc_node_t;

typedef struct testcluster {
    char mqhubd[512];
    char dir[256];           /* the temp dir holding every node's dir */
    unsigned n;              /* nodes configured */
    tc_node_t nodes[TC_MAX_NODES];
    char seeds[TC_MAX_NODES * 32]; /* "a,b,c" client addresses of all nodes */
} testcluster_t;

typedef struct tc_status {
    uint64_t node, leader_id, term, commit_index, last_applied;
    bool is_leader;
    unsigned n_voters, n_members;
    char digest[65];         /* "" unless asked */
} tc_status_t;

/* Write configs for @n_total nodes (@extra_config appended to each), start
 * the first @n_initial and wait until they agree on a leader. 0 or -1. */
int testcluster_start(testcluster_t *c, const char *mqhubd, unsigned n_total,
                      unsigned n_initial, const char *extra_config);
/* Replace node @i's cluster secret file (takes effect at its next start). 0 or -1. */
int testcluster_write_secret(testcluster_t *c, unsigned i, const char *secret);
/* Start node @i (0-based) on its dir (first start or restart) and wait until
 * it answers cluster.status. 0 or -1 (its log printed). */
int testcluster_start_node(testcluster_t *c, unsigned i);
/* Start node @i without waiting (several at once). */
int testcluster_spawn(testcluster_t *c, unsigned i);
void testcluster_kill(testcluster_t *c, unsigned i);   /* SIGKILL and reap */
int testcluster_stop(testcluster_t *c, unsigned i);    /* SIGTERM, wait; exit status */
void testcluster_pause(testcluster_t *c, unsigned i);  /* SIGSTOP */
void testcluster_resume(testcluster_t *c, unsigned i); /* SIGCONT */
bool testcluster_running(testcluster_t *c, unsigned i);
/* cluster.status of node @i within @timeout_ms. 0 or -1. */
int testcluster_status(testcluster_t *c, unsigned i, bool digest, int timeout_ms,
                       tc_status_t *out);
/* Index of the leader all running, unpaused nodes agree on (and that says it
 * leads), waiting up to @timeout_ms; -1 when none. */
int testcluster_leader(testcluster_t *c, int timeout_ms);
/* Wait until every running node has applied the same index with the same
 * digest (at most @timeout_ms). 0, or -1 with the differences on stderr. */
int testcluster_converged(testcluster_t *c, int timeout_ms);
/* Print every node's log on stderr (after a failure). */
void testcluster_dump_logs(testcluster_t *c);
/* How many lines of node @i's log hold @text. */
unsigned testcluster_log_count(testcluster_t *c, unsigned i, const char *text);
/* Stop every node, remove the temp dir (kept with MQHUB_KEEP_TEST_DIR). */
void testcluster_cleanup(testcluster_t *c);
uint64_t testcluster_now_ms(void); /* monotonic */

#endif
