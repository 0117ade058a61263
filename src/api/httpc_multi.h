/* httpc_multi.h - libcurl's multi-socket interface driven by a libuv loop,
 * for httpc.c.  One multi handle per loop, so keep-alive connections are
 * shared by all its transfers; curl names the sockets to watch and when
 * to call it anyway, and a transfer it reports done goes back to its
 * owner through a callback, from the loop. */
#ifndef LUKA_HTTPC_MULTI_H
#define LUKA_HTTPC_MULTI_H

#include <stddef.h>

#include <curl/curl.h>
#include <uv.h>

typedef struct httpc_multi httpc_multi_t;
typedef struct httpc_xfer httpc_xfer_t;

/* x's transfer ended with rc.  x is still added: done removes it (with
 * httpc_multi_remove) once it has read what it needs from the handle. */
typedef void (*httpc_done_fn)(httpc_xfer_t *x, CURLcode rc);

/* One transfer, held by its owner (httpc.c's request embeds one). */
struct httpc_xfer {
    CURL *easy;
    httpc_done_fn done;
    httpc_multi_t *m; /* while added */
    httpc_xfer_t *prev, *next;
};

/* Run x->easy on loop's multi handle, made on first use; the easy handle's
 * CURLOPT_PRIVATE is taken for x.  0, or -1 with err filled. */
int httpc_multi_add(uv_loop_t *loop, httpc_xfer_t *x, char *err, size_t errlen);

/* Take x out of its multi handle, if it is in one; done is not called. */
void httpc_multi_remove(httpc_xfer_t *x);

/* Close loop's multi handle: its transfers are taken out without done
 * (their owners still free them), its connections and loop handles closed
 * (run the loop after, for the close callbacks). */
void httpc_multi_close_loop(uv_loop_t *loop);

/* Close every multi handle, then libcurl's global state: at exit. */
void httpc_multi_shutdown(void);

#endif
