/* lapi.h - the luka.host module: the C half of what app scripts call
 * (luka.publish, luka.every/after, luka.fatal, luka.null, luka.json), and
 * the Lua state those scripts run in.  lua/luka/init.lua joins it with the
 * declarations of luka.dsl into the `luka` module. */
#ifndef LUKA_LAPI_H
#define LUKA_LAPI_H

#include <stddef.h>

#include <lua.h>

struct host;

/* A new Lua state whose allocator counts its memory. */
lua_State *lapi_newstate(void);

/* Close a state made by lapi_newstate. */
void lapi_close(lua_State *L);

/* Bytes the state's allocator holds now. */
size_t lapi_memory(lua_State *L);

/* Refuse allocations beyond limit bytes (0: none) while user code runs
 * (see script_active): the code gets a memory error, the host goes on. */
void lapi_set_memory_limit(lua_State *L, size_t limit);

/* The opener of luka.host, for package.preload. */
int lapi_open(lua_State *L);

/* Bind a state to the running host, or unbind it with NULL.  Until a state
 * is bound, publishes and timers are recorded and wait for the host. */
void lapi_set_host(lua_State *L, struct host *h);
struct host *lapi_host(lua_State *L);

/* luka.state, the table that survives reloads, crosses from the old state
 * to the new one as JSON.  set: before the app script runs; 0 or -1 with
 * errbuf.  get: a malloc'd JSON text, or NULL with errbuf. */
int lapi_set_state(lua_State *L, const char *json, size_t len, char *errbuf, size_t errlen);
char *lapi_get_state(lua_State *L, size_t *len, char *errbuf, size_t errlen);

/* Push the list of publishes made before the host started:
 * { {target=, payload=, opts=, id=, where=}, ... }. */
void lapi_push_deferred_publishes(lua_State *L);
void lapi_clear_deferred_publishes(lua_State *L);

#endif
