/* tmpdir.h: a fresh private directory under $TMPDIR (else /tmp). Leaf code,
 * for tests and benchmarks that need a data directory of their own. */
#ifndef MQHUB_UTIL_TMPDIR_H
#define MQHUB_UTIL_TMPDIR_H
#include <stddef.h>

/* Create "<$TMPDIR or /tmp>/mqhub-<tag>-XXXXXX" (mkdtemp) and write its path to
 * @out (@len bytes). Returns @out, or NULL with errno set. */
char *tmpdir_make(char *out, size_t len, const char *tag);

#endif
