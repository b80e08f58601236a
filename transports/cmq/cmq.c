/* cmq.c: the CMQ transport plugin (docs/cmq.md): Tencent CMQ's HTTP API
 * (Action=SendMessage&..., HMAC-signed) served by libwebsockets' HTTP
 * server on the daemon's libuv loop, every action turned into native
 * requests by actions.c.
 *
 * Start with cmq_init(): config, the listening socket (transports/common's
 * listener.c, bound exactly where `listen` says; on_accept() hands
 * connections to lws, at
 * most max_connections at a time) and one lws context on the daemon's loop
 * (a foreign loop, as in the WebSocket transport). callback() sees each
 * request: req_start() gathers the query params and waits for a body when
 * there is one (req_body(), bounded by max_body), req_dispatch() checks
 * SecretId, Timestamp, Nonce, Signature and the replay cache
 * (authenticate(): creds.c, sign.c, replay.c) and starts the action in the
 * connection's host session for that SecretId's identity (session(): a
 * named user through the host's session_identify, or hello with the
 * daemon's root token; a request signed with another SecretId on the same
 * connection gets a new session), on_done() renders the JSON reply, written
 * by req_writable() (header, then body) with HTTP 200 for API errors too.
 *
 * TLS (tls_cert, tls_key, optional tls_ca for client certificates) is lws's
 * own, on the adopted sockets, TLS 1.2 at least (create_context()).
 *
 * Limits: header_timeout for a request's head and body, idle_timeout for an
 * idle keep-alive connection, a long poll at most 30 s (the call's own
 * timeout is CMQ_WAIT_MAX plus a margin).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <libwebsockets.h>
#include <openssl/ssl.h>

#include "cmq.h"
#include "listen.h"
#include "listener.h"
#include "mqhub/protocol.h"

#define CMQ_DEFAULT_LISTEN "127.0.0.1:6290"
#define CMQ_BACKLOG 511
#define CMQ_ACCEPTS_PER_WAKE 64
#define CMQ_CALL_MARGIN 15 /* s beyond the longest poll before lws drops a request */
#define CMQ_NONCE_MAX 20   /* digits of a Nonce (2^64 has 20) */
#define CMQ_REPLAY_MAX 200000 /* default replay_cache_max: ~30 MiB when full */
#define CMQ_KEY_FILE_MAX 1025  /* bytes of a secret_key_file's key, + NUL */
#define CMQ_TLS_AD_CERT_REQUIRED 116 /* TLS 1.3's alert; OpenSSL 3.0 names it "unknown" */

typedef struct cmq {
    const mqhub_host_api_t *api;
    mqhub_host_t *host;
    uv_loop_t *loop;
    struct lws_context *ctx;
    struct lws_protocols protocols[2];
    void *loops[1];
    cmq_creds_t creds;
    cmq_replay_t *replay;
    const char *token;
    const char *tls_cert, *tls_key, *tls_ca;
    size_t max_body;
    int64_t max_conns, header_timeout, idle_timeout, time_window, replay_max;
    unsigned n_conns;
    uint64_t requests, started;
    time_t tls_logged;     /* second of the last TLS refusal logged */
    unsigned tls_unlogged; /* refusals not logged since */
    struct sockaddr_storage addr;
    char bound[64];
    listener_t *listener;
} cmq_t;

/* Per connection (lws user space; persists across keep-alive requests). */
typedef struct req {
    cmq_t *q;
    struct lws *wsi;
    mqhub_session_t *session; /* the connection's, opened on first use */
    const cmq_cred_t *cred;   /* whose identity the session has */
    /* The request in progress: */
    char method[8], host[256], path[256];
    cmq_params_t params;
    char *body;
    size_t body_len, body_want;
    cmq_call_t *call;
    char *out; /* the JSON reply */
    size_t out_len;
    bool header_sent;
} req_t;

/* ---------------------------------------------------------------- replies */

/* The request's reply @reply (stolen) with requestId, queued to write. */
static void reply_json(req_t *h, json_t *reply)
{
    char id[48];

    snprintf(id, sizeof id, "%" PRIx64 "-%" PRIu64, h->q->started, ++h->q->requests);
    json_object_set_new(reply, "requestId", json_string(id));
    h->out = json_dumps(reply, JSON_COMPACT);
    h->out_len = h->out != NULL ? strlen(h->out) : 0;
    json_decref(reply);
    if (h->out == NULL) {
        h->out = strdup("{\"code\":6000,\"message\":\"(10010)out of memory\",\"requestId\":\"\"}");
        h->out_len = h->out != NULL ? strlen(h->out) : 0;
    }
    lws_callback_on_writable(h->wsi);
}

static void call_free(req_t *h)
{
    if (h->call != NULL) {
        cmq_call_cleanup(h->call);
        free(h->call);
        h->call = NULL;
    }
}

static void on_done(void *arg, json_t *reply)
{
    req_t *h = arg;
    int64_t code = json_integer_value(json_object_get(reply, "code"));

    if (code != 0)
        h->q->api->metric_add(h->q->host, "errors", 1);
    reply_json(h, reply);
}

/* The request is over: free its state for the next one on the connection. */
static void req_reset(req_t *h)
{
    call_free(h);
    cmq_params_free(&h->params);
    free(h->body);
    free(h->out);
    h->body = h->out = NULL;
    h->body_len = h->body_want = h->out_len = 0;
    h->header_sent = false;
}

static int req_writable(req_t *h)
{
    struct lws *wsi = h->wsi;
    unsigned char hdr[LWS_PRE + 512], *p = hdr + LWS_PRE, *end = hdr + sizeof hdr - 1;
    unsigned char *buf;
    int n;

    if (h->out == NULL)
        return 0;
    if (!h->header_sent) {
        if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "application/json; charset=utf-8",
                                        (lws_filepos_t)h->out_len, &p, end) ||
            lws_finalize_write_http_header(wsi, hdr + LWS_PRE, &p, end))
            return -1;
        h->header_sent = true;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if ((buf = malloc(LWS_PRE + h->out_len)) == NULL)
        return -1;
    memcpy(buf + LWS_PRE, h->out, h->out_len);
    n = lws_write(wsi, buf + LWS_PRE, h->out_len, LWS_WRITE_HTTP_FINAL);
    free(buf);
    req_reset(h);
    if (n < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---------------------------------------------------------------- requests */

static void on_hello(void *arg, const char *buf, size_t len)
{
    (void)arg; /* a wrong token shows as UNAUTHORIZED on every request (4100) */
    (void)buf;
    (void)len;
}

/* A hello with the daemon's root token on @h's new session (none without
 * one: a hub with users then answers every action 4100). */
static void hello_root(req_t *h)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    const char *token = h->q->token;

    if (token == NULL)
        return;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "hello", 5);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_str_with_body(&pk, "version", 7);
    msgpack_pack_uint8(&pk, MQHUB_PROTOCOL_VERSION);
    msgpack_pack_str_with_body(&pk, "client", 6);
    msgpack_pack_str_with_body(&pk, "cmq", 3);
    msgpack_pack_str_with_body(&pk, "token", 5);
    msgpack_pack_str_with_body(&pk, token, strlen(token));
    h->q->api->request(h->session, sb.data, sb.size, on_hello, h);
    msgpack_sbuffer_destroy(&sb);
}

/* The connection's host session for credential @cred: opened on the first
 * request, and again when a request is signed with another SecretId (no
 * call is in flight between two requests of a connection). A named user's
 * session is identified by name (its grants apply, looked up on every
 * request); the root form's says hello with the root token. */
static mqhub_session_t *session(req_t *h, const cmq_cred_t *cred)
{
    char peer[96] = "?";
    const mqhub_host_api_t *api = h->q->api;

    if (h->session != NULL && h->cred == cred)
        return h->session;
    if (h->session != NULL)
        api->session_close(h->session);
    h->cred = cred;
    lws_get_peer_simple(h->wsi, peer, sizeof peer);
    h->session = api->session_open(h->q->host, peer, NULL, NULL);
    if (h->session == NULL)
        return NULL;
    if (cred->user == NULL)
        hello_root(h);
    else if (api->session_identify(h->session, cred->user) != 0) {
        api->session_close(h->session);
        h->session = NULL;
    }
    return h->session;
}

/* Whether @s is a Nonce: 1 to CMQ_NONCE_MAX decimal digits. */
static bool nonce_valid(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > CMQ_NONCE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* The replay cache's verdict on @h's request (signed, Timestamp @t): NULL
 * when it is new, else the 4100 reply (a new reference). */
static json_t *replay_check(req_t *h, const char *id, long long t, long long now)
{
    cmq_t *q = h->q;
    const char *nonce = cmq_param(&h->params, "Nonce", NULL);
    const char *ts = cmq_param(&h->params, "Timestamp", NULL);
    const char *sig = cmq_param(&h->params, "Signature", NULL);
    int rc = cmq_replay_check(q->replay, id, nonce, ts, sig, t, now, q->time_window);

    if (rc == 0)
        return NULL;
    q->api->metric_add(q->host, "replays_refused", 1);
    if (rc == CMQ_REPLAY_SEEN)
        return cmq_error(CMQ_EAUTH, 10031, "replayed request: SecretId %s already sent this "
                         "request (Nonce %s, Timestamp %s) within the last %" PRId64 " s; "
                         "sign each request with a new Nonce", id, nonce, ts, q->time_window);
    if (rc == CMQ_REPLAY_TOO_OLD)
        return cmq_error(CMQ_EAUTH, 10031, "Timestamp %s is older than the replay cache can "
                         "vouch for under this load (requests signed at or before %" PRId64
                         " are refused): sign with the current time", ts,
                         cmq_replay_floor(q->replay));
    return cmq_error(CMQ_EINTERNAL, 10010, "out of memory");
}

/* SecretId, Timestamp, Nonce, Signature, then the replay cache: NULL with
 * the signer's credential in *@cred when they pass, else the 4100 reply (a
 * new reference). Only a correctly signed request enters the cache. */
static json_t *authenticate(req_t *h, const cmq_cred_t **cred)
{
    cmq_t *q = h->q;
    const char *id = cmq_param(&h->params, "SecretId", NULL);
    const char *ts = cmq_param(&h->params, "Timestamp", NULL);
    char *endp = NULL;
    long long t = ts != NULL ? strtoll(ts, &endp, 10) : 0;
    long long now = (long long)time(NULL);

    if ((*cred = cmq_creds_find(&q->creds, id)) == NULL)
        return cmq_error(CMQ_EAUTH, 10270, "secretId is not known to this server");
    if (ts == NULL || *ts == '\0' || *endp != '\0' || t < now - q->time_window ||
        t > now + q->time_window)
        return cmq_error(CMQ_EAUTH, 10030, "Timestamp must be unix seconds within %" PRId64
                         " s of the server's clock", q->time_window);
    if (!nonce_valid(cmq_param(&h->params, "Nonce", NULL)))
        return cmq_error(CMQ_EAUTH, 10030, "Nonce must be a positive integer of 1 to %d "
                         "digits, new for each request", CMQ_NONCE_MAX);
    if (!cmq_sign_verify(&h->params, h->method, h->host, h->path, (*cred)->secret_key))
        return cmq_error(CMQ_EAUTH, 10030, "authentication failed: wrong Signature");
    return replay_check(h, id, t, now);
}

static void req_dispatch(req_t *h)
{
    const cmq_cred_t *cred = NULL;
    json_t *err = authenticate(h, &cred);

    h->q->api->metric_add(h->q->host, "requests", 1);
    if (err != NULL) {
        h->q->api->metric_add(h->q->host, "auth_failures", 1);
        reply_json(h, err);
        return;
    }
    if (session(h, cred) == NULL || (h->call = calloc(1, sizeof *h->call)) == NULL) {
        reply_json(h, cmq_error(CMQ_EINTERNAL, 10010, "out of memory"));
        return;
    }
    h->call->api = h->q->api;
    h->call->session = h->session;
    h->call->params = &h->params;
    h->call->done = on_done;
    h->call->arg = h;
    lws_set_timeout(h->wsi, PENDING_TIMEOUT_USER_OK, CMQ_WAIT_MAX + CMQ_CALL_MARGIN);
    cmq_call_start(h->call, (int64_t)time(NULL));
}

/* The query string's params (decoded by lws) into @h->params. Each is
 * copied whole, however long (the head is bounded by max_http_header_data):
 * a fixed buffer would end the list silently at the first longer one. */
static int query_params(req_t *h)
{
    for (int i = 0;; i++) {
        int size = lws_hdr_fragment_length(h->wsi, WSI_TOKEN_HTTP_URI_ARGS, i) + 1;
        char *frag = malloc((size_t)size), *eq;
        int n, rc;

        if (frag == NULL)
            return -1;
        if ((n = lws_hdr_copy_fragment(h->wsi, frag, size, WSI_TOKEN_HTTP_URI_ARGS, i)) < 0) {
            free(frag);
            return 0;
        }
        eq = memchr(frag, '=', (size_t)n);
        rc = cmq_params_add(&h->params, frag, eq != NULL ? (size_t)(eq - frag) : (size_t)n,
                            eq != NULL ? eq + 1 : "",
                            eq != NULL ? (size_t)(frag + n - eq - 1) : 0);
        free(frag);
        if (rc != 0)
            return -1;
    }
}

static int http_status(struct lws *wsi, unsigned status, const char *msg)
{
    lws_return_http_status(wsi, status, msg);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int req_start(cmq_t *q, struct lws *wsi, req_t *h, const char *uri)
{
    char len[32] = "";
    bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    bool post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;

    h->q = q;
    h->wsi = wsi;
    req_reset(h);
    if (!get && !post)
        return http_status(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, "GET or POST");
    snprintf(h->method, sizeof h->method, "%s", get ? "GET" : "POST");
    snprintf(h->path, sizeof h->path, "%s", uri);
    if (lws_hdr_copy(wsi, h->host, sizeof h->host, WSI_TOKEN_HOST) < 0)
        h->host[0] = '\0';
    if (query_params(h) != 0)
        return -1;
    if (lws_hdr_copy(wsi, len, sizeof len, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
        h->body_want = (size_t)strtoull(len, NULL, 10);
    if (h->body_want > q->max_body) {
        q->api->metric_add(q->host, "bodies_too_large", 1);
        return http_status(wsi, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, "request body too large");
    }
    if (h->body_want == 0)
        req_dispatch(h);
    return 0;
}

static int req_body(req_t *h, const char *in, size_t len)
{
    if (h->body_len + len > h->body_want || h->body_len + len > h->q->max_body)
        return -1;
    if (h->body == NULL && (h->body = malloc(h->body_want + 1)) == NULL)
        return -1;
    memcpy(h->body + h->body_len, in, len);
    h->body_len += len;
    return 0;
}

static int req_body_done(req_t *h)
{
    if (cmq_form_parse(&h->params, h->body != NULL ? h->body : "", h->body_len) != 0) {
        reply_json(h, cmq_error(CMQ_EPARAM, 10110, "the body is not "
                                "application/x-www-form-urlencoded"));
        return 0;
    }
    req_dispatch(h);
    return 0;
}

/* The connection is gone: no reply callback after session_close. */
static void req_closed(req_t *h)
{
    if (h->session != NULL)
        h->q->api->session_close(h->session);
    h->session = NULL;
    h->cred = NULL;
    req_reset(h);
}

/* A TLS alert on a connection (ssl_info_event_mask): a fatal one the
 * server sent ends a handshake it refused — a protocol older than TLS 1.2,
 * no or an untrusted client certificate, bytes that are no TLS (when lws
 * saw no TLS record start, it closed without asking OpenSSL). Counted
 * (tls_failures) and logged at most once a second, with the number of
 * refusals not logged since the previous line. */
static void tls_alert(cmq_t *q, struct lws *wsi, const struct lws_ssl_info *si)
{
    char peer[INET6_ADDRSTRLEN] = "(gone)";
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    time_t now = time(NULL);
    int desc = si->ret & 0xff;

    if (!(si->where & SSL_CB_WRITE) || strcmp(SSL_alert_type_string(si->ret), "F") != 0)
        return;
    q->api->metric_add(q->host, "tls_failures", 1);
    if (now == q->tls_logged) {
        q->tls_unlogged++;
        return;
    }
    /* the peer may have closed already: getpeername, not lws's wording of its failure */
    if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&sa, &salen) == 0)
        inet_ntop(sa.ss_family,
                  sa.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&sa)->sin6_addr
                                           : (void *)&((struct sockaddr_in *)&sa)->sin_addr,
                  peer, sizeof peer);
    q->api->log(q->host, MQHUB_LOG_WARN, "TLS from %s refused: %s (%u refusals not logged)",
                peer,
                desc == SSL_AD_PROTOCOL_VERSION ? "protocol version (a client older than TLS 1.2?)"
                : desc == CMQ_TLS_AD_CERT_REQUIRED ? "certificate required (the client sent none)"
                                                   : SSL_alert_desc_string_long(si->ret),
                q->tls_unlogged);
    q->tls_logged = now;
    q->tls_unlogged = 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    cmq_t *q = ctx != NULL ? lws_context_user(ctx) : NULL;
    req_t *h = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return req_start(q, wsi, h, in != NULL ? in : "/");
    case LWS_CALLBACK_HTTP_BODY:
        return h != NULL && h->wsi != NULL ? req_body(h, in, len) : -1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return h != NULL && h->wsi != NULL ? req_body_done(h) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return h != NULL && h->wsi != NULL ? req_writable(h) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (h != NULL && h->wsi != NULL)
            req_closed(h);
        return 0;
    case LWS_CALLBACK_SSL_INFO:
        if (q != NULL && in != NULL)
            tls_alert(q, wsi, in);
        return 0;
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
        /* With tls_ca, lws's OpenSSL verify callback asks this callback and
         * accepts the client's certificate when it returns 0, whatever
         * OpenSSL found: accept only what OpenSSL verified against tls_ca
         * (its preverify_ok comes in @len). */
        return len != 0 ? 0 : 1;
    case LWS_CALLBACK_WSI_DESTROY:
        if (q != NULL && lws_get_opaque_user_data(wsi) == q && q->n_conns > 0)
            q->n_conns--;
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---------------------------------------------------------------- listening */

/* A connection accepted by q->listener, given to lws; beyond
 * max_connections it is closed at once (the listener set TCP_NODELAY: a
 * reply is two writes, head then body). */
static void on_accept(void *data, int fd)
{
    cmq_t *q = data;
    struct lws_vhost *vh = lws_get_vhost_by_name(q->ctx, "cmq");
    struct lws *wsi;

    if (vh == NULL || q->n_conns >= (uint64_t)q->max_conns) {
        if (vh != NULL)
            q->api->metric_add(q->host, "connections_refused", 1);
        close(fd);
        return;
    }
    wsi = lws_adopt_socket_vhost(vh, fd);
    if (wsi == NULL)
        return;
    lws_set_opaque_user_data(wsi, q);
    q->n_conns++;
    q->api->metric_add(q->host, "connections_total", 1);
}

/* The listener, bound to @q->addr; its real address into @q->bound. */
static int cmq_listen_open(cmq_t *q, char *errmsg, size_t errlen)
{
    listener_config_t cfg = {.api = q->api, .host = q->host, .backlog = CMQ_BACKLOG,
                             .accepts_per_wake = CMQ_ACCEPTS_PER_WAKE, .on_accept = on_accept,
                             .data = q};

    return listener_open(&q->listener, &cfg, &q->addr, q->bound, sizeof q->bound, errmsg,
                         errlen);
}

/* ---------------------------------------------------------------- plugin */

static int config_int(cmq_t *q, const char *key, int64_t def, int64_t lo, int64_t hi,
                      int64_t *out, char *errmsg, size_t errlen)
{
    if (q->api->config_int(q->host, key, def, out) != 0 || *out < lo || *out > hi) {
        snprintf(errmsg, errlen, "%s must be an integer from %" PRId64 " to %" PRId64, key, lo,
                 hi);
        return -1;
    }
    return 0;
}

/* Who may sign: secret_id + secret_key or secret_key_file (+ user;
 * without it the root token), and every line of credentials_file. */
static int read_credentials(cmq_t *q, char *errmsg, size_t errlen)
{
    const mqhub_host_api_t *api = q->api;
    const char *id = api->config_string(q->host, "secret_id");
    const char *key = api->config_string(q->host, "secret_key");
    const char *key_file = api->config_string(q->host, "secret_key_file");
    const char *user = api->config_string(q->host, "user");
    const char *file = api->config_string(q->host, "credentials_file");
    char from_file[CMQ_KEY_FILE_MAX];
    int rc;

    if ((id == NULL) != (key == NULL && key_file == NULL) || (key != NULL && key_file != NULL) ||
        (user != NULL && id == NULL)) {
        snprintf(errmsg, errlen, "secret_id goes with one of secret_key or secret_key_file "
                 "(user names the user they act as)");
        return -1;
    }
    if (id == NULL && file == NULL) {
        snprintf(errmsg, errlen, "secret_id and secret_key, or credentials_file, are required "
                 "(the SecretIds and SecretKeys CMQ clients sign with)");
        return -1;
    }
    if (key_file != NULL) {
        if (cmq_creds_key_file(key_file, from_file, sizeof from_file, errmsg, errlen) != 0)
            return -1;
        key = from_file;
    }
    rc = id != NULL ? cmq_creds_add(&q->creds, id, key, user, errmsg, errlen) : 0;
    OPENSSL_cleanse(from_file, sizeof from_file);
    if (rc != 0)
        return -1;
    if (file != NULL && cmq_creds_load(&q->creds, file, errmsg, errlen) != 0)
        return -1;
    for (size_t i = 0; i < q->creds.n; i++) {
        if (q->creds.v[i].user != NULL && !MQHUB_HOST_HAS(api, session_identify)) {
            snprintf(errmsg, errlen, "this mqhubd cannot run requests as a named user "
                     "(no session_identify): SecretId %s", q->creds.v[i].secret_id);
            return -1;
        }
    }
    return 0;
}

/* tls_cert + tls_key (+ tls_ca: client certificates required). */
static int read_tls(cmq_t *q, char *errmsg, size_t errlen)
{
    q->tls_cert = q->api->config_string(q->host, "tls_cert");
    q->tls_key = q->api->config_string(q->host, "tls_key");
    q->tls_ca = q->api->config_string(q->host, "tls_ca");
    if ((q->tls_cert == NULL) != (q->tls_key == NULL)) {
        snprintf(errmsg, errlen, "tls_cert and tls_key go together");
        return -1;
    }
    if (q->tls_ca != NULL && q->tls_cert == NULL) {
        snprintf(errmsg, errlen, "tls_ca (client certificates) needs tls_cert and tls_key");
        return -1;
    }
    return 0;
}

static int read_config(cmq_t *q, char *errmsg, size_t errlen)
{
    const mqhub_host_api_t *api = q->api;
    const char *listen = api->config_string(q->host, "listen");
    int64_t max_body;

    if (read_credentials(q, errmsg, errlen) != 0 || read_tls(q, errmsg, errlen) != 0)
        return -1;
    if (listen == NULL)
        listen = CMQ_DEFAULT_LISTEN;
    if (listen_parse(listen, &q->addr) != 0) {
        snprintf(errmsg, errlen, "listen \"%s\" is not host:port", listen);
        return -1;
    }
    if (config_int(q, "max_body", 4 << 20, 64 << 10, 64 << 20, &max_body, errmsg, errlen) ||
        config_int(q, "max_connections", 1024, 1, 1000000, &q->max_conns, errmsg, errlen) ||
        config_int(q, "header_timeout", 10, 1, 3600, &q->header_timeout, errmsg, errlen) ||
        config_int(q, "idle_timeout", 60, 1, 3600, &q->idle_timeout, errmsg, errlen) ||
        config_int(q, "time_window", CMQ_TIME_WINDOW, 1, 86400 * 366, &q->time_window, errmsg,
                   errlen) ||
        config_int(q, "replay_cache_max", CMQ_REPLAY_MAX, 1000, 10000000, &q->replay_max,
                   errmsg, errlen))
        return -1;
    q->max_body = (size_t)max_body;
    if (MQHUB_HOST_HAS(api, auth_token))
        q->token = api->auth_token(q->host);
    return 0;
}

static int create_context(cmq_t *q)
{
    struct lws_context_creation_info info;

    memset(&info, 0, sizeof info);
    q->protocols[0] = (struct lws_protocols){.name = "cmq-http", .callback = callback,
                                             .per_session_data_size = sizeof(req_t),
                                             .rx_buffer_size = 65536};
    q->loops[0] = q->loop;
    info.options = LWS_SERVER_OPTION_LIBUV;
    if (q->tls_cert != NULL) {
        /* lws's TLS on every adopted socket: a plaintext client fails the
         * handshake and is closed; TLS 1.0/1.1 are refused. */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = q->tls_cert;
        info.ssl_private_key_filepath = q->tls_key;
        info.ssl_options_set = SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 |
                               SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
        info.ssl_info_event_mask = SSL_CB_ALERT; /* tls_alert() */
    }
    if (q->tls_ca != NULL) {
        info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
        info.ssl_ca_filepath = q->tls_ca;
    }
    info.foreign_loops = q->loops;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* q->listener listens */
    info.protocols = q->protocols;
    info.vhost_name = "cmq";
    info.server_string = "mqhub";
    info.timeout_secs = (unsigned)q->header_timeout;
    info.keepalive_timeout = (int)q->idle_timeout;
    info.max_http_header_data = 65535; /* a GET carries its params in the query */
    info.user = q;
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL); /* keeps the process's log function */
    q->ctx = lws_create_context(&info);
    return q->ctx != NULL ? 0 : -1;
}

/* What cmq_init made, undone; after the loop drained, cmq_fini's rest. */
static void cmq_free(cmq_t *q)
{
    cmq_creds_free(&q->creds);
    cmq_replay_free(q->replay);
    free(q);
}

static void init_undo(cmq_t *q)
{
    if (q->ctx != NULL)
        lws_context_destroy(q->ctx);
    listener_close(q->listener);
    cmq_free(q);
}

/* Every counter of this plugin, exported at 0 from the start (a Prometheus
 * series that appears only at its first event hides rate() and alerts). */
static void counters_declare(const mqhub_host_api_t *api, mqhub_host_t *host)
{
    static const char *const names[] = {
        "auth_failures", "bodies_too_large", "connections_refused", "connections_total",
        "errors", "replays_refused", "requests", "tls_failures"};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        api->metric_add(host, names[i], 0);
}

static int cmq_init(const mqhub_host_api_t *api, mqhub_host_t *host, void **state, char *errmsg,
                    size_t errlen)
{
    cmq_t *q = calloc(1, sizeof *q);

    counters_declare(api, host);
    if (q == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    q->api = api;
    q->host = host;
    q->loop = api->loop(host);
    q->started = (uint64_t)time(NULL);
    if (read_config(q, errmsg, errlen) != 0 || cmq_listen_open(q, errmsg, errlen) != 0) {
        init_undo(q);
        return -1;
    }
    if (cmq_replay_new(&q->replay, (size_t)q->replay_max) != 0) {
        snprintf(errmsg, errlen, "out of memory");
        init_undo(q);
        return -1;
    }
    if (create_context(q) != 0) {
        snprintf(errmsg, errlen, "%slibwebsockets set-up for %s failed (see the lws log line "
                 "above)", q->tls_cert != NULL ? "TLS or " : "", q->bound);
        init_undo(q);
        return -1;
    }
    api->log(host, MQHUB_LOG_INFO, "CMQ API listening on http%s://%s/ (%zu SecretId%s%s)",
             q->tls_cert != NULL ? "s" : "", q->bound, q->creds.n, q->creds.n == 1 ? "" : "s",
             q->tls_ca != NULL ? ", client certificates required" : "");
    *state = q;
    return 0;
}

static void cmq_stop(void *state)
{
    cmq_t *q = state;

    listener_close(q->listener);
    lws_context_destroy(q->ctx); /* inside the loop: closes connections and handles */
}

static void cmq_fini(void *state)
{
    cmq_t *q = state;

    lws_context_destroy(q->ctx); /* after the loop drained: frees the rest */
    cmq_free(q);
}

static const mqhub_plugin_t cmq_plugin = {
    .abi_version = MQHUB_PLUGIN_ABI,
    .size = sizeof(mqhub_plugin_t),
    .name = "cmq",
    .init = cmq_init,
    .stop = cmq_stop,
    .fini = cmq_fini,
};

MQHUB_PLUGIN_EXPORT const mqhub_plugin_t *mqhub_plugin_entry(void)
{
    return &cmq_plugin;
}
