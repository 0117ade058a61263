/* log.h - the one way luka writes diagnostics: leveled lines on stderr, as
 * text or as one JSON object per line, with secrets blanked out.
 *
 * Every component logs through these macros, which test the level before
 * formatting anything.  librdkafka's own log lines are routed here too. */
#ifndef LUKA_LOG_H
#define LUKA_LOG_H

#include <stddef.h>
#include <stdint.h>

enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum { LOG_TEXT = 0, LOG_JSON };

/* Where a log line happened, for the fields of structured logs.  Any member
 * may be left NULL / -1. */
typedef struct log_ctx {
    const char *endpoint;
    const char *topic;
    int32_t partition;
    int64_t offset;
} log_ctx_t;

extern int log_level;
extern int log_format; /* LOG_TEXT or LOG_JSON */

int log_level_parse(const char *name);
const char *log_level_name(int level);
/* "text" or "json" (any case); -1 for anything else. */
int log_format_parse(const char *name);
void log_write(int level, const char *component, const log_ctx_t *ctx,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* From now on, every occurrence of value in a log line is written as
 * ********.  Values shorter than LOG_REDACT_MIN are not remembered: blanking
 * every "abc" would make the logs unreadable, and a key=value pair whose
 * key names a secret is blanked whatever its length. */
#define LOG_REDACT_MIN 4
void log_redact(const char *value);

/* Copy url into out (cap bytes) with the password of its userinfo, as in
 * redis://user:PASSWORD@host, written as ********; returns out.  Log lines
 * get the same treatment by themselves; this is for other output. */
const char *log_redact_url(const char *url, char *out, size_t cap);

/* Whether a librdkafka property (or any KEY=VALUE key) names a secret that
 * must never be shown. */
int log_is_secret(const char *key);

/* log_redact every property of a librdkafka configuration that
 * log_is_secret() names. */
struct rd_kafka_conf_s;
void log_redact_conf(struct rd_kafka_conf_s *conf);

/* Write "topic[0] topic[1] ..." for a partition list into buf, cut short
 * (and still terminated) when it does not fit. */
struct rd_kafka_topic_partition_list_s;
void log_partitions(const struct rd_kafka_topic_partition_list_s *parts, char *buf, size_t len);

#define log_at(lvl, comp, ctx, ...)                                           \
    do {                                                                      \
        if ((lvl) <= log_level) log_write((lvl), (comp), (ctx), __VA_ARGS__); \
    } while (0)

#define log_error(comp, ...) log_at(LOG_ERROR, comp, NULL, __VA_ARGS__)
#define log_warn(comp, ...) log_at(LOG_WARN, comp, NULL, __VA_ARGS__)
#define log_info(comp, ...) log_at(LOG_INFO, comp, NULL, __VA_ARGS__)
#define log_debug(comp, ...) log_at(LOG_DEBUG, comp, NULL, __VA_ARGS__)

#endif
