/* actions.c: the CMQ action table (docs/cmq.md "Actions"). Each CMQ action
 * is one row of `actions` below: a step function that turns the request's
 * params into native requests (docs/protocol.md) and their replies into
 * CMQ's JSON. Queues, messages and topics are the hub's own; nothing here
 * keeps state between requests.
 *
 * Start with cmq_call_start(): it finds the row (names compared without
 * case) and runs its step function with no reply. A step function either
 * sends one native request (native(); its reply comes back to the same
 * function with c->step incremented), or ends the call: finish() with the
 * reply's fields, fail() with a CMQ error, or native_error() with the
 * native reply's error mapped by cmq_error_map().
 *
 * To add an action: write its step function (params with str_param() /
 * int_param() / array_param(), which answer 4000 themselves) and add a row.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmq.h"
#include "codec.h"
#include "mqhub/protocol.h"

typedef void (*step_fn)(cmq_call_t *c, const json_t *r);

typedef struct cmq_action {
    const char *name;
    step_fn step;
    bool topic; /* NOT_FOUND / EXISTS name a topic */
} cmq_action_t;

/* ---------------------------------------------------------------- replies */

json_t *cmq_error(int code, int module, const char *fmt, ...)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg, "(%d)", module);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    return json_pack("{s:i, s:s}", "code", code, "message", msg);
}

void cmq_error_map(const char *native, bool topic, int *code, int *module)
{
    static const struct {
        const char *native;
        int code, module, topic_module;
    } map[] = {
        {"BAD_REQUEST", CMQ_EPARAM, 10110, 10110},
        {"BAD_NAME", CMQ_EPARAM, 10110, 10110},
        {"BLOCKED", CMQ_EPARAM, 10110, 10110},
        {"UNKNOWN_OP", CMQ_EPARAM, 10430, 10430},
        {"UNAUTHORIZED", CMQ_EAUTH, 10030, 10030},
        {"FORBIDDEN", CMQ_ENO_ACCESS, 10032, 10032},
        {"TOO_LARGE", CMQ_ETOO_LARGE, 10230, 10230},
        {"FRAME_TOO_LARGE", CMQ_ETOO_LARGE, 10230, 10230},
        {"BACKLOG_FULL", CMQ_EHEAP_FULL, 10240, 10240},
        {"INVALID_RECEIPT", CMQ_ERECEIPT, 10260, 10260},
        {"NOT_FOUND", CMQ_ENOT_FOUND, 10100, 10600},
        {"EXISTS", CMQ_EEXISTS, 10020, 10610},
    };

    *code = CMQ_EINTERNAL; /* NOT_LEADER, UNAVAILABLE, TIMEOUT, INTERNAL: retry */
    *module = 10010;
    for (size_t i = 0; native != NULL && i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(map[i].native, native) == 0) {
            *code = map[i].code;
            *module = topic ? map[i].topic_module : map[i].module;
        }
    }
}

static void end(cmq_call_t *c, json_t *reply)
{
    json_decref(c->scratch);
    c->scratch = NULL;
    c->done(c->arg, reply);
}

/* Success: @fields (stolen, may be NULL) with code 0 and message "". */
static void finish(cmq_call_t *c, json_t *fields)
{
    json_t *reply = fields != NULL ? fields : json_object();

    json_object_set_new(reply, "code", json_integer(0));
    json_object_set_new(reply, "message", json_string(""));
    end(c, reply);
}

static void fail(cmq_call_t *c, json_t *err)
{
    end(c, err);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

static json_int_t jint(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

/* A native time (ms since the epoch) of @o as CMQ's unix seconds. */
static json_int_t unix_s(const json_t *o, const char *key)
{
    return jint(o, key) / 1000;
}

static bool native_ok(const json_t *r)
{
    return json_is_true(json_object_get(r, "ok"));
}

/* The native error {code, error} of @r as a CMQ error. */
static json_t *mapped(const cmq_call_t *c, const json_t *r)
{
    int code, module;

    cmq_error_map(jstr(r, "code"), c->action->topic, &code, &module);
    return cmq_error(code, module, "%s", jstr(r, "error"));
}

static void native_error(cmq_call_t *c, const json_t *r)
{
    fail(c, mapped(c, r));
}

/* ---------------------------------------------------------------- requests */

static void on_native(void *arg, const char *buf, size_t len)
{
    cmq_call_t *c = arg;
    msgpack_unpacked u;
    size_t off = 0;
    json_t *r = NULL;

    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS)
        r = mpjson_unpack(&u.data);
    msgpack_unpacked_destroy(&u);
    if (r == NULL) {
        fail(c, cmq_error(CMQ_EINTERNAL, 10010, "unreadable reply from the hub"));
        return;
    }
    c->step++;
    c->action->step(c, r);
    json_decref(r);
}

/* Send the native request @req (stolen: {"op", ...}); its reply comes to
 * the action's step function. */
static void native(cmq_call_t *c, json_t *req)
{
    char err[64];
    msgpack_sbuffer sb;
    msgpack_packer pk;

    json_object_set_new(req, "id", json_integer((json_int_t)++c->next_id));
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* Fails only on a "<key>_base64" string, a key no action builds. */
    (void)codec_json_pack(req, &pk, err, sizeof err);
    json_decref(req);
    c->api->request(c->session, sb.data, sb.size, on_native, c);
    msgpack_sbuffer_destroy(&sb);
}

/* ---------------------------------------------------------------- params */

/* The string param @key into *@v (a new JSON string); false after failing
 * the call when it is required and absent or empty. Absent and optional:
 * true with *@v NULL. */
static bool str_param(cmq_call_t *c, const char *key, bool required, json_t **v)
{
    size_t len;
    const char *s = cmq_param(c->params, key, &len);

    *v = NULL;
    if (s == NULL || len == 0) {
        if (!required)
            return true;
        fail(c, cmq_error(CMQ_EPARAM, key[0] == 'm' ? 10120 : 10000, "%s is missing or "
                          "empty", key));
        return false;
    }
    *v = json_stringn_nocheck(s, len);
    return true;
}

/* The name param @key (queueName, topicName, ...): a borrowed string, NULL
 * after failing the call. */
static const char *name_param(cmq_call_t *c, const char *key)
{
    size_t len;
    const char *s = cmq_param(c->params, key, &len);

    if (s == NULL || len == 0 || strlen(s) != len) {
        fail(c, cmq_error(CMQ_EPARAM, 10000, "%s is missing or empty", key));
        return NULL;
    }
    return s;
}

/* The integer param @key in [@lo, @hi] into *@out: 1, 0 when absent, -1
 * after failing the call. */
static int int_param(cmq_call_t *c, const char *key, long long lo, long long hi,
                     long long *out)
{
    const char *s = cmq_param(c->params, key, NULL);
    char *endp;
    long long v;

    if (s == NULL || *s == '\0')
        return 0;
    v = strtoll(s, &endp, 10);
    if (*endp != '\0' || v < lo || v > hi) {
        fail(c, cmq_error(CMQ_EPARAM, 10110, "%s must be an integer from %lld to %lld", key,
                          lo, hi));
        return -1;
    }
    *out = v;
    return 1;
}

/* The array param @name.N as a JSON array of strings (a new reference; an
 * empty array when absent), at most @max; NULL after failing the call. */
static json_t *array_param(cmq_call_t *c, const char *name, size_t max)
{
    const char *vals[CMQ_BATCH_MAX];
    size_t lens[CMQ_BATCH_MAX], n;
    int rc = cmq_param_array(c->params, name, vals, lens, max, &n);
    json_t *a;

    if (rc == -2) {
        fail(c, cmq_error(CMQ_EPARAM, 10370, "%zu %s.n given, at most %zu", n, name, max));
        return NULL;
    }
    if (rc != 0) {
        fail(c, cmq_error(CMQ_EPARAM, 10110, "%s.n must be numbered from 0 or 1 without gaps",
                          name));
        return NULL;
    }
    a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_stringn_nocheck(vals[i], lens[i]));
    return a;
}

/* ---------------------------------------------------------------- attrs */

typedef struct attr_map {
    const char *cmq, *native;
    long long lo, hi;
} attr_map_t;

static const attr_map_t queue_attrs[] = {
    {"maxMsgHeapNum", "max_backlog", 1, 100000000},
    {"pollingWaitSeconds", "polling_wait", 0, CMQ_WAIT_MAX},
    {"visibilityTimeout", "visibility_timeout", 1, 43200},
    {"maxMsgSize", "max_msg_size", 1024, 1048576},
    {"msgRetentionSeconds", "retention", 60, 1296000},
    {"rewindSeconds", "rewind_window", 0, 1296000},
    {"delaySeconds", "delay", 0, 3600},
    {NULL, NULL, 0, 0},
};

static const attr_map_t topic_attrs[] = {
    {"maxMsgSize", "max_msg_size", 1024, 1048576},
    {"msgRetentionSeconds", "retention", 60, 1296000},
    {NULL, NULL, 0, 0},
};

/* The native attrs of the params (only those given), plus dead_letter for
 * queues; NULL after failing the call. */
static json_t *attrs_param(cmq_call_t *c, const attr_map_t *map)
{
    json_t *attrs = json_object();
    long long v, max_receives = 0;
    const char *dlq = cmq_param(c->params, "deadLetterQueueName", NULL);

    for (const attr_map_t *m = map; m->cmq != NULL; m++) {
        int rc = int_param(c, m->cmq, m->lo, m->hi, &v);
        if (rc < 0) {
            json_decref(attrs);
            return NULL;
        }
        if (rc > 0)
            json_object_set_new(attrs, m->native, json_integer(v));
    }
    if (map == queue_attrs && dlq != NULL && *dlq != '\0') {
        if (int_param(c, "maxReceiveCount", 1, 1000, &max_receives) < 0) {
            json_decref(attrs);
            return NULL;
        }
        json_object_set_new(attrs, "dead_letter",
                            json_pack("{s:s, s:I}", "queue", dlq, "max_receives",
                                      (json_int_t)(max_receives ? max_receives : 3)));
    }
    return attrs;
}

/* The CMQ attributes of native @attrs into @out. */
static void attrs_reply(json_t *out, const json_t *attrs, const attr_map_t *map)
{
    for (const attr_map_t *m = map; m->cmq != NULL; m++)
        json_object_set_new(out, m->cmq, json_integer(jint(attrs, m->native)));
}

/* ---------------------------------------------------------------- lists */

/* ListQueue / ListTopic / ListSubscriptionByTopic: every name (paged
 * through the native list), then searchWord (a substring, as in CMQ),
 * offset and limit here. scratch: {"names": [...]}. Returns true when
 * @r completed the list; false when a page was requested or the call
 * failed (then *@failed). */
static bool list_pages(cmq_call_t *c, const json_t *r, const char *op, const char *key,
                       bool paged, json_t *base_req, bool *failed)
{
    json_t *names, *n;
    size_t i;

    *failed = false;
    if (r == NULL) {
        c->scratch = json_pack("{s:[]}", "names");
    } else if (!native_ok(r)) {
        *failed = true;
        native_error(c, r);
        json_decref(base_req);
        return false;
    } else {
        names = json_object_get(c->scratch, "names");
        json_array_foreach(json_object_get(r, key), i, n)
            json_array_append(names, json_is_string(n) ? n : json_object_get(n, "name"));
        if (json_array_size(json_object_get(r, key)) == 0 || !paged ||
            json_array_size(names) >= (size_t)jint(r, "total")) {
            json_decref(base_req);
            return true;
        }
    }
    json_object_set_new(base_req, "op", json_string(op));
    if (paged) {
        json_object_set_new(base_req, "offset",
                            json_integer((json_int_t)json_array_size(
                                json_object_get(c->scratch, "names"))));
        json_object_set_new(base_req, "limit", json_integer(1000));
    }
    native(c, base_req);
    return false;
}

/* The names of scratch that contain searchWord, offset/limit applied, into
 * a new array; the count before offset/limit in *@total. NULL after failing
 * the call. */
static json_t *list_window(cmq_call_t *c, size_t *total)
{
    const char *word = cmq_param(c->params, "searchWord", NULL);
    long long offset = 0, limit = 20;
    json_t *out, *n;
    size_t i, seen = 0;

    if (int_param(c, "offset", 0, 1000000000, &offset) < 0 ||
        int_param(c, "limit", 1, 1000, &limit) < 0)
        return NULL;
    out = json_array();
    json_array_foreach(json_object_get(c->scratch, "names"), i, n) {
        if (word != NULL && strstr(json_string_value(n), word) == NULL)
            continue;
        if (seen >= (size_t)offset && json_array_size(out) < (size_t)limit)
            json_array_append(out, n);
        seen++;
    }
    *total = seen;
    return out;
}

static void list_names(cmq_call_t *c, const json_t *r, const char *op, const char *key,
                       const char *list, const char *id, const char *name)
{
    bool failed;
    size_t total, i;
    json_t *window, *items, *n;

    if (!list_pages(c, r, op, key, true, json_object(), &failed))
        return;
    if ((window = list_window(c, &total)) == NULL)
        return;
    items = json_array();
    json_array_foreach(window, i, n)
        json_array_append_new(items, json_pack("{s:O, s:O}", id, n, name, n));
    json_decref(window);
    finish(c, json_pack("{s:I, s:o}", "totalCount", (json_int_t)total, list, items));
}

/* ---------------------------------------------------------------- queues */

/* {"op": @op, @key: <param @param>}: a new request, NULL after failing. */
static json_t *named_req(cmq_call_t *c, const char *op, const char *key, const char *param)
{
    const char *name = name_param(c, param);
    return name != NULL ? json_pack("{s:s, s:s}", "op", op, key, name) : NULL;
}

/* Send {"op": @op, "name": <param @param>} (nothing after failing). */
static void native_named(cmq_call_t *c, const char *op, const char *param)
{
    json_t *req = named_req(c, op, "name", param);

    if (req != NULL)
        native(c, req);
}

/* @req (stolen, NULL after failing) with "attrs" from the params by @map;
 * NULL after failing the call (@req freed). */
static json_t *with_attrs(cmq_call_t *c, json_t *req, const attr_map_t *map)
{
    json_t *attrs;

    if (req == NULL || (attrs = attrs_param(c, map)) == NULL) {
        json_decref(req);
        return NULL;
    }
    json_object_set_new(req, "attrs", attrs);
    return req;
}

/* Step 1 of a create, which CMQ refuses for an existing name even with equal
 * settings: @r answers the lookup of @name. Taken: fail with @code and
 * @subcode ("@kind @name already exists"); not found: send the create
 * request kept in c->scratch, which keeps only its {"name"} from then on. */
static void create_if_absent(cmq_call_t *c, const json_t *r, enum cmq_code code, int subcode,
                             const char *kind, const char *name)
{
    json_t *req;

    if (native_ok(r)) {
        fail(c, cmq_error(code, subcode, "%s %s already exists", kind, name));
    } else if (strcmp(jstr(r, "code"), "NOT_FOUND") != 0) {
        native_error(c, r);
    } else {
        req = c->scratch;
        c->scratch = json_pack("{s:O}", "name", json_object_get(req, "name"));
        native(c, req);
    }
}

/* A create action: step 0 keeps the create request @req (stolen; nothing
 * when NULL) and asks @get_op whether the name is taken, step 1 sends @req
 * when it is not (create_if_absent), the last step answers {@id_key: name}.
 * @kind and @exists_code for the CMQ error when the name is taken. */
static void create_unless_exists(cmq_call_t *c, const json_t *r, json_t *req, const char *get_op,
                                 const char *kind, int exists_code, const char *id_key)
{
    switch (c->step) {
    case 0:
        if (req == NULL)
            return;
        c->scratch = req;
        native(c, json_pack("{s:s, s:O}", "op", get_op, "name", json_object_get(req, "name")));
        return;
    case 1:
        create_if_absent(c, r, CMQ_EEXISTS, exists_code, kind, jstr(c->scratch, "name"));
        return;
    default:
        if (!native_ok(r))
            native_error(c, r);
        else
            finish(c, json_pack("{s:O}", id_key, json_object_get(c->scratch, "name")));
    }
}

static void a_create_queue(cmq_call_t *c, const json_t *r)
{
    json_t *req = NULL;

    if (c->step == 0)
        req = with_attrs(c, named_req(c, "queue.create", "name", "queueName"), queue_attrs);
    create_unless_exists(c, r, req, "queue.get", "queue", 10020, "queueId");
}

/* A one-request action whose reply carries nothing. */
static void simple(cmq_call_t *c, const json_t *r, json_t *req)
{
    if (r == NULL) {
        if (req != NULL)
            native(c, req);
    } else if (!native_ok(r)) {
        native_error(c, r);
    } else {
        finish(c, NULL);
    }
}

static void a_delete_queue(cmq_call_t *c, const json_t *r)
{
    simple(c, r, r == NULL ? named_req(c, "queue.delete", "name", "queueName") : NULL);
}

/* Set{Queue,Topic}Attributes: @op on the name in @param, attrs by @map. */
static void set_attributes(cmq_call_t *c, const json_t *r, const char *op, const char *param,
                           const attr_map_t *map)
{
    simple(c, r, r == NULL ? with_attrs(c, named_req(c, op, "name", param), map) : NULL);
}

static void a_set_queue_attributes(cmq_call_t *c, const json_t *r)
{
    set_attributes(c, r, "queue.set", "queueName", queue_attrs);
}

static void a_list_queue(cmq_call_t *c, const json_t *r)
{
    list_names(c, r, "queue.list", "queues", "queueList", "queueId", "queueName");
}

static void a_get_queue_attributes(cmq_call_t *c, const json_t *r)
{
    json_t *out, *attrs, *st, *dl;
    json_int_t age;

    if (r == NULL) {
        native_named(c, "queue.get", "queueName");
        return;
    }
    if (!native_ok(r)) {
        native_error(c, r);
        return;
    }
    attrs = json_object_get(r, "attrs");
    st = json_object_get(r, "stats");
    age = jint(st, "oldest_age_ms");
    out = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "queueName",
                    jstr(r, "name"), "queueId", jstr(r, "name"), "createTime",
                    unix_s(r, "created_at"), "lastModifyTime", unix_s(r, "modified_at"),
                    "activeMsgNum", jint(st, "ready"), "inactiveMsgNum",
                    jint(st, "inflight"), "delayMsgNum", jint(st, "delayed"), "rewindMsgNum",
                    jint(st, "retained"), "rewindmsgNum", jint(st, "retained"), "minMsgTime",
                    age > 0 ? (json_int_t)c->now - age / 1000 : 0);
    attrs_reply(out, attrs, queue_attrs);
    dl = json_object_get(attrs, "dead_letter");
    if (json_is_object(dl)) {
        json_object_set_new(out, "deadLetterQueueName", json_string(jstr(dl, "queue")));
        json_object_set_new(out, "maxReceiveCount", json_integer(jint(dl, "max_receives")));
    }
    finish(c, out);
}

static void a_rewind_queue(cmq_call_t *c, const json_t *r)
{
    long long t;
    json_t *req;
    int rc;

    switch (c->step) {
    case 0:
        rc = int_param(c, "startConsumeTime", 0, 1LL << 40, &t);
        if (rc == 0)
            fail(c, cmq_error(CMQ_EPARAM, 10000, "startConsumeTime is missing"));
        if (rc <= 0)
            return;
        if ((req = named_req(c, "queue.rewind", "name", "queueName")) == NULL)
            return;
        json_object_set_new(req, "time", json_integer((json_int_t)t * 1000));
        c->scratch = req;
        native(c, json_pack("{s:s, s:O}", "op", "queue.get", "name",
                            json_object_get(req, "name")));
        return;
    case 1:
        if (!native_ok(r)) {
            native_error(c, r);
        } else if (jint(json_object_get(r, "attrs"), "rewind_window") == 0) {
            fail(c, cmq_error(CMQ_EREWIND, 10670, "queue %s has rewindSeconds 0: it keeps "
                              "no deleted messages to rewind to", jstr(r, "name")));
        } else {
            req = c->scratch;
            c->scratch = NULL;
            native(c, req);
        }
        return;
    default:
        simple(c, r, NULL);
    }
}

static void a_send_message(cmq_call_t *c, const json_t *r)
{
    json_t *req, *body;
    long long delay;
    int rc;

    if (r != NULL) {
        if (!native_ok(r))
            native_error(c, r);
        else
            finish(c, json_pack("{s:s}", "msgId", jstr(r, "msg_id")));
        return;
    }
    if ((req = named_req(c, "send", "queue", "queueName")) == NULL)
        return;
    if (!str_param(c, "msgBody", true, &body) ||
        (rc = int_param(c, "delaySeconds", 0, 3600, &delay)) < 0) {
        json_decref(body);
        json_decref(req);
        return;
    }
    json_object_set_new(req, "body", body);
    if (rc > 0 && delay > 0)
        json_object_set_new(req, "delay", json_integer(delay));
    native(c, req);
}

/* Batches (docs/cmq.md "Batches"): mqhub checks a whole batch before it
 * submits any of it — every body against the target's maxMsgSize, a queue's
 * room for all of them (maxMsgHeapNum) — so a refusal it can foresee
 * accepts nothing. What only apply can refuse (the room taken meanwhile by
 * other senders, a script's block) is answered by batch_outcome(). */

/* Step 1 of a batch action: @r answers the queue.get (@queue) or topic.get
 * of its target; the batch request waits in c->scratch. Sends it when every
 * message fits, else fails the call with nothing sent. */
static void batch_checked_send(cmq_call_t *c, const json_t *r, bool queue)
{
    const json_t *attrs = json_object_get(r, "attrs"), *st = json_object_get(r, "stats"), *m;
    json_t *req = c->scratch, *msgs = json_object_get(req, "msgs");
    json_int_t max = jint(attrs, "max_msg_size"), heap = jint(attrs, "max_backlog");
    json_int_t held = jint(st, "ready") + jint(st, "inflight") + jint(st, "delayed");
    size_t i, n = json_array_size(msgs);

    if (!native_ok(r)) {
        native_error(c, r);
        return;
    }
    json_array_foreach(msgs, i, m) {
        size_t len = json_string_length(json_object_get(m, "body"));
        if ((json_int_t)len > max) {
            fail(c, cmq_error(CMQ_ETOO_LARGE, 10230, "msgBody.%zu has %zu bytes, more than "
                              "maxMsgSize (%lld): no message of the batch was sent", i + 1, len,
                              (long long)max));
            return;
        }
    }
    if (queue && heap > 0 && held + (json_int_t)n > heap) {
        fail(c, cmq_error(CMQ_EHEAP_FULL, 10240, "queue %s has room for %lld of the %zu "
                          "messages (maxMsgHeapNum %lld): no message of the batch was sent",
                          jstr(r, "name"), (long long)(held < heap ? heap - held : 0), n,
                          (long long)heap));
        return;
    }
    c->scratch = NULL;
    native(c, req);
}

/* The outcome of a native send_batch / publish_batch @r: NULL when every
 * message was accepted. When none was, the first one's error: the client
 * may send the whole batch again. When some were, 6010 (as BatchDelete's
 * partial failure) carrying msgList — the accepted ones, {msgId, index} —
 * and errorList — {code, message, index} — with index the N of msgBody.N:
 * the SDK raises CMQServerException whose data is this reply, so the client
 * can send only the refused ones again instead of duplicating the rest. */
static json_t *batch_outcome(const cmq_call_t *c, const json_t *r)
{
    json_t *accepted = json_array(), *errors = json_array(), *e, *out;
    size_t i, n = json_array_size(json_object_get(r, "results"));

    json_array_foreach(json_object_get(r, "results"), i, e) {
        if (json_object_get(e, "code") == NULL) {
            json_array_append_new(accepted, json_pack("{s:s, s:I}", "msgId", jstr(e, "msg_id"),
                                                      "index", (json_int_t)i + 1));
        } else {
            out = mapped(c, e);
            json_object_set_new(out, "index", json_integer((json_int_t)i + 1));
            json_array_append_new(errors, out);
        }
    }
    if (json_array_size(errors) == 0) {
        out = NULL;
    } else if (json_array_size(accepted) == 0) {
        out = json_copy(json_array_get(errors, 0));
        json_object_del(out, "index");
    } else {
        out = cmq_error(CMQ_EPARTIAL, 10280, "%zu of %zu messages were accepted (msgList) and "
                        "%zu refused (errorList): send only the refused ones again",
                        json_array_size(accepted), n, json_array_size(errors));
        json_object_set(out, "msgList", accepted);
        json_object_set(out, "errorList", errors);
    }
    json_decref(accepted);
    json_decref(errors);
    return out;
}

/* The first failed item of a native batch's results as a CMQ error (NULL
 * when none failed). */
static json_t *batch_error(const cmq_call_t *c, const json_t *r)
{
    json_t *e;
    size_t i;

    json_array_foreach(json_object_get(r, "results"), i, e) {
        if (json_object_get(e, "code") != NULL)
            return mapped(c, e);
    }
    return NULL;
}

/* msgList [{msgId}] of a send_batch / publish_batch reply. */
static json_t *msg_list(const json_t *r)
{
    json_t *list = json_array(), *e;
    size_t i;

    json_array_foreach(json_object_get(r, "results"), i, e)
        json_array_append_new(list, json_pack("{s:s}", "msgId", jstr(e, "msg_id")));
    return list;
}

/* Step 0 of a batch action: keep the batch request @req (stolen) and look
 * its target up with @get_op. */
static void batch_lookup(cmq_call_t *c, json_t *req, const char *get_op, const char *key)
{
    c->scratch = req;
    native(c, json_pack("{s:s, s:O}", "op", get_op, "name", json_object_get(req, key)));
}

static void a_batch_send_message(cmq_call_t *c, const json_t *r)
{
    json_t *req, *bodies, *msgs, *b, *err;
    long long delay = 0;
    size_t i;

    if (c->step == 1) {
        batch_checked_send(c, r, true);
        return;
    }
    if (r != NULL) {
        if (!native_ok(r))
            native_error(c, r);
        else if ((err = batch_outcome(c, r)) != NULL)
            fail(c, err);
        else
            finish(c, json_pack("{s:o}", "msgList", msg_list(r)));
        return;
    }
    if ((req = named_req(c, "send_batch", "queue", "queueName")) == NULL)
        return;
    if (int_param(c, "delaySeconds", 0, 3600, &delay) < 0 ||
        (bodies = array_param(c, "msgBody", CMQ_BATCH_MAX)) == NULL) {
        json_decref(req);
        return;
    }
    if (json_array_size(bodies) == 0) {
        json_decref(req);
        json_decref(bodies);
        fail(c, cmq_error(CMQ_EPARAM, 10120, "msgBody.n is missing"));
        return;
    }
    msgs = json_array();
    json_array_foreach(bodies, i, b) {
        json_t *m = json_pack("{s:O}", "body", b);
        if (delay > 0)
            json_object_set_new(m, "delay", json_integer(delay));
        json_array_append_new(msgs, m);
    }
    json_decref(bodies);
    json_object_set_new(req, "msgs", msgs);
    batch_lookup(c, req, "queue.get", "queue");
}

/* One received message in CMQ's spelling (times in unix seconds). */
static json_t *cmq_message(const json_t *m)
{
    return json_pack("{s:s, s:s, s:O?, s:I, s:I, s:I, s:I}", "msgBody", jstr(m, "body"),
                     "msgId", jstr(m, "msg_id"), "receiptHandle",
                     json_object_get(m, "receipt"), "enqueueTime", jint(m, "enqueued_at") / 1000,
                     "nextVisibleTime", jint(m, "next_visible_at") / 1000, "firstDequeueTime",
                     jint(m, "first_received_at") / 1000, "dequeueCount",
                     jint(m, "receive_count"));
}

static void receive(cmq_call_t *c, const json_t *r, bool batch)
{
    json_t *req, *msgs, *list, *m;
    long long wait, n = 1;
    int rc;
    size_t i;

    if (r == NULL) {
        if ((req = named_req(c, "receive", "queue", "queueName")) == NULL)
            return;
        if ((rc = int_param(c, "pollingWaitSeconds", 0, CMQ_WAIT_MAX, &wait)) < 0 ||
            (batch && int_param(c, "numOfMsg", 1, CMQ_BATCH_MAX, &n) < 0)) {
            json_decref(req);
            return;
        }
        if (rc > 0)
            json_object_set_new(req, "wait", json_integer(wait));
        json_object_set_new(req, "max", json_integer(n));
        native(c, req);
        return;
    }
    if (!native_ok(r)) {
        native_error(c, r);
        return;
    }
    msgs = json_object_get(r, "msgs");
    if (json_array_size(msgs) == 0) {
        fail(c, cmq_error(CMQ_ENO_MESSAGE, 10200, "no message"));
        return;
    }
    if (!batch) {
        finish(c, cmq_message(json_array_get(msgs, 0)));
        return;
    }
    list = json_array();
    json_array_foreach(msgs, i, m)
        json_array_append_new(list, cmq_message(m));
    finish(c, json_pack("{s:o}", "msgInfoList", list));
}

static void a_receive_message(cmq_call_t *c, const json_t *r)
{
    receive(c, r, false);
}

static void a_batch_receive_message(cmq_call_t *c, const json_t *r)
{
    receive(c, r, true);
}

/* DeleteMessage (@batch false: receiptHandle) and BatchDeleteMessage
 * (receiptHandle.n; failures -> 6010 with errorList). */
static void delete_messages(cmq_call_t *c, const json_t *r, bool batch)
{
    json_t *req, *handles, *e, *errors;
    size_t i;

    if (r == NULL) {
        if ((req = named_req(c, "delete", "queue", "queueName")) == NULL)
            return;
        if (batch)
            handles = array_param(c, "receiptHandle", CMQ_BATCH_MAX);
        else if (str_param(c, "receiptHandle", true, &e))
            handles = json_pack("[o]", e);
        else
            handles = NULL;
        if (handles == NULL || json_array_size(handles) == 0) {
            if (handles != NULL)
                fail(c, cmq_error(CMQ_EPARAM, 10000, "receiptHandle.n is missing"));
            json_decref(handles);
            json_decref(req);
            return;
        }
        json_object_set_new(req, "receipts", handles);
        c->scratch = json_incref(handles);
        native(c, req);
        return;
    }
    if (!native_ok(r)) {
        native_error(c, r);
        return;
    }
    if (!batch) {
        json_t *err = batch_error(c, r);
        if (err != NULL)
            fail(c, err);
        else
            finish(c, NULL);
        return;
    }
    errors = json_array();
    json_array_foreach(json_object_get(r, "results"), i, e) {
        if (json_object_get(e, "code") != NULL) {
            json_t *err = mapped(c, e);
            json_object_set(err, "receiptHandle", json_array_get(c->scratch, i));
            json_array_append_new(errors, err);
        }
    }
    if (json_array_size(errors) == 0) {
        json_decref(errors);
        finish(c, NULL);
        return;
    }
    e = cmq_error(CMQ_EPARTIAL, 10280, "%zu of %zu messages could not be deleted",
                  json_array_size(errors), json_array_size(c->scratch));
    json_object_set_new(e, "errorList", errors);
    fail(c, e);
}

static void a_delete_message(cmq_call_t *c, const json_t *r)
{
    delete_messages(c, r, false);
}

static void a_batch_delete_message(cmq_call_t *c, const json_t *r)
{
    delete_messages(c, r, true);
}

/* ---------------------------------------------------------------- topics */

static void a_create_topic(cmq_call_t *c, const json_t *r)
{
    json_t *req = NULL;
    long long filter = 1;

    if (c->step == 0) {
        req = named_req(c, "topic.create", "name", "topicName");
        if (req != NULL && int_param(c, "filterType", 1, 2, &filter) < 0) {
            json_decref(req);
            req = NULL;
        }
        if ((req = with_attrs(c, req, topic_attrs)) != NULL)
            json_object_set_new(json_object_get(req, "attrs"), "filter_type",
                                json_string(filter == 2 ? "routing_key" : "tags"));
    }
    create_unless_exists(c, r, req, "topic.get", "topic", 10610, "topicId");
}

static void a_set_topic_attributes(cmq_call_t *c, const json_t *r)
{
    set_attributes(c, r, "topic.set", "topicName", topic_attrs);
}

static void a_get_topic_attributes(cmq_call_t *c, const json_t *r)
{
    json_t *out;

    if (r == NULL) {
        native_named(c, "topic.get", "topicName");
        return;
    }
    if (!native_ok(r)) {
        native_error(c, r);
        return;
    }
    out = json_pack("{s:s, s:s, s:I, s:I, s:I, s:i}", "topicName", jstr(r, "name"),
                    "topicId", jstr(r, "name"), "msgCount",
                    jint(json_object_get(r, "stats"), "retained"), "createTime",
                    unix_s(r, "created_at"), "lastModifyTime", unix_s(r, "modified_at"),
                    "filterType",
                    strcmp(jstr(json_object_get(r, "attrs"), "filter_type"), "routing_key") == 0
                        ? 2 : 1);
    attrs_reply(out, json_object_get(r, "attrs"), topic_attrs);
    finish(c, out);
}

static void a_list_topic(cmq_call_t *c, const json_t *r)
{
    list_names(c, r, "topic.list", "topics", "topicList", "topicId", "topicName");
}

static void a_delete_topic(cmq_call_t *c, const json_t *r)
{
    switch (c->step) {
    case 0:
        native_named(c, "topic.get", "topicName");
        return;
    case 1:
        if (!native_ok(r)) {
            native_error(c, r);
        } else if (json_array_size(json_object_get(r, "subscriptions")) > 0) {
            fail(c, cmq_error(CMQ_EPARAM, 10540, "topic %s still has %zu subscriptions: "
                              "Unsubscribe them first", jstr(r, "name"),
                              json_array_size(json_object_get(r, "subscriptions"))));
        } else {
            native(c, json_pack("{s:s, s:s}", "op", "topic.delete", "name", jstr(r, "name")));
        }
        return;
    default:
        simple(c, r, NULL);
    }
}

/* The publish fields common to both actions into @m: tags (1-64 bytes
 * each), key (at most 255 bytes), checked here so that a batch refused for
 * them is refused whole. false after failing the call. */
static bool publish_fields(cmq_call_t *c, json_t *m)
{
    json_t *tags = array_param(c, "msgTag", CMQ_TAGS_MAX), *t;
    size_t klen, i;
    const char *key = cmq_param(c->params, "routingKey", &klen);

    if (tags == NULL)
        return false;
    json_array_foreach(tags, i, t) {
        size_t n = json_string_length(t);
        if (n < 1 || n > MQHUB_TAG_LEN_MAX) {
            json_decref(tags);
            fail(c, cmq_error(CMQ_EPARAM, 10110, "msgTag.%zu has %zu bytes; a tag has 1-%d",
                              i + 1, n, MQHUB_TAG_LEN_MAX));
            return false;
        }
    }
    if (key != NULL && klen > MQHUB_ROUTING_KEY_MAX) {
        json_decref(tags);
        fail(c, cmq_error(CMQ_EPARAM, 10110, "routingKey has %zu bytes, at most %d allowed",
                          klen, MQHUB_ROUTING_KEY_MAX));
        return false;
    }
    if (json_array_size(tags) > 0)
        json_object_set_new(m, "tags", tags);
    else
        json_decref(tags);
    if (key != NULL && klen > 0)
        json_object_set_new(m, "key", json_stringn_nocheck(key, klen));
    return true;
}

static json_t *no_match(void)
{
    return cmq_error(CMQ_ENO_MATCH, 10730, "no subscription matches the message's tags or "
                     "routing key (the message was stored in the topic)");
}

static void a_publish_message(cmq_call_t *c, const json_t *r)
{
    json_t *req, *body;

    if (r != NULL) {
        if (!native_ok(r))
            native_error(c, r);
        else if (jint(r, "delivered") == 0)
            fail(c, no_match());
        else
            finish(c, json_pack("{s:s}", "msgId", jstr(r, "msg_id")));
        return;
    }
    if ((req = named_req(c, "publish", "topic", "topicName")) == NULL)
        return;
    if (!str_param(c, "msgBody", true, &body) || !publish_fields(c, req)) {
        json_decref(body);
        json_decref(req);
        return;
    }
    json_object_set_new(req, "body", body);
    native(c, req);
}

static void a_batch_publish_message(cmq_call_t *c, const json_t *r)
{
    json_t *req, *bodies, *msgs, *b, *common, *e, *err;
    size_t i;
    bool any = false;

    if (c->step == 1) {
        batch_checked_send(c, r, false);
        return;
    }
    if (r != NULL) {
        if (!native_ok(r)) {
            native_error(c, r);
            return;
        }
        if ((err = batch_outcome(c, r)) != NULL) {
            fail(c, err);
            return;
        }
        json_array_foreach(json_object_get(r, "results"), i, e)
            any |= jint(e, "delivered") > 0;
        if (!any)
            fail(c, no_match());
        else
            finish(c, json_pack("{s:o}", "msgList", msg_list(r)));
        return;
    }
    if ((req = named_req(c, "publish_batch", "topic", "topicName")) == NULL)
        return;
    common = json_object();
    if (!publish_fields(c, common) ||
        (bodies = array_param(c, "msgBody", CMQ_BATCH_MAX)) == NULL) {
        json_decref(common);
        json_decref(req);
        return;
    }
    if (json_array_size(bodies) == 0) {
        json_decref(common);
        json_decref(req);
        json_decref(bodies);
        fail(c, cmq_error(CMQ_EPARAM, 10120, "msgBody.n is missing"));
        return;
    }
    msgs = json_array();
    json_array_foreach(bodies, i, b) {
        json_t *m = json_deep_copy(common);
        json_object_set(m, "body", b);
        json_array_append_new(msgs, m);
    }
    json_decref(common);
    json_decref(bodies);
    json_object_set_new(req, "msgs", msgs);
    batch_lookup(c, req, "topic.get", "topic");
}

/* ---------------------------------------------------------- subscriptions */

/* CMQ's notifyStrategy as a native retry (docs/cmq.md "Subscriptions"):
 * BACKOFF_RETRY retries 3 times 15 s apart; EXPONENTIAL_DECAY_RETRY waits
 * 1 s, doubling up to 512 s, for about a day (attempts 1-10 take 1023 s,
 * then 167 more 512 s apart: 86527 s). Subscriptions get the CMQ name back
 * from the strategy (cmq_subscription). */
#define CMQ_BACKOFF_ATTEMPTS 4
#define CMQ_BACKOFF_INTERVAL_MS 15000
#define CMQ_DECAY_ATTEMPTS 177
#define CMQ_DECAY_MAX_INTERVAL_MS 512000

static json_t *retry_of(const char *strategy)
{
    if (strcmp(strategy, "BACKOFF_RETRY") == 0)
        return json_pack("{s:s, s:i, s:i}", "strategy", "backoff", "max_attempts",
                         CMQ_BACKOFF_ATTEMPTS, "interval_ms", CMQ_BACKOFF_INTERVAL_MS);
    return json_pack("{s:s, s:i, s:i, s:i}", "strategy", "exponential", "max_attempts",
                     CMQ_DECAY_ATTEMPTS, "interval_ms", 1000, "max_interval_ms",
                     CMQ_DECAY_MAX_INTERVAL_MS);
}

/* notifyStrategy as a native retry into *@out: 1 given, 0 absent (*@out
 * NULL), -1 after failing the call. */
static int strategy_param(cmq_call_t *c, json_t **out)
{
    const char *s = cmq_param(c->params, "notifyStrategy", NULL);

    *out = NULL;
    if (s == NULL || *s == '\0')
        return 0;
    if (strcmp(s, "BACKOFF_RETRY") != 0 && strcmp(s, "EXPONENTIAL_DECAY_RETRY") != 0) {
        fail(c, cmq_error(CMQ_EPARAM, 10110, "notifyStrategy must be BACKOFF_RETRY or "
                          "EXPONENTIAL_DECAY_RETRY"));
        return -1;
    }
    *out = retry_of(s);
    return 1;
}

/* notifyContentFormat for an endpoint of protocol http (@http) or queue:
 * the native format ("json", "simplified") into *@fmt, NULL when absent.
 * false after failing the call: an unknown value, or JSON for a queue. */
static bool format_param(cmq_call_t *c, bool http, const char **fmt)
{
    const char *f = cmq_param(c->params, "notifyContentFormat", NULL);

    *fmt = NULL;
    if (f == NULL || *f == '\0')
        return true;
    if (strcmp(f, "JSON") != 0 && strcmp(f, "SIMPLIFIED") != 0) {
        fail(c, cmq_error(CMQ_EPARAM, 10110, "notifyContentFormat must be JSON or SIMPLIFIED"));
        return false;
    }
    if (!http && f[0] == 'J') {
        fail(c, cmq_error(CMQ_EPARAM, 10640, "a queue endpoint needs notifyContentFormat "
                          "SIMPLIFIED"));
        return false;
    }
    *fmt = f[0] == 'J' ? "json" : "simplified";
    return true;
}

/* {"op": @op, topic, name} from topicName and subscriptionName. */
static json_t *sub_req(cmq_call_t *c, const char *op)
{
    json_t *req = named_req(c, op, "topic", "topicName");
    const char *name = req != NULL ? name_param(c, "subscriptionName") : NULL;

    if (name == NULL) {
        json_decref(req);
        return NULL;
    }
    json_object_set_new(req, "name", json_string(name));
    return req;
}

/* Fail with 4440 (10700) when @r is a native NOT_FOUND, else as mapped. */
static void sub_error(cmq_call_t *c, const json_t *r)
{
    if (strcmp(jstr(r, "code"), "NOT_FOUND") == 0)
        fail(c, cmq_error(CMQ_ENOT_FOUND, 10700, "%s", jstr(r, "error")));
    else
        native_error(c, r);
}

/* filterTag.n and bindingKey.n into @req as filter_tags / binding_keys;
 * given only (@all: also when empty). false after failing the call. */
static bool filter_params(cmq_call_t *c, json_t *req, bool all)
{
    json_t *tags = array_param(c, "filterTag", CMQ_TAGS_MAX), *keys;

    if (tags == NULL)
        return false;
    if ((keys = array_param(c, "bindingKey", CMQ_TAGS_MAX)) == NULL) {
        json_decref(tags);
        return false;
    }
    if (all || json_array_size(tags) > 0)
        json_object_set(req, "filter_tags", tags);
    if (all || json_array_size(keys) > 0)
        json_object_set(req, "binding_keys", keys);
    json_decref(tags);
    json_decref(keys);
    return true;
}

/* Subscribe: protocol queue (endpoint a queue name) or http (endpoint a
 * URL, notifyContentFormat JSON by default), notifyStrategy as a retry
 * (CMQ's default EXPONENTIAL_DECAY_RETRY when absent). */
static void a_subscribe(cmq_call_t *c, const json_t *r)
{
    const char *protocol = cmq_param(c->params, "protocol", NULL);
    const char *endpoint = cmq_param(c->params, "endpoint", NULL), *fmt;
    json_t *req, *retry = NULL;
    bool http = protocol != NULL && strcmp(protocol, "http") == 0;

    if (c->step == 1) {
        create_if_absent(c, r, CMQ_ESUB_EXISTS, 10470, "subscription", jstr(r, "name"));
        return;
    }
    if (r != NULL) {
        if (native_ok(r))
            finish(c, json_pack("{s:s}", "subscriptionId", jstr(c->scratch, "name")));
        else if (strcmp(jstr(r, "code"), "EXISTS") == 0)
            fail(c, cmq_error(CMQ_ESUB_EXISTS, 10470, "%s", jstr(r, "error")));
        else
            native_error(c, r);
        return;
    }
    if ((req = sub_req(c, "subscription.create")) == NULL)
        return;
    if ((!http && (protocol == NULL || strcmp(protocol, "queue") != 0)) || endpoint == NULL ||
        *endpoint == '\0') {
        json_decref(req);
        fail(c, cmq_error(CMQ_EPARAM, 10110, "protocol must be queue (endpoint a queue name) "
                          "or http (endpoint an http:// or https:// URL)"));
        return;
    }
    if (!format_param(c, http, &fmt) || strategy_param(c, &retry) < 0 ||
        !filter_params(c, req, true)) {
        json_decref(retry); /* a filter refused after the strategy was read */
        json_decref(req);
        return;
    }
    json_object_set_new(req, "retry", retry != NULL ? retry : retry_of("EXPONENTIAL_DECAY_RETRY"));
    if (http)
        json_object_set_new(req, "endpoint", json_pack("{s:s, s:s}", "http", endpoint, "format",
                                                       fmt != NULL ? fmt : "json"));
    else
        json_object_set_new(req, "endpoint", json_pack("{s:s}", "queue", endpoint));
    c->scratch = req;
    native(c, json_pack("{s:s, s:O, s:O}", "op", "subscription.get", "topic",
                        json_object_get(req, "topic"), "name", json_object_get(req, "name")));
}

static void a_unsubscribe(cmq_call_t *c, const json_t *r)
{
    if (r != NULL && !native_ok(r) && strcmp(jstr(r, "code"), "NOT_FOUND") == 0) {
        fail(c, cmq_error(CMQ_ENOT_FOUND, 10700, "%s", jstr(r, "error")));
        return;
    }
    simple(c, r, r == NULL ? sub_req(c, "subscription.delete") : NULL);
}

static json_t *array_or_empty(const json_t *v)
{
    return json_is_array(v) ? json_incref((json_t *)v) : json_array();
}

/* A subscription.get reply in CMQ's spelling (with the Python SDK's
 * spellings protocal and filterTags beside protocol and filterTag):
 * notifyStrategy from the retry strategy, notifyContentFormat from an http
 * endpoint's format (a queue's is SIMPLIFIED). */
static json_t *cmq_subscription(const json_t *s)
{
    const json_t *ep = json_object_get(s, "endpoint"), *st = json_object_get(s, "stats");
    const char *queue = jstr(ep, "queue"), *url = jstr(ep, "http");
    const char *protocol = *url ? "http" : "queue";
    bool exp = strcmp(jstr(json_object_get(s, "retry"), "strategy"), "exponential") == 0;
    json_t *out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "subscriptionName",
                            jstr(s, "name"), "subscriptionId", jstr(s, "name"), "topicOwner", "",
                            "endpoint", *url ? url : *queue ? queue : "(push)", "protocol",
                            protocol, "protocal", protocol);

    json_object_set_new(out, "notifyStrategy",
                        json_string(exp ? "EXPONENTIAL_DECAY_RETRY" : "BACKOFF_RETRY"));
    json_object_set_new(out, "notifyContentFormat",
                        json_string(*url && strcmp(jstr(ep, "format"), "json") == 0
                                        ? "JSON" : "SIMPLIFIED"));
    json_object_set_new(out, "createTime", json_integer(unix_s(s, "created_at")));
    json_object_set_new(out, "lastModifyTime", json_integer(unix_s(s, "modified_at")));
    json_object_set_new(out, "msgCount", json_integer(jint(st, "pending")));
    json_object_set_new(out, "filterTag", array_or_empty(json_object_get(s, "filter_tags")));
    json_object_set_new(out, "filterTags", array_or_empty(json_object_get(s, "filter_tags")));
    json_object_set_new(out, "bindingKey", array_or_empty(json_object_get(s, "binding_keys")));
    return out;
}

static void a_get_subscription_attributes(cmq_call_t *c, const json_t *r)
{
    json_t *req;

    if (r == NULL) {
        if ((req = sub_req(c, "subscription.get")) != NULL)
            native(c, req);
        return;
    }
    if (!native_ok(r))
        sub_error(c, r);
    else
        finish(c, cmq_subscription(r));
}

/* SetSubscriptionAttributes: notifyStrategy, notifyContentFormat,
 * filterTag.n, bindingKey.n — each given one replaces the subscription's
 * (subscription.set: in place, pending messages kept). Step 0 checks the
 * params and reads the subscription (its endpoint decides what
 * notifyContentFormat may be), step 1 sends the set kept in c->scratch. */
static void a_set_subscription_attributes(cmq_call_t *c, const json_t *r)
{
    json_t *req, *retry = NULL, *ep;
    const char *fmt, *url;

    switch (c->step) {
    case 0:
        if ((req = sub_req(c, "subscription.set")) == NULL)
            return;
        if (!format_param(c, true, &fmt) || strategy_param(c, &retry) < 0 ||
            !filter_params(c, req, false)) {
            json_decref(retry); /* a filter refused after the strategy was read */
            json_decref(req);
            return;
        }
        if (retry != NULL)
            json_object_set_new(req, "retry", retry);
        c->scratch = req;
        native(c, json_pack("{s:s, s:O, s:O}", "op", "subscription.get", "topic",
                            json_object_get(req, "topic"), "name", json_object_get(req, "name")));
        return;
    case 1:
        if (!native_ok(r)) {
            sub_error(c, r);
            return;
        }
        ep = json_object_get(r, "endpoint");
        url = jstr(ep, "http");
        if (!format_param(c, *url != '\0', &fmt))
            return;
        if (*url != '\0' && fmt != NULL)
            json_object_set_new(c->scratch, "endpoint",
                                json_pack("{s:s, s:s}", "http", url, "format", fmt));
        req = c->scratch;
        c->scratch = NULL;
        native(c, req);
        return;
    default:
        if (!native_ok(r))
            sub_error(c, r);
        else
            finish(c, NULL);
    }
}

/* ClearSubscriptionFilterTags: subscription.set {filter_tags: []}. */
static void a_clear_subscription_filter_tags(cmq_call_t *c, const json_t *r)
{
    json_t *req;

    if (r == NULL) {
        if ((req = sub_req(c, "subscription.set")) != NULL) {
            json_object_set_new(req, "filter_tags", json_array());
            native(c, req);
        }
        return;
    }
    if (!native_ok(r))
        sub_error(c, r);
    else
        finish(c, NULL);
}

/* subscription.list gives names; each listed one is then read with
 * subscription.get. scratch: {"names", "window", "items"}. */
static void a_list_subscription_by_topic(cmq_call_t *c, const json_t *r)
{
    json_t *window, *items;
    const char *topic;
    size_t total, done;

    if (c->scratch == NULL || json_object_get(c->scratch, "window") == NULL) {
        bool failed;
        if (r == NULL && (topic = name_param(c, "topicName")) == NULL)
            return;
        topic = cmq_param(c->params, "topicName", NULL);
        if (!list_pages(c, r, "subscription.list", "subscriptions", false,
                        json_pack("{s:s}", "topic", topic), &failed))
            return;
        if ((window = list_window(c, &total)) == NULL)
            return;
        json_object_set_new(c->scratch, "window", window);
        json_object_set_new(c->scratch, "total", json_integer((json_int_t)total));
        json_object_set_new(c->scratch, "items", json_array());
    } else if (!native_ok(r)) {
        native_error(c, r);
        return;
    } else {
        json_array_append_new(json_object_get(c->scratch, "items"), cmq_subscription(r));
    }
    window = json_object_get(c->scratch, "window");
    items = json_object_get(c->scratch, "items");
    done = json_array_size(items);
    if (done < json_array_size(window)) {
        native(c, json_pack("{s:s, s:s, s:O}", "op", "subscription.get", "topic",
                            cmq_param(c->params, "topicName", NULL), "name",
                            json_array_get(window, done)));
        return;
    }
    finish(c, json_pack("{s:O, s:O}", "totalCount", json_object_get(c->scratch, "total"),
                        "subscriptionList", items));
}

/* ---------------------------------------------------------------- table */

static const cmq_action_t actions[] = {
    {"CreateQueue", a_create_queue, false},
    {"ListQueue", a_list_queue, false},
    {"GetQueueAttributes", a_get_queue_attributes, false},
    {"SetQueueAttributes", a_set_queue_attributes, false},
    {"DeleteQueue", a_delete_queue, false},
    {"RewindQueue", a_rewind_queue, false},
    {"SendMessage", a_send_message, false},
    {"BatchSendMessage", a_batch_send_message, false},
    {"ReceiveMessage", a_receive_message, false},
    {"BatchReceiveMessage", a_batch_receive_message, false},
    {"DeleteMessage", a_delete_message, false},
    {"BatchDeleteMessage", a_batch_delete_message, false},
    {"CreateTopic", a_create_topic, true},
    {"SetTopicAttributes", a_set_topic_attributes, true},
    {"GetTopicAttributes", a_get_topic_attributes, true},
    {"ListTopic", a_list_topic, true},
    {"DeleteTopic", a_delete_topic, true},
    {"PublishMessage", a_publish_message, true},
    {"BatchPublishMessage", a_batch_publish_message, true},
    {"Subscribe", a_subscribe, true},
    {"Unsubscribe", a_unsubscribe, true},
    {"ListSubscriptionByTopic", a_list_subscription_by_topic, true},
    {"GetSubscriptionAttributes", a_get_subscription_attributes, true},
    {"SetSubscriptionAttributes", a_set_subscription_attributes, true},
    {"ClearSubscriptionFilterTags", a_clear_subscription_filter_tags, true},
};

void cmq_call_start(cmq_call_t *c, int64_t now)
{
    const char *name = cmq_param(c->params, "Action", NULL);

    c->now = now;
    for (size_t i = 0; name != NULL && i < sizeof actions / sizeof actions[0]; i++) {
        if (strcasecmp(actions[i].name, name) == 0) {
            c->action = &actions[i];
            c->action->step(c, NULL);
            return;
        }
    }
    fail(c, cmq_error(CMQ_EPARAM, 10430, "unknown Action %s", name != NULL ? name : "(none)"));
}

void cmq_call_cleanup(cmq_call_t *c)
{
    json_decref(c->scratch);
    c->scratch = NULL;
}
