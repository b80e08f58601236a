/* cmd_context.c: saved contexts — `mqhub context add|use|list|show|del` —
 * and where the connection options come from (cmd_context_resolve()).
 *
 * A context names a hub and how to reach it (server, token or token file,
 * TLS files), like `nats context`. They live in one JSON document,
 * $XDG_CONFIG_HOME/mqhub/contexts.json (else ~/.config/mqhub/contexts.json):
 *   {"selected": "prod", "contexts": {"prod": {"server": "...", "token": "...",
 *    "token_file": "...", "tls": true, "ca": "...", "cert": "...",
 *    "key_file": "..."}}}
 * The file is written with mode 0600 into a directory of mode 0700, through
 * a temporary file renamed over it (a reader never sees half a file); a file
 * that holds a token and that the group or others may read is refused, with
 * the chmod that fixes it. Each connection option is taken from the first of:
 * its flag, its environment variable (MQHUB_SERVER, MQHUB_TOKEN, MQHUB_CA,
 * MQHUB_CERT, MQHUB_KEY), the context (`--context NAME`, else
 * $MQHUB_CONTEXT, else the selected one), the default. Start at
 * cmd_context_resolve() and cmd_context().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define CONTEXT_NAME_MAX 64
#define TOKEN_FILE_MAX 4096

/* The path of contexts.json into @buf; false when neither XDG_CONFIG_HOME
 * nor HOME is set. */
static bool context_path(char *buf, size_t size, bool dir_only)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg == '/')
        n = snprintf(buf, size, "%s/mqhub%s", xdg, dir_only ? "" : "/contexts.json");
    else if (home && *home)
        n = snprintf(buf, size, "%s/.config/mqhub%s", home, dir_only ? "" : "/contexts.json");
    else
        return false;
    return n > 0 && (size_t)n < size;
}

static bool context_has_token(json_t *doc)
{
    const char *name;
    json_t *c;
    json_object_foreach(json_object_get(doc, "contexts"), name, c)
        if (json_is_string(json_object_get(c, "token")))
            return true;
    return false;
}

/* Read contexts.json into *@doc (a new empty document when there is no
 * file). 0, or CLI_USAGE having said what is wrong (unreadable, not JSON,
 * a token in a file others may read). */
static int context_load(json_t **doc, char *path, size_t size)
{
    json_error_t err;
    struct stat st;
    *doc = NULL;
    if (!context_path(path, size, false)) {
        fprintf(stderr, "mqhub: contexts: set HOME or XDG_CONFIG_HOME\n");
        return CLI_USAGE;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        *doc = json_pack("{s:n,s:{}}", "selected", "contexts");
        return CLI_OK;
    }
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "mqhub: contexts: open %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return CLI_USAGE;
    }
    *doc = json_loadfd(fd, JSON_REJECT_DUPLICATES, &err);
    close(fd);
    if (!json_is_object(*doc) || !json_is_object(json_object_get(*doc, "contexts"))) {
        fprintf(stderr, "mqhub: contexts: %s: %s (line %d); fix or remove the file\n", path,
                *doc ? "not a {\"contexts\": {...}} document" : err.text, err.line);
        json_decref(*doc);
        *doc = NULL;
        return CLI_USAGE;
    }
    if ((st.st_mode & 077) && context_has_token(*doc)) {
        fprintf(stderr,
                "mqhub: contexts: %s holds a token but its mode %04o lets others read it; "
                "refusing to use it.\nfix it with: chmod 600 %s (and consider changing the "
                "token)\n", path, (unsigned)(st.st_mode & 07777), path);
        json_decref(*doc);
        *doc = NULL;
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* Write @doc to contexts.json: a 0600 temporary file beside it, synced,
 * renamed over it. 0 or CLI_USAGE having said why. */
static int context_save(json_t *doc)
{
    char dir[4096], path[4200], tmp[4300];
    if (!context_path(dir, sizeof dir, true) || !context_path(path, sizeof path, false)) {
        fprintf(stderr, "mqhub: contexts: set HOME or XDG_CONFIG_HOME\n");
        return CLI_USAGE;
    }
    /* ~/.config may be missing too: make each level (mode 0700) */
    for (char *p = strchr(dir + 1, '/');; p = strchr(p + 1, '/')) {
        if (p)
            *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "mqhub: contexts: mkdir %s: %s\n", dir, strerror(errno));
            return CLI_USAGE;
        }
        if (!p)
            break;
        *p = '/';
    }
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    size_t len = text ? strlen(text) : 0;
    bool ok = fd >= 0 && text && fchmod(fd, 0600) == 0 &&
              write(fd, text, len) == (ssize_t)len && write(fd, "\n", 1) == 1 &&
              fsync(fd) == 0;
    int saved = errno;
    free(text);
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    if (ok && rename(tmp, path) == 0)
        return CLI_OK;
    saved = ok ? errno : saved;
    if (fd >= 0)
        unlink(tmp);
    fprintf(stderr, "mqhub: contexts: write %s: %s\n", path, strerror(saved));
    return CLI_USAGE;
}

static bool context_name_ok(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= CONTEXT_NAME_MAX &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* The first line of @path, the token a context's token_file names, into
 * @buf. 0 or CLI_USAGE having said why. */
static int token_from_file(const char *path, char *buf, size_t size, const char *whose)
{
    FILE *f = fopen(path, "re");
    if (!f || !fgets(buf, (int)size, f)) {
        fprintf(stderr, "mqhub: %s: read token file %s: %s\n", whose, path,
                f ? "empty" : strerror(errno));
        if (f)
            fclose(f);
        return CLI_USAGE;
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return CLI_OK;
}

/* The context @ctx whose token and TLS settings go with this command: only
 * when the server is the context's own (or the context names none). A token
 * saved for one server is never sent to another that a flag or MQHUB_SERVER
 * names; the command is told so, once, on stderr. */
static json_t *context_credentials(const cli_t *cli, json_t *ctx, const char *name)
{
    const char *server = json_string_value(json_object_get(ctx, "server"));
    if (!ctx || !server || strcmp(server, cli->server) == 0)
        return ctx;
    const char *env_token = getenv("MQHUB_TOKEN");
    if (!cli->token && !(env_token && *env_token) &&
        (json_object_get(ctx, "token") || json_object_get(ctx, "token_file")))
        fprintf(stderr,
                "mqhub: context %s's token is for %s, so it is not sent to %s; give --token "
                "(or save a context for that server)\n", name, server, cli->server);
    return NULL;
}

/* @cur when set, else the environment variable @env when set and not empty,
 * else the context's field @key (a string of @ctx, NULL when absent). */
static const char *pick(const char *cur, const char *env, json_t *ctx, const char *key)
{
    const char *v = getenv(env);
    if (cur)
        return cur;
    if (v && *v)
        return v;
    return json_string_value(json_object_get(ctx, key));
}

int cmd_context_resolve(cli_t *cli)
{
    static char token[TOKEN_FILE_MAX];
    static json_t *doc; /* lives as long as the process: cli points into it */
    char path[4200];
    const char *env = getenv("MQHUB_CONTEXT"), *name = cli->context;
    json_t *ctx = NULL;
    int rc;

    if (!name && env && *env)
        name = env;
    if (cli->token && cli->token_file) {
        fprintf(stderr, "mqhub: give --token or --token-file, not both\n");
        return CLI_USAGE;
    }
    if (cli->token_file && (rc = token_from_file(cli->token_file, token, sizeof token,
                                                 "--token-file")) != 0)
        return rc;
    if (cli->token_file)
        cli->token = token;
    if (name || context_path(path, sizeof path, false)) {
        if ((rc = context_load(&doc, path, sizeof path)) != 0)
            return rc;
        name = name ? name : json_string_value(json_object_get(doc, "selected"));
        ctx = name ? json_object_get(json_object_get(doc, "contexts"), name) : NULL;
        if (name && !ctx) {
            fprintf(stderr, "mqhub: no context \"%s\" in %s; see `mqhub context list`%s\n", name,
                    path, cli->context ? "" : " (selected, or from MQHUB_CONTEXT)");
            return CLI_USAGE;
        }
    }
    cli->context = ctx ? name : NULL;
    const char *env_server = getenv("MQHUB_SERVER");
    cli->server_from_context = !cli->server && !(env_server && *env_server) &&
                               json_is_string(json_object_get(ctx, "server"));
    cli->server = pick(cli->server, "MQHUB_SERVER", ctx, "server");
    if (!cli->server)
        cli->server = MQHUB_DEFAULT_TCP_ADDRESS;
    json_t *cred = context_credentials(cli, ctx, name);
    cli->token = pick(cli->token, "MQHUB_TOKEN", cred, "token");
    const char *tfile = json_string_value(json_object_get(cred, "token_file"));
    if (!cli->token && tfile) {
        char whose[128];
        snprintf(whose, sizeof whose, "context %s", name);
        if ((rc = token_from_file(tfile, token, sizeof token, whose)) != 0)
            return rc;
        cli->token = token;
    }
    cli->ca = pick(cli->ca, "MQHUB_CA", cred, "ca");
    cli->cert = pick(cli->cert, "MQHUB_CERT", cred, "cert");
    cli->cert_key = pick(cli->cert_key, "MQHUB_KEY", cred, "key_file");
    cli->tls = cli->tls || json_is_true(json_object_get(cred, "tls")) || cli->ca || cli->cert;
    return CLI_OK;
}

/* ------------------------------------------------------------- commands */

static int need(cli_t *cli, const char *cmd, int n)
{
    if (cli->n_args < n)
        return cli_usage_error(cmd, "missing context NAME");
    if (cli->n_args > n)
        return cli_usage_error(cmd, "unexpected argument \"%s\"", cli->args[n]);
    if (n > 0 && !context_name_ok(cli->args[0]))
        return cli_usage_error(cmd, "a context NAME has 1-%d letters, digits, '.', '_' or '-'",
                               CONTEXT_NAME_MAX);
    return 0;
}

/* `context add NAME --server S [--token T | --token-file F] [--tls] [--ca F]
 * [--cert F --key-file F]`: create or replace; the first one is selected. */
static int c_add(cli_t *cli)
{
    char path[4200];
    json_t *doc;
    int rc = need(cli, "context add", 1);
    if (rc != 0)
        return rc;
    if (!cli->server)
        return cli_usage_error("context add", "give --server HOST[:PORT]");
    if (cli->token && cli->token_file)
        return cli_usage_error("context add", "give --token or --token-file, not both");
    if ((rc = context_load(&doc, path, sizeof path)) != 0)
        return rc;
    json_t *c = json_pack("{s:s}", "server", cli->server);
    if (cli->token)
        json_object_set_new(c, "token", json_string(cli->token));
    /* files by absolute path: the context works from any directory */
    const char *files[][2] = {{"token_file", cli->token_file}, {"ca", cli->ca},
                              {"cert", cli->cert}, {"key_file", cli->cert_key}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *abs = files[i][1] ? realpath(files[i][1], NULL) : NULL;
        if (files[i][1] && !abs) {
            fprintf(stderr, "mqhub: context add: %s %s: %s\n", files[i][0], files[i][1],
                    strerror(errno));
            json_decref(c);
            json_decref(doc);
            return CLI_USAGE;
        }
        if (abs)
            json_object_set_new(c, files[i][0], json_string(abs));
        free(abs);
    }
    if (cli->tls || cli->ca || cli->cert)
        json_object_set_new(c, "tls", json_true());
    bool replaced = json_object_get(json_object_get(doc, "contexts"), cli->args[0]) != NULL;
    bool select = !json_is_string(json_object_get(doc, "selected"));
    json_object_set_new(json_object_get(doc, "contexts"), cli->args[0], c);
    if (select)
        json_object_set_new(doc, "selected", json_string(cli->args[0]));
    rc = context_save(doc);
    json_decref(doc);
    if (rc != 0)
        return rc;
    if (cli->json)
        out_json(json_pack("{s:b,s:s,s:b,s:s}", "ok", 1, "name", cli->args[0], "selected",
                           select, "file", path));
    else
        printf("%s context %s in %s%s\n", replaced ? "replaced" : "saved", cli->args[0], path,
               select ? " (selected: it is the only one)" : "");
    return CLI_OK;
}

/* `context use NAME` / `context del NAME`. */
static int c_use_del(cli_t *cli, bool use)
{
    const char *cmd = use ? "context use" : "context del";
    char path[4200];
    json_t *doc;
    int rc = need(cli, cmd, 1);
    if (rc != 0 || (rc = context_load(&doc, path, sizeof path)) != 0)
        return rc;
    json_t *all = json_object_get(doc, "contexts");
    const char *sel = json_string_value(json_object_get(doc, "selected"));
    bool was_selected = sel && !strcmp(sel, cli->args[0]);
    if (!json_object_get(all, cli->args[0])) {
        fprintf(stderr, "mqhub: no context \"%s\" in %s; see `mqhub context list`\n",
                cli->args[0], path);
        json_decref(doc);
        return CLI_SERVER;
    }
    if (use)
        json_object_set_new(doc, "selected", json_string(cli->args[0]));
    else
        json_object_del(all, cli->args[0]);
    if (!use && was_selected)
        json_object_set_new(doc, "selected", json_null());
    rc = context_save(doc);
    json_decref(doc);
    if (rc != 0)
        return rc;
    if (cli->json)
        out_json(json_pack("{s:b,s:s}", "ok", 1, "name", cli->args[0]));
    else
        printf("%s context %s%s\n", use ? "selected" : "deleted", cli->args[0],
               !use && was_selected ? " (no context is selected now)" : "");
    return CLI_OK;
}

/* What a context's token is shown as: never the token itself. */
static const char *token_cell(json_t *c)
{
    if (json_is_string(json_object_get(c, "token")))
        return "(saved)";
    return json_is_string(json_object_get(c, "token_file")) ? "(file)" : "-";
}

/* A context as shown: the token replaced by token_cell(). */
static json_t *context_shown(json_t *c)
{
    json_t *j = json_deep_copy(c);
    if (json_object_get(j, "token"))
        json_object_set_new(j, "token", json_string(token_cell(c)));
    return j;
}

static int c_list(cli_t *cli)
{
    char path[4200];
    json_t *doc, *c;
    const char *name;
    int rc = need(cli, "context list", 0);
    if (rc != 0 || (rc = context_load(&doc, path, sizeof path)) != 0)
        return rc;
    const char *sel = json_string_value(json_object_get(doc, "selected"));
    if (cli->json) {
        json_t *arr = json_array();
        json_object_foreach(json_object_get(doc, "contexts"), name, c) {
            json_t *j = context_shown(c);
            json_object_set_new(j, "name", json_string(name));
            json_object_set_new(j, "selected", json_boolean(sel && !strcmp(sel, name)));
            json_array_append_new(arr, j);
        }
        out_json(json_pack("{s:o,s:s?,s:s}", "contexts", arr, "selected", sel, "file", path));
        json_decref(doc);
        return CLI_OK;
    }
    table_t *t = out_table_new(5, "", "NAME", "SERVER", "TOKEN", "TLS");
    json_object_foreach(json_object_get(doc, "contexts"), name, c)
        out_table_row(t, sel && !strcmp(sel, name) ? "*" : "", name,
                      json_string_value(json_object_get(c, "server")), token_cell(c),
                      json_is_true(json_object_get(c, "tls")) ? "yes" : "no");
    if (json_object_size(json_object_get(doc, "contexts")) == 0)
        printf("no contexts in %s; add one with: mqhub context add NAME --server HOST:PORT\n",
               path);
    out_table_print(t, json_object_size(json_object_get(doc, "contexts")) ? stdout : NULL);
    json_decref(doc);
    return CLI_OK;
}

/* `context show [NAME]`: the selected context (or NAME), field by field. */
static int c_show(cli_t *cli)
{
    char path[4200];
    json_t *doc;
    int rc = cli->n_args > 1 ? need(cli, "context show", 1) : 0;
    if (rc != 0 || (rc = context_load(&doc, path, sizeof path)) != 0)
        return rc;
    const char *name = cli->n_args ? cli->args[0]
                                   : json_string_value(json_object_get(doc, "selected"));
    json_t *c = name ? json_object_get(json_object_get(doc, "contexts"), name) : NULL;
    if (!c) {
        fprintf(stderr, name ? "mqhub: no context \"%s\" in %s; see `mqhub context list`\n"
                             : "mqhub: no context is selected%s in %s; `mqhub context use "
                               "NAME` selects one\n",
                name ? name : "", path);
        json_decref(doc);
        return CLI_SERVER;
    }
    json_t *j = context_shown(c);
    json_object_set_new(j, "file", json_string(path));
    if (cli->json) {
        json_object_set_new(j, "name", json_string(name));
        out_json(j);
    } else {
        out_fields("CONTEXT", name, j);
        json_decref(j);
    }
    json_decref(doc);
    return CLI_OK;
}

int cmd_context(cli_t *cli)
{
    const char *sub = cli->subcommand;
    if (!strcmp(sub, "add"))
        return c_add(cli);
    if (!strcmp(sub, "use"))
        return c_use_del(cli, true);
    if (!strcmp(sub, "del") || !strcmp(sub, "delete"))
        return c_use_del(cli, false);
    if (!strcmp(sub, "list"))
        return c_list(cli);
    if (!strcmp(sub, "show"))
        return c_show(cli);
    return cli_unknown_subcommand("context", sub);
}
