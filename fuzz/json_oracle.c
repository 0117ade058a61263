/* json_oracle.c - libFuzzer harness for src/json_decode.c against jansson:
 * the same bytes must give the same Lua value through json_decode and
 * through jansson's tree (fuzz/jansson_lua.h, the decoder luka had before):
 * same types (integer and float told apart, luka.null), strings byte for
 * byte, same keys, arrays marked as arrays.  Or both must refuse them, with
 * the same message.  Built and run by `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "jansson_lua.h"
#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail) {
    fprintf(stderr, "json_oracle: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

static int is_array(lua_State *L, int idx) {
    int yes;
    if (!lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, JSON_ARRAY_MT);
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return yes;
}

static int count_keys(lua_State *L, int idx) {
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) n++, lua_pop(L, 1);
    return n;
}

/* Whether the values at a and b (absolute indices) are the same decoded
 * JSON.  Floats are compared bit for bit, so -0.0 differs from 0.0. */
static int same(lua_State *L, int a, int b) {
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

static lua_State *state(void) {
    static lua_State *L;
    if (!L) {
        L = luaL_newstate();
        json_init(L);
    }
    return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = state();
    char err[512], want[512];
    int rc, want_rc;

    lua_settop(L, 0);
    rc = json_decode(L, (const char *)data, size, err, sizeof(err));
    if (lua_gettop(L) != (rc == 0)) fail("json_decode left the stack wrong", rc ? err : NULL);
    want_rc = jansson_decode(L, (const char *)data, size, want, sizeof(want));
    if (rc != want_rc) fail(rc ? "json_decode refused what jansson took" : "json_decode took what jansson refused",
                            rc ? err : want);
    if (rc != 0) {
        if (strcmp(err, want) != 0) fail("the messages differ", err);
    } else if (!same(L, 1, 2)) {
        fail("json_decode and jansson give different values", NULL);
    }
    lua_settop(L, 0);
    /* One state serves every input; keep its garbage from piling up. */
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
