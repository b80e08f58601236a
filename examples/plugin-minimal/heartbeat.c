/* heartbeat.c: a minimal mqhub plugin, built out of tree against the
 * installed header <mqhub/plugin.h>. Every `interval` seconds (config, default
 * 10) it logs a line and bumps the metric mqhub_plugin_heartbeat_beats.
 *
 * The three things every plugin does: export mqhub_plugin_entry (the only
 * visible symbol), add its handles to the host's loop in init, close them in
 * stop and free its state in fini. */
#include <stdio.h>
#include <stdlib.h>

#include <mqhub/plugin.h>

typedef struct heartbeat {
    const mqhub_host_api_t *api;
    mqhub_host_t *host;
    uv_timer_t timer;
    unsigned beats;
} heartbeat_t;

static void on_beat(uv_timer_t *t)
{
    heartbeat_t *hb = t->data;

    hb->beats++;
    hb->api->metric_add(hb->host, "beats", 1);
    hb->api->log(hb->host, MQHUB_LOG_INFO, "beat %u", hb->beats);
}

static int hb_init(const mqhub_host_api_t *api, mqhub_host_t *host, void **state,
                   char *errmsg, size_t errlen)
{
    int64_t interval;
    heartbeat_t *hb;

    /* A value that is not an integer was logged by the host: refuse it. */
    if (api->config_int(host, "interval", 10, &interval) != 0) {
        snprintf(errmsg, errlen, "interval must be an integer");
        return -1;
    }
    if (interval < 1) {
        snprintf(errmsg, errlen, "interval must be a positive number of seconds");
        return -1;
    }
    hb = calloc(1, sizeof *hb);
    if (hb == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    hb->api = api;
    hb->host = host;
    uv_timer_init(api->loop(host), &hb->timer);
    hb->timer.data = hb;
    uv_timer_start(&hb->timer, on_beat, (uint64_t)interval * 1000, (uint64_t)interval * 1000);
    api->log(host, MQHUB_LOG_INFO, "heartbeat every %lld s", (long long)interval);
    *state = hb;
    return 0;
}

static void hb_stop(void *state)
{
    heartbeat_t *hb = state;
    uv_close((uv_handle_t *)&hb->timer, NULL);
}

static void hb_fini(void *state)
{
    free(state);
}

static const mqhub_plugin_t heartbeat_plugin = {
    .abi_version = MQHUB_PLUGIN_ABI,
    .size = sizeof(mqhub_plugin_t),
    .name = "heartbeat",
    .init = hb_init,
    .stop = hb_stop,
    .fini = hb_fini,
};

MQHUB_PLUGIN_EXPORT const mqhub_plugin_t *mqhub_plugin_entry(void)
{
    return &heartbeat_plugin;
}
