/* mqhubd: the mqhub daemon. Loads the configuration, locks the data
 * directory (one daemon per directory), checks raft's files
 * (core/raft/logcheck.c), starts the hub on one libuv loop and runs it until
 * SIGTERM or SIGINT, then stops gracefully. `--repair` drops what is damaged
 * in raft's files instead, says what, and exits (docs/operations.md
 * "Damaged data").
 *
 * Exit codes: 0 after a graceful stop or a repair, 64 (EX_USAGE) for bad
 * arguments, 65 (EX_DATAERR) when raft's files are damaged (start refused:
 * run --repair), 78 (EX_CONFIG) when the configuration or a plugin is
 * refused or another process uses the data directory, 1 when the hub cannot
 * start for another reason.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dirlock.h"
#include "mqhub/protocol.h"
#include "mqhub/version.h"
#include "node/node.h"

#define EXIT_USAGE 64
#define EXIT_DATAERR 65
#define EXIT_CONFIG 78

typedef struct daemon {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    hub_t *hub;
    bool stopping;
} daemon_t;

/* One malloc arena for every thread (unless MALLOC_ARENA_MAX says
 * otherwise). Snapshot dumps run in libuv's thread pool and load Kyoto
 * Cabinet leaves there, so glibc allocates them in that thread's arena; the
 * loop frees them later, back into an arena only that worker allocates from,
 * and each of the four workers kept the peak of the dumps it ran (35-45 MiB
 * each in the soak, growing with every snapshot). With one arena the loop
 * reuses that memory. docs/architecture.md "Memory". */
static void malloc_policy(void)
{
    if (!getenv("MALLOC_ARENA_MAX"))
        mallopt(M_ARENA_MAX, 1);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mqhubd [--config FILE] [--data DIR] [--repair] [--help] [--version]\n"
            "  --config FILE  Lua configuration (default: a single node, data in\n"
            "                 ./mqhub-data, TCP on " MQHUB_DEFAULT_TCP_ADDRESS ")\n"
            "  --data DIR     data directory (overrides node.data)\n"
            "  --repair       do not start: drop what is damaged in DIR/raft (the\n"
            "                 originals go to DIR/damaged/), print what was dropped,\n"
            "                 exit; then start as usual. Stop the daemon first.\n"
            "Stops gracefully on SIGTERM or SIGINT. Exit status: 65 when the raft log\n"
            "is damaged (see --repair), 78 for a refused configuration or a data\n"
            "directory in use.\n");
}

static void on_stopped(void *arg)
{
    daemon_t *d = arg;

    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    daemon_t *d = sig->data;

    if (d->stopping)
        return;
    d->stopping = true;
    log_info("mqhubd", "signal %d: stopping", signum);
    hub_stop(d->hub, on_stopped, d);
}

/* The address the tcp transport listens on, for the ready line. */
static const char *tcp_listen(config_t *cfg)
{
    for (unsigned i = 0; i < cfg->n_transports; i++) {
        if (strcmp(cfg->transports[i].name, "tcp") == 0) {
            const char *l = config_transport_string(cfg, &cfg->transports[i], "listen");
            return l != NULL ? l : MQHUB_DEFAULT_TCP_ADDRESS;
        }
    }
    return "(no tcp transport)";
}

/* Where raft's files are (hub.c starts the replica there) and where the
 * originals of what a check moves or changes go. */
static void raft_dirs(const config_t *cfg, char *raft, size_t raft_len, char *keep,
                      size_t keep_len)
{
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", gmtime(&now));
    snprintf(raft, raft_len, "%s/raft", cfg->data_dir);
    snprintf(keep, keep_len, "%s/damaged/%s", cfg->data_dir, stamp);
}

static void log_finding(void *arg, bool lost, const char *line)
{
    log_msg(lost ? MQHUB_LOG_ERROR : MQHUB_LOG_WARN, "logcheck", "%s", line);
}

static void print_finding(void *arg, bool lost, const char *line)
{
    printf("%s\n", line);
}

/* Run the check in @mode; 0 when raft may load the directory, else the exit
 * status. */
static int check_raft(const config_t *cfg, logcheck_mode_t mode)
{
    char raft[4200], keep[4300], err[1024];
    bool damaged;

    raft_dirs(cfg, raft, sizeof raft, keep, sizeof keep);
    if (logcheck_run(raft, keep, mode, log_finding, NULL, &damaged, err, sizeof err) != 0) {
        fprintf(stderr, "mqhubd: check %s: %s\n", raft, err);
        return 1;
    }
    if (!damaged)
        return 0;
    fprintf(stderr, "mqhubd: the raft log in %s is damaged (above); not starting, so that "
            "nothing is dropped silently. `mqhubd --repair` drops what the lines above "
            "name (docs/operations.md \"Damaged data\")\n", raft);
    return EXIT_DATAERR;
}

static int repair(const config_t *cfg)
{
    char raft[4200], keep[4300], err[1024];
    bool damaged;

    raft_dirs(cfg, raft, sizeof raft, keep, sizeof keep);
    printf("mqhubd: repairing %s\n", raft);
    if (logcheck_run(raft, keep, LOGCHECK_REPAIR, print_finding, NULL, &damaged, err,
                     sizeof err) != 0) {
        fprintf(stderr, "mqhubd: repair %s: %s\n", raft, err);
        return 1;
    }
    printf("mqhubd: done; start mqhubd as usual\n");
    return 0;
}

/* "ready" only for a single node, which leads at once; a member of a
 * cluster (peers, or node.join) starts waiting for a majority of its voters,
 * as /readyz says too (docs/metrics.md). */
static void log_started(config_t *cfg)
{
    unsigned voters = 1;
    for (unsigned i = 0; i < cfg->n_peers; i++)
        voters += cfg->peers[i].id != cfg->node_id;
    if (voters == 1 && !cfg->join) {
        log_info("mqhubd", "ready: listening on %s, node %llu, data in %s", tcp_listen(cfg),
                 (unsigned long long)cfg->node_id, cfg->data_dir);
        return;
    }
    log_info("mqhubd", "started: listening on %s, node %llu, data in %s; waiting for quorum "
             "(1 of %u voters known up: this node; %u needed)", tcp_listen(cfg),
             (unsigned long long)cfg->node_id, cfg->data_dir, voters, voters / 2 + 1);
}

static int run(config_t *cfg)
{
    daemon_t d = {0};
    char err[1024];
    int rc = check_raft(cfg, LOGCHECK_START);

    if (rc != 0)
        return rc;
    uv_loop_init(&d.loop);
    rc = hub_start(&d.hub, &d.loop, cfg, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "mqhubd: %s\n", err);
        uv_loop_close(&d.loop);
        if (rc == MQHUB_EBAD_REQUEST)
            return EXIT_CONFIG; /* a plugin refused */
        /* raft refuses a damaged closed segment itself: say what and where. */
        rc = check_raft(cfg, LOGCHECK_DIAGNOSE);
        return rc != 0 ? rc : 1;
    }
    uv_signal_init(&d.loop, &d.sigterm);
    uv_signal_init(&d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    log_started(cfg);
    uv_run(&d.loop, UV_RUN_DEFAULT);
    hub_free(d.hub);
    uv_loop_close(&d.loop);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *data = NULL;
    bool repairing = false;
    config_t *cfg;
    char err[1024];
    int rc, lock;

    malloc_policy(); /* before any thread starts */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("mqhubd %s (protocol %d, plugin ABI %d)\n", MQHUB_VERSION_STRING,
                   MQHUB_PROTOCOL_VERSION, MQHUB_PLUGIN_ABI);
            return 0;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            data = argv[++i];
        } else if (strcmp(argv[i], "--repair") == 0) {
            repairing = true;
        } else {
            fprintf(stderr, "mqhubd: unknown or incomplete argument '%s'\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (config_load(&cfg, config_path, err, sizeof err) != 0) {
        fprintf(stderr, "mqhubd: %s\n", err);
        return EXIT_CONFIG;
    }
    if (data != NULL) {
        char *d = strdup(data);
        if (d == NULL)
            return 1;
        free(cfg->data_dir);
        cfg->data_dir = d;
    }
    log_set_level(cfg->log_level);
    /* Before anything in the directory is opened; held until exit. */
    rc = dirlock_take(cfg->data_dir, &lock, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "mqhubd: %s\n", err);
        config_free(cfg);
        return rc == -EWOULDBLOCK ? EXIT_CONFIG : 1;
    }
    signal(SIGPIPE, SIG_IGN);
    rc = repairing ? repair(cfg) : run(cfg);
    config_free(cfg);
    return rc;
}
