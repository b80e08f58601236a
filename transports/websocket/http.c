/* http.c: the HTTP endpoints on the WebSocket listener (docs/metrics.md):
 *   /healthz  200 "ok" while the process serves requests
 *   /readyz   200 when a leader is known and this node applied what was
 *             committed (within WS_READY_LAG entries), else 503 and why
 *             ("waiting for quorum (1 of 3 ...)" in a cluster without a leader)
 *   /metrics  Prometheus text format 0.0.4, for an identity that may see
 *             everything (auth_start(): the root token, a user with monitor
 *             or admin on *, or anyone on a hub without credentials)
 * The dashboard's static files are served by lws itself (a file mount in
 * ws.c); everything else reaches http_callback().
 *
 * Start with http_callback(): LWS_CALLBACK_HTTP picks the endpoint and asks
 * the collector (stats.c) for a snapshot; on_snapshot() renders the body
 * and asks for a writable callback, where the header and then the body are
 * written. To add a metric, add a family in http_render_metrics() and its
 * line in `helps` (every family has # HELP and # TYPE; values are written by
 * sb_value(), integers without float noise); names and meanings are listed in
 * docs/metrics.md: keep all three in step. Subscription series are capped
 * (WS_METRICS_MAX_SUBS, the most pending first: topic_metrics()). Every
 * plugin's counters (metric_add) are exported without a list here
 * (plugin_metrics(): the host's metric_each); a new one needs its `helps`
 * line and its row in docs/metrics.md, nothing else.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "mqhub/version.h"
#include "ws.h"

#define WS_READY_LAG 100
#define WS_MAX_FAMILIES 160
#define WS_METRICS_MAX_SUBS 500 /* subscriptions with mqhub_subscription_* series */
#define WS_PLUGIN_PREFIX "plugin_" /* the host's names of plugin counters */

enum endpoint { EP_NONE, EP_HEALTHZ, EP_READYZ, EP_METRICS };

struct http_req {
    ws_t *w;
    struct lws *wsi;
    enum endpoint ep;
    mqhub_session_t *session; /* /metrics: the credential check, then closed */
    void *ticket;     /* stats_want() pending */
    bool ready;       /* body rendered */
    bool header_sent;
    unsigned status;
    char *body;
    size_t len;
};

size_t http_state_size(void)
{
    return sizeof(http_req_t);
}

/* ---------------------------------------------------------------- text */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->p != NULL && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 1024;
        while (cap <= b->len + (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* A label value with \\, \" and \n escaped (Prometheus text format). */
static void sb_label(sbuf_t *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            sb_printf(b, "\\%c", *v);
        else if (*v == '\n')
            sb_printf(b, "\\n");
        else
            sb_printf(b, "%c", *v);
    }
}

/* A sample value without float noise: integers as integers ("5", not
 * "5.0000000000000001"), fractions with at most 6 decimals (the figures are
 * milliseconds or microseconds over 1000 or 1e6), trailing zeros dropped. */
static void sb_value(sbuf_t *b, double v)
{
    char buf[64];
    if (v == (double)(long long)v && v > -9007199254740992.0 && v < 9007199254740992.0) {
        sb_printf(b, "%lld\n", (long long)v);
        return;
    }
    snprintf(buf, sizeof buf, "%.6f", v);
    size_t n = strlen(buf);
    while (n > 0 && buf[n - 1] == '0')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '.')
        buf[--n] = '\0';
    sb_printf(b, "%s\n", buf);
}

/* ---------------------------------------------------------------- families */

typedef struct family {
    char name[96];
    const char *type;
    sbuf_t samples;
} family_t;

typedef struct families {
    family_t f[WS_MAX_FAMILIES];
    unsigned n;
} families_t;

/* The family @name (created on first use; NULL when the table is full). */
static family_t *family(families_t *fs, const char *name, const char *type)
{
    for (unsigned i = 0; i < fs->n; i++)
        if (strcmp(fs->f[i].name, name) == 0)
            return &fs->f[i];
    if (fs->n == WS_MAX_FAMILIES)
        return NULL;
    family_t *f = &fs->f[fs->n++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->type = type;
    return f;
}

/* One sample: labels as pairs (name, value), ended by NULL. */
static void sample(families_t *fs, const char *name, const char *type, double value, ...)
{
    family_t *f = family(fs, name, type);
    const char *k, *sep = "{";
    va_list ap;

    if (f == NULL)
        return;
    sb_printf(&f->samples, "%s", name);
    va_start(ap, value);
    while ((k = va_arg(ap, const char *)) != NULL) {
        sb_printf(&f->samples, "%s%s=\"", sep, k);
        sb_label(&f->samples, va_arg(ap, const char *));
        sb_printf(&f->samples, "\"");
        sep = ",";
    }
    va_end(ap);
    sb_printf(&f->samples, "%s ", *sep == ',' ? "}" : "");
    sb_value(&f->samples, value);
}

static double num(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

/* Every number of @stats as mqhub_<prefix>_<key>, counters for *_total. */
static void numeric_stats(families_t *fs, const char *prefix, const json_t *stats,
                          const char *l1, const char *v1, const char *l2, const char *v2)
{
    const char *key;
    json_t *v;
    char name[96];

    json_object_foreach((json_t *)stats, key, v) {
        if (!json_is_number(v))
            continue;
        snprintf(name, sizeof name, "mqhub_%s_%s", prefix, key);
        sample(fs, name, ends_with(key, "_total") ? "counter" : "gauge", json_number_value(v),
               l1, v1, l2, v2, NULL);
    }
}

static void queue_metrics(families_t *fs, const json_t *queues)
{
    static const char *const states[] = {"ready", "inflight", "delayed", "retained"};
    size_t i;
    json_t *q;

    json_array_foreach(queues, i, q) {
        const char *name = json_string_value(json_object_get(q, "name"));
        const json_t *st = json_object_get(q, "stats");
        if (name == NULL || st == NULL)
            continue;
        for (int k = 0; k < 4; k++)
            sample(fs, "mqhub_queue_messages", "gauge", num(st, states[k]), "queue", name,
                   "state", states[k], NULL);
        sample(fs, "mqhub_queue_oldest_age_seconds", "gauge", num(st, "oldest_age_ms") / 1000,
               "queue", name, NULL);
        sample(fs, "mqhub_queue_sent_total", "counter", num(st, "sent_total"), "queue", name,
               NULL);
        sample(fs, "mqhub_queue_received_total", "counter", num(st, "received_total"), "queue",
               name, NULL);
        sample(fs, "mqhub_queue_deleted_total", "counter", num(st, "deleted_total"), "queue",
               name, NULL);
        sample(fs, "mqhub_queue_redelivered_total", "counter", num(st, "redelivered_total"),
               "queue", name, NULL);
        sample(fs, "mqhub_queue_dead_lettered_total", "counter",
               num(st, "dead_lettered_total"), "queue", name, NULL);
    }
}

typedef struct sub_ref {
    const char *topic, *name;
    const json_t *stats;
    double pending;
} sub_ref_t;

static int sub_by_pending(const void *a, const void *b)
{
    double x = ((const sub_ref_t *)a)->pending, y = ((const sub_ref_t *)b)->pending;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Per topic every topic.get figure; per subscription every figure of its
 * stats (pending = lag) for at most WS_METRICS_MAX_SUBS subscriptions, the
 * most pending first, so that the series stay bounded however many
 * subscriptions exist; the rest are counted in
 * mqhub_subscriptions_not_exported. */
static void topic_metrics(families_t *fs, const json_t *topics)
{
    size_t i, j, n = 0, cap = 0;
    json_t *t, *sub;
    sub_ref_t *subs = NULL;

    json_array_foreach(topics, i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        if (name == NULL)
            continue;
        numeric_stats(fs, "topic", json_object_get(t, "stats"), "topic", name, NULL, NULL);
        json_array_foreach(json_object_get(t, "subscriptions"), j, sub) {
            const char *sname = json_string_value(json_object_get(sub, "name"));
            const json_t *st = json_object_get(sub, "stats");
            if (sname == NULL)
                continue;
            if (n == cap) {
                sub_ref_t *more = realloc(subs, (cap = cap ? cap * 2 : 64) * sizeof *subs);
                if (more == NULL)
                    break;
                subs = more;
            }
            st = st != NULL ? st : sub;
            subs[n++] = (sub_ref_t){name, sname, st, num(st, "pending")};
        }
    }
    if (n > WS_METRICS_MAX_SUBS)
        qsort(subs, n, sizeof *subs, sub_by_pending);
    for (i = 0; i < n && i < WS_METRICS_MAX_SUBS; i++)
        numeric_stats(fs, "subscription", subs[i].stats, "topic", subs[i].topic, "subscription",
                      subs[i].name);
    sample(fs, "mqhub_subscriptions_not_exported", "gauge",
           n > WS_METRICS_MAX_SUBS ? (double)(n - WS_METRICS_MAX_SUBS) : 0, NULL);
    free(subs);
}

/* Voters in cluster.status's node list. */
static unsigned voters(const json_t *cl)
{
    size_t i;
    json_t *n;
    unsigned v = 0;
    json_array_foreach(json_object_get(cl, "nodes"), i, n)
        v += strcmp(json_string_value(json_object_get(n, "role")) ?: "", "voter") == 0;
    return v;
}

/* cluster.status's figures (docs/protocol.md): the term, the indexes, the
 * newest snapshot, the log applied since it, leader changes, voters. */
static void cluster_metrics(families_t *fs, const json_t *cl)
{
    static const char *const gauges[][2] = {
        {"term", "mqhub_raft_term"},
        {"commit_index", "mqhub_raft_commit_index"},
        {"last_applied", "mqhub_raft_applied_index"},
        {"last_index", "mqhub_raft_last_index"},
        {"snapshot_index", "mqhub_raft_snapshot_index"},
        {"log_entries", "mqhub_raft_log_entries"},
        {"log_bytes", "mqhub_raft_log_bytes"},
    };

    if (cl == NULL)
        return;
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++)
        sample(fs, gauges[i][1], "gauge", num(cl, gauges[i][0]), NULL);
    if (num(cl, "snapshot_index") > 0)
        sample(fs, "mqhub_raft_snapshot_age_seconds", "gauge", num(cl, "snapshot_age_ms") / 1000,
               NULL);
    sample(fs, "mqhub_raft_leader_changes_total", "counter", num(cl, "leader_changes"), NULL);
    sample(fs, "mqhub_raft_entries_answered_total", "counter", num(cl, "entries_answered"), NULL);
    sample(fs, "mqhub_raft_entry_seconds_total", "counter", num(cl, "entries_answered_us") / 1e6,
           NULL);
    sample(fs, "mqhub_raft_entries_applied_total", "counter", num(cl, "entries_applied"), NULL);
    sample(fs, "mqhub_raft_apply_seconds_total", "counter", num(cl, "apply_us") / 1e6, NULL);
    sample(fs, "mqhub_raft_is_leader", "gauge",
           strcmp(json_string_value(json_object_get(cl, "role")) ?: "", "leader") == 0, NULL);
    sample(fs, "mqhub_raft_leader_known", "gauge", num(cl, "leader_id") > 0, NULL);
    sample(fs, "mqhub_raft_voters", "gauge", voters(cl), NULL);
}

/* Per transport: sessions open in the hub (the hub's gauge
 * "sessions_open.<transport>"; ours includes the collector's own session) and
 * client connections (TCP: one session each; WebSocket: counted here). */
static void transport_metrics(families_t *fs, ws_t *w)
{
    static const char *const transports[] = {"tcp", "websocket", "cmq"};
    const mqhub_host_api_t *api = w->api;
    char name[64];

    for (size_t i = 0; i < sizeof transports / sizeof transports[0]; i++) {
        snprintf(name, sizeof name, "sessions_open.%s", transports[i]);
        sample(fs, "mqhub_sessions_open", "gauge", (double)api->metric_get(w->host, name),
               "transport", transports[i], NULL);
    }
    sample(fs, "mqhub_connections", "gauge",
           (double)api->metric_get(w->host, "sessions_open.tcp"), "transport", "tcp", NULL);
    sample(fs, "mqhub_connections", "gauge", w->n_conns, "transport", "websocket", NULL);
}

/* One plugin counter from metric_each: host name "plugin_<plugin>_<name>"
 * becomes the family mqhub_<plugin>_<name>, "_total" appended unless it
 * ends so, characters outside [a-zA-Z0-9_] as '_'. A name that a family
 * already has (a core one) is left out rather than exported twice. */
static void plugin_counter(void *arg, const char *name, int64_t value)
{
    families_t *fs = arg;
    char fam[96];
    int n = snprintf(fam, sizeof fam, "mqhub_%s%s", name + sizeof WS_PLUGIN_PREFIX - 1,
                     ends_with(name, "_total") ? "" : "_total");

    if (n < 0 || (size_t)n >= sizeof fam)
        return;
    for (char *c = fam; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    for (unsigned i = 0; i < fs->n; i++)
        if (strcmp(fs->f[i].name, fam) == 0)
            return;
    sample(fs, fam, "counter", (double)value, NULL);
}

/* Every plugin's counters (metric_add), whatever plugins are loaded: the
 * transports' (tcp, websocket, cmq) and others' (webhook). */
static void plugin_metrics(families_t *fs, ws_t *w)
{
    if (MQHUB_HOST_HAS(w->api, metric_each))
        w->api->metric_each(w->host, WS_PLUGIN_PREFIX, plugin_counter, fs);
}

/* Daemon counters (hub), by their host names. */
static void counter_metrics(families_t *fs, ws_t *w)
{
    static const char *const core[][2] = {
        {"requests_total", "mqhub_requests_total"},
        {"errors_total", "mqhub_request_errors_total"},
        {"sessions_opened_total", "mqhub_sessions_opened_total"},
        {"sessions_closed_total", "mqhub_sessions_closed_total"},
        {"longpoll_parked_total", "mqhub_longpoll_parked_total"},
        {"auth_failures_total", "mqhub_auth_failures_total"},
        {"push_delivered_total", "mqhub_push_delivered_total"},
        {"push_redelivered_total", "mqhub_push_redelivered_total"},
    };
    const mqhub_host_api_t *api = w->api;

    if (!MQHUB_HOST_HAS(api, metric_get))
        return;
    for (size_t i = 0; i < sizeof core / sizeof core[0]; i++)
        sample(fs, core[i][1], "counter", (double)api->metric_get(w->host, core[i][0]), NULL);
    transport_metrics(fs, w);
}

/* Per script (script.list): calls of its filter or hook, and failures. */
static void script_metrics(families_t *fs, const json_t *scripts)
{
    size_t i;
    json_t *sc;

    family(fs, "mqhub_script_calls_total", "counter");
    family(fs, "mqhub_script_errors_total", "counter");
    json_array_foreach(scripts, i, sc) {
        const char *name = json_string_value(json_object_get(sc, "name"));
        if (name == NULL)
            continue;
        sample(fs, "mqhub_script_calls_total", "counter", num(sc, "calls"), "script", name,
               NULL);
        sample(fs, "mqhub_script_errors_total", "counter", num(sc, "errors"), "script", name,
               NULL);
    }
}

/* Request latency per transport, from the hub's histograms (metric_get
 * "request_seconds_bucket.<transport>.<i>" etc., docs/metrics.md): one
 * measurement per request, taken in the core for every transport. */
static void latency_metrics(families_t *fs, ws_t *w)
{
    static const char *const transports[] = {"tcp", "websocket"};
    static const char *const le[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                     "0.05",   "0.1",   "0.25",   "0.5",   "1",    "5"};
    const char *h = "mqhub_request_duration_seconds";
    const mqhub_host_api_t *api = w->api;
    family_t *f;
    char name[96];

    if (!MQHUB_HOST_HAS(api, metric_get) ||
        (f = family(fs, h, "histogram")) == NULL)
        return;
    for (size_t t = 0; t < sizeof transports / sizeof transports[0]; t++) {
        const char *tr = transports[t];
        long long count, sum_us;

        for (size_t i = 0; i < sizeof le / sizeof le[0]; i++) {
            snprintf(name, sizeof name, "request_seconds_bucket.%s.%zu", tr, i);
            sb_printf(&f->samples, "%s_bucket{transport=\"%s\",le=\"%s\"} %lld\n", h, tr, le[i],
                      (long long)api->metric_get(w->host, name));
        }
        snprintf(name, sizeof name, "request_seconds_count.%s", tr);
        count = (long long)api->metric_get(w->host, name);
        snprintf(name, sizeof name, "request_seconds_sum_us.%s", tr);
        sum_us = (long long)api->metric_get(w->host, name);
        sb_printf(&f->samples, "%s_bucket{transport=\"%s\",le=\"+Inf\"} %lld\n", h, tr, count);
        sb_printf(&f->samples, "%s_sum{transport=\"%s\"} ", h, tr);
        sb_value(&f->samples, (double)sum_us / 1e6);
        sb_printf(&f->samples, "%s_count{transport=\"%s\"} %lld\n", h, tr, count);
    }
}

/* The # HELP text of every family (docs/metrics.md says more); the
 * families made from topic.get and subscription.get stats by prefix. */
static const struct {
    const char *name, *help;
} helps[] = {
    {"mqhub_up", "1 while the hub answers scrapes"},
    {"mqhub_build_info", "the version of mqhubd and its plugin ABI, as labels; always 1"},
    {"mqhub_process_resident_memory_bytes", "resident set size of mqhubd"},
    {"mqhub_process_open_fds", "open file descriptors of mqhubd"},
    {"mqhub_process_max_fds", "the open-file limit of mqhubd (RLIMIT_NOFILE)"},
    {"mqhub_process_cpu_seconds_total", "user and system CPU time of mqhubd"},
    {"mqhub_process_start_time_seconds", "when mqhubd started, seconds since the epoch"},
    {"mqhub_raft_term", "current raft term"},
    {"mqhub_raft_commit_index", "raft commit index as this node knows it"},
    {"mqhub_raft_applied_index", "last raft index applied to this node's state machine"},
    {"mqhub_raft_last_index", "index of the last entry in this node's raft log"},
    {"mqhub_raft_snapshot_index", "index of the newest raft snapshot on disk (0: none)"},
    {"mqhub_raft_snapshot_age_seconds", "since this process took, installed or loaded the "
                                        "newest raft snapshot"},
    {"mqhub_raft_log_entries", "raft entries applied since the newest snapshot"},
    {"mqhub_raft_log_bytes", "bytes of raft entries applied since the newest snapshot"},
    {"mqhub_raft_leader_changes_total", "times a leader became known or another took over"},
    {"mqhub_raft_entries_answered_total", "raft entries this node proposed and answered"},
    {"mqhub_raft_entry_seconds_total", "time from proposing an entry to its replies (written, "
                                       "fsync'd on a majority, applied), summed"},
    {"mqhub_raft_entries_applied_total", "raft entries applied to this node's state machine"},
    {"mqhub_raft_apply_seconds_total", "time this node's state machine spent applying entries"},
    {"mqhub_raft_is_leader", "1 on the leader"},
    {"mqhub_raft_leader_known", "1 while this node knows a leader (0: election or no quorum)"},
    {"mqhub_raft_voters", "voters in the raft configuration"},
    {"mqhub_queue_messages", "messages of a queue by state"},
    {"mqhub_queue_oldest_age_seconds", "age of the oldest ready message of a queue"},
    {"mqhub_queue_sent_total", "messages sent to a queue"},
    {"mqhub_queue_received_total", "receives of a queue's messages (redeliveries included)"},
    {"mqhub_queue_deleted_total", "messages deleted from a queue"},
    {"mqhub_queue_redelivered_total", "receives of a queue's messages received before"},
    {"mqhub_queue_dead_lettered_total", "messages a queue moved to its dead-letter queue"},
    {"mqhub_push_delivered_total", "messages this node pushed to push consumers"},
    {"mqhub_push_redelivered_total", "of them, deliveries after the first (attempt > 1)"},
    {"mqhub_data_dir_bytes", "bytes the files of the data dir take on disk"},
    {"mqhub_disk_free_bytes", "bytes free (to unprivileged users) on the data dir's "
                              "file system"},
    {"mqhub_disk_size_bytes", "size of the data dir's file system"},
    {"mqhub_subscriptions_not_exported", "subscriptions left out of the mqhub_subscription_* "
                                         "series by the cardinality cap (the least pending)"},
    {"mqhub_blocks_active", "active blocks made by hooks"},
    {"mqhub_script_calls_total", "calls of a loaded script (since its last load)"},
    {"mqhub_script_errors_total", "failed calls of a loaded script (since its last load)"},
    {"mqhub_websocket_messages_in_total", "WebSocket messages received from clients"},
    {"mqhub_websocket_messages_out_total", "WebSocket messages sent to clients"},
    {"mqhub_requests_total", "requests of every transport"},
    {"mqhub_request_errors_total", "requests answered with an error"},
    {"mqhub_sessions_opened_total", "sessions opened"},
    {"mqhub_sessions_closed_total", "sessions closed"},
    {"mqhub_longpoll_parked_total", "receives that waited for messages"},
    {"mqhub_auth_failures_total", "refused hellos (wrong or unknown token)"},
    {"mqhub_tcp_frames_too_large_total", "TCP frames over max_frame"},
    {"mqhub_tcp_tls_failures_total", "refused or timed-out TLS handshakes on the TCP transport"},
    {"mqhub_tcp_connections_refused_total", "TCP connections over max_connections"},
    {"mqhub_tcp_timeout_closes_total", "TCP connections closed by frame_timeout, "
                                       "write_timeout or idle_timeout"},
    {"mqhub_tcp_input_budget_closes_total", "TCP connections closed by input_budget"},
    {"mqhub_cmq_connections_total", "CMQ HTTP connections accepted"},
    {"mqhub_cmq_connections_refused_total", "CMQ HTTP connections over max_connections"},
    {"mqhub_cmq_requests_total", "CMQ HTTP requests (actions)"},
    {"mqhub_cmq_errors_total", "CMQ requests answered with an error code"},
    {"mqhub_cmq_auth_failures_total", "CMQ requests refused for their credential or signature"},
    {"mqhub_cmq_replays_refused_total", "CMQ requests refused as replays (nonce seen, or "
                                        "timestamp outside the window)"},
    {"mqhub_cmq_bodies_too_large_total", "CMQ request bodies over the limit"},
    {"mqhub_cmq_tls_failures_total", "refused or timed-out TLS handshakes on the CMQ transport"},
    {"mqhub_webhook_delivered_total", "webhook deliveries answered 2xx"},
    {"mqhub_webhook_failed_total", "webhook delivery attempts that failed"},
    {"mqhub_webhook_retried_total", "webhook deliveries attempted again"},
    {"mqhub_websocket_connections_total", "WebSocket connections accepted"},
    {"mqhub_websocket_frames_too_large_total", "WebSocket messages over max_frame"},
    {"mqhub_websocket_slow_clients_closed_total", "WebSocket clients closed for not reading"},
    {"mqhub_websocket_origins_refused_total", "WebSocket upgrades refused for their Origin"},
    {"mqhub_websocket_connections_refused_total", "WebSocket connections over max_connections"},
    {"mqhub_websocket_timeout_closes_total", "WebSocket connections closed by frame_timeout"},
    {"mqhub_websocket_input_budget_closes_total", "WebSocket connections closed by input_budget"},
    {"mqhub_sessions_open", "sessions open in the hub, per transport"},
    {"mqhub_connections", "open client connections, per transport"},
    {"mqhub_request_duration_seconds", "time from a request's entry into the hub to its reply"},
};

static void family_help(const char *name, char *buf, size_t size)
{
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++)
        if (strcmp(name, helps[i].name) == 0) {
            snprintf(buf, size, "%s", helps[i].help);
            return;
        }
    if (strncmp(name, "mqhub_topic_", 12) == 0)
        snprintf(buf, size, "the %s figure of topic.get's stats, per topic", name + 12);
    else if (strncmp(name, "mqhub_subscription_", 19) == 0)
        snprintf(buf, size, "the %s figure of subscription.get's stats, per subscription%s",
                 name + 19, strcmp(name + 19, "pending") == 0 ? " (its lag)" : "");
    else if (ends_with(name, "_total"))
        snprintf(buf, size, "the plugin counter %s (metric_add)", name + 6);
    else
        snprintf(buf, size, "%s", name + 6); /* a family added without help */
}

/* The process's own figures and the build (metric_get "process.*"). */
static void process_metrics(families_t *fs, ws_t *w)
{
    static const char *const gauges[][2] = {
        {"process.rss_bytes", "mqhub_process_resident_memory_bytes"},
        {"process.open_fds", "mqhub_process_open_fds"},
        {"process.max_fds", "mqhub_process_max_fds"},
        {"process.data_bytes", "mqhub_data_dir_bytes"},
        {"process.disk_free_bytes", "mqhub_disk_free_bytes"},
        {"process.disk_total_bytes", "mqhub_disk_size_bytes"},
    };
    const mqhub_host_api_t *api = w->api;
    char abi[16];

    snprintf(abi, sizeof abi, "%d", MQHUB_PLUGIN_ABI);
    sample(fs, "mqhub_build_info", "gauge", 1, "version", MQHUB_VERSION_STRING, "abi", abi,
           NULL);
    if (!MQHUB_HOST_HAS(api, metric_get))
        return;
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
        int64_t v = api->metric_get(w->host, gauges[i][0]);
        if (v >= 0)
            sample(fs, gauges[i][1], "gauge", (double)v, NULL);
    }
    sample(fs, "mqhub_process_cpu_seconds_total", "counter",
           (double)api->metric_get(w->host, "process.cpu_us") / 1e6, NULL);
    sample(fs, "mqhub_process_start_time_seconds", "gauge",
           (double)api->metric_get(w->host, "process.start_ms") / 1e3, NULL);
}

char *http_render_metrics(ws_t *w, const json_t *snap, size_t *len)
{
    families_t *fs = calloc(1, sizeof *fs);
    sbuf_t out = {0};

    if (fs == NULL)
        return NULL;
    sample(fs, "mqhub_up", "gauge", 1, NULL);
    process_metrics(fs, w);
    cluster_metrics(fs, json_object_get(snap, "cluster"));
    queue_metrics(fs, json_object_get(snap, "queues"));
    topic_metrics(fs, json_object_get(snap, "topics"));
    sample(fs, "mqhub_blocks_active", "gauge",
           (double)json_array_size(json_object_get(snap, "blocks")), NULL);
    script_metrics(fs, json_object_get(snap, "scripts"));
    sample(fs, "mqhub_websocket_messages_in_total", "counter", (double)w->messages_in, NULL);
    sample(fs, "mqhub_websocket_messages_out_total", "counter", (double)w->messages_out, NULL);
    counter_metrics(fs, w);
    plugin_metrics(fs, w);
    latency_metrics(fs, w);
    for (unsigned i = 0; i < fs->n; i++) {
        char help[256];
        family_help(fs->f[i].name, help, sizeof help);
        sb_printf(&out, "# HELP %s %s\n", fs->f[i].name, help);
        sb_printf(&out, "# TYPE %s %s\n", fs->f[i].name, fs->f[i].type);
        if (fs->f[i].samples.p != NULL)
            sb_printf(&out, "%.*s", (int)fs->f[i].samples.len, fs->f[i].samples.p);
        out.failed |= fs->f[i].samples.failed;
        free(fs->f[i].samples.p);
    }
    free(fs);
    if (out.failed) {
        free(out.p);
        return NULL;
    }
    *len = out.len;
    return out.p;
}

/* ---------------------------------------------------------------- readyz */

/* Why a member of a multi-node cluster without a leader is not ready: it
 * waits for a majority of the voters; it knows only of itself as up (a
 * follower learns of the others from a leader). */
static const char *quorum_wait(const json_t *cl, char *buf, size_t size)
{
    unsigned v = voters(cl);
    snprintf(buf, size, "waiting for quorum (1 of %u voters known up: this node; %u needed to "
                        "elect a leader)", v, v / 2 + 1);
    return buf;
}

static void render_ready(http_req_t *h, const json_t *snap)
{
    const json_t *cl = json_object_get(snap, "cluster");
    const json_t *errors = json_object_get(snap, "errors");
    double lag = num(cl, "commit_index") - num(cl, "last_applied");
    const char *why = NULL;
    char quorum[160];
    sbuf_t b = {0};

    if (cl == NULL)
        why = json_string_value(json_object_get(errors, "cluster.status")) ?: "no status";
    else if (json_is_string(json_object_get(cl, "role")) &&
             strcmp(json_string_value(json_object_get(cl, "role")), "removed") == 0)
        why = "removed from the cluster (cluster.remove): this node no longer votes nor "
              "serves; stop it, or add it again with cluster.add";
    else if (num(cl, "leader_id") == 0 && voters(cl) > 1)
        why = quorum_wait(cl, quorum, sizeof quorum);
    else if (!json_is_string(json_object_get(cl, "leader")))
        why = "no leader known";
    else if (lag > WS_READY_LAG)
        why = "applying the log (behind the commit index)";
    h->status = why == NULL ? 200 : 503;
    if (why == NULL)
        sb_printf(&b, "ready: leader %s, term %.0f\n",
                  json_string_value(json_object_get(cl, "leader")), num(cl, "term"));
    else
        sb_printf(&b, "not ready: %s\n", why);
    h->body = b.p;
    h->len = b.len;
}

/* ---------------------------------------------------------------- requests */

static void on_snapshot(void *arg, const json_t *snap)
{
    http_req_t *h = arg;

    h->ticket = NULL;
    h->ready = true;
    if (snap == NULL) {
        h->status = 500;
    } else if (h->ep == EP_METRICS) {
        h->body = http_render_metrics(h->w, snap, &h->len);
        h->status = h->body != NULL ? 200 : 500;
    } else {
        render_ready(h, snap);
    }
    lws_callback_on_writable(h->wsi);
}

/* ------------------------------------------------------------ credential */

/* /metrics shows every queue and topic: the request's credential is checked
 * by the hub itself, on a session of its own, as a client's would be
 * (wrong tokens are throttled and logged there): hello with the bearer
 * token (Authorization: Bearer T, or ?token=T), then monitor.check, which
 * needs monitor (or admin) on * and is answered by any node. */

/* The check's result. Its session stays open until the request ends
 * (http_end): this runs inside the session's reply callback. */
static void auth_done(http_req_t *h, unsigned status)
{
    if (status == 200) {
        h->ticket = stats_want(h->w->stats, 0, on_snapshot, h);
        return;
    }
    h->ready = true;
    h->status = status;
    h->body = strdup(status == 401 ? "a token is needed: Authorization: Bearer TOKEN\n"
                                   : "this identity may not read /metrics (it needs the "
                                     "monitor or admin grant on *)\n");
    h->len = h->body != NULL ? strlen(h->body) : 0;
    lws_callback_on_writable(h->wsi);
}

static const char *reply_code(const json_t *reply)
{
    const char *code = json_string_value(json_object_get(reply, "code"));
    return json_is_true(json_object_get(reply, "ok")) ? "" : code != NULL ? code : "?";
}

static void on_auth_monitor(void *arg, const char *buf, size_t len)
{
    json_t *reply = ws_reply_json(buf, len);
    const char *code = reply_code(reply);

    auth_done(arg, *code == '\0' ? 200 : strcmp(code, "FORBIDDEN") == 0 ? 403 : 401);
    json_decref(reply);
}

/* {op, id} (monitor.check) or, with @hello, {op: hello, id, version[, token]}
 * (no token when @token is ""). */
static void auth_request(http_req_t *h, bool hello, const char *token, mqhub_reply_cb cb)
{
    const char *op = hello ? "hello" : "monitor.check";
    bool with_token = hello && *token != '\0';
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2 + hello + with_token);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint8(&pk, 1);
    if (hello) {
        msgpack_pack_str_with_body(&pk, "version", 7);
        msgpack_pack_uint8(&pk, 1);
    }
    if (with_token) {
        msgpack_pack_str_with_body(&pk, "token", 5);
        msgpack_pack_str_with_body(&pk, token, strlen(token));
    }
    h->w->api->request(h->session, sb.data, sb.size, cb, h);
    msgpack_sbuffer_destroy(&sb);
}

static void on_auth_hello(void *arg, const char *buf, size_t len)
{
    http_req_t *h = arg;
    json_t *reply = ws_reply_json(buf, len);
    bool ok = *reply_code(reply) == '\0';

    json_decref(reply);
    if (ok)
        auth_request(h, false, "", on_auth_monitor);
    else
        auth_done(h, 401);
}

/* The bearer token of the request into @out ("" when none). */
static void bearer(struct lws *wsi, char *out, size_t len)
{
    char got[300];

    *out = '\0';
    if (lws_hdr_copy(wsi, got, sizeof got, WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
        strncmp(got, "Bearer ", 7) == 0)
        snprintf(out, len, "%s", got + 7);
    else if (lws_get_urlarg_by_name(wsi, "token=", got, sizeof got) != NULL)
        snprintf(out, len, "%s", got + 6);
}

static int auth_start(http_req_t *h)
{
    char token[300], peer[96] = "?";

    lws_get_peer_simple(h->wsi, peer, sizeof peer);
    bearer(h->wsi, token, sizeof token);
    h->session = h->w->api->session_open(h->w->host, peer, NULL, NULL);
    if (h->session == NULL)
        return -1;
    auth_request(h, true, token, on_auth_hello);
    return 0;
}

static int write_header(http_req_t *h);
static int write_body(http_req_t *h);

/* /healthz is answered at once, inside LWS_CALLBACK_HTTP, so that pipelined
 * requests (several GETs in one read) are each answered in turn: lws hands
 * us the next one only after this transaction completed. */
static int answer_healthz(http_req_t *h)
{
    h->ready = true;
    h->status = 200;
    h->body = strdup("ok\n");
    h->len = 3;
    if (h->body == NULL || write_header(h) != 0)
        return -1;
    return write_body(h);
}

static int start(ws_t *w, struct lws *wsi, http_req_t *h)
{
    char uri[256] = "";

    if (h->wsi != NULL) /* a request pipelined behind one still waiting */
        return -1;

    lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    h->w = w;
    h->wsi = wsi;
    h->ep = strcmp(uri, "/healthz") == 0   ? EP_HEALTHZ
            : strcmp(uri, "/readyz") == 0  ? EP_READYZ
            : strcmp(uri, "/metrics") == 0 ? EP_METRICS
                                           : EP_NONE;
    if (h->ep == EP_NONE) {
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    if (h->ep == EP_METRICS)
        return auth_start(h);
    if (h->ep == EP_HEALTHZ)
        return answer_healthz(h);
    h->ticket = stats_want(w->stats, h->ep == EP_METRICS ? 0 : 1000, on_snapshot, h);
    return 0;
}

static int write_header(http_req_t *h)
{
    unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
                                       *end = buf + sizeof buf - 1;
    const char *type = h->ep == EP_METRICS ? "text/plain; version=0.0.4; charset=utf-8"
                                           : "text/plain; charset=utf-8";

    if (h->status != 200)
        type = "text/plain; charset=utf-8";
    if (lws_add_http_common_headers(h->wsi, h->status, type, (lws_filepos_t)h->len, &p, end) ||
        lws_add_http_header_by_name(h->wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        (h->status == 401 &&
         lws_add_http_header_by_name(h->wsi, (const unsigned char *)"www-authenticate:",
                                     (const unsigned char *)"Bearer realm=\"mqhub\"", 20, &p,
                                     end)) ||
        lws_finalize_write_http_header(h->wsi, start, &p, end))
        return -1;
    h->header_sent = true;
    lws_callback_on_writable(h->wsi);
    return 0;
}

/* The request is over (answered, or its connection closed): free its
 * state, so that a kept-alive connection may ask again. */
static void http_end(http_req_t *h)
{
    if (h->ticket != NULL)
        stats_cancel(h->w->stats, h->ticket);
    if (h->session != NULL)
        h->w->api->session_close(h->session); /* no reply callback after this */
    free(h->body);
    memset(h, 0, sizeof *h);
}

static int write_body(http_req_t *h)
{
    struct lws *wsi = h->wsi;
    unsigned char *buf = malloc(LWS_PRE + h->len + 1);
    int n;

    if (buf == NULL)
        return -1;
    memcpy(buf + LWS_PRE, h->body, h->len);
    n = lws_write(h->wsi, buf + LWS_PRE, h->len, LWS_WRITE_HTTP_FINAL);
    free(buf);
    http_end(h);
    if (n < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

int http_callback(ws_t *w, struct lws *wsi, enum lws_callback_reasons reason, void *user,
                  void *in, size_t len)
{
    http_req_t *h = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return start(w, wsi, h);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (h == NULL || h->wsi == NULL || !h->ready)
            break;
        if (h->status >= 500 && h->body == NULL) {
            http_end(h);
            lws_return_http_status(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR,
                                   "metrics unavailable");
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        return h->header_sent ? write_body(h) : write_header(h);
    case LWS_CALLBACK_CLOSED_HTTP:
        if (h != NULL && h->wsi != NULL)
            http_end(h);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
