/* cmd_queue.c: `mqhub queue create|list|get|set|delete|purge|rewind|peek|redrive`.
 * Each subcommand checks its arguments (usage error: exit 2), connects, makes
 * one library call and prints a table or, with --json, one JSON object.
 * Start at cmd_queue(); add a subcommand as one function and one table entry.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"

int cmd_queue_kv_attrs(cli_t *cli, const char *cmd)
{
    for (int i = 1; i < cli->n_args; i++) {
        char *eq = strchr(cli->args[i], '=');
        if (!eq)
            return cli_usage_error(cmd, "unexpected argument \"%s\"", cli->args[i]);
        *eq = '\0';
        for (char *p = cli->args[i]; *p; p++)
            *p = *p == '-' ? '_' : *p;
        if (mqhub_queue_attrs_parse(&cli->attrs, cli->args[i], eq + 1) != 0)
            return cli_usage_error(cmd, "bad queue attribute %s=%s", cli->args[i], eq + 1);
    }
    return 0;
}

static int need_name(cli_t *cli, const char *cmd, bool extra_ok)
{
    if (cli->n_args < 1)
        return cli_usage_error(cmd, "missing queue NAME");
    if (!extra_ok && cli->n_args > 1)
        return cli_usage_error(cmd, "unexpected argument \"%s\"", cli->args[1]);
    return 0;
}

static void print_ok(cli_t *cli, const char *what, const char *name)
{
    if (cli->json)
        out_json(json_pack("{s:b,s:s}", "ok", 1, "name", name));
    else
        printf("%s %s\n", what, name);
}

static int q_create_set(cli_t *cli, bool create)
{
    const char *cmd = create ? "queue create" : "queue set";
    int rc = need_name(cli, cmd, true);
    if (rc == 0)
        rc = cmd_queue_kv_attrs(cli, cmd);
    if (rc != 0)
        return rc;
    if (cli->delay >= 0) {
        cli->attrs.delay = (uint32_t)cli->delay;
        cli->attrs.set |= MQHUB_ATTR_DELAY;
    }
    if (!create && cli->attrs.set == 0)
        return cli_usage_error(cmd, "no attribute to set");
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    const char *name = cli->args[0];
    rc = create ? mqhub_client_queue_create(cli->client, name,
                                            cli->attrs.set ? &cli->attrs : NULL)
                : mqhub_client_queue_set(cli->client, name, &cli->attrs);
    if (rc != 0)
        return cli_fail(cli, rc, cmd);
    print_ok(cli, create ? "created queue" : "updated queue", name);
    return CLI_OK;
}

static int q_create(cli_t *cli)
{
    return q_create_set(cli, true);
}

static int q_set(cli_t *cli)
{
    return q_create_set(cli, false);
}

static int q_simple(cli_t *cli, const char *cmd, const char *done,
                    int (*fn)(mqhub_client_t *, const char *))
{
    int rc = need_name(cli, cmd, false);
    if (rc != 0 || (rc = cli_connect(cli)) != 0)
        return rc;
    rc = fn(cli->client, cli->args[0]);
    if (rc != 0)
        return cli_fail(cli, rc, cmd);
    print_ok(cli, done, cli->args[0]);
    return CLI_OK;
}

static int q_delete(cli_t *cli)
{
    return q_simple(cli, "queue delete", "deleted queue", mqhub_client_queue_delete);
}

static int q_purge(cli_t *cli)
{
    return q_simple(cli, "queue purge", "purged queue", mqhub_client_queue_purge);
}

static json_t *attrs_json(const mqhub_queue_attrs_t *a)
{
    json_t *j = json_object();
    unsigned s = a->set;
    if (s & MQHUB_ATTR_VISIBILITY_TIMEOUT)
        json_object_set_new(j, "visibility_timeout", json_integer(a->visibility_timeout));
    if (s & MQHUB_ATTR_POLLING_WAIT)
        json_object_set_new(j, "polling_wait", json_integer(a->polling_wait));
    if (s & MQHUB_ATTR_MAX_MSG_SIZE)
        json_object_set_new(j, "max_msg_size", json_integer(a->max_msg_size));
    if (s & MQHUB_ATTR_RETENTION)
        json_object_set_new(j, "retention", json_integer(a->retention));
    if (s & MQHUB_ATTR_REWIND_WINDOW)
        json_object_set_new(j, "rewind_window", json_integer(a->rewind_window));
    if (s & MQHUB_ATTR_MAX_BACKLOG)
        json_object_set_new(j, "max_backlog", json_integer((json_int_t)a->max_backlog));
    if (s & MQHUB_ATTR_DELAY)
        json_object_set_new(j, "delay", json_integer(a->delay));
    if (s & MQHUB_ATTR_DEAD_LETTER)
        json_object_set_new(j, "dead_letter",
                            json_pack("{s:s,s:i}", "queue", a->dead_letter_queue,
                                      "max_receives", (int)a->dead_letter_max_receives));
    if (s & MQHUB_ATTR_ORDERED)
        json_object_set_new(j, "ordered", json_boolean(a->ordered));
    if (s & MQHUB_ATTR_HOOK)
        json_object_set_new(j, "hook", json_string(a->hook));
    return j;
}

static json_t *stats_json(const mqhub_queue_stats_t *s)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "ready", (json_int_t)s->ready,
                     "inflight", (json_int_t)s->inflight, "delayed", (json_int_t)s->delayed,
                     "retained", (json_int_t)s->retained, "oldest_age_ms",
                     (json_int_t)s->oldest_age_ms, "sent_total", (json_int_t)s->sent_total,
                     "received_total", (json_int_t)s->received_total, "deleted_total",
                     (json_int_t)s->deleted_total);
}

static int q_get(cli_t *cli)
{
    mqhub_queue_info_t info;
    int rc = need_name(cli, "queue get", false);
    if (rc != 0 || (rc = cli_connect(cli)) != 0)
        return rc;
    rc = mqhub_client_queue_get(cli->client, cli->args[0], &info);
    if (rc != 0)
        return cli_fail(cli, rc, "queue get");
    json_t *j = json_pack("{s:s,s:o,s:o}", "name", info.name, "attrs",
                          attrs_json(&info.attrs), "stats", stats_json(&info.stats));
    if (cli->json) {
        out_json(j);
        return CLI_OK;
    }
    out_fields("QUEUE", info.name, j);
    json_decref(j);
    return CLI_OK;
}

static int q_list(cli_t *cli)
{
    mqhub_queue_list_t l;
    char ready[24], inflight[24], delayed[24];
    if (cli->n_args != 0)
        return cli_usage_error("queue list", "unexpected argument \"%s\"", cli->args[0]);
    int rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    rc = mqhub_client_queue_list(cli->client, cli->prefix, (uint64_t)(cli->offset > 0 ? cli->offset : 0),
                                 (uint64_t)(cli->limit > 0 ? cli->limit : 0), &l);
    if (rc != 0)
        return cli_fail(cli, rc, "queue list");
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < l.n; i++)
            json_array_append_new(arr, json_string(l.names[i]));
        out_json(json_pack("{s:o,s:I}", "queues", arr, "total", (json_int_t)l.total));
        mqhub_queue_list_free(&l);
        return CLI_OK;
    }
    table_t *t = out_table_new(4, "NAME", "READY", "INFLIGHT", "DELAYED");
    for (size_t i = 0; i < l.n; i++) {
        mqhub_queue_info_t info;
        bool ok = mqhub_client_queue_get(cli->client, l.names[i], &info) == 0;
        snprintf(ready, sizeof ready, ok ? "%llu" : "-", (unsigned long long)info.stats.ready);
        snprintf(inflight, sizeof inflight, ok ? "%llu" : "-",
                 (unsigned long long)info.stats.inflight);
        snprintf(delayed, sizeof delayed, ok ? "%llu" : "-",
                 (unsigned long long)info.stats.delayed);
        out_table_row(t, l.names[i], ready, inflight, delayed);
    }
    out_table_print(t, stdout);
    if (l.n == 0)
        printf("no queues\n");
    if (l.total > l.n)
        printf("(%zu of %llu; use --offset/--limit)\n", l.n, (unsigned long long)l.total);
    mqhub_queue_list_free(&l);
    return CLI_OK;
}

static int q_rewind(cli_t *cli)
{
    uint64_t time_ms, seq, n;
    int given = (cli->rewind_time >= 0) + (cli->rewind_seq >= 0) + (cli->rewind_ago >= 0);
    int rc = need_name(cli, "queue rewind", false);
    if (rc != 0)
        return rc;
    if (given != 1)
        return cli_usage_error("queue rewind", "give exactly one of --time, --ago, --seq");
    if (cli->rewind_ago >= 0) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        uint64_t now = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
        uint64_t ago = (uint64_t)cli->rewind_ago * 1000;
        cli->rewind_time = (long long)(now > ago ? now - ago : 0);
    }
    time_ms = (uint64_t)cli->rewind_time;
    seq = (uint64_t)cli->rewind_seq;
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    rc = mqhub_client_queue_rewind(cli->client, cli->args[0],
                                   cli->rewind_time >= 0 ? &time_ms : NULL,
                                   cli->rewind_seq >= 0 ? &seq : NULL, &n);
    if (rc != 0)
        return cli_fail(cli, rc, "queue rewind");
    if (cli->json)
        out_json(json_pack("{s:b,s:I}", "ok", 1, "rewound", (json_int_t)n));
    else
        printf("rewound %llu messages of %s\n", (unsigned long long)n, cli->args[0]);
    return CLI_OK;
}

/* ---- peek, redrive ---- */

static void peek_table(json_t *msgs)
{
    table_t *t = out_table_new(6, "SEQ", "MSG_ID", "RECEIVES", "TAGS", "ATTRS", "BODY");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char seq[24], rc[24], tags[256], attrs[512], body[256];
        json_t *b = json_object_get(m, "body");
        snprintf(seq, sizeof seq, "%lld", (long long)json_integer_value(json_object_get(m, "seq")));
        snprintf(rc, sizeof rc, "%lld",
                 (long long)json_integer_value(json_object_get(m, "receive_count")));
        out_join_cell(tags, sizeof tags, json_object_get(m, "tags"));
        out_join_cell(attrs, sizeof attrs, json_object_get(m, "attrs"));
        if (b)
            out_body_cell(body, sizeof body, json_string_value(b), json_string_length(b), 60);
        else
            snprintf(body, sizeof body, "<binary>");
        out_table_row(t, seq, json_string_value(json_object_get(m, "msg_id")), rc, tags, attrs,
                      body);
    }
    out_table_print(t, stdout);
}

bool cmd_queue_from_seq(const cli_t *cli, uint64_t *from)
{
    char *end;
    *from = 0;
    if (!cli->from)
        return true;
    if (*cli->from < '0' || *cli->from > '9')
        return false;
    *from = strtoull(cli->from, &end, 10);
    return *end == '\0';
}

/* `queue peek NAME [--max N] [--from SEQ]`: ready messages, locking none. */
static int q_peek(cli_t *cli)
{
    mqhub_response_t r;
    uint64_t from;
    int rc = need_name(cli, "queue peek", false);
    if (rc != 0)
        return rc;
    if (!cmd_queue_from_seq(cli, &from))
        return cli_usage_error("queue peek", "--from takes a seq (a number)");
    if (cli->max == 0 || cli->max > MQHUB_RECEIVE_MAX)
        return cli_usage_error("queue peek", "--max takes 1-%d", MQHUB_RECEIVE_MAX);
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    rc = mqhub_client_queue_peek(cli->client, cli->args[0],
                                 cli->max > 0 ? (uint32_t)cli->max : 10, from, &r);
    if (rc != 0)
        return cli_fail(cli, rc, "queue peek");
    char again[MQHUB_NAME_MAX + 32];
    snprintf(again, sizeof again, "mqhub queue peek %s", cli->args[0]);
    rc = out_peek(cli, &r.map, peek_table, "no ready messages", again);
    mqhub_response_free(&r);
    return rc;
}

/* `queue redrive DLQ [TO] [--max N]`: one command per chunk of --max (default
 * 1000) messages, with a progress line each, until the queue is walked. */
static int q_redrive(cli_t *cli)
{
    mqhub_redrive_result_t res = {0};
    uint64_t moved = 0, kept = 0, from = 0;
    unsigned rounds = 0;
    int rc;
    if (cli->n_args < 1)
        return cli_usage_error("queue redrive", "missing queue NAME");
    if (cli->n_args > 2)
        return cli_usage_error("queue redrive", "unexpected argument \"%s\"", cli->args[2]);
    if (cli->max == 0 || cli->max > 10000)
        return cli_usage_error("queue redrive", "--max takes 1-10000");
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    do {
        rc = mqhub_client_queue_redrive(cli->client, cli->args[0],
                                        cli->n_args > 1 ? cli->args[1] : NULL,
                                        cli->max > 0 ? (uint32_t)cli->max : 0, from, &res);
        if (rc != 0)
            return cli_fail(cli, rc, "queue redrive");
        moved += res.moved;
        kept += res.kept;
        from = res.next;
        rounds++;
        if (!cli->json && isatty(fileno(stderr)))
            fprintf(stderr, "\rmoved %llu, kept %llu, %llu left ...",
                    (unsigned long long)moved, (unsigned long long)kept,
                    (unsigned long long)res.remaining);
    } while (from != 0);
    if (!cli->json && isatty(fileno(stderr)))
        fputc('\n', stderr);
    if (cli->json)
        out_json(json_pack("{s:b,s:I,s:I,s:I,s:I}", "ok", 1, "moved", (json_int_t)moved, "kept",
                           (json_int_t)kept, "remaining", (json_int_t)res.remaining, "commands",
                           (json_int_t)rounds));
    else
        printf("moved %llu messages out of %s%s%s; %llu stay (%llu whose source queue is gone "
               "or no longer dead-letters there)\n",
               (unsigned long long)moved, cli->args[0], cli->n_args > 1 ? " to " : "",
               cli->n_args > 1 ? cli->args[1] : "", (unsigned long long)res.remaining,
               (unsigned long long)kept);
    return CLI_OK;
}

int cmd_queue(cli_t *cli)
{
    const char *sub = cli->subcommand;
    static const struct {
        const char *name;
        int (*fn)(cli_t *);
    } subs[] = {
        {"create", q_create}, {"list", q_list},     {"get", q_get},
        {"set", q_set},       {"delete", q_delete}, {"purge", q_purge},
        {"rewind", q_rewind}, {"peek", q_peek},       {"redrive", q_redrive},
    };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(sub, subs[i].name))
            return subs[i].fn(cli);
    return cli_unknown_subcommand("queue", sub);
}
