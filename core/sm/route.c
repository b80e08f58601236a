/* route.c: routing-key and tag matching for subscription filters — pure
 * functions of their arguments (no state, no store), called by
 * subscription.c's sub_match() and by the unit test.
 *
 * Keys and bindings are dot-separated words ("" is zero words, "a..b" has an
 * empty middle word); in a binding the word "*" matches exactly one word and
 * "#" zero or more words (docs/architecture.md "Topics", Filters).
 *
 * Start reading at route_key_match(). To add a wildcard: a case in
 * route_key_match() and its lines in tests/unit/fsm_topic_test.c
 * (test_key_match).
 */
#include <string.h>

#include "sm_int.h"

#define KEY_MAX_WORDS 128     /* 255 bytes hold at most 128 words */

struct words {
    const char *w[KEY_MAX_WORDS];
    size_t len[KEY_MAX_WORDS];
    unsigned n;
};

/* Split @s at dots; "" has no words. False when it is too long. */
static bool split_words(const char *s, size_t len, struct words *out)
{
    size_t start = 0;
    out->n = 0;
    if (len > MQHUB_ROUTING_KEY_MAX)
        return false;
    if (len == 0)
        return true;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            out->w[out->n] = s + start;
            out->len[out->n++] = i - start;
            start = i + 1;
        }
    }
    return true;
}

static bool word_is(const struct words *w, unsigned i, char ch)
{
    return w->len[i] == 1 && w->w[i][0] == ch;
}

/* Glob matching over words: "#" is the star (backtracking to the last one
 * seen is enough, as for '*' in file globs), "*" any one word. */
bool route_key_match(const char *binding, size_t bl, const char *key, size_t kl)
{
    struct words p, k;
    unsigned pi = 0, ki = 0, star = 0, mark = 0;
    bool have_star = false;
    if (!split_words(binding, bl, &p) || !split_words(key, kl, &k))
        return false;
    while (ki < k.n) {
        if (pi < p.n && word_is(&p, pi, '#')) {
            have_star = true;
            star = pi++;
            mark = ki;
        } else if (pi < p.n && (word_is(&p, pi, '*') ||
                                (p.len[pi] == k.len[ki] && memcmp(p.w[pi], k.w[ki], p.len[pi]) == 0))) {
            pi++;
            ki++;
        } else if (have_star) {
            pi = star + 1;
            ki = ++mark;
        } else {
            return false;
        }
    }
    while (pi < p.n && word_is(&p, pi, '#'))
        pi++;
    return pi == p.n;
}

bool route_tags_match(const msgpack_object *filter, const msgpack_object *tags)
{
    if (tags->type != MSGPACK_OBJECT_ARRAY)
        return false;
    for (uint32_t i = 0; i < filter->via.array.size; i++) {
        const msgpack_object_str *f = &filter->via.array.ptr[i].via.str;
        for (uint32_t j = 0; j < tags->via.array.size; j++) {
            const msgpack_object *t = &tags->via.array.ptr[j];
            if (t->type == MSGPACK_OBJECT_STR && t->via.str.size == f->size &&
                memcmp(t->via.str.ptr, f->ptr, f->size) == 0)
                return true;
        }
    }
    return false;
}

bool route_bindings_match(const msgpack_object *bindings, const msgpack_object *key)
{
    if (key->type != MSGPACK_OBJECT_STR)
        return false;
    for (uint32_t i = 0; i < bindings->via.array.size; i++) {
        const msgpack_object *b = &bindings->via.array.ptr[i];
        if (route_key_match(b->via.str.ptr, b->via.str.size, key->via.str.ptr, key->via.str.size))
            return true;
    }
    return false;
}
