/* form.c: the parameters of one CMQ request, whether they came in the
 * query string (cmq.c takes them from lws, decoded) or in an
 * x-www-form-urlencoded body (cmq_form_parse(), with or without a
 * Content-Type header, for any method). Values are kept decoded: that is
 * what CMQ signs.
 *
 * Start with cmq_form_parse() and cmq_param_array() (CMQ's arrays:
 * msgBody.1, msgBody.2, ... or from .0). Everything here is pure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmq.h"

int cmq_params_add(cmq_params_t *p, const char *k, size_t kl, const char *v, size_t vl)
{
    cmq_param_t *e;

    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        cmq_param_t *nv = realloc(p->v, cap * sizeof *nv);
        if (nv == NULL)
            return -1;
        p->v = nv;
        p->cap = cap;
    }
    e = &p->v[p->n];
    e->key = malloc(kl + 1);
    e->val = malloc(vl + 1);
    if (e->key == NULL || e->val == NULL) {
        free(e->key);
        free(e->val);
        return -1;
    }
    memcpy(e->key, k, kl);
    e->key[kl] = '\0';
    memcpy(e->val, v, vl);
    e->val[vl] = '\0';
    e->klen = kl;
    e->vlen = vl;
    p->n++;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode @len bytes of @s into @out (room for @len bytes):
 * the decoded length, or -1 on a bad %-escape. */
static long decode(const char *s, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return (long)o;
}

static int add_pair(cmq_params_t *p, const char *s, size_t len, char *tmp)
{
    const char *eq = memchr(s, '=', len);
    size_t kl = eq != NULL ? (size_t)(eq - s) : len;
    long k, v;

    if (len == 0)
        return 0;
    k = decode(s, kl, tmp);
    if (k < 0)
        return -1;
    v = eq != NULL ? decode(eq + 1, len - kl - 1, tmp + k) : 0;
    if (v < 0)
        return -1;
    return cmq_params_add(p, tmp, (size_t)k, tmp + k, (size_t)v);
}

int cmq_form_parse(cmq_params_t *p, const char *body, size_t len)
{
    char *tmp = malloc(len + 1);
    size_t i = 0;
    int rc = 0;

    if (tmp == NULL)
        return -1;
    while (rc == 0 && i < len) {
        const char *amp = memchr(body + i, '&', len - i);
        size_t n = amp != NULL ? (size_t)(amp - (body + i)) : len - i;
        rc = add_pair(p, body + i, n, tmp);
        i += n + 1;
    }
    free(tmp);
    return rc;
}

const char *cmq_param(const cmq_params_t *p, const char *key, size_t *len)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->v[i].key, key) == 0) {
            if (len != NULL)
                *len = p->v[i].vlen;
            return p->v[i].val;
        }
    }
    return NULL;
}

/* The index N of a key "@name.N" (@nl bytes of name), or -1. */
static long array_index(const cmq_param_t *e, const char *name, size_t nl)
{
    long n = 0;

    if (e->klen < nl + 2 || memcmp(e->key, name, nl) != 0 || e->key[nl] != '.')
        return -1;
    for (size_t i = nl + 1; i < e->klen; i++) {
        if (e->key[i] < '0' || e->key[i] > '9' || n > 100000)
            return -1;
        n = n * 10 + (e->key[i] - '0');
    }
    return n;
}

int cmq_param_array(const cmq_params_t *p, const char *name, const char **vals, size_t *lens,
                    size_t max, size_t *n)
{
    size_t nl = strlen(name), count = 0, found = 0;
    long base = 1;

    for (size_t i = 0; i < p->n; i++) {
        long ix = array_index(&p->v[i], name, nl);
        if (ix == 0)
            base = 0;
        count += ix >= 0;
    }
    *n = count;
    if (count > max)
        return -2;
    for (size_t k = 0; k < count; k++) {
        char key[96];
        snprintf(key, sizeof key, "%s.%ld", name, base + (long)k);
        vals[k] = cmq_param(p, key, &lens[k]);
        found += vals[k] != NULL;
    }
    return found == count ? 0 : -1;
}

void cmq_params_free(cmq_params_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].key);
        free(p->v[i].val);
    }
    free(p->v);
    memset(p, 0, sizeof *p);
}
