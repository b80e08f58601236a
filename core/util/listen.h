/* listen.h: a listening TCP socket at exactly the configured address
 * (listen.c), for the transports that hand accepted sockets to
 * libwebsockets (websocket, cmq); the TCP transport parses its `listen`
 * with listen_parse(). Pure POSIX socket calls, no state. */
#ifndef MQHUB_UTIL_LISTEN_H
#define MQHUB_UTIL_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>


/* "host:port" or "[v6]:port" with a numeric host (an IPv6 one may name
 * its zone: "[fe80::1%eth0]:6270") into @addr: 0, or -1. */
int listen_parse(const char *s, struct sockaddr_storage *addr);
/* "ip:port" / "[ip]:port" of @ss into @out. */
void listen_name(const struct sockaddr_storage *ss, char *out, size_t len);
/* A non-blocking socket bound to @addr and listening: its fd (the caller
 * closes it), the address really bound (port 0 resolved) back in @addr and
 * in @bound; -1 with a sentence in @errmsg. */
int listen_open(struct sockaddr_storage *addr, int backlog, char *bound, size_t boundlen,
                char *errmsg, size_t errlen);

#endif
