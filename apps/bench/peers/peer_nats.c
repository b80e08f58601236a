/* peer_nats.c: the side-by-side driver for NATS JetStream (libnats).
 *
 * The stream (file storage, --nodes replicas, work-queue retention: an
 * acknowledged message is removed, like mqhub's delete) and one durable
 * explicit-ack pull consumer ("peers") are made by setup(). NATS does not
 * fsync each write by default (sync_interval 2 min): its acks mean "written
 * to a majority's files", not "on disk".
 * Producers publish asynchronously with at most --window unacknowledged
 * (jsCtxOptions.PublishAsync.MaxPending); a send counts in the ack handler
 * when the stream acknowledged it. The send time travels in the body's first
 * 8 bytes, since the handler gets the original message back. Consumers fetch
 * batches of --window and acknowledge them: Ack for all but the last,
 * AckSync for the last, whose reply (acks on one connection are handled in
 * order) confirms the batch. Start at produce() and consume().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "peer.h"

#define NATS_PEER_FETCH_MS 500

static int nats_fail(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode jerr)
{
    snprintf(err, errlen, "%s: %s (js %d) %s", what, natsStatus_GetText(s), (int)jerr,
             nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
    return -1;
}

static int setup(peer_t *p, char *err, size_t errlen)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsErrCode jerr = 0;
    natsStatus s = natsConnection_ConnectTo(&nc, p->url);
    if (s != NATS_OK)
        return nats_fail(err, errlen, "connect", s, 0);
    int rc = -1;
    if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK) {
        nats_fail(err, errlen, "jetstream", s, 0);
        goto out;
    }
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[] = {p->queue};
    sc.Name = p->queue;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Retention = js_WorkQueuePolicy;
    sc.Replicas = p->nodes;
    s = js_AddStream(NULL, js, &sc, NULL, &jerr);
    if (s != NATS_OK && jerr != JSStreamNameExistErr) {
        nats_fail(err, errlen, "add stream", s, jerr);
        goto out;
    }
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = "peers";
    cc.AckPolicy = js_AckExplicit;
    cc.MaxAckPending = 65536;
    jerr = 0;
    s = js_AddConsumer(NULL, js, p->queue, &cc, NULL, &jerr);
    if (s != NATS_OK && jerr != JSConsumerNameExistErr) {
        nats_fail(err, errlen, "add consumer", s, jerr);
        goto out;
    }
    rc = 0;
out:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}

/* ------------------------------------------------------------ producer */

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    peer_worker_t *w = closure;
    uint64_t t0;
    if (pa && natsMsg_GetDataLength(msg) >= (int)sizeof t0) {
        memcpy(&t0, natsMsg_GetData(msg), sizeof t0);
        peer_acked(w, t0, 1);
    } else {
        peer_error(w, pae && pae->ErrText ? pae->ErrText : "publish not acknowledged");
    }
    natsMsg_Destroy(msg);
}

static void produce(peer_worker_t *w)
{
    peer_t *p = w->p;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions o;
    char *body = malloc(p->size);
    if (!body || natsConnection_ConnectTo(&nc, p->url) != NATS_OK) {
        peer_error(w, nats_GetLastError(NULL));
        goto out;
    }
    jsOptions_Init(&o);
    o.PublishAsync.MaxPending = p->window;
    o.PublishAsync.AckHandler = on_pub_ack;
    o.PublishAsync.AckHandlerClosure = w;
    o.PublishAsync.StallWait = 10000;
    if (natsConnection_JetStream(&js, nc, &o) != NATS_OK) {
        peer_error(w, nats_GetLastError(NULL));
        goto out;
    }
    memcpy(body, p->body, p->size);
    while (peer_produce_more(w)) {
        uint64_t t0 = peer_now_us();
        memcpy(body, &t0, sizeof t0);
        natsStatus s = js_PublishAsync(js, p->queue, body, (int)p->size, NULL);
        if (s != NATS_OK) {
            peer_error(w, natsStatus_GetText(s));
            break;
        }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 10000;
    /* Publishes still unconfirmed after 10 s were never counted (only the ack
     * handler counts); say so rather than end quietly. */
    natsStatus s = js_PublishAsyncComplete(js, &po);
    if (s != NATS_OK)
        peer_error(w, s == NATS_TIMEOUT ? "publishes unconfirmed 10 s after the phase"
                                        : natsStatus_GetText(s));
out:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    free(body);
}

/* ------------------------------------------------------------ consumer */

/* Acknowledge one fetched batch; 0 when the last ack was confirmed. */
static int ack_batch(peer_worker_t *w, natsMsgList *list)
{
    jsErrCode jerr = 0;
    for (int i = 0; i + 1 < list->Count; i++)
        if (natsMsg_Ack(list->Msgs[i], NULL) != NATS_OK)
            return -1;
    if (natsMsg_AckSync(list->Msgs[list->Count - 1], NULL, &jerr) != NATS_OK)
        return -1;
    peer_consumed(w, (uint64_t)list->Count);
    return 0;
}

static void consume(peer_worker_t *w)
{
    peer_t *p = w->p;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    if (natsConnection_ConnectTo(&nc, p->url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        peer_error(w, nats_GetLastError(NULL));
        goto out;
    }
    jsSubOptions_Init(&so);
    so.Stream = p->queue;
    so.Consumer = "peers";
    if (js_PullSubscribe(&sub, js, p->queue, "peers", NULL, &so, &jerr) != NATS_OK) {
        peer_error(w, nats_GetLastError(NULL));
        goto out;
    }
    while (peer_consume_more(w)) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, (int)p->window, NATS_PEER_FETCH_MS, &jerr);
        if (s == NATS_OK && list.Count > 0 && ack_batch(w, &list) != 0)
            peer_error(w, nats_GetLastError(NULL));
        else if (s != NATS_OK && s != NATS_TIMEOUT)
            peer_error(w, natsStatus_GetText(s));
        natsMsgList_Destroy(&list);
    }
out:
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

static void teardown(peer_t *p)
{
    nats_Close();
}

static const peer_ops_t nats_peer_ops = {
    .system = "nats", .default_url = "nats://127.0.0.1:4222",
    .setup = setup, .produce = produce, .consume = consume, .teardown = teardown};

int main(int argc, char **argv)
{
    return peer_main(argc, argv, &nats_peer_ops);
}
