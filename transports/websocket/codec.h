/* codec.h: the JSON subprotocol's mapping (docs/websocket.md "JSON"):
 * JSON text <-> the MessagePack maps of docs/protocol.md. Pure functions, no
 * I/O, no libwebsockets: the transport, the stats collector and tests share
 * them.
 *
 * JSON -> MessagePack: objects become maps, non-negative integers uint,
 * negative ones int, reals float64. A string under the key "body" becomes
 * bin; a string under "<key>_base64" is decoded and packed as bin under
 * <key> (so "body_base64" carries bytes that are not UTF-8).
 * MessagePack -> JSON: bin and str become strings when valid UTF-8, else
 * "<key>_base64" with the base64 text; ext becomes null.
 */
#ifndef MQHUB_WS_CODEC_H
#define MQHUB_WS_CODEC_H

#include <stddef.h>

#include <jansson.h>
#include <msgpack.h>

/* Pack @v into @pk (rules above). 0, or -1 with a sentence in @err when a
 * "_base64" value is not base64. */
int codec_json_pack(const json_t *v, msgpack_packer *pk, char *err, size_t errlen);

/* The limits of a JSON request, checked in one pass before parsing. */
#define CODEC_JSON_MAX_DEPTH 64
#define CODEC_JSON_MAX_VALUES 100000

/* Parse the JSON text @text (@len bytes, one object) and append its
 * MessagePack form to @out (initialised by the caller). 0, or -1 with a
 * sentence in @err (also for nesting deeper than CODEC_JSON_MAX_DEPTH or
 * more than CODEC_JSON_MAX_VALUES values, refused before parsing). */
int codec_json_to_msgpack(const char *text, size_t len, msgpack_sbuffer *out, char *err,
                          size_t errlen);

/* A new JSON value for @o (rules above); NULL on out-of-memory. */
json_t *codec_msgpack_to_json(const msgpack_object *o);

/* A new JSON value for the one MessagePack value in @buf (@len bytes); NULL
 * when @buf is not one value or out of memory. */
json_t *codec_msgpack_value(const char *buf, size_t len);

/* The compact JSON text of the one MessagePack value in @buf (@len bytes),
 * malloc'ed, NUL-terminated, length in *outlen; NULL when @buf is not one
 * value or out of memory. */
char *codec_msgpack_text(const char *buf, size_t len, size_t *outlen);

/* Base64 (RFC 4648, with padding). encode returns a malloc'ed string;
 * decode writes at most len*3/4 bytes into @out and returns the count, or
 * -1 when @in is not base64. */
char *codec_base64_encode(const unsigned char *in, size_t len);
long codec_base64_decode(const char *in, size_t len, unsigned char *out);

#endif
