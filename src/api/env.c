/* env.c - a state's binding, kept in its registry. */
#include "api/env.h"

static const char ENV_KEY = 'e';

const api_env_t *api_env(lua_State *L) {
    const api_env_t *env;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ENV_KEY);
    env = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return env;
}

void api_bind(lua_State *L, const api_env_t *env) {
    lua_pushlightuserdata(L, (void *)env);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ENV_KEY);
}
