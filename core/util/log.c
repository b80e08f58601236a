/* log.c: structured, quiet logs.
 *
 * One line per event on stderr, logfmt style so both people and tools read it:
 *   ts=2026-11-25T13:58:01.123Z level=warn comp=tcp msg="peer sent a bad frame"
 * Start with log_msg(). The level is process-wide (set once from the config);
 * debug lines cost one comparison when off. log_audit() lines (comp=audit,
 * level=info) are written whatever the level: a quiet config must not drop
 * the audit trail (docs/security.md).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static int log_level = MQHUB_LOG_INFO;

void log_set_level(int level)
{
    log_level = level;
}

int log_get_level(void)
{
    return log_level;
}

static const char *level_name(int level)
{
    switch (level) {
    case MQHUB_LOG_DEBUG: return "debug";
    case MQHUB_LOG_INFO: return "info";
    case MQHUB_LOG_WARN: return "warn";
    default: return "error";
    }
}

/* One line, whatever the level. */
static void write_line(int level, const char *comp, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void write_line(int level, const char *comp, const char *fmt, va_list ap)
{
    char msg[1024], stamp[32];
    struct timespec ts;
    struct tm tm;
    size_t i, o = 0;
    char quoted[2048];

    vsnprintf(msg, sizeof msg, fmt, ap);
    /* Quote the message: escape backslashes, quotes and newlines. */
    for (i = 0; msg[i] != '\0' && o + 3 < sizeof quoted; i++) {
        char c = msg[i];
        if (c == '"' || c == '\\') {
            quoted[o++] = '\\';
            quoted[o++] = c;
        } else if (c == '\n') {
            quoted[o++] = '\\';
            quoted[o++] = 'n';
        } else {
            quoted[o++] = c;
        }
    }
    quoted[o] = '\0';
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "ts=%s.%03ldZ level=%s comp=%s msg=\"%s\"\n", stamp,
            ts.tv_nsec / 1000000, level_name(level), comp, quoted);
}

void log_vmsg(int level, const char *comp, const char *fmt, va_list ap)
{
    if (level >= log_level)
        write_line(level, comp, fmt, ap);
}

void log_audit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_line(MQHUB_LOG_INFO, "audit", fmt, ap);
    va_end(ap);
}

void log_msg(int level, const char *comp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, comp, fmt, ap);
    va_end(ap);
}
