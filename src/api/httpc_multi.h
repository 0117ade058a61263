/* httpc_multi.h - libcurl's multi-socket interface driven by a libuv loop,
 * for httpc.c.  One multi handle per loop, so keep-alive connections are
 * shared by all its transfers; curl names the sockets to watch and when
 * to call it anyway, and a transfer it reports done goes back to its
 * owner through a callback, from the loop.  Transfers that end are kept
 * for the next request, easy handle and all. */
#ifndef LUKA_HTTPC_MULTI_H
#define LUKA_HTTPC_MULTI_H

#include <stddef.h>

#include <curl/curl.h>
#include <uv.h>

typedef struct httpc_multi httpc_multi_t;
typedef struct httpc_xfer httpc_xfer_t;

/* x's transfer ended with rc.  x is still added: done releases it (with
 * httpc_multi_release) once it has read what it needs from the handle. */
typedef void (*httpc_done_fn)(httpc_xfer_t *x, CURLcode rc);

/* Free x and its easy handle, when no pool keeps it. */
typedef void (*httpc_free_fn)(httpc_xfer_t *x);

/* One transfer, held by its owner (httpc.c's request embeds one). */
struct httpc_xfer {
    CURL *easy;
    httpc_done_fn done;
    httpc_free_fn free_xfer;
    httpc_multi_t *m;    /* while added */
    httpc_multi_t *home; /* the multi it runs on, whose pool keeps it */
    httpc_xfer_t *prev, *next;
};

/* A transfer of loop's multi handle that ended, to run again: its easy
 * handle keeps the options it had.  NULL when there is none; the caller
 * then makes one. */
httpc_xfer_t *httpc_multi_reuse(uv_loop_t *loop);

/* Run x->easy on loop's multi handle, made on first use; the easy handle's
 * CURLOPT_PRIVATE and socket callbacks are taken for x.  0, or -1 with err
 * filled. */
int httpc_multi_add(uv_loop_t *loop, httpc_xfer_t *x, char *err, size_t errlen);

/* x is over (done, cancelled, or never added): take it out of its multi
 * handle, without done, and keep it for httpc_multi_reuse, or free it. */
void httpc_multi_release(httpc_xfer_t *x);

/* Close loop's multi handle: its transfers are taken out without done
 * (their owners still release them), its kept transfers freed, its
 * connections and loop handles closed (run the loop after, for the close
 * callbacks). */
void httpc_multi_close_loop(uv_loop_t *loop);

/* Close every multi handle, then libcurl's global state: at exit. */
void httpc_multi_shutdown(void);

#endif
