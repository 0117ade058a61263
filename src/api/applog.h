/* applog.h - luka.log and print for the app's code: its own log lines,
 * through luka's logger, with the context of the message being handled
 * (endpoint, group, topic, partition, offset, key, id, trace id) or of
 * the app alone outside handlers.  lapi.c fills luka.host with it. */
#ifndef LUKA_APPLOG_H
#define LUKA_APPLOG_H

#include <lua.h>

/* Set luka.log (debug, info, warn, error) in the table on top of the
 * stack, and replace the global print with one that logs in JSON mode. */
void applog_inject_api(lua_State *L);

#endif
