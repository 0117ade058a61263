/* log.c - leveled log lines on stderr: time, level, component, message. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

int log_level = LOG_INFO;

static const char *names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name) {
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (strcasecmp(name, names[i]) == 0) return i;
    if (strcasecmp(name, "warning") == 0) return LOG_WARN;
    return -1;
}

const char *log_level_name(int level) {
    return level >= 0 && level <= LOG_DEBUG ? names[level] : "?";
}

void log_write(int level, const char *component, const log_ctx_t *ctx,
               const char *fmt, ...) {
    char line[4096], stamp[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "%s.%03dZ %-5s %s: ", stamp,
                 (int)(tv.tv_usec / 1000), log_level_name(level), component);
    if (ctx && ctx->endpoint && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - n, "[%s] ", ctx->endpoint);
    if (ctx && ctx->topic && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - n, "%s[%d]@%lld ", ctx->topic,
                      (int)ctx->partition, (long long)ctx->offset);
    va_start(ap, fmt);
    if (n < (int)sizeof(line)) n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(line)) n = sizeof(line) - 1;
    /* One write per line keeps lines whole when several processes share a
     * terminal or a log file. */
    line[n++] = '\n';
    fwrite(line, 1, n, stderr);
    fflush(stderr);
}
