/* testcluster.c: N real mqhubd processes for the cluster tests (see
 * testcluster.h).
 *
 * testcluster_start() makes one temp dir with a subdir per node, picks two
 * free loopback ports per node, writes every config.lua up front (so joining
 * nodes can be started later) with TC_SECRET in each node's cluster.secret,
 * then starts the initial voters. Status comes from cluster.status over raw
 * frames (testhub's frame helpers), so this file needs no client library. To
 * configure more, extend write_config().
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tmpdir.h"
#include "testcluster.h"
#include "testhub.h"

#define READY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 10000

uint64_t testcluster_now_ms(void)
{
    return testhub_now_ms();
}

int testcluster_write_secret(testcluster_t *c, unsigned i, const char *secret)
{
    char path[340];
    snprintf(path, sizeof path, "%s/cluster.secret", c->nodes[i].dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%s\n", secret);
    return fclose(f) == 0 && chmod(path, 0600) == 0 ? 0 : -1;
}

static int write_config(testcluster_t *c, unsigned i, unsigned n_initial, const char *extra)
{
    tc_node_t *nd = &c->nodes[i];
    char path[340];
    snprintf(path, sizeof path, "%s/config.lua", nd->dir);
    if (testcluster_write_secret(c, i, TC_SECRET) != 0)
        return -1;
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "node { id = %llu, data = \"%s/data\", raft = \"%s\", client = \"%s\",\n"
               "       cluster_secret_file = \"cluster.secret\"%s }\n",
            (unsigned long long)nd->id, nd->dir, nd->raft, nd->address,
            i >= n_initial ? ", join = true" : "");
    fprintf(f, "transport \"tcp\" { listen = \"%s\" }\n", nd->address);
    fprintf(f, "log { level = \"info\" }\n");
    fprintf(f, "peers {\n");
    for (unsigned j = 0; j < n_initial; j++)
        if (j != i)
            fprintf(f, "  [%llu] = { raft = \"%s\", client = \"%s\" },\n",
                    (unsigned long long)c->nodes[j].id, c->nodes[j].raft,
                    c->nodes[j].address);
    fprintf(f, "}\n");
    if (extra)
        fprintf(f, "%s\n", extra);
    return fclose(f);
}

int testcluster_spawn(testcluster_t *c, unsigned i)
{
    tc_node_t *nd = &c->nodes[i];
    pid_t pid = testhub_spawn_dir(c->mqhubd, nd->dir);
    if (pid < 0)
        return -1;
    nd->pid = pid;
    nd->paused = false;
    return 0;
}

bool testcluster_running(testcluster_t *c, unsigned i)
{
    tc_node_t *nd = &c->nodes[i];
    int status;
    if (nd->pid <= 0)
        return false;
    if (waitpid(nd->pid, &status, WNOHANG) == nd->pid) {
        nd->pid = 0;
        return false;
    }
    return true;
}

static void print_log(const tc_node_t *nd)
{
    char label[48];
    snprintf(label, sizeof label, "node %llu: ", (unsigned long long)nd->id);
    testhub_print_log(nd->dir, label);
}

void testcluster_dump_logs(testcluster_t *c)
{
    for (unsigned i = 0; i < c->n; i++)
        print_log(&c->nodes[i]);
}

unsigned testcluster_log_count(testcluster_t *c, unsigned i, const char *text)
{
    char path[400], line[2048];
    unsigned n = 0;
    snprintf(path, sizeof path, "%s/mqhubd.log", c->nodes[i].dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, text) != NULL;
    fclose(f);
    return n;
}

/* Wait until node @i answers cluster.status. */
static int wait_up(testcluster_t *c, unsigned i)
{
    tc_status_t st;
    uint64_t until = testcluster_now_ms() + READY_TIMEOUT_MS;
    while (testcluster_now_ms() < until) {
        if (!testcluster_running(c, i)) {
            fprintf(stderr, "testcluster: node %u exited during start\n", i + 1);
            print_log(&c->nodes[i]);
            return -1;
        }
        if (testcluster_status(c, i, false, 1000, &st) == 0)
            return 0;
        testhub_sleep_ms(50);
    }
    fprintf(stderr, "testcluster: node %u not answering\n", i + 1);
    print_log(&c->nodes[i]);
    return -1;
}

int testcluster_start_node(testcluster_t *c, unsigned i)
{
    return testcluster_spawn(c, i) == 0 ? wait_up(c, i) : -1;
}

int testcluster_start(testcluster_t *c, const char *mqhubd, unsigned n_total,
                      unsigned n_initial, const char *extra_config)
{
    uint16_t ports[2 * TC_MAX_NODES];
    unsigned n_ports = 0;

    memset(c, 0, sizeof *c);
    if (!mqhubd || n_total == 0 || n_total > TC_MAX_NODES || n_initial > n_total) {
        fprintf(stderr, "testcluster: no mqhubd binary or bad node counts\n");
        return -1;
    }
    snprintf(c->mqhubd, sizeof c->mqhubd, "%s", mqhubd);
    if (!tmpdir_make(c->dir, sizeof c->dir, "test"))
        return -1;
    c->n = n_total;
    for (unsigned i = 0; i < n_total; i++) {
        tc_node_t *nd = &c->nodes[i];
        uint16_t raft;
        nd->id = i + 1;
        snprintf(nd->dir, sizeof nd->dir, "%s/n%u", c->dir, i + 1);
        if (mkdir(nd->dir, 0755) != 0)
            return -1;
        nd->port = testhub_free_port(ports, n_ports);
        ports[n_ports++] = nd->port;
        raft = testhub_free_port(ports, n_ports);
        ports[n_ports++] = raft;
        if (!nd->port || !raft)
            return -1;
        snprintf(nd->address, sizeof nd->address, "127.0.0.1:%u", nd->port);
        snprintf(nd->raft, sizeof nd->raft, "127.0.0.1:%u", raft);
        size_t l = strlen(c->seeds);
        snprintf(c->seeds + l, sizeof c->seeds - l, "%s%s", l ? "," : "", nd->address);
    }
    for (unsigned i = 0; i < n_total; i++)
        if (write_config(c, i, n_initial, extra_config) != 0)
            return -1;
    for (unsigned i = 0; i < n_initial; i++)
        if (testcluster_spawn(c, i) != 0)
            return -1;
    for (unsigned i = 0; i < n_initial; i++)
        if (wait_up(c, i) != 0)
            return -1;
    return testcluster_leader(c, READY_TIMEOUT_MS) >= 0 ? 0 : -1;
}

void testcluster_kill(testcluster_t *c, unsigned i)
{
    tc_node_t *nd = &c->nodes[i];
    if (nd->pid <= 0)
        return;
    kill(nd->pid, SIGKILL);
    waitpid(nd->pid, NULL, 0);
    nd->pid = 0;
    nd->paused = false;
}

int testcluster_stop(testcluster_t *c, unsigned i)
{
    tc_node_t *nd = &c->nodes[i];
    if (nd->pid <= 0)
        return 0;
    if (nd->paused)
        testcluster_resume(c, i);
    int st = testhub_term_wait(&nd->pid, STOP_TIMEOUT_MS);
    if (st < 0) {
        fprintf(stderr, "testcluster: node %u ignored SIGTERM\n", i + 1);
        testcluster_kill(c, i);
    }
    return st;
}

void testcluster_pause(testcluster_t *c, unsigned i)
{
    if (c->nodes[i].pid > 0 && kill(c->nodes[i].pid, SIGSTOP) == 0)
        c->nodes[i].paused = true;
}

void testcluster_resume(testcluster_t *c, unsigned i)
{
    if (c->nodes[i].pid > 0 && kill(c->nodes[i].pid, SIGCONT) == 0)
        c->nodes[i].paused = false;
}

/* ---------------------------------------------------------------- status */

static uint64_t get_uint(const msgpack_object *map, const char *key)
{
    const msgpack_object *o = mp_map_get(map, key);
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

static void fill_status(const msgpack_object *m, tc_status_t *out)
{
    char role[16];
    const msgpack_object *nodes = mp_map_get(m, "nodes");
    memset(out, 0, sizeof *out);
    out->node = get_uint(m, "node");
    out->leader_id = get_uint(m, "leader_id");
    out->term = get_uint(m, "term");
    out->commit_index = get_uint(m, "commit_index");
    out->last_applied = get_uint(m, "last_applied");
    out->is_leader = strcmp(testhub_str(m, "role", role, sizeof role), "leader") == 0;
    testhub_str(m, "digest", out->digest, sizeof out->digest);
    if (nodes && nodes->type == MSGPACK_OBJECT_ARRAY) {
        out->n_members = nodes->via.array.size;
        for (uint32_t i = 0; i < nodes->via.array.size; i++)
            out->n_voters +=
                strcmp(testhub_str(&nodes->via.array.ptr[i], "role", role, sizeof role),
                       "voter") == 0;
    }
}

int testcluster_status(testcluster_t *c, unsigned i, bool digest, int timeout_ms,
                       tc_status_t *out)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object o;
    const msgpack_object *ok;
    int rc = -1;

    if (c->nodes[i].pid <= 0 || c->nodes[i].paused)
        return -1;
    int fd = testhub_connect_port(c->nodes[i].port);
    if (fd < 0)
        return -1;
    msgpack_sbuffer_init(&sb);
    msgpack_zone_init(&zone, 4096);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "cluster.status", 14);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_str_with_body(&pk, "digest", 6);
    digest ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    if (testhub_write_frame(fd, sb.data, sb.size) == 0 &&
        testhub_read_frame(fd, timeout_ms, &zone, &o) == 0 && (ok = mp_map_get(&o, "ok")) &&
        ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean) {
        fill_status(&o, out);
        rc = 0;
    }
    close(fd);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* One look: the index of the agreed leader, or -1. */
static int agreed_leader(testcluster_t *c)
{
    int leader = -1;
    uint64_t id = 0;
    for (unsigned i = 0; i < c->n; i++) {
        tc_status_t st;
        if (c->nodes[i].pid <= 0 || c->nodes[i].paused)
            continue;
        if (testcluster_status(c, i, false, 1000, &st) != 0)
            return -1;
        if (st.n_members == 0) /* a joining node not added yet */
            continue;
        if (st.leader_id == 0 || (id && st.leader_id != id))
            return -1;
        id = st.leader_id;
        if (st.is_leader)
            leader = (int)i;
    }
    return leader >= 0 && c->nodes[leader].id == id ? leader : -1;
}

int testcluster_leader(testcluster_t *c, int timeout_ms)
{
    uint64_t until = testcluster_now_ms() + (uint64_t)timeout_ms;
    do {
        int l = agreed_leader(c);
        if (l >= 0)
            return l;
        testhub_sleep_ms(20);
    } while (testcluster_now_ms() < until);
    return -1;
}

int testcluster_converged(testcluster_t *c, int timeout_ms)
{
    uint64_t until = testcluster_now_ms() + (uint64_t)timeout_ms;
    tc_status_t st[TC_MAX_NODES] = {0};
    bool same;
    do {
        same = true;
        int first = -1;
        for (unsigned i = 0; i < c->n; i++) {
            if (c->nodes[i].pid <= 0 || c->nodes[i].paused)
                continue;
            if (testcluster_status(c, i, true, 5000, &st[i]) != 0) {
                same = false;
                break;
            }
            if (first < 0)
                first = (int)i;
            else if (st[i].last_applied != st[first].last_applied ||
                     strcmp(st[i].digest, st[first].digest) != 0)
                same = false;
        }
        if (same && first >= 0)
            return 0;
        testhub_sleep_ms(30);
    } while (testcluster_now_ms() < until);
    for (unsigned i = 0; i < c->n; i++)
        if (c->nodes[i].pid > 0 && !c->nodes[i].paused)
            fprintf(stderr, "node %u: applied %llu digest %s\n", i + 1,
                    (unsigned long long)st[i].last_applied, st[i].digest);
    return -1;
}

void testcluster_cleanup(testcluster_t *c)
{
    char cmd[600];
    for (unsigned i = 0; i < c->n; i++) {
        int status = testcluster_stop(c, i);
        if (status != 0) { /* e.g. a sanitizer report at exit: in its log */
            fprintf(stderr, "testcluster: node %u exited with status %d\n", i + 1, status);
            print_log(&c->nodes[i]);
        }
    }
    if (!c->dir[0] || getenv("MQHUB_KEEP_TEST_DIR") || !strstr(c->dir, "/mqhub-test-"))
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "testcluster: could not remove %s\n", c->dir);
}
