/* peers_self_test.c: one identical peers table on every node, HTTP
 * addresses per node, and a removed node that says so (issue 16 item 4).
 *
 *   - shared_table: three nodes whose configs carry the same peers table,
 *     each node included, with raft, client and http per entry. Node 1
 *     started alone waits for quorum "1 of 3" (log and /readyz); the three
 *     form one cluster; every node's cluster.status lists every node's http
 *     and its own.
 *   - removed_node: cluster.remove of a follower. The removed node logs
 *     "removed from the cluster by the leader" once, its cluster.status role
 *     is "removed", /readyz answers 503 "removed from the cluster", a write
 *     sent to it gets NOT_LEADER naming a member (not "retry"); it does not
 *     campaign: the others' term stays, also after it is restarted (when it
 *     says removed again and logs no "ready").
 *   - concurrent_removes: two cluster.remove at once: one is done, the
 *     other UNAVAILABLE "another membership change is under way ... retry".
 *   - joined_node: node 4 (node.join) added with cluster.add {client, http}:
 *     every node lists its http, and node 4 every other's.
 *   - hostile: cluster.add with a forged, oversized or multi-word http field
 *     is refused (BAD_REQUEST), nothing is added.
 *   - bad_tables: a self entry whose raft (or http) differs from node.raft
 *     (node.http) is refused at start (exit 78) with a message naming both.
 *
 * Nodes are real mqhubd processes with the TCP and WebSocket transports on
 * free loopback ports; the configs are written here (testcluster.h runs
 * and stops the processes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mp.h"
#include "testcluster.h"
#include "testhub.h"
#include "tmpdir.h"

#define N 3     /* the initial voters, sharing one peers table */
#define NODES 4 /* and node 4, configured with node.join = true */
#define WAIT_MS 15000

static const char *g_mqhubd;

typedef struct cluster {
    testcluster_t tc;
    char http[NODES][32]; /* each node's WebSocket transport (dashboard, /readyz) */
} cluster_t;

/* ---- set-up ------------------------------------------------------------ */

static void peer_entry(FILE *f, const cluster_t *c, unsigned j)
{
    fprintf(f, "  [%u] = { raft = \"%s\", client = \"%s\", http = \"%s\" },\n", j + 1,
            c->tc.nodes[j].raft, c->tc.nodes[j].address, c->http[j]);
}

/* Node @i's config: node{} without addresses (the shared table gives
 * them), the two transports, the same peers table as every other node;
 * node 4 joins later (node.join): its table has its own entry too. */
static void write_config(cluster_t *c, unsigned i)
{
    char path[340];
    snprintf(path, sizeof path, "%s/config.lua", c->tc.nodes[i].dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "node { id = %u, data = \"%s/data\", cluster_secret_file = \"cluster.secret\"%s }\n",
            i + 1, c->tc.nodes[i].dir, i >= N ? ", join = true" : "");
    fprintf(f, "transport \"tcp\" { listen = \"%s\" }\n", c->tc.nodes[i].address);
    fprintf(f, "transport \"websocket\" { listen = \"%s\" }\n", c->http[i]);
    fprintf(f, "log { level = \"info\" }\npeers {\n");
    for (unsigned j = 0; j < N; j++)
        peer_entry(f, c, j);
    if (i >= N)
        peer_entry(f, c, i);
    fprintf(f, "}\n");
    assert_int_equal(fclose(f), 0);
    assert_int_equal(testcluster_write_secret(&c->tc, i, TC_SECRET), 0);
}

static void cluster_setup(cluster_t *c)
{
    uint16_t ports[3 * NODES];
    unsigned n = 0;

    memset(c, 0, sizeof *c);
    snprintf(c->tc.mqhubd, sizeof c->tc.mqhubd, "%s", g_mqhubd);
    assert_non_null(tmpdir_make(c->tc.dir, sizeof c->tc.dir, "test"));
    c->tc.n = NODES;
    for (unsigned i = 0; i < NODES; i++) {
        tc_node_t *nd = &c->tc.nodes[i];
        nd->id = i + 1;
        snprintf(nd->dir, sizeof nd->dir, "%s/n%u", c->tc.dir, i + 1);
        assert_int_equal(mkdir(nd->dir, 0755), 0);
        for (unsigned k = 0; k < 3; k++) {
            ports[n] = testhub_free_port(ports, n);
            assert_true(ports[n] != 0);
            n++;
        }
        nd->port = ports[n - 3];
        snprintf(nd->address, sizeof nd->address, "127.0.0.1:%u", ports[n - 3]);
        snprintf(nd->raft, sizeof nd->raft, "127.0.0.1:%u", ports[n - 2]);
        snprintf(c->http[i], sizeof c->http[i], "127.0.0.1:%u", ports[n - 1]);
        size_t l = strlen(c->tc.seeds);
        snprintf(c->tc.seeds + l, sizeof c->tc.seeds - l, "%s%s", l ? "," : "", nd->address);
    }
    for (unsigned i = 0; i < NODES; i++)
        write_config(c, i);
}

/* ---- probes ------------------------------------------------------------ */

/* One request on a fresh connection to node @i: its reply into @zone/@out
 * within @timeout_ms. */
static int request_ms(cluster_t *c, unsigned i, msgpack_sbuffer *sb, msgpack_zone *zone,
                      msgpack_object *out, int timeout_ms)
{
    int fd = testhub_connect_port(c->tc.nodes[i].port);
    if (fd < 0)
        return -1;
    int rc = testhub_write_frame(fd, sb->data, sb->size) == 0 &&
                     testhub_read_frame(fd, timeout_ms, zone, out) == 0
                 ? 0
                 : -1;
    close(fd);
    return rc;
}

static int request(cluster_t *c, unsigned i, msgpack_sbuffer *sb, msgpack_zone *zone,
                   msgpack_object *out)
{
    return request_ms(c, i, sb, zone, out, 3000);
}

/* {op, id = 1} plus @n_more key/value pairs the caller packs into @pk. */
static void pack_req(msgpack_packer *pk, const char *op, uint32_t n_more)
{
    msgpack_pack_map(pk, 2 + n_more);
    mp_pack_cstr(pk, "op");
    mp_pack_cstr(pk, op);
    mp_pack_cstr(pk, "id");
    msgpack_pack_uint64(pk, 1);
}

/* cluster.status of node @i into @zone/@out; 0 or -1. */
static int status(cluster_t *c, unsigned i, msgpack_zone *zone, msgpack_object *out)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_req(&pk, "cluster.status", 0);
    int rc = request(c, i, &sb, zone, out);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static const char *str(const msgpack_object *m, const char *key, char *buf, size_t size)
{
    return testhub_str(m, key, buf, size);
}

static uint64_t uint_of(const msgpack_object *m, const char *key)
{
    const msgpack_object *o = mp_map_get(m, key);
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

/* GET @path from node @i's WebSocket transport: the status code, the body
 * into @body; -1 when it does not answer. */
static int http_get(cluster_t *c, unsigned i, const char *path, char *body, size_t size)
{
    const char *colon = strrchr(c->http[i], ':');
    int fd = testhub_connect_port((uint16_t)atoi(colon + 1));
    char req[256], buf[4096];
    size_t len = 0;
    int code = -1;

    if (fd < 0)
        return -1;
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
             path, c->http[i]);
    if (testhub_write_all(fd, req, strlen(req)) == 0) {
        uint64_t until = testhub_now_ms() + 3000;
        while (len < sizeof buf - 1 && testhub_now_ms() < until) {
            ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
        }
    }
    close(fd);
    buf[len] = '\0';
    const char *b = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1 || !b)
        return -1;
    snprintf(body, size, "%s", b + 4);
    return code;
}

/* Wait until node @i's /readyz body contains @needle; its status code. */
static int wait_readyz(cluster_t *c, unsigned i, const char *needle, char *body, size_t size)
{
    int code = -1;
    for (uint64_t until = testhub_now_ms() + WAIT_MS; testhub_now_ms() < until;) {
        code = http_get(c, i, "/readyz", body, size);
        if (code > 0 && strstr(body, needle))
            return code;
        testhub_sleep_ms(100);
    }
    fprintf(stderr, "node %u /readyz: %d %s (waited for '%s')\n", i + 1, code, body, needle);
    return -1;
}

/* ---- shared_table ------------------------------------------------------ */

/* Whether node @i's cluster.status lists @members members, each with the
 * raft, client and http addresses of the tables, and its own http. */
static bool http_of_all(cluster_t *c, unsigned i, unsigned members)
{
    msgpack_zone zone;
    msgpack_object st;
    char buf[64];
    bool ok = false;

    msgpack_zone_init(&zone, 4096);
    if (status(c, i, &zone, &st) != 0 || strcmp(str(&st, "http", buf, sizeof buf), c->http[i]))
        goto out;
    const msgpack_object *nodes = mp_map_get(&st, "nodes");
    if (!nodes || nodes->type != MSGPACK_OBJECT_ARRAY || nodes->via.array.size != members)
        goto out;
    for (uint32_t k = 0; k < members; k++) {
        const msgpack_object *nd = &nodes->via.array.ptr[k];
        uint64_t id = uint_of(nd, "id");
        if (id < 1 || id > NODES || strcmp(str(nd, "http", buf, sizeof buf), c->http[id - 1]) ||
            strcmp(str(nd, "client", buf, sizeof buf), c->tc.nodes[id - 1].address) ||
            strcmp(str(nd, "address", buf, sizeof buf), c->tc.nodes[id - 1].raft))
            goto out;
    }
    ok = true;
out:
    msgpack_zone_destroy(&zone);
    return ok;
}

static void check_http_of_all(cluster_t *c, unsigned i)
{
    assert_true(http_of_all(c, i, N));
}

static void start_all(cluster_t *c)
{
    char body[512];

    /* Node 1 alone: it knows 3 voters from the table (itself included once). */
    assert_int_equal(testcluster_start_node(&c->tc, 0), 0);
    assert_int_equal(wait_readyz(c, 0, "waiting for quorum (1 of 3 voters", body, sizeof body),
                     503);
    assert_int_equal(
        testcluster_log_count(&c->tc, 0, "waiting for quorum (1 of 3 voters known up"), 1);
    assert_int_equal(testcluster_log_count(&c->tc, 0, "ready: leader"), 0);
    printf("node 1 alone: /readyz 503 %s", body);
    for (unsigned i = 1; i < N; i++)
        assert_int_equal(testcluster_start_node(&c->tc, i), 0);
    int leader = testcluster_leader(&c->tc, WAIT_MS);
    if (leader < 0)
        testcluster_dump_logs(&c->tc);
    assert_true(leader >= 0);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(wait_readyz(c, i, "ready: leader", body, sizeof body), 200);
}

static void shared_table(void **state)
{
    cluster_t *c = *state;
    start_all(c);
    for (unsigned i = 0; i < N; i++)
        check_http_of_all(c, i);
    assert_true(testcluster_log_count(&c->tc, 0, "ready: leader node") >= 1);
}

/* ---- removed_node ------------------------------------------------------ */

/* cluster.remove {node} sent to node @via: the reply's code ("" for ok). */
static void cluster_remove(cluster_t *c, unsigned via, uint64_t node, char *code, size_t size)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object reply;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_zone_init(&zone, 1024);
    pack_req(&pk, "cluster.remove", 1);
    mp_pack_cstr(&pk, "node");
    msgpack_pack_uint64(&pk, node);
    assert_int_equal(request(c, via, &sb, &zone, &reply), 0);
    str(&reply, "code", code, size);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

/* The term of node @i (0: no answer). */
static uint64_t term_of(cluster_t *c, unsigned i)
{
    tc_status_t st;
    return testcluster_status(&c->tc, i, false, 2000, &st) == 0 ? st.term : 0;
}

/* What node @gone (removed) says, and that the other two keep @term. */
static void check_removed(cluster_t *c, unsigned gone, unsigned leader, uint64_t term)
{
    msgpack_zone zone;
    msgpack_object st;
    char buf[256], body[512];

    msgpack_zone_init(&zone, 4096);
    assert_int_equal(status(c, gone, &zone, &st), 0);
    assert_string_equal(str(&st, "role", buf, sizeof buf), "removed");
    msgpack_zone_destroy(&zone);
    assert_int_equal(wait_readyz(c, gone, "removed from the cluster", body, sizeof body), 503);
    printf("removed node %u: /readyz 503 %s", gone + 1, body);

    /* A write: NOT_LEADER that says removed and names a member. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_zone_init(&zone, 1024);
    pack_req(&pk, "queue.create", 1);
    mp_pack_cstr(&pk, "queue");
    mp_pack_cstr(&pk, "jobs");
    assert_int_equal(request(c, gone, &sb, &zone, &st), 0);
    assert_string_equal(str(&st, "code", buf, sizeof buf), "NOT_LEADER");
    assert_non_null(strstr(str(&st, "error", buf, sizeof buf), "removed from the cluster"));
    printf("write to the removed node: NOT_LEADER \"%s\"\n", buf);
    str(&st, "leader", buf, sizeof buf);
    assert_true(strcmp(buf, c->tc.nodes[leader].address) == 0 ||
                strcmp(buf, c->tc.nodes[3 - gone - leader].address) == 0);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);

    /* It does not campaign: 3 s (election timeout 1-2 s) later the others
     * are at the same term with the same leader. */
    testhub_sleep_ms(3000);
    for (unsigned i = 0; i < N; i++) {
        if (i == gone)
            continue;
        tc_status_t s;
        assert_int_equal(testcluster_status(&c->tc, i, false, 2000, &s), 0);
        assert_int_equal(s.term, term);
        assert_int_equal(s.leader_id, c->tc.nodes[leader].id);
        assert_int_equal(s.n_voters, 2);
    }
}

static void removed_node(void **state)
{
    cluster_t *c = *state;
    char code[32];

    start_all(c);
    int leader = testcluster_leader(&c->tc, WAIT_MS);
    assert_true(leader >= 0);
    unsigned gone = (unsigned)(leader + 1) % N;
    uint64_t term = term_of(c, (unsigned)leader);
    cluster_remove(c, (unsigned)leader, gone + 1, code, sizeof code);
    assert_string_equal(code, "");
    check_removed(c, gone, (unsigned)leader, term);
    const char *removed = "msg=\"removed from the cluster by the leader, node";
    assert_int_equal(testcluster_log_count(&c->tc, gone, removed), 1);
    char expect[64];
    snprintf(expect, sizeof expect, "node %u is a standby, removing it", gone + 1);
    assert_int_equal(testcluster_log_count(&c->tc, (unsigned)leader, expect), 1);

    /* Restarted, it still says removed and stays quiet: no "ready" line. */
    unsigned ready = testcluster_log_count(&c->tc, gone, "msg=\"ready: leader node");
    assert_int_equal(testcluster_stop(&c->tc, gone), 0);
    assert_int_equal(testcluster_start_node(&c->tc, gone), 0);
    check_removed(c, gone, (unsigned)leader, term);
    assert_int_equal(testcluster_log_count(&c->tc, gone, "msg=\"removed from the cluster"), 2);
    assert_int_equal(testcluster_log_count(&c->tc, gone, "msg=\"ready: leader node"), ready);
    assert_int_equal(term_of(c, gone), term);
}

/* ---- concurrent_removes -------------------------------------------------- */

/* Two cluster.remove at once, each on its own connection to the leader:
 * raft makes one membership change at a time, so one is done and the other
 * is UNAVAILABLE with a sentence that says why and to retry. */
static void concurrent_removes(void **state)
{
    cluster_t *c = *state;
    int fd[2];
    unsigned refused = 0;
    char code[32], error[256] = "";

    start_all(c);
    int leader = testcluster_leader(&c->tc, WAIT_MS);
    assert_true(leader >= 0);
    for (unsigned k = 0; k < 2; k++)
        assert_true((fd[k] = testhub_connect_port(c->tc.nodes[leader].port)) >= 0);
    for (unsigned k = 0; k < 2; k++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_req(&pk, "cluster.remove", 1);
        mp_pack_cstr(&pk, "node");
        msgpack_pack_uint64(&pk, (unsigned)(leader + 1 + (int)k) % N + 1);
        assert_int_equal(testhub_write_frame(fd[k], sb.data, sb.size), 0);
        msgpack_sbuffer_destroy(&sb);
    }
    for (unsigned k = 0; k < 2; k++) {
        msgpack_zone zone;
        msgpack_object reply;
        msgpack_zone_init(&zone, 1024);
        assert_int_equal(testhub_read_frame(fd[k], WAIT_MS, &zone, &reply), 0);
        close(fd[k]);
        str(&reply, "code", code, sizeof code);
        printf("cluster.remove %u: \"%s\"\n", k + 1, code);
        if (strcmp(code, "UNAVAILABLE") == 0) {
            str(&reply, "error", error, sizeof error);
            refused++;
        } else {
            assert_string_equal(code, "");
        }
        msgpack_zone_destroy(&zone);
    }
    printf("the refused one: %s\n", error);
    assert_int_equal(refused, 1);
    assert_non_null(strstr(error, "another membership change is under way"));
    assert_non_null(strstr(error, "retry"));
}

/* ---- hostile ----------------------------------------------------------- */

/* cluster.add {node = 9, address, http = <@http packed by @pack>} to @via. */
static void add_with_http(cluster_t *c, unsigned via, void (*pack)(msgpack_packer *),
                          char *code, size_t size)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object reply;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_zone_init(&zone, 1024);
    pack_req(&pk, "cluster.add", 3);
    mp_pack_cstr(&pk, "node");
    msgpack_pack_uint64(&pk, 9);
    mp_pack_cstr(&pk, "address");
    mp_pack_cstr(&pk, "127.0.0.1:9");
    mp_pack_cstr(&pk, "http");
    pack(&pk);
    assert_int_equal(request(c, via, &sb, &zone, &reply), 0);
    str(&reply, "code", code, size);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

static void pack_oversized(msgpack_packer *pk)
{
    char big[4096];
    memset(big, 'a', sizeof big);
    memcpy(big + sizeof big - 6, ":6280", 5);
    mp_pack_str(pk, big, sizeof big - 1);
}

static void pack_number(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, 6280);
}

static void pack_no_port(msgpack_packer *pk)
{
    mp_pack_cstr(pk, "<script>alert(1)</script>");
}

/* Would break the one-line-per-node file the addresses are kept in. */
static void pack_spaces(msgpack_packer *pk)
{
    mp_pack_cstr(pk, "127.0.0.1:1 9 evil:2\n");
}

static void hostile(void **state)
{
    cluster_t *c = *state;
    void (*forged[])(msgpack_packer *) = {pack_oversized, pack_number, pack_no_port,
                                          pack_spaces};
    char code[32];

    start_all(c);
    int leader = testcluster_leader(&c->tc, WAIT_MS);
    assert_true(leader >= 0);
    for (unsigned k = 0; k < sizeof forged / sizeof forged[0]; k++) {
        add_with_http(c, (unsigned)leader, forged[k], code, sizeof code);
        assert_string_equal(code, "BAD_REQUEST");
    }
    tc_status_t st;
    assert_int_equal(testcluster_status(&c->tc, (unsigned)leader, false, 2000, &st), 0);
    assert_int_equal(st.n_members, N);
    check_http_of_all(c, (unsigned)leader);
}

/* ---- joined_node ------------------------------------------------------- */

/* Node 4 (node.join) added with cluster.add {client, http}: every node,
 * node 4 too, learns its http from the table the leader replicates, and
 * node 4 learns the others' (its own table named them too). */
static void joined_node(void **state)
{
    cluster_t *c = *state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object reply;
    char code[32];

    start_all(c);
    int leader = testcluster_leader(&c->tc, WAIT_MS);
    assert_true(leader >= 0);
    assert_int_equal(testcluster_start_node(&c->tc, N), 0);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_zone_init(&zone, 1024);
    pack_req(&pk, "cluster.add", 4);
    mp_pack_cstr(&pk, "node");
    msgpack_pack_uint64(&pk, N + 1);
    mp_pack_cstr(&pk, "address");
    mp_pack_cstr(&pk, c->tc.nodes[N].raft);
    mp_pack_cstr(&pk, "client");
    mp_pack_cstr(&pk, c->tc.nodes[N].address);
    mp_pack_cstr(&pk, "http");
    mp_pack_cstr(&pk, c->http[N]);
    assert_int_equal(request_ms(c, (unsigned)leader, &sb, &zone, &reply, WAIT_MS), 0);
    assert_string_equal(str(&reply, "code", code, sizeof code), "");
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
    for (unsigned i = 0; i < NODES; i++) {
        uint64_t until = testhub_now_ms() + WAIT_MS;
        while (!http_of_all(c, i, NODES) && testhub_now_ms() < until)
            testhub_sleep_ms(100);
        assert_true(http_of_all(c, i, NODES));
    }
}

/* ---- bad_tables -------------------------------------------------------- */

/* Node 1's config with @node_fields in node{} and the shared table. */
static void write_node1(cluster_t *c, const char *node_fields)
{
    char path[340];
    snprintf(path, sizeof path, "%s/config.lua", c->tc.nodes[0].dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "node { id = 1, data = \"%s/data\", cluster_secret_file = \"cluster.secret\"%s }\n",
            c->tc.nodes[0].dir, node_fields);
    fprintf(f, "transport \"tcp\" { listen = \"%s\" }\npeers {\n", c->tc.nodes[0].address);
    for (unsigned j = 0; j < N; j++)
        peer_entry(f, c, j);
    fprintf(f, "}\n");
    assert_int_equal(fclose(f), 0);
}

/* Node 1 with @node_fields in node{}: it must refuse to start (78) with a
 * message that contains @needle. */
static void refused(cluster_t *c, const char *node_fields, const char *needle)
{
    write_node1(c, node_fields);
    pid_t pid = testhub_spawn_dir(g_mqhubd, c->tc.nodes[0].dir);
    int wstatus = 0;
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    assert_true(WIFEXITED(wstatus));
    assert_int_equal(WEXITSTATUS(wstatus), 78);
    if (testcluster_log_count(&c->tc, 0, needle) != 1)
        testhub_print_log(c->tc.nodes[0].dir, "node 1");
    assert_int_equal(testcluster_log_count(&c->tc, 0, needle), 1);
}

static void bad_tables(void **state)
{
    cluster_t *c = *state;
    char fields[128], needle[256];

    snprintf(fields, sizeof fields, ", raft = \"127.0.0.1:1\"");
    snprintf(needle, sizeof needle,
             "peers[1] is this node (node.id = 1), but its raft = \"%s\" differs from "
             "node.raft = \"127.0.0.1:1\"", c->tc.nodes[0].raft);
    refused(c, fields, needle);
    snprintf(fields, sizeof fields, ", http = \"127.0.0.1:2\"");
    snprintf(needle, sizeof needle, "its http = \"%s\" differs from node.http = \"127.0.0.1:2\"",
             c->http[0]);
    refused(c, fields, needle);
    /* Agreeing fields are fine: it starts (and waits for quorum). */
    snprintf(fields, sizeof fields, ", raft = \"%s\", client = \"%s\"", c->tc.nodes[0].raft,
             c->tc.nodes[0].address);
    write_node1(c, fields);
    assert_int_equal(testcluster_start_node(&c->tc, 0), 0);
    assert_int_equal(
        testcluster_log_count(&c->tc, 0, "waiting for quorum (1 of 3 voters known up"), 1);
}

/* ---- main -------------------------------------------------------------- */

static int setup(void **state)
{
    cluster_t *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    cluster_setup(c);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    cluster_t *c = *state;
    testcluster_cleanup(&c->tc);
    free(c);
    return 0;
}

int main(int argc, char **argv)
{
    g_mqhubd = testhub_binary(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(shared_table, setup, teardown),
        cmocka_unit_test_setup_teardown(removed_node, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_removes, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(joined_node, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_tables, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
