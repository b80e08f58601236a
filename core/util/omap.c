/* omap.c: the ordered map of omap.h — an AVL tree; each node keeps its
 * height (for balance) and the size of its subtree (for ranks). Insert and
 * delete are recursive (depth ≤ 1.44 log2 n) and rebalance on the way up
 * with balance(). Start with omap_put() and omap_del(). */
#include <stdlib.h>
#include <string.h>

#include "omap.h"

struct omap_node {
    omap_node_t *l, *r;
    size_t size; /* nodes in this subtree */
    int h;       /* height: 1 for a leaf */
    void *val;
    size_t klen;
    char key[];
};

static int keycmp(const void *a, size_t al, const void *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    return c ? c : (al > bl) - (al < bl);
}

static int height(const omap_node_t *n) { return n ? n->h : 0; }
static size_t count(const omap_node_t *n) { return n ? n->size : 0; }

static void update(omap_node_t *n)
{
    int hl = height(n->l), hr = height(n->r);
    n->h = 1 + (hl > hr ? hl : hr);
    n->size = 1 + count(n->l) + count(n->r);
}

static omap_node_t *rotate_right(omap_node_t *n)
{
    omap_node_t *l = n->l;
    n->l = l->r;
    l->r = n;
    update(n);
    update(l);
    return l;
}

static omap_node_t *rotate_left(omap_node_t *n)
{
    omap_node_t *r = n->r;
    n->r = r->l;
    r->l = n;
    update(n);
    update(r);
    return r;
}

/* Restore the AVL property at @n (its subtrees are balanced). */
static omap_node_t *balance(omap_node_t *n)
{
    int b;
    update(n);
    b = height(n->l) - height(n->r);
    if (b > 1) {
        if (height(n->l->l) < height(n->l->r))
            n->l = rotate_left(n->l);
        return rotate_right(n);
    }
    if (b < -1) {
        if (height(n->r->r) < height(n->r->l))
            n->r = rotate_right(n->r);
        return rotate_left(n);
    }
    return n;
}

static omap_node_t *find(const omap_t *m, const void *key, size_t klen)
{
    omap_node_t *n = m->root;
    while (n) {
        int c = keycmp(key, klen, n->key, n->klen);
        if (c == 0)
            return n;
        n = c < 0 ? n->l : n->r;
    }
    return NULL;
}

/* Insert @nn, whose key is not in the tree under @n. */
static omap_node_t *insert(omap_node_t *n, omap_node_t *nn)
{
    if (!n)
        return nn;
    if (keycmp(nn->key, nn->klen, n->key, n->klen) < 0)
        n->l = insert(n->l, nn);
    else
        n->r = insert(n->r, nn);
    return balance(n);
}

/* Detach the smallest node of @n into *min; the rest of the subtree. */
static omap_node_t *remove_min(omap_node_t *n, omap_node_t **min)
{
    if (!n->l) {
        *min = n;
        return n->r;
    }
    n->l = remove_min(n->l, min);
    return balance(n);
}

static omap_node_t *remove_key(omap_node_t *n, const void *key, size_t klen,
                               omap_node_t **gone)
{
    int c;
    omap_node_t *min;
    if (!n)
        return NULL;
    c = keycmp(key, klen, n->key, n->klen);
    if (c < 0) {
        n->l = remove_key(n->l, key, klen, gone);
    } else if (c > 0) {
        n->r = remove_key(n->r, key, klen, gone);
    } else {
        *gone = n;
        if (!n->r)
            return n->l;
        min = NULL;
        n->r = remove_min(n->r, &min);
        min->l = n->l;
        min->r = n->r;
        return balance(min);
    }
    return balance(n);
}

static void free_nodes(omap_node_t *n)
{
    if (n) {
        free_nodes(n->l);
        free_nodes(n->r);
        free(n);
    }
}

void omap_init(omap_t *m)
{
    m->root = NULL;
}

void omap_free(omap_t *m)
{
    free_nodes(m->root);
    m->root = NULL;
}

void *omap_get(const omap_t *m, const void *key, size_t klen)
{
    omap_node_t *n = find(m, key, klen);
    return n ? n->val : NULL;
}

int omap_put(omap_t *m, const void *key, size_t klen, void *val)
{
    omap_node_t *n = find(m, key, klen);
    if (n) {
        n->val = val;
        return 0;
    }
    if (!(n = malloc(sizeof(*n) + klen)))
        return -1;
    *n = (omap_node_t){.size = 1, .h = 1, .val = val, .klen = klen};
    if (klen)
        memcpy(n->key, key, klen);
    m->root = insert(m->root, n);
    return 0;
}

void *omap_del(omap_t *m, const void *key, size_t klen)
{
    omap_node_t *gone = NULL;
    void *val;
    m->root = remove_key(m->root, key, klen, &gone);
    if (!gone)
        return NULL;
    val = gone->val;
    free(gone);
    return val;
}

size_t omap_len(const omap_t *m)
{
    return count(m->root);
}

size_t omap_rank(const omap_t *m, const void *key, size_t klen)
{
    size_t rank = 0;
    for (const omap_node_t *n = m->root; n;) {
        if (keycmp(key, klen, n->key, n->klen) <= 0) {
            n = n->l;
        } else {
            rank += count(n->l) + 1;
            n = n->r;
        }
    }
    return rank;
}

void *omap_at(const omap_t *m, size_t i, const char **key, size_t *klen)
{
    for (const omap_node_t *n = m->root; n;) {
        size_t left = count(n->l);
        if (i < left) {
            n = n->l;
        } else if (i > left) {
            i -= left + 1;
            n = n->r;
        } else {
            if (key)
                *key = n->key;
            if (klen)
                *klen = n->klen;
            return n->val;
        }
    }
    return NULL;
}
