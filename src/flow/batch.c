/* batch.c - batches of an endpoint with handle_batch.  Each partition
 * gathers the messages it delivers (already tracked, in offset order) and
 * cuts them into a batch at batch.max messages, or batch.wait after the
 * first one came.  A batch holds its partition until it is over, and
 * takes a slot of the endpoint's concurrency while its call runs.
 *
 * A call is one task, whose messages are each settled by the outcome code
 * as a handled message is: dedup filters some out before the first call,
 * batch:resolve(i) or a return marks a prefix done, and a failure sends
 * the unresolved rest to the policy as one batch (instant and delayed
 * retries counted per batch, waited for in memory), then message by
 * message to the error channel or the final failure.  What the call
 * publishes is carried by its first message, which commits only once it
 * is all acknowledged: offsets commit in order, so neither does anything
 * after it. */
#include "flow/batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <uv.h>

#include "base/log.h"
#include "flow/call.h"
#include "flow/outcome.h"
#include "flow/policy.h"
#include "flow/seen.h"
#include "lua/meta.h"
#include "lua/script.h"
#include "lua/task.h"

#define CTX(inf) INFLIGHT_CTX(inf)

typedef struct batch batch_t;

/* A partition's side: what waits to be cut, and the batch holding it. */
typedef struct bpart {
    struct bpart *next;      /* the batcher's list */
    struct bpart *rnext;     /* the ready FIFO */
    const offsets_t *offsets; /* which partition (its tracker is unique to it) */
    inflight_t *head, *tail; /* come, not in a batch yet (qnext) */
    int nqueued;
    uint64_t first_at;   /* loop time (ms) the oldest of them came */
    uv_timer_t *timer;   /* cuts them after batch.wait */
    batch_t *batch;      /* the batch holding the partition, or NULL */
    int ready;           /* wants a slot: in the ready FIFO */
    batcher_t *owner;
} bpart_t;

/* The Lua side of a running call: what batch:resolve(i) changes. */
typedef struct bstate {
    batch_t *b; /* NULL once the call is over */
    int n, resolved;
} bstate_t;

struct batch {
    bpart_t *part;
    inflight_t **m; /* the messages still to handle, in offset order */
    int n;
    int tries;    /* calls in this round: 1 + instant retries */
    int rounds;   /* delayed retries so far */
    int slot;     /* holds a slot of the concurrency */
    int filtered; /* dedup has looked at it */
    int busy;     /* being started or ended: a drop leaves it alone */
    int sync_rc;  /* the call ended inside task_start: how */
    int sync_done;
    script_err_t sync_err;
    task_t *task;
    uv_timer_t *timer; /* a delayed retry */
    uint64_t started;
    bstate_t *state;
    int state_ref;
    lua_State *L; /* whose registry holds state_ref: a reload may swap the flow's */
};

struct batcher {
    flow_t *f;
    bpart_t *parts;
    bpart_t *ready, *ready_tail;
    int running; /* slots taken */
    int pumping, pump_again;
};

static void pump(batcher_t *bt);
static void call(batch_t *b);

void batch_open(flow_t *f) {
    f->batcher = calloc(1, sizeof(*f->batcher));
    f->batcher->f = f;
}

static void free_timer(uv_handle_t *h) { free(h); }

static void close_timer(uv_timer_t **t) {
    if (!*t) return;
    uv_close((uv_handle_t *)*t, free_timer);
    *t = NULL;
}

static void arm(uv_loop_t *loop, uv_timer_t **t, uv_timer_cb cb, void *data, uint64_t ms) {
    if (!*t) {
        *t = malloc(sizeof(**t));
        uv_timer_init(loop, *t);
        (*t)->data = data;
    }
    uv_timer_start(*t, cb, ms, 0);
}

static bpart_t *part_of(batcher_t *bt, const offsets_t *o) {
    bpart_t *bp;
    for (bp = bt->parts; bp; bp = bp->next)
        if (bp->offsets == o) return bp;
    bp = calloc(1, sizeof(*bp));
    bp->offsets = o;
    bp->owner = bt;
    bp->next = bt->parts;
    bt->parts = bp;
    return bp;
}

static void unready(batcher_t *bt, bpart_t *bp) {
    bpart_t **p = &bt->ready, *prev = NULL;
    if (!bp->ready) return;
    while (*p && *p != bp) prev = *p, p = &(*p)->rnext;
    if (*p) {
        *p = bp->rnext;
        if (bt->ready_tail == bp) bt->ready_tail = prev;
    }
    bp->ready = 0;
}

/* A partition with nothing left goes: a tracker's address may be reused. */
static void maybe_free_part(batcher_t *bt, bpart_t *bp) {
    bpart_t **p;
    if (bp->head || bp->batch || bp->ready) return;
    close_timer(&bp->timer);
    for (p = &bt->parts; *p != bp; p = &(*p)->next) {}
    *p = bp->next;
    free(bp);
}

static void want_slot(batcher_t *bt, bpart_t *bp) {
    if (bp->ready) return;
    bp->ready = 1;
    bp->rnext = NULL;
    if (bt->ready_tail) bt->ready_tail->rnext = bp;
    else bt->ready = bp;
    bt->ready_tail = bp;
    pump(bt);
}

static void on_cut(uv_timer_t *t);

/* Cut what waits in bp when it is time: batch.max of them, or the oldest
 * waited batch.wait (force: the timer says so). */
static void consider(batcher_t *bt, bpart_t *bp, int force) {
    const endpoint_conf_t *conf = bt->f->conf;
    uv_loop_t *loop = bt->f->loop;

    if (bp->batch || bp->ready || !bp->head) return;
    if (!force && bp->nqueued < conf->batch_max && loop && conf->batch_wait_ms > 0) {
        uint64_t due = bp->first_at + (uint64_t)conf->batch_wait_ms, now = uv_now(loop);
        if (now < due) {
            arm(loop, &bp->timer, on_cut, bp, due - now);
            return;
        }
    }
    if (bp->timer) uv_timer_stop(bp->timer);
    want_slot(bt, bp);
}

static void on_cut(uv_timer_t *t) {
    bpart_t *bp = t->data;
    consider(bp->owner, bp, 1);
}

void batch_push(flow_t *f, inflight_t *inf) {
    batcher_t *bt = f->batcher;
    bpart_t *bp = part_of(bt, inf->offsets);

    inf->qnext = NULL;
    if (bp->tail) bp->tail->qnext = inf;
    else bp->head = inf, bp->first_at = f->loop ? uv_now(f->loop) : 0;
    bp->tail = inf;
    bp->nqueued++;
    consider(bt, bp, 0);
}

void batch_flush(flow_t *f) {
    for (bpart_t *bp = f->batcher->parts, *next; bp; bp = next) {
        next = bp->next; /* a batch that ends at once may free bp */
        consider(f->batcher, bp, 1);
    }
}

/* The next batch of bp: up to batch.max of what waits. */
static batch_t *cut(batcher_t *bt, bpart_t *bp) {
    int max = bt->f->conf->batch_max;
    int n = bp->nqueued < max ? bp->nqueued : max;
    batch_t *b = calloc(1, sizeof(*b));

    b->part = bp;
    b->m = malloc((size_t)n * sizeof(*b->m));
    b->state_ref = LUA_NOREF;
    for (int i = 0; i < n; i++) {
        inflight_t *inf = bp->head;
        bp->head = inf->qnext;
        inf->qnext = NULL;
        b->m[b->n++] = inf;
    }
    if (!bp->head) bp->tail = NULL;
    bp->nqueued -= n;
    /* What is left waits from now for the next batch. */
    if (bp->head && bt->f->loop) bp->first_at = uv_now(bt->f->loop);
    bp->batch = b;
    return b;
}

/* The batch is over: its partition is free for the next one. */
static void end_batch(batch_t *b) {
    bpart_t *bp = b->part;
    batcher_t *bt = bp->owner;

    if (b->slot) bt->running--;
    close_timer(&b->timer);
    bp->batch = NULL;
    free(b->m);
    free(b);
    consider(bt, bp, 0);
    maybe_free_part(bt, bp);
    pump(bt);
}

/* Let go of a message uncommitted: it is delivered again. */
static void let_go(inflight_t *inf) {
    offsets_void_from(inf->offsets, inf->seq);
    inflight_finish(inf, 0);
}

/* Remove the members for which keep says no, in order. */
static void compact(batch_t *b, const char *gone) {
    int k = 0;
    for (int i = 0; i < b->n; i++)
        if (!gone[i]) b->m[k++] = b->m[i];
    b->n = k;
}

/* Skip what dedup says was handled, before the first call. */
static void filter(batch_t *b) {
    flow_t *f = b->part->owner->f;
    char *gone;
    int any = 0;

    b->filtered = 1;
    if (!f->dedup) return;
    gone = calloc((size_t)b->n, 1);
    for (int i = 0; i < b->n; i++) {
        inflight_t *inf = b->m[i];
        if (!seen_before(inf)) continue;
        log_at(LOG_INFO, "dedup", CTX(inf), "key '%.*s' already handled: skipped from the batch",
               (int)inf->dedup_len, inf->dedup_key);
        f->stats.deduplicated++;
        gone[i] = 1, any = 1;
        outcome_settle(inf, STAGE_IGNORE);
    }
    if (any) compact(b, gone);
    free(gone);
}

/* Each message's age as its batch starts, once per delivery. */
static void observe_ages(batch_t *b) {
    hist_t *h = &b->part->owner->f->stats.age;
    uv_timeval64_t now;
    double t;
    uv_gettimeofday(&now);
    t = (double)now.tv_sec + now.tv_usec / 1e6;
    for (int i = 0; i < b->n; i++) {
        double age;
        if (b->m[i]->msg.timestamp < 0) continue;
        age = t - (double)b->m[i]->msg.timestamp / 1e3;
        /* A producer's clock ahead of ours makes a message from the future. */
        hist_observe(h, age > 0 ? age : 0);
    }
}

static void start(batch_t *b) {
    batcher_t *bt = b->part->owner;
    flow_t *f = bt->f;

    b->slot = 1;
    bt->running++;
    if (!b->filtered) {
        b->busy = 1;
        filter(b);
        b->busy = 0;
        if (b->n == 0) {
            end_batch(b);
            return;
        }
        hist_observe(&f->stats.batch_size, b->n);
        observe_ages(b);
    }
    call(b);
}

/* Start what may start: batches waiting for a slot, in the order they
 * asked.  Nested calls leave the work to the outermost. */
static void pump(batcher_t *bt) {
    if (bt->pumping) {
        bt->pump_again = 1;
        return;
    }
    bt->pumping = 1;
    do {
        bt->pump_again = 0;
        while (!bt->f->stopped && bt->ready && bt->running < bt->f->conf->concurrency) {
            bpart_t *bp = bt->ready;
            bt->ready = bp->rnext;
            if (!bt->ready) bt->ready_tail = NULL;
            bp->ready = 0;
            start(bp->batch ? bp->batch : cut(bt, bp));
        }
    } while (bt->pump_again);
    bt->pumping = 0;
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
    compact(b, gone);
    for (int i = 0; i < nbad; i++) {
        snprintf(why, sizeof(why), "%s", bad[i]->error);
        bad[i]->rounds = b->rounds;
        outcome_failed(bad[i], why, "", 0);
    }
    free(bad);
    free(gone);
}

/* One call of the handler with what is left of the batch. */
static void call(batch_t *b) {
    flow_t *f = b->part->owner->f;
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
        b->state_ref = LUA_NOREF;
        for (int i = 0; i < b->n; i++) let_go(b->m[i]);
        b->busy = 0;
        end_batch(b);
        return;
    }
    if (f->on_batch) f->on_batch(f, b->n);
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->conf->handle_batch);
    lua_insert(L, -2); /* Stack: ..., handle_batch, batch */
    carrier = b->m[0];
    carrier->batch = b;
    b->sync_done = 0;
    t = task_start(L, f->loop, 1, f->conf->policy.timeout_ms, ended, carrier);
    b->busy = 0;
    if (b->sync_done) finish_call(b, b->sync_rc, &b->sync_err);
    else b->task = t;
}

/* Retry the rest after its delay. */
static void on_retry(uv_timer_t *t) {
    batch_t *b = t->data;
    uv_timer_stop(t);
    want_slot(b->part->owner, b->part);
}

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
    batcher_t *bt = b->part->owner;
    flow_t *f = bt->f;
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
        end_batch(b);
        return;
    }
    memmove(b->m, b->m + resolved, (size_t)(b->n - resolved) * sizeof(*b->m));
    b->n -= resolved;
    retryable = !e.fatal;
    log_failure(b, &e);
    if (retryable && b->tries <= pol->instant && !f->stopped) {
        f->stats.retried += (uint64_t)b->n;
        log_at(LOG_WARN, "policy", CTX(b->m[0]),
               "batch of %d: retrying at once (%d of %d)", b->n, b->tries, pol->instant);
        b->busy = 0;
        call(b);
        return;
    }
    d = policy_decide(pol, b->rounds, retryable);
    if (d.action == POLICY_RETRY && !f->stopped) {
        int64_t wait = d.delay_ms;
        f->stats.failed += (uint64_t)b->n;
        f->stats.retried += (uint64_t)b->n;
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
        b->slot = 0;
        bt->running--;
        b->busy = 0;
        arm(f->loop, &b->timer, on_retry, b, (uint64_t)(wait > 0 ? wait : 0));
        pump(bt);
        return;
    }
    /* Out of attempts: each message takes its own way out, with its own
     * dead letter. */
    for (int i = 0; i < b->n; i++) {
        b->m[i]->rounds = b->rounds;
        outcome_failed(b->m[i], e.msg, e.traceback, retryable);
    }
    b->busy = 0;
    end_batch(b);
}

int batch_waiting(const flow_t *f) {
    int n = 0;
    for (const bpart_t *bp = f->batcher->parts; bp; bp = bp->next) {
        n += bp->nqueued;
        if (bp->batch && !bp->batch->task && !bp->batch->busy) n += bp->batch->n;
    }
    return n;
}

int batch_in_use(const flow_t *f) { return f->batcher->running; }

int batch_running(const flow_t *f, const offsets_t *o) {
    int n = 0;
    for (const bpart_t *bp = f->batcher->parts; bp; bp = bp->next)
        n += bp->batch && bp->batch->task && (!o || bp->offsets == o);
    return n;
}

int batch_busy(const flow_t *f) {
    for (const bpart_t *bp = f->batcher->parts; bp; bp = bp->next)
        if (bp->head || bp->batch) return 1;
    return 0;
}

/* Let go of batch b without running it further. */
static int drop_batch(batch_t *b) {
    int n = b->n;

    if (b->task) {
        log_at(LOG_WARN, "flow", CTX(b->m[0]),
               "batch handler still running after the drain timeout: abandoned, uncommitted; its "
               "%d message(s) come again",
               b->n);
        task_abandon(b->task);
        b->task = NULL;
        b->m[0]->batch = NULL;
    }
    if (b->state) {
        b->state->b = NULL;
        luaL_unref(b->L, LUA_REGISTRYINDEX, b->state_ref);
        b->state = NULL;
    }
    unready(b->part->owner, b->part);
    for (int i = 0; i < b->n; i++) let_go(b->m[i]);
    b->n = 0;
    end_batch(b);
    return n;
}

int batch_drop(flow_t *f, const offsets_t *o, int running_too) {
    batcher_t *bt = f->batcher;
    int n = 0;

    for (bpart_t *bp = bt->parts, *next; bp; bp = next) {
        batch_t *b = bp->batch;
        next = bp->next;
        if (o && bp->offsets != o) continue;
        while (bp->head) {
            inflight_t *inf = bp->head;
            bp->head = inf->qnext;
            bp->nqueued--;
            let_go(inf);
            n++;
        }
        bp->tail = NULL;
        if (bp->timer) uv_timer_stop(bp->timer);
        if (b && !b->busy && (!b->task || running_too)) {
            n += drop_batch(b); /* may free bp */
            continue;
        }
        if (!b) unready(bt, bp);
        maybe_free_part(bt, bp);
    }
    if (n) pump(bt);
    return n;
}

void batch_close(flow_t *f) {
    batcher_t *bt = f->batcher;
    if (!bt) return;
    while (bt->parts) {
        bpart_t *bp = bt->parts;
        batch_t *b = bp->batch;
        bt->parts = bp->next;
        if (b) {
            if (b->task) task_abandon(b->task);
            if (b->n) b->m[0]->batch = NULL;
            if (b->state) {
                b->state->b = NULL;
                luaL_unref(b->L, LUA_REGISTRYINDEX, b->state_ref);
            }
            close_timer(&b->timer);
            free(b->m);
            free(b);
        }
        close_timer(&bp->timer);
        free(bp);
    }
    free(bt);
    f->batcher = NULL;
}

inflight_t *batch_member(const inflight_t *inf, const char *topic, int32_t partition,
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
