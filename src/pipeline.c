/* pipeline.c - one consumed message, from payload to outcome: skip it if
 * its dedup key was handled, decode it, build meta, call the handler
 * through script_call() (again at once for instant retries), then wait for
 * the handler's publishes to be acknowledged, or hand the failure to the
 * policy. */
#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "consumer.h"
#include "json.h"
#include "log.h"
#include "meta.h"
#include "policy.h"
#include "script.h"

int pipeline_push_payload(inflight_t *inf, char *errbuf, size_t errlen) {
    lua_State *L = inf->ep->host->app->L;
    const message_t *m = &inf->msg;
    char why[512];

    if (!m->payload) {
        lua_pushnil(L); /* a tombstone */
    } else if (inf->ep->conf->format == FORMAT_RAW) {
        lua_pushlstring(L, m->payload, m->len);
    } else if (json_decode(L, m->payload, m->len, why, sizeof(why)) != 0) {
        snprintf(errbuf, errlen, "decode error: %s", why);
        return -1;
    }
    return 0;
}

static void finish(inflight_t *inf, int done) {
    endpoint_t *ep = inf->ep;
    if (done && offsets_done(inf->offsets, inf->seq)) ep->dirty = 1;
    if (inf->prev) inf->prev->next = inf->next;
    else ep->inflight = inf->next;
    if (inf->next) inf->next->prev = inf->prev;
    ep->ninflight--;
    message_release(&inf->msg);
    offsets_unref(inf->offsets);
    free(inf->dedup_key);
    free(inf->error);
    free(inf->traceback);
    free(inf);
    consumer_kick(ep);
}

/* The last publish of inf is settled: count the outcome, commit or not. */
static void settled(inflight_t *inf) {
    endpoint_t *ep = inf->ep;
    char err[512];

    if (inf->purged) {
        /* Shutdown gave up waiting: uncommitted, delivered again later. */
        finish(inf, 0);
        return;
    }
    switch (inf->stage) {
    case STAGE_ACKS:
        ep->stats.handled++;
        if (inf->dedup_key && dedup_mark(ep->dedup, inf->dedup_key, inf->dedup_len, err, sizeof(err)))
            log_warn("dedup", "[%s] %s; the message may be handled again if it comes back",
                     ep->conf->name, err);
        finish(inf, 1);
        break;
    case STAGE_DEADLETTER:
        ep->stats.dead_lettered++;
        finish(inf, 1);
        break;
    case STAGE_RESEND:
        ep->stats.resent++;
        finish(inf, 1);
        break;
    case STAGE_IGNORE:
        finish(inf, 1);
        break;
    default:
        finish(inf, 0);
        break;
    }
}

void pipeline_settle(inflight_t *inf, int stage) {
    inf->stage = stage;
    if (inf->pending == 0) settled(inf);
}

/* Compute the dedup key of the message and look it up.  Returns 1 when it
 * was handled before; 0 otherwise, with inf->dedup_key set when it has one. */
static int seen_before(inflight_t *inf) {
    endpoint_t *ep = inf->ep;
    const policy_conf_t *pol = &ep->conf->policy;
    lua_State *L = ep->host->app->L;
    int top = lua_gettop(L), rc = 0;
    char err[512];
    size_t len;
    const char *key = NULL;

    if (pol->dedup_header) {
        const void *v;
        if (inf->msg.headers &&
            !rd_kafka_header_get_last(inf->msg.headers, pol->dedup_header, &v, &len) && v)
            key = v;
    } else if (pipeline_push_payload(inf, err, sizeof(err)) == 0) {
        /* Stack: msg.  A payload that does not decode has no key; the
         * handler call reports the decode error. */
        if (pol->dedup_fn != LUA_NOREF) {
            script_err_t serr;
            lua_rawgeti(L, LUA_REGISTRYINDEX, pol->dedup_fn);
            lua_insert(L, -2);
            meta_push(L, &inf->msg, inf->attempts);
            if (script_call(L, 2, 1, pol->timeout_ms, &serr) != 0) {
                log_warn("dedup", "[%s] key function failed: %s; handling the message anyway",
                         ep->conf->name, serr.msg);
                lua_pushnil(L);
            }
        } else if (lua_istable(L, -1)) {
            lua_getfield(L, -1, pol->dedup_field);
        } else {
            lua_pushnil(L);
        }
        if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
            key = luaL_tolstring(L, -1, &len);
    }
    if (key) {
        inf->dedup_key = malloc(len ? len : 1);
        memcpy(inf->dedup_key, key, len);
        inf->dedup_len = len;
        rc = dedup_seen(ep->dedup, key, len, err, sizeof(err));
        if (rc < 0) {
            log_warn("dedup", "[%s] %s; handling the message anyway", ep->conf->name, err);
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
    endpoint_t *ep = inf->ep;
    host_t *h = ep->host;
    lua_State *L = h->app->L;
    uint64_t start;
    int rc;

    inf->attempts++;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ep->conf->handle);
    if (pipeline_push_payload(inf, err->msg, sizeof(err->msg)) != 0) {
        lua_pop(L, 1);
        err->traceback[0] = '\0';
        *retryable = 0;
        return -1;
    }
    meta_push(L, &inf->msg, inf->attempts);
    h->current = inf;
    start = uv_hrtime();
    rc = script_call(L, 2, 0, ep->conf->policy.timeout_ms, err);
    observe(&ep->stats, (double)(uv_hrtime() - start) / 1e9);
    h->current = NULL;
    if (rc == 0 && inf->error) {
        /* A publish could not be queued: that fails the message too. */
        snprintf(err->msg, sizeof(err->msg), "%s", inf->error);
        err->traceback[0] = '\0';
        rc = -1;
    }
    *retryable = !err->fatal;
    return rc;
}

static int header_attempts(const message_t *m) {
    const void *v;
    size_t len;
    char buf[24];
    if (!m->headers || rd_kafka_header_get_last(m->headers, ATTEMPTS_HEADER, &v, &len) || !v ||
        len >= sizeof(buf))
        return 0;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return atoi(buf);
}

void pipeline_handle(endpoint_t *ep, message_t *m) {
    const policy_conf_t *pol = &ep->conf->policy;
    partition_t *pt = consumer_partition(ep, m->topic, m->partition);
    script_err_t err;
    inflight_t *inf;
    int retryable = 1;

    ep->stats.consumed++;
    if (!pt || !consumer_accept(pt, m->offset)) {
        /* Fetched before a revoke, a pause or a seek: it comes again, to
         * whoever owns the partition then. */
        message_release(m);
        return;
    }
    inf = calloc(1, sizeof(*inf));
    inf->ep = ep;
    inf->msg = *m;
    inf->offsets = pt->offsets;
    offsets_ref(pt->offsets);
    inf->seq = offsets_track(pt->offsets, m->offset);
    inf->next = ep->inflight;
    if (ep->inflight) ep->inflight->prev = inf;
    ep->inflight = inf;
    ep->ninflight++;
    if (pt->retry_offset == m->offset) {
        inf->attempts = pt->retry_attempts;
        inf->rounds = pt->retry_rounds;
        pt->retry_offset = -1;
    } else {
        inf->attempts = header_attempts(m);
    }

    if (ep->dedup && seen_before(inf)) {
        log_debug("dedup", "[%s] %s[%d]@%lld: key already handled, skipped", ep->conf->name,
                  m->topic, (int)m->partition, (long long)m->offset);
        ep->stats.deduplicated++;
        pipeline_settle(inf, STAGE_IGNORE);
        return;
    }
    for (int i = 0; i <= pol->instant; i++) {
        if (call_handler(inf, &err, &retryable) == 0) {
            pipeline_settle(inf, STAGE_ACKS);
            return;
        }
        if (!retryable || i == pol->instant) break;
        ep->stats.retried++;
        log_at(LOG_WARN, "policy",
               (&(log_ctx_t){ep->conf->name, m->topic, m->partition, m->offset}),
               "attempt %d failed: %s; retrying at once (%d of %d)", inf->attempts, err.msg, i + 1,
               pol->instant);
    }
    policy_failed(inf, err.msg, err.traceback, retryable);
}

void pipeline_publish_added(inflight_t *inf) { inf->pending++; }

void pipeline_publish_done(inflight_t *inf, rd_kafka_resp_err_t err) {
    char why[300];

    inf->pending--;
    if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        inf->purged = 1;
    } else if (err) {
        snprintf(why, sizeof(why), "a message it published was not delivered: %s",
                 rd_kafka_err2str(err));
        inf->pending++; /* hold it while the policy decides */
        if (inf->stage == STAGE_HANDLE) {
            if (!inf->error) inf->error = strdup(why);
        } else if (inf->stage == STAGE_ACKS) {
            inf->stage = STAGE_HANDLE;
            policy_failed(inf, why, "", 1);
        } else if (inf->stage != STAGE_DROP) {
            policy_publish_failed(inf, why);
        }
        inf->pending--;
    }
    if (inf->pending == 0 && inf->stage != STAGE_HANDLE) settled(inf);
}

void pipeline_publish_failed(inflight_t *inf, const char *why) {
    if (!inf->error) inf->error = strdup(why);
}

int pipeline_abandon(endpoint_t *ep) {
    int n = 0;
    for (; ep->inflight; n++) finish(ep->inflight, 0);
    return n;
}
