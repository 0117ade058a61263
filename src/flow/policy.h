/* policy.h - what an endpoint does with a message whose handler failed:
 * retry it after a backoff, send it to the error channel, or apply the
 * final failure strategy (resend, release, ignore, stop). */
#ifndef LUKA_POLICY_H
#define LUKA_POLICY_H

#include "flow/pipeline.h"

/* The handler failed on this delivery, instant retries included.
 * retryable is 0 for decode errors and luka.fatal(). */
void policy_failed(inflight_t *inf, const char *why, const char *traceback, int retryable);

/* The error channel's or the resend's publish was not delivered. */
void policy_publish_failed(inflight_t *inf, const char *why);

/* Header names a dead-letter message carries, besides the original's. */
#define DLT_TOPIC "luka-dlt-original-topic"
#define DLT_PARTITION "luka-dlt-original-partition"
#define DLT_OFFSET "luka-dlt-original-offset"
#define DLT_TIMESTAMP "luka-dlt-original-timestamp"
#define DLT_GROUP "luka-dlt-group"
#define DLT_ENDPOINT "luka-dlt-endpoint"
#define DLT_ATTEMPTS "luka-dlt-attempts"
#define DLT_ERROR "luka-dlt-error"
#define DLT_TRACEBACK "luka-dlt-traceback"
#define DLT_FAILED_AT "luka-dlt-failed-at"
/* The attempts a resent message already had. */
#define ATTEMPTS_HEADER "luka-attempts"

#endif
