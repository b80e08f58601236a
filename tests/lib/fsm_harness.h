/* fsm_harness.h: drive a state machine in unit tests without raft or network.
 *
 * Commands are written as JSON with single quotes and printf formatting:
 *   json_t *r = h_run(h, "{'op':'send','queue':'q','body':'m%d'}", i);
 * h_run wraps one command in an entry (fsm_entry_encode) at the harness clock,
 * applies it (fsm_apply_entry) and returns the reply converted to JSON (bin
 * bodies become strings); the caller json_decref()s it. Bodies may be given as
 * strings (the FSM accepts str and returns bin). Integer JSON numbers become
 * msgpack ints. The clock only moves with h_advance(). */
#ifndef MQHUB_TESTS_FSM_HARNESS_H
#define MQHUB_TESTS_FSM_HARNESS_H

#include <jansson.h>
#include <stdint.h>

#include "sm/sm.h"

typedef struct harness {
    fsm_t *f;
    char dir[256];
    uint64_t now;
} harness_t;

/* A fresh FSM in a new temp dir; its clock starts at @start_ms. */
harness_t *h_open(uint64_t start_ms);
void h_close(harness_t *h);
void h_advance(harness_t *h, uint64_t ms);

/* Encode the JSON spec into a msgpack request map; caller frees with free(). */
char *h_pack(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Apply one command (an entry of one) and return its reply as JSON. */
json_t *h_run(harness_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Apply @n already packed commands as one entry; returns an array of replies. */
json_t *h_entry(harness_t *h, unsigned n, char **cmds, size_t *lens);
/* script.load {name, source: @src} as it is (JSON specs cannot carry
 * arbitrary source text); returns the reply. */
json_t *h_script_load(harness_t *h, const char *name, const char *src);
/* A read op (queue.get, queue.list) through fsm_read. */
json_t *h_read(harness_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Convert a msgpack object to JSON (bin → string). */
json_t *h_to_json(const msgpack_object *o);

/* Reply accessors: ok flag, the code ("" when ok), an integer / string field. */
int h_ok(const json_t *r);
const char *h_code(const json_t *r);
int64_t h_int(const json_t *r, const char *key);
const char *h_str(const json_t *r, const char *key);
/* Digest as a 64-char hex string into @out. */
void h_digest(harness_t *h, char out[65]);
/* How many store keys start with @prefix ('M' message records, 'B' bodies...). */
int64_t h_keys(harness_t *h, char prefix);

/* Shared by the fsm_*_test programs: the clock they start at (ms); cmocka
 * setup/teardown giving each test *state = h_open(H_T0), closed after. */
#define H_T0 1700000000000ULL
int h_setup(void **state);
int h_teardown(void **state);
/* Run a command and fail the test unless its code is @code ("" = ok). */
#define H_EXPECT(h, code, ...)                                                                \
    do {                                                                                      \
        json_t *r_ = h_run(h, __VA_ARGS__);                                                   \
        if (strcmp(h_code(r_), code) != 0)                                                    \
            fail_msg("expected '%s', got %s", code, json_dumps(r_, JSON_COMPACT));            \
        json_decref(r_);                                                                      \
    } while (0)
/* Give @dst the state of @src through raft_fsm snapshot + restore (the
 * synchronous path), clocks included. */
void h_snapshot_restore(harness_t *src, harness_t *dst);

#endif
