/* lapi.c - the luka.host module and the Lua state it lives in.  Each area of
 * the API fills its part of the module table (publish_inject_api,
 * timer_inject_api, json_inject_api), as OpenResty's modules do. */
#include "api/lapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <lauxlib.h>

#include "base/json.h"
#include "api/publish.h"
#include "lua/script.h"
#include "api/timer.h"

static const char HOST_KEY = 'h';
static const char DEFERRED_KEY = 'd';
static const char STATE_KEY = 's';

typedef struct mem {
    size_t used;
    size_t limit;
} mem_t;

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    mem_t *m = ud;
    if (nsize == 0) {
        if (ptr) m->used -= osize;
        free(ptr);
        return NULL;
    }
    /* Only user code is limited: the host's own pushes between calls must
     * not fail, and Lua never asks to shrink and fail. */
    if (m->limit && script_active == m && nsize > (ptr ? osize : 0) &&
        m->used + nsize - (ptr ? osize : 0) > m->limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p) m->used += nsize - (ptr ? osize : 0);
    return p;
}

static int panic(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "luka: unprotected Lua error: %s\n", msg ? msg : "?");
    abort();
}

lua_State *lapi_newstate(void) {
    mem_t *m = calloc(1, sizeof(*m));
    lua_State *L = m ? lua_newstate(alloc, m) : NULL;
    if (!L) {
        free(m);
        return NULL;
    }
    lua_atpanic(L, panic);
    return L;
}

void lapi_close(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    lua_close(L);
    free(ud);
}

size_t lapi_memory(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    return ((mem_t *)ud)->used;
}

void lapi_set_memory_limit(lua_State *L, size_t limit) {
    void *ud;
    lua_getallocf(L, &ud);
    ((mem_t *)ud)->limit = limit;
}

void lapi_set_host(lua_State *L, struct host *h) {
    lua_pushlightuserdata(L, h);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
}

struct host *lapi_host(lua_State *L) {
    struct host *h;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
    h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

void lapi_push_deferred_publishes(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DEFERRED_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &DEFERRED_KEY);
    }
}

void lapi_clear_deferred_publishes(lua_State *L) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DEFERRED_KEY);
}

/* luka.fatal(message): raise an error that skips retries. */
static int l_fatal(lua_State *L) {
    luaL_checkany(L, 1);
    if (lua_type(L, 1) == LUA_TSTRING) {
        luaL_where(L, 1);
        lua_pushvalue(L, 1);
        lua_concat(L, 2);
    } else {
        lua_pushvalue(L, 1);
    }
    script_push_fatal(L, -1);
    return lua_error(L);
}

/* luka.now() -> wall-clock seconds since the epoch, with microseconds. */
static int l_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

/* Push luka.state, making it on first use. */
static void push_state(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    }
}

int lapi_set_state(lua_State *L, const char *json, size_t len, char *errbuf, size_t errlen) {
    if (json_decode(L, json, len, errbuf, errlen) != 0) return -1;
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        snprintf(errbuf, errlen, "luka.state must be a table");
        return -1;
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    return 0;
}

char *lapi_get_state(lua_State *L, size_t *len, char *errbuf, size_t errlen) {
    char *json;
    push_state(L);
    json = json_encode(L, -1, len, errbuf, errlen);
    lua_pop(L, 1);
    return json;
}

int lapi_open(lua_State *L) {
    lua_newtable(L);
    publish_inject_api(L);
    timer_inject_api(L);
    lua_pushcfunction(L, l_now);
    lua_setfield(L, -2, "now");
    lua_pushcfunction(L, l_fatal);
    lua_setfield(L, -2, "fatal");
    json_push_null(L);
    lua_setfield(L, -2, "null");
    lua_newtable(L);
    json_inject_api(L);
    lua_setfield(L, -2, "json");
    push_state(L);
    lua_setfield(L, -2, "state");
    return 1;
}
