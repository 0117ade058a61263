/* redisc.c - luka.redis(url): a client whose call(cmd, ...) sends one
 * command and parks the calling task until the reply (lua/task.h), on
 * hiredis's asynchronous API.
 *
 * Each call has a connection to itself while it waits, taken from the
 * client's idle ones or opened then, and given back with the reply: a
 * BLPOP of one handler must not hold up the GET of another, as it would
 * queued behind it on one shared connection.  A new connection sends AUTH
 * and SELECT ahead of the command (hiredis keeps the order), and a refusal
 * of either fails the command with it.  A call that times out or is
 * cancelled cannot take its command back, so its connection is dropped:
 * hiredis then answers the request with no reply, and it is freed.
 *
 * Ownership: the userdata holds the client; the client lives until the
 * userdata is collected and hiredis has let go of its last connection.  A
 * request lives until hiredis has answered it and its timer has closed. */
#include "api/redisc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/async.h>
#include <lauxlib.h>

#include "api/redisc_uv.h"
#include "base/json.h"
#include "base/redis_url.h"
#include "lua/script.h"
#include "lua/task.h"

#define CLIENT_MT "luka.redis"

typedef struct client client_t;

typedef struct conn {
    client_t *c;
    redisAsyncContext *ac;
    struct conn *prev, *next; /* in c->conns */
    int idle;                 /* waiting in the pool for the next call */
    int dropping;             /* redisAsyncFree called: hiredis frees it soon */
    char err[300];            /* why it was dropped, for the calls it still owes */
} conn_t;

struct client {
    redis_url_t url;
    char where[300];    /* host:port, for every message */
    lua_State *L;       /* the state's main thread, which converts replies */
    int64_t timeout_ms; /* of each call; 0: only the handler's own limit */
    int pool;           /* idle connections kept */
    int nidle;
    int closed;         /* close() or collected: calls are refused */
    int refs;           /* the userdata, each connection, each request */
    conn_t *conns;
};

typedef struct req {
    client_t *c;
    conn_t *conn;  /* until hiredis answers */
    task_t *task;  /* NULL once woken or cancelled */
    uv_timer_t timer;
    int timing;    /* the timer is started and not closed yet */
    int refs;      /* hiredis's answer and the timer's close */
    char cmd[32];  /* the command's name, for messages */
} req_t;

/* Commands a call refuses, and why: their effect would outlive the call,
 * whose connection the next call may not get, or they answer more than
 * once. */
static const struct {
    const char *name;
    const char *why;
} refused[] = {
    {"SUBSCRIBE", "a call takes one reply"},
    {"PSUBSCRIBE", "a call takes one reply"},
    {"SSUBSCRIBE", "a call takes one reply"},
    {"UNSUBSCRIBE", "a call takes one reply"},
    {"PUNSUBSCRIBE", "a call takes one reply"},
    {"SUNSUBSCRIBE", "a call takes one reply"},
    {"MONITOR", "a call takes one reply"},
    {"MULTI", "each call may use another connection; send a transaction as one EVAL"},
    {"EXEC", "each call may use another connection; send a transaction as one EVAL"},
    {"DISCARD", "each call may use another connection; send a transaction as one EVAL"},
    {"WATCH", "each call may use another connection; send a transaction as one EVAL"},
    {"UNWATCH", "each call may use another connection; send a transaction as one EVAL"},
    {"SELECT", "connections are shared; put the database in the URL"},
    {"AUTH", "connections are shared; put the credentials in the URL"},
    {"HELLO", "connections are shared and speak RESP2"},
    {"RESET", "connections are shared; their set-up comes from the URL"},
};

static void client_unref(client_t *c) {
    if (--c->refs == 0) free(c);
}

/* hiredis has freed conn's context (redisc_uv_gone_fn). */
static void conn_gone(void *data) {
    conn_t *conn = data;
    client_t *c = conn->c;

    if (conn->prev) conn->prev->next = conn->next;
    else c->conns = conn->next;
    if (conn->next) conn->next->prev = conn->prev;
    if (conn->idle) c->nidle--;
    free(conn);
    client_unref(c);
}

/* Close conn; the calls it still owes a reply fail with why (NULL: with
 * hiredis's own reason).  Inside one of its reply callbacks, hiredis frees
 * it once the callback returns; otherwise at once, conn included. */
static void conn_drop(conn_t *conn, const char *why) {
    if (conn->dropping) return;
    conn->dropping = 1;
    if (why && !conn->err[0]) snprintf(conn->err, sizeof(conn->err), "%s", why);
    if (conn->idle) conn->idle = 0, conn->c->nidle--;
    redisAsyncFree(conn->ac);
}

/* The answer to AUTH or SELECT, sent first on each connection. */
static void on_setup(redisAsyncContext *ac, void *reply, void *privdata) {
    conn_t *conn = ac->data;
    redisReply *r = reply;
    char why[300];

    if (!r || r->type != REDIS_REPLY_ERROR) return;
    /* Redis's messages never echo the password. */
    snprintf(why, sizeof(why), "%s refused: %s", (const char *)privdata, r->str);
    conn_drop(conn, why);
}

/* A connection for the next command: an idle one, or a new one on loop. */
static conn_t *conn_get(client_t *c, uv_loop_t *loop, char *errbuf, size_t errlen) {
    redisAsyncContext *ac;
    conn_t *conn;

    for (conn = c->conns; conn; conn = conn->next)
        if (conn->idle) {
            conn->idle = 0;
            c->nidle--;
            redisc_uv_ref(conn->ac, 1);
            return conn;
        }
    ac = redisAsyncConnect(c->url.host, c->url.port);
    if (!ac || ac->err) {
        snprintf(errbuf, errlen, "redis %s: %s", c->where, ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        return NULL;
    }
    conn = calloc(1, sizeof(*conn));
    if (!conn || redisc_uv_attach(ac, loop, conn_gone, conn) != 0) {
        snprintf(errbuf, errlen, "redis %s: cannot watch the connection", c->where);
        redisAsyncFree(ac);
        free(conn);
        return NULL;
    }
    conn->c = c;
    conn->ac = ac;
    ac->data = conn;
    c->refs++;
    if ((conn->next = c->conns)) conn->next->prev = conn;
    c->conns = conn;
    if (c->url.password[0] && c->url.user[0])
        redisAsyncCommand(ac, on_setup, "AUTH", "AUTH %s %s", c->url.user, c->url.password);
    else if (c->url.password[0])
        redisAsyncCommand(ac, on_setup, "AUTH", "AUTH %s", c->url.password);
    if (c->url.db) redisAsyncCommand(ac, on_setup, "SELECT", "SELECT %d", c->url.db);
    return conn;
}

/* A call's command got its reply: keep the connection for the next call. */
static void conn_release(conn_t *conn) {
    client_t *c = conn->c;
    if (c->closed || c->nidle >= c->pool) {
        conn_drop(conn, NULL);
        return;
    }
    conn->idle = 1;
    c->nidle++;
    redisc_uv_ref(conn->ac, 0);
}

static void req_unref(req_t *q) {
    if (--q->refs > 0) return;
    client_unref(q->c);
    free(q);
}

static void on_timer_closed(uv_handle_t *h) { req_unref(h->data); }

/* The request is over for its task: stop its timer and hand the nres
 * values pushed on the task's thread to it. */
static void finish(req_t *q, int nres) {
    task_t *t = q->task;
    q->task = NULL;
    if (q->timing) uv_close((uv_handle_t *)&q->timer, on_timer_closed);
    q->timing = 0;
    if (t) task_wake(t, nres);
}

/* Wake q's task with nil and a message. */
static void fail(req_t *q, const char *fmt, ...) {
    lua_State *co = task_thread(q->task);
    char msg[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lua_pushnil(co);
    lua_pushstring(co, msg);
    finish(q, 2);
}

/* Push r as a Lua value.  Inside an array, where nil would end the
 * sequence, a nil is luka.null and an error a table { err = message }. */
static void push_value(lua_State *L, const redisReply *r, int nested) {
    luaL_checkstack(L, 3, "a Redis reply nested too deep");
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, r->elements < 1 << 24 ? (int)r->elements : 0, 0);
        for (size_t i = 0; i < r->elements; i++) {
            push_value(L, r->element[i], 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        luaL_setmetatable(L, JSON_ARRAY_MT);
        break;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "err");
        break;
    default: /* REDIS_REPLY_NIL */
        if (nested) json_push_null(L);
        else lua_pushnil(L);
    }
}

/* The values a call returns for reply 1: value, nil, or nil and the
 * error. */
static int push_reply(lua_State *L) {
    const redisReply *r = lua_touserdata(L, 1);
    if (r->type == REDIS_REPLY_ERROR) {
        lua_pushnil(L);
        lua_pushlstring(L, r->str, r->len);
        return 2;
    }
    push_value(L, r, 0);
    return 1;
}

/* Hand r to q's task.  The conversion runs protected on the main thread
 * (the task's own is parked), under the app's memory limit like anything
 * its handler makes, and the values then move to the task. */
static void answer(req_t *q, const redisReply *r) {
    lua_State *L = q->c->L, *co = task_thread(q->task);
    int top = lua_gettop(L), rc, n;
    void *saved = script_active;

    lua_pushcfunction(L, push_reply);
    lua_pushlightuserdata(L, (void *)r);
    lua_getallocf(L, &script_active);
    rc = lua_pcall(L, 1, LUA_MULTRET, 0);
    script_active = saved;
    n = lua_gettop(L) - top;
    if (rc != LUA_OK || !lua_checkstack(co, n)) {
        lua_settop(L, top);
        fail(q, "redis %s: %s: the reply does not fit in memory (the app's memory_limit)",
             q->c->where, q->cmd);
        return;
    }
    lua_xmove(L, co, n);
    finish(q, n);
}

/* The reply to a call's command, or NULL when its connection dropped. */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    req_t *q = privdata;
    conn_t *conn = ac->data;

    q->conn = NULL;
    if (q->task && reply) {
        answer(q, reply);
    } else if (q->task && conn->err[0]) {
        fail(q, "redis %s: %s", q->c->where, conn->err);
    } else if (q->task) {
        fail(q, "redis %s: %s: %s; check that Redis runs there (the next call connects again)",
             q->c->where, q->cmd, ac->err ? ac->errstr : "the connection was closed");
    }
    if (reply && !conn->dropping) conn_release(conn);
    req_unref(q);
}

static void on_timeout(uv_timer_t *h) {
    req_t *q = h->data;
    conn_t *conn = q->conn;

    fail(q, "redis %s: %s timed out after %lld ms", q->c->where, q->cmd,
         (long long)q->c->timeout_ms);
    /* The reply will never be read: its connection goes, and with it the
     * request (task_wait's cancel does the same). */
    if (conn) conn_drop(conn, "timed out");
}

/* task_cancel_fn: the task stopped waiting (its own time limit, or it was
 * abandoned). */
static void cancel(void *req) {
    req_t *q = req;
    q->task = NULL; /* finish wakes nobody */
    finish(q, 0);
    if (q->conn) conn_drop(q->conn, "cancelled");
}

static client_t **check_client(lua_State *L) { return luaL_checkudata(L, 1, CLIENT_MT); }

static void check_command(lua_State *L, const char *name, int argc) {
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (strcasecmp(name, refused[i].name) == 0)
            luaL_argerror(L, 2, lua_pushfstring(L, "%s is not supported: %s", name, refused[i].why));
    if (strcasecmp(name, "CLIENT") == 0 && argc > 1 && strcasecmp(lua_tostring(L, 3), "REPLY") == 0)
        luaL_argerror(L, 2, "CLIENT REPLY is not supported: a call takes one reply");
}

/* client:call(cmd, ...) -> the reply; nil for a nil reply; nil, err for an
 * error reply or a failure.  Waits, without blocking the loop. */
static int l_call(lua_State *L) {
    client_t *c = *check_client(L);
    int argc = lua_gettop(L) - 1;
    const char **argv;
    size_t *lens;
    const char *why;
    char err[600], what[400];
    task_t *t;
    conn_t *conn;
    req_t *q;

    luaL_checkany(L, 2);
    for (int i = 2; i <= argc + 1; i++)
        if (lua_type(L, i) != LUA_TSTRING && lua_type(L, i) != LUA_TNUMBER)
            luaL_typeerror(L, i, "string or number");
    argv = lua_newuserdatauv(L, (size_t)argc * sizeof(*argv), 0);
    lens = lua_newuserdatauv(L, (size_t)argc * sizeof(*lens), 0);
    /* Numbers are written as tostring writes them, in their own slots. */
    for (int i = 0; i < argc; i++) argv[i] = lua_tolstring(L, i + 2, &lens[i]);
    check_command(L, argv[0], argc);

    if (!(t = task_self(L, &why))) {
        lua_pushnil(L);
        lua_pushfstring(L, "redis %s: %s: %s", c ? c->where : "", argv[0], why);
        return 2;
    }
    if (!c || c->closed) {
        lua_pushnil(L);
        lua_pushfstring(L, "redis %s: %s: the client is closed", c ? c->where : "", argv[0]);
        return 2;
    }
    if (!(conn = conn_get(c, task_loop(t), err, sizeof(err)))) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    if (!(q = calloc(1, sizeof(*q)))) {
        conn_release(conn);
        return luaL_error(L, "luka.redis: out of memory");
    }
    q->c = c;
    q->conn = conn;
    q->task = t;
    q->refs = 1; /* hiredis's answer */
    c->refs++;
    snprintf(q->cmd, sizeof(q->cmd), "%s", argv[0]);
    if (redisAsyncCommandArgv(conn->ac, on_reply, q, argc, argv, lens) != REDIS_OK) {
        /* Only a connection on its way out refuses a command. */
        q->task = NULL;
        req_unref(q);
        conn_drop(conn, NULL);
        lua_pushnil(L);
        lua_pushfstring(L, "redis %s: %s: the connection is closing; try again", c->where, argv[0]);
        return 2;
    }
    if (c->timeout_ms > 0) {
        uv_timer_init(task_loop(t), &q->timer);
        q->timer.data = q;
        q->timing = 1;
        q->refs++;
        uv_timer_start(&q->timer, on_timeout, (uint64_t)c->timeout_ms, 0);
    }
    snprintf(what, sizeof(what), "redis %s at %s", q->cmd, c->where);
    return task_wait(L, t, what, cancel, q);
}

/* Refuse new calls and drop every connection: the calls waiting on them
 * fail. */
static void client_close(client_t *c) {
    conn_t *conn, *next;
    c->closed = 1;
    c->refs++; /* a dropped connection may be the last to hold c */
    for (conn = c->conns; conn; conn = next) {
        next = conn->next;
        conn_drop(conn, "the client was closed");
    }
    client_unref(c);
}

/* client:close(): calls after it return nil, err. */
static int l_close(lua_State *L) {
    client_t *c = *check_client(L);
    if (c) client_close(c);
    return 0;
}

/* When the state closes, its tasks have cancelled their requests already,
 * so the requests these drops answer touch no Lua. */
static int l_gc(lua_State *L) {
    client_t **ud = check_client(L);
    if (*ud) {
        client_close(*ud);
        client_unref(*ud);
        *ud = NULL;
    }
    return 0;
}

static int l_tostring(lua_State *L) {
    client_t *c = *check_client(L);
    lua_pushfstring(L, "luka.redis %s%s", c ? c->where : "", c && c->closed ? " (closed)" : "");
    return 1;
}

/* redis(url, timeout_ms, pool) -> client, or nil and what is wrong with
 * the URL.  It connects at its first call. */
static int l_redis(lua_State *L) {
    const char *url = luaL_checkstring(L, 1);
    lua_Integer timeout_ms = luaL_checkinteger(L, 2), pool = luaL_checkinteger(L, 3);
    client_t **ud, *c;
    redis_url_t parsed;
    char err[600];

    if (redis_url_parse(url, &parsed, err, sizeof(err)) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    ud = lua_newuserdatauv(L, sizeof(*ud), 0);
    *ud = NULL;
    luaL_setmetatable(L, CLIENT_MT);
    if (!(c = calloc(1, sizeof(*c)))) return luaL_error(L, "luka.redis: out of memory");
    c->url = parsed;
    c->refs = 1; /* the userdata's */
    snprintf(c->where, sizeof(c->where), "%s:%d", c->url.host, c->url.port);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
    c->pool = pool > 0 ? (int)(pool < 1000 ? pool : 1000) : 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    c->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    *ud = c;
    return 1;
}

void redisc_inject_api(lua_State *L) {
    static const luaL_Reg methods[] = {{"call", l_call}, {"close", l_close}, {NULL, NULL}};
    if (luaL_newmetatable(L, CLIENT_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_redis);
    lua_setfield(L, -2, "redis");
}
