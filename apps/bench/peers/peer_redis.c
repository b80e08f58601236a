/* peer_redis.c: the side-by-side driver for Redis Streams (hiredis).
 *
 * The server runs with appendonly yes and appendfsync always (run.sh), so a
 * reply leaves Redis after the AOF write was fsync'd. Producers pipeline
 * XADD, keeping --window of them unanswered; each reply (the entry id) is a
 * confirmed send. Consumers are one group ("peers"): each keeps two
 * XREADGROUP COUNT window/2 (BLOCK 100 ms) in the pipeline and answers each
 * non-empty batch with XACK + XDEL of its ids, the same work as mqhub's
 * receive + delete; a message counts when XDEL's reply says it was deleted.
 * Start at produce() and consume(); the harness is peer.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "peer.h"

#define REDIS_PEER_READS 2  /* XREADGROUPs in flight per consumer */
#define REDIS_PEER_KINDS 16 /* replies awaited per consumer, at most */
#define REDIS_PEER_TIMEOUT_S 10 /* no reply for this long: the worker gives up */

static redisContext *redis_connect(peer_t *p, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(p->url, ':');
    size_t hl = colon ? (size_t)(colon - p->url) : strlen(p->url);
    if (hl >= sizeof host) {
        snprintf(err, errlen, "bad --url %s", p->url);
        return NULL;
    }
    memcpy(host, p->url, hl);
    host[hl] = '\0';
    /* A server that stops answering fails the call instead of hanging. */
    struct timeval connect_tv = {5, 0}, io_tv = {REDIS_PEER_TIMEOUT_S, 0};
    redisContext *c = redisConnectWithTimeout(host, colon ? atoi(colon + 1) : 6379, connect_tv);
    if (!c || c->err || redisSetTimeout(c, io_tv) != REDIS_OK) {
        snprintf(err, errlen, "connect %s: %s", p->url, c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Write everything appended so far (hiredis writes lazily otherwise). */
static int redis_flush(redisContext *c)
{
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return -1;
    return 0;
}

/* The stream and its group, from the stream's first entry (idempotent). */
static int setup(peer_t *p, char *err, size_t errlen)
{
    redisContext *c = redis_connect(p, err, errlen);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "XGROUP CREATE %s peers 0 MKSTREAM", p->queue);
    int rc = r && (r->type == REDIS_REPLY_STATUS ||
                   (r->type == REDIS_REPLY_ERROR && strstr(r->str, "BUSYGROUP")))
                 ? 0
                 : -1;
    if (rc != 0)
        snprintf(err, errlen, "XGROUP CREATE: %s", r ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
    return rc;
}

/* ------------------------------------------------------------ producer */

static void produce(peer_worker_t *w)
{
    peer_t *p = w->p;
    char err[256];
    redisContext *c = redis_connect(p, err, sizeof err);
    uint64_t *t0 = calloc(p->window, sizeof *t0); /* ring of send times */
    if (!c || !t0) {
        peer_error(w, c ? "out of memory" : err);
        redisFree(c);
        free(t0);
        return;
    }
    unsigned head = 0, tail = 0, inflight = 0;
    bool more = true;
    while (more || inflight > 0) {
        while (more && inflight < p->window && (more = peer_produce_more(w))) {
            redisAppendCommand(c, "XADD %s * b %b", p->queue, p->body, (size_t)p->size);
            t0[head++ % p->window] = peer_now_us();
            inflight++;
        }
        if (inflight == 0)
            break;
        redisReply *r = NULL;
        if (redis_flush(c) != 0 || redisGetReply(c, (void **)&r) != REDIS_OK) {
            peer_error(w, c->errstr);
            break;
        }
        inflight--;
        if (r->type == REDIS_REPLY_STRING)
            peer_acked(w, t0[tail % p->window], 1);
        else
            peer_error(w, r->type == REDIS_REPLY_ERROR ? r->str : "XADD: unexpected reply");
        tail++;
        freeReplyObject(r);
    }
    free(t0);
    redisFree(c);
}

/* ------------------------------------------------------------ consumer */

enum { REDIS_READ, REDIS_ACK, REDIS_DEL };

typedef struct redis_consumer {
    peer_worker_t *w;
    redisContext *c;
    char name[32], count[16];
    char kinds[REDIS_PEER_KINDS]; /* what each awaited reply answers, FIFO */
    unsigned head, tail, reads;
} redis_consumer_t;

static void expect(redis_consumer_t *rc, char kind)
{
    rc->kinds[rc->head++ % REDIS_PEER_KINDS] = kind;
    rc->reads += kind == REDIS_READ;
}

static void append_read(redis_consumer_t *rc)
{
    const char *argv[] = {"XREADGROUP", "GROUP", "peers", rc->name, "COUNT", rc->count,
                          "BLOCK", "100", "STREAMS", rc->w->p->queue, ">"};
    redisAppendCommandArgv(rc->c, 11, argv, NULL);
    expect(rc, REDIS_READ);
}

/* XACK key group id... and XDEL key id... for the entries of one batch. */
static void append_ack_del(redis_consumer_t *rc, const redisReply *entries)
{
    size_t n = entries->elements;
    const char **argv = malloc((n + 3) * sizeof *argv);
    size_t *lens = malloc((n + 3) * sizeof *lens);
    if (!argv || !lens) {
        free(argv), free(lens);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *id = entries->element[i]->element[0];
        argv[3 + i] = id->str;
        lens[3 + i] = id->len;
    }
    argv[0] = "XACK", argv[1] = rc->w->p->queue, argv[2] = "peers";
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    redisAppendCommandArgv(rc->c, (int)n + 3, argv, lens);
    expect(rc, REDIS_ACK);
    argv[1] = "XDEL", lens[1] = 4, argv[2] = rc->w->p->queue, lens[2] = strlen(argv[2]);
    redisAppendCommandArgv(rc->c, (int)n + 2, argv + 1, lens + 1);
    expect(rc, REDIS_DEL);
    free(argv);
    free(lens);
}

/* One reply: a batch to acknowledge, or an XACK / XDEL count. */
static int handle_reply(redis_consumer_t *rc, redisReply *r)
{
    char kind = rc->kinds[rc->tail++ % REDIS_PEER_KINDS];
    if (r->type == REDIS_REPLY_ERROR) {
        peer_error(rc->w, r->str);
        return -1;
    }
    if (kind == REDIS_READ) {
        rc->reads--;
        /* [[key, [[id, [field, value]], ...]]], or nil after BLOCK. */
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->elements == 2 && r->element[0]->element[1]->elements > 0)
            append_ack_del(rc, r->element[0]->element[1]);
    } else if (kind == REDIS_DEL && r->type == REDIS_REPLY_INTEGER) {
        peer_consumed(rc->w, (uint64_t)r->integer);
    }
    return 0;
}

static void consume(peer_worker_t *w)
{
    peer_t *p = w->p;
    char err[256];
    redis_consumer_t rc = {.w = w, .c = redis_connect(p, err, sizeof err)};
    if (!rc.c) {
        peer_error(w, err);
        return;
    }
    snprintf(rc.name, sizeof rc.name, "c%u", w->index);
    snprintf(rc.count, sizeof rc.count, "%u", p->window >= 2 * REDIS_PEER_READS ? p->window / 2 : 1);
    bool more = true;
    while (more || rc.head != rc.tail) {
        more = more && peer_consume_more(w);
        while (more && rc.reads < REDIS_PEER_READS)
            append_read(&rc);
        if (rc.head == rc.tail)
            break;
        redisReply *r = NULL;
        if (redis_flush(rc.c) != 0 || redisGetReply(rc.c, (void **)&r) != REDIS_OK) {
            peer_error(w, rc.c->errstr);
            break;
        }
        int bad = handle_reply(&rc, r);
        freeReplyObject(r);
        if (bad)
            break;
    }
    redisFree(rc.c);
}

static const peer_ops_t redis_peer_ops = {
    .system = "redis", .default_url = "127.0.0.1:6379",
    .setup = setup, .produce = produce, .consume = consume};

int main(int argc, char **argv)
{
    return peer_main(argc, argv, &redis_peer_ops);
}
