/* core/raft/replica.h: one raft group (replica.c), the raft_io wrapper
 * that takes snapshots off the loop (snapshot.c) and the check of raft's
 * files before a start (logcheck.c), as core/node, mqhubd and the tests use
 * them. Loop thread only unless a function says otherwise.
 */
#ifndef MQHUB_RAFT_REPLICA_H
#define MQHUB_RAFT_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <uv.h>

#include "raft/peer.h"
#include "sm/sm.h"

/* ======================================================================
 * replica.c — one raft group on the loop: raft_uv storage, the peer.c
 * transport (authenticated peers), bootstrap on first start, group commit of
 * submitted commands, periodic and due-time ticks, snapshots. A group is an
 * object: several may live on one loop.
 * ====================================================================== */
typedef struct replica replica_t;

typedef struct replica_peer {
    uint64_t id;
    const char *raft_address;   /* host:port */
    const char *client_address; /* host:port of its TCP transport, or NULL */
    const char *http_address;   /* host:port of its dashboard and /metrics, or NULL */
} replica_peer_t;

typedef struct replica_config {
    uint64_t id;                 /* this node */
    const char *dir;             /* raft log + snapshots live here */
    const char *raft_address;    /* host:port raft listens on */
    const char *client_address;  /* our TCP transport address, for NOT_LEADER */
    const char *http_address;    /* our dashboard, /metrics, /readyz (NULL: none) */
    const replica_peer_t *peers; /* the other initial voters */
    unsigned n_peers;
    unsigned snapshot_threshold; /* entries between snapshots (0: default) */
    unsigned snapshot_trailing;  /* entries kept after one (0: default) */
    uint64_t snapshot_log_bytes; /* bytes applied before one at the latest (0: default) */
    int snapshot_growth;         /* percent of the newest snapshot's bytes the entries
                                    after it must reach first (0: off; < 0: default) */
    bool join;                   /* never bootstrap: wait to be added */
    const char *cluster_secret;  /* peers prove it (peer.h); NULL: none */
    bool allow_unauthenticated_peers; /* no secret: take peers anyway (else none) */
    peer_tls_files_t peer_tls;   /* node.peer_tls_*: all NULL, or TLS between peers */
} replica_config_t;

/* Called once per submitted command: status 0 with the reply map, or with
 * reply NULL: MQHUB_ENOT_LEADER / MQHUB_EUNAVAILABLE when it was never
 * proposed (safe to retry), MQHUB_ETIMEOUT when its entry was proposed but
 * leadership was lost or raft closed before it was known to be committed
 * (it may still be applied: outcome unknown). */
typedef void (*replica_done_cb)(void *arg, int status, const char *reply, size_t len);

int replica_start(replica_t **out, uv_loop_t *loop, fsm_t *fsm,
                  const replica_config_t *cfg, char *errmsg, size_t errlen);
/* Copy @cmd (a request map) into the current batch; all commands submitted
 * in one loop turn share one raft entry. Returns 0 (cb will be called), or
 * MQHUB_ENOT_LEADER / MQHUB_EUNAVAILABLE (cb never called). */
int replica_submit(replica_t *r, const char *cmd, size_t len, replica_done_cb cb,
                   void *arg);
bool replica_is_leader(replica_t *r);
/* Client address of the current leader, NULL while unknown. */
const char *replica_leader_address(replica_t *r);
uint64_t replica_id(replica_t *r);
/* Counters for cluster.status and metrics. */
typedef struct replica_stats {
    uint64_t term;
    uint64_t commit_index;
    uint64_t last_applied;
    uint64_t last_index;         /* of the log (appended, maybe not committed) */
    uint64_t leader_id;          /* 0 while unknown */
    uint64_t entries;            /* raft entries this node proposed */
    uint64_t commands;           /* commands in them */
    uint64_t snapshot_index;     /* the newest snapshot on disk; 0: none */
    uint64_t snapshot_age_ms;    /* since this process took, installed or loaded it */
    uint64_t log_entries, log_bytes; /* applied since that snapshot: raft's
                                      * in-memory log beyond its trailing entries */
    uint64_t leader_changes;     /* a leader became known, or another took over */
    /* Where an entry's time goes (sums in microseconds, since start): from
     * raft_apply() of an entry this node proposed to its replies (written,
     * fsync'd on a majority, applied), and the state machine's apply of
     * every entry this node applied (theirs too). */
    uint64_t answered, answered_us;
    uint64_t applied, apply_us;
} replica_stats_t;
void replica_stats(replica_t *r, replica_stats_t *out);

/* ---- membership (cluster.c is the caller) ----
 * Client addresses of other nodes: from the config's peers, from
 * replica_add(), and from what the leader replicates (docs/operations.md). */
const char *replica_client_address(replica_t *r, uint64_t id); /* NULL: unknown */
/* The same for HTTP addresses (dashboard, /metrics, /readyz): spread like the
 * client addresses, from node.http / peers[N].http / cluster.add's http. */
const char *replica_http_address(replica_t *r, uint64_t id); /* NULL: unknown */
/* Removed from the cluster: the configuration this node holds no longer
 * lists it as a voter (raft_remove, or the standby step before it that
 * replica_remove() takes so that the node hears of it). It never campaigns
 * then. 0 while a member; else the leader known when it learned it (0: none
 * known). */
bool replica_removed(replica_t *r, uint64_t *by);
/* Called on the loop whenever this node gains (true) or loses leadership. */
void replica_set_state_cb(replica_t *r, void (*cb)(void *arg, bool leader), void *arg);
/* Completion of add/remove/transfer: 0, or MQHUB_ENOT_LEADER,
 * MQHUB_ENOT_FOUND, MQHUB_EEXISTS, MQHUB_EBAD_REQUEST, MQHUB_EUNAVAILABLE with
 * raft's sentence in @errmsg. */
typedef void (*replica_change_cb)(void *arg, int status, const char *errmsg);
/* Add node @id (raft at @raft_address) as a spare, then make it a voter once
 * it caught up (raft's catch-up rounds). @client_address may be NULL. Returns
 * 0 (cb will run), or a code (cb never runs; MQHUB_EEXISTS also when @id is a
 * voter at that address already; MQHUB_EBAD_REQUEST when this node takes no
 * peers: no cluster secret). Leader only. */
int replica_add(replica_t *r, uint64_t id, const char *raft_address,
                const char *client_address, const char *http_address, replica_change_cb cb,
                void *arg);
/* Remove node @id. Another voter is first made a standby (it still receives
 * the log, so it learns it is out and stops campaigning: replica_removed()),
 * then, once it has that entry or after REMOVE_NOTICE_MS, removed. Leader
 * only; same returns as replica_add(). */
int replica_remove(replica_t *r, uint64_t id, replica_change_cb cb, void *arg);
/* Hand leadership to voter @id (0: raft picks the most up to date). */
int replica_transfer(replica_t *r, uint64_t id, replica_change_cb cb, void *arg);
typedef struct replica_node {
    uint64_t id;
    const char *raft_address;   /* valid until the next loop turn */
    const char *client_address; /* NULL when unknown */
    const char *http_address;   /* NULL when unknown */
    const char *role;           /* "voter", "standby", "spare" */
    bool leader;
    bool has_match;             /* match_index known (we lead) */
    uint64_t match_index;
} replica_node_t;
/* Fill up to @max members of the current configuration; returns how many
 * there are. */
unsigned replica_nodes(replica_t *r, replica_node_t *out, unsigned max);
/* Close raft; the open batch fails with MQHUB_EUNAVAILABLE, proposed entries
 * with MQHUB_ETIMEOUT (each callback
 * still runs exactly once, some of them before this returns); @cb when done,
 * after which @r is freed. Call it from the loop, not from a replica_done_cb.
 * replica_start() failing after raft_init also cleans up through the loop. */
void replica_stop(replica_t *r, void (*cb)(void *arg), void *arg);

/* ======================================================================
 * snapshot.c — raft snapshots off the loop thread (docs/architecture.md
 * "Recovery"): it decorates both what raft sees of the state machine (its
 * snapshot callback freezes the store and returns a placeholder) and of the
 * storage (a struct raft_io wrapped around raft_uv dumps the frozen store in
 * the libuv thread pool, writes it through raft_uv, thaws the store). The
 * state machine knows nothing of it.
 * ====================================================================== */
/* The wrapper. Fields are private; embed it in the object that owns @inner.
 * It owns two uv timers (opened at first use, closed by raft's close).
 * InstallSnapshot sends share one loaded copy of the snapshot, at most one
 * send per follower is in flight, and a follower that was sent the snapshot
 * at some index is not sent it again for SNAPSHOT_RESEND_MS (snapshot.c
 * "Sends"): the leader holds at most one copy of the snapshot for them. */
#define SNAPSHOT_PEERS 8
struct snapshot_put;
struct snapshot_sent;
struct snapshot_get;
typedef struct snapshot_peer {
    uint64_t id, index, done_ms; /* last successful send: index, uv_now() */
    bool in_flight;
} snapshot_peer_t;
typedef struct snapshot_io {
    struct raft_io io;          /* what raft sees of the storage */
    struct raft_fsm fsm;        /* what raft sees of the state machine */
    struct raft_io *inner;      /* raft_uv */
    struct raft_fsm *inner_fsm; /* the decorated raft_fsm */
    store_t *st;                /* the state machine's store (not owned) */
    uv_loop_t *loop;
    struct snapshot_put *put;   /* the deferred put in progress, or NULL */
    raft_io_close_cb close_cb;  /* set once raft closes */
    uv_timer_t timer;           /* loop lag probe during a dump, then drain */
    bool timer_init, timer_closed;
    store_t *draining;          /* store whose overlay the timer drains */
    uint64_t lag_last, lag_max, drain_t0; /* uv_hrtime() ns */
    /* Sends (added by perf2): */
    struct snapshot_sent *sent;  /* the loaded snapshot sends share, or NULL */
    struct snapshot_get *gets;   /* raft's snapshot_get requests waiting */
    struct raft_io_snapshot_get load_req; /* our load through raft_uv */
    bool loading;
    uint64_t load_epoch, put_epoch, next_gen; /* put_epoch: puts completed */
    uv_timer_t get_timer;        /* serves waiting gets; expires the copy */
    bool get_timer_init, get_timer_closed, inner_closing;
    snapshot_peer_t peers[SNAPSHOT_PEERS];
    raft_index snap_index;       /* the newest snapshot on disk (0: none) */
    /* An InstallSnapshot that arrived during our deferred put, handed to
     * raft once the put's callback ran (snapshot.c "Installs"): */
    raft_io_recv_cb recv;        /* raft's */
    struct raft_message held;    /* owns its data and configuration */
    char *held_address;          /* held.server_address, malloc'ed */
    bool holding;
    /* When to snapshot (snapshot_io_limit_log()): after `threshold`
     * entries — once their bytes also reach `growth` % of the newest
     * snapshot's (snap_bytes), when growth is on — or at the latest after
     * log_budget bytes. Raft's own threshold is then lowered until the next
     * snapshot completes (with growth on, raft never starts one itself). */
    struct raft *raft;           /* NULL: no budget */
    unsigned threshold;          /* the configured one */
    unsigned growth;             /* percent; 0: off */
    uint64_t log_budget, log_bytes, log_entries;
    uint64_t snap_bytes;         /* the newest snapshot taken, installed or loaded (0: none) */
    bool lowered;
} snapshot_io_t;
/* Wrap @inner (raft_uv, initialised, not yet given to raft_init) and
 * @inner_fsm (the raft_fsm over the store @st that raft would otherwise see):
 * raft_init() then takes &w->io and &w->fsm. w->fsm passes apply and restore
 * through and answers snapshot/snapshot_finalize with placeholders itself.
 * @w lives until raft's close callback. Loop thread. */
void snapshot_io_wrap(snapshot_io_t *w, struct raft_io *inner, struct raft_fsm *inner_fsm,
                      store_t *st, uv_loop_t *loop);
/* After raft_init(): snapshot after @threshold entries applied since the
 * last snapshot — with @growth > 0 only once their bytes are also @growth %
 * of that snapshot's size, so that a large state is not rewritten every
 * @threshold entries — and at the latest once they hold @budget bytes
 * (docs/operations.md "Snapshot tuning"). */
void snapshot_io_limit_log(snapshot_io_t *w, struct raft *raft, unsigned threshold,
                           uint64_t budget, unsigned growth);
/* A snapshot written through the wrapper ends with a checksum trailer of
 * SNAPSHOT_TRAILER_LEN bytes: u32be crc32_raft() of every byte before it, 4
 * zero bytes, "MQSNCRC1". True when @tail (the last SNAPSHOT_TRAILER_LEN
 * bytes of a snapshot) is one, with its checksum in *@crc; false for a
 * snapshot written before trailers existed. Any thread. */
#define SNAPSHOT_TRAILER_LEN 16
bool snapshot_trailer_parse(const unsigned char *tail, uint32_t *crc);

/* ======================================================================
 * logcheck.c — raft's directory checked before raft_uv reads it, and the
 * explicit repair (docs/operations.md "Damaged data"). With auto-recovery
 * off raft_uv refuses a damaged closed segment, but it still cuts an open
 * segment at a bad batch without a word, crashes on an open segment that
 * ends inside a batch, and loads a snapshot whose data is damaged; this
 * reads those files first. Blocking file I/O, before the loop runs.
 * ====================================================================== */
typedef enum logcheck_mode {
    LOGCHECK_START,    /* the newest snapshot and the open segments; fixes
                        * only what loses nothing (a torn tail; a damaged
                        * newest snapshot the log can replace) */
    LOGCHECK_DIAGNOSE, /* every file; changes nothing */
    LOGCHECK_REPAIR,   /* every file; keeps the longest undamaged part */
} logcheck_mode_t;
/* One finding or action: a sentence without a newline. @lost: it drops (or
 * would drop) entries or a snapshot that may hold acknowledged data. */
typedef void (*logcheck_report_cb)(void *arg, bool lost, const char *line);
/* Check raft's directory @dir in @mode, reporting each finding and action
 * through @report. Files are moved or copied into @keep_dir (created when
 * needed) before they are dropped or changed. *@damaged is set when raft
 * must not load @dir as it is: START found damage only a repair can handle
 * (and changed nothing), DIAGNOSE found any damage; after REPAIR it is
 * false. A REPAIR that drops entries also raises raft's term by one, so
 * that a cluster's leader sends them again (logcheck.c). Returns 0, or
 * MQHUB_EINTERNAL with @errmsg when a file could not be read or changed. */
int logcheck_run(const char *dir, const char *keep_dir, logcheck_mode_t mode,
                 logcheck_report_cb report, void *arg, bool *damaged, char *errmsg,
                 size_t errlen);

#endif
