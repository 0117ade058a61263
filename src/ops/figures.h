/* figures.h - what an endpoint reports, read in one place: its counters
 * and histograms, and the state of the moment (partitions, handlers in
 * flight, messages waiting) and the lag of its partitions.  /metrics and
 * the status page (status.c) render them. */
#ifndef LUKA_FIGURES_H
#define LUKA_FIGURES_H

#include "kafka/consumer.h"

typedef struct endpoint_figures {
    const char *name, *group;
    const endpoint_stats_t *stats; /* counters and histograms since it started */
    int joined;      /* has had an assignment from its group */
    int stopped;     /* a final failure ("stop") stopped it */
    int assigned;    /* partitions assigned now (not being revoked) */
    int in_use;      /* handler calls in flight, running or waiting on I/O */
    int io_waiting;  /* of those, waiting on I/O */
    int concurrency; /* the most in flight at once */
    int waiting;     /* messages taken but not started (the buffer) */
} endpoint_figures_t;

void figures_endpoint(const endpoint_t *ep, endpoint_figures_t *f);

/* Call cb with the consumer lag of each partition in ep's latest
 * librdkafka statistics: the high watermark minus the committed offset.
 * Partitions whose lag is unknown (-1) are skipped, and so is none when
 * there are no statistics yet. */
typedef void (*figures_lag_cb)(void *ud, const char *topic, int32_t partition, int64_t lag);
void figures_lag(const endpoint_t *ep, figures_lag_cb cb, void *ud);

#endif
