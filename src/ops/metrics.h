/* metrics.h - what `luka run --http` reports, gathered on the loop thread:
 * a timer renders the Prometheus text of /metrics, decides readiness and
 * beats the heartbeat, and hands all three to the HTTP thread (http.h). */
#ifndef LUKA_METRICS_H
#define LUKA_METRICS_H

#include <stddef.h>

#include "runtime/host.h"

/* How often the loop publishes to the HTTP thread. */
#define METRICS_TICK_MS 250
/* statistics.interval.ms given to every client while serving HTTP, unless
 * the app sets its own: readiness and lag are read from those statistics. */
#define METRICS_STATS_INTERVAL "1000"

/* Serve HTTP on addr (see http_start) and publish from h's loop until
 * metrics_stop.  Sets h->metrics.  Returns 0, or -1 with errbuf set. */
int metrics_start(host_t *h, const char *addr, char *errbuf, size_t errlen);

/* Shutdown has begun: /readyz answers 503 from now on, and /healthz keeps
 * answering 200 while the drain blocks the loop.  No-op without HTTP. */
void metrics_drain(host_t *h);

/* Stop publishing and stop the HTTP server.  No-op without HTTP. */
void metrics_stop(host_t *h);

#endif
