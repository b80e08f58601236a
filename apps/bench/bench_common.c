/* bench_common.c: error counting by code, the phase JSON and the progress
 * line of mqhub-bench, shared by its queue modes (bench.c) and topic modes
 * (topic_bench.c); see bench_common.h. A new figure both modes show goes
 * here; a mode's own figures stay in its file.
 */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "clock.h"

static unsigned err_slot(int code)
{
    if (code == MQHUB_ECONN)
        return BENCH_ERR_WIRE;
    if (code <= MQHUB__ERR_BASE || code >= MQHUB__ERR_END)
        code = MQHUB_EINTERNAL;
    return (unsigned)(code - MQHUB__ERR_BASE - 1);
}

static const char *err_slot_name(unsigned slot)
{
    return slot == BENCH_ERR_WIRE ? "CONNECTION"
                                  : mqhub_err_name(MQHUB__ERR_BASE + 1 + (int)slot);
}

/* Failures with code slot @slot in @phase (every phase when < 0). */
static uint64_t slot_total(bench_errors_t *e, int phase, unsigned slot)
{
    uint64_t n = 0;
    for (int p = 0; p < BENCH_PHASES_MAX; p++)
        n += phase < 0 || p == phase ? atomic_load(&e->n[p][slot]) : 0;
    return n;
}

void bench_errors_count(bench_errors_t *e, int phase, int code)
{
    atomic_fetch_add(&e->n[phase][err_slot(code)], 1);
}

uint64_t bench_errors_total(bench_errors_t *e, int phase)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < BENCH_ERR_SLOTS; i++)
        n += slot_total(e, phase, i);
    return n;
}

uint64_t bench_errors_count_items(bench_errors_t *e, int phase, const msgpack_object *resp)
{
    const msgpack_object *res = mqhub_map_get(resp, "results");
    uint64_t ok = 0;
    for (uint32_t i = 0; res && res->type == MSGPACK_OBJECT_ARRAY && i < res->via.array.size;
         i++) {
        const msgpack_object *code = mqhub_map_get(&res->via.array.ptr[i], "code");
        if (code && code->type == MSGPACK_OBJECT_STR)
            bench_errors_count(e, phase,
                               mqhub_err_from_name(code->via.str.ptr, code->via.str.size));
        else
            ok++;
    }
    return ok;
}

json_t *bench_errors_json(bench_errors_t *e, int phase)
{
    json_t *j = json_object();
    for (unsigned i = 0; i < BENCH_ERR_SLOTS; i++) {
        uint64_t n = slot_total(e, phase, i);
        if (n)
            json_object_set_new(j, err_slot_name(i), json_integer((json_int_t)n));
    }
    return j;
}

void bench_errors_print(bench_errors_t *e, FILE *f)
{
    uint64_t total = bench_errors_total(e, -1);
    const char *sep = "  (by code: ";
    fprintf(f, "errors    %llu", (unsigned long long)total);
    for (unsigned i = 0; i < BENCH_ERR_SLOTS; i++) {
        uint64_t k = slot_total(e, -1, i);
        if (k == 0)
            continue;
        fprintf(f, "%s%s %llu", sep, err_slot_name(i), (unsigned long long)k);
        sep = ", ";
    }
    fprintf(f, "%s\n", total ? ")" : "");
}

json_t *bench_phase_json(bench_errors_t *e, int phase, uint64_t msgs, double secs,
                         unsigned size)
{
    double per_s = secs > 0 ? (double)msgs / secs : 0; /* a phase too short to time: 0 */
    return json_pack("{s:I,s:f,s:f,s:f,s:I,s:o}", "msgs", (json_int_t)msgs, "seconds", secs,
                     "msgs_per_s", per_s, "mb_per_s", per_s * size / 1e6, "errors",
                     (json_int_t)bench_errors_total(e, phase), "errors_by_code",
                     bench_errors_json(e, phase));
}

bool bench_progress_wanted(bool quiet, bool progress)
{
    return progress || (!quiet && isatty(STDERR_FILENO));
}

void bench_progress_run(atomic_int *running, bool show, uint64_t t_start_ms,
                        bench_meter_t *meters, size_t n, bench_errors_t *e)
{
    uint64_t next = clock_mono_ms() + 1000;
    for (size_t i = 0; i < n; i++)
        meters[i].last = atomic_load(meters[i].count);
    while (atomic_load(running) > 0) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
        uint64_t t = clock_mono_ms();
        if (!show || t < next)
            continue;
        fprintf(stderr, "mqhub-bench: %3llu s", (unsigned long long)((t - t_start_ms) / 1000));
        for (size_t i = 0; i < n; i++) {
            uint64_t v = atomic_load(meters[i].count);
            fprintf(stderr, "  %s %llu (%llu msgs/s)", meters[i].name, (unsigned long long)v,
                    (unsigned long long)(v - meters[i].last));
            meters[i].last = v;
        }
        fprintf(stderr, "  errors %llu\n", (unsigned long long)bench_errors_total(e, -1));
        next += 1000;
    }
}

void bench_raft_sample(mqhub_client_t *c, bench_raft_t *out)
{
    static const char *const keys[] = {"entries_answered", "entries_answered_us",
                                       "entries_applied", "apply_us"};
    uint64_t *fields[] = {&out->answered, &out->answered_us, &out->applied, &out->apply_us};
    mqhub_response_t r;
    *out = (bench_raft_t){0};
    if (mqhub_client_call(c, "cluster.status", NULL, &r) != 0)
        return;
    out->ok = true;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const msgpack_object *v = mqhub_map_get(&r.map, keys[i]);
        if (v == NULL || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            out->ok = false; /* a server from before these figures */
        else
            *fields[i] = v->via.u64;
    }
    mqhub_response_free(&r);
}

/* Entries answered between @a and @b, 0 when there is nothing to report. */
static uint64_t raft_entries(const bench_raft_t *a, const bench_raft_t *b)
{
    return a->ok && b->ok && b->answered > a->answered && b->applied > a->applied
               ? b->answered - a->answered
               : 0;
}

json_t *bench_raft_json(const bench_raft_t *a, const bench_raft_t *b, double secs)
{
    uint64_t n = raft_entries(a, b);
    if (n == 0)
        return NULL;
    return json_pack("{s:I,s:f,s:f,s:f}", "entries", (json_int_t)n, "entries_per_s", n / secs,
                     "entry_ms", (double)(b->answered_us - a->answered_us) / 1e3 / n, "apply_ms",
                     (double)(b->apply_us - a->apply_us) / 1e3 / (b->applied - a->applied));
}

void bench_raft_print(const bench_raft_t *a, const bench_raft_t *b, double secs, FILE *f)
{
    json_t *j = bench_raft_json(a, b, secs);
    if (j == NULL)
        return;
    fprintf(f, "raft      %10lld entries %9.0f entries/s   mean entry %.2f ms (apply %.2f ms)\n",
            (long long)json_integer_value(json_object_get(j, "entries")),
            json_real_value(json_object_get(j, "entries_per_s")),
            json_real_value(json_object_get(j, "entry_ms")),
            json_real_value(json_object_get(j, "apply_ms")));
    json_decref(j);
}
