/* tail_print.c - how `luka tail` prints a message: a header line
 * (topic[partition]@offset, time, key, headers) and the value, JSON laid
 * out and indented on a terminal, anything else escaped so a terminal
 * shows it as it is; or kcat's -f format, or -J's JSON envelope. */
#include "cmd/tail_print.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

/* Whether a -f format has only tokens tail knows; *tok gets the first
 * one it does not ('\0' for a lone % at the end). */
int tail_format_ok(const char *f, char *tok) {
    for (; *f; f++) {
        if (*f != '%') continue;
        if (!*++f || !strchr("tpokshTSK%", *f)) {
            *tok = *f;
            return 0;
        }
    }
    return 1;
}


/* Length of the well-formed UTF-8 sequence at s (n bytes available), with
 * its code point in *cp, or 0. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp) {
    size_t len;
    if (s[0] < 0x80) return *cp = s[0], 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) len = 2, *cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef) len = 3, *cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4) len = 4, *cp = s[0] & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        *cp = *cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && *cp < 0x800) || (len == 4 && (*cp < 0x10000 || *cp > 0x10ffff)) ||
        (*cp >= 0xd800 && *cp <= 0xdfff))
        return 0;
    return len;
}

/* C1 controls count as unprintable: some terminals obey them. */
static int c1(uint32_t cp) { return cp >= 0x80 && cp < 0xa0; }

/* Text with backslash escapes for what a terminal would not show as it is,
 * so that a binary value can neither garble the screen nor split a line. */
static void put_text(FILE *out, const char *s, size_t n, int quoted) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        size_t len;
        uint32_t cp;
        if (c == '\\' || (quoted && c == '"')) {
            fputc('\\', out), fputc(c, out), i++;
        } else if (c == '\n' || c == '\t' || c == '\r') {
            fputc('\\', out), fputc(c == '\n' ? 'n' : c == '\t' ? 't' : 'r', out), i++;
        } else if (c >= 0x20 && c < 0x7f) {
            fputc(c, out), i++;
        } else if (c >= 0x80 && (len = utf8_len(u + i, n - i, &cp)) > 0 && !c1(cp)) {
            fwrite(u + i, 1, len, out), i += len;
        } else {
            fprintf(out, "\\x%02x", c), i++;
        }
    }
}

/* A JSON string for -J.  JSON cannot hold bytes that are not UTF-8: each
 * such byte becomes the code point of the same number (\u00NN), as Latin-1
 * would read it; controls, DEL and C1 controls are escaped. */
static void put_json_string(FILE *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        size_t len;
        uint32_t cp;
        if (c == '"' || c == '\\') {
            fputc('\\', out), fputc(c, out), i++;
        } else if (c == '\n') {
            fputs("\\n", out), i++;
        } else if (c == '\t') {
            fputs("\\t", out), i++;
        } else if (c == '\r') {
            fputs("\\r", out), i++;
        } else if (c >= 0x20 && c < 0x7f) {
            fputc(c, out), i++;
        } else if (c >= 0x80 && (len = utf8_len(u + i, n - i, &cp)) > 0) {
            if (c1(cp)) fprintf(out, "\\u%04x", (unsigned)cp);
            else fwrite(u + i, 1, len, out);
            i += len;
        } else {
            fprintf(out, "\\u%04x", c), i++;
        }
    }
    fputc('"', out);
}

/* A key, header name or header value in the header line: quoted when empty
 * or when a space or quote would make the line ambiguous. */
static void put_field(FILE *out, const char *s, size_t n) {
    int quote = n == 0 || memchr(s, ' ', n) || memchr(s, '"', n);
    if (quote) fputc('"', out);
    put_text(out, s, n, quote);
    if (quote) fputc('"', out);
}

static void indent(FILE *out, int depth, int pretty) {
    if (!pretty) return;
    fputc('\n', out);
    for (int i = 0; i < depth; i++) fputs("  ", out);
}

/* Lay out JSON text that jansson accepted: indented, or on one line.  Its
 * tokens are copied as they are, so numbers keep every digit and strings
 * their escapes, where a jansson round trip would print 0.1 as
 * 0.10000000000000001.  Only DEL and C1 controls inside strings are
 * rewritten, as the equivalent \u escapes. */
static void put_json(FILE *out, const char *s, size_t n, int pretty) {
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (in_string) {
            if (c == '\\') {
                fputc(c, out), fputc(s[++i], out);
            } else if (c == 0x7f) {
                fputs("\\u007f", out);
            } else if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] < 0xa0) {
                fprintf(out, "\\u%04x", (unsigned char)s[++i]);
            } else {
                fputc(c, out);
                in_string = c != '"';
            }
            continue;
        }
        switch (c) {
        case ' ': case '\t': case '\n': case '\r':
            break;
        case '"':
            in_string = 1;
            fputc(c, out);
            break;
        case '{': case '[': {
            size_t j = i + 1;
            while (j < n && strchr(" \t\n\r", s[j])) j++;
            fputc(c, out);
            if (j < n && (s[j] == '}' || s[j] == ']')) { /* {} and [] stay whole */
                fputc(s[j], out);
                i = j;
            } else {
                indent(out, ++depth, pretty);
            }
            break;
        }
        case '}': case ']':
            indent(out, --depth, pretty);
            fputc(c, out);
            break;
        case ',':
            fputc(c, out);
            indent(out, depth, pretty);
            break;
        case ':':
            fputs(pretty ? ": " : ":", out);
            break;
        default:
            fputc(c, out);
        }
    }
}

static void put_time(FILE *out, const rd_kafka_message_t *m) {
    rd_kafka_timestamp_type_t type;
    int64_t ms = rd_kafka_message_timestamp(m, &type);
    time_t secs;
    struct tm tm;
    char stamp[32];

    if (type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ms < 0) {
        fputs("no-timestamp", out);
        return;
    }
    secs = (time_t)(ms / 1000);
    gmtime_r(&secs, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(out, "%s.%03dZ", stamp, (int)(ms % 1000));
}

/* -J: one line of JSON, with kcat -J's fields in kcat's order. */
static void put_envelope(FILE *out, const rd_kafka_message_t *m) {
    static const char *const tstypes[] = {"unknown", "create", "logappend"};
    rd_kafka_timestamp_type_t type;
    int64_t ts = rd_kafka_message_timestamp(m, &type);
    rd_kafka_headers_t *hdrs;

    fputs("{\"topic\":", out);
    put_json_string(out, rd_kafka_topic_name(m->rkt), strlen(rd_kafka_topic_name(m->rkt)));
    fprintf(out, ",\"partition\":%d,\"offset\":%lld,\"tstype\":\"%s\",\"ts\":%lld,\"broker\":%d",
            (int)m->partition, (long long)m->offset,
            tstypes[type >= 0 && type <= 2 ? type : 0], (long long)ts,
            (int)rd_kafka_message_broker_id(m));
    if (rd_kafka_message_headers(m, &hdrs) == 0 && rd_kafka_header_cnt(hdrs) > 0) {
        const char *name;
        const void *value;
        size_t size;
        fputs(",\"headers\":[", out);
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == 0; i++) {
            if (i) fputc(',', out);
            put_json_string(out, name, strlen(name));
            fputc(',', out);
            if (value) put_json_string(out, value, size);
            else fputs("null", out);
        }
        fputc(']', out);
    }
    fputs(",\"key\":", out);
    if (m->key) put_json_string(out, m->key, m->key_len);
    else fputs("null", out);
    fputs(",\"payload\":", out);
    if (m->payload) put_json_string(out, m->payload, m->len);
    else fputs("null", out);
    fputs("}\n", out);
}

/* -f: kcat's tokens and escapes, bytes written as they are (format_ok
 * checked the tokens). */
static void put_formatted(FILE *out, const char *f, const rd_kafka_message_t *m) {
    rd_kafka_headers_t *hdrs;
    for (; *f; f++) {
        if (*f == '\\' && f[1] && strchr("nrt\\", f[1])) {
            f++;
            fputc(*f == 'n' ? '\n' : *f == 'r' ? '\r' : *f == 't' ? '\t' : '\\', out);
            continue;
        }
        if (*f != '%') {
            fputc(*f, out);
            continue;
        }
        switch (*++f) {
        case 't': fputs(rd_kafka_topic_name(m->rkt), out); break;
        case 'p': fprintf(out, "%d", (int)m->partition); break;
        case 'o': fprintf(out, "%lld", (long long)m->offset); break;
        case 'k': if (m->key) fwrite(m->key, 1, m->key_len, out); break;
        case 's': if (m->payload) fwrite(m->payload, 1, m->len, out); break;
        case 'K': fprintf(out, "%lld", m->key ? (long long)m->key_len : -1LL); break;
        case 'S': fprintf(out, "%lld", m->payload ? (long long)m->len : -1LL); break;
        case 'T': fprintf(out, "%lld", (long long)rd_kafka_message_timestamp(m, NULL)); break;
        case 'h':
            if (rd_kafka_message_headers(m, &hdrs) == 0) {
                const char *name;
                const void *value;
                size_t size;
                for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == 0;
                     i++) {
                    fprintf(out, "%s%s=", i ? "," : "", name);
                    if (value) fwrite(value, 1, size, out);
                }
            }
            break;
        default: fputc('%', out);
        }
    }
}

/* Print one message; returns 0, or -1 when stdout failed (errno set). */
int tail_print(FILE *out, const tail_style_t *t, const rd_kafka_message_t *m) {
    rd_kafka_headers_t *hdrs;
    json_error_t jerr;
    json_t *parsed;

    if (t->json || t->format) {
        if (t->json) put_envelope(out, m);
        else put_formatted(out, t->format, m);
        return fflush(out) == 0 && !ferror(out) ? 0 : -1;
    }

    fprintf(out, "%s[%d]@%lld ", rd_kafka_topic_name(m->rkt), (int)m->partition,
            (long long)m->offset);
    put_time(out, m);
    if (m->key) {
        fputs(" key=", out);
        put_field(out, m->key, m->key_len);
    }
    if (rd_kafka_message_headers(m, &hdrs) == 0 && rd_kafka_header_cnt(hdrs) > 0) {
        const char *name;
        const void *value;
        size_t size;
        fputs(" headers:", out);
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == 0; i++) {
            fputc(' ', out);
            put_field(out, name, strlen(name));
            if (value) {
                fputc('=', out);
                put_field(out, value, size);
            }
        }
    }
    fputc('\n', out);

    if (!m->payload) {
        fputs("(tombstone)", out);
    } else if ((parsed = json_loadb(m->payload, m->len, JSON_DECODE_ANY, &jerr))) {
        json_decref(parsed);
        put_json(out, m->payload, m->len, t->pretty);
    } else {
        put_text(out, m->payload, m->len, 0);
    }
    fputs(t->pretty ? "\n\n" : "\n", out);
    return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}
