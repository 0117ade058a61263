/* reload.h - hot reload: load the app again into a fresh Lua state beside
 * the running one, and swap it in between two messages, keeping every
 * consumer and producer whose definition did not change. */
#ifndef LUKA_RELOAD_H
#define LUKA_RELOAD_H

#include "runtime/host.h"

/* Watch the app's files (--watch): a change reloads after a short
 * debounce. */
void reload_watch(host_t *h);

/* Ask for a reload (a file changed, SIGHUP); it runs from the loop soon. */
void reload_request(host_t *h, const char *why);

/* Stop watching and forget pending requests. */
void reload_stop(host_t *h);

#endif
