/* outcome.h - how a message in flight ends, once its handler returned: it
 * waits for its publishes, then is committed; or it failed, and the
 * policy's decision is carried out here (deliver again through the source,
 * dead-letter through a sink, call the error function, stop).  Delivery
 * reports come back here, to the stage that published.  Each outcome is
 * logged and counted once. */
#ifndef LUKA_OUTCOME_H
#define LUKA_OUTCOME_H

#include <librdkafka/rdkafka.h>

#include "flow/inflight.h"

/* Set the stage; when its publishes are all reported the message is
 * finished now. */
void outcome_settle(inflight_t *inf, int stage);

/* The handler failed on this delivery, instant retries included.
 * retryable is 0 for decode errors and luka.fatal().  Returns the record
 * of a retry to wait in memory (flow.retry_in_memory) for its delay_ms,
 * which the caller schedules, or NULL. */
inflight_t *outcome_failed(inflight_t *inf, const char *why, const char *traceback,
                           int retryable);

/* Keep a failure of inf in f's ring of its last ones (the status page's). */
void outcome_remember(flow_t *f, const inflight_t *inf, const char *why);

/* The handler returned after meta:pause(inf->pause_ms): the source pauses
 * the partition and delivers the message again after it, with no attempt
 * counted; nothing at or after it in its partition is committed first.
 * What the handler published stays published. */
void outcome_paused(inflight_t *inf);

/* A publish tagged t was accepted by its sink. */
void outcome_sent(publish_tag_t *t);

/* A publish on behalf of inf could not even be queued. */
void outcome_send_failed(inflight_t *inf, const char *why);

/* The publish tagged t was acknowledged (err 0) or failed for good.  A
 * report of a stage already decided changes nothing.  Returns a retry to
 * wait in memory, as outcome_failed.  Reached through pipeline_reported,
 * from the loop, never inside user code. */
inflight_t *outcome_reported(publish_tag_t *t, rd_kafka_resp_err_t err);

#endif
