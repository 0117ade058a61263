/* env.h - what an app's Lua state is bound to by whatever runs it (the
 * runtime, the test kit, `luka publish`): the loop its timers run on and
 * the sinks luka.publish sends to.  Until a state is bound, publishes and
 * timers are recorded and wait. */
#ifndef LUKA_ENV_H
#define LUKA_ENV_H

#include <lua.h>
#include <uv.h>

#include "flow/flow.h"

typedef struct api_env {
    uv_loop_t *loop; /* NULL: timers wait on a virtual clock (api/timer.h) */
    const sinks_t *sinks;
} api_env_t;

/* Bind a state to env, or unbind it with NULL. */
void api_bind(lua_State *L, const api_env_t *env);

/* What L is bound to, or NULL. */
const api_env_t *api_env(lua_State *L);

#endif
