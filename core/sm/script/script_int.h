/* core/sm/script/script_int.h: the private contract between the files of the
 * script host (core/sm/script/), which share one scripts_t:
 *   script.c    the registry: loaded scripts, per-entry instances, calls and
 *               their overlay, the gate and filter slots, the script.* ops,
 *               the script half of tick
 *   sandbox.c   the Lua state: allocation cap, instruction budget, the
 *               deterministic and bounded library, the one pcall wrapper
 *   hublib.c    what scripts call: hub.* and the msg view
 *   block.c     blocks (K records)
 *   backtest.c  script.test
 * What the rest of core/sm calls is in sm_int.h's script section; nothing
 * outside this folder includes this file. Like all of core/sm, everything
 * here runs inside apply: no clock, no I/O, the same result on every node.
 */
#ifndef MQHUB_SCRIPT_INT_H
#define MQHUB_SCRIPT_INT_H

#include <lua.h>

#include "heap.h"
#include "hmap.h"
#include "sm/sm_int.h"

#define BLOCK_ATTR_MAX 128
#define BLOCK_VALUE_MAX 512
#define ERR_LEN 256

struct sstat {
    uint64_t calls, errors, refused, blocks, publishes, last_error_at;
    char last_error[ERR_LEN];
};

typedef struct sentry {
    char name[MQHUB_NAME_MAX + 1];
    size_t nlen;
    uint64_t version;
    int fn_ref;              /* the compiled chunk */
    int env_ref;             /* its instance of generation inst_gen */
    uint64_t inst_gen;
    char inst_err[ERR_LEN];  /* "" or why this generation's instance failed */
    struct sstat s;
    bool dirty;
    struct sentry *next;     /* name order */
} sentry_t;

/* An overlay record: a value or a deletion. */
struct ov {
    size_t vl;
    uint64_t due;            /* a K or Y value's block_due / hublib_window_due */
    bool del;
    bool indexed;            /* the store holds the key with a value of this due,
                              * so tick's expiry index has its entry already */
    char v[];
};

struct pubq {
    sentry_t *from;
    char topic[MQHUB_NAME_MAX + 1];
    size_t tl;
    char *map;               /* msgpack {body, tags, key, attrs} */
    size_t len;
    struct pubq *next;
};

struct scripts {
    store_t *st;
    queues_t *qs;
    topics_t *ts;
    lua_State *L;
    sentry_t *list;
    hmap_t hooks;            /* "q"/"t" + name -> malloc'ed script name */
    int64_t n_blocks;        /* K records in the store */
    int64_t n_windows;       /* Y records as the last walk of the expiry index
                              * counted them, less those deleted since: a lower
                              * bound (writes skip the read that would tell a
                              * new record from a rewrite) */
    heap_t expiry;           /* script.c: (due, key) of the K and Y records,
                              * what tick may remove by when */
    bool expiry_walk;        /* the next tick rebuilds expiry from the store */
    uint64_t now, gen, call_gen, rng;
    bool failed;
    /* the call in progress */
    sentry_t *cur;
    const fsm_push_msg_t *msg;
    bool msg_queue, writes, in_call;
    const char *dest;
    size_t destlen;
    uint64_t steps;          /* sandbox.c: the budget and the allocation cap */
    uint64_t limit;          /* this call's budget: STEP_MAX or the entry's rest */
    uint64_t entry_steps;    /* spent by this entry's calls (script_begin resets) */
    size_t heap, call_alloc;
    int abort;
    unsigned call_pubs, call_blocks;
    hmap_t call_ov;          /* this call's writes */
    struct pubq *pending;    /* this call's hub.publish */
    struct pubq *outbox;     /* committed, published after the command */
    struct pubq **outbox_tail;
    /* script.test */
    bool testing;
    hmap_t test_ov;
    uint64_t test_pubs;
    char trace[1024];
    int sort_ref, envmeta_ref, msgmeta_ref;
};

/* The host of a Lua state (kept in its extra space). */
static inline scripts_t *script_host(lua_State *L)
{
    return *(scripts_t **)lua_getextraspace(L);
}

/* ---- script.c: store access through the overlays, calls ---- */

/* "<prefix><a>\0<b>" into @k (cap bytes); its length, or 0 when too long. */
size_t script_key2(char *k, size_t cap, char prefix, const char *a, size_t al, const char *b,
                   size_t bl);
/* A value as the call in progress sees it (its overlay, then script.test's,
 * then the store): a copy to free(), or NULL. */
char *script_ov_get(scripts_t *sc, const void *k, size_t kl, size_t *vl);
/* Write or delete through the call's overlay (committed only when the call
 * succeeds); outside a call, straight to the store. */
void script_ov_put(scripts_t *sc, const void *k, size_t kl, const void *v, size_t vl);
/* The same for a K or Y record whose value @v expires at @due (block_due or
 * hublib_window_due of @v, which the writer knows: not decoded again).
 * @read_due is the due of the value this one replaces as the writer read it
 * (script_ov_get), 0 when none or not read: an unchanged due adds no entry
 * to tick's expiry index (a window hit in its newest bucket). */
void script_ov_put_expiring(scripts_t *sc, const void *k, size_t kl, const void *v, size_t vl,
                            uint64_t due, uint64_t read_due);
void script_ov_del(scripts_t *sc, const void *k, size_t kl);
/* Free every record of overlay @m and empty it. */
void script_ov_clear(hmap_t *m);
/* Write (or, @del, delete) a record in the store, keeping the block count
 * (and n_windows) and feeding tick's expiry index (this and the commit of a
 * call's overlay are the only ways K and Y records reach the store); a
 * failed write fails the entry (script_end). */
void script_store_write(scripts_t *sc, const void *k, size_t kl, const void *v, size_t vl,
                        bool del);
/* The script's instance of this generation (its chunk run once in a fresh
 * environment): 0, or MQHUB_ESCRIPT_ERROR with the message in @err. */
int script_instance(scripts_t *sc, sentry_t *e, char *err, size_t errlen);
/* Call @fname(msg) of @e: 0 with @nres results on the stack, or
 * MQHUB_ESCRIPT_ERROR (counted unless testing). */
int script_call(scripts_t *sc, sentry_t *e, const char *fname, const fsm_push_msg_t *m,
                int nres, char *err, size_t errlen);
/* Run @e's on_message(msg) and commit its writes: 0 to accept,
 * MQHUB_EBLOCKED with the reason in @err, or MQHUB_ESCRIPT_ERROR (counted;
 * the caller accepts). */
int script_run_hook(scripts_t *sc, sentry_t *e, const fsm_push_msg_t *m, char *err,
                    size_t errlen);
/* The loaded script named by the request's "name" field: 0, or the code of
 * a missing or bad name (cmd_arg_name) or MQHUB_ENOT_FOUND, with the sentence
 * in c->err. */
int script_arg(scripts_t *sc, cmd_t *c, sentry_t **out);

/* ---- sandbox.c: the Lua state and its limits ---- */

/* Create sc->L with the capped allocator and the sandbox every script's
 * environment reads (sc->envmeta_ref). 0 or MQHUB_EINTERNAL. */
int sandbox_open(scripts_t *sc);
/* Run the function below @nargs arguments at the top under the limits,
 * with the message handler; 0 with @nres results left on the stack, or
 * MQHUB_ESCRIPT_ERROR with the message in @err (stack restored). */
int sandbox_pcall(scripts_t *sc, int nargs, int nres, char *err, size_t errlen);
/* Whether this entry's calls spent the entry's budget (ENTRY_STEP_MAX,
 * sandbox.c): a hook then does not run and the message is refused with
 * UNAVAILABLE. Never during script.test. */
bool sandbox_entry_spent(const scripts_t *sc);
/* Seed math.random for a call of @e on @m: the same on every node. */
void sandbox_seed(scripts_t *sc, const sentry_t *e, const fsm_push_msg_t *m);
/* Replace the table at the top with a read-only proxy of it. */
void sandbox_readonly(lua_State *L);
/* The __newindex of read-only tables: raises an error. */
int sandbox_readonly_error(lua_State *L);
/* The sandbox's pairs(t): the keys sorted (booleans, numbers, strings). */
int sandbox_pairs(lua_State *L);
/* Charge @steps to the call's instruction budget (a C function's work the
 * count hook cannot see); raises the budget error when it is exceeded. */
void sandbox_charge(lua_State *L, uint64_t steps);
/* Meter every function of the table at the top (replaced in place): each
 * call is charged its arguments and results (sandbox.c: strings by their
 * bytes at @kind's rate — PLAIN copies and scans, SLOW per-byte decoding,
 * DECODE building values; TABLE: the table library, whose tables count by
 * their length) plus @fixed steps. */
enum { METER_PLAIN, METER_SLOW, METER_DECODE, METER_TABLE, METER_SORT, METER_MOVE };
#define STORE_CALL_STEPS 200 /* a hub call that reads or writes the store */
void sandbox_meter(lua_State *L, int kind, int fixed);

/* ---- hublib.c: hub.* and the msg view ---- */

/* Set field "hub" of the sandbox table at the top of sc->L, and create the
 * metatable of msg views (sc->msgmeta_ref). */
void hublib_open(scripts_t *sc);
/* Push the msg view of the call in progress (valid during that call only). */
void hublib_push_msg(scripts_t *sc);
/* When the hub.window record @v has no bucket left in its window (0 when
 * corrupt or empty): from then on tick removes it. */
uint64_t hublib_window_due(const char *v, size_t vl);

/* ---- block.c: blocks (K records) ---- */

/* hub.block: block @attr=@value for @ttl_s seconds, by the script in
 * progress, through the call's overlay. */
void block_add(scripts_t *sc, const char *attr, size_t al, const char *value, size_t vl,
               uint64_t ttl_s, const char *reason, size_t rl);
/* Whether one of @attrs (map str -> str) is blocked at sc->now, with the
 * sentence in @why. A backtest sees only the blocks it made itself. */
bool block_check(scripts_t *sc, const msgpack_object *attrs, char *why, size_t whylen);
/* Pack block record @k / @v as block.list shows it (nil when corrupt). */
void block_pack_record(msgpack_packer *pk, const char *k, size_t kl, const char *v,
                       size_t vl);
/* When block record @v expires, its until (0 when corrupt): from then on
 * tick removes it. */
uint64_t block_due(const char *v, size_t vl);

#endif
