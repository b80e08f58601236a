/* config.c: the Lua configuration file.
 *
 * The file is a Lua 5.4 chunk run in a fresh state whose globals include one
 * function per directive: node{}, peers{}, transport "name" {}, queue "name"
 * {}, topic "name" {}, auth{}, log{}, limits{}, snapshot{}. Each directive
 * checks its table and fills config_t; any other global name is an error, so
 * a typo never passes silently. Errors carry "file:line: problem" (luaL_error
 * and luaL_where on the directive's caller). The state stays open after the
 * load: transports' tables live in its registry for plugin lookups
 * (config_transport_string/int). Declared queues keep the file's order
 * (the hub creates dead-letter queues first); dead-letter queues that name
 * each other in a cycle are refused at the end (check_dead_letters).
 * Start at config_load(); add a directive as one l_config_<name> function and
 * one line in the directives table; docs/operations.md "Configuration" lists
 * them all.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "node.h"
#include "raft/peer.h"

/* CMake defines MQHUB_BUILD_DIR, MQHUB_PLUGIN_DIR (the build tree's plugin
 * folder) and MQHUB_BIN_TO_PLUGINDIR (see default_plugin_dir). */

#define DEFAULT_DATA_DIR "./mqhub-data"
#define DEFAULT_RAFT "127.0.0.1:6300"
#define MAX_ATTR_DEPTH 8

/* Load-time state: the config being filled and a "name" awaiting its table. */
typedef struct loader {
    config_t *c;
    const char *pending;     /* "transport" / "queue" / "topic" */
    char pending_where[128]; /* luaL_where of the pending call */
} loader_t;

static loader_t *get_loader(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- field checks -------------------------------------------------------- */

/* Raise "<what>: unknown field 'x'" for any key not in @allowed (NULL-ended). */
static void check_fields(lua_State *L, int idx, const char *what,
                         const char *const *allowed)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: field names must be strings", what);
        const char *k = lua_tostring(L, -1);
        const char *const *a = allowed;
        while (*a && strcmp(*a, k) != 0)
            a++;
        if (!*a)
            luaL_error(L, "%s: unknown field '%s'", what, k);
    }
}

static void check_table_arg(lua_State *L, int idx, const char *what)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s needs a table: %s { ... }", what, what);
}

/* Copy of the string field @key, NULL when absent. */
static char *opt_string(lua_State *L, int idx, const char *what, const char *key)
{
    char *s = NULL;
    int t = lua_getfield(L, idx, key);
    if (t != LUA_TNIL) {
        if (t != LUA_TSTRING)
            luaL_error(L, "%s.%s must be a string", what, key);
        s = strdup(lua_tostring(L, -1));
        if (!s)
            luaL_error(L, "out of memory");
    }
    lua_pop(L, 1);
    return s;
}

static bool opt_int(lua_State *L, int idx, const char *what, const char *key,
                    lua_Integer min, lua_Integer max, lua_Integer *out)
{
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return false;
    }
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (t != LUA_TNUMBER || !ok || v < min || v > max) {
        if (min == 1 && max == LUA_MAXINTEGER)
            luaL_error(L, "%s.%s must be a positive integer", what, key);
        luaL_error(L, "%s.%s must be an integer from %I to %I", what, key, min, max);
    }
    lua_pop(L, 1);
    *out = v;
    return true;
}

/* host:port with a port from 1 to 65535, printable without spaces. */
static bool valid_address(const char *a)
{
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a || colon[1] == '\0')
        return false;
    for (const char *p = a; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return false;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    return errno == 0 && *end == '\0' && port >= 1 && port <= 65535;
}

static void set_address(lua_State *L, int idx, const char *what, const char *key,
                        char **slot)
{
    char *a = opt_string(L, idx, what, key);
    if (!a)
        return;
    if (!valid_address(a)) {
        free(a);
        luaL_error(L, "%s.%s must be \"host:port\"", what, key);
    }
    free(*slot);
    *slot = a;
}

static void set_string(char **slot, char *s)
{
    if (s) {
        free(*slot);
        *slot = s;
    }
}


/* The boolean field @key, false when absent. */
static bool opt_bool(lua_State *L, int idx, const char *what, const char *key)
{
    int t = lua_getfield(L, idx, key);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        luaL_error(L, "%s.%s must be true or false", what, key);
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static void set_secret(lua_State *L, config_t *c);
static void set_beside(lua_State *L, config_t *c, const char *key, char **slot);

/* ---- simple directives ------------------------------------------------- */

static int l_config_node(lua_State *L)
{
    static const char *const fields[] = {"id", "data", "raft", "client", "http", "plugin_dir",
                                         "join", "cluster_secret_file",
                                         "allow_unauthenticated_peers", "peer_tls_cert",
                                         "peer_tls_key", "peer_tls_ca", NULL};
    config_t *c = get_loader(L)->c;
    lua_Integer id;

    check_table_arg(L, 1, "node");
    check_fields(L, 1, "node", fields);
    if (opt_int(L, 1, "node", "id", 1, LUA_MAXINTEGER, &id))
        c->node_id = (uint64_t)id;
    set_string(&c->data_dir, opt_string(L, 1, "node", "data"));
    set_address(L, 1, "node", "raft", &c->raft_address);
    set_address(L, 1, "node", "client", &c->client_address);
    set_address(L, 1, "node", "http", &c->http_address);
    set_string(&c->plugin_dir, opt_string(L, 1, "node", "plugin_dir"));
    c->join = opt_bool(L, 1, "node", "join");
    c->allow_unauthenticated_peers = opt_bool(L, 1, "node", "allow_unauthenticated_peers");
    set_beside(L, c, "peer_tls_cert", &c->peer_tls_cert);
    set_beside(L, c, "peer_tls_key", &c->peer_tls_key);
    set_beside(L, c, "peer_tls_ca", &c->peer_tls_ca);
    set_secret(L, c);
    return 0;
}

/* The address field @key of the table at @idx (Lua-owned), NULL when absent. */
static const char *peek_address(lua_State *L, int idx, const char *what, const char *key)
{
    int t = lua_getfield(L, idx, key);
    const char *a = lua_tostring(L, -1);
    lua_pop(L, 1); /* the table still holds the string */
    if (t == LUA_TNIL)
        return NULL;
    if (t != LUA_TSTRING || !valid_address(a))
        luaL_error(L, "%s.%s must be \"host:port\"", what, key);
    return a;
}

static void add_peer(lua_State *L, config_t *c, lua_Integer id)
{
    static const char *const fields[] = {"raft", "client", "http", NULL};
    const char *raft = NULL, *client = NULL, *http = NULL;
    char what[48];

    snprintf(what, sizeof what, "peers[%lld]", (long long)id);
    for (unsigned i = 0; i < c->n_peers; i++)
        if (c->peers[i].id == (uint64_t)id)
            luaL_error(L, "%s is given twice", what);
    if (lua_type(L, -1) == LUA_TSTRING) {
        raft = lua_tostring(L, -1);
        if (!valid_address(raft))
            luaL_error(L, "%s must be \"host:port\"", what);
    } else if (lua_type(L, -1) == LUA_TTABLE) {
        int t = lua_gettop(L);
        check_fields(L, t, what, fields);
        raft = peek_address(L, t, what, "raft");
        client = peek_address(L, t, what, "client");
        http = peek_address(L, t, what, "http");
        if (!raft)
            luaL_error(L, "%s.raft is required", what);
    } else {
        luaL_error(L, "%s must be \"host:port\" or { raft = ..., client = ..., http = ... }",
                   what);
    }
    replica_peer_t *p = realloc(c->peers, (c->n_peers + 1) * sizeof *p);
    if (!p)
        luaL_error(L, "out of memory");
    c->peers = p;
    p = &c->peers[c->n_peers];
    *p = (replica_peer_t){(uint64_t)id, strdup(raft), client ? strdup(client) : NULL,
                          http ? strdup(http) : NULL};
    c->n_peers++;
    if (!p->raft_address || (client && !p->client_address) || (http && !p->http_address))
        luaL_error(L, "out of memory");
}

static int l_config_peers(lua_State *L)
{
    config_t *c = get_loader(L)->c;

    check_table_arg(L, 1, "peers");
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        int ok = 0;
        lua_Integer id = lua_tointegerx(L, -2, &ok);
        if (lua_type(L, -2) != LUA_TNUMBER || !ok || id < 1)
            luaL_error(L, "peers: keys must be node ids (positive integers): "
                          "peers { [2] = \"host:port\" }");
        add_peer(L, c, id);
        lua_pop(L, 1);
    }
    return 0;
}

static int l_config_auth(lua_State *L)
{
    static const char *const fields[] = {"token", "allow_anonymous", NULL};
    check_table_arg(L, 1, "auth");
    check_fields(L, 1, "auth", fields);
    set_string(&get_loader(L)->c->token, opt_string(L, 1, "auth", "token"));
    get_loader(L)->c->allow_anonymous = opt_bool(L, 1, "auth", "allow_anonymous");
    return 0;
}

static int l_config_log(lua_State *L)
{
    static const char *const fields[] = {"level", NULL};
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    config_t *c = get_loader(L)->c;

    check_table_arg(L, 1, "log");
    check_fields(L, 1, "log", fields);
    char *level = opt_string(L, 1, "log", "level");
    if (!level)
        return 0;
    int i = 0;
    while (levels[i] && strcmp(levels[i], level) != 0)
        i++;
    free(level);
    if (!levels[i])
        luaL_error(L, "log.level must be one of debug, info, warn, error");
    c->log_level = MQHUB_LOG_DEBUG + i;
    return 0;
}

static int l_config_limits(lua_State *L)
{
    static const char *const fields[] = {"max_frame", NULL};
    lua_Integer v;

    check_table_arg(L, 1, "limits");
    check_fields(L, 1, "limits", fields);
    if (opt_int(L, 1, "limits", "max_frame", 1024, (lua_Integer)1 << 30, &v))
        get_loader(L)->c->max_frame = (size_t)v;
    return 0;
}

static int l_config_snapshot(lua_State *L)
{
    static const char *const fields[] = {"threshold", "trailing", "log_bytes", "growth", NULL};
    config_t *c = get_loader(L)->c;
    lua_Integer v;

    check_table_arg(L, 1, "snapshot");
    check_fields(L, 1, "snapshot", fields);
    if (opt_int(L, 1, "snapshot", "threshold", 1, UINT_MAX, &v))
        c->snapshot_threshold = (unsigned)v;
    if (opt_int(L, 1, "snapshot", "trailing", 0, UINT_MAX, &v))
        c->snapshot_trailing = (unsigned)v;
    if (opt_int(L, 1, "snapshot", "log_bytes", 1 << 20, (lua_Integer)1 << 40, &v))
        c->snapshot_log_bytes = (uint64_t)v;
    if (opt_int(L, 1, "snapshot", "growth", 0, 10000, &v))
        c->snapshot_growth = (int)v;
    return 0;
}

/* ---- named directives: transport "x" {...}, queue "x" {...} ---------------- */

static void add_transport(lua_State *L, config_t *c, const char *name)
{
    for (unsigned i = 0; i < c->n_transports; i++)
        if (strcmp(c->transports[i].name, name) == 0)
            luaL_error(L, "transport \"%s\" is declared twice", name);
    char *path = NULL;
    if (lua_type(L, 1) == LUA_TTABLE)
        path = opt_string(L, 1, "transport", "path");
    config_transport_t *t = realloc(c->transports, (c->n_transports + 1) * sizeof *t);
    char *copy = strdup(name);
    if (!t || !copy) {
        free(path);
        free(copy);
        luaL_error(L, "out of memory");
    }
    c->transports = t;
    lua_pushvalue(L, 1);
    c->transports[c->n_transports++] =
        (config_transport_t){copy, path, luaL_ref(L, LUA_REGISTRYINDEX)};
}

/* Queue and topic attributes: names checked against the known set (a typo is
 * an error), values checked here so that packing below cannot fail. */
static void check_value(lua_State *L, int idx, const char *what, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
    case LUA_TNUMBER:
    case LUA_TSTRING:
        return;
    case LUA_TTABLE:
        if (depth >= MAX_ATTR_DEPTH)
            luaL_error(L, "%s: tables nested too deeply", what);
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            int kt = lua_type(L, -2);
            if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
                luaL_error(L, "%s: keys must be strings", what);
            check_value(L, lua_gettop(L), what, depth + 1);
            lua_pop(L, 1);
        }
        return;
    default:
        luaL_error(L, "%s: a %s cannot be an attribute value", what,
                   luaL_typename(L, idx));
    }
}

static void pack_value(lua_State *L, int idx, msgpack_packer *pk);

static void pack_table(lua_State *L, int idx, msgpack_packer *pk)
{
    lua_Unsigned len = lua_rawlen(L, idx);
    size_t n = 0;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        n++;
        lua_pop(L, 1);
    }
    if (len > 0 && n == len) { /* a sequence: an array */
        msgpack_pack_array(pk, (size_t)len);
        for (lua_Unsigned i = 1; i <= len; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            pack_value(L, lua_gettop(L), pk);
            lua_pop(L, 1);
        }
        return;
    }
    msgpack_pack_map(pk, n);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        size_t kl;
        lua_pushvalue(L, -2); /* tolstring on a copy keeps lua_next's key intact */
        const char *k = lua_tolstring(L, -1, &kl);
        msgpack_pack_str_with_body(pk, k, kl);
        lua_pop(L, 1);
        pack_value(L, lua_gettop(L), pk);
        lua_pop(L, 1);
    }
}

static void pack_value(lua_State *L, int idx, msgpack_packer *pk)
{
    size_t len;
    const char *s;

    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            msgpack_pack_int64(pk, lua_tointeger(L, idx));
        else
            msgpack_pack_double(pk, lua_tonumber(L, idx));
        break;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        msgpack_pack_str_with_body(pk, s, len);
        break;
    default:
        pack_table(L, idx, pk);
        break;
    }
}

/* Read @path, relative to the config file's folder unless absolute, into a
 * malloc'ed buffer. NULL with errno set on failure. */
static char *read_beside(const config_t *c, const char *path, size_t *len)
{
    char full[4096];
    const char *slash = c->path ? strrchr(c->path, '/') : NULL;
    FILE *f;
    char *buf = NULL;
    long size;

    if (path[0] != '/' && slash)
        snprintf(full, sizeof full, "%.*s/%s", (int)(slash - c->path), c->path, path);
    else
        snprintf(full, sizeof full, "%s", path);
    if (!(f = fopen(full, "rb")))
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)size + 1)) && fread(buf, 1, (size_t)size, f) == (size_t)size) {
        buf[size] = '\0';
        *len = (size_t)size;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* The file name node.@key into *@slot, relative to the config file's folder
 * unless absolute (as node.cluster_secret_file). */
static void set_beside(lua_State *L, config_t *c, const char *key, char **slot)
{
    const char *slash = c->path ? strrchr(c->path, '/') : NULL;
    char *path = opt_string(L, 1, "node", key), *full;

    if (!path || path[0] == '/' || !slash) {
        set_string(slot, path);
        return;
    }
    if (asprintf(&full, "%.*s/%s", (int)(slash - c->path), c->path, path) < 0) {
        free(path);
        luaL_error(L, "out of memory");
    }
    free(path);
    set_string(slot, full);
}

static void free_secret(config_t *c)
{
    if (c->cluster_secret) {
        explicit_bzero(c->cluster_secret, strlen(c->cluster_secret));
        free(c->cluster_secret);
        c->cluster_secret = NULL;
    }
}

/* node.cluster_secret_file (relative to the config file's folder unless
 * absolute): the cluster secret is the file's content without trailing
 * whitespace, PEER_SECRET_MIN to PEER_SECRET_MAX bytes and no NUL
 * (docs/security.md "Peers"). It is never logged. */
static void set_secret(lua_State *L, config_t *c)
{
    size_t len, size;
    char *s;
    int t = lua_getfield(L, 1, "cluster_secret_file");

    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TSTRING)
        luaL_error(L, "node.cluster_secret_file must be a string");
    const char *path = lua_tostring(L, -1);
    if (!(s = read_beside(c, path, &size)))
        luaL_error(L, "node.cluster_secret_file '%s': %s", path, strerror(errno));
    for (len = size; len > 0 && s[len - 1] && strchr(" \t\r\n", s[len - 1]); len--)
        s[len - 1] = '\0';
    if (len < PEER_SECRET_MIN || len > PEER_SECRET_MAX || strlen(s) != len) {
        explicit_bzero(s, size);
        free(s);
        luaL_error(L, "node.cluster_secret_file '%s': the secret must be %d to %d bytes "
                   "without NUL (make one with: openssl rand -hex 32 > FILE)", path,
                   PEER_SECRET_MIN, PEER_SECRET_MAX);
    }
    free_secret(c);
    c->cluster_secret = s;
    lua_pop(L, 1);
}

/* A hook given as a file ("scripts/risk/merchant_spike.lua") is loaded as the
 * script named after the file (merchant_spike) before the queue or topic is
 * created; the table's hook then names that script. */
static void add_hook_file(lua_State *L, config_t *c, const char *what)
{
    const char *path, *base;
    size_t plen, blen, slen;
    char name[65];
    char *source;

    lua_getfield(L, 1, "hook");
    path = lua_tolstring(L, -1, &plen);
    if (!path || plen < 5 || strcmp(path + plen - 4, ".lua") != 0) {
        lua_pop(L, 1);
        return;
    }
    base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    blen = strlen(base) - 4;
    snprintf(name, sizeof name, "%.*s", (int)(blen < MQHUB_NAME_MAX ? blen : MQHUB_NAME_MAX), base);
    if (!wire_name_valid(base, blen))
        luaL_error(L, "%s: hook file '%s' must be named like a script (%s)", what, path,
                   mqhub_strerror(MQHUB_EBAD_NAME));
    if (!(source = read_beside(c, path, &slen)))
        luaL_error(L, "%s: hook file '%s': %s", what, path, strerror(errno));
    config_object_t *a = realloc(c->scripts, (c->n_scripts + 1) * sizeof *a);
    char *copy = strdup(name);
    if (!a || !copy) {
        free(source);
        free(copy);
        luaL_error(L, "out of memory");
    }
    c->scripts = a;
    a[c->n_scripts++] = (config_object_t){copy, source, slen};
    lua_pop(L, 1);
    lua_pushstring(L, name);
    lua_setfield(L, 1, "hook");
}

static void add_object(lua_State *L, config_object_t **arr, unsigned *n,
                       const char *kind, const char *name, const char *const *fields)
{
    char what[96];

    for (unsigned i = 0; i < *n; i++)
        if (strcmp((*arr)[i].name, name) == 0)
            luaL_error(L, "%s \"%s\" is declared twice", kind, name);
    snprintf(what, sizeof what, "%s \"%s\"", kind, name);
    check_table_arg(L, 1, kind);
    check_fields(L, 1, what, fields);
    check_value(L, 1, what, 0);
    add_hook_file(L, get_loader(L)->c, what);

    config_object_t *a = realloc(*arr, (*n + 1) * sizeof *a);
    if (!a)
        luaL_error(L, "out of memory");
    *arr = a;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_table(L, 1, &pk);
    char *copy = strdup(name);
    if (!copy) {
        msgpack_sbuffer_destroy(&sb);
        luaL_error(L, "out of memory");
    }
    a[(*n)++] = (config_object_t){copy, sb.data, sb.size};
}

static int l_config_named_table(lua_State *L)
{
    static const char *const queue_fields[] = {
        "visibility_timeout", "polling_wait", "max_msg_size", "retention",
        "rewind_window", "max_backlog", "delay", "dead_letter", "ordered", "hook", NULL};
    static const char *const topic_fields[] = {"max_msg_size", "retention", "hook",
                                               NULL};
    loader_t *ld = get_loader(L);
    const char *kind = lua_tostring(L, lua_upvalueindex(2));
    const char *name = lua_tostring(L, lua_upvalueindex(3));

    ld->pending = NULL;
    if (strcmp(kind, "transport") == 0) {
        check_table_arg(L, 1, "transport");
        add_transport(L, ld->c, name);
    } else if (strcmp(kind, "queue") == 0) {
        add_object(L, &ld->c->queues, &ld->c->n_queues, kind, name, queue_fields);
    } else {
        add_object(L, &ld->c->topics, &ld->c->n_topics, kind, name, topic_fields);
    }
    return 0;
}

/* transport "tcp" returns the function that takes the table. */
static int l_config_named(lua_State *L)
{
    loader_t *ld = get_loader(L);
    const char *kind = lua_tostring(L, lua_upvalueindex(2));

    if (ld->pending) {
        lua_pushfstring(L, "%s%s needs a table: %s \"name\" { ... }", ld->pending_where,
                        ld->pending, ld->pending);
        return lua_error(L);
    }
    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_error(L, "%s needs a name: %s \"name\" { ... }", kind, kind);
    const char *name = lua_tostring(L, 1);
    if (!wire_name_valid(name, strlen(name)))
        luaL_error(L, "%s name \"%s\": %s", kind, name, mqhub_strerror(MQHUB_EBAD_NAME));
    luaL_where(L, 1);
    snprintf(ld->pending_where, sizeof ld->pending_where, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    ld->pending = strcmp(kind, "transport") == 0 ? "transport"
                  : strcmp(kind, "queue") == 0   ? "queue"
                                                 : "topic";
    lua_pushlightuserdata(L, ld);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, l_config_named_table, 3);
    return 1;
}

/* ---- the environment ----------------------------------------------------- */

static int l_config_unknown(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    return luaL_error(L, "unknown directive '%s' (expected node, peers, transport, "
                         "queue, topic, auth, log, limits, snapshot)",
                      k ? k : "?");
}

static const char *const directive_names[] = {
    "node", "peers", "auth", "log", "limits", "snapshot", "transport", "queue", "topic",
    NULL};

/* The directives point at the loader on config_load's stack: remove them once
 * the file has run, so the state kept for plugins cannot reach it. */
static void uninstall_directives(lua_State *L)
{
    lua_pushglobaltable(L);
    for (const char *const *n = directive_names; *n; n++) {
        lua_pushnil(L);
        lua_setfield(L, -2, *n);
    }
    lua_pop(L, 1);
}

static void install_directives(lua_State *L, loader_t *ld)
{
    static const luaL_Reg plain[] = {
        {"node", l_config_node},     {"peers", l_config_peers},
        {"auth", l_config_auth},     {"log", l_config_log},
        {"limits", l_config_limits}, {"snapshot", l_config_snapshot},
        {NULL, NULL}};
    static const char *const named[] = {"transport", "queue", "topic", NULL};

    lua_pushglobaltable(L);
    lua_pushlightuserdata(L, ld);
    luaL_setfuncs(L, plain, 1);
    for (const char *const *n = named; *n; n++) {
        lua_pushlightuserdata(L, ld);
        lua_pushstring(L, *n);
        lua_pushcclosure(L, l_config_named, 2);
        lua_setfield(L, -2, *n);
    }
    lua_newtable(L);
    lua_pushcfunction(L, l_config_unknown);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}

/* Message handler: string errors already carry "file:line:" (luaL_error,
 * syntax and runtime errors); other error objects get the position of the
 * innermost Lua function on the stack. */
static int msgh(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING)
        return 1;
    lua_Debug ar;
    int level = 1;
    while (lua_getstack(L, level, &ar) && lua_getinfo(L, "l", &ar) && ar.currentline <= 0)
        level++;
    luaL_where(L, level);
    lua_pushfstring(L, "error object is a %s value", luaL_typename(L, 1));
    lua_concat(L, 2);
    return 1;
}

/* ---- load ---------------------------------------------------------------- */

static int run_file(lua_State *L, loader_t *ld, const char *path, char *errmsg,
                    size_t errlen)
{
    lua_pushcfunction(L, msgh);
    int rv = luaL_loadfilex(L, path, "t");
    if (rv == LUA_OK)
        rv = lua_pcall(L, 0, 0, -2);
    if (rv == LUA_OK && ld->pending) {
        snprintf(errmsg, errlen, "%s%s needs a table: %s \"name\" { ... }",
                 ld->pending_where, ld->pending, ld->pending);
        return MQHUB_EBAD_REQUEST;
    }
    if (rv != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        if (!m)
            m = "error loading the configuration";
        /* Most messages name the file already; a refused binary chunk not. */
        snprintf(errmsg, errlen, "%s%s%s", strstr(m, path) ? "" : path,
                 strstr(m, path) ? "" : ": ", m);
        lua_settop(L, 0);
        return MQHUB_EBAD_REQUEST;
    }
    lua_settop(L, 0);
    return 0;
}

static int dup_default(char **slot, const char *def)
{
    if (!*slot)
        *slot = strdup(def);
    return *slot ? 0 : MQHUB_EINTERNAL;
}

/* No transport declared: TCP on MQHUB_DEFAULT_TCP_ADDRESS, WebSocket + dashboard on
 * MQHUB_DEFAULT_WS_ADDRESS. */
static int add_default_transports(lua_State *L, config_t *c)
{
    static const char *const names[] = {"tcp", "websocket"};
    static const char *const listens[] = {MQHUB_DEFAULT_TCP_ADDRESS, MQHUB_DEFAULT_WS_ADDRESS};

    c->transports = calloc(2, sizeof *c->transports);
    if (!c->transports)
        return MQHUB_EINTERNAL;
    for (unsigned i = 0; i < 2; i++) {
        lua_newtable(L);
        lua_pushstring(L, listens[i]);
        lua_setfield(L, -2, "listen");
        c->transports[i].name = strdup(names[i]);
        c->transports[i].table_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        c->n_transports++;
        if (!c->transports[i].name)
            return MQHUB_EINTERNAL;
    }
    return 0;
}

/* True when @path lies under the folder @dir (both without symlinks). */
static bool path_under(const char *path, const char *dir)
{
    char real[PATH_MAX];
    size_t n;

    if (realpath(dir, real) == NULL)
        return false;
    n = strlen(real);
    return strncmp(path, real, n) == 0 && path[n] == '/';
}

/* node.plugin_dir's default, into *@out (the caller frees it). A program run
 * from the build tree (make run, the tests) loads the build tree's plugins,
 * MQHUB_PLUGIN_DIR. An installed one loads <its folder>/MQHUB_BIN_TO_PLUGINDIR
 * (../lib/mqhub): found from the executable, not compiled in, so a tree
 * installed under any prefix uses its own plugins (docs/architecture.md
 * "Install layout"). */
static int default_plugin_dir(char **out, const char *file, char *errmsg, size_t errlen)
{
    char exe[PATH_MAX];
    size_t len = sizeof exe;
    char *slash;
    int rv = uv_exepath(exe, &len);

    if (rv != 0 || (slash = strrchr(exe, '/')) == NULL) {
        snprintf(errmsg, errlen, "%s: no node.plugin_dir and this program's own path is "
                 "unknown (uv_exepath: %s)", file, rv != 0 ? uv_strerror(rv) : exe);
        return MQHUB_EBAD_REQUEST;
    }
    if (path_under(exe, MQHUB_BUILD_DIR)) {
        *out = strdup(MQHUB_PLUGIN_DIR);
    } else {
        slash[1] = '\0';
        if (asprintf(out, "%s%s", exe, MQHUB_BIN_TO_PLUGINDIR) < 0)
            *out = NULL;
    }
    return *out ? 0 : MQHUB_EINTERNAL;
}

/* Whether @listen ("host:port", "[v6]:port") is a loopback address:
 * 127.0.0.0/8, ::1, ::ffff:127.x.x.x or "localhost". Anything else (0.0.0.0,
 * ::, another address, a host name) may be reachable from the network. */
static bool listen_is_loopback(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    unsigned char a[16];
    char host[64];
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);

    if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']') {
        listen++;
        n -= 2;
    }
    if (n >= sizeof host)
        return false;
    memcpy(host, listen, n);
    host[n] = '\0';
    if (strcmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) != 1)
        return false;
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return (memcmp(a, in6addr_loopback.s6_addr, 16) == 0) ||
           (memcmp(a, v4mapped, 12) == 0 && a[12] == 127);
}

/* The safe-defaults rule (docs/security.md "Safe defaults"): a transport that
 * listens beyond loopback needs the root token (users live in the replicated
 * state, unknown before it is loaded, and deleting the last one would open
 * the hub), unless auth.allow_anonymous = true, which is warned about on
 * every start. A transport without `listen` uses its loopback default. */
static int check_exposure(config_t *c, const char *file, char *errmsg, size_t errlen)
{
    if (c->token && c->allow_anonymous) {
        snprintf(errmsg, errlen, "%s: auth.token and auth.allow_anonymous = true contradict "
                 "each other", file);
        return MQHUB_EBAD_REQUEST;
    }
    if (c->allow_anonymous)
        log_warn("auth", "auth.allow_anonymous = true: without a root token, every client "
                 "that reaches a listener has every right until a user exists");
    for (unsigned i = 0; i < c->n_transports && !c->token; i++) {
        const char *listen = config_transport_string(c, &c->transports[i], "listen");
        if (!listen || listen_is_loopback(listen))
            continue;
        if (c->allow_anonymous) {
            log_warn("auth", "transport %s listens on %s, beyond loopback, with no token "
                     "(auth.allow_anonymous = true)", c->transports[i].name, listen);
            continue;
        }
        snprintf(errmsg, errlen, "%s: transport \"%s\" listens on %s, beyond loopback, and "
                 "no credential is configured: set auth { token = \"...\" } (openssl rand "
                 "-hex 32), or auth { allow_anonymous = true } to let anyone who reaches it "
                 "do anything", file, c->transports[i].name, listen);
        return MQHUB_EBAD_REQUEST;
    }
    return 0;
}

/* ---- dead-letter cycles -------------------------------------------------- */

/* One declared queue while check_dead_letters() follows their chains. */
typedef struct queue_dep {
    int next;            /* its dead-letter queue's index among the declared, -1: none */
    unsigned char state; /* 0 not seen, 1 on the current walk, 2 cleared */
} queue_dep_t;

/* The dead-letter queue @o names into @buf ("" when none). A value of a
 * wrong type reads as none here: the state machine refuses it. */
static void dead_letter_of(const config_object_t *o, char *buf, size_t size)
{
    msgpack_unpacked u;
    const msgpack_object *q;

    buf[0] = 0;
    msgpack_unpacked_init(&u);
    if (o->attrs_len > 0 &&
        mp_unpack(&u, o->attrs, o->attrs_len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        (q = mp_map_get(mp_map_get(&u.data, "dead_letter"), "queue")) != NULL &&
        q->type == MSGPACK_OBJECT_STR && q->via.str.size < size) {
        memcpy(buf, q->via.str.ptr, q->via.str.size);
        buf[q->via.str.size] = 0;
    }
    msgpack_unpacked_destroy(&u);
}

/* "a -> b -> a" into @errmsg: the cycle that starts at @d[@start]. */
static void cycle_error(const config_t *c, const queue_dep_t *d, int start, const char *file,
                        char *errmsg, size_t errlen)
{
    char path[512];
    size_t off = 0;
    int j = start;

    path[0] = 0;
    do {
        int w = snprintf(path + off, sizeof path - off, "%s -> ", c->queues[j].name);
        off = w > 0 && off + (size_t)w < sizeof path ? off + (size_t)w : off;
        j = d[j].next;
    } while (j != start);
    snprintf(errmsg, errlen, "%s: queue \"%s\": the dead-letter queues form a cycle "
             "(%s%s): a dead-letter queue must exist before the queues that name it, so "
             "these can never be created", file, c->queues[start].name, path,
             c->queues[start].name);
}

/* Refuse dead-letter queues declared in a cycle (a -> b -> a, or a queue
 * naming itself): a dead-letter queue must exist before a queue names it,
 * so none of them could ever be created. Any other order works: the hub
 * creates a declared dead-letter queue before the queues that name it
 * (declare_queues); one the file does not declare may exist already (the
 * state machine's to check). */
static int check_dead_letters(config_t *c, const char *file, char *errmsg, size_t errlen)
{
    unsigned n = c->n_queues;
    queue_dep_t *d = calloc(n + 1, sizeof *d);
    int rv = 0;

    if (!d)
        return MQHUB_EINTERNAL;
    for (unsigned i = 0; i < n; i++) {
        char dlq[MQHUB_NAME_MAX + 1];

        dead_letter_of(&c->queues[i], dlq, sizeof dlq);
        d[i].next = -1;
        for (unsigned k = 0; k < n && dlq[0]; k++)
            if (strcmp(c->queues[k].name, dlq) == 0)
                d[i].next = (int)k;
    }
    /* Each queue names at most one other: follow the chain from each queue
     * not yet cleared; meeting the walk itself again is a cycle. */
    for (unsigned i = 0; i < n && rv == 0; i++) {
        int j = (int)i;

        while (j >= 0 && d[j].state == 0) {
            d[j].state = 1;
            j = d[j].next;
        }
        if (j >= 0 && d[j].state == 1) {
            cycle_error(c, d, j, file, errmsg, errlen);
            rv = MQHUB_EBAD_REQUEST;
        }
        for (j = (int)i; j >= 0 && d[j].state == 1; j = d[j].next)
            d[j].state = 2;
    }
    free(d);
    return rv;
}

static void free_peer(replica_peer_t *p)
{
    free((char *)p->raft_address);
    free((char *)p->client_address);
    free((char *)p->http_address);
}

/* node.@key (*@slot) and the same address of this node's peers entry
 * (@entry, NULL when absent) must agree; the entry is node.@key's default. */
static int merge_self_address(char **slot, const char *entry, const char *key,
                              const config_t *c, const char *file, char *errmsg,
                              size_t errlen)
{
    if (!entry)
        return 0;
    if (*slot && strcmp(*slot, entry) != 0) {
        snprintf(errmsg, errlen, "%s: peers[%llu] is this node (node.id = %llu), but its %s = "
                 "\"%s\" differs from node.%s = \"%s\": give both the same address, or "
                 "leave node.%s out", file, (unsigned long long)c->node_id,
                 (unsigned long long)c->node_id, key, entry, key, *slot, key);
        return MQHUB_EBAD_REQUEST;
    }
    if (!*slot && !(*slot = strdup(entry)))
        return MQHUB_EINTERNAL;
    return 0;
}

/* A peers table may list this node too (one table on every node, like
 * etcd's initial cluster): its entry gives node.raft, node.client and
 * node.http their defaults (or must agree with them), then leaves c->peers,
 * which lists the other nodes only. */
static int take_self_entry(config_t *c, const char *file, char *errmsg, size_t errlen)
{
    for (unsigned i = 0; i < c->n_peers; i++) {
        replica_peer_t *p = &c->peers[i];
        if (p->id != c->node_id)
            continue;
        int rv = merge_self_address(&c->raft_address, p->raft_address, "raft", c, file,
                                    errmsg, errlen);
        if (rv == 0)
            rv = merge_self_address(&c->client_address, p->client_address, "client", c,
                                    file, errmsg, errlen);
        if (rv == 0)
            rv = merge_self_address(&c->http_address, p->http_address, "http", c, file,
                                    errmsg, errlen);
        if (rv != 0)
            return rv;
        free_peer(p);
        memmove(p, p + 1, (c->n_peers - i - 1) * sizeof *p);
        c->n_peers--;
        return 0;
    }
    return 0;
}

/* The length of @addr's host part ("h:p", "[v6]:p"); its port after it. */
static size_t address_host_len(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    return colon ? (size_t)(colon - addr) : strlen(addr);
}

/* True when @addr listens on every interface: 0.0.0.0, [::] or no host. */
static bool address_is_wildcard(const char *addr)
{
    size_t hl = address_host_len(addr);
    return hl == 0 || (hl == 7 && strncmp(addr, "0.0.0.0", 7) == 0) ||
           (hl == 4 && strncmp(addr, "[::]", 4) == 0);
}

/* The address clients (tcp) and browsers (websocket) reach this node at:
 * node.client / node.http, else that transport's listen address — but a
 * listen on every interface names no host another machine can reach (and
 * 0.0.0.0 means this machine to a client), so then the host of node.raft,
 * which the peers reach, with the listen's port (docs/operations.md). */
static int default_node_address(config_t *c, const config_transport_t *t)
{
    const char *listen = config_transport_string(c, t, "listen");
    char **slot = strcmp(t->name, "tcp") == 0         ? &c->client_address
                  : strcmp(t->name, "websocket") == 0 ? &c->http_address
                                                      : NULL;
    const char *raft = c->raft_address;
    if (!slot || *slot || !listen)
        return 0;
    if (address_is_wildcard(listen) && raft && !address_is_wildcard(raft) &&
        strchr(listen, ':')) {
        int hl = (int)address_host_len(raft);
        if (asprintf(slot, "%.*s%s", hl, raft, listen + address_host_len(listen)) < 0)
            *slot = NULL;
    } else {
        *slot = strdup(listen);
    }
    return *slot ? 0 : MQHUB_EINTERNAL;
}

static int finish(config_t *c, char *errmsg, size_t errlen)
{
    lua_State *L = c->L;
    const char *file = c->path ? c->path : "defaults";
    int rv = take_self_entry(c, file, errmsg, errlen);

    if (rv != 0)
        return rv;
    if ((c->n_peers > 0 || c->join) && !c->cluster_secret && !c->allow_unauthenticated_peers) {
        snprintf(errmsg, errlen, "%s: a cluster (peers or node.join) needs "
                 "node.cluster_secret_file, the same on every node (openssl rand -hex 32 > "
                 "FILE; chmod 600 FILE), or node.allow_unauthenticated_peers = true on a "
                 "network only the nodes can reach", file);
        return MQHUB_EBAD_REQUEST;
    }
    if (!c->peer_tls_cert != !c->peer_tls_key || !c->peer_tls_cert != !c->peer_tls_ca) {
        snprintf(errmsg, errlen, "%s: peer TLS needs all of node.peer_tls_cert, "
                 "node.peer_tls_key and node.peer_tls_ca (the cluster CA)", file);
        return MQHUB_EBAD_REQUEST;
    }
    if (c->peer_tls_cert && !c->cluster_secret) {
        snprintf(errmsg, errlen, "%s: node.peer_tls_* needs node.cluster_secret_file: the "
                 "secret stays the peers' authentication, TLS adds privacy", file);
        return MQHUB_EBAD_REQUEST;
    }
    if (c->cluster_secret && c->allow_unauthenticated_peers) {
        snprintf(errmsg, errlen, "%s: node.cluster_secret_file and "
                 "node.allow_unauthenticated_peers = true contradict each other", file);
        return MQHUB_EBAD_REQUEST;
    }
    if (!c->plugin_dir) {
        rv = default_plugin_dir(&c->plugin_dir, file, errmsg, errlen);
        if (rv != 0)
            return rv;
    }
    if (dup_default(&c->data_dir, DEFAULT_DATA_DIR) ||
        dup_default(&c->raft_address, DEFAULT_RAFT) ||
        (c->n_transports == 0 && add_default_transports(L, c)))
        return MQHUB_EINTERNAL;
    for (unsigned i = 0; i < c->n_transports; i++) {
        config_transport_t *t = &c->transports[i];
        if (!t->path && asprintf(&t->path, "%s/%s.so", c->plugin_dir, t->name) < 0) {
            t->path = NULL;
            return MQHUB_EINTERNAL;
        }
        if (default_node_address(c, t) != 0)
            return MQHUB_EINTERNAL;
    }
    rv = check_dead_letters(c, file, errmsg, errlen);
    return rv != 0 ? rv : check_exposure(c, file, errmsg, errlen);
}

int config_load(config_t **out, const char *path, char *errmsg, size_t errlen)
{
    config_t *c = calloc(1, sizeof *c);
    lua_State *L = luaL_newstate();
    int rv = MQHUB_EINTERNAL;

    if (!c || !L) {
        snprintf(errmsg, errlen, "configuration: out of memory");
        free(c);
        if (L)
            lua_close(L);
        return MQHUB_EINTERNAL;
    }
    c->L = L;
    c->node_id = 1;
    c->max_frame = MQHUB_DEFAULT_MAX_FRAME;
    c->log_level = MQHUB_LOG_INFO;
    c->snapshot_growth = -1;
    luaL_openlibs(L);
    loader_t ld = {.c = c};
    install_directives(L, &ld);
    if (path && !(c->path = strdup(path)))
        goto fail;
    rv = path ? run_file(L, &ld, path, errmsg, errlen) : 0;
    uninstall_directives(L);
    if (rv != 0)
        goto fail;
    if ((rv = finish(c, errmsg, errlen)) != 0)
        goto fail;
    *out = c;
    return 0;
fail:
    if (rv == MQHUB_EINTERNAL)
        snprintf(errmsg, errlen, "configuration: out of memory");
    config_free(c);
    return rv;
}

static void free_objects(config_object_t *a, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        free(a[i].name);
        free(a[i].attrs);
    }
    free(a);
}

void config_free(config_t *c)
{
    if (!c)
        return;
    if (c->L)
        lua_close(c->L);
    for (unsigned i = 0; i < c->n_peers; i++)
        free_peer(&c->peers[i]);
    for (unsigned i = 0; i < c->n_transports; i++) {
        free(c->transports[i].name);
        free(c->transports[i].path);
    }
    free_objects(c->queues, c->n_queues);
    free_objects(c->topics, c->n_topics);
    free_objects(c->scripts, c->n_scripts);
    free(c->peers);
    free(c->transports);
    free(c->data_dir);
    free(c->raft_address);
    free(c->token);
    free_secret(c);
    free(c->plugin_dir);
    free(c->peer_tls_cert);
    free(c->peer_tls_key);
    free(c->peer_tls_ca);
    free(c->path);
    free(c->client_address);
    free(c->http_address);
    free(c);
}

/* ---- plugin lookups ------------------------------------------------------- */

/* Push t's field @key; returns its Lua type. The caller pops 2. */
static int push_field(config_t *c, const config_transport_t *t, const char *key)
{
    lua_State *L = c->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->table_ref);
    return lua_getfield(L, -1, key);
}

const char *config_transport_string(config_t *c, const config_transport_t *t,
                                    const char *key)
{
    lua_State *L = c->L;
    /* The string stays alive: the table holding it is anchored in the registry. */
    const char *s = push_field(c, t, key) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 2);
    return s;
}

int config_transport_int(config_t *c, const config_transport_t *t, const char *key,
                         int64_t def, int64_t *out)
{
    lua_State *L = c->L;
    int type = push_field(c, t, key);
    int ok = 0;
    lua_Integer v = type == LUA_TBOOLEAN ? lua_toboolean(L, -1) : lua_tointegerx(L, -1, &ok);
    lua_pop(L, 2);
    if (type == LUA_TNIL) {
        *out = def;
        return 0;
    }
    if (type == LUA_TBOOLEAN) { /* dashboard = true reads as 1 */
        *out = v;
        return 0;
    }
    if (type != LUA_TNUMBER || !ok)
        return MQHUB_EBAD_REQUEST;
    *out = v;
    return 0;
}
