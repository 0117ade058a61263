/* jansson_lua.h - the decoder luka used before json_decode.c: jansson parses
 * the whole text into its tree, which is then copied into Lua.  Kept as the
 * reference that fuzz/json_oracle.c checks json_decode against, and as the
 * baseline of scripts/bench-json. */
#ifndef LUKA_JANSSON_LUA_H
#define LUKA_JANSSON_LUA_H

#include <limits.h>
#include <stdio.h>

#include <jansson.h>
#include <lauxlib.h>

#include "base/json.h"

static int jansson_size_hint(size_t n) {
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* Push v and everything under it; jansson's depth limit bounds the
 * recursion. */
static void jansson_push(lua_State *L, json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        luaL_checkstack(L, 3, "JSON nested too deeply");
        lua_createtable(L, 0, jansson_size_hint(json_object_size(v)));
        for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
            lua_pushlstring(L, json_object_iter_key(it), json_object_iter_key_len(it));
            jansson_push(L, json_object_iter_value(it)); /* Stack: table, key, value */
            lua_rawset(L, -3);
        }
        break;
    case JSON_ARRAY:
        luaL_checkstack(L, 3, "JSON nested too deeply");
        lua_createtable(L, jansson_size_hint(json_array_size(v)), 0);
        for (size_t i = 0; i < json_array_size(v); i++) {
            jansson_push(L, json_array_get(v, i));       /* Stack: table, value */
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        luaL_setmetatable(L, JSON_ARRAY_MT);
        break;
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, (lua_Number)json_real_value(v));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
        json_push_null(L);
        break;
    }
}

static int jansson_push_protected(lua_State *L) {
    jansson_push(L, lua_touserdata(L, 1));
    return 1;
}

/* json_decode as it was: 0 with the value pushed, or -1 with errbuf set. */
static int jansson_decode(lua_State *L, const char *buf, size_t len, char *errbuf,
                          size_t errlen) {
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    int rc = 0;

    if (!root) {
        snprintf(errbuf, errlen, "invalid JSON at line %d, column %d (byte %d): %s",
                 jerr.line, jerr.column, jerr.position, jerr.text);
        return -1;
    }
    lua_pushcfunction(L, jansson_push_protected);
    lua_pushlightuserdata(L, root);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        snprintf(errbuf, errlen, "cannot decode JSON: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        rc = -1;
    }
    json_decref(root);
    return rc;
}

#endif
