/* cmd_cluster.c: `mqhub cluster status|add|remove|transfer` (docs/operations.md).
 * status asks the node --server names (any node answers; give one address to
 * see that node's view); the membership changes go to the leader (libmqhub
 * follows NOT_LEADER). Each subcommand checks its arguments, connects, makes
 * one library call and prints a table or one JSON object.
 * Start at cmd_cluster(); add a subcommand as one function and one table entry.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int node_id(const char *cmd, const char *arg, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end || v == 0 || arg[0] == '-')
        return cli_usage_error(cmd, "node id \"%s\": a positive integer", arg);
    *out = v;
    return 0;
}

static json_t *status_json(const mqhub_cluster_status_t *st, const mqhub_cluster_raft_t *r,
                           const mqhub_cluster_more_t *more, bool digest)
{
    json_t *nodes = json_array();
    for (size_t i = 0; i < st->n_nodes; i++) {
        const mqhub_cluster_node_t *n = &st->nodes[i];
        json_t *o = json_pack("{s:I,s:s,s:s,s:b}", "id", (json_int_t)n->id, "address",
                              n->address, "role", n->role, "leader", n->leader);
        if (n->client[0])
            json_object_set_new(o, "client", json_string(n->client));
        if (more->node_http[i][0])
            json_object_set_new(o, "http", json_string(more->node_http[i]));
        json_object_set_new(o, "match_index",
                            n->has_match ? json_integer((json_int_t)n->match_index)
                                         : json_null());
        json_array_append_new(nodes, o);
    }
    json_t *j = json_pack("{s:I,s:s,s:I,s:I,s:I,s:I,s:o}", "node", (json_int_t)st->node,
                          "role", st->role, "leader_id", (json_int_t)st->leader_id, "term",
                          (json_int_t)st->term, "commit_index", (json_int_t)st->commit_index,
                          "last_applied", (json_int_t)st->last_applied, "nodes", nodes);
    json_object_set_new(j, "leader", st->leader[0] ? json_string(st->leader) : json_null());
    json_object_update_new(j, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "last_index",
                                        (json_int_t)r->last_index, "snapshot_index",
                                        (json_int_t)r->snapshot_index, "snapshot_age_ms",
                                        (json_int_t)r->snapshot_age_ms, "log_entries",
                                        (json_int_t)r->log_entries, "log_bytes",
                                        (json_int_t)r->log_bytes, "leader_changes",
                                        (json_int_t)r->leader_changes));
    if (more->http[0])
        json_object_set_new(j, "http", json_string(more->http));
    if (!strcmp(st->role, "removed"))
        json_object_set_new(j, "removed_by", json_integer((json_int_t)more->removed_by));
    if (digest)
        json_object_set_new(j, "digest", json_string(st->digest));
    return j;
}

static void status_table(const mqhub_cluster_status_t *st, const mqhub_cluster_raft_t *r,
                         const mqhub_cluster_more_t *more)
{
    char id[24], match[24];
    printf("answered by node %llu (%s", (unsigned long long)st->node, st->role);
    if (!strcmp(st->role, "removed") && more->removed_by)
        printf(" by leader %llu", (unsigned long long)more->removed_by);
    if (more->http[0])
        printf(", http://%s/", more->http);
    printf("); leader: ");
    if (st->leader_id)
        printf("node %llu at %s\n", (unsigned long long)st->leader_id,
               st->leader[0] ? st->leader : "(client address unknown)");
    else
        printf("none known (an election is going on, or no quorum)\n");
    printf("term %llu, commit index %llu, applied %llu, last log index %llu\n",
           (unsigned long long)st->term, (unsigned long long)st->commit_index,
           (unsigned long long)st->last_applied, (unsigned long long)r->last_index);
    if (r->snapshot_index)
        printf("snapshot at index %llu, %llu s old; ", (unsigned long long)r->snapshot_index,
               (unsigned long long)(r->snapshot_age_ms / 1000));
    else
        printf("no snapshot yet; ");
    printf("log: %llu entries, %llu B since it; leader changes seen: %llu\n",
           (unsigned long long)r->log_entries, (unsigned long long)r->log_bytes,
           (unsigned long long)r->leader_changes);
    if (st->digest[0])
        printf("digest %s\n", st->digest);
    table_t *t =
        out_table_new(7, "ID", "RAFT ADDRESS", "CLIENT", "HTTP", "ROLE", "LEADER", "MATCH");
    for (size_t i = 0; i < st->n_nodes; i++) {
        const mqhub_cluster_node_t *n = &st->nodes[i];
        snprintf(id, sizeof id, "%llu", (unsigned long long)n->id);
        if (n->has_match)
            snprintf(match, sizeof match, "%llu", (unsigned long long)n->match_index);
        else
            snprintf(match, sizeof match, "-");
        out_table_row(t, id, n->address, n->client[0] ? n->client : "?",
                      more->node_http[i][0] ? more->node_http[i] : "?", n->role,
                      n->leader ? "*" : "", match);
    }
    out_table_print(t, stdout);
}

static int c_status(cli_t *cli)
{
    mqhub_cluster_status_t *st;
    mqhub_cluster_more_t *more;
    mqhub_cluster_raft_t raft;
    bool digest = cli->n_args == 1 && !strcmp(cli->args[0], "digest");
    int rc;

    if (cli->n_args > 0 && !digest)
        return cli_usage_error("cluster", "unexpected argument \"%s\"", cli->args[0]);
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    st = malloc(sizeof *st);
    more = malloc(sizeof *more);
    if (!st || !more) {
        free(st);
        free(more);
        return CLI_SERVER;
    }
    rc = mqhub_client_cluster_status_more(cli->client, digest, st, &raft, more);
    if (rc == 0 && cli->json)
        out_json(status_json(st, &raft, more, digest));
    else if (rc == 0)
        status_table(st, &raft, more);
    free(st);
    free(more);
    return rc == 0 ? CLI_OK : cli_fail(cli, rc, "cluster status");
}

static void print_done(cli_t *cli, const char *what, uint64_t id)
{
    if (cli->json)
        out_json(json_pack("{s:b,s:I}", "ok", 1, "node", (json_int_t)id));
    else if (id)
        printf("%s node %llu\n", what, (unsigned long long)id);
    else
        printf("%s\n", what);
}

static int c_add(cli_t *cli)
{
    uint64_t id = 0;
    int rc;
    if (cli->n_args < 2 || cli->n_args > 3)
        return cli_usage_error("cluster", "usage: cluster add ID RAFT_ADDRESS [CLIENT_ADDRESS] "
                                          "[--client CLIENT_ADDRESS] [--http HTTP_ADDRESS]");
    if (cli->n_args == 3 && cli->client_address)
        return cli_usage_error("cluster", "cluster add: give the client address once, as the "
                                          "third argument or with --client");
    if ((rc = node_id("cluster", cli->args[0], &id)) != 0 || (rc = cli_connect(cli)) != 0)
        return rc;
    /* --http is the new node's dashboard address; the server checks both forms */
    rc = mqhub_client_cluster_add_http(cli->client, id, cli->args[1],
                                       cli->n_args == 3 ? cli->args[2] : cli->client_address,
                                       cli->http);
    if (rc != 0)
        return cli_fail(cli, rc, "cluster add");
    print_done(cli, "added (a voter now)", id);
    return CLI_OK;
}

static int c_remove(cli_t *cli)
{
    uint64_t id = 0;
    int rc;
    if (cli->n_args != 1)
        return cli_usage_error("cluster", "usage: cluster remove ID");
    if ((rc = node_id("cluster", cli->args[0], &id)) != 0 || (rc = cli_connect(cli)) != 0)
        return rc;
    rc = mqhub_client_cluster_remove(cli->client, id);
    if (rc != 0)
        return cli_fail(cli, rc, "cluster remove");
    print_done(cli, "removed", id);
    return CLI_OK;
}

static int c_transfer(cli_t *cli)
{
    uint64_t id = 0;
    int rc;
    if (cli->n_args > 1)
        return cli_usage_error("cluster", "usage: cluster transfer [ID]");
    if (cli->n_args == 1 && (rc = node_id("cluster", cli->args[0], &id)) != 0)
        return rc;
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    rc = mqhub_client_cluster_transfer(cli->client, id);
    if (rc != 0)
        return cli_fail(cli, rc, "cluster transfer");
    print_done(cli, "leadership transferred", id);
    return CLI_OK;
}

int cmd_cluster(cli_t *cli)
{
    const char *sub = cli->subcommand;
    static const struct {
        const char *name;
        int (*fn)(cli_t *);
    } subs[] = {
        {"status", c_status},
        {"add", c_add},
        {"remove", c_remove},
        {"transfer", c_transfer},
    };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(sub, subs[i].name))
            return subs[i].fn(cli);
    return cli_unknown_subcommand("cluster", sub);
}
