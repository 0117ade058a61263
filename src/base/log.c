/* log.c - leveled log lines on stderr: time, level, component, message, as
 * text or as one JSON object per line.  Every line passes through the
 * redaction here first, so no secret reaches a log, whoever wrote the line
 * (luka, librdkafka's debug output, the embedded broker). */
#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include <librdkafka/rdkafka.h>


int log_level = LOG_INFO;
int log_format = LOG_TEXT;

#define MESSAGE_MAX 4096
#define MASK "********"

static const char *names[] = {"error", "warn", "info", "debug"};

/* Secret values, as given to log_redact.  log_write runs on librdkafka's
 * threads too, hence the lock. */
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char **secrets;
static int nsecrets, capsecrets;

int log_level_parse(const char *name) {
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (strcasecmp(name, names[i]) == 0) return i;
    if (strcasecmp(name, "warning") == 0) return LOG_WARN;
    return -1;
}

const char *log_level_name(int level) {
    return level >= 0 && level <= LOG_DEBUG ? names[level] : "?";
}

int log_format_parse(const char *name) {
    if (strcasecmp(name, "text") == 0) return LOG_TEXT;
    if (strcasecmp(name, "json") == 0) return LOG_JSON;
    return -1;
}

void log_redact(const char *value) {
    if (!value || strlen(value) < LOG_REDACT_MIN) return;
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < nsecrets; i++)
        if (strcmp(secrets[i], value) == 0) goto done;
    if (nsecrets == capsecrets) {
        int cap = capsecrets ? capsecrets * 2 : 8;
        char **grown = realloc(secrets, cap * sizeof(*secrets));
        if (!grown) goto done;
        secrets = grown;
        capsecrets = cap;
    }
    if ((secrets[nsecrets] = strdup(value))) nsecrets++;
done:
    pthread_mutex_unlock(&secrets_lock);
}

int log_is_secret(const char *key) {
    return strcasestr(key, "password") || strcasestr(key, "secret") ||
           strcasestr(key, "sasl.jaas") || strcasestr(key, "ssl.key.pem") ||
           strcasestr(key, "ssl.certificate.pem") || strcasestr(key, "token");
}

void log_redact_conf(rd_kafka_conf_t *conf) {
    size_t n;
    const char **pairs = rd_kafka_conf_dump(conf, &n);
    for (size_t i = 0; i + 1 < n; i += 2)
        if (log_is_secret(pairs[i])) log_redact(pairs[i + 1]);
    rd_kafka_conf_dump_free(pairs, n);
}

/* Length of the remembered secret that starts at p, or 0.  Called with the
 * lock held. */
static size_t secret_at(const char *p) {
    for (int i = 0; i < nsecrets; i++)
        if (p[0] == secrets[i][0] && strncmp(p, secrets[i], strlen(secrets[i])) == 0)
            return strlen(secrets[i]);
    return 0;
}

static int key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

/* Whether the '=' at eq ends "KEY =" with a KEY that names a secret, as in
 * librdkafka's configuration dumps and most connection strings. */
static int secret_key_before(const char *start, const char *eq) {
    const char *end = eq, *k;
    char key[128];
    while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
    for (k = end; k > start && key_char(k[-1]); k--) continue;
    if (k == end || (size_t)(end - k) >= sizeof(key)) return 0;
    memcpy(key, k, end - k);
    key[end - k] = '\0';
    return log_is_secret(key);
}

static int value_end(char c) {
    return c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ';' ||
           c == '"' || c == '\'' || c == '&' || c == ')' || c == '}' || c == ']';
}

/* If p starts "://" with userinfo that holds a password before the host
 * (redis://user:PASSWORD@host), the password's start and end; else 0.  The
 * userinfo ends at the last '@' before the URL does, so a password with an
 * unescaped '@' is blanked whole. */
static int url_password(const char *p, int whole, const char **from, const char **to) {
    const char *colon = NULL, *at = NULL;
    if (strncmp(p, "://", 3) != 0) return 0;
    if (whole) {
        /* A string known to be a URL: its userinfo ends at the last '@'
         * (as redis_url.c reads it), and a password may hold anything. */
        at = strrchr(p + 3, '@');
        if (at) colon = memchr(p + 3, ':', (size_t)(at - (p + 3)));
    } else {
        /* In a line of text the URL ends at what usually follows one. */
        for (const char *q = p + 3; !value_end(*q); q++) {
            if (*q == '@') at = q;
            else if (*q == ':' && !colon && !at) colon = q;
            else if (*q == '/' && at) break;
        }
    }
    if (!colon || !at || colon > at) return 0;
    *from = colon + 1;
    *to = at;
    return 1;
}

const char *log_redact_url(const char *url, char *out, size_t cap) {
    const char *scheme = strstr(url, "://"), *from, *to;
    if (!scheme || !url_password(scheme, 1, &from, &to)) {
        snprintf(out, cap, "%s", url);
    } else {
        snprintf(out, cap, "%.*s%s%s", (int)(from - url), url, MASK, to);
    }
    return out;
}

/* Copy in to out (cap bytes, NUL-terminated, cut if need be), with every
 * remembered secret, every value of a secret KEY=VALUE and every password
 * in a URL's userinfo blanked. */
static void redact(const char *in, char *out, size_t cap) {
    size_t o = 0;
    const char *p = in, *from, *to;

#define PUT(c)                         \
    do {                               \
        if (o + 1 < cap) out[o++] = c; \
    } while (0)

    pthread_mutex_lock(&secrets_lock);
    while (*p && o + 1 < cap) {
        size_t len = nsecrets ? secret_at(p) : 0;
        if (len) {
            for (const char *m = MASK; *m; m++) PUT(*m);
            p += len;
        } else if (*p == ':' && url_password(p, 0, &from, &to)) {
            while (p < from) PUT(*p++);
            for (const char *m = MASK; *m; m++) PUT(*m);
            p = to;
        } else if (*p == '=' && secret_key_before(in, p)) {
            const char *v;
            PUT(*p++);
            while (*p == ' ' || *p == '\t') PUT(*p++);
            /* librdkafka writes "[redacted]" itself; keep it. */
            if (strncmp(p, "[redacted]", 10) == 0 || value_end(*p)) continue;
            for (v = p; !value_end(*v); v++) continue;
            for (const char *m = MASK; *m; m++) PUT(*m);
            p = v;
        } else {
            PUT(*p++);
        }
    }
    pthread_mutex_unlock(&secrets_lock);
    out[o] = '\0';
#undef PUT
}

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0:
 * overlong forms, surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t need;
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
    if (need == 0 || n < need) return 0;
    for (size_t i = 1; i < need; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) ||
        (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
        return 0;
    return need;
}

size_t log_json_string(char *out, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;

    out[o++] = '"';
    while (n > 0) {
        size_t len = utf8_len(p, n);
        if (len == 0) {
            memcpy(out + o, "\\ufffd", 6);
            o += 6;
            len = 1;
        } else if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p == '\n' || *p == '\r' || *p == '\t') {
            out[o++] = '\\';
            out[o++] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
        } else if (*p < 0x20 || *p == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            memcpy(out + o, esc, 6);
            o += 6;
        } else {
            memcpy(out + o, p, len);
            o += len;
        }
        p += len;
        n -= len;
    }
    out[o++] = '"';
    return o;
}

/* A line being built: in the caller's buffer while it fits, on the heap
 * past that.  There is always room left for the newline. */
typedef struct out {
    char *buf;
    size_t len, cap;
    int heap;
} out_t;

static void grow(out_t *o, size_t need) {
    size_t cap = o->cap * 2 > need ? o->cap * 2 : need;
    char *grown = o->heap ? realloc(o->buf, cap) : malloc(cap);
    if (!grown) return; /* the line is cut short instead */
    if (!o->heap) memcpy(grown, o->buf, o->len);
    o->buf = grown;
    o->cap = cap;
    o->heap = 1;
}

static void put(out_t *o, const char *s, size_t n) {
    if (o->len + n + 1 > o->cap) grow(o, o->len + n + 1);
    if (o->len + n + 1 > o->cap) n = o->cap - o->len - 1;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_str(out_t *o, const char *s) { put(o, s, strlen(s)); }

/* A JSON string: quotes, backslashes and control characters escaped,
 * invalid UTF-8 replaced by U+FFFD, so every line parses. */
static void put_json_n(out_t *o, const char *s, size_t n) {
    size_t need = 6 * n + 3;
    if (o->len + need + 1 > o->cap) grow(o, o->len + need + 1);
    if (o->len + need + 1 > o->cap) {
        put_str(o, "\"\""); /* out of memory: the line still parses */
        return;
    }
    o->len += log_json_string(o->buf + o->len, s, n);
}

static void put_json(out_t *o, const char *s) { put_json_n(o, s, strlen(s)); }

/* ,"name":value */
static void put_member(out_t *o, const char *name, const char *value, size_t n) {
    put_str(o, ",\"");
    put_str(o, name);
    put_str(o, "\":");
    put_json_n(o, value, n);
}

/* A key is shown by its first bytes only: a line per message must stay a
 * line, whatever the producer put in the key. */
#define KEY_SHOWN 256

/* The record's names in a JSON line; a field of luka.log's with one of
 * them is written as "fields.NAME" (as logrus does), so nothing is lost
 * and no line has a name twice. */
static const char *const line_names[] = {
    "time", "level", "component", "app", "endpoint", "group", "topic", "partition",
    "offset", "key", "message_id", "trace_id", "message", "traceback"};

static int line_name(const char *name) {
    for (size_t i = 0; i < sizeof(line_names) / sizeof(line_names[0]); i++)
        if (strcmp(name, line_names[i]) == 0) return 1;
    return 0;
}

static void json_line(out_t *o, const log_record_t *r, const char *stamp) {
    const log_ctx_t *c = r->ctx;
    char num[32];

    put_str(o, "{\"time\":\"");
    put_str(o, stamp);
    put_str(o, "\",\"level\":\"");
    put_str(o, log_level_name(r->level));
    put_str(o, "\",\"component\":");
    put_json(o, r->component);
    if (c && c->app) put_member(o, "app", c->app, strlen(c->app));
    if (c && c->endpoint) put_member(o, "endpoint", c->endpoint, strlen(c->endpoint));
    if (c && c->group) put_member(o, "group", c->group, strlen(c->group));
    if (c && c->topic) {
        put_member(o, "topic", c->topic, strlen(c->topic));
        if (c->partition >= 0) {
            snprintf(num, sizeof(num), ",\"partition\":%d", (int)c->partition);
            put_str(o, num);
        }
        if (c->offset >= 0) {
            snprintf(num, sizeof(num), ",\"offset\":%lld", (long long)c->offset);
            put_str(o, num);
        }
    }
    if (c && c->key) put_member(o, "key", c->key, c->key_len < KEY_SHOWN ? c->key_len : KEY_SHOWN);
    if (c && c->id) put_member(o, "message_id", c->id, c->id_len);
    if (c && c->trace_id) put_member(o, "trace_id", c->trace_id, strlen(c->trace_id));
    put_str(o, ",\"message\":");
    put_json(o, r->message);
    for (int i = 0; i < r->nfields; i++) {
        const log_field_t *f = &r->fields[i];
        put_str(o, ",");
        if (line_name(f->name)) {
            char name[64];
            snprintf(name, sizeof(name), "fields.%s", f->name);
            put_json(o, name);
        } else {
            put_json(o, f->name);
        }
        put_str(o, ":");
        if (f->json) put_str(o, f->value);
        else put_json(o, f->value);
    }
    if (r->traceback) put_member(o, "traceback", r->traceback, strlen(r->traceback));
    put_str(o, "}");
}

/* Whether a text field's value must be quoted to read back as one value. */
static int needs_quotes(const char *s) {
    if (!*s) return 1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f) return 1;
    return 0;
}

static void text_line(out_t *o, const log_record_t *r, const char *stamp) {
    const log_ctx_t *c = r->ctx;
    char head[512];

    snprintf(head, sizeof(head), "%s %-5s %s: ", stamp, log_level_name(r->level), r->component);
    put_str(o, head);
    if (c && c->endpoint) {
        snprintf(head, sizeof(head), "[%s] ", c->endpoint);
        put_str(o, head);
    }
    if (c && c->topic) {
        snprintf(head, sizeof(head), "%s[%d]@%lld ", c->topic, (int)c->partition,
                 (long long)c->offset);
        put_str(o, head);
    }
    put_str(o, r->message);
    /* logfmt's key=value, strings quoted only when they must be. */
    for (int i = 0; i < r->nfields; i++) {
        const log_field_t *f = &r->fields[i];
        put_str(o, " ");
        put_str(o, f->name);
        put_str(o, "=");
        if (!f->json && needs_quotes(f->value)) put_json(o, f->value);
        else put_str(o, f->value);
    }
    /* A traceback follows on its own (tab-indented) lines, as Lua writes it. */
    if (r->traceback) {
        put_str(o, "\n");
        put_str(o, r->traceback);
    }
}

/* s redacted into a malloc'd string.  A blanked value can grow eightfold
 * (a one-character password becomes ********), never more. */
static char *redacted(const char *s) {
    size_t cap = 8 * strlen(s) + 16;
    char *out = malloc(cap);
    if (out) redact(s, out, cap);
    return out;
}

log_sink_fn log_sink;
static void *sink_ud;

void log_set_sink(log_sink_fn fn, void *ud) {
    log_sink = fn;
    sink_ud = ud;
}

void log_put(const log_record_t *r) {
    /* Escaping may grow a character to six; luka's own lines fit here. */
    char msg[MESSAGE_MAX], line[MESSAGE_MAX * 6 + 1024], stamp[48], *tb = NULL;
    out_t o = {line, 0, sizeof(line), 0};
    log_record_t clean = *r;
    log_field_t *fields = NULL;
    struct timeval tv;
    struct tm tm;

    redact(r->message, msg, sizeof(msg));
    clean.message = msg;
    if (r->traceback) clean.traceback = tb = redacted(r->traceback);
    if (r->nfields > 0 && (fields = calloc((size_t)r->nfields, sizeof(*fields)))) {
        for (int i = 0; i < r->nfields; i++) {
            fields[i].name = r->fields[i].name;
            if (log_is_secret(r->fields[i].name)) {
                fields[i].value = strdup(MASK);
            } else {
                fields[i].value = redacted(r->fields[i].value);
                fields[i].json = r->fields[i].json;
            }
            if (!fields[i].value) fields[i].value = strdup(""), fields[i].json = 0;
        }
        clean.fields = fields;
    } else {
        clean.nfields = 0;
    }

    if (log_sink) log_sink(sink_ud, &clean);
    if (r->level <= log_level) {
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp + strlen(stamp), sizeof(stamp) - strlen(stamp), ".%03dZ",
                 (int)(tv.tv_usec / 1000));
        if (log_format == LOG_JSON) json_line(&o, &clean, stamp);
        else text_line(&o, &clean, stamp);
        /* One write per line keeps lines whole when several processes
         * share a terminal or a log file. */
        o.buf[o.len++] = '\n';
        fwrite(o.buf, 1, o.len, stderr);
        fflush(stderr);
    }
    if (o.heap) free(o.buf);
    for (int i = 0; fields && i < r->nfields; i++) free((char *)fields[i].value);
    free(fields);
    free(tb);
}

void log_write(int level, const char *component, const log_ctx_t *ctx, const char *fmt, ...) {
    char msg[MESSAGE_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_put(&(log_record_t){level, component, ctx, msg, NULL, 0, NULL});
}

void log_partitions(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t len) {
    size_t n = 0;
    if (len == 0) return;
    buf[0] = '\0';
    for (int i = 0; i < parts->cnt && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s[%d]", i ? " " : "", parts->elems[i].topic,
                              (int)parts->elems[i].partition);
}
