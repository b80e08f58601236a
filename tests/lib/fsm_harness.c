/* fsm_harness.c: see fsm_harness.h. JSON specs are parsed with jansson and
 * packed with msgpack-c; replies are unpacked back into jansson values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsm_harness.h"
#include "mp.h"
#include "tmpdir.h"

harness_t *h_open(uint64_t start_ms)
{
    harness_t *h = calloc(1, sizeof(*h));
    char err[256];
    assert_non_null(h);
    assert_non_null(tmpdir_make(h->dir, sizeof h->dir, "fsm"));
    if (fsm_open(&h->f, h->dir, err, sizeof(err)) != 0)
        fail_msg("fsm_open: %s", err);
    h->now = start_ms;
    return h;
}

void h_close(harness_t *h)
{
    char path[300];
    fsm_close(h->f);
    snprintf(path, sizeof(path), "%s/state.kct", h->dir);
    unlink(path);
    rmdir(h->dir);
    free(h);
}

int h_setup(void **state)
{
    *state = h_open(H_T0);
    return 0;
}

int h_teardown(void **state)
{
    h_close(*state);
    return 0;
}

void h_snapshot_restore(harness_t *src, harness_t *dst)
{
    struct raft_fsm *rs = fsm_raft(src->f), *rd = fsm_raft(dst->f);
    struct raft_buffer *bufs = NULL, one;
    unsigned n = 0;
    assert_int_equal(rs->version, 3);
    assert_null(rs->snapshot_async);
    assert_int_equal(rs->snapshot(rs, &bufs, &n), 0);
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    one.base = raft_malloc(total);
    one.len = total;
    total = 0;
    for (unsigned i = 0; i < n; i++) {
        memcpy((char *)one.base + total, bufs[i].base, bufs[i].len);
        total += bufs[i].len;
    }
    assert_int_equal(rs->snapshot_finalize(rs, &bufs, &n), 0);
    assert_int_equal(rd->restore(rd, &one), 0); /* frees one.base */
    assert_int_equal(fsm_now(dst->f), fsm_now(src->f));
    dst->now = src->now;
}

void h_advance(harness_t *h, uint64_t ms)
{
    h->now += ms;
}

static void pack_json(msgpack_packer *pk, const json_t *j)
{
    const char *key;
    json_t *v;
    size_t i;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        msgpack_pack_map(pk, json_object_size(j));
        json_object_foreach((json_t *)j, key, v) {
            msgpack_pack_str(pk, strlen(key));
            msgpack_pack_str_body(pk, key, strlen(key));
            pack_json(pk, v);
        }
        break;
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(j));
        json_array_foreach(j, i, v) pack_json(pk, v);
        break;
    case JSON_STRING:
        msgpack_pack_str(pk, json_string_length(j));
        msgpack_pack_str_body(pk, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(j));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(j));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    default:
        msgpack_pack_nil(pk);
    }
}

/* The format is checked where h_pack/h_run/h_read are called (fsm_harness.h). */
__attribute__((format(printf, 2, 0))) static char *vpack(size_t *len, const char *fmt,
                                                         va_list ap)
{
    char *spec = NULL;
    json_error_t err;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    assert_true(vasprintf(&spec, fmt, ap) >= 0);
    for (char *p = spec; *p; p++) {
        if (*p == '\'')
            *p = '"';
    }
    json_t *j = json_loads(spec, 0, &err);
    if (!j)
        fail_msg("bad spec %s: %s", spec, err.text);
    free(spec);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_json(&pk, j);
    json_decref(j);
    *len = sb.size;
    return msgpack_sbuffer_release(&sb);
}

char *h_pack(size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = vpack(len, fmt, ap);
    va_end(ap);
    return p;
}

json_t *h_to_json(const msgpack_object *o)
{
    json_t *j;
    switch (o->type) {
    case MSGPACK_OBJECT_MAP:
        j = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            char key[256];
            assert_true(k->type == MSGPACK_OBJECT_STR && k->via.str.size < sizeof(key));
            memcpy(key, k->via.str.ptr, k->via.str.size);
            key[k->via.str.size] = 0;
            json_object_set_new(j, key, h_to_json(&o->via.map.ptr[i].val));
        }
        return j;
    case MSGPACK_OBJECT_ARRAY:
        j = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new(j, h_to_json(&o->via.array.ptr[i]));
        return j;
    case MSGPACK_OBJECT_STR:
        return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return json_stringn(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT64:
    case MSGPACK_OBJECT_FLOAT32:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    default:
        return json_null();
    }
}

static json_t *unpack_reply(const char *data, size_t len)
{
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, data, len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);
    json_t *j = h_to_json(&u.data);
    msgpack_unpacked_destroy(&u);
    return j;
}

json_t *h_entry(harness_t *h, unsigned n, char **cmds, size_t *lens)
{
    struct raft_buffer buf;
    fsm_result_t *r = NULL;
    assert_int_equal(fsm_entry_encode(h->now, (const char *const *)cmds, lens, n, &buf), 0);
    assert_int_equal(buf.len % 8, 0);
    assert_int_equal(fsm_apply_entry(h->f, buf.base, buf.len, &r), 0);
    raft_free(buf.base);
    json_t *arr = json_array();
    if (r) {
        assert_int_equal(r->n, n);
        for (unsigned i = 0; i < n; i++)
            json_array_append_new(arr, unpack_reply(r->data + r->off[i], r->off[i + 1] - r->off[i]));
        fsm_result_free(r);
    }
    return arr;
}

json_t *h_script_load(harness_t *h, const char *name, const char *src)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "script.load");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 1);
    mp_pack_cstr(&pk, "name");
    mp_pack_cstr(&pk, name);
    mp_pack_cstr(&pk, "source");
    mp_pack_cstr(&pk, src);
    char *cmd = sb.data;
    size_t len = sb.size;
    json_t *arr = h_entry(h, 1, &cmd, &len);
    json_t *r = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

json_t *h_run(harness_t *h, const char *fmt, ...)
{
    va_list ap;
    size_t len;
    va_start(ap, fmt);
    char *cmd = vpack(&len, fmt, ap);
    va_end(ap);
    json_t *arr = h_entry(h, 1, &cmd, &len);
    free(cmd);
    json_t *r = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return r;
}

json_t *h_read(harness_t *h, const char *fmt, ...)
{
    va_list ap;
    size_t len;
    msgpack_unpacked u;
    msgpack_sbuffer out;
    va_start(ap, fmt);
    char *cmd = vpack(&len, fmt, ap);
    va_end(ap);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, cmd, len, NULL), MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer_init(&out);
    assert_int_equal(fsm_read(h->f, &u.data, &out), 0);
    json_t *r = unpack_reply(out.data, out.size);
    msgpack_sbuffer_destroy(&out);
    msgpack_unpacked_destroy(&u);
    free(cmd);
    return r;
}

int h_ok(const json_t *r)
{
    return json_is_true(json_object_get(r, "ok"));
}

const char *h_code(const json_t *r)
{
    const char *c = json_string_value(json_object_get(r, "code"));
    return c ? c : "";
}

int64_t h_int(const json_t *r, const char *key)
{
    json_t *v = json_object_get(r, key);
    if (!json_is_integer(v))
        fail_msg("field %s is not an integer in %s", key, json_dumps(r, JSON_COMPACT));
    return json_integer_value(v);
}

const char *h_str(const json_t *r, const char *key)
{
    const char *s = json_string_value(json_object_get(r, key));
    if (!s)
        fail_msg("field %s is not a string", key);
    return s;
}

void h_digest(harness_t *h, char out[65])
{
    unsigned char d[32];
    fsm_digest(h->f, d);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static int count_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    (void)k, (void)kl, (void)v, (void)vl;
    ++*(int64_t *)arg;
    return 0;
}

int64_t h_keys(harness_t *h, char prefix)
{
    int64_t n = 0;
    store_scan(fsm_store(h->f), &prefix, 1, NULL, 0, count_visit, &n);
    return n;
}
