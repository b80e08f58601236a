/* badinit.c: a plugin whose init fails: mqhubd must refuse it with the
 * plugin's own message. */
#include <stdio.h>

#include "mqhub/plugin.h"

static int badinit_init(const mqhub_host_api_t *api, mqhub_host_t *host, void **state,
                        char *errmsg, size_t errlen)
{
    snprintf(errmsg, errlen, "refusing on purpose");
    return -1;
}

static const mqhub_plugin_t badinit_plugin = {
    .abi_version = MQHUB_PLUGIN_ABI,
    .size = sizeof(mqhub_plugin_t),
    .name = "badinit",
    .init = badinit_init,
};

MQHUB_PLUGIN_EXPORT const mqhub_plugin_t *mqhub_plugin_entry(void)
{
    return &badinit_plugin;
}
