/* frame.c: splitting a byte stream into frames and writing frame headers
 * (see frame.h). */
#include <stdint.h>

#include "frame.h"

int frame_next(const char *buf, size_t len, size_t max, size_t *body_len)
{
    const unsigned char *p = (const unsigned char *)buf;
    uint32_t n;

    if (len < FRAME_HEADER)
        return FRAME_NEED_MORE;
    n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    *body_len = n;
    if (n > max)
        return FRAME_TOO_LARGE;
    return len - FRAME_HEADER >= n ? FRAME_OK : FRAME_NEED_MORE;
}

void frame_header(char out[FRAME_HEADER], size_t n)
{
    out[0] = (char)(n >> 24);
    out[1] = (char)(n >> 16);
    out[2] = (char)(n >> 8);
    out[3] = (char)n;
}
