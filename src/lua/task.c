/* task.c - calls of user Lua code that may wait: each runs in a coroutine
 * of its own, parked by a waiting API call and resumed from the loop, as
 * OpenResty runs a request.  The coroutines are pooled, so a task that
 * never waits costs no more than a plain limited call. */
#include "lua/task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

struct task {
    lua_State *L;  /* the main state */
    lua_State *co; /* anchored by ref in L's registry */
    int ref;
    uv_loop_t *loop;
    int64_t deadline_ms, timeout_ms;
    task_done_fn done;
    void *data;
    int waiting;        /* parked in task_wait, not yet resumed */
    int woken;          /* its answer came: queued for resumption */
    int nres;           /* values pushed for the resumption */
    task_cancel_fn cancel; /* the pending request, until answered */
    void *req;
    char what[200];
    uv_timer_t timer;   /* the deadline while parked */
    int timer_on;       /* the timer was initialised: free once closed */
    struct task *prev, *next;  /* live tasks */
    struct task *wnext;        /* the wake queue */
    int *ended;                /* set when it ends, for task_start */
};

/* Every task not ended yet, for task_count and task_shutdown. */
static task_t *live;
/* The task whose code runs now (tasks nest when a done callback starts
 * another). */
static task_t *running;

/* Tasks answered, resumed on the loop's next turn: an answer may come in
 * the middle of a library's callback (curl's, hiredis's), where running
 * user code that starts new requests is not safe.  One queue per loop
 * (the test kit runs a loop per harness). */
typedef struct waker {
    uv_loop_t *loop;
    uv_idle_t idle;
    task_t *head, *tail;
    struct waker *next;
} waker_t;
static waker_t *wakers;

static waker_t *waker_of(uv_loop_t *loop) {
    waker_t *w;
    for (w = wakers; w; w = w->next)
        if (w->loop == loop) return w;
    w = calloc(1, sizeof(*w));
    w->loop = loop;
    uv_idle_init(loop, &w->idle);
    w->idle.data = w;
    w->next = wakers;
    wakers = w;
    return w;
}

/* Idle coroutines of the state used last, anchored by their refs.  A
 * task takes one, a task that ends gives it back. */
#define POOL_MAX 64
static struct {
    void *ud; /* whose: the state's allocator data */
    lua_State *L;
    int n;
    struct {
        lua_State *co;
        int ref;
    } slot[POOL_MAX];
} pool;

static void pool_flush(void) {
    for (int i = 0; i < pool.n; i++) luaL_unref(pool.L, LUA_REGISTRYINDEX, pool.slot[i].ref);
    pool.n = 0;
    pool.ud = NULL;
    pool.L = NULL;
}

static void take_thread(task_t *t) {
    void *ud;
    lua_getallocf(t->L, &ud);
    if (pool.ud == ud && pool.n > 0) {
        pool.n--;
        t->co = pool.slot[pool.n].co;
        t->ref = pool.slot[pool.n].ref;
        return;
    }
    t->co = lua_newthread(t->L);
    t->ref = luaL_ref(t->L, LUA_REGISTRYINDEX);
}

/* Hand co back clean: a coroutine that failed or was stopped may have left
 * frames and to-be-closed variables behind, and Lua 5.4.4's
 * lua_resetthread leaves the error object on the stack. */
static void give_thread(task_t *t, int dirty) {
    void *ud;
    if (dirty) lua_resetthread(t->co);
    lua_settop(t->co, 0);
    lua_getallocf(t->L, &ud);
    if (pool.ud != ud && pool.n == 0) {
        pool.ud = ud;
        pool.L = t->L;
    }
    if (pool.ud == ud && pool.n < POOL_MAX) {
        pool.slot[pool.n].co = t->co;
        pool.slot[pool.n].ref = t->ref;
        pool.n++;
    } else {
        luaL_unref(t->L, LUA_REGISTRYINDEX, t->ref);
    }
    t->co = NULL;
}

void task_forget(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    if (pool.ud == ud) {
        pool.n = 0; /* the refs die with the state */
        pool.ud = NULL;
        pool.L = NULL;
    }
}

static void free_task(uv_handle_t *h) { free(h->data); }

/* Ended tasks that never armed their timer, kept for the next calls: a
 * call per message costs no malloc. */
#define SPARE_MAX 64
static task_t *spare;
static int nspare;

static void release(task_t *t) {
    if (t->prev) t->prev->next = t->next;
    else live = t->next;
    if (t->next) t->next->prev = t->prev;
    if (t->timer_on) {
        t->timer.data = t;
        uv_close((uv_handle_t *)&t->timer, free_task);
    } else if (nspare < SPARE_MAX) {
        t->next = spare;
        spare = t;
        nspare++;
    } else {
        free(t);
    }
}

static task_t *new_task(void) {
    task_t *t = spare;
    if (!t) return calloc(1, sizeof(task_t));
    spare = t->next;
    nspare--;
    memset(t, 0, sizeof(*t));
    return t;
}

static void unqueue(task_t *t) {
    waker_t *w = waker_of(t->loop);
    task_t **p = &w->head, *prev = NULL;
    while (*p && *p != t) prev = *p, p = &(*p)->wnext;
    if (!*p) return;
    *p = t->wnext;
    if (w->tail == t) w->tail = prev;
}

/* End t, whose last resume returned status: back with its coroutine, then
 * tell its owner. */
static void finish(task_t *t, int rc, const script_err_t *err, int status) {
    task_done_fn done = t->done;
    void *data = t->data;
    lua_State *L = t->L;

    if (t->ended) *t->ended = 1;
    give_thread(t, status != LUA_OK);
    release(t);
    if (status == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT); /* give the memory back now */
    done(t, rc, err, data);
}

static void on_deadline(uv_timer_t *timer);

/* Run t until it waits or ends. */
static void step(task_t *t, int nargs) {
    task_t *outer = running;
    script_frame_t saved;
    script_err_t err;
    int status, nres = 0, timed_out;

    t->waiting = t->woken = 0;
    running = t;
    script_enter(&saved, t->L, t->co, t->deadline_ms, t->timeout_ms);
    status = lua_resume(t->co, t->L, nargs, &nres);
    timed_out = script_leave(&saved, t->co);
    running = outer;

    if (status == LUA_YIELD && !timed_out && t->waiting) {
        /* Parked: the request runs, and so does the deadline. */
        if (t->timeout_ms > 0) {
            int64_t left = t->deadline_ms - script_now_ms();
            if (!t->timer_on) {
                uv_timer_init(t->loop, &t->timer);
                t->timer.data = t;
                t->timer_on = 1;
            }
            uv_timer_start(&t->timer, on_deadline, left > 0 ? (uint64_t)left : 0, 0);
        }
        return;
    }
    if (t->waiting && t->cancel) {
        /* Stopped by its deadline right after it asked: nothing comes back. */
        t->cancel(t->req);
        t->cancel = NULL;
    }
    if (status == LUA_OK && !timed_out) {
        finish(t, 0, NULL, 0);
        return;
    }
    script_failure(t->L, t->co, status, timed_out, t->timeout_ms, &err);
    finish(t, -1, &err, status == LUA_OK ? LUA_YIELD : status);
}

static void on_deadline(uv_timer_t *timer) {
    task_t *t = timer->data;
    script_err_t err;

    if (!t->waiting || t->woken) return; /* answered in time */
    if (t->cancel) t->cancel(t->req);
    t->cancel = NULL;
    snprintf(err.msg, sizeof(err.msg), "timed out after %d ms waiting for %s", (int)t->timeout_ms,
             t->what);
    luaL_traceback(t->L, t->co, NULL, 0);
    snprintf(err.traceback, sizeof(err.traceback), "%s", lua_tostring(t->L, -1));
    lua_pop(t->L, 1);
    err.fatal = 0;
    finish(t, -1, &err, LUA_YIELD);
}

static void on_wake(uv_idle_t *idle) {
    waker_t *w = idle->data;
    /* Only what was queued before this turn: a task resumed now may wake
     * others, which wait for the next turn like any answer. */
    task_t *last = w->tail;
    while (w->head) {
        task_t *t = w->head;
        w->head = t->wnext;
        if (!w->head) w->tail = NULL;
        step(t, t->nres);
        if (t == last) break;
    }
    if (!w->head) uv_idle_stop(idle);
}

task_t *task_start(lua_State *L, uv_loop_t *loop, int nargs, int64_t timeout_ms,
                   task_done_fn done, void *data) {
    task_t *t = new_task();
    int ended = 0;

    t->L = L;
    t->loop = loop;
    t->timeout_ms = timeout_ms;
    t->deadline_ms = timeout_ms > 0 ? script_now_ms() + timeout_ms : INT64_MAX;
    t->done = done;
    t->data = data;
    t->next = live;
    if (live) live->prev = t;
    live = t;
    t->ended = &ended;
    take_thread(t);
    lua_xmove(L, t->co, nargs + 1); /* co: fn, args */
    step(t, nargs);
    /* Ended: done has run, and t is gone.  Otherwise it waits. */
    if (ended) return NULL;
    t->ended = NULL;
    return t;
}

task_t *task_self(lua_State *L, const char **why) {
    task_t *t = running;
    if (!t) {
        *why = "it can only wait inside a handler, an error channel function or a timer "
               "callback, not while the app script loads";
        return NULL;
    }
    if (L != t->co) {
        *why = "it can only wait in the handler's own coroutine, not inside a coroutine the "
               "handler made (coroutine.wrap, coroutine.create)";
        return NULL;
    }
    if (!lua_isyieldable(L)) {
        *why = "it cannot wait inside a C function that calls back into Lua (table.sort, "
               "string.gsub, a metamethod)";
        return NULL;
    }
    if (!t->loop) {
        *why = "nothing runs an event loop here";
        return NULL;
    }
    return t;
}

uv_loop_t *task_loop(const task_t *t) { return t->loop; }

void *task_running_data(task_done_fn done) {
    return running && running->done == done ? running->data : NULL;
}

int task_wait(lua_State *L, task_t *t, const char *what, task_cancel_fn cancel, void *req) {
    t->waiting = 1;
    t->cancel = cancel;
    t->req = req;
    snprintf(t->what, sizeof(t->what), "%s", what);
    return lua_yield(L, 0);
}

lua_State *task_thread(task_t *t) { return t->co; }

void task_wake(task_t *t, int nres) {
    waker_t *w = waker_of(t->loop);
    t->cancel = NULL;
    t->woken = 1;
    t->nres = nres;
    if (t->timer_on) uv_timer_stop(&t->timer);
    t->wnext = NULL;
    if (w->tail) w->tail->wnext = t;
    else w->head = t;
    w->tail = t;
    uv_idle_start(&w->idle, on_wake);
}

void task_abandon(task_t *t) {
    if (t->cancel) t->cancel(t->req);
    t->cancel = NULL;
    if (t->woken) unqueue(t);
    give_thread(t, 1);
    release(t);
}

int task_count(lua_State *L) {
    int n = 0;
    for (task_t *t = live; t; t = t->next) n += t->L == L;
    return n;
}

static void free_waker(uv_handle_t *h) { free(h->data); }

void task_close_loop(uv_loop_t *loop) {
    for (waker_t **p = &wakers; *p; p = &(*p)->next)
        if ((*p)->loop == loop) {
            waker_t *w = *p;
            *p = w->next;
            uv_close((uv_handle_t *)&w->idle, free_waker);
            return;
        }
}

void task_shutdown(void) {
    while (live) task_abandon(live);
    if (pool.L) pool_flush();
    while (spare) {
        task_t *t = spare;
        spare = t->next;
        free(t);
    }
    nspare = 0;
}
