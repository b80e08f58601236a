/* sandbox.c: the Lua state scripts run in, and everything that keeps a
 * script deterministic and bounded — the part to audit (docs/scripting.md
 * "Determinism" and "Sandbox"). Scripts run inside apply, so every call must
 * compute the same result on every node from the same entries, and end.
 *
 * Where to start: sandbox_open() creates the state and the sandbox table
 * every script environment reads through __index; sandbox_pcall() is the
 * one way a call enters Lua (budget, allocation cap, a message handler that
 * never shows an address).
 *
 * Determinism: no io/os/debug/require/load/next/rawset/collectgarbage/
 * string.dump; `pairs` iterates in sorted key order (Lua seeds string hashes
 * per state); tostring/format never show an address; math.random is seeded
 * from the entry and the message (sandbox_seed); setmetatable refuses __gc
 * and __mode (GC timing differs between nodes). Bounds: string patterns and
 * string.rep are bounded (the count hook does not fire inside C functions);
 * a call has an instruction budget (count hook, reset per call) and an
 * allocation cap (own lua_Alloc), the whole heap a cap too. pcall/xpcall/
 * coroutine cannot swallow a budget or memory abort.
 *
 * To extend: keep a standard function only if its result cannot depend on
 * addresses, hash order, GC timing, the clock or the host, and give a C
 * function that may run long on a large input a cost check first (l_pattern,
 * l_rep); base functions go in sandbox_open(), library tables in
 * setup_libs() (read-only proxies). The hub library is hublib.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "script_int.h"

#define HOOK_EVERY 1000               /* instructions between count hooks */
#define STEP_MAX 1000000              /* instructions per call */
#define ENTRY_STEP_MAX 3000000        /* per raft entry, all calls together */
#define CALL_MEM_MAX (16u << 20)      /* bytes a call may allocate */
#define HEAP_MAX (256u << 20)         /* the whole Lua heap */
#define PATTERN_COST_MAX 5e7          /* estimated matcher steps */
#define REP_MAX (1u << 20)            /* string.rep result bytes */
/* What a library call costs, in VM instructions of the same budget (the
 * count hook does not fire inside C functions): one per argument and result;
 * per KiB of the strings it is given STEPS_PER_KIB (copies and scans),
 * SLOW_STEPS_PER_KIB (utf8.*, tonumber: a step per byte) or
 * DECODE_STEPS_PER_KIB (hub.json/msgpack.decode: values built per byte), and
 * STEPS_PER_KIB per KiB it returns; one per element of a table the table
 * library is given (table.sort: n log2 n; table.move: the range); one per
 * repetition of string.rep; an estimated matcher step of a pattern each;
 * and STORE_CALL_STEPS for a hub call that reads or writes the store.
 * Calibrated so that a budget's worth of any of them takes about as long as
 * 1,000,000 instructions, ~10 ms (docs/benchmarks.md "Script budget").
 * Measured by tests/unit/fsm_limits_test.c (test_c_call_budget). */
#define STEPS_PER_KIB 128
#define SLOW_STEPS_PER_KIB 512
#define DECODE_STEPS_PER_KIB 16384

enum { ABORT_NONE, ABORT_STEPS, ABORT_MEM }; /* sc->abort */

/* ---- memory, budget ---- */

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    scripts_t *sc = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        sc->heap -= old;
        free(ptr);
        return NULL;
    }
    if (nsize > old) {
        size_t grow = nsize - old;
        if (sc->heap + grow > HEAP_MAX ||
            (sc->in_call && sc->call_alloc + grow > CALL_MEM_MAX)) {
            if (sc->in_call)
                sc->abort = ABORT_MEM;
            return NULL;
        }
        if (sc->in_call)
            sc->call_alloc += grow;
    }
    void *p = realloc(ptr, nsize);
    if (p)
        sc->heap = sc->heap - old + nsize;
    return p;
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    scripts_t *sc = script_host(L);
    sc->steps += HOOK_EVERY;
    if (sc->in_call && sc->steps > sc->limit) {
        sc->abort = ABORT_STEPS;
        lua_getinfo(L, "Sl", ar);
        if (sc->limit < STEP_MAX)
            luaL_error(L, "%s:%d: the entry's instruction budget of %d is spent",
                       ar->short_src, ar->currentline, ENTRY_STEP_MAX);
        luaL_error(L, "%s:%d: instruction budget of %d exceeded", ar->short_src,
                   ar->currentline, STEP_MAX);
    }
}

void sandbox_charge(lua_State *L, uint64_t steps)
{
    scripts_t *sc = script_host(L);
    sc->steps += steps;
    if (sc->in_call && sc->steps > sc->limit) {
        sc->abort = ABORT_STEPS;
        if (sc->limit < STEP_MAX)
            luaL_error(L, "the entry's instruction budget of %d is spent", ENTRY_STEP_MAX);
        luaL_error(L, "instruction budget of %d exceeded (library calls count the bytes "
                      "they touch)", STEP_MAX);
    }
}

bool sandbox_entry_spent(const scripts_t *sc)
{
    return !sc->testing && sc->entry_steps >= ENTRY_STEP_MAX;
}

/* The cost of the values at @from..@to: one each, plus their string bytes
 * at @kind's rate and, for the table library's kinds, the elements of their
 * tables (times log2 n for a sort). */
static uint64_t values_cost(lua_State *L, int from, int to, int kind)
{
    uint64_t per_kib = kind == METER_SLOW     ? SLOW_STEPS_PER_KIB
                       : kind == METER_DECODE ? DECODE_STEPS_PER_KIB
                                              : STEPS_PER_KIB;
    uint64_t bytes = 0, steps = 0;
    for (int i = from; i <= to; i++) {
        steps++;
        if (lua_type(L, i) == LUA_TSTRING) {
            size_t l;
            lua_tolstring(L, i, &l);
            bytes += l;
        } else if (kind >= METER_TABLE && lua_type(L, i) == LUA_TTABLE) {
            uint64_t n = lua_rawlen(L, i), log = 1;
            while (kind == METER_SORT && n >> log)
                log++;
            steps += n * log;
        }
    }
    return steps + bytes * per_kib / 1024;
}

/* A metered library function: upvalue 1 the original (a C function without
 * upvalues), upvalue 2 its kind (METER_*: how its table arguments count),
 * upvalue 3 a fixed cost. The arguments are charged before the call (a call
 * over the budget does no work), the results after. The original runs in
 * this frame, so its errors still name the script's line. */
static int l_metered(lua_State *L)
{
    lua_CFunction fn = lua_tocfunction(L, lua_upvalueindex(1));
    int kind = (int)lua_tointeger(L, lua_upvalueindex(2));
    uint64_t steps = (uint64_t)lua_tointeger(L, lua_upvalueindex(3));
    steps += values_cost(L, 1, lua_gettop(L), kind);
    if (kind == METER_MOVE && lua_isinteger(L, 2) && lua_isinteger(L, 3) &&
        lua_tointeger(L, 3) > lua_tointeger(L, 2))
        steps += (uint64_t)lua_tointeger(L, 3) - (uint64_t)lua_tointeger(L, 2);
    sandbox_charge(L, steps);
    int n = fn(L);
    sandbox_charge(L, values_cost(L, lua_gettop(L) - n + 1, lua_gettop(L), METER_PLAIN));
    return n;
}

/* Replace the function at the top by its metered closure: a C function
 * without upvalues only (the sandbox's own wrappers, closures, charge in
 * their body: see charge_call). */
static void meter_top(lua_State *L, int kind, int fixed)
{
    if (!lua_iscfunction(L, -1))
        return;
    if (lua_getupvalue(L, -1, 1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushinteger(L, kind);
    lua_pushinteger(L, fixed);
    lua_pushcclosure(L, l_metered, 3);
}

void sandbox_meter(lua_State *L, int kind, int fixed)
{
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -1) != LUA_TFUNCTION || lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;
        }
        const char *name = lua_tostring(L, -2);
        meter_top(L, kind != METER_TABLE ? kind
                     : strcmp(name, "sort") == 0 ? METER_SORT
                     : strcmp(name, "move") == 0 ? METER_MOVE : kind, fixed);
        lua_pushvalue(L, -2); /* t key fn key */
        lua_insert(L, -2);
        lua_rawset(L, -4); /* replacing an existing key keeps lua_next valid */
    }
}

/* Meter field @f of the table at the top (see sandbox_meter). */
static void meter_field(lua_State *L, const char *f, int kind)
{
    lua_getfield(L, -1, f);
    meter_top(L, kind, 0);
    lua_setfield(L, -2, f);
}

/* What the sandbox's own wrappers (l_pattern, l_rep, l_format) charge for
 * the @nvalues values at the top: their arguments before the original runs,
 * its results after. */
static void charge_call(lua_State *L, int nvalues)
{
    sandbox_charge(L, values_cost(L, lua_gettop(L) - nvalues + 1, lua_gettop(L), METER_PLAIN));
}

/* pcall, xpcall, coroutine.resume/close: the original (upvalue 1) runs; a
 * budget or memory abort it caught is raised again, so no script can go on
 * after one. */
static int l_guard(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    if (script_host(L)->abort) {
        if (lua_type(L, -1) == LUA_TSTRING)
            return lua_error(L); /* the original message, with its line */
        if (script_host(L)->abort == ABORT_MEM)
            lua_pushliteral(L, "not enough memory (script allocation cap)");
        else
            lua_pushfstring(L, "instruction budget of %d exceeded",
                            (int)script_host(L)->limit);
        return lua_error(L);
    }
    return lua_gettop(L);
}

/* ---- deterministic replacements ---- */

static int key_rank(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return 0;
    case LUA_TNUMBER: return 1;
    case LUA_TSTRING: return 2;
    default:
        return luaL_error(L, "pairs: keys of type %s have no deterministic order",
                          luaL_typename(L, idx));
    }
}

static int l_keycmp(lua_State *L)
{
    int ra = key_rank(L, 1), rb = key_rank(L, 2);
    if (ra != rb) {
        lua_pushboolean(L, ra < rb);
    } else if (ra == 0) {
        lua_pushboolean(L, !lua_toboolean(L, 1) && lua_toboolean(L, 2));
    } else if (ra == 1) {
        lua_pushboolean(L, lua_compare(L, 1, 2, LUA_OPLT));
    } else {
        size_t la, lb;
        const char *a = lua_tolstring(L, 1, &la), *b = lua_tolstring(L, 2, &lb);
        int c = memcmp(a, b, la < lb ? la : lb);
        lua_pushboolean(L, c < 0 || (c == 0 && la < lb));
    }
    return 1;
}

static int pairs_next(lua_State *L)
{
    lua_Integer i = lua_tointeger(L, lua_upvalueindex(3));
    for (;;) {
        lua_pushinteger(L, ++i);
        lua_replace(L, lua_upvalueindex(3));
        if (lua_rawgeti(L, lua_upvalueindex(1), i) == LUA_TNIL)
            return 1;
        lua_pushvalue(L, -1);
        if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL)
            return 2;
        lua_pop(L, 2); /* removed during the iteration */
    }
}

/* pairs(t): the keys sorted (booleans, numbers, strings), never hash order. */
int sandbox_pairs(lua_State *L)
{
    lua_Integer n = 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        key_rank(L, -1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, 2, ++n);
    }
    uint64_t log = 1;
    while ((uint64_t)n >> log)
        log++;
    sandbox_charge(L, (uint64_t)n * log); /* the sort's comparisons run in C */
    lua_rawgeti(L, LUA_REGISTRYINDEX, script_host(L)->sort_ref);
    lua_pushvalue(L, 2);
    lua_pushcfunction(L, l_keycmp);
    lua_call(L, 2, 0);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, pairs_next, 3);
    return 1;
}

/* Push a string for @idx that never shows an address. */
static void safe_tostring(lua_State *L, int idx)
{
    int t = lua_type(L, idx);
    if (t == LUA_TNIL || t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TSTRING ||
        luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
        if (t > LUA_TSTRING)
            lua_pop(L, 1);
        luaL_tolstring(L, idx, NULL);
    } else {
        lua_pushstring(L, lua_typename(L, t));
    }
}

static int l_tostring(lua_State *L)
{
    luaL_checkany(L, 1);
    safe_tostring(L, 1);
    return 1;
}

/* setmetatable without __gc or __mode: finalizers and weak tables follow GC
 * timing, which differs between nodes. The metatable set is a private copy
 * (so a later mt.__mode = "k" has no effect); getmetatable returns @mt.
 * Upvalue 1: the original setmetatable. */
static int l_setmetatable(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 2);
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_pushvalue(L, 1);
        lua_pushnil(L);
        lua_call(L, 2, 1);
        return 1;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_getfield(L, 2, "__gc") != LUA_TNIL || lua_getfield(L, 2, "__mode") != LUA_TNIL)
        return luaL_error(L, "setmetatable: __gc and __mode are not available in scripts");
    lua_settop(L, 2);
    lua_newtable(L); /* 3: the copy */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, 3);
    }
    if (lua_getfield(L, 3, "__metatable") == LUA_TNIL) {
        lua_pushvalue(L, 2);
        lua_setfield(L, 3, "__metatable");
    }
    lua_settop(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 3);
    lua_call(L, 2, 1);
    return 1;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001B3ULL;
    return h;
}

/* math.random(): [0,1); (m): [1,m]; (m, n): [m,n] — from the call's seed. */
static int l_random(lua_State *L)
{
    scripts_t *sc = script_host(L);
    uint64_t r = splitmix(&sc->rng);
    lua_Integer lo = 1, hi;
    if (lua_gettop(L) == 0) {
        lua_pushnumber(L, (double)(r >> 11) * 0x1.0p-53);
        return 1;
    }
    hi = luaL_checkinteger(L, 1);
    if (lua_gettop(L) >= 2) {
        lo = hi;
        hi = luaL_checkinteger(L, 2);
    }
    luaL_argcheck(L, lo <= hi, 1, "interval is empty");
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1;
    lua_pushinteger(L, span ? (lua_Integer)((uint64_t)lo + r % span) : (lua_Integer)r);
    return 1;
}

void sandbox_seed(scripts_t *sc, const sentry_t *e, const fsm_push_msg_t *m)
{
    sc->rng = hash_bytes(hash_bytes(sc->now ^ (m->seq * 0x9E3779B97F4A7C15ULL), e->name,
                                    e->nlen), m->msg_id, m->msg_id_len);
}

/* ---- bounded string functions ---- */

/* Rough worst-case step count of Lua's backtracking matcher: every
 * quantifier (* + - %b) may rescan the rest of the subject from each
 * start position: (n+1)^k / k!. */
static double pattern_cost(const char *p, size_t pl, size_t sl)
{
    int k = (pl && p[0] == '^') ? 0 : 1;
    for (size_t i = 0; i < pl; i++) {
        if (p[i] == '%') {
            if (i + 1 < pl && p[i + 1] == 'b')
                k++;
            i++;
        } else if (p[i] == '[') {
            for (i++; i < pl && p[i] != ']'; i++)
                if (p[i] == '%')
                    i++;
        } else if (p[i] == '*' || p[i] == '+' || p[i] == '-') {
            k++;
        }
    }
    double cost = 1;
    for (int j = 1; j <= k; j++)
        cost = cost * (double)(sl + 1) / j;
    return cost;
}

/* find/match/gmatch/gsub: the original (upvalue 1) after the cost check;
 * upvalue 2 is true for find (a plain find is never expensive). */
static int l_pattern(lua_State *L)
{
    size_t sl, pl;
    luaL_checklstring(L, 1, &sl);
    const char *p = luaL_checklstring(L, 2, &pl);
    bool plain = lua_toboolean(L, lua_upvalueindex(2)) && lua_toboolean(L, 4);
    double cost = plain ? 0 : pattern_cost(p, pl, sl);
    if (cost > PATTERN_COST_MAX)
        return luaL_error(L, "pattern too complex for a subject of %d bytes: use fewer "
                          "quantifiers (* + - %%b), anchor it, or match a shorter string",
                          (int)sl);
    sandbox_charge(L, (uint64_t)cost);
    charge_call(L, lua_gettop(L));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    charge_call(L, lua_gettop(L));
    return lua_gettop(L);
}

static int l_rep(lua_State *L)
{
    size_t l, sl = 0;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    if (lua_type(L, 3) == LUA_TSTRING)
        lua_tolstring(L, 3, &sl);
    if (n > 0 && (double)n * (double)(l + sl) > REP_MAX)
        return luaL_error(L, "string.rep: result over %d bytes", (int)REP_MAX);
    sandbox_charge(L, n > 0 ? (uint64_t)n : 0); /* a copy per repetition */
    charge_call(L, lua_gettop(L));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    charge_call(L, 1);
    return 1;
}

/* string.format without %p and without addresses for %s of tables. */
static int l_format(lua_State *L)
{
    size_t fl;
    const char *f = luaL_checklstring(L, 1, &fl);
    for (size_t i = 0; i + 1 < fl; i++) {
        if (f[i] != '%')
            continue;
        size_t j = i + 1;
        while (j < fl && strchr("-+ #0123456789.", f[j]))
            j++;
        if (j < fl && f[j] == 'p')
            return luaL_error(L, "string.format: %%p is not available in scripts");
        i = j;
    }
    for (int i = 2; i <= lua_gettop(L); i++) {
        if (lua_type(L, i) > LUA_TSTRING) {
            safe_tostring(L, i);
            lua_replace(L, i);
        }
    }
    charge_call(L, lua_gettop(L));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    charge_call(L, 1);
    return 1;
}

/* ---- the sandbox ---- */

int sandbox_readonly_error(lua_State *L)
{
    return luaL_error(L, "this table is read-only in scripts");
}

void sandbox_readonly(lua_State *L)
{
    lua_newtable(L);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sandbox_readonly_error);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_remove(L, -2);
}

/* Wrap field @f of the table at the top in @fn with the original as
 * upvalue 1 (and @extra as upvalue 2 when >= 0). */
static void wrap_field(lua_State *L, const char *f, lua_CFunction fn, int extra)
{
    lua_getfield(L, -1, f);
    if (extra >= 0)
        lua_pushboolean(L, extra);
    lua_pushcclosure(L, fn, extra >= 0 ? 2 : 1);
    lua_setfield(L, -2, f);
}

static void drop_fields(lua_State *L, const char *const *names)
{
    for (; *names; names++) {
        lua_pushnil(L);
        lua_setfield(L, -2, *names);
    }
}

static void lib_into(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_requiref(L, name, open, 0);
}

/* The sandbox table: what a script's environment reads
 * through __index. Library tables are read-only proxies; the string
 * metatable's __index is the bounded string table. */
static void setup_libs(scripts_t *sc, lua_State *L)
{
    static const char *const str_drop[] = {"dump", "pack", "packsize", "unpack", NULL};
    static const char *const math_drop[] = {"random", "randomseed", NULL};
    lib_into(L, "string", luaopen_string);
    drop_fields(L, str_drop);
    wrap_field(L, "find", l_pattern, 1);
    wrap_field(L, "match", l_pattern, 0);
    wrap_field(L, "gmatch", l_pattern, 0);
    wrap_field(L, "gsub", l_pattern, 0);
    wrap_field(L, "rep", l_rep, -1);
    wrap_field(L, "format", l_format, -1);
    sandbox_meter(L, METER_PLAIN, 0);
    sandbox_readonly(L);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    lua_setfield(L, -2, "string");
    lib_into(L, "table", luaopen_table);
    lua_getfield(L, -1, "sort");
    sc->sort_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    sandbox_meter(L, METER_TABLE, 0);
    sandbox_readonly(L);
    lua_setfield(L, -2, "table");
    lib_into(L, "math", luaopen_math);
    drop_fields(L, math_drop);
    lua_pushcfunction(L, l_random);
    lua_setfield(L, -2, "random");
    sandbox_readonly(L);
    lua_setfield(L, -2, "math");
    lib_into(L, "utf8", luaopen_utf8);
    sandbox_meter(L, METER_SLOW, 0);
    sandbox_readonly(L);
    lua_setfield(L, -2, "utf8");
    lib_into(L, "coroutine", luaopen_coroutine);
    wrap_field(L, "resume", l_guard, -1);
    wrap_field(L, "close", l_guard, -1);
    sandbox_readonly(L);
    lua_setfield(L, -2, "coroutine");
}

int sandbox_open(scripts_t *sc)
{
    static const char *const base_keep[] = {"assert", "error", "ipairs", "select", "tonumber",
                                            "type", "rawequal", "rawlen", "rawget",
                                            "getmetatable", "_VERSION", NULL};
    static const char *const base_metered[] = {"tonumber", "rawequal", "select", "ipairs",
                                               NULL};
    lua_State *L;
    if (!(L = sc->L = lua_newstate(l_alloc, sc)))
        return MQHUB_EINTERNAL;
    *(scripts_t **)lua_getextraspace(L) = sc;
    lua_newtable(L); /* the sandbox */
    lib_into(L, "_G", luaopen_base);
    for (const char *const *k = base_keep; *k; k++) {
        lua_getfield(L, -1, *k);
        lua_setfield(L, -3, *k);
    }
    lua_getfield(L, -1, "setmetatable");
    lua_pushcclosure(L, l_setmetatable, 1);
    lua_setfield(L, -3, "setmetatable");
    lua_getfield(L, -1, "pcall");
    lua_pushcclosure(L, l_guard, 1);
    lua_setfield(L, -3, "pcall");
    lua_getfield(L, -1, "xpcall");
    lua_pushcclosure(L, l_guard, 1);
    lua_setfield(L, -3, "xpcall");
    lua_pop(L, 1);
    lua_pushcfunction(L, sandbox_pairs);
    lua_setfield(L, -2, "pairs");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "tostring");
    /* the base functions whose work grows with their arguments (error and
     * assert stay unwrapped: error's level 1 must be the script's line) */
    for (const char *const *k = base_metered; *k; k++)
        meter_field(L, *k, strcmp(*k, "tonumber") == 0 ? METER_SLOW : METER_PLAIN);
    setup_libs(sc, L);
    hublib_open(sc);
    lua_createtable(L, 0, 2); /* the environments' metatable */
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    sc->envmeta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0); /* the sandbox stays, as the metatable's __index */
    return 0;
}

/* ---- calling Lua ---- */

/* Message handler: a deterministic message (never an address), the
 * traceback kept for the log. */
static int l_msgh(lua_State *L)
{
    scripts_t *sc = script_host(L);
    if (lua_type(L, 1) != LUA_TSTRING)
        lua_pushfstring(L, "error object is a %s value", luaL_typename(L, 1));
    else
        lua_pushvalue(L, 1);
    luaL_traceback(L, L, lua_tostring(L, -1), 1);
    snprintf(sc->trace, sizeof(sc->trace), "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
}

int sandbox_pcall(scripts_t *sc, int nargs, int nres, char *err, size_t errlen)
{
    lua_State *L = sc->L;
    int fn = lua_gettop(L) - nargs;
    lua_pushcfunction(L, l_msgh);
    lua_insert(L, fn);
    sc->steps = 0;
    sc->call_alloc = 0;
    sc->abort = ABORT_NONE;
    /* Every call of an entry shares ENTRY_STEP_MAX too (group commit puts
     * many messages in one entry); script.test is a read, not an entry. */
    sc->limit = STEP_MAX;
    if (!sc->testing)
        sc->limit = sc->entry_steps >= ENTRY_STEP_MAX ? 0
                    : ENTRY_STEP_MAX - sc->entry_steps < STEP_MAX ? ENTRY_STEP_MAX - sc->entry_steps
                                                                  : STEP_MAX;
    if (sc->limit == 0) {
        snprintf(err, errlen, "%s: the entry's instruction budget of %d is spent",
                 sc->cur ? sc->cur->name : "script", ENTRY_STEP_MAX);
        lua_settop(L, fn - 1);
        return MQHUB_ESCRIPT_ERROR;
    }
    sc->in_call = true;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY); /* resets the count */
    int rc = lua_pcall(L, nargs, nres, fn);
    sc->in_call = false;
    if (!sc->testing)
        sc->entry_steps += sc->steps;
    if (rc == LUA_OK) {
        lua_remove(L, fn);
        return 0;
    }
    if (rc == LUA_ERRMEM || sc->abort == ABORT_MEM)
        snprintf(err, errlen, "%s: not enough memory (a call may allocate %u MiB)",
                 sc->cur ? sc->cur->name : "script", CALL_MEM_MAX >> 20);
    else
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
    lua_settop(L, fn - 1);
    return MQHUB_ESCRIPT_ERROR;
}
