/* hmap.h: a hash map from byte-string keys to pointers (open addressing,
 * linear probing, backward-shift deletion). Leaf code. Keys are copied; values
 * are not owned. Iteration order is unspecified: never let it decide anything
 * that must be deterministic. Not thread-safe. */
#ifndef MQHUB_UTIL_HMAP_H
#define MQHUB_UTIL_HMAP_H

#include <stddef.h>

typedef struct hmap_slot {
    char *key; /* NULL: empty */
    size_t klen;
    size_t hash;
    void *val;
} hmap_slot_t;

typedef struct hmap {
    hmap_slot_t *slots;
    size_t cap, len; /* cap is 0 or a power of two */
} hmap_t;

void hmap_init(hmap_t *m);
/* Frees the keys and the table, not the values. */
void hmap_free(hmap_t *m);
void *hmap_get(const hmap_t *m, const void *key, size_t klen);
/* Insert or replace. 0, or -1 when out of memory. */
int hmap_put(hmap_t *m, const void *key, size_t klen, void *val);
/* The removed value, or NULL when absent. */
void *hmap_del(hmap_t *m, const void *key, size_t klen);
static inline size_t hmap_len(const hmap_t *m) { return m->len; }

#endif
