/* lapi.c - the luka.host module.  Each area of the API fills its part of
 * the module table (publish_inject_api, timer_inject_api, httpc_inject_api,
 * redisc_inject_api, pgc_inject_api, sqlitec_inject_api, applog_inject_api, lmetrics_inject_api,
 * outbox_inject_api, json_inject_api),
 * as OpenResty's modules do; what a state is bound to is kept in its
 * registry. */
#include "api/lapi.h"

#include <stdint.h>
#include <time.h>

#include <lauxlib.h>

#include "base/json.h"
#include "api/applog.h"
#include "api/httpc.h"
#include "api/lmetrics.h"
#include "api/outbox.h"
#include "api/pgc.h"
#include "api/publish.h"
#include "api/redisc.h"
#include "api/sqlitec.h"
#include "flow/pipeline.h"
#include "lua/script.h"
#include "lua/state.h"
#include "api/timer.h"

void lapi_start(lua_State *L) {
    const api_env_t *env = api_env(L);
    outbox_start(L);
    timer_start_all(L, env->loop);
    publish_deferred(L);
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

/* luka.seek(endpoint, topic, partition, offset) -> true, or nil and why:
 * the endpoint reads that partition from offset on (back or forward). */
static int l_seek(lua_State *L) {
    const char *name = luaL_checkstring(L, 1), *topic = luaL_checkstring(L, 2);
    lua_Integer partition = luaL_checkinteger(L, 3), offset = luaL_checkinteger(L, 4);
    char why[512];
    flow_t *f;
    luaL_argcheck(L, partition >= 0 && partition <= INT32_MAX, 3,
                  "luka.seek: the partition is a number from 0");
    luaL_argcheck(L, offset >= 0, 4, "luka.seek: the offset is a number from 0");
    if (!(f = pipeline_find(name))) {
        lua_pushnil(L);
        lua_pushfstring(L, "luka.seek: no endpoint '%s' runs in this process", name);
        return 2;
    }
    if (!f->source->seek) {
        lua_pushnil(L);
        lua_pushfstring(L, "luka.seek: endpoint '%s' has no partitions to seek here (the test "
                           "kit delivers messages itself)", name);
        return 2;
    }
    if (f->source->seek(f, topic, (int32_t)partition, (int64_t)offset, why, sizeof(why))) {
        lua_pushnil(L);
        lua_pushfstring(L, "luka.seek: %s", why);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

int lapi_open(lua_State *L) {
    lua_newtable(L);
    publish_inject_api(L);
    timer_inject_api(L);
    httpc_inject_api(L);
    redisc_inject_api(L);
    pgc_inject_api(L);
    sqlitec_inject_api(L);
    applog_inject_api(L);
    lmetrics_inject_api(L);
    outbox_inject_api(L);
    lua_pushcfunction(L, l_now);
    lua_setfield(L, -2, "now");
    lua_pushcfunction(L, l_fatal);
    lua_setfield(L, -2, "fatal");
    lua_pushcfunction(L, l_seek);
    lua_setfield(L, -2, "seek");
    json_push_null(L);
    lua_setfield(L, -2, "null");
    lua_newtable(L);
    json_inject_api(L);
    lua_setfield(L, -2, "json");
    state_push_luka_state(L);
    lua_setfield(L, -2, "state");
    return 1;
}
