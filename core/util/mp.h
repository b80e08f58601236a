/* mp.h: MessagePack helpers over msgpack-c (mp.c) — leaf code shared by the
 * state machine, the node, the transports, the client and the fuzzer.
 * Thread-safe (no state). */
#ifndef MQHUB_UTIL_MP_H
#define MQHUB_UTIL_MP_H

#include <stddef.h>

#include <msgpack.h>

/* The value of the str key @key in the map @map, or NULL (also when @map is
 * NULL or not a map). Points into @map. */
const msgpack_object *mp_map_get(const msgpack_object *map, const char *key);

/* Pack a str of @len bytes / of the NUL-terminated @s. */
void mp_pack_str(msgpack_packer *pk, const char *s, size_t len);
void mp_pack_cstr(msgpack_packer *pk, const char *s);
/* Pack the NUL-terminated text @s as a str that is valid UTF-8: bytes that
 * are not are escaped as \xNN (utf8_escape()), and such a text is cut at
 * 4 KiB; a valid text is packed as it is.
 * For sentences that may echo what a client sent (error texts). */
void mp_pack_text(msgpack_packer *pk, const char *s);

/* The size guard to run before msgpack_unpack_next() on untrusted bytes: the
 * size of the one MessagePack value at @buf, walked without building it; 0
 * when malformed, truncated, or when a container announces more elements
 * than bytes remain. msgpack-c allocates for the announced count before
 * reading the elements, so without this check a 5-byte frame could make the
 * process allocate tens of gigabytes. */
size_t mp_extent(const char *buf, size_t len);

/* msgpack_unpack_next() behind the size guard — the one way every decoder of
 * untrusted bytes (hub, transports, Lua, client) unpacks: the value at
 * @buf + *@off (@off may be NULL: offset 0) into @u, with *@off moved past
 * it. MSGPACK_UNPACK_PARSE_ERROR, without allocating, when mp_extent()
 * refuses the bytes; otherwise what msgpack_unpack_next() returns. */
msgpack_unpack_return mp_unpack(msgpack_unpacked *u, const char *buf, size_t len,
                                size_t *off);

#endif
