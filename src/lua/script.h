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

/* The time limit of the user code running now, saved while another runs:
 * script_enter() puts co under a deadline (milliseconds, CLOCK_MONOTONIC
 * as script_now_ms) and makes L's memory limit the active one;
 * script_leave() restores what was, and says whether co ran past its
 * deadline meanwhile. */
typedef struct script_frame {
    int64_t deadline_ms, limit_ms;
    int timed_out;
    lua_State *co;
    void *active;
} script_frame_t;
void script_enter(script_frame_t *saved, lua_State *L, lua_State *co, int64_t deadline,
                  int64_t limit);
int script_leave(const script_frame_t *saved, lua_State *co);
int64_t script_now_ms(void);

/* Fill err for co, whose resume returned status (with the error on co's
 * top), or which ran past its limit of timeout_ms (timed_out); the
 * traceback is co's stack.  Uses L's stack for the description. */
void script_failure(lua_State *L, lua_State *co, int status, int timed_out, int64_t timeout_ms,
                    script_err_t *err);

/* Forget what script.c keeps of L between calls.  Before L is closed. */
void script_forget(lua_State *L);

/* Register the metatable of fatal errors.  Once per state. */
void script_init(lua_State *L);

#endif
