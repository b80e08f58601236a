/* script_bench.c: mqhub-script-bench — what a filter script costs per
 * message per subscription, the state machine alone (no raft, no network).
 *
 *   mqhub-script-bench [-n N] [--batch K] [--subs S] [--hook FILE]
 *
 * One topic with S push subscriptions; N publishes (attrs tier=vip,
 * amount=1500), K per entry, applied with fsm_apply_entry as raft would on
 * the leader. Run twice: subscriptions without a filter, then the same
 * subscriptions with filter_script (a small filter that matches every
 * message, so both runs deliver the same). The difference divided by N x S
 * is the filter's cost per message per subscription, including the
 * once-per-entry instantiation of the script. With --hook FILE a third run
 * attaches FILE (e.g. scripts/risk/merchant_spike.lua) as the topic's hook,
 * without filters: its cost per publish (messages carry merchant=m<i%100>
 * and amount=1, so merchant_spike keeps accepting: every publish runs the
 * whole rule). Start at main().
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mp.h"
#include "sm/sm.h"
#include "tmpdir.h"

#define FILTER_SRC                                                                          \
    "function filter(msg)\n"                                                                \
    "  return msg.attrs.tier == 'vip' and tonumber(msg.attrs.amount) > 1000\n"              \
    "end\n"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pack_kv(msgpack_packer *pk, const char *k, const char *v)
{
    mp_pack_str(pk, k, strlen(k));
    mp_pack_str(pk, v, strlen(v));
}

/* Apply @n packed commands as one entry at @now; exits on failure. */
static void apply(fsm_t *f, uint64_t now, char **cmds, size_t *lens, unsigned n)
{
    struct raft_buffer buf;
    fsm_result_t *res = NULL;
    if (fsm_entry_encode(now, (const char *const *)cmds, lens, n, &buf) != 0 ||
        fsm_apply_entry(f, buf.base, buf.len, &res) != 0) {
        fprintf(stderr, "apply failed\n");
        exit(1);
    }
    fsm_result_free(res);
    raft_free(buf.base);
}

static void apply_one(fsm_t *f, uint64_t now, msgpack_sbuffer *sb)
{
    char *cmd = sb->data;
    size_t len = sb->size;
    apply(f, now, &cmd, &len, 1);
    msgpack_sbuffer_clear(sb);
}

static char *hook_src; /* --hook: the file's content */

static void pack_topic_create(msgpack_packer *pk, const char *name, const char *hook)
{
    msgpack_pack_map(pk, hook ? 3 : 2);
    pack_kv(pk, "op", "topic.create");
    pack_kv(pk, "name", name);
    if (hook) {
        mp_pack_str(pk, "attrs", 5);
        msgpack_pack_map(pk, 1);
        pack_kv(pk, "hook", hook);
    }
}

static void pack_load(msgpack_packer *pk, const char *name, const char *src)
{
    msgpack_pack_map(pk, 3);
    pack_kv(pk, "op", "script.load");
    pack_kv(pk, "name", name);
    pack_kv(pk, "source", src);
}

/* A topic "orders" with @subs push subscriptions (filtered or not), or
 * with the --hook script and no subscription (@hooked). */
static void setup(fsm_t *f, unsigned subs, bool filtered, bool hooked)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char name[16];
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_load(&pk, "vip", FILTER_SRC);
    apply_one(f, 1, &sb);
    pack_topic_create(&pk, "risk-alerts", NULL);
    apply_one(f, 1, &sb);
    if (hooked) {
        pack_load(&pk, "hook", hook_src);
        apply_one(f, 1, &sb);
    }
    pack_topic_create(&pk, "orders", hooked ? "hook" : NULL);
    apply_one(f, 1, &sb);
    for (unsigned i = 0; i < subs && !hooked; i++) {
        snprintf(name, sizeof name, "s%u", i);
        msgpack_pack_map(&pk, filtered ? 5 : 4);
        pack_kv(&pk, "op", "subscription.create");
        pack_kv(&pk, "topic", "orders");
        pack_kv(&pk, "name", name);
        mp_pack_str(&pk, "endpoint", 8);
        msgpack_pack_map(&pk, 1);
        mp_pack_str(&pk, "push", 4);
        msgpack_pack_true(&pk);
        if (filtered)
            pack_kv(&pk, "filter_script", "vip");
        apply_one(f, 1, &sb);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* Publish command @i: merchant m<i % 100>, @amount. */
static char *pack_publish(unsigned i, const char *amount, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char merchant[16];
    snprintf(merchant, sizeof merchant, "m%u", i % 100);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_kv(&pk, "op", "publish");
    pack_kv(&pk, "topic", "orders");
    pack_kv(&pk, "body", "{\"order\": 42}");
    mp_pack_str(&pk, "attrs", 5);
    msgpack_pack_map(&pk, 3);
    pack_kv(&pk, "tier", "vip");
    pack_kv(&pk, "amount", amount);
    pack_kv(&pk, "merchant", merchant);
    *len = sb.size;
    return msgpack_sbuffer_release(&sb);
}

/* The hook's counters, to see that it ran (and what it decided). */
static void print_hook_stats(fsm_t *f)
{
    msgpack_sbuffer req, out;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_sbuffer_init(&req);
    msgpack_sbuffer_init(&out);
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_kv(&pk, "op", "script.get");
    pack_kv(&pk, "name", "hook");
    msgpack_unpacked_init(&u);
    msgpack_unpack_next(&u, req.data, req.size, NULL);
    fsm_read(f, &u.data, &out);
    msgpack_unpacked_destroy(&u);
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, out.data, out.size, NULL) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *st = mp_map_get(&u.data, "stats");
        const char *keys[] = {"calls", "errors", "refused", "blocks"};
        printf("hook stats:");
        for (int i = 0; i < 4; i++) {
            const msgpack_object *v = mp_map_get(st, keys[i]);
            printf(" %s %llu", keys[i], v ? (unsigned long long)v->via.u64 : 0ULL);
        }
        printf("\n");
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&req);
    msgpack_sbuffer_destroy(&out);
}

/* Seconds to publish @n messages, @batch per entry. */
static double run(unsigned n, unsigned batch, unsigned subs, bool filtered, bool hooked)
{
    char dir[96], err[256] = "";
    fsm_t *f;
    if (!tmpdir_make(dir, sizeof dir, "script-bench") || fsm_open(&f, dir, err, sizeof err) != 0) {
        fprintf(stderr, "cannot open a state machine in %s: %s\n", dir, err);
        exit(1);
    }
    setup(f, subs, filtered, hooked);
    /* 100 rounds of @batch commands: every merchant pays as often */
    unsigned total = batch * 100;
    char **cmds = calloc(total, sizeof(*cmds));
    size_t *lens = calloc(total, sizeof(*lens));
    for (unsigned i = 0; i < total; i++)
        cmds[i] = pack_publish(i, hooked ? "1" : "1500", &lens[i]);
    double t0 = now_s();
    for (unsigned done = 0, k = 0; done < n; done += batch, k = (k + 1) % 100)
        apply(f, 2 + done * 10ULL, cmds + k * batch, lens + k * batch,
              n - done < batch ? n - done : batch);
    double t = now_s() - t0;
    if (hooked)
        print_hook_stats(f);
    for (unsigned i = 0; i < total; i++)
        free(cmds[i]);
    free(cmds);
    free(lens);
    fsm_close(f);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return t;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = fp ? calloc(1, 1 << 20) : NULL;
    if (buf && fread(buf, 1, (1 << 20) - 1, fp) == 0) {
        free(buf);
        buf = NULL;
    }
    if (fp)
        fclose(fp);
    return buf;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"batch", required_argument, NULL, 'b'},
                                         {"subs", required_argument, NULL, 's'},
                                         {"hook", required_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    unsigned n = 20000, batch = 64, subs = 4;
    int c;
    while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        if (c == 'n')
            n = (unsigned)strtoul(optarg, NULL, 10);
        else if (c == 'b')
            batch = (unsigned)strtoul(optarg, NULL, 10);
        else if (c == 's')
            subs = (unsigned)strtoul(optarg, NULL, 10);
        else if (c != 'h')
            return 2;
        else if (!(hook_src = slurp(optarg)))
            return fprintf(stderr, "cannot read %s\n", optarg), 2;
    }
    if (!n || !batch || !subs) {
        fprintf(stderr, "usage: mqhub-script-bench [-n N] [--batch K] [--subs S] [--hook FILE]\n");
        return 2;
    }
    log_set_level(MQHUB_LOG_WARN);
    double plain = run(n, batch, subs, false, false), filtered = run(n, batch, subs, true, false);
    printf("%u publishes, %u per entry, %u push subscriptions\n", n, batch, subs);
    printf("no filter:   %.3f s  (%.2f us per publish)\n", plain, plain * 1e6 / n);
    printf("with filter: %.3f s  (%.2f us per publish)\n", filtered, filtered * 1e6 / n);
    printf("filter cost: %.3f us per message per subscription\n",
           (filtered - plain) * 1e6 / ((double)n * subs));
    if (hook_src) {
        double bare = run(n, batch, 0, false, false), hooked = run(n, batch, 0, false, true);
        printf("hook cost:   %.3f us per publish (%.2f us bare, %.2f us hooked)\n",
               (hooked - bare) * 1e6 / n, bare * 1e6 / n, hooked * 1e6 / n);
        free(hook_src);
    }
    return 0;
}
