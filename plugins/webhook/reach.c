/* reach.c: the webhook plugin's reach control (reach.h): may the address a
 * POST is about to connect to be reached? Guards against a subscription URL
 * that makes the leader POST to a cloud metadata service or an internal
 * address (server-side request forgery).
 *
 * Start with reach_parse() (the two settings, list_parse() and
 * block_parse() for each CIDR block) and reach_allowed() (the address
 * normalised to 16 bytes by to_v6(), then matched by block_match()). Every
 * address is handled in its IPv6 form: an IPv4 block a.b.c.d/n is the
 * IPv4-mapped block ::ffff:a.b.c.d/(96+n), so "127.0.0.0/8" also refuses
 * [::ffff:127.0.0.1]. Extending: a new kind of list entry is one branch in
 * block_parse().
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reach.h"

#define REACH_BLOCK_MAX 64 /* characters of one block, "/128" included */

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* One block "addr[/bits]" (@len bytes, no spaces) into @out: false when it
 * is not an IPv4 or IPv6 block, or its host bits are not zero. */
static bool block_parse(const char *s, size_t len, reach_net_t *out)
{
    char buf[REACH_BLOCK_MAX], *slash, *end;
    unsigned long bits;
    struct in_addr a4;
    struct in6_addr a6;
    bool v4;

    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    slash = strchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        v4 = true;
        memcpy(out->addr, v4_mapped_prefix, 12);
        memcpy(out->addr + 12, &a4, 4);
    } else if (inet_pton(AF_INET6, buf, &a6) == 1) {
        v4 = false;
        memcpy(out->addr, &a6, 16);
    } else {
        return false;
    }
    bits = v4 ? 32 : 128;
    if (slash != NULL) {
        if (slash[1] < '0' || slash[1] > '9')
            return false;
        bits = strtoul(slash + 1, &end, 10);
        if (*end != '\0' || bits > (v4 ? 32u : 128u))
            return false;
    }
    out->bits = (unsigned)bits + (v4 ? 96 : 0);
    /* "10.0.0.1/8" is most likely a typo for a host or a block: refused. */
    for (unsigned i = out->bits; i < 128; i++)
        if (out->addr[i / 8] & (0x80 >> (i % 8)))
            return false;
    return true;
}

/* The comma-separated blocks of @spec into @l (spaces around them ignored). */
static int list_parse(reach_list_t *l, const char *spec, const char *key, char *errmsg,
                      size_t errlen)
{
    size_t cap = 1;

    for (const char *c = spec; *c != '\0'; c++)
        cap += *c == ',';
    l->nets = calloc(cap, sizeof *l->nets);
    l->n = 0;
    if (l->nets == NULL) {
        snprintf(errmsg, errlen, "%s: out of memory", key);
        return -1;
    }
    for (const char *p = spec; *p != '\0';) {
        size_t len = strcspn(p, ","), b = 0, e = len;

        while (b < e && (p[b] == ' ' || p[b] == '\t'))
            b++;
        while (e > b && (p[e - 1] == ' ' || p[e - 1] == '\t'))
            e--;
        if (!block_parse(p + b, e - b, &l->nets[l->n])) {
            snprintf(errmsg, errlen, "%s: bad network \"%.*s\" (want CIDR blocks such as "
                     "10.0.0.0/8,fd00::/8, comma-separated)", key, (int)(e - b > 64 ? 64 : e - b),
                     p + b);
            free(l->nets);
            l->nets = NULL;
            return -1;
        }
        l->n++;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

int reach_parse(reach_t *r, const char *allow, const char *deny, char *errmsg, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->has_allow = allow != NULL && allow[0] != '\0';
    if (r->has_allow && list_parse(&r->allow, allow, "allow_networks", errmsg, errlen) != 0)
        return -1;
    if (list_parse(&r->deny, deny != NULL ? deny : REACH_DEFAULT_DENY, "deny_networks", errmsg,
                   errlen) != 0) {
        reach_free(r);
        return -1;
    }
    return 0;
}

static bool block_match(const reach_net_t *n, const uint8_t a[16])
{
    unsigned full = n->bits / 8, rest = n->bits % 8;

    if (memcmp(n->addr, a, full) != 0)
        return false;
    return rest == 0 || ((n->addr[full] ^ a[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static bool list_match(const reach_list_t *l, const uint8_t a[16])
{
    for (size_t i = 0; i < l->n; i++)
        if (block_match(&l->nets[i], a))
            return true;
    return false;
}

/* @sa in its 16-byte form into @a: false for a family other than IPv4/IPv6. */
static bool to_v6(const struct sockaddr *sa, uint8_t a[16])
{
    if (sa->sa_family == AF_INET) {
        memcpy(a, v4_mapped_prefix, 12);
        memcpy(a + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

bool reach_allowed(const reach_t *r, const struct sockaddr *sa)
{
    uint8_t a[16];

    if (!to_v6(sa, a))
        return false;
    if (r->has_allow && !list_match(&r->allow, a))
        return false;
    return !list_match(&r->deny, a);
}

void reach_free(reach_t *r)
{
    free(r->allow.nets);
    free(r->deny.nets);
    r->allow.nets = r->deny.nets = NULL;
    r->allow.n = r->deny.n = 0;
}
