/* script.c - protected calls into user Lua code, with a traceback handler and
 * a wall-clock limit enforced by a count hook (as Redis stops runaway
 * scripts) that ends the call with a yield, which no pcall can catch.
 * Nothing here raises across the C boundary. */
#include "lua/script.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#define FATAL_MT "luka.fatal"
#define NO_MEMORY                                                                 \
    "not enough memory: the app's Lua state reached its memory_limit (luka.runtime), " \
    "or the process ran out"
/* The hook runs every HOOK_COUNT VM instructions: often enough to stop a
 * tight loop within a millisecond, rarely enough to cost little. */
#define HOOK_COUNT 10000

/* The deadline of the call in progress.  Only the loop thread runs Lua, and
 * calls do not nest across states with different limits, so one is enough;
 * a nested call saves and restores it. */
void *script_active;

static int64_t deadline_ms;
static int64_t limit_ms;
static int timed_out;
static lua_State *call_co; /* the coroutine the limited call runs in */
static char timeout_where[256];

static const char THREAD_KEY = 't';

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void timeout_hook(lua_State *L, lua_Debug *ar) {
    if (deadline_ms && now_ms() > deadline_ms) {
        /* Where it was, read now: after the yield the frame's line can be
         * one instruction off. */
        if (!timed_out) {
            if (lua_getinfo(L, "Sl", ar) && ar->currentline >= 0)
                snprintf(timeout_where, sizeof(timeout_where), "%s:%d: ", ar->short_src,
                         ar->currentline);
            else
                timeout_where[0] = '\0';
        }
        /* Once set, the call fails as timed out however it ends. */
        timed_out = 1;
        /* A coroutine the handler runs (a generator) inherits this hook.
         * A yield there would only end the generator early, and the
         * handler would go on with a truncated result: raise in it, and
         * let the hook of the call's own coroutine stop the handler. */
        if (L != call_co) luaL_error(L, "timed out after %d ms", (int)limit_ms);
        /* Yield out of the coroutine the call runs in: unlike an error, a
         * yield cannot be caught by a pcall in the handler.  Inside a C
         * function that cannot yield this raises instead, and the next
         * hook tries again. */
        lua_yield(L, 0);
    }
}

/* Describe any error value: strings as they are, tables by their __tostring
 * or their message field, anything else by its type.  May raise: a
 * __tostring or __index of the user's can. */
static const char *describe(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
        lua_pop(L, 1);
        return luaL_tolstring(L, idx, NULL);
    }
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
        lua_pushvalue(L, idx);
        return lua_tostring(L, -1);
    case LUA_TTABLE:
        if (lua_getfield(L, idx, "message") == LUA_TSTRING) return lua_tostring(L, -1);
        lua_pop(L, 1);
        return lua_pushfstring(L, "error raised with a table value (%p) and no message field",
                               lua_topointer(L, idx));
    case LUA_TNIL:
        return lua_pushliteral(L, "error raised with a nil value");
    default:
        return lua_pushfstring(L, "error raised with a %s value", luaL_typename(L, idx));
    }
}

static int describe_cf(lua_State *L) {
    describe(L, 1);
    return 1;
}

/* describe() in a protected call, so that a user's formatter that raises
 * cannot take the process down: then the type name stands in.  Pushes the
 * description on L and returns it. */
static const char *describe_safe(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, describe_cf);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
        return lua_tostring(L, -1);
    lua_pop(L, 1);
    return lua_pushfstring(L, "error raised with a %s value whose description failed",
                           luaL_typename(L, idx));
}

/* Message handler: turn the error into {message, traceback, fatal} while the
 * failing frames are still on the stack. */
static int msghandler(lua_State *L) {
    int fatal = luaL_testudata(L, 1, FATAL_MT) != NULL;
    if (fatal) lua_getiuservalue(L, 1, 1);
    else lua_pushvalue(L, 1);
    const char *msg = describe_safe(L, -1);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    luaL_traceback(L, L, NULL, 1);
    lua_setfield(L, -2, "traceback");
    lua_pushboolean(L, fatal);
    lua_setfield(L, -2, "fatal");
    return 1;
}

static void copy_field(lua_State *L, int t, const char *name, char *dst, size_t len) {
    size_t n = 0;
    const char *s = NULL;
    if (lua_getfield(L, t, name) == LUA_TSTRING) s = lua_tolstring(L, -1, &n);
    if (n >= len) n = len - 1;
    if (s) memcpy(dst, s, n);
    dst[n] = '\0';
    lua_pop(L, 1);
}

/* An unlimited call: a pcall with the message handler. */
static int plain_call(lua_State *L, int nargs, int nresults, script_err_t *err) {
    int base = lua_gettop(L) - nargs; /* index of the function */
    int rc;

    void *saved_active = script_active;

    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    lua_getallocf(L, &script_active);
    rc = lua_pcall(L, nargs, nresults, base);
    script_active = saved_active;
    lua_remove(L, base); /* the message handler */
    if (rc == LUA_OK) return 0;

    /* Stack: ..., error record (or a bare message if the handler itself
     * could not run, as after a memory error). */
    if (lua_istable(L, -1)) {
        copy_field(L, -1, "message", err->msg, sizeof(err->msg));
        copy_field(L, -1, "traceback", err->traceback, sizeof(err->traceback));
        lua_getfield(L, -1, "fatal");
        err->fatal = lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else {
        snprintf(err->msg, sizeof(err->msg), "%s", rc == LUA_ERRMEM ? NO_MEMORY : "unknown error");
        err->traceback[0] = '\0';
        err->fatal = 0;
    }
    lua_pop(L, 1);
    if (rc == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT);
    return -1;
}

static void copy(char *dst, size_t len, const char *src) {
    snprintf(dst, len, "%s", src ? src : "");
}

/* A call under a time limit runs in a coroutine, so that the hook can end
 * it with a yield.  Each state has one for reuse, anchored in its registry
 * and always handed back with an empty stack.  The coroutine of the state
 * called last is also kept here, keyed by the state's allocator data, so
 * that a call per message costs no registry lookups.  A nested call finds
 * it busy and runs in a coroutine of its own. */
static struct {
    void *ud;      /* whose: the state's allocator data, or NULL */
    lua_State *co; /* anchored in that state's registry */
    int busy;      /* a call runs in it: nothing may take or evict it */
} cached;

void script_forget(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    if (cached.ud == ud) cached.ud = NULL, cached.co = NULL;
}

void script_enter(script_frame_t *saved, lua_State *L, lua_State *co, int64_t deadline,
                  int64_t limit) {
    saved->deadline_ms = deadline_ms;
    saved->limit_ms = limit_ms;
    saved->timed_out = timed_out;
    saved->co = call_co;
    saved->active = script_active;
    deadline_ms = deadline;
    limit_ms = limit;
    timed_out = 0;
    call_co = co;
    lua_sethook(co, timeout_hook, LUA_MASKCOUNT, HOOK_COUNT);
    lua_getallocf(L, &script_active);
}

int script_leave(const script_frame_t *saved, lua_State *co) {
    int was = timed_out;
    lua_sethook(co, NULL, 0, 0);
    deadline_ms = saved->deadline_ms;
    limit_ms = saved->limit_ms;
    timed_out = saved->timed_out;
    call_co = saved->co;
    script_active = saved->active;
    return was;
}

int64_t script_now_ms(void) { return now_ms(); }

void script_failure(lua_State *L, lua_State *co, int status, int was_timed_out,
                    int64_t timeout_ms, script_err_t *err) {
    if (status == LUA_OK || status == LUA_YIELD) {
        /* A handler that caught its generator's timeout error and returned
         * still ran out of time: it fails as timed out, never succeeds. */
        if (was_timed_out)
            snprintf(err->msg, sizeof(err->msg), "%stimed out after %d ms", timeout_where,
                     (int)timeout_ms);
        else
            copy(err->msg, sizeof(err->msg), "a handler must not yield outside a coroutine of its own");
        err->fatal = 0;
    } else {
        err->fatal = luaL_testudata(co, -1, FATAL_MT) != NULL;
        if (status == LUA_ERRMEM) {
            copy(err->msg, sizeof(err->msg), NO_MEMORY);
        } else {
            /* Describe the error on L: co is dead until it is reset. */
            lua_pushvalue(co, -1);
            lua_xmove(co, L, 1);
            if (err->fatal) {
                lua_getiuservalue(L, -1, 1);
                lua_remove(L, -2);
            }
            copy(err->msg, sizeof(err->msg), describe_safe(L, -1));
            lua_pop(L, 2);
        }
    }
    /* The coroutine's stack is still there to be walked. */
    luaL_traceback(L, co, NULL, 0);
    copy(err->traceback, sizeof(err->traceback), lua_tostring(L, -1));
    lua_pop(L, 1);
}

static int limited_call(lua_State *L, int nargs, int nresults, int64_t timeout_ms,
                        script_err_t *err) {
    int base = lua_gettop(L) - nargs, status, nres = 0, own = 0, was_timed_out;
    script_frame_t saved;
    lua_State *co = NULL;
    void *ud;

    lua_getallocf(L, &ud);
    if (cached.ud != ud && !cached.busy) {
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, &THREAD_KEY) != LUA_TTHREAD) {
            lua_pop(L, 1);
            lua_newthread(L);
            lua_pushvalue(L, -1);
            lua_rawsetp(L, LUA_REGISTRYINDEX, &THREAD_KEY);
        }
        cached.ud = ud;
        cached.co = lua_tothread(L, -1);
        lua_pop(L, 1);
    }
    if (cached.ud == ud && !cached.busy) {
        co = cached.co;
        cached.busy = 1;
    } else {
        co = lua_newthread(L); /* Stack: ..., fn, args, co */
        lua_insert(L, base);   /* Stack: ..., co, fn, args */
        own = 1;
    }
    lua_xmove(L, co, nargs + 1); /* co: fn, args */
    script_enter(&saved, L, co, now_ms() + timeout_ms, timeout_ms);
    status = lua_resume(co, L, nargs, &nres);
    /* Decided before the nested call's state is restored: a handler whose
     * own coroutine ran past the limit and returned still failed. */
    was_timed_out = script_leave(&saved, co);

    if (status == LUA_OK && !was_timed_out) {
        /* The results are the top nres values of co. */
        if (nres > nresults) lua_pop(co, nres - nresults), nres = nresults;
        lua_xmove(co, L, nres);
        for (; nres < nresults; nres++) lua_pushnil(L);
    } else {
        script_failure(L, co, status, was_timed_out, timeout_ms, err);
    }
    /* Back to a clean, reusable coroutine: one that failed or was stopped
     * may have left frames and to-be-closed variables behind, and Lua
     * 5.4.4's lua_resetthread leaves the error object on the stack, where
     * the next call's results would be miscounted. */
    if (status != LUA_OK) lua_resetthread(co);
    lua_settop(co, 0);
    /* Stack: ..., co (when own), results */
    if (own) lua_remove(L, base);
    else cached.busy = 0;
    if (status == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT); /* give the memory back now */
    return status != LUA_OK || was_timed_out ? -1 : 0;
}

int script_call(lua_State *L, int nargs, int nresults, int64_t timeout_ms,
                script_err_t *err) {
    if (timeout_ms > 0) return limited_call(L, nargs, nresults, timeout_ms, err);
    return plain_call(L, nargs, nresults, err);
}

void script_push_fatal(lua_State *L, int msg_idx) {
    msg_idx = lua_absindex(L, msg_idx);
    lua_newuserdatauv(L, 0, 1);
    lua_pushvalue(L, msg_idx);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, FATAL_MT);
}

static int fatal_tostring(lua_State *L) {
    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, "%s", luaL_tolstring(L, -1, NULL));
    return 1;
}

void script_init(lua_State *L) {
    if (luaL_newmetatable(L, FATAL_MT)) {
        lua_pushcfunction(L, fatal_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}
