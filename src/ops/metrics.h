/* metrics.h - what `luka run --http` reports, gathered on the loop thread:
 * a timer renders the Prometheus text of /metrics (once a second only when
 * it is over a megabyte), decides readiness, builds the status page's
 * /status.json once a second (status.h) and beats the heartbeat, and hands
 * them to the HTTP thread (http.h). */
#ifndef LUKA_METRICS_H
#define LUKA_METRICS_H

#include <stddef.h>

#include "runtime/host.h"

/* How often the loop publishes to the HTTP thread. */
#define METRICS_TICK_MS 250
/* statistics.interval.ms given to every client while serving HTTP, unless
 * the app sets its own: readiness and lag are read from those statistics. */
#define METRICS_STATS_INTERVAL "1000"

/* Added to a run with --http: serves HTTP on the run's --http address
 * (see http_start) and publishes from the loop; once shutdown begins,
 * /readyz answers 503 and /healthz keeps answering 200 while the drain
 * blocks the loop. */
extern const host_ops_t metrics_host_ops;

#endif
