/* harness.h - what luka's libFuzzer harnesses share: failing loudly with
 * the harness's name (HARNESS, defined before this is included), one Lua
 * state for every input, and comparing two decoded JSON values in Lua the
 * way JSON sees them (integer and float subtypes, floats bit for bit, the
 * luka.array mark, luka.null). */
#ifndef LUKA_FUZZ_HARNESS_H
#define LUKA_FUZZ_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void fail(const char *what, const char *detail) {
    fprintf(stderr, HARNESS ": %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* One state for the whole run: each input leaves it as it found it. */
static inline lua_State *state(void) {
    static lua_State *L;
    if (!L) {
        L = luaL_newstate();
        json_init(L);
    }
    return L;
}

static inline int is_array(lua_State *L, int idx) {
    int yes;
    if (!lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, JSON_ARRAY_MT);
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return yes;
}

static inline int count_keys(lua_State *L, int idx) {
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) n++, lua_pop(L, 1);
    return n;
}

/* Whether the values at a and b (absolute indices) are the same decoded
 * JSON.  Floats are compared bit for bit, so -0.0 differs from 0.0.
 * Recursion depth is bounded by the decoders' depth limit. */
static inline int same(lua_State *L, int a, int b) {
    int t = lua_type(L, a), ok = 1;

    if (t != lua_type(L, b)) return 0;
    switch (t) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
        if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
        {
            lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
            return memcmp(&x, &y, sizeof(x)) == 0;
        }
    case LUA_TSTRING: {
        size_t la, lb;
        const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
        return la == lb && memcmp(sa, sb, la) == 0;
    }
    case LUA_TBOOLEAN:
        return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, a) == lua_touserdata(L, b);
    case LUA_TTABLE:
        if (is_array(L, a) != is_array(L, b)) return 0;
        if (lua_getmetatable(L, a)) {
            if (!is_array(L, a)) fail("a table has a metatable other than luka.array", NULL);
            lua_pop(L, 1);
        }
        if (count_keys(L, a) != count_keys(L, b)) return 0;
        luaL_checkstack(L, 4, "nesting");
        lua_pushnil(L);
        /* Stack: key */
        while (ok && lua_next(L, a)) {
            /* Stack: key, value-in-a */
            lua_pushvalue(L, -2);
            lua_rawget(L, b); /* Stack: key, value-in-a, value-in-b */
            ok = same(L, lua_gettop(L) - 1, lua_gettop(L));
            lua_pop(L, 2);
        }
        if (!ok) lua_pop(L, 1); /* the key lua_next left */
        return ok;
    default:
        return 0;
    }
}

#endif
