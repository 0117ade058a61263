/* signals.h - SIGINT and SIGTERM for `luka run`, watched on a thread and a
 * libuv loop of their own, so that they are seen while the host's loop is
 * inside a handler call or a blocking flush.  The first asks the host's
 * loop to stop; a second ends the process at once. */
#ifndef LUKA_SIGNALS_H
#define LUKA_SIGNALS_H

#include <stddef.h>

#include <uv.h>

typedef struct signals signals_t;

/* Called on the host's loop, once, after the first SIGINT or SIGTERM. */
typedef void (*signals_stop_cb)(void *data, int signum);

/* Watch SIGINT and SIGTERM on behalf of loop.  Returns NULL with errbuf
 * set when the thread cannot start. */
signals_t *signals_start(uv_loop_t *loop, signals_stop_cb cb, void *data, char *errbuf,
                         size_t errlen);

/* Stop watching: the thread ends, and the handle on the host's loop is
 * closed (its memory goes in the close callback).  Call from that loop's
 * thread. */
void signals_stop(signals_t *s);

#endif
