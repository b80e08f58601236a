/* cmd_conn.c: `mqhub connections` and `mqhub consumers [--queue Q | --topic
 * T]`: the leader's client sessions and its consumers (connection.list,
 * consumer.list; docs/protocol.md "Connections and consumers"), as a table
 * or, with --json, the server's lists as they are. Start at conn_list().
 */
#include <string.h>
#include <time.h>

#include "cli.h"

/* A JSON member as table text: a number, a string, or "-". */
static void cell(char *buf, size_t size, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v))
        snprintf(buf, size, "%s", json_string_value(v));
    else
        snprintf(buf, size, "-");
}

/* "root", "anonymous", "none" or the user's name. */
static void who_cell(char *buf, size_t size, json_t *obj)
{
    if (json_object_get(obj, "user"))
        cell(buf, size, obj, "user");
    else
        cell(buf, size, obj, "identity");
}

/* How long ago @ms (wall clock) was: "42s", "7m", "3h", "2d". */
static void age_cell(char *buf, size_t size, json_t *obj, const char *key)
{
    long long at = (long long)json_integer_value(json_object_get(obj, key));
    long long s = (long long)time(NULL) - at / 1000;
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(buf, size, "%llds", s);
    else if (s < 7200)
        snprintf(buf, size, "%lldm", s / 60);
    else if (s < 172800)
        snprintf(buf, size, "%lldh", s / 3600);
    else
        snprintf(buf, size, "%lldd", s / 86400);
}

static void connections_table(json_t *list)
{
    table_t *t = out_table_new(10, "ID", "TRANSPORT", "PEER", "IDENTITY", "AGE", "REQUESTS",
                               "BYTES_IN", "BYTES_OUT", "POLLS", "SUBSCRIPTIONS");
    size_t i, k;
    json_t *c, *s;
    json_array_foreach(list, i, c) {
        char id[24], tr[32], peer[64], who[80], age[24], req[24], in[24], out[24], polls[24];
        char subs[256] = "";
        size_t off = 0;
        cell(id, sizeof id, c, "connection");
        if (json_is_true(json_object_get(c, "self")))
            strncat(id, "*", sizeof id - strlen(id) - 1);
        cell(tr, sizeof tr, c, "transport");
        cell(peer, sizeof peer, c, "peer");
        who_cell(who, sizeof who, c);
        age_cell(age, sizeof age, c, "connected_at");
        cell(req, sizeof req, c, "requests");
        cell(in, sizeof in, c, "bytes_in");
        cell(out, sizeof out, c, "bytes_out");
        cell(polls, sizeof polls, c, "parked");
        json_array_foreach(json_object_get(c, "subscriptions"), k, s) if (off < sizeof subs)
            off += (size_t)snprintf(subs + off, sizeof subs - off, "%s%s/%s", off ? "," : "",
                                    json_string_value(json_object_get(s, "topic")),
                                    json_string_value(json_object_get(s, "subscription")));
        out_table_row(t, id, tr, peer, who, age, req, in, out, polls, subs[0] ? subs : "-");
    }
    out_table_print(t, stdout);
}

static void consumers_table(json_t *list)
{
    table_t *t = out_table_new(8, "CONNECTION", "TRANSPORT", "PEER", "IDENTITY", "KIND",
                               "OBJECT", "WAITING", "CREDIT");
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c) {
        char id[24], tr[32], peer[64], who[80], kind[16], obj[160], polls[24], credit[48];
        const char *k = json_string_value(json_object_get(c, "kind"));
        cell(id, sizeof id, c, "connection");
        cell(tr, sizeof tr, c, "transport");
        cell(peer, sizeof peer, c, "peer");
        who_cell(who, sizeof who, c);
        cell(kind, sizeof kind, c, "kind");
        if (k && !strcmp(k, "push")) {
            snprintf(obj, sizeof obj, "%s/%s", json_string_value(json_object_get(c, "topic")),
                     json_string_value(json_object_get(c, "subscription")));
            snprintf(polls, sizeof polls, "-");
            snprintf(credit, sizeof credit, "%lld free, %lld held",
                     (long long)json_integer_value(json_object_get(c, "credit")),
                     (long long)json_integer_value(json_object_get(c, "inflight")));
        } else {
            cell(obj, sizeof obj, c, "queue");
            cell(polls, sizeof polls, c, "parked");
            snprintf(credit, sizeof credit, "-");
        }
        out_table_row(t, id, tr, peer, who, kind, obj, polls, credit);
    }
    out_table_print(t, stdout);
}

static int conn_list(cli_t *cli, bool consumers)
{
    const char *cmd = consumers ? "consumers" : "connections";
    mqhub_response_t r;
    int rc;
    if (cli->n_args > 0)
        return cli_usage_error(cmd, "unexpected argument \"%s\"", cli->args[0]);
    if (consumers && cli->endpoint_queue && cli->topic)
        return cli_usage_error(cmd, "give --queue or --topic, not both");
    if ((rc = cli_connect(cli)) != 0)
        return rc;
    rc = consumers ? mqhub_client_consumer_list(cli->client, cli->endpoint_queue, cli->topic, &r)
                   : mqhub_client_connection_list(cli->client, &r);
    if (rc != 0)
        return cli_fail(cli, rc, cmd);
    json_t *j = out_msgpack_json(&r.map);
    mqhub_response_free(&r);
    if (cli->json) {
        out_json(j);
        return CLI_OK;
    }
    json_t *list = json_object_get(j, cmd);
    if (json_array_size(list) == 0)
        printf("no %s\n", cmd);
    else if (consumers)
        consumers_table(list);
    else
        connections_table(list);
    if ((size_t)json_integer_value(json_object_get(j, "total")) > json_array_size(list))
        printf("(%zu of %lld)\n", json_array_size(list),
               (long long)json_integer_value(json_object_get(j, "total")));
    json_decref(j);
    return CLI_OK;
}

int cmd_conn_connections(cli_t *cli)
{
    return conn_list(cli, false);
}

int cmd_conn_consumers(cli_t *cli)
{
    return conn_list(cli, true);
}
