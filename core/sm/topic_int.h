/* core/sm/topic_int.h: what topic.c and subscription.c share, and only they
 * include it — the topics in memory (topics_t, topic_t; a subscription,
 * sub_t, is subscription.c's own), a retained message loaded from the store,
 * and the functions each of the two files offers the other. The rest of
 * core/sm sees topics_t as opaque and calls the functions of sm_int.h.
 */
#ifndef MQHUB_SM_TOPIC_INT_H
#define MQHUB_SM_TOPIC_INT_H

#include "sm_int.h"

#define META_SID "#sid"
#define KEY_LEN 17 /* a message key: prefix + id be64 + seq be64 */

/* filter_type: which filter its subscriptions are meant to use (CMQ's
 * filterType, TOPIC_FILTER_*): kept and shown, matching uses both kinds. */
enum { TOPIC_FILTER_TAGS = 1, TOPIC_FILTER_ROUTING_KEY = 2 };
struct tattrs { uint64_t max_msg_size, retention, filter_type; };

typedef struct topic topic_t;
typedef struct sub sub_t;

struct topic {
    char name[MQHUB_NAME_MAX + 1];
    size_t nlen;
    uint64_t id, next_seq, first_seq, retained, published_total;
    uint64_t first_at;         /* published_at of first_seq (memory only) */
    uint64_t created_at, modified_at; /* entry clock, ms */
    struct tattrs a;
    sub_t *subs;               /* name order (subscription.c) */
    bool dirty;
    topic_t *next, *prev;      /* id order */
    topic_t *dirty_next;
};

struct topics {
    store_t *st;
    queues_t *qs;
    omap_t by_name;            /* name -> topic: lookups and topic.list */
    omap_t http_subs;          /* "topic\0name" -> sub_t, the http subscriptions
                                * (subscription.c): subscription.list pages */
    topic_t *first, *last;     /* id order */
    topic_t *dirty;
    sub_t *dirty_subs;
    uint64_t next_tid, next_sid, now;
    bool failed, tick_more;
    bool ungated;              /* publishing a hook's hub.publish */
    uint64_t refs;             /* queue references made by the current offer */
    fsm_push_cb cb;
    void *cb_arg;
    topic_script_hooks_t hooks;
};

/* A retained message loaded from the store; m's pointers live in u / raw. */
struct tmsg {
    fsm_push_msg_t m;
    msgpack_unpacked u;
    char *raw;
};

/* ---- topic.c ---- */

/* store_put, remembering a failure for topic_end(). */
void topic_put(topics_t *ts, const void *k, size_t kl, const void *v, size_t vl);
/* A meta counter (#tid, #sid): u64be under @key. */
void topic_put_meta(topics_t *ts, const char *key, uint64_t v);
topic_t *topic_find(topics_t *ts, const char *name, size_t len);
/* The topic named by request field @key; NOT_FOUND or BAD_NAME with the
 * sentence in c->err. */
int topic_arg(topics_t *ts, cmd_t *c, const char *key, topic_t **out);
/* An optional array of 0..@max strings of @minlen..@maxlen bytes (tags,
 * filter_tags, binding_keys); *out NIL when absent. 0 or BAD_REQUEST. */
int topic_arg_strs(cmd_t *c, const msgpack_object *map, const char *key, uint32_t max,
                   size_t minlen, size_t maxlen, const msgpack_object **out);
/* Load retained message @seq of @t; topic_msg_free() it whatever the result.
 * 0, MQHUB_ENOT_FOUND (gone) or MQHUB_EINTERNAL (corrupt record). */
int topic_msg_load(topics_t *ts, const topic_t *t, uint64_t seq, struct tmsg *tm);
void topic_msg_free(struct tmsg *tm);
/* The seqs of the retained messages of @t from @seq on that were published
 * at or after @time, in seq order; the caller frees out->v. */
void topic_seqs_since(topics_t *ts, const topic_t *t, uint64_t seq, uint64_t time,
                      body_seqs_t *out);

/* ---- subscription.c ---- */

/* Offer published message @m of @t to every subscription of @t, in name
 * order (filters, then the endpoint); returns how many matched. The queue
 * references it made are added to the body's count once. */
uint64_t sub_fan_out(topics_t *ts, cmd_t *c, topic_t *t, const fsm_push_msg_t *m);
/* Retained message @seq of @t expired: it leaves every pending set. */
void sub_expired(topics_t *ts, topic_t *t, uint64_t seq);
/* Load the subscriptions of @t from the store (topic_rebuild). 0 or
 * MQHUB_EINTERNAL. */
int sub_rebuild(topics_t *ts, topic_t *t);
/* At the end of an entry: save the changed subscriptions and call the push
 * callback for those that gained pending messages. */
void sub_end(topics_t *ts);
/* topic.delete: remove the records (S, W) of every subscription of @t. */
void sub_delete_all(topics_t *ts, topic_t *t);
/* Free every subscription of @t (memory only). */
void sub_free_all(topics_t *ts, topic_t *t);
/* The names of @t's subscriptions as an array into @pk. */
void sub_pack_names(msgpack_packer *pk, const topic_t *t);
/* Call @fn("topic/subscription") for every subscription of @t whose
 * filter_script is @script, in name order. */
void sub_script_users(const topic_t *t, const char *script, size_t len,
                      void (*fn)(void *arg, const char *user), void *arg);

#endif
