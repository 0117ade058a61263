/* task.h - a call of user Lua code that may wait.
 *
 * A task runs a function in a coroutine of its own.  A C function of the
 * API that waits for I/O (luka.sleep, luka.http.request, a Redis call)
 * parks the task with task_wait() and starts its request on the loop; the
 * loop resumes the task with task_wake() when the answer comes, and the
 * Lua code goes on as if the call had simply returned.  Other tasks,
 * timers and probes run meanwhile.
 *
 * The time limit counts wall time, waiting included: a count hook stops a
 * task that computes past it (as script_call does), and a timer stops one
 * that waits past it, cancelling its request.  A task ends once, through
 * its done callback, unless its owner abandons it first. */
#ifndef LUKA_TASK_H
#define LUKA_TASK_H

#include <stdint.h>

#include <lua.h>
#include <uv.h>

#include "lua/script.h"

typedef struct task task_t;

/* How a task ended: rc 0, or -1 with err filled (a timeout names what it
 * waited for).  Called once, from task_start or from the loop. */
typedef void (*task_done_fn)(task_t *t, int rc, const script_err_t *err, void *data);

/* Let go of a pending request: its answer must never reach task_wake. */
typedef void (*task_cancel_fn)(void *req);

/* Run the function below nargs arguments on L's stack (both are popped) as
 * a task on loop, under timeout_ms of wall time (0: none).  Returns the
 * task while it waits, or NULL when it already ended: done was called
 * before task_start returned.  loop may be NULL (nothing can wait then:
 * task_self says why). */
task_t *task_start(lua_State *L, uv_loop_t *loop, int nargs, int64_t timeout_ms,
                   task_done_fn done, void *data);

/* The task whose own coroutine L is, when it may wait now.  Otherwise
 * NULL, with why saying where the caller is instead (the app script's
 * load, a timer callback, a coroutine of the handler's own). */
task_t *task_self(lua_State *L, const char **why);

/* The loop a task runs on. */
uv_loop_t *task_loop(const task_t *t);

/* The data given to task_start, for the task running now when it was
 * started with done; NULL when no task runs or another owner's does (a
 * handler's and a timer callback's tasks tell each other apart so). */
void *task_running_data(task_done_fn done);

/* Park t, which called from L, until task_wake; what describes the wait
 * for a timeout ("luka.sleep", "GET http://..."), copied.  req is handed
 * to cancel when the task ends without the answer (timeout, abandon).
 * Use as `return task_wait(L, t, ...)`: the values given to task_wake are
 * what the C function returns. */
int task_wait(lua_State *L, task_t *t, const char *what, task_cancel_fn cancel, void *req);

/* The coroutine of a parked task: push the results there, then wake it. */
lua_State *task_thread(task_t *t);

/* Resume a parked t with the nres values pushed on task_thread(t), on the
 * loop's next turn (never inside the caller).  The request is over:
 * cancel will not be called for it. */
void task_wake(task_t *t, int nres);

/* End t now without its done callback: its request is cancelled and its
 * to-be-closed variables closed.  For an owner that stops waiting. */
void task_abandon(task_t *t);

/* Tasks not ended yet whose main state is L. */
int task_count(lua_State *L);

/* Forget the idle coroutines kept of L.  Before L is closed. */
void task_forget(lua_State *L);

/* Close this module's handle on loop, before the loop closes; its tasks
 * must have ended. */
void task_close_loop(uv_loop_t *loop);

/* Abandon what is left and let go of the pooled coroutines, at exit. */
void task_shutdown(void);

#endif
