/* payments_risk.c: the order stream of examples/payments-risk and its checks.
 *
 *   payments_risk setup   --server H:P
 *   payments_risk history --server H:P
 *   payments_risk live    --server H:P [--ttl-wait S]
 *
 * setup creates the topics `orders` and `risk-alerts`, the queues `risk`,
 * `promotion`, `notify`, `risk-desk` and `refunds`, and the subscriptions that
 * fan `orders` out (risk: everything; promotion: tag vip; notify: routing keys
 * order.paid.#) and deliver `risk-alerts` to `risk-desk`.
 * history publishes "yesterday's" orders (no hook attached yet): merchants m-1..m-4
 * at their usual pace and a burst from m-5, so `mqhub script test` has something
 * to find. live publishes today's orders with the merchant_spike hook attached:
 * the same usual traffic and a spike from m-7, then checks the outcome with
 * numbers and exits 0 only when every check holds:
 *   - m-7's orders from the one that crossed the threshold on are BLOCKED;
 *   - block.list shows merchant=m-7, and the alert reached `risk-desk`;
 *   - a refund for m-7 on another queue is BLOCKED too, other merchants' are not;
 *   - a 100 KiB order is TOO_LARGE, a garbage order from m-7 BLOCKED;
 *   - risk got every accepted order, promotion exactly the accepted vip orders,
 *     notify exactly the accepted order.paid.* ones (history included);
 *   - the block is gone after its ttl and m-7's refund is then accepted.
 * The order streams are a pure function of their index (order_make), so live
 * knows what history published. Start at main(), then live_run().
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqhub/client.h"

#define HISTORY_N 54       /* orders 1..54 */
#define LIVE_FIRST 101     /* orders 101..140 */
#define LIVE_N 40
#define ORDER_MAX 200      /* order numbers are below this */
#define SPIKER "m-7"

typedef struct order {
    unsigned no;
    char merchant[8];
    unsigned amount;
    int vip;
    int paid; /* key order.paid.<merchant>, else order.refunded.<merchant> */
} order_t;

/* Order @no of the history (1..54) or the live stream (101..140). */
static order_t order_make(unsigned no)
{
    order_t o = {.no = no};
    unsigned i = no >= LIVE_FIRST ? no - LIVE_FIRST : no - 1;
    int live = no >= LIVE_FIRST;
    unsigned m = 1 + i % 4;
    o.amount = 20 + (i * 37) % 50;
    if (!live && i >= 48) { /* yesterday's burst: 6 x 300 from m-5 */
        m = 5;
        o.amount = 300;
    } else if (live && i >= 10 && i % 3 == 1) { /* today's spike: 10 x 250 from m-7 */
        m = 7;
        o.amount = 250;
    }
    snprintf(o.merchant, sizeof o.merchant, "m-%u", m);
    o.vip = live ? i % 2 == 0 : i % 3 == 0;
    o.paid = i % 7 != 6;
    return o;
}

static int order_publish(mqhub_client_t *c, const order_t *o, mqhub_publish_result_t *res)
{
    char body[160], key[64], amount[16], no[16];
    snprintf(body, sizeof body, "{\"order\":%u,\"merchant\":\"%s\",\"amount\":%u}", o->no,
             o->merchant, o->amount);
    snprintf(key, sizeof key, "order.%s.%s", o->paid ? "paid" : "refunded", o->merchant);
    snprintf(amount, sizeof amount, "%u", o->amount);
    snprintf(no, sizeof no, "%u", o->no);
    const char *tags[] = {"vip"};
    mqhub_attr_t attrs[] = {{"merchant", o->merchant}, {"amount", amount}, {"order", no}};
    mqhub_publish_opts_t po = {.tags = tags, .n_tags = o->vip ? 1 : 0, .key = key,
                               .attrs = attrs, .n_attrs = 3};
    return mqhub_client_publish(c, "orders", body, strlen(body), &po, res);
}

static int setup_run(mqhub_client_t *c)
{
    static const char *const queues[] = {"risk", "promotion", "notify", "risk-desk", "refunds"};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof queues / sizeof *queues; i++)
        rc = mqhub_client_queue_create(c, queues[i], NULL);
    if (rc == 0)
        rc = mqhub_client_topic_create(c, "orders", NULL);
    if (rc == 0)
        rc = mqhub_client_topic_create(c, "risk-alerts", NULL);
    const char *vip[] = {"vip"}, *paid[] = {"order.paid.#"};
    mqhub_sub_opts_t risk = {.queue = "risk"};
    mqhub_sub_opts_t promo = {.queue = "promotion", .filter_tags = vip, .n_filter_tags = 1};
    mqhub_sub_opts_t notify = {.queue = "notify", .binding_keys = paid, .n_binding_keys = 1};
    mqhub_sub_opts_t desk = {.queue = "risk-desk"};
    if (rc == 0)
        rc = mqhub_client_sub_create(c, "orders", "risk", &risk);
    if (rc == 0)
        rc = mqhub_client_sub_create(c, "orders", "promotion", &promo);
    if (rc == 0)
        rc = mqhub_client_sub_create(c, "orders", "notify", &notify);
    if (rc == 0)
        rc = mqhub_client_sub_create(c, "risk-alerts", "desk", &desk);
    if (rc == 0)
        printf("setup: topics orders, risk-alerts; queues risk, promotion (tag vip), "
               "notify (order.paid.#), risk-desk, refunds\n");
    return rc;
}

static int history_run(mqhub_client_t *c)
{
    for (unsigned no = 1; no <= HISTORY_N; no++) {
        order_t o = order_make(no);
        int rc = order_publish(c, &o, NULL);
        if (rc != 0) {
            fprintf(stderr, "history: order %u: %s\n", no, mqhub_client_errmsg(c));
            return rc;
        }
    }
    printf("history: published orders 1-%u (m-1..m-4 usual, a burst of 6 x 300 from m-5)\n",
           HISTORY_N);
    return 0;
}

/* What live expects and what it saw, by order number. */
typedef struct ledger {
    unsigned char accepted[ORDER_MAX];
    unsigned char seen[ORDER_MAX]; /* per queue being drained */
    unsigned refused_spiker, refused_other, first_refused;
} ledger_t;

static const char *msg_attr(const mqhub_msg_t *m, const char *key)
{
    for (size_t i = 0; i < m->n_attrs; i++)
        if (strcmp(m->attrs[i].key, key) == 0)
            return m->attrs[i].value;
    return "";
}

/* Drain @queue; 1 when it held exactly the accepted orders that @want selects. */
static int drain_matches(mqhub_client_t *c, ledger_t *l, const char *queue,
                         int (*want)(const order_t *))
{
    unsigned got = 0, wrong = 0, expected = 0;
    memset(l->seen, 0, sizeof l->seen);
    for (int rounds = 0; rounds < 100; rounds++) {
        mqhub_receive_opts_t ro = {.max = 256, .wait = 0, .visibility = 30};
        mqhub_msg_list_t got_list;
        if (mqhub_client_receive(c, queue, &ro, &got_list) != 0 || got_list.n == 0) {
            mqhub_msg_list_free(&got_list);
            break;
        }
        const char *receipts[256];
        for (size_t i = 0; i < got_list.n; i++) {
            unsigned long no = strtoul(msg_attr(&got_list.msgs[i], "order"), NULL, 10);
            receipts[i] = got_list.msgs[i].receipt;
            got++;
            if (no >= ORDER_MAX || l->seen[no]++) {
                wrong++;
                continue;
            }
            order_t o = order_make((unsigned)no);
            wrong += !l->accepted[no] || !want(&o);
        }
        mqhub_client_delete(c, queue, receipts, got_list.n, NULL);
        mqhub_msg_list_free(&got_list);
    }
    for (unsigned no = 1; no < ORDER_MAX; no++) {
        if (!l->accepted[no])
            continue;
        order_t o = order_make(no);
        if (want(&o)) {
            expected++;
            wrong += !l->seen[no];
        }
    }
    printf("live: %-9s got %3u orders, expected %3u, wrong or missing %u\n", queue, got, expected,
           wrong);
    return wrong == 0 && got == expected;
}

static int want_all(const order_t *o) { return o != NULL; }
static int want_vip(const order_t *o) { return o->vip; }
static int want_paid(const order_t *o) { return o->paid; }

/* Active blocks on merchant=@value: 1 or 0, or -1 on error. */
static int block_active(mqhub_client_t *c, const char *value)
{
    mqhub_response_t r;
    if (mqhub_client_block_list(c, &r) != 0)
        return -1;
    int found = 0;
    const msgpack_object *b = mqhub_map_get(&r.map, "blocks");
    for (uint32_t i = 0; b && b->type == MSGPACK_OBJECT_ARRAY && i < b->via.array.size; i++) {
        const msgpack_object *v = mqhub_map_get(&b->via.array.ptr[i], "value");
        if (v && v->type == MSGPACK_OBJECT_STR && v->via.str.size == strlen(value) &&
            memcmp(v->via.str.ptr, value, v->via.str.size) == 0)
            found = 1;
    }
    mqhub_response_free(&r);
    return found;
}

/* The alerts delivered to risk-desk about @merchant (waits up to 5 s). */
static unsigned alerts_for(mqhub_client_t *c, const char *merchant)
{
    mqhub_receive_opts_t ro = {.max = 16, .wait = 5, .visibility = 30};
    mqhub_msg_list_t got;
    if (mqhub_client_receive(c, "risk-desk", &ro, &got) != 0)
        return 0;
    unsigned n = 0;
    for (size_t i = 0; i < got.n; i++) {
        n += strcmp(msg_attr(&got.msgs[i], "merchant"), merchant) == 0;
        printf("live: alert on risk-desk: %s\n", (const char *)got.msgs[i].body);
    }
    mqhub_msg_list_free(&got);
    return n;
}

static int refund(mqhub_client_t *c, const char *merchant)
{
    mqhub_attr_t attrs[] = {{"merchant", merchant}, {"amount", "10"}};
    mqhub_send_opts_t so = {.attrs = attrs, .n_attrs = 2};
    return mqhub_client_send(c, "refunds", "refund 10", 9, &so, NULL);
}

static const char *outcome(int rc)
{
    return rc == 0 ? "accepted" : mqhub_err_name(rc);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Publish today's orders; record which were accepted and which refused. */
static int live_publish(mqhub_client_t *c, ledger_t *l)
{
    for (unsigned no = 1; no <= HISTORY_N; no++)
        l->accepted[no] = 1; /* no hook was attached yet */
    for (unsigned no = LIVE_FIRST; no < LIVE_FIRST + LIVE_N; no++) {
        order_t o = order_make(no);
        mqhub_publish_result_t res;
        int rc = order_publish(c, &o, &res);
        if (rc == 0) {
            l->accepted[no] = 1;
        } else if (rc == MQHUB_EBLOCKED && strcmp(o.merchant, SPIKER) == 0) {
            if (!l->first_refused) {
                l->first_refused = no;
                printf("live: order %u (%s, %u) BLOCKED: %s\n", no, o.merchant, o.amount,
                       mqhub_client_errmsg(c));
            }
            l->refused_spiker++;
        } else if (rc == MQHUB_EBLOCKED) {
            l->refused_other++;
            printf("live: order %u of %s BLOCKED: %s\n", no, o.merchant, mqhub_client_errmsg(c));
        } else {
            fprintf(stderr, "live: order %u: %s\n", no, mqhub_client_errmsg(c));
            return rc;
        }
    }
    return 0;
}

/* Orders a careless or hostile client sends while m-7 is blocked: a 100 KiB
 * order (over the topic's 64 KiB max_msg_size: TOO_LARGE, delivered nowhere)
 * and an m-7 order whose body is not JSON and carries no amount (the block
 * refuses it before any hook reads it). 1 when both were refused so. */
static int live_misbehave(mqhub_client_t *c)
{
    static char big[100 * 1024];
    memset(big, 'x', sizeof big);
    mqhub_attr_t m2[] = {{"merchant", "m-2"}, {"order", "150"}};
    mqhub_publish_opts_t po = {.key = "order.paid.m-2", .attrs = m2, .n_attrs = 2};
    int too_large = mqhub_client_publish(c, "orders", big, sizeof big, &po, NULL);
    mqhub_attr_t m7[] = {{"merchant", SPIKER}, {"order", "151"}};
    po = (mqhub_publish_opts_t){.key = "order.paid.m-7", .attrs = m7, .n_attrs = 2};
    int garbage = mqhub_client_publish(c, "orders", "\xff{not json", 10, &po, NULL);
    printf("live: a 100 KiB order: %s; a garbage order from %s: %s\n", outcome(too_large),
           SPIKER, outcome(garbage));
    return too_large == MQHUB_ETOO_LARGE && garbage == MQHUB_EBLOCKED;
}

static int live_run(mqhub_client_t *c, unsigned ttl_wait_s)
{
    ledger_t l;
    memset(&l, 0, sizeof l);
    int rc = live_publish(c, &l);
    if (rc != 0)
        return rc;
    unsigned spiker_total = 0;
    for (unsigned no = LIVE_FIRST; no < LIVE_FIRST + LIVE_N; no++)
        spiker_total += strcmp(order_make(no).merchant, SPIKER) == 0;
    printf("live: published orders %u-%u: %u of %s's %u orders refused with BLOCKED "
           "(from order %u on), %u of other merchants'\n",
           LIVE_FIRST, LIVE_FIRST + LIVE_N - 1, l.refused_spiker, SPIKER, spiker_total,
           l.first_refused, l.refused_other);
    int ok = l.refused_spiker == 7 && l.refused_other == 0;

    int blocked = block_active(c, SPIKER);
    unsigned alerts = alerts_for(c, SPIKER);
    int refund_spiker = refund(c, SPIKER), refund_other = refund(c, "m-1");
    printf("live: block.list has merchant=%s: %s; alerts about it on risk-desk: %u\n", SPIKER,
           blocked == 1 ? "yes" : "no", alerts);
    printf("live: a refund for %s on queue refunds: %s; for m-1: %s\n", SPIKER,
           outcome(refund_spiker), outcome(refund_other));
    ok &= blocked == 1 && alerts == 1 && refund_spiker == MQHUB_EBLOCKED && refund_other == 0;
    ok &= live_misbehave(c);

    ok &= drain_matches(c, &l, "risk", want_all);
    ok &= drain_matches(c, &l, "promotion", want_vip);
    ok &= drain_matches(c, &l, "notify", want_paid);

    uint64_t start = now_ms();
    while (block_active(c, SPIKER) == 1 && now_ms() - start < ttl_wait_s * 1000ull)
        usleep(250 * 1000);
    blocked = block_active(c, SPIKER);
    refund_spiker = refund(c, SPIKER);
    printf("live: the block on %s was gone %.1f s after the checks; its refund now: %s\n",
           SPIKER, (double)(now_ms() - start) / 1000, outcome(refund_spiker));
    ok &= blocked == 0 && refund_spiker == 0;
    printf("live: %s\n", ok ? "RESULT ok" : "RESULT MISMATCH");
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *server = "127.0.0.1:6420";
    unsigned ttl_wait_s = 30;
    static const struct option opts[] = {{"server", 1, 0, 's'}, {"ttl-wait", 1, 0, 't'},
                                         {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 's': server = optarg; break;
        case 't': ttl_wait_s = (unsigned)atoi(optarg); break;
        default: optind = argc; break;
        }
    }
    const char *mode = optind < argc ? argv[optind] : "";
    if (strcmp(mode, "setup") != 0 && strcmp(mode, "history") != 0 &&
        strcmp(mode, "live") != 0) {
        fprintf(stderr, "usage: payments_risk setup|history|live --server H:P [--ttl-wait S]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    mqhub_client_t *c;
    char err[256];
    mqhub_client_opts_t co = {.timeout_ms = 10000};
    if (mqhub_client_connect(&c, server, &co, err, sizeof err) != 0) {
        fprintf(stderr, "payments_risk: %s\n", err);
        return 3;
    }
    int rc = mode[0] == 's' ? setup_run(c) : mode[0] == 'h' ? history_run(c)
                                                            : live_run(c, ttl_wait_s);
    if (rc < 0)
        fprintf(stderr, "payments_risk %s: %s: %s\n", mode, mqhub_err_name(rc),
                mqhub_client_errmsg(c));
    mqhub_client_close(c);
    return rc == 0 ? 0 : 1;
}
