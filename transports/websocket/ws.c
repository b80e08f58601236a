/* ws.c: the WebSocket transport plugin (docs/websocket.md). Browsers and
 * other clients speak docs/protocol.md over WebSocket: subprotocol
 * mqhub.v1.json (JSON text messages, codec.c) or mqhub.v1.msgpack (binary
 * messages holding the MessagePack maps as they are). The same listener
 * serves the dashboard (static files of www/) and the HTTP endpoints of
 * http.c.
 *
 * Start with ws_init(): one libwebsockets context on the daemon's libuv loop
 * (a foreign loop: lws adds its handles, runs no thread and installs no
 * signal handler). The listening socket is ours (transports/common's
 * listener.c, exactly the configured address; on_accept() hands
 * connections to lws), and
 * origin_check() refuses upgrades from foreign web pages (allowed_origins).
 * callback() dispatches lws events: conn_open() opens one
 * host session per WebSocket, conn_receive() gathers a message's fragments
 * and handle() submits it (requests go to api->request; stats.subscribe,
 * stats.history and node.info are answered here (the hub checks the right
 * first: local_check), stats pushes restricted for a named user without admin by
 * push_restricted()), replies and pushes are queued by enqueue() and
 * written one per writable event by conn_writable().
 *
 * Limits (docs/websocket.md "Limits", the TCP transport's keys where they
 * apply): a message above max_frame is answered FRAME_TOO_LARGE and the
 * connection closed (1009); a request the host cannot read closes it after
 * the reply (1007); more than send_buffer bytes queued for a client that
 * reads too slowly drops its queue and closes it (1008, with the reason),
 * killed after a few seconds when even the close cannot be written.
 * track_blocked() tells the host (session_writable) when the queue passes
 * half of send_buffer, so pushes stop, and when it drains below a quarter;
 * sweep() closes, once a second, a connection blocked for write_timeout or
 * holding an unfinished message for frame_timeout. The buffers of unfinished
 * messages of all connections stay within input_budget (in_reserve()). A
 * connection with max_inflight requests unanswered is not read (lws rx flow
 * control) until half have answered. on_accept() refuses sockets past
 * max_connections (never closer than WS_FD_RESERVE to the open-file limit),
 * counted from adoption to LWS_CALLBACK_WSI_DESTROY; refusals and closes are
 * logged at most once a second (log_limited()).
 * Keepalive: lws pings a connection idle for ping_interval seconds and
 * hangs up one silent for idle_timeout seconds. Every message received counts
 * as a sign of life (conn_receive), so lws pings only idle connections: lws
 * 4.1.6 builds its ping in the buffer that holds a client's ping waiting for
 * its pong, so a ping of ours sent meanwhile corrupted that pong, and the
 * client (e.g. Python websockets' keepalive) failed the connection with 1011.
 *
 * Shutdown (the libuv foreign-loop rule of lws): ws_stop() calls
 * lws_context_destroy() inside the loop (it closes connections and starts
 * closing lws's handles), ws_fini() calls it again after the loop drained
 * to free the rest.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <msgpack.h>

#include "codec.h"
#include "listen.h"
#include "listener.h"
#include "mp.h"
#include "wire.h"
#include "ws.h"

#define WS_PROTO_JSON "mqhub.v1.json"
#define WS_PROTO_MSGPACK "mqhub.v1.msgpack"
#define WS_PROTO_HTTP "mqhub-http"
#define WS_KILL_SECS 3
#define WS_BACKLOG 511
#define WS_ACCEPTS_PER_WAKE 64
#define WS_MAX_ORIGINS 16
#define WS_ORIGIN_LOG_MS 1000
/* File descriptors left to the rest of the daemon when the open-file limit
 * caps max_connections (as the TCP transport's TCP_FD_RESERVE). */
#define WS_FD_RESERVE 64
#define WS_SWEEP_MS 1000
/* RFC 6455 1013 "Try Again Later": input_budget is used up by others. */
#define WS_CLOSE_TRY_AGAIN 1013
#define WS_CSP_HEAD                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "     \
    "connect-src 'self'"
#define WS_CSP_TAIL "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
#define WS_CSP WS_CSP_HEAD WS_CSP_TAIL

typedef struct out {
    struct out *next;
    size_t len;
    bool binary;
    unsigned char buf[]; /* LWS_PRE bytes of room, then the message */
} out_t;

enum creq_kind { CREQ_CLIENT, CREQ_TOKEN, CREQ_STATS, CREQ_LIST, CREQ_HISTORY, CREQ_NODE_INFO };

typedef struct creq {
    conn_t *c;
    enum creq_kind kind;
    uint64_t interval_ms;
    struct creq *prev, *next;
    char queue[]; /* CREQ_HISTORY: the queue asked for, "" for the hub */
} creq_t;

struct conn {
    ws_t *w;
    struct lws *wsi;
    mqhub_session_t *session;
    bool json;
    char *in; /* fragments of the message being received */
    size_t in_len, in_cap; /* in_cap counts in w->input_bytes */
    uint64_t partial_at; /* loop ms: since when in holds an unfinished message */
    out_t *head, *tail; /* messages not written yet */
    size_t queued;
    bool blocked;        /* queued above high_water: the host sends no pushes */
    uint64_t blocked_at; /* loop ms: since when */
    creq_t *reqs; /* requests without a reply */
    unsigned inflight; /* ...how many */
    bool rx_paused;    /* inflight reached max_inflight: lws reads no more */
    bool closing;  /* write what is queued, then close with close_code */
    int close_code;
    char close_reason[120];
    uint64_t stats_interval; /* 0: not subscribed to stats */
    uint64_t stats_last;
    /* A named user without admin on *: its stats pushes hold only the
     * queues and topics its own queue.list / topic.list return (visible:
     * {"queues": [name], "topics": [name]}, refreshed with every push). */
    bool stats_restricted;
    json_t *visible;
    unsigned lists_pending;
    conn_t *prev, *next;
};

/* The plugin instance: ws_t plus what only this file touches (lws keeps
 * pointers to the protocols, mounts, headers and retry policy). */
typedef struct ws_full {
    ws_t w;
    struct lws_protocols protocols[4];
    struct lws_http_mount mounts[4];
    struct lws_protocol_vhost_options headers[3];
    /* The CSP served (headers[0] points here; lws reads it per response):
     * WS_CSP, connect-src widened to the cluster members' dashboards. */
    char csp[4096];
    lws_retry_bo_t retry;
    void *loops[1];
    unsigned n_stats; /* connections subscribed to stats */
    bool dashboard;   /* config dashboard: serve www/ at / */
    char www[PATH_MAX];
    struct sockaddr_storage addr; /* config listen, numeric */
    listener_t *listener;         /* ours, not lws's: accept and adopt */
    char bound[INET6_ADDRSTRLEN + 8]; /* "ip:port" / "[ip]:port" actually bound */
    bool tls;
    /* WebSocket upgrades with an Origin header must name one of these
     * (origin_allowed()); any_origin: allowed_origins = "*"; same_host: a
     * wildcard listen without allowed_origins, the Origin must match Host. */
    char origins[WS_MAX_ORIGINS][128];
    unsigned n_origins;
    bool any_origin, same_host;
    bool member_origins; /* the default: the cluster members' dashboards too */
    uint64_t origin_logged_at; /* loop ms of the last refusal logged */
    unsigned origin_unlogged;  /* refusals since, not logged */
    uv_timer_t sweep;          /* once a second: write_timeout, frame_timeout */
    uint64_t limit_second;     /* log_limited(): the second of the last line */
    unsigned limit_unlogged;   /* lines not logged since */
} ws_full_t;

/* lws logs through one process-wide function: the instance it reports to. */
static ws_t *log_target;

/* The opaque user data of the sockets on_accept() adopted: what n_socks
 * counts (lws may make other wsi of its own). */
static char ws_adopted;

uint64_t ws_now(ws_t *w)
{
    return uv_now(w->loop);
}

/* A warning at most once a second (a flood of refused or closed clients
 * must not flood the log); the next line says how many were not logged. */
static void log_limited(ws_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_limited(ws_t *w, const char *fmt, ...)
{
    ws_full_t *f = (ws_full_t *)w;
    uint64_t second = ws_now(w) / 1000;
    char line[512];
    va_list ap;

    if (second == f->limit_second && f->limit_second != 0) {
        f->limit_unlogged++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (f->limit_unlogged > 0)
        w->api->log(w->host, MQHUB_LOG_WARN, "%s (%u similar lines not logged)", line,
                    f->limit_unlogged);
    else
        w->api->log(w->host, MQHUB_LOG_WARN, "%s", line);
    f->limit_second = second;
    f->limit_unlogged = 0;
}

/* ---------------------------------------------------------------- output */

/* Tell the host whether @c's session takes pushes (core/node/push.c skips a
 * session that does not). */
static void tell_writable(conn_t *c, bool writable)
{
    ws_t *w = c->w;

    if (MQHUB_HOST_HAS(w->api, session_writable))
        w->api->session_writable(c->session, writable);
}

/* Pushes stop when the queue passes high_water and resume when it drains
 * below low_water; sweep() closes a connection blocked for write_timeout. */
static void track_blocked(conn_t *c)
{
    ws_t *w = c->w;

    if (c->closing)
        return;
    if (!c->blocked && c->queued >= w->high_water) {
        c->blocked = true;
        c->blocked_at = ws_now(w);
        tell_writable(c, false);
    } else if (c->blocked && c->queued <= w->low_water) {
        c->blocked = false;
        tell_writable(c, true);
    }
}

/* Write what is queued, then the close frame; lws drops the socket
 * WS_KILL_SECS later if even that cannot be written. No more pushes meanwhile
 * (their messages go to other consumers). */
static void conn_close_after(conn_t *c, int code, const char *reason)
{
    if (c->closing)
        return;
    if (!c->blocked)
        tell_writable(c, false);
    c->closing = true;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, WS_KILL_SECS);
    lws_callback_on_writable(c->wsi);
}

static void drop_queue(conn_t *c)
{
    while (c->head != NULL) {
        out_t *next = c->head->next;
        free(c->head);
        c->head = next;
    }
    c->tail = NULL;
    c->queued = 0;
}

static void enqueue(conn_t *c, const void *data, size_t len, bool binary)
{
    ws_t *w = c->w;
    out_t *o;

    if (c->closing)
        return;
    if (c->queued + len > w->send_limit) {
        char reason[120];
        snprintf(reason, sizeof reason, "send buffer over %zu bytes: client reads too slowly",
                 w->send_limit);
        drop_queue(c);
        w->api->metric_add(w->host, "slow_clients_closed", 1);
        conn_close_after(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, reason);
        return;
    }
    o = malloc(sizeof *o + LWS_PRE + len);
    if (o == NULL) {
        conn_close_after(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    o->next = NULL;
    o->len = len;
    o->binary = binary;
    memcpy(o->buf + LWS_PRE, data, len);
    if (c->tail != NULL)
        c->tail->next = o;
    else
        c->head = o;
    c->tail = o;
    c->queued += len;
    lws_callback_on_writable(c->wsi);
    track_blocked(c);
}

/* A hub message (MessagePack map) in the connection's format. */
static void send_msgpack(conn_t *c, const char *buf, size_t len)
{
    size_t n;
    char *text;

    if (!c->json) {
        enqueue(c, buf, len, true);
        return;
    }
    text = codec_msgpack_text(buf, len, &n);
    if (text != NULL)
        enqueue(c, text, n, false);
    free(text);
}

static void send_json(conn_t *c, const json_t *v)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char err[128];

    if (c->json) {
        char *text = json_dumps(v, JSON_COMPACT);
        if (text != NULL)
            enqueue(c, text, strlen(text), false);
        free(text);
        return;
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (codec_json_pack(v, &pk, err, sizeof err) == 0)
        enqueue(c, sb.data, sb.size, true);
    msgpack_sbuffer_destroy(&sb);
}

/* An error without an id: the message could not be read as a request. */
static void send_error(conn_t *c, const char *code, const char *error)
{
    json_t *v = json_pack("{s:b, s:s, s:s}", "ok", 0, "code", code, "error", error);

    if (v != NULL)
        send_json(c, v);
    json_decref(v);
}

/* Write the close frame (code + reason) ourselves, then drop the
 * connection: lws 4.1.6 sends no close frame at all (the peer sees 1006)
 * when a server callback sets lws_close_reason() and returns -1. Opcode 4
 * is lws's internal LWS_WRITE_CLOSE, left out of the public enum. */
#define WS_WRITE_CLOSE ((enum lws_write_protocol)4)

static int write_close(conn_t *c)
{
    unsigned char buf[LWS_PRE + 2 + sizeof c->close_reason];
    size_t n = strlen(c->close_reason);

    buf[LWS_PRE] = (unsigned char)(c->close_code >> 8);
    buf[LWS_PRE + 1] = (unsigned char)(c->close_code & 0xff);
    memcpy(buf + LWS_PRE + 2, c->close_reason, n);
    lws_write(c->wsi, buf + LWS_PRE, 2 + n, WS_WRITE_CLOSE);
    return -1;
}

static int conn_writable(conn_t *c)
{
    out_t *o = c->head;

    if (o != NULL) {
        int n = lws_write(c->wsi, o->buf + LWS_PRE, o->len,
                          o->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        c->head = o->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->queued -= o->len;
        c->w->messages_out++;
        free(o);
        if (n < 0)
            return -1;
        track_blocked(c);
        if (c->head != NULL || c->closing) /* the close frame gets its own turn */
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (c->closing)
        return write_close(c);
    return 0;
}

/* ---------------------------------------------------------------- replies */

static void creq_unlink(creq_t *r)
{
    conn_t *c = r->c;

    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    c->inflight--;
}

/* Read again once half of max_inflight requests have answered. */
static void maybe_resume(conn_t *c)
{
    if (c->rx_paused && !c->closing && c->inflight <= c->w->max_inflight / 2) {
        c->rx_paused = false;
        lws_rx_flow_control(c->wsi, 1);
    }
}

static bool reply_ok(const char *buf, size_t len)
{
    msgpack_unpacked u;
    size_t off = 0;
    bool ok = false;

    msgpack_unpacked_init(&u);
    if (mp_unpack(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 2 &&
                memcmp(kv->key.via.str.ptr, "ok", 2) == 0)
                ok = kv->val.type == MSGPACK_OBJECT_BOOLEAN && kv->val.via.boolean;
        }
    }
    msgpack_unpacked_destroy(&u);
    return ok;
}

static void stats_subscribed(conn_t *c, const creq_t *r, const char *buf, size_t len);
static void visible_update(conn_t *c, const char *buf, size_t len);
static void local_answer(conn_t *c, const creq_t *r, const char *buf, size_t len);

static void on_reply(void *arg, const char *buf, size_t len)
{
    creq_t *r = arg;
    conn_t *c = r->c;
    ws_t *w = c->w;

    creq_unlink(r);
    switch (r->kind) {
    case CREQ_CLIENT:
        send_msgpack(c, buf, len);
        break;
    case CREQ_TOKEN:
        if (!reply_ok(buf, len)) {
            send_msgpack(c, buf, len);
            conn_close_after(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "unauthorized");
        }
        break;
    case CREQ_STATS:
        stats_subscribed(c, r, buf, len);
        break;
    case CREQ_LIST:
        visible_update(c, buf, len);
        break;
    case CREQ_HISTORY:
    case CREQ_NODE_INFO:
        local_answer(c, r, buf, len);
        break;
    }
    free(r);
    if (w->api->session_broken(c->session))
        conn_close_after(c, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "unreadable request");
    maybe_resume(c);
}

static void on_push(void *arg, const char *buf, size_t len)
{
    send_msgpack(arg, buf, len);
}

/* Submit @buf for @c; @queue (@qlen bytes) is kept in the request. */
static void submit_for(conn_t *c, enum creq_kind kind, const char *buf, size_t len,
                       uint64_t interval_ms, const char *queue, size_t qlen)
{
    creq_t *r = calloc(1, sizeof *r + qlen + 1);

    if (r == NULL) {
        conn_close_after(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    r->c = c;
    r->kind = kind;
    r->interval_ms = interval_ms;
    memcpy(r->queue, queue, qlen);
    r->next = c->reqs;
    if (c->reqs != NULL)
        c->reqs->prev = r;
    c->reqs = r;
    if (++c->inflight >= c->w->max_inflight && !c->rx_paused) {
        c->rx_paused = true; /* lws keeps what it read already for later */
        lws_rx_flow_control(c->wsi, 0);
    }
    c->w->api->request(c->session, buf, len, on_reply, r);
}

static void submit(conn_t *c, enum creq_kind kind, const char *buf, size_t len,
                   uint64_t interval_ms)
{
    submit_for(c, kind, buf, len, interval_ms, "", 0);
}

/* ------------------------------------------------------------ stats pushes */

static void set_stats(conn_t *c, uint64_t interval_ms)
{
    ws_full_t *f = (ws_full_t *)c->w;
    bool was = c->stats_interval != 0;

    c->stats_interval = interval_ms;
    c->stats_last = 0;
    f->n_stats += (interval_ms != 0) - was;
    stats_set_active(c->w->stats, f->n_stats > 0);
}

json_t *ws_reply_json(const char *buf, size_t len)
{
    msgpack_unpacked u;
    size_t off = 0;
    json_t *v = NULL;

    msgpack_unpacked_init(&u);
    if (mp_unpack(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS)
        v = codec_msgpack_to_json(&u.data);
    msgpack_unpacked_destroy(&u);
    return v;
}

/* The user.list standing for stats.subscribe was answered. Success (root,
 * anonymous, admin on *): the whole snapshot. FORBIDDEN (a named user
 * without admin): subscribed, restricted to what the user may list. Any
 * other error (UNAUTHORIZED before the hello) goes to the client as it is. */
static void stats_subscribed(conn_t *c, const creq_t *r, const char *buf, size_t len)
{
    json_t *reply = ws_reply_json(buf, len), *ok;
    const char *code = json_string_value(json_object_get(reply, "code"));
    /* NOT_LEADER comes after the permission check: a follower's admin. */
    bool full = reply_ok(buf, len) || (code != NULL && strcmp(code, "NOT_LEADER") == 0);
    bool restricted = code != NULL && strcmp(code, "FORBIDDEN") == 0;

    if (reply == NULL)
        return;
    if (!full && !restricted) {
        send_json(c, reply);
        json_decref(reply);
        return;
    }
    ok = json_pack("{s:b, s:O?}", "ok", 1, "id", json_object_get(reply, "id"));
    if (ok != NULL && r->interval_ms != 0) {
        json_object_set_new(ok, "interval_ms", json_integer((json_int_t)r->interval_ms));
        json_object_set_new(ok, "restricted", json_boolean(restricted));
    }
    if (ok != NULL)
        send_json(c, ok);
    json_decref(ok);
    json_decref(reply);
    c->stats_restricted = restricted;
    set_stats(c, r->interval_ms);
}

/* ----------------------------------------------------- restricted stats */

/* Ask, in @c's own session, for the queues and topics it may list. */
static void visible_refresh(conn_t *c)
{
    static const char *const ops[] = {"queue.list", "topic.list"};

    if (c->lists_pending > 0)
        return;
    for (int i = 0; i < 2; i++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "op", 2);
        msgpack_pack_str_with_body(&pk, ops[i], strlen(ops[i]));
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_uint64(&pk, 0);
        msgpack_pack_str_with_body(&pk, "limit", 5);
        msgpack_pack_uint16(&pk, 1000);
        c->lists_pending++;
        submit(c, CREQ_LIST, sb.data, sb.size, 0);
        msgpack_sbuffer_destroy(&sb);
    }
}

/* A queue.list / topic.list of visible_refresh() answered. */
static void visible_update(conn_t *c, const char *buf, size_t len)
{
    json_t *reply = ws_reply_json(buf, len);
    static const char *const keys[] = {"queues", "topics"};

    c->lists_pending--;
    if (c->visible == NULL)
        c->visible = json_object();
    for (int i = 0; reply != NULL && c->visible != NULL && i < 2; i++) {
        json_t *names = json_object_get(reply, keys[i]);
        if (json_is_array(names))
            json_object_set(c->visible, keys[i], names);
    }
    json_decref(reply);
}

static bool name_in(const json_t *names, const char *name)
{
    size_t i;
    json_t *n;

    json_array_foreach(names, i, n) {
        if (json_is_string(n) && name != NULL && strcmp(json_string_value(n), name) == 0)
            return true;
    }
    return false;
}

/* @push with only the queues and topics of @c->visible, and without blocks
 * and scripts (they need script on *): a new reference, NULL on
 * out-of-memory. */
static json_t *push_restricted(const conn_t *c, const json_t *push)
{
    static const char *const keys[] = {"queues", "topics"};
    json_t *copy = json_copy((json_t *)push), *errors;

    if (copy == NULL)
        return NULL;
    for (int i = 0; i < 2; i++) {
        const json_t *names = json_object_get(c->visible, keys[i]);
        json_t *kept = json_array(), *e;
        size_t k;
        json_array_foreach(json_object_get(push, keys[i]), k, e) {
            if (name_in(names, json_string_value(json_object_get(e, "name"))))
                json_array_append(kept, e);
        }
        json_object_set_new(copy, keys[i], kept);
    }
    json_object_del(copy, "blocks");
    json_object_del(copy, "scripts");
    errors = json_object();
    json_object_set_new(errors, "block.list", json_string("FORBIDDEN: blocks need the script "
                                                          "grant on *"));
    json_object_set_new(copy, "errors", errors);
    return copy;
}

void ws_broadcast_stats(ws_t *w, const json_t *push, uint64_t now_ms)
{
    for (conn_t *c = w->conns; c != NULL; c = c->next) {
        /* A blocked client skips snapshots as the hub skips its pushes: the
         * next one supersedes them. */
        if (c->stats_interval == 0 || c->closing || c->blocked ||
            now_ms + 50 < c->stats_last + c->stats_interval)
            continue;
        c->stats_last = now_ms;
        if (!c->stats_restricted) {
            send_json(c, push);
            continue;
        }
        if (c->visible != NULL) { /* none yet: the first push waits for the lists */
            json_t *mine = push_restricted(c, push);
            if (mine != NULL)
                send_json(c, mine);
            json_decref(mine);
        }
        visible_refresh(c);
    }
}

/* ---------------------------------------------------------------- requests */

static bool op_is(const wire_request_t *v, const char *op)
{
    return v->op_len == strlen(op) && memcmp(v->op, op, v->op_len) == 0;
}

/* The interval_ms a stats.subscribe asks for, within the configured bounds. */
static uint64_t stats_interval(const ws_t *w, const wire_request_t *v)
{
    const msgpack_object *o = mp_map_get(v->map, "interval_ms");
    uint64_t iv = o != NULL && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 != 0
                      ? o->via.u64
                      : MQHUB_STATS_INTERVAL_MS_DEFAULT;

    if (iv < (uint64_t)w->stats_interval_ms)
        iv = (uint64_t)w->stats_interval_ms;
    return iv < MQHUB_STATS_INTERVAL_MS_MAX ? iv : MQHUB_STATS_INTERVAL_MS_MAX;
}

/* ------------------------------------------- stats.history, node.info */

/* stats.history {queue?} and node.info {}: the hub checks the right first,
 * with the client's id: queue.get {name: queue} for a queue's history (so
 * NOT_FOUND, BAD_NAME and FORBIDDEN are the queue's own), else
 * monitor.check (the right /metrics needs: monitor or admin on *). Its
 * answer goes to local_answer(). */
static void local_check(conn_t *c, const wire_request_t *v, enum creq_kind kind)
{
    const msgpack_object *q = kind == CREQ_HISTORY ? mp_map_get(v->map, "queue") : NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    if (q != NULL && q->type == MSGPACK_OBJECT_NIL)
        q = NULL;
    if (q != NULL && (q->type != MSGPACK_OBJECT_STR || q->via.str.size == 0 ||
                      q->via.str.size > MQHUB_NAME_MAX)) {
        json_t *e = json_pack("{s:I, s:b, s:s, s:s}", "id", (json_int_t)v->id, "ok", 0, "code",
                              "BAD_REQUEST", "error", "queue: a queue name of 1-255 bytes");
        if (e != NULL)
            send_json(c, e);
        json_decref(e);
        return;
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2 + (q != NULL));
    msgpack_pack_str_with_body(&pk, "op", 2);
    if (q != NULL)
        msgpack_pack_str_with_body(&pk, "queue.get", 9);
    else
        msgpack_pack_str_with_body(&pk, "monitor.check", 13);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, v->id);
    if (q != NULL) {
        msgpack_pack_str_with_body(&pk, "name", 4);
        msgpack_pack_str_with_body(&pk, q->via.str.ptr, q->via.str.size);
    }
    submit_for(c, kind, sb.data, sb.size, 0, q != NULL ? q->via.str.ptr : "",
               q != NULL ? q->via.str.size : 0);
    msgpack_sbuffer_destroy(&sb);
}

/* The check of local_check() answered: refused, the client gets the hub's
 * error; passed (a follower's NOT_LEADER for queue.get included: the right
 * is checked before it), the history or the node's figures. */
static void local_answer(conn_t *c, const creq_t *r, const char *buf, size_t len)
{
    json_t *reply = ws_reply_json(buf, len), *body;
    const char *code = json_string_value(json_object_get(reply, "code"));

    if (reply == NULL)
        return;
    if (!reply_ok(buf, len) && (code == NULL || strcmp(code, "NOT_LEADER") != 0)) {
        send_json(c, reply);
        json_decref(reply);
        return;
    }
    body = r->kind == CREQ_HISTORY
               ? stats_history(c->w->stats, r->queue[0] != '\0' ? r->queue : NULL)
               : stats_node_info(c->w->stats);
    if (body == NULL) {
        conn_close_after(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
    } else {
        json_object_set_new(body, "ok", json_true());
        json_object_set(body, "id", json_object_get(reply, "id"));
        send_json(c, body);
    }
    json_decref(body);
    json_decref(reply);
}

/* stats.subscribe {interval_ms} / stats.unsubscribe {}: answered by the
 * transport, as are stats.history and node.info (local_check). Returns true
 * when @buf was one of them. Anything else, a frame
 * that is not one readable request included, goes to the host, which
 * answers it. wire_decode_request runs the size guard (mp_extent) before
 * msgpack-c builds anything: a 5-byte frame announcing 2^32 elements must
 * not make msgpack-c allocate for them. */
static bool handle_local(conn_t *c, const char *buf, size_t len)
{
    msgpack_unpacked u;
    wire_request_t v;
    char err[128];
    bool read, sub, unsub, history, info, mine;

    msgpack_unpacked_init(&u);
    read = wire_decode_request(&u, buf, len, &v, err, sizeof err) == 0;
    sub = read && op_is(&v, "stats.subscribe");
    unsub = read && op_is(&v, "stats.unsubscribe");
    history = read && op_is(&v, "stats.history");
    info = read && op_is(&v, "node.info");
    mine = sub || unsub || history || info;
    if (history || info)
        local_check(c, &v, history ? CREQ_HISTORY : CREQ_NODE_INFO);
    if (sub || unsub) {
        /* Answered by a user.list with the client's id: it fails as any
         * other op would (UNAUTHORIZED before the token's hello), and tells
         * an identity that sees everything (admin on *) from a named user
         * whose pushes are restricted (FORBIDDEN; stats_subscribed). */
        uint64_t iv = stats_interval(c->w, &v);
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "op", 2);
        msgpack_pack_str_with_body(&pk, "user.list", 9);
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_uint64(&pk, v.id);
        submit(c, CREQ_STATS, sb.data, sb.size, sub ? iv : 0);
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_unpacked_destroy(&u);
    return mine;
}

/* One whole message from the client. */
static void handle(conn_t *c, const char *data, size_t len)
{
    msgpack_sbuffer sb;
    char err[256];

    c->w->messages_in++;
    msgpack_sbuffer_init(&sb);
    if (c->json) {
        if (codec_json_to_msgpack(data, len, &sb, err, sizeof err) != 0) {
            send_error(c, "BAD_REQUEST", err);
            conn_close_after(c, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "unreadable request");
            msgpack_sbuffer_destroy(&sb);
            return;
        }
        data = sb.data;
        len = sb.size;
    }
    if (!handle_local(c, data, len))
        submit(c, CREQ_CLIENT, data, len, 0);
    msgpack_sbuffer_destroy(&sb);
}

/* Forget the unfinished message (its bytes leave input_budget). */
static void in_release(conn_t *c)
{
    c->w->input_bytes -= c->in_cap;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    c->partial_at = 0;
}

/* Room in @c->in for @want bytes (at most max_frame), within input_budget.
 * -1 when over it or out of memory: the connection is then closing. */
static int in_reserve(conn_t *c, size_t want)
{
    ws_t *w = c->w;
    size_t cap = c->in_cap ? c->in_cap : 8192;
    char peer[96] = "?", *p;

    if (want <= c->in_cap)
        return 0;
    while (cap < want)
        cap *= 2;
    if (cap > w->max_frame) /* want <= max_frame: checked by the caller */
        cap = w->max_frame;
    if (w->input_bytes - c->in_cap + cap > w->input_budget) {
        lws_get_peer_simple(c->wsi, peer, sizeof peer);
        w->api->metric_add(w->host, "input_budget_closes", 1);
        log_limited(w, "closing %s: its unfinished message of %zu bytes would pass "
                    "input_budget (%zu bytes held by all connections)", peer, want,
                    w->input_bytes);
        in_release(c);
        conn_close_after(c, WS_CLOSE_TRY_AGAIN, "input_budget used up: try again later");
        return -1;
    }
    if ((p = realloc(c->in, cap)) == NULL) {
        in_release(c);
        conn_close_after(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return -1;
    }
    w->input_bytes += cap - c->in_cap;
    c->in = p;
    c->in_cap = cap;
    return 0;
}

static int conn_receive(conn_t *c, const char *in, size_t len)
{
    ws_t *w = c->w;
    bool last = lws_is_final_fragment(c->wsi) && lws_remaining_packet_payload(c->wsi) == 0;

    lws_validity_confirmed(c->wsi); /* a sign of life: see "Keepalive" above */
    if (c->closing)
        return 0;
    if (c->in_len + len > w->max_frame) {
        char msg[160];
        snprintf(msg, sizeof msg, "a message of more than %zu bytes is larger than max_frame",
                 w->max_frame);
        w->api->metric_add(w->host, "frames_too_large", 1);
        in_release(c);
        send_error(c, "FRAME_TOO_LARGE", msg);
        conn_close_after(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message larger than max_frame");
        return 0;
    }
    if (last && c->in_len == 0) { /* the common case: one fragment */
        handle(c, in, len);
        return 0;
    }
    if (in_reserve(c, c->in_len + len) != 0)
        return 0;
    memcpy(c->in + c->in_len, in, len);
    c->in_len += len;
    if (c->partial_at == 0)
        c->partial_at = ws_now(w);
    if (last) {
        handle(c, c->in, c->in_len);
        in_release(c);
    }
    return 0;
}

/* ---------------------------------------------------------------- origins */

/* Cross-site WebSocket hijacking: a page of any site open in a browser can
 * open ws://127.0.0.1:6280/, and the browser says which site it came from in
 * Origin. Browsers always send it on WebSocket upgrades; other clients
 * (libraries, the CLI's peers) usually do not, and are let through. */

static void origin_add(ws_full_t *f, const char *scheme, const char *host, int port)
{
    bool default_port = (strcmp(scheme, "http") == 0 && port == 80) ||
                        (strcmp(scheme, "https") == 0 && port == 443);

    if (f->n_origins + 2 > WS_MAX_ORIGINS)
        return;
    snprintf(f->origins[f->n_origins++], sizeof f->origins[0], "%s://%s:%d", scheme, host,
             port);
    if (default_port) /* a browser leaves the default port out */
        snprintf(f->origins[f->n_origins++], sizeof f->origins[0], "%s://%s", scheme, host);
}

/* The dashboard's own origins: the bound address, and for loopback the
 * names a browser on this host may use for it. A wildcard listen has no
 * one name: the Origin must then match the request's Host (same_host). */
static void origins_default(ws_full_t *f)
{
    const char *scheme = f->tls ? "https" : "http";
    char ip[sizeof f->bound];
    bool v6 = f->addr.ss_family == AF_INET6;
    const unsigned char *a6 = ((struct sockaddr_in6 *)&f->addr)->sin6_addr.s6_addr;
    uint32_t a4 = ntohl(((struct sockaddr_in *)&f->addr)->sin_addr.s_addr);
    int port = v6 ? ntohs(((struct sockaddr_in6 *)&f->addr)->sin6_port)
                  : ntohs(((struct sockaddr_in *)&f->addr)->sin_port);
    bool any = v6 ? IN6_IS_ADDR_UNSPECIFIED((const struct in6_addr *)a6) : a4 == INADDR_ANY;
    bool loopback = v6 ? IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)a6) : (a4 >> 24) == 127;

    if (any) {
        f->same_host = true;
        return;
    }
    snprintf(ip, sizeof ip, "%s", f->bound);
    *strrchr(ip, ':') = '\0'; /* "127.0.0.1", "[::1]" */
    origin_add(f, scheme, ip, port);
    if (loopback) {
        origin_add(f, scheme, "localhost", port);
        if (strcmp(ip, "127.0.0.1") != 0)
            origin_add(f, scheme, "127.0.0.1", port);
        if (strcmp(ip, "[::1]") != 0)
            origin_add(f, scheme, "[::1]", port);
    }
}

/* allowed_origins = "https://a.example:6280 http://b.example" (spaces or
 * commas between them), or "*" for any origin. */
static int origins_parse(ws_full_t *f, const char *list, char *errmsg, size_t errlen)
{
    const char *p = list;

    while (*p != '\0') {
        size_t n = strcspn(p, " ,\t");
        if (n == 1 && *p == '*') {
            f->any_origin = true;
        } else if (n > 0) {
            if ((strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0) ||
                n >= sizeof f->origins[0] || f->n_origins == WS_MAX_ORIGINS ||
                p[n - 1] == '/') {
                snprintf(errmsg, errlen, "allowed_origins: \"%.*s\" is not an origin "
                         "(scheme://host[:port], no path; at most %d of them)",
                         (int)(n < 200 ? n : 200), p, WS_MAX_ORIGINS);
                return -1;
            }
            memcpy(f->origins[f->n_origins], p, n);
            f->origins[f->n_origins++][n] = '\0';
        }
        p += n;
        p += strspn(p, " ,\t");
    }
    return 0;
}

static bool origin_allowed(const ws_full_t *f, struct lws *wsi, const char *origin)
{
    char host[256], own[300];

    if (f->any_origin)
        return true;
    for (unsigned i = 0; i < f->n_origins; i++)
        if (strcasecmp(f->origins[i], origin) == 0)
            return true;
    /* By default, a page of another member's dashboard too (the
     * cluster.status `http` addresses, this transport's scheme): the
     * dashboard follows the leader (www/follow.js). */
    if (f->member_origins && f->w.stats != NULL &&
        stats_member_origin(f->w.stats, origin, f->tls))
        return true;
    if (!f->same_host || lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0)
        return false;
    snprintf(own, sizeof own, "%s://%s", f->tls ? "https" : "http", host);
    return strcasecmp(own, origin) == 0;
}

/* A refusal in the log: at most one line a second, with how many were not
 * logged since (a page can retry in a loop). */
static void origin_log(ws_full_t *f, struct lws *wsi, const char *origin)
{
    ws_t *w = &f->w;
    uint64_t now = ws_now(w);
    char peer[96] = "?";

    w->api->metric_add(w->host, "origins_refused", 1);
    if (f->origin_logged_at != 0 && now < f->origin_logged_at + WS_ORIGIN_LOG_MS) {
        f->origin_unlogged++;
        return;
    }
    lws_get_peer_simple(wsi, peer, sizeof peer);
    w->api->log(w->host, MQHUB_LOG_WARN, "WebSocket upgrade refused (403): Origin \"%s\" is "
                "not in allowed_origins, peer=%s refusals_not_logged=%u", origin, peer,
                f->origin_unlogged);
    f->origin_logged_at = now;
    f->origin_unlogged = 0;
}

/* The 403, written raw: lws_return_http_status() at this point of an
 * upgrade answers "HTTP/1.0", which WebSocket clients refuse to read. */
static void write_forbidden(struct lws *wsi)
{
    static const char body[] = "WebSocket refused: this Origin is not in allowed_origins\n";
    unsigned char buf[LWS_PRE + 512];
    int n = snprintf((char *)buf + LWS_PRE, sizeof buf - LWS_PRE,
                     "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\n"
                     "content-length: %zu\r\ncache-control: no-store\r\nconnection: close"
                     "\r\n\r\n%s", sizeof body - 1, body);

    lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_HEADERS);
}

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: 0 lets the upgrade go on; -1 after a
 * 403 was written (lws then hangs up). */
static int origin_check(ws_full_t *f, struct lws *wsi)
{
    char origin[256];
    int len = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN);

    if (len <= 0)
        return 0;
    if (lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0)
        snprintf(origin, sizeof origin, "(%d bytes)", len);
    else if (origin_allowed(f, wsi, origin))
        return 0;
    origin_log(f, wsi, origin);
    write_forbidden(wsi);
    return -1;
}

/* ---------------------------------------------------------------- lifecycle */

/* ?token=... on the upgrade request: say hello with it for the client. */
static void token_hello(conn_t *c, const char *token)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "hello", 5);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_str_with_body(&pk, "version", 7);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_str_with_body(&pk, "client", 6);
    msgpack_pack_str_with_body(&pk, "websocket", 9);
    msgpack_pack_str_with_body(&pk, "token", 5);
    msgpack_pack_str_with_body(&pk, token, strlen(token));
    submit(c, CREQ_TOKEN, sb.data, sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
}

static int conn_open(ws_t *w, struct lws *wsi, conn_t **slot)
{
    const char *proto = lws_get_protocol(wsi)->name;
    char peer[96] = "?", token[256];
    conn_t *c;

    if (strcmp(proto, WS_PROTO_JSON) != 0 && strcmp(proto, WS_PROTO_MSGPACK) != 0)
        return -1;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    c->w = w;
    c->wsi = wsi;
    c->json = strcmp(proto, WS_PROTO_JSON) == 0;
    lws_get_peer_simple(wsi, peer, sizeof peer);
    c->session = w->api->session_open(w->host, peer, on_push, c);
    if (c->session == NULL) {
        free(c);
        return -1;
    }
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    *slot = c;
    w->api->metric_add(w->host, "connections_total", 1);
    if (lws_get_urlarg_by_name(wsi, "token=", token, sizeof token) != NULL)
        token_hello(c, token + strlen("token="));
    return 0;
}

static void conn_free(conn_t *c)
{
    ws_t *w = c->w;

    if (c->stats_interval != 0)
        set_stats(c, 0);
    w->api->session_close(c->session); /* no reply callback after this */
    while (c->reqs != NULL) {
        creq_t *next = c->reqs->next;
        free(c->reqs);
        c->reqs = next;
    }
    drop_queue(c);
    json_decref(c->visible);
    in_release(c);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->n_conns--;
    free(c);
}

/* ---------------------------------------------------------------- timeouts */

/* Why @c is overdue at @now, or NULL. */
static const char *overdue(const conn_t *c, uint64_t now, uint64_t *secs)
{
    const ws_t *w = c->w;

    if (c->blocked && now - c->blocked_at >= w->write_ms) {
        *secs = w->write_ms / 1000;
        return "does not read (output above half of send_buffer for write_timeout";
    }
    if (c->partial_at != 0 && now - c->partial_at >= w->frame_ms) {
        *secs = w->frame_ms / 1000;
        return "left a message unfinished (frame_timeout";
    }
    return NULL;
}

/* Once a second: close the connections past a timeout. One that does not
 * read loses its queue (the close frame goes right after what lws holds); one
 * with an unfinished message still gets its replies first. */
static void sweep(uv_timer_t *timer)
{
    ws_t *w = timer->data;
    uint64_t now = ws_now(w), secs;
    const char *why;
    char peer[96];

    for (conn_t *c = w->conns; c != NULL; c = c->next) {
        if (c->closing || (why = overdue(c, now, &secs)) == NULL)
            continue;
        snprintf(peer, sizeof peer, "?");
        lws_get_peer_simple(c->wsi, peer, sizeof peer);
        w->api->metric_add(w->host, "timeout_closes", 1);
        log_limited(w, "closing %s: it %s %llu s)", peer, why, (unsigned long long)secs);
        if (c->blocked) {
            drop_queue(c);
            conn_close_after(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             "write_timeout: the client does not read");
        } else {
            in_release(c);
            conn_close_after(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             "frame_timeout: message left unfinished");
        }
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    ws_t *w = lws_context_user(lws_get_context(wsi));
    conn_t **slot = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return origin_check((ws_full_t *)w, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        return conn_open(w, wsi, slot);
    case LWS_CALLBACK_RECEIVE:
        return *slot != NULL ? conn_receive(*slot, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return *slot != NULL ? conn_writable(*slot) : -1;
    case LWS_CALLBACK_CLOSED:
        if (*slot != NULL)
            conn_free(*slot);
        *slot = NULL;
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (lws_get_opaque_user_data(wsi) == &ws_adopted)
            w->n_socks--;
        /* fall through - http.c sees it too */
    default:
        return http_callback(w, wsi, reason, user, in, len);
    }
}

static void emit_log(int level, const char *line)
{
    size_t n = strlen(line);

    if (log_target == NULL)
        return;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    log_target->api->log(log_target->host, level == LLL_ERR ? MQHUB_LOG_ERROR : MQHUB_LOG_WARN,
                         "lws: %.*s", (int)n, line);
}

/* The integer @key of the config into *@out (@def when absent); on a value
 * that is not an integer, a sentence in @errmsg (the host logged it too). */
static int config_int(ws_t *w, const char *key, int64_t def, int64_t *out, char *errmsg,
                      size_t errlen)
{
    int rc = w->api->config_int(w->host, key, def, out);

    if (rc != 0)
        snprintf(errmsg, errlen, "%s must be an integer", key);
    return rc;
}

/* The limits shared with the TCP transport (docs/operations.md "Limits"),
 * max_connections capped by the open-file limit. */
static int read_guards(ws_t *w, char *errmsg, size_t errlen)
{
    int64_t wt, ft, ib, mc, mi;
    struct rlimit rl;

    if (config_int(w, "write_timeout", 60, &wt, errmsg, errlen) != 0 ||
        config_int(w, "frame_timeout", 30, &ft, errmsg, errlen) != 0 ||
        config_int(w, "input_budget", 256 << 20, &ib, errmsg, errlen) != 0 ||
        config_int(w, "max_connections", 10000, &mc, errmsg, errlen) != 0 ||
        config_int(w, "max_inflight", 4096, &mi, errmsg, errlen) != 0)
        return -1;
    if (wt < 1 || wt > 86400 || ft < 1 || ft > 86400 || ib < (int64_t)w->max_frame ||
        mc < 1 || mc > 1000000 || mi < 1 || mi > 1000000) {
        snprintf(errmsg, errlen, "write_timeout and frame_timeout (1-86400 s), input_budget "
                 "(>= max_frame), max_connections and max_inflight (1-1000000) must be in "
                 "range");
        return -1;
    }
    w->write_ms = (uint64_t)wt * 1000;
    w->frame_ms = (uint64_t)ft * 1000;
    w->input_budget = (size_t)ib;
    w->max_conns = (unsigned)mc;
    w->max_inflight = (unsigned)mi;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)mc + 2 * WS_FD_RESERVE) {
        w->max_conns = rl.rlim_cur > 2 * WS_FD_RESERVE ? (unsigned)rl.rlim_cur - WS_FD_RESERVE
                                                        : (unsigned)rl.rlim_cur / 2;
        w->api->log(w->host, MQHUB_LOG_WARN, "max_connections %u (the open-file limit is %llu)",
                    w->max_conns, (unsigned long long)rl.rlim_cur);
    }
    return 0;
}

/* The integer settings, checked: buffers, keepalive, stats, dashboard. */
static int read_limits(ws_full_t *f, char *errmsg, size_t errlen)
{
    ws_t *w = &f->w;
    int64_t send_buffer, ping, idle, dashboard;

    if (config_int(w, "send_buffer", 4 << 20, &send_buffer, errmsg, errlen) != 0 ||
        config_int(w, "ping_interval", 20, &ping, errmsg, errlen) != 0 ||
        config_int(w, "idle_timeout", 60, &idle, errmsg, errlen) != 0 ||
        config_int(w, "stats_interval_ms", 1000, &w->stats_interval_ms, errmsg, errlen) != 0 ||
        config_int(w, "dashboard", 1, &dashboard, errmsg, errlen) != 0)
        return -1;
    if (w->stats_interval_ms < 100) /* the collector's floor */
        w->stats_interval_ms = 100;
    if (send_buffer < 4096 || ping < 1 || ping > 3600 || idle <= ping || idle > 65535) {
        snprintf(errmsg, errlen, "send_buffer (>= 4096), ping_interval (1-3600) and "
                 "idle_timeout (above ping_interval, <= 65535) must be in range");
        return -1;
    }
    w->send_limit = (size_t)send_buffer;
    w->high_water = w->send_limit / 2;
    w->low_water = w->send_limit / 4;
    f->retry.secs_since_valid_ping = (uint16_t)ping;
    f->retry.secs_since_valid_hangup = (uint16_t)idle;
    f->dashboard = dashboard != 0;
    return read_guards(w, errmsg, errlen);
}

/* The dashboard folder when the config has no `www`, into @out (0, or -1
 * when it cannot be told). websocket.so loaded from the build tree's plugin
 * folder (make run, the tests) serves the source tree's www/, so edits show
 * at once; an installed one serves MQHUB_PLUGINDIR_TO_WWW from the folder it
 * was loaded from (dladdr), so a tree installed under any prefix serves its
 * own dashboard (docs/architecture.md "Install layout"). */
static int default_www(char *out, size_t len)
{
    Dl_info info;
    char dir[PATH_MAX], build[PATH_MAX];
    char *slash;
    bool build_tree;
    int n;

    if (dladdr((void *)default_www, &info) == 0 || info.dli_fname == NULL ||
        realpath(info.dli_fname, dir) == NULL || (slash = strrchr(dir, '/')) == NULL)
        return -1;
    *slash = '\0';
    build_tree = realpath(MQHUB_WS_BUILD_PLUGINDIR, build) != NULL && strcmp(dir, build) == 0;
    n = build_tree ? snprintf(out, len, "%s", MQHUB_WS_SOURCE_WWW)
                   : snprintf(out, len, "%s/%s", dir, MQHUB_PLUGINDIR_TO_WWW);
    return n >= 0 && (size_t)n < len ? 0 : -1;
}

static int read_config(ws_full_t *f, char *errmsg, size_t errlen)
{
    ws_t *w = &f->w;
    const mqhub_host_api_t *api = w->api;
    const char *listen = api->config_string(w->host, "listen");
    const char *www = api->config_string(w->host, "www");
    const char *origins = api->config_string(w->host, "allowed_origins");

    if (listen == NULL)
        listen = MQHUB_DEFAULT_WS_ADDRESS;
    if (listen_parse(listen, &f->addr) != 0) {
        snprintf(errmsg, errlen, "listen \"%s\" is not host:port", listen);
        return -1;
    }
    w->max_frame = api->max_frame(w->host) ? api->max_frame(w->host) : MQHUB_DEFAULT_MAX_FRAME;
    if (read_limits(f, errmsg, errlen) != 0)
        return -1;
    if (www != NULL) {
        snprintf(f->www, sizeof f->www, "%s", www);
    } else if (default_www(f->www, sizeof f->www) != 0) {
        snprintf(errmsg, errlen, "no www given and websocket.so's own folder is unknown");
        return -1;
    }
    if (origins != NULL && origins_parse(f, origins, errmsg, errlen) != 0)
        return -1;
    if (MQHUB_HOST_HAS(api, auth_token))
        w->token = api->auth_token(w->host);
    return 0;
}

static void set_protocols(ws_full_t *f)
{
    size_t pss = http_state_size() > sizeof(conn_t *) ? http_state_size() : sizeof(conn_t *);
    const char *names[] = {WS_PROTO_JSON, WS_PROTO_MSGPACK, WS_PROTO_HTTP};

    for (int i = 0; i < 3; i++)
        f->protocols[i] = (struct lws_protocols){.name = names[i], .callback = callback,
                                                 .per_session_data_size = pss,
                                                 .rx_buffer_size = 65536};
}

static void set_mounts(ws_full_t *f, bool dashboard)
{
    static const char *const paths[] = {"/metrics", "/healthz", "/readyz"};

    for (int i = 0; i < 3; i++) {
        f->mounts[i] = (struct lws_http_mount){.mountpoint = paths[i], .origin = WS_PROTO_HTTP,
                                               .origin_protocol = LWSMPRO_CALLBACK,
                                               .mountpoint_len = (unsigned char)strlen(paths[i])};
        f->mounts[i].mount_next = i < 2 || dashboard ? &f->mounts[i + 1] : NULL;
    }
    f->mounts[3] = (struct lws_http_mount){.mountpoint = "/", .origin = f->www,
                                           .def = "index.html", .origin_protocol = LWSMPRO_FILE,
                                           .mountpoint_len = 1, .cache_max_age = 0};
    f->headers[0] = (struct lws_protocol_vhost_options){
        &f->headers[1], NULL, "content-security-policy:", f->csp};
    snprintf(f->csp, sizeof f->csp, "%s", WS_CSP);
    f->headers[1] = (struct lws_protocol_vhost_options){
        &f->headers[2], NULL, "x-content-type-options:", "nosniff"};
    f->headers[2] = (struct lws_protocol_vhost_options){
        NULL, NULL, "referrer-policy:", "no-referrer"};
}

/* An address fit for a header: host:port characters only. */
static bool csp_safe(const char *addr)
{
    return addr != NULL && addr[0] != '\0' &&
           strspn(addr, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:-[]") ==
               strlen(addr) &&
           strlen(addr) < 200;
}

void ws_csp_members(ws_t *w, const json_t *cluster)
{
    ws_full_t *f = (ws_full_t *)w;
    char csp[sizeof f->csp];
    size_t len = (size_t)snprintf(csp, sizeof csp, "%s", WS_CSP_HEAD), i;
    json_t *n;

    if (cluster == NULL) /* cluster.status failed this time: keep the last list */
        return;
    json_array_foreach(json_object_get(cluster, "nodes"), i, n) {
        const char *http = json_string_value(json_object_get(n, "http"));
        if (!csp_safe(http) || len + 2 * strlen(http) + 16 + sizeof WS_CSP_TAIL >= sizeof csp)
            continue;
        len += (size_t)snprintf(csp + len, sizeof csp - len, " ws://%s wss://%s", http, http);
    }
    snprintf(csp + len, sizeof csp - len, "%s", WS_CSP_TAIL);
    if (strcmp(csp, f->csp) != 0)
        memcpy(f->csp, csp, sizeof csp);
}

/* ---------------------------------------------------------------- listening */

/* lws 4.1.6 reads info.iface as an interface name first; with IPv6 on it
 * then parses an IPv4 address given there into the wrong bytes of its
 * sockaddr_in6 (lib/plat/unix/unix-sockets.c lws_interface_to_sa), so
 * listen = "127.0.0.1:6280" listened on [::]:6280, every interface. The
 * plugin therefore binds the listening socket itself, exactly at the
 * configured address, and hands each accepted connection to lws
 * (lws_adopt_socket_vhost; the vhost listens on nothing of its own). */

/* A socket past max_connections: a 503 if the socket takes it at once
 * (plaintext only), then closed; logged at most once a second. */
static void refuse(ws_full_t *f, int fd)
{
    static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
                               "content-length: 26\r\nretry-after: 1\r\nconnection: close"
                               "\r\n\r\ntoo many connections open\n";
    ws_t *w = &f->w;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char peer[INET6_ADDRSTRLEN + 8] = "?";

    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        listen_name(&ss, peer, sizeof peer);
    w->api->metric_add(w->host, "connections_refused", 1);
    log_limited(w, "refusing %s: %u connections open (max_connections %u)", peer, w->n_socks,
                w->max_conns);
    if (!f->tls) /* best effort: a full socket just goes without it */
        send(fd, resp, sizeof resp - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

/* A connection accepted by f->listener, given to lws, which closes it
 * itself when it cannot take it; counted in n_socks until lws destroys it. */
static void on_accept(void *data, int fd)
{
    ws_full_t *f = data;
    struct lws_vhost *vh = lws_get_vhost_by_name(f->w.ctx, "mqhub");
    struct lws *wsi;

    if (vh == NULL) {
        close(fd);
        return;
    }
    if (f->w.n_socks >= f->w.max_conns) {
        refuse(f, fd);
        return;
    }
    wsi = lws_adopt_socket_vhost(vh, fd);
    if (wsi != NULL) {
        lws_set_opaque_user_data(wsi, &ws_adopted);
        f->w.n_socks++;
    }
}

/* The listener, bound to @f->addr; its real address (the port when the
 * config said 0) into @f->bound and @f->addr. */
static int ws_listen_open(ws_full_t *f, char *errmsg, size_t errlen)
{
    listener_config_t cfg = {.api = f->w.api, .host = f->w.host, .backlog = WS_BACKLOG,
                             .accepts_per_wake = WS_ACCEPTS_PER_WAKE, .on_accept = on_accept,
                             .data = f};

    return listener_open(&f->listener, &cfg, &f->addr, f->bound, sizeof f->bound, errmsg,
                         errlen);
}

/* ---------------------------------------------------------------- plugin */

static int create_context(ws_full_t *f, const char *cert, const char *key)
{
    struct lws_context_creation_info info;
    ws_t *w = &f->w;

    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 |
                   (cert != NULL ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0);
    info.foreign_loops = f->loops;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* f->listener listens */
    info.protocols = f->protocols;
    info.mounts = &f->mounts[0];
    info.headers = &f->headers[0];
    info.retry_and_idle_policy = &f->retry;
    info.ssl_cert_filepath = cert;
    info.ssl_private_key_filepath = key;
    info.vhost_name = "mqhub";
    info.server_string = "mqhub";
    info.user = w;
    log_target = w;
    lws_set_log_level(LLL_ERR | LLL_WARN, emit_log);
    w->ctx = lws_create_context(&info);
    if (w->ctx == NULL)
        log_target = NULL;
    return w->ctx != NULL ? 0 : -1;
}

static void log_listening(ws_full_t *f, bool tls)
{
    ws_t *w = &f->w;

    if (f->dashboard)
        w->api->log(w->host, MQHUB_LOG_INFO, "listening on %s%s, dashboard at http%s://%s/",
                    f->bound, tls ? " (TLS)" : "", tls ? "s" : "", f->bound);
    else
        w->api->log(w->host, MQHUB_LOG_INFO, "listening on %s%s, dashboard off", f->bound,
                    tls ? " (TLS)" : "");
}

/* What ws_init made before it failed, undone (no connection exists yet). */
static void init_undo(ws_full_t *f)
{
    if (f->w.ctx != NULL)
        lws_context_destroy(f->w.ctx);
    listener_close(f->listener);
    if (log_target == &f->w)
        log_target = NULL;
    free(f);
}

/* Every counter of this plugin, exported at 0 from the start (a Prometheus
 * series that appears only at its first event hides rate() and alerts). */
static void counters_declare(const mqhub_host_api_t *api, mqhub_host_t *host)
{
    static const char *const names[] = {
        "connections_refused", "connections_total", "frames_too_large", "input_budget_closes",
        "origins_refused", "slow_clients_closed", "timeout_closes"};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        api->metric_add(host, names[i], 0);
}

static int ws_init(const mqhub_host_api_t *api, mqhub_host_t *host, void **state, char *errmsg,
                   size_t errlen)
{
    const char *cert = api->config_string(host, "tls_cert");
    const char *key = api->config_string(host, "tls_key");
    ws_full_t *f = calloc(1, sizeof *f);
    ws_t *w = &f->w;

    counters_declare(api, host);
    if (f == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    w->api = api;
    w->host = host;
    w->loop = api->loop(host);
    if ((cert == NULL) != (key == NULL))
        snprintf(errmsg, errlen, "tls_cert and tls_key go together");
    if ((cert == NULL) != (key == NULL) || read_config(f, errmsg, errlen) != 0 ||
        ws_listen_open(f, errmsg, errlen) != 0) {
        init_undo(f);
        return -1;
    }
    f->tls = cert != NULL;
    if (f->n_origins == 0 && !f->any_origin) {
        origins_default(f);
        f->member_origins = true;
    }
    set_protocols(f);
    set_mounts(f, f->dashboard);
    f->loops[0] = w->loop;
    if (create_context(f, cert, key) != 0) {
        snprintf(errmsg, errlen, "TLS or libwebsockets set-up for %s failed (see the lws log "
                 "line above)", f->bound);
        init_undo(f);
        return -1;
    }
    if (stats_new(&w->stats, w) != 0) {
        snprintf(errmsg, errlen, "out of memory");
        init_undo(f);
        return -1;
    }
    uv_timer_init(w->loop, &f->sweep);
    f->sweep.data = w;
    uv_timer_start(&f->sweep, sweep, WS_SWEEP_MS, WS_SWEEP_MS);
    log_listening(f, cert != NULL);
    *state = f;
    return 0;
}

static void ws_stop(void *state)
{
    ws_t *w = state;

    listener_close(((ws_full_t *)w)->listener);
    uv_close((uv_handle_t *)&((ws_full_t *)w)->sweep, NULL);
    stats_stop(w->stats);
    lws_context_destroy(w->ctx); /* inside the loop: closes connections and handles */
}

static void ws_fini(void *state)
{
    ws_t *w = state;

    lws_context_destroy(w->ctx); /* after the loop drained: frees the rest */
    if (log_target == w)
        log_target = NULL;
    free(state);
}

static const mqhub_plugin_t ws_plugin = {
    .abi_version = MQHUB_PLUGIN_ABI,
    .size = sizeof(mqhub_plugin_t),
    .name = "websocket",
    .init = ws_init,
    .stop = ws_stop,
    .fini = ws_fini,
};

MQHUB_PLUGIN_EXPORT const mqhub_plugin_t *mqhub_plugin_entry(void)
{
    return &ws_plugin;
}
