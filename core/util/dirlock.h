/* dirlock.h: one process per directory (dirlock.c) — leaf code. mqhubd
 * takes the lock on its data directory before it opens anything in it
 * (docs/operations.md "One daemon per data directory").
 */
#ifndef MQHUB_UTIL_DIRLOCK_H
#define MQHUB_UTIL_DIRLOCK_H

#include <stddef.h>

/* Create @dir when missing (one level, mode 0755), open <dir>/LOCK and take
 * an exclusive flock on it without waiting, then write our pid into it.
 * Returns 0 with the lock's file descriptor in *@fd (the lock lasts until
 * it is closed, at the latest when the process exits; it is not inherited
 * across exec), -EWOULDBLOCK when another process holds the lock (@errmsg:
 * "data directory D in use by pid N"), or another -errno with the reason in
 * @errmsg. Call it before any thread or child exists. */
int dirlock_take(const char *dir, int *fd, char *errmsg, size_t errlen);

#endif
