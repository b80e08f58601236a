/* clock.h: wall-clock time in milliseconds since the epoch, and a monotonic
 * clock for deadlines and durations. Leaf code.
 * The state machine never calls it: apply uses the clock carried by each
 * raft entry; only the leader (stamping entries) and reads use the wall clock. */
#ifndef MQHUB_UTIL_CLOCK_H
#define MQHUB_UTIL_CLOCK_H
#include <stdint.h>

uint64_t clock_wall_ms(void);
/* CLOCK_MONOTONIC in ms: for timeouts and measurements, never stored. */
uint64_t clock_mono_ms(void);

#endif
