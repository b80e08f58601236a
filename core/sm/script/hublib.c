/* hublib.c: what a script sees of the hub — the `hub` library (hub.now,
 * hub.state, hub.window, hub.block, hub.publish, hub.json.decode,
 * hub.msgpack.decode) and `msg`, the read-only view of the message a filter
 * or hook is called with (docs/scripting.md "The message: msg", "The hub
 * API").
 *
 * Where to start: hublib_open() builds the hub table from the luaL_Reg
 * arrays below; l_msg_index() serves every field of msg.
 *
 * Side effects of a hook (hub.state, hub.window, hub.block, hub.publish) go
 * to the call's overlay (script.c) and reach the store only when the call
 * succeeds; reads see the overlay. hub.publish messages wait on the call and
 * are published after the command. Values coming into Lua are decoded with
 * a depth limit; stored values are primitives only.
 *
 * Store keys (docs/architecture.md "Key layout"):
 *   V<script>\0<key>       hub.state value (msgpack nil/bool/int/float/str)
 *   Y<name>\0<key>         hub.window buckets (tick removes idle ones)
 * Blocks (K) are block.c's: hub.block only reads its arguments.
 *
 * To extend the hub API: an l_<module>_<fn> in the luaL_Reg arrays below; a
 * function with side effects must check writes_allowed() and write through
 * script_ov_put()/script_ov_del() so the overlay sees it (a record tick
 * expires, like Y, through script_ov_put_expiring() with its due).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>

#include "script_int.h"

#define DECODE_MAX (1u << 20)         /* hub.json/msgpack input bytes */
#define DECODE_DEPTH 64
#define STATE_KEY_MAX 255
#define STATE_VAL_MAX 65536
#define PUBLISH_MAX 16                /* hub.publish per call */
#define BLOCK_TTL_DEFAULT 300
#define BLOCK_TTL_MAX (30 * 86400)
#define WINDOW_MAX_S (7 * 86400)
#define WINDOW_BUCKETS 30

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
        mp_pack_str(pk, s, l);
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
    scripts_t *sc = script_host(L);
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

void hublib_push_msg(scripts_t *sc)
{
    struct mview *v = lua_newuserdatauv(sc->L, sizeof(*v), 2);
    v->gen = sc->call_gen;
    lua_rawgeti(sc->L, LUA_REGISTRYINDEX, sc->msgmeta_ref);
    lua_setmetatable(sc->L, -2);
}

/* ---- hub.* ---- */

static scripts_t *writes_allowed(lua_State *L, const char *fn)
{
    scripts_t *sc = script_host(L);
    if (!sc->writes)
        luaL_error(L, "%s is available in hooks (on_message) only", fn);
    return sc;
}

static int l_hub_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)script_host(L)->now);
    return 1;
}

static size_t state_key(lua_State *L, char *k, size_t cap)
{
    scripts_t *sc = script_host(L);
    size_t kl;
    const char *key = luaL_checklstring(L, 1, &kl);
    luaL_argcheck(L, kl >= 1 && kl <= STATE_KEY_MAX, 1, "keys are 1-255 bytes");
    return script_key2(k, cap, 'V', sc->cur->name, sc->cur->nlen, key, kl);
}

static int l_state_get(lua_State *L)
{
    char k[2 + MQHUB_NAME_MAX + STATE_KEY_MAX];
    size_t kl = state_key(L, k, sizeof(k)), vl;
    char *v = script_ov_get(script_host(L), k, kl, &vl);
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
    char k[2 + MQHUB_NAME_MAX + STATE_KEY_MAX];
    size_t kl = state_key(L, k, sizeof(k));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    if (lua_isnoneornil(L, 2)) {
        script_ov_del(sc, k, kl);
        return 0;
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (!pack_prim(L, 2, &pk) || sb.size > STATE_VAL_MAX) {
        msgpack_sbuffer_destroy(&sb);
        return luaL_argerror(L, 2, "a boolean, number or string of at most 64 KiB");
    }
    script_ov_put(sc, k, kl, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

static int l_state_del(lua_State *L)
{
    scripts_t *sc = writes_allowed(L, "hub.state.del");
    char k[2 + MQHUB_NAME_MAX + STATE_KEY_MAX];
    script_ov_del(sc, k, state_key(L, k, sizeof(k)));
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
    char *v = script_ov_get(sc, k, kl, &vl);
    bool ok = v && win_decode(v, vl, w);
    free(v);
    return ok;
}

/* When win_trim drops every bucket of @w: once the clock reaches the
 * latest bucket's end (bucket ends computed as win_trim does, wrapping
 * alike). */
static uint64_t win_due(const struct win *w)
{
    uint64_t due = 0;
    for (unsigned i = 0; i < w->n; i++)
        if (w->b[i].start + w->bucket_ms + w->window_ms > due)
            due = w->b[i].start + w->bucket_ms + w->window_ms;
    return due;
}

/* Write @w, which replaces a value of due @read_due (0: none). */
static void win_save(scripts_t *sc, const char *k, size_t kl, const struct win *w,
                     uint64_t read_due)
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
    script_ov_put_expiring(sc, k, kl, sb.data, sb.size, win_due(w), read_due);
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

uint64_t hublib_window_due(const char *v, size_t vl)
{
    struct win w;
    return win_decode(v, vl, &w) ? win_due(&w) : 0;
}

static size_t win_key(lua_State *L, char *k, size_t cap)
{
    size_t nl, kl;
    const char *name = luaL_checklstring(L, 1, &nl);
    const char *key = luaL_checklstring(L, 2, &kl);
    luaL_argcheck(L, nl >= 1 && nl <= MQHUB_NAME_MAX, 1, "window names are 1-64 bytes");
    luaL_argcheck(L, kl <= STATE_KEY_MAX, 2, "keys are at most 255 bytes");
    return script_key2(k, cap, 'Y', name, nl, key, kl);
}

static int l_window_add(lua_State *L)
{
    scripts_t *sc = writes_allowed(L, "hub.window.add");
    char k[2 + MQHUB_NAME_MAX + STATE_KEY_MAX];
    size_t kl = win_key(L, k, sizeof(k));
    double amount = luaL_checknumber(L, 3);
    lua_Integer win_s = luaL_checkinteger(L, 4);
    struct win w;
    uint64_t read_due = 0;
    luaL_argcheck(L, win_s >= 1 && win_s <= WINDOW_MAX_S, 4, "window is 1-604800 s");
    luaL_argcheck(L, isfinite(amount), 3, "amount must be finite");
    if (win_load(sc, k, kl, &w))
        read_due = win_due(&w);
    else
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
    win_save(sc, k, kl, &w, read_due);
    return 0;
}

/* sum, count and rate of a window (0 when it has nothing). */
static int window_read(lua_State *L, int what)
{
    scripts_t *sc = script_host(L);
    char k[2 + MQHUB_NAME_MAX + STATE_KEY_MAX];
    size_t kl = win_key(L, k, sizeof(k));
    struct win w = {0}; /* no record: an empty window (rate 0, the same on every node) */
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
    size_t al, vl, rl;
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
    block_add(sc, attr, al, value, vl, (uint64_t)ttl, reason, rl);
    return 0;
}

/* Pack the string->string table at @idx in sorted key order (the stored
 * bytes must not depend on hash order). */
static void pack_str_map(lua_State *L, int idx, msgpack_packer *pk)
{
    int n = 0, base = lua_gettop(L);
    lua_pushcfunction(L, sandbox_pairs);
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
        mp_pack_str(pk, s, l);
        s = lua_tolstring(L, it + 2 + 2 * i, &l);
        mp_pack_str(pk, s, l);
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
        mp_pack_str(pk, "key", 3);
        mp_pack_str(pk, key, kl);
        (*n)++;
    }
    if (lua_getfield(L, 3, "tags") == LUA_TTABLE) {
        lua_Integer m = (lua_Integer)lua_rawlen(L, -1);
        if (m > 5)
            luaL_error(L, "hub.publish: at most 5 tags");
        mp_pack_str(pk, "tags", 4);
        msgpack_pack_array(pk, (size_t)m);
        for (lua_Integer i = 1; i <= m; i++) {
            size_t l;
            lua_rawgeti(L, -1, i);
            const char *s = lua_tolstring(L, -1, &l);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "tags must be strings");
            mp_pack_str(pk, s, l);
            lua_pop(L, 1);
        }
        (*n)++;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 3, "attrs") == LUA_TTABLE) {
        mp_pack_str(pk, "attrs", 5);
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
    mp_pack_str(&pk, "body", 4);
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
    luaL_argcheck(L, tl >= 1 && tl <= MQHUB_NAME_MAX, 1, "a topic name");
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
    if (mp_unpack(&d.u, s, l, &off) != MSGPACK_UNPACK_SUCCESS || off != l) {
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

/* ---- the hub table ---- */

static const luaL_Reg hub_fns[] = {{"now", l_hub_now}, {"block", l_block},
                                   {"publish", l_publish}, {NULL, NULL}};
static const luaL_Reg state_fns[] = {{"get", l_state_get}, {"set", l_state_set},
                                     {"del", l_state_del}, {NULL, NULL}};
static const luaL_Reg window_fns[] = {{"add", l_window_add}, {"sum", l_window_sum},
                                      {"count", l_window_count}, {"rate", l_window_rate},
                                      {NULL, NULL}};

/* hub.<name>: @fns, or the one function @fn_name; every call metered
 * (sandbox_meter at @kind's rate), @fixed steps on top for those that touch
 * the store. */
static void add_sub(lua_State *L, const char *name, const char *fn_name, lua_CFunction fn,
                    const luaL_Reg *fns, int kind, int fixed)
{
    lua_newtable(L);
    if (fns)
        luaL_setfuncs(L, fns, 0);
    else {
        lua_pushcfunction(L, fn);
        lua_setfield(L, -2, fn_name);
    }
    sandbox_meter(L, kind, fixed);
    sandbox_readonly(L);
    lua_setfield(L, -2, name);
}

void hublib_open(scripts_t *sc)
{
    lua_State *L = sc->L;
    lua_newtable(L);
    luaL_setfuncs(L, hub_fns, 0);
    sandbox_meter(L, METER_PLAIN, STORE_CALL_STEPS);
    add_sub(L, "state", NULL, NULL, state_fns, METER_PLAIN, STORE_CALL_STEPS);
    add_sub(L, "window", NULL, NULL, window_fns, METER_PLAIN, STORE_CALL_STEPS);
    add_sub(L, "json", "decode", l_json_decode, NULL, METER_DECODE, 0);
    add_sub(L, "msgpack", "decode", l_msgpack_decode, NULL, METER_DECODE, 0);
    sandbox_readonly(L);
    lua_setfield(L, -2, "hub");
    lua_createtable(L, 0, 3); /* msg views */
    lua_pushcfunction(L, l_msg_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sandbox_readonly_error);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    sc->msgmeta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
