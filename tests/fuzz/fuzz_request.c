/* fuzz_request.c: libFuzzer target for what a TCP client controls: the byte
 * stream is split into frames (core/util/frame.c) and each frame is
 * decoded as a request (wire_decode_request), then its fields are looked up
 * as the dispatcher does. Nothing may crash, leak or read out of bounds,
 * whatever the bytes. Built as a libFuzzer program with MQHUB_FUZZ=ON and
 * clang, else linked with replay.c to replay tests/fuzz/corpus. */
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "mp.h"
#include "sm/sm.h"
#include "wire.h"

#define FUZZ_MAX_FRAME (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode(const char *buf, size_t len)
{
    static const char *const keys[] = {"queue", "wait", "version", "token", "name"};
    wire_request_t v;
    msgpack_unpacked u;
    char err[256];

    msgpack_unpacked_init(&u);
    if (wire_decode_request(&u, buf, len, &v, err, sizeof err) == 0) {
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            (void)mp_map_get(v.map, keys[i]);
        (void)ops_find(v.op, v.op_len);
    }
    msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t off = 0, body;

    while (frame_next(p + off, size - off, FUZZ_MAX_FRAME, &body) == FRAME_OK) {
        decode(p + off + FRAME_HEADER, body);
        off += FRAME_HEADER + body;
    }
    /* The whole input as one frame body too: the decoder alone. */
    decode(p, size);
    return 0;
}
