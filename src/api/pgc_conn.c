/* pgc_conn.c - a libpq connection served by a libuv poll handle: libpq's
 * asynchronous API (PQconnectStartParams/PQconnectPoll, PQsendQueryParams,
 * PQconsumeInput/PQisBusy/PQgetResult, PQflush in non-blocking mode) with
 * the socket watched by the loop, so that nothing waits on the loop
 * thread.
 *
 * libpq may change its socket while connecting (it tries the next address
 * of a host, or again without SSL): the poll handle follows PQsocket at
 * each step.  A connection closed while a statement runs asks the server
 * to cancel it first (the server does not notice a closed socket while it
 * computes); PQcancel blocks, so it runs on libuv's thread pool.  The
 * server's notices and warnings go to luka's log, not to libpq's stderr. */
#include "api/pgc_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

typedef enum { PC_CONNECTING, PC_IDLE, PC_BUSY, PC_CLOSED } pc_state_t;

typedef struct poller {
    uv_poll_t h;
    pgc_conn_t *pc; /* NULL once pc let go of it */
} poller_t;

struct pgc_conn {
    PGconn *pg;
    uv_loop_t *loop;
    poller_t *poll;
    int fd;
    int events; /* being watched */
    int ref;
    pc_state_t state;
    PGresult *first_err, *last;
    pgc_conn_fn fn;
    void *data;
};

typedef struct cancel_work {
    uv_work_t w;
    PGcancel *cancel;
} cancel_work_t;

static void on_poll(uv_poll_t *h, int status, int events);

static void poller_closed(uv_handle_t *h) { free(h->data); }

static void poller_drop(pgc_conn_t *pc) {
    if (!pc->poll) return;
    pc->poll->pc = NULL;
    uv_close((uv_handle_t *)&pc->poll->h, poller_closed);
    pc->poll = NULL;
    pc->events = 0;
}

/* Watch PQsocket for events (UV_READABLE, UV_WRITABLE); a new socket gets a
 * new handle.  Returns 0, or -1 when the socket cannot be watched. */
static int watch(pgc_conn_t *pc, int events) {
    int fd = PQsocket(pc->pg);
    if (fd < 0) return -1;
    if (pc->poll && fd != pc->fd) poller_drop(pc);
    if (!pc->poll) {
        poller_t *p = calloc(1, sizeof(*p));
        if (!p) return -1;
        if (uv_poll_init(pc->loop, &p->h, fd) != 0) {
            free(p);
            return -1;
        }
        p->h.data = p;
        p->pc = pc;
        pc->poll = p;
        pc->fd = fd;
        pc->events = 0;
        if (!pc->ref) uv_unref((uv_handle_t *)&p->h);
    }
    if (events != pc->events) {
        pc->events = events;
        uv_poll_start(&pc->poll->h, events, on_poll);
    }
    return 0;
}

static void clear_results(pgc_conn_t *pc) {
    if (pc->first_err) PQclear(pc->first_err);
    if (pc->last) PQclear(pc->last);
    pc->first_err = pc->last = NULL;
}

/* libpq's message for pc, on one line. */
static const char *pq_error(pgc_conn_t *pc, char *buf, size_t len) {
    const char *m = PQerrorMessage(pc->pg);
    size_t n = 0;
    /* Its lines ("...failed: Connection refused\n\tIs the server
     * running...") joined by one space. */
    for (; *m && n + 1 < len; m++) {
        if (*m == '\n' || *m == '\t' || *m == '\r') {
            if (n > 0 && buf[n - 1] != ' ') buf[n++] = ' ';
            continue;
        }
        buf[n++] = *m;
    }
    while (n > 0 && buf[n - 1] == ' ') n--;
    buf[n] = '\0';
    if (!buf[0]) snprintf(buf, len, "the connection was closed");
    return buf;
}

/* pc broke: stop watching it and tell the owner, who closes it. */
static void broke(pgc_conn_t *pc, const char *why) {
    clear_results(pc);
    poller_drop(pc);
    pc->state = PC_CLOSED;
    pc->fn(pc, NULL, why, pc->data);
}

static void step_connect(pgc_conn_t *pc) {
    char err[512];
    switch (PQconnectPoll(pc->pg)) {
    case PGRES_POLLING_READING:
        if (watch(pc, UV_READABLE) != 0) broke(pc, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_WRITING:
        if (watch(pc, UV_WRITABLE) != 0) broke(pc, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(pc->pg, 1) != 0) {
            broke(pc, pq_error(pc, err, sizeof(err)));
            return;
        }
        pc->state = PC_IDLE;
        if (watch(pc, UV_READABLE) != 0) {
            broke(pc, "cannot watch the connection's socket");
            return;
        }
        pc->fn(pc, NULL, NULL, pc->data);
        return;
    default:
        broke(pc, pq_error(pc, err, sizeof(err)));
    }
}

/* Whether r is an error that ends the session (FATAL, PANIC: the server
 * shuts down, or the backend was terminated); its message then. */
static int fatal(const PGresult *r, char *buf, size_t len) {
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!sev || (strcmp(sev, "FATAL") != 0 && strcmp(sev, "PANIC") != 0)) return 0;
    snprintf(buf, len, "%s %s: %s", sev, state ? state : "", msg ? msg : "");
    return 1;
}

/* Read what came and collect results until the statement is done. */
static void step_busy(pgc_conn_t *pc, int events) {
    char err[512];
    PGresult *r;
    int flush = 0;

    if (events & UV_WRITABLE) {
        if ((flush = PQflush(pc->pg)) < 0) {
            broke(pc, pq_error(pc, err, sizeof(err)));
            return;
        }
    }
    if (events & UV_READABLE) {
        if (!PQconsumeInput(pc->pg)) {
            broke(pc, pq_error(pc, err, sizeof(err)));
            return;
        }
        /* libpq may want to send more once it has read (PQflush's
         * contract in non-blocking mode). */
        if ((flush = PQflush(pc->pg)) < 0) {
            broke(pc, pq_error(pc, err, sizeof(err)));
            return;
        }
    }
    while (!PQisBusy(pc->pg)) {
        if (!(r = PQgetResult(pc->pg))) {
            PGresult *res;
            if (PQstatus(pc->pg) == CONNECTION_BAD || (!pc->first_err && !pc->last)) {
                broke(pc, pq_error(pc, err, sizeof(err)));
                return;
            }
            if (pc->first_err && fatal(pc->first_err, err, sizeof(err))) {
                broke(pc, err); /* the server ends the session (a restart) */
                return;
            }
            res = pc->first_err ? pc->first_err : pc->last;
            if (pc->first_err && pc->last) PQclear(pc->last);
            pc->first_err = pc->last = NULL;
            pc->state = PC_IDLE;
            if (watch(pc, UV_READABLE) != 0) {
                PQclear(res);
                broke(pc, "cannot watch the connection's socket");
                return;
            }
            pc->fn(pc, res, NULL, pc->data);
            return;
        }
        switch (PQresultStatus(r)) {
        case PGRES_COPY_IN:
        case PGRES_COPY_OUT:
        case PGRES_COPY_BOTH:
            /* libpq would wait for the copy's data for ever. */
            PQclear(r);
            broke(pc, "COPY is not supported: a call runs one statement and takes its rows");
            return;
        case PGRES_FATAL_ERROR:
        case PGRES_BAD_RESPONSE:
        case PGRES_NONFATAL_ERROR:
            if (!pc->first_err) {
                pc->first_err = r;
                break;
            }
            /* fall through */
        default:
            if (pc->last) PQclear(pc->last);
            pc->last = r;
        }
        if (PQstatus(pc->pg) == CONNECTION_BAD) break;
    }
    if (PQstatus(pc->pg) == CONNECTION_BAD) {
        broke(pc, pq_error(pc, err, sizeof(err)));
        return;
    }
    if (watch(pc, UV_READABLE | (flush == 1 ? UV_WRITABLE : 0)) != 0)
        broke(pc, "cannot watch the connection's socket");
}

/* An idle connection got something: a notice, or the server's goodbye
 * (a restart ends every session with a message, then closes). */
static void step_idle(pgc_conn_t *pc) {
    char err[512];
    PGnotify *n;
    PGresult *r;

    if (!PQconsumeInput(pc->pg) || PQstatus(pc->pg) == CONNECTION_BAD) {
        broke(pc, pq_error(pc, err, sizeof(err)));
        return;
    }
    while ((n = PQnotifies(pc->pg))) PQfreemem(n);
    /* An error sent outside any statement (the server's shutdown) comes
     * as a result; the connection is going then. */
    while (!PQisBusy(pc->pg) && (r = PQgetResult(pc->pg))) PQclear(r);
    if (PQstatus(pc->pg) == CONNECTION_BAD) broke(pc, pq_error(pc, err, sizeof(err)));
}

static void on_poll(uv_poll_t *h, int status, int events) {
    poller_t *p = h->data;
    pgc_conn_t *pc = p->pc;

    if (!pc) return;
    /* On an error, let libpq try the socket and find the reason. */
    if (status < 0) events = pc->events ? pc->events : UV_READABLE;
    switch (pc->state) {
    case PC_CONNECTING:
        step_connect(pc);
        break;
    case PC_BUSY:
        step_busy(pc, events);
        break;
    case PC_IDLE:
        step_idle(pc);
        break;
    default:
        break;
    }
}

/* A notice or warning of the server (RAISE NOTICE, DROP ... IF EXISTS). */
static void on_notice(void *arg, const PGresult *r) {
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    int level = sev && strcmp(sev, "WARNING") == 0 ? LOG_WARN : LOG_DEBUG;
    (void)arg;
    if (log_enabled(level))
        log_write(level, "pg", NULL, "server %s: %s", sev ? sev : "NOTICE", msg ? msg : "");
}

pgc_conn_t *pgc_conn_open(uv_loop_t *loop, const char *const *keys, const char *const *vals,
                          pgc_conn_fn fn, void *data, char *errbuf, size_t errlen) {
    pgc_conn_t *pc = calloc(1, sizeof(*pc));
    if (!pc) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    pc->loop = loop;
    pc->fn = fn;
    pc->data = data;
    pc->ref = 1;
    pc->state = PC_CONNECTING;
    pc->pg = PQconnectStartParams(keys, vals, 0);
    if (!pc->pg || PQstatus(pc->pg) == CONNECTION_BAD) {
        if (pc->pg) pq_error(pc, errbuf, errlen);
        else snprintf(errbuf, errlen, "out of memory");
        if (pc->pg) PQfinish(pc->pg);
        free(pc);
        return NULL;
    }
    PQsetNoticeReceiver(pc->pg, on_notice, NULL);
    /* libpq starts with a connect in progress: wait until it can write. */
    if (watch(pc, UV_WRITABLE) != 0) {
        snprintf(errbuf, errlen, "cannot watch the connection's socket");
        PQfinish(pc->pg);
        free(pc);
        return NULL;
    }
    return pc;
}

int pgc_conn_send(pgc_conn_t *pc, const char *sql, int n, const char *const *params, char *errbuf,
                  size_t errlen) {
    int flush;
    if (pc->state != PC_IDLE) {
        snprintf(errbuf, errlen, "the connection is not ready");
        return -1;
    }
    if (!PQsendQueryParams(pc->pg, sql, n, NULL, params, NULL, NULL, 0) ||
        (flush = PQflush(pc->pg)) < 0) {
        pq_error(pc, errbuf, errlen);
        poller_drop(pc);
        pc->state = PC_CLOSED;
        return -1;
    }
    pc->state = PC_BUSY;
    if (watch(pc, UV_READABLE | (flush == 1 ? UV_WRITABLE : 0)) != 0) {
        snprintf(errbuf, errlen, "cannot watch the connection's socket");
        poller_drop(pc);
        pc->state = PC_CLOSED;
        return -1;
    }
    return 0;
}

void pgc_conn_ref(pgc_conn_t *pc, int ref) {
    pc->ref = ref;
    if (!pc->poll) return;
    if (ref) uv_ref((uv_handle_t *)&pc->poll->h);
    else uv_unref((uv_handle_t *)&pc->poll->h);
}

static void cancel_run(uv_work_t *w) {
    cancel_work_t *cw = w->data;
    char err[256];
    PQcancel(cw->cancel, err, sizeof(err)); /* best effort: the session ends anyway */
}

static void cancel_after(uv_work_t *w, int status) {
    cancel_work_t *cw = w->data;
    (void)status;
    PQfreeCancel(cw->cancel);
    free(cw);
}

void pgc_conn_close(pgc_conn_t *pc) {
    if (pc->state == PC_BUSY) {
        cancel_work_t *cw = calloc(1, sizeof(*cw));
        if (cw && (cw->cancel = PQgetCancel(pc->pg))) {
            cw->w.data = cw;
            if (uv_queue_work(pc->loop, &cw->w, cancel_run, cancel_after) != 0) {
                PQfreeCancel(cw->cancel);
                free(cw);
            }
        } else {
            free(cw);
        }
    }
    clear_results(pc);
    poller_drop(pc);
    /* Non-blocking: the goodbye is sent if the socket takes it. */
    PQfinish(pc->pg);
    free(pc);
}
