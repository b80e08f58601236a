/* mp.c: MessagePack helpers over msgpack-c — a map lookup, str packing, and
 * the size guard every decoder of untrusted bytes runs first (mp_extent(),
 * wrapped with the unpack itself in mp_unpack()).
 * Leaf code: includes nothing of core/. See mp.h for the contracts.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "mp.h"
#include "utf8.h"

const msgpack_object *mp_map_get(const msgpack_object *map, const char *key)
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

void mp_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

void mp_pack_cstr(msgpack_packer *pk, const char *s)
{
    mp_pack_str(pk, s, strlen(s));
}

void mp_pack_text(msgpack_packer *pk, const char *s)
{
    char esc[4096];
    size_t n = strlen(s);

    if (utf8_valid(s, n)) {
        mp_pack_str(pk, s, n);
        return;
    }
    mp_pack_str(pk, esc, utf8_escape(esc, sizeof esc, s, n));
}

/* ---- the size guard ---- */

/* Read a @size-byte big-endian length at p[*off]; false past @len. */
static bool read_len(const unsigned char *p, size_t len, size_t *off, unsigned size,
                     uint64_t *n)
{
    if (len - *off < size)
        return false;
    *n = 0;
    for (unsigned i = 0; i < size; i++)
        *n = *n << 8 | p[(*off)++];
    return true;
}

/* The header of one MessagePack value at p[*off] (moved past it): how many
 * values it contains (@items) and how many payload bytes follow (@skip).
 * False on the unused byte 0xc1 or a truncated header. */
static bool value_header(const unsigned char *p, size_t len, size_t *off, uint64_t *items,
                         uint64_t *skip)
{
    /* Payload of the fixed-size kinds 0xca..0xd8; 0 marks the others. */
    static const unsigned char fixed[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 2, 3, 5, 9, 17};
    unsigned char b = p[(*off)++];
    uint64_t n;

    *items = *skip = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return true;
    if (b <= 0x8f || (b >= 0xde && b <= 0xdf)) { /* maps */
        if (b <= 0x8f)
            n = b & 0x0f;
        else if (!read_len(p, len, off, b == 0xde ? 2 : 4, &n))
            return false;
        *items = 2 * n;
        return true;
    }
    if (b <= 0x9f || b == 0xdc || b == 0xdd) { /* arrays */
        if (b <= 0x9f)
            n = b & 0x0f;
        else if (!read_len(p, len, off, b == 0xdc ? 2 : 4, &n))
            return false;
        *items = n;
        return true;
    }
    if (b <= 0xbf) {
        *skip = b & 0x1f;
        return true;
    }
    if (b >= 0xca && b <= 0xd8) {
        *skip = fixed[b - 0xca];
        return true;
    }
    switch (b) {
    case 0xc4: case 0xd9: return read_len(p, len, off, 1, skip);
    case 0xc5: case 0xda: return read_len(p, len, off, 2, skip);
    case 0xc6: case 0xdb: return read_len(p, len, off, 4, skip);
    case 0xc7: case 0xc8: case 0xc9: /* ext: length, then a type byte */
        if (!read_len(p, len, off, 1u << (b - 0xc7), skip))
            return false;
        *skip += 1;
        return true;
    default: /* 0xc1 */
        return false;
    }
}

size_t mp_extent(const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf;
    uint64_t need = 1, items, skip;
    size_t off = 0;

    while (need > 0) {
        if (off >= len || !value_header(p, len, &off, &items, &skip))
            return 0;
        need--;
        if (skip > len - off)
            return 0;
        off += skip;
        need += items;
        if (need > len - off) /* every pending value takes a byte at least */
            return 0;
    }
    return off;
}

msgpack_unpack_return mp_unpack(msgpack_unpacked *u, const char *buf, size_t len, size_t *off)
{
    size_t start = off != NULL ? *off : 0;

    if (start >= len || mp_extent(buf + start, len - start) == 0)
        return MSGPACK_UNPACK_PARSE_ERROR;
    return msgpack_unpack_next(u, buf, len, off);
}
