/* json_roundtrip.c - libFuzzer harness for src/json.c: any bytes go through
 * json_decode; whatever decodes must encode again with json_encode, and
 * decoding that text must give a Lua value equal to the first: same types
 * (integer and float told apart), same strings byte for byte, same keys,
 * and arrays still marked as arrays.  Built and run by `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail) {
    fprintf(stderr, "json_roundtrip: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
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

/* Whether the values at a and b (absolute indices) are equal as the JSON
 * they came from.  Recursion depth is bounded by jansson's parser depth. */
static int same(lua_State *L, int a, int b) {
    int t = lua_type(L, a), ok = 1;

    if (t != lua_type(L, b)) return 0;
    switch (t) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
        if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
        return lua_tonumber(L, a) == lua_tonumber(L, b);
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
    char err[512];
    size_t len;
    char *text;

    lua_settop(L, 0);
    if (json_decode(L, (const char *)data, size, err, sizeof(err)) != 0) {
        if (lua_gettop(L) != 0) fail("a failed decode left values on the stack", err);
        if (!err[0]) fail("a failed decode gave no message", NULL);
        return 0;
    }
    if (lua_gettop(L) != 1) fail("decode did not push exactly one value", NULL);
    text = json_encode(L, 1, &len, err, sizeof(err));
    if (!text) fail("a decoded value does not encode", err);
    if (lua_gettop(L) != 1) fail("encode changed the stack", NULL);
    if (json_decode(L, text, len, err, sizeof(err)) != 0) fail("encoded text does not decode", err);
    if (!same(L, 1, 2)) fail("decode(encode(decode(x))) differs from decode(x)", text);
    free(text);
    lua_settop(L, 0);
    /* One state serves every input; keep its garbage from piling up. */
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
