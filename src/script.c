/* script.c - protected calls into user Lua code, with a traceback handler and
 * a wall-clock limit enforced by a count hook (as Redis stops runaway
 * scripts).  Nothing here raises across the C boundary. */
#include "script.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#define FATAL_MT "luka.fatal"
/* The hook runs every HOOK_COUNT VM instructions: often enough to stop a
 * tight loop within a millisecond, rarely enough to cost little. */
#define HOOK_COUNT 10000

/* The deadline of the call in progress.  Only the loop thread runs Lua, and
 * calls do not nest across states with different limits, so one is enough;
 * a nested call saves and restores it. */
int script_active;

static int64_t deadline_ms;
static int64_t limit_ms;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void timeout_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    if (deadline_ms && now_ms() > deadline_ms) {
        /* Keep raising on later hooks too, so that a handler that catches
         * the error with pcall cannot keep running. */
        luaL_error(L, "timed out after %d ms (the endpoint's timeout)",
                   (int)limit_ms);
    }
}

/* Describe any error value: strings as they are, tables by their __tostring
 * or their message field, anything else by its type. */
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

/* Message handler: turn the error into {message, traceback, fatal} while the
 * failing frames are still on the stack. */
static int msghandler(lua_State *L) {
    int fatal = luaL_testudata(L, 1, FATAL_MT) != NULL;
    if (fatal) lua_getiuservalue(L, 1, 1);
    else lua_pushvalue(L, 1);
    const char *msg = describe(L, -1);
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

int script_call(lua_State *L, int nargs, int nresults, int64_t timeout_ms,
                script_err_t *err) {
    int base = lua_gettop(L) - nargs; /* index of the function */
    int64_t saved_deadline = deadline_ms, saved_limit = limit_ms;
    lua_Hook saved_hook = lua_gethook(L);
    int saved_mask = lua_gethookmask(L), saved_count = lua_gethookcount(L);
    int rc;

    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    if (timeout_ms > 0) {
        deadline_ms = now_ms() + timeout_ms;
        limit_ms = timeout_ms;
        lua_sethook(L, timeout_hook, LUA_MASKCOUNT, HOOK_COUNT);
    }
    script_active++;
    rc = lua_pcall(L, nargs, nresults, base);
    script_active--;
    if (rc == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT); /* give the memory back now */
    if (timeout_ms > 0) {
        lua_sethook(L, saved_hook, saved_mask, saved_count);
        deadline_ms = saved_deadline;
        limit_ms = saved_limit;
    }
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
        const char *m = lua_tostring(L, -1);
        if (rc == LUA_ERRMEM)
            snprintf(err->msg, sizeof(err->msg),
                     "not enough memory: the app's Lua state reached its memory_limit "
                     "(luka.runtime), or the process ran out");
        else
            snprintf(err->msg, sizeof(err->msg), "%s", m ? m : "unknown error");
        err->traceback[0] = '\0';
        err->fatal = 0;
    }
    lua_pop(L, 1);
    return -1;
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
