/* utf8.c: UTF-8 validation and escaping of invalid bytes (utf8.h), so that
 * the text of an error reply is valid UTF-8 whatever bytes a client put in
 * the names it echoes. Leaf code.
 */
#include <stdint.h>
#include <stdio.h>

#include "utf8.h"

size_t utf8_seq_len(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char b = p[0];
    size_t len;
    uint32_t cp;

    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf)
        len = 2, cp = b & 0x1f;
    else if (b >= 0xe0 && b <= 0xef)
        len = 3, cp = b & 0x0f;
    else if (b >= 0xf0 && b <= 0xf4)
        len = 4, cp = b & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0, l; i < n; i += l)
        if ((l = utf8_seq_len(s + i, n - i)) == 0)
            return false;
    return true;
}

size_t utf8_escape(char *out, size_t size, const char *s, size_t n)
{
    size_t o = 0;

    for (size_t i = 0, l; i < n; i += l) {
        l = utf8_seq_len(s + i, n - i);
        if (l == 0) {
            if (o + 4 >= size)
                break;
            snprintf(out + o, 5, "\\x%02x", (unsigned char)s[i]);
            o += 4;
            l = 1;
            continue;
        }
        if (o + l >= size)
            break;
        for (size_t k = 0; k < l; k++)
            out[o++] = s[i + k];
    }
    out[o] = '\0';
    return o;
}
