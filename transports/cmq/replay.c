/* replay.c: the CMQ transport's replay cache (docs/cmq.md "Replays"). A
 * request that passed its signature check is remembered by a digest of
 * what makes it unique — SecretId, Nonce, Timestamp and Signature — until
 * its Timestamp leaves the time window; the same request again within the
 * window is a replay.
 *
 * Start with cmq_replay_check(). Memory is bounded: at most `max` digests
 * (an hmap for lookups, a min-heap by Timestamp for eviction). When full,
 * the entry with the oldest Timestamp is evicted early and `floor` rises to
 * its Timestamp: from then on a request signed at or before the floor is
 * refused (it could be a replay of an evicted one), so a flood of valid
 * requests shortens the window instead of letting a replay through or
 * growing memory.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cmq.h"
#include "heap.h"
#include "hmap.h"

#define REPLAY_KEY_LEN 16 /* bytes of SHA-256 kept: collisions are out of reach */

typedef struct replay_item {
    int64_t ts;
    unsigned char key[REPLAY_KEY_LEN];
} replay_item_t;

struct cmq_replay {
    hmap_t seen;  /* key -> marker */
    heap_t order; /* replay_item_t by ts */
    size_t max;
    int64_t floor; /* Timestamps at or below it are refused (evicted early) */
};

static int by_ts(const void *a, const void *b)
{
    const replay_item_t *x = a, *y = b;
    return x->ts < y->ts ? -1 : x->ts > y->ts;
}

int cmq_replay_new(cmq_replay_t **out, size_t max)
{
    cmq_replay_t *r = calloc(1, sizeof *r);

    if (r == NULL)
        return -1;
    hmap_init(&r->seen);
    heap_init(&r->order, sizeof(replay_item_t), by_ts);
    r->max = max > 0 ? max : 1;
    r->floor = INT64_MIN;
    *out = r;
    return 0;
}

void cmq_replay_free(cmq_replay_t *r)
{
    if (r == NULL)
        return;
    hmap_free(&r->seen);
    heap_free(&r->order);
    free(r);
}

/* Remove the oldest entry; with @early, raise the floor to its Timestamp. */
static void drop_oldest(cmq_replay_t *r, bool early)
{
    replay_item_t it;

    if (heap_pop(&r->order, &it) != 0)
        return;
    hmap_del(&r->seen, it.key, sizeof it.key);
    if (early && it.ts > r->floor)
        r->floor = it.ts;
}

static void digest(const char *id, const char *nonce, const char *ts, const char *sig,
                   unsigned char out[REPLAY_KEY_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    memset(md, 0, sizeof md);
    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        /* Each field with its terminating NUL: no two field lists run together. */
        EVP_DigestUpdate(ctx, id, strlen(id) + 1);
        EVP_DigestUpdate(ctx, nonce, strlen(nonce) + 1);
        EVP_DigestUpdate(ctx, ts, strlen(ts) + 1);
        EVP_DigestUpdate(ctx, sig, strlen(sig) + 1);
        EVP_DigestFinal_ex(ctx, md, &n);
    }
    EVP_MD_CTX_free(ctx);
    memcpy(out, md, REPLAY_KEY_LEN);
}

int cmq_replay_check(cmq_replay_t *r, const char *id, const char *nonce, const char *ts_text,
                     const char *sig, int64_t ts, int64_t now, int64_t window)
{
    replay_item_t it = {.ts = ts};
    const replay_item_t *top;

    while ((top = heap_top(&r->order)) != NULL && top->ts < now - window)
        drop_oldest(r, false); /* its Timestamp is refused by the window now */
    if (ts <= r->floor)
        return CMQ_REPLAY_TOO_OLD;
    digest(id, nonce, ts_text, sig, it.key);
    if (hmap_get(&r->seen, it.key, sizeof it.key) != NULL)
        return CMQ_REPLAY_SEEN;
    while (hmap_len(&r->seen) >= r->max)
        drop_oldest(r, true);
    if (ts <= r->floor) /* the request itself was the oldest */
        return CMQ_REPLAY_TOO_OLD;
    if (heap_push(&r->order, &it) != 0)
        return -1;
    /* On failure the heap keeps an item the map lacks: evicting it later
     * deletes nothing. The caller refuses the request. */
    return hmap_put(&r->seen, it.key, sizeof it.key, r) != 0 ? -1 : 0;
}

size_t cmq_replay_len(const cmq_replay_t *r)
{
    return hmap_len(&r->seen);
}

int64_t cmq_replay_floor(const cmq_replay_t *r)
{
    return r->floor;
}
