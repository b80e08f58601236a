/* body.c: shared bodies — the bodies that queue messages fanned out from a
 * topic share with the topic's retained message (docs/architecture.md
 * "Shared bodies"). Called by queue.c (body_get, body_release) and by
 * topic.c and subscription.c (body_add_refs, body_keep), and by the
 * reclaim of a deleted topic in queue.c (body_keep).
 *
 * State in the store (docs/architecture.md "Key layout"):
 *   R<tid be64><seq be64>     how many queue messages refer to the body of
 *                             topic message seq (u64be)
 *   G<tid be64><seq be64>     that body once P<tid><seq> is gone (retention
 *                             expiry, a deleted topic's reclaim) while
 *                             references remain
 * Queue messages fanned out from a publish store no body of their own; the
 * publish adds its count of them to R once (body_add_refs). Dropping a P
 * record that R still counts first copies its body to G (body_keep);
 * queue.c reads it with body_get() and gives each reference back with
 * body_release(), the last one removing R and G. There is no
 * in-memory state: everything is in the store, so a rebuild has nothing to do.
 *
 * Start reading at body_get() and body_release(). Whatever comes to hold a
 * reference must count it with body_add_refs() and give it back with
 * body_release(), exactly once.
 */
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

#define KEY_LEN 17            /* prefix + tid + seq */

void *body_get(store_t *st, uint64_t tid, uint64_t seq, size_t *len)
{
    unsigned char k[KEY_LEN];
    msgpack_unpacked u;
    size_t vl;
    char *raw;
    store_key_id_seq(k, 'P', tid, seq);
    if (!(raw = store_get(st, k, KEY_LEN, &vl))) {
        store_key_id_seq(k, 'G', tid, seq);
        return store_get(st, k, KEY_LEN, len);
    }
    msgpack_unpacked_init(&u);
    *len = 0;
    if (msgpack_unpack_next(&u, raw, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 6 &&
        u.data.via.array.ptr[5].type == MSGPACK_OBJECT_BIN) {
        *len = u.data.via.array.ptr[5].via.bin.size;
        memmove(raw, u.data.via.array.ptr[5].via.bin.ptr, *len);
    }
    msgpack_unpacked_destroy(&u);
    return raw;
}

/* The reference count of topic message @seq (0: none). */
static uint64_t body_refs(store_t *st, uint64_t tid, uint64_t seq)
{
    unsigned char k[KEY_LEN];
    size_t vl;
    unsigned char *v;
    uint64_t n = 0;
    store_key_id_seq(k, 'R', tid, seq);
    if ((v = store_get(st, k, KEY_LEN, &vl)) && vl == 8)
        n = store_be64_get(v);
    store_free(v);
    return n;
}

static int body_set_refs(store_t *st, uint64_t tid, uint64_t seq, uint64_t n)
{
    unsigned char k[KEY_LEN], be[8];
    store_key_id_seq(k, 'R', tid, seq);
    if (n) {
        store_be64_put(be, n);
        return store_put(st, k, KEY_LEN, be, 8);
    }
    store_del(st, k, KEY_LEN);
    store_key_id_seq(k, 'G', tid, seq);
    store_del(st, k, KEY_LEN);
    return 0;
}

int body_release(store_t *st, uint64_t tid, uint64_t seq)
{
    uint64_t n = body_refs(st, tid, seq);
    return n ? body_set_refs(st, tid, seq, n - 1) : 0;
}

int body_add_refs(store_t *st, uint64_t tid, uint64_t seq, uint64_t n)
{
    return n ? body_set_refs(st, tid, seq, body_refs(st, tid, seq) + n) : 0;
}

int body_keep(store_t *st, uint64_t tid, uint64_t seq)
{
    unsigned char k[KEY_LEN];
    size_t len;
    char *body;
    int rc;
    if (!body_refs(st, tid, seq) || !(body = body_get(st, tid, seq, &len)))
        return 0;
    store_key_id_seq(k, 'G', tid, seq);
    rc = store_put(st, k, KEY_LEN, body, len);
    store_free(body);
    return rc;
}

int body_seqs_push(body_seqs_t *s, const char *k)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint64_t *nv = realloc(s->v, cap * sizeof(*nv));
        if (!nv)
            return 1;
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = store_be64_get((const unsigned char *)k + 9);
    return 0;
}
