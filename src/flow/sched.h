/* sched.h - which message of an endpoint runs next, under its concurrency
 * and ordering.
 *
 * Messages enter in offset order.  Under ordering "key" each (partition,
 * key) is a lane, under "partition" each partition is; a lane runs one
 * message at a time, in the order they entered, and at most `concurrency`
 * messages run at once over all lanes.  Messages without a key share their
 * partition's keyless lane.  Under "none" (and always with concurrency 1)
 * there are no lanes: messages start in the order they entered as slots
 * free.  What cannot start waits here, counted against the buffer limit.
 *
 * The scheduler only decides; the pipeline starts what it returns. */
#ifndef LUKA_SCHED_H
#define LUKA_SCHED_H

#include <stddef.h>

#include "flow/inflight.h"

typedef struct lane lane_t;

typedef struct sched {
    int ordering;    /* ORDER_*; ORDER_NONE when concurrency is 1 */
    int concurrency; /* slots */
    int running;     /* slots taken */
    int queued;      /* messages waiting to start */
    lane_t **buckets; /* lanes by hash */
    size_t nbuckets, nlanes;
    lane_t *ready, *ready_tail;         /* free lanes with messages waiting */
    inflight_t *fifo, *fifo_tail;       /* without lanes: the messages waiting */
    inflight_t *due, *due_tail;         /* retries due, holding their lanes */
} sched_t;

void sched_init(sched_t *s, int concurrency, int ordering);

/* inf enters.  Returns 1 when it may start now (it took its lane and a
 * slot), 0 when it waits for sched_next. */
int sched_push(sched_t *s, inflight_t *inf);

/* The next message that may start now (it takes a slot), or NULL. */
inflight_t *sched_next(sched_t *s);

/* inf's handler call is over: its slot is free.  It still holds its lane
 * (a retry may wait in memory, keeping its place). */
void sched_done(sched_t *s, inflight_t *inf);

/* Take inf's lane away from it, to be handed on (sched_hold) or freed
 * (sched_release) once its outcome is known: inf may end meanwhile. */
lane_t *sched_detach(inflight_t *inf);

/* again (a retry waiting in memory) holds lane, which may be NULL. */
void sched_hold(inflight_t *again, lane_t *lane);

/* A lane is free: what waits in it may go.  NULL does nothing. */
void sched_release(sched_t *s, lane_t *lane);

/* inf, holding its lane (if any) and no slot, is due again: it starts when
 * a slot frees. */
void sched_due(sched_t *s, inflight_t *inf);

/* inf leaves without running further (dropped, abandoned): out of its
 * queue, its slot and lane freed. */
void sched_forget(sched_t *s, inflight_t *inf);

/* Whether inf waits to start: queued behind its lane or a slot, or due. */
int sched_waiting(const inflight_t *inf);

void sched_free(sched_t *s);

#endif
