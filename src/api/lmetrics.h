/* lmetrics.h - luka.metrics: counter(name, help, labels),
 * gauge(name, help, labels) and histogram(name, help, labels, buckets),
 * kept in a registry outside the Lua state (base/appmetrics.h). */
#ifndef LUKA_LMETRICS_H
#define LUKA_LMETRICS_H

#include <lua.h>

#include "base/appmetrics.h"

/* Fill the table at the top of the stack with metrics = { counter, gauge,
 * histogram }, and give the state its registry: the shared one if any,
 * else one of its own that closes with it. */
void lmetrics_inject_api(lua_State *L);

/* States opened from now on declare their metrics in r, which outlives
 * them (the runtime's, so that values survive a reload); NULL: each state
 * keeps its own. */
void lmetrics_share(appmetrics_t *r);

#endif
