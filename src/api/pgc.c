/* pgc.c - luka.pg(url): a PostgreSQL client whose query(sql, ...) runs one
 * statement and parks the calling task until its result (lua/task.h), on
 * libpq's asynchronous API (api/pgc_conn.c).
 *
 * The client keeps at most `pool` connections.  A call takes an idle one,
 * or opens one while there are fewer, or else waits in line (first come,
 * first served) until one is given back, within its timeout.  A
 * transaction holds one connection from BEGIN to COMMIT or ROLLBACK.  A
 * call that times out or is cancelled cannot take its statement back, so
 * its connection is closed (the server cancels the statement and rolls
 * back); so is one the server dropped, and the next call opens another.
 *
 * Results are converted on the state's main thread under a protected call
 * and the app's memory limit, as luka.redis does, then moved to the task.
 *
 * Ownership: the userdata holds the client; the client lives until the
 * userdata is collected and its last connection and request are gone.  A
 * request lives until its task is answered or cancelled and its timer has
 * closed. */
#include "api/pgc.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <libpq-fe.h>

#include "api/pgc_conn.h"
#include "base/json.h"
#include "base/log.h"
#include "lua/script.h"
#include "lua/task.h"

#define CLIENT_MT "luka.pg"
#define TX_MT "luka.pg.tx"

/* Type OIDs of pg_type.h that results are converted by. */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_JSON 114
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700
#define OID_JSONB 3802

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

static void pump(client_t *c);

static void client_unref(client_t *c) {
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

static void req_unref(req_t *q) {
    if (--q->refs > 0) return;
    client_unref(q->c);
    free(q->sql);
    for (int i = 0; i < q->nparams; i++) free(q->params[i]);
    free(q->params);
    free(q);
}

static void on_timer_closed(uv_handle_t *h) { req_unref(h->data); }

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
    req_unref(q); /* the task's: q is gone now unless its timer still closes */
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
static void fail(req_t *q, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(q, fmt, ap);
    va_end(ap);
}

/* ---- connections ------------------------------------------------------- */

static void on_conn(pgc_conn_t *pc, PGresult *res, const char *err, void *data);

/* Close conn: the request on it (if any) is the caller's to answer. */
static void conn_drop(conn_t *conn) {
    client_t *c = conn->c;
    if (conn->prev) conn->prev->next = conn->next;
    else c->conns = conn->next;
    if (conn->next) conn->next->prev = conn->prev;
    c->nconns--;
    if (conn->req) conn->req->conn = NULL;
    if (conn->tx) conn->tx->conn = NULL;
    pgc_conn_close(conn->pc);
    free(conn);
    client_unref(c);
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
        conn_drop(conn); /* broken while idle: try the next */
    }
    if (c->nconns >= c->pool) return 0;
    if (!(conn = conn_open(c, loop, errbuf, errlen))) return -1;
    conn->req = q;
    q->conn = conn;
    return 1;
}

/* Hand free connections (or room for new ones) to the calls waiting, in
 * order. */
static void pump(client_t *c) {
    char err[800];
    while (c->whead && !c->closed) {
        req_t *q = c->whead;
        int rc = assign(q, task_loop(q->task), err, sizeof(err));
        if (rc == 0) return;
        unqueue(q);
        if (rc < 0) fail(q, "%s", err);
    }
}

/* conn is free again: the next waiting call gets it, or it idles. */
static void conn_release(conn_t *conn) {
    client_t *c = conn->c;
    if (c->closed) {
        conn_drop(conn);
        return;
    }
    pgc_conn_ref(conn->pc, 0);
    pump(c);
}

/* ---- results ----------------------------------------------------------- */

/* The error of result r (or of a broken connection), for messages:
 * "SQLSTATE: message (DETAIL: ...)". */
static void result_error(const PGresult *r, char *buf, size_t len) {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    if (!msg) msg = PQresultErrorMessage(r);
    snprintf(buf, len, "%s %s: %s%s%s%s", sev ? sev : "ERROR", state ? state : "?????", msg,
             detail ? " (DETAIL: " : "", detail ? detail : "", detail ? ")" : "");
}

static void push_cell(lua_State *L, Oid type, const char *v, int len) {
    char *end;
    switch (type) {
    case OID_BOOL:
        lua_pushboolean(L, v[0] == 't');
        return;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
        lua_pushinteger(L, (lua_Integer)strtoll(v, &end, 10));
        return;
    case OID_FLOAT4:
    case OID_FLOAT8:
        lua_pushnumber(L, (lua_Number)strtod(v, &end));
        return;
    case OID_JSON:
    case OID_JSONB: {
        char err[200];
        if (json_decode(L, v, (size_t)len, err, sizeof(err)) != 0) lua_pushlstring(L, v, (size_t)len);
        return;
    }
    case OID_BYTEA: {
        size_t n;
        unsigned char *b = PQunescapeBytea((const unsigned char *)v, &n);
        if (!b) luaL_error(L, "out of memory");
        lua_pushlstring(L, (const char *)b, n);
        PQfreemem(b);
        return;
    }
    default: /* numeric (exact), text and the rest: PostgreSQL's text */
        lua_pushlstring(L, v, (size_t)len);
    }
}

/* The rows of result 1 as a sequence of tables keyed by column name, with
 * count set. */
static int push_rows(lua_State *L) {
    const PGresult *r = lua_touserdata(L, 1);
    int nrows = PQntuples(r), nf = PQnfields(r);
    const char *count = PQcmdTuples((PGresult *)r);

    luaL_checkstack(L, 6, "a result");
    lua_createtable(L, nrows, 1);
    for (int i = 0; i < nrows; i++) {
        lua_createtable(L, 0, nf);
        for (int f = 0; f < nf; f++) {
            if (PQgetisnull(r, i, f)) json_push_null(L);
            else push_cell(L, PQftype(r, f), PQgetvalue(r, i, f), PQgetlength(r, i, f));
            lua_setfield(L, -2, PQfname(r, f));
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_pushinteger(L, count && count[0] ? (lua_Integer)strtoll(count, NULL, 10) : nrows);
    lua_setfield(L, -2, "count");
    return 1;
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
        result_error(r, err, sizeof(err));
        fail(q, "pg %s: %s", q->c->where, err);
        return;
    }
    if (q->kind != Q_QUERY && q->kind != Q_TX) {
        lua_pushboolean(co, 1);
        finish(q, 1);
        return;
    }
    lua_pushcfunction(L, push_rows);
    lua_pushlightuserdata(L, (void *)r);
    lua_getallocf(L, &script_active);
    rc = lua_pcall(L, 1, 1, 0);
    script_active = saved;
    if (rc != LUA_OK || !lua_checkstack(co, 1)) {
        lua_settop(L, top);
        fail(q, "pg %s: %s: the result does not fit in memory (the app's memory_limit)", q->c->where,
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
        conn_drop(conn);
        if (q && q->task) {
            q->conn = NULL;
            if (was_ready)
                fail(q, "pg %s: %s: the connection was lost: %s; the next call connects again",
                     c->where, q->what, err);
            else
                fail(q, "pg %s: cannot connect: %s; check that PostgreSQL runs there and the URL's "
                        "user, password and database (the next call connects again)",
                     c->where, err);
        }
        pump(c); /* room for a new connection */
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
            conn_drop(conn);
            fail(q, "%s", buf);
            pump(c);
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
        fail(q, "pg %s: %s: the pool is exhausted: all %d connections stayed busy for %lld ms "
                "(raise the pool option, or the timeout)",
             c->where, q->what, c->pool, (long long)c->timeout_ms);
        return;
    }
    fail(q, "pg %s: %s timed out after %lld ms", c->where, q->what, (long long)c->timeout_ms);
    /* The statement cannot be taken back: its connection goes (a
     * transaction's too: the server rolls it back). */
    if (conn) {
        conn->req = NULL;
        q->conn = NULL;
        conn_drop(conn);
        pump(c);
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
        conn_drop(conn);
        pump(c);
    }
}

/* A request for the call whose arguments from index first on are the
 * statement's parameters.  Raises on a bad argument. */
static req_t *req_new(lua_State *L, client_t *c, req_kind_t kind, const char *sql, int first) {
    int top = lua_gettop(L), n = first ? top - first + 1 : 0;
    req_t *q;

    if (n > 65535) luaL_error(L, "luka.pg: at most 65535 parameters, got %d", n);
    /* Check every parameter before anything is allocated. */
    for (int i = 0; i < n; i++) {
        int idx = first + i, t = lua_type(L, idx);
        if (t == LUA_TNIL || t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TTABLE) continue;
        if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL) continue;
        if (t == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, idx, &len);
            if (memchr(s, '\0', len))
                luaL_argerror(L, idx, "a string with a zero byte cannot be a parameter; send bytes "
                                      "as hex text with decode($n, 'hex')");
            continue;
        }
        luaL_typeerror(L, idx, "nil, luka.null, boolean, number, string or table");
    }
    if (!(q = calloc(1, sizeof(*q)))) luaL_error(L, "luka.pg: out of memory");
    q->c = c;
    q->kind = kind;
    q->refs = 1;
    c->refs++;
    snprintf(q->what, sizeof(q->what), "%.60s%s", sql, strlen(sql) > 60 ? "..." : "");
    for (char *p = q->what; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    if (!(q->sql = strdup(sql)) || (n && !(q->params = calloc((size_t)n, sizeof(char *))))) {
        req_unref(q);
        luaL_error(L, "luka.pg: out of memory");
    }
    q->nparams = n;
    for (int i = 0; i < n; i++) {
        int idx = first + i;
        char buf[64], err[300];
        const char *s = NULL;
        switch (lua_type(L, idx)) {
        case LUA_TBOOLEAN:
            s = lua_toboolean(L, idx) ? "true" : "false";
            break;
        case LUA_TNUMBER:
            if (lua_isinteger(L, idx)) {
                snprintf(buf, sizeof(buf), "%lld", (long long)lua_tointeger(L, idx));
            } else {
                double d = lua_tonumber(L, idx);
                if (isnan(d)) snprintf(buf, sizeof(buf), "NaN");
                else if (isinf(d)) snprintf(buf, sizeof(buf), "%sInfinity", d < 0 ? "-" : "");
                else snprintf(buf, sizeof(buf), "%.17g", d);
            }
            s = buf;
            break;
        case LUA_TSTRING:
            s = lua_tostring(L, idx);
            break;
        case LUA_TTABLE: {
            size_t len;
            char *j = json_encode(L, idx, &len, err, sizeof(err));
            if (!j) {
                req_unref(q);
                luaL_argerror(L, idx, lua_pushfstring(L, "cannot be sent as JSON: %s", err));
            }
            q->params[i] = j;
            continue;
        }
        default: /* nil, luka.null */
            continue;
        }
        if (!(q->params[i] = strdup(s))) {
            req_unref(q);
            luaL_error(L, "luka.pg: out of memory");
        }
    }
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
static int run(lua_State *L, task_t *t, req_t *q, conn_t *fixed) {
    char err[800], what[560];
    int rc;

    q->task = t;
    if (fixed) {
        rc = 1;
        if (conn_send(fixed, q, err, sizeof(err)) != 0) {
            client_t *c = fixed->c;
            rc = -1;
            conn_drop(fixed);
            pump(c);
        }
    } else {
        rc = assign(q, task_loop(t), err, sizeof(err));
    }
    if (rc < 0) {
        q->task = NULL;
        req_unref(q);
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

static client_t **check_client(lua_State *L) { return luaL_checkudata(L, 1, CLIENT_MT); }

/* nil, err when the call cannot wait here or the client is closed;
 * 0 when it may go on. */
static int refuse(lua_State *L, client_t *c, const char *sql, task_t **t) {
    const char *why;
    if (!(*t = task_self(L, &why))) {
        lua_pushnil(L);
        lua_pushfstring(L, "pg %s: %s: %s", c ? c->where : "", sql, why);
        return 2;
    }
    if (!c || c->closed) {
        lua_pushnil(L);
        lua_pushfstring(L, "pg %s: the client is closed", c ? c->where : "");
        return 2;
    }
    return 0;
}

/* db:query(sql, ...) -> rows; nil, err.  Waits, without blocking the
 * loop. */
static int l_query(lua_State *L) {
    client_t *c = *check_client(L);
    const char *sql = luaL_checkstring(L, 2);
    task_t *t;
    int n;

    if ((n = refuse(L, c, sql, &t))) return n;
    return run(L, t, req_new(L, c, Q_QUERY, sql, 3), NULL);
}

static tx_t *check_tx(lua_State *L) { return luaL_checkudata(L, 1, TX_MT); }

/* db:_tx() -> a transaction, not begun. */
static int l_tx(lua_State *L) {
    client_t *c = *check_client(L);
    tx_t *tx = lua_newuserdatauv(L, sizeof(*tx), 0);
    memset(tx, 0, sizeof(*tx));
    luaL_setmetatable(L, TX_MT);
    if (c) {
        tx->c = c;
        c->refs++;
    }
    return 1;
}

/* tx:_begin() -> true; nil, err.  Takes a connection and sends BEGIN. */
static int l_begin(lua_State *L) {
    tx_t *tx = check_tx(L);
    client_t *c = tx->c;
    task_t *t;
    req_t *q;
    int n;

    if (tx->begun || tx->ended) return luaL_error(L, "luka.pg: the transaction was begun already");
    if ((n = refuse(L, c, "BEGIN", &t))) return n;
    lua_settop(L, 1);
    q = req_new(L, c, Q_BEGIN, "BEGIN", 0);
    q->tx = tx;
    return run(L, t, q, NULL);
}

/* tx:query(sql, ...): db:query on the transaction's connection. */
static int l_tx_query(lua_State *L) {
    tx_t *tx = check_tx(L);
    const char *sql = luaL_checkstring(L, 2);
    task_t *t;
    req_t *q;
    int n;

    if (!tx->begun || tx->ended)
        return luaL_error(L, "luka.pg: tx:query outside its transaction's function");
    if ((n = refuse(L, tx->c, sql, &t))) return n;
    if (!tx->conn) {
        lua_pushnil(L);
        lua_pushstring(L, tx->err[0] ? tx->err : "pg: the transaction's connection was lost");
        return 2;
    }
    if (tx->conn->req) return luaL_error(L, "luka.pg: tx:query while another of its statements runs");
    q = req_new(L, tx->c, Q_TX, sql, 3);
    q->tx = tx;
    return run(L, t, q, tx->conn);
}

/* tx:_finish(commit) -> true; nil, err.  COMMIT or ROLLBACK, then the
 * connection goes back to the pool. */
static int l_finish(lua_State *L) {
    tx_t *tx = check_tx(L);
    const char *sql = lua_toboolean(L, 2) ? "COMMIT" : "ROLLBACK";
    task_t *t;
    req_t *q;
    int n;

    if (!tx->begun || tx->ended) return luaL_error(L, "luka.pg: the transaction is not open");
    if ((n = refuse(L, tx->c, sql, &t))) return n;
    if (!tx->conn) {
        tx->ended = 1;
        lua_pushnil(L);
        lua_pushstring(L, tx->err[0] ? tx->err : "pg: the transaction's connection was lost");
        return 2;
    }
    lua_settop(L, 1);
    q = req_new(L, tx->c, Q_END, sql, 0);
    q->tx = tx;
    return run(L, t, q, tx->conn);
}

/* tx:_failed() -> the first failed statement's error, or nil. */
static int l_failed(lua_State *L) {
    tx_t *tx = check_tx(L);
    if (tx->err[0]) lua_pushstring(L, tx->err);
    else lua_pushnil(L);
    return 1;
}

/* A transaction left open (its function's task was stopped) closes its
 * connection, which the server rolls back. */
static void tx_drop(tx_t *tx) {
    if (tx->conn) {
        conn_t *conn = tx->conn;
        client_t *c = tx->c;
        req_t *q = conn->req;
        tx->conn = NULL;
        conn->tx = NULL;
        if (q) {
            conn->req = NULL;
            q->conn = NULL;
            if (q->task) fail(q, "pg %s: the transaction was closed", c->where);
        }
        conn_drop(conn);
        pump(c);
    }
    tx->ended = 1;
}

static int l_tx_close(lua_State *L) {
    tx_drop(check_tx(L));
    return 0;
}

static int l_tx_gc(lua_State *L) {
    tx_t *tx = check_tx(L);
    tx_drop(tx);
    if (tx->c) client_unref(tx->c);
    tx->c = NULL;
    return 0;
}

/* Refuse new calls, fail the waiting ones and drop every connection. */
static void client_close(client_t *c) {
    c->closed = 1;
    c->refs++;
    while (c->whead) {
        req_t *q = c->whead;
        unqueue(q);
        fail(q, "pg %s: the client was closed", c->where);
    }
    while (c->conns) {
        conn_t *conn = c->conns;
        req_t *q = conn->req;
        conn->req = NULL;
        conn_drop(conn);
        if (q && q->task) fail(q, "pg %s: the client was closed", c->where);
    }
    client_unref(c);
}

static int l_close(lua_State *L) {
    client_t *c = *check_client(L);
    if (c && !c->closed) client_close(c);
    return 0;
}

static int l_gc(lua_State *L) {
    client_t **ud = check_client(L);
    if (*ud) {
        if (!(*ud)->closed) client_close(*ud);
        client_unref(*ud);
        *ud = NULL;
    }
    return 0;
}

static int l_tostring(lua_State *L) {
    client_t *c = *check_client(L);
    lua_pushfstring(L, "luka.pg %s%s", c ? c->where : "", c && c->closed ? " (closed)" : "");
    return 1;
}

/* Copy the parameters PQconninfoParse found into c, with luka's own
 * defaults. */
static int take_params(client_t *c, PQconninfoOption *opts) {
    int n = 0, i = 0;
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) n += o->val != NULL;
    if (!(c->keys = calloc((size_t)n + 2, sizeof(char *))) ||
        !(c->vals = calloc((size_t)n + 2, sizeof(char *))))
        return -1;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val) continue;
        if (!(c->keys[i] = strdup(o->keyword)) || !(c->vals[i] = strdup(o->val))) return -1;
        i++;
        if (!strcmp(o->keyword, "host")) host = o->val;
        else if (!strcmp(o->keyword, "hostaddr")) hostaddr = o->val;
        else if (!strcmp(o->keyword, "port")) port = o->val;
        else if (!strcmp(o->keyword, "dbname")) db = o->val;
        else if (!strcmp(o->keyword, "user")) user = o->val;
    }
    if (!(c->keys[i] = strdup("fallback_application_name")) || !(c->vals[i] = strdup("luka")))
        return -1;
    snprintf(c->where, sizeof(c->where), "%s:%s/%s", host ? host : hostaddr ? hostaddr : "localhost",
             port ? port : "5432", db ? db : user ? user : "");
    return 0;
}

/* pg(url, timeout_ms, pool) -> client, or nil and what is wrong with the
 * URL.  It connects at its first call. */
static int l_pg(lua_State *L) {
    const char *url = luaL_checkstring(L, 1);
    lua_Integer timeout_ms = luaL_checkinteger(L, 2), pool = luaL_checkinteger(L, 3);
    client_t **ud, *c;
    PQconninfoOption *opts;
    char *perr = NULL, shown[600];

    log_redact_url(url, shown, sizeof(shown));
    if (strncmp(url, "postgres://", 11) != 0 && strncmp(url, "postgresql://", 13) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "the url must look like postgres://USER:PASSWORD@HOST:PORT/DB, got '%s'",
                        shown);
        return 2;
    }
    if (!(opts = PQconninfoParse(url, &perr))) {
        char *nl;
        if (perr && (nl = strchr(perr, '\n'))) *nl = '\0';
        lua_pushnil(L);
        lua_pushfstring(L, "bad url '%s': %s", shown, perr ? perr : "out of memory");
        PQfreemem(perr);
        return 2;
    }
    ud = lua_newuserdatauv(L, sizeof(*ud), 0);
    *ud = NULL;
    luaL_setmetatable(L, CLIENT_MT);
    if (!(c = calloc(1, sizeof(*c)))) {
        PQconninfoFree(opts);
        return luaL_error(L, "luka.pg: out of memory");
    }
    c->refs = 1;
    *ud = c;
    if (take_params(c, opts) != 0) {
        PQconninfoFree(opts);
        return luaL_error(L, "luka.pg: out of memory");
    }
    PQconninfoFree(opts);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
    c->pool = pool > 0 ? (int)(pool < 1000 ? pool : 1000) : 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    c->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    return 1;
}

/* db:transaction(fn), in Lua: BEGIN, fn(tx), then COMMIT and fn's values
 * (true when it returned none), or ROLLBACK and nil, err when fn raised or
 * one of its statements failed; the to-be-closed tx closes the connection
 * of a transaction whose task was stopped. */
static const char transaction_lua[] =
    "local methods = ...\n"
    "local pack, unpack = table.pack, table.unpack\n"
    "function methods.transaction(db, fn)\n"
    "  if type(fn) ~= 'function' then\n"
    "    error(('db:transaction expects a function, got %s'):format(type(fn)), 2)\n"
    "  end\n"
    "  local tx <close> = db:_tx()\n"
    "  local ok, err = tx:_begin()\n"
    "  if not ok then return nil, err end\n"
    "  local res = pack(pcall(fn, tx))\n"
    "  local failed = tx:_failed()\n"
    "  if res[1] and not failed then\n"
    "    local cok, cerr = tx:_finish(true)\n"
    "    if not cok then return nil, cerr end\n"
    "    if res.n == 1 then return true end\n"
    "    return unpack(res, 2, res.n)\n"
    "  end\n"
    "  tx:_finish(false)\n"
    "  if not res[1] then return nil, res[2] end\n"
    "  return nil, failed\n"
    "end\n";

void pgc_inject_api(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"query", l_query}, {"close", l_close}, {"_tx", l_tx}, {NULL, NULL}};
    static const luaL_Reg tx_methods[] = {{"query", l_tx_query}, {"_begin", l_begin},
                                          {"_finish", l_finish}, {"_failed", l_failed},
                                          {NULL, NULL}};
    if (luaL_newmetatable(L, CLIENT_MT)) {
        luaL_newlib(L, methods);
        if (luaL_loadbuffer(L, transaction_lua, sizeof(transaction_lua) - 1, "=luka.pg") != LUA_OK)
            lua_error(L);
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, TX_MT)) {
        luaL_newlib(L, tx_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_tx_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_tx_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_pg);
    lua_setfield(L, -2, "pg");
}
