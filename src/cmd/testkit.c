/* testkit.c - require "luka.test": load an app into a harness, deliver
 * messages to its endpoints through the real pipeline (testkit_flow.c),
 * run its timers on a virtual clock, and look at what happened.  The
 * harness is a host without Kafka: its publishers record instead of
 * producing (testkit_sink.c), and its handlers wait on a loop of its own.
 * The app runs in its own Lua state, as in production; payloads cross as
 * JSON or strings. */
#include "cmd/testkit.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "api/httpc.h"
#include "api/lapi.h"
#include "api/timer.h"
#include "app/app.h"
#include "base/json.h"
#include "cmd/testkit_flow.h"
#include "cmd/testkit_log.h"
#include "cmd/testkit_sink.h"
#include "lua/script.h"
#include "lua/task.h"

#define HARNESS_MT "luka.test.harness"

struct testkit {
    app_t *app;
    testkit_sinks_t sinks; /* the pretend broker */
    testkit_flows_t *flows;
    api_env_t api;
    int64_t now;    /* the virtual clock: ms advanced since load */
    uv_loop_t loop; /* where handlers and timer callbacks wait on I/O (timers stay virtual) */
    testkit_logs_t *logs; /* what was logged since load */
};

static struct testkit *check(lua_State *L) {
    struct testkit **ud = luaL_checkudata(L, 1, HARNESS_MT);
    luaL_argcheck(L, *ud != NULL, 1, "the harness is closed");
    testkit_logs_capture((*ud)->logs); /* what its app logs now is its */
    return *ud;
}

static void close_kit(struct testkit *tk) {
    if (tk->flows) testkit_flows_close(tk->flows);
    /* Closing the state stops its timers (on the virtual clock: freed). */
    app_free(tk->app);
    task_close_loop(&tk->loop);
    httpc_close_loop(&tk->loop);
    uv_run(&tk->loop, UV_RUN_DEFAULT); /* the closes */
    uv_loop_close(&tk->loop);
    testkit_sinks_close(&tk->sinks);
    testkit_logs_free(tk->logs);
    free(tk);
}

/* Push the app script test.load means: path as it is when absolute, else
 * from the directory of the Lua file that called test.load (the spec), else
 * from the current directory (the project root).  Raises naming both when
 * neither has it. */
static const char *resolve(lua_State *L, const char *path) {
    const char *spec = NULL, *slash;
    lua_Debug ar;

    if (path[0] == '/') return lua_pushstring(L, path);
    /* The nearest caller written in a file, past pcall and the like. */
    for (int level = 1; !spec && lua_getstack(L, level, &ar); level++)
        if (lua_getinfo(L, "S", &ar) && ar.source[0] == '@') spec = ar.source + 1;
    if (spec) {
        slash = strrchr(spec, '/');
        lua_pushlstring(L, spec, slash ? (size_t)(slash - spec + 1) : 0);
        lua_pushstring(L, path);
        lua_concat(L, 2);
        if (access(lua_tostring(L, -1), R_OK) == 0) return lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    if (access(path, R_OK) == 0) return lua_pushstring(L, path);
    luaL_error(L, "luka.test.load: no app script '%s' beside %s or in the current directory", path,
               spec ? spec : "the spec");
    return NULL;
}

/* Set each variable of the table at index env (a string, or false to
 * unset it), pushing a table of the values they had for restore_env. */
static void set_env(lua_State *L, int env) {
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, env)) {
        /* Stack: ..., old, name, value */
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!name || !(lua_type(L, -1) == LUA_TSTRING ||
                       (lua_isboolean(L, -1) && !lua_toboolean(L, -1))))
            luaL_error(L, "luka.test.load: opts.env: give NAME = \"value\" or NAME = false");
        if (getenv(name)) lua_pushstring(L, getenv(name));
        else lua_pushboolean(L, 0);
        lua_setfield(L, -4, name);
        if (lua_isstring(L, -1)) setenv(name, lua_tostring(L, -1), 1);
        else unsetenv(name);
        lua_pop(L, 1);
    }
}

/* Put back the variables of the table on top (from set_env), and pop it. */
static void restore_env(lua_State *L) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_isstring(L, -1)) setenv(lua_tostring(L, -2), lua_tostring(L, -1), 1);
        else unsetenv(lua_tostring(L, -2));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* test.load(app_path [, { env = { NAME = value } }]) -> harness */
static int l_load(lua_State *L) {
    const char *path;
    struct testkit *tk, **ud;
    int env = 0;
    char err[2048];

    luaL_checkstring(L, 1);
    lua_settop(L, 2);
    /* Stack: path, opts, [env,] the resolved path */
    if (!lua_isnil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "env") != LUA_TNIL) {
            luaL_checktype(L, -1, LUA_TTABLE);
            env = lua_gettop(L);
        }
    }
    path = resolve(L, lua_tostring(L, 1));
    ud = lua_newuserdatauv(L, sizeof(*ud), 0);
    *ud = NULL;
    luaL_setmetatable(L, HARNESS_MT);
    if (env) set_env(L, env);
    tk = calloc(1, sizeof(*tk));
    uv_loop_init(&tk->loop);
    testkit_logs_capture(tk->logs = testkit_logs_new());
    /* The environment is the test's while the script loads, and only then. */
    tk->app = app_load(path, NULL, lapi_open, err, sizeof(err));
    if (env) restore_env(L);
    if (!tk->app) {
        close_kit(tk);
        return luaL_error(L, "luka.test.load: %s", err);
    }
    testkit_sinks_open(&tk->sinks, tk->app);
    /* No loop: the app's timers wait on the virtual clock harness:advance moves. */
    tk->api = (api_env_t){NULL, &tk->sinks.sinks};
    if (!(tk->flows = testkit_flows_open(tk->app, &tk->loop, &tk->sinks, err, sizeof(err)))) {
        close_kit(tk);
        return luaL_error(L, "luka.test.load: %s", err);
    }
    api_bind(tk->app->L, &tk->api);
    lapi_start(tk->app->L);
    /* The publishes of the script's load are answered now. */
    testkit_sinks_ack(&tk->sinks);
    *ud = tk;
    return 1;
}

/* harness:deliver(endpoint, payload [, meta]) -> result */
static int l_deliver(lua_State *L) { return testkit_deliver(L, check(L)->flows); }

/* harness:deliver_all(endpoint, { { payload, meta }, ... }) -> results */
static int l_deliver_all(lua_State *L) { return testkit_deliver_all(L, check(L)->flows); }

/* harness:deliver_batch(endpoint, { { payload, meta }, ... }) -> results,
 * with results.calls the sizes of the handle_batch calls made */
static int l_deliver_batch(lua_State *L) {
    return testkit_deliver_batch(L, check(L)->flows, 1);
}

/* harness:published() -> every message published since the app loaded */
static int l_published(lua_State *L) {
    testkit_push_records(L, &check(L)->sinks, 0);
    return 1;
}

/* harness:logs() -> every record logged since the app loaded */
static int l_logs(lua_State *L) {
    testkit_logs_push(L, check(L)->logs, 0, NULL);
    return 1;
}

/* harness:fail_publishes(n): the next n publishes are not acknowledged. */
static int l_fail_publishes(lua_State *L) {
    struct testkit *tk = check(L);
    tk->sinks.fail_next = (int)luaL_optinteger(L, 2, 1);
    return 0;
}

/* harness:counters(endpoint) -> the endpoint's decision counters */
static int l_counters(lua_State *L) {
    struct testkit *tk = check(L);
    flow_t *f = testkit_flow(L, tk->flows, luaL_checkstring(L, 2));
    const endpoint_stats_t *s = &f->stats;
    const struct { const char *name; uint64_t v; } c[] = {
        {"consumed", s->consumed},       {"handled", s->handled},
        {"failed", s->failed},           {"retried", s->retried},
        {"dead_lettered", s->dead_lettered}, {"deduplicated", s->deduplicated},
        {"resent", s->resent},           {"released", s->released},
        {"ignored", s->ignored},         {"stopped", s->stopped},
        {"paused", s->paused},
    };
    lua_createtable(L, 0, 11);
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        lua_pushinteger(L, (lua_Integer)c[i].v);
        lua_setfield(L, -2, c[i].name);
    }
    return 1;
}

/* Collects the failures of timer callbacks into the table at index t. */
typedef struct timer_errors {
    lua_State *L;
    int t;
    struct testkit *tk;
} timer_errors_t;

/* While a timer's callback waits: the pretend broker answers what was
 * published, so a publish it waits for is acknowledged. */
static void timer_turn(void *ud) { testkit_sinks_ack(&((timer_errors_t *)ud)->tk->sinks); }

static void timer_failed(void *ud, const script_err_t *err) {
    timer_errors_t *e = ud;
    lua_pushstring(e->L, err->msg);
    lua_rawseti(e->L, e->t, (lua_Integer)luaL_len(e->L, e->t) + 1);
}

/* harness:advance(ms or duration) -> { fired, errors, published, now } */
static int l_advance(lua_State *L) {
    struct testkit *tk = check(L);
    int first = tk->sinks.nrecs, fired;
    lua_Integer ms;
    timer_errors_t errors;

    /* Stack: harness, interval; luka.dsl reads a duration as the app would. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luka.dsl");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "duration");
    lua_pushvalue(L, 2);
    lua_call(L, 1, 2);
    if (!lua_isinteger(L, -2)) return luaL_argerror(L, 2, lua_tostring(L, -1));
    ms = lua_tointeger(L, -2);
    lua_settop(L, 1);
    lua_createtable(L, 0, 4);
    lua_newtable(L);
    errors = (timer_errors_t){L, lua_gettop(L), tk};
    /* What the timers published is answered (while a callback waits, and
     * at the end), and an on_delivery that fails counts among the errors. */
    tk->sinks.hook_failed = timer_failed;
    tk->sinks.hook_ud = &errors;
    fired = timer_advance(tk->app->L, ms,
                          &(timer_clock_t){&tk->loop, timer_turn, timer_failed, &errors});
    testkit_sinks_ack(&tk->sinks);
    tk->sinks.hook_failed = NULL;
    lua_setfield(L, -2, "errors");
    lua_pushinteger(L, fired);
    lua_setfield(L, -2, "fired");
    testkit_push_records(L, &tk->sinks, first);
    lua_setfield(L, -2, "published");
    lua_pushinteger(L, tk->now += ms);
    lua_setfield(L, -2, "now");
    return 1;
}

static int l_close(lua_State *L) {
    struct testkit **ud = luaL_checkudata(L, 1, HARNESS_MT);
    if (*ud) close_kit(*ud);
    *ud = NULL;
    return 0;
}

int testkit_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"deliver", l_deliver},   {"deliver_all", l_deliver_all},
        {"deliver_batch", l_deliver_batch},
        {"published", l_published}, {"logs", l_logs},
        {"fail_publishes", l_fail_publishes},
        {"counters", l_counters}, {"advance", l_advance},
        {"close", l_close},       {NULL, NULL}};
    json_init(L);
    if (luaL_newmetatable(L, HARNESS_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_load);
    lua_setfield(L, -2, "load");
    json_push_null(L);
    lua_setfield(L, -2, "null");
    lua_newtable(L);
    json_inject_api(L);
    lua_setfield(L, -2, "json");
    return 1;
}
