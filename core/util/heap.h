/* heap.h: a binary min-heap of fixed-size items, ordered by a compare function.
 * Leaf code (never includes a layer's header). Items are copied in and out;
 * the heap owns only its array. Not thread-safe. */
#ifndef MQHUB_UTIL_HEAP_H
#define MQHUB_UTIL_HEAP_H

#include <stddef.h>

/* <0, 0, >0 like memcmp: the smallest item is on top. */
typedef int (*heap_cmp_fn)(const void *a, const void *b);

typedef struct heap {
    char *items;
    size_t len, cap, size;
    heap_cmp_fn cmp;
} heap_t;

void heap_init(heap_t *h, size_t item_size, heap_cmp_fn cmp);
void heap_free(heap_t *h);
/* Remove every item, keep the allocation. */
void heap_clear(heap_t *h);
/* Copy @item in. 0, or -1 when out of memory (the heap is unchanged). */
int heap_push(heap_t *h, const void *item);
/* The smallest item (valid until the next change), or NULL when empty. */
const void *heap_top(const heap_t *h);
/* Copy the smallest item to @out (may be NULL) and remove it. 0, or -1 when empty. */
int heap_pop(heap_t *h, void *out);
static inline size_t heap_len(const heap_t *h) { return h->len; }

#endif
