/* delivery.c - a publisher's delivery reports, on the loop: each is handed
 * to the flow (pipeline_reported) with the tag its publish carried.  A
 * report served while a send waits for room in a full queue, inside a
 * handler or a policy, is deferred to the loop instead: its failure may
 * call an error-channel function, and nothing re-enters user code. */
#include "kafka/producer.h"

#include <stdlib.h>

#include "base/log.h"
#include "flow/pipeline.h"

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
    if (!rkm->_private) return;
    if (p->sending) {
        if (p->ndeferred == p->capdeferred) {
            p->capdeferred = p->capdeferred ? p->capdeferred * 2 : 16;
            p->deferred = realloc(p->deferred, p->capdeferred * sizeof(*p->deferred));
        }
        p->deferred[p->ndeferred].tag = rkm->_private;
        p->deferred[p->ndeferred++].err = rkm->err;
        kafka_wake_kick(&p->wake);
        return;
    }
    pipeline_reported(rkm->_private, rkm->err);
}

/* Oldest first; those deferred meanwhile (a policy publishing into a full
 * queue) wait for the next round. */
void delivery_run_deferred(publisher_t *p) {
    while (p->ndeferred) {
        deferred_report_t *list = p->deferred;
        int n = p->ndeferred;
        p->deferred = NULL;
        p->ndeferred = p->capdeferred = 0;
        for (int i = 0; i < n; i++) pipeline_reported(list[i].tag, list[i].err);
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
