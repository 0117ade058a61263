/* batch.h - an endpoint with handle_batch: its messages gathered per
 * partition into batches, cut at batch.max messages or after batch.wait,
 * and each batch handed to the handler in one call that holds its
 * partition.  The pipeline hands messages here instead of to its
 * scheduler; the outcome code settles them one by one as usual. */
#ifndef LUKA_BATCH_H
#define LUKA_BATCH_H

#include "base/offsets.h"
#include "flow/flow.h"
#include "flow/inflight.h"

typedef struct batcher batcher_t;

/* Set up f's batches (f->conf has handle_batch). */
void batch_open(flow_t *f);

/* inf, tracked, joins its partition's next batch. */
void batch_push(flow_t *f, inflight_t *inf);

/* Cut every partition's waiting messages into batches now, without
 * waiting for batch.wait (the test kit, whose clock does not run). */
void batch_flush(flow_t *f);

/* Messages taken but not in a running call: what the buffer counts. */
int batch_waiting(const flow_t *f);

/* Batch calls holding a slot of the endpoint's concurrency. */
int batch_in_use(const flow_t *f);

/* Batch calls waiting on I/O, of partition o (NULL: of any). */
int batch_running(const flow_t *f, const offsets_t *o);

/* Whether something is still to happen without a new message: a call
 * running, a retry or a cut due, a batch waiting for a slot. */
int batch_busy(const flow_t *f);

/* Let go, uncommitted, of partition o's (NULL: every) messages not in a
 * running call, and with running_too of the running calls (abandoned).
 * Returns how many messages. */
int batch_drop(flow_t *f, const offsets_t *o, int running_too);

/* Abandon everything and free f's batches; the messages stay on f's list
 * for the pipeline to let go of. */
void batch_close(flow_t *f);

#endif
