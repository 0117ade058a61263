/* batch_call.c - one call of a batch handler: the sequence of { msg,
 * meta } built (a message whose payload does not decode left out, to fail
 * on its own), batch:resolve behind it, handle_batch run as one task; then
 * the resolved prefix settled (the first message carrying the call's
 * publishes), and the unresolved rest taken to the policy: an instant
 * retry at once, a delayed retry through the batches (batch.c), or, once
 * they are used up, each message its own way out through the outcome
 * code (dead letter, final failure). */
#include "flow/batch_call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <uv.h>

#include "base/log.h"
#include "flow/call.h"
#include "flow/outcome.h"
#include "flow/policy.h"
#include "lua/meta.h"
#include "lua/script.h"

#define CTX(inf) INFLIGHT_CTX(inf)

void batch_let_go(inflight_t *inf) {
    offsets_void_from(inf->offsets, inf->seq);
    inflight_finish(inf, 0);
}

void batch_compact(batch_t *b, const char *gone) {
    int k = 0;
    for (int i = 0; i < b->n; i++)
        if (!gone[i]) b->m[k++] = b->m[i];
    b->n = k;
}

/* batch:resolve(i): the first i messages are done. */
static int l_resolve(lua_State *L) {
    bstate_t *s = lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer i = luaL_checkinteger(L, 2);
    if (!s->b)
        return luaL_error(L, "batch:resolve: this batch's call is over; call resolve inside "
                             "handle_batch");
    if (i < 0 || i > s->n)
        return luaL_error(L, "batch:resolve(%d): give how many messages are done, from 0 to %d "
                             "(the batch's size)",
                          (int)i, s->n);
    if (i > s->resolved) s->resolved = (int)i;
    return 0;
}

/* The member of the batch carried by inf at topic, partition and offset,
 * or NULL: which message a meta of a batch stands for. */
static inflight_t *batch_member(const inflight_t *inf, const char *topic, int32_t partition,
                                int64_t offset) {
    const batch_t *b = inf->batch;
    if (!b) return NULL;
    for (int i = 0; i < b->n; i++) {
        inflight_t *m = b->m[i];
        if (m->msg.partition == partition && m->msg.offset == offset &&
            strcmp(m->msg.topic, topic) == 0)
            return m;
    }
    return NULL;
}

/* meta.trace_id of a batch's message: its own trace, if the meta asking
 * is of the batch whose call runs now. */
static const char *member_trace(const char *topic, int32_t partition, int64_t offset) {
    inflight_t *carrier = call_current(), *m;
    if (!carrier || !carrier->batch) return NULL;
    if (!(m = batch_member(carrier, topic, partition, offset))) return NULL;
    inflight_read_context(m);
    return m->trace.trace_id;
}

/* Runs protected with the batch at 1: push the sequence of { msg, meta }
 * the handler gets, and the state behind its resolve.  A message whose
 * payload does not decode is left out, its error in its record. */
static int build(lua_State *L) {
    batch_t *b = lua_touserdata(L, 1);
    char why[600];
    int k = 0;
    bstate_t *s;

    lua_createtable(L, b->n, 0); /* Stack: b, batch */
    for (int i = 0; i < b->n; i++) {
        inflight_t *inf = b->m[i];
        lua_createtable(L, 0, 2);
        if (call_push_payload(L, inf, why, sizeof(why)) != 0) {
            inf->error = strdup(why);
            lua_pop(L, 1);
            continue;
        }
        lua_setfield(L, -2, "msg");
        meta_push(L, &inf->msg, inf->attempts, member_trace);
        lua_setfield(L, -2, "meta");
        lua_rawseti(L, -2, ++k);
    }
    s = lua_newuserdatauv(L, sizeof(*s), 0); /* Stack: b, batch, state */
    s->b = b;
    s->n = k;
    s->resolved = 0;
    lua_createtable(L, 0, 1); /* the batch's metatable */
    lua_createtable(L, 0, 3); /* its __index */
    lua_pushvalue(L, 3);
    lua_pushcclosure(L, l_resolve, 1);
    lua_setfield(L, -2, "resolve");
    lua_pushstring(L, b->m[0]->msg.topic ? b->m[0]->msg.topic : "");
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, b->m[0]->msg.partition);
    lua_setfield(L, -2, "partition");
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, 2);
    return 2;
}

static void finish_call(batch_t *b, int rc, const script_err_t *err);

static void ended(task_t *t, int rc, const script_err_t *terr, void *data) {
    inflight_t *carrier = data;
    batch_t *b = carrier->batch;
    script_err_t none;
    (void)t;
    b->task = NULL;
    if (!terr) {
        none.msg[0] = none.traceback[0] = '\0';
        none.fatal = 0;
        terr = &none;
    }
    if (b->busy) {
        /* Inside task_start: call() goes on from here. */
        b->sync_done = 1;
        b->sync_rc = rc;
        b->sync_err = *terr;
        return;
    }
    finish_call(b, rc, terr);
}

/* Fail the members that did not decode, one by one, as a message whose
 * payload does not decode fails: not retried. */
static void fail_undecodable(batch_t *b) {
    char *gone = calloc((size_t)b->n, 1);
    inflight_t **bad = malloc((size_t)b->n * sizeof(*bad));
    int nbad = 0;
    char why[1024];

    for (int i = 0; i < b->n; i++)
        if (b->m[i]->error) gone[i] = 1, bad[nbad++] = b->m[i];
    batch_compact(b, gone);
    for (int i = 0; i < nbad; i++) {
        snprintf(why, sizeof(why), "%s", bad[i]->error);
        bad[i]->rounds = b->rounds;
        outcome_failed(bad[i], why, "", 0);
    }
    free(bad);
    free(gone);
}

void batch_call(batch_t *b) {
    flow_t *f = b->f;
    lua_State *L = f->L;
    inflight_t *carrier;
    script_err_t err;
    task_t *t;

    b->tries++;
    for (int i = 0; i < b->n; i++) {
        b->m[i]->attempts++;
        free(b->m[i]->error);
        b->m[i]->error = NULL;
    }
    b->started = uv_hrtime();
    b->busy = 1;
    lua_pushcfunction(L, build);
    lua_pushlightuserdata(L, b);
    if (script_call(L, 1, 2, f->conf->policy.timeout_ms, &err) != 0) {
        /* Out of memory while building it: the batch fails as a call. */
        for (int i = 0; i < b->n; i++) free(b->m[i]->error), b->m[i]->error = NULL;
        b->busy = 0;
        finish_call(b, -1, &err);
        return;
    }
    b->state = lua_touserdata(L, -1);
    b->state_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* Stack: ..., batch */
    b->L = L;
    fail_undecodable(b);
    if (b->n == 0 || f->stopped) {
        lua_pop(L, 1);
        b->state->b = NULL;
        luaL_unref(b->L, LUA_REGISTRYINDEX, b->state_ref);
        b->state = NULL;
        b->state_ref = LUA_NOREF;
        for (int i = 0; i < b->n; i++) batch_let_go(b->m[i]);
        b->busy = 0;
        b->ops->over(b);
        return;
    }
    if (f->on_batch) f->on_batch(f, b->n);
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->conf->handle_batch);
    lua_insert(L, -2); /* Stack: ..., handle_batch, batch */
    carrier = b->m[0];
    carrier->batch = b;
    b->sync_done = 0;
    call_carrier_tasks(ended);
    t = task_start(L, f->loop, 1, f->conf->policy.timeout_ms, ended, carrier);
    b->busy = 0;
    if (b->sync_done) finish_call(b, b->sync_rc, &b->sync_err);
    else b->task = t;
}

/* One line per failed call, its traceback a field of its own (as
 * outcome.c logs a handler's failure). */
static void log_failure(batch_t *b, const script_err_t *e) {
    char msg[4096];
    if (!log_enabled(LOG_ERROR)) return;
    snprintf(msg, sizeof(msg), "batch handler failed (attempt %d) with %d message(s) unresolved: %s",
             b->m[0]->attempts, b->n, e->msg);
    log_put(&(log_record_t){LOG_ERROR, "policy", CTX(b->m[0]), msg, NULL, 0,
                            *e->traceback ? e->traceback : NULL});
}

/* The call is over: settle the resolved prefix, and take the rest to the
 * policy. */
static void finish_call(batch_t *b, int rc, const script_err_t *err) {
    flow_t *f = b->f;
    const policy_conf_t *pol = &f->conf->policy;
    inflight_t *carrier = b->m[0];
    int resolved = 0, retryable;
    script_err_t e = *err;
    decision_t d;

    hist_observe(&f->stats.duration, (double)(uv_hrtime() - b->started) / 1e9);
    carrier->batch = NULL;
    if (b->state) {
        resolved = b->state->resolved;
        b->state->b = NULL;
        b->state = NULL;
        luaL_unref(b->L, LUA_REGISTRYINDEX, b->state_ref);
        b->state_ref = LUA_NOREF;
    }
    /* A publish that could not be queued, or was refused meanwhile, fails
     * the unresolved rest too. */
    if (rc == 0 && carrier->error) {
        snprintf(e.msg, sizeof(e.msg), "%s", carrier->error);
        e.traceback[0] = '\0';
        e.fatal = 0;
        rc = -1;
    }
    free(carrier->error);
    carrier->error = NULL;
    if (rc == 0) resolved = b->n;

    b->busy = 1;
    /* The first carries the call's publishes: it ends when they are
     * acknowledged; the others are done now, and commit after it. */
    for (int i = 0; i < resolved; i++) outcome_settle(b->m[i], STAGE_ACKS);
    if (resolved == b->n) {
        b->busy = 0;
        b->ops->over(b);
        return;
    }
    memmove(b->m, b->m + resolved, (size_t)(b->n - resolved) * sizeof(*b->m));
    b->n -= resolved;
    retryable = !e.fatal;
    log_failure(b, &e);
    if (retryable && b->tries <= pol->instant && !f->stopped) {
        f->stats.retried += (uint64_t)b->n;
        /* In the status page's last failures under its first message; the
         * last round puts each message there (outcome.c). */
        outcome_remember(f, b->m[0], e.msg);
        log_at(LOG_WARN, "policy", CTX(b->m[0]),
               "batch of %d: retrying at once (%d of %d)", b->n, b->tries, pol->instant);
        b->busy = 0;
        batch_call(b);
        return;
    }
    d = policy_decide(pol, b->rounds, retryable);
    if (d.action == POLICY_RETRY && !f->stopped) {
        int64_t wait = d.delay_ms;
        f->stats.failed += (uint64_t)b->n;
        f->stats.retried += (uint64_t)b->n;
        outcome_remember(f, b->m[0], e.msg);
        log_at(LOG_WARN, "policy", CTX(b->m[0]),
               "batch of %d: retrying in %lld ms (delayed retry %d of %d)", b->n,
               (long long)d.delay_ms, b->rounds + 1, pol->delayed);
        for (int i = 0; i < b->n; i++) {
            free(b->m[i]->error);
            b->m[i]->error = strdup(e.msg);
            b->m[i]->delay_ms = d.delay_ms;
            if (f->retry_wait) {
                int64_t w = f->retry_wait(f, b->m[i]);
                if (i == 0) wait = w;
            }
        }
        b->rounds++;
        b->tries = 0;
        b->busy = 0;
        b->ops->retry_in(b, wait > 0 ? wait : 0);
        return;
    }
    /* Out of attempts: each message takes its own way out, with its own
     * dead letter.  None comes back as a retry to wait in memory: a batch
     * endpoint's flow has those go through its source (outcome.c). */
    for (int i = 0; i < b->n; i++) {
        b->m[i]->rounds = b->rounds;
        outcome_failed(b->m[i], e.msg, e.traceback, retryable);
    }
    b->busy = 0;
    b->ops->over(b);
}

void batch_call_stop(batch_t *b) {
    if (b->task) {
        task_abandon(b->task);
        b->task = NULL;
    }
    if (b->n) b->m[0]->batch = NULL;
    if (b->state) {
        b->state->b = NULL;
        luaL_unref(b->L, LUA_REGISTRYINDEX, b->state_ref);
        b->state = NULL;
        b->state_ref = LUA_NOREF;
    }
}
