/* metrics.c: the node's counters and request latency histograms, read by
 * plugins (metric_get: the WebSocket plugin's /metrics and dashboard).
 *
 * Counters are named and created on first use (metrics_add). Latency is one
 * histogram per transport (metrics_lat_slot, claimed when a session of that
 * transport opens; at most LAT_TRANSPORTS, further ones are not timed),
 * read through metrics_get() as "request_seconds_count.<transport>",
 * "request_seconds_sum_us.<transport>" and
 * "request_seconds_bucket.<transport>.<i>" (cumulative). Loop thread only.
 * The process's own figures are read when asked (process_get: "process.*"
 * names, from /proc/self and getrusage; the start time is taken in
 * metrics_new, when the daemon starts; the data dir's size and free space
 * from a bounded walk of it, reused for a second, and statvfs).
 * metrics_each() lists the counters by prefix (the exporter's plugin
 * counters, "plugin_").
 * To add a histogram family: a prefix in metrics_get() and its reader.
 */
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "node.h"

#define LAT_BUCKETS 12   /* upper bounds in lat_bounds_ns */
#define LAT_TRANSPORTS 8 /* histograms; sessions of further transports are not timed */
#define LAT_PREFIX "request_seconds_"
/* The data dir walk (process.data_bytes): at most this many entries (a data
 * dir holds some hundreds; a bigger tree is not summed: -1), and a walk
 * less than DATA_WALK_AGE_MS old is reused (node.info and /metrics may be
 * asked in a loop; the walk runs on the loop thread). */
#define DATA_WALK_MAX 10000
#define DATA_WALK_AGE_MS 1000

typedef struct metric {
    char *name;
    int64_t value;
} metric_t;

/* Request latency of one transport: bucket[i] counts requests with
 * lat_bounds_ns[i-1] < duration <= lat_bounds_ns[i]; the last one those
 * above every bound. Cumulative only when read (lat_get). */
struct metrics_lat {
    char transport[32]; /* "" = free */
    uint64_t bucket[LAT_BUCKETS + 1];
    uint64_t count, sum_ns;
};

struct metrics {
    metric_t *all;
    unsigned n;
    metrics_lat_t lat[LAT_TRANSPORTS];
    int64_t start_ms; /* wall clock when the daemon made its metrics */
    char *data_dir;   /* process.data_bytes, process.disk_* */
    int64_t data_bytes;  /* the latest walk's sum (or -1)... */
    uint64_t data_at_ms; /* ...made at this uv_hrtime() ms; 0: none yet */
};

int metrics_new(metrics_t **out, const char *data_dir)
{
    struct timespec ts;
    *out = calloc(1, sizeof **out);
    if (*out == NULL)
        return MQHUB_EINTERNAL;
    (*out)->data_dir = strdup(data_dir != NULL ? data_dir : ".");
    if ((*out)->data_dir == NULL) {
        free(*out);
        return MQHUB_EINTERNAL;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    (*out)->start_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return 0;
}

void metrics_free(metrics_t *m)
{
    if (m == NULL)
        return;
    for (unsigned i = 0; i < m->n; i++)
        free(m->all[i].name);
    free(m->all);
    free(m->data_dir);
    free(m);
}

void metrics_add(metrics_t *m, const char *name, int64_t delta)
{
    metric_t *all;

    for (unsigned i = 0; i < m->n; i++) {
        if (strcmp(m->all[i].name, name) == 0) {
            m->all[i].value += delta;
            return;
        }
    }
    all = realloc(m->all, (m->n + 1) * sizeof *all);
    if (all == NULL)
        return;
    m->all = all;
    all[m->n].name = strdup(name);
    if (all[m->n].name == NULL)
        return;
    all[m->n++].value = delta;
}

static const uint64_t lat_bounds_ns[LAT_BUCKETS] = {
    500000,    1000000,   2500000,   5000000,   10000000,  25000000,
    50000000,  100000000, 250000000, 500000000, 1000000000, 5000000000};

metrics_lat_t *metrics_lat_slot(metrics_t *m, const char *transport)
{
    for (unsigned i = 0; i < LAT_TRANSPORTS; i++) {
        metrics_lat_t *l = &m->lat[i];
        if (l->transport[0] == '\0')
            snprintf(l->transport, sizeof l->transport, "%s", transport);
        if (strcmp(l->transport, transport) == 0)
            return l;
    }
    return NULL;
}

void metrics_lat_observe(metrics_lat_t *l, uint64_t t0)
{
    uint64_t ns = uv_hrtime() - t0;
    unsigned i = 0;

    if (l == NULL)
        return;
    while (i < LAT_BUCKETS && ns > lat_bounds_ns[i])
        i++;
    l->bucket[i]++;
    l->count++;
    l->sum_ns += ns; /* microseconds only when read: short requests add up */
}

static metrics_lat_t *lat_find(metrics_t *m, const char *transport, size_t len)
{
    for (unsigned i = 0; i < LAT_TRANSPORTS; i++) {
        if (strlen(m->lat[i].transport) == len && memcmp(m->lat[i].transport, transport, len) == 0)
            return &m->lat[i];
    }
    return NULL;
}

/* "request_seconds_count.T", "request_seconds_sum_us.T" and
 * "request_seconds_bucket.T.I" (requests of transport T that took at most
 * bound I, 0-11, cumulative); @name is past LAT_PREFIX. */
static int64_t lat_get(metrics_t *m, const char *name)
{
    const char *t, *dot;
    metrics_lat_t *l;
    char *end;
    unsigned long idx;
    uint64_t n = 0;

    if (strncmp(name, "count.", 6) == 0 || strncmp(name, "sum_us.", 7) == 0) {
        t = strchr(name, '.') + 1;
        l = lat_find(m, t, strlen(t));
        return l == NULL ? 0 : (int64_t)(name[0] == 'c' ? l->count : l->sum_ns / 1000);
    }
    if (strncmp(name, "bucket.", 7) != 0 || (dot = strrchr(name + 7, '.')) == NULL)
        return 0;
    idx = strtoul(dot + 1, &end, 10);
    l = lat_find(m, name + 7, (size_t)(dot - (name + 7)));
    if (l == NULL || *end != '\0' || end == dot + 1 || idx >= LAT_BUCKETS)
        return 0;
    for (unsigned long i = 0; i <= idx; i++)
        n += l->bucket[i];
    return (int64_t)n;
}

/* Open file descriptors: the entries of /proc/self/fd, less the one the
 * listing itself holds; -1 when it cannot be read. */
static int64_t open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int64_t n = -1; /* the listing's own descriptor */
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Resident set size in bytes (/proc/self/statm); -1 when unreadable. */
static int64_t rss_bytes(void)
{
    long long size, resident;
    FILE *f = fopen("/proc/self/statm", "r");
    int ok = f != NULL && fscanf(f, "%lld %lld", &size, &resident) == 2;
    if (f != NULL)
        fclose(f);
    return ok ? resident * (int64_t)sysconf(_SC_PAGESIZE) : -1;
}

/* nftw() has no argument for its callback: the sum and the entries of the
 * walk in progress (loop thread only, like the rest of this file). */
static int64_t walk_bytes;
static unsigned walk_entries;

static int add_file(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)path, (void)f;
    if (++walk_entries > DATA_WALK_MAX)
        return 1; /* stops the walk: nftw() returns 1 */
    if (type == FTW_F)
        walk_bytes += (int64_t)st->st_blocks * 512; /* allocated: sparse files count less */
    return 0;
}

/* Bytes the files under @dir take on disk (no symlink followed, no other
 * file system entered); -1 when @dir cannot be read or holds more than
 * DATA_WALK_MAX entries. */
static int64_t dir_bytes(const char *dir)
{
    walk_bytes = 0;
    walk_entries = 0;
    if (nftw(dir, add_file, 16, FTW_PHYS | FTW_MOUNT) != 0)
        return -1;
    return walk_bytes;
}

/* dir_bytes() of the data dir, walked at most once per DATA_WALK_AGE_MS. */
static int64_t data_bytes(metrics_t *m)
{
    uint64_t now = uv_hrtime() / 1000000 + 1; /* + 1: never 0 */
    if (m->data_at_ms == 0 || now - m->data_at_ms >= DATA_WALK_AGE_MS) {
        m->data_bytes = dir_bytes(m->data_dir);
        m->data_at_ms = now;
    }
    return m->data_bytes;
}

/* The data dir's file system: bytes free to unprivileged users (@free) or
 * its size; -1 when statvfs fails. */
static int64_t disk_bytes(const char *dir, bool free_only)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0)
        return -1;
    return (int64_t)(free_only ? v.f_bavail : v.f_blocks) * (int64_t)v.f_frsize;
}

/* "process.rss_bytes", "process.open_fds", "process.max_fds",
 * "process.cpu_us" (user + system), "process.start_ms" (ms since the
 * epoch), "process.data_bytes", "process.disk_free_bytes",
 * "process.disk_total_bytes"; @name is past "process.". 0 for other names. */
static int64_t process_get(metrics_t *m, const char *name)
{
    struct rusage ru;
    struct rlimit rl;
    if (strcmp(name, "rss_bytes") == 0)
        return rss_bytes();
    if (strcmp(name, "open_fds") == 0)
        return open_fds();
    if (strcmp(name, "max_fds") == 0)
        return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (int64_t)rl.rlim_cur : -1;
    if (strcmp(name, "cpu_us") == 0 && getrusage(RUSAGE_SELF, &ru) == 0)
        return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
               ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
    if (strcmp(name, "start_ms") == 0)
        return m->start_ms;
    if (strcmp(name, "data_bytes") == 0)
        return data_bytes(m);
    if (strcmp(name, "disk_free_bytes") == 0 || strcmp(name, "disk_total_bytes") == 0)
        return disk_bytes(m->data_dir, name[5] == 'f');
    return 0;
}

void metrics_each(metrics_t *m, const char *prefix, mqhub_metric_cb cb, void *arg)
{
    size_t len = strlen(prefix);

    for (unsigned i = 0; i < m->n; i++)
        if (strncmp(m->all[i].name, prefix, len) == 0)
            cb(arg, m->all[i].name, m->all[i].value);
}

int64_t metrics_get(metrics_t *m, const char *name)
{
    if (strncmp(name, "process.", 8) == 0)
        return process_get(m, name + 8);
    if (strncmp(name, LAT_PREFIX, sizeof LAT_PREFIX - 1) == 0)
        return lat_get(m, name + sizeof LAT_PREFIX - 1);
    for (unsigned i = 0; i < m->n; i++) {
        if (strcmp(m->all[i].name, name) == 0)
            return m->all[i].value;
    }
    return 0;
}
