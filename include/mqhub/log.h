/* mqhub/log.h: the log levels of mqhubd's structured log, shared by the
 * plugin ABI (mqhub_host_api_t.log) and the daemon. No dependencies. */
#ifndef MQHUB_LOG_H
#define MQHUB_LOG_H

enum mqhub_log_level { MQHUB_LOG_DEBUG, MQHUB_LOG_INFO, MQHUB_LOG_WARN, MQHUB_LOG_ERROR };

#endif
