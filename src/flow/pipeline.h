/* pipeline.h - one consumed message, from payload to outcome: skip it if
 * its dedup key was handled, call the endpoint's handler (again at once
 * for instant retries), then hand it to the outcome code: settled when its
 * publishes are acknowledged, or a failure for the policy.  Also an
 * endpoint's flow set up and taken down. */
#ifndef LUKA_PIPELINE_H
#define LUKA_PIPELINE_H

#include "base/message.h"
#include "base/offsets.h"
#include "flow/flow.h"
#include "flow/inflight.h"

/* What a message delivered again already had. */
typedef struct redelivery {
    int attempts; /* handler calls */
    int rounds;   /* deliveries after the first */
} redelivery_t;

/* Take one message into f, in the order its partition delivers them: it
 * is tracked now, and runs as soon as its lane and a slot are free (maybe
 * before this returns).  Takes ownership of m's message.  o is its
 * partition's tracker; again is NULL on a first delivery (the attempts of
 * a resent message come from its header). */
void pipeline_handle(flow_t *f, message_t *m, offsets_t *o, const redelivery_t *again);

/* A publish tagged t was reported by its sink (err 0: acknowledged). */
void pipeline_reported(publish_tag_t *t, rd_kafka_resp_err_t err);

/* Messages taken but not started (waiting behind their lane or a slot):
 * what the buffer limit counts. */
int pipeline_waiting(const flow_t *f);

/* Handler calls in flight: the slots of the endpoint's concurrency taken,
 * by calls running or waiting on I/O. */
int pipeline_in_use(const flow_t *f);

/* A batch endpoint's waiting messages cut into batches now (the test kit,
 * whose clock does not run).  Nothing for other endpoints. */
void pipeline_flush(flow_t *f);

/* Whether a batch endpoint has batches to run or running. */
int pipeline_batch_busy(const flow_t *f);

/* Handler calls waiting on I/O, of partition o (NULL: of any). */
int pipeline_running(const flow_t *f, const offsets_t *o);

/* Let go, uncommitted, of the messages of partition o (NULL: all) not
 * started or waiting for a retry, and with running_too of those whose
 * handler still runs (abandoned).  Returns how many. */
int pipeline_drop(flow_t *f, const offsets_t *o, int running_too);

/* Set f up for the endpoint conf, its calls running in L and waiting on
 * loop (NULL: handlers cannot wait).  dedup_store
 * overrides the endpoint's store when not NULL (the test kit keeps its
 * record in memory); dir is where relative store paths are found.  Returns
 * 0, or -1 with errbuf naming the endpoint. */
int pipeline_open(flow_t *f, const endpoint_conf_t *conf, lua_State *L, uv_loop_t *loop,
                  const char *dir, const char *dedup_store, const source_ops_t *source,
                  const sinks_t *sinks, char *errbuf, size_t errlen);

/* The open flow of the endpoint named name (the newest, after a reload),
 * or NULL: how luka.seek finds its endpoint. */
flow_t *pipeline_find(const char *name);

/* Let go of every message still in flight without committing it (it is
 * delivered again), and of the dedup store.  Returns how many were left. */
int pipeline_close(flow_t *f);

#endif
