/* batch_call.h - a batch of an endpoint with handle_batch, and its calls
 * (batch_call.c).  batch.c gathers and schedules batches; this side calls
 * the handler and settles what it returns, asking batch.c through ops
 * when the batch is over or is to be retried later. */
#ifndef LUKA_BATCH_CALL_H
#define LUKA_BATCH_CALL_H

#include <stdint.h>

#include <lua.h>
#include <uv.h>

#include "flow/flow.h"
#include "flow/inflight.h"
#include "lua/script.h"
#include "lua/task.h"

typedef struct batch batch_t;
struct bpart;

/* What the calls ask of the batches (batch.c fills it). */
typedef struct batch_ops {
    /* b is over (all settled, or let go): free it and its partition. */
    void (*over)(batch_t *b);
    /* Call b again after ms, from a slot of its own: it keeps its
     * partition meanwhile. */
    void (*retry_in)(batch_t *b, int64_t ms);
} batch_ops_t;

/* The Lua side of a running call: what batch:resolve(i) changes. */
typedef struct bstate {
    batch_t *b; /* NULL once the call is over */
    int n, resolved;
} bstate_t;

struct batch {
    flow_t *f;
    const batch_ops_t *ops;
    struct bpart *part; /* batch.c's */
    inflight_t **m; /* the messages still to handle, in offset order */
    int n;
    int tries;    /* calls in this round: 1 + instant retries */
    int rounds;   /* delayed retries so far */
    int slot;     /* holds a slot of the concurrency */
    int filtered; /* dedup has looked at it */
    int busy;     /* being started or ended: a drop leaves it alone */
    int sync_rc;  /* the call ended inside task_start: how */
    int sync_done;
    script_err_t sync_err;
    task_t *task;
    uv_timer_t *timer; /* a delayed retry (batch.c's) */
    uint64_t started;
    bstate_t *state;
    int state_ref;
    lua_State *L; /* whose registry holds state_ref: a reload may swap the flow's */
};

/* Call the handler with what is left of b; it settles what the call
 * resolved and decides on the rest, maybe before this returns. */
void batch_call(batch_t *b);

/* Stop b's call without its outcome: its task abandoned, its Lua side
 * let go of.  Its messages are the caller's to let go of. */
void batch_call_stop(batch_t *b);

/* Let go of inf uncommitted: it, and what follows it in its partition,
 * come again. */
void batch_let_go(inflight_t *inf);

/* Remove the members i of b whose gone[i] is set, keeping the order. */
void batch_compact(batch_t *b, const char *gone);

#endif
