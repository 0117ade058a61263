/* consumer.h - an endpoint: one librdkafka group consumer driven by the
 * libuv loop.  Its queue wakes the loop through an IO-event pipe; messages
 * are drained in bounded batches into the pipeline, and done offsets are
 * stored for librdkafka's periodic commit. */
#ifndef LUKA_CONSUMER_H
#define LUKA_CONSUMER_H

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "app.h"
#include "host.h"
#include "offsets.h"
#include "pipeline.h"

typedef struct endpoint {
    host_t *host;
    const endpoint_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int fds[2]; /* the queue's IO-event pipe */
    uv_poll_t poll;
    uv_idle_t idle; /* continues a drain cut short by the batch budget */
    offsets_t **parts; /* assigned partitions */
    int nparts, capparts;
    int last; /* index of the last partition looked up */
    inflight_t *inflight;
    int ninflight;
    int stopped; /* takes no more messages */
    int dirty;   /* some partition's commit offset moved */
    uint64_t consumed, handled, failed;
} endpoint_t;

endpoint_t *consumer_open(host_t *h, const endpoint_conf_t *conf, char *errbuf,
                          size_t errlen);

/* The tracker of an assigned partition, or NULL if it is not assigned. */
offsets_t *consumer_offsets(endpoint_t *ep, const char *topic, int32_t partition);

/* Hand done offsets to librdkafka, which commits them periodically. */
void consumer_store(endpoint_t *ep);

/* Take no more messages. */
void consumer_stop(endpoint_t *ep);

/* Resume draining after back-pressure eased. */
void consumer_kick(endpoint_t *ep);

/* Commit, leave the group, and free the endpoint (its handles are released
 * by the loop). */
void consumer_close(endpoint_t *ep);

#endif
