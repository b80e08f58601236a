/* fsm.c: the deterministic state machine of one raft group.
 *
 * An entry is msgpack [1, now_ms, [cmd (bin), ...]] padded with nil bytes to a
 * multiple of 8; each cmd is a wire request map (PROTOCOL.md). Start with
 * fsm_apply_entry(): it advances the clock (monotonic, persisted as the meta
 * key "#now"), lets queue.c promote due messages, runs every command through
 * the op table and wraps each handler's fields into a complete response map
 * {id, ok: true, ...} or {id, ok: false, code, error}. Business errors are
 * replies; apply fails only on a corrupt entry or a store write failure.
 * fsm_read() serves the read ops from applied state; fsm_raft() is the glue
 * to raft (struct raft_fsm version 3).
 *
 * To add an op: one line in `ops` below and one handler (queue.c, or a new
 * file for topics/scripts) with the fsm_op_fn signature.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ENTRY_FORMAT 1
#define META_NOW "#now"

struct fsm {
    store_t *st;
    queues_t *qs;
    uint64_t now;
    bool emit;
    struct raft_fsm raft;
};

static const struct op {
    const char *name;
    enum fsm_op_kind kind;
    fsm_op_fn fn;
} ops[] = {
    {"hello", FSM_OP_LOCAL, NULL},
    {"ping", FSM_OP_LOCAL, NULL},
    {"queue.get", FSM_OP_READ, queue_op_get},
    {"queue.list", FSM_OP_READ, queue_op_list},
    {"queue.create", FSM_OP_WRITE, queue_op_create},
    {"queue.delete", FSM_OP_WRITE, queue_op_delete},
    {"queue.purge", FSM_OP_WRITE, queue_op_purge},
    {"queue.set", FSM_OP_WRITE, queue_op_set},
    {"queue.rewind", FSM_OP_WRITE, queue_op_rewind},
    {"send", FSM_OP_WRITE, queue_op_send},
    {"send_batch", FSM_OP_WRITE, queue_op_send_batch},
    {"receive", FSM_OP_WRITE, queue_op_receive},
    {"delete", FSM_OP_WRITE, queue_op_delete_msgs},
    {"change_visibility", FSM_OP_WRITE, queue_op_change_visibility},
    {"tick", FSM_OP_WRITE, queue_op_tick},
};

static const struct op *op_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (strlen(ops[i].name) == len && memcmp(ops[i].name, name, len) == 0)
            return &ops[i];
    }
    return NULL;
}

enum fsm_op_kind fsm_op_kind(const char *op, size_t len)
{
    const struct op *o = op_find(op, len);
    return o ? o->kind : FSM_OP_UNKNOWN;
}

/* ---- argument and reply helpers (internal.h, for handlers) ---- */

const msgpack_object *fsm_arg(const msgpack_object *map, const char *key)
{
    size_t kl = strlen(key);
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
            memcmp(k->via.str.ptr, key, kl) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

int fsm_fail(fsm_cmd_t *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return code;
}

int fsm_arg_str(fsm_cmd_t *c, const msgpack_object *map, const char *key, bool required,
                const char **s, size_t *len)
{
    const msgpack_object *v = fsm_arg(map, key);
    *s = NULL;
    *len = 0;
    if (!v || v->type == MSGPACK_OBJECT_NIL) {
        if (required)
            return fsm_fail(c, MQHUB_EBAD_REQUEST, "field '%s' is required (a string)", key);
        return 0;
    }
    if (v->type != MSGPACK_OBJECT_STR)
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be a string", key);
    *s = v->via.str.ptr;
    *len = v->via.str.size;
    return 0;
}

int fsm_arg_uint(fsm_cmd_t *c, const msgpack_object *map, const char *key, uint64_t min,
                 uint64_t max, uint64_t *out)
{
    const msgpack_object *v = fsm_arg(map, key);
    uint64_t x;
    if (!v || v->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        x = v->via.u64;
    else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        goto range;
    else if (v->type == MSGPACK_OBJECT_FLOAT64 && v->via.f64 >= 0 && v->via.f64 < 1.8e19 &&
             v->via.f64 == (double)(uint64_t)v->via.f64)
        x = (uint64_t)v->via.f64; /* JSON clients may send 30.0 */
    else
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be an unsigned integer", key);
    if (x < min || x > max)
        goto range;
    *out = x;
    return 0;
range:
    return fsm_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be between %llu and %llu", key,
                    (unsigned long long)min, (unsigned long long)max);
}

void fsm_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

void fsm_reply_key(fsm_cmd_t *c, const char *key)
{
    if (!c->pk)
        return;
    fsm_pack_str(c->pk, key, strlen(key));
    c->n_fields++;
}

/* ---- running one command ---- */

/* Run @req through its handler and append the complete response map to @out
 * (NULL: not emitting). @want is the op kind the caller serves. */
static void run_cmd(queues_t *qs, const msgpack_object *req, uint64_t now,
                    enum fsm_op_kind want, msgpack_sbuffer *out)
{
    msgpack_sbuffer scratch;
    msgpack_packer spk, opk;
    fsm_cmd_t c = {.req = req, .now = now};
    const char *op = NULL;
    size_t oplen = 0;
    int rc;

    msgpack_sbuffer_init(&scratch);
    msgpack_packer_init(&spk, &scratch, msgpack_sbuffer_write);
    c.pk = out ? &spk : NULL;
    if (req->type != MSGPACK_OBJECT_MAP) {
        rc = fsm_fail(&c, MQHUB_EBAD_REQUEST, "a request must be a map");
    } else if ((rc = fsm_arg_str(&c, req, "op", true, &op, &oplen)) == 0) {
        const struct op *o = op_find(op, oplen);
        if (!o || o->kind != want || !o->fn)
            rc = fsm_fail(&c, MQHUB_EUNKNOWN_OP, "unknown operation '%.*s' here; see PROTOCOL.md",
                          (int)(oplen > 64 ? 64 : oplen), op);
        else
            rc = o->fn(qs, &c);
    }
    if (out) {
        const msgpack_object *id = fsm_arg(req, "id");
        msgpack_packer_init(&opk, out, msgpack_sbuffer_write);
        msgpack_pack_map(&opk, (id ? 1 : 0) + 1 + (rc ? 2 : c.n_fields));
        if (id) {
            fsm_pack_str(&opk, "id", 2);
            msgpack_pack_object(&opk, *id);
        }
        fsm_pack_str(&opk, "ok", 2);
        if (rc == 0) {
            msgpack_pack_true(&opk);
            msgpack_sbuffer_write(out, scratch.data, scratch.size);
        } else {
            const char *code = mqhub_err_name(rc);
            msgpack_pack_false(&opk);
            fsm_pack_str(&opk, "code", 4);
            fsm_pack_str(&opk, code, strlen(code));
            fsm_pack_str(&opk, "error", 5);
            fsm_pack_str(&opk, c.err, strlen(c.err));
        }
    }
    msgpack_sbuffer_destroy(&scratch);
}

/* ---- entries ---- */

int fsm_entry_encode(uint64_t now_ms, const char *const *cmds, const size_t *lens,
                     unsigned n, struct raft_buffer *out)
{
    static const char pad[8] = {'\xc0', '\xc0', '\xc0', '\xc0', '\xc0', '\xc0', '\xc0', '\xc0'};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, ENTRY_FORMAT);
    msgpack_pack_uint64(&pk, now_ms);
    msgpack_pack_array(&pk, n);
    for (unsigned i = 0; i < n; i++) {
        msgpack_pack_bin(&pk, lens[i]);
        msgpack_pack_bin_body(&pk, cmds[i], lens[i]);
    }
    if (sb.size % 8)
        msgpack_sbuffer_write(&sb, pad, 8 - sb.size % 8);
    out->len = sb.size;
    out->base = raft_malloc(sb.size);
    if (out->base)
        memcpy(out->base, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return out->base ? 0 : MQHUB_EINTERNAL;
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
    if (msgpack_unpack_next(&u, buf, len, NULL) != MSGPACK_UNPACK_SUCCESS)
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
    msgpack_sbuffer_init(&out);
    for (uint32_t i = 0; i < cmds->via.array.size; i++) {
        const msgpack_object_bin *bin = &cmds->via.array.ptr[i].via.bin;
        msgpack_unpacked cu;
        msgpack_object bad = {.type = MSGPACK_OBJECT_NIL};
        size_t off = 0;
        msgpack_unpacked_init(&cu);
        bool ok = msgpack_unpack_next(&cu, bin->ptr, bin->size, &off) == MSGPACK_UNPACK_SUCCESS &&
                  off == bin->size;
        run_cmd(f->qs, ok ? &cu.data : &bad, f->now, FSM_OP_WRITE, r ? &out : NULL);
        msgpack_unpacked_destroy(&cu);
        if (r)
            r->off[i + 1] = out.size;
    }
    rc = queue_end(f->qs);
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
    run_cmd(f->qs, req, f->now, FSM_OP_READ, out);
    return 0;
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

/* raft 0.22.1 calls snapshot and then snapshot_async back to back on the loop
 * thread and keeps the buffers until snapshot_finalize while apply goes on:
 * the dump is a complete copy (never views of live state), taken here on the
 * loop thread. snapshot_async stays NULL: with a copy already made there is
 * nothing left to do off the loop, and the KC handle is not shared across
 * threads. */
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
    if (rc == 0 && queue_state_new(&f->qs, f->st) != 0) {
        snprintf(errmsg, errlen, "fsm: out of memory");
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
    return queue_next_due(f->qs, f->now);
}

uint64_t fsm_now(fsm_t *f)
{
    return f->now;
}

void fsm_digest(fsm_t *f, unsigned char out[32])
{
    store_digest(f->st, out);
}
