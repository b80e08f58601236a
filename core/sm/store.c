/* store.c: the materialised state in one Kyoto Cabinet TreeDB (ordered keys).
 *
 * Start with store_open() (truncates: raft rebuilds the file from the latest
 * snapshot and the log after it on every start), then store_put/get/del/scan.
 * store_dump()/store_load() are the snapshot format, store_digest() the
 * determinism check. The key layout is the business of fsm.c/queue.c and is
 * documented in docs/architecture.md "Key layout".
 *
 * Frozen mode (snapshots off the loop, see core/raft/snapshot.c): store_freeze()
 * stops writing the file DB; from then on writes go to an in-memory ordered
 * overlay (a Kyoto Cabinet ProtoTreeDB, "+"), each value prefixed with a tag
 * byte, 'V' + value or a lone 'T' for a deleted key (tombstone). Reads look in
 * the overlay first; store_scan() merges a cursor on each in key order. The
 * untouched file DB is the state at freeze time: store_dump() may read it
 * from another thread meanwhile (KC handles are thread-safe, and nothing
 * writes it). The dump stops at the last key (noted at freeze) instead of
 * stepping past the end: a KC error in a thread-pool thread leaves a
 * thread-specific error record behind that is never freed. store_unfreeze()
 * sends writes to the file DB again (a write
 * also drops the key from the overlay, so the overlay never holds stale
 * data) and store_drain() moves the overlay into the file DB a slice at a
 * time, so the loop never stops for long; store_thaw() does both at once.
 *
 * Leaf cache: Kyoto Cabinet's TreeDB bounds its page cache by the bytes of
 * the records it holds; a leaf emptied by removals is only marked dead and
 * stays in the cache (about 680 bytes each, counted as 8) until the cache
 * passes that bound, which a small live set under queue churn never does. So
 * the unfrozen store flushes the cache (flush_leaf_cache: kcdbsync without
 * fsync) each time its writes (store_put, store_del, store_del_prefix, a
 * drain) have spent STORE_FLUSH_BUDGET: dirty leaves are written to the file
 * DB, dead ones dropped, memory freed. Counting puts as well as removals keeps
 * what one flush writes small (a flush after a big fill used to write the
 * whole cache at once: 155-342 ms on the loop; now at most ~10 ms of CPU).
 * docs/architecture.md "Memory"; tests/unit/store_cache_test.c.
 *
 * Snapshot stream: "MQS1" then, per record in key order,
 *   u32be key_len, u32be value_len, key, value
 * in raft_malloc'ed chunks of up to STORE_CHUNK bytes (a record never spans two
 * chunks; a record larger than a chunk gets a chunk of its own). Raft hands the
 * concatenation of the chunks back to store_load(). To extend the format, bump
 * the magic and keep reading the old one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kclangc.h>
#include <openssl/evp.h>

#include "sm_int.h"

#define STORE_MAGIC "MQS1"
#define STORE_CHUNK ((size_t)64 << 20)
/* Writes between two leaf-cache flushes, counted in bytes: a put its key and
 * value plus STORE_PUT_COST (the leaf it dirties), a removal
 * STORE_REMOVAL_COST (a dead leaf at most: 16,384 removals, ~10 MiB of dead
 * leaves, make one budget). The budget bounds what a flush has to write, so
 * that one flush stays within a few ms on the loop. */
#define STORE_FLUSH_BUDGET ((uint64_t)1 << 20)
#define STORE_PUT_COST 256
#define STORE_REMOVAL_COST 64
/* The leaf cache's bound (KC's pccap; its default is 64 MiB), counted in
 * record bytes: what a flush has to drop (it empties the cache) and the
 * cache's share of RSS. Past it KC evicts one leaf per operation. A larger
 * one measured no faster (benchmarks.md: the OS page cache holds the file). */
#define STORE_PAGE_CACHE ((size_t)4 << 20)
/* Buckets of the hash file under the tree (KC's bnum; its default for a
 * TreeDB is 65,536), where each leaf (8 KiB of records, KC's default psiz)
 * and inner node is one record: 10M messages of 1 KiB make ~1.4M leaves,
 * chains of ~20 records per bucket, each step a pread. With 2^20 buckets
 * (6 MiB of the file, sparse until used) a consume from a 10M backlog runs
 * at 69k msgs/s instead of 48k and the fill at 149k instead of 76k; at 100k
 * messages nothing changes measurably (benchmarks.md "Kyoto Cabinet: buckets
 * and leaves"). Larger leaves were tried and left: 32 KiB made 1000 busy
 * queues 27 % dearer in CPU for a gain on one queue within the noise. */
#define STORE_BUCKETS 1048576

struct store {
    KCDB *db;      /* the file DB */
    KCDB *ov;      /* the overlay while frozen or draining, else NULL */
    bool frozen;   /* writes go to the overlay (else to the file DB) */
    char *last;    /* frozen: the last key of the file DB (NULL: empty) */
    size_t last_len;
    uint64_t writes; /* store_put and store_del calls (store_writes) */
    uint64_t dirtied; /* write budget spent since the last flush_leaf_cache */
};

#define TAG_VALUE 'V'
#define TAG_TOMB 'T'

int store_open(store_t **out, const char *path, char *errmsg, size_t errlen)
{
    store_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->db = kcdbnew())) {
        free(s);
        snprintf(errmsg, errlen, "store %s: out of memory", path);
        return MQHUB_EINTERNAL;
    }
    char *spec = NULL;
    if (asprintf(&spec, "%s#type=kct#pccap=%zu#bnum=%d", path, STORE_PAGE_CACHE,
                 STORE_BUCKETS) < 0)
        spec = NULL;
    if (!spec || !kcdbopen(s->db, spec, KCOWRITER | KCOCREATE | KCOTRUNCATE)) {
        snprintf(errmsg, errlen, "store %s: %s", path, spec ? kcdbemsg(s->db) : "out of memory");
        free(spec);
        kcdbdel(s->db);
        free(s);
        return MQHUB_EINTERNAL;
    }
    free(spec);
    *out = s;
    return 0;
}

static void drop_overlay(store_t *s)
{
    kcdbclose(s->ov);
    kcdbdel(s->ov);
    s->ov = NULL;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    if (s->ov)
        drop_overlay(s);
    if (!kcdbclose(s->db))
        log_warn("store", "close: %s", kcdbemsg(s->db));
    kcdbdel(s->db);
    free(s->last);
    free(s);
}

/* ---- the leaf cache ---- */

/* @bytes more of the write budget spent on the file DB: past
 * STORE_FLUSH_BUDGET, flush the leaf cache (never while frozen: the dump
 * reads the file DB then). */
static void flush_leaf_cache(store_t *s, uint64_t bytes)
{
    s->dirtied += bytes;
    if (s->frozen || s->dirtied < STORE_FLUSH_BUDGET)
        return;
    s->dirtied = 0;
    if (!kcdbsync(s->db, false, NULL, NULL))
        log_warn("store", "leaf cache flush: %s", kcdbemsg(s->db));
}

/* ---- frozen mode ---- */

bool store_frozen(const store_t *s)
{
    return s->frozen;
}

int64_t store_drain(store_t *s, size_t max)
{
    int rc = 0;
    uint64_t removed = 0, written = 0;
    if (!s->ov)
        return 0;
    if (s->frozen)
        return MQHUB_EINTERNAL;
    KCCUR *cur = kcdbcursor(s->ov);
    kccurjump(cur);
    for (size_t i = 0; i < max; i++) {
        size_t kl, vl;
        const char *v;
        char *k = kccurget(cur, &kl, &v, &vl, 0);
        if (!k)
            break;
        removed += v[0] != TAG_VALUE;
        written += v[0] == TAG_VALUE ? kl + vl - 1 + STORE_PUT_COST : 0;
        bool ok = v[0] == TAG_VALUE ? kcdbset(s->db, k, kl, v + 1, vl - 1)
                                    : kcdbremove(s->db, k, kl) || kcdbecode(s->db) == KCENOREC;
        kcfree(k);
        if (!ok) {
            log_error("store", "drain: %s", kcdbemsg(s->db));
            rc = MQHUB_EINTERNAL;
        }
        if (!kccurremove(cur))
            break;
    }
    kccurdel(cur);
    flush_leaf_cache(s, removed * STORE_REMOVAL_COST + written);
    int64_t left = kcdbcount(s->ov);
    if (left <= 0)
        drop_overlay(s);
    return rc ? rc : left > 0 ? left : 0;
}

void store_unfreeze(store_t *s)
{
    s->frozen = false;
}

int store_freeze(store_t *s)
{
    if (s->frozen)
        return MQHUB_EINTERNAL;
    if (s->ov && store_drain(s, SIZE_MAX) < 0) /* the last thaw is still draining */
        return MQHUB_EINTERNAL;
    s->ov = kcdbnew();
    if (!s->ov || !kcdbopen(s->ov, "+", KCOWRITER | KCOCREATE)) {
        log_error("store", "freeze: %s", s->ov ? kcdbemsg(s->ov) : "out of memory");
        if (s->ov)
            kcdbdel(s->ov);
        s->ov = NULL;
        return MQHUB_EINTERNAL;
    }
    KCCUR *cur = kcdbcursor(s->db);
    free(s->last);
    s->last = NULL;
    bool oom = false;
    if (kccurjumpback(cur)) {
        char *k = kccurgetkey(cur, &s->last_len, 0);
        if (k && (s->last = malloc(s->last_len ? s->last_len : 1)))
            memcpy(s->last, k, s->last_len);
        oom = !s->last;
        kcfree(k);
    }
    kccurdel(cur);
    if (oom) {
        log_error("store", "freeze: out of memory");
        drop_overlay(s);
        return MQHUB_EINTERNAL;
    }
    s->frozen = true;
    return 0;
}

int store_thaw(store_t *s)
{
    store_unfreeze(s);
    return store_drain(s, SIZE_MAX) < 0 ? MQHUB_EINTERNAL : 0;
}

/* Write @v (NULL: a tombstone) into the overlay. */
static int overlay_set(store_t *s, const void *k, size_t kl, const void *v, size_t vl)
{
    char stack[512];
    char *buf = 1 + vl <= sizeof stack ? stack : malloc(1 + vl);
    if (!buf)
        return MQHUB_EINTERNAL;
    buf[0] = v ? TAG_VALUE : TAG_TOMB;
    if (v)
        memcpy(buf + 1, v, vl);
    int ok = kcdbset(s->ov, k, kl, buf, v ? 1 + vl : 1);
    if (buf != stack)
        free(buf);
    if (ok)
        return 0;
    log_error("store", "overlay put: %s", kcdbemsg(s->ov));
    return MQHUB_EINTERNAL;
}

/* Draining: a key written to the file DB must not be shadowed any more. */
static void overlay_forget(store_t *s, const void *k, size_t kl)
{
    if (s->ov)
        kcdbremove(s->ov, k, kl);
}

/* ---- records ---- */

int store_put(store_t *s, const void *k, size_t kl, const void *v, size_t vl)
{
    s->writes++;
    if (s->frozen)
        return overlay_set(s, k, kl, v, vl);
    if (kcdbset(s->db, k, kl, v, vl)) {
        overlay_forget(s, k, kl);
        flush_leaf_cache(s, kl + vl + STORE_PUT_COST);
        return 0;
    }
    log_error("store", "put: %s", kcdbemsg(s->db));
    return MQHUB_EINTERNAL;
}

void *store_get(store_t *s, const void *k, size_t kl, size_t *vl)
{
    if (s->ov) {
        char *v = kcdbget(s->ov, k, kl, vl);
        if (v) {
            if (v[0] == TAG_TOMB) {
                kcfree(v);
                return NULL;
            }
            memmove(v, v + 1, --*vl); /* same KC allocation: store_free() still fits */
            return v;
        }
    }
    return kcdbget(s->db, k, kl, vl);
}

int64_t store_size(store_t *s, const void *k, size_t kl)
{
    if (s->ov) {
        size_t vl;
        void *v = store_get(s, k, kl, &vl);
        store_free(v);
        return v ? (int64_t)vl : -1;
    }
    return kcdbcheck(s->db, k, kl);
}

void store_free(void *p)
{
    kcfree(p);
}

int store_del(store_t *s, const void *k, size_t kl)
{
    s->writes++;
    if (!s->ov) {
        if (!kcdbremove(s->db, k, kl))
            return MQHUB_ENOT_FOUND;
        flush_leaf_cache(s, STORE_REMOVAL_COST);
        return 0;
    }
    size_t vl;
    void *v = store_get(s, k, kl, &vl);
    if (!v)
        return MQHUB_ENOT_FOUND;
    kcfree(v);
    if (s->frozen)
        return overlay_set(s, k, kl, NULL, 0);
    if (kcdbremove(s->db, k, kl)) /* absent there when only the overlay had it */
        flush_leaf_cache(s, STORE_REMOVAL_COST);
    overlay_forget(s, k, kl);
    return 0;
}

static bool has_prefix(const char *k, size_t kl, const void *prefix, size_t pl)
{
    return kl >= pl && memcmp(k, prefix, pl) == 0;
}

/* One side of a scan: a cursor and the record under it (NULL at the end). */
struct side {
    KCCUR *cur;
    char *k;
    const char *v;
    size_t kl, vl;
};

static void side_open(struct side *d, KCDB *db, const void *start, size_t sl)
{
    memset(d, 0, sizeof *d);
    d->cur = kcdbcursor(db);
    if (kccurjumpkey(d->cur, start, sl))
        d->k = kccurget(d->cur, &d->kl, &d->v, &d->vl, 1);
}

static void side_next(struct side *d)
{
    kcfree(d->k);
    d->k = kccurget(d->cur, &d->kl, &d->v, &d->vl, 1);
}

static void side_close(struct side *d)
{
    kcfree(d->k);
    kccurdel(d->cur);
}

static int keycmp(const struct side *a, const struct side *b)
{
    int c = memcmp(a->k, b->k, a->kl < b->kl ? a->kl : b->kl);
    return c ? c : (a->kl > b->kl) - (a->kl < b->kl);
}

/* Walk the file DB (and the overlay @ov when not NULL, which wins on equal
 * keys and hides tombstoned ones) from @start while keys carry @prefix. */
static int scan_merged(KCDB *db, KCDB *ov, const void *prefix, size_t pl, const void *start,
                       size_t sl, store_visit_fn fn, void *arg)
{
    struct side f, o = {0};
    int rc = 0;
    side_open(&f, db, start, sl);
    if (ov)
        side_open(&o, ov, start, sl);
    for (;;) {
        bool f_in = f.k && has_prefix(f.k, f.kl, prefix, pl);
        bool o_in = o.k && has_prefix(o.k, o.kl, prefix, pl);
        if (!f_in && !o_in)
            break;
        int c = !o_in ? -1 : !f_in ? 1 : keycmp(&f, &o);
        if (c < 0) {
            rc = fn(arg, f.k, f.kl, f.v, f.vl);
            side_next(&f);
        } else {
            if (o.v[0] == TAG_VALUE)
                rc = fn(arg, o.k, o.kl, o.v + 1, o.vl - 1);
            if (c == 0)
                side_next(&f);
            side_next(&o);
        }
        if (rc)
            break;
    }
    side_close(&f);
    if (ov)
        side_close(&o);
    return rc;
}

int store_scan(store_t *s, const void *prefix, size_t pl, const void *from, size_t fl,
               store_visit_fn fn, void *arg)
{
    bool from_later = fl > 0 && (fl > pl ? memcmp(from, prefix, pl) >= 0
                                         : memcmp(from, prefix, fl) > 0);
    return scan_merged(s->db, s->ov, prefix, pl, from_later ? from : prefix,
                       from_later ? fl : pl, fn, arg);
}

struct keys {
    char **k;
    size_t *kl;
    size_t n, cap;
    bool oom;
};

static int collect_key(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct keys *ks = arg;
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 64;
        char **pk = realloc(ks->k, cap * sizeof *pk);
        size_t *pl = pk ? realloc(ks->kl, cap * sizeof *pl) : NULL;
        if (pk)
            ks->k = pk;
        if (!pl) {
            ks->oom = true;
            return 1;
        }
        ks->kl = pl;
        ks->cap = cap;
    }
    if (!(ks->k[ks->n] = malloc(kl ? kl : 1))) {
        ks->oom = true;
        return 1;
    }
    memcpy(ks->k[ks->n], k, kl);
    ks->kl[ks->n++] = kl;
    return 0;
}

/* Frozen or draining: delete every visible key with @prefix one by one. */
static int64_t del_prefix_overlaid(store_t *s, const void *prefix, size_t pl)
{
    struct keys ks = {0};
    int64_t n = 0;
    store_scan(s, prefix, pl, NULL, 0, collect_key, &ks);
    for (size_t i = 0; i < ks.n; i++) {
        if (!ks.oom && store_del(s, ks.k[i], ks.kl[i]) == 0)
            n++;
        free(ks.k[i]);
    }
    if (ks.oom)
        log_error("store", "del_prefix: out of memory");
    free(ks.k);
    free(ks.kl);
    return n;
}

int64_t store_del_prefix(store_t *s, const void *prefix, size_t pl)
{
    if (s->ov)
        return del_prefix_overlaid(s, prefix, pl);
    KCCUR *cur = kcdbcursor(s->db);
    int64_t n = 0;
    if (kccurjumpkey(cur, prefix, pl)) {
        for (;;) {
            size_t kl;
            char *k = kccurgetkey(cur, &kl, 0);
            if (!k)
                break;
            bool in = has_prefix(k, kl, prefix, pl);
            kcfree(k);
            if (!in || !kccurremove(cur))
                break;
            n++;
        }
    }
    kccurdel(cur);
    s->writes += (uint64_t)n;
    flush_leaf_cache(s, (uint64_t)n * STORE_REMOVAL_COST);
    return n;
}

uint64_t store_writes(const store_t *s)
{
    return s->writes;
}

/* The file DB's count corrected by the overlay (a value for a key the file
 * DB lacks adds one, a tombstone for a key it has takes one): O(overlay), not
 * O(store), so cluster.status {records} stays cheap during a snapshot. */
int64_t store_count(store_t *s)
{
    int64_t n = kcdbcount(s->db);
    if (!s->ov)
        return n;
    KCCUR *cur = kcdbcursor(s->ov);
    if (kccurjump(cur)) {
        size_t kl, vl;
        const char *v;
        char *k;
        while ((k = kccurget(cur, &kl, &v, &vl, 1)) != NULL) {
            bool in_file = kcdbcheck(s->db, k, kl) >= 0;
            n += v[0] == TAG_VALUE ? !in_file : -(int64_t)in_file;
            kcfree(k);
        }
    }
    kccurdel(cur);
    return n;
}

/* ---- snapshot dump / load ---- */

struct dump {
    struct raft_buffer *bufs;
    unsigned n, cap;
    bool oom;
};

static char *dump_room(struct dump *d, size_t need)
{
    struct raft_buffer *b = d->n ? &d->bufs[d->n - 1] : NULL;
    size_t chunk = need > STORE_CHUNK ? need : STORE_CHUNK;
    if (b && b->len + need <= STORE_CHUNK)
        goto have; /* an oversized record's own chunk is full: never appended to */
    if (d->n == d->cap) {
        unsigned cap = d->cap ? d->cap * 2 : 4;
        struct raft_buffer *p = raft_realloc(d->bufs, cap * sizeof(*p));
        if (!p)
            return NULL;
        d->bufs = p;
        d->cap = cap;
    }
    b = &d->bufs[d->n];
    b->base = raft_malloc(chunk);
    if (!b->base)
        return NULL;
    b->len = 0;
    d->n++;
have:
    b->len += need;
    return (char *)b->base + b->len - need;
}

static void put_u32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24), p[1] = (char)(v >> 16), p[2] = (char)(v >> 8), p[3] = (char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int dump_record(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct dump *d = arg;
    char *p = dump_room(d, 8 + kl + vl);
    if (!p) {
        d->oom = true;
        return 1;
    }
    put_u32(p, (uint32_t)kl);
    put_u32(p + 4, (uint32_t)vl);
    memcpy(p + 8, k, kl);
    memcpy(p + 8 + kl, v, vl);
    return 0;
}

/* The file DB of a frozen store, from the first key to s->last, never
 * stepping past it (may run on a thread-pool thread). */
static void dump_frozen(store_t *s, struct dump *d)
{
    if (!s->last)
        return;
    KCCUR *cur = kcdbcursor(s->db);
    if (kccurjump(cur)) {
        for (;;) {
            size_t kl, vl;
            const char *v;
            char *k = kccurget(cur, &kl, &v, &vl, 0);
            if (!k)
                break;
            bool last = kl == s->last_len && memcmp(k, s->last, kl) == 0;
            int stop = dump_record(d, k, kl, v, vl);
            kcfree(k);
            if (last || stop || !kccurstep(cur))
                break;
        }
    }
    kccurdel(cur);
}

int store_dump(store_t *s, struct raft_buffer **bufs, unsigned *n_bufs)
{
    struct dump d = {0};
    if (!s->frozen && store_drain(s, SIZE_MAX) < 0) /* a thaw still draining */
        return MQHUB_EINTERNAL;
    char *magic = dump_room(&d, 4);
    if (magic) {
        memcpy(magic, STORE_MAGIC, 4);
        if (s->frozen)
            dump_frozen(s, &d);
        else
            scan_merged(s->db, NULL, "", 0, "", 0, dump_record, &d);
    }
    if (!magic || d.oom) {
        for (unsigned i = 0; i < d.n; i++)
            raft_free(d.bufs[i].base);
        raft_free(d.bufs);
        return MQHUB_EINTERNAL;
    }
    *bufs = d.bufs;
    *n_bufs = d.n;
    return 0;
}

/* Walk the records of a dump; with @s NULL only check the framing. */
static int load_records(store_t *s, const unsigned char *p, const unsigned char *end)
{
    const unsigned char *start = p;
    while (p < end) {
        if (end - p < 8)
            goto corrupt;
        size_t kl = get_u32(p), vl = get_u32(p + 4);
        if ((size_t)(end - p - 8) < kl + vl)
            goto corrupt;
        if (s && store_put(s, p + 8, kl, p + 8 + kl, vl) != 0)
            return MQHUB_EINTERNAL;
        p += 8 + kl + vl;
    }
    return 0;
corrupt:
    log_error("store", "load: truncated snapshot at byte %zu", (size_t)(p - start) + 4);
    return MQHUB_EINTERNAL;
}

int store_load(store_t *s, const void *data, size_t len)
{
    const unsigned char *p = data, *end = p + len;
    if (len < 4 || memcmp(p, STORE_MAGIC, 4) != 0) {
        log_error("store", "load: not a snapshot of this format");
        return MQHUB_EINTERNAL;
    }
    if (s->frozen) {
        log_error("store", "load: the store is frozen by a snapshot in progress");
        return MQHUB_EINTERNAL;
    }
    /* Check the whole stream before the current content is dropped. */
    if (load_records(NULL, p + 4, end) != 0)
        return MQHUB_EINTERNAL;
    if (s->ov)
        drop_overlay(s); /* a thaw still draining: replaced anyway */
    if (!kcdbclear(s->db)) {
        log_error("store", "load: clear: %s", kcdbemsg(s->db));
        return MQHUB_EINTERNAL;
    }
    return load_records(s, p + 4, end);
}

static int digest_record(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    char lens[8];
    put_u32(lens, (uint32_t)kl);
    put_u32(lens + 4, (uint32_t)vl);
    EVP_DigestUpdate(arg, lens, 8);
    EVP_DigestUpdate(arg, k, kl);
    EVP_DigestUpdate(arg, v, vl);
    return 0;
}

void store_digest(store_t *s, unsigned char out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned len = 32;
    memset(out, 0, 32);
    if (!ctx)
        return;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        store_scan(s, "", 0, NULL, 0, digest_record, ctx);
        EVP_DigestFinal_ex(ctx, out, &len);
    }
    EVP_MD_CTX_free(ctx);
}

/* ---- key encoding ---- */

void store_be64_put(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (56 - 8 * i));
}

uint64_t store_be64_get(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

void store_key_id_seq(unsigned char k[17], char prefix, uint64_t id, uint64_t seq)
{
    k[0] = (unsigned char)prefix;
    store_be64_put(k + 1, id);
    store_be64_put(k + 9, seq);
}
