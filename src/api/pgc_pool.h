/* pgc_pool.h - the connections and calls of a luka.pg client, for
 * api/pgc.c (which holds the Lua side). */
#ifndef LUKA_PGC_POOL_H
#define LUKA_PGC_POOL_H

#include <stdint.h>

#include <lua.h>
#include <uv.h>

#include "api/pgc_conn.h"
#include "lua/task.h"

typedef struct client client_t;
typedef struct req req_t;
typedef struct tx tx_t;

typedef struct conn {
    client_t *c;
    pgc_conn_t *pc;
    struct conn *prev, *next; /* in c->conns */
    int ready;                /* connected */
    req_t *req;               /* the request whose statement it runs */
    tx_t *tx;                 /* the transaction holding it */
} conn_t;

struct client {
    char **keys, **vals; /* libpq's connection parameters, NULL-terminated */
    char where[300];     /* host:port/db, for every message */
    lua_State *L;        /* the state's main thread, which converts results */
    int64_t timeout_ms;  /* of each call; 0: only the handler's own limit */
    int pool;            /* most connections open at once */
    int nconns;
    int closed;          /* close() or collected: calls are refused */
    int refs;            /* the userdata, each connection, each request */
    conn_t *conns;
    req_t *whead, *wtail; /* calls waiting for a connection */
};

typedef enum { Q_QUERY, Q_BEGIN, Q_TX, Q_END } req_kind_t;

struct req {
    client_t *c;
    req_kind_t kind;
    tx_t *tx;      /* Q_BEGIN, Q_TX, Q_END */
    conn_t *conn;  /* while its statement runs */
    task_t *task;  /* NULL once woken or cancelled */
    req_t *wnext;  /* in the waiting line */
    int queued;
    uv_timer_t timer;
    int timing;
    int refs;      /* the task's answer and the timer's close */
    int64_t since; /* when the call started, for the pool's message */
    char *sql;
    int nparams;
    char **params;
    char what[120]; /* the statement's start, for messages */
};

struct tx {
    client_t *c;
    conn_t *conn; /* from BEGIN until COMMIT or ROLLBACK */
    int begun, ended;
    char err[800]; /* the first failed statement's error */
};

/* Let go of a reference to c; the last frees it. */
void pgc_client_unref(client_t *c);

/* A request for a call of kind running sql with n parameters (q->params
 * to fill, NULL for SQL NULL); NULL when out of memory.  It holds c. */
req_t *pgc_req_alloc(client_t *c, req_kind_t kind, const char *sql, int n);

/* Free q (before pgc_run). */
void pgc_req_unref(req_t *q);

/* Start q for the task t of L, on the connection fixed (a transaction's)
 * or on one of the pool, and park t: use as `return pgc_run(...)`.
 * Returns nil, err at once when q cannot start. */
int pgc_run(lua_State *L, task_t *t, req_t *q, conn_t *fixed);

/* Wake q's task with nil and a message. */
void pgc_fail(req_t *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Close conn; a request on it is the caller's to answer. */
void pgc_pool_drop(conn_t *conn);

/* Hand free connections, or room for new ones, to the calls waiting. */
void pgc_pool_pump(client_t *c);

/* Refuse new calls, fail the waiting ones and drop every connection. */
void pgc_client_close(client_t *c);

#endif
