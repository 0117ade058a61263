/* pipeline.c - one consumed message, from payload to outcome: skip it if
 * its dedup key was handled, decode it, build meta, call the handler
 * through script_call() (again at once for instant retries), then hand it
 * to outcome.c: to wait for its publishes, or to the policy. */
#include "flow/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <uv.h>

#include "base/log.h"
#include "flow/call.h"
#include "flow/outcome.h"
#include "flow/policy.h"
#include "lua/script.h"

const double duration_bounds[DURATION_BUCKETS] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025,
                                                   0.05,   0.1,    0.25,  0.5,   1,    5};

/* Compute the dedup key of the message and look it up.  Returns 1 when it
 * was handled before; 0 otherwise, with inf->dedup_key set when it has one. */
static int seen_before(inflight_t *inf) {
    flow_t *f = inf->flow;
    const policy_conf_t *pol = &f->conf->policy;
    lua_State *L = f->L;
    int top = lua_gettop(L), rc = 0;
    char err[512];
    size_t len;
    const char *key = NULL;
    script_err_t serr;

    if (pol->dedup_header) {
        const void *v;
        if (inf->msg.headers &&
            !rd_kafka_header_get_last(inf->msg.headers, pol->dedup_header, &v, &len) && v)
            key = v;
    } else if (call_user(inf, pol->dedup_fn, pol->dedup_field, 0, 1, &serr) == 0) {
        if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
            lua_pushvalue(L, -1);
            key = lua_tolstring(L, -1, &len); /* a copy: never converts the original */
        }
    } else if (strncmp(serr.msg, "decode error:", 13) != 0) {
        /* A payload that does not decode has no key; the handler call
         * reports the decode error. */
        log_warn("dedup", "[%s] key function failed: %s; handling the message anyway",
                 f->conf->name, serr.msg);
    }
    if (key) {
        inf->dedup_key = malloc(len ? len : 1);
        memcpy(inf->dedup_key, key, len);
        inf->dedup_len = len;
        rc = dedup_seen(f->dedup, key, len, err, sizeof(err));
        if (rc < 0) {
            log_warn("dedup", "[%s] %s; handling the message anyway", f->conf->name, err);
            rc = 0;
        }
    }
    lua_settop(L, top);
    return rc;
}

static void observe(endpoint_stats_t *s, double seconds) {
    int i = 0;
    while (i < DURATION_BUCKETS && seconds > duration_bounds[i]) i++;
    s->duration_count[i]++;
    s->duration_sum += seconds;
}

/* Call the handler once.  Returns 0, or -1 with err filled and *retryable
 * set. */
static int call_handler(inflight_t *inf, script_err_t *err, int *retryable) {
    flow_t *f = inf->flow;
    uint64_t start = uv_hrtime();
    int rc;

    inf->attempts++;
    free(inf->error);
    inf->error = NULL;
    rc = call_user(inf, f->conf->handle, NULL, 0, 0, err);
    observe(&f->stats, (double)(uv_hrtime() - start) / 1e9);
    *retryable = rc == 0 || !err->fatal;
    return rc;
}

void pipeline_handle(flow_t *f, message_t *m, offsets_t *o, const redelivery_t *again) {
    const policy_conf_t *pol = &f->conf->policy;
    script_err_t err;
    inflight_t *inf;
    int retryable = 1;

    f->stats.consumed++;
    inf = inflight_new(f, m, o);
    if (again) {
        inf->attempts = again->attempts;
        inf->rounds = again->rounds;
    } else {
        inf->attempts = policy_header_attempts(&inf->msg);
    }

    if (f->dedup && seen_before(inf)) {
        /* Info, with its key: a skip must never go unseen. */
        log_at(LOG_INFO, "dedup",
               (&(log_ctx_t){f->conf->name, m->topic, m->partition, m->offset}),
               "key '%.*s' already handled: skipped", (int)inf->dedup_len, inf->dedup_key);
        f->stats.deduplicated++;
        outcome_settle(inf, STAGE_IGNORE);
        return;
    }
    for (int i = 0; i <= pol->instant; i++) {
        if (call_handler(inf, &err, &retryable) == 0) {
            outcome_settle(inf, STAGE_ACKS);
            return;
        }
        if (!retryable || i == pol->instant) break;
        f->stats.retried++;
        log_at(LOG_WARN, "policy",
               (&(log_ctx_t){f->conf->name, m->topic, m->partition, m->offset}),
               "attempt %d failed: %s; retrying at once (%d of %d)", inf->attempts, err.msg, i + 1,
               pol->instant);
    }
    outcome_failed(inf, err.msg, err.traceback, retryable);
}

int pipeline_open(flow_t *f, const endpoint_conf_t *conf, lua_State *L, const char *dir,
                  const char *dedup_store, const source_ops_t *source, const sinks_t *sinks,
                  char *errbuf, size_t errlen) {
    memset(f, 0, sizeof(*f));
    f->conf = conf;
    f->L = L;
    f->source = source;
    f->sinks = sinks;
    if (conf->policy.dedup) {
        char scope[512], why[512];
        snprintf(scope, sizeof(scope), "%s:%s", conf->group, conf->name);
        f->dedup = dedup_open(dedup_store ? dedup_store : conf->policy.dedup_store, scope,
                              conf->policy.dedup_ttl_ms, conf->policy.dedup_max_entries, dir, why,
                              sizeof(why));
        if (!f->dedup) {
            snprintf(errbuf, errlen, "endpoint '%s' (%s): %s", conf->name, conf->where, why);
            return -1;
        }
    }
    return 0;
}

int pipeline_close(flow_t *f) {
    int n = 0;
    f->stopped = 1;
    for (; f->inflight; n++) inflight_finish(f->inflight, 0);
    dedup_close(f->dedup);
    f->dedup = NULL;
    return n;
}
