/* replica_util.h: a one-node raft group on its own loop for the replica
 * tests (real raft on loopback, real fsm), plus request builders and reply
 * readers for the few ops the tests use. */
#ifndef MQHUB_TESTS_REPLICA_UTIL_H
#define MQHUB_TESTS_REPLICA_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "raft/replica.h"

typedef struct tnode {
    uv_loop_t loop;
    fsm_t *fsm;
    replica_t *r;
    char raft_dir[300];
    char raft_address[32];
} tnode_t;

/* A fresh temp dir (under $TMPDIR or /tmp) in @out; removed by rm_dir(). */
void make_dir(char *out, size_t len, const char *tag);
void rm_dir(const char *dir);
/* A loopback port unlikely to clash: 17000 + pid % 1000 + @offset. */
int test_port(int offset);

/* Open the fsm in @dir, start raft in @dir/raft on @port; 0 or -1. */
int tnode_start(tnode_t *n, const char *dir, int port, unsigned snapshot_threshold,
                unsigned snapshot_trailing);
/* Run the loop until this node leads (true) or @timeout_ms passes. */
bool tnode_wait_leader(tnode_t *n, unsigned timeout_ms);
/* Stop raft, drain the loop, close the fsm and the loop. */
void tnode_stop(tnode_t *n);
/* Run the loop until *@flag or @timeout_ms; returns *@flag. */
bool tnode_run_until(tnode_t *n, const bool *flag, unsigned timeout_ms);

/* Submit @cmd and run the loop until its reply: returns the status; the
 * reply (malloc'ed, caller frees) in *@reply. */
int tnode_call(tnode_t *n, const msgpack_sbuffer *cmd, char **reply, size_t *len);

/* Request builders: reset @sb and write one request map. */
void cmd_queue_create(msgpack_sbuffer *sb, uint64_t id, const char *queue);
void cmd_send(msgpack_sbuffer *sb, uint64_t id, const char *queue, uint64_t body);
void cmd_receive(msgpack_sbuffer *sb, uint64_t id, const char *queue, unsigned max);
void cmd_delete(msgpack_sbuffer *sb, uint64_t id, const char *queue,
                char *const *receipts, unsigned n);

/* Whether the reply map says ok: true. */
bool reply_ok(const char *reply, size_t len);

/* Receive everything ready in @queue (256 at a time); @fn gets each body
 * (the uint64 the sender wrote) and receipt. Returns the count or -1. */
typedef void (*drain_fn)(void *arg, uint64_t body, const char *receipt, size_t rlen);
long drain_queue(tnode_t *n, const char *queue, drain_fn fn, void *arg);

#endif
