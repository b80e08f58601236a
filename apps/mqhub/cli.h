/* cli.h: shared pieces of the mqhub command-line tool (apps/mqhub).
 * cli_* live in main.c (with the command table), the commands cmd_<file>_*
 * in cmd_<file>.c (cmd_queue.c, cmd_messages.c, cmd_topic.c, cmd_cluster.c,
 * cmd_script.c, cmd_user.c, cmd_conn.c, cmd_context.c), out_* in out.c. */
#ifndef MQHUB_CLI_H
#define MQHUB_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "mqhub/client.h"

/* Exit codes, documented in docs/cli.md. */
enum cli_exit { CLI_OK = 0, CLI_SERVER = 1, CLI_USAGE = 2, CLI_CONNECT = 3 };

#define CLI_MAX_ATTRS 32

/* Everything the command line said, parsed once by main.c. */
typedef struct cli {
    const char *server;
    const char *token;
    const char *token_file; /* --token-file: the token is its first line */
    /* --context NAME; after cmd_context_resolve() the context in use (NULL:
     * none), and whether --server came from it */
    const char *context;
    bool server_from_context;
    /* TLS: --tls, or --ca/--cert (env MQHUB_CA, MQHUB_CERT, MQHUB_KEY) */
    bool tls;
    const char *ca, *cert, *cert_key;
    int timeout_ms;
    bool json;
    bool help;
    bool version;
    /* queue attributes (create/set) */
    mqhub_queue_attrs_t attrs;
    /* queue list / rewind */
    const char *prefix;
    long long offset, limit;
    long long rewind_time, rewind_seq, rewind_ago;
    /* send */
    mqhub_attr_t msg_attrs[CLI_MAX_ATTRS];
    size_t n_msg_attrs;
    long long delay; /* -1: not given */
    const char *group, *dedup_id, *batch_file;
    /* recv */
    long long max, wait, visibility;
    bool del, follow;
    /* topics, subscriptions, tail (cmd_topic.c) */
    const char *tags[CLI_MAX_ATTRS], *filter_tags[CLI_MAX_ATTRS], *bindings[CLI_MAX_ATTRS];
    size_t n_tags, n_filter_tags, n_bindings;
    const char *key, *sub, *endpoint_queue, *filter_script, *retry, *dlq, *from;
    const char *http, *http_format; /* sub create/set --http URL --format F */
    const char *client_address;     /* cluster add --client ADDR */
    long long max_attempts, interval_ms, max_interval_ms, credit;
    bool push, clear_filters;
    bool ephemeral; /* tail --ephemeral: its own ephemeral push subscription */
    /* script test (cmd_script.c) */
    const char *topic, *since;
    /* user add (cmd_user.c): --user-token, --grant VERB:PATTERN */
    const char *user_token;
    const char *grants[CLI_MAX_ATTRS];
    size_t n_grants;
    /* the word after a command that groups subcommands ("create" in `queue
     * create`), NULL for other commands */
    const char *subcommand;
    /* positional arguments after the command words */
    char **args;
    int n_args;
    mqhub_client_t *client;
} cli_t;

/* Connect as the options say; on failure print what to do and return
 * CLI_CONNECT (or CLI_SERVER when the token was refused). */
int cli_connect(cli_t *cli);
/* Report a failed call on stderr ("CODE: sentence") and return the exit code
 * for it (CLI_CONNECT for MQHUB_ECONN, else CLI_SERVER). */
int cli_fail(cli_t *cli, int rc, const char *what);
/* Print "mqhub: <message>" and the usage of @cmd on stderr; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print usage of @cmd ("send", "queue create", NULL for the overview) to @f. */
void cli_usage(FILE *f, const char *cmd);
/* "unknown GROUP command WORD", with `did you mean` when a subcommand of
 * @group is within two edits of @word, and the group's usage; CLI_USAGE. */
int cli_unknown_subcommand(const char *group, const char *word);

/* The commands, one row each in main.c's table. Each returns the process
 * exit code; a group's handler reads its word from cli->subcommand. */
/* cmd_queue.c: `mqhub queue create|list|get|set|delete|purge|rewind|peek|redrive`. */
int cmd_queue(cli_t *cli);
/* --from SEQ (of `queue peek`, `topic peek`) into *@from (0 when absent);
 * false when it is not a number. */
bool cmd_queue_from_seq(const cli_t *cli, uint64_t *from);
/* The key=value arguments after NAME (visibility_timeout=60, dashes
 * accepted) into cli->attrs, as the options would: 0 or a usage error of
 * @cmd (queue create/set, topic create/set). */
int cmd_queue_kv_attrs(cli_t *cli, const char *cmd);
/* cmd_messages.c: `mqhub send`, `mqhub recv`, `mqhub delete`,
 * `mqhub change-visibility`. */
int cmd_messages_send(cli_t *cli);
int cmd_messages_recv(cli_t *cli);
int cmd_messages_delete(cli_t *cli);
int cmd_messages_change_visibility(cli_t *cli);
/* All of @f into a malloc'ed buffer (*@len bytes, not NUL-terminated), NULL
 * when out of memory; the caller frees it. */
char *cmd_messages_read_all(FILE *f, size_t *len);
/* cmd_topic.c: `topic ...`, `publish`, `sub ...`, `tail`. */
int cmd_topic(cli_t *cli);
int cmd_topic_publish(cli_t *cli);
int cmd_topic_sub(cli_t *cli);
int cmd_topic_tail(cli_t *cli);
/* cmd_cluster.c: `mqhub cluster status|add|remove|transfer`. */
int cmd_cluster(cli_t *cli);
/* cmd_script.c: `mqhub script load|get|list|delete|test`, `mqhub block list|delete`. */
int cmd_script(cli_t *cli);
int cmd_script_block(cli_t *cli);
/* cmd_context.c: `mqhub context add|use|list|show|del`. */
int cmd_context(cli_t *cli);
/* Fill the connection options the flags left unset: from the environment,
 * then the context (--context, $MQHUB_CONTEXT or the selected one), then
 * the defaults. 0, or CLI_USAGE having said what is wrong (no such context,
 * a contexts file others may read that holds a token, a token file that
 * cannot be read). */
int cmd_context_resolve(cli_t *cli);
/* cmd_user.c: `mqhub user add|del|list|grant|revoke`. */
int cmd_user(cli_t *cli);
/* cmd_conn.c: `mqhub connections`, `mqhub consumers [--queue Q | --topic T]`. */
int cmd_conn_connections(cli_t *cli);
int cmd_conn_consumers(cli_t *cli);

/* out.c: aligned tables and JSON output. */
typedef struct table table_t;
table_t *out_table_new(unsigned ncols, ...); /* column headings */
void out_table_row(table_t *t, ...);         /* ncols strings (copied) */
void out_table_print(table_t *t, FILE *f);   /* prints (unless @f is NULL), frees */
/* Print @j compactly on one line to stdout and drop the reference. */
void out_json(json_t *j);
/* A body as JSON: "body" when valid UTF-8, else "body_base64". */
void out_json_body(json_t *obj, const void *body, size_t len);
/* "k=v,k=v" of a JSON object of strings, or "a,b" of an array, into @buf;
 * "-" when empty (the TAGS and ATTRS cells of recv and peek). */
void out_join_cell(char *buf, size_t size, json_t *v);
/* A body for a table cell: text cut to @max chars, or "<N bytes>". */
void out_body_cell(char *buf, size_t size, const void *body, size_t len, size_t max);
bool out_utf8_valid(const unsigned char *p, size_t n);
/* A MessagePack object as new JSON (bin as a string); the "id" and "ok" of
 * the top map (a response's envelope) are left out, deeper keys all kept. */
json_t *out_msgpack_json(const msgpack_object *o);
/* The layout of every `get` command: a "KIND  NAME" heading, then one
 * "field  value" row per member of @obj (its "attrs" and "stats" maps spread
 * into rows), numbers with their unit ("30 s", "1048576 B", "12 ms"). */
void out_fields(const char *kind, const char *name, json_t *obj);
/* The body of a message map of receive or queue.peek (bin or str), pointing
 * into @m; NULL and *@len 0 when absent. */
const char *out_msg_body(const msgpack_object *m, size_t *len);
/* Such a message as new JSON: every field the server returned, the body as
 * "body" or "body_base64" (out_json_body). */
json_t *out_msg_json(const msgpack_object *m);
/* The messages of a queue.peek or topic.peek reply as a new JSON array
 * (out_msg_json each); *@next its "next" (0 when absent). */
json_t *out_peek_json(const msgpack_object *reply, uint64_t *next);
/* Print a peek reply: one JSON object with --json, else @table of its
 * messages (or @empty) and, when it stopped early, the command that goes on
 * (@again, "--from N" appended). CLI_OK. */
int out_peek(const cli_t *cli, const msgpack_object *reply, void (*table)(json_t *msgs),
             const char *empty, const char *again);

#endif
