/* logcheck.c: raft's directory checked before raft_uv reads it, and the
 * explicit repair (replica.h; docs/operations.md "Damaged data").
 *
 * What raft_uv 0.22.1 does with a damaged directory, auto-recovery off (as
 * replica.c sets it): a closed segment that fails a check makes raft_start
 * fail (RAFT_CORRUPT); an open segment is cut at its first bad batch without
 * a word, whatever follows; an open segment that ends inside a batch makes
 * the load abort ("Upstream" below); a snapshot's data has no checksum in
 * raft_uv and is restored as it is (snapshot.c adds a trailer). So the
 * newest snapshot and the open segments are read here before every start
 * (LOGCHECK_START), and every file after raft refused or for --repair.
 *
 * Each finding is one of:
 *   - a torn tail: the first bad batch of the open segments has nothing
 *     valid after it: a write that never completed, so never acknowledged.
 *     Lossless: the segment is zeroed from that batch on, which raft_uv
 *     reads as the end of what was written.
 *   - a damaged newest snapshot while the log reaches from a valid older one
 *     past the damaged one's index (snapshot.c keeps that much log): moved
 *     aside; raft loads the older one and replays the log. Lossless.
 *   - anything else (a bad batch in a closed segment or with valid data after
 *     it, a hole in the log, an open segment that cannot be numbered): some
 *     entries would be lost. START refuses (and changes nothing); REPAIR
 *     keeps the valid snapshot and the contiguous valid entries after it and
 *     moves or cuts the rest.
 * A file is always moved or copied into the keep directory before it is
 * dropped or changed.
 *
 * A repair that dropped entries also raises the node's term by one
 * (bump_term): raft's leader keeps what each follower once acknowledged
 * (progress.c ignores a rejection at or below a follower's match index while
 * it replicates in pipeline mode), so a follower that lost entries and came
 * back within the election timeout would never be sent them again. Seeing
 * the higher term, the leader steps down; the next one starts from nothing
 * known and sends the node what it lacks. A term may always grow (no vote is
 * cast in it); the cost is one election.
 *
 * Upstream (raft 0.22.1, src/uv_segment.c): when a batch of an open segment
 * runs past the end of the file (a short read, RAFT_IOERR rather than
 * RAFT_CORRUPT), uvSegmentLoadOpen() frees the file's buffer although the
 * entries it already loaded from it point into it (entry->batch), and
 * uvSegmentLoadAll() frees every entry's batch again: a double free at every
 * start. A torn tail zeroed here never leaves the file shorter than a batch
 * header past the last good batch, so raft stays off that path.
 *
 * Start at logcheck_run(): plan_snapshot(), plan_run(), plan_log() decide,
 * apply() acts, tell() reports. The file formats are in batch_check(),
 * seg_walk(), snap_meta() and snap_data(). A new kind of damage gets its finding in
 * plan_log() (or plan_snapshot()) and its action in apply().
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32.h"
#include "replica.h"

#define DISK_FORMAT 1               /* raft_uv's UV__DISK_FORMAT */
#define MAX_BATCH ((8u << 20) / 32) /* entries per batch raft_uv accepts */
#define META_HEADER 32              /* format, checksum, conf index, conf length */
#define META_CONF_MAX (1u << 20)
#define CHUNK (1u << 20)            /* snapshot reads and file copies */
#define METADATA_LEN 32             /* format, version, term, vote */
#define NAME_LEN 96
#define PATH_LEN 4400

enum snap_state { SNAP_OK, SNAP_UNVERIFIED, SNAP_BAD };

typedef struct seg {
    char name[NAME_LEN];
    bool open;
    unsigned long long counter; /* open-<counter> */
    uint64_t first, end;        /* closed: from the name; open: first once numbered */
    bool scanned, bad, torn;    /* torn: open, nothing valid after the bad batch */
    unsigned batch;             /* the bad batch (1-based; 0: the file itself) */
    size_t bad_off, size;       /* where the bad batch starts; the file's size */
    uint64_t good;              /* valid entries before it (all of them if !bad) */
    uint64_t after;             /* open: entries in valid batches after it */
    char why[96];
} seg_t;

typedef struct snap {
    char name[NAME_LEN];        /* the data file; the metadata is name + ".meta" */
    unsigned long long term, index, ts;
    enum snap_state state;
    char why[96];
} snap_t;

typedef struct check {
    const char *dir, *keep;
    logcheck_mode_t mode;
    logcheck_report_cb report;
    void *arg;
    char *errmsg;
    size_t errlen;
    seg_t *segs;                /* closed by first index, then open by counter */
    size_t n_segs, n_closed;
    snap_t *snaps;              /* oldest first */
    size_t n_snaps;
    /* The plan. */
    size_t use;                 /* the snapshot raft is to load; n_snaps: none */
    uint64_t base;              /* its index (0: none) */
    size_t run;                 /* the first closed segment raft loads */
    size_t damage;              /* the first damaged segment raft loads; n_segs: none */
    uint64_t log_end;           /* the last entry raft can load */
    uint64_t disk_end;          /* the highest index seen on disk */
    bool lossy;                 /* entries or a snapshot would be lost */
    bool apply;                 /* act, or only tell */
    bool keep_made;
} check_t;

/* ---- small helpers ---- */

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool zeros(const unsigned char *b, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++)
        if (b[i])
            return false;
    return true;
}

static void tell(check_t *c, bool lost, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tell(check_t *c, bool lost, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->report(c->arg, lost, line);
}

static int fail(check_t *c, const char *what, const char *path)
{
    snprintf(c->errmsg, c->errlen, "%s %s: %s", what, path, strerror(errno));
    return MQHUB_EINTERNAL;
}

static void path_in(char *out, const char *dir, const char *name)
{
    snprintf(out, PATH_LEN, "%s/%s", dir, name);
}

static int read_all(check_t *c, const char *name, unsigned char **out, size_t *len)
{
    char path[PATH_LEN];
    struct stat st;
    size_t got = 0;

    path_in(path, c->dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        int rc = fail(c, "read", path);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    unsigned char *b = malloc((size_t)st.st_size + 1);
    while (b && got < (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            free(b);
            b = NULL;
        } else {
            got += (size_t)n;
        }
    }
    if (!b) {
        int rc = fail(c, "read", path);
        close(fd);
        return rc;
    }
    close(fd);
    *out = b;
    *len = got;
    return 0;
}

/* ---- listing (as raft_uv's UvList) ---- */

static int add(void **arr, size_t *n, size_t size, const void *item)
{
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4...: grow to the next power of 2 */
        void *p = realloc(*arr, (*n ? *n * 2 : 4) * size);
        if (!p)
            return -1;
        *arr = p;
    }
    memcpy((char *)*arr + *n * size, item, size);
    (*n)++;
    return 0;
}

/* A snapshot counts only with a non-empty data file (raft_uv's rule). */
static bool snap_data_exists(check_t *c, const char *name)
{
    char path[PATH_LEN];
    struct stat st;
    path_in(path, c->dir, name);
    return stat(path, &st) == 0 && st.st_size > 0;
}

static int classify(check_t *c, const char *name)
{
    size_t len = strlen(name);
    int used = 0;
    seg_t s = {0};
    snap_t p = {0};

    if (len >= NAME_LEN - 8)
        return 0;
    if (sscanf(name, "%016llu-%016llu%n", (unsigned long long *)&s.first,
               (unsigned long long *)&s.end, &used) == 2 && used == (int)len) {
        memcpy(s.name, name, len + 1);
        return add((void **)&c->segs, &c->n_segs, sizeof s, &s);
    }
    used = 0;
    if (sscanf(name, "open-%llu%n", &s.counter, &used) == 1 && used == (int)len) {
        memcpy(s.name, name, len + 1);
        s.open = true;
        return add((void **)&c->segs, &c->n_segs, sizeof s, &s);
    }
    used = 0;
    if (sscanf(name, "snapshot-%llu-%llu-%llu.meta%n", &p.term, &p.index, &p.ts, &used) == 3 &&
        used == (int)len) {
        memcpy(p.name, name, len - 5); /* without ".meta" */
        if (snap_data_exists(c, p.name))
            return add((void **)&c->snaps, &c->n_snaps, sizeof p, &p);
    }
    return 0;
}

static int seg_order(const void *a, const void *b)
{
    const seg_t *x = a, *y = b;
    if (x->open != y->open)
        return x->open ? 1 : -1;
    if (x->open)
        return x->counter < y->counter ? -1 : x->counter > y->counter;
    return x->first < y->first ? -1 : x->first > y->first;
}

static int snap_order(const void *a, const void *b)
{
    const snap_t *x = a, *y = b;
    if (x->term != y->term)
        return x->term < y->term ? -1 : 1;
    if (x->index != y->index)
        return x->index < y->index ? -1 : 1;
    return x->ts < y->ts ? -1 : x->ts > y->ts;
}

static int list(check_t *c)
{
    DIR *d = opendir(c->dir);
    struct dirent *e;

    if (!d)
        return errno == ENOENT ? 0 : fail(c, "list", c->dir);
    while ((e = readdir(d)) != NULL) {
        if (classify(c, e->d_name) != 0) {
            closedir(d);
            snprintf(c->errmsg, c->errlen, "out of memory");
            return MQHUB_EINTERNAL;
        }
    }
    closedir(d);
    if (c->n_segs)
        qsort(c->segs, c->n_segs, sizeof *c->segs, seg_order);
    if (c->n_snaps)
        qsort(c->snaps, c->n_snaps, sizeof *c->snaps, snap_order);
    while (c->n_closed < c->n_segs && !c->segs[c->n_closed].open)
        c->n_closed++;
    return 0;
}

/* ---- segments ---- */

/* Why the batch at @off is not one raft_uv loads, or NULL with its entry
 * count and size. A batch (little endian): u32 checksum of the header, u32
 * checksum of the data, the header (u64 count, then per entry u64 term, u8
 * type, 3 unused bytes, u32 length), then the entries' data back to back. */
static const char *batch_check(const unsigned char *b, size_t off, size_t len, uint64_t *n,
                               size_t *size)
{
    const unsigned char *hdr = b + off + 8;
    size_t hl, dl = 0;

    if (len - off < 16)
        return "the file ends inside a batch";
    *n = le64(hdr);
    if (*n == 0 || *n > MAX_BATCH)
        return *n ? "a batch of too many entries" : "a batch of no entries";
    hl = 8 + 16 * (size_t)*n;
    if (len - off - 8 < hl)
        return "the file ends inside a batch";
    if (crc32_raft(0, hdr, hl) != le32(b + off))
        return "header checksum mismatch";
    for (uint64_t i = 0; i < *n; i++) {
        const unsigned char *e = hdr + 8 + 16 * i;
        if (e[8] != RAFT_COMMAND && e[8] != RAFT_BARRIER && e[8] != RAFT_CHANGE)
            return "an entry of unknown type";
        dl += le32(e + 12);
    }
    if (len - off - 8 - hl < dl)
        return "the file ends inside a batch";
    if (crc32_raft(0, hdr + hl, dl) != le32(b + off + 4))
        return "data checksum mismatch";
    *size = 8 + hl + dl;
    return NULL;
}

/* The first 8-byte boundary from @from on where a valid batch starts, or
 * @len: damage with valid data after it is not a torn write. A cheap look
 * at the first entry's header skips most offsets before any checksum. */
static size_t next_valid(const unsigned char *b, size_t from, size_t len)
{
    uint64_t n;
    size_t size;
    for (size_t o = (from + 7) & ~(size_t)7; o + 32 <= len; o += 8) {
        const unsigned char *e = b + o + 16;
        if (le64(b + o + 8) == 0 || e[8] < RAFT_COMMAND || e[8] > RAFT_CHANGE ||
            (e[9] | e[10] | e[11]))
            continue;
        if (!batch_check(b, o, len, &n, &size))
            return o;
    }
    return len;
}

static void seg_bad(seg_t *s, unsigned batch, size_t off, const char *why)
{
    s->bad = true;
    s->batch = batch;
    s->bad_off = off;
    snprintf(s->why, sizeof s->why, "%s", why);
}

/* Walk the batches of @s (content @b, @len bytes) as raft_uv loads them: a
 * closed segment holds exactly the entries its name says; an open one ends
 * at the first batch of zeros (it is allocated ahead). */
static void seg_walk(seg_t *s, const unsigned char *b, size_t len)
{
    uint64_t expect = s->open ? UINT64_MAX : s->end - s->first + 1, n;
    size_t off = 8, size;
    unsigned batch = 1;

    s->size = len;
    if (s->open && zeros(b, 0, len))
        return; /* never written: raft_uv removes it */
    if (len < 8 || le64(b) != DISK_FORMAT) {
        seg_bad(s, 0, 0, len < 8 ? "the file is too short" : "unknown format");
        return;
    }
    for (; off < len; batch++) {
        const char *why = batch_check(b, off, len, &n, &size);
        if (!why && s->good + n > expect)
            why = "more entries than its name says";
        if (why) {
            if (!(s->open && zeros(b, off, len))) /* else: the end of what was written */
                seg_bad(s, batch, off, why);
            break;
        }
        s->good += n;
        off += size;
    }
    if (!s->bad && s->good < expect && !s->open)
        seg_bad(s, batch, off, "fewer entries than its name says");
    if (s->bad && s->open) {
        off = next_valid(b, s->bad_off + 8, len);
        s->torn = off == len;
        while (off < len && !batch_check(b, off, len, &n, &size))
            s->after += n, off += size;
    }
}

static int seg_scan(check_t *c, seg_t *s)
{
    unsigned char *b;
    size_t len;
    if (s->scanned)
        return 0;
    int rc = read_all(c, s->name, &b, &len);
    if (rc != 0)
        return rc;
    seg_walk(s, b, len);
    free(b);
    s->scanned = true;
    return 0;
}

/* ---- snapshots ---- */

static void snap_bad(snap_t *s, const char *why)
{
    s->state = SNAP_BAD;
    snprintf(s->why, sizeof s->why, "%s", why);
}

/* raft_uv's metadata file: u64 format, u64 checksum (of the rest of the
 * header and the configuration), u64 configuration index, u64 length, the
 * encoded configuration. */
static void snap_meta(check_t *c, snap_t *s)
{
    char meta[NAME_LEN + 8];
    unsigned char *b;
    size_t len;

    snprintf(meta, sizeof meta, "%s.meta", s->name);
    if (read_all(c, meta, &b, &len) != 0) {
        snap_bad(s, c->errmsg);
        return;
    }
    uint64_t conf = len >= META_HEADER ? le64(b + 24) : 0;
    if (len < META_HEADER || le64(b) != DISK_FORMAT)
        snap_bad(s, "its metadata file has an unknown format");
    else if (conf == 0 || conf > META_CONF_MAX || len - META_HEADER < conf)
        snap_bad(s, "its metadata file has a bad configuration length");
    else if (crc32_raft(crc32_raft(0, b + 16, 16), b + META_HEADER, conf) != (uint32_t)le64(b + 8))
        snap_bad(s, "metadata checksum mismatch");
    free(b);
}

/* The data file: the trailer's checksum (snapshot.c) against the rest. */
static void snap_data(check_t *c, snap_t *s)
{
    char path[PATH_LEN];
    unsigned char tail[SNAPSHOT_TRAILER_LEN];
    struct stat st;
    uint32_t want, crc = 0;

    path_in(path, c->dir, s->name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    unsigned char *b = malloc(CHUNK);
    if (fd < 0 || !b || fstat(fd, &st) != 0) {
        snap_bad(s, strerror(b ? errno : ENOMEM));
    } else if ((size_t)st.st_size < SNAPSHOT_TRAILER_LEN ||
               pread(fd, tail, sizeof tail, st.st_size - SNAPSHOT_TRAILER_LEN) !=
                   (ssize_t)sizeof tail ||
               !snapshot_trailer_parse(tail, &want)) {
        s->state = SNAP_UNVERIFIED; /* no trailer: written before there were any */
    } else {
        size_t left = (size_t)st.st_size - SNAPSHOT_TRAILER_LEN;
        while (left > 0 && s->state != SNAP_BAD) {
            ssize_t n = read(fd, b, left < CHUNK ? left : CHUNK);
            if (n <= 0)
                snap_bad(s, n < 0 ? strerror(errno) : "the file shrank while read");
            else
                crc = crc32_raft(crc, b, (size_t)n), left -= (size_t)n;
        }
        if (s->state != SNAP_BAD && crc != want)
            snap_bad(s, "data checksum mismatch");
    }
    free(b);
    if (fd >= 0)
        close(fd);
}

static void snap_verify(check_t *c, snap_t *s)
{
    s->state = SNAP_OK;
    snap_meta(c, s);
    if (s->state == SNAP_OK)
        snap_data(c, s);
}

/* ---- the plan ---- */

/* The snapshot raft is to load: the newest one that verifies (older ones
 * are read only while the newer ones fail). */
static void plan_snapshot(check_t *c)
{
    c->use = c->n_snaps;
    for (size_t i = c->n_snaps; i-- > 0;) {
        snap_verify(c, &c->snaps[i]);
        if (c->snaps[i].state != SNAP_BAD) {
            c->use = i;
            break;
        }
    }
    c->base = c->use < c->n_snaps ? c->snaps[c->use].index : 0;
    if (c->n_snaps)
        c->disk_end = c->snaps[c->n_snaps - 1].index;
}

/* The closed segments raft_uv loads (its uvFilterSegments): with a
 * snapshot, the contiguous run that ends with the newest closed segment, or
 * none when that one is behind the snapshot and nothing is open; without
 * one, all of them. */
static void plan_run(check_t *c)
{
    size_t i = c->n_closed;

    if (c->n_closed) {
        seg_t *last = &c->segs[c->n_closed - 1];
        c->disk_end = last->end > c->disk_end ? last->end : c->disk_end;
        if (c->base == 0)
            i = 0;
        else if (last->end >= c->base || c->n_segs > c->n_closed)
            for (i = c->n_closed - 1; i > 0 && c->segs[i - 1].end + 1 == c->segs[i].first;)
                i--;
    }
    c->run = i;
}

/* Segment @s does not follow on from what is before it. */
static void hole(seg_t *s, uint64_t want)
{
    char why[96];
    if (s->open)
        snprintf(why, sizeof why, "its first index is unknown without the dropped snapshot");
    else
        snprintf(why, sizeof why, "it starts at index %llu, the log needs index %llu first",
                 (unsigned long long)s->first, (unsigned long long)want);
    seg_bad(s, 0, 0, why);
    s->good = s->after = 0;
    s->torn = false;
}

/* Later open segments hold nothing (a torn write touches only the end). */
static int torn_confirm(check_t *c, size_t k)
{
    seg_t *s = &c->segs[k];
    for (size_t j = k + 1; s->torn && j < c->n_segs; j++) {
        int rc = seg_scan(c, &c->segs[j]);
        if (rc != 0)
            return rc;
        s->torn = c->segs[j].good == 0 && !c->segs[j].bad;
    }
    return 0;
}

/* Walk the segments raft loads, in its order, numbering the open ones, up
 * to the first damage; closed ones are read unless this is a START (raft
 * checks those itself and refuses them). */
static int plan_log(check_t *c, bool snapshot_dropped)
{
    uint64_t next = 0; /* the index the next segment starts at (0: not known yet) */
    c->damage = c->n_segs;
    c->log_end = c->base;
    for (size_t k = c->run; k < c->n_segs; k++) {
        seg_t *s = &c->segs[k];
        uint64_t want = next ? next : c->base + 1;
        if (!s->open && (next ? s->first != next : s->first > want)) {
            hole(s, want);
        } else {
            if (s->open)
                s->first = want;
            if (s->open || c->mode != LOGCHECK_START) {
                int rc = seg_scan(c, s);
                if (rc != 0)
                    return rc;
            }
            /* Open segments are numbered from the closed ones, else from the
             * snapshot: not from an older one standing in for a dropped one. */
            if (s->open && !next && snapshot_dropped && (s->good || s->bad))
                hole(s, want);
        }
        uint64_t end = s->open ? s->first + s->good - 1 : s->end;
        if (s->good && end > c->disk_end)
            c->disk_end = end;
        if (s->after && end + 1 + s->after > c->disk_end)
            c->disk_end = end + 1 + s->after; /* at least: the bad batch held one or more */
        if (s->bad) {
            if (s->good && s->first + s->good - 1 > c->log_end)
                c->log_end = s->first + s->good - 1;
            c->damage = k;
            return s->open ? torn_confirm(c, k) : 0;
        }
        next = end + 1;
        if (end > c->log_end)
            c->log_end = end;
    }
    return 0;
}

/* ---- actions ---- */

static int keep_dir(check_t *c)
{
    char path[PATH_LEN];
    if (c->keep_made)
        return 0;
    snprintf(path, sizeof path, "%s", c->keep);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return fail(c, "create", path);
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return fail(c, "create", path);
    c->keep_made = true;
    return 0;
}

static int copy_file(check_t *c, const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC), rc = 0;
    int out = in < 0 ? -1 : open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    unsigned char *b = malloc(CHUNK);
    ssize_t n = 0;

    if (in < 0 || out < 0 || !b)
        rc = fail(c, "copy", src);
    while (rc == 0 && (n = read(in, b, CHUNK)) > 0)
        if (write(out, b, (size_t)n) != n)
            rc = fail(c, "copy to", dst);
    if (rc == 0 && (n < 0 || fsync(out) != 0))
        rc = fail(c, "copy", src);
    free(b);
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

static int keep_copy(check_t *c, const char *name)
{
    char src[PATH_LEN], dst[PATH_LEN];
    int rc = keep_dir(c);
    path_in(src, c->dir, name);
    path_in(dst, c->keep, name);
    return rc ? rc : copy_file(c, src, dst);
}

static int keep_move(check_t *c, const char *name)
{
    char src[PATH_LEN], dst[PATH_LEN];
    int rc = keep_dir(c);
    path_in(src, c->dir, name);
    path_in(dst, c->keep, name);
    if (rc != 0 || rename(src, dst) == 0)
        return rc;
    if (errno != EXDEV)
        return fail(c, "move", src);
    rc = copy_file(c, src, dst);
    return rc == 0 && unlink(src) != 0 ? fail(c, "remove", src) : rc;
}

/* Cut @s at its bad batch: a closed segment keeps its (one or more) good
 * entries under the name of their range, an open one is zeroed from there
 * (never shorter than a batch header past it: "Upstream"). */
static int cut(check_t *c, seg_t *s)
{
    char path[PATH_LEN], renamed[PATH_LEN], name[NAME_LEN];
    int rc;

    if ((rc = keep_copy(c, s->name)) != 0)
        return rc;
    path_in(path, c->dir, s->name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    off_t size = (off_t)(s->open && s->size < s->bad_off + 16 ? s->bad_off + 16 : s->size);
    if (fd < 0 || ftruncate(fd, (off_t)s->bad_off) != 0 ||
        (s->open && ftruncate(fd, size) != 0) || fsync(fd) != 0) {
        rc = fail(c, "cut", path);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    if (s->open)
        return 0;
    snprintf(name, sizeof name, "%016llu-%016llu", (unsigned long long)s->first,
             (unsigned long long)(s->first + s->good - 1));
    path_in(renamed, c->dir, name);
    return rename(path, renamed) == 0 ? 0 : fail(c, "rename", path);
}

static int sync_dir(check_t *c)
{
    int fd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int rc = fail(c, "sync", c->dir);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    return 0;
}

/* raft_uv's metadata: metadata1 and metadata2 (u64 format, version, term,
 * voted for), the higher version wins, version v is written to metadata1
 * when odd. Version + 1, term + 1, no vote: written beside, then renamed. */
static int bump_term(check_t *c)
{
    unsigned char m[2][METADATA_LEN] = {{0}}, out[METADATA_LEN];
    char path[PATH_LEN], tmp[PATH_LEN + 8];
    int best = -1;

    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/metadata%d", c->dir, i + 1);
        FILE *f = fopen(path, "rb");
        if (f && fread(m[i], 1, METADATA_LEN, f) == METADATA_LEN && le64(m[i]) == DISK_FORMAT &&
            (best < 0 || le64(m[i] + 8) > le64(m[best] + 8)))
            best = i;
        if (f)
            fclose(f);
    }
    if (best < 0)
        return 0; /* no term yet */
    uint64_t v[4] = {DISK_FORMAT, le64(m[best] + 8) + 1, le64(m[best] + 16) + 1, 0};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++)
            out[8 * i + k] = (unsigned char)(v[i] >> 8 * k);
    snprintf(path, sizeof path, "%s/metadata%d", c->dir, v[1] % 2 ? 1 : 2);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, out, sizeof out) != (ssize_t)sizeof out || fsync(fd) != 0 ||
        rename(tmp, path) != 0) {
        int rc = fail(c, "write", tmp);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    tell(c, false, "raised the term to %llu: a cluster elects a leader again, which sends this "
         "node what it lost", (unsigned long long)v[2]);
    return 0;
}

/* "entries A-B", or with @at_least "entries A to at least B". */
static const char *range(char *buf, size_t len, uint64_t from, uint64_t to, bool at_least)
{
    snprintf(buf, len, "entries %llu%s%llu", (unsigned long long)from,
             at_least ? " to at least " : "-", (unsigned long long)to);
    return buf;
}

/* Tell (and, when applying, do) what happens to the snapshots newer than
 * the one raft is to load. */
static int act_snapshots(check_t *c)
{
    const snap_t *use = c->use < c->n_snaps ? &c->snaps[c->use] : NULL;
    for (size_t i = c->use < c->n_snaps ? c->use + 1 : 0; i < c->n_snaps; i++) {
        snap_t *s = &c->snaps[i];
        char meta[NAME_LEN + 8];
        tell(c, c->lossy, "snapshot %s (index %llu) is damaged: %s", s->name, s->index, s->why);
        snprintf(meta, sizeof meta, "%s.meta", s->name);
        if (c->apply) {
            int rc = keep_move(c, s->name);
            if (rc == 0)
                rc = keep_move(c, meta);
            if (rc != 0)
                return rc;
        }
        if (use && !c->lossy)
            tell(c, false, "%s it to %s: raft starts from snapshot %s (index %llu) and replays "
                 "the log after it; nothing is lost", c->apply ? "moved" : "--repair moves",
                 c->keep, use->name, use->index);
        else
            tell(c, true, "%s snapshot %s%s%s", c->apply ? "dropped" : "--repair drops", s->name,
                 c->apply ? ", moved to " : "", c->apply ? c->keep : "");
    }
    return 0;
}

static int act_log(check_t *c)
{
    char r[96];
    seg_t *s = &c->segs[c->damage];
    bool torn = s->open && s->torn;
    bool whole = s->open ? s->batch == 0 : s->good == 0; /* nothing in it to keep */
    uint64_t from = s->first + s->good;

    if (s->batch)
        tell(c, !torn, "%s segment %s: batch %u at byte %zu (index %llu): %s",
             s->open ? "open" : "closed", s->name, s->batch, s->bad_off,
             (unsigned long long)from, s->why);
    else
        tell(c, !torn, "%s segment %s: %s", s->open ? "open" : "closed", s->name, s->why);
    if (torn)
        tell(c, false, "%s the interrupted write at the end of %s (from byte %zu; nothing valid "
             "follows it, so it was never acknowledged): the log ends at index %llu%s%s",
             c->apply ? "removed" : "--repair removes", s->name, s->bad_off,
             (unsigned long long)(from - 1), c->apply ? "; the original is in " : "",
             c->apply ? c->keep : "");
    else if (whole)
        tell(c, true, "%s segment %s (%s)%s%s", c->apply ? "dropped" : "--repair drops", s->name,
             s->open ? "entries that cannot be placed" : range(r, sizeof r, s->first, s->end, false),
             c->apply ? ", moved to " : "", c->apply ? c->keep : "");
    else
        tell(c, true, "%s %s of segment %s (cut at byte %zu%s%s)",
             c->apply ? "dropped" : "--repair drops",
             range(r, sizeof r, from, s->open ? from + s->after : s->end, s->open), s->name,
             s->bad_off, c->apply ? "; the original is in " : "", c->apply ? c->keep : "");
    if (c->apply) {
        int rc = whole ? keep_move(c, s->name) : cut(c, s);
        if (rc != 0)
            return rc;
    }
    for (size_t k = c->damage + 1; k < c->n_segs && !torn; k++) {
        seg_t *t = &c->segs[k];
        int rc = t->open ? seg_scan(c, t) : 0;
        if (rc != 0)
            return rc;
        if (t->open && t->good == 0 && !t->bad)
            continue; /* allocated, never written: raft_uv removes it */
        tell(c, true, "%s segment %s (%s)", c->apply ? "dropped" : "--repair drops", t->name,
             t->open ? "entries after the damage" : range(r, sizeof r, t->first, t->end, false));
        if (c->apply && (rc = keep_move(c, t->name)) != 0)
            return rc;
    }
    return 0;
}

static int apply(check_t *c)
{
    int rc = act_snapshots(c);
    if (rc == 0 && c->damage < c->n_segs)
        rc = act_log(c);
    if (rc == 0 && c->lossy)
        tell(c, true, "the log %s at index %llu%s; entries after it (the log had reached at "
             "least index %llu) %s this node: in a cluster the leader sends them again",
             c->apply ? "now ends" : "would end", (unsigned long long)c->log_end,
             c->use < c->n_snaps ? "" : " (no snapshot)", (unsigned long long)c->disk_end,
             c->apply ? "are gone from" : "would be gone from");
    if (rc == 0 && c->apply && c->lossy)
        rc = bump_term(c);
    if (rc == 0 && c->apply && (c->keep_made || c->lossy))
        rc = sync_dir(c);
    return rc;
}

/* ---- entry point ---- */

static int check(check_t *c, bool *damaged)
{
    int rc = list(c);
    if (rc != 0)
        return rc;
    plan_snapshot(c);
    plan_run(c);
    size_t dropped = c->use < c->n_snaps ? c->n_snaps - 1 - c->use : c->n_snaps;
    if ((rc = plan_log(c, dropped > 0)) != 0)
        return rc;
    bool log_lossy = c->damage < c->n_segs && !(c->segs[c->damage].open && c->segs[c->damage].torn);
    bool snap_lossless = dropped == 0 || (c->use < c->n_snaps && c->run < c->n_closed &&
                                          c->log_end >= c->snaps[c->n_snaps - 1].index);
    c->lossy = log_lossy || !snap_lossless;
    bool found = dropped > 0 || c->damage < c->n_segs;
    *damaged = c->mode == LOGCHECK_DIAGNOSE ? found : c->mode == LOGCHECK_START && c->lossy;
    c->apply = c->mode == LOGCHECK_REPAIR || (c->mode == LOGCHECK_START && !c->lossy);
    if (!found) {
        if (c->mode == LOGCHECK_REPAIR)
            tell(c, false, "no damage found in %s", c->dir);
        return 0;
    }
    return apply(c);
}

int logcheck_run(const char *dir, const char *keep_dir, logcheck_mode_t mode,
                 logcheck_report_cb report, void *arg, bool *damaged, char *errmsg,
                 size_t errlen)
{
    check_t c = {.dir = dir, .keep = keep_dir, .mode = mode, .report = report, .arg = arg,
                 .errmsg = errmsg, .errlen = errlen};
    *damaged = false;
    int rc = check(&c, damaged);
    free(c.segs);
    free(c.snaps);
    return rc;
}
