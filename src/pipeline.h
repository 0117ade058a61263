/* pipeline.h - what happens to one consumed message: decode the payload,
 * build meta, call the endpoint's handler, and decide the outcome.  A
 * message is done when its handler has returned and every message it
 * published has been acknowledged; only then is its offset done. */
#ifndef LUKA_PIPELINE_H
#define LUKA_PIPELINE_H

#include <librdkafka/rdkafka.h>

#include "offsets.h"

struct endpoint;

typedef struct inflight {
    struct endpoint *ep;
    rd_kafka_message_t *rkm; /* owned until the message is done */
    offsets_t *offsets;      /* a reference */
    uint64_t seq;
    int pending; /* publishes not yet acknowledged */
    int handled; /* the handler returned */
    int failed;
    struct inflight *prev, *next; /* the endpoint's list of messages in flight */
} inflight_t;

/* Run one message through the pipeline.  Takes ownership of rkm. */
void pipeline_handle(struct endpoint *ep, rd_kafka_message_t *rkm);

/* A message published by the handler of inf was handed to a producer. */
void pipeline_publish_added(inflight_t *inf);

/* That publish was acknowledged (err 0) or failed for good. */
void pipeline_publish_done(inflight_t *inf, rd_kafka_resp_err_t err);

/* A publish could not even be queued: the message fails. */
void pipeline_publish_failed(inflight_t *inf, const char *why);

/* Drop every message still in flight on ep without marking it done, so it
 * is delivered again after a restart.  Call it only when no delivery
 * report can still name them (the producers are flushed or purged).
 * Returns how many were dropped. */
int pipeline_abandon(struct endpoint *ep);

#endif
