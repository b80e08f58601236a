/* mqhub plugin ABI, version 2 (history in docs/plugins.md "ABI history").
 *
 * A plugin is a shared object (dlopen'ed by mqhubd) exporting one symbol,
 * declared at the end of this header; a plugin defines it as
 *
 *     MQHUB_PLUGIN_EXPORT const mqhub_plugin_t *mqhub_plugin_entry(void)
 *     {
 *         return &my_plugin;
 *     }
 *
 * and is built with hidden visibility (-fvisibility=hidden), so that this is
 * the only symbol it exports.
 *
 * The returned descriptor names the ABI version it was built against and its
 * own size; the host refuses a plugin whose abi_version differs from
 * MQHUB_PLUGIN_ABI or whose size is smaller than the version-1 descriptor.
 * init() receives the host's function table (mqhub_host_api_t) and an opaque
 * per-instance handle (mqhub_host_t) to pass back to every call.
 *
 * Threads: every host function, and every plugin callback, runs on the
 * daemon's one libuv loop thread (api->loop()). A plugin that starts a thread
 * must hop back to the loop (uv_async_t) before calling the host.
 *
 * Compatibility: members are only ever appended to these structs; a plugin
 * checks MQHUB_HOST_HAS(api, member) before using a member appended after
 * version 2 (every member below is in every version-2 host; the "appended
 * after" notes date from version 1). A member that changes type bumps
 * MQHUB_PLUGIN_ABI instead.
 * See docs/plugins.md for a walk-through and a minimal out-of-tree plugin.
 */
#ifndef MQHUB_PLUGIN_H
#define MQHUB_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mqhub/log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a member changes meaning or type (2: config_int reports errors
 * in its return value); the host refuses a plugin built against another. */
#define MQHUB_PLUGIN_ABI 2

/* Opaque: one per loaded plugin instance (owned by the host). */
typedef struct mqhub_host mqhub_host_t;
/* Opaque: one per client connection a transport opened (owned by the host). */
typedef struct mqhub_session mqhub_session_t;

/* Called once per request with the complete response map (MessagePack).
 * @msgpack is valid only during the call: copy what you keep. */
typedef void (*mqhub_reply_cb)(void *arg, const char *msgpack, size_t len);

/* Called when the host pushes a server message ({"push": kind, ...}) to a
 * session. @msgpack is valid only during the call. */
typedef void (*mqhub_push_cb)(void *push_arg, const char *msgpack, size_t len);

/* One daemon counter, listed by metric_each. */
typedef void (*mqhub_metric_cb)(void *arg, const char *name, int64_t value);

typedef struct mqhub_host_api {
    uint32_t abi_version; /* MQHUB_PLUGIN_ABI of the host */
    uint32_t size;        /* sizeof(mqhub_host_api_t) of the host */

    /* The daemon's event loop. Plugins add their handles to it. */
    uv_loop_t *(*loop)(mqhub_host_t *host);

    /* Configuration values from this plugin's table in the config file
     * (transport "tcp" { listen = "..." }). config_string returns NULL when the
     * key is absent or not a string; the pointer lives as long as the plugin.
     * config_int stores the value in *@out (@def when the key is absent, 1/0
     * for true/false) and returns 0; when the key is present but not an
     * integer (a string, a fraction, beyond int64) it logs an error naming
     * the transport and the key, leaves *@out alone and returns
     * MQHUB_EBAD_REQUEST: init should then fail. Range checks are the
     * plugin's. */
    const char *(*config_string)(mqhub_host_t *host, const char *key);
    int (*config_int)(mqhub_host_t *host, const char *key, int64_t def, int64_t *out);

    /* Open a session for a new client connection; the host names it after
     * the plugin ("tcp") in logs and metrics. @peer is the remote address,
     * for logs. @push/@push_arg receive server pushes (may be NULL for
     * transports without push). Returns NULL on out-of-memory. */
    mqhub_session_t *(*session_open)(mqhub_host_t *host, const char *peer,
                                     mqhub_push_cb push, void *push_arg);

    /* Close a session. Replies still outstanding for it are dropped (their
     * callbacks are never called after this returns). */
    void (*session_close)(mqhub_session_t *session);

    /* Submit one request (a MessagePack map, PROTOCOL.md). The host parses it
     * before returning (the buffer may be reused at once) and calls @cb exactly
     * once with the response, maybe before request() returns, maybe much later
     * (long-poll), never after session_close(). Responses to pipelined
     * requests may arrive out of order. Returns 0; a malformed frame still
     * gets a BAD_REQUEST response through @cb. */
    int (*request)(mqhub_session_t *session, const char *msgpack, size_t len,
                   mqhub_reply_cb cb, void *arg);

    /* Structured log line: level, plugin name, message. */
    void (*log)(mqhub_host_t *host, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* Add @delta to the counter @name (created on first use), exported with
     * the daemon's metrics as mqhub_<plugin>_<name>, with "_total" appended
     * unless @name ends with it (docs/metrics.md "Plugin counters"). */
    void (*metric_add)(mqhub_host_t *host, const char *name, int64_t delta);

    /* The largest frame a client may send, in bytes (config max_frame). */
    size_t (*max_frame)(mqhub_host_t *host);

    /* Appended after max_frame (MQHUB_HOST_HAS): nonzero once the host
     * answered a frame of this session that it could not read (not exactly
     * one MessagePack map, or no unsigned "id"). That reply carries no id, so
     * the client can no longer match responses: write it, then close the
     * connection. Checked by the transport after each reply. */
    int (*session_broken)(mqhub_session_t *session);

    /* Appended after session_broken (MQHUB_HOST_HAS): the token the server
     * requires in hello (config auth { token }), NULL when none. A plugin
     * that makes requests of its own (a metrics exporter) says hello with it;
     * one that serves HTTP may compare a client's bearer token to it. */
    const char *(*auth_token)(mqhub_host_t *host);

    /* Appended after auth_token (MQHUB_HOST_HAS): the value of the daemon
     * counter @name ("requests_total", "sessions_opened_total", ...; see
     * docs/metrics.md), 0 when it does not exist. Also the request latency
     * histograms the core keeps per transport:
     * "request_seconds_count.<transport>", "request_seconds_sum_us.<transport>"
     * and "request_seconds_bucket.<transport>.<i>" (cumulative;
     * docs/plugins.md). */
    int64_t (*metric_get)(mqhub_host_t *host, const char *name);

    /* Appended after metric_get (MQHUB_HOST_HAS): the transport's outgoing
     * bytes for @session went above its high-water mark (@writable 0) or back
     * below its low-water mark (1). While not writable the host sends the
     * session no pushes (push subscriptions skip it; replies still come). A
     * transport that never calls it gets pushes always. Closing a session
     * that stays unwritable too long is the transport's (write_timeout). */
    void (*session_writable)(mqhub_session_t *session, int writable);

    /* Appended after session_writable (MQHUB_HOST_HAS): @session acts as
     * the named user @user (docs/security.md) from its next request, for a
     * transport that authenticated its client itself (the CMQ transport's
     * signed requests): no hello is needed. The user's grants are looked up
     * by name on every request, so grant, revoke and delete apply at once;
     * while no user has that name, requests that need an identity
     * answer UNAUTHORIZED. A hello with a token later replaces it. Only plugins can
     * do this (it is no wire op): a plugin is trusted code. Returns 0, or
     * MQHUB_EBAD_REQUEST when @user is empty or longer than
     * MQHUB_NAME_MAX. */
    int (*session_identify)(mqhub_session_t *session, const char *user);

    /* Appended after session_identify (MQHUB_HOST_HAS): call @cb(@arg, name,
     * value) at once for every daemon counter whose name begins with @prefix
     * ("" for all), in the order they were created; not for the latency
     * histograms and process figures of metric_get. A plugin's counters
     * (metric_add) are named "plugin_<plugin>_<name>": an exporter lists them
     * all with the prefix "plugin_" without knowing each plugin's names. A
     * counter exists from its first metric_add (declare one with a delta of
     * 0 to have it listed before its first event). @cb must not call
     * metric_add. Loop thread. */
    void (*metric_each)(mqhub_host_t *host, const char *prefix, mqhub_metric_cb cb, void *arg);
} mqhub_host_api_t;

typedef struct mqhub_plugin {
    uint32_t abi_version; /* MQHUB_PLUGIN_ABI the plugin was built against */
    uint32_t size;        /* sizeof(mqhub_plugin_t) */
    const char *name;     /* short name, [a-z0-9_]+ */

    /* Start: add handles to the loop, listen. Return 0, or nonzero with a
     * sentence in @errmsg (errlen bytes); the host then refuses the plugin and
     * never calls stop or fini. @state receives the plugin's private pointer. */
    int (*init)(const mqhub_host_api_t *api, mqhub_host_t *host, void **state,
                char *errmsg, size_t errlen);

    /* Shutdown step 1: stop accepting, close connections (uv_close their
     * handles). The host keeps running the loop until every handle is closed. */
    void (*stop)(void *state);

    /* Shutdown step 2, after the loop drained: free @state. */
    void (*fini)(void *state);
} mqhub_plugin_t;

/* Whether the host's function table @api has @member: false for a member
 * appended after the version of the mqhubd that loaded the plugin. */
#define MQHUB_HOST_HAS(api, member)                                                        \
    ((api)->size >= offsetof(mqhub_host_api_t, member) + sizeof((api)->member))

/* Marks mqhub_plugin_entry's definition: the one symbol a plugin exports. */
#define MQHUB_PLUGIN_EXPORT __attribute__((visibility("default")))

/* The entry point every plugin defines (with MQHUB_PLUGIN_EXPORT) and the
 * host looks up by name: the plugin's descriptor, a static const struct. */
MQHUB_PLUGIN_EXPORT const mqhub_plugin_t *mqhub_plugin_entry(void);

typedef const mqhub_plugin_t *(*mqhub_plugin_entry_fn)(void);

#define MQHUB_PLUGIN_ENTRY "mqhub_plugin_entry"

#ifdef __cplusplus
}
#endif
#endif
