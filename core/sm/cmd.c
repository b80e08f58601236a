/* cmd.c: the toolkit of op handlers — reading a request's fields
 * (cmd_arg_str, cmd_arg_uint, cmd_arg_name, cmd_arg_attrs: every failure is
 * a code and a sentence naming the field, cmd_fail()), packing the reply's
 * fields (cmd_reply_key, cmd_reply_uint, cmd_pack_*), and the shapes several
 * ops share: batches of items with per-item results (cmd_batch) and name
 * listings with prefix/offset/limit (cmd_list_names). Pure functions of
 * their inputs; the contract is in sm_int.h.
 */
#include <stdio.h>
#include <string.h>

#include "sm_int.h"

int cmd_fail(cmd_t *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return code;
}

int cmd_arg_str(cmd_t *c, const msgpack_object *map, const char *key, bool required,
                const char **s, size_t *len)
{
    const msgpack_object *v = mp_map_get(map, key);
    *s = NULL;
    *len = 0;
    if (!v || v->type == MSGPACK_OBJECT_NIL) {
        if (required)
            return cmd_fail(c, MQHUB_EBAD_REQUEST, "field '%s' is required (a string)", key);
        return 0;
    }
    if (v->type != MSGPACK_OBJECT_STR)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be a string", key);
    *s = v->via.str.ptr;
    *len = v->via.str.size;
    return 0;
}

int cmd_arg_uint(cmd_t *c, const msgpack_object *map, const char *key, uint64_t min,
                 uint64_t max, uint64_t *out)
{
    const msgpack_object *v = mp_map_get(map, key);
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
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be an unsigned integer", key);
    if (x < min || x > max)
        goto range;
    *out = x;
    return 0;
range:
    return cmd_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be between %llu and %llu", key,
                    (unsigned long long)min, (unsigned long long)max);
}

int cmd_arg_name(cmd_t *c, const msgpack_object *map, const char *key, const char **s,
                 size_t *len)
{
    int rc = cmd_arg_str(c, map, key, true, s, len);
    if (rc == 0 && !wire_name_valid(*s, *len))
        rc = cmd_fail(c, MQHUB_EBAD_NAME,
                      "field '%s': '%.*s' is not a valid name; use 1-%d of A-Z a-z 0-9 _ - . "
                      "starting with a letter or digit",
                      key, (int)(*len > MQHUB_NAME_MAX ? MQHUB_NAME_MAX : *len), *s, MQHUB_NAME_MAX);
    return rc;
}

int cmd_arg_attrs(cmd_t *c, const msgpack_object *map, msgpack_object *out)
{
    const msgpack_object *v = mp_map_get(map, "attrs");
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
    return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'attrs' must be a map of string to string");
}

/* The MessagePack size of a str header for @n bytes. */
static size_t str_header(size_t n)
{
    return n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5;
}

size_t cmd_attrs_size(const msgpack_object *attrs)
{
    size_t n;
    if (!attrs || attrs->type != MSGPACK_OBJECT_MAP)
        return 0;
    n = attrs->via.map.size < 16 ? 1 : attrs->via.map.size < 65536 ? 3 : 5;
    for (uint32_t i = 0; i < attrs->via.map.size; i++) {
        size_t kl = attrs->via.map.ptr[i].key.via.str.size;
        size_t vl = attrs->via.map.ptr[i].val.via.str.size;
        n += str_header(kl) + kl + str_header(vl) + vl;
    }
    return n;
}

void cmd_reply_key(cmd_t *c, const char *key)
{
    if (!c->pk)
        return;
    mp_pack_str(c->pk, key, strlen(key));
    c->n_fields++;
}

void cmd_reply_uint(cmd_t *c, const char *key, uint64_t v)
{
    cmd_reply_key(c, key);
    if (c->pk)
        msgpack_pack_uint64(c->pk, v);
}

void cmd_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t v)
{
    mp_pack_str(pk, key, strlen(key));
    msgpack_pack_uint64(pk, v);
}

void cmd_pack_kv_str(msgpack_packer *pk, const char *key, const char *s, size_t len)
{
    mp_pack_str(pk, key, strlen(key));
    mp_pack_str(pk, s, len);
}

void cmd_pack_ok_item(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "ok", 2);
    msgpack_pack_true(pk);
}

static void pack_err_item(msgpack_packer *pk, int rc, const char *err)
{
    const char *code = mqhub_err_name(rc);
    msgpack_pack_map(pk, 2);
    cmd_pack_kv_str(pk, "code", code, strlen(code));
    cmd_pack_kv_str(pk, "error", err, strlen(err));
}

int cmd_batch(cmd_t *c, const char *key, const char *what, uint32_t max,
              cmd_item_fn fn, void *arg)
{
    const msgpack_object *items = mp_map_get(c->req, key);
    if (!items || items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size < 1 ||
        items->via.array.size > max)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be an array of 1-%u %s", key,
                        (unsigned)max, what);
    cmd_reply_key(c, "results");
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
    cmd_t *c; /* its viewer: a named user sees the names it holds a grant on */
};

static int list_name(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct list *l = arg;
    (void)v, (void)vl;
    if (l->c->viewer != NULL && !user_sees(l->c->us, l->c->viewer, k + 1, kl - 1))
        return 0;
    if (l->total >= l->offset && l->total - l->offset < l->limit)
        mp_pack_str(l->pk, k + 1, kl - 1);
    l->total++;
    return 0;
}

int cmd_list_names(cmd_t *c, store_t *st, char rec, const char *key)
{
    const char *prefix;
    size_t plen;
    struct list l = {0, MQHUB_LIST_LIMIT_DEFAULT, 0, NULL, c};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char k[1 + MQHUB_NAME_MAX];
    int rc;
    if ((rc = cmd_arg_str(c, c->req, "prefix", false, &prefix, &plen)) ||
        (rc = cmd_arg_uint(c, c->req, "offset", 0, UINT64_MAX, &l.offset)) ||
        (rc = cmd_arg_uint(c, c->req, "limit", 1, MQHUB_LIST_LIMIT_MAX, &l.limit)))
        return rc;
    if (!c->pk)
        return 0;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    l.pk = &pk;
    k[0] = rec;
    if (plen <= MQHUB_NAME_MAX) { /* a longer prefix matches no name */
        if (plen)
            memcpy(k + 1, prefix, plen);
        store_scan(st, k, 1 + plen, NULL, 0, list_name, &l);
    }
    uint64_t shown = l.total > l.offset ? l.total - l.offset : 0;
    cmd_reply_key(c, key);
    msgpack_pack_array(c->pk, (uint32_t)(shown < l.limit ? shown : l.limit));
    c->pk->callback(c->pk->data, sb.data, sb.size);
    cmd_reply_uint(c, "total", l.total);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
