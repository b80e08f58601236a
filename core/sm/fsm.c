/* fsm.c: the deterministic state machine of one raft group.
 *
 * An entry is msgpack [1, now_ms, [cmd (bin), ...]] padded with nil bytes to a
 * multiple of 8; each cmd is a wire request map (PROTOCOL.md). Start with
 * fsm_apply_entry(): it advances the clock (monotonic, persisted as the meta
 * key "#now"), lets queue.c promote due messages, runs every command through
 * the op table and wraps each handler's fields into a complete response map
 * {id, ok: true, ...} or {id, ok: false, code, error}. Business errors are
 * replies; apply fails only on a corrupt entry or a store write failure.
 * fsm_read() serves the read ops from applied state, fsm_read_start() /
 * fsm_read_step() the long ones in slices (rows flagged OPS_F_SLICED, with
 * a cmd_slice_t kept in their cursor between slices); fsm_raft() is the
 * glue to raft (struct raft_fsm version 3).
 *
 * To add an op: one row in ops.c's table and one handler (an op_fn). A row
 * flagged OPS_F_HOOK_QUEUE/TOPIC lets script.c see the command before and
 * after its handler (the `hook` attribute of queues and topics).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

#define ENTRY_FORMAT 1
#define META_NOW "#now"

struct fsm {
    store_t *st;
    queues_t *qs;
    topics_t *ts;
    scripts_t *sc;
    users_t *us;
    uint64_t now;
    bool emit;
    uint64_t (*read_clock)(void); /* reads only: ages shown "now", not at apply */
    struct raft_fsm raft;
};

/* ---- running one command ---- */

/* The handler of row @o, with script.c's hook check before it and its
 * attach after it on rows flagged OPS_F_HOOK_*; the first failure stops the
 * command. */
static int run_handler(const ops_row_t *o, cmd_t *c)
{
    char hook = (o->flags & OPS_F_HOOK_QUEUE) ? 'q' : (o->flags & OPS_F_HOOK_TOPIC) ? 't' : 0;
    int rc = 0;
    if (hook)
        rc = script_hook_op(c->sc, c, hook, o->name, false);
    if (rc == 0)
        rc = o->fn(c);
    if (rc == 0 && hook)
        rc = script_hook_op(c->sc, c, hook, o->name, true);
    return rc;
}

/* Run @req through its handler and append the complete response map to @out
 * (NULL: not emitting). @want is the op kind the caller serves; @slice is a
 * sliced read's (NULL: none). Returns false when the slice asked for more
 * (nothing appended), true otherwise. */
static bool run_cmd(fsm_t *f, uint64_t now, const msgpack_object *req, enum ops_kind want,
                    const unsigned char *viewer, cmd_slice_t *slice, msgpack_sbuffer *out)
{
    msgpack_sbuffer scratch;
    msgpack_packer spk, opk;
    cmd_t c = {.req = req, .now = now, .st = f->st, .qs = f->qs, .ts = f->ts, .sc = f->sc,
               .us = f->us, .viewer = viewer, .slice = slice};
    const char *op = NULL;
    size_t oplen = 0;
    int rc;

    msgpack_sbuffer_init(&scratch);
    msgpack_packer_init(&spk, &scratch, msgpack_sbuffer_write);
    c.pk = out ? &spk : NULL;
    if (req->type != MSGPACK_OBJECT_MAP) {
        rc = cmd_fail(&c, MQHUB_EBAD_REQUEST, "a request must be a map");
    } else if ((rc = cmd_arg_str(&c, req, "op", true, &op, &oplen)) == 0) {
        const ops_row_t *o = ops_find(op, oplen);
        enum ops_kind kind = o ? o->kind : OPS_UNKNOWN;
        if (kind == OPS_INTERNAL && want == OPS_WRITE)
            kind = OPS_WRITE; /* the log holds the node's own internal commands */
        if (!o || kind != want || !o->fn)
            rc = cmd_fail(&c, MQHUB_EUNKNOWN_OP, "unknown operation '%.*s' here; see PROTOCOL.md",
                          (int)(oplen > 64 ? 64 : oplen), op);
        else
            rc = run_handler(o, &c);
        if (want == OPS_WRITE)
            script_after_cmd(f->sc, &c);
    }
    if (slice && slice->more && rc == 0) {
        msgpack_sbuffer_destroy(&scratch);
        return false;
    }
    if (out) {
        const msgpack_object *id = mp_map_get(req, "id");
        msgpack_packer_init(&opk, out, msgpack_sbuffer_write);
        msgpack_pack_map(&opk, (id ? 1 : 0) + 1 + (rc ? 2 : c.n_fields));
        if (id) {
            mp_pack_str(&opk, "id", 2);
            msgpack_pack_object(&opk, *id);
        }
        mp_pack_str(&opk, "ok", 2);
        if (rc == 0) {
            msgpack_pack_true(&opk);
            msgpack_sbuffer_write(out, scratch.data, scratch.size);
        } else {
            const char *code = mqhub_err_name(rc);
            msgpack_pack_false(&opk);
            mp_pack_str(&opk, "code", 4);
            mp_pack_str(&opk, code, strlen(code));
            mp_pack_str(&opk, "error", 5);
            mp_pack_text(&opk, c.err);
        }
    }
    msgpack_sbuffer_destroy(&scratch);
    return true;
}

/* ---- entries ---- */

/* A msgpack writer into a buffer sized in advance (no growth, no copy). */
struct fixed_buf {
    char *p;
    size_t len, cap;
};

static int fixed_write(void *data, const char *buf, size_t len)
{
    struct fixed_buf *b = data;
    if (b->len + len > b->cap)
        return -1;
    memcpy(b->p + b->len, buf, len);
    b->len += len;
    return 0;
}

int fsm_entry_encode(uint64_t now_ms, const char *const *cmds, const size_t *lens,
                     unsigned n, struct raft_buffer *out)
{
    static const char pad[8] = {'\xc0', '\xc0', '\xc0', '\xc0', '\xc0', '\xc0', '\xc0', '\xc0'};
    /* array + format + uint64 clock + array32 header, then a bin32 header per
     * command, then up to 7 bytes of padding: packed once, in place. */
    struct fixed_buf b = {.cap = 1 + 1 + 9 + 5 + 7};
    msgpack_packer pk;

    for (unsigned i = 0; i < n; i++)
        b.cap += 5 + lens[i];
    if (!(b.p = raft_malloc(b.cap)))
        return MQHUB_EINTERNAL;
    msgpack_packer_init(&pk, &b, fixed_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, ENTRY_FORMAT);
    msgpack_pack_uint64(&pk, now_ms);
    msgpack_pack_array(&pk, n);
    for (unsigned i = 0; i < n; i++) {
        msgpack_pack_bin(&pk, lens[i]);
        msgpack_pack_bin_body(&pk, cmds[i], lens[i]);
    }
    if (b.len % 8)
        fixed_write(&b, pad, 8 - b.len % 8);
    out->base = b.p;
    out->len = b.len;
    return 0;
}

void fsm_result_free(fsm_result_t *r)
{
    if (!r)
        return;
    free(r->off);
    free(r->data);
    free(r);
}

static int advance_clock(fsm_t *f, uint64_t now)
{
    unsigned char be[8];
    if (now <= f->now)
        return 0;
    f->now = now;
    for (int i = 0; i < 8; i++)
        be[i] = (unsigned char)(now >> (56 - 8 * i));
    return store_put(f->st, META_NOW, strlen(META_NOW), be, 8);
}

static fsm_result_t *result_new(unsigned n)
{
    fsm_result_t *r = calloc(1, sizeof(*r));
    if (r && !(r->off = calloc(n + 1, sizeof(*r->off)))) {
        free(r);
        r = NULL;
    }
    if (r)
        r->n = n;
    return r;
}

int fsm_apply_entry(fsm_t *f, const void *buf, size_t len, fsm_result_t **result)
{
    msgpack_unpacked u;
    const msgpack_object *a, *cmds;
    fsm_result_t *r = NULL;
    msgpack_sbuffer out;
    int rc = MQHUB_EINTERNAL;

    if (result)
        *result = NULL;
    msgpack_unpacked_init(&u);
    if (mp_unpack(&u, buf, len, NULL) != MSGPACK_UNPACK_SUCCESS)
        goto corrupt;
    a = &u.data;
    if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size != 3 ||
        a->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        a->via.array.ptr[0].via.u64 != ENTRY_FORMAT ||
        a->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        a->via.array.ptr[2].type != MSGPACK_OBJECT_ARRAY)
        goto corrupt;
    cmds = &a->via.array.ptr[2];
    for (uint32_t i = 0; i < cmds->via.array.size; i++) {
        if (cmds->via.array.ptr[i].type != MSGPACK_OBJECT_BIN)
            goto corrupt;
    }
    if (f->emit && result && !(r = result_new(cmds->via.array.size))) {
        msgpack_unpacked_destroy(&u);
        return MQHUB_EINTERNAL;
    }
    int clock_rc = advance_clock(f, a->via.array.ptr[1].via.u64);
    queue_begin(f->qs, f->now);
    topic_begin(f->ts, f->now);
    script_begin(f->sc, f->now);
    msgpack_sbuffer_init(&out);
    for (uint32_t i = 0; i < cmds->via.array.size; i++) {
        const msgpack_object_bin *bin = &cmds->via.array.ptr[i].via.bin;
        msgpack_unpacked cu;
        msgpack_object bad = {.type = MSGPACK_OBJECT_NIL};
        size_t off = 0;
        msgpack_unpacked_init(&cu);
        bool ok = mp_unpack(&cu, bin->ptr, bin->size, &off) == MSGPACK_UNPACK_SUCCESS &&
                  off == bin->size;
        run_cmd(f, f->now, ok ? &cu.data : &bad, OPS_WRITE, NULL, NULL, r ? &out : NULL);
        msgpack_unpacked_destroy(&cu);
        if (r)
            r->off[i + 1] = out.size;
    }
    rc = topic_end(f->ts);
    if (script_end(f->sc) != 0)
        rc = MQHUB_EINTERNAL;
    if (queue_end(f->qs) != 0)
        rc = MQHUB_EINTERNAL;
    if (rc == 0)
        rc = clock_rc;
    if (r && rc == 0) {
        r->data = msgpack_sbuffer_release(&out);
        *result = r;
    } else {
        fsm_result_free(r);
    }
    msgpack_sbuffer_destroy(&out);
    msgpack_unpacked_destroy(&u);
    return rc;
corrupt:
    log_error("fsm", "corrupt entry of %zu bytes", len);
    msgpack_unpacked_destroy(&u);
    return MQHUB_EINTERNAL;
}

int fsm_read(fsm_t *f, const msgpack_object *req, msgpack_sbuffer *out)
{
    return fsm_read_as(f, req, NULL, out);
}

/* The clock of a read: the read clock's, never behind apply's. */
static uint64_t read_now(fsm_t *f)
{
    uint64_t now = f->read_clock ? f->read_clock() : 0;
    return now > f->now ? now : f->now;
}

int fsm_read_as(fsm_t *f, const msgpack_object *req, const unsigned char *hash,
                msgpack_sbuffer *out)
{
    run_cmd(f, read_now(f), req, OPS_READ, hash, NULL, out);
    return 0;
}

/* ---- reads in slices ---- */

struct fsm_read {
    msgpack_sbuffer req; /* the request, packed again: ours */
    msgpack_unpacked u;  /* and unpacked from it */
    unsigned char hash[FSM_USER_HASH_LEN];
    bool has_hash;
    cmd_slice_t slice;
};

static bool is_sliced(const msgpack_object *req)
{
    const msgpack_object *op = req->type == MSGPACK_OBJECT_MAP ? mp_map_get(req, "op") : NULL;
    const ops_row_t *o = op && op->type == MSGPACK_OBJECT_STR
                             ? ops_find(op->via.str.ptr, op->via.str.size)
                             : NULL;
    return o && o->kind == OPS_READ && (o->flags & OPS_F_SLICED);
}

/* A cursor holding a copy of @req and @hash; NULL when out of memory. */
static fsm_read_t *read_new(const msgpack_object *req, const unsigned char *hash)
{
    fsm_read_t *r = calloc(1, sizeof(*r));
    msgpack_packer pk;
    if (!r)
        return NULL;
    msgpack_sbuffer_init(&r->req);
    msgpack_unpacked_init(&r->u);
    msgpack_packer_init(&pk, &r->req, msgpack_sbuffer_write);
    if (msgpack_pack_object(&pk, *req) != 0 ||
        mp_unpack(&r->u, r->req.data, r->req.size, NULL) != MSGPACK_UNPACK_SUCCESS) {
        fsm_read_free(r);
        return NULL;
    }
    if ((r->has_hash = hash != NULL))
        memcpy(r->hash, hash, sizeof(r->hash));
    return r;
}

int fsm_read_start(fsm_t *f, const msgpack_object *req, const unsigned char *hash,
                   msgpack_sbuffer *out, fsm_read_t **cur)
{
    fsm_read_t *r = is_sliced(req) ? read_new(req, hash) : NULL;
    *cur = NULL;
    if (!r) /* not sliced (or no memory for a cursor: in one go) */
        return fsm_read_as(f, req, hash, out);
    if (fsm_read_step(f, r, out))
        fsm_read_free(r);
    else
        *cur = r;
    return 0;
}

bool fsm_read_step(fsm_t *f, fsm_read_t *cur, msgpack_sbuffer *out)
{
    cur->slice.more = false;
    return run_cmd(f, read_now(f), &cur->u.data, OPS_READ, cur->has_hash ? cur->hash : NULL,
                   &cur->slice, out);
}

void fsm_read_free(fsm_read_t *cur)
{
    if (!cur)
        return;
    if (cur->slice.state)
        cur->slice.free(cur->slice.state);
    msgpack_unpacked_destroy(&cur->u);
    msgpack_sbuffer_destroy(&cur->req);
    free(cur);
}

void fsm_set_read_clock(fsm_t *f, uint64_t (*now_ms)(void))
{
    f->read_clock = now_ms;
}

/* ---- raft glue (struct raft_fsm version 3) ---- */

static int fsm_cb_apply(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
    fsm_t *f = rf->data;
    fsm_result_t *r = NULL;
    int rc = fsm_apply_entry(f, buf->base, buf->len, &r);
    *result = r;
    return rc == 0 ? 0 : RAFT_IOERR;
}

/* A complete copy of the state, made here. Under raft the node decorates
 * these two callbacks (core/raft/snapshot.c takes the copy off the loop);
 * tests and benchmarks call them directly. */
static int fsm_cb_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    fsm_t *f = rf->data;
    return store_dump(f->st, bufs, n_bufs) == 0 ? 0 : RAFT_NOMEM;
}

static int fsm_cb_snapshot_finalize(struct raft_fsm *rf, struct raft_buffer *bufs[],
                                    unsigned *n_bufs)
{
    for (unsigned i = 0; i < *n_bufs; i++)
        raft_free((*bufs)[i].base);
    raft_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int load_clock(fsm_t *f)
{
    size_t vl = 0;
    unsigned char *v = store_get(f->st, META_NOW, strlen(META_NOW), &vl);
    f->now = 0;
    if (v && vl == 8) {
        for (int i = 0; i < 8; i++)
            f->now = f->now << 8 | v[i];
    }
    store_free(v);
    return 0;
}

static int fsm_cb_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    fsm_t *f = rf->data;
    int rc = store_load(f->st, buf->base, buf->len);
    if (rc == 0)
        rc = load_clock(f);
    if (rc == 0)
        rc = queue_rebuild(f->qs);
    if (rc == 0)
        rc = topic_rebuild(f->ts);
    if (rc == 0)
        rc = script_rebuild(f->sc);
    if (rc == 0)
        rc = user_rebuild(f->us);
    if (rc != 0)
        return RAFT_CORRUPT;
    raft_free(buf->base);
    return 0;
}

struct raft_fsm *fsm_raft(fsm_t *f)
{
    return &f->raft;
}

/* ---- lifecycle and queries ---- */

int fsm_open(fsm_t **out, const char *dir, char *errmsg, size_t errlen)
{
    fsm_t *f = calloc(1, sizeof(*f));
    char *path = NULL;
    if (!f || asprintf(&path, "%s/state.kct", dir) < 0) {
        free(f);
        snprintf(errmsg, errlen, "fsm: out of memory");
        return MQHUB_EINTERNAL;
    }
    int rc = store_open(&f->st, path, errmsg, errlen);
    free(path);
    if (rc == 0 && (queue_state_new(&f->qs, f->st) != 0 ||
                    topic_state_new(&f->ts, f->st, f->qs) != 0 ||
                    script_state_new(&f->sc, f->st, f->qs, f->ts) != 0 ||
                    user_state_new(&f->us, f->st) != 0)) {
        snprintf(errmsg, errlen, "fsm: out of memory");
        script_state_free(f->sc);
        topic_state_free(f->ts);
        queue_state_free(f->qs);
        store_close(f->st);
        rc = MQHUB_EINTERNAL;
    }
    if (rc != 0) {
        free(f);
        return rc;
    }
    f->emit = true;
    f->raft = (struct raft_fsm){
        .version = 3,
        .data = f,
        .apply = fsm_cb_apply,
        .snapshot = fsm_cb_snapshot,
        .restore = fsm_cb_restore,
        .snapshot_finalize = fsm_cb_snapshot_finalize,
        .snapshot_async = NULL,
    };
    *out = f;
    return 0;
}

void fsm_close(fsm_t *f)
{
    if (!f)
        return;
    user_state_free(f->us);
    script_state_free(f->sc);
    topic_state_free(f->ts);
    queue_state_free(f->qs);
    store_close(f->st);
    free(f);
}

void fsm_set_ready_cb(fsm_t *f, fsm_ready_cb cb, void *arg)
{
    queue_set_ready_cb(f->qs, cb, arg);
}

void fsm_set_emit(fsm_t *f, bool emit)
{
    f->emit = emit;
}

uint64_t fsm_queue_ready(fsm_t *f, const char *queue, size_t len)
{
    return queue_ready_count(f->qs, queue, len);
}

uint64_t fsm_next_due(fsm_t *f)
{
    uint64_t q = queue_next_due(f->qs, f->now), t = topic_next_due(f->ts, f->now);
    return q < t ? q : t;
}

bool fsm_tick_idle(fsm_t *f)
{
    return queue_tick_idle(f->qs) && script_tick_idle(f->sc);
}

void fsm_set_push_cb(fsm_t *f, fsm_push_cb cb, void *arg)
{
    topic_set_push_cb(f->ts, cb, arg);
}

int fsm_push_pending(fsm_t *f, const char *topic, size_t tl, const char *sub, size_t sl,
                     uint64_t after, unsigned max,
                     int (*fn)(void *arg, const fsm_push_msg_t *m), void *arg)
{
    return sub_push_pending(f->ts, topic, tl, sub, sl, after, max, fn, arg);
}

bool fsm_push_is_pending(fsm_t *f, const char *topic, size_t tl, const char *sub, size_t sl,
                         uint64_t seq)
{
    return sub_push_is_pending(f->ts, topic, tl, sub, sl, seq);
}

int fsm_push_retry(fsm_t *f, const char *topic, size_t tl, const char *sub, size_t sl,
                   fsm_retry_t *out)
{
    return sub_push_retry(f->ts, topic, tl, sub, sl, out);
}

uint64_t fsm_now(fsm_t *f)
{
    return f->now;
}

void fsm_digest(fsm_t *f, unsigned char out[32])
{
    store_digest(f->st, out);
}

store_t *fsm_store(fsm_t *f)
{
    return f->st;
}

int fsm_user_find(fsm_t *f, const unsigned char hash[FSM_USER_HASH_LEN], char *name,
                  size_t size)
{
    return user_find_by_hash(f->us, hash, name, size);
}

int fsm_user_by_name(fsm_t *f, const char *name, size_t len,
                     unsigned char hash[FSM_USER_HASH_LEN])
{
    return user_hash_by_name(f->us, name, len, hash);
}

int fsm_user_may(fsm_t *f, const unsigned char hash[FSM_USER_HASH_LEN], enum ops_verb verb,
                 const char *obj, size_t len)
{
    return user_may(f->us, hash, verb, obj, len);
}

size_t fsm_user_count(fsm_t *f)
{
    return user_count(f->us);
}
