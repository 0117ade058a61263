/* redisc_uv.c - the events of a hiredis asynchronous context served by a
 * libuv poll handle.
 *
 * hiredis 0.14.1 ships an adapter for libuv (hiredis/adapters/libuv.h),
 * but it drops a poll error: a refused connect is reported that way, and
 * the context then waits for ever instead of failing.  This one hands an
 * error to hiredis as the events it was waiting for, as the adapter of
 * hiredis 1.0 does, so that hiredis tries the socket and fails with the
 * reason.  It also tells its owner when hiredis lets go of the context. */
#include "api/redisc_uv.h"

#include <stdlib.h>

typedef struct ev {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis has freed it */
    int events;            /* UV_READABLE and UV_WRITABLE, as hiredis asked */
    redisc_uv_gone_fn gone;
    void *data;
} ev_t;

static void on_poll(uv_poll_t *h, int status, int events) {
    ev_t *e = h->data;

    if (status < 0) events = e->events;
    /* Reading can end the context (a reply callback frees it, or the
     * server has gone): then e->ac is NULL and writing is skipped. */
    if (e->ac && (events & UV_READABLE)) redisAsyncHandleRead(e->ac);
    if (e->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
}

static void update(ev_t *e, int add, int del) {
    e->events = (e->events | add) & ~del;
    if (e->events) uv_poll_start(&e->poll, e->events, on_poll);
    else uv_poll_stop(&e->poll);
}

static void add_read(void *p) { update(p, UV_READABLE, 0); }
static void del_read(void *p) { update(p, 0, UV_READABLE); }
static void add_write(void *p) { update(p, UV_WRITABLE, 0); }
static void del_write(void *p) { update(p, 0, UV_WRITABLE); }

static void free_ev(uv_handle_t *h) { free(h->data); }

/* hiredis frees the context: every reply callback has run by now. */
static void cleanup(void *p) {
    ev_t *e = p;
    e->ac = NULL;
    if (e->gone) e->gone(e->data);
    uv_close((uv_handle_t *)&e->poll, free_ev);
}

int redisc_uv_attach(redisAsyncContext *ac, uv_loop_t *loop, redisc_uv_gone_fn gone, void *data) {
    ev_t *e;

    if (ac->ev.data || !(e = calloc(1, sizeof(*e)))) return -1;
    if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return -1;
    }
    e->poll.data = e;
    e->ac = ac;
    e->gone = gone;
    e->data = data;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = e;
    return 0;
}

void redisc_uv_ref(redisAsyncContext *ac, int ref) {
    ev_t *e = ac->ev.data;
    if (ref) uv_ref((uv_handle_t *)&e->poll);
    else uv_unref((uv_handle_t *)&e->poll);
}
