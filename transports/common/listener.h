/* listener.h: a listening socket on the daemon's libuv loop that hands each
 * accepted connection to a callback (listener.c), for the transports that
 * give their connections to libwebsockets (websocket, cmq): lws listens on
 * nothing of its own, see core/util/listen.c for why. Loop thread only.
 */
#ifndef MQHUB_LISTENER_H
#define MQHUB_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

#include "mqhub/plugin.h"

typedef struct listener listener_t;

/* A connection accepted by @l: @fd (non-blocking, close-on-exec) is the
 * callback's to keep or close. */
typedef void (*listener_accept_cb)(void *data, int fd);

typedef struct listener_config {
    const mqhub_host_api_t *api; /* accept errors are logged as warnings */
    mqhub_host_t *host;
    int backlog;
    unsigned accepts_per_wake; /* so that a flood does not starve the loop */
    listener_accept_cb on_accept;
    void *data; /* for on_accept */
} listener_config_t;

/* Bind @addr exactly (listen_open: the port resolved back into @addr, the
 * address as text into @bound) and accept on @cfg's loop. 0 with the new
 * listener in *@out, closed by listener_close(); -1 with a sentence in
 * @errmsg. */
int listener_open(listener_t **out, const listener_config_t *cfg, struct sockaddr_storage *addr,
                  char *bound, size_t boundlen, char *errmsg, size_t errlen);
/* Stop accepting and close the socket; @l's memory goes in the last close
 * callback of its handles (it may outlive the plugin's state). NULL is a
 * no-op. */
void listener_close(listener_t *l);

#endif
