/* cmq.h: the CMQ transport's internal contracts (docs/cmq.md), shared by
 * its files:
 *   cmq.c      plugin entry, libwebsockets HTTP server on the daemon's loop,
 *              one request's life: params, signature, action, JSON reply
 *   form.c     request parameters: x-www-form-urlencoded bodies, arrays
 *   sign.c     CMQ request signatures (HmacSHA1 / HmacSHA256)
 *   creds.c    SecretId -> SecretKey and the user it runs as
 *   replay.c   the replay cache (SecretId, Nonce, Timestamp, Signature)
 *   actions.c  the action table: each CMQ action as native requests, the
 *              replies and error codes in CMQ's spelling
 *   mpjson.c   MessagePack -> JSON for native replies (requests are
 *              packed by the WebSocket transport's codec.c, ws_codec)
 * form.c, sign.c, replay.c, actions.c and mpjson.c do no I/O and know nothing of lws:
 * the unit test (tests/cmq/cmq_unit_test.c) links them directly.
 * Everything runs on the daemon's loop thread.
 */
#ifndef MQHUB_CMQ_H
#define MQHUB_CMQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <msgpack.h>

#include "mqhub/plugin.h"

/* CMQ's limits (docs/cmq.md "Limits"). */
#define CMQ_BATCH_MAX 16       /* messages / receipts of one batch action */
#define CMQ_TAGS_MAX 5         /* msgTag.n of one publish */
#define CMQ_WAIT_MAX 30        /* s: pollingWaitSeconds */
#define CMQ_TIME_WINDOW 300    /* s: |now - Timestamp| accepted */

/* CMQ reply codes (code in the JSON reply; module codes go in message). */
enum cmq_code {
    CMQ_OK = 0,
    CMQ_EPARAM = 4000,
    CMQ_EAUTH = 4100,
    CMQ_ENO_ACCESS = 4102, /* Tencent Cloud's "no authorization to access resources" */
    CMQ_ETOO_LARGE = 4400,
    CMQ_EHEAP_FULL = 4410,
    CMQ_ERECEIPT = 4430,
    CMQ_ENOT_FOUND = 4440,
    CMQ_EEXISTS = 4460,
    CMQ_ESUB_EXISTS = 4490,
    CMQ_EINTERNAL = 6000,
    CMQ_EPARTIAL = 6010,
    CMQ_ENO_MATCH = 6030,
    CMQ_EREWIND = 6050,
    CMQ_ENO_MESSAGE = 7000,
};

/* ---- form.c: request parameters */

typedef struct cmq_param {
    char *key, *val; /* NUL-terminated, decoded; val may hold NUL bytes */
    size_t klen, vlen;
} cmq_param_t;

typedef struct cmq_params {
    cmq_param_t *v;
    size_t n, cap;
} cmq_params_t;

/* Append a copy of key=value (decoded already). 0, or -1 on out-of-memory. */
int cmq_params_add(cmq_params_t *p, const char *k, size_t kl, const char *v, size_t vl);
/* Append every k=v of the x-www-form-urlencoded @body: '&' separates pairs,
 * '+' is a space, %XX a byte; a pair without '=' has an empty value. 0, or
 * -1 on out-of-memory or a malformed %-escape. */
int cmq_form_parse(cmq_params_t *p, const char *body, size_t len);
/* The value of @key (first one wins; keys are case-sensitive as in CMQ),
 * NULL when absent; its length in *@len when @len is not NULL. */
const char *cmq_param(const cmq_params_t *p, const char *key, size_t *len);
/* The array "@name.N": 0- or 1-based, contiguous. Its values (pointers into
 * @p) into @vals/@lens, at most @max; the count in *@n. Returns 0; -1 when
 * the indexes have a gap or do not start at 0 or 1; -2 when there are more
 * than @max (*@n is then the count found). */
int cmq_param_array(const cmq_params_t *p, const char *name, const char **vals, size_t *lens,
                    size_t max, size_t *n);
void cmq_params_free(cmq_params_t *p);

/* ---- sign.c: signatures */

/* The string CMQ signs: @method @host @path "?" then k=v of every param but
 * Signature, sorted by key, '_' in keys written '.', joined by '&'. With
 * @skip_at, params whose value starts with '@' are left out (the Python
 * SDK's POST quirk). malloc'ed, length in *@len; NULL on out-of-memory. */
char *cmq_sign_string(const cmq_params_t *p, const char *method, const char *host,
                      const char *path, bool skip_at, size_t *len);
/* base64(HMAC(@key, @s)) into @out (NUL-terminated, at most 45 bytes), with
 * SHA-256 when @sha256 else SHA-1. 0, or -1. */
int cmq_sign_hmac(const char *key, bool sha256, const char *s, size_t len, char out[64]);
/* Whether @p carries a valid Signature for @key (SignatureMethod HmacSHA1,
 * the default, or HmacSHA256); for POST also the variant without '@' values.
 * Compared in constant time. */
bool cmq_sign_verify(const cmq_params_t *p, const char *method, const char *host,
                     const char *path, const char *key);

/* ---- creds.c: who signs (docs/cmq.md "Identity") */

typedef struct cmq_cred {
    char *secret_id, *secret_key;
    char *user; /* the mqhub user its requests run as; NULL: the root token */
} cmq_cred_t;

typedef struct cmq_creds {
    cmq_cred_t *v;
    size_t n;
} cmq_creds_t;

/* Append a copy of one credential (@user NULL: root). 0, or -1 with a
 * sentence in @errmsg (invalid SecretId or user name, empty key, duplicate
 * SecretId, out of memory). */
int cmq_creds_add(cmq_creds_t *c, const char *id, const char *key, const char *user,
                  char *errmsg, size_t errlen);
/* Append every "SecretId user SecretKey" line of the file @path; refused
 * unless a regular file without group/other permissions, and for keys
 * shorter than 16 characters. 0, or -1 with "path:line: problem". */
int cmq_creds_load(cmq_creds_t *c, const char *path, char *errmsg, size_t errlen);
/* The SecretKey in the file @path (secret_key_file: owner-only like the
 * credentials file, one line, trailing whitespace dropped) into @key
 * (@size bytes, NUL-terminated). 0, or -1 with a sentence in @errmsg. */
int cmq_creds_key_file(const char *path, char *key, size_t size, char *errmsg, size_t errlen);
/* The credential of @secret_id, NULL when unknown (or @secret_id NULL). */
const cmq_cred_t *cmq_creds_find(const cmq_creds_t *c, const char *secret_id);
/* Wipe the keys and free everything. */
void cmq_creds_free(cmq_creds_t *c);

/* ---- replay.c: the replay cache (docs/cmq.md "Replays") */

typedef struct cmq_replay cmq_replay_t;

enum { CMQ_REPLAY_SEEN = 1, CMQ_REPLAY_TOO_OLD = 2 };

/* A cache of at most @max requests. 0, or -1 on out-of-memory. */
int cmq_replay_new(cmq_replay_t **out, size_t max);
void cmq_replay_free(cmq_replay_t *r);
/* Remember the signed request (@id, @nonce, @ts_text, @sig; @ts is
 * @ts_text's value) at unix time @now with time window @window: 0 when it is
 * new; CMQ_REPLAY_SEEN when the same request was seen within the window;
 * CMQ_REPLAY_TOO_OLD when @ts is at or below the floor the cache rose to
 * when full; -1 on out-of-memory. Forgets requests whose Timestamp is more
 * than @window before @now. */
int cmq_replay_check(cmq_replay_t *r, const char *id, const char *nonce, const char *ts_text,
                     const char *sig, int64_t ts, int64_t now, int64_t window);
size_t cmq_replay_len(const cmq_replay_t *r);
/* Timestamps at or below it are refused (INT64_MIN until the cache filled). */
int64_t cmq_replay_floor(const cmq_replay_t *r);

/* ---- mpjson.c */

/* A new JSON value for @o: bin and str as strings (bytes that are not UTF-8
 * become U+FFFD), ext as null. NULL on out-of-memory. */
json_t *mpjson_unpack(const msgpack_object *o);

/* ---- actions.c: the action table */

typedef struct cmq_call cmq_call_t;
/* Called once with the finished reply object (code, message and the
 * action's fields; the caller adds requestId and owns the reference). */
typedef void (*cmq_done_cb)(void *arg, json_t *reply);

struct cmq_call {
    const mqhub_host_api_t *api;
    mqhub_session_t *session;
    const cmq_params_t *params; /* the caller's, alive until done */
    cmq_done_cb done;
    void *arg;
    /* Private to actions.c. */
    const struct cmq_action *action;
    int step;
    uint64_t next_id;
    json_t *scratch; /* what a multi-step action keeps between steps */
    int64_t now;     /* unix seconds at the start */
};

/* Run the action named by the Action param of @c->params (the caller set
 * api, session, params, done, arg and zeroed the rest). @c->done is called
 * exactly once, maybe before this returns; never after the session was
 * closed (then the caller frees @c and calls cmq_call_cleanup). */
void cmq_call_start(cmq_call_t *c, int64_t now);
/* Free what a call abandoned midway holds (safe after done, too). */
void cmq_call_cleanup(cmq_call_t *c);
/* A reply {code, message} with the module code in the message:
 * "(10200)no message". A new reference. */
json_t *cmq_error(int code, int module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The CMQ code and module code for the native error @native (a protocol.md
 * code name) of an action on a queue (@topic false) or topic. */
void cmq_error_map(const char *native, bool topic, int *code, int *module);

#endif
