/* policy.c - a failed message's way out, in the order the app declared: a
 * delayed retry, the error channel (a topic, a publisher or a function),
 * then the final failure strategy.  Returns decisions; the outcome code
 * (outcome.c) carries them out, logs and counts them. */
#include "flow/policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "base/rng.h"

/* The backoff before delivery number rounds+1: initial * multiplier^rounds,
 * capped, less up to half of it at random with jitter.  Each process draws
 * its own, so that instances that failed together retry apart. */
static int64_t backoff(const policy_conf_t *pol, int rounds) {
    double d = (double)pol->initial_ms;
    for (int i = 0; i < rounds && d < (double)pol->max_ms; i++) d *= pol->multiplier;
    if (d > (double)pol->max_ms) d = (double)pol->max_ms;
    if (pol->jitter) d -= d / 2 * rng_unit();
    return (int64_t)d;
}

decision_t policy_decide(const policy_conf_t *pol, int rounds, int retryable) {
    if (retryable && rounds < pol->delayed) return (decision_t){POLICY_RETRY, backoff(pol, rounds)};
    if (pol->error_kind != ERRCH_NONE) return (decision_t){POLICY_ERROR_CHANNEL, 0};
    return policy_final(pol, rounds);
}

decision_t policy_final(const policy_conf_t *pol, int rounds) {
    switch (pol->final_failure) {
    case FINAL_IGNORE: return (decision_t){POLICY_IGNORE, 0};
    case FINAL_RELEASE: return (decision_t){POLICY_RELEASE, backoff(pol, rounds)};
    case FINAL_RESEND: return (decision_t){POLICY_RESEND, 0};
    default: return (decision_t){POLICY_STOP, 0};
    }
}

static void add_header(rd_kafka_headers_t *h, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_header(rd_kafka_headers_t *h, const char *name, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(buf)) n = sizeof(buf) - 1;
    rd_kafka_header_add(h, name, -1, buf, n);
}

/* The original's headers, without our own attempt count. */
static rd_kafka_headers_t *copy_headers(const message_t *m) {
    rd_kafka_headers_t *h = m->headers ? rd_kafka_headers_copy(m->headers) : rd_kafka_headers_new(8);
    rd_kafka_header_remove(h, ATTEMPTS_HEADER);
    return h;
}

rd_kafka_headers_t *policy_dead_letter_headers(const message_t *m, const endpoint_conf_t *ep,
                                               int attempts, const char *error,
                                               const char *traceback) {
    rd_kafka_headers_t *h = copy_headers(m);
    char stamp[40];
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    add_header(h, DLT_TOPIC, "%s", m->topic);
    add_header(h, DLT_PARTITION, "%d", (int)m->partition);
    add_header(h, DLT_OFFSET, "%lld", (long long)m->offset);
    if (m->timestamp >= 0) add_header(h, DLT_TIMESTAMP, "%lld", (long long)m->timestamp);
    add_header(h, DLT_GROUP, "%s", ep->group);
    add_header(h, DLT_ENDPOINT, "%s", ep->name);
    add_header(h, DLT_ATTEMPTS, "%d", attempts);
    add_header(h, DLT_ERROR, "%s", error ? error : "");
    add_header(h, DLT_TRACEBACK, "%s", traceback ? traceback : "");
    add_header(h, DLT_FAILED_AT, "%s.%03dZ", stamp, (int)(tv.tv_usec / 1000));
    return h;
}

rd_kafka_headers_t *policy_resend_headers(const message_t *m, int attempts) {
    rd_kafka_headers_t *h = copy_headers(m);
    add_header(h, ATTEMPTS_HEADER, "%d", attempts);
    return h;
}

int policy_header_attempts(const message_t *m) {
    const void *v;
    size_t len;
    char buf[24];
    if (!m->headers || rd_kafka_header_get_last(m->headers, ATTEMPTS_HEADER, &v, &len) || !v ||
        len >= sizeof(buf))
        return 0;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return atoi(buf);
}
