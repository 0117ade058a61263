/* pipeline.h - what happens to one consumed message: deduplicate, decode,
 * build meta, call the endpoint's handler (with instant retries), and hand
 * a failure to the policy.  A message is done when its handler returned and
 * every message it published was acknowledged; only then is its offset. */
#ifndef LUKA_PIPELINE_H
#define LUKA_PIPELINE_H

#include <librdkafka/rdkafka.h>

#include "base/message.h"
#include "base/offsets.h"
#include "lua/script.h"

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

/* A message's publishes are counted per stage, and each publish carries
 * its stage's tag as the producer's opaque, so that a report is settled in
 * the stage that made it: a handler output failing after the message was
 * dead-lettered cannot be taken for a failure of the error channel.  A
 * message has at most three stages that publish: the handler, the error
 * channel, the final failure's resend. */
#define PIPELINE_STAGES 3

typedef struct publish_tag {
    struct inflight *inf;
    int pending; /* publishes of this stage not yet reported */
} publish_tag_t;

typedef struct inflight {
    struct endpoint *ep; /* NULL once its outcome is decided (see finish) */
    message_t msg;      /* owns the librdkafka message */
    offsets_t *offsets; /* a reference */
    uint64_t seq;
    int attempts; /* handler calls so far, over every delivery */
    int rounds;   /* deliveries after the first */
    int stage;
    publish_tag_t tags[PIPELINE_STAGES];
    int tag; /* the index of the current stage's tag */
    char *dedup_key;
    size_t dedup_len;
    char *error, *traceback; /* the last failure */
    char *error_channel_failed; /* why a publish of the error channel failed */
    struct inflight *prev, *next; /* the endpoint's list, or the lingering list */
} inflight_t;

/* Run one message through the pipeline.  Takes ownership of m's message. */
void pipeline_handle(struct endpoint *ep, message_t *m);

/* The tag a publish made now on behalf of inf carries to its producer (the
 * message's opaque); its delivery report brings it back. */
publish_tag_t *pipeline_publish_tag(inflight_t *inf);

/* The producer took the publish tagged t. */
void pipeline_publish_added(publish_tag_t *t);

/* The publish tagged t was acknowledged (err 0) or failed for good.  A
 * report of a stage already decided changes nothing. */
void pipeline_publish_done(publish_tag_t *t, rd_kafka_resp_err_t err);

/* What inf publishes from now on belongs to a new stage: the reports of
 * earlier publishes no longer decide anything.  The policy opens one
 * before each decision. */
void pipeline_new_stage(inflight_t *inf);

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
 * is delivered again after a restart.  A record whose publishes are not
 * reported yet lives on, without its message, until they are.  Returns
 * how many were dropped. */
int pipeline_abandon(struct endpoint *ep);

/* Free the records kept for reuse, and those whose reports never came
 * because their producers are gone (at exit, for leak checkers). */
void pipeline_shutdown(void);

#endif
