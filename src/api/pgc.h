/* pgc.h - luka.pg: a PostgreSQL client for handlers, whose calls wait for
 * their result without blocking the loop (lua/task.h). */
#ifndef LUKA_PGC_H
#define LUKA_PGC_H

#include <lua.h>

/* Fill the table at the top of the stack with pg(url, timeout_ms, pool),
 * which luka.pg (lua/luka/init.lua) calls with its options checked. */
void pgc_inject_api(lua_State *L);

#endif
