/* mpjson.c: the native replies unpacked to JSON for actions.c
 * (mpjson_unpack). bin and str both come back as strings, with any byte
 * sequence that is not UTF-8 replaced by U+FFFD (CMQ bodies are text). The
 * other way, requests are packed by the WebSocket transport's codec
 * (codec_json_pack: "body" as bin).
 */
#include <stdlib.h>
#include <string.h>

#include "cmq.h"
#include "utf8.h"

static json_t *text(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    char *fixed;
    size_t o = 0;

    if (v != NULL || (fixed = malloc(n * 3 + 1)) == NULL)
        return v;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len(s + i, n - i);
        if (k == 0) {
            memcpy(fixed + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(fixed + o, s + i, k);
        o += k;
        i += k;
    }
    v = json_stringn(fixed, o);
    free(fixed);
    return v;
}

json_t *mpjson_unpack(const msgpack_object *o)
{
    json_t *v;

    switch (o->type) {
    case MSGPACK_OBJECT_MAP:
        v = json_object();
        for (uint32_t i = 0; v != NULL && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            char key[128];
            if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size >= sizeof key)
                continue;
            memcpy(key, kv->key.via.str.ptr, kv->key.via.str.size);
            key[kv->key.via.str.size] = '\0';
            json_object_set_new(v, key, mpjson_unpack(&kv->val));
        }
        return v;
    case MSGPACK_OBJECT_ARRAY:
        v = json_array();
        for (uint32_t i = 0; v != NULL && i < o->via.array.size; i++)
            json_array_append_new(v, mpjson_unpack(&o->via.array.ptr[i]));
        return v;
    case MSGPACK_OBJECT_STR:
        return text(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return text(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    default:
        return json_null();
    }
}
