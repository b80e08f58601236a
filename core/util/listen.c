/* listen.c: a listening socket bound exactly at the configured address.
 * lws 4.1.6 reads info.iface as an interface name first and, with IPv6 on,
 * parses an IPv4 address given there into the wrong bytes, so
 * `listen = "127.0.0.1:6280"` listened on [::]:6280. The transports built on
 * lws (websocket, cmq) therefore bind the socket here and hand each accepted
 * connection to lws (lws_adopt_socket_vhost).
 *
 * Start with listen_parse() then listen_open(); listen_name() formats an
 * address for log lines.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "listen.h"

int listen_parse(const char *s, struct sockaddr_storage *addr)
{
    const char *colon = strrchr(s, ':');
    char host[128], *zone;
    size_t hl;
    int port;

    if (colon == NULL || sscanf(colon + 1, "%d", &port) != 1 || port < 0 || port > 65535)
        return -1;
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof host)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    memset(addr, 0, sizeof *addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if ((zone = strchr(host, '%')) != NULL)
        *zone++ = '\0';
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
        return -1;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    a6->sin6_scope_id = zone != NULL ? if_nametoindex(zone) : 0;
    return 0;
}

void listen_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    bool v6 = ss->ss_family == AF_INET6;
    int port = v6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                  : ntohs(((const struct sockaddr_in *)ss)->sin_port);

    if (v6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof ip);
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof ip);
    snprintf(out, len, v6 ? "[%s]:%d" : "%s:%d", ip, port);
}

int listen_open(struct sockaddr_storage *addr, int backlog, char *bound, size_t boundlen,
                char *errmsg, size_t errlen)
{
    socklen_t len = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in);
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    listen_name(addr, bound, boundlen);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)addr, len) != 0 || listen(fd, backlog) != 0) {
        snprintf(errmsg, errlen, "listen on %s: %s", bound, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    len = sizeof *addr;
    if (getsockname(fd, (struct sockaddr *)addr, &len) == 0)
        listen_name(addr, bound, boundlen);
    return fd;
}
