/* httpc.h - luka.http.request: an HTTP call from a handler that waits
 * without blocking the loop.  libcurl does the HTTP (keep-alive, TLS,
 * redirects) on one multi handle per loop, driven by the loop's sockets
 * and a timer; the handler's task parks until the answer (lua/task.h). */
#ifndef LUKA_HTTPC_H
#define LUKA_HTTPC_H

#include <lua.h>
#include <uv.h>

/* Fill the table at the top of the stack with http = { request }. */
void httpc_inject_api(lua_State *L);

/* Close loop's multi handle, its connections and its handles, before the
 * loop closes (run it after, for their close callbacks).  Call after the
 * loop's last task has ended: a request still pending is cut off, and its
 * task hears nothing (its own timeout or abandon then frees it). */
void httpc_close_loop(uv_loop_t *loop);

/* httpc_close_loop for every loop, and libcurl's global cleanup: at exit. */
void httpc_shutdown(void);

#endif
