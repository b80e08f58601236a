/* errors.c: the functions generated from MQHUB_ERRNO_MAP (include/mqhub/errors.h).
 * Leaf code: used by the core, the client library and plugins alike. */
#include <string.h>

#include "mqhub/errors.h"

#define ERR_COUNT (MQHUB__ERR_END - MQHUB__ERR_BASE - 1)

static const char *const err_names[] = {
#define XX(name, msg) #name,
    MQHUB_ERRNO_MAP(XX)
#undef XX
};

static const char *const err_msgs[] = {
#define XX(name, msg) msg,
    MQHUB_ERRNO_MAP(XX)
#undef XX
};

static int err_index(int code)
{
    if (code <= MQHUB__ERR_BASE || code >= MQHUB__ERR_END)
        return -1;
    return code - MQHUB__ERR_BASE - 1;
}

const char *mqhub_strerror(int code)
{
    int i = err_index(code);
    if (code == MQHUB_OK)
        return "success";
    return i < 0 ? "unknown error" : err_msgs[i];
}

const char *mqhub_err_name(int code)
{
    int i = err_index(code);
    return i < 0 ? "INTERNAL" : err_names[i];
}

int mqhub_err_from_name(const char *name, size_t len)
{
    for (int i = 0; i < ERR_COUNT; i++) {
        if (strlen(err_names[i]) == len && memcmp(err_names[i], name, len) == 0)
            return MQHUB__ERR_BASE + 1 + i;
    }
    return MQHUB_EINTERNAL;
}
