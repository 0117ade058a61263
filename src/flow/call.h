/* call.h - the one way the flow calls user code for a message (handler,
 * dedup key function, error-channel function), and which message's code
 * runs now. */
#ifndef LUKA_CALL_H
#define LUKA_CALL_H

#include "flow/inflight.h"
#include "lua/script.h"
#include "lua/task.h"

/* Call the function fn (a registry ref) with the message's payload and
 * meta, and with with_err its error too; or, with fn LUA_NOREF, read field
 * of the payload.  In protected mode, under the endpoint's time limit;
 * publishes made meanwhile belong to inf.  Returns 0 with nresults pushed,
 * or -1 with err ("decode error: ..." when the payload does not decode,
 * which is fatal). */
int call_user(inflight_t *inf, int fn, const char *field, int with_err, int nresults,
              script_err_t *err);

/* Call the handler fn (a registry ref) for inf as a task on the flow's
 * loop: done runs when it ends, maybe before call_start returns; until
 * then inf->task is set (it waits on I/O).  err as for call_user. */
typedef void (*call_done_fn)(inflight_t *inf, int rc, const script_err_t *err);
void call_start(inflight_t *inf, int fn, call_done_fn done);

/* Push the payload as the handler sees it (a decoded table, a string or
 * nil) on L, the thread the call runs in.  Returns 0, or -1 with a decode
 * error in errbuf. */
int call_push_payload(lua_State *L, inflight_t *inf, char *errbuf, size_t errlen);

/* Push the meta the handler gets for inf. */
void call_push_meta(lua_State *L, inflight_t *inf);

/* The message whose user code runs now, or NULL: what luka.publish
 * publishes on behalf of (for a batch, its first message). */
inflight_t *call_current(void);

/* Tasks that end through done carry the message in flight as their data,
 * as the handler's do (a batch's call: flow/batch_call.c), so that
 * call_current finds it while one runs.  Up to four such callbacks. */
void call_carrier_tasks(task_done_fn done);

#endif
