/* peer_test.c: core/raft/peer.c — the handshake's wire format and proofs
 * (a fixed HMAC vector computed outside mqhub), then two transports on one
 * loop over loopback: the right secret hands raft both ends and the first
 * bytes after the handshake reach the accepted stream intact; a wrong
 * secret, a wrong node id, an unauthenticated node against a keyed one, and
 * a node without a secret are all refused before raft gets a stream. With
 * peer TLS (a throwaway PKI from tests/integration/tls_pki.c): bytes cross
 * intact both ways, 24 MiB included, with backpressure while raft's side
 * does not read; a certificate of another CA, and a plaintext peer against
 * a TLS one (either way round), are refused with a log line.
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
#include "tls_pki.h"

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
    assert_int_equal(peer_proof(p, KEY, PEER_CONNECTOR, hc, ha, NULL), 0);
    hex(p, sizeof p, text);
    assert_string_equal(text,
                        "e2566a225a14b9ded7a584c4565137723cca7f2b1e2e51b65aaa94329879e8c8");
    assert_int_equal(peer_proof(p, KEY, PEER_ACCEPTOR, hc, ha, NULL), 0);
    hex(p, sizeof p, text);
    assert_string_equal(text,
                        "9d553642a9deed5b209408f7de636d4c86039280b4591ad85a24254e30de836b");

    /* Any other key, side, order or byte gives another proof. */
    assert_int_equal(peer_proof(q, OTHER_KEY, PEER_ACCEPTOR, hc, ha, NULL), 0);
    assert_memory_not_equal(p, q, sizeof p);
    assert_int_equal(peer_proof(q, KEY, PEER_CONNECTOR, hc, ha, NULL), 0);
    assert_memory_not_equal(p, q, sizeof p);
    assert_int_equal(peer_proof(q, KEY, PEER_ACCEPTOR, ha, hc, NULL), 0);
    assert_memory_not_equal(p, q, sizeof p);
    uint8_t binding[PEER_BINDING_SIZE] = {1};  /* peer TLS: the channel counts too */
    assert_int_equal(peer_proof(q, KEY, PEER_ACCEPTOR, hc, ha, binding), 0);
    assert_memory_not_equal(p, q, sizeof p);
    for (size_t i = 0; i < PEER_HELLO_SIZE; i += 37) {
        hc[i] ^= 1;
        assert_int_equal(peer_proof(q, KEY, PEER_ACCEPTOR, hc, ha, NULL), 0);
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

static void side_start_tls(side_t *s, uint64_t id, const char *secret, bool open,
                           const peer_tls_files_t *tls)
{
    char why[256];
    memset(s, 0, sizeof *s);
    snprintf(s->address, sizeof s->address, "127.0.0.1:%u", free_port());
    if (peer_transport_init(&s->t, &g_loop, secret, open, tls, why, sizeof why) != 0)
        fail_msg("peer_transport_init: %s", why);
    s->t.data = s;
    assert_int_equal(s->t.init(&s->t, id, s->address), 0);
    assert_int_equal(s->t.listen(&s->t, on_accept), 0);
}

static void side_start(side_t *s, uint64_t id, const char *secret, bool open)
{
    side_start_tls(s, id, secret, open, NULL);
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

/* ---- peer TLS ----------------------------------------------------------- */

static tls_pki_t g_pki;

/* Files of the PKI: @cert signed by @ca ("server" by "ca", "other-server"
 * by "other-ca"), into @f (paths in @store). */
static const peer_tls_files_t *pki_files(peer_tls_files_t *f, char store[3][300],
                                         const char *cert, const char *ca)
{
    char name[64];
    snprintf(name, sizeof name, "%s.pem", cert);
    f->cert = tls_pki_path(&g_pki, name, store[0], 300);
    snprintf(name, sizeof name, "%s.key", cert);
    f->key = tls_pki_path(&g_pki, name, store[1], 300);
    snprintf(name, sizeof name, "%s.pem", ca);
    f->ca = tls_pki_path(&g_pki, name, store[2], 300);
    return f;
}

static void tls_side(side_t *s, uint64_t id, const char *cert, const char *ca)
{
    peer_tls_files_t f;
    char store[3][300];
    side_start_tls(s, id, KEY, false, pki_files(&f, store, cert, ca));
}

/* stderr into a file while a test looks for a log line. */
static int g_saved_stderr = -1;
static FILE *g_capture;

static void capture_start(void)
{
    fflush(stderr);
    g_capture = tmpfile();
    assert_non_null(g_capture);
    g_saved_stderr = dup(2);
    dup2(fileno(g_capture), 2);
}

/* Stop capturing; whether the log holds @a and @b. */
static bool capture_has(const char *a, const char *b)
{
    static char text[16384];
    size_t n;
    fflush(stderr);
    dup2(g_saved_stderr, 2);
    close(g_saved_stderr);
    rewind(g_capture);
    n = fread(text, 1, sizeof text - 1, g_capture);
    text[n] = '\0';
    fclose(g_capture);
    fputs(text, stderr); /* keep it in the test's output */
    return strstr(text, a) && strstr(text, b);
}

/* A big payload and where it lands. */
typedef struct bulk {
    char *data;
    size_t len, got;
    bool done, written;
    int status;
} bulk_t;

static void bulk_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf)
{
    bulk_t *k = h->data;
    *buf = uv_buf_init(k->data + k->got, (unsigned)(k->len - k->got));
}

static void bulk_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    bulk_t *k = st->data;
    assert_true(n >= 0);
    if ((k->got += (size_t)n) == k->len) {
        k->done = true;
        uv_read_stop(st);
    }
}

static void bulk_written(uv_write_t *w, int status)
{
    bulk_t *k = w->data;
    k->written = true;
    k->status = status;
}

static char *pattern(size_t len, unsigned seed)
{
    char *p = malloc(len);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (char)(i * 131 + seed + i / 7919);
    return p;
}

/* @len bytes from @from reach @to intact; with @stall, @to does not read
 * for a while first, and the writer must still be waiting then (the
 * tunnels hold back instead of buffering it all). */
static void transfer(uv_stream_t *from, uv_stream_t *to, size_t len, bool stall)
{
    char *out = pattern(len, (unsigned)len);
    bulk_t k = {.data = malloc(len), .len = len};
    uv_write_t w = {.data = &k};
    uv_buf_t buf = uv_buf_init(out, (unsigned)len);

    assert_non_null(k.data);
    assert_int_equal(uv_write(&w, from, &buf, 1, bulk_written), 0);
    if (stall) {
        uv_update_time(&g_loop);
        for (uint64_t until = uv_now(&g_loop) + 300; uv_now(&g_loop) < until;) {
            uv_run(&g_loop, UV_RUN_NOWAIT);
            usleep(1000);
            uv_update_time(&g_loop);
        }
        assert_false(k.written);
    }
    to->data = &k;
    assert_int_equal(uv_read_start(to, bulk_alloc, bulk_read), 0);
    assert_true(run_until(&k.done));
    assert_true(run_until(&k.written));
    assert_int_equal(k.status, 0);
    assert_memory_equal(k.data, out, len);
    free(out);
    free(k.data);
}

static void test_tls_ok(void **state)
{
    side_t a, b;
    dial_t d;

    tls_side(&a, 1, "server", "ca");
    tls_side(&b, 2, "server", "ca");
    dial(&b, &a, 1, &d);
    assert_int_equal(d.status, 0);
    assert_true(run_until(&a.got));
    assert_int_equal(a.accepted_id, 2);

    transfer(d.stream, a.accepted, 10, false);     /* raft's direction */
    transfer(a.accepted, d.stream, 10, false);     /* and back */
    transfer(d.stream, a.accepted, 24u << 20, true);
    transfer(a.accepted, d.stream, (1u << 20) + 3, false);

    uv_close((uv_handle_t *)d.stream, free_stream);
    side_stop(&a);
    side_stop(&b);
}

static void eof_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    if (n == UV_EOF)
        *(bool *)st->data = true;
}

static void eof_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf)
{
    static char scratch[64];
    *buf = uv_buf_init(scratch, sizeof scratch);
}

/* raft closing its end of a connection reaches the other node's raft as an
 * end of file (raft then drops that connection, as with plain TCP). */
static void test_tls_close_reaches_other_side(void **state)
{
    side_t a, b;
    dial_t d;
    bool eof = false;

    tls_side(&a, 1, "server", "ca");
    tls_side(&b, 2, "server", "ca");
    dial(&b, &a, 1, &d);
    assert_true(run_until(&a.got));
    uv_close((uv_handle_t *)d.stream, free_stream);
    a.accepted->data = &eof;
    assert_int_equal(uv_read_start(a.accepted, eof_alloc, eof_read), 0);
    assert_true(run_until(&eof));
    side_stop(&b);
    side_stop(&a);
}

static void test_tls_refusals(void **state)
{
    side_t a, b;
    peer_tls_files_t f;
    char store[3][300];

    tls_side(&a, 1, "server", "ca");

    capture_start(); /* a certificate of another CA: a refuses it */
    tls_side(&b, 2, "other-server", "ca");
    expect_refused(&a, &b, 1);
    side_stop(&b);
    assert_true(capture_has("from 127.0.0.1", "refused: TLS: certificate verify failed"));

    capture_start(); /* b trusts another CA only: b refuses a */
    tls_side(&b, 2, "server", "other-ca");
    expect_refused(&a, &b, 1);
    side_stop(&b);
    assert_true(capture_has("refused", "certificate verify failed"));

    capture_start(); /* plaintext peer to a TLS node */
    side_start(&b, 2, KEY, false);
    expect_refused(&a, &b, 1);
    side_stop(&b);
    assert_true(capture_has("from 127.0.0.1", "refused: TLS: wrong version number"));

    capture_start(); /* a TLS peer to a plaintext node */
    side_stop(&a);
    side_start(&a, 1, KEY, false);
    tls_side(&b, 2, "server", "ca");
    expect_refused(&a, &b, 1);
    side_stop(&b);
    side_stop(&a);
    assert_true(capture_has("from 127.0.0.1", "it speaks TLS"));

    /* Files that do not load fail the transport's init, naming the key. */
    char why[256];
    struct raft_uv_transport t;
    pki_files(&f, store, "missing", "ca");
    assert_int_equal(peer_transport_init(&t, &g_loop, KEY, false, &f, why, sizeof why),
                     MQHUB_EBAD_REQUEST);
    assert_non_null(strstr(why, "node.peer_tls_cert"));
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
        cmocka_unit_test(test_tls_ok),
        cmocka_unit_test(test_tls_close_reaches_other_side),
        cmocka_unit_test(test_tls_refusals),
    };
    uv_loop_init(&g_loop);
    if (tls_pki_make(&g_pki) != 0)
        return 1;
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tls_pki_cleanup(&g_pki);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    uv_loop_close(&g_loop);
    return rc;
}
