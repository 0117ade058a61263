/* status.h - what the status page shows (GET / and /status.json on the
 * --http endpoint), gathered on the loop thread: each endpoint's group,
 * partitions, state, handler slots and counters, lag per partition, each
 * publisher's counters, and the last failures; with a history sampled
 * every STATUS_SAMPLE_MS over the last STATUS_SAMPLES samples, from which
 * rates and the page's charts come.  metrics.c drives it and hands the
 * JSON to the HTTP thread; the fields are listed in README.md ("The
 * status page"). */
#ifndef LUKA_STATUS_H
#define LUKA_STATUS_H

#include <stddef.h>

#include "runtime/host.h"

/* A sample every 5 s, kept for 10 minutes. */
#define STATUS_SAMPLE_MS 5000
#define STATUS_SAMPLES 120
/* Rates are per second over this window (or what history there is). */
#define STATUS_RATE_WINDOW_MS 60000
/* Failures listed, newest first, over every endpoint. */
#define STATUS_FAILURES 20

typedef struct status status_t;

status_t *status_new(void);
void status_free(status_t *s);

/* Record a sample of h's counters and lag, at wall-clock now_ms. */
void status_sample(status_t *s, const host_t *h, int64_t now_ms);

/* The /status.json document (malloc'd, *len bytes), built now from h and
 * the samples; ready and why are /readyz's verdict. */
char *status_json(status_t *s, const host_t *h, int ready, const char *why, int64_t now_ms,
                  size_t *len);

#endif
