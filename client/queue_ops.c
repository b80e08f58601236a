/* queue_ops.c: libmqhub's queue and message operations (docs/protocol.md
 * "Queues", "Messages"), built on client.c's engine.
 *
 * Each op packs its request with client_req_init() + the packers, runs
 * client_call() (or client_submit() for the async ones) and copies the answer
 * into the plain structs of mqhub/client.h. Start with mqhub_client_send().
 * To wrap a new op: count its fields, pack them, decode the answer map with
 * client_get_uint()/client_get_str(); until then mqhub_client_call()
 * (session_ops.c) works.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

/* ------------------------------------------------------------ queues */

static unsigned attrs_count(const mqhub_queue_attrs_t *a)
{
    return (unsigned)__builtin_popcount(a->set & 0x3ffu);
}

static void pack_attrs(msgpack_packer *pk, const mqhub_queue_attrs_t *a)
{
    client_pack_str(pk, "attrs");
    msgpack_pack_map(pk, attrs_count(a));
    if (a->set & MQHUB_ATTR_VISIBILITY_TIMEOUT)
        client_pack_kv_uint(pk, "visibility_timeout", a->visibility_timeout);
    if (a->set & MQHUB_ATTR_POLLING_WAIT)
        client_pack_kv_uint(pk, "polling_wait", a->polling_wait);
    if (a->set & MQHUB_ATTR_MAX_MSG_SIZE)
        client_pack_kv_uint(pk, "max_msg_size", a->max_msg_size);
    if (a->set & MQHUB_ATTR_RETENTION)
        client_pack_kv_uint(pk, "retention", a->retention);
    if (a->set & MQHUB_ATTR_REWIND_WINDOW)
        client_pack_kv_uint(pk, "rewind_window", a->rewind_window);
    if (a->set & MQHUB_ATTR_MAX_BACKLOG)
        client_pack_kv_uint(pk, "max_backlog", a->max_backlog);
    if (a->set & MQHUB_ATTR_DELAY)
        client_pack_kv_uint(pk, "delay", a->delay);
    if (a->set & MQHUB_ATTR_DEAD_LETTER) {
        client_pack_str(pk, "dead_letter");
        msgpack_pack_map(pk, 2);
        client_pack_kv_str(pk, "queue", a->dead_letter_queue);
        client_pack_kv_uint(pk, "max_receives", a->dead_letter_max_receives);
    }
    if (a->set & MQHUB_ATTR_ORDERED) {
        client_pack_str(pk, "ordered");
        a->ordered ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    }
    if (a->set & MQHUB_ATTR_HOOK)
        client_pack_kv_str(pk, "hook", a->hook);
}

static void u32_attr(const msgpack_object *m, const char *k, uint32_t *v, unsigned bit,
                     unsigned *set)
{
    uint64_t u;
    if (client_get_uint(m, k, &u) == 0) {
        *v = (uint32_t)u;
        *set |= bit;
    }
}

static void decode_attrs(const msgpack_object *m, mqhub_queue_attrs_t *a)
{
    const msgpack_object *o;
    memset(a, 0, sizeof *a);
    u32_attr(m, "visibility_timeout", &a->visibility_timeout,
             MQHUB_ATTR_VISIBILITY_TIMEOUT, &a->set);
    u32_attr(m, "polling_wait", &a->polling_wait, MQHUB_ATTR_POLLING_WAIT, &a->set);
    u32_attr(m, "max_msg_size", &a->max_msg_size, MQHUB_ATTR_MAX_MSG_SIZE, &a->set);
    u32_attr(m, "retention", &a->retention, MQHUB_ATTR_RETENTION, &a->set);
    u32_attr(m, "rewind_window", &a->rewind_window, MQHUB_ATTR_REWIND_WINDOW, &a->set);
    u32_attr(m, "delay", &a->delay, MQHUB_ATTR_DELAY, &a->set);
    if (client_get_uint(m, "max_backlog", &a->max_backlog) == 0)
        a->set |= MQHUB_ATTR_MAX_BACKLOG;
    o = mqhub_map_get(m, "dead_letter");
    if (o && o->type == MSGPACK_OBJECT_MAP) {
        client_copy_str(o, "queue", a->dead_letter_queue, sizeof a->dead_letter_queue);
        u32_attr(o, "max_receives", &a->dead_letter_max_receives, MQHUB_ATTR_DEAD_LETTER,
                 &a->set);
        a->set |= MQHUB_ATTR_DEAD_LETTER;
    }
    o = mqhub_map_get(m, "ordered");
    if (o && o->type == MSGPACK_OBJECT_BOOLEAN) {
        a->ordered = o->via.boolean;
        a->set |= MQHUB_ATTR_ORDERED;
    }
    if (mqhub_map_get(m, "hook")) {
        client_copy_str(m, "hook", a->hook, sizeof a->hook);
        a->set |= MQHUB_ATTR_HOOK;
    }
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return MQHUB_EBAD_REQUEST;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0')
        return MQHUB_EBAD_REQUEST;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes"))
        return *out = true, 0;
    if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no"))
        return *out = false, 0;
    return MQHUB_EBAD_REQUEST;
}

static int parse_dead_letter(mqhub_queue_attrs_t *a, const char *v)
{
    const char *colon = strrchr(v, ':');
    uint64_t n;
    size_t ql = colon ? (size_t)(colon - v) : 0;
    if (!colon || ql == 0 || ql > MQHUB_NAME_MAX || parse_u64(colon + 1, &n) != 0)
        return MQHUB_EBAD_REQUEST;
    memcpy(a->dead_letter_queue, v, ql);
    a->dead_letter_queue[ql] = '\0';
    a->dead_letter_max_receives = (uint32_t)n;
    a->set |= MQHUB_ATTR_DEAD_LETTER;
    return 0;
}

int mqhub_queue_attrs_parse(mqhub_queue_attrs_t *a, const char *name, const char *value)
{
    static const struct {
        const char *name;
        unsigned bit;
        size_t off;
    } u32s[] = {
        {"visibility_timeout", MQHUB_ATTR_VISIBILITY_TIMEOUT,
         offsetof(mqhub_queue_attrs_t, visibility_timeout)},
        {"polling_wait", MQHUB_ATTR_POLLING_WAIT, offsetof(mqhub_queue_attrs_t, polling_wait)},
        {"max_msg_size", MQHUB_ATTR_MAX_MSG_SIZE, offsetof(mqhub_queue_attrs_t, max_msg_size)},
        {"retention", MQHUB_ATTR_RETENTION, offsetof(mqhub_queue_attrs_t, retention)},
        {"rewind_window", MQHUB_ATTR_REWIND_WINDOW,
         offsetof(mqhub_queue_attrs_t, rewind_window)},
        {"delay", MQHUB_ATTR_DELAY, offsetof(mqhub_queue_attrs_t, delay)},
    };
    uint64_t u;

    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) {
        if (strcmp(name, u32s[i].name) != 0)
            continue;
        if (parse_u64(value, &u) != 0 || u > UINT32_MAX)
            return MQHUB_EBAD_REQUEST;
        *(uint32_t *)((char *)a + u32s[i].off) = (uint32_t)u;
        a->set |= u32s[i].bit;
        return 0;
    }
    if (!strcmp(name, "max_backlog")) {
        if (parse_u64(value, &a->max_backlog) != 0)
            return MQHUB_EBAD_REQUEST;
        a->set |= MQHUB_ATTR_MAX_BACKLOG;
        return 0;
    }
    if (!strcmp(name, "ordered")) {
        a->set |= MQHUB_ATTR_ORDERED;
        return parse_bool(value, &a->ordered);
    }
    if (!strcmp(name, "dead_letter"))
        return parse_dead_letter(a, value);
    if (!strcmp(name, "hook") && strlen(value) <= MQHUB_NAME_MAX) {
        strcpy(a->hook, value);
        a->set |= MQHUB_ATTR_HOOK;
        return 0;
    }
    return MQHUB_EBAD_REQUEST;
}

static int queue_attrs_op(mqhub_client_t *c, const char *op, const char *name,
                          const mqhub_queue_attrs_t *attrs, bool always)
{
    static const mqhub_queue_attrs_t none;
    client_req_t r;
    bool with = attrs || always;
    client_req_init(c, &r, op, 1 + with);
    client_pack_kv_str(&r.pk, "name", name);
    if (with)
        pack_attrs(&r.pk, attrs ? attrs : &none);
    return client_call_simple(c, &r);
}

int mqhub_client_queue_create(mqhub_client_t *c, const char *name,
                              const mqhub_queue_attrs_t *attrs)
{
    return queue_attrs_op(c, "queue.create", name, attrs, false);
}

int mqhub_client_queue_set(mqhub_client_t *c, const char *name,
                           const mqhub_queue_attrs_t *attrs)
{
    return queue_attrs_op(c, "queue.set", name, attrs, true);
}

static int queue_name_op(mqhub_client_t *c, const char *op, const char *name)
{
    client_req_t r;
    client_req_init(c, &r, op, 1);
    client_pack_kv_str(&r.pk, "name", name);
    return client_call_simple(c, &r);
}

int mqhub_client_queue_delete(mqhub_client_t *c, const char *name)
{
    return queue_name_op(c, "queue.delete", name);
}

int mqhub_client_queue_purge(mqhub_client_t *c, const char *name)
{
    return queue_name_op(c, "queue.purge", name);
}

int mqhub_client_queue_get(mqhub_client_t *c, const char *name, mqhub_queue_info_t *out)
{
    client_req_t r;
    mqhub_response_t resp;
    mqhub_queue_stats_t *s = &out->stats;

    memset(out, 0, sizeof *out);
    client_req_init(c, &r, "queue.get", 1);
    client_pack_kv_str(&r.pk, "name", name);
    int rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    client_copy_str(&resp.map, "name", out->name, sizeof out->name);
    decode_attrs(mqhub_map_get(&resp.map, "attrs"), &out->attrs);
    const msgpack_object *st = mqhub_map_get(&resp.map, "stats");
    client_get_uint(st, "ready", &s->ready);
    client_get_uint(st, "inflight", &s->inflight);
    client_get_uint(st, "delayed", &s->delayed);
    client_get_uint(st, "retained", &s->retained);
    client_get_uint(st, "oldest_age_ms", &s->oldest_age_ms);
    client_get_uint(st, "sent_total", &s->sent_total);
    client_get_uint(st, "received_total", &s->received_total);
    client_get_uint(st, "deleted_total", &s->deleted_total);
    mqhub_response_free(&resp);
    return 0;
}

void mqhub_queue_list_free(mqhub_queue_list_t *l)
{
    for (size_t i = 0; l && i < l->n; i++)
        free(l->names[i]);
    if (l) {
        free(l->names);
        memset(l, 0, sizeof *l);
    }
}

int mqhub_client_queue_list(mqhub_client_t *c, const char *prefix, uint64_t offset,
                            uint64_t limit, mqhub_queue_list_t *out)
{
    client_req_t r;
    client_list_req(c, &r, "queue.list", prefix, offset, limit);
    return client_list_call(c, &r, "queues", out);
}

int mqhub_client_queue_rewind(mqhub_client_t *c, const char *name,
                              const uint64_t *time_ms, const uint64_t *seq,
                              uint64_t *rewound)
{
    client_req_t r;
    mqhub_response_t resp;

    client_req_init(c, &r, "queue.rewind", 1 + (time_ms != NULL) + (seq != NULL));
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

/* ---------------------------------------------------------- messages */

/* Pack the fields of one message (body + options) after its map header. */
static unsigned msg_fields(const mqhub_send_opts_t *o)
{
    if (!o)
        return 1;
    return 1u + o->has_delay + (o->n_attrs > 0) + (o->group != NULL) +
           (o->dedup_id != NULL);
}

static void pack_msg(msgpack_packer *pk, const void *body, size_t len,
                     const mqhub_send_opts_t *o)
{
    client_pack_str(pk, "body");
    msgpack_pack_bin(pk, len);
    msgpack_pack_bin_body(pk, body, len);
    if (!o)
        return;
    if (o->has_delay)
        client_pack_kv_uint(pk, "delay", o->delay);
    if (o->n_attrs > 0) {
        client_pack_str(pk, "attrs");
        msgpack_pack_map(pk, o->n_attrs);
        for (size_t i = 0; i < o->n_attrs; i++)
            client_pack_kv_str(pk, o->attrs[i].key, o->attrs[i].value);
    }
    if (o->group)
        client_pack_kv_str(pk, "group", o->group);
    if (o->dedup_id)
        client_pack_kv_str(pk, "dedup_id", o->dedup_id);
}

static void send_req(mqhub_client_t *c, client_req_t *r, const char *queue,
                     const void *body, size_t len, const mqhub_send_opts_t *o)
{
    client_req_init(c, r, "send", msg_fields(o) + 1);
    client_pack_kv_str(&r->pk, "queue", queue);
    pack_msg(&r->pk, body, len, o);
}

/* Fill @out from a {msg_id, seq} or {code, error} map. */
static void decode_send_result(const msgpack_object *m, int status, const char *errmsg,
                               mqhub_send_result_t *out)
{
    const char *code;
    size_t cl;
    memset(out, 0, sizeof *out);
    out->status = status;
    if (status == 0 && m && client_get_str(m, "code", &code, &cl) == 0)
        out->status = mqhub_err_from_name(code, cl);
    if (m) {
        client_copy_str(m, "msg_id", out->msg_id, sizeof out->msg_id);
        client_get_uint(m, "seq", &out->seq);
        client_copy_str(m, "error", out->error, sizeof out->error);
    }
    if (errmsg && errmsg[0] && !out->error[0])
        snprintf(out->error, sizeof out->error, "%s", errmsg);
}

int mqhub_client_send(mqhub_client_t *c, const char *queue, const void *body,
                      size_t len, const mqhub_send_opts_t *opts, mqhub_send_result_t *out)
{
    client_req_t r;
    mqhub_response_t resp;

    send_req(c, &r, queue, body, len, opts);
    int rc = client_call(c, &r, &resp);
    if (out)
        decode_send_result(rc == 0 ? &resp.map : NULL, rc, mqhub_client_errmsg(c), out);
    mqhub_response_free(&resp);
    return rc;
}

static void send_done(void *arg, int status, const msgpack_object *resp,
                      msgpack_zone **zone, const char *errmsg)
{
    client_async_t a = *(client_async_t *)arg;
    mqhub_send_result_t res;
    free(arg);
    decode_send_result(status == 0 ? resp : NULL, status, errmsg, &res);
    ((mqhub_send_cb)a.cb)(a.arg, &res);
}

int mqhub_client_send_async(mqhub_client_t *c, const char *queue, const void *body,
                            size_t len, const mqhub_send_opts_t *opts, mqhub_send_cb cb,
                            void *arg)
{
    client_req_t r;
    send_req(c, &r, queue, body, len, opts);
    return client_submit_async(c, &r, send_done, (void (*)(void))cb, arg);
}

int mqhub_client_send_batch(mqhub_client_t *c, const char *queue,
                            const mqhub_batch_msg_t *msgs, size_t n,
                            mqhub_send_result_t *results)
{
    client_req_t r;
    mqhub_response_t resp;

    if (n == 0 || n > MQHUB_BATCH_MAX) {
        client_set_errmsg(c, "send_batch takes 1 to %d messages, not %zu", MQHUB_BATCH_MAX, n);
        return MQHUB_EBAD_REQUEST;
    }
    client_req_init(c, &r, "send_batch", 2);
    client_pack_kv_str(&r.pk, "queue", queue);
    client_pack_str(&r.pk, "msgs");
    msgpack_pack_array(&r.pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_map(&r.pk, msg_fields(msgs[i].opts));
        pack_msg(&r.pk, msgs[i].body, msgs[i].len, msgs[i].opts);
    }
    int rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *m = client_result_item(&resp.map, i);
        decode_send_result(m, m ? 0 : MQHUB_EINTERNAL, m ? "" : "missing result", &results[i]);
    }
    mqhub_response_free(&resp);
    return 0;
}

static char *dup_str_field(const msgpack_object *m, const char *key)
{
    const char *p;
    size_t n;
    return client_get_str(m, key, &p, &n) == 0 ? strndup(p, n) : NULL;
}

static int decode_msg_attrs(const msgpack_object *a, mqhub_msg_t *m)
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
        m->attrs[m->n_attrs].key = strndup(k->via.str.ptr, k->via.str.size);
        m->attrs[m->n_attrs].value = strndup(v->via.str.ptr, v->via.str.size);
        m->n_attrs++;
    }
    return 0;
}

static int decode_msg(const msgpack_object *o, mqhub_msg_t *m)
{
    const char *body;
    size_t bl;
    uint64_t rc = 0;

    client_copy_str(o, "msg_id", m->msg_id, sizeof m->msg_id);
    client_get_uint(o, "seq", &m->seq);
    client_get_uint(o, "enqueued_at", &m->enqueued_at);
    client_get_uint(o, "first_received_at", &m->first_received_at);
    client_get_uint(o, "next_visible_at", &m->next_visible_at);
    client_get_uint(o, "receive_count", &rc);
    m->receive_count = (uint32_t)rc;
    m->receipt = dup_str_field(o, "receipt");
    m->group = dup_str_field(o, "group");
    if (client_get_str(o, "body", &body, &bl) != 0)
        bl = 0;
    m->body = malloc(bl + 1);
    if (!m->body || !m->receipt)
        return MQHUB_EINTERNAL;
    if (bl)
        memcpy(m->body, body, bl);
    ((char *)m->body)[bl] = '\0';
    m->body_len = bl;
    return decode_msg_attrs(mqhub_map_get(o, "attrs"), m);
}

void mqhub_msg_list_free(mqhub_msg_list_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        mqhub_msg_t *m = &l->msgs[i];
        for (size_t j = 0; j < m->n_attrs; j++) {
            free((char *)m->attrs[j].key);
            free((char *)m->attrs[j].value);
        }
        free(m->attrs);
        free(m->receipt);
        free(m->group);
        free(m->body);
    }
    free(l->msgs);
    memset(l, 0, sizeof *l);
}

int mqhub_client_receive(mqhub_client_t *c, const char *queue,
                         const mqhub_receive_opts_t *opts, mqhub_msg_list_t *out)
{
    mqhub_receive_opts_t o = opts ? *opts : (mqhub_receive_opts_t){0, -1, -1};
    client_req_t r;
    mqhub_response_t resp;

    memset(out, 0, sizeof *out);
    client_req_init(c, &r, "receive", 2 + (o.wait >= 0) + (o.visibility >= 0));
    client_pack_kv_str(&r.pk, "queue", queue);
    client_pack_kv_uint(&r.pk, "max", o.max ? o.max : 1);
    if (o.wait >= 0)
        client_pack_kv_uint(&r.pk, "wait", (uint64_t)o.wait);
    if (o.visibility >= 0)
        client_pack_kv_uint(&r.pk, "visibility", (uint64_t)o.visibility);
    /* The queue's polling_wait (at most MQHUB_POLLING_WAIT_MAX s) applies when
     * wait is not given. */
    r.timeout_ms = (o.wait >= 0 ? o.wait : MQHUB_POLLING_WAIT_MAX) * 1000 + 5000;
    int rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    const msgpack_object *msgs = mqhub_map_get(&resp.map, "msgs");
    size_t n = msgs && msgs->type == MSGPACK_OBJECT_ARRAY ? msgs->via.array.size : 0;
    out->msgs = calloc(n ? n : 1, sizeof *out->msgs);
    rc = out->msgs ? 0 : MQHUB_EINTERNAL;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        out->n++;
        rc = decode_msg(&msgs->via.array.ptr[i], &out->msgs[i]);
    }
    mqhub_response_free(&resp);
    if (rc != 0)
        mqhub_msg_list_free(out);
    return rc;
}

int mqhub_client_delete(mqhub_client_t *c, const char *queue,
                        const char *const *receipts, size_t n, int *statuses)
{
    client_req_t r;
    mqhub_response_t resp;

    client_req_init(c, &r, "delete", 2);
    client_pack_kv_str(&r.pk, "queue", queue);
    client_pack_str(&r.pk, "receipts");
    msgpack_pack_array(&r.pk, n);
    for (size_t i = 0; i < n; i++)
        client_pack_str(&r.pk, receipts[i]);
    int rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    for (size_t i = 0; statuses && i < n; i++) {
        const msgpack_object *m = client_result_item(&resp.map, i);
        statuses[i] = m ? client_item_status(m) : MQHUB_EINTERNAL;
    }
    mqhub_response_free(&resp);
    return 0;
}

int mqhub_client_change_visibility(mqhub_client_t *c, const char *queue,
                                   const char *receipt, uint32_t timeout,
                                   uint64_t *next_visible_at)
{
    client_req_t r;
    mqhub_response_t resp;

    client_req_init(c, &r, "change_visibility", 3);
    client_pack_kv_str(&r.pk, "queue", queue);
    client_pack_kv_str(&r.pk, "receipt", receipt);
    client_pack_kv_uint(&r.pk, "timeout", timeout);
    int rc = client_call(c, &r, &resp);
    if (rc == 0 && next_visible_at &&
        client_get_uint(&resp.map, "next_visible_at", next_visible_at) != 0)
        *next_visible_at = 0;
    mqhub_response_free(&resp);
    return rc;
}

/* ------------------------------------------------------- peek, redrive */

int mqhub_client_queue_peek(mqhub_client_t *c, const char *queue, uint32_t max, uint64_t from,
                            mqhub_response_t *out)
{
    client_req_t r;

    client_req_init(c, &r, "queue.peek", 2 + (from != 0));
    client_pack_kv_str(&r.pk, "queue", queue);
    client_pack_kv_uint(&r.pk, "max", max);
    if (from != 0)
        client_pack_kv_uint(&r.pk, "from", from);
    return client_call(c, &r, out);
}

int mqhub_client_queue_redrive(mqhub_client_t *c, const char *queue, const char *to,
                               uint32_t max, uint64_t from, mqhub_redrive_result_t *out)
{
    client_req_t r;
    mqhub_response_t resp;

    client_req_init(c, &r, "queue.redrive", 1 + (to != NULL) + (max != 0) + (from != 0));
    client_pack_kv_str(&r.pk, "queue", queue);
    if (to != NULL)
        client_pack_kv_str(&r.pk, "to", to);
    if (max != 0)
        client_pack_kv_uint(&r.pk, "max", max);
    if (from != 0)
        client_pack_kv_uint(&r.pk, "from", from);
    int rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    memset(out, 0, sizeof *out);
    client_get_uint(&resp.map, "moved", &out->moved);
    client_get_uint(&resp.map, "kept", &out->kept);
    client_get_uint(&resp.map, "remaining", &out->remaining);
    client_get_uint(&resp.map, "next", &out->next);
    mqhub_response_free(&resp);
    return 0;
}
