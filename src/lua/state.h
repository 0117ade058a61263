/* state.h - the Lua state an app runs in: an allocator that counts its
 * memory and refuses allocations past the app's limit while user code
 * runs, a panic handler, and luka.state, the table that crosses a reload
 * as JSON. */
#ifndef LUKA_STATE_H
#define LUKA_STATE_H

#include <stddef.h>

#include <lua.h>

/* A new Lua state whose allocator counts its memory. */
lua_State *state_new(void);

/* Close a state made by state_new. */
void state_close(lua_State *L);

/* Bytes the state's allocator holds now. */
size_t state_memory(lua_State *L);

/* Refuse allocations beyond limit bytes (0: none) while user code runs
 * (see script_active): the code gets a memory error, the host goes on. */
void state_set_memory_limit(lua_State *L, size_t limit);

/* Push the registry's table at key, made on first use: returns 1 when it
 * was made now. */
int state_registry_table(lua_State *L, const void *key);

/* Push luka.state, making it on first use. */
void state_push_luka_state(lua_State *L);

/* luka.state from JSON (before the app script runs): 0, or -1 with
 * errbuf.  And to JSON: a malloc'd text, or NULL with errbuf. */
int state_set_luka_state(lua_State *L, const char *json, size_t len, char *errbuf, size_t errlen);
char *state_get_luka_state(lua_State *L, size_t *len, char *errbuf, size_t errlen);

/* The publishes the app script made while it loaded, kept until a host
 * runs it: push the list { {target=, payload=, opts=, id=, where=}, ... },
 * made on first use; clear it. */
void state_push_deferred(lua_State *L);
void state_clear_deferred(lua_State *L);

#endif
