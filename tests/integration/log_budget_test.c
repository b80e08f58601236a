/* log_budget_test.c: when a node snapshots (docs/operations.md "Snapshot
 * tuning").
 * - Raft's in-memory log is bounded by bytes, not only by entries
 *   (snapshot.log_bytes): a node with the default threshold of 8192 entries
 *   and log_bytes = 1 MiB gets 40 sends of 60 KiB — 40 entries, far below the
 *   threshold, 2.4 MiB — and must have taken a snapshot by then; one without
 *   the byte bound took none.
 * - A growing state is not rewritten every `threshold` entries
 *   (snapshot.growth): with threshold 16, 256 sends of 8 KiB kept in the
 *   queue make a snapshot every ~16 entries with growth = 0, and with the
 *   default growth of 100 % only when the entries since the last one hold
 *   at least its bytes — so each gap is at least about the state before it.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testhub.h"

#define BODY_BYTES (60 * 1024)
#define SENDS 40

static const char *mqhubd_path;

static int count_snapshots(const char *data_dir)
{
    char raft[700];
    int n = 0;
    snprintf(raft, sizeof raft, "%s/raft", data_dir);
    DIR *d = opendir(raft);
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strncmp(e->d_name, "snapshot-", 9) == 0 && !strstr(e->d_name, ".meta"))
            n++;
    closedir(d);
    return n;
}

static void test_bytes_make_a_snapshot(void **state)
{
    testhub_t hub;
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.timeout_ms = 10000, .window = 4};
    mqhub_queue_attrs_t attrs = {.max_msg_size = 1048576};
    testhub_opts_t ho = {.extra_config = "snapshot { log_bytes = 1048576 }\n"};
    char err[256], data[600];
    static char body[BODY_BYTES];
    (void)state;

    memset(body, 'b', sizeof body);
    assert_int_equal(testhub_start(&hub, mqhubd_path, &ho), 0);
    assert_int_equal(mqhub_client_connect(&c, hub.address, &o, err, sizeof err), 0);
    assert_int_equal(mqhub_client_queue_create(c, "budget", &attrs), 0);
    for (int i = 0; i < SENDS; i++)
        assert_int_equal(mqhub_client_send(c, "budget", body, sizeof body, NULL, NULL), 0);
    snprintf(data, sizeof data, "%s/data", hub.dir);
    int snaps = 0;
    for (int i = 0; i < 100 && (snaps = count_snapshots(data)) == 0; i++)
        usleep(50 * 1000); /* the snapshot is written off the loop */
    fprintf(stderr, "%d sends of %d bytes: %d snapshot(s)\n", SENDS, BODY_BYTES, snaps);
    assert_true(snaps >= 1);
    mqhub_client_close(c);
    assert_int_equal(testhub_stop(&hub), 0);
    testhub_cleanup(&hub);
}

#define GROWTH_SENDS 256
#define GROWTH_BODY 8192
#define MAX_SNAPS 64

/* GROWTH_SENDS sends of GROWTH_BODY bytes, one entry each, under @config;
 * the snapshot indexes seen in cluster.status after each go to @snaps.
 * Returns how many. */
static int snapshots_while_growing(const char *config, uint64_t *snaps)
{
    testhub_t hub;
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.timeout_ms = 10000};
    testhub_opts_t ho = {.extra_config = config};
    static char body[GROWTH_BODY];
    char err[256];
    int n = 0;

    memset(body, 'g', sizeof body);
    assert_int_equal(testhub_start(&hub, mqhubd_path, &ho), 0);
    assert_int_equal(mqhub_client_connect(&c, hub.address, &o, err, sizeof err), 0);
    assert_int_equal(mqhub_client_queue_create(c, "growth", NULL), 0);
    for (int i = 0; i <= GROWTH_SENDS; i++) {
        mqhub_cluster_status_t st;
        mqhub_cluster_raft_t raft;
        if (i < GROWTH_SENDS)
            assert_int_equal(mqhub_client_send(c, "growth", body, sizeof body, NULL, NULL), 0);
        else
            usleep(500 * 1000); /* the last one is written off the loop */
        assert_int_equal(mqhub_client_cluster_status_raft(c, false, &st, &raft), 0);
        if (raft.snapshot_index && (n == 0 || raft.snapshot_index != snaps[n - 1]) &&
            n < MAX_SNAPS)
            snaps[n++] = raft.snapshot_index;
    }
    fprintf(stderr, "%.*s: %d snapshots at", (int)strcspn(config, "\n"), config, n);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %llu", (unsigned long long)snaps[i]);
    fprintf(stderr, "\n");
    mqhub_client_close(c);
    assert_int_equal(testhub_stop(&hub), 0);
    testhub_cleanup(&hub);
    return n;
}

static void test_growth_spaces_snapshots(void **state)
{
    uint64_t every[MAX_SNAPS], grown[MAX_SNAPS];
    (void)state;

    int n = snapshots_while_growing("snapshot { threshold = 16, growth = 0 }\n", every);
    assert_true(n >= 8); /* ~16: one per 16 entries */
    n = snapshots_while_growing("snapshot { threshold = 16 }\n", grown);
    assert_true(n >= 3 && n <= 6); /* at ~16, 32, 64, 128, 256 entries */
    for (int i = 1; i < n; i++) /* each gap holds about the state before it */
        assert_true(grown[i] - grown[i - 1] >= grown[i - 1] / 2);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_make_a_snapshot),
        cmocka_unit_test(test_growth_spaces_snapshots),
    };
    mqhubd_path = testhub_binary(argc, argv);
    if (!mqhubd_path) {
        fprintf(stderr, "usage: %s MQHUBD (or set $MQHUBD)\n", argv[0]);
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
