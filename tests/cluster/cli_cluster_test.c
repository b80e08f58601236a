/* cli_cluster_test.c: `mqhub cluster status|add|remove` through the CLI
 * ($MQHUB_CLI) and libmqhub against two real mqhubd processes (issue 16
 * follow-ups):
 *   - http: node 1 bootstraps alone with a WebSocket transport; node 2
 *     (node.join) is added with `cluster add 2 RAFT --client CLIENT --http ADDR`
 *     (the client address given twice: a usage error);
 *     `cluster status` (table and --json) and
 *     mqhub_client_cluster_status_more() show each node's http and the
 *     answering node's own;
 *   - removed: after `cluster remove 2`, node 2's status says role
 *     "removed" with removed_by 1 (JSON and table);
 *   - hostile: cluster add with an --http holding a space, without a port,
 *     oversized, or with a control byte: the server's BAD_REQUEST shown as
 *     one clean line, exit 1, nothing added;
 *   - contexts: every CLI runs while this process's XDG_CONFIG_HOME holds a
 *     contexts.json that is not JSON (a developer's broken file): testcli
 *     gives each CLI its own config home, so none of them reads it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "mqhub/client.h"
#include "testcli.h"
#include "testcluster.h"
#include "testhub.h"
#include "tmpdir.h"

#define NODES 2
#define WAIT_MS 20000

static const char *g_mqhubd, *g_cli;
static testcluster_t tc;
static char http[NODES][32];  /* each node's WebSocket transport */
static testhub_t view[NODES]; /* testcli's view of node i: address and dir */
static testcli_t cli[NODES];  /* the CLI with MQHUB_SERVER = node i */

/* Node @i's config: node 1 bootstraps alone; node 2 joins (node.join) and
 * lists itself too, so that it knows its own http. */
static void write_config(unsigned i)
{
    char path[340];
    snprintf(path, sizeof path, "%s/config.lua", tc.nodes[i].dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "node { id = %u, data = \"%s/data\", cluster_secret_file = \"cluster.secret\"%s }\n",
            i + 1, tc.nodes[i].dir, i > 0 ? ", join = true" : "");
    fprintf(f, "transport \"tcp\" { listen = \"%s\" }\n", tc.nodes[i].address);
    fprintf(f, "transport \"websocket\" { listen = \"%s\" }\n", http[i]);
    fprintf(f, "log { level = \"info\" }\npeers {\n");
    for (unsigned j = 0; j <= i; j++)
        if (j == 0 || j == i)
            fprintf(f, "  [%u] = { raft = \"%s\", client = \"%s\", http = \"%s\" },\n", j + 1,
                    tc.nodes[j].raft, tc.nodes[j].address, http[j]);
    fprintf(f, "}\n");
    assert_int_equal(fclose(f), 0);
    assert_int_equal(testcluster_write_secret(&tc, i, TC_SECRET), 0);
}

/* A developer's contexts file that is not JSON, in this process's
 * XDG_CONFIG_HOME: a CLI that read it would exit 2. */
static void broken_developer_contexts(void)
{
    char dir[400], path[440];
    snprintf(dir, sizeof dir, "%s/developer", tc.dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    setenv("XDG_CONFIG_HOME", dir, 1);
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/mqhub");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/contexts.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"current\": \"prod\", \"contexts\": {\"prod\": {not json", f);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    uint16_t ports[3 * NODES];
    unsigned n = 0;
    (void)state;

    /* configs written here; testcluster runs and stops the processes */
    memset(&tc, 0, sizeof tc);
    snprintf(tc.mqhubd, sizeof tc.mqhubd, "%s", g_mqhubd);
    assert_non_null(tmpdir_make(tc.dir, sizeof tc.dir, "test"));
    tc.n = NODES;
    for (unsigned i = 0; i < NODES; i++) {
        tc_node_t *nd = &tc.nodes[i];
        nd->id = i + 1;
        snprintf(nd->dir, sizeof nd->dir, "%s/n%u", tc.dir, i + 1);
        assert_int_equal(mkdir(nd->dir, 0755), 0);
        for (unsigned k = 0; k < 3; k++) {
            ports[n] = testhub_free_port(ports, n);
            assert_true(ports[n] != 0);
            n++;
        }
        nd->port = ports[n - 3];
        snprintf(nd->address, sizeof nd->address, "127.0.0.1:%u", ports[n - 3]);
        snprintf(nd->raft, sizeof nd->raft, "127.0.0.1:%u", ports[n - 2]);
        snprintf(http[i], sizeof http[i], "127.0.0.1:%u", ports[n - 1]);
        memset(&view[i], 0, sizeof view[i]);
        assert_true(strlen(nd->dir) < sizeof view[i].dir);
        memcpy(view[i].dir, nd->dir, strlen(nd->dir) + 1);
        snprintf(view[i].address, sizeof view[i].address, "%s", nd->address);
        cli[i].path = g_cli;
        cli[i].hub = &view[i];
    }
    for (unsigned i = 0; i < NODES; i++)
        write_config(i);
    broken_developer_contexts();
    unsetenv("MQHUB_TOKEN");
    unsetenv("MQHUB_CONTEXT");
    if (testcluster_start_node(&tc, 0) != 0 || testcluster_leader(&tc, WAIT_MS) != 0 ||
        testcluster_start_node(&tc, 1) != 0) {
        testcluster_dump_logs(&tc);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    testcluster_cleanup(&tc);
    return 0;
}

/* The entry of node @id in a status JSON's nodes (the test fails without). */
static json_t *node_entry(json_t *st, json_int_t id)
{
    json_t *nodes = testcli_field(st, "nodes"), *n;
    size_t i;
    json_array_foreach (nodes, i, n)
        if (json_integer_value(testcli_field(n, "id")) == id)
            return n;
    fail_msg("node %lld not in the status", (long long)id);
    return NULL;
}

/* node @i's `cluster status --json` */
static json_t *status_of(unsigned i)
{
    testcli_run_t r;
    TESTCLI_RUN(&cli[i], &r, 0, "cluster", "status", "--json");
    return testcli_json(&r);
}

static void test_add_with_http(void **state)
{
    testcli_run_t r;
    (void)state;
    /* the client address given twice is refused before anything is asked */
    TESTCLI_RUN(&cli[0], &r, 2, "cluster", "add", "2", tc.nodes[1].raft, tc.nodes[1].address,
        "--client", tc.nodes[1].address);
    testcli_expect_in(r.err, "give the client address once");
    TESTCLI_RUN(&cli[0], &r, 0, "cluster", "add", "2", tc.nodes[1].raft, "--client",
        tc.nodes[1].address, "--http", http[1]);
    testcli_expect_in(r.out, "added (a voter now) node 2");

    for (unsigned i = 0; i < NODES; i++) {
        /* node 2 learns node 1's table entry from the leader: wait for it */
        json_t *st = NULL;
        for (int k = 0; k < 100; k++) {
            st = status_of(i);
            if (json_array_size(testcli_field(st, "nodes")) == NODES &&
                json_object_get(node_entry(st, 1), "http") &&
                json_object_get(node_entry(st, 2), "http"))
                break;
            json_decref(st);
            st = NULL;
            testhub_sleep_ms(100);
        }
        assert_non_null(st);
        assert_string_equal(json_string_value(testcli_field(st, "http")), http[i]);
        for (unsigned j = 0; j < NODES; j++)
            assert_string_equal(json_string_value(testcli_field(node_entry(st, j + 1), "http")),
                                http[j]);
        assert_null(json_object_get(st, "removed_by"));
        json_decref(st);
    }
    TESTCLI_RUN(&cli[0], &r, 0, "cluster", "status");
    testcli_expect_in(r.out, "HTTP");
    testcli_expect_in(r.out, http[1]);
    char own[64];
    snprintf(own, sizeof own, "http://%s/", http[0]);
    testcli_expect_in(r.out, own);
    printf("%s", r.out);

    /* the library call, directly */
    mqhub_client_t *c = NULL;
    mqhub_cluster_status_t *st = malloc(sizeof *st);
    mqhub_cluster_more_t *more = malloc(sizeof *more);
    mqhub_cluster_raft_t raft;
    assert_non_null(st);
    assert_non_null(more);
    assert_int_equal(mqhub_client_connect(&c, tc.nodes[1].address, NULL, NULL, 0), 0);
    assert_int_equal(mqhub_client_cluster_status_more(c, false, st, &raft, more), 0);
    assert_string_equal(more->http, http[1]);
    assert_int_equal(more->removed_by, 0);
    assert_int_equal(st->n_nodes, NODES);
    for (size_t i = 0; i < st->n_nodes; i++)
        assert_string_equal(more->node_http[i], http[st->nodes[i].id - 1]);
    /* NULL @more and @raft: the older calls keep working */
    assert_int_equal(mqhub_client_cluster_status_more(c, false, st, NULL, NULL), 0);
    mqhub_client_close(c);
    free(st);
    free(more);
}

static void test_add_hostile_http(void **state)
{
    testcli_run_t r;
    char big[400];
    (void)state;
    memset(big, 'h', sizeof big - 6);
    memcpy(big + sizeof big - 6, ":6280", 6);
    const char *bad[] = {"bad host:6280", "no-port", big, "127.0.0.1:62\x01" "80", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TESTCLI_RUN(&cli[0], &r, 1, "cluster", "add", "3", "127.0.0.1:1", "127.0.0.1:2", "--http",
            bad[i]);
        testcli_expect_in(r.err, "BAD_REQUEST");
        testcli_expect_in(r.err, "host:port");
        /* one line, and none of the forged bytes echoed back */
        assert_ptr_equal(strchr(r.err, '\n'), r.err + strlen(r.err) - 1);
        assert_null(strchr(r.err, '\x01'));
        assert_int_equal(r.out[0], '\0');
    }
    printf("refused: %s", r.err);
    json_t *st = status_of(0);
    assert_int_equal(json_array_size(testcli_field(st, "nodes")), NODES);
    json_decref(st);
}

static void test_removed(void **state)
{
    testcli_run_t r;
    (void)state;
    TESTCLI_RUN(&cli[0], &r, 0, "cluster", "remove", "2");
    json_t *st = NULL;
    for (int k = 0; k < 100; k++) {
        st = status_of(1);
        if (!strcmp(json_string_value(testcli_field(st, "role")), "removed"))
            break;
        json_decref(st);
        st = NULL;
        testhub_sleep_ms(100);
    }
    assert_non_null(st);
    assert_int_equal(json_integer_value(testcli_field(st, "removed_by")), 1);
    assert_string_equal(json_string_value(testcli_field(st, "http")), http[1]);
    json_decref(st);
    TESTCLI_RUN(&cli[1], &r, 0, "cluster", "status");
    testcli_expect_in(r.out, "(removed by leader 1");
    printf("%s", r.out);
    st = status_of(0);
    assert_string_equal(json_string_value(testcli_field(st, "role")), "leader");
    assert_null(json_object_get(st, "removed_by"));
    json_decref(st);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_with_http),
        cmocka_unit_test(test_add_hostile_http),
        cmocka_unit_test(test_removed),
    };
    g_mqhubd = testhub_binary(argc, argv);
    g_cli = getenv("MQHUB_CLI");
    if (!g_mqhubd || !g_cli) {
        fprintf(stderr, "usage: MQHUB_CLI=... %s MQHUBD\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
