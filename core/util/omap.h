/* omap.h: an ordered map from byte-string keys to pointers, in bytewise key
 * order (memcmp; a key sorts before its extensions, as in the store), with
 * ranks: lookup, insert, delete, the rank of a key and the entry at a rank
 * are O(log n) (an AVL tree whose nodes count their subtree). Leaf code.
 * Keys are copied; values are not owned. Not thread-safe. */
#ifndef MQHUB_UTIL_OMAP_H
#define MQHUB_UTIL_OMAP_H

#include <stddef.h>

typedef struct omap_node omap_node_t;

typedef struct omap {
    omap_node_t *root;
} omap_t;

void omap_init(omap_t *m);
/* Frees the nodes and their keys, not the values; @m is empty afterwards. */
void omap_free(omap_t *m);
void *omap_get(const omap_t *m, const void *key, size_t klen);
/* Insert or replace. 0, or -1 when out of memory (the map is unchanged). */
int omap_put(omap_t *m, const void *key, size_t klen, void *val);
/* The removed value, or NULL when absent. */
void *omap_del(omap_t *m, const void *key, size_t klen);
size_t omap_len(const omap_t *m);
/* How many keys sort before @key: the rank it has, or would have. */
size_t omap_rank(const omap_t *m, const void *key, size_t klen);
/* The value of rank @i (0 = the smallest key), its key in *key / *klen
 * (valid until that entry is removed); NULL when @i >= omap_len(). */
void *omap_at(const omap_t *m, size_t i, const char **key, size_t *klen);

#endif
