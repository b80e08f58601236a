/* out.c: how the mqhub CLI prints: aligned tables for people, compact JSON
 * (jansson) for scripts, and bodies shown as text when they are UTF-8.
 * Start with out_table_new()/out_table_row()/out_table_print(), out_json_body()
 * and out_fields() (the one layout of every `get` command: a KIND NAME
 * heading, then one "field  value" row each, units written after the number).
 * Server replies become JSON through out_msgpack_json(), messages of receive
 * through out_msg_json(), and those of queue.peek and topic.peek through
 * out_peek_json(). To give a new field a unit: a row
 * in field_units.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct table {
    unsigned ncols;
    size_t nrows, cap;
    char **cells; /* nrows * ncols, row 0 the headings */
};

static void table_add(table_t *t, va_list ap)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->cells = realloc(t->cells, t->cap * t->ncols * sizeof *t->cells);
        if (!t->cells)
            abort();
    }
    for (unsigned i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        t->cells[t->nrows * t->ncols + i] = strdup(s ? s : "");
    }
    t->nrows++;
}

table_t *out_table_new(unsigned ncols, ...)
{
    va_list ap;
    table_t *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->ncols = ncols;
    va_start(ap, ncols);
    table_add(t, ap);
    va_end(ap);
    return t;
}

void out_table_row(table_t *t, ...)
{
    va_list ap;
    va_start(ap, t);
    table_add(t, ap);
    va_end(ap);
}

/* Display width: count UTF-8 lead bytes, not continuation bytes. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

void out_table_print(table_t *t, FILE *f)
{
    size_t *w = calloc(t->ncols, sizeof *w);
    if (!w)
        abort();
    for (size_t r = 0; r < t->nrows; r++)
        for (unsigned c = 0; c < t->ncols; c++) {
            size_t cw = width(t->cells[r * t->ncols + c]);
            w[c] = cw > w[c] ? cw : w[c];
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (unsigned c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            bool last = c + 1 == t->ncols;
            if (f)
                fputs(s, f);
            for (size_t pad = width(s); f && !last && pad < w[c] + 2; pad++)
                fputc(' ', f);
            free(t->cells[r * t->ncols + c]);
        }
        if (f)
            fputc('\n', f);
    }
    free(w);
    free(t->cells);
    free(t);
}

void out_json(json_t *j)
{
    json_dumpf(j, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(j);
}

bool out_utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0, k;
    while (i < n) {
        unsigned char b = p[i];
        if (b == 0)
            return false; /* jansson strings cannot hold NUL */
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xc2 && b <= 0xdf)
            k = 1;
        else if (b >= 0xe0 && b <= 0xef)
            k = 2;
        else if (b >= 0xf0 && b <= 0xf4)
            k = 3;
        else
            return false;
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++)
            if ((p[i + j] & 0xc0) != 0x80)
                return false;
        if ((b == 0xe0 && p[i + 1] < 0xa0) || (b == 0xed && p[i + 1] > 0x9f) ||
            (b == 0xf0 && p[i + 1] < 0x90) || (b == 0xf4 && p[i + 1] > 0x8f))
            return false;
        i += k + 1;
    }
    return true;
}

static char *base64(const unsigned char *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        abort();
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

void out_json_body(json_t *obj, const void *body, size_t len)
{
    if (out_utf8_valid(body, len)) {
        json_object_set_new(obj, "body", json_stringn(body, len));
        return;
    }
    char *b = base64(body, len);
    json_object_set_new(obj, "body_base64", json_string(b));
    free(b);
}

void out_join_cell(char *buf, size_t size, json_t *v)
{
    size_t off = 0, i;
    const char *k;
    json_t *x;
    buf[0] = '\0';
    json_object_foreach(v, k, x) if (off < size)
        off += (size_t)snprintf(buf + off, size - off, "%s%s=%s", off ? "," : "", k,
                                json_string_value(x) ? json_string_value(x) : "");
    json_array_foreach(v, i, x) if (off < size)
        off += (size_t)snprintf(buf + off, size - off, "%s%s", off ? "," : "",
                                json_string_value(x) ? json_string_value(x) : "");
    if (!buf[0])
        snprintf(buf, size, "-");
}

void out_body_cell(char *buf, size_t size, const void *body, size_t len, size_t max)
{
    const unsigned char *p = body;
    size_t o = 0, chars = 0;
    if (!out_utf8_valid(p, len)) {
        snprintf(buf, size, "<%zu bytes>", len);
        return;
    }
    for (size_t i = 0; i < len && o + 8 < size; i++) {
        if ((p[i] & 0xc0) != 0x80 && ++chars > max) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        buf[o++] = p[i] < 0x20 ? ' ' : (char)p[i];
    }
    buf[o] = '\0';
}

/* Whether @k is "id" or "ok", the members of a response's envelope. */
static bool is_envelope_key(const msgpack_object *k)
{
    return k->via.str.size == 2 &&
           (memcmp(k->via.str.ptr, "id", 2) == 0 || memcmp(k->via.str.ptr, "ok", 2) == 0);
}

/* @o as JSON; @top: @o is the response itself, whose "id" and "ok" are left
 * out (deeper maps keep every key: a message's attrs may hold "id"). */
static json_t *msgpack_json(const msgpack_object *o, bool top)
{
    json_t *j;
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: return json_stringn(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_ARRAY:
        j = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new(j, msgpack_json(&o->via.array.ptr[i], false));
        return j;
    case MSGPACK_OBJECT_MAP:
        j = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type == MSGPACK_OBJECT_STR && !(top && is_envelope_key(k)))
                json_object_setn_new(j, k->via.str.ptr, k->via.str.size,
                                     msgpack_json(&o->via.map.ptr[i].val, false));
        }
        return j;
    default: return json_null();
    }
}

json_t *out_msgpack_json(const msgpack_object *o)
{
    return msgpack_json(o, true);
}

/* Units of the fields the `get` commands show; a field named *_ms is in
 * milliseconds, *_at a time (ms since the epoch), anything else a count. */
static const struct {
    const char *field, *unit;
} field_units[] = {
    {"visibility_timeout", "s"}, {"polling_wait", "s"}, {"retention", "s"},
    {"rewind_window", "s"},      {"delay", "s"},        {"max_msg_size", "B"},
    {"interval_ms", "ms"},       {"max_interval_ms", "ms"},
};

static const char *unit_of(const char *field)
{
    for (size_t i = 0; i < sizeof field_units / sizeof field_units[0]; i++)
        if (strcmp(field, field_units[i].field) == 0)
            return field_units[i].unit;
    size_t n = strlen(field);
    return n > 3 && strcmp(field + n - 3, "_ms") == 0 ? "ms" : NULL;
}

/* One value as a table cell: numbers with their unit, arrays joined by
 * commas ("-" when empty), maps as compact JSON, null as "-". */
static void field_cell(const char *field, json_t *v, char *buf, size_t size)
{
    const char *unit = unit_of(field);
    if (json_is_integer(v)) {
        snprintf(buf, size, "%lld%s%s", (long long)json_integer_value(v), unit ? " " : "",
                 unit ? unit : "");
    } else if (json_is_real(v)) {
        snprintf(buf, size, "%.3f%s%s", json_real_value(v), unit ? " " : "", unit ? unit : "");
    } else if (json_is_string(v)) {
        snprintf(buf, size, "%s", json_string_value(v)[0] ? json_string_value(v) : "-");
    } else if (json_is_boolean(v)) {
        snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
    } else if (json_is_array(v)) {
        size_t i, off = 0;
        json_t *e;
        buf[0] = '\0';
        json_array_foreach(v, i, e) {
            char *s = json_is_string(e) ? NULL : json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
            if (off < size)
                off += (size_t)snprintf(buf + off, size - off, "%s%s", i ? "," : "",
                                        s ? s : json_string_value(e));
            free(s);
        }
        if (json_array_size(v) == 0)
            snprintf(buf, size, "-");
    } else if (json_is_object(v)) {
        char *s = json_dumps(v, JSON_COMPACT);
        snprintf(buf, size, "%s", s ? s : "");
        free(s);
    } else {
        snprintf(buf, size, "-");
    }
}

/* Rows of @obj's members; a member that is a map of numbers ("stats") is
 * spread into rows of its own, other maps stay one JSON cell. */
static void field_rows(table_t *t, json_t *obj, bool spread)
{
    const char *k;
    json_t *v;
    char val[1024];
    json_object_foreach(obj, k, v) {
        if (spread && !strcmp(k, "name"))
            continue; /* in the heading */
        if (spread && json_is_object(v) && (!strcmp(k, "stats") || !strcmp(k, "attrs"))) {
            field_rows(t, v, false);
            continue;
        }
        field_cell(k, v, val, sizeof val);
        out_table_row(t, k, val);
    }
}

void out_fields(const char *kind, const char *name, json_t *obj)
{
    table_t *t = out_table_new(2, kind, name);
    field_rows(t, obj, true);
    out_table_print(t, stdout);
}

const char *out_msg_body(const msgpack_object *m, size_t *len)
{
    const msgpack_object *b = mqhub_map_get(m, "body");
    *len = 0;
    if (b && (b->type == MSGPACK_OBJECT_BIN || b->type == MSGPACK_OBJECT_STR)) {
        *len = b->via.bin.size; /* str and bin share their layout */
        return b->via.bin.ptr;
    }
    return NULL;
}

json_t *out_msg_json(const msgpack_object *m)
{
    size_t len;
    const char *body = out_msg_body(m, &len);
    json_t *j = out_msgpack_json(m);
    json_object_del(j, "body");
    out_json_body(j, body ? body : "", len);
    return j;
}

json_t *out_peek_json(const msgpack_object *reply, uint64_t *next)
{
    const msgpack_object *ms = mqhub_map_get(reply, "msgs");
    const msgpack_object *nx = mqhub_map_get(reply, "next");
    json_t *msgs = json_array();
    for (uint32_t i = 0; ms && ms->type == MSGPACK_OBJECT_ARRAY && i < ms->via.array.size; i++)
        json_array_append_new(msgs, out_msg_json(&ms->via.array.ptr[i]));
    *next = nx && nx->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? nx->via.u64 : 0;
    return msgs;
}

int out_peek(const cli_t *cli, const msgpack_object *reply, void (*table)(json_t *msgs),
             const char *empty, const char *again)
{
    uint64_t next = 0;
    json_t *msgs = out_peek_json(reply, &next);
    if (cli->json) {
        json_t *j = json_pack("{s:o}", "msgs", msgs);
        if (next)
            json_object_set_new(j, "next", json_integer((json_int_t)next));
        out_json(j);
        return CLI_OK;
    }
    if (json_array_size(msgs) == 0)
        printf("%s%s\n", empty, next ? " in this stretch" : "");
    else
        table(msgs);
    if (next)
        printf("(more may follow: %s --from %llu)\n", again, (unsigned long long)next);
    json_decref(msgs);
    return CLI_OK;
}
