/* sign.c: CMQ's request signature. The client sends
 *   Signature = base64(HMAC(SecretKey, METHOD + Host + path + "?" + params))
 * where params are every parameter but Signature, sorted by key, written
 * k=v with '_' in keys as '.', joined by '&', values as sent before
 * URL-encoding; HMAC is SHA-1 or SHA-256 (SignatureMethod HmacSHA1, the
 * default, or HmacSHA256). Host is the header as received (with the port),
 * path the request path as received.
 *
 * Start with cmq_sign_verify(). The Python SDK leaves POST params whose
 * value starts with '@' out of what it signs, other SDKs do not: both forms
 * are accepted (docs/cmq.md "Signatures").
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cmq.h"

static int by_key(const void *a, const void *b)
{
    const cmq_param_t *x = *(const cmq_param_t *const *)a, *y = *(const cmq_param_t *const *)b;
    return strcmp(x->key, y->key);
}

/* Append @n bytes of @s to the buffer @b (length *@len, room *@cap). */
static int append(char **b, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (n > SIZE_MAX / 4 - *len) /* c below neither wraps nor becomes 0 */
        return -1;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        char *nb;
        while (c < *len + n + 1)
            c *= 2;
        if ((nb = realloc(*b, c)) == NULL)
            return -1;
        *b = nb;
        *cap = c;
    }
    memcpy(*b + *len, s, n);
    *len += n;
    (*b)[*len] = '\0';
    return 0;
}

/* The params to sign, sorted by key (pointers into @p); their count. */
static size_t sorted(const cmq_params_t *p, bool skip_at, const cmq_param_t **out)
{
    size_t n = 0;

    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->v[i].key, "Signature") == 0 || (skip_at && p->v[i].val[0] == '@'))
            continue;
        out[n++] = &p->v[i];
    }
    qsort(out, n, sizeof *out, by_key);
    return n;
}

char *cmq_sign_string(const cmq_params_t *p, const char *method, const char *host,
                      const char *path, bool skip_at, size_t *len)
{
    const cmq_param_t **v = malloc((p->n + 1) * sizeof *v);
    size_t n, cap = 0;
    char *b = NULL;
    int rc;

    *len = 0;
    if (v == NULL)
        return NULL;
    n = sorted(p, skip_at, v);
    /* Short-circuit: no append after a failed one (b may then be NULL). */
    rc = append(&b, len, &cap, method, strlen(method)) || append(&b, len, &cap, host, strlen(host)) ||
         append(&b, len, &cap, path, strlen(path)) || append(&b, len, &cap, "?", 1);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t start = *len;
        rc = (i > 0 && append(&b, len, &cap, "&", 1)) ||
             append(&b, len, &cap, v[i]->key, v[i]->klen);
        for (size_t k = start; rc == 0 && k < *len; k++)
            if (b[k] == '_')
                b[k] = '.';
        rc = rc || append(&b, len, &cap, "=", 1) || append(&b, len, &cap, v[i]->val, v[i]->vlen);
    }
    free(v);
    if (rc != 0) {
        free(b);
        return NULL;
    }
    return b;
}

int cmq_sign_hmac(const char *key, bool sha256, const char *s, size_t len, char out[64])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (HMAC(sha256 ? EVP_sha256() : EVP_sha1(), key, (int)strlen(key),
             (const unsigned char *)s, len, md, &mdlen) == NULL)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen); /* 28 or 44 bytes + NUL */
    return 0;
}

/* Whether @sig is the signature of the string built with @skip_at. */
static bool matches(const cmq_params_t *p, const char *method, const char *host,
                    const char *path, const char *key, bool sha256, bool skip_at,
                    const char *sig, size_t siglen)
{
    size_t len;
    char *s = cmq_sign_string(p, method, host, path, skip_at, &len);
    char want[64];
    bool ok = s != NULL && cmq_sign_hmac(key, sha256, s, len, want) == 0 &&
              strlen(want) == siglen && CRYPTO_memcmp(want, sig, siglen) == 0;

    free(s);
    return ok;
}

bool cmq_sign_verify(const cmq_params_t *p, const char *method, const char *host,
                     const char *path, const char *key)
{
    const char *alg = cmq_param(p, "SignatureMethod", NULL);
    size_t siglen;
    const char *sig = cmq_param(p, "Signature", &siglen);
    bool sha256 = alg != NULL && strcmp(alg, "HmacSHA256") == 0;
    bool post = strcmp(method, "POST") == 0;

    if (sig == NULL || (alg != NULL && !sha256 && strcmp(alg, "HmacSHA1") != 0))
        return false;
    if (matches(p, method, host, path, key, sha256, false, sig, siglen))
        return true;
    return post && matches(p, method, host, path, key, sha256, true, sig, siglen);
}
