/* peer_tls_proxy_test.c: what a machine between the nodes sees (issue 11;
 * docs/security.md "Peer TLS"). Three real mqhubd whose peer connections
 * go through relays this test runs: each node's raft address, as the other
 * two know it (their `peers`), is a loopback port of a relay that forwards
 * to the node's real raft port and records every byte both ways. Every
 * connection opened to a configured address goes through it: votes and the
 * leader's AppendEntries, which carry the bodies. (raft sends its answers to
 * the address the sender's handshake names, the sender's own raft port, so
 * those connections bypass the relay.) Messages with a distinctive body are
 * sent and received.
 *
 *   test_plaintext_shows_bodies  the control: secret handshake, no TLS; the
 *                                recorded bytes hold the bodies.
 *   test_tls_hides_bodies        peer TLS on: the cluster commits through the
 *                                relays, the recorded bytes never hold a body.
 *   test_tls_tamper              the relay flips one byte of the leader's
 *                                stream: the receiving node logs the TLS
 *                                failure and drops the connection, raft
 *                                reconnects, no node crashes, every
 *                                acknowledged body comes back intact exactly
 *                                once and the state digests agree.
 *
 * Start with relay_listen() and relay_start() (the relays, one thread, poll
 * over blocking sockets) and cluster_start() (configs written here: testcluster.c knows no
 * relay); the rest is testcluster's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testcluster.h"
#include "testhub.h"
#include "tls_pki.h"
#include "tmpdir.h"

#define NODES 3
#define QUEUE "orders"
#define MARK "PROXY-BODY-9c41e7"  /* every body: MARK-<n>-<padding> */
#define SENDS 120
#define PAIRS_MAX 64              /* relayed connections open at once */
#define RECORD_MAX (256u << 20)   /* bytes recorded per relay, at most */
#define TAMPER_MIN 100            /* a chunk at least this long is tampered with */

/* ------------------------------------------------------------------ relay */

typedef struct pair {
    int from_fd, to_fd; /* the connector's side (accepted), the node's side */
} pair_t;

typedef struct relay {
    int listen_fd[NODES];
    uint16_t port[NODES];  /* what the peers dial */
    uint16_t target[NODES]; /* the node's real raft port */
    pair_t pairs[PAIRS_MAX];
    unsigned n_pairs;
    pthread_t thread;
    bool running;          /* the thread was started */
    atomic_bool stop;
    atomic_bool tamper;    /* flip one byte of the next long connector->node chunk */
    atomic_uint tampered;  /* bytes flipped */
    pthread_mutex_t lock;  /* the record below */
    char *rec;
    size_t rec_len;
    bool rec_full;         /* RECORD_MAX reached (the test then fails) */
    uint64_t relayed;      /* bytes forwarded, both ways */
    unsigned accepted;     /* connections relayed */
} relay_t;

static void relay_record(relay_t *r, const char *p, size_t n)
{
    pthread_mutex_lock(&r->lock);
    r->relayed += n;
    if (r->rec_len + n > RECORD_MAX) {
        r->rec_full = true;
    } else {
        char *grown = realloc(r->rec, r->rec_len + n);
        if (grown == NULL) {
            r->rec_full = true;
        } else {
            r->rec = grown;
            memcpy(r->rec + r->rec_len, p, n);
            r->rec_len += n;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

static int listen_loopback(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void pair_close(relay_t *r, unsigned i)
{
    close(r->pairs[i].from_fd);
    close(r->pairs[i].to_fd);
    r->pairs[i] = r->pairs[--r->n_pairs];
}

/* A connection to listener @l: connect to its node and relay the pair. */
static void relay_accept(relay_t *r, unsigned l)
{
    struct timeval tv = {.tv_sec = 5};
    int in = accept4(r->listen_fd[l], NULL, NULL, SOCK_CLOEXEC);
    if (in < 0)
        return;
    int out = r->n_pairs < PAIRS_MAX ? testhub_connect_port(r->target[l]) : -1;
    if (out < 0) {
        close(in);
        return;
    }
    /* A write stuck for 5 s drops the pair instead of the relay; no Nagle
     * delay added to what the nodes send with TCP_NODELAY. */
    int one = 1;
    setsockopt(in, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(out, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(in, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    r->pairs[r->n_pairs++] = (pair_t){in, out};
    r->accepted++;
}

/* Forward what @from has to @to; @tamper: this is connector->node. False
 * when the pair is done (EOF, error). */
static bool relay_forward(relay_t *r, int from, int to, bool tamper)
{
    char buf[65536];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return n < 0 && (errno == EINTR || errno == EAGAIN);
    relay_record(r, buf, (size_t)n); /* what was on the wire before the relay */
    if (tamper && n >= TAMPER_MIN && atomic_exchange(&r->tamper, false)) {
        /* The last byte of a write is inside the last TLS record's tag. */
        buf[n - 1] ^= 0x01;
        atomic_fetch_add(&r->tampered, 1);
    }
    return testhub_write_all(to, buf, (size_t)n) == 0;
}

static void *relay_run(void *arg)
{
    relay_t *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd pf[NODES + 2 * PAIRS_MAX];
        unsigned n = 0, np = r->n_pairs;
        for (unsigned l = 0; l < NODES; l++)
            pf[n++] = (struct pollfd){.fd = r->listen_fd[l], .events = POLLIN};
        for (unsigned i = 0; i < np; i++) {
            pf[n++] = (struct pollfd){.fd = r->pairs[i].from_fd, .events = POLLIN};
            pf[n++] = (struct pollfd){.fd = r->pairs[i].to_fd, .events = POLLIN};
        }
        if (poll(pf, n, 100) <= 0)
            continue;
        /* Pairs first, from the last (pair_close moves the last one down). */
        for (unsigned i = np; i-- > 0;) {
            short a = pf[NODES + 2 * i].revents, b = pf[NODES + 2 * i + 1].revents;
            bool ok = true;
            if (a)
                ok = relay_forward(r, r->pairs[i].from_fd, r->pairs[i].to_fd, true);
            if (ok && b)
                ok = relay_forward(r, r->pairs[i].to_fd, r->pairs[i].from_fd, false);
            if (!ok)
                pair_close(r, i);
        }
        for (unsigned l = 0; l < NODES; l++)
            if (pf[l].revents & POLLIN)
                relay_accept(r, l);
    }
    return NULL;
}

/* One listener per node (its port in r->port[i], bound before the nodes'
 * ports are picked, so they never collide). 0 or -1. */
static int relay_listen(relay_t *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    for (unsigned i = 0; i < NODES; i++)
        r->listen_fd[i] = -1;
    for (unsigned i = 0; i < NODES; i++)
        if ((r->listen_fd[i] = listen_loopback(&r->port[i])) < 0)
            return -1;
    return 0;
}

/* Relay listener i's connections to @targets[i] from now on. 0 or -1. */
static int relay_start(relay_t *r, const uint16_t *targets)
{
    memcpy(r->target, targets, sizeof r->target);
    r->running = pthread_create(&r->thread, NULL, relay_run, r) == 0;
    return r->running ? 0 : -1;
}

/* Stop the thread, close everything (also after a half-done relay_start). */
static void relay_stop(relay_t *r)
{
    if (!r->running && r->rec == NULL && r->listen_fd[0] == 0)
        return; /* never started (zeroed) */
    atomic_store(&r->stop, true);
    if (r->running)
        pthread_join(r->thread, NULL);
    while (r->n_pairs)
        pair_close(r, 0);
    for (unsigned i = 0; i < NODES; i++)
        if (r->listen_fd[i] >= 0)
            close(r->listen_fd[i]);
    free(r->rec);
    pthread_mutex_destroy(&r->lock);
    memset(r, 0, sizeof *r);
}

/* How many times @needle occurs in everything recorded. */
static unsigned relay_count(relay_t *r, const char *needle)
{
    size_t nl = strlen(needle);
    unsigned count = 0;
    pthread_mutex_lock(&r->lock);
    for (const char *p = r->rec, *end = r->rec + r->rec_len;
         p != NULL && (size_t)(end - p) >= nl; p++) {
        p = memmem(p, (size_t)(end - p), needle, nl);
        if (p == NULL)
            break;
        count++;
    }
    pthread_mutex_unlock(&r->lock);
    return count;
}

/* ---------------------------------------------------------------- cluster */

static const char *g_mqhubd;
static testcluster_t g_cluster;
static relay_t g_relay;
static tls_pki_t g_pki;

static int write_config(testcluster_t *c, unsigned i, const char *extra)
{
    tc_node_t *nd = &c->nodes[i];
    char path[340];
    snprintf(path, sizeof path, "%s/config.lua", nd->dir);
    if (testcluster_write_secret(c, i, TC_SECRET) != 0)
        return -1;
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "node { id = %llu, data = \"%s/data\", raft = \"%s\", client = \"%s\",\n"
               "       cluster_secret_file = \"cluster.secret\"%s }\n",
            (unsigned long long)nd->id, nd->dir, nd->raft, nd->address, extra);
    fprintf(f, "transport \"tcp\" { listen = \"%s\" }\n", nd->address);
    fprintf(f, "log { level = \"info\" }\n");
    fprintf(f, "queue \"%s\" { visibility_timeout = 30 }\n", QUEUE);
    fprintf(f, "peers {\n");
    for (unsigned j = 0; j < NODES; j++) /* every peer behind its relay */
        if (j != i)
            fprintf(f, "  [%llu] = { raft = \"127.0.0.1:%u\", client = \"%s\" },\n",
                    (unsigned long long)c->nodes[j].id, g_relay.port[j], c->nodes[j].address);
    fprintf(f, "}\n");
    return fclose(f);
}

/* Three nodes whose peers reach each other only through g_relay; @tls:
 * with node.peer_tls_* (g_pki). Waits for a leader. 0 or -1. */
static int cluster_start(bool tls)
{
    testcluster_t *c = &g_cluster;
    uint16_t taken[3 * NODES], *ports = taken + NODES, raft[NODES];
    char extra[1100] = "", cert[300], key[300], ca[300];

    memset(c, 0, sizeof *c);
    snprintf(c->mqhubd, sizeof c->mqhubd, "%s", g_mqhubd);
    if (!tmpdir_make(c->dir, sizeof c->dir, "test"))
        return -1;
    c->n = NODES;
    if (relay_listen(&g_relay) != 0)
        return -1;
    memcpy(taken, g_relay.port, sizeof g_relay.port); /* then the nodes' ports */
    for (unsigned i = 0; i < 2 * NODES; i++)
        if ((ports[i] = testhub_free_port(taken, NODES + i)) == 0)
            return -1;
    for (unsigned i = 0; i < NODES; i++) {
        tc_node_t *nd = &c->nodes[i];
        nd->id = i + 1;
        nd->port = ports[2 * i];
        raft[i] = ports[2 * i + 1];
        if (snprintf(nd->dir, sizeof nd->dir, "%s/n%u", c->dir, i + 1) >= (int)sizeof nd->dir)
            return -1;
        snprintf(nd->address, sizeof nd->address, "127.0.0.1:%u", nd->port);
        snprintf(nd->raft, sizeof nd->raft, "127.0.0.1:%u", raft[i]);
        size_t l = strlen(c->seeds);
        snprintf(c->seeds + l, sizeof c->seeds - l, "%s%s", l ? "," : "", nd->address);
        if (mkdir(nd->dir, 0755) != 0)
            return -1;
    }
    if (relay_start(&g_relay, raft) != 0)
        return -1;
    if (tls) {
        if (tls_pki_make(&g_pki) != 0)
            return -1;
        snprintf(extra, sizeof extra,
                 ",\n       peer_tls_cert = \"%s\", peer_tls_key = \"%s\", peer_tls_ca = \"%s\"",
                 tls_pki_path(&g_pki, "server.pem", cert, sizeof cert),
                 tls_pki_path(&g_pki, "server.key", key, sizeof key),
                 tls_pki_path(&g_pki, "ca.pem", ca, sizeof ca));
    }
    for (unsigned i = 0; i < NODES; i++)
        if (write_config(c, i, extra) != 0 || testcluster_start_node(c, i) != 0)
            return -1;
    return testcluster_leader(c, 20000) >= 0 ? 0 : -1;
}

/* Teardown, also after a failed assertion: no daemon or relay outlives it. */
static int stop_all(void **state)
{
    (void)state;
    testcluster_cleanup(&g_cluster);
    relay_stop(&g_relay);
    if (g_pki.dir[0])
        tls_pki_cleanup(&g_pki);
    memset(&g_pki, 0, sizeof g_pki);
    return 0;
}

/* ----------------------------------------------------------- the traffic */

static mqhub_client_t *connect_all(void)
{
    mqhub_client_opts_t o = {.timeout_ms = 4000};
    mqhub_client_t *cl = NULL;
    mqhub_queue_info_t qi;
    for (int i = 0; i < 100 && !cl; i++)
        if (mqhub_client_connect(&cl, g_cluster.seeds, &o, NULL, 0) != 0)
            testhub_sleep_ms(100);
    assert_non_null(cl);
    for (int i = 0; i < 100 && mqhub_client_queue_get(cl, QUEUE, &qi) != 0; i++)
        testhub_sleep_ms(100);
    return cl;
}

static void body_of(unsigned n, char *buf, size_t size)
{
    snprintf(buf, size, "%s-%04u-the-quick-brown-fox-jumps-over-the-lazy-dog", MARK, n);
}

/* Send bodies @from..@to-1; mark the acknowledged ones. */
static void send_range(mqhub_client_t *cl, unsigned from, unsigned to, bool *acked)
{
    for (unsigned n = from; n < to; n++) {
        char body[128];
        body_of(n, body, sizeof body);
        acked[n] = mqhub_client_send(cl, QUEUE, body, strlen(body), NULL, NULL) == 0;
    }
}

/* Receive and delete until the queue stays empty. Each body must be one
 * that was sent, byte for byte; @seen counts them. */
static void drain(mqhub_client_t *cl, unsigned *seen)
{
    mqhub_receive_opts_t ro = {.max = 64, .wait = 1, .visibility = 30};
    for (int empty = 0, rounds = 0; empty < 3 && rounds < 400; rounds++) {
        mqhub_msg_list_t ml;
        const char *receipts[64];
        int st[64];
        if (mqhub_client_receive(cl, QUEUE, &ro, &ml) != 0) {
            testhub_sleep_ms(200);
            continue;
        }
        empty = ml.n == 0 ? empty + 1 : 0;
        for (size_t i = 0; i < ml.n; i++) {
            char want[128];
            unsigned n = (unsigned)strtoul((char *)ml.msgs[i].body + strlen(MARK) + 1, NULL, 10);
            assert_true(n < SENDS);
            body_of(n, want, sizeof want);
            assert_int_equal(ml.msgs[i].body_len, strlen(want));
            assert_memory_equal(ml.msgs[i].body, want, strlen(want));
            seen[n]++;
            receipts[i] = ml.msgs[i].receipt;
        }
        if (ml.n)
            mqhub_client_delete(cl, QUEUE, receipts, ml.n, st);
        mqhub_msg_list_free(&ml);
    }
}

/* Every acknowledged body received exactly once, none that was not sent;
 * the nodes' digests equal. */
static void check_history(const bool *acked, const unsigned *seen)
{
    unsigned n_acked = 0, lost = 0, twice = 0;
    for (unsigned n = 0; n < SENDS; n++) {
        n_acked += acked[n];
        lost += acked[n] && seen[n] == 0;
        twice += seen[n] > 1;
    }
    int conv = testcluster_converged(&g_cluster, 20000);
    printf("%u of %d sends acknowledged, %u lost, %u received twice; digests %s\n", n_acked,
           SENDS, lost, twice, conv == 0 ? "equal" : "DIFFER");
    if (lost || twice || conv)
        testcluster_dump_logs(&g_cluster);
    assert_true(n_acked > SENDS / 2);
    assert_int_equal(lost, 0);
    assert_int_equal(twice, 0);
    assert_int_equal(conv, 0);
}

static void print_relay(const char *what)
{
    pthread_mutex_lock(&g_relay.lock);
    printf("%s: relay forwarded %llu bytes on %u connections\n", what,
           (unsigned long long)g_relay.relayed, g_relay.accepted);
    pthread_mutex_unlock(&g_relay.lock);
}

/* ------------------------------------------------------------------ tests */

static void test_plaintext_shows_bodies(void **state)
{
    static bool acked[SENDS];
    static unsigned seen[SENDS];
    (void)state;

    assert_int_equal(cluster_start(false), 0);
    mqhub_client_t *cl = connect_all();
    send_range(cl, 0, SENDS, acked);
    drain(cl, seen);
    mqhub_client_close(cl);
    check_history(acked, seen);
    print_relay("plaintext");
    unsigned found = relay_count(&g_relay, MARK);
    printf("plaintext: the relay's record holds the body marker %u times\n", found);
    assert_false(g_relay.rec_full);
    /* Each body goes to two followers (and more on a resend). */
    assert_true(found >= SENDS);
}

static void test_tls_hides_bodies(void **state)
{
    static bool acked[SENDS];
    static unsigned seen[SENDS];
    (void)state;

    assert_int_equal(cluster_start(true), 0);
    for (unsigned i = 0; i < NODES; i++)
        assert_true(testcluster_log_count(&g_cluster, i,
                                          "inside TLS with a certificate of the cluster CA") > 0);
    mqhub_client_t *cl = connect_all();
    send_range(cl, 0, SENDS, acked);
    drain(cl, seen);
    mqhub_client_close(cl);
    check_history(acked, seen);
    print_relay("peer TLS");
    unsigned found = relay_count(&g_relay, MARK);
    printf("peer TLS: the relay's record holds the body marker %u times\n", found);
    assert_false(g_relay.rec_full);
    /* Commits went through the relays (there is no other path) ... */
    assert_true(g_relay.relayed > (uint64_t)SENDS * 2 * 60);
    /* ... and none of them in the clear; nor a shorter part of a body. */
    assert_int_equal(found, 0);
    assert_int_equal(relay_count(&g_relay, "the-quick-brown-fox"), 0);
}

static void test_tls_tamper(void **state)
{
    static bool acked[SENDS];
    static unsigned seen[SENDS];
    unsigned logged = 0;
    (void)state;

    assert_int_equal(cluster_start(true), 0);
    mqhub_client_t *cl = connect_all();
    send_range(cl, 0, SENDS / 3, acked);
    /* Flip one byte of the next long connector->node chunk: an
     * AppendEntries carrying bodies, sent while the next sends run. */
    atomic_store(&g_relay.tamper, true);
    send_range(cl, SENDS / 3, 2 * SENDS / 3, acked);
    assert_int_equal(atomic_load(&g_relay.tampered), 1);
    for (int i = 0; i < 100 && logged == 0; i++) {
        for (unsigned n = 0; n < NODES; n++)
            logged += testcluster_log_count(&g_cluster, n, "closed: TLS:") > 0;
        if (logged == 0)
            testhub_sleep_ms(100);
    }
    printf("tampered: %u node(s) logged a TLS failure\n", logged);
    assert_true(logged >= 1);
    send_range(cl, 2 * SENDS / 3, SENDS, acked);
    drain(cl, seen);
    mqhub_client_close(cl);
    for (unsigned n = 0; n < NODES; n++)
        assert_true(testcluster_running(&g_cluster, n));
    check_history(acked, seen);
    print_relay("tampered");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_plaintext_shows_bodies, stop_all),
        cmocka_unit_test_teardown(test_tls_hides_bodies, stop_all),
        cmocka_unit_test_teardown(test_tls_tamper, stop_all),
    };
    g_mqhubd = getenv("MQHUBD");
    if ((!g_mqhubd || !*g_mqhubd) && argc > 1)
        g_mqhubd = argv[1];
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
