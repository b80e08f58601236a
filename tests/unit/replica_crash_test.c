/* replica_crash_test.c: kill -9 while sending, then check nothing
 * acknowledged was lost or duplicated.
 *
 * Each round forks a child that runs a one-node group on the shared data dir
 * and sends continuously (64 in flight), writing the number of each
 * acknowledged send to a pipe. The parent kills it with SIGKILL at a random
 * moment (seeded, so a failure replays), then restarts the node in-process from
 * disk, receives everything and checks that every acknowledged send of the
 * round is there exactly once and nothing else is (messages of earlier rounds
 * were deleted after their check, so they must not come back either).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "replica_util.h"

#define ROUNDS 8
#define ROUND_IDS 1000000u   /* round r sends bodies r*ROUND_IDS + k */
#define CHILD_IN_FLIGHT 64
#define SEED 20261125u

/* ---- the child: send forever, report acknowledgements ----------------------- */

typedef struct child {
    tnode_t n;
    int fd;
    uint64_t next;
    unsigned outstanding;
    msgpack_sbuffer sb;
} child_t;

static void child_send(child_t *c);

static void child_done(void *arg, int status, const char *reply, size_t len)
{
    uint64_t *slot = arg;
    child_t *c = (child_t *)(uintptr_t)slot[1];
    if (status == 0 && reply_ok(reply, len) &&
        write(c->fd, &slot[0], sizeof slot[0]) != sizeof slot[0])
        _exit(3);
    free(slot);
    c->outstanding--;
    child_send(c);
}

static void child_send(child_t *c)
{
    while (c->outstanding < CHILD_IN_FLIGHT) {
        uint64_t *slot = malloc(2 * sizeof *slot);
        slot[0] = c->next++;
        slot[1] = (uint64_t)(uintptr_t)c;
        cmd_send(&c->sb, slot[0], "crash", slot[0]);
        if (replica_submit(c->n.r, c->sb.data, c->sb.size, child_done, slot) != 0)
            _exit(4);
        c->outstanding++;
    }
}

static void run_child(const char *dir, int port, int fd, unsigned round)
{
    child_t c = {.fd = fd, .next = (uint64_t)round * ROUND_IDS};
    msgpack_sbuffer_init(&c.sb);
    if (tnode_start(&c.n, dir, port, 128, 32) != 0 || !tnode_wait_leader(&c.n, 10000))
        _exit(2);
    if (round == 0) {
        char *reply;
        size_t len;
        cmd_queue_create(&c.sb, 1, "crash");
        if (tnode_call(&c.n, &c.sb, &reply, &len) != 0 || !reply_ok(reply, len))
            _exit(5);
        free(reply);
    }
    child_send(&c);
    uv_run(&c.n.loop, UV_RUN_DEFAULT); /* until killed */
    _exit(6);
}

/* ---- the parent ---------------------------------------------------------- */

typedef struct check {
    unsigned char *seen;  /* per body of this round: 1 acked, +2 per receive */
    uint64_t base;
    uint64_t max_sent;
    unsigned foreign;     /* bodies from another round */
    char **receipts;
    unsigned n_receipts, cap_receipts;
} check_t;

static void on_received(void *arg, uint64_t body, const char *receipt, size_t rlen)
{
    check_t *k = arg;
    if (body < k->base || body >= k->base + ROUND_IDS) {
        k->foreign++;
        return;
    }
    k->seen[body - k->base] += 2;
    if (k->n_receipts == k->cap_receipts) {
        k->cap_receipts = k->cap_receipts ? 2 * k->cap_receipts : 1024;
        k->receipts = realloc(k->receipts, k->cap_receipts * sizeof *k->receipts);
    }
    k->receipts[k->n_receipts++] = strndup(receipt, rlen);
}

/* Wait up to @ms for acknowledgements, then read all that are there (the
 * pipe is non-blocking; each 8-byte write is atomic). Returns the count. */
static unsigned read_acks(int fd, check_t *k, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint64_t v[512];
    ssize_t got;
    unsigned n = 0;

    if (poll(&p, 1, ms) <= 0)
        return 0;
    while ((got = read(fd, v, sizeof v)) > 0) {
        for (ssize_t i = 0; i < got / (ssize_t)sizeof v[0]; i++) {
            assert_true(v[i] >= k->base && v[i] < k->base + ROUND_IDS);
            k->seen[v[i] - k->base] = 1;
            n++;
        }
    }
    return n;
}

static void delete_received(tnode_t *n, check_t *k)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (unsigned off = 0; off < k->n_receipts; off += 256) {
        unsigned cnt = k->n_receipts - off < 256 ? k->n_receipts - off : 256;
        char *reply;
        size_t len;
        cmd_delete(&sb, 9, "crash", k->receipts + off, cnt);
        assert_int_equal(tnode_call(n, &sb, &reply, &len), 0);
        assert_true(reply_ok(reply, len));
        free(reply);
    }
    for (unsigned i = 0; i < k->n_receipts; i++)
        free(k->receipts[i]);
    k->n_receipts = 0;
    msgpack_sbuffer_destroy(&sb);
}

static void run_round(const char *dir, int port, unsigned round, check_t *k)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        run_child(dir, port, fds[1], round);
    }
    close(fds[1]);
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);

    /* Wait for the first acknowledgement, then kill at a random moment. */
    unsigned acked = 0;
    for (int i = 0; i < 100 && acked == 0; i++)
        acked += read_acks(fds[0], k, 100);
    assert_true(acked > 0);
    unsigned wait_ms = 20 + (unsigned)(rand() % 400);
    uint64_t deadline = clock_mono_ms() + wait_ms;
    while (clock_mono_ms() < deadline)
        acked += read_acks(fds[0], k, 10);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    acked += read_acks(fds[0], k, 0);
    close(fds[0]);

    /* Restart in-process and check. */
    tnode_t n;
    assert_int_equal(tnode_start(&n, dir, port, 128, 32), 0);
    assert_true(tnode_wait_leader(&n, 10000));
    long got = drain_queue(&n, "crash", on_received, k);
    assert_true(got >= 0);
    unsigned lost = 0, dup = 0, unacked = 0;
    for (uint64_t i = 0; i < ROUND_IDS; i++) {
        unsigned char v = k->seen[i];
        if (v == 1)
            lost++;
        else if (v > 3)
            dup++;
        else if (v == 2)
            unacked++; /* committed, the child died before reporting it */
    }
    printf("# round %u: killed after %u ms, %u acked, %ld received (%u unreported), "
           "lost %u, duplicated %u, foreign %u\n",
           round, wait_ms, acked, got, unacked, lost, dup, k->foreign);
    assert_int_equal(lost, 0);
    assert_int_equal(dup, 0);
    assert_int_equal(k->foreign, 0);
    delete_received(&n, k);
    tnode_stop(&n);
}

static void test_kill_while_sending(void **state)
{
    char dir[256];
    int port = test_port(500);
    check_t k = {0};

    srand(SEED);
    make_dir(dir, sizeof dir, "crash");
    k.seen = malloc(ROUND_IDS);
    for (unsigned round = 0; round < ROUNDS; round++) {
        memset(k.seen, 0, ROUND_IDS);
        k.base = (uint64_t)round * ROUND_IDS;
        run_round(dir, port, round, &k);
    }
    free(k.seen);
    free(k.receipts);
    rm_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_while_sending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
