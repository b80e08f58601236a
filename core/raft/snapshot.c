/* snapshot.c: raft snapshots without stalling the loop.
 *
 * raft 0.22.1 (legacy path) calls the fsm's snapshot and snapshot_async back
 * to back on the loop thread, then io->snapshot_put, and keeps applying
 * entries meanwhile. Copying a large Kyoto Cabinet state there stalls the
 * node for seconds. Instead:
 *   1. the wrapper's raft_fsm (w->fsm, decorating the one raft would see)
 *      answers raft's snapshot callback (fsm_snapshot): it freezes the store
 *      (store_freeze: writes go to an in-memory overlay) and hands raft one
 *      small placeholder buffer: PLACEHOLDER_MAGIC + the store handle.
 *   2. snapshot_io, a struct raft_io wrapped around raft_uv, passes every
 *      member through except snapshot_put: given a placeholder it dumps the
 *      frozen file DB in a uv_queue_work thread (store_dump), then calls the
 *      real snapshot_put with those chunks; in its callback it unfreezes the
 *      store, frees the chunks and calls raft's callback. A timer then drains
 *      the overlay into the file DB in slices of DRAIN_SLICE records, one
 *      slice per DRAIN_EVERY_MS, so the loop keeps serving meanwhile.
 *      While the dump runs the same timer measures the loop's lag, logged
 *      with the snapshot's figures.
 *      Any other snapshot_put (installing a leader's snapshot) passes through.
 *   3. fsm_snapshot_finalize() frees the placeholder
 *      and thaws the store if a failed put left it frozen.
 *
 * Damage. The dump ends with a checksum trailer (trailer_add: CRC-32 of
 * everything before it, then TRAILER_MAGIC) that raft_uv writes, loads and
 * sends with the rest; the wrapper's restore checks and strips it before the
 * state machine sees the stream (a snapshot without one, written before the
 * trailer existed, is passed on as it is), and core/raft/logcheck.c checks
 * the files before raft loads them. So that a damaged newest snapshot can
 * be replaced by the previous one, our puts ask raft_uv to keep the log back
 * to the previous snapshot (keep_from), not just the trailing entries.
 *
 * Sends. raft 0.22 (legacy.c) loads the whole snapshot file through
 * io->snapshot_get for every InstallSnapshot it sends and frees it after the
 * send, and it sends again whenever the installing follower rejects a
 * heartbeat (every 100 ms): unwrapped, the leader held many copies at once.
 * Here io_snapshot_get loads through raft_uv at most one at a time into
 * w->sent, shared by every send, and hands raft a placeholder (SENT_MAGIC +
 * the copy's generation) with its own copy of the metadata; io_send swaps
 * the placeholder for the shared data. A send to a follower that already has
 * one in flight, or that was sent the same snapshot less than
 * SNAPSHOT_RESEND_MS ago, is refused at once (raft frees its placeholder and
 * retries on a later heartbeat or after its install timeout). The copy is
 * freed once no send uses it and the resend window is over. A get waits for
 * a load only as old as itself (put_epoch), because raft asserts that the
 * snapshot it gets is at least as recent as the one it asked for.
 *
 * Installs. raft 0.22.1 crashes when an InstallSnapshot arrives while it
 * takes a snapshot: legacy.c parks the install, and when the snapshot is
 * written (takeSnapshotCb) clears the parked pointer before reading it and
 * starts a put of NULL. With the deferred put that window lasts the whole
 * dump, and a follower that lags past the leader's trailing entries (a
 * node catching up, under load) is sent an install in it. So io_recv holds
 * an install that arrives while our put is in flight (a newer one replaces
 * it) and put_finish hands it to raft after raft's callback: raft then
 * installs it as if it had just arrived. And raft 0.22.1 leaks an install
 * that arrives while it persists another (it ignores it unfreed): to_raft
 * frees it.
 *
 * Start at snapshot_io_wrap(), io_snapshot_put() and io_send(). To wrap
 * another raft_io member, replace its pass-through in snapshot_io_wrap().
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32.h"
#include "log.h"
#include "replica.h"

#define PLACEHOLDER_MAGIC "MQSNAPPH"
#define PLACEHOLDER_LEN 16
#define LAG_PROBE_MS 10
#define DRAIN_EVERY_MS 1
#define DRAIN_SLICE 1000
#define SENT_MAGIC "MQSNAPSD"
#define SNAPSHOT_RESEND_MS 30000 /* raft's own install_snapshot_timeout */
#define TRAILER_MAGIC "MQSNCRC1" /* the last 8 bytes of a snapshot with a checksum */

/* One deferred snapshot_put, from the placeholder to raft's callback. */
struct snapshot_put {
    snapshot_io_t *w;
    store_t *st;
    uv_work_t work;
    unsigned trailing;
    struct raft_io_snapshot_put *req; /* raft's request */
    raft_io_snapshot_put_cb cb;       /* raft's callback */
    struct raft_io_snapshot_put inner_req;
    struct raft_snapshot snap;        /* raft's metadata, our chunks */
    int status;
    bool dumping;                     /* in the thread pool */
    uint64_t t0, t_dumped;            /* uv_hrtime() */
};

/* The loaded snapshot InstallSnapshot sends share. */
struct snapshot_sent {
    struct raft_snapshot *snap; /* raft_uv's load: metadata + one buffer */
    uint64_t gen, epoch;        /* placeholder id; put_epoch at load start */
    unsigned refs;              /* sends in flight */
};

/* A raft snapshot_get waiting for a load (or the timer). */
struct snapshot_get {
    struct raft_io_snapshot_get *req;
    raft_io_snapshot_get_cb cb;
    uint64_t epoch;             /* put_epoch when asked */
    struct snapshot_get *next;
};

/* One InstallSnapshot in flight through raft_uv. */
struct snapshot_send {
    snapshot_io_t *w;
    struct snapshot_sent *sent;
    snapshot_peer_t *peer;
    struct raft_io_send inner_req;
    struct raft_message msg;    /* raft's message with the shared data */
    struct raft_io_send *req;
    raft_io_send_cb cb;
    uint64_t t0;                /* uv_hrtime() */
};

/* A snapshot_put passed through (installing a leader's snapshot). */
struct snapshot_put_pass {
    snapshot_io_t *w;
    raft_index index;
    struct raft_io_snapshot_put inner_req;
    struct raft_io_snapshot_put *req;
    raft_io_snapshot_put_cb cb;
};

/* ---- the placeholder (the decorated raft_fsm) ---- */

static store_t *placeholder_store(const struct raft_buffer *bufs, unsigned n)
{
    store_t *st;
    if (n != 1 || bufs[0].len != PLACEHOLDER_LEN ||
        memcmp(bufs[0].base, PLACEHOLDER_MAGIC, 8) != 0)
        return NULL;
    memcpy(&st, (char *)bufs[0].base + 8, sizeof st);
    return st;
}

/* raft_fsm snapshot: freeze the store and hand raft the placeholder. */
static int fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    snapshot_io_t *w = rf->data;
    struct raft_buffer *b = raft_malloc(sizeof *b);
    char *p = raft_malloc(PLACEHOLDER_LEN);
    if (!b || !p || store_freeze(w->st) != 0) {
        raft_free(b);
        raft_free(p);
        return RAFT_NOMEM;
    }
    memset(p, 0, PLACEHOLDER_LEN);
    memcpy(p, PLACEHOLDER_MAGIC, 8);
    memcpy(p + 8, &w->st, sizeof w->st);
    b->base = p;
    b->len = PLACEHOLDER_LEN;
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

static void free_bufs(struct raft_buffer *bufs, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        raft_free(bufs[i].base);
    raft_free(bufs);
}

/* raft_fsm snapshot_finalize: free the placeholder (thaw the store if a
 * failed put left it frozen). */
static int fsm_snapshot_finalize(struct raft_fsm *rf, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
    store_t *st = placeholder_store(*bufs, *n_bufs);
    if (st && store_frozen(st))
        store_thaw(st);
    free_bufs(*bufs, *n_bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

/* ---- the byte budget of raft's in-memory log ---- */

/* Raft's threshold between our decisions: the configured one, or never
 * when the growth rule decides. */
static unsigned raft_threshold(const snapshot_io_t *w)
{
    return w->growth ? UINT_MAX : w->threshold;
}

void snapshot_io_limit_log(snapshot_io_t *w, struct raft *raft, unsigned threshold,
                           uint64_t budget, unsigned growth)
{
    w->raft = raft;
    w->threshold = threshold;
    w->log_budget = budget;
    w->growth = growth;
    raft_set_snapshot_threshold(raft, raft_threshold(w));
}

/* Whether the entries since the last snapshot call for the next one. */
static bool snapshot_due(const snapshot_io_t *w)
{
    if (w->log_bytes >= w->log_budget)
        return true;
    return w->growth && w->log_entries >= w->threshold &&
           w->log_bytes >= w->snap_bytes / 100 * w->growth;
}

/* One more entry applied: once a snapshot is due, raft's threshold becomes
 * the entries applied since the last snapshot, so raft takes one after this
 * apply (its own count, which also holds entries that are not commands, is
 * never below ours). */
static void log_count(snapshot_io_t *w, size_t len)
{
    w->log_bytes += len;
    w->log_entries++;
    if (w->raft == NULL || w->lowered || !snapshot_due(w))
        return;
    raft_set_snapshot_threshold(w->raft, (unsigned)(w->log_entries < w->threshold
                                                        ? w->log_entries : w->threshold));
    w->lowered = true;
}

/* A snapshot completed (taken or installed): count afresh, and give raft
 * back its threshold. */
static void log_reset(snapshot_io_t *w)
{
    w->log_bytes = 0;
    w->log_entries = 0;
    if (w->raft != NULL && w->lowered)
        raft_set_snapshot_threshold(w->raft, raft_threshold(w));
    w->lowered = false;
}

static int fsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
    snapshot_io_t *w = rf->data;
    log_count(w, buf->len);
    return w->inner_fsm->apply(w->inner_fsm, buf, result);
}

/* ---- the checksum trailer ---- */

bool snapshot_trailer_parse(const unsigned char *tail, uint32_t *crc)
{
    if (memcmp(tail + 8, TRAILER_MAGIC, 8) != 0)
        return false;
    *crc = (uint32_t)tail[0] << 24 | (uint32_t)tail[1] << 16 | (uint32_t)tail[2] << 8 | tail[3];
    return true;
}

/* Append the trailer to a dump: one more chunk. Worker thread. */
static int trailer_add(struct raft_buffer **bufs, unsigned *n)
{
    uint32_t crc = 0;
    for (unsigned i = 0; i < *n; i++)
        crc = crc32_raft(crc, (*bufs)[i].base, (*bufs)[i].len);
    unsigned char *t = raft_malloc(SNAPSHOT_TRAILER_LEN);
    struct raft_buffer *more = t ? raft_realloc(*bufs, (*n + 1) * sizeof **bufs) : NULL;
    if (!more) {
        raft_free(t);
        return RAFT_NOMEM;
    }
    t[0] = (unsigned char)(crc >> 24);
    t[1] = (unsigned char)(crc >> 16);
    t[2] = (unsigned char)(crc >> 8);
    t[3] = (unsigned char)crc;
    memset(t + 4, 0, 4);
    memcpy(t + 8, TRAILER_MAGIC, 8);
    more[*n] = (struct raft_buffer){.base = t, .len = SNAPSHOT_TRAILER_LEN};
    *bufs = more;
    (*n)++;
    return 0;
}

/* Check and strip the trailer; the state machine restores the rest. A
 * failed restore leaves @buf to raft, which frees it. */
static int fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    snapshot_io_t *w = rf->data;
    unsigned char *end = (unsigned char *)buf->base + buf->len;
    uint32_t crc;

    if (buf->len >= SNAPSHOT_TRAILER_LEN &&
        snapshot_trailer_parse(end - SNAPSHOT_TRAILER_LEN, &crc)) {
        if (crc32_raft(0, buf->base, buf->len - SNAPSHOT_TRAILER_LEN) != crc) {
            log_error("snapshot", "restore: the snapshot (%zu bytes) fails its checksum",
                      buf->len);
            return RAFT_CORRUPT;
        }
        buf->len -= SNAPSHOT_TRAILER_LEN;
    }
    w->snap_bytes = buf->len; /* loaded at start, or installed */
    return w->inner_fsm->restore(w->inner_fsm, buf);
}

/* ---- the deferred put (io side) ---- */

static void dump_work(uv_work_t *work)
{
    struct snapshot_put *p = work->data;
    p->status = store_dump(p->st, &p->snap.bufs, &p->snap.n_bufs) == 0 ? 0 : RAFT_NOMEM;
    if (p->status == 0)
        p->status = trailer_add(&p->snap.bufs, &p->snap.n_bufs);
    p->t_dumped = uv_hrtime();
}

/* The timer: during a dump, probe the loop's lag; afterwards, drain. */
static void on_timer(uv_timer_t *t)
{
    snapshot_io_t *w = t->data;
    uint64_t now = uv_hrtime();
    if (w->put) {
        uint64_t late = now - w->lag_last;
        late = late > LAG_PROBE_MS * 1000000ull ? late - LAG_PROBE_MS * 1000000ull : 0;
        w->lag_max = late > w->lag_max ? late : w->lag_max;
        w->lag_last = now;
        return;
    }
    int64_t left = w->draining ? store_drain(w->draining, DRAIN_SLICE) : 0;
    if (left > 0)
        return;
    if (left < 0)
        log_error("snapshot", "draining the overlay into the store failed");
    else if (w->draining)
        log_debug("snapshot", "overlay drained in %.0f ms",
                  (double)(now - w->drain_t0) / 1e6);
    w->draining = NULL;
    uv_timer_stop(t);
}

/* ---- installs held during our put ("Installs" above) ---- */

/* Free what an install message owns, as raft would. */
static void install_free(struct raft_message *m)
{
    raft_configuration_close(&m->install_snapshot.conf);
    raft_free(m->install_snapshot.data.base);
}

static void held_free(snapshot_io_t *w)
{
    if (!w->holding)
        return;
    install_free(&w->held);
    free(w->held_address);
    w->held_address = NULL;
    w->holding = false;
}

/* Hand @m to raft's receive callback. raft 0.22.1 ignores an install that
 * arrives while it persists another one (replicationInstallSnapshot: the
 * leader sends it again) and never frees it — the whole snapshot each
 * time: freed here then. It does free one of an older term (it answers
 * that) and any while closing. */
static void to_raft(snapshot_io_t *w, struct raft_io *inner, struct raft_message *m)
{
    struct raft *r = inner->data;
    if (m->type != RAFT_INSTALL_SNAPSHOT || !r->snapshot.installing || r->legacy.closing ||
        m->install_snapshot.term < r->current_term) {
        w->recv(inner, m);
        return;
    }
    struct raft_message ignored = *m; /* what it owns, whatever raft does to *m */
    w->recv(inner, m);
    install_free(&ignored);
}

/* raft_uv's receive callback: everything goes to raft's, but an install
 * while our put is in flight, which is held. */
static void io_recv(struct raft_io *inner, struct raft_message *m)
{
    struct raft *r = inner->data;
    snapshot_io_t *w = r->io->impl;
    if (m->type != RAFT_INSTALL_SNAPSHOT || !w->put || w->close_cb) {
        to_raft(w, inner, m);
        return;
    }
    char *address = strdup(m->server_address ? m->server_address : "");
    held_free(w);
    if (!address) { /* dropped: the leader sends it again */
        install_free(m);
        return;
    }
    w->held = *m;
    w->held.server_address = w->held_address = address;
    w->holding = true;
    log_info("snapshot", "install of the snapshot at %llu from node %llu held until this "
             "node's own snapshot is written", (unsigned long long)m->install_snapshot.last_index,
             (unsigned long long)m->server_id);
}

/* After our put: the held install to raft (it owns the message's data). */
static void held_deliver(snapshot_io_t *w)
{
    if (!w->holding || w->put)
        return;
    if (w->close_cb) {
        held_free(w);
        return;
    }
    struct raft_message m = w->held;
    char *address = w->held_address;
    w->holding = false;
    w->held_address = NULL;
    to_raft(w, w->inner, &m);
    free(address);
}

/* Unfreeze (the drain follows on the timer), free our chunks, hand @status
 * to raft, then any install held meanwhile. */
static void put_finish(struct snapshot_put *p, int status)
{
    snapshot_io_t *w = p->w;
    uint64_t t = uv_hrtime();
    size_t bytes = 0;
    store_unfreeze(p->st);
    if (p->snap.bufs && status == 0) {
        for (unsigned i = 0; i < p->snap.n_bufs; i++)
            bytes += p->snap.bufs[i].len;
        log_info("snapshot", "index %llu: %zu bytes, dump %.0f ms (worker), write %.0f ms, "
                 "loop lag max %.1f ms", (unsigned long long)p->snap.index, bytes,
                 (double)(p->t_dumped - p->t0) / 1e6, (double)(t - p->t_dumped) / 1e6,
                 (double)w->lag_max / 1e6);
    }
    if (p->snap.bufs)
        free_bufs(p->snap.bufs, p->snap.n_bufs);
    w->put = NULL;
    if (status == 0) {
        w->put_epoch++;
        w->snap_index = p->snap.index;
        w->snap_bytes = bytes;
        log_reset(w);
    }
    if (w->close_cb) {
        store_thaw(p->st); /* closing: no more loop turns to drain in */
    } else {
        w->draining = p->st;
        w->drain_t0 = t;
        uv_timer_start(&w->timer, on_timer, DRAIN_EVERY_MS, DRAIN_EVERY_MS);
    }
    p->cb(p->req, status);
    free(p);
    held_deliver(w);
}

static void inner_put_done(struct raft_io_snapshot_put *req, int status)
{
    put_finish(req->data, status);
}

static void maybe_close_inner(snapshot_io_t *w);

/* The trailing entries raft_uv keeps after the snapshot at @index: raft's,
 * or more, so that the log reaches back to the previous snapshot (the one
 * raft_uv keeps besides the new one) and can replace a damaged newest one.
 * This keeps up to threshold more entries on disk and loads them at start. */
static unsigned keep_from(const snapshot_io_t *w, raft_index index, unsigned trailing)
{
    if (w->snap_index == 0 || index <= w->snap_index || index - w->snap_index <= trailing)
        return trailing;
    return index - w->snap_index > UINT_MAX ? UINT_MAX : (unsigned)(index - w->snap_index);
}

static void dump_done(uv_work_t *work, int uv_status)
{
    struct snapshot_put *p = work->data;
    snapshot_io_t *w = p->w;
    p->dumping = false;
    if (w->close_cb) { /* raft is closing: cancel, then let the close go on */
        put_finish(p, RAFT_CANCELED);
        maybe_close_inner(w);
        return;
    }
    if (p->status != 0) {
        log_error("snapshot", "dump for the snapshot at %llu: out of memory",
                  (unsigned long long)p->snap.index);
        put_finish(p, p->status);
        return;
    }
    p->inner_req.data = p;
    int rv = w->inner->snapshot_put(w->inner, keep_from(w, p->snap.index, p->trailing),
                                    &p->inner_req, &p->snap, inner_put_done);
    if (rv != 0) {
        log_error("snapshot", "put the snapshot at %llu: %s", (unsigned long long)p->snap.index,
                  w->inner->errmsg[0] ? w->inner->errmsg : raft_strerror(rv));
        put_finish(p, rv);
    }
}

static int io_init(struct raft_io *io, raft_id id, const char *address);

static void put_pass_done(struct raft_io_snapshot_put *inner_req, int status)
{
    struct snapshot_put_pass *pp = inner_req->data;
    if (status == 0) {
        pp->w->put_epoch++;
        pp->w->snap_index = pp->index;
        log_reset(pp->w);
    }
    pp->cb(pp->req, status);
    free(pp);
}

/* A put we do not defer, watched only to count put_epoch. */
static int put_pass(snapshot_io_t *w, unsigned trailing, struct raft_io_snapshot_put *req,
                    const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct snapshot_put_pass *pp = malloc(sizeof *pp);
    if (!pp)
        return RAFT_NOMEM;
    *pp = (struct snapshot_put_pass){.w = w, .index = snapshot->index, .req = req, .cb = cb};
    pp->inner_req.data = pp;
    req->cb = cb;
    int rv = w->inner->snapshot_put(w->inner, trailing, &pp->inner_req, snapshot,
                                    put_pass_done);
    if (rv != 0) {
        memcpy(w->io.errmsg, w->inner->errmsg, sizeof w->io.errmsg);
        free(pp);
    }
    return rv;
}

static int io_snapshot_put(struct raft_io *io, unsigned trailing,
                           struct raft_io_snapshot_put *req,
                           const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    store_t *st = placeholder_store(snapshot->bufs, snapshot->n_bufs);
    if (io->init != io_init) { /* called with raft_uv's own io: cannot defer */
        if (st) {
            snprintf(io->errmsg, sizeof io->errmsg, "snapshot placeholder outside snapshot_io");
            return RAFT_INVALID;
        }
        return io->snapshot_put(io, trailing, req, snapshot, cb);
    }
    snapshot_io_t *w = io->impl;
    if (!st)
        return put_pass(w, trailing, req, snapshot, cb);
    struct snapshot_put *p = calloc(1, sizeof *p);
    if (!p)
        return RAFT_NOMEM;
    *p = (struct snapshot_put){.w = w, .st = st, .trailing = trailing, .req = req, .cb = cb,
                               .snap = *snapshot, .t0 = uv_hrtime()};
    p->snap.bufs = NULL;
    p->snap.n_bufs = 0;
    p->work.data = p;
    if (!w->timer_init) {
        uv_timer_init(w->loop, &w->timer);
        w->timer.data = w;
        w->timer_init = true;
    }
    int rv = uv_queue_work(w->loop, &p->work, dump_work, dump_done);
    if (rv != 0) {
        snprintf(io->errmsg, sizeof io->errmsg, "queue the snapshot dump: %s", uv_strerror(rv));
        free(p);
        return RAFT_IOERR;
    }
    req->cb = cb;
    p->dumping = true;
    w->put = p;
    w->lag_max = 0;
    w->lag_last = uv_hrtime();
    uv_timer_start(&w->timer, on_timer, LAG_PROBE_MS, LAG_PROBE_MS);
    return 0;
}

/* ---- sends: one shared copy of the snapshot ---- */

static void snapshot_free(struct raft_snapshot *snap)
{
    raft_configuration_close(&snap->configuration);
    free_bufs(snap->bufs, snap->n_bufs);
    raft_free(snap);
}

static void sent_free(snapshot_io_t *w, struct snapshot_sent *c)
{
    if (w->sent == c)
        w->sent = NULL;
    snapshot_free(c->snap);
    free(c);
}

static bool sent_current(const snapshot_io_t *w)
{
    return w->sent && w->sent->epoch == w->put_epoch;
}

static void on_get_timer(uv_timer_t *t);

/* Free the copy when nothing needs it any more, else arm the timer for the
 * end of the resend window. */
static void sent_check(snapshot_io_t *w)
{
    struct snapshot_sent *c = w->sent;
    if (!c || c->refs || w->gets)
        return;
    uint64_t now = uv_now(w->loop), last = 0;
    for (unsigned i = 0; i < SNAPSHOT_PEERS; i++)
        if (w->peers[i].id && w->peers[i].index == c->snap->index &&
            w->peers[i].done_ms > last)
            last = w->peers[i].done_ms;
    if (w->close_cb || !sent_current(w) || !last || now >= last + SNAPSHOT_RESEND_MS) {
        sent_free(w, c);
        return;
    }
    uv_timer_start(&w->get_timer, on_get_timer, last + SNAPSHOT_RESEND_MS - now, 0);
}

/* What raft gets: the metadata (its own copy: raft frees it) and one
 * placeholder buffer naming the shared copy. NULL when out of memory. */
static struct raft_snapshot *sent_placeholder(const struct snapshot_sent *c)
{
    const struct raft_snapshot *src = c->snap;
    struct raft_snapshot *s = raft_malloc(sizeof *s);
    struct raft_buffer *b = raft_malloc(sizeof *b);
    char *data = raft_malloc(PLACEHOLDER_LEN);
    if (!s || !b || !data)
        goto fail;
    *s = (struct raft_snapshot){.index = src->index, .term = src->term,
                                .configuration_index = src->configuration_index};
    raft_configuration_init(&s->configuration);
    for (unsigned i = 0; i < src->configuration.n; i++) {
        const struct raft_server *sv = &src->configuration.servers[i];
        if (raft_configuration_add(&s->configuration, sv->id, sv->address, sv->role) != 0) {
            raft_configuration_close(&s->configuration);
            goto fail;
        }
    }
    memcpy(data, SENT_MAGIC, 8);
    memcpy(data + 8, &c->gen, sizeof c->gen);
    b->base = data;
    b->len = PLACEHOLDER_LEN;
    s->bufs = b;
    s->n_bufs = 1;
    return s;
fail:
    raft_free(s);
    raft_free(b);
    raft_free(data);
    return NULL;
}

/* Answer the waiting gets that the current copy satisfies (asked no later
 * than its load started), in order. Loop callbacks only: raft sends from
 * its callback at once. */
static void gets_serve(snapshot_io_t *w)
{
    struct snapshot_get *ready = NULL, **tail = &ready, **pp = &w->gets;
    while (*pp) {
        struct snapshot_get *g = *pp;
        if (w->sent && g->epoch <= w->sent->epoch) {
            *pp = g->next;
            g->next = NULL;
            *tail = g;
            tail = &g->next;
        } else {
            pp = &g->next;
        }
    }
    while (ready) {
        struct snapshot_get *g = ready;
        ready = g->next;
        struct raft_snapshot *s = w->sent ? sent_placeholder(w->sent) : NULL;
        g->cb(g->req, s, s ? 0 : RAFT_NOMEM);
        free(g);
    }
}

static void fail_gets(snapshot_io_t *w, int status)
{
    while (w->gets) {
        struct snapshot_get *g = w->gets;
        w->gets = g->next;
        g->cb(g->req, NULL, status);
        free(g);
    }
}

static void load_done(struct raft_io_snapshot_get *req, struct raft_snapshot *snap,
                      int status);

static int load_start(snapshot_io_t *w)
{
    w->load_req.data = w;
    w->load_epoch = w->put_epoch;
    int rv = w->inner->snapshot_get(w->inner, &w->load_req, load_done);
    if (rv != 0)
        memcpy(w->io.errmsg, w->inner->errmsg, sizeof w->io.errmsg);
    else
        w->loading = true;
    return rv;
}

/* Serve what can be served; load again for gets newer than the copy. */
static void gets_run(snapshot_io_t *w)
{
    if (!w->loading && w->gets && sent_current(w))
        gets_serve(w);
    if (!w->loading && w->gets) {
        int rv = load_start(w);
        if (rv != 0) {
            log_error("snapshot", "load the snapshot to send: %s", w->io.errmsg);
            fail_gets(w, rv);
        }
    }
    sent_check(w);
    if (w->close_cb)
        maybe_close_inner(w);
}

static void load_done(struct raft_io_snapshot_get *req, struct raft_snapshot *snap,
                      int status)
{
    snapshot_io_t *w = req->data;
    w->loading = false;
    struct snapshot_sent *c = NULL;
    if (status == 0 && snap->n_bufs == 1)
        c = malloc(sizeof *c);
    if (!c) {
        if (status == 0)
            snapshot_free(snap);
        else if (snap)
            raft_free(snap);
        log_error("snapshot", "load the snapshot to send: %s",
                  status ? raft_strerror(status) : "out of memory");
        fail_gets(w, status ? status : RAFT_NOMEM);
        gets_run(w);
        return;
    }
    if (w->sent && !w->sent->refs)
        sent_free(w, w->sent);
    *c = (struct snapshot_sent){.snap = snap, .gen = ++w->next_gen, .epoch = w->load_epoch};
    w->sent = c; /* an older copy still sending is freed by its last send */
    log_debug("snapshot", "loaded the snapshot at %llu to send: %zu bytes",
              (unsigned long long)snap->index, snap->bufs[0].len);
    gets_serve(w);
    gets_run(w);
}

static void on_get_timer(uv_timer_t *t)
{
    gets_run(t->data);
}

static void get_timer_closed(uv_handle_t *h)
{
    snapshot_io_t *w = h->data;
    w->get_timer_closed = true;
    gets_run(w);
}

static int io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                           raft_io_snapshot_get_cb cb)
{
    if (io->init != io_init)
        return io->snapshot_get(io, req, cb);
    snapshot_io_t *w = io->impl;
    if (w->close_cb) {
        snprintf(io->errmsg, sizeof io->errmsg, "closing");
        return RAFT_CANCELED;
    }
    struct snapshot_get *g = malloc(sizeof *g);
    if (!g)
        return RAFT_NOMEM;
    *g = (struct snapshot_get){.req = req, .cb = cb, .epoch = w->put_epoch};
    req->cb = cb;
    if (!w->get_timer_init) {
        uv_timer_init(w->loop, &w->get_timer);
        w->get_timer.data = w;
        w->get_timer_init = true;
    }
    if (!w->loading && !sent_current(w)) {
        int rv = load_start(w);
        if (rv != 0) {
            free(g);
            return rv;
        }
    } else if (!w->loading) {
        uv_timer_start(&w->get_timer, on_get_timer, 0, 0);
    }
    struct snapshot_get **pp = &w->gets;
    while (*pp)
        pp = &(*pp)->next;
    *pp = g;
    return 0;
}

/* The generation a placeholder from sent_placeholder() names, or 0. */
static uint64_t sent_gen(const struct raft_buffer *b)
{
    uint64_t gen;
    if (b->len != PLACEHOLDER_LEN || memcmp(b->base, SENT_MAGIC, 8) != 0)
        return 0;
    memcpy(&gen, (const char *)b->base + 8, sizeof gen);
    return gen;
}

/* The follower's record; a free or the oldest idle slot when it has none;
 * NULL when every slot is in flight. */
static snapshot_peer_t *peer_slot(snapshot_io_t *w, uint64_t id)
{
    snapshot_peer_t *free_slot = NULL;
    for (unsigned i = 0; i < SNAPSHOT_PEERS; i++) {
        snapshot_peer_t *p = &w->peers[i];
        if (p->id == id)
            return p;
        if (!p->in_flight && (!free_slot || p->done_ms < free_slot->done_ms))
            free_slot = p;
    }
    if (free_slot)
        *free_slot = (snapshot_peer_t){.id = id};
    return free_slot;
}

static void send_done(struct raft_io_send *inner_req, int status)
{
    struct snapshot_send *p = inner_req->data;
    snapshot_io_t *w = p->w;
    p->peer->in_flight = false;
    if (status == 0) {
        p->peer->index = p->msg.install_snapshot.last_index;
        p->peer->done_ms = uv_now(w->loop);
    }
    log_info("snapshot", "sent the snapshot at %llu to node %llu: %zu bytes in %.0f ms%s%s",
             (unsigned long long)p->msg.install_snapshot.last_index,
             (unsigned long long)p->msg.server_id, p->msg.install_snapshot.data.len,
             (double)(uv_hrtime() - p->t0) / 1e6, status ? ", failed: " : "",
             status ? raft_strerror(status) : "");
    if (--p->sent->refs == 0 && p->sent != w->sent)
        sent_free(w, p->sent);
    struct raft_io_send *req = p->req;
    raft_io_send_cb cb = p->cb;
    free(p);
    sent_check(w);
    cb(req, status);
}

/* An InstallSnapshot carrying our placeholder: send the shared copy, unless
 * this follower has one in flight or got this snapshot recently. A refusal
 * is a plain failure: raft frees its placeholder and tries again later. */
static int send_snapshot(snapshot_io_t *w, struct raft_io_send *req,
                         const struct raft_message *m, raft_io_send_cb cb)
{
    struct raft_io *io = &w->io;
    struct snapshot_sent *c = w->sent;
    if (w->close_cb || !c || c->gen != sent_gen(&m->install_snapshot.data)) {
        snprintf(io->errmsg, sizeof io->errmsg, "snapshot send cancelled");
        return RAFT_CANCELED;
    }
    snapshot_peer_t *peer = peer_slot(w, m->server_id);
    uint64_t now = uv_now(w->loop);
    if (!peer || peer->in_flight ||
        (peer->index == c->snap->index && now < peer->done_ms + SNAPSHOT_RESEND_MS)) {
        snprintf(io->errmsg, sizeof io->errmsg, "snapshot at %llu to node %llu: %s",
                 (unsigned long long)c->snap->index, (unsigned long long)m->server_id,
                 peer && peer->in_flight ? "a send is in flight" : "sent recently");
        return RAFT_BUSY;
    }
    struct snapshot_send *p = malloc(sizeof *p);
    if (!p)
        return RAFT_NOMEM;
    *p = (struct snapshot_send){.w = w, .sent = c, .peer = peer, .msg = *m, .req = req,
                                .cb = cb, .t0 = uv_hrtime()};
    p->msg.install_snapshot.data = c->snap->bufs[0];
    p->inner_req.data = p;
    int rv = w->inner->send(w->inner, &p->inner_req, &p->msg, send_done);
    if (rv != 0) {
        memcpy(io->errmsg, w->inner->errmsg, sizeof io->errmsg);
        free(p);
        return rv;
    }
    req->cb = cb;
    c->refs++;
    peer->in_flight = true;
    return 0;
}

static int io_send(struct raft_io *io, struct raft_io_send *req,
                   const struct raft_message *message, raft_io_send_cb cb)
{
    bool placeholder = message->type == RAFT_INSTALL_SNAPSHOT &&
                       sent_gen(&message->install_snapshot.data) != 0;
    if (placeholder && io->init == io_init)
        return send_snapshot(io->impl, req, message, cb);
    if (placeholder) { /* raft_uv's own io: no shared copy to send */
        snprintf(io->errmsg, sizeof io->errmsg, "snapshot placeholder outside snapshot_io");
        return RAFT_CANCELED;
    }
    struct raft_io *in = io->init == io_init ? ((snapshot_io_t *)io->impl)->inner : io;
    int rv = in->send(in, req, message, cb);
    if (rv != 0 && in != io)
        memcpy(io->errmsg, in->errmsg, sizeof io->errmsg);
    return rv;
}

/* ---- pass-through members ---- */

/* raft sometimes calls a member of its io (ours) with the io pointer a raft_uv
 * callback handed it (the inner one): INNER() accepts both. */
#define INNER(io) ((io)->init == io_init ? ((snapshot_io_t *)(io)->impl)->inner : (io))

static int pass(struct raft_io *io, int rv)
{
    struct raft_io *in = INNER(io);
    if (in == io)
        return rv;
    if (rv != 0)
        memcpy(io->errmsg, in->errmsg, sizeof io->errmsg);
    io->capacity = in->capacity;
    return rv;
}

static int io_init(struct raft_io *io, raft_id id, const char *address)
{
    INNER(io)->data = io->data; /* raft_init set ours; raft_uv's callbacks read theirs */
    return pass(io, INNER(io)->init(INNER(io), id, address));
}

/* raft's close goes on to raft_uv once our timer is closed and no dump is
 * left in the thread pool: raft must get its snapshot callback
 * (RAFT_CANCELED) before the close one. */
static void maybe_close_inner(snapshot_io_t *w)
{
    if ((w->timer_init && !w->timer_closed) || (w->put && w->put->dumping) ||
        (w->get_timer_init && !w->get_timer_closed) || w->loading || w->gets ||
        w->inner_closing)
        return;
    w->inner_closing = true;
    if (w->sent && !w->sent->refs)
        sent_free(w, w->sent);
    w->inner->data = w->io.data;
    w->inner->close(w->inner, w->close_cb);
}

static void timer_closed(uv_handle_t *h)
{
    snapshot_io_t *w = h->data;
    w->timer_closed = true;
    maybe_close_inner(w);
}

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
    if (io->init != io_init) {
        io->close(io, cb);
        return;
    }
    snapshot_io_t *w = io->impl;
    w->close_cb = cb;
    held_free(w);
    if (w->draining && !w->put) { /* with a put in flight, put_finish() thaws */
        store_thaw(w->draining);
        w->draining = NULL;
    }
    if (w->get_timer_init)
        uv_close((uv_handle_t *)&w->get_timer, get_timer_closed);
    if (w->timer_init)
        uv_close((uv_handle_t *)&w->timer, timer_closed);
    maybe_close_inner(w);
}

static int io_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                   struct raft_snapshot **snapshot, raft_index *start_index,
                   struct raft_entry *entries[], size_t *n_entries)
{
    int rv = pass(io, INNER(io)->load(INNER(io), term, voted_for, snapshot, start_index,
                                      entries, n_entries));
    if (rv == 0 && *snapshot && io->init == io_init)
        ((snapshot_io_t *)io->impl)->snap_index = (*snapshot)->index;
    return rv;
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                    raft_io_recv_cb recv)
{
    snapshot_io_t *w = io->impl;
    INNER(io)->data = io->data;
    w->recv = recv;
    return pass(io, INNER(io)->start(INNER(io), msecs, tick, io_recv));
}

static int io_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
    return pass(io, INNER(io)->bootstrap(INNER(io), conf));
}

static int io_recover(struct raft_io *io, const struct raft_configuration *conf)
{
    return pass(io, INNER(io)->recover(INNER(io), conf));
}

static int io_set_term(struct raft_io *io, raft_term term)
{
    return pass(io, INNER(io)->set_term(INNER(io), term));
}

static int io_set_vote(struct raft_io *io, raft_id server_id)
{
    return pass(io, INNER(io)->set_vote(INNER(io), server_id));
}

static int io_append(struct raft_io *io, struct raft_io_append *req,
                     const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    return pass(io, INNER(io)->append(INNER(io), req, entries, n, cb));
}

static int io_truncate(struct raft_io *io, raft_index index)
{
    return pass(io, INNER(io)->truncate(INNER(io), index));
}

static raft_time io_time(struct raft_io *io)
{
    return INNER(io)->time(INNER(io));
}

static int io_random(struct raft_io *io, int min, int max)
{
    return INNER(io)->random(INNER(io), min, max);
}

void snapshot_io_wrap(snapshot_io_t *w, struct raft_io *inner, struct raft_fsm *inner_fsm,
                      store_t *st, uv_loop_t *loop)
{
    memset(w, 0, sizeof *w);
    w->inner = inner;
    w->inner_fsm = inner_fsm;
    w->st = st;
    w->loop = loop;
    w->fsm = (struct raft_fsm){
        .version = 3,
        .data = w,
        .apply = fsm_apply,
        .snapshot = fsm_snapshot,
        .restore = fsm_restore,
        .snapshot_finalize = fsm_snapshot_finalize,
        .snapshot_async = NULL, /* it would run on the loop thread too */
    };
    w->io = (struct raft_io){
        .version = inner->version,
        .capacity = inner->capacity,
        .impl = w,
        .init = io_init,
        .close = io_close,
        .load = io_load,
        .start = io_start,
        .bootstrap = io_bootstrap,
        .recover = io_recover,
        .set_term = io_set_term,
        .set_vote = io_set_vote,
        .send = io_send,
        .append = io_append,
        .truncate = io_truncate,
        .snapshot_put = io_snapshot_put,
        .snapshot_get = io_snapshot_get,
        .time = io_time,
        .random = io_random,
    };
}
