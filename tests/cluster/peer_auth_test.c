/* peer_auth_test.c: the raft port of a real 3-node cluster takes no byte
 * from a peer that has not proven the cluster secret (core/raft/peer.c,
 * docs/security.md "Peers").
 *
 * Forged raft traffic — a RequestVote with a higher term, an AppendEntries
 * heartbeat and an AppendEntries carrying a queue.create entry, encoded here
 * as raft 0.22's uv_encoding.c does — is sent (1) to every node as a
 * raft_uv_tcp client would (its preamble, then the messages) and (2) to the
 * leader and a follower after a handshake with a wrong secret. Each
 * connection is closed and logged as refused; afterwards the term and the
 * leader are unchanged, no node crashed, the forged queue does not exist and
 * the state digests are those of before. Garbage is closed at once; a
 * half-sent hello and a silent socket after the handshake timeout; beyond 64
 * idle connections at once, new ones are closed at once. A node
 * configured with a wrong secret cannot join (cluster.add fails, it never
 * becomes a voter, both sides log the refusal). Last, the control: the same
 * RequestVote after a handshake with the right secret does move the
 * leader's term, so the forged messages above were well-formed.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "raft/peer.h"
#include "sm/sm.h"
#include "testcluster.h"
#include "testhub.h"

#define WRONG_SECRET "wrong-secret-0000000000000000000000000000000000000000"
#define FORGED_QUEUE "forged"

static const char *g_mqhubd;
static testcluster_t g_cluster;

/* ---- raft 0.22's wire format (src/uv_encoding.c, little-endian) -------- */

typedef struct wire {
    uint8_t b[4096];
    size_t n;
} wire_t;

static void le(wire_t *w, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++)
        w->b[w->n++] = (uint8_t)(v >> (8 * i));
}

static void zeros(wire_t *w, size_t n)
{
    memset(w->b + w->n, 0, n);
    w->n += n;
}

static void message_header(wire_t *w, uint8_t type, uint8_t version, uint64_t body)
{
    le(w, type, 1);
    zeros(w, 1);
    le(w, version, 1);
    zeros(w, 5);
    le(w, body, 8);
}

/* What raft_uv_tcp's connector sends first: protocol 1, id, address. */
static void raft_preamble(wire_t *w, uint64_t id, const char *address)
{
    size_t len = (strlen(address) + 1 + 7) / 8 * 8;
    le(w, 1, 8);
    le(w, id, 8);
    le(w, len, 8);
    memcpy(w->b + w->n, address, strlen(address));
    memset(w->b + w->n + strlen(address), 0, len - strlen(address));
    w->n += len;
}

static void request_vote(wire_t *w, uint64_t term, uint64_t candidate)
{
    message_header(w, RAFT_REQUEST_VOTE, 2, 5 * 8);
    le(w, term, 8);
    le(w, candidate, 8);
    le(w, 1u << 20, 8); /* last log index: far ahead of anyone */
    le(w, term, 8);     /* last log term */
    le(w, 1, 8);        /* flags: disrupt_leader (as in a leadership transfer) */
}

static void heartbeat(wire_t *w, uint64_t term)
{
    message_header(w, RAFT_APPEND_ENTRIES, 0, 6 * 8);
    le(w, term, 8);
    zeros(w, 8 * 4); /* prev index, prev term, commit, no entries */
    zeros(w, 8);     /* unused */
}

/* An AppendEntries with one entry: the fsm's [1, now, [queue.create]]. */
static void append_create(wire_t *w, uint64_t term)
{
    static const char cmd[] = "\x83\xa2op\xacqueue.create\xa2id\x01\xa4name\xa6" FORGED_QUEUE;
    const char *cmds[1] = {cmd};
    size_t lens[1] = {sizeof cmd - 1};
    struct raft_buffer e;

    assert_int_equal(fsm_entry_encode(testcluster_now_ms(), cmds, lens, 1, &e), 0);
    message_header(w, RAFT_APPEND_ENTRIES, 0, 4 * 8 + 8 + 16 + 8);
    le(w, term, 8);
    zeros(w, 8 * 2);     /* prev index, prev term */
    le(w, 1u << 20, 8);  /* commit index */
    le(w, 1, 8);         /* one entry: term, type, 3 unused, size */
    le(w, term, 8);
    le(w, RAFT_COMMAND, 1);
    zeros(w, 3);
    le(w, e.len, 4);
    zeros(w, 8);         /* unused */
    memcpy(w->b + w->n, e.base, e.len);
    w->n += e.len;
    raft_free(e.base);
}

static void forged_messages(wire_t *w, uint64_t term, uint64_t as_id)
{
    request_vote(w, term, as_id);
    heartbeat(w, term);
    append_create(w, term);
}

/* ---- sockets, logs, status --------------------------------------------- */

static uint16_t raft_port(unsigned i)
{
    return (uint16_t)atoi(strrchr(g_cluster.nodes[i].raft, ':') + 1);
}

static int raft_connect(unsigned i, char remote[32])
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = testhub_connect_port(raft_port(i));
    assert_true(fd >= 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(remote, 32, "from 127.0.0.1:%u ", ntohs(sa.sin_port));
    return fd;
}

static int read_exact(int fd, void *buf, size_t n, int timeout_ms)
{
    uint64_t until = testcluster_now_ms() + (uint64_t)timeout_ms;
    size_t got = 0;
    while (got < n) {
        uint64_t now = testcluster_now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (now >= until || poll(&pfd, 1, (int)(until - now)) <= 0)
            return -1;
        ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* How many lines of node @i's log contain @a and @b (NULL: any). */
static int log_count(unsigned i, const char *a, const char *b)
{
    char path[400], line[1024];
    int n = 0;
    snprintf(path, sizeof path, "%s/mqhubd.log", g_cluster.nodes[i].dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && (!b || strstr(line, b));
    fclose(f);
    return n;
}

static void expect_log(unsigned i, const char *a, const char *b)
{
    for (int t = 0; t < 50 && log_count(i, a, b) == 0; t++)
        testhub_sleep_ms(100);
    if (log_count(i, a, b) == 0) {
        testcluster_dump_logs(&g_cluster);
        fail_msg("node %u logged no line with \"%s\" and \"%s\"", i + 1, a, b ? b : "");
    }
}

static tc_status_t status_of(unsigned i)
{
    tc_status_t st;
    assert_int_equal(testcluster_status(&g_cluster, i, true, 5000, &st), 0);
    return st;
}

/* ---- the handshake, as a peer that may or may not know the secret ------ */

/* Connect to node @i claiming node @as_id and run the handshake with @key.
 * *@acceptor_ok: whether the node's proof verified under @key. */
static int handshake(unsigned i, uint64_t as_id, const char *key, bool *acceptor_ok,
                     char remote[32])
{
    uint8_t hc[PEER_HELLO_SIZE], reply[PEER_HELLO_SIZE + PEER_PROOF_SIZE];
    uint8_t nonce[PEER_NONCE_SIZE], want[PEER_PROOF_SIZE], mine[PEER_PROOF_SIZE];
    int fd = raft_connect(i, remote);

    for (size_t k = 0; k < sizeof nonce; k++)
        nonce[k] = (uint8_t)rand();
    assert_int_equal(peer_hello_encode(hc, as_id, "127.0.0.1:1", nonce), 0);
    assert_int_equal(testhub_write_all(fd, hc, sizeof hc), 0);
    assert_int_equal(read_exact(fd, reply, sizeof reply, 3000), 0);
    assert_int_equal(peer_proof(want, key, PEER_ACCEPTOR, hc, reply, NULL), 0);
    *acceptor_ok = memcmp(want, reply + PEER_HELLO_SIZE, PEER_PROOF_SIZE) == 0;
    assert_int_equal(peer_proof(mine, key, PEER_CONNECTOR, hc, reply, NULL), 0);
    assert_int_equal(testhub_write_all(fd, mine, sizeof mine), 0);
    return fd;
}

/* ---- scenarios --------------------------------------------------------- */

/* (1) raft_uv_tcp's preamble and the forged messages, to every node. */
static void forged_unauthenticated(uint64_t term, unsigned leader)
{
    for (unsigned i = 0; i < 3; i++) {
        wire_t w = {.n = 0};
        char remote[32];
        int fd = raft_connect(i, remote);
        raft_preamble(&w, g_cluster.nodes[(i + 1) % 3].id, g_cluster.nodes[(i + 1) % 3].raft);
        for (int round = 0; round < 2; round++) /* two rounds: more than a hello's size */
            forged_messages(&w, term + 10 + round, g_cluster.nodes[(i + 1) % 3].id);
        assert_true(w.n >= PEER_HELLO_SIZE); /* a whole hello's worth: refused at once */
        assert_int_equal(testhub_write_all(fd, w.b, w.n), 0);
        assert_true(testhub_closed(fd, 2000));
        close(fd);
        expect_log(i, remote, "refused: bad hello: not an mqhub peer");
    }
    printf("raft_uv_tcp-style forged traffic: closed and logged on all 3 nodes (leader %u)\n",
           leader + 1);
}

/* (2) a handshake with a wrong secret, then the forged messages at once. */
static void forged_wrong_secret(uint64_t term, unsigned target, uint64_t as_id)
{
    wire_t w = {.n = 0};
    char remote[32];
    bool acceptor_ok;
    int fd = handshake(target, as_id, WRONG_SECRET, &acceptor_ok, remote);

    assert_false(acceptor_ok); /* the node's proof is bound to the real secret */
    forged_messages(&w, term + 10, as_id);
    testhub_write_all(fd, w.b, w.n); /* may fail: the node may have closed already */
    assert_true(testhub_closed(fd, 2000));
    close(fd);
    expect_log(target, remote, "refused: wrong cluster secret");
    printf("wrong secret + forged traffic to node %u: closed and logged\n", target + 1);
}

/* (3) garbage at once; a half hello and a silent socket after the timeout. */
static void garbage_and_silence(unsigned leader, unsigned follower)
{
    char r_garbage[32], r_half[32], r_silent[32];
    uint8_t junk[1000], hello[PEER_HELLO_SIZE], nonce[PEER_NONCE_SIZE] = {0};

    for (size_t k = 0; k < sizeof junk; k++)
        junk[k] = (uint8_t)rand();
    int g = raft_connect(leader, r_garbage);
    assert_int_equal(testhub_write_all(g, junk, sizeof junk), 0);
    assert_true(testhub_closed(g, 2000));
    close(g);
    expect_log(leader, r_garbage, "refused: bad hello");

    uint64_t t0 = testcluster_now_ms();
    int half = raft_connect(follower, r_half);
    int silent = raft_connect(follower, r_silent);
    assert_int_equal(peer_hello_encode(hello, 2, "127.0.0.1:1", nonce), 0);
    assert_int_equal(testhub_write_all(half, hello, sizeof hello / 2), 0);
    assert_false(testhub_closed(half, PEER_HANDSHAKE_MS - 1500)); /* still waiting */
    assert_true(testhub_closed(half, 4000));
    assert_true(testhub_closed(silent, 1000));
    uint64_t took = testcluster_now_ms() - t0;
    close(half);
    close(silent);
    expect_log(follower, r_half, "refused: no handshake within");
    expect_log(follower, r_silent, "refused: no handshake within");
    printf("garbage closed at once; half hello and silent socket closed after %llu ms\n",
           (unsigned long long)took);
}

/* (3b) a flood of idle connections: beyond 64 handshakes at once, the node
 * closes new ones at once (its file descriptors are not all taken). */
static void flood(unsigned node)
{
    enum { N = 72, MAX = 64 };
    char remote[32];
    int fds[N], closed = 0, last = 0;

    for (int k = 0; k < N; k++)
        fds[k] = raft_connect(node, remote);
    for (int k = 0; k < N; k++) { /* accepted in order: the last ones are refused */
        bool c = testhub_closed(fds[k], k < MAX ? 50 : 1000);
        closed += c;
        last += c && k >= MAX;
    }
    for (int k = 0; k < N; k++)
        close(fds[k]);
    printf("flood of %d idle connections: %d closed at once\n", N, closed);
    assert_int_equal(last, N - MAX);
    assert_true(closed <= N - MAX + 2); /* a real peer reconnecting may take a slot */
    expect_log(node, "refused: more than 64 handshakes at once", NULL);
}

/* Term, leader, crash-freedom and state as they were before the attacks
 * (the digest itself moves with every tick: it covers the entry clock). */
static void expect_undisturbed(const tc_status_t *before, unsigned leader, mqhub_client_t *cl)
{
    mqhub_queue_info_t qi;
    mqhub_queue_list_t ql;
    for (unsigned i = 0; i < 3; i++)
        assert_true(testcluster_running(&g_cluster, i));
    assert_int_equal(testcluster_leader(&g_cluster, 5000), (int)leader);
    tc_status_t now = status_of(leader);
    assert_int_equal(now.term, before->term);
    assert_true(now.is_leader);
    assert_int_equal(mqhub_client_queue_get(cl, FORGED_QUEUE, &qi), MQHUB_ENOT_FOUND);
    assert_int_equal(mqhub_client_queue_list(cl, NULL, 0, 0, &ql), 0);
    assert_int_equal(ql.total, 1);
    assert_string_equal(ql.names[0], "jobs");
    mqhub_queue_list_free(&ql);
    assert_int_equal(mqhub_client_queue_get(cl, "jobs", &qi), 0);
    assert_int_equal(qi.stats.sent_total, 1);
    assert_int_equal(testcluster_converged(&g_cluster, 10000), 0); /* same state everywhere */
    assert_int_equal(mqhub_client_send(cl, "jobs", "after", 5, NULL, NULL), 0); /* writes go on */
    printf("term %llu and leader node %u unchanged, no crash, nothing committed\n",
           (unsigned long long)now.term, leader + 1);
}

/* Send cluster.add of node @i to node @via on a raw connection and leave
 * it pending: returns the socket (its answer would come once node @i is a
 * voter, or when raft gives up on catching it up after a minute). */
static int cluster_add_pending(unsigned via, unsigned i)
{
    tc_node_t *n = &g_cluster.nodes[i];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int fd = testhub_connect_port(g_cluster.nodes[via].port);

    assert_true(fd >= 0);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mp_pack_cstr(&pk, "op");
    mp_pack_cstr(&pk, "cluster.add");
    mp_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 1);
    mp_pack_cstr(&pk, "node");
    msgpack_pack_uint64(&pk, n->id);
    mp_pack_cstr(&pk, "address");
    mp_pack_cstr(&pk, n->raft);
    mp_pack_cstr(&pk, "client");
    mp_pack_cstr(&pk, n->address);
    assert_int_equal(testhub_write_frame(fd, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
    return fd;
}

/* (4) node 4 with a wrong secret cannot join: 6 s after cluster.add it is no
 * voter and has applied nothing. */
static void wrong_secret_node(unsigned leader)
{
    assert_int_equal(testcluster_write_secret(&g_cluster, 3, WRONG_SECRET), 0);
    assert_int_equal(testcluster_start_node(&g_cluster, 3), 0);
    int fd = cluster_add_pending(leader, 3);
    expect_log(leader, "(node 4) refused: wrong cluster secret", NULL);
    expect_log(3, "refused", NULL);
    testhub_sleep_ms(6000);
    tc_status_t st = status_of(leader);
    assert_int_equal(st.n_voters, 3);
    assert_int_equal(status_of(3).last_applied, 0);
    close(fd);
    printf("node 4 with a wrong secret: no voter, nothing applied, refusals logged on "
           "both sides\n");
}

/* (5) the control: with the right secret the same RequestVote is obeyed. */
static void control_right_secret(unsigned leader, uint64_t as_id)
{
    wire_t w = {.n = 0};
    char remote[32];
    bool acceptor_ok;
    uint64_t term = status_of(leader).term;
    int fd = handshake(leader, as_id, TC_SECRET, &acceptor_ok, remote);

    assert_true(acceptor_ok);
    assert_false(testhub_closed(fd, 300)); /* accepted: raft reads it now */
    request_vote(&w, term + 5, as_id);
    assert_int_equal(testhub_write_all(fd, w.b, w.n), 0);
    uint64_t seen = term;
    for (int t = 0; t < 50 && seen < term + 5; t++) {
        tc_status_t st;
        if (testcluster_status(&g_cluster, leader, false, 1000, &st) == 0)
            seen = st.term;
        testhub_sleep_ms(100);
    }
    close(fd);
    printf("control: a proven peer's RequestVote moved the term %llu -> %llu\n",
           (unsigned long long)term, (unsigned long long)seen);
    assert_true(seen >= term + 5);
}

static void test_forged_peers(void **state)
{
    mqhub_client_opts_t o = {.timeout_ms = 10000};
    mqhub_client_t *cl = NULL;

    srand((unsigned)getpid());
    assert_int_equal(testcluster_start(&g_cluster, g_mqhubd, 4, 3, NULL), 0);
    assert_int_equal(mqhub_client_connect(&cl, g_cluster.seeds, &o, NULL, 0), 0);
    assert_int_equal(mqhub_client_queue_create(cl, "jobs", NULL), 0);
    assert_int_equal(mqhub_client_send(cl, "jobs", "before", 6, NULL, NULL), 0);
    assert_int_equal(testcluster_converged(&g_cluster, 10000), 0);
    int l = testcluster_leader(&g_cluster, 10000);
    assert_true(l >= 0);
    unsigned leader = (unsigned)l, follower = (leader + 1) % 3;
    tc_status_t before = status_of(leader);

    forged_unauthenticated(before.term, leader);
    forged_wrong_secret(before.term, leader, g_cluster.nodes[follower].id);
    forged_wrong_secret(before.term, follower, g_cluster.nodes[leader].id);
    garbage_and_silence(leader, follower);
    flood((leader + 2) % 3);
    expect_undisturbed(&before, leader, cl);

    wrong_secret_node(leader);
    control_right_secret(leader, g_cluster.nodes[follower].id);
    mqhub_client_close(cl);
    for (unsigned i = 0; i < 4; i++) /* a sanitizer report would exit non-zero */
        assert_int_equal(testcluster_stop(&g_cluster, i), 0);
}

/* Teardown, also after a failed assertion: no daemon outlives the test. */
static int stop_cluster(void **state)
{
    testcluster_cleanup(&g_cluster);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_forged_peers, stop_cluster)};
    g_mqhubd = getenv("MQHUBD");
    if ((!g_mqhubd || !*g_mqhubd) && argc > 1)
        g_mqhubd = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
