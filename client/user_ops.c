/* user_ops.c: libmqhub's user.* calls — named identities and their grants
 * (docs/protocol.md "Users", docs/security.md). Each needs the admin verb
 * on * (or the root token).
 *
 * create hands back the token the node generated (when the caller gave
 * none); list hands back the whole response, which the caller frees with
 * mqhub_response_free(). To add a call, follow mqhub_client_user_delete().
 */
#include <stdio.h>
#include <string.h>

#include "client_int.h"

int mqhub_client_user_create(mqhub_client_t *c, const char *name, const char *token,
                             const mqhub_grant_t *grants, size_t n_grants, char *token_out,
                             size_t token_size)
{
    client_req_t r;
    mqhub_response_t resp;
    int rc;

    client_req_init(c, &r, "user.create", 2 + (token != NULL ? 1 : 0));
    client_pack_kv_str(&r.pk, "name", name);
    if (token != NULL)
        client_pack_kv_str(&r.pk, "token", token);
    client_pack_str(&r.pk, "grants");
    msgpack_pack_array(&r.pk, (uint32_t)n_grants);
    for (size_t i = 0; i < n_grants; i++) {
        msgpack_pack_map(&r.pk, 2);
        client_pack_kv_str(&r.pk, "verb", grants[i].verb);
        client_pack_kv_str(&r.pk, "pattern", grants[i].pattern);
    }
    rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    if (token_out != NULL && token_size > 0)
        client_copy_str(&resp.map, "token", token_out, token_size);
    mqhub_response_free(&resp);
    return 0;
}

int mqhub_client_user_delete(mqhub_client_t *c, const char *name)
{
    client_req_t r;
    client_req_init(c, &r, "user.delete", 1);
    client_pack_kv_str(&r.pk, "name", name);
    return client_call_simple(c, &r);
}

int mqhub_client_user_list(mqhub_client_t *c, mqhub_response_t *out)
{
    client_req_t r;
    client_req_init(c, &r, "user.list", 0);
    return client_call(c, &r, out);
}

/* user.grant / user.revoke: *@changed tells whether the grant was added or
 * removed (false: it was there already / was not there). */
static int change_grant(mqhub_client_t *c, const char *op, const char *name, const char *verb,
                        const char *pattern, bool *changed)
{
    client_req_t r;
    mqhub_response_t resp;
    const msgpack_object *ch;
    int rc;

    client_req_init(c, &r, op, 3);
    client_pack_kv_str(&r.pk, "name", name);
    client_pack_kv_str(&r.pk, "verb", verb);
    client_pack_kv_str(&r.pk, "pattern", pattern);
    rc = client_call(c, &r, &resp);
    if (rc != 0)
        return rc;
    ch = mqhub_map_get(&resp.map, "changed");
    if (changed != NULL)
        *changed = ch != NULL && ch->type == MSGPACK_OBJECT_BOOLEAN && ch->via.boolean;
    mqhub_response_free(&resp);
    return 0;
}

int mqhub_client_user_grant(mqhub_client_t *c, const char *name, const char *verb,
                            const char *pattern, bool *changed)
{
    return change_grant(c, "user.grant", name, verb, pattern, changed);
}

int mqhub_client_user_revoke(mqhub_client_t *c, const char *name, const char *verb,
                             const char *pattern, bool *changed)
{
    return change_grant(c, "user.revoke", name, verb, pattern, changed);
}
