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
 * may be left NULL / -1 (key and id: NULL); the first four are what text
 * lines show. */
typedef struct log_ctx {
    const char *endpoint;
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *group;
    const char *key; /* key_len bytes, any of them */
    size_t key_len;
    const char *id; /* the message id: id_len bytes */
    size_t id_len;
    const char *trace_id;
    const char *app; /* for lines the app's own code wrote */
} log_ctx_t;

/* The context of a line about an endpoint as a whole. */
#define LOG_ENDPOINT(name) (&(log_ctx_t){.endpoint = (name), .partition = -1, .offset = -1})

/* A field of a structured record (luka.log's): a string, or, with json
 * set, a JSON text (a number, true, an object...). */
typedef struct log_field {
    const char *name;
    const char *value;
    int json;
} log_field_t;

/* One log line before it is written: what log_write makes of its format,
 * or what luka.log gives (with fields and a traceback of their own). */
typedef struct log_record {
    int level;
    const char *component;
    const log_ctx_t *ctx; /* NULL: about nothing in particular */
    const char *message;
    const log_field_t *fields;
    int nfields;
    const char *traceback; /* NULL: none */
} log_record_t;

/* Where records go besides stderr: the test kit captures them.  Called
 * on the thread that logs, with every record whatever the level, after
 * redaction; the record is only valid during the call. */
typedef void (*log_sink_fn)(void *ud, const log_record_t *r);

extern int log_level;
extern int log_format; /* LOG_TEXT or LOG_JSON */
extern log_sink_fn log_sink;

int log_level_parse(const char *name);
const char *log_level_name(int level);
/* "text" or "json" (any case); -1 for anything else. */
int log_format_parse(const char *name);
void log_write(int level, const char *component, const log_ctx_t *ctx,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Write r (redacted, to the sink, and on stderr when its level is on). */
void log_put(const log_record_t *r);

/* Send every record to fn too, or stop with NULL. */
void log_set_sink(log_sink_fn fn, void *ud);

/* Whether a record of level would go anywhere: a cheap test before
 * building one. */
#define log_enabled(lvl) ((lvl) <= log_level || log_sink)

/* Write s (n bytes) as a JSON string, quotes included, into out, which
 * has room for 6 * n + 3 bytes; returns the length written (no NUL).
 * Control characters are escaped and invalid UTF-8 becomes U+FFFD, as in
 * JSON log lines. */
size_t log_json_string(char *out, const char *s, size_t n);

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
        if (log_enabled(lvl)) log_write((lvl), (comp), (ctx), __VA_ARGS__);  \
    } while (0)

#define log_error(comp, ...) log_at(LOG_ERROR, comp, NULL, __VA_ARGS__)
#define log_warn(comp, ...) log_at(LOG_WARN, comp, NULL, __VA_ARGS__)
#define log_info(comp, ...) log_at(LOG_INFO, comp, NULL, __VA_ARGS__)
#define log_debug(comp, ...) log_at(LOG_DEBUG, comp, NULL, __VA_ARGS__)

#endif
