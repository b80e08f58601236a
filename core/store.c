/* store.c: the materialised state in one Kyoto Cabinet TreeDB (ordered keys).
 *
 * Start with store_open() (truncates: raft rebuilds the file from the latest
 * snapshot and the log after it on every start), then store_put/get/del/scan.
 * store_dump()/store_load() are the snapshot format, store_digest() the
 * determinism check. The key layout is the business of fsm.c/queue.c and is
 * documented in docs/architecture.md "Key layout".
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

#include "internal.h"

#define STORE_MAGIC "MQS1"
#define STORE_CHUNK ((size_t)64 << 20)

struct store {
    KCDB *db;
};

int store_open(store_t **out, const char *path, char *errmsg, size_t errlen)
{
    store_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->db = kcdbnew())) {
        free(s);
        snprintf(errmsg, errlen, "store %s: out of memory", path);
        return MQHUB_EINTERNAL;
    }
    char *spec = NULL;
    if (asprintf(&spec, "%s#type=kct", path) < 0)
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

void store_close(store_t *s)
{
    if (!s)
        return;
    if (!kcdbclose(s->db))
        log_warn("store", "close: %s", kcdbemsg(s->db));
    kcdbdel(s->db);
    free(s);
}

int store_put(store_t *s, const void *k, size_t kl, const void *v, size_t vl)
{
    if (kcdbset(s->db, k, kl, v, vl))
        return 0;
    log_error("store", "put: %s", kcdbemsg(s->db));
    return MQHUB_EINTERNAL;
}

void *store_get(store_t *s, const void *k, size_t kl, size_t *vl)
{
    return kcdbget(s->db, k, kl, vl);
}

void store_free(void *p)
{
    kcfree(p);
}

int store_del(store_t *s, const void *k, size_t kl)
{
    return kcdbremove(s->db, k, kl) ? 0 : MQHUB_ENOT_FOUND;
}

static bool has_prefix(const char *k, size_t kl, const void *prefix, size_t pl)
{
    return kl >= pl && memcmp(k, prefix, pl) == 0;
}

int store_scan(store_t *s, const void *prefix, size_t pl, const void *from, size_t fl,
               store_visit_fn fn, void *arg)
{
    KCCUR *cur = kcdbcursor(s->db);
    int rc = 0;
    bool from_later = fl > 0 && (fl > pl ? memcmp(from, prefix, pl) >= 0
                                         : memcmp(from, prefix, fl) > 0);
    if (!kccurjumpkey(cur, from_later ? from : prefix, from_later ? fl : pl)) {
        kccurdel(cur);
        return 0;
    }
    for (;;) {
        size_t kl, vl;
        const char *v;
        char *k = kccurget(cur, &kl, &v, &vl, 1);
        if (!k)
            break;
        bool in = has_prefix(k, kl, prefix, pl);
        if (in)
            rc = fn(arg, k, kl, v, vl);
        kcfree(k);
        if (!in || rc)
            break;
    }
    kccurdel(cur);
    return rc;
}

int64_t store_del_prefix(store_t *s, const void *prefix, size_t pl)
{
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
    return n;
}

int64_t store_count(store_t *s)
{
    return kcdbcount(s->db);
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

int store_dump(store_t *s, struct raft_buffer **bufs, unsigned *n_bufs)
{
    struct dump d = {0};
    char *magic = dump_room(&d, 4);
    if (magic) {
        memcpy(magic, STORE_MAGIC, 4);
        store_scan(s, "", 0, NULL, 0, dump_record, &d);
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
    /* Check the whole stream before the current content is dropped. */
    if (load_records(NULL, p + 4, end) != 0)
        return MQHUB_EINTERNAL;
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
