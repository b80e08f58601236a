/* heap.c: binary min-heap of fixed-size items (heap.h).
 * Start with heap_push()/heap_pop(). Items are moved with memcpy through one
 * scratch slot at the end of the array, so any item size works without a
 * temporary allocation. */
#include <stdlib.h>
#include <string.h>

#include "heap.h"

#define ITEM(h, i) ((h)->items + (size_t)(i) * (h)->size)

void heap_init(heap_t *h, size_t item_size, heap_cmp_fn cmp)
{
    memset(h, 0, sizeof(*h));
    h->size = item_size;
    h->cmp = cmp;
}

void heap_free(heap_t *h)
{
    free(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}

void heap_clear(heap_t *h)
{
    h->len = 0;
}

static void swap(heap_t *h, size_t a, size_t b)
{
    char *tmp = ITEM(h, h->cap); /* the scratch slot */
    memcpy(tmp, ITEM(h, a), h->size);
    memcpy(ITEM(h, a), ITEM(h, b), h->size);
    memcpy(ITEM(h, b), tmp, h->size);
}

static void sift_up(heap_t *h, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->cmp(ITEM(h, i), ITEM(h, parent)) >= 0)
            break;
        swap(h, i, parent);
        i = parent;
    }
}

static void sift_down(heap_t *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->len && h->cmp(ITEM(h, l), ITEM(h, m)) < 0)
            m = l;
        if (r < h->len && h->cmp(ITEM(h, r), ITEM(h, m)) < 0)
            m = r;
        if (m == i)
            return;
        swap(h, i, m);
        i = m;
    }
}

int heap_push(heap_t *h, const void *item)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        char *p = realloc(h->items, (cap + 1) * h->size);
        if (!p)
            return -1;
        h->items = p;
        h->cap = cap;
    }
    memcpy(ITEM(h, h->len), item, h->size);
    h->len++;
    sift_up(h, h->len - 1);
    return 0;
}

const void *heap_top(const heap_t *h)
{
    return h->len ? h->items : NULL;
}

int heap_pop(heap_t *h, void *out)
{
    if (!h->len)
        return -1;
    if (out)
        memcpy(out, ITEM(h, 0), h->size);
    h->len--;
    if (h->len) {
        memcpy(ITEM(h, 0), ITEM(h, h->len), h->size);
        sift_down(h, 0);
    }
    return 0;
}
