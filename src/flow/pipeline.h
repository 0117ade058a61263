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

/* Run one message through f.  Takes ownership of m's message.  o is its
 * partition's tracker; again is NULL on a first delivery (the attempts of
 * a resent message come from its header). */
void pipeline_handle(flow_t *f, message_t *m, offsets_t *o, const redelivery_t *again);

/* Set f up for the endpoint conf, its calls running in L.  dedup_store
 * overrides the endpoint's store when not NULL (the test kit keeps its
 * record in memory); dir is where relative store paths are found.  Returns
 * 0, or -1 with errbuf naming the endpoint. */
int pipeline_open(flow_t *f, const endpoint_conf_t *conf, lua_State *L, const char *dir,
                  const char *dedup_store, const source_ops_t *source, const sinks_t *sinks,
                  char *errbuf, size_t errlen);

/* Let go of every message still in flight without committing it (it is
 * delivered again), and of the dedup store.  Returns how many were left. */
int pipeline_close(flow_t *f);

#endif
