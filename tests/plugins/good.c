/* good.c: a well-behaved test plugin. It reads a config value, logs it,
 * counts its inits in a metric and keeps a timer on the loop that it closes
 * in stop(), so the host's shutdown order is exercised. */
#include <stdio.h>
#include <stdlib.h>

#include "mqhub/plugin.h"

typedef struct good {
    uv_timer_t timer;
} good_t;

static void on_tick(uv_timer_t *t)
{
}

static int good_init(const mqhub_host_api_t *api, mqhub_host_t *host, void **state,
                     char *errmsg, size_t errlen)
{
    const char *greeting = api->config_string(host, "greeting");
    good_t *g = calloc(1, sizeof *g);

    if (g == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    uv_timer_init(api->loop(host), &g->timer);
    uv_timer_start(&g->timer, on_tick, 1000, 1000);
    api->metric_add(host, "inits", 1);
    api->log(host, MQHUB_LOG_INFO, "good plugin loaded: %s (max_frame %zu)",
             greeting ? greeting : "no greeting", api->max_frame(host));
    *state = g;
    return 0;
}

static void good_stop(void *state)
{
    good_t *g = state;
    uv_close((uv_handle_t *)&g->timer, NULL);
}

static void good_fini(void *state)
{
    free(state);
}

static const mqhub_plugin_t good_plugin = {
    .abi_version = MQHUB_PLUGIN_ABI,
    .size = sizeof(mqhub_plugin_t),
    .name = "good",
    .init = good_init,
    .stop = good_stop,
    .fini = good_fini,
};

MQHUB_PLUGIN_EXPORT const mqhub_plugin_t *mqhub_plugin_entry(void)
{
    return &good_plugin;
}
