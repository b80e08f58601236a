/* listener.c: the listening socket of listener.h — bound by core/util's
 * listen_open(), watched with a uv_poll_t on the daemon's loop.
 *
 * on_readable() accepts at most accepts_per_wake connections per wake-up
 * and passes each to the owner's callback; a failed accept other than
 * "nothing waits" is logged ("accept on <bound>: <errno text>"), at most
 * once per LISTENER_LOG_MS with a count of the failures not logged since
 * (accept_failed()). Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
 * ENOMEM) the connection stays in the kernel's queue and the socket stays
 * readable: instead of waking at once again (a busy loop at the fd limit),
 * the listener stops polling for LISTENER_BACKOFF_MS (the backoff timer),
 * then tries again. Every
 * accepted socket has TCP_NODELAY: lws writes an HTTP reply's head and body
 * (and a WebSocket message's frames) separately, and with Nagle the second
 * write waits for the client's delayed ACK of the first, ~40 ms per request.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "listen.h"
#include "listener.h"

#define LISTENER_BACKOFF_MS 100 /* no accepting after running out of fds */
#define LISTENER_LOG_MS 1000    /* at most one accept warning per second */

struct listener {
    uv_poll_t poll;     /* the socket; polling stops during a back-off */
    uv_timer_t backoff; /* restarts the poll LISTENER_BACKOFF_MS later */
    unsigned open_handles; /* the last close callback frees the listener */
    int fd;
    listener_config_t cfg;
    char bound[INET6_ADDRSTRLEN + 8];
    bool logged;        /* a warning was logged, at logged_ms (uv_now) */
    uint64_t logged_ms;
    unsigned unlogged;  /* failures since, not logged */
};

static void on_readable(uv_poll_t *p, int status, int events);

static void on_backoff(uv_timer_t *t)
{
    listener_t *l = t->data;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

/* A failed accept (@err, not "nothing waits"): logged unless one was logged
 * less than LISTENER_LOG_MS ago (then counted, and told with the next);
 * out of descriptors or memory, polling pauses for LISTENER_BACKOFF_MS. */
static void accept_failed(listener_t *l, int err)
{
    uint64_t now = uv_now(l->poll.loop);

    if ((err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) &&
        uv_poll_stop(&l->poll) == 0)
        uv_timer_start(&l->backoff, on_backoff, LISTENER_BACKOFF_MS, 0);
    if (l->logged && now - l->logged_ms < LISTENER_LOG_MS) {
        l->unlogged++;
        return;
    }
    if (l->unlogged > 0)
        l->cfg.api->log(l->cfg.host, MQHUB_LOG_WARN,
                        "accept on %s: %s (%u more failed accepts in the last %.1f s not "
                        "logged; accepting pauses %d ms after each for lack of descriptors "
                        "or memory)",
                        l->bound, strerror(err), l->unlogged, (double)(now - l->logged_ms) / 1e3,
                        LISTENER_BACKOFF_MS);
    else
        l->cfg.api->log(l->cfg.host, MQHUB_LOG_WARN, "accept on %s: %s", l->bound,
                        strerror(err));
    l->logged = true;
    l->logged_ms = now;
    l->unlogged = 0;
}

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
                accept_failed(l, errno);
            return;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        l->cfg.on_accept(l->cfg.data, fd);
    }
}

static void on_closed(uv_handle_t *h)
{
    listener_t *l = h->data;
    if (--l->open_handles == 0)
        free(l);
}

int listener_open(listener_t **out, const listener_config_t *cfg, struct sockaddr_storage *addr,
                  char *bound, size_t boundlen, char *errmsg, size_t errlen)
{
    listener_t *l = calloc(1, sizeof *l);
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
    uv_timer_init(cfg->api->loop(cfg->host), &l->backoff); /* cannot fail */
    l->backoff.data = l;
    l->open_handles = 2; /* the poll and the timer */
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
    uv_close((uv_handle_t *)&l->backoff, on_closed);
    uv_close((uv_handle_t *)&l->poll, on_closed);
    close(l->fd); /* after uv_close: no longer polled */
}
