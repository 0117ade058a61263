/* policy.h - what an endpoint does with a message whose handler failed,
 * decided and returned, never carried out here: retry it after a backoff,
 * hand it to the error channel, or apply the final failure strategy
 * (resend, release, ignore, stop).  Also what a dead letter and a resend
 * carry.  Pure: no client, no Lua, testable alone. */
#ifndef LUKA_POLICY_H
#define LUKA_POLICY_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "app/app.h"
#include "base/message.h"

typedef enum {
    POLICY_RETRY,         /* deliver it again after delay_ms: a delayed retry */
    POLICY_ERROR_CHANNEL, /* hand it to the error channel */
    POLICY_IGNORE,        /* commit it unhandled */
    POLICY_RELEASE,       /* deliver it again after delay_ms, however often */
    POLICY_RESEND,        /* publish it to the end of its topic, then commit */
    POLICY_STOP           /* stop the endpoint; never commit it */
} policy_action_t;

typedef struct decision {
    policy_action_t action;
    int64_t delay_ms; /* for RETRY and RELEASE */
} decision_t;

/* The handler failed on delivery rounds+1, instant retries included.
 * retryable is 0 for decode errors and luka.fatal(). */
decision_t policy_decide(const policy_conf_t *pol, int rounds, int retryable);

/* The error channel failed, or there is none: the final failure. */
decision_t policy_final(const policy_conf_t *pol, int rounds);

/* The headers of m's dead letter: the original's (without luka's attempt
 * count) and the DLT_* ones. */
rd_kafka_headers_t *policy_dead_letter_headers(const message_t *m, const endpoint_conf_t *ep,
                                               int attempts, const char *error,
                                               const char *traceback);

/* The headers of m sent again to the end of its topic, with its attempts. */
rd_kafka_headers_t *policy_resend_headers(const message_t *m, int attempts);

/* The attempts a resent message already had (its ATTEMPTS_HEADER), or 0. */
int policy_header_attempts(const message_t *m);

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
