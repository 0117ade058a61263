/* testkit_flow.h - the test kit as the source of its endpoints' flows, for
 * testkit.c: messages delivered in batches through each endpoint's own
 * pipeline (its concurrency, ordering and policies), run on the harness's
 * loop until every one has settled, and what happened to each. */
#ifndef LUKA_TESTKIT_FLOW_H
#define LUKA_TESTKIT_FLOW_H

#include <stddef.h>

#include <lua.h>
#include <uv.h>

#include "app/app.h"
#include "cmd/testkit_sink.h"
#include "flow/flow.h"

typedef struct testkit_flows testkit_flows_t;

/* A flow for each of app's endpoints, waiting on loop and publishing to
 * sinks, with its dedup record in memory.  NULL with errbuf when one
 * cannot be opened. */
testkit_flows_t *testkit_flows_open(app_t *app, uv_loop_t *loop, testkit_sinks_t *sinks,
                                    char *errbuf, size_t errlen);

/* Close every flow (what is still in flight is let go), and free k. */
void testkit_flows_close(testkit_flows_t *k);

/* The flow of the endpoint called name; raises naming the endpoints
 * there are when there is none. */
flow_t *testkit_flow(lua_State *L, testkit_flows_t *k, const char *name);

/* harness:deliver(endpoint, payload [, meta]), with the harness checked:
 * pushes the result. */
int testkit_deliver(lua_State *L, testkit_flows_t *k);

/* harness:deliver_all(endpoint, { { payload, meta }, ... }): pushes the
 * results, in the order of the list. */
int testkit_deliver_all(lua_State *L, testkit_flows_t *k);

/* deliver_all, for an endpoint with handle_batch when batch is 1: the
 * results also carry `calls`, the sizes of the handler calls made. */
int testkit_deliver_batch(lua_State *L, testkit_flows_t *k, int batch);

#endif
