/* cmd_user.c: `mqhub user add|del|list|grant|revoke` — named identities and
 * their grants (docs/cli.md, docs/security.md). Each subcommand checks its
 * arguments, connects (with --token / MQHUB_TOKEN: the root token or an
 * admin user's), makes one library call and prints a line or a table, or
 * one JSON object with --json.
 * Start at cmd_user(); add a subcommand as one function and one table entry.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* --grant VERB:PATTERN into @g (pointing into @arg, which is cut). */
static int parse_grant(char *arg, mqhub_grant_t *g)
{
    char *colon = strchr(arg, ':');

    if (colon == NULL || colon == arg || colon[1] == '\0')
        return cli_usage_error("user", "--grant takes VERB:PATTERN (send:payments*), not \"%s\"",
                               arg);
    *colon = '\0';
    g->verb = arg;
    g->pattern = colon + 1;
    return 0;
}

static int u_add(cli_t *cli)
{
    mqhub_grant_t grants[CLI_MAX_ATTRS];
    char token[128] = "";
    int rc;

    if (cli->n_args != 1)
        return cli_usage_error("user", "user add takes NAME");
    for (size_t i = 0; i < cli->n_grants; i++)
        if ((rc = parse_grant((char *)cli->grants[i], &grants[i])) != 0)
            return rc;
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    rc = mqhub_client_user_create(cli->client, cli->args[0], cli->user_token, grants,
                                  cli->n_grants, token, sizeof token);
    if (rc != 0)
        return cli_fail(cli, rc, "user add");
    if (cli->json && token[0])
        out_json(json_pack("{s:s,s:s}", "name", cli->args[0], "token", token));
    else if (cli->json)
        out_json(json_pack("{s:s}", "name", cli->args[0]));
    else if (token[0])
        printf("created user %s\ntoken: %s\n(shown this once: the hub keeps only its hash)\n",
               cli->args[0], token);
    else
        printf("created user %s\n", cli->args[0]);
    return CLI_OK;
}

static int u_del(cli_t *cli)
{
    int rc;

    if (cli->n_args != 1)
        return cli_usage_error("user", "user del takes NAME");
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    if ((rc = mqhub_client_user_delete(cli->client, cli->args[0])) != 0)
        return cli_fail(cli, rc, "user del");
    if (cli->json)
        out_json(json_pack("{s:b}", "ok", 1));
    else
        printf("deleted user %s\n", cli->args[0]);
    return CLI_OK;
}

static void str_of(const msgpack_object *m, const char *k, char *buf, size_t size)
{
    const msgpack_object *v = mqhub_map_get(m, k);

    if (v != NULL && v->type == MSGPACK_OBJECT_STR)
        snprintf(buf, size, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    else
        snprintf(buf, size, "%s", "");
}

/* One user as JSON: {name, created_at, grants: [{verb, pattern}]}. */
static json_t *user_json(const msgpack_object *u)
{
    const msgpack_object *gs = mqhub_map_get(u, "grants"), *at = mqhub_map_get(u, "created_at");
    json_t *j = json_object(), *ga = json_array();
    char name[80], verb[32], pattern[80];

    str_of(u, "name", name, sizeof name);
    json_object_set_new(j, "name", json_string(name));
    json_object_set_new(j, "created_at", json_integer(at && at->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                                                          ? (json_int_t)at->via.u64 : 0));
    for (uint32_t i = 0; gs && gs->type == MSGPACK_OBJECT_ARRAY && i < gs->via.array.size; i++) {
        str_of(&gs->via.array.ptr[i], "verb", verb, sizeof verb);
        str_of(&gs->via.array.ptr[i], "pattern", pattern, sizeof pattern);
        json_array_append_new(ga, json_pack("{s:s,s:s}", "verb", verb, "pattern", pattern));
    }
    json_object_set_new(j, "grants", ga);
    return j;
}

/* The table: NAME, CREATED, GRANTS ("send:payments* admin:*"). */
static void print_users(const msgpack_object *l)
{
    table_t *t = out_table_new(3, "NAME", "CREATED", "GRANTS");

    for (uint32_t i = 0; l && l->type == MSGPACK_OBJECT_ARRAY && i < l->via.array.size; i++) {
        json_t *u = user_json(&l->via.array.ptr[i]), *g;
        char grants[2048] = "", created[32];
        size_t off = 0, k;
        time_t secs = (time_t)(json_integer_value(json_object_get(u, "created_at")) / 1000);
        struct tm tm;

        json_array_foreach(json_object_get(u, "grants"), k, g) {
            if (off < sizeof grants)
                off += (size_t)snprintf(grants + off, sizeof grants - off, "%s%s:%s",
                                        off ? " " : "",
                                        json_string_value(json_object_get(g, "verb")),
                                        json_string_value(json_object_get(g, "pattern")));
        }
        strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&secs, &tm));
        out_table_row(t, json_string_value(json_object_get(u, "name")), created,
                      grants[0] ? grants : "-");
        json_decref(u);
    }
    out_table_print(t, stdout);
}

static int u_list(cli_t *cli)
{
    mqhub_response_t resp;
    const msgpack_object *l;
    int rc;

    if (cli->n_args != 0)
        return cli_usage_error("user", "user list takes no arguments");
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    if ((rc = mqhub_client_user_list(cli->client, &resp)) != 0)
        return cli_fail(cli, rc, "user list");
    l = mqhub_map_get(&resp.map, "users");
    if (cli->json) {
        json_t *a = json_array();
        for (uint32_t i = 0; l && l->type == MSGPACK_OBJECT_ARRAY && i < l->via.array.size; i++)
            json_array_append_new(a, user_json(&l->via.array.ptr[i]));
        out_json(json_pack("{s:o}", "users", a));
    } else {
        print_users(l);
    }
    mqhub_response_free(&resp);
    return CLI_OK;
}

static int u_change(cli_t *cli, bool grant)
{
    const char *what = grant ? "user grant" : "user revoke";
    bool changed = false;
    int rc;

    if (cli->n_args != 3)
        return cli_usage_error("user", "%s takes NAME VERB PATTERN", what);
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    rc = grant ? mqhub_client_user_grant(cli->client, cli->args[0], cli->args[1], cli->args[2],
                                         &changed)
               : mqhub_client_user_revoke(cli->client, cli->args[0], cli->args[1], cli->args[2],
                                          &changed);
    if (rc != 0)
        return cli_fail(cli, rc, what);
    if (cli->json)
        out_json(json_pack("{s:b}", "changed", changed));
    else if (grant)
        printf(changed ? "granted %s on %s to %s\n" : "%s already had %s on %s\n",
               changed ? cli->args[1] : cli->args[0], changed ? cli->args[2] : cli->args[1],
               changed ? cli->args[0] : cli->args[2]);
    else
        printf(changed ? "revoked %s on %s from %s\n" : "%s had no %s on %s\n",
               changed ? cli->args[1] : cli->args[0], changed ? cli->args[2] : cli->args[1],
               changed ? cli->args[0] : cli->args[2]);
    return CLI_OK;
}

static int u_grant(cli_t *cli)
{
    return u_change(cli, true);
}

static int u_revoke(cli_t *cli)
{
    return u_change(cli, false);
}

static const struct {
    const char *name;
    int (*fn)(cli_t *cli);
} user_cmds[] = {
    {"add", u_add},       {"del", u_del},         {"delete", u_del},
    {"list", u_list},     {"grant", u_grant},     {"revoke", u_revoke},
};

int cmd_user(cli_t *cli)
{
    const char *sub = cli->subcommand;

    for (size_t i = 0; i < sizeof user_cmds / sizeof user_cmds[0]; i++)
        if (!strcmp(sub, user_cmds[i].name))
            return user_cmds[i].fn(cli);
    return cli_unknown_subcommand("user", sub);
}
