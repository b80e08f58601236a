/* main.c: the mqhub command-line tool — argument parsing, help, connecting,
 * exit codes, and the command table that dispatches to the cmd_*.c files.
 *
 * Every option is parsed once into a cli_t (options may come before or after
 * the command words); a command reads what it needs. `commands` has one row
 * per command: its name, its handler, whether it groups subcommands (`queue
 * create`, `topic list`: run() hands the word over in cli->subcommand) and
 * its lines in `mqhub --help`. To add a command: a row in `commands`, its
 * help text in `helps`, a cmd_<file>_<name>() handler in the cmd_<file>.c it
 * belongs to (cli.h). Start at run().
 * Exit codes: 0 ok, 1 server error, 2 usage error, 3 cannot connect.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* The digits of a number macro as a string literal, for the help texts. */
#define HELP_NUM(n) HELP_NUM_(n)
#define HELP_NUM_(n) #n

static int ping(cli_t *cli);

/* One row per command, in the order of `mqhub --help`. */
static const struct command {
    const char *name;
    int (*handler)(cli_t *cli);
    bool group;          /* takes a subcommand word: `queue create` */
    const char *summary; /* its lines in `mqhub --help`; NULL: an alias */
} commands[] = {
    {"ping", ping, false, "  ping                         check that the hub answers\n"},
    {"queue", cmd_queue, true,
     "  queue create NAME [ATTRS]    create a queue\n"
     "  queue list [--prefix P]      list queues with their backlog\n"
     "  queue get NAME               attributes and statistics\n"
     "  queue set NAME ATTRS         change attributes\n"
     "  queue delete NAME            delete a queue and its messages\n"
     "  queue purge NAME             drop every message of a queue\n"
     "  queue rewind NAME --time MS|--ago S|--seq N   replay retained messages\n"},
    {"send", cmd_messages_send, false,
     "  send QUEUE [BODY|-]          send one message (- or no body: stdin)\n"},
    {"recv", cmd_messages_recv, false, "  recv QUEUE                   receive messages\n"},
    {"receive", cmd_messages_recv, false, NULL},
    {"delete", cmd_messages_delete, false,
     "  delete QUEUE RECEIPT...      delete received messages\n"},
    {"topic", cmd_topic, true, "  topic create|list|get|set|delete ...   manage topics\n"},
    {"publish", cmd_topic_publish, false,
     "  publish TOPIC [BODY|-]       publish one message (--tag, --key, --attr)\n"},
    {"sub", cmd_topic_sub, true,
     "  sub create|list|get|delete|rewind TOPIC ...   manage subscriptions\n"},
    {"tail", cmd_topic_tail, false,
     "  tail TOPIC --sub NAME        print pushed messages as they arrive (acks them)\n"},
    {"cluster", cmd_cluster, true,
     "  cluster status|add|remove|transfer ...   raft membership and leadership\n"},
    {"script", cmd_script, true,
     "  script load|get|list|delete|test ...   Lua filters and hooks\n"},
    {"block", cmd_script_block, true, "  block list|delete ...        blocks made by hooks\n"},
    {"user", cmd_user, true, "  user add|del|list|grant|revoke ...   named identities and grants\n"},
};

static const char usage_head[] =
    "usage: mqhub [--server HOST:PORT] [--token T] [--tls --ca FILE] [--json] COMMAND ...\n"
    "\n"
    "commands:\n";

static const char usage_tail[] =
    "\n"
    "common options:\n"
    "  --server HOST:PORT  hub address (env MQHUB_SERVER, default " MQHUB_DEFAULT_TCP_ADDRESS ")\n"
    "  --token TOKEN       hello token (env MQHUB_TOKEN)\n"
    "  --tls               connect with TLS (implied by --ca and --cert)\n"
    "  --ca FILE           CA certificate(s) that sign the server's (env MQHUB_CA;\n"
    "                      default: the system's trusted CAs)\n"
    "  --cert FILE         client certificate, when the server asks (env MQHUB_CERT)\n"
    "  --key-file FILE     its private key (env MQHUB_KEY; default: in --cert's file)\n"
    "  --timeout MS        per request (default 10000)\n"
    "  --json              one JSON document per result, for scripts\n"
    "  --help              this text; `mqhub COMMAND --help` for a command\n"
    "  --version           the version of mqhub and of its protocol\n"
    "\n"
    "exit codes: 0 ok, 1 server error, 2 usage error, 3 cannot connect\n";

/* The help of a command ("queue create": its words); `mqhub --help` is made
 * of usage_head, the summaries of `commands` and usage_tail. */
static const struct {
    const char *cmd;
    const char *text;
} helps[] = {
    {"ping", "usage: mqhub ping\n  Sends ping and prints the round-trip time.\n"},
    {"queue",
     "usage: mqhub queue create|list|get|set|delete|purge|rewind ...\n"
     "  see `mqhub queue create --help` etc.\n"},
    {"queue create",
     "usage: mqhub queue create NAME [ATTR-OPTIONS] [key=value...]\n"
     "attributes (also as key=value, e.g. visibility_timeout=60):\n"
     "  --visibility-timeout S  0-43200 (30)     --polling-wait S   0-30 (0)\n"
     "  --max-msg-size B        1024-1048576     --retention S      60-1296000\n"
     "  --rewind-window S       0-retention      --max-backlog N    0 = unbounded\n"
     "  --delay S               0-3600           --ordered          FIFO per group\n"
     "  --dead-letter QUEUE:MAX_RECEIVES         --hook SCRIPT\n"},
    {"queue list",
     "usage: mqhub queue list [--prefix P] [--offset N] [--limit N]\n"
     "  Lists queue names with ready / in-flight / delayed counts.\n"},
    {"queue get", "usage: mqhub queue get NAME\n"},
    {"queue set",
     "usage: mqhub queue set NAME [ATTR-OPTIONS] [key=value...]\n"
     "  Partial update; attributes as for `queue create`.\n"},
    {"queue delete", "usage: mqhub queue delete NAME\n"},
    {"queue purge", "usage: mqhub queue purge NAME\n"},
    {"queue rewind",
     "usage: mqhub queue rewind NAME (--time MS | --ago SECONDS | --seq N)\n"
     "  Makes every retained message enqueued at or after the point ready again.\n"},
    {"send",
     "usage: mqhub send QUEUE [BODY|-] [options]\n"
     "  --attr KEY=VALUE   message attribute (repeatable)\n"
     "  --delay S          deliver after S seconds\n"
     "  --group G          ordered queues: the message group\n"
     "  --dedup-id ID      a repeat within 5 minutes is stored once\n"
     "  --batch-file FILE  one body per line (- for stdin), sent with send_batch\n"
     "                     in chunks of " HELP_NUM(MQHUB_BATCH_MAX) "\n"},
    {"recv",
     "usage: mqhub recv QUEUE [options]\n"
     "  --max N            up to N messages per receive (1-" HELP_NUM(MQHUB_RECEIVE_MAX)
     ", default 1)\n"
     "  --wait S           long-poll up to S seconds (0-" HELP_NUM(MQHUB_RECEIVE_WAIT_MAX) ")\n"
     "  --visibility S     lock the messages for S seconds\n"
     "  --delete           delete what was received (after printing it)\n"
     "  --follow           keep receiving until Ctrl-C\n"},
    {"delete", "usage: mqhub delete QUEUE RECEIPT...\n"},
    {"topic",
     "usage: mqhub topic create|list|get|set|delete ...\n"
     "  topic create NAME [--max-msg-size B] [--retention S] [--hook SCRIPT]\n"
     "  topic list [--prefix P] [--offset N] [--limit N]\n"
     "  topic get NAME            attributes, statistics, subscriptions\n"
     "  topic set NAME [--max-msg-size B] [--retention S] [--hook SCRIPT]\n"
     "  topic delete NAME         with its subscriptions and retained messages\n"},
    {"publish",
     "usage: mqhub publish TOPIC [BODY|-] [options]\n"
     "  --tag T            message tag (repeatable, at most " HELP_NUM(MQHUB_TAGS_MAX) ")\n"
     "  --key K            routing key, dot-separated words (payment.card.eu)\n"
     "  --attr KEY=VALUE   message attribute (repeatable)\n"},
    {"sub",
     "usage: mqhub sub create|list|get|delete|rewind TOPIC ...\n"
     "  sub create TOPIC NAME (--queue Q | --push) [options]\n"
     "    --filter-tag T       match messages carrying tag T (repeatable)\n"
     "    --binding K          routing-key binding, * one word, # any (repeatable)\n"
     "    --filter-script S    a loaded filter script\n"
     "    --retry backoff|exponential  --max-attempts N  --interval-ms N\n"
     "    --max-interval-ms N  exponential cap    --dlq QUEUE  dead letters (push)\n"
     "    --from latest|earliest|MS   where a new subscription starts\n"
     "  sub list TOPIC\n"
     "  sub get TOPIC NAME        endpoint, filters, retry, statistics\n"
     "  sub delete TOPIC NAME\n"
     "  sub rewind TOPIC NAME (--time MS | --ago S | --seq N)\n"},
    {"cluster",
     "usage: mqhub cluster status [digest] | add ID RAFT_ADDRESS [CLIENT_ADDRESS] |\n"
     "                     remove ID | transfer [ID]\n"
     "  status    the view of the node --server names (any node answers): leader,\n"
     "            term, commit index, members with role and match index (known\n"
     "            on the leader); `digest` adds the state's SHA-256 (slow when large)\n"
     "  add       make the new node ID (started with node.join = true) a voter\n"
     "  remove    take node ID out of the cluster\n"
     "  transfer  hand leadership to voter ID (none: raft picks one)\n"
     "  --server accepts a list: HOST:PORT,HOST:PORT,... (tried in turn)\n"},
    {"script",
     "usage: mqhub script load|get|list|delete|test ...\n"
     "  script load NAME FILE      compile and store (FILE - reads stdin); a reload\n"
     "                             replaces the script atomically\n"
     "  script get NAME            version, statistics, users and source\n"
     "  script list                every script with its calls and errors\n"
     "  script delete NAME         refused while a hook or subscription uses it\n"
     "  script test NAME --topic T [--since TIME]   what the script would have done\n"
     "                             on T's retained messages (TIME: ms since the epoch,\n"
     "                             or ago: 90s, 15m, 2h, 1d); changes nothing\n"},
    {"block",
     "usage: mqhub block list | block delete ATTR VALUE\n"
     "  block list                 active blocks: attribute, value, until, reason\n"
     "  block delete ATTR VALUE    lift a block before its ttl\n"},
    {"user",
     "usage: mqhub user add|del|list|grant|revoke ...\n"
     "  user add NAME [--grant VERB:PATTERN]... [--user-token T]   a new identity; without\n"
     "                             --user-token the hub generates one, printed once\n"
     "  user del NAME              its open sessions fail from their next request\n"
     "  user list                  every user with its grants (never tokens)\n"
     "  user grant NAME VERB PATTERN    effective at once, open sessions included\n"
     "  user revoke NAME VERB PATTERN\n"
     "  VERB: send receive publish subscribe manage script admin; PATTERN: *, a name,\n"
     "  or a prefix and * (payments*). Needs admin on * (or the root --token).\n"},
    {"tail",
     "usage: mqhub tail TOPIC --sub NAME [--credit N] [--json]\n"
     "  Subscribes to the push subscription NAME, prints each message as it\n"
     "  arrives, acknowledges it (which frees its credit slot). --credit: how\n"
     "  many unacknowledged messages may be in flight (default 64). Ctrl-C\n"
     "  unsubscribes and exits 0.\n"},
};

static void usage_overview(FILE *f)
{
    fputs(usage_head, f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].summary)
            fputs(commands[i].summary, f);
    fputs(usage_tail, f);
}

void cli_usage(FILE *f, const char *cmd)
{
    for (size_t i = 0; cmd && i < sizeof helps / sizeof helps[0]; i++) {
        if (!strcmp(cmd, helps[i].cmd)) {
            fputs(helps[i].text, f);
            return;
        }
    }
    usage_overview(f);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("mqhub: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cli_usage(stderr, cmd);
    return CLI_USAGE;
}

/* What to do about a failed TLS connect, from the library's sentence. */
static const char *tls_hint(const cli_t *cli, const char *err)
{
    static const struct {
        const char *says, *hint;
    } hints[] = {
        {"TLS CA ", "check --ca (env MQHUB_CA): a PEM file of CA certificates"},
        {"TLS certificate ", "check --cert (env MQHUB_CERT): a PEM certificate"},
        {"TLS key ", "check --key-file (env MQHUB_KEY): the PEM private key of --cert"},
        {"certificate verify failed: unable to get local issuer",
         "pass --ca with the CA that signed the server's certificate (env MQHUB_CA)"},
        {"certificate verify failed: self-signed",
         "pass --ca with the server's CA certificate (env MQHUB_CA)"},
        {"address mismatch", "the server's certificate does not name this IP address: use "
                             "--server with a name or address it holds (subjectAltName)"},
        {"hostname mismatch", "the server's certificate does not name this host: use "
                              "--server with a name or address it holds (subjectAltName)"},
        {"certificate verify failed", "check --ca: it must hold the CA of the server"},
        {"certificate required", "the server requires a client certificate: pass --cert FILE "
                                 "--key-file FILE"},
        {"alert handshake failure", "the server refused the handshake: it may require a client "
                                    "certificate (--cert FILE --key-file FILE)"},
        {"unknown ca", "the server does not trust the client certificate's CA: use a "
                       "certificate signed by its tls_ca"},
        {"bad certificate", "the server refused the client certificate (--cert, --key-file)"},
        {"certificate expired", "the certificate has expired"},
        {"wrong version number", "this port does not speak TLS: drop --tls/--ca/--cert"},
        {"no TLS handshake", "this port does not speak TLS: drop --tls/--ca/--cert"},
    };
    if (!cli->tls)
        return strstr(err, "connection closed by the server")
                   ? "if the server's port uses TLS, pass --tls and --ca FILE" : NULL;
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++)
        if (strstr(err, hints[i].says))
            return hints[i].hint;
    return NULL;
}

int cli_connect(cli_t *cli)
{
    mqhub_client_opts_t o = {.timeout_ms = cli->timeout_ms, .token = cli->token,
                             .client_name = "mqhub-cli", .tls = cli->tls, .tls_ca = cli->ca,
                             .tls_cert = cli->cert, .tls_key = cli->cert_key};
    char err[512];
    int rc = mqhub_client_connect(&cli->client, cli->server, &o, err, sizeof err);
    if (rc == 0)
        return CLI_OK;
    if (rc == MQHUB_ECONN) {
        const char *hint = tls_hint(cli, err);
        fprintf(stderr, "mqhub: cannot connect to %s: %s\n%s\n", cli->server, err,
                hint ? hint : "is mqhubd running? start it with `make run` "
                              "(or set --server / MQHUB_SERVER)");
        return CLI_CONNECT;
    }
    fprintf(stderr, "%s: %s\n", mqhub_err_name(rc), err);
    return CLI_SERVER;
}

int cli_fail(cli_t *cli, int rc, const char *what)
{
    const char *msg = cli->client ? mqhub_client_errmsg(cli->client) : "";
    if (rc == MQHUB_ECONN) {
        const char *hint = tls_hint(cli, msg);
        fprintf(stderr, "mqhub: %s: lost the connection to %s: %s\n%s%s", what, cli->server,
                msg, hint ? hint : "", hint ? "\n" : "");
        return CLI_CONNECT;
    }
    fprintf(stderr, "%s: %s\n", mqhub_err_name(rc), msg[0] ? msg : mqhub_strerror(rc));
    return CLI_SERVER;
}

enum {
    OPT_SERVER = 256, OPT_TOKEN, OPT_TIMEOUT, OPT_JSON, OPT_HELP, OPT_PREFIX, OPT_OFFSET,
    OPT_LIMIT, OPT_TIME, OPT_SEQ, OPT_AGO, OPT_ATTR, OPT_DELAY, OPT_GROUP, OPT_DEDUP,
    OPT_BATCH, OPT_MAX, OPT_WAIT, OPT_VISIBILITY, OPT_DELETE, OPT_FOLLOW, OPT_ORDERED,
    OPT_TAG, OPT_KEY, OPT_SUB, OPT_EP_QUEUE, OPT_PUSH, OPT_FILTER_TAG, OPT_BINDING,
    OPT_FILTER_SCRIPT, OPT_RETRY, OPT_MAX_ATTEMPTS, OPT_INTERVAL, OPT_MAX_INTERVAL, OPT_DLQ,
    OPT_FROM, OPT_CREDIT, OPT_TOPIC, OPT_SINCE, OPT_VERSION, OPT_GRANT, OPT_USER_TOKEN,
    OPT_TLS, OPT_CA, OPT_CERT, OPT_KEY_FILE,
    OPT_QATTR, /* + index into qattr_names */
};

static const char *const qattr_names[] = {
    "visibility_timeout", "polling_wait", "max_msg_size", "retention",
    "rewind_window", "max_backlog", "dead_letter", "hook",
};

static const struct option options[] = {
    {"server", required_argument, NULL, OPT_SERVER},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"tls", no_argument, NULL, OPT_TLS},
    {"ca", required_argument, NULL, OPT_CA},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key-file", required_argument, NULL, OPT_KEY_FILE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {"prefix", required_argument, NULL, OPT_PREFIX},
    {"offset", required_argument, NULL, OPT_OFFSET},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"time", required_argument, NULL, OPT_TIME},
    {"seq", required_argument, NULL, OPT_SEQ},
    {"ago", required_argument, NULL, OPT_AGO},
    {"attr", required_argument, NULL, OPT_ATTR},
    {"delay", required_argument, NULL, OPT_DELAY},
    {"group", required_argument, NULL, OPT_GROUP},
    {"dedup-id", required_argument, NULL, OPT_DEDUP},
    {"batch-file", required_argument, NULL, OPT_BATCH},
    {"max", required_argument, NULL, OPT_MAX},
    {"wait", required_argument, NULL, OPT_WAIT},
    {"visibility", required_argument, NULL, OPT_VISIBILITY},
    {"delete", no_argument, NULL, OPT_DELETE},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    {"ordered", no_argument, NULL, OPT_ORDERED},
    {"tag", required_argument, NULL, OPT_TAG},
    {"key", required_argument, NULL, OPT_KEY},
    {"sub", required_argument, NULL, OPT_SUB},
    {"queue", required_argument, NULL, OPT_EP_QUEUE},
    {"push", no_argument, NULL, OPT_PUSH},
    {"filter-tag", required_argument, NULL, OPT_FILTER_TAG},
    {"binding", required_argument, NULL, OPT_BINDING},
    {"filter-script", required_argument, NULL, OPT_FILTER_SCRIPT},
    {"retry", required_argument, NULL, OPT_RETRY},
    {"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
    {"interval-ms", required_argument, NULL, OPT_INTERVAL},
    {"max-interval-ms", required_argument, NULL, OPT_MAX_INTERVAL},
    {"dlq", required_argument, NULL, OPT_DLQ},
    {"from", required_argument, NULL, OPT_FROM},
    {"credit", required_argument, NULL, OPT_CREDIT},
    {"topic", required_argument, NULL, OPT_TOPIC},
    {"since", required_argument, NULL, OPT_SINCE},
    {"grant", required_argument, NULL, OPT_GRANT},
    {"user-token", required_argument, NULL, OPT_USER_TOKEN},
    {"visibility-timeout", required_argument, NULL, OPT_QATTR + 0},
    {"polling-wait", required_argument, NULL, OPT_QATTR + 1},
    {"max-msg-size", required_argument, NULL, OPT_QATTR + 2},
    {"retention", required_argument, NULL, OPT_QATTR + 3},
    {"rewind-window", required_argument, NULL, OPT_QATTR + 4},
    {"max-backlog", required_argument, NULL, OPT_QATTR + 5},
    {"dead-letter", required_argument, NULL, OPT_QATTR + 6},
    {"hook", required_argument, NULL, OPT_QATTR + 7},
    {NULL, 0, NULL, 0},
};

static int number(const char *opt, const char *s, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0) {
        fprintf(stderr, "mqhub: --%s takes a number >= 0, not \"%s\"\n", opt, s);
        return CLI_USAGE;
    }
    *out = v;
    return 0;
}

static int msg_attr(cli_t *cli, char *kv)
{
    char *eq = strchr(kv, '=');
    if (!eq || eq == kv || cli->n_msg_attrs == CLI_MAX_ATTRS) {
        fprintf(stderr, "mqhub: --attr takes KEY=VALUE (at most %d), not \"%s\"\n",
                CLI_MAX_ATTRS, kv);
        return CLI_USAGE;
    }
    *eq = '\0';
    cli->msg_attrs[cli->n_msg_attrs++] = (mqhub_attr_t){kv, eq + 1};
    return 0;
}

/* Append a repeatable string option (--tag, --filter-tag, --binding). */
static int push_str(const char *opt, const char **v, size_t *n, const char *arg)
{
    if (*n == CLI_MAX_ATTRS) {
        fprintf(stderr, "mqhub: --%s given more than %d times\n", opt, CLI_MAX_ATTRS);
        return CLI_USAGE;
    }
    v[(*n)++] = arg;
    return 0;
}

static int queue_attr(cli_t *cli, const char *name, const char *value)
{
    if (mqhub_queue_attrs_parse(&cli->attrs, name, value) != 0) {
        fprintf(stderr, "mqhub: bad queue attribute %s=%s (see `mqhub queue create --help`)\n",
                name, value);
        return CLI_USAGE;
    }
    return 0;
}

static int one_option(cli_t *cli, int opt, char *arg)
{
    long long v = 0;
    int rc;
    switch (opt) {
    case OPT_SERVER: cli->server = arg; return 0;
    case OPT_TOKEN: cli->token = arg; return 0;
    case OPT_TLS: cli->tls = true; return 0;
    case OPT_CA: cli->ca = arg; return 0;
    case OPT_CERT: cli->cert = arg; return 0;
    case OPT_KEY_FILE: cli->cert_key = arg; return 0;
    case OPT_JSON: cli->json = true; return 0;
    case OPT_HELP: cli->help = true; return 0;
    case OPT_VERSION: cli->version = true; return 0;
    case OPT_PREFIX: cli->prefix = arg; return 0;
    case OPT_GROUP: cli->group = arg; return 0;
    case OPT_DEDUP: cli->dedup_id = arg; return 0;
    case OPT_BATCH: cli->batch_file = arg; return 0;
    case OPT_DELETE: cli->del = true; return 0;
    case OPT_FOLLOW: cli->follow = true; return 0;
    case OPT_ATTR: return msg_attr(cli, arg);
    case OPT_ORDERED: return queue_attr(cli, "ordered", "true");
    case OPT_TAG: return push_str("tag", cli->tags, &cli->n_tags, arg);
    case OPT_FILTER_TAG: return push_str("filter-tag", cli->filter_tags, &cli->n_filter_tags, arg);
    case OPT_BINDING: return push_str("binding", cli->bindings, &cli->n_bindings, arg);
    case OPT_KEY: cli->key = arg; return 0;
    case OPT_SUB: cli->sub = arg; return 0;
    case OPT_EP_QUEUE: cli->endpoint_queue = arg; return 0;
    case OPT_PUSH: cli->push = true; return 0;
    case OPT_FILTER_SCRIPT: cli->filter_script = arg; return 0;
    case OPT_RETRY: cli->retry = arg; return 0;
    case OPT_DLQ: cli->dlq = arg; return 0;
    case OPT_FROM: cli->from = arg; return 0;
    case OPT_TOPIC: cli->topic = arg; return 0;
    case OPT_SINCE: cli->since = arg; return 0;
    case OPT_GRANT: return push_str("grant", cli->grants, &cli->n_grants, arg);
    case OPT_USER_TOKEN: cli->user_token = arg; return 0;
    case OPT_MAX_ATTEMPTS: return number("max-attempts", arg, &cli->max_attempts);
    case OPT_INTERVAL: return number("interval-ms", arg, &cli->interval_ms);
    case OPT_MAX_INTERVAL: return number("max-interval-ms", arg, &cli->max_interval_ms);
    case OPT_CREDIT: return number("credit", arg, &cli->credit);
    case OPT_TIMEOUT:
        rc = number("timeout", arg, &v);
        cli->timeout_ms = (int)v;
        return rc;
    case OPT_OFFSET: return number("offset", arg, &cli->offset);
    case OPT_LIMIT: return number("limit", arg, &cli->limit);
    case OPT_TIME: return number("time", arg, &cli->rewind_time);
    case OPT_SEQ: return number("seq", arg, &cli->rewind_seq);
    case OPT_AGO: return number("ago", arg, &cli->rewind_ago);
    case OPT_DELAY: return number("delay", arg, &cli->delay);
    case OPT_MAX: return number("max", arg, &cli->max);
    case OPT_WAIT: return number("wait", arg, &cli->wait);
    case OPT_VISIBILITY: return number("visibility", arg, &cli->visibility);
    default:
        if (opt >= OPT_QATTR && opt < OPT_QATTR + 8)
            return queue_attr(cli, qattr_names[opt - OPT_QATTR], arg);
        return CLI_USAGE;
    }
}

static int parse(cli_t *cli, int argc, char **argv)
{
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "mqhub: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            return CLI_USAGE;
        }
        int rc = one_option(cli, opt == 'h' ? OPT_HELP : opt, optarg);
        if (rc != 0)
            return rc;
    }
    cli->args = argv + optind;
    cli->n_args = argc - optind;
    return 0;
}

static void defaults(cli_t *cli)
{
    const char *env = getenv("MQHUB_SERVER");
    cli->server = env && *env ? env : MQHUB_DEFAULT_TCP_ADDRESS;
    env = getenv("MQHUB_TOKEN");
    cli->token = env && *env ? env : NULL;
    env = getenv("MQHUB_CA");
    cli->ca = env && *env ? env : NULL;
    env = getenv("MQHUB_CERT");
    cli->cert = env && *env ? env : NULL;
    env = getenv("MQHUB_KEY");
    cli->cert_key = env && *env ? env : NULL;
    cli->delay = cli->max = cli->wait = cli->visibility = -1;
    cli->rewind_time = cli->rewind_seq = cli->rewind_ago = -1;
    cli->credit = -1;
}

/* The help key of the command words ("queue create", "send", NULL). */
static const char *help_key(const cli_t *cli, char *buf, size_t size)
{
    if (cli->n_args == 0)
        return NULL;
    if (!strcmp(cli->args[0], "sub") || !strcmp(cli->args[0], "topic") ||
        !strcmp(cli->args[0], "script") || !strcmp(cli->args[0], "block") ||
        !strcmp(cli->args[0], "user"))
        return cli->args[0];
    if (!strcmp(cli->args[0], "queue") && cli->n_args > 1) {
        snprintf(buf, size, "queue %s", cli->args[1]);
        return buf;
    }
    return cli->args[0];
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int ping(cli_t *cli)
{
    if (cli->n_args != 0)
        return cli_usage_error("ping", "ping takes no arguments");
    int rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    double t0 = mono_ms();
    rc = mqhub_client_ping(cli->client);
    if (rc != 0)
        return cli_fail(cli, rc, "ping");
    double rtt = mono_ms() - t0;
    if (cli->json)
        out_json(json_pack("{s:b,s:s,s:f}", "ok", 1, "server", cli->server, "rtt_ms", rtt));
    else
        printf("pong from %s in %.2f ms\n", cli->server, rtt);
    return CLI_OK;
}

/* The next command word, taken off the positional arguments. */
static const char *shift(cli_t *cli)
{
    cli->n_args--;
    return *cli->args++;
}

/* Find the command's row and call its handler (a group's subcommand word
 * goes to cli->subcommand; a group without one is not a command). */
static int run(cli_t *cli)
{
    const char *name = shift(cli);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const struct command *c = &commands[i];
        if (strcmp(name, c->name) != 0 || (c->group && cli->n_args == 0))
            continue;
        if (c->group)
            cli->subcommand = shift(cli);
        return c->handler(cli);
    }
    fprintf(stderr, "mqhub: unknown command \"%s\"; see `mqhub --help`\n", name);
    return CLI_USAGE;
}

int main(int argc, char **argv)
{
    cli_t cli = {0};
    char key[64];

    defaults(&cli);
    int rc = parse(&cli, argc, argv);
    cli.tls = cli.tls || cli.ca || cli.cert;
    if (rc != 0) {
        fprintf(stderr, "see `mqhub --help`\n");
        return rc;
    }
    if (cli.help) {
        cli_usage(stdout, help_key(&cli, key, sizeof key));
        return CLI_OK;
    }
    if (cli.version) {
        printf("mqhub %s (protocol %d)\n", mqhub_version(), MQHUB_PROTOCOL_VERSION);
        return CLI_OK;
    }
    if (cli.n_args == 0) {
        cli_usage(stderr, NULL);
        return CLI_USAGE;
    }
    rc = run(&cli);
    mqhub_client_close(cli.client);
    return rc;
}
