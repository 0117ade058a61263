/* tail.c - `luka tail`: read a topic and print each message as a header line
 * (topic[partition]@offset, time, key, headers) followed by its value, JSON
 * indented on a terminal.  Without --group it reads every partition and
 * commits nothing; with one it joins the group and commits what it printed. */
#include "cmd/tail.h"
#include "cmd/tail_print.h"

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
#include "kafka/client.h"
#include "runtime/host.h"
#include "base/cliopt.h"
#include "base/log.h"
#include "cmd/admin_client.h"

/* The brokers get this long to describe the topic, asked in steps short
 * enough that Ctrl-C is not ignored meanwhile. */
#define METADATA_STEP_MS 500
#define METADATA_STEPS 20
#define OFFSETS_TIMEOUT_MS 10000
/* How often the poll loop looks at the signal flag. */
#define POLL_MS 100

/* Where reading starts in each partition (-o). */
enum { FROM_END, FROM_BEGINNING, FROM_OFFSET, FROM_TAIL, FROM_TIME };

typedef struct tail {
    const char *topic, *group;
    int from;         /* FROM_* */
    int64_t from_arg; /* the offset, count from the end, or timestamp (ms) */
    int partition;    /* -p, or -1 for every partition */
    int exit_at_end;  /* -e */
    const char *format; /* -f */
    int json;         /* -J */
    long long count; /* stop after this many messages; 0: never */
    long long printed;
    int pretty;      /* stdout is a terminal */
    char *brokers;
    int fatal;       /* the client reported a fatal error */
    /* With -e, per partition: assigned to this tail, and at its end. */
    int nparts;
    unsigned char *assigned, *at_end;
} tail_t;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Options */

enum {
    OPT_TOPIC, OPT_BROKERS, OPT_GROUP, OPT_OFFSET, OPT_FROM, OPT_PARTITION, OPT_EXIT, OPT_COUNT,
    OPT_FORMAT, OPT_JSON, NOPTS
};

static const cliopt_t options[NOPTS] = {
    [OPT_TOPIC] = {"topic", 't', "TOPIC", "the topic (or give it as the first argument)"},
    [OPT_BROKERS] = {"brokers", 'b', "LIST",
                     "bootstrap servers (default KAFKA_BROKERS, else localhost:9092)"},
    [OPT_GROUP] = {"group", 'G', "GROUP",
                   "join consumer group GROUP and commit what was printed;\n"
                   "without it, read every partition and commit nothing"},
    [OPT_OFFSET] = {"offset", 'o', "OFFSET",
                    "where to start in each partition: beginning, end (default),\n"
                    "an offset N, -N for the last N messages, or s@MS for the\n"
                    "first message at or after a time in ms since the epoch;\n"
                    "in a group, beginning or end, used only while the group\n"
                    "has no committed offset"},
    [OPT_FROM] = {"from", 0, "beginning|end", "the same as -o beginning or -o end"},
    [OPT_PARTITION] = {"partition", 'p', "N", "read only partition N (not in a group)"},
    [OPT_EXIT] = {"exit", 'e', NULL, "exit once every partition's end is reached"},
    [OPT_COUNT] = {"count", 'c', "N", "exit after printing N messages"},
    [OPT_FORMAT] = {"format", 'f', "FORMAT",
                    "print each message as FORMAT, as kcat -f: %t topic, %p\n"
                    "partition, %o offset, %k key, %s value, %h headers\n"
                    "(n=v,...), %T timestamp (ms), %K and %S key and value\n"
                    "lengths (-1 when null), %% a percent sign; \\n \\r \\t \\\\\n"
                    "escapes.  Keys and values are written as they are"},
    [OPT_JSON] = {"json", 'J', NULL,
                  "print each message as one line of JSON, as kcat -J:\n"
                  "topic, partition, offset, tstype, ts, broker, headers\n"
                  "[name, value, ...] (when there are any), key, payload\n"
                  "(strings, or null)"},
};

static const clicmd_t tail_cmd = {
    .name = "tail",
    .synopsis = "tail TOPIC [options]\n"
                "       luka tail -t TOPIC [-b BROKERS] [-o OFFSET] [-p N] [-e] [-c N] [-f FMT | -J]",
    .about = "Print TOPIC's messages until Ctrl-C or SIGTERM (or -e, -c): by default, for\n"
             "each, a line with topic[partition]@offset, the time (UTC), key=KEY and\n"
             "headers: NAME=VALUE..., then the value.  JSON values are indented when\n"
             "stdout is a terminal and on one line otherwise; other values are text\n"
             "with control and non-UTF-8 bytes escaped (\\n, \\xNN).  Status lines go\n"
             "to stderr.",
    .opts = options,
    .nopts = NOPTS,
};

#define bad_usage(...) cliopt_bad_usage("tail", __VA_ARGS__)

/* -o: beginning, end, N, -N or s@MS. */
static int parse_offset(const char *v, tail_t *t) {
    long long n;
    char *end;
    if (!strcmp(v, "beginning") || !strcmp(v, "end")) {
        t->from = v[0] == 'b' ? FROM_BEGINNING : FROM_END;
        return 0;
    }
    t->from = v[0] == '-' ? FROM_TAIL : !strncmp(v, "s@", 2) ? FROM_TIME : FROM_OFFSET;
    v += t->from == FROM_TAIL ? 1 : t->from == FROM_TIME ? 2 : 0;
    errno = 0;
    n = strtoll(v, &end, 10);
    if (*v < '0' || *v > '9' || *end || errno) return -1;
    t->from_arg = n;
    return 0;
}

static int option(void *ud, int opt, const char *v) {
    tail_t *t = ((void **)ud)[0];
    run_opts_t *ro = ((void **)ud)[1];
    long n;
    char tok;
    switch (opt) {
    case CLIOPT_ARG:
    case OPT_TOPIC:
        if (!*v) return bad_usage("the topic name is empty");
        if (t->topic && strcmp(t->topic, v) != 0)
            return bad_usage("one topic at a time: got '%s' and '%s'", t->topic, v);
        t->topic = v;
        break;
    case OPT_GROUP:
        if (!*v) return bad_usage("--group needs a group name, got ''");
        t->group = v;
        break;
    case OPT_FROM:
        if (strcmp(v, "beginning") != 0 && strcmp(v, "end") != 0)
            return bad_usage("--from must be 'beginning' or 'end', got '%s'", v);
        t->from = v[0] == 'b' ? FROM_BEGINNING : FROM_END;
        break;
    case OPT_OFFSET:
        if (parse_offset(v, t))
            return bad_usage("-o takes beginning, end, an offset N, -N or s@MS, got '%s'", v);
        break;
    case OPT_PARTITION:
        if (cliopt_long(v, 0, INT32_MAX, &n))
            return bad_usage("-p takes a partition number, got '%s'", v);
        t->partition = (int)n;
        break;
    case OPT_EXIT:
        t->exit_at_end = 1;
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
    case OPT_FORMAT:
        if (!tail_format_ok(v, &tok) && !tok) return bad_usage("-f: a lone %% ends '%s'", v);
        if (!tail_format_ok(v, &tok))
            return bad_usage("-f: unknown token '%%%c' (tail knows %%t %%p %%o %%k %%s %%h %%T "
                             "%%S %%K %%%%)", tok);
        t->format = v;
        break;
    case OPT_JSON:
        t->json = 1;
        break;
    }
    return 0;
}

/* Fill t from argv.  Returns -1 to go on, or the exit code. */
static int parse(int argc, char **argv, tail_t *t, run_opts_t *ro) {
    void *ud[2] = {t, ro};
    int rc;
    t->partition = -1;
    if ((rc = cliopt_parse(&tail_cmd, argc, argv, option, ud)) >= 0) return rc;
    if (!t->topic) return bad_usage("which topic? usage: luka tail TOPIC [options]");
    if (t->format && t->json) return bad_usage("-f and -J both say how to print: choose one");
    if (t->group && t->from != FROM_BEGINNING && t->from != FROM_END)
        return bad_usage("in a group (--group), -o takes only beginning or end");
    if (t->group && t->partition >= 0)
        return bad_usage("in a group (--group), the group assigns partitions: no -p");
    return -1;
}

/* Print one message; returns 0, or -1 when stdout failed (errno set). */
static int print_message(tail_t *t, const rd_kafka_message_t *m) {
    tail_style_t style = {t->format, t->json, t->pretty};
    return tail_print(stdout, &style, m);
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
    char list[1024], why[512];

    log_partitions(parts, list, sizeof(list));
    for (int i = 0; i < parts->cnt; i++) {
        int p = (int)parts->elems[i].partition;
        if (p < 0 || p >= t->nparts) continue; /* grown since tail started: -e ignores it */
        t->assigned[p] = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        t->at_end[p] = 0;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info("tail", "group %s assigned %s", t->group,
                 parts->cnt ? list : "nothing (the group has more members than partitions)");
    } else {
        /* librdkafka commits the stored offsets on revocation, as it
         * auto-commits. */
        log_info("tail", "group %s revoked %s", t->group, parts->cnt ? list : "nothing");
    }
    if (kafka_rebalance_apply(rk, err, parts, why, sizeof(why)))
        log_warn("tail", "group %s: applying the rebalance: %s", t->group, why);
}

static rd_kafka_t *open_consumer(tail_t *t, const kafka_env_t *env, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = kafka_conf(env, NULL, errbuf, errlen);
    const char *reset = t->from == FROM_BEGINNING ? "earliest" : "latest";

    if (!conf) return NULL;
    /* Without --group a group id is still needed, for librdkafka's
     * consumer API to work at all; nothing joins or commits under it. */
    if (rd_kafka_conf_set(conf, "group.id", t->group ? t->group : "luka-tail", errbuf, errlen) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", t->group ? "true" : "false", errbuf,
                          errlen) ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", errbuf, errlen) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", reset, errbuf, errlen) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", t->exit_at_end ? "true" : "false", errbuf,
                          errlen)) {
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
    /* Logs, errors and rebalances are all served by rd_kafka_consumer_poll,
     * on this thread. */
    return admin_new(RD_KAFKA_CONSUMER, conf, errbuf, errlen);
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

/* Assign every partition (or -p's) at offsets looked up now, rather than
 * left for the fetcher to resolve later: once tail says it is reading, any
 * message produced after that is shown, which scripts and tests rely on. */
static int assign_all(rd_kafka_t *rk, tail_t *t, char *errbuf, size_t errlen) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(t->nparts);
    rd_kafka_resp_err_t err = 0;
    int rc = -1;

    for (int p = 0; p < t->nparts; p++) {
        if (t->partition >= 0 && p != t->partition) continue;
        /* As timestamps, BEGINNING and END ask for the first and next
         * offsets. */
        rd_kafka_topic_partition_list_add(l, t->topic, p)->offset =
            t->from == FROM_BEGINNING ? RD_KAFKA_OFFSET_BEGINNING
            : t->from == FROM_TIME    ? t->from_arg
                                      : RD_KAFKA_OFFSET_END;
        t->assigned[p] = 1;
    }
    if (t->from != FROM_OFFSET && (err = rd_kafka_offsets_for_times(rk, l, OFFSETS_TIMEOUT_MS))) {
        snprintf(errbuf, errlen, "cannot look up the offsets of %s: %s", t->topic,
                 rd_kafka_err2str(err));
        goto done;
    }
    for (int i = 0; i < l->cnt; i++) {
        rd_kafka_topic_partition_t *e = &l->elems[i];
        int64_t low, high;
        if (e->err) {
            snprintf(errbuf, errlen, "cannot look up the offset of %s[%d]: %s", t->topic,
                     (int)e->partition, rd_kafka_err2str(e->err));
            goto done;
        }
        if (t->from == FROM_OFFSET) {
            e->offset = t->from_arg;
        } else if (t->from == FROM_TAIL || (t->from == FROM_TIME && e->offset < 0)) {
            /* -N: the last N, as far as the log goes back; s@MS with no
             * message that late: the end. */
            if ((err = rd_kafka_query_watermark_offsets(rk, t->topic, e->partition, &low, &high,
                                                        OFFSETS_TIMEOUT_MS))) {
                snprintf(errbuf, errlen, "cannot look up the offsets of %s[%d]: %s", t->topic,
                         (int)e->partition, rd_kafka_err2str(err));
                goto done;
            }
            e->offset = t->from == FROM_TIME ? high
                        : high - t->from_arg > low ? high - t->from_arg
                                                   : low;
        }
    }
    for (int i = 0; i < l->cnt; i++)
        log_debug("tail", "%s[%d] starts at offset %lld", t->topic, (int)l->elems[i].partition,
                  (long long)l->elems[i].offset);
    if ((err = rd_kafka_assign(rk, l))) {
        snprintf(errbuf, errlen, "cannot assign %s: %s", t->topic, rd_kafka_err2str(err));
        goto done;
    }
    rc = 0;
done:
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* Where reading starts, for the log: "the beginning", "offset 5", ... */
static const char *start_text(const tail_t *t, char *buf, size_t len) {
    switch (t->from) {
    case FROM_BEGINNING: return "the beginning";
    case FROM_OFFSET: snprintf(buf, len, "offset %lld", (long long)t->from_arg); break;
    case FROM_TAIL: snprintf(buf, len, "the last %lld of each", (long long)t->from_arg); break;
    case FROM_TIME: snprintf(buf, len, "time %lld ms", (long long)t->from_arg); break;
    default: return "the end";
    }
    return buf;
}

/* With -e: whether every partition this tail reads has reached its end. */
static int all_at_end(const tail_t *t) {
    int any = 0;
    for (int p = 0; p < t->nparts; p++) {
        if (!t->assigned[p]) continue;
        if (!t->at_end[p]) return 0;
        any = 1;
    }
    return any;
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
    int stop = 0;
    while (!stop && !stop_requested && !t->fatal && (!t->count || t->printed < t->count)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, POLL_MS);
        int failed = 0;
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
            m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
            log_error("tail", "topic '%s' is gone: %s", t->topic, rd_kafka_message_errstr(m));
            t->fatal = 1;
        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < t->nparts) t->at_end[m->partition] = 1;
            if (t->exit_at_end && all_at_end(t)) stop = 1;
        } else if (m->err) {
            log_warn("tail", "%s", rd_kafka_message_errstr(m));
        } else if (print_message(t, m) != 0) {
            failed = 1;
        } else {
            if (t->group) store(rk, m);
            if (m->partition >= 0 && m->partition < t->nparts) t->at_end[m->partition] = 0;
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
    kafka_env_t env;
    struct sigaction sa;
    rd_kafka_t *rk = NULL;
    rd_kafka_resp_err_t err;
    char errbuf[1024];
    int rc, nparts;

    memset(&t, 0, sizeof(t));
    memset(&ro, 0, sizeof(ro));
    memset(&none, 0, sizeof(none));
    memset(&env, 0, sizeof(env));
    if ((rc = parse(argc, argv, &t, &ro)) >= 0) return rc;
    rc = 1;
    env.app = &none;
    env.brokers = t.brokers = kafka_brokers(ro.brokers, NULL);
    t.pretty = isatty(STDOUT_FILENO);

    /* The first signal ends the loop, which then closes the consumer
     * cleanly; a second one kills at once, as closing may take seconds. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!(rk = open_consumer(&t, &env, errbuf, sizeof(errbuf)))) {
        log_error("tail", "%s", errbuf);
        goto done;
    }
    if ((nparts = partition_count(rk, &t, errbuf, sizeof(errbuf))) <= 0) {
        if (stop_requested) rc = 0;
        else log_error("tail", "%s", errbuf);
        goto done;
    }
    if (t.partition >= nparts) {
        log_error("tail", "%s has %d partition(s), 0..%d: there is no partition %d", t.topic,
                  nparts, nparts - 1, t.partition);
        goto done;
    }
    t.nparts = nparts;
    if (!(t.assigned = calloc((size_t)nparts, 1)) || !(t.at_end = calloc((size_t)nparts, 1))) {
        log_error("tail", "out of memory");
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
        char where[64];
        if (assign_all(rk, &t, errbuf, sizeof(errbuf))) {
            log_error("tail", "%s", errbuf);
            goto done;
        }
        if (t.partition >= 0) snprintf(where, sizeof(where), "partition %d", t.partition);
        else snprintf(where, sizeof(where), "%d partition(s)", nparts);
        log_info("tail", "reading %s (%s) from %s, brokers %s; no group, nothing committed",
                 t.topic, where, start_text(&t, errbuf, sizeof(errbuf)), t.brokers);
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
    free(t.assigned);
    free(t.at_end);
    free(t.brokers);
    return rc;
}
