/* inflight.h - the record of one message in flight, owned by the flow from
 * hand-off to commit.  Every way a message ends (done, failed, dropped,
 * abandoned) goes through inflight_finish(), the one place that settles
 * its offset.  Its publishes are counted per stage: each carries its
 * stage's tag to the sink, so that a delivery report is settled in the
 * stage that made it (a handler output failing after the message was
 * dead-lettered is not taken for a failure of the error channel). */
#ifndef LUKA_INFLIGHT_H
#define LUKA_INFLIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "base/message.h"
#include "base/offsets.h"
#include "base/trace.h"
#include "flow/flow.h"

struct lane;
struct script_err;
struct task;
struct uv_timer_s;

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

/* A message has at most three stages that publish: the handler, the error
 * channel, the final failure's resend. */
#define INFLIGHT_STAGES 3

typedef struct publish_tag {
    struct inflight *inf;
    int pending; /* publishes of this stage not yet reported */
    /* Set for a publish a handler waits for (luka.publish's wait): its
     * report goes here instead, and inf is unused. */
    void (*reported)(struct publish_tag *t, rd_kafka_resp_err_t err);
} publish_tag_t;

typedef struct inflight {
    flow_t *flow;       /* NULL once its outcome is decided (see inflight_finish) */
    message_t msg;      /* owns the librdkafka message */
    offsets_t *offsets; /* a reference */
    uint64_t seq;
    int attempts; /* handler calls so far, over every delivery */
    int rounds;   /* deliveries after the first */
    int stage;
    publish_tag_t tags[INFLIGHT_STAGES];
    int tag; /* the index of the current stage's tag */
    char *dedup_key;
    size_t dedup_len;
    char *error, *traceback;    /* the last failure */
    char *error_channel_failed; /* why a publish of the error channel failed */
    /* Read from its headers on first use (inflight_read_context): its
     * `id` header (id_len bytes, in msg's headers), or NULL; and its
     * trace, continued from its traceparent header (traced set) or new,
     * with a span id of its own that what it publishes names as parent. */
    int context_read;
    const char *id;
    size_t id_len;
    trace_t trace;
    int traced;
    struct inflight *prev, *next; /* the flow's list, or the lingering list */
    /* While its handler runs or waits to. */
    struct task *task;       /* the handler's call while it waits on I/O */
    struct batch *batch;     /* the batch whose call it carries (its first message), or NULL */
    uint64_t started;        /* uv_hrtime() of the call's start */
    int tries;               /* handler calls in this delivery (instant retries) */
    int aged;                /* its age was observed (pipeline.c) */
    int64_t pause_ms;        /* meta:pause's in this call, or -1 */
    struct uv_timer_s *timer; /* a retry's delay, waited in memory */
    int64_t delay_ms;         /* that delay, as the policy decided it */
    void (*done)(struct inflight *inf, int rc, const struct script_err *err); /* call_start's */
    /* Kept by sched.c: the lane it holds or waits in, its queue link, and
     * where it stands there. */
    struct lane *lane;
    struct inflight *qnext;
    int sched;
} inflight_t;

/* A record for m (whose message it takes), tracked in o, on f's list. */
inflight_t *inflight_new(flow_t *f, message_t *m, offsets_t *o);

/* A record that takes over inf's message, offset and attempts, to
 * be delivered again from memory (rounds one more); inf ends, its offset
 * neither done nor given up, and lingers for the reports of what it
 * published. */
inflight_t *inflight_respawn(inflight_t *inf);

/* The end of inf as a message: its offset is done (done) or left for a
 * later delivery, the source hears of it, and the record lingers until
 * its last publish is reported. */
void inflight_finish(inflight_t *inf, int done);

/* Read inf's id and trace from its headers, unless they were: most
 * handlers never publish, log or ask, and a trace id is a cost per
 * message.  A malformed traceparent is logged (debug) and starts a new
 * trace. */
void inflight_read_context(inflight_t *inf);

/* Fill c with inf's context for a log line and return it. */
const log_ctx_t *inflight_log_ctx(inflight_t *inf, log_ctx_t *c);
#define INFLIGHT_CTX(inf) inflight_log_ctx((inf), &(log_ctx_t){0})

/* The tag a publish made now on behalf of inf carries to its sink. */
publish_tag_t *inflight_tag(inflight_t *inf);

/* What inf publishes from now on belongs to a new stage. */
void inflight_new_stage(inflight_t *inf);

/* The publish tagged t was reported.  Returns inf when it still stands
 * for a message and t is its current stage (the report decides
 * something), else NULL (a lingering record may have been freed). */
inflight_t *inflight_reported(publish_tag_t *t);

/* Free the records kept for reuse, and those whose reports never came
 * because their producers are gone (at exit, for leak checkers). */
void inflight_shutdown(void);

#endif
