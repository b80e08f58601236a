/* mqhub error codes: the one list.
 *
 * MQHUB_ERRNO_MAP is the only place a code is defined. It generates the C enum
 * (MQHUB_E<NAME>, negative, 0 is success), the wire names of PROTOCOL.md
 * ("BAD_REQUEST"...) and the default sentences returned by mqhub_strerror().
 * To add a code, append one XX() line; never reorder (the numbers are ABI).
 */
#ifndef MQHUB_ERRORS_H
#define MQHUB_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

#define MQHUB_ERRNO_MAP(XX)                                                         \
    XX(BAD_REQUEST, "the request is malformed or a field is missing or of the wrong type") \
    XX(BAD_NAME, "names are 1-64 of A-Z a-z 0-9 _ - . starting with a letter or digit") \
    XX(UNKNOWN_OP, "unknown operation")                                             \
    XX(UNAUTHORIZED, "authenticate with hello and a valid token first")            \
    XX(FORBIDDEN, "the operation is not allowed")                                   \
    XX(NOT_FOUND, "no such object")                                                 \
    XX(EXISTS, "the object exists with other attributes")                           \
    XX(TOO_LARGE, "the message body is larger than the maximum message size")       \
    XX(FRAME_TOO_LARGE, "the frame is larger than max_frame")                       \
    XX(BACKLOG_FULL, "the queue holds max_backlog messages already")                \
    XX(INVALID_RECEIPT, "the receipt is stale or unknown; receive the message again") \
    XX(BLOCKED, "the message was refused by a block")                               \
    XX(SCRIPT_ERROR, "a script failed")                                             \
    XX(NOT_LEADER, "this node is not the leader")                                   \
    XX(UNAVAILABLE, "the service is unavailable (no quorum or shutting down); retry") \
    XX(TIMEOUT, "the operation timed out")                                          \
    XX(INTERNAL, "internal error")

typedef enum mqhub_err {
    MQHUB_OK = 0,
    MQHUB__ERR_BASE = -1000,
#define MQHUB_ERR_ENUM_(name, msg) MQHUB_E##name,
    MQHUB_ERRNO_MAP(MQHUB_ERR_ENUM_)
#undef MQHUB_ERR_ENUM_
    MQHUB__ERR_END
} mqhub_err_t;

/* The default sentence for a code; "unknown error" for anything else. */
const char *mqhub_strerror(int code);

/* The wire name of a code ("NOT_FOUND"); "INTERNAL" for anything else. */
const char *mqhub_err_name(int code);

/* The code for a wire name, or MQHUB_EINTERNAL when the name is unknown. */
int mqhub_err_from_name(const char *name, size_t len);

#ifdef __cplusplus
}
#endif
#endif
