/* mqhub/protocol.h: the limits and defaults of the wire protocol, each
 * defined once (docs/protocol.md states them for people; change both
 * together).
 *
 * The server enforces the limits; the client library, the CLI and the
 * transports use them to refuse early, size buffers and pick defaults.
 * Numbers are plain integer constants (the CLI pastes some into its help
 * text); units are in the names or the comments. No dependencies: plugins,
 * clients and the core all include it.
 */
#ifndef MQHUB_PROTOCOL_H
#define MQHUB_PROTOCOL_H

/* ---------------------------------------------------------- session, framing */

#define MQHUB_PROTOCOL_VERSION 1              /* hello {version}; the server's answer */
#define MQHUB_DEFAULT_MAX_FRAME (16u << 20)   /* bytes of one frame (config max_frame) */
#define MQHUB_DEFAULT_TCP_ADDRESS "127.0.0.1:6200" /* the TCP transport's listen */
#define MQHUB_DEFAULT_WS_ADDRESS "127.0.0.1:6280"  /* the WebSocket transport's listen */

/* ---------------------------------------------------------- names, lists */

#define MQHUB_NAME_MAX 64            /* names: 1-64 of A-Z a-z 0-9 _ - . */
#define MQHUB_LIST_LIMIT_DEFAULT 100 /* queue.list / topic.list without limit */
#define MQHUB_LIST_LIMIT_MAX 1000    /* the largest limit of a list */

/* ------------------------------------------- queue and topic attributes */

#define MQHUB_VISIBILITY_TIMEOUT_DEFAULT 30  /* s */
#define MQHUB_VISIBILITY_TIMEOUT_MAX 43200   /* s, 12 hours */
#define MQHUB_POLLING_WAIT_MAX 30            /* s (default 0) */
#define MQHUB_MSG_SIZE_MIN 1024              /* bytes: max_msg_size 1 KiB-1 MiB */
#define MQHUB_MSG_SIZE_MAX 1048576
#define MQHUB_MSG_SIZE_DEFAULT 65536
#define MQHUB_RETENTION_MIN 60               /* s: retention (and rewind_window) */
#define MQHUB_RETENTION_MAX 1296000          /* s, 15 days */
#define MQHUB_QUEUE_RETENTION_DEFAULT 345600 /* s, 4 days */
#define MQHUB_TOPIC_RETENTION_DEFAULT 86400  /* s, 1 day */
#define MQHUB_DELAY_MAX 3600                 /* s: a queue's delay, a send's delay */
#define MQHUB_MAX_RECEIVES_MAX 1000          /* dead_letter {max_receives}, 1-1000 */

/* ---------------------------------------------------------------- messages */

/* Items of one batch: send_batch msgs, publish_batch msgs, delete receipts,
 * ack seqs (1-256 each). */
#define MQHUB_BATCH_MAX 256
#define MQHUB_RECEIVE_MAX 256        /* receive {max}, 1-256 (default 1) */
#define MQHUB_RECEIVE_WAIT_MAX 30    /* s: receive {wait} (long poll) */
#define MQHUB_DEDUP_WINDOW_MS 300000 /* a repeated dedup_id within 5 minutes */

/* ------------------------------------------------------ topics, push delivery */

#define MQHUB_TAGS_MAX 5           /* tags of a published message */
#define MQHUB_TAG_LEN_MAX 64       /* bytes of one tag (1-64) */
#define MQHUB_ROUTING_KEY_MAX 255  /* bytes of a publish's routing key */
#define MQHUB_PUSH_FRAME_MSGS 64   /* messages in one {"push": "messages"} frame */
#define MQHUB_RETRY_MAX_ATTEMPTS_DEFAULT 16       /* subscription retry, 1-1000 */
#define MQHUB_RETRY_MAX_ATTEMPTS_MAX 1000
#define MQHUB_RETRY_INTERVAL_MS_DEFAULT 1000      /* 10-3600000 */
#define MQHUB_RETRY_INTERVAL_MS_MIN 10
#define MQHUB_RETRY_INTERVAL_MS_MAX 3600000
#define MQHUB_RETRY_MAX_INTERVAL_MS_DEFAULT 300000 /* the exponential cap, 10-86400000 */
#define MQHUB_RETRY_MAX_INTERVAL_MS_MAX 86400000
#define MQHUB_SUB_URL_MAX 1024   /* bytes of an http endpoint's URL (subscription.create/set) */

/* ----------------------------------------------------------------- scripts */

#define MQHUB_SCRIPT_SOURCE_MAX (256u * 1024) /* bytes of Lua text in script.load */
#define MQHUB_SCRIPT_TEST_MAX 100000          /* retained messages script.test visits */

/* -------------------------------------------- stats pushes (WebSocket only) */

#define MQHUB_STATS_INTERVAL_MS_DEFAULT 1000 /* stats.subscribe {interval_ms} */
#define MQHUB_STATS_INTERVAL_MS_MAX 60000

#endif
