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
    mp_pack_str(pk, "error", 5);
    mp_pack_text(pk, err);
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

/* The rank just past every name starting with @prefix: the rank of the
 * smallest string greater than all of them (the prefix with its last byte
 * below 0xff incremented and the rest cut), or the end. */
static size_t prefix_end(const omap_t *names, const char *prefix, size_t plen)
{
    unsigned char k[MQHUB_NAME_MAX];
    if (plen)
        memcpy(k, prefix, plen);
    while (plen && k[plen - 1] == 0xff)
        plen--;
    if (!plen)
        return omap_len(names);
    k[plen - 1]++;
    return omap_rank(names, k, plen);
}

/* Pack the names of ranks [@from, @to) that the viewer sees, from its
 * @offset-th on, at most @limit; returns how many it sees in all. */
static uint64_t pack_names(cmd_t *c, msgpack_packer *pk, const omap_t *names, size_t from,
                           size_t to, uint64_t offset, uint64_t limit)
{
    uint64_t total = 0;
    for (size_t i = from; i < to; i++) {
        const char *name;
        size_t len;
        omap_at(names, i, &name, &len);
        if (c->viewer != NULL && !user_sees(c->us, c->viewer, name, len))
            continue;
        if (total >= offset && total - offset < limit)
            mp_pack_str(pk, name, len);
        total++;
    }
    return total;
}

int cmd_list_names(cmd_t *c, const omap_t *names, const char *key)
{
    const char *prefix;
    size_t plen, from = 0, to = 0;
    uint64_t offset = 0, limit = MQHUB_LIST_LIMIT_DEFAULT, total;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rc;
    if ((rc = cmd_arg_str(c, c->req, "prefix", false, &prefix, &plen)) ||
        (rc = cmd_arg_uint(c, c->req, "offset", 0, UINT64_MAX, &offset)) ||
        (rc = cmd_arg_uint(c, c->req, "limit", 1, MQHUB_LIST_LIMIT_MAX, &limit)))
        return rc;
    if (!c->pk)
        return 0;
    if (plen <= MQHUB_NAME_MAX) { /* a longer prefix matches no name */
        from = omap_rank(names, prefix, plen);
        to = prefix_end(names, prefix, plen);
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (c->viewer) { /* a named user: every name in range is checked */
        total = pack_names(c, &pk, names, from, to, offset, limit);
    } else {         /* everyone's list: only the page is visited */
        total = to - from;
        if (offset < total)
            pack_names(c, &pk, names, from + offset,
                       from + offset + (limit < total - offset ? limit : total - offset), 0,
                       limit);
    }
    uint64_t shown = total > offset ? total - offset : 0;
    cmd_reply_key(c, key);
    msgpack_pack_array(c->pk, (uint32_t)(shown < limit ? shown : limit));
    c->pk->callback(c->pk->data, sb.data, sb.size);
    cmd_reply_uint(c, "total", total);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
