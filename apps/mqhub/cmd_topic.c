/* cmd_topic.c: `mqhub topic create|list|get|set|delete|peek`, `mqhub publish`,
 * `mqhub sub create|set|list|get|delete|rewind` and `mqhub tail`.
 *
 * Like cmd_queue.c: check the arguments (usage error: exit 2), connect, one
 * library call, print a table or with --json one JSON object. tail is the
 * exception: it subscribes, prints pushes as they arrive from
 * mqhub_client_poll(), acknowledges them after each poll (which frees their
 * credit slots) and on Ctrl-C unsubscribes and exits 0. Start at cmd_topic(),
 * cmd_topic_sub(), cmd_topic_tail().
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define TAIL_DEFAULT_CREDIT 64
#define TAIL_POLL_MS 200

static int need_args(cli_t *cli, const char *cmd, int n, const char *what)
{
    if (cli->n_args < n)
        return cli_usage_error(cmd, "missing %s", what);
    if (cli->n_args > n)
        return cli_usage_error(cmd, "unexpected argument \"%s\"", cli->args[n]);
    return 0;
}

static void print_done(cli_t *cli, const char *what, const char *name)
{
    if (cli->json)
        out_json(json_pack("{s:b,s:s}", "ok", 1, "name", name));
    else
        printf("%s %s\n", what, name);
}

/* ---------------------------------------------------------------- topics */

static int topic_attrs(cli_t *cli, mqhub_topic_attrs_t *a)
{
    *a = (mqhub_topic_attrs_t){0};
    if (cli->attrs.set &
        ~(unsigned)(MQHUB_ATTR_MAX_MSG_SIZE | MQHUB_ATTR_RETENTION | MQHUB_ATTR_HOOK))
        return cli_usage_error("topic", "topics take only --max-msg-size, --retention and "
                                        "--hook (or max_msg_size=, retention=, hook=)");
    if (cli->attrs.set & MQHUB_ATTR_MAX_MSG_SIZE) {
        a->max_msg_size = cli->attrs.max_msg_size;
        a->set |= MQHUB_TOPIC_MAX_MSG_SIZE;
    }
    if (cli->attrs.set & MQHUB_ATTR_RETENTION) {
        a->retention = cli->attrs.retention;
        a->set |= MQHUB_TOPIC_RETENTION;
    }
    if (cli->attrs.set & MQHUB_ATTR_HOOK) {
        snprintf(a->hook, sizeof a->hook, "%s", cli->attrs.hook);
        a->set |= MQHUB_TOPIC_HOOK;
    }
    return 0;
}

/* `topic create|set NAME [options] [key=value...]`: the forms of `queue
 * create|set`, for the attributes a topic has. */
static int t_create_set(cli_t *cli, bool create)
{
    const char *cmd = create ? "topic create" : "topic set";
    mqhub_topic_attrs_t a;
    int rc = cli->n_args < 1 ? cli_usage_error(cmd, "missing topic NAME") : 0;
    if (rc != 0 || (rc = cmd_queue_kv_attrs(cli, cmd)) != 0 || (rc = topic_attrs(cli, &a)) != 0)
        return rc;
    if (!create && a.set == 0)
        return cli_usage_error(cmd, "no attribute to set");
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    rc = create ? mqhub_client_topic_create(cli->client, cli->args[0], a.set ? &a : NULL)
                : mqhub_client_topic_set(cli->client, cli->args[0], &a);
    if (rc != 0)
        return cli_fail(cli, rc, create ? "topic create" : "topic set");
    print_done(cli, create ? "created topic" : "updated topic", cli->args[0]);
    return CLI_OK;
}

static int t_delete(cli_t *cli)
{
    int rc = need_args(cli, "topic", 1, "topic NAME");
    if (rc != 0 || (rc = cli_connect(cli)) != 0)
        return rc;
    if ((rc = mqhub_client_topic_delete(cli->client, cli->args[0])) != 0)
        return cli_fail(cli, rc, "topic delete");
    print_done(cli, "deleted topic", cli->args[0]);
    return CLI_OK;
}

static int print_names(cli_t *cli, const mqhub_queue_list_t *l, const char *heading)
{
    if (cli->json) {
        json_t *a = json_array();
        for (size_t i = 0; i < l->n; i++)
            json_array_append_new(a, json_string(l->names[i]));
        out_json(json_pack("{s:o,s:I}", heading, a, "total", (json_int_t)l->total));
        return CLI_OK;
    }
    table_t *t = out_table_new(1, heading[0] == 't' ? "TOPIC" : "SUBSCRIPTION");
    for (size_t i = 0; i < l->n; i++)
        out_table_row(t, l->names[i]);
    out_table_print(t, stdout);
    return CLI_OK;
}

static int t_list(cli_t *cli)
{
    mqhub_queue_list_t l;
    int rc = need_args(cli, "topic", 0, "");
    if (rc != 0 || (rc = cli_connect(cli)) != 0)
        return rc;
    rc = mqhub_client_topic_list(cli->client, cli->prefix, cli->offset > 0 ? cli->offset : 0,
                                 cli->limit > 0 ? cli->limit : 0, &l);
    if (rc != 0)
        return cli_fail(cli, rc, "topic list");
    print_names(cli, &l, "topics");
    mqhub_queue_list_free(&l);
    return CLI_OK;
}

static int t_get(cli_t *cli)
{
    mqhub_topic_info_t ti;
    int rc = need_args(cli, "topic", 1, "topic NAME");
    if (rc != 0 || (rc = cli_connect(cli)) != 0)
        return rc;
    if ((rc = mqhub_client_topic_get(cli->client, cli->args[0], &ti)) != 0)
        return cli_fail(cli, rc, "topic get");
    json_t *subs = json_array();
    for (size_t i = 0; i < ti.n_subscriptions; i++)
        json_array_append_new(subs, json_string(ti.subscriptions[i]));
    json_t *j = json_pack("{s:s,s:{s:i,s:i,s:s?},s:{s:I,s:I,s:I,s:I},s:o}", "name", ti.name,
                          "attrs", "max_msg_size", (int)ti.attrs.max_msg_size, "retention",
                          (int)ti.attrs.retention, "hook",
                          ti.attrs.hook[0] ? ti.attrs.hook : NULL, "stats", "retained",
                          (json_int_t)ti.retained, "published_total",
                          (json_int_t)ti.published_total, "first_seq",
                          (json_int_t)ti.first_seq, "last_seq", (json_int_t)ti.last_seq,
                          "subscriptions", subs);
    if (cli->json) {
        out_json(j);
    } else {
        out_fields("TOPIC", ti.name, j);
        json_decref(j);
    }
    mqhub_topic_info_free(&ti);
    return CLI_OK;
}

static void t_peek_table(json_t *msgs)
{
    table_t *t = out_table_new(6, "SEQ", "MSG_ID", "TAGS", "KEY", "ATTRS", "BODY");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char seq[24], tags[256], attrs[512], body[256];
        json_t *b = json_object_get(m, "body"), *key = json_object_get(m, "key");
        snprintf(seq, sizeof seq, "%lld", (long long)json_integer_value(json_object_get(m, "seq")));
        out_join_cell(tags, sizeof tags, json_object_get(m, "tags"));
        out_join_cell(attrs, sizeof attrs, json_object_get(m, "attrs"));
        if (b)
            out_body_cell(body, sizeof body, json_string_value(b), json_string_length(b), 60);
        else
            snprintf(body, sizeof body, "<binary>");
        out_table_row(t, seq, json_string_value(json_object_get(m, "msg_id")), tags,
                      json_is_string(key) ? json_string_value(key) : "-", attrs, body);
    }
    out_table_print(t, stdout);
}

/* `topic peek TOPIC [SUB] [--max N] [--from SEQ]`: the retained messages, or
 * SUB's pending ones, delivering and acking none (topic.peek). */
static int t_peek(cli_t *cli)
{
    mqhub_response_t r;
    uint64_t from;
    const char *sub = cli->n_args > 1 ? cli->args[1] : NULL;
    if (cli->n_args < 1 || cli->n_args > 2)
        return cli_usage_error("topic peek", cli->n_args < 1 ? "missing TOPIC"
                                                             : "too many arguments");
    if (!cmd_queue_from_seq(cli, &from))
        return cli_usage_error("topic peek", "--from takes a seq (a number)");
    if (cli->max == 0 || cli->max > MQHUB_RECEIVE_MAX)
        return cli_usage_error("topic peek", "--max takes 1-%d", MQHUB_RECEIVE_MAX);
    int rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    rc = mqhub_client_topic_peek(cli->client, cli->args[0], sub,
                                 cli->max > 0 ? (uint32_t)cli->max : 10, from, &r);
    if (rc != 0)
        return cli_fail(cli, rc, "topic peek");
    char again[2 * MQHUB_NAME_MAX + 32];
    snprintf(again, sizeof again, "mqhub topic peek %s%s%s", cli->args[0], sub ? " " : "",
             sub ? sub : "");
    rc = out_peek(cli, &r.map, t_peek_table, sub ? "no pending messages" : "no retained messages",
                  again);
    mqhub_response_free(&r);
    return rc;
}

int cmd_topic(cli_t *cli)
{
    const char *sub = cli->subcommand;
    if (!strcmp(sub, "create"))
        return t_create_set(cli, true);
    if (!strcmp(sub, "set"))
        return t_create_set(cli, false);
    if (!strcmp(sub, "delete"))
        return t_delete(cli);
    if (!strcmp(sub, "list"))
        return t_list(cli);
    if (!strcmp(sub, "get"))
        return t_get(cli);
    if (!strcmp(sub, "peek"))
        return t_peek(cli);
    return cli_unknown_subcommand("topic", sub);
}

/* --------------------------------------------------------------- publish */

int cmd_topic_publish(cli_t *cli)
{
    mqhub_publish_opts_t o = {.tags = cli->tags, .n_tags = cli->n_tags, .key = cli->key,
                              .attrs = cli->msg_attrs, .n_attrs = cli->n_msg_attrs};
    mqhub_publish_result_t res;
    char *body = NULL;
    size_t len;
    int rc;

    if (cli->n_args < 1 || cli->n_args > 2)
        return cli_usage_error("publish", cli->n_args < 1 ? "missing TOPIC"
                                                          : "too many arguments");
    if (cli->n_tags > MQHUB_TAGS_MAX)
        return cli_usage_error("publish", "at most %d --tag", MQHUB_TAGS_MAX);
    if (cli->n_args == 2 && strcmp(cli->args[1], "-") != 0) {
        len = strlen(cli->args[1]);
    } else if ((body = cmd_messages_read_all(stdin, &len)) == NULL) {
        fprintf(stderr, "mqhub: out of memory reading stdin\n");
        return CLI_USAGE;
    }
    if ((rc = cli_connect(cli)) == 0) {
        rc = mqhub_client_publish(cli->client, cli->args[0], body ? body : cli->args[1], len,
                                  &o, &res);
        rc = rc != 0 ? cli_fail(cli, rc, "publish") : CLI_OK;
    }
    free(body);
    if (rc != CLI_OK)
        return rc;
    if (cli->json) {
        out_json(json_pack("{s:s,s:I,s:I}", "msg_id", res.msg_id, "seq", (json_int_t)res.seq,
                           "delivered", (json_int_t)res.delivered));
        return CLI_OK;
    }
    char seq[24], delivered[24];
    snprintf(seq, sizeof seq, "%llu", (unsigned long long)res.seq);
    snprintf(delivered, sizeof delivered, "%llu", (unsigned long long)res.delivered);
    table_t *t = out_table_new(3, "MSG_ID", "SEQ", "DELIVERED");
    out_table_row(t, res.msg_id, seq, delivered);
    out_table_print(t, stdout);
    return CLI_OK;
}

/* --------------------------------------------------------- subscriptions */

static int parse_from(cli_t *cli, mqhub_sub_opts_t *o)
{
    char *end;
    if (!cli->from || !strcmp(cli->from, "latest") || !strcmp(cli->from, "earliest")) {
        o->from = cli->from;
        return 0;
    }
    o->from_time = strtoull(cli->from, &end, 10);
    if (*end != '\0' || end == cli->from)
        return cli_usage_error("sub", "--from takes latest, earliest or a time in ms");
    o->has_from_time = true;
    return 0;
}

/* The subscription options given on the command line (sub create, sub set). */
static mqhub_sub_opts_t sub_opts(const cli_t *cli)
{
    return (mqhub_sub_opts_t){
        .queue = cli->endpoint_queue, .filter_tags = cli->filter_tags,
        .n_filter_tags = cli->n_filter_tags, .binding_keys = cli->bindings,
        .n_binding_keys = cli->n_bindings, .filter_script = cli->filter_script,
        .retry = cli->retry, .dead_letter_queue = cli->dlq,
        .max_attempts = cli->max_attempts > 0 ? (uint32_t)cli->max_attempts : 0,
        .interval_ms = cli->interval_ms > 0 ? (uint64_t)cli->interval_ms : 0,
        .max_interval_ms = cli->max_interval_ms > 0 ? (uint64_t)cli->max_interval_ms : 0,
        .http = cli->http, .http_format = cli->http_format,
    };
}

static int s_create(cli_t *cli)
{
    mqhub_sub_opts_t o = sub_opts(cli);
    int rc = need_args(cli, "sub", 2, "TOPIC NAME");
    if (rc != 0 || (rc = parse_from(cli, &o)) != 0)
        return rc;
    if ((cli->endpoint_queue != NULL) + cli->push + (cli->http != NULL) != 1)
        return cli_usage_error("sub", "give exactly one endpoint: --queue Q, --push or "
                               "--http URL");
    if (cli->http_format && !cli->http)
        return cli_usage_error("sub", "--format applies to an --http endpoint");
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    if ((rc = mqhub_client_sub_create(cli->client, cli->args[0], cli->args[1], &o)) != 0)
        return cli_fail(cli, rc, "sub create");
    print_done(cli, "created subscription", cli->args[1]);
    return CLI_OK;
}

/* sub set: only the options given change; --clear-filters sends empty tag
 * and binding lists (then any --filter-tag / --binding given). */
static int s_set(cli_t *cli)
{
    bool clear = cli->clear_filters;
    mqhub_sub_opts_t o = sub_opts(cli);
    if (cli->n_filter_tags == 0 && !clear)
        o.filter_tags = NULL; /* absent: kept */
    if (cli->n_bindings == 0 && !clear)
        o.binding_keys = NULL;
    int rc = need_args(cli, "sub", 2, "TOPIC NAME");
    if (rc != 0)
        return rc;
    if (cli->endpoint_queue || cli->push || cli->from)
        return cli_usage_error("sub", "sub set cannot change --queue, --push or --from: "
                               "delete the subscription and create it again");
    if (cli->http_format && !cli->http)
        return cli_usage_error("sub", "--format goes with --http URL");
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    if ((rc = mqhub_client_sub_set(cli->client, cli->args[0], cli->args[1], &o)) != 0)
        return cli_fail(cli, rc, "sub set");
    print_done(cli, "changed subscription", cli->args[1]);
    return CLI_OK;
}

static int s_delete(cli_t *cli)
{
    int rc = need_args(cli, "sub", 2, "TOPIC NAME");
    if (rc != 0 || (rc = cli_connect(cli)) != 0)
        return rc;
    if ((rc = mqhub_client_sub_delete(cli->client, cli->args[0], cli->args[1])) != 0)
        return cli_fail(cli, rc, "sub delete");
    print_done(cli, "deleted subscription", cli->args[1]);
    return CLI_OK;
}

static int s_list(cli_t *cli)
{
    mqhub_queue_list_t l;
    int rc = need_args(cli, "sub", 1, "TOPIC");
    if (rc != 0 || (rc = cli_connect(cli)) != 0)
        return rc;
    if ((rc = mqhub_client_sub_list(cli->client, cli->args[0], &l)) != 0)
        return cli_fail(cli, rc, "sub list");
    print_names(cli, &l, "subscriptions");
    mqhub_queue_list_free(&l);
    return CLI_OK;
}

static int s_get(cli_t *cli)
{
    mqhub_response_t resp;
    int rc = need_args(cli, "sub", 2, "TOPIC NAME");
    if (rc != 0 || (rc = cli_connect(cli)) != 0)
        return rc;
    if ((rc = mqhub_client_sub_get(cli->client, cli->args[0], cli->args[1], &resp)) != 0)
        return cli_fail(cli, rc, "sub get");
    json_t *j = out_msgpack_json(&resp.map);
    mqhub_response_free(&resp);
    if (cli->json) {
        out_json(j);
        return CLI_OK;
    }
    out_fields("SUBSCRIPTION", cli->args[1], j);
    json_decref(j);
    return CLI_OK;
}

static int s_rewind(cli_t *cli)
{
    uint64_t point, rewound = 0;
    int rc = need_args(cli, "sub", 2, "TOPIC NAME");
    if (rc != 0)
        return rc;
    if ((cli->rewind_time >= 0) + (cli->rewind_ago >= 0) + (cli->rewind_seq >= 0) != 1)
        return cli_usage_error("sub", "give one of --time MS, --ago S, --seq N");
    if (cli->rewind_ago >= 0) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        point = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000 -
                (uint64_t)cli->rewind_ago * 1000;
    } else {
        point = (uint64_t)(cli->rewind_seq >= 0 ? cli->rewind_seq : cli->rewind_time);
    }
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    rc = mqhub_client_sub_rewind(cli->client, cli->args[0], cli->args[1],
                                 cli->rewind_seq >= 0 ? NULL : &point,
                                 cli->rewind_seq >= 0 ? &point : NULL, &rewound);
    if (rc != 0)
        return cli_fail(cli, rc, "sub rewind");
    if (cli->json)
        out_json(json_pack("{s:I}", "rewound", (json_int_t)rewound));
    else
        printf("rewound %llu messages\n", (unsigned long long)rewound);
    return CLI_OK;
}

int cmd_topic_sub(cli_t *cli)
{
    const char *sub = cli->subcommand;
    if (!strcmp(sub, "create"))
        return s_create(cli);
    if (!strcmp(sub, "set"))
        return s_set(cli);
    if (!strcmp(sub, "delete"))
        return s_delete(cli);
    if (!strcmp(sub, "list"))
        return s_list(cli);
    if (!strcmp(sub, "get"))
        return s_get(cli);
    if (!strcmp(sub, "rewind"))
        return s_rewind(cli);
    return cli_unknown_subcommand("sub", sub);
}

/* ------------------------------------------------------------------ tail */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = 1;
    signal(sig, SIG_DFL); /* a second Ctrl-C ends at once */
}

typedef struct tail {
    cli_t *cli;
    uint64_t *acks; /* seqs printed since the last ack */
    size_t n_acks, cap;
    bool closed;
    table_t *table;
} tail_t;

static void tail_print(tail_t *t, const mqhub_push_msg_t *m)
{
    if (t->cli->json) {
        json_t *tags = json_array(), *attrs = json_object();
        for (size_t i = 0; i < m->n_tags; i++)
            json_array_append_new(tags, json_string(m->tags[i]));
        for (size_t i = 0; i < m->n_attrs; i++)
            json_object_set_new(attrs, m->attrs[i].key, json_string(m->attrs[i].value));
        json_t *j = json_pack("{s:s,s:I,s:o,s:o,s:I,s:i}", "msg_id", m->msg_id, "seq",
                              (json_int_t)m->seq, "tags", tags, "attrs", attrs,
                              "published_at", (json_int_t)m->published_at, "attempt",
                              (int)m->attempt);
        if (m->key)
            json_object_set_new(j, "key", json_string(m->key));
        out_json_body(j, m->body, m->body_len);
        out_json(j);
        return;
    }
    char seq[24], attempt[16], tags[256] = "", body[256];
    snprintf(seq, sizeof seq, "%llu", (unsigned long long)m->seq);
    snprintf(attempt, sizeof attempt, "%u", m->attempt);
    for (size_t i = 0, off = 0; i < m->n_tags && off < sizeof tags; i++)
        off += (size_t)snprintf(tags + off, sizeof tags - off, "%s%s", i ? "," : "",
                                m->tags[i]);
    out_body_cell(body, sizeof body, m->body, m->body_len, 60);
    if (!t->table)
        t->table = out_table_new(6, "SEQ", "MSG_ID", "ATTEMPT", "TAGS", "KEY", "BODY");
    out_table_row(t->table, seq, m->msg_id, attempt, tags, m->key ? m->key : "", body);
}

static void on_push(void *arg, const mqhub_push_t *p)
{
    tail_t *t = arg;
    if (strcmp(p->kind, "closed") == 0) {
        fprintf(stderr, "mqhub: the server closed the subscription: %s: %s\n",
                mqhub_err_name(p->code), p->error);
        t->closed = true;
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        tail_print(t, &p->msgs[i]);
        if (t->n_acks == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 64;
            uint64_t *a = realloc(t->acks, cap * sizeof *a);
            if (!a)
                continue; /* not acked: redelivered later */
            t->acks = a;
            t->cap = cap;
        }
        t->acks[t->n_acks++] = p->msgs[i].seq;
    }
}

/* Print what arrived (one table per poll) and acknowledge it. */
static int tail_flush(tail_t *t, const char *topic)
{
    if (t->table) {
        out_table_print(t->table, stdout);
        t->table = NULL;
    }
    fflush(stdout);
    if (t->n_acks == 0)
        return 0;
    int rc = mqhub_client_ack(t->cli->client, topic, t->cli->sub, t->acks, t->n_acks, NULL);
    t->n_acks = 0;
    return rc;
}

/* tail --ephemeral: an ephemeral push subscription of this session
 * (from latest), which the hub deletes when the CLI's connection closes. */
static int tail_ephemeral(cli_t *cli, const char *topic)
{
    static char name[32];
    mqhub_sub_opts_t o = {.ephemeral = true};
    snprintf(name, sizeof name, "tail-%lx-%lx", (unsigned long)getpid(),
             (unsigned long)time(NULL));
    int rc = mqhub_client_sub_create(cli->client, topic, name, &o);
    if (rc != 0)
        return cli_fail(cli, rc, "tail: ephemeral subscription");
    cli->sub = name;
    return 0;
}

int cmd_topic_tail(cli_t *cli)
{
    tail_t t = {.cli = cli};
    struct sigaction sa = {.sa_handler = on_signal};
    int rc = need_args(cli, "tail", 1, "TOPIC");
    if (rc != 0)
        return rc;
    if (!cli->sub == !cli->ephemeral)
        return cli_usage_error("tail", "give --sub NAME or --ephemeral");
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    const char *topic = cli->args[0];
    if (cli->ephemeral && (rc = tail_ephemeral(cli, topic)) != 0)
        return rc;
    uint32_t credit = cli->credit > 0 ? (uint32_t)cli->credit : TAIL_DEFAULT_CREDIT;
    mqhub_client_on_push(cli->client, on_push, &t);
    if ((rc = mqhub_client_subscribe(cli->client, topic, cli->sub, credit)) != 0)
        return cli_fail(cli, rc, "subscribe");
    if (isatty(STDOUT_FILENO) && isatty(STDERR_FILENO)) /* a person watching, not a pipe */
        fprintf(stderr, "waiting for messages on %s, subscription %s… (Ctrl-C to stop)\n",
                topic, cli->sub);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!interrupted && !t.closed && rc >= 0) {
        rc = mqhub_client_poll(cli->client, TAIL_POLL_MS);
        if (rc >= 0 && tail_flush(&t, topic) == MQHUB_ECONN)
            rc = MQHUB_ECONN;
    }
    mqhub_client_on_push(cli->client, NULL, NULL);
    free(t.acks);
    if (rc < 0)
        return cli_fail(cli, rc, "tail");
    if (t.closed)
        return CLI_SERVER;
    rc = mqhub_client_unsubscribe(cli->client, topic, cli->sub);
    return rc == 0 ? CLI_OK : cli_fail(cli, rc, "unsubscribe");
}
