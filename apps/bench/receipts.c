/* receipts.c: a consumer's kept receipts (receipts.h): receipts_keep() after
 * each receive answer, receipts_delete() to delete them in batches. */
#include <stdlib.h>
#include <string.h>

#include "receipts.h"

int receipts_keep(receipts_t *r, const msgpack_object *msgs)
{
    for (uint32_t i = 0; msgs && msgs->type == MSGPACK_OBJECT_ARRAY && i < msgs->via.array.size;
         i++) {
        const msgpack_object *rc = mqhub_map_get(&msgs->via.array.ptr[i], "receipt");
        if (!rc || rc->type != MSGPACK_OBJECT_STR)
            continue;
        if (r->n == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 256;
            char **grown = realloc(r->v, cap * sizeof *grown);
            if (!grown)
                return -1;
            r->v = grown;
            r->cap = cap;
        }
        if (!(r->v[r->n] = strndup(rc->via.str.ptr, rc->via.str.size)))
            return -1;
        r->n++;
    }
    return 0;
}

int receipts_delete(receipts_t *r, mqhub_client_t *c, const char *queue, mqhub_response_cb cb,
                    void *arg, size_t *n)
{
    size_t k = r->n < MQHUB_BATCH_MAX ? r->n : MQHUB_BATCH_MAX;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object args;
    size_t off = 0;
    int rc = MQHUB_EINTERNAL;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "queue", 5);
    msgpack_pack_str_with_body(&pk, queue, strlen(queue));
    msgpack_pack_str_with_body(&pk, "receipts", 8);
    msgpack_pack_array(&pk, k);
    for (size_t i = 0; i < k; i++) {
        char *s = r->v[--r->n];
        msgpack_pack_str_with_body(&pk, s, strlen(s));
        free(s);
    }
    if (msgpack_zone_init(&zone, 4096)) {
        if (msgpack_unpack(sb.data, sb.size, &off, &zone, &args) == MSGPACK_UNPACK_SUCCESS)
            rc = mqhub_client_call_async(c, "delete", &args, cb, arg);
        msgpack_zone_destroy(&zone);
    }
    msgpack_sbuffer_destroy(&sb);
    if (n)
        *n = k;
    return rc;
}

void receipts_free(receipts_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i]);
    free(r->v);
    *r = (receipts_t){0};
}
