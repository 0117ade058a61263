/* pipeline.c - one consumed message, from payload to outcome: decode, build
 * meta, call the handler through script_call(), then either wait for the
 * handler's publishes to be acknowledged or fail the message.
 *
 * A failed message stops its endpoint without marking the offset done, so
 * the commit never passes it and a restart delivers it again. */
#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "consumer.h"
#include "json.h"
#include "log.h"
#include "script.h"

/* A handler that runs longer than this is stopped and fails. */
#define HANDLER_TIMEOUT_MS 30000

/* Push meta: where the message came from, its key, headers and id.
 * Stack: ... -> ..., meta */
static void push_meta(lua_State *L, const rd_kafka_message_t *rkm, const char *topic) {
    rd_kafka_headers_t *hdrs = NULL;
    int64_t ts;

    lua_createtable(L, 0, 8);
    lua_pushstring(L, topic);
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, rkm->partition);
    lua_setfield(L, -2, "partition");
    lua_pushinteger(L, rkm->offset);
    lua_setfield(L, -2, "offset");
    if (rkm->key) {
        lua_pushlstring(L, rkm->key, rkm->key_len);
        lua_setfield(L, -2, "key");
    }
    ts = rd_kafka_message_timestamp(rkm, NULL);
    if (ts >= 0) {
        lua_pushinteger(L, ts);
        lua_setfield(L, -2, "timestamp");
    }
    lua_pushinteger(L, 1);
    lua_setfield(L, -2, "attempt");

    /* Headers: name -> value; of repeated names the last wins, as with
     * Kafka's lastHeader().  A header without a value reads luka.null. */
    rd_kafka_message_headers(rkm, &hdrs);
    lua_createtable(L, 0, hdrs ? (int)rd_kafka_header_cnt(hdrs) : 0);
    if (hdrs) {
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(hdrs, i, &name, &val, &size); i++) {
            if (val) lua_pushlstring(L, val, size);
            else json_push_null(L);
            lua_setfield(L, -2, name);
        }
    }
    /* Stack: meta, headers */
    if (lua_getfield(L, -1, "id") == LUA_TSTRING) lua_setfield(L, -3, "id");
    else lua_pop(L, 1);
    lua_setfield(L, -2, "headers");
}

static void log_ctx(const inflight_t *inf, log_ctx_t *ctx) {
    ctx->endpoint = inf->ep->conf->name;
    ctx->topic = rd_kafka_topic_name(inf->rkm->rkt);
    ctx->partition = inf->rkm->partition;
    ctx->offset = inf->rkm->offset;
}

static void release(inflight_t *inf) {
    endpoint_t *ep = inf->ep;
    if (inf->prev) inf->prev->next = inf->next;
    else ep->inflight = inf->next;
    if (inf->next) inf->next->prev = inf->prev;
    ep->ninflight--;
    rd_kafka_message_destroy(inf->rkm);
    offsets_unref(inf->offsets);
    free(inf);
    consumer_kick(ep);
}

static void complete(inflight_t *inf) {
    if (offsets_done(inf->offsets, inf->seq)) inf->ep->dirty = 1;
    inf->ep->handled++;
    release(inf);
}

/* The message failed: until retry policies exist, the endpoint stops with
 * the message uncommitted, and the process ends non-zero so that whatever
 * supervises it restarts it and the message is delivered again. */
static void fail(inflight_t *inf, const char *why, const char *traceback) {
    endpoint_t *ep = inf->ep;
    log_ctx_t ctx;

    log_ctx(inf, &ctx);
    inf->failed = 1;
    ep->failed++;
    log_at(LOG_ERROR, "pipeline", &ctx, "handler failed: %s%s%s", why,
           traceback && *traceback ? "\n" : "", traceback ? traceback : "");
    log_at(LOG_ERROR, "pipeline", &ctx,
           "stopping endpoint without committing this message; "
           "it will be delivered again after a restart");
    consumer_stop(ep);
    host_stop(ep->host, 3);
    if (inf->pending == 0) release(inf);
}

void pipeline_handle(endpoint_t *ep, rd_kafka_message_t *rkm) {
    host_t *h = ep->host;
    lua_State *L = h->app->L;
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    offsets_t *o = consumer_offsets(ep, topic, rkm->partition);
    script_err_t err;
    inflight_t *inf;
    char why[512];

    ep->consumed++;
    if (!o) {
        /* Fetched before a revoke: its partition is no longer ours, and
         * whoever owns it now will handle it. */
        rd_kafka_message_destroy(rkm);
        return;
    }
    inf = calloc(1, sizeof(*inf));
    inf->ep = ep;
    inf->rkm = rkm;
    inf->offsets = o;
    offsets_ref(o);
    inf->seq = offsets_track(o, rkm->offset);
    inf->next = ep->inflight;
    if (ep->inflight) ep->inflight->prev = inf;
    ep->inflight = inf;
    ep->ninflight++;

    lua_rawgeti(L, LUA_REGISTRYINDEX, ep->conf->handle);
    if (!rkm->payload) {
        lua_pushnil(L); /* a tombstone */
    } else if (ep->conf->format == FORMAT_RAW) {
        lua_pushlstring(L, rkm->payload, rkm->len);
    } else if (json_decode(L, rkm->payload, rkm->len, why, sizeof(why)) != 0) {
        char msg[600];
        lua_pop(L, 1);
        snprintf(msg, sizeof(msg), "decode error: %s", why);
        fail(inf, msg, NULL);
        return;
    }
    push_meta(L, rkm, topic);
    h->current = inf;
    if (script_call(L, 2, 0, HANDLER_TIMEOUT_MS, &err) != 0) {
        h->current = NULL;
        fail(inf, err.msg, err.traceback);
        return;
    }
    h->current = NULL;
    inf->handled = 1;
    if (inf->failed) {
        /* A publish could not be queued; the failure is already logged. */
        if (inf->pending == 0) release(inf);
    } else if (inf->pending == 0) {
        complete(inf);
    }
}

void pipeline_publish_added(inflight_t *inf) { inf->pending++; }

void pipeline_publish_done(inflight_t *inf, rd_kafka_resp_err_t err) {
    inf->pending--;
    if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        /* Shutdown gave up waiting: the message stays uncommitted and is
         * delivered again after a restart; that is not a handler failure. */
        inf->failed = 1;
    } else if (err && !inf->failed) {
        char why[300];
        snprintf(why, sizeof(why), "a message it published was not delivered: %s",
                 rd_kafka_err2str(err));
        inf->pending++; /* fail() must not release it while we hold it */
        fail(inf, why, NULL);
        inf->pending--;
    }
    if (inf->pending > 0 || !inf->handled) return;
    if (inf->failed) release(inf);
    else complete(inf);
}

void pipeline_publish_failed(inflight_t *inf, const char *why) {
    if (inf->failed) return;
    inf->pending++;
    fail(inf, why, NULL);
    inf->pending--;
}

int pipeline_abandon(endpoint_t *ep) {
    int n = 0;
    while (ep->inflight) {
        inflight_t *inf = ep->inflight;
        ep->inflight = inf->next;
        rd_kafka_message_destroy(inf->rkm);
        offsets_unref(inf->offsets);
        n++;
        free(inf);
    }
    ep->ninflight = 0;
    return n;
}
