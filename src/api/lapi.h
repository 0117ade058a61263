/* lapi.h - the luka.host module: the C half of what app scripts call
 * (luka.publish, luka.timer, luka.http, luka.redis, luka.log, luka.metrics,
 * luka.fatal, luka.now, luka.null, luka.json, luka.state), each area filling
 * its part as in
 * OpenResty.  lua/luka/init.lua joins it with the declarations of luka.dsl
 * into the `luka` module. */
#ifndef LUKA_LAPI_H
#define LUKA_LAPI_H

#include <lua.h>

#include "api/env.h"

/* The opener of luka.host, for package.preload (app_load takes it). */
int lapi_open(lua_State *L);

/* Start the timers and make the publishes that waited for L to be bound
 * (api_bind): those of the script's load. */
void lapi_start(lua_State *L);

#endif
