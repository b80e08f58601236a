/* snapshot_test.c: snapshots off the loop (core/raft/snapshot.c, store frozen mode).
 *
 * - store: every operation on a frozen, then draining, store answers exactly
 *   like a plain store given the same operations; a dump taken while frozen
 *   is the state at freeze time; once drained both have the same digest.
 * - fsm + snapshot_io over a fake raft_io: a deferred snapshot is dumped in
 *   the thread pool while entries keep being applied; restored into a fresh
 *   fsm it gives the digest the first fsm had at the snapshot index, and the
 *   first fsm, thawed, has the digest of an fsm that never snapshotted.
 * - raft closing while the dump is in the thread pool: raft's snapshot
 *   callback gets RAFT_CANCELED before the close callback, the store thaws.
 * - an InstallSnapshot arriving during the put reaches raft only after the
 *   put's callback (raft 0.22.1 crashes otherwise). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsm_harness.h"
#include "raft/replica.h"
#include "tmpdir.h"

#define T0 1700000000000ULL

/* ---- store frozen mode ---- */

static store_t *open_store(char *dir, size_t dl)
{
    char err[256], path[300];
    store_t *s;
    assert_non_null(tmpdir_make(dir, dl, "snap"));
    snprintf(path, sizeof path, "%s/state.kct", dir);
    if (store_open(&s, path, err, sizeof err) != 0)
        fail_msg("%s", err);
    return s;
}

static void close_store(store_t *s, const char *dir)
{
    char path[300];
    store_close(s);
    snprintf(path, sizeof path, "%s/state.kct", dir);
    unlink(path);
    rmdir(dir);
}

static int concat_record(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    char *out = arg;
    size_t n = strlen(out);
    snprintf(out + n, 8192 - n, "%.*s=%.*s;", (int)kl, k, (int)vl, v);
    return 0;
}

static void assert_same_scan(store_t *a, store_t *b, const char *prefix, const char *from)
{
    char ra[8192] = "", rb[8192] = "";
    size_t fl = from ? strlen(from) : 0;
    store_scan(a, prefix, strlen(prefix), from, fl, concat_record, ra);
    store_scan(b, prefix, strlen(prefix), from, fl, concat_record, rb);
    assert_string_equal(ra, rb);
}

static uint32_t rnd(uint64_t *s, uint32_t n)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*s >> 33) % n;
}

/* One random operation on both stores, same answer from both. */
static void same_op(store_t *a, store_t *b, uint64_t *rng)
{
    char k[16], v[32];
    size_t la, lb;
    snprintf(k, sizeof k, "%c%02u", "abc"[rnd(rng, 3)], rnd(rng, 40));
    switch (rnd(rng, 6)) {
    case 0:
    case 1:
        snprintf(v, sizeof v, "v%u", rnd(rng, 1000));
        assert_int_equal(store_put(a, k, strlen(k), v, strlen(v)), 0);
        assert_int_equal(store_put(b, k, strlen(k), v, strlen(v)), 0);
        break;
    case 2:
        assert_int_equal(store_del(a, k, strlen(k)), store_del(b, k, strlen(k)));
        break;
    case 3: {
        char *va = store_get(a, k, strlen(k), &la), *vb = store_get(b, k, strlen(k), &lb);
        assert_true((va == NULL) == (vb == NULL));
        if (va) {
            assert_int_equal(la, lb);
            assert_memory_equal(va, vb, la);
        }
        store_free(va);
        store_free(vb);
        break;
    }
    case 4:
        if (rnd(rng, 8) == 0)
            assert_int_equal(store_del_prefix(a, k, 2), store_del_prefix(b, k, 2));
        break;
    default:
        assert_same_scan(a, b, k, NULL);
        assert_same_scan(a, b, k, k);
        assert_same_scan(a, b, "", NULL);
        assert_int_equal(store_count(a), store_count(b));
        break;
    }
}

static void digest_of(store_t *s, unsigned char out[32])
{
    store_digest(s, out);
}

static void test_frozen_store_reads_through(void **state)
{
    (void)state;
    char da[256], db[256];
    store_t *a = open_store(da, sizeof da), *b = open_store(db, sizeof db);
    uint64_t rng = 7;
    unsigned char before[32], after_a[32], after_b[32], dumped[32];
    for (int i = 0; i < 300; i++)
        same_op(a, b, &rng);
    digest_of(a, before);
    assert_int_equal(store_freeze(a), 0);
    assert_true(store_frozen(a));
    assert_int_equal(store_freeze(a), MQHUB_EINTERNAL); /* one freeze at a time */
    for (int i = 0; i < 3000; i++)
        same_op(a, b, &rng);

    /* The dump of a frozen store is the state at freeze time. */
    struct raft_buffer *bufs;
    unsigned n;
    char dc[256];
    store_t *c = open_store(dc, sizeof dc);
    assert_int_equal(store_dump(a, &bufs, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_load(a, bufs[0].base, bufs[0].len), MQHUB_EINTERNAL);
    assert_int_equal(store_load(c, bufs[0].base, bufs[0].len), 0);
    raft_free(bufs[0].base);
    raft_free(bufs);
    digest_of(c, dumped);
    assert_memory_equal(dumped, before, 32);

    /* Unfrozen, the overlay drains a slice at a time while writes go on. */
    store_unfreeze(a);
    assert_false(store_frozen(a));
    int64_t left;
    int slices = 0;
    while ((left = store_drain(a, 50)) > 0) {
        for (int i = 0; i < 20; i++)
            same_op(a, b, &rng);
        slices++;
    }
    assert_int_equal(left, 0);
    assert_true(slices > 1);
    digest_of(a, after_a);
    digest_of(b, after_b);
    assert_memory_equal(after_a, after_b, 32);
    assert_int_equal(store_count(a), store_count(b));
    for (int i = 0; i < 300; i++) /* and it keeps working unfrozen */
        same_op(a, b, &rng);
    close_store(a, da);
    close_store(b, db);
    close_store(c, dc);
}

/* ---- fsm + snapshot_io over a fake raft_io ---- */

struct fake_io {
    struct raft_io io;
    char *data; /* the concatenated snapshot written */
    size_t len;
    unsigned puts;
    bool closed;
    raft_io_recv_cb recv; /* what the wrapper gave start */
};

static int fake_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                      raft_io_recv_cb recv)
{
    (void)msecs, (void)tick;
    ((struct fake_io *)io)->recv = recv;
    return 0;
}

static int fake_snapshot_put(struct raft_io *io, unsigned trailing,
                             struct raft_io_snapshot_put *req,
                             const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct fake_io *f = (struct fake_io *)io;
    assert_int_equal(trailing, 16);
    assert_int_equal(snapshot->index, 42);
    f->len = 0;
    for (unsigned i = 0; i < snapshot->n_bufs; i++)
        f->len += snapshot->bufs[i].len;
    f->data = realloc(f->data, f->len);
    size_t off = 0;
    for (unsigned i = 0; i < snapshot->n_bufs; i++) {
        memcpy(f->data + off, snapshot->bufs[i].base, snapshot->bufs[i].len);
        off += snapshot->bufs[i].len;
    }
    f->puts++;
    req->cb = cb;
    cb(req, 0);
    return 0;
}

static void fake_close(struct raft_io *io, raft_io_close_cb cb)
{
    ((struct fake_io *)io)->closed = true;
    cb(io);
}

/* What raft does around a snapshot: fsm snapshot, io put, finalize in the
 * put callback. */
struct taker {
    struct raft_fsm *rf;
    struct raft_snapshot snap;
    struct raft_io_snapshot_put req;
    int status; /* -1 until the callback */
    bool finalized_before_close;
    struct fake_io *fake;
};

static void taker_cb(struct raft_io_snapshot_put *req, int status)
{
    struct taker *t = req->data;
    t->status = status;
    t->finalized_before_close = !t->fake->closed;
    assert_int_equal(t->rf->snapshot_finalize(t->rf, &t->snap.bufs, &t->snap.n_bufs), 0);
}

static void take(struct taker *t, struct raft_io *io)
{
    memset(&t->snap, 0, sizeof t->snap);
    t->snap.index = 42;
    t->snap.term = 1;
    t->status = -1;
    t->req.data = t;
    assert_int_equal(t->rf->snapshot(t->rf, &t->snap.bufs, &t->snap.n_bufs), 0);
    assert_int_equal(t->snap.n_bufs, 1);
    assert_true(t->snap.bufs[0].len < 64); /* a placeholder, not a dump */
    assert_int_equal(io->snapshot_put(io, 16, &t->req, &t->snap, taker_cb), 0);
}

static void apply_batch(harness_t *h, unsigned from, unsigned n, const char *body)
{
    char *cmds[64];
    size_t lens[64];
    for (unsigned i = 0; i < n; i++) {
        unsigned k = from + i;
        if (k % 5 == 3)
            cmds[i] = h_pack(&lens[i], "{'op':'receive','queue':'q%u','max':3,'visibility':60}", k % 3);
        else if (k % 997 == 500)
            cmds[i] = h_pack(&lens[i], "{'op':'queue.purge','name':'q%u'}", k % 3);
        else
            cmds[i] = h_pack(&lens[i], "{'op':'send','queue':'q%u','body':'%s-%u'}", k % 3, body, k);
    }
    json_decref(h_entry(h, n, cmds, lens));
    for (unsigned i = 0; i < n; i++)
        free(cmds[i]);
}

static void setup_queues(harness_t *h)
{
    for (int q = 0; q < 3; q++)
        json_decref(h_run(h, "{'op':'queue.create','name':'q%d'}", q));
}

static bool raft_closed;

static void close_cb(struct raft_io *io)
{
    raft_closed = true;
}

static void test_snapshot_while_applying(void **state)
{
    (void)state;
    static char body[1001];
    memset(body, 'x', 1000);
    harness_t *a = h_open(T0), *ref = h_open(T0), *c = h_open(T0);
    uv_loop_t loop;
    struct fake_io fake = {.io = {.version = 2, .snapshot_put = fake_snapshot_put,
                                  .close = fake_close}};
    snapshot_io_t w;
    struct taker t = {.rf = &w.fsm, .fake = &fake};
    char d_snap[65], d_a[65], d_ref[65], d_c[65];

    uv_loop_init(&loop);
    snapshot_io_wrap(&w, &fake.io, fsm_raft(a->f), fsm_store(a->f), &loop);
    struct raft_io *io = &w.io;
    setup_queues(a);
    setup_queues(ref);
    for (unsigned i = 0; i < 4000; i += 50) {
        apply_batch(a, i, 50, body);
        apply_batch(ref, i, 50, body);
    }
    take(&t, io);
    h_digest(a, d_snap); /* the state at the snapshot index */
    for (unsigned i = 4000; i < 6000; i += 50) { /* applies go on during the dump */
        h_advance(a, 10);
        h_advance(ref, 10);
        apply_batch(a, i, 50, body);
        apply_batch(ref, i, 50, body);
    }
    json_decref(h_run(a, "{'op':'queue.delete','name':'q2'}"));
    json_decref(h_run(ref, "{'op':'queue.delete','name':'q2'}"));
    for (int i = 0; i < 10000 && t.status == -1; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(t.status, 0);
    assert_int_equal(fake.puts, 1);
    assert_null(t.snap.bufs); /* finalized */

    h_digest(a, d_a);
    h_digest(ref, d_ref);
    assert_string_equal(d_a, d_ref); /* unfrozen: as if never snapshotted */
    for (int i = 0; i < 10000 && w.draining; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_null(w.draining);
    h_digest(a, d_a);
    assert_string_equal(d_a, d_ref); /* drained */

    /* Restored through a wrapper, which checks and strips the checksum
     * trailer; one flipped byte is refused and leaves the buffer to raft. */
    snapshot_io_t wc;
    snapshot_io_wrap(&wc, &fake.io, fsm_raft(c->f), fsm_store(c->f), &loop);
    struct raft_fsm *rc = &wc.fsm;
    struct raft_buffer one = {.base = raft_malloc(fake.len), .len = fake.len};
    memcpy(one.base, fake.data, fake.len);
    ((char *)one.base)[fake.len / 2] ^= 1;
    assert_int_equal(rc->restore(rc, &one), RAFT_CORRUPT);
    ((char *)one.base)[fake.len / 2] ^= 1;
    assert_int_equal(rc->restore(rc, &one), 0);
    h_digest(c, d_c);
    assert_string_equal(d_c, d_snap);
    assert_string_not_equal(d_c, d_a);

    /* A second snapshot works too (the store was thawed). */
    take(&t, io);
    for (int i = 0; i < 10000 && t.status == -1; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(t.status, 0);
    assert_int_equal(fake.puts, 2);

    raft_closed = false;
    io->close(io, close_cb);
    for (int i = 0; i < 10000 && !raft_closed; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(raft_closed);
    free(fake.data);
    assert_int_equal(uv_loop_close(&loop), 0);
    h_close(a);
    h_close(ref);
    h_close(c);
}

static void test_close_during_dump(void **state)
{
    (void)state;
    harness_t *a = h_open(T0), *ref = h_open(T0);
    uv_loop_t loop;
    struct fake_io fake = {.io = {.version = 2, .snapshot_put = fake_snapshot_put,
                                  .close = fake_close}};
    snapshot_io_t w;
    struct taker t = {.rf = &w.fsm, .fake = &fake};
    char d_a[65], d_ref[65];

    uv_loop_init(&loop);
    snapshot_io_wrap(&w, &fake.io, fsm_raft(a->f), fsm_store(a->f), &loop);
    struct raft_io *io = &w.io;
    setup_queues(a);
    setup_queues(ref);
    apply_batch(a, 0, 50, "b");
    apply_batch(ref, 0, 50, "b");
    take(&t, io);
    apply_batch(a, 50, 50, "b");
    apply_batch(ref, 50, 50, "b");
    raft_closed = false;
    io->close(io, close_cb);
    assert_false(fake.closed); /* waits for the dump */
    for (int i = 0; i < 10000 && !raft_closed; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(raft_closed);
    assert_int_equal(t.status, RAFT_CANCELED);
    assert_true(t.finalized_before_close);
    assert_int_equal(fake.puts, 0);
    h_digest(a, d_a);
    h_digest(ref, d_ref);
    assert_string_equal(d_a, d_ref);
    assert_int_equal(uv_loop_close(&loop), 0);
    h_close(a);
    h_close(ref);
}

/* ---- an InstallSnapshot during our put (snapshot.c "Installs") ---- */

static struct {
    unsigned n;
    raft_index last_index;
    bool after_put; /* the snapshot's callback had run */
    char address[32];
    struct taker *t;
} got;

/* As raft 0.22.1's receive callback: takes the message's data, but for an
 * install while it persists another one, which it ignores unfreed. */
static void raft_recv(struct raft_io *io, struct raft_message *m)
{
    struct raft *r = io->data;
    got.n++;
    if (r->snapshot.installing && m->install_snapshot.term >= r->current_term)
        return;
    got.last_index = m->install_snapshot.last_index;
    got.after_put = got.t->status != -1;
    snprintf(got.address, sizeof got.address, "%s", m->server_address);
    raft_configuration_close(&m->install_snapshot.conf);
    raft_free(m->install_snapshot.data.base);
}

/* raft_uv receiving an install of @index from node 2 (its buffers freed
 * with the message, as raft_uv's are). */
static void arrive(struct fake_io *fake, raft_index index)
{
    char address[] = "127.0.0.1:7002";
    struct raft_message m = {.type = RAFT_INSTALL_SNAPSHOT, .server_id = 2,
                             .server_address = address};
    m.install_snapshot.last_index = index;
    m.install_snapshot.term = 1;
    m.install_snapshot.data = (struct raft_buffer){raft_malloc(100), 100};
    raft_configuration_init(&m.install_snapshot.conf);
    assert_int_equal(raft_configuration_add(&m.install_snapshot.conf, 2, address, RAFT_VOTER), 0);
    fake->recv(&fake->io, &m);
    memset(address, 'x', sizeof address - 1); /* raft_uv reuses its buffers */
}

/* raft 0.22.1 crashes on an install that arrives while it takes a
 * snapshot: the wrapper holds it until the put's callback ran, then raft
 * gets the newest one (an older one is freed), address intact; at other
 * times it passes at once; one held at close is freed; one raft ignores
 * because it persists another is freed (raft 0.22.1 leaks it). */
static void test_install_held_during_put(void **state)
{
    (void)state;
    harness_t *a = h_open(T0);
    uv_loop_t loop;
    struct fake_io fake = {.io = {.version = 2, .snapshot_put = fake_snapshot_put,
                                  .close = fake_close, .start = fake_start}};
    snapshot_io_t w;
    struct taker t = {.rf = &w.fsm, .fake = &fake};
    struct raft r;

    memset(&got, 0, sizeof got);
    got.t = &t;
    uv_loop_init(&loop);
    snapshot_io_wrap(&w, &fake.io, fsm_raft(a->f), fsm_store(a->f), &loop);
    struct raft_io *io = &w.io;
    memset(&r, 0, sizeof r);
    r.io = io;
    io->data = &r;
    assert_int_equal(io->start(io, 100, NULL, raft_recv), 0);
    setup_queues(a);
    apply_batch(a, 0, 50, "b");

    t.status = 0;
    arrive(&fake, 7); /* no put in flight: at once */
    assert_int_equal(got.n, 1);
    assert_int_equal(got.last_index, 7);
    r.snapshot.installing = true; /* raft ignores it: the wrapper frees it (ASan) */
    r.current_term = 1;
    arrive(&fake, 8);
    assert_int_equal(got.n, 2);
    r.snapshot.installing = false;
    got.n = 1;

    take(&t, io);
    arrive(&fake, 8);
    arrive(&fake, 9);
    assert_int_equal(got.n, 1); /* held */
    for (int i = 0; i < 10000 && t.status == -1; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(t.status, 0);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.last_index, 9);
    assert_true(got.after_put);
    assert_string_equal(got.address, "127.0.0.1:7002");

    take(&t, io);
    arrive(&fake, 10);
    raft_closed = false;
    io->close(io, close_cb);
    for (int i = 0; i < 10000 && !raft_closed; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(raft_closed);
    assert_int_equal(got.n, 2); /* freed, not handed to a closing raft */
    free(fake.data);
    assert_int_equal(uv_loop_close(&loop), 0);
    h_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frozen_store_reads_through),
        cmocka_unit_test(test_snapshot_while_applying),
        cmocka_unit_test(test_close_during_dump),
        cmocka_unit_test(test_install_held_during_put),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
