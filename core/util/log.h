/* log.h: structured, quiet logs (log.c) — leaf code, usable by every layer
 * and by plugins' host. One line per event on stderr,
 *   ts=2026-11-25T13:58:01.123Z level=info comp=replica msg="..." k=v ...
 * Default level is info; debug lines are dropped unless log_set_level().
 * Any thread may log (one write per line). */
#ifndef MQHUB_UTIL_LOG_H
#define MQHUB_UTIL_LOG_H

#include <stdarg.h>

#include "mqhub/log.h"

void log_set_level(int level); /* enum mqhub_log_level */
int log_get_level(void);
/* @comp: short component name ("fsm", "tcp"). */
void log_msg(int level, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(int level, const char *comp, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* An audit line (level=info comp=audit), written whatever the level. */
void log_audit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define log_debug(comp, ...) log_msg(MQHUB_LOG_DEBUG, comp, __VA_ARGS__)
#define log_info(comp, ...) log_msg(MQHUB_LOG_INFO, comp, __VA_ARGS__)
#define log_warn(comp, ...) log_msg(MQHUB_LOG_WARN, comp, __VA_ARGS__)
#define log_error(comp, ...) log_msg(MQHUB_LOG_ERROR, comp, __VA_ARGS__)

#endif
