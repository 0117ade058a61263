/* tail.c - `luka tail`: read a topic and print each message as a header line
 * (topic[partition]@offset, time, key, headers) followed by its value, JSON
 * indented on a terminal.  Without --group it reads every partition and
 * commits nothing; with one it joins the group and commits what it printed. */
#include "cmd/tail.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "app/app.h"
#include "runtime/host.h"
#include "base/cliopt.h"
#include "base/log.h"

/* The brokers get this long to describe the topic, asked in steps short
 * enough that Ctrl-C is not ignored meanwhile. */
#define METADATA_STEP_MS 500
#define METADATA_STEPS 20
#define OFFSETS_TIMEOUT_MS 10000
/* How often the poll loop looks at the signal flag. */
#define POLL_MS 100

typedef struct tail {
    const char *topic, *group;
    int from_beginning;
    long long count; /* stop after this many messages; 0: never */
    long long printed;
    int pretty;      /* stdout is a terminal */
    const char *brokers;
    int fatal;       /* the client reported a fatal error */
} tail_t;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Options */

enum { OPT_GROUP, OPT_FROM, OPT_BROKERS, OPT_COUNT, NOPTS };

static const cliopt_t options[NOPTS] = {
    [OPT_GROUP] = {"--group", "G",
                   "join consumer group G and commit what was printed; without it,\n"
                   "read every partition and commit nothing"},
    [OPT_FROM] = {"--from", "beginning|end",
                  "where to start (default end); in a group, only while it has\n"
                  "no committed offset"},
    [OPT_BROKERS] = {"--brokers", "LIST",
                     "bootstrap servers (default KAFKA_BROKERS, else localhost:9092)"},
    [OPT_COUNT] = {"--count", "N", "exit after printing N messages"},
};

static void usage(FILE *out) {
    fputs("usage: luka tail TOPIC [--group G] [--from beginning|end] [--brokers LIST] [--count N]\n"
          "\n"
          "Print TOPIC's messages until Ctrl-C or SIGTERM: for each, a line with\n"
          "topic[partition]@offset, the time (UTC), key=KEY and headers: NAME=VALUE...,\n"
          "then the value.  JSON values are indented when stdout is a terminal and on\n"
          "one line otherwise; other values are text with control and non-UTF-8 bytes\n"
          "escaped (\\n, \\xNN).\n"
          "\n"
          "options (and luka's --log-level LEVEL):\n",
          out);
    cliopt_print(out, options, NOPTS);
}

#define bad_usage(...) cliopt_bad_usage("tail", __VA_ARGS__)

/* Fill t from argv.  Returns -1 to go on, or the exit code. */
static int parse(int argc, char **argv, tail_t *t, run_opts_t *ro) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int o;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (t->topic) return bad_usage("one topic at a time: got '%s' and '%s'", t->topic, a);
            t->topic = a;
            continue;
        }
        if ((o = cliopt_find(options, NOPTS, a)) < 0) return bad_usage("unknown option '%s'", a);
        if (i + 1 >= argc) return bad_usage("%s needs a value: %s %s", a, a, options[o].arg);
        v = argv[++i];
        switch (o) {
        case OPT_GROUP:
            if (!*v) return bad_usage("--group needs a group name, got ''");
            t->group = v;
            break;
        case OPT_FROM:
            if (strcmp(v, "beginning") != 0 && strcmp(v, "end") != 0)
                return bad_usage("--from must be 'beginning' or 'end', got '%s'", v);
            t->from_beginning = v[0] == 'b';
            break;
        case OPT_BROKERS:
            if (!*v) return bad_usage("--brokers needs host:port[,host:port...], got ''");
            ro->brokers = v;
            break;
        case OPT_COUNT: {
            char *end;
            errno = 0;
            t->count = strtoll(v, &end, 10);
            if (*end || end == v || errno || t->count <= 0)
                return bad_usage("--count takes a positive number of messages, got '%s'", v);
            break;
        }
        }
    }
    if (!t->topic) return bad_usage("which topic? usage: luka tail TOPIC [options]");
    return -1;
}

/* Printing */

/* Length of the well-formed UTF-8 sequence of a printable character at s
 * (n bytes available), or 0.  C1 controls count as unprintable: some
 * terminals obey them. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) len = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef) len = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4) len = 4, cp = s[0] & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
        return 0;
    return len;
}

/* Text with backslash escapes for what a terminal would not show as it is,
 * so that a binary value can neither garble the screen nor split a line. */
static void put_text(FILE *out, const char *s, size_t n, int quoted) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        size_t len;
        if (c == '\\' || (quoted && c == '"')) {
            fputc('\\', out), fputc(c, out), i++;
        } else if (c == '\n' || c == '\t' || c == '\r') {
            fputc('\\', out), fputc(c == '\n' ? 'n' : c == '\t' ? 't' : 'r', out), i++;
        } else if (c >= 0x20 && c < 0x7f) {
            fputc(c, out), i++;
        } else if (c >= 0x80 && (len = utf8_len(u + i, n - i)) > 0) {
            fwrite(u + i, 1, len, out), i += len;
        } else {
            fprintf(out, "\\x%02x", c), i++;
        }
    }
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

/* Print one message; returns 0, or -1 when stdout failed (errno set). */
static int print_message(tail_t *t, const rd_kafka_message_t *m) {
    FILE *out = stdout;
    rd_kafka_headers_t *hdrs;
    json_error_t jerr;
    json_t *parsed;

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

/* The consumer */

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    tail_t *t = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__RESOLVE ||
        err == RD_KAFKA_RESP_ERR__TRANSPORT) {
        log_error("tail", "cannot reach the brokers at %s: %s; check --brokers or KAFKA_BROKERS "
                          "(retrying)",
                  t->brokers, reason);
        return;
    }
    log_error("tail", "%s: %s", rd_kafka_err2name(err), reason);
    if (rd_kafka_fatal_error(rk, NULL, 0)) t->fatal = 1;
}

/* Only in a group.  The assignment is logged because joining takes seconds,
 * and a person watching an empty screen should know why. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    tail_t *t = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    char list[1024];

    log_partitions(parts, list, sizeof(list));
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info("tail", "group %s assigned %s", t->group,
                 parts->cnt ? list : "nothing (the group has more members than partitions)");
        if (cooperative) rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else rd_kafka_assign(rk, parts);
    } else {
        /* librdkafka commits the stored offsets on revocation, as it
         * auto-commits. */
        log_info("tail", "group %s revoked %s", t->group, parts->cnt ? list : "nothing");
        if (cooperative) rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        else rd_kafka_assign(rk, NULL);
    }
}

static rd_kafka_t *open_consumer(tail_t *t, host_t *h, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = host_kafka_conf(h, NULL, errbuf, errlen);
    const char *reset = t->from_beginning ? "earliest" : "latest";
    rd_kafka_t *rk;

    if (!conf) return NULL;
    /* Without --group a group id is still needed, for librdkafka's
     * consumer API to work at all; nothing joins or commits under it. */
    if (rd_kafka_conf_set(conf, "group.id", t->group ? t->group : "luka-tail", errbuf, errlen) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", t->group ? "true" : "false", errbuf,
                          errlen) ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", errbuf, errlen) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", reset, errbuf, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* A tail is short-lived and may be killed: the broker's minimum session
     * lets its group reassign the partitions within seconds, and lets the
     * next tail in the group join without waiting out the default 45 s.
     * LUKA_KAFKA_SESSION_TIMEOUT_MS still decides when set. */
    if (!getenv("LUKA_KAFKA_SESSION_TIMEOUT_MS") && t->group &&
        rd_kafka_conf_set(conf, "session.timeout.ms", "6000", errbuf, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* Replaces the host's, which names the brokers of a running host. */
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (t->group) rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, t);
    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errlen))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* conf is now owned by rk.  Logs, errors and rebalances are all served
     * by rd_kafka_consumer_poll, on this thread. */
    rd_kafka_set_log_queue(rk, NULL);
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* The topic's partition count; 0 when it does not exist, with errbuf
 * saying so and naming the topics that do; -1 with errbuf when the brokers
 * did not answer. */
static int partition_count(rd_kafka_t *rk, const tail_t *t, char *errbuf, size_t errlen) {
    const struct rd_kafka_metadata *md = NULL;
    const rd_kafka_metadata_topic_t *found = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    int n = 0, others = 0;
    size_t len;

    for (int i = 0; i < METADATA_STEPS && err == RD_KAFKA_RESP_ERR__TIMED_OUT && !stop_requested;
         i++)
        err = rd_kafka_metadata(rk, 1, NULL, &md, METADATA_STEP_MS);
    if (err) {
        snprintf(errbuf, errlen, "cannot list the topics at %s: %s", t->brokers,
                 rd_kafka_err2str(err));
        return -1;
    }
    for (int i = 0; i < md->topic_cnt && !found; i++)
        if (strcmp(md->topics[i].topic, t->topic) == 0 &&
            md->topics[i].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            found = &md->topics[i];
    if (found && found->partition_cnt > 0) {
        n = found->partition_cnt;
    } else if (found) {
        snprintf(errbuf, errlen, "topic '%s': %s", t->topic, rd_kafka_err2str(found->err));
    } else {
        len = (size_t)snprintf(errbuf, errlen, "topic '%s' does not exist at %s", t->topic,
                               t->brokers);
        for (int i = 0; i < md->topic_cnt && len < errlen; i++) {
            /* Internal topics (__consumer_offsets) are nobody's typo. */
            if (strncmp(md->topics[i].topic, "__", 2) == 0) continue;
            len += (size_t)snprintf(errbuf + len, errlen - len, "%s%s",
                                    others++ ? ", " : "; topics there: ", md->topics[i].topic);
        }
        if (!others && len < errlen) snprintf(errbuf + len, errlen - len, "; it has no topics yet");
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

/* Assign every partition at offsets looked up now, rather than left for the
 * fetcher to resolve later: once tail says it is reading, any message
 * produced after that is shown, which scripts and tests rely on. */
static int assign_all(rd_kafka_t *rk, const tail_t *t, int nparts, char *errbuf, size_t errlen) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    rd_kafka_resp_err_t err;
    int rc = -1;

    /* As timestamps, BEGINNING and END ask for the first and next offsets. */
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(l, t->topic, p)->offset =
            t->from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
    if ((err = rd_kafka_offsets_for_times(rk, l, OFFSETS_TIMEOUT_MS))) {
        snprintf(errbuf, errlen, "cannot look up the offsets of %s: %s", t->topic,
                 rd_kafka_err2str(err));
        goto done;
    }
    for (int i = 0; i < l->cnt; i++)
        if (l->elems[i].err) {
            snprintf(errbuf, errlen, "cannot look up the offset of %s[%d]: %s", t->topic,
                     (int)l->elems[i].partition, rd_kafka_err2str(l->elems[i].err));
            goto done;
        }
    if ((err = rd_kafka_assign(rk, l))) {
        snprintf(errbuf, errlen, "cannot assign %s: %s", t->topic, rd_kafka_err2str(err));
        goto done;
    }
    rc = 0;
done:
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* Mark m as printed, for the group's next commit. */
static void store(rd_kafka_t *rk, const rd_kafka_message_t *m) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_resp_err_t err;
    rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition)->offset =
        m->offset + 1;
    if ((err = rd_kafka_offsets_store(rk, l)) || (err = l->elems[0].err))
        log_warn("tail", "cannot store the offset of %s[%d]@%lld: %s", rd_kafka_topic_name(m->rkt),
                 (int)m->partition, (long long)m->offset, rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(l);
}

/* Print messages until told to stop.  Returns the exit code. */
static int tail_loop(rd_kafka_t *rk, tail_t *t) {
    while (!stop_requested && !t->fatal && (!t->count || t->printed < t->count)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, POLL_MS);
        int failed = 0;
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
            m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
            log_error("tail", "topic '%s' is gone: %s", t->topic, rd_kafka_message_errstr(m));
            t->fatal = 1;
        } else if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("tail", "%s", rd_kafka_message_errstr(m));
        } else if (print_message(t, m) != 0) {
            failed = 1;
        } else {
            if (t->group) store(rk, m);
            t->printed++;
        }
        rd_kafka_message_destroy(m);
        if (failed) {
            /* A reader that went away (| head) is a normal end. */
            if (errno == EPIPE) return 0;
            log_error("tail", "cannot write to stdout: %s", strerror(errno));
            return 1;
        }
    }
    return t->fatal ? 1 : 0;
}

int tail_main(int argc, char **argv) {
    tail_t t;
    run_opts_t ro;
    app_t none; /* tail reads no app: the common client config without one */
    host_t h;
    struct sigaction sa;
    rd_kafka_t *rk = NULL;
    rd_kafka_resp_err_t err;
    char errbuf[1024];
    int rc, nparts;

    memset(&t, 0, sizeof(t));
    memset(&ro, 0, sizeof(ro));
    memset(&none, 0, sizeof(none));
    memset(&h, 0, sizeof(h));
    if ((rc = parse(argc, argv, &t, &ro)) >= 0) return rc;
    rc = 1;
    h.app = &none;
    host_resolve_brokers(&h, &ro);
    t.brokers = h.brokers;
    t.pretty = isatty(STDOUT_FILENO);

    /* The first signal ends the loop, which then closes the consumer
     * cleanly; a second one kills at once, as closing may take seconds. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!(rk = open_consumer(&t, &h, errbuf, sizeof(errbuf)))) {
        log_error("tail", "%s", errbuf);
        goto done;
    }
    if ((nparts = partition_count(rk, &t, errbuf, sizeof(errbuf))) <= 0) {
        if (stop_requested) rc = 0;
        else log_error("tail", "%s", errbuf);
        goto done;
    }
    if (t.group) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, t.topic, RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (err) {
            log_error("tail", "cannot subscribe to %s: %s", t.topic, rd_kafka_err2str(err));
            goto done;
        }
        log_info("tail", "joining group %s for %s (%d partition(s)), brokers %s", t.group, t.topic,
                 nparts, t.brokers);
    } else {
        if (assign_all(rk, &t, nparts, errbuf, sizeof(errbuf))) {
            log_error("tail", "%s", errbuf);
            goto done;
        }
        log_info("tail", "reading %s (%d partition(s)) from the %s, brokers %s; no group, "
                         "nothing committed",
                 t.topic, nparts, t.from_beginning ? "beginning" : "end", t.brokers);
    }
    rc = tail_loop(rk, &t);
done:
    if (rk) {
        /* The group's last offsets are committed here, not left to the
         * next auto-commit that would never come. */
        if (t.group && t.printed && (err = rd_kafka_commit(rk, NULL, 0)) &&
            err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            log_error("tail", "cannot commit to group %s: %s", t.group, rd_kafka_err2str(err));
            rc = 1;
        }
        if ((err = rd_kafka_consumer_close(rk)))
            log_warn("tail", "closing the consumer: %s", rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        log_info("tail", "closed after %lld message(s)", t.printed);
    }
    free(h.brokers);
    return rc;
}
