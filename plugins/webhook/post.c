/* post.c: HTTP POSTs with libcurl's multi interface driven by the daemon's
 * libuv loop (post.h). The webhook plugin hands it one request per message;
 * it runs at most max_inflight of them at once and queues the rest in order.
 *
 * Start with post_submit() (builds the easy handle, queues it) and pump()
 * (moves queued transfers into the multi handle while there is room). curl
 * tells us what to watch through on_socket() (one uv_poll per socket,
 * sock_t) and on_timer_set() (one uv_timer); their callbacks call
 * curl_multi_socket_action(), then reap() hands every finished transfer to
 * its callback. Nothing blocks and no thread of ours runs (curl's resolver
 * may use its own for host names).
 *
 * Safety: only http and https are allowed, redirects are not followed, no
 * proxy is taken from the environment, a response body is read up to
 * max_response bytes and then the transfer is cut (its status still
 * counts), and every transfer ends within timeout_ms. Every socket curl
 * opens goes through on_open_socket(), which refuses an address that
 * cfg.reach does not allow: the check is on the address actually connected
 * to, after name resolution, so DNS answers that change between a check and
 * the connect (rebinding) cannot get past it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "post.h"

typedef struct xfer xfer_t;

struct xfer {
    post_t *p;
    CURL *easy;
    struct curl_slist *headers;
    char *url, *body;
    size_t len, got; /* request body; response bytes read */
    bool capped;     /* the response body went past max_response */
    char refused[INET6_ADDRSTRLEN]; /* the last address reach refused ("" none) */
    char errbuf[CURL_ERROR_SIZE];
    post_done_cb done;
    void *arg;
    xfer_t *prev, *next; /* in p->running or p->waiting */
};

/* One socket curl asked us to watch. Freed in its close callback. */
typedef struct sock {
    uv_poll_t poll;
    post_t *p;
    curl_socket_t fd;
    bool closing;
    struct sock *prev, *next;
} sock_t;

typedef struct xfer_list {
    xfer_t *head, *tail;
    unsigned n;
} xfer_list_t;

struct post {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    post_config_t cfg; /* strings owned */
    xfer_list_t running, waiting;
    xfer_list_t refused; /* curl_multi_add_handle failed: reported by kick */
    uv_timer_t kick;
    sock_t *socks;
    bool closed;
};

/* ------------------------------------------------------------ lists */

static void list_push(xfer_list_t *l, xfer_t *x)
{
    x->prev = l->tail;
    x->next = NULL;
    if (l->tail != NULL)
        l->tail->next = x;
    else
        l->head = x;
    l->tail = x;
    l->n++;
}

static void list_remove(xfer_list_t *l, xfer_t *x)
{
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        l->head = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    else
        l->tail = x->prev;
    l->n--;
}

static void xfer_free(xfer_t *x)
{
    if (x->easy != NULL)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->url);
    free(x->body);
    free(x);
}

/* Free every transfer of @l without calling back. */
static void list_drop(xfer_list_t *l)
{
    while (l->head != NULL) {
        xfer_t *x = l->head;
        list_remove(l, x);
        xfer_free(x);
    }
}

/* ------------------------------------------------------------ curl's callbacks */

/* Response bodies are counted, never kept; past max_response the transfer
 * is cut (returning less than given makes curl stop with CURLE_WRITE_ERROR). */
static size_t on_write(char *data, size_t size, size_t n, void *arg)
{
    xfer_t *x = arg;
    size_t len = size * n;

    (void)data;
    if (x->got + len > x->p->cfg.max_response) {
        x->capped = true;
        return 0;
    }
    x->got += len;
    return len;
}

static void pump(post_t *p);

/* Every finished transfer to its callback, then queued ones into the room. */
static void reap(post_t *p)
{
    CURLMsg *m;
    int left;

    while (!p->closed && p->refused.head != NULL) {
        xfer_t *x = p->refused.head;
        list_remove(&p->refused, x);
        x->done(x->arg, 0, x->errbuf, false);
        xfer_free(x);
    }
    while (!p->closed && (m = curl_multi_info_read(p->multi, &left)) != NULL) {
        xfer_t *x = NULL;
        long status = 0;
        const char *error = "";
        bool refused;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        refused = m->data.result == CURLE_COULDNT_CONNECT && x->refused[0] != '\0';
        if (refused)
            snprintf(x->errbuf, sizeof x->errbuf, "address %s refused by "
                     "allow_networks/deny_networks", x->refused);
        if (m->data.result != CURLE_OK &&
            !(m->data.result == CURLE_WRITE_ERROR && x->capped && status != 0))
            error = x->errbuf[0] != '\0' ? x->errbuf : curl_easy_strerror(m->data.result);
        curl_multi_remove_handle(p->multi, x->easy);
        list_remove(&p->running, x);
        x->done(x->arg, status, error, refused);
        xfer_free(x);
    }
    pump(p);
}

static void on_sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sock_close(sock_t *k)
{
    post_t *p = k->p;

    if (k->closing)
        return;
    k->closing = true;
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        p->socks = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_t *k = h->data;
    post_t *p = k->p;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    /* May call on_socket(REMOVE) for this very socket: @k is not used after. */
    curl_multi_socket_action(p->multi, k->fd, flags, &running);
    reap(p);
}

/* CURLMOPT_SOCKETFUNCTION: watch @fd for what curl wants, or stop. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    post_t *p = userp;
    sock_t *k = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (k != NULL) {
            curl_multi_assign(p->multi, fd, NULL);
            sock_close(k);
        }
        return 0;
    }
    if (k == NULL) {
        if ((k = calloc(1, sizeof *k)) == NULL)
            return -1;
        if (uv_poll_init_socket(p->loop, &k->poll, fd) != 0) {
            free(k);
            return -1;
        }
        k->poll.data = k;
        k->p = p;
        k->fd = fd;
        k->next = p->socks;
        if (p->socks != NULL)
            p->socks->prev = k;
        p->socks = k;
        curl_multi_assign(p->multi, fd, k);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&k->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_timer(uv_timer_t *t)
{
    post_t *p = t->data;
    int running;

    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    reap(p);
}

/* CURLMOPT_TIMERFUNCTION: curl wants to be called in @ms (-1: never). */
static int on_timer_set(CURLM *multi, long ms, void *userp)
{
    post_t *p = userp;

    (void)multi;
    if (ms < 0)
        uv_timer_stop(&p->timer);
    else
        uv_timer_start(&p->timer, on_timer, (uint64_t)ms, 0);
    return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: the socket for one connect to @a, unless
 * reach refuses its address (then CURL_SOCKET_BAD: curl tries the name's
 * next address, or fails with CURLE_COULDNT_CONNECT). */
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    xfer_t *x = arg;
    const struct sockaddr *sa = &a->addr;

    if (purpose != CURLSOCKTYPE_IPCXN || !reach_allowed(x->p->cfg.reach, sa)) {
        const void *in = sa->sa_family == AF_INET6
            ? (const void *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr
            : (const void *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
            snprintf(x->refused, sizeof x->refused, "of family %d", sa->sa_family);
        else
            inet_ntop(sa->sa_family, in, x->refused, sizeof x->refused);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* ------------------------------------------------------------ requests */

static void on_kick(uv_timer_t *t)
{
    reap(t->data);
}

/* Move waiting transfers into the multi handle while fewer than
 * max_inflight run. */
static void pump(post_t *p)
{
    while (!p->closed && p->waiting.head != NULL && p->running.n < p->cfg.max_inflight) {
        xfer_t *x = p->waiting.head;

        list_remove(&p->waiting, x);
        list_push(&p->running, x);
        if (curl_multi_add_handle(p->multi, x->easy) != CURLM_OK) {
            /* Reported like a failed transfer, from the loop (never from
             * inside post_submit). */
            list_remove(&p->running, x);
            snprintf(x->errbuf, sizeof x->errbuf, "curl_multi_add_handle failed");
            list_push(&p->refused, x);
            uv_timer_start(&p->kick, on_kick, 0, 0);
        }
    }
}

static int easy_setup(post_t *p, xfer_t *x)
{
    CURL *e = x->easy;
    CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                                      \
    do {                                                                                   \
        if (rc == CURLE_OK)                                                                \
            rc = curl_easy_setopt(e, opt, val);                                            \
    } while (0)
    SET(CURLOPT_URL, x->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PROXY, p->cfg.proxy != NULL ? p->cfg.proxy : "");
    if (p->cfg.ca_file != NULL)
        SET(CURLOPT_CAINFO, p->cfg.ca_file);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, p->cfg.timeout_ms);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, x->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->len);
    SET(CURLOPT_HTTPHEADER, x->headers);
    SET(CURLOPT_USERAGENT, p->cfg.user_agent);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, x);
#undef SET
    return rc == CURLE_OK ? 0 : -1;
}

int post_submit(post_t *p, const char *url, const char *content_type, const char *body,
                size_t len, const char *const *headers, unsigned n_headers, post_done_cb done,
                void *arg)
{
    xfer_t *x;
    char ct[160];
    struct curl_slist *l;

    if (p->closed || (x = calloc(1, sizeof *x)) == NULL)
        return -1;
    x->p = p;
    x->done = done;
    x->arg = arg;
    x->len = len;
    x->url = strdup(url);
    x->body = malloc(len + 1);
    x->easy = curl_easy_init();
    if (x->url == NULL || x->body == NULL || x->easy == NULL)
        goto fail;
    memcpy(x->body, body, len);
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    /* No "Expect: 100-continue" round trip before larger bodies. */
    const char *fixed[] = {ct, "Expect:"};
    for (unsigned i = 0; i < 2 + n_headers; i++) {
        l = curl_slist_append(x->headers, i < 2 ? fixed[i] : headers[i - 2]);
        if (l == NULL)
            goto fail;
        x->headers = l;
    }
    if (easy_setup(p, x) != 0)
        goto fail;
    list_push(&p->waiting, x);
    pump(p);
    return 0;
fail:
    xfer_free(x);
    return -1;
}

/* ------------------------------------------------------------ life cycle */

static void config_free(post_config_t *c)
{
    free((char *)c->proxy);
    free((char *)c->ca_file);
    free((char *)c->user_agent);
}

int post_open(post_t **out, uv_loop_t *loop, const post_config_t *cfg, char *errmsg,
              size_t errlen)
{
    post_t *p = calloc(1, sizeof *p);

    if (p == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    p->loop = loop;
    p->cfg = *cfg;
    p->cfg.proxy = cfg->proxy != NULL ? strdup(cfg->proxy) : NULL;
    p->cfg.ca_file = cfg->ca_file != NULL ? strdup(cfg->ca_file) : NULL;
    p->cfg.user_agent = strdup(cfg->user_agent != NULL ? cfg->user_agent : "mqhub");
    p->multi = curl_multi_init();
    if (p->multi == NULL || p->cfg.user_agent == NULL ||
        (cfg->proxy != NULL && p->cfg.proxy == NULL) ||
        (cfg->ca_file != NULL && p->cfg.ca_file == NULL)) {
        snprintf(errmsg, errlen, "libcurl: out of memory");
        goto fail;
    }
    if (curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p) != CURLM_OK ||
        curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, on_timer_set) != CURLM_OK ||
        curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p) != CURLM_OK) {
        snprintf(errmsg, errlen, "libcurl: multi interface set-up failed");
        goto fail;
    }
    uv_timer_init(loop, &p->timer);
    uv_timer_init(loop, &p->kick);
    p->timer.data = p->kick.data = p;
    *out = p;
    return 0;
fail:
    if (p->multi != NULL)
        curl_multi_cleanup(p->multi);
    config_free(&p->cfg);
    free(p);
    return -1;
}

void post_close(post_t *p)
{
    if (p->closed)
        return;
    p->closed = true;
    while (p->running.head != NULL) {
        xfer_t *x = p->running.head;
        list_remove(&p->running, x);
        curl_multi_remove_handle(p->multi, x->easy);
        xfer_free(x);
    }
    list_drop(&p->waiting);
    list_drop(&p->refused);
    /* curl closes its cached connections without telling us any more. */
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, NULL);
    while (p->socks != NULL)
        sock_close(p->socks);
    curl_multi_cleanup(p->multi);
    p->multi = NULL;
    uv_close((uv_handle_t *)&p->timer, NULL);
    uv_close((uv_handle_t *)&p->kick, NULL);
}

void post_free(post_t *p)
{
    if (p == NULL)
        return;
    config_free(&p->cfg);
    free(p);
}
