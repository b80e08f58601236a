/* post.h: HTTP POSTs with libcurl's multi interface on a libuv loop (post.c),
 * for the webhook plugin. No thread of ours and no blocking call: curl's
 * sockets are watched with uv_poll, its timeouts with one uv_timer.
 *
 * Ownership: post_t belongs to its creator (post_open, post_close, then
 * post_free after the loop drained); a submitted request belongs to post.c
 * until its callback has returned. Loop thread only.
 */
#ifndef MQHUB_WEBHOOK_POST_H
#define MQHUB_WEBHOOK_POST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "reach.h"

typedef struct post post_t;

/* Settings fixed at post_open. */
typedef struct post_config {
    unsigned max_inflight;  /* concurrent transfers; more wait in a FIFO */
    long timeout_ms;        /* whole transfer: connect, send, answer */
    size_t max_response;    /* response body bytes read, the rest not read */
    const char *proxy;      /* NULL: no proxy, whatever the environment says */
    const char *ca_file;    /* PEM CAs for https; NULL: the system's */
    const char *user_agent;
    const reach_t *reach;   /* checked on every socket opened; not copied: it
                             * must outlive the post_t */
} post_config_t;

/* One finished POST. @status is the HTTP status (0 when none was received);
 * @error is curl's sentence when the transfer failed ("" otherwise: a status
 * was received and the body read up to max_response). @refused: it failed
 * because every address it could connect to was refused by cfg.reach (then
 * @error names the last one). */
typedef void (*post_done_cb)(void *arg, long status, const char *error, bool refused);

/* Create the engine on @loop (@cfg's strings are copied). 0, or -1 with a
 * sentence in @errmsg; nothing to undo then. */
int post_open(post_t **out, uv_loop_t *loop, const post_config_t *cfg, char *errmsg,
              size_t errlen);

/* POST @body (@len bytes, copied) to @url with @content_type and the extra
 * header lines @headers ("name: value", @n_headers of them, copied). @done is
 * called exactly once, from the loop, never from inside post_submit, unless
 * post_close() comes first (then never). Returns 0, or -1 when out of memory
 * or after post_close (@done is then not called). */
int post_submit(post_t *p, const char *url, const char *content_type, const char *body,
                size_t len, const char *const *headers, unsigned n_headers, post_done_cb done,
                void *arg);

/* Abort every transfer (no callback), close the handles. post_free once the
 * loop has run their close callbacks. */
void post_close(post_t *p);
void post_free(post_t *p);

#endif
