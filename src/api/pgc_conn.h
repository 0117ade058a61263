/* pgc_conn.h - one libpq connection driven by a libuv loop, for
 * api/pgc.c: connect, run one statement, watch while idle, never block. */
#ifndef LUKA_PGC_CONN_H
#define LUKA_PGC_CONN_H

#include <libpq-fe.h>
#include <uv.h>

typedef struct pgc_conn pgc_conn_t;

/* What a connection tells its owner, once per step:
 * - after pgc_conn_open: res NULL and err NULL when it is ready, or err;
 * - after pgc_conn_send: res (the statement's result, first error result
 *   or last result; the callee takes it and PQclear's it) and err NULL,
 *   or res NULL and err (the connection broke: it is closed now);
 * - while idle: res NULL and err when the server closed it.
 * After an err the connection is no use: close it. */
typedef void (*pgc_conn_fn)(pgc_conn_t *pc, PGresult *res, const char *err, void *data);

/* Start connecting with libpq's keys and values (NULL-terminated) on
 * loop.  Returns the connection, or NULL with errbuf filled. */
pgc_conn_t *pgc_conn_open(uv_loop_t *loop, const char *const *keys, const char *const *vals,
                          pgc_conn_fn fn, void *data, char *errbuf, size_t errlen);

/* Send sql with n text parameters (NULL: SQL NULL).  Returns 0, or -1
 * with errbuf filled (the connection is broken then).  The answer comes
 * through fn. */
int pgc_conn_send(pgc_conn_t *pc, const char *sql, int n, const char *const *params,
                  char *errbuf, size_t errlen);

/* Keep the loop alive for pc (a call waits on it) or not (idle). */
void pgc_conn_ref(pgc_conn_t *pc, int ref);

/* Close pc: fn is never called again, and it is freed once the loop lets
 * go of its handle.  Does not block: the server rolls back what pc left
 * open and ends a statement still running when it sees the socket close. */
void pgc_conn_close(pgc_conn_t *pc);

#endif
