/* console_ops.c: libmqhub's operator listings, connection.list and
 * consumer.list (docs/protocol.md "Connections and consumers"). Both hand
 * back the whole response, which the caller frees with
 * mqhub_response_free(). To add a listing, follow
 * mqhub_client_connection_list().
 */
#include "client_int.h"

int mqhub_client_connection_list(mqhub_client_t *c, mqhub_response_t *out)
{
    client_req_t r;
    client_req_init(c, &r, "connection.list", 0);
    return client_call(c, &r, out);
}

int mqhub_client_consumer_list(mqhub_client_t *c, const char *queue, const char *topic,
                               mqhub_response_t *out)
{
    client_req_t r;
    client_req_init(c, &r, "consumer.list", (queue != NULL) + (topic != NULL));
    if (queue != NULL)
        client_pack_kv_str(&r.pk, "queue", queue);
    if (topic != NULL)
        client_pack_kv_str(&r.pk, "topic", topic);
    return client_call(c, &r, out);
}
