/* tmpdir.c: see tmpdir.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "tmpdir.h"

char *tmpdir_make(char *out, size_t len, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(out, len, "%s/mqhub-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    return mkdtemp(out);
}
