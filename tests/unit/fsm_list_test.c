/* fsm_list_test.c: queue.list / topic.list with stats, match, sort, desc
 * (core/sm/listing.c, docs/protocol.md "Lists with stats") through the FSM:
 * the old form answers exactly as before (names, prefix, offset, limit,
 * total); rows carry the counters of queue.get (and the dead-letter queue's
 * backlog); match is a substring, sort orders by a counter with ties by name,
 * desc reverses, paging walks the sorted list; a named user sees only its
 * names (and not the backlog of a dead-letter queue it cannot see); hostile
 * arguments are BAD_REQUEST, hostile pages (offset near 2^63, overlong
 * prefix or match) empty; oldest_age_ms, kept between reads until a queue's
 * messages change, always equals a fresh scan (test_oldest_cache). Prints
 * the time of a sorted page of 10,000 queues (a figure, not an assertion). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fsm_harness.h"
#include "mp.h"

static const char *name_at(json_t *r, const char *key, size_t i)
{
    json_t *v = json_array_get(json_object_get(r, key), i);
    return json_is_string(v) ? json_string_value(v) : h_str(v, "name");
}

static size_t n_rows(json_t *r, const char *key)
{
    return json_array_size(json_object_get(r, key));
}

/* A list read that must succeed into @r. */
#define LIST_OK(r, h, ...)                                                                    \
    do {                                                                                      \
        (r) = h_read(h, __VA_ARGS__);                                                         \
        if (!h_ok(r))                                                                         \
            fail_msg("list failed: %s", json_dumps((r), JSON_COMPACT));                       \
    } while (0)

/* Queues q-a .. q-e with ready 2, 0, 5, 5, 1 and one other queue "x". */
static void five_queues(harness_t *h)
{
    const int ready[] = {2, 0, 5, 5, 1};
    for (int i = 0; i < 5; i++) {
        H_EXPECT(h, "", "{'op':'queue.create','name':'q-%c'}", 'a' + i);
        for (int j = 0; j < ready[i]; j++)
            H_EXPECT(h, "", "{'op':'send','queue':'q-%c','body':'m'}", 'a' + i);
    }
    H_EXPECT(h, "", "{'op':'queue.create','name':'x'}");
}

static void test_old_form_unchanged(void **state)
{
    harness_t *h = *state;
    five_queues(h);
    json_t *r;
    LIST_OK(r, h, "{'op':'queue.list'}");
    assert_int_equal(h_int(r, "total"), 6);
    assert_int_equal(json_object_size(r), 3); /* ok, queues, total: nothing added */
    assert_true(json_is_string(json_array_get(json_object_get(r, "queues"), 0)));
    assert_string_equal(name_at(r, "queues", 0), "q-a");
    assert_string_equal(name_at(r, "queues", 5), "x");
    json_decref(r);
    LIST_OK(r, h, "{'op':'queue.list','prefix':'q-','offset':1,'limit':2}");
    assert_int_equal(h_int(r, "total"), 5);
    assert_int_equal(n_rows(r, "queues"), 2);
    assert_string_equal(name_at(r, "queues", 0), "q-b");
    assert_string_equal(name_at(r, "queues", 1), "q-c");
    json_decref(r);
    H_EXPECT(h, "", "{'op':'topic.create','name':'t1'}");
    LIST_OK(r, h, "{'op':'topic.list'}");
    assert_int_equal(json_object_size(r), 3);
    assert_string_equal(name_at(r, "topics", 0), "t1");
    json_decref(r);
}

static void test_rows_carry_stats(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'jobs','attrs':{'dead_letter':{'queue':'dlq','max_receives':1}}}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'orphan','attrs':{'dead_letter':{'queue':'dlq','max_receives':1}}}");
    H_EXPECT(h, "", "{'op':'queue.delete','name':'dlq'}"); /* orphan's dlq is gone... */
    H_EXPECT(h, "", "{'op':'queue.create','name':'dlq'}"); /* ...and back, empty */
    for (int i = 0; i < 3; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'jobs','body':'m%d'}", i);
    H_EXPECT(h, "", "{'op':'send','queue':'dlq','body':'dead'}");
    H_EXPECT(h, "", "{'op':'receive','queue':'jobs','max':1}");
    h_advance(h, 5000);
    json_t *r;
    LIST_OK(r, h, "{'op':'queue.list','stats':true,'match':'jobs'}");
    assert_int_equal(h_int(r, "total"), 1);
    json_t *row = json_array_get(json_object_get(r, "queues"), 0);
    assert_string_equal(h_str(row, "name"), "jobs");
    assert_int_equal(h_int(row, "ready"), 2);
    assert_int_equal(h_int(row, "inflight"), 1);
    assert_int_equal(h_int(row, "delayed"), 0);
    assert_int_equal(h_int(row, "sent_total"), 3);
    assert_int_equal(h_int(row, "received_total"), 1);
    /* every counter as queue.get says it */
    json_t *g = h_read(h, "{'op':'queue.get','name':'jobs'}");
    const char *keys[] = {"ready", "inflight", "delayed", "retained", "oldest_age_ms", "sent_total",
                          "received_total", "deleted_total", "redelivered_total", "dead_lettered_total"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        assert_int_equal(h_int(row, keys[i]), h_int(json_object_get(g, "stats"), keys[i]));
    json_decref(g);
    assert_string_equal(h_str(row, "dead_letter_queue"), "dlq");
    assert_int_equal(h_int(row, "dead"), 1);
    json_decref(r);
    /* a queue without a dead-letter queue has neither field */
    LIST_OK(r, h, "{'op':'queue.list','stats':true,'match':'dlq'}");
    row = json_array_get(json_object_get(r, "queues"), 0);
    assert_null(json_object_get(row, "dead_letter_queue"));
    assert_null(json_object_get(row, "dead"));
    json_decref(r);
}

static void test_match_sort_page(void **state)
{
    harness_t *h = *state;
    five_queues(h);
    /* backlog, largest first; q-c and q-d tie at 5: by name */
    json_t *r;
    LIST_OK(r, h, "{'op':'queue.list','stats':true,'sort':'ready','desc':true,'match':'q-'}");
    const char *want[] = {"q-c", "q-d", "q-a", "q-e", "q-b"};
    assert_int_equal(h_int(r, "total"), 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(name_at(r, "queues", i), want[i]);
    json_decref(r);
    /* the same order a page at a time */
    for (int off = 0; off < 5; off += 2) {
        r = h_read(h, "{'op':'queue.list','stats':true,'sort':'ready','desc':true,'match':'q-',"
                      "'offset':%d,'limit':2}", off);
        assert_int_equal(h_int(r, "total"), 5);
        for (size_t i = 0; i < n_rows(r, "queues"); i++)
            assert_string_equal(name_at(r, "queues", i), want[off + i]);
        assert_int_equal(n_rows(r, "queues"), off == 4 ? 1 : 2);
        json_decref(r);
    }
    /* ascending: 0 first */
    LIST_OK(r, h, "{'op':'queue.list','sort':'ready'}");
    assert_string_equal(name_at(r, "queues", 0), "q-b");
    assert_string_equal(name_at(r, "queues", 1), "x");
    assert_true(json_is_string(json_array_get(json_object_get(r, "queues"), 0))); /* no stats: names */
    json_decref(r);
    /* name descending, without a match (only the page is visited) and with one */
    LIST_OK(r, h, "{'op':'queue.list','desc':true,'limit':2}");
    assert_int_equal(h_int(r, "total"), 6);
    assert_string_equal(name_at(r, "queues", 0), "x");
    assert_string_equal(name_at(r, "queues", 1), "q-e");
    json_decref(r);
    LIST_OK(r, h, "{'op':'queue.list','desc':true,'match':'-','offset':3}");
    assert_int_equal(h_int(r, "total"), 5);
    assert_int_equal(n_rows(r, "queues"), 2);
    assert_string_equal(name_at(r, "queues", 0), "q-b");
    assert_string_equal(name_at(r, "queues", 1), "q-a");
    json_decref(r);
    /* a match in the middle of a name, with a prefix */
    LIST_OK(r, h, "{'op':'queue.list','prefix':'q','match':'-d'}");
    assert_int_equal(h_int(r, "total"), 1);
    assert_string_equal(name_at(r, "queues", 0), "q-d");
    json_decref(r);
    /* past the end: an empty page, the total */
    LIST_OK(r, h, "{'op':'queue.list','stats':true,'offset':100}");
    assert_int_equal(h_int(r, "total"), 6);
    assert_int_equal(n_rows(r, "queues"), 0);
    json_decref(r);
    /* nothing matches; a match (and a prefix) longer than any name may be */
    LIST_OK(r, h, "{'op':'queue.list','stats':true,'match':'zzz'}");
    assert_int_equal(h_int(r, "total"), 0);
    json_decref(r);
    char *big = malloc(4097);
    assert_non_null(big);
    memset(big, 'q', 4096);
    big[4096] = '\0';
    LIST_OK(r, h, "{'op':'queue.list','stats':true,'match':'%s'}", big);
    assert_int_equal(h_int(r, "total"), 0);
    json_decref(r);
    LIST_OK(r, h, "{'op':'queue.list','sort':'ready','prefix':'%s'}", big);
    assert_int_equal(h_int(r, "total"), 0);
    assert_int_equal(n_rows(r, "queues"), 0);
    json_decref(r);
    free(big);
}

static void test_topics(void **state)
{
    harness_t *h = *state;
    H_EXPECT(h, "", "{'op':'topic.create','name':'alpha'}");
    H_EXPECT(h, "", "{'op':'topic.create','name':'beta'}");
    H_EXPECT(h, "", "{'op':'topic.create','name':'gamma'}");
    for (int i = 0; i < 3; i++)
        H_EXPECT(h, "", "{'op':'publish','topic':'beta','body':'b%d'}", i);
    H_EXPECT(h, "", "{'op':'publish','topic':'gamma','body':'g'}");
    json_t *r;
    LIST_OK(r, h, "{'op':'topic.list','stats':true,'sort':'published','desc':true}");
    assert_int_equal(h_int(r, "total"), 3);
    assert_string_equal(name_at(r, "topics", 0), "beta");
    assert_string_equal(name_at(r, "topics", 1), "gamma");
    assert_string_equal(name_at(r, "topics", 2), "alpha");
    json_t *row = json_array_get(json_object_get(r, "topics"), 0);
    assert_int_equal(h_int(row, "published_total"), 3);
    assert_int_equal(h_int(row, "retained"), 3);
    assert_int_equal(h_int(row, "last_seq"), 3);
    json_decref(r);
    LIST_OK(r, h, "{'op':'topic.list','match':'mm'}");
    assert_int_equal(h_int(r, "total"), 1);
    assert_string_equal(name_at(r, "topics", 0), "gamma");
    json_decref(r);
}

/* Hostile arguments: each is BAD_REQUEST, naming its field. */
static void test_bad_arguments(void **state)
{
    harness_t *h = *state;
    const char *bad[] = {"'sort':'bogus'", "'sort':'ready;drop'", "'sort':1", "'desc':'yes'",
                         "'stats':1", "'match':7", "'stats':true,'limit':0",
                         "'stats':true,'limit':1001", "'sort':''", "'match':['a']"};
    H_EXPECT(h, "", "{'op':'queue.create','name':'q'}");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *r = h_read(h, "{'op':'queue.list',%s}", bad[i]);
        if (strcmp(h_code(r), "BAD_REQUEST") != 0)
            fail_msg("%s: %s", bad[i], json_dumps(r, JSON_COMPACT));
        json_decref(r);
        r = h_read(h, "{'op':'topic.list',%s}", bad[i]);
        if (strcmp(h_code(r), "BAD_REQUEST") != 0)
            fail_msg("topic %s: %s", bad[i], json_dumps(r, JSON_COMPACT));
        json_decref(r);
    }
    json_t *r = h_read(h, "{'op':'queue.list','sort':'bogus'}");
    assert_non_null(strstr(h_str(r, "error"), "name, ready, inflight"));
    json_decref(r);
}

/* Hostile pages: an offset near 2^63 in every path (name order, reversed,
 * matched, sorted), a prefix and a match longer than any name: answered,
 * empty pages, the right totals (no wrap of offset + limit). */
static void test_hostile_pages(void **state)
{
    harness_t *h = *state;
    five_queues(h);
    const char *paths[] = {"", ",'desc':true", ",'match':'q-'", ",'sort':'ready','desc':true",
                           ",'sort':'oldest'"};
    const int totals[] = {6, 6, 5, 6, 6};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        for (int k = 0; k < 2; k++) {
            json_t *r;
            LIST_OK(r, h, "{'op':'queue.list','stats':true,'offset':%s,'limit':1000%s}",
                    k ? "9223372036854775807" : "9223372036854775000", paths[i]);
            assert_int_equal(n_rows(r, "queues"), 0);
            assert_int_equal(h_int(r, "total"), totals[i]);
            json_decref(r);
        }
    }
    char long_name[301];
    memset(long_name, 'q', 300);
    long_name[300] = '\0';
    json_t *r;
    LIST_OK(r, h, "{'op':'queue.list','stats':true,'prefix':'%s'}", long_name);
    assert_int_equal(h_int(r, "total"), 0);
    json_decref(r);
    LIST_OK(r, h, "{'op':'queue.list','match':'%s','sort':'ready'}", long_name);
    assert_int_equal(h_int(r, "total"), 0);
    assert_int_equal(n_rows(r, "queues"), 0);
    json_decref(r);
}

/* @req (a format, as h_read's) read as the user of token hash @hash. */
static json_t *read_as(harness_t *h, const unsigned char *hash, const char *req)
{
    size_t rlen;
    char *buf = h_pack(&rlen, "%s", req);
    msgpack_unpacked u, r;
    msgpack_sbuffer out;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, buf, rlen, NULL), MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer_init(&out);
    assert_int_equal(fsm_read_as(h->f, &u.data, hash, &out), 0);
    msgpack_unpacked_init(&r);
    assert_int_equal(msgpack_unpack_next(&r, out.data, out.size, NULL), MSGPACK_UNPACK_SUCCESS);
    json_t *j = h_to_json(&r.data);
    msgpack_unpacked_destroy(&r);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&out);
    free(buf);
    return j;
}

/* A named user's list: only the names it holds a grant on, also when sorted. */
static void test_viewer(void **state)
{
    harness_t *h = *state;
    const char *token = "viewer-token-0123456789";
    unsigned char hash[FSM_USER_HASH_LEN];
    msgpack_sbuffer sb, out;
    msgpack_packer pk;
    msgpack_unpacked u, r;
    five_queues(h);
    H_EXPECT(h, "", "{'op':'queue.create','name':'secret'}");
    for (int i = 0; i < 9; i++)
        H_EXPECT(h, "", "{'op':'send','queue':'secret','body':'s'}");
    fsm_user_hash(token, strlen(token), hash);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mp_pack_str(&pk, "op", 2), mp_pack_str(&pk, "user.create", 11);
    mp_pack_str(&pk, "id", 2), msgpack_pack_uint64(&pk, 1);
    mp_pack_str(&pk, "name", 4), mp_pack_str(&pk, "vi", 2);
    mp_pack_str(&pk, "token_sha256", 12), msgpack_pack_bin(&pk, sizeof hash);
    msgpack_pack_bin_body(&pk, hash, sizeof hash);
    mp_pack_str(&pk, "grants", 6), msgpack_pack_array(&pk, 1), msgpack_pack_map(&pk, 2);
    mp_pack_str(&pk, "verb", 4), mp_pack_str(&pk, "receive", 7);
    mp_pack_str(&pk, "pattern", 7), mp_pack_str(&pk, "q-*", 3);
    char *cmd = sb.data;
    size_t len = sb.size;
    json_t *arr = h_entry(h, 1, &cmd, &len);
    if (!h_ok(json_array_get(arr, 0)))
        fail_msg("user.create: %s", json_dumps(arr, JSON_COMPACT));
    json_decref(arr);
    size_t rlen;
    char *req = h_pack(&rlen, "{'op':'queue.list','stats':true,'sort':'ready','desc':true,'limit':2}");
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, req, rlen, NULL), MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer_init(&out);
    assert_int_equal(fsm_read_as(h->f, &u.data, hash, &out), 0);
    msgpack_unpacked_init(&r);
    assert_int_equal(msgpack_unpack_next(&r, out.data, out.size, NULL), MSGPACK_UNPACK_SUCCESS);
    json_t *j = h_to_json(&r.data);
    assert_int_equal(h_int(j, "total"), 5); /* secret (9 ready) and x are not among them */
    assert_string_equal(name_at(j, "queues", 0), "q-c");
    assert_string_equal(name_at(j, "queues", 1), "q-d");
    json_decref(j);
    msgpack_unpacked_destroy(&r);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&sb);
    free(req);
    /* q-z's dead-letter queue is "secret": the user sees q-z's row and the
     * dlq's name (as queue.get's attrs), not the backlog of a queue it
     * holds no grant on, nor an order by it. */
    H_EXPECT(h, "", "{'op':'queue.create','name':'q-z','attrs':{'dead_letter':{'queue':'secret','max_receives':1}}}");
    j = read_as(h, hash, "{'op':'queue.list','stats':true,'match':'q-z'}");
    assert_int_equal(h_int(j, "total"), 1);
    json_t *row = json_array_get(json_object_get(j, "queues"), 0);
    assert_string_equal(h_str(row, "dead_letter_queue"), "secret");
    assert_null(json_object_get(row, "dead"));
    json_decref(j);
    j = read_as(h, hash, "{'op':'queue.list','stats':true,'sort':'dead','desc':true,'limit':1}");
    assert_true(h_ok(j));
    assert_string_equal(name_at(j, "queues", 0), "q-a"); /* all 0: name order */
    json_decref(j);
    j = h_read(h, "{'op':'queue.list','stats':true,'match':'q-z'}"); /* root sees it */
    assert_int_equal(h_int(json_array_get(json_object_get(j, "queues"), 0), "dead"), 9);
    json_decref(j);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* 10,000 queues: a sorted page is one read; the time is printed. The sort
 * by age is asked twice: the second reads no store (the ages are kept). */
static void test_ten_thousand(void **state)
{
    harness_t *h = *state;
    enum { N = 10000 };
    for (int i = 0; i < N; i++)
        H_EXPECT(h, "", "{'op':'queue.create','name':'load-%05d'}", i);
    for (int i = 0; i < 50; i++) /* load-00000..load-00049 get i+1 messages */
        for (int j = 0; j <= i; j++)
            H_EXPECT(h, "", "{'op':'send','queue':'load-%05d','body':'m'}", i);
    const char *reqs[] = {
        "{'op':'queue.list','stats':true,'sort':'ready','desc':true,'limit':50}",
        "{'op':'queue.list','stats':true,'sort':'oldest','desc':true,'limit':50}",
        "{'op':'queue.list','stats':true,'sort':'oldest','desc':true,'limit':50}",
        "{'op':'queue.list','stats':true,'match':'99','limit':50}",
        "{'op':'queue.list','stats':true,'offset':9950,'limit':50}",
        "{'op':'queue.list','offset':9950,'limit':50}",
    };
    for (size_t k = 0; k < sizeof reqs / sizeof *reqs; k++) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        json_t *r = h_read(h, "%s", reqs[k]);
        double ms = ms_since(&t0);
        assert_true(h_ok(r));
        print_message("10k queues: %s%s: %.2f ms (total %lld)\n", reqs[k],
                      k == 2 ? " again" : "", ms, (long long)h_int(r, "total"));
        if (k == 0) {
            assert_int_equal(h_int(r, "total"), N);
            assert_string_equal(name_at(r, "queues", 0), "load-00049");
            assert_int_equal(h_int(json_array_get(json_object_get(r, "queues"), 0), "ready"), 50);
            assert_string_equal(name_at(r, "queues", 49), "load-00000");
        }
        if (k == 3) {
            int want = 0;
            for (int i = 0; i < N; i++) {
                char name[16];
                snprintf(name, sizeof name, "load-%05d", i);
                want += strstr(name, "99") != NULL;
            }
            assert_int_equal(h_int(r, "total"), want);
        }
        json_decref(r);
    }
}

#define OLDEST_QUEUES 3
#define OLDEST_STEPS 600
#define OLDEST_RECEIPTS 64

/* oldest_age_ms of every queue, in queue.list's name order. */
static void oldest_ages(harness_t *h, int64_t *out)
{
    json_t *r;
    LIST_OK(r, h, "{'op':'queue.list','stats':true}");
    assert_int_equal(n_rows(r, "queues"), OLDEST_QUEUES);
    for (size_t i = 0; i < OLDEST_QUEUES; i++)
        out[i] = h_int(json_array_get(json_object_get(r, "queues"), i), "oldest_age_ms");
    json_decref(r);
}

/* One random step on queue @q of @h; receipts of received messages are kept
 * in @rc (a ring) for later deletes and change_visibility. */
static void oldest_step(harness_t *h, unsigned *seed, char rc[][96], unsigned *nrc)
{
    char q[8];
    snprintf(q, sizeof q, "o%u", rand_r(seed) % OLDEST_QUEUES);
    const char *r = *nrc ? rc[rand_r(seed) % (*nrc < OLDEST_RECEIPTS ? *nrc : OLDEST_RECEIPTS)]
                         : "none";
    json_t *res = NULL;
    switch (rand_r(seed) % 12) {
    case 0: case 1: case 2:
        res = h_run(h, "{'op':'send','queue':'%s','body':'m'}", q);
        break;
    case 3:
        res = h_run(h, "{'op':'send','queue':'%s','body':'m','delay':%u}", q,
                    rand_r(seed) % 3);
        break;
    case 4: case 5: {
        res = h_run(h, "{'op':'receive','queue':'%s','max':%u,'visibility':%u}", q,
                    1 + rand_r(seed) % 3, rand_r(seed) % 3);
        json_t *msgs = json_object_get(res, "msgs"), *m;
        size_t i;
        json_array_foreach(msgs, i, m) {
            snprintf(rc[*nrc % OLDEST_RECEIPTS], sizeof rc[0], "%s", h_str(m, "receipt"));
            (*nrc)++;
        }
        break;
    }
    case 6: case 7:
        res = h_run(h, "{'op':'delete','queue':'%s','receipts':['%s']}", q, r);
        break;
    case 8:
        res = h_run(h, "{'op':'change_visibility','queue':'%s','receipt':'%s','timeout':0}", q, r);
        break;
    case 9:
        h_advance(h, rand_r(seed) % 5000); /* retention 60 s: a few minutes in all */
        res = h_run(h, "{'op':'tick'}");
        break;
    case 10:
        res = rand_r(seed) % 4 ? h_run(h, "{'op':'queue.rewind','name':'%s','seq':%u}", q,
                                       rand_r(seed) % 20)
                               : h_run(h, "{'op':'queue.purge','name':'%s'}", q);
        break;
    default:
        h_advance(h, rand_r(seed) % 400);
        break;
    }
    json_decref(res); /* business errors (a stale receipt, NOT_FOUND) are fine */
}

/* oldest_age_ms is kept between reads until the queue's messages change:
 * after every random step (sends, delays, receives, deletes kept for the
 * rewind window, retention, visibility, rewind, purge, dead letters) the
 * answer equals a fresh scan's, made by a copy restored from a snapshot
 * (whose queues have no kept value yet). */
static void test_oldest_cache(void **state)
{
    harness_t *h = *state;
    unsigned seed = 7;
    char rc[OLDEST_RECEIPTS][96];
    unsigned nrc = 0;
    int64_t live[OLDEST_QUEUES], fresh[OLDEST_QUEUES];

    H_EXPECT(h, "", "{'op':'queue.create','name':'o0','attrs':{'rewind_window':5}}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'o2'}");
    H_EXPECT(h, "", "{'op':'queue.create','name':'o1','attrs':{'retention':60,"
                    "'dead_letter':{'queue':'o2','max_receives':2}}}");
    for (int i = 0; i < OLDEST_STEPS; i++) {
        oldest_step(h, &seed, rc, &nrc);
        oldest_ages(h, live); /* fills (or reuses) the kept values */
        if (i % 20 != 19)
            continue;
        harness_t *copy = h_open(H_T0);
        h_snapshot_restore(h, copy);
        oldest_ages(copy, fresh);
        oldest_ages(h, live);
        for (int j = 0; j < OLDEST_QUEUES; j++)
            if (live[j] != fresh[j])
                fail_msg("step %d, queue %d: oldest_age_ms %lld kept, %lld scanned", i, j,
                         (long long)live[j], (long long)fresh[j]);
        h_close(copy);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_old_form_unchanged, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_rows_carry_stats, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_match_sort_page, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_topics, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_pages, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_viewer, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_ten_thousand, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_oldest_cache, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
