/* timer.h - luka.after / luka.every: Lua callbacks on libuv timers, each
 * call a task that may wait on I/O. */
#ifndef LUKA_TIMER_H
#define LUKA_TIMER_H

#include <stdint.h>

#include <lua.h>
#include <uv.h>

#include "lua/script.h"

/* Fill the table at the top of the stack with timer(ms, repeat, fn). */
void timer_inject_api(lua_State *L);

/* Start the timers the script created while it loaded.  With loop NULL
 * they, and every timer made after, wait on a virtual clock, starting at
 * 0, that only timer_advance moves (the test kit). */
void timer_start_all(lua_State *L, uv_loop_t *loop);

/* A virtual clock's surroundings: the loop its callbacks wait on (NULL:
 * they cannot wait), turn, called between two turns of that loop while a
 * callback waits (the test kit's pretend broker answers there), and
 * failed, told of a callback that fails (both may be NULL). */
typedef struct timer_clock {
    uv_loop_t *loop;
    void (*turn)(void *ud);
    void (*failed)(void *ud, const script_err_t *err);
    void *ud;
} timer_clock_t;

/* Move L's virtual clock ms forward, running each timer as it comes due,
 * in order of due time (then of creation), through the same call as on a
 * loop (a task under the app's runtime timeout), each to its end before
 * the next; a repeating timer runs once per interval passed, and timers
 * made by callbacks run too if due.  Returns how many callbacks ran. */
int timer_advance(lua_State *L, int64_t ms, const timer_clock_t *c);

/* Stop every timer of the state; calls still running go on to their end. */
void timer_stop_all(lua_State *L);

/* Calls of L's timer callbacks still running (waiting on I/O). */
int timer_running(lua_State *L);

/* Stop every timer of the state and abandon the calls still running
 * (their requests let go).  When the state closes, and before
 * task_shutdown. */
void timer_close_all(lua_State *L);

#endif
