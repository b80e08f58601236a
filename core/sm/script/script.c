/* script.c: the Lua 5.4 script host (docs/scripting.md, PROTOCOL.md "Scripts
 * and blocks") — the registry of loaded scripts and its glue to the rest of
 * the state machine. Scripts run inside apply, so everything in
 * core/sm/script/ must compute the same result on every node from the same
 * entries. The other files of the folder (map in script_int.h): sandbox.c
 * the Lua state and its limits, hublib.c what scripts call (hub.*, msg),
 * block.c blocks, backtest.c script.test.
 *
 * Where to start: script_op_load() compiles and stores a script;
 * script_call() is the one path into Lua (script_instance() runs a script's
 * chunk lazily once per entry in a fresh environment, so no Lua memory
 * carries state between entries); filter_cb() serves the filter slot (subscription.c's sub_match()),
 * gate() runs before every send/publish (active blocks, then the queue's or
 * topic's hook).
 *
 * Side effects of a hook (hub.state, hub.window, hub.block, hub.publish) go
 * to an overlay (script_ov_put/script_ov_del) and reach the store only when
 * the call succeeds (commit); script.test keeps a second overlay that is
 * never committed.
 *
 * tick removes expired blocks and idle windows without scanning them: the
 * expiry index (a node-local min-heap of (due, key) fed by record_write(),
 * rebuilt by script_rebuild) gives the ones due; a new path that writes K
 * or Y records must go through record_write() (script_store_write, the
 * overlay's commit).
 *
 * Store keys (docs/architecture.md "Key layout"):
 *   X<name>                script [version, source]
 *   J<name>                its counters (calls, errors, ...; flushed per entry)
 *   H<q|t><name>           hook binding of a queue or topic -> script name
 * and the records of block.c (K) and hublib.c (V, Y).
 *
 * To add a script op: a handler in the file that owns its records, declared
 * in sm_int.h's script section, and one row in ops.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "script_int.h"

#define SOURCE_MAX (256 * 1024)
#define TICK_BUDGET 10000             /* records tick removes */
#define EXPIRY_SLACK 1024             /* stale expiry entries kept beyond 1 a record */

/* ---- store access through the overlays ---- */

static struct ov *ov_find(scripts_t *sc, const void *k, size_t kl)
{
    struct ov *o = hmap_get(&sc->call_ov, k, kl);
    if (!o && sc->testing)
        o = hmap_get(&sc->test_ov, k, kl);
    return o;
}

char *script_ov_get(scripts_t *sc, const void *k, size_t kl, size_t *vl)
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

/* Set @k in overlay @m, replacing a value of due @read_due (0: none or
 * unknown) that the writer read through script_ov_get: it came from @m
 * when @m has the key, else from the store (or script.test's overlay,
 * whose commit never looks at this), so the new value is indexed when it
 * keeps that due and that value was (the store's always is).
 * False when out of memory (the entry then fails: a write dropped on one
 * node only would make its state differ). */
static bool ov_set(hmap_t *m, const void *k, size_t kl, const void *v, size_t vl, bool del,
                   uint64_t due, uint64_t read_due)
{
    struct ov *o = malloc(sizeof(*o) + vl);
    if (!o)
        return false;
    struct ov *old = hmap_get(m, k, kl);
    o->vl = vl;
    o->due = due;
    o->del = del;
    o->indexed = !del && due && due == read_due && (!old || old->indexed);
    memcpy(o->v, v, vl);
    if (hmap_put(m, k, kl, o) != 0) { /* the old value stays in @m */
        free(o);
        return false;
    }
    free(old);
    return true;
}

/* ---- the expiry index ----
 * sc->expiry holds (due, key) for every K and Y record, due being the time
 * from which tick removes the value written (block_due, hublib_window_due;
 * a record expires exactly when the clock reaches it): record_write()
 * pushes an entry on every write of such a record but those that keep the
 * due of the value the writer read (script_ov_put_expiring: a window hit
 * in its newest bucket, whose live entry is there already), and a walk over the
 * store (script_rebuild, or a tick after a failed push or when stale
 * entries pile up) pushes one per record. So a tick reads only the records
 * due (script_op_tick), not all. Entries are validated lazily: one is live
 * while its record exists with a value of the same due; the entries of a
 * deleted record, and the older ones of a rewritten record (which pushed
 * its own), are skipped when they come up. */

struct expiry_ref {
    uint64_t due;
    char *key; /* malloc'ed */
    size_t kl;
};

/* As the store orders keys: bytes, then the shorter first. */
static int cmp_key(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static int cmp_expiry_key(const void *a, const void *b)
{
    const struct expiry_ref *x = a, *y = b;
    return cmp_key(x->key, x->kl, y->key, y->kl);
}

static int cmp_expiry(const void *a, const void *b)
{
    const struct expiry_ref *x = a, *y = b;
    if (x->due != y->due)
        return x->due < y->due ? -1 : 1;
    return cmp_expiry_key(a, b);
}

/* When tick may remove the K or Y record @k = @v. */
static uint64_t record_due(const char *k, const char *v, size_t vl)
{
    return k[0] == 'K' ? block_due(v, vl) : hublib_window_due(v, vl);
}

/* Push an entry that owns @k (freed on failure). */
static void expiry_push_owned(scripts_t *sc, uint64_t due, char *k, size_t kl)
{
    struct expiry_ref e = {due, k, kl};
    if (heap_push(&sc->expiry, &e) != 0) {
        free(k);
        sc->expiry_walk = true; /* the walk finds the record */
    }
}

static void expiry_push(scripts_t *sc, uint64_t due, const char *k, size_t kl)
{
    char *key = malloc(kl);
    if (!key) {
        sc->expiry_walk = true;
        return;
    }
    memcpy(key, k, kl);
    expiry_push_owned(sc, due, key, kl);
}

static void expiry_clear(scripts_t *sc)
{
    struct expiry_ref *e = (struct expiry_ref *)(void *)sc->expiry.items;
    for (size_t i = 0; i < heap_len(&sc->expiry); i++)
        free(e[i].key);
    heap_clear(&sc->expiry);
}

/* The records a tick removes, in key order. */
struct expired {
    uint64_t now;
    struct expiry_ref *v; /* owning their keys */
    size_t n, cap;
};

/* Append @e to @x (its key then owned by @x): false when out of memory. */
static bool expired_add(struct expired *x, struct expiry_ref e)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        struct expiry_ref *nv = realloc(x->v, cap * sizeof(*nv));
        if (!nv)
            return false;
        x->v = nv;
        x->cap = cap;
    }
    x->v[x->n++] = e;
    return true;
}

/* Index @e again, or (when @x has budget left) take it for removal. */
static void expiry_route(scripts_t *sc, struct expired *x, struct expiry_ref e)
{
    if (!x || e.due > x->now || x->n >= TICK_BUDGET || !expired_add(x, e))
        expiry_push_owned(sc, e.due, e.key, e.kl);
}

struct walk {
    scripts_t *sc;
    struct expired *x;
};

static int walk_visit(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct walk *w = arg;
    struct expiry_ref e = {record_due(k, v, vl), malloc(kl), kl};
    *(k[0] == 'K' ? &w->sc->n_blocks : &w->sc->n_windows) += 1;
    if (!e.key) {
        w->sc->expiry_walk = true;
        return 0;
    }
    memcpy(e.key, k, kl);
    expiry_route(w->sc, w->x, e);
    return 0;
}

/* Rebuild the index and the counts from the store, in key order (K, then
 * Y), taking for @x (NULL: none) the first expired records as a scan for
 * them would. */
static void expiry_walk(scripts_t *sc, struct expired *x)
{
    struct walk w = {sc, x};
    expiry_clear(sc);
    sc->expiry_walk = false;
    sc->n_blocks = sc->n_windows = 0;
    store_scan(sc->st, "K", 1, NULL, 0, walk_visit, &w);
    store_scan(sc->st, "Y", 1, NULL, 0, walk_visit, &w);
}

/* Whether @e is its record's live entry (the record exists with a value of
 * that due). */
static bool expiry_live(scripts_t *sc, const struct expiry_ref *e)
{
    size_t vl;
    void *v = store_get(sc->st, e->key, e->kl, &vl);
    bool live = v && record_due(e->key, v, vl) == e->due;
    store_free(v);
    return live;
}

/* Pop the live entries due by x->now, and take the first of them in key
 * order for @x: a record not due has not expired, so these are the ones a
 * scan of every record would take. The rest go back to the index. */
static void expiry_due(scripts_t *sc, struct expired *x)
{
    const struct expiry_ref *top;
    struct expired due = {.now = x->now};
    struct expiry_ref e;
    while ((top = heap_top(&sc->expiry)) && top->due <= x->now) {
        heap_pop(&sc->expiry, &e);
        if (!expiry_live(sc, &e)) {
            free(e.key);
        } else if (!expired_add(&due, e)) { /* out of memory: walk instead */
            free(e.key);
            while (due.n)
                free(due.v[--due.n].key);
            free(due.v);
            expiry_walk(sc, x);
            return;
        }
    }
    if (due.n > 1)
        qsort(due.v, due.n, sizeof(*due.v), cmp_expiry_key);
    for (size_t i = 0; i < due.n; i++) {
        if (i > 0 && cmp_expiry_key(&due.v[i], &due.v[i - 1]) == 0)
            free(due.v[i].key); /* two entries of one write's due */
        else
            expiry_route(sc, x, due.v[i]);
    }
    free(due.v);
}

/* Write or delete a record, @due being record_due() of a K or Y value;
 * @indexed: the store holds @k with a value of that due already (its index
 * entry is there). */
static void record_write(scripts_t *sc, const void *k, size_t kl, const void *v, size_t vl,
                         bool del, uint64_t due, bool indexed)
{
    char kind = kl ? ((const char *)k)[0] : 0;
    if (kind == 'K' || (kind == 'Y' && del)) {
        int64_t *count = kind == 'K' ? &sc->n_blocks : &sc->n_windows;
        size_t ol;
        void *old = store_get(sc->st, k, kl, &ol);
        bool had = old != NULL;
        store_free(old);
        if (del && !had)
            return;
        *count += del ? -1 : had ? 0 : 1;
    }
    if ((kind == 'K' || kind == 'Y') && !del && !indexed)
        expiry_push(sc, due, k, kl);
    if (del)
        store_del(sc->st, k, kl);
    else if (store_put(sc->st, k, kl, v, vl) != 0)
        sc->failed = true;
}

/* record_due() when @k is a K or Y record written with @v, else 0. */
static uint64_t due_of_write(const void *k, size_t kl, const void *v, size_t vl, bool del)
{
    const char *key = k;
    return kl && !del && (key[0] == 'K' || key[0] == 'Y') ? record_due(key, v, vl) : 0;
}

void script_store_write(scripts_t *sc, const void *k, size_t kl, const void *v, size_t vl,
                        bool del)
{
    record_write(sc, k, kl, v, vl, del, due_of_write(k, kl, v, vl, del), false);
}

void script_ov_put_expiring(scripts_t *sc, const void *k, size_t kl, const void *v, size_t vl,
                            uint64_t due, uint64_t read_due)
{
    if (!sc->in_call) /* what was read is the store's, unless script.test's overlay had it */
        record_write(sc, k, kl, v, vl, false, due, due && due == read_due && !sc->testing);
    else if (!ov_set(&sc->call_ov, k, kl, v, vl, false, due, read_due))
        sc->failed = true;
}

void script_ov_put(scripts_t *sc, const void *k, size_t kl, const void *v, size_t vl)
{
    script_ov_put_expiring(sc, k, kl, v, vl, due_of_write(k, kl, v, vl, false), 0);
}

void script_ov_del(scripts_t *sc, const void *k, size_t kl)
{
    if (!sc->in_call)
        script_store_write(sc, k, kl, NULL, 0, true);
    else if (!ov_set(&sc->call_ov, k, kl, "", 0, true, 0, 0))
        sc->failed = true;
}

void script_ov_clear(hmap_t *m)
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
        if (!sc->testing) /* into the store: what the overlay read came from it */
            record_write(sc, s->key, s->klen, o->v, o->vl, o->del, o->due, o->indexed);
        else if (!ov_set(&sc->test_ov, s->key, s->klen, o->v, o->vl, o->del, o->due, 0))
            sc->failed = true;
    }
    script_ov_clear(m);
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
    script_ov_clear(&sc->call_ov);
    pubq_free(sc->pending);
    sc->pending = NULL;
}

size_t script_key2(char *k, size_t cap, char prefix, const char *a, size_t al, const char *b,
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

/* ---- calling Lua ---- */

/* Globals and upvalues live as long as the instance (one entry), so no Lua
 * memory carries state from one entry to the next. */
int script_instance(scripts_t *sc, sentry_t *e, char *err, size_t errlen)
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
    int rc = sandbox_pcall(sc, 0, 0, e->inst_err, sizeof(e->inst_err));
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

int script_call(scripts_t *sc, sentry_t *e, const char *fname, const fsm_push_msg_t *m,
                int nres, char *err, size_t errlen)
{
    lua_State *L = sc->L;
    int rc;
    sc->cur = e;
    sc->msg = m;
    sc->call_gen++;
    sc->call_pubs = sc->call_blocks = 0;
    sandbox_seed(sc, e, m);
    if (!sc->testing) {
        e->s.calls++;
        e->dirty = true;
    }
    if ((rc = script_instance(sc, e, err, errlen)) == 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->env_ref);
        lua_getfield(L, -1, fname);
        lua_remove(L, -2);
        if (lua_type(L, -1) != LUA_TFUNCTION) {
            lua_pop(L, 1);
            snprintf(err, errlen, "script '%s' defines no %s(msg) function", e->name, fname);
            rc = MQHUB_ESCRIPT_ERROR;
        } else {
            hublib_push_msg(sc);
            rc = sandbox_pcall(sc, 1, nres, err, errlen);
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
    char chunk[MQHUB_NAME_MAX + 2];
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
    char k[1 + MQHUB_NAME_MAX];
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
    mp_pack_str(&pk, s->last_error, strlen(s->last_error));
    stats_key(k, e);
    script_store_write(sc, k, 1 + e->nlen, sb.data, sb.size, false);
    msgpack_sbuffer_destroy(&sb);
    e->dirty = false;
}

static void stats_load(scripts_t *sc, sentry_t *e)
{
    char k[1 + MQHUB_NAME_MAX];
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
    if (e && kl >= 2 && kl <= 1 + MQHUB_NAME_MAX &&
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
    store_scan(sc->st, "X", 1, NULL, 0, rebuild_script, sc);
    store_scan(sc->st, "H", 1, NULL, 0, rebuild_hook, sc);
    expiry_walk(sc, NULL);
    return 0;
}

/* ---- the slots in topic.c and queue.c ---- */

static sentry_t *hook_script(scripts_t *sc, char kind, const char *name, size_t len)
{
    char k[1 + MQHUB_NAME_MAX];
    if (len > MQHUB_NAME_MAX)
        return NULL;
    k[0] = kind;
    memcpy(k + 1, name, len);
    const char *s = hmap_get(&sc->hooks, k, 1 + len);
    return s ? sentry_find(sc, s, strlen(s)) : NULL;
}

int script_run_hook(scripts_t *sc, sentry_t *e, const fsm_push_msg_t *m, char *err,
                    size_t errlen)
{
    int rc;
    sc->writes = true;
    rc = script_call(sc, e, "on_message", m, 2, err, errlen);
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

static int gate(void *arg, cmd_t *c, bool is_queue, const char *name, size_t len,
                const fsm_push_msg_t *m)
{
    scripts_t *sc = arg;
    sentry_t *e;
    if (block_check(sc, m->attrs, c->err, sizeof(c->err)))
        return MQHUB_EBLOCKED;
    if (!(e = hook_script(sc, is_queue ? 'q' : 't', name, len)))
        return 0;
    /* A hook that cannot run does not let the message through unchecked. */
    if (sandbox_entry_spent(sc))
        return cmd_fail(c, MQHUB_EUNAVAILABLE,
                        "hook '%s' cannot run: the hooks of this raft entry spent its "
                        "instruction budget; retry", e->name);
    sc->msg_queue = is_queue;
    sc->dest = name;
    sc->destlen = len;
    int rc = script_run_hook(sc, e, m, c->err, sizeof(c->err));
    sc->dest = NULL;
    return rc == MQHUB_EBLOCKED ? rc : 0;
}

static const char *hook_name_cb(void *arg, bool is_queue, const char *name, size_t len)
{
    char k[1 + MQHUB_NAME_MAX];
    if (len > MQHUB_NAME_MAX)
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
    int rc = script_call(sc, e, "filter", m, 1, err, errlen);
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
    heap_init(&sc->expiry, sizeof(struct expiry_ref), cmp_expiry);
    sc->outbox_tail = &sc->outbox;
    sc->gen = 1; /* entries start at inst_gen 0: not instantiated, even before an apply */
    if (sandbox_open(sc) != 0) {
        free(sc);
        return MQHUB_EINTERNAL;
    }
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
    script_ov_clear(&sc->call_ov);
    hmap_free(&sc->call_ov);
    hmap_free(&sc->test_ov);
    pubq_free(sc->outbox);
    expiry_clear(sc);
    heap_free(&sc->expiry);
    lua_close(sc->L);
    free(sc);
}

void script_begin(scripts_t *sc, uint64_t now)
{
    sc->now = now;
    sc->entry_steps = 0;
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

void script_after_cmd(scripts_t *sc, cmd_t *c)
{
    struct pubq *p = sc->outbox;
    sc->outbox = NULL;
    sc->outbox_tail = &sc->outbox;
    for (struct pubq *q = p; q; q = q->next) {
        msgpack_unpacked u;
        cmd_t pc = {.now = c->now};
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
    char k[2 + MQHUB_NAME_MAX];
    k[0] = 'H';
    k[1] = kind;
    memcpy(k + 2, name, len);
    free(hmap_del(&sc->hooks, k + 1, 1 + len));
    if (!script) {
        script_store_write(sc, k, 2 + len, NULL, 0, true);
        return;
    }
    script_store_write(sc, k, 2 + len, script, sl, false);
    char *dup = strndup(script, sl);
    if (!dup || hmap_put(&sc->hooks, k + 1, 1 + len, dup) != 0) {
        free(dup);
        sc->failed = true;
    }
}

int script_hook_op(scripts_t *sc, cmd_t *c, char kind, const char *op, bool after)
{
    const char *name, *hs = NULL;
    const msgpack_object *attrs = mp_map_get(c->req, "attrs"), *hook = NULL;
    size_t len, hl = 0;
    bool del = strcmp(strrchr(op, '.'), ".delete") == 0;
    if (cmd_arg_str(c, c->req, "name", true, &name, &len) != 0 || len > MQHUB_NAME_MAX)
        return 0; /* the handler reports it */
    if (del) {
        if (after)
            hook_bind(sc, kind, name, len, NULL, 0);
        return 0;
    }
    if (attrs && attrs->type == MSGPACK_OBJECT_MAP)
        hook = mp_map_get(attrs, "hook");
    if (!hook)
        return 0;
    if (hook->type == MSGPACK_OBJECT_STR && hook->via.str.size > 0) {
        hs = hook->via.str.ptr;
        hl = hook->via.str.size;
    } else if (hook->type == MSGPACK_OBJECT_STR) {
        hs = NULL; /* "" detaches, like nil */
    } else if (hook->type != MSGPACK_OBJECT_NIL) {
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'hook' must be a script name (or nil)");
    }
    if (!after)
        return !hs || sentry_find(sc, hs, hl)
                   ? 0
                   : cmd_fail(c, MQHUB_ENOT_FOUND,
                              "script '%.*s' does not exist (load it with script.load)",
                              (int)(hl > 64 ? 64 : hl), hs);
    hook_bind(sc, kind, name, len, hs, hl);
    return 0;
}

int script_arg(scripts_t *sc, cmd_t *c, sentry_t **out)
{
    const char *name;
    size_t len;
    int rc = cmd_arg_name(c, c->req, "name", &name, &len);
    if (rc)
        return rc;
    if (!(*out = sentry_find(sc, name, len)))
        return cmd_fail(c, MQHUB_ENOT_FOUND,
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
    rc = script_instance(sc, &tmp, err, errlen);
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

int script_op_load(cmd_t *c)
{
    scripts_t *sc = c->sc;
    const char *name, *src;
    size_t len, sl;
    char err[ERR_LEN], k[1 + MQHUB_NAME_MAX];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rc;
    if ((rc = cmd_arg_name(c, c->req, "name", &name, &len)) ||
        (rc = cmd_arg_str(c, c->req, "source", true, &src, &sl)))
        return rc;
    if (sl > SOURCE_MAX)
        return cmd_fail(c, MQHUB_ETOO_LARGE, "field 'source' has %zu bytes, at most %d allowed",
                        sl, SOURCE_MAX);
    snprintf(k, sizeof(k), "%.*s", (int)len, name);
    if ((rc = validate(sc, k, src, sl, err, sizeof(err))))
        return cmd_fail(c, rc, "%s", err);
    sentry_t *e = sentry_find(sc, name, len);
    if (!e && !(e = calloc(1, sizeof(*e)))) {
        lua_pop(sc->L, 1);
        return cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
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
    mp_pack_str(&pk, src, sl);
    k[0] = 'X';
    memcpy(k + 1, name, len);
    script_store_write(sc, k, 1 + len, sb.data, sb.size, false);
    msgpack_sbuffer_destroy(&sb);
    cmd_reply_key(c, "version");
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
        mp_pack_str(u->pk, user, strlen(user));
    else
        snprintf(u->list + l, sizeof(u->list) - l, "%s%s", u->n ? ", " : "", user);
    u->n++;
}

static int hook_user(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct users *u = arg;
    char user[8 + MQHUB_NAME_MAX];
    if (vl == u->len && memcmp(v, u->name, vl) == 0 && kl > 2) {
        snprintf(user, sizeof(user), "%s:%.*s", k[1] == 'q' ? "queue" : "topic",
                 (int)(kl - 2), k + 2);
        user_add(u, user);
    }
    return 0;
}

static void subscription_user(void *arg, const char *user)
{
    char s[16 + 2 * MQHUB_NAME_MAX];
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
        mp_pack_str(pk, names[i], strlen(names[i]));
        msgpack_pack_uint64(pk, nums[i]);
    }
    mp_pack_str(pk, "last_error", 10);
    mp_pack_str(pk, s->last_error, strlen(s->last_error));
}

int script_op_get(cmd_t *c)
{
    scripts_t *sc = c->sc;
    sentry_t *e;
    char k[1 + MQHUB_NAME_MAX];
    size_t vl;
    msgpack_unpacked u;
    int rc = script_arg(sc, c, &e);
    if (rc || !c->pk)
        return rc;
    k[0] = 'X';
    memcpy(k + 1, e->name, e->nlen);
    void *v = store_get(sc->st, k, 1 + e->nlen, &vl);
    msgpack_unpacked_init(&u);
    cmd_reply_key(c, "name");
    mp_pack_str(c->pk, e->name, e->nlen);
    cmd_reply_key(c, "version");
    msgpack_pack_uint64(c->pk, e->version);
    cmd_reply_key(c, "source");
    if (v && msgpack_unpack_next(&u, v, vl, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 2)
        msgpack_pack_object(c->pk, u.data.via.array.ptr[1]);
    else
        msgpack_pack_nil(c->pk);
    msgpack_unpacked_destroy(&u);
    store_free(v);
    cmd_reply_key(c, "stats");
    pack_stats(c->pk, &e->s);
    struct users us = {.name = e->name, .len = e->nlen};
    users_visit(sc, &us);
    cmd_reply_key(c, "users");
    msgpack_pack_array(c->pk, us.n);
    us = (struct users){.name = e->name, .len = e->nlen, .pk = c->pk};
    users_visit(sc, &us);
    return 0;
}

int script_op_list(cmd_t *c)
{
    scripts_t *sc = c->sc;
    uint32_t n = 0;
    if (!c->pk)
        return 0;
    for (sentry_t *e = sc->list; e; e = e->next)
        n++;
    cmd_reply_key(c, "scripts");
    msgpack_pack_array(c->pk, n);
    for (sentry_t *e = sc->list; e; e = e->next) {
        msgpack_pack_map(c->pk, 4);
        mp_pack_str(c->pk, "name", 4);
        mp_pack_str(c->pk, e->name, e->nlen);
        mp_pack_str(c->pk, "version", 7);
        msgpack_pack_uint64(c->pk, e->version);
        mp_pack_str(c->pk, "calls", 5);
        msgpack_pack_uint64(c->pk, e->s.calls);
        mp_pack_str(c->pk, "errors", 6);
        msgpack_pack_uint64(c->pk, e->s.errors);
    }
    return 0;
}

/* Refused with FORBIDDEN while a hook or a subscription uses the script:
 * deleting it would silently change what those deliver. */
int script_op_delete(cmd_t *c)
{
    scripts_t *sc = c->sc;
    sentry_t *e;
    char k[2 + MQHUB_NAME_MAX];
    int rc = script_arg(sc, c, &e);
    if (rc)
        return rc;
    struct users us = {.name = e->name, .len = e->nlen};
    users_visit(sc, &us);
    if (us.n)
        return cmd_fail(c, MQHUB_EFORBIDDEN, "script '%s' is in use by %s; detach it first",
                        e->name, us.list);
    k[0] = 'X';
    memcpy(k + 1, e->name, e->nlen);
    script_store_write(sc, k, 1 + e->nlen, NULL, 0, true);
    k[0] = 'J';
    script_store_write(sc, k, 1 + e->nlen, NULL, 0, true);
    k[0] = 'V';
    k[1 + e->nlen] = 0;
    store_del_prefix(sc->st, k, 2 + e->nlen);
    sentry_unlink(sc, e);
    return 0;
}

/* ---- tick: expired blocks and idle windows (block_due, hublib_window_due) ---- */

/* Every K and Y record has an entry: none means nothing can expire (stale
 * entries make this a conservative false until tick drops them). */
bool script_tick_idle(scripts_t *sc)
{
    return heap_len(&sc->expiry) == 0 && !sc->expiry_walk;
}

/* Remove the expired K and Y records, at most TICK_BUDGET, the first in key
 * order (so K before Y): the same on every node, whatever early or stale
 * entries its index holds. */
int script_op_tick(cmd_t *c)
{
    scripts_t *sc = c->sc;
    struct expired x = {.now = sc->now};
    /* Stale entries outnumber the records: shed them with a walk, O(records)
     * after at least as many pushes (n_windows is a lower bound, so this
     * comes no later than with the exact count). */
    if (heap_len(&sc->expiry) > 2 * (size_t)(sc->n_blocks + sc->n_windows) + EXPIRY_SLACK)
        sc->expiry_walk = true;
    if (sc->expiry_walk)
        expiry_walk(sc, &x);
    else
        expiry_due(sc, &x);
    for (size_t i = 0; i < x.n; i++) {
        script_store_write(sc, x.v[i].key, x.v[i].kl, NULL, 0, true);
        free(x.v[i].key);
    }
    free(x.v);
    return 0;
}
