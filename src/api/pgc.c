/* pgc.c - luka.pg(url): the Lua side of a PostgreSQL client whose
 * query(sql, ...) runs one statement and parks the calling task until its
 * result, and whose transaction(fn) runs fn between BEGIN and COMMIT or
 * ROLLBACK on one connection.  The pool and the calls are in
 * api/pgc_pool.c, the values in api/pgc_values.c, libpq on the loop in
 * api/pgc_conn.c. */
#include "api/pgc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <libpq-fe.h>

#include "api/pgc_pool.h"
#include "api/pgc_values.h"
#include "base/log.h"

#define CLIENT_MT "luka.pg"
#define TX_MT "luka.pg.tx"

/* A request for the call whose arguments from index first on (0: none)
 * are the statement's parameters.  Raises on a bad argument. */
static req_t *req_new(lua_State *L, client_t *c, req_kind_t kind, const char *sql, int first) {
    int n = first ? lua_gettop(L) - first + 1 : 0;
    char err[300];
    req_t *q;

    pgc_check_params(L, first, n);
    if (!(q = pgc_req_alloc(c, kind, sql, n))) luaL_error(L, "luka.pg: out of memory");
    for (int i = 0; i < n; i++) {
        int rc = pgc_param(L, first + i, &q->params[i], err, sizeof(err));
        if (rc == 0) continue;
        pgc_req_unref(q);
        if (rc == -2) luaL_argerror(L, first + i, lua_pushfstring(L, "cannot be sent as JSON: %s", err));
        luaL_error(L, "luka.pg: out of memory");
    }
    return q;
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
    return pgc_run(L, t, req_new(L, c, Q_QUERY, sql, 3), NULL);
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
    return pgc_run(L, t, q, NULL);
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
    return pgc_run(L, t, q, tx->conn);
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
    return pgc_run(L, t, q, tx->conn);
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
            if (q->task) pgc_fail(q, "pg %s: the transaction was closed", c->where);
        }
        pgc_pool_drop(conn);
        pgc_pool_pump(c);
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
    if (tx->c) pgc_client_unref(tx->c);
    tx->c = NULL;
    return 0;
}

static int l_close(lua_State *L) {
    client_t *c = *check_client(L);
    if (c && !c->closed) pgc_client_close(c);
    return 0;
}

static int l_gc(lua_State *L) {
    client_t **ud = check_client(L);
    if (*ud) {
        if (!(*ud)->closed) pgc_client_close(*ud);
        pgc_client_unref(*ud);
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
