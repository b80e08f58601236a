/* cmd_messages.c: `mqhub send`, `mqhub recv`, `mqhub delete` and `mqhub
 * change-visibility`.
 * send takes one body (argument or stdin) or a batch file (one body per line,
 * sent with send_batch in chunks of MQHUB_BATCH_MAX); recv prints what
 * arrived — every field the server returns, tags and attrs included (it calls
 * receive through mqhub_client_call) — and may delete it, or --follow until
 * Ctrl-C. Start at
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

/* A field of a received message as text (strings, bin, numbers); "" when absent. */
static void msg_str(const msgpack_object *m, const char *key, char *buf, size_t size)
{
    const msgpack_object *v = mqhub_map_get(m, key);
    buf[0] = '\0';
    if (v && v->type == MSGPACK_OBJECT_STR)
        snprintf(buf, size, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    else if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf(buf, size, "%llu", (unsigned long long)v->via.u64);
}

/* "a,b" for tags, "k=v,k=v" for attrs ("" when absent). */
static void msg_list_cell(const msgpack_object *m, const char *key, char *buf, size_t size)
{
    const msgpack_object *v = mqhub_map_get(m, key);
    size_t off = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; v && v->type == MSGPACK_OBJECT_ARRAY && i < v->via.array.size; i++) {
        const msgpack_object *t = &v->via.array.ptr[i];
        if (t->type == MSGPACK_OBJECT_STR && off < size)
            off += (size_t)snprintf(buf + off, size - off, "%s%.*s", off ? "," : "",
                                    (int)t->via.str.size, t->via.str.ptr);
    }
    for (uint32_t i = 0; v && v->type == MSGPACK_OBJECT_MAP && i < v->via.map.size; i++) {
        const msgpack_object *k = &v->via.map.ptr[i].key, *x = &v->via.map.ptr[i].val;
        if (k->type == MSGPACK_OBJECT_STR && x->type == MSGPACK_OBJECT_STR && off < size)
            off += (size_t)snprintf(buf + off, size - off, "%s%.*s=%.*s", off ? "," : "",
                                    (int)k->via.str.size, k->via.str.ptr,
                                    (int)x->via.str.size, x->via.str.ptr);
    }
}

static const msgpack_object *msgs_of(const mqhub_response_t *r, uint32_t *n)
{
    const msgpack_object *l = mqhub_map_get(&r->map, "msgs");
    *n = l && l->type == MSGPACK_OBJECT_ARRAY ? l->via.array.size : 0;
    return *n ? l->via.array.ptr : NULL;
}

static void print_table(const mqhub_response_t *r)
{
    char seq[24], id[MQHUB_MSG_ID_MAX], count[16], tags[256], attrs[512], body[256],
        receipt[128];
    uint32_t n;
    const msgpack_object *m = msgs_of(r, &n);
    table_t *t = out_table_new(7, "SEQ", "MSG_ID", "RECEIVES", "TAGS", "ATTRS", "BODY", "RECEIPT");
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        const char *b = out_msg_body(&m[i], &len);
        msg_str(&m[i], "seq", seq, sizeof seq);
        msg_str(&m[i], "msg_id", id, sizeof id);
        msg_str(&m[i], "receive_count", count, sizeof count);
        msg_list_cell(&m[i], "tags", tags, sizeof tags);
        msg_list_cell(&m[i], "attrs", attrs, sizeof attrs);
        msg_str(&m[i], "receipt", receipt, sizeof receipt);
        out_body_cell(body, sizeof body, b ? b : "", len, 60);
        out_table_row(t, seq, id, count, tags[0] ? tags : "-", attrs[0] ? attrs : "-", body,
                      receipt);
    }
    out_table_print(t, stdout);
}

/* --follow without --json: one line per message, "SEQ MSG_ID [TAGS] [ATTRS] BODY". */
static void print_line(const msgpack_object *m)
{
    char seq[24], id[MQHUB_MSG_ID_MAX], tags[256], attrs[512], body[256];
    size_t len;
    const char *b = out_msg_body(m, &len);
    msg_str(m, "seq", seq, sizeof seq);
    msg_str(m, "msg_id", id, sizeof id);
    msg_list_cell(m, "tags", tags, sizeof tags);
    msg_list_cell(m, "attrs", attrs, sizeof attrs);
    out_body_cell(body, sizeof body, b ? b : "", len, 200);
    printf("%-10s %-24s %s%s%s%s%s", seq, id, tags[0] ? "[" : "", tags, tags[0] ? "] " : "",
           attrs[0] ? attrs : "", attrs[0] ? " " : "");
    fputs(body, stdout); /* after the columns: a body may hold anything */
    fputc('\n', stdout);
}

static void print_msgs(const cli_t *cli, const mqhub_response_t *r)
{
    uint32_t n;
    const msgpack_object *m = msgs_of(r, &n);
    if (cli->json && cli->follow) {
        for (uint32_t i = 0; i < n; i++)
            out_json(out_msg_json(&m[i]));
    } else if (cli->json) {
        json_t *arr = json_array();
        for (uint32_t i = 0; i < n; i++)
            json_array_append_new(arr, out_msg_json(&m[i]));
        out_json(json_pack("{s:o}", "msgs", arr));
    } else if (cli->follow) {
        for (uint32_t i = 0; i < n; i++)
            print_line(&m[i]);
        fflush(stdout);
    } else if (n == 0) {
        printf("no messages\n");
    } else {
        print_table(r);
    }
}

static int delete_received(cli_t *cli, const char *queue, const mqhub_response_t *r)
{
    char receipts[MQHUB_RECEIVE_MAX][128], seq[24];
    const char *ptrs[MQHUB_RECEIVE_MAX];
    int st[MQHUB_RECEIVE_MAX], bad = 0;
    uint32_t n;
    const msgpack_object *m = msgs_of(r, &n);
    n = n < MQHUB_RECEIVE_MAX ? n : MQHUB_RECEIVE_MAX;
    for (uint32_t i = 0; i < n; i++) {
        msg_str(&m[i], "receipt", receipts[i], sizeof receipts[i]);
        ptrs[i] = receipts[i];
    }
    int rc = mqhub_client_delete(cli->client, queue, ptrs, n, st);
    if (rc != 0)
        return cli_fail(cli, rc, "delete");
    for (uint32_t i = 0; i < n; i++) {
        if (st[i] != 0) {
            msg_str(&m[i], "seq", seq, sizeof seq);
            fprintf(stderr, "delete seq %s: %s\n", seq, mqhub_err_name(st[i]));
            bad = 1;
        }
    }
    return bad ? CLI_SERVER : CLI_OK;
}

/* receive as a generic call, so that every field the server returns (tags
 * of messages that came from a topic, attrs, group) reaches the output. */
static int recv_once(cli_t *cli, const char *queue, const mqhub_receive_opts_t *o)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    mqhub_response_t r;
    uint32_t n;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2 + (o->wait >= 0) + (o->visibility >= 0));
    msgpack_pack_str_with_body(&pk, "queue", 5);
    msgpack_pack_str_with_body(&pk, queue, strlen(queue));
    msgpack_pack_str_with_body(&pk, "max", 3);
    msgpack_pack_unsigned_int(&pk, o->max);
    if (o->wait >= 0) {
        msgpack_pack_str_with_body(&pk, "wait", 4);
        msgpack_pack_int(&pk, o->wait);
    }
    if (o->visibility >= 0) {
        msgpack_pack_str_with_body(&pk, "visibility", 10);
        msgpack_pack_int(&pk, o->visibility);
    }
    msgpack_unpacked_init(&u);
    msgpack_unpack_next(&u, sb.data, sb.size, NULL);
    int rc = mqhub_client_call(cli->client, "receive", &u.data, &r);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    if (rc != 0)
        return cli_fail(cli, rc, "receive");
    print_msgs(cli, &r);
    msgs_of(&r, &n);
    if (cli->del && n > 0)
        rc = delete_received(cli, queue, &r);
    mqhub_response_free(&r);
    return rc;
}

int cmd_messages_recv(cli_t *cli)
{
    if (cli->n_args != 1)
        return cli_usage_error("recv", cli->n_args ? "give one QUEUE" : "missing QUEUE");
    if (cli->max == 0 || cli->max > MQHUB_RECEIVE_MAX)
        return cli_usage_error("recv", "--max takes 1 to %d", MQHUB_RECEIVE_MAX);
    if (cli->wait > MQHUB_RECEIVE_WAIT_MAX)
        return cli_usage_error("recv", "--wait takes 0 to %d", MQHUB_RECEIVE_WAIT_MAX);
    mqhub_receive_opts_t o = {.max = cli->max > 0 ? (unsigned)cli->max : 1,
                              .wait = (int)cli->wait, .visibility = (int)cli->visibility};
    if (cli->follow && o.wait < 0)
        o.wait = 1; /* short polls keep Ctrl-C prompt */
    /* the call's timeout covers the long poll (a queue's polling_wait: up to 30 s) */
    int need_ms = ((o.wait >= 0 ? o.wait : MQHUB_RECEIVE_WAIT_MAX) + 5) * 1000;
    if ((cli->timeout_ms > 0 ? cli->timeout_ms : 10000) < need_ms)
        cli->timeout_ms = need_ms;
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

/* ----------------------------------------------------- change-visibility */

/* `change-visibility QUEUE RECEIPT SECONDS`: extend (or end, with 0) the
 * lock of a received message (change_visibility). */
int cmd_messages_change_visibility(cli_t *cli)
{
    const char *cmd = "change-visibility";
    uint64_t at = 0;
    char *end;
    if (cli->n_args != 3)
        return cli_usage_error(cmd, cli->n_args < 3 ? "give QUEUE, RECEIPT and SECONDS"
                                                    : "too many arguments");
    unsigned long long secs = strtoull(cli->args[2], &end, 10);
    if (cli->args[2][0] < '0' || cli->args[2][0] > '9' || *end != '\0' ||
        secs > MQHUB_VISIBILITY_TIMEOUT_MAX)
        return cli_usage_error(cmd, "SECONDS takes 0-%d, not \"%s\"",
                               MQHUB_VISIBILITY_TIMEOUT_MAX, cli->args[2]);
    int rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    rc = mqhub_client_change_visibility(cli->client, cli->args[0], cli->args[1], (uint32_t)secs,
                                        &at);
    if (rc != 0)
        return cli_fail(cli, rc, "change-visibility");
    if (cli->json)
        out_json(json_pack("{s:b,s:I}", "ok", 1, "next_visible_at", (json_int_t)at));
    else if (secs == 0)
        printf("message %s is visible again now\n", cli->args[1]);
    else
        printf("message %s stays locked for %llu s (until %llu ms since the epoch)\n",
               cli->args[1], secs, (unsigned long long)at);
    return CLI_OK;
}
