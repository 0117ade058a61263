/* pgc_pool.c - the connections and calls of a luka.pg client: at most
 * `pool` connections (api/pgc_conn.c each), a line of calls waiting for
 * one, and each call's statement from its task's park to its wake
 * (lua/task.h), for api/pgc.c.
 *
 * A call takes an idle connection, or opens one while there are fewer than
 * pool, or else waits in line (first come, first served) until one is
 * given back, within its timeout.  A transaction holds one connection from
 * BEGIN to COMMIT or ROLLBACK.  A call that times out or is cancelled
 * cannot take its statement back, so its connection is closed (the server
 * cancels the statement and rolls back); so is one the server dropped, and
 * the next call opens another.
 *
 * Results are converted on the state's main thread under a protected call
 * and the app's memory limit, as luka.redis does, then moved to the task.
 *
 * Ownership: the client lives until its userdata is collected and its last
 * connection, request and transaction are gone.  A request lives until its
 * task is answered or cancelled and its timer has closed. */
#include "api/pgc_pool.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "api/pgc_values.h"
#include "lua/script.h"

void pgc_client_unref(client_t *c) {
    if (--c->refs > 0) return;
    for (int i = 0; c->keys && c->keys[i]; i++) {
        free(c->keys[i]);
        free(c->vals[i]);
    }
    free(c->keys);
    free(c->vals);
    free(c);
}

/* ---- requests ---------------------------------------------------------- */

void pgc_req_unref(req_t *q) {
    if (--q->refs > 0) return;
    pgc_client_unref(q->c);
    free(q->sql);
    for (int i = 0; i < q->nparams; i++) free(q->params[i]);
    free(q->params);
    free(q);
}

static void on_timer_closed(uv_handle_t *h) { pgc_req_unref(h->data); }

static void unqueue(req_t *q) {
    client_t *c = q->c;
    req_t **p, *prev = NULL;
    if (!q->queued) return;
    for (p = &c->whead; *p; prev = *p, p = &(*p)->wnext)
        if (*p == q) {
            *p = q->wnext;
            if (c->wtail == q) c->wtail = prev;
            break;
        }
    q->queued = 0;
    q->wnext = NULL;
}

/* The request is over for its task: stop its timer and hand the nres
 * values pushed on the task's thread to it. */
static void finish(req_t *q, int nres) {
    task_t *t = q->task;
    q->task = NULL;
    unqueue(q);
    if (q->timing) uv_close((uv_handle_t *)&q->timer, on_timer_closed);
    q->timing = 0;
    if (t) task_wake(t, nres);
    pgc_req_unref(q); /* the task's: q is gone now unless its timer still closes */
}

static void vfail(req_t *q, const char *fmt, va_list ap) {
    lua_State *co = task_thread(q->task);
    char msg[1200];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (q->tx && !q->tx->err[0] && q->kind != Q_END) snprintf(q->tx->err, sizeof(q->tx->err), "%.790s", msg);
    lua_pushnil(co);
    lua_pushstring(co, msg);
    finish(q, 2);
}

/* Wake q's task with nil and a message. */
void pgc_fail(req_t *q, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(q, fmt, ap);
    va_end(ap);
}

/* ---- connections ------------------------------------------------------- */

static void on_conn(pgc_conn_t *pc, PGresult *res, const char *err, void *data);

/* Close conn: the request on it (if any) is the caller's to answer. */
void pgc_pool_drop(conn_t *conn) {
    client_t *c = conn->c;
    if (conn->prev) conn->prev->next = conn->next;
    else c->conns = conn->next;
    if (conn->next) conn->next->prev = conn->prev;
    c->nconns--;
    if (conn->req) conn->req->conn = NULL;
    if (conn->tx) conn->tx->conn = NULL;
    pgc_conn_close(conn->pc);
    free(conn);
    pgc_client_unref(c);
}

static conn_t *conn_open(client_t *c, uv_loop_t *loop, char *errbuf, size_t errlen) {
    conn_t *conn = calloc(1, sizeof(*conn));
    char why[600];
    if (!conn) {
        snprintf(errbuf, errlen, "pg %s: out of memory", c->where);
        return NULL;
    }
    conn->c = c;
    conn->pc = pgc_conn_open(loop, (const char *const *)c->keys, (const char *const *)c->vals, on_conn,
                             conn, why, sizeof(why));
    if (!conn->pc) {
        snprintf(errbuf, errlen, "pg %s: cannot connect: %.400s", c->where, why);
        free(conn);
        return NULL;
    }
    c->refs++;
    c->nconns++;
    if ((conn->next = c->conns)) conn->next->prev = conn;
    c->conns = conn;
    return conn;
}

/* Start q's statement on conn, which is ready and free.  Returns 0, or -1
 * with errbuf filled: conn is broken then (the caller drops it). */
static int conn_send(conn_t *conn, req_t *q, char *errbuf, size_t errlen) {
    char why[600];
    if (pgc_conn_send(conn->pc, q->sql, q->nparams, (const char *const *)q->params, why,
                      sizeof(why)) != 0) {
        snprintf(errbuf, errlen, "pg %s: %s: %.300s; the next call connects again", conn->c->where,
                 q->what, why);
        return -1;
    }
    conn->req = q;
    q->conn = conn;
    pgc_conn_ref(conn->pc, 1);
    return 0;
}

/* Give q a connection: an idle one, or a new one while the pool has room
 * (its statement goes once it is up).  Returns 1 when it got one, 0 when
 * none is free, -1 with errbuf filled.  Wakes nobody. */
static int assign(req_t *q, uv_loop_t *loop, char *errbuf, size_t errlen) {
    client_t *c = q->c;
    conn_t *conn, *next;

    for (conn = c->conns; conn; conn = next) {
        next = conn->next;
        if (!conn->ready || conn->req || conn->tx) continue;
        if (conn_send(conn, q, errbuf, errlen) == 0) return 1;
        pgc_pool_drop(conn); /* broken while idle: try the next */
    }
    if (c->nconns >= c->pool) return 0;
    if (!(conn = conn_open(c, loop, errbuf, errlen))) return -1;
    conn->req = q;
    q->conn = conn;
    return 1;
}

/* Hand free connections (or room for new ones) to the calls waiting, in
 * order. */
void pgc_pool_pump(client_t *c) {
    char err[800];
    while (c->whead && !c->closed) {
        req_t *q = c->whead;
        int rc = assign(q, task_loop(q->task), err, sizeof(err));
        if (rc == 0) return;
        unqueue(q);
        if (rc < 0) pgc_fail(q, "%s", err);
    }
}

/* conn is free again: the next waiting call gets it, or it idles. */
static void conn_release(conn_t *conn) {
    client_t *c = conn->c;
    if (c->closed) {
        pgc_pool_drop(conn);
        return;
    }
    pgc_conn_ref(conn->pc, 0);
    pgc_pool_pump(c);
}

/* Hand q's result r to its task. */
static void answer(req_t *q, const PGresult *r) {
    lua_State *L = q->c->L, *co = task_thread(q->task);
    int top = lua_gettop(L), rc;
    void *saved = script_active;
    char err[800];

    switch (PQresultStatus(r)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
        break;
    default:
        pgc_result_error(r, err, sizeof(err));
        pgc_fail(q, "pg %s: %s", q->c->where, err);
        return;
    }
    if (q->kind != Q_QUERY && q->kind != Q_TX) {
        lua_pushboolean(co, 1);
        finish(q, 1);
        return;
    }
    lua_pushcfunction(L, pgc_push_rows);
    lua_pushlightuserdata(L, (void *)r);
    lua_getallocf(L, &script_active);
    rc = lua_pcall(L, 1, 1, 0);
    script_active = saved;
    if (rc != LUA_OK || !lua_checkstack(co, 1)) {
        lua_settop(L, top);
        pgc_fail(q, "pg %s: %s: the result does not fit in memory (the app's memory_limit)", q->c->where,
             q->what);
        return;
    }
    lua_xmove(L, co, 1);
    finish(q, 1);
}

/* A connection's news: up, a result, or broken. */
static void on_conn(pgc_conn_t *pc, PGresult *res, const char *err, void *data) {
    conn_t *conn = data;
    client_t *c = conn->c;
    req_t *q = conn->req;
    char buf[800];
    (void)pc;

    if (err) {
        int was_ready = conn->ready;
        tx_t *tx = conn->tx;
        conn->req = NULL;
        if (tx && !tx->err[0])
            snprintf(tx->err, sizeof(tx->err), "pg %s: the connection was lost: %s", c->where, err);
        pgc_pool_drop(conn);
        if (q && q->task) {
            q->conn = NULL;
            if (was_ready)
                pgc_fail(q, "pg %s: %s: the connection was lost: %s; the next call connects again",
                     c->where, q->what, err);
            else
                pgc_fail(q, "pg %s: cannot connect: %s; check that PostgreSQL runs there and the URL's "
                        "user, password and database (the next call connects again)",
                     c->where, err);
        }
        pgc_pool_pump(c); /* room for a new connection */
        return;
    }
    if (!res) { /* connected */
        conn->ready = 1;
        if (!q) {
            conn_release(conn);
            return;
        }
        conn->req = NULL;
        q->conn = NULL;
        if (conn_send(conn, q, buf, sizeof(buf)) != 0) {
            pgc_pool_drop(conn);
            pgc_fail(q, "%s", buf);
            pgc_pool_pump(c);
        }
        return;
    }
    conn->req = NULL;
    if (q) {
        q->conn = NULL;
        if (q->kind == Q_BEGIN && PQresultStatus(res) == PGRES_COMMAND_OK) {
            q->tx->conn = conn;
            q->tx->begun = 1;
            conn->tx = q->tx;
        }
        if (q->kind == Q_END) {
            q->tx->conn = NULL;
            q->tx->ended = 1;
            conn->tx = NULL;
        }
        if (q->task) answer(q, res);
    }
    PQclear(res);
    if (!conn->tx) conn_release(conn);
}

/* ---- calls ------------------------------------------------------------- */

static void on_timeout(uv_timer_t *h) {
    req_t *q = h->data;
    conn_t *conn = q->conn;
    client_t *c = q->c;

    if (q->queued) {
        pgc_fail(q, "pg %s: %s: the pool is exhausted: all %d connections stayed busy for %lld ms "
                "(raise the pool option, or the timeout)",
             c->where, q->what, c->pool, (long long)c->timeout_ms);
        return;
    }
    pgc_fail(q, "pg %s: %s timed out after %lld ms", c->where, q->what, (long long)c->timeout_ms);
    /* The statement cannot be taken back: its connection goes (a
     * transaction's too: the server rolls it back). */
    if (conn) {
        conn->req = NULL;
        q->conn = NULL;
        pgc_pool_drop(conn);
        pgc_pool_pump(c);
    }
}

/* task_cancel_fn: the task stopped waiting (its own time limit, or it was
 * abandoned). */
static void cancel(void *req) {
    req_t *q = req;
    conn_t *conn = q->conn;
    client_t *c = q->c;
    q->task = NULL;
    if (conn) {
        conn->req = NULL;
        q->conn = NULL;
    }
    finish(q, 0); /* may free q */
    if (conn) {
        pgc_pool_drop(conn);
        pgc_pool_pump(c);
    }
}

req_t *pgc_req_alloc(client_t *c, req_kind_t kind, const char *sql, int n) {
    req_t *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    q->c = c;
    q->kind = kind;
    q->refs = 1;
    c->refs++;
    snprintf(q->what, sizeof(q->what), "%.60s%s", sql, strlen(sql) > 60 ? "..." : "");
    for (char *p = q->what; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    if (!(q->sql = strdup(sql)) || (n && !(q->params = calloc((size_t)n, sizeof(char *))))) {
        pgc_req_unref(q);
        return NULL;
    }
    q->nparams = n;
    return q;
}

static void start_timer(req_t *q, uv_loop_t *loop) {
    if (q->c->timeout_ms <= 0) return;
    uv_timer_init(loop, &q->timer);
    q->timer.data = q;
    q->timing = 1;
    q->refs++;
    uv_timer_start(&q->timer, on_timeout, (uint64_t)q->c->timeout_ms, 0);
}

/* Park the task of L on q, which has a connection, is queued, or failed
 * (then return nil, err at once). */
int pgc_run(lua_State *L, task_t *t, req_t *q, conn_t *fixed) {
    char err[800], what[560];
    int rc;

    q->task = t;
    if (fixed) {
        rc = 1;
        if (conn_send(fixed, q, err, sizeof(err)) != 0) {
            client_t *c = fixed->c;
            rc = -1;
            pgc_pool_drop(fixed);
            pgc_pool_pump(c);
        }
    } else {
        rc = assign(q, task_loop(t), err, sizeof(err));
    }
    if (rc < 0) {
        q->task = NULL;
        pgc_req_unref(q);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    if (rc == 0) {
        q->queued = 1;
        if (q->c->wtail) q->c->wtail->wnext = q;
        else q->c->whead = q;
        q->c->wtail = q;
    }
    start_timer(q, task_loop(t));
    if (q->queued)
        snprintf(what, sizeof(what), "pg %s at %s, queued for a connection (the pool of %d was exhausted)",
                 q->what, q->c->where, q->c->pool);
    else
        snprintf(what, sizeof(what), "pg %s at %s", q->what, q->c->where);
    return task_wait(L, t, what, cancel, q);
}

/* Refuse new calls, fail the waiting ones and drop every connection. */
void pgc_client_close(client_t *c) {
    c->closed = 1;
    c->refs++;
    while (c->whead) {
        req_t *q = c->whead;
        unqueue(q);
        pgc_fail(q, "pg %s: the client was closed", c->where);
    }
    while (c->conns) {
        conn_t *conn = c->conns;
        req_t *q = conn->req;
        conn->req = NULL;
        if (q) q->conn = NULL;
        pgc_pool_drop(conn);
        if (q && q->task) pgc_fail(q, "pg %s: the client was closed", c->where);
    }
    pgc_client_unref(c);
}
