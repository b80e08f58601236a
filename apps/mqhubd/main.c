/* mqhubd: the mqhub daemon. Loads the configuration, starts the hub on one
 * libuv loop and runs it until SIGTERM or SIGINT, then stops gracefully.
 *
 * Exit codes: 0 after a graceful stop, 64 (EX_USAGE) for bad arguments,
 * 78 (EX_CONFIG) when the configuration or a plugin is refused, 1 when the
 * hub cannot start for another reason.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqhub/protocol.h"
#include "mqhub/version.h"
#include "node/node.h"

#define EXIT_USAGE 64
#define EXIT_CONFIG 78

typedef struct daemon {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    hub_t *hub;
    bool stopping;
} daemon_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mqhubd [--config FILE] [--data DIR] [--help] [--version]\n"
            "  --config FILE  Lua configuration (default: a single node, data in\n"
            "                 ./mqhub-data, TCP on " MQHUB_DEFAULT_TCP_ADDRESS ")\n"
            "  --data DIR     data directory (overrides node.data)\n"
            "Stops gracefully on SIGTERM or SIGINT.\n");
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

static int run(config_t *cfg)
{
    daemon_t d = {0};
    char err[1024];
    int rc;

    uv_loop_init(&d.loop);
    rc = hub_start(&d.hub, &d.loop, cfg, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "mqhubd: %s\n", err);
        uv_loop_close(&d.loop);
        return rc == MQHUB_EBAD_REQUEST ? EXIT_CONFIG : 1; /* a plugin refused */
    }
    uv_signal_init(&d.loop, &d.sigterm);
    uv_signal_init(&d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    log_info("mqhubd", "ready: listening on %s, node %llu, data in %s", tcp_listen(cfg),
             (unsigned long long)cfg->node_id, cfg->data_dir);
    uv_run(&d.loop, UV_RUN_DEFAULT);
    hub_free(d.hub);
    uv_loop_close(&d.loop);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *data = NULL;
    config_t *cfg;
    char err[1024];
    int rc;

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
    signal(SIGPIPE, SIG_IGN);
    rc = run(cfg);
    config_free(cfg);
    return rc;
}
