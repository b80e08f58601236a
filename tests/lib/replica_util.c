/* replica_util.c: helpers of the replica tests (see replica_util.h). A node is
 * a real fsm plus a real raft group listening on a loopback port, on a loop
 * the test drives with UV_RUN_ONCE. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mp.h"
#include "replica_util.h"
#include "tmpdir.h"

void make_dir(char *out, size_t len, const char *tag)
{
    if (!tmpdir_make(out, len, tag)) {
        perror("mkdtemp");
        abort();
    }
}

void rm_dir(const char *dir)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

int test_port(int offset)
{
    return 17000 + (int)(getpid() % 1000) + offset;
}

static void wake(uv_timer_t *t)
{
}

bool tnode_run_until(tnode_t *n, const bool *flag, unsigned timeout_ms)
{
    uv_timer_t t; /* wakes the loop so the deadline is checked */
    uv_timer_init(&n->loop, &t);
    uv_timer_start(&t, wake, 20, 20);
    uv_update_time(&n->loop);
    uint64_t deadline = uv_now(&n->loop) + timeout_ms;
    while (!*flag && uv_now(&n->loop) < deadline)
        uv_run(&n->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&n->loop, UV_RUN_NOWAIT);
    return *flag;
}

int tnode_start(tnode_t *n, const char *dir, int port, unsigned snapshot_threshold,
                unsigned snapshot_trailing)
{
    char err[256];

    memset(n, 0, sizeof *n);
    if (uv_loop_init(&n->loop) != 0)
        return -1;
    if (fsm_open(&n->fsm, dir, err, sizeof err) != 0) {
        fprintf(stderr, "fsm_open: %s\n", err);
        return -1;
    }
    snprintf(n->raft_dir, sizeof n->raft_dir, "%s/raft", dir);
    snprintf(n->raft_address, sizeof n->raft_address, "127.0.0.1:%d", port);
    replica_config_t cfg = {
        .id = 1,
        .dir = n->raft_dir,
        .raft_address = n->raft_address,
        .client_address = "127.0.0.1:1",
        .snapshot_threshold = snapshot_threshold,
        .snapshot_trailing = snapshot_trailing,
    };
    if (replica_start(&n->r, &n->loop, n->fsm, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "replica_start: %s\n", err);
        return -1;
    }
    return 0;
}

bool tnode_wait_leader(tnode_t *n, unsigned timeout_ms)
{
    uv_update_time(&n->loop);
    uint64_t deadline = uv_now(&n->loop) + timeout_ms;
    while (!replica_is_leader(n->r) && uv_now(&n->loop) < deadline)
        uv_run(&n->loop, UV_RUN_ONCE);
    return replica_is_leader(n->r);
}

static void stopped(void *arg)
{
    *(bool *)arg = true;
}

void tnode_stop(tnode_t *n)
{
    bool done = false;
    replica_stop(n->r, stopped, &done);
    while (!done)
        uv_run(&n->loop, UV_RUN_ONCE);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    fsm_close(n->fsm);
    if (uv_loop_close(&n->loop) != 0)
        fprintf(stderr, "loop still has handles\n");
}

typedef struct call {
    bool done;
    int status;
    char *reply;
    size_t len;
} call_t;

static void call_done(void *arg, int status, const char *reply, size_t len)
{
    call_t *c = arg;
    c->done = true;
    c->status = status;
    if (status == 0) {
        c->reply = malloc(len);
        memcpy(c->reply, reply, len);
        c->len = len;
    }
}

int tnode_call(tnode_t *n, const msgpack_sbuffer *cmd, char **reply, size_t *len)
{
    call_t c = {0};
    int rv = replica_submit(n->r, cmd->data, cmd->size, call_done, &c);
    if (rv != 0)
        return rv;
    while (!c.done)
        uv_run(&n->loop, UV_RUN_ONCE);
    *reply = c.reply;
    *len = c.len;
    return c.status;
}

/* ---- requests ------------------------------------------------------------ */

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void begin(msgpack_sbuffer *sb, msgpack_packer *pk, size_t n, const char *op,
                  uint64_t id)
{
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, n);
    pack_cstr(pk, "op");
    pack_cstr(pk, op);
    pack_cstr(pk, "id");
    msgpack_pack_uint64(pk, id);
}

void cmd_queue_create(msgpack_sbuffer *sb, uint64_t id, const char *queue)
{
    msgpack_packer pk;
    begin(sb, &pk, 3, "queue.create", id);
    pack_cstr(&pk, "name");
    pack_cstr(&pk, queue);
}

void cmd_send(msgpack_sbuffer *sb, uint64_t id, const char *queue, uint64_t body)
{
    msgpack_packer pk;
    char b[32];
    int bl = snprintf(b, sizeof b, "m%" PRIu64, body);
    begin(sb, &pk, 4, "send", id);
    pack_cstr(&pk, "queue");
    pack_cstr(&pk, queue);
    pack_cstr(&pk, "body");
    msgpack_pack_bin_with_body(&pk, b, (size_t)bl);
}

void cmd_receive(msgpack_sbuffer *sb, uint64_t id, const char *queue, unsigned max)
{
    msgpack_packer pk;
    begin(sb, &pk, 4, "receive", id);
    pack_cstr(&pk, "queue");
    pack_cstr(&pk, queue);
    pack_cstr(&pk, "max");
    msgpack_pack_uint32(&pk, max);
}

void cmd_delete(msgpack_sbuffer *sb, uint64_t id, const char *queue,
                char *const *receipts, unsigned n)
{
    msgpack_packer pk;
    begin(sb, &pk, 4, "delete", id);
    pack_cstr(&pk, "queue");
    pack_cstr(&pk, queue);
    pack_cstr(&pk, "receipts");
    msgpack_pack_array(&pk, n);
    for (unsigned i = 0; i < n; i++)
        pack_cstr(&pk, receipts[i]);
}

/* ---- replies ------------------------------------------------------------- */

bool reply_ok(const char *reply, size_t len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    bool ok = false;
    if (msgpack_unpack_next(&u, reply, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *o = mp_map_get(&u.data, "ok");
        ok = o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
    }
    msgpack_unpacked_destroy(&u);
    return ok;
}

/* Body "m<number>" as bin or str. */
static bool body_number(const msgpack_object *b, uint64_t *out)
{
    const char *p;
    size_t len;
    char tmp[32];
    if (b && b->type == MSGPACK_OBJECT_BIN) {
        p = b->via.bin.ptr;
        len = b->via.bin.size;
    } else if (b && b->type == MSGPACK_OBJECT_STR) {
        p = b->via.str.ptr;
        len = b->via.str.size;
    } else {
        return false;
    }
    if (len < 2 || len >= sizeof tmp || p[0] != 'm')
        return false;
    memcpy(tmp, p + 1, len - 1);
    tmp[len - 1] = '\0';
    *out = strtoull(tmp, NULL, 10);
    return true;
}

/* One receive: calls @fn per message; returns how many came, -1 on error. */
static long receive_once(tnode_t *n, const char *queue, drain_fn fn, void *arg)
{
    msgpack_sbuffer sb;
    char *reply = NULL;
    size_t len = 0;
    long count = -1;

    msgpack_sbuffer_init(&sb);
    cmd_receive(&sb, 7, queue, 256);
    if (tnode_call(n, &sb, &reply, &len) == 0) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, reply, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
            const msgpack_object *msgs = mp_map_get(&u.data, "msgs");
            if (msgs && msgs->type == MSGPACK_OBJECT_ARRAY) {
                count = 0;
                for (uint32_t i = 0; i < msgs->via.array.size; i++) {
                    const msgpack_object *m = &msgs->via.array.ptr[i];
                    const msgpack_object *rc = mp_map_get(m, "receipt");
                    uint64_t body;
                    if (!body_number(mp_map_get(m, "body"), &body) || !rc ||
                        rc->type != MSGPACK_OBJECT_STR) {
                        count = -1;
                        break;
                    }
                    fn(arg, body, rc->via.str.ptr, rc->via.str.size);
                    count++;
                }
            }
        }
        msgpack_unpacked_destroy(&u);
    }
    free(reply);
    msgpack_sbuffer_destroy(&sb);
    return count;
}

long drain_queue(tnode_t *n, const char *queue, drain_fn fn, void *arg)
{
    long total = 0, got;
    while ((got = receive_once(n, queue, fn, arg)) > 0)
        total += got;
    return got < 0 ? -1 : total;
}
