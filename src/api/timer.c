/* timer.c - timers for Lua callbacks.  A timer made while the app script
 * loads waits until the state is bound to a loop; its callback runs
 * through script_call() under the app's runtime timeout, and an error in
 * it is logged, not fatal.  A state bound without a loop (the test kit)
 * keeps its timers on a virtual clock that only timer_advance moves.
 *
 * Live timers are kept in a registry table, which anchors their userdata;
 * a finalizer of that table's stops them all when the state closes, so
 * nothing outside this file has to. */
#include "api/timer.h"

#include <stdlib.h>

#include <lauxlib.h>

#include "api/env.h"
#include "app/app.h"
#include "base/log.h"
#include "lua/script.h"
#include "lua/task.h"
#include "lua/state.h"

#define TIMER_MT "luka.timer"
#define TIMERS_MT "luka.timers"

static const char TIMERS_KEY = 't';
static const char CLOCK_KEY = 'c';

typedef struct ltimer {
    uv_timer_t h;
    lua_State *L;
    int fn; /* registry ref */
    uint64_t ms;
    int repeat;
    int started, stopped;
    int manual;   /* on the virtual clock: only timer_advance fires it */
    int firing;   /* its callback runs: stop() leaves the freeing to the firer */
    int64_t due;  /* when manual: the virtual time it is due at */
    uint64_t seq; /* creation order, which fires timers due together */
} ltimer_t;

/* The virtual clock of a state bound without a loop, in ms from binding. */
static int64_t clock_now(lua_State *L) {
    int64_t now;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CLOCK_KEY);
    now = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return now;
}

static void clock_set(lua_State *L, int64_t now) {
    lua_pushinteger(L, now);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CLOCK_KEY);
}

static int close_all(lua_State *L);

/* The registry's table of live timers, made on first use with the
 * finalizer that stops them when the state closes. */
static void push_timers(lua_State *L) {
    if (!state_registry_table(L, &TIMERS_KEY)) return;
    if (luaL_newmetatable(L, TIMERS_MT)) {
        lua_pushcfunction(L, close_all);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
}

static void free_timer(uv_handle_t *h) { free(h->data); }

/* Stop t, and detach it from its userdata, which may outlive it. */
static void stop(ltimer_t *t) {
    lua_State *L = t->L;
    if (t->stopped) return;
    t->stopped = 1;
    luaL_unref(L, LUA_REGISTRYINDEX, t->fn);
    push_timers(L);
    if (lua_rawgetp(L, -1, t) == LUA_TUSERDATA) *(ltimer_t **)lua_touserdata(L, -1) = NULL;
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawsetp(L, -2, t);
    lua_pop(L, 1);
    if (t->manual) {
        if (!t->firing) free(t);
    } else if (t->started) {
        uv_close((uv_handle_t *)&t->h, free_timer);
    } else {
        free(t);
    }
}

/* The one way a timer's callback runs, on a loop or on the virtual clock. */
static int fire(ltimer_t *t, script_err_t *err) {
    lua_rawgeti(t->L, LUA_REGISTRYINDEX, t->fn);
    return script_call(t->L, 0, 0, app_timeout(t->L), err);
}

static void on_timer(uv_timer_t *h) {
    ltimer_t *t = h->data;
    script_err_t err;

    if (fire(t, &err) != 0) log_error("timer", "callback failed: %s\n%s", err.msg, err.traceback);
    if (!t->repeat) stop(t);
}

static void start(ltimer_t *t, uv_loop_t *loop) {
    if (!loop) {
        t->manual = t->started = 1;
        t->due = clock_now(t->L) + (int64_t)t->ms;
        return;
    }
    uv_timer_init(loop, &t->h);
    t->h.data = t;
    t->started = 1;
    uv_timer_start(&t->h, on_timer, t->ms, t->repeat ? t->ms : 0);
}

/* The userdata holds a pointer: the timer itself must live until libuv's
 * close callback, which can be after the userdata is collected. */
static ltimer_t **check(lua_State *L) { return luaL_checkudata(L, 1, TIMER_MT); }

static int l_stop(lua_State *L) {
    ltimer_t **ud = check(L);
    if (*ud) stop(*ud);
    return 0;
}

/* Timers made so far, in every state: their creation order. */
static uint64_t created;

/* timer(ms, repeat, fn) -> timer object with :stop() */
static int l_timer(lua_State *L) {
    lua_Integer ms = luaL_checkinteger(L, 1);
    int repeat = lua_toboolean(L, 2);
    const api_env_t *env = api_env(L);
    ltimer_t **ud, *t;

    luaL_argcheck(L, ms > 0, 1, "the interval must be positive");
    luaL_checktype(L, 3, LUA_TFUNCTION);
    t = calloc(1, sizeof(*t));
    t->seq = ++created;
    /* Not L: that may be the coroutine a limited call runs in, and the
     * callback must run on the state's main thread. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    t->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    t->ms = (uint64_t)ms;
    t->repeat = repeat;
    lua_pushvalue(L, 3);
    t->fn = luaL_ref(L, LUA_REGISTRYINDEX);

    ud = lua_newuserdatauv(L, sizeof(*ud), 0);
    *ud = t;
    luaL_setmetatable(L, TIMER_MT);
    push_timers(L);
    lua_pushlightuserdata(L, t);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    if (env) start(t, env->loop);
    return 1;
}

void timer_start_all(lua_State *L, uv_loop_t *loop) {
    push_timers(L);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        ltimer_t *t = lua_touserdata(L, -2);
        if (!t->started) start(t, loop);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* The live manual timer due first, at or before until; NULL if none. */
static ltimer_t *next_due(lua_State *L, int64_t until) {
    ltimer_t *next = NULL;
    push_timers(L);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        ltimer_t *t = lua_touserdata(L, -2);
        if (t->manual && !t->stopped && t->due <= until &&
            (!next || t->due < next->due || (t->due == next->due && t->seq < next->seq)))
            next = t;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return next;
}

int timer_advance(lua_State *L, int64_t ms, timer_error_cb on_error, void *ud) {
    int64_t until = clock_now(L) + ms;
    int fired = 0;
    ltimer_t *t;

    while ((t = next_due(L, until))) {
        script_err_t err;
        clock_set(L, t->due);
        t->firing = 1;
        if (fire(t, &err) != 0 && on_error) on_error(ud, &err);
        t->firing = 0;
        fired++;
        if (t->stopped) free(t); /* its callback stopped it */
        else if (t->repeat) t->due += (int64_t)t->ms;
        else stop(t);
    }
    clock_set(L, until);
    return fired;
}

void timer_stop_all(lua_State *L) {
    push_timers(L);
    /* Stopping removes entries, so take them one at a time from the top. */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        ltimer_t *t = lua_touserdata(L, -2);
        lua_pop(L, 2);
        stop(t);
        lua_pushnil(L);
    }
    lua_pop(L, 1);
}

/* The timers table's finalizer: the state is closing. */
static int close_all(lua_State *L) {
    timer_stop_all(L);
    return 0;
}

/* luka.sleep: a timer that resumes the handler waiting for it. */
typedef struct sleeper {
    uv_timer_t timer;
    task_t *task;
} sleeper_t;

static void free_sleeper(uv_handle_t *h) { free(h->data); }

static void on_slept(uv_timer_t *timer) {
    sleeper_t *s = timer->data;
    lua_pushboolean(task_thread(s->task), 1);
    task_wake(s->task, 1);
    uv_close((uv_handle_t *)timer, free_sleeper);
}

static void sleep_cancel(void *req) {
    sleeper_t *s = req;
    uv_close((uv_handle_t *)&s->timer, free_sleeper);
}

/* sleep(ms) -> true, or nil, err when the caller cannot wait */
static int l_sleep(lua_State *L) {
    lua_Integer ms = luaL_checkinteger(L, 1);
    const char *why;
    char what[64];
    task_t *task = task_self(L, &why);
    sleeper_t *s;

    luaL_argcheck(L, ms >= 0, 1, "the duration must not be negative");
    if (!task) {
        lua_pushnil(L);
        lua_pushfstring(L, "luka.sleep: %s", why);
        return 2;
    }
    s = malloc(sizeof(*s));
    s->task = task;
    uv_timer_init(task_loop(task), &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_slept, (uint64_t)ms, 0);
    snprintf(what, sizeof(what), "luka.sleep(%lld ms)", (long long)ms);
    return task_wait(L, task, what, sleep_cancel, s);
}

void timer_inject_api(lua_State *L) {
    if (luaL_newmetatable(L, TIMER_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, l_stop);
        lua_setfield(L, -2, "stop");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_timer);
    lua_setfield(L, -2, "timer");
    lua_pushcfunction(L, l_sleep);
    lua_setfield(L, -2, "sleep");
}
