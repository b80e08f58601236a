/* user.c: named identities and their grants, replicated like queues so every
 * node authenticates and authorises the same way (docs/security.md).
 *
 * A user is a name, the SHA-256 of its token (never the token: the hub
 * hashes it before the request is submitted, so the plaintext never reaches
 * the raft log) and a list of grants, each a verb (enum ops_verb) and a name
 * pattern ("*", "payments*", "payments.in"). The ops: user.create, user.delete,
 * user.list, user.grant, user.revoke (docs/protocol.md "Users").
 *
 * State in the store (docs/architecture.md "Key layout"):
 *   U<name>   msgpack [token_sha256 (bin 32), created_at, [[verb, pattern], ...]]
 * In memory: one user_t per record, in two hash maps (by name for the ops,
 * by token hash for hello and the per-request check of the hub:
 * fsm_user_find, fsm_user_may); rebuilt from the store after a snapshot load
 * (user_rebuild). Grants keep their order of arrival (the same on every node).
 *
 * Start with user_op_create(). To add a verb: enum ops_verb (sm.h) and
 * verb_names[] below.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "hmap.h"
#include "sm_int.h"

#define USER_GRANTS_MAX 64 /* grants per user */
#define HASH_LEN FSM_USER_HASH_LEN

typedef struct grant {
    enum ops_verb verb;
    size_t plen;
    char pattern[MQHUB_NAME_MAX + 2]; /* a name, or a prefix and '*' */
} grant_t;

typedef struct user {
    size_t nlen;
    char name[MQHUB_NAME_MAX + 1];
    unsigned char hash[HASH_LEN];
    uint64_t created_at;
    unsigned n;
    grant_t g[USER_GRANTS_MAX];
} user_t;

struct users {
    store_t *st;
    hmap_t by_name;
    hmap_t by_hash;
};

/* ---- verbs and patterns ---- */

static const char *const verb_names[] = {
    [OPS_V_NONE] = "",           [OPS_V_ANY] = "any",         [OPS_V_SEND] = "send",
    [OPS_V_RECEIVE] = "receive", [OPS_V_PUBLISH] = "publish", [OPS_V_SUBSCRIBE] = "subscribe",
    [OPS_V_MANAGE] = "manage",   [OPS_V_SCRIPT] = "script",   [OPS_V_ADMIN] = "admin",
    [OPS_V_MONITOR] = "monitor",
};
#define N_VERBS (sizeof verb_names / sizeof verb_names[0])

const char *ops_verb_name(enum ops_verb v)
{
    return (unsigned)v < N_VERBS ? verb_names[v] : "";
}

enum ops_verb ops_verb_find(const char *s, size_t len)
{
    for (unsigned v = OPS_V_SEND; v < N_VERBS; v++) {
        if (strlen(verb_names[v]) == len && memcmp(verb_names[v], s, len) == 0)
            return (enum ops_verb)v;
    }
    return OPS_V_NONE;
}

bool user_pattern_match(const char *pat, size_t pl, const char *name, size_t nl)
{
    if (pl > 0 && pat[pl - 1] == '*')
        return nl >= pl - 1 && memcmp(pat, name, pl - 1) == 0;
    return pl == nl && memcmp(pat, name, nl) == 0;
}

static bool pattern_valid(const char *pat, size_t pl)
{
    if (pl == 1 && pat[0] == '*')
        return true;
    if (pl > 1 && pat[pl - 1] == '*')
        pl--;
    return wire_name_valid(pat, pl);
}

void fsm_user_hash(const char *token, size_t len, unsigned char out[HASH_LEN])
{
    unsigned int n = HASH_LEN;

    if (EVP_Digest(token, len, out, &n, EVP_sha256(), NULL) != 1)
        memset(out, 0, HASH_LEN); /* no user has an all-zero hash */
}

/* ---- the table ---- */

int user_state_new(users_t **out, store_t *st)
{
    users_t *us = calloc(1, sizeof *us);

    if (us == NULL)
        return MQHUB_EINTERNAL;
    us->st = st;
    hmap_init(&us->by_name);
    hmap_init(&us->by_hash);
    *out = us;
    return 0;
}

static void free_all(users_t *us)
{
    for (size_t i = 0; i < us->by_name.cap; i++)
        free(us->by_name.slots[i].key != NULL ? us->by_name.slots[i].val : NULL);
    hmap_free(&us->by_name);
    hmap_free(&us->by_hash);
    hmap_init(&us->by_name);
    hmap_init(&us->by_hash);
}

void user_state_free(users_t *us)
{
    if (us == NULL)
        return;
    free_all(us);
    hmap_free(&us->by_name);
    hmap_free(&us->by_hash);
    free(us);
}

static user_t *find_name(users_t *us, const char *name, size_t len)
{
    return hmap_get(&us->by_name, name, len);
}

static int table_add(users_t *us, user_t *u)
{
    if (hmap_put(&us->by_name, u->name, u->nlen, u) != 0)
        return MQHUB_EINTERNAL;
    if (hmap_put(&us->by_hash, u->hash, HASH_LEN, u) != 0) {
        hmap_del(&us->by_name, u->name, u->nlen);
        return MQHUB_EINTERNAL;
    }
    return 0;
}

/* ---- records ---- */

static void key_of(char *k, size_t *kl, const char *name, size_t len)
{
    k[0] = 'U';
    memcpy(k + 1, name, len);
    *kl = 1 + len;
}

static int user_save(users_t *us, const user_t *u)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char k[1 + MQHUB_NAME_MAX];
    size_t kl;
    int rc;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_bin(&pk, HASH_LEN);
    msgpack_pack_bin_body(&pk, u->hash, HASH_LEN);
    msgpack_pack_uint64(&pk, u->created_at);
    msgpack_pack_array(&pk, u->n);
    for (unsigned i = 0; i < u->n; i++) {
        msgpack_pack_array(&pk, 2);
        mp_pack_cstr(&pk, verb_names[u->g[i].verb]);
        mp_pack_str(&pk, u->g[i].pattern, u->g[i].plen);
    }
    key_of(k, &kl, u->name, u->nlen);
    rc = store_put(us->st, k, kl, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rc == 0 ? 0 : MQHUB_EINTERNAL;
}

/* Fill @u from record @v of user @name; 0 or MQHUB_EINTERNAL (corrupt). */
static int user_decode(user_t *u, const char *name, size_t nl, const char *v, size_t vl)
{
    msgpack_unpacked m;
    const msgpack_object *a, *gs;
    int rc = MQHUB_EINTERNAL;

    memset(u, 0, sizeof *u);
    msgpack_unpacked_init(&m);
    if (nl > MQHUB_NAME_MAX || msgpack_unpack_next(&m, v, vl, NULL) != MSGPACK_UNPACK_SUCCESS)
        goto out;
    a = &m.data;
    if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size != 3 ||
        a->via.array.ptr[0].type != MSGPACK_OBJECT_BIN ||
        a->via.array.ptr[0].via.bin.size != HASH_LEN ||
        a->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        a->via.array.ptr[2].type != MSGPACK_OBJECT_ARRAY ||
        a->via.array.ptr[2].via.array.size > USER_GRANTS_MAX)
        goto out;
    memcpy(u->name, name, nl);
    u->nlen = nl;
    memcpy(u->hash, a->via.array.ptr[0].via.bin.ptr, HASH_LEN);
    u->created_at = a->via.array.ptr[1].via.u64;
    gs = &a->via.array.ptr[2];
    for (uint32_t i = 0; i < gs->via.array.size; i++) {
        const msgpack_object *g = &gs->via.array.ptr[i];
        if (g->type != MSGPACK_OBJECT_ARRAY || g->via.array.size != 2 ||
            g->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
            g->via.array.ptr[1].type != MSGPACK_OBJECT_STR ||
            g->via.array.ptr[1].via.str.size > MQHUB_NAME_MAX + 1)
            goto out;
        u->g[i].verb = ops_verb_find(g->via.array.ptr[0].via.str.ptr,
                                     g->via.array.ptr[0].via.str.size);
        u->g[i].plen = g->via.array.ptr[1].via.str.size;
        memcpy(u->g[i].pattern, g->via.array.ptr[1].via.str.ptr, u->g[i].plen);
    }
    u->n = gs->via.array.size;
    rc = 0;
out:
    msgpack_unpacked_destroy(&m);
    return rc;
}

static int rebuild_one(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    users_t *us = arg;
    user_t *u = malloc(sizeof *u);

    if (u == NULL || user_decode(u, k + 1, kl - 1, v, vl) != 0 || table_add(us, u) != 0) {
        free(u);
        log_error("user", "corrupt user record '%.*s'", (int)(kl - 1), k + 1);
        return MQHUB_EINTERNAL;
    }
    return 0;
}

int user_rebuild(users_t *us)
{
    free_all(us);
    return store_scan(us->st, "U", 1, NULL, 0, rebuild_one, us);
}

/* ---- reads for the hub ---- */

/* Whether a grant of verb @held allows @verb: its own verb; any verb for
 * OPS_V_ANY (seeing a name); and monitor (read-only) for admin, which could
 * grant itself monitor anyway (docs/security.md "Permissions"). */
static bool user_verb_covers(enum ops_verb held, enum ops_verb verb)
{
    return verb == OPS_V_ANY || held == verb ||
           (verb == OPS_V_MONITOR && held == OPS_V_ADMIN);
}

/* The grant of @u for @verb (ANY: any verb) covering @obj, or NULL. */
static const grant_t *user_grant_for(const user_t *u, enum ops_verb verb, const char *obj,
                                     size_t len)
{
    for (unsigned i = 0; i < u->n; i++) {
        if (user_verb_covers(u->g[i].verb, verb) &&
            user_pattern_match(u->g[i].pattern, u->g[i].plen, obj, len))
            return &u->g[i];
    }
    return NULL;
}

bool user_sees(users_t *us, const unsigned char *hash, const char *name, size_t len)
{
    const user_t *u = hmap_get(&us->by_hash, hash, HASH_LEN);

    return u != NULL && user_grant_for(u, OPS_V_ANY, name, len) != NULL;
}

int user_find_by_hash(users_t *us, const unsigned char *hash, char *name, size_t size)
{
    const user_t *u = hmap_get(&us->by_hash, hash, HASH_LEN);

    if (u == NULL)
        return MQHUB_EUNAUTHORIZED;
    snprintf(name, size, "%.*s", (int)u->nlen, u->name);
    return 0;
}

int user_hash_by_name(users_t *us, const char *name, size_t len, unsigned char *hash)
{
    const user_t *u = find_name(us, name, len);

    if (u == NULL)
        return MQHUB_EUNAUTHORIZED;
    memcpy(hash, u->hash, HASH_LEN);
    return 0;
}

int user_may(users_t *us, const unsigned char *hash, enum ops_verb verb, const char *obj,
             size_t len)
{
    const user_t *u = hmap_get(&us->by_hash, hash, HASH_LEN);

    if (u == NULL)
        return MQHUB_EUNAUTHORIZED;
    if (verb == OPS_V_NONE || user_grant_for(u, verb, obj, len) != NULL)
        return 0;
    return MQHUB_EFORBIDDEN;
}

size_t user_count(users_t *us)
{
    return hmap_len(&us->by_name);
}

/* ---- ops ---- */

/* The verb and pattern of a grant given as @map's fields "verb", "pattern". */
static int arg_grant(cmd_t *c, const msgpack_object *map, grant_t *g)
{
    const char *verb, *pat;
    size_t vl, pl;
    int rc;

    if ((rc = cmd_arg_str(c, map, "verb", true, &verb, &vl)) != 0 ||
        (rc = cmd_arg_str(c, map, "pattern", true, &pat, &pl)) != 0)
        return rc;
    g->verb = ops_verb_find(verb, vl);
    if (g->verb == OPS_V_NONE)
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'verb': '%.*s' is not a verb; use send, receive, publish, "
                        "subscribe, manage, script, admin or monitor",
                        (int)(vl > 32 ? 32 : vl), verb);
    if (!pattern_valid(pat, pl))
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'pattern': '%.*s' is not a pattern; use *, a name, or a name "
                        "prefix followed by * (payments*)",
                        (int)(pl > 66 ? 66 : pl), pat);
    g->plen = pl;
    memcpy(g->pattern, pat, pl);
    return 0;
}

static int grant_index(const user_t *u, const grant_t *g)
{
    for (unsigned i = 0; i < u->n; i++) {
        if (u->g[i].verb == g->verb && u->g[i].plen == g->plen &&
            memcmp(u->g[i].pattern, g->pattern, g->plen) == 0)
            return (int)i;
    }
    return -1;
}

/* Append grant @g to @u unless it holds it already. */
static int grant_add(cmd_t *c, user_t *u, const grant_t *g)
{
    if (grant_index(u, g) >= 0)
        return 0;
    if (u->n == USER_GRANTS_MAX)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "user '%.*s' has %d grants already (the most)",
                        (int)u->nlen, u->name, USER_GRANTS_MAX);
    u->g[u->n++] = *g;
    return 0;
}

/* The optional "grants" field of user.create: [{verb, pattern}]. */
static int arg_grants(cmd_t *c, user_t *u)
{
    const msgpack_object *gs = mp_map_get(c->req, "grants");
    grant_t g;
    int rc = 0;

    if (gs == NULL || gs->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (gs->type != MSGPACK_OBJECT_ARRAY)
        return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'grants' must be an array of "
                                               "{verb, pattern} maps");
    for (uint32_t i = 0; i < gs->via.array.size && rc == 0; i++) {
        if (gs->via.array.ptr[i].type != MSGPACK_OBJECT_MAP)
            return cmd_fail(c, MQHUB_EBAD_REQUEST, "field 'grants': item %u must be a "
                                                   "{verb, pattern} map", i);
        if ((rc = arg_grant(c, &gs->via.array.ptr[i], &g)) == 0)
            rc = grant_add(c, u, &g);
    }
    return rc;
}

/* The token hash the hub put in the request (the plaintext never gets here). */
static int arg_hash(cmd_t *c, unsigned char out[HASH_LEN])
{
    const msgpack_object *h = mp_map_get(c->req, "token_sha256");

    if (h == NULL || h->type != MSGPACK_OBJECT_BIN || h->via.bin.size != HASH_LEN)
        return cmd_fail(c, MQHUB_EBAD_REQUEST,
                        "field 'token_sha256' (32 bytes) is missing: the node sets it from "
                        "'token'; send user.create to a node, not into the log");
    memcpy(out, h->via.bin.ptr, HASH_LEN);
    return 0;
}

/* user.create {name, token_sha256, grants?} → {name}. The node adds the
 * generated token to the reply (hub.c). */
int user_op_create(cmd_t *c)
{
    users_t *us = c->us;
    user_t *u = calloc(1, sizeof *u);
    const char *name;
    size_t nl;
    int rc;

    if (u == NULL)
        return cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
    if ((rc = cmd_arg_name(c, c->req, "name", &name, &nl)) != 0 ||
        (rc = arg_hash(c, u->hash)) != 0 || (rc = arg_grants(c, u)) != 0)
        goto fail;
    if (find_name(us, name, nl) != NULL) {
        rc = cmd_fail(c, MQHUB_EEXISTS, "user '%.*s' exists; delete it first to give it a "
                                        "new token", (int)nl, name);
        goto fail;
    }
    if (hmap_get(&us->by_hash, u->hash, HASH_LEN) != NULL) {
        rc = cmd_fail(c, MQHUB_EEXISTS, "another user has this token; choose another");
        goto fail;
    }
    memcpy(u->name, name, nl);
    u->nlen = nl;
    u->created_at = c->now;
    if ((rc = user_save(us, u)) != 0 || (rc = table_add(us, u)) != 0) {
        rc = cmd_fail(c, rc, "user '%.*s': store write failed", (int)nl, name);
        goto fail;
    }
    if (c->pk) {
        cmd_reply_key(c, "name");
        mp_pack_str(c->pk, name, nl);
    }
    return 0;
fail:
    free(u);
    return rc;
}

static int arg_user(cmd_t *c, user_t **out)
{
    const char *name;
    size_t nl;
    int rc = cmd_arg_name(c, c->req, "name", &name, &nl);

    if (rc == 0 && (*out = find_name(c->us, name, nl)) == NULL)
        rc = cmd_fail(c, MQHUB_ENOT_FOUND, "no user '%.*s'", (int)nl, name);
    return rc;
}

/* user.delete {name} → {}. Sessions of the user fail from their next request. */
int user_op_delete(cmd_t *c)
{
    user_t *u;
    char k[1 + MQHUB_NAME_MAX];
    size_t kl;
    int rc = arg_user(c, &u);

    if (rc != 0)
        return rc;
    key_of(k, &kl, u->name, u->nlen);
    if (store_del(c->us->st, k, kl) != 0)
        return cmd_fail(c, MQHUB_EINTERNAL, "user '%.*s': store write failed", (int)u->nlen,
                        u->name);
    hmap_del(&c->us->by_hash, u->hash, HASH_LEN);
    hmap_del(&c->us->by_name, u->name, u->nlen);
    free(u);
    return 0;
}

/* user.grant / user.revoke {name, verb, pattern} → {changed: bool}. */
static int change_grant(cmd_t *c, bool add)
{
    user_t *u, before;
    grant_t g;
    int rc, i;

    if ((rc = arg_user(c, &u)) != 0 || (rc = arg_grant(c, c->req, &g)) != 0)
        return rc;
    before = *u;
    i = grant_index(u, &g);
    if (add && i < 0)
        rc = grant_add(c, u, &g);
    else if (!add && i >= 0)
        memmove(&u->g[i], &u->g[i + 1], (u->n-- - (unsigned)i - 1) * sizeof u->g[0]);
    if (rc == 0 && u->n != before.n && user_save(c->us, u) != 0) {
        *u = before;
        rc = cmd_fail(c, MQHUB_EINTERNAL, "user '%.*s': store write failed", (int)u->nlen,
                      u->name);
    }
    if (rc == 0 && c->pk) {
        cmd_reply_key(c, "changed");
        if (u->n != before.n)
            msgpack_pack_true(c->pk);
        else
            msgpack_pack_false(c->pk);
    }
    return rc;
}

int user_op_grant(cmd_t *c)
{
    return change_grant(c, true);
}

int user_op_revoke(cmd_t *c)
{
    return change_grant(c, false);
}

static void pack_user(msgpack_packer *pk, const user_t *u)
{
    msgpack_pack_map(pk, 3);
    cmd_pack_kv_str(pk, "name", u->name, u->nlen);
    cmd_pack_kv_uint(pk, "created_at", u->created_at);
    mp_pack_cstr(pk, "grants");
    msgpack_pack_array(pk, u->n);
    for (unsigned i = 0; i < u->n; i++) {
        msgpack_pack_map(pk, 2);
        cmd_pack_kv_str(pk, "verb", verb_names[u->g[i].verb], strlen(verb_names[u->g[i].verb]));
        cmd_pack_kv_str(pk, "pattern", u->g[i].pattern, u->g[i].plen);
    }
}

struct list_users {
    users_t *us;
    const user_t **v;
    size_t n;
};

static int collect_user(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct list_users *l = arg;
    (void)v;
    (void)vl;
    if (l->n == user_count(l->us))
        return 1; /* more records than users: never (the table mirrors them) */
    l->v[l->n] = find_name(l->us, k + 1, kl - 1);
    if (l->v[l->n] != NULL)
        l->n++;
    return 0;
}

/* user.list {} → {users: [{name, created_at, grants: [{verb, pattern}]}]} in
 * name order (the store's). Hashes are never shown. */
int user_op_list(cmd_t *c)
{
    struct list_users l = {c->us, NULL, 0};

    if (!c->pk)
        return 0;
    l.v = calloc(user_count(c->us) + 1, sizeof *l.v);
    if (l.v == NULL)
        return cmd_fail(c, MQHUB_EINTERNAL, "out of memory");
    store_scan(c->us->st, "U", 1, NULL, 0, collect_user, &l);
    cmd_reply_key(c, "users");
    msgpack_pack_array(c->pk, (uint32_t)l.n);
    for (size_t i = 0; i < l.n; i++)
        pack_user(c->pk, l.v[i]);
    free(l.v);
    return 0;
}
