/* codec.c: JSON <-> MessagePack for the mqhub.v1.json subprotocol.
 *
 * Start with codec_json_pack() (client -> hub) and codec_msgpack_to_json()
 * (hub -> client); the rules are in codec.h. Both walk the value
 * recursively; the only key-dependent rules are for bodies ("body" and any
 * "<key>_base64"). To map another key specially, extend pack_member() and
 * set_member() together so the two directions stay inverse.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "mp.h"

#define B64_SUFFIX "_base64"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *codec_base64_encode(const unsigned char *in, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    size_t o = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static int b64_value(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p != NULL ? (int)(p - b64) : -1;
}

long codec_base64_decode(const char *in, size_t len, unsigned char *out)
{
    unsigned v = 0;
    int bits = 0;
    long n = 0;
    size_t pad = 0;

    if (len % 4 != 0)
        return -1;
    while (pad < 2 && len > pad && in[len - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < len - pad; i++) {
        int d = b64_value(in[i]);
        if (d < 0)
            return -1;
        v = (v << 6) | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(v >> bits);
        }
    }
    return n;
}

/* ------------------------------------------------------- JSON -> msgpack */

static int pack_value(const json_t *v, msgpack_packer *pk, char *err, size_t errlen);

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);
    return n > m && memcmp(s + n - m, suffix, m) == 0;
}

static int pack_member(const char *key, const json_t *v, msgpack_packer *pk, char *err,
                       size_t errlen)
{
    size_t kl = strlen(key);

    if (json_is_string(v) && ends_with(key, kl, B64_SUFFIX)) {
        size_t sl = json_string_length(v);
        unsigned char *bytes = malloc(sl / 4 * 3 + 1);
        long n = bytes != NULL ? codec_base64_decode(json_string_value(v), sl, bytes) : -1;
        if (n < 0) {
            snprintf(err, errlen, "%s is not base64", key);
            free(bytes);
            return -1;
        }
        kl -= strlen(B64_SUFFIX);
        msgpack_pack_str_with_body(pk, key, kl);
        msgpack_pack_bin_with_body(pk, bytes, (size_t)n);
        free(bytes);
        return 0;
    }
    msgpack_pack_str_with_body(pk, key, kl);
    if (json_is_string(v) && strcmp(key, "body") == 0)
        return msgpack_pack_bin_with_body(pk, json_string_value(v), json_string_length(v));
    return pack_value(v, pk, err, errlen);
}

static int pack_value(const json_t *v, msgpack_packer *pk, char *err, size_t errlen)
{
    const char *key;
    json_t *m;
    size_t i;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach((json_t *)v, key, m)
            if (pack_member(key, m, pk, err, errlen) != 0)
                return -1;
        return 0;
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, m)
            if (pack_value(m, pk, err, errlen) != 0)
                return -1;
        return 0;
    case JSON_STRING:
        return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        if (json_integer_value(v) >= 0)
            return msgpack_pack_uint64(pk, (uint64_t)json_integer_value(v));
        return msgpack_pack_int64(pk, json_integer_value(v));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(v));
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    default:
        return msgpack_pack_nil(pk);
    }
}

int codec_json_pack(const json_t *v, msgpack_packer *pk, char *err, size_t errlen)
{
    return pack_value(v, pk, err, errlen);
}

/* One pass over the text before jansson builds it: nesting deeper than
 * CODEC_JSON_MAX_DEPTH or more than CODEC_JSON_MAX_VALUES values (counted
 * by their separators) is refused in microseconds per KiB, so a 16 MiB
 * message cannot hold the loop for seconds in json_loadb and packing. */
static int json_prescan(const char *text, size_t len, char *err, size_t errlen)
{
    size_t depth = 0, values = 1;
    bool in_str = false;

    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"')
            in_str = true;
        else if ((ch == '[' || ch == '{') && ++depth > CODEC_JSON_MAX_DEPTH) {
            snprintf(err, errlen, "JSON nested deeper than %d levels", CODEC_JSON_MAX_DEPTH);
            return -1;
        } else if ((ch == ']' || ch == '}') && depth > 0)
            depth--;
        else if ((ch == ',' || ch == ':') && ++values > CODEC_JSON_MAX_VALUES) {
            snprintf(err, errlen, "JSON with more than %d values", CODEC_JSON_MAX_VALUES);
            return -1;
        }
    }
    return 0;
}

int codec_json_to_msgpack(const char *text, size_t len, msgpack_sbuffer *out, char *err,
                          size_t errlen)
{
    json_error_t je;
    msgpack_packer pk;
    json_t *root;
    int rc;

    if (json_prescan(text, len, err, errlen) != 0)
        return -1;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        snprintf(err, errlen, "not JSON: %s at line %d column %d", je.text, je.line,
                 je.column);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "a request must be a JSON object");
        json_decref(root);
        return -1;
    }
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    rc = pack_value(root, &pk, err, errlen);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------- msgpack -> JSON */

/* Bytes as a JSON string when valid UTF-8 (jansson checks), else NULL. */
static json_t *utf8_string(const char *p, size_t n)
{
    return json_stringn(p, n);
}

static json_t *base64_string(const char *p, size_t n)
{
    char *s = codec_base64_encode((const unsigned char *)p, n);
    json_t *j = s != NULL ? json_string(s) : NULL;
    free(s);
    return j;
}

static int set_member(json_t *obj, const msgpack_object_kv *kv)
{
    const msgpack_object *v = &kv->val;
    char key[256];
    json_t *j;

    if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size >= sizeof key - 8)
        return 0; /* the protocol has only short string keys */
    memcpy(key, kv->key.via.str.ptr, kv->key.via.str.size);
    key[kv->key.via.str.size] = '\0';
    if (v->type == MSGPACK_OBJECT_BIN || v->type == MSGPACK_OBJECT_STR) {
        const char *p = v->type == MSGPACK_OBJECT_BIN ? v->via.bin.ptr : v->via.str.ptr;
        size_t n = v->type == MSGPACK_OBJECT_BIN ? v->via.bin.size : v->via.str.size;
        j = utf8_string(p, n);
        if (j == NULL) {
            strcat(key, B64_SUFFIX);
            j = base64_string(p, n);
        }
    } else {
        j = codec_msgpack_to_json(v);
    }
    return j != NULL ? json_object_set_new(obj, key, j) : -1;
}

json_t *codec_msgpack_to_json(const msgpack_object *o)
{
    json_t *j;

    switch (o->type) {
    case MSGPACK_OBJECT_MAP:
        j = json_object();
        for (uint32_t i = 0; j != NULL && i < o->via.map.size; i++)
            if (set_member(j, &o->via.map.ptr[i]) != 0) {
                json_decref(j);
                return NULL;
            }
        return j;
    case MSGPACK_OBJECT_ARRAY:
        j = json_array();
        for (uint32_t i = 0; j != NULL && i < o->via.array.size; i++)
            if (json_array_append_new(j, codec_msgpack_to_json(&o->via.array.ptr[i])) != 0) {
                json_decref(j);
                return NULL;
            }
        return j;
    case MSGPACK_OBJECT_STR:
        j = utf8_string(o->via.str.ptr, o->via.str.size);
        return j != NULL ? j : base64_string(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        j = utf8_string(o->via.bin.ptr, o->via.bin.size);
        return j != NULL ? j : base64_string(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return json_real((double)o->via.u64);
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    default:
        return json_null();
    }
}

json_t *codec_msgpack_value(const char *buf, size_t len)
{
    msgpack_unpacked u;
    size_t off = 0;
    json_t *j = NULL;

    msgpack_unpacked_init(&u);
    if (mp_unpack(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len)
        j = codec_msgpack_to_json(&u.data);
    msgpack_unpacked_destroy(&u);
    return j;
}

char *codec_msgpack_text(const char *buf, size_t len, size_t *outlen)
{
    json_t *j = codec_msgpack_value(buf, len);
    char *text = NULL;

    if (j != NULL)
        text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (text != NULL)
        *outlen = strlen(text);
    return text;
}
