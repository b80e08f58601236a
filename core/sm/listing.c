/* listing.c: queue.list / topic.list with stats, search and sort
 * (docs/protocol.md "Lists with stats"): the rows of one page, each a map of
 * the object's counters, of the names that contain `match`, ordered by
 * `sort` (a counter, or the name), so a console with 10,000 queues asks for
 * one page instead of one get per queue.
 *
 * Start at listing_args() (is this the extended form? parse it) and
 * listing_run() (collect, sort, page, pack). The caller — queue.c's and
 * topic.c's list handlers — gives the sort names it knows, a sort_key
 * function and a pack_row function; the old form (none of stats, match,
 * sort, desc) stays with cmd_list_names(), answered exactly as before.
 *
 * Cost: the name order without a match or a viewer visits only the page
 * (O(log n + limit)); a match or a viewer visits every name under the
 * prefix; a counter sort also computes every candidate's key and sorts them
 * (O(n log n)). A read: nothing changes, the same answer on every node.
 */
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

struct cand {
    const void *obj;
    uint64_t key;
    size_t rank; /* position in name order: ties and desc by name */
};

static int arg_bool(cmd_t *c, const char *key, bool *out)
{
    const msgpack_object *v = mp_map_get(c->req, key);
    if (!v || v->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (v->type != MSGPACK_OBJECT_BOOLEAN)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field '%s' must be a boolean", key);
    *out = v->via.boolean;
    return 0;
}

static bool present(cmd_t *c, const char *key)
{
    const msgpack_object *v = mp_map_get(c->req, key);
    return v && v->type != MSGPACK_OBJECT_NIL;
}

int listing_args(cmd_t *c, const char *const *sorts, listing_t *l, bool *extended)
{
    const char *sort;
    size_t slen;
    int rc;
    *l = (listing_t){.limit = MQHUB_LIST_LIMIT_DEFAULT};
    *extended = present(c, "stats") || present(c, "match") || present(c, "sort") ||
                present(c, "desc");
    if (!*extended)
        return 0;
    if ((rc = arg_bool(c, "stats", &l->stats)) || (rc = arg_bool(c, "desc", &l->desc)) ||
        (rc = cmd_arg_str(c, c->req, "match", false, &l->match, &l->mlen)) ||
        (rc = cmd_arg_str(c, c->req, "prefix", false, &l->prefix, &l->plen)) ||
        (rc = cmd_arg_str(c, c->req, "sort", false, &sort, &slen)) ||
        (rc = cmd_arg_uint(c, c->req, "offset", 0, UINT64_MAX, &l->offset)) ||
        (rc = cmd_arg_uint(c, c->req, "limit", 1, MQHUB_LIST_LIMIT_MAX, &l->limit)))
        return rc;
    if (!sort)
        return 0;
    for (int i = 0; sorts[i]; i++)
        if (strlen(sorts[i]) == slen && memcmp(sorts[i], sort, slen) == 0) {
            l->sort = i;
            return 0;
        }
    char known[256] = "";
    for (int i = 0; sorts[i]; i++) {
        strncat(known, i ? ", " : "", sizeof(known) - strlen(known) - 1);
        strncat(known, sorts[i], sizeof(known) - strlen(known) - 1);
    }
    return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'sort' must be one of %s", known);
}

/* Does @name contain @l's match? (memmem: names hold no NUL.) */
static bool matches(const listing_t *l, const char *name, size_t len)
{
    return l->mlen == 0 || (l->mlen <= len && memmem(name, len, l->match, l->mlen) != NULL);
}

static int cand_cmp(const void *a, const void *b, bool desc)
{
    const struct cand *x = a, *y = b;
    if (x->key != y->key)
        return (x->key < y->key) == desc ? 1 : -1;
    return x->rank < y->rank ? -1 : x->rank > y->rank; /* ties: by name */
}
static int cand_cmp_asc(const void *a, const void *b) { return cand_cmp(a, b, false); }
static int cand_cmp_desc(const void *a, const void *b) { return cand_cmp(a, b, true); }

/* The rank range of the names under @l's prefix. */
static void prefix_range(const omap_t *names, const listing_t *l, size_t *from, size_t *to)
{
    *from = omap_rank(names, l->prefix, l->plen);
    *to = *from;
    if (l->plen > MQHUB_NAME_MAX) /* a longer prefix matches no name */
        return;
    size_t n = omap_len(names);
    const char *name;
    size_t len;
    /* Names under a prefix are consecutive in name order: walk to the end
     * of them (only when there is a prefix; else the range is everything). */
    if (l->plen == 0) {
        *to = n;
        return;
    }
    size_t lo = *from, hi = n; /* the first rank past the prefix: binary search */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        omap_at(names, mid, &name, &len);
        if (len >= l->plen && memcmp(name, l->prefix, l->plen) == 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *to = lo;
}

static void pack_item(cmd_t *c, const listing_t *l, const omap_t *names, size_t rank,
                      const void *obj, listing_row_fn pack_row, void *arg)
{
    if (l->stats) {
        pack_row(arg, c, obj);
        return;
    }
    const char *name;
    size_t len;
    omap_at(names, rank, &name, &len);
    mp_pack_str(c->pk, name, len);
}

/* Name order with neither match nor viewer: only the page is visited. */
static void run_by_rank(cmd_t *c, const listing_t *l, const omap_t *names, size_t from,
                        size_t to, uint64_t *total, listing_row_fn pack_row, void *arg)
{
    uint64_t n = to - from, shown;
    *total = n;
    shown = l->offset < n ? n - l->offset : 0;
    if (shown > l->limit)
        shown = l->limit;
    msgpack_pack_array(c->pk, (uint32_t)shown);
    for (uint64_t i = 0; i < shown; i++) {
        size_t rank = l->desc ? to - 1 - (size_t)(l->offset + i) : from + (size_t)(l->offset + i);
        const char *name;
        size_t len;
        const void *obj = omap_at(names, rank, &name, &len);
        pack_item(c, l, names, rank, obj, pack_row, arg);
    }
}

int listing_run(cmd_t *c, const listing_t *l, const omap_t *names, const char *key,
                listing_key_fn sort_key, listing_row_fn pack_row, void *arg)
{
    size_t from, to, n = 0;
    uint64_t total;
    struct cand *v;
    if (!c->pk)
        return 0;
    prefix_range(names, l, &from, &to);
    if (l->sort == 0 && l->mlen == 0 && c->viewer == NULL) {
        cmd_reply_key(c, key);
        run_by_rank(c, l, names, from, to, &total, pack_row, arg);
        cmd_reply_uint(c, "total", total);
        return 0;
    }
    if (!(v = malloc((to - from ? to - from : 1) * sizeof(*v))))
        return cmd_fail(c, MQHUB_EINTERNAL, "out of memory listing %zu names", to - from);
    for (size_t r = from; r < to; r++) {
        const char *name;
        size_t len;
        const void *obj = omap_at(names, r, &name, &len);
        if (!matches(l, name, len) || (c->viewer && !user_sees(c->us, c->viewer, name, len)))
            continue;
        v[n++] = (struct cand){.obj = obj, .rank = r,
                               .key = l->sort ? sort_key(arg, obj, l->sort) : 0};
    }
    /* The name order (sort 0) is the rank order: descending is the reverse. */
    qsort(v, n, sizeof(*v), l->desc && l->sort ? cand_cmp_desc : cand_cmp_asc);
    if (l->sort == 0 && l->desc)
        for (size_t i = 0; i < n / 2; i++) {
            struct cand t = v[i];
            v[i] = v[n - 1 - i];
            v[n - 1 - i] = t;
        }
    uint64_t shown = l->offset < n ? n - l->offset : 0;
    if (shown > l->limit)
        shown = l->limit;
    cmd_reply_key(c, key); /* only now: a failed malloc above leaves no half reply */
    msgpack_pack_array(c->pk, (uint32_t)shown);
    for (uint64_t i = 0; i < shown; i++) {
        const struct cand *x = &v[l->offset + i];
        pack_item(c, l, names, x->rank, x->obj, pack_row, arg);
    }
    cmd_reply_uint(c, "total", n);
    free(v);
    return 0;
}
