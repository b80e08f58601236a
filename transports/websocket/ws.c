/* ws.c: the WebSocket transport plugin (docs/websocket.md). Browsers and
 * other clients speak docs/protocol.md over WebSocket: subprotocol
 * mqhub.v1.json (JSON text messages, codec.c) or mqhub.v1.msgpack (binary
 * messages holding the MessagePack maps as they are). The same listener
 * serves the dashboard (static files of www/) and the HTTP endpoints of
 * http.c.
 *
 * Start with ws_init(): one libwebsockets context on the daemon's libuv loop
 * (a foreign loop: lws adds its handles, runs no thread and installs no
 * signal handler). callback() dispatches lws events: conn_open() opens one
 * host session per WebSocket, conn_receive() gathers a message's fragments
 * and handle() submits it (requests go to api->request; stats.subscribe is
 * answered here), replies and pushes are queued by enqueue() and written one
 * per writable event by conn_writable().
 *
 * Limits: a message above max_frame is answered FRAME_TOO_LARGE and the
 * connection closed (1009); a request the host cannot read closes it after
 * the reply (1007); more than send_buffer bytes queued for a client that
 * reads too slowly drops its queue and closes it (1008, with the reason),
 * killed after a few seconds when even the close cannot be written.
 * Keepalive: lws pings a connection idle for ping_interval seconds and
 * hangs up one silent for idle_timeout seconds.
 *
 * Shutdown (the libuv foreign-loop rule of lws): ws_stop() calls
 * lws_context_destroy() inside the loop (it closes connections and starts
 * closing lws's handles), ws_fini() calls it again after the loop drained
 * to free the rest.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "codec.h"
#include "ws.h"

#define WS_PROTO_JSON "mqhub.v1.json"
#define WS_PROTO_MSGPACK "mqhub.v1.msgpack"
#define WS_PROTO_HTTP "mqhub-http"
#define WS_KILL_SECS 3
#define WS_CSP                                                                             \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "     \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#ifndef MQHUB_WS_WWW
#define MQHUB_WS_WWW "www"
#endif

typedef struct out {
    struct out *next;
    size_t len;
    bool binary;
    unsigned char buf[]; /* LWS_PRE bytes of room, then the message */
} out_t;

enum creq_kind { CREQ_CLIENT, CREQ_TOKEN, CREQ_STATS };

typedef struct creq {
    conn_t *c;
    enum creq_kind kind;
    uint64_t interval_ms;
    struct creq *prev, *next;
} creq_t;

struct conn {
    ws_t *w;
    struct lws *wsi;
    mqhub_session_t *session;
    bool json;
    char *in; /* fragments of the message being received */
    size_t in_len, in_cap;
    out_t *head, *tail; /* messages not written yet */
    size_t queued;
    creq_t *reqs; /* requests without a reply */
    bool closing;  /* write what is queued, then close with close_code */
    int close_code;
    char close_reason[120];
    uint64_t stats_interval; /* 0: not subscribed to stats */
    uint64_t stats_last;
    conn_t *prev, *next;
};

/* The plugin instance: ws_t plus what only this file touches (lws keeps
 * pointers to the protocols, mounts, headers and retry policy). */
typedef struct ws_full {
    ws_t w;
    struct lws_protocols protocols[4];
    struct lws_http_mount mounts[4];
    struct lws_protocol_vhost_options headers[3];
    lws_retry_bo_t retry;
    void *loops[1];
    unsigned n_stats; /* connections subscribed to stats */
    char www[PATH_MAX];
    char iface[128];
    int port;
} ws_full_t;

/* lws logs through one process-wide function: the instance it reports to. */
static ws_t *log_target;

uint64_t ws_now(ws_t *w)
{
    return uv_now(w->loop);
}

/* ---------------------------------------------------------------- output */

static void conn_close_after(conn_t *c, int code, const char *reason)
{
    if (c->closing)
        return;
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
}

static bool reply_ok(const char *buf, size_t len)
{
    msgpack_unpacked u;
    size_t off = 0;
    bool ok = false;

    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS &&
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
    }
    free(r);
    if (w->api->session_broken(c->session))
        conn_close_after(c, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "unreadable request");
}

static void on_push(void *arg, const char *buf, size_t len)
{
    send_msgpack(arg, buf, len);
}

static void submit(conn_t *c, enum creq_kind kind, const char *buf, size_t len,
                   uint64_t interval_ms)
{
    creq_t *r = calloc(1, sizeof *r);

    if (r == NULL) {
        conn_close_after(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    r->c = c;
    r->kind = kind;
    r->interval_ms = interval_ms;
    r->next = c->reqs;
    if (c->reqs != NULL)
        c->reqs->prev = r;
    c->reqs = r;
    c->w->api->request(c->session, buf, len, on_reply, r);
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

/* The ping standing for stats.subscribe was answered: an error (no token
 * yet) goes to the client as it is, success subscribes. */
static void stats_subscribed(conn_t *c, const creq_t *r, const char *buf, size_t len)
{
    msgpack_unpacked u;
    size_t off = 0;
    json_t *reply = NULL;

    if (!reply_ok(buf, len)) {
        send_msgpack(c, buf, len);
        return;
    }
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS)
        reply = codec_msgpack_to_json(&u.data);
    msgpack_unpacked_destroy(&u);
    if (reply == NULL)
        return;
    json_object_set_new(reply, "interval_ms", json_integer((json_int_t)r->interval_ms));
    send_json(c, reply);
    json_decref(reply);
    set_stats(c, r->interval_ms);
}

void ws_broadcast_stats(ws_t *w, const json_t *push, uint64_t now_ms)
{
    for (conn_t *c = w->conns; c != NULL; c = c->next) {
        if (c->stats_interval == 0 || c->closing ||
            now_ms + 50 < c->stats_last + c->stats_interval)
            continue;
        c->stats_last = now_ms;
        send_json(c, push);
    }
}

/* ---------------------------------------------------------------- requests */

typedef struct local_view {
    const char *op;
    size_t op_len;
    const msgpack_object *id;
    uint64_t interval_ms;
} local_view_t;

static bool key_is(const msgpack_object *k, const char *s)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(s) &&
           memcmp(k->via.str.ptr, s, k->via.str.size) == 0;
}

static void read_local(const msgpack_object *map, local_view_t *v)
{
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (key_is(&kv->key, "op") && kv->val.type == MSGPACK_OBJECT_STR) {
            v->op = kv->val.via.str.ptr;
            v->op_len = kv->val.via.str.size;
        } else if (key_is(&kv->key, "id")) {
            v->id = &kv->val;
        } else if (key_is(&kv->key, "interval_ms") &&
                   kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            v->interval_ms = kv->val.via.u64;
        }
    }
}

/* stats.subscribe {interval_ms} / stats.unsubscribe {}: answered by the
 * transport. Returns true when @buf was one of them. */
static bool handle_local(conn_t *c, const char *buf, size_t len)
{
    int64_t base = c->w->api->config_int(c->w->host, "stats_interval_ms", 1000);
    msgpack_unpacked u;
    size_t off = 0;
    local_view_t v = {0};
    bool sub, unsub, mine;

    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS)
        read_local(&u.data, &v);
    sub = v.op != NULL && v.op_len == 15 && memcmp(v.op, "stats.subscribe", 15) == 0;
    unsub = v.op != NULL && v.op_len == 17 && memcmp(v.op, "stats.unsubscribe", 17) == 0;
    mine = (sub || unsub) && v.id != NULL && v.id->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (mine) {
        /* Answered by a ping with the client's id: it fails as any other op
         * would (UNAUTHORIZED before the token's hello). */
        uint64_t iv = v.interval_ms ? v.interval_ms : MQHUB_STATS_INTERVAL_MS_DEFAULT;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        if (iv < (uint64_t)base)
            iv = (uint64_t)base;
        if (iv > MQHUB_STATS_INTERVAL_MS_MAX)
            iv = MQHUB_STATS_INTERVAL_MS_MAX;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "op", 2);
        msgpack_pack_str_with_body(&pk, "ping", 4);
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_uint64(&pk, v.id->via.u64);
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

static int conn_receive(conn_t *c, const char *in, size_t len)
{
    ws_t *w = c->w;
    bool last = lws_is_final_fragment(c->wsi) && lws_remaining_packet_payload(c->wsi) == 0;

    if (c->closing)
        return 0;
    if (c->in_len + len > w->max_frame) {
        char msg[160];
        snprintf(msg, sizeof msg, "a message of more than %zu bytes is larger than max_frame",
                 w->max_frame);
        w->api->metric_add(w->host, "frames_too_large", 1);
        send_error(c, "FRAME_TOO_LARGE", msg);
        conn_close_after(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message larger than max_frame");
        return 0;
    }
    if (last && c->in_len == 0) { /* the common case: one fragment */
        handle(c, in, len);
        return 0;
    }
    if (c->in_len + len > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
        char *p;
        while (cap < c->in_len + len)
            cap *= 2;
        if ((p = realloc(c->in, cap)) == NULL)
            return -1;
        c->in = p;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, in, len);
    c->in_len += len;
    if (last) {
        handle(c, c->in, c->in_len);
        c->in_len = 0;
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    return 0;
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
    free(c->in);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->n_conns--;
    free(c);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    ws_t *w = lws_context_user(lws_get_context(wsi));
    conn_t **slot = user;

    switch (reason) {
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

/* "host:port" or "[v6]:port" → interface and port (a 0.0.0.0 or :: host
 * means every interface). */
static int parse_listen(ws_full_t *f, const char *s)
{
    const char *colon = strrchr(s, ':');
    size_t hl;

    if (colon == NULL || sscanf(colon + 1, "%d", &f->port) != 1 || f->port < 0 ||
        f->port > 65535)
        return -1;
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof f->iface)
        return -1;
    memcpy(f->iface, s, hl);
    f->iface[hl] = '\0';
    return 0;
}

static int read_config(ws_full_t *f, char *errmsg, size_t errlen)
{
    ws_t *w = &f->w;
    const mqhub_host_api_t *api = w->api;
    const char *listen = api->config_string(w->host, "listen");
    const char *www = api->config_string(w->host, "www");
    int64_t send_buffer = api->config_int(w->host, "send_buffer", 4 << 20);
    int64_t ping = api->config_int(w->host, "ping_interval", 20);
    int64_t idle = api->config_int(w->host, "idle_timeout", 60);

    if (listen == NULL)
        listen = MQHUB_DEFAULT_WS_ADDRESS;
    if (parse_listen(f, listen) != 0) {
        snprintf(errmsg, errlen, "listen \"%s\" is not host:port", listen);
        return -1;
    }
    if (send_buffer < 4096 || ping < 1 || ping > 3600 || idle <= ping || idle > 65535) {
        snprintf(errmsg, errlen, "send_buffer (>= 4096), ping_interval (1-3600) and "
                 "idle_timeout (above ping_interval, <= 65535) must be in range");
        return -1;
    }
    snprintf(f->www, sizeof f->www, "%s", www != NULL ? www : MQHUB_WS_WWW);
    w->send_limit = (size_t)send_buffer;
    w->max_frame = api->max_frame(w->host) ? api->max_frame(w->host) : MQHUB_DEFAULT_MAX_FRAME;
    f->retry.secs_since_valid_ping = (uint16_t)ping;
    f->retry.secs_since_valid_hangup = (uint16_t)idle;
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
        &f->headers[1], NULL, "content-security-policy:", WS_CSP};
    f->headers[1] = (struct lws_protocol_vhost_options){
        &f->headers[2], NULL, "x-content-type-options:", "nosniff"};
    f->headers[2] = (struct lws_protocol_vhost_options){
        NULL, NULL, "referrer-policy:", "no-referrer"};
}

static int ws_init(const mqhub_host_api_t *api, mqhub_host_t *host, void **state, char *errmsg,
                   size_t errlen)
{
    struct lws_context_creation_info info;
    const char *cert = api->config_string(host, "tls_cert");
    const char *key = api->config_string(host, "tls_key");
    ws_full_t *f = calloc(1, sizeof *f);
    ws_t *w = &f->w;

    if (f == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    w->api = api;
    w->host = host;
    w->loop = api->loop(host);
    if ((cert == NULL) != (key == NULL))
        snprintf(errmsg, errlen, "tls_cert and tls_key go together");
    if ((cert == NULL) != (key == NULL) || read_config(f, errmsg, errlen) != 0) {
        free(f);
        return -1;
    }
    set_protocols(f);
    set_mounts(f, api->config_int(host, "dashboard", 1) != 0);
    f->loops[0] = w->loop;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 |
                   (cert != NULL ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0);
    info.foreign_loops = f->loops;
    info.port = f->port;
    info.iface = strcmp(f->iface, "0.0.0.0") == 0 || strcmp(f->iface, "::") == 0 ? NULL
                                                                                   : f->iface;
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
    if (w->ctx == NULL) {
        snprintf(errmsg, errlen, "listen on %s:%d%s failed (address in use, or see the lws "
                 "log line above)", f->iface, f->port, cert != NULL ? " with TLS" : "");
        log_target = NULL;
        free(f);
        return -1;
    }
    if (stats_new(&w->stats, w) != 0) {
        snprintf(errmsg, errlen, "out of memory");
        lws_context_destroy(w->ctx); /* no connection yet: nothing pending */
        log_target = NULL;
        free(f);
        return -1;
    }
    int port = lws_get_vhost_listen_port(lws_get_vhost_by_name(w->ctx, "mqhub"));
    if (f->mounts[2].mount_next)
        api->log(host, MQHUB_LOG_INFO, "listening on %s:%d%s, dashboard at http%s://%s:%d/",
                 f->iface, port, cert != NULL ? " (TLS)" : "", cert != NULL ? "s" : "",
                 f->iface, port);
    else
        api->log(host, MQHUB_LOG_INFO, "listening on %s:%d%s, dashboard off", f->iface, port,
                 cert != NULL ? " (TLS)" : "");
    *state = f;
    return 0;
}

static void ws_stop(void *state)
{
    ws_t *w = state;

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
