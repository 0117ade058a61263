/* pipeline.c - one consumed message, from payload to outcome: skip it if
 * its dedup key was handled, decode it, build meta, call the handler
 * through script_call() (again at once for instant retries), then wait for
 * the handler's publishes to be acknowledged, or hand the failure to the
 * policy. */
#include "flow/pipeline.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "kafka/consumer.h"
#include "base/json.h"
#include "base/log.h"
#include "cmd/testkit.h"
#include "lua/meta.h"
#include "flow/policy.h"
#include "lua/script.h"

/* Push the payload as the handler sees it (a decoded table, a string or
 * nil) on L, the thread the call runs in.  Returns 0, or -1 with a decode
 * error in errbuf. */
static int push_payload(lua_State *L, inflight_t *inf, char *errbuf, size_t errlen) {
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

/* Finished records are kept for the next messages: one malloc and free
 * fewer per message. */
#define SPARE_MAX 1024
static inflight_t *spare;
static int nspare;

static inflight_t *inflight_new(void) {
    inflight_t *inf = spare;
    if (!inf) return calloc(1, sizeof(*inf));
    spare = inf->next;
    nspare--;
    memset(inf, 0, sizeof(*inf));
    return inf;
}

static void inflight_free(inflight_t *inf) {
    if (nspare == SPARE_MAX) {
        free(inf);
        return;
    }
    inf->next = spare;
    spare = inf;
    nspare++;
}

/* Records whose outcome is decided but whose publishes are not all
 * reported yet: a report must never reach freed memory. */
static inflight_t *lingering;

void pipeline_shutdown(void) {
    while (lingering) {
        inflight_t *next = lingering->next;
        free(lingering);
        lingering = next;
    }
    while (spare) {
        inflight_t *next = spare->next;
        free(spare);
        spare = next;
    }
    nspare = 0;
}

static int outstanding(const inflight_t *inf) {
    int n = 0;
    for (int i = 0; i < PIPELINE_STAGES; i++) n += inf->tags[i].pending;
    return n;
}

/* The record no longer stands for a message: let go of what it holds, and
 * of the record itself once no delivery report can name it. */
static void detach(inflight_t *inf) {
    message_release(&inf->msg);
    offsets_unref(inf->offsets);
    inf->offsets = NULL;
    free(inf->dedup_key);
    free(inf->error);
    free(inf->traceback);
    free(inf->error_channel_failed);
    inf->dedup_key = inf->error = inf->traceback = inf->error_channel_failed = NULL;
    inf->ep = NULL;
    if (outstanding(inf) == 0) {
        inflight_free(inf);
        return;
    }
    inf->prev = NULL;
    inf->next = lingering;
    if (lingering) lingering->prev = inf;
    lingering = inf;
}

/* The last report of a lingering record came. */
static void linger_done(inflight_t *inf) {
    if (inf->prev) inf->prev->next = inf->next;
    else lingering = inf->next;
    if (inf->next) inf->next->prev = inf->prev;
    inflight_free(inf);
}

/* The one way a message in flight ends: its offset is done (done) or left
 * pending for a later delivery, and it leaves its endpoint. */
static void finish(inflight_t *inf, int done) {
    endpoint_t *ep = inf->ep;
    if (ep->host->test) testkit_finished(ep->host->test, inf, done);
    if (done && offsets_done(inf->offsets, inf->seq)) ep->dirty = 1;
    if (inf->prev) inf->prev->next = inf->next;
    else ep->inflight = inf->next;
    if (inf->next) inf->next->prev = inf->prev;
    ep->ninflight--;
    detach(inf);
    consumer_kick(ep);
}

/* The last publish of inf's stage is settled: count the outcome, commit or
 * not. */
static void settled(inflight_t *inf) {
    endpoint_t *ep = inf->ep;
    char err[512];

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
    if (inf->tags[inf->tag].pending == 0) settled(inf);
}

void pipeline_new_stage(inflight_t *inf) {
    /* Three stages at most publish (see PIPELINE_STAGES): the handler, the
     * error channel, and the resend of the final failure. */
    if (inf->tag + 1 < PIPELINE_STAGES) inf->tag++;
}

/* What pipeline_call runs in protected mode: fn(msg, meta[, err]), or,
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
    if (push_payload(L, inf, err, sizeof(err)) != 0) {
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
    meta_push(L, &inf->msg, inf->attempts);
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

int pipeline_call(inflight_t *inf, int fn, const char *field, int with_err, int nresults,
                  script_err_t *err) {
    endpoint_t *ep = inf->ep;
    lua_State *L = ep->host->app->L;
    call_t c = {inf, fn, field, with_err, with_err, nresults};
    host_t *h = ep->host;
    inflight_t *outer = h->current;
    int rc;

    lua_pushcfunction(L, trampoline);
    lua_pushlightuserdata(L, &c);
    /* Calls do not nest (delivery reports wait for the loop), but if one
     * did, the outer handler's later publishes must stay its own. */
    h->current = inf;
    rc = script_call(L, 1, nresults, ep->conf->policy.timeout_ms, err);
    h->current = outer;
    if (rc == 0 && inf->error && !with_err) {
        /* A publish could not be queued: that fails the message too. */
        lua_pop(L, nresults);
        snprintf(err->msg, sizeof(err->msg), "%s", inf->error);
        err->traceback[0] = '\0';
        err->fatal = 0;
        rc = -1;
    }
    if (rc && strncmp(err->msg, "decode error:", 13) == 0) err->traceback[0] = '\0';
    return rc;
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
    script_err_t serr;

    if (pol->dedup_header) {
        const void *v;
        if (inf->msg.headers &&
            !rd_kafka_header_get_last(inf->msg.headers, pol->dedup_header, &v, &len) && v)
            key = v;
    } else if (pipeline_call(inf, pol->dedup_fn, pol->dedup_field, 0, 1, &serr) == 0) {
        if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
            lua_pushvalue(L, -1);
            key = lua_tolstring(L, -1, &len); /* a copy: never converts the original */
        }
    } else if (strncmp(serr.msg, "decode error:", 13) != 0) {
        /* A payload that does not decode has no key; the handler call
         * reports the decode error. */
        log_warn("dedup", "[%s] key function failed: %s; handling the message anyway",
                 ep->conf->name, serr.msg);
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
    uint64_t start = uv_hrtime();
    int rc;

    inf->attempts++;
    free(inf->error);
    inf->error = NULL;
    rc = pipeline_call(inf, ep->conf->handle, NULL, 0, 0, err);
    observe(&ep->stats, (double)(uv_hrtime() - start) / 1e9);
    *retryable = rc == 0 || !err->fatal;
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

    if (!pt || !consumer_accept(pt, m->offset)) {
        /* Fetched before a revoke, a pause or a seek: it comes again, to
         * whoever owns the partition then. */
        message_release(m);
        return;
    }
    ep->stats.consumed++;
    inf = inflight_new();
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

publish_tag_t *pipeline_publish_tag(inflight_t *inf) {
    publish_tag_t *t = &inf->tags[inf->tag];
    t->inf = inf;
    return t;
}

void pipeline_publish_added(publish_tag_t *t) { t->pending++; }

void pipeline_publish_done(publish_tag_t *t, rd_kafka_resp_err_t err) {
    inflight_t *inf = t->inf;
    char why[300];

    t->pending--;
    if (!inf->ep) {
        /* Its outcome was decided (or its endpoint stopped): nothing is
         * left to do but let go of it after its last report. */
        if (outstanding(inf) == 0) linger_done(inf);
        return;
    }
    if (t != &inf->tags[inf->tag]) return; /* a stage already decided */
    if ((err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) &&
        inf->ep->stopped) {
        /* Shutdown gave up waiting: uncommitted, delivered again later. */
        inf->stage = STAGE_DROP;
    } else if (err) {
        snprintf(why, sizeof(why), "a message it published was not delivered: %s",
                 rd_kafka_err2str(err));
        if (inf->stage == STAGE_HANDLE) {
            /* The handler's call is not over: it fails when it returns. */
            if (!inf->error) inf->error = strdup(why);
            return;
        }
        /* The policy takes it from here, in a stage of its own; inf may be
         * gone when it returns. */
        if (inf->stage == STAGE_ACKS) {
            inf->stage = STAGE_HANDLE;
            policy_failed(inf, why, "", 1);
            return;
        }
        if (inf->stage == STAGE_DEADLETTER || inf->stage == STAGE_RESEND) {
            policy_publish_failed(inf, why);
            return;
        }
    }
    if (t->pending == 0 && inf->stage != STAGE_HANDLE) settled(inf);
}

void pipeline_publish_failed(inflight_t *inf, const char *why) {
    char **slot = inf->stage == STAGE_DEADLETTER ? &inf->error_channel_failed : &inf->error;
    if (!*slot) *slot = strdup(why);
}

int pipeline_abandon(endpoint_t *ep) {
    int n = 0;
    for (; ep->inflight; n++) finish(ep->inflight, 0);
    return n;
}
