/* log.h - the one way luka writes diagnostics: leveled lines on stderr.
 *
 * Every component logs through these macros, which test the level before
 * formatting anything.  librdkafka's own log lines are routed here too. */
#ifndef LUKA_LOG_H
#define LUKA_LOG_H

#include <stdint.h>

enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Where a log line happened, for the fields of structured logs.  Any member
 * may be left NULL / -1. */
typedef struct log_ctx {
    const char *endpoint;
    const char *topic;
    int32_t partition;
    int64_t offset;
} log_ctx_t;

extern int log_level;

int log_level_parse(const char *name);
const char *log_level_name(int level);
void log_write(int level, const char *component, const log_ctx_t *ctx,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_at(lvl, comp, ctx, ...)                                           \
    do {                                                                      \
        if ((lvl) <= log_level) log_write((lvl), (comp), (ctx), __VA_ARGS__); \
    } while (0)

#define log_error(comp, ...) log_at(LOG_ERROR, comp, NULL, __VA_ARGS__)
#define log_warn(comp, ...) log_at(LOG_WARN, comp, NULL, __VA_ARGS__)
#define log_info(comp, ...) log_at(LOG_INFO, comp, NULL, __VA_ARGS__)
#define log_debug(comp, ...) log_at(LOG_DEBUG, comp, NULL, __VA_ARGS__)

#endif
