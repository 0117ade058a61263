/* timer.c - timers for Lua callbacks.  A timer made while the app script
 * loads waits until the state is bound to a loop.  Each call of its
 * callback runs as a task (lua/task.h), so it may wait on I/O (luka.sleep,
 * luka.http, luka.redis, a publish with wait) under the app's runtime
 * timeout; an error in it is logged, not fatal.  A tick of a repeating
 * timer that comes while its last call still runs is skipped, so calls of
 * one timer never overlap.  A state bound without a loop (the test kit)
 * keeps its timers on a virtual clock that only timer_advance moves; their
 * calls wait on the loop the clock names, each to its end before the next.
 *
 * Live timers are kept in a registry table, which anchors their userdata;
 * a finalizer of that table's stops them all when the state closes, so
 * nothing outside this file has to.  A stopped timer whose call still runs
 * is freed when that call ends. */
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
    int firing;   /* timer_advance runs it: stop() leaves the freeing to it */
    int closed;   /* its libuv handle is closed */
    int64_t due;  /* when manual: the virtual time it is due at */
    uint64_t seq; /* creation order, which fires timers due together */
    task_t *task; /* its callback's call while it runs, else NULL */
    uint64_t skipped; /* ticks that came while a call still ran */
    const timer_clock_t *clock; /* the virtual clock that fired it, or NULL */
    struct ltimer *next_busy;
} ltimer_t;

/* Timers whose callback runs (in every state): a stopped one is reached
 * from here alone, to be abandoned when its state closes. */
static ltimer_t *busy;

static void busy_remove(ltimer_t *t) {
    for (ltimer_t **p = &busy; *p; p = &(*p)->next_busy)
        if (*p == t) {
            *p = t->next_busy;
            return;
        }
}

/* Whether nothing holds t any longer: stopped, not running, its handle
 * (if it had one) closed. */
static void maybe_free(ltimer_t *t) {
    if (t->stopped && !t->task && !t->firing && (t->manual || !t->started || t->closed)) free(t);
}

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

static void timer_closed(uv_handle_t *h) {
    ltimer_t *t = h->data;
    t->closed = 1;
    maybe_free(t);
}

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
    if (!t->manual && t->started) uv_close((uv_handle_t *)&t->h, timer_closed);
    else maybe_free(t);
}

/* A call of t's callback ended. */
static void fired(task_t *task, int rc, const script_err_t *err, void *data) {
    ltimer_t *t = data;
    (void)task;
    if (t->task) busy_remove(t);
    t->task = NULL;
    if (rc != 0) {
        if (t->clock && t->clock->failed) t->clock->failed(t->clock->ud, err);
        else log_error("timer", "callback failed: %s\n%s", err->msg, err->traceback);
    }
    maybe_free(t);
}

/* The one way a timer's callback runs, on a loop or on the virtual clock:
 * as a task on loop, which may end before this returns. */
static void fire(ltimer_t *t, uv_loop_t *loop, const timer_clock_t *clock) {
    task_t *task;
    t->clock = clock;
    lua_rawgeti(t->L, LUA_REGISTRYINDEX, t->fn);
    if ((task = task_start(t->L, loop, 0, app_timeout(t->L), fired, t))) {
        t->task = task;
        t->next_busy = busy;
        busy = t;
    }
}

static void on_timer(uv_timer_t *h) {
    ltimer_t *t = h->data;

    if (t->task) {
        t->skipped++;
        log_debug("timer", "a tick of a timer every %llu ms is skipped: its last call still runs "
                           "(%llu skipped so far)",
                  (unsigned long long)t->ms, (unsigned long long)t->skipped);
        return;
    }
    fire(t, h->loop, NULL);
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

int timer_advance(lua_State *L, int64_t ms, const timer_clock_t *c) {
    int64_t until = clock_now(L) + ms;
    int nfired = 0;
    ltimer_t *t;

    while ((t = next_due(L, until))) {
        clock_set(L, t->due);
        t->firing = 1;
        fire(t, c->loop, c);
        /* The call runs to its end before the clock moves on: what it
         * waits for is answered between turns of the loop. */
        while (t->task) {
            if (c->turn) c->turn(c->ud);
            if (t->task) uv_run(c->loop, UV_RUN_ONCE);
        }
        t->firing = 0;
        nfired++;
        if (t->stopped) free(t); /* its callback stopped it */
        else if (t->repeat) t->due += (int64_t)t->ms;
        else stop(t);
    }
    clock_set(L, until);
    return nfired;
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

int timer_running(lua_State *L) {
    int n = 0;
    for (ltimer_t *t = busy; t; t = t->next_busy) n += t->L == L;
    return n;
}

void timer_close_all(lua_State *L) {
    timer_stop_all(L);
    for (ltimer_t **p = &busy; *p;) {
        ltimer_t *t = *p;
        if (t->L != L) {
            p = &t->next_busy;
            continue;
        }
        *p = t->next_busy;
        task_abandon(t->task);
        t->task = NULL;
        maybe_free(t);
    }
}

/* The timers table's finalizer: the state is closing. */
static int close_all(lua_State *L) {
    timer_close_all(L);
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
