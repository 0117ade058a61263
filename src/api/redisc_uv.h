/* redisc_uv.h - hiredis's asynchronous contexts on a libuv loop, for
 * api/redisc.c. */
#ifndef LUKA_REDISC_UV_H
#define LUKA_REDISC_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Called once, when hiredis frees the context: after every pending reply
 * callback has run, so the owner may free what the callbacks used. */
typedef void (*redisc_uv_gone_fn)(void *data);

/* Drive ac from loop.  Returns 0, or -1 (ac is then the caller's to free,
 * and gone is never called). */
int redisc_uv_attach(redisAsyncContext *ac, uv_loop_t *loop, redisc_uv_gone_fn gone, void *data);

/* Whether ac keeps its loop running: a connection waiting for a reply
 * should, an idle one should not, or the loop could never end. */
void redisc_uv_ref(redisAsyncContext *ac, int ref);

#endif
