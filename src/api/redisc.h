/* redisc.h - luka.redis: a Redis client for handlers, whose calls wait for
 * their reply without blocking the loop (lua/task.h). */
#ifndef LUKA_REDISC_H
#define LUKA_REDISC_H

#include <lua.h>

/* Fill the table at the top of the stack with redis(url, timeout_ms, pool),
 * which luka.redis (lua/luka/init.lua) calls with its options checked. */
void redisc_inject_api(lua_State *L);

#endif
