/* bench_common.h: what mqhub-bench's queue modes (bench.c) and topic modes
 * (topic_bench.c) share (bench_common.c): failed requests counted by phase
 * and wire code, their JSON and text forms, a phase's JSON object, and the
 * progress line a second on stderr, and the leader's raft entry times around
 * a run. Every function may be called from any thread (the counters are
 * atomic) unless it says otherwise.
 */
#ifndef MQHUB_BENCH_COMMON_H
#define MQHUB_BENCH_COMMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "mqhub/client.h"

#define BENCH_PHASES_MAX 2
/* Error slots: one per wire code (errors.h), then MQHUB_ECONN. */
#define BENCH_ERR_WIRE (MQHUB__ERR_END - MQHUB__ERR_BASE - 1)
#define BENCH_ERR_SLOTS (BENCH_ERR_WIRE + 1)

/* Failed requests (and failed items of batch answers) by phase and code;
 * zero-initialised by its owner. */
typedef struct bench_errors {
    atomic_uint_fast64_t n[BENCH_PHASES_MAX][BENCH_ERR_SLOTS];
} bench_errors_t;

/* Count one failure of @phase with code @code (MQHUB_E*; others count as
 * INTERNAL). */
void bench_errors_count(bench_errors_t *e, int phase, int code);
/* Failures of @phase so far; every phase's when @phase < 0. */
uint64_t bench_errors_total(bench_errors_t *e, int phase);
/* The items of a batch answer @resp (send_batch, publish_batch, delete, ack)
 * that carry a code are counted by it under @phase; returns how many
 * succeeded. */
uint64_t bench_errors_count_items(bench_errors_t *e, int phase, const msgpack_object *resp);
/* {CODE: count} of @phase (every phase when < 0), codes with a count only;
 * a new reference. */
json_t *bench_errors_json(bench_errors_t *e, int phase);
/* "errors    N" and, when N > 0, "  (by code: CODE n, ...)", then a newline. */
void bench_errors_print(bench_errors_t *e, FILE *f);

/* One phase of the --json summary: {msgs, seconds, msgs_per_s, mb_per_s,
 * errors, errors_by_code} for @msgs of @size bytes in @secs (> 0). */
json_t *bench_phase_json(bench_errors_t *e, int phase, uint64_t msgs, double secs,
                         unsigned size);

/* A counter the progress line shows: "<name> N (R msgs/s)". */
typedef struct bench_meter {
    const char *name;
    atomic_uint_fast64_t *count;
    uint64_t last; /* bench_progress_run()'s: the count a second ago */
} bench_meter_t;

/* Whether progress lines are printed: --progress, or stderr is a terminal
 * and not --quiet. */
bool bench_progress_wanted(bool quiet, bool progress);
/* Until *@running is 0: when @show, one line a second on stderr — seconds
 * since @t_start_ms (clock_mono_ms()), each of the @n meters' totals and
 * rates over the last second, and the errors so far. Call it on the main
 * thread while the workers run. */
void bench_progress_run(atomic_int *running, bool show, uint64_t t_start_ms,
                        bench_meter_t *meters, size_t n, bench_errors_t *e);

/* The raft entry figures of cluster.status (docs/protocol.md) of the node a
 * connection talks to — the leader: entries answered and applied, and the
 * microseconds they took. ok is false when the call failed (e.g. a user
 * without the grant): the figures are then left out of the report. */
typedef struct bench_raft {
    bool ok;
    uint64_t answered, answered_us, applied, apply_us;
} bench_raft_t;

/* Ask now. Synchronous: call it while nothing else uses @c. */
void bench_raft_sample(mqhub_client_t *c, bench_raft_t *out);
/* What happened between @a and @b: {entries, entries_per_s, entry_ms,
 * apply_ms} over @secs (a new reference), or NULL when either sample
 * failed or no entry was answered. */
json_t *bench_raft_json(const bench_raft_t *a, const bench_raft_t *b, double secs);
/* The same as a line: "raft  N entries (R/s)  mean entry X ms, apply Y ms";
 * nothing when there is nothing to say. */
void bench_raft_print(const bench_raft_t *a, const bench_raft_t *b, double secs, FILE *f);

#endif
