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
 *   - ticks: while leader, an internal {"op":"tick"} every second and at the
 *     fsm's next due time, so delays and lock expiries take effect on time.
 * on_check() also notes, for replica_stats(), when the newest snapshot
 * changed and how often the known leader did (track_snapshot_and_leader).
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
    waiter_t waiters[];
} batch_t;

typedef struct batch_list {
    batch_t *head, *tail;
} batch_list_t;

typedef struct peer_copy {
    uint64_t id;
    char *client_address;
} peer_copy_t;

/* One membership change or leadership transfer in progress. */
typedef struct change {
    struct raft_change req;
    struct raft_transfer treq;
    replica_t *r;
    uint64_t id;
    char *client_address;
    replica_change_cb cb;
    void *arg;
} change_t;

struct replica {
    uv_loop_t *loop;
    fsm_t *fsm;
    uint64_t id;
    char *client_address;
    char *dir;
    peer_copy_t *peers;     /* client addresses of the other nodes */
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
    uint64_t seen_leader, leader_changes; /* track_snapshot_and_leader() */
    raft_index seen_snap;       /* snapio.snap_index at seen_snap_ms (uv_now) */
    uint64_t seen_snap_ms;
    bool leader;
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
    int rv = r->inner->apply(r->inner, buf, result);
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
    if (delay > TICK_INTERVAL_MS)
        delay = TICK_INTERVAL_MS; /* the periodic tick covers it */
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
        uv_timer_start(&r->tick_timer, on_tick_timer, TICK_INTERVAL_MS,
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

static void on_check(uv_check_t *h)
{
    replica_t *r = h->data;
    track_leadership(r);
    track_snapshot_and_leader(r);
    flush(r);
    drain_failed(r);
}

/* ---- client addresses of the members ----------------------------------- */

/* Every node must name the leader's client address in NOT_LEADER, also for
 * members added after the config was written. The leader replicates what it
 * knows (id -> client address) in a meta entry (META_MAGIC + msgpack map)
 * when it takes office and after each membership change; wrap_apply consumes
 * it before the fsm sees it, so the fsm state and digest are untouched. Each
 * node keeps the table in <dir>/clients, one "id address" line per node, so
 * a restart (whose snapshot may cover the meta entry) remembers it. */
#define META_MAGIC "MQHUBCL1"
#define META_MAGIC_LEN 8

static void save_clients(replica_t *r)
{
    char path[4200], tmp[4210];
    snprintf(path, sizeof path, "%s/clients", r->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    for (unsigned i = 0; i < r->n_peers; i++)
        if (r->peers[i].client_address)
            fprintf(f, "%llu %s\n", (unsigned long long)r->peers[i].id,
                    r->peers[i].client_address);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        log_warn("replica", "cannot save %s: %s", path, strerror(errno));
}

/* Remember @client for node @id; @persist writes the file when it changed. */
static void set_client(replica_t *r, uint64_t id, const char *client, bool persist)
{
    unsigned i = 0;
    if (id == r->id || !client)
        return;
    while (i < r->n_peers && r->peers[i].id != id)
        i++;
    if (i < r->n_peers && r->peers[i].client_address &&
        strcmp(r->peers[i].client_address, client) == 0)
        return;
    char *copy = strdup(client);
    if (!copy)
        return;
    if (i == r->n_peers) {
        peer_copy_t *p = realloc(r->peers, (r->n_peers + 1) * sizeof *p);
        if (!p) {
            free(copy);
            return;
        }
        r->peers = p;
        r->peers[r->n_peers++] = (peer_copy_t){id, NULL};
    }
    free(r->peers[i].client_address);
    r->peers[i].client_address = copy;
    if (persist)
        save_clients(r);
}

static void load_clients(replica_t *r)
{
    char path[4200], addr[256];
    unsigned long long id;
    snprintf(path, sizeof path, "%s/clients", r->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fscanf(f, "%llu %255s", &id, addr) == 2)
        set_client(r, id, addr, false);
    fclose(f);
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
            msgpack_object *k = &u.data.via.map.ptr[i].key, *v = &u.data.via.map.ptr[i].val;
            char addr[256];
            if (k->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->type != MSGPACK_OBJECT_STR ||
                v->via.str.size >= sizeof addr)
                continue;
            memcpy(addr, v->via.str.ptr, v->via.str.size);
            addr[v->via.str.size] = '\0';
            set_client(r, k->via.u64, addr, true);
        }
    }
    msgpack_unpacked_destroy(&u);
    return true;
}

static void announce_done(struct raft_apply *req, int status, void *result)
{
    free(req);
}

/* Propose the table (ourselves included) as one meta entry. */
static void announce(replica_t *r)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned n = r->client_address ? 1 : 0;
    struct raft_apply *req = malloc(sizeof *req);
    struct raft_buffer entry;

    for (unsigned i = 0; i < r->n_peers; i++)
        n += r->peers[i].client_address != NULL;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_sbuffer_write(&sb, META_MAGIC, META_MAGIC_LEN);
    msgpack_pack_map(&pk, n);
    if (r->client_address) {
        msgpack_pack_uint64(&pk, r->id);
        msgpack_pack_str_with_body(&pk, r->client_address, strlen(r->client_address));
    }
    for (unsigned i = 0; i < r->n_peers; i++) {
        const char *a = r->peers[i].client_address;
        if (a) {
            msgpack_pack_uint64(&pk, r->peers[i].id);
            msgpack_pack_str_with_body(&pk, a, strlen(a));
        }
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
    free(c->client_address);
    free(c);
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
        set_client(c->r, c->id, c->client_address, true);
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
                const char *client_address, replica_change_cb cb, void *arg)
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
    change_t *c = change_new(r, id, cb, arg);
    if (!c || (client_address && !(c->client_address = strdup(client_address)))) {
        if (c)
            free(c);
        return MQHUB_EUNAVAILABLE;
    }
    if (role == RAFT_VOTER) { /* already done: say so again */
        set_client(r, id, client_address, true);
        announce(r);
        free(c->client_address);
        free(c);
        return MQHUB_EEXISTS;
    }
    if (role >= 0)
        rv = raft_assign(&r->raft, &c->req, id, RAFT_VOTER, assigned);
    else
        rv = raft_add(&r->raft, &c->req, id, raft_address, added);
    if (rv != 0) {
        free(c->client_address);
        free(c);
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

int replica_remove(replica_t *r, uint64_t id, replica_change_cb cb, void *arg)
{
    if (r->stopping)
        return MQHUB_EUNAVAILABLE;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return MQHUB_ENOT_LEADER;
    if (member_role(r, id, NULL) < 0)
        return MQHUB_ENOT_FOUND;
    change_t *c = change_new(r, id, cb, arg);
    if (!c)
        return MQHUB_EUNAVAILABLE;
    int rv = raft_remove(&r->raft, &c->req, id, removed);
    if (rv != 0) {
        free(c);
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

const char *replica_leader_address(replica_t *r)
{
    raft_id id = 0;
    const char *addr = NULL;

    if (r->stopping)
        return NULL;
    if (raft_state(&r->raft) == RAFT_LEADER)
        return r->client_address;
    raft_leader(&r->raft, &id, &addr);
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
    };
}

/* ---- start and stop ---------------------------------------------------- */

static void replica_free(replica_t *r)
{
    for (unsigned i = 0; i < r->n_peers; i++)
        free(r->peers[i].client_address);
    free(r->peers);
    free(r->client_address);
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
    r->dir = strdup(cfg->dir);
    if (!r->dir) {
        replica_free(r);
        return NULL;
    }
    load_clients(r); /* learned before; the config below wins */
    for (unsigned i = 0; i < cfg->n_peers; i++)
        if (cfg->peers[i].client_address)
            set_client(r, cfg->peers[i].id, cfg->peers[i].client_address, false);
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
    unsigned threshold = cfg->snapshot_threshold ? cfg->snapshot_threshold
                                                 : DEFAULT_SNAPSHOT_THRESHOLD;
    raft_set_snapshot_threshold(&r->raft, threshold);
    snapshot_io_limit_log(&r->snapio, &r->raft, threshold,
                          cfg->snapshot_log_bytes ? cfg->snapshot_log_bytes
                                                  : DEFAULT_SNAPSHOT_LOG_BYTES);
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
