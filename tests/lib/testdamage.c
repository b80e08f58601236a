/* testdamage.c: damaging raft's files on purpose (testdamage.h).
 *
 * A segment: u64 format (1), then batches: u32 header checksum, u32 data
 * checksum, the header (u64 entry count, per entry u64 term, u8 type, 3
 * unused bytes, u32 length), then the entries' payload; little endian. An
 * open segment is allocated ahead and ends with zeros. walk() visits each
 * batch; the rest finds, flips and tears with plain file I/O.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testdamage.h"

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    while (n-- > 0)
        v = v << 8 | p[n];
    return v;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    long n;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (b = malloc((size_t)n + 1)) && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        *len = (size_t)n;
    if (f)
        fclose(f);
    return b;
}

/* Call @fn for each batch of the segment in @b (@len bytes) until it
 * returns true; the batch that did, or 0 batches. */
typedef bool (*batch_fn)(const unsigned char *b, size_t off, size_t size, size_t data, void *arg);
static unsigned walk(const unsigned char *b, size_t len, batch_fn fn, void *arg)
{
    size_t off = 8;
    for (unsigned i = 1; len >= 8 && le(b, 8) == 1 && off + 16 <= len; i++) {
        uint64_t n = le(b + off + 8, 8), dl = 0;
        size_t hl = 8 + 16 * (size_t)n;
        if (n == 0 || off + 8 + hl > len)
            break;
        for (uint64_t k = 0; k < n; k++)
            dl += le(b + off + 16 + 16 * k + 12, 4);
        if (off + 8 + hl + dl > len)
            break;
        if (fn(b, off, 8 + hl + dl, off + 8 + hl, arg))
            return i;
        off += 8 + hl + dl;
    }
    return 0;
}

struct find {
    const char *needle;
    td_batch_t *out;
};

static bool holds(const unsigned char *b, size_t off, size_t size, size_t data, void *arg)
{
    struct find *f = arg;
    const unsigned char *hit = memmem(b + data, off + size - data, f->needle, strlen(f->needle));
    if (!hit)
        return false;
    f->out->off = off;
    f->out->size = size;
    f->out->hit = (size_t)(hit - b);
    return true;
}

static bool is_segment(const char *name, bool open)
{
    unsigned long long a, z;
    int used = 0;
    if (open)
        return sscanf(name, "open-%llu%n", &a, &used) == 1 && name[used] == '\0';
    return sscanf(name, "%016llu-%016llu%n", &a, &z, &used) == 2 && name[used] == '\0';
}

int testdamage_find(const char *raftdir, const char *needle, bool open, td_batch_t *out)
{
    DIR *d = opendir(raftdir);
    struct dirent *e;
    struct find f = {needle, out};
    int rc = -1;

    while (d && rc != 0 && (e = readdir(d)) != NULL) {
        char path[600];
        size_t len;
        if (!is_segment(e->d_name, open))
            continue;
        snprintf(path, sizeof path, "%s/%s", raftdir, e->d_name);
        unsigned char *b = slurp(path, &len);
        if (b && (out->number = walk(b, len, holds, &f)) != 0) {
            snprintf(out->file, sizeof out->file, "%.63s", e->d_name);
            rc = 0;
        }
        free(b);
    }
    if (d)
        closedir(d);
    return rc;
}

int testdamage_flip(const char *dir, const char *file, size_t off, unsigned char mask)
{
    char path[600];
    unsigned char c;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_RDWR);
    int rc = fd >= 0 && pread(fd, &c, 1, (off_t)off) == 1 &&
                     (c ^= mask, pwrite(fd, &c, 1, (off_t)off) == 1) ? 0 : -1;
    if (fd >= 0)
        close(fd);
    return rc;
}

static bool last(const unsigned char *b, size_t off, size_t size, size_t data, void *arg)
{
    size_t *where = arg;
    where[0] = off;
    where[1] = size;
    return false;
}

int testdamage_tear(const char *dir, const char *file, bool short_file)
{
    char path[600];
    size_t len, at[2] = {0, 0};
    snprintf(path, sizeof path, "%s/%s", dir, file);
    unsigned char *b = slurp(path, &len);
    if (!b)
        return -1;
    walk(b, len, last, at);
    size_t end = at[0] + at[1], half = (at[1] / 2 + 7) & ~(size_t)7;
    int fd = at[1] ? open(path, O_WRONLY) : -1;
    int rc = fd >= 0 && end + half <= len && pwrite(fd, b + at[0], half, (off_t)end) == (ssize_t)half &&
                     (!short_file || ftruncate(fd, (off_t)(end + half / 2)) == 0) ? 0 : -1;
    if (fd >= 0)
        close(fd);
    free(b);
    return rc;
}

int testdamage_newest_snapshot(const char *raftdir, char *out, size_t len)
{
    DIR *d = opendir(raftdir);
    struct dirent *e;
    unsigned long long best[3] = {0, 0, 0};
    int n = 0;

    while (d && (e = readdir(d)) != NULL) {
        unsigned long long v[3];
        int used = 0;
        if (sscanf(e->d_name, "snapshot-%llu-%llu-%llu%n", &v[0], &v[1], &v[2], &used) != 3 ||
            e->d_name[used] != '\0')
            continue;
        if (n++ == 0 || v[0] > best[0] || (v[0] == best[0] && v[1] > best[1]) ||
            (v[0] == best[0] && v[1] == best[1] && v[2] > best[2])) {
            memcpy(best, v, sizeof best);
            snprintf(out, len, "%s", e->d_name);
        }
    }
    if (d)
        closedir(d);
    return n;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int testdamage_run(const char *mqhubd, const char *config, const char *arg, int timeout_ms,
                   char *out, size_t outlen)
{
    const char *tmp = getenv("TMPDIR");
    int fd = open(tmp && *tmp ? tmp : "/tmp", O_TMPFILE | O_RDWR, 0600), status = 0, rc = -1;
    if (fd < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        execl(mqhubd, mqhubd, "--config", config, arg, (char *)NULL);
        _exit(127);
    }
    for (uint64_t until = now_ms() + (uint64_t)timeout_ms; pid > 0 && rc < 0;) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        else if (now_ms() > until)
            break;
        else
            usleep(10000);
    }
    if (pid > 0 && rc < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    ssize_t n = pread(fd, out, outlen - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    return rc;
}
