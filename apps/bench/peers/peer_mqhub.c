/* peer_mqhub.c: the side-by-side driver for mqhub (libmqhub, pipelined).
 *
 * Producers keep --window sends in flight (mqhub_client_send_async); a send
 * counts when its answer arrives, i.e. after the raft entry is committed and
 * fsync'd on a majority. Consumers keep two receives of window/2 messages in
 * flight and delete each batch's receipts in one request; a message counts
 * when its delete answered without an error (both replicated like sends).
 * --url is a node list ("127.0.0.1:7001,127.0.0.1:7002"): the handle follows
 * the leader. Start at produce() and consume(); the harness is peer.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../receipts.h"
#include "mqhub/client.h"
#include "peer.h"

#define MQHUB_PEER_RECEIVES 2 /* receives in flight per consumer */

typedef struct mq_worker {
    peer_worker_t *w;
    mqhub_client_t *c;
    unsigned inflight; /* requests: sends, or receives + deletes */
    unsigned receives; /* of them, receives */
    receipts_t receipts; /* received, waiting for their delete */
    msgpack_zone zone;
    msgpack_object recv_args;
} mq_worker_t;

typedef struct mq_req {
    mq_worker_t *m;
    uint64_t t0_us;
} mq_req_t;

static int mq_connect(peer_t *p, mqhub_client_t **c, char *err, size_t errlen)
{
    mqhub_client_opts_t o = {.timeout_ms = 10000, .client_name = "peer_mqhub",
                             .window = p->window + MQHUB_PEER_RECEIVES};
    return mqhub_client_connect(c, p->url, &o, err, errlen);
}

static int setup(peer_t *p, char *err, size_t errlen)
{
    mqhub_client_t *c;
    int rc = mq_connect(p, &c, err, errlen);
    if (rc != 0)
        return -1;
    rc = mqhub_client_queue_create(c, p->queue, NULL);
    if (rc != 0)
        snprintf(err, errlen, "queue.create %s: %s", p->queue, mqhub_client_errmsg(c));
    mqhub_client_close(c);
    return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ producer */

static void on_send(void *arg, const mqhub_send_result_t *res)
{
    mq_req_t *r = arg;
    r->m->inflight--;
    if (res->status == 0)
        peer_acked(r->m->w, r->t0_us, 1);
    else
        peer_error(r->m->w, res->error[0] ? res->error : mqhub_client_strerror(res->status));
    free(r);
}

static void produce(peer_worker_t *w)
{
    mq_worker_t m = {.w = w};
    char err[256];
    if (mq_connect(w->p, &m.c, err, sizeof err) != 0) {
        peer_error(w, err);
        return;
    }
    bool more = true;
    while (more || m.inflight > 0) {
        while (more && m.inflight < w->p->window && (more = peer_produce_more(w))) {
            mq_req_t *r = malloc(sizeof *r);
            if (r)
                *r = (mq_req_t){&m, peer_now_us()};
            if (!r || mqhub_client_send_async(m.c, w->p->queue, w->p->body, w->p->size, NULL,
                                              on_send, r) != 0) {
                peer_error(w, r ? mqhub_client_errmsg(m.c) : "out of memory");
                free(r);
                more = false;
                break;
            }
            m.inflight++;
        }
        if (m.inflight > 0 && mqhub_client_poll(m.c, 100) < 0)
            break; /* connection lost with nothing in flight */
    }
    mqhub_client_close(m.c);
}

/* ------------------------------------------------------------ consumer */

static void on_receive(void *arg, int status, const msgpack_object *resp, const char *errmsg)
{
    mq_worker_t *m = arg;
    m->inflight--;
    m->receives--;
    const msgpack_object *msgs = status == 0 ? mqhub_map_get(resp, "msgs") : NULL;
    if (status != 0)
        peer_error(m->w, errmsg);
    else if (receipts_keep(&m->receipts, msgs) != 0)
        peer_error(m->w, "out of memory"); /* those messages come back */
}

static void on_delete(void *arg, int status, const msgpack_object *resp, const char *errmsg)
{
    mq_worker_t *m = arg;
    const msgpack_object *res = status == 0 ? mqhub_map_get(resp, "results") : NULL;
    uint64_t n = 0;
    m->inflight--;
    for (uint32_t i = 0; res && res->type == MSGPACK_OBJECT_ARRAY && i < res->via.array.size; i++)
        n += mqhub_map_get(&res->via.array.ptr[i], "code") == NULL;
    if (status != 0)
        peer_error(m->w, errmsg);
    peer_consumed(m->w, n);
}

/* {queue, max, wait: 1} once, kept in the worker's zone. */
static int build_recv_args(mq_worker_t *m)
{
    peer_t *p = m->w->p;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t off = 0;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "queue", 5);
    msgpack_pack_str_with_body(&pk, p->queue, strlen(p->queue));
    msgpack_pack_str_with_body(&pk, "max", 3);
    msgpack_pack_uint32(&pk, p->window >= 2 * MQHUB_PEER_RECEIVES ? p->window / 2 : 1);
    msgpack_pack_str_with_body(&pk, "wait", 4);
    msgpack_pack_uint32(&pk, 1);
    msgpack_zone_init(&m->zone, sb.size + 1024);
    char *copy = msgpack_zone_malloc(&m->zone, sb.size);
    memcpy(copy, sb.data, sb.size);
    int rc = msgpack_unpack(copy, sb.size, &off, &m->zone, &m->recv_args);
    msgpack_sbuffer_destroy(&sb);
    return rc == MSGPACK_UNPACK_SUCCESS ? 0 : -1;
}

/* One delete request for the receipts kept (at most MQHUB_BATCH_MAX). */
static int submit_delete(mq_worker_t *m)
{
    int rc = receipts_delete(&m->receipts, m->c, m->w->p->queue, on_delete, m, NULL);
    if (rc == 0)
        m->inflight++;
    return rc;
}

static void consume(peer_worker_t *w)
{
    mq_worker_t m = {.w = w};
    char err[256] = "cannot encode the receive request";
    if (build_recv_args(&m) != 0 || mq_connect(w->p, &m.c, err, sizeof err) != 0) {
        peer_error(w, err);
        msgpack_zone_destroy(&m.zone);
        return;
    }
    bool more = true, ok = true;
    while (ok && (more || m.inflight > 0 || m.receipts.n > 0)) {
        while (ok && m.receipts.n > 0)
            ok = submit_delete(&m) == 0;
        more = more && peer_consume_more(w);
        for (; ok && more && m.receives < MQHUB_PEER_RECEIVES; m.receives++) {
            ok = mqhub_client_call_async(m.c, "receive", &m.recv_args, on_receive, &m) == 0;
            m.inflight += ok;
        }
        if (ok && m.inflight > 0 && mqhub_client_poll(m.c, 100) < 0)
            ok = false;
    }
    if (!ok)
        peer_error(w, mqhub_client_errmsg(m.c));
    receipts_free(&m.receipts);
    msgpack_zone_destroy(&m.zone);
    mqhub_client_close(m.c);
}

static const peer_ops_t mqhub_peer_ops = {
    .system = "mqhub", .default_url = MQHUB_DEFAULT_TCP_ADDRESS,
    .setup = setup, .produce = produce, .consume = consume};

int main(int argc, char **argv)
{
    return peer_main(argc, argv, &mqhub_peer_ops);
}
