/* peer_rabbit.c: the side-by-side driver for RabbitMQ (librabbitmq, AMQP 0-9-1).
 *
 * setup() declares a durable quorum queue (x-queue-type quorum, its replicas
 * on --nodes nodes: x-quorum-initial-group-size) through --url, the node
 * that then leads it; every worker connects there too. Producers put the
 * channel in confirm mode and publish persistent messages with at most
 * --window unconfirmed; a send counts when its basic.ack (single or
 * multiple) arrives, i.e. after the quorum queue committed it (fsync'd on a
 * majority). Consumers set basic.qos prefetch --window and acknowledge with
 * multiple acks every window/2 messages (or when the queue goes quiet).
 * AMQP 0-9-1 has no answer to basic.ack: a consumer counts a message when
 * its ack is written, and after the phase removed() lowers the count to what
 * the queue says left it (its ready count, read once the consumers' channels
 * are closed). Start at produce(), consume() and removed().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "peer.h"

#define RABBIT_PEER_CHANNEL 1
#define RABBIT_PEER_POLL_MS 100
#define RABBIT_PEER_TIMEOUT_S 10 /* connect, RPCs, confirms after the phase's end */

static int rabbit_status(amqp_rpc_reply_t r, const char *what, char *err, size_t errlen)
{
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 0;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
        snprintf(err, errlen, "%s: %s", what, amqp_error_string2(r.library_error));
    else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD || r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_channel_close_t *m = r.reply.decoded; /* same layout as connection.close */
        snprintf(err, errlen, "%s: server: %.*s", what, (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
    } else {
        snprintf(err, errlen, "%s: server error", what);
    }
    return -1;
}

/* Connect, log in as guest, open the channel. NULL with @err on failure. */
static amqp_connection_state_t rabbit_connect(peer_t *p, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(p->url, ':');
    size_t hl = colon ? (size_t)(colon - p->url) : strlen(p->url);
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = c ? amqp_tcp_socket_new(c) : NULL;
    if (!s || hl >= sizeof host) {
        snprintf(err, errlen, "connect %s: bad address or out of memory", p->url);
        goto fail;
    }
    memcpy(host, p->url, hl);
    host[hl] = '\0';
    /* A server that stops answering fails the call instead of hanging. */
    struct timeval tv = {RABBIT_PEER_TIMEOUT_S, 0};
    amqp_set_handshake_timeout(c, &tv);
    amqp_set_rpc_timeout(c, &tv);
    int rc = amqp_socket_open_noblock(s, host, colon ? atoi(colon + 1) : 5672, &tv);
    if (rc != AMQP_STATUS_OK) {
        snprintf(err, errlen, "connect %s: %s", p->url, amqp_error_string2(rc));
        goto fail;
    }
    if (rabbit_status(amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
                      "login", err, errlen) != 0)
        goto fail;
    amqp_channel_open(c, RABBIT_PEER_CHANNEL);
    if (rabbit_status(amqp_get_rpc_reply(c), "channel.open", err, errlen) != 0)
        goto fail;
    return c;
fail:
    if (c)
        amqp_destroy_connection(c);
    return NULL;
}

static void rabbit_close(amqp_connection_state_t c)
{
    amqp_channel_close(c, RABBIT_PEER_CHANNEL, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

/* The queue's ready messages (passive queue.declare), or -1. */
static int64_t rabbit_ready(amqp_connection_state_t c, const char *queue)
{
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(c, RABBIT_PEER_CHANNEL,
                                                     amqp_cstring_bytes(queue), 1, 0, 0, 0,
                                                     amqp_empty_table);
    if (!ok || amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL)
        return -1;
    return (int64_t)ok->message_count;
}

/* The queue's ready messages when the phase began (consumers only). */
static int64_t ready_at_start = -1;

/* Consumer acks have no answer: count what left the queue instead. Every
 * consumer channel is closed by now (its unacknowledged messages went back
 * to the queue), so removed = ready before + confirmed sends - ready now.
 * The count is read until it holds still (the queue applies acks and
 * returns asynchronously), for at most 5 s. */
static int64_t removed(peer_t *p)
{
    char err[256];
    amqp_connection_state_t c = ready_at_start >= 0 ? rabbit_connect(p, err, sizeof err) : NULL;
    if (!c)
        return -1;
    int64_t ready = rabbit_ready(c, p->queue), prev = -2;
    for (int i = 0; i < 50 && ready >= 0 && ready != prev; i++) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        prev = ready;
        ready = rabbit_ready(c, p->queue);
    }
    rabbit_close(c);
    return ready < 0 ? -1 : ready_at_start + (int64_t)atomic_load(&p->produced) - ready;
}

static int setup(peer_t *p, char *err, size_t errlen)
{
    amqp_connection_state_t c = rabbit_connect(p, err, errlen);
    if (!c)
        return -1;
    amqp_table_entry_t args[2] = {
        {.key = amqp_cstring_bytes("x-queue-type"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("quorum")}},
        {.key = amqp_cstring_bytes("x-quorum-initial-group-size"),
         .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = (int32_t)p->nodes}}};
    amqp_table_t table = {.num_entries = 2, .entries = args};
    amqp_queue_declare(c, RABBIT_PEER_CHANNEL, amqp_cstring_bytes(p->queue), 0, 1, 0, 0, table);
    int rc = rabbit_status(amqp_get_rpc_reply(c), "queue.declare", err, errlen);
    if (rc == 0 && p->consumers > 0)
        ready_at_start = rabbit_ready(c, p->queue);
    rabbit_close(c);
    return rc;
}

/* ------------------------------------------------------------ producer */

typedef struct rabbit_producer {
    peer_worker_t *w;
    uint64_t *t0;     /* send time by delivery tag % window */
    bool *confirmed;  /* by delivery tag % window */
    uint64_t next, tail; /* next tag to publish; every tag <= tail is confirmed */
} rabbit_producer_t;

static void confirm(rabbit_producer_t *rp, uint64_t tag)
{
    unsigned win = rp->w->p->window;
    if (tag <= rp->tail || tag >= rp->next || rp->confirmed[tag % win])
        return;
    rp->confirmed[tag % win] = true;
    peer_acked(rp->w, rp->t0[tag % win], 1);
    while (rp->tail + 1 < rp->next && rp->confirmed[(rp->tail + 1) % win])
        rp->confirmed[++rp->tail % win] = false;
}

/* Wait for one frame and apply it if it is a basic.ack / basic.nack. */
static int await_confirm(rabbit_producer_t *rp, amqp_connection_state_t c)
{
    amqp_frame_t f;
    struct timeval tv = {0, RABBIT_PEER_POLL_MS * 1000};
    int rc = amqp_simple_wait_frame_noblock(c, &f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT)
        return 0;
    if (rc != AMQP_STATUS_OK) {
        peer_error(rp->w, amqp_error_string2(rc));
        return -1;
    }
    if (f.frame_type != AMQP_FRAME_METHOD)
        return 0;
    if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
        /* Only tags published so far: a forged tag (up to 2^64-1, with
         * multiple) must not walk, nor wrap, past them. */
        amqp_basic_ack_t *a = f.payload.method.decoded;
        uint64_t last = a->delivery_tag < rp->next ? a->delivery_tag : rp->next - 1;
        for (uint64_t t = a->multiple ? rp->tail + 1 : a->delivery_tag; t <= last; t++)
            confirm(rp, t);
    } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
        peer_error(rp->w, "basic.nack");
        return -1;
    } else if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
        peer_error(rp->w, "channel closed by the server");
        return -1;
    }
    return 0;
}

static void produce(peer_worker_t *w)
{
    peer_t *p = w->p;
    char err[256];
    rabbit_producer_t rp = {.w = w, .t0 = calloc(p->window, sizeof *rp.t0),
                            .confirmed = calloc(p->window, sizeof *rp.confirmed), .next = 1};
    amqp_connection_state_t c = rabbit_connect(p, err, sizeof err);
    if (!c || !rp.t0 || !rp.confirmed) {
        peer_error(w, c ? "out of memory" : err);
        goto out;
    }
    amqp_confirm_select(c, RABBIT_PEER_CHANNEL);
    if (rabbit_status(amqp_get_rpc_reply(c), "confirm.select", err, sizeof err) != 0) {
        peer_error(w, err);
        goto out;
    }
    amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
                                     .delivery_mode = 2};
    amqp_bytes_t body = {p->size, p->body}, queue = amqp_cstring_bytes(p->queue);
    bool more = true;
    uint64_t give_up = p->t_end_us + RABBIT_PEER_TIMEOUT_S * 1000000ull;
    while ((more || rp.tail + 1 < rp.next) && peer_now_us() < give_up) {
        while (more && rp.next - rp.tail - 1 < p->window && (more = peer_produce_more(w))) {
            rp.t0[rp.next % p->window] = peer_now_us();
            if (amqp_basic_publish(c, RABBIT_PEER_CHANNEL, amqp_empty_bytes, queue, 0, 0, &props,
                                   body) != AMQP_STATUS_OK) {
                peer_error(w, "basic.publish");
                goto out;
            }
            rp.next++;
        }
        if (rp.tail + 1 < rp.next && await_confirm(&rp, c) != 0)
            break;
    }
    if (rp.tail + 1 < rp.next)
        peer_error(w, "confirms still missing after the phase");
out:
    if (c)
        rabbit_close(c);
    free(rp.t0);
    free(rp.confirmed);
}

/* ------------------------------------------------------------ consumer */

static void consume(peer_worker_t *w)
{
    peer_t *p = w->p;
    char err[256];
    amqp_connection_state_t c = rabbit_connect(p, err, sizeof err);
    if (!c) {
        peer_error(w, err);
        return;
    }
    amqp_basic_qos(c, RABBIT_PEER_CHANNEL, 0, (uint16_t)p->window, 0);
    amqp_basic_consume(c, RABBIT_PEER_CHANNEL, amqp_cstring_bytes(p->queue), amqp_empty_bytes, 0,
                       0, 0, amqp_empty_table);
    if (rabbit_status(amqp_get_rpc_reply(c), "basic.consume", err, sizeof err) != 0) {
        peer_error(w, err);
        rabbit_close(c);
        return;
    }
    unsigned every = p->window >= 2 ? p->window / 2 : 1, unacked = 0;
    uint64_t last_tag = 0;
    while (peer_consume_more(w)) {
        amqp_envelope_t env;
        struct timeval tv = {0, RABBIT_PEER_POLL_MS * 1000};
        amqp_maybe_release_buffers(c);
        amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);
        bool got = r.reply_type == AMQP_RESPONSE_NORMAL;
        if (got) {
            last_tag = env.delivery_tag;
            unacked++;
            amqp_destroy_envelope(&env);
        } else if (!(r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                     r.library_error == AMQP_STATUS_TIMEOUT)) {
            rabbit_status(r, "consume", err, sizeof err);
            peer_error(w, err);
            break;
        }
        if (unacked >= every || (!got && unacked > 0)) {
            if (amqp_basic_ack(c, RABBIT_PEER_CHANNEL, last_tag, 1) != AMQP_STATUS_OK) {
                peer_error(w, "basic.ack");
                break;
            }
            peer_consumed(w, unacked);
            unacked = 0;
        }
    }
    if (unacked > 0 && amqp_basic_ack(c, RABBIT_PEER_CHANNEL, last_tag, 1) == AMQP_STATUS_OK)
        peer_consumed(w, unacked);
    rabbit_close(c);
}

static const peer_ops_t rabbit_peer_ops = {
    .system = "rabbitmq", .default_url = "127.0.0.1:5672",
    .setup = setup, .produce = produce, .consume = consume, .removed = removed};

int main(int argc, char **argv)
{
    return peer_main(argc, argv, &rabbit_peer_ops);
}
