/* wire.c: the request/response envelope of the protocol (docs/protocol.md
 * "Frames"), shared by the hub, the push engine, cluster ops and the fuzzer:
 * decoding one request (wire_decode_request(): the size guard, one map, a
 * uint id, a str op), the name rule, and packing a response's head or a
 * whole error response. Leaf code over msgpack-c; see wire.h.
 */
#include <stdio.h>
#include <string.h>

#include "mp.h"
#include "wire.h"

int wire_decode_request(msgpack_unpacked *u, const char *buf, size_t len, wire_request_t *v,
                        char *errmsg, size_t errlen)
{
    const msgpack_object *id, *op;
    size_t off = 0;
    msgpack_unpack_return ret;

    memset(v, 0, sizeof *v);
    ret = mp_unpack(u, buf, len, &off);
    if (ret != MSGPACK_UNPACK_SUCCESS) {
        snprintf(errmsg, errlen, "the frame is not one complete MessagePack value");
        return MQHUB_EBAD_REQUEST;
    }
    if (off != len) {
        snprintf(errmsg, errlen, "the frame holds %zu bytes after the request map",
                 len - off);
        return MQHUB_EBAD_REQUEST;
    }
    if (u->data.type != MSGPACK_OBJECT_MAP) {
        snprintf(errmsg, errlen, "a request must be a MessagePack map");
        return MQHUB_EBAD_REQUEST;
    }
    v->map = &u->data;
    id = mp_map_get(v->map, "id");
    if (id == NULL || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        snprintf(errmsg, errlen, "id: every request needs an unsigned integer id");
        return MQHUB_EBAD_REQUEST;
    }
    v->id = id->via.u64;
    v->has_id = true;
    op = mp_map_get(v->map, "op");
    if (op == NULL || op->type != MSGPACK_OBJECT_STR) {
        snprintf(errmsg, errlen, "op: every request needs an op string");
        return MQHUB_EBAD_REQUEST;
    }
    v->op = op->via.str.ptr;
    v->op_len = op->via.str.size;
    return 0;
}

/* ---- responses ---- */

bool wire_name_valid(const char *s, size_t len)
{
    if (len < 1 || len > MQHUB_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || (ch != '_' && ch != '-' && ch != '.')))
            return false;
    }
    return true;
}

void wire_pack_head(msgpack_packer *pk, bool has_id, uint64_t id, bool ok, unsigned n_extra)
{
    msgpack_pack_map(pk, (has_id ? 1 : 0) + 1 + n_extra);
    if (has_id) {
        mp_pack_cstr(pk, "id");
        msgpack_pack_uint64(pk, id);
    }
    mp_pack_cstr(pk, "ok");
    ok ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

void wire_pack_error(msgpack_packer *pk, bool has_id, uint64_t id, int code, const char *msg,
                     const char *leader)
{
    wire_pack_head(pk, has_id, id, false, leader ? 3 : 2);
    mp_pack_cstr(pk, "code");
    mp_pack_cstr(pk, mqhub_err_name(code));
    mp_pack_cstr(pk, "error");
    mp_pack_text(pk, msg);
    if (leader != NULL) {
        mp_pack_cstr(pk, "leader");
        mp_pack_cstr(pk, leader);
    }
}
