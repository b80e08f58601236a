/* webhook.c: the webhook delivery plugin (docs/webhook.md): every
 * subscription with an http endpoint gets its messages POSTed to its URL.
 *
 * It is a client of the hub, through one host session of its own (hello with
 * the daemon's root token): every scan_interval scan() lists the http
 * subscriptions of all topics (`subscription.list {endpoint: "http"}`,
 * paged), follows each new one with `subscribe {credit: window}` and
 * unsubscribes the ones that went (follow_t, kept in a hash by topic and
 * name). Only the leader delivers: elsewhere the list answers NOT_LEADER and
 * the scan simply tries again next time, so after a failover the new
 * leader's plugin picks the subscriptions up.
 *
 * Pushed messages arrive in on_push(); deliver() turns each into one POST
 * (JSON or the raw body, headers x-cmq-*) handed to post.c, which runs it on
 * the loop with libcurl. on_posted(): a 2xx acknowledges the message (`ack`,
 * which frees its slot of the window; ack_queue() gathers the POSTs answered
 * in one loop turn into one ack per subscription); anything else leaves it
 * unacknowledged, so the push engine takes it back after the subscription's
 * retry interval and redelivers it (or dead-letters it once its attempts are
 * used up). A message redelivered while its POST still runs is not POSTed a
 * second time (delivery_t per follow).
 *
 * Reach: post.c refuses to connect to an address allow_networks /
 * deny_networks exclude (reach.c); such a POST is a failure like any other
 * (retried, then dead-lettered), counted `refused`, and logged at most every
 * WEBHOOK_REFUSAL_LOG_MS by log_refusal().
 *
 * Extending: a new config key is one line in read_config(); a new body
 * format one branch in build_payload(), a new header one line in
 * delivery_start().
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <msgpack.h>
#include <openssl/evp.h>

#include "hmap.h"
#include "mp.h"
#include "mqhub/plugin.h"
#include "mqhub/protocol.h"
#include "mqhub/version.h"
#include "post.h"
#include "reach.h"

#define WEBHOOK_PAGE MQHUB_LIST_LIMIT_MAX /* subscriptions per list request */
#define WEBHOOK_MAX_RESPONSE (64 << 10)   /* response body bytes read */
#define WEBHOOK_CURL_MIN 0x075500         /* libcurl 7.85.0 */
/* The tags joined, each escaped (at worst 3 bytes per byte), and a header line. */
#define WEBHOOK_TAGS_LEN (MQHUB_TAGS_MAX * (3 * MQHUB_TAG_LEN_MAX + 1) + 1)
#define WEBHOOK_MAX_HEADER (WEBHOOK_TAGS_LEN + 32)
#define WEBHOOK_REFUSAL_LOG_MS 10000 /* ms between two refused-address lines, at least */

typedef struct webhook webhook_t;
typedef struct follow follow_t;

typedef enum { FOLLOW_IDLE, FOLLOW_SUBSCRIBING, FOLLOW_SUBSCRIBED } follow_state_t;

/* One POST in flight (or waiting for a slot in post.c), then, after a 2xx,
 * its ack until applied. */
typedef struct delivery {
    webhook_t *w;
    follow_t *f; /* NULL once the subscription is no longer followed */
    char topic[MQHUB_NAME_MAX + 1], name[MQHUB_NAME_MAX + 1];
    uint64_t seq;
    struct delivery *prev, *next; /* in f->deliveries, or w->orphans */
    struct delivery *ack_next;    /* in w->acks, answered 2xx, ack not sent yet */
} delivery_t;

typedef struct delivery_list {
    delivery_t *head;
} delivery_list_t;

/* One http subscription the plugin follows. */
struct follow {
    char topic[MQHUB_NAME_MAX + 1], name[MQHUB_NAME_MAX + 1];
    char *url;
    bool json;             /* format "json" (else "simplified") */
    follow_state_t state;
    uint64_t seen;         /* the last scan that listed it */
    bool failing;          /* its last POST failed (logged once until it recovers) */
    char last_refusal[32]; /* code of the last refused subscribe (logged once) */
    delivery_list_t deliveries;
    follow_t *prev, *next; /* in w->follows */
};

typedef enum { CALL_HELLO, CALL_LIST, CALL_SUBSCRIBE, CALL_ACK, CALL_OTHER } call_kind_t;

/* One request in flight on the session: freed by its reply, or by
 * session_end() (after session_close no reply comes). */
typedef struct call {
    webhook_t *w;
    call_kind_t kind;
    follow_t *f;      /* CALL_SUBSCRIBE: NULL once unfollowed */
    uint64_t offset;  /* CALL_LIST: the page's first entry */
    delivery_t **acked; /* CALL_ACK: the deliveries, kept until the ack is applied */
    unsigned n_acked;
    struct call *prev, *next;
} call_t;

struct webhook {
    const mqhub_host_api_t *api;
    mqhub_host_t *host;
    uv_loop_t *loop;
    /* config */
    int64_t scan_interval, window, timeout, max_inflight;
    const char *token, *owner;
    reach_t reach;       /* allow_networks / deny_networks */
    /* the host session */
    mqhub_session_t *session;
    bool ready;          /* hello answered ok (or no token needed) */
    bool restart;        /* close and reopen it at the next scan */
    call_t *calls;
    uint64_t next_id;
    /* scanning */
    uv_timer_t scan_timer;
    bool listing;        /* a list request is out */
    uint64_t scan_gen;
    char list_error[32]; /* code of the last failed list (logged once) */
    /* following */
    hmap_t by_key;       /* "topic\0name" -> follow_t */
    hmap_t running;      /* follow_t address + seq -> its delivery_t (in_flight) */
    follow_t *follows;
    delivery_list_t orphans;
    /* posting */
    delivery_t *acks, **acks_tail; /* to acknowledge at the end of this loop turn */
    uv_timer_t ack_timer;
    post_t *post;
    uint64_t started, posts;
    uint64_t refusal_logged_at; /* uv_now of the last refused-address line */
    uint64_t refusals_unlogged; /* refusals since that line */
    bool stopping;
};

static void scan_page(webhook_t *w, uint64_t offset);

/* ------------------------------------------------------------ requests */

static void pack_str_pair(msgpack_packer *pk, const char *k, const char *v)
{
    mp_pack_cstr(pk, k);
    mp_pack_cstr(pk, v);
}

static void pack_head(webhook_t *w, msgpack_packer *pk, unsigned n_fields, const char *op)
{
    msgpack_pack_map(pk, n_fields + 2);
    pack_str_pair(pk, "op", op);
    mp_pack_cstr(pk, "id");
    msgpack_pack_uint64(pk, ++w->next_id);
}

static void on_reply(void *arg, const char *buf, size_t len);

/* Send the packed request @sb on the session; @what says what its reply is
 * for (kind and its member). Returns 0, or -1 (no session, out of memory). */
static int call_send(webhook_t *w, msgpack_sbuffer *sb, call_t what)
{
    call_t *c;

    if (w->session == NULL || (c = malloc(sizeof *c)) == NULL)
        return -1;
    *c = what;
    c->w = w;
    c->prev = NULL;
    c->next = w->calls;
    if (w->calls != NULL)
        w->calls->prev = c;
    w->calls = c;
    w->api->request(w->session, sb->data, sb->size, on_reply, c);
    return 0;
}

static void delivery_drop(webhook_t *w, delivery_t *d);

/* Free @c (unlinked); the deliveries an ack was for are over. */
static void call_free(webhook_t *w, call_t *c)
{
    for (unsigned i = 0; i < c->n_acked; i++)
        delivery_drop(w, c->acked[i]);
    free(c->acked);
    free(c);
}

static void call_unlink(webhook_t *w, call_t *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
}

/* The reply's code ("" when ok) into @code and its sentence into @error. */
static bool reply_ok(const msgpack_object *r, char *code, size_t codelen, char *error,
                     size_t errlen)
{
    const msgpack_object *ok = mp_map_get(r, "ok");
    const msgpack_object *c = mp_map_get(r, "code");
    const msgpack_object *e = mp_map_get(r, "error");

    snprintf(code, codelen, "%.*s", c != NULL && c->type == MSGPACK_OBJECT_STR
             ? (int)c->via.str.size : 0, c != NULL ? c->via.str.ptr : "");
    snprintf(error, errlen, "%.*s", e != NULL && e->type == MSGPACK_OBJECT_STR
             ? (int)e->via.str.size : 0, e != NULL ? e->via.str.ptr : "");
    if (ok != NULL && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean)
        return true;
    if (code[0] == '\0')
        snprintf(code, codelen, "INTERNAL");
    return false;
}

/* The string @o into @out (@size bytes with its NUL): false when @o is not a
 * string of 1 to @size - 1 bytes. */
static bool copy_str(const msgpack_object *o, char *out, size_t size)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 ||
        o->via.str.size >= size)
        return false;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return true;
}

/* ------------------------------------------------------------ the session */

static void follow_reset_all(webhook_t *w)
{
    for (follow_t *f = w->follows; f != NULL; f = f->next)
        f->state = FOLLOW_IDLE;
}

/* Close the session: its pending replies are dropped (so their calls, and
 * the deliveries waiting for an ack, are freed here) and every subscription
 * must be subscribed again. */
static void session_end(webhook_t *w)
{
    while (w->calls != NULL) {
        call_t *c = w->calls;
        call_unlink(w, c);
        call_free(w, c);
    }
    if (w->session != NULL)
        w->api->session_close(w->session);
    w->session = NULL;
    w->ready = false;
    w->listing = false;
    follow_reset_all(w);
}

static void on_push(void *arg, const char *buf, size_t len);

/* Open the session and say hello with the root token (when there is one). */
static void session_begin(webhook_t *w)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    w->session = w->api->session_open(w->host, "webhook", on_push, w);
    if (w->session == NULL)
        return;
    if (w->token == NULL) {
        w->ready = true;
        return;
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_head(w, &pk, 3, "hello");
    mp_pack_cstr(&pk, "version");
    msgpack_pack_uint8(&pk, MQHUB_PROTOCOL_VERSION);
    pack_str_pair(&pk, "client", "webhook");
    pack_str_pair(&pk, "token", w->token);
    if (call_send(w, &sb, (call_t){.kind = CALL_HELLO}) != 0)
        session_end(w);
    msgpack_sbuffer_destroy(&sb);
}

/* ------------------------------------------------------------ following */

static size_t follow_key(char *key, const char *topic, const char *name)
{
    size_t tl = strlen(topic), nl = strlen(name);

    memcpy(key, topic, tl + 1);
    memcpy(key + tl + 1, name, nl);
    return tl + 1 + nl;
}

static follow_t *follow_find(webhook_t *w, const char *topic, const char *name)
{
    char key[2 * MQHUB_NAME_MAX + 2];

    return hmap_get(&w->by_key, key, follow_key(key, topic, name));
}

/* The key of w->running: @f's address and @seq. */
#define RUNNING_KEY_LEN (sizeof(follow_t *) + sizeof(uint64_t))
static size_t running_key(char *key, const follow_t *f, uint64_t seq)
{
    memcpy(key, &f, sizeof f);
    memcpy(key + sizeof f, &seq, sizeof seq);
    return RUNNING_KEY_LEN;
}

/* Start a request {op, id, topic, subscription, ...} about @f with
 * @n_extra more fields for the caller to pack. */
static void pack_sub_request(webhook_t *w, msgpack_packer *pk, const follow_t *f,
                             const char *op, unsigned n_extra)
{
    pack_head(w, pk, 2 + n_extra, op);
    pack_str_pair(pk, "topic", f->topic);
    pack_str_pair(pk, "subscription", f->name);
}

/* subscribe {credit: window}: the hub pushes @f's messages from now on. */
static void follow_subscribe(webhook_t *w, follow_t *f)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_sub_request(w, &pk, f, "subscribe", 1);
    mp_pack_cstr(&pk, "credit");
    msgpack_pack_uint64(&pk, (uint64_t)w->window);
    f->state = FOLLOW_SUBSCRIBING; /* before sending: the reply may come from inside */
    if (call_send(w, &sb, (call_t){.kind = CALL_SUBSCRIBE, .f = f}) != 0)
        f->state = FOLLOW_IDLE;
    msgpack_sbuffer_destroy(&sb);
}

static void follow_unsubscribe(webhook_t *w, follow_t *f)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_sub_request(w, &pk, f, "unsubscribe", 0);
    call_send(w, &sb, (call_t){.kind = CALL_OTHER});
    msgpack_sbuffer_destroy(&sb);
}

/* Stop following @f: unsubscribe, let its POSTs finish as orphans. */
static void follow_remove(webhook_t *w, follow_t *f)
{
    char key[2 * MQHUB_NAME_MAX + 2];

    if (f->state != FOLLOW_IDLE)
        follow_unsubscribe(w, f);
    for (call_t *c = w->calls; c != NULL; c = c->next)
        if (c->f == f)
            c->f = NULL;
    while (f->deliveries.head != NULL) {
        delivery_t *d = f->deliveries.head;
        f->deliveries.head = d->next;
        hmap_del(&w->running, key, running_key(key, f, d->seq));
        d->f = NULL;
        d->prev = NULL;
        d->next = w->orphans.head;
        if (d->next != NULL)
            d->next->prev = d;
        w->orphans.head = d;
    }
    hmap_del(&w->by_key, key, follow_key(key, f->topic, f->name));
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        w->follows = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
    w->api->log(w->host, MQHUB_LOG_INFO, "stopped delivering %s/%s", f->topic, f->name);
    free(f->url);
    free(f);
}

/* One entry of a list page: follow it (new), or update its URL and format. */
static void follow_listed(webhook_t *w, const msgpack_object *e)
{
    char topic[MQHUB_NAME_MAX + 1], name[MQHUB_NAME_MAX + 1], format[16] = "json";
    char url[MQHUB_SUB_URL_MAX + 1], key[2 * MQHUB_NAME_MAX + 2];
    const msgpack_object *ep = mp_map_get(e, "endpoint");
    const msgpack_object *fo = mp_map_get(ep, "format");
    follow_t *f;
    char *u;

    if (!copy_str(mp_map_get(e, "topic"), topic, sizeof topic) ||
        !copy_str(mp_map_get(e, "name"), name, sizeof name) ||
        !copy_str(mp_map_get(ep, "http"), url, sizeof url) ||
        (fo != NULL && !copy_str(fo, format, sizeof format)))
        return;
    f = follow_find(w, topic, name);
    if (f == NULL) {
        if ((f = calloc(1, sizeof *f)) == NULL)
            return;
        memcpy(f->topic, topic, sizeof topic);
        memcpy(f->name, name, sizeof name);
        if (hmap_put(&w->by_key, key, follow_key(key, topic, name), f) != 0) {
            free(f);
            return;
        }
        f->next = w->follows;
        if (w->follows != NULL)
            w->follows->prev = f;
        w->follows = f;
        w->api->log(w->host, MQHUB_LOG_INFO, "delivering %s/%s to %s (%s)", topic, name, url,
                    format);
    }
    if ((f->url == NULL || strcmp(f->url, url) != 0) && (u = strdup(url)) != NULL) {
        free(f->url);
        f->url = u;
    }
    f->json = strcmp(format, "simplified") != 0;
    f->seen = w->scan_gen;
}

/* The scan is complete: unfollow what was not listed, subscribe the rest. */
static void scan_done(webhook_t *w)
{
    follow_t *f = w->follows, *next;

    w->listing = false;
    for (; f != NULL; f = next) {
        next = f->next;
        if (f->seen != w->scan_gen)
            follow_remove(w, f);
        else if (f->state == FOLLOW_IDLE && f->url != NULL)
            follow_subscribe(w, f);
    }
}

static void on_list(webhook_t *w, const msgpack_object *r, uint64_t offset)
{
    char code[32], error[256];
    const msgpack_object *subs = mp_map_get(r, "subscriptions");
    const msgpack_object *total = mp_map_get(r, "total");
    uint32_t n;

    if (!reply_ok(r, code, sizeof code, error, sizeof error)) {
        /* NOT_LEADER on followers and UNAVAILABLE while a new leader applies
         * the config's declarations are normal: logged once per change. */
        bool normal = strcmp(code, "NOT_LEADER") == 0 || strcmp(code, "UNAVAILABLE") == 0;
        if (strcmp(code, w->list_error) != 0)
            w->api->log(w->host, normal ? MQHUB_LOG_DEBUG
                        : MQHUB_LOG_WARN, "subscription.list: %s %s (trying again every "
                        "%" PRId64 " s)", code, error, w->scan_interval);
        snprintf(w->list_error, sizeof w->list_error, "%s", code);
        w->listing = false;
        return;
    }
    w->list_error[0] = '\0';
    if (subs == NULL || subs->type != MSGPACK_OBJECT_ARRAY) {
        w->listing = false;
        return;
    }
    n = subs->via.array.size;
    for (uint32_t i = 0; i < n; i++)
        follow_listed(w, &subs->via.array.ptr[i]);
    if (n > 0 && total != NULL && total->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        offset + n < total->via.u64)
        scan_page(w, offset + n);
    else
        scan_done(w);
}

static void on_subscribed(webhook_t *w, follow_t *f, const msgpack_object *r)
{
    char code[32], error[256];

    if (f == NULL)
        return;
    if (reply_ok(r, code, sizeof code, error, sizeof error)) {
        f->state = FOLLOW_SUBSCRIBED;
        f->last_refusal[0] = '\0';
        return;
    }
    f->state = FOLLOW_IDLE; /* tried again at the next scan */
    if (strcmp(code, f->last_refusal) != 0)
        w->api->log(w->host, MQHUB_LOG_WARN, "subscribe %s/%s: %s %s", f->topic, f->name,
                    code, error);
    snprintf(f->last_refusal, sizeof f->last_refusal, "%s", code);
}

static void on_hello(webhook_t *w, const msgpack_object *r)
{
    char code[32], error[256];

    if (reply_ok(r, code, sizeof code, error, sizeof error)) {
        w->ready = true;
        return;
    }
    w->api->log(w->host, MQHUB_LOG_ERROR, "hello refused: %s %s", code, error);
    w->restart = true;
}

static void on_reply(void *arg, const char *buf, size_t len)
{
    call_t *c = arg;
    webhook_t *w = c->w;
    msgpack_unpacked u;
    const msgpack_object *r = NULL;

    call_unlink(w, c);
    msgpack_unpacked_init(&u);
    if (mp_unpack(&u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP)
        r = &u.data;
    if (r != NULL && !w->stopping) {
        switch (c->kind) {
        case CALL_HELLO:
            on_hello(w, r);
            break;
        case CALL_LIST:
            on_list(w, r, c->offset);
            break;
        case CALL_SUBSCRIBE:
            on_subscribed(w, c->f, r);
            break;
        case CALL_ACK:
        case CALL_OTHER:
            break;
        }
    }
    msgpack_unpacked_destroy(&u);
    call_free(w, c); /* an ack applied (or refused): redeliveries are new POSTs */
    /* A session the host could not read from is out of sync: start over
     * (at the next scan, not from inside the host's callback). */
    if (w->session != NULL && MQHUB_HOST_HAS(w->api, session_broken) &&
        w->api->session_broken(w->session))
        w->restart = true;
}

/* ------------------------------------------------------------ scanning */

static void scan_page(webhook_t *w, uint64_t offset)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_head(w, &pk, 3, "subscription.list");
    pack_str_pair(&pk, "endpoint", "http");
    mp_pack_cstr(&pk, "offset");
    msgpack_pack_uint64(&pk, offset);
    mp_pack_cstr(&pk, "limit");
    msgpack_pack_uint32(&pk, WEBHOOK_PAGE);
    w->listing = true; /* before sending: the reply may come from inside request() */
    if (call_send(w, &sb, (call_t){.kind = CALL_LIST, .offset = offset}) != 0)
        w->listing = false;
    msgpack_sbuffer_destroy(&sb);
}

static void scan(uv_timer_t *t)
{
    webhook_t *w = t->data;

    if (w->restart) {
        w->restart = false;
        session_end(w);
    }
    if (w->session == NULL)
        session_begin(w);
    if (!w->ready || w->listing)
        return;
    w->scan_gen++;
    scan_page(w, 0);
}

/* ------------------------------------------------------------ delivering */

/* Forget @d (its POST is over and, after a 2xx, its ack applied). */
static void delivery_drop(webhook_t *w, delivery_t *d)
{
    delivery_list_t *l = d->f != NULL ? &d->f->deliveries : &w->orphans;
    char key[RUNNING_KEY_LEN];

    if (d->f != NULL)
        hmap_del(&w->running, key, running_key(key, d->f, d->seq));
    if (d->prev != NULL)
        d->prev->next = d->next;
    else
        l->head = d->next;
    if (d->next != NULL)
        d->next->prev = d->prev;
    free(d);
}

/* Send one ack for the queued deliveries of @d's subscription (@d first, at
 * most MQHUB_BATCH_MAX), taking them off w->acks. They stay listed until the
 * ack's reply, so that a redelivery pushed before the ack is applied is not
 * POSTed again. Without a session they are dropped: delivered again later. */
static void ack_send(webhook_t *w, delivery_t *d)
{
    delivery_t **batch = malloc(MQHUB_BATCH_MAX * sizeof *batch), **pp;
    unsigned n = 0;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    for (pp = &w->acks; *pp != NULL && n < MQHUB_BATCH_MAX;) {
        delivery_t *x = *pp;
        if (strcmp(x->topic, d->topic) != 0 || strcmp(x->name, d->name) != 0) {
            pp = &x->ack_next;
            continue;
        }
        *pp = x->ack_next;
        if (batch == NULL) {
            delivery_drop(w, x);
            continue;
        }
        batch[n++] = x;
    }
    w->acks_tail = &w->acks;
    while (*w->acks_tail != NULL)
        w->acks_tail = &(*w->acks_tail)->ack_next;
    if (n == 0) {
        free(batch);
        return;
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_head(w, &pk, 3, "ack");
    pack_str_pair(&pk, "topic", batch[0]->topic);
    pack_str_pair(&pk, "subscription", batch[0]->name);
    mp_pack_cstr(&pk, "seqs");
    msgpack_pack_array(&pk, n);
    for (unsigned i = 0; i < n; i++)
        msgpack_pack_uint64(&pk, batch[i]->seq);
    if (call_send(w, &sb, (call_t){.kind = CALL_ACK, .acked = batch, .n_acked = n}) != 0) {
        for (unsigned i = 0; i < n; i++)
            delivery_drop(w, batch[i]);
        free(batch);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* The end of the loop turn in which POSTs were answered: one ack per
 * subscription for all of them. */
static void on_ack_timer(uv_timer_t *t)
{
    webhook_t *w = t->data;

    while (w->acks != NULL)
        ack_send(w, w->acks);
}

/* Acknowledge @d's message (answered 2xx) at the end of this loop turn. */
static void ack_queue(webhook_t *w, delivery_t *d)
{
    d->ack_next = NULL;
    *w->acks_tail = d;
    w->acks_tail = &d->ack_next;
    if (!uv_is_active((uv_handle_t *)&w->ack_timer))
        uv_timer_start(&w->ack_timer, on_ack_timer, 0, 0);
}

/* A POST refused by reach: one line per WEBHOOK_REFUSAL_LOG_MS at most
 * (a subscription URL is chosen by whoever has `manage` on the topic, so the
 * log must not be theirs to flood). */
static void log_refusal(webhook_t *w, const delivery_t *d, const char *error)
{
    uint64_t now = uv_now(w->loop);

    if (w->refusal_logged_at != 0 && now - w->refusal_logged_at < WEBHOOK_REFUSAL_LOG_MS) {
        w->refusals_unlogged++;
        return;
    }
    w->api->log(w->host, MQHUB_LOG_WARN, "%s/%s: POST %s not sent: %s (seq %" PRIu64
                "; %" PRIu64 " more refusals not logged; retried per the subscription's "
                "retry policy)", d->topic, d->name, d->f != NULL ? d->f->url : "?", error,
                d->seq, w->refusals_unlogged);
    w->refusal_logged_at = now != 0 ? now : 1;
    w->refusals_unlogged = 0;
}

static void on_posted(void *arg, long status, const char *error, bool refused)
{
    delivery_t *d = arg;
    webhook_t *w = d->w;
    follow_t *f = d->f;

    if (status >= 200 && status <= 299 && error[0] == '\0') {
        w->api->metric_add(w->host, "delivered", 1);
        if (f != NULL && f->failing) {
            f->failing = false;
            w->api->log(w->host, MQHUB_LOG_INFO, "%s/%s: %s answers again", d->topic,
                        d->name, f->url);
        }
        ack_queue(w, d);
    } else if (refused) {
        w->api->metric_add(w->host, "failed", 1);
        w->api->metric_add(w->host, "refused", 1);
        log_refusal(w, d, error);
        if (f != NULL)
            f->failing = true;
        delivery_drop(w, d);
    } else {
        w->api->metric_add(w->host, "failed", 1);
        if (f != NULL && !f->failing) {
            f->failing = true;
            if (error[0] != '\0')
                w->api->log(w->host, MQHUB_LOG_WARN, "%s/%s: POST %s failed: %s (seq %"
                            PRIu64 "; retried per the subscription's retry policy)",
                            d->topic, d->name, f->url, error, d->seq);
            else
                w->api->log(w->host, MQHUB_LOG_WARN, "%s/%s: POST %s answered HTTP %ld (seq %"
                            PRIu64 "; retried per the subscription's retry policy)",
                            d->topic, d->name, f->url, status, d->seq);
        }
        delivery_drop(w, d);
    }
}

/* @s[0..@n) into @out as a header value: bytes that could end or split the
 * header (control characters, and ',' '%' of the list syntax) as %XX. */
static void header_escape(char *out, size_t size, const char *s, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n && o + 4 <= size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == ',' || ch == '%')
            o += (size_t)snprintf(out + o, size - o, "%%%02X", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = '\0';
}

/* The JSON body of @msg (CMQ's push format), or NULL when out of memory.
 * A body that is not UTF-8 is sent base64-encoded with msgBodyEncoding. */
static char *json_payload(webhook_t *w, const follow_t *f, const char *msg_id,
                          const char *body, size_t len, uint64_t published_at)
{
    json_t *o = json_object(), *b = json_stringn(body, len);
    char *out = NULL, *b64 = NULL;

    if (b == NULL && (b64 = malloc(4 * ((len + 2) / 3) + 1)) != NULL) {
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)body, (int)len);
        b = json_string(b64);
        json_object_set_new(o, "msgBodyEncoding", json_string("base64"));
    }
    if (o != NULL && b != NULL) {
        json_object_set_new(o, "TopicOwner", json_string(w->owner));
        json_object_set_new(o, "topicName", json_string(f->topic));
        json_object_set_new(o, "subscriptionName", json_string(f->name));
        json_object_set_new(o, "msgId", json_string(msg_id));
        json_object_set(o, "msgBody", b);
        json_object_set_new(o, "publishTime", json_integer((json_int_t)(published_at / 1000)));
        out = json_dumps(o, JSON_COMPACT);
    }
    json_decref(b);
    json_decref(o);
    free(b64);
    return out;
}

/* The tags array @tags comma-joined into @out ("" when none). */
static void join_tags(const msgpack_object *tags, char *out, size_t size)
{
    size_t o = 0;

    out[0] = '\0';
    if (tags == NULL || tags->type != MSGPACK_OBJECT_ARRAY)
        return;
    for (uint32_t i = 0; i < tags->via.array.size && o + 2 < size; i++) {
        const msgpack_object *t = &tags->via.array.ptr[i];
        if (t->type != MSGPACK_OBJECT_STR)
            continue;
        if (o > 0)
            out[o++] = ',';
        header_escape(out + o, size - o, t->via.str.ptr, t->via.str.size);
        o += strlen(out + o);
    }
}

static bool in_flight(webhook_t *w, const follow_t *f, uint64_t seq)
{
    char key[RUNNING_KEY_LEN];

    return hmap_get(&w->running, key, running_key(key, f, seq)) != NULL;
}

/* One pushed message, read from its map (@body points into the push). */
typedef struct message {
    uint64_t seq, attempt, published_at;
    const char *body;
    size_t len;
    char msg_id[96];              /* escaped for a header */
    char tags[WEBHOOK_TAGS_LEN];  /* comma-joined, escaped; "" when none */
} message_t;

static uint64_t map_uint(const msgpack_object *m, const char *key)
{
    const msgpack_object *o = mp_map_get(m, key);

    return o != NULL && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

/* @m into @msg: false when it has no seq. */
static bool message_read(const msgpack_object *m, message_t *msg)
{
    const msgpack_object *id = mp_map_get(m, "msg_id"), *body = mp_map_get(m, "body");

    msg->seq = map_uint(m, "seq");
    msg->attempt = map_uint(m, "attempt");
    msg->published_at = map_uint(m, "published_at");
    msg->body = "";
    msg->len = 0;
    if (body != NULL && body->type == MSGPACK_OBJECT_BIN) {
        msg->body = body->via.bin.ptr;
        msg->len = body->via.bin.size;
    } else if (body != NULL && body->type == MSGPACK_OBJECT_STR) {
        msg->body = body->via.str.ptr;
        msg->len = body->via.str.size;
    }
    msg->msg_id[0] = '\0';
    if (id != NULL && id->type == MSGPACK_OBJECT_STR)
        header_escape(msg->msg_id, sizeof msg->msg_id, id->via.str.ptr, id->via.str.size);
    join_tags(mp_map_get(m, "tags"), msg->tags, sizeof msg->tags);
    return mp_map_get(m, "seq") != NULL && msg->seq > 0;
}

/* The body to POST for @msg in @f's format: *@json (allocated, the caller
 * frees it) for json, else NULL and the message body itself. -1 when out of
 * memory. */
static int build_payload(webhook_t *w, const follow_t *f, const message_t *msg, char **json,
                         const char **data, size_t *len)
{
    *json = NULL;
    *data = msg->body;
    *len = msg->len;
    if (!f->json)
        return 0;
    if ((*json = json_payload(w, f, msg->msg_id, msg->body, msg->len, msg->published_at)) ==
        NULL)
        return -1;
    *data = *json;
    *len = strlen(*json);
    return 0;
}

/* Start the POST of @data for @msg of @f, listed in f->deliveries. */
static void delivery_start(webhook_t *w, follow_t *f, const message_t *msg, const char *data,
                           size_t len)
{
    char h_req[64], h_msg[WEBHOOK_MAX_HEADER], h_tag[WEBHOOK_MAX_HEADER], key[RUNNING_KEY_LEN];
    const char *headers[3] = {h_req, h_msg, h_tag};
    delivery_t *d = calloc(1, sizeof *d);

    if (d == NULL)
        return; /* redelivered after the retry interval */
    *d = (delivery_t){.w = w, .f = f, .seq = msg->seq, .next = f->deliveries.head};
    memcpy(d->topic, f->topic, sizeof d->topic);
    memcpy(d->name, f->name, sizeof d->name);
    snprintf(h_req, sizeof h_req, "x-cmq-request-id: %" PRIx64 "-%" PRIu64, w->started,
             ++w->posts);
    snprintf(h_msg, sizeof h_msg, "x-cmq-message-id: %s", msg->msg_id);
    snprintf(h_tag, sizeof h_tag, "x-cmq-message-tag: %s", msg->tags);
    if (hmap_put(&w->running, key, running_key(key, f, d->seq), d) != 0) {
        free(d);
        return;
    }
    if (post_submit(w->post, f->url, f->json ? "application/json" : "text/plain", data, len,
                    headers, msg->tags[0] != '\0' ? 3 : 2, on_posted, d) != 0) {
        hmap_del(&w->running, key, running_key(key, f, d->seq));
        free(d);
        w->api->metric_add(w->host, "failed", 1);
        if (!f->failing)
            w->api->log(w->host, MQHUB_LOG_WARN, "%s/%s: could not start a POST to %s (out "
                        "of memory); retried per the subscription's retry policy", f->topic,
                        f->name, f->url);
        f->failing = true;
        return;
    }
    if (d->next != NULL)
        d->next->prev = d;
    f->deliveries.head = d;
}

/* POST one pushed message @m of @f, unless its POST (or ack) is running. */
static void deliver(webhook_t *w, follow_t *f, const msgpack_object *m)
{
    message_t msg;
    const char *data;
    size_t len;
    char *json;

    if (!message_read(m, &msg) || in_flight(w, f, msg.seq))
        return;
    if (msg.attempt > 1)
        w->api->metric_add(w->host, "retried", 1);
    if (build_payload(w, f, &msg, &json, &data, &len) != 0)
        return; /* out of memory: redelivered after the retry interval */
    delivery_start(w, f, &msg, data, len);
    free(json);
}

static void on_messages(webhook_t *w, const msgpack_object *p)
{
    char topic[MQHUB_NAME_MAX + 1], name[MQHUB_NAME_MAX + 1];
    const msgpack_object *msgs = mp_map_get(p, "msgs");
    follow_t *f;

    if (!copy_str(mp_map_get(p, "topic"), topic, sizeof topic) ||
        !copy_str(mp_map_get(p, "subscription"), name, sizeof name) ||
        (f = follow_find(w, topic, name)) == NULL || f->url == NULL || msgs == NULL ||
        msgs->type != MSGPACK_OBJECT_ARRAY)
        return;
    for (uint32_t i = 0; i < msgs->via.array.size; i++)
        deliver(w, f, &msgs->via.array.ptr[i]);
}

/* {"push": "closed"}: subscribed again at the next scan (on the leader). */
static void on_closed(webhook_t *w, const msgpack_object *p)
{
    char topic[MQHUB_NAME_MAX + 1], name[MQHUB_NAME_MAX + 1], code[32], error[256];
    follow_t *f;

    if (!copy_str(mp_map_get(p, "topic"), topic, sizeof topic) ||
        !copy_str(mp_map_get(p, "subscription"), name, sizeof name) ||
        (f = follow_find(w, topic, name)) == NULL)
        return;
    reply_ok(p, code, sizeof code, error, sizeof error);
    f->state = FOLLOW_IDLE;
    /* A lost leadership closes every subscription at once: not worth a line each. */
    w->api->log(w->host, strcmp(code, "NOT_LEADER") == 0 || strcmp(code, "UNAVAILABLE") == 0
                ? MQHUB_LOG_DEBUG : MQHUB_LOG_INFO, "%s/%s closed by the server: %s %s",
                topic, name, code, error);
}

static void on_push(void *arg, const char *buf, size_t len)
{
    webhook_t *w = arg;
    msgpack_unpacked u;
    const msgpack_object *kind;

    if (w->stopping)
        return;
    msgpack_unpacked_init(&u);
    if (mp_unpack(&u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP && (kind = mp_map_get(&u.data, "push")) != NULL &&
        kind->type == MSGPACK_OBJECT_STR) {
        if (kind->via.str.size == 8 && memcmp(kind->via.str.ptr, "messages", 8) == 0)
            on_messages(w, &u.data);
        else if (kind->via.str.size == 6 && memcmp(kind->via.str.ptr, "closed", 6) == 0)
            on_closed(w, &u.data);
    }
    msgpack_unpacked_destroy(&u);
}

/* ------------------------------------------------------------ plugin */

static int config_int(webhook_t *w, const char *key, int64_t def, int64_t lo, int64_t hi,
                      int64_t *out, char *errmsg, size_t errlen)
{
    if (w->api->config_int(w->host, key, def, out) != 0 || *out < lo || *out > hi) {
        snprintf(errmsg, errlen, "%s must be an integer from %" PRId64 " to %" PRId64, key, lo,
                 hi);
        return -1;
    }
    return 0;
}

/* @key, when present, must be a string: a reach setting given as a number
 * or a table must stop the daemon, not be taken as absent. (config_string
 * answers NULL for both; config_int tells them apart: it keeps the default
 * only when the key is absent.) */
static int config_networks(webhook_t *w, const char *key, char *errmsg, size_t errlen)
{
    int64_t v = INT64_MIN;

    if (w->api->config_string(w->host, key) != NULL ||
        (w->api->config_int(w->host, key, INT64_MIN, &v) == 0 && v == INT64_MIN))
        return 0;
    snprintf(errmsg, errlen, "%s must be a string of comma-separated CIDR blocks", key);
    return -1;
}

static int read_config(webhook_t *w, char *errmsg, size_t errlen)
{
    const mqhub_host_api_t *api = w->api;

    if (config_int(w, "scan_interval", 1, 1, 3600, &w->scan_interval, errmsg, errlen) ||
        config_int(w, "window", 16, 1, 65536, &w->window, errmsg, errlen) ||
        config_int(w, "timeout", 15, 1, 3600, &w->timeout, errmsg, errlen) ||
        config_int(w, "max_inflight", 256, 1, 65536, &w->max_inflight, errmsg, errlen))
        return -1;
    w->owner = api->config_string(w->host, "topic_owner");
    if (w->owner == NULL)
        w->owner = "";
    if (MQHUB_HOST_HAS(api, auth_token))
        w->token = api->auth_token(w->host);
    if (config_networks(w, "allow_networks", errmsg, errlen) != 0 ||
        config_networks(w, "deny_networks", errmsg, errlen) != 0)
        return -1;
    return reach_parse(&w->reach, api->config_string(w->host, "allow_networks"),
                       api->config_string(w->host, "deny_networks"), errmsg, errlen);
}

/* deny_networks as it applies, for the start line. */
static const char *config_deny(const mqhub_host_api_t *api, mqhub_host_t *host)
{
    const char *deny = api->config_string(host, "deny_networks");

    return deny == NULL ? REACH_DEFAULT_DENY " (default)" : deny[0] == '\0' ? "\"\"" : deny;
}

static void webhook_free(webhook_t *w)
{
    hmap_free(&w->by_key);
    hmap_free(&w->running);
    post_free(w->post);
    reach_free(&w->reach);
    free(w);
}

/* Every counter of this plugin, exported at 0 from the start (a Prometheus
 * series that appears only at its first event hides rate() and alerts). */
static void counters_declare(const mqhub_host_api_t *api, mqhub_host_t *host)
{
    static const char *const names[] = {
        "delivered", "failed", "refused", "retried"};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        api->metric_add(host, names[i], 0);
}

static int webhook_init(const mqhub_host_api_t *api, mqhub_host_t *host, void **state,
                        char *errmsg, size_t errlen)
{
    webhook_t *w = calloc(1, sizeof *w);
    post_config_t pc = {.max_response = WEBHOOK_MAX_RESPONSE,
                        .user_agent = "mqhub-webhook/" MQHUB_VERSION_STRING};

    counters_declare(api, host);
    if (w == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    w->api = api;
    w->host = host;
    w->loop = api->loop(host);
    w->started = (uint64_t)time(NULL);
    w->acks_tail = &w->acks;
    hmap_init(&w->by_key);
    hmap_init(&w->running);
    if (read_config(w, errmsg, errlen) != 0) {
        webhook_free(w);
        return -1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(errmsg, errlen, "libcurl initialisation failed");
        webhook_free(w);
        return -1;
    }
    /* CURLOPT_PROTOCOLS_STR (7.85) is how only http and https are allowed. */
    if (curl_version_info(CURLVERSION_NOW)->version_num < WEBHOOK_CURL_MIN) {
        snprintf(errmsg, errlen, "libcurl %s is too old: 7.85.0 or later is needed",
                 curl_version_info(CURLVERSION_NOW)->version);
        curl_global_cleanup();
        webhook_free(w);
        return -1;
    }
    pc.max_inflight = (unsigned)w->max_inflight;
    pc.reach = &w->reach;
    pc.timeout_ms = (long)w->timeout * 1000;
    pc.proxy = api->config_string(host, "proxy");
    pc.ca_file = api->config_string(host, "ca_file");
    if (pc.ca_file != NULL && access(pc.ca_file, R_OK) != 0) {
        snprintf(errmsg, errlen, "ca_file %s: %s", pc.ca_file, strerror(errno));
        curl_global_cleanup();
        webhook_free(w);
        return -1;
    }
    if (post_open(&w->post, w->loop, &pc, errmsg, errlen) != 0) {
        curl_global_cleanup();
        webhook_free(w);
        return -1;
    }
    uv_timer_init(w->loop, &w->scan_timer);
    uv_timer_init(w->loop, &w->ack_timer);
    w->scan_timer.data = w->ack_timer.data = w;
    uv_timer_start(&w->scan_timer, scan, 0, (uint64_t)w->scan_interval * 1000);
    api->log(host, MQHUB_LOG_INFO, "webhook delivery: scan every %" PRId64 " s, window %"
             PRId64 ", timeout %" PRId64 " s, at most %" PRId64 " POSTs at once%s%s%s%s; "
             "allow_networks %s, deny_networks %s", w->scan_interval, w->window, w->timeout,
             w->max_inflight, pc.proxy != NULL ? ", proxy " : "", pc.proxy != NULL ? pc.proxy
             : "", pc.ca_file != NULL ? ", CAs from " : "", pc.ca_file != NULL ? pc.ca_file : "",
             w->reach.has_allow ? api->config_string(host, "allow_networks")
             : "not set (every address)", config_deny(api, host));
    *state = w;
    return 0;
}

static void deliveries_free(delivery_list_t *l)
{
    while (l->head != NULL) {
        delivery_t *d = l->head;
        l->head = d->next;
        free(d);
    }
}

static void webhook_stop(void *state)
{
    webhook_t *w = state;

    w->stopping = true;
    uv_close((uv_handle_t *)&w->scan_timer, NULL);
    uv_close((uv_handle_t *)&w->ack_timer, NULL);
    w->acks = NULL;      /* not sent: freed with the lists below */
    session_end(w);      /* frees the deliveries waiting for their ack */
    post_close(w->post); /* no on_posted from now on: the rest are ours */
    deliveries_free(&w->orphans);
    while (w->follows != NULL) {
        follow_t *f = w->follows;
        w->follows = f->next;
        deliveries_free(&f->deliveries);
        free(f->url);
        free(f);
    }
}

static void webhook_fini(void *state)
{
    webhook_free(state);
    curl_global_cleanup();
}

static const mqhub_plugin_t webhook_plugin = {
    .abi_version = MQHUB_PLUGIN_ABI,
    .size = sizeof(mqhub_plugin_t),
    .name = "webhook",
    .init = webhook_init,
    .stop = webhook_stop,
    .fini = webhook_fini,
};

MQHUB_PLUGIN_EXPORT const mqhub_plugin_t *mqhub_plugin_entry(void)
{
    return &webhook_plugin;
}
