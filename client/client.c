/* client.c: the connection and request engine of libmqhub.
 *
 * One non-blocking TCP socket driven with poll(2); no event loop is needed by
 * the user. Every request, blocking or not, becomes a `pending` entry holding
 * its whole frame (frame.h: 4-byte big-endian length + msgpack map), its
 * deadline and its completion function. pump() is the heart: it
 * (re)connects, writes queued frames, reads and splits frames, matches
 * answers to pending entries by id, retries NOT_LEADER (reconnect to the
 * named leader) and UNAVAILABLE (exponential back-off), and expires deadlines.
 *
 * With TLS (opts tls, tls_ca, tls_cert) the socket is wrapped by
 * client_tls.c right after connect; conn_recv()/conn_send() pick the path.
 *
 * Start reading at client_submit() and pump(). To add an operation, build it
 * in the *_ops.c of its part of the protocol (session_ops.c, queue_ops.c,
 * topic_ops.c, script_ops.c, cluster_ops.c) with client_req_init() and the
 * packers, then client_call().
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "client_int.h"
#include "frame.h"
#include "mp.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_WINDOW 128
#define MAX_HOPS 5
#define BACKOFF_START_MS 50
#define BACKOFF_MAX_MS 2000
#define MAX_IN_FRAME (512u << 20)
#define READ_CHUNK (256u << 10)

typedef struct pending {
    uint64_t id;
    char *frame; /* owned: length prefix + map */
    size_t len;
    uint64_t deadline;  /* monotonic ms */
    uint64_t retry_at;  /* not before this time (back-off) */
    unsigned backoff_ms;
    unsigned hops;
    bool sent;          /* written to the current connection */
    bool async;         /* counts against the window */
    client_done_fn fn;
    void *arg;          /* async: client_submit_async's client_async_t (owned) */
} pending_t;

typedef struct buf {
    char *p;
    size_t off, len, cap; /* valid bytes are p[off, len) */
} buf_t;

struct mqhub_client {
    char address[256];
    char **seeds;          /* the addresses given to connect, tried in turn */
    unsigned n_seeds, seed;
    char *token, *client_name;
    int timeout_ms;
    unsigned window;
    int fd;
    client_tls_t *tls;     /* NULL: plaintext */
    bool conn_failed;      /* last connect attempt failed */
    uint64_t conn_retry_at;
    unsigned conn_backoff;
    char *redirect;        /* leader named by NOT_LEADER, to switch to */
    buf_t out, in;
    pending_t *pend;
    size_t n_pend, cap_pend;
    unsigned n_async;
    uint64_t next_id;
    uint64_t delivered; /* callbacks run so far */
    mqhub_client_push_cb push_cb; /* server pushes (subscribe), or NULL */
    void *push_arg;
    char errmsg[512];
    /* The hello of the current connection was refused: its code and
     * "hello refused (CODE): sentence", named by the requests refused after
     * it. */
    int hello_status;
    char hello_err[400];
};

void client_set_errmsg(mqhub_client_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
}

const char *mqhub_client_errmsg(const mqhub_client_t *c)
{
    return c->errmsg;
}

const char *mqhub_version(void)
{
    return MQHUB_VERSION_STRING;
}

const char *mqhub_client_strerror(int code)
{
    if (code == MQHUB_ECONN)
        return "cannot reach the server, or the connection was lost";
    return mqhub_strerror(code);
}

const char *mqhub_client_address(const mqhub_client_t *c)
{
    return c->address;
}

unsigned mqhub_client_pending(const mqhub_client_t *c)
{
    return (unsigned)c->n_pend;
}

/* ------------------------------------------------------------ buffers */

static int buf_reserve(buf_t *b, size_t more)
{
    if (b->off > 0 && (b->off == b->len || b->off > b->cap / 2)) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return MQHUB_EINTERNAL;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_append(buf_t *b, const char *data, size_t len)
{
    if (buf_reserve(b, len) != 0)
        return MQHUB_EINTERNAL;
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

/* ------------------------------------------------------------ requests */

void client_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void client_pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    client_pack_str(pk, k);
    client_pack_str(pk, v);
}

void client_pack_kv_uint(msgpack_packer *pk, const char *k, uint64_t v)
{
    client_pack_str(pk, k);
    msgpack_pack_uint64(pk, v);
}

void client_req_init(mqhub_client_t *c, client_req_t *r, const char *op, uint32_t nfields)
{
    static const char header[FRAME_HEADER]; /* written by pending_add() */
    msgpack_sbuffer_init(&r->sb);
    msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
    r->timeout_ms = 0;
    msgpack_sbuffer_write(&r->sb, header, sizeof header);
    msgpack_pack_map(&r->pk, nfields + 2);
    client_pack_kv_str(&r->pk, "op", op);
    client_pack_kv_uint(&r->pk, "id", ++c->next_id);
}

void client_req_free(client_req_t *r)
{
    msgpack_sbuffer_destroy(&r->sb);
}

static void pending_remove(mqhub_client_t *c, size_t i)
{
    if (c->pend[i].async)
        c->n_async--;
    free(c->pend[i].frame);
    c->pend[i] = c->pend[--c->n_pend];
}

/* Remove entry @i and call its function: the entry is gone first, so the
 * callback may submit new requests. */
static void pending_finish(mqhub_client_t *c, size_t i, int status,
                           const msgpack_object *resp, msgpack_zone **zone,
                           const char *errmsg)
{
    client_done_fn fn = c->pend[i].fn;
    void *arg = c->pend[i].arg;
    pending_remove(c, i);
    c->delivered++;
    fn(arg, status, resp, zone, errmsg);
}

static int pending_add(mqhub_client_t *c, client_req_t *r, bool async,
                       client_done_fn fn, void *arg)
{
    if (c->n_pend == c->cap_pend) {
        size_t cap = c->cap_pend ? c->cap_pend * 2 : 64;
        pending_t *p = realloc(c->pend, cap * sizeof *p);
        if (!p)
            return MQHUB_EINTERNAL;
        c->pend = p;
        c->cap_pend = cap;
    }
    frame_header(r->sb.data, r->sb.size - FRAME_HEADER);
    uint64_t t = clock_mono_ms();
    int timeout = r->timeout_ms > c->timeout_ms ? r->timeout_ms : c->timeout_ms;
    pending_t *p = &c->pend[c->n_pend++];
    *p = (pending_t){.id = c->next_id, .len = r->sb.size, .deadline = t + (uint64_t)timeout,
                     .backoff_ms = BACKOFF_START_MS, .async = async, .fn = fn, .arg = arg};
    p->frame = msgpack_sbuffer_release(&r->sb);
    if (async)
        c->n_async++;
    return 0;
}

/* ---------------------------------------------------------- connection */

static int split_address(const char *addr, char *host, size_t hl, char *port, size_t pl)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || colon[1] == '\0')
        return -1;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n >= hl || strlen(colon + 1) >= pl)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static int connect_one(const struct addrinfo *ai, int timeout_ms, int *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int rc = poll(&pfd, 1, timeout_ms);
    socklen_t sl = sizeof *err;
    if (rc <= 0) {
        *err = rc == 0 ? ETIMEDOUT : errno;
        close(fd);
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &sl) != 0 || *err != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void hello_done(void *arg, int status, const msgpack_object *resp,
                       msgpack_zone **zone, const char *errmsg)
{
    mqhub_client_t *c = arg;
    (void)resp, (void)zone;
    if (status != 0) {
        c->hello_status = status;
        snprintf(c->hello_err, sizeof c->hello_err, "hello refused (%s): %s",
                 mqhub_err_name(status), errmsg ? errmsg : "");
        client_set_errmsg(c, "%s", c->hello_err);
    }
}

/* The sentence of a request refused UNAUTHORIZED because this connection's
 * hello was refused ("this server needs a token: send hello first" says
 * nothing of why): the hello's code and sentence instead, into @buf. */
static int hello_refusal(const mqhub_client_t *c, const pending_t *p, int err, char *buf,
                         size_t size)
{
    if (err != MQHUB_EUNAUTHORIZED || c->hello_status == 0 || p->fn == hello_done)
        return err;
    snprintf(buf, size, "%s", c->hello_err);
    return c->hello_status;
}

/* Queue hello {version, client, token} ahead of everything else. */
static int queue_hello(mqhub_client_t *c)
{
    client_req_t r;
    client_req_init(c, &r, "hello", 3);
    client_pack_kv_uint(&r.pk, "version", MQHUB_PROTOCOL_VERSION);
    client_pack_kv_str(&r.pk, "client", c->client_name ? c->client_name : "libmqhub");
    client_pack_kv_str(&r.pk, "token", c->token);
    int rc = pending_add(c, &r, false, hello_done, c);
    client_req_free(&r);
    if (rc != 0)
        return rc;
    pending_t *p = &c->pend[c->n_pend - 1];
    p->sent = true;
    return buf_append(&c->out, p->frame, p->len);
}

/* After a failed connect: the next address of the seed list, so a client
 * given every node of a cluster finds a live one when its node died. */
static void next_seed(mqhub_client_t *c)
{
    if (c->n_seeds < 2)
        return;
    c->seed = (c->seed + 1) % c->n_seeds;
    snprintf(c->address, sizeof c->address, "%s", c->seeds[c->seed]);
}

/* Split "a,b,c" into c->seeds; c->address becomes the first. */
static int parse_seeds(mqhub_client_t *c, const char *list)
{
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        return MQHUB_EINTERNAL;
    for (char *a = strtok_r(copy, ", ", &save); a; a = strtok_r(NULL, ", ", &save)) {
        char **s = realloc(c->seeds, (c->n_seeds + 1) * sizeof *s);
        if (!s || !(a = strdup(a))) {
            free(s ? s : c->seeds);
            c->seeds = NULL;
            c->n_seeds = 0;
            free(copy);
            return MQHUB_EINTERNAL;
        }
        c->seeds = s;
        c->seeds[c->n_seeds++] = a;
    }
    free(copy);
    snprintf(c->address, sizeof c->address, "%s", c->n_seeds ? c->seeds[0] : list);
    return 0;
}

/* Connect to c->address within @timeout_ms. 0 or MQHUB_ECONN (errmsg set). */
static int conn_open(mqhub_client_t *c, int timeout_ms)
{
    char host[256], port[32];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int err = 0;

    if (split_address(c->address, host, sizeof host, port, sizeof port) != 0) {
        client_set_errmsg(c, "bad address \"%s\": expected host:port", c->address);
        return MQHUB_ECONN;
    }
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        client_set_errmsg(c, "resolve %s: %s", c->address, gai_strerror(g));
        return MQHUB_ECONN;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = connect_one(ai, timeout_ms, &err);
    freeaddrinfo(res);
    if (fd < 0) {
        client_set_errmsg(c, "connect %s: %s", c->address, strerror(err));
        return MQHUB_ECONN;
    }
    char why[400];
    if (c->tls && client_tls_start(c->tls, fd, host, timeout_ms, why, sizeof why) != 0) {
        close(fd);
        client_set_errmsg(c, "connect %s: %s", c->address, why);
        return MQHUB_ECONN;
    }
    c->fd = fd;
    c->out.off = c->out.len = 0;
    c->in.off = c->in.len = 0;
    c->hello_status = 0;
    return c->token ? queue_hello(c) : 0;
}

/* Close the connection; requests written to it fail with MQHUB_ECONN
 * (the server may have performed them). Returns how many failed. */
static int conn_drop(mqhub_client_t *c, const char *why)
{
    int n = 0;
    if (c->tls)
        client_tls_end(c->tls);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->out.off = c->out.len = 0;
    c->in.off = c->in.len = 0;
    client_set_errmsg(c, "%s: %s", c->address, why);
    for (size_t i = 0; i < c->n_pend;) {
        if (c->pend[i].sent) {
            pending_finish(c, i, MQHUB_ECONN, NULL, NULL, why);
            n++;
        } else {
            i++;
        }
    }
    return n;
}

/* ------------------------------------------------------------- answers */

const msgpack_object *mqhub_map_get(const msgpack_object *map, const char *key)
{
    return mp_map_get(map, key);
}

int client_get_uint(const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *o = mp_map_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return MQHUB_EBAD_REQUEST;
    *out = o->via.u64;
    return 0;
}

int client_get_str(const msgpack_object *map, const char *key, const char **p, size_t *len)
{
    const msgpack_object *o = mp_map_get(map, key);
    if (o && o->type == MSGPACK_OBJECT_STR) {
        *p = o->via.str.ptr;
        *len = o->via.str.size;
        return 0;
    }
    if (o && o->type == MSGPACK_OBJECT_BIN) {
        *p = o->via.bin.ptr;
        *len = o->via.bin.size;
        return 0;
    }
    return MQHUB_EBAD_REQUEST;
}

void client_copy_str(const msgpack_object *map, const char *key, char *buf, size_t size)
{
    const char *p = NULL;
    size_t n;
    if (client_get_str(map, key, &p, &n) != 0)
        n = 0;
    if (n >= size)
        n = size - 1;
    if (n)
        memcpy(buf, p, n);
    buf[n] = '\0';
}

const msgpack_object *client_result_item(const msgpack_object *resp, size_t i)
{
    const msgpack_object *a = mp_map_get(resp, "results");
    return a && a->type == MSGPACK_OBJECT_ARRAY && i < a->via.array.size ? &a->via.array.ptr[i]
                                                                         : NULL;
}

int client_item_status(const msgpack_object *item)
{
    const char *code;
    size_t cl;
    return client_get_str(item, "code", &code, &cl) == 0 ? mqhub_err_from_name(code, cl) : 0;
}

int client_copy_names(const msgpack_object *map, const char *key, char ***names, size_t *n)
{
    const msgpack_object *a = mp_map_get(map, key);
    *names = NULL;
    *n = 0;
    if (!a || a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size == 0)
        return 0;
    *names = calloc(a->via.array.size, sizeof **names);
    if (!*names)
        return MQHUB_EINTERNAL;
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *o = &a->via.array.ptr[i];
        if (o->type != MSGPACK_OBJECT_STR)
            continue;
        (*names)[*n] = strndup(o->via.str.ptr, o->via.str.size);
        if (!(*names)[*n])
            return MQHUB_EINTERNAL;
        (*n)++;
    }
    return 0;
}

static size_t pending_find(mqhub_client_t *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_pend; i++)
        if (c->pend[i].id == id && c->pend[i].sent)
            return i;
    return SIZE_MAX;
}

/* An error answer that the engine handles itself: true when @p will be
 * resent (NOT_LEADER with a leader named, UNAVAILABLE before the deadline). */
static bool retry_answer(mqhub_client_t *c, pending_t *p, int code,
                         const msgpack_object *map)
{
    uint64_t t = clock_mono_ms();
    const char *l;
    size_t ll;
    bool named = client_get_str(map, "leader", &l, &ll) == 0 && ll > 0 &&
                 ll < sizeof c->address;
    if (code == MQHUB_ENOT_LEADER && !named && c->n_seeds > 1) {
        /* This node knows no leader (an election, or it is not a member
         * yet): ask the next node of the list after the back-off. */
        c->seed = (c->seed + 1) % c->n_seeds;
        free(c->redirect);
        c->redirect = strdup(c->seeds[c->seed]);
    }
    if (code == MQHUB_ENOT_LEADER && !named)
        code = MQHUB_EUNAVAILABLE; /* wait for an election to end */
    if (code == MQHUB_ENOT_LEADER && p->hops < MAX_HOPS) {
        free(c->redirect);
        c->redirect = strndup(l, ll);
        p->hops++;
        p->sent = false;
        p->retry_at = t;
        return true;
    }
    if (code == MQHUB_EUNAVAILABLE && t + p->backoff_ms < p->deadline) {
        p->sent = false;
        p->retry_at = t + p->backoff_ms;
        p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                           : p->backoff_ms * 2;
        return true;
    }
    return false;
}

/* Deliver one answer (the zone is consumed). Returns 1 when a callback ran. */
static int dispatch(mqhub_client_t *c, msgpack_zone *zone, const msgpack_object *map)
{
    uint64_t id;
    const msgpack_object *ok = mp_map_get(map, "ok");
    char sentence[512] = "";
    int delivered = 0;

    if (client_get_uint(map, "id", &id) != 0) {
        if (mp_map_get(map, "push") != NULL && c->push_cb != NULL) {
            c->delivered++;
            client_push_dispatch(c->push_cb, c->push_arg, map);
            msgpack_zone_free(zone);
            return 1;
        }
        /* A push nobody listens to, or an id-less error before the server
         * closes. */
        client_copy_str(map, "error", sentence, sizeof sentence);
        if (sentence[0])
            client_set_errmsg(c, "server: %s", sentence);
        msgpack_zone_free(zone);
        return 0;
    }
    size_t i = pending_find(c, id);
    if (i == SIZE_MAX) { /* timed out earlier */
        msgpack_zone_free(zone);
        return 0;
    }
    if (ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean) {
        pending_finish(c, i, 0, map, &zone, "");
        delivered = 1;
    } else {
        const char *code;
        size_t cl;
        int err = client_get_str(map, "code", &code, &cl) == 0
                      ? mqhub_err_from_name(code, cl) : MQHUB_EINTERNAL;
        if (!retry_answer(c, &c->pend[i], err, map)) {
            client_copy_str(map, "error", sentence, sizeof sentence);
            err = hello_refusal(c, &c->pend[i], err, sentence, sizeof sentence);
            pending_finish(c, i, err, map, &zone, sentence);
            delivered = 1;
        }
    }
    if (zone)
        msgpack_zone_free(zone);
    return delivered;
}

/* Split complete frames off c->in and dispatch them. Returns the callbacks
 * run, or -1 after dropping the connection on a bad frame. */
static int read_frames(mqhub_client_t *c)
{
    int n = 0, st;
    size_t len;
    while (c->fd >= 0 && (st = frame_next(c->in.p + c->in.off, c->in.len - c->in.off,
                                          MAX_IN_FRAME, &len)) != FRAME_NEED_MORE) {
        if (st == FRAME_TOO_LARGE)
            return conn_drop(c, "server sent an oversized frame"), -1;
        msgpack_zone *zone = msgpack_zone_new(8192);
        char *copy = zone ? msgpack_zone_malloc(zone, len ? len : 1) : NULL;
        if (!copy) {
            msgpack_zone_free(zone);
            return conn_drop(c, "out of memory"), -1;
        }
        memcpy(copy, c->in.p + c->in.off + FRAME_HEADER, len);
        c->in.off += FRAME_HEADER + len;
        msgpack_object obj;
        size_t off = 0;
        if (mp_extent(copy, len) != len ||
            msgpack_unpack(copy, len, &off, zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
            off != len || obj.type != MSGPACK_OBJECT_MAP) {
            msgpack_zone_free(zone);
            return conn_drop(c, "server sent a frame that is not a msgpack map"), -1;
        }
        n += dispatch(c, zone, &obj);
    }
    return n;
}

/* recv()/send() on the connection, through TLS when it has it; after a
 * failure other than EAGAIN/EINTR, conn_error() says why. */
static ssize_t conn_recv(mqhub_client_t *c, void *p, size_t n)
{
    return c->tls ? client_tls_recv(c->tls, p, n) : recv(c->fd, p, n, 0);
}

static ssize_t conn_send(mqhub_client_t *c, const void *p, size_t n)
{
    return c->tls ? client_tls_send(c->tls, p, n) : send(c->fd, p, n, MSG_NOSIGNAL);
}

static const char *conn_error(const mqhub_client_t *c)
{
    return c->tls && errno == EPROTO ? client_tls_error(c->tls) : strerror(errno);
}

static int do_read(mqhub_client_t *c)
{
    for (;;) {
        if (buf_reserve(&c->in, READ_CHUNK) != 0)
            return conn_drop(c, "out of memory");
        size_t room = c->in.cap - c->in.len;
        ssize_t r = conn_recv(c, c->in.p + c->in.len, room);
        if (r > 0) {
            c->in.len += (size_t)r;
            /* A short recv emptied the socket; SSL_read returns one record
             * at a time, so TLS reads on until it would block. */
            if ((size_t)r < room && !c->tls)
                break;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        return conn_drop(c, r == 0 ? "connection closed by the server" : conn_error(c));
    }
    int n = read_frames(c);
    return n < 0 ? 0 : n;
}

static int do_write(mqhub_client_t *c)
{
    while (c->out.off < c->out.len) {
        ssize_t w = conn_send(c, c->out.p + c->out.off, c->out.len - c->out.off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return 0;
        if (w < 0)
            return conn_drop(c, conn_error(c));
        c->out.off += (size_t)w;
    }
    c->out.off = c->out.len = 0;
    return 0;
}

/* ---------------------------------------------------------------- pump */

/* Fail entries past their deadline. Returns the callbacks run. */
static int expire(mqhub_client_t *c, uint64_t t)
{
    int n = 0;
    for (size_t i = 0; i < c->n_pend;) {
        if (c->pend[i].deadline > t) {
            i++;
            continue;
        }
        bool never_sent = !c->pend[i].sent && c->conn_failed;
        char why[600];
        snprintf(why, sizeof why, "%s", never_sent ? c->errmsg : "no answer in time");
        pending_finish(c, i, never_sent ? MQHUB_ECONN : MQHUB_ETIMEOUT, NULL, NULL, why);
        n++;
    }
    return n;
}

static bool any_sent(const mqhub_client_t *c)
{
    for (size_t i = 0; i < c->n_pend; i++)
        if (c->pend[i].sent)
            return true;
    return false;
}

/* Follow a NOT_LEADER redirect: switch address and reconnect lazily, once
 * every request written to the old node has its answer (each pipelined one
 * gets NOT_LEADER and is resent; dropping the connection earlier would make
 * them fail with the ambiguous MQHUB_ECONN). */
static int follow_redirect(mqhub_client_t *c)
{
    int n = 0;
    if (!c->redirect || (c->fd >= 0 && any_sent(c)))
        return 0;
    snprintf(c->address, sizeof c->address, "%s", c->redirect);
    free(c->redirect);
    c->redirect = NULL;
    if (c->fd >= 0)
        n = conn_drop(c, "following the leader");
    c->conn_retry_at = 0;
    return n;
}

/* Connect when needed, then queue every resendable frame. */
static int prepare(mqhub_client_t *c, uint64_t t, uint64_t *wake)
{
    bool want = false;
    for (size_t i = 0; i < c->n_pend; i++) {
        if (!c->pend[i].sent) {
            want = true;
            if (c->pend[i].retry_at > t && c->pend[i].retry_at < *wake)
                *wake = c->pend[i].retry_at;
        }
    }
    if (!want || (c->redirect && c->fd >= 0))
        return 0; /* nothing to send, or draining the old node first */
    if (c->fd < 0) {
        if (t < c->conn_retry_at) {
            if (c->conn_retry_at < *wake)
                *wake = c->conn_retry_at;
            return 0;
        }
        if (conn_open(c, c->timeout_ms) != 0) {
            next_seed(c);
            c->conn_failed = true;
            c->conn_retry_at = clock_mono_ms() + c->conn_backoff;
            c->conn_backoff = c->conn_backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                                   : c->conn_backoff * 2;
            if (c->conn_retry_at < *wake)
                *wake = c->conn_retry_at;
            return 0;
        }
        c->conn_failed = false;
        c->conn_backoff = BACKOFF_START_MS;
    }
    for (size_t i = 0; i < c->n_pend; i++) {
        pending_t *p = &c->pend[i];
        if (!p->sent && p->retry_at <= t) {
            if (buf_append(&c->out, p->frame, p->len) != 0)
                return conn_drop(c, "out of memory");
            p->sent = true;
        }
    }
    return 0;
}

/* Run the engine until @stop(arg) is true or @until (monotonic ms) passes.
 * Returns the callbacks run. */
static int pump(mqhub_client_t *c, uint64_t until, bool (*stop)(void *), void *arg)
{
    int n = 0;
    for (;;) {
        uint64_t t = clock_mono_ms();
        n += expire(c, t);
        n += follow_redirect(c);
        if (stop(arg))
            return n;
        uint64_t wake = until;
        for (size_t i = 0; i < c->n_pend; i++)
            if (c->pend[i].deadline < wake)
                wake = c->pend[i].deadline;
        n += prepare(c, t, &wake);
        t = clock_mono_ms();
        int ms = wake > t ? (int)(wake - t < 60000 ? wake - t : 60000) : 0;
        if (c->fd < 0) {
            if (t >= until || c->n_pend == 0)
                return n;
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        /* TLS: a read may need the socket writable (a key update answer). */
        bool read_on_out = c->tls && client_tls_wants_write(c->tls);
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (c->out.len > c->out.off || read_on_out)
            pfd.events |= POLLOUT;
        int rc = poll(&pfd, 1, ms);
        if (rc < 0 && errno != EINTR)
            return n + conn_drop(c, strerror(errno));
        if (rc > 0 && (pfd.revents & POLLOUT))
            n += do_write(c);
        if (rc > 0 && c->fd >= 0 &&
            ((pfd.revents & (POLLIN | POLLERR | POLLHUP)) ||
             (read_on_out && (pfd.revents & POLLOUT))))
            n += do_read(c);
        if (stop(arg) || clock_mono_ms() >= until)
            return n;
    }
}

/* ----------------------------------------------------------- submitting */

static bool window_free(void *arg)
{
    mqhub_client_t *c = arg;
    return c->n_async < c->window;
}

int client_submit(mqhub_client_t *c, client_req_t *r, bool async, client_done_fn fn,
                  void *arg)
{
    if (async && c->n_async >= c->window) {
        pump(c, clock_mono_ms() + (uint64_t)c->timeout_ms, window_free, c);
        if (c->n_async >= c->window) {
            client_req_free(r);
            client_set_errmsg(c, "no free slot in the window of %u requests", c->window);
            return MQHUB_ETIMEOUT;
        }
    }
    int rc = pending_add(c, r, async, fn, arg);
    client_req_free(r);
    if (rc != 0)
        client_set_errmsg(c, "out of memory");
    return rc;
}

typedef struct sync_state {
    bool done;
    int status;
    msgpack_object resp;
    msgpack_zone *zone;
    char errmsg[512];
} sync_state_t;

static void sync_done(void *arg, int status, const msgpack_object *resp,
                      msgpack_zone **zone, const char *errmsg)
{
    sync_state_t *s = arg;
    s->done = true;
    s->status = status;
    snprintf(s->errmsg, sizeof s->errmsg, "%s", errmsg ? errmsg : "");
    if (status == 0 && zone && *zone) {
        s->resp = *resp;
        s->zone = *zone;
        *zone = NULL;
    }
}

static bool sync_finished(void *arg)
{
    return ((sync_state_t *)arg)->done;
}

int client_call(mqhub_client_t *c, client_req_t *r, mqhub_response_t *out)
{
    sync_state_t s = {0};
    out->zone = NULL;
    int rc = client_submit(c, r, false, sync_done, &s);
    if (rc != 0)
        return rc;
    while (!s.done)
        pump(c, UINT64_MAX, sync_finished, &s);
    if (s.status != 0) {
        client_set_errmsg(c, "%s", s.errmsg[0] ? s.errmsg : mqhub_client_strerror(s.status));
        return s.status;
    }
    c->errmsg[0] = '\0';
    out->map = s.resp;
    out->zone = s.zone;
    return 0;
}

int client_submit_async(mqhub_client_t *c, client_req_t *r, client_done_fn fn,
                        void (*cb)(void), void *arg)
{
    client_async_t *a = malloc(sizeof *a);
    if (!a) {
        client_req_free(r);
        return MQHUB_EINTERNAL;
    }
    *a = (client_async_t){cb, arg};
    int rc = client_submit(c, r, true, fn, a);
    if (rc != 0)
        free(a);
    return rc;
}

static void response_done(void *arg, int status, const msgpack_object *resp,
                          msgpack_zone **zone, const char *errmsg)
{
    client_async_t a = *(client_async_t *)arg;
    free(arg);
    if (a.cb)
        ((mqhub_response_cb)a.cb)(a.arg, status, resp, errmsg ? errmsg : "");
}

int client_submit_response(mqhub_client_t *c, client_req_t *r, mqhub_response_cb cb,
                           void *arg)
{
    return client_submit_async(c, r, response_done, (void (*)(void))cb, arg);
}

int client_call_simple(mqhub_client_t *c, client_req_t *r)
{
    mqhub_response_t resp;
    int rc = client_call(c, r, &resp);
    mqhub_response_free(&resp);
    return rc;
}

void client_list_req(mqhub_client_t *c, client_req_t *r, const char *op, const char *prefix,
                     uint64_t offset, uint64_t limit)
{
    client_req_init(c, r, op, (prefix != NULL) + (offset > 0) + (limit > 0));
    if (prefix)
        client_pack_kv_str(&r->pk, "prefix", prefix);
    if (offset > 0)
        client_pack_kv_uint(&r->pk, "offset", offset);
    if (limit > 0)
        client_pack_kv_uint(&r->pk, "limit", limit);
}

int client_list_call(mqhub_client_t *c, client_req_t *r, const char *key,
                     mqhub_queue_list_t *out)
{
    mqhub_response_t resp;
    memset(out, 0, sizeof *out);
    int rc = client_call(c, r, &resp);
    if (rc != 0)
        return rc;
    rc = client_copy_names(&resp.map, key, &out->names, &out->n);
    if (client_get_uint(&resp.map, "total", &out->total) != 0)
        out->total = out->n;
    mqhub_response_free(&resp);
    if (rc != 0)
        mqhub_queue_list_free(out);
    return rc;
}

/* ------------------------------------------------------------- public */

static int finish_connect(mqhub_client_t *c, char *err, size_t errlen)
{
    int rc = MQHUB_ECONN;
    for (unsigned i = 0; i < (c->n_seeds ? c->n_seeds : 1) && rc != 0; i++) {
        rc = conn_open(c, c->timeout_ms);
        if (rc != 0)
            next_seed(c);
    }
    if (rc != 0) {
        if (err)
            snprintf(err, errlen, "%s", c->errmsg);
        return MQHUB_ECONN;
    }
    /* Wait for the hello queued by conn_open. With TLS, one round trip also
     * tells a refused client certificate (TLS 1.3 reports it after the
     * handshake) while the caller is still connecting. */
    if (!c->token && !c->tls)
        return 0;
    rc = mqhub_client_ping(c);
    if (rc != 0 && err)
        snprintf(err, errlen, "%s", c->errmsg);
    return rc;
}

int mqhub_client_connect(mqhub_client_t **out, const char *address,
                         const mqhub_client_opts_t *opts, char *err, size_t errlen)
{
    mqhub_client_opts_t o = opts ? *opts : (mqhub_client_opts_t){0};
    mqhub_client_t *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c)
        return MQHUB_EINTERNAL;
    c->fd = -1;
    c->timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : DEFAULT_TIMEOUT_MS;
    c->window = o.window ? o.window : DEFAULT_WINDOW;
    c->conn_backoff = BACKOFF_START_MS;
    c->token = o.token ? strdup(o.token) : NULL;
    c->client_name = o.client_name ? strdup(o.client_name) : NULL;
    int rc = parse_seeds(c, address);
    if (rc == 0 && (o.tls || o.tls_ca || o.tls_cert)) {
        char why[400];
        rc = client_tls_new(&c->tls, &o, why, sizeof why);
        if (rc != 0 && err)
            snprintf(err, errlen, "%s", why);
    }
    if (rc == 0)
        rc = finish_connect(c, err, errlen);
    if (rc != 0) {
        mqhub_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void mqhub_client_close(mqhub_client_t *c)
{
    if (!c)
        return;
    client_tls_free(c->tls);
    if (c->fd >= 0)
        close(c->fd);
    while (c->n_pend) { /* dropped without their callbacks (client.h) */
        if (c->pend[c->n_pend - 1].async)
            free(c->pend[c->n_pend - 1].arg);
        pending_remove(c, c->n_pend - 1);
    }
    free(c->pend);
    free(c->out.p);
    free(c->in.p);
    free(c->redirect);
    for (unsigned i = 0; i < c->n_seeds; i++)
        free(c->seeds[i]);
    free(c->seeds);
    free(c->token);
    free(c->client_name);
    free(c);
}

void client_set_auth(mqhub_client_t *c, const char *token, const char *client)
{
    char *t = token ? strdup(token) : NULL;
    char *n = client ? strdup(client) : NULL;
    free(c->token);
    free(c->client_name);
    c->token = t;
    c->client_name = n;
}

typedef struct poll_state {
    mqhub_client_t *c;
    uint64_t start;
} poll_state_t;

static bool delivered_some(void *arg)
{
    poll_state_t *ps = arg;
    return ps->c->delivered > ps->start || (ps->c->n_pend == 0 && !ps->c->push_cb);
}

void mqhub_client_on_push(mqhub_client_t *c, mqhub_client_push_cb cb, void *arg)
{
    c->push_cb = cb;
    c->push_arg = arg;
}

/* With a push callback, poll also waits for pushes when nothing is in
 * flight; a lost connection then ends the subscriptions: MQHUB_ECONN. */
int mqhub_client_poll(mqhub_client_t *c, int timeout_ms)
{
    poll_state_t ps = {c, c->delivered};
    uint64_t until = timeout_ms < 0 ? UINT64_MAX : clock_mono_ms() + (uint64_t)timeout_ms;
    if (c->n_pend == 0 && (!c->push_cb || c->fd < 0))
        return c->fd < 0 && (c->conn_failed || c->push_cb) ? MQHUB_ECONN : 0;
    pump(c, until, delivered_some, &ps);
    return (int)(c->delivered - ps.start);
}

static bool none_pending(void *arg)
{
    return ((mqhub_client_t *)arg)->n_pend == 0;
}

int mqhub_client_flush(mqhub_client_t *c, int timeout_ms)
{
    uint64_t until = timeout_ms < 0 ? UINT64_MAX : clock_mono_ms() + (uint64_t)timeout_ms;
    while (c->n_pend > 0 && clock_mono_ms() < until)
        pump(c, until, none_pending, c);
    if (c->n_pend > 0) {
        client_set_errmsg(c, "%zu requests still in flight", c->n_pend);
        return MQHUB_ETIMEOUT;
    }
    return 0;
}
