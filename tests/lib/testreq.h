/* testreq.h: native-protocol requests built by hand, for tests that talk to a
 * testhub_t mqhubd over a raw connection (testhub_connect_raw) — to hold a
 * request in flight, pipeline, or watch the connection while one runs.
 * Each request gets the next id of one counter shared by the program.
 * Failures end the cmocka test; nothing here returns an error to handle.
 */
#ifndef MQHUB_TESTREQ_H
#define MQHUB_TESTREQ_H

#include <stdint.h>

#include <msgpack.h>

/* The head {op, id, ...} of a request with @n more fields into @pk; the
 * caller packs the @n key/value pairs after it. */
void testreq_head(msgpack_packer *pk, const char *op, uint32_t n);

/* The head of publish_batch {topic = @topic, msgs = [...]} into @pk, up to
 * the array header of @n messages; the caller packs the @n message maps. */
void testreq_publish_batch_head(msgpack_packer *pk, const char *topic, uint32_t n);

/* Write @sb as one frame on @fd and destroy it (the caller initialised it). */
void testreq_send(int fd, msgpack_sbuffer *sb);

/* script.test {name = @script, topic = @topic, since = 0}: a backtest of
 * @script over all of @topic's retained messages; the answer is not read. */
void testreq_script_test(int fd, const char *script, const char *topic);

#endif
