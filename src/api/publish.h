/* publish.h - luka.publish: from a Lua call to a queued Kafka message,
 * choosing its key, encoding its payload and stamping its id. */
#ifndef LUKA_PUBLISH_H
#define LUKA_PUBLISH_H

#include <lua.h>

/* Fill the table at the top of the stack with publish. */
void publish_inject_api(lua_State *L);

/* Send the publishes the app script made while it loaded. */
void publish_deferred(lua_State *L);

#endif
