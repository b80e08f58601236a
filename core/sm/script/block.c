/* block.c: blocks — records that refuse every send and publish whose
 * message carries the attribute attr=value, until they expire (PROTOCOL.md
 * "Scripts and blocks", docs/scripting.md). A hook makes one with hub.block
 * (block_add, through the call's overlay); the gate (script.c) checks them
 * before any hook runs (block_check: one lookup per message attribute,
 * skipped while there is no block); block.list shows the active ones,
 * block.delete lifts one, and tick removes the expired ones (block_due,
 * asked by script.c's expiry index).
 *
 * Store key (docs/architecture.md "Key layout"):
 *   K<attr>\0<value>       block [until_ms, reason, script]
 * script_store_write() keeps the count of K records (sc->n_blocks);
 * block_add() hands the until to tick's expiry index (script.c) with the
 * record (script_ov_put_expiring), block_due() reads it back.
 *
 * Start reading at block_check(). To add a field to blocks: block_add()
 * writes the record, block_decode() accepts it, pack_block() shows it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script_int.h"

/* Decode a block record: false when corrupt. */
static bool block_decode(msgpack_unpacked *u, const char *v, size_t vl)
{
    return msgpack_unpack_next(u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
           u->data.type == MSGPACK_OBJECT_ARRAY && u->data.via.array.size == 3 &&
           u->data.via.array.ptr[1].type == MSGPACK_OBJECT_STR &&
           u->data.via.array.ptr[2].type == MSGPACK_OBJECT_STR;
}

static void pack_block(msgpack_packer *pk, const char *k, size_t kl, const msgpack_object *o)
{
    const char *sep = memchr(k + 1, 0, kl - 1);
    size_t al = sep ? (size_t)(sep - k - 1) : kl - 1;
    msgpack_pack_map(pk, 5);
    mp_pack_str(pk, "attr", 4);
    mp_pack_str(pk, k + 1, al);
    mp_pack_str(pk, "value", 5);
    mp_pack_str(pk, sep ? sep + 1 : "", sep ? kl - al - 2 : 0);
    mp_pack_str(pk, "reason", 6);
    msgpack_pack_object(pk, o[1]);
    mp_pack_str(pk, "until", 5);
    msgpack_pack_uint64(pk, o[0].via.u64);
    mp_pack_str(pk, "script", 6);
    msgpack_pack_object(pk, o[2]);
}

void block_add(scripts_t *sc, const char *attr, size_t al, const char *value, size_t vl,
               uint64_t ttl_s, const char *reason, size_t rl)
{
    char k[2 + BLOCK_ATTR_MAX + BLOCK_VALUE_MAX];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, sc->now + ttl_s * 1000);
    mp_pack_str(&pk, reason ? reason : "", rl);
    mp_pack_str(&pk, sc->cur->name, sc->cur->nlen);
    script_ov_put_expiring(sc, k, script_key2(k, sizeof(k), 'K', attr, al, value, vl), sb.data,
                           sb.size, sc->now + ttl_s * 1000, 0);
    msgpack_sbuffer_destroy(&sb);
    sc->call_blocks++;
}

bool block_check(scripts_t *sc, const msgpack_object *attrs, char *why, size_t whylen)
{
    char k[2 + BLOCK_ATTR_MAX + BLOCK_VALUE_MAX];
    if (!attrs || attrs->type != MSGPACK_OBJECT_MAP || (sc->n_blocks == 0 && !sc->testing))
        return false;
    /* A backtest sees only the blocks it made itself. */
    for (uint32_t i = 0; i < attrs->via.map.size; i++) {
        const msgpack_object_str *a = &attrs->via.map.ptr[i].key.via.str;
        const msgpack_object_str *v = &attrs->via.map.ptr[i].val.via.str;
        size_t kl = script_key2(k, sizeof(k), 'K', a->ptr, a->size, v->ptr, v->size), vl;
        struct ov *o = sc->testing && kl ? hmap_get(&sc->test_ov, k, kl) : NULL;
        char *rec = NULL;
        if (kl && a->size <= BLOCK_ATTR_MAX && !sc->testing)
            rec = script_ov_get(sc, k, kl, &vl);
        else if (o && !o->del && (rec = malloc(o->vl + 1)))
            memcpy(rec, o->v, vl = o->vl);
        msgpack_unpacked u;
        bool hit = false;
        msgpack_unpacked_init(&u);
        if (rec && msgpack_unpack_next(&u, rec, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
            u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 3 &&
            u.data.via.array.ptr[0].via.u64 > sc->now) {
            const msgpack_object *r = u.data.via.array.ptr;
            hit = true;
            snprintf(why, whylen, "%.*s=%.*s is blocked until %llu by script '%.*s': %.*s",
                     (int)a->size, a->ptr, (int)(v->size > 128 ? 128 : v->size), v->ptr,
                     (unsigned long long)r[0].via.u64, (int)r[2].via.str.size, r[2].via.str.ptr,
                     (int)r[1].via.str.size, r[1].via.str.ptr);
        }
        msgpack_unpacked_destroy(&u);
        free(rec);
        if (hit)
            return true;
    }
    return false;
}

uint64_t block_due(const char *v, size_t vl)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    uint64_t due = block_decode(&u, v, vl) ? u.data.via.array.ptr[0].via.u64 : 0;
    msgpack_unpacked_destroy(&u);
    return due;
}

void block_pack_record(msgpack_packer *pk, const char *k, size_t kl, const char *v, size_t vl)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (block_decode(&u, v, vl))
        pack_block(pk, k, kl, u.data.via.array.ptr);
    else
        msgpack_pack_nil(pk);
    msgpack_unpacked_destroy(&u);
}

/* ---- block.list, block.delete ---- */

struct block_visit {
    uint64_t now; /* the read's clock: a block past its until is not listed,
                   * even before tick removed it */
    msgpack_packer *pk;
    uint32_t n;
};

static int block_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct block_visit *b = arg;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (block_decode(&u, v, vl) && u.data.via.array.ptr[0].via.u64 > b->now) {
        if (b->pk)
            pack_block(b->pk, k, kl, u.data.via.array.ptr);
        b->n++;
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}

int block_op_list(cmd_t *c)
{
    scripts_t *sc = c->sc;
    struct block_visit b = {.now = c->now};
    if (!c->pk)
        return 0;
    store_scan(sc->st, "K", 1, NULL, 0, block_visit, &b);
    cmd_reply_key(c, "blocks");
    msgpack_pack_array(c->pk, b.n);
    b = (struct block_visit){.now = c->now, .pk = c->pk};
    store_scan(sc->st, "K", 1, NULL, 0, block_visit, &b);
    return 0;
}

int block_op_delete(cmd_t *c)
{
    scripts_t *sc = c->sc;
    const char *attr, *value;
    size_t al, vl, ol;
    char k[2 + BLOCK_ATTR_MAX + BLOCK_VALUE_MAX];
    int rc;
    if ((rc = cmd_arg_str(c, c->req, "attr", true, &attr, &al)) ||
        (rc = cmd_arg_str(c, c->req, "value", true, &value, &vl)))
        return rc;
    size_t kl = script_key2(k, sizeof(k), 'K', attr, al, value, vl);
    void *old = kl ? store_get(sc->st, k, kl, &ol) : NULL;
    store_free(old);
    if (!old)
        return cmd_fail(c, MQHUB_ENOT_FOUND, "no block on %.*s=%.*s", (int)(al > 64 ? 64 : al),
                        attr, (int)(vl > 64 ? 64 : vl), value);
    script_store_write(sc, k, kl, NULL, 0, true);
    return 0;
}
