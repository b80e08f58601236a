/* cmd_messages.c: `mqhub send`, `mqhub recv` and `mqhub delete`.
 * send takes one body (argument or stdin) or a batch file (one body per line,
 * sent with send_batch in chunks of MQHUB_BATCH_MAX); recv prints what
 * arrived and may delete it, or --follow until Ctrl-C. Start at
 * cmd_messages_send() / cmd_messages_recv().
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ------------------------------------------------------------------ send */

char *cmd_messages_read_all(FILE *f, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    while (p) {
        n += fread(p + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *q = realloc(p, cap *= 2);
        if (!q)
            free(p);
        p = q;
    }
    *len = n;
    return p;
}

static void send_opts(const cli_t *cli, mqhub_send_opts_t *o)
{
    *o = (mqhub_send_opts_t){.has_delay = cli->delay >= 0, .delay = (uint32_t)cli->delay,
                             .attrs = cli->msg_attrs, .n_attrs = cli->n_msg_attrs,
                             .group = cli->group, .dedup_id = cli->dedup_id};
}

static int send_one(cli_t *cli, const char *queue, const void *body, size_t len)
{
    mqhub_send_opts_t o;
    mqhub_send_result_t res;
    send_opts(cli, &o);
    int rc = mqhub_client_send(cli->client, queue, body, len, &o, &res);
    if (rc != 0)
        return cli_fail(cli, rc, "send");
    if (cli->json) {
        out_json(json_pack("{s:s,s:I}", "msg_id", res.msg_id, "seq", (json_int_t)res.seq));
        return CLI_OK;
    }
    char seq[24];
    snprintf(seq, sizeof seq, "%llu", (unsigned long long)res.seq);
    table_t *t = out_table_new(2, "MSG_ID", "SEQ");
    out_table_row(t, res.msg_id, seq);
    out_table_print(t, stdout);
    return CLI_OK;
}

typedef struct batch_state {
    mqhub_batch_msg_t msgs[MQHUB_BATCH_MAX];
    char *lines[MQHUB_BATCH_MAX];
    size_t n, sent, failed, line_no;
    json_t *results;
} batch_state_t;

/* Send the collected chunk. Returns 0 or the exit code of a failed request. */
static int batch_flush(cli_t *cli, const char *queue, batch_state_t *b)
{
    mqhub_send_result_t res[MQHUB_BATCH_MAX];
    int rc = b->n ? mqhub_client_send_batch(cli->client, queue, b->msgs, b->n, res) : 0;
    for (size_t i = 0; i < b->n; i++) {
        free(b->lines[i]);
        if (rc != 0)
            continue;
        size_t line = b->line_no - b->n + i + 1;
        if (res[i].status == 0) {
            b->sent++;
            json_array_append_new(b->results, json_pack("{s:s,s:I}", "msg_id", res[i].msg_id,
                                                        "seq", (json_int_t)res[i].seq));
            continue;
        }
        b->failed++;
        json_array_append_new(b->results,
                              json_pack("{s:s,s:s,s:I}", "code", mqhub_err_name(res[i].status),
                                        "error", res[i].error, "line", (json_int_t)line));
        if (!cli->json)
            fprintf(stderr, "line %zu: %s: %s\n", line, mqhub_err_name(res[i].status),
                    res[i].error);
    }
    b->n = 0;
    return rc == 0 ? 0 : cli_fail(cli, rc, "send_batch");
}

static int send_batch_file(cli_t *cli, const char *queue)
{
    FILE *f = strcmp(cli->batch_file, "-") ? fopen(cli->batch_file, "r") : stdin;
    batch_state_t *b = calloc(1, sizeof *b);
    mqhub_send_opts_t o;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;

    if (!f || !b) {
        free(b);
        return cli_usage_error("send", "cannot open %s", cli->batch_file);
    }
    send_opts(cli, &o);
    b->results = json_array();
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        b->lines[b->n] = malloc((size_t)len + 1);
        memcpy(b->lines[b->n], line, (size_t)len + 1);
        b->msgs[b->n] = (mqhub_batch_msg_t){b->lines[b->n], (size_t)len, &o};
        b->n++;
        b->line_no++;
        if (b->n == MQHUB_BATCH_MAX)
            rc = batch_flush(cli, queue, b);
    }
    if (rc == 0)
        rc = batch_flush(cli, queue, b);
    free(line);
    if (f != stdin)
        fclose(f);
    if (rc == 0 && cli->json)
        out_json(json_pack("{s:I,s:I,s:O}", "sent", (json_int_t)b->sent, "failed",
                           (json_int_t)b->failed, "results", b->results));
    else if (rc == 0)
        printf("sent %zu messages to %s, %zu failed\n", b->sent, queue, b->failed);
    json_decref(b->results);
    if (rc == 0 && b->failed)
        rc = CLI_SERVER;
    free(b);
    return rc;
}

int cmd_messages_send(cli_t *cli)
{
    if (cli->n_args < 1)
        return cli_usage_error("send", "missing QUEUE");
    if (cli->n_args > 2)
        return cli_usage_error("send", "unexpected argument \"%s\"", cli->args[2]);
    if (cli->batch_file && cli->n_args > 1)
        return cli_usage_error("send", "give either BODY or --batch-file, not both");
    if (cli->batch_file && cli->dedup_id)
        return cli_usage_error("send", "--dedup-id cannot be used with --batch-file");
    int rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    if (cli->batch_file)
        return send_batch_file(cli, cli->args[0]);
    if (cli->n_args == 2 && strcmp(cli->args[1], "-") != 0)
        return send_one(cli, cli->args[0], cli->args[1], strlen(cli->args[1]));
    size_t len;
    char *body = cmd_messages_read_all(stdin, &len);
    if (!body)
        return cli_fail(cli, MQHUB_EINTERNAL, "read stdin");
    rc = send_one(cli, cli->args[0], body, len);
    free(body);
    return rc;
}

/* ------------------------------------------------------------------ recv */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = 1;
    signal(sig, SIG_DFL); /* a second Ctrl-C ends at once */
}

static json_t *msg_json(const mqhub_msg_t *m)
{
    json_t *j = json_pack("{s:s,s:I,s:s,s:I,s:I,s:I,s:i}", "msg_id", m->msg_id, "seq",
                          (json_int_t)m->seq, "receipt", m->receipt, "enqueued_at",
                          (json_int_t)m->enqueued_at, "first_received_at",
                          (json_int_t)m->first_received_at, "next_visible_at",
                          (json_int_t)m->next_visible_at, "receive_count",
                          (int)m->receive_count);
    json_t *attrs = json_object();
    for (size_t i = 0; i < m->n_attrs; i++)
        json_object_set_new(attrs, m->attrs[i].key, json_string(m->attrs[i].value));
    json_object_set_new(j, "attrs", attrs);
    if (m->group)
        json_object_set_new(j, "group", json_string(m->group));
    out_json_body(j, m->body, m->body_len);
    return j;
}

static void print_table(const mqhub_msg_list_t *l)
{
    char seq[24], count[16], body[256];
    table_t *t = out_table_new(5, "SEQ", "MSG_ID", "RECEIVES", "BODY", "RECEIPT");
    for (size_t i = 0; i < l->n; i++) {
        const mqhub_msg_t *m = &l->msgs[i];
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)m->seq);
        snprintf(count, sizeof count, "%u", m->receive_count);
        out_body_cell(body, sizeof body, m->body, m->body_len, 60);
        out_table_row(t, seq, m->msg_id, count, body, m->receipt);
    }
    out_table_print(t, stdout);
}

static void print_msgs(const cli_t *cli, const mqhub_msg_list_t *l)
{
    char body[256];
    if (cli->json && cli->follow) {
        for (size_t i = 0; i < l->n; i++)
            out_json(msg_json(&l->msgs[i]));
    } else if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < l->n; i++)
            json_array_append_new(arr, msg_json(&l->msgs[i]));
        out_json(json_pack("{s:o}", "msgs", arr));
    } else if (cli->follow) {
        for (size_t i = 0; i < l->n; i++) {
            out_body_cell(body, sizeof body, l->msgs[i].body, l->msgs[i].body_len, 200);
            printf("%-10llu %-24s %s\n", (unsigned long long)l->msgs[i].seq,
                   l->msgs[i].msg_id, body);
        }
        fflush(stdout);
    } else if (l->n == 0) {
        printf("no messages\n");
    } else {
        print_table(l);
    }
}

static int delete_received(cli_t *cli, const char *queue, const mqhub_msg_list_t *l)
{
    const char *receipts[MQHUB_RECEIVE_MAX];
    int st[MQHUB_RECEIVE_MAX], bad = 0;
    for (size_t i = 0; i < l->n; i++)
        receipts[i] = l->msgs[i].receipt;
    int rc = mqhub_client_delete(cli->client, queue, receipts, l->n, st);
    if (rc != 0)
        return cli_fail(cli, rc, "delete");
    for (size_t i = 0; i < l->n; i++) {
        if (st[i] != 0) {
            fprintf(stderr, "delete seq %llu: %s\n", (unsigned long long)l->msgs[i].seq,
                    mqhub_err_name(st[i]));
            bad = 1;
        }
    }
    return bad ? CLI_SERVER : CLI_OK;
}

static int recv_once(cli_t *cli, const char *queue, const mqhub_receive_opts_t *o)
{
    mqhub_msg_list_t l;
    int rc = mqhub_client_receive(cli->client, queue, o, &l);
    if (rc != 0)
        return cli_fail(cli, rc, "receive");
    print_msgs(cli, &l);
    if (cli->del && l.n > 0)
        rc = delete_received(cli, queue, &l);
    mqhub_msg_list_free(&l);
    return rc;
}

int cmd_messages_recv(cli_t *cli)
{
    if (cli->n_args != 1)
        return cli_usage_error("recv", cli->n_args ? "give one QUEUE" : "missing QUEUE");
    if (cli->max == 0 || cli->max > MQHUB_RECEIVE_MAX)
        return cli_usage_error("recv", "--max takes 1 to %d", MQHUB_RECEIVE_MAX);
    mqhub_receive_opts_t o = {.max = cli->max > 0 ? (unsigned)cli->max : 1,
                              .wait = (int)cli->wait, .visibility = (int)cli->visibility};
    if (cli->follow && o.wait < 0)
        o.wait = 1; /* short polls keep Ctrl-C prompt */
    int rc = cli_connect(cli);
    if (rc != 0 || !cli->follow)
        return rc != 0 ? rc : recv_once(cli, cli->args[0], &o);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!interrupted && rc == 0)
        rc = recv_once(cli, cli->args[0], &o);
    return rc;
}

/* ---------------------------------------------------------------- delete */

int cmd_messages_delete(cli_t *cli)
{
    if (cli->n_args < 2)
        return cli_usage_error("delete", "give QUEUE and at least one RECEIPT");
    size_t n = (size_t)cli->n_args - 1;
    int *st = calloc(n, sizeof *st), rc, bad = 0;
    if (!st || (rc = cli_connect(cli)) != 0) {
        free(st);
        return st ? rc : CLI_SERVER;
    }
    rc = mqhub_client_delete(cli->client, cli->args[0], (const char *const *)cli->args + 1, n, st);
    if (rc != 0) {
        free(st);
        return cli_fail(cli, rc, "delete");
    }
    json_t *arr = json_array();
    table_t *t = out_table_new(2, "RECEIPT", "RESULT");
    for (size_t i = 0; i < n; i++) {
        bad |= st[i] != 0;
        out_table_row(t, cli->args[i + 1], st[i] ? mqhub_err_name(st[i]) : "deleted");
        json_array_append_new(arr, st[i] ? json_pack("{s:s,s:s}", "code", mqhub_err_name(st[i]),
                                                     "error", mqhub_strerror(st[i]))
                                         : json_pack("{s:b}", "ok", 1));
    }
    if (cli->json) {
        out_json(json_pack("{s:o}", "results", arr));
        out_table_print(t, NULL);
    } else {
        out_table_print(t, stdout);
        json_decref(arr);
    }
    free(st);
    return bad ? CLI_SERVER : CLI_OK;
}
