/* peer_test.c: core/raft/peer.c — the handshake's wire format and proofs
 * (a fixed HMAC vector computed outside mqhub), then two transports on one
 * loop over loopback: the right secret hands raft both ends and the first
 * bytes after the handshake reach the accepted stream intact; a wrong
 * secret, a wrong node id, an unauthenticated node against a keyed one, and
 * a node without a secret are all refused before raft gets a stream.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/errors.h"
#include "raft/peer.h"

#define KEY "0123456789abcdef0123456789abcdef"
#define OTHER_KEY "fedcba9876543210fedcba9876543210"

static void fixed_hellos(uint8_t hc[PEER_HELLO_SIZE], uint8_t ha[PEER_HELLO_SIZE])
{
    uint8_t nc[PEER_NONCE_SIZE], na[PEER_NONCE_SIZE];
    for (int i = 0; i < PEER_NONCE_SIZE; i++) {
        nc[i] = (uint8_t)i;
        na[i] = (uint8_t)(32 + i);
    }
    assert_int_equal(peer_hello_encode(hc, 1, "127.0.0.1:6301", nc), 0);
    assert_int_equal(peer_hello_encode(ha, 2, "127.0.0.1:6302", na), 0);
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static void test_hello_roundtrip(void **state)
{
    uint8_t h[PEER_HELLO_SIZE], nonce[PEER_NONCE_SIZE] = {7};
    char addr[PEER_ADDRESS_MAX + 1], why[128], longest[PEER_ADDRESS_MAX + 2];
    uint64_t id;

    assert_int_equal(peer_hello_encode(h, 42, "node-4.example:6300", nonce), 0);
    assert_memory_equal(h, "MQHP\x01\x00\x00\x13", 8);
    assert_int_equal(peer_hello_decode(h, &id, addr, why, sizeof why), 0);
    assert_int_equal(id, 42);
    assert_string_equal(addr, "node-4.example:6300");

    memset(longest, 'a', sizeof longest);
    longest[PEER_ADDRESS_MAX + 1] = '\0';
    assert_int_equal(peer_hello_encode(h, 1, longest, nonce), MQHUB_EBAD_REQUEST);
    longest[PEER_ADDRESS_MAX] = '\0';
    assert_int_equal(peer_hello_encode(h, 1, longest, nonce), 0);
    assert_int_equal(peer_hello_decode(h, &id, addr, why, sizeof why), 0);
    assert_string_equal(addr, longest);
    assert_int_equal(peer_hello_encode(h, 0, "a:1", nonce), MQHUB_EBAD_REQUEST);
    assert_int_equal(peer_hello_encode(h, 1, "", nonce), MQHUB_EBAD_REQUEST);
}

/* Every malformed hello is refused with a reason. */
static void test_hello_refused(void **state)
{
    static const struct {
        size_t at;
        uint8_t value;
        const char *why;
    } cases[] = {
        {0, 'X', "not an mqhub peer"},
        {4, 2, "another handshake version"},
        {5, 1, "another handshake version"},
        {6, 1, "address length"},            /* 256 + 3 */
        {7, 0, "address length"},            /* 0 */
        {15, 0, "node id 0"},
        {48, ' ', "address not printable"},
        {51, 'x', "not zero-padded"},        /* a byte after the address */
        {PEER_HELLO_SIZE - 1, 1, "not zero-padded"},
    };
    uint8_t good[PEER_HELLO_SIZE], h[PEER_HELLO_SIZE], nonce[PEER_NONCE_SIZE] = {0};
    char addr[PEER_ADDRESS_MAX + 1], why[128];
    uint64_t id;

    assert_int_equal(peer_hello_encode(good, 1, "a:1", nonce), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(h, good, sizeof h);
        h[cases[i].at] = cases[i].value;
        why[0] = '\0';
        assert_int_equal(peer_hello_decode(h, &id, addr, why, sizeof why), MQHUB_EBAD_REQUEST);
        if (!strstr(why, cases[i].why))
            fail_msg("byte %zu = %u: \"%s\", expected \"%s\"", cases[i].at, cases[i].value,
                     why, cases[i].why);
    }
    /* raft_uv_tcp's own preamble (protocol 1, id, length, little-endian). */
    memset(h, 0, sizeof h);
    h[0] = 1;
    h[8] = 2;
    h[16] = 16;
    assert_int_equal(peer_hello_decode(h, &id, addr, why, sizeof why), MQHUB_EBAD_REQUEST);
}

/* The proof is HMAC-SHA256(key, label || hello_C || hello_A): the expected
 * values come from Python's hmac module over the same bytes. */
static void test_proof_vector(void **state)
{
    uint8_t hc[PEER_HELLO_SIZE], ha[PEER_HELLO_SIZE], p[PEER_PROOF_SIZE], q[PEER_PROOF_SIZE];
    char text[2 * PEER_PROOF_SIZE + 1];

    fixed_hellos(hc, ha);
    assert_int_equal(peer_proof(p, KEY, PEER_CONNECTOR, hc, ha), 0);
    hex(p, sizeof p, text);
    assert_string_equal(text,
                        "e2566a225a14b9ded7a584c4565137723cca7f2b1e2e51b65aaa94329879e8c8");
    assert_int_equal(peer_proof(p, KEY, PEER_ACCEPTOR, hc, ha), 0);
    hex(p, sizeof p, text);
    assert_string_equal(text,
                        "9d553642a9deed5b209408f7de636d4c86039280b4591ad85a24254e30de836b");

    /* Any other key, side, order or byte gives another proof. */
    assert_int_equal(peer_proof(q, OTHER_KEY, PEER_ACCEPTOR, hc, ha), 0);
    assert_memory_not_equal(p, q, sizeof p);
    assert_int_equal(peer_proof(q, KEY, PEER_CONNECTOR, hc, ha), 0);
    assert_memory_not_equal(p, q, sizeof p);
    assert_int_equal(peer_proof(q, KEY, PEER_ACCEPTOR, ha, hc), 0);
    assert_memory_not_equal(p, q, sizeof p);
    for (size_t i = 0; i < PEER_HELLO_SIZE; i += 37) {
        hc[i] ^= 1;
        assert_int_equal(peer_proof(q, KEY, PEER_ACCEPTOR, hc, ha), 0);
        assert_memory_not_equal(p, q, sizeof p);
        hc[i] ^= 1;
    }
}

/* ---- two transports on one loop ------------------------------------------ */

typedef struct side {
    struct raft_uv_transport t;
    char address[32];
    uv_stream_t *accepted;       /* raft's end of an incoming connection */
    bool got;                    /* accepted is set */
    uint64_t accepted_id;
    char accepted_address[64];
    bool closed;
} side_t;

typedef struct dial {
    struct raft_uv_connect req;
    bool done;
    int status;
    uv_stream_t *stream;
} dial_t;

static uv_loop_t g_loop;

static uint16_t free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void on_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                      uv_stream_t *stream)
{
    side_t *s = t->data;
    assert_null(s->accepted);
    s->accepted = stream;
    s->got = true;
    s->accepted_id = id;
    snprintf(s->accepted_address, sizeof s->accepted_address, "%s", address);
}

static void on_dialed(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
    dial_t *d = req->data;
    d->done = true;
    d->status = status;
    d->stream = stream;
}

static void side_start(side_t *s, uint64_t id, const char *secret, bool open)
{
    memset(s, 0, sizeof *s);
    snprintf(s->address, sizeof s->address, "127.0.0.1:%u", free_port());
    assert_int_equal(peer_transport_init(&s->t, &g_loop, secret, open), 0);
    s->t.data = s;
    assert_int_equal(s->t.init(&s->t, id, s->address), 0);
    assert_int_equal(s->t.listen(&s->t, on_accept), 0);
}

static void on_side_closed(struct raft_uv_transport *t)
{
    ((side_t *)t->data)->closed = true;
}

static void free_stream(uv_handle_t *h)
{
    raft_free(h);
}

/* Run the loop until *@flag or 3 s pass. */
static bool run_until(const bool *flag)
{
    uv_update_time(&g_loop);
    uint64_t until = uv_now(&g_loop) + 3000;
    while (!*flag && uv_now(&g_loop) < until) {
        uv_run(&g_loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&g_loop);
    }
    return *flag;
}

static void side_stop(side_t *s)
{
    if (s->accepted)
        uv_close((uv_handle_t *)s->accepted, free_stream);
    s->t.close(&s->t, on_side_closed);
    assert_true(run_until(&s->closed));
    peer_transport_free(&s->t);
}

static void dial(side_t *from, side_t *to, uint64_t id, dial_t *d)
{
    memset(d, 0, sizeof *d);
    d->req.data = d;
    assert_int_equal(from->t.connect(&from->t, &d->req, id, to->address, on_dialed), 0);
    assert_true(run_until(&d->done));
}

typedef struct sink {
    char buf[64];
    size_t len;
    bool done;
} sink_t;

static void sink_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf)
{
    sink_t *k = h->data;
    *buf = uv_buf_init(k->buf + k->len, (unsigned)(sizeof k->buf - k->len));
}

static void sink_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    sink_t *k = st->data;
    if (n > 0 && (k->len += (size_t)n) >= 10)
        k->done = true;
}

static void test_handshake_ok(void **state)
{
    side_t a, b;
    dial_t d;
    sink_t k = {0};
    uv_write_t w;

    side_start(&a, 1, KEY, false);
    side_start(&b, 2, KEY, false);
    dial(&b, &a, 1, &d);
    assert_int_equal(d.status, 0);
    assert_non_null(d.stream);
    assert_true(run_until(&a.got));
    assert_int_equal(a.accepted_id, 2);
    assert_string_equal(a.accepted_address, b.address);

    /* The first bytes raft writes after the handshake reach raft intact. */
    uv_buf_t buf = uv_buf_init("raft bytes", 10);
    assert_int_equal(uv_write(&w, d.stream, &buf, 1, NULL), 0);
    a.accepted->data = &k;
    assert_int_equal(uv_read_start(a.accepted, sink_alloc, sink_read), 0);
    assert_true(run_until(&k.done));
    assert_memory_equal(k.buf, "raft bytes", 10);
    assert_int_equal(k.len, 10);

    uv_close((uv_handle_t *)d.stream, free_stream);
    side_stop(&a);
    side_stop(&b);
}

/* Refused before raft gets a stream: connect fails, accept never runs. */
static void expect_refused(side_t *a, side_t *b, uint64_t id)
{
    dial_t d;
    dial(b, a, id, &d);
    assert_int_equal(d.status, RAFT_NOCONNECTION);
    assert_null(d.stream);
    for (int i = 0; i < 50; i++) { /* let the acceptor finish its side */
        uv_run(&g_loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_null(a->accepted);
}

static void test_refusals(void **state)
{
    side_t a, b;

    side_start(&a, 1, KEY, false);
    side_start(&b, 2, OTHER_KEY, false);
    expect_refused(&a, &b, 1); /* wrong secret */
    side_stop(&b);

    side_start(&b, 2, KEY, false);
    expect_refused(&a, &b, 3); /* node 1 answers where raft expects node 3 */
    side_stop(&b);

    side_start(&b, 1, KEY, false);
    expect_refused(&a, &b, 1); /* the connector claims the acceptor's own id */
    side_stop(&b);

    side_start(&b, 2, NULL, true);
    expect_refused(&a, &b, 1); /* unauthenticated against a secret */
    side_stop(&b);
    side_stop(&a);
}

/* allow_unauthenticated_peers: nodes without a secret talk to each other;
 * with neither, a node opens no port and connects nowhere. */
static void test_without_secret(void **state)
{
    side_t a, b;
    dial_t d = {.req.data = &d};

    side_start(&a, 1, NULL, true);
    side_start(&b, 2, NULL, true);
    dial(&b, &a, 1, &d);
    assert_int_equal(d.status, 0);
    uv_close((uv_handle_t *)d.stream, free_stream);
    assert_true(run_until(&a.got));
    side_stop(&b);

    side_start(&b, 2, NULL, false);
    assert_int_equal(b.t.connect(&b.t, &d.req, 1, a.address, on_dialed), RAFT_NOCONNECTION);
    expect_refused(&b, &a, 2); /* b has no listener: a's connect fails */
    side_stop(&b);
    side_stop(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_roundtrip),
        cmocka_unit_test(test_hello_refused),
        cmocka_unit_test(test_proof_vector),
        cmocka_unit_test(test_handshake_ok),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_without_secret),
    };
    uv_loop_init(&g_loop);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    uv_loop_close(&g_loop);
    return rc;
}
