/* out.c: how the mqhub CLI prints: aligned tables for people, compact JSON
 * (jansson) for scripts, and bodies shown as text when they are UTF-8.
 * Start with out_table_new()/out_table_row()/out_table_print() and out_json_body().
 */
#include <stdarg.h>
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
