/* cli.h: shared pieces of the mqhub command-line tool (apps/mqhub).
 * cli_* live in main.c, queue_* in queue.c, messages_* in messages.c, topic_*
 * in topic.c, out_* in out.c. */
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
    int timeout_ms;
    bool json;
    bool help;
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
    /* topics, subscriptions, tail (topic.c) */
    const char *tags[CLI_MAX_ATTRS], *filter_tags[CLI_MAX_ATTRS], *bindings[CLI_MAX_ATTRS];
    size_t n_tags, n_filter_tags, n_bindings;
    const char *key, *sub, *endpoint_queue, *filter_script, *retry, *dlq, *from;
    long long max_attempts, interval_ms, max_interval_ms, credit;
    bool push;
    /* script test (script.c) */
    const char *topic, *since;
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

/* The commands: each returns the process exit code. */
int queue_cmd(cli_t *cli, const char *sub);
int messages_send(cli_t *cli);
int messages_recv(cli_t *cli);
int messages_delete(cli_t *cli);
/* All of @f into a malloc'ed buffer (*@len bytes, not NUL-terminated), NULL
 * when out of memory; the caller frees it. */
char *messages_read_all(FILE *f, size_t *len);
/* topic.c: `topic ...`, `publish`, `sub ...`, `tail`. */
int topic_cmd(cli_t *cli, const char *sub);
int topic_publish(cli_t *cli);
int topic_sub_cmd(cli_t *cli, const char *sub);
/* cluster.c: `mqhub cluster status|add|remove|transfer`. */
int cluster_cmd(cli_t *cli, const char *sub);
int topic_tail(cli_t *cli);
/* script.c: `mqhub script load|get|list|delete|test`, `mqhub block list|delete`. */
int script_cmd(cli_t *cli, const char *sub);
int block_cmd(cli_t *cli, const char *sub);

/* out.c: aligned tables and JSON output. */
typedef struct table table_t;
table_t *out_table_new(unsigned ncols, ...); /* column headings */
void out_table_row(table_t *t, ...);         /* ncols strings (copied) */
void out_table_print(table_t *t, FILE *f);   /* prints (unless @f is NULL), frees */
/* Print @j compactly on one line to stdout and drop the reference. */
void out_json(json_t *j);
/* A body as JSON: "body" when valid UTF-8, else "body_base64". */
void out_json_body(json_t *obj, const void *body, size_t len);
/* A body for a table cell: text cut to @max chars, or "<N bytes>". */
void out_body_cell(char *buf, size_t size, const void *body, size_t len, size_t max);
bool out_utf8_valid(const unsigned char *p, size_t n);

#endif
