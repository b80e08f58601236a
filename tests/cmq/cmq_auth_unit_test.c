/* cmq_auth_unit_test.c: the CMQ transport's credentials table and replay
 * cache (transports/cmq/creds.c, replay.c; docs/cmq.md "Identity",
 * "Replays") without a daemon: the credentials file's format and permission
 * check, the replay cache's verdicts, expiry and memory bound, and the code
 * of a permission refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cmq.h"
#include "tmpdir.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    return tmpdir_make(dir, sizeof dir, "cmq-cred") != NULL ? 0 : -1;
}

static void file_rm(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static int teardown(void **state)
{
    (void)state;
    file_rm("good");
    file_rm("open");
    file_rm("bad");
    return rmdir(dir);
}

/* @text into the file @name of the temp dir with @mode; its path in @path. */
static void file_write(const char *name, const char *text, mode_t mode, char *path, size_t size)
{
    FILE *f;

    snprintf(path, size, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_creds_file(void **state)
{
    cmq_creds_t c = {0};
    char path[512], err[512];
    const cmq_cred_t *e;
    (void)state;

    file_write("good", "# SecretId user SecretKey\n\n  AKID1\tpayments  key-one-0123456789abc\n"
               "AKID2 ops key-two-0123456789abc", 0600, path, sizeof path);
    assert_int_equal(cmq_creds_add(&c, "AKIDroot", "k", NULL, err, sizeof err), 0);
    assert_int_equal(cmq_creds_load(&c, path, err, sizeof err), 0);
    assert_int_equal(c.n, 3);
    e = cmq_creds_find(&c, "AKID1");
    assert_non_null(e);
    assert_string_equal(e->user, "payments");
    assert_string_equal(e->secret_key, "key-one-0123456789abc");
    assert_string_equal(cmq_creds_find(&c, "AKID2")->user, "ops"); /* no final newline */
    assert_null(cmq_creds_find(&c, "AKIDroot")->user);              /* root */
    assert_null(cmq_creds_find(&c, "akid1"));
    assert_null(cmq_creds_find(&c, NULL));
    /* the same file again: every SecretId is a duplicate */
    assert_int_equal(cmq_creds_load(&c, path, err, sizeof err), -1);
    assert_non_null(strstr(err, ":3: SecretId AKID1 is given twice"));
    cmq_creds_free(&c);
    assert_int_equal(c.n, 0);

    file_write("open", "AKID1 payments key-one-0123456789abc\n", 0644, path, sizeof path);
    assert_int_equal(cmq_creds_load(&c, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "mode 644"));
    assert_non_null(strstr(err, "chmod 600"));
    assert_int_equal(c.n, 0);
}

static void test_creds_refusals(void **state)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"AKID1 payments\n", ":1: expected"},
        {"AKID1 payments key-one-0123456789abc extra\n", ":1: expected"},
        {"# ok\nAKID1 payments short\n", ":2: the SecretKey of AKID1 is shorter"},
        {"AKID1 pay/ments key-one-0123456789abc\n", "not a valid user name"},
        /* what user.create refuses could never be a user (4100 on every request) */
        {"AKID1 .payments key-one-0123456789abc\n", "not a valid user name"},
        {"AKID1 -ops key-one-0123456789abc\n", "starting with a letter or digit"},
    };
    cmq_creds_t c = {0};
    char path[512], err[512];
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        file_write("bad", bad[i].text, 0600, path, sizeof path);
        assert_int_equal(cmq_creds_load(&c, path, err, sizeof err), -1);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("case %zu: %s", i, err);
        cmq_creds_free(&c);
    }
    assert_int_equal(cmq_creds_add(&c, "AKID x", "k", NULL, err, sizeof err), -1);
    assert_int_equal(cmq_creds_add(&c, "AKIDx", "", NULL, err, sizeof err), -1);
    assert_int_equal(cmq_creds_load(&c, "/nonexistent/creds", err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
}

static void test_key_file(void **state)
{
    char path[512], err[512], key[64];
    (void)state;

    file_write("good", "s3cret-root-key-0123456789\n", 0600, path, sizeof path);
    assert_int_equal(cmq_creds_key_file(path, key, sizeof key, err, sizeof err), 0);
    assert_string_equal(key, "s3cret-root-key-0123456789");
    file_write("open", "s3cret-root-key-0123456789\n", 0604, path, sizeof path);
    assert_int_equal(cmq_creds_key_file(path, key, sizeof key, err, sizeof err), -1);
    assert_non_null(strstr(err, "secret_key_file"));
    assert_non_null(strstr(err, "mode 604"));
    for (int i = 0; i < 3; i++) {
        static const char *const bad[] = {"\n", "two\nlines\n",
                                          /* 63 characters and a space: read 64, too long */
                                          ("0123456789012345678901234567890123456789"
                                           "01234567890123456789012 ")};
        file_write("bad", bad[i], 0600, path, sizeof path);
        assert_int_equal(cmq_creds_key_file(path, key, sizeof key, err, sizeof err), -1);
        assert_non_null(strstr(err, "one SecretKey on one line, in less than 64 bytes"));
    }
}

#define NOW 1700000000
#define WINDOW 300

static int check(cmq_replay_t *r, const char *nonce, int64_t ts, const char *sig, int64_t now)
{
    char t[32];
    snprintf(t, sizeof t, "%lld", (long long)ts);
    return cmq_replay_check(r, "AKID1", nonce, t, sig, ts, now, WINDOW);
}

static void test_replay_verdicts(void **state)
{
    cmq_replay_t *r;
    (void)state;

    assert_int_equal(cmq_replay_new(&r, 1000), 0);
    assert_int_equal(check(r, "1", NOW, "sigA", NOW), 0);
    assert_int_equal(check(r, "1", NOW, "sigA", NOW), CMQ_REPLAY_SEEN);
    assert_int_equal(check(r, "1", NOW, "sigA", NOW + WINDOW), CMQ_REPLAY_SEEN);
    /* another request with the same Nonce and Timestamp (another signature):
     * a different request, not a replay (a 4-digit Nonce collides often) */
    assert_int_equal(check(r, "1", NOW, "sigB", NOW), 0);
    assert_int_equal(check(r, "2", NOW, "sigA", NOW), 0);
    assert_int_equal(check(r, "1", NOW + 1, "sigA", NOW), 0);
    assert_int_equal(cmq_replay_len(r), 4);
    /* forgotten once the Timestamp left the window (then the window refuses it) */
    assert_int_equal(check(r, "3", NOW + WINDOW + 1, "s", NOW + WINDOW + 1), 0);
    assert_int_equal(cmq_replay_len(r), 2);
    assert_int_equal(cmq_replay_floor(r), INT64_MIN);
    cmq_replay_free(r);
}

static void test_replay_bounded(void **state)
{
    cmq_replay_t *r;
    char nonce[32];
    (void)state;

    assert_int_equal(cmq_replay_new(&r, 1000), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(nonce, sizeof nonce, "%d", i);
        assert_int_equal(check(r, nonce, NOW - 100 + i / 100, "s", NOW), 0);
    }
    assert_int_equal(cmq_replay_len(r), 1000);
    /* full: a newer request evicts the oldest, whose Timestamp becomes the floor */
    assert_int_equal(check(r, "new", NOW, "s", NOW), 0);
    assert_int_equal(cmq_replay_len(r), 1000);
    assert_int_equal(cmq_replay_floor(r), NOW - 100);
    /* a replay of an evicted request is still refused, and so is anything at the floor */
    assert_int_equal(check(r, "0", NOW - 100, "s", NOW), CMQ_REPLAY_TOO_OLD);
    assert_int_equal(check(r, "fresh", NOW - 100, "s", NOW), CMQ_REPLAY_TOO_OLD);
    assert_int_equal(check(r, "999", NOW - 91, "s", NOW), CMQ_REPLAY_SEEN);
    /* a flood of valid requests never grows it */
    for (int i = 0; i < 20000; i++) {
        snprintf(nonce, sizeof nonce, "f%d", i);
        int rc = check(r, nonce, NOW, "s", NOW);
        assert_true(rc == 0 || rc == CMQ_REPLAY_TOO_OLD);
        assert_true(cmq_replay_len(r) <= 1000);
    }
    /* with every entry from this second, the floor reached it: new requests
     * of this second are refused, the next second's pass */
    assert_int_equal(cmq_replay_floor(r), NOW);
    assert_int_equal(check(r, "x", NOW, "s", NOW), CMQ_REPLAY_TOO_OLD);
    assert_int_equal(check(r, "x", NOW + 1, "s", NOW + 1), 0);
    cmq_replay_free(r);
}

/* A refusal by the hub's permission check is CMQ's 4102 ("no authorization
 * to access resources"), not an authentication failure. */
static void test_forbidden_code(void **state)
{
    int code, module;
    (void)state;

    cmq_error_map("FORBIDDEN", false, &code, &module);
    assert_int_equal(code, 4102);
    assert_int_equal(module, 10032);
    cmq_error_map("FORBIDDEN", true, &code, &module);
    assert_int_equal(code, 4102);
    cmq_error_map("UNAUTHORIZED", false, &code, &module);
    assert_int_equal(code, 4100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creds_file),
        cmocka_unit_test(test_creds_refusals),
        cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_replay_verdicts),
        cmocka_unit_test(test_replay_bounded),
        cmocka_unit_test(test_forbidden_code),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
