/* script.c: the Lua 5.4 script host (docs/scripting.md, PROTOCOL.md "Scripts
 * and blocks"). Scripts run inside apply, so everything here must compute the
 * same result on every node from the same entries.
 *
 * Where to start: script_op_load() compiles and stores a script; call() is
 * the one path into Lua (instance() runs a script's chunk lazily once per
 * entry in a fresh environment, so no Lua memory carries state between
 * entries); filter_cb() serves topic.c's filter slot, gate() runs before
 * every send/publish (active blocks, then the queue's or topic's hook).
 *
 * Determinism and the sandbox (setup_sandbox): no io/os/debug/require/load/
 * next/rawset/collectgarbage/string.dump; `pairs` iterates in sorted key
 * order (Lua seeds string hashes per state); tostring/format never show an
 * address; math.random is seeded from the entry and the message;
 * setmetatable refuses __gc and __mode (GC timing differs between nodes);
 * string patterns and string.rep are bounded (the count hook does not fire
 * inside C functions); a call has an instruction budget (count hook, reset
 * per call) and an allocation cap (own lua_Alloc). pcall/xpcall/coroutine
 * cannot swallow a budget or memory abort.
 *
 * Side effects of a hook (hub.state, hub.window, hub.block, hub.publish) go
 * to an overlay and reach the store only when the call succeeds; script.test
 * keeps a second overlay that is never committed.
 *
 * Store keys (docs/architecture.md "Key layout"):
 *   X<name>                script [version, source]
 *   J<name>                its counters (calls, errors, ...; flushed per entry)
 *   H<q|t><name>           hook binding of a queue or topic -> script name
 *   K<attr>\0<value>       block [until_ms, reason, script]
 *   V<script>\0<key>       hub.state value (msgpack nil/bool/int/float/str)
 *   Y<name>\0<key>         hub.window buckets
 *
 * To extend the hub API: an l_<module>_<fn> in the luaL_Reg arrays below; a
 * function with side effects must check writes_allowed() and write through
 * sput()/sdel() so the overlay sees it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "hmap.h"
#include "internal.h"

#define NAME_MAX_LEN 64
#define SOURCE_MAX (256 * 1024)
#define HOOK_EVERY 1000               /* instructions between count hooks */
#define STEP_MAX 1000000              /* instructions per call */
#define CALL_MEM_MAX (16u << 20)      /* bytes a call may allocate */
#define HEAP_MAX (256u << 20)         /* the whole Lua heap */
#define PATTERN_COST_MAX 5e7          /* estimated matcher steps */
#define REP_MAX (1u << 20)            /* string.rep result bytes */
#define DECODE_MAX (1u << 20)         /* hub.json/msgpack input bytes */
#define DECODE_DEPTH 64
#define STATE_KEY_MAX 255
#define STATE_VAL_MAX 65536
#define PUBLISH_MAX 16                /* hub.publish per call */
#define BLOCK_ATTR_MAX 128
#define BLOCK_VALUE_MAX 512
#define BLOCK_TTL_DEFAULT 300
#define BLOCK_TTL_MAX (30 * 86400)
#define WINDOW_MAX_S (7 * 86400)
#define WINDOW_BUCKETS 30
#define TEST_MAX 100000               /* messages script.test visits */
#define TICK_BUDGET 10000             /* records tick removes */
#define ERR_LEN 256

enum { ABORT_NONE, ABORT_STEPS, ABORT_MEM };

struct sstat {
    uint64_t calls, errors, refused, blocks, publishes, last_error_at;
    char last_error[ERR_LEN];
};

typedef struct sentry {
    char name[NAME_MAX_LEN + 1];
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
    bool del;
    char v[];
};

struct pubq {
    sentry_t *from;
    char topic[NAME_MAX_LEN + 1];
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
    uint64_t now, gen, call_gen, rng;
    bool failed;
    /* the call in progress */
    sentry_t *cur;
    const fsm_push_msg_t *msg;
    bool msg_queue, writes, in_call;
    const char *dest;
    size_t destlen;
    uint64_t steps;
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

static scripts_t *host(lua_State *L)
{
    return *(scripts_t **)lua_getextraspace(L);
}

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
    scripts_t *sc = host(L);
    sc->steps += HOOK_EVERY;
    if (sc->in_call && sc->steps > STEP_MAX) {
        sc->abort = ABORT_STEPS;
        lua_getinfo(L, "Sl", ar);
        luaL_error(L, "%s:%d: instruction budget of %d exceeded", ar->short_src,
                   ar->currentline, STEP_MAX);
    }
}

/* pcall, xpcall, coroutine.resume/close: the original (upvalue 1) runs; a
 * budget or memory abort it caught is raised again, so no script can go on
 * after one. */
static int l_guard(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    if (host(L)->abort) {
        if (lua_type(L, -1) == LUA_TSTRING)
            return lua_error(L); /* the original message, with its line */
        if (host(L)->abort == ABORT_MEM)
            lua_pushliteral(L, "not enough memory (script allocation cap)");
        else
            lua_pushfstring(L, "instruction budget of %d exceeded", STEP_MAX);
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
static int l_pairs(lua_State *L)
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
    lua_rawgeti(L, LUA_REGISTRYINDEX, host(L)->sort_ref);
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
    scripts_t *sc = host(L);
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
    if (!plain && pattern_cost(p, pl, sl) > PATTERN_COST_MAX)
        return luaL_error(L, "pattern too complex for a subject of %d bytes: use fewer "
                          "quantifiers (* + - %%b), anchor it, or match a shorter string",
                          (int)sl);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
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
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
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
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* ---- store access through the overlays ---- */

static struct ov *ov_find(scripts_t *sc, const void *k, size_t kl)
{
    struct ov *o = hmap_get(&sc->call_ov, k, kl);
    if (!o && sc->testing)
        o = hmap_get(&sc->test_ov, k, kl);
    return o;
}

/* A value (free with free()) or NULL. */
static char *sget(scripts_t *sc, const void *k, size_t kl, size_t *vl)
{
    struct ov *o = ov_find(sc, k, kl);
    if (o) {
        char *v = o->del ? NULL : malloc(o->vl ? o->vl : 1);
        if (v)
            memcpy(v, o->v, o->vl);
        *vl = o->vl;
        return v;
    }
    void *sv = store_get(sc->st, k, kl, vl);
    char *v = sv ? malloc(*vl ? *vl : 1) : NULL;
    if (v)
        memcpy(v, sv, *vl);
    store_free(sv);
    return v;
}

static void ov_set(hmap_t *m, const void *k, size_t kl, const void *v, size_t vl, bool del)
{
    struct ov *o = malloc(sizeof(*o) + vl);
    if (!o)
        return;
    o->vl = vl;
    o->del = del;
    memcpy(o->v, v, vl);
    free(hmap_get(m, k, kl));
    if (hmap_put(m, k, kl, o) != 0)
        free(o);
}

/* Write to the store, counting blocks. */
static void store_write(scripts_t *sc, const void *k, size_t kl, const void *v, size_t vl,
                        bool del)
{
    if (kl && ((const char *)k)[0] == 'K') {
        size_t ol;
        void *old = store_get(sc->st, k, kl, &ol);
        bool had = old != NULL;
        store_free(old);
        if (del && !had)
            return;
        sc->n_blocks += del ? -1 : had ? 0 : 1;
    }
    if (del)
        store_del(sc->st, k, kl);
    else if (store_put(sc->st, k, kl, v, vl) != 0)
        sc->failed = true;
}

static void sput(scripts_t *sc, const void *k, size_t kl, const void *v, size_t vl)
{
    if (sc->in_call)
        ov_set(&sc->call_ov, k, kl, v, vl, false);
    else
        store_write(sc, k, kl, v, vl, false);
}

static void sdel(scripts_t *sc, const void *k, size_t kl)
{
    if (sc->in_call)
        ov_set(&sc->call_ov, k, kl, "", 0, true);
    else
        store_write(sc, k, kl, NULL, 0, true);
}

static void ov_clear(hmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            free(m->slots[i].val);
    hmap_free(m);
    hmap_init(m);
}

static void pubq_free(struct pubq *p)
{
    while (p) {
        struct pubq *n = p->next;
        free(p->map);
        free(p);
        p = n;
    }
}

/* The call succeeded: its writes go to the store (or the test overlay),
 * its publishes to the outbox. The order of the store writes does not
 * matter: the result is the same set of records. */
static void commit(scripts_t *sc)
{
    hmap_t *m = &sc->call_ov;
    for (size_t i = 0; i < m->cap; i++) {
        hmap_slot_t *s = &m->slots[i];
        struct ov *o = s->val;
        if (!s->key)
            continue;
        if (sc->testing)
            ov_set(&sc->test_ov, s->key, s->klen, o->v, o->vl, o->del);
        else
            store_write(sc, s->key, s->klen, o->v, o->vl, o->del);
    }
    ov_clear(m);
    if (sc->testing) {
        sc->test_pubs += sc->call_pubs;
        pubq_free(sc->pending);
    } else {
        *sc->outbox_tail = sc->pending;
        while (*sc->outbox_tail)
            sc->outbox_tail = &(*sc->outbox_tail)->next;
        sc->cur->s.blocks += sc->call_blocks;
        sc->cur->s.publishes += sc->call_pubs;
    }
    sc->pending = NULL;
}

static void discard(scripts_t *sc)
{
    ov_clear(&sc->call_ov);
    pubq_free(sc->pending);
    sc->pending = NULL;
}

/* ---- values <-> msgpack ---- */

static int push_obj(lua_State *L, const msgpack_object *o, int depth);

static int push_map(lua_State *L, const msgpack_object *o, int depth)
{
    lua_createtable(L, 0, (int)o->via.map.size);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        push_obj(L, &o->via.map.ptr[i].key, depth + 1);
        push_obj(L, &o->via.map.ptr[i].val, depth + 1);
        if (lua_isnil(L, -2) || (lua_type(L, -2) == LUA_TNUMBER && isnan(lua_tonumber(L, -2))))
            lua_pop(L, 2);
        else
            lua_rawset(L, -3);
    }
    return 1;
}

static int push_obj(lua_State *L, const msgpack_object *o, int depth)
{
    if (depth > DECODE_DEPTH)
        return luaL_error(L, "decode: nested deeper than %d", DECODE_DEPTH);
    luaL_checkstack(L, 4, "decode");
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN: lua_pushboolean(L, o->via.boolean); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX)
            lua_pushnumber(L, (double)o->via.u64);
        else
            lua_pushinteger(L, (lua_Integer)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: lua_pushinteger(L, o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: lua_pushnumber(L, o->via.f64); break;
    case MSGPACK_OBJECT_STR: lua_pushlstring(L, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size); break;
    case MSGPACK_OBJECT_ARRAY:
        lua_createtable(L, (int)o->via.array.size, 0);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            push_obj(L, &o->via.array.ptr[i], depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case MSGPACK_OBJECT_MAP: return push_map(L, o, depth);
    default: lua_pushnil(L); break;
    }
    return 1;
}

/* Pack a primitive Lua value (a hub.state value); false when it is not one. */
static bool pack_prim(lua_State *L, int idx, msgpack_packer *pk)
{
    size_t l;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        return true;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            msgpack_pack_int64(pk, lua_tointeger(L, idx));
        else
            msgpack_pack_double(pk, lua_tonumber(L, idx));
        return true;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &l);
        fsm_pack_str(pk, s, l);
        return true;
    default:
        return false;
    }
}

/* ---- the message view (msg) ---- */

struct mview {
    uint64_t gen;
};

static void push_str_obj(lua_State *L, const msgpack_object *o)
{
    if (o && o->type == MSGPACK_OBJECT_STR)
        lua_pushlstring(L, o->via.str.ptr, o->via.str.size);
    else
        lua_pushnil(L);
}

static int l_msg_index(lua_State *L)
{
    scripts_t *sc = host(L);
    struct mview *v = lua_touserdata(L, 1);
    const char *k = luaL_checkstring(L, 2);
    const fsm_push_msg_t *m = sc->msg;
    if (!v || !m || v->gen != sc->call_gen)
        return luaL_error(L, "msg is valid only during the call it was passed to");
    if (strcmp(k, "body") == 0)
        lua_pushlstring(L, m->body, m->body_len); /* copied only when read */
    else if (strcmp(k, "id") == 0)
        lua_pushlstring(L, m->msg_id, m->msg_id_len);
    else if (strcmp(k, "seq") == 0)
        lua_pushinteger(L, (lua_Integer)m->seq);
    else if (strcmp(k, "published_at") == 0)
        lua_pushinteger(L, (lua_Integer)m->published_at);
    else if (strcmp(k, "key") == 0)
        push_str_obj(L, m->key);
    else if (strcmp(k, "tags") == 0 || strcmp(k, "attrs") == 0) {
        /* built once per call, kept as a user value of the view */
        int slot = k[0] == 't' ? 1 : 2;
        if (lua_getiuservalue(L, 1, slot) != LUA_TTABLE) {
            const msgpack_object *o = slot == 1 ? m->tags : m->attrs;
            lua_pop(L, 1);
            if (o && (o->type == MSGPACK_OBJECT_ARRAY || o->type == MSGPACK_OBJECT_MAP))
                push_obj(L, o, 0);
            else
                lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setiuservalue(L, 1, slot);
        }
    } else if (strcmp(k, "topic") == 0 && !sc->msg_queue && sc->dest)
        lua_pushlstring(L, sc->dest, sc->destlen);
    else if (strcmp(k, "topic") == 0 && !sc->msg_queue && m->topic)
        lua_pushlstring(L, m->topic, m->topic_len);
    else if (strcmp(k, "queue") == 0 && sc->msg_queue)
        lua_pushlstring(L, sc->dest, sc->destlen);
    else
        lua_pushnil(L);
    return 1;
}

static void push_msg(scripts_t *sc)
{
    struct mview *v = lua_newuserdatauv(sc->L, sizeof(*v), 2);
    v->gen = sc->call_gen;
    lua_rawgeti(sc->L, LUA_REGISTRYINDEX, sc->msgmeta_ref);
    lua_setmetatable(sc->L, -2);
}

/* ---- hub.* ---- */

static scripts_t *writes_allowed(lua_State *L, const char *fn)
{
    scripts_t *sc = host(L);
    if (!sc->writes)
        luaL_error(L, "%s is available in hooks (on_message) only", fn);
    return sc;
}

static int l_hub_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)host(L)->now);
    return 1;
}

/* "<prefix><a>\0<b>" into @k (cap bytes); its length, or 0 when too long. */
static size_t key2(char *k, size_t cap, char prefix, const char *a, size_t al, const char *b,
                   size_t bl)
{
    if (2 + al + bl > cap)
        return 0;
    k[0] = prefix;
    memcpy(k + 1, a, al);
    k[1 + al] = 0;
    memcpy(k + 2 + al, b, bl);
    return 2 + al + bl;
}

static size_t state_key(lua_State *L, char *k, size_t cap)
{
    scripts_t *sc = host(L);
    size_t kl;
    const char *key = luaL_checklstring(L, 1, &kl);
    luaL_argcheck(L, kl >= 1 && kl <= STATE_KEY_MAX, 1, "keys are 1-255 bytes");
    return key2(k, cap, 'V', sc->cur->name, sc->cur->nlen, key, kl);
}

static int l_state_get(lua_State *L)
{
    char k[2 + NAME_MAX_LEN + STATE_KEY_MAX];
    size_t kl = state_key(L, k, sizeof(k)), vl;
    char *v = sget(host(L), k, kl, &vl);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (v && msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS)
        push_obj(L, &u.data, 0);
    else
        lua_pushnil(L);
    msgpack_unpacked_destroy(&u);
    free(v);
    return 1;
}

static int l_state_set(lua_State *L)
{
    scripts_t *sc = writes_allowed(L, "hub.state.set");
    char k[2 + NAME_MAX_LEN + STATE_KEY_MAX];
    size_t kl = state_key(L, k, sizeof(k));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    if (lua_isnoneornil(L, 2)) {
        sdel(sc, k, kl);
        return 0;
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (!pack_prim(L, 2, &pk) || sb.size > STATE_VAL_MAX) {
        msgpack_sbuffer_destroy(&sb);
        return luaL_argerror(L, 2, "a boolean, number or string of at most 64 KiB");
    }
    sput(sc, k, kl, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

static int l_state_del(lua_State *L)
{
    scripts_t *sc = writes_allowed(L, "hub.state.del");
    char k[2 + NAME_MAX_LEN + STATE_KEY_MAX];
    sdel(sc, k, state_key(L, k, sizeof(k)));
    return 0;
}

/* hub.window: per (name, key) up to WINDOW_BUCKETS + 1 buckets of
 * window/WINDOW_BUCKETS ms, oldest first: memory per key is bounded, and
 * tick removes keys idle for a whole window. */
struct bucket {
    uint64_t start, count;
    double sum;
};
struct win {
    uint64_t window_ms, bucket_ms;
    unsigned n;
    struct bucket b[WINDOW_BUCKETS + 1];
};

static bool win_decode(const char *v, size_t vl, struct win *w)
{
    msgpack_unpacked u;
    bool ok = false;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size >= 2 &&
        (u.data.via.array.size - 2) % 3 == 0 &&
        (u.data.via.array.size - 2) / 3 <= WINDOW_BUCKETS + 1) {
        const msgpack_object *o = u.data.via.array.ptr;
        w->window_ms = o[0].via.u64;
        w->bucket_ms = o[1].via.u64;
        w->n = (u.data.via.array.size - 2) / 3;
        for (unsigned i = 0; i < w->n; i++)
            w->b[i] = (struct bucket){o[2 + 3 * i].via.u64, o[3 + 3 * i].via.u64,
                                      o[4 + 3 * i].via.f64};
        ok = w->bucket_ms > 0;
    }
    msgpack_unpacked_destroy(&u);
    return ok;
}

static bool win_load(scripts_t *sc, const char *k, size_t kl, struct win *w)
{
    size_t vl;
    char *v = sget(sc, k, kl, &vl);
    bool ok = v && win_decode(v, vl, w);
    free(v);
    return ok;
}

static void win_save(scripts_t *sc, const char *k, size_t kl, const struct win *w)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2 + 3 * w->n);
    msgpack_pack_uint64(&pk, w->window_ms);
    msgpack_pack_uint64(&pk, w->bucket_ms);
    for (unsigned i = 0; i < w->n; i++) {
        msgpack_pack_uint64(&pk, w->b[i].start);
        msgpack_pack_uint64(&pk, w->b[i].count);
        msgpack_pack_double(&pk, w->b[i].sum);
    }
    sput(sc, k, kl, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Drop buckets wholly older than the window. */
static void win_trim(struct win *w, uint64_t now)
{
    unsigned drop = 0;
    while (drop < w->n && w->b[drop].start + w->bucket_ms + w->window_ms <= now)
        drop++;
    memmove(w->b, w->b + drop, (w->n - drop) * sizeof(w->b[0]));
    w->n -= drop;
}

static size_t win_key(lua_State *L, char *k, size_t cap)
{
    size_t nl, kl;
    const char *name = luaL_checklstring(L, 1, &nl);
    const char *key = luaL_checklstring(L, 2, &kl);
    luaL_argcheck(L, nl >= 1 && nl <= NAME_MAX_LEN, 1, "window names are 1-64 bytes");
    luaL_argcheck(L, kl <= STATE_KEY_MAX, 2, "keys are at most 255 bytes");
    return key2(k, cap, 'Y', name, nl, key, kl);
}

static int l_window_add(lua_State *L)
{
    scripts_t *sc = writes_allowed(L, "hub.window.add");
    char k[2 + NAME_MAX_LEN + STATE_KEY_MAX];
    size_t kl = win_key(L, k, sizeof(k));
    double amount = luaL_checknumber(L, 3);
    lua_Integer win_s = luaL_checkinteger(L, 4);
    struct win w;
    luaL_argcheck(L, win_s >= 1 && win_s <= WINDOW_MAX_S, 4, "window is 1-604800 s");
    luaL_argcheck(L, isfinite(amount), 3, "amount must be finite");
    if (!win_load(sc, k, kl, &w))
        w = (struct win){.window_ms = (uint64_t)win_s * 1000,
                         .bucket_ms = (uint64_t)win_s * 1000 / WINDOW_BUCKETS};
    if (w.bucket_ms == 0)
        w.bucket_ms = 1;
    if (w.window_ms != (uint64_t)win_s * 1000)
        return luaL_error(L, "hub.window.add: window '%s' is %d s, not %d s",
                          lua_tostring(L, 1), (int)(w.window_ms / 1000), (int)win_s);
    win_trim(&w, sc->now);
    uint64_t start = sc->now - sc->now % w.bucket_ms;
    if (w.n == 0 || w.b[w.n - 1].start != start) {
        if (w.n == WINDOW_BUCKETS + 1) {
            memmove(w.b, w.b + 1, (w.n - 1) * sizeof(w.b[0]));
            w.n--;
        }
        w.b[w.n++] = (struct bucket){start, 0, 0};
    }
    w.b[w.n - 1].count++;
    w.b[w.n - 1].sum += amount;
    win_save(sc, k, kl, &w);
    return 0;
}

/* sum, count and rate of a window (0 when it has nothing). */
static int window_read(lua_State *L, int what)
{
    scripts_t *sc = host(L);
    char k[2 + NAME_MAX_LEN + STATE_KEY_MAX];
    size_t kl = win_key(L, k, sizeof(k));
    struct win w;
    double sum = 0;
    uint64_t count = 0;
    if (win_load(sc, k, kl, &w)) {
        win_trim(&w, sc->now);
        for (unsigned i = 0; i < w.n; i++) {
            sum += w.b[i].sum;
            count += w.b[i].count;
        }
    }
    if (what == 'c')
        lua_pushinteger(L, (lua_Integer)count);
    else if (what == 'r')
        lua_pushnumber(L, w.n ? sum / ((double)w.window_ms / 1000.0) : 0.0);
    else
        lua_pushnumber(L, sum);
    return 1;
}

static int l_window_sum(lua_State *L) { return window_read(L, 's'); }
static int l_window_count(lua_State *L) { return window_read(L, 'c'); }
static int l_window_rate(lua_State *L) { return window_read(L, 'r'); }

static const char *opt_field(lua_State *L, int t, const char *f, size_t *len, size_t max)
{
    const char *s = NULL;
    *len = 0;
    if (lua_getfield(L, t, f) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "field '%s' must be a string", f);
        s = lua_tolstring(L, -1, len);
        if (*len > max)
            luaL_error(L, "field '%s' is longer than %d bytes", f, (int)max);
    }
    lua_pop(L, 1); /* the string stays alive in the caller's table */
    return s;
}

/* hub.block{attr=, value=, ttl=, reason=} */
static int l_block(lua_State *L)
{
    scripts_t *sc = writes_allowed(L, "hub.block");
    char k[2 + BLOCK_ATTR_MAX + BLOCK_VALUE_MAX];
    size_t al, vl, rl;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *attr = opt_field(L, 1, "attr", &al, BLOCK_ATTR_MAX);
    const char *value = opt_field(L, 1, "value", &vl, BLOCK_VALUE_MAX);
    const char *reason = opt_field(L, 1, "reason", &rl, 256);
    lua_Integer ttl = BLOCK_TTL_DEFAULT;
    if (lua_getfield(L, 1, "ttl") != LUA_TNIL)
        ttl = luaL_checkinteger(L, -1);
    if (!attr || !al || !value || memchr(attr, 0, al))
        return luaL_error(L, "hub.block needs attr and value (strings; attr without NUL)");
    if (ttl < 1 || ttl > BLOCK_TTL_MAX)
        return luaL_error(L, "hub.block: ttl must be 1-%d s", BLOCK_TTL_MAX);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, sc->now + (uint64_t)ttl * 1000);
    fsm_pack_str(&pk, reason ? reason : "", rl);
    fsm_pack_str(&pk, sc->cur->name, sc->cur->nlen);
    sput(sc, k, key2(k, sizeof(k), 'K', attr, al, value, vl), sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    sc->call_blocks++;
    return 0;
}

/* Pack the string->string table at @idx in sorted key order (the stored
 * bytes must not depend on hash order). */
static void pack_str_map(lua_State *L, int idx, msgpack_packer *pk)
{
    int n = 0, base = lua_gettop(L);
    lua_pushcfunction(L, l_pairs);
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    int it = lua_gettop(L);
    for (;;) {
        lua_pushvalue(L, it);
        lua_call(L, 0, 2);
        if (lua_isnil(L, -2)) {
            lua_pop(L, 2);
            break;
        }
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "attrs must map strings to strings");
        luaL_checkstack(L, 4, "attrs");
        n++;
    }
    msgpack_pack_map(pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        size_t l;
        const char *s = lua_tolstring(L, it + 1 + 2 * i, &l);
        fsm_pack_str(pk, s, l);
        s = lua_tolstring(L, it + 2 + 2 * i, &l);
        fsm_pack_str(pk, s, l);
    }
    lua_settop(L, base);
}

static void pack_publish_opts(lua_State *L, msgpack_packer *pk, int *n)
{
    size_t kl;
    if (!lua_istable(L, 3))
        return;
    const char *key = opt_field(L, 3, "key", &kl, 255);
    if (key) {
        fsm_pack_str(pk, "key", 3);
        fsm_pack_str(pk, key, kl);
        (*n)++;
    }
    if (lua_getfield(L, 3, "tags") == LUA_TTABLE) {
        lua_Integer m = (lua_Integer)lua_rawlen(L, -1);
        if (m > 5)
            luaL_error(L, "hub.publish: at most 5 tags");
        fsm_pack_str(pk, "tags", 4);
        msgpack_pack_array(pk, (size_t)m);
        for (lua_Integer i = 1; i <= m; i++) {
            size_t l;
            lua_rawgeti(L, -1, i);
            const char *s = lua_tolstring(L, -1, &l);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "tags must be strings");
            fsm_pack_str(pk, s, l);
            lua_pop(L, 1);
        }
        (*n)++;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 3, "attrs") == LUA_TTABLE) {
        fsm_pack_str(pk, "attrs", 5);
        pack_str_map(L, lua_gettop(L), pk);
        (*n)++;
    }
    lua_pop(L, 1);
}

/* Pack {body, key?, tags?, attrs?} into the sbuffer (lightuserdata 1) from
 * hub.publish's arguments (2..4); run protected, so an error frees it. */
static int publish_pack(lua_State *L)
{
    msgpack_sbuffer *sb = lua_touserdata(L, 1);
    msgpack_packer pk;
    size_t bl;
    int n = 1;
    lua_remove(L, 1);
    const char *body = luaL_checklstring(L, 2, &bl);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4); /* the count is patched below */
    fsm_pack_str(&pk, "body", 4);
    msgpack_pack_bin(&pk, bl);
    msgpack_pack_bin_body(&pk, body, bl);
    pack_publish_opts(L, &pk, &n);
    sb->data[0] = (char)(0x80 | n);
    return 0;
}

/* hub.publish(topic, body, {tags=, key=, attrs=}): published after the
 * command, without passing any hook or block (depth 1). */
static int l_publish(lua_State *L)
{
    scripts_t *sc = writes_allowed(L, "hub.publish");
    size_t tl;
    const char *topic = luaL_checklstring(L, 1, &tl);
    msgpack_sbuffer sb;
    luaL_argcheck(L, tl >= 1 && tl <= NAME_MAX_LEN, 1, "a topic name");
    if (sc->call_pubs >= PUBLISH_MAX)
        return luaL_error(L, "hub.publish: at most %d messages per call", PUBLISH_MAX);
    lua_settop(L, 3);
    msgpack_sbuffer_init(&sb);
    lua_pushcfunction(L, publish_pack);
    lua_pushlightuserdata(L, &sb);
    for (int i = 1; i <= 3; i++)
        lua_pushvalue(L, i);
    struct pubq *p = lua_pcall(L, 4, 0, 0) == LUA_OK ? calloc(1, sizeof(*p)) : NULL;
    if (!p) {
        msgpack_sbuffer_destroy(&sb);
        if (lua_gettop(L) == 3)
            lua_pushliteral(L, "not enough memory");
        return lua_error(L);
    }
    p->from = sc->cur;
    memcpy(p->topic, topic, tl);
    p->tl = tl;
    p->len = sb.size;
    p->map = msgpack_sbuffer_release(&sb);
    struct pubq **pp = &sc->pending;
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
    sc->call_pubs++;
    return 0;
}

static int json_push(lua_State *L, json_t *j, int depth)
{
    const char *k;
    json_t *v;
    size_t i;
    if (depth > DECODE_DEPTH)
        return luaL_error(L, "hub.json.decode: nested deeper than %d", DECODE_DEPTH);
    luaL_checkstack(L, 4, "decode");
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        lua_createtable(L, 0, (int)json_object_size(j));
        json_object_foreach(j, k, v) {
            json_push(L, v, depth + 1);
            lua_setfield(L, -2, k);
        }
        break;
    case JSON_ARRAY:
        lua_createtable(L, (int)json_array_size(j), 0);
        json_array_foreach(j, i, v) {
            json_push(L, v, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case JSON_STRING: lua_pushlstring(L, json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER: lua_pushinteger(L, json_integer_value(j)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(j)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    default: lua_pushnil(L); break;
    }
    return 1;
}

/* A C function that may raise a Lua error while holding C memory runs
 * through this: the memory lives in a to-be-closed-free userdata slot. */
static int json_decode_body(lua_State *L)
{
    json_t **jp = lua_touserdata(L, 1);
    return json_push(L, *jp, 0);
}

/* hub.json.decode(s) -> value, or nil and the error. */
static int l_json_decode(lua_State *L)
{
    size_t l;
    const char *s = luaL_checklstring(L, 1, &l);
    json_error_t e;
    json_t *j;
    luaL_argcheck(L, l <= DECODE_MAX, 1, "at most 1 MiB");
    if (!(j = json_loadb(s, l, JSON_DECODE_ANY, &e))) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s (line %d)", e.text, e.line);
        return 2;
    }
    lua_pushcfunction(L, json_decode_body);
    lua_pushlightuserdata(L, &j);
    int rc = lua_pcall(L, 1, 1, 0);
    json_decref(j);
    if (rc != LUA_OK)
        return lua_error(L);
    return 1;
}

struct mp_decode {
    msgpack_unpacked u;
};

static int mp_decode_body(lua_State *L)
{
    struct mp_decode *d = lua_touserdata(L, 1);
    return push_obj(L, &d->u.data, 0);
}

/* hub.msgpack.decode(s) -> value, or nil and the error. */
static int l_msgpack_decode(lua_State *L)
{
    size_t l, off = 0;
    const char *s = luaL_checklstring(L, 1, &l);
    struct mp_decode d;
    luaL_argcheck(L, l <= DECODE_MAX, 1, "at most 1 MiB");
    msgpack_unpacked_init(&d.u);
    if (msgpack_unpack_next(&d.u, s, l, &off) != MSGPACK_UNPACK_SUCCESS || off != l) {
        msgpack_unpacked_destroy(&d.u);
        lua_pushnil(L);
        lua_pushliteral(L, "not one MessagePack value");
        return 2;
    }
    lua_pushcfunction(L, mp_decode_body);
    lua_pushlightuserdata(L, &d);
    int rc = lua_pcall(L, 1, 1, 0);
    msgpack_unpacked_destroy(&d.u);
    if (rc != LUA_OK)
        return lua_error(L);
    return 1;
}

static int l_readonly(lua_State *L)
{
    return luaL_error(L, "this table is read-only in scripts");
}

/* ---- the sandbox ---- */

/* Replace the table at the top with a read-only proxy of it. */
static void make_readonly(lua_State *L)
{
    lua_newtable(L);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_readonly);
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

static const luaL_Reg hub_fns[] = {{"now", l_hub_now}, {"block", l_block},
                                   {"publish", l_publish}, {NULL, NULL}};
static const luaL_Reg state_fns[] = {{"get", l_state_get}, {"set", l_state_set},
                                     {"del", l_state_del}, {NULL, NULL}};
static const luaL_Reg window_fns[] = {{"add", l_window_add}, {"sum", l_window_sum},
                                      {"count", l_window_count}, {"rate", l_window_rate},
                                      {NULL, NULL}};

static void add_sub(lua_State *L, const char *name, const char *fn_name, lua_CFunction fn,
                    const luaL_Reg *fns)
{
    lua_newtable(L);
    if (fns)
        luaL_setfuncs(L, fns, 0);
    else {
        lua_pushcfunction(L, fn);
        lua_setfield(L, -2, fn_name);
    }
    make_readonly(L);
    lua_setfield(L, -2, name);
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
    make_readonly(L);
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
    make_readonly(L);
    lua_setfield(L, -2, "table");
    lib_into(L, "math", luaopen_math);
    drop_fields(L, math_drop);
    lua_pushcfunction(L, l_random);
    lua_setfield(L, -2, "random");
    make_readonly(L);
    lua_setfield(L, -2, "math");
    lib_into(L, "utf8", luaopen_utf8);
    make_readonly(L);
    lua_setfield(L, -2, "utf8");
    lib_into(L, "coroutine", luaopen_coroutine);
    wrap_field(L, "resume", l_guard, -1);
    wrap_field(L, "close", l_guard, -1);
    make_readonly(L);
    lua_setfield(L, -2, "coroutine");
}

static void setup_hub(lua_State *L)
{
    lua_newtable(L);
    luaL_setfuncs(L, hub_fns, 0);
    add_sub(L, "state", NULL, NULL, state_fns);
    add_sub(L, "window", NULL, NULL, window_fns);
    add_sub(L, "json", "decode", l_json_decode, NULL);
    add_sub(L, "msgpack", "decode", l_msgpack_decode, NULL);
    make_readonly(L);
    lua_setfield(L, -2, "hub");
}

static int setup_sandbox(scripts_t *sc)
{
    static const char *const base_keep[] = {"assert", "error", "ipairs", "select", "tonumber",
                                            "type", "rawequal", "rawlen", "rawget",
                                            "getmetatable", "_VERSION", NULL};
    lua_State *L = sc->L;
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
    lua_pushcfunction(L, l_pairs);
    lua_setfield(L, -2, "pairs");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "tostring");
    setup_libs(sc, L);
    setup_hub(L);
    lua_createtable(L, 0, 2); /* the environments' metatable */
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    sc->envmeta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    lua_createtable(L, 0, 3); /* msg views */
    lua_pushcfunction(L, l_msg_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_readonly);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    sc->msgmeta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    return 0;
}

/* ---- calling Lua ---- */

/* Message handler: a deterministic message (never an address), the
 * traceback kept for the log. */
static int l_msgh(lua_State *L)
{
    scripts_t *sc = host(L);
    if (lua_type(L, 1) != LUA_TSTRING)
        lua_pushfstring(L, "error object is a %s value", luaL_typename(L, 1));
    else
        lua_pushvalue(L, 1);
    luaL_traceback(L, L, lua_tostring(L, -1), 1);
    snprintf(sc->trace, sizeof(sc->trace), "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
}

/* Run the function below @nargs arguments at the top under the limits,
 * with the message handler; 0 with @nres results left on the stack, or
 * MQHUB_ESCRIPT_ERROR with the message in @err (stack restored). */
static int pcall_limited(scripts_t *sc, int nargs, int nres, char *err, size_t errlen)
{
    lua_State *L = sc->L;
    int fn = lua_gettop(L) - nargs;
    lua_pushcfunction(L, l_msgh);
    lua_insert(L, fn);
    sc->steps = 0;
    sc->call_alloc = 0;
    sc->abort = ABORT_NONE;
    sc->in_call = true;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY); /* resets the count */
    int rc = lua_pcall(L, nargs, nres, fn);
    sc->in_call = false;
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

/* The script's instance of this generation: its chunk run once in a fresh
 * environment. Globals and upvalues live as long as the instance (one
 * entry), so no Lua memory carries state from one entry to the next. */
static int instance(scripts_t *sc, sentry_t *e, char *err, size_t errlen)
{
    lua_State *L = sc->L;
    if (e->inst_gen == sc->gen) {
        if (!e->inst_err[0])
            return 0;
        snprintf(err, errlen, "%s", e->inst_err);
        return MQHUB_ESCRIPT_ERROR;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, e->env_ref);
    sc->cur = e;
    e->env_ref = LUA_NOREF;
    e->inst_gen = sc->gen;
    e->inst_err[0] = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->fn_ref);
    lua_newtable(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, sc->envmeta_ref);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    e->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_setupvalue(L, -2, 1);
    bool writes = sc->writes;
    sc->writes = false;
    int rc = pcall_limited(sc, 0, 0, e->inst_err, sizeof(e->inst_err));
    sc->writes = writes;
    if (rc)
        snprintf(err, errlen, "%s", e->inst_err);
    return rc;
}

static void note_error(scripts_t *sc, sentry_t *e, const char *err)
{
    bool same = strcmp(e->s.last_error, err) == 0;
    e->s.errors++;
    snprintf(e->s.last_error, sizeof(e->s.last_error), "%.*s", ERR_LEN - 1, err);
    e->s.last_error_at = sc->now;
    e->dirty = true;
    if (!same || (e->s.errors & (e->s.errors - 1)) == 0) /* new, or 1, 2, 4, 8... */
        log_warn("script", "script=%s errors=%llu error=\"%s\"", e->name,
                 (unsigned long long)e->s.errors, err);
    log_debug("script", "script=%s trace=\"%s\"", e->name, sc->trace);
}

/* Call @fname(msg) of @e: 0 with @nres results on the stack, or
 * MQHUB_ESCRIPT_ERROR (counted unless testing). */
static int call(scripts_t *sc, sentry_t *e, const char *fname, const fsm_push_msg_t *m,
                int nres, char *err, size_t errlen)
{
    lua_State *L = sc->L;
    int rc;
    sc->cur = e;
    sc->msg = m;
    sc->call_gen++;
    sc->call_pubs = sc->call_blocks = 0;
    sc->rng = hash_bytes(hash_bytes(sc->now ^ (m->seq * 0x9E3779B97F4A7C15ULL), e->name,
                                    e->nlen), m->msg_id, m->msg_id_len);
    if (!sc->testing) {
        e->s.calls++;
        e->dirty = true;
    }
    if ((rc = instance(sc, e, err, errlen)) == 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->env_ref);
        lua_getfield(L, -1, fname);
        lua_remove(L, -2);
        if (lua_type(L, -1) != LUA_TFUNCTION) {
            lua_pop(L, 1);
            snprintf(err, errlen, "script '%s' defines no %s(msg) function", e->name, fname);
            rc = MQHUB_ESCRIPT_ERROR;
        } else {
            push_msg(sc);
            rc = pcall_limited(sc, 1, nres, err, errlen);
        }
    }
    sc->msg = NULL;
    if (rc) {
        discard(sc);
        if (!sc->testing)
            note_error(sc, e, err);
    }
    return rc;
}

/* ---- scripts in memory ---- */

static sentry_t *sentry_find(scripts_t *sc, const char *name, size_t len)
{
    for (sentry_t *e = sc->list; e; e = e->next)
        if (e->nlen == len && memcmp(e->name, name, len) == 0)
            return e;
    return NULL;
}

static void sentry_link(scripts_t *sc, sentry_t *e)
{
    sentry_t **pp = &sc->list;
    while (*pp && strcmp((*pp)->name, e->name) < 0)
        pp = &(*pp)->next;
    e->next = *pp;
    *pp = e;
}

static void sentry_free(scripts_t *sc, sentry_t *e)
{
    luaL_unref(sc->L, LUA_REGISTRYINDEX, e->fn_ref);
    luaL_unref(sc->L, LUA_REGISTRYINDEX, e->env_ref);
    free(e);
}

static void sentry_unlink(scripts_t *sc, sentry_t *e)
{
    sentry_t **pp = &sc->list;
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    sentry_free(sc, e);
}

/* Compile @src; the chunk is left on the stack. */
static int compile(scripts_t *sc, const char *name, const char *src, size_t len, char *err,
                   size_t errlen)
{
    char chunk[NAME_MAX_LEN + 2];
    snprintf(chunk, sizeof(chunk), "=%s", name);
    sc->in_call = false;
    if (luaL_loadbufferx(sc->L, src, len, chunk, "t") == LUA_OK)
        return 0;
    snprintf(err, errlen, "%s", lua_tostring(sc->L, -1));
    lua_pop(sc->L, 1);
    return MQHUB_ESCRIPT_ERROR;
}

static void stats_key(char *k, const sentry_t *e)
{
    k[0] = 'J';
    memcpy(k + 1, e->name, e->nlen);
}

static void stats_save(scripts_t *sc, sentry_t *e)
{
    char k[1 + NAME_MAX_LEN];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    const struct sstat *s = &e->s;
    uint64_t nums[] = {s->calls, s->errors, s->refused, s->blocks, s->publishes,
                       s->last_error_at};
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 7);
    for (int i = 0; i < 6; i++)
        msgpack_pack_uint64(&pk, nums[i]);
    fsm_pack_str(&pk, s->last_error, strlen(s->last_error));
    stats_key(k, e);
    store_write(sc, k, 1 + e->nlen, sb.data, sb.size, false);
    msgpack_sbuffer_destroy(&sb);
    e->dirty = false;
}

static void stats_load(scripts_t *sc, sentry_t *e)
{
    char k[1 + NAME_MAX_LEN];
    size_t vl;
    msgpack_unpacked u;
    stats_key(k, e);
    void *v = store_get(sc->st, k, 1 + e->nlen, &vl);
    msgpack_unpacked_init(&u);
    if (v && msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 7) {
        const msgpack_object *o = u.data.via.array.ptr;
        e->s = (struct sstat){o[0].via.u64, o[1].via.u64, o[2].via.u64, o[3].via.u64,
                              o[4].via.u64, o[5].via.u64, ""};
        if (o[6].type == MSGPACK_OBJECT_STR)
            snprintf(e->s.last_error, sizeof(e->s.last_error), "%.*s",
                     (int)o[6].via.str.size, o[6].via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
    store_free(v);
}

/* A script record [version, source] -> a compiled entry. */
static int rebuild_script(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    scripts_t *sc = arg;
    msgpack_unpacked u;
    char err[ERR_LEN];
    sentry_t *e = calloc(1, sizeof(*e));
    int rc = -1;
    msgpack_unpacked_init(&u);
    if (e && kl >= 2 && kl <= 1 + NAME_MAX_LEN &&
        msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 2 &&
        u.data.via.array.ptr[1].type == MSGPACK_OBJECT_STR) {
        memcpy(e->name, k + 1, kl - 1);
        e->nlen = kl - 1;
        e->version = u.data.via.array.ptr[0].via.u64;
        e->env_ref = LUA_NOREF;
        const msgpack_object_str *src = &u.data.via.array.ptr[1].via.str;
        if (compile(sc, e->name, src->ptr, src->size, err, sizeof(err)) == 0) {
            e->fn_ref = luaL_ref(sc->L, LUA_REGISTRYINDEX);
            stats_load(sc, e);
            sentry_link(sc, e);
            rc = 0;
        }
    }
    msgpack_unpacked_destroy(&u);
    if (rc) {
        free(e);
        log_error("script", "corrupt script record '%.*s'", (int)kl, k);
    }
    return 0;
}

static int rebuild_hook(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    scripts_t *sc = arg;
    char *name = strndup(v, vl);
    if (!name || hmap_put(&sc->hooks, k + 1, kl - 1, name) != 0)
        free(name);
    return 0;
}

static int count_block(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    ((scripts_t *)arg)->n_blocks++;
    return 0;
}

static void free_hooks(scripts_t *sc)
{
    for (size_t i = 0; i < sc->hooks.cap; i++)
        if (sc->hooks.slots[i].key)
            free(sc->hooks.slots[i].val);
    hmap_free(&sc->hooks);
    hmap_init(&sc->hooks);
}

int script_rebuild(scripts_t *sc)
{
    while (sc->list)
        sentry_unlink(sc, sc->list);
    free_hooks(sc);
    sc->n_blocks = 0;
    store_scan(sc->st, "X", 1, NULL, 0, rebuild_script, sc);
    store_scan(sc->st, "H", 1, NULL, 0, rebuild_hook, sc);
    store_scan(sc->st, "K", 1, NULL, 0, count_block, sc);
    return 0;
}

/* ---- the slots in topic.c and queue.c ---- */

static sentry_t *hook_script(scripts_t *sc, char kind, const char *name, size_t len)
{
    char k[1 + NAME_MAX_LEN];
    if (len > NAME_MAX_LEN)
        return NULL;
    k[0] = kind;
    memcpy(k + 1, name, len);
    const char *s = hmap_get(&sc->hooks, k, 1 + len);
    return s ? sentry_find(sc, s, strlen(s)) : NULL;
}

/* The block record matching one of @attrs, decoded: until > now. */
static bool blocked(scripts_t *sc, const msgpack_object *attrs, char *why, size_t whylen)
{
    char k[2 + BLOCK_ATTR_MAX + BLOCK_VALUE_MAX];
    if (!attrs || attrs->type != MSGPACK_OBJECT_MAP || (sc->n_blocks == 0 && !sc->testing))
        return false;
    /* A backtest sees only the blocks it made itself. */
    for (uint32_t i = 0; i < attrs->via.map.size; i++) {
        const msgpack_object_str *a = &attrs->via.map.ptr[i].key.via.str;
        const msgpack_object_str *v = &attrs->via.map.ptr[i].val.via.str;
        size_t kl = key2(k, sizeof(k), 'K', a->ptr, a->size, v->ptr, v->size), vl;
        struct ov *o = sc->testing && kl ? hmap_get(&sc->test_ov, k, kl) : NULL;
        char *rec = NULL;
        if (kl && a->size <= BLOCK_ATTR_MAX && !sc->testing)
            rec = sget(sc, k, kl, &vl);
        else if (o && !o->del && (rec = malloc(o->vl + 1)))
            memcpy(rec, o->v, vl = o->vl);
        msgpack_unpacked u;
        bool hit = false;
        msgpack_unpacked_init(&u);
        if (rec && msgpack_unpack_next(&u, rec, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
            u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 3 &&
            u.data.via.array.ptr[0].via.u64 > sc->now) {
            const msgpack_object *r = u.data.via.array.ptr;
            hit = true;
            snprintf(why, whylen, "%.*s=%.*s is blocked until %llu by script '%.*s': %.*s",
                     (int)a->size, a->ptr, (int)(v->size > 128 ? 128 : v->size), v->ptr,
                     (unsigned long long)r[0].via.u64, (int)r[2].via.str.size, r[2].via.str.ptr,
                     (int)r[1].via.str.size, r[1].via.str.ptr);
        }
        msgpack_unpacked_destroy(&u);
        free(rec);
        if (hit)
            return true;
    }
    return false;
}

/* Run @e's on_message(msg): 0 to accept, MQHUB_EBLOCKED with the reason
 * in @err, or MQHUB_ESCRIPT_ERROR (counted; the caller accepts). */
static int run_hook(scripts_t *sc, sentry_t *e, const fsm_push_msg_t *m, char *err,
                    size_t errlen)
{
    int rc;
    sc->writes = true;
    rc = call(sc, e, "on_message", m, 2, err, errlen);
    sc->writes = false;
    if (rc)
        return rc;
    lua_State *L = sc->L;
    bool refuse = lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2);
    if (refuse) {
        const char *why = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        snprintf(err, errlen, "refused by hook '%s': %s", e->name, why ? why : "no reason given");
        if (!sc->testing) {
            e->s.refused++;
            e->dirty = true;
        }
    }
    lua_pop(L, 2);
    commit(sc);
    return refuse ? MQHUB_EBLOCKED : 0;
}

static int gate(void *arg, fsm_cmd_t *c, bool is_queue, const char *name, size_t len,
                const fsm_push_msg_t *m)
{
    scripts_t *sc = arg;
    sentry_t *e;
    if (blocked(sc, m->attrs, c->err, sizeof(c->err)))
        return MQHUB_EBLOCKED;
    if (!(e = hook_script(sc, is_queue ? 'q' : 't', name, len)))
        return 0;
    sc->msg_queue = is_queue;
    sc->dest = name;
    sc->destlen = len;
    int rc = run_hook(sc, e, m, c->err, sizeof(c->err));
    sc->dest = NULL;
    return rc == MQHUB_EBLOCKED ? rc : 0;
}

static const char *hook_name_cb(void *arg, bool is_queue, const char *name, size_t len)
{
    char k[1 + NAME_MAX_LEN];
    if (len > NAME_MAX_LEN)
        return NULL;
    k[0] = is_queue ? 'q' : 't';
    memcpy(k + 1, name, len);
    return hmap_get(&((scripts_t *)arg)->hooks, k, 1 + len);
}

static bool exists_cb(void *arg, const char *name, size_t len)
{
    return sentry_find(arg, name, len) != NULL;
}

static int filter_cb(void *arg, const char *name, size_t len, const fsm_push_msg_t *m,
                     bool *match, char *err, size_t errlen)
{
    scripts_t *sc = arg;
    sentry_t *e = sentry_find(sc, name, len);
    if (!e) {
        snprintf(err, errlen, "script '%.*s' does not exist", (int)len, name);
        return MQHUB_ENOT_FOUND;
    }
    sc->msg_queue = false;
    int rc = call(sc, e, "filter", m, 1, err, errlen);
    if (rc)
        return rc;
    *match = lua_toboolean(sc->L, -1);
    lua_pop(sc->L, 1);
    return 0;
}

/* ---- lifecycle ---- */

int script_state_new(scripts_t **out, store_t *st, queues_t *qs, topics_t *ts)
{
    scripts_t *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return MQHUB_EINTERNAL;
    sc->st = st;
    sc->qs = qs;
    sc->ts = ts;
    hmap_init(&sc->hooks);
    hmap_init(&sc->call_ov);
    hmap_init(&sc->test_ov);
    sc->outbox_tail = &sc->outbox;
    if (!(sc->L = lua_newstate(l_alloc, sc))) {
        free(sc);
        return MQHUB_EINTERNAL;
    }
    *(scripts_t **)lua_getextraspace(sc->L) = sc;
    setup_sandbox(sc);
    queue_set_gate(qs, gate, hook_name_cb, sc);
    topic_set_script_hooks(ts, &(topic_script_hooks_t){.exists = exists_cb, .filter = filter_cb,
                                                       .arg = sc, .gate = gate,
                                                       .hook_name = hook_name_cb});
    *out = sc;
    return 0;
}

void script_state_free(scripts_t *sc)
{
    if (!sc)
        return;
    while (sc->list)
        sentry_unlink(sc, sc->list);
    free_hooks(sc);
    hmap_free(&sc->hooks);
    ov_clear(&sc->call_ov);
    hmap_free(&sc->call_ov);
    hmap_free(&sc->test_ov);
    pubq_free(sc->outbox);
    lua_close(sc->L);
    free(sc);
}

void script_begin(scripts_t *sc, uint64_t now)
{
    sc->now = now;
    sc->gen++;
    sc->failed = false;
}

int script_end(scripts_t *sc)
{
    for (sentry_t *e = sc->list; e; e = e->next)
        if (e->dirty)
            stats_save(sc, e);
    return sc->failed ? MQHUB_EINTERNAL : 0;
}

void script_after_cmd(scripts_t *sc, fsm_cmd_t *c)
{
    struct pubq *p = sc->outbox;
    sc->outbox = NULL;
    sc->outbox_tail = &sc->outbox;
    for (struct pubq *q = p; q; q = q->next) {
        msgpack_unpacked u;
        fsm_cmd_t pc = {.now = c->now};
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, q->map, q->len, NULL) == MSGPACK_UNPACK_SUCCESS) {
            pc.req = &u.data;
            if (topic_publish_internal(sc->ts, &pc, q->topic, q->tl, &u.data) != 0)
                note_error(sc, q->from, pc.err);
        }
        msgpack_unpacked_destroy(&u);
    }
    pubq_free(p);
}

/* ---- ops ---- */

static void hook_bind(scripts_t *sc, char kind, const char *name, size_t len,
                      const char *script, size_t sl)
{
    char k[2 + NAME_MAX_LEN];
    k[0] = 'H';
    k[1] = kind;
    memcpy(k + 2, name, len);
    free(hmap_del(&sc->hooks, k + 1, 1 + len));
    if (!script) {
        store_write(sc, k, 2 + len, NULL, 0, true);
        return;
    }
    store_write(sc, k, 2 + len, script, sl, false);
    char *dup = strndup(script, sl);
    if (!dup || hmap_put(&sc->hooks, k + 1, 1 + len, dup) != 0) {
        free(dup);
        sc->failed = true;
    }
}

int script_hook_op(scripts_t *sc, fsm_cmd_t *c, char kind, const char *op, bool after)
{
    const char *name, *hs = NULL;
    const msgpack_object *attrs = fsm_arg(c->req, "attrs"), *hook = NULL;
    size_t len, hl = 0;
    bool del = strcmp(strrchr(op, '.'), ".delete") == 0;
    if (fsm_arg_str(c, c->req, "name", true, &name, &len) != 0 || len > NAME_MAX_LEN)
        return 0; /* the handler reports it */
    if (del) {
        if (after)
            hook_bind(sc, kind, name, len, NULL, 0);
        return 0;
    }
    if (attrs && attrs->type == MSGPACK_OBJECT_MAP)
        hook = fsm_arg(attrs, "hook");
    if (!hook)
        return 0;
    if (hook->type == MSGPACK_OBJECT_STR && hook->via.str.size > 0) {
        hs = hook->via.str.ptr;
        hl = hook->via.str.size;
    } else if (hook->type == MSGPACK_OBJECT_STR) {
        hs = NULL; /* "" detaches, like nil */
    } else if (hook->type != MSGPACK_OBJECT_NIL) {
        return fsm_fail(c, MQHUB_EBAD_REQUEST, "field 'hook' must be a script name (or nil)");
    }
    if (!after)
        return !hs || sentry_find(sc, hs, hl)
                   ? 0
                   : fsm_fail(c, MQHUB_ENOT_FOUND,
                              "script '%.*s' does not exist (load it with script.load)",
                              (int)(hl > 64 ? 64 : hl), hs);
    hook_bind(sc, kind, name, len, hs, hl);
    return 0;
}

static int arg_script(scripts_t *sc, fsm_cmd_t *c, sentry_t **out)
{
    const char *name;
    size_t len;
    int rc = fsm_arg_name(c, c->req, "name", &name, &len);
    if (rc)
        return rc;
    if (!(*out = sentry_find(sc, name, len)))
        return fsm_fail(c, MQHUB_ENOT_FOUND,
                        "script '%.*s' does not exist; load it with script.load", (int)len, name);
    return 0;
}

/* Compile @src and run its chunk once in a scratch environment: it must
 * define filter(msg) or on_message(msg). The chunk stays on the stack. */
static int validate(scripts_t *sc, const char *name, const char *src, size_t sl, char *err,
                    size_t errlen)
{
    sentry_t tmp = {.env_ref = LUA_NOREF, .inst_gen = 0};
    int rc;
    snprintf(tmp.name, sizeof(tmp.name), "%s", name);
    tmp.nlen = strlen(tmp.name);
    if ((rc = compile(sc, name, src, sl, err, errlen)))
        return rc;
    lua_pushvalue(sc->L, -1);
    tmp.fn_ref = luaL_ref(sc->L, LUA_REGISTRYINDEX);
    sc->cur = &tmp;
    rc = instance(sc, &tmp, err, errlen);
    if (rc == 0) {
        int top = lua_gettop(sc->L);
        lua_rawgeti(sc->L, LUA_REGISTRYINDEX, tmp.env_ref);
        bool ok = lua_getfield(sc->L, top + 1, "filter") == LUA_TFUNCTION ||
                  lua_getfield(sc->L, top + 1, "on_message") == LUA_TFUNCTION;
        lua_settop(sc->L, top);
        if (!ok) {
            snprintf(err, errlen, "script '%s' defines neither filter(msg) nor on_message(msg)",
                     name);
            rc = MQHUB_ESCRIPT_ERROR;
        }
    }
    sc->cur = NULL;
    luaL_unref(sc->L, LUA_REGISTRYINDEX, tmp.fn_ref);
    luaL_unref(sc->L, LUA_REGISTRYINDEX, tmp.env_ref);
    if (rc)
        lua_pop(sc->L, 1);
    return rc;
}

int script_op_load(scripts_t *sc, fsm_cmd_t *c)
{
    const char *name, *src;
    size_t len, sl;
    char err[ERR_LEN], k[1 + NAME_MAX_LEN];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rc;
    if ((rc = fsm_arg_name(c, c->req, "name", &name, &len)) ||
        (rc = fsm_arg_str(c, c->req, "source", true, &src, &sl)))
        return rc;
    if (sl > SOURCE_MAX)
        return fsm_fail(c, MQHUB_ETOO_LARGE, "field 'source' has %zu bytes, at most %d allowed",
                        sl, SOURCE_MAX);
    snprintf(k, sizeof(k), "%.*s", (int)len, name);
    if ((rc = validate(sc, k, src, sl, err, sizeof(err))))
        return fsm_fail(c, rc, "%s", err);
    sentry_t *e = sentry_find(sc, name, len);
    if (!e && !(e = calloc(1, sizeof(*e)))) {
        lua_pop(sc->L, 1);
        return fsm_fail(c, MQHUB_EINTERNAL, "out of memory");
    }
    if (e->nlen) {
        luaL_unref(sc->L, LUA_REGISTRYINDEX, e->fn_ref);
    } else {
        memcpy(e->name, name, len);
        e->nlen = len;
        e->env_ref = LUA_NOREF;
        sentry_link(sc, e);
    }
    e->fn_ref = luaL_ref(sc->L, LUA_REGISTRYINDEX);
    e->version++;
    e->inst_gen = 0; /* the next call instantiates the new version */
    e->s = (struct sstat){0};
    e->dirty = true;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, e->version);
    fsm_pack_str(&pk, src, sl);
    k[0] = 'X';
    memcpy(k + 1, name, len);
    store_write(sc, k, 1 + len, sb.data, sb.size, false);
    msgpack_sbuffer_destroy(&sb);
    fsm_reply_key(c, "version");
    if (c->pk)
        msgpack_pack_uint64(c->pk, e->version);
    return 0;
}

/* Users of a script: hooks (from the store, in key order) and filters. */
struct users {
    const char *name;
    size_t len;
    char list[1024];
    unsigned n;
    msgpack_packer *pk; /* pack them as an array instead (after counting) */
};

static void user_add(void *arg, const char *user)
{
    struct users *u = arg;
    size_t l = strlen(u->list);
    if (u->pk)
        fsm_pack_str(u->pk, user, strlen(user));
    else
        snprintf(u->list + l, sizeof(u->list) - l, "%s%s", u->n ? ", " : "", user);
    u->n++;
}

static int hook_user(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct users *u = arg;
    char user[8 + NAME_MAX_LEN];
    if (vl == u->len && memcmp(v, u->name, vl) == 0 && kl > 2) {
        snprintf(user, sizeof(user), "%s:%.*s", k[1] == 'q' ? "queue" : "topic",
                 (int)(kl - 2), k + 2);
        user_add(u, user);
    }
    return 0;
}

static void subscription_user(void *arg, const char *user)
{
    char s[16 + 2 * NAME_MAX_LEN];
    snprintf(s, sizeof(s), "subscription:%s", user);
    user_add(arg, s);
}

static void users_visit(scripts_t *sc, struct users *u)
{
    store_scan(sc->st, "H", 1, NULL, 0, hook_user, u);
    topic_script_users(sc->ts, u->name, u->len, subscription_user, u);
}

static void pack_stats(msgpack_packer *pk, const struct sstat *s)
{
    static const char *const names[] = {"calls", "errors", "refused", "blocks", "publishes",
                                        "last_error_at"};
    uint64_t nums[] = {s->calls, s->errors, s->refused, s->blocks, s->publishes,
                       s->last_error_at};
    msgpack_pack_map(pk, 7);
    for (int i = 0; i < 6; i++) {
        fsm_pack_str(pk, names[i], strlen(names[i]));
        msgpack_pack_uint64(pk, nums[i]);
    }
    fsm_pack_str(pk, "last_error", 10);
    fsm_pack_str(pk, s->last_error, strlen(s->last_error));
}

int script_op_get(scripts_t *sc, fsm_cmd_t *c)
{
    sentry_t *e;
    char k[1 + NAME_MAX_LEN];
    size_t vl;
    msgpack_unpacked u;
    int rc = arg_script(sc, c, &e);
    if (rc || !c->pk)
        return rc;
    k[0] = 'X';
    memcpy(k + 1, e->name, e->nlen);
    void *v = store_get(sc->st, k, 1 + e->nlen, &vl);
    msgpack_unpacked_init(&u);
    fsm_reply_key(c, "name");
    fsm_pack_str(c->pk, e->name, e->nlen);
    fsm_reply_key(c, "version");
    msgpack_pack_uint64(c->pk, e->version);
    fsm_reply_key(c, "source");
    if (v && msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 2)
        msgpack_pack_object(c->pk, u.data.via.array.ptr[1]);
    else
        msgpack_pack_nil(c->pk);
    msgpack_unpacked_destroy(&u);
    store_free(v);
    fsm_reply_key(c, "stats");
    pack_stats(c->pk, &e->s);
    struct users us = {.name = e->name, .len = e->nlen};
    users_visit(sc, &us);
    fsm_reply_key(c, "users");
    msgpack_pack_array(c->pk, us.n);
    us = (struct users){.name = e->name, .len = e->nlen, .pk = c->pk};
    users_visit(sc, &us);
    return 0;
}

int script_op_list(scripts_t *sc, fsm_cmd_t *c)
{
    uint32_t n = 0;
    if (!c->pk)
        return 0;
    for (sentry_t *e = sc->list; e; e = e->next)
        n++;
    fsm_reply_key(c, "scripts");
    msgpack_pack_array(c->pk, n);
    for (sentry_t *e = sc->list; e; e = e->next) {
        msgpack_pack_map(c->pk, 4);
        fsm_pack_str(c->pk, "name", 4);
        fsm_pack_str(c->pk, e->name, e->nlen);
        fsm_pack_str(c->pk, "version", 7);
        msgpack_pack_uint64(c->pk, e->version);
        fsm_pack_str(c->pk, "calls", 5);
        msgpack_pack_uint64(c->pk, e->s.calls);
        fsm_pack_str(c->pk, "errors", 6);
        msgpack_pack_uint64(c->pk, e->s.errors);
    }
    return 0;
}

/* Refused with FORBIDDEN while a hook or a subscription uses the script:
 * deleting it would silently change what those deliver. */
int script_op_delete(scripts_t *sc, fsm_cmd_t *c)
{
    sentry_t *e;
    char k[2 + NAME_MAX_LEN];
    int rc = arg_script(sc, c, &e);
    if (rc)
        return rc;
    struct users us = {.name = e->name, .len = e->nlen};
    users_visit(sc, &us);
    if (us.n)
        return fsm_fail(c, MQHUB_EFORBIDDEN, "script '%s' is in use by %s; detach it first",
                        e->name, us.list);
    k[0] = 'X';
    memcpy(k + 1, e->name, e->nlen);
    store_write(sc, k, 1 + e->nlen, NULL, 0, true);
    k[0] = 'J';
    store_write(sc, k, 1 + e->nlen, NULL, 0, true);
    k[0] = 'V';
    k[1 + e->nlen] = 0;
    store_del_prefix(sc->st, k, 2 + e->nlen);
    sentry_unlink(sc, e);
    return 0;
}

/* ---- blocks ---- */

struct block_visit {
    scripts_t *sc;
    msgpack_packer *pk;
    uint32_t n;
};

/* Decode a block record: false when corrupt. */
static bool block_decode(msgpack_unpacked *u, const char *v, size_t vl)
{
    return msgpack_unpack_next(u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
           u->data.type == MSGPACK_OBJECT_ARRAY && u->data.via.array.size == 3 &&
           u->data.via.array.ptr[1].type == MSGPACK_OBJECT_STR &&
           u->data.via.array.ptr[2].type == MSGPACK_OBJECT_STR;
}

static void pack_block(msgpack_packer *pk, const char *k, size_t kl, const msgpack_object *o)
{
    const char *sep = memchr(k + 1, 0, kl - 1);
    size_t al = sep ? (size_t)(sep - k - 1) : kl - 1;
    msgpack_pack_map(pk, 5);
    fsm_pack_str(pk, "attr", 4);
    fsm_pack_str(pk, k + 1, al);
    fsm_pack_str(pk, "value", 5);
    fsm_pack_str(pk, sep ? sep + 1 : "", sep ? kl - al - 2 : 0);
    fsm_pack_str(pk, "reason", 6);
    msgpack_pack_object(pk, o[1]);
    fsm_pack_str(pk, "until", 5);
    msgpack_pack_uint64(pk, o[0].via.u64);
    fsm_pack_str(pk, "script", 6);
    msgpack_pack_object(pk, o[2]);
}

static int block_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct block_visit *b = arg;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (block_decode(&u, v, vl) && u.data.via.array.ptr[0].via.u64 > b->sc->now) {
        if (b->pk)
            pack_block(b->pk, k, kl, u.data.via.array.ptr);
        b->n++;
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}

int script_op_block_list(scripts_t *sc, fsm_cmd_t *c)
{
    struct block_visit b = {.sc = sc};
    if (!c->pk)
        return 0;
    store_scan(sc->st, "K", 1, NULL, 0, block_visit, &b);
    fsm_reply_key(c, "blocks");
    msgpack_pack_array(c->pk, b.n);
    b = (struct block_visit){.sc = sc, .pk = c->pk};
    store_scan(sc->st, "K", 1, NULL, 0, block_visit, &b);
    return 0;
}

int script_op_block_delete(scripts_t *sc, fsm_cmd_t *c)
{
    const char *attr, *value;
    size_t al, vl, ol;
    char k[2 + BLOCK_ATTR_MAX + BLOCK_VALUE_MAX];
    int rc;
    if ((rc = fsm_arg_str(c, c->req, "attr", true, &attr, &al)) ||
        (rc = fsm_arg_str(c, c->req, "value", true, &value, &vl)))
        return rc;
    size_t kl = key2(k, sizeof(k), 'K', attr, al, value, vl);
    void *old = kl ? store_get(sc->st, k, kl, &ol) : NULL;
    store_free(old);
    if (!old)
        return fsm_fail(c, MQHUB_ENOT_FOUND, "no block on %.*s=%.*s", (int)(al > 64 ? 64 : al),
                        attr, (int)(vl > 64 ? 64 : vl), value);
    store_write(sc, k, kl, NULL, 0, true);
    return 0;
}

/* ---- tick: expired blocks, idle windows ---- */

struct expired {
    scripts_t *sc;
    char **keys;
    size_t *lens;
    size_t n, cap;
};

static int expired_add(struct expired *x, const char *k, size_t kl)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        char **nk = realloc(x->keys, cap * sizeof(*nk));
        if (nk)
            x->keys = nk;
        size_t *nl = nk ? realloc(x->lens, cap * sizeof(*nl)) : NULL;
        if (!nl)
            return 1;
        x->lens = nl;
        x->cap = cap;
    }
    if (!(x->keys[x->n] = malloc(kl)))
        return 1;
    memcpy(x->keys[x->n], k, kl);
    x->lens[x->n++] = kl;
    return x->n >= TICK_BUDGET;
}

static int expired_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct expired *x = arg;
    uint64_t now = x->sc->now;
    if (k[0] == 'K') {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        bool gone = !block_decode(&u, v, vl) || u.data.via.array.ptr[0].via.u64 <= now;
        msgpack_unpacked_destroy(&u);
        return gone ? expired_add(x, k, kl) : 0;
    }
    struct win w;
    if (!win_decode(v, vl, &w))
        return expired_add(x, k, kl);
    win_trim(&w, now);
    return w.n == 0 ? expired_add(x, k, kl) : 0;
}

int script_op_tick(scripts_t *sc, fsm_cmd_t *c)
{
    struct expired x = {.sc = sc};
    store_scan(sc->st, "K", 1, NULL, 0, expired_visit, &x);
    if (x.n < TICK_BUDGET)
        store_scan(sc->st, "Y", 1, NULL, 0, expired_visit, &x);
    for (size_t i = 0; i < x.n; i++) {
        store_write(sc, x.keys[i], x.lens[i], NULL, 0, true);
        free(x.keys[i]);
    }
    free(x.keys);
    free(x.lens);
    return 0;
}

/* ---- script.test: a backtest over retained messages ---- */

struct test {
    scripts_t *sc;
    sentry_t *e;
    bool hook;
    uint64_t messages, calls, errors, refused, matched;
};

static int test_visit(void *arg, const fsm_push_msg_t *m)
{
    struct test *t = arg;
    scripts_t *sc = t->sc;
    char err[320];
    if (t->messages++ >= TEST_MAX)
        return 1;
    sc->now = m->published_at;
    sc->gen++; /* a fresh instance per message */
    sc->dest = m->topic;
    sc->destlen = m->topic_len;
    sc->msg_queue = false;
    if (t->hook && blocked(sc, m->attrs, err, sizeof(err))) {
        t->refused++;
        return 0;
    }
    t->calls++;
    int rc = t->hook ? run_hook(sc, t->e, m, err, sizeof(err))
                     : call(sc, t->e, "filter", m, 1, err, sizeof(err));
    if (rc == MQHUB_ESCRIPT_ERROR)
        t->errors++;
    else if (rc == MQHUB_EBLOCKED)
        t->refused++;
    else if (!t->hook && lua_toboolean(sc->L, -1))
        t->matched++;
    if (!t->hook && rc == 0)
        lua_pop(sc->L, 1);
    return 0;
}

static int cmp_slot(const void *a, const void *b)
{
    const hmap_slot_t *x = *(hmap_slot_t *const *)a, *y = *(hmap_slot_t *const *)b;
    int c = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

/* The blocks the backtest made, in key order. */
static void pack_test_blocks(scripts_t *sc, msgpack_packer *pk)
{
    hmap_t *m = &sc->test_ov;
    hmap_slot_t **v = calloc(m->len ? m->len : 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; v && i < m->cap; i++) {
        const struct ov *o = m->slots[i].val;
        if (m->slots[i].key && m->slots[i].key[0] == 'K' && !o->del)
            v[n++] = &m->slots[i];
    }
    qsort(v, n, sizeof(*v), cmp_slot);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        const struct ov *o = v[i]->val;
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (block_decode(&u, o->v, o->vl))
            pack_block(pk, v[i]->key, v[i]->klen, u.data.via.array.ptr);
        else
            msgpack_pack_nil(pk);
        msgpack_unpacked_destroy(&u);
    }
    free(v);
}

/* A read: every write goes to an overlay that is dropped at the end, the
 * counters are not touched, hub.publish is only counted. */
int script_op_test(scripts_t *sc, fsm_cmd_t *c)
{
    const char *topic;
    size_t tl;
    uint64_t since = 0, now = sc->now;
    struct test t = {.sc = sc};
    int rc;
    if ((rc = arg_script(sc, c, &t.e)) ||
        (rc = fsm_arg_name(c, c->req, "topic", &topic, &tl)) ||
        (rc = fsm_arg_uint(c, c->req, "since", 0, UINT64_MAX, &since)))
        return rc;
    if ((rc = instance(sc, t.e, c->err, sizeof(c->err))))
        return rc;
    lua_rawgeti(sc->L, LUA_REGISTRYINDEX, t.e->env_ref);
    t.hook = lua_getfield(sc->L, -1, "on_message") == LUA_TFUNCTION;
    lua_pop(sc->L, 2);
    sc->testing = true;
    sc->test_pubs = 0;
    rc = topic_visit_since(sc->ts, topic, tl, since, test_visit, &t);
    sc->testing = false;
    sc->now = now;
    sc->gen++;
    if (rc == 0 && c->pk) {
        fsm_reply_key(c, "kind");
        fsm_pack_str(c->pk, t.hook ? "hook" : "filter", t.hook ? 4 : 6);
        const char *names[] = {"messages", "calls", "errors", "refused", "matched", "publishes"};
        uint64_t nums[] = {t.messages > TEST_MAX ? TEST_MAX : t.messages, t.calls, t.errors,
                           t.refused, t.matched, sc->test_pubs};
        for (int i = 0; i < 6; i++) {
            fsm_reply_key(c, names[i]);
            msgpack_pack_uint64(c->pk, nums[i]);
        }
        fsm_reply_key(c, "blocks");
        pack_test_blocks(sc, c->pk);
    }
    ov_clear(&sc->test_ov);
    if (rc)
        return fsm_fail(c, rc, "topic '%.*s' does not exist", (int)tl, topic);
    return 0;
}
