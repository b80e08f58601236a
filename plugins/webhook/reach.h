/* reach.h: which network addresses the webhook plugin may connect to
 * (reach.c): the allow_networks / deny_networks settings, lists of IPv4 and
 * IPv6 CIDR blocks, checked against the address of every socket curl opens
 * (post.c), so a host name that resolves, or later re-resolves, to a refused
 * address is refused too (docs/webhook.md "Reach").
 *
 * Ownership: a reach_t belongs to its creator (reach_parse, then
 * reach_free); reach_allowed only reads it, from any thread.
 */
#ifndef MQHUB_WEBHOOK_REACH_H
#define MQHUB_WEBHOOK_REACH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

/* One CIDR block, IPv4 blocks stored as IPv4-mapped IPv6 (::ffff:a.b.c.d/96+n). */
typedef struct reach_net {
    uint8_t addr[16];
    unsigned bits; /* prefix length over the 128-bit form */
} reach_net_t;

typedef struct reach_list {
    reach_net_t *nets;
    size_t n;
} reach_list_t;

typedef struct reach {
    bool has_allow;     /* allow_networks was set: only its blocks may be reached */
    reach_list_t allow; /* when has_allow */
    reach_list_t deny;  /* never reached, whatever allow says */
} reach_t;

/* The blocks denied when deny_networks is not set: link-local (where cloud
 * metadata services answer) and "this network". */
#define REACH_DEFAULT_DENY "169.254.0.0/16,fe80::/10,0.0.0.0/8"

/* Parse @allow (NULL or "": no allow list) and @deny (NULL: the default,
 * "": none), comma-separated CIDR blocks ("10.0.0.0/8", "fd00::/8", a bare
 * address is a /32 or /128), into @r. 0, or -1 with "allow_networks: bad
 * block \"x\"" (the key named) in @errmsg; nothing to free then. */
int reach_parse(reach_t *r, const char *allow, const char *deny, char *errmsg, size_t errlen);

/* May @sa (AF_INET or AF_INET6; any other family is refused) be connected
 * to? An IPv4-mapped IPv6 address is judged as the IPv4 address it maps. */
bool reach_allowed(const reach_t *r, const struct sockaddr *sa);

void reach_free(reach_t *r);

#endif
