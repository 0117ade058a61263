/* policy.c - a failed message's way out, in the order the app declared:
 * a delayed retry (pause the partition, seek back after the backoff), the
 * error channel (a topic, a publisher or a function), then the final
 * failure strategy.  Each decision is logged once and counted. */
#include "flow/policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <lauxlib.h>

#include "kafka/consumer.h"
#include "base/log.h"
#include "lua/meta.h"
#include "kafka/producer.h"
#include "base/rng.h"
#include "lua/script.h"

#define CTX(inf)                                                                           \
    (&(log_ctx_t){(inf)->ep->conf->name, (inf)->msg.topic, (inf)->msg.partition,           \
                  (inf)->msg.offset})

static void final_failure(inflight_t *inf);

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

/* Deliver the message again after delay_ms; nothing after it in its
 * partition is handled first. */
static void redeliver(inflight_t *inf, int64_t delay_ms) {
    endpoint_t *ep = inf->ep;
    partition_t *pt = consumer_partition(ep, inf->msg.topic, inf->msg.partition);

    offsets_void_from(inf->offsets, inf->seq);
    if (pt && !ep->stopped)
        consumer_redeliver(pt, inf->msg.offset, inf->attempts, inf->rounds + 1, delay_ms);
    pipeline_settle(inf, STAGE_DROP);
}

static void stop(inflight_t *inf) {
    endpoint_t *ep = inf->ep;
    ep->stats.stopped++;
    log_at(LOG_ERROR, "policy", CTX(inf),
           "final failure: stop; the endpoint stops without committing this message, and luka "
           "exits non-zero so that it is restarted and the message delivered again");
    consumer_stop(ep);
    host_stop(ep->host, 3);
    offsets_void_from(inf->offsets, inf->seq);
    pipeline_settle(inf, STAGE_DROP);
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

/* Publish the original's key and value with headers h, for inf. */
static int send_copy(inflight_t *inf, publisher_t *p, const char *topic, rd_kafka_headers_t *h,
                     char *err, size_t errlen) {
    const message_t *m = &inf->msg;
    char *value = NULL;
    if (m->payload) {
        value = malloc(m->len ? m->len : 1);
        memcpy(value, m->payload, m->len);
    }
    if (producer_send(p, topic, RD_KAFKA_PARTITION_UA, m->key, m->key_len, value, m->len, h, inf,
                      err, errlen)) {
        rd_kafka_headers_destroy(h);
        return -1;
    }
    return 0;
}

static int to_topic(inflight_t *inf) {
    endpoint_t *ep = inf->ep;
    const policy_conf_t *pol = &ep->conf->policy;
    const message_t *m = &inf->msg;
    rd_kafka_headers_t *h = copy_headers(m);
    publisher_t *p;
    const char *topic = NULL;
    char stamp[40], err[512];
    struct timeval tv;
    struct tm tm;

    if (pol->error_kind == ERRCH_PUBLISHER) {
        p = host_publisher(ep->host, pol->error_target);
    } else {
        p = host_internal_publisher(ep->host, err, sizeof(err));
        topic = pol->error_target;
    }
    if (!p) {
        rd_kafka_headers_destroy(h);
        log_at(LOG_ERROR, "policy", CTX(inf), "error channel '%s': %s", pol->error_target,
               "no producer");
        return -1;
    }
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    add_header(h, DLT_TOPIC, "%s", m->topic);
    add_header(h, DLT_PARTITION, "%d", (int)m->partition);
    add_header(h, DLT_OFFSET, "%lld", (long long)m->offset);
    if (m->timestamp >= 0) add_header(h, DLT_TIMESTAMP, "%lld", (long long)m->timestamp);
    add_header(h, DLT_GROUP, "%s", ep->conf->group);
    add_header(h, DLT_ENDPOINT, "%s", ep->conf->name);
    add_header(h, DLT_ATTEMPTS, "%d", inf->attempts);
    add_header(h, DLT_ERROR, "%s", inf->error ? inf->error : "");
    add_header(h, DLT_TRACEBACK, "%s", inf->traceback ? inf->traceback : "");
    add_header(h, DLT_FAILED_AT, "%s.%03dZ", stamp, (int)(tv.tv_usec / 1000));
    if (send_copy(inf, p, topic, h, err, sizeof(err))) {
        log_at(LOG_ERROR, "policy", CTX(inf), "error channel '%s': %s", pol->error_target, err);
        return -1;
    }
    log_at(LOG_WARN, "policy", CTX(inf), "dead-lettered to %s after %d attempt(s)",
           topic ? topic : p->conf->topic, inf->attempts);
    return 0;
}

/* error_channel = function(msg, meta, err); its publishes are awaited.  A
 * payload that did not decode reaches it as the bytes. */
static int to_function(inflight_t *inf) {
    endpoint_t *ep = inf->ep;
    script_err_t serr;

    inf->stage = STAGE_DEADLETTER;
    if (pipeline_call(inf, ep->conf->policy.error_fn, NULL, 1, 0, &serr) != 0 ||
        (inf->error_channel_failed && (snprintf(serr.msg, sizeof(serr.msg), "%s",
                                                inf->error_channel_failed), 1))) {
        log_at(LOG_ERROR, "policy", CTX(inf), "error channel function failed: %s", serr.msg);
        return -1;
    }
    log_at(LOG_WARN, "policy", CTX(inf), "handed to the error channel function after %d attempt(s)",
           inf->attempts);
    return 0;
}

void policy_failed(inflight_t *inf, const char *why, const char *traceback, int retryable) {
    endpoint_t *ep = inf->ep;
    const policy_conf_t *pol = &ep->conf->policy;

    pipeline_new_stage(inf);
    free(inf->error);
    free(inf->traceback);
    inf->error = strdup(why);
    inf->traceback = strdup(traceback ? traceback : "");
    ep->stats.failed++;
    log_at(LOG_ERROR, "policy", CTX(inf), "handler failed (attempt %d): %s%s%s", inf->attempts, why,
           traceback && *traceback ? "\n" : "", traceback ? traceback : "");
    if (ep->stopped) {
        /* Shutting down: leave it uncommitted. */
        offsets_void_from(inf->offsets, inf->seq);
        pipeline_settle(inf, STAGE_DROP);
        return;
    }
    if (retryable && inf->rounds < pol->delayed) {
        int64_t delay = backoff(pol, inf->rounds);
        ep->stats.retried++;
        log_at(LOG_WARN, "policy", CTX(inf), "retrying in %lld ms (delayed retry %d of %d)",
               (long long)delay, inf->rounds + 1, pol->delayed);
        redeliver(inf, delay);
        return;
    }
    if (pol->error_kind == ERRCH_FUNCTION ? to_function(inf) == 0
        : pol->error_kind != ERRCH_NONE   ? to_topic(inf) == 0
                                          : 0) {
        pipeline_settle(inf, STAGE_DEADLETTER);
        return;
    }
    final_failure(inf);
}

void policy_publish_failed(inflight_t *inf, const char *why) {
    log_at(LOG_ERROR, "policy", CTX(inf), "%s: %s",
           inf->stage == STAGE_RESEND ? "resend failed" : "error channel failed", why);
    if (inf->stage == STAGE_RESEND) stop(inf);
    else final_failure(inf);
}

static void final_failure(inflight_t *inf) {
    endpoint_t *ep = inf->ep;
    const policy_conf_t *pol = &ep->conf->policy;
    char err[512];

    /* What the error channel published no longer decides anything. */
    pipeline_new_stage(inf);
    switch (pol->final_failure) {
    case FINAL_IGNORE:
        ep->stats.ignored++;
        log_at(LOG_WARN, "policy", CTX(inf), "final failure: ignore; committed without handling");
        pipeline_settle(inf, STAGE_IGNORE);
        return;
    case FINAL_RELEASE: {
        int64_t delay = backoff(pol, inf->rounds);
        ep->stats.released++;
        log_at(LOG_WARN, "policy", CTX(inf), "final failure: release; delivered again in %lld ms",
               (long long)delay);
        redeliver(inf, delay);
        return;
    }
    case FINAL_RESEND: {
        publisher_t *p = host_internal_publisher(ep->host, err, sizeof(err));
        rd_kafka_headers_t *h = copy_headers(&inf->msg);
        add_header(h, ATTEMPTS_HEADER, "%d", inf->attempts);
        if (!p || send_copy(inf, p, inf->msg.topic, h, err, sizeof(err))) {
            if (p == NULL) rd_kafka_headers_destroy(h);
            log_at(LOG_ERROR, "policy", CTX(inf), "final failure: resend failed: %s", err);
            stop(inf);
            return;
        }
        log_at(LOG_WARN, "policy", CTX(inf),
               "final failure: resend; published again to the end of %s", inf->msg.topic);
        pipeline_settle(inf, STAGE_RESEND);
        return;
    }
    default:
        stop(inf);
    }
}
