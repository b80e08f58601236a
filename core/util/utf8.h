/* utf8.h: UTF-8 checks for text the hub sends back (utf8.c) — error
 * sentences echo names a client sent, and a MessagePack or JSON str must be
 * valid UTF-8. Leaf code; thread-safe (no state). */
#ifndef MQHUB_UTIL_UTF8_H
#define MQHUB_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* The length of the valid UTF-8 sequence starting at @s (1-4), or 0 when the
 * byte at @s does not start one that fits in @n bytes (overlongs, surrogates
 * and code points above U+10FFFF are invalid). */
size_t utf8_seq_len(const char *s, size_t n);

/* Whether @s[0..@n) is valid UTF-8. */
bool utf8_valid(const char *s, size_t n);

/* Copy @s[0..@n) into @out (@size bytes, NUL-terminated, @size >= 1) with
 * every byte that is not part of a valid sequence written as \xNN (a
 * backslash itself stays as it is); stops before a sequence or escape that
 * would not fit. Returns the length written. */
size_t utf8_escape(char *out, size_t size, const char *s, size_t n);

#endif
