/* pipeline.c - an endpoint's messages, from the consumer to their
 * outcome: each is tracked on arrival (commits follow arrival order), waits
 * for its lane and a slot (sched.c), is skipped if its dedup key was
 * handled, and has its handler called as a task that may wait on I/O
 * (again at once for instant retries); then outcome.c takes it: to wait
 * for its publishes, or to the policy.  A retry decided under
 * concurrency waits here in memory, holding its lane. */
#include "flow/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <uv.h>

#include "base/log.h"
#include "flow/batch.h"
#include "flow/call.h"
#include "flow/outcome.h"
#include "flow/policy.h"
#include "flow/sched.h"
#include "flow/seen.h"
#include "lua/script.h"
#include "lua/task.h"

/* Batch sizes: from one message to a large batch.max. */
static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};

/* Message ages run from milliseconds (a consumer keeping up) to days (a
 * backlog, or a replay from the start of a topic). */
static const double age_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25, 0.5,   1,     2.5,
                                    5,     10,   30,    60,   300,  900,  3600,  21600, 86400};

#define CTX(inf) INFLIGHT_CTX(inf)

/* The age of a message whose handling starts now, once per delivery. */
static void observe_age(inflight_t *inf) {
    uv_timeval64_t now;
    double age;
    if (inf->aged || inf->msg.timestamp < 0) return;
    inf->aged = 1;
    uv_gettimeofday(&now);
    age = (double)now.tv_sec + now.tv_usec / 1e6 - (double)inf->msg.timestamp / 1e3;
    /* A producer's clock ahead of ours makes a message from the future. */
    hist_observe(&inf->flow->stats.age, age > 0 ? age : 0);
}

static void handled(inflight_t *inf, int rc, const script_err_t *err);
static void pump(flow_t *f);

/* Call the handler once; handled() hears how it went. */
static void attempt(inflight_t *inf) {
    inf->attempts++;
    inf->tries++;
    inf->pause_ms = -1;
    free(inf->error);
    inf->error = NULL;
    inf->started = uv_hrtime();
    call_start(inf, inf->flow->conf->handle, handled);
}

/* Start a message that took its lane and a slot. */
static void run(inflight_t *inf) {
    flow_t *f = inf->flow;

    if (f->dedup && !inf->dedup_key && seen_before(inf)) {
        /* Info, with its key: a skip must never go unseen. */
        log_at(LOG_INFO, "dedup", CTX(inf), "key '%.*s' already handled: skipped",
               (int)inf->dedup_len, inf->dedup_key);
        f->stats.deduplicated++;
        sched_forget(f->sched, inf);
        f->pump_again = 1; /* its slot is free: the caller pumps */
        outcome_settle(inf, STAGE_IGNORE);
        return;
    }
    observe_age(inf);
    attempt(inf);
}

static void free_timer(uv_handle_t *h) { free(h); }

static void stop_timer(inflight_t *inf) {
    if (!inf->timer) return;
    uv_close((uv_handle_t *)inf->timer, free_timer);
    inf->timer = NULL;
}

static void on_due(uv_timer_t *timer) {
    inflight_t *inf = timer->data;
    flow_t *f = inf->flow;
    stop_timer(inf);
    inf->tries = 0;
    sched_due(f->sched, inf);
    pump(f);
}

/* again, a retry the policy decided, waits in memory holding lane. */
static void retry_later(flow_t *f, inflight_t *again, lane_t *lane) {
    int64_t wait = f->retry_wait ? f->retry_wait(f, again) : again->delay_ms;
    sched_hold(again, lane);
    again->timer = malloc(sizeof(*again->timer));
    uv_timer_init(f->loop, again->timer);
    again->timer->data = again;
    uv_timer_start(again->timer, on_due, (uint64_t)(wait > 0 ? wait : 0), 0);
}

static void handled(inflight_t *inf, int rc, const script_err_t *err) {
    flow_t *f = inf->flow;
    const policy_conf_t *pol = &f->conf->policy;
    int retryable = rc == 0 || !err->fatal;
    inflight_t *again;
    lane_t *lane;

    hist_observe(&f->stats.duration, (double)(uv_hrtime() - inf->started) / 1e9);
    if (rc == 0 && inf->pause_ms >= 0 && !f->stopped) {
        /* meta:pause: delivered again after the pause, through the
         * source, as a delayed retry without concurrency is. */
        sched_forget(f->sched, inf);
        outcome_paused(inf);
        pump(f);
        return;
    }
    if (rc == 0) {
        /* Its key may go on while its publishes are acknowledged. */
        sched_forget(f->sched, inf);
        outcome_settle(inf, STAGE_ACKS);
        pump(f);
        return;
    }
    if (retryable && inf->tries <= pol->instant && !f->stopped) {
        f->stats.retried++;
        log_at(LOG_WARN, "policy", CTX(inf), "attempt %d failed: %s; retrying at once (%d of %d)",
               inf->attempts, err->msg, inf->tries, pol->instant);
        attempt(inf);
        return;
    }
    /* The lane is handed on to a retry waiting in memory, or freed; inf
     * itself may end inside the policy. */
    sched_done(f->sched, inf);
    lane = sched_detach(inf);
    again = outcome_failed(inf, err->msg, err->traceback, retryable);
    if (again) retry_later(f, again, lane);
    else sched_release(f->sched, lane);
    pump(f);
}

/* Start what the scheduler lets run now.  Nested calls (a handler that
 * ends inside another's start) leave the work to the outermost. */
static void pump(flow_t *f) {
    inflight_t *inf;
    if (f->pumping) {
        f->pump_again = 1;
        return;
    }
    f->pumping = 1;
    do {
        f->pump_again = 0;
        while (!f->stopped && (inf = sched_next(f->sched))) run(inf);
    } while (f->pump_again);
    f->pumping = 0;
}

void pipeline_handle(flow_t *f, message_t *m, offsets_t *o, const redelivery_t *again) {
    inflight_t *inf;

    f->stats.consumed++;
    inf = inflight_new(f, m, o);
    if (again) {
        inf->attempts = again->attempts;
        inf->rounds = again->rounds;
    } else {
        inf->attempts = policy_header_attempts(&inf->msg);
    }
    if (f->batcher) {
        batch_push(f, inf);
        return;
    }
    if (sched_push(f->sched, inf)) {
        if (f->pumping) {
            run(inf);
        } else {
            f->pumping = 1;
            run(inf);
            f->pumping = 0;
            if (f->pump_again) pump(f);
        }
    }
}

void pipeline_reported(publish_tag_t *t, rd_kafka_resp_err_t err) {
    flow_t *f;
    inflight_t *again;
    if (t->reported) {
        t->reported(t, err);
        return;
    }
    f = t->inf->flow;
    again = outcome_reported(t, err);
    if (again) retry_later(again->flow, again, NULL);
    if (f) pump(f);
}

int pipeline_waiting(const flow_t *f) {
    if (f->batcher) return batch_waiting(f);
    return f->sched ? f->sched->queued : 0;
}

int pipeline_in_use(const flow_t *f) {
    if (f->batcher) return batch_in_use(f);
    return f->sched ? f->sched->running : 0;
}

void pipeline_flush(flow_t *f) {
    if (f->batcher) batch_flush(f);
}

int pipeline_batch_busy(const flow_t *f) { return f->batcher && batch_busy(f); }

int pipeline_running(const flow_t *f, const offsets_t *o) {
    int n = 0;
    if (f->batcher) return batch_running(f, o);
    for (const inflight_t *inf = f->inflight; inf; inf = inf->next)
        n += inf->task != NULL && (!o || inf->offsets == o);
    return n;
}

/* inf goes without a commit: it is delivered again. */
static void drop(inflight_t *inf) {
    flow_t *f = inf->flow;
    if (inf->task) {
        log_at(LOG_WARN, "flow", CTX(inf),
               "handler still running after the drain timeout: abandoned, uncommitted; the "
               "message comes again");
        task_abandon(inf->task);
        inf->task = NULL;
    }
    stop_timer(inf);
    sched_forget(f->sched, inf);
    offsets_void_from(inf->offsets, inf->seq);
    inflight_finish(inf, 0);
}

int pipeline_drop(flow_t *f, const offsets_t *o, int running_too) {
    int n = 0;
    /* A batch endpoint's messages wait in its batches, and those waiting
     * for their publishes stay. */
    if (f->batcher) return batch_drop(f, o, running_too);
    for (inflight_t *inf = f->inflight, *next; inf; inf = next) {
        next = inf->next;
        if (o && inf->offsets != o) continue;
        /* Not the one whose outcome is being decided, nor those waiting
         * for their publishes: only what waits to start, or to retry. */
        if (!(inf->task ? running_too : sched_waiting(inf) || inf->timer)) continue;
        drop(inf);
        n++;
        next = f->inflight; /* the list changed under us */
    }
    if (n) pump(f);
    return n;
}

/* The flows open now, newest first.  Only the loop thread opens, closes
 * and looks up flows. */
static flow_t *open_flows;

flow_t *pipeline_find(const char *name) {
    for (flow_t *f = open_flows; f; f = f->next_open)
        if (!f->stopped && strcmp(f->conf->name, name) == 0) return f;
    return NULL;
}

int pipeline_open(flow_t *f, const endpoint_conf_t *conf, lua_State *L, uv_loop_t *loop,
                  const char *dir, const char *dedup_store, const source_ops_t *source,
                  const sinks_t *sinks, char *errbuf, size_t errlen) {
    double bounds[HIST_MAX];

    memset(f, 0, sizeof(*f));
    hist_init(&f->stats.duration, bounds, hist_bounds_upto(bounds, conf->policy.timeout_ms / 1e3));
    hist_init(&f->stats.age, age_bounds, (int)(sizeof(age_bounds) / sizeof(age_bounds[0])));
    hist_init(&f->stats.batch_size, batch_bounds,
              (int)(sizeof(batch_bounds) / sizeof(batch_bounds[0])));
    f->conf = conf;
    f->L = L;
    f->loop = loop;
    f->source = source;
    f->sinks = sinks;
    f->sched = malloc(sizeof(*f->sched));
    sched_init(f->sched, conf->concurrency, conf->ordering);
    if (conf->handle_batch != LUA_NOREF) batch_open(f);
    if (conf->policy.dedup) {
        char scope[512], why[512];
        snprintf(scope, sizeof(scope), "%s:%s", conf->group, conf->name);
        f->dedup = dedup_open(dedup_store ? dedup_store : conf->policy.dedup_store, scope,
                              conf->policy.dedup_ttl_ms, conf->policy.dedup_max_entries, dir, why,
                              sizeof(why));
        if (!f->dedup) {
            snprintf(errbuf, errlen, "endpoint '%s' (%s): %s", conf->name, conf->where, why);
            free(f->sched);
            f->sched = NULL;
            batch_close(f);
            return -1;
        }
    }
    f->next_open = open_flows;
    open_flows = f;
    return 0;
}

int pipeline_close(flow_t *f) {
    int n = 0;
    for (flow_t **p = &open_flows; *p; p = &(*p)->next_open)
        if (*p == f) {
            *p = f->next_open;
            break;
        }
    f->stopped = 1;
    batch_close(f);
    for (; f->inflight; n++) {
        inflight_t *inf = f->inflight;
        if (inf->task) task_abandon(inf->task);
        inf->task = NULL;
        stop_timer(inf);
        sched_forget(f->sched, inf);
        inflight_finish(inf, 0);
    }
    if (f->sched) sched_free(f->sched);
    free(f->sched);
    f->sched = NULL;
    dedup_close(f->dedup);
    f->dedup = NULL;
    return n;
}
