/* ws.h: the WebSocket transport's internal contracts, shared by its files:
 *   ws.c     plugin entry, libwebsockets context on the daemon's loop,
 *            WebSocket connections (both subprotocols)
 *   http.c   HTTP endpoints on the same listener: /metrics, /healthz, /readyz
 *   stats.c  the collector: a snapshot of cluster, queues, topics and blocks
 *            gathered by ordinary requests, for stats pushes and /metrics
 *   history.c  rings of per-second and per-minute points of those snapshots
 *            (stats.history) for the dashboard's charts
 *   codec.c  JSON <-> MessagePack (codec.h; the static ws_codec, also linked
 *            by the CMQ transport)
 * Everything runs on the daemon's loop thread.
 */
#ifndef MQHUB_WS_H
#define MQHUB_WS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "mqhub/plugin.h"
#include "mqhub/protocol.h"

typedef struct stats stats_t;
typedef struct conn conn_t;
typedef struct http_req http_req_t;

typedef struct ws {
    const mqhub_host_api_t *api;
    mqhub_host_t *host;
    uv_loop_t *loop;
    struct lws_context *ctx;
    stats_t *stats;
    conn_t *conns;
    unsigned n_conns;      /* WebSocket connections (the mqhub_connections gauge) */
    size_t max_frame;      /* largest message a client may send */
    size_t send_limit;     /* bytes queued to one client before it is closed */
    /* The limits of docs/websocket.md "Limits", enforced by ws.c. */
    size_t high_water, low_water; /* send_limit / 2 and / 4: pushes pause, resume */
    uint64_t write_ms, frame_ms;  /* write_timeout, frame_timeout */
    size_t input_budget;   /* bytes of unfinished messages, all connections */
    size_t input_bytes;    /* ...held now (the sum of every conn's buffer) */
    unsigned max_conns;    /* max_connections: sockets, WebSocket or HTTP */
    unsigned n_socks;      /* sockets adopted and not destroyed yet */
    unsigned max_inflight; /* requests of one connection without a reply */
    int64_t stats_interval_ms; /* config, >= 100: the shortest stats interval */
    const char *token;     /* the server's hello token, NULL when none */
    uint64_t messages_in, messages_out;
} ws_t;

/* ---- ws.c */
/* Send @json (a stats push) to every connection subscribed to stats whose
 * interval has passed at @now_ms. */
void ws_broadcast_stats(ws_t *w, const json_t *push, uint64_t now_ms);
/* Widen the dashboard's Content-Security-Policy connect-src to the `http`
 * addresses of @cluster's nodes (a cluster.status answer), so a page may
 * follow the leader and ask every node (www/follow.js, pages/nodes.js). */
void ws_csp_members(ws_t *w, const json_t *cluster);
/* Milliseconds of the loop clock. */
uint64_t ws_now(ws_t *w);
/* A hub reply (MessagePack map) as JSON: a new reference, NULL when it does
 * not unpack. */
json_t *ws_reply_json(const char *buf, size_t len);

/* ---- http.c: the lws callback for HTTP on non-file mounts. */
int http_callback(ws_t *w, struct lws *wsi, enum lws_callback_reasons reason, void *user,
                  void *in, size_t len);
/* Per-connection state of an HTTP request (lws user space). */
size_t http_state_size(void);
/* The Prometheus text of @w's metrics (malloc'ed; NULL on out-of-memory). */
char *http_render_metrics(ws_t *w, const json_t *snap, size_t *len);

/* ---- stats.c */
typedef void (*stats_cb)(void *arg, const json_t *snapshot);
/* A collector with its own host session (says hello with @w->token). */
int stats_new(stats_t **out, ws_t *w);
/* Close its timer and session; frees itself once the timer is closed. */
void stats_stop(stats_t *s);
/* Keep gathering a snapshot every @interval_ms while @on (a stats
 * subscriber exists); pushes go through ws_broadcast_stats(). */
void stats_set_active(stats_t *s, bool on);
/* Call @cb once with a snapshot at most @max_age_ms old (gathering one if
 * needed; NULL on out-of-memory): maybe before this returns, maybe later.
 * Returns a ticket for stats_cancel(), valid until @cb was called. */
void *stats_want(stats_t *s, uint64_t max_age_ms, stats_cb cb, void *arg);
void stats_cancel(stats_t *s, void *ticket);
/* The rings of the hub (@queue NULL) or of queue @queue, for stats.history:
 * a new reference ({fields, seconds, minutes}), NULL on out-of-memory. */
json_t *stats_history(stats_t *s, const char *queue);
/* Whether @origin is "http://ADDR" ("https://ADDR" when @tls) for the
 * `http` address of a member of the cluster (the latest snapshot's
 * cluster.status). */
bool stats_member_origin(stats_t *s, const char *origin, bool tls);
/* This node's own figures for node.info (docs/protocol.md): a new
 * reference, NULL on out-of-memory. */
json_t *stats_node_info(stats_t *s);

/* ---- history.c: rings fed by every snapshot the collector finishes. */
typedef struct history history_t;
/* 0, or -1 when out of memory. */
int history_new(history_t **out);
void history_free(history_t *h);
/* One point from @snap taken at @ts_ms (ms since the epoch); @delivered and
 * @redelivered are this node's push counters. */
void history_sample(history_t *h, const json_t *snap, int64_t ts_ms, int64_t delivered,
                    int64_t redelivered);
/* {fields: [name], seconds: [[ts, value...]], minutes: [...]}, oldest
 * first, of the hub (@queue NULL) or of @queue (empty lists when it has no
 * rings): a new reference, NULL on out-of-memory. */
json_t *history_json(const history_t *h, const char *queue);

#endif
