/* reload.h - hot reload: load the app again into a fresh Lua state beside
 * the running one, and swap it in between two messages, keeping every
 * consumer and producer whose definition did not change.  Added to a run
 * as reload_host_ops: SIGHUP reloads, and --watch reloads on a change of
 * the app's files. */
#ifndef LUKA_RELOAD_H
#define LUKA_RELOAD_H

#include "runtime/host.h"

extern const host_ops_t reload_host_ops;

/* Ask for a reload (a file changed, SIGHUP); it runs from the loop soon. */
void reload_request(host_t *h, const char *why);

#endif
