/* sqlitec.c - luka.sqlite(path): a SQLite database for small apps, on
 * libsqlite3's synchronous API.  Every call BLOCKS the loop while SQLite
 * works (README, "Concurrency: what waits, what blocks"): fine for a local
 * file and short statements, wrong for anything slow.
 *
 * The file opens in WAL mode with a busy timeout, relative to the app's
 * directory.  db:query(sql, ...) runs one statement with positional
 * parameters and returns its rows keyed by column name (or, for a
 * statement without rows, rows.count); db:exec(sql) runs several;
 * db:transaction(fn) wraps fn in BEGIN IMMEDIATE / COMMIT, or ROLLBACK
 * when fn raises or one of its queries fails.  Prepared statements are
 * kept per SQL text.  The userdata owns the connection: collected, or
 * closed with its state (a reload closes the old one), it closes. */
#include "api/sqlitec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <sqlite3.h>

#include "app/app.h"
#include "base/json.h"

#define DB_MT "luka.sqlite"
/* Prepared statements kept per connection, the least recently used going. */
#define CACHE 32
#define BUSY_TIMEOUT_MS 5000

typedef struct cached {
    char *sql;
    sqlite3_stmt *stmt;
    uint64_t used;
} cached_t;

typedef struct db {
    sqlite3 *db;
    char *name; /* as given: what errors name */
    cached_t cache[CACHE];
    uint64_t clock;
    int in_tx;         /* inside db:transaction */
    char *tx_failed;   /* the first query failure inside it */
} db_t;

static db_t *check_db(lua_State *L, const char *fn) {
    db_t *d = luaL_checkudata(L, 1, DB_MT);
    if (!d->db) luaL_error(L, "db:%s: the database '%s' is closed", fn, d->name);
    return d;
}

static void close_db(db_t *d) {
    for (int i = 0; i < CACHE; i++) {
        sqlite3_finalize(d->cache[i].stmt);
        free(d->cache[i].sql);
        d->cache[i].stmt = NULL;
        d->cache[i].sql = NULL;
    }
    if (d->db) sqlite3_close_v2(d->db);
    d->db = NULL;
    free(d->tx_failed);
    d->tx_failed = NULL;
}

/* nil, "sqlite NAME: what: message"; a failure inside a transaction
 * dooms it. */
static int failed(lua_State *L, db_t *d, const char *what, const char *msg) {
    lua_pushnil(L);
    if (what) lua_pushfstring(L, "sqlite %s: %s: %s", d->name, what, msg);
    else lua_pushfstring(L, "sqlite %s: %s", d->name, msg);
    if (d->in_tx && !d->tx_failed) d->tx_failed = strdup(lua_tostring(L, -1));
    return 2;
}

/* The statement for sql, prepared now or kept from before; NULL with
 * *tail set past the first statement when it cannot be. */
static sqlite3_stmt *prepare(db_t *d, const char *sql, const char **tail) {
    cached_t *slot = &d->cache[0];
    sqlite3_stmt *stmt;

    *tail = "";
    for (int i = 0; i < CACHE; i++) {
        if (d->cache[i].sql && strcmp(d->cache[i].sql, sql) == 0) {
            d->cache[i].used = ++d->clock;
            sqlite3_reset(d->cache[i].stmt);
            sqlite3_clear_bindings(d->cache[i].stmt);
            return d->cache[i].stmt;
        }
        if (d->cache[i].used < slot->used) slot = &d->cache[i];
    }
    if (sqlite3_prepare_v2(d->db, sql, -1, &stmt, tail) != SQLITE_OK) {
        *tail = "";
        return NULL;
    }
    if (**tail) {
        /* Only whitespace and comments may follow. */
        const char *t = *tail;
        sqlite3_stmt *more = NULL;
        if (sqlite3_prepare_v2(d->db, t, -1, &more, tail) == SQLITE_OK && !more) *tail = "";
        else *tail = t;
        sqlite3_finalize(more);
        if (**tail) {
            sqlite3_finalize(stmt);
            return NULL;
        }
    }
    if (!stmt) return NULL; /* an empty statement */
    sqlite3_finalize(slot->stmt);
    free(slot->sql);
    slot->sql = strdup(sql);
    slot->stmt = stmt;
    slot->used = ++d->clock;
    return stmt;
}

/* Bind the value at idx to parameter i.  Returns 0, or -1 with why. */
static int bind(lua_State *L, sqlite3_stmt *stmt, int i, int idx, char *why, size_t whylen) {
    int rc = SQLITE_OK;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: rc = sqlite3_bind_null(stmt, i); break;
    case LUA_TBOOLEAN: rc = sqlite3_bind_int(stmt, i, lua_toboolean(L, idx)); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) rc = sqlite3_bind_int64(stmt, i, lua_tointeger(L, idx));
        else rc = sqlite3_bind_double(stmt, i, lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        rc = sqlite3_bind_text64(stmt, i, s, len, SQLITE_TRANSIENT, SQLITE_UTF8);
        break;
    }
    case LUA_TTABLE: {
        size_t len;
        char err[256], *json = json_encode(L, idx, &len, err, sizeof(err));
        if (!json) {
            snprintf(why, whylen, "parameter %d: %s", i, err);
            return -1;
        }
        rc = sqlite3_bind_text64(stmt, i, json, len, free, SQLITE_UTF8);
        break;
    }
    default:
        json_push_null(L);
        if (lua_rawequal(L, idx, -1)) {
            lua_pop(L, 1);
            rc = sqlite3_bind_null(stmt, i);
            break;
        }
        lua_pop(L, 1);
        snprintf(why, whylen,
                 "parameter %d: a %s cannot be stored; give nil, luka.null, a boolean, a number, "
                 "a string or a table (stored as JSON)",
                 i, luaL_typename(L, idx));
        return -1;
    }
    if (rc != SQLITE_OK) {
        snprintf(why, whylen, "parameter %d: %s", i, sqlite3_errstr(rc));
        return -1;
    }
    return 0;
}

static void push_column(lua_State *L, sqlite3_stmt *stmt, int c) {
    switch (sqlite3_column_type(stmt, c)) {
    case SQLITE_INTEGER: lua_pushinteger(L, sqlite3_column_int64(stmt, c)); break;
    case SQLITE_FLOAT: lua_pushnumber(L, sqlite3_column_double(stmt, c)); break;
    case SQLITE_TEXT:
        lua_pushlstring(L, (const char *)sqlite3_column_text(stmt, c),
                        (size_t)sqlite3_column_bytes(stmt, c));
        break;
    case SQLITE_BLOB: {
        const void *b = sqlite3_column_blob(stmt, c);
        lua_pushlstring(L, b ? b : "", (size_t)sqlite3_column_bytes(stmt, c));
        break;
    }
    default: json_push_null(L); break;
    }
}

/* db:query(sql, ...) -> rows, or nil, err */
static int l_query(lua_State *L) {
    db_t *d = check_db(L, "query");
    const char *sql = luaL_checkstring(L, 2);
    int nargs = lua_gettop(L) - 2, nparams, ncols, nrows = 0, rc;
    const char *tail;
    sqlite3_stmt *stmt;
    char why[512];

    stmt = prepare(d, sql, &tail);
    if (!stmt) {
        if (*tail) {
            snprintf(why, sizeof(why), "%.40s", tail);
            return luaL_error(L, "db:query: give one statement at a time (more follows: '%s'); "
                                 "db:exec runs several",
                              why);
        }
        if (sqlite3_errcode(d->db) == SQLITE_OK)
            return luaL_error(L, "db:query: the SQL is empty");
        return failed(L, d, "prepare", sqlite3_errmsg(d->db));
    }
    nparams = sqlite3_bind_parameter_count(stmt);
    if (nargs != nparams)
        return luaL_error(L, "db:query: the statement has %d parameter(s) (? or ?N), %d value(s) "
                             "given",
                          nparams, nargs);
    for (int i = 1; i <= nparams; i++)
        if (bind(L, stmt, i, i + 2, why, sizeof(why)) != 0) {
            sqlite3_reset(stmt);
            sqlite3_clear_bindings(stmt);
            return luaL_error(L, "db:query: %s", why);
        }
    ncols = sqlite3_column_count(stmt);
    lua_newtable(L);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        lua_createtable(L, 0, ncols);
        for (int c = 0; c < ncols; c++) {
            push_column(L, stmt, c);
            lua_setfield(L, -2, sqlite3_column_name(stmt, c));
        }
        lua_rawseti(L, -2, ++nrows);
    }
    if (rc != SQLITE_DONE) {
        const char *msg = sqlite3_errmsg(d->db);
        lua_pushstring(L, msg); /* reset may change it */
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
        return failed(L, d, NULL, lua_tostring(L, -1));
    }
    if (ncols == 0) {
        lua_pushinteger(L, sqlite3_changes(d->db));
        lua_setfield(L, -2, "count");
        lua_pushinteger(L, sqlite3_last_insert_rowid(d->db));
        lua_setfield(L, -2, "last_insert_id");
    }
    sqlite3_reset(stmt); /* lets go of its read lock */
    sqlite3_clear_bindings(stmt);
    return 1;
}

/* db:exec(sql) -> true, or nil, err: any number of statements, no
 * parameters, no rows. */
static int l_exec(lua_State *L) {
    db_t *d = check_db(L, "exec");
    const char *sql = luaL_checkstring(L, 2);
    char *err = NULL;
    if (sqlite3_exec(d->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        lua_pushstring(L, err ? err : sqlite3_errmsg(d->db));
        sqlite3_free(err);
        return failed(L, d, NULL, lua_tostring(L, -1));
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int run(db_t *d, const char *sql) { return sqlite3_exec(d->db, sql, NULL, NULL, NULL); }

/* db:transaction(fn) -> fn's results (true when none), or nil, err */
static int l_transaction(lua_State *L) {
    db_t *d = check_db(L, "transaction");
    int base, n;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (d->in_tx) return luaL_error(L, "db:transaction: already inside a transaction of '%s'", d->name);
    lua_settop(L, 2);
    if (run(d, "BEGIN IMMEDIATE") != SQLITE_OK) return failed(L, d, "BEGIN", sqlite3_errmsg(d->db));
    d->in_tx = 1;
    base = lua_gettop(L);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1); /* tx: the same connection */
    if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
        d->in_tx = 0;
        free(d->tx_failed);
        d->tx_failed = NULL;
        if (d->db) run(d, "ROLLBACK");
        lua_pushnil(L);
        if (lua_type(L, -2) == LUA_TSTRING)
            lua_pushfstring(L, "sqlite %s: transaction rolled back: %s", d->name, lua_tostring(L, -2));
        else
            lua_pushfstring(L, "sqlite %s: transaction rolled back: a %s was raised", d->name,
                            luaL_typename(L, -2));
        return 2;
    }
    d->in_tx = 0;
    if (!d->db) return luaL_error(L, "db:transaction: the database '%s' was closed inside it", d->name);
    if (d->tx_failed) {
        run(d, "ROLLBACK");
        lua_pushnil(L);
        lua_pushfstring(L, "transaction rolled back: %s", d->tx_failed);
        free(d->tx_failed);
        d->tx_failed = NULL;
        return 2;
    }
    if (run(d, "COMMIT") != SQLITE_OK) {
        lua_pushstring(L, sqlite3_errmsg(d->db));
        run(d, "ROLLBACK");
        return failed(L, d, "COMMIT", lua_tostring(L, -1));
    }
    n = lua_gettop(L) - base;
    if (n == 0) {
        lua_pushboolean(L, 1);
        n = 1;
    }
    return n;
}

static int l_close(lua_State *L) {
    close_db(luaL_checkudata(L, 1, DB_MT));
    return 0;
}

static int l_gc(lua_State *L) {
    db_t *d = luaL_checkudata(L, 1, DB_MT);
    close_db(d);
    free(d->name);
    d->name = NULL;
    return 0;
}

static int l_tostring(lua_State *L) {
    db_t *d = luaL_checkudata(L, 1, DB_MT);
    lua_pushfstring(L, "luka.sqlite(%s)%s", d->name ? d->name : "?", d->db ? "" : " (closed)");
    return 1;
}

/* luka.sqlite(path) -> db; raises when it cannot be opened. */
static int l_sqlite(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    const char *dir = app_dir(L);
    db_t *d;
    char *full;
    int rc;

    if (!*path) return luaL_error(L, "luka.sqlite: the path is empty; give a file such as \"app.db\"");
    d = lua_newuserdatauv(L, sizeof(*d), 0);
    memset(d, 0, sizeof(*d));
    luaL_setmetatable(L, DB_MT);
    d->name = strdup(path);
    if (path[0] == '/' || path[0] == ':' || !dir) {
        full = strdup(path);
    } else {
        full = malloc(strlen(dir) + strlen(path) + 2);
        sprintf(full, "%s/%s", dir, path);
    }
    rc = sqlite3_open_v2(full, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    free(full);
    if (rc != SQLITE_OK) {
        lua_pushstring(L, d->db ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc));
        close_db(d);
        return luaL_error(L, "luka.sqlite('%s'): %s", path, lua_tostring(L, -1));
    }
    sqlite3_busy_timeout(d->db, BUSY_TIMEOUT_MS);
    if (run(d, "PRAGMA journal_mode=WAL") != SQLITE_OK) {
        lua_pushstring(L, sqlite3_errmsg(d->db));
        close_db(d);
        return luaL_error(L, "luka.sqlite('%s'): %s", path, lua_tostring(L, -1));
    }
    return 1;
}

void sqlitec_inject_api(lua_State *L) {
    static const luaL_Reg methods[] = {{"query", l_query},
                                       {"exec", l_exec},
                                       {"transaction", l_transaction},
                                       {"close", l_close},
                                       {NULL, NULL}};
    if (luaL_newmetatable(L, DB_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_sqlite);
    lua_setfield(L, -2, "sqlite");
}
