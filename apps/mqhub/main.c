/* main.c: the mqhub command-line tool — argument parsing, help, connecting,
 * exit codes, and the command table that dispatches to the cmd_*.c files.
 *
 * Every option is parsed once into a cli_t (options may come before or after
 * the command words); a command reads what it needs. `commands` has one row
 * per command: its name, its handler, whether it groups subcommands (`queue
 * create`, `topic list`: run() hands the word over in cli->subcommand) and
 * its lines in `mqhub --help`. To add a command: a row in `commands`, its
 * help text in `helps` and one example in `examples`, a cmd_<file>_<name>()
 * handler in the cmd_<file>.c it belongs to (cli.h). Start at run().
 * The table also feeds "did you mean" (closest(): commands, and subcommand
 * words taken from the help keys and summaries) and `mqhub completion bash`
 * (completion()). Talking to a hub: --server gets the client port when it
 * has none (server_with_ports()); a failed connection asks the port whether
 * it speaks HTTP (port_probe(): the dashboard's port is named); a server
 * sentence naming a protocol op names the CLI command instead (cli_words()).
 * Connection options come from flags, env, a saved context (cmd_context.c)
 * or defaults, filled in by run() for the commands that connect.
 * stdout is line-buffered when it is not a terminal (`recv --follow | jq`).
 * Exit codes: 0 ok, 1 server error, 2 usage error, 3 cannot connect.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* The digits of a number macro as a string literal, for the help texts. */
#define HELP_NUM(n) HELP_NUM_(n)
#define HELP_NUM_(n) #n

static int ping(cli_t *cli);
static int help(cli_t *cli);
static int completion(cli_t *cli);

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
     "  queue rewind NAME --time MS|--ago S|--seq N   replay retained messages\n"
     "  queue peek NAME [--max N]    look at ready messages without receiving them\n"
     "  queue redrive DLQ [TO]       move dead letters back to their queues\n"},
    {"send", cmd_messages_send, false,
     "  send QUEUE [BODY|-]          send one message (- or no body: stdin)\n"},
    {"recv", cmd_messages_recv, false, "  recv QUEUE                   receive messages\n"},
    {"receive", cmd_messages_recv, false, NULL},
    {"delete", cmd_messages_delete, false,
     "  delete QUEUE RECEIPT...      delete received messages\n"},
    {"change-visibility", cmd_messages_change_visibility, false,
     "  change-visibility QUEUE RECEIPT SECONDS   extend or end a message's lock\n"},
    {"topic", cmd_topic, true,
     "  topic create|list|get|set|delete|peek ...   manage topics\n"},
    {"publish", cmd_topic_publish, false,
     "  publish TOPIC [BODY|-]       publish one message (--tag, --key, --attr)\n"},
    {"sub", cmd_topic_sub, true,
     "  sub create|set|list|get|delete|rewind TOPIC ...   manage subscriptions\n"},
    {"tail", cmd_topic_tail, false,
     "  tail TOPIC --sub NAME        print pushed messages as they arrive (acks them)\n"},
    {"cluster", cmd_cluster, true,
     "  cluster status|add|remove|transfer ...   raft membership and leadership\n"},
    {"script", cmd_script, true,
     "  script load|get|list|delete|test ...   Lua filters and hooks\n"},
    {"block", cmd_script_block, true, "  block list|delete ...        blocks made by hooks\n"},
    {"user", cmd_user, true, "  user add|del|list|grant|revoke ...   named identities and grants\n"},
    {"connections", cmd_conn_connections, false,
     "  connections                  the leader's client connections\n"},
    {"consumers", cmd_conn_consumers, false,
     "  consumers [--queue Q|--topic T]   waiting receives and push consumers\n"},
    {"context", cmd_context, true,
     "  context add|use|list|show|del ...   saved servers and tokens (like nats context)\n"},
    {"help", help, false, "  help [COMMAND]               this overview, or a command's help\n"},
    {"completion", completion, false,
     "  completion bash              a bash completion script (source it)\n"},
};

static const char usage_head[] =
    "usage: mqhub [--server HOST[:PORT]] [--token T] [--tls --ca FILE] [--context NAME]\n"
    "             [--json] COMMAND ...\n"
    "\n"
    "commands:\n";

static const char usage_tail[] =
    "\n"
    "common options:\n"
    "  --server HOST[:PORT]\n"
    "                      hub address (env MQHUB_SERVER, default " MQHUB_DEFAULT_TCP_ADDRESS
    ";\n                      a HOST alone gets port 6200)\n"
    "  --token TOKEN       hello token (env MQHUB_TOKEN)\n"
    "  --token-file FILE   the token is the first line of FILE\n"
    "  --context NAME      a saved context (env MQHUB_CONTEXT; default: the selected\n"
    "                      one); flags and env variables override its fields\n"
    "  --tls               connect with TLS (implied by --ca and --cert)\n"
    "  --ca FILE           CA certificate(s) that sign the server's (env MQHUB_CA;\n"
    "                      default: the system's trusted CAs)\n"
    "  --cert FILE         client certificate, when the server asks (env MQHUB_CERT)\n"
    "  --key-file FILE     its private key (env MQHUB_KEY; default: in --cert's file)\n"
    "  --timeout MS        per request (default 10000)\n"
    "  --json              one JSON document per result, for scripts\n"
    "  --help              this text; `mqhub help COMMAND` (or COMMAND --help) for one\n"
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
     "usage: mqhub queue create|list|get|set|delete|purge|rewind|peek|redrive ...\n"
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
    {"queue peek",
     "usage: mqhub queue peek NAME [--max N] [--from SEQ]\n"
     "  Shows up to N (1-" HELP_NUM(MQHUB_RECEIVE_MAX) ", default 10) ready messages in seq order\n"
     "  with their attrs, tags and body, without locking them or counting a receive.\n"
     "  Needs receive on the queue. A line names the --from to go on with.\n"},
    {"queue redrive",
     "usage: mqhub queue redrive DLQ [TO] [--max N]\n"
     "  Moves the ready messages of dead-letter queue DLQ back to the queues they\n"
     "  were dead-lettered from (or all of them to TO), in order, receive count 0;\n"
     "  one replicated command per N messages (1-10000, default 1000), with a\n"
     "  progress line. Messages whose queue is gone stay (counted). Needs manage\n"
     "  on DLQ (and send on TO).\n"},
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
    {"change-visibility",
     "usage: mqhub change-visibility QUEUE RECEIPT SECONDS\n"
     "  Keeps a received message locked for SECONDS more (0-"
     HELP_NUM(MQHUB_VISIBILITY_TIMEOUT_MAX) ") from now; 0 makes it\n"
     "  visible again at once. A receipt the message no longer holds (its lock\n"
     "  expired, it was received again) is INVALID_RECEIPT. Needs receive on QUEUE.\n"},
    {"topic",
     "usage: mqhub topic create|list|get|set|delete|peek ...\n"
     "  topic create NAME [--max-msg-size B] [--retention S] [--hook SCRIPT]\n"
     "  topic list [--prefix P] [--offset N] [--limit N]\n"
     "  topic get NAME            attributes, statistics, subscriptions\n"
     "  topic set NAME [--max-msg-size B] [--retention S] [--hook SCRIPT]\n"
     "                            (or key=value: hook=SCRIPT, retention=S; hook= detaches)\n"
     "  topic delete NAME         with its subscriptions and retained messages\n"
     "  topic peek TOPIC [SUB] [--max N] [--from SEQ]   retained (or SUB's pending)\n"
     "                            messages, nothing delivered or acked\n"},
    {"topic peek",
     "usage: mqhub topic peek TOPIC [SUB] [--max N] [--from SEQ]\n"
     "  Shows up to N (1-" HELP_NUM(MQHUB_RECEIVE_MAX) ", default 10) retained messages of TOPIC, or with\n"
     "  SUB the pending messages of that push subscription, in seq order with\n"
     "  tags, key, attrs and body, delivering and acknowledging none. Needs\n"
     "  subscribe on the topic. A line names the --from to go on with.\n"},
    {"publish",
     "usage: mqhub publish TOPIC [BODY|-] [options]\n"
     "  --tag T            message tag (repeatable, at most " HELP_NUM(MQHUB_TAGS_MAX) ")\n"
     "  --key K            routing key, dot-separated words (payment.card.eu)\n"
     "  --attr KEY=VALUE   message attribute (repeatable)\n"},
    {"sub",
     "usage: mqhub sub create|set|list|get|delete|rewind TOPIC ...\n"
     "  sub create TOPIC NAME (--queue Q | --push | --http URL) [options]\n"
     "    --format json|simplified  the body an http endpoint gets (default json)\n"
     "    --filter-tag T       match messages carrying tag T (repeatable)\n"
     "    --binding K          routing-key binding, * one word, # any (repeatable)\n"
     "    --filter-script S    a loaded filter script\n"
     "    --retry backoff|exponential  --max-attempts N  --interval-ms N\n"
     "    --max-interval-ms N  exponential cap    --dlq QUEUE  dead letters (push)\n"
     "    --from latest|earliest|MS   where a new subscription starts\n"
     "  sub set TOPIC NAME [options]  change filters, retry, --dlq, --http URL in\n"
     "    place (pending messages stay); --clear-filters drops tags and bindings\n"
     "    first, --filter-script '' and --dlq '' remove them\n"
     "  sub list TOPIC\n"
     "  sub get TOPIC NAME        endpoint, filters, retry, statistics\n"
     "  sub delete TOPIC NAME\n"
     "  sub rewind TOPIC NAME (--time MS | --ago S | --seq N)\n"},
    {"cluster",
     "usage: mqhub cluster status [digest] | add ID RAFT_ADDRESS [CLIENT_ADDRESS]\n"
     "                     [--client ADDR] [--http ADDR] | remove ID | transfer [ID]\n"
     "  status    the view of the node --server names (any node answers): leader,\n"
     "            term, commit index, members with role and match index (known\n"
     "            on the leader); `digest` adds the state's SHA-256 (slow when large)\n"
     "  add       make the new node ID (started with node.join = true) a voter;\n"
     "            --client (or the third argument): its client address, which\n"
     "            NOT_LEADER replies name; --http: its dashboard address, shown by\n"
     "            status and the dashboard\n"
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
     "  VERB: send receive publish subscribe manage script admin monitor; PATTERN: *,\n"
     "  a name or a prefix and * (payments*). Needs admin on * (or the root --token).\n"},
    {"connections",
     "usage: mqhub connections [--json]\n"
     "  The leader's client sessions: transport, peer, identity, age, requests,\n"
     "  bytes in and out, parked receives and push subscriptions (* marks this\n"
     "  one). Needs monitor or admin on *.\n"},
    {"consumers",
     "usage: mqhub consumers [--queue Q | --topic T] [--json]\n"
     "  The leader's consumers: sessions with receives waiting on a queue, and\n"
     "  push consumers with their free and held credit. Needs monitor or admin on *.\n"},
    {"tail",
     "usage: mqhub tail TOPIC (--sub NAME | --ephemeral) [--credit N] [--json]\n"
     "  Subscribes to the push subscription NAME, prints each message as it\n"
     "  arrives, acknowledges it (which frees its credit slot). --credit: how\n"
     "  many unacknowledged messages may be in flight (default 64). Ctrl-C\n"
     "  unsubscribes and exits 0. --ephemeral instead of --sub: a subscription\n"
     "  of new messages made for this run, deleted by the hub when the CLI exits.\n"},
    {"context",
     "usage: mqhub context add|use|list|show|del ...\n"
     "  context add NAME --server HOST[:PORT] [--token T | --token-file F] [--tls]\n"
     "              [--ca F] [--cert F --key-file F]   save (or replace) a context;\n"
     "                             the first one saved is selected\n"
     "  context use NAME           select it: commands use it without --context\n"
     "  context list               the contexts (* the selected one), never tokens\n"
     "  context show [NAME]        the selected context (or NAME), field by field\n"
     "  context del NAME           forget it\n"
     "  Kept in $XDG_CONFIG_HOME/mqhub/contexts.json (~/.config/mqhub/...), mode\n"
     "  0600; a file others may read that holds a token is refused. Each option\n"
     "  comes from its flag, else its env variable (MQHUB_SERVER, MQHUB_TOKEN, ...),\n"
     "  else the context (--context NAME, $MQHUB_CONTEXT, the selected one).\n"},
    {"help", "usage: mqhub help [COMMAND [SUBCOMMAND]]\n  The help of a command (as COMMAND --help).\n"},
    {"completion",
     "usage: mqhub completion bash\n"
     "  Prints a bash completion script for the commands, subcommands and options;\n"
     "  installed as share/bash-completion/completions/mqhub.\n"},
};

static void usage_overview(FILE *f)
{
    fputs(usage_head, f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].summary)
            fputs(commands[i].summary, f);
    fputs(usage_tail, f);
}

/* One example per help text, printed under it (`mqhub help CMD`). */
static const struct {
    const char *cmd, *example;
} examples[] = {
    {"ping", "mqhub --server 10.0.0.5 ping"},
    {"queue", "mqhub queue create orders --visibility-timeout 60"},
    {"queue create", "mqhub queue create orders --visibility-timeout 60 --dead-letter orders-dlq:5"},
    {"queue list", "mqhub queue list --prefix orders"},
    {"queue get", "mqhub queue get orders"},
    {"queue set", "mqhub queue set orders --polling-wait 20"},
    {"queue delete", "mqhub queue delete orders"},
    {"queue purge", "mqhub queue purge orders"},
    {"queue rewind", "mqhub queue rewind orders --ago 3600"},
    {"send", "mqhub send orders '{\"id\": 7}' --attr user=42"},
    {"recv", "mqhub recv orders --follow --json --delete | jq .body"},
    {"delete", "mqhub delete orders 1.7.1"},
    {"topic", "mqhub topic create payments --retention 86400"},
    {"publish", "mqhub publish payments '{\"amount\": 42}' --tag card --key pay.card.eu"},
    {"sub", "mqhub sub create payments risk --queue risk --filter-tag card"},
    {"tail", "mqhub tail payments --sub notify --json | jq .body"},
    {"cluster", "mqhub --server 127.0.0.1:6200,127.0.0.1:6201 cluster status"},
    {"script", "mqhub script load merchant_spike scripts/risk/merchant_spike.lua"},
    {"block", "mqhub block delete merchant 17"},
    {"user", "mqhub user add prometheus --grant monitor:*"},
    {"queue peek", "mqhub queue peek orders-dlq --max 5 --json | jq .msgs[].attrs"},
    {"queue redrive", "mqhub queue redrive orders-dlq"},
    {"change-visibility", "mqhub change-visibility orders 1.7.1 300"},
    {"topic peek", "mqhub topic peek payments notify --max 5"},
    {"connections", "mqhub connections --json | jq '.connections[] | .peer'"},
    {"consumers", "mqhub consumers --queue orders"},
    {"completion", "source <(mqhub completion bash)"},
    {"context", "mqhub context add prod --server 10.0.0.5 --token-file ~/.mqhub-prod && "
                "mqhub context use prod"},
};

static const char *example_of(const char *cmd)
{
    for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++)
        if (!strcmp(cmd, examples[i].cmd))
            return examples[i].example;
    return NULL;
}

void cli_usage(FILE *f, const char *cmd)
{
    for (size_t i = 0; cmd && i < sizeof helps / sizeof helps[0]; i++) {
        if (!strcmp(cmd, helps[i].cmd)) {
            const char *ex = example_of(cmd);
            fputs(helps[i].text, f);
            if (ex)
                fprintf(f, "example:\n  %s\n", ex);
            return;
        }
    }
    usage_overview(f);
}

/* Edit distance of @a and @b (each cut to 31 bytes): insertions,
 * deletions, substitutions and swaps of neighbours ("lsit" is 1 from "list"). */
static unsigned edit_distance(const char *a, const char *b)
{
    unsigned d[32][32], m = (unsigned)strnlen(a, 31), n = (unsigned)strnlen(b, 31);
    for (unsigned i = 0; i <= m; i++)
        d[i][0] = i;
    for (unsigned j = 0; j <= n; j++)
        d[0][j] = j;
    for (unsigned i = 1; i <= m; i++) {
        for (unsigned j = 1; j <= n; j++) {
            unsigned best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            best = d[i - 1][j] + 1 < best ? d[i - 1][j] + 1 : best;
            best = d[i][j - 1] + 1 < best ? d[i][j - 1] + 1 : best;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[m][n];
}

/* The known word closest to @word (within 2 edits, and less than its
 * length), or NULL. */
static const char *closest(const char *word, const char *const *words, size_t n)
{
    const char *best = NULL;
    unsigned best_d = 3;
    for (size_t i = 0; i < n; i++) {
        unsigned d = edit_distance(word, words[i]);
        if (d < best_d && d < strlen(word)) {
            best = words[i];
            best_d = d;
        }
    }
    return best;
}

/* The subcommand words of @group, from its help keys ("queue create") and
 * its summary ("  topic create|list|get ..."); at most @max, in @buf. */
static size_t subcommand_words(const char *group, char (*buf)[32], size_t max)
{
    size_t n = 0, glen = strlen(group);
    for (size_t i = 0; i < sizeof helps / sizeof helps[0] && n < max; i++)
        if (!strncmp(helps[i].cmd, group, glen) && helps[i].cmd[glen] == ' ')
            snprintf(buf[n++], 32, "%s", helps[i].cmd + glen + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const char *line = commands[i].summary;
        if (strcmp(commands[i].name, group) != 0)
            continue;
        for (; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
            const char *p = line + strspn(line, " ");
            if (strncmp(p, group, glen) != 0 || p[glen] != ' ')
                continue; /* a line that does not start with the command */
            for (p += glen + 1;; p++) { /* "create|list|get ..." */
                size_t len = strcspn(p, " |\n"), k = 0;
                while (k < n && (strlen(buf[k]) != len || strncmp(buf[k], p, len) != 0))
                    k++; /* already listed by a help key */
                if (len > 0 && len < 32 && k == n && n < max)
                    snprintf(buf[n++], 32, "%.*s", (int)len, p);
                p += len;
                if (*p != '|')
                    break;
            }
        }
    }
    return n;
}

int cli_unknown_subcommand(const char *group, const char *word)
{
    char words[64][32];
    const char *ptrs[64];
    size_t n = subcommand_words(group, words, 64);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = words[i];
    const char *near = closest(word, ptrs, n);
    if (near)
        return cli_usage_error(group, "unknown %s command \"%s\"; did you mean `mqhub %s %s`?",
                               group, word, group, near);
    return cli_usage_error(group, "unknown %s command \"%s\"", group, word);
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

/* A TCP connection to @host:@port within @timeout_ms (non-blocking
 * connect, so an unreachable host costs no more); -1 on failure. */
static int probe_connect(const char *host, const char *port, int timeout_ms)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int fd = -1, soerr = 0;
    socklen_t len = sizeof soerr;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (errno != EINPROGRESS || poll(&pfd, 1, timeout_ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

/* What answers on the port of @server (its first address) when it is not an
 * mqhub client port: an HTTP server (the websocket transport's dashboard
 * port) is named, into @buf; NULL when it answers something else, nothing
 * within a second, or cannot be reached. */
static const char *port_probe(const char *server, char *buf, size_t size)
{
    static const char req[] = "GET /healthz HTTP/1.0\r\n\r\n";
    size_t len = strcspn(server, ",");
    const char *colon = memrchr(server, ':', len);
    char host[256], port[16], answer[8] = "";
    if (!colon || (size_t)(colon - server) >= sizeof host ||
        len - (size_t)(colon + 1 - server) >= sizeof port)
        return NULL;
    snprintf(host, sizeof host, "%.*s", (int)(colon - server), server);
    snprintf(port, sizeof port, "%.*s", (int)(len - (size_t)(colon + 1 - server)), colon + 1);
    if (host[0] == '[') { /* [v6]:port */
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    int fd = probe_connect(host, port, 1000);
    if (fd < 0)
        return NULL;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (write(fd, req, sizeof req - 1) != (ssize_t)sizeof req - 1 || poll(&pfd, 1, 1000) != 1 ||
        read(fd, answer, sizeof answer - 1) <= 0)
        answer[0] = '\0';
    close(fd);
    if (strncmp(answer, "HTTP/", 5) != 0)
        return NULL;
    snprintf(buf, size, "%s is an HTTP port (mqhubd's dashboard, /metrics and /healthz); "
                        "clients use the tcp transport's port, %s by default: --server %.*s%s",
             port, strrchr(MQHUB_DEFAULT_TCP_ADDRESS, ':') + 1, (int)(colon - server), server,
             strrchr(MQHUB_DEFAULT_TCP_ADDRESS, ':'));
    return buf;
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
        char probe[512];
        const char *hint = tls_hint(cli, err);
        if (!strstr(err, "refused"))
            hint = port_probe(cli->server, probe, sizeof probe) ?: hint;
        if (!hint && cli->server_from_context) {
            snprintf(probe, sizeof probe, "the address is context %s's: is mqhubd running "
                     "there? `mqhub context add %s --server HOST:PORT` changes it, --server "
                     "overrides it", cli->context, cli->context);
            hint = probe;
        }
        fprintf(stderr, "mqhub: cannot connect to %s: %s\n%s\n", cli->server, err,
                hint ? hint : "is mqhubd running? start it with `make run` "
                              "(or set --server / MQHUB_SERVER)");
        return CLI_CONNECT;
    }
    fprintf(stderr, "%s: %s\n", mqhub_err_name(rc), err);
    if (rc == MQHUB_EUNAUTHORIZED && strstr(err, "hello refused"))
        fprintf(stderr, "check the token (--token, --token-file, MQHUB_TOKEN or the context's); "
                        "a user created moments ago may not have reached %s yet (a follower "
                        "knows it once it applied the user's creation): retry in a moment, "
                        "or ask the leader\n", cli->server);
    return CLI_SERVER;
}

/* A server sentence with the protocol op it names ("create it with
 * queue.create") replaced by the CLI command that does it ("create it with:
 * mqhub queue create NAME", NAME the first 'quoted' name of the sentence). */
static const char *cli_words(const char *msg, char *buf, size_t size)
{
    static const struct {
        const char *says, *cmd, *before, *after; /* cmd before NAME after */
    } ops[] = {
        {"create it with queue.create", "create it with: mqhub queue create", "", ""},
        {"create it with topic.create", "create it with: mqhub topic create", "", ""},
        {"create it with subscription.create", "create it with: mqhub sub create", "TOPIC ",
         " (--queue Q | --push)"},
        {"load it with script.load", "load it with: mqhub script load", "", " FILE"},
        {"use queue.set", "use `mqhub queue set", "", "`"},
        {"use topic.set", "use `mqhub topic set", "", "`"},
        {"use subscription.set", "use `mqhub sub set", "TOPIC ", "`"},
    };
    char name[128] = "NAME", topic[128] = "";
    const char *q = strchr(msg, '\''), *end = q ? strchr(q + 1, '\'') : NULL;
    if (end) {
        snprintf(name, sizeof name, "%.*s", (int)(end - q - 1), q + 1);
        q = strchr(end + 1, '\'');
        end = q ? strchr(q + 1, '\'') : NULL;
        if (end) /* "subscription 'S' of topic 'T'" */
            snprintf(topic, sizeof topic, "%.*s", (int)(end - q - 1), q + 1);
    }
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const char *at = strstr(msg, ops[i].says);
        if (at == NULL)
            continue;
        bool has_topic = ops[i].before[0] && topic[0];
        snprintf(buf, size, "%.*s%s %s%s%s%s%s", (int)(at - msg), msg, ops[i].cmd,
                 has_topic ? topic : ops[i].before, has_topic ? " " : "", name, ops[i].after,
                 at + strlen(ops[i].says));
        return buf;
    }
    return msg;
}

int cli_fail(cli_t *cli, int rc, const char *what)
{
    const char *msg = cli->client ? mqhub_client_errmsg(cli->client) : "";
    char probe[512], words[1024];
    /* bytes that are no mqhub frame ("HTTP/1.1 400" read as a length), or
     * silence: ask the port what it is */
    if ((rc == MQHUB_ECONN && strstr(msg, "oversized frame")) || rc == MQHUB_ETIMEOUT) {
        const char *hint = port_probe(cli->server, probe, sizeof probe);
        if (hint) {
            fprintf(stderr, "mqhub: %s: %s does not answer as an mqhub client port: %s\n%s\n",
                    what, cli->server, msg, hint);
            return CLI_CONNECT;
        }
    }
    if (rc == MQHUB_ECONN) {
        const char *hint = tls_hint(cli, msg);
        fprintf(stderr, "mqhub: %s: lost the connection to %s: %s\n%s%s", what, cli->server,
                msg, hint ? hint : "", hint ? "\n" : "");
        return CLI_CONNECT;
    }
    fprintf(stderr, "%s: %s\n", mqhub_err_name(rc),
            msg[0] ? cli_words(msg, words, sizeof words) : mqhub_strerror(rc));
    return CLI_SERVER;
}

enum {
    OPT_SERVER = 256, OPT_TOKEN, OPT_TIMEOUT, OPT_JSON, OPT_HELP, OPT_PREFIX, OPT_OFFSET,
    OPT_LIMIT, OPT_TIME, OPT_SEQ, OPT_AGO, OPT_ATTR, OPT_DELAY, OPT_GROUP, OPT_DEDUP,
    OPT_BATCH, OPT_MAX, OPT_WAIT, OPT_VISIBILITY, OPT_DELETE, OPT_FOLLOW, OPT_ORDERED,
    OPT_TAG, OPT_KEY, OPT_SUB, OPT_EP_QUEUE, OPT_PUSH, OPT_FILTER_TAG, OPT_BINDING,
    OPT_FILTER_SCRIPT, OPT_RETRY, OPT_MAX_ATTEMPTS, OPT_INTERVAL, OPT_MAX_INTERVAL, OPT_DLQ,
    OPT_FROM, OPT_CREDIT, OPT_TOPIC, OPT_SINCE, OPT_VERSION, OPT_GRANT, OPT_USER_TOKEN,
    OPT_TLS, OPT_CA, OPT_CERT, OPT_KEY_FILE, OPT_HTTP, OPT_FORMAT, OPT_CLEAR_FILTERS,
    OPT_EPHEMERAL, OPT_CONTEXT, OPT_TOKEN_FILE, OPT_CLIENT,
    OPT_QATTR, /* + index into qattr_names */
};

static const char *const qattr_names[] = {
    "visibility_timeout", "polling_wait", "max_msg_size", "retention",
    "rewind_window", "max_backlog", "dead_letter", "hook",
};

static const struct option options[] = {
    {"server", required_argument, NULL, OPT_SERVER},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"context", required_argument, NULL, OPT_CONTEXT},
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
    {"ephemeral", no_argument, NULL, OPT_EPHEMERAL},
    {"http", required_argument, NULL, OPT_HTTP},
    {"client", required_argument, NULL, OPT_CLIENT},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"clear-filters", no_argument, NULL, OPT_CLEAR_FILTERS},
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
    case OPT_TOKEN_FILE: cli->token_file = arg; return 0;
    case OPT_CONTEXT: cli->context = arg; return 0;
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
    case OPT_EPHEMERAL: cli->ephemeral = true; return 0;
    case OPT_HTTP: cli->http = arg; return 0;
    case OPT_CLIENT: cli->client_address = arg; return 0;
    case OPT_FORMAT: cli->http_format = arg; return 0;
    case OPT_CLEAR_FILTERS: cli->clear_filters = true; return 0;
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

/* An unknown option (with the closest known one) or one missing its value. */
static int bad_option(const char *arg)
{
    const char *names[sizeof options / sizeof options[0]];
    char word[32];
    size_t n = 0;
    for (const struct option *o = options; o->name; o++)
        names[n++] = o->name;
    snprintf(word, sizeof word, "%.*s", (int)strcspn(arg + 2, "="), arg + 2);
    const char *near = strncmp(arg, "--", 2) == 0 ? closest(word, names, n) : NULL;
    if (near && strcmp(near, word) != 0)
        fprintf(stderr, "mqhub: unknown option %s; did you mean --%s?\n", arg, near);
    else
        fprintf(stderr, "mqhub: unknown option or missing value: %s\n", arg);
    return CLI_USAGE;
}

static int parse(cli_t *cli, int argc, char **argv)
{
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            return bad_option(argv[optind - 1]);
        int rc = one_option(cli, opt == 'h' ? OPT_HELP : opt, optarg);
        if (rc != 0)
            return rc;
    }
    cli->args = argv + optind;
    cli->n_args = argc - optind;
    return 0;
}

/* How one HOST[:PORT] of --server is written: 'p' with a port ("h:1",
 * "[::1]:1"), 'h' a host without one ("h", "[::1]"), '6' a bare IPv6
 * address ("::1", to be bracketed). */
static char address_form(const char *p, size_t len)
{
    const char *close = memchr(p, ']', len);
    if (close)
        return close + 1 < p + len && close[1] == ':' ? 'p' : 'h';
    const char *colon = memchr(p, ':', len);
    if (!colon)
        return 'h';
    return memchr(colon + 1, ':', len - (size_t)(colon + 1 - p)) ? '6' : 'p';
}

/* --server with the client port (6200) added to every HOST of a
 * HOST[:PORT],... list that has none; into @buf, or @server itself when it
 * does not fit. */
static const char *server_with_ports(const char *server, char *buf, size_t size)
{
    const char *port = strrchr(MQHUB_DEFAULT_TCP_ADDRESS, ':');
    size_t off = 0;
    for (const char *p = server; off < size;) {
        size_t len = strcspn(p, ",");
        char form = address_form(p, len);
        off += (size_t)snprintf(buf + off, size - off, form == '6' ? "[%.*s]%s" : "%.*s%s",
                                (int)len, p, form == 'p' ? "" : port);
        if (p[len] == '\0')
            return off < size ? buf : server;
        off += (size_t)snprintf(buf + off, off < size ? size - off : 0, ",");
        p += len + 1;
    }
    return server;
}

/* The defaults of the options that are numbers; the connection options are
 * filled after parsing (cmd_context_resolve()), when the command needs them. */
static void defaults(cli_t *cli)
{
    cli->delay = cli->max = cli->wait = cli->visibility = -1;
    cli->rewind_time = cli->rewind_seq = cli->rewind_ago = -1;
    cli->credit = -1;
}

/* The help key of the command words: "queue create" when helps has it,
 * else the command ("send", "topic"); NULL for none. */
static const char *help_key(char **args, int n, char *buf, size_t size)
{
    if (n == 0)
        return NULL;
    if (n > 1) {
        snprintf(buf, size, "%s %s", args[0], args[1]);
        for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++)
            if (!strcmp(buf, helps[i].cmd))
                return buf;
    }
    return args[0];
}

static const char *command_names[sizeof commands / sizeof commands[0]];

/* "unknown command", with the closest command when one is near. */
static int unknown_command(const char *name)
{
    size_t n = sizeof commands / sizeof commands[0];
    for (size_t i = 0; i < n; i++)
        command_names[i] = commands[i].name;
    const char *near = closest(name, command_names, n);
    if (near)
        fprintf(stderr, "mqhub: unknown command \"%s\"; did you mean `mqhub %s`?\n", name, near);
    else
        fprintf(stderr, "mqhub: unknown command \"%s\"; see `mqhub --help`\n", name);
    return CLI_USAGE;
}

static bool is_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name))
            return true;
    return false;
}

/* `mqhub help [COMMAND [SUBCOMMAND]]`: what --help prints, on stdout. */
static int help(cli_t *cli)
{
    char key[96];
    if (cli->n_args > 0 && !is_command(cli->args[0]))
        return unknown_command(cli->args[0]);
    cli_usage(stdout, help_key(cli->args, cli->n_args, key, sizeof key));
    return CLI_OK;
}

/* `mqhub completion bash`: a completion function generated from the command
 * table, the subcommand words (subcommand_words()) and the options. */
static int completion(cli_t *cli)
{
    char words[64][32];
    if (cli->n_args != 1 || strcmp(cli->args[0], "bash") != 0)
        return cli_usage_error("completion", "give the shell: bash");
    printf("# bash completion for mqhub, generated by `mqhub completion bash`\n"
           "_mqhub() {\n"
           "    local cur=${COMP_WORDS[COMP_CWORD]} cmd= at=0 i\n"
           "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
           "        case ${COMP_WORDS[i]} in\n"
           "        ");
    const char *sep = "";
    for (const struct option *o = options; o->name; o++)
        if (o->has_arg == required_argument) {
            printf("%s--%s", sep, o->name);
            sep = "|";
        }
    printf(") ((i++)) ;; # the option's value\n"
           "        -*) ;;\n"
           "        *) cmd=${COMP_WORDS[i]}; at=$i; break ;;\n"
           "        esac\n"
           "    done\n"
           "    if [[ $cur == -* ]]; then\n"
           "        COMPREPLY=($(compgen -W \"");
    for (const struct option *o = options; o->name; o++)
        printf("--%s ", o->name);
    printf("\" -- \"$cur\"))\n"
           "        return\n"
           "    fi\n"
           "    case $cmd in\n"
           "    '') COMPREPLY=($(compgen -W \"");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("%s ", commands[i].name);
    printf("\" -- \"$cur\")) ;;\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (!commands[i].group)
            continue;
        size_t n = subcommand_words(commands[i].name, words, 64);
        printf("    %s) ((at + 1 == COMP_CWORD)) && COMPREPLY=($(compgen -W \"", commands[i].name);
        for (size_t k = 0; k < n; k++)
            printf("%s ", words[k]);
        printf("\" -- \"$cur\")) ;;\n");
    }
    printf("    help) COMPREPLY=($(compgen -W \"");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("%s ", commands[i].name);
    printf("\" -- \"$cur\")) ;;\n"
           "    completion) COMPREPLY=($(compgen -W bash -- \"$cur\")) ;;\n"
           "    esac\n"
           "}\n"
           "complete -o default -F _mqhub mqhub\n");
    return CLI_OK;
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
 * goes to cli->subcommand; a group without one is not a command). Commands
 * that talk to a hub get the connection options filled in first (flags, env,
 * context, defaults) and --server's missing ports; `context`, `help` and
 * `completion` see the flags as given. */
static int run(cli_t *cli)
{
    static char server[1024];
    const char *name = shift(cli);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const struct command *c = &commands[i];
        if (strcmp(name, c->name) != 0 || (c->group && cli->n_args == 0))
            continue;
        if (c->group)
            cli->subcommand = shift(cli);
        if (c->handler != cmd_context && c->handler != help && c->handler != completion) {
            int rc = cmd_context_resolve(cli);
            if (rc != 0)
                return rc;
            cli->server = server_with_ports(cli->server, server, sizeof server);
        }
        return c->handler(cli);
    }
    return unknown_command(name);
}

int main(int argc, char **argv)
{
    cli_t cli = {0};
    char key[96];

    if (!isatty(STDOUT_FILENO))
        setvbuf(stdout, NULL, _IOLBF, 0); /* `recv --follow | jq` sees each line */
    defaults(&cli);
    int rc = parse(&cli, argc, argv);
    if (rc != 0) {
        fprintf(stderr, "see `mqhub --help`\n");
        return rc;
    }
    if (cli.help) {
        cli_usage(stdout, help_key(cli.args, cli.n_args, key, sizeof key));
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
