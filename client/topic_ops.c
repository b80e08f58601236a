/* topic_ops.c: libmqhub's topic operations (docs/protocol.md "Topics" and "Push
 * delivery"): topics (and topic.peek), publish, subscriptions, and push consumption
 * (subscribe / credit / ack / unsubscribe, and the decoding of pushes for
 * mqhub_client_on_push).
 *
 * Built like queue_ops.c: pack with client_req_init() + the packers, run
 * client_call() or client_submit(), copy the answer into the structs of
 * mqhub/client.h. Start with mqhub_client_publish(); pushes arrive in
 * client_push_dispatch(), called by client.c for every id-less map with a
 * "push" key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

static void pack_str_array(msgpack_packer *pk, const char *key, const char *const *v,
                           size_t n)
{
    client_pack_str(pk, key);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        client_pack_str(pk, v[i]);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* ------------------------------------------------------------- topics */

static int topic_attrs_op(mqhub_client_t *c, const char *op, const char *name,
                          const mqhub_topic_attrs_t *a)
{
    client_req_t r;
    unsigned n = a ? (unsigned)__builtin_popcount(a->set & 7u) : 0;
    client_req_init(c, &r, op, a ? 2 : 1);
    client_pack_kv_str(&r.pk, "name", name);
    if (a) {
        client_pack_str(&r.pk, "attrs");
        msgpack_pack_map(&r.pk, n);
        if (a->set & MQHUB_TOPIC_MAX_MSG_SIZE)
            client_pack_kv_uint(&r.pk, "max_msg_size", a->max_msg_size);
        if (a->set & MQHUB_TOPIC_RETENTION)
            client_pack_kv_uint(&r.pk, "retention", a->retention);
        if (a->set & MQHUB_TOPIC_HOOK)
            client_pack_kv_str(&r.pk, "hook", a->hook); /* "" detaches */
    }
    return client_call_simple(c, &r);
}

int mqhub_client_topic_create(mqhub_client_t *c, const char *name,
                              const mqhub_topic_attrs_t *attrs)
{
    return topic_attrs_op(c, "topic.create", name, attrs);
}

int mqhub_client_topic_set(mqhub_client_t *c, const char *name,
                           const mqhub_topic_attrs_t *attrs)
{
    mqhub_topic_attrs_t none = {0};
    return topic_attrs_op(c, "topic.set", name, attrs ? attrs : &none);
}

int mqhub_client_topic_delete(mqhub_client_t *c, const char *name)
{
    client_req_t r;
    client_req_init(c, &r, "topic.delete", 1);
    client_pack_kv_str(&r.pk, "name", name);
    return client_call_simple(c, &r);
}

void mqhub_topic_info_free(mqhub_topic_info_t *t)
{
    if (!t)
        return;
    free_names(t->subscriptions, t->n_subscriptions);
    t->subscriptions = NULL;
    t->n_subscriptions = 0;
}

int mqhub_client_topic_get(mqhub_client_t *c, const char *name, mqhub_topic_info_t *out)
{
    client_req_t r;
    mqhub_response_t resp;
    const msgpack_object *o;
    uint64_t u;

    memset(out, 0, sizeof *out);
    client_req_init(c, &r, "topic.get", 1);
    client_pack_kv_str(&r.pk, "name", name);
    int rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    client_copy_str(&resp.map, "name", out->name, sizeof out->name);
    if ((o = mqhub_map_get(&resp.map, "attrs")) != NULL) {
        if (client_get_uint(o, "max_msg_size", &u) == 0) {
            out->attrs.max_msg_size = (uint32_t)u;
            out->attrs.set |= MQHUB_TOPIC_MAX_MSG_SIZE;
        }
        if (client_get_uint(o, "retention", &u) == 0) {
            out->attrs.retention = (uint32_t)u;
            out->attrs.set |= MQHUB_TOPIC_RETENTION;
        }
        if (mqhub_map_get(o, "hook")) {
            client_copy_str(o, "hook", out->attrs.hook, sizeof out->attrs.hook);
            out->attrs.set |= MQHUB_TOPIC_HOOK;
        }
    }
    if ((o = mqhub_map_get(&resp.map, "stats")) != NULL) {
        client_get_uint(o, "retained", &out->retained);
        client_get_uint(o, "published_total", &out->published_total);
        client_get_uint(o, "first_seq", &out->first_seq);
        client_get_uint(o, "last_seq", &out->last_seq);
    }
    rc = client_copy_names(&resp.map, "subscriptions", &out->subscriptions, &out->n_subscriptions);
    mqhub_response_free(&resp);
    if (rc != 0)
        mqhub_topic_info_free(out);
    return rc;
}

int mqhub_client_topic_list(mqhub_client_t *c, const char *prefix, uint64_t offset,
                            uint64_t limit, mqhub_queue_list_t *out)
{
    client_req_t r;
    client_list_req(c, &r, "topic.list", prefix, offset, limit);
    return client_list_call(c, &r, "topics", out);
}

int mqhub_client_topic_peek(mqhub_client_t *c, const char *topic, const char *subscription,
                            uint32_t max, uint64_t from, mqhub_response_t *out)
{
    client_req_t r;
    client_req_init(c, &r, "topic.peek", 2 + (subscription != NULL) + (from != 0));
    client_pack_kv_str(&r.pk, "topic", topic);
    if (subscription != NULL)
        client_pack_kv_str(&r.pk, "subscription", subscription);
    client_pack_kv_uint(&r.pk, "max", max);
    if (from != 0)
        client_pack_kv_uint(&r.pk, "from", from);
    return client_call(c, &r, out);
}

/* ------------------------------------------------------------ publish */

static unsigned publish_fields(const mqhub_publish_opts_t *o)
{
    return o ? (o->n_tags > 0) + (o->key != NULL) + (o->n_attrs > 0) : 0;
}

/* body + the optional fields of @o (the caller counted them in the map). */
static void pack_publish(msgpack_packer *pk, const void *body, size_t len,
                         const mqhub_publish_opts_t *o)
{
    client_pack_str(pk, "body");
    msgpack_pack_bin(pk, len);
    msgpack_pack_bin_body(pk, body, len);
    if (!o)
        return;
    if (o->n_tags > 0)
        pack_str_array(pk, "tags", o->tags, o->n_tags);
    if (o->key)
        client_pack_kv_str(pk, "key", o->key);
    if (o->n_attrs > 0) {
        client_pack_str(pk, "attrs");
        msgpack_pack_map(pk, o->n_attrs);
        for (size_t i = 0; i < o->n_attrs; i++)
            client_pack_kv_str(pk, o->attrs[i].key, o->attrs[i].value);
    }
}

static void publish_req(mqhub_client_t *c, client_req_t *r, const char *topic,
                        const void *body, size_t len, const mqhub_publish_opts_t *o)
{
    client_req_init(c, r, "publish", 2 + publish_fields(o));
    client_pack_kv_str(&r->pk, "topic", topic);
    pack_publish(&r->pk, body, len, o);
}

static void decode_publish(const msgpack_object *m, int status, const char *errmsg,
                           mqhub_publish_result_t *out)
{
    memset(out, 0, sizeof *out);
    out->status = status;
    if (status != 0) {
        snprintf(out->error, sizeof out->error, "%s", errmsg ? errmsg : "");
        return;
    }
    client_copy_str(m, "msg_id", out->msg_id, sizeof out->msg_id);
    client_get_uint(m, "seq", &out->seq);
    client_get_uint(m, "delivered", &out->delivered);
}

int mqhub_client_publish(mqhub_client_t *c, const char *topic, const void *body, size_t len,
                         const mqhub_publish_opts_t *opts, mqhub_publish_result_t *out)
{
    client_req_t r;
    mqhub_response_t resp;
    publish_req(c, &r, topic, body, len, opts);
    int rc = client_call(c, &r, &resp);
    if (out)
        decode_publish(&resp.map, rc, mqhub_client_errmsg(c), out);
    mqhub_response_free(&resp);
    return rc;
}

static void publish_done(void *arg, int status, const msgpack_object *resp,
                         msgpack_zone **zone, const char *errmsg)
{
    client_async_t a = *(client_async_t *)arg;
    mqhub_publish_result_t res;
    free(arg);
    decode_publish(resp, status, errmsg, &res);
    ((mqhub_publish_cb)a.cb)(a.arg, &res);
}

int mqhub_client_publish_async(mqhub_client_t *c, const char *topic, const void *body,
                               size_t len, const mqhub_publish_opts_t *opts,
                               mqhub_publish_cb cb, void *arg)
{
    client_req_t r;
    publish_req(c, &r, topic, body, len, opts);
    return client_submit_async(c, &r, publish_done, (void (*)(void))cb, arg);
}

int mqhub_client_publish_batch(mqhub_client_t *c, const char *topic,
                               const mqhub_publish_msg_t *msgs, size_t n,
                               mqhub_publish_result_t *results)
{
    client_req_t r;
    mqhub_response_t resp;

    if (n == 0 || n > MQHUB_BATCH_MAX) {
        client_set_errmsg(c, "msgs: publish_batch takes 1-%d messages", MQHUB_BATCH_MAX);
        return MQHUB_EBAD_REQUEST;
    }
    client_req_init(c, &r, "publish_batch", 2);
    client_pack_kv_str(&r.pk, "topic", topic);
    client_pack_str(&r.pk, "msgs");
    msgpack_pack_array(&r.pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_map(&r.pk, 1 + publish_fields(msgs[i].opts));
        pack_publish(&r.pk, msgs[i].body, msgs[i].len, msgs[i].opts);
    }
    int rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *m = client_result_item(&resp.map, i);
        char err[160] = "";
        if (m)
            client_copy_str(m, "error", err, sizeof err);
        decode_publish(m, m ? client_item_status(m) : MQHUB_EINTERNAL, err, &results[i]);
    }
    mqhub_response_free(&resp);
    return 0;
}

/* ------------------------------------------------------- subscriptions */

static unsigned retry_fields(const mqhub_sub_opts_t *o)
{
    return (o->retry != NULL) + (o->max_attempts > 0) + (o->interval_ms > 0) +
           (o->max_interval_ms > 0);
}

static unsigned sub_fields(const mqhub_sub_opts_t *o)
{
    return (o->n_filter_tags > 0) + (o->n_binding_keys > 0) + (o->filter_script != NULL) +
           (retry_fields(o) > 0) + (o->dead_letter_queue != NULL) +
           (o->from != NULL || o->has_from_time) + o->ephemeral;
}

static void pack_endpoint(msgpack_packer *pk, const mqhub_sub_opts_t *o)
{
    client_pack_str(pk, "endpoint");
    msgpack_pack_map(pk, o->http && o->http_format ? 2 : 1);
    if (o->http) {
        client_pack_kv_str(pk, "http", o->http);
        if (o->http_format)
            client_pack_kv_str(pk, "format", o->http_format);
    } else if (o->queue) {
        client_pack_kv_str(pk, "queue", o->queue);
    } else {
        client_pack_str(pk, "push");
        msgpack_pack_true(pk);
    }
}

/* A name field of subscription.set: "" packs nil (remove it). */
static void pack_opt_name(msgpack_packer *pk, const char *key, const char *v)
{
    if (*v) {
        client_pack_kv_str(pk, key, v);
    } else {
        client_pack_str(pk, key);
        msgpack_pack_nil(pk);
    }
}

static void pack_retry(msgpack_packer *pk, const mqhub_sub_opts_t *o)
{
    if (retry_fields(o) > 0) {
        client_pack_str(pk, "retry");
        msgpack_pack_map(pk, retry_fields(o));
        if (o->retry)
            client_pack_kv_str(pk, "strategy", o->retry);
        if (o->max_attempts > 0)
            client_pack_kv_uint(pk, "max_attempts", o->max_attempts);
        if (o->interval_ms > 0)
            client_pack_kv_uint(pk, "interval_ms", o->interval_ms);
        if (o->max_interval_ms > 0)
            client_pack_kv_uint(pk, "max_interval_ms", o->max_interval_ms);
    }
}

static void pack_sub_opts(msgpack_packer *pk, const mqhub_sub_opts_t *o)
{
    pack_endpoint(pk, o);
    if (o->n_filter_tags > 0)
        pack_str_array(pk, "filter_tags", o->filter_tags, o->n_filter_tags);
    if (o->n_binding_keys > 0)
        pack_str_array(pk, "binding_keys", o->binding_keys, o->n_binding_keys);
    if (o->filter_script)
        client_pack_kv_str(pk, "filter_script", o->filter_script);
    pack_retry(pk, o);
    if (o->dead_letter_queue)
        client_pack_kv_str(pk, "dead_letter_queue", o->dead_letter_queue);
    if (o->has_from_time)
        client_pack_kv_uint(pk, "from", o->from_time);
    else if (o->from)
        client_pack_kv_str(pk, "from", o->from);
    if (o->ephemeral) {
        client_pack_str(pk, "ephemeral");
        msgpack_pack_true(pk);
    }
}

int mqhub_client_sub_create(mqhub_client_t *c, const char *topic, const char *name,
                            const mqhub_sub_opts_t *opts)
{
    mqhub_sub_opts_t none = {0};
    const mqhub_sub_opts_t *o = opts ? opts : &none;
    client_req_t r;
    client_req_init(c, &r, "subscription.create", 3 + sub_fields(o));
    client_pack_kv_str(&r.pk, "topic", topic);
    client_pack_kv_str(&r.pk, "name", name);
    pack_sub_opts(&r.pk, o);
    return client_call_simple(c, &r);
}

/* The fields subscription.set sends for @o (mqhub_client_sub_set). */
static unsigned set_fields(const mqhub_sub_opts_t *o)
{
    return (o->filter_tags != NULL) + (o->binding_keys != NULL) + (o->filter_script != NULL) +
           (retry_fields(o) > 0) + (o->dead_letter_queue != NULL) + (o->http != NULL);
}

int mqhub_client_sub_set(mqhub_client_t *c, const char *topic, const char *name,
                         const mqhub_sub_opts_t *opts)
{
    mqhub_sub_opts_t none = {0};
    const mqhub_sub_opts_t *o = opts ? opts : &none;
    client_req_t r;
    if (o->queue || o->from || o->has_from_time)
        return MQHUB_EBAD_REQUEST;
    client_req_init(c, &r, "subscription.set", 2 + set_fields(o));
    client_pack_kv_str(&r.pk, "topic", topic);
    client_pack_kv_str(&r.pk, "name", name);
    if (o->http)
        pack_endpoint(&r.pk, o);
    if (o->filter_tags)
        pack_str_array(&r.pk, "filter_tags", o->filter_tags, o->n_filter_tags);
    if (o->binding_keys)
        pack_str_array(&r.pk, "binding_keys", o->binding_keys, o->n_binding_keys);
    if (o->filter_script)
        pack_opt_name(&r.pk, "filter_script", o->filter_script);
    pack_retry(&r.pk, o);
    if (o->dead_letter_queue)
        pack_opt_name(&r.pk, "dead_letter_queue", o->dead_letter_queue);
    return client_call_simple(c, &r);
}

int mqhub_client_sub_delete(mqhub_client_t *c, const char *topic, const char *name)
{
    client_req_t r;
    client_req_init(c, &r, "subscription.delete", 2);
    client_pack_kv_str(&r.pk, "topic", topic);
    client_pack_kv_str(&r.pk, "name", name);
    return client_call_simple(c, &r);
}

int mqhub_client_sub_get(mqhub_client_t *c, const char *topic, const char *name,
                         mqhub_response_t *out)
{
    client_req_t r;
    client_req_init(c, &r, "subscription.get", 2);
    client_pack_kv_str(&r.pk, "topic", topic);
    client_pack_kv_str(&r.pk, "name", name);
    return client_call(c, &r, out);
}

int mqhub_client_sub_list(mqhub_client_t *c, const char *topic, mqhub_queue_list_t *out)
{
    client_req_t r;
    client_req_init(c, &r, "subscription.list", 1);
    client_pack_kv_str(&r.pk, "topic", topic);
    return client_list_call(c, &r, "subscriptions", out);
}

int mqhub_client_sub_rewind(mqhub_client_t *c, const char *topic, const char *name,
                            const uint64_t *time_ms, const uint64_t *seq, uint64_t *rewound)
{
    client_req_t r;
    mqhub_response_t resp;
    client_req_init(c, &r, "subscription.rewind", 2 + (time_ms != NULL) + (seq != NULL));
    client_pack_kv_str(&r.pk, "topic", topic);
    client_pack_kv_str(&r.pk, "name", name);
    if (time_ms)
        client_pack_kv_uint(&r.pk, "time", *time_ms);
    if (seq)
        client_pack_kv_uint(&r.pk, "seq", *seq);
    int rc = client_call(c, &r, &resp);
    if (rc == 0 && rewound && client_get_uint(&resp.map, "rewound", rewound) != 0)
        *rewound = 0;
    mqhub_response_free(&resp);
    return rc;
}

/* ------------------------------------------------------ push delivery */

static void sub_req(mqhub_client_t *c, client_req_t *r, const char *op, const char *topic,
                    const char *sub, unsigned extra)
{
    client_req_init(c, r, op, 2 + extra);
    client_pack_kv_str(&r->pk, "topic", topic);
    client_pack_kv_str(&r->pk, "subscription", sub);
}

int mqhub_client_subscribe(mqhub_client_t *c, const char *topic, const char *sub,
                           uint32_t credit)
{
    client_req_t r;
    sub_req(c, &r, "subscribe", topic, sub, 1);
    client_pack_kv_uint(&r.pk, "credit", credit);
    return client_call_simple(c, &r);
}

int mqhub_client_credit(mqhub_client_t *c, const char *topic, const char *sub, uint32_t n)
{
    client_req_t r;
    sub_req(c, &r, "credit", topic, sub, 1);
    client_pack_kv_uint(&r.pk, "n", n);
    return client_call_simple(c, &r);
}

int mqhub_client_unsubscribe(mqhub_client_t *c, const char *topic, const char *sub)
{
    client_req_t r;
    sub_req(c, &r, "unsubscribe", topic, sub, 0);
    return client_call_simple(c, &r);
}

static void ack_req(mqhub_client_t *c, client_req_t *r, const char *topic, const char *sub,
                    const uint64_t *seqs, size_t n)
{
    sub_req(c, r, "ack", topic, sub, 1);
    client_pack_str(&r->pk, "seqs");
    msgpack_pack_array(&r->pk, n);
    for (size_t i = 0; i < n; i++)
        msgpack_pack_uint64(&r->pk, seqs[i]);
}

int mqhub_client_ack(mqhub_client_t *c, const char *topic, const char *sub,
                     const uint64_t *seqs, size_t n, int *statuses)
{
    client_req_t r;
    mqhub_response_t resp;
    ack_req(c, &r, topic, sub, seqs, n);
    int rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    for (size_t i = 0; statuses && i < n; i++) {
        const msgpack_object *m = client_result_item(&resp.map, i);
        statuses[i] = m ? client_item_status(m) : 0;
    }
    mqhub_response_free(&resp);
    return 0;
}

int mqhub_client_ack_async(mqhub_client_t *c, const char *topic, const char *sub,
                           const uint64_t *seqs, size_t n, mqhub_response_cb cb, void *arg)
{
    client_req_t r;
    ack_req(c, &r, topic, sub, seqs, n);
    return client_submit_response(c, &r, cb, arg);
}

/* ------------------------------------------------------ push decoding */

static void free_push_msg(mqhub_push_msg_t *m)
{
    free_names(m->tags, m->n_tags);
    for (size_t i = 0; i < m->n_attrs; i++) {
        free((char *)m->attrs[i].key);
        free((char *)m->attrs[i].value);
    }
    free(m->attrs);
    free((char *)m->key);
}

static int decode_push_attrs(const msgpack_object *a, mqhub_push_msg_t *m)
{
    if (!a || a->type != MSGPACK_OBJECT_MAP || a->via.map.size == 0)
        return 0;
    m->attrs = calloc(a->via.map.size, sizeof *m->attrs);
    if (!m->attrs)
        return MQHUB_EINTERNAL;
    for (uint32_t i = 0; i < a->via.map.size; i++) {
        const msgpack_object *k = &a->via.map.ptr[i].key, *v = &a->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR)
            continue;
        char *ks = strndup(k->via.str.ptr, k->via.str.size);
        char *vs = strndup(v->via.str.ptr, v->via.str.size);
        if (!ks || !vs) {
            free(ks);
            free(vs);
            return MQHUB_EINTERNAL;
        }
        m->attrs[m->n_attrs++] = (mqhub_attr_t){ks, vs};
    }
    return 0;
}

static int decode_push_msg(const msgpack_object *o, mqhub_push_msg_t *m)
{
    const char *p;
    size_t n;
    uint64_t u;
    const msgpack_object *key = mqhub_map_get(o, "key");

    client_copy_str(o, "msg_id", m->msg_id, sizeof m->msg_id);
    client_get_uint(o, "seq", &m->seq);
    client_get_uint(o, "published_at", &m->published_at);
    if (client_get_uint(o, "attempt", &u) == 0)
        m->attempt = (uint32_t)u;
    /* The body points into the frame; msgpack-c leaves no NUL after it, so
     * it is copied to honour the documented NUL. */
    if (client_get_str(o, "body", &p, &n) != 0) {
        p = "";
        n = 0;
    }
    char *body = malloc(n + 1);
    if (!body)
        return MQHUB_EINTERNAL;
    memcpy(body, p, n);
    body[n] = '\0';
    m->body = body;
    m->body_len = n;
    if (key && key->type == MSGPACK_OBJECT_STR &&
        !(m->key = strndup(key->via.str.ptr, key->via.str.size)))
        return MQHUB_EINTERNAL;
    if (client_copy_names(o, "tags", &m->tags, &m->n_tags) != 0)
        return MQHUB_EINTERNAL;
    return decode_push_attrs(mqhub_map_get(o, "attrs"), m);
}

void client_push_dispatch(mqhub_client_push_cb cb, void *arg, const msgpack_object *map)
{
    mqhub_push_t p = {.map = map};
    const msgpack_object *msgs = mqhub_map_get(map, "msgs");
    const char *code;
    size_t cl;

    client_copy_str(map, "push", p.kind, sizeof p.kind);
    client_copy_str(map, "topic", p.topic, sizeof p.topic);
    client_copy_str(map, "subscription", p.subscription, sizeof p.subscription);
    client_copy_str(map, "error", p.error, sizeof p.error);
    client_copy_str(map, "leader", p.leader, sizeof p.leader);
    if (client_get_str(map, "code", &code, &cl) == 0)
        p.code = mqhub_err_from_name(code, cl);
    if (msgs && msgs->type == MSGPACK_OBJECT_ARRAY && msgs->via.array.size > 0) {
        p.msgs = calloc(msgs->via.array.size, sizeof *p.msgs);
        for (uint32_t i = 0; p.msgs && i < msgs->via.array.size; i++) {
            int rc = decode_push_msg(&msgs->via.array.ptr[i], &p.msgs[p.n]);
            p.n++;
            if (rc != 0)
                break;
        }
    }
    cb(arg, &p);
    for (size_t i = 0; i < p.n; i++) {
        free((void *)p.msgs[i].body);
        free_push_msg(&p.msgs[i]);
    }
    free(p.msgs);
}
