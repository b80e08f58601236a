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
 * To add an op: one line in `ops` below and one handler with the fsm_op_fn
 * (queue.c), topic_op_fn (topic.c) or script_op_fn (script.c) signature. A
 * row may name several: `tick` runs the queue half, the topic half, then the
 * script half. A row's `hook` ('q' or 't') lets script.c see the command
 * before and after its handler (the `hook` attribute of queues and topics).
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
    topics_t *ts;
    scripts_t *sc;
    uint64_t now;
    bool emit;
    bool snapshot_deferred; /* placeholders for snapshot_io (snapshot.c) */
    uint64_t (*read_clock)(void); /* reads only: ages shown "now", not at apply */
    struct raft_fsm raft;
};

static const struct op {
    const char *name;
    enum fsm_op_kind kind;
    fsm_op_fn fn;
    topic_op_fn tfn;
    script_op_fn sfn;
    char hook;
} ops[] = {
    {"hello", FSM_OP_LOCAL, NULL, NULL, NULL, 0},
    {"ping", FSM_OP_LOCAL, NULL, NULL, NULL, 0},
    {"queue.get", FSM_OP_READ, queue_op_get, NULL, NULL, 0},
    {"queue.list", FSM_OP_READ, queue_op_list, NULL, NULL, 0},
    {"queue.create", FSM_OP_WRITE, queue_op_create, NULL, NULL, 'q'},
    {"queue.delete", FSM_OP_WRITE, queue_op_delete, NULL, NULL, 'q'},
    {"queue.purge", FSM_OP_WRITE, queue_op_purge, NULL, NULL, 0},
    {"queue.set", FSM_OP_WRITE, queue_op_set, NULL, NULL, 'q'},
    {"queue.rewind", FSM_OP_WRITE, queue_op_rewind, NULL, NULL, 0},
    {"send", FSM_OP_WRITE, queue_op_send, NULL, NULL, 0},
    {"send_batch", FSM_OP_WRITE, queue_op_send_batch, NULL, NULL, 0},
    {"receive", FSM_OP_WRITE, queue_op_receive, NULL, NULL, 0},
    {"delete", FSM_OP_WRITE, queue_op_delete_msgs, NULL, NULL, 0},
    {"change_visibility", FSM_OP_WRITE, queue_op_change_visibility, NULL, NULL, 0},
    {"tick", FSM_OP_INTERNAL, queue_op_tick, topic_op_tick, script_op_tick, 0},
    {"topic.get", FSM_OP_READ, NULL, topic_op_get, NULL, 0},
    {"topic.list", FSM_OP_READ, NULL, topic_op_list, NULL, 0},
    {"subscription.get", FSM_OP_READ, NULL, topic_op_sub_get, NULL, 0},
    {"subscription.list", FSM_OP_READ, NULL, topic_op_sub_list, NULL, 0},
    {"topic.create", FSM_OP_WRITE, NULL, topic_op_create, NULL, 't'},
    {"topic.delete", FSM_OP_WRITE, NULL, topic_op_delete, NULL, 't'},
    {"topic.set", FSM_OP_WRITE, NULL, topic_op_set, NULL, 't'},
    {"publish", FSM_OP_WRITE, NULL, topic_op_publish, NULL, 0},
    {"publish_batch", FSM_OP_WRITE, NULL, topic_op_publish_batch, NULL, 0},
    {"subscription.create", FSM_OP_WRITE, NULL, topic_op_sub_create, NULL, 0},
    {"subscription.delete", FSM_OP_WRITE, NULL, topic_op_sub_delete, NULL, 0},
    {"subscription.rewind", FSM_OP_WRITE, NULL, topic_op_sub_rewind, NULL, 0},
    {"ack", FSM_OP_WRITE, NULL, topic_op_ack, NULL, 0},
    {"sub.dead", FSM_OP_INTERNAL, NULL, topic_op_sub_dead, NULL, 0},
    {"subscribe", FSM_OP_SESSION, NULL, NULL, NULL, 0},
    {"credit", FSM_OP_SESSION, NULL, NULL, NULL, 0},
    {"unsubscribe", FSM_OP_SESSION, NULL, NULL, NULL, 0},
    {"script.get", FSM_OP_READ, NULL, NULL, script_op_get, 0},
    {"script.list", FSM_OP_READ, NULL, NULL, script_op_list, 0},
    {"script.test", FSM_OP_READ, NULL, NULL, script_op_test, 0},
    {"block.list", FSM_OP_READ, NULL, NULL, script_op_block_list, 0},
    {"script.load", FSM_OP_WRITE, NULL, NULL, script_op_load, 0},
    {"script.delete", FSM_OP_WRITE, NULL, NULL, script_op_delete, 0},
    {"block.delete", FSM_OP_WRITE, NULL, NULL, script_op_block_delete, 0},
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

static bool name_valid(const char *s, size_t len)
{
    if (len < 1 || len > FSM_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || (ch != '_' && ch != '-' && ch != '.')))
            return false;
    }
    return true;
}

int fsm_arg_name(fsm_cmd_t *c, const msgpack_object *map, const char *key, const char **s,
                 size_t *len)
{
    int rc = fsm_arg_str(c, map, key, true, s, len);
    if (rc == 0 && !name_valid(*s, *len))
        rc = fsm_fail(c, MQHUB_EBAD_NAME,
                      "field '%s': '%.*s' is not a valid name; use 1-64 of A-Z a-z 0-9 _ - . "
                      "starting with a letter or digit", key, (int)(*len > 64 ? 64 : *len), *s);
    return rc;
}

int fsm_arg_attrs(fsm_cmd_t *c, const msgpack_object *map, msgpack_object *out)
{
    const msgpack_object *v = fsm_arg(map, "attrs");
    *out = (msgpack_object){.type = MSGPACK_OBJECT_NIL};
    if (!v || v->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (v->type != MSGPACK_OBJECT_MAP)
        goto bad;
    for (uint32_t i = 0; i < v->via.map.size; i++) {
        if (v->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR ||
            v->via.map.ptr[i].val.type != MSGPACK_OBJECT_STR)
            goto bad;
    }
    *out = *v;
    return 0;
bad:
    return fsm_fail(c, MQHUB_EBAD_REQUEST, "field 'attrs' must be a map of string to string");
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

void fsm_reply_uint(fsm_cmd_t *c, const char *key, uint64_t v)
{
    fsm_reply_key(c, key);
    if (c->pk)
        msgpack_pack_uint64(c->pk, v);
}

void fsm_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t v)
{
    fsm_pack_str(pk, key, strlen(key));
    msgpack_pack_uint64(pk, v);
}

void fsm_pack_kv_str(msgpack_packer *pk, const char *key, const char *s, size_t len)
{
    fsm_pack_str(pk, key, strlen(key));
    fsm_pack_str(pk, s, len);
}

void fsm_pack_ok_item(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    fsm_pack_str(pk, "ok", 2);
    msgpack_pack_true(pk);
}

static void pack_err_item(msgpack_packer *pk, int rc, const char *err)
{
    const char *code = mqhub_err_name(rc);
    msgpack_pack_map(pk, 2);
    fsm_pack_kv_str(pk, "code", code, strlen(code));
    fsm_pack_kv_str(pk, "error", err, strlen(err));
}

int fsm_batch(fsm_cmd_t *c, const char *key, const char *what, uint32_t max,
              fsm_item_fn fn, void *arg)
{
    const msgpack_object *items = fsm_arg(c->req, key);
    if (!items || items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size < 1 ||
        items->via.array.size > max)
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be an array of 1-%u %s", key,
                        (unsigned)max, what);
    fsm_reply_key(c, "results");
    if (c->pk)
        msgpack_pack_array(c->pk, items->via.array.size);
    for (uint32_t i = 0; i < items->via.array.size; i++) {
        int rc = fn(arg, c, &items->via.array.ptr[i]);
        if (rc != 0 && c->pk)
            pack_err_item(c->pk, rc, c->err);
    }
    return 0;
}

struct list {
    uint64_t offset, limit, total;
    msgpack_packer *pk;
};

static int list_name(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct list *l = arg;
    (void)v, (void)vl;
    if (l->total >= l->offset && l->total - l->offset < l->limit)
        fsm_pack_str(l->pk, k + 1, kl - 1);
    l->total++;
    return 0;
}

int fsm_list_names(fsm_cmd_t *c, store_t *st, char rec, const char *key)
{
    const char *prefix;
    size_t plen;
    struct list l = {0, 100, 0, NULL};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char k[1 + FSM_NAME_MAX];
    int rc;
    if ((rc = fsm_arg_str(c, c->req, "prefix", false, &prefix, &plen)) ||
        (rc = fsm_arg_uint(c, c->req, "offset", 0, UINT64_MAX, &l.offset)) ||
        (rc = fsm_arg_uint(c, c->req, "limit", 1, 1000, &l.limit)))
        return rc;
    if (!c->pk)
        return 0;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    l.pk = &pk;
    k[0] = rec;
    if (plen <= FSM_NAME_MAX) { /* a longer prefix matches no name */
        if (plen)
            memcpy(k + 1, prefix, plen);
        store_scan(st, k, 1 + plen, NULL, 0, list_name, &l);
    }
    uint64_t shown = l.total > l.offset ? l.total - l.offset : 0;
    fsm_reply_key(c, key);
    msgpack_pack_array(c->pk, (uint32_t)(shown < l.limit ? shown : l.limit));
    c->pk->callback(c->pk->data, sb.data, sb.size);
    fsm_reply_uint(c, "total", l.total);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

void fsm_put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (56 - 8 * i));
}

uint64_t fsm_get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

void fsm_key_id_seq(unsigned char k[17], char prefix, uint64_t id, uint64_t seq)
{
    k[0] = (unsigned char)prefix;
    fsm_put_be64(k + 1, id);
    fsm_put_be64(k + 9, seq);
}

/* ---- running one command ---- */

/* The handlers of @o in order (script.c's hook check first, its attach
 * last); the first failure stops the command. */
static int run_handlers(fsm_t *f, const struct op *o, fsm_cmd_t *c)
{
    int rc = 0;
    if (o->hook)
        rc = script_hook_op(f->sc, c, o->hook, o->name, false);
    if (rc == 0 && o->fn)
        rc = o->fn(f->qs, c);
    if (rc == 0 && o->tfn)
        rc = o->tfn(f->ts, c);
    if (rc == 0 && o->sfn)
        rc = o->sfn(f->sc, c);
    if (rc == 0 && o->hook)
        rc = script_hook_op(f->sc, c, o->hook, o->name, true);
    return rc;
}

/* Run @req through its handler and append the complete response map to @out
 * (NULL: not emitting). @want is the op kind the caller serves. */
static void run_cmd(fsm_t *f, uint64_t now, const msgpack_object *req, enum fsm_op_kind want,
                    msgpack_sbuffer *out)
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
        enum fsm_op_kind kind = o ? o->kind : FSM_OP_UNKNOWN;
        if (kind == FSM_OP_INTERNAL && want == FSM_OP_WRITE)
            kind = FSM_OP_WRITE; /* the log holds the node's own internal commands */
        if (!o || kind != want || (!o->fn && !o->tfn && !o->sfn))
            rc = fsm_fail(&c, MQHUB_EUNKNOWN_OP, "unknown operation '%.*s' here; see PROTOCOL.md",
                          (int)(oplen > 64 ? 64 : oplen), op);
        else
            rc = run_handlers(f, o, &c);
        if (want == FSM_OP_WRITE)
            script_after_cmd(f->sc, &c);
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
    topic_begin(f->ts, f->now);
    script_begin(f->sc, f->now);
    msgpack_sbuffer_init(&out);
    for (uint32_t i = 0; i < cmds->via.array.size; i++) {
        const msgpack_object_bin *bin = &cmds->via.array.ptr[i].via.bin;
        msgpack_unpacked cu;
        msgpack_object bad = {.type = MSGPACK_OBJECT_NIL};
        size_t off = 0;
        msgpack_unpacked_init(&cu);
        bool ok = msgpack_unpack_next(&cu, bin->ptr, bin->size, &off) == MSGPACK_UNPACK_SUCCESS &&
                  off == bin->size;
        run_cmd(f, f->now, ok ? &cu.data : &bad, FSM_OP_WRITE, r ? &out : NULL);
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
    uint64_t now = f->read_clock ? f->read_clock() : 0;
    run_cmd(f, now > f->now ? now : f->now, req, FSM_OP_READ, out);
    return 0;
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

/* raft 0.22.1 calls snapshot and then snapshot_async back to back on the loop
 * thread and keeps the buffers until snapshot_finalize while apply goes on.
 * Under raft (snapshot_io, deferred) this only freezes the store and returns a
 * placeholder: the dump happens in the thread pool (core/snapshot.c).
 * Otherwise (tests, benchmarks) it is a complete copy made here.
 * snapshot_async stays NULL: it would run on the loop thread too. */
static int fsm_cb_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    fsm_t *f = rf->data;
    return snapshot_take(f->st, f->snapshot_deferred, bufs, n_bufs) == 0 ? 0 : RAFT_NOMEM;
}

static int fsm_cb_snapshot_finalize(struct raft_fsm *rf, struct raft_buffer *bufs[],
                                  unsigned *n_bufs)
{
    snapshot_release(bufs, n_bufs);
    return 0;
}

void fsm_set_snapshot_deferred(fsm_t *f, bool deferred)
{
    f->snapshot_deferred = deferred;
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
                    script_state_new(&f->sc, f->st, f->qs, f->ts) != 0)) {
        snprintf(errmsg, errlen, "fsm: out of memory");
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

void fsm_set_push_cb(fsm_t *f, fsm_push_cb cb, void *arg)
{
    topic_set_push_cb(f->ts, cb, arg);
}

int fsm_push_pending(fsm_t *f, const char *topic, size_t tl, const char *sub, size_t sl,
                     uint64_t after, unsigned max,
                     int (*fn)(void *arg, const fsm_push_msg_t *m), void *arg)
{
    return topic_push_pending(f->ts, topic, tl, sub, sl, after, max, fn, arg);
}

bool fsm_push_is_pending(fsm_t *f, const char *topic, size_t tl, const char *sub, size_t sl,
                         uint64_t seq)
{
    return topic_push_is_pending(f->ts, topic, tl, sub, sl, seq);
}

int fsm_push_retry(fsm_t *f, const char *topic, size_t tl, const char *sub, size_t sl,
                   fsm_retry_t *out)
{
    return topic_push_retry(f->ts, topic, tl, sub, sl, out);
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
