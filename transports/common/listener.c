/* listener.c: the listening socket of listener.h — bound by core/util's
 * listen_open(), watched with a uv_poll_t on the daemon's loop.
 *
 * on_readable() accepts at most accepts_per_wake connections per wake-up
 * and passes each to the owner's callback; a failed accept other than
 * "nothing waits" is logged ("accept on <bound>: <errno text>"). Every
 * accepted socket has TCP_NODELAY: lws writes an HTTP reply's head and body
 * (and a WebSocket message's frames) separately, and with Nagle the second
 * write waits for the client's delayed ACK of the first, ~40 ms per request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "listen.h"
#include "listener.h"

struct listener {
    uv_poll_t poll; /* first: the close callback frees the listener */
    int fd;
    listener_config_t cfg;
    char bound[INET6_ADDRSTRLEN + 8];
};

static void on_readable(uv_poll_t *p, int status, int events)
{
    listener_t *l = p->data;

    int one = 1;

    (void)events;
    for (unsigned i = 0; status == 0 && i < l->cfg.accepts_per_wake; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                l->cfg.api->log(l->cfg.host, MQHUB_LOG_WARN, "accept on %s: %s", l->bound,
                                strerror(errno));
            return;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        l->cfg.on_accept(l->cfg.data, fd);
    }
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

int listener_open(listener_t **out, const listener_config_t *cfg, struct sockaddr_storage *addr,
                  char *bound, size_t boundlen, char *errmsg, size_t errlen)
{
    listener_t *l = malloc(sizeof *l);
    int rc;

    if (l == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    l->cfg = *cfg;
    l->fd = listen_open(addr, cfg->backlog, l->bound, sizeof l->bound, errmsg, errlen);
    if (l->fd < 0) {
        free(l);
        return -1;
    }
    snprintf(bound, boundlen, "%s", l->bound);
    if ((rc = uv_poll_init_socket(cfg->api->loop(cfg->host), &l->poll, l->fd)) != 0) {
        snprintf(errmsg, errlen, "listen on %s: %s", l->bound, uv_strerror(rc));
        close(l->fd);
        free(l);
        return -1;
    }
    l->poll.data = l;
    if ((rc = uv_poll_start(&l->poll, UV_READABLE, on_readable)) != 0) {
        snprintf(errmsg, errlen, "listen on %s: %s", l->bound, uv_strerror(rc));
        listener_close(l);
        return -1;
    }
    *out = l;
    return 0;
}

void listener_close(listener_t *l)
{
    if (l == NULL)
        return;
    uv_close((uv_handle_t *)&l->poll, on_closed);
    close(l->fd); /* after uv_close: no longer polled */
}
