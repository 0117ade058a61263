/* pipeline.h - what happens to one consumed message: deduplicate, decode,
 * build meta, call the endpoint's handler (with instant retries), and hand
 * a failure to the policy.  A message is done when its handler returned and
 * every message it published was acknowledged; only then is its offset. */
#ifndef LUKA_PIPELINE_H
#define LUKA_PIPELINE_H

#include <librdkafka/rdkafka.h>

#include "message.h"
#include "offsets.h"
#include "script.h"

struct endpoint;

/* Where a message in flight stands; when its last publish is acknowledged
 * the stage says what that means. */
enum {
    STAGE_HANDLE,     /* the handler is running */
    STAGE_ACKS,       /* handled; waiting for its publishes */
    STAGE_DEADLETTER, /* in the error channel; waiting for that publish */
    STAGE_RESEND,     /* sent to the end of its topic; waiting for that */
    STAGE_IGNORE,     /* given up and to be committed */
    STAGE_DROP        /* to be delivered again: never committed */
};

typedef struct inflight {
    struct endpoint *ep;
    message_t msg;      /* owns the librdkafka message */
    offsets_t *offsets; /* a reference */
    uint64_t seq;
    int attempts; /* handler calls so far, over every delivery */
    int rounds;   /* deliveries after the first */
    int stage;
    int pending; /* publishes not yet acknowledged */
    int purged;  /* a publish was purged at shutdown */
    char *dedup_key;
    size_t dedup_len;
    char *error, *traceback; /* the last failure */
    char *error_channel_failed; /* why a publish of the error channel failed */
    struct inflight *prev, *next; /* the endpoint's list */
} inflight_t;

/* Run one message through the pipeline.  Takes ownership of m's message. */
void pipeline_handle(struct endpoint *ep, message_t *m);

/* A message published on behalf of inf was handed to a producer. */
void pipeline_publish_added(inflight_t *inf);

/* That publish was acknowledged (err 0) or failed for good. */
void pipeline_publish_done(inflight_t *inf, rd_kafka_resp_err_t err);

/* A publish could not even be queued. */
void pipeline_publish_failed(inflight_t *inf, const char *why);

/* Set the stage; when nothing is pending the message is finished now. */
void pipeline_settle(inflight_t *inf, int stage);

/* Call the function fn (a registry ref) with the message's payload and
 * meta, and with with_err its error too; or, with fn LUA_NOREF, read field
 * of the payload.  In protected mode, under the endpoint's time limit;
 * publishes made meanwhile belong to inf.  Returns 0 with nresults pushed,
 * or -1 with err ("decode error: ..." when the payload does not decode,
 * which is fatal). */
int pipeline_call(inflight_t *inf, int fn, const char *field, int with_err, int nresults,
                  script_err_t *err);

/* Drop every message still in flight on ep without marking it done, so it
 * is delivered again after a restart.  Call it only when no delivery
 * report can still name them (the producers are flushed or purged).
 * Returns how many were dropped. */
int pipeline_abandon(struct endpoint *ep);

/* Free the records kept for reuse (at exit, for leak checkers). */
void pipeline_shutdown(void);

#endif
