/* damaged_log_test.c: a damaged raft directory is never silent
 * (docs/operations.md "Damaged data"), on a real mqhubd.
 *
 * Each case writes known messages ("dmg-001"...; each send acknowledged),
 * stops the daemon (SIGTERM closes the open segment, SIGKILL leaves it
 * open), damages one file at a computed place (testdamage.h: the payload of
 * the batch that holds a given message, the tail of the open segment, the
 * middle of the newest snapshot), and checks the documented outcome:
 *   closed_segment  start refused (exit 65) naming the segment and the index;
 *                   --repair says what it drops; the messages before stay
 *   open_segment    the same for a bad batch in the middle of an open one
 *   torn_tail       an interrupted write after the last batch: starts, warns,
 *                   every acknowledged message is there exactly once
 *   torn_short      the same, the file ending inside that write (raft 0.22.1
 *                   double-frees on it unless logcheck.c zeroes it first)
 *   snapshot        the newest snapshot damaged: starts from the previous one
 *                   with a warning, nothing lost
 * One CTest entry per case: argv[2] names it (all of them without one).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "mqhub/client.h"
#include "testdamage.h"
#include "testhub.h"

#define N_MSGS 40
#define DAMAGED 20 /* the message whose batch is damaged */
#define RUN_TIMEOUT_MS 20000
#define EXIT_DATAERR 65

static const char *mqhubd_path;

typedef struct dmg {
    testhub_t hub;
    char raft[300], config[300];
    char out[16384];
} dmg_t;

static void body_of(unsigned i, char *buf, size_t len)
{
    snprintf(buf, len, "dmg-%03u", i);
}

static mqhub_client_t *connect_hub(dmg_t *d)
{
    mqhub_client_t *c = NULL;
    mqhub_client_opts_t o = {.timeout_ms = 10000};
    char err[256];
    assert_int_equal(mqhub_client_connect(&c, d->hub.address, &o, err, sizeof err), 0);
    return c;
}

/* A hub with queue "q" holding N_MSGS acknowledged messages. */
static void setup(dmg_t *d, const char *extra)
{
    testhub_opts_t o = {.extra_config = extra};
    char body[32];
    assert_int_equal(testhub_start(&d->hub, mqhubd_path, &o), 0);
    snprintf(d->raft, sizeof d->raft, "%s/data/raft", d->hub.dir);
    snprintf(d->config, sizeof d->config, "%s/config.lua", d->hub.dir);
    mqhub_client_t *c = connect_hub(d);
    assert_int_equal(mqhub_client_queue_create(c, "q", NULL), 0);
    assert_int_equal(mqhub_client_queue_create(c, "pad", NULL), 0);
    for (unsigned i = 1; i <= N_MSGS; i++) {
        body_of(i, body, sizeof body);
        assert_int_equal(mqhub_client_send(c, "q", body, strlen(body), NULL, NULL), 0);
    }
    mqhub_client_close(c);
}

/* Receive everything; @seen[i] counts message i. Returns how many arrived. */
static unsigned receive_all(dmg_t *d, unsigned seen[N_MSGS + 1])
{
    mqhub_client_t *c = connect_hub(d);
    mqhub_receive_opts_t o = {.max = 256, .wait = 0, .visibility = 600};
    unsigned total = 0;
    for (int empty = 0; empty < 2;) {
        mqhub_msg_list_t l;
        assert_int_equal(mqhub_client_receive(c, "q", &o, &l), 0);
        empty = l.n ? 0 : empty + 1;
        for (size_t i = 0; i < l.n; i++) {
            unsigned n = 0;
            assert_int_equal(sscanf(l.msgs[i].body, "dmg-%u", &n), 1);
            assert_true(n >= 1 && n <= N_MSGS);
            seen[n]++;
            total++;
        }
        mqhub_msg_list_free(&l);
    }
    assert_int_equal(mqhub_client_ping(c), 0);
    mqhub_client_close(c);
    return total;
}

static void expect_in(const char *out, const char *what)
{
    if (!strstr(out, what)) {
        fprintf(stderr, "expected \"%s\" in:\n%s\n", what, out);
        fail();
    }
}

/* Flip a payload byte of the batch holding message DAMAGED. */
static void damage_batch(dmg_t *d, bool open, td_batch_t *b)
{
    char body[32];
    body_of(DAMAGED, body, sizeof body);
    assert_int_equal(testdamage_find(d->raft, body, open, b), 0);
    assert_int_equal(testdamage_flip(d->raft, b->file, b->hit, 0x20), 0);
}

/* The start is refused naming the file and the batch; --repair drops from
 * there; the messages before DAMAGED are all there, once. */
static void refused_then_repaired(dmg_t *d, const td_batch_t *b, bool open)
{
    char line[512];
    unsigned seen[N_MSGS + 1] = {0};

    int st = testdamage_run(mqhubd_path, d->config, NULL, RUN_TIMEOUT_MS, d->out, sizeof d->out);
    assert_int_equal(st, EXIT_DATAERR);
    snprintf(line, sizeof line, "%s segment %s: batch %u at byte %zu (index ",
             open ? "open" : "closed", b->file, b->number, b->off);
    expect_in(d->out, line);
    expect_in(d->out, "--repair drops entries ");
    expect_in(d->out, "not starting");

    st = testdamage_run(mqhubd_path, d->config, "--repair", RUN_TIMEOUT_MS, d->out,
                        sizeof d->out);
    assert_int_equal(st, 0);
    expect_in(d->out, line);
    snprintf(line, sizeof line, "of segment %s (cut at byte %zu; the original is in ", b->file,
             b->off);
    expect_in(d->out, line);
    expect_in(d->out, "the log now ends at index ");

    assert_int_equal(testhub_restart(&d->hub), 0);
    receive_all(d, seen);
    for (unsigned i = 1; i <= N_MSGS; i++)
        assert_int_equal(seen[i], i < DAMAGED ? 1 : 0);
    assert_int_equal(testhub_stop(&d->hub), 0); /* no sanitizer report either */
}

static void test_closed_segment(void **state)
{
    dmg_t *d = *state;
    td_batch_t b;
    setup(d, NULL);
    assert_int_equal(testhub_stop(&d->hub), 0); /* closes the open segment */
    damage_batch(d, false, &b);
    refused_then_repaired(d, &b, false);
}

static void test_open_segment(void **state)
{
    dmg_t *d = *state;
    td_batch_t b;
    setup(d, NULL);
    testhub_kill(&d->hub); /* the open segment stays open */
    damage_batch(d, true, &b);
    refused_then_repaired(d, &b, true);
}

/* An interrupted write after the last batch: the daemon starts, says what
 * it removed, and every acknowledged message is there exactly once. */
static void torn(dmg_t *d, bool short_file)
{
    char body[32];
    td_batch_t b;
    unsigned seen[N_MSGS + 1] = {0};

    setup(d, NULL);
    testhub_kill(&d->hub);
    body_of(N_MSGS, body, sizeof body);
    assert_int_equal(testdamage_find(d->raft, body, true, &b), 0);
    assert_int_equal(testdamage_tear(d->raft, b.file, short_file), 0);
    assert_int_equal(testhub_restart(&d->hub), 0);
    assert_int_equal(receive_all(d, seen), N_MSGS);
    for (unsigned i = 1; i <= N_MSGS; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(testhub_stop(&d->hub), 0);
    char log[400];
    snprintf(log, sizeof log, "%s/mqhubd.log", d->hub.dir);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    size_t n = fread(d->out, 1, sizeof d->out - 1, f);
    d->out[n] = '\0';
    fclose(f);
    char want[128];
    snprintf(want, sizeof want, "end of %s", b.file);
    expect_in(d->out, "removed the interrupted write at the ");
    expect_in(d->out, want);
}

static void test_torn_tail(void **state)
{
    torn(*state, false);
}

static void test_torn_short(void **state)
{
    torn(*state, true);
}

/* The newest snapshot damaged in the middle of its data: the start falls
 * back to the previous one (snapshot.c keeps the log back to it). */
static void test_snapshot(void **state)
{
    dmg_t *d = *state;
    char name[128], moved[600];
    struct stat st;
    unsigned seen[N_MSGS + 1] = {0};

    setup(d, "snapshot { threshold = 8, trailing = 2, growth = 0 }");
    /* Two snapshots at least (a busy machine may still be writing the
     * first): more entries, to another queue, until there are. */
    mqhub_client_t *c = connect_hub(d);
    for (int i = 0; i < 400 && testdamage_newest_snapshot(d->raft, name, sizeof name) < 2; i++) {
        assert_int_equal(mqhub_client_send(c, "pad", "x", 1, NULL, NULL), 0);
        testhub_sleep_ms(10);
    }
    mqhub_client_close(c);
    assert_int_equal(testhub_stop(&d->hub), 0);
    assert_true(testdamage_newest_snapshot(d->raft, name, sizeof name) >= 2);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", d->raft, name);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(testdamage_flip(d->raft, name, (size_t)st.st_size / 2, 0x01), 0);

    assert_int_equal(testhub_restart(&d->hub), 0);
    assert_int_equal(receive_all(d, seen), N_MSGS);
    for (unsigned i = 1; i <= N_MSGS; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(testhub_stop(&d->hub), 0);
    snprintf(path, sizeof path, "%s/mqhubd.log", d->hub.dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(d->out, 1, sizeof d->out - 1, f);
    d->out[n] = '\0';
    fclose(f);
    char line[256];
    snprintf(line, sizeof line, "snapshot %s (index ", name);
    expect_in(d->out, line);
    expect_in(d->out, "is damaged: data checksum mismatch");
    expect_in(d->out, "nothing is lost");
    snprintf(moved, sizeof moved, "%s/data/damaged", d->hub.dir);
    assert_int_equal(stat(moved, &st), 0); /* where it went */
    snprintf(path, sizeof path, "%s/%s", d->raft, name);
    assert_int_not_equal(stat(path, &st), 0);
}

static int setup_case(void **state)
{
    *state = calloc(1, sizeof(dmg_t));
    return *state ? 0 : -1;
}

static int teardown_case(void **state)
{
    dmg_t *d = *state;
    testhub_cleanup(&d->hub);
    free(d);
    return 0;
}

int main(int argc, char **argv)
{
    mqhubd_path = testhub_binary(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_closed_segment, setup_case, teardown_case),
        cmocka_unit_test_setup_teardown(test_open_segment, setup_case, teardown_case),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup_case, teardown_case),
        cmocka_unit_test_setup_teardown(test_torn_short, setup_case, teardown_case),
        cmocka_unit_test_setup_teardown(test_snapshot, setup_case, teardown_case),
    };
    if (argc > 2) {
        char filter[64];
        snprintf(filter, sizeof filter, "test_%s", argv[2]);
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
