/* listen.c: the CMQ transport's listening socket, bound exactly at the
 * configured address. lws 4.1.6 reads info.iface as an interface name first
 * and, with IPv6 on, parses an IPv4 address given there into the wrong bytes
 * (see transports/websocket/ws.c "listening"), so, as the WebSocket
 * transport does, the plugin binds the socket itself and hands each
 * accepted connection to lws (cmq.c on_accept()).
 *
 * Start with listen_parse() then listen_open(). The same code lives in
 * transports/websocket/ws.c (static there); moving both to one shared
 * helper is a follow-up that touches that transport.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "listen.h"

int listen_parse(const char *s, struct sockaddr_storage *addr)
{
    const char *colon = strrchr(s, ':');
    char host[INET6_ADDRSTRLEN];
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
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) == 0)
        return 0;
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr) == 0 ? 0 : -1;
}

void listen_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    bool v6 = ss->ss_family == AF_INET6;
    int port = v6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                  : ntohs(((const struct sockaddr_in *)ss)->sin_port);

    if (v6)
        uv_ip6_name((const struct sockaddr_in6 *)ss, ip, sizeof ip);
    else
        uv_ip4_name((const struct sockaddr_in *)ss, ip, sizeof ip);
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
