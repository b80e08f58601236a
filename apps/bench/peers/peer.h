/* peer.h: the harness every side-by-side driver shares (peer.c).
 *
 * One driver per system (peer_mqhub.c, peer_rabbit.c, peer_nats.c,
 * peer_redis.c) fills a peer_ops_t and calls peer_main(). The harness parses
 * the command line, starts the producer and consumer threads, bounds the
 * phase in time and count, and prints one JSON line with the rates and the
 * send->ack latency (apps/bench/peers/README.md has the method).
 *
 * A driver's threads ask the harness whether to go on (peer_produce_more,
 * peer_consume_more) and report only operations the server acknowledged as
 * done (peer_acked: a confirmed send; peer_consumed: a confirmed delete/ack).
 * Every function may be called from any worker thread.
 */
#ifndef PEER_H
#define PEER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEER_HIST_SUB 32 /* sub-buckets per power of two: ~3 % resolution */
#define PEER_HIST_BUCKETS (64 * PEER_HIST_SUB)

typedef struct peer_hist {
    uint64_t b[PEER_HIST_BUCKETS];
    uint64_t n;
} peer_hist_t;

typedef struct peer {
    const char *system; /* "mqhub", "redis", ... (the JSON's "system") */
    const char *phase;  /* produce | consume | both */
    const char *label;  /* the JSON's "phase" (--label; default: phase) */
    const char *url;    /* the driver's server address(es) */
    const char *queue;  /* queue / stream / key name */
    unsigned nodes;     /* for the JSON line only (--nodes) */
    unsigned producers, consumers, window, size;
    double duration; /* seconds */
    uint64_t count;  /* at most this many sends (and consumes) per phase */
    unsigned idle_ms; /* a consumer stops after this long without a message */
    char *body;       /* size bytes */
    uint64_t t_start_us, t_end_us;
    atomic_uint_fast64_t claimed, produced, consumed, errors;
    atomic_uint_fast64_t last_done_us; /* when the last operation completed */
    atomic_int producers_left;
    void *driver; /* the driver's shared state (set in setup) */
} peer_t;

/* One producer or consumer thread. The driver's thread body gets it. */
typedef struct peer_worker {
    peer_t *p;
    unsigned index; /* 0.. within its role */
    bool producer;
    peer_hist_t hist; /* send->ack, microseconds (producers) */
    uint64_t last_msg_us;
} peer_worker_t;

typedef struct peer_ops {
    const char *system;
    const char *default_url;
    /* Before the threads: connect once, create the queue (idempotent).
     * 0 or -1 with a sentence in @err. */
    int (*setup)(peer_t *p, char *err, size_t errlen);
    void (*produce)(peer_worker_t *w); /* a producer thread's body */
    void (*consume)(peer_worker_t *w); /* a consumer thread's body */
    /* After the threads, before the result line; may be NULL. For a system
     * whose consumer acks get no answer: how many messages the server says
     * left the queue (the harness reports the smaller of that and what the
     * consumers counted), or -1 when it cannot tell. */
    int64_t (*removed)(peer_t *p);
    void (*teardown)(peer_t *p); /* after the result line; may be NULL */
} peer_ops_t;

/* Parse argv, run the phase, print the JSON line. Returns main's status:
 * 0; 3 when the phase ran but some operations failed ("errors" in the
 * line); 1 when setup failed or no line could be printed; 2 for usage. */
int peer_main(int argc, char **argv, const peer_ops_t *ops);

uint64_t peer_now_us(void);

/* Whether the producer may submit one more message (claims it when so). */
bool peer_produce_more(peer_worker_t *w);
/* Whether the consumer should keep asking: before the deadline, below the
 * count, and not idle for idle_ms once no producer is left. */
bool peer_consume_more(peer_worker_t *w);
/* @n sends confirmed, the oldest submitted at @t0_us: records the latency. */
void peer_acked(peer_worker_t *w, uint64_t t0_us, uint64_t n);
/* @n messages received and confirmed deleted/acknowledged. */
void peer_consumed(peer_worker_t *w, uint64_t n);
/* A failed operation (counted in "errors"); @why goes to stderr (the first
 * few times only). */
void peer_error(peer_worker_t *w, const char *why);

#endif
