/* config_test.c: the Lua configuration file (core/node/config.c).
 * Good files fill config_t; each kind of bad file fails with "file:line:
 * problem"; no file gives the documented defaults.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "node/node.h"
#include "tmpdir.h"

/* Each test runs inside its own temp dir, so files are named "mqhub.conf"
 * and the messages read exactly as a user sees them. */
static char dir[256];
static char cwd[4096];

static int setup(void **state)
{
    if (!getcwd(cwd, sizeof cwd) || !tmpdir_make(dir, sizeof dir, "config"))
        return -1;
    return chdir(dir);
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (chdir(cwd) != 0)
        return -1;
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_conf(const char *text)
{
    FILE *f = fopen("mqhub.conf", "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return "mqhub.conf";
}

/* Load @text expecting failure; returns the message after the directory. */
static const char *load_bad(const char *text)
{
    static char err[512];
    config_t *c = NULL;
    const char *path = write_conf(text);
    int rv = config_load(&c, path, err, sizeof err);
    assert_int_equal(rv, MQHUB_EBAD_REQUEST);
    assert_null(c);
    return err;
}

static void test_defaults(void **state)
{
    char err[256];
    config_t *c = NULL;
    assert_int_equal(config_load(&c, NULL, err, sizeof err), 0);
    assert_int_equal(c->node_id, 1);
    assert_string_equal(c->data_dir, "./mqhub-data");
    assert_string_equal(c->raft_address, "127.0.0.1:6300");
    assert_int_equal(c->n_peers, 0);
    assert_int_equal(c->n_transports, 2);
    assert_string_equal(c->transports[0].name, "tcp");
    assert_string_equal(c->transports[1].name, "websocket");
    assert_string_equal(config_transport_string(c, &c->transports[1], "listen"),
                        "127.0.0.1:6280");
    assert_string_equal(config_transport_string(c, &c->transports[0], "listen"),
                        "127.0.0.1:6200");
    assert_string_equal(c->client_address, "127.0.0.1:6200");
    assert_int_equal(c->snapshot_growth, -1); /* the replica's default */
    assert_non_null(strstr(c->transports[0].path, "/tcp.so"));
    assert_null(c->token);
    assert_null(c->cluster_secret); /* a single node takes no peers */
    assert_int_equal(c->max_frame, 16u << 20);
    assert_int_equal(c->log_level, MQHUB_LOG_INFO);
    assert_int_equal(c->n_queues, 0);
    assert_non_null(c->plugin_dir);
    config_free(c);
}

static void test_full_file(void **state)
{
    char err[256];
    config_t *c = NULL;
    const char *path = write_conf(
        "-- a full configuration\n"
        "local base = 6300\n"
        "node { id = 2, data = \"/var/lib/mqhub\", raft = \"127.0.0.1:\" .. (base + 1),\n"
        "       plugin_dir = \"/opt/mqhub/plugins\", allow_unauthenticated_peers = true }\n"
        "peers { [1] = \"127.0.0.1:6300\", [3] = { raft = \"127.0.0.1:6302\",\n"
        "        client = \"127.0.0.1:6202\" } }\n"
        "transport \"tcp\" { listen = \"127.0.0.1:6201\", backlog = 64 }\n"
        "transport \"websocket\" { listen = \"127.0.0.1:6280\", dashboard = true,\n"
        "                          path = \"/x/ws.so\" }\n"
        "queue \"image-requests\" { visibility_timeout = 120,\n"
        "    dead_letter = { queue = \"image-dlq\", max_receives = 5 } }\n"
        "queue \"image-dlq\" {}\n"
        "topic \"payments\" { hook = \"merchant_spike\" }\n"
        "auth { token = \"s3cret\" }\n"
        "log { level = \"debug\" }\n"
        "limits { max_frame = 1048576 }\n"
        "snapshot { threshold = 100, trailing = 10, log_bytes = 4194304, growth = 0 }\n");
    assert_int_equal(config_load(&c, path, err, sizeof err), 0);
    assert_int_equal(c->node_id, 2);
    assert_string_equal(c->data_dir, "/var/lib/mqhub");
    assert_string_equal(c->raft_address, "127.0.0.1:6301");
    assert_string_equal(c->plugin_dir, "/opt/mqhub/plugins");
    assert_int_equal(c->n_peers, 2);
    for (unsigned i = 0; i < 2; i++) {
        const replica_peer_t *p = &c->peers[i];
        if (p->id == 1) {
            assert_string_equal(p->raft_address, "127.0.0.1:6300");
            assert_null(p->client_address);
        } else {
            assert_int_equal(p->id, 3);
            assert_string_equal(p->raft_address, "127.0.0.1:6302");
            assert_string_equal(p->client_address, "127.0.0.1:6202");
        }
    }
    assert_int_equal(c->n_transports, 2);
    assert_string_equal(c->transports[0].name, "tcp");
    assert_string_equal(c->transports[0].path, "/opt/mqhub/plugins/tcp.so");
    assert_string_equal(c->transports[1].path, "/x/ws.so");
    assert_string_equal(c->client_address, "127.0.0.1:6201");
    int64_t v = 0;
    assert_int_equal(config_transport_int(c, &c->transports[0], "backlog", 5, &v), 0);
    assert_int_equal(v, 64);
    assert_int_equal(config_transport_int(c, &c->transports[0], "nothing", 5, &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(config_transport_int(c, &c->transports[0], "listen", 5, &v),
                     MQHUB_EBAD_REQUEST);
    assert_null(config_transport_string(c, &c->transports[1], "dashboard"));
    assert_string_equal(c->token, "s3cret");
    assert_int_equal(c->log_level, MQHUB_LOG_DEBUG);
    assert_int_equal(c->max_frame, 1048576);
    assert_int_equal(c->snapshot_threshold, 100);
    assert_int_equal(c->snapshot_trailing, 10);
    assert_int_equal(c->snapshot_log_bytes, 4194304);
    assert_int_equal(c->snapshot_growth, 0);

    /* Declared queues carry their attrs as a msgpack map. */
    assert_int_equal(c->n_queues, 2);
    assert_string_equal(c->queues[0].name, "image-requests");
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, c->queues[0].attrs, c->queues[0].attrs_len,
                                         NULL),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(u.data.via.map.size, 2);
    bool saw_vt = false, saw_dl = false;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        msgpack_object_kv *kv = &u.data.via.map.ptr[i];
        if (kv->key.via.str.size == 18 &&
            memcmp(kv->key.via.str.ptr, "visibility_timeout", 18) == 0) {
            assert_int_equal(kv->val.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
            assert_int_equal(kv->val.via.u64, 120);
            saw_vt = true;
        } else {
            assert_int_equal(kv->val.type, MSGPACK_OBJECT_MAP);
            assert_int_equal(kv->val.via.map.size, 2);
            saw_dl = true;
        }
    }
    assert_true(saw_vt && saw_dl);
    msgpack_unpacked_destroy(&u);
    assert_int_equal(c->queues[1].attrs_len, 1); /* {} is an empty map */
    assert_int_equal((unsigned char)c->queues[1].attrs[0], 0x80);
    assert_int_equal(c->n_topics, 1);
    assert_string_equal(c->topics[0].name, "payments");
    config_free(c);
}

/* What a plugin's config_int reads (core/node/plugin.c): -1 is a value like
 * any other; a string, a fraction or a number beyond int64 is an error and
 * leaves *out alone, so the plugin can refuse to start. */
static void test_transport_int(void **state)
{
    char err[256];
    config_t *c = NULL;
    int64_t v = 0;

    write_conf("transport \"t\" { neg = -1, yes = true, whole = 3.0, frac = 1.5,\n"
               "                  huge = 1e30, text = \"12\" }\n");
    assert_int_equal(config_load(&c, "mqhub.conf", err, sizeof err), 0);
    const config_transport_t *t = &c->transports[0];
    assert_int_equal(config_transport_int(c, t, "neg", 5, &v), 0);
    assert_int_equal(v, -1);
    assert_int_equal(config_transport_int(c, t, "yes", 5, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(config_transport_int(c, t, "whole", 5, &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(config_transport_int(c, t, "absent", -1, &v), 0);
    assert_int_equal(v, -1);
    v = 42;
    assert_int_equal(config_transport_int(c, t, "frac", 5, &v), MQHUB_EBAD_REQUEST);
    assert_int_equal(config_transport_int(c, t, "huge", 5, &v), MQHUB_EBAD_REQUEST);
    assert_int_equal(config_transport_int(c, t, "text", 5, &v), MQHUB_EBAD_REQUEST);
    assert_int_equal(v, 42);
    config_free(c);
}

static void test_syntax_error(void **state)
{
    const char *e = load_bad("node { id = 1 }\n\nnode { id = }\n");
    assert_non_null(strstr(e, "mqhub.conf:3:"));
}

static void test_wrong_type(void **state)
{
    assert_string_equal(load_bad("\n\nnode { id = \"one\" }\n"),
                        "mqhub.conf:3: node.id must be a positive integer");
    assert_string_equal(load_bad("node { id = 0 }\n"),
                        "mqhub.conf:1: node.id must be a positive integer");
    assert_string_equal(load_bad("node { raft = \"localhost\" }\n"),
                        "mqhub.conf:1: node.raft must be \"host:port\"");
    assert_string_equal(load_bad("peers { [2] = { raft = \"h:1\", http = \"a b:1\" } }\n"),
                        "mqhub.conf:1: peers[2].http must be \"host:port\"");
    assert_string_equal(load_bad("log { level = \"loud\" }\n"),
                        "mqhub.conf:1: log.level must be one of debug, info, warn, error");
    assert_string_equal(load_bad("limits { max_frame = 1.5 }\n"),
                        "mqhub.conf:1: limits.max_frame must be an integer from 1024 to "
                        "1073741824");
    assert_string_equal(load_bad("snapshot { growth = -1 }\n"),
                        "mqhub.conf:1: snapshot.growth must be an integer from 0 to 10000");
    assert_string_equal(load_bad("peers { [2] = 42 }\n"),
                        "mqhub.conf:1: peers[2] must be \"host:port\" or { raft = ..., "
                        "client = ..., http = ... }");
    assert_string_equal(load_bad("peers { [2] = { raft = \"h:1\", client = 7 } }\n"),
                        "mqhub.conf:1: peers[2].client must be \"host:port\"");
    assert_string_equal(load_bad("queue \"q\" { visibility_timeout = print }\n"),
                        "mqhub.conf:1: queue \"q\": a function cannot be an attribute "
                        "value");
    assert_string_equal(load_bad("queue \"bad name\" {}\n"),
                        "mqhub.conf:1: queue name \"bad name\": names are 1-64 of A-Z "
                        "a-z 0-9 _ - . starting with a letter or digit");
}

static void test_unknown_names(void **state)
{
    assert_string_equal(load_bad("nodes { id = 1 }\n"),
                        "mqhub.conf:1: unknown directive 'nodes' (expected node, peers, "
                        "transport, queue, topic, auth, log, limits, snapshot)");
    assert_string_equal(load_bad("node { id = 1, dta = \"x\" }\n"),
                        "mqhub.conf:1: node: unknown field 'dta'");
    assert_string_equal(load_bad("queue \"q\" { visibilty_timeout = 3 }\n"),
                        "mqhub.conf:1: queue \"q\": unknown field 'visibilty_timeout'");
    assert_string_equal(load_bad("\ntransport \"tcp\"\n"),
                        "mqhub.conf:2: transport needs a table: transport \"name\" { ... }");
    assert_string_equal(load_bad("queue \"a\" {}\nqueue \"a\" {}\n"),
                        "mqhub.conf:2: queue \"a\" is declared twice");
    assert_string_equal(load_bad("node { id = 2, raft = \"h:2\" }\npeers { [2] = \"h:1\" }\n"),
                        "mqhub.conf: peers[2] is this node (node.id = 2), but its raft = "
                        "\"h:1\" differs from node.raft = \"h:2\": give both the same "
                        "address, or leave node.raft out");
}

static void write_file(const char *name, const char *text);

/* One peers table on every node (etcd's initial cluster): the entry of
 * node.id gives node.raft/client/http their defaults and leaves the list. */
/* A listen on every interface is not an address to hand out: the node's
 * client and http addresses take node.raft's host with the listen's port;
 * given ones, and specific listens, are kept as they are. */
static void test_wildcard_listen(void **state)
{
    char err[256];
    config_t *c = NULL;
    (void)state;
    write_conf("node { id = 1, raft = \"10.0.0.1:6300\" }\n"
               "auth { token = \"0123456789abcdef0123456789abcdef\" }\n"
               "transport \"tcp\" { listen = \"0.0.0.0:6200\" }\n"
               "transport \"websocket\" { listen = \"[::]:6280\" }\n");
    assert_int_equal(config_load(&c, "mqhub.conf", err, sizeof err), 0);
    assert_string_equal(c->client_address, "10.0.0.1:6200");
    assert_string_equal(c->http_address, "10.0.0.1:6280");
    config_free(c);
    write_conf("node { id = 1, raft = \"[fd00::1]:6300\", http = \"dash.example:80\" }\n"
               "auth { token = \"0123456789abcdef0123456789abcdef\" }\n"
               "transport \"tcp\" { listen = \":6200\" }\n"
               "transport \"websocket\" { listen = \"0.0.0.0:6280\" }\n");
    assert_int_equal(config_load(&c, "mqhub.conf", err, sizeof err), 0);
    assert_string_equal(c->client_address, "[fd00::1]:6200");
    assert_string_equal(c->http_address, "dash.example:80");
    config_free(c);
    /* a wildcard raft address is no better: the listen stays */
    write_conf("node { id = 1, raft = \"0.0.0.0:6300\" }\n"
               "auth { token = \"0123456789abcdef0123456789abcdef\" }\n"
               "transport \"tcp\" { listen = \"0.0.0.0:6200\" }\n");
    assert_int_equal(config_load(&c, "mqhub.conf", err, sizeof err), 0);
    assert_string_equal(c->client_address, "0.0.0.0:6200");
    config_free(c);
}

static void test_peers_self(void **state)
{
    config_t *c = NULL;
    char err[512];
    write_file("cluster.secret", "0123456789abcdef0123456789abcdef\n");
    write_conf("node { id = 2, client = \"c:2\", cluster_secret_file = \"cluster.secret\" }\n"
               "transport \"websocket\" { listen = \"127.0.0.1:6280\" }\n"
               "peers {\n"
               "  [1] = { raft = \"r:1\", client = \"c:1\", http = \"h:1\" },\n"
               "  [2] = { raft = \"r:2\", client = \"c:2\", http = \"h:2\" },\n"
               "  [3] = { raft = \"r:3\" },\n"
               "}\n");
    assert_int_equal(config_load(&c, "mqhub.conf", err, sizeof err), 0);
    assert_string_equal(c->raft_address, "r:2");
    assert_string_equal(c->client_address, "c:2");
    assert_string_equal(c->http_address, "h:2"); /* the entry before the listen */
    assert_int_equal(c->n_peers, 2);
    for (unsigned i = 0; i < 2; i++) {
        const replica_peer_t *p = &c->peers[i];
        assert_true(p->id == 1 || p->id == 3);
        if (p->id == 1)
            assert_string_equal(p->http_address, "h:1");
        else
            assert_null(p->http_address);
    }
    config_free(c);
    assert_string_equal(load_bad("node { id = 1, http = \"x:1\" }\n"
                                 "peers { [1] = { raft = \"r:1\", http = \"h:1\" } }\n"),
                        "mqhub.conf: peers[1] is this node (node.id = 1), but its http = "
                        "\"h:1\" differs from node.http = \"x:1\": give both the same "
                        "address, or leave node.http out");
}

static void test_runtime_error(void **state)
{
    assert_non_null(strstr(load_bad("local x = nil\nlocal y = x.field\n"), "mqhub.conf:2:"));
    assert_string_equal(load_bad("\nerror({})\n"),
                        "mqhub.conf:2: error object is a table value");
}

static void test_missing_file(void **state)
{
    char err[512];
    config_t *c = NULL;
    assert_int_equal(config_load(&c, "absent.conf", err, sizeof err), MQHUB_EBAD_REQUEST);
    assert_null(c);
    assert_non_null(strstr(err, "absent.conf"));
    assert_non_null(strstr(err, "No such file"));
}

/* A hook given as a .lua file (relative to the config file) becomes a script
 * the hub loads first, named after the file; the object's hook names it. */
static void test_hook_file(void **state)
{
    char err[512];
    config_t *c = NULL;
    FILE *f;

    assert_int_equal(mkdir("risk", 0700), 0);
    assert_non_null(f = fopen("risk/spike.lua", "w"));
    fputs("function on_message(msg) return true end\n", f);
    fclose(f);
    write_conf("topic \"payments\" { hook = \"risk/spike.lua\" }\n");
    assert_int_equal(config_load(&c, "mqhub.conf", err, sizeof err), 0);
    assert_int_equal(c->n_scripts, 1);
    assert_string_equal(c->scripts[0].name, "spike");
    assert_non_null(strstr(c->scripts[0].attrs, "on_message"));
    assert_int_equal(c->n_topics, 1);
    assert_non_null(memmem(c->topics[0].attrs, c->topics[0].attrs_len, "spike", 5));
    assert_null(memmem(c->topics[0].attrs, c->topics[0].attrs_len, ".lua", 4));
    config_free(c);
    assert_string_equal(load_bad("queue \"q\" { hook = \"nope.lua\" }\n"),
                        "mqhub.conf:1: queue \"q\": hook file 'nope.lua': No such file or "
                        "directory");
}

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* node.cluster_secret_file and node.allow_unauthenticated_peers: a cluster
 * (peers or join) needs one of them; a single node needs neither. */
static void test_cluster_secret(void **state)
{
    static const char hex[] = "3f9a1c07d2e84b6a95c1f0e7d3b2a8c43f9a1c07d2e84b6a95c1f0e7d3b2a8c4";
    char err[512], text[100];
    config_t *c = NULL;

    snprintf(text, sizeof text, "%s \n\n", hex);
    write_file("cluster.secret", text);
    write_conf("node { id = 1, cluster_secret_file = \"cluster.secret\" }\n"
               "peers { [2] = \"127.0.0.1:6301\" }\n");
    assert_int_equal(config_load(&c, "mqhub.conf", err, sizeof err), 0);
    assert_string_equal(c->cluster_secret, hex); /* trailing whitespace dropped */
    assert_false(c->allow_unauthenticated_peers);
    config_free(c);

    write_file("short.secret", "0123456789abcdef0123456789abcde\n"); /* 31 bytes */
    assert_string_equal(load_bad("node { cluster_secret_file = \"short.secret\" }\n"),
                        "mqhub.conf:1: node.cluster_secret_file 'short.secret': the secret "
                        "must be 32 to 1024 bytes without NUL (make one with: openssl rand "
                        "-hex 32 > FILE)");
    assert_string_equal(load_bad("node { cluster_secret_file = \"none\" }\n"),
                        "mqhub.conf:1: node.cluster_secret_file 'none': No such file or "
                        "directory");
    assert_string_equal(load_bad("node { allow_unauthenticated_peers = 1 }\n"),
                        "mqhub.conf:1: node.allow_unauthenticated_peers must be true or false");
    const char *need = "mqhub.conf: a cluster (peers or node.join) needs "
                       "node.cluster_secret_file, the same on every node (openssl rand -hex "
                       "32 > FILE; chmod 600 FILE), or node.allow_unauthenticated_peers = "
                       "true on a network only the nodes can reach";
    assert_string_equal(load_bad("peers { [2] = \"127.0.0.1:6301\" }\n"), need);
    assert_string_equal(load_bad("node { id = 4, join = true }\n"), need);
    assert_string_equal(load_bad("node { cluster_secret_file = \"cluster.secret\",\n"
                                 "       allow_unauthenticated_peers = true }\n"),
                        "mqhub.conf: node.cluster_secret_file and "
                        "node.allow_unauthenticated_peers = true contradict each other");

    write_conf("node { join = true, allow_unauthenticated_peers = true }\n");
    assert_int_equal(config_load(&c, "mqhub.conf", err, sizeof err), 0);
    assert_null(c->cluster_secret);
    assert_true(c->allow_unauthenticated_peers);
    config_free(c);
}

static void test_binary_refused(void **state)
{
    const char *e = load_bad("\x1bLua binary chunk");
    assert_non_null(strstr(e, "mqhub.conf"));
    assert_non_null(strstr(e, "binary"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_int, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peers_self, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wildcard_listen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_secret, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
