/* fsm_bench.c: mqhub-fsm-bench — the state machine alone, no raft, no network.
 *
 *   mqhub-fsm-bench [-n N] [--size BYTES] [--batch K] [--dir DIR] [--queues] [--no-snapshot]
 *                   [--consume M] [--spread K]
 *
 * Applies N sends (BYTES each), then N receives, then N deletes, K commands
 * per entry, through fsm_entry_encode + fsm_apply_entry exactly as raft would
 * on the leader (replies encoded). Prints ops/s per phase, the RSS growth per
 * backlog message after the send phase, and the size and time of a snapshot
 * of that backlog (raft keeps it in memory until it is written; --no-snapshot
 * skips it: at 10M messages of 1 KiB the copy alone is ~11 GB of RAM).
 * --consume M replaces the receive and delete phases by M messages received
 * and deleted batch by batch, as a consumer does (consume_phase): the rate
 * of consuming from a backlog of N (docs/benchmarks.md "Flat as work grows").
 * --spread K sends, receives and deletes round-robin over K queues b0..bK-1
 * (created first): many busy queues, so Kyoto Cabinet's leaf cache holds the
 * heads and tails of all of them (docs/benchmarks.md "Kyoto Cabinet").
 * --queues: N queue.create instead (names in scrambled order, so name order
 * is not id order), 1000 queue.list pages at spread offsets, one small send
 * into each queue and 20 ticks (a second apart: the cost of the periodic
 * tick with N non-empty queues), and a restart:
 * snapshot, then restore into a fresh state machine (store load + rebuild),
 * timed (queues_main). Start at main(); each phase is one call of
 * run_phase().
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mp.h"
#include "sm/sm.h"
#include "tmpdir.h"

struct bench {
    fsm_t *f;
    uint64_t now;
    size_t size;
    unsigned batch;
    unsigned spread; /* --spread K: messages go round-robin over K queues */
    char **receipts; /* one per message, from the receive phase */
    size_t n_receipts;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *fp = fopen("/proc/self/statm", "r");
    if (fp) {
        if (fscanf(fp, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(fp);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* Pack command @i of a phase into @sb. */
typedef void (*make_cmd_fn)(struct bench *b, size_t i, msgpack_packer *pk);

/* The queue of message @i: "bench", or with --spread K "b<i mod K>". Send,
 * receive and delete i all name the same queue: each receive takes one
 * message, so receipt i is the message of receive i. */
static void pack_queue(struct bench *b, size_t i, msgpack_packer *pk)
{
    char name[16];
    if (b->spread)
        snprintf(name, sizeof name, "b%zu", i % b->spread);
    pack_str(pk, "queue");
    pack_str(pk, b->spread ? name : "bench");
}

static void make_create_spread(struct bench *b, size_t i, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    pack_str(pk, "op");
    pack_str(pk, "queue.create");
    pack_str(pk, "name");
    char name[16];
    snprintf(name, sizeof name, "b%zu", i);
    pack_str(pk, name);
    (void)b;
}

static void make_send(struct bench *b, size_t i, msgpack_packer *pk)
{
    static char *body;
    if (!body && !(body = calloc(1, b->size)))
        abort();
    msgpack_pack_map(pk, 3);
    pack_str(pk, "op");
    pack_str(pk, "send");
    pack_queue(b, i, pk);
    pack_str(pk, "body");
    msgpack_pack_bin(pk, b->size);
    msgpack_pack_bin_body(pk, body, b->size);
    (void)i;
}

static void make_receive(struct bench *b, size_t i, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    pack_str(pk, "op");
    pack_str(pk, "receive");
    pack_queue(b, i, pk);
    pack_str(pk, "visibility");
    msgpack_pack_uint32(pk, 43200);
}

static void make_delete(struct bench *b, size_t i, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    pack_str(pk, "op");
    pack_str(pk, "delete");
    pack_queue(b, i, pk);
    pack_str(pk, "receipts");
    msgpack_pack_array(pk, 1);
    pack_str(pk, i < b->n_receipts ? b->receipts[i] : "none");
}

/* Keep the receipts of receive replies; count failed replies. */
static void note_reply(struct bench *b, const char *data, size_t len, size_t *failed)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, data, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *ok = mp_map_get(&u.data, "ok"), *msgs = mp_map_get(&u.data, "msgs");
        if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN || !ok->via.boolean)
            (*failed)++;
        for (uint32_t i = 0; msgs && i < msgs->via.array.size; i++) {
            const msgpack_object *r = mp_map_get(&msgs->via.array.ptr[i], "receipt");
            if (r && r->type == MSGPACK_OBJECT_STR)
                b->receipts[b->n_receipts++] = strndup(r->via.str.ptr, r->via.str.size);
        }
    }
    msgpack_unpacked_destroy(&u);
}

/* Commands @first .. @first + @k - 1 (k <= batch) of @make as one entry,
 * applied; failed replies counted in @failed. */
static int apply_cmds(struct bench *b, size_t first, unsigned k, make_cmd_fn make,
                      size_t *failed)
{
    char **cmds = calloc(k, sizeof *cmds);
    size_t *lens = calloc(k, sizeof *lens);
    if (!cmds || !lens)
        abort();
    for (unsigned i = 0; i < k; i++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        make(b, first + i, &pk);
        lens[i] = sb.size;
        cmds[i] = msgpack_sbuffer_release(&sb);
    }
    struct raft_buffer buf;
    fsm_result_t *r = NULL;
    int rc = 0;
    b->now += 1;
    if (fsm_entry_encode(b->now, (const char *const *)cmds, lens, k, &buf) != 0) {
        rc = -1;
    } else {
        rc = fsm_apply_entry(b->f, buf.base, buf.len, &r) != 0 ? -1 : 0;
        raft_free(buf.base);
    }
    for (unsigned i = 0; i < k; i++) {
        if (r)
            note_reply(b, r->data + r->off[i], r->off[i + 1] - r->off[i], failed);
        free(cmds[i]);
    }
    fsm_result_free(r);
    free(cmds);
    free(lens);
    return rc;
}

static void print_rate(const char *name, size_t n, double t0, size_t failed)
{
    double dt = now_s() - t0;
    printf("%-8s %10zu ops %8.3f s %12.0f ops/s%s\n", name, n, dt, (double)n / dt,
           failed ? " (some replies failed!)" : "");
}

static int run_phase(struct bench *b, const char *name, size_t n, make_cmd_fn make)
{
    size_t failed = 0;
    double t0 = now_s();
    for (size_t done = 0; done < n; done += b->batch) {
        unsigned k = n - done < b->batch ? (unsigned)(n - done) : b->batch;
        if (apply_cmds(b, done, k, make, &failed) != 0) {
            fprintf(stderr, "%s: apply failed\n", name);
            return 1;
        }
    }
    print_rate(name, n, t0, failed);
    return failed ? 1 : 0;
}

/* --consume M: M messages received and deleted as a consumer does, one entry
 * of K receives, then one entry deleting what it got, until M are gone (the
 * backlog shrinks from N to N - M). Counts messages deleted per second. */
static int consume_phase(struct bench *b, size_t m)
{
    size_t failed = 0, done = 0;
    double t0 = now_s();
    while (done < m) {
        size_t from = b->n_receipts;
        unsigned k = m - done < b->batch ? (unsigned)(m - done) : b->batch;
        if (apply_cmds(b, from, k, make_receive, &failed) != 0 || b->n_receipts == from ||
            apply_cmds(b, from, (unsigned)(b->n_receipts - from), make_delete, &failed) != 0) {
            fprintf(stderr, "consume: apply failed or the queue ran dry\n");
            return 1;
        }
        done += b->n_receipts - from;
    }
    print_rate("consume", m, t0, failed);
    return failed ? 1 : 0;
}

/* Queue i's name: a bijection of i (odd multiplier mod 2^32), so names
 * come in an order unrelated to ids. */
static void queue_name(char *out, size_t size, size_t i)
{
    snprintf(out, size, "q%08x", (unsigned)((uint32_t)i * 2654435761u));
}

static void make_create(struct bench *b, size_t i, msgpack_packer *pk)
{
    char name[16];
    queue_name(name, sizeof(name), i);
    msgpack_pack_map(pk, 2);
    pack_str(pk, "op");
    pack_str(pk, "queue.create");
    pack_str(pk, "name");
    pack_str(pk, name);
    (void)b;
}

/* A small message into queue i (its own name). */
static void make_send_each(struct bench *b, size_t i, msgpack_packer *pk)
{
    char name[16];
    queue_name(name, sizeof(name), i);
    msgpack_pack_map(pk, 3);
    pack_str(pk, "op");
    pack_str(pk, "send");
    pack_str(pk, "queue");
    pack_str(pk, name);
    pack_str(pk, "body");
    pack_str(pk, "x");
    (void)b;
}

static void make_tick(struct bench *b, size_t i, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    pack_str(pk, "op");
    pack_str(pk, "tick");
    b->now += 1000; /* one tick a second, as the leader proposes them */
    (void)i;
}

/* One queue.list read (limit 100 from @offset); 0 when the page is full. */
static int list_page(fsm_t *f, uint64_t offset)
{
    msgpack_sbuffer sb, out;
    msgpack_packer pk;
    msgpack_unpacked u, r;
    int rc = 1;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&out);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "op");
    pack_str(&pk, "queue.list");
    pack_str(&pk, "offset");
    msgpack_pack_uint64(&pk, offset);
    pack_str(&pk, "limit");
    msgpack_pack_uint32(&pk, 100);
    msgpack_unpacked_init(&u);
    msgpack_unpacked_init(&r);
    if (msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS &&
        fsm_read(f, &u.data, &out) == 0 &&
        msgpack_unpack_next(&r, out.data, out.size, NULL) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *q = mp_map_get(&r.data, "queues");
        rc = q && q->type == MSGPACK_OBJECT_ARRAY && q->via.array.size == 100 ? 0 : 1;
    }
    msgpack_unpacked_destroy(&u);
    msgpack_unpacked_destroy(&r);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&out);
    return rc;
}

/* --queues: create @n queues, list pages, restart from a snapshot. */
static int queues_main(struct bench *b, size_t n, const char *dir2)
{
    struct raft_fsm *rf = fsm_raft(b->f);
    struct raft_buffer *bufs, buf;
    unsigned nb;
    fsm_t *g;
    char err[256];
    int rc = run_phase(b, "create", n, make_create), bad = 0;
    double t0 = now_s();
    for (size_t i = 0; i < 1000 && n >= 100; i++)
        bad |= list_page(b->f, (uint64_t)(i * (n - 100) / 1000));
    printf("list     %10d pages of 100 in %.3f s%s\n", n >= 100 ? 1000 : 0, now_s() - t0,
           bad ? " (some pages short!)" : "");
    /* The periodic tick over @n queues that each hold a message (none due
     * to expire): what every node pays once a second. */
    unsigned batch = b->batch;
    rc |= run_phase(b, "send", n, make_send_each);
    b->batch = 1;
    rc |= run_phase(b, "tick", 20, make_tick);
    b->batch = batch;
    if (rf->snapshot(rf, &bufs, &nb) != 0 || nb != 1 || fsm_open(&g, dir2, err, sizeof(err)) != 0) {
        fprintf(stderr, "snapshot or open failed\n");
        return 1;
    }
    buf.len = bufs[0].len;
    buf.base = raft_malloc(buf.len);
    memcpy(buf.base, bufs[0].base, buf.len);
    rf->snapshot_finalize(rf, &bufs, &nb);
    t0 = now_s();
    struct raft_fsm *gf = fsm_raft(g);
    if (gf->restore(gf, &buf) != 0) {
        fprintf(stderr, "restore failed\n");
        rc = 1;
    }
    printf("restart  %10zu queues %.3f s (restore: store load + rebuild)\n", n, now_s() - t0);
    t0 = now_s();
    bad = list_page(g, n >= 100 ? n - 100 : 0);
    printf("list     after restart, last page %s in %.6f s\n", bad ? "SHORT" : "full", now_s() - t0);
    fsm_close(g);
    return rc | bad;
}

static void snapshot_cost(struct bench *b, size_t n)
{
    struct raft_fsm *rf = fsm_raft(b->f);
    struct raft_buffer *bufs;
    unsigned nb;
    long before = rss_kib();
    double t0 = now_s();
    if (rf->snapshot(rf, &bufs, &nb) != 0) {
        fprintf(stderr, "snapshot failed\n");
        return;
    }
    double dt = now_s() - t0;
    size_t bytes = 0;
    for (unsigned i = 0; i < nb; i++)
        bytes += bufs[i].len;
    printf("snapshot %10zu bytes (%.0f B/msg) in %.3f s, RSS +%ld KiB while held\n", bytes,
           (double)bytes / (double)n, dt, rss_kib() - before);
    rf->snapshot_finalize(rf, &bufs, &nb);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"size", required_argument, 0, 's'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"dir", required_argument, 0, 'd'},
                                         {"queues", no_argument, 0, 'q'},
                                         {"no-snapshot", no_argument, 0, 'S'},
                                         {"consume", required_argument, 0, 'c'},
                                         {"spread", required_argument, 0, 'p'},
                                         {0, 0, 0, 0}};
    struct bench b = {.now = 1700000000000ULL, .size = 1024, .batch = 64};
    size_t n = 100000, consume = 0;
    char dir[256] = "", err[256];
    int c, rc = 0;
    bool queues = false, snapshot = true;
    while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        switch (c) {
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 's': b.size = strtoull(optarg, NULL, 10); break;
        case 'b': b.batch = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': snprintf(dir, sizeof(dir), "%s", optarg); break;
        case 'q': queues = true; break;
        case 'S': snapshot = false; break;
        case 'c': consume = strtoull(optarg, NULL, 10); break;
        case 'p': b.spread = (unsigned)strtoul(optarg, NULL, 10); break;
        default:
            fprintf(stderr,
                    "usage: %s [-n N] [--size BYTES] [--batch K] [--dir DIR] [--queues] "
                    "[--no-snapshot] [--consume M] [--spread K]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!b.batch || b.size > 1048576 || !n || consume > n) {
        fprintf(stderr, "need -n >= 1, --batch >= 1, --size <= 1048576, --consume <= n\n");
        return 2;
    }
    bool own_dir = !dir[0];
    if (own_dir) {
        if (!tmpdir_make(dir, sizeof dir, "fsm-bench")) {
            perror("mkdtemp");
            return 1;
        }
    }
    if (fsm_open(&b.f, dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    b.receipts = calloc(n, sizeof(*b.receipts));
    char create[] = "\x83\xa2op\xacqueue.create\xa4name\xa5" "bench\xa5" "attrs\x81\xac"
                    "max_msg_size\xce\x00\x10\x00\x00";
    const char *cmd = create;
    size_t len = sizeof(create) - 1;
    struct raft_buffer buf;
    fsm_entry_encode(b.now, &cmd, &len, 1, &buf);
    fsm_apply_entry(b.f, buf.base, buf.len, NULL);
    raft_free(buf.base);

    printf("mqhub-fsm-bench: n=%zu size=%zu batch=%u dir=%s%s\n", n, b.size, b.batch, dir,
           queues ? " (queues)" : "");
    if (queues) {
        char dir2[300];
        snprintf(dir2, sizeof(dir2), "%s/restart", dir);
        mkdir(dir2, 0700);
        rc = queues_main(&b, n, dir2);
        fsm_close(b.f);
        snprintf(dir2, sizeof(dir2), "%s/restart/state.kct", dir);
        unlink(dir2);
        snprintf(dir2, sizeof(dir2), "%s/restart", dir);
        rmdir(dir2);
        goto out;
    }
    if (b.spread)
        rc |= run_phase(&b, "create", b.spread, make_create_spread);
    long rss0 = rss_kib();
    rc |= run_phase(&b, "send", n, make_send);
    long rss1 = rss_kib();
    printf("backlog  %10zu msgs  RSS +%ld KiB = %.1f bytes/msg (KC page cache included)\n", n,
           rss1 - rss0, (double)(rss1 - rss0) * 1024.0 / (double)n);
    if (snapshot)
        snapshot_cost(&b, n);
    if (consume) {
        rc |= consume_phase(&b, consume);
    } else {
        rc |= run_phase(&b, "receive", n, make_receive);
        rc |= run_phase(&b, "delete", n, make_delete);
    }
    for (size_t i = 0; i < b.n_receipts; i++)
        free(b.receipts[i]);
    fsm_close(b.f);
out:
    free(b.receipts);
    if (own_dir) {
        char path[300];
        snprintf(path, sizeof(path), "%s/state.kct", dir);
        unlink(path);
        rmdir(dir);
    }
    return rc;
}
