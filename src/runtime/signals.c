/* signals.c - SIGINT and SIGTERM on a thread of their own.  The host's loop
 * may be busy for as long as a handler runs, so a uv_signal_t on it would
 * see a signal only after that; here a second loop catches the signal at
 * once, hands the first to the host's loop through an async handle, and
 * exits on the second without waiting for anything. */
#include "runtime/signals.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"

struct signals {
    uv_loop_t loop; /* the signal thread's */
    uv_signal_t sigint, sigterm;
    uv_async_t wake; /* on loop: asks the thread to end */
    uv_thread_t thread;
    int seen;        /* signals received; touched by the signal thread only */
    /* On the host's loop. */
    uv_async_t stop;
    signals_stop_cb cb;
    void *data;
    int signum; /* the first signal, written before stop is sent */
};

/* On the signal thread.  log_write may be called from any thread. */
static void on_signal(uv_signal_t *w, int signum) {
    signals_t *s = w->data;
    if (s->seen++ == 0) {
        log_info("host", "%s: finishing in-flight messages, committing, leaving the groups "
                         "(send it again to exit at once)",
                 strsignal(signum));
        s->signum = signum;
        uv_async_send(&s->stop); /* orders the write of signum before the callback */
        return;
    }
    log_warn("host", "%s: second signal, exiting at once; messages not yet committed will be "
                     "delivered again",
             strsignal(signum));
    _exit(128 + signum);
}

/* On the host's loop. */
static void on_stop(uv_async_t *a) {
    signals_t *s = a->data;
    s->cb(s->data, s->signum);
}

static void on_wake(uv_async_t *a) {
    signals_t *s = a->data;
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->wake, NULL);
}

static void free_signals(uv_handle_t *h) { free(h->data); }

static void run(void *arg) {
    signals_t *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

signals_t *signals_start(uv_loop_t *loop, signals_stop_cb cb, void *data, char *errbuf,
                         size_t errlen) {
    signals_t *s = calloc(1, sizeof(*s));
    int rc;

    s->cb = cb;
    s->data = data;
    uv_loop_init(&s->loop);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_async_init(&s->loop, &s->wake, on_wake);
    s->sigint.data = s->sigterm.data = s->wake.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    /* Ready before any signal can reach on_signal. */
    uv_async_init(loop, &s->stop, on_stop);
    s->stop.data = s;
    /* The handles were made on this thread; from here on only the signal
     * thread touches its loop (thread creation orders the two). */
    if ((rc = uv_thread_create(&s->thread, run, s)) < 0) {
        snprintf(errbuf, errlen, "cannot start the signal thread: %s", uv_strerror(rc));
        on_wake(&s->wake);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        uv_close((uv_handle_t *)&s->stop, free_signals);
        return NULL;
    }
    return s;
}

void signals_stop(signals_t *s) {
    uv_async_send(&s->wake);
    uv_thread_join(&s->thread);
    uv_loop_close(&s->loop);
    uv_close((uv_handle_t *)&s->stop, free_signals);
}
