/* producer.h - a publisher: one librdkafka producer for a declared
 * publisher or channel, seen by the flow and by luka.publish as a sink.
 * Its delivery reports come back through delivery.c. */
#ifndef LUKA_PRODUCER_H
#define LUKA_PRODUCER_H

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "app/app.h"
#include "base/hist.h"
#include "flow/flow.h"
#include "flow/inflight.h"
#include "kafka/client.h"

/* A delivery report that waits for the loop (see delivery.c): for the
 * flow (tag), or, for a publish made outside any message, for the
 * publisher's on_delivery (tag NULL, a copy of the message in m). */
typedef struct deferred_report {
    publish_tag_t *tag;
    rd_kafka_resp_err_t err;
    message_t m;
} deferred_report_t;

typedef struct publisher {
    kafka_client_t client; /* first: librdkafka's opaque for this producer */
    sink_t sink;           /* its conf is the publisher's; a reload swaps it */
    rd_kafka_t *rk;
    kafka_wake_t wake;
    uint64_t published, acked, failed;
    hist_t latency; /* seconds from send to delivery report, each report */
    char *kafka_stats; /* librdkafka's latest statistics JSON, or NULL */
    int sending;       /* send is serving reports to make room in the queue */
    deferred_report_t *deferred;
    int ndeferred, capdeferred;
} publisher_t;

publisher_t *producer_open(const kafka_env_t *env, const publisher_conf_t *conf, char *errbuf,
                           size_t errlen);

/* Serve delivery reports until none are outstanding or timeout_ms passes.
 * Returns how many messages are still outstanding. */
int producer_flush(publisher_t *p, int timeout_ms);

/* Purge what is still queued (its reports fail the messages that
 * published it), and free the publisher once the loop let go of it. */
void producer_close(publisher_t *p);

/* delivery.c: librdkafka's delivery report callback, and the loop's side
 * of the reports it defers while a send waits for room. */
void delivery_report_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque);
void delivery_run_deferred(publisher_t *p);
void delivery_on_wake(uv_poll_t *w, int status, int events);

#endif
