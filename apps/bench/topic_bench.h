/* topic_bench.h: the topic modes of mqhub-bench (topic_bench.c), called from
 * bench.c's main(). */
#ifndef MQHUB_TOPIC_BENCH_H
#define MQHUB_TOPIC_BENCH_H

#include <stdbool.h>

/* Whether the command line asks for a topic mode (publish, push, --mode). */
bool topic_bench_wants(int argc, char **argv);
/* Run it; returns the process exit code (0, 1 failure, 2 usage, 3 connect). */
int topic_bench_main(int argc, char **argv);

#endif
