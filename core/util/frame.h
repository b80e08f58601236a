/* frame.h: the protocol's framing over a byte stream (docs/protocol.md
 * "Framing (TCP)"): each frame is a 4-byte big-endian length N, then N bytes
 * of one MessagePack map. Pure functions, no I/O, no state: the TCP
 * transport, the client library and the fuzz target share them. */
#ifndef MQHUB_UTIL_FRAME_H
#define MQHUB_UTIL_FRAME_H

#include <stddef.h>

#define FRAME_HEADER 4

enum frame_status {
    FRAME_TOO_LARGE = -1, /* the announced length exceeds the maximum */
    FRAME_NEED_MORE = 0,  /* the frame is not complete yet */
    FRAME_OK = 1,         /* a whole frame: FRAME_HEADER + *body_len bytes */
};

/* Look at the @len bytes at @buf. Sets *body_len whenever the header is
 * there (also for FRAME_TOO_LARGE, for the error message). */
int frame_next(const char *buf, size_t len, size_t max, size_t *body_len);

/* Write the header of a frame whose body has @n bytes (n < 4 GiB). */
void frame_header(char out[FRAME_HEADER], size_t n);

#endif
