/* dirlock.c: an exclusive, non-blocking flock on <dir>/LOCK (dirlock.h).
 *
 * flock(2) is tied to the open file description: it goes away with the
 * process however it ends (kill -9 included), so a stale LOCK file never
 * blocks a restart and the file is never removed. The holder writes its pid
 * into the file right after locking; a refused process reads it to name the
 * holder, waiting a moment for a holder that has locked but not yet written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dirlock.h"

#define HOLDER_TRIES 20 /* x 10 ms for the holder to write its pid */

/* The pid written in @fd's file, or 0 while there is none. */
static long holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

static void refused(const char *dir, int fd, char *errmsg, size_t errlen)
{
    long pid = 0;
    for (int i = 0; i < HOLDER_TRIES && (pid = holder_pid(fd)) <= 0; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    if (pid > 0)
        snprintf(errmsg, errlen, "data directory %s in use by pid %ld", dir, pid);
    else
        snprintf(errmsg, errlen, "data directory %s in use by another process", dir);
}

int dirlock_take(const char *dir, int *fd, char *errmsg, size_t errlen)
{
    char path[4200], pid[32];
    int err;

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        err = errno;
        snprintf(errmsg, errlen, "data directory %s: %s", dir, strerror(err));
        return -err;
    }
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) {
        err = errno;
        snprintf(errmsg, errlen, "lock %s: %s", path, strerror(err));
        return -err;
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        err = errno;
        if (err == EWOULDBLOCK)
            refused(dir, f, errmsg, errlen);
        else
            snprintf(errmsg, errlen, "lock %s: %s", path, strerror(err));
        close(f);
        return -err;
    }
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, pid, (size_t)len, 0) != len) {
        err = errno;
        snprintf(errmsg, errlen, "lock %s: write the pid: %s", path, strerror(err));
        close(f);
        return -err;
    }
    *fd = f;
    return 0;
}
