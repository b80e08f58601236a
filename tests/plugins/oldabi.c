/* oldabi.c: a plugin built against ABI version 1 (whose config_int returned
 * -1 in-band): mqhubd must refuse it before calling anything in it. */
#include <stdlib.h>

#include "mqhub/plugin.h"

static int oldabi_init(const mqhub_host_api_t *api, mqhub_host_t *host, void **state,
                       char *errmsg, size_t errlen)
{
    abort(); /* never called: the host checks the ABI first */
}

static const mqhub_plugin_t oldabi_plugin = {
    .abi_version = 1,
    .size = sizeof(mqhub_plugin_t),
    .name = "oldabi",
    .init = oldabi_init,
};

MQHUB_PLUGIN_EXPORT const mqhub_plugin_t *mqhub_plugin_entry(void)
{
    return &oldabi_plugin;
}
