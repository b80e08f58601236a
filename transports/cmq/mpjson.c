/* mpjson.c: the native requests actions.c builds as JSON values, packed as
 * MessagePack (mpjson_pack), and the native replies unpacked to JSON
 * (mpjson_unpack). Message bodies are bytes on the native side and strings
 * in CMQ: "body" is packed as bin; bin comes back as a string, with any
 * byte sequence that is not UTF-8 replaced by U+FFFD (CMQ bodies are text).
 */
#include <stdlib.h>
#include <string.h>

#include "cmq.h"

void mpjson_pack(msgpack_packer *pk, const json_t *v, const char *key)
{
    const char *k;
    json_t *e;
    size_t i;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach((json_t *)v, k, e) {
            msgpack_pack_str_with_body(pk, k, strlen(k));
            mpjson_pack(pk, e, k);
        }
        break;
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, e)
            mpjson_pack(pk, e, NULL);
        break;
    case JSON_STRING:
        if (key != NULL && strcmp(key, "body") == 0)
            msgpack_pack_bin_with_body(pk, json_string_value(v), json_string_length(v));
        else
            msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        if (json_integer_value(v) >= 0)
            msgpack_pack_uint64(pk, (uint64_t)json_integer_value(v));
        else
            msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    default:
        msgpack_pack_nil(pk);
        break;
    }
}

/* The length of the valid UTF-8 sequence at @s (at most @n bytes), 0 when
 * it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
                 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;

    if (len == 0 || len > n || (len == 2 && s[0] < 0xc2) || (len == 4 && s[0] > 0xf4))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((len == 3 && s[0] == 0xe0 && s[1] < 0xa0) || (len == 3 && s[0] == 0xed && s[1] > 0x9f) ||
        (len == 4 && s[0] == 0xf0 && s[1] < 0x90) || (len == 4 && s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

static json_t *text(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    char *fixed;
    size_t o = 0;

    if (v != NULL || (fixed = malloc(n * 3 + 1)) == NULL)
        return v;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
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
