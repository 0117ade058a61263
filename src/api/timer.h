/* timer.h - luka.after / luka.every: Lua callbacks on libuv timers. */
#ifndef LUKA_TIMER_H
#define LUKA_TIMER_H

#include <lua.h>
#include <uv.h>

/* Fill the table at the top of the stack with timer(ms, repeat, fn). */
void timer_inject_api(lua_State *L);

/* Start the timers the script created while it loaded. */
void timer_start_all(lua_State *L, uv_loop_t *loop);

/* Stop every timer of the state. */
void timer_stop_all(lua_State *L);

#endif
