/* outcome.c - carry out what happens to a message once its handler
 * returned: count it handled when its publishes are acknowledged, or take
 * the policy's decision for a failure and carry it out through the
 * source (deliver again, stop) and the sinks (dead letter, resend). */
#include "flow/outcome.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "flow/call.h"
#include "flow/policy.h"

#define CTX(inf) INFLIGHT_CTX(inf)

/* The last publish of inf's stage is settled: count the outcome, commit or
 * not. */
static void settled(inflight_t *inf) {
    flow_t *f = inf->flow;
    char err[512];

    switch (inf->stage) {
    case STAGE_ACKS:
        f->stats.handled++;
        if (inf->dedup_key && dedup_mark(f->dedup, inf->dedup_key, inf->dedup_len, err, sizeof(err)))
            log_warn("dedup", "[%s] %s; the message may be handled again if it comes back",
                     f->conf->name, err);
        inflight_finish(inf, 1);
        break;
    case STAGE_DEADLETTER:
        f->stats.dead_lettered++;
        inflight_finish(inf, 1);
        break;
    case STAGE_RESEND:
        f->stats.resent++;
        inflight_finish(inf, 1);
        break;
    case STAGE_IGNORE:
        inflight_finish(inf, 1);
        break;
    default:
        inflight_finish(inf, 0);
        break;
    }
}

void outcome_settle(inflight_t *inf, int stage) {
    inf->stage = stage;
    if (inf->tags[inf->tag].pending == 0) settled(inf);
}

/* Deliver the message again after delay_ms.  Under concurrency it waits in
 * memory, in a record of its own that the caller schedules (returned), and
 * holds back its lane only.  Otherwise through its source: nothing after
 * it in its partition is handled first, and none of it commits. */
static inflight_t *redeliver(inflight_t *inf, int64_t delay_ms) {
    flow_t *f = inf->flow;
    /* A batch endpoint's retries wait in memory as batches (batch.c); a
     * message's own, after its batch, go through the source. */
    if (f->retry_in_memory && !f->batcher && !f->stopped) {
        inflight_t *again = inflight_respawn(inf);
        again->delay_ms = delay_ms;
        return again;
    }
    offsets_void_from(inf->offsets, inf->seq);
    if (!f->stopped) f->source->redeliver(f, &inf->msg, inf->attempts, inf->rounds + 1, delay_ms);
    outcome_settle(inf, STAGE_DROP);
    return NULL;
}

void outcome_paused(inflight_t *inf) {
    flow_t *f = inf->flow;
    f->stats.paused++;
    log_at(LOG_INFO, "flow", CTX(inf), "meta:pause: partition paused for %lld ms; the message comes "
           "again after it", (long long)inf->pause_ms);
    inflight_new_stage(inf);
    offsets_void_from(inf->offsets, inf->seq);
    /* The call that paused is not an attempt. */
    f->source->redeliver(f, &inf->msg, inf->attempts - 1, inf->rounds, inf->pause_ms);
    outcome_settle(inf, STAGE_DROP);
}

static void stop(inflight_t *inf) {
    flow_t *f = inf->flow;
    f->stats.stopped++;
    log_at(LOG_ERROR, "policy", CTX(inf),
           "final failure: stop; the endpoint stops without committing this message, which is "
           "delivered again after a restart");
    offsets_void_from(inf->offsets, inf->seq);
    outcome_settle(inf, STAGE_DROP);
    f->source->stop(f);
}

/* Publish a copy of the message (its key and value) with headers h to
 * sink s, as inf's current stage.  Returns 0, or -1 with err. */
static int send_copy(inflight_t *inf, sink_t *s, const char *topic, rd_kafka_headers_t *h,
                     char *err, size_t errlen) {
    const message_t *m = &inf->msg;
    publish_tag_t *t = inflight_tag(inf);
    char *value = NULL;
    if (m->payload) {
        value = malloc(m->len ? m->len : 1);
        memcpy(value, m->payload, m->len);
    }
    /* A transactional endpoint: in its transaction, to the same topic. */
    if (inf->flow->txn && s != inf->flow->txn) {
        if (!topic) topic = s->conf->topic;
        s = inf->flow->txn;
    }
    if (s->ops->send(s, topic, RD_KAFKA_PARTITION_UA, m->key, m->key_len, value, m->len, h, t, err,
                     errlen)) {
        rd_kafka_headers_destroy(h);
        return -1;
    }
    outcome_sent(t);
    return 0;
}

static int to_topic(inflight_t *inf) {
    flow_t *f = inf->flow;
    const policy_conf_t *pol = &f->conf->policy;
    const char *topic = NULL;
    char err[512];
    sink_t *s;

    if (pol->error_kind == ERRCH_PUBLISHER) {
        s = f->sinks->find(f->sinks->ctx, pol->error_target);
        if (!s) snprintf(err, sizeof(err), "no such publisher");
    } else {
        s = f->txn ? f->txn : f->sinks->internal(f->sinks->ctx, err, sizeof(err));
        topic = pol->error_target;
    }
    if (!s || send_copy(inf, s, topic,
                        policy_dead_letter_headers(&inf->msg, f->conf, inf->attempts, inf->error,
                                                   inf->traceback),
                        err, sizeof(err))) {
        log_at(LOG_ERROR, "policy", CTX(inf), "error channel '%s': %s", pol->error_target, err);
        return -1;
    }
    log_at(LOG_WARN, "policy", CTX(inf), "dead-lettered to %s after %d attempt(s)",
           topic ? topic : s->conf->topic, inf->attempts);
    return 0;
}

/* error_channel = function(msg, meta, err); its publishes are awaited.  A
 * payload that did not decode reaches it as the bytes. */
static int to_function(inflight_t *inf) {
    script_err_t serr;

    inf->stage = STAGE_DEADLETTER;
    if (call_user(inf, inf->flow->conf->policy.error_fn, NULL, 1, 0, &serr) != 0 ||
        (inf->error_channel_failed &&
         (snprintf(serr.msg, sizeof(serr.msg), "%s", inf->error_channel_failed), 1))) {
        log_at(LOG_ERROR, "policy", CTX(inf), "error channel function failed: %s", serr.msg);
        return -1;
    }
    log_at(LOG_WARN, "policy", CTX(inf), "handed to the error channel function after %d attempt(s)",
           inf->attempts);
    return 0;
}

/* Carry out decision d for inf, whose publishes from now on belong to a
 * new stage: what earlier stages published no longer decides anything. */
static inflight_t *carry_out(inflight_t *inf, decision_t d) {
    flow_t *f = inf->flow;
    const policy_conf_t *pol = &f->conf->policy;
    char err[512];

    inflight_new_stage(inf);
    switch (d.action) {
    case POLICY_RETRY:
        f->stats.retried++;
        log_at(LOG_WARN, "policy", CTX(inf), "retrying in %lld ms (delayed retry %d of %d)",
               (long long)d.delay_ms, inf->rounds + 1, pol->delayed);
        return redeliver(inf, d.delay_ms);
    case POLICY_ERROR_CHANNEL:
        if ((pol->error_kind == ERRCH_FUNCTION ? to_function(inf) : to_topic(inf)) == 0) {
            outcome_settle(inf, STAGE_DEADLETTER);
            return NULL;
        }
        return carry_out(inf, policy_final(pol, inf->rounds));
    case POLICY_IGNORE:
        f->stats.ignored++;
        log_at(LOG_WARN, "policy", CTX(inf), "final failure: ignore; committed without handling");
        outcome_settle(inf, STAGE_IGNORE);
        return NULL;
    case POLICY_RELEASE:
        f->stats.released++;
        log_at(LOG_WARN, "policy", CTX(inf), "final failure: release; delivered again in %lld ms",
               (long long)d.delay_ms);
        return redeliver(inf, d.delay_ms);
    case POLICY_RESEND: {
        sink_t *s = f->txn ? f->txn : f->sinks->internal(f->sinks->ctx, err, sizeof(err));
        if (!s || send_copy(inf, s, inf->msg.topic,
                            policy_resend_headers(&inf->msg, inf->attempts), err, sizeof(err))) {
            log_at(LOG_ERROR, "policy", CTX(inf), "final failure: resend failed: %s", err);
            stop(inf);
            return NULL;
        }
        log_at(LOG_WARN, "policy", CTX(inf),
               "final failure: resend; published again to the end of %s", inf->msg.topic);
        outcome_settle(inf, STAGE_RESEND);
        return NULL;
    }
    case POLICY_STOP:
        stop(inf);
        return NULL;
    }
    return NULL;
}

void outcome_remember(flow_t *f, const inflight_t *inf, const char *why) {
    static uint64_t seen; /* only the loop thread fails messages */
    flow_failure_t *r = &f->failures[f->failures_next];
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    r->seq = ++seen;
    r->time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    snprintf(r->topic, sizeof(r->topic), "%s", inf->msg.topic ? inf->msg.topic : "");
    r->partition = inf->msg.partition;
    r->offset = inf->msg.offset;
    r->attempt = inf->attempts;
    snprintf(r->error, sizeof(r->error), "%s", why);
    f->failures_next = (f->failures_next + 1) % FLOW_FAILURES;
    if (f->nfailures < FLOW_FAILURES) f->nfailures++;
}

inflight_t *outcome_failed(inflight_t *inf, const char *why, const char *traceback,
                           int retryable) {
    flow_t *f = inf->flow;

    free(inf->error);
    free(inf->traceback);
    inf->error = strdup(why);
    inf->traceback = strdup(traceback ? traceback : "");
    f->stats.failed++;
    outcome_remember(f, inf, why);
    if (log_enabled(LOG_ERROR)) {
        /* The traceback is a field of its own: the lines after the
         * message in text, "traceback" in JSON. */
        char msg[4096];
        snprintf(msg, sizeof(msg), "handler failed (attempt %d): %s", inf->attempts, why);
        log_put(&(log_record_t){LOG_ERROR, "policy", CTX(inf), msg, NULL, 0,
                                traceback && *traceback ? traceback : NULL});
    }
    if (f->stopped) {
        /* Shutting down, or stopped: leave it uncommitted. */
        inflight_new_stage(inf);
        offsets_void_from(inf->offsets, inf->seq);
        outcome_settle(inf, STAGE_DROP);
        return NULL;
    }
    return carry_out(inf, policy_decide(&f->conf->policy, inf->rounds, retryable));
}

void outcome_sent(publish_tag_t *t) { t->pending++; }

void outcome_send_failed(inflight_t *inf, const char *why) {
    char **slot = inf->stage == STAGE_DEADLETTER ? &inf->error_channel_failed : &inf->error;
    if (!*slot) *slot = strdup(why);
}

inflight_t *outcome_reported(publish_tag_t *t, rd_kafka_resp_err_t err) {
    inflight_t *inf = inflight_reported(t);
    char why[300];

    if (!inf) return NULL; /* a stage already decided, or a message already ended */
    if ((err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) &&
        inf->flow->stopped) {
        /* Shutdown gave up waiting: uncommitted, delivered again later. */
        inf->stage = STAGE_DROP;
    } else if (err) {
        snprintf(why, sizeof(why), "a message it published was not delivered: %s",
                 rd_kafka_err2str(err));
        switch (inf->stage) {
        case STAGE_HANDLE:
            /* The handler's call is not over: it fails when it returns. */
            if (!inf->error) inf->error = strdup(why);
            return NULL;
        case STAGE_ACKS:
            /* The policy takes it from here, in a stage of its own. */
            inf->stage = STAGE_HANDLE;
            return outcome_failed(inf, why, "", 1);
        case STAGE_DEADLETTER:
        case STAGE_RESEND:
            log_at(LOG_ERROR, "policy", CTX(inf), "%s: %s",
                   inf->stage == STAGE_RESEND ? "resend failed" : "error channel failed", why);
            if (inf->stage == STAGE_RESEND) {
                inflight_new_stage(inf);
                stop(inf);
                return NULL;
            }
            return carry_out(inf, policy_final(&inf->flow->conf->policy, inf->rounds));
        }
    }
    if (t->pending == 0 && inf->stage != STAGE_HANDLE) settled(inf);
    return NULL;
}
