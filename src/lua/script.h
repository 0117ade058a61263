/* script.h - the one door into user Lua code.
 *
 * Every call from C into a handler, a timer callback or an app script goes
 * through script_call(), which adds a traceback to errors and enforces the
 * handler's time limit. */
#ifndef LUKA_SCRIPT_H
#define LUKA_SCRIPT_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* Outcome of a call, besides its results. */
typedef struct script_err {
    char msg[1024];       /* the error message, one line when possible */
    char traceback[4096]; /* the Lua traceback, or "" */
    int fatal;            /* raised with luka.fatal(): skip retries */
} script_err_t;

/* Call the function below nargs arguments on the stack, in protected mode,
 * stopping it after timeout_ms of wall time (0 = no limit).  Returns 0 with
 * nresults pushed, or -1 with err filled and nothing pushed. */
int script_call(lua_State *L, int nargs, int nresults, int64_t timeout_ms,
                script_err_t *err);

/* Push the error value luka.fatal(msg) raises. */
void script_push_fatal(lua_State *L, int msg_idx);

/* The allocator data (lua_getallocf) of the state whose user code is
 * running now, or NULL: memory limits apply to it alone. */
extern void *script_active;

/* Forget what script.c keeps of L between calls.  Before L is closed. */
void script_forget(lua_State *L);

/* Register the metatable of fatal errors.  Once per state. */
void script_init(lua_State *L);

#endif
