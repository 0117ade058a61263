/* figures.h - what an endpoint reports, read in one place: its counters
 * and histograms, and the state of the moment (partitions, handlers in
 * flight, messages waiting).  /metrics renders them; a status page can
 * read the same, with appmetrics_count/appmetrics_at for the app's own
 * metrics and process.h for the process. */
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

#endif
