/* timer.h - luka.after / luka.every: Lua callbacks on libuv timers. */
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

/* Move L's virtual clock ms forward, running each timer as it comes due,
 * in order of due time (then of creation), through the same call as on a
 * loop (script_call, the app's runtime timeout); a repeating timer runs
 * once per interval passed, and timers made by callbacks run too if due.
 * A callback that fails is passed to on_error (may be NULL).  Returns how
 * many callbacks ran. */
typedef void (*timer_error_cb)(void *ud, const script_err_t *err);
int timer_advance(lua_State *L, int64_t ms, timer_error_cb on_error, void *ud);

/* Stop every timer of the state. */
void timer_stop_all(lua_State *L);

#endif
