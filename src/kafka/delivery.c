/* delivery.c - a publisher's delivery reports, on the loop: each is handed
 * to the flow (pipeline_reported) with the tag its publish carried, or,
 * for a publish made outside any message (a timer's, the script's while
 * loading), to the publisher's on_delivery hook.  A report served while a
 * send waits for room in a full queue, inside a handler or a policy, is
 * deferred to the loop instead: its failure may call an error-channel
 * function, and nothing re-enters user code. */
#include "kafka/producer.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/log.h"
#include "flow/pipeline.h"

static deferred_report_t *defer(publisher_t *p, publish_tag_t *tag, rd_kafka_resp_err_t err) {
    deferred_report_t *d;
    if (p->ndeferred == p->capdeferred) {
        p->capdeferred = p->capdeferred ? p->capdeferred * 2 : 16;
        p->deferred = realloc(p->deferred, p->capdeferred * sizeof(*p->deferred));
    }
    d = &p->deferred[p->ndeferred++];
    memset(d, 0, sizeof(*d));
    d->tag = tag;
    d->err = err;
    kafka_wake_kick(&p->wake);
    return d;
}

/* A copy of what on_delivery reads of rkm (topic, partition, offset, key,
 * headers), in one block m owns. */
static void copy_report(message_t *m, const rd_kafka_message_t *rkm) {
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    size_t tlen = strlen(topic) + 1;
    rd_kafka_headers_t *h = NULL;
    char *block = malloc(tlen + rkm->key_len + 1);

    memcpy(block, topic, tlen);
    if (rkm->key) memcpy(block + tlen, rkm->key, rkm->key_len);
    memset(m, 0, sizeof(*m));
    m->topic = block;
    m->partition = rkm->partition;
    m->offset = rkm->offset;
    m->key = rkm->key ? block + tlen : NULL;
    m->key_len = rkm->key_len;
    m->timestamp = -1;
    if (rd_kafka_message_headers(rkm, &h) == 0 && h) m->headers = rd_kafka_headers_copy(h);
    m->own = block;
}

/* A report of a publish made outside any message: the publisher's
 * on_delivery hears of it, now or from the loop. */
static void untagged(publisher_t *p, const rd_kafka_message_t *rkm) {
    const kafka_env_t *env = p->client.env;
    message_t m;

    if (!env->delivered || p->sink.conf->on_delivery == LUA_NOREF) return;
    if (p->sending) {
        copy_report(&defer(p, NULL, rkm->err)->m, rkm);
        return;
    }
    message_from_kafka(&m, (rd_kafka_message_t *)rkm);
    m.rkm = NULL; /* librdkafka's still */
    env->delivered(env->ctx, p, &m, rkm->err);
}

void delivery_report_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    publisher_t *p = opaque;
    /* Measured by librdkafka from the produce call to now, on the loop. */
    int64_t us = rd_kafka_message_latency(rkm);
    (void)rk;
    if (us >= 0) hist_observe(&p->latency, (double)us / 1e6);
    if (rkm->err) {
        p->failed++;
        log_error("producer", "[%s] delivery to %s failed: %s", p->sink.conf->name,
                  rd_kafka_topic_name(rkm->rkt), rd_kafka_err2str(rkm->err));
    } else {
        p->acked++;
    }
    if (!rkm->_private) {
        untagged(p, rkm);
        return;
    }
    if (p->sending) {
        defer(p, rkm->_private, rkm->err);
        return;
    }
    pipeline_reported(rkm->_private, rkm->err);
}

/* Oldest first; those deferred meanwhile (a policy publishing into a full
 * queue) wait for the next round. */
void delivery_run_deferred(publisher_t *p) {
    const kafka_env_t *env = p->client.env;
    while (p->ndeferred) {
        deferred_report_t *list = p->deferred;
        int n = p->ndeferred;
        p->deferred = NULL;
        p->ndeferred = p->capdeferred = 0;
        for (int i = 0; i < n; i++) {
            if (list[i].tag) {
                pipeline_reported(list[i].tag, list[i].err);
                continue;
            }
            if (env->delivered) env->delivered(env->ctx, p, &list[i].m, list[i].err);
            message_release(&list[i].m);
        }
        free(list);
    }
}

void delivery_on_wake(uv_poll_t *w, int status, int events) {
    publisher_t *p = w->data;
    (void)status, (void)events;
    kafka_wake_drain(&p->wake);
    delivery_run_deferred(p);
    while (rd_kafka_poll(p->rk, 0) > 0) continue;
}
