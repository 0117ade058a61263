/* call.c - the one way the flow calls user code for a message: the
 * handler, a dedup key function, an error-channel function.  The payload
 * is decoded (or passed raw), meta built, and the call made under the
 * endpoint's time limit: the handler as a task that may wait on I/O, the
 * others through script_call().  Publishes made meanwhile belong to the
 * message. */
#include "flow/call.h"

#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "base/json.h"
#include "lua/meta.h"
#include "lua/task.h"

/* The message whose user code runs now in a plain call; a handler's is
 * its task's. */
static inflight_t *current;

static void ended(task_t *t, int rc, const script_err_t *terr, void *data);

/* The done callbacks of tasks whose data is a message in flight. */
static task_done_fn carriers[4] = {ended};
static int ncarriers = 1;

void call_carrier_tasks(task_done_fn done) {
    for (int i = 0; i < ncarriers; i++)
        if (carriers[i] == done) return;
    if (ncarriers < (int)(sizeof(carriers) / sizeof(carriers[0]))) carriers[ncarriers++] = done;
}

inflight_t *call_current(void) {
    if (current) return current;
    for (int i = 0; i < ncarriers; i++) {
        inflight_t *inf = task_running_data(carriers[i]);
        if (inf) return inf;
    }
    return NULL;
}

/* meta:pause: only the handler of the message whose meta it is, while it
 * runs; the flow carries it out when the handler returns. */
static int current_pause(const char *topic, int32_t partition, int64_t offset, int64_t ms) {
    inflight_t *inf = call_current();
    if (!inf || !inf->flow || inf->batch || inf->stage != STAGE_HANDLE ||
        inf->msg.partition != partition || inf->msg.offset != offset ||
        strcmp(inf->msg.topic, topic) != 0)
        return -1;
    inf->pause_ms = ms;
    return 0;
}

/* meta.trace_id: the trace of the message whose code runs now, if the
 * meta asking is its own (a meta kept from another message gets nil). */
static const char *current_trace(const char *topic, int32_t partition, int64_t offset) {
    inflight_t *inf = call_current();
    if (!inf || !inf->flow || inf->msg.partition != partition || inf->msg.offset != offset ||
        strcmp(inf->msg.topic, topic) != 0)
        return NULL;
    inflight_read_context(inf);
    return inf->trace.trace_id;
}

void call_push_meta(lua_State *L, inflight_t *inf) {
    meta_push(L, &inf->msg, inf->attempts, current_trace);
}

int call_push_payload(lua_State *L, inflight_t *inf, char *errbuf, size_t errlen) {
    const message_t *m = &inf->msg;
    char why[512];

    if (!m->payload) {
        lua_pushnil(L); /* a tombstone */
    } else if (inf->flow->conf->format == FORMAT_RAW) {
        lua_pushlstring(L, m->payload, m->len);
    } else if (json_decode(L, m->payload, m->len, why, sizeof(why)) != 0) {
        snprintf(errbuf, errlen, "decode error: %s", why);
        return -1;
    }
    return 0;
}

/* What call_user runs in protected mode: fn(msg, meta[, err]), or,
 * without fn, msg[field]. */
typedef struct call {
    inflight_t *inf;
    int fn;              /* registry ref, or LUA_NOREF */
    const char *field;   /* without fn: the payload field to read */
    int with_err;        /* pass inf's error as a third argument */
    int raw_on_bad_json; /* pass the bytes when the payload does not decode */
    int nresults;
} call_t;

/* Never resumed in fact: a call that yields has timed out and is dropped. */
static int trampoline_k(lua_State *L, int status, lua_KContext nresults) {
    (void)L, (void)status;
    return (int)nresults;
}

/* Runs protected, with the call at index 1: every allocation for the
 * user's code happens here, under its memory limit, where a memory error
 * is an error like any other. */
static int trampoline(lua_State *L) {
    call_t *c = lua_touserdata(L, 1);
    inflight_t *inf = c->inf;
    char err[600];

    if (c->fn != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, c->fn);
    if (call_push_payload(L, inf, err, sizeof(err)) != 0) {
        if (!c->raw_on_bad_json) {
            /* Not retryable: the same bytes will never decode. */
            lua_pushstring(L, err);
            script_push_fatal(L, -1);
            return lua_error(L);
        }
        lua_pushlstring(L, inf->msg.payload, inf->msg.len);
    }
    if (c->fn == LUA_NOREF) {
        if (lua_istable(L, -1)) lua_getfield(L, -1, c->field);
        else lua_pushnil(L);
        return 1;
    }
    meta_set_pause(current_pause);
    call_push_meta(L, inf);
    if (c->with_err) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, inf->error ? inf->error : "");
        lua_setfield(L, -2, "message");
        lua_pushstring(L, inf->traceback ? inf->traceback : "");
        lua_setfield(L, -2, "traceback");
        lua_pushinteger(L, inf->attempts);
        lua_setfield(L, -2, "attempts");
    }
    /* With a continuation, so the time limit's yield can pass through. */
    lua_callk(L, c->with_err ? 3 : 2, c->nresults, c->nresults, trampoline_k);
    return c->nresults;
}

/* A publish that could not be queued fails the message too; a decode
 * error has no traceback worth showing. */
static int conclude(inflight_t *inf, int rc, script_err_t *err) {
    if (rc == 0 && inf->error) {
        snprintf(err->msg, sizeof(err->msg), "%s", inf->error);
        err->traceback[0] = '\0';
        err->fatal = 0;
        rc = -1;
    }
    if (rc && strncmp(err->msg, "decode error:", 13) == 0) err->traceback[0] = '\0';
    return rc;
}

static void ended(task_t *t, int rc, const script_err_t *terr, void *data) {
    inflight_t *inf = data;
    script_err_t err;
    (void)t;
    inf->task = NULL;
    if (terr) err = *terr;
    else err.msg[0] = err.traceback[0] = '\0', err.fatal = 0;
    rc = conclude(inf, rc, &err);
    inf->done(inf, rc, &err);
}

void call_start(inflight_t *inf, int fn, call_done_fn done) {
    flow_t *f = inf->flow;
    lua_State *L = f->L;
    call_t c = {inf, fn, NULL, 0, 0, 0};

    inf->done = done;
    lua_pushcfunction(L, trampoline);
    lua_pushlightuserdata(L, &c); /* read before the first wait only */
    inf->task = task_start(L, f->loop, 1, f->conf->policy.timeout_ms, ended, inf);
}

int call_user(inflight_t *inf, int fn, const char *field, int with_err, int nresults,
                  script_err_t *err) {
    flow_t *f = inf->flow;
    lua_State *L = f->L;
    call_t c = {inf, fn, field, with_err, with_err, nresults};
    inflight_t *outer = current;
    int rc;

    lua_pushcfunction(L, trampoline);
    lua_pushlightuserdata(L, &c);
    /* Calls do not nest (delivery reports wait for the loop), but if one
     * did, the outer handler's later publishes must stay its own. */
    current = inf;
    rc = script_call(L, 1, nresults, f->conf->policy.timeout_ms, err);
    current = outer;
    if (with_err) return rc;
    if (rc == 0 && inf->error) lua_pop(L, nresults);
    return conclude(inf, rc, err);
}
