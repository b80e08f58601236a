/* wire.h: the protocol's request/response envelope (wire.c) — leaf code over
 * msgpack-c, used by the node, its push engine and cluster ops, and the
 * fuzzer. Thread-safe (no state). */
#ifndef MQHUB_UTIL_WIRE_H
#define MQHUB_UTIL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "mqhub/errors.h"
#include "mqhub/protocol.h"

/* One decoded request. @map points into the msgpack_unpacked it came from. */
typedef struct wire_request {
    const msgpack_object *map;
    const char *op;
    size_t op_len;
    uint64_t id;
    bool has_id;
} wire_request_t;

/* Pure request decoding (also the fuzz target): @buf must hold exactly one
 * MessagePack map with "op" (str) and "id" (uint). @u is initialised by the
 * caller and destroyed after the view is no longer used. Returns 0, or
 * MQHUB_EBAD_REQUEST with a sentence in @errmsg; has_id tells whether the id
 * was readable (then it is echoed in the error reply). */
int wire_decode_request(msgpack_unpacked *u, const char *buf, size_t len, wire_request_t *v,
                        char *errmsg, size_t errlen);

/* A queue, topic, subscription or script name: 1-MQHUB_NAME_MAX bytes of
 * A-Z a-z 0-9 _ - . starting with a letter or digit (docs/protocol.md). */
bool wire_name_valid(const char *s, size_t len);

/* Start a response map of @n_extra fields after id (when @has_id) and ok. */
void wire_pack_head(msgpack_packer *pk, bool has_id, uint64_t id, bool ok, unsigned n_extra);
/* A complete error response {id?, ok: false, code, error: @msg, leader?}
 * (@leader NULL: no leader field). */
void wire_pack_error(msgpack_packer *pk, bool has_id, uint64_t id, int code, const char *msg,
                     const char *leader);

#endif
