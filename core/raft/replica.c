/* replica.c: one raft group on the loop.
 *
 * A replica_t owns a raft instance with the libuv backend (raft_uv storage in
 * cfg->dir, peer.c's authenticated transport), bound to the fsm through a
 * thin wrapper of its struct raft_fsm. It does three jobs around raft:
 *   - group commit: replica_submit() copies commands into the open batch; a
 *     uv_check handle (it runs right after the poll phase of each loop turn)
 *     turns the batch into ONE raft entry with fsm_entry_encode() and
 *     raft_apply(). A single submit therefore leaves at the end of the same
 *     loop turn, and a busy turn shares one entry. Replies are handed back in
 *     command order from the fsm_result_t of the applied entry.
 *   - leadership: tracked at every loop turn (raft has no state callback in its
 *     public API); the fsm encodes replies only for entries this node proposed
 *     while leader (see wrap_apply), so followers never build replies.
 *   - ticks: while leader, an internal {"op":"tick"} every second (unless the
 *     fsm says it would change nothing: fsm_tick_idle) and at the fsm's next
 *     due time, so delays and lock expiries take effect on time.
 * on_check() also notes, for replica_stats(), when the newest snapshot
 * changed and how often the known leader did (track_snapshot_and_leader),
 * whether this node is still a voter (track_removal: a removed node says so
 * and never campaigns), and moves a cluster.remove on (remove_standby: a
 * voter is made a standby first, so that it hears it was removed; a new
 * leader finishes a removal its predecessor left at that step:
 * finish_removals).
 * Members' client and HTTP addresses spread in a meta entry (announce()).
 * Start reading at replica_start(), replica_submit() and on_check().
 * To extend: a new raft knob goes into replica_config_t and replica_start();
 * a new periodic internal command next to submit_tick().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <raft/uv.h>

#include "clock.h"
#include "log.h"
#include "mp.h"
#include "peer.h"
#include "replica.h"

#define BATCH_MAX_CMDS 4096
#define BATCH_MAX_BYTES (4u << 20)
#define TICK_INTERVAL_MS 1000
#define DUE_MIN_DELAY_MS 5
#define HEARTBEAT_MS 100
/* raft_uv's open segments (default 8 MiB). Closing one costs the loop an
 * io_destroy() of 28-50 ms (docs/benchmarks.md "Single node"), so larger ones
 * mean fewer stalls; raft 0.22.1 stops writing at 24 MiB and more (appends
 * are accepted, never written), 16 MiB is tested, restarts included. */
#define SEGMENT_SIZE ((size_t)16 << 20)
#define ELECTION_MS 1000
#define DEFAULT_SNAPSHOT_THRESHOLD 8192
#define DEFAULT_SNAPSHOT_TRAILING 1024
#define DEFAULT_SNAPSHOT_LOG_BYTES (128u << 20) /* applied since the last snapshot */
#define DEFAULT_SNAPSHOT_GROWTH 100 /* % of the newest snapshot, before the next one */
/* replica_remove(): how long a standby may take to receive the entry that
 * made it one before it is removed anyway (it is down or cut off). */
#define REMOVE_NOTICE_MS 2000

typedef struct waiter {
    replica_done_cb cb;
    void *arg;
} waiter_t;

/* One proposed entry: the raft request and the callbacks of its commands. */
typedef struct batch {
    struct raft_apply req; /* req.data points back to the batch */
    replica_t *r;
    struct batch *prev, *next;
    int status;            /* failure to deliver, for the failed list */
    unsigned n;
    uint64_t t0;           /* uv_hrtime() at raft_apply */
    waiter_t waiters[];
} batch_t;

typedef struct batch_list {
    batch_t *head, *tail;
} batch_list_t;

typedef struct peer_copy {
    uint64_t id;
    char *client_address; /* NULL: unknown */
    char *http_address;   /* NULL: unknown */
} peer_copy_t;

/* One membership change or leadership transfer in progress. */
typedef struct change {
    struct raft_change req;
    struct raft_transfer treq;
    replica_t *r;
    uint64_t id;
    char *client_address;
    char *http_address;
    replica_change_cb cb;
    void *arg;
} change_t;

struct replica {
    uv_loop_t *loop;
    fsm_t *fsm;
    uint64_t id;
    char *client_address;
    char *http_address;
    char *dir;
    peer_copy_t *peers;     /* client and HTTP addresses of the other nodes */
    unsigned n_peers;
    void (*state_cb)(void *arg, bool leader);
    void *state_arg;

    struct raft raft;
    struct raft_io io;
    snapshot_io_t snapio;   /* wraps io: snapshots dumped off the loop */
    struct raft_uv_transport transport; /* peer.c */
    bool takes_peers;       /* a cluster secret, or unauthenticated peers allowed */
    struct raft_fsm *inner; /* the fsm's own raft_fsm */
    struct raft_fsm wrap;   /* what raft sees */

    uv_check_t check;       /* group commit + leadership tracking */
    uv_idle_t idle;         /* keeps poll from blocking while a batch is open */
    uv_timer_t tick_timer;  /* periodic tick while leader */
    uv_timer_t due_timer;   /* tick at fsm_next_due() */
    unsigned open_handles;

    /* The open batch: commands back to back in buf. */
    char *buf;
    size_t len, cap;
    size_t *lens;
    waiter_t *waiters;
    unsigned n, cap_n;

    batch_list_t inflight;  /* proposed, in index order */
    batch_list_t failed;    /* to be failed at the next check */

    uint64_t entries, commands; /* proposed, for replica_stats() */
    uint64_t answered, answered_ns, applied, apply_ns; /* replica_stats() */
    uint64_t seen_leader, leader_changes; /* track_snapshot_and_leader() */
    raft_index seen_snap;       /* snapio.snap_index at seen_snap_ms (uv_now) */
    uint64_t seen_snap_ms;
    bool leader;
    bool removed;               /* track_removal(): no longer a voter here */
    uint64_t removed_by;        /* the leader known then (0: none) */
    change_t *removing;         /* a standby waiting for its removal */
    raft_index removing_index;  /* ... once it has this entry */
    uint64_t removing_deadline; /* ... or at this uv_now() */
    bool finishing;             /* finish_removals(): a removal in flight */
    bool tick_inflight;
    bool stopping;
    void (*stop_cb)(void *arg);
    void *stop_arg;
};

static const char tick_cmd[] = "\x82\xa2op\xa4tick\xa2id\x00";

static void list_push(batch_list_t *l, batch_t *b)
{
    b->next = NULL;
    b->prev = l->tail;
    if (l->tail)
        l->tail->next = b;
    else
        l->head = b;
    l->tail = b;
}

static void list_remove(batch_list_t *l, batch_t *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        l->head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        l->tail = b->prev;
}

/* A proposal raft refused: nothing was appended, a retry is safe. */
static int map_raft_status(int rv)
{
    return rv == RAFT_NOTLEADER ? MQHUB_ENOT_LEADER : MQHUB_EUNAVAILABLE;
}

/* An appended entry that failed later (leadership lost, shutdown): a new
 * leader may still commit it, so its outcome is unknown. TIMEOUT tells the
 * client not to retry blindly (a retried send could be stored twice). */
#define OUTCOME_UNKNOWN MQHUB_ETIMEOUT

static void fail_batch(batch_t *b, int status)
{
    for (unsigned i = 0; i < b->n; i++)
        b->waiters[i].cb(b->waiters[i].arg, status, NULL, 0);
    free(b);
}

static void drain_failed(replica_t *r)
{
    batch_t *b;
    while ((b = r->failed.head) != NULL) {
        list_remove(&r->failed, b);
        fail_batch(b, b->status);
    }
}

/* ---- raft_fsm wrapper -------------------------------------------------- */

/* Whether the entry at @index is one this node proposed and still waits for. */
static bool is_ours(replica_t *r, raft_index index)
{
    for (batch_t *b = r->inflight.head; b; b = b->next)
        if (b->req.index == index)
            return true;
    return false;
}

static void arm_due(replica_t *r);

/* Replies are encoded only for our own pending entries while leader: raft
 * hands an apply result to nobody for entries without a request, so emitting
 * for them would only waste work (and leak the result). The entry being
 * applied is raft_last_applied() + 1 (raft updates it after apply). */
static bool meta_apply(replica_t *r, const struct raft_buffer *buf);

static int wrap_apply(struct raft_fsm *w, const struct raft_buffer *buf, void **result)
{
    replica_t *r = w->data;
    if (meta_apply(r, buf)) {
        *result = NULL;
        return 0;
    }
    bool ours = raft_state(&r->raft) == RAFT_LEADER &&
                is_ours(r, raft_last_applied(&r->raft) + 1);
    fsm_set_emit(r->fsm, ours);
    uint64_t t0 = uv_hrtime();
    int rv = r->inner->apply(r->inner, buf, result);
    r->apply_ns += uv_hrtime() - t0;
    r->applied++;
    if (rv == 0)
        arm_due(r);
    return rv;
}

static int wrap_restore(struct raft_fsm *w, struct raft_buffer *buf)
{
    replica_t *r = w->data;
    return r->inner->restore(r->inner, buf);
}

static void wrap_init(replica_t *r)
{
    memset(&r->wrap, 0, sizeof r->wrap);
    r->wrap.version = r->inner->version;
    r->wrap.data = r;
    r->wrap.apply = wrap_apply;
    r->wrap.restore = wrap_restore;
    /* snapshot and snapshot_finalize: snapshot_io's raft_fsm, which raft
     * sees in front of this one, answers them (snapshot.c). */
}

/* ---- group commit ------------------------------------------------------ */

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    batch_t *b = req->data;
    replica_t *r = b->r;
    fsm_result_t *res = result;

    list_remove(&r->inflight, b);
    if (status != 0) {
        log_debug("replica", "entry failed: %s", raft_strerror(status));
        fail_batch(b, OUTCOME_UNKNOWN);
        return;
    }
    r->answered++;
    r->answered_ns += uv_hrtime() - b->t0;
    for (unsigned i = 0; i < b->n; i++) {
        if (res && i < res->n)
            b->waiters[i].cb(b->waiters[i].arg, 0, res->data + res->off[i],
                             res->off[i + 1] - res->off[i]);
        else
            b->waiters[i].cb(b->waiters[i].arg, MQHUB_EUNAVAILABLE, NULL, 0);
    }
    if (!res || res->n != b->n)
        log_error("replica", "applied entry has %u replies for %u commands",
                  res ? res->n : 0, b->n);
    if (res)
        fsm_result_free(res);
    free(b);
}

/* Turn the open batch into one raft entry. Never calls a done callback: a
 * batch that cannot be proposed goes to the failed list (drained in on_check),
 * so replica_submit() never calls back from inside itself. */
static void flush(replica_t *r)
{
    if (r->n == 0)
        return;
    batch_t *b = malloc(sizeof *b + r->n * sizeof(waiter_t));
    const char **cmds = malloc(r->n * sizeof *cmds);
    struct raft_buffer entry = {0};
    int rv = MQHUB_EINTERNAL;

    if (!b || !cmds) {
        log_error("replica", "out of memory for a batch of %u commands", r->n);
        abort();
    }
    b->r = r;
    b->n = r->n;
    b->req.data = b;
    b->t0 = uv_hrtime();
    memcpy(b->waiters, r->waiters, r->n * sizeof(waiter_t));
    for (size_t i = 0, off = 0; i < r->n; off += r->lens[i], i++)
        cmds[i] = r->buf + off;

    if (fsm_entry_encode(clock_wall_ms(), cmds, r->lens, r->n, &entry) == 0) {
        list_push(&r->inflight, b);
        rv = raft_apply(&r->raft, &b->req, &entry, 1, apply_cb);
        if (rv == 0) {
            r->entries++;
            r->commands += b->n;
        } else {
            list_remove(&r->inflight, b);
            raft_free(entry.base);
            log_debug("replica", "raft_apply: %s", raft_strerror(rv));
            rv = map_raft_status(rv);
        }
    } else {
        log_error("replica", "cannot encode an entry of %u commands", r->n);
        rv = MQHUB_EUNAVAILABLE;
    }
    if (rv != 0) {
        b->status = rv;
        list_push(&r->failed, b);
    }
    free(cmds);
    r->n = 0;
    r->len = 0;
    uv_idle_stop(&r->idle);
}

static int reserve(replica_t *r, size_t len)
{
    if (r->len + len > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len)
            cap *= 2;
        char *p = realloc(r->buf, cap);
        if (!p)
            return MQHUB_EUNAVAILABLE;
        r->buf = p;
        r->cap = cap;
    }
    if (r->n == r->cap_n) {
        unsigned cap_n = r->cap_n ? r->cap_n * 2 : 64;
        size_t *lens = realloc(r->lens, cap_n * sizeof *lens);
        if (!lens)
            return MQHUB_EUNAVAILABLE;
        r->lens = lens;
        waiter_t *w = realloc(r->waiters, cap_n * sizeof *w);
        if (!w)
            return MQHUB_EUNAVAILABLE;
        r->waiters = w;
        r->cap_n = cap_n;
    }
    return 0;
}

/* Running, the idle handle makes the poll phase return at once, so a batch
 * opened by a callback that runs after on_check still leaves promptly. */
static void on_idle(uv_idle_t *h)
{
}

int replica_submit(replica_t *r, const char *cmd, size_t len, replica_done_cb cb,
                   void *arg)
{
    if (r->stopping)
        return MQHUB_EUNAVAILABLE;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return MQHUB_ENOT_LEADER;
    if (r->n > 0 && (r->n >= BATCH_MAX_CMDS || r->len + len > BATCH_MAX_BYTES))
        flush(r);
    if (reserve(r, len) != 0)
        return MQHUB_EUNAVAILABLE;
    memcpy(r->buf + r->len, cmd, len);
    r->len += len;
    r->lens[r->n] = len;
    r->waiters[r->n] = (waiter_t){cb, arg};
    if (r->n++ == 0)
        uv_idle_start(&r->idle, on_idle);
    return 0;
}

/* ---- leadership and ticks ---------------------------------------------- */

static void announce(replica_t *r);

static void tick_done(void *arg, int status, const char *reply, size_t len)
{
    replica_t *r = arg;
    r->tick_inflight = false;
}

static void submit_tick(replica_t *r)
{
    if (r->tick_inflight || !r->leader)
        return;
    if (replica_submit(r, tick_cmd, sizeof tick_cmd - 1, tick_done, r) == 0)
        r->tick_inflight = true;
}

static void on_tick_timer(uv_timer_t *t)
{
    submit_tick(t->data);
}

/* The once-a-second tick, skipped while it would change nothing (an idle
 * hub writes nothing to its log); what comes due is on due_timer. */
static void on_periodic_tick(uv_timer_t *t)
{
    replica_t *r = t->data;
    if (!fsm_tick_idle(r->fsm))
        submit_tick(r);
}

static void arm_due(replica_t *r)
{
    if (!r->leader || r->stopping)
        return;
    uint64_t due = fsm_next_due(r->fsm);
    if (due == UINT64_MAX) {
        uv_timer_stop(&r->due_timer);
        return;
    }
    uint64_t now = clock_wall_ms();
    uint64_t delay = due > now ? due - now : 0;
    if (delay < DUE_MIN_DELAY_MS)
        delay = DUE_MIN_DELAY_MS;
    uv_timer_start(&r->due_timer, on_tick_timer, delay, 0);
}

static void track_leadership(replica_t *r)
{
    bool leader = raft_state(&r->raft) == RAFT_LEADER;
    if (leader == r->leader)
        return;
    r->leader = leader;
    log_info("replica", "node %llu %s (term %llu)", (unsigned long long)r->id,
             leader ? "became leader" : "is no longer leader",
             (unsigned long long)raft_current_term(&r->raft));
    if (leader) {
        uv_timer_start(&r->tick_timer, on_periodic_tick, TICK_INTERVAL_MS,
                       TICK_INTERVAL_MS);
        submit_tick(r); /* promote whatever came due while we were not leader */
        announce(r);
    } else {
        uv_timer_stop(&r->tick_timer);
        uv_timer_stop(&r->due_timer);
    }
    if (r->state_cb)
        r->state_cb(r->state_arg, leader);
}

/* For replica_stats(), once per loop turn: when the newest snapshot
 * changed (taken, installed or loaded: snapshot.c sets snap_index) and how
 * often the known leader did. */
static void track_snapshot_and_leader(replica_t *r)
{
    raft_id id = 0;
    const char *addr = NULL;

    if (r->snapio.snap_index != r->seen_snap) {
        r->seen_snap = r->snapio.snap_index;
        r->seen_snap_ms = uv_now(r->loop);
    }
    raft_leader(&r->raft, &id, &addr);
    if (id != 0 && id != r->seen_leader)
        r->leader_changes++;
    r->seen_leader = id;
}

static int member_role(replica_t *r, uint64_t id, const char **address);
static void remove_standby(replica_t *r);
static void finish_removals(replica_t *r);

/* Once per loop turn: whether the configuration this node holds still
 * lists it as a voter (a spare is a node being added). Logged at each
 * change, so once when it is removed. */
static void track_removal(replica_t *r)
{
    raft_id id = 0;
    const char *addr = NULL;

    if (r->raft.configuration.n == 0)
        return; /* node.join: not added yet */
    int role = member_role(r, r->id, NULL);
    bool removed = role != RAFT_VOTER && role != RAFT_SPARE;
    if (removed == r->removed)
        return;
    r->removed = removed;
    if (!removed) {
        log_info("replica", "node %llu is a member again", (unsigned long long)r->id);
        return;
    }
    raft_leader(&r->raft, &id, &addr);
    r->removed_by = id;
    if (id != 0 && id != r->id)
        log_warn("replica", "removed from the cluster by the leader, node %llu (term %llu): "
                 "this node no longer votes nor serves; stop it, or add it again with "
                 "cluster.add", (unsigned long long)id,
                 (unsigned long long)raft_current_term(&r->raft));
    else
        log_warn("replica", "removed from the cluster (term %llu): this node no longer "
                 "votes nor serves; stop it, or add it again with cluster.add",
                 (unsigned long long)raft_current_term(&r->raft));
}

static void on_check(uv_check_t *h)
{
    replica_t *r = h->data;
    track_leadership(r);
    track_snapshot_and_leader(r);
    track_removal(r);
    remove_standby(r);
    finish_removals(r);
    flush(r);
    drain_failed(r);
}

/* ---- client addresses of the members ----------------------------------- */

/* Every node must name the leader's client address in NOT_LEADER, and the
 * dashboard needs every node's HTTP address, also for members added after
 * the config was written. The leader replicates what it knows (id -> {client,
 * http}) in a meta entry (META_MAGIC + msgpack map) when it takes office and
 * after each membership change; wrap_apply consumes it before the fsm sees
 * it, so the fsm state and digest are untouched. Each node keeps the table in
 * <dir>/clients, one "id client http" line per node ("-": unknown), so a
 * restart (whose snapshot may cover the meta entry) remembers it. Entries
 * written before HTTP addresses existed map an id to the client string. */
#define META_MAGIC "MQHUBCL1"
#define META_MAGIC_LEN 8
#define ADDRESS_MAX 256

static void save_clients(replica_t *r)
{
    char path[4200], tmp[4210];
    snprintf(path, sizeof path, "%s/clients", r->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    for (unsigned i = 0; i < r->n_peers; i++)
        fprintf(f, "%llu %s %s\n", (unsigned long long)r->peers[i].id,
                r->peers[i].client_address ? r->peers[i].client_address : "-",
                r->peers[i].http_address ? r->peers[i].http_address : "-");
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        log_warn("replica", "cannot save %s: %s", path, strerror(errno));
}

/* Replace *@slot with a copy of @value unless equal (or @value is NULL);
 * true when it changed. */
static bool set_address(char **slot, const char *value)
{
    if (!value || (*slot && strcmp(*slot, value) == 0))
        return false;
    char *copy = strdup(value);
    if (!copy)
        return false;
    free(*slot);
    *slot = copy;
    return true;
}

/* Remember @client and @http (each may be NULL: unchanged) for node @id;
 * @persist writes the file when something changed. */
static void set_client(replica_t *r, uint64_t id, const char *client, const char *http,
                       bool persist)
{
    unsigned i = 0;
    if (id == r->id || (!client && !http))
        return;
    while (i < r->n_peers && r->peers[i].id != id)
        i++;
    if (i == r->n_peers) {
        peer_copy_t *p = realloc(r->peers, (r->n_peers + 1) * sizeof *p);
        if (!p)
            return;
        r->peers = p;
        r->peers[r->n_peers++] = (peer_copy_t){id, NULL, NULL};
    }
    bool changed = set_address(&r->peers[i].client_address, client);
    changed |= set_address(&r->peers[i].http_address, http);
    if (changed && persist)
        save_clients(r);
}

static const char *dash_null(const char *s)
{
    return strcmp(s, "-") == 0 ? NULL : s;
}

static void load_clients(replica_t *r)
{
    char path[4200], line[2 * ADDRESS_MAX + 32], client[ADDRESS_MAX], http[ADDRESS_MAX];
    unsigned long long id;
    snprintf(path, sizeof path, "%s/clients", r->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        int n = sscanf(line, "%llu %255s %255s", &id, client, http);
        if (n >= 2)
            set_client(r, id, dash_null(client), n == 3 ? dash_null(http) : NULL, false);
    }
    fclose(f);
}

/* A msgpack string copied into @buf (ADDRESS_MAX); false when it is not one. */
static bool meta_string(const msgpack_object *o, char *buf)
{
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= ADDRESS_MAX)
        return false;
    /* printable, no space: the clients file keeps one "id client http" line
     * per node, so an address must never split or end a line */
    for (uint32_t i = 0; i < o->via.str.size; i++)
        if (o->via.str.ptr[i] <= ' ' || o->via.str.ptr[i] == 0x7f)
            return false;
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = '\0';
    return true;
}

/* One id's value: "client" (older entries) or {client?, http?}. */
static void meta_apply_node(replica_t *r, uint64_t id, const msgpack_object *v)
{
    char client[ADDRESS_MAX], http[ADDRESS_MAX];
    if (meta_string(v, client)) {
        set_client(r, id, client, NULL, true);
        return;
    }
    if (v->type != MSGPACK_OBJECT_MAP)
        return;
    bool has_client = meta_string(mp_map_get(v, "client"), client);
    bool has_http = meta_string(mp_map_get(v, "http"), http);
    set_client(r, id, has_client ? client : NULL, has_http ? http : NULL, true);
}

static bool meta_apply(replica_t *r, const struct raft_buffer *buf)
{
    msgpack_unpacked u;
    size_t off = META_MAGIC_LEN;

    if (buf->len < META_MAGIC_LEN || memcmp(buf->base, META_MAGIC, META_MAGIC_LEN) != 0)
        return false;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, buf->base, buf->len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            msgpack_object *k = &u.data.via.map.ptr[i].key;
            if (k->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                meta_apply_node(r, k->via.u64, &u.data.via.map.ptr[i].val);
        }
    }
    msgpack_unpacked_destroy(&u);
    return true;
}

static void announce_done(struct raft_apply *req, int status, void *result)
{
    free(req);
}

/* One id of the meta entry: {client?, http?}. */
static void announce_node(msgpack_packer *pk, uint64_t id, const char *client,
                          const char *http)
{
    msgpack_pack_uint64(pk, id);
    msgpack_pack_map(pk, (client != NULL) + (http != NULL));
    if (client) {
        mp_pack_cstr(pk, "client");
        mp_pack_cstr(pk, client);
    }
    if (http) {
        mp_pack_cstr(pk, "http");
        mp_pack_cstr(pk, http);
    }
}

/* Propose the table (ourselves included) as one meta entry. */
static void announce(replica_t *r)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned n = r->client_address || r->http_address;
    struct raft_apply *req = malloc(sizeof *req);
    struct raft_buffer entry;

    for (unsigned i = 0; i < r->n_peers; i++)
        n += r->peers[i].client_address || r->peers[i].http_address;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_sbuffer_write(&sb, META_MAGIC, META_MAGIC_LEN);
    msgpack_pack_map(&pk, n);
    if (r->client_address || r->http_address)
        announce_node(&pk, r->id, r->client_address, r->http_address);
    for (unsigned i = 0; i < r->n_peers; i++) {
        const peer_copy_t *p = &r->peers[i];
        if (p->client_address || p->http_address)
            announce_node(&pk, p->id, p->client_address, p->http_address);
    }
    while (sb.size % 8)
        msgpack_pack_nil(&pk); /* the padding apply ignores */
    entry.len = sb.size;
    entry.base = raft_malloc(sb.size);
    if (req && entry.base) {
        memcpy(entry.base, sb.data, sb.size);
        if (raft_apply(&r->raft, req, &entry, 1, announce_done) == 0)
            req = NULL, entry.base = NULL;
    }
    if (entry.base)
        raft_free(entry.base);
    free(req);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- membership -------------------------------------------------------- */

static int map_change_status(int rv)
{
    switch (rv) {
    case 0: return 0;
    case RAFT_NOTLEADER: case RAFT_LEADERSHIPLOST: return MQHUB_ENOT_LEADER;
    case RAFT_NOTFOUND: case RAFT_BADID: return MQHUB_ENOT_FOUND;
    case RAFT_DUPLICATEID: case RAFT_DUPLICATEADDRESS: return MQHUB_EEXISTS;
    case RAFT_BADROLE: return MQHUB_EBAD_REQUEST;
    default: return MQHUB_EUNAVAILABLE;
    }
}

/* Whether raft takes a membership change now. raft 0.22.1 refuses one
 * while another is uncommitted or a node is being promoted, and then leaks
 * the configuration it encoded for it (clientChangeConfiguration returns
 * without freeing the entry's buffer): so every raft_add, raft_assign and
 * raft_remove asks this first. Leader only. */
static bool change_allowed(replica_t *r)
{
    return raft_state(&r->raft) == RAFT_LEADER &&
           r->raft.configuration_uncommitted_index == 0 &&
           r->raft.leader_state.promotee_id == 0;
}

static void change_free(change_t *c)
{
    if (!c)
        return;
    free(c->client_address);
    free(c->http_address);
    free(c);
}

static void change_finish(change_t *c, int status)
{
    char msg[256];
    replica_t *r = c->r;
    if (status == 0)
        msg[0] = '\0';
    else
        snprintf(msg, sizeof msg, "%s", raft_errmsg(&r->raft)[0] ? raft_errmsg(&r->raft)
                                                                    : raft_strerror(status));
    c->cb(c->arg, map_change_status(status), msg);
    change_free(c);
}

static change_t *change_new(replica_t *r, uint64_t id, replica_change_cb cb, void *arg)
{
    change_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->r = r;
    c->id = id;
    c->cb = cb;
    c->arg = arg;
    c->req.data = c->treq.data = c;
    return c;
}

static void assigned(struct raft_change *req, int status)
{
    change_t *c = req->data;
    if (status == 0) {
        log_info("replica", "node %llu is a voter", (unsigned long long)c->id);
        set_client(c->r, c->id, c->client_address, c->http_address, true);
        if (!c->r->stopping)
            announce(c->r);
    }
    change_finish(c, status);
}

static void added(struct raft_change *req, int status)
{
    change_t *c = req->data;
    int rv = status;
    if (rv == 0 && !c->r->stopping) {
        log_info("replica", "node %llu added, catching up", (unsigned long long)c->id);
        rv = raft_assign(&c->r->raft, &c->req, c->id, RAFT_VOTER, assigned);
        if (rv == 0)
            return;
    }
    change_finish(c, rv ? rv : RAFT_SHUTDOWN);
}

/* The role of @id in the current configuration, or -1. */
static int member_role(replica_t *r, uint64_t id, const char **address)
{
    for (unsigned i = 0; i < r->raft.configuration.n; i++) {
        struct raft_server *s = &r->raft.configuration.servers[i];
        if (s->id == id) {
            if (address)
                *address = s->address;
            return s->role;
        }
    }
    return -1;
}

int replica_add(replica_t *r, uint64_t id, const char *raft_address,
                const char *client_address, const char *http_address, replica_change_cb cb,
                void *arg)
{
    const char *have = NULL;
    int role, rv;

    if (r->stopping)
        return MQHUB_EUNAVAILABLE;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return MQHUB_ENOT_LEADER;
    if (!r->takes_peers)
        return MQHUB_EBAD_REQUEST;
    role = member_role(r, id, &have);
    if (role >= 0 && strcmp(have, raft_address) != 0)
        return MQHUB_EEXISTS;
    if (role != RAFT_VOTER && !change_allowed(r))
        return MQHUB_EUNAVAILABLE; /* one change at a time, as raft's own */
    change_t *c = change_new(r, id, cb, arg);
    if (!c || (client_address && !(c->client_address = strdup(client_address))) ||
        (http_address && !(c->http_address = strdup(http_address)))) {
        change_free(c);
        return MQHUB_EUNAVAILABLE;
    }
    if (role == RAFT_VOTER) { /* already done: say so again */
        set_client(r, id, client_address, http_address, true);
        announce(r);
        change_free(c);
        return MQHUB_EEXISTS;
    }
    if (role >= 0)
        rv = raft_assign(&r->raft, &c->req, id, RAFT_VOTER, assigned);
    else
        rv = raft_add(&r->raft, &c->req, id, raft_address, added);
    if (rv != 0) {
        change_free(c);
        return map_change_status(rv);
    }
    log_info("replica", "adding node %llu at %s", (unsigned long long)id, raft_address);
    return 0;
}

static void removed(struct raft_change *req, int status)
{
    change_t *c = req->data;
    if (status == 0)
        log_info("replica", "node %llu removed", (unsigned long long)c->id);
    change_finish(c, status);
}

/* The standby step of replica_remove() is committed: wait in on_check
 * (remove_standby) until the node has it, so that it learns it is out. */
static void demoted(struct raft_change *req, int status)
{
    change_t *c = req->data;
    replica_t *r = c->r;
    if (status != 0 || r->stopping) {
        change_finish(c, status ? status : RAFT_SHUTDOWN);
        return;
    }
    log_info("replica", "node %llu is a standby, removing it", (unsigned long long)c->id);
    r->removing = c;
    r->removing_index = raft_commit_index(&r->raft);
    r->removing_deadline = uv_now(r->loop) + REMOVE_NOTICE_MS;
}

/* Once per loop turn: remove the standby of demoted() when it holds the
 * entry that made it one, or it did not get it in time, or fail the change
 * when this node no longer leads. */
static void remove_standby(replica_t *r)
{
    change_t *c = r->removing;
    raft_index match = 0;

    if (!c)
        return;
    bool leading = raft_state(&r->raft) == RAFT_LEADER;
    bool has = raft_match_index(&r->raft, c->id, &match) == 0 && match >= r->removing_index;
    if (leading && ((!has && uv_now(r->loop) < r->removing_deadline) || !change_allowed(r)))
        return;
    r->removing = NULL;
    int rv = leading ? raft_remove(&r->raft, &c->req, c->id, removed) : RAFT_NOTLEADER;
    if (rv != 0)
        change_finish(c, rv);
}

static void finished_removal(void *arg, int status, const char *errmsg)
{
    replica_t *r = arg;
    r->finishing = false;
    if (status != 0 && !r->stopping)
        log_warn("replica", "finishing an earlier removal failed: %s; the next loop turn "
                 "tries again", errmsg);
}

/* Once per loop turn while leading: a standby is a node whose removal was
 * cut short by a leader change (its demotion committed, the removal never
 * proposed; cluster.remove makes the only standbys), so finish it. raft
 * refuses while another change is uncommitted (a new leader's first turns
 * included): then the next turn tries again. */
static void finish_removals(replica_t *r)
{
    const struct raft_configuration *cf = &r->raft.configuration;
    if (!r->leader || r->removing || r->finishing || r->stopping || !change_allowed(r))
        return;
    for (unsigned i = 0; i < cf->n; i++) {
        uint64_t id = cf->servers[i].id;
        if (cf->servers[i].role != RAFT_STANDBY || id == r->id)
            continue;
        change_t *c = change_new(r, id, finished_removal, r);
        if (!c || raft_remove(&r->raft, &c->req, id, removed) != 0) {
            change_free(c);
            return;
        }
        r->finishing = true;
        log_info("replica", "node %llu is a standby left by an interrupted removal, "
                 "removing it", (unsigned long long)id);
        return;
    }
}

int replica_remove(replica_t *r, uint64_t id, replica_change_cb cb, void *arg)
{
    if (r->stopping)
        return MQHUB_EUNAVAILABLE;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return MQHUB_ENOT_LEADER;
    int role = member_role(r, id, NULL);
    if (role < 0)
        return MQHUB_ENOT_FOUND;
    if (r->removing || r->finishing || !change_allowed(r))
        return MQHUB_EUNAVAILABLE; /* one change at a time, as raft's own */
    change_t *c = change_new(r, id, cb, arg);
    if (!c)
        return MQHUB_EUNAVAILABLE;
    /* A voter that is removed at once never hears of it: the leader stops
     * sending to it with the entry that removes it, so it would campaign
     * for ever. As a standby it still gets the log, and does not vote. */
    int rv = id != r->id && role == RAFT_VOTER
                 ? raft_assign(&r->raft, &c->req, id, RAFT_STANDBY, demoted)
                 : raft_remove(&r->raft, &c->req, id, removed);
    if (rv != 0) {
        change_free(c);
        return map_change_status(rv);
    }
    return 0;
}

static void transferred(struct raft_transfer *req)
{
    change_t *c = req->data;
    bool moved = raft_state(&c->r->raft) != RAFT_LEADER;
    if (moved)
        log_info("replica", "leadership transferred");
    c->cb(c->arg, moved ? 0 : MQHUB_EUNAVAILABLE,
          moved ? "" : "the transfer did not complete in time; retry");
    free(c);
}

int replica_transfer(replica_t *r, uint64_t id, replica_change_cb cb, void *arg)
{
    if (r->stopping)
        return MQHUB_EUNAVAILABLE;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return MQHUB_ENOT_LEADER;
    if (id != 0 && (member_role(r, id, NULL) != RAFT_VOTER || id == r->id))
        return member_role(r, id, NULL) < 0 ? MQHUB_ENOT_FOUND : MQHUB_EBAD_REQUEST;
    change_t *c = change_new(r, id, cb, arg);
    if (!c)
        return MQHUB_EUNAVAILABLE;
    int rv = raft_transfer(&r->raft, &c->treq, id, transferred);
    if (rv != 0) {
        free(c);
        return map_change_status(rv);
    }
    return 0;
}

unsigned replica_nodes(replica_t *r, replica_node_t *out, unsigned max)
{
    raft_id leader = 0;
    const char *addr = NULL;
    bool leading = raft_state(&r->raft) == RAFT_LEADER;
    unsigned n = r->raft.configuration.n;

    if (!r->stopping)
        raft_leader(&r->raft, &leader, &addr);
    for (unsigned i = 0; i < n && i < max; i++) {
        struct raft_server *s = &r->raft.configuration.servers[i];
        raft_index match = 0;
        out[i] = (replica_node_t){
            .id = s->id,
            .raft_address = s->address,
            .client_address = replica_client_address(r, s->id),
            .http_address = replica_http_address(r, s->id),
            .role = s->role == RAFT_VOTER ? "voter" : s->role == RAFT_STANDBY ? "standby"
                                                                             : "spare",
            .leader = s->id == leader,
        };
        if (leading && s->id == r->id) {
            out[i].match_index = raft_last_index(&r->raft);
            out[i].has_match = true;
        } else if (leading && raft_match_index(&r->raft, s->id, &match) == 0) {
            out[i].match_index = match;
            out[i].has_match = true;
        }
    }
    return n;
}

/* ---- accessors --------------------------------------------------------- */

bool replica_is_leader(replica_t *r)
{
    return !r->stopping && raft_state(&r->raft) == RAFT_LEADER;
}

uint64_t replica_id(replica_t *r)
{
    return r->id;
}

/* A removed node that knows no leader (restarted since) still sends its
 * clients on: to the client address of a voter it knows, which names the
 * leader in turn. NULL when it knows none. */
static const char *member_address(replica_t *r)
{
    for (unsigned i = 0; i < r->raft.configuration.n; i++) {
        const struct raft_server *s = &r->raft.configuration.servers[i];
        const char *a = replica_client_address(r, s->id);
        if (s->role == RAFT_VOTER && s->id != r->id && a)
            return a;
    }
    return NULL;
}

const char *replica_leader_address(replica_t *r)
{
    raft_id id = 0;
    const char *addr = NULL;

    if (r->stopping)
        return NULL;
    if (raft_state(&r->raft) == RAFT_LEADER)
        return r->client_address;
    raft_leader(&r->raft, &id, &addr);
    if (id == 0 && r->removed)
        return member_address(r);
    if (id == 0)
        return NULL;
    return replica_client_address(r, id);
}

const char *replica_client_address(replica_t *r, uint64_t id)
{
    if (id == r->id)
        return r->client_address;
    for (unsigned i = 0; i < r->n_peers; i++)
        if (r->peers[i].id == id)
            return r->peers[i].client_address;
    return NULL;
}

const char *replica_http_address(replica_t *r, uint64_t id)
{
    if (id == r->id)
        return r->http_address;
    for (unsigned i = 0; i < r->n_peers; i++)
        if (r->peers[i].id == id)
            return r->peers[i].http_address;
    return NULL;
}

bool replica_removed(replica_t *r, uint64_t *by)
{
    if (by)
        *by = r->removed_by;
    return r->removed;
}

void replica_set_state_cb(replica_t *r, void (*cb)(void *arg, bool leader), void *arg)
{
    r->state_cb = cb;
    r->state_arg = arg;
}

void replica_stats(replica_t *r, replica_stats_t *out)
{
    raft_id id = 0;
    const char *addr = NULL;

    if (!r->stopping)
        raft_leader(&r->raft, &id, &addr);
    *out = (replica_stats_t){
        .term = raft_current_term(&r->raft),
        .commit_index = raft_commit_index(&r->raft),
        .last_applied = raft_last_applied(&r->raft),
        .last_index = r->stopping ? 0 : raft_last_index(&r->raft),
        .leader_id = id,
        .entries = r->entries,
        .commands = r->commands,
        .snapshot_index = r->seen_snap,
        .snapshot_age_ms = r->seen_snap != 0 ? uv_now(r->loop) - r->seen_snap_ms : 0,
        .log_entries = r->snapio.log_entries,
        .log_bytes = r->snapio.log_bytes,
        .leader_changes = r->leader_changes,
        .answered = r->answered,
        .answered_us = r->answered_ns / 1000,
        .applied = r->applied,
        .apply_us = r->apply_ns / 1000,
    };
}

/* ---- start and stop ---------------------------------------------------- */

static void replica_free(replica_t *r)
{
    for (unsigned i = 0; i < r->n_peers; i++) {
        free(r->peers[i].client_address);
        free(r->peers[i].http_address);
    }
    free(r->peers);
    free(r->client_address);
    free(r->http_address);
    free(r->dir);
    free(r->buf);
    free(r->lens);
    free(r->waiters);
    free(r);
}

static void handle_closed(uv_handle_t *h)
{
    replica_t *r = h->data;
    if (--r->open_handles > 0)
        return;
    void (*cb)(void *) = r->stop_cb;
    void *arg = r->stop_arg;
    replica_free(r);
    if (cb)
        cb(arg);
}

static void close_handles(replica_t *r)
{
    r->open_handles = 4;
    uv_close((uv_handle_t *)&r->check, handle_closed);
    uv_close((uv_handle_t *)&r->idle, handle_closed);
    uv_close((uv_handle_t *)&r->tick_timer, handle_closed);
    uv_close((uv_handle_t *)&r->due_timer, handle_closed);
}

/* raft_close() fires every pending apply callback (LEADERSHIPLOST) before
 * this; whatever is still listed is failed here so each callback runs once. */
static void raft_closed(struct raft *raft)
{
    replica_t *r = raft->data;
    batch_t *b;

    raft_uv_close(&r->io);
    peer_transport_free(&r->transport);
    if (r->removing) {
        change_t *c = r->removing;
        r->removing = NULL;
        change_finish(c, RAFT_SHUTDOWN);
    }
    while ((b = r->inflight.head) != NULL) {
        list_remove(&r->inflight, b);
        fail_batch(b, OUTCOME_UNKNOWN);
    }
    drain_failed(r);
    close_handles(r);
}

void replica_stop(replica_t *r, void (*cb)(void *arg), void *arg)
{
    r->stopping = true;
    r->stop_cb = cb;
    r->stop_arg = arg;
    r->leader = false;
    uv_check_stop(&r->check);
    uv_idle_stop(&r->idle);
    uv_timer_stop(&r->tick_timer);
    uv_timer_stop(&r->due_timer);
    /* Commands of the open batch were never proposed. */
    for (unsigned i = 0; i < r->n; i++)
        r->waiters[i].cb(r->waiters[i].arg, MQHUB_EUNAVAILABLE, NULL, 0);
    r->n = 0;
    r->len = 0;
    raft_close(&r->raft, raft_closed);
}

static int mkdir_p(const char *dir)
{
    char path[4096];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof path)
        return -ENAMETOOLONG;
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static replica_t *replica_alloc(uv_loop_t *loop, fsm_t *fsm, const replica_config_t *cfg)
{
    replica_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->loop = loop;
    r->fsm = fsm;
    r->id = cfg->id;
    r->client_address = dup_or_null(cfg->client_address);
    r->http_address = dup_or_null(cfg->http_address);
    r->dir = strdup(cfg->dir);
    if (!r->dir || (cfg->http_address && !r->http_address)) {
        replica_free(r);
        return NULL;
    }
    load_clients(r); /* learned before; the config below wins */
    for (unsigned i = 0; i < cfg->n_peers; i++)
        set_client(r, cfg->peers[i].id, cfg->peers[i].client_address,
                   cfg->peers[i].http_address, false);
    r->inner = fsm_raft(fsm);
    wrap_init(r);
    return r;
}

static int bootstrap(replica_t *r, const replica_config_t *cfg)
{
    struct raft_configuration conf;
    int rv;

    if (cfg->join) /* a new member: it waits for the leader to add it */
        return 0;
    raft_configuration_init(&conf);
    rv = raft_configuration_add(&conf, cfg->id, cfg->raft_address, RAFT_VOTER);
    for (unsigned i = 0; rv == 0 && i < cfg->n_peers; i++)
        rv = raft_configuration_add(&conf, cfg->peers[i].id, cfg->peers[i].raft_address,
                                    RAFT_VOTER);
    if (rv == 0)
        rv = raft_bootstrap(&r->raft, &conf);
    raft_configuration_close(&conf);
    return rv == RAFT_CANTBOOTSTRAP ? 0 : rv; /* state on disk: resume */
}

static void init_handles(replica_t *r)
{
    uv_check_init(r->loop, &r->check);
    uv_idle_init(r->loop, &r->idle);
    uv_timer_init(r->loop, &r->tick_timer);
    uv_timer_init(r->loop, &r->due_timer);
    r->check.data = r->idle.data = r->tick_timer.data = r->due_timer.data = r;
    uv_check_start(&r->check, on_check);
}

int replica_start(replica_t **out, uv_loop_t *loop, fsm_t *fsm,
                  const replica_config_t *cfg, char *errmsg, size_t errlen)
{
    int rv = mkdir_p(cfg->dir);
    if (rv != 0) {
        snprintf(errmsg, errlen, "raft directory %s: %s", cfg->dir, strerror(-rv));
        return MQHUB_EINTERNAL;
    }
    replica_t *r = replica_alloc(loop, fsm, cfg);
    if (!r) {
        snprintf(errmsg, errlen, "out of memory");
        return MQHUB_EINTERNAL;
    }
    r->takes_peers = cfg->cluster_secret || cfg->allow_unauthenticated_peers;
    char why[256];
    rv = peer_transport_init(&r->transport, loop, cfg->cluster_secret,
                             cfg->allow_unauthenticated_peers, &cfg->peer_tls, why, sizeof why);
    if (rv != 0) {
        snprintf(errmsg, errlen, "raft transport: %s", why);
        replica_free(r);
        return rv;
    }
    rv = raft_uv_init(&r->io, loop, cfg->dir, &r->transport);
    if (rv != 0) {
        snprintf(errmsg, errlen, "raft storage %s: %s", cfg->dir, r->io.errmsg);
        peer_transport_free(&r->transport);
        replica_free(r);
        return MQHUB_EINTERNAL;
    }
    raft_uv_set_segment_size(&r->io, SEGMENT_SIZE);
    /* Its recovery renames a damaged segment away, and every later one with
     * it, without a word: damage is logcheck.c's, before raft reads. */
    raft_uv_set_auto_recovery(&r->io, false);
    snapshot_io_wrap(&r->snapio, &r->io, &r->wrap, fsm_store(fsm), loop);
    rv = raft_init(&r->raft, &r->snapio.io, &r->snapio.fsm, cfg->id,
                   cfg->raft_address);
    if (rv != 0) {
        snprintf(errmsg, errlen, "raft init: %s", raft_errmsg(&r->raft));
        raft_uv_close(&r->io);
        peer_transport_free(&r->transport);
        replica_free(r);
        return MQHUB_EINTERNAL;
    }
    r->raft.data = r;
    init_handles(r);
    raft_set_heartbeat_timeout(&r->raft, HEARTBEAT_MS);
    raft_set_election_timeout(&r->raft, ELECTION_MS);
    raft_set_pre_vote(&r->raft, true);
    snapshot_io_limit_log(&r->snapio, &r->raft,
                          cfg->snapshot_threshold ? cfg->snapshot_threshold
                                                  : DEFAULT_SNAPSHOT_THRESHOLD,
                          cfg->snapshot_log_bytes ? cfg->snapshot_log_bytes
                                                  : DEFAULT_SNAPSHOT_LOG_BYTES,
                          cfg->snapshot_growth < 0 ? DEFAULT_SNAPSHOT_GROWTH
                                                   : (unsigned)cfg->snapshot_growth);
    raft_set_snapshot_trailing(&r->raft, cfg->snapshot_trailing ? cfg->snapshot_trailing
                                                                : DEFAULT_SNAPSHOT_TRAILING);
    rv = bootstrap(r, cfg);
    if (rv == 0)
        rv = raft_start(&r->raft);
    if (rv != 0) {
        /* raft owns I/O now: the memory goes in the close callback. */
        snprintf(errmsg, errlen, "raft start (%s, %s): %s", cfg->raft_address, cfg->dir,
                 raft_errmsg(&r->raft)[0] ? raft_errmsg(&r->raft) : raft_strerror(rv));
        replica_stop(r, NULL, NULL);
        return MQHUB_EINTERNAL;
    }
    log_info("replica", "node %llu raft on %s, data in %s", (unsigned long long)cfg->id,
             cfg->raft_address, cfg->dir);
    *out = r;
    return 0;
}
