/* cmd_script.c: `mqhub script load|get|list|delete|test` and `mqhub block
 * list|delete` (docs/cli.md, docs/scripting.md). Each subcommand checks its
 * arguments, connects, makes one library call and prints a table or one JSON
 * object (--json: the server's answer as it is, less id and ok).
 * Start at cmd_script(); add a subcommand as one function and one table entry.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static uint64_t get_uint(const msgpack_object *m, const char *k)
{
    const msgpack_object *v = mqhub_map_get(m, k);
    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

static void get_str(const msgpack_object *m, const char *k, char *buf, size_t size)
{
    const msgpack_object *v = mqhub_map_get(m, k);
    if (v && v->type == MSGPACK_OBJECT_STR)
        snprintf(buf, size, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    else
        snprintf(buf, size, "%s", "");
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    char *buf;
    *len = 0;
    if (!f)
        return NULL;
    buf = cmd_messages_read_all(f, len);
    if (f != stdin)
        fclose(f);
    return buf;
}

static int s_load(cli_t *cli)
{
    size_t len;
    uint64_t version = 0;
    if (cli->n_args != 2)
        return cli_usage_error("script", "script load takes NAME and FILE (- for stdin)");
    char *src = read_file(cli->args[1], &len);
    if (!src) {
        fprintf(stderr, "mqhub: cannot read %s: %s\n", cli->args[1], strerror(errno));
        return CLI_USAGE;
    }
    int rc = cli_connect(cli);
    if (rc == 0 && (rc = mqhub_client_script_load(cli->client, cli->args[0], src, len,
                                                  &version)) != 0)
        rc = cli_fail(cli, rc, "script load");
    free(src);
    if (rc == 0 && cli->json)
        out_json(json_pack("{s:s,s:I}", "name", cli->args[0], "version", (json_int_t)version));
    else if (rc == 0)
        printf("loaded %s (version %llu)\n", cli->args[0], (unsigned long long)version);
    return rc;
}

/* The fields (the get layout, out_fields()), then "---" and the source. */
static void print_get(const msgpack_object *m)
{
    const msgpack_object *src = mqhub_map_get(m, "source");
    json_t *j = out_msgpack_json(m);
    char name[256];
    get_str(m, "name", name, sizeof name);
    json_object_del(j, "source");
    out_fields("SCRIPT", name, j);
    json_decref(j);
    printf("---\n");
    if (src && src->type == MSGPACK_OBJECT_STR)
        fwrite(src->via.str.ptr, 1, src->via.str.size, stdout);
}

/* One call returning a response, printed as JSON or by @print. */
static int show(cli_t *cli, int rc, mqhub_response_t *resp, const char *what,
                void (*print)(const msgpack_object *m))
{
    if (rc != 0)
        return cli_fail(cli, rc, what);
    if (cli->json)
        out_json(out_msgpack_json(&resp->map));
    else
        print(&resp->map);
    mqhub_response_free(resp);
    return CLI_OK;
}

static int s_get(cli_t *cli)
{
    mqhub_response_t resp;
    if (cli->n_args != 1)
        return cli_usage_error("script", "script get takes NAME");
    int rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    return show(cli, mqhub_client_script_get(cli->client, cli->args[0], &resp), &resp,
                "script get", print_get);
}

static void print_list(const msgpack_object *m)
{
    const msgpack_object *l = mqhub_map_get(m, "scripts");
    char name[80], v[24], calls[24], errs[24];
    table_t *t = out_table_new(4, "NAME", "VERSION", "CALLS", "ERRORS");
    for (uint32_t i = 0; l && l->type == MSGPACK_OBJECT_ARRAY && i < l->via.array.size; i++) {
        const msgpack_object *s = &l->via.array.ptr[i];
        get_str(s, "name", name, sizeof name);
        snprintf(v, sizeof v, "%llu", (unsigned long long)get_uint(s, "version"));
        snprintf(calls, sizeof calls, "%llu", (unsigned long long)get_uint(s, "calls"));
        snprintf(errs, sizeof errs, "%llu", (unsigned long long)get_uint(s, "errors"));
        out_table_row(t, name, v, calls, errs);
    }
    out_table_print(t, stdout);
}

static int s_list(cli_t *cli)
{
    mqhub_response_t resp;
    if (cli->n_args != 0)
        return cli_usage_error("script", "script list takes no arguments");
    int rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    return show(cli, mqhub_client_script_list(cli->client, &resp), &resp, "script list",
                print_list);
}

static int s_delete(cli_t *cli)
{
    if (cli->n_args != 1)
        return cli_usage_error("script", "script delete takes NAME");
    int rc = cli_connect(cli);
    if (rc == 0 && (rc = mqhub_client_script_delete(cli->client, cli->args[0])) != 0)
        return cli_fail(cli, rc, "script delete");
    if (rc == 0 && !cli->json)
        printf("deleted %s\n", cli->args[0]);
    else if (rc == 0)
        out_json(json_pack("{s:b}", "ok", 1));
    return rc;
}

/* --since: ms since the epoch, or a time ago: 90s, 15m, 2h, 1d. */
static int parse_since(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (!s) {
        *out = 0;
        return 0;
    }
    if (errno || end == s || s[0] == '-')
        return -1;
    unsigned long long mult = !*end ? 0 : !strcmp(end, "s") ? 1000 : !strcmp(end, "m") ? 60000
                              : !strcmp(end, "h") ? 3600000 : !strcmp(end, "d") ? 86400000 : 1;
    if (mult == 1)
        return -1;
    if (mult == 0) {
        *out = v;
        return 0;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    *out = v * mult > now ? 0 : now - v * mult;
    return 0;
}

static void print_test(const msgpack_object *m)
{
    const msgpack_object *b = mqhub_map_get(m, "blocks");
    char kind[16], attr[160], value[160], reason[300];
    get_str(m, "kind", kind, sizeof kind);
    printf("%s over %llu messages: %llu calls, %llu errors, %llu refused, %llu matched, "
           "%llu publishes\n", kind, (unsigned long long)get_uint(m, "messages"),
           (unsigned long long)get_uint(m, "calls"), (unsigned long long)get_uint(m, "errors"),
           (unsigned long long)get_uint(m, "refused"), (unsigned long long)get_uint(m, "matched"),
           (unsigned long long)get_uint(m, "publishes"));
    for (uint32_t i = 0; b && b->type == MSGPACK_OBJECT_ARRAY && i < b->via.array.size; i++) {
        get_str(&b->via.array.ptr[i], "attr", attr, sizeof attr);
        get_str(&b->via.array.ptr[i], "value", value, sizeof value);
        get_str(&b->via.array.ptr[i], "reason", reason, sizeof reason);
        printf("would block %s=%s: %s\n", attr, value, reason);
    }
}

static int s_test(cli_t *cli)
{
    mqhub_response_t resp;
    uint64_t since;
    if (cli->n_args != 1 || !cli->topic)
        return cli_usage_error("script", "script test takes NAME --topic T [--since TIME]");
    if (parse_since(cli->since, &since) != 0)
        return cli_usage_error("script", "--since \"%s\": ms since the epoch or 90s, 15m, 2h, 1d",
                               cli->since);
    int rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    return show(cli, mqhub_client_script_test(cli->client, cli->args[0], cli->topic, since,
                                              &resp), &resp, "script test", print_test);
}

static const struct {
    const char *name;
    int (*fn)(cli_t *cli);
} script_cmds[] = {
    {"load", s_load}, {"get", s_get}, {"list", s_list}, {"delete", s_delete}, {"test", s_test},
};

int cmd_script(cli_t *cli)
{
    const char *sub = cli->subcommand;
    for (size_t i = 0; i < sizeof script_cmds / sizeof script_cmds[0]; i++)
        if (!strcmp(sub, script_cmds[i].name))
            return script_cmds[i].fn(cli);
    return cli_unknown_subcommand("script", sub);
}

static void print_blocks(const msgpack_object *m)
{
    const msgpack_object *l = mqhub_map_get(m, "blocks");
    char attr[160], value[160], reason[300], script[80], until[24];
    table_t *t = out_table_new(5, "ATTR", "VALUE", "UNTIL", "SCRIPT", "REASON");
    for (uint32_t i = 0; l && l->type == MSGPACK_OBJECT_ARRAY && i < l->via.array.size; i++) {
        const msgpack_object *b = &l->via.array.ptr[i];
        get_str(b, "attr", attr, sizeof attr);
        get_str(b, "value", value, sizeof value);
        get_str(b, "reason", reason, sizeof reason);
        get_str(b, "script", script, sizeof script);
        time_t secs = (time_t)(get_uint(b, "until") / 1000);
        struct tm tm;
        strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&secs, &tm));
        out_table_row(t, attr, value, until, script, reason);
    }
    out_table_print(t, stdout);
}

int cmd_script_block(cli_t *cli)
{
    const char *sub = cli->subcommand;
    mqhub_response_t resp;
    int rc;
    if (!strcmp(sub, "list")) {
        if (cli->n_args != 0)
            return cli_usage_error("block", "block list takes no arguments");
        if ((rc = cli_connect(cli)) != 0)
            return rc;
        return show(cli, mqhub_client_block_list(cli->client, &resp), &resp, "block list",
                    print_blocks);
    }
    if (strcmp(sub, "delete"))
        return cli_unknown_subcommand("block", sub);
    if (cli->n_args != 2)
        return cli_usage_error("block", "block delete takes ATTR VALUE");
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    if ((rc = mqhub_client_block_delete(cli->client, cli->args[0], cli->args[1])) != 0)
        return cli_fail(cli, rc, "block delete");
    if (cli->json)
        out_json(json_pack("{s:b}", "ok", 1));
    else
        printf("deleted the block on %s=%s\n", cli->args[0], cli->args[1]);
    return CLI_OK;
}
