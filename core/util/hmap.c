/* hmap.c: byte-string → pointer hash map (hmap.h).
 * FNV-1a hashes, linear probing, table doubled at 3/4 load; deletion shifts
 * the following run back so no tombstones accumulate. Start with hmap_put(). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"

static size_t hash_bytes(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return (size_t)(h ^ (h >> 29));
}

void hmap_init(hmap_t *m)
{
    memset(m, 0, sizeof(*m));
}

void hmap_free(hmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    hmap_init(m);
}

static hmap_slot_t *find(const hmap_t *m, const void *key, size_t klen, size_t hash)
{
    if (!m->cap)
        return NULL;
    for (size_t i = hash & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        hmap_slot_t *s = &m->slots[i];
        if (!s->key)
            return s;
        if (s->hash == hash && s->klen == klen && memcmp(s->key, key, klen) == 0)
            return s;
    }
}

void *hmap_get(const hmap_t *m, const void *key, size_t klen)
{
    hmap_slot_t *s = find(m, key, klen, hash_bytes(key, klen));
    return s && s->key ? s->val : NULL;
}

static int grow(hmap_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    hmap_slot_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    hmap_t next = {slots, cap, m->len};
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key)
            *find(&next, m->slots[i].key, m->slots[i].klen, m->slots[i].hash) = m->slots[i];
    }
    free(m->slots);
    *m = next;
    return 0;
}

int hmap_put(hmap_t *m, const void *key, size_t klen, void *val)
{
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m) != 0)
        return -1;
    size_t hash = hash_bytes(key, klen);
    hmap_slot_t *s = find(m, key, klen, hash);
    if (!s->key) {
        char *copy = malloc(klen ? klen : 1);
        if (!copy)
            return -1;
        memcpy(copy, key, klen);
        *s = (hmap_slot_t){copy, klen, hash, NULL};
        m->len++;
    }
    s->val = val;
    return 0;
}

void *hmap_del(hmap_t *m, const void *key, size_t klen)
{
    hmap_slot_t *s = find(m, key, klen, hash_bytes(key, klen));
    if (!s || !s->key)
        return NULL;
    void *val = s->val;
    free(s->key);
    size_t mask = m->cap - 1, hole = (size_t)(s - m->slots);
    for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
        size_t home = m->slots[i].hash & mask;
        /* Move back unless its home lies cyclically in (hole, i]. */
        if ((i > hole && (home <= hole || home > i)) || (i < hole && home <= hole && home > i)) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    m->slots[hole].key = NULL;
    m->len--;
    return val;
}
