/* plugin.c: loading plugins (dlopen) and the host function table they call.
 *
 * Start with plugin_load(): it resolves the .so path, dlopens it, checks the
 * descriptor returned by mqhub_plugin_entry (ABI version, size) and calls its
 * init() with `host_api`, the one mqhub_host_api_t of this daemon. Each host
 * function is a thin adapter from the plugin's opaque mqhub_host_t (which is
 * the plugin_t itself) to hub.c or config.c. Every refusal names the file
 * and the reason, so an operator knows what to rebuild or fix.
 *
 * Extending the ABI: append a member to mqhub_host_api_t (include/mqhub/
 * plugin.h), add its adapter here and its entry at the end of host_api.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

/* Size of the version-1 plugin descriptor: the smallest we accept. */
#define PLUGIN_V1_SIZE (offsetof(mqhub_plugin_t, fini) + sizeof(void (*)(void *)))

struct plugin {
    hub_t *hub;
    config_t *cfg;
    const config_transport_t *t;
    void *dl;
    const mqhub_plugin_t *desc;
    void *state;
    bool init_called;
    char path[4096];
};

static plugin_t *host_plugin(mqhub_host_t *host)
{
    return (plugin_t *)host;
}

static uv_loop_t *host_loop(mqhub_host_t *host)
{
    return hub_loop(host_plugin(host)->hub);
}

static const char *host_config_string(mqhub_host_t *host, const char *key)
{
    plugin_t *p = host_plugin(host);
    return config_transport_string(p->cfg, p->t, key);
}

static int host_config_int(mqhub_host_t *host, const char *key, int64_t def, int64_t *out)
{
    plugin_t *p = host_plugin(host);
    int rc = config_transport_int(p->cfg, p->t, key, def, out);

    if (rc != 0)
        log_error(plugin_name(p), "transport %s: %s must be an integer", p->t->name, key);
    return rc;
}

static mqhub_session_t *host_session_open(mqhub_host_t *host, const char *peer,
                                          mqhub_push_cb push, void *push_arg)
{
    plugin_t *p = host_plugin(host);
    return hub_session_open(p->hub, plugin_name(p), peer, push, push_arg);
}

__attribute__((format(printf, 3, 4))) static void host_log(mqhub_host_t *host, int level,
                                                          const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, plugin_name(host_plugin(host)), fmt, ap);
    va_end(ap);
}

static void host_metric_add(mqhub_host_t *host, const char *name, int64_t delta)
{
    plugin_t *p = host_plugin(host);
    char full[160];

    snprintf(full, sizeof full, "plugin_%s_%s", plugin_name(p), name);
    metrics_add(hub_metrics(p->hub), full, delta);
}

static size_t host_max_frame(mqhub_host_t *host)
{
    return hub_max_frame(host_plugin(host)->hub);
}

static int host_session_broken(mqhub_session_t *session)
{
    return hub_session_broken(session);
}

static void host_session_writable(mqhub_session_t *session, int writable)
{
    hub_session_writable(session, writable);
}

static int host_session_identify(mqhub_session_t *session, const char *user)
{
    return hub_session_identify(session, user);
}

static const char *host_auth_token(mqhub_host_t *host)
{
    return host_plugin(host)->cfg->token;
}

static int64_t host_metric_get(mqhub_host_t *host, const char *name)
{
    return metrics_get(hub_metrics(host_plugin(host)->hub), name);
}

static void host_metric_each(mqhub_host_t *host, const char *prefix, mqhub_metric_cb cb,
                             void *arg)
{
    metrics_each(hub_metrics(host_plugin(host)->hub), prefix, cb, arg);
}

static const mqhub_host_api_t host_api = {
    .abi_version = MQHUB_PLUGIN_ABI,
    .size = sizeof(mqhub_host_api_t),
    .loop = host_loop,
    .config_string = host_config_string,
    .config_int = host_config_int,
    .session_open = host_session_open,
    .session_close = hub_session_close,
    .request = hub_request,
    .log = host_log,
    .metric_add = host_metric_add,
    .max_frame = host_max_frame,
    .session_broken = host_session_broken,
    .auth_token = host_auth_token,
    .metric_get = host_metric_get,
    .session_writable = host_session_writable,
    .session_identify = host_session_identify,
    .metric_each = host_metric_each,
};

/* Check the descriptor; on refusal fill @why. */
static int check_desc(const mqhub_plugin_t *d, char *why, size_t len)
{
    if (d == NULL) {
        snprintf(why, len, "%s returned NULL", MQHUB_PLUGIN_ENTRY);
        return MQHUB_EINTERNAL;
    }
    if (d->abi_version != MQHUB_PLUGIN_ABI) {
        snprintf(why, len,
                 "ABI version %u, this mqhubd speaks %d (rebuild it against this "
                 "mqhubd's headers)",
                 d->abi_version, MQHUB_PLUGIN_ABI);
        return MQHUB_EINTERNAL;
    }
    if (d->size < PLUGIN_V1_SIZE || d->name == NULL || d->init == NULL) {
        snprintf(why, len, "descriptor of %u bytes is incomplete (rebuild it against "
                 "this mqhubd's headers)", d->size);
        return MQHUB_EINTERNAL;
    }
    return 0;
}

static int open_and_init(plugin_t *p, char *why, size_t len)
{
    mqhub_plugin_entry_fn entry;
    char err[512] = "";

    p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        snprintf(why, len, "dlopen: %s", dlerror());
        return MQHUB_EINTERNAL;
    }
    *(void **)&entry = dlsym(p->dl, MQHUB_PLUGIN_ENTRY);
    if (entry == NULL) {
        snprintf(why, len, "no entry point %s (is it an mqhub plugin?)", MQHUB_PLUGIN_ENTRY);
        return MQHUB_EINTERNAL;
    }
    p->desc = entry();
    if (check_desc(p->desc, why, len) != 0)
        return MQHUB_EINTERNAL;
    p->init_called = true;
    if (p->desc->init(&host_api, (mqhub_host_t *)p, &p->state, err, sizeof err) != 0) {
        snprintf(why, len, "init failed: %s", err[0] ? err : "(no message)");
        return MQHUB_EINTERNAL;
    }
    return 0;
}

int plugin_load(plugin_t **out, hub_t *hub, config_t *cfg, const config_transport_t *t,
                char *errmsg, size_t errlen)
{
    plugin_t *p = calloc(1, sizeof *p);
    char why[768];

    if (p == NULL) {
        snprintf(errmsg, errlen, "plugin %s: out of memory", t->name);
        return MQHUB_EINTERNAL;
    }
    p->hub = hub;
    p->cfg = cfg;
    p->t = t;
    snprintf(p->path, sizeof p->path, "%s", t->path); /* config_load() always sets it */
    if (open_and_init(p, why, sizeof why) != 0) {
        snprintf(errmsg, errlen, "plugin %s: %s", p->path, why);
        /* A plugin whose init failed stays mapped: it may have handles
         * closing on the loop whose callbacks live in its code. */
        if (p->dl != NULL && !p->init_called)
            dlclose(p->dl);
        free(p);
        return MQHUB_EBAD_REQUEST;
    }
    log_debug("plugin", "loaded %s (%s)", p->path, p->desc->name);
    *out = p;
    return 0;
}

void plugin_stop(plugin_t *p)
{
    if (p->desc->stop != NULL)
        p->desc->stop(p->state);
}

void plugin_unload(plugin_t *p)
{
    if (p->desc->fini != NULL)
        p->desc->fini(p->state);
    dlclose(p->dl);
    free(p);
}

const char *plugin_name(const plugin_t *p)
{
    return p->desc != NULL ? p->desc->name : p->t->name;
}
